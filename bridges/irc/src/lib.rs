//! The IRC bridge. It will speak to IRC servers with the `irc` crate, with
//! biboumi's addressing (`#chan%server`, `nick%server`, `server`).
//!
//! Only the addressing and the registration fields exist so far; logging in
//! answers `Unsupported` so that users get a clear error instead of a fake.

use async_trait::async_trait;
use estuary_bridge::{
    AddressKind, BridgeError, Capabilities, Credentials, EventSender, FormValues, Network,
    NetworkInfo, RegistrationField, Session,
};

/// Channel prefixes assumed until the server's ISUPPORT CHANTYPES is known.
const DEFAULT_CHANTYPES: &[char] = &['#', '&'];

#[derive(Debug, Default)]
pub struct IrcNetwork {
    /// The one IRC server this gateway is fixed to, if any (biboumi's `fixed_irc_server`).
    pub fixed_server: Option<String>,
}

#[async_trait]
impl Network for IrcNetwork {
    fn info(&self) -> NetworkInfo {
        NetworkInfo {
            kind: "irc",
            name: "IRC gateway".to_owned(),
            instructions: "Choose the nick and, if you have one, the password to use on IRC."
                .to_owned(),
            capabilities: Capabilities {
                rooms: true,
                direct_messages: true,
                ..Capabilities::default()
            },
        }
    }

    fn registration_fields(&self) -> Vec<RegistrationField> {
        vec![
            RegistrationField::text("nick", "Nickname", true),
            RegistrationField::secret("password", "Password (SASL or NickServ)", false),
        ]
    }

    fn classify(&self, local: &str) -> Result<AddressKind, BridgeError> {
        let (name, server) = match local.split_once('%') {
            Some((name, server)) => (name, Some(server)),
            None => (local, self.fixed_server.as_deref()),
        };
        if name.is_empty() {
            return Err(BridgeError::BadRequest("empty IRC name".to_owned()));
        }
        if server.is_none_or(str::is_empty) {
            // Without a `%server` part and no fixed server, the local part is a server name.
            return Ok(AddressKind::Server);
        }
        if name.starts_with(DEFAULT_CHANTYPES) {
            Ok(AddressKind::Room)
        } else {
            Ok(AddressKind::User)
        }
    }

    async fn register(&self, _values: FormValues) -> Result<Credentials, BridgeError> {
        Err(not_yet())
    }

    async fn login(
        &self,
        _account: &str,
        _credentials: Credentials,
        _events: EventSender,
    ) -> Result<Box<dyn Session>, BridgeError> {
        Err(not_yet())
    }
}

fn not_yet() -> BridgeError {
    BridgeError::Unsupported("the IRC bridge is not implemented yet".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biboumi_addresses() {
        let irc = IrcNetwork::default();
        assert_eq!(irc.classify("#chan%irc.libera.chat"), Ok(AddressKind::Room));
        assert_eq!(irc.classify("nick%irc.libera.chat"), Ok(AddressKind::User));
        assert_eq!(irc.classify("irc.libera.chat"), Ok(AddressKind::Server));
        let fixed = IrcNetwork {
            fixed_server: Some("irc.libera.chat".to_owned()),
        };
        assert_eq!(fixed.classify("#chan"), Ok(AddressKind::Room));
        assert_eq!(fixed.classify("nick"), Ok(AddressKind::User));
    }
}
