//! The double's REST API v10: the routes serenity calls for a bridge bot,
//! with Discord's status codes and error bodies, the gatekeeper that
//! resolves the bot token to the acting bot and injects 429s, and the CDN
//! route serving uploaded files.
// Handlers answer `Result<Response, Response>`, axum's idiom: the error is a
// response to send, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::extract::multipart::MultipartError;
use axum::extract::{
    DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State as AxumState,
};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::json as shapes;
use super::state::{MessageRec, State, UploadRec, WebhookRec, MANAGE_MESSAGES, MANAGE_WEBHOOKS};
use super::Shared;

/// Discord's limit on message content, in characters.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Discord's limit on webhooks per channel.
pub const MAX_WEBHOOKS_PER_CHANNEL: usize = 10;
/// Discord's upload limit for a bot in a guild without boosts.
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

type Reply = Result<Response, Response>;

/// The bot whose token authorised a request, put there by the gatekeeper.
#[derive(Debug, Clone, Copy)]
struct Acting(u64);

pub fn router(shared: Shared) -> Router {
    let api = Router::new()
        .route("/gateway", get(gateway))
        .route("/gateway/bot", get(gateway_bot))
        .route("/users/@me", get(current_user))
        .route("/users/@me/channels", post(create_dm))
        .route("/users/{user_id}", get(get_user))
        .route("/guilds/{guild_id}/channels", get(guild_channels))
        .route("/guilds/{guild_id}/members", get(guild_members))
        .route("/channels/{channel_id}", get(get_channel))
        .route("/channels/{channel_id}/messages", post(create_message))
        .route(
            "/channels/{channel_id}/messages/{message_id}",
            get(get_message).patch(edit_message).delete(delete_message),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            put(add_reaction).delete(remove_reaction),
        )
        .route("/channels/{channel_id}/typing", post(typing))
        .route(
            "/channels/{channel_id}/webhooks",
            get(list_webhooks).post(create_webhook),
        )
        .route("/webhooks/{webhook_id}/{token}", post(execute_webhook))
        .route(
            "/webhooks/{webhook_id}/{token}/messages/{message_id}",
            axum::routing::patch(edit_webhook_message).delete(delete_webhook_message),
        );
    Router::new()
        .nest("/api/v10", api)
        .route("/gateway-ws", get(super::gateway::upgrade))
        .route(
            "/attachments/{channel_id}/{message_id}/{filename}",
            get(attachment),
        )
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            gatekeeper,
        ))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .with_state(shared)
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, Json(shapes::error(code, message))).into_response()
}

fn ok(value: Value) -> Reply {
    Ok(Json(value).into_response())
}

fn no_content() -> Reply {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Logs the request, resolves the bot token to the [`Acting`] bot, and
/// answers 429 when a test asked for it.
async fn gatekeeper(
    AxumState(shared): AxumState<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let Some(route) = path.strip_prefix("/api/v10") else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    // Executing a webhook is authorised by the token in its URL; /gateway is public.
    let webhook_call = route.starts_with("/webhooks/") && route.split('/').count() >= 4;
    {
        let mut state = shared.lock();
        state.requests.push(format!("{method} {route}"));
        let acting = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bot "))
            .and_then(|token| state.bot_of_token(token));
        match acting {
            Some(bot) => {
                request.extensions_mut().insert(Acting(bot));
            }
            None if route != "/gateway" && !webhook_call => {
                return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
            }
            None => {}
        }
        let sends = method == Method::POST
            && (route.ends_with("/messages") || (webhook_call && route.split('/').count() == 4));
        if sends && state.rate_limit_next > 0 {
            state.rate_limit_next -= 1;
            state.rate_limited += 1;
            let retry_after = state.retry_after_secs;
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({
                    "message": "You are being rate limited.",
                    "retry_after": retry_after,
                    "global": false,
                })),
            )
                .into_response();
            let headers = response.headers_mut();
            let secs = HeaderValue::from_str(&format!("{retry_after:.3}")).expect("a number");
            headers.insert("retry-after", secs.clone());
            headers.insert("x-ratelimit-reset-after", secs);
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("5"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-bucket", HeaderValue::from_static("double"));
            headers.insert("x-ratelimit-scope", HeaderValue::from_static("user"));
            return response;
        }
    }
    next.run(request).await
}

async fn gateway(AxumState(shared): AxumState<Shared>) -> Json<Value> {
    let port = shared.lock().gateway_port;
    Json(json!({ "url": format!("ws://127.0.0.1:{port}/gateway-ws") }))
}

