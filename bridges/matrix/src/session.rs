//! One XMPP user logged in to their Matrix account: the calls the core makes
//! ([`Session`]), each one request to the homeserver's client API, plus the
//! sync task (see `sync`) that turns what happens on Matrix into events.
//!
//! Requests go through `matrix-sdk`'s authenticated HTTP client with ruma's
//! typed endpoints, and room state is read from the homeserver, not from an
//! SDK store: the bridge keeps no store of its own beyond the sync token,
//! so the same code works right after a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use estuary_bridge::{
    BridgeError, ChatState, ContactInfo, EventSender, MessageKind, OutgoingMessage, PresenceShow,
    RemoteAddress, RemoteEvent, RoomInfo, Session,
};
use matrix_sdk::ruma::api::client::{
    alias::get_alias,
    config::get_global_account_data,
    config::set_global_account_data,
    membership::{
        ban_user, invite_user, join_room_by_id_or_alias, joined_rooms, kick_user, leave_room,
        unban_user,
    },
    message::send_message_event,
    presence::set_presence,
    profile::get_profile,
    receipt::create_receipt,
    redact::redact_event,
    relations::get_relating_events_with_rel_type_and_event_type as relating_events,
    room::create_room,
    state::get_state_event_for_key,
    state::get_state_events,
    state::send_state_event,
    typing::create_typing_event,
};
use matrix_sdk::ruma::events::relation::RelationType;
use matrix_sdk::ruma::events::{
    AnyGlobalAccountDataEventContent, AnyMessageLikeEventContent, AnyStateEventContent,
    GlobalAccountDataEventType, MessageLikeEventType, StateEventType, TimelineEventType,
};
use matrix_sdk::ruma::presence::PresenceState;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{
    EventId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedTransactionId, OwnedUserId, UserId,
};
use matrix_sdk::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::address::{alias_address, room_address, MatrixAddress};
use crate::error::http_error;
use crate::event::RawEvent;
use crate::rooms::{Member, MucRoom, PowerLevels, RoomBook, SeenReaction};
use crate::state::SyncTokenFile;

/// Prefix of the transaction IDs this gateway uses: an event that comes back
/// through `/sync` with one was sent by the gateway itself.
pub(crate) const TXN_PREFIX: &str = "estuary.";
/// Pages of `/relations` read to find the user's own reactions.
const MAX_REACTION_PAGES: usize = 5;
/// How long a typing notification lasts unless renewed.
const TYPING_TIMEOUT: Duration = Duration::from_secs(30);

/// What the session and its sync task share.
pub(crate) struct Inner {
    pub client: Client,
    pub user_id: OwnedUserId,
    pub events: EventSender,
    pub book: Mutex<RoomBook>,
    pub token_file: SyncTokenFile,
    /// What the user last set. Every `/sync` announces it, because a sync
    /// that said nothing would turn an "unavailable" user back to online.
    pub presence: Mutex<PresenceState>,
    /// What may be fetched to send XMPP attachments as media.
    pub fetch_policy: crate::media::FetchPolicy,
    /// Links files from Matrix for XMPP clients, when configured.
    pub media_proxy: Option<Arc<crate::media_proxy::MediaProxy>>,
}

impl Inner {
    pub fn new(
        client: Client,
        user_id: OwnedUserId,
        events: EventSender,
        token_file: SyncTokenFile,
        fetch_policy: crate::media::FetchPolicy,
        media_proxy: Option<Arc<crate::media_proxy::MediaProxy>>,
    ) -> Inner {
        Inner {
            client,
            user_id,
            events,
            book: Mutex::new(RoomBook::default()),
            token_file,
            presence: Mutex::new(PresenceState::Online),
            fetch_policy,
            media_proxy,
        }
    }

    pub fn book(&self) -> MutexGuard<'_, RoomBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transaction ID never used before by this device: the time the
    /// process started plus a counter shared by every session of the
    /// process. The homeserver answers a repeated ID with the earlier event
    /// instead of sending a new one, so neither a restarted gateway nor a
    /// user who logs in again within the same process may repeat one.
    fn txn_id(&self) -> OwnedTransactionId {
        static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let started = STARTED.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or_default()
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        OwnedTransactionId::from(format!("{TXN_PREFIX}{started}.{n}"))
    }

