use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::event::ChatState;
use crate::{BridgeError, MessageKind, PresenceShow, RemoteAddress};

/// A message the XMPP user wants delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    pub kind: MessageKind,
    /// Remote ID of the message being answered (XEP-0461), already mapped by the core.
    pub reply_to: Option<String>,
    /// Files linked with XEP-0066. Their URLs are in `body` as well, so a
    /// network that cannot carry files still passes them on as links; one
    /// that can (Matrix) may send the file instead.
    pub attachments: Vec<crate::Attachment>,
}

impl OutgoingMessage {
    /// The file this message is, when it is nothing but a link to one (how
    /// HTTP-upload clients send files). A link inside other text is text.
    pub fn sole_file(&self) -> Option<&crate::Attachment> {
        match self.attachments.as_slice() {
            [file] if self.body.trim() == file.url => Some(file),
            _ => None,
        }
    }
}

/// The XMPP user's own avatar, for networks that show it next to what
/// they write.
#[derive(Clone, PartialEq, Eq)]
pub struct Avatar {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Avatar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Avatar")
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// A room as listed by the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub address: RemoteAddress,
    pub name: Option<String>,
    pub members: Option<u64>,
}

/// Someone a room bans, as the network lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// An address of the network's user kind: a user's, or whatever else
    /// the network bans by (an IRC ban mask, `*!*@host%server`), which
    /// [`Session::set_affiliation`] takes back as a name.
    pub user: RemoteAddress,
    /// Why, or who set it and when, where the network tells.
    pub reason: Option<String>,
}

/// A room's settings in the terms of MUC's room configuration (XEP-0045
/// §10.2). `None` is a setting the network does not have (or, in a change,
/// one left as it is).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RoomConfig {
    /// Only those with voice may speak (IRC `+m`).
    pub moderated: Option<bool>,
    /// Only those invited may join (IRC `+i`).
    pub members_only: Option<bool>,
    /// Any occupant may change the subject (IRC `-t`).
    pub occupants_change_subject: Option<bool>,
    /// The room is listed (IRC: neither `+s` nor `+p`).
    pub public: Option<bool>,
    /// Joining needs a password (IRC `+k`).
    pub password_protected: Option<bool>,
    /// The password; only ever in a change, and never logged.
    pub password: Option<String>,
    /// The most occupants, 0 for no limit (IRC `+l`).
    pub max_users: Option<u32>,
}

impl std::fmt::Debug for RoomConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomConfig")
            .field("moderated", &self.moderated)
            .field("members_only", &self.members_only)
            .field("occupants_change_subject", &self.occupants_change_subject)
            .field("public", &self.public)
            .field("password_protected", &self.password_protected)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("max_users", &self.max_users)
            .finish()
    }
}

/// What the network tells about a contact, for vCards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactInfo {
    /// The name shown (Discord's global name, Matrix's display name).
    pub full_name: Option<String>,
    /// The account name (Discord's username, Matrix's user ID, IRC's nick).
    pub nickname: Option<String>,
    /// What else the network tells, for a person to read (IRC's WHOIS).
    pub description: Option<String>,
}

/// An answer that comes later, awaited apart from the user's other stanzas:
/// a remote user may take seconds to answer, or never do (IRC's CTCP).
pub type Later<T> = Pin<Box<dyn Future<Output = Result<T, BridgeError>> + Send>>;

/// The software a remote user runs, as their client tells it (XEP-0092).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Software {
    pub name: String,
    pub version: String,
}

fn unsupported<T>(what: &str) -> Result<T, BridgeError> {
    Err(BridgeError::Unsupported(what.to_owned()))
}

/// One logged-in user on a network. Each method that creates something remote
/// returns the remote ID it produced, so the core can store the mapping.
///
/// Every method but `send_message` has a default that answers `Unsupported`,
/// which the core turns into `feature-not-implemented`: a bridge implements
/// what its network really has, and says so honestly for the rest.
#[async_trait]
pub trait Session: Send + Sync {
    /// Send a message to a room or a user; returns its remote ID.
    async fn send_message(
        &self,
        to: &RemoteAddress,
        message: OutgoingMessage,
    ) -> Result<String, BridgeError>;

