//! A throw-away Synapse homeserver: SQLite, one client listener on
//! 127.0.0.1, no federation listener, no key servers, rate limits raised.
//!
//! Synapse comes from PyPI in a venv: `$ESTUARY_SYNAPSE_VENV`, else
//! `.cache/synapse` in the work tree (created with pip when missing).
//! Users are registered through the shared-secret admin API.
//!
//! Start-up costs a few seconds of Python imports, so a test binary shares
//! one Synapse ([`Synapse::shared`]) and gives each test its own users and
//! rooms. Tests that stop or restart the homeserver start their own.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

use super::{free_port, has_exited, log_tail, terminate, wait_until};

/// How long Synapse gets to answer `/_matrix/client/versions`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd Synapse gets before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The homeserver's name: user IDs are `@name:localhost`.
pub const SERVER_NAME: &str = "localhost";
/// The shared secret for `/_synapse/admin/v1/register`.
const SHARED_SECRET: &str = "estuary-test-registration-secret";

/// A running Synapse. Killed (and reaped) on drop.
pub struct Synapse {
    child: Mutex<Option<Child>>,
    port: u16,
    config_path: PathBuf,
    python: PathBuf,
    // Last so the directory outlives the process during drop.
    dir: TempDir,
}

/// Makes user names unique across the tests of one binary.
static NEXT_USER: AtomicU64 = AtomicU64::new(1);

impl Synapse {
    /// Starts a Synapse of its own and waits until its client API answers.
    pub fn start() -> Synapse {
        Synapse::start_in("synapse-")
    }

    fn start_in(prefix: &str) -> Synapse {
        let python = venv_python();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create synapse tempdir");
        let port = free_port();
        write_config(dir.path(), port);
        let synapse = Synapse {
            child: Mutex::new(None),
            port,
            config_path: dir.path().join("homeserver.yaml"),
            python,
            dir,
        };
        synapse.spawn_and_wait();
        synapse
    }

    /// One Synapse for the whole test binary, started on first use.
    ///
    /// Statics are never dropped, so the process is started from a thread
    /// that lives as long as the test binary and is marked with
    /// `PR_SET_DEATHSIG`: it dies with the binary, never left behind.
    pub fn shared() -> &'static Synapse {
        static SHARED: OnceLock<Synapse> = OnceLock::new();
        SHARED.get_or_init(|| {
            remove_stale_shared_dirs();
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("synapse-owner".into())
                .spawn(move || {
                    let prefix = format!("{SHARED_PREFIX}{}-", std::process::id());
                    tx.send(Synapse::start_in(&prefix))
                        .expect("test thread waits");
                    // The death signal is tied to this thread: it must not end.
                    loop {
                        std::thread::park();
                    }
                })
                .expect("spawn synapse owner thread");
            rx.recv().expect("synapse started")
        })
    }

    /// `http://127.0.0.1:PORT`, the homeserver URL clients use.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server_name(&self) -> &str {
        SERVER_NAME
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("homeserver.log")
    }

    /// A user name no other test of this binary uses: `{prefix}{n}{pid}`.
    pub fn unique_user(prefix: &str) -> String {
        let n = NEXT_USER.fetch_add(1, Ordering::SeqCst);
        format!("{prefix}{n}x{}", std::process::id())
    }

    /// Registers `@user:localhost` with `password` through the shared-secret
    /// admin API and returns its access token.
    pub async fn register(&self, user: &str, password: &str) -> String {
        let http = reqwest::Client::new();
        let url = format!("{}/_synapse/admin/v1/register", self.url());
        let nonce: serde_json::Value = http
            .get(&url)
            .send()
            .await
            .expect("GET register nonce")
            .json()
            .await
            .expect("nonce json");
        let nonce = nonce["nonce"].as_str().expect("nonce").to_owned();
        let mac = registration_mac(&self.python, &nonce, user, password);
        let reply = http
            .post(&url)
            .json(&serde_json::json!({
                "nonce": nonce,
                "username": user,
                "password": password,
                "admin": false,
                "mac": mac,
            }))
            .send()
            .await
            .expect("POST register");
        let status = reply.status();
        let body: serde_json::Value = reply.json().await.expect("register json");
        assert!(status.is_success(), "registering {user} failed: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// SIGTERMs Synapse and waits for it to exit. The port and data stay for
    /// [`Synapse::restart`].
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().expect("not poisoned").take() {
            terminate(&mut child, libc::SIGTERM, STOP_GRACE);
        }
    }

    /// Starts Synapse again with the same config, data and port.
    pub fn restart(&self) {
        self.stop();
        self.spawn_and_wait();
    }

    fn console_path(&self) -> PathBuf {
        self.dir.path().join("homeserver.console")
    }

    fn spawn_and_wait(&self) {
        let console = File::options()
            .create(true)
            .append(true)
            .open(self.console_path())
            .expect("open synapse console log");
        let mut command = Command::new(&self.python);
        command
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console log"))
            .stderr(console);
        set_death_signal(&mut command);
        let child = command.spawn().expect("spawn synapse");
        let mut guard = self.child.lock().expect("not poisoned");
        *guard = Some(child);
        let child = guard.as_mut().expect("just spawned");
        let url = format!("127.0.0.1:{}", self.port);
        let ready = wait_until(START_TIMEOUT, || has_exited(child) || versions_answer(&url));
        if !ready || has_exited(child) {
            if let Some(mut child) = guard.take() {
                terminate(&mut child, libc::SIGKILL, STOP_GRACE);
            }
            panic!(
                "Synapse did not start on port {}.\n--- console ---\n{}\n--- log tail ---\n{}",
                self.port,
                log_tail(&self.console_path(), 40),
                log_tail(&self.log_path(), 40),
            );
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            terminate(&mut child, libc::SIGKILL, STOP_GRACE);
        }
    }
}

