//! What the session knows about the user's rooms: the rooms joined as MUCs
//! (their address, members, nicks and power levels), the direct chats (from
//! `m.direct`), who is typing, and which reactions are on which message.
//!
//! Room state is read from the homeserver when a room is joined and then
//! kept up to date from `/sync`, so it never depends on an SDK store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use estuary_bridge::{Affiliation, Occupant, PresenceShow, RemoteAddress, Role, RoomConfig};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value;

use crate::address::user_address;

/// Power level at and above which a member is a room owner.
const OWNER_POWER: i64 = 100;
/// Power level at and above which a member moderates (Matrix's "moderator").
const MODERATOR_POWER: i64 = 50;
/// The first room version whose creators have unlimited power (MSC4289).
const PRIVILEGED_CREATORS_VERSION: u32 = 12;

/// A room member as the XMPP user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub nick: String,
}

/// `m.room.power_levels`: who has what power.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerLevels {
    pub users: BTreeMap<String, i64>,
    pub users_default: i64,
    /// From room version 12 on, the room's creators outrank everyone and
    /// are not listed in `users`.
    pub creators: BTreeSet<String>,
    /// The power a message needs (`m.room.message`, else `events_default`).
    pub to_speak: i64,
    /// The power a topic needs (`m.room.topic`, else `state_default`).
    pub to_set_topic: i64,
}

impl PowerLevels {
    pub fn from_content(content: &Value) -> PowerLevels {
        let users = content
            .get("users")
            .and_then(Value::as_object)
            .map(|users| {
                users
                    .iter()
                    .filter_map(|(user, level)| Some((user.clone(), power_value(level)?)))
                    .collect()
            })
            .unwrap_or_default();
        // What an event of `kind` needs; the spec's defaults apply where
        // the event says nothing.
        let needed = |kind: &str, fallback: &str, default: i64| {
            content
                .get("events")
                .and_then(|e| e.get(kind))
                .or_else(|| content.get(fallback))
                .and_then(power_value)
                .unwrap_or(default)
        };
        PowerLevels {
            users,
            users_default: content
                .get("users_default")
                .and_then(power_value)
                .unwrap_or(0),
            creators: BTreeSet::new(),
            to_speak: needed("m.room.message", "events_default", 0),
            to_set_topic: needed("m.room.topic", "state_default", 50),
        }
    }

    /// New power levels, keeping the creators (they come from `m.room.create`).
    pub fn replaced_by(&self, content: &Value) -> PowerLevels {
        PowerLevels {
            creators: self.creators.clone(),
            ..PowerLevels::from_content(content)
        }
    }

    /// Note the creators of a room whose version makes them privileged
    /// (version 12 and later): the `m.room.create` sender and
    /// `additional_creators`.
    pub fn set_creators(&mut self, create_sender: Option<&UserId>, create_content: &Value) {
        let version = create_content
            .get("room_version")
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        if version < PRIVILEGED_CREATORS_VERSION {
            return;
        }
        self.creators = create_sender
            .map(|u| u.to_string())
            .into_iter()
            .chain(
                create_content
                    .get("additional_creators")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str().map(str::to_owned)),
            )
            .collect();
    }

    pub fn of(&self, user: &UserId) -> i64 {
        if self.creators.contains(user.as_str()) {
            return i64::MAX;
        }
        self.users
            .get(user.as_str())
            .copied()
            .unwrap_or(self.users_default)
    }

    /// Power levels as MUC standing: 100 owner, 50 moderator (admin), anyone
    /// else in the room a member.
    pub fn standing(&self, user: &UserId) -> (Affiliation, Role) {
        match self.of(user) {
            p if p >= OWNER_POWER => (Affiliation::Owner, Role::Moderator),
            p if p >= MODERATOR_POWER => (Affiliation::Admin, Role::Moderator),
            _ => (Affiliation::Member, Role::Participant),
        }
    }
}

