//! The rooms a user is in, as the gateway has told the user's clients.

use std::collections::{BTreeSet, HashMap};

use ecow::EcoString;
use estuary_bridge::{Affiliation, Occupant, PresenceShow, RemoteAddress, Role, RoomConfig};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};

use crate::gateway::Gateway;
use crate::xmpp::address::{bare_jid, occupant_of};
use crate::xmpp::errors::Failure;
use crate::xmpp::history::HistoryRequest;
use crate::xmpp::muc::{self, OccupantItem};

/// One room: the user's nick, which of the user's resources are in it, and
/// the occupants and subject, so a second resource joining can be shown the
/// room without asking the network again.
#[derive(Debug, Default)]
pub struct RoomState {
    pub nick: String,
    pub resources: BTreeSet<FullJid>,
    pub occupants: OccupantList,
    pub subject: Option<String>,
    /// The network confirmed the join (the self-presence was sent).
    pub joined: bool,
    /// The room's JID, built once: every message shown in the room comes
    /// from an occupant JID built on it ([`RoomState::occupant`]).
    pub jid: Option<BareJid>,
    /// The password the join gave (an IRC channel key), to join again with
    /// after the network comes back. Never logged; kept with the room's
    /// record ([`JoinSettings`]) for a rejoin after a gateway restart.
    pub password: Option<String>,
    /// A nick change asked in this room and not yet made: a refusal is
    /// told here only (on IRC a nick is the same in every channel).
    pub nick_asked: Option<Box<str>>,
    /// The last join asked for no history (`maxchars='0'`, as clients that
    /// read MAM instead send): history the network plays back is archived,
    /// not shown.
    pub no_history: bool,
    /// The room's settings as the network last told them (IRC: its modes),
    /// for its disco#info.
    pub config: Option<RoomConfig>,
}

impl RoomState {
    /// A room the user is joining as `nick`.
    pub fn new(gw: &Gateway, room: &RemoteAddress, nick: String) -> RoomState {
        RoomState {
            nick,
            jid: room_bare(gw, room),
            ..RoomState::default()
        }
    }

    /// The in-room JID of `nick`, or `None` when no JID can carry it.
    pub fn occupant(&self, nick: &str) -> Option<FullJid> {
        occupant_of(self.jid.as_ref()?, nick).ok()
    }
}

