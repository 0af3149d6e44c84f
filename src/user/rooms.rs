//! The rooms a user is in, as the gateway has told the user's clients.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use estuary_bridge::{Occupant, RemoteAddress};
use xmpp_parsers::jid::{FullJid, Jid};

use crate::gateway::Gateway;
use crate::xmpp::address::{bare_jid, occupant_jid};
use crate::xmpp::muc::{self, OccupantItem};

/// One room: the user's nick, which of the user's resources are in it, and
/// the occupants and subject, so a second resource joining can be shown the
/// room without asking the network again.
#[derive(Debug, Default)]
pub struct RoomState {
    pub nick: String,
    pub resources: BTreeSet<FullJid>,
    pub occupants: BTreeMap<String, Occupant>,
    pub subject: Option<String>,
    /// The network confirmed the join (the self-presence was sent).
    pub joined: bool,
}

#[derive(Debug, Default)]
pub struct Rooms(HashMap<RemoteAddress, RoomState>);

impl Rooms {
    pub fn get(&self, room: &RemoteAddress) -> Option<&RoomState> {
        self.0.get(room)
    }

    pub fn get_mut(&mut self, room: &RemoteAddress) -> Option<&mut RoomState> {
        self.0.get_mut(room)
    }

    pub fn insert(&mut self, room: RemoteAddress, state: RoomState) {
        self.0.insert(room, state);
    }

    pub fn remove(&mut self, room: &RemoteAddress) -> Option<RoomState> {
        self.0.remove(room)
    }

    pub fn addresses(&self) -> Vec<RemoteAddress> {
        self.0.keys().cloned().collect()
    }

    /// Forget a resource that went offline; returns the rooms it left empty.
    pub fn resource_gone(&mut self, resource: &FullJid) -> Vec<RemoteAddress> {
        let mut emptied = Vec::new();
        for (room, state) in &mut self.0 {
            if state.resources.remove(resource) && state.resources.is_empty() {
                emptied.push(room.clone());
            }
        }
        emptied
    }

    /// Tell every resource in every room that it is out, and forget them all.
    pub fn leave_all(&mut self, gw: &Gateway, statuses: &[u16], status: Option<&str>) {
        for (room, state) in self.0.drain() {
            send_self_gone(gw, &room, &state, statuses, status);
        }
    }

    /// Mark every room as not joined (the network connection is lost), telling
    /// the user's clients; the rooms are kept so they can be joined again.
    pub fn disconnect_all(&mut self, gw: &Gateway, status: &str) {
        for (room, state) in &mut self.0 {
            if state.joined {
                send_self_gone(gw, room, state, &[muc::SHUTDOWN], Some(status));
            }
            state.joined = false;
            state.occupants.clear();
        }
    }
}

pub fn send_self_gone(
    gw: &Gateway,
    room: &RemoteAddress,
    state: &RoomState,
    extra: &[u16],
    status: Option<&str>,
) {
    let Ok(from) = occupant_jid(room, &gw.domain, &state.nick) else {
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
    bare_jid(room, &gw.domain).ok().map(Jid::from)
}
