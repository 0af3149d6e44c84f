//! A Discord API double: REST v10 and the gateway websocket on
//! 127.0.0.1, close enough to Discord that serenity cannot tell, plus a
//! control API for tests ("bob posts this in #general", "what did the
//! webhooks post?", "drop the gateway now").
//!
//! Point serenity at it with
//! `HttpBuilder::new(token).proxy(double.base_url()).ratelimiter_disabled(true)`:
//! the proxy rewrites `https://discord.com` to the double, and
//! `GET /api/v10/gateway` hands out the double's websocket URL. serenity
//! 0.12.5's rate limiter sends its requests without the proxy, so it must
//! be disabled when a proxy is used.
//!
//! Everything the bot or its webhooks post is dispatched back over the
//! gateway, as Discord does, so loop prevention is tested for real.
//!
//! Besides the gateway's bot, tests may register users' personal bots
//! ([`DiscordDouble::add_bot`]): each has its own token, DM channels and
//! gateway sessions, and sees only the guilds it is a member of. Files
//! uploaded with a message are kept on it ([`MessageRec::files`]) and
//! served, like Discord's CDN, at the URLs its attachments list.

mod gateway;
pub mod json;
mod rest;
pub mod state;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use state::{
    MessageRec, State, UploadRec, WebhookRec, WsCommand, ADMINISTRATOR, MANAGE_WEBHOOKS,
};

use state::{ChannelRec, GuildRec, MemberRec, RoleRec};