    /// Replace the text of one of the user's own messages; returns the remote
    /// ID of the edit if the network gives it a new one.
    async fn edit_message(
        &self,
        _to: &RemoteAddress,
        _target: &str,
        _message: OutgoingMessage,
    ) -> Result<Option<String>, BridgeError> {
        unsupported("edits")
    }

    async fn retract_message(&self, _to: &RemoteAddress, _target: &str) -> Result<(), BridgeError> {
        unsupported("retractions")
    }

    /// A moderator removes someone else's message (XEP-0425). Whether the
    /// user may is the network's decision; where its retraction already
    /// checks that (Matrix power levels), this is a retraction.
    async fn moderate_message(
        &self,
        room: &RemoteAddress,
        target: &str,
        _reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        self.retract_message(room, target).await
    }

    /// Set the user's reactions on a message to exactly `emojis`.
    async fn react(
        &self,
        _to: &RemoteAddress,
        _target: &str,
        _emojis: Vec<String>,
    ) -> Result<(), BridgeError> {
        unsupported("reactions")
    }

    /// Join a room, with the password the user gave (MUC's `<password/>`,
    /// an IRC channel key); occupants, subject and the self-join arrive as
    /// events, or a `JoinRefused`.
    async fn join_room(
        &self,
        _room: &RemoteAddress,
        _nick: &str,
        _password: Option<&str>,
    ) -> Result<(), BridgeError> {
        unsupported("rooms")
    }

    async fn leave_room(&self, _room: &RemoteAddress) -> Result<(), BridgeError> {
        unsupported("rooms")
    }

    async fn set_nick(&self, _room: &RemoteAddress, _nick: &str) -> Result<(), BridgeError> {
        unsupported("nick changes")
    }

    async fn set_topic(&self, _room: &RemoteAddress, _topic: &str) -> Result<(), BridgeError> {
        unsupported("topics")
    }

    async fn set_presence(
        &self,
        _show: PresenceShow,
        _status: Option<&str>,
    ) -> Result<(), BridgeError> {
        unsupported("presence")
    }

    /// The user's avatar, read from their vCard when they log in.
    async fn set_avatar(&self, _avatar: Avatar) -> Result<(), BridgeError> {
        unsupported("avatars")
    }

    async fn send_typing(&self, _to: &RemoteAddress, _state: ChatState) -> Result<(), BridgeError> {
        unsupported("typing notifications")
    }

    async fn mark_read(&self, _to: &RemoteAddress, _up_to: &str) -> Result<(), BridgeError> {
        unsupported("read markers")
    }

    async fn kick(
        &self,
        _room: &RemoteAddress,
        _nick: &str,
        _reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        unsupported("kicks")
    }

    /// Change an occupant's role (MUC moderator/participant/visitor); role
    /// `None` is a kick and goes through [`Session::kick`].
    async fn set_role(
        &self,
        _room: &RemoteAddress,
        _nick: &str,
        _role: crate::Role,
        _reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        unsupported("role changes")
    }

    /// The user's own settings of a server (values of
    /// [`crate::Network::server_fields`], validated), used by connections to it
    /// opened from now on.
    async fn set_server_settings(
        &self,
        _server: &RemoteAddress,
        _values: &crate::FormValues,
    ) -> Result<(), BridgeError> {
        unsupported("server settings")
    }

    /// The user's own settings of a room (values of
    /// [`crate::Network::room_fields`], validated), used from now on; an
    /// empty set of values clears them.
    async fn set_room_settings(
        &self,
        _room: &RemoteAddress,
        _values: &crate::FormValues,
    ) -> Result<(), BridgeError> {
        unsupported("room settings")
    }

    /// Invite `user` into `room`.
    async fn invite(
        &self,
        _room: &RemoteAddress,
        _user: &RemoteAddress,
        _reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        unsupported("invitations")
    }

    /// `room`'s settings, for its MUC configuration form.
    async fn room_config(&self, _room: &RemoteAddress) -> Result<RoomConfig, BridgeError> {
        unsupported("room configuration")
    }

    /// Change `room`'s settings: those `Some` in `change`.
    async fn set_room_config(
        &self,
        _room: &RemoteAddress,
        _change: RoomConfig,
    ) -> Result<(), BridgeError> {
        unsupported("room configuration")
    }

    /// Who is banned from `room` (the MUC outcast list).
    async fn ban_list(&self, _room: &RemoteAddress) -> Result<Vec<Ban>, BridgeError> {
        unsupported("ban lists")
    }

