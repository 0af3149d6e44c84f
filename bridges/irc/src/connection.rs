//! One IRC connection: the socket, registration (CAP, SASL), keepalive,
//! flood control, and the lines in and out.
//!
//! Written on tokio directly rather than with the `irc` crate's `Client`,
//! which decodes invalid UTF-8 lossily (the bridge must fall back to a legacy
//! encoding instead), sends `CAP END` before SASL can run, and neither
//! reconnects nor exposes its queue to a token bucket of our own.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use encoding_rs::Encoding;
use estuary_bridge::mailbox::{mailbox, MailboxSender};
use estuary_bridge::tcp::Acking;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use crate::channel_encodings::ChannelEncodings;
use crate::identd;
use crate::isupport::Isupport;
use crate::line::{format_tagged, IrcLine};
use crate::options::{PrivateReach, ServerOptions};
use crate::text::{decode_line, default_fallback, encoding_for_label};
use crate::tls::{self, ReadHalf, WriteHalf};

/// Longest line accepted from a server, tags included (IRCv3 allows 8191
/// bytes of tags plus 512 for the rest); longer ones are skipped.
const MAX_LINE: usize = 8191 + 512;

/// Read buffer per connection. Lines are short and a gateway holds one
/// connection per user and server, so a small buffer (several lines per
/// read) beats tokio's 8 KiB default; longer lines still arrive whole, over
/// several reads. Halving it from 2 KiB took 1 KB off every joined user and
/// left the fan-out's CPU per delivery unchanged in the bench.
const READ_BUFFER: usize = 1024;

/// Most bytes of queued lines gathered into one write.
const WRITE_BATCH: usize = 16 * 1024;

/// How long one port gets to accept the TCP connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake may take once the port has accepted.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Capabilities asked for when the server offers them.
const WANTED_CAPS: &[&str] = &[
    "server-time",
    "message-tags",
    "echo-message",
    "away-notify",
    // Away changes of followed contacts who share no channel with the user.
    "extended-monitor",
    // History a server plays back on join comes in a `chathistory` batch,
    // which tells it from what is said now.
    "batch",
    // A server that keeps channel history is asked for what was said while
    // the gateway was away (CHATHISTORY LATEST on each join).
    "draft/chathistory",
    // A host change (a cloak on identifying) is a CHGHOST line, which the
    // gateway has no use for, instead of a fake quit and join in every
    // channel the user shares with them.
    "chghost",
    "multi-prefix",
    "userhost-in-names",
];

#[derive(Debug, Error)]
pub enum ConnectError {
    /// No port accepted; `tls_tried` tells what the TLS ports said first.
    #[error("cannot connect to {target}: {error}{tls_tried}")]
    Connect {
        target: String,
        error: std::io::Error,
        tls_tried: String,
    },
    /// The server's certificate was refused. Never followed by a plaintext
    /// attempt: that would hand the user's password to whoever made it fail.
    #[error(
        "the TLS certificate of {target} is not trusted ({error}); not falling back to plaintext"
    )]
    Certificate {
        target: String,
        error: tokio_rustls::rustls::Error,
    },
    /// The TLS port accepted but the handshake failed for another reason.
    #[error("TLS handshake with {target} failed: {error}; not falling back to plaintext")]
    Tls {
        target: String,
        error: std::io::Error,
    },
    /// Every TLS port failed and `port = 0` forbids plaintext.
    #[error("cannot connect to {host} with TLS{tls_tried}; plaintext is disabled (port = 0)")]
    NoPlaintext { host: String, tls_tried: String },
    /// The TLS settings themselves are unusable (e.g. an unreadable ca_file).
    #[error("{0}")]
    TlsSetup(String),
    #[error("the server closed the connection during registration: {0}")]
    Closed(String),
    #[error("registration timed out")]
    Timeout,
}

