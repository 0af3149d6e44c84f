//! The stand-in gateway: a second component of the same Prosody that sends
//! exactly the stanzas the issue asks of an IRC gateway, with no network
//! behind it and next to no work of its own.
//!
//! It answers one question the gateway's own phases cannot: how fast could
//! any gateway go through this Prosody, with these messages? Its IRC →
//! XMPP phase writes the gateway's message (groupchat, from an in-room JID,
//! an `id` and an XEP-0359 stanza-id, both 22 characters as Estuary's) to
//! an XMPP client; its XMPP → IRC phase counts each groupchat message from
//! the client as "sent to the network" and reflects it at once, as MUC
//! requires, under the client's id with a stanza-id. Both run windowed as
//! the gateway's phases do, in the same rounds, against the same ceiling.
//!
//! The stream is read and written by hand rather than through an XML
//! library so that the stand-in costs as little as possible: it must be
//! cheaper than any real gateway to be the bound. It reads only what
//! Prosody writes to it, which is well-formed and single-quoted.

use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The stand-in's component domain, beside the gateway's in Prosody.
pub const DOMAIN: &str = "bound.localhost";
pub const SECRET: &str = "bound-secret";
/// Its one room, and the nick its IRC-side messages come from.
pub const ROOM: &str = "#bench%localhost@bound.localhost";
const NICK: &str = "bob";

pub struct StandIn {
    socket: TcpStream,
    /// What was read and not yet parsed (a stanza cut by a read).
    pending: Vec<u8>,
    next_id: u64,
}

/// One groupchat message Prosody handed the stand-in.
pub struct Incoming {
    pub from: String,
    pub id: String,
    pub body: String,
}

impl StandIn {
    /// Connects to Prosody's component port as [`DOMAIN`] (XEP-0114).
    pub async fn connect(port: u16) -> Result<StandIn, String> {
        let mut socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        socket.set_nodelay(true).map_err(|e| e.to_string())?;
        socket
            .write_all(
                format!(
                    "<stream:stream xmlns='jabber:component:accept' \
                     xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}' xml:lang='en'>"
                )
                .as_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut stand_in = StandIn {
            socket,
            pending: Vec::new(),
            next_id: 0,
        };
        let header = stand_in.read_until(b"<stream:stream").await?;
        let header = stand_in.read_more_until(header, b">").await?;
        let id = attribute(&header, "id").ok_or("no stream id from Prosody")?;
        let mut sha = Sha1::new();
        sha.update(id.as_bytes());
        sha.update(SECRET.as_bytes());
        let digest: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
        stand_in
            .socket
            .write_all(format!("<handshake>{digest}</handshake>").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let answer = stand_in.read_until(b"handshake").await?;
        if answer.contains("stream:error") {
            return Err(format!("handshake refused: {answer}"));
        }
        stand_in.pending.clear();
        Ok(stand_in)
    }

    async fn read_until(&mut self, needle: &[u8]) -> Result<String, String> {
        self.read_more_until(String::new(), needle).await
    }

    async fn read_more_until(&mut self, mut seen: String, needle: &[u8]) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !seen.as_bytes().windows(needle.len()).any(|w| w == needle) {
            let n = tokio::time::timeout_at(deadline, self.socket.read(&mut buf))
                .await
                .map_err(|_| "Prosody did not answer".to_owned())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("Prosody closed the stream: {seen}"));
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok(seen)
    }

    /// A fresh 22-character id, as long as Estuary's.
    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("standin{:015}", self.next_id)
    }

    /// The gateway's message from IRC: `body` said by [`NICK`] in
    /// [`ROOM`], to the client `to`.
    pub fn message_from_irc(&mut self, to: &str, body: &str) -> String {
        let id = self.fresh_id();
        format!(
            "<message from='{ROOM}/{NICK}' to='{to}' type='groupchat' id='{id}'>\
             <body>{body}</body><stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='{id}'/></message>"
        )
    }

    /// The reflection of a client's message: the client's id kept, a
    /// stanza-id given, from the sender's in-room JID.
    pub fn reflection(&mut self, of: &Incoming, nick: &str) -> String {
        let stanza_id = self.fresh_id();
        format!(
            "<message from='{ROOM}/{nick}' to='{}' type='groupchat' id='{}'>\
             <body>{}</body><stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='{stanza_id}'/></message>",
            of.from, of.id, of.body
        )
    }

    pub async fn write(&mut self, xml: &str) {
        if let Err(e) = self.socket.write_all(xml.as_bytes()).await {
            panic!("the stand-in lost its stream: {e}");
        }
    }

    /// The messages that arrive within `wait` (none if nothing does).
    pub async fn read_messages(&mut self, wait: Duration) -> Vec<Incoming> {
        let mut buf = [0u8; 65536];
        match tokio::time::timeout(wait, self.socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
            _ => return Vec::new(),
        }
        let mut messages = Vec::new();
        const END: &[u8] = b"</message>";
        let mut consumed = 0;
        while let Some(end) = find(&self.pending[consumed..], END) {
            let stanza = &self.pending[consumed..consumed + end + END.len()];
            consumed += end + END.len();
            let stanza = String::from_utf8_lossy(stanza);
            let Some(start) = stanza.find("<message") else {
                continue;
            };
            let stanza = &stanza[start..];
            let top = &stanza[..stanza.find('>').unwrap_or(stanza.len())];
            let body = between(stanza, "<body>", "</body>");
            if let (Some(from), Some(body)) = (attribute(top, "from"), body) {
                messages.push(Incoming {
                    from,
                    id: attribute(top, "id").unwrap_or_default(),
                    body: body.to_owned(),
                });
            }
        }
        self.pending.drain(..consumed);
        messages
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = start + text[start..].find(close)?;
    Some(&text[start..end])
}

/// The value of `name='…'` (or `name="…"`) in a start tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(at) = tag.find(&key) {
            let rest = &tag[at + key.len()..];
            return rest.find(quote).map(|end| rest[..end].to_owned());
        }
    }
    None
}
