//! A raw XMPP client (c2s) for driving tests.
//!
//! It deliberately works on `minidom::Element`s rather than xmpp-parsers'
//! `Message`/`Presence`/`Iq`: the build enables tokio-xmpp's `component`
//! feature, which makes those types serialise in the
//! `jabber:component:accept` namespace, wrong for a client. The XML stream
//! layer of tokio-xmpp is used for framing, SASL PLAIN for login.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::stream_features::StreamFeatures;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};

/// Default namespace of c2s stanzas.
pub const NS_CLIENT: &str = "jabber:client";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// How long login steps and [`XmppClient::iq`] wait for the server.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

type Io = BufStream<TcpStream>;
type Stream = XmlStream<Io, Element>;

/// A logged-in, resource-bound c2s session.
pub struct XmppClient {
    stream: Stream,
    jid: String,
    /// Stanzas read while `expect` looked for something else.
    backlog: VecDeque<Element>,
    /// Why the stream ended, once it has.
    closed: Option<String>,
}

impl XmppClient {
    /// Connects to 127.0.0.1:`port`, logs in as `user@domain` with SASL
    /// PLAIN and binds `resource`. Sends no initial presence.
    ///
    /// Panics if any step fails.
    pub async fn connect(
        port: u16,
        user: &str,
        domain: &str,
        password: &str,
        resource: &str,
    ) -> XmppClient {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        let header = || StreamHeader {
            to: Some(domain.to_owned().into()),
            ..StreamHeader::default()
        };
        let pending = initiate_stream(BufStream::new(tcp), NS_CLIENT, header(), timeouts())
            .await
            .expect("open c2s stream");
        let (features, mut stream) = recv_features(pending.recv_features().await);
        assert!(
            features.sasl_mechanisms.contains("PLAIN"),
            "server does not offer SASL PLAIN: {:?}",
            features.sasl_mechanisms
        );

        authenticate(&mut stream, user, password).await;
        let pending = stream
            .initiate_reset()
            .send_header(header())
            .await
            .expect("restart stream after SASL");
        let (features, stream) = recv_features(pending.recv_features().await);

        let mut client = XmppClient {
            stream,
            jid: String::new(),
            backlog: VecDeque::new(),
            closed: None,
        };
        client.jid = client.bind(resource).await;
        if offers_mandatory_session(&features) {
            client
                .iq(
                    domain,
                    "set",
                    el(&format!("<session xmlns='{NS_SESSION}'/>")),
                )
                .await;
        }
        client
    }

    /// Full JID, `user@domain/resource`, as assigned by the server.
    pub fn jid(&self) -> String {
        self.jid.clone()
    }

    /// Bare JID, `user@domain`.
    pub fn bare(&self) -> String {
        bare_jid(&self.jid).to_owned()
    }

    /// Sends one stanza (or nonza). Panics if the connection is broken.
    pub async fn send(&mut self, el: Element) {
        self.stream
            .send(&el)
            .await
            .unwrap_or_else(|e| panic!("{}: send {}: {e}", self.jid, String::from(&el)));
    }

    /// Sends XML text. It is parsed with [`el`] first (the stream layer
    /// only writes whole elements), so it must be exactly one well-formed
    /// element; elements without `xmlns` get `jabber:client`.
    pub async fn send_raw(&mut self, xml: &str) {
        self.send(el(xml)).await;
    }

    /// Sends `<message type='chat'>` with a body to `to`.
    pub async fn message(&mut self, to: &str, text: &str) {
        let message = el(&format!(
            "<message to='{}' type='chat'><body>{}</body></message>",
            escape(to),
            escape(text)
        ));
        self.send(message).await;
    }

    /// Sends `<presence/>` with optional `to` and `type` attributes;
    /// `presence(None, None)` is initial presence.
    pub async fn presence(&mut self, to: Option<&str>, type_: Option<&str>) {
        let mut attrs = String::new();
        if let Some(to) = to {
            attrs.push_str(&format!(" to='{}'", escape(to)));
        }
        if let Some(type_) = type_ {
            attrs.push_str(&format!(" type='{}'", escape(type_)));
        }
        self.send(el(&format!("<presence{attrs}/>"))).await;
    }

