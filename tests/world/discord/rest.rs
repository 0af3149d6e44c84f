//! The double's REST API v10: the routes serenity calls for a bridge bot,
//! with Discord's status codes and error bodies, and the gatekeeper that
//! checks the bot token and injects 429s.
// Handlers answer `Result<Response, Response>`, axum's idiom: the error is a
// response to send, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::json as shapes;
use super::state::{MessageRec, State, WebhookRec, MANAGE_MESSAGES, MANAGE_WEBHOOKS};
use super::Shared;

/// Discord's limit on message content, in characters.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Discord's limit on webhooks per channel.
pub const MAX_WEBHOOKS_PER_CHANNEL: usize = 10;

type Reply = Result<Response, Response>;

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
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            gatekeeper,
        ))
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

/// Logs the request, checks the bot token, and answers 429 when a test asked for it.
async fn gatekeeper(
    AxumState(shared): AxumState<Shared>,
    request: Request,
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
        let authorised = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bot {}", state.bot_token));
        if !authorised && route != "/gateway" && !webhook_call {
            return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
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

async fn current_user(AxumState(shared): AxumState<Shared>) -> Json<Value> {
    let state = shared.lock();
    Json(shapes::user(state.user(state.bot_id)))
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

async fn create_dm(AxumState(shared): AxumState<Shared>, Json(body): Json<Value>) -> Reply {
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
    let channel = match state.dm_channels.get(&recipient) {
        Some(c) => *c,
        None => {
            let c = state.snowflake();
            state.dm_channels.insert(recipient, c);
            c
        }
    };
    ok(shapes::dm_channel(channel, state.user(recipient)))
}

fn guild_of_bot(state: &State, guild_id: &str) -> Result<u64, Response> {
    let guild_id = id(guild_id)?;
    match state.guild(guild_id) {
        Some(g) if g.members.iter().any(|m| m.user_id == state.bot_id) => Ok(guild_id),
        _ => Err(error(StatusCode::NOT_FOUND, 10004, "Unknown Guild")),
    }
}

async fn guild_channels(AxumState(shared): AxumState<Shared>, Path(guild): Path<String>) -> Reply {
    let state = shared.lock();
    let guild = guild_of_bot(&state, &guild)?;
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
    Path(guild): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let state = shared.lock();
    let guild = guild_of_bot(&state, &guild)?;
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

/// Where a channel lives, as far as the bot may know.
enum Place {
    Guild(u64),
    Direct,
}

fn reachable(state: &State, channel: u64) -> Result<Place, Response> {
    if state.is_dm_channel(channel) {
        return Ok(Place::Direct);
    }
    match state.channel(channel) {
        None => Err(error(StatusCode::NOT_FOUND, 10003, "Unknown Channel")),
        Some(c) if !c.visible_to_bot => Err(error(StatusCode::FORBIDDEN, 50001, "Missing Access")),
        Some(c) => Ok(Place::Guild(c.guild_id)),
    }
}

async fn get_channel(AxumState(shared): AxumState<Shared>, Path(channel): Path<String>) -> Reply {
    let channel = id(&channel)?;
    let state = shared.lock();
    match reachable(&state, channel)? {
        Place::Guild(_) => ok(shapes::channel(state.channel(channel).expect("checked"))),
        Place::Direct => {
            let user = state
                .dm_channels
                .iter()
                .find(|(_, c)| **c == channel)
                .map(|(u, _)| *u)
                .expect("a DM channel has a recipient");
            ok(shapes::dm_channel(channel, state.user(user)))
        }
    }
}

fn check_content(content: &str) -> Result<(), Response> {
    if content.is_empty() {
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

async fn create_message(
    AxumState(shared): AxumState<Shared>,
    Path(channel): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let channel = id(&channel)?;
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    let mut state = shared.lock();
    let place = reachable(&state, channel)?;
    check_content(&content)?;
    let bot = state.bot_id;
    let author_name = state.user(bot).username.clone();
    let message = state.create_message(MessageRec {
        id: 0,
        channel_id: channel,
        guild_id: match place {
            Place::Guild(g) => Some(g),
            Place::Direct => None,
        },
        author_id: bot,
        author_name,
        webhook_id: None,
        content,
        reply_to: reply_target(&body),
        edited_ms: None,
        deleted: false,
        attachments: Vec::new(),
    });
    ok(shapes::message(&state, &message))
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
    Path((channel, message)): Path<(String, String)>,
) -> Reply {
    let channel = id(&channel)?;
    let state = shared.lock();
    reachable(&state, channel)?;
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
    Path((channel, message)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    reachable(&state, channel)?;
    let message = existing_message(&state, channel, &message)?;
    let m = state.message(message).expect("checked");
    if m.author_id != state.bot_id || m.webhook_id.is_some() {
        return Err(error(
            StatusCode::FORBIDDEN,
            50005,
            "Cannot edit a message authored by another user",
        ));
    }
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    check_content(&content)?;
    ok(apply_edit(&mut state, message, content))
}

async fn delete_message(
    AxumState(shared): AxumState<Shared>,
    Path((channel, message)): Path<(String, String)>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    let place = reachable(&state, channel)?;
    let message = existing_message(&state, channel, &message)?;
    let own = state.message(message).expect("checked").author_id == state.bot_id;
    let may_manage = match place {
        Place::Guild(g) => state.bot_has(g, MANAGE_MESSAGES),
        Place::Direct => false,
    };
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
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    reachable(&state, channel)?;
    let message = existing_message(&state, channel, &message)?;
    let bot = state.bot_id;
    apply_reaction(&mut state, message, bot, &emoji, true);
    no_content()
}

async fn remove_reaction(
    AxumState(shared): AxumState<Shared>,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    reachable(&state, channel)?;
    let message = existing_message(&state, channel, &message)?;
    let bot = state.bot_id;
    apply_reaction(&mut state, message, bot, &emoji, false);
    no_content()
}

async fn typing(AxumState(shared): AxumState<Shared>, Path(channel): Path<String>) -> Reply {
    let channel = id(&channel)?;
    let mut state = shared.lock();
    reachable(&state, channel)?;
    state.bot_typing.push(channel);
    no_content()
}

fn guild_channel_for_webhooks(state: &State, channel: &str) -> Result<(u64, u64), Response> {
    let channel = id(channel)?;
    match reachable(state, channel)? {
        Place::Guild(guild) => {
            if !state.bot_can_manage_webhooks || !state.bot_has(guild, MANAGE_WEBHOOKS) {
                return Err(error(StatusCode::FORBIDDEN, 50013, "Missing Permissions"));
            }
            Ok((guild, channel))
        }
        Place::Direct => Err(error(
            StatusCode::BAD_REQUEST,
            50003,
            "Cannot execute action on a DM channel",
        )),
    }
}

async fn list_webhooks(AxumState(shared): AxumState<Shared>, Path(channel): Path<String>) -> Reply {
    let state = shared.lock();
    let (_, channel) = guild_channel_for_webhooks(&state, &channel)?;
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
    Path(channel): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let mut state = shared.lock();
    let (guild, channel) = guild_channel_for_webhooks(&state, &channel)?;
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
        creator_id: state.bot_id,
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
    Json(body): Json<Value>,
) -> Reply {
    let mut state = shared.lock();
    let hook = webhook_by_token(&state, &webhook, &token)?;
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    check_content(&content)?;
    let message = state.create_message(MessageRec {
        id: 0,
        channel_id: hook.channel_id,
        guild_id: Some(hook.guild_id),
        author_id: hook.creator_id,
        author_name: body["username"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(hook.name.clone()),
        webhook_id: Some(hook.id),
        content,
        reply_to: None,
        edited_ms: None,
        deleted: false,
        attachments: Vec::new(),
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
    check_content(&content)?;
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