/// What a registered connection knows about itself and the server.
#[derive(Debug)]
pub struct Registered {
    pub nick: String,
    pub isupport: Isupport,
    pub caps: BTreeSet<String>,
    /// The server gave another nick than the one asked for.
    pub nick_changed: bool,
    /// Where the connection goes and how (`host:port, TLS`).
    pub via: String,
    /// When registration completed, in milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// What the server told the user while registering, for the server's
    /// JID to show once connected: its notices, a SASL failure, and the
    /// message of the day (as one text). Taken by the first reader.
    pub notices: Vec<String>,
}

/// Who to be on a server.
#[derive(Debug, Clone)]
pub struct Identity {
    pub nick: String,
    pub password: Option<String>,
    /// What the ident server answers for this user's connections, when one runs.
    pub ident: Option<Arc<str>>,
    /// The username and real name where neither the user nor the admin set
    /// one (`realname_from_jid`); the nick without them.
    pub names: Option<(String, String)>,
    /// The user's XMPP server, for WEBIRC.
    pub home: String,
}

/// Reads lines, decoding what is not UTF-8 with the channel's encoding or
/// the configured one.
pub struct LineReader {
    reader: BufReader<ReadHalf>,
    buf: Vec<u8>,
    fallback: &'static Encoding,
    channels: Arc<ChannelEncodings>,
    /// The connection known to the ident server, for as long as it is open.
    _ident: Option<identd::Registration>,
}

impl LineReader {
    /// The next parsed line; `Ok(None)` when the server closed the connection.
    pub async fn next(&mut self) -> std::io::Result<Option<IrcLine>> {
        loop {
            self.buf.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE as u64 + 2)
                .read_until(b'\n', &mut self.buf)
                .await;
            let n = match read {
                Ok(n) => n,
                // TLS reports a close without close_notify so; IRC servers
                // often just close after ERROR, and lines carry their own
                // framing, so this is the end of the stream like on TCP.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            if !self.buf.ends_with(b"\n") && n > MAX_LINE {
                warn!(bytes = n, "skipping an overlong line");
                // Drop the rest of it.
                let mut rest = Vec::new();
                self.reader.read_until(b'\n', &mut rest).await?;
                continue;
            }
            let bytes = trim_eol(&self.buf);
            let text = decode_line(bytes, || {
                self.channels.of_line(bytes).unwrap_or(self.fallback)
            });
            if let Some(line) = IrcLine::parse(&text) {
                return Ok(Some(line));
            }
        }
    }
}

fn trim_eol(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &bytes[..end]
}

/// Sends lines, never faster than the server allows: a token bucket of
/// `throttle_burst` lines refilled at `throttle_per_sec`. Lines wait in the
/// queue rather than being dropped.
#[derive(Clone)]
pub struct LineWriter {
    queue: MailboxSender<String>,
}