    /// The next unconsumed stanza: the oldest one `expect` set aside, or
    /// else the next one from the server. `None` on timeout or when the
    /// stream has ended (see [`XmppClient::is_closed`]).
    pub async fn recv(&mut self, timeout: Duration) -> Option<Element> {
        if let Some(el) = self.backlog.pop_front() {
            return Some(el);
        }
        let deadline = Instant::now() + timeout;
        timeout_at(deadline, self.read()).await.ok().flatten()
    }

    /// Returns the first stanza matching `pred`, looking at set-aside
    /// stanzas first and then reading from the server. Stanzas that do not
    /// match are set aside for later `expect`/`recv` calls.
    ///
    /// Panics on timeout or end of stream, listing what did arrive.
    pub async fn expect(&mut self, timeout: Duration, pred: impl Fn(&Element) -> bool) -> Element {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).expect("index from position");
        }
        let deadline = Instant::now() + timeout;
        loop {
            match timeout_at(deadline, self.read()).await {
                Ok(Some(el)) if pred(&el) => return el,
                Ok(Some(el)) => self.backlog.push_back(el),
                Ok(None) => self.fail_expect("the stream ended"),
                Err(_) => self.fail_expect(&format!("nothing matched within {timeout:?}")),
            }
        }
    }

    /// Panics if a stanza matching `pred` arrives within `wait`; others
    /// are set aside as `expect` does.
    pub async fn expect_none(&mut self, wait: Duration, pred: impl Fn(&Element) -> bool) {
        if let Some(el) = self.backlog.iter().find(|el| pred(el)) {
            panic!("unexpected {}", String::from(el));
        }
        let deadline = Instant::now() + wait;
        while let Ok(Some(el)) = timeout_at(deadline, self.read()).await {
            assert!(!pred(&el), "unexpected {}", String::from(&el));
            self.backlog.push_back(el);
        }
    }

    /// disco#items of `to`: the whole reply.
    pub async fn disco_items(&mut self, to: &str) -> Element {
        self.iq(
            to,
            "get",
            el("<query xmlns='http://jabber.org/protocol/disco#items'/>"),
        )
        .await
    }

    /// Sends an iq of `type_` ("get"/"set") carrying `payload` to `to` and
    /// returns the whole reply (type result or error). Waits 10 s.
    pub async fn iq(&mut self, to: &str, type_: &str, payload: Element) -> Element {
        let id = next_id();
        let mut iq = el(&format!(
            "<iq to='{}' type='{}' id='{id}'/>",
            escape(to),
            escape(type_)
        ));
        iq.append_child(payload);
        self.send(iq).await;
        self.expect(REPLY_TIMEOUT, |el| is_reply_to(el, &id)).await
    }

    /// The features `to` advertises in its disco#info.
    pub async fn disco_features(&mut self, to: &str) -> Vec<String> {
        const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
        let info = self
            .iq(to, "get", el(&format!("<query xmlns='{DISCO_INFO}'/>")))
            .await;
        find_child(&info, "query", DISCO_INFO)
            .map(|query| {
                query
                    .children()
                    .filter(|c| c.name() == "feature")
                    .map(|f| attr(f, "var").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs the XEP-0050 command `node` on `to` and returns the form it
    /// shows (the `<command/>`, as text), without submitting it.
    pub async fn command_form(&mut self, to: &str, node: &str) -> String {
        let form = self
            .iq(
                to,
                "set",
                el(&format!(
                    "<command xmlns='{NS_COMMANDS}' node='{node}' action='execute'/>"
                )),
            )
            .await;
        assert_eq!(attr(&form, "type"), "result", "{}", String::from(&form));
        let command = find_child(&form, "command", NS_COMMANDS).expect("a command");
        assert_eq!(
            attr(command, "status"),
            "executing",
            "{}",
            String::from(&form)
        );
        String::from(command)
    }

    /// Runs the XEP-0050 command `node` on `to` and submits its form with
    /// `fields` (data form `<field/>`s); returns the form it showed and the
    /// iq answering the submission, which must be a result.
    pub async fn run_command(&mut self, to: &str, node: &str, fields: &str) -> (String, Element) {
        let form = self.command_form(to, node).await;
        let session = attr(&el(&form), "sessionid").to_owned();
        let done = self.submit_command(to, node, &session, fields).await;
        assert_eq!(attr(&done, "type"), "result", "{}", String::from(&done));
        (form, done)
    }

    /// Submits a form with `fields` to the XEP-0050 command `node` on `to`,
    /// in its command session `session`; returns the iq that answers,
    /// whatever its type.
    pub async fn submit_command(
        &mut self,
        to: &str,
        node: &str,
        session: &str,
        fields: &str,
    ) -> Element {
        self.iq(
            to,
            "set",
            el(&format!(
                "<command xmlns='{NS_COMMANDS}' node='{node}' sessionid='{session}'>\
                 <x xmlns='jabber:x:data' type='submit'>{fields}</x></command>"
            )),
        )
        .await
    }

    /// Submits an XEP-0077 registration data form with `fields` (in order)
    /// to `gateway`; returns the iq reply.
    pub async fn submit_registration(&mut self, gateway: &str, fields: &[(&str, &str)]) -> Element {
        let fields: String = fields
            .iter()
            .map(|(var, value)| {
                format!(
                    "<field var='{}'><value>{}</value></field>",
                    escape(var),
                    escape(value)
                )
            })
            .collect();
        self.iq(
            gateway,
            "set",
            el(&format!(
                "<query xmlns='jabber:iq:register'>\
                 <x xmlns='jabber:x:data' type='submit'>{fields}</x></query>"
            )),
        )
        .await
    }

    /// A MAM query (XEP-0313 v2) to `to`, with `fields` in its data form (no
    /// form when empty) and an RSM `set` (may be empty). Returns the
    /// `<result/>`s, each checked to come from `to` and to answer this query,
    /// and the iq's reply (result or error). Waits 10 s for each stanza.
    pub async fn mam_query(
        &mut self,
        to: &str,
        fields: &str,
        set: &str,
    ) -> (Vec<Element>, Element) {
        const MAM: &str = "urn:xmpp:mam:2";
        let id = next_id();
        let form = if fields.is_empty() {
            String::new()
        } else {
            format!(
                "<x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>{fields}</x>"
            )
        };
        self.send(el(&format!(
            "<iq to='{}' type='set' id='{id}'><query xmlns='{MAM}' queryid='q-{id}'>{form}{set}</query></iq>",
            escape(to)
        )))
        .await;
        let mut results = Vec::new();
        loop {
            let s = self
                .recv(REPLY_TIMEOUT)
                .await
                .expect("an answer to the MAM query");
            if is_reply_to(&s, &id) {
                return (results, s);
            }
            if let Some(result) = find_child(&s, "result", MAM) {
                assert_eq!(attr(&s, "from"), to, "a MAM result from elsewhere");
                assert_eq!(attr(result, "queryid"), format!("q-{id}"));
                results.push(result.clone());
            }
        }
    }

    /// True once the server closed the stream or the connection broke.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Sends the stream footer and closes our side of the connection.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Binds `resource` and returns the full JID the server assigned.
    async fn bind(&mut self, resource: &str) -> String {
        let bind = el(&format!(
            "<bind xmlns='{NS_BIND}'><resource>{}</resource></bind>",
            escape(resource)
        ));
        let id = next_id();
        let mut iq = el(&format!("<iq type='set' id='{id}'/>"));
        iq.append_child(bind);
        self.send(iq).await;
        let reply = self.expect(REPLY_TIMEOUT, |el| is_reply_to(el, &id)).await;
        find_child(&reply, "bind", NS_BIND)
            .and_then(|bind| find_child(bind, "jid", NS_BIND))
            .map(Element::text)
            .unwrap_or_else(|| panic!("resource binding failed: {}", String::from(&reply)))
    }

    /// Reads the next stanza from the server, or `None` once the stream
    /// has ended. Soft timeouts and unparsable elements are skipped.
    ///
    /// Cancel-safe: the stream keeps partial parse state in itself.
    async fn read(&mut self) -> Option<Element> {
        if self.closed.is_some() {
            return None;
        }
        loop {
            let reason = match self.stream.next().await {
                Some(Ok(el)) => return Some(el),
                Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Err(ReadError::ParseError(e))) => {
                    eprintln!("{}: skipping unparsable element: {e}", self.jid);
                    continue;
                }
                Some(Err(ReadError::StreamFooterReceived)) => "server closed the stream".into(),
                Some(Err(ReadError::HardError(e))) => format!("connection error: {e}"),
                None => "connection closed".into(),
            };
            self.closed = Some(reason);
            return None;
        }
    }

    fn fail_expect(&self, why: &str) -> ! {
        let received: Vec<String> = self.backlog.iter().map(String::from).collect();
        panic!(
            "{}: expected stanza not received: {why}{}.\nUnmatched stanzas ({}):\n{}",
            self.jid,
            self.closed
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            received.len(),
            received.join("\n")
        );
    }
}

/// Parses an XML snippet into an element. Elements without an `xmlns`
/// get `jabber:client`, so stanzas can be written tersely:
/// `el("<message to='a@b'><body>hi</body></message>")`.
pub fn el(xml: &str) -> Element {
    Element::from_reader_with_prefixes(xml.as_bytes(), NS_CLIENT.to_owned())
        .unwrap_or_else(|e| panic!("invalid XML {xml:?}: {e}"))
}

/// The first child named `name` in namespace `ns`.
pub fn find_child<'a>(el: &'a Element, name: &str, ns: &str) -> Option<&'a Element> {
    el.get_child(name, ns)
}

