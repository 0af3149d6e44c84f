//! Messages: what an incoming XMPP message asks for, and the stanzas that
//! carry remote messages, edits, retractions and reactions to the user.

use estuary_bridge::{ChatState, MessageKind};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::minidom::Element;

use super::xml::{
    clean_text, element, payload, text_element, Attrs, NS_CHATSTATES, NS_CORRECT, NS_DELAY,
    NS_FALLBACK, NS_REACTIONS, NS_REPLY, NS_RETRACT, NS_SID,
};

/// What an XMPP message from the user asks the gateway to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    pub id: Option<String>,
    pub origin_id: Option<String>,
    pub body: Option<String>,
    pub kind: MessageKind,
    /// XEP-0066: files linked (their URLs are also in `body`).
    pub attachments: Vec<estuary_bridge::Attachment>,
    /// XEP-0308: the id of the message this one corrects.
    pub replace: Option<String>,
    /// XEP-0424: the id of the message to retract.
    pub retract: Option<String>,
    /// XEP-0444: the id reacted to, and the full set of reactions.
    pub reactions: Option<(String, Vec<String>)>,
    /// XEP-0461: the id answered.
    pub reply_to: Option<String>,
    pub chat_state: Option<ChatState>,
    /// XEP-0333: the id of the last message the user has seen.
    pub displayed: Option<String>,
}

impl Incoming {
    pub fn parse(message: &Message) -> Incoming {
        let p = &message.payloads;
        let mut body = message.get_best_body(vec![]).map(|(_, b)| b.clone());
        let mut attachments = Vec::new();
        // XEP-0066: a link the body does not already carry is added to it,
        // so that every network receives the file as a link.
        if let Some((url, desc)) = payload(p, "x", NS_OOB).and_then(|x| {
            let url = x
                .get_child("url", NS_OOB)
                .map(|u| u.text().trim().to_owned())?;
            let desc = x.get_child("desc", NS_OOB).map(Element::text);
            (!url.is_empty()).then(|| (url, desc.filter(|d| !d.is_empty())))
        }) {
            attachments.push(estuary_bridge::Attachment {
                url: url.clone(),
                name: desc,
            });
            body = match body {
                Some(b) if b.contains(&url) => Some(b),
                Some(b) if !b.is_empty() => Some(format!("{b}\n{url}")),
                _ => Some(url),
            };
        }
        let mut kind = MessageKind::Normal;
        if let Some(rest) = body.as_deref().and_then(|b| b.strip_prefix("/me ")) {
            kind = MessageKind::Action;
            body = Some(rest.to_owned());
        }
        let chat_state = [
            ("active", ChatState::Active),
            ("composing", ChatState::Composing),
            ("paused", ChatState::Paused),
            ("inactive", ChatState::Inactive),
            ("gone", ChatState::Gone),
        ]
        .into_iter()
        .find(|(name, _)| payload(p, name, NS_CHATSTATES).is_some())
        .map(|(_, s)| s);
        let reactions = payload(p, "reactions", NS_REACTIONS).and_then(|r| {
            let id = r.attr("id")?.to_owned();
            let emojis = r
                .children()
                .filter(|c| c.is("reaction", NS_REACTIONS))
                .map(Element::text)
                .filter(|t| !t.is_empty())
                .collect();
            Some((id, emojis))
        });
        Incoming {
            id: message.id.as_ref().map(|i| i.0.clone()),
            origin_id: attr_of(p, "origin-id", NS_SID, "id"),
            body,
            kind,
            attachments,
            replace: attr_of(p, "replace", NS_CORRECT, "id"),
            retract: attr_of(p, "retract", NS_RETRACT, "id"),
            reactions,
            reply_to: attr_of(p, "reply", NS_REPLY, "id"),
            chat_state,
            displayed: attr_of(p, "displayed", NS_CHAT_MARKERS, "id"),
        }
    }
}

/// XEP-0333 chat markers.
pub const NS_CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";

fn attr_of(payloads: &[Element], name: &str, ns: &str, attr: &str) -> Option<String> {
    payload(payloads, name, ns)
        .and_then(|e| e.attr(attr))
        .map(str::to_owned)
}

/// The error for a message the network refused after taking it, under
/// the id the client sent it with.
pub fn refused(from: Jid, to: Jid, id: Option<String>, error: Element) -> Message {
    let mut m = Message::new(Some(to));
    m.type_ = MessageType::Error;
    m.from = Some(from);
    m.id = id.map(Id);
    m.payloads.push(error);
    m
}

/// A message stanza to the user with the gateway's stanza-id.
pub fn text(
    type_: MessageType,
    from: Jid,
    to: Jid,
    id: &str,
    body: &str,
    kind: MessageKind,
    stanza_id_by: &Jid,
) -> Message {
    let body = match kind {
        MessageKind::Action => format!("/me {}", clean_text(body)),
        _ => clean_text(body).into_owned(),
    };
    let mut m = Message::new_with_type(type_, Some(to)).with_body(Lang::default(), body);
    m.from = Some(from);
    m.id = Some(Id(id.to_owned()));
    m.payloads.push(stanza_id(id, stanza_id_by));
    m
}

