//! The gateway's one Discord bot: a serenity client that every XMPP user's
//! session shares. It connects once per gateway, keeps serenity's cache of
//! guilds, channels and members, and fans each Discord event out to the
//! sessions it concerns (those in the channel, or the DM partner's).
//!
//! serenity runs every event handler on a task of its own, so two events
//! that arrive together may be handled in either order. Messages of a
//! channel are therefore held for a moment and released in snowflake
//! order, and an edit, delete or reaction waits (briefly) for the message
//! it is about to have been relayed first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use estuary_bridge::{
    Affiliation, Attachment, ChatState, EventSender, Occupant, PresenceShow, RemoteAddress,
    RemoteEvent, RemoteMessage, RemotePresence, Role,
};
use serenity::all::{
    ActivityData, Cache, ChannelId, ChannelType, Client, ClientBuilder, Context, EventHandler,
    GatewayIntents, GuildChannel, GuildId, GuildMemberUpdateEvent, Http, HttpBuilder, Member,
    Message, MessageId, MessageUpdateEvent, OnlineStatus, Presence, Reaction, ReactionType, Ready,
    ShardManager, TypingStartEvent, User, UserId,
};
use serenity::gateway::GatewayError;
use tokio::sync::{watch, Notify};
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::avatars::AvatarServer;
use crate::error::DiscordError;
use crate::options::DiscordOptions;
use crate::post::Poster;
use crate::text::{self, Mention};

/// How long a message is held so that one handled early can be put behind
/// an earlier one that serenity handed to a slower task.
const ORDERING_HOLD: Duration = Duration::from_millis(40);
/// How long an edit, delete or reaction waits for its message to be relayed.
const DEPENDENT_WAIT: Duration = Duration::from_secs(2);
/// Only messages younger than this are waited for; older ones were relayed
/// long ago, or before the gateway started.
const RECENT: Duration = Duration::from_secs(30);
/// Message authors remembered, for deletes (Discord does not say whose message went).
const REMEMBERED_MESSAGES: usize = 10_000;

const BASE_INTENTS: GatewayIntents = GatewayIntents::GUILDS
    .union(GatewayIntents::GUILD_MESSAGES)
    .union(GatewayIntents::GUILD_MESSAGE_REACTIONS)
    .union(GatewayIntents::GUILD_MESSAGE_TYPING)
    .union(GatewayIntents::GUILD_WEBHOOKS)
    .union(GatewayIntents::DIRECT_MESSAGES)
    .union(GatewayIntents::DIRECT_MESSAGE_REACTIONS)
    .union(GatewayIntents::DIRECT_MESSAGE_TYPING);

/// Message text, member lists and presence: Discord grants these only when
/// they are switched on for the bot in the developer portal.
const PRIVILEGED_INTENTS: GatewayIntents = GatewayIntents::MESSAGE_CONTENT
    .union(GatewayIntents::GUILD_MEMBERS)
    .union(GatewayIntents::GUILD_PRESENCES);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotStatus {
    Connecting,
    Ready,
    /// Given up for good (the token was refused); the reason is for users.
    Failed(String),
}

/// One logged-in XMPP user, as the bot sees them.
struct Subscriber {
    events: EventSender,
    /// Joined channels, with the user's nick in each.
    rooms: HashMap<u64, String>,
    /// Discord users the XMPP user has written to directly.
    dm_partners: HashSet<u64>,
}

/// Where an event goes.
#[derive(Debug, Clone)]
enum Audience {
    Room(u64),
    /// The XMPP users in the room but one: the one who wrote the message,
    /// who sees it by the core's reflection instead.
    RoomExcept(u64, String),
    /// The XMPP users who write with this Discord user.
    Direct(u64),
}

/// Messages of one channel held for ordering: id → (audience, event).
type HeldMessages = BTreeMap<u64, (Audience, RemoteEvent)>;

#[derive(Default)]
struct Relayed {
    order: VecDeque<u64>,
    /// Message id → (author, nick, audience), for the messages relayed recently.
    authors: HashMap<u64, (RemoteAddress, Option<String>, Audience)>,
}

pub struct Bot {
    pub(crate) options: DiscordOptions,
    /// The XMPP user whose own bot this is (for their direct messages);
    /// `None` for the gateway's bot.
    owner: Option<String>,
    /// For the bridge's own REST calls.
    pub(crate) rest: Arc<Http>,
    cache: RwLock<Option<Arc<Cache>>>,
    status: watch::Sender<BotStatus>,
    user_id: AtomicU64,
    /// Sessions were told the connection was lost, and must hear it is back.
    told_disconnected: AtomicBool,
    /// The gateway is gone: stop connecting.
    stopping: AtomicBool,
    started: AtomicBool,
    shards: Mutex<Option<Arc<ShardManager>>>,
    /// Serves users' avatars for webhook posts, when configured.
    pub(crate) avatars: Option<Arc<AvatarServer>>,
    /// Discord user → the bot's direct message channel with them, which
    /// Discord keeps the same: asked once, not for every message.
    pub(crate) dm_channels: Mutex<HashMap<u64, u64>>,
    /// The owner's XMPP presence, which their own bot shows (again after
    /// each connection).
    shown_presence: Mutex<Option<(Option<ActivityData>, OnlineStatus)>>,
    next_generation: AtomicU64,
    /// By (account, generation): an old login still finishing must not
    /// take the place of the new one that replaced it.
    subscribers: Mutex<HashMap<(String, u64), Subscriber>>,
    /// New messages per channel, by id, waiting to be released in order.
    pending: Mutex<HashMap<u64, HeldMessages>>,
    channel_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    relayed: Mutex<Relayed>,
    relayed_changed: Notify,
    /// Messages the gateway posted for XMPP users: id → (account, nick).
    posted_for: Mutex<HashMap<u64, (String, String)>>,
    posted_order: Mutex<VecDeque<u64>>,
    posted_changed: Notify,
    /// (message, emoji) → the XMPP users who reacted with it through the bot.
    xmpp_reactions: Mutex<HashMap<(u64, String), HashSet<String>>>,
    /// (message, Discord user) → the emojis that user has on it.
    reactions: Mutex<HashMap<(u64, u64), BTreeSet<String>>>,
    pub(crate) poster: Poster,
}

