//! The configuration file: TOML read with the `config` crate, with
//! `ESTUARY__SECTION__KEY` environment overrides, then checked as a whole so
//! that `check-config` can list every problem with its key path at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use xmpp_parsers::jid::BareJid;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub component: ComponentConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default, rename = "gateway")]
    pub gateways: Vec<GatewayConfig>,
    /// The file it was read from, read again on a reload.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// How to reach the host XMPP server; each gateway may override `server`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentConfig {
    /// `host:port` of the server's component (XEP-0114) listener.
    pub server: String,
    /// Seconds of silence before the gateway pings the server.
    pub keepalive_secs: u64,
    /// Seconds to wait for the server's answer before the link counts as dead.
    pub response_timeout_secs: u64,
    /// Consecutive failed connection attempts before giving up; 0 retries forever.
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for ComponentConfig {
    fn default() -> Self {
        ComponentConfig {
            server: "127.0.0.1:5347".to_owned(),
            keepalive_secs: 30,
            response_timeout_secs: 15,
            max_attempts: 0,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
        }
    }
}

impl ComponentConfig {
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs.max(1))
    }

    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs.max(1))
    }
}

/// Where accounts, ID maps, the archive and the outbox live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://…` or `postgres://…`; empty means `estuary.sqlite` in `data_dir`.
    pub url: String,
    pub data_dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            data_dir: PathBuf::from("data"),
        }
    }
}

impl StoreConfig {
    /// The database URL actually used.
    pub fn effective_url(&self) -> String {
        if self.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("estuary.sqlite").display()
            )
        } else {
            self.url.clone()
        }
    }
}

/// How many threads run the gateway's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads; 0 (the default) means half the cores, at least one,
    /// unless `TOKIO_WORKER_THREADS` is set.
    pub threads: usize,
}

/// More worker threads than this is a typo, not a deployment.
const MAX_THREADS: usize = 1024;

impl RuntimeConfig {
    /// The worker threads to start on a machine of `cores`, or `None` to
    /// leave the count to tokio (which reads `TOKIO_WORKER_THREADS`).
    ///
    /// Half the cores by default because a gateway shares its host with the
    /// XMPP server it is attached to, and usually with more: on two cores
    /// with Prosody, one worker used a quarter less CPU per relayed message
    /// than two (tasks handed to the other worker wake it, which costs
    /// more than the work), while Prosody, single-threaded, spends three
    /// times Estuary's CPU per message and bounds the rate either way.
    pub fn worker_threads(&self, cores: usize, tokio_env_set: bool) -> Option<usize> {
        if self.threads > 0 {
            Some(self.threads)
        } else if tokio_env_set {
            None
        } else {
            Some((cores / 2).max(1))
        }
    }
}

/// One gateway domain attached to the server as a component.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub domain: String,
    pub secret: String,
    /// Which network: `irc`, `matrix`, `discord` (tests add their own).
    pub kind: String,
    /// Overrides `[component] server` for this gateway.
    #[serde(default)]
    pub server: Option<String>,
    /// The host server's domain; defaults to the gateway domain minus its first label.
    #[serde(default)]
    pub host_domain: Option<String>,
    /// JIDs and domains allowed to use the gateway; defaults to the host domain.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Bare JIDs with administrative rights on this gateway.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Every user's rooms are persistent until the user says otherwise
    /// (the `persistent` of `configure` on the gateway's JID defaults to
    /// on): biboumi's `persistent_by_default`.
    #[serde(default)]
    pub persistent_by_default: bool,
    /// Options for the bridge, passed to it as they are.
    #[serde(default)]
    pub options: serde_json::Value,
}

impl GatewayConfig {
    pub fn host_domain(&self) -> String {
        match &self.host_domain {
            Some(host) => host.clone(),
            None => self
                .domain
                .split_once('.')
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or_else(|| self.domain.clone()),
        }
    }

    /// The allow-list with its default applied.
    pub fn allowed_entries(&self) -> Vec<String> {
        if self.allowed.is_empty() {
            vec![self.host_domain()]
        } else {
            self.allowed.clone()
        }
    }
}