    /// Send one message-like event; returns its event ID.
    pub async fn send_event(
        &self,
        room: &OwnedRoomId,
        event_type: MessageLikeEventType,
        content: Value,
    ) -> Result<OwnedEventId, BridgeError> {
        self.send_event_as(room, event_type, content, self.txn_id())
            .await
    }

    /// [`Inner::send_event`] under a transaction ID chosen by the caller.
    pub async fn send_event_as(
        &self,
        room: &OwnedRoomId,
        event_type: MessageLikeEventType,
        content: Value,
        txn: OwnedTransactionId,
    ) -> Result<OwnedEventId, BridgeError> {
        let raw: Raw<AnyMessageLikeEventContent> = Raw::new(&content)
            .map_err(|e| BridgeError::BadRequest(e.to_string()))?
            .cast_unchecked();
        let request = send_message_event::v3::Request::new_raw(room.clone(), txn, event_type, raw);
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| http_error("sending to the room failed", &e))?;
        Ok(response.event_id)
    }

    /// Upload a file to the user's homeserver; its `mxc://` URI.
    pub async fn upload(
        &self,
        file: &crate::media::FileInfo,
        bytes: Vec<u8>,
    ) -> Result<String, BridgeError> {
        use matrix_sdk::ruma::api::client::media::create_content;
        let mut request = create_content::v3::Request::new(bytes);
        request.filename = Some(file.name.clone());
        request.content_type = Some(file.content_type.clone());
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| http_error("uploading the file failed", &e))?;
        Ok(response.content_uri.to_string())
    }

    /// A message that is only a link to a file, as Matrix media; `None`
    /// (after a log line) when the file cannot be fetched or uploaded, and
    /// the link is sent as text instead.
    async fn media_content(&self, message: &OutgoingMessage) -> Option<Value> {
        // Text around a link goes as text, link included.
        let attachment = message.sole_file()?;
        let fetched = match crate::media::fetch(&attachment.url, &self.fetch_policy).await {
            Ok(fetched) => fetched,
            Err(e) => {
                warn!(error = %e, "an attachment is sent as a link: it cannot be fetched");
                return None;
            }
        };
        match self.upload(&fetched.info, fetched.bytes).await {
            Ok(mxc) => Some(crate::media::content(
                &fetched.info,
                attachment.name.as_deref(),
                &mxc,
            )),
            Err(e) => {
                warn!(error = %e, "an attachment is sent as a link: the upload failed");
                None
            }
        }
    }

    /// The reactions of `sender` on `target` (event and key), as the
    /// homeserver has them: the session only saw those made since it started.
    pub async fn reactions_by(
        &self,
        room: &OwnedRoomId,
        target: &OwnedEventId,
        sender: &UserId,
    ) -> Result<Vec<(OwnedEventId, String)>, BridgeError> {
        let mut found = Vec::new();
        let mut from = None;
        // A few pages are plenty: one user's reactions on one message.
        for _ in 0..MAX_REACTION_PAGES {
            let mut request = relating_events::v1::Request::new(
                room.clone(),
                target.clone(),
                RelationType::Annotation,
                TimelineEventType::Reaction,
            );
            request.from = from.take();
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| http_error("reading reactions failed", &e))?;
            for raw in &response.chunk {
                let Ok(event) = raw.deserialize_as_unchecked::<RawEvent>() else {
                    continue;
                };
                let key = event
                    .relation()
                    .and_then(|r| r.get("key"))
                    .and_then(Value::as_str);
                if let (Some(id), Some(key), true) = (
                    event.event_id.clone(),
                    key,
                    event.sender.as_deref() == Some(sender),
                ) {
                    found.push((id, key.to_owned()));
                }
            }
            match response.next_batch {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        Ok(found)
    }

    async fn redact(&self, room: &OwnedRoomId, event: OwnedEventId) -> Result<(), BridgeError> {
        let request = redact_event::v3::Request::new(room.clone(), event, self.txn_id());
        self.client
            .send(request)
            .await
            .map_err(|e| http_error("redacting failed", &e))?;
        Ok(())
    }

    /// The room to send to for an address: a joined MUC, a room ID, a
    /// resolved alias, or the direct chat with a user (created if needed).
    async fn room_for(&self, to: &RemoteAddress) -> Result<OwnedRoomId, BridgeError> {
        if let Some(room) = self.book().muc_by_address(to) {
            return Ok(room);
        }
        match MatrixAddress::parse(to)? {
            MatrixAddress::Room(id) => Ok(id),
            MatrixAddress::Alias(alias) => {
                let response = self
                    .client
                    .send(get_alias::v3::Request::new(alias))
                    .await
                    .map_err(|e| http_error("no such room alias", &e))?;
                Ok(response.room_id)
            }
            MatrixAddress::User(user) => {
                let existing = self.book().direct_room_with(&user);
                match existing {
                    Some(room) => Ok(room),
                    None => self.create_direct_room(&user).await,
                }
            }
        }
    }

    /// Open a direct chat with `user`: a private room with them invited,
    /// recorded in `m.direct` so every Matrix client shows it as a DM.
    async fn create_direct_room(&self, user: &UserId) -> Result<OwnedRoomId, BridgeError> {
        if user == self.user_id {
            return Err(BridgeError::BadRequest(
                "a direct chat with yourself is not possible".into(),
            ));
        }
        // Ask first: inviting a user who does not exist would still leave an
        // empty room behind.
        self.client
            .send(get_profile::v3::Request::new(user.to_owned()))
            .await
            .map_err(
                |e| match http_error(&format!("no Matrix user {user}"), &e) {
                    BridgeError::Forbidden(text) => BridgeError::NotFound(text),
                    other => other,
                },
            )?;
        let mut request = create_room::v3::Request::new();
        request.is_direct = true;
        request.invite = vec![user.to_owned()];
        request.preset = Some(create_room::v3::RoomPreset::TrustedPrivateChat);
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| http_error("creating the direct chat failed", &e))?;
        let room = response.room_id;
        info!(%room, "direct chat created");
        self.add_direct(user, &room).await?;
        Ok(room)
    }

    /// Record a direct chat in the account's `m.direct` (read, extend, write).
    pub async fn add_direct(&self, user: &UserId, room: &OwnedRoomId) -> Result<(), BridgeError> {
        let mut direct = self.direct_account_data().await?;
        let rooms = direct
            .as_object_mut()
            .ok_or_else(|| BridgeError::Other("m.direct is not an object".into()))?
            .entry(user.to_string())
            .or_insert_with(|| json!([]));
        if let Some(list) = rooms.as_array_mut() {
            if !list.iter().any(|r| r.as_str() == Some(room.as_str())) {
                list.push(json!(room.as_str()));
            }
        }
        let raw: Raw<AnyGlobalAccountDataEventContent> = Raw::new(&direct)
            .map_err(|e| BridgeError::Other(e.to_string()))?
            .cast_unchecked();
        let request = set_global_account_data::v3::Request::new_raw(
            self.user_id.clone(),
            GlobalAccountDataEventType::Direct,
            raw,
        );
        self.client
            .send(request)
            .await
            .map_err(|e| http_error("recording the direct chat failed", &e))?;
        self.book().set_direct(&direct);
        Ok(())
    }

    /// The account's `m.direct`, or an empty map when it has none yet.
    pub async fn direct_account_data(&self) -> Result<Value, BridgeError> {
        let request = get_global_account_data::v3::Request::new(
            self.user_id.clone(),
            GlobalAccountDataEventType::Direct,
        );
        match self.client.send(request).await {
            Ok(response) => response
                .account_data
                .deserialize_as_unchecked::<Value>()
                .map_err(|e| BridgeError::Other(format!("m.direct does not parse: {e}"))),
            Err(e) => match http_error("reading m.direct failed", &e) {
                BridgeError::NotFound(_) => Ok(json!({})),
                other => Err(other),
            },
        }
    }

    /// Join a room as a MUC and tell the core who is in it, the subject and
    /// the name, then the user's own occupant last.
    async fn join_muc(&self, address: &RemoteAddress, nick: &str) -> Result<(), BridgeError> {
        let target = MatrixAddress::parse(address)?
            .room_or_alias()
            .ok_or_else(|| BridgeError::BadRequest(format!("{address} is not a room")))?;
        let before = self
            .client
            .send(joined_rooms::v3::Request::new())
            .await
            .map_err(|e| http_error("listing joined rooms failed", &e))?
            .joined_rooms;
        let room = self
            .client
            .send(join_room_by_id_or_alias::v3::Request::new(target))
            .await
            .map_err(|e| http_error("joining the room failed", &e))?
            .room_id;
        let state = self.room_state(&room).await?;
        if state.iter().any(|e| e.kind == "m.room.encryption") {
            if !before.contains(&room) {
                let _ = self
                    .client
                    .send(leave_room::v3::Request::new(room.clone()))
                    .await;
            }
            return Err(BridgeError::Unsupported(format!(
                "{address} is an end-to-end encrypted room; this gateway cannot read or send \
                 encrypted messages yet"
            )));
        }
        let mut muc = MucRoom {
            address: address.clone(),
            own_nick: nick.to_owned(),
            members: Default::default(),
            power: PowerLevels::default(),
            joined_at_ms: 0,
            invite_only: None,
        };
        let mut topic = None;
        let mut name = None;
        let mut joined: Vec<(OwnedUserId, Option<String>)> = Vec::new();
        let mut create = None;
        for event in &state {
            match event.kind.as_str() {
                "m.room.create" => create = Some(event),
                "m.room.power_levels" => muc.power = muc.power.replaced_by(&event.content),
                "m.room.join_rules" => muc.set_join_rule(&event.content),
                "m.room.topic" => topic = event.content_str("topic").map(str::to_owned),
                "m.room.name" => name = event.content_str("name").map(str::to_owned),
                "m.room.member" if event.content_str("membership") == Some("join") => {
                    if event.state_key.as_deref() == Some(self.user_id.as_str()) {
                        muc.joined_at_ms = event.origin_server_ts.unwrap_or_default();
                    }
                    if let Some(user) = event.state_user() {
                        joined.push((user, event.content_str("displayname").map(str::to_owned)));
                    }
                }
                _ => {}
            }
        }
        if let Some(create) = create {
            muc.power
                .set_creators(create.sender.as_deref(), &create.content);
        }
        joined.sort();
        for (user, display_name) in &joined {
            let nick = muc.nick_for(user, &self.user_id, display_name.as_deref());
            muc.members.insert(user.clone(), Member { nick });
        }
        muc.members.insert(
            self.user_id.clone(),
            Member {
                nick: nick.to_owned(),
            },
        );
        let mut events = vec![RemoteEvent::RoomInfo {
            room: address.clone(),
            name,
        }];
        if let Some(topic) = topic {
            events.push(RemoteEvent::Topic {
                room: address.clone(),
                topic,
                by: None,
            });
        }
        // Before the join completes, so that a client reading the room's
        // disco#info as soon as it is in finds its settings.
        events.push(RemoteEvent::RoomConfig {
            room: address.clone(),
            config: muc.config(),
        });
        for (user, member) in &muc.members {
            if user != &self.user_id {
                events.push(RemoteEvent::Join {
                    room: address.clone(),
                    occupant: muc.occupant(user, &member.nick),
                    is_self: false,
                    nick_changed: false,
                });
            }
        }
        events.push(RemoteEvent::Join {
            room: address.clone(),
            occupant: muc.occupant(&self.user_id, nick),
            is_self: true,
            nick_changed: false,
        });
        info!(%room, members = muc.members.len(), "joined");
        self.book().mucs.insert(room, muc);
        for event in events {
            if !self.events.send(event).await {
                break;
            }
        }
        Ok(())
    }

    /// A room's current state events; those that do not parse are skipped.
    async fn room_state(&self, room: &OwnedRoomId) -> Result<Vec<RawEvent>, BridgeError> {
        let state = self
            .client
            .send(get_state_events::v3::Request::new(room.clone()))
            .await
            .map_err(|e| http_error("reading the room state failed", &e))?
            .room_state;
        Ok(state
            .iter()
            .filter_map(|raw| match raw.deserialize_as_unchecked::<RawEvent>() {
                Ok(event) => Some(event),
                Err(e) => {
                    warn!(%room, error = %e, "a state event does not parse; skipped");
                    None
                }
            })
            .collect())
    }

    /// A joined room's ID.
    fn muc_room(&self, address: &RemoteAddress) -> Result<OwnedRoomId, BridgeError> {
        self.book()
            .muc_by_address(address)
            .ok_or_else(|| BridgeError::NotFound(format!("not in {address}")))
    }

    fn muc_user(
        &self,
        address: &RemoteAddress,
        nick: &str,
    ) -> Result<(OwnedRoomId, OwnedUserId), BridgeError> {
        let room = self.muc_room(address)?;
        let user = self.book().mucs[&room]
            .user_by_nick(nick)
            .ok_or_else(|| BridgeError::NotFound(format!("no occupant '{nick}' in {address}")))?;
        Ok((room, user))
    }
}

