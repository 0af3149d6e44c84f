//! Reactions: XEP-0444 ↔ IRCv3's `+draft/react` client tag, on a TAGMSG
//! that names the message reacted to with `+draft/reply` (its msgid).
//!
//! The two models differ. An XEP-0444 message gives the whole set of one
//! sender's reactions to a message, and replaces the set before; an IRC
//! TAGMSG adds one reaction (`+draft/react`) or, where clients send it,
//! takes one back (`+draft/unreact`, a tag Goguma sends, which the spec
//! does not have yet). So each side's sets are kept here: what each
//! IRC user gave, to report their whole set, and what the user gave, to
//! send only what changed.
//!
//! Memory is bounded: the sets of the [`KEPT`] most recent (message,
//! sender) pairs, and nothing at all on a connection that sees no reaction.
//! One forgotten is treated as empty, which at worst sends a reaction
//! again that IRC clients already show.

use std::collections::VecDeque;

/// The tag adding a reaction.
pub const REACT: &str = "+draft/react";
/// The tag taking one back.
pub const UNREACT: &str = "+draft/unreact";
/// The tag naming the message reacted to.
pub const REPLY: &str = "+draft/reply";
/// Its unprefixed spelling, which some clients send as well or instead.
pub const REPLY_UNPREFIXED: &str = "+reply";

/// How many (message, sender) sets a connection keeps.
const KEPT: usize = 256;

/// The longest reaction passed on, in bytes: an emoji sequence, or a short
/// word as IRC clients allow; a tag of kilobytes would eat the line's
/// 4,094 bytes of client tags.
pub const MAX_REACTION: usize = 64;

/// Whose set a [`ReactionSets`] entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    /// The gateway's user.
    Own,
    /// An IRC user, by case-folded nick.
    Nick(String),
}

#[derive(Debug)]
struct Entry {
    /// The case-folded channel or nick the message was in.
    target: String,
    msgid: String,
    who: Who,
    emojis: Vec<String>,
}

/// What changed between the user's set before and now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// The reaction sets a connection has seen, most recent last.
#[derive(Debug, Default)]
pub struct ReactionSets {
    entries: VecDeque<Entry>,
}

impl ReactionSets {
    /// The user now reacts to `msgid` in `target` with exactly `emojis`:
    /// what to send.
    pub fn own(&mut self, target: &str, msgid: &str, emojis: Vec<String>) -> Change {
        let before = self.take(target, msgid, &Who::Own).unwrap_or_default();
        let mut emojis = emojis;
        dedup_keeping_order(&mut emojis);
        let change = Change {
            added: emojis
                .iter()
                .filter(|e| !before.contains(e))
                .cloned()
                .collect(),
            removed: before.into_iter().filter(|e| !emojis.contains(e)).collect(),
        };
        self.put(target, msgid, Who::Own, emojis);
        change
    }

    /// `nick` added (`added`) or took back a reaction to `msgid` in
    /// `target`: their whole set now.
    pub fn received(
        &mut self,
        target: &str,
        msgid: &str,
        nick: &str,
        emoji: &str,
        added: bool,
    ) -> Vec<String> {
        let who = Who::Nick(nick.to_owned());
        let mut emojis = self.take(target, msgid, &who).unwrap_or_default();
        emojis.retain(|e| e != emoji);
        if added {
            emojis.push(emoji.to_owned());
        }
        self.put(target, msgid, who, emojis.clone());
        emojis
    }

    fn take(&mut self, target: &str, msgid: &str, who: &Who) -> Option<Vec<String>> {
        let at = self
            .entries
            .iter()
            .position(|e| e.msgid == msgid && e.target == target && &e.who == who)?;
        self.entries.remove(at).map(|e| e.emojis)
    }

    fn put(&mut self, target: &str, msgid: &str, who: Who, emojis: Vec<String>) {
        if emojis.is_empty() {
            return;
        }
        if self.entries.len() == KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            target: target.to_owned(),
            msgid: msgid.to_owned(),
            who,
            emojis,
        });
    }
}

fn dedup_keeping_order(emojis: &mut Vec<String>) {
    let mut seen = Vec::with_capacity(emojis.len());
    emojis.retain(|e| {
        if seen.contains(e) {
            false
        } else {
            seen.push(e.clone());
            true
        }
    });
}

/// Whether `emoji` can go out as a tag value: not empty, not too long, and
/// no control characters (the line's own check refuses CR, LF and NUL; the
/// rest would reach other clients' screens).
pub fn sendable(emoji: &str) -> bool {
    !emoji.is_empty() && emoji.len() <= MAX_REACTION && !emoji.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn the_users_set_becomes_what_changed() {
        let mut sets = ReactionSets::default();
        assert_eq!(
            sets.own("#c", "m1", s(&["👍", "❤", "👍"])),
            Change {
                added: s(&["👍", "❤"]),
                removed: vec![]
            }
        );
        assert_eq!(
            sets.own("#c", "m1", s(&["❤", "😂"])),
            Change {
                added: s(&["😂"]),
                removed: s(&["👍"])
            }
        );
        // Another message, another set.
        assert_eq!(sets.own("#c", "m2", s(&["❤"])).added, s(&["❤"]));
        assert_eq!(
            sets.own("#c", "m1", vec![]),
            Change {
                added: vec![],
                removed: s(&["❤", "😂"])
            }
        );
        assert!(sets.entries.iter().all(|e| e.msgid != "m1"));
    }

    #[test]
    fn each_irc_users_reactions_add_up_to_their_set() {
        let mut sets = ReactionSets::default();
        assert_eq!(sets.received("#c", "m1", "bob", "👍", true), s(&["👍"]));
        assert_eq!(sets.received("#c", "m1", "bob", "❤", true), s(&["👍", "❤"]));
        // Someone else's are apart, and so is the user's own.
        assert_eq!(sets.received("#c", "m1", "carol", "👍", true), s(&["👍"]));
        assert_eq!(sets.own("#c", "m1", s(&["👍"])).added, s(&["👍"]));
        // Twice the same is once; taking one back leaves the rest.
        assert_eq!(
            sets.received("#c", "m1", "bob", "👍", true),
            s(&["❤", "👍"])
        );
        assert_eq!(sets.received("#c", "m1", "bob", "❤", false), s(&["👍"]));
        assert_eq!(sets.received("#c", "m1", "bob", "👍", false), s(&[]));
    }

    #[test]
    fn only_so_many_sets_are_kept() {
        let mut sets = ReactionSets::default();
        for i in 0..KEPT + 10 {
            sets.received("#c", &format!("m{i}"), "bob", "👍", true);
        }
        assert_eq!(sets.entries.len(), KEPT);
        // The oldest is forgotten, so its set starts again.
        assert_eq!(sets.received("#c", "m0", "bob", "❤", true), s(&["❤"]));
        assert_eq!(
            sets.received("#c", &format!("m{}", KEPT + 9), "bob", "❤", true),
            s(&["👍", "❤"])
        );
    }

    #[test]
    fn only_short_printable_reactions_go_out() {
        assert!(sendable("👍"));
        assert!(sendable("👩‍👩‍👧"));
        assert!(sendable("lol"));
        assert!(!sendable(""));
        assert!(!sendable("a\u{7}b"));
        assert!(!sendable(&"x".repeat(MAX_REACTION + 1)));
    }
}