/// One thing wrong with a configuration, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: config::ConfigError,
    },
    #[error("invalid configuration:\n{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Read a file, apply environment overrides, and check it.
    pub fn load(path: &Path, known_kinds: &[&str]) -> Result<Config, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("ESTUARY")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()
            .map_err(read_error)?;
        let mut config: Config = raw.try_deserialize().map_err(read_error)?;
        config.source = Some(path.to_owned());
        let problems = config.problems(known_kinds);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Everything wrong with this configuration; empty when it is usable.
    pub fn problems(&self, known_kinds: &[&str]) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| problems.push(Problem { key, message });
        if self.gateways.is_empty() {
            problem(
                "gateway".into(),
                "no [[gateway]] is configured, so there is nothing to run".into(),
            );
        }
        if !self.component.server.contains(':') {
            problem(
                "component.server".into(),
                format!("'{}' is not host:port", self.component.server),
            );
        }
        if self.runtime.threads > MAX_THREADS {
            problem(
                "runtime.threads".into(),
                format!("{} is more than {MAX_THREADS}", self.runtime.threads),
            );
        }
        let url = self.store.effective_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:")) {
            problem(
                "store.url".into(),
                "must start with sqlite: or postgres:".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, gw) in self.gateways.iter().enumerate() {
            let key = |field: &str| format!("gateway[{i}].{field}");
            if gw.domain.parse::<BareJid>().map(|j| j.node().is_some()) != Ok(false) {
                problem(
                    key("domain"),
                    format!("'{}' is not a domain name", gw.domain),
                );
            } else if !seen.insert(gw.domain.to_lowercase()) {
                problem(
                    key("domain"),
                    format!("'{}' is configured twice", gw.domain),
                );
            }
            if gw.secret.is_empty() {
                problem(key("secret"), "must not be empty".into());
            }
            if !known_kinds.contains(&gw.kind.as_str()) {
                problem(
                    key("kind"),
                    format!(
                        "unknown bridge '{}'; expected one of: {}",
                        gw.kind,
                        known_kinds.join(", ")
                    ),
                );
            }
            if let Some(server) = &gw.server {
                if !server.contains(':') {
                    problem(key("server"), format!("'{server}' is not host:port"));
                }
            }
            for (j, entry) in gw.allowed.iter().enumerate() {
                if entry.parse::<BareJid>().is_err() {
                    problem(
                        format!("gateway[{i}].allowed[{j}]"),
                        format!("'{entry}' is neither a bare JID nor a domain"),
                    );
                }
            }
            for (j, admin) in gw.admins.iter().enumerate() {
                if admin.parse::<BareJid>().map(|j| j.node().is_some()) != Ok(true) {
                    problem(
                        format!("gateway[{i}].admins[{j}]"),
                        format!("'{admin}' is not a bare JID like user@example.org"),
                    );
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("estuary.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(&path, &["irc", "matrix"])
    }

    #[test]
    fn reads_gateways_and_defaults() {
        let config = parse(
            r#"
            [[gateway]]
            domain = "irc.example.org"
            secret = "s3cret"
            kind = "irc"
            options = { fixed_server = "irc.libera.chat" }
            "#,
        )
        .unwrap();
        let gw = &config.gateways[0];
        assert_eq!(gw.host_domain(), "example.org");
        assert_eq!(gw.allowed_entries(), vec!["example.org".to_owned()]);
        assert_eq!(gw.options["fixed_server"], "irc.libera.chat");
        assert_eq!(config.component.server, "127.0.0.1:5347");
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let Err(ConfigError::Invalid(problems)) = parse(
            r#"
            [[gateway]]
            domain = "user@bad"
            secret = ""
            kind = "telegram"
            allowed = ["alice@example.org/phone"]
            admins = ["example.org"]
            "#,
        ) else {
            panic!("expected problems");
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gateway[0].domain",
                "gateway[0].secret",
                "gateway[0].kind",
                "gateway[0].allowed[0]",
                "gateway[0].admins[0]"
            ]
        );
    }

    #[test]
    fn worker_threads_default_to_half_the_cores() {
        let config =
            parse("[[gateway]]\ndomain = \"irc.example.org\"\nsecret = \"s\"\nkind = \"irc\"\n")
                .unwrap();
        let runtime = &config.runtime;
        assert_eq!(runtime.worker_threads(1, false), Some(1));
        assert_eq!(runtime.worker_threads(2, false), Some(1));
        assert_eq!(runtime.worker_threads(8, false), Some(4));
        // TOKIO_WORKER_THREADS is left to tokio.
        assert_eq!(runtime.worker_threads(8, true), None);
    }

    #[test]
    fn worker_threads_can_be_set() {
        let config = parse(
            "[runtime]\nthreads = 3\n\n\
             [[gateway]]\ndomain = \"irc.example.org\"\nsecret = \"s\"\nkind = \"irc\"\n",
        )
        .unwrap();
        assert_eq!(config.runtime.worker_threads(2, false), Some(3));
        assert_eq!(config.runtime.worker_threads(2, true), Some(3));
        let Err(ConfigError::Invalid(problems)) = parse(
            "[runtime]\nthreads = 5000\n\n\
             [[gateway]]\ndomain = \"irc.example.org\"\nsecret = \"s\"\nkind = \"irc\"\n",
        ) else {
            panic!("expected a problem");
        };
        assert_eq!(problems[0].key, "runtime.threads");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("[component]\nservr = \"x:1\"\n").unwrap_err();
        assert!(err.to_string().contains("servr"), "{err}");
    }
}
