//! Matrix IDs as JID local parts: `:` cannot separate the server (JIDs
//! forbid nothing here, but `%` is the gateway-wide convention), so
//! `@alice:matrix.org` is `alice%matrix.org`, `#room:matrix.org` is
//! `#room%matrix.org` and `!opaque:matrix.org` is `!opaque%matrix.org`.
//! XEP-0106 escaping of the rest is the core's business.
//!
//! Room IDs are case-sensitive, but XMPP servers lowercase JID local parts
//! (Prosody answers from the lowercased JID), so the opaque part of a room
//! ID keeps its capitals as `^` plus the lowercase letter (`!AbC` is
//! `!^ab^c`), and a `^` itself as `^^`. IDs without capitals read the same.

use estuary_bridge::{BridgeError, RemoteAddress};
use matrix_sdk::ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedRoomOrAliasId, OwnedUserId, UserId};

/// What a remote address names on Matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatrixAddress {
    Room(OwnedRoomId),
    Alias(OwnedRoomAliasId),
    User(OwnedUserId),
}

impl MatrixAddress {
    pub fn parse(address: &RemoteAddress) -> Result<MatrixAddress, BridgeError> {
        let local = address.as_str();
        let bad = || {
            BridgeError::BadRequest(format!(
                "'{local}' is not a Matrix address: expected name%server"
            ))
        };
        if local.len() > 1 && local.starts_with('!') && !local.contains('%') {
            // Room version 12: the room ID has no server part.
            return OwnedRoomId::try_from(decode_case(local).ok_or_else(bad)?)
                .map(MatrixAddress::Room)
                .map_err(|_| bad());
        }
        let (name, server) = local.rsplit_once('%').ok_or_else(bad)?;
        // A sigil alone names nothing, although ruma would accept `#:server`.
        if name.trim_start_matches(['!', '#', '@']).is_empty() || server.is_empty() {
            return Err(bad());
        }
        if let Some(id) = name.strip_prefix('!') {
            let id = decode_case(id).ok_or_else(bad)?;
            OwnedRoomId::try_from(format!("!{id}:{server}"))
                .map(MatrixAddress::Room)
                .map_err(|_| bad())
        } else if let Some(alias) = name.strip_prefix('#') {
            OwnedRoomAliasId::try_from(format!("#{alias}:{server}"))
                .map(MatrixAddress::Alias)
                .map_err(|_| bad())
        } else {
            let name = name.strip_prefix('@').unwrap_or(name);
            // Even historical user IDs are printable ASCII without ':'; ruma
            // is more lenient than that.
            if !name
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b':')
            {
                return Err(bad());
            }
            OwnedUserId::try_from(format!("@{name}:{server}"))
                .map(MatrixAddress::User)
                .map_err(|_| bad())
        }
    }

    /// The room this address names, as the join API takes it.
    pub fn room_or_alias(&self) -> Option<OwnedRoomOrAliasId> {
        match self {
            MatrixAddress::Room(id) => Some(id.clone().into()),
            MatrixAddress::Alias(alias) => Some(alias.clone().into()),
            MatrixAddress::User(_) => None,
        }
    }
}

/// `@alice:matrix.org` → `alice%matrix.org`.
pub fn user_address(user: &UserId) -> RemoteAddress {
    RemoteAddress::new(format!("{}%{}", user.localpart(), user.server_name()))
}

/// `!opaque:matrix.org` → `!opaque%matrix.org`, capitals kept as `^x`.
pub fn room_address(room: &matrix_sdk::ruma::RoomId) -> RemoteAddress {
    let id = room.as_str();
    match id.split_once(':') {
        Some((name, server)) => RemoteAddress::new(format!("{}%{server}", encode_case(name))),
        // Room versions 12+ may drop the server part.
        None => RemoteAddress::new(encode_case(id)),
    }
}

/// `#alias:matrix.org` → `#alias%matrix.org` (aliases keep their case in JIDs).
pub fn alias_address(alias: &matrix_sdk::ruma::RoomAliasId) -> RemoteAddress {
    RemoteAddress::new(format!("#{}%{}", alias.alias(), alias.server_name()))
}

/// The address of a room ID given as text (`!AbC:example.org`).
pub fn room_id_address(id: &str) -> Result<RemoteAddress, BridgeError> {
    let id = OwnedRoomId::try_from(id)
        .map_err(|_| BridgeError::BadRequest(format!("'{id}' is not a Matrix room ID")))?;
    Ok(room_address(&id))
}

/// Capitals as `^` + lowercase, `^` as `^^`: survives lowercasing.
fn encode_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_ascii_uppercase() {
            out.push('^');
            out.push(c.to_ascii_lowercase());
        } else if c == '^' {
            out.push_str("^^");
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`encode_case`]; `None` for a dangling `^`.
fn decode_case(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '^' {
            match chars.next()? {
                '^' => out.push('^'),
                next => out.push(next.to_ascii_uppercase()),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_keep_their_capitals_through_lowercasing() {
        let id: OwnedRoomId = "!AbC-x_9:Example.org".try_into().unwrap();
        let address = room_address(&id);
        assert_eq!(address.as_str(), "!^ab^c-x_9%Example.org");
        // What an XMPP server does to the local part changes nothing.
        let lowered = RemoteAddress::new(address.as_str().to_lowercase());
        assert_eq!(
            MatrixAddress::parse(&lowered).unwrap(),
            MatrixAddress::Room("!AbC-x_9:example.org".try_into().unwrap())
        );
        let v12: OwnedRoomId = "!HashWithCaps".try_into().unwrap();
        assert_eq!(room_address(&v12).as_str(), "!^hash^with^caps");
        assert_eq!(
            MatrixAddress::parse(&room_address(&v12)).unwrap(),
            MatrixAddress::Room(v12)
        );
        assert!(MatrixAddress::parse(&"!dangling^%example.org".into()).is_err());
    }

    #[test]
    fn addresses_round_trip() {
        let user = MatrixAddress::parse(&"alice%matrix.org".into()).unwrap();
        assert_eq!(
            user,
            MatrixAddress::User("@alice:matrix.org".try_into().unwrap())
        );
        let MatrixAddress::User(id) = user else {
            unreachable!()
        };
        assert_eq!(user_address(&id).as_str(), "alice%matrix.org");
        assert!(matches!(
            MatrixAddress::parse(&"#room%matrix.org".into()),
            Ok(MatrixAddress::Alias(_))
        ));
        let room = MatrixAddress::parse(&"!abc%matrix.org".into()).unwrap();
        let MatrixAddress::Room(id) = room else {
            panic!("not a room id")
        };
        assert_eq!(room_address(&id).as_str(), "!abc%matrix.org");
        // A server with a port keeps its colon.
        assert!(matches!(
            MatrixAddress::parse(&"bob%localhost:8448".into()),
            Ok(MatrixAddress::User(_))
        ));
    }

    #[test]
    fn bad_addresses() {
        for bad in [
            "alice",
            "%matrix.org",
            "alice%",
            "#%x",
            "!%x",
            "a b%matrix.org",
        ] {
            assert!(MatrixAddress::parse(&bad.into()).is_err(), "{bad}");
        }
    }
}
