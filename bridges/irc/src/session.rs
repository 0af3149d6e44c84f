//! An XMPP user logged in to the IRC gateway: one connection per IRC server,
//! opened on the first join or message and closed when the user logs out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use estuary_bridge::{
    Affiliation, Ban, BridgeError, ChatState, ContactInfo, EventSender, FormValues, Later,
    OutgoingMessage, PresenceShow, RemoteAddress, Role, RoomConfig, RoomInfo, Session, Software,
};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::address::IrcAddress;
use crate::channel_encodings::ChannelEncodings;
use crate::channel_queries::{self, ChannelModes};
use crate::connection::Identity;
use crate::modes::ModeChange;
use crate::options::{SharedOptions, UserServerSettings};
use crate::room_config;
use crate::server::{self, ServerCommand, ServerHandle};
use crate::text::encoding_for_label;

pub struct IrcSession {
    /// Read afresh for each connection, so that a reload reaches it.
    options: SharedOptions,
    identity: Identity,
    /// The user never chose a nick: a connection opened by a join takes the
    /// join's nick (biboumi's way), and `identity`'s is for the others.
    nick_from_join: bool,
    events: EventSender,
    servers: Mutex<HashMap<String, ServerHandle>>,
    /// The user's own settings, by server, for connections opened later.
    user_settings: Mutex<HashMap<String, UserServerSettings>>,
    /// The nicks of the user's contacts, by server, followed by every
    /// connection to that server. No connection is opened for them alone:
    /// being connected shows the user on IRC, which only a join or a
    /// message of theirs should do.
    contacts: Mutex<HashMap<String, Vec<String>>>,
    /// The user's encodings of channels, by server, read by every
    /// connection to that server as it reads lines.
    channel_encodings: Mutex<HashMap<String, Arc<ChannelEncodings>>>,
}

impl IrcSession {
    pub fn new(
        options: SharedOptions,
        identity: Identity,
        nick_from_join: bool,
        events: EventSender,
    ) -> IrcSession {
        IrcSession {
            options,
            identity,
            nick_from_join,
            events,
            servers: Mutex::new(HashMap::new()),
            user_settings: Mutex::new(HashMap::new()),
            contacts: Mutex::new(HashMap::new()),
            channel_encodings: Mutex::new(HashMap::new()),
        }
    }

    fn parse(&self, address: &RemoteAddress) -> Result<IrcAddress, BridgeError> {
        IrcAddress::parse(address, self.options.load().fixed_server.as_deref())
    }

    fn channel_encodings_of(&self, server: &str) -> Arc<ChannelEncodings> {
        self.channel_encodings
            .lock()
            .expect("not poisoned")
            .entry(server.to_owned())
            .or_default()
            .clone()
    }

    /// The connection to a server, started if there is none yet.
    fn server(&self, name: &str) -> ServerHandle {
        self.server_joining(name, None)
    }

    /// The connection to a server, started for a join as `nick` if there is
    /// none yet.
    fn server_joining(&self, name: &str, nick: Option<&str>) -> ServerHandle {
        let mut servers = self.servers.lock().expect("not poisoned");
        servers.retain(|_, handle| !handle.is_closed());
        servers
            .entry(name.to_owned())
            .or_insert_with(|| {
                let gateway_options = self.options.load();
                let mut options = gateway_options.server(name);
                let mut identity = self.identity.clone();
                if let Some(nick) = nick.filter(|n| self.nick_from_join && crate::valid_nick(n)) {
                    identity.nick = nick.to_owned();
                }
                if let Some(mine) = self.user_settings.lock().expect("not poisoned").get(name) {
                    // Checked when they were set; cannot fail here.
                    let _ = mine.apply(&mut options);
                    if let Some(nick) = &mine.nick {
                        identity.nick = nick.clone();
                    }
                    if let Some(password) = &mine.password {
                        identity.password = Some(password.clone());
                    }
                }
                server::spawn(
                    name.to_owned(),
                    options,
                    identity,
                    gateway_options.fixed_server.clone(),
                    self.events.clone(),
                    self.contacts
                        .lock()
                        .expect("not poisoned")
                        .get(name)
                        .cloned()
                        .unwrap_or_default(),
                    self.channel_encodings_of(name),
                )
            })
            .clone()
    }

