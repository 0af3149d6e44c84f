//! The Matrix bridge. It will log each registered XMPP user in to their own
//! Matrix account with `matrix-sdk`.
//!
//! Only the addressing and the registration fields exist so far; logging in
//! answers `Unsupported` so that users get a clear error instead of a fake.

use async_trait::async_trait;
use estuary_bridge::{
    AddressKind, BridgeError, Capabilities, Credentials, EventSender, FormValues, Network,
    NetworkInfo, RegistrationField, Session,
};

#[derive(Debug, Default)]
pub struct MatrixNetwork;

#[async_trait]
impl Network for MatrixNetwork {
    fn info(&self) -> NetworkInfo {
        NetworkInfo {
            kind: "matrix",
            name: "Matrix gateway".to_owned(),
            instructions: "Enter your homeserver URL, Matrix user and password.".to_owned(),
            capabilities: Capabilities::default(),
        }
    }

    fn registration_fields(&self) -> Vec<RegistrationField> {
        vec![
            RegistrationField::text("homeserver", "Homeserver URL", true),
            RegistrationField::text("user", "Matrix user (@alice:example.org)", true),
            RegistrationField::secret("password", "Password", true),
        ]
    }

    /// `#alias%server` and `!opaque%server` are rooms; `user%server` is a user.
    fn classify(&self, local: &str) -> Result<AddressKind, BridgeError> {
        match local.split_once('%') {
            Some((name, server)) if !name.is_empty() && !server.is_empty() => {
                if name.starts_with(['#', '!']) {
                    Ok(AddressKind::Room)
                } else {
                    Ok(AddressKind::User)
                }
            }
            _ => Err(BridgeError::BadRequest(format!(
                "'{local}' is not a Matrix address: expected name%server"
            ))),
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
    BridgeError::Unsupported("the Matrix bridge is not implemented yet".to_owned())
}
