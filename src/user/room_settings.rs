//! What a user chooses per remote room, with the `configure` ad-hoc command
//! on the room's JID (the command and option names biboumi uses):
//!
//! - `persistent`: stay in the room on the network while none of the user's
//!   clients is in it, so that nothing said meanwhile is missed (it is
//!   archived, and shown as history on the next join);
//! - `record_history`: archive the room's messages for MAM and join history.

use std::collections::BTreeMap;

use estuary_bridge::{AddressKind, FieldKind, RegistrationField, RemoteAddress};
use serde::{Deserialize, Serialize};
use tracing::warn;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;

use crate::xmpp::adhoc::{self, FormStep};
use crate::xmpp::errors::Failure;
use crate::xmpp::forms::{registration_form, submitted_values};

use super::UserSession;

pub const CONFIGURE_NODE: &str = "configure";
const FORM_TYPE: &str = "urn:xmpp:estuary:room-settings:0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomSettings {
    pub persistent: bool,
    pub record_history: bool,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            persistent: false,
            record_history: true,
        }
    }
}

const FIELDS: [RegistrationField; 2] = [
    RegistrationField {
        var: "persistent",
        label: "Stay in the room while none of your clients is in it",
        kind: FieldKind::Boolean,
        required: false,
        max_len: 8,
    },
    RegistrationField {
        var: "record_history",
        label: "Record the room's history",
        kind: FieldKind::Boolean,
        required: false,
        max_len: 8,
    },
];

/// An XEP-0004 boolean.
pub(super) fn boolean(var: &str, value: &str) -> Result<bool, Failure> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(Failure::bad_request(format!(
            "'{var}' must be a boolean, not '{value}'"
        ))),
    }
}

impl RoomSettings {
    pub fn from_json(json: &str) -> Option<RoomSettings> {
        serde_json::from_str(json).ok()
    }

    fn values(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "persistent".to_owned(),
                u8::from(self.persistent).to_string(),
            ),
            (
                "record_history".to_owned(),
                u8::from(self.record_history).to_string(),
            ),
        ])
    }

    /// These settings with a submitted form applied; fields left out keep
    /// their value.
    fn with_form(mut self, form: &Element) -> Result<RoomSettings, Failure> {
        for (var, value) in submitted_values(form)? {
            match var.as_str() {
                "persistent" => self.persistent = boolean(&var, &value)?,
                "record_history" => self.record_history = boolean(&var, &value)?,
                "FORM_TYPE" => {}
                _ => return Err(Failure::bad_request(format!("unknown field '{var}'"))),
            }
        }
        Ok(self)
    }
}

