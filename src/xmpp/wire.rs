//! The bytes of an outgoing stanza on the component stream.
//!
//! Written by hand because xso's serialiser, which tokio-xmpp uses, costs
//! about 6 µs for a one-line groupchat message (measured: its iterator
//! states are moved on every step), a quarter of the gateway's CPU per
//! relayed message; this writer takes a small fraction of that. Messages
//! and presences, nearly all the traffic, are written from their typed
//! fields; anything else goes through minidom's `Element` first.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::{Element, Node};
use xmpp_parsers::presence::{Presence, Show, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;

/// The namespace of stanzas on a component stream (XEP-0114).
const NS_COMPONENT: &str = "jabber:component:accept";
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// One stanza, serialised for the component stream. Stanzas are queued for
/// the link in this form: a few hundred bytes in one allocation, where the
/// parsed stanza is a tree of a dozen, and a burst (a join into a busy
/// channel sends a presence per occupant) queues thousands of them.
#[derive(Debug, Clone)]
pub struct StanzaBytes(Box<[u8]>);

impl StanzaBytes {
    pub fn of(stanza: &Stanza) -> StanzaBytes {
        // Written into a buffer the thread keeps, then copied once into an
        // allocation of the exact size, instead of growing a fresh `Vec` and
        // shrinking it (three allocations per stanza).
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|out| {
            out.clear();
            write_stanza(stanza, out);
            let bytes = StanzaBytes(Box::from(&out[..]));
            if out.capacity() > 64 * 1024 {
                *out = Vec::new();
            }
            bytes
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Append the serialised `stanza` to `out`.
pub fn write_stanza(stanza: &Stanza, out: &mut Vec<u8>) {
    match stanza {
        Stanza::Message(m) => write_message(m, out),
        Stanza::Presence(p) => write_presence(p, out),
        Stanza::Iq(iq) => write_iq(iq, out),
    }
}

fn write_message(m: &Message, out: &mut Vec<u8>) {
    open(out, "message");
    addressing(
        out,
        m.from.as_ref(),
        m.to.as_ref(),
        m.id.as_ref().map(|id| id.0.as_str()),
    );
    let type_ = match m.type_ {
        MessageType::Chat => Some("chat"),
        MessageType::Error => Some("error"),
        MessageType::Groupchat => Some("groupchat"),
        MessageType::Headline => Some("headline"),
        MessageType::Normal => None,
    };
    if let Some(type_) = type_ {
        attribute(out, "type", type_);
    }
    out.push(b'>');
    for (lang, subject) in &m.subjects {
        text_child(out, "subject", lang, subject);
    }
    for (lang, body) in &m.bodies {
        text_child(out, "body", lang, body);
    }
    if let Some(thread) = &m.thread {
        out.extend_from_slice(b"<thread");
        if let Some(parent) = &thread.parent {
            attribute(out, "parent", parent);
        }
        out.push(b'>');
        text(out, &thread.id);
        out.extend_from_slice(b"</thread>");
    }
    for payload in &m.payloads {
        element(out, payload, NS_COMPONENT);
    }
    out.extend_from_slice(b"</message>");
}

fn write_presence(p: &Presence, out: &mut Vec<u8>) {
    open(out, "presence");
    addressing(out, p.from.as_ref(), p.to.as_ref(), p.id.as_deref());
    let type_ = match p.type_ {
        PresenceType::None => None,
        PresenceType::Error => Some("error"),
        PresenceType::Probe => Some("probe"),
        PresenceType::Subscribe => Some("subscribe"),
        PresenceType::Subscribed => Some("subscribed"),
        PresenceType::Unavailable => Some("unavailable"),
        PresenceType::Unsubscribe => Some("unsubscribe"),
        PresenceType::Unsubscribed => Some("unsubscribed"),
    };
    if let Some(type_) = type_ {
        attribute(out, "type", type_);
    }
    out.push(b'>');
    if let Some(show) = &p.show {
        let show = match show {
            Show::Away => "away",
            Show::Chat => "chat",
            Show::Dnd => "dnd",
            Show::Xa => "xa",
        };
        out.extend_from_slice(b"<show>");
        out.extend_from_slice(show.as_bytes());
        out.extend_from_slice(b"</show>");
    }
    for (lang, status) in &p.statuses {
        text_child(out, "status", lang, status);
    }
    if p.priority.0 != 0 {
        out.extend_from_slice(format!("<priority>{}</priority>", p.priority.0).as_bytes());
    }
    for payload in &p.payloads {
        element(out, payload, NS_COMPONENT);
    }
    out.extend_from_slice(b"</presence>");
}

fn write_iq(iq: &Iq, out: &mut Vec<u8>) {
    let (type_, from, to, id, payload) = match iq {
        Iq::Get {
            from,
            to,
            id,
            payload,
        } => ("get", from, to, id, Some(payload)),
        Iq::Set {
            from,
            to,
            id,
            payload,
        } => ("set", from, to, id, Some(payload)),
        Iq::Result {
            from,
            to,
            id,
            payload,
        } => ("result", from, to, id, payload.as_ref()),
        // Rare, and its error is typed: through minidom.
        Iq::Error { .. } => {
            element(out, &Element::from(iq.clone()), NS_COMPONENT);
            return;
        }
    };
    open(out, "iq");
    addressing(out, from.as_ref(), to.as_ref(), Some(id));
    attribute(out, "type", type_);
    match payload {
        Some(payload) => {
            out.push(b'>');
            element(out, payload, NS_COMPONENT);
            out.extend_from_slice(b"</iq>");
        }
        None => out.extend_from_slice(b"/>"),
    }
}

/// `<name`, the head of a stanza. Its namespace is the stream's default
/// (`jabber:component:accept`, declared in the stream header), so it is not
/// declared again: that is 32 bytes less per stanza, and one namespace
/// declaration less for the server's parser (in Prosody the saving in CPU
/// was within the noise of `benches/prosody_stanza_cost.py`).
fn open(out: &mut Vec<u8>, name: &str) {
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
}

fn addressing(out: &mut Vec<u8>, from: Option<&Jid>, to: Option<&Jid>, id: Option<&str>) {
    if let Some(from) = from {
        attribute(out, "from", from.as_str());
    }
    if let Some(to) = to {
        attribute(out, "to", to.as_str());
    }
    if let Some(id) = id {
        attribute(out, "id", id);
    }
}

fn text_child(out: &mut Vec<u8>, name: &str, lang: &str, value: &str) {
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    if !lang.is_empty() {
        attribute(out, "xml:lang", lang);
    }
    out.push(b'>');
    text(out, value);
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
}

/// An element and its children; `xmlns` is written where the namespace
/// differs from the parent's.
fn element(out: &mut Vec<u8>, el: &Element, parent_ns: &str) {
    let ns = el.ns();
    out.push(b'<');
    out.extend_from_slice(el.name().as_bytes());
    if ns != parent_ns {
        attribute(out, "xmlns", &ns);
    }
    let mut prefixes = 0;
    for ((attr_ns, name), value) in el.attrs() {
        let attr_ns: &str = attr_ns.as_ref();
        let name: &str = name.as_ref();
        if attr_ns.is_empty() {
            attribute(out, name, value);
        } else if attr_ns == NS_XML {
            attribute(out, &format!("xml:{name}"), value);
        } else {
            // Rare: a namespaced attribute gets a prefix of its own.
            let prefix = format!("a{prefixes}");
            prefixes += 1;
            attribute(out, &format!("xmlns:{prefix}"), attr_ns);
            attribute(out, &format!("{prefix}:{name}"), value);
        }
    }
    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for node in nodes {
        match node {
            Node::Element(child) => element(out, child, &ns),
            Node::Text(t) => text(out, t),
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(el.name().as_bytes());
    out.push(b'>');
}

/// ` name='value'`, escaped.
fn attribute(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escaped(out, value, true);
    out.push(b'\'');
}

fn text(out: &mut Vec<u8>, value: &str) {
    escaped(out, value, false);
}

/// Markup escaped, and characters XML 1.0 forbids left out: one of them
/// would make the server close the whole component stream.
fn escaped(out: &mut Vec<u8>, value: &str, in_attribute: bool) {
    // Markup, control characters, and the lead bytes of U+F000 and above,
    // where U+FFFE and U+FFFF (not XML characters) are; the rest is copied.
    let needs_work =
        |b: u8| matches!(b, b'&' | b'<' | b'>' | b'\'' | b'"') || !(0x20..0xEF).contains(&b);
    if !value.bytes().any(needs_work) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    let mut utf8 = [0u8; 4];
    for c in value.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '\'' if in_attribute => out.extend_from_slice(b"&apos;"),
            '"' if in_attribute => out.extend_from_slice(b"&quot;"),
            // Kept as references in attributes, where a raw one would be normalised away.
            '\t' | '\n' | '\r' if in_attribute => {
                out.extend_from_slice(format!("&#{};", u32::from(c)).as_bytes())
            }
            '\t' | '\n' => out.push(c as u8),
            '\r' => out.extend_from_slice(b"&#13;"),
            c if is_xml_char(c) => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
            _ => {}
        }
    }
}

fn is_xml_char(c: char) -> bool {
    ('\u{20}'..='\u{D7FF}').contains(&c)
        || ('\u{E000}'..='\u{FFFD}').contains(&c)
        || ('\u{10000}'..='\u{10FFFF}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::message::{Id, Lang};

    /// What the server reads: parsed back with minidom, inside an element
    /// that declares the stream's default namespace as the stream header does.
    fn reparsed(stanza: &Stanza) -> Element {
        let text = String::from_utf8(StanzaBytes::of(stanza).as_bytes().to_vec()).expect("UTF-8");
        let stream = format!("<stream xmlns='{NS_COMPONENT}'>{text}</stream>");
        let stream: Element = stream.parse().unwrap_or_else(|e| panic!("{e}: {text}"));
        let mut children = stream.children();
        let stanza = children.next().expect("one stanza").clone();
        assert!(children.next().is_none(), "one stanza: {text}");
        stanza
    }

    #[test]
    fn stanzas_use_the_stream_namespace_without_declaring_it() {
        let m = Message::chat(Some("alice@example.org".parse().unwrap()));
        let text = StanzaBytes::of(&Stanza::Message(m));
        assert_eq!(
            text.as_bytes(),
            b"<message to='alice@example.org' type='chat'></message>"
        );
    }

    /// The same stanza as xso writes it, but for a zero priority, which
    /// xso writes and this writer leaves out (it is the default).
    fn typed(stanza: &Stanza) -> Element {
        match stanza {
            Stanza::Message(m) => m.clone().into(),
            Stanza::Presence(p) => {
                let mut el = Element::from(p.clone());
                if p.priority.0 == 0 {
                    el.remove_child("priority", NS_COMPONENT);
                }
                el
            }
            Stanza::Iq(iq) => iq.clone().into(),
        }
    }

    #[test]
    fn a_message_reads_back_as_it_was_built() {
        let mut m = Message::groupchat(Some("alice@example.org/res".parse().unwrap())).with_body(
            Lang::default(),
            "a < b & c > 'd' \"e\"\nline two\u{1}".to_owned(),
        );
        m.from = Some("#chan%irc.example.org@irc.example.org/bob".parse().unwrap());
        m.id = Some(Id("0193-x'y".to_owned()));
        m.bodies.insert(Lang("de".to_owned()), "grüß".to_owned());
        m.payloads.push(
            "<stanza-id xmlns='urn:xmpp:sid:0' id='s&amp;1' by='irc.example.org'/>"
                .parse()
                .unwrap(),
        );
        m.payloads.push(
            "<x xmlns='jabber:x:oob'><url>https://h/a?b=1&amp;c=2</url><desc/></x>"
                .parse()
                .unwrap(),
        );
        let stanza = Stanza::Message(m);
        let back = reparsed(&stanza);
        let mut expected = typed(&stanza);
        // The writer drops the control character the builder let through.
        let body = expected.get_child_mut("body", NS_COMPONENT).unwrap();
        let clean = body.text().replace('\u{1}', "");
        body.take_nodes();
        body.append_text(clean);
        assert_eq!(back, expected);
    }

    #[test]
    fn only_xml_characters_are_written() {
        let mut out = Vec::new();
        text(&mut out, "a\u{0}b\u{1b}[1mc\u{fffe}d\u{ff21}e😀\r\tf");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ab[1mcd\u{ff21}e😀&#13;\tf"
        );
        let mut out = Vec::new();
        attribute(&mut out, "x", "a'b\"c\nd");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            " x='a&apos;b&quot;c&#10;d'"
        );
    }

    #[test]
    fn presences_and_iqs_read_back_as_they_were_built() {
        let mut p = Presence::new(PresenceType::None)
            .with_show(Show::Dnd)
            .with_priority(-1);
        p.from = Some("#chan@gw/nick".parse().unwrap());
        p.statuses
            .insert(Lang::default(), "in a meeting".to_owned());
        p.payloads.push(
            "<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/><status code='110'/></x>"
                .parse()
                .unwrap(),
        );
        let unavailable = Presence::new(PresenceType::Unavailable);
        let get = Iq::Get {
            from: Some("gw".parse().unwrap()),
            to: Some("alice@example.org".parse().unwrap()),
            id: "v1".to_owned(),
            payload: "<vCard xmlns='vcard-temp'/>".parse().unwrap(),
        };
        let result = Iq::Result {
            from: None,
            to: None,
            id: "r1".to_owned(),
            payload: None,
        };
        let error = Iq::Error {
            from: None,
            to: Some("alice@example.org/r".parse().unwrap()),
            id: "e1".to_owned(),
            error: xmpp_parsers::stanza_error::StanzaError::new(
                xmpp_parsers::stanza_error::ErrorType::Cancel,
                xmpp_parsers::stanza_error::DefinedCondition::ItemNotFound,
                "en",
                "no such room",
            ),
            payload: None,
        };
        for stanza in [
            Stanza::Presence(p),
            Stanza::Presence(unavailable),
            Stanza::Iq(get),
            Stanza::Iq(result),
            Stanza::Iq(error),
        ] {
            assert_eq!(reparsed(&stanza), typed(&stanza));
        }
    }
}
