//! The test world: throw-away Prosody, PostgreSQL and InspIRCd servers
//! plus raw XMPP and IRC clients, for integration tests.
//!
//! Every test binary that needs it does `mod world;`. Servers live in
//! temporary directories, listen on 127.0.0.1 only and are killed when
//! their handle is dropped, so tests never share state.
// Each test binary uses a different subset of the world.
#![allow(dead_code, unused_imports)]

pub mod biboumi;
pub mod client;
pub mod discord;
pub mod file_server;
pub mod inspircd;
pub mod irc_client;
pub mod ports;
pub mod postgres;
pub mod prosody;
pub mod shared_room;
pub mod synapse;

pub use client::{attr, body, el, find_child, moderation, stanza_id, XmppClient};
pub use inspircd::Inspircd;
pub use irc_client::{IrcClient, IrcLine};
pub use ports::free_port;
pub use postgres::Postgres;
pub use prosody::Prosody;

pub use tokio_xmpp::minidom::Element;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// The store URL of an SQLite file at `path`, created on first use.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// How often readiness probes retry.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `ready` every 50 ms until it returns true or `timeout` passes.
///
/// Returns whether it became ready. Blocking on purpose: server handles are
/// also dropped from synchronous `Drop`, so the world stays synchronous.
pub(crate) fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// True once the child has exited (reaping it), false while it runs.
pub(crate) fn has_exited(child: &mut Child) -> bool {
    !matches!(child.try_wait(), Ok(None))
}

/// Sends `signal` to `child`, waits up to `grace` for it to exit, then
/// SIGKILLs it. Always reaps the child so no zombie is left behind.
pub(crate) fn terminate(child: &mut Child, signal: libc::c_int, grace: Duration) {
    if has_exited(child) {
        return;
    }
    send_signal(child, signal);
    if !wait_until(grace, || has_exited(child)) {
        send_signal(child, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Delivers a signal to a child we spawned (std only offers SIGKILL).
fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
    // own, not yet reaped child, so it cannot have been recycled.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The last `lines` lines of a log file, for panic messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Waits until `estuary`'s component link for `domain` has come up (it
/// connects in the background after `app::start`); panics after 10 s.
pub async fn wait_for_link(estuary: &estuary::app::Running, domain: &str) {
    let stats = estuary.link(domain).expect("a configured gateway");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.connects.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the component link of {domain} never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
