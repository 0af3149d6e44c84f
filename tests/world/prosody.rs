//! A throw-away Prosody server: one `localhost` virtual host plus any
//! number of external components, plain-text auth, no TLS, no s2s.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{free_port, has_exited, log_tail, port_open, terminate, wait_until};

/// How long Prosody gets to open its ports.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERM'd Prosody gets before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The only virtual host; user JIDs are `user@localhost`.
const DOMAIN: &str = "localhost";

/// A running Prosody. Killed (and reaped) on drop.
pub struct Prosody {
    child: Option<Child>,
    c2s_port: u16,
    component_port: u16,
    has_components: bool,
    config_path: PathBuf,
    // Last so the directory outlives the process during drop.
    dir: TempDir,
}

impl Prosody {
    /// Starts Prosody with an external component for each
    /// `(domain, secret)` pair and waits until its c2s and component
    /// ports accept connections.
    pub fn start(components: &[(&str, &str)]) -> Prosody {
        Self::start_with(components, "")
    }

    /// Like [`Prosody::start`], with `extra` Lua appended to the global
    /// section of the config (e.g. more `modules_enabled`, timeouts).
    pub fn start_with(components: &[(&str, &str)], extra: &str) -> Prosody {
        Self::start_config(components, extra, false)
    }

    /// Like [`Prosody::start`], with every component granted the right to
    /// write users' rosters (XEP-0356, mod_privilege from prosody-modules).
    pub fn start_with_roster_privilege(components: &[(&str, &str)]) -> Prosody {
        Self::start_config(components, "", true)
    }

    fn start_config(components: &[(&str, &str)], extra: &str, roster_privilege: bool) -> Prosody {
        let dir = tempfile::Builder::new()
            .prefix("prosody-")
            .tempdir()
            .expect("create prosody tempdir");
        let c2s_port = free_port();
        let component_port = free_port();
        let config = render_config(
            dir.path(),
            c2s_port,
            component_port,
            components,
            extra,
            roster_privilege,
        );
        let config_path = dir.path().join("prosody.cfg.lua");
        fs::write(&config_path, config).expect("write prosody config");
        fs::create_dir_all(dir.path().join("data")).expect("create prosody data dir");
        fs::create_dir_all(dir.path().join("certs")).expect("create prosody certs dir");

        let mut prosody = Prosody {
            child: None,
            c2s_port,
            component_port,
            has_components: !components.is_empty(),
            config_path,
            dir,
        };
        prosody.spawn_and_wait();
        prosody
    }

    /// Port for client-to-server connections.
    pub fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    /// Port for XEP-0114 external components (only listened on when at
    /// least one component was configured).
    pub fn component_port(&self) -> u16 {
        self.component_port
    }

    /// `127.0.0.1:PORT` of the component port, ready for a component's
    /// connect call.
    pub fn component_addr(&self) -> String {
        format!("127.0.0.1:{}", self.component_port)
    }

    /// The virtual host users live on.
    pub fn domain(&self) -> &str {
        DOMAIN
    }

    /// Prosody's own (debug level) log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }

    /// Creates (or overwrites) the account `user@localhost`.
    ///
    /// Writes the internal storage file directly instead of running
    /// prosodyctl: that is instant, and Prosody reads account files on
    /// every login, so it works while the server runs.
    pub fn add_user(&self, user: &str, password: &str) {
        let accounts = self.data_path().join(encode(DOMAIN)).join("accounts");
        fs::create_dir_all(&accounts).expect("create prosody accounts dir");
        // Prosody nodepreps (lowercases) usernames before using them as keys.
        let file = accounts.join(format!("{}.dat", encode(&user.to_lowercase())));
        let body = format!(
            "return {{\n\t[\"password\"] = {};\n}};\n",
            lua_string(password)
        );
        fs::write(&file, body).expect("write prosody account file");
    }