/// Older rooms may carry power levels as strings.
fn power_value(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// A room the XMPP user joined as a MUC.
#[derive(Debug, Clone)]
pub struct MucRoom {
    /// The address the user joined with (`#alias%server` or `!id%server`):
    /// events must use it, since the core knows the room by it.
    pub address: RemoteAddress,
    /// The nick the user asked for; their own occupant goes by it.
    pub own_nick: String,
    pub members: HashMap<OwnedUserId, Member>,
    pub power: PowerLevels,
    /// When the user's membership began (its `origin_server_ts`): the first
    /// sync after a join repeats older events, which are history that the
    /// join already summed up (occupants, subject), not news.
    pub joined_at_ms: i64,
    /// Whether joining needs an invitation (`m.room.join_rules` other
    /// than `public`), where the room says.
    pub invite_only: Option<bool>,
}

impl MucRoom {
    /// The room's settings in MUC's terms, for its disco#info: members
    /// only from the join rule, moderated and who sets the subject from
    /// the power a member has by default. Matrix rooms have no password.
    pub fn config(&self) -> RoomConfig {
        let member = self.power.users_default;
        RoomConfig {
            moderated: Some(self.power.to_speak > member),
            members_only: self.invite_only,
            occupants_change_subject: Some(self.power.to_set_topic <= member),
            password_protected: Some(false),
            ..RoomConfig::default()
        }
    }

    /// Note the room's `m.room.join_rules`.
    pub fn set_join_rule(&mut self, content: &Value) {
        self.invite_only = content
            .get("join_rule")
            .and_then(Value::as_str)
            .map(|rule| rule != "public");
    }

    /// A nick for `user` from their display name, unique in the room: a
    /// second member with the same display name gets their full user ID.
    pub fn nick_for(&self, user: &UserId, own: &UserId, display_name: Option<&str>) -> String {
        if user == own {
            return self.own_nick.clone();
        }
        let wanted = display_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(user.localpart())
            .to_owned();
        let taken = wanted == self.own_nick
            || self
                .members
                .iter()
                .any(|(other, m)| other != user && m.nick == wanted);
        if taken {
            user.to_string()
        } else {
            wanted
        }
    }

    /// The member's current occupant, with standing from the power levels.
    pub fn occupant(&self, user: &UserId, nick: &str) -> Occupant {
        let (affiliation, role) = self.power.standing(user);
        Occupant {
            user: Some(user_address(user)),
            nick: nick.to_owned(),
            affiliation,
            role,
            show: PresenceShow::Online,
            status: None,
        }
    }

    /// The member behind a nick, for kicks and bans asked by nick.
    pub fn user_by_nick(&self, nick: &str) -> Option<OwnedUserId> {
        self.members
            .iter()
            .find(|(_, m)| m.nick == nick)
            .map(|(user, _)| user.clone())
    }
}

/// One reaction the session has seen: which message, by whom, which key.
#[derive(Debug, Clone)]
pub struct SeenReaction {
    pub room: OwnedRoomId,
    pub target: OwnedEventId,
    pub sender: OwnedUserId,
    pub key: String,
}

/// Everything the session tracks, behind one lock that is never held across
/// an `.await`.
#[derive(Debug, Default)]
pub struct RoomBook {
    pub mucs: HashMap<OwnedRoomId, MucRoom>,
    /// Direct chat rooms, with the other user (from `m.direct`).
    pub direct: HashMap<OwnedRoomId, OwnedUserId>,
    /// Who is typing in each room, to turn Matrix's lists into changes.
    pub typing: HashMap<OwnedRoomId, BTreeSet<OwnedUserId>>,
    /// Reactions by their own event ID, so that a redaction can take one back.
    pub reactions: HashMap<OwnedEventId, SeenReaction>,
    /// Links the user sent from XMPP that went to Matrix as uploaded files,
    /// by transaction ID (known before the event is sent, so the echo finds
    /// it however soon it comes): the echo is shown with the link sent.
    pub sent_links: HashMap<String, String>,
    /// Rooms (not direct chats) the user was invited to and told about.
    pub invitations: HashSet<OwnedRoomId>,
}

impl RoomBook {
    /// The keys `sender` now has on `target`, in the order they came.
    pub fn reaction_keys(&self, target: &OwnedEventId, sender: &UserId) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for r in self.reactions.values() {
            if &r.target == target && r.sender == sender && !keys.contains(&r.key) {
                keys.push(r.key.clone());
            }
        }
        keys.sort();
        keys
    }

    /// Set `m.direct` as the homeserver has it: user → rooms.
    pub fn set_direct(&mut self, content: &Value) {
        self.direct.clear();
        let Some(map) = content.as_object() else {
            return;
        };
        for (user, rooms) in map {
            let Ok(user) = OwnedUserId::try_from(user.as_str()) else {
                continue;
            };
            for room in rooms.as_array().into_iter().flatten() {
                if let Some(room) = room.as_str().and_then(|r| OwnedRoomId::try_from(r).ok()) {
                    self.direct.insert(room, user.clone());
                }
            }
        }
    }

    /// A direct chat room with `user`, if there is one.
    pub fn direct_room_with(&self, user: &UserId) -> Option<OwnedRoomId> {
        let mut rooms: Vec<&OwnedRoomId> = self
            .direct
            .iter()
            .filter(|(_, u)| u.as_str() == user.as_str())
            .map(|(r, _)| r)
            .collect();
        // Deterministic when several exist.
        rooms.sort();
        rooms.first().map(|r| (*r).clone())
    }

    /// The MUC joined under `address`.
    pub fn muc_by_address(&self, address: &RemoteAddress) -> Option<OwnedRoomId> {
        self.mucs
            .iter()
            .find(|(_, m)| &m.address == address)
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn power_levels_become_standing() {
        let power = PowerLevels::from_content(&json!({
            "users": { "@owner:x": 100, "@mod:x": "50", "@low:x": 10 },
            "users_default": 0
        }));
        let id = |s: &str| OwnedUserId::try_from(s).unwrap();
        assert_eq!(
            power.standing(&id("@owner:x")),
            (Affiliation::Owner, Role::Moderator)
        );
        assert_eq!(
            power.standing(&id("@mod:x")),
            (Affiliation::Admin, Role::Moderator)
        );
        assert_eq!(
            power.standing(&id("@low:x")),
            (Affiliation::Member, Role::Participant)
        );
        assert_eq!(
            power.standing(&id("@other:x")),
            (Affiliation::Member, Role::Participant)
        );
        let mut v12 = power.clone();
        v12.set_creators(
            Some(&id("@creator:x")),
            &json!({"room_version": "12", "additional_creators": ["@co:x"]}),
        );
        assert_eq!(v12.standing(&id("@creator:x")).0, Affiliation::Owner);
        assert_eq!(v12.standing(&id("@co:x")).0, Affiliation::Owner);
        let replaced = v12.replaced_by(&json!({"users": {}}));
        assert_eq!(replaced.standing(&id("@creator:x")).0, Affiliation::Owner);
        let mut v11 = power.clone();
        v11.set_creators(Some(&id("@creator:x")), &json!({"room_version": "11"}));
        assert_eq!(v11.standing(&id("@creator:x")).0, Affiliation::Member);
    }

    #[test]
    fn join_rules_and_power_levels_are_the_rooms_settings() {
        let mut room = MucRoom {
            address: "!r%x".into(),
            own_nick: "me".into(),
            members: HashMap::new(),
            power: PowerLevels::from_content(&json!({})),
            joined_at_ms: 0,
            invite_only: None,
        };
        let config = room.config();
        assert_eq!(config.members_only, None);
        assert_eq!(config.moderated, Some(false));
        assert_eq!(config.occupants_change_subject, Some(false));
        assert_eq!(config.password_protected, Some(false));
        room.set_join_rule(&json!({"join_rule": "invite"}));
        room.power = room.power.replaced_by(&json!({
            "events_default": 10,
            "events": {"m.room.topic": 0},
        }));
        let config = room.config();
        assert_eq!(config.members_only, Some(true));
        assert_eq!(config.moderated, Some(true));
        assert_eq!(config.occupants_change_subject, Some(true));
        room.set_join_rule(&json!({"join_rule": "public"}));
        assert_eq!(room.config().members_only, Some(false));
    }

    #[test]
    fn nicks_stay_unique() {
        let own = OwnedUserId::try_from("@me:x").unwrap();
        let alice = OwnedUserId::try_from("@alice:x").unwrap();
        let other = OwnedUserId::try_from("@alice2:x").unwrap();
        let mut room = MucRoom {
            address: "!r%x".into(),
            own_nick: "me".into(),
            members: HashMap::new(),
            power: PowerLevels::default(),
            joined_at_ms: 0,
            invite_only: None,
        };
        assert_eq!(room.nick_for(&own, &own, Some("Whatever")), "me");
        let nick = room.nick_for(&alice, &own, Some("Alice"));
        assert_eq!(nick, "Alice");
        room.members.insert(alice.clone(), Member { nick });
        assert_eq!(room.nick_for(&other, &own, Some("Alice")), "@alice2:x");
        assert_eq!(room.nick_for(&alice, &own, Some("Alice")), "Alice");
        assert_eq!(room.nick_for(&other, &own, None), "alice2");
    }
}
