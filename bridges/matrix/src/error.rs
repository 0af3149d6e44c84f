//! Matrix failures, and how each becomes one neutral [`BridgeError`].

use estuary_bridge::BridgeError;
use matrix_sdk::ruma::api::error::ErrorKind;
use thiserror::Error;

/// What can go wrong in the bridge itself, apart from the homeserver's answers.
#[derive(Debug, Error)]
pub enum MatrixError {
    #[error("cannot read or write the sync state in {path}: {source}")]
    State {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the homeserver URL '{0}' is not valid")]
    HomeserverUrl(String),
    #[error("the homeserver sent something unexpected: {0}")]
    Unexpected(String),
}

impl From<MatrixError> for BridgeError {
    fn from(e: MatrixError) -> Self {
        match e {
            MatrixError::HomeserverUrl(_) => BridgeError::BadRequest(e.to_string()),
            _ => BridgeError::Other(e.to_string()),
        }
    }
}

/// A failed request to the homeserver, as a neutral error. `what` says what
/// was being done, for the user-facing text.
pub fn http_error(what: &str, e: &matrix_sdk::HttpError) -> BridgeError {
    if let Some(kind) = e.client_api_error_kind() {
        let text = e
            .as_client_api_error()
            .map(|api| api.to_string())
            .unwrap_or_else(|| format!("{kind:?}"));
        let text = format!("{what}: {text}");
        return match kind {
            ErrorKind::Forbidden => BridgeError::Forbidden(text),
            ErrorKind::NotFound => BridgeError::NotFound(text),
            ErrorKind::UnknownToken(_) | ErrorKind::MissingToken | ErrorKind::UserDeactivated => {
                BridgeError::Auth(text)
            }
            ErrorKind::LimitExceeded(_) => BridgeError::Unavailable(text),
            ErrorKind::TooLarge
            | ErrorKind::BadJson
            | ErrorKind::NotJson
            | ErrorKind::InvalidParam => BridgeError::BadRequest(text),
            // An unspecific code (M_UNKNOWN): the HTTP status still says what happened.
            _ => match e.as_client_api_error().map(|api| api.status_code.as_u16()) {
                Some(400 | 413) => BridgeError::BadRequest(text),
                Some(401) => BridgeError::Auth(text),
                Some(403) => BridgeError::Forbidden(text),
                Some(404) => BridgeError::NotFound(text),
                Some(429 | 502 | 503 | 504) => BridgeError::Unavailable(text),
                _ => BridgeError::Other(text),
            },
        };
    }
    match e {
        // Connection refused, DNS failure, timeout: the homeserver is not there.
        matrix_sdk::HttpError::Reqwest(inner) => {
            BridgeError::Unavailable(format!("{what}: cannot reach the homeserver ({inner})"))
        }
        other => {
            let status = other
                .as_ruma_api_error()
                .map(|api| api.to_string())
                .unwrap_or_else(|| other.to_string());
            if status.contains("502") || status.contains("503") || status.contains("504") {
                BridgeError::Unavailable(format!("{what}: {status}"))
            } else {
                BridgeError::Other(format!("{what}: {status}"))
            }
        }
    }
}

/// Same as [`http_error`], for the SDK's wider error type (login).
pub fn sdk_error(what: &str, e: &matrix_sdk::Error) -> BridgeError {
    match e {
        matrix_sdk::Error::Http(http) => http_error(what, http),
        other => BridgeError::Other(format!("{what}: {other}")),
    }
}