/// Temp dirs of shared Synapses are named `{SHARED_PREFIX}{pid}-…`.
const SHARED_PREFIX: &str = "synapse-shared-";

/// A shared Synapse is never dropped, so its directory stays behind; the
/// next test binary removes those whose process is gone.
fn remove_stale_shared_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(SHARED_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether `GET /_matrix/client/versions` answers 200, with a blocking
/// HTTP/1.0 request: the world's readiness probes are synchronous.
fn versions_answer(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    if tcp
        .write_all(b"GET /_matrix/client/versions HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// The venv's python, creating the venv with pip when it is missing.
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("ESTUARY_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/synapse"));
    let python = venv.join("bin/python");
    if venv.join("bin/synapse_homeserver").is_file() {
        return python;
    }
    // One installer at a time when several test binaries start together.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !venv.join("bin/synapse_homeserver").is_file() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "matrix-synapse"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "cannot install Synapse into {}", venv.display());
    }
    python
}

/// HMAC-SHA1 of `nonce\0user\0password\0notadmin` with the shared secret,
/// as `/_synapse/admin/v1/register` wants it; computed by the venv's Python
/// (its standard library has HMAC) to keep crypto crates out of the tests.
fn registration_mac(python: &Path, nonce: &str, user: &str, password: &str) -> String {
    let script = "import hmac, hashlib, sys\n\
        key, nonce, user, password = sys.argv[1:5]\n\
        mac = hmac.new(key.encode(), digestmod=hashlib.sha1)\n\
        mac.update(b'\\x00'.join([nonce.encode(), user.encode(), password.encode(), b'notadmin']))\n\
        print(mac.hexdigest())";
    let output = Command::new(python)
        .args(["-c", script, SHARED_SECRET, nonce, user, password])
        .output()
        .expect("run python for the registration mac");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("hex")
        .trim()
        .to_owned()
}

