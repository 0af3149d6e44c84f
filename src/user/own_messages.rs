//! Where the user's own messages are remembered once sent to the network.
//!
//! Their id records normally go to the store's id map, so that corrections,
//! retractions, reactions and replies can find them, even after a restart.
//! On a network where nothing can refer back to a message (IRC), a record is
//! needed only until the network echoes the message, to reflect it under the
//! id the user's client sent it with; there it is kept in memory instead,
//! which spares the database a row and four index entries per message.

use std::collections::VecDeque;

use crate::gateway::Gateway;
use crate::store::MessageRecord;

/// Most own messages remembered while waiting for their echo; past this the
/// oldest is dropped (its echo is long overdue, or the network never echoes).
const MAX_AWAITING: usize = 4096;

/// Own messages sent and not yet echoed, oldest first.
#[derive(Debug, Default)]
pub struct AwaitingEcho(VecDeque<MessageRecord>);

impl AwaitingEcho {
    fn push(&mut self, record: MessageRecord) {
        if self.0.len() >= MAX_AWAITING {
            self.0.pop_front();
        }
        self.0.push_back(record);
    }

    /// The record of the message `remote_id` in `chat`, forgotten once taken.
    /// Echoes come back in order, so the search usually ends at the first.
    pub fn take(&mut self, chat: &str, remote_id: &str) -> Option<MessageRecord> {
        let at = self
            .0
            .iter()
            .position(|r| r.remote_id == remote_id && r.chat == chat)?;
        self.0.remove(at)
    }

    /// Remember one of the user's own messages, sent to the network through
    /// the gateway `gw`, and return the stanza-id it is known by: the
    /// record's own, unless the message went to a room (`in_room`) where
    /// another user of the gateway was already shown it under another one.
    /// (A method here rather than on `UserSession`, so that it borrows only
    /// this field while the session is in use.)
    pub fn keep(&mut self, gw: &Gateway, mut record: MessageRecord, in_room: bool) -> String {
        let capabilities = &gw.info.capabilities;
        if in_room && capabilities.refers_to_messages(in_room) {
            // A network that tells the room's other users of the message
            // under the id it gave the sender (Matrix, Discord) may have
            // done so already; the map must keep the id they were shown.
            // (Where no map is kept, the echo settles the id: `reflect_echo`.)
            record.stanza_id =
                gw.archiver
                    .stanza_id_for(&record.chat, &record.remote_id, &record.stanza_id);
        }
        let stanza_id = record.stanza_id.clone();
        if capabilities.refers_to_messages(in_room) {
            gw.messages.record(record);
        } else if capabilities.echoes_own_messages {
            self.push(record);
        }
        stanza_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Sender;

    fn record(chat: &str, remote_id: &str) -> MessageRecord {
        MessageRecord {
            gateway: "irc.example.org".into(),
            account: "alice@example.org".into(),
            chat: chat.into(),
            remote_id: remote_id.into(),
            sender: Sender::Account,
            xmpp_id: Some(format!("x-{remote_id}")),
            stanza_id: format!("s-{remote_id}"),
            origin_id: None,
        }
    }

    #[test]
    fn an_echo_takes_its_record_once() {
        let mut awaiting = AwaitingEcho::default();
        awaiting.push(record("#a%srv", "1"));
        awaiting.push(record("#b%srv", "1"));
        let taken = awaiting.take("#b%srv", "1").unwrap();
        assert_eq!(taken.chat, "#b%srv");
        assert!(awaiting.take("#b%srv", "1").is_none());
        assert!(awaiting.take("#a%srv", "1").is_some());
    }

    #[test]
    fn the_oldest_is_dropped_past_the_limit() {
        let mut awaiting = AwaitingEcho::default();
        for i in 0..=MAX_AWAITING {
            awaiting.push(record("#a%srv", &i.to_string()));
        }
        assert!(awaiting.take("#a%srv", "0").is_none());
        assert!(awaiting.take("#a%srv", &MAX_AWAITING.to_string()).is_some());
    }
}
