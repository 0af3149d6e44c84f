//! XEP-0045 `muc#admin` requests: kicks, role and affiliation changes.
//! xmpp-parsers has no types for this namespace.

use estuary_bridge::{Affiliation, Role};
use xmpp_parsers::minidom::Element;

use super::errors::Failure;

pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";

/// One `<item/>` of a `muc#admin` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminItem {
    pub nick: String,
    pub role: Option<Role>,
    pub affiliation: Option<Affiliation>,
    pub reason: Option<String>,
}

pub fn parse(query: &Element) -> Result<Vec<AdminItem>, Failure> {
    let mut items = Vec::new();
    for item in query.children().filter(|c| c.is("item", NS_MUC_ADMIN)) {
        let nick = item
            .attr("nick")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Failure::bad_request("each item needs a nick"))?;
        let role = match item.attr("role") {
            None => None,
            Some("moderator") => Some(Role::Moderator),
            Some("participant") => Some(Role::Participant),
            Some("visitor") => Some(Role::Visitor),
            Some("none") => Some(Role::None),
            Some(other) => return Err(Failure::bad_request(format!("unknown role '{other}'"))),
        };
        let affiliation = match item.attr("affiliation") {
            None => None,
            Some("owner") => Some(Affiliation::Owner),
            Some("admin") => Some(Affiliation::Admin),
            Some("member") => Some(Affiliation::Member),
            Some("none") => Some(Affiliation::None),
            Some("outcast") => Some(Affiliation::Outcast),
            Some(other) => {
                return Err(Failure::bad_request(format!(
                    "unknown affiliation '{other}'"
                )))
            }
        };
        if role.is_none() && affiliation.is_none() {
            return Err(Failure::bad_request(
                "an item needs a role or an affiliation",
            ));
        }
        let reason = item
            .get_child("reason", NS_MUC_ADMIN)
            .map(Element::text)
            .filter(|r| !r.is_empty());
        items.push(AdminItem {
            nick: nick.to_owned(),
            role,
            affiliation,
            reason,
        });
    }
    if items.is_empty() {
        return Err(Failure::bad_request("no item in the request"));
    }
    Ok(items)
}
