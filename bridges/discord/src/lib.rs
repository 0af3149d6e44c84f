//! The Discord bridge: one bot per gateway, run with serenity. The guilds
//! the bot is in are listed as rooms' parents, their text channels are
//! MUCs at `<channel id>@gateway`, members are occupants, and Discord users
//! are contacts at `<user id>@gateway`. What XMPP users write is posted
//! through a channel webhook under their nick (see `post`).
//!
//! The bot connects when the gateway starts, so that a refused token shows
//! at once in the log; the other gateways of the process are not affected,
//! and users of this one are told why they cannot log in.

pub mod avatars;
pub mod bot;
pub mod error;
pub mod options;
pub mod post;
pub mod session;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use estuary_bridge::{
    AddressKind, BridgeError, Capabilities, Credentials, EventSender, FormValues, Network,
    NetworkInfo, RegistrationField, Session,
};
use serenity::all::{GuildId, UserId};
use tracing::warn;

/// The serenity this bridge is built with, for tests that drive a bot of their own.
pub use serenity;

pub use crate::avatars::AvatarServer;
pub use crate::bot::{Bot, BotStatus};
pub use crate::error::DiscordError;
pub use crate::options::DiscordOptions;

use crate::session::DiscordSession;

/// How long a login waits for the bot to be connected.
const LOGIN_WAIT: Duration = Duration::from_secs(30);

/// Install rustls' ring provider as the process default, unless one is
/// installed already. serenity's HTTP client builds a rustls 0.23 config,
/// which panics without a default provider when more than one is compiled
/// in, as it is in Estuary.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

pub struct DiscordNetwork {
    bot: Arc<Bot>,
}

impl DiscordNetwork {
    /// From the gateway's `[gateway.options]`. Starts connecting the bot at
    /// once when called inside a tokio runtime (as the gateway does).
    pub fn from_options(value: &serde_json::Value) -> Result<DiscordNetwork, DiscordError> {
        let options = DiscordOptions::from_value(value)?;
        ensure_crypto_provider();
        // Outside a runtime (a configuration check) nothing listens yet.
        let avatars = match (&options.media_listen, &options.media_url) {
            (Some(listen), Some(url)) if tokio::runtime::Handle::try_current().is_ok() => {
                Some(AvatarServer::start(*listen, url)?)
            }
            _ => None,
        };
        let bot = Bot::new(options, avatars);
        // Outside a runtime (a configuration check) it starts at the first login.
        bot.start();
        Ok(DiscordNetwork { bot })
    }

    pub fn bot(&self) -> &Arc<Bot> {
        &self.bot
    }
}

impl Drop for DiscordNetwork {
    /// The bot's task holds the bot too: tell it to disconnect, or a gateway
    /// restarted in the same process would leave its old bot connected.
    fn drop(&mut self) {
        self.bot.stop();
    }
}

/// A user's own bot token, when they gave one.
fn own_token(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|t| !t.is_empty())
}

impl DiscordNetwork {
    /// A user's own token must be a bot's that Discord accepts: user
    /// accounts (self-bots) are against Discord's terms.
    async fn check_own_token(&self, token: &str) -> Result<(), BridgeError> {
        let options = DiscordOptions {
            bot_token: token.to_owned(),
            ..self.bot.options.clone()
        };
        match bot::make_http(&options).get_current_user().await {
            Ok(user) if user.bot => Ok(()),
            Ok(_) => Err(BridgeError::BadRequest(
                "that is not a bot's token: Estuary only uses bots, as Discord's terms require"
                    .to_owned(),
            )),
            Err(e) => {
                let e = DiscordError::from_serenity("check your bot's token", e);
                Err(match e.status() {
                    Some(401) => BridgeError::Auth("Discord refused your bot's token".to_owned()),
                    _ => BridgeError::Unavailable(e.to_string()),
                })
            }
        }
    }

