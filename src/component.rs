//! The XEP-0114 link to the host server: connect, handshake, keepalive,
//! reconnect with backoff, and an outbound queue that loses nothing.
//!
//! The link is built from tokio-xmpp's public stream layer rather than its
//! `Component` type, for two reasons: `Component` ends the whole stream when
//! one stanza fails to parse (so any user could cut the gateway off by sending
//! a stanza with a bad attribute), and it gives no way to tell which stanzas
//! the server really received before a connection died.
//!
//! XEP-0114 has no acknowledgements, so the link makes its own: once 512
//! stanzas or 50 ms of them are unproven it pings the server, and since the
//! server handles a stream in order, the pong proves everything written
//! before the ping arrived. Stanzas not yet proven are written again after a
//! reconnect. A stanza may therefore arrive twice, never zero times.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, ReadError, StreamElementError, StreamHeader, Timeouts,
    XmppStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;
use tracing::{debug, error, info, warn};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ns;
use xmpp_parsers::ping::Ping;

use crate::link_socket::{LinkSocket, LinkWriter};
use crate::xmpp::wire::StanzaBytes;

/// Most stanzas written and not yet acknowledged; past this the link stops
/// taking new ones until the server catches up.
const WINDOW: usize = 4096;

/// How many unacknowledged stanzas make the link ask for an acknowledgement
/// at once, and how long it otherwise waits after the first one. Each ask
/// is a ping the server must route and answer; one per burst under load
/// would double the server's work per relayed message.
const ACK_BATCH: usize = 512;
const ACK_DELAY: Duration = Duration::from_millis(50);

/// The most of its write buffer the link keeps between bursts.
const WRITE_BUFFER_KEPT: usize = 64 * 1024;

/// Write `bytes` and flush them to the server.
async fn write_all(writer: &mut LinkWriter, bytes: &[u8]) -> Result<(), String> {
    writer.write_all(bytes).await.map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| e.to_string())
}

/// Settings of one link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The component's domain, e.g. `irc.example.org`.
    pub domain: String,
    pub secret: String,
    /// `host:port` of the server's component listener.
    pub server: String,
    /// The host server's domain, which answers the pings.
    pub host_domain: String,
    pub keepalive: Duration,
    pub response_timeout: Duration,
    /// Consecutive failed attempts before giving up; 0 retries forever.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// What the link reports to its router.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected and authenticated. `first` is false after a reconnect, when
    /// presences and room occupancy have to be restored.
    Up {
        first: bool,
    },
    Down,
    Stanza(Box<Stanza>),
    /// A well-formed element that is not a valid stanza; it deserves an error
    /// reply, and must not end the stream.
    Invalid {
        kind: &'static str,
        from: Option<String>,
        to: Option<String>,
        id: Option<String>,
        type_: Option<String>,
        reason: String,
    },
}

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("the server at {server} rejected the secret of component {domain}")]
    SecretRejected { domain: String, server: String },
    #[error("the server at {server} refused component {domain}: {reason}")]
    Refused {
        domain: String,
        server: String,
        reason: String,
    },
    #[error("cannot reach {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("giving up on {domain} after {attempts} failed attempts: {last}")]
    GaveUp {
        domain: String,
        attempts: u32,
        last: Box<LinkError>,
    },
}

/// Counters a test or an operator can read.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub connects: AtomicU64,
    pub pings_sent: AtomicU64,
    pub pongs: AtomicU64,
    pub stanzas_sent: AtomicU64,
    pub stanzas_resent: AtomicU64,
}

/// The router's end of a link.
pub struct LinkHandle {
    /// Stanzas to send. Dropping every clone of this closes the link cleanly,
    /// after what was queued has been delivered.
    pub outbound: mpsc::UnboundedSender<StanzaBytes>,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    pub stats: Arc<LinkStats>,
    pub task: tokio::task::JoinHandle<Result<(), LinkError>>,
}

type Stream = XmppStream<LinkSocket>;

/// Start a link task. `abort` ends it at once, even while disconnected.
pub fn spawn(config: LinkConfig, abort: watch::Receiver<bool>) -> LinkHandle {
    let (outbound, outbound_rx) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    let stats = Arc::new(LinkStats::default());
    let link = Link {
        config,
        outbound: outbound_rx,
        events: events_tx,
        stats: stats.clone(),
        unacked: VecDeque::new(),
        write_buffer: Vec::new(),
        abort,
        next_ping: 0,
    };
    let span = tracing::info_span!("link", gateway = %link.config.domain);
    let task = tokio::spawn(tracing::Instrument::instrument(link.run(), span));
    LinkHandle {
        outbound,
        events,
        stats,
        task,
    }
}

