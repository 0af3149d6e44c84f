//! Which remote entity a JID names, and the JID of a remote entity.

use estuary_bridge::{AddressKind, Network, RemoteAddress};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};

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
pub fn bare_jid(address: &RemoteAddress, domain: &str) -> Result<BareJid, Failure> {
    let local = escape(address.as_str()).map_err(|e| Failure::jid_malformed(e.to_string()))?;
    BareJid::new(&format!("{local}@{domain}")).map_err(|e| Failure::jid_malformed(e.to_string()))
}

/// The in-room JID of an occupant.
pub fn occupant_jid(room: &RemoteAddress, domain: &str, nick: &str) -> Result<FullJid, Failure> {
    let bare = bare_jid(room, domain)?;
    bare.with_resource_str(nick)
        .map_err(|e| Failure::jid_malformed(format!("nick '{nick}': {e}")))
}
