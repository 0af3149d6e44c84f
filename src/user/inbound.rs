//! The user's stanzas, turned into calls on their bridge session.

use estuary_bridge::{AddressKind, Later, OutgoingMessage, RemoteAddress};
use tracing::{debug, warn, Instrument};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;

use crate::store::{MessageRecord, Sender};
use crate::xmpp::address::Target;
use crate::xmpp::errors::Failure;
use crate::xmpp::invite::{self, Invitation};
use crate::xmpp::message::{self, Incoming};
use crate::xmpp::service::NS_VCARD;
use crate::xmpp::xml::{NS_COMMANDS, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION};
use crate::xmpp::{muc, muc_admin, muc_owner};
use crate::xmpp::{rsm, service};

use super::outbox::QueuedSend;
use super::room_settings::CONFIGURE_NODE;
use super::rooms::{room_jid, send_self_gone, RoomState};
use super::server_settings::CONNECTION_INFO_NODE;
use super::UserSession;

/// Longest message body accepted, in bytes; longer ones are refused with an
/// error rather than cut.
pub const MAX_BODY: usize = 64 * 1024;

impl UserSession {
    pub(super) async fn on_stanza(&mut self, stanza: Stanza, target: Target) {
        let Target::Remote {
            address,
            kind,
            resource,
        } = target
        else {
            return;
        };
        let span = tracing::info_span!("remote", room = %address);
        let result = async {
            match &stanza {
                Stanza::Message(m) => match (kind, resource.as_deref()) {
                    (AddressKind::Room, Some(nick)) => {
                        self.on_message_to_occupant(m, &address, nick).await
                    }
                    _ => {
                        if kind == AddressKind::User && !m.bodies.is_empty() {
                            self.private_chats.ended(&address);
                        }
                        self.on_message(m, &address, kind).await
                    }
                },
                Stanza::Presence(p) => self.on_room_presence(p, &address, kind, resource).await,
                Stanza::Iq(iq) => self.on_iq(iq, &address, kind, resource.as_deref()).await,
            }
        }
        .instrument(span)
        .await;
        if let Err(failure) = result {
            debug!(condition = ?failure.condition, reason = %failure.text, "refused");
            self.gw.reply_error(&stanza, &failure);
        }
    }

