//! What the double's Discord holds: users, guilds, channels, messages,
//! webhooks, gateway sessions, and the faults a test asked for. One mutex
//! guards it all; REST handlers, the gateway and the control API share it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::json as shapes;

/// Discord permission bits the double looks at.
pub const ADMINISTRATOR: u64 = 1 << 3;
pub const MANAGE_MESSAGES: u64 = 1 << 13;
pub const MANAGE_WEBHOOKS: u64 = 1 << 29;

/// Gateway intents the double honours.
pub const INTENT_GUILD_MEMBERS: u64 = 1 << 1;
pub const INTENT_GUILD_PRESENCES: u64 = 1 << 8;
pub const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;
pub const PRIVILEGED_INTENTS: u64 =
    INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT;

#[derive(Debug, Clone)]
pub struct UserRec {
    pub id: u64,
    pub username: String,
    pub global_name: Option<String>,
    pub bot: bool,
}

#[derive(Debug, Clone)]
pub struct RoleRec {
    pub id: u64,
    pub name: String,
    pub permissions: u64,
}

#[derive(Debug, Clone)]
pub struct ChannelRec {
    pub id: u64,
    pub guild_id: u64,
    pub name: String,
    /// Discord's channel type: 0 text, 2 voice, 4 category.
    pub kind: u8,
    pub position: usize,
    pub topic: Option<String>,
    /// False for a channel whose permissions hide it from bots: it is
    /// left out of GUILD_CREATE and REST answers 403 Missing Access.
    pub visible_to_bot: bool,
}

#[derive(Debug, Clone)]
pub struct MemberRec {
    pub user_id: u64,
    pub nick: Option<String>,
    pub roles: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct GuildRec {
    pub id: u64,
    pub name: String,
    pub owner_id: u64,
    pub roles: Vec<RoleRec>,
    pub channels: Vec<ChannelRec>,
    pub members: Vec<MemberRec>,
}

/// A message as the double stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRec {
    pub id: u64,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    /// The user who posted it; for a webhook message, the bot that executed it.
    pub author_id: u64,
    /// The name shown: the webhook's username override, or the user's username.
    pub author_name: String,
    pub webhook_id: Option<u64>,
    pub content: String,
    pub reply_to: Option<u64>,
    pub edited_ms: Option<u64>,
    pub deleted: bool,
    /// Files attached: (file name, URL). Uploads come last, in order
    /// ([`State::create_message`] lists them).
    pub attachments: Vec<(String, String)>,
    /// Files a bot or webhook uploaded with the message, served at their
    /// attachment URLs.
    pub files: Vec<UploadRec>,
    /// The avatar URL a webhook post asked to be shown with.
    pub avatar_url: Option<String>,
}

impl MessageRec {
    /// The upload behind an attachment, if the attachment is one.
    pub fn upload_of(&self, attachment: usize) -> Option<&UploadRec> {
        let first_upload = self.attachments.len().checked_sub(self.files.len())?;
        self.files.get(attachment.checked_sub(first_upload)?)
    }
}

/// A file uploaded in a multipart message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRec {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct WebhookRec {
    pub id: u64,
    pub token: String,
    pub guild_id: u64,
    pub channel_id: u64,
    pub name: String,
    pub creator_id: u64,
}

/// What the gateway task of a live connection is told to do.
#[derive(Debug)]
pub enum WsCommand {
    Send(String),
    /// Close with this code and reason (a Discord close code).
    Close(u16, String),
    /// Drop the TCP connection without a close frame, as a network failure does.
    Drop,
}

/// A gateway session: survives its connection, so that a RESUME can replay
/// what was dispatched while the bot was away.
#[derive(Debug)]
pub struct GatewaySession {
    /// The bot whose token identified the session.
    pub bot: u64,
    pub intents: u64,
    pub seq: u64,
    /// Every dispatch of the session, for replay on RESUME.
    pub sent: Vec<(u64, String)>,
    /// The connection currently attached to the session, if any, by its number.
    pub live: Option<(u64, mpsc::UnboundedSender<WsCommand>)>,
}

impl GatewaySession {
    /// Number a dispatch and keep it for replay; returns the frame.
    pub fn record(&mut self, event: &str, data: Value) -> String {
        self.seq += 1;
        let frame = json!({ "op": 0, "s": self.seq, "t": event, "d": data }).to_string();
        self.sent.push((self.seq, frame.clone()));
        frame
    }

    /// Record a dispatch and send it on the connection attached, if any.
    pub fn dispatch(&mut self, event: &str, data: Value) {
        let frame = self.record(event, data);
        if let Some((_, live)) = &self.live {
            let _ = live.send(WsCommand::Send(frame));
        }
    }
}

