//! A throw-away InspIRCd 3 server: one plaintext client port on
//! 127.0.0.1 (plus, with [`Inspircd::start_with_tls`], a TLS port with a
//! self-signed certificate made at start), no DNS or ident lookups, no flood limits, the
//! common IRCv3 capabilities, the full `~&@%+` prefix set and an oper
//! account for tests.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{free_port, has_exited, log_tail, port_open, terminate, wait_until};

/// How long InspIRCd gets to open its port and register a probe client.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERM'd InspIRCd gets before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The server name, as in `:irc.localhost 001 nick ...`.
const SERVER_NAME: &str = "irc.localhost";
/// The network name (ISUPPORT `NETWORK=`).
const NETWORK: &str = "EstuaryTest";

/// Oper account that may use every command (`SAMODE`, `SAKICK`, `KILL`,
/// `CHGHOST`, ...) and override channel restrictions, e.g. set channel
/// modes without being a channel operator.
pub const OPER_NAME: &str = "oper";
/// The password of the WebIRC block, for gateways on 127.0.0.0/8.
pub const WEBIRC_PASSWORD: &str = "webirc-test-password";

/// Password of [`OPER_NAME`].
pub const OPER_PASSWORD: &str = "operpass";

/// A running InspIRCd. Killed (and reaped) on drop.
pub struct Inspircd {
    child: Option<Child>,
    port: u16,
    /// The TLS client port, when started with one.
    tls_port: Option<u16>,
    config_path: PathBuf,
    // Last so the directory outlives the process during drop.
    dir: TempDir,
}

impl Inspircd {
    /// Starts InspIRCd on a free port of 127.0.0.1 and waits until a
    /// client can connect and complete registration (001).
    pub fn start() -> Inspircd {
        Inspircd::start_inner(false, false)
    }

    /// Like [`Inspircd::start`], asking each client's host who it is
    /// (RFC 1413 on port 113, which InspIRCd cannot be told otherwise),
    /// and waiting up to 3 seconds for the answer.
    pub fn start_with_ident() -> Inspircd {
        Inspircd::start_inner(false, true)
    }

    /// Like [`Inspircd::start`], plus a TLS client port whose certificate
    /// (see [`Inspircd::cert_path`]) is self-signed for `localhost` and
    /// `127.0.0.1`, generated now so nothing secret is committed.
    pub fn start_with_tls() -> Inspircd {
        Inspircd::start_inner(true, false)
    }

    fn start_inner(with_tls: bool, with_ident: bool) -> Inspircd {
        let dir = tempfile::Builder::new()
            .prefix("inspircd-")
            .tempdir()
            .expect("create inspircd tempdir");
        let port = free_port();
        fs::write(dir.path().join("motd.txt"), "Estuary test IRC server.\n")
            .expect("write inspircd motd");
        let tls_port = with_tls.then(|| {
            let certified =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .expect("generate a self-signed certificate");
            fs::write(dir.path().join("cert.pem"), certified.cert.pem()).expect("write cert");
            fs::write(
                dir.path().join("key.pem"),
                certified.key_pair.serialize_pem(),
            )
            .expect("write key");
            // Never the plain port: free_port hands out distinct ports.
            free_port()
        });
        let config_path = dir.path().join("inspircd.conf");
        fs::write(
            &config_path,
            render_config(dir.path(), port, tls_port, with_ident),
        )
        .expect("write inspircd config");

        let mut inspircd = Inspircd {
            child: None,
            port,
            tls_port,
            config_path,
            dir,
        };
        inspircd.spawn_and_wait();
        inspircd
    }

