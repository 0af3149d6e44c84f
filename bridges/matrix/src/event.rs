//! Matrix events as the bridge reads them: the common envelope, with the
//! content left as JSON. Reading only the fields the bridge uses means an
//! unknown event type or an odd field never fails a whole sync; an event
//! whose envelope does not parse is logged and skipped.

use matrix_sdk::ruma::{OwnedEventId, OwnedUserId};
use serde::Deserialize;
use serde_json::Value;

use crate::session::TXN_PREFIX;

#[derive(Debug, Clone, Deserialize)]
pub struct RawEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: Option<OwnedEventId>,
    pub sender: Option<OwnedUserId>,
    pub state_key: Option<String>,
    pub origin_server_ts: Option<i64>,
    #[serde(default)]
    pub content: Value,
    #[serde(default)]
    pub unsigned: Unsigned,
    /// Where room versions before 11 keep a redaction's target.
    pub redacts: Option<OwnedEventId>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Unsigned {
    /// Present only on events this device sent.
    pub transaction_id: Option<String>,
}

impl RawEvent {
    pub fn content_str(&self, key: &str) -> Option<&str> {
        self.content.get(key).and_then(Value::as_str)
    }

    /// The user a membership event is about.
    pub fn state_user(&self) -> Option<OwnedUserId> {
        OwnedUserId::try_from(self.state_key.as_deref()?).ok()
    }

    /// Whether the gateway sent this event itself (its own transaction ID).
    pub fn sent_by_gateway(&self) -> bool {
        self.unsigned
            .transaction_id
            .as_deref()
            .is_some_and(|t| t.starts_with(TXN_PREFIX))
    }

    /// `m.relates_to`, when there is one.
    pub fn relation(&self) -> Option<&Value> {
        self.content.get("m.relates_to")
    }

    pub fn relation_type(&self) -> Option<&str> {
        self.relation()?.get("rel_type")?.as_str()
    }

    pub fn related_event(&self) -> Option<OwnedEventId> {
        OwnedEventId::try_from(self.relation()?.get("event_id")?.as_str()?).ok()
    }

    pub fn in_reply_to(&self) -> Option<OwnedEventId> {
        let id = self
            .relation()?
            .get("m.in_reply_to")?
            .get("event_id")?
            .as_str()?;
        OwnedEventId::try_from(id).ok()
    }

    /// The event a redaction takes back: in the content from room version
    /// 11 on, at the top level before.
    pub fn redaction_target(&self) -> Option<OwnedEventId> {
        self.content
            .get("redacts")
            .and_then(Value::as_str)
            .and_then(|id| OwnedEventId::try_from(id).ok())
            .or_else(|| self.redacts.clone())
    }
}

/// The text of message content: its HTML as XEP-0393 styling when it has
/// some, its plain body otherwise.
pub fn message_text(content: &Value) -> Option<String> {
    let body = content.get("body").and_then(Value::as_str)?;
    let html = content
        .get("formatted_body")
        .and_then(Value::as_str)
        .filter(|_| {
            content.get("format").and_then(Value::as_str) == Some("org.matrix.custom.html")
        });
    Some(match html {
        Some(html) => crate::text::html_to_styling(html),
        None => body.to_owned(),
    })
}

/// A reply's body without the quoted fallback (`> <@bob:x> …` lines and the
/// blank line after them) that older clients put in front.
pub fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    while let Some(line_end) = rest.find('\n') {
        if rest.starts_with("> ") || rest.starts_with(">\n") {
            rest = &rest[line_end + 1..];
        } else {
            break;
        }
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_fallback_is_stripped() {
        assert_eq!(
            strip_reply_fallback("> <@bob:x> hi\n> there\n\nanswer"),
            "answer"
        );
        assert_eq!(strip_reply_fallback("plain"), "plain");
        assert_eq!(strip_reply_fallback("> quote only"), "> quote only");
    }

    #[test]
    fn odd_events_parse_or_fail_cleanly() {
        let ok: RawEvent = serde_json::from_value(serde_json::json!({
            "type": "org.example.unknown", "sender": "@a:x", "content": {"x": [1]}
        }))
        .unwrap();
        assert_eq!(ok.kind, "org.example.unknown");
        let bad = serde_json::from_value::<RawEvent>(serde_json::json!({
            "type": "m.room.message", "sender": "not a user id"
        }));
        assert!(bad.is_err());
    }
}
