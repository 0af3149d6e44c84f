//! The IRC bridge, biboumi-compatible in its addressing: `#chan%server` is a
//! channel, `nick%server` a user, `server` the server itself; with
//! `fixed_server` the `%server` part is left out.
//!
//! Each logged-in XMPP user gets one connection per IRC server (see
//! `server`), opened on the first join or message.

pub mod address;
pub mod casemap;
pub mod channel_encodings;
pub mod channel_queries;
pub mod connection;
pub mod ctcp;
pub mod identd;
pub mod isupport;
pub mod line;
pub mod modes;
pub mod monitor;
pub mod options;
pub mod reactions;
pub mod room_config;
pub mod server;
pub mod server_time;
pub mod session;
pub mod text;
pub mod tls;
pub mod typing;
pub mod whois;

#[cfg(test)]
mod scripted_server;

pub use casemap::Casemapping;
pub use isupport::{ChanModes, Isupport, ModeKind, Prefixes};
pub use modes::{ModeChange, NamesEntry};

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use estuary_bridge::{
    AddressKind, BridgeError, Capabilities, Credentials, EventSender, FormValues, Network,
    NetworkInfo, RegistrationField, RemoteAddress, Session,
};

use crate::connection::Identity;
use crate::options::{IrcOptions, SharedOptions};
use crate::session::IrcSession;

/// Channel prefixes assumed until the server's ISUPPORT CHANTYPES is known.
const DEFAULT_CHANTYPES: &[char] = &['#', '&'];

#[derive(Debug, Default)]
pub struct IrcNetwork {
    options: SharedOptions,
}

impl IrcNetwork {
    /// From the gateway's `[gateway.options]` table.
    pub fn from_options(value: &serde_json::Value) -> Result<IrcNetwork, String> {
        Ok(IrcNetwork {
            options: Arc::new(ArcSwap::from_pointee(IrcOptions::from_value(value)?)),
        })
    }

    pub fn fixed(server: &str) -> IrcNetwork {
        IrcNetwork {
            options: Arc::new(ArcSwap::from_pointee(IrcOptions {
                fixed_server: Some(server.to_owned()),
                ..IrcOptions::default()
            })),
        }
    }
}

/// Whether a nick is one IRC servers accept (RFC 2812 plus common practice).
pub(crate) fn valid_nick(nick: &str) -> bool {
    let mut chars = nick.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || nick_special(first))
        && nick.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || nick_special(c) || c == '-')
}