impl UserSession {
    /// Read the user's settings of rooms and servers, and the contacts
    /// already offered; a server's settings are handed to the network
    /// session on login.
    pub(super) async fn load_settings(&mut self) {
        let rows = match self
            .gw
            .store
            .address_settings(&self.gw.domain, &self.account.jid)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                warn!("cannot read room and server settings: {e}");
                return;
            }
        };
        for (address, json) in rows {
            let kind = self.gw.network.classify(&address);
            let address = RemoteAddress::new(address);
            if super::contacts::is_offered_marker(&json) {
                self.contacts.insert(address);
                continue;
            }
            if address.as_str() == super::room_defaults::DEFAULTS_ADDRESS {
                match serde_json::from_str(&json) {
                    Ok(defaults) => self.room_defaults = defaults,
                    Err(e) => warn!("ignoring unreadable room defaults: {e}"),
                }
                continue;
            }
            let read = match kind {
                Ok(AddressKind::Room) => serde_json::from_str(&json).map(|settings| {
                    self.room_settings.insert(address.clone(), settings);
                }),
                Ok(AddressKind::Server) => serde_json::from_str(&json).map(|values| {
                    self.server_settings.insert(address.clone(), values);
                }),
                _ => Ok(()),
            };
            if let Err(e) = read {
                warn!(%address, "ignoring unreadable settings: {e}");
            }
        }
    }

    /// A room's settings: its own, under the user's defaults for all rooms.
    pub(super) fn settings_of(&self, room: &RemoteAddress) -> RoomSettings {
        self.room_defaults
            .apply(self.room_settings.get(room).copied())
    }

    /// Whether some room keeps the user's network session while they are
    /// offline; the router reads it when the last client goes.
    pub(super) fn note_persistence(&self) {
        let keeps = self
            .rooms
            .addresses()
            .iter()
            .any(|room| self.settings_of(room).persistent);
        self.keeps_session
            .store(keeps, std::sync::atomic::Ordering::Relaxed);
    }

    /// The `configure` command on a room JID: a form, then its submission.
    pub(super) async fn on_room_command(
        &mut self,
        iq: &Iq,
        room: &RemoteAddress,
        command: &Element,
    ) -> Result<(), Failure> {
        let request = adhoc::parse(command)?;
        if request.node != CONFIGURE_NODE {
            return Err(Failure::item_not_found(format!(
                "no command '{}' here",
                request.node
            )));
        }
        let current = self.settings_of(room);
        let form = match request.form_step(|| {
            registration_form(
                FORM_TYPE,
                &format!("Settings of {room}"),
                "Persistent rooms stay joined on the network while none of your clients is in \
                 them; recorded rooms keep their history for MAM and joins.",
                &FIELDS,
                &current.values(),
            )
        }) {
            FormStep::Reply(reply) => {
                self.gw.reply_result(iq, Some(reply));
                return Ok(());
            }
            FormStep::Submitted(form) => form,
        };
        let settings = current.with_form(form)?;
        self.save_settings(room.as_str(), &settings).await?;
        self.room_settings.insert(room.clone(), settings);
        self.leave_unheld(vec![room.clone()]).await;
        self.gw
            .reply_result(iq, Some(request.completed("Settings saved.")));
        Ok(())
    }

    /// Keep the user's `settings` of `address` (a room, a server, or "" for
    /// all rooms) in the store.
    pub(super) async fn save_settings(
        &self,
        address: &str,
        settings: &impl Serialize,
    ) -> Result<(), Failure> {
        let json = serde_json::to_string(settings).expect("settings are plain data");
        self.gw
            .store
            .save_address_settings(&self.gw.domain, &self.account.jid, address, &json)
            .await
            .map_err(|_| Failure::internal("the gateway's store failed"))
    }

    /// Leave the rooms among `rooms` that no client is in and that are no
    /// longer persistent: only persistence kept them.
    pub(super) async fn leave_unheld(&mut self, rooms: Vec<RemoteAddress>) {
        for room in rooms {
            let empty = self
                .rooms
                .get(&room)
                .is_some_and(|r| r.resources.is_empty());
            if empty && !self.settings_of(&room).persistent {
                self.forget_room(&room).await;
            }
        }
        self.note_persistence();
    }

    /// After a gateway restart: join again the persistent rooms the user was
    /// in, whether or not one of their clients is online.
    pub(super) async fn restore_persistent_rooms(&mut self) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        let records = match self
            .gw
            .store
            .rooms(&self.gw.domain, &self.account.jid)
            .await
        {
            Ok(records) => records,
            Err(e) => {
                warn!("cannot read the rooms to rejoin: {e}");
                return;
            }
        };
        for record in records {
            let room = RemoteAddress::new(record.room);
            if !self.settings_of(&room).persistent || self.rooms.get(&room).is_some() {
                continue;
            }
            let password = super::rooms::JoinSettings::from_json(&record.settings).password;
            let mut state = super::rooms::RoomState::new(&self.gw, &room, record.nick.clone());
            state.password = password.clone();
            self.rooms.insert(room.clone(), state);
            if let Err(e) = session
                .join_room(&room, &record.nick, password.as_deref())
                .await
            {
                warn!(%room, error = %e, "rejoining a persistent room failed");
                self.rooms.remove(&room);
            }
        }
        self.note_persistence();
    }

    /// Leave a room on the network and forget it.
    pub(super) async fn forget_room(&mut self, room: &RemoteAddress) {
        self.rooms.remove(room);
        if let Some(session) = &self.session {
            if let Err(e) = session.leave_room(room).await {
                warn!(%room, error = %e, "leaving the room failed");
            }
        }
        let _ = self
            .gw
            .store
            .delete_room(&self.gw.domain, &self.account.jid, room.as_str())
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_update_only_what_they_name_and_refuse_bad_values() {
        let form: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='persistent'><value>true</value></field></x>"
            .parse()
            .unwrap();
        let s = RoomSettings::default().with_form(&form).unwrap();
        assert!(s.persistent && s.record_history);
        let bad: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='persistent'><value>maybe</value></field></x>"
            .parse()
            .unwrap();
        assert!(RoomSettings::default().with_form(&bad).is_err());
        let stored: RoomSettings = serde_json::from_str("{\"persistent\":true}").unwrap();
        assert!(stored.persistent && stored.record_history);
    }
}
