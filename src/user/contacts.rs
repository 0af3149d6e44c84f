//! Remote contacts in the user's roster. Without a roster privilege
//! (XEP-0356) the gateway cannot write the roster itself, so it offers each
//! contact the way XEP-0100 describes: a subscription request from the
//! contact's JID, once, remembered in the store. Requests the user's client
//! sends to a contact are approved by the gateway for it.

use estuary_bridge::{AddressKind, RemoteAddress};
use tracing::{debug, warn};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use crate::xmpp::address::bare_jid;

use super::UserSession;

/// What the store keeps for a contact already offered.
const OFFERED: &str = r#"{"subscription_offered":true}"#;

impl UserSession {
    /// Offer `contact` to the user's roster, unless it was offered before.
    pub(super) async fn offer_contact(&mut self, contact: &RemoteAddress) {
        if self.gw.network.classify(contact.as_str()).ok() != Some(AddressKind::User)
            || !self.offered_contacts.insert(contact.clone())
        {
            return;
        }
        let Ok(from) = bare_jid(contact, &self.gw.domain) else {
            return;
        };
        let mut request = Presence::new(PresenceType::Subscribe);
        request.from = Some(Jid::from(from));
        request.to = Some(Jid::from(self.jid.clone()));
        self.gw.send_presence(request);
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
            warn!(%contact, "cannot remember an offered contact: {e}");
        }
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

    /// The user's client asks to see a contact's presence, or stops: the
    /// gateway answers for the contact. Returns false for other presences.
    pub(super) fn on_contact_subscription(&self, p: &Presence, contact: &RemoteAddress) -> bool {
        let answer = match p.type_ {
            PresenceType::Subscribe => PresenceType::Subscribed,
            PresenceType::Unsubscribe => PresenceType::Unsubscribed,
            _ => return false,
        };
        let Ok(from) = bare_jid(contact, &self.gw.domain) else {
            return true;
        };
        let mut reply = Presence::new(answer);
        reply.from = Some(Jid::from(from));
        reply.to = Some(Jid::from(self.jid.clone()));
        self.gw.send_presence(reply);
        true
    }
}
