//! Remote contacts in the user's roster. Where the user's server grants the
//! roster privilege (XEP-0356), the gateway adds each contact itself, with
//! its name, in a group named after the gateway. Without it the gateway
//! cannot write the roster, so it offers each contact the way XEP-0100
//! describes: a subscription request from the contact's JID. Either is done
//! once per contact, remembered in the store. Requests the user's client
//! sends to a contact are approved by the gateway for it.
//!
//! Each contact's presence is watched on the network for as long as the
//! user keeps it (`Session::watch_contact`), and the last one seen answers
//! the probes of the user's server.

use estuary_bridge::{AddressKind, PresenceShow, RemoteAddress, RemotePresence};
use tracing::{debug, warn};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use crate::xmpp::address::bare_jid;
use crate::xmpp::muc;
use crate::xmpp::privilege::RosterEdit;
use crate::xmpp::xml::clean_text;

use super::UserSession;

/// How long a roster entry waits for the contact's name.
const CONTACT_INFO_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the store keeps for a contact in the user's roster, offered by the
/// gateway or asked for by the user.
const OFFERED: &str = r#"{"subscription_offered":true}"#;

/// Whether stored settings are the mark of a contact already offered, so
/// that a restart neither asks again nor undoes the user's own roster edits.
pub(crate) fn is_offered_marker(json: &str) -> bool {
    json == OFFERED
}

impl UserSession {
    /// Offer `contact` to the user's roster, unless it was offered before.
    pub(super) async fn offer_contact(&mut self, contact: &RemoteAddress) {
        if self.gw.network.classify(contact.as_str()).ok() != Some(AddressKind::User)
            || self.contacts.contains(contact)
        {
            return;
        }
        let Ok(from) = bare_jid(contact, self.gw.jid.domain()) else {
            return;
        };
        let name = if self.gw.may_write_roster(self.jid.domain().as_str()) {
            self.contact_name(contact).await
        } else {
            None
        };
        let added = self.gw.write_roster(
            &self.jid,
            &from,
            RosterEdit::Add {
                name: name.as_deref(),
                group: &self.gw.info.name,
            },
        );
        if !added {
            let mut request = Presence::new(PresenceType::Subscribe);
            request.from = Some(Jid::from(from));
            request.to = Some(Jid::from(self.jid.clone()));
            self.gw.send_presence(request);
        }
        self.remember_contact(contact).await;
    }

    /// The name a roster shows for `contact`, where the network knows one.
    async fn contact_name(&self, contact: &RemoteAddress) -> Option<String> {
        let session = self.session.as_deref()?;
        let info = tokio::time::timeout(CONTACT_INFO_WAIT, session.contact_info(contact))
            .await
            .ok()?
            .ok()?;
        info.full_name.or(info.nickname)
    }