/// Kill the child when the thread that spawned it ends: Linux's
/// `PR_SET_DEATHSIG`, so that no Synapse outlives a crashed test binary.
fn set_death_signal(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The whole homeserver config. Written by hand instead of
/// `--generate-config`, which costs seconds of Python imports.
fn write_config(dir: &Path, port: u16) {
    let d = dir.display();
    // Any 32 bytes make an ed25519 seed; fixed, since no other server ever
    // checks this test server's signatures.
    let signing_key = "ed25519 a_test MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\n";
    fs::write(dir.join("signing.key"), signing_key).expect("write signing key");
    let log_config = format!(
        r#"version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {d}/homeserver.log
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"#
    );
    fs::write(dir.join("log.config"), log_config).expect("write log config");
    let limit = "{per_second: 1000, burst_count: 1000}";
    let config = format!(
        r#"# Generated by the Estuary test world.
server_name: "{SERVER_NAME}"
pid_file: {d}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
log_config: {d}/log.config
media_store_path: {d}/media
signing_key_path: {d}/signing.key
registration_shared_secret: "{SHARED_SECRET}"
macaroon_secret_key: "estuary-test-macaroon-secret"
form_secret: "estuary-test-form-secret"
report_stats: false
enable_registration: false
# No traffic off loopback: no key servers, no federation, no stats, no previews.
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
url_preview_enabled: false
enable_metrics: false
presence:
  enabled: true
rc_message: {limit}
rc_registration: {limit}
rc_login:
  address: {limit}
  account: {limit}
  failed_attempts: {limit}
rc_joins:
  local: {limit}
  remote: {limit}
rc_joins_per_room: {limit}
rc_invites:
  per_room: {limit}
  per_user: {limit}
  per_issuer: {limit}
rc_admin_redaction: {limit}
rc_3pid_validation: {limit}
rc_presence:
  per_user: {limit}
rc_delayed_event_mgmt: {limit}
rc_room_creation: {limit}
rc_reports: {limit}
"#
    );
    fs::write(dir.join("homeserver.yaml"), config).expect("write synapse config");
}

/// A Matrix user driven with plain client-server API calls, for the far
/// side of bridge tests: independent of the SDK the bridge uses.
pub struct MatrixUser {
    pub user_id: String,
    pub token: String,
    base: String,
    http: reqwest::Client,
    next_txn: AtomicU64,
}

impl MatrixUser {
    /// Registers a fresh user on `synapse` (unique name from `prefix`).
    pub async fn new(synapse: &Synapse, prefix: &str, password: &str) -> MatrixUser {
        let name = Synapse::unique_user(prefix);
        let token = synapse.register(&name, password).await;
        MatrixUser {
            user_id: format!("@{name}:{SERVER_NAME}"),
            token,
            base: synapse.url(),
            http: reqwest::Client::new(),
            next_txn: AtomicU64::new(0),
        }
    }

    /// The local part of the user ID.
    pub fn name(&self) -> &str {
        self.user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .expect("user id")
    }

    /// One client API call; panics unless it succeeds, returns the JSON.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (status, json) = self.try_call(method.clone(), path, body).await;
        assert!(
            status.is_success(),
            "{method} {path} as {}: {status} {json}",
            self.user_id
        );
        json
    }

    /// One client API call, with its status.
    pub async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let url = format!("{}/_matrix/client/v3{path}", self.base);
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.expect("synapse reachable");
        let status = reply.status();
        let json = reply.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Uploads a file; its `mxc://` URI.
    pub async fn upload(&self, bytes: &[u8], content_type: &str, name: &str) -> String {
        let url = format!("{}/_matrix/media/v3/upload?filename={name}", self.base);
        let reply = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("synapse reachable");
        assert!(reply.status().is_success(), "upload: {}", reply.status());
        let json: serde_json::Value = reply.json().await.expect("JSON");
        json["content_uri"]
            .as_str()
            .expect("content_uri")
            .to_owned()
    }

    /// The bytes of an `mxc://server/id` URI, through the authenticated
    /// media API.
    pub async fn download(&self, mxc: &str) -> Vec<u8> {
        let path = mxc.strip_prefix("mxc://").expect("an mxc URI");
        let url = format!("{}/_matrix/client/v1/media/download/{path}", self.base);
        let reply = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("synapse reachable");
        assert!(
            reply.status().is_success(),
            "download {mxc}: {}",
            reply.status()
        );
        reply.bytes().await.expect("the file").to_vec()
    }

    fn txn(&self) -> String {
        format!("t{}", self.next_txn.fetch_add(1, Ordering::SeqCst))
    }

    /// Creates a room; `extra` is merged into the createRoom body.
    pub async fn create_room(&self, extra: serde_json::Value) -> String {
        let reply = self
            .call(reqwest::Method::POST, "/createRoom", Some(extra))
            .await;
        reply["room_id"].as_str().expect("room_id").to_owned()
    }

    pub async fn join(&self, room: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/join/{}", encode(room)),
            Some(serde_json::json!({})),
        )
        .await;
    }

    /// `POST /rooms/{room}/{action}` (invite, kick, ban, leave …); the reply.
    pub async fn room_action(
        &self,
        room: &str,
        action: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let path = format!("/rooms/{}/{action}", encode(room));
        self.call(reqwest::Method::POST, &path, Some(body)).await
    }

    /// Sends a message-like event; returns its event ID.
    pub async fn send(&self, room: &str, kind: &str, content: serde_json::Value) -> String {
        let path = format!("/rooms/{}/send/{kind}/{}", encode(room), self.txn());
        let reply = self.call(reqwest::Method::PUT, &path, Some(content)).await;
        reply["event_id"].as_str().expect("event_id").to_owned()
    }

    pub async fn say(&self, room: &str, body: &str) -> String {
        self.send(
            room,
            "m.room.message",
            serde_json::json!({"msgtype": "m.text", "body": body}),
        )
        .await
    }

    pub async fn redact(&self, room: &str, event: &str) -> String {
        let path = format!(
            "/rooms/{}/redact/{}/{}",
            encode(room),
            encode(event),
            self.txn()
        );
        let reply = self
            .call(reqwest::Method::PUT, &path, Some(serde_json::json!({})))
            .await;
        reply["event_id"].as_str().expect("event_id").to_owned()
    }

    pub async fn set_state(&self, room: &str, kind: &str, content: serde_json::Value) {
        let path = format!("/rooms/{}/state/{kind}/", encode(room));
        self.call(reqwest::Method::PUT, &path, Some(content)).await;
    }

    pub async fn typing(&self, room: &str, typing: bool) {
        let path = format!("/rooms/{}/typing/{}", encode(room), encode(&self.user_id));
        self.call(
            reqwest::Method::PUT,
            &path,
            Some(serde_json::json!({"typing": typing, "timeout": 30000})),
        )
        .await;
    }

    /// The latest events of a room, newest first.
    pub async fn recent(&self, room: &str) -> Vec<serde_json::Value> {
        let path = format!("/rooms/{}/messages?dir=b&limit=50", encode(room));
        let reply = self.call(reqwest::Method::GET, &path, None).await;
        reply["chunk"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the room until an event matches, or panics after `timeout`.
    pub async fn expect_event(
        &self,
        room: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let events = self.recent(room).await;
            if let Some(found) = events.iter().find(|e| pred(e)) {
                return found.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching event in {room}; latest: {:#?}",
                &events[..events.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an invite and returns the room, from a plain `/sync`
    /// (incremental: Synapse answers a repeated identical sync from a cache).
    pub async fn expect_invite(&self, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut since: Option<String> = None;
        loop {
            let path = match &since {
                Some(token) => format!("/sync?timeout=1000&since={}", encode(token)),
                None => "/sync?timeout=0".to_owned(),
            };
            let reply = self.call(reqwest::Method::GET, &path, None).await;
            if let Some(room) = reply["rooms"]["invite"]
                .as_object()
                .and_then(|m| m.keys().next().cloned())
            {
                return room;
            }
            since = reply["next_batch"].as_str().map(str::to_owned);
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} got no invite",
                self.user_id
            );
        }
    }

    /// Whether `user` has a read receipt on `event` in `room`, within `timeout`.
    pub async fn sees_read_receipt(
        &self,
        room: &str,
        user: &str,
        event: &str,
        timeout: Duration,
    ) -> bool {
        self.sees_ephemeral(room, "m.receipt", timeout, |content| {
            !content[event]["m.read"][user].is_null()
        })
        .await
    }

    /// Whether `/sync` shows `user` typing in `room` within `timeout`.
    pub async fn sees_typing(&self, room: &str, user: &str, timeout: Duration) -> bool {
        self.sees_ephemeral(room, "m.typing", timeout, |content| {
            content["user_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == user))
        })
        .await
    }

    /// Whether `/sync` shows, within `timeout`, an ephemeral event of `kind`
    /// in `room` whose content matches.
    async fn sees_ephemeral(
        &self,
        room: &str,
        kind: &str,
        timeout: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut since: Option<String> = None;
        while tokio::time::Instant::now() < deadline {
            let path = match &since {
                Some(token) => format!("/sync?timeout=1000&since={}", encode(token)),
                None => "/sync?timeout=0".to_owned(),
            };
            let reply = self.call(reqwest::Method::GET, &path, None).await;
            let seen = reply["rooms"]["join"][room]["ephemeral"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["type"] == kind)
                .any(|e| matches(&e["content"]));
            if seen {
                return true;
            }
            since = reply["next_batch"].as_str().map(str::to_owned);
        }
        false
    }
}

/// Percent-encodes a path segment (room IDs, aliases and event IDs carry `!#$:`).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