    /// SIGKILLs Prosody, like a crash. Ports and data stay reserved for
    /// [`Prosody::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGKILL, STOP_GRACE);
        }
    }

    /// SIGTERMs Prosody and waits for a clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGTERM, STOP_GRACE);
        }
    }

    /// Starts Prosody again (stopping it first if it still runs) with the
    /// same config, data and ports, and waits for the ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    /// True while the Prosody process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| !has_exited(c))
    }

    fn data_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Output Prosody prints before its logging is set up (config errors).
    fn console_path(&self) -> PathBuf {
        self.dir.path().join("prosody.console")
    }

    /// Spawns Prosody and waits for its ports. Prosody only listens on
    /// the component port when a `Component` is configured, so without
    /// components only c2s is awaited.
    fn spawn_and_wait(&mut self) {
        let child = self.spawn();
        self.child = Some(child);
        let c2s = self.c2s_port;
        let component = self.has_components.then_some(self.component_port);
        let child = self.child.as_mut().expect("just spawned");
        let ready = wait_until(START_TIMEOUT, || {
            has_exited(child) || (port_open(c2s) && component.is_none_or(port_open))
        });
        if !ready || has_exited(child) {
            self.fail("Prosody did not open its ports");
        }
    }

    fn spawn(&self) -> Child {
        let console = File::options()
            .create(true)
            .append(true)
            .open(self.console_path())
            .expect("open prosody console log");
        Command::new(prosody_binary())
            // -F: stay in the foreground (0.12 deprecates `daemonize`).
            .arg("-F")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console log"))
            .stderr(console)
            .spawn()
            .expect("spawn prosody")
    }

    /// Kills Prosody and panics with everything it said.
    fn fail(&mut self, what: &str) -> ! {
        self.kill();
        panic!(
            "{what} (c2s {}, component {}).\n--- console ---\n{}\n--- log tail ---\n{}",
            self.c2s_port,
            self.component_port,
            log_tail(&self.console_path(), 40),
            log_tail(&self.log_path(), 40),
        );
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `prosody` executable, from PATH or the Debian location.
fn prosody_binary() -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prosody"))
            .find(|candidate| candidate.is_file())
    });
    let fallback = PathBuf::from("/usr/bin/prosody");
    match in_path {
        Some(path) => path,
        None if fallback.is_file() => fallback,
        None => panic!("prosody is not installed: run scripts/test which installs it"),
    }
}

/// The whole Prosody config file.
fn render_config(
    dir: &Path,
    c2s_port: u16,
    component_port: u16,
    components: &[(&str, &str)],
    extra: &str,
    roster_privilege: bool,
) -> String {
    let dir = dir.display();
    let (privilege_module, privileged_entities) = if roster_privilege {
        let entities: String = components
            .iter()
            .map(|(domain, _)| format!("    [{}] = {{ roster = \"both\" }};\n", lua_string(domain)))
            .collect();
        (
            r#" "privilege";"#,
            format!("privileged_entities = {{\n{entities}}}"),
        )
    } else {
        ("", String::new())
    };
    let mut config = format!(
        r#"-- Generated by the Estuary test world.
run_as_root = true
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
log = {{ debug = "{dir}/prosody.log" }}

-- TCP_NODELAY on Prosody's sockets, as config/prosody.cfg.lua recommends
-- for gateways: with Nagle's algorithm, a stanza written while the previous
-- one is unacknowledged waits for a delayed ACK (up to 40 ms).
network_settings = {{ nagle = false }}

interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
c2s_direct_tls_ports = {{}}
legacy_ssl_ports = {{}}
component_ports = {{ {component_port} }}
component_interfaces = {{ "127.0.0.1" }}
http_ports = {{}}
https_ports = {{}}

c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"

modules_enabled = {{
    "roster"; "saslauth"; "disco"; "ping"; "presence"; "offline"; "vcard";
    "version"; "posix";{privilege_module}
}}
-- No certificates and no federation in tests.
modules_disabled = {{ "s2s"; "tls" }}

{extra}

VirtualHost "{DOMAIN}"
{privileged_entities}
"#
    );
    for (domain, secret) in components {
        writeln!(
            config,
            "\nComponent {}\n    component_secret = {}",
            lua_string(domain),
            lua_string(secret)
        )
        .expect("write to String");
        if roster_privilege {
            // A component loads only the modules its own section names.
            config.push_str("    modules_enabled = { \"privilege\" }\n");
        }
    }
    config
}

/// Prosody's datamanager file-name encoding: every non-alphanumeric byte
/// becomes `%xx` (so "example.org" is stored as "example%2eorg").
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// A double-quoted Lua string literal.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // Three digits, so a following digit cannot extend the escape.
            c if c.is_ascii_control() => {
                write!(out, "\\{:03}", u32::from(c)).expect("write to String");
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
