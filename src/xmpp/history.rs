//! MUC history on join (XEP-0045 §7.2.13): what the join presence asks for,
//! and the delayed messages that replay the room's archive.

use estuary_bridge::MessageKind;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;

use super::mam::parse_timestamp;
use super::message;
use super::xml::NS_MUC;
use crate::store::ArchivedMessage;

/// Messages sent when the join presence does not say.
pub const DEFAULT_STANZAS: usize = 20;
/// Most messages sent on join, whatever is asked: more is MAM's job.
pub const MAX_STANZAS: usize = 100;

/// The `<history/>` of a join presence; absent limits are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    pub max_stanzas: Option<usize>,
    pub max_chars: Option<usize>,
    pub seconds: Option<i64>,
    pub since_ms: Option<i64>,
}

impl HistoryRequest {
    /// Read it from the payloads of a join presence. Values that do not parse
    /// are ignored, as if absent: a join never fails over its history.
    pub fn parse(payloads: &[Element]) -> HistoryRequest {
        let Some(history) = payloads
            .iter()
            .find(|p| p.is("x", NS_MUC))
            .and_then(|x| x.get_child("history", NS_MUC))
        else {
            return HistoryRequest::default();
        };
        let number = |name: &str| history.attr(name).and_then(|v| v.trim().parse().ok());
        HistoryRequest {
            max_stanzas: number("maxstanzas"),
            max_chars: number("maxchars"),
            seconds: history.attr("seconds").and_then(|v| v.trim().parse().ok()),
            since_ms: history.attr("since").and_then(parse_timestamp),
        }
    }

    /// How many messages at most; 0 for none. A request that limits by time
    /// or size only is served up to the cap, not the default.
    pub fn limit(&self) -> usize {
        if self.max_chars == Some(0) {
            return 0;
        }
        let other_limit =
            self.seconds.is_some() || self.since_ms.is_some() || self.max_chars.is_some();
        let default = if other_limit {
            MAX_STANZAS
        } else {
            DEFAULT_STANZAS
        };
        self.max_stanzas.unwrap_or(default).min(MAX_STANZAS)
    }

    /// The oldest message time wanted, given the time now.
    pub fn since(&self, now_ms: i64) -> i64 {
        let by_seconds = self
            .seconds
            .map(|s| now_ms.saturating_sub(s.saturating_mul(1000)));
        by_seconds
            .into_iter()
            .chain(self.since_ms)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// One archived message replayed on join: its original sender, stanza-id and time.
pub fn message(room: &Jid, occupant: Jid, to: Jid, m: &ArchivedMessage) -> Message {
    let mut stanza = message::text(
        MessageType::Groupchat,
        occupant,
        to,
        &m.stanza_id,
        &m.body,
        MessageKind::Normal,
        room,
    );
    stanza.payloads.push(message::delay(room, m.ts_ms));
    stanza
}

/// Keep the newest messages whose stanzas fit in `max_chars` (XEP-0045
/// counts the characters of the whole stanzas); `stanzas` are oldest first.
pub fn fit_chars(stanzas: Vec<Message>, max_chars: Option<usize>) -> Vec<Message> {
    let Some(mut left) = max_chars else {
        return stanzas;
    };
    let mut kept: Vec<Message> = Vec::new();
    for stanza in stanzas.into_iter().rev() {
        let size = String::from(&Element::from(stanza.clone())).chars().count();
        if size > left {
            break;
        }
        left -= size;
        kept.push(stanza);
    }
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(xml: &str) -> HistoryRequest {
        let x: Element = xml.parse().unwrap();
        HistoryRequest::parse(&[x])
    }

    #[test]
    fn history_requests_are_read() {
        let none = HistoryRequest::parse(&[]);
        assert_eq!(none.limit(), DEFAULT_STANZAS);
        assert_eq!(none.since(5_000), i64::MIN);
        let three =
            request("<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='3'/></x>");
        assert_eq!(three.limit(), 3);
        let zero_chars =
            request("<x xmlns='http://jabber.org/protocol/muc'><history maxchars='0'/></x>");
        assert_eq!(zero_chars.limit(), 0);
        let huge =
            request("<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='100000'/></x>");
        assert_eq!(huge.limit(), MAX_STANZAS);
        let timed = request(
            "<x xmlns='http://jabber.org/protocol/muc'>\
             <history seconds='10' since='1970-01-01T00:00:01Z'/></x>",
        );
        assert_eq!(timed.since(60_000), 50_000);
        assert_eq!(timed.limit(), MAX_STANZAS);
        assert_eq!(timed.since(5_000), 1_000);
    }
}