async fn gateway_bot(AxumState(shared): AxumState<Shared>) -> Json<Value> {
    let port = shared.lock().gateway_port;
    Json(json!({
        "url": format!("ws://127.0.0.1:{port}/gateway-ws"),
        "shards": 1,
        "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1 },
    }))
}

async fn current_user(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
) -> Json<Value> {
    Json(shapes::user(shared.lock().user(bot)))
}

fn id(raw: &str) -> Result<u64, Response> {
    raw.parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, 0, "404: Not Found"))
}

async fn get_user(AxumState(shared): AxumState<Shared>, Path(user_id): Path<String>) -> Reply {
    let user_id = id(&user_id)?;
    let state = shared.lock();
    match state.users.get(&user_id) {
        Some(u) => ok(shapes::user(u)),
        None => Err(error(StatusCode::NOT_FOUND, 10013, "Unknown User")),
    }
}

async fn create_dm(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Json(body): Json<Value>,
) -> Reply {
    let recipient = body["recipient_id"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| body["recipient_id"].as_u64().map(|n| n.to_string()))
        .unwrap_or_default();
    let recipient = id(&recipient)?;
    let mut state = shared.lock();
    if !state.users.contains_key(&recipient) {
        return Err(error(StatusCode::NOT_FOUND, 10013, "Unknown User"));
    }
    let channel = state.dm_channel(bot, recipient);
    ok(shapes::dm_channel(channel, state.user(recipient)))
}

fn missing_access() -> Response {
    error(StatusCode::FORBIDDEN, 50001, "Missing Access")
}

fn guild_of_bot(state: &State, bot: u64, guild_id: &str) -> Result<u64, Response> {
    let guild_id = id(guild_id)?;
    if state.guild(guild_id).is_none() {
        return Err(error(StatusCode::NOT_FOUND, 10004, "Unknown Guild"));
    }
    if !state.is_member(guild_id, bot) {
        return Err(missing_access());
    }
    Ok(guild_id)
}

async fn guild_channels(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path(guild): Path<String>,
) -> Reply {
    let state = shared.lock();
    let guild = guild_of_bot(&state, bot, &guild)?;
    let channels: Vec<Value> = state
        .guild(guild)
        .expect("checked")
        .channels
        .iter()
        .filter(|c| c.visible_to_bot)
        .map(shapes::channel)
        .collect();
    ok(json!(channels))
}

async fn guild_members(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path(guild): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let state = shared.lock();
    let guild = guild_of_bot(&state, bot, &guild)?;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(1usize);
    let after: u64 = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let members: Vec<Value> = state
        .guild(guild)
        .expect("checked")
        .members
        .iter()
        .filter(|m| m.user_id > after)
        .take(limit)
        .map(|m| shapes::member(&state, m))
        .collect();
    ok(json!(members))
}

/// Where a channel lives, as far as the acting bot may know.
enum Place {
    Guild(u64),
    /// A DM channel of the bot's, with this user.
    Direct(u64),
}

impl Place {
    fn guild(&self) -> Option<u64> {
        match self {
            Place::Guild(g) => Some(*g),
            Place::Direct(_) => None,
        }
    }
}

/// A channel the bot may use: a DM channel of its own, or a channel it can
/// see in a guild it is in; other bots' DMs and other guilds are Missing Access.
fn reachable(state: &State, bot: u64, channel: u64) -> Result<Place, Response> {
    if let Some((dm_bot, user)) = state.dm_pair(channel) {
        return if dm_bot == bot {
            Ok(Place::Direct(user))
        } else {
            Err(missing_access())
        };
    }
    match state.channel(channel) {
        None => Err(error(StatusCode::NOT_FOUND, 10003, "Unknown Channel")),
        Some(c) if !c.visible_to_bot || !state.is_member(c.guild_id, bot) => Err(missing_access()),
        Some(c) => Ok(Place::Guild(c.guild_id)),
    }
}

async fn get_channel(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path(channel): Path<String>,
) -> Reply {
    let channel = id(&channel)?;
    let state = shared.lock();
    match reachable(&state, bot, channel)? {
        Place::Guild(_) => ok(shapes::channel(state.channel(channel).expect("checked"))),
        Place::Direct(user) => ok(shapes::dm_channel(channel, state.user(user))),
    }
}

