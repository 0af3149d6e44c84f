//! The room archive as one user meets it: what their rooms show is archived,
//! their MAM queries on room JIDs are answered, and a join that completes is
//! shown the room's recent history.

use estuary_bridge::{MessageKind, RemoteAddress, RemoteMessage};
use tracing::warn;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::presence::Presence;

use crate::archive::{self, ArchiveError};
use crate::store::{now_ms, ArchivedMessage};
use crate::xmpp::address::occupant_of;
use crate::xmpp::errors::Failure;
use crate::xmpp::history::{self, HistoryRequest};
use crate::xmpp::mam;
use crate::xmpp::message::Incoming;
use crate::xmpp::xml::clean_text;

use super::rooms::room_bare;
use super::UserSession;

/// A body as the user's clients were shown it, so that replays match.
fn shown_body(body: &str, kind: MessageKind) -> String {
    match kind {
        MessageKind::Action => format!("/me {}", clean_text(body)),
        _ => clean_text(body).into_owned(),
    }
}

impl UserSession {
    /// Queue a message shown in one of the user's rooms for the archive.
    /// Rooms the user is not in show nothing, so archive nothing; nor do
    /// rooms whose history the user chose not to record.
    fn archive(&self, room: &RemoteAddress, message: ArchivedMessage) {
        if self.rooms.get(room).is_some() && self.settings_of(room).record_history {
            self.gw.archiver.push(message);
        }
    }

    fn archived(&self, room: &RemoteAddress, stanza_id: &str, nick: &str) -> ArchivedMessage {
        ArchivedMessage {
            gateway: self.gw.domain.clone(),
            room: room.to_string(),
            stanza_id: stanza_id.to_owned(),
            remote_id: None,
            nick: nick.to_owned(),
            sender: None,
            body: String::new(),
            ts_ms: now_ms(),
        }
    }

    /// A remote room message, shown under `stanza_id` with `body` (its text
    /// and attachment links).
    pub(super) fn archive_remote(
        &self,
        room: &RemoteAddress,
        m: &RemoteMessage,
        body: &str,
        stanza_id: &str,
    ) {
        let nick = clean_text(m.nick.as_deref().unwrap_or(m.sender.as_str()));
        self.archive(
            room,
            ArchivedMessage {
                remote_id: Some(m.id.clone()),
                sender: Some(m.sender.to_string()),
                // Attachments are kept as their links, as clients without OOB see them.
                body: shown_body(body, m.kind),
                ts_ms: m.timestamp_ms.unwrap_or_else(now_ms),
                ..self.archived(room, stanza_id, &nick)
            },
        );
    }