    /// Send the command `request` makes to the connection to `server`
    /// (opened for a join as `nick` if there is none) and await its answer.
    /// A connection that closes after its last part drops what reached it
    /// too late (a join sent just after that part); that goes to a new
    /// connection, once.
    async fn ask<T>(
        &self,
        server: &str,
        nick: Option<&str>,
        request: impl Fn(oneshot::Sender<Result<T, BridgeError>>) -> ServerCommand,
    ) -> Result<T, BridgeError> {
        for _ in 0..2 {
            let (reply, rx) = oneshot::channel();
            if self
                .server_joining(server, nick)
                .send(request(reply))
                .is_err()
            {
                continue;
            }
            if let Ok(answer) = rx.await {
                return answer;
            }
        }
        Err(BridgeError::Unavailable(
            "the IRC connection task ended".into(),
        ))
    }

    /// The connection to a server, if one is open.
    fn open_server(&self, name: &str) -> Option<ServerHandle> {
        self.servers
            .lock()
            .expect("not poisoned")
            .get(name)
            .filter(|handle| !handle.is_closed())
            .cloned()
    }

    /// Send a CTCP query to an IRC user, named by their address or by a
    /// room's and their nick, over an open connection; what it gives awaits
    /// the answer.
    fn ctcp(
        &self,
        user: &RemoteAddress,
        nick: Option<&str>,
        verb: &'static str,
        args: String,
    ) -> Result<Later<String>, BridgeError> {
        let address = self.parse(user)?;
        let target = checked_nick(nick.map_or(address.name, str::to_owned))?;
        let server = self.open_server(&address.server).ok_or_else(|| {
            BridgeError::Unavailable(format!("not connected to {}", address.server))
        })?;
        let (reply, rx) = oneshot::channel();
        server.send(ServerCommand::Ctcp {
            target: target.clone(),
            verb,
            args,
            reply,
        })?;
        Ok(Box::pin(async move {
            tokio::time::timeout(CTCP_WAIT, answer(rx))
                .await
                .unwrap_or_else(|_| {
                    Err(BridgeError::Unavailable(format!("{target} did not answer")))
                })
        }))
    }

    /// The address of an IRC user (`nick%server`), its nick checked.
    fn user_address(&self, user: &RemoteAddress) -> Result<IrcAddress, BridgeError> {
        let mut address = self.parse(user)?;
        address.name = checked_nick(address.name)?;
        Ok(address)
    }

    /// Follow `contact` on its server, or stop; an open connection is told
    /// at once, and every later one when it opens.
    fn watch(&self, contact: &RemoteAddress, watch: bool) -> Result<(), BridgeError> {
        let address = self.user_address(contact)?;
        {
            let mut contacts = self.contacts.lock().expect("not poisoned");
            let nicks = contacts.entry(address.server.clone()).or_default();
            let known = nicks.contains(&address.name);
            match (watch, known) {
                (true, false) => nicks.push(address.name.clone()),
                (false, true) => nicks.retain(|n| *n != address.name),
                _ => return Ok(()),
            }
        }
        if let Some(server) = self.open_server(&address.server) {
            server.send(ServerCommand::Watch {
                nick: address.name,
                watch,
            })?;
        }
        Ok(())
    }

    /// A channel's modes, asked of the server (324).
    async fn channel_modes(&self, channel: &IrcAddress) -> Result<ChannelModes, BridgeError> {
        let server = self.server(&channel.server);
        server_answer(&server, "the channel's modes", |reply| {
            ServerCommand::ChannelModes {
                channel: channel.name.clone(),
                reply,
            }
        })
        .await
    }