pub struct State {
    pub next_id: u64,
    /// The gateway's own bot.
    pub bot_id: u64,
    /// Every bot token Discord knows (the gateway's and users' personal
    /// bots), with the bot user it authenticates.
    pub bots: BTreeMap<String, u64>,
    pub application_id: u64,
    /// Privileged intents the bot's application was granted in the developer portal.
    pub granted_intents: u64,
    pub bot_can_manage_webhooks: bool,
    pub users: BTreeMap<u64, UserRec>,
    pub guilds: Vec<GuildRec>,
    pub messages: Vec<MessageRec>,
    pub webhooks: Vec<WebhookRec>,
    /// Direct-message channel per (bot, user): a user has a separate DM
    /// channel with each bot, as on Discord.
    pub dm_channels: BTreeMap<(u64, u64), u64>,
    /// (message, user, emoji) for every reaction present.
    pub reactions: Vec<(u64, u64, String)>,
    /// Channels the gateway bot said it was typing in, in order.
    pub bot_typing: Vec<u64>,
    /// (bot, channel) for every bot's typing, in order.
    pub bots_typing: Vec<(u64, u64)>,
    /// The next this-many message sends answer 429.
    pub rate_limit_next: u32,
    pub retry_after_secs: f64,
    pub rate_limited: u32,
    /// "METHOD /path" of every REST request, in order.
    pub requests: Vec<String>,
    pub sessions: BTreeMap<String, GatewaySession>,
    pub identifies: u32,
    /// (bot, the `d` of op 3) for every presence a bot set, in order.
    pub presence_updates: Vec<(u64, Value)>,
    pub resumes: u32,
    pub heartbeats: u32,
    pub gateway_port: u16,
}

impl State {
    pub fn new(bot_token: &str) -> State {
        let mut state = State {
            next_id: 0,
            bot_id: 0,
            bots: BTreeMap::new(),
            application_id: 0,
            granted_intents: PRIVILEGED_INTENTS,
            bot_can_manage_webhooks: true,
            users: BTreeMap::new(),
            guilds: Vec::new(),
            messages: Vec::new(),
            webhooks: Vec::new(),
            dm_channels: BTreeMap::new(),
            reactions: Vec::new(),
            bot_typing: Vec::new(),
            bots_typing: Vec::new(),
            rate_limit_next: 0,
            retry_after_secs: 0.2,
            rate_limited: 0,
            requests: Vec::new(),
            sessions: BTreeMap::new(),
            identifies: 0,
            presence_updates: Vec::new(),
            resumes: 0,
            heartbeats: 0,
            gateway_port: 0,
        };
        state.application_id = state.snowflake();
        state.bot_id = state.add_bot("estuary-bot", bot_token);
        state
    }

    /// A bot user that `token` authenticates.
    pub fn add_bot(&mut self, username: &str, token: &str) -> u64 {
        let id = self.add_user(username, None, true);
        self.bots.insert(token.to_owned(), id);
        id
    }

    /// The bot a token authenticates.
    pub fn bot_of_token(&self, token: &str) -> Option<u64> {
        self.bots.get(token).copied()
    }

    /// A bot's application: a personal bot's has the bot user's id, as
    /// Discord's applications made since 2016 do.
    pub fn application_of(&self, bot: u64) -> u64 {
        if bot == self.bot_id {
            self.application_id
        } else {
            bot
        }
    }

    pub fn is_registered_bot(&self, user: u64) -> bool {
        self.bots.values().any(|b| *b == user)
    }

    /// A new snowflake: the time since Discord's epoch in the high bits, a
    /// counter in the low ones, so ids sort by creation and carry a time.
    pub fn snowflake(&mut self) -> u64 {
        self.next_id += 1;
        ((shapes::now_ms() - shapes::DISCORD_EPOCH_MS) << 22) | (self.next_id & 0x3f_ffff)
    }

    pub fn add_user(&mut self, username: &str, global_name: Option<&str>, bot: bool) -> u64 {
        let id = self.snowflake();
        self.users.insert(
            id,
            UserRec {
                id,
                username: username.to_owned(),
                global_name: global_name.map(str::to_owned),
                bot,
            },
        );
        id
    }

    pub fn user(&self, id: u64) -> &UserRec {
        self.users
            .get(&id)
            .unwrap_or_else(|| panic!("the double has no user {id}"))
    }

    pub fn guild(&self, id: u64) -> Option<&GuildRec> {
        self.guilds.iter().find(|g| g.id == id)
    }

    pub fn guild_mut(&mut self, id: u64) -> &mut GuildRec {
        self.guilds
            .iter_mut()
            .find(|g| g.id == id)
            .unwrap_or_else(|| panic!("the double has no guild {id}"))
    }

    pub fn is_member(&self, guild: u64, user: u64) -> bool {
        self.member(guild, user).is_some()
    }

    pub fn member(&self, guild: u64, user: u64) -> Option<&MemberRec> {
        self.guild(guild)?
            .members
            .iter()
            .find(|m| m.user_id == user)
    }

    pub fn channel(&self, id: u64) -> Option<&ChannelRec> {
        self.guilds
            .iter()
            .flat_map(|g| g.channels.iter())
            .find(|c| c.id == id)
    }

    pub fn message(&self, id: u64) -> Option<&MessageRec> {
        self.messages.iter().find(|m| m.id == id)
    }