    /// Change an occupant's affiliation (owner/admin/member/none/outcast).
    /// `nick` is an occupant's nick, or a name from
    /// [`crate::Network::member_name`] for someone who need not be in the
    /// room (a ban of someone gone, or an IRC ban mask).
    async fn set_affiliation(
        &self,
        _room: &RemoteAddress,
        _nick: &str,
        _affiliation: crate::Affiliation,
        _reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        unsupported("affiliation changes")
    }

    /// The rooms the network lists, all of them or those under `under` (an
    /// IRC server, a Discord guild).
    async fn list_rooms(
        &self,
        _under: Option<&RemoteAddress>,
    ) -> Result<Vec<RoomInfo>, BridgeError> {
        unsupported("room listing")
    }

    /// What the network tells about a contact (vCard).
    async fn contact_info(&self, _user: &RemoteAddress) -> Result<ContactInfo, BridgeError> {
        unsupported("contact information")
    }

    async fn list_contacts(&self) -> Result<Vec<RemoteAddress>, BridgeError> {
        unsupported("contact listing")
    }

    /// The remote servers the user is connected to now, where the network
    /// keeps a connection per server (IRC).
    async fn connected_servers(&self) -> Vec<RemoteAddress> {
        Vec::new()
    }

    /// Keep the user's connection to `server` open (`hold`), even with no
    /// room joined, opening it if need be; or let it close again once no
    /// room needs it (biboumi's force-connect: an available presence sent
    /// to the server's JID). Networks without a connection per server need
    /// do nothing.
    async fn hold_connection(
        &self,
        _server: &RemoteAddress,
        _hold: bool,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    /// Close the user's connection to `server`, with `message` where the
    /// network shows one (IRC's QUIT). The rooms it carried are left; the
    /// core tells the user.
    async fn disconnect_server(
        &self,
        _server: &RemoteAddress,
        _message: &str,
    ) -> Result<(), BridgeError> {
        unsupported("disconnecting from a server")
    }

    /// The user has `contact` in their roster: report its presence
    /// ([`crate::RemoteEvent::Presence`]) from now on, and until
    /// [`Session::unwatch_contact`]. Networks that report every contact's
    /// presence anyway (Matrix, Discord) need do nothing.
    async fn watch_contact(&self, _contact: &RemoteAddress) -> Result<(), BridgeError> {
        Ok(())
    }

    /// The user took `contact` out of their roster.
    async fn unwatch_contact(&self, _contact: &RemoteAddress) -> Result<(), BridgeError> {
        Ok(())
    }

    /// A few lines on the user's connection to a remote server (IRC: the
    /// address, TLS, nick, since when, channels), for the user to read.
    async fn server_info(&self, _server: &RemoteAddress) -> Result<String, BridgeError> {
        unsupported("connection information")
    }

    /// Ask a remote user's client what software it is (IRC: CTCP VERSION).
    /// `user` is a user's address, or a room's with the occupant's `nick`.
    async fn user_software(
        &self,
        _user: &RemoteAddress,
        _nick: Option<&str>,
    ) -> Result<Later<Software>, BridgeError> {
        unsupported("asking a user's software")
    }

    /// Check that a remote user's client answers (IRC: CTCP PING); addressed
    /// as in [`Session::user_software`]. By default a user is taken to
    /// answer, since the network would have refused the address otherwise.
    async fn ping_user(
        &self,
        _user: &RemoteAddress,
        _nick: Option<&str>,
    ) -> Result<Later<()>, BridgeError> {
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    /// Leave the network cleanly; the session is dropped afterwards.
    async fn logout(&self) -> Result<(), BridgeError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attachment;

    #[test]
    fn a_message_that_is_only_a_link_is_a_file() {
        let file = Attachment {
            url: "https://up.example.org/a/cat.png".to_owned(),
            name: None,
        };
        let message = |body: &str| OutgoingMessage {
            body: body.to_owned(),
            attachments: vec![file.clone()],
            ..OutgoingMessage::default()
        };
        assert_eq!(message(&file.url).sole_file(), Some(&file));
        assert_eq!(
            message(&format!(" {}\n", file.url)).sole_file(),
            Some(&file)
        );
        assert_eq!(message(&format!("look: {}", file.url)).sole_file(), None);
        assert_eq!(OutgoingMessage::default().sole_file(), None);
    }
}