    /// The plaintext client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS client port on 127.0.0.1; panics without one.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
            .expect("started without TLS: use Inspircd::start_with_tls")
    }

    /// The TLS port's self-signed certificate (PEM), to trust as a CA.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server name, the source of server numerics and notices.
    pub fn name(&self) -> &str {
        SERVER_NAME
    }

    /// The network name InspIRCd announces in ISUPPORT.
    pub fn network(&self) -> &str {
        NETWORK
    }

    /// InspIRCd's own (debug level) log. Raw client I/O is not in it:
    /// logging that makes InspIRCd warn every client with a NOTICE.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("inspircd.log")
    }

    /// The generated config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// SIGKILLs InspIRCd, like a crash. The port stays reserved for
    /// [`Inspircd::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGKILL, STOP_GRACE);
        }
    }

    /// SIGTERMs InspIRCd and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGTERM, STOP_GRACE);
        }
    }

    /// Starts InspIRCd again (stopping it first if it still runs) with the
    /// same config and port, and waits until clients can register.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    /// True while the InspIRCd process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| !has_exited(c))
    }

    /// What InspIRCd printed to stdout/stderr (startup and config errors).
    fn console_path(&self) -> PathBuf {
        self.dir.path().join("inspircd.console")
    }

    fn spawn_and_wait(&mut self) {
        let started = Instant::now();
        self.child = Some(self.spawn());
        let port = self.port;
        let child = self.child.as_mut().expect("just spawned");
        let open = wait_until(START_TIMEOUT, || has_exited(child) || port_open(port));
        if !open || has_exited(child) {
            self.fail("InspIRCd did not open its port");
        }
        // Both listeners are bound in one go at startup; check anyway, as a
        // broken TLS profile only leaves the TLS port closed.
        if let Some(tls) = self.tls_port {
            if !wait_until(START_TIMEOUT, || port_open(tls)) {
                self.fail("InspIRCd did not open its TLS port");
            }
        }
        let left = START_TIMEOUT.saturating_sub(started.elapsed());
        if let Err(e) = probe_registration(port, left.max(Duration::from_secs(2))) {
            self.fail(&format!("a probe client could not register: {e}"));
        }
    }

    fn spawn(&self) -> Child {
        let console = File::options()
            .create(true)
            .append(true)
            .open(self.console_path())
            .expect("open inspircd console log");
        Command::new(inspircd_binary())
            .arg(format!("--config={}", self.config_path.display()))
            // Stay in the foreground so we own the process; we are root in
            // CI containers; the pid file would go to /var/run.
            .args(["--nofork", "--runasroot", "--nopid"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console log"))
            .stderr(console)
            .spawn()
            .expect("spawn inspircd")
    }

    /// Kills InspIRCd and panics with everything it said.
    fn fail(&mut self, what: &str) -> ! {
        self.kill();
        panic!(
            "{what} (port {}, config {}).\n--- console ---\n{}\n--- log tail ---\n{}",
            self.port,
            self.config_path.display(),
            log_tail(&self.console_path(), 40),
            log_tail(&self.log_path(), 40),
        );
    }
}

impl Drop for Inspircd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Connects a throw-away client and waits for 001, proving that the
/// server accepts registrations (not just TCP connections). InspIRCd 3
/// completes registrations on its once-a-second timer, so this takes up
/// to a second.
fn probe_registration(port: u16, timeout: Duration) -> Result<(), String> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nick = format!("probe{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(format!("NICK {nick}\r\nUSER probe 0 * :probe\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no 001 within {timeout:?}; got {seen:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Err(format!("connection closed; got {seen:?}")),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}; got {seen:?}")),
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        let mut words = line.split(' ');
        let command = match words.next() {
            Some(w) if w.starts_with(':') => words.next().unwrap_or(""),
            other => other.unwrap_or(""),
        };
        match command {
            "001" => {
                let _ = stream.write_all(b"QUIT :probe done\r\n");
                return Ok(());
            }
            "PING" => {
                let token = line.split_once(' ').map_or("", |(_, rest)| rest);
                let _ = stream.write_all(format!("PONG {token}\r\n").as_bytes());
            }
            _ => {}
        }
        seen.push(line);
    }
}

/// The `inspircd` executable, from PATH or the Debian location.
fn inspircd_binary() -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("inspircd"))
            .find(|candidate| candidate.is_file())
    });
    let fallback = PathBuf::from("/usr/sbin/inspircd");
    match in_path {
        Some(path) => path,
        None if fallback.is_file() => fallback,
        None => panic!("inspircd is not installed: run scripts/test which installs it"),
    }
}