impl LineWriter {
    /// Generic over the socket so that tests can count its writes.
    fn spawn<W>(mut socket: W, options: &ServerOptions) -> LineWriter
    where
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (queue, mut lines) = mailbox::<String>();
        let burst = f64::from(options.throttle_burst.max(1));
        let rate = options.throttle_per_sec.max(0.1);
        tokio::spawn(async move {
            let mut tokens = burst;
            let mut last = Instant::now();
            // Lines the bucket allows go out together, in one write: under load
            // that is one system call for many lines instead of one each.
            let mut out: Vec<u8> = Vec::with_capacity(512);
            while let Some(line) = lines.recv().await {
                let now = Instant::now();
                tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
                last = now;
                if tokens < 1.0 {
                    let wait = Duration::from_secs_f64((1.0 - tokens) / rate);
                    tokio::time::sleep(wait).await;
                    tokens = 1.0;
                    last = Instant::now();
                }
                tokens -= 1.0;
                out.extend_from_slice(line.as_bytes());
                if tokens >= 1.0 && lines.is_empty() {
                    // The user task queues one line per message and waits for
                    // its answer, so the queue is usually empty here. Letting the
                    // other ready tasks run first lets the next lines join this
                    // write. In the load tool this cut Estuary's `sendto` calls
                    // by seven tenths and its CPU per XMPP → IRC message by a
                    // tenth to a quarter. The cost is one round of the other
                    // ready tasks before a lone line goes out: nothing measurable
                    // (the load tool's added latency did not move).
                    tokio::task::yield_now().await;
                }
                while tokens >= 1.0 && out.len() < WRITE_BATCH {
                    let Some(line) = lines.try_recv() else { break };
                    tokens -= 1.0;
                    out.extend_from_slice(line.as_bytes());
                }
                // TLS keeps records the socket could not take yet; flushing
                // sends them before the throttle may sleep (a no-op on plain TCP).
                let written = match socket.write_all(&out).await {
                    Ok(()) => socket.flush().await,
                    error => error,
                };
                out.clear();
                if out.capacity() > WRITE_BATCH * 2 {
                    out.shrink_to(512);
                }
                if let Err(e) = written {
                    debug!(error = %e, "write failed; the reader will notice the disconnect");
                    return;
                }
            }
            let _ = socket.shutdown().await;
        });
        LineWriter { queue }
    }

    /// Queue a raw line the user typed (`WHOIS bob`); one line only.
    pub fn send_raw(&self, text: &str) -> bool {
        match IrcLine::parse(text) {
            Some(line) if !text.contains(['\r', '\n', '\0']) => {
                let params: Vec<&str> = line.params.iter().map(String::as_str).collect();
                self.send(&line.command, &params)
            }
            _ => false,
        }
    }

    /// Queue a command; refused (false) if a parameter would inject a new
    /// line or split this one.
    pub fn send(&self, command: &str, params: &[&str]) -> bool {
        self.send_tagged(&[], command, params)
    }

    /// [`LineWriter::send`], with IRCv3 message tags.
    pub fn send_tagged(&self, tags: &[(&str, &str)], command: &str, params: &[&str]) -> bool {
        match format_tagged(tags, command, params) {
            Some(line) => self.queue.send(line).is_ok(),
            None => {
                warn!(command, "refusing to send a line a parameter would split");
                false
            }
        }
    }
}

/// Open the socket: each TLS port in order, then the plain port. A port
/// that refuses or does not answer passes to the next; once a TLS port has
/// accepted, its handshake decides, and a failure there is final.
/// An open connection.
struct Opened {
    read: ReadHalf,
    write: WriteHalf,
    /// Its registration with the ident server, if one runs.
    ident: Option<identd::Registration>,
    /// Where it goes and how, for the user to read: `host:port, TLS`.
    via: String,
}

async fn open(
    host: &str,
    options: &ServerOptions,
    ident: Option<&Arc<str>>,
) -> Result<Opened, ConnectError> {
    let mut tls_tried = String::new();
    if !options.tls_ports.is_empty() {
        let pin = options
            .tls_fingerprint
            .as_deref()
            .map(tls::Fingerprint::parse)
            .transpose()
            .map_err(ConnectError::TlsSetup)?;
        let connector = tls::connector(
            options.verify_certificates,
            options.ca_file.as_deref(),
            pin.as_ref(),
        )
        .map_err(ConnectError::TlsSetup)?;
        let name = tls::server_name(host).map_err(ConnectError::TlsSetup)?;
        for &port in &options.tls_ports {
            let target = format!("{host}:{port}");
            let tcp = match tcp_connect(host, port, options.outgoing_bind, &options.private_reach)
                .await
            {
                Ok(tcp) => tcp,
                Err(error) => {
                    info!(%target, %error, "TLS port unreachable; trying the next port");
                    tls_tried.push_str(if tls_tried.is_empty() {
                        " (TLS port "
                    } else {
                        ", "
                    });
                    tls_tried.push_str(&format!("{port}: {error}"));
                    continue;
                }
            };
            // Known to the ident server before the server can ask.
            let ident = ident.and_then(|ident| register_ident(&tcp, ident));
            let handshake = timeout(
                HANDSHAKE_TIMEOUT,
                connector.connect(name.clone(), Acking(tcp)),
            )
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            return match handshake {
                Ok(stream) => {
                    if !options.verify_certificates && pin.is_none() {
                        warn!(%target, "connected with TLS without verifying the server's certificate (verify_certificates = false)");
                    }
                    debug!(%target, "TLS established");
                    let (read, write) = tls::split_tls(stream);
                    Ok(Opened {
                        read,
                        write,
                        ident,
                        via: format!("{target}, TLS"),
                    })
                }
                Err(error) => Err(match tls::rustls_error(&error) {
                    Some(e @ tokio_rustls::rustls::Error::InvalidCertificate(_)) => {
                        ConnectError::Certificate {
                            target,
                            error: e.clone(),
                        }
                    }
                    _ => ConnectError::Tls { target, error },
                }),
            };
        }
        tls_tried.push(')');
    }
    let port = options.port;
    if port == 0 {
        // A man in the middle can make the TLS ports refuse; `port = 0` is
        // how an admin makes sure that never leads to plaintext.
        return Err(ConnectError::NoPlaintext {
            host: host.to_owned(),
            tls_tried,
        });
    }
    let tcp = tcp_connect(host, port, options.outgoing_bind, &options.private_reach)
        .await
        .map_err(|error| ConnectError::Connect {
            target: format!("{host}:{port}"),
            error,
            tls_tried,
        })?;
    let ident = ident.and_then(|ident| register_ident(&tcp, ident));
    let (read, write) = tls::split_plain(tcp);
    Ok(Opened {
        read,
        write,
        ident,
        via: format!("{host}:{port}, not encrypted"),
    })
}