    /// Offer every contact the network knows, after logging in.
    pub(super) async fn offer_known_contacts(&mut self) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        match session.list_contacts().await {
            Ok(contacts) => {
                for contact in contacts {
                    self.offer_contact(&contact).await;
                }
            }
            Err(e) => debug!(error = %e, "no contacts to offer"),
        }
    }

    /// Watch the presence of every contact known, after logging in.
    pub(super) async fn watch_contacts(&self) {
        for contact in &self.contacts {
            self.watch(contact, true).await;
        }
    }

    async fn watch(&self, contact: &RemoteAddress, watch: bool) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        if self.is_server(contact) {
            return;
        }
        let watched = if watch {
            session.watch_contact(contact).await
        } else {
            session.unwatch_contact(contact).await
        };
        if let Err(e) = watched {
            debug!(%contact, error = %e, "the contact's presence is not followed");
        }
    }

    /// A presence stanza from the user to a contact: a subscription asked
    /// for or ended, or a probe of the user's server. The gateway answers
    /// for the contact. Returns false for other presences.
    pub(super) async fn on_contact_presence(
        &mut self,
        p: &Presence,
        contact: &RemoteAddress,
    ) -> bool {
        match p.type_ {
            PresenceType::Subscribe => {
                self.answer_for(
                    contact,
                    Presence::new(PresenceType::Subscribed),
                    self.jid.clone().into(),
                );
                self.remember_contact(contact).await;
                // RFC 6121 §3.1.5: the contact's presence follows the approval.
                if self.is_server(contact) {
                    // And back, as biboumi asks: with the user's presence,
                    // each login connects to the server (force-connect).
                    self.answer_for(
                        contact,
                        Presence::new(PresenceType::Subscribe),
                        self.jid.clone().into(),
                    );
                    self.answer_for_server(contact, self.jid.clone().into())
                        .await;
                } else if let Some(known) = self.contact_presence.get(contact) {
                    self.send_contact_presence(known, self.jid.clone().into());
                }
            }
            PresenceType::Unsubscribe => {
                self.answer_for(
                    contact,
                    Presence::new(PresenceType::Unsubscribed),
                    self.jid.clone().into(),
                );
                self.forget_contact(contact).await;
            }
            // The user's server asks, when the user comes online, for the
            // presence of each contact the user is subscribed to.
            // Answered to the prober alone, as Prosody answers for its users.
            PresenceType::Probe => {
                self.remember_contact(contact).await;
                let to = p
                    .from
                    .clone()
                    .unwrap_or_else(|| Jid::from(self.jid.clone()));
                if self.is_server(contact) {
                    self.answer_for_server(contact, to).await;
                    return true;
                }
                match self.contact_presence.get(contact) {
                    Some(known) => self.send_contact_presence(known, to),
                    None => self.answer_for(contact, Presence::new(PresenceType::Unavailable), to),
                }
            }
            _ => return false,
        }
        true
    }

    /// Whether `address` is a remote server, whose JID a user may keep in
    /// their roster to see whether they are connected there (biboumi's
    /// server JIDs). Its presence is the session's own, so it is neither
    /// watched nor remembered in the store, where its address holds the
    /// user's settings of that server; the user's server probes it anew
    /// whenever the user comes online.
    fn is_server(&self, address: &RemoteAddress) -> bool {
        self.gw.network.classify(address.as_str()).ok() == Some(AddressKind::Server)
    }

    /// The user keeps `contact`: watched, and remembered across restarts.
    async fn remember_contact(&mut self, contact: &RemoteAddress) {
        if !self.contacts.insert(contact.clone()) || self.is_server(contact) {
            return;
        }
        self.watch(contact, true).await;
        if let Err(e) = self
            .gw
            .store
            .save_address_settings(
                &self.gw.domain,
                &self.account.jid,
                contact.as_str(),
                OFFERED,
            )
            .await
        {
            warn!(%contact, "cannot remember a contact: {e}");
        }
    }

    /// The user dropped `contact`: no longer watched, and offered again
    /// only if it writes to the user.
    async fn forget_contact(&mut self, contact: &RemoteAddress) {
        if self.is_server(contact) {
            self.contacts.remove(contact);
            return;
        }
        self.contact_presence.remove(contact);
        if !self.contacts.remove(contact) {
            return;
        }
        self.watch(contact, false).await;
        if let Err(e) = self
            .gw
            .store
            .forget_address_settings(&self.gw.domain, &self.account.jid, contact.as_str())
            .await
        {
            warn!(%contact, "cannot forget a contact: {e}");
        }
    }

    /// A contact's presence changed on the network: the user is told, and
    /// it is kept for the probes to come.
    pub(super) fn on_remote_presence(&mut self, p: RemotePresence) {
        // A server's presence goes only to a user who keeps its JID, and is
        // not kept: the session knows which servers it is connected to.
        if self.is_server(&p.user) {
            if self.contacts.contains(&p.user) {
                self.send_contact_presence(&p, self.jid.clone().into());
            }
            return;
        }
        self.send_contact_presence(&p, self.jid.clone().into());
        if p.show == PresenceShow::Offline {
            self.contact_presence.remove(&p.user);
        } else {
            self.contact_presence.insert(p.user.clone(), p);
        }
    }

    fn send_contact_presence(&self, p: &RemotePresence, to: Jid) {
        let mut presence = if p.show == PresenceShow::Offline {
            Presence::new(PresenceType::Unavailable)
        } else {
            let mut presence = Presence::new(PresenceType::None);
            presence.show = muc::show(p.show);
            presence
        };
        if let Some(status) = &p.status {
            presence.set_status(String::new(), clean_text(status).into_owned());
        }
        self.answer_for(&p.user, presence, to);
    }

    /// A probe of a server's JID: online while the session is connected there.
    async fn answer_for_server(&self, server: &RemoteAddress, to: Jid) {
        let connected = match self.session.as_deref() {
            Some(session) => session.connected_servers().await.contains(server),
            None => false,
        };
        let presence = if connected {
            let mut online = Presence::new(PresenceType::None);
            online.set_status(String::new(), format!("Connected to {server}"));
            online
        } else {
            Presence::new(PresenceType::Unavailable)
        };
        self.answer_for(server, presence, to);
    }

    /// Send `presence` to `to`, one of the user's JIDs, from `contact`'s.
    fn answer_for(&self, contact: &RemoteAddress, mut presence: Presence, to: Jid) {
        let Ok(from) = bare_jid(contact, self.gw.jid.domain()) else {
            return;
        };
        presence.from = Some(Jid::from(from));
        presence.to = Some(to);
        self.gw.send_presence(presence);
    }
}
