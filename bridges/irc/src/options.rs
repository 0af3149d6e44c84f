//! The IRC gateway's `[gateway.options]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The gateway's IRC options, shared by the network and every session,
/// which read them afresh for each connection: a reload swaps them
/// ([`estuary_bridge::Network::reload`]).
pub type SharedOptions = std::sync::Arc<arc_swap::ArcSwap<IrcOptions>>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrcOptions {
    /// The one IRC server of this gateway: JIDs then drop the `%server` part.
    #[serde(default)]
    pub fixed_server: Option<String>,
    /// Per-server settings, by the server name used in JIDs.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerOptions>,
    /// Refuse users who have not registered. Off by default, as in biboumi:
    /// anyone allowed may join a channel, under the nick of the join.
    #[serde(default)]
    pub registration_required: bool,
    /// Answer ident queries (RFC 1413) on this port, as biboumi does on 113
    /// (which needs privileges): IRC servers then see each user under an
    /// ident of their own. Off without it.
    #[serde(default)]
    pub identd_port: Option<u16>,
    /// Let users reach private addresses (loopback, RFC 1918, link-local,
    /// unique local) through servers the admin did not configure, or at
    /// ports the admin did not set. Off: a user's server name or port never
    /// makes the gateway connect inside its own network.
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// Let users set their own username and real name (biboumi's
    /// `realname_customization`, on by default).
    #[serde(default = "yes")]
    pub realname_customization: bool,
    /// Without a username and real name of the user's or the admin's, take
    /// them from the user's JID (the local part and the bare JID), as
    /// biboumi's `realname_from_jid` does; otherwise both are the nick.
    #[serde(default)]
    pub realname_from_jid: bool,
}

fn yes() -> bool {
    true
}

impl Default for IrcOptions {
    fn default() -> Self {
        IrcOptions {
            fixed_server: None,
            servers: BTreeMap::new(),
            registration_required: false,
            identd_port: None,
            allow_private_addresses: false,
            realname_customization: true,
            realname_from_jid: false,
        }
    }
}

/// How to reach and treat one IRC server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerOptions {
    /// Host to connect to; defaults to the server name itself.
    pub address: Option<String>,
    /// The plaintext port, tried after every TLS port; 0 for none, so that
    /// unreachable TLS ports never lead to plaintext.
    pub port: u16,
    /// TLS ports, tried first and in order. One that refuses the connection
    /// or does not answer passes to the next, then to `port`; a TLS failure
    /// (a refused certificate) never falls back to plaintext.
    pub tls_ports: Vec<u16>,
    /// Check the server's certificate against the trusted roots and its name.
    /// Off, any certificate is taken (the handshake signatures are still checked).
    pub verify_certificates: bool,
    /// Extra trusted roots (PEM), besides the system's: a private CA, or a
    /// self-signed server certificate.
    pub ca_file: Option<PathBuf>,
    /// The one certificate to take (its SHA-256 or SHA-1, in hex, colons
    /// allowed), whatever signed it: biboumi's "fingerprint of the TLS
    /// certificate to trust", for a self-signed server.
    pub tls_fingerprint: Option<String>,
    /// Lines a client may send at once before the rate applies.
    pub throttle_burst: u32,
    /// Lines per second after the burst.
    pub throttle_per_sec: f64,
    pub username: Option<String>,
    pub realname: Option<String>,
    /// Encoding of lines that are not valid UTF-8 (a WHATWG label); default windows-1252.
    pub encoding: Option<String>,
    /// Seconds of silence before the connection is checked with a PING.
    pub ping_interval_secs: u64,
    /// The server password (PASS), for servers that require one. Never logged.
    pub server_password: Option<String>,
    /// The password of this gateway's WEBIRC block on the server (IRCv3
    /// WebIRC, biboumi's `webirc_password`): each user is then shown on IRC
    /// as coming from their XMPP server's host and address, not the
    /// gateway's. Never logged.
    pub webirc_password: Option<String>,
    /// Raw commands sent once registered, e.g. `MODE {nick} +x`.
    pub after_connect: Vec<String>,
    /// The local address connections come from (biboumi's `outgoing_bind`),
    /// on a host with several; the system's choice without it.
    pub outgoing_bind: Option<std::net::IpAddr>,
    /// The ports at which this server may be reached on a private address:
    /// those the admin configured for it, and none for a server the admin
    /// did not configure (or every port, with `allow_private_addresses`).
    /// Not read from the file: set from it.
    #[serde(skip)]
    pub private_reach: PrivateReach,
    /// Where the server has no SASL (or SASL failed), identify a user's
    /// password to NickServ (`PRIVMSG NickServ :IDENTIFY nick password`).
    /// Off for a network whose services are not named NickServ, or where
    /// that nick is not reserved for them.
    pub nickserv_identify: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            address: None,
            port: 6667,
            tls_ports: Vec::new(),
            verify_certificates: true,
            ca_file: None,
            tls_fingerprint: None,
            throttle_burst: 10,
            throttle_per_sec: 2.0,
            username: None,
            realname: None,
            encoding: None,
            ping_interval_secs: 60,
            server_password: None,
            webirc_password: None,
            after_connect: Vec::new(),
            outgoing_bind: None,
            private_reach: PrivateReach::Ports(Vec::new()),
            nickserv_identify: true,
        }
    }
}