    /// A role and/or affiliation change in a channel, which becomes MODE.
    fn change_standing(
        &self,
        room: &RemoteAddress,
        nick: &str,
        affiliation: Option<Affiliation>,
        role: Option<Role>,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        let address = self.parse(room)?;
        if channel_queries::is_mask(nick) {
            // A ban mask has a place in the ban list and nowhere else.
            let banned = match (affiliation, role) {
                (Some(Affiliation::Outcast), None) => true,
                (Some(Affiliation::None), None) => false,
                _ => {
                    return Err(BridgeError::BadRequest(format!(
                        "'{nick}' is a ban mask: it can only be banned or unbanned"
                    )))
                }
            };
            let mask = one_param(nick)?;
            return self.server(&address.server).send(ServerCommand::Modes {
                channel: address.name,
                changes: vec![if banned {
                    ModeChange::add('b', mask)
                } else {
                    ModeChange::remove('b', mask)
                }],
            });
        }
        self.server(&address.server).send(ServerCommand::Standing {
            channel: address.name,
            nick: one_param(nick)?,
            affiliation,
            role,
            reason: reason.map(str::to_owned),
        })
    }
}

/// `nick`, if IRC takes it as one.
fn checked_nick(nick: String) -> Result<String, BridgeError> {
    if crate::valid_nick(&nick) {
        Ok(nick)
    } else {
        Err(BridgeError::BadRequest(format!(
            "'{nick}' is not an IRC nick"
        )))
    }
}

/// Send `server`'s connection the command `request` makes, and await the
/// server's own answer to it (`what`) for up to [`SERVER_ANSWER_WAIT`].
async fn server_answer<T>(
    server: &ServerHandle,
    what: &str,
    request: impl FnOnce(oneshot::Sender<Result<T, BridgeError>>) -> ServerCommand,
) -> Result<T, BridgeError> {
    let (reply, rx) = oneshot::channel();
    server.send(request(reply))?;
    tokio::time::timeout(SERVER_ANSWER_WAIT, answer(rx))
        .await
        .map_err(|_| BridgeError::Unavailable(format!("the server did not tell {what}")))?
}

/// `name` (a nick or a ban mask), if it can go in a MODE or KICK line as
/// one parameter. Not [`checked_nick`]: some networks take nicks that
/// RFC 2812 does not, and an occupant's nick is the server's own.
fn one_param(name: &str) -> Result<String, BridgeError> {
    let fits = !name.is_empty() && name.len() <= 256 && !name.starts_with(':');
    if fits && !name.contains(|c: char| c.is_whitespace() || c.is_control()) {
        Ok(name.to_owned())
    } else {
        Err(BridgeError::BadRequest(format!(
            "'{name}' cannot be a nick or a ban mask on IRC"
        )))
    }
}

/// How long a CTCP query waits for its answer; XMPP clients give up on an
/// iq after about half a minute.
const CTCP_WAIT: Duration = Duration::from_secs(20);

/// How long a WHOIS, a ban list or a channel's modes may take: it is the
/// server's own answer, at once but for the flood control queue, and the
/// user's other stanzas wait for it.
const SERVER_ANSWER_WAIT: Duration = Duration::from_secs(5);

async fn answer<T>(rx: oneshot::Receiver<Result<T, BridgeError>>) -> Result<T, BridgeError> {
    rx.await.unwrap_or_else(|_| {
        Err(BridgeError::Unavailable(
            "the IRC connection task ended".into(),
        ))
    })
}

#[async_trait]
impl Session for IrcSession {
    async fn send_message(
        &self,
        to: &RemoteAddress,
        message: OutgoingMessage,
    ) -> Result<String, BridgeError> {
        let address = self.parse(to)?;
        self.ask(&address.server, None, |reply| ServerCommand::Say {
            target: address.name.clone(),
            text: message.body.clone(),
            kind: message.kind,
            reply_to: message.reply_to.clone(),
            reply,
        })
        .await
    }

    async fn join_room(
        &self,
        room: &RemoteAddress,
        nick: &str,
        password: Option<&str>,
    ) -> Result<(), BridgeError> {
        let address = self.parse(room)?;
        self.ask(&address.server, Some(nick), |reply| ServerCommand::Join {
            channel: address.name.clone(),
            key: password.map(str::to_owned),
            reply,
        })
        .await
    }

    async fn leave_room(&self, room: &RemoteAddress) -> Result<(), BridgeError> {
        let address = self.parse(room)?;
        if let Some(handle) = self.open_server(&address.server) {
            handle.send(ServerCommand::Part {
                channel: address.name,
            })?;
        }
        Ok(())
    }

