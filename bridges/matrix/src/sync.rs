//! The sync task: long-polls `/sync` from the saved token, turns what the
//! homeserver reports into neutral events, and saves the next token only
//! after the batch has been handed to the core, so a crash replays a batch
//! rather than losing one.
//!
//! When the homeserver cannot be reached it reports `Disconnected` once,
//! retries with backoff from the same token, and reports `Reconnected` when a
//! sync succeeds again (the core then rejoins rooms and sends what waited).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use estuary_bridge::{
    Attachment, BridgeError, ChatState, MessageKind, PresenceShow, RemoteAddress, RemoteEvent,
    RemoteMessage, RemotePresence, RoomConfig,
};
use matrix_sdk::config::RequestConfig;
use matrix_sdk::ruma::api::client::filter::{FilterDefinition, RoomEventFilter, RoomFilter};
use matrix_sdk::ruma::api::client::membership::join_room_by_id;
use matrix_sdk::ruma::api::client::sync::sync_events::v3 as sync_events;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{uint, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use serde_json::Value;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::address::user_address;
use crate::error::http_error;
use crate::event::{message_text, strip_reply_fallback, RawEvent};
use crate::rooms::{Member, MucRoom, SeenReaction};
use crate::session::Inner;

/// How long one `/sync` waits on the server for something to happen.
const POLL: Duration = Duration::from_secs(30);
/// First and longest wait between failed syncs.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Run until the core drops the session (or the task is aborted).
pub(crate) async fn run(inner: Arc<Inner>, mut token: Option<String>) {
    let mut failures: u32 = 0;
    let mut disconnected = false;
    loop {
        let first = token.is_none();
        let mut request = sync_events::Request::new();
        request.since = token.clone();
        request.set_presence = inner
            .presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if first {
            // The first sync of a new registration only fetches a starting
            // point: the account's history is not replayed into XMPP.
            request.filter = Some(sync_events::Filter::FilterDefinition(first_sync_filter()));
        } else {
            request.timeout = Some(POLL);
        }
        let config = RequestConfig::new()
            .timeout(POLL + Duration::from_secs(30))
            .disable_retry();
        match inner.client.send(request).with_request_config(config).await {
            Ok(response) => {
                failures = 0;
                if disconnected {
                    disconnected = false;
                    info!("homeserver reachable again");
                    if !inner
                        .events
                        .send(RemoteEvent::Reconnected { server: None })
                        .await
                    {
                        return;
                    }
                }
                let next = response.next_batch.clone();
                if first {
                    account_data(&inner, &response);
                } else if !dispatch(&inner, response).await {
                    return;
                }
                if let Err(e) = inner.token_file.save(&next) {
                    warn!(error = %e, "cannot save the sync token");
                }
                token = Some(next);
            }
            Err(e) => {
                let error = http_error("sync failed", &e);
                failures += 1;
                warn!(error = %error, failures, "sync failed");
                if !disconnected {
                    disconnected = true;
                    let reason = match &error {
                        BridgeError::Auth(_) => {
                            "the homeserver no longer accepts this session; register again"
                                .to_owned()
                        }
                        other => other.to_string(),
                    };
                    if !inner
                        .events
                        .send(RemoteEvent::Disconnected {
                            reason,
                            server: None,
                        })
                        .await
                    {
                        return;
                    }
                }
                let wait = BACKOFF_START
                    .saturating_mul(2u32.saturating_pow(failures.min(8)))
                    .min(BACKOFF_MAX);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One event per room is enough for a starting point.
fn first_sync_filter() -> FilterDefinition {
    let mut timeline = RoomEventFilter::default();
    timeline.limit = Some(uint!(1));
    let mut room = RoomFilter::default();
    room.timeline = timeline;
    let mut filter = FilterDefinition::default();
    filter.room = room;
    filter
}

/// Take `m.direct` from a sync's global account data.
fn account_data(inner: &Inner, response: &sync_events::Response) {
    for raw in &response.account_data.events {
        let Ok(event) = raw.deserialize_as_unchecked::<Value>() else {
            continue;
        };
        if event.get("type").and_then(Value::as_str) == Some("m.direct") {
            if let Some(content) = event.get("content") {
                inner.book().set_direct(content);
            }
        }
    }
}

/// Hand one sync batch to the core. False once the core is gone.
async fn dispatch(inner: &Arc<Inner>, response: sync_events::Response) -> bool {
    account_data(inner, &response);
    let mut events = Vec::new();
    for (room, invited) in &response.rooms.invite {
        on_invite(inner, room, &invited.invite_state.events, &mut events).await;
    }
    let mut refresh = Vec::new();
    for (room, joined) in &response.rooms.join {
        let span = info_span!("room", %room);
        let _enter = span.enter();
        for raw in &joined.timeline.events {
            if let Some(event) = parse(raw) {
                timeline_event(inner, room, &event, &mut events, &mut refresh);
            }
        }
        for raw in &joined.ephemeral.events {
            if let Some(event) = parse(raw) {
                ephemeral_event(inner, room, &event, &mut events);
            }
        }
    }
    for (room, left) in &response.rooms.leave {
        for raw in &left.timeline.events {
            if let Some(event) = parse(raw) {
                timeline_event(inner, room, &event, &mut events, &mut refresh);
            }
        }
    }
    for raw in &response.presence.events {
        if let Some(event) = parse(raw) {
            presence_event(inner, &event, &mut events);
        }
    }
    refresh_reactions(inner, &mut events, refresh).await;
    for event in events {
        if !inner.events.send(event).await {
            return false;
        }
    }
    true
}

/// An event's envelope, or a log line and `None` for one that is malformed.
fn parse<T>(raw: &Raw<T>) -> Option<RawEvent> {
    match raw.deserialize_as_unchecked::<RawEvent>() {
        Ok(event) => Some(event),
        Err(e) => {
            warn!(error = %e, "an event does not parse; skipped");
            None
        }
    }
}

/// An invitation. To a direct chat, it is accepted at once and recorded in
/// `m.direct`, so that it shows up as a contact. To any other room, it goes
/// to the user as a MUC invitation, answered by joining (or not).
async fn on_invite(
    inner: &Inner,
    room: &OwnedRoomId,
    state: &[Raw<impl Sized>],
    out: &mut Vec<RemoteEvent>,
) {
    let invite = state.iter().filter_map(|raw| parse(raw)).find(|e| {
        e.kind == "m.room.member"
            && e.state_key.as_deref() == Some(inner.user_id.as_str())
            && e.content_str("membership") == Some("invite")
    });
    let Some(invite) = invite else { return };
    let is_direct = invite.content.get("is_direct").and_then(Value::as_bool) == Some(true);
    let Some(inviter) = invite.sender.clone() else {
        return;
    };
    if !is_direct {
        // Each invitation once, though later syncs may repeat its state.
        if inner.book().invitations.insert(room.clone()) {
            info!(%room, %inviter, "invited to a room");
            out.push(RemoteEvent::Invited {
                room: crate::address::room_address(room),
                by: crate::address::user_address(&inviter),
                reason: invite.content_str("reason").map(str::to_owned),
            });
        }
        return;
    }
    if inner.book().direct.contains_key(room) {
        return;
    }
    let request = join_room_by_id::v3::Request::new(room.clone());
    if let Err(e) = inner.client.send(request).await {
        warn!(%room, error = %http_error("joining", &e), "cannot accept a direct chat");
        return;
    }
    info!(%room, %inviter, "direct chat accepted");
    if let Err(e) = inner.add_direct(&inviter, room).await {
        warn!(%room, error = %e, "cannot record the direct chat");
    }
}

/// Where the XMPP user sees a room: as a MUC they joined, as a direct chat
/// with a contact, or not at all.
enum Chat {
    Muc(RemoteAddress),
    Direct(OwnedUserId),
}

fn chat_of(inner: &Inner, room: &RoomId) -> Option<Chat> {
    let book = inner.book();
    if let Some(muc) = book.mucs.get(room) {
        return Some(Chat::Muc(muc.address.clone()));
    }
    book.direct.get(room).cloned().map(Chat::Direct)
}

/// The room address, sender address and nick an event is shown with.
struct Shown {
    room: Option<RemoteAddress>,
    sender: RemoteAddress,
    nick: Option<String>,
    from_self: bool,
}

fn shown(inner: &Inner, room: &RoomId, chat: &Chat, sender: &OwnedUserId) -> Shown {
    let from_self = sender == &inner.user_id;
    match chat {
        Chat::Muc(address) => {
            let nick = inner
                .book()
                .mucs
                .get(room)
                .and_then(|m| m.members.get(sender).map(|m| m.nick.clone()))
                .unwrap_or_else(|| sender.localpart().to_owned());
            Shown {
                room: Some(address.clone()),
                sender: user_address(sender),
                nick: Some(nick),
                from_self,
            }
        }
        // In a direct chat both sides' messages belong to the contact's chat.
        Chat::Direct(contact) => Shown {
            room: None,
            sender: user_address(contact),
            nick: None,
            from_self,
        },
    }
}

/// A reaction event whose full set of keys should be read from the
/// homeserver: the session only saw the reactions made since it started.
struct ReactionRefresh {
    /// Index of the `RemoteEvent::Reaction` in the batch.
    index: usize,
    room: OwnedRoomId,
    target: OwnedEventId,
    sender: OwnedUserId,
}

/// Replace each reaction set of the batch with the homeserver's, so that
/// XEP-0444's "the full set" holds across gateway restarts. On failure the
/// set the session saw stays.
async fn refresh_reactions(
    inner: &Inner,
    events: &mut [RemoteEvent],
    refresh: Vec<ReactionRefresh>,
) {
    for item in refresh {
        match inner
            .reactions_by(&item.room, &item.target, &item.sender)
            .await
        {
            Ok(found) => {
                if let Some(RemoteEvent::Reaction { emojis, .. }) = events.get_mut(item.index) {
                    let mut keys: Vec<String> = found.into_iter().map(|(_, key)| key).collect();
                    keys.sort();
                    keys.dedup();
                    *emojis = keys;
                }
            }
            Err(e) => debug!(error = %e, "reactions not refreshed"),
        }
    }
}

fn timeline_event(
    inner: &Inner,
    room: &OwnedRoomId,
    event: &RawEvent,
    out: &mut Vec<RemoteEvent>,
    refresh: &mut Vec<ReactionRefresh>,
) {
    let Some(chat) = chat_of(inner, room) else {
        return;
    };
    let Some(sender) = event.sender.clone() else {
        return;
    };
    if matches!(chat, Chat::Muc(_)) {
        let joined_at = inner.book().mucs.get(room).map(|m| m.joined_at_ms);
        if event
            .origin_server_ts
            .zip(joined_at)
            .is_some_and(|(ts, at)| ts <= at)
        {
            return; // From before the join: the join already showed the room.
        }
    }
    let who = shown(inner, room, &chat, &sender);
    match event.kind.as_str() {
        "m.room.message" => room_message(inner, event, who, out),
        "m.room.encrypted" => {
            let Some(id) = &event.event_id else { return };
            // Never silence: the user learns that something was said.
            out.push(RemoteEvent::from(RemoteMessage {
                room: who.room,
                nick: who.nick,
                kind: MessageKind::Notice,
                timestamp_ms: event.origin_server_ts,
                from_self: who.from_self,
                ..RemoteMessage::text(
                    id.to_string(),
                    who.sender,
                    "[an end-to-end encrypted message, which this gateway cannot decrypt]",
                )
            }));
        }
        "m.reaction" => reaction(inner, room, event, &sender, who, out, refresh),
        "m.room.redaction" => redaction(inner, room, event, &sender, who, out, refresh),
        "m.room.member" => {
            if let Chat::Muc(address) = &chat {
                membership(inner, room, address, event, &sender, out);
            }
        }
        "m.room.topic" => {
            if let Chat::Muc(address) = chat {
                out.push(RemoteEvent::Topic {
                    room: address,
                    topic: event.content_str("topic").unwrap_or_default().to_owned(),
                    by: who.nick,
                });
            }
        }
        "m.room.name" => {
            if let Chat::Muc(address) = chat {
                out.push(RemoteEvent::RoomInfo {
                    room: address,
                    name: event.content_str("name").map(str::to_owned),
                });
            }
        }
        "m.room.power_levels" => {
            if let Chat::Muc(address) = chat {
                power_levels(inner, room, &address, event, out);
            }
        }
        "m.room.join_rules" => {
            if let Chat::Muc(address) = chat {
                let mut book = inner.book();
                if let Some(muc) = book.mucs.get_mut(room) {
                    let before = muc.config();
                    muc.set_join_rule(&event.content);
                    config_change(muc, before, address, out);
                }
            }
        }
        other => debug!(kind = other, "event not bridged"),
    }
}

fn room_message(inner: &Inner, event: &RawEvent, who: Shown, out: &mut Vec<RemoteEvent>) {
    let Some(id) = &event.event_id else { return };
    if event.relation_type() == Some("m.replace") {
        let Some(target) = event.related_event() else {
            return;
        };
        if event.sent_by_gateway() {
            return; // The core already showed the user's correction.
        }
        let new = event.content.get("m.new_content").unwrap_or(&event.content);
        let Some(body) = message_text(new) else {
            debug!("an edit without a body; skipped");
            return;
        };
        out.push(RemoteEvent::Edit {
            room: who.room,
            sender: who.sender,
            nick: who.nick,
            target: target.to_string(),
            body,
        });
        return;
    }
    let Some(text) = message_text(&event.content) else {
        debug!("message without a body (redacted or malformed); skipped");
        return;
    };
    let reply_to = event.in_reply_to();
    let body = if reply_to.is_some() {
        strip_reply_fallback(&text)
    } else {
        &text
    };
    let mut attachments = Vec::new();
    let (kind, body) = match event.content_str("msgtype") {
        Some("m.emote") => (MessageKind::Action, body.to_owned()),
        Some("m.notice") => (MessageKind::Notice, body.to_owned()),
        Some("m.image" | "m.file" | "m.video" | "m.audio") => {
            let sent_link = event
                .unsigned
                .transaction_id
                .as_deref()
                .filter(|_| who.from_self)
                .and_then(|txn| inner.book().sent_links.remove(txn));
            let proxied = inner.media_proxy.as_ref().and_then(|proxy| {
                let name = event.content_str("filename").unwrap_or(body);
                proxy.link(event.content_str("url")?, name)
            });
            match (sent_link, proxied) {
                // The echo of a link the user sent: shown as they sent it.
                (Some(link), _) => (MessageKind::Normal, link),
                // The link is the body, as HTTP-upload clients expect.
                (None, Some(url)) => {
                    attachments.push(Attachment {
                        url,
                        name: Some(body.to_owned()),
                    });
                    (MessageKind::Normal, String::new())
                }
                (None, None) => (MessageKind::Normal, format!("[file: {body}]")),
            }
        }
        _ => (MessageKind::Normal, body.to_owned()),
    };
    out.push(RemoteEvent::from(RemoteMessage {
        room: who.room,
        nick: who.nick,
        kind,
        reply_to: reply_to.map(|r| r.to_string()),
        timestamp_ms: event.origin_server_ts,
        from_self: who.from_self,
        attachments,
        ..RemoteMessage::text(id.to_string(), who.sender, body)
    }));
}

fn reaction(
    inner: &Inner,
    room: &OwnedRoomId,
    event: &RawEvent,
    sender: &OwnedUserId,
    who: Shown,
    out: &mut Vec<RemoteEvent>,
    refresh: &mut Vec<ReactionRefresh>,
) {
    let (Some(id), Some(target)) = (&event.event_id, event.related_event()) else {
        return;
    };
    let Some(key) = event
        .relation()
        .and_then(|r| r.get("key"))
        .and_then(Value::as_str)
    else {
        return;
    };
    let emojis = {
        let mut book = inner.book();
        book.reactions.insert(
            id.clone(),
            SeenReaction {
                room: room.clone(),
                target: target.clone(),
                sender: sender.clone(),
                key: key.to_owned(),
            },
        );
        book.reaction_keys(&target, sender)
    };
    if event.sent_by_gateway() {
        return;
    }
    refresh.push(ReactionRefresh {
        index: out.len(),
        room: room.clone(),
        target: target.clone(),
        sender: sender.clone(),
    });
    out.push(RemoteEvent::Reaction {
        room: who.room,
        sender: who.sender,
        nick: who.nick,
        target: target.to_string(),
        emojis,
    });
}

fn redaction(
    inner: &Inner,
    room: &OwnedRoomId,
    event: &RawEvent,
    sender: &OwnedUserId,
    who: Shown,
    out: &mut Vec<RemoteEvent>,
    refresh: &mut Vec<ReactionRefresh>,
) {
    let Some(target) = event.redaction_target() else {
        return;
    };
    let undone = {
        let mut book = inner.book();
        book.reactions.remove(&target).map(|r| {
            let keys = book.reaction_keys(&r.target, &r.sender);
            (r, keys)
        })
    };
    if event.sent_by_gateway() {
        return;
    }
    match undone {
        Some((reaction, emojis)) if &reaction.sender == sender => {
            refresh.push(ReactionRefresh {
                index: out.len(),
                room: room.clone(),
                target: reaction.target.clone(),
                sender: sender.clone(),
            });
            out.push(RemoteEvent::Reaction {
                room: who.room,
                sender: who.sender,
                nick: who.nick,
                target: reaction.target.to_string(),
                emojis,
            });
        }
        Some(_) => debug!("a moderator removed a reaction; not shown"),
        None => out.push(RemoteEvent::Retract {
            room: who.room,
            sender: who.sender,
            nick: who.nick,
            target: target.to_string(),
        }),
    }
}

fn membership(
    inner: &Inner,
    room: &OwnedRoomId,
    address: &RemoteAddress,
    event: &RawEvent,
    sender: &OwnedUserId,
    out: &mut Vec<RemoteEvent>,
) {
    let Some(user) = event.state_user() else {
        return;
    };
    let is_self = user == inner.user_id;
    let mut book = inner.book();
    let Some(muc) = book.mucs.get_mut(room) else {
        return;
    };
    let known = muc.members.get(&user).map(|m| m.nick.clone());
    match event.content_str("membership") {
        Some("join") => {
            let nick = muc.nick_for(&user, &inner.user_id, event.content_str("displayname"));
            match known {
                None => {
                    muc.members
                        .insert(user.clone(), Member { nick: nick.clone() });
                    out.push(RemoteEvent::Join {
                        room: address.clone(),
                        occupant: muc.occupant(&user, &nick),
                        is_self,
                        nick_changed: false,
                    });
                }
                Some(old) if old != nick => {
                    muc.members
                        .insert(user.clone(), Member { nick: nick.clone() });
                    out.push(RemoteEvent::NickChange {
                        room: address.clone(),
                        old,
                        new: nick,
                        is_self,
                    });
                }
                Some(_) => {}
            }
        }
        Some("leave" | "ban") => {
            let Some(nick) = known else { return };
            muc.members.remove(&user);
            let reason = event.content_str("reason").map(str::to_owned);
            if sender == &user {
                out.push(RemoteEvent::Part {
                    room: address.clone(),
                    nick,
                    reason,
                    is_self,
                });
            } else {
                let by = muc.members.get(sender).map(|m| m.nick.clone());
                out.push(RemoteEvent::Kick {
                    room: address.clone(),
                    nick,
                    by,
                    reason,
                    is_self,
                    banned: event.content_str("membership") == Some("ban"),
                });
            }
            if is_self {
                book.mucs.remove(room);
            }
        }
        _ => {}
    }
}

fn power_levels(
    inner: &Inner,
    room: &OwnedRoomId,
    address: &RemoteAddress,
    event: &RawEvent,
    out: &mut Vec<RemoteEvent>,
) {
    let mut book = inner.book();
    let Some(muc) = book.mucs.get_mut(room) else {
        return;
    };
    let new = muc.power.replaced_by(&event.content);
    for (user, member) in &muc.members {
        let before = muc.power.standing(user);
        let after = new.standing(user);
        if before != after {
            out.push(RemoteEvent::RoleChange {
                room: address.clone(),
                nick: member.nick.clone(),
                affiliation: after.0,
                role: after.1,
            });
        }
    }
    let before = muc.config();
    muc.power = new;
    config_change(muc, before, address.clone(), out);
}

/// The room's settings changed from `before`: the core tells the clients.
fn config_change(
    muc: &MucRoom,
    before: RoomConfig,
    address: RemoteAddress,
    out: &mut Vec<RemoteEvent>,
) {
    let config = muc.config();
    if config != before {
        out.push(RemoteEvent::RoomConfig {
            room: address,
            config,
        });
    }
}

fn ephemeral_event(
    inner: &Inner,
    room: &OwnedRoomId,
    event: &RawEvent,
    out: &mut Vec<RemoteEvent>,
) {
    let Some(chat) = chat_of(inner, room) else {
        return;
    };
    match event.kind.as_str() {
        "m.typing" => {
            let now: BTreeSet<OwnedUserId> = event
                .content
                .get("user_ids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|u| OwnedUserId::try_from(u.as_str()?).ok())
                .filter(|u| u != &inner.user_id)
                .collect();
            let before = inner
                .book()
                .typing
                .insert(room.clone(), now.clone())
                .unwrap_or_default();
            for user in now.difference(&before) {
                let who = shown(inner, room, &chat, user);
                out.push(RemoteEvent::Typing {
                    room: who.room,
                    sender: who.sender,
                    nick: who.nick,
                    state: ChatState::Composing,
                });
            }
            for user in before.difference(&now) {
                let who = shown(inner, room, &chat, user);
                out.push(RemoteEvent::Typing {
                    room: who.room,
                    sender: who.sender,
                    nick: who.nick,
                    state: ChatState::Paused,
                });
            }
        }
        "m.receipt" => {
            let Some(receipts) = event.content.as_object() else {
                return;
            };
            for (event_id, kinds) in receipts {
                let readers = kinds.get("m.read").and_then(Value::as_object);
                for reader in readers.into_iter().flat_map(|r| r.keys()) {
                    let Ok(user) = OwnedUserId::try_from(reader.as_str()) else {
                        continue;
                    };
                    if user == inner.user_id {
                        continue;
                    }
                    let who = shown(inner, room, &chat, &user);
                    out.push(RemoteEvent::ReadMarker {
                        room: who.room,
                        sender: who.sender,
                        up_to: event_id.clone(),
                    });
                }
            }
        }
        _ => {}
    }
}

fn presence_event(inner: &Inner, event: &RawEvent, out: &mut Vec<RemoteEvent>) {
    let Some(user) = &event.sender else { return };
    if user == &inner.user_id || !inner.book().direct.values().any(|u| u == user) {
        return;
    }
    let show = match event.content_str("presence") {
        Some("online") => PresenceShow::Online,
        Some("unavailable") => PresenceShow::Away,
        _ => PresenceShow::Offline,
    };
    out.push(RemoteEvent::Presence(RemotePresence {
        user: user_address(user),
        show,
        status: event.content_str("status_msg").map(str::to_owned),
    }));
}

/// Start the sync task for a session, in the user's span.
pub(crate) fn spawn(inner: Arc<Inner>, token: Option<String>) -> tokio::task::JoinHandle<()> {
    let span = info_span!("matrix_sync", user = %inner.user_id);
    tokio::spawn(run(inner, token).instrument(span))
}
