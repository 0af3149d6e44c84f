use thiserror::Error;

/// What a bridge reports when it cannot do what was asked.
///
/// The variants are chosen so that the core can map each one to exactly one
/// XMPP error condition without knowing anything about the network.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BridgeError {
    /// The network has no such feature, or the bridge does not implement it yet.
    #[error("not supported by this network: {0}")]
    Unsupported(String),
    /// The room, user or message does not exist on the remote side.
    #[error("not found: {0}")]
    NotFound(String),
    /// The remote side refused: missing permission, banned, not a member.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request itself is wrong (bad address, bad field, oversized body).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The credentials were refused by the remote network.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The remote network cannot be reached right now; the caller may queue and retry.
    #[error("remote network unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the text goes to the log and, shortened, to the user.
    #[error("{0}")]
    Other(String),
}

impl BridgeError {
    /// Whether retrying later could succeed, so the core should queue rather than bounce.
    pub fn is_transient(&self) -> bool {
        matches!(self, BridgeError::Unavailable(_))
    }
}
