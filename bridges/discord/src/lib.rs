//! The Discord bridge. It will run a bot per gateway with `serenity`, show
//! guild channels as rooms and post XMPP users' messages through webhooks.
//!
//! Only the addressing and the registration fields exist so far; logging in
//! answers `Unsupported` so that users get a clear error instead of a fake.

use async_trait::async_trait;
use estuary_bridge::{
    AddressKind, BridgeError, Capabilities, Credentials, EventSender, FormValues, Network,
    NetworkInfo, RegistrationField, Session,
};

#[derive(Debug, Default)]
pub struct DiscordNetwork;

#[async_trait]
impl Network for DiscordNetwork {
    fn info(&self) -> NetworkInfo {
        NetworkInfo {
            kind: "discord",
            name: "Discord gateway".to_owned(),
            instructions: "Optionally enter your own bot token, used for your direct messages."
                .to_owned(),
            capabilities: Capabilities::default(),
        }
    }

    fn registration_fields(&self) -> Vec<RegistrationField> {
        vec![RegistrationField::secret(
            "token",
            "Bot token (optional)",
            false,
        )]
    }

    /// Channels and users are both snowflakes; which one it is is only known
    /// from the guild data, so every well-formed ID is treated as a room until
    /// the bridge can look it up.
    fn classify(&self, local: &str) -> Result<AddressKind, BridgeError> {
        if !local.is_empty() && local.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AddressKind::Room)
        } else {
            Err(BridgeError::BadRequest(format!(
                "'{local}' is not a Discord ID"
            )))
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
    BridgeError::Unsupported("the Discord bridge is not implemented yet".to_owned())
}
