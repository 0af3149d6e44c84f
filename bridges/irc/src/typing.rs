//! Typing notifications: XEP-0085 chat states are IRCv3's `+typing` client
//! tag on TAGMSG (`active`, `paused`, `done`), both ways.

use std::time::Duration;

use estuary_bridge::ChatState;
use tokio::time::Instant;

/// The spec's least interval between two `active` to one target.
const REPEAT: Duration = Duration::from_secs(3);

/// After this, receivers have forgotten a notice (the spec lets `paused`
/// stand 30 seconds), so there is nothing left to repeat or end.
const FORGOTTEN: Duration = Duration::from_secs(30);

/// The tag value a chat state is sent as.
pub fn tag_value(state: ChatState) -> &'static str {
    match state {
        ChatState::Composing => "active",
        ChatState::Paused => "paused",
        ChatState::Active | ChatState::Inactive | ChatState::Gone => "done",
    }
}

/// The chat state a received tag value is.
pub fn chat_state(value: &str) -> Option<ChatState> {
    match value {
        "active" => Some(ChatState::Composing),
        "paused" => Some(ChatState::Paused),
        "done" => Some(ChatState::Active),
        _ => None,
    }
}

/// What was last sent to each target. XMPP clients repeat chat states
/// freely; IRC asks for one `active` every three seconds at most, and a
/// `done` means something only after another notice.
#[derive(Debug, Default)]
pub struct TypingSent {
    /// (case-folded target, value, when), a few at a time.
    last: Vec<(String, &'static str, Instant)>,
}

impl TypingSent {
    /// Whether to send `value` to `target` now; if so, it is noted.
    pub fn should_send(&mut self, target: &str, value: &'static str, now: Instant) -> bool {
        self.last
            .retain(|(_, _, at)| now.duration_since(*at) < FORGOTTEN);
        match self.last.iter_mut().find(|(t, ..)| t == target) {
            Some(entry) => {
                let repeat = entry.1 == value;
                if repeat && (value != "active" || now.duration_since(entry.2) < REPEAT) {
                    return false;
                }
                entry.1 = value;
                entry.2 = now;
                true
            }
            None if value == "done" => false,
            None => {
                self.last.push((target.to_owned(), value, now));
                true
            }
        }
    }

    /// A message went to `target`: receivers stop showing the notice.
    pub fn message_sent(&mut self, target: &str) {
        self.last.retain(|(t, ..)| t != target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_both_ways() {
        for state in [ChatState::Composing, ChatState::Paused, ChatState::Active] {
            assert_eq!(chat_state(tag_value(state)), Some(state));
        }
        assert_eq!(tag_value(ChatState::Gone), "done");
        assert_eq!(chat_state("typing"), None);
    }

    #[test]
    fn repeats_are_held_back_and_done_needs_a_notice() {
        let mut sent = TypingSent::default();
        let t0 = Instant::now();
        assert!(!sent.should_send("#c", "done", t0), "nothing to end");
        assert!(sent.should_send("#c", "active", t0));
        assert!(!sent.should_send("#c", "active", t0 + Duration::from_secs(1)));
        assert!(sent.should_send("#c", "active", t0 + Duration::from_secs(4)));
        assert!(sent.should_send("bob", "active", t0 + Duration::from_secs(4)));
        assert!(sent.should_send("#c", "paused", t0 + Duration::from_secs(5)));
        assert!(!sent.should_send("#c", "paused", t0 + Duration::from_secs(6)));
        assert!(sent.should_send("#c", "done", t0 + Duration::from_secs(7)));
        assert!(!sent.should_send("#c", "done", t0 + Duration::from_secs(8)));
        sent.message_sent("bob");
        assert!(!sent.should_send("bob", "done", t0 + Duration::from_secs(8)));
        // Long forgotten: nothing to end.
        assert!(sent.should_send("#c", "active", t0 + Duration::from_secs(9)));
        assert!(!sent.should_send("#c", "done", t0 + Duration::from_secs(60)));
    }
}