    /// The user's own room message, echoed by the network and reflected
    /// under `stanza_id`. The sender of the user's own messages is their JID.
    pub(super) fn archive_echo(&self, room: &RemoteAddress, m: &RemoteMessage, stanza_id: &str) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        self.archive(
            room,
            ArchivedMessage {
                remote_id: Some(m.id.clone()),
                sender: Some(self.account.jid.clone()),
                body: shown_body(&m.body, m.kind),
                ts_ms: m.timestamp_ms.unwrap_or_else(now_ms),
                ..self.archived(room, stanza_id, &state.nick)
            },
        );
    }

    /// The user's own groupchat message, reflected to their clients under
    /// `stanza_id` without waiting for the network. Corrections, retractions
    /// and reactions change earlier messages rather than add a line: they are
    /// not archived.
    pub(super) fn archive_own(&self, m: &Message, room: &RemoteAddress, stanza_id: &str) {
        let incoming = Incoming::parse(m);
        if incoming.replace.is_some() || incoming.retract.is_some() || incoming.reactions.is_some()
        {
            return;
        }
        let (Some(body), Some(state)) = (&incoming.body, self.rooms.get(room)) else {
            return;
        };
        self.archive(
            room,
            ArchivedMessage {
                sender: Some(self.account.jid.clone()),
                body: shown_body(body, incoming.kind),
                ..self.archived(room, stanza_id, &state.nick)
            },
        );
    }

    /// Where an archived message appears from: its sender's occupant JID, or
    /// the room itself for a nick no JID can carry.
    fn archived_sender(room_bare: &BareJid, nick: &str) -> Jid {
        occupant_of(room_bare, nick)
            .map(Jid::from)
            .unwrap_or_else(|_| Jid::from(room_bare.clone()))
    }

    /// XEP-0313 on a room JID: the page of the archive asked for, one
    /// forwarded message each, then the iq result with the paging state.
    /// Only a user who is in the room may read it.
    pub(super) async fn on_mam(&self, iq: &Iq, room: &RemoteAddress) -> Result<(), Failure> {
        if self.rooms.get(room).is_none() {
            return Err(Failure::forbidden(
                "only occupants may read this room's archive: join it first",
            ));
        }
        let (payload, from) = match iq {
            Iq::Get { .. } => {
                self.gw.reply_result(iq, Some(mam::form()));
                return Ok(());
            }
            Iq::Set { payload, from, .. } => (payload, from),
            Iq::Result { .. } | Iq::Error { .. } => return Ok(()),
        };
        let query = mam::parse(payload)?;
        let to = from
            .clone()
            .ok_or_else(|| Failure::bad_request("the query has no sender"))?;
        let room_bare = room_bare(&self.gw, room)
            .ok_or_else(|| Failure::jid_malformed("the room has no JID"))?;
        let room_jid = Jid::from(room_bare.clone());
        if let Err(e) = self.gw.archiver.flush().await {
            warn!("the archive could not be brought up to date for a query: {e}");
        }
        let page = archive::page(&self.gw.store, &self.gw.domain, room.as_str(), &query.page)
            .await
            .map_err(|e| match e {
                ArchiveError::UnknownId(_) => Failure::item_not_found(e.to_string()),
                e => {
                    warn!("an archive query failed: {e}");
                    Failure::internal("the gateway's archive failed")
                }
            })?;
        for m in &page.messages {
            let sender = Self::archived_sender(&room_bare, &m.nick);
            self.gw.send_message(mam::result(
                to.clone(),
                &room_jid,
                sender,
                query.queryid.as_deref(),
                m,
            ));
        }
        self.gw.reply_result(iq, Some(mam::fin(&page)));
        Ok(())
    }

    /// Remember the `<history/>` of a join presence until the join completes.
    pub(super) fn note_history_request(
        &mut self,
        room: &RemoteAddress,
        from: &FullJid,
        p: &Presence,
    ) {
        self.rooms
            .want_history(room, from, HistoryRequest::parse(&p.payloads));
    }

    /// Replay the room's recent archive to a resource whose join completed,
    /// as its join presence asked; it goes before the subject, which clients
    /// take as the end of the join.
    pub(super) async fn send_history(&mut self, room: &RemoteAddress, to: &FullJid) {
        let Some(request) = self.rooms.take_history(room, to) else {
            return;
        };
        let limit = self.room_defaults.history_limit(request.limit());
        if let Some(state) = self.rooms.get_mut(room) {
            state.no_history = limit == 0;
        }
        let Some(room_bare) = room_bare(&self.gw, room).filter(|_| limit > 0) else {
            return;
        };
        let room_jid = Jid::from(room_bare.clone());
        if let Err(e) = self.gw.archiver.flush().await {
            warn!("the archive could not be brought up to date for a join: {e}");
        }
        let messages = match self
            .gw
            .store
            .history(
                &self.gw.domain,
                room.as_str(),
                request.since(now_ms()),
                limit as i64,
            )
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                warn!("no history for a join: {e}");
                return;
            }
        };
        let stanzas = messages
            .iter()
            .map(|m| {
                let sender = Self::archived_sender(&room_bare, &m.nick);
                history::message(&room_jid, sender, Jid::from(to.clone()), m)
            })
            .collect();
        for stanza in history::fit_chars(stanzas, request.max_chars) {
            self.gw.send_message(stanza);
        }
    }
}
