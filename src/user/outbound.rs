//! The session's events, turned into stanzas for the user.

use estuary_bridge::{
    Affiliation, JoinRefusal, NickRefusal, Occupant, RemoteAddress, RemoteEvent, RemoteMessage,
    RoomConfig, SendRefusal,
};
use tracing::{debug, info, warn};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Id, Message, MessageType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::gateway::Gateway;
use crate::store::{now_ms, MessageRecord, Sender};
use crate::xmpp::address::{bare_jid, occupant_jid};
use crate::xmpp::errors::Failure;
use crate::xmpp::message;
use crate::xmpp::muc::{self, OccupantItem};
use crate::xmpp::xml::clean_text;

use super::rooms::{room_jid, send_occupant_error, OccupantList};
use super::UserSession;

/// A remote timestamp older than this is shown with a XEP-0203 delay.
const DELAY_THRESHOLD_MS: i64 = 5_000;

/// How an occupant left a room, which decides the MUC status code and
/// whether they are shown as banned (affiliation `outcast`).
enum Departure<'a> {
    Left,
    Kicked { by: Option<&'a str> },
    Banned { by: Option<&'a str> },
}

pub(super) async fn handle(user: &mut UserSession, event: RemoteEvent) {
    match event {
        RemoteEvent::Message(m) => user.on_remote_message(*m).await,
        RemoteEvent::Edit {
            room,
            sender,
            nick,
            target,
            body,
        } => {
            let who = (&room, &sender, nick.as_deref());
            user.relay_about(who, &target, |type_, from, to, id, to_id| {
                message::correction(type_, from, to, id, to_id, &body)
            })
            .await;
        }
        RemoteEvent::Retract {
            room,
            sender,
            nick,
            target,
        } => {
            let who = (&room, &sender, nick.as_deref());
            user.relay_about(who, &target, message::retraction).await;
        }
        RemoteEvent::Reaction {
            room,
            sender,
            nick,
            target,
            emojis,
        } => {
            let who = (&room, &sender, nick.as_deref());
            user.relay_about(who, &target, |type_, from, to, id, to_id| {
                message::reactions(type_, from, to, id, to_id, &emojis)
            })
            .await;
        }
        RemoteEvent::Typing {
            room,
            sender,
            nick,
            state,
        } => {
            let Some((from, type_)) = user.sender_jid(&room, &sender, nick.as_deref()) else {
                return;
            };
            user.deliver(room.as_ref(), |to| {
                message::chat_state(type_.clone(), from.clone(), to, state)
            });
        }
        RemoteEvent::ReadMarker {
            room,
            sender,
            up_to,
        } => {
            let Some((to_id, from, type_)) = user.resolve(&room, &sender, None, &up_to).await
            else {
                return;
            };
            user.deliver(room.as_ref(), |to| {
                let mut m = Message::new_with_type(type_.clone(), Some(to));
                m.from = Some(from.clone());
                m.payloads.push(
                    crate::xmpp::xml::element("displayed", "urn:xmpp:chat-markers:0")
                        .attr(
                            xmpp_parsers::minidom::rxml::NcName::try_from("id").expect("valid"),
                            to_id.clone(),
                        )
                        .build(),
                );
                m
            });
        }
        RemoteEvent::Presence(p) => {
            user.offer_contact(&p.user).await;
            user.on_remote_presence(p);
        }
        RemoteEvent::Join {
            room,
            occupant,
            is_self,
            nick_changed,
        } => user.on_join(&room, occupant, is_self, nick_changed).await,
        RemoteEvent::Part {
            room,
            nick,
            reason,
            is_self,
        } => user.on_gone(&room, &nick, is_self, Departure::Left, reason.as_deref()),
        RemoteEvent::Kick {
            room,
            nick,
            by,
            reason,
            is_self,
            banned,
        } => {
            let by = by.as_deref();
            let how = if banned {
                Departure::Banned { by }
            } else {
                Departure::Kicked { by }
            };
            user.on_gone(&room, &nick, is_self, how, reason.as_deref())
        }
        RemoteEvent::JoinRefused { room, why, text } => {
            user.on_join_refused(&room, why, &text).await
        }
        RemoteEvent::NickChange {
            room,
            old,
            new,
            is_self,
        } => user.on_nick_change(&room, &old, &new, is_self),
        RemoteEvent::SendRefused { to, id, why, text } => {
            user.on_send_refused(&to, &id, why, &text).await
        }
        RemoteEvent::NickRefused {
            room,
            nick,
            why,
            text,
        } => user.on_nick_refused(&room, &nick, why, &text),
        RemoteEvent::Topic { room, topic, by } => user.on_topic(&room, topic, by),
        RemoteEvent::RoomNotice { room, text } => user.on_room_notice(&room, &text),
        RemoteEvent::RoomConfig { room, config } => user.on_room_config(&room, config),
        RemoteEvent::RoleChange {
            room,
            nick,
            affiliation,
            role,
        } => {
            user.on_occupant_change(&room, &nick, |list| {
                list.set_standing(&nick, affiliation, role)
            })
            .await
        }
        RemoteEvent::OccupantStatus {
            room,
            nick,
            show,
            status,
        } => {
            user.on_occupant_change(&room, &nick, |list| {
                list.set_presence(&nick, show, status.as_deref())
            })
            .await
        }
        RemoteEvent::RoomInfo { room, name } => {
            debug!(%room, ?name, "room info");
        }
        RemoteEvent::Invited { room, by, reason } => user.on_invited(&room, &by, reason),
        RemoteEvent::Disconnected { reason, server } => {
            warn!(%reason, server = ?server.as_ref().map(RemoteAddress::as_str), "network connection lost");
            let status = match &server {
                Some(server) => format!("Disconnected from {server}: {reason}"),
                None => format!("Disconnected from the network: {reason}"),
            };
            let network = user.gw.network.clone();
            user.rooms.disconnect(&user.gw, &status, |room| {
                carried_by(network.as_ref(), room, server.as_ref())
            });
        }
        RemoteEvent::Reconnected { server } => {
            info!("network connection back; rejoining rooms");
            user.rejoin(server.as_ref()).await;
            user.flush_outbox().await;
        }
    }
}

impl UserSession {
    /// An invitation from the network, as a mediated invitation from the room.
    fn on_invited(&self, room: &RemoteAddress, by: &RemoteAddress, reason: Option<String>) {
        let (Some(room_bare), Ok(inviter)) =
            (room_jid(&self.gw, room), bare_jid(by, self.gw.jid.domain()))
        else {
            warn!(%room, %by, "an invitation names addresses that make no JID; dropped");
            return;
        };
        let m = crate::xmpp::invite::mediated(
            room_bare,
            Jid::from(self.jid.clone()),
            &Jid::from(inviter),
            reason.as_deref(),
        );
        self.gw.send_message(m);
    }

    /// Send one stanza per recipient: every resource in the room, or the
    /// user's bare JID for a direct chat (so that the server delivers it to
    /// every client, or keeps it offline).
    fn deliver(&self, room: Option<&RemoteAddress>, build: impl Fn(Jid) -> Message) {
        match room {
            Some(room) => {
                if let Some(state) = self.rooms.get(room) {
                    for resource in &state.resources {
                        self.gw.send_message(build(Jid::from(resource.clone())));
                    }
                }
            }
            None => self.gw.send_message(build(Jid::from(self.jid.clone()))),
        }
    }

    /// The JID a remote sender appears as, and the message type to use.
    fn sender_jid(
        &self,
        room: &Option<RemoteAddress>,
        sender: &RemoteAddress,
        nick: Option<&str>,
    ) -> Option<(Jid, MessageType)> {
        match room {
            Some(room) => {
                let nick = clean_text(nick.unwrap_or(sender.as_str()));
                let jid = match self.rooms.get(room) {
                    Some(state) => state.occupant(&nick)?,
                    None => occupant_jid(room, self.gw.jid.domain(), &nick).ok()?,
                };
                Some((Jid::from(jid), MessageType::Groupchat))
            }
            None => {
                // Written to through a room the user is still in: the
                // answer comes from the occupant JID written to.
                let via_room = (self.private_chats.via(sender)).and_then(|(room, nick)| {
                    self.rooms.get(room).filter(|r| r.joined)?.occupant(nick)
                });
                let from = match via_room {
                    Some(occupant) => Jid::from(occupant),
                    None => Jid::from(bare_jid(sender, self.gw.jid.domain()).ok()?),
                };
                Some((from, MessageType::Chat))
            }
        }
    }

    /// An event about an earlier message (an edit, a retraction, a reaction)
    /// from `who` (room, sender, nick): shown to the user's clients under a
    /// fresh id, pointing at the id they know the earlier message by.
    async fn relay_about(
        &self,
        who: (&Option<RemoteAddress>, &RemoteAddress, Option<&str>),
        target: &str,
        build: impl Fn(MessageType, Jid, Jid, &str, &str) -> Message,
    ) {
        let (room, sender, nick) = who;
        let Some((to_id, from, type_)) = self.resolve(room, sender, nick, target).await else {
            return;
        };
        let id = crate::xmpp::stanza_id::fresh();
        self.deliver(room.as_ref(), |to| {
            build(type_.clone(), from.clone(), to, &id, &to_id)
        });
    }

    /// The id the user's clients know a remote message by, plus sender JID and type.
    async fn resolve(
        &self,
        room: &Option<RemoteAddress>,
        sender: &RemoteAddress,
        nick: Option<&str>,
        remote_id: &str,
    ) -> Option<(String, Jid, MessageType)> {
        let chat = room.as_ref().unwrap_or(sender);
        let Some(known_as) = self.known_id(chat.as_str(), room, remote_id).await else {
            debug!(
                remote_id,
                "event about a message the gateway never saw; skipped"
            );
            return None;
        };
        let (from, type_) = self.sender_jid(room, sender, nick)?;
        Some((known_as, from, type_))
    }

    async fn on_remote_message(&mut self, m: RemoteMessage) {
        let chat = m.room.clone().unwrap_or_else(|| m.sender.clone());
        if m.room.is_none() && !m.from_self {
            self.offer_contact(&m.sender).await;
        }
        if m.from_self {
            // The network echoed the user's own message: reflect it under the id the user sent it with.
            let sent_as = m.sent_as.as_deref().unwrap_or(&m.id);
            let awaited = self.awaiting_echo.take(chat.as_str(), sent_as);
            let record = match awaited {
                Some(record) => Ok(Some(record)),
                None => {
                    self.gw
                        .messages
                        .by_remote_id(&self.account.jid, chat.as_str(), sent_as)
                        .await
                }
            };
            if let Ok(Some(record)) = record {
                if record.sender == Sender::Account {
                    if let Some(room) = &m.room {
                        self.reflect_echo(room, &m, &record);
                    } else if m.id != sent_as && self.gw.info.capabilities.refers_to_messages(false)
                    {
                        // Also under the id the network gave it (IRC's
                        // msgid), which a reaction to it names.
                        self.gw.messages.record(MessageRecord {
                            remote_id: m.id.clone(),
                            ..record
                        });
                    }
                    return;
                }
            }
            if m.room.is_none() {
                debug!("own direct message sent from elsewhere; not shown");
                return;
            }
        }
        // History the network plays back: the archive showed it already, as
        // history or live; what it lacks (said while the gateway was away)
        // is kept, and shown unless the join asked for no history.
        let mut shown = true;
        if let (true, Some(room)) = (m.replayed, &m.room) {
            if self.archived_stanza_id(room, &m.id).await.is_some() {
                debug!("history the network plays back is in the archive; not shown again");
                return;
            }
            shown = !self.rooms.get(room).is_some_and(|r| r.no_history);
        }
        let Some((from, type_)) = self.sender_jid(&m.room, &m.sender, m.nick.as_deref()) else {
            warn!(sender = %m.sender, "cannot make a JID for a remote sender; message skipped");
            return;
        };
        let mut stanza_id = crate::xmpp::stanza_id::fresh();
        if let Some(room) = &m.room {
            // Other users of the gateway in the room may see it too: one stanza-id for all.
            stanza_id = self
                .gw
                .archiver
                .stanza_id_for(room.as_str(), &m.id, &stanza_id);
        }
        if self
            .gw
            .info
            .capabilities
            .refers_to_messages(m.room.is_some())
        {
            self.gw.messages.record(MessageRecord {
                gateway: self.gw.domain.clone(),
                account: self.account.jid.clone(),
                chat: chat.to_string(),
                remote_id: m.id.clone(),
                sender: if m.from_self {
                    Sender::Account
                } else {
                    Sender::Remote(m.sender.to_string())
                },
                xmpp_id: Some(stanza_id.clone()),
                stanza_id: stanza_id.clone(),
                origin_id: None,
            });
        }
        // In a room, the sender's occupant JID is the room's JID and a nick.
        let by = match &m.room {
            Some(_) => Jid::from(from.to_bare()),
            None => Jid::from(self.jid.clone()),
        };
        let reply_to = match &m.reply_to {
            Some(target) => self.known_id(chat.as_str(), &m.room, target).await,
            None => None,
        };
        let delayed = m
            .timestamp_ms
            .filter(|ts| now_ms() - ts > DELAY_THRESHOLD_MS);
        let room_ref = m.room.clone();
        let body = message::body_with_attachments(&m.body, &m.attachments);
        // Archived before it is shown: a client that saw it finds it in MAM.
        if let Some(room) = &m.room {
            self.archive_remote(room, &m, &body, &stanza_id);
        }
        if !shown {
            return;
        }
        // A private message from an occupant JID (see `sender_jid`).
        let through_room = room_ref.is_none() && from.resource().is_some();
        self.deliver(room_ref.as_ref(), |to| {
            let mut stanza = message::text(
                type_.clone(),
                from.clone(),
                to,
                &stanza_id,
                &body,
                m.kind,
                &by,
            );
            if through_room {
                stanza.payloads.push(muc::private_message_marker());
            }
            for attachment in &m.attachments {
                stanza.payloads.push(message::oob(attachment));
            }
            if let Some(id) = &reply_to {
                stanza.payloads.push(message::reply(id));
            }
            if let Some(ts) = delayed {
                stanza.payloads.push(message::delay(&by, ts));
            }
            stanza
        });
    }

    /// The stanza-id of the room message `remote_id` in the archive, if it
    /// is there: among the archiver's recent ids (which include those not
    /// written yet), else in the store.
    async fn archived_stanza_id(&self, room: &RemoteAddress, remote_id: &str) -> Option<String> {
        if let Some(id) = self.gw.archiver.recent_stanza_id(room.as_str(), remote_id) {
            return Some(id);
        }
        self.gw
            .store
            .archived_stanza_id(&self.gw.domain, room.as_str(), remote_id)
            .await
            .ok()
            .flatten()
    }

    /// The id the user's clients know the message `target` (a remote id)
    /// by: from the id map where the network keeps one, else, in a room,
    /// from the archive (IRC's msgid).
    async fn known_id(
        &self,
        chat: &str,
        room: &Option<RemoteAddress>,
        target: &str,
    ) -> Option<String> {
        let mapped = self
            .gw
            .messages
            .by_remote_id(&self.account.jid, chat, target)
            .await
            .ok()
            .flatten();
        if let Some(record) = mapped {
            return Some(visible_id(&record));
        }
        self.archived_stanza_id(room.as_ref()?, target).await
    }

    fn reflect_echo(&self, room: &RemoteAddress, m: &RemoteMessage, record: &MessageRecord) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        let Some(from) = state.occupant(&state.nick) else {
            return;
        };
        let by = Jid::from(from.to_bare());
        // The other users of the gateway in the room get the echoed id too,
        // and whichever copy came first chose the stanza-id for all.
        let stanza_id = self
            .gw
            .archiver
            .stanza_id_for(room.as_str(), &m.id, &record.stanza_id);
        let id = record.xmpp_id.as_deref().unwrap_or(&stanza_id);
        self.archive_echo(room, m, &stanza_id);
        for resource in &state.resources {
            let mut stanza = message::text(
                MessageType::Groupchat,
                Jid::from(from.clone()),
                Jid::from(resource.clone()),
                &stanza_id,
                &m.body,
                m.kind,
                &by,
            );
            // The id the user's client sent it with, as MUC requires.
            stanza.id = Some(Id(id.to_owned()));
            if let Some(origin) = &record.origin_id {
                stanza.payloads.push(message::origin_id(origin));
            }
            self.gw.send_message(stanza);
        }
    }

    async fn on_join(
        &mut self,
        room: &RemoteAddress,
        occupant: Occupant,
        is_self: bool,
        nick_changed: bool,
    ) {
        let Some(state) = self.rooms.get_mut(room) else {
            debug!(%room, "occupant of a room the user is not in; skipped");
            return;
        };
        if is_self {
            state.nick = occupant.nick.clone();
        }
        state.occupants.insert(occupant.clone());
        let first_self = is_self && !state.joined;
        if is_self {
            state.joined = true;
        }
        let mut statuses = Vec::new();
        if is_self {
            statuses.extend([muc::SELF_PRESENCE, muc::NON_ANONYMOUS]);
            if nick_changed {
                statuses.push(muc::NICK_ASSIGNED);
            }
        }
        let Some(from) = state.occupant(&occupant.nick) else {
            return;
        };
        let real = (!is_self)
            .then(|| real_jid(&self.gw, room, &occupant))
            .flatten();
        for resource in &state.resources {
            let to = Jid::from(resource.clone());
            // Themself, a user is shown their own JID (non-anonymous room).
            let real = if is_self {
                Some(to.clone())
            } else {
                real.clone()
            };
            self.gw.send_presence(muc::occupant(
                Jid::from(from.clone()),
                to,
                &occupant,
                &statuses,
                real,
            ));
        }
        if first_self {
            let subject = state.subject.clone().unwrap_or_default();
            let room_jid = state.jid.clone().map(Jid::from);
            let resources: Vec<FullJid> = state.resources.iter().cloned().collect();
            for resource in &resources {
                self.send_history(room, resource).await;
            }
            // The subject comes last: clients take it as the end of the join.
            if let Some(room_bare) = room_jid {
                for resource in resources {
                    self.gw.send_message(muc::subject(
                        room_bare.clone(),
                        Jid::from(resource),
                        &subject,
                    ));
                }
            }
        }
    }

    /// Apply `change` to an occupant of `room` and show them as they are
    /// now; nothing when they are not in the room.
    async fn on_occupant_change(
        &mut self,
        room: &RemoteAddress,
        nick: &str,
        change: impl FnOnce(&mut OccupantList) -> Option<Occupant>,
    ) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let Some(occupant) = change(&mut state.occupants) else {
            return;
        };
        let is_self = nick == state.nick && state.joined;
        self.on_join(room, occupant, is_self, false).await;
    }

    /// Show a newly joined resource everything the others already saw, and
    /// the history its join presence asked for.
    pub(super) async fn replay_room(&mut self, room: &RemoteAddress, resource: &FullJid) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        let to = Jid::from(resource.clone());
        let mut own = None;
        for occupant in state.occupants.iter() {
            if occupant.nick == state.nick {
                own = Some(occupant);
                continue;
            }
            if let Some(from) = state.occupant(&occupant.nick) {
                let real = real_jid(&self.gw, room, &occupant);
                self.gw.send_presence(muc::occupant(
                    Jid::from(from),
                    to.clone(),
                    &occupant,
                    &[],
                    real,
                ));
            }
        }
        let own = own.unwrap_or(Occupant {
            user: None,
            nick: state.nick.clone(),
            affiliation: estuary_bridge::Affiliation::None,
            role: estuary_bridge::Role::Participant,
            show: estuary_bridge::PresenceShow::Online,
            status: None,
        });
        if let Some(from) = state.occupant(&state.nick) {
            self.gw.send_presence(muc::occupant(
                Jid::from(from),
                to.clone(),
                &own,
                &[muc::SELF_PRESENCE, muc::NON_ANONYMOUS],
                Some(to.clone()),
            ));
        }
        let subject = state.subject.clone().unwrap_or_default();
        let room_jid = state.jid.clone().map(Jid::from);
        self.send_history(room, resource).await;
        if let Some(room_jid) = room_jid {
            self.gw.send_message(muc::subject(room_jid, to, &subject));
        }
    }

    fn on_gone(
        &mut self,
        room: &RemoteAddress,
        nick: &str,
        is_self: bool,
        how: Departure<'_>,
        reason: Option<&str>,
    ) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let occupant = state.occupants.remove(nick);
        if occupant.is_none() && !is_self {
            // Not someone the user was shown (see `RemoteEvent::Part`).
            return;
        }
        let kept = occupant.as_ref().map(|o| o.affiliation).unwrap_or_default();
        let (code, affiliation, actor) = match how {
            Departure::Left => (None, kept, None),
            Departure::Kicked { by } => (Some(muc::KICKED), kept, by),
            Departure::Banned { by } => (Some(muc::BANNED), Affiliation::Outcast, by),
        };
        let statuses: Vec<u16> = is_self
            .then_some(muc::SELF_PRESENCE)
            .into_iter()
            .chain(code)
            .collect();
        let item = OccupantItem {
            affiliation,
            role: estuary_bridge::Role::None,
            nick: None,
            reason,
            actor,
        };
        if let Some(from) = state.occupant(nick) {
            for resource in &state.resources {
                self.gw.send_presence(muc::gone(
                    Jid::from(from.clone()),
                    Jid::from(resource.clone()),
                    &item,
                    &statuses,
                    reason,
                ));
            }
        }
        if is_self {
            self.rooms.remove(room);
        }
    }

    /// The network refused the join: each resource that asked is told why,
    /// in MUC's terms (a client asks for the password on not-authorized),
    /// and the room is forgotten.
    async fn on_join_refused(&mut self, room: &RemoteAddress, why: JoinRefusal, text: &str) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        info!(?why, "the network refused the join");
        let failure = match why {
            JoinRefusal::Redirected { to } => match room_jid(&self.gw, &to) {
                Some(jid) => Failure::new(
                    ErrorType::Modify,
                    DefinedCondition::Redirect {
                        new_address: Some(crate::xmpp::address::join_uri(&jid)),
                    },
                    format!("{text} (forwarded to {to})"),
                ),
                None => Failure::not_allowed(text),
            },
            JoinRefusal::PasswordRequired => Failure::not_authorized(text),
            JoinRefusal::Banned => Failure::forbidden(text),
            JoinRefusal::MembersOnly | JoinRefusal::RegistrationRequired => {
                Failure::registration_required(text)
            }
            JoinRefusal::Full => Failure::service_unavailable(text),
            JoinRefusal::TooManyRooms => {
                Failure::new(ErrorType::Wait, DefinedCondition::ResourceConstraint, text)
            }
            JoinRefusal::NoSuchRoom => Failure::item_not_found(text),
            JoinRefusal::Other => Failure::not_allowed(text),
        };
        send_occupant_error(&self.gw, state, &state.nick, &failure);
        self.forget_room(room).await;
    }

    /// The network refused a message the user sent: it will never be
    /// reflected, so the clients are told with an error under the message's
    /// own id, from where it was sent.
    async fn on_send_refused(
        &mut self,
        to: &RemoteAddress,
        id: &str,
        why: SendRefusal,
        text: &str,
    ) {
        // Awaited in memory, or, where the chat keeps the id map (IRC's
        // private chats, for reactions), recorded there.
        let record = match self.awaiting_echo.take(to.as_str(), id) {
            Some(record) => Some(record),
            None => self
                .gw
                .messages
                .by_remote_id(&self.account.jid, to.as_str(), id)
                .await
                .ok()
                .flatten()
                .filter(|record| record.sender == Sender::Account),
        };
        let Some(record) = record else {
            debug!("a refused message that is not awaited");
            return;
        };
        info!(?why, "the network refused a message");
        let failure = match why {
            SendRefusal::Forbidden => Failure::forbidden(text),
            SendRefusal::NoSuchRecipient => Failure::item_not_found(text),
        };
        let Ok(from) = bare_jid(to, self.gw.jid.domain()) else {
            return;
        };
        // A room's clients are its resources; a direct message's, every
        // resource of the user (or their bare JID, when none is known).
        let resources: Vec<Jid> = match self.rooms.get(to) {
            Some(room) => room.resources.iter().cloned().map(Jid::from).collect(),
            None if !self.resources.is_empty() => {
                self.resources.iter().cloned().map(Jid::from).collect()
            }
            None => vec![Jid::from(self.jid.clone())],
        };
        for resource in resources {
            self.gw.send_message(message::refused(
                Jid::from(from.clone()),
                resource,
                record.xmpp_id.clone(),
                failure.to_stanza_error(None).into(),
            ));
        }
    }

    /// The network refused the nick the user asked for: their clients are
    /// told so from the occupant JID they asked for (XEP-0045 §7.6), and
    /// the user stays under the old nick.
    fn on_nick_refused(&mut self, room: &RemoteAddress, nick: &str, why: NickRefusal, text: &str) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if state.nick_asked.take().as_deref() != Some(nick) {
            // Asked in another room of the same network.
            return;
        }
        let state = &*state;
        info!(?why, "the network refused the nick change");
        let failure = match why {
            NickRefusal::InUse => Failure::conflict(text),
            NickRefusal::Invalid => Failure::not_acceptable(text),
            NickRefusal::NotAllowed => Failure::not_allowed(text),
        };
        send_occupant_error(&self.gw, state, nick, &failure);
    }

    fn on_nick_change(&mut self, room: &RemoteAddress, old: &str, new: &str, is_self: bool) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let mut occupant = match state.occupants.remove(old) {
            Some(occupant) => occupant,
            // Not someone the user was shown (see `RemoteEvent::Part`).
            None if !is_self => return,
            None => Occupant {
                user: None,
                nick: old.to_owned(),
                affiliation: estuary_bridge::Affiliation::None,
                role: estuary_bridge::Role::Participant,
                show: estuary_bridge::PresenceShow::Online,
                status: None,
            },
        };
        occupant.nick = new.to_owned();
        let mut gone_codes = vec![muc::NICK_CHANGED];
        let mut back_codes = vec![];
        if is_self {
            gone_codes.insert(0, muc::SELF_PRESENCE);
            back_codes.push(muc::SELF_PRESENCE);
            state.nick = new.to_owned();
            state.nick_asked = None;
        }
        let item = OccupantItem {
            affiliation: occupant.affiliation,
            role: occupant.role,
            nick: Some(new),
            reason: None,
            actor: None,
        };
        let real = (!is_self)
            .then(|| real_jid(&self.gw, room, &occupant))
            .flatten();
        if let (Some(old_jid), Some(new_jid)) = (state.occupant(old), state.occupant(new)) {
            for resource in &state.resources {
                let to = Jid::from(resource.clone());
                let real = if is_self {
                    Some(to.clone())
                } else {
                    real.clone()
                };
                self.gw.send_presence(muc::gone(
                    Jid::from(old_jid.clone()),
                    to.clone(),
                    &item,
                    &gone_codes,
                    None,
                ));
                self.gw.send_presence(muc::occupant(
                    Jid::from(new_jid.clone()),
                    to,
                    &occupant,
                    &back_codes,
                    real,
                ));
            }
        }
        state.occupants.insert(occupant);
    }

    fn on_topic(&mut self, room: &RemoteAddress, topic: String, by: Option<String>) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.subject = Some(topic.clone());
        if !state.joined {
            return; // Sent with the self-presence when the join completes.
        }
        let from = match by.as_deref().and_then(|nick| state.occupant(nick)) {
            Some(full) => Some(Jid::from(full)),
            None => state.jid.clone().map(Jid::from),
        };
        let Some(from) = from else { return };
        for resource in &state.resources {
            self.gw.send_message(muc::subject(
                from.clone(),
                Jid::from(resource.clone()),
                &topic,
            ));
        }
    }

    /// The room's settings, as the network tells them on the join and on
    /// each change. A change is told to the user's clients in it with
    /// XEP-0045's status 104 (§10.2.1), on which they read the room's
    /// disco#info again. So are settings first learnt after the join (IRC
    /// tells a channel's modes only when asked, after its member list): a
    /// client may have read the disco#info as soon as it was in.
    fn on_room_config(&mut self, room: &RemoteAddress, config: RoomConfig) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        debug!(%room, ?config, "room configuration");
        let before = state.config.replace(config);
        if before == state.config || !state.joined {
            return;
        }
        let Some(from) = state.jid.clone().map(Jid::from) else {
            return;
        };
        self.deliver(Some(room), |to| {
            muc::config_changed(from.clone(), to, &crate::xmpp::stanza_id::fresh())
        });
    }

    /// What the room itself tells (an IRC mode change), from the room's
    /// JID, to the user's clients in it; a notice, not a message of anyone's,
    /// so it is not archived.
    fn on_room_notice(&self, room: &RemoteAddress, text: &str) {
        let Some(from) = (self.rooms.get(room))
            .filter(|r| r.joined)
            .and_then(|r| r.jid.clone())
            .map(Jid::from)
        else {
            return;
        };
        self.deliver(Some(room), |to| {
            muc::room_notice(from.clone(), to, &crate::xmpp::stanza_id::fresh(), text)
        });
    }

    /// Join again every room the user was in, after the network came back.
    /// Join again the rooms `server` carries (every room, for none).
    pub(super) async fn rejoin(&mut self, server: Option<&RemoteAddress>) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        for room in self.rooms.addresses() {
            if !carried_by(self.gw.network.as_ref(), &room, server) {
                continue;
            }
            let Some((nick, password)) = self
                .rooms
                .get(&room)
                .map(|r| (r.nick.clone(), r.password.clone()))
            else {
                continue;
            };
            if let Err(e) = session.join_room(&room, &nick, password.as_deref()).await {
                warn!(%room, error = %e, "rejoining failed");
            }
        }
    }
}

/// Whether the connection to `server` carries `room`; every connection
/// does where none is named.
fn carried_by(
    network: &dyn estuary_bridge::Network,
    room: &RemoteAddress,
    server: Option<&RemoteAddress>,
) -> bool {
    server.is_none_or(|server| network.server_of(room).as_ref() == Some(server))
}

/// The JID another occupant of `room` is shown with, the rooms being
/// non-anonymous: their user address on the gateway (`nick%server@gw` on
/// IRC), where the bridge or the network can tell it.
pub(super) fn real_jid(gw: &Gateway, room: &RemoteAddress, occupant: &Occupant) -> Option<Jid> {
    let user = match &occupant.user {
        Some(user) => user.clone(),
        None => gw.network.occupant_user(room, &occupant.nick)?,
    };
    bare_jid(&user, gw.jid.domain()).ok().map(Jid::from)
}

/// The id under which the user's clients know a message.
fn visible_id(record: &MessageRecord) -> String {
    match record.sender {
        Sender::Account => record
            .xmpp_id
            .clone()
            .or_else(|| record.origin_id.clone())
            .unwrap_or_else(|| record.stanza_id.clone()),
        Sender::Remote(_) => record.stanza_id.clone(),
    }
}
