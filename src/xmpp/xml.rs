//! Small helpers for building payload elements, and the namespaces used.
//!
//! Payloads that xmpp-parsers lacks (ad-hoc commands, retraction, replies …)
//! are built as minidom elements; these helpers keep that terse and safe:
//! text always goes through minidom, which escapes it.

use xmpp_parsers::minidom::rxml::NcName;
use xmpp_parsers::minidom::{Element, ElementBuilder};

pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const NS_VERSION: &str = "jabber:iq:version";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const NS_REGISTER: &str = "jabber:iq:register";
pub const NS_GATEWAY: &str = "jabber:iq:gateway";
pub const NS_DATA: &str = "jabber:x:data";
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_SID: &str = "urn:xmpp:sid:0";
pub const NS_CORRECT: &str = "urn:xmpp:message-correct:0";
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
pub const NS_FALLBACK: &str = "urn:xmpp:fallback:0";
pub const NS_REACTIONS: &str = "urn:xmpp:reactions:0";
pub const NS_REPLY: &str = "urn:xmpp:reply:0";
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_DELAY: &str = "urn:xmpp:delay";

fn ncname(name: &str) -> NcName {
    NcName::try_from(name).expect("attribute names in this crate are valid NCNames")
}

/// Start an element.
pub fn element(name: &str, ns: &str) -> ElementBuilder {
    Element::builder(name, ns)
}

/// Setting attributes with plain string names.
pub trait Attrs: Sized {
    fn with(self, name: &str, value: impl Into<String>) -> Self;

    fn with_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.with(name, v),
            None => self,
        }
    }
}

impl Attrs for ElementBuilder {
    fn with(self, name: &str, value: impl Into<String>) -> Self {
        self.attr(ncname(name), value.into())
    }
}

/// A child with text content: `<name xmlns=ns>text</name>`.
pub fn text_element(name: &str, ns: &str, text: impl Into<String>) -> Element {
    element(name, ns).append(text.into()).build()
}

/// The first child with this name and namespace.
pub fn child<'a>(el: &'a Element, name: &str, ns: &str) -> Option<&'a Element> {
    el.get_child(name, ns)
}

/// Find a payload by name and namespace among a stanza's payloads.
pub fn payload<'a>(payloads: &'a [Element], name: &str, ns: &str) -> Option<&'a Element> {
    payloads.iter().find(|p| p.is(name, ns))
}

/// Text with every character XML 1.0 forbids removed (IRC colour codes, NUL …).
///
/// minidom escapes markup but writes control characters as they are, and one
/// of them in a stanza would make the server close the whole component stream.
pub fn clean_text(text: &str) -> std::borrow::Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    };
    if text.chars().all(allowed) {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.chars().filter(|&c| allowed(c)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_drops_what_xml_forbids() {
        assert_eq!(clean_text("\u{3}4red\u{f} ok\u{0}\ttab"), "4red ok\ttab");
        assert!(matches!(clean_text("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