/// Attribute `name` of `el`, or "" when absent (terse in assertions).
pub fn attr<'a>(el: &'a Element, name: &'a str) -> &'a str {
    el.attr(name).unwrap_or("")
}

/// Text of a `jabber:client` `<body/>` child, if any.
pub fn body(el: &Element) -> Option<String> {
    find_child(el, "body", NS_CLIENT).map(Element::text)
}

/// The XEP-0359 stanza-id a message was given (panics when it has none).
pub fn stanza_id(el: &Element) -> String {
    attr(
        find_child(el, "stanza-id", "urn:xmpp:sid:0").expect("a stanza-id"),
        "id",
    )
    .to_owned()
}

/// A XEP-0425 moderation request: retract the message with this stanza-id.
pub fn moderation(stanza_id: &str) -> Element {
    el(&format!(
        "<moderate xmlns='urn:xmpp:message-moderate:1' id='{stanza_id}'>\
         <retract xmlns='urn:xmpp:message-retract:1'/></moderate>"
    ))
}

/// `user@domain` part of a JID (strips any resource).
pub fn bare_jid(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// Escapes text for XML content or a quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `el` is the result or error iq answering request `id`.
fn is_reply_to(el: &Element, id: &str) -> bool {
    el.name() == "iq"
        && el.attr("id") == Some(id)
        && matches!(el.attr("type"), Some("result" | "error"))
}

/// Stanza ids unique within the process.
fn next_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("world-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Long read timeouts: test clients may idle for minutes and nobody
/// answers our (non-existent) keep-alives, so a hard timeout would only
/// produce confusing failures.
fn timeouts() -> Timeouts {
    Timeouts {
        read_timeout: Duration::from_secs(3600),
        response_timeout: Duration::from_secs(3600),
    }
}

/// Unwraps the features of a freshly (re)started stream.
fn recv_features(
    result: Result<(StreamFeatures, Stream), tokio_xmpp::xmlstream::RecvFeaturesError>,
) -> (StreamFeatures, Stream) {
    result.unwrap_or_else(|e| panic!("receiving stream features failed: {e}"))
}

/// Legacy RFC 3921 session establishment is only needed when the server
/// offers it without marking it `<optional/>`.
fn offers_mandatory_session(features: &StreamFeatures) -> bool {
    features
        .others
        .iter()
        .any(|f| f.is("session", NS_SESSION) && !f.has_child("optional", NS_SESSION))
}

/// SASL PLAIN login; panics with the server's `<failure/>` if refused.
async fn authenticate(stream: &mut Stream, user: &str, password: &str) {
    let token = base64(format!("\0{user}\0{password}").as_bytes());
    let auth = el(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>"
    ));
    stream.send(&auth).await.expect("send SASL auth");
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let reply = loop {
        match timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(el))) => break el,
            Ok(Some(Err(ReadError::SoftTimeout))) => continue,
            Ok(other) => panic!("SASL: stream failed: {other:?}"),
            Err(_) => panic!("SASL: no answer within {REPLY_TIMEOUT:?}"),
        }
    };
    assert!(
        reply.is("success", NS_SASL),
        "SASL PLAIN login of {user} refused: {}",
        String::from(&reply)
    );
}

/// Standard base64 with padding (RFC 4648), as SASL needs.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