    async fn on_iq(
        &mut self,
        iq: &Iq,
        address: &RemoteAddress,
        kind: AddressKind,
        resource: Option<&str>,
    ) -> Result<(), Failure> {
        if kind == AddressKind::Room && crate::xmpp::mam::is_query(iq) {
            return self.on_mam(iq, address).await;
        }
        if let Iq::Set { payload, .. } = iq {
            if kind == AddressKind::Room && payload.is("command", NS_COMMANDS) {
                return self.on_room_command(iq, address, payload).await;
            }
            if kind == AddressKind::Server && payload.is("command", NS_COMMANDS) {
                return self.on_server_command(iq, address, payload).await;
            }
            if kind == AddressKind::Room && payload.is("moderate", service::NS_MODERATE) {
                return self.on_moderate(iq, address, payload).await;
            }
            if kind == AddressKind::Room && payload.is("query", muc_admin::NS_MUC_ADMIN) {
                return self.on_muc_admin(iq, address, payload).await;
            }
            if kind == AddressKind::Room && payload.is("query", muc_owner::NS_MUC_OWNER) {
                return self.on_room_config_change(iq, address, payload).await;
            }
            return Err(Failure::service_unavailable("not supported here"));
        }
        let Iq::Get { payload, from, .. } = iq else {
            return Ok(());
        };
        if kind == AddressKind::Room && payload.is("query", muc_admin::NS_MUC_ADMIN) {
            return self.on_muc_admin_list(iq, address, payload).await;
        }
        if kind == AddressKind::Room && payload.is("query", muc_owner::NS_MUC_OWNER) {
            self.joined(address)?;
            let config = self
                .session()?
                .room_config(address)
                .await
                .map_err(Failure::from)?;
            self.gw.reply_result(iq, Some(muc_owner::form(&config)));
            return Ok(());
        }
        // Discord cannot tell a user id from a channel id by its shape: ask the network.
        if payload.is("vCard", NS_VCARD) && kind != AddressKind::Server {
            let info = self
                .session()?
                .contact_info(address)
                .await
                .map_err(Failure::from)?;
            self.gw
                .reply_result(iq, Some(crate::xmpp::service::vcard(&info)));
            return Ok(());
        }
        if payload.attr("node") == Some(NS_COMMANDS) {
            // XEP-0050 discovery, before the channel list: a client asking
            // the server's JID for its commands must not start a LIST.
            if payload.is("query", NS_DISCO_ITEMS) {
                let commands = self.commands_of(address, kind)?;
                self.gw
                    .reply_result(iq, Some(service::items(Some(NS_COMMANDS), &commands)));
                return Ok(());
            }
            if payload.is("query", NS_DISCO_INFO) {
                self.gw
                    .reply_result(iq, Some(service::commands_node_info()));
                return Ok(());
            }
        }
        if payload.is("query", NS_DISCO_INFO)
            && payload.attr("node").is_none()
            && resource.is_none()
        {
            // The router sends only a room's here, for the user may be in it.
            let name = address.as_str();
            let info = match self.rooms.get(address).filter(|r| r.joined) {
                Some(room) => service::joined_room_info(
                    &self.gw.info,
                    name,
                    room.occupants.len(),
                    room.subject.as_deref(),
                    room.config.as_ref(),
                ),
                None => service::remote_info(kind, &self.gw.info, name),
            };
            self.gw.reply_result(iq, Some(info));
            return Ok(());
        }
        if payload.is("query", NS_DISCO_ITEMS) && kind == AddressKind::Server {
            return self.list_rooms(iq, address, payload).await;
        }
        let room = self.rooms.get(address);
        if kind == AddressKind::Room && resource.is_some() && !room.is_some_and(|r| r.joined) {
            // Only occupants address occupants (XEP-0045); for a self-ping
            // (XEP-0410) this tells the client to join again.
            return Err(Failure::not_acceptable("you are not in this room"));
        }
        let own_nick = room.map(|r| r.nick.as_str());
        // Another user: by their address, or as an occupant of a room
        // (`Some(nick)`); `None` for a room, a server or the user's own
        // occupant, which the gateway answers for.
        let other_user = match (kind, resource) {
            (AddressKind::User, _) => Some(None),
            (AddressKind::Room, Some(nick)) if Some(nick) != own_nick => Some(Some(nick)),
            _ => None,
        };
        if payload.is("query", NS_VERSION) {
            // A remote user's software (biboumi: CTCP VERSION).
            let Some(nick) = other_user else {
                self.gw.reply_result(iq, Some(service::version()));
                return Ok(());
            };
            let later = self
                .session()?
                .user_software(address, nick)
                .await
                .map_err(Failure::from)?;
            self.answer_later(iq, later, |software| Some(service::software(&software)));
            return Ok(());
        }
        if let (true, Some(nick)) = (payload.is("ping", NS_PING), other_user) {
            // Whether that user's client answers (biboumi: CTCP PING).
            let later = self
                .session()?
                .ping_user(address, nick)
                .await
                .map_err(Failure::from)?;
            self.answer_later(iq, later, |()| None);
            return Ok(());
        }
        if payload.is("ping", NS_PING) {
            // XEP-0410: a client pings its own occupant JID to learn whether it is still in.
            let joined = self.rooms.get(address).is_some_and(|r| {
                r.joined
                    && resource == Some(r.nick.as_str())
                    && from
                        .as_ref()
                        .and_then(|f| f.clone().try_into_full().ok())
                        .is_some_and(|f| r.resources.contains(&f))
            });
            // The room itself, or anything but a room, answers as any entity does.
            return if joined || kind != AddressKind::Room || resource.is_none() {
                self.gw.reply_result(iq, None);
                Ok(())
            } else {
                Err(Failure::not_acceptable("you are not in this room"))
            };
        }
        Err(Failure::service_unavailable("not supported here"))
    }

    /// The ad-hoc commands of a room's or a server's JID, as
    /// (JID, node, name) items.
    fn commands_of(
        &self,
        address: &RemoteAddress,
        kind: AddressKind,
    ) -> Result<Vec<(String, Option<String>, String)>, Failure> {
        let jid = crate::xmpp::address::bare_jid(address, self.gw.jid.domain())?.to_string();
        let configure = |name: &str| {
            (
                jid.clone(),
                Some(CONFIGURE_NODE.to_owned()),
                name.to_owned(),
            )
        };
        Ok(match kind {
            AddressKind::Room => {
                let mut what = vec!["persistent", "history"];
                let network_fields = self.gw.network.room_fields();
                what.extend(network_fields.iter().map(|f| f.var));
                vec![configure(&format!(
                    "Configure this room ({})",
                    what.join(", ")
                ))]
            }
            AddressKind::Server => {
                let mut commands = Vec::new();
                if self.gw.info.capabilities.server_info {
                    commands.push((
                        jid.clone(),
                        Some(CONNECTION_INFO_NODE.to_owned()),
                        "Show your connection to this server".to_owned(),
                    ));
                }
                if !self.gw.network.server_fields().is_empty() {
                    commands.push(configure("Configure your settings for this server"));
                }
                commands
            }
            _ => Vec::new(),
        })
    }