/// The whole InspIRCd config file.
///
/// Notes for InspIRCd 3.15:
/// - halfop, admin and founder are not core modes; `customprefix` adds
///   them (op `@` and voice `+` are core).
/// - `sasl` is left out: it needs `services_account` and a linked
///   services server, and never advertises the `sasl` cap without one.
/// - Opers can set channel modes from outside a channel (`override`), but
///   KICK still needs membership: use `SAKICK`.
/// - TLS (ssl_gnutls) is loaded only with a TLS port; `sslinfo` makes
///   WHOIS show 671 "is using a secure connection" for TLS users.
fn render_config(dir: &Path, port: u16, tls_port: Option<u16>, ident: bool) -> String {
    let tls = match tls_port {
        Some(tls_port) => tls_config(dir, tls_port),
        None => String::new(),
    };
    let (useident, ident_module) = if ident {
        ("yes", "<module name=\"ident\">\n<ident timeout=\"3\">\n")
    } else {
        ("no", "")
    };
    let dir = dir.display();
    format!(
        r#"# Generated by the Estuary test world.
<server name="{SERVER_NAME}" description="Estuary test IRC server" network="{NETWORK}">
<admin name="Estuary tests" nick="admin" email="admin@localhost">

<bind address="127.0.0.1" port="{port}" type="clients">

# One class for everybody. Load tests open ~100 connections from
# 127.0.0.1 and bridges send in bursts: no clone limits, no flood limits
# (huge threshold/commandrate, so neither fakelag nor "Excess Flood"),
# big queues. No DNS lookups, and ident lookups only where a test asks,
# so registration is quick.
<connect name="main"
         allow="*"
         timeout="30"
         pingfreq="120"
         hardsendq="16M"
         softsendq="1M"
         recvq="1M"
         threshold="1000000"
         commandrate="1000000"
         fakelag="no"
         localmax="10000"
         globalmax="10000"
         limit="10000"
         maxconnwarn="no"
         maxchans="1000"
         resolvehostnames="no"
         useident="{useident}">
{ident_module}

<class name="Everything" commands="*" privs="*" usermodes="*" chanmodes="*" snomasks="*">
<type name="NetAdmin" classes="Everything" override="*">
<oper name="{OPER_NAME}" password="{OPER_PASSWORD}" host="*@127.0.0.1" type="NetAdmin">

<files motd="{dir}/motd.txt">
<log method="file" type="* -CULLLIST" level="debug" target="{dir}/inspircd.log">
# Never used (no hostname lookups); keeps core_dns away from resolv.conf.
<dns server="127.0.0.1" timeout="1">

<channels users="1000" opers="1000">
<options prefixquit=""
         syntaxhints="no"
         announcets="yes"
         hostintopic="yes"
         pingwarning="15"
         splitwhois="no"
         exemptchanops=""
         defaultmodes="not">
<security hideserver=""
          userstats="Pu"
          customversion=""
          flatlinks="no"
          hidesplits="no"
          hideulines="no"
          hidebans="no"
          maxtargets="20">
<performance quietbursts="yes" somaxconn="512" netbuffersize="10240" clonesonconnect="no">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="10" maxhost="64"
        maxquit="255" maxtopic="307" maxkick="255" maxreal="128" maxaway="200">
<maxlist chan="*" limit="100">

# IRCv3.
<module name="cap">
<module name="ircv3">
<ircv3 accountnotify="yes" awaynotify="yes" extendedjoin="yes">
<module name="ircv3_servertime">
<module name="ircv3_echomessage">
<module name="ircv3_msgid">
<module name="ircv3_ctctags">
<module name="ircv3_chghost">
<module name="ircv3_capnotify">
<module name="ircv3_invitenotify">
<module name="ircv3_batch">
<module name="ircv3_labeledresponse">
<module name="namesx">
<module name="uhnames">
# Channel forwards (+L), as Libera's +f: a refused join is sent elsewhere (470).
<module name="redirect">
# Channel history replayed on join (+H), as Ergo and others do.
<module name="chanhistory">
<chanhistory maxlines="50" notice="no" bots="yes">
# A host change seen as a quit and a join by clients without chghost, as on Libera.
<module name="hostcycle">
# No rejoin for a while after a kick (+J): a join refused with 495.
<module name="kicknorejoin">
# WebIRC for gateways on loopback: a gateway that sends this password is
# trusted to say where its user comes from.
<module name="cgiirc">
<cgihost type="webirc" password="{WEBIRC_PASSWORD}" mask="127.0.0.0/8">
# MONITOR, for the presence of users' IRC contacts.
<module name="monitor">
<monitor maxentries="30">

# Channel prefixes ~ & @ % + (q a o h v).
<module name="customprefix">
<customprefix name="founder" letter="q" prefix="~" rank="50000" ranktoset="50000">
<customprefix name="admin" letter="a" prefix="&amp;" rank="40000" ranktoset="50000">
<customprefix name="halfop" letter="h" prefix="%" rank="20000" ranktoset="30000">

# Oper tools for tests.
<module name="override">
<override noisy="no" requirekey="no" enableumode="no">
<module name="chghost">
<module name="samode">
<module name="sakick">
<module name="sajoin">
<module name="sapart">
<module name="sanick">
<module name="satopic">
{tls}"#
    )
}

/// The TLS listener and its profile. No DH file: the certificate's key is
/// ECDSA, and GnuTLS negotiates ECDHE.
fn tls_config(dir: &Path, tls_port: u16) -> String {
    let dir = dir.display();
    format!(
        r#"
# TLS on a second port, self-signed certificate made by the test world.
<module name="ssl_gnutls">
<module name="sslinfo">
<sslprofile name="test"
            provider="gnutls"
            certfile="{dir}/cert.pem"
            keyfile="{dir}/key.pem"
            dhfile=""
            hash="sha256"
            priority="NORMAL"
            requestclientcert="no">
<bind address="127.0.0.1" port="{tls_port}" type="clients" sslprofile="test">
"#
    )
}
