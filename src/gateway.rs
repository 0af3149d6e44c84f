//! What every part of one gateway domain shares: its network, store, access
//! list, and the way out to the XMPP server.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use estuary_bridge::{Network, NetworkInfo, RegistrationField};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza::Stanza;

use crate::access::AccessList;
use crate::archive::Archiver;
use crate::message_map::MessageMap;
use crate::reload::ReloadRequests;
use crate::store::Store;
use crate::xmpp::errors::{self, Failure};
use crate::xmpp::privilege::{self, RosterEdit};
use crate::xmpp::stanza_id;
use crate::xmpp::wire::StanzaBytes;

pub struct Gateway {
    pub domain: String,
    pub jid: Jid,
    pub network: Arc<dyn Network>,
    pub info: NetworkInfo,
    pub fields: Vec<RegistrationField>,
    pub store: Store,
    /// Who may use the gateway; a reload swaps it.
    access: ArcSwap<AccessList>,
    /// The room archive's writer, shared by every user of the gateway.
    pub archiver: Archiver,
    /// Remote message ids ↔ XMPP ids, written behind by the archiver.
    pub messages: MessageMap,
    /// Users' rooms are persistent unless they choose otherwise; a reload
    /// sets it.
    persistent_by_default: AtomicBool,
    /// Servers that let the gateway write their users' rosters (XEP-0356).
    roster_writers: Mutex<HashSet<String>>,
    /// Iqs the gateway sent and awaits: id → (who must answer, the waiter).
    pending_iqs: Mutex<HashMap<String, (Jid, oneshot::Sender<Iq>)>>,
    out: mpsc::UnboundedSender<StanzaBytes>,
    /// Where the admins' `reload` command asks for the configuration file
    /// to be read again.
    pub reloads: ReloadRequests,
}

impl Gateway {
    pub fn new(
        domain: &str,
        network: Arc<dyn Network>,
        store: Store,
        access: AccessList,
        persistent_by_default: bool,
        out: mpsc::UnboundedSender<StanzaBytes>,
        reloads: ReloadRequests,
    ) -> anyhow::Result<Gateway> {
        let archiver = Archiver::spawn(store.clone());
        Ok(Gateway {
            messages: MessageMap::new(domain, store.clone(), archiver.clone()),
            archiver,
            domain: domain.to_owned(),
            jid: Jid::new(domain)?,
            info: network.info(),
            fields: network.registration_fields(),
            network,
            store,
            access: ArcSwap::from_pointee(access),
            persistent_by_default: AtomicBool::new(persistent_by_default),
            roster_writers: Mutex::new(HashSet::new()),
            pending_iqs: Mutex::new(HashMap::new()),
            out,
            reloads,
        })
    }

    /// Who may use the gateway, and who administers it.
    pub fn access(&self) -> arc_swap::Guard<Arc<AccessList>> {
        self.access.load()
    }

    pub fn persistent_by_default(&self) -> bool {
        self.persistent_by_default.load(Ordering::Relaxed)
    }

    /// The settings a reload of the configuration file changes: whether
    /// each changed.
    pub fn reconfigure(&self, access: AccessList, persistent_by_default: bool) -> (bool, bool) {
        let access_changed = **self.access.load() != access;
        if access_changed {
            self.access.store(Arc::new(access));
        }
        let was = self
            .persistent_by_default
            .swap(persistent_by_default, Ordering::Relaxed);
        (access_changed, was != persistent_by_default)
    }

    /// What `server` said, when the link connected, about writing its users' rosters.
    pub fn set_roster_privilege(&self, server: &str, granted: bool) {
        let mut writers = self
            .roster_writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if granted {
            writers.insert(server.to_owned());
        } else {
            writers.remove(server);
        }
    }

    /// Whether the gateway may put contacts into the rosters of `server`'s users.
    pub fn may_write_roster(&self, server: &str) -> bool {
        self.roster_writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(server)
    }

    /// Queue a stanza for the server. The link never drops it, so the only
    /// failure is a link that is gone for good, at shutdown.
    pub fn send(&self, stanza: Stanza) {
        if self.out.send(StanzaBytes::of(&stanza)).is_err() {
            warn!("component link closed; a stanza could not be queued");
        }
    }

    pub fn send_message(&self, m: Message) {
        self.send(Stanza::Message(m));
    }

    pub fn send_presence(&self, p: Presence) {
        self.send(Stanza::Presence(p));
    }

    /// Edit a user's roster, where their server granted the privilege;
    /// false when it did not, and the caller falls back to presence
    /// subscriptions. The server's answer comes back to the router, which
    /// logs a refusal.
    pub fn write_roster(&self, user: &BareJid, item: &BareJid, edit: RosterEdit) -> bool {
        if !self.may_write_roster(user.domain().as_str()) {
            return false;
        }
        let id = format!("roster-{}", stanza_id::fresh());
        self.send(Stanza::Iq(privilege::roster_set(
            id, &self.jid, user, item, edit,
        )));
        true
    }

    /// Ask `to` with an iq get and wait for the answer's payload; `None`
    /// on an error answer or after `wait`.
    pub async fn request(&self, to: Jid, payload: Element, wait: Duration) -> Option<Element> {
        let id = format!("ask-{}", stanza_id::fresh());
        let (answer_tx, answer_rx) = oneshot::channel();
        self.pending_iqs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), (to.clone(), answer_tx));
        self.send(Stanza::Iq(Iq::Get {
            from: Some(self.jid.clone()),
            to: Some(to),
            id: id.clone(),
            payload,
        }));
        let answer = tokio::time::timeout(wait, answer_rx).await;
        self.pending_iqs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        match answer {
            Ok(Ok(Iq::Result { payload, .. })) => payload,
            _ => None,
        }
    }

    /// Hand an iq answer to the request awaiting it; false when none is,
    /// or when it comes from someone other than who was asked.
    pub fn take_answer(&self, iq: &Iq) -> bool {
        let (Iq::Result { id, from, .. } | Iq::Error { id, from, .. }) = iq else {
            return false;
        };
        let mut pending = self
            .pending_iqs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let asked = pending
            .get(id)
            .is_some_and(|(asked, _)| from.as_ref() == Some(asked));
        if !asked {
            return false;
        }
        if let Some((_, waiter)) = pending.remove(id) {
            let _ = waiter.send(iq.clone());
        }
        true
    }

    /// Answer a stanza with an error, unless it is one that must not be answered.
    pub fn reply_error(&self, stanza: &Stanza, failure: &Failure) {
        if let Some(reply) = errors::reply(stanza, failure) {
            self.send(reply);
        }
    }

    /// Answer an iq get/set with a result carrying `payload`.
    pub fn reply_result(&self, iq: &Iq, payload: Option<Element>) {
        if let Iq::Get { from, to, id, .. } | Iq::Set { from, to, id, .. } = iq {
            self.send(Stanza::Iq(Iq::Result {
                from: to.clone(),
                to: from.clone(),
                id: id.clone(),
                payload,
            }));
        }
    }
}
