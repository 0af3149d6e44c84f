use tokio::sync::mpsc;

use crate::RemoteAddress;

/// How a message should be rendered: plain, an action (`/me`), or a notice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageKind {
    #[default]
    Normal,
    /// IRC CTCP ACTION, Matrix `m.emote`: XMPP shows it as `/me …`.
    Action,
    /// IRC NOTICE, Matrix `m.notice`: never answered automatically.
    Notice,
}

/// Availability, in XMPP's vocabulary because every network maps onto it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PresenceShow {
    #[default]
    Online,
    Chat,
    Away,
    ExtendedAway,
    DoNotDisturb,
    Offline,
}

/// Chat states (XEP-0085), which networks call typing notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatState {
    Active,
    Composing,
    Paused,
    Inactive,
    Gone,
}

/// A room member's standing, in MUC terms (XEP-0045 affiliations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Affiliation {
    Owner,
    Admin,
    Member,
    #[default]
    None,
    Outcast,
}

/// A room member's current role, in MUC terms (XEP-0045 roles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    Moderator,
    #[default]
    Participant,
    Visitor,
    None,
}

/// Someone present in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    /// The remote user behind the nick, when the network reveals it.
    pub user: Option<RemoteAddress>,
    pub nick: String,
    pub affiliation: Affiliation,
    pub role: Role,
    pub show: PresenceShow,
    pub status: Option<String>,
}

impl Occupant {
    /// Someone present under `nick` with this standing, with no status and
    /// no known user.
    pub fn new(nick: impl Into<String>, affiliation: Affiliation, role: Role) -> Occupant {
        Occupant {
            user: None,
            nick: nick.into(),
            affiliation,
            role,
            show: PresenceShow::Online,
            status: None,
        }
    }
}

/// A message that arrived from the remote network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMessage {
    /// The network's own ID for this message; the core maps it to stanza IDs.
    pub id: String,
    /// The room it was said in, or `None` for a direct message.
    pub room: Option<RemoteAddress>,
    /// Who said it (for a room message without user identity, the nick's address).
    pub sender: RemoteAddress,
    /// The display name in the room, for rooms.
    pub nick: Option<String>,
    pub body: String,
    pub kind: MessageKind,
    /// The remote ID of the message this one answers.
    pub reply_to: Option<String>,
    /// When it was sent, in milliseconds since the Unix epoch, if the network says.
    pub timestamp_ms: Option<i64>,
    /// The logged-in user's own message, echoed back by the network.
    pub from_self: bool,
    /// For an echo whose `id` is the network's (the one everyone else sees
    /// the message under): the id [`crate::Session::send_message`] returned
    /// for it, which the core awaits the echo by. `None` when they are the
    /// same.
    pub sent_as: Option<String>,
    /// Files attached, as links the XMPP user can fetch (XEP-0066).
    pub attachments: Vec<Attachment>,
    /// Played back from the network's own history (IRC: a `chathistory`
    /// batch on join), not said now: the user may have seen it already.
    pub replayed: bool,
}

/// A file attached to a message, as a URL the XMPP user's client can fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub url: String,
    /// The file name, shown as the link's description.
    pub name: Option<String>,
}

impl RemoteMessage {
    /// A plain text message, the common case; set the other fields with struct update syntax.
    pub fn text(id: impl Into<String>, sender: RemoteAddress, body: impl Into<String>) -> Self {
        RemoteMessage {
            id: id.into(),
            room: None,
            sender,
            nick: None,
            body: body.into(),
            kind: MessageKind::Normal,
            reply_to: None,
            timestamp_ms: None,
            from_self: false,
            sent_as: None,
            attachments: Vec::new(),
            replayed: false,
        }
    }
}

/// A presence change of a remote contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePresence {
    pub user: RemoteAddress,
    pub show: PresenceShow,
    pub status: Option<String>,
}

/// Why a network refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    /// The user may not speak there (IRC: a moderated channel, a ban, a
    /// channel for identified users only).
    Forbidden,
    /// Nobody by that name.
    NoSuchRecipient,
}

/// Why a network refused a nick change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NickRefusal {
    /// Someone else has it.
    InUse,
    /// The network does not take such a nick.
    Invalid,
    /// Not now (IRC: a channel forbids nick changes, or the nick is held).
    NotAllowed,
}

/// Why a network refused a join, in the terms MUC has for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefusal {
    /// The network sends the user to another room instead (IRC: a channel
    /// forward, 470); the user is not put there, but told where it is.
    Redirected { to: RemoteAddress },
    /// A password (IRC: a channel key) is needed, or was wrong.
    PasswordRequired,
    /// The user is banned from the room.
    Banned,
    /// Only members or the invited may join.
    MembersOnly,
    /// The user must be registered with the network first (IRC: identified
    /// to services).
    RegistrationRequired,
    /// The room is full.
    Full,
    /// The user is in as many rooms as the network allows.
    TooManyRooms,
    /// There is no such room, or no room may have that name.
    NoSuchRoom,
    /// Anything else the network gave a reason for.
    Other,
}

