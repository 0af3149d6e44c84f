//! XEP-0045 `muc#admin` requests: kicks, role and affiliation changes, and
//! the lists of who holds a role or an affiliation. xmpp-parsers has no
//! types for this namespace.

use estuary_bridge::{Affiliation, Role};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::errors::Failure;
use super::muc;
use super::xml::{element, text_element, Attrs};

pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";

/// Whom an item is about: an occupant by nick (roles, kicks), or anyone by
/// JID (affiliations, as clients send bans and memberships).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemTarget {
    Nick(String),
    Jid(Jid),
}

/// One `<item/>` of a `muc#admin` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminItem {
    pub target: ItemTarget,
    pub role: Option<Role>,
    pub affiliation: Option<Affiliation>,
    pub reason: Option<String>,
}

fn parse_role(value: &str) -> Result<Role, Failure> {
    match value {
        "moderator" => Ok(Role::Moderator),
        "participant" => Ok(Role::Participant),
        "visitor" => Ok(Role::Visitor),
        "none" => Ok(Role::None),
        other => Err(Failure::bad_request(format!("unknown role '{other}'"))),
    }
}

fn parse_affiliation(value: &str) -> Result<Affiliation, Failure> {
    match value {
        "owner" => Ok(Affiliation::Owner),
        "admin" => Ok(Affiliation::Admin),
        "member" => Ok(Affiliation::Member),
        "none" => Ok(Affiliation::None),
        "outcast" => Ok(Affiliation::Outcast),
        other => Err(Failure::bad_request(format!(
            "unknown affiliation '{other}'"
        ))),
    }
}

fn items(query: &Element) -> impl Iterator<Item = &Element> {
    query.children().filter(|c| c.is("item", NS_MUC_ADMIN))
}

pub fn parse(query: &Element) -> Result<Vec<AdminItem>, Failure> {
    let mut parsed = Vec::new();
    for item in items(query) {
        // The nick when both are given: a role change names an occupant.
        let target = match (
            item.attr("nick").filter(|n| !n.is_empty()),
            item.attr("jid"),
        ) {
            (Some(nick), _) => ItemTarget::Nick(nick.to_owned()),
            (None, Some(jid)) => ItemTarget::Jid(
                jid.parse()
                    .map_err(|_| Failure::jid_malformed(format!("'{jid}' is not a JID")))?,
            ),
            (None, None) => return Err(Failure::bad_request("each item needs a nick or a jid")),
        };
        let role = item.attr("role").map(parse_role).transpose()?;
        let affiliation = item
            .attr("affiliation")
            .map(parse_affiliation)
            .transpose()?;
        if role.is_none() && affiliation.is_none() {
            return Err(Failure::bad_request(
                "an item needs a role or an affiliation",
            ));
        }
        let reason = item
            .get_child("reason", NS_MUC_ADMIN)
            .map(Element::text)
            .filter(|r| !r.is_empty());
        parsed.push(AdminItem {
            target,
            role,
            affiliation,
            reason,
        });
    }
    if parsed.is_empty() {
        return Err(Failure::bad_request("no item in the request"));
    }
    Ok(parsed)
}

/// Which list a `muc#admin` get asks for (XEP-0045 §8.5, §9.2, §9.5, §9.8, §10.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListQuery {
    Affiliation(Affiliation),
    Role(Role),
}

pub fn parse_list(query: &Element) -> Result<ListQuery, Failure> {
    let mut asked = items(query);
    let (Some(item), None) = (asked.next(), asked.next()) else {
        return Err(Failure::bad_request("a list request has one item"));
    };
    match (item.attr("affiliation"), item.attr("role")) {
        (Some(a), None) => Ok(ListQuery::Affiliation(parse_affiliation(a)?)),
        (None, Some(r)) => Ok(ListQuery::Role(parse_role(r)?)),
        _ => Err(Failure::bad_request(
            "a list request names an affiliation or a role",
        )),
    }
}

/// One entry of a list answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub jid: Option<Jid>,
    pub nick: Option<String>,
    pub affiliation: Affiliation,
    pub role: Option<Role>,
    pub reason: Option<String>,
}

/// The answer to a list request.
pub fn list(entries: &[ListEntry]) -> Element {
    let mut query = element("query", NS_MUC_ADMIN);
    for entry in entries {
        let mut item = element("item", NS_MUC_ADMIN)
            .with("affiliation", muc::affiliation(entry.affiliation))
            .with_opt("jid", entry.jid.as_ref().map(Jid::to_string))
            .with_opt("nick", entry.nick.clone())
            .with_opt("role", entry.role.map(muc::role));
        if let Some(reason) = &entry.reason {
            item = item.append(text_element(
                "reason",
                NS_MUC_ADMIN,
                super::xml::clean_text(reason),
            ));
        }
        query = query.append(item);
    }
    query.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn a_ban_names_a_jid_and_a_kick_a_nick() {
        let items = parse(&el("<query xmlns='http://jabber.org/protocol/muc#admin'>\
             <item affiliation='outcast' jid='bob%irc.example@gw.example'><reason>spam</reason></item>\
             <item role='none' nick='carol'/></query>"))
        .unwrap();
        assert_eq!(
            items[0].target,
            ItemTarget::Jid("bob%irc.example@gw.example".parse().unwrap())
        );
        assert_eq!(items[0].affiliation, Some(Affiliation::Outcast));
        assert_eq!(items[0].reason.as_deref(), Some("spam"));
        assert_eq!(items[1].target, ItemTarget::Nick("carol".into()));
        assert_eq!(items[1].role, Some(Role::None));
        let bad = parse(&el("<query xmlns='http://jabber.org/protocol/muc#admin'>\
             <item affiliation='outcast' jid='not a jid@@'/></query>"));
        assert!(bad.is_err());
        assert!(parse(&el(
            "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast'/></query>"
        ))
        .is_err());
    }

    #[test]
    fn a_list_request_names_one_affiliation_or_role() {
        let q = |items: &str| {
            parse_list(&el(&format!(
                "<query xmlns='http://jabber.org/protocol/muc#admin'>{items}</query>"
            )))
        };
        assert_eq!(
            q("<item affiliation='outcast'/>").unwrap(),
            ListQuery::Affiliation(Affiliation::Outcast)
        );
        assert_eq!(
            q("<item role='moderator'/>").unwrap(),
            ListQuery::Role(Role::Moderator)
        );
        assert!(q("").is_err());
        assert!(q("<item affiliation='outcast'/><item affiliation='admin'/>").is_err());
        assert!(q("<item affiliation='king'/>").is_err());
    }

    #[test]
    fn a_list_escapes_what_it_carries() {
        let answer = list(&[ListEntry {
            jid: Some(
                "*!*\\40evil.example%irc.example@gw.example"
                    .parse()
                    .unwrap(),
            ),
            nick: None,
            affiliation: Affiliation::Outcast,
            role: None,
            reason: Some("set by <op>\u{1}".into()),
        }]);
        let xml = String::from(&answer);
        assert!(xml.contains("affiliation='outcast'"), "{xml}");
        assert!(xml.contains("set by &lt;op&gt;</reason>"), "{xml}");
    }
}