struct Link {
    config: LinkConfig,
    outbound: mpsc::UnboundedReceiver<StanzaBytes>,
    events: mpsc::UnboundedSender<LinkEvent>,
    stats: Arc<LinkStats>,
    /// Written to the current or a previous connection, not yet acknowledged.
    unacked: VecDeque<StanzaBytes>,
    /// Reused for each burst's bytes.
    write_buffer: Vec<u8>,
    abort: watch::Receiver<bool>,
    next_ping: u64,
}

/// Why a connected session ended.
enum Ended {
    /// The router dropped its sender and everything was delivered.
    Closed,
    Aborted,
    Lost(String),
}

/// An acknowledgement ping in flight: its id, how many of `unacked` it
/// covers, and when it must be answered by.
struct PendingAck {
    id: String,
    covers: usize,
    deadline: Instant,
}

impl Link {
    async fn run(mut self) -> Result<(), LinkError> {
        let mut attempts: u32 = 0;
        let mut first = true;
        loop {
            if *self.abort.borrow() {
                return Ok(());
            }
            match self.connect().await {
                Ok((stream, writer)) => {
                    attempts = 0;
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    info!(server = %self.config.server, "component link up");
                    let _ = self.events.send(LinkEvent::Up { first });
                    first = false;
                    match self.serve(stream, writer).await {
                        Ended::Closed | Ended::Aborted => return Ok(()),
                        Ended::Lost(reason) => {
                            warn!(%reason, unacked = self.unacked.len(), "component link lost");
                            let _ = self.events.send(LinkEvent::Down);
                        }
                    }
                }
                Err(e) => {
                    attempts += 1;
                    match &e {
                        LinkError::SecretRejected { .. } => {
                            error!("{e}: check the component secret in both configurations")
                        }
                        _ => warn!(attempt = attempts, "{e}"),
                    }
                    if self.config.max_attempts > 0 && attempts >= self.config.max_attempts {
                        error!(attempts, "giving up on the component link");
                        return Err(LinkError::GaveUp {
                            domain: self.config.domain.clone(),
                            attempts,
                            last: Box::new(e),
                        });
                    }
                }
            }
            let delay = backoff(
                attempts.max(1),
                self.config.backoff_initial,
                self.config.backoff_max,
            );
            debug!(?delay, "reconnecting after backoff");
            tokio::select! {
                _ = sleep(delay) => {}
                _ = self.abort.changed() => return Ok(()),
            }
        }
    }

