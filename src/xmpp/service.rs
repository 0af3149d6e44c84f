//! What every gateway domain answers by itself: disco, version, ping.

use estuary_bridge::{AddressKind, NetworkInfo, RoomConfig};
use xmpp_parsers::minidom::Element;

use super::forms::hidden_field;
use super::mam::NS_MAM;
use super::xml::{
    clean_text, element, text_element, Attrs, NS_COMMANDS, NS_DATA, NS_DISCO_INFO, NS_DISCO_ITEMS,
    NS_GATEWAY, NS_MUC, NS_PING, NS_REACTIONS, NS_REGISTER, NS_SID, NS_VERSION,
};

/// disco#info of the gateway domain.
pub fn gateway_info(info: &NetworkInfo) -> Element {
    let mut features = vec![
        NS_DISCO_INFO,
        NS_DISCO_ITEMS,
        NS_REGISTER,
        NS_COMMANDS,
        NS_GATEWAY,
        NS_VERSION,
        NS_PING,
    ];
    if info.capabilities.rooms {
        features.push(NS_MUC);
    }
    let query = element("query", NS_DISCO_INFO).append(
        element("identity", NS_DISCO_INFO)
            .with("category", "gateway")
            .with("type", info.kind)
            .with("name", info.name.clone()),
    );
    with_features(query, &features)
}

/// XEP-0054 vcard-temp.
pub const NS_VCARD: &str = "vcard-temp";

/// A contact's vCard from what the network tells.
pub fn vcard(info: &estuary_bridge::ContactInfo) -> Element {
    let mut card = element("vCard", NS_VCARD);
    for (field, value) in [
        ("FN", &info.full_name),
        ("NICKNAME", &info.nickname),
        ("DESC", &info.description),
    ] {
        if let Some(value) = value {
            card = card.append(text_element(
                field,
                NS_VCARD,
                clean_text(value).into_owned(),
            ));
        }
    }
    card.build()
}

/// XEP-0425 message moderation.
pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";

/// XEP-0045: the room reflects a message under the id its sender gave it.
pub const MUC_STABLE_ID: &str = "http://jabber.org/protocol/muc#stable_id";
/// XEP-0410: the room answers a client's ping of its own occupant JID itself.
pub const MUC_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
/// XEP-0045: every occupant is shown with a JID (status code 100).
pub const MUC_NON_ANONYMOUS: &str = "muc_nonanonymous";

/// What every room of the gateway does, whatever the network. Clients
/// read these before they rely on them: Conversations and Dino take a
/// room's stanza-ids for MAM catch-up and deduplication only where the room
/// advertises `urn:xmpp:sid:0`, and biboumi advertised all of these.
const ROOM_FEATURES: &[&str] = &[
    NS_DISCO_INFO,
    NS_MUC,
    NS_MAM,
    NS_COMMANDS,
    NS_SID,
    MUC_STABLE_ID,
    MUC_SELF_PING,
    MUC_NON_ANONYMOUS,
    NS_PING,
    NS_VERSION,
];

/// disco#info of a remote entity, from its kind alone.
pub fn remote_info(kind: AddressKind, info: &NetworkInfo, name: &str) -> Element {
    info_with(kind, info, name, &[])
}

/// [`remote_info`] with `extra` features.
fn info_with(kind: AddressKind, info: &NetworkInfo, name: &str, extra: &[&str]) -> Element {
    let capabilities = &info.capabilities;
    let (category, type_, mut features) = match kind {
        AddressKind::Room => ("conference", "text", ROOM_FEATURES.to_vec()),
        AddressKind::User => ("client", "pc", vec![NS_DISCO_INFO]),
        AddressKind::Server => ("gateway", info.kind, vec![NS_DISCO_INFO, NS_DISCO_ITEMS]),
    };
    // Each advertised only where the network allows it.
    if kind == AddressKind::Room && capabilities.moderation {
        features.push(NS_MODERATE);
    }
    if kind != AddressKind::Server && capabilities.reactions {
        features.push(NS_REACTIONS);
    }
    features.extend_from_slice(extra);
    let query = element("query", NS_DISCO_INFO).append(
        element("identity", NS_DISCO_INFO)
            .with("category", category)
            .with("type", type_)
            .with("name", name.to_owned()),
    );
    with_features(query, &features)
}

/// XEP-0045's extended room information (XEP-0128), which clients show
/// before and after a join (Gajim: the occupant count and the subject).
pub const NS_MUC_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";