/// Discord's checks on a message's content; it may be empty when files carry the message.
fn check_content(content: &str, has_files: bool) -> Result<(), Response> {
    if content.is_empty() && !has_files {
        return Err(error(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        ));
    }
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({
                "message": "Invalid Form Body",
                "code": 50035,
                "errors": { "content": { "_errors": [{
                    "code": "BASE_TYPE_MAX_LENGTH",
                    "message": "Must be 2000 or fewer in length.",
                }]}},
            })),
        )
            .into_response());
    }
    Ok(())
}

fn reply_target(body: &Value) -> Option<u64> {
    body["message_reference"]["message_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| body["message_reference"]["message_id"].as_u64())
}

/// A message body as serenity sends it: JSON, or `multipart/form-data` with
/// the JSON in a `payload_json` part and the files in `files[n]` parts.
struct MessageBody {
    json: Value,
    files: Vec<UploadRec>,
}

impl MessageBody {
    fn content(&self) -> String {
        self.json["content"].as_str().unwrap_or_default().to_owned()
    }
}

impl<S: Send + Sync> FromRequest<S> for MessageBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let multipart = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if multipart {
            let form = Multipart::from_request(request, state)
                .await
                .map_err(IntoResponse::into_response)?;
            return read_form(form).await;
        }
        let Json(json) = Json::<Value>::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(MessageBody {
            json,
            files: Vec::new(),
        })
    }
}

async fn read_form(mut form: Multipart) -> Result<MessageBody, Response> {
    let mut json = json!({});
    let mut files = Vec::new();
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "payload_json" {
            let text = field.text().await.map_err(form_error)?;
            json = serde_json::from_str(&text).map_err(|_| invalid_form_body())?;
            continue;
        }
        let Some(index) = file_index(&name) else {
            continue;
        };
        let upload = UploadRec {
            name: field.file_name().unwrap_or("unknown").to_owned(),
            content_type: field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_owned(),
            bytes: field.bytes().await.map_err(form_error)?.to_vec(),
        };
        files.push((index, upload));
    }
    let files = files
        .into_iter()
        .map(|(index, upload)| named_by_payload(&json, index, upload))
        .collect();
    Ok(MessageBody { json, files })
}

/// n of a `files[n]` part.
fn file_index(part: &str) -> Option<u64> {
    part.strip_prefix("files[")?.strip_suffix(']')?.parse().ok()
}

/// Discord takes a file's name from the payload's `attachments` entry with
/// the part's index, when there is one.
fn named_by_payload(json: &Value, index: u64, mut upload: UploadRec) -> UploadRec {
    let entry = json["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"].as_u64() == Some(index) || a["id"].as_str() == Some(&index.to_string()));
    if let Some(name) = entry.and_then(|a| a["filename"].as_str()) {
        upload.name = name.to_owned();
    }
    upload
}

fn form_error(e: MultipartError) -> Response {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            40005,
            "Request entity too large",
        );
    }
    invalid_form_body()
}

fn invalid_form_body() -> Response {
    error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body")
}

async fn create_message(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path(channel): Path<String>,
    body: MessageBody,
) -> Reply {
    let channel = id(&channel)?;
    let content = body.content();
    let mut state = shared.lock();
    let place = reachable(&state, bot, channel)?;
    check_content(&content, !body.files.is_empty())?;
    let author_name = state.user(bot).username.clone();
    let message = state.create_message(MessageRec {
        id: 0,
        channel_id: channel,
        guild_id: place.guild(),
        author_id: bot,
        author_name,
        webhook_id: None,
        content,
        reply_to: reply_target(&body.json),
        edited_ms: None,
        deleted: false,
        attachments: Vec::new(),
        files: body.files,
        avatar_url: None,
    });
    ok(shapes::message(&state, &message))
}

/// Discord's CDN: an uploaded file, to anyone with its URL.
async fn attachment(
    AxumState(shared): AxumState<Shared>,
    Path((channel, message, filename)): Path<(u64, u64, String)>,
) -> Response {
    let state = shared.lock();
    let upload = state
        .message(message)
        .filter(|m| m.channel_id == channel)
        .and_then(|m| m.files.iter().find(|f| f.name == filename));
    match upload {
        Some(f) => ([(CONTENT_TYPE, f.content_type.clone())], f.bytes.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "This content is no longer available.",
        )
            .into_response(),
    }
}

fn existing_message(state: &State, channel: u64, message: &str) -> Result<u64, Response> {
    let message = id(message)?;
    match state.message(message) {
        Some(m) if m.channel_id == channel && !m.deleted => Ok(message),
        _ => Err(error(StatusCode::NOT_FOUND, 10008, "Unknown Message")),
    }
}