    /// The stream, and the writer of stanzas straight to its socket.
    async fn connect(&self) -> Result<(Stream, LinkWriter), LinkError> {
        let cfg = &self.config;
        let unreachable = |reason: String| LinkError::Unreachable {
            server: cfg.server.clone(),
            reason,
        };
        let jid = Jid::new(&cfg.domain).map_err(|e| unreachable(e.to_string()))?;
        let timeouts = Timeouts {
            read_timeout: cfg.keepalive,
            response_timeout: cfg.response_timeout,
        };
        // Connected by hand rather than with tokio-xmpp's TcpServerConnector,
        // which leaves Nagle's algorithm on: small stanzas would then wait for
        // the previous segment's ACK, adding tens of milliseconds per message.
        let open = async {
            let tcp = TcpStream::connect(&cfg.server).await?;
            tcp.set_nodelay(true)?;
            let (socket, writer) = LinkSocket::new(tcp);
            let pending = initiate_stream(
                socket,
                ns::COMPONENT,
                StreamHeader {
                    to: Some(Cow::Borrowed(jid.domain().as_str())),
                    from: None,
                    id: None,
                },
                timeouts,
            )
            .await?;
            Ok::<_, std::io::Error>((pending, writer))
        };
        let (mut pending, writer) = tokio::time::timeout(cfg.response_timeout, open)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let header = pending.take_header();
        let stream_id = header
            .id
            .map(|id| id.into_owned())
            .ok_or_else(|| unreachable("the server sent no stream id".into()))?;
        let mut stream: Stream = pending.skip_features();
        let handshake = Handshake::from_stream_id_and_password(stream_id, &cfg.secret);
        stream
            .send(&XmppStreamElement::ComponentHandshake(handshake))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let deadline = Instant::now() + cfg.response_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .map_err(|_| unreachable("no answer to the handshake".into()))?;
            match next {
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                    return Ok((stream, writer))
                }
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(err)))) => {
                    let reason = format!("{:?}", err.0.condition);
                    return Err(if reason.contains("NotAuthorized") {
                        LinkError::SecretRejected {
                            domain: cfg.domain.clone(),
                            server: cfg.server.clone(),
                        }
                    } else {
                        LinkError::Refused {
                            domain: cfg.domain.clone(),
                            server: cfg.server.clone(),
                            reason,
                        }
                    });
                }
                Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Ok(other)) => {
                    return Err(unreachable(format!(
                        "unexpected answer to the handshake: {other:?}"
                    )))
                }
                Some(Err(e)) => return Err(unreachable(e.to_string())),
                None => return Err(unreachable("the server closed the stream".into())),
            }
        }
    }

    /// Run one connected session until it ends.
    async fn serve(&mut self, mut stream: Stream, mut writer: LinkWriter) -> Ended {
        // What a previous connection may have lost goes out first, in order.
        let resend = self.unacked.len();
        if resend > 0 {
            info!(
                count = resend,
                "re-sending stanzas the server had not acknowledged"
            );
            self.stats
                .stanzas_resent
                .fetch_add(resend as u64, Ordering::Relaxed);
            let mut bytes = Vec::new();
            for stanza in &self.unacked {
                bytes.extend_from_slice(stanza.as_bytes());
            }
            if let Err(e) = write_all(&mut writer, &bytes).await {
                return Ended::Lost(e);
            }
        }
        let mut ack: Option<PendingAck> = None;
        let mut ack_due: Option<Instant> = None;
        if resend > 0 {
            match self.send_ping(&mut stream, resend).await {
                Ok(p) => ack = Some(p),
                Err(e) => return Ended::Lost(e),
            }
        }
        let mut outbound_open = true;
        loop {
            let ack_deadline = ack.as_ref().map(|a| a.deadline);
            let mut ask_now = false;
            tokio::select! {
                biased;
                _ = self.abort.changed() => {
                    let _ = SinkExt::<&XmppStreamElement>::close(&mut stream).await;
                    return Ended::Aborted;
                }
                read = stream.next() => match read {
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(stanza)))) => {
                        if let Some(done) = ack.as_ref().filter(|a| is_pong(&stanza, &a.id)) {
                            self.stats.pongs.fetch_add(1, Ordering::Relaxed);
                            self.unacked.drain(..done.covers);
                            ack = None;
                        } else if !is_stray_pong(&stanza) {
                            let _ = self.events.send(LinkEvent::Stanza(Box::new(stanza)));
                        }
                    }
                    Some(Ok(FallibleStreamElement::Err(err))) => self.report_invalid(err),
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(err)))) => {
                        return Ended::Lost(format!("stream error from the server: {:?}", err.0.condition));
                    }
                    Some(Ok(FallibleStreamElement::Ok(other))) => {
                        debug!(?other, "ignoring an unexpected stream element");
                    }
                    // Silence: prove the link is alive before the hard timeout.
                    Some(Err(ReadError::SoftTimeout)) => ask_now = true,
                    Some(Err(ReadError::ParseError(e))) => {
                        warn!(error = %e, "skipping an element the server sent that does not parse");
                    }
                    Some(Err(ReadError::HardError(e))) => return Ended::Lost(e.to_string()),
                    Some(Err(ReadError::StreamFooterReceived)) | None => {
                        return Ended::Lost("the server closed the stream".into());
                    }
                },
                next = self.outbound.recv(), if outbound_open && self.unacked.len() < WINDOW => {
                    match next {
                        Some(stanza) => {
                            if let Err(e) = self.write_burst(&mut writer, stanza).await {
                                return Ended::Lost(e);
                            }
                        }
                        None => outbound_open = false,
                    }
                }
                _ = sleep_until_opt(ack_due), if ack.is_none() => ask_now = true,
                _ = sleep_until_opt(ack_deadline) => {
                    return Ended::Lost("the server did not answer a ping in time".into());
                }
            }
            if ack.is_some() {
                continue;
            }
            // Ask at once when much is waiting, when the link is idle-checked
            // or closing; otherwise a little later, so that one ping covers a
            // whole stretch of traffic.
            let waiting = self.unacked.len();
            if ask_now || waiting >= ACK_BATCH || (!outbound_open && waiting > 0) {
                ack_due = None;
                match self.send_ping(&mut stream, waiting).await {
                    Ok(p) => ack = Some(p),
                    Err(e) => return Ended::Lost(e),
                }
            } else if waiting > 0 {
                ack_due.get_or_insert_with(|| Instant::now() + ACK_DELAY);
            } else {
                ack_due = None;
            }
            if !outbound_open && self.unacked.is_empty() {
                info!("outbound queue drained; closing the component stream");
                let _ = SinkExt::<&XmppStreamElement>::close(&mut stream).await;
                return Ended::Closed;
            }
        }
    }

    /// Write one stanza and whatever else is already queued behind it, in
    /// one write (see `xmpp::wire` for why not through tokio-xmpp).
    async fn write_burst(
        &mut self,
        writer: &mut LinkWriter,
        first: StanzaBytes,
    ) -> Result<(), String> {
        let mut bytes = std::mem::take(&mut self.write_buffer);
        bytes.clear();
        let mut next = Some(first);
        while let Some(stanza) = next.take() {
            bytes.extend_from_slice(stanza.as_bytes());
            self.unacked.push_back(stanza);
            self.stats.stanzas_sent.fetch_add(1, Ordering::Relaxed);
            if self.unacked.len() < WINDOW {
                next = self.outbound.try_recv().ok();
            }
        }
        let written = write_all(writer, &bytes).await;
        // Kept for the next burst, unless a large one made it large.
        if bytes.capacity() <= WRITE_BUFFER_KEPT {
            self.write_buffer = bytes;
        }
        written
    }

    async fn send_ping(
        &mut self,
        stream: &mut Stream,
        covers: usize,
    ) -> Result<PendingAck, String> {
        self.next_ping += 1;
        let id = format!("estuary-ack-{}", self.next_ping);
        let from = BareJid::new(&self.config.domain).map_err(|e| e.to_string())?;
        let to = BareJid::new(&self.config.host_domain).map_err(|e| e.to_string())?;
        let ping = Iq::from_get(id.clone(), Ping)
            .with_from(Jid::from(from))
            .with_to(Jid::from(to));
        stream
            .send(&XmppStreamElement::Stanza(Stanza::Iq(ping)))
            .await
            .map_err(|e| e.to_string())?;
        self.stats.pings_sent.fetch_add(1, Ordering::Relaxed);
        Ok(PendingAck {
            id,
            covers,
            deadline: Instant::now() + self.config.response_timeout,
        })
    }

    fn report_invalid(&self, err: StreamElementError) {
        match err {
            StreamElementError::InvalidStanza {
                name,
                header,
                error,
                ..
            } => {
                let kind = match name.to_ncname().as_str() {
                    "iq" => "iq",
                    "message" => "message",
                    _ => "presence",
                };
                warn!(kind, from = ?header.from, %error, "received an invalid stanza");
                let _ = self.events.send(LinkEvent::Invalid {
                    kind,
                    from: header.from,
                    to: header.to,
                    id: header.id,
                    type_: header.type_,
                    reason: error.to_string(),
                });
            }
            other => warn!(error = %other, "received an invalid element"),
        }
    }
}

/// The answer to our own ping `id`, whatever its type: any answer proves receipt.
fn is_pong(stanza: &Stanza, id: &str) -> bool {
    match stanza {
        Stanza::Iq(Iq::Result { id: got, .. }) | Stanza::Iq(Iq::Error { id: got, .. }) => got == id,
        _ => false,
    }
}

/// A late answer to a ping of an earlier connection; not for the router.
fn is_stray_pong(stanza: &Stanza) -> bool {
    match stanza {
        Stanza::Iq(Iq::Result { id, .. }) | Stanza::Iq(Iq::Error { id, .. }) => {
            id.starts_with("estuary-ack-")
        }
        _ => false,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Exponential backoff with jitter, so that many gateways restarting together
/// do not reconnect in lockstep.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(max);
    let jitter: f64 = rand::rng().random_range(0.5..=1.0);
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 1..20 {
            let d = backoff(attempt, initial, max);
            let ceiling = (initial * 2u32.pow((attempt - 1).min(16))).min(max);
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
        }
    }
}