/// An `Http` for the options: through `api_base` when set (rate limiter off,
/// since serenity 0.12's ignores the base), else to Discord with it on.
pub fn make_http(options: &DiscordOptions) -> Http {
    let builder = HttpBuilder::new(&options.bot_token);
    match &options.api_base {
        Some(base) => builder.proxy(base).ratelimiter_disabled(true).build(),
        None => builder.build(),
    }
}

impl Bot {
    /// The gateway's bot, shared by every user, with the server of their
    /// avatars when one is configured.
    pub fn new(options: DiscordOptions, avatars: Option<Arc<AvatarServer>>) -> Arc<Bot> {
        Self::build(options, None, avatars)
    }

    /// A user's own bot, registered with their token: their direct
    /// messages go out from it, and every direct message to it is theirs.
    pub fn personal(options: &DiscordOptions, token: &str, owner: &str) -> Arc<Bot> {
        let options = DiscordOptions {
            bot_token: token.to_owned(),
            ..options.clone()
        };
        Self::build(options, Some(owner.to_owned()), None)
    }

    fn build(
        options: DiscordOptions,
        owner: Option<String>,
        avatars: Option<Arc<AvatarServer>>,
    ) -> Arc<Bot> {
        let (status, _) = watch::channel(BotStatus::Connecting);
        Arc::new(Bot {
            rest: Arc::new(make_http(&options)),
            options,
            owner,
            cache: RwLock::new(None),
            status,
            user_id: AtomicU64::new(0),
            told_disconnected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            started: AtomicBool::new(false),
            shards: Mutex::new(None),
            shown_presence: Mutex::new(None),
            avatars,
            dm_channels: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            subscribers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            channel_locks: Mutex::new(HashMap::new()),
            relayed: Mutex::new(Relayed::default()),
            relayed_changed: Notify::new(),
            posted_for: Mutex::new(HashMap::new()),
            posted_order: Mutex::new(VecDeque::new()),
            posted_changed: Notify::new(),
            reactions: Mutex::new(HashMap::new()),
            xmpp_reactions: Mutex::new(HashMap::new()),
            poster: Poster::default(),
        })
    }

    pub fn user_id(&self) -> u64 {
        self.user_id.load(Ordering::Relaxed)
    }

    pub fn cache(&self) -> Option<Arc<Cache>> {
        self.cache.read().expect("not poisoned").clone()
    }

    pub fn status(&self) -> BotStatus {
        self.status.borrow().clone()
    }