/// The features XEP-0045 (§15.2) names for a room's settings: the first
/// where the setting is on, the second where it is off.
fn config_features(config: &RoomConfig) -> Vec<&'static str> {
    [
        (
            config.password_protected,
            "muc_passwordprotected",
            "muc_unsecured",
        ),
        (config.members_only, "muc_membersonly", "muc_open"),
        (config.moderated, "muc_moderated", "muc_unmoderated"),
        (config.public, "muc_public", "muc_hidden"),
    ]
    .into_iter()
    .filter_map(|(on, yes, no)| on.map(|on| if on { yes } else { no }))
    .collect()
}

/// disco#info of a room the user is in: [`remote_info`] with what the room
/// shows now, its occupants and its subject, and the features of its
/// settings where the network told them.
pub fn joined_room_info(
    info: &NetworkInfo,
    name: &str,
    occupants: usize,
    subject: Option<&str>,
    config: Option<&RoomConfig>,
) -> Element {
    let field = |var: &str, label: &str, value: &str| {
        element("field", NS_DATA)
            .with("var", var)
            .with("label", label)
            .append(text_element("value", NS_DATA, clean_text(value)))
    };
    let mut form = element("x", NS_DATA)
        .with("type", "result")
        .append(hidden_field("FORM_TYPE", NS_MUC_ROOMINFO));
    form = form.append(field(
        "muc#roominfo_occupants",
        "Number of occupants",
        &occupants.to_string(),
    ));
    if let Some(subject) = subject.filter(|s| !s.is_empty()) {
        form = form.append(field("muc#roominfo_subject", "Current subject", subject));
    }
    if let Some(any) = config.and_then(|c| c.occupants_change_subject) {
        form = form.append(field(
            "muc#roominfo_changesubject",
            "Occupants may change the subject",
            if any { "1" } else { "0" },
        ));
    }
    let extra = config.map(config_features).unwrap_or_default();
    let mut query = info_with(AddressKind::Room, info, name, &extra);
    query.append_child(form.build());
    query
}

/// disco#info for the ad-hoc commands node.
pub fn commands_node_info() -> Element {
    element("query", NS_DISCO_INFO)
        .with("node", NS_COMMANDS)
        .append(
            element("identity", NS_DISCO_INFO)
                .with("category", "automation")
                .with("type", "command-list"),
        )
        .build()
}

fn with_features(mut query: xmpp_parsers::minidom::ElementBuilder, features: &[&str]) -> Element {
    for f in features {
        query = query.append(element("feature", NS_DISCO_INFO).with("var", *f));
    }
    query.build()
}

/// disco#items: `(jid, node, name)` triples.
pub fn items(node: Option<&str>, items: &[(String, Option<String>, String)]) -> Element {
    let mut query = element("query", NS_DISCO_ITEMS).with_opt("node", node);
    for (jid, node, name) in items {
        query = query.append(
            element("item", NS_DISCO_ITEMS)
                .with("jid", jid.clone())
                .with_opt("node", node.clone())
                .with("name", name.clone()),
        );
    }
    query.build()
}

/// XEP-0092 software version.
pub fn version() -> Element {
    element("query", NS_VERSION)
        .append(element("name", NS_VERSION).append("Estuary".to_owned()))
        .append(element("version", NS_VERSION).append(env!("CARGO_PKG_VERSION").to_owned()))
        .build()
}

/// XEP-0092 software version of a remote user's client.
pub fn software(software: &estuary_bridge::Software) -> Element {
    element("query", NS_VERSION)
        .append(element("name", NS_VERSION).append(software.name.clone()))
        .append(element("version", NS_VERSION).append(software.version.clone()))
        .build()
}

/// XEP-0100 jabber:iq:gateway: how to type a remote address.
pub fn gateway_prompt(info: &NetworkInfo) -> Element {
    element("query", NS_GATEWAY)
        .append(
            element("desc", NS_GATEWAY)
                .append(format!("Enter a {} address to get its JID", info.name)),
        )
        .append(element("prompt", NS_GATEWAY).append("Address".to_owned()))
        .build()
}

/// XEP-0100 jabber:iq:gateway: the JID of a typed remote address.
pub fn gateway_jid(jid: &str) -> Element {
    element("query", NS_GATEWAY)
        .append(element("jid", NS_GATEWAY).append(jid.to_owned()))
        .build()
}
