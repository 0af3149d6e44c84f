//! The IRC gateway's `[gateway.options]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrcOptions {
    /// The one IRC server of this gateway: JIDs then drop the `%server` part.
    #[serde(default)]
    pub fixed_server: Option<String>,
    /// Per-server settings, by the server name used in JIDs.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerOptions>,
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
    /// Raw commands sent once registered, e.g. `MODE {nick} +x`.
    pub after_connect: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            address: None,
            port: 6667,
            tls_ports: Vec::new(),
            verify_certificates: true,
            ca_file: None,
            throttle_burst: 10,
            throttle_per_sec: 2.0,
            username: None,
            realname: None,
            encoding: None,
            ping_interval_secs: 60,
            server_password: None,
            after_connect: Vec::new(),
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
        serde_json::from_value(value.clone()).map_err(|e| format!("invalid IRC options: {e}"))
    }

    /// Settings for a server, defaults when it is not configured.
    pub fn server(&self, name: &str) -> ServerOptions {
        self.servers.get(name).cloned().unwrap_or_default()
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
