//! An ident server (RFC 1413), as biboumi runs one. An IRC server asks the
//! host a connection comes from who owns it; the answer is the SHA-1 of the
//! user's bare JID, biboumi's very answer, so that IRC operators can ban one
//! user of the gateway rather than all of them, and bans made on biboumi's
//! users keep matching them.
//!
//! Written by hand: the protocol is one line each way, and no maintained
//! crate serves it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

/// The most read from one querier; a real query is under 20 bytes.
const MAX_READ: u64 = 4096;
/// How long a querier may keep its connection open without asking.
const IDLE: Duration = Duration::from_secs(30);
/// Queries answered at once; past this, a new connection is closed
/// unanswered, so that a flood of connections to the port cannot pile up
/// tasks and sockets.
const MAX_QUERIERS: usize = 64;

/// The open IRC connections, by (local port, remote port), with the address
/// of the server and the user's ident.
type Connections = HashMap<(u16, u16), (IpAddr, Arc<str>)>;

/// One for the whole process: every IRC gateway it runs shares the host's
/// one ident port.
static CONNECTIONS: OnceLock<Mutex<Connections>> = OnceLock::new();
/// The port the ident server listens on, once started.
static LISTENING: OnceLock<u16> = OnceLock::new();

/// The ident of a user: the hex SHA-1 of their bare JID (IRC servers keep
/// the first ten characters or so).
pub fn ident_of(jid: &str) -> Arc<str> {
    let digest = Sha1::digest(jid.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into()
}

/// Whether an ident server runs in this process.
pub fn enabled() -> bool {
    LISTENING.get().is_some()
}

/// Listen for ident queries on `port` of every address, once per process
/// (a second gateway asking for another port is told it is already served).
/// A port that cannot be bound (113 needs privileges) is logged, and the
/// gateway runs on without ident.
pub fn start(port: u16) {
    if let Some(&running) = LISTENING.get() {
        if running != port {
            warn!(
                port,
                running, "an ident server already runs on another port"
            );
        }
        return;
    }
    let listener = match std::net::TcpListener::bind(("::", port))
        .or_else(|_| std::net::TcpListener::bind(("0.0.0.0", port)))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std)
    {
        Ok(listener) => listener,
        Err(e) => {
            error!(port, error = %e, "cannot listen for ident queries; IRC servers will see no ident");
            return;
        }
    };
    if LISTENING.set(port).is_err() {
        return;
    }
    info!(port, "answering ident queries");
    tokio::spawn(serve(listener));
}

/// An IRC connection, known to the ident server while this lives.
#[derive(Debug)]
pub struct Registration {
    key: (u16, u16),
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(connections) = CONNECTIONS.get() {
            connections.lock().expect("not poisoned").remove(&self.key);
        }
    }
}

/// Make the connection from `local` to `peer` known as `ident`'s, while the
/// registration lives; `None` when no ident server runs.
pub fn register(local: SocketAddr, peer: SocketAddr, ident: Arc<str>) -> Option<Registration> {
    if !enabled() {
        return None;
    }
    let key = (local.port(), peer.port());
    CONNECTIONS
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned")
        .insert(key, (canonical(peer.ip()), ident));
    Some(Registration { key })
}

/// An IPv4 address as itself, whether it came as IPv4 or mapped into IPv6
/// (the listener takes both).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

async fn serve(listener: TcpListener) {
    let queriers = Arc::new(tokio::sync::Semaphore::new(MAX_QUERIERS));
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let Ok(permit) = queriers.clone().try_acquire_owned() else {
                    debug!(%from, "too many ident queriers; closing");
                    continue;
                };
                tokio::spawn(async move {
                    if let Err(e) = answer_queries(stream, canonical(from.ip())).await {
                        debug!(%from, error = %e, "ident query ended");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(error = %e, "cannot accept an ident query");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer_queries(stream: tokio::net::TcpStream, from: IpAddr) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_READ));
    let mut line = String::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(IDLE, lines.read_line(&mut line))
            .await
            .unwrap_or(Ok(0))?;
        if read == 0 {
            return Ok(());
        }
        let reply = reply_to(&line, from).await;
        write.write_all(reply.as_bytes()).await?;
    }
}

/// The reply to one query line (`6193, 23`), asked from `from`.
async fn reply_to(query: &str, from: IpAddr) -> String {
    let ports = query.trim().split_once(',').and_then(|(ours, theirs)| {
        Some((
            ours.trim().parse::<u16>().ok()?,
            theirs.trim().parse::<u16>().ok()?,
        ))
    });
    let Some((ours, theirs)) = ports.filter(|&(a, b)| a != 0 && b != 0) else {
        return "0 , 0 : ERROR : INVALID-PORT\r\n".to_owned();
    };
    // The server asks as soon as it accepts the connection, which can be
    // just before the connection is registered here: look again, briefly.
    for attempt in 0..5 {
        if let Some(ident) = lookup((ours, theirs), from) {
            debug!(ours, theirs, "ident given");
            return format!("{ours} , {theirs} : USERID : OTHER : {ident}\r\n");
        }
        if attempt < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    format!("{ours} , {theirs} : ERROR : NO-USER\r\n")
}

/// The ident of the connection, if it exists and goes to `from`: nobody
/// else learns who owns a gateway's connections.
fn lookup(key: (u16, u16), from: IpAddr) -> Option<Arc<str>> {
    let connections = CONNECTIONS.get()?.lock().expect("not poisoned");
    let (peer, ident) = connections.get(&key)?;
    (*peer == from).then(|| ident.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_are_biboumis() {
        // The hex SHA-1 of the bare JID, as biboumi answers.
        assert_eq!(
            &*ident_of("alice@localhost"),
            "9637f279e87dc3aba7eb582ceceaa621fa695865"
        );
    }

    /// The whole exchange over TCP: a registered connection is named, to
    /// its server only, and forgotten once dropped. One test, since the
    /// server is one per process.
    #[tokio::test]
    async fn queries_are_answered_for_registered_connections() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        start(port);
        assert!(enabled());
        let local: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:6667".parse().unwrap();
        let registration = register(local, server, ident_of("alice@localhost"));
        assert!(registration.is_some());

        let ask = |query: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            stream.write_all(query.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            reply
        };
        assert_eq!(
            ask("40001 , 6667\r\n").await,
            format!(
                "40001 , 6667 : USERID : OTHER : {}\r\n",
                ident_of("alice@localhost")
            )
        );
        assert_eq!(
            ask("40001,6668\r\n").await,
            "40001 , 6668 : ERROR : NO-USER\r\n"
        );
        assert_eq!(
            ask("nonsense\r\n").await,
            "0 , 0 : ERROR : INVALID-PORT\r\n"
        );
        // Asked from elsewhere than the connection's server: nobody.
        assert_eq!(lookup((40001, 6667), "10.0.0.1".parse().unwrap()), None);
        drop(registration);
        assert_eq!(
            ask("40001 , 6667\r\n").await,
            "40001 , 6667 : ERROR : NO-USER\r\n"
        );
    }
}
