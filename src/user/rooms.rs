//! The rooms a user is in, as the gateway has told the user's clients.

use std::collections::{BTreeSet, HashMap};

use estuary_bridge::{Affiliation, Occupant, PresenceShow, RemoteAddress, Role, Standing};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};

use crate::gateway::Gateway;
use crate::xmpp::address::{bare_jid, occupant_of};
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

/// The occupants of one room, by nick.
///
/// Every user of a busy channel has one of these per room, so it is kept
/// compact: the nick is stored once (as the key) and the rest in a
/// [`Standing`], rather than as whole [`Occupant`]s, in a hash map (a
/// third smaller than a B-tree of the same entries).
#[derive(Debug, Default)]
pub struct OccupantList(HashMap<Box<str>, Standing>);

impl OccupantList {
    pub fn insert(&mut self, occupant: Occupant) {
        let (nick, standing) = Standing::of(occupant);
        self.0.insert(nick, standing);
    }

    pub fn remove(&mut self, nick: &str) -> Option<Occupant> {
        self.0.remove(nick).map(|s| s.occupant(nick))
    }

    /// Change an occupant's affiliation and role; the occupant as it is now.
    pub fn set_standing(
        &mut self,
        nick: &str,
        affiliation: Affiliation,
        role: Role,
    ) -> Option<Occupant> {
        let standing = self.0.get_mut(nick)?;
        standing.affiliation = affiliation;
        standing.role = role;
        Some(standing.occupant(nick))
    }

    /// Change an occupant's availability; the occupant as it is now.
    pub fn set_presence(
        &mut self,
        nick: &str,
        show: PresenceShow,
        status: Option<&str>,
    ) -> Option<Occupant> {
        let standing = self.0.get_mut(nick)?;
        standing.show = show;
        standing.set_status(status);
        Some(standing.occupant(nick))
    }

    /// By nick, so that every client is shown the room in the same order.
    pub fn iter(&self) -> impl Iterator<Item = Occupant> + '_ {
        let mut nicks: Vec<&str> = self.0.keys().map(|n| &**n).collect();
        nicks.sort_unstable();
        nicks.into_iter().map(|nick| self.0[nick].occupant(nick))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<RemoteAddress, RoomState>,
    /// The history each joining resource asked for, until its join completes
    /// and the history is sent. Kept apart from `RoomState` because the
    /// request comes with the join presence, before the room exists.
    history: HashMap<(RemoteAddress, FullJid), HistoryRequest>,
}

impl Rooms {
    pub fn get(&self, room: &RemoteAddress) -> Option<&RoomState> {
        self.rooms.get(room)
    }

    pub fn get_mut(&mut self, room: &RemoteAddress) -> Option<&mut RoomState> {
        self.rooms.get_mut(room)
    }

    pub fn insert(&mut self, room: RemoteAddress, state: RoomState) {
        self.rooms.insert(room, state);
    }

    pub fn remove(&mut self, room: &RemoteAddress) -> Option<RoomState> {
        self.history.retain(|(r, _), _| r != room);
        self.rooms.remove(room)
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
        self.history.remove(&(room.clone(), resource.clone()))
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
    pub fn disconnect_all(&mut self, gw: &Gateway, status: &str) {
        for state in self.rooms.values_mut() {
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

/// The bare JID of a room, for stanza-id's `by`.
pub fn room_jid(gw: &Gateway, room: &RemoteAddress) -> Option<Jid> {
    room_bare(gw, room).map(Jid::from)
}

/// The same as a [`BareJid`], to build occupants' JIDs on.
pub fn room_bare(gw: &Gateway, room: &RemoteAddress) -> Option<BareJid> {
    bare_jid(room, gw.jid.domain()).ok()
}