/// The logged-in user; dropping it stops the sync task.
pub struct MatrixSession {
    inner: Arc<Inner>,
    sync_task: JoinHandle<()>,
}

/// Most rooms listed on the gateway, to bound the requests one listing makes.
const MAX_LISTED_ROOMS: usize = 200;

impl MatrixSession {
    /// One string field of a room's state event, if the room has that event.
    async fn state_field(
        &self,
        room: &OwnedRoomId,
        kind: StateEventType,
        field: &str,
    ) -> Option<String> {
        let reply = self
            .inner
            .client
            .send(get_state_event_for_key::v3::Request::new(
                room.clone(),
                kind,
                String::new(),
            ))
            .await
            .ok()?;
        let content: Value = serde_json::from_str(reply.event_or_content.get()).ok()?;
        content[field]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

impl MatrixSession {
    pub(crate) fn new(inner: Arc<Inner>, sync_task: JoinHandle<()>) -> MatrixSession {
        MatrixSession { inner, sync_task }
    }
}

impl Drop for MatrixSession {
    fn drop(&mut self) {
        self.sync_task.abort();
    }
}

/// The content of an `m.room.message` for a message and its kind.
fn message_content(message: &OutgoingMessage) -> Value {
    let msgtype = match message.kind {
        MessageKind::Normal => "m.text",
        MessageKind::Action => "m.emote",
        MessageKind::Notice => "m.notice",
    };
    let mut content = json!({ "msgtype": msgtype, "body": message.body });
    if let Some(html) = crate::text::styling_to_html(&message.body) {
        content["format"] = json!("org.matrix.custom.html");
        content["formatted_body"] = json!(html);
    }
    content
}

fn event_id(id: &str) -> Result<OwnedEventId, BridgeError> {
    EventId::parse(id)
        .map_err(|_| BridgeError::BadRequest(format!("'{id}' is not a Matrix event ID")))
}

#[async_trait]
impl Session for MatrixSession {
    async fn send_message(
        &self,
        to: &RemoteAddress,
        message: OutgoingMessage,
    ) -> Result<String, BridgeError> {
        let room = self.inner.room_for(to).await?;
        let txn = self.inner.txn_id();
        let txn_key = txn.to_string();
        let media = self.inner.media_content(&message).await;
        if media.is_some() {
            let link = message.body.trim().to_owned();
            self.inner.book().sent_links.insert(txn_key.clone(), link);
        }
        let mut content = media.unwrap_or_else(|| message_content(&message));
        if let Some(reply_to) = &message.reply_to {
            content["m.relates_to"] = json!({ "m.in_reply_to": { "event_id": reply_to } });
        }
        let sent = self
            .inner
            .send_event_as(&room, MessageLikeEventType::RoomMessage, content, txn)
            .await;
        if sent.is_err() {
            self.inner.book().sent_links.remove(&txn_key);
        }
        let id = sent?;
        debug!(%room, event = %id, "message sent");
        Ok(id.to_string())
    }

    async fn edit_message(
        &self,
        to: &RemoteAddress,
        target: &str,
        message: OutgoingMessage,
    ) -> Result<Option<String>, BridgeError> {
        let room = self.inner.room_for(to).await?;
        let target = event_id(target)?;
        let new_content = message_content(&message);
        let mut content = new_content.clone();
        // Clients that do not know edits show the fallback: "* new text".
        content["body"] = json!(format!("* {}", message.body));
        content["m.new_content"] = new_content;
        content["m.relates_to"] = json!({ "rel_type": "m.replace", "event_id": target });
        let id = self
            .inner
            .send_event(&room, MessageLikeEventType::RoomMessage, content)
            .await?;
        Ok(Some(id.to_string()))
    }

    async fn retract_message(&self, to: &RemoteAddress, target: &str) -> Result<(), BridgeError> {
        let room = self.inner.room_for(to).await?;
        self.inner.redact(&room, event_id(target)?).await
    }

    async fn react(
        &self,
        to: &RemoteAddress,
        target: &str,
        emojis: Vec<String>,
    ) -> Result<(), BridgeError> {
        let room = self.inner.room_for(to).await?;
        let target = event_id(target)?;
        let current = self
            .inner
            .reactions_by(&room, &target, &self.inner.user_id)
            .await?;
        debug!(%room, %target, ?current, wanted = ?emojis, "reactions");
        for (reaction, key) in &current {
            if !emojis.contains(key) {
                self.inner.redact(&room, reaction.clone()).await?;
                self.inner.book().reactions.remove(reaction);
            }
        }
        for emoji in emojis {
            if current.iter().any(|(_, key)| key == &emoji) {
                continue;
            }
            let content = json!({ "m.relates_to": {
                "rel_type": "m.annotation", "event_id": target, "key": emoji
            }});
            let id = self
                .inner
                .send_event(&room, MessageLikeEventType::Reaction, content)
                .await?;
            self.inner.book().reactions.insert(
                id,
                SeenReaction {
                    room: room.clone(),
                    target: target.clone(),
                    sender: self.inner.user_id.clone(),
                    key: emoji,
                },
            );
        }
        Ok(())
    }

    async fn join_room(
        &self,
        room: &RemoteAddress,
        nick: &str,
        _password: Option<&str>,
    ) -> Result<(), BridgeError> {
        self.inner.join_muc(room, nick).await
    }

    async fn invite(
        &self,
        room: &RemoteAddress,
        user: &RemoteAddress,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        let room = self.inner.room_for(room).await?;
        let MatrixAddress::User(user) = MatrixAddress::parse(user)? else {
            return Err(BridgeError::BadRequest("only a user can be invited".into()));
        };
        let mut recipient = invite_user::v3::InviteUserId::new(user);
        recipient.reason = reason.map(str::to_owned);
        let request = invite_user::v3::Request::new(room, recipient.into());
        self.inner
            .client
            .send(request)
            .await
            .map_err(|e| http_error("inviting failed", &e))?;
        Ok(())
    }

    async fn leave_room(&self, room: &RemoteAddress) -> Result<(), BridgeError> {
        let room_id = {
            let mut book = self.inner.book();
            let id = book.muc_by_address(room);
            if let Some(id) = &id {
                book.mucs.remove(id);
            }
            id
        };
        let Some(room_id) = room_id else {
            return Ok(());
        };
        self.inner
            .client
            .send(leave_room::v3::Request::new(room_id))
            .await
            .map_err(|e| http_error("leaving the room failed", &e))?;
        Ok(())
    }

    /// A nick change in a MUC is the user's display name in that room (a new
    /// membership event with the rest of the membership kept as it is).
    async fn set_nick(&self, room: &RemoteAddress, nick: &str) -> Result<(), BridgeError> {
        let (room_id, old) = {
            let book = self.inner.book();
            let id = book
                .muc_by_address(room)
                .ok_or_else(|| BridgeError::NotFound(format!("not in {room}")))?;
            let old = book.mucs[&id].own_nick.clone();
            (id, old)
        };
        let own = self.inner.user_id.to_string();
        let current = self
            .inner
            .client
            .send(get_state_event_for_key::v3::Request::new(
                room_id.clone(),
                StateEventType::RoomMember,
                own.clone(),
            ))
            .await
            .map_err(|e| http_error("reading the membership failed", &e))?;
        let mut content: Value = serde_json::from_str(current.event_or_content.get())
            .map_err(|e| BridgeError::Other(format!("the membership does not parse: {e}")))?;
        content["displayname"] = json!(nick);
        let raw: Raw<AnyStateEventContent> = Raw::new(&content)
            .map_err(|e| BridgeError::BadRequest(e.to_string()))?
            .cast_unchecked();
        let request = send_state_event::v3::Request::new_raw(
            room_id.clone(),
            StateEventType::RoomMember,
            own,
            raw,
        );
        self.inner
            .client
            .send(request)
            .await
            .map_err(|e| http_error("changing the nick failed", &e))?;
        if let Some(muc) = self.inner.book().mucs.get_mut(&room_id) {
            muc.own_nick = nick.to_owned();
            muc.members.insert(
                self.inner.user_id.clone(),
                Member {
                    nick: nick.to_owned(),
                },
            );
        }
        self.inner
            .events
            .send(RemoteEvent::NickChange {
                room: room.clone(),
                old,
                new: nick.to_owned(),
                is_self: true,
            })
            .await;
        Ok(())
    }

    async fn set_topic(&self, room: &RemoteAddress, topic: &str) -> Result<(), BridgeError> {
        let room = self.inner.room_for(room).await?;
        let raw: Raw<AnyStateEventContent> = Raw::new(&json!({ "topic": topic }))
            .map_err(|e| BridgeError::BadRequest(e.to_string()))?
            .cast_unchecked();
        let request = send_state_event::v3::Request::new_raw(
            room,
            StateEventType::RoomTopic,
            String::new(),
            raw,
        );
        self.inner
            .client
            .send(request)
            .await
            .map_err(|e| http_error("changing the topic failed", &e))?;
        Ok(())
    }

    async fn set_presence(
        &self,
        show: PresenceShow,
        status: Option<&str>,
    ) -> Result<(), BridgeError> {
        let state = match show {
            PresenceShow::Online | PresenceShow::Chat => PresenceState::Online,
            PresenceShow::Away | PresenceShow::ExtendedAway | PresenceShow::DoNotDisturb => {
                PresenceState::Unavailable
            }
            PresenceShow::Offline => PresenceState::Offline,
        };
        *self
            .inner
            .presence
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = state.clone();
        let mut request = set_presence::v3::Request::new(self.inner.user_id.clone(), state);
        request.status_msg = status.map(str::to_owned);
        self.inner
            .client
            .send(request)
            .await
            .map_err(|e| http_error("setting presence failed", &e))?;
        Ok(())
    }

    async fn mark_read(&self, to: &RemoteAddress, up_to: &str) -> Result<(), BridgeError> {
        let room = self.inner.room_for(to).await?;
        let request = create_receipt::v3::Request::new(
            room,
            create_receipt::v3::ReceiptType::Read,
            event_id(up_to)?,
        );
        self.inner
            .client
            .send(request)
            .await
            .map_err(|e| http_error("sending the read receipt failed", &e))?;
        Ok(())
    }

    async fn send_typing(&self, to: &RemoteAddress, state: ChatState) -> Result<(), BridgeError> {
        let room = self.inner.room_for(to).await?;
        let typing = match state {
            ChatState::Composing => create_typing_event::v3::Typing::Yes(
                create_typing_event::v3::TypingInfo::new(TYPING_TIMEOUT),
            ),
            _ => create_typing_event::v3::Typing::No,
        };
        let request =
            create_typing_event::v3::Request::new(self.inner.user_id.clone(), room, typing);
        self.inner
            .client
            .send(request)
            .await
            .map_err(|e| http_error("sending typing failed", &e))?;
        Ok(())
    }

    async fn kick(
        &self,
        room: &RemoteAddress,
        nick: &str,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        let (room, user) = self.inner.muc_user(room, nick)?;
        let mut request = kick_user::v3::Request::new(room, user);
        request.reason = reason.map(str::to_owned);
        self.inner
            .client
            .send(request)
            .await
            .map_err(|e| http_error("kicking failed", &e))?;
        Ok(())
    }

    async fn set_affiliation(
        &self,
        room: &RemoteAddress,
        nick: &str,
        affiliation: estuary_bridge::Affiliation,
        reason: Option<&str>,
    ) -> Result<(), BridgeError> {
        let (room, user) = match OwnedUserId::try_from(nick) {
            // Someone named by user ID (`Network::member_name`), who need
            // not be in the room: a ban lifted.
            Ok(user) => (self.inner.muc_room(room)?, user),
            Err(_) => self.inner.muc_user(room, nick)?,
        };
        let reason = reason.map(str::to_owned);
        let client = &self.inner.client;
        let (sent, failure) = match affiliation {
            estuary_bridge::Affiliation::Outcast => {
                let mut request = ban_user::v3::Request::new(room, user);
                request.reason = reason;
                (client.send(request).await.map(drop), "banning failed")
            }
            estuary_bridge::Affiliation::None => {
                let mut request = unban_user::v3::Request::new(room, user);
                request.reason = reason;
                (
                    client.send(request).await.map(drop),
                    "lifting the ban failed",
                )
            }
            _ => {
                return Err(BridgeError::Unsupported(
                    "affiliation changes other than bans".into(),
                ))
            }
        };
        sent.map_err(|e| http_error(failure, &e))
    }

    /// The room's members whose membership is `ban`, from its state.
    async fn ban_list(
        &self,
        room: &RemoteAddress,
    ) -> Result<Vec<estuary_bridge::Ban>, BridgeError> {
        let room = self.inner.muc_room(room)?;
        let state = self.inner.room_state(&room).await?;
        Ok(state
            .into_iter()
            .filter(|e| e.kind == "m.room.member" && e.content_str("membership") == Some("ban"))
            .filter_map(|e| {
                Some(estuary_bridge::Ban {
                    user: crate::address::user_address(&e.state_user()?),
                    reason: e.content_str("reason").map(str::to_owned),
                })
            })
            .collect())
    }

    /// The gateway's top level: the joined rooms other than direct chats,
    /// addressed by their canonical alias when they have one (aliases keep
    /// their case through JIDs, room IDs may not).
    async fn list_rooms(
        &self,
        under: Option<&RemoteAddress>,
    ) -> Result<Vec<RoomInfo>, BridgeError> {
        if let Some(under) = under {
            return Err(BridgeError::NotFound(format!("{under} lists nothing")));
        }
        let joined = self
            .inner
            .client
            .send(joined_rooms::v3::Request::new())
            .await
            .map_err(|e| http_error("listing joined rooms failed", &e))?
            .joined_rooms;
        let mut rooms = Vec::new();
        for room in joined.into_iter().take(MAX_LISTED_ROOMS) {
            if self.inner.book().direct.contains_key(&room) {
                continue;
            }
            let alias = self
                .state_field(&room, StateEventType::RoomCanonicalAlias, "alias")
                .await;
            let name = self
                .state_field(&room, StateEventType::RoomName, "name")
                .await;
            let address = match alias.and_then(|a| OwnedRoomAliasId::try_from(a).ok()) {
                Some(alias) => alias_address(&alias),
                None => room_address(&room),
            };
            rooms.push(RoomInfo {
                address,
                name,
                members: None,
            });
        }
        Ok(rooms)
    }

    async fn contact_info(&self, user: &RemoteAddress) -> Result<ContactInfo, BridgeError> {
        let MatrixAddress::User(user) = MatrixAddress::parse(user)? else {
            return Err(BridgeError::BadRequest(format!(
                "{user} is not a Matrix user"
            )));
        };
        let profile = self
            .inner
            .client
            .send(get_profile::v3::Request::new(user.clone()))
            .await
            .map_err(|e| http_error(&format!("no Matrix user {user}"), &e))?;
        Ok(ContactInfo {
            full_name: profile
                .get("displayname")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            nickname: Some(user.to_string()),
            description: None,
        })
    }

    async fn list_contacts(&self) -> Result<Vec<RemoteAddress>, BridgeError> {
        let book = self.inner.book();
        let mut contacts: Vec<RemoteAddress> = book
            .direct
            .values()
            .map(|u| crate::address::user_address(u))
            .collect();
        contacts.sort();
        contacts.dedup();
        Ok(contacts)
    }

    /// Stops syncing. The Matrix device stays logged in: the stored session
    /// is what the next login restores.
    async fn logout(&self) -> Result<(), BridgeError> {
        self.sync_task.abort();
        Ok(())
    }
}