    async fn set_topic(&self, room: &RemoteAddress, topic: &str) -> Result<(), BridgeError> {
        let address = self.parse(room)?;
        self.server(&address.server).send(ServerCommand::Topic {
            channel: address.name,
            topic: topic.to_owned(),
        })
    }

    async fn set_presence(
        &self,
        show: PresenceShow,
        status: Option<&str>,
    ) -> Result<(), BridgeError> {
        let message = match show {
            PresenceShow::Away | PresenceShow::ExtendedAway | PresenceShow::DoNotDisturb => {
                Some(status.unwrap_or("Away").to_owned())
            }
            _ => None,
        };
        let handles: Vec<_> = self
            .servers
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        for handle in handles {
            handle.send(ServerCommand::Away {
                message: message.clone(),
            })?;
        }
        Ok(())
    }

    async fn kick(
        &self,
        room: &RemoteAddress,
        nick: &str,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        let address = self.parse(room)?;
        self.server(&address.server).send(ServerCommand::Kick {
            channel: address.name,
            nick: nick.to_owned(),
            reason: reason.map(str::to_owned),
        })
    }

    async fn set_server_settings(
        &self,
        server: &RemoteAddress,
        values: &FormValues,
    ) -> Result<(), BridgeError> {
        let address = self.parse(server)?;
        let mut values = values.clone();
        if !self.options.load().realname_customization {
            // Kept from before the admin took them back: no longer used.
            values.retain(|var, _| !crate::options::NAMES.contains(&var.as_str()));
        }
        let settings = UserServerSettings::parse(&values).map_err(BridgeError::BadRequest)?;
        self.user_settings
            .lock()
            .expect("not poisoned")
            .insert(address.server, settings);
        Ok(())
    }

    async fn set_room_settings(
        &self,
        room: &RemoteAddress,
        values: &FormValues,
    ) -> Result<(), BridgeError> {
        let address = self.parse(room)?;
        let encoding =
            match values.get(crate::options::CHANNEL_ENCODING) {
                None => None,
                Some(label) => Some(encoding_for_label(label).ok_or_else(|| {
                    BridgeError::BadRequest(format!("unknown encoding '{label}'"))
                })?),
            };
        self.channel_encodings_of(&address.server)
            .set(&address.name, encoding);
        Ok(())
    }

    async fn invite(
        &self,
        room: &RemoteAddress,
        user: &RemoteAddress,
        _reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        let room = self.parse(room)?;
        let user = self.parse(user)?;
        if user.server != room.server {
            return Err(BridgeError::BadRequest(format!(
                "{} is on {}, not on {}",
                user.name, user.server, room.server
            )));
        }
        // IRC's INVITE carries no reason.
        self.server(&room.server).send(ServerCommand::Invite {
            channel: room.name,
            nick: user.name,
        })
    }

    async fn set_role(
        &self,
        room: &RemoteAddress,
        nick: &str,
        role: Role,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        self.change_standing(room, nick, None, Some(role), reason)
    }

    async fn set_affiliation(
        &self,
        room: &RemoteAddress,
        nick: &str,
        affiliation: Affiliation,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        self.change_standing(room, nick, Some(affiliation), None, reason)
    }

    async fn room_config(&self, room: &RemoteAddress) -> Result<RoomConfig, BridgeError> {
        let modes = self.channel_modes(&self.parse(room)?).await?;
        Ok(room_config::config_of(&modes.chanmodes, &modes.set))
    }

    async fn set_room_config(
        &self,
        room: &RemoteAddress,
        change: RoomConfig,
    ) -> Result<(), BridgeError> {
        let address = self.parse(room)?;
        let modes = self.channel_modes(&address).await?;
        let changes = room_config::changes_to(&modes.chanmodes, &modes.set, &change)
            .map_err(BridgeError::BadRequest)?;
        if changes.is_empty() {
            return Ok(());
        }
        self.server(&address.server).send(ServerCommand::Modes {
            channel: address.name,
            changes,
        })
    }