impl ServerOptions {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs.max(5))
    }
}

impl IrcOptions {
    pub fn from_value(value: &serde_json::Value) -> Result<IrcOptions, String> {
        if value.is_null() {
            return Ok(IrcOptions::default());
        }
        let options: IrcOptions = serde_json::from_value(value.clone())
            .map_err(|e| format!("invalid IRC options: {e}"))?;
        for (name, server) in &options.servers {
            if let Some(pin) = &server.tls_fingerprint {
                crate::tls::Fingerprint::parse(pin)
                    .map_err(|e| format!("servers.{name}.tls_fingerprint: {e}"))?;
            }
        }
        Ok(options)
    }

    /// Settings for a server, defaults when it is not configured.
    pub fn server(&self, name: &str) -> ServerOptions {
        let mut options = self.servers.get(name).cloned().unwrap_or_default();
        options.private_reach = if self.allow_private_addresses {
            PrivateReach::Any
        } else if self.servers.contains_key(name) {
            let mut ports = options.tls_ports.clone();
            ports.push(options.port);
            PrivateReach::Ports(ports)
        } else {
            PrivateReach::Ports(Vec::new())
        };
        options
    }
}

/// Where on a private network a connection may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateReach {
    Any,
    /// These ports only.
    Ports(Vec<u16>),
}

impl Default for PrivateReach {
    fn default() -> Self {
        PrivateReach::Ports(Vec::new())
    }
}

impl PrivateReach {
    /// Whether a connection may go to `addr`.
    pub fn allows(&self, addr: &std::net::SocketAddr) -> bool {
        match self {
            PrivateReach::Any => true,
            PrivateReach::Ports(ports) => !is_private(addr.ip()) || ports.contains(&addr.port()),
        }
    }
}

