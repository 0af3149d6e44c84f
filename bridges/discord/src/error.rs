//! What can go wrong talking to Discord, and how each maps to the neutral
//! [`BridgeError`] the core turns into an XMPP error.

use estuary_bridge::BridgeError;
use serenity::http::HttpError;
use thiserror::Error;

/// Discord's JSON error code for a webhook that no longer exists.
pub const UNKNOWN_WEBHOOK: isize = 10015;

#[derive(Debug, Error)]
pub enum DiscordError {
    #[error("invalid Discord gateway options: {0}")]
    Options(String),
    #[error("Discord refused the gateway's bot token; check `bot_token` in [gateway.options]")]
    TokenRefused,
    /// Discord answered with an error status.
    #[error("Discord refused to {action}: HTTP {status}, {message} (code {code})")]
    Refused {
        action: &'static str,
        status: u16,
        code: isize,
        message: String,
    },
    #[error("Discord kept answering 429 (rate limited) to {action} after {attempts} attempts")]
    RateLimited { action: &'static str, attempts: u32 },
    #[error("cannot reach Discord to {action}: {reason}")]
    Unreachable {
        action: &'static str,
        reason: String,
    },
    #[error("the Discord bot is not connected: {0}")]
    NotConnected(String),
    #[error("not a Discord ID: '{0}'")]
    BadId(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
}

impl DiscordError {
    /// From a serenity error met while trying to `action`.
    pub fn from_serenity(action: &'static str, error: serenity::Error) -> DiscordError {
        match error {
            serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) => {
                DiscordError::Refused {
                    action,
                    status: response.status_code.as_u16(),
                    code: response.error.code,
                    message: response.error.message,
                }
            }
            other => DiscordError::Unreachable {
                action,
                reason: redact(&other.to_string()),
            },
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            DiscordError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<isize> {
        match self {
            DiscordError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_rate_limit(&self) -> bool {
        self.status() == Some(429)
    }
}

impl From<DiscordError> for BridgeError {
    fn from(error: DiscordError) -> BridgeError {
        let text = error.to_string();
        match &error {
            DiscordError::Options(_) | DiscordError::BadId(_) | DiscordError::BadRequest(_) => {
                BridgeError::BadRequest(text)
            }
            DiscordError::TokenRefused => BridgeError::Auth(text),
            DiscordError::NotFound(_) => BridgeError::NotFound(text),
            DiscordError::RateLimited { .. }
            | DiscordError::Unreachable { .. }
            | DiscordError::NotConnected(_) => BridgeError::Unavailable(text),
            DiscordError::Refused { status, .. } => match status {
                401 => BridgeError::Auth(text),
                403 => BridgeError::Forbidden(text),
                404 => BridgeError::NotFound(text),
                400 | 413 => BridgeError::BadRequest(text),
                429 | 500..=599 => BridgeError::Unavailable(text),
                _ => BridgeError::Other(text),
            },
        }
    }
}

/// Hide webhook tokens (`/webhooks/ID/TOKEN`) in text that may hold a URL:
/// a webhook token lets anyone post as the webhook.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("/webhooks/") {
        let (before, after) = rest.split_at(at + "/webhooks/".len());
        out.push_str(before);
        let id_end = after.find('/').unwrap_or(after.len());
        out.push_str(&after[..id_end]);
        let after_id = &after[id_end..];
        if let Some(token) = after_id.strip_prefix('/') {
            let token_end = token
                .find(|c: char| c == '/' || c == '?' || c == ')' || c.is_whitespace())
                .unwrap_or(token.len());
            out.push_str("/***");
            rest = &token[token_end..];
        } else {
            rest = after_id;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_tokens_are_redacted() {
        assert_eq!(
            redact(
                "error sending request for url (http://h/api/v10/webhooks/123/s3cr3t?wait=true)"
            ),
            "error sending request for url (http://h/api/v10/webhooks/123/***?wait=true)"
        );
        assert_eq!(
            redact("GET /webhooks/1/t/messages/2"),
            "GET /webhooks/1/***/messages/2"
        );
        assert_eq!(redact("no url here"), "no url here");
    }

    #[test]
    fn statuses_map_to_bridge_errors() {
        let refused = |status| DiscordError::Refused {
            action: "post",
            status,
            code: 0,
            message: "x".into(),
        };
        assert!(matches!(
            BridgeError::from(refused(403)),
            BridgeError::Forbidden(_)
        ));
        assert!(matches!(
            BridgeError::from(refused(404)),
            BridgeError::NotFound(_)
        ));
        assert!(BridgeError::from(refused(429)).is_transient());
        assert!(matches!(
            BridgeError::from(refused(401)),
            BridgeError::Auth(_)
        ));
    }
}
