//! MUC (XEP-0045) presences and subjects for remote rooms.

use estuary_bridge::{Affiliation, Occupant, PresenceShow, Role};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::minidom::{Element, ElementBuilder};
use xmpp_parsers::presence::{Presence, Show, Type as PresenceType};

use super::xml::{clean_text, element, Attrs, NS_MUC, NS_MUC_USER};

pub const SELF_PRESENCE: u16 = 110;
pub const NON_ANONYMOUS: u16 = 100;
pub const NICK_ASSIGNED: u16 = 210;
pub const NICK_CHANGED: u16 = 303;
pub const BANNED: u16 = 301;
pub const KICKED: u16 = 307;
pub const SHUTDOWN: u16 = 332;
/// XEP-0045 §10.2.1: the room's configuration changed.
pub const CONFIG_CHANGED: u16 = 104;

pub fn affiliation(a: Affiliation) -> &'static str {
    match a {
        Affiliation::Owner => "owner",
        Affiliation::Admin => "admin",
        Affiliation::Member => "member",
        Affiliation::None => "none",
        Affiliation::Outcast => "outcast",
    }
}

pub fn role(r: Role) -> &'static str {
    match r {
        Role::Moderator => "moderator",
        Role::Participant => "participant",
        Role::Visitor => "visitor",
        Role::None => "none",
    }
}

pub fn show(show: PresenceShow) -> Option<Show> {
    match show {
        PresenceShow::Away => Some(Show::Away),
        PresenceShow::ExtendedAway => Some(Show::Xa),
        PresenceShow::DoNotDisturb => Some(Show::Dnd),
        PresenceShow::Chat => Some(Show::Chat),
        PresenceShow::Online | PresenceShow::Offline => None,
    }
}

/// The `<x xmlns=muc#user>` of an occupant presence.
pub struct OccupantItem<'a> {
    pub affiliation: Affiliation,
    pub role: Role,
    pub nick: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub actor: Option<&'a str>,
}

/// `real`: the occupant's JID, shown in a non-anonymous room.
fn muc_user(item: &OccupantItem, statuses: &[u16], real: Option<Jid>) -> Element {
    let mut it = element("item", NS_MUC_USER)
        .with("affiliation", affiliation(item.affiliation))
        .with("role", role(item.role))
        .with_opt("jid", real.map(|j| j.to_string()))
        .with_opt("nick", item.nick.map(|n| clean_text(n).into_owned()));
    if let Some(actor) = item.actor {
        it = it.append(element("actor", NS_MUC_USER).with("nick", clean_text(actor).into_owned()));
    }
    if let Some(reason) = item.reason {
        it = it.append(element("reason", NS_MUC_USER).append(clean_text(reason).into_owned()));
    }
    with_statuses(element("x", NS_MUC_USER).append(it), statuses).build()
}

fn with_statuses(mut x: ElementBuilder, statuses: &[u16]) -> ElementBuilder {
    for code in statuses {
        x = x.append(element("status", NS_MUC_USER).with("code", code.to_string()));
    }
    x
}

/// An occupant's available presence; `real` is the occupant's JID, shown
/// in a non-anonymous room.
pub fn occupant(from: Jid, to: Jid, o: &Occupant, statuses: &[u16], real: Option<Jid>) -> Presence {
    let mut p = Presence::new(PresenceType::None);
    p.from = Some(from);
    p.to = Some(to);
    p.show = show(o.show);
    if let Some(status) = &o.status {
        p.set_status(String::new(), clean_text(status).into_owned());
    }
    p.payloads.push(muc_user(
        &OccupantItem {
            affiliation: o.affiliation,
            role: o.role,
            nick: None,
            reason: None,
            actor: None,
        },
        statuses,
        real,
    ));
    p
}

/// An occupant leaving (part, kick, nick change, shutdown).
pub fn gone(
    from: Jid,
    to: Jid,
    item: &OccupantItem,
    statuses: &[u16],
    status: Option<&str>,
) -> Presence {
    let mut p = Presence::new(PresenceType::Unavailable);
    p.from = Some(from);
    p.to = Some(to);
    if let Some(status) = status {
        p.set_status(String::new(), clean_text(status).into_owned());
    }
    p.payloads.push(muc_user(item, statuses, None));
    p
}

/// A join or a nick change the room refused (XEP-0045 §7.2, §7.6): an
/// error presence from the occupant JID asked for.
pub fn occupant_error(from: Jid, to: Jid, error: Element) -> Presence {
    let mut p = Presence::new(PresenceType::Error);
    p.from = Some(from);
    p.to = Some(to);
    p.payloads.push(element("x", NS_MUC).build());
    p.payloads.push(error);
    p
}

/// The password a join presence carries (`<x xmlns='…muc'><password/>`).
pub fn join_password(payloads: &[Element]) -> Option<String> {
    payloads
        .iter()
        .find(|p| p.is("x", NS_MUC))?
        .get_child("password", NS_MUC)
        .map(Element::text)
}

/// The room subject; an empty one means there is none, which MUC clients
/// wait for to know the join is complete.
pub fn subject(from: Jid, to: Jid, subject: &str) -> Message {
    let mut m = Message::new_with_type(MessageType::Groupchat, Some(to));
    m.from = Some(from);
    m.subjects
        .insert(Lang::default(), clean_text(subject).into_owned());
    m
}

/// The mark of a private message between occupants (XEP-0045 §7.5), which
/// clients show in the room's private chat rather than as a stranger's.
pub fn private_message_marker() -> Element {
    element("x", NS_MUC_USER).build()
}

/// The room tells its occupants that its configuration changed (XEP-0045
/// §10.2.1): a message without a body, with status 104.
pub fn config_changed(room: Jid, to: Jid, id: &str) -> Message {
    let mut m = from_room(room, to, id);
    m.payloads
        .push(with_statuses(element("x", NS_MUC_USER), &[CONFIG_CHANGED]).build());
    m
}

/// A message from the room itself (XEP-0045's messages from the room's
/// bare JID): no occupant said it.
pub fn room_notice(room: Jid, to: Jid, id: &str, text: &str) -> Message {
    let mut m = from_room(room, to, id);
    m.bodies
        .insert(Lang::default(), clean_text(text).into_owned());
    m
}

fn from_room(room: Jid, to: Jid, id: &str) -> Message {
    let mut m = Message::new_with_type(MessageType::Groupchat, Some(to));
    m.from = Some(room);
    m.id = Some(xmpp_parsers::message::Id(id.to_owned()));
    m
}