/// What a join needs again to rejoin the room after a gateway restart,
/// kept with the room's record (the store's `rooms.settings`): the join's
/// password (an IRC channel key), stored as the registration's passwords
/// are, and never logged.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct JoinSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl JoinSettings {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings")
    }

    /// From a room record; a record from before it held any is `{}`.
    pub fn from_json(json: &str) -> JoinSettings {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// The occupants of one room, by nick.
///
/// Every user of a busy channel has one of these per room, so an entry is
/// kept to 24 bytes: the nick inline (an [`EcoString`] holds up to 15 bytes
/// without allocating, which most nicks fit), and a three-byte standing,
/// with the user and status message of the few occupants who have either
/// kept apart. Hash maps, a third smaller than B-trees of the same entries.
#[derive(Debug, Default)]
pub struct OccupantList {
    standings: HashMap<EcoString, Standing>,
    details: HashMap<EcoString, Details>,
}

#[derive(Debug, Clone, Copy)]
struct Standing {
    affiliation: Affiliation,
    role: Role,
    show: PresenceShow,
}

#[derive(Debug)]
struct Details {
    user: Option<RemoteAddress>,
    status: Option<Box<str>>,
}

impl OccupantList {
    pub fn insert(&mut self, occupant: Occupant) {
        let nick = EcoString::from(occupant.nick);
        let standing = Standing {
            affiliation: occupant.affiliation,
            role: occupant.role,
            show: occupant.show,
        };
        if occupant.user.is_some() || occupant.status.is_some() {
            let details = Details {
                user: occupant.user,
                status: occupant.status.map(String::into_boxed_str),
            };
            self.details.insert(nick.clone(), details);
        } else if !self.details.is_empty() {
            self.details.remove(&nick);
        }
        self.standings.insert(nick, standing);
    }

    pub fn remove(&mut self, nick: &str) -> Option<Occupant> {
        let occupant = self.get(nick)?;
        self.standings.remove(nick);
        self.details.remove(nick);
        Some(occupant)
    }

    /// Change an occupant's affiliation and role; the occupant as it is now.
    pub fn set_standing(
        &mut self,
        nick: &str,
        affiliation: Affiliation,
        role: Role,
    ) -> Option<Occupant> {
        let standing = self.standings.get_mut(nick)?;
        standing.affiliation = affiliation;
        standing.role = role;
        self.get(nick)
    }

    /// Change an occupant's availability; the occupant as it is now.
    pub fn set_presence(
        &mut self,
        nick: &str,
        show: PresenceShow,
        status: Option<&str>,
    ) -> Option<Occupant> {
        let standing = self.standings.get_mut(nick)?;
        standing.show = show;
        match (self.details.get_mut(nick), status) {
            (Some(details), status) => {
                details.status = status.map(Box::from);
                if details.user.is_none() && details.status.is_none() {
                    self.details.remove(nick);
                }
            }
            (None, Some(status)) => {
                let details = Details {
                    user: None,
                    status: Some(status.into()),
                };
                self.details.insert(nick.into(), details);
            }
            (None, None) => {}
        }
        self.get(nick)
    }

    /// The occupant under `nick`.
    pub fn get(&self, nick: &str) -> Option<Occupant> {
        let standing = self.standings.get(nick)?;
        let details = self.details.get(nick);
        Some(Occupant {
            user: details.and_then(|d| d.user.clone()),
            nick: nick.to_owned(),
            affiliation: standing.affiliation,
            role: standing.role,
            show: standing.show,
            status: details.and_then(|d| d.status.as_deref().map(str::to_owned)),
        })
    }

    pub fn len(&self) -> usize {
        self.standings.len()
    }

    /// The nick of the occupant the bridge reported as `user`.
    pub fn nick_of(&self, user: &RemoteAddress) -> Option<&str> {
        self.details
            .iter()
            .find(|(_, d)| d.user.as_ref() == Some(user))
            .map(|(nick, _)| nick.as_str())
    }

    /// By nick, so that every client is shown the room in the same order.
    pub fn iter(&self) -> impl Iterator<Item = Occupant> + '_ {
        let mut nicks: Vec<&str> = self.standings.keys().map(EcoString::as_str).collect();
        nicks.sort_unstable();
        nicks.into_iter().filter_map(|nick| self.get(nick))
    }

    pub fn clear(&mut self) {
        self.standings.clear();
        self.details.clear();
    }
}

#[derive(Debug, Default)]
pub struct Rooms {
    /// Boxed: a table keeps room for a few more entries than it holds, and
    /// a `RoomState` is some 250 bytes (1.1 KB for a user's one room,
    /// measured with heaptrack, against 0.4 KB boxed).
    rooms: HashMap<RemoteAddress, Box<RoomState>>,
    /// The history each joining resource asked for, until its join completes
    /// and the history is sent. Kept apart from `RoomState` because the
    /// request comes with the join presence, before the room exists.
    history: HashMap<(RemoteAddress, FullJid), HistoryRequest>,
}

impl Rooms {
    pub fn get(&self, room: &RemoteAddress) -> Option<&RoomState> {
        self.rooms.get(room).map(|r| &**r)
    }

    pub fn get_mut(&mut self, room: &RemoteAddress) -> Option<&mut RoomState> {
        self.rooms.get_mut(room).map(|r| &mut **r)
    }

    pub fn insert(&mut self, room: RemoteAddress, state: RoomState) {
        self.rooms.insert(room, Box::new(state));
    }

