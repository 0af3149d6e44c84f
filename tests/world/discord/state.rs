//! What the double's Discord holds: users, guilds, channels, messages,
//! webhooks, gateway sessions, and the faults a test asked for. One mutex
//! guards it all; REST handlers, the gateway and the control API share it.

use std::collections::BTreeMap;

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
    /// False for a channel whose permissions hide it from the bot: it is
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
    /// Files attached: (file name, URL).
    pub attachments: Vec<(String, String)>,
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
    pub intents: u64,
    pub seq: u64,
    /// Every dispatch of the session, for replay on RESUME.
    pub sent: Vec<(u64, String)>,
    /// The connection currently attached to the session, if any, by its number.
    pub live: Option<(u64, mpsc::UnboundedSender<WsCommand>)>,
}

pub struct State {
    pub next_id: u64,
    pub bot_id: u64,
    pub bot_token: String,
    pub application_id: u64,
    /// Privileged intents the bot's application was granted in the developer portal.
    pub granted_intents: u64,
    pub bot_can_manage_webhooks: bool,
    pub users: BTreeMap<u64, UserRec>,
    pub guilds: Vec<GuildRec>,
    pub messages: Vec<MessageRec>,
    pub webhooks: Vec<WebhookRec>,
    /// Direct-message channel per user.
    pub dm_channels: BTreeMap<u64, u64>,
    /// (message, user, emoji) for every reaction present.
    pub reactions: Vec<(u64, u64, String)>,
    /// Channels the bot said it was typing in, in order.
    pub bot_typing: Vec<u64>,
    /// The next this-many message sends answer 429.
    pub rate_limit_next: u32,
    pub retry_after_secs: f64,
    pub rate_limited: u32,
    /// "METHOD /path" of every REST request, in order.
    pub requests: Vec<String>,
    pub sessions: BTreeMap<String, GatewaySession>,
    pub identifies: u32,
    pub resumes: u32,
    pub heartbeats: u32,
    pub gateway_port: u16,
}

impl State {
    pub fn new(bot_token: &str) -> State {
        let mut state = State {
            next_id: 0,
            bot_id: 0,
            bot_token: bot_token.to_owned(),
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
            rate_limit_next: 0,
            retry_after_secs: 0.2,
            rate_limited: 0,
            requests: Vec::new(),
            sessions: BTreeMap::new(),
            identifies: 0,
            resumes: 0,
            heartbeats: 0,
            gateway_port: 0,
        };
        state.application_id = state.snowflake();
        state.bot_id = state.add_user("estuary-bot", None, true);
        state
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

    pub fn is_dm_channel(&self, channel: u64) -> bool {
        self.dm_channels.values().any(|c| *c == channel)
    }

    /// Whether the bot holds a permission in a guild (owner or through a role).
    pub fn bot_has(&self, guild: u64, permission: u64) -> bool {
        let Some(g) = self.guild(guild) else {
            return false;
        };
        if g.owner_id == self.bot_id {
            return true;
        }
        let Some(member) = g.members.iter().find(|m| m.user_id == self.bot_id) else {
            return false;
        };
        g.roles
            .iter()
            .filter(|r| member.roles.contains(&r.id))
            .any(|r| r.permissions & (permission | ADMINISTRATOR) != 0)
    }

    /// Store a message and dispatch MESSAGE_CREATE for it.
    pub fn create_message(&mut self, mut m: MessageRec) -> MessageRec {
        m.id = self.snowflake();
        self.messages.push(m.clone());
        let payload = shapes::message(self, &m);
        self.dispatch("MESSAGE_CREATE", payload);
        m
    }

    /// Send a dispatch (op 0) to every gateway session, live or waiting for
    /// a RESUME, with the session's next sequence number.
    pub fn dispatch(&mut self, event: &str, data: Value) {
        for session in self.sessions.values_mut() {
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
            session.seq += 1;
            let frame = json!({ "op": 0, "s": session.seq, "t": event, "d": data }).to_string();
            session.sent.push((session.seq, frame.clone()));
            if let Some((_, live)) = &session.live {
                let _ = live.send(WsCommand::Send(frame));
            }
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