    pub fn message_mut(&mut self, id: u64) -> Option<&mut MessageRec> {
        self.messages.iter_mut().find(|m| m.id == id)
    }

    /// The guild of a channel, or `None` for a DM channel.
    pub fn guild_of(&self, channel: u64) -> Option<u64> {
        self.channel(channel).map(|c| c.guild_id)
    }

    /// The (bot, user) a DM channel is between.
    pub fn dm_pair(&self, channel: u64) -> Option<(u64, u64)> {
        self.dm_channels
            .iter()
            .find(|(_, c)| **c == channel)
            .map(|(pair, _)| *pair)
    }

    /// The DM channel between a bot and a user, opened on first use.
    pub fn dm_channel(&mut self, bot: u64, user: u64) -> u64 {
        if let Some(channel) = self.dm_channels.get(&(bot, user)) {
            return *channel;
        }
        let channel = self.snowflake();
        self.dm_channels.insert((bot, user), channel);
        channel
    }

    /// Whether a user holds a permission in a guild (owner or through a role).
    pub fn has_permission(&self, user: u64, guild: u64, permission: u64) -> bool {
        let Some(g) = self.guild(guild) else {
            return false;
        };
        if g.owner_id == user {
            return true;
        }
        let Some(member) = g.members.iter().find(|m| m.user_id == user) else {
            return false;
        };
        g.roles
            .iter()
            .filter(|r| member.roles.contains(&r.id))
            .any(|r| r.permissions & (permission | ADMINISTRATOR) != 0)
    }

    /// Store a message, list its uploads as attachments, and dispatch
    /// MESSAGE_CREATE for it.
    pub fn create_message(&mut self, mut m: MessageRec) -> MessageRec {
        m.id = self.snowflake();
        for file in &m.files {
            let url = self.attachment_url(m.channel_id, m.id, &file.name);
            m.attachments.push((file.name.clone(), url));
        }
        self.messages.push(m.clone());
        let payload = shapes::message(self, &m);
        self.dispatch("MESSAGE_CREATE", payload);
        m
    }

    /// Where the double serves an uploaded file, as Discord's CDN does
    /// (without auth, on the API's own port here).
    pub fn attachment_url(&self, channel: u64, message: u64, file_name: &str) -> String {
        format!(
            "http://127.0.0.1:{}/attachments/{channel}/{message}/{}",
            self.gateway_port,
            path_segment(file_name)
        )
    }

    /// Send a dispatch (op 0) to the gateway sessions, live or waiting for a
    /// RESUME, of the bots Discord routes it to: an event of a guild to the
    /// guild's bots, one of a DM channel to that channel's bot, others to all.
    pub fn dispatch(&mut self, event: &str, data: Value) {
        let audience: BTreeSet<u64> = self
            .bots
            .values()
            .copied()
            .filter(|bot| self.routed_to(*bot, &data))
            .collect();
        self.dispatch_to(&audience, event, data);
    }

    fn routed_to(&self, bot: u64, data: &Value) -> bool {
        if let Some(guild) = snowflake_field(data, "guild_id") {
            return self.is_member(guild, bot);
        }
        match snowflake_field(data, "channel_id").and_then(|c| self.dm_pair(c)) {
            Some((dm_bot, _)) => dm_bot == bot,
            None => true,
        }
    }

    /// Send a dispatch to the sessions of `bots`, with each session's next
    /// sequence number and what its intents let through.
    pub fn dispatch_to(&mut self, bots: &BTreeSet<u64>, event: &str, data: Value) {
        let sessions = self.sessions.values_mut().filter(|s| bots.contains(&s.bot));
        for session in sessions {
            let mut data = data.clone();
            let content_hidden = session.intents & INTENT_MESSAGE_CONTENT == 0;
            if content_hidden && event.starts_with("MESSAGE_") {
                // Without the MESSAGE_CONTENT intent Discord blanks the content.
                if let Some(content) = data.get_mut("content") {
                    *content = json!("");
                }
            }
            if event == "PRESENCE_UPDATE" && session.intents & INTENT_GUILD_PRESENCES == 0 {
                continue;
            }
            session.dispatch(event, data);
        }
    }

    /// Tell every live gateway connection to do something; returns how many there were.
    pub fn command_live(&mut self, make: impl Fn() -> WsCommand) -> usize {
        let mut told = 0;
        for session in self.sessions.values_mut() {
            if let Some((_, live)) = &session.live {
                if live.send(make()).is_ok() {
                    told += 1;
                }
            }
        }
        told
    }
}

/// A snowflake field of a dispatch's data (Discord writes them as strings).
fn snowflake_field(data: &Value, field: &str) -> Option<u64> {
    data.get(field)?.as_str()?.parse().ok()
}

/// A file name as one URL path segment: unreserved characters as they are,
/// the rest percent-encoded.
fn path_segment(name: &str) -> String {
    let mut segment = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            segment.push(char::from(b));
        } else {
            segment.push_str(&format!("%{b:02X}"));
        }
    }
    segment
}
