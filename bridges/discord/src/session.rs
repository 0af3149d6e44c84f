//! One XMPP user on the Discord gateway. Every session shares the gateway's
//! bot: joining a channel subscribes the user to its events, and what the
//! user writes is posted through the channel's webhook under their nick.

use std::sync::Arc;

use async_trait::async_trait;
use estuary_bridge::{
    Affiliation, BridgeError, ChatState, ContactInfo, EventSender, MessageKind, Occupant,
    OutgoingMessage, PresenceShow, RemoteAddress, RemoteEvent, Role, RoomInfo, Session,
};
use serenity::all::{ChannelId, GuildId, ReactionType};
use tracing::{debug, info};

use crate::bot::{is_text_channel, Bot};
use crate::error::DiscordError;
use crate::post::with_retry;
use crate::text;

pub struct DiscordSession {
    bot: Arc<Bot>,
    account: String,
    generation: u64,
    events: EventSender,
    /// The name put in front of direct messages the bot sends for this user.
    dm_name: String,
    /// Emojis this user has set through the bot, per message.
    reactions: std::sync::Mutex<std::collections::HashMap<u64, Vec<String>>>,
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
    pub fn new(bot: Arc<Bot>, account: &str, events: EventSender) -> DiscordSession {
        let generation = bot.subscribe(account, events.clone());
        let dm_name = account.split('@').next().unwrap_or(account).to_owned();
        DiscordSession {
            bot,
            account: account.to_owned(),
            generation,
            events,
            dm_name,
            reactions: std::sync::Mutex::new(std::collections::HashMap::new()),
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
        let posted = match self.target(id) {
            Target::Channel { guild } => {
                let nick = self
                    .bot
                    .room_nick(&self.account, self.generation, id)
                    .ok_or_else(|| DiscordError::BadRequest("join the room first".to_owned()))?;
                let body = self.body_for_discord(Some(guild), &message);
                self.bot
                    .post_in_channel(id, &self.account, &nick, &body, reply_to)
                    .await?
            }
            Target::User => {
                let body = self.body_for_discord(None, &message);
                self.bot.add_dm_partner(&self.account, self.generation, id);
                self.bot
                    .post_direct(id, &self.account, &self.dm_name, &body)
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
        let (channel, nick, guild) = match self.target(id) {
            Target::Channel { guild } => {
                let nick = self
                    .bot
                    .room_nick(&self.account, self.generation, id)
                    .ok_or_else(|| DiscordError::BadRequest("join the room first".to_owned()))?;
                (id, nick, Some(guild))
            }
            Target::User => (self.dm_channel(id).await?, self.dm_name.clone(), None),
        };
        let body = self.body_for_discord(guild, &message);
        self.bot.edit_posted(channel, target, &nick, &body).await?;
        // Discord keeps the message id through an edit.
        Ok(None)
    }

    async fn retract_message(&self, to: &RemoteAddress, target: &str) -> Result<(), BridgeError> {
        let id = snowflake(to)?;
        let target = message_id(target)?;
        let channel = match self.target(id) {
            Target::Channel { .. } => id,
            Target::User => self.dm_channel(id).await?,
        };
        self.bot.delete_posted(channel, target).await?;
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
        let channel = match self.target(id) {
            Target::Channel { .. } => id,
            Target::User => self.dm_channel(id).await?,
        };
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
            if !self.bot.want_reaction(message, emoji, &self.account) {
                continue;
            }
            let reaction = ReactionType::Unicode(emoji.clone());
            with_retry("add a reaction", || {
                channel_id.create_reaction(&*self.bot.rest, message, reaction.clone())
            })
            .await?;
        }
        for emoji in before.iter().filter(|e| !emojis.contains(e)) {
            if !self.bot.drop_reaction(message, emoji, &self.account) {
                continue;
            }
            let reaction = ReactionType::Unicode(emoji.clone());
            with_retry("remove a reaction", || {
                channel_id.delete_reaction(&*self.bot.rest, message, None, reaction.clone())
            })
            .await?;
        }
        self.reactions
            .lock()
            .expect("not poisoned")
            .insert(message, emojis);
        Ok(())
    }

    async fn join_room(&self, room: &RemoteAddress, nick: &str) -> Result<(), BridgeError> {
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
        let own = Occupant {
            user: None,
            nick: nick.to_owned(),
            affiliation: Affiliation::Member,
            role: Role::Participant,
            show: PresenceShow::Online,
            status: None,
        };
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
        let channel = match self.target(id) {
            Target::Channel { .. } => id,
            Target::User => self.dm_channel(id).await?,
        };
        let channel_id = ChannelId::new(channel);
        with_retry("show typing", || {
            channel_id.broadcast_typing(&*self.bot.rest)
        })
        .await?;
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
            full_name: Some(
                found
                    .global_name
                    .clone()
                    .unwrap_or_else(|| found.name.clone()),
            ),
            nickname: Some(found.name.clone()),
        })
    }

    async fn dm_channel(&self, user: u64) -> Result<u64, DiscordError> {
        let user_id = serenity::all::UserId::new(user);
        let dm = with_retry("open a direct message channel", || {
            user_id.create_dm_channel(&*self.bot.rest)
        })
        .await?;
        Ok(dm.id.get())
    }
}

impl Drop for DiscordSession {
    fn drop(&mut self) {
        self.bot.unsubscribe(&self.account, self.generation);
    }
}
