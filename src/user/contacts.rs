//! Remote contacts in the user's roster. Where the user's server grants the
//! roster privilege (XEP-0356), the gateway adds each contact itself, with
//! its name, in a group named after the gateway. Without it the gateway
//! cannot write the roster, so it offers each contact the way XEP-0100
//! describes: a subscription request from the contact's JID. Either is done
//! once per contact, remembered in the store. Requests the user's client
//! sends to a contact are approved by the gateway for it.

use estuary_bridge::{AddressKind, RemoteAddress};
use tracing::{debug, warn};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use crate::xmpp::address::bare_jid;
use crate::xmpp::privilege::RosterEdit;

use super::UserSession;

/// How long a roster entry waits for the contact's name.
const CONTACT_INFO_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the store keeps for a contact already offered.
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
            || !self.offered_contacts.insert(contact.clone())
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

    /// The user's client asks to see a contact's presence, or stops: the
    /// gateway answers for the contact. Returns false for other presences.
    pub(super) fn on_contact_subscription(&self, p: &Presence, contact: &RemoteAddress) -> bool {
        let answer = match p.type_ {
            PresenceType::Subscribe => PresenceType::Subscribed,
            PresenceType::Unsubscribe => PresenceType::Unsubscribed,
            _ => return false,
        };
        let Ok(from) = bare_jid(contact, self.gw.jid.domain()) else {
            return true;
        };
        let mut reply = Presence::new(answer);
        reply.from = Some(Jid::from(from));
        reply.to = Some(Jid::from(self.jid.clone()));
        self.gw.send_presence(reply);
        true
    }
}
