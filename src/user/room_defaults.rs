//! What a user chooses for all their rooms at once, with the `configure`
//! ad-hoc command on the gateway's JID (biboumi's global options):
//!
//! - `persistent`: every room is persistent, whatever its own setting;
//! - `record_history`: whether rooms the user never configured are archived;
//! - `max_history`: at most this many archived messages on a join, whatever
//!   the join asks for.
//!
//! They are kept with the per-address settings, under the empty address
//! (the gateway itself); a room's own `persistent` field reads them too, so
//! a restart finds a user with every room persistent.

use std::collections::BTreeMap;

use estuary_bridge::{FieldKind, RegistrationField};
use serde::{Deserialize, Serialize};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;

use crate::xmpp::adhoc::{self, FormStep};
use crate::xmpp::errors::Failure;
use crate::xmpp::forms::{registration_form, submitted_values};

use super::room_settings::{boolean, RoomSettings};
use super::UserSession;

/// The store's address of the user's defaults: the gateway's own.
pub const DEFAULTS_ADDRESS: &str = "";

const FORM_TYPE: &str = "urn:xmpp:estuary:room-defaults:0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomDefaults {
    pub persistent: bool,
    pub record_history: bool,
    pub max_history: Option<u32>,
}

impl Default for RoomDefaults {
    fn default() -> Self {
        RoomDefaults {
            persistent: false,
            record_history: true,
            max_history: None,
        }
    }
}

const FIELDS: [RegistrationField; 3] = [
    RegistrationField {
        var: "persistent",
        label: "Make every room persistent",
        kind: FieldKind::Boolean,
        required: false,
        max_len: 8,
    },
    RegistrationField {
        var: "record_history",
        label: "Record the history of rooms not configured otherwise",
        kind: FieldKind::Boolean,
        required: false,
        max_len: 8,
    },
    RegistrationField {
        var: "max_history",
        label: "At most this many messages of history on a join (empty: as the join asks)",
        kind: FieldKind::Text,
        required: false,
        max_len: 6,
    },
];

impl RoomDefaults {
    /// A room's settings with these defaults applied to them, or to
    /// nothing where the user never configured the room.
    pub fn apply(&self, own: Option<RoomSettings>) -> RoomSettings {
        RoomSettings {
            persistent: self.persistent || own.is_some_and(|s| s.persistent),
            record_history: own.map_or(self.record_history, |s| s.record_history),
        }
    }

    /// How many messages of history a join that asks for `asked` gets.
    pub fn history_limit(&self, asked: usize) -> usize {
        self.max_history
            .map_or(asked, |max| asked.min(max as usize))
    }

    fn values(&self) -> BTreeMap<String, String> {
        let mut values = BTreeMap::from([
            (
                "persistent".to_owned(),
                u8::from(self.persistent).to_string(),
            ),
            (
                "record_history".to_owned(),
                u8::from(self.record_history).to_string(),
            ),
        ]);
        if let Some(max) = self.max_history {
            values.insert("max_history".to_owned(), max.to_string());
        }
        values
    }

    /// These defaults with a submitted form applied; fields left out keep
    /// their value.
    fn with_form(mut self, form: &Element) -> Result<RoomDefaults, Failure> {
        for (var, value) in submitted_values(form)? {
            match var.as_str() {
                "persistent" => self.persistent = boolean(&var, &value)?,
                "record_history" => self.record_history = boolean(&var, &value)?,
                "max_history" if value.trim().is_empty() => self.max_history = None,
                "max_history" => {
                    self.max_history = Some(value.trim().parse().map_err(|_| {
                        Failure::bad_request(format!(
                            "'max_history' must be a number, not '{value}'"
                        ))
                    })?)
                }
                "FORM_TYPE" => {}
                _ => return Err(Failure::bad_request(format!("unknown field '{var}'"))),
            }
        }
        Ok(self)
    }
}

impl UserSession {
    /// The `configure` command on the gateway's JID: a form, then its
    /// submission.
    pub(super) async fn on_defaults_command(
        &mut self,
        iq: &Iq,
        command: &Element,
    ) -> Result<(), Failure> {
        let request = adhoc::parse(command)?;
        let form = match request.form_step(|| {
            registration_form(
                FORM_TYPE,
                "Settings of all your rooms",
                "Every room persistent overrides each room's own setting; recording applies \
                 to the rooms you never configured.",
                &FIELDS,
                &self.room_defaults.values(),
            )
        }) {
            FormStep::Reply(reply) => {
                self.gw.reply_result(iq, Some(reply));
                return Ok(());
            }
            FormStep::Submitted(form) => form,
        };
        let defaults = self.room_defaults.with_form(form)?;
        self.save_settings(DEFAULTS_ADDRESS, &defaults).await?;
        self.room_defaults = defaults;
        self.leave_unheld(self.rooms.addresses()).await;
        self.gw
            .reply_result(iq, Some(request.completed("Settings saved.")));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_under_and_over_a_rooms_own_settings() {
        let all = RoomDefaults {
            persistent: true,
            record_history: false,
            max_history: Some(5),
        };
        let own = RoomSettings {
            persistent: false,
            record_history: true,
        };
        assert_eq!(
            all.apply(Some(own)),
            RoomSettings {
                persistent: true,
                record_history: true
            }
        );
        assert_eq!(
            all.apply(None),
            RoomSettings {
                persistent: true,
                record_history: false
            }
        );
        assert_eq!(RoomDefaults::default().apply(None), RoomSettings::default());
        assert_eq!(all.history_limit(20), 5);
        assert_eq!(RoomDefaults::default().history_limit(20), 20);
        // What the router reads at restart sees every room persistent.
        let json = serde_json::to_string(&all).unwrap();
        assert!(RoomSettings::from_json(&json).unwrap().persistent);
    }

    #[test]
    fn the_form_is_read_back() {
        let form: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='max_history'><value>7</value></field>\
             <field var='persistent'><value>1</value></field></x>"
            .parse()
            .unwrap();
        let d = RoomDefaults::default().with_form(&form).unwrap();
        assert!(d.persistent && d.record_history);
        assert_eq!(d.max_history, Some(7));
        let bad: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='max_history'><value>lots</value></field></x>"
            .parse()
            .unwrap();
        assert!(RoomDefaults::default().with_form(&bad).is_err());
    }
}