fn register_ident(tcp: &TcpStream, ident: &Arc<str>) -> Option<identd::Registration> {
    identd::register(tcp.local_addr().ok()?, tcp.peer_addr().ok()?, ident.clone())
}

/// One TCP connection, Nagle off (lines are small and latency matters),
/// from `bind` when the admin chose the local address.
async fn tcp_connect(
    host: &str,
    port: u16,
    bind: Option<IpAddr>,
    reach: &PrivateReach,
) -> std::io::Result<TcpStream> {
    // A `[v6]` literal in the config; the tuple form takes bare addresses.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let connect = async {
        // Each address of the host (in the bound address's family), in
        // turn, as `TcpStream::connect` tries them, where the gateway may go.
        let mut last = None;
        for addr in tokio::net::lookup_host((bare, port)).await? {
            if bind.is_some_and(|bind| addr.is_ipv4() != bind.is_ipv4()) {
                continue;
            }
            if !reach.allows(&addr) {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{addr} is a private address, which only the gateway's admin may \
                         point a server at"
                    ),
                ));
                continue;
            }
            let connected = match bind {
                Some(bind) => {
                    let socket = if addr.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    socket.bind(SocketAddr::new(bind, 0))?;
                    socket.connect(addr).await
                }
                None => TcpStream::connect(addr).await,
            };
            match connected {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                match bind {
                    Some(bind) => {
                        format!("{host} has no address of the family of outgoing_bind {bind}")
                    }
                    None => format!("{host} has no address"),
                },
            )
        }))
    };
    let tcp = timeout(CONNECT_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The address WEBIRC gives for a user's XMPP server `home`, as IRC takes
/// it: an IPv6 address that starts with `:` would end the line's middle
/// parameters, so it is written with a leading `0` (WebIRC's advice).
async fn webirc_address(home: &str) -> Option<String> {
    let addr = tokio::net::lookup_host((home, 0)).await.ok()?.next()?;
    let ip = addr.ip().to_string();
    Some(if ip.starts_with(':') {
        format!("0{ip}")
    } else {
        ip
    })
}

/// Connect and register. Returns the reader, the writer and what was learnt.
pub async fn connect(
    server: &str,
    options: &ServerOptions,
    identity: &Identity,
    channels: Arc<ChannelEncodings>,
) -> Result<(LineReader, LineWriter, Registered), ConnectError> {
    let host = options.address.clone().unwrap_or_else(|| server.to_owned());
    let Opened {
        read,
        write,
        ident,
        via,
    } = open(&host, options, identity.ident.as_ref()).await?;
    let fallback = options
        .encoding
        .as_deref()
        .and_then(encoding_for_label)
        .unwrap_or_else(default_fallback);
    let mut reader = LineReader {
        reader: BufReader::with_capacity(READ_BUFFER, read),
        // Grows to the longest line seen, which is usually well under 1 KB.
        buf: Vec::new(),
        fallback,
        channels,
        _ident: ident,
    };
    let writer = LineWriter::spawn(write, options);
    let mut registered = timeout(
        Duration::from_secs(30),
        register(&mut reader, &writer, options, identity),
    )
    .await
    .map_err(|_| ConnectError::Timeout)??;
    registered.via = via;
    registered.since_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    info!(server, nick = %registered.nick, caps = ?registered.caps, "registered on IRC");
    Ok((reader, writer, registered))
}

async fn register(
    reader: &mut LineReader,
    writer: &LineWriter,
    options: &ServerOptions,
    identity: &Identity,
) -> Result<Registered, ConnectError> {
    let (default_username, default_realname) = identity
        .names
        .clone()
        .unwrap_or_else(|| (identity.nick.clone(), identity.nick.clone()));
    let username = options.username.clone().unwrap_or(default_username);
    let realname = options.realname.clone().unwrap_or(default_realname);
    if let Some(password) = &options.webirc_password {
        // Before anything else, as WebIRC requires.
        match webirc_address(&identity.home).await {
            Some(ip) => {
                writer.send("WEBIRC", &[password, "estuary", &identity.home, &ip]);
            }
            None => warn!(
                home = %identity.home,
                "no address for the user's XMPP server: connecting without WEBIRC"
            ),
        }
    }
    writer.send("CAP", &["LS", "302"]);
    if let Some(password) = &options.server_password {
        writer.send("PASS", &[password]);
    }
    writer.send("NICK", &[&identity.nick]);
    writer.send("USER", &[&username, "0", "*", &realname]);
    let mut nick = identity.nick.clone();
    let mut offered: BTreeSet<String> = BTreeSet::new();
    let mut caps = BTreeSet::new();
    let mut isupport = Isupport::new();
    let mut cap_done = false;
    let mut sasl_running = false;
    let mut sasl_done = false;
    let mut notices = Vec::new();
    let mut motd: Vec<String> = Vec::new();
    loop {
        let line = reader
            .next()
            .await
            .map_err(|e| ConnectError::Closed(e.to_string()))?
            .ok_or_else(|| ConnectError::Closed("end of stream".into()))?;
        match line.command.as_str() {
            "PING" => {
                writer.send("PONG", &[line.param(0)]);
            }
            "CAP" => match line.param(1) {
                "LS" => {
                    // `CAP * LS * :…` continues on the next line.
                    let more = line.params.len() > 3 && line.param(2) == "*";
                    let list = line.params.last().cloned().unwrap_or_default();
                    for cap in list.split(' ').filter(|c| !c.is_empty()) {
                        offered.insert(cap.split('=').next().unwrap_or(cap).to_owned());
                    }
                    if !more {
                        let mut wanted: Vec<&str> = WANTED_CAPS
                            .iter()
                            .copied()
                            .filter(|c| offered.contains(*c))
                            .collect();
                        if identity.password.is_some() && offered.contains("sasl") {
                            wanted.push("sasl");
                        }
                        if wanted.is_empty() {
                            writer.send("CAP", &["END"]);
                            cap_done = true;
                        } else {
                            writer.send("CAP", &["REQ", &wanted.join(" ")]);
                        }
                    }
                }
                "ACK" => {
                    for cap in line.params.last().into_iter().flat_map(|l| l.split(' ')) {
                        if !cap.is_empty() {
                            caps.insert(cap.to_owned());
                        }
                    }
                    if caps.contains("sasl") && identity.password.is_some() && !sasl_running {
                        sasl_running = true;
                        writer.send("AUTHENTICATE", &["PLAIN"]);
                    } else if !cap_done {
                        writer.send("CAP", &["END"]);
                        cap_done = true;
                    }
                }
                "NAK" if !cap_done => {
                    writer.send("CAP", &["END"]);
                    cap_done = true;
                }
                _ => {}
            },
            "AUTHENTICATE" if line.param(0) == "+" => {
                let password = identity.password.as_deref().unwrap_or_default();
                let payload = format!("{}\0{}\0{}", identity.nick, identity.nick, password);
                writer.send("AUTHENTICATE", &[&base64(payload.as_bytes())]);
            }
            // SASL success (903) or failure (902, 904–907): registration goes on either way.
            "903" | "902" | "904" | "905" | "906" | "907" => {
                sasl_done = line.command == "903";
                if !sasl_done {
                    warn!(reply = %line.command, "SASL authentication failed");
                    let why = line.params.last().map_or("", String::as_str);
                    notices.push(format!("SASL authentication failed: {why}"));
                }
                if !cap_done {
                    writer.send("CAP", &["END"]);
                    cap_done = true;
                }
            }
            "001" => {
                nick = line.param(0).to_owned();
            }
            "005" => {
                let params = &line.params[1..line.params.len().saturating_sub(1)];
                isupport.apply_reply(params);
            }
            "433" | "432" => {
                // Nick taken or refused while registering: try another.
                nick.push('_');
                writer.send("NICK", &[&nick]);
            }
            // The message of the day, line by line.
            "372" => motd.push(line.params.last().cloned().unwrap_or_default()),
            // The server's own notices (`*** Looking up your hostname`).
            "NOTICE" if !line.source.as_deref().unwrap_or_default().contains('!') => {
                notices.push(line.params.last().cloned().unwrap_or_default());
            }
            // End of MOTD, or no MOTD: registration is complete.
            "376" | "422" => {
                if let Some(password) = identity.password.as_deref() {
                    if !sasl_done && options.nickserv_identify {
                        // Never logged: the line holds the password.
                        let identify = format!("IDENTIFY {} {password}", identity.nick);
                        writer.send("PRIVMSG", &["NickServ", &identify]);
                    }
                }
                if !motd.is_empty() {
                    notices.push(format!("Message of the day:\n{}", motd.join("\n")));
                }
                return Ok(Registered {
                    nick_changed: nick != identity.nick,
                    nick,
                    isupport,
                    caps,
                    via: String::new(),
                    since_ms: 0,
                    notices,
                });
            }
            "ERROR" => return Err(ConnectError::Closed(line.param(0).to_owned())),
            _ => {}
        }
    }
}

/// Base64 for the one SASL PLAIN payload: a few lines, not worth a dependency.
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_webirc_address_never_starts_a_parameter_with_a_colon() {
        for home in ["localhost", "::1", "127.0.0.1"] {
            let ip = webirc_address(home).await.expect("loopback resolves");
            assert!(!ip.starts_with(':'), "{ip}");
            assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip}");
        }
        assert_eq!(webirc_address("::1").await.as_deref(), Some("0::1"));
    }

    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn outgoing_connections_come_from_the_bound_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bind: IpAddr = "127.0.0.3".parse().unwrap();
        let anywhere = PrivateReach::Any;
        let tcp = tcp_connect("127.0.0.1", port, Some(bind), &anywhere)
            .await
            .unwrap();
        assert_eq!(tcp.local_addr().unwrap().ip(), bind);
        let (_, from) = listener.accept().await.unwrap();
        assert_eq!(from.ip(), bind);
        // No address of the bound address's family: a clear error.
        let error = tcp_connect("127.0.0.1", port, Some("::1".parse().unwrap()), &anywhere)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrNotAvailable);
        assert!(error.to_string().contains("outgoing_bind"), "{error}");
    }

    /// A scripted server: SASL must run before `CAP END`, in this order.
    #[tokio::test]
    async fn sasl_plain_runs_before_cap_end() {
        let (port, server) = crate::scripted_server::start(|line| match line {
            "CAP LS 302" => vec!["CAP * LS :sasl server-time"],
            l if l.starts_with("CAP REQ") => vec!["CAP * ACK :server-time sasl"],
            "AUTHENTICATE PLAIN" => vec!["AUTHENTICATE +"],
            l if l.starts_with("AUTHENTICATE ") => vec![":srv 903 alice :SASL ok"],
            "CAP END" => vec![":srv 001 alice :hi", ":srv 376 alice :end"],
            _ => vec![],
        })
        .await;
        let options = crate::scripted_server::options(port);
        let identity = Identity {
            password: Some("pw".into()),
            ..crate::scripted_server::alice()
        };
        let (_, _, registered) = connect("fake", &options, &identity, Default::default())
            .await
            .unwrap();
        assert!(registered.caps.contains("sasl"));
        let seen = server.await.unwrap();
        let expected = format!("AUTHENTICATE {}", base64(b"alice\0alice\0pw"));
        let auth = seen.iter().position(|l| *l == expected);
        let end = seen.iter().position(|l| l == "CAP END");
        assert!(auth.is_some() && end.is_some() && auth < end, "{seen:?}");
        assert!(!seen.iter().any(|l| l.contains("NickServ")), "{seen:?}");
    }

    /// Without SASL, the password identifies to NickServ once registered,
    /// unless the admin turned that off.
    #[tokio::test]
    async fn without_sasl_the_password_goes_to_nickserv() {
        for identify in [true, false] {
            let (port, server) = crate::scripted_server::start(|line| match line {
                "CAP LS 302" => vec!["CAP * LS :server-time"],
                l if l.starts_with("CAP REQ") => vec!["CAP * ACK :server-time"],
                "CAP END" => vec![":srv 001 alice :hi", ":srv 376 alice :end"],
                _ => vec![],
            })
            .await;
            let options = ServerOptions {
                nickserv_identify: identify,
                ..crate::scripted_server::options(port)
            };
            let identity = Identity {
                password: Some("pw".into()),
                ..crate::scripted_server::alice()
            };
            connect("fake", &options, &identity, Default::default())
                .await
                .unwrap();
            let seen = server.await.unwrap();
            let sent = seen
                .iter()
                .any(|l| l == "PRIVMSG NickServ :IDENTIFY alice pw");
            assert_eq!(sent, identify, "{seen:?}");
        }
    }

    /// With `port = 0`, refused TLS ports end in an error, never plaintext.
    #[tokio::test]
    async fn port_zero_never_falls_back_to_plaintext() {
        // Bound then dropped: nothing listens there, so it refuses.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = ServerOptions {
            address: Some("127.0.0.1".into()),
            port: 0,
            tls_ports: vec![closed],
            ..ServerOptions::default()
        };
        let identity = crate::scripted_server::alice();
        let Err(error) = connect("fake", &options, &identity, Default::default()).await else {
            panic!("connected without a server");
        };
        let text = error.to_string();
        assert!(matches!(error, ConnectError::NoPlaintext { .. }), "{text}");
        assert!(text.contains(&format!("{closed}:")), "{text}");
        assert!(text.contains("plaintext is disabled"), "{text}");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"nick\0nick\0pw"), "bmljawBuaWNrAHB3");
    }

    /// A socket that records each write it is given.
    struct RecordingSocket(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl tokio::io::AsyncWrite for RecordingSocket {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// As the user task sends: one line, then it waits (here: yields) before
    /// the next. The lines must still share writes, in order and whole.
    #[tokio::test]
    async fn lines_queued_one_at_a_time_share_writes() {
        let writes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let options = ServerOptions {
            throttle_burst: 100,
            ..ServerOptions::default()
        };
        let writer = LineWriter::spawn(RecordingSocket(writes.clone()), &options);
        for i in 0..10 {
            assert!(writer.send("PRIVMSG", &["#chan", &format!("line {i}")]));
            tokio::task::yield_now().await;
        }
        drop(writer);
        let expected: String = (0..10)
            .map(|i| format!("PRIVMSG #chan :line {i}\r\n"))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let written: Vec<u8> = writes.lock().unwrap().concat();
            if written.len() >= expected.len() || Instant::now() > deadline {
                assert_eq!(String::from_utf8(written).unwrap(), expected);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let count = writes.lock().unwrap().len();
        assert!(count <= 5, "10 lines took {count} writes");
    }
}