pub fn stanza_id(id: &str, by: &Jid) -> Element {
    element("stanza-id", NS_SID)
        .with("id", id)
        .with("by", by.to_string())
        .build()
}

pub fn origin_id(id: &str) -> Element {
    element("origin-id", NS_SID).with("id", id).build()
}

/// Mark a message as answering another (XEP-0461).
pub fn reply(to_id: &str) -> Element {
    element("reply", NS_REPLY).with("id", to_id).build()
}

/// XEP-0203 delay, for messages that did not happen now.
pub fn delay(from: &Jid, stamp_ms: i64) -> Element {
    let stamp = chrono_free_rfc3339(stamp_ms);
    element("delay", NS_DELAY)
        .with("from", from.to_string())
        .with("stamp", stamp)
        .build()
}

/// A correction of an earlier message (XEP-0308).
pub fn correction(
    type_: MessageType,
    from: Jid,
    to: Jid,
    id: &str,
    target: &str,
    body: &str,
) -> Message {
    let mut m = Message::new_with_type(type_, Some(to))
        .with_body(Lang::default(), clean_text(body).into_owned());
    m.from = Some(from);
    m.id = Some(Id(id.to_owned()));
    m.payloads
        .push(element("replace", NS_CORRECT).with("id", target).build());
    m
}

/// A retraction (XEP-0424), with a fallback body for clients that lack it.
pub fn retraction(type_: MessageType, from: Jid, to: Jid, id: &str, target: &str) -> Message {
    let mut m = Message::new_with_type(type_, Some(to)).with_body(
        Lang::default(),
        "This person attempted to retract a previous message, but it's unsupported by your client."
            .to_owned(),
    );
    m.from = Some(from);
    m.id = Some(Id(id.to_owned()));
    m.payloads
        .push(element("retract", NS_RETRACT).with("id", target).build());
    m.payloads.push(
        element("fallback", NS_FALLBACK)
            .with("for", NS_RETRACT)
            .build(),
    );
    m
}

/// The full set of someone's reactions on a message (XEP-0444).
pub fn reactions(
    type_: MessageType,
    from: Jid,
    to: Jid,
    id: &str,
    target: &str,
    emojis: &[String],
) -> Message {
    let mut r = element("reactions", NS_REACTIONS).with("id", target);
    for e in emojis {
        r = r.append(element("reaction", NS_REACTIONS).append(clean_text(e).into_owned()));
    }
    let mut m = Message::new_with_type(type_, Some(to));
    m.from = Some(from);
    m.id = Some(Id(id.to_owned()));
    m.payloads.push(r.build());
    m
}

/// A chat state notification (XEP-0085).
pub fn chat_state(type_: MessageType, from: Jid, to: Jid, state: ChatState) -> Message {
    let name = match state {
        ChatState::Active => "active",
        ChatState::Composing => "composing",
        ChatState::Paused => "paused",
        ChatState::Inactive => "inactive",
        ChatState::Gone => "gone",
    };
    let mut m = Message::new_with_type(type_, Some(to));
    m.from = Some(from);
    m.payloads.push(element(name, NS_CHATSTATES).build());
    m
}

/// RFC 3339 UTC time from Unix milliseconds, by hand to avoid a date crate
/// for one format (days-from-civil, Howard Hinnant's algorithm).
fn chrono_free_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// XEP-0066 out-of-band data.
pub const NS_OOB: &str = "jabber:x:oob";

/// The body of a message with attachments: the text, then each link on a
/// line of its own, so that clients without XEP-0066 still show them. A lone
/// attachment without text is the link alone, which clients such as
/// Conversations show inline when it equals the OOB URL.
pub fn body_with_attachments<'a>(
    text: &'a str,
    attachments: &[estuary_bridge::Attachment],
) -> std::borrow::Cow<'a, str> {
    if attachments.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut body = text.to_owned();
    for attachment in attachments {
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&attachment.url);
    }
    std::borrow::Cow::Owned(body)
}

/// `<x xmlns='jabber:x:oob'><url/><desc/></x>` for one attachment.
pub fn oob(attachment: &estuary_bridge::Attachment) -> Element {
    let mut x = element("x", NS_OOB).append(text_element(
        "url",
        NS_OOB,
        clean_text(&attachment.url).into_owned(),
    ));
    if let Some(name) = &attachment.name {
        x = x.append(text_element("desc", NS_OOB, clean_text(name).into_owned()));
    }
    x.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(chrono_free_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            chrono_free_rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            chrono_free_rfc3339(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