/// An address inside a network rather than on the Internet: loopback,
/// RFC 1918, shared (RFC 6598), link-local, unique local, unspecified.
fn is_private(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_parse_with_safe_defaults() {
        let options = IrcOptions::from_value(&serde_json::json!({
            "servers": {
                "plain": { "port": 6668 },
                "tls": {
                    "tls_ports": [6697, 7000],
                    "verify_certificates": false,
                    "ca_file": "/etc/estuary/irc-ca.pem"
                }
            }
        }))
        .unwrap();
        let plain = options.server("plain");
        assert_eq!(plain.port, 6668);
        assert!(plain.tls_ports.is_empty());
        assert!(
            plain.verify_certificates,
            "verification is on unless turned off"
        );
        assert_eq!(plain.ca_file, None);
        let tls = options.server("tls");
        assert_eq!(tls.tls_ports, [6697, 7000]);
        assert_eq!(tls.port, 6667);
        assert!(!tls.verify_certificates);
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/estuary/irc-ca.pem"))
        );
        assert!(options.server("unlisted").verify_certificates);
        // Private addresses: at the admin's ports of a configured server only.
        let local = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let public = std::net::SocketAddr::from(([192, 0, 2, 1], 6667));
        let listed = options.server("tls");
        assert!(listed.private_reach.allows(&local(listed.port)));
        assert!(!listed.private_reach.allows(&local(6379)));
        let unlisted = options.server("unlisted");
        assert!(!unlisted.private_reach.allows(&local(6667)));
        assert!(unlisted.private_reach.allows(&public));
        for private in [
            "10.1.2.3",
            "192.168.0.1",
            "169.254.0.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let addr = std::net::SocketAddr::new(private.parse().unwrap(), 6667);
            assert!(!unlisted.private_reach.allows(&addr), "{private}");
        }
        let open = IrcOptions {
            allow_private_addresses: true,
            ..options.clone()
        };
        assert!(open.server("unlisted").private_reach.allows(&local(6379)));
    }

    #[test]
    fn a_misspelt_tls_key_is_refused() {
        let err = IrcOptions::from_value(&serde_json::json!({
            "servers": { "s": { "tls_port": [6697] } }
        }))
        .unwrap_err();
        assert!(err.contains("tls_port"), "{err}");
        let err = IrcOptions::from_value(&serde_json::json!({
            "servers": { "s": { "tls_ports": 6697 } }
        }))
        .unwrap_err();
        assert!(err.contains("invalid IRC options"), "{err}");
    }
}

/// The fields a user may set for themself per server (the `configure`
/// command on `server@gw`, as in biboumi); without `names`, the username
/// and real name are the admin's to set. The admin's `ca_file` stays out of
/// reach, and a user's own `address` never reaches a private address
/// (see [`UserServerSettings::apply`]).
pub fn user_fields(names: bool) -> Vec<estuary_bridge::RegistrationField> {
    use estuary_bridge::{FieldKind, RegistrationField};
    let boolean = |var, label| RegistrationField {
        var,
        label,
        kind: FieldKind::Boolean,
        required: false,
        max_len: 8,
    };
    let mut fields = vec![
        RegistrationField {
            var: "address",
            label: "Address to connect to, if not the server's name (as biboumi's alias \
                    of a network: libera@gw with irc.libera.chat)",
            kind: FieldKind::Text,
            required: false,
            max_len: 255,
        },
        RegistrationField::text("nick", "Nickname on this server", false),
        RegistrationField::text("username", "Username", false),
        RegistrationField::text("realname", "Real name", false),
        RegistrationField::secret("password", "SASL or NickServ password", false),
        RegistrationField::secret("server_password", "Server password (PASS)", false),
        RegistrationField::text("port", "Plaintext port (0 for none)", false),
        RegistrationField::text(
            "tls_ports",
            "TLS ports, tried first (e.g. 6697, 7000)",
            false,
        ),
        boolean("verify_certificates", "Verify the server's TLS certificate"),
        RegistrationField::text(
            "tls_fingerprint",
            "Take only the TLS certificate with this SHA-256 (or SHA-1) fingerprint",
            false,
        ),
        RegistrationField::text(
            "throttle_burst",
            "Lines sent at once before throttling",
            false,
        ),
        RegistrationField::text("throttle_per_sec", "Lines per second after that", false),
        RegistrationField::text(
            "encoding",
            "Encoding of non-UTF-8 lines (e.g. iso-8859-15)",
            false,
        ),
        RegistrationField {
            var: "after_connect",
            label: "Raw commands sent once connected, one per line",
            kind: FieldKind::Lines,
            required: false,
            max_len: 2048,
        },
    ];
    if !names {
        fields.retain(|f| !NAMES.contains(&f.var));
    }
    fields
}

/// The field of a channel's own encoding.
pub const CHANNEL_ENCODING: &str = "encoding";

