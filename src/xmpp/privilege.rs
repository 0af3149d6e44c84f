//! XEP-0356 privileged entity, for rosters only: a server that trusts the
//! gateway says so in a message when the component connects, and the
//! gateway may then put contacts straight into its users' rosters instead
//! of asking each user to accept a subscription request.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;

use super::xml::{element, payload, text_element, Attrs};

pub const NS_PRIVILEGE: &str = "urn:xmpp:privilege:2";
pub const NS_ROSTER: &str = "jabber:iq:roster";

/// What a privilege advertisement grants: `Some(true)` when the sending
/// server lets the gateway write its users' rosters, `Some(false)` when it
/// advertises other privileges only, `None` when the message is no
/// advertisement. Only a server (a JID that is just a domain) can grant.
pub fn grants_roster_write(m: &Message) -> Option<bool> {
    let from = m.from.as_ref()?;
    if from.node().is_some() || from.resource().is_some() {
        return None;
    }
    let privilege = payload(&m.payloads, "privilege", NS_PRIVILEGE)?;
    Some(privilege.children().any(|perm| {
        perm.is("perm", NS_PRIVILEGE)
            && perm.attr("access") == Some("roster")
            && matches!(perm.attr("type"), Some("set" | "both"))
    }))
}

/// A change to one item of a user's roster.
pub enum RosterEdit<'a> {
    /// Add or update the item with a mutual subscription, in `group`.
    Add {
        name: Option<&'a str>,
        group: &'a str,
    },
    Remove,
}

/// The roster set that makes `edit` to `item` in `user`'s roster, sent by
/// the gateway as XEP-0356 §5 describes.
pub fn roster_set(
    id: String,
    gateway: &Jid,
    user: &BareJid,
    item: &BareJid,
    edit: RosterEdit,
) -> Iq {
    let builder = element("item", NS_ROSTER).with("jid", item.to_string());
    let item = match edit {
        RosterEdit::Add { name, group } => builder
            .with("subscription", "both")
            .with_opt("name", name.filter(|n| !n.trim().is_empty()))
            .append(text_element("group", NS_ROSTER, group)),
        RosterEdit::Remove => builder.with("subscription", "remove"),
    };
    let query: Element = element("query", NS_ROSTER).append(item.build()).build();
    Iq::Set {
        from: Some(gateway.clone()),
        to: Some(Jid::from(user.clone())),
        id,
        payload: query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(xml: &str) -> Message {
        let el: Element = xml.parse().expect("valid XML");
        Message::try_from(el).expect("a message")
    }

    #[test]
    fn only_a_server_grants_roster_writes() {
        let grant = "<message xmlns='jabber:component:accept' from='{FROM}' to='gw.example.org'>\
                     <privilege xmlns='urn:xmpp:privilege:2'>\
                     <perm access='roster' type='both'/><perm access='message' type='outgoing'/>\
                     </privilege></message>";
        assert_eq!(
            grants_roster_write(&message(&grant.replace("{FROM}", "example.org"))),
            Some(true)
        );
        for spoof in ["mallory@example.org", "example.org/res"] {
            assert_eq!(
                grants_roster_write(&message(&grant.replace("{FROM}", spoof))),
                None
            );
        }
        let read_only = "<message xmlns='jabber:component:accept' from='example.org'>\
                         <privilege xmlns='urn:xmpp:privilege:2'>\
                         <perm access='roster' type='get'/></privilege></message>";
        assert_eq!(grants_roster_write(&message(read_only)), Some(false));
        let plain =
            "<message xmlns='jabber:component:accept' from='example.org'><body>hi</body></message>";
        assert_eq!(grants_roster_write(&message(plain)), None);
    }

    #[test]
    fn a_contact_is_added_with_a_mutual_subscription() {
        let iq = roster_set(
            "r1".to_owned(),
            &"gw.example.org".parse().unwrap(),
            &"alice@example.org".parse().unwrap(),
            &"bob%hs@gw.example.org".parse().unwrap(),
            RosterEdit::Add {
                name: Some("Bob <the builder>"),
                group: "Matrix",
            },
        );
        let xml = String::from(&Element::from(iq));
        assert!(xml.contains("to='alice@example.org'"), "{xml}");
        assert!(xml.contains("jid='bob%hs@gw.example.org'"), "{xml}");
        assert!(xml.contains("subscription='both'"), "{xml}");
        assert!(xml.contains("name='Bob &lt;the builder&gt;'"), "{xml}");
        assert!(xml.contains("<group>Matrix</group>"), "{xml}");

        let iq = roster_set(
            "r2".to_owned(),
            &"gw.example.org".parse().unwrap(),
            &"alice@example.org".parse().unwrap(),
            &"gw.example.org".parse().unwrap(),
            RosterEdit::Remove,
        );
        let xml = String::from(&Element::from(iq));
        assert!(xml.contains("subscription='remove'"), "{xml}");
        assert!(!xml.contains("<group"), "{xml}");
    }
}
