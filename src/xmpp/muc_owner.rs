//! XEP-0045 `muc#owner` room configuration (§10.2): the network's room
//! settings as a `muc#roomconfig` form, and a submitted form back as a
//! change. Fields the network has no setting for are left out.

use std::collections::BTreeMap;

use estuary_bridge::{FieldKind, RegistrationField, RoomConfig};
use xmpp_parsers::minidom::Element;

use super::errors::Failure;
use super::forms;
use super::xml::{element, NS_DATA};

pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const NS_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";

const MODERATED: &str = "muc#roomconfig_moderatedroom";
const MEMBERS_ONLY: &str = "muc#roomconfig_membersonly";
const CHANGE_SUBJECT: &str = "muc#roomconfig_changesubject";
const PUBLIC: &str = "muc#roomconfig_publicroom";
const PASSWORD_PROTECTED: &str = "muc#roomconfig_passwordprotectedroom";
const SECRET: &str = "muc#roomconfig_roomsecret";
const MAX_USERS: &str = "muc#roomconfig_maxusers";

const fn boolean(var: &'static str, label: &'static str) -> RegistrationField {
    RegistrationField {
        var,
        label,
        kind: FieldKind::Boolean,
        required: false,
        max_len: 5,
    }
}

fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_owned()
}

/// The configuration form of a room whose settings are `config`.
pub fn form(config: &RoomConfig) -> Element {
    let mut fields = Vec::new();
    let mut current = BTreeMap::new();
    let mut add = |field: RegistrationField, value: Option<String>| {
        if let Some(value) = value {
            current.insert(field.var.to_owned(), value);
            fields.push(field);
        }
    };
    let flags = [
        (
            MODERATED,
            "Only occupants with voice may speak",
            config.moderated,
        ),
        (
            MEMBERS_ONLY,
            "Only those invited may join",
            config.members_only,
        ),
        (
            CHANGE_SUBJECT,
            "Any occupant may change the subject",
            config.occupants_change_subject,
        ),
        (PUBLIC, "Listed in the room directory", config.public),
        (
            PASSWORD_PROTECTED,
            "A password is needed to join",
            config.password_protected,
        ),
    ];
    for (var, label, value) in flags {
        add(boolean(var, label), value.map(flag));
    }
    if config.password_protected.is_some() {
        add(
            RegistrationField::secret(SECRET, "Password (left empty: unchanged)", false),
            Some(String::new()),
        );
    }
    add(
        RegistrationField::text(MAX_USERS, "Most occupants (0: no limit)", false),
        config.max_users.map(|n| n.to_string()),
    );
    let form = forms::registration_form(
        NS_ROOMCONFIG,
        "Room configuration",
        "The room's settings on the network.",
        &fields,
        &current,
    );
    element("query", NS_MUC_OWNER).append(form).build()
}

/// What a `muc#owner` set asks: `None` for a cancelled form.
pub fn parse_submission(query: &Element) -> Result<Option<RoomConfig>, Failure> {
    if query.has_child("destroy", NS_MUC_OWNER) {
        return Err(Failure::not_implemented(
            "this network's rooms are not destroyed from here",
        ));
    }
    let Some(form) = query.get_child("x", NS_DATA) else {
        return Err(Failure::bad_request("a configuration needs a data form"));
    };
    if form.attr("type") == Some("cancel") {
        return Ok(None);
    }
    let values = forms::submitted_values(form)?;
    let boolean = |var: &str| -> Result<Option<bool>, Failure> {
        match values.get(var).map(|v| v.trim()) {
            None => Ok(None),
            Some("1" | "true") => Ok(Some(true)),
            Some("0" | "false") => Ok(Some(false)),
            Some(other) => Err(Failure::bad_request(format!(
                "{var} is a boolean, not '{other}'"
            ))),
        }
    };
    let max_users = match values.get(MAX_USERS).map(|v| v.trim()) {
        None => None,
        Some("" | "none") => Some(0),
        Some(n) => Some(n.parse().map_err(|_| {
            Failure::bad_request(format!("{MAX_USERS} is a number of occupants, not '{n}'"))
        })?),
    };
    Ok(Some(RoomConfig {
        moderated: boolean(MODERATED)?,
        members_only: boolean(MEMBERS_ONLY)?,
        occupants_change_subject: boolean(CHANGE_SUBJECT)?,
        public: boolean(PUBLIC)?,
        password_protected: boolean(PASSWORD_PROTECTED)?,
        password: values.get(SECRET).filter(|s| !s.is_empty()).cloned(),
        max_users,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_offers_what_the_network_has_and_hides_the_password() {
        let config = RoomConfig {
            moderated: Some(true),
            public: Some(false),
            password_protected: Some(true),
            password: Some("sesame".into()),
            max_users: Some(50),
            ..RoomConfig::default()
        };
        let xml = String::from(&form(&config));
        assert!(xml.contains(NS_ROOMCONFIG), "{xml}");
        assert!(xml.contains(MODERATED) && xml.contains(PUBLIC) && xml.contains(SECRET));
        assert!(
            !xml.contains(MEMBERS_ONLY),
            "the network has no such setting: {xml}"
        );
        assert!(!xml.contains("sesame"), "{xml}");
        assert!(xml.contains("<value>50</value>"), "{xml}");
    }

    fn submit(fields: &str) -> Result<Option<RoomConfig>, Failure> {
        let xml = format!(
            "<query xmlns='{NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query>"
        );
        parse_submission(&xml.parse().unwrap())
    }

    #[test]
    fn a_submission_changes_only_what_it_carries() {
        let config = submit(&format!(
            "<field var='{MODERATED}'><value>true</value></field>\
             <field var='{SECRET}'><value>open sesame</value></field>\
             <field var='{MAX_USERS}'><value>none</value></field>"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(config.moderated, Some(true));
        assert_eq!(config.members_only, None);
        assert_eq!(config.password.as_deref(), Some("open sesame"));
        assert_eq!(config.max_users, Some(0));
        assert!(submit(&format!(
            "<field var='{PUBLIC}'><value>maybe</value></field>"
        ))
        .is_err());
        assert!(submit(&format!(
            "<field var='{MAX_USERS}'><value>-3</value></field>"
        ))
        .is_err());
        let cancel = format!(
            "<query xmlns='{NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='cancel'/></query>"
        );
        assert_eq!(parse_submission(&cancel.parse().unwrap()).unwrap(), None);
        let destroy = format!("<query xmlns='{NS_MUC_OWNER}'><destroy/></query>");
        assert!(parse_submission(&destroy.parse().unwrap()).is_err());
    }
}