    /// Connect a user's own bot for their direct messages. A refused token
    /// fails the login; a bot still connecting is used once it is ready.
    async fn start_own_bot(&self, token: &str, account: &str) -> Result<Arc<Bot>, BridgeError> {
        let own = Bot::personal(&self.bot.options, token, account);
        own.start();
        match own.wait_ready(LOGIN_WAIT).await {
            Ok(()) => Ok(own),
            Err(e) if matches!(own.status(), BotStatus::Failed(_)) => {
                own.stop();
                Err(BridgeError::Auth(format!("your own bot: {e}")))
            }
            Err(e) => {
                warn!(error = %e, "the user's own bot is still connecting");
                Ok(own)
            }
        }
    }
}

fn is_snowflake(local: &str) -> bool {
    !local.is_empty() && local.len() <= 20 && local.bytes().all(|b| b.is_ascii_digit())
}

#[async_trait]
impl Network for DiscordNetwork {
    fn info(&self) -> NetworkInfo {
        NetworkInfo {
            kind: "discord",
            name: "Discord gateway".to_owned(),
            instructions: "Register to use the Discord rooms this gateway's bot is in.".to_owned(),
            capabilities: Capabilities {
                rooms: true,
                direct_messages: true,
                edits: true,
                retractions: true,
                reactions: true,
                replies: true,
                typing: true,
                read_markers: false,
                // The gateway never shows its own posts back: the core reflects them.
                echoes_own_messages: false,
                // Only for the users the admin names (`moderators`): deleting
                // others' messages uses the bot's rights.
                moderation: true,
                server_info: false,
                room_ids_in_archive: false,
            },
        }
    }

    fn registration_fields(&self) -> Vec<RegistrationField> {
        vec![RegistrationField::secret(
            "token",
            "Your own bot's token, for your direct messages (optional)",
            false,
        )]
    }

    /// Guilds, channels and users are all snowflakes; the bot's cache says
    /// which is which. An unknown one is taken for a room, so that joining
    /// it gives a precise error from Discord.
    fn classify(&self, local: &str) -> Result<AddressKind, BridgeError> {
        if !is_snowflake(local) {
            return Err(BridgeError::BadRequest(format!(
                "'{local}' is not a Discord ID"
            )));
        }
        let id: u64 = local
            .parse()
            .map_err(|_| BridgeError::BadRequest(format!("'{local}' is not a Discord ID")))?;
        if id == 0 {
            return Err(BridgeError::BadRequest("0 is not a Discord ID".to_owned()));
        }
        let Some(cache) = self.bot.cache() else {
            return Ok(AddressKind::Room);
        };
        if cache.guild(GuildId::new(id)).is_some() {
            Ok(AddressKind::Server)
        } else if self.bot.guild_channel(id).is_some() {
            Ok(AddressKind::Room)
        } else if cache.user(UserId::new(id)).is_some() {
            Ok(AddressKind::User)
        } else {
            Ok(AddressKind::Room)
        }
    }

    async fn register(&self, values: FormValues) -> Result<Credentials, BridgeError> {
        if let BotStatus::Failed(reason) = self.bot.status() {
            return Err(BridgeError::Unavailable(reason));
        }
        if let Some(token) = own_token(values.get("token").map(String::as_str)) {
            self.check_own_token(token).await?;
        }
        Ok(Credentials::from(values))
    }

    async fn login(
        &self,
        account: &str,
        credentials: Credentials,
        events: EventSender,
    ) -> Result<Box<dyn Session>, BridgeError> {
        self.bot.start();
        if let Err(e) = self.bot.wait_ready(LOGIN_WAIT).await {
            return Err(match self.bot.status() {
                BotStatus::Failed(_) => BridgeError::Auth(e.to_string()),
                _ => BridgeError::Unavailable(e.to_string()),
            });
        }
        let own = match own_token(credentials.get("token")) {
            Some(token) => Some(self.start_own_bot(token, account).await?),
            None => None,
        };
        Ok(Box::new(DiscordSession::new(
            self.bot.clone(),
            own,
            account,
            events,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_are_snowflakes() {
        let network = DiscordNetwork::from_options(
            &serde_json::json!({ "bot_token": "t", "api_base": "http://127.0.0.1:9" }),
        )
        .expect("valid options");
        assert_eq!(network.classify("81384788765712384"), Ok(AddressKind::Room));
        for bad in ["", "abc", "#general", "12a", "0", "123456789012345678901"] {
            assert!(network.classify(bad).is_err(), "{bad}");
        }
    }
}
