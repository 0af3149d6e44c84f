//! What a user chooses per remote room, with the `configure` ad-hoc command
//! on the room's JID (the command and option names biboumi uses):
//!
//! - `persistent`: stay in the room on the network while none of the user's
//!   clients is in it, so that nothing said meanwhile is missed (it is
//!   archived, and shown as history on the next join);
//! - `record_history`: archive the room's messages for MAM and join history;
//!
//! and the network's own fields beside them (IRC: the channel's encoding),
//! which the network session is handed and the store keeps with the rest.

use std::collections::BTreeMap;

use estuary_bridge::{AddressKind, FieldKind, FormValues, RegistrationField, RemoteAddress};
use serde::{Deserialize, Serialize};
use tracing::warn;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;

use crate::xmpp::adhoc::{self, FormStep};
use crate::xmpp::errors::Failure;
use crate::xmpp::forms::{registration_form, submitted_values, validate};

use super::UserSession;

pub const CONFIGURE_NODE: &str = "configure";
const FORM_TYPE: &str = "urn:xmpp:estuary:room-settings:0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomSettings {
    pub persistent: bool,
    pub record_history: bool,
}

/// What the store keeps for a room: the gateway's settings, and the
/// network's beside them. Flattened, so that rows written before the network
/// had fields read the same, and the router's restart check, which reads only
/// [`RoomSettings`], ignores the network's.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StoredRoomSettings {
    #[serde(flatten)]
    pub own: RoomSettings,
    #[serde(default, skip_serializing_if = "FormValues::is_empty")]
    pub network: FormValues,
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

    /// These settings, and the network's `network` by its `network_fields`,
    /// with a submitted form applied; fields left out keep their value.
    fn with_form(
        mut self,
        form: &Element,
        network_fields: &[RegistrationField],
        network: &FormValues,
    ) -> Result<(RoomSettings, FormValues), Failure> {
        let mut network = network.clone();
        for (var, value) in submitted_values(form)? {
            match var.as_str() {
                "persistent" => self.persistent = boolean(&var, &value)?,
                "record_history" => self.record_history = boolean(&var, &value)?,
                "FORM_TYPE" => {}
                _ if network_fields.iter().any(|f| f.var == var) => {
                    network.insert(var, value);
                }
                _ => return Err(Failure::bad_request(format!("unknown field '{var}'"))),
            }
        }
        Ok((self, validate(network_fields, &network)?))
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
                Ok(AddressKind::Room) => {
                    serde_json::from_str(&json).map(|settings: StoredRoomSettings| {
                        if !settings.network.is_empty() {
                            self.room_network_settings
                                .insert(address.clone(), settings.network);
                        }
                        self.room_settings.insert(address.clone(), settings.own);
                    })
                }
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
        let network_fields = self.gw.network.room_fields();
        let current_network = self
            .room_network_settings
            .get(room)
            .cloned()
            .unwrap_or_default();
        let form = match request.form_step(|| {
            let mut fields = FIELDS.to_vec();
            fields.extend(network_fields.iter().cloned());
            let mut values = current.values();
            values.extend(current_network.clone());
            registration_form(
                FORM_TYPE,
                &format!("Settings of {room}"),
                "Persistent rooms stay joined on the network while none of your clients is in \
                 them; recorded rooms keep their history for MAM and joins.",
                &fields,
                &values,
            )
        }) {
            FormStep::Reply(reply) => {
                self.gw.reply_result(iq, Some(reply));
                return Ok(());
            }
            FormStep::Submitted(form) => form,
        };
        let (settings, network) = current.with_form(form, &network_fields, &current_network)?;
        if network != current_network {
            // The network checks its values before anything is kept.
            self.session()?
                .set_room_settings(room, &network)
                .await
                .map_err(Failure::from)?;
        }
        let stored = StoredRoomSettings {
            own: settings,
            network,
        };
        self.save_settings(room.as_str(), &stored).await?;
        self.room_settings.insert(room.clone(), settings);
        if stored.network.is_empty() {
            self.room_network_settings.remove(room);
        } else {
            self.room_network_settings
                .insert(room.clone(), stored.network);
        }
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
        let none = FormValues::new();
        let (s, network) = RoomSettings::default()
            .with_form(&form, &[], &none)
            .unwrap();
        assert!(s.persistent && s.record_history && network.is_empty());
        let bad: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='persistent'><value>maybe</value></field></x>"
            .parse()
            .unwrap();
        assert!(RoomSettings::default().with_form(&bad, &[], &none).is_err());
        let stored: RoomSettings = serde_json::from_str("{\"persistent\":true}").unwrap();
        assert!(stored.persistent && stored.record_history);
    }

    const ENCODING: RegistrationField = RegistrationField {
        var: "encoding",
        label: "Encoding",
        kind: FieldKind::Text,
        required: false,
        max_len: 32,
    };

    #[test]
    fn the_networks_fields_are_kept_beside_and_checked_like_any_form() {
        let form: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='encoding'><value> koi8-r </value></field></x>"
            .parse()
            .unwrap();
        // Unknown to a network without room fields.
        assert!(RoomSettings::default()
            .with_form(&form, &[], &FormValues::new())
            .is_err());
        let (s, network) = RoomSettings::default()
            .with_form(&form, &[ENCODING], &FormValues::new())
            .unwrap();
        assert_eq!(s, RoomSettings::default());
        assert_eq!(network.get("encoding").map(String::as_str), Some("koi8-r"));

        // Left out of a later form, the value stays; emptied, it goes.
        let persistent: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='persistent'><value>1</value></field></x>"
            .parse()
            .unwrap();
        let (_, kept) = s.with_form(&persistent, &[ENCODING], &network).unwrap();
        assert_eq!(kept, network);
        let emptied: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='encoding'><value></value></field></x>"
            .parse()
            .unwrap();
        let (_, gone) = s.with_form(&emptied, &[ENCODING], &network).unwrap();
        assert!(gone.is_empty());
        // A line break never passes.
        let injected: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='encoding'><value>utf-8\rQUIT</value></field></x>"
            .parse()
            .unwrap();
        assert!(s.with_form(&injected, &[ENCODING], &network).is_err());

        // Stored beside the gateway's own, and read back by both readers.
        let stored = StoredRoomSettings {
            own: RoomSettings {
                persistent: true,
                record_history: false,
            },
            network: network.clone(),
        };
        let json = serde_json::to_string(&stored).unwrap();
        let back: StoredRoomSettings = serde_json::from_str(&json).unwrap();
        assert_eq!((back.own, back.network), (stored.own, network));
        assert!(RoomSettings::from_json(&json).unwrap().persistent);
        let old: StoredRoomSettings = serde_json::from_str("{\"persistent\":true}").unwrap();
        assert!(old.own.persistent && old.network.is_empty());
    }
}