/// The fields a user may set per channel (the `configure` command on the
/// channel's JID, beside the gateway's own room settings): biboumi's "In
/// encoding". Its "Out encoding" biboumi ignored, and so does Estuary: it
/// always sends UTF-8.
pub fn channel_fields() -> Vec<estuary_bridge::RegistrationField> {
    vec![estuary_bridge::RegistrationField::text(
        CHANNEL_ENCODING,
        "Encoding of this channel's non-UTF-8 lines (empty: the server's)",
        false,
    )]
}

/// The fields `realname_customization = false` keeps from users.
pub const NAMES: [&str; 2] = ["username", "realname"];

/// A user's own settings of one server, read from the `configure` form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserServerSettings {
    pub nick: Option<String>,
    pub password: Option<String>,
    values: BTreeMap<String, String>,
}

impl UserServerSettings {
    /// Read and check the values; every error names its field.
    pub fn parse(values: &BTreeMap<String, String>) -> Result<UserServerSettings, String> {
        let mut probe = ServerOptions::default();
        let settings = UserServerSettings {
            nick: values.get("nick").cloned(),
            password: values.get("password").cloned(),
            values: values.clone(),
        };
        settings.apply(&mut probe)?;
        if let Some(nick) = &settings.nick {
            if !crate::valid_nick(nick) {
                return Err(format!("nick: '{nick}' is not a valid IRC nick"));
            }
        }
        Ok(settings)
    }

