use async_trait::async_trait;

use crate::{
    AddressKind, BridgeError, Credentials, EventSender, FormValues, RegistrationField,
    RemoteAddress, Session,
};

/// What a network can do, so the core advertises only real features in disco.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub rooms: bool,
    pub direct_messages: bool,
    pub edits: bool,
    pub retractions: bool,
    pub reactions: bool,
    pub replies: bool,
    pub typing: bool,
    pub read_markers: bool,
    /// The network echoes the user's own messages back (IRCv3 echo-message,
    /// Matrix sync); the core then waits for the echo instead of reflecting.
    pub echoes_own_messages: bool,
    /// The network checks each user's own right to remove others' messages
    /// (Matrix power levels). Where the gateway acts with a shared identity
    /// (a Discord bot), moderation from XMPP is refused: it would lend the
    /// bot's rights to every user.
    pub moderation: bool,
    /// The session tells the user about their connection to a remote
    /// server (`Session::server_info`).
    pub server_info: bool,
    /// In rooms, a message is referred to by the remote id its room's
    /// archive holds (IRC's msgid), not through the id map: busy channels
    /// then cost no map write per message and user. Private chats, which
    /// have no archive, still keep the map where anything refers back.
    pub room_ids_in_archive: bool,
}

impl Capabilities {
    /// Whether anything can refer back to another user's message in a room
    /// (`in_room`) or a private chat through the id map: edits,
    /// retractions, reactions, replies, read markers or moderation. Where
    /// nothing can, or the room's archive serves instead
    /// (`room_ids_in_archive`), the core keeps no id map for others'
    /// messages there, which spares a database write per message and user.
    pub fn refers_to_messages(&self, in_room: bool) -> bool {
        if in_room && self.room_ids_in_archive {
            return false;
        }
        self.edits
            || self.retractions
            || self.reactions
            || self.replies
            || self.read_markers
            || self.moderation
    }
}

/// Static facts about a network.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// The disco identity type under category `gateway` (`irc`, `matrix`, `discord`).
    pub kind: &'static str,
    /// The human name, shown as the gateway's disco name.
    pub name: String,
    /// Shown above the registration form.
    pub instructions: String,
    pub capabilities: Capabilities,
}

/// A per-gateway-domain connector: describes the network, checks registrations
/// and logs users in. One instance serves every user of its domain.
#[async_trait]
pub trait Network: Send + Sync + 'static {
    fn info(&self) -> NetworkInfo;

    /// The fields a user fills in to register.
    fn registration_fields(&self) -> Vec<RegistrationField>;

    /// Take the gateway's options anew, read again from the configuration
    /// file on a reload (SIGHUP, SIGUSR1, SIGUSR2 or the admins' `reload`
    /// command), for what starts from now on. `Ok` names the options that
    /// still wait for a restart; an error leaves the old ones in place.
    /// By default a network takes new options only when it starts.
    fn reload(&self, _options: &serde_json::Value) -> Result<Vec<String>, BridgeError> {
        Err(BridgeError::Unsupported(
            "this network takes new options at the next restart".to_owned(),
        ))
    }

    /// Whether a user must register before using the network. Where not
    /// (IRC needs no account, as biboumi shows), a user who never registered
    /// is logged in with empty credentials on their first stanza to a remote
    /// address, and the network picks what it needs (a nick) by itself.
    fn requires_registration(&self) -> bool {
        true
    }

    /// What a user may set per remote server, with the `configure` command
    /// on the server's JID (IRC: nick, ports, TLS …); none by default.
    fn server_fields(&self) -> Vec<RegistrationField> {
        Vec::new()
    }

    /// What a user may set per room of this network, in the `configure`
    /// command on the room's JID next to the gateway's own room settings
    /// (IRC: the channel's encoding); none by default.
    fn room_fields(&self) -> Vec<RegistrationField> {
        Vec::new()
    }

    /// The user address of the occupant `nick` of `room`, where the network
    /// can tell it from these alone (IRC: `nick%server`), for the occupant's
    /// JID in a non-anonymous room. Occupants the bridge reports with a
    /// `user` need none.
    fn occupant_user(&self, _room: &RemoteAddress, _nick: &str) -> Option<RemoteAddress> {
        None
    }

    /// The name by which `room`'s bans and affiliations know `user`, one of
    /// the network's user addresses, where the network can tell it from
    /// these alone, present or not (IRC: the nick of `nick%server`, or the
    /// mask of `mask%server`, on the room's server). Occupants the bridge
    /// reports with a `user` are found by it without this.
    fn member_name(&self, _room: &RemoteAddress, _user: &RemoteAddress) -> Option<String> {
        None
    }

    /// The remote server whose connection carries `address`, where the
    /// network keeps one connection per server (IRC: `#chan%irc.example`
    /// is carried by `irc.example`); `None` where one carries everything.
    fn server_of(&self, _address: &RemoteAddress) -> Option<RemoteAddress> {
        None
    }

    /// What an (already XEP-0106-unescaped) JID local part names, or why it is invalid.
    fn classify(&self, local: &str) -> Result<AddressKind, BridgeError>;

    /// Check a submitted registration with the network, when it can be checked,
    /// and return what should be stored. An error here means nothing is stored.
    async fn register(&self, values: FormValues) -> Result<Credentials, BridgeError>;

    /// Log a registered user in. `account` is an opaque stable ID for the user
    /// (the core uses the bare JID); `events` is where the session reports back.
    /// The user unregisters: end what `register` started on the network (a
    /// Matrix device, say), with the credentials that were stored. The
    /// default has nothing to end.
    async fn unregister(
        &self,
        _account: &str,
        _credentials: Credentials,
    ) -> Result<(), BridgeError> {
        Ok(())
    }

    async fn login(
        &self,
        account: &str,
        credentials: Credentials,
        events: EventSender,
    ) -> Result<Box<dyn Session>, BridgeError>;
}