async fn get_message(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path((channel, message)): Path<(String, String)>,
) -> Reply {
    let channel = id(&channel)?;
    let state = shared.lock();
    reachable(&state, bot, channel)?;
    let message = existing_message(&state, channel, &message)?;
    ok(shapes::message(
        &state,
        state.message(message).expect("checked"),
    ))
}

/// Apply an edit and dispatch MESSAGE_UPDATE with the full message, as Discord does.
fn apply_edit(state: &mut State, message: u64, content: String) -> Value {
    let m = state.message_mut(message).expect("checked");
    m.content = content;
    m.edited_ms = Some(shapes::now_ms());
    let m = m.clone();
    let payload = shapes::message(state, &m);
    state.dispatch("MESSAGE_UPDATE", payload.clone());
    payload
}

fn apply_delete(state: &mut State, message: u64) {
    let m = state.message_mut(message).expect("checked");
    m.deleted = true;
    let (channel, guild) = (m.channel_id, m.guild_id);
    let mut data = json!({ "id": message.to_string(), "channel_id": channel.to_string() });
    if let Some(guild) = guild {
        data["guild_id"] = json!(guild.to_string());
    }
    state.dispatch("MESSAGE_DELETE", data);
}

async fn edit_message(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path((channel, message)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    reachable(&state, bot, channel)?;
    let message = existing_message(&state, channel, &message)?;
    let m = state.message(message).expect("checked");
    if m.author_id != bot || m.webhook_id.is_some() {
        return Err(error(
            StatusCode::FORBIDDEN,
            50005,
            "Cannot edit a message authored by another user",
        ));
    }
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    let has_files = !state.message(message).expect("checked").files.is_empty();
    check_content(&content, has_files)?;
    ok(apply_edit(&mut state, message, content))
}

async fn delete_message(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path((channel, message)): Path<(String, String)>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    let place = reachable(&state, bot, channel)?;
    let message = existing_message(&state, channel, &message)?;
    let own = state.message(message).expect("checked").author_id == bot;
    let may_manage = place
        .guild()
        .is_some_and(|g| state.has_permission(bot, g, MANAGE_MESSAGES));
    if !own && !may_manage {
        return Err(error(StatusCode::FORBIDDEN, 50013, "Missing Permissions"));
    }
    apply_delete(&mut state, message);
    no_content()
}

fn reaction_payload(state: &State, message: u64, user: u64, emoji: &str) -> Value {
    let m = state.message(message).expect("checked");
    let mut data = json!({
        "user_id": user.to_string(),
        "channel_id": m.channel_id.to_string(),
        "message_id": message.to_string(),
        "emoji": { "id": null, "name": emoji },
        "burst": false,
        "burst_colors": [],
        "type": 0,
    });
    if let Some(guild) = m.guild_id {
        data["guild_id"] = json!(guild.to_string());
        if let Some(member) = state.member(guild, user) {
            data["member"] = shapes::member(state, member);
        }
    }
    data
}

/// Add a reaction and dispatch it; false when it was there already.
pub fn apply_reaction(state: &mut State, message: u64, user: u64, emoji: &str, add: bool) -> bool {
    let key = (message, user, emoji.to_owned());
    let present = state.reactions.contains(&key);
    if present == add {
        return false;
    }
    if add {
        state.reactions.push(key);
    } else {
        state.reactions.retain(|r| *r != key);
    }
    let payload = reaction_payload(state, message, user, emoji);
    let event = if add {
        "MESSAGE_REACTION_ADD"
    } else {
        "MESSAGE_REACTION_REMOVE"
    };
    state.dispatch(event, payload);
    true
}

async fn add_reaction(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    reachable(&state, bot, channel)?;
    let message = existing_message(&state, channel, &message)?;
    apply_reaction(&mut state, message, bot, &emoji, true);
    no_content()
}

async fn remove_reaction(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    reachable(&state, bot, channel)?;
    let message = existing_message(&state, channel, &message)?;
    apply_reaction(&mut state, message, bot, &emoji, false);
    no_content()
}

async fn typing(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path(channel): Path<String>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    reachable(&state, bot, channel)?;
    state.bots_typing.push((bot, channel));
    if bot == state.bot_id {
        state.bot_typing.push(channel);
    }
    no_content()
}

fn guild_channel_for_webhooks(
    state: &State,
    bot: u64,
    channel: &str,
) -> Result<(u64, u64), Response> {
    let channel = id(channel)?;
    match reachable(state, bot, channel)? {
        Place::Guild(guild) => {
            // A test can take Manage Webhooks from the gateway bot alone.
            let withdrawn = bot == state.bot_id && !state.bot_can_manage_webhooks;
            if withdrawn || !state.has_permission(bot, guild, MANAGE_WEBHOOKS) {
                return Err(error(StatusCode::FORBIDDEN, 50013, "Missing Permissions"));
            }
            Ok((guild, channel))
        }
        Place::Direct(_) => Err(error(
            StatusCode::BAD_REQUEST,
            50003,
            "Cannot execute action on a DM channel",
        )),
    }
}

async fn list_webhooks(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path(channel): Path<String>,
) -> Reply {
    let state = shared.lock();
    let (_, channel) = guild_channel_for_webhooks(&state, bot, &channel)?;
    let hooks: Vec<Value> = state
        .webhooks
        .iter()
        .filter(|w| w.channel_id == channel)
        .map(|w| shapes::webhook(w, state.user(w.creator_id)))
        .collect();
    ok(json!(hooks))
}

async fn create_webhook(
    AxumState(shared): AxumState<Shared>,
    Extension(Acting(bot)): Extension<Acting>,
    Path(channel): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let mut state = shared.lock();
    let (guild, channel) = guild_channel_for_webhooks(&state, bot, &channel)?;
    let count = state
        .webhooks
        .iter()
        .filter(|w| w.channel_id == channel)
        .count();
    if count >= MAX_WEBHOOKS_PER_CHANNEL {
        return Err(error(
            StatusCode::BAD_REQUEST,
            30007,
            "Maximum number of webhooks reached (10)",
        ));
    }
    let id = state.snowflake();
    let hook = WebhookRec {
        id,
        token: format!("webhook-token-{id}"),
        guild_id: guild,
        channel_id: channel,
        name: body["name"].as_str().unwrap_or("Captain Hook").to_owned(),
        creator_id: bot,
    };
    state.webhooks.push(hook.clone());
    ok(shapes::webhook(&hook, state.user(hook.creator_id)))
}

fn webhook_by_token(state: &State, webhook: &str, token: &str) -> Result<WebhookRec, Response> {
    let webhook = id(webhook)?;
    state
        .webhooks
        .iter()
        .find(|w| w.id == webhook && w.token == token)
        .cloned()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"))
}

async fn execute_webhook(
    AxumState(shared): AxumState<Shared>,
    Path((webhook, token)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: MessageBody,
) -> Reply {
    let mut state = shared.lock();
    let hook = webhook_by_token(&state, &webhook, &token)?;
    let content = body.content();
    check_content(&content, !body.files.is_empty())?;
    let message = state.create_message(MessageRec {
        id: 0,
        channel_id: hook.channel_id,
        guild_id: Some(hook.guild_id),
        author_id: hook.creator_id,
        author_name: body.json["username"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(hook.name.clone()),
        webhook_id: Some(hook.id),
        content,
        reply_to: None,
        edited_ms: None,
        deleted: false,
        attachments: Vec::new(),
        avatar_url: body.json["avatar_url"].as_str().map(str::to_owned),
        files: body.files,
    });
    if query.get("wait").map(String::as_str) == Some("true") {
        ok(shapes::message(&state, &message))
    } else {
        no_content()
    }
}

fn webhook_message(
    state: &State,
    webhook: &str,
    token: &str,
    message: &str,
) -> Result<u64, Response> {
    let hook = webhook_by_token(state, webhook, token)?;
    let message = id(message)?;
    match state.message(message) {
        Some(m) if m.webhook_id == Some(hook.id) && !m.deleted => Ok(message),
        _ => Err(error(StatusCode::NOT_FOUND, 10008, "Unknown Message")),
    }
}

async fn edit_webhook_message(
    AxumState(shared): AxumState<Shared>,
    Path((webhook, token, message)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let mut state = shared.lock();
    let message = webhook_message(&state, &webhook, &token, &message)?;
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    let has_files = !state.message(message).expect("checked").files.is_empty();
    check_content(&content, has_files)?;
    ok(apply_edit(&mut state, message, content))
}

async fn delete_webhook_message(
    AxumState(shared): AxumState<Shared>,
    Path((webhook, token, message)): Path<(String, String, String)>,
) -> Reply {
    let mut state = shared.lock();
    let message = webhook_message(&state, &webhook, &token, &message)?;
    apply_delete(&mut state, message);
    no_content()
}
