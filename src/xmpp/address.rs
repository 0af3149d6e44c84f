//! Which remote entity a JID names, and the JID of a remote entity.

use estuary_bridge::{AddressKind, Network, RemoteAddress};
use xmpp_parsers::jid::{BareJid, DomainRef, FullJid, Jid, NodePart};

use super::errors::Failure;
use super::escape::{escape, unescape};

/// What a stanza's `to` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The gateway domain itself.
    Gateway,
    /// A remote room, user or server, with the resource (a MUC nick) if any.
    Remote {
        address: RemoteAddress,
        kind: AddressKind,
        resource: Option<String>,
    },
}

/// Resolve a recipient JID on this gateway's domain.
pub fn target(to: &Jid, network: &dyn Network) -> Result<Target, Failure> {
    let Some(node) = to.node() else {
        return Ok(Target::Gateway);
    };
    let name = unescape(node.as_str()).map_err(|e| Failure::jid_malformed(e.to_string()))?;
    let kind = network
        .classify(&name)
        .map_err(|e| Failure::jid_malformed(e.to_string()))?;
    Ok(Target::Remote {
        address: RemoteAddress::new(name),
        kind,
        resource: to.resource().map(|r| r.as_str().to_owned()),
    })
}

/// The JID of a remote entity on this gateway.
///
/// Built from parts rather than parsed from a string: `domain` is the
/// gateway's own, already validated, and this runs for every message shown
/// (parsing checked the domain with IDNA each time: 3% of the gateway's CPU
/// in the load tool). The node is still checked with nodeprep.
pub fn bare_jid(address: &RemoteAddress, domain: &DomainRef) -> Result<BareJid, Failure> {
    let local = escape(address.as_str()).map_err(|e| Failure::jid_malformed(e.to_string()))?;
    let node = NodePart::new(&local).map_err(|e| Failure::jid_malformed(e.to_string()))?;
    Ok(BareJid::from_parts(Some(&node), domain))
}

/// The in-room JID of an occupant.
pub fn occupant_jid(
    room: &RemoteAddress,
    domain: &DomainRef,
    nick: &str,
) -> Result<FullJid, Failure> {
    occupant_of(&bare_jid(room, domain)?, nick)
}

/// The in-room JID of an occupant of the room whose JID is `room`: for
/// callers that have the room's JID already and would otherwise build it
/// again for every occupant or message.
pub fn occupant_of(room: &BareJid, nick: &str) -> Result<FullJid, Failure> {
    room.with_resource_str(nick)
        .map_err(|e| Failure::jid_malformed(format!("nick '{nick}': {e}")))
}

/// The characters an XMPP URI's node may hold as they are (RFC 5122:
/// unreserved and "nodeallow"); every other is percent-encoded.
const URI_NODE_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=');

/// The XMPP URI that joins the room `room` (RFC 5122, XEP-0147's `join`).
pub fn join_uri(room: &Jid) -> String {
    let node = room.node().map(|n| n.as_str()).unwrap_or_default();
    format!(
        "xmpp:{}@{}?join",
        percent_encoding::utf8_percent_encode(node, URI_NODE_ESCAPED),
        room.domain()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> BareJid {
        BareJid::new("irc.example.org").unwrap()
    }

    #[test]
    fn join_uris_escape_what_a_uri_would_read_otherwise() {
        let room = bare_jid(&RemoteAddress::new("#over%irc.example"), domain().domain()).unwrap();
        assert_eq!(
            join_uri(&Jid::from(room)),
            "xmpp:%23over%25irc.example@irc.example.org?join"
        );
    }

    #[test]
    fn a_jid_built_from_parts_is_the_one_parsing_would_give() {
        for name in [
            "#chan%irc.libera.chat",
            "Bob%irc.libera.chat",
            "#Caps",
            "alice smith",
            "a@b/c",
            "#café",
        ] {
            let address = RemoteAddress::new(name.to_owned());
            let built = bare_jid(&address, domain().domain()).unwrap();
            let local = escape(name).unwrap();
            let parsed = BareJid::new(&format!("{local}@irc.example.org")).unwrap();
            assert_eq!(built, parsed, "{name}");
            assert_eq!(built.to_string(), parsed.to_string(), "{name}");
        }
    }

    #[test]
    fn a_name_nodeprep_refuses_is_malformed() {
        // U+FFFD is prohibited in a localpart.
        let address = RemoteAddress::new("#bad\u{FFFD}".to_owned());
        assert!(bare_jid(&address, domain().domain()).is_err());
        let occupant = occupant_jid(&RemoteAddress::new("#ok".to_owned()), domain().domain(), "");
        assert!(occupant.is_err(), "an empty nick is no resource");
    }

    #[test]
    fn an_occupant_jid_is_room_slash_nick() {
        let room = RemoteAddress::new("#chan%irc.libera.chat".to_owned());
        let jid = occupant_jid(&room, domain().domain(), "Bob Smith").unwrap();
        assert_eq!(
            jid.to_string(),
            "#chan%irc.libera.chat@irc.example.org/Bob Smith"
        );
    }
}
