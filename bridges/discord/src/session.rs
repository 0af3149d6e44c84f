//! One XMPP user on the Discord gateway. Every session shares the gateway's
//! bot: joining a channel subscribes the user to its events, and what the
//! user writes is posted through the channel's webhook under their nick.
//! Direct messages go through the user's own bot when they registered one,
//! and through the gateway's bot, with their name in front, when not.

use std::sync::Arc;

use async_trait::async_trait;
use estuary_bridge::{
    Avatar, BridgeError, ChatState, ContactInfo, EventSender, MessageKind, OutgoingMessage,
    PresenceShow, RemoteAddress, RemoteEvent, RoomInfo, Session,
};
use serenity::all::{ChannelId, CreateAttachment, GuildId, MessageId, ReactionType};
use tracing::{debug, info, warn};

use crate::bot::{is_text_channel, Bot};
use crate::error::DiscordError;
use crate::post::{with_retry, Post};
use crate::text;

pub struct DiscordSession {
    bot: Arc<Bot>,
    account: String,
    generation: u64,
    events: EventSender,
    /// The bot for direct messages: the user's own, or the gateway's.
    direct: DirectBot,
    /// Emojis this user has set through the bot, per message.
    reactions: std::sync::Mutex<std::collections::HashMap<u64, Vec<String>>>,
}

/// The bot a user's direct messages go through.
struct DirectBot {
    bot: Arc<Bot>,
    generation: u64,
    /// The name put in front of what the gateway's shared bot sends for
    /// the user; `None` on the user's own bot.
    name: Option<String>,
}

impl DirectBot {
    fn is_users_own(&self) -> bool {
        self.name.is_none()
    }
}

/// A Discord snowflake from an address.
fn snowflake(address: &RemoteAddress) -> Result<u64, DiscordError> {
    address
        .as_str()
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| DiscordError::BadId(address.to_string()))
}

fn message_id(id: &str) -> Result<u64, DiscordError> {
    id.parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| DiscordError::NotFound(format!("no Discord message '{id}'")))
}

/// What a snowflake names, as far as the bot knows.
enum Target {
    /// A guild channel people write in, and its guild.
    Channel { guild: u64 },
    /// Anything else is taken for a user, for a direct message.
    User,
}