/// What the REST handlers and gateway connections share.
#[derive(Clone)]
pub struct Shared {
    state: Arc<Mutex<State>>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running double; it stops when dropped.
pub struct DiscordDouble {
    port: u16,
    shared: Shared,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A small community for tests: one guild the bot is in, with channels
/// and people.
#[derive(Debug, Clone, Copy)]
pub struct Community {
    pub guild: u64,
    pub general: u64,
    pub random: u64,
    /// A channel whose permissions hide it from the bot.
    pub hidden: u64,
    /// The guild owner, shown as `Olivia`.
    pub owner: u64,
    /// A member with a server nick `Bobby` (username `bob`).
    pub bob: u64,
    /// A member with only a global name, `Carol C`.
    pub carol: u64,
}

impl DiscordDouble {
    /// Start a double whose bot answers to `bot_token`.
    pub async fn start(bot_token: &str) -> DiscordDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut state = State::new(bot_token);
        state.gateway_port = port;
        let shared = Shared {
            state: Arc::new(Mutex::new(state)),
            shutdown: shutdown_rx.clone(),
        };
        let app = rest::router(shared.clone());
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        });
        DiscordDouble {
            port,
            shared,
            shutdown,
            task,
        }
    }

    /// A double with [`Community`] already set up.
    pub async fn start_with_community(bot_token: &str) -> (DiscordDouble, Community) {
        let double = DiscordDouble::start(bot_token).await;
        let community = double.add_community();
        (double, community)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What serenity's `HttpBuilder::proxy` takes.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bot_id(&self) -> u64 {
        self.lock().bot_id
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    // ---- building the world ----

    pub fn add_user(&self, username: &str, global_name: Option<&str>) -> u64 {
        self.lock().add_user(username, global_name, false)
    }

    /// A personal bot that `token` authenticates, in no guild until added as a member.
    pub fn add_bot(&self, username: &str, token: &str) -> u64 {
        self.lock().add_bot(username, token)
    }

    /// A guild owned by `owner`, with the bot as a member holding `bot_permissions`.
    pub fn add_guild(&self, name: &str, owner: u64, bot_permissions: u64) -> u64 {
        let mut state = self.lock();
        let id = state.snowflake();
        let bot_role = state.snowflake();
        let bot = state.bot_id;
        state.guilds.push(GuildRec {
            id,
            name: name.to_owned(),
            owner_id: owner,
            roles: vec![
                // @everyone has the guild's id, and Discord's usual defaults:
                // view, send, read history, add reactions.
                RoleRec {
                    id,
                    name: "@everyone".to_owned(),
                    permissions: (1 << 10) | (1 << 11) | (1 << 16) | (1 << 6),
                },
                RoleRec {
                    id: bot_role,
                    name: "bridge".to_owned(),
                    permissions: bot_permissions,
                },
            ],
            channels: Vec::new(),
            members: vec![
                MemberRec {
                    user_id: owner,
                    nick: None,
                    roles: vec![],
                },
                MemberRec {
                    user_id: bot,
                    nick: None,
                    roles: vec![bot_role],
                },
            ],
        });
        id
    }

    pub fn add_text_channel(&self, guild: u64, name: &str, topic: Option<&str>) -> u64 {
        let mut state = self.lock();
        let id = state.snowflake();
        let g = state.guild_mut(guild);
        let position = g.channels.len();
        g.channels.push(ChannelRec {
            id,
            guild_id: guild,
            name: name.to_owned(),
            kind: 0,
            position,
            topic: topic.map(str::to_owned),
            visible_to_bot: true,
        });
        id
    }

    /// Hide a channel from every bot, as a permission overwrite would.
    pub fn hide_channel_from_bot(&self, channel: u64) {
        let mut state = self.lock();
        let guild = state.guild_of(channel).expect("a guild channel");
        let g = state.guild_mut(guild);
        if let Some(c) = g.channels.iter_mut().find(|c| c.id == channel) {
            c.visible_to_bot = false;
        }
    }

    pub fn add_member(&self, guild: u64, user: u64, nick: Option<&str>) {
        self.lock().guild_mut(guild).members.push(MemberRec {
            user_id: user,
            nick: nick.map(str::to_owned),
            roles: vec![],
        });
    }

    /// A role with `permissions`, given to `members`.
    pub fn add_role(&self, guild: u64, name: &str, permissions: u64, members: &[u64]) -> u64 {
        let mut state = self.lock();
        let id = state.snowflake();
        let g = state.guild_mut(guild);
        g.roles.push(RoleRec {
            id,
            name: name.to_owned(),
            permissions,
        });
        for m in g
            .members
            .iter_mut()
            .filter(|m| members.contains(&m.user_id))
        {
            m.roles.push(id);
        }
        id
    }

    pub fn add_community(&self) -> Community {
        let owner = self.add_user("olivia", Some("Olivia"));
        let bob = self.add_user("bob", Some("Robert"));
        let carol = self.add_user("carol", Some("Carol C"));
        // View, send, read history, add reactions, manage messages and webhooks.
        let bot_permissions =
            (1 << 10) | (1 << 11) | (1 << 16) | (1 << 6) | (1 << 13) | MANAGE_WEBHOOKS;
        let guild = self.add_guild("Estuary Test Guild", owner, bot_permissions);
        let general = self.add_text_channel(guild, "general", Some("General chat"));
        let random = self.add_text_channel(guild, "random", None);
        let hidden = self.add_text_channel(guild, "staff-only", None);
        self.hide_channel_from_bot(hidden);
        self.add_member(guild, bob, Some("Bobby"));
        self.add_member(guild, carol, None);
        self.add_role(guild, "mods", ADMINISTRATOR, &[carol]);
        Community {
            guild,
            general,
            random,
            hidden,
            owner,
            bob,
            carol,
        }
    }

    /// Take Manage Webhooks away from the bot (or give it back).
    pub fn set_bot_can_manage_webhooks(&self, allowed: bool) {
        self.lock().bot_can_manage_webhooks = allowed;
    }

    /// The privileged intents the bot's application is granted; IDENTIFY
    /// asking for others is closed with 4014.
    pub fn grant_privileged_intents(&self, intents: u64) {
        self.lock().granted_intents = intents;
    }

    // ---- acting as Discord users ----

    /// `user` posts `content` in `channel`; returns the message id.
    pub fn post(&self, user: u64, channel: u64, content: &str) -> u64 {
        self.post_reply(user, channel, content, None)
    }

    /// `user` posts `content` in `channel` as a reply to `reply_to`.
    pub fn post_reply(&self, user: u64, channel: u64, content: &str, reply_to: Option<u64>) -> u64 {
        self.post_message(user, channel, content, reply_to, Vec::new())
    }

    /// `user` posts `content` with a file in `channel`; returns the message id.
    pub fn post_with_file(
        &self,
        user: u64,
        channel: u64,
        content: &str,
        file: (&str, &str),
    ) -> u64 {
        let file = (file.0.to_owned(), file.1.to_owned());
        self.post_message(user, channel, content, None, vec![file])
    }

    fn post_message(
        &self,
        user: u64,
        channel: u64,
        content: &str,
        reply_to: Option<u64>,
        attachments: Vec<(String, String)>,
    ) -> u64 {
        let mut state = self.lock();
        let guild_id = state.guild_of(channel);
        let author_name = state.user(user).username.clone();
        state
            .create_message(MessageRec {
                id: 0,
                channel_id: channel,
                guild_id,
                author_id: user,
                author_name,
                webhook_id: None,
                content: content.to_owned(),
                reply_to,
                edited_ms: None,
                deleted: false,
                attachments,
                files: Vec::new(),
                avatar_url: None,
            })
            .id
    }

    /// `user` sends the gateway bot a direct message; returns the message id.
    pub fn dm_bot(&self, user: u64, content: &str) -> u64 {
        self.dm_bot_as(self.bot_id(), user, content)
    }

    /// `user` sends `bot` a direct message; returns the message id.
    pub fn dm_bot_as(&self, bot: u64, user: u64, content: &str) -> u64 {
        let channel = self.lock().dm_channel(bot, user);
        self.post(user, channel, content)
    }

    /// The DM channel between the gateway bot and `user`, once opened.
    pub fn dm_channel_of(&self, user: u64) -> Option<u64> {
        self.dm_channel_between(self.bot_id(), user)
    }

    pub fn dm_channel_between(&self, bot: u64, user: u64) -> Option<u64> {
        self.lock().dm_channels.get(&(bot, user)).copied()
    }

    /// The author edits a message.
    pub fn edit(&self, message: u64, content: &str) {
        let mut state = self.lock();
        let m = state.message_mut(message).expect("a known message");
        m.content = content.to_owned();
        m.edited_ms = Some(json::now_ms());
        let m = m.clone();
        let payload = json::message(&state, &m);
        state.dispatch("MESSAGE_UPDATE", payload);
    }

    /// The author deletes a message.
    pub fn delete(&self, message: u64) {
        let mut state = self.lock();
        let m = state.message_mut(message).expect("a known message");
        m.deleted = true;
        let mut data = json!({ "id": message.to_string(), "channel_id": m.channel_id.to_string() });
        if let Some(guild) = m.guild_id {
            data["guild_id"] = json!(guild.to_string());
        }
        state.dispatch("MESSAGE_DELETE", data);
    }

    pub fn react(&self, user: u64, message: u64, emoji: &str) {
        rest::apply_reaction(&mut self.lock(), message, user, emoji, true);
    }

    pub fn unreact(&self, user: u64, message: u64, emoji: &str) {
        rest::apply_reaction(&mut self.lock(), message, user, emoji, false);
    }

    pub fn typing(&self, user: u64, channel: u64) {
        let mut state = self.lock();
        let mut data = json!({
            "channel_id": channel.to_string(),
            "user_id": user.to_string(),
            "timestamp": json::now_ms() / 1000,
        });
        if let Some(guild) = state.guild_of(channel) {
            data["guild_id"] = json!(guild.to_string());
            if let Some(member) = state.member(guild, user) {
                data["member"] = json::member(&state, member);
            }
        }
        state.dispatch("TYPING_START", data);
    }

    /// `user` joins the guild (GUILD_MEMBER_ADD); a bot joining is sent the
    /// guild (GUILD_CREATE) first, as Discord does.
    pub fn member_joins(&self, guild: u64, user: u64, nick: Option<&str>) {
        self.add_member(guild, user, nick);
        let mut state = self.lock();
        if state.is_registered_bot(user) {
            let create = json::guild_create(&state, state.guild(guild).expect("a guild"));
            state.dispatch_to(&BTreeSet::from([user]), "GUILD_CREATE", create);
        }
        let member = state.member(guild, user).expect("just added").clone();
        let mut data = json::member(&state, &member);
        data["guild_id"] = json!(guild.to_string());
        state.dispatch("GUILD_MEMBER_ADD", data);
    }

    /// `user` takes another server nick (GUILD_MEMBER_UPDATE).
    pub fn member_renames(&self, guild: u64, user: u64, nick: Option<&str>) {
        let mut state = self.lock();
        let g = state.guild_mut(guild);
        let member = g
            .members
            .iter_mut()
            .find(|m| m.user_id == user)
            .expect("a member");
        member.nick = nick.map(str::to_owned);
        let member = member.clone();
        let mut data = json::member(&state, &member);
        data["guild_id"] = json!(guild.to_string());
        state.dispatch("GUILD_MEMBER_UPDATE", data);
    }

    /// `user` leaves the guild (GUILD_MEMBER_REMOVE to those who stay); a
    /// bot leaving loses the guild (GUILD_DELETE), as Discord does.
    pub fn member_leaves(&self, guild: u64, user: u64) {
        let mut state = self.lock();
        state.guild_mut(guild).members.retain(|m| m.user_id != user);
        if state.is_registered_bot(user) {
            let gone = json!({ "id": guild.to_string() });
            state.dispatch_to(&BTreeSet::from([user]), "GUILD_DELETE", gone);
        }
        let data = json!({
            "guild_id": guild.to_string(),
            "user": json::user(state.user(user)),
        });
        state.dispatch("GUILD_MEMBER_REMOVE", data);
    }

    /// `status` is Discord's: online, idle, dnd, offline.
    pub fn set_presence(&self, user: u64, guild: u64, status: &str) {
        let mut state = self.lock();
        let data = json!({
            "user": { "id": user.to_string() },
            "guild_id": guild.to_string(),
            "status": status,
            "activities": [],
            "client_status": { "desktop": status },
        });
        state.dispatch("PRESENCE_UPDATE", data);
    }

    // ---- inspecting what the bot did ----

    /// The messages of a channel that are not deleted, oldest first.
    pub fn messages_in(&self, channel: u64) -> Vec<MessageRec> {
        self.lock()
            .messages
            .iter()
            .filter(|m| m.channel_id == channel && !m.deleted)
            .cloned()
            .collect()
    }

    pub fn message(&self, id: u64) -> Option<MessageRec> {
        self.lock().message(id).cloned()
    }

    pub fn webhooks_in(&self, channel: u64) -> Vec<WebhookRec> {
        self.lock()
            .webhooks
            .iter()
            .filter(|w| w.channel_id == channel)
            .cloned()
            .collect()
    }

    /// Delete a webhook behind the bot's back, as a server admin might.
    pub fn delete_webhook(&self, id: u64) {
        self.lock().webhooks.retain(|w| w.id != id);
    }

    /// Emojis `user` has on `message`.
    pub fn reactions_of(&self, user: u64, message: u64) -> Vec<String> {
        self.lock()
            .reactions
            .iter()
            .filter(|(m, u, _)| *m == message && *u == user)
            .map(|(_, _, e)| e.clone())
            .collect()
    }

    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Wait until `ready` holds for the state, polling; panics with `what` on timeout.
    pub async fn wait_until(&self, timeout: Duration, what: &str, ready: impl Fn(&State) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if ready(&self.lock()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Discord double never saw: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait for a message in `channel` matching `pred` and return it.
    pub async fn wait_for_message(
        &self,
        channel: u64,
        timeout: Duration,
        pred: impl Fn(&MessageRec) -> bool,
    ) -> MessageRec {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.messages_in(channel).into_iter().find(&pred) {
                return m;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "no matching message in channel {channel} within {timeout:?}; it has: {:#?}",
                    self.messages_in(channel)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until a bot has identified on the gateway and holds a live connection.
    pub async fn wait_for_bot(&self, timeout: Duration) {
        self.wait_until(timeout, "a bot connected to the gateway", |s| {
            s.sessions.values().any(|session| session.live.is_some())
        })
        .await;
    }

    // ---- faults ----

    /// The next `count` message sends (bot or webhook) answer 429 with `retry-after`.
    pub fn rate_limit_next(&self, count: u32, retry_after: Duration) {
        let mut state = self.lock();
        state.rate_limit_next = count;
        state.retry_after_secs = retry_after.as_secs_f64();
    }

    pub fn rate_limited_count(&self) -> u32 {
        self.lock().rate_limited
    }

    /// Cut every live gateway connection without a close frame; sessions stay resumable.
    pub fn drop_gateway(&self) -> usize {
        self.lock().command_live(|| WsCommand::Drop)
    }

    /// Send INVALID_SESSION (not resumable) on every live connection and forget the sessions.
    pub fn invalidate_sessions(&self) -> usize {
        let mut state = self.lock();
        let told =
            state.command_live(|| WsCommand::Send(json!({ "op": 9, "d": false }).to_string()));
        state.sessions.clear();
        told
    }

    /// Wait until `message` reads `content`, as after an edit.
    pub async fn wait_for_edit(&self, message: u64, content: &str, timeout: Duration) {
        let what = format!("message {message} to read {content:?}");
        self.wait_until(timeout, &what, |st| {
            st.message(message).is_some_and(|m| m.content == content)
        })
        .await;
    }

    /// The presences `bot` set over the gateway (op 3 payloads), in order.
    pub fn presences_of(&self, bot: u64) -> Vec<Value> {
        self.lock()
            .presence_updates
            .iter()
            .filter(|(b, _)| *b == bot)
            .map(|(_, d)| d.clone())
            .collect()
    }

    pub fn identify_count(&self) -> u32 {
        self.lock().identifies
    }

    pub fn resume_count(&self) -> u32 {
        self.lock().resumes
    }

    pub fn heartbeat_count(&self) -> u32 {
        self.lock().heartbeats
    }
}

impl Drop for DiscordDouble {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}