    pub fn remove(&mut self, room: &RemoteAddress) -> Option<RoomState> {
        self.history.retain(|(r, _), _| r != room);
        self.rooms.remove(room).map(|r| *r)
    }

    pub fn addresses(&self) -> Vec<RemoteAddress> {
        self.rooms.keys().cloned().collect()
    }

    /// Remember the history a join presence asks for. Presences of a resource
    /// already in the room only update its status: they get no history.
    pub fn want_history(
        &mut self,
        room: &RemoteAddress,
        resource: &FullJid,
        request: HistoryRequest,
    ) {
        if self
            .rooms
            .get(room)
            .is_some_and(|r| r.resources.contains(resource))
        {
            return;
        }
        self.history
            .insert((room.clone(), resource.clone()), request);
    }

    /// The history a resource asked for, once: a rejoin after a network
    /// outage must not replay it again.
    pub fn take_history(
        &mut self,
        room: &RemoteAddress,
        resource: &FullJid,
    ) -> Option<HistoryRequest> {
        let request = self.history.remove(&(room.clone(), resource.clone()));
        if self.history.is_empty() {
            // A map keeps its table when emptied; every user has one, and
            // it is empty but for the moment of a join.
            self.history = HashMap::new();
        }
        request
    }

    /// Forget a resource that went offline; returns the rooms it left empty.
    pub fn resource_gone(&mut self, resource: &FullJid) -> Vec<RemoteAddress> {
        self.history.retain(|(_, r), _| r != resource);
        let mut emptied = Vec::new();
        for (room, state) in &mut self.rooms {
            if state.resources.remove(resource) && state.resources.is_empty() {
                emptied.push(room.clone());
            }
        }
        emptied
    }

    /// Tell every resource in every room that it is out, and forget them all.
    pub fn leave_all(&mut self, gw: &Gateway, statuses: &[u16], status: Option<&str>) {
        self.history.clear();
        for (_, state) in self.rooms.drain() {
            send_self_gone(gw, &state, statuses, status);
        }
    }

    /// Mark every room as not joined (the network connection is lost), telling
    /// the user's clients; the rooms are kept so they can be joined again.
    /// The connection carrying the rooms `lost` picks is lost: each is
    /// left (332) until joined again.
    pub fn disconnect(
        &mut self,
        gw: &Gateway,
        status: &str,
        lost: impl Fn(&RemoteAddress) -> bool,
    ) {
        for (room, state) in self.rooms.iter_mut() {
            if !lost(room) {
                continue;
            }
            if state.joined {
                send_self_gone(gw, state, &[muc::SHUTDOWN], Some(status));
            }
            state.joined = false;
            state.occupants.clear();
        }
    }
}

/// Tell each of the user's resources in the room of `state` that it is out.
pub fn send_self_gone(gw: &Gateway, state: &RoomState, extra: &[u16], status: Option<&str>) {
    let Some(from) = state.occupant(&state.nick) else {
        return;
    };
    let mut statuses = vec![muc::SELF_PRESENCE];
    statuses.extend_from_slice(extra);
    let item = OccupantItem {
        affiliation: estuary_bridge::Affiliation::None,
        role: estuary_bridge::Role::None,
        nick: None,
        reason: None,
        actor: None,
    };
    for resource in &state.resources {
        gw.send_presence(muc::gone(
            Jid::from(from.clone()),
            Jid::from(resource.clone()),
            &item,
            &statuses,
            status,
        ));
    }
}

/// Tell each of the user's resources in the room that the network refused
/// what they asked of the occupant JID `nick` (a join, a nick change), as
/// an error presence from it (XEP-0045 §7.2, §7.6).
pub fn send_occupant_error(gw: &Gateway, state: &RoomState, nick: &str, failure: &Failure) {
    let Some(from) = state.occupant(nick) else {
        return;
    };
    let by = state.jid.clone().map(Jid::from);
    for resource in &state.resources {
        gw.send_presence(muc::occupant_error(
            Jid::from(from.clone()),
            Jid::from(resource.clone()),
            failure.to_stanza_error(by.clone()).into(),
        ));
    }
}

