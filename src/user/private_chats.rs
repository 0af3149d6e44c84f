//! Private chats started from a room (XEP-0045 §7.5): the user writes to
//! an occupant's in-room JID (`#chan%server@gw/bob`), as clients do from a
//! room's occupant list. The message goes to that occupant's user on the
//! network, never to the room; and the user's answers come back from the
//! in-room JID they wrote to, so that the client keeps one conversation
//! rather than opening a second one with `bob%server@gw` (biboumi's
//! "preferred from JID"). Writing to the user's own address turns that back.

use estuary_bridge::RemoteAddress;

/// How many such chats a user keeps; the oldest is forgotten first, and
/// its answers then come from the user's own address, as before.
const KEPT: usize = 32;

#[derive(Debug)]
struct Chat {
    user: RemoteAddress,
    room: RemoteAddress,
    nick: String,
}

/// The remote users the user last wrote to through a room, and through
/// which room and under which nick.
#[derive(Debug, Default)]
pub struct RoomPrivateChats(Vec<Chat>);

impl RoomPrivateChats {
    /// The user wrote to `nick` in `room`, who is `user` on the network.
    pub fn started(&mut self, user: &RemoteAddress, room: &RemoteAddress, nick: &str) {
        self.ended(user);
        if self.0.len() == KEPT {
            self.0.remove(0);
        }
        self.0.push(Chat {
            user: user.clone(),
            room: room.clone(),
            nick: nick.to_owned(),
        });
    }

    /// The user wrote to `user`'s own address.
    pub fn ended(&mut self, user: &RemoteAddress) {
        self.0.retain(|chat| &chat.user != user);
    }

    /// The room and nick through which `user` is written to, if any.
    pub fn via(&self, user: &RemoteAddress) -> Option<(&RemoteAddress, &str)> {
        self.0
            .iter()
            .find(|chat| &chat.user == user)
            .map(|chat| (&chat.room, chat.nick.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_way_of_writing_to_someone_is_the_way_they_answer() {
        let bob = RemoteAddress::from("bob%irc");
        let (one, two) = (
            RemoteAddress::from("#one%irc"),
            RemoteAddress::from("#two%irc"),
        );
        let mut chats = RoomPrivateChats::default();
        assert_eq!(chats.via(&bob), None);
        chats.started(&bob, &one, "bob");
        chats.started(&bob, &two, "Bob");
        assert_eq!(chats.via(&bob), Some((&two, "Bob")));
        chats.ended(&bob);
        assert_eq!(chats.via(&bob), None);
        for i in 0..=KEPT {
            chats.started(&RemoteAddress::from(format!("u{i}%irc")), &one, "u");
        }
        assert_eq!(chats.0.len(), KEPT);
        assert_eq!(chats.via(&RemoteAddress::from("u0%irc")), None);
        assert!(chats
            .via(&RemoteAddress::from(format!("u{KEPT}%irc")))
            .is_some());
    }
}