/// The punctuation RFC 2812 allows anywhere in a nick.
fn nick_special(c: char) -> bool {
    "[]\\`_^{|}".contains(c)
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
                echoes_own_messages: true,
                server_info: true,
                // IRCv3 `+draft/react`, where the server passes client tags.
                reactions: true,
                room_ids_in_archive: true,
                ..Capabilities::default()
            },
        }
    }

    fn registration_fields(&self) -> Vec<RegistrationField> {
        vec![
            RegistrationField::text("nick", "Nickname", true),
            RegistrationField::secret("password", "Password (SASL)", false),
        ]
    }

    fn server_fields(&self) -> Vec<RegistrationField> {
        options::user_fields(self.options.load().realname_customization)
    }

    fn room_fields(&self) -> Vec<RegistrationField> {
        options::channel_fields()
    }

    fn occupant_user(&self, room: &RemoteAddress, nick: &str) -> Option<RemoteAddress> {
        let options = self.options.load();
        let fixed = options.fixed_server.as_deref();
        let room = address::IrcAddress::parse(room, fixed).ok()?;
        Some(address::IrcAddress::remote(nick, &room.server, fixed))
    }

    fn member_name(&self, room: &RemoteAddress, user: &RemoteAddress) -> Option<String> {
        let options = self.options.load();
        let fixed = options.fixed_server.as_deref();
        let room = address::IrcAddress::parse(room, fixed).ok()?;
        let user = address::IrcAddress::parse(user, fixed).ok()?;
        let named = !user.name.is_empty() && !user.name.starts_with(DEFAULT_CHANTYPES);
        (named && user.server.eq_ignore_ascii_case(&room.server)).then_some(user.name)
    }

    fn server_of(&self, address: &RemoteAddress) -> Option<RemoteAddress> {
        let parsed =
            address::IrcAddress::parse(address, self.options.load().fixed_server.as_deref());
        Some(RemoteAddress::new(parsed.ok()?.server))
    }

    /// New options take effect for every connection opened from now on,
    /// the user's own settings still applied over them; connections
    /// already open keep theirs. The fixed server (every address depends
    /// on it) and the ident port (bound once per process) wait for a
    /// restart.
    fn reload(&self, value: &serde_json::Value) -> Result<Vec<String>, BridgeError> {
        let mut new = IrcOptions::from_value(value).map_err(BridgeError::BadRequest)?;
        let old = self.options.load();
        let mut waiting = Vec::new();
        if new.fixed_server != old.fixed_server {
            waiting.push("fixed_server".to_owned());
            new.fixed_server.clone_from(&old.fixed_server);
        }
        if new.identd_port != old.identd_port {
            waiting.push("identd_port".to_owned());
            new.identd_port = old.identd_port;
        }
        self.options.store(Arc::new(new));
        Ok(waiting)
    }

    fn requires_registration(&self) -> bool {
        self.options.load().registration_required
    }

    fn classify(&self, local: &str) -> Result<AddressKind, BridgeError> {
        let options = self.options.load();
        let (name, server) = match local.split_once('%') {
            Some((name, server)) => (name, Some(server)),
            None => (local, options.fixed_server.as_deref()),
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

    async fn register(&self, values: FormValues) -> Result<Credentials, BridgeError> {
        let nick = values.get("nick").map(String::as_str).unwrap_or_default();
        if !valid_nick(nick) {
            return Err(BridgeError::BadRequest(format!(
                "'{nick}' is not a valid IRC nick"
            )));
        }
        Ok(Credentials::from(values))
    }

    async fn login(
        &self,
        account: &str,
        credentials: Credentials,
        events: EventSender,
    ) -> Result<Box<dyn Session>, BridgeError> {
        let (nick, nick_from_join) = match credentials.get("nick") {
            Some(nick) if valid_nick(nick) => (nick.to_owned(), false),
            Some(_) => {
                return Err(BridgeError::BadRequest(
                    "no valid nick registered".to_owned(),
                ))
            }
            // Never registered: each connection takes the nick of the join
            // that opens it, as biboumi does; this one is for the rest.
            None => (nick_for(account), true),
        };
        if let Some(port) = self.options.load().identd_port {
            // Here rather than at start-up, where there may be no runtime
            // yet (checking a configuration); once per process.
            identd::start(port);
        }
        let identity = Identity {
            nick,
            password: credentials.get("password").map(str::to_owned),
            ident: identd::enabled().then(|| identd::ident_of(account)),
            names: self
                .options
                .load()
                .realname_from_jid
                .then(|| (username_for(account), account.to_owned())),
            home: jid_parts(account).1.to_owned(),
        };
        Ok(Box::new(IrcSession::new(
            self.options.clone(),
            identity,
            nick_from_join,
            events,
        )))
    }
}

/// A bare JID's local part and domain. Without an `@`, the whole string
/// serves as either, since a nick and a host are made from them.
fn jid_parts(account: &str) -> (&str, &str) {
    account.split_once('@').unwrap_or((account, account))
}

/// A username made from a JID's local part (`realname_from_jid`): the
/// characters servers take in one, at most 10 of them.
fn username_for(account: &str) -> String {
    let (local, _) = jid_parts(account);
    let name: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(10)
        .collect();
    if name.is_empty() {
        "estuary".to_owned()
    } else {
        name
    }
}

/// A valid IRC nick made from a JID's local part (`dave.smith@example.org`
/// becomes `dave_smith`), for a user who never chose one.
pub fn nick_for(account: &str) -> String {
    let (local, _) = jid_parts(account);
    let mut nick: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || nick_special(c) || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    if !nick.starts_with(|c: char| c.is_ascii_alphabetic() || nick_special(c)) {
        nick.insert(0, '_');
    }
    nick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_takes_new_options_but_the_fixed_server_and_ident_port() {
        let irc = IrcNetwork::from_options(&serde_json::json!({
            "fixed_server": "irc.example.org",
            "realname_customization": true,
        }))
        .unwrap();
        let waiting = irc
            .reload(&serde_json::json!({
                "fixed_server": "elsewhere.example.org",
                "identd_port": 1113,
                "realname_customization": false,
                "servers": { "irc.example.org": { "port": 6670 } },
            }))
            .unwrap();
        assert_eq!(waiting, ["fixed_server", "identd_port"]);
        let now = irc.options.load();
        assert_eq!(now.fixed_server.as_deref(), Some("irc.example.org"));
        assert_eq!(now.identd_port, None);
        assert!(!now.realname_customization);
        assert_eq!(now.server("irc.example.org").port, 6670);
        // What does not read is refused, and the options stay.
        assert!(irc.reload(&serde_json::json!({ "no_such": 1 })).is_err());
        assert_eq!(irc.options.load().server("irc.example.org").port, 6670);
    }

    #[test]
    fn biboumi_addresses() {
        let irc = IrcNetwork::default();
        assert_eq!(irc.classify("#chan%irc.libera.chat"), Ok(AddressKind::Room));
        assert_eq!(irc.classify("nick%irc.libera.chat"), Ok(AddressKind::User));
        assert_eq!(irc.classify("irc.libera.chat"), Ok(AddressKind::Server));
        let fixed = IrcNetwork::fixed("irc.libera.chat");
        assert_eq!(fixed.classify("#chan"), Ok(AddressKind::Room));
        assert_eq!(fixed.classify("nick"), Ok(AddressKind::User));
    }

    #[test]
    fn usernames_from_jids() {
        assert_eq!(username_for("dave.smith@example.org"), "dave.smith");
        assert_eq!(username_for("a very long name!@example.org"), "averylongn");
        assert_eq!(username_for("жж@example.org"), "estuary");
    }

    #[test]
    fn nicks() {
        for good in ["alice", "[bot]", "a-b_c", "x1"] {
            assert!(valid_nick(good), "{good}");
        }
        for bad in ["", "1abc", "has space", "a\r\nQUIT", "-x", "a,b", "#chan"] {
            assert!(!valid_nick(bad), "{bad}");
        }
    }

    #[test]
    fn nicks_from_jids() {
        for (account, nick) in [
            ("alice@example.org", "alice"),
            ("dave.smith@example.org", "dave_smith"),
            ("1st@example.org", "_1st"),
            ("-x@example.org", "_-x"),
            ("élodie@example.org", "_lodie"),
            ("example.org", "example_org"),
        ] {
            assert_eq!(nick_for(account), nick, "{account}");
            assert!(valid_nick(nick), "{nick}");
        }
        assert_eq!(nick_for(&format!("{}@x", "a".repeat(100))).len(), 30);
    }
}