/// The bare JID of a room, for stanza-id's `by`.
pub fn room_jid(gw: &Gateway, room: &RemoteAddress) -> Option<Jid> {
    room_bare(gw, room).map(Jid::from)
}

/// The same as a [`BareJid`], to build occupants' JIDs on.
pub fn room_bare(gw: &Gateway, room: &RemoteAddress) -> Option<BareJid> {
    bare_jid(room, gw.jid.domain()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone(nick: &str) -> Occupant {
        Occupant::new(nick, Affiliation::None, Role::Participant)
    }

    #[test]
    fn an_entry_is_a_nick_and_three_bytes() {
        assert_eq!(std::mem::size_of::<(EcoString, Standing)>(), 24);
    }

    #[test]
    fn an_occupant_comes_back_as_it_went_in() {
        for (user, status) in [
            (None, None),
            (Some("u"), None),
            (None, Some("gone")),
            (Some("u"), Some("gone")),
        ] {
            let before = Occupant {
                user: user.map(RemoteAddress::new),
                nick: "nick".into(),
                affiliation: Affiliation::Admin,
                role: Role::Moderator,
                show: PresenceShow::Away,
                status: status.map(str::to_owned),
            };
            let mut list = OccupantList::default();
            list.insert(before.clone());
            assert_eq!(list.get("nick").as_ref(), Some(&before));
            assert_eq!(list.remove("nick"), Some(before));
            assert!(list.details.is_empty());
        }
    }

    #[test]
    fn occupants_keep_their_user_and_status_through_every_change() {
        let mut list = OccupantList::default();
        let long = "a-nick-longer-than-fifteen-bytes";
        list.insert(someone(long));
        list.insert(Occupant {
            user: Some(RemoteAddress::new("bob%irc.example.org")),
            status: Some("lunch".to_owned()),
            show: PresenceShow::Away,
            ..someone("bob")
        });
        list.insert(someone("alice"));

        let shown: Vec<String> = list.iter().map(|o| o.nick).collect();
        assert_eq!(shown, ["a-nick-longer-than-fifteen-bytes", "alice", "bob"]);

        let bob = list
            .set_standing("bob", Affiliation::Admin, Role::Moderator)
            .unwrap();
        assert_eq!(bob.user, Some(RemoteAddress::new("bob%irc.example.org")));
        assert_eq!(bob.status.as_deref(), Some("lunch"));
        assert_eq!(
            (bob.affiliation, bob.role),
            (Affiliation::Admin, Role::Moderator)
        );

        // Back: the status goes, the user stays.
        let bob = list
            .set_presence("bob", PresenceShow::Online, None)
            .unwrap();
        assert_eq!(bob.status, None);
        assert_eq!(bob.user, Some(RemoteAddress::new("bob%irc.example.org")));
        assert_eq!(bob.affiliation, Affiliation::Admin);

        // A status for someone who had no details, then none again.
        let alice = list
            .set_presence("alice", PresenceShow::DoNotDisturb, Some("busy"))
            .unwrap();
        assert_eq!(alice.status.as_deref(), Some("busy"));
        list.set_presence("alice", PresenceShow::Online, None);
        assert!(!list.details.contains_key("alice"));

        // Taken out whole; re-inserted without details, none linger.
        let bob = list.remove("bob").unwrap();
        assert_eq!(bob.show, PresenceShow::Online);
        assert_eq!(bob.user, Some(RemoteAddress::new("bob%irc.example.org")));
        list.insert(someone("bob"));
        assert_eq!(list.get("bob").unwrap().user, None);

        assert!(list.remove(long).is_some());
        assert!(list.remove(long).is_none());
        assert!(list
            .set_presence("nobody", PresenceShow::Away, None)
            .is_none());
        assert!(list
            .set_standing("nobody", Affiliation::Owner, Role::Moderator)
            .is_none());
    }
}
