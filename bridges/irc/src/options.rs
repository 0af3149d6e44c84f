//! The IRC gateway's `[gateway.options]`.

use std::collections::BTreeMap;
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
    pub port: u16,
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