    async fn ban_list(&self, room: &RemoteAddress) -> Result<Vec<Ban>, BridgeError> {
        let address = self.parse(room)?;
        let server = self.server(&address.server);
        let entries = server_answer(&server, "the channel's ban list", |reply| {
            ServerCommand::BanList {
                channel: address.name.clone(),
                reply,
            }
        })
        .await?;
        let options = self.options.load();
        let fixed = options.fixed_server.as_deref();
        Ok(entries
            .into_iter()
            .map(|entry| Ban {
                user: IrcAddress::remote(&entry.mask, &address.server, fixed),
                reason: entry.set_by.map(|by| format!("Set by {by}")),
            })
            .collect())
    }

    async fn list_rooms(
        &self,
        under: Option<&RemoteAddress>,
    ) -> Result<Vec<RoomInfo>, BridgeError> {
        let options = self.options.load_full();
        let server = match (under, &options.fixed_server) {
            (Some(address), _) => self.parse(address)?.server,
            (None, Some(fixed)) => fixed.clone(),
            // The gateway's top level: the servers the admin configured, each
            // a JID whose own listing is its channels.
            (None, None) => {
                return Ok(options
                    .servers
                    .keys()
                    .map(|name| RoomInfo {
                        address: RemoteAddress::new(name.clone()),
                        name: Some(format!("IRC server {name}")),
                        members: None,
                    })
                    .collect())
            }
        };
        let (reply, rx) = oneshot::channel();
        self.server(&server).send(ServerCommand::List { reply })?;
        tokio::time::timeout(std::time::Duration::from_secs(60), answer(rx))
            .await
            .unwrap_or_else(|_| {
                Err(BridgeError::Unavailable(
                    "the channel list timed out".into(),
                ))
            })
    }

    async fn set_nick(&self, room: &RemoteAddress, nick: &str) -> Result<(), BridgeError> {
        let address = self.parse(room)?;
        self.server(&address.server).send(ServerCommand::Nick {
            nick: nick.to_owned(),
        })
    }

    async fn server_info(&self, server: &RemoteAddress) -> Result<String, BridgeError> {
        let name = self.parse(server)?.server;
        let Some(handle) = self.open_server(&name) else {
            return Ok(format!("Not connected to {name}."));
        };
        let (reply, rx) = oneshot::channel();
        handle.send(ServerCommand::Describe { reply })?;
        // A connection still connecting reads no command until it is in;
        // the user's other stanzas must not wait that long.
        Ok(
            match tokio::time::timeout(Duration::from_secs(2), rx).await {
                Ok(Ok(text)) => text,
                Ok(Err(_)) => format!("Not connected to {name}."),
                Err(_) => format!("Connecting to {name}."),
            },
        )
    }

    async fn user_software(
        &self,
        user: &RemoteAddress,
        nick: Option<&str>,
    ) -> Result<Later<Software>, BridgeError> {
        let reply = self.ctcp(user, nick, "VERSION", String::new())?;
        Ok(Box::pin(async move {
            reply.await.map(|v| crate::ctcp::software(&v))
        }))
    }

    async fn ping_user(
        &self,
        user: &RemoteAddress,
        nick: Option<&str>,
    ) -> Result<Later<()>, BridgeError> {
        let token = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        let reply = self.ctcp(user, nick, "PING", token)?;
        Ok(Box::pin(async move { reply.await.map(drop) }))
    }

    /// The user's nick, and what a WHOIS tells of them over an open
    /// connection; none is opened for it.
    async fn contact_info(&self, user: &RemoteAddress) -> Result<ContactInfo, BridgeError> {
        let address = self.user_address(user)?;
        let mut info = ContactInfo {
            nickname: Some(address.name.clone()),
            ..ContactInfo::default()
        };
        let Some(server) = self.open_server(&address.server) else {
            return Ok(info);
        };
        let whois = server_answer(&server, "who they are (WHOIS)", |reply| {
            ServerCommand::Whois {
                nick: address.name,
                reply,
            }
        })
        .await?;
        if !whois.nick.is_empty() {
            info.nickname = Some(whois.nick.clone());
        }
        info.description = Some(whois.describe()).filter(|d| !d.is_empty());
        Ok(info)
    }