    /// Answer `iq` once `later` has, on a task of its own: a remote user
    /// may take seconds to answer, or never do, and the user's other
    /// stanzas must not wait for them meanwhile.
    fn answer_later<T: Send + 'static>(
        &self,
        iq: &Iq,
        later: Later<T>,
        payload: impl FnOnce(T) -> Option<Element> + Send + 'static,
    ) {
        let gw = self.gw.clone();
        let iq = iq.clone();
        tokio::spawn(
            async move {
                match later.await {
                    Ok(value) => gw.reply_result(&iq, payload(value)),
                    Err(e) => gw.reply_error(&Stanza::Iq(iq), &Failure::from(e)),
                }
            }
            .in_current_span(),
        );
    }

    /// disco#items on the gateway itself, for a logged-in user: what the
    /// network lists at its top (Matrix: joined rooms; Discord: guilds; IRC:
    /// the configured servers). A network with nothing to list answers with
    /// an empty list, as the gateway did before the user logged in.
    pub(super) async fn list_top_rooms(&self, iq: &Iq, query: &xmpp_parsers::minidom::Element) {
        let result = match self.session.as_deref() {
            Some(session) => session.list_rooms(None).await,
            None => Ok(Vec::new()),
        };
        let rooms = result.unwrap_or_else(|e| {
            debug!(error = %e, "nothing to list on the gateway");
            Vec::new()
        });
        self.reply_room_list(iq, query, rooms);
    }

    /// disco#items on a server: the rooms it lists, paged with RSM.
    async fn list_rooms(
        &self,
        iq: &Iq,
        address: &RemoteAddress,
        query: &xmpp_parsers::minidom::Element,
    ) -> Result<(), Failure> {
        let session = self.session()?;
        let rooms = session
            .list_rooms(Some(address))
            .await
            .map_err(Failure::from)?;
        self.reply_room_list(iq, query, rooms);
        Ok(())
    }

    fn reply_room_list(
        &self,
        iq: &Iq,
        query: &xmpp_parsers::minidom::Element,
        rooms: Vec<estuary_bridge::RoomInfo>,
    ) {
        let mut items = Vec::with_capacity(rooms.len());
        for room in rooms {
            let Ok(jid) = crate::xmpp::address::bare_jid(&room.address, self.gw.jid.domain())
            else {
                continue;
            };
            let name = match (room.name, room.members) {
                (Some(name), Some(n)) => format!("{name} ({n})"),
                (Some(name), None) => name,
                (None, Some(n)) => format!("{} ({n})", room.address),
                (None, None) => room.address.to_string(),
            };
            items.push((jid.to_string(), None, name));
        }
        let keys: Vec<String> = items.iter().map(|(jid, _, _)| jid.clone()).collect();
        let request = rsm::Request::parse(query);
        let range = request.page(&keys);
        let mut reply = service::items(None, &items[range.clone()]);
        reply.append_child(rsm::answer(&keys, range));
        self.gw.reply_result(iq, Some(reply));
    }

    /// XEP-0425: a moderator retracts someone's message, named by the
    /// stanza-id the gateway gave it. Whether the user may is the network's
    /// decision (Matrix power levels, Discord permissions); its refusal comes
    /// back as `forbidden`. The network's own retraction event then reaches
    /// every occupant.
    async fn on_moderate(
        &self,
        iq: &Iq,
        address: &RemoteAddress,
        moderate: &xmpp_parsers::minidom::Element,
    ) -> Result<(), Failure> {
        if !self.gw.info.capabilities.moderation {
            return Err(Failure::not_implemented(
                "moderation is not available here: the gateway acts on this network with \
                 rights of its own, which are not yours",
            ));
        }
        self.joined(address)?;
        let id = moderate
            .attr("id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Failure::bad_request("moderation needs the message's stanza-id"))?;
        let record = self
            .gw
            .messages
            .by_stanza_id(&self.account.jid, address.as_str(), id)
            .await
            .map_err(|_| Failure::internal("the gateway's store failed"))?
            .ok_or_else(|| Failure::item_not_found(format!("no message with id '{id}' here")))?;
        let reason = moderate
            .children()
            .find(|c| c.name() == "reason")
            .map(|r| r.text())
            .filter(|r| !r.trim().is_empty());
        self.session()?
            .moderate_message(address, &record.remote_id, reason.as_deref())
            .await
            .map_err(Failure::from)?;
        self.gw.reply_result(iq, None);
        Ok(())
    }

    /// Kicks, role and affiliation changes asked by a moderator.
    async fn on_muc_admin(
        &self,
        iq: &Iq,
        address: &RemoteAddress,
        query: &xmpp_parsers::minidom::Element,
    ) -> Result<(), Failure> {
        self.joined(address)?;
        let session = self.session()?;
        for item in muc_admin::parse(query)? {
            let reason = item.reason.as_deref();
            let nick = self.admin_target(address, &item.target)?;
            if item.role == Some(estuary_bridge::Role::None) {
                session
                    .kick(address, &nick, reason)
                    .await
                    .map_err(Failure::from)?;
                continue;
            }
            if let Some(affiliation) = item.affiliation {
                session
                    .set_affiliation(address, &nick, affiliation, reason)
                    .await
                    .map_err(Failure::from)?;
            }
            if let Some(role) = item.role {
                session
                    .set_role(address, &nick, role, reason)
                    .await
                    .map_err(Failure::from)?;
            }
        }
        self.gw.reply_result(iq, None);
        Ok(())
    }

    /// The room, if the user is in it: what only occupants may ask.
    fn joined(&self, room: &RemoteAddress) -> Result<&RoomState, Failure> {
        (self.rooms.get(room))
            .filter(|r| r.joined)
            .ok_or_else(|| Failure::not_acceptable("you are not in this room"))
    }

    /// The name the network knows an item's target by in `room`: the
    /// occupant's nick, or for a JID (as clients send bans and
    /// memberships), the occupant reported as that user, else whatever the
    /// network bans by (an IRC nick or ban mask, present or not).
    fn admin_target(
        &self,
        room: &RemoteAddress,
        target: &muc_admin::ItemTarget,
    ) -> Result<String, Failure> {
        let jid = match target {
            muc_admin::ItemTarget::Nick(nick) => return Ok(nick.clone()),
            muc_admin::ItemTarget::Jid(jid) => jid,
        };
        let user = match (jid.domain().as_str() == self.gw.domain)
            .then(|| crate::xmpp::address::target(jid, self.gw.network.as_ref()))
        {
            Some(Ok(Target::Remote {
                address,
                kind: AddressKind::User,
                ..
            })) => address,
            _ => {
                return Err(Failure::not_acceptable(format!(
                    "{jid} is not a user of this network: its rooms know only their own users"
                )))
            }
        };
        let present = self
            .rooms
            .get(room)
            .and_then(|state| state.occupants.nick_of(&user))
            .map(str::to_owned);
        present
            .or_else(|| self.gw.network.member_name(room, &user))
            .ok_or_else(|| Failure::item_not_found(format!("{jid} is not in this room")))
    }

    /// A submitted room configuration form (XEP-0045 §10.2), from a
    /// moderator: the network makes the room so.
    async fn on_room_config_change(
        &self,
        iq: &Iq,
        address: &RemoteAddress,
        query: &xmpp_parsers::minidom::Element,
    ) -> Result<(), Failure> {
        let state = self.joined(address)?;
        let Some(change) = muc_owner::parse_submission(query)? else {
            self.gw.reply_result(iq, None);
            return Ok(());
        };
        let own = state.occupants.get(&state.nick);
        if own.is_some_and(|o| o.role != estuary_bridge::Role::Moderator) {
            return Err(Failure::forbidden(
                "only the room's moderators may configure it",
            ));
        }
        self.session()?
            .set_room_config(address, change)
            .await
            .map_err(Failure::from)?;
        self.gw.reply_result(iq, None);
        Ok(())
    }

    /// A list of who holds an affiliation or a role: the bans as the network
    /// keeps them, the others as the room shows them now (a network such
    /// as IRC keeps no standing for who is not there).
    async fn on_muc_admin_list(
        &self,
        iq: &Iq,
        address: &RemoteAddress,
        query: &xmpp_parsers::minidom::Element,
    ) -> Result<(), Failure> {
        use estuary_bridge::{Affiliation, Role};
        use muc_admin::{ListEntry, ListQuery};
        let state = self.joined(address)?;
        let asked = muc_admin::parse_list(query)?;
        let entries: Vec<ListEntry> = match asked {
            ListQuery::Affiliation(Affiliation::Outcast) => {
                let bans = self
                    .session()?
                    .ban_list(address)
                    .await
                    .map_err(Failure::from)?;
                let domain = self.gw.jid.domain();
                bans.into_iter()
                    .map(|ban| ListEntry {
                        jid: crate::xmpp::address::bare_jid(&ban.user, domain)
                            .ok()
                            .map(Jid::from),
                        nick: None,
                        affiliation: Affiliation::Outcast,
                        role: None,
                        reason: ban.reason,
                    })
                    .collect()
            }
            ListQuery::Affiliation(Affiliation::None) | ListQuery::Role(Role::None) => {
                return Err(Failure::bad_request("no list is kept of those without"))
            }
            ListQuery::Affiliation(_) | ListQuery::Role(_) => state
                .occupants
                .iter()
                .filter(|o| match asked {
                    ListQuery::Affiliation(a) => o.affiliation == a,
                    ListQuery::Role(r) => o.role == r,
                })
                .map(|o| ListEntry {
                    jid: super::outbound::real_jid(&self.gw, address, &o),
                    nick: Some(o.nick.clone()),
                    affiliation: o.affiliation,
                    role: Some(o.role),
                    reason: None,
                })
                .collect(),
        };
        self.gw.reply_result(iq, Some(muc_admin::list(&entries)));
        Ok(())
    }

    /// An invitation into a remote room: a mediated one sent to the room, or
    /// a direct one (XEP-0249) sent to the remote user invited. XMPP users
    /// elsewhere are invited the way a MUC service would: from the room.
    async fn on_invitation(
        &self,
        invitation: Invitation,
        address: &RemoteAddress,
        kind: AddressKind,
    ) -> Result<(), Failure> {
        let (room, invitee, reason) = match invitation {
            Invitation::Mediated { to, reason } => {
                if kind != AddressKind::Room {
                    return Err(Failure::bad_request("mediated invitations go to a room"));
                }
                (address.clone(), to, reason)
            }
            Invitation::Direct { room, reason } => {
                if kind != AddressKind::User {
                    return Err(Failure::bad_request("direct invitations go to a user"));
                }
                if room.domain().as_str() != self.gw.domain {
                    return Err(Failure::bad_request(
                        "the invitation is not to a room of this gateway",
                    ));
                }
                let room = match crate::xmpp::address::target(&room, self.gw.network.as_ref())? {
                    Target::Remote {
                        address,
                        kind: AddressKind::Room,
                        ..
                    } => address,
                    _ => {
                        return Err(Failure::bad_request(
                            "the invitation is not to a room of this gateway",
                        ))
                    }
                };
                let invitee = Jid::from(crate::xmpp::address::bare_jid(
                    address,
                    self.gw.jid.domain(),
                )?);
                (room, invitee, reason)
            }
        };
        if !self.rooms.get(&room).is_some_and(|r| r.joined) {
            return Err(Failure::not_acceptable(
                "join the room before inviting others to it",
            ));
        }
        if invitee.domain().as_str() != self.gw.domain {
            let Some(room_bare) = room_jid(&self.gw, &room) else {
                return Err(Failure::jid_malformed("the room has no JID"));
            };
            let inviter = Jid::from(self.jid.clone());
            self.gw.send_message(invite::mediated(
                room_bare,
                invitee,
                &inviter,
                reason.as_deref(),
            ));
            return Ok(());
        }
        let user = match crate::xmpp::address::target(&invitee, self.gw.network.as_ref())? {
            Target::Remote {
                address,
                kind: AddressKind::User,
                ..
            } => address,
            _ => return Err(Failure::bad_request("only a user can be invited")),
        };
        self.session()?
            .invite(&room, &user, reason.as_deref())
            .await
            .map_err(Failure::from)
    }

    /// A message to an occupant's in-room JID: a private message to that
    /// occupant's user on the network (XEP-0045 §7.5), never to the room.
    async fn on_message_to_occupant(
        &mut self,
        m: &Message,
        room: &RemoteAddress,
        nick: &str,
    ) -> Result<(), Failure> {
        if m.type_ == MessageType::Error {
            return Ok(());
        }
        if m.type_ == MessageType::Groupchat {
            return Err(Failure::bad_request(
                "a groupchat message goes to the room's JID, not to an occupant's",
            ));
        }
        let state = self.joined(room)?;
        network_can(
            self.gw.info.capabilities.direct_messages,
            "send private messages",
        )?;
        let user = (state.occupants.get(nick))
            .and_then(|occupant| occupant.user)
            .or_else(|| self.gw.network.occupant_user(room, nick))
            .ok_or_else(|| {
                Failure::item_not_found(format!("'{nick}' cannot be written to privately here"))
            })?;
        self.private_chats.started(&user, room, nick);
        self.on_message(m, &user, AddressKind::User).await
    }

    async fn on_message(
        &mut self,
        m: &Message,
        address: &RemoteAddress,
        kind: AddressKind,
    ) -> Result<(), Failure> {
        if m.type_ == MessageType::Error {
            return Ok(());
        }
        if let Some(invitation) = invite::parse(m) {
            let invitation = invitation.map_err(Failure::bad_request)?;
            return self.on_invitation(invitation, address, kind).await;
        }
        let in_room = kind == AddressKind::Room;
        // A `normal` message, like a groupchat one, would otherwise reach
        // the room from someone who is not in it; without a body (an
        // invitation's decline) there is nothing to refuse, nor to pass on.
        // A `chat` one goes to the network, which knows best what the
        // address is: Discord cannot tell a user's snowflake from an unseen
        // channel's until its cache is ready, or at all for the people only
        // a user's own bot shares a guild with, and takes it for a user;
        // on IRC it is a message to a channel from outside, as `/msg #chan`.
        if in_room && m.type_ != MessageType::Chat && self.joined(address).is_err() {
            return if m.bodies.is_empty() && m.type_ != MessageType::Groupchat {
                Ok(())
            } else {
                Err(Failure::not_acceptable("you are not in this room"))
            };
        }
        let incoming = Incoming::parse(m);
        let session = self.session()?;
        if in_room && m.type_ == MessageType::Groupchat && incoming.body.is_none() {
            if let Some(subject) = m.subjects.values().next() {
                return session
                    .set_topic(address, subject)
                    .await
                    .map_err(Failure::from);
            }
        }
        if let Some(target) = &incoming.retract {
            network_can(self.gw.info.capabilities.retractions, "retract messages")?;
            let record = self.own_message(address, target).await?;
            session
                .retract_message(address, &record.remote_id)
                .await
                .map_err(Failure::from)?;
            self.reflect(m, address, &crate::xmpp::stanza_id::fresh());
            return Ok(());
        }
        if let Some((target, emojis)) = &incoming.reactions {
            network_can(self.gw.info.capabilities.reactions, "react to messages")?;
            let remote_id = self.referred_remote_id(address, kind, target).await?;
            session
                .react(address, &remote_id, emojis.clone())
                .await
                .map_err(Failure::from)?;
            self.reflect(m, address, &crate::xmpp::stanza_id::fresh());
            return Ok(());
        }
        let Some(body) = incoming.body.clone() else {
            if let Some(seen) = &incoming.displayed {
                // Best effort, like the marker itself: an unknown id is only logged.
                match self.visible_message(address, seen).await {
                    Ok(record) if self.gw.info.capabilities.read_markers => {
                        if let Err(e) = session.mark_read(address, &record.remote_id).await {
                            debug!(error = %e, "read marker not passed on");
                        }
                    }
                    Ok(_) => {}
                    Err(_) => debug!(id = %seen, "a read marker names no known message"),
                }
            }
            if let Some(state) = incoming.chat_state {
                if let Err(e) = session.send_typing(address, state).await {
                    debug!(error = %e, "chat state not passed on");
                }
            }
            return Ok(());
        };
        if body.len() > MAX_BODY {
            return Err(Failure::not_acceptable(format!(
                "the message is longer than {MAX_BODY} bytes"
            )));
        }
        let reply_to = match &incoming.reply_to {
            Some(id) => self.replied_remote_id(address, kind, id).await,
            None => None,
        };
        let outgoing = OutgoingMessage {
            body,
            kind: incoming.kind,
            reply_to,
            attachments: incoming.attachments.clone(),
        };
        if let Some(target) = &incoming.replace {
            network_can(self.gw.info.capabilities.edits, "edit messages")?;
            let record = self.own_message(address, target).await?;
            let new_id = session
                .edit_message(address, &record.remote_id, outgoing)
                .await
                .map_err(Failure::from)?;
            if let Some(remote_id) = new_id {
                self.record_own(m, address, remote_id, &incoming);
            }
            self.reflect(m, address, &crate::xmpp::stanza_id::fresh());
            return Ok(());
        }
        match session.send_message(address, outgoing.clone()).await {
            Ok(remote_id) => {
                let stanza_id = self.record_own(m, address, remote_id, &incoming);
                if !self.gw.info.capabilities.echoes_own_messages {
                    self.reflect(m, address, &stanza_id);
                }
                Ok(())
            }
            Err(e) if e.is_transient() => {
                // Accepted: it goes out when the network is back.
                let queued = QueuedSend {
                    to: address.to_string(),
                    body: outgoing.body,
                    action: outgoing.kind == estuary_bridge::MessageKind::Action,
                    reply_to: outgoing.reply_to,
                    attachments: outgoing
                        .attachments
                        .into_iter()
                        .map(|a| (a.url, a.name))
                        .collect(),
                    xmpp_id: incoming.id.clone(),
                    origin_id: incoming.origin_id.clone(),
                    stanza_id: crate::xmpp::stanza_id::fresh(),
                };
                if self.queue_send(&queued).await {
                    debug!(error = %e, "network unavailable; message queued");
                    if !self.gw.info.capabilities.echoes_own_messages {
                        self.reflect(m, address, &queued.stanza_id);
                    }
                    Ok(())
                } else {
                    Err(Failure::from(e))
                }
            }
            Err(e) => Err(Failure::from(e)),
        }
    }

    /// Remember the user's message `m`, sent as `remote_id`, and return the
    /// stanza-id the gateway gives it.
    fn record_own(
        &mut self,
        m: &Message,
        address: &RemoteAddress,
        remote_id: String,
        incoming: &Incoming,
    ) -> String {
        let record = MessageRecord {
            gateway: self.gw.domain.clone(),
            account: self.account.jid.clone(),
            chat: address.to_string(),
            remote_id,
            sender: Sender::Account,
            xmpp_id: incoming.id.clone(),
            stanza_id: crate::xmpp::stanza_id::fresh(),
            origin_id: incoming.origin_id.clone(),
        };
        let in_room = m.type_ == MessageType::Groupchat;
        self.awaiting_echo.keep(&self.gw, record, in_room)
    }

    /// One of the user's own messages, by the id their client used. Scoped to
    /// the user, so that nobody can edit or retract someone else's message by
    /// naming its id.
    async fn own_message(
        &self,
        address: &RemoteAddress,
        id: &str,
    ) -> Result<MessageRecord, Failure> {
        self.gw
            .messages
            .by_xmpp_ref(&self.account.jid, address.as_str(), id, &Sender::Account)
            .await
            .map_err(|_| Failure::internal("the gateway's store failed"))?
            .ok_or_else(|| {
                Failure::item_not_found(format!("no message of yours with id '{id}' here"))
            })
    }

    /// Any message of the chat, by an id the user's client saw: the user's own
    /// (by their id) or someone else's (by the gateway's stanza-id).
    async fn visible_message(
        &self,
        address: &RemoteAddress,
        id: &str,
    ) -> Result<MessageRecord, Failure> {
        if let Ok(own) = self.own_message(address, id).await {
            return Ok(own);
        }
        self.gw
            .messages
            .by_stanza_id(&self.account.jid, address.as_str(), id)
            .await
            .map_err(|_| Failure::internal("the gateway's store failed"))?
            .ok_or_else(|| Failure::item_not_found(format!("no message with id '{id}' here")))
    }

    /// The remote id of the message a client replies to by `id`, if known.
    async fn replied_remote_id(
        &self,
        address: &RemoteAddress,
        kind: AddressKind,
        id: &str,
    ) -> Option<String> {
        self.referred_remote_id(address, kind, id).await.ok()
    }

    /// The remote id of the message a client refers to by `id` (a reply, a
    /// reaction): from the id map, else, in a room, from the archive (IRC's
    /// msgid, where the network keeps no map for rooms).
    async fn referred_remote_id(
        &self,
        address: &RemoteAddress,
        kind: AddressKind,
        id: &str,
    ) -> Result<String, Failure> {
        let mapped = self.visible_message(address, id).await;
        if mapped.is_ok() || kind != AddressKind::Room {
            return mapped.map(|record| record.remote_id);
        }
        // The message may still wait in the archiver's batch.
        if let Err(e) = self.gw.archiver.flush().await {
            debug!("the archive could not be brought up to date: {e}");
        }
        self.gw
            .store
            .archived_remote_id(&self.gw.domain, address.as_str(), id)
            .await
            .map_err(|_| Failure::internal("the gateway's store failed"))?
            .ok_or_else(|| Failure::item_not_found(format!("no message with id '{id}' here")))
    }

    /// Echo a groupchat message back to every resource of the user in the
    /// room, keeping its id, as MUC requires, under the gateway's
    /// `stanza_id`. Never under the client's id: clients choose ids that
    /// need not be unique (some count from 1 on each start), and a stanza-id
    /// must name one message, in the archive too.
    fn reflect(&self, m: &Message, address: &RemoteAddress, stanza_id: &str) {
        if m.type_ != MessageType::Groupchat {
            return;
        }
        let Some(room) = self.rooms.get(address) else {
            return;
        };
        let (Some(room_bare), Some(from)) = (&room.jid, room.occupant(&room.nick)) else {
            return;
        };
        let room_bare = Jid::from(room_bare.clone());
        self.archive_own(m, address, stanza_id);
        for resource in &room.resources {
            let mut echo = m.clone();
            echo.from = Some(Jid::from(from.clone()));
            echo.to = Some(Jid::from(resource.clone()));
            echo.payloads
                .retain(|p| !p.is("stanza-id", crate::xmpp::xml::NS_SID));
            echo.payloads
                .push(message::stanza_id(stanza_id, &room_bare));
            self.gw.send_message(echo);
        }
    }

    async fn on_room_presence(
        &mut self,
        p: &Presence,
        address: &RemoteAddress,
        kind: AddressKind,
        nick: Option<String>,
    ) -> Result<(), Failure> {
        let contact = matches!(kind, AddressKind::User | AddressKind::Server);
        if contact && self.on_contact_presence(p, address).await {
            return Ok(());
        }
        let Some(from) = p.from.clone().and_then(|f| f.try_into_full().ok()) else {
            return Ok(());
        };
        match p.type_ {
            PresenceType::None if kind == AddressKind::Server => {
                self.on_server_presence(address, &from, true).await;
                Ok(())
            }
            PresenceType::Unavailable if kind == AddressKind::Server => {
                self.on_server_presence(address, &from, false).await;
                Ok(())
            }
            PresenceType::None => {
                if kind != AddressKind::Room {
                    // Directed presence to a contact: nothing to do on the network.
                    return Ok(());
                }
                let nick =
                    nick.ok_or_else(|| Failure::jid_malformed("a nick is needed to join a room"))?;
                if self.is_present_in(address, &from) {
                    // Clients repeat their presence to every room they are in;
                    // that is how a show or status change reaches a room-only
                    // user, so it goes to the network, never as a nick change
                    // unless the nick itself changed.
                    self.presence_update(p).await;
                    if self.rooms.get(address).is_some_and(|r| r.nick == nick) {
                        return Ok(());
                    }
                }
                self.note_history_request(address, &from, p);
                let password = muc::join_password(&p.payloads);
                self.join(address, nick, password, from).await
            }
            PresenceType::Unavailable => {
                self.leave(address, &from).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn is_present_in(&self, address: &RemoteAddress, from: &FullJid) -> bool {
        self.rooms
            .get(address)
            .is_some_and(|r| r.joined && r.resources.contains(from))
    }

    async fn presence_update(&self, p: &Presence) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        let status = p.statuses.values().next().map(String::as_str);
        let show = crate::router::show_of(p.show.as_ref());
        if let Err(e) = session.set_presence(show, status).await {
            tracing::debug!(error = %e, "presence not passed on");
        }
    }

    async fn join(
        &mut self,
        address: &RemoteAddress,
        nick: String,
        password: Option<String>,
        from: FullJid,
    ) -> Result<(), Failure> {
        self.session()?;
        let session = self.session.as_deref().expect("checked above");
        if let Some(room) = self.rooms.get_mut(address) {
            if room.nick != nick && room.joined {
                session
                    .set_nick(address, &nick)
                    .await
                    .map_err(Failure::from)?;
                room.nick_asked = Some(nick.clone().into());
            }
            if room.resources.insert(from.clone()) && room.joined {
                // Another resource of the same user: show it the room as it is.
                self.replay_room(address, &from).await;
            }
            return Ok(());
        }
        let mut state = RoomState::new(&self.gw, address, nick.clone());
        state.resources.insert(from);
        state.password = password;
        let password = state.password.clone();
        self.rooms.insert(address.clone(), state);
        if let Err(e) = session.join_room(address, &nick, password.as_deref()).await {
            self.rooms.remove(address);
            return Err(Failure::from(e));
        }
        let record = crate::store::RoomRecord {
            gateway: self.gw.domain.clone(),
            account: self.account.jid.clone(),
            room: address.to_string(),
            nick,
            settings: super::rooms::JoinSettings { password }.to_json(),
        };
        if let Err(e) = self.gw.store.save_room(&record).await {
            warn!("cannot remember a joined room: {e}");
        }
        Ok(())
    }

    async fn leave(&mut self, address: &RemoteAddress, from: &FullJid) {
        let Some(room) = self.rooms.get_mut(address) else {
            return;
        };
        if !room.resources.contains(from) {
            return;
        }
        let single = RoomState {
            nick: room.nick.clone(),
            resources: [from.clone()].into_iter().collect(),
            jid: room.jid.clone(),
            ..RoomState::default()
        };
        send_self_gone(&self.gw, &single, &[], None);
        room.resources.remove(from);
        let emptied = room.resources.is_empty();
        // A persistent room stays joined on the network with no client in it.
        if emptied && !self.settings_of(address).persistent {
            self.forget_room(address).await;
        }
    }
}

/// Refuse what the network cannot do at all, before any id lookup: where
/// nothing refers back to messages, their ids are not kept, and a lookup
/// would answer `item-not-found` instead of `feature-not-implemented`.
fn network_can(capable: bool, what: &str) -> Result<(), Failure> {
    if capable {
        Ok(())
    } else {
        Err(Failure::not_implemented(format!(
            "this network cannot {what}"
        )))
    }
}