/// Everything a session reports back to the core. Each carries remote IDs only;
/// the core maps them to JIDs and stanza IDs through the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteEvent {
    /// Boxed: by far the largest variant, and every event in a session's
    /// queue takes the room of the largest.
    Message(Box<RemoteMessage>),
    Edit {
        room: Option<RemoteAddress>,
        sender: RemoteAddress,
        nick: Option<String>,
        /// Remote ID of the message being replaced.
        target: String,
        body: String,
    },
    Retract {
        room: Option<RemoteAddress>,
        sender: RemoteAddress,
        nick: Option<String>,
        target: String,
    },
    /// The full set of reactions `sender` now has on `target` (XEP-0444 semantics).
    Reaction {
        room: Option<RemoteAddress>,
        sender: RemoteAddress,
        nick: Option<String>,
        target: String,
        emojis: Vec<String>,
    },
    Presence(RemotePresence),
    Typing {
        room: Option<RemoteAddress>,
        sender: RemoteAddress,
        nick: Option<String>,
        state: ChatState,
    },
    ReadMarker {
        room: Option<RemoteAddress>,
        sender: RemoteAddress,
        up_to: String,
    },
    /// Someone is in the room. `is_self` marks the user's own occupant, sent last
    /// when a join completes, as MUC requires.
    Join {
        room: RemoteAddress,
        occupant: Occupant,
        is_self: bool,
        /// The network forced a nick other than the one asked for.
        nick_changed: bool,
    },
    /// Someone left the room. The core keeps the one member list of each
    /// room, so a bridge need not know exactly who is in which: a Part,
    /// NickChange, RoleChange or OccupantStatus about a nick that is not in
    /// the room is dropped. (An IRC QUIT names no channel; the IRC bridge
    /// keeps only a digest of each channel's nicks to tell where to report
    /// it.)
    Part {
        room: RemoteAddress,
        nick: String,
        reason: Option<String>,
        is_self: bool,
    },
    /// The network refused the user's join of `room`; `text` is its reason.
    JoinRefused {
        room: RemoteAddress,
        why: JoinRefusal,
        text: String,
    },
    NickChange {
        room: RemoteAddress,
        old: String,
        new: String,
        is_self: bool,
    },
    /// The network refused a message the user sent to `to` (a room or a
    /// user), by the id `Session::send_message` returned for it; it will
    /// never be echoed.
    SendRefused {
        to: RemoteAddress,
        id: String,
        why: SendRefusal,
        text: String,
    },
    /// The network refused the user's change to `nick` in `room` (IRC: in
    /// every channel of the server); `text` is its reason.
    NickRefused {
        room: RemoteAddress,
        nick: String,
        why: NickRefusal,
        text: String,
    },
    Topic {
        room: RemoteAddress,
        topic: String,
        by: Option<String>,
    },
    /// Something the room itself tells, not a message of anyone's (an IRC
    /// mode change): shown from the room's JID, and not archived.
    RoomNotice {
        room: RemoteAddress,
        text: String,
    },
    /// Someone was put out of a room; `banned` when they may not come back.
    Kick {
        room: RemoteAddress,
        nick: String,
        by: Option<String>,
        reason: Option<String>,
        is_self: bool,
        banned: bool,
    },
    RoleChange {
        room: RemoteAddress,
        nick: String,
        affiliation: Affiliation,
        role: Role,
    },
    /// An occupant's availability changed (IRC away-notify); the rest of
    /// their standing stays as it was.
    OccupantStatus {
        room: RemoteAddress,
        nick: String,
        show: PresenceShow,
        status: Option<String>,
    },
    RoomInfo {
        room: RemoteAddress,
        name: Option<String>,
    },
    /// A joined room's settings, first on the join and then on each change
    /// (IRC: its modes), for its disco#info and XEP-0045's status 104.
    RoomConfig {
        room: RemoteAddress,
        config: crate::RoomConfig,
    },
    /// Someone invites the user into a room.
    Invited {
        room: RemoteAddress,
        by: RemoteAddress,
        reason: Option<String>,
    },
    /// The connection to the network is lost; rooms are gone until
    /// `Reconnected`. Where the network keeps a connection per remote
    /// server (IRC), `server` names the one lost, and only the rooms it
    /// carries ([`crate::Network::server_of`]) are gone.
    Disconnected {
        reason: String,
        server: Option<RemoteAddress>,
    },
    /// The connection is back (to `server` alone, where one is named).
    Reconnected {
        server: Option<RemoteAddress>,
    },
}

impl From<RemoteMessage> for RemoteEvent {
    fn from(message: RemoteMessage) -> RemoteEvent {
        RemoteEvent::Message(Box::new(message))
    }
}

/// The channel a session pushes its events into.
///
/// Bounded, so that a flood from the network slows the network reader down
/// instead of growing memory without limit.
///
/// Events travel boxed. A tokio queue holds its slots in blocks of 32 and
/// keeps a few drained blocks for reuse, so every session's queue stays as
/// large as its last burst (a channel's NAMES, say) left it: 32 slots of a
/// 128-byte event are 4 KB a block, of a box 256 bytes.
#[derive(Debug, Clone)]
pub struct EventSender(mpsc::Sender<Box<RemoteEvent>>);

/// Room reserved in the core's queue for one event.
pub type EventPermit<'a> = mpsc::Permit<'a, Box<RemoteEvent>>;

impl EventSender {
    /// A sender and its receiving end, for the core (and for bridge unit tests).
    pub fn channel(capacity: usize) -> (EventSender, mpsc::Receiver<Box<RemoteEvent>>) {
        let (tx, rx) = mpsc::channel(capacity);
        (EventSender(tx), rx)
    }

    /// Hand an event to the core. Returns false once the core has dropped the
    /// session, which tells the bridge to stop.
    pub async fn send(&self, event: RemoteEvent) -> bool {
        self.0.send(Box::new(event)).await.is_ok()
    }

    /// Hand an event over only if the queue has room: for bridge tasks that
    /// must keep serving the core's commands while the core catches up. The
    /// error hands the event back for the caller to keep.
    pub fn try_send(
        &self,
        event: Box<RemoteEvent>,
    ) -> Result<(), mpsc::error::TrySendError<Box<RemoteEvent>>> {
        self.0.try_send(event)
    }

    /// Waits for room in the queue; `None` once the core has dropped the session.
    pub async fn reserve(&self) -> Option<EventPermit<'_>> {
        self.0.reserve().await.ok()
    }
}