    async fn react(
        &self,
        to: &RemoteAddress,
        target: &str,
        emojis: Vec<String>,
    ) -> Result<(), BridgeError> {
        let address = self.parse(to)?;
        if address.name.is_empty() {
            return Err(BridgeError::BadRequest(
                "the IRC server itself takes no reactions".into(),
            ));
        }
        // A reaction is to a message seen over a connection: no reason to open one.
        let Some(server) = self.open_server(&address.server) else {
            return Err(BridgeError::Unavailable(format!(
                "not connected to {}",
                address.server
            )));
        };
        let (reply, rx) = oneshot::channel();
        server.send(ServerCommand::React {
            target: address.name,
            msgid: target.to_owned(),
            emojis,
            reply,
        })?;
        answer(rx).await
    }

    async fn send_typing(&self, to: &RemoteAddress, state: ChatState) -> Result<(), BridgeError> {
        let address = self.parse(to)?;
        // Typing is no reason to connect.
        match self.open_server(&address.server) {
            Some(server) if !address.name.is_empty() => server.send(ServerCommand::Typing {
                target: address.name,
                state,
            }),
            _ => Ok(()),
        }
    }

    async fn connected_servers(&self) -> Vec<RemoteAddress> {
        let mut names: Vec<String> = self
            .servers
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, handle)| !handle.is_closed())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort_unstable();
        names.into_iter().map(RemoteAddress::new).collect()
    }

    async fn disconnect_server(
        &self,
        server: &RemoteAddress,
        message: &str,
    ) -> Result<(), BridgeError> {
        let name = self.parse(server)?.server;
        let handle = self.servers.lock().expect("not poisoned").remove(&name);
        match handle {
            Some(handle) if !handle.is_closed() => handle.send(ServerCommand::Quit {
                message: message.to_owned(),
            }),
            _ => Err(BridgeError::BadRequest(format!("not connected to {name}"))),
        }
    }

    async fn hold_connection(&self, server: &RemoteAddress, hold: bool) -> Result<(), BridgeError> {
        let name = self.parse(server)?.server;
        if hold {
            return self
                .ask(&name, None, |reply| ServerCommand::Hold {
                    hold,
                    reply: Some(reply),
                })
                .await;
        }
        match self.open_server(&name) {
            Some(handle) => handle.send(ServerCommand::Hold { hold, reply: None }),
            None => Ok(()),
        }
    }

    async fn watch_contact(&self, contact: &RemoteAddress) -> Result<(), BridgeError> {
        self.watch(contact, true)
    }

    async fn unwatch_contact(&self, contact: &RemoteAddress) -> Result<(), BridgeError> {
        self.watch(contact, false)
    }

    async fn logout(&self) -> Result<(), BridgeError> {
        let handles: Vec<_> = self
            .servers
            .lock()
            .expect("not poisoned")
            .drain()
            .map(|(_, h)| h)
            .collect();
        for handle in handles {
            let _ = handle.send(ServerCommand::Quit {
                message: "Gateway shutdown".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While a connection is still registering it reads no command: asking
    /// about it answers "connecting" at once rather than holding up the
    /// user's other stanzas until it is in.
    #[tokio::test]
    async fn a_connection_still_registering_is_described_as_connecting() {
        // A server that accepts and never answers.
        let (port, _seen) = crate::scripted_server::start(|_| Vec::new()).await;
        let mut options = crate::options::IrcOptions::default();
        options
            .servers
            .insert("srv".into(), crate::scripted_server::options(port));
        let (events, _received) = EventSender::channel(8);
        let session = Arc::new(IrcSession::new(
            Arc::new(arc_swap::ArcSwap::from_pointee(options)),
            crate::scripted_server::alice(),
            false,
            events,
        ));
        let joining = {
            let session = session.clone();
            tokio::spawn(async move {
                let room = RemoteAddress::new("#c%srv");
                session.join_room(&room, "alice", None).await
            })
        };
        while session.open_server("srv").is_none() {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let info = session
            .server_info(&RemoteAddress::new("srv"))
            .await
            .unwrap();
        assert_eq!(info, "Connecting to srv.");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            session
                .server_info(&RemoteAddress::new("other"))
                .await
                .unwrap(),
            "Not connected to other."
        );
        joining.abort();
    }
}
