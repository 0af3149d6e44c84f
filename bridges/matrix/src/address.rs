//! Matrix IDs as JID local parts: `:` cannot separate the server (JIDs
//! forbid nothing here, but `%` is the gateway-wide convention), so
//! `@alice:matrix.org` is `alice%matrix.org`, `#room:matrix.org` is
//! `#room%matrix.org` and `!opaque:matrix.org` is `!opaque%matrix.org`.
//! XEP-0106 escaping of the rest is the core's business.

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
            return OwnedRoomId::try_from(local)
                .map(MatrixAddress::Room)
                .map_err(|_| bad());
        }
        let (name, server) = local.rsplit_once('%').ok_or_else(bad)?;
        // A sigil alone names nothing, although ruma would accept `#:server`.
        if name.trim_start_matches(['!', '#', '@']).is_empty() || server.is_empty() {
            return Err(bad());
        }
        if let Some(id) = name.strip_prefix('!') {
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

/// `!opaque:matrix.org` → `!opaque%matrix.org`.
pub fn room_address(room: &matrix_sdk::ruma::RoomId) -> RemoteAddress {
    let id = room.as_str();
    match id.split_once(':') {
        Some((name, server)) => RemoteAddress::new(format!("{name}%{server}")),
        // Room versions 12+ may drop the server part.
        None => RemoteAddress::new(id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
