//! The admins' ad-hoc commands on the gateway's JID (biboumi's
//! `disconnect-user`, `reload`, and `disconnect-from-irc-servers` for
//! another user):
//! the forms, and what a submitted form asks for. The router, which holds
//! the sessions, carries them out or hands them to the user's session.

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use crate::xmpp::errors::Failure;
use crate::xmpp::forms::{form, list_multi, submitted_values};
use crate::xmpp::xml::{element, Attrs, NS_DATA};

/// End the sessions of chosen users.
pub const DISCONNECT_USER_NODE: &str = "disconnect-user";

/// Read the configuration file again ([`crate::reload`]), in one step.
pub const RELOAD_NODE: &str = "reload";

const FORM_TYPE: &str = "urn:estuary:admin:disconnect-user";

/// The form: which of the logged-in `users` to disconnect.
pub fn disconnect_form(users: &[BareJid]) -> Element {
    form(
        Some(FORM_TYPE),
        "Disconnect users",
        "Their sessions end on every network; they may come back.",
    )
    .append(list_multi(
        "jids",
        "Users to disconnect",
        users.iter().map(BareJid::to_string),
    ))
    .build()
}

/// The field of `disconnect-from-servers` naming whose connections an
/// admin closes; each user may name only themself.
pub const USER_FIELD: &str = "jid";

/// The first step of `disconnect-from-servers` for an admin, as biboumi's:
/// whose connections, the admin's own by default.
pub fn choose_user_form(own: &BareJid) -> Element {
    form(
        None,
        "Disconnect from servers",
        "Whose connections? The next step lists their servers.",
    )
    .append(
        element("field", NS_DATA)
            .with("var", USER_FIELD)
            .with("type", "jid-single")
            .with("label", "User")
            .append(element("value", NS_DATA).append(own.to_string())),
    )
    .build()
}

/// The user a submitted `disconnect-from-servers` form names, if any.
pub fn chosen_user(form: &Element) -> Result<Option<BareJid>, Failure> {
    let values = submitted_values(form)?;
    let Some(jid) = values.get(USER_FIELD).map(|v| v.trim()) else {
        return Ok(None);
    };
    jid.parse()
        .map(Some)
        .map_err(|_| Failure::jid_malformed(format!("'{jid}' is not a bare JID")))
}

/// The users a submitted form names.
pub fn chosen_users(form: &Element) -> Result<Vec<BareJid>, Failure> {
    let values = submitted_values(form)?;
    values
        .get("jids")
        .map(String::as_str)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.trim()
                .parse()
                .map_err(|_| Failure::jid_malformed(format!("'{line}' is not a bare JID")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_offers_the_users_and_reads_the_choice_back() {
        let users: Vec<BareJid> = vec!["alice@localhost".parse().unwrap()];
        let form = String::from(&disconnect_form(&users));
        assert!(form.contains("<value>alice@localhost</value>"), "{form}");
        let submitted: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='jids'><value>alice@localhost</value><value>bob@localhost</value></field>\
             </x>"
            .parse()
            .unwrap();
        assert_eq!(
            chosen_users(&submitted).unwrap(),
            [
                "alice@localhost".parse::<BareJid>().unwrap(),
                "bob@localhost".parse().unwrap()
            ]
        );
        let bad: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='jids'><value>not a jid@@</value></field></x>"
            .parse()
            .unwrap();
        assert!(chosen_users(&bad).is_err());
    }
}