    /// Wait until the bot is ready or has failed, at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), DiscordError> {
        let mut status = self.status.subscribe();
        let outcome = tokio::time::timeout(
            timeout,
            status.wait_for(|s| !matches!(s, BotStatus::Connecting)),
        )
        .await;
        match outcome {
            Ok(Ok(status)) => match &*status {
                BotStatus::Ready => Ok(()),
                BotStatus::Failed(reason) => Err(DiscordError::NotConnected(reason.clone())),
                BotStatus::Connecting => unreachable!("waited for another state"),
            },
            Ok(Err(_)) | Err(_) => Err(DiscordError::NotConnected(
                "still connecting to Discord".to_owned(),
            )),
        }
    }

    /// Start connecting on the current tokio runtime, once; false when
    /// there is no runtime to start on yet.
    pub fn start(self: &Arc<Self>) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if !self.started.swap(true, Ordering::SeqCst) {
            runtime.spawn(self.clone().run().instrument(info_span!("discord_bot")));
        }
        true
    }

    /// Connect and stay connected: check the token, then run the gateway,
    /// starting it again (with backoff) whenever it ends.
    async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.rest.get_current_user().await {
                Ok(user) => {
                    self.user_id.store(user.id.get(), Ordering::Relaxed);
                    info!(bot = %user.name, "the Discord bot token is valid");
                    break;
                }
                Err(_) if self.is_stopping() => return,
                Err(e) => {
                    let e = DiscordError::from_serenity("check the bot token", e);
                    if e.status() == Some(401) {
                        error!(
                            "Discord refused the bot token (401): {}",
                            self.token_advice()
                        );
                        self.status.send_replace(BotStatus::Failed(
                            DiscordError::TokenRefused.to_string(),
                        ));
                        return;
                    }
                    warn!(error = %e, retry_in = ?backoff, "cannot reach Discord");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
        let mut intents = BASE_INTENTS | PRIVILEGED_INTENTS;
        let mut backoff = Duration::from_secs(1);
        let mut was_ready = false;
        loop {
            let builder = ClientBuilder::new_with_http(make_http(&self.options), intents)
                .event_handler(Handler { bot: self.clone() });
            let mut client: Client = match builder.await {
                Ok(client) => client,
                Err(e) => {
                    warn!(error = %crate::error::redact(&e.to_string()), "cannot build the Discord client");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            };
            *self.cache.write().expect("not poisoned") = Some(client.cache.clone());
            *self.shards.lock().expect("not poisoned") = Some(client.shard_manager.clone());
            if self.is_stopping() {
                return;
            }
            let ended = client.start().await;
            if self.is_stopping() {
                info!("the Discord bot stopped");
                return;
            }
            let reason = match &ended {
                Ok(()) => "the gateway connection ended".to_owned(),
                Err(e) => crate::error::redact(&e.to_string()),
            };
            match ended {
                Err(serenity::Error::Gateway(GatewayError::InvalidAuthentication)) => {
                    error!(
                        "Discord's gateway refused the bot token: {}",
                        self.token_advice()
                    );
                    self.status
                        .send_replace(BotStatus::Failed(DiscordError::TokenRefused.to_string()));
                    self.broadcast(RemoteEvent::Disconnected {
                        reason,
                        server: None,
                    })
                    .await;
                    return;
                }
                Err(serenity::Error::Gateway(GatewayError::DisallowedGatewayIntents))
                    if intents.intersects(PRIVILEGED_INTENTS) =>
                {
                    error!(
                        "Discord refused the privileged intents (Message Content, Server Members, \
                         Presence): switch them on for the bot in the developer portal. Going on \
                         without them: message text, member lists and presence will be missing"
                    );
                    intents = BASE_INTENTS;
                    continue;
                }
                _ => {}
            }
            if self.status() == BotStatus::Ready {
                was_ready = true;
            }
            warn!(%reason, retry_in = ?backoff, "the Discord gateway connection ended");
            self.status.send_replace(BotStatus::Connecting);
            if was_ready {
                self.told_disconnected.store(true, Ordering::Relaxed);
                self.broadcast(RemoteEvent::Disconnected {
                    reason,
                    server: None,
                })
                .await;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    /// What an admin (or the user, for their own bot) does about a refused token.
    fn token_advice(&self) -> &'static str {
        match self.owner {
            None => "the Discord gateway cannot work; check `bot_token` in [gateway.options]",
            Some(_) => "a user's own bot cannot connect; they must register a new token",
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Disconnect for good: the gateway that owned the bot is gone.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let shards = self.shards.lock().expect("not poisoned").take();
        if let (Some(shards), Ok(runtime)) = (shards, tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { shards.shutdown_all().await });
        }
    }

    async fn set_ready(&self) {
        if self.status() != BotStatus::Ready {
            info!("the Discord bot is ready");
            self.status.send_replace(BotStatus::Ready);
        }
        if self.told_disconnected.swap(false, Ordering::Relaxed) {
            self.broadcast(RemoteEvent::Reconnected { server: None })
                .await;
        }
    }

    /// Show the owner's XMPP presence and status text as the bot's own,
    /// now and after every reconnection.
    pub async fn show_presence(&self, show: PresenceShow, status: Option<&str>) {
        let online = match show {
            PresenceShow::Online | PresenceShow::Chat => OnlineStatus::Online,
            PresenceShow::Away | PresenceShow::ExtendedAway => OnlineStatus::Idle,
            PresenceShow::DoNotDisturb => OnlineStatus::DoNotDisturb,
            PresenceShow::Offline => OnlineStatus::Invisible,
        };
        let activity = status
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ActivityData::custom);
        *self.shown_presence.lock().expect("not poisoned") = Some((activity.clone(), online));
        let shards = self.shards.lock().expect("not poisoned").clone();
        if let Some(shards) = shards {
            for shard in shards.runners.lock().await.values() {
                shard.runner_tx.set_presence(activity.clone(), online);
            }
        }
    }

    // ---- sessions ----

    /// Start sending a logged-in user's events; returns the login's generation.
    pub fn subscribe(&self, account: &str, events: EventSender) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.subscribers.lock().expect("not poisoned");
        // DM partners survive a new login of the same account.
        let dm_partners = subscribers
            .iter()
            .filter(|((a, _), _)| a == account)
            .flat_map(|(_, s)| s.dm_partners.iter().copied())
            .collect();
        subscribers.insert(
            (account.to_owned(), generation),
            Subscriber {
                events,
                rooms: HashMap::new(),
                dm_partners,
            },
        );
        generation
    }

    pub fn unsubscribe(&self, account: &str, generation: u64) {
        self.subscribers
            .lock()
            .expect("not poisoned")
            .remove(&(account.to_owned(), generation));
    }

    fn with_subscriber<T>(
        &self,
        account: &str,
        generation: u64,
        f: impl FnOnce(&mut Subscriber) -> T,
    ) -> Option<T> {
        let mut subscribers = self.subscribers.lock().expect("not poisoned");
        subscribers
            .get_mut(&(account.to_owned(), generation))
            .map(f)
    }

    pub fn enter_room(&self, account: &str, generation: u64, channel: u64, nick: &str) {
        self.with_subscriber(account, generation, |s| {
            s.rooms.insert(channel, nick.to_owned());
        });
    }

    pub fn leave_room(&self, account: &str, generation: u64, channel: u64) {
        self.with_subscriber(account, generation, |s| {
            s.rooms.remove(&channel);
        });
    }

    pub fn room_nick(&self, account: &str, generation: u64, channel: u64) -> Option<String> {
        self.with_subscriber(account, generation, |s| s.rooms.get(&channel).cloned())
            .flatten()
    }

    pub fn add_dm_partner(&self, account: &str, generation: u64, user: u64) {
        self.with_subscriber(account, generation, |s| {
            s.dm_partners.insert(user);
        });
    }

    fn recipients(&self, audience: &Audience) -> Vec<EventSender> {
        let subscribers = self.subscribers.lock().expect("not poisoned");
        subscribers
            .iter()
            .filter(|((account, _), s)| match audience {
                Audience::Room(channel) => s.rooms.contains_key(channel),
                Audience::RoomExcept(channel, except) => {
                    s.rooms.contains_key(channel) && account != except
                }
                Audience::Direct(user) => {
                    s.dm_partners.contains(user) || self.owner.as_deref() == Some(account.as_str())
                }
            })
            .map(|(_, s)| s.events.clone())
            .collect()
    }

    async fn send_to(&self, audience: Audience, event: RemoteEvent) {
        let recipients = self.recipients(&audience);
        if recipients.is_empty() {
            debug!(?audience, "no XMPP user to show this to");
        }
        for events in recipients {
            events.send(event.clone()).await;
        }
    }

    /// Tell every user the connection was lost or is back. Not from a
    /// user's own bot: their rooms are on the gateway's bot, and only their
    /// direct messages wait for their own.
    async fn broadcast(&self, event: RemoteEvent) {
        if self.owner.is_some() {
            return;
        }
        let all: Vec<EventSender> = self
            .subscribers
            .lock()
            .expect("not poisoned")
            .values()
            .map(|s| s.events.clone())
            .collect();
        for events in all {
            events.send(event.clone()).await;
        }
    }

    /// A guild channel the bot can see, looked up guild by guild.
    pub fn guild_channel(&self, channel: u64) -> Option<GuildChannel> {
        let cache = self.cache()?;
        let id = ChannelId::new(channel);
        cache
            .guilds()
            .into_iter()
            .find_map(|g| cache.guild(g).and_then(|g| g.channels.get(&id).cloned()))
    }

    // ---- names ----

    /// The nick a Discord user has in a guild's rooms: the server nick, else
    /// the global display name, else the username; with the username added
    /// when two members would otherwise share a nick.
    pub fn nick_in(&self, guild: Option<u64>, user: &User, member_nick: Option<&str>) -> String {
        let display = member_nick
            .or(user.global_name.as_deref())
            .unwrap_or(&user.name)
            .to_owned();
        let Some(guild) = guild else {
            return display;
        };
        let Some(cache) = self.cache() else {
            return display;
        };
        let Some(g) = cache.guild(GuildId::new(guild)) else {
            return display;
        };
        let shared = g
            .members
            .values()
            .filter(|m| m.user.id != user.id && m.display_name() == display)
            .count();
        if shared > 0 {
            format!("{display} ({})", user.name)
        } else {
            display
        }
    }

    /// Discord's markup made readable: `<@id>` → `@nick`, `<#id>` → `#name`.
    fn readable(&self, guild: Option<u64>, content: &str) -> String {
        let Some(cache) = self.cache() else {
            return content.to_owned();
        };
        text::render_mentions(content, |mention| match mention {
            Mention::User(id) => {
                let user = cache.user(UserId::new(id))?.clone();
                let member_nick = guild.and_then(|g| {
                    cache
                        .guild(GuildId::new(g))
                        .and_then(|g| g.members.get(&UserId::new(id)).and_then(|m| m.nick.clone()))
                });
                Some(format!(
                    "@{}",
                    self.nick_in(guild, &user, member_nick.as_deref())
                ))
            }
            Mention::Channel(id) => self.guild_channel(id).map(|c| format!("#{}", c.name)),
            Mention::Role(id) => guild.and_then(|g| {
                cache.guild(GuildId::new(g)).and_then(|g| {
                    g.roles
                        .get(&serenity::all::RoleId::new(id))
                        .map(|r| format!("@{}", r.name))
                })
            }),
        })
    }

    /// Members of a guild as (nick, id), for turning `@nick` into mentions.
    pub fn member_nicks(&self, guild: u64) -> Vec<(String, u64)> {
        let Some(cache) = self.cache() else {
            return Vec::new();
        };
        let members: Vec<(User, Option<String>)> = match cache.guild(GuildId::new(guild)) {
            Some(g) => g
                .members
                .values()
                .map(|m| (m.user.clone(), m.nick.clone()))
                .collect(),
            None => return Vec::new(),
        };
        members
            .iter()
            .map(|(u, nick)| (self.nick_in(Some(guild), u, nick.as_deref()), u.id.get()))
            .collect()
    }

    /// The room occupants of a guild channel: the members who can see it.
    pub fn occupants(&self, channel: u64) -> Vec<Occupant> {
        let Some(cache) = self.cache() else {
            return Vec::new();
        };
        let Some(guild_channel) = self.guild_channel(channel) else {
            return Vec::new();
        };
        let guild_id = guild_channel.guild_id;
        let members: Vec<(User, Option<String>, Affiliation, PresenceShow)> = {
            let Some(g) = cache.guild(guild_id) else {
                return Vec::new();
            };
            g.members
                .values()
                .filter(|m| m.user.id.get() != self.user_id())
                .filter(|m| g.user_permissions_in(&guild_channel, m).view_channel())
                .map(|m| {
                    let affiliation = if g.owner_id == m.user.id {
                        Affiliation::Owner
                    } else if g.member_permissions(m).administrator() {
                        Affiliation::Admin
                    } else {
                        Affiliation::Member
                    };
                    let show = g
                        .presences
                        .get(&m.user.id)
                        .map(|p| show_of(p.status))
                        .unwrap_or(PresenceShow::Online);
                    (m.user.clone(), m.nick.clone(), affiliation, show)
                })
                .collect()
        };
        members
            .into_iter()
            .map(|(user, nick, affiliation, show)| Occupant {
                user: Some(RemoteAddress::new(user.id.to_string())),
                nick: self.nick_in(Some(guild_id.get()), &user, nick.as_deref()),
                affiliation,
                role: match affiliation {
                    Affiliation::Owner | Affiliation::Admin => Role::Moderator,
                    _ => Role::Participant,
                },
                show,
                status: None,
            })
            .collect()
    }

    // ---- ordering ----

    fn channel_lock(&self, channel: u64) -> Arc<tokio::sync::Mutex<()>> {
        self.channel_locks
            .lock()
            .expect("not poisoned")
            .entry(channel)
            .or_default()
            .clone()
    }

    /// Relay a new message, in snowflake order within its channel.
    async fn relay_in_order(&self, channel: u64, id: u64, audience: Audience, event: RemoteEvent) {
        self.pending
            .lock()
            .expect("not poisoned")
            .entry(channel)
            .or_default()
            .insert(id, (audience, event));
        tokio::time::sleep(ORDERING_HOLD).await;
        let lock = self.channel_lock(channel);
        let _in_order = lock.lock().await;
        let ready: Vec<(u64, (Audience, RemoteEvent))> = {
            let mut pending = self.pending.lock().expect("not poisoned");
            let Some(queue) = pending.get_mut(&channel) else {
                return;
            };
            let later = queue.split_off(&(id + 1));
            let ready = std::mem::replace(queue, later);
            ready.into_iter().collect()
        };
        for (id, (audience, event)) in ready {
            if let RemoteEvent::Message(m) = &event {
                self.remember(id, m.sender.clone(), m.nick.clone(), audience.clone());
            }
            self.send_to(audience, event).await;
        }
        self.relayed_changed.notify_waiters();
    }

    fn remember(&self, id: u64, sender: RemoteAddress, nick: Option<String>, audience: Audience) {
        let mut relayed = self.relayed.lock().expect("not poisoned");
        relayed.order.push_back(id);
        relayed.authors.insert(id, (sender, nick, audience));
        while relayed.order.len() > REMEMBERED_MESSAGES {
            if let Some(old) = relayed.order.pop_front() {
                relayed.authors.remove(&old);
            }
        }
    }

    fn author_of(&self, id: u64) -> Option<(RemoteAddress, Option<String>, Audience)> {
        self.relayed
            .lock()
            .expect("not poisoned")
            .authors
            .get(&id)
            .cloned()
    }

    /// Wait (briefly) until a recent message has been relayed, so that an
    /// event about it is not shown before it.
    async fn wait_relayed(&self, id: u64) {
        let age = MessageId::new(id).created_at().unix_timestamp();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if now - age > RECENT.as_secs() as i64 {
            return;
        }
        let deadline = tokio::time::Instant::now() + DEPENDENT_WAIT;
        loop {
            let changed = self.relayed_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.author_of(id).is_some() {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }

    /// Whether a message is the gateway's own (the bot's, or one of its
    /// webhooks'), which must never be bridged back.
    fn is_own(&self, author: u64, webhook: Option<u64>) -> bool {
        author == self.user_id() || webhook.is_some_and(|w| self.poster.is_own_webhook(w))
    }

    /// Remember that a message was posted for an XMPP user, so that the
    /// other XMPP users in the channel are shown it, and the author is not.
    pub fn note_posted(&self, id: u64, account: &str, nick: &str) {
        let mut order = self.posted_order.lock().expect("not poisoned");
        let mut posted = self.posted_for.lock().expect("not poisoned");
        posted.insert(id, (account.to_owned(), nick.to_owned()));
        order.push_back(id);
        while order.len() > REMEMBERED_MESSAGES {
            if let Some(old) = order.pop_front() {
                posted.remove(&old);
            }
        }
        drop(posted);
        drop(order);
        self.posted_changed.notify_waiters();
    }

    fn posted_by(&self, id: u64) -> Option<(String, String)> {
        self.posted_for
            .lock()
            .expect("not poisoned")
            .get(&id)
            .cloned()
    }

    /// Who the gateway posted a message for. The gateway's echo can come
    /// before the REST answer that tells the message id, hence the wait.
    async fn wait_posted(&self, id: u64) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + DEPENDENT_WAIT;
        loop {
            let changed = self.posted_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = self.posted_by(id) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// An XMPP user reacts with `emoji`; true when the bot must add it
    /// (nobody else of the gateway has it on the message yet).
    pub fn want_reaction(&self, message: u64, emoji: &str, account: &str) -> bool {
        let mut reactions = self.xmpp_reactions.lock().expect("not poisoned");
        let users = reactions.entry((message, emoji.to_owned())).or_default();
        let first = users.is_empty();
        users.insert(account.to_owned());
        first
    }

    /// An XMPP user takes `emoji` back; true when the bot must remove it
    /// (nobody else of the gateway still has it).
    pub fn drop_reaction(&self, message: u64, emoji: &str, account: &str) -> bool {
        let mut reactions = self.xmpp_reactions.lock().expect("not poisoned");
        let key = (message, emoji.to_owned());
        let Some(users) = reactions.get_mut(&key) else {
            return true;
        };
        users.remove(account);
        if users.is_empty() {
            reactions.remove(&key);
            true
        } else {
            false
        }
    }

    /// Tell the other XMPP users in a channel that one of them came or went.
    pub async fn announce(&self, channel: u64, account: &str, nick: &str, joined: bool) {
        let room = RemoteAddress::new(channel.to_string());
        let event = if joined {
            RemoteEvent::Join {
                room,
                occupant: self.xmpp_occupant(account, nick),
                is_self: false,
                nick_changed: false,
            }
        } else {
            RemoteEvent::Part {
                room,
                nick: nick.to_owned(),
                reason: None,
                is_self: false,
            }
        };
        self.send_to(Audience::RoomExcept(channel, account.to_owned()), event)
            .await;
    }

    /// The nicks of the other XMPP users in a channel.
    pub fn xmpp_occupants(&self, channel: u64, except: &str) -> Vec<Occupant> {
        self.subscribers
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|((account, _), _)| account.as_str() != except)
            .filter_map(|((account, _), s)| Some((account, s.rooms.get(&channel)?)))
            // One occupant per account, while an old login overlaps a new one.
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .map(|(account, nick)| self.xmpp_occupant(account, nick))
            .collect()
    }

    /// Whether the admin named this XMPP user among the gateway's moderators.
    pub fn is_moderator(&self, account: &str) -> bool {
        self.options.moderators.iter().any(|m| m == account)
    }

    /// An XMPP user in a channel, as the others see them.
    pub fn xmpp_occupant(&self, account: &str, nick: &str) -> Occupant {
        let (affiliation, role) = match self.is_moderator(account) {
            true => (Affiliation::Admin, Role::Moderator),
            false => (Affiliation::Member, Role::Participant),
        };
        Occupant {
            user: None,
            nick: nick.to_owned(),
            affiliation,
            role,
            show: PresenceShow::Online,
            status: None,
        }
    }

    /// The rooms of a login, with its nick in each.
    pub fn rooms_of(&self, account: &str, generation: u64) -> Vec<(u64, String)> {
        self.with_subscriber(account, generation, |s| {
            s.rooms.iter().map(|(c, n)| (*c, n.clone())).collect()
        })
        .unwrap_or_default()
    }

    // ---- Discord events ----

    async fn on_message(&self, message: Message) {
        let webhook = message.webhook_id.map(|w| w.get());
        let guild = message.guild_id.map(|g| g.get());
        let channel = message.channel_id.get();
        if self.is_own(message.author.id.get(), webhook) {
            // Never back to its author; to the other XMPP users in the room, as Discord shows it.
            if guild.is_some() {
                self.relay_own(channel, &message).await;
            }
            return;
        }
        let sender = RemoteAddress::new(message.author.id.to_string());
        let member_nick = message.member.as_ref().and_then(|m| m.nick.clone());
        let nick = match webhook {
            // Another integration's webhook: it has a name, not a member.
            Some(_) => message.author.name.clone(),
            None => self.nick_in(guild, &message.author, member_nick.as_deref()),
        };
        let body = self.readable(guild, &message.content);
        let attachments: Vec<Attachment> = message
            .attachments
            .iter()
            .map(|a| Attachment {
                url: a.url.clone(),
                name: Some(a.filename.clone()),
            })
            .collect();
        if body.trim().is_empty() && attachments.is_empty() {
            // Without the Message Content intent Discord sends no text (logged at connection).
            debug!(id = %message.id, "a message without text or attachments; not shown");
            return;
        }
        let audience = match guild {
            Some(_) => Audience::Room(channel),
            None => Audience::Direct(message.author.id.get()),
        };
        let remote = RemoteMessage {
            room: guild.map(|_| RemoteAddress::new(channel.to_string())),
            nick: guild.map(|_| nick),
            reply_to: message
                .message_reference
                .as_ref()
                .and_then(|r| r.message_id)
                .map(|id| id.to_string()),
            timestamp_ms: Some(message.timestamp.unix_timestamp() * 1000),
            attachments,
            ..RemoteMessage::text(message.id.to_string(), sender, body)
        };
        self.relay_in_order(
            channel,
            message.id.get(),
            audience,
            RemoteEvent::from(remote),
        )
        .await;
    }

    /// A message the gateway posted for an XMPP user, shown to the others.
    async fn relay_own(&self, channel: u64, message: &Message) {
        let id = message.id.get();
        let Some((account, nick)) = self.wait_posted(id).await else {
            debug!(
                id,
                "a message of the gateway's own, not posted for a user; not shown"
            );
            return;
        };
        let prefix = format!("**{nick}**: ");
        let body = message
            .content
            .strip_prefix(&prefix)
            .unwrap_or(&message.content);
        let remote = RemoteMessage {
            room: Some(RemoteAddress::new(channel.to_string())),
            nick: Some(nick.clone()),
            timestamp_ms: Some(message.timestamp.unix_timestamp() * 1000),
            ..RemoteMessage::text(
                id.to_string(),
                RemoteAddress::new(message.author.id.to_string()),
                body,
            )
        };
        let audience = Audience::RoomExcept(channel, account);
        self.relay_in_order(channel, id, audience, RemoteEvent::from(remote))
            .await;
    }

    async fn on_update(&self, update: MessageUpdateEvent) {
        let (Some(content), Some(author)) = (update.content, update.author) else {
            return; // An embed resolving, not an edit of the text.
        };
        let webhook = update.webhook_id.flatten().map(|w| w.get());
        let id = update.id.get();
        if self.is_own(author.id.get(), webhook) {
            let guild = update.guild_id;
            if let (Some(_), Some((account, nick))) = (guild, self.posted_by(id)) {
                let prefix = format!("**{nick}**: ");
                let body = content.strip_prefix(&prefix).unwrap_or(&content).to_owned();
                let channel = update.channel_id.get();
                let event = RemoteEvent::Edit {
                    room: Some(RemoteAddress::new(channel.to_string())),
                    sender: RemoteAddress::new(author.id.to_string()),
                    nick: Some(nick),
                    target: id.to_string(),
                    body,
                };
                self.send_to(Audience::RoomExcept(channel, account), event)
                    .await;
            }
            return;
        }
        self.wait_relayed(id).await;
        let guild = update.guild_id.map(|g| g.get());
        let channel = update.channel_id.get();
        let member_nick = update.member.flatten().and_then(|m| m.nick);
        let nick = match webhook {
            Some(_) => author.name.clone(),
            None => self.nick_in(guild, &author, member_nick.as_deref()),
        };
        let (room, audience) = match guild {
            Some(_) => (
                Some(RemoteAddress::new(channel.to_string())),
                Audience::Room(channel),
            ),
            None => (None, Audience::Direct(author.id.get())),
        };
        let event = RemoteEvent::Edit {
            room,
            sender: RemoteAddress::new(author.id.to_string()),
            nick: guild.map(|_| nick),
            target: id.to_string(),
            body: self.readable(guild, &content),
        };
        self.send_to(audience, event).await;
    }

    async fn on_delete(&self, channel: u64, id: u64, guild: Option<u64>) {
        self.wait_relayed(id).await;
        // Discord does not say whose message went. A message relayed before a
        // restart is unknown here: it is retracted in the channel's name, and
        // the core still finds it by id in the store.
        let (sender, nick, audience) = match self.author_of(id) {
            Some(known) => known,
            None if guild.is_some() => (
                RemoteAddress::new(channel.to_string()),
                None,
                Audience::Room(channel),
            ),
            None => return, // A direct message is only retracted by a known author.
        };
        let room = guild.map(|_| RemoteAddress::new(channel.to_string()));
        let event = RemoteEvent::Retract {
            room,
            sender,
            nick,
            target: id.to_string(),
        };
        self.send_to(audience, event).await;
    }

    async fn on_reaction(&self, reaction: Reaction, added: bool) {
        let Some(user) = reaction.user_id else {
            return;
        };
        if user.get() == self.user_id() {
            return;
        }
        let ReactionType::Unicode(emoji) = &reaction.emoji else {
            debug!("custom emoji reactions are not bridged");
            return;
        };
        let message = reaction.message_id.get();
        self.wait_relayed(message).await;
        let emojis: Vec<String> = {
            let mut reactions = self.reactions.lock().expect("not poisoned");
            let set = reactions.entry((message, user.get())).or_default();
            if added {
                set.insert(emoji.clone());
            } else {
                set.remove(emoji);
            }
            set.iter().cloned().collect()
        };
        let guild = reaction.guild_id.map(|g| g.get());
        let channel = reaction.channel_id.get();
        let nick = match (&reaction.member, self.cache()) {
            (Some(member), _) => Some(self.nick_in(guild, &member.user, member.nick.as_deref())),
            (None, Some(cache)) => cache
                .user(user)
                .map(|u| u.clone())
                .map(|u| self.nick_in(guild, &u, None)),
            (None, None) => None,
        };
        let (room, audience) = match guild {
            Some(_) => (
                Some(RemoteAddress::new(channel.to_string())),
                Audience::Room(channel),
            ),
            None => (None, Audience::Direct(user.get())),
        };
        let event = RemoteEvent::Reaction {
            room,
            sender: RemoteAddress::new(user.to_string()),
            nick,
            target: message.to_string(),
            emojis,
        };
        self.send_to(audience, event).await;
    }

    async fn on_typing(&self, typing: TypingStartEvent) {
        if typing.user_id.get() == self.user_id() {
            return;
        }
        let guild = typing.guild_id.map(|g| g.get());
        let channel = typing.channel_id.get();
        let nick = match (&typing.member, self.cache()) {
            (Some(member), _) => Some(self.nick_in(guild, &member.user, member.nick.as_deref())),
            (None, Some(cache)) => cache
                .user(typing.user_id)
                .map(|u| u.clone())
                .map(|u| self.nick_in(guild, &u, None)),
            (None, None) => None,
        };
        let (room, audience) = match guild {
            Some(_) => (
                Some(RemoteAddress::new(channel.to_string())),
                Audience::Room(channel),
            ),
            None => (None, Audience::Direct(typing.user_id.get())),
        };
        let event = RemoteEvent::Typing {
            room,
            sender: RemoteAddress::new(typing.user_id.to_string()),
            nick,
            state: ChatState::Composing,
        };
        self.send_to(audience, event).await;
    }

    /// The joined channels of a guild that a member can see.
    fn channels_seen_by(&self, guild: GuildId, user: UserId) -> Vec<u64> {
        let joined: HashSet<u64> = self
            .subscribers
            .lock()
            .expect("not poisoned")
            .values()
            .flat_map(|s| s.rooms.keys().copied())
            .collect();
        let Some(cache) = self.cache() else {
            return Vec::new();
        };
        let Some(g) = cache.guild(guild) else {
            return Vec::new();
        };
        let Some(member) = g.members.get(&user) else {
            return Vec::new();
        };
        g.channels
            .values()
            .filter(|c| joined.contains(&c.id.get()))
            .filter(|c| g.user_permissions_in(c, member).view_channel())
            .map(|c| c.id.get())
            .collect()
    }

    async fn on_member_added(&self, member: Member) {
        if member.user.id.get() == self.user_id() {
            return;
        }
        let channels = self.channels_seen_by(member.guild_id, member.user.id);
        for channel in channels {
            let occupant = self.occupants(channel).into_iter().find(|o| {
                o.user
                    .as_ref()
                    .is_some_and(|u| u.as_str() == member.user.id.to_string())
            });
            if let Some(occupant) = occupant {
                let event = RemoteEvent::Join {
                    room: RemoteAddress::new(channel.to_string()),
                    occupant,
                    is_self: false,
                    nick_changed: false,
                };
                self.send_to(Audience::Room(channel), event).await;
            }
        }
    }

    async fn on_member_updated(&self, old: Option<Member>, update: GuildMemberUpdateEvent) {
        let Some(old) = old else {
            return; // Not cached before: its nick in the rooms is unknown.
        };
        let guild = update.guild_id.get();
        let before = self.nick_in(Some(guild), &old.user, old.nick.as_deref());
        let after = self.nick_in(Some(guild), &update.user, update.nick.as_deref());
        if before == after {
            return;
        }
        for channel in self.channels_seen_by(update.guild_id, update.user.id) {
            let event = RemoteEvent::NickChange {
                room: RemoteAddress::new(channel.to_string()),
                old: before.clone(),
                new: after.clone(),
                is_self: false,
            };
            self.send_to(Audience::Room(channel), event).await;
        }
    }

    async fn on_member_removed(&self, guild: GuildId, user: User, member: Option<Member>) {
        // The cache no longer has the member: every joined channel of the guild is told.
        let channels: Vec<u64> = {
            let joined: HashSet<u64> = self
                .subscribers
                .lock()
                .expect("not poisoned")
                .values()
                .flat_map(|s| s.rooms.keys().copied())
                .collect();
            let Some(cache) = self.cache() else {
                return;
            };
            let Some(g) = cache.guild(guild) else {
                return;
            };
            g.channels
                .keys()
                .map(|c| c.get())
                .filter(|c| joined.contains(c))
                .collect()
        };
        let nick = self.nick_in(
            Some(guild.get()),
            &user,
            member.as_ref().and_then(|m| m.nick.as_deref()),
        );
        for channel in channels {
            let event = RemoteEvent::Part {
                room: RemoteAddress::new(channel.to_string()),
                nick: nick.clone(),
                reason: Some("left the Discord server".to_owned()),
                is_self: false,
            };
            self.send_to(Audience::Room(channel), event).await;
        }
    }

    async fn on_presence(&self, presence: Presence) {
        let user = presence.user.id.get();
        if user == self.user_id() {
            return;
        }
        let event = RemoteEvent::Presence(RemotePresence {
            user: RemoteAddress::new(user.to_string()),
            show: show_of(presence.status),
            status: None,
        });
        self.send_to(Audience::Direct(user), event).await;
    }
}

fn show_of(status: OnlineStatus) -> PresenceShow {
    match status {
        OnlineStatus::Online => PresenceShow::Online,
        OnlineStatus::Idle => PresenceShow::Away,
        OnlineStatus::DoNotDisturb => PresenceShow::DoNotDisturb,
        _ => PresenceShow::Offline,
    }
}

/// Whether a channel type is one people write in.
pub fn is_text_channel(kind: ChannelType) -> bool {
    matches!(kind, ChannelType::Text | ChannelType::News)
}

/// serenity's handler: each event goes to the bot, in a span for the log.
struct Handler {
    bot: Arc<Bot>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        self.bot
            .user_id
            .store(ready.user.id.get(), Ordering::Relaxed);
        let shown = self
            .bot
            .shown_presence
            .lock()
            .expect("not poisoned")
            .clone();
        if let Some((activity, status)) = shown {
            ctx.set_presence(activity, status);
        }
        info!(
            guilds = ready.guilds.len(),
            "connected to the Discord gateway"
        );
        if ready.guilds.is_empty() {
            self.bot.set_ready().await;
        }
    }

    async fn cache_ready(&self, _: Context, guilds: Vec<GuildId>) {
        debug!(guilds = guilds.len(), "every guild arrived");
        self.bot.set_ready().await;
    }

    async fn message(&self, _: Context, message: Message) {
        let span = info_span!("discord_message", channel = %message.channel_id);
        self.bot.on_message(message).instrument(span).await;
    }

    async fn message_update(
        &self,
        _: Context,
        _: Option<Message>,
        _: Option<Message>,
        update: MessageUpdateEvent,
    ) {
        let span = info_span!("discord_edit", channel = %update.channel_id);
        self.bot.on_update(update).instrument(span).await;
    }

    async fn message_delete(
        &self,
        _: Context,
        channel: ChannelId,
        message: MessageId,
        guild: Option<GuildId>,
    ) {
        let span = info_span!("discord_delete", channel = %channel);
        self.bot
            .on_delete(channel.get(), message.get(), guild.map(|g| g.get()))
            .instrument(span)
            .await;
    }

    async fn reaction_add(&self, _: Context, reaction: Reaction) {
        self.bot.on_reaction(reaction, true).await;
    }

    async fn reaction_remove(&self, _: Context, reaction: Reaction) {
        self.bot.on_reaction(reaction, false).await;
    }

    async fn typing_start(&self, _: Context, typing: TypingStartEvent) {
        self.bot.on_typing(typing).await;
    }

    async fn presence_update(&self, _: Context, presence: Presence) {
        self.bot.on_presence(presence).await;
    }

    async fn guild_member_addition(&self, _: Context, member: Member) {
        self.bot.on_member_added(member).await;
    }

    async fn guild_member_update(
        &self,
        _: Context,
        old: Option<Member>,
        _: Option<Member>,
        update: GuildMemberUpdateEvent,
    ) {
        self.bot.on_member_updated(old, update).await;
    }

    async fn guild_member_removal(
        &self,
        _: Context,
        guild: GuildId,
        user: User,
        member: Option<Member>,
    ) {
        self.bot.on_member_removed(guild, user, member).await;
    }
}