    /// The admin's options for the server with this user's settings on top.
    pub fn apply(&self, options: &mut ServerOptions) -> Result<(), String> {
        fn number<T: std::str::FromStr>(var: &str, v: &str) -> Result<T, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("{var}: '{v}' is not a valid number"))
        }
        for (var, v) in &self.values {
            match var.as_str() {
                "address" if v.trim().is_empty() => {}
                "address" => {
                    let host = v.trim().trim_start_matches('[').trim_end_matches(']');
                    if !host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c))
                    {
                        return Err(format!("{var}: '{v}' is not a host name or an IP address"));
                    }
                    options.address = Some(host.to_owned());
                    // The admin's ports on a private network were for the
                    // admin's address; a user's reaches none, or the
                    // gateway's own network would be theirs to probe.
                    if let PrivateReach::Ports(ports) = &mut options.private_reach {
                        ports.clear();
                    }
                }
                "username" => options.username = Some(v.clone()),
                "realname" => options.realname = Some(v.clone()),
                "server_password" => options.server_password = Some(v.clone()),
                "port" => options.port = number(var, v)?,
                "tls_ports" => {
                    options.tls_ports = v
                        .split([',', ' '])
                        .filter(|p| !p.is_empty())
                        .map(|p| number(var, p))
                        .collect::<Result<_, _>>()?;
                }
                "verify_certificates" => {
                    options.verify_certificates = match v.as_str() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(format!("{var}: '{v}' is not a boolean")),
                    }
                }
                "tls_fingerprint" if v.trim().is_empty() => options.tls_fingerprint = None,
                "tls_fingerprint" => {
                    crate::tls::Fingerprint::parse(v).map_err(|e| format!("{var}: {e}"))?;
                    options.tls_fingerprint = Some(v.clone());
                }
                "throttle_burst" => options.throttle_burst = number(var, v)?,
                "throttle_per_sec" => {
                    let rate: f64 = number(var, v)?;
                    if !(rate > 0.0 && rate.is_finite()) {
                        return Err(format!("{var}: must be more than 0"));
                    }
                    options.throttle_per_sec = rate;
                }
                "encoding" => {
                    if crate::text::encoding_for_label(v).is_none() {
                        return Err(format!("{var}: unknown encoding '{v}'"));
                    }
                    options.encoding = Some(v.clone());
                }
                "after_connect" => options.after_connect.extend(
                    v.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned),
                ),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod user_settings_tests {
    use super::*;

    /// biboumi's alias of a network: `libera@gw` connecting to
    /// irc.libera.chat. Never a way into the gateway's own network: the
    /// admin's private ports were for the admin's address.
    #[test]
    fn a_users_address_reaches_no_private_network() {
        let admin = IrcOptions::from_value(&serde_json::json!({
            "servers": { "internal": { "address": "10.0.0.5", "port": 6667 } }
        }))
        .unwrap();
        let aliased =
            UserServerSettings::parse(&values(&[("address", " irc.libera.chat ")])).unwrap();
        let mut options = admin.server("libera");
        aliased.apply(&mut options).unwrap();
        assert_eq!(options.address.as_deref(), Some("irc.libera.chat"));
        let public = std::net::SocketAddr::from(([192, 0, 2, 1], 6667));
        assert!(options.private_reach.allows(&public));

        let inside = UserServerSettings::parse(&values(&[("address", "10.0.0.9")])).unwrap();
        let mut options = admin.server("internal");
        let admins_port = std::net::SocketAddr::from(([10, 0, 0, 9], 6667));
        assert!(options.private_reach.allows(&admins_port));
        inside.apply(&mut options).unwrap();
        assert!(!options.private_reach.allows(&admins_port));
        // Unless the admin lets every user reach private addresses.
        let open = IrcOptions {
            allow_private_addresses: true,
            ..admin.clone()
        };
        let mut options = open.server("internal");
        inside.apply(&mut options).unwrap();
        assert!(options.private_reach.allows(&admins_port));

        let bracketed = UserServerSettings::parse(&values(&[("address", "[::1]")])).unwrap();
        let mut options = admin.server("v6");
        bracketed.apply(&mut options).unwrap();
        assert_eq!(options.address.as_deref(), Some("::1"));
        for bad in ["irc.example.net 6667", "a\rb", "host/path", "x@y"] {
            let err = UserServerSettings::parse(&values(&[("address", bad)])).unwrap_err();
            assert!(err.starts_with("address:"), "{bad}: {err}");
        }
        // Empty is unset: the server's own name.
        let unset = UserServerSettings::parse(&values(&[("address", "")])).unwrap();
        let mut options = admin.server("libera");
        unset.apply(&mut options).unwrap();
        assert_eq!(options.address, None);
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn user_settings_override_the_admins_and_bad_values_are_named() {
        let s = UserServerSettings::parse(&values(&[
            ("realname", "Alice"),
            ("tls_ports", "6697, 7000"),
            ("verify_certificates", "0"),
            ("after_connect", "MODE {nick} +x"),
        ]))
        .unwrap();
        let mut options = ServerOptions::default();
        s.apply(&mut options).unwrap();
        assert_eq!(options.realname.as_deref(), Some("Alice"));
        assert_eq!(options.tls_ports, vec![6697, 7000]);
        assert!(!options.verify_certificates);
        assert_eq!(options.after_connect, vec!["MODE {nick} +x".to_owned()]);
        let several = UserServerSettings::parse(&values(&[("after_connect", "A\nB")])).unwrap();
        let mut options = ServerOptions::default();
        several.apply(&mut options).unwrap();
        assert_eq!(options.after_connect, vec!["A".to_owned(), "B".to_owned()]);
        let err = UserServerSettings::parse(&values(&[("port", "many")])).unwrap_err();
        assert!(err.starts_with("port:"), "{err}");
        let err = UserServerSettings::parse(&values(&[("nick", "#bad")])).unwrap_err();
        assert!(err.starts_with("nick:"), "{err}");
        assert!(UserServerSettings::parse(&values(&[("encoding", "klingon")])).is_err());
        let err = UserServerSettings::parse(&values(&[("tls_fingerprint", "ab:cd")])).unwrap_err();
        assert!(err.starts_with("tls_fingerprint:"), "{err}");
        let pin = "AB:".repeat(31) + "AB";
        let s = UserServerSettings::parse(&values(&[("tls_fingerprint", &pin)])).unwrap();
        let mut options = ServerOptions::default();
        s.apply(&mut options).unwrap();
        assert_eq!(options.tls_fingerprint.as_deref(), Some(pin.as_str()));
        let err = IrcOptions::from_value(&serde_json::json!({
            "servers": { "s": { "tls_fingerprint": "zz" } }
        }))
        .unwrap_err();
        assert!(err.contains("servers.s.tls_fingerprint"), "{err}");
    }
}