impl DiscordSession {
    /// A session on the gateway's bot, and on the user's `own` bot for
    /// direct messages when they registered one (already started).
    pub fn new(
        bot: Arc<Bot>,
        own: Option<Arc<Bot>>,
        account: &str,
        events: EventSender,
    ) -> DiscordSession {
        let generation = bot.subscribe(account, events.clone());
        let direct = match own {
            Some(own) => DirectBot {
                generation: own.subscribe(account, events.clone()),
                bot: own,
                name: None,
            },
            None => DirectBot {
                bot: bot.clone(),
                generation,
                name: Some(account.split('@').next().unwrap_or(account).to_owned()),
            },
        };
        DiscordSession {
            bot,
            account: account.to_owned(),
            generation,
            events,
            direct,
            reactions: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The user's nick in a channel they joined.
    fn joined_nick(&self, channel: u64) -> Result<String, DiscordError> {
        self.bot
            .room_nick(&self.account, self.generation, channel)
            .ok_or_else(|| DiscordError::BadRequest("join the room first".to_owned()))
    }

    /// The bot that speaks where `target` is.
    fn bot_for(&self, target: &Target) -> &Bot {
        match target {
            Target::Channel { .. } => &self.bot,
            Target::User => &self.direct.bot,
        }
    }

    /// The channel to act in: a guild channel, or the direct message
    /// channel with a user.
    async fn channel_of(&self, id: u64, target: &Target) -> Result<u64, DiscordError> {
        match target {
            Target::Channel { .. } => Ok(id),
            Target::User => self.direct.bot.dm_channel(id).await,
        }
    }

    /// The file a message is, fetched to be uploaded; `None` (after a log
    /// line) when it cannot be fetched, and the link goes as text instead.
    async fn upload_of(&self, message: &OutgoingMessage) -> Option<CreateAttachment> {
        let file = message.sole_file()?;
        match estuary_fetch::fetch(&file.url, &self.bot.options.fetch_policy()).await {
            Ok(fetched) => Some(CreateAttachment::bytes(fetched.bytes, fetched.info.name)),
            Err(e) => {
                warn!(error = %e, "an attachment is sent as a link: it cannot be fetched");
                None
            }
        }
    }

    fn target(&self, id: u64) -> Target {
        let guild = self.bot.guild_channel(id).map(|c| c.guild_id.get());
        match guild {
            Some(guild) => Target::Channel { guild },
            None => Target::User,
        }
    }

    /// A guild text channel the bot can see, with its guild and topic.
    async fn text_channel(&self, channel: u64) -> Result<(u64, Option<String>), DiscordError> {
        let cached = self
            .bot
            .guild_channel(channel)
            .map(|c| (c.guild_id.get(), c.kind, c.topic.clone()));
        let (guild, kind, topic) = match cached {
            Some(found) => found,
            None => {
                // Not among the channels the bot was shown: ask, for the precise error.
                let channel_id = ChannelId::new(channel);
                let fetched = with_retry("look up the channel", || {
                    channel_id.to_channel(&*self.bot.rest)
                })
                .await?;
                match fetched.guild() {
                    Some(c) => (c.guild_id.get(), c.kind, c.topic.clone()),
                    None => {
                        return Err(DiscordError::BadRequest(
                            "a direct message channel is not a room; write to the user's JID"
                                .to_owned(),
                        ))
                    }
                }
            }
        };
        if !is_text_channel(kind) {
            return Err(DiscordError::BadRequest(format!(
                "channel {channel} is not a text channel"
            )));
        }
        Ok((guild, topic))
    }

    fn body_for_discord(&self, guild: Option<u64>, message: &OutgoingMessage) -> String {
        let body = match guild {
            Some(guild) => text::encode_mentions(&message.body, &self.bot.member_nicks(guild)),
            None => message.body.clone(),
        };
        match message.kind {
            // Discord shows `_text_` in italics, its usual rendering of /me.
            MessageKind::Action => format!("_{body}_"),
            _ => body,
        }
    }
}

#[async_trait]
impl Session for DiscordSession {
    async fn send_message(
        &self,
        to: &RemoteAddress,
        message: OutgoingMessage,
    ) -> Result<String, BridgeError> {
        let id = snowflake(to)?;
        let reply_to = match &message.reply_to {
            Some(target) => Some(message_id(target)?),
            None => None,
        };
        // Who speaks where, checked before a file is fetched.
        let (guild, nick) = match self.target(id) {
            Target::Channel { guild } => (Some(guild), Some(self.joined_nick(id)?)),
            Target::User => (None, None),
        };
        let file = self.upload_of(&message).await;
        let post = Post {
            // The file replaces the link it was sent as.
            text: match file {
                Some(_) => String::new(),
                None => self.body_for_discord(guild, &message),
            },
            file,
            reply_to,
        };
        let posted = match nick {
            Some(nick) => {
                self.bot
                    .post_in_channel(id, &self.account, &nick, post)
                    .await?
            }
            None => {
                let direct = &self.direct;
                direct
                    .bot
                    .add_dm_partner(&self.account, direct.generation, id);
                direct
                    .bot
                    .post_direct(id, &self.account, direct.name.as_deref(), post)
                    .await?
            }
        };
        Ok(posted.to_string())
    }

    async fn edit_message(
        &self,
        to: &RemoteAddress,
        target: &str,
        message: OutgoingMessage,
    ) -> Result<Option<String>, BridgeError> {
        let id = snowflake(to)?;
        let target = message_id(target)?;
        let target_kind = self.target(id);
        let (channel, nick, guild) = match target_kind {
            Target::Channel { guild } => (id, Some(self.joined_nick(id)?), Some(guild)),
            Target::User => (
                self.direct.bot.dm_channel(id).await?,
                self.direct.name.clone(),
                None,
            ),
        };
        let body = self.body_for_discord(guild, &message);
        self.bot_for(&target_kind)
            .edit_posted(channel, target, nick.as_deref(), &body)
            .await?;
        // Discord keeps the message id through an edit.
        Ok(None)
    }

    async fn retract_message(&self, to: &RemoteAddress, target: &str) -> Result<(), BridgeError> {
        let id = snowflake(to)?;
        let target = message_id(target)?;
        let target_kind = self.target(id);
        let channel = self.channel_of(id, &target_kind).await?;
        self.bot_for(&target_kind)
            .delete_posted(channel, target)
            .await?;
        Ok(())
    }

    async fn moderate_message(
        &self,
        room: &RemoteAddress,
        target: &str,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        if !self.bot.is_moderator(&self.account) {
            return Err(BridgeError::Forbidden(
                "only the gateway's moderators may delete others' messages: it would use the \
                 bot's rights"
                    .to_owned(),
            ));
        }
        let channel = snowflake(room)?;
        let target = message_id(target)?;
        self.text_channel(channel).await?;
        let (channel, target) = (ChannelId::new(channel), MessageId::new(target));
        info!(%room, "deleting a message as a moderator");
        with_retry("delete the message", || {
            self.bot.rest.delete_message(channel, target, reason)
        })
        .await?;
        Ok(())
    }

    /// Shown on what the user posts through webhooks.
    async fn set_avatar(&self, avatar: Avatar) -> Result<(), BridgeError> {
        let Some(avatars) = &self.bot.avatars else {
            return Err(BridgeError::Unsupported(
                "avatars, without `media_listen` and `media_url`".to_owned(),
            ));
        };
        avatars.publish(&self.account, avatar);
        Ok(())
    }

    /// Shown by the user's own bot; the gateway's bot is everyone's, so
    /// it cannot show one user's presence.
    async fn set_presence(
        &self,
        show: PresenceShow,
        status: Option<&str>,
    ) -> Result<(), BridgeError> {
        if !self.direct.is_users_own() {
            return Err(BridgeError::Unsupported(
                "presence, without a bot of the user's own".to_owned(),
            ));
        }
        self.direct.bot.show_presence(show, status).await;
        Ok(())
    }

    async fn react(
        &self,
        to: &RemoteAddress,
        target: &str,
        emojis: Vec<String>,
    ) -> Result<(), BridgeError> {
        let id = snowflake(to)?;
        let message = message_id(target)?;
        let target_kind = self.target(id);
        let channel = self.channel_of(id, &target_kind).await?;
        let bot = self.bot_for(&target_kind);
        let before = self
            .reactions
            .lock()
            .expect("not poisoned")
            .get(&message)
            .cloned()
            .unwrap_or_default();
        let channel_id = ChannelId::new(channel);
        // The bot reacts for every XMPP user: it adds an emoji for the first
        // who wants it and takes it back when the last one no longer does.
        for emoji in emojis.iter().filter(|e| !before.contains(e)) {
            if !bot.want_reaction(message, emoji, &self.account) {
                continue;
            }
            let reaction = ReactionType::Unicode(emoji.clone());
            with_retry("add a reaction", || {
                channel_id.create_reaction(&*bot.rest, message, reaction.clone())
            })
            .await?;
        }
        for emoji in before.iter().filter(|e| !emojis.contains(e)) {
            if !bot.drop_reaction(message, emoji, &self.account) {
                continue;
            }
            let reaction = ReactionType::Unicode(emoji.clone());
            with_retry("remove a reaction", || {
                channel_id.delete_reaction(&*bot.rest, message, None, reaction.clone())
            })
            .await?;
        }
        self.reactions
            .lock()
            .expect("not poisoned")
            .insert(message, emojis);
        Ok(())
    }

    async fn join_room(
        &self,
        room: &RemoteAddress,
        nick: &str,
        _password: Option<&str>,
    ) -> Result<(), BridgeError> {
        let channel = snowflake(room)?;
        let (_guild, topic) = self.text_channel(channel).await?;
        let mut occupants = self.bot.occupants(channel);
        occupants.extend(self.bot.xmpp_occupants(channel, &self.account));
        // A nick a Discord member (or another XMPP user) has already would make
        // two occupants one: the server assigns another (MUC status 210).
        let taken = |candidate: &str| occupants.iter().any(|o| o.nick == candidate);
        let mut assigned = nick.to_owned();
        let mut n = 1;
        while taken(&assigned) {
            assigned = match n {
                1 => format!("{nick} (xmpp)"),
                _ => format!("{nick} (xmpp {n})"),
            };
            n += 1;
        }
        let nick_changed = assigned != nick;
        let nick = assigned.as_str();
        self.bot
            .enter_room(&self.account, self.generation, channel, nick);
        self.bot.announce(channel, &self.account, nick, true).await;
        info!(%room, occupants = occupants.len(), "joined a Discord channel");
        let events = self.events.clone();
        let room = room.clone();
        let own = self.bot.xmpp_occupant(&self.account, nick);
        // Sent from a task: the user's task that called us also drains these events.
        tokio::spawn(async move {
            for occupant in occupants {
                let join = RemoteEvent::Join {
                    room: room.clone(),
                    occupant,
                    is_self: false,
                    nick_changed: false,
                };
                if !events.send(join).await {
                    return;
                }
            }
            if let Some(topic) = topic.filter(|t| !t.is_empty()) {
                events
                    .send(RemoteEvent::Topic {
                        room: room.clone(),
                        topic,
                        by: None,
                    })
                    .await;
            }
            events
                .send(RemoteEvent::Join {
                    room,
                    occupant: own,
                    is_self: true,
                    nick_changed,
                })
                .await;
        });
        Ok(())
    }

    async fn leave_room(&self, room: &RemoteAddress) -> Result<(), BridgeError> {
        let channel = snowflake(room)?;
        let nick = self.bot.room_nick(&self.account, self.generation, channel);
        info!(%room, "left a Discord channel");
        self.bot.leave_room(&self.account, self.generation, channel);
        if let Some(nick) = nick {
            self.bot
                .announce(channel, &self.account, &nick, false)
                .await;
        }
        Ok(())
    }

    async fn set_nick(&self, room: &RemoteAddress, nick: &str) -> Result<(), BridgeError> {
        let channel = snowflake(room)?;
        let old = self.bot.room_nick(&self.account, self.generation, channel);
        // The nick is only the webhook's username: nothing to tell Discord.
        self.bot
            .enter_room(&self.account, self.generation, channel, nick);
        debug!(?old, nick, "nick changed");
        if let Some(old) = old {
            self.events
                .send(RemoteEvent::NickChange {
                    room: room.clone(),
                    old,
                    new: nick.to_owned(),
                    is_self: true,
                })
                .await;
        }
        Ok(())
    }

    async fn send_typing(&self, to: &RemoteAddress, state: ChatState) -> Result<(), BridgeError> {
        if state != ChatState::Composing {
            // Discord's typing indicator stops by itself after 10 seconds.
            return Ok(());
        }
        let id = snowflake(to)?;
        let target = self.target(id);
        let channel_id = ChannelId::new(self.channel_of(id, &target).await?);
        let bot = self.bot_for(&target);
        with_retry("show typing", || channel_id.broadcast_typing(&*bot.rest)).await?;
        Ok(())
    }

    async fn contact_info(&self, user: &RemoteAddress) -> Result<ContactInfo, BridgeError> {
        Ok(self.user_info(snowflake(user)?).await?)
    }

    async fn list_rooms(
        &self,
        under: Option<&RemoteAddress>,
    ) -> Result<Vec<RoomInfo>, BridgeError> {
        let cache = self
            .bot
            .cache()
            .ok_or_else(|| DiscordError::NotConnected("no guild data yet".to_owned()))?;
        match under {
            Some(guild) => {
                let guild_id = GuildId::new(snowflake(guild)?);
                let guild = cache.guild(guild_id).ok_or_else(|| {
                    DiscordError::NotFound(format!("the bot is in no guild {guild_id}"))
                })?;
                let mut channels: Vec<_> = guild
                    .channels
                    .values()
                    .filter(|c| is_text_channel(c.kind))
                    .map(|c| (c.position, c.id, c.name.clone()))
                    .collect();
                channels.sort();
                Ok(channels
                    .into_iter()
                    .map(|(_, id, name)| RoomInfo {
                        address: RemoteAddress::new(id.to_string()),
                        name: Some(format!("#{name}")),
                        members: None,
                    })
                    .collect())
            }
            None => Ok(cache
                .guilds()
                .into_iter()
                .filter_map(|id| {
                    cache.guild(id).map(|g| RoomInfo {
                        address: RemoteAddress::new(id.to_string()),
                        name: Some(g.name.clone()),
                        members: Some(g.member_count),
                    })
                })
                .collect()),
        }
    }

    async fn logout(&self) -> Result<(), BridgeError> {
        let rooms = self.bot.rooms_of(&self.account, self.generation);
        self.bot.unsubscribe(&self.account, self.generation);
        if self.direct.is_users_own() {
            self.direct
                .bot
                .unsubscribe(&self.account, self.direct.generation);
        }
        for (channel, nick) in rooms {
            self.bot
                .announce(channel, &self.account, &nick, false)
                .await;
        }
        Ok(())
    }
}

impl DiscordSession {
    async fn user_info(&self, user: u64) -> Result<ContactInfo, DiscordError> {
        let user_id = serenity::all::UserId::new(user);
        let found = with_retry("look up a user", || self.bot.rest.get_user(user_id)).await?;
        Ok(ContactInfo {
            description: None,
            full_name: Some(
                found
                    .global_name
                    .clone()
                    .unwrap_or_else(|| found.name.clone()),
            ),
            nickname: Some(found.name.clone()),
        })
    }
}

impl Drop for DiscordSession {
    /// The user's own bot lives as long as their session.
    fn drop(&mut self) {
        self.bot.unsubscribe(&self.account, self.generation);
        if self.direct.is_users_own() {
            self.direct.bot.stop();
        }
    }
}
