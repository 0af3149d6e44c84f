//! The Discord gateway's `[gateway.options]`.

use std::fmt;

use serde::Deserialize;

use crate::error::DiscordError;

/// The webhook name the gateway creates in each channel, and recognises as its own.
const DEFAULT_WEBHOOK_NAME: &str = "Estuary";

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordOptions {
    /// The gateway bot's token, from the Discord developer portal. Never logged.
    pub bot_token: String,
    /// Send REST and gateway traffic to this base URL instead of
    /// `https://discord.com`, e.g. `http://127.0.0.1:PORT` for the test
    /// double. serenity's rate limiter ignores such a base, so it is turned
    /// off and the bridge's own retry on 429 is what remains: for tests only.
    #[serde(default)]
    pub api_base: Option<String>,
    #[serde(default = "default_webhook_name")]
    pub webhook_name: String,
    /// Largest file fetched from an XMPP link to be uploaded to Discord;
    /// larger ones go as a link. Discord takes 10 MiB without boosts.
    #[serde(default = "default_max_media_bytes")]
    pub max_media_bytes: u64,
    /// Also fetch links to loopback and private addresses. Off by default,
    /// so that users cannot make the gateway fetch what only it can reach.
    #[serde(default)]
    pub fetch_private_media: bool,
    /// XMPP users (bare JIDs) who may delete others' messages with the
    /// bot's Manage Messages right (XEP-0425), and are moderators in every
    /// channel. Nobody by default: the bot's rights are not the users'.
    #[serde(default)]
    pub moderators: Vec<String>,
    /// Where the avatar server listens, e.g. `127.0.0.1:8471`; with
    /// `media_url`, XMPP users' vCard photos are their webhook avatars.
    #[serde(default)]
    pub media_listen: Option<std::net::SocketAddr>,
    /// The public URL under which `media_listen` is reachable (Discord
    /// fetches avatars from it), e.g. `https://discord.example.org/media`.
    #[serde(default)]
    pub media_url: Option<String>,
}

fn default_webhook_name() -> String {
    DEFAULT_WEBHOOK_NAME.to_owned()
}

fn default_max_media_bytes() -> u64 {
    10 * 1024 * 1024
}

impl fmt::Debug for DiscordOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordOptions")
            .field("bot_token", &"***")
            .field("api_base", &self.api_base)
            .field("webhook_name", &self.webhook_name)
            .field("max_media_bytes", &self.max_media_bytes)
            .field("fetch_private_media", &self.fetch_private_media)
            .field("moderators", &self.moderators)
            .field("media_listen", &self.media_listen)
            .field("media_url", &self.media_url)
            .finish()
    }
}

impl DiscordOptions {
    pub fn fetch_policy(&self) -> estuary_fetch::FetchPolicy {
        estuary_fetch::FetchPolicy {
            max_bytes: self.max_media_bytes,
            allow_private: self.fetch_private_media,
        }
    }

    pub fn from_value(value: &serde_json::Value) -> Result<DiscordOptions, DiscordError> {
        if value.is_null() {
            return Err(DiscordError::Options(
                "the Discord gateway needs `bot_token` in [gateway.options]".to_owned(),
            ));
        }
        let options: DiscordOptions = serde_json::from_value(value.clone())
            .map_err(|e| DiscordError::Options(e.to_string()))?;
        if options.bot_token.trim().is_empty() {
            return Err(DiscordError::Options("`bot_token` is empty".to_owned()));
        }
        if options.media_listen.is_some() != options.media_url.is_some() {
            return Err(DiscordError::Options(
                "`media_listen` and `media_url` go together".to_owned(),
            ));
        }
        if let Some(base) = &options.api_base {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(DiscordError::Options(format!(
                    "`api_base` must be an http(s) URL, not '{base}'"
                )));
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_required_and_never_shown() {
        assert!(DiscordOptions::from_value(&serde_json::Value::Null).is_err());
        assert!(DiscordOptions::from_value(&serde_json::json!({ "bot_token": " " })).is_err());
        let options = DiscordOptions::from_value(&serde_json::json!({ "bot_token": "s3cret" }))
            .expect("valid");
        assert_eq!(options.webhook_name, "Estuary");
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[test]
    fn unknown_options_and_bad_bases_are_refused() {
        let typo = serde_json::json!({ "bot_token": "t", "api_bse": "http://x" });
        assert!(DiscordOptions::from_value(&typo).is_err());
        let bad = serde_json::json!({ "bot_token": "t", "api_base": "ftp://x" });
        assert!(DiscordOptions::from_value(&bad).is_err());
    }
}
