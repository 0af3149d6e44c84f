use std::fmt;

/// What a JID local part names on the remote network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    /// A multi-user room (IRC channel, Matrix room, Discord channel): a MUC.
    Room,
    /// A single remote user: a contact.
    User,
    /// A remote server itself (an IRC server): notices, MOTD, raw commands.
    Server,
}

/// A remote entity as the core sees it: the unescaped JID local part plus its kind.
///
/// The string is the bridge's own notation (`#chan%irc.libera.chat`,
/// `alice%matrix.org`, a Discord snowflake). Only the bridge interprets it; the
/// core stores it, compares it and escapes it into JIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteAddress(String);

impl RemoteAddress {
    pub fn new(id: impl Into<String>) -> Self {
        RemoteAddress(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemoteAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RemoteAddress {
    fn from(s: &str) -> Self {
        RemoteAddress(s.to_owned())
    }
}

impl From<String> for RemoteAddress {
    fn from(s: String) -> Self {
        RemoteAddress(s)
    }
}
