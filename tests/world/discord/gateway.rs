//! The double's gateway websocket: HELLO, IDENTIFY → READY and GUILD_CREATE,
//! heartbeats and their ACKs, RESUME with replay of what was missed, and
//! the faults a test asks for through [`super::state::WsCommand`].
//!
//! Frames are plain JSON text: serenity asks for compression in IDENTIFY
//! but reads text frames as they are, and Discord only compresses when the
//! connection URL asks for `compress=zlib-stream`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State as AxumState;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::json as shapes;
use super::state::{GatewaySession, State, WsCommand, PRIVILEGED_INTENTS};
use super::Shared;

/// Short, so a test sees heartbeats and ACKs within its run.
pub const HEARTBEAT_INTERVAL_MS: u64 = 2_000;

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

pub async fn upgrade(ws: WebSocketUpgrade, AxumState(shared): AxumState<Shared>) -> Response {
    ws.on_upgrade(move |socket| connection(socket, shared))
}

fn op(op: u8, d: Value) -> String {
    json!({ "op": op, "d": d }).to_string()
}

async fn connection(mut socket: WebSocket, shared: Shared) {
    let connection = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let mut shutdown = shared.shutdown.clone();
    let hello = op(10, json!({ "heartbeat_interval": HEARTBEAT_INTERVAL_MS }));
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let mut session_id: Option<String> = None;
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let Ok(payload) = serde_json::from_str::<Value>(text.as_str()) else {
                        let _ = close(&mut socket, 4002, "Decode error").await;
                        break;
                    };
                    match on_payload(&shared, &payload, connection, &commands_tx, &mut session_id) {
                        Reply::Nothing => {}
                        Reply::Frames(frames) => {
                            for frame in frames {
                                if socket.send(Message::Text(frame.into())).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Reply::Close(code, reason) => {
                            let _ = close(&mut socket, code, reason).await;
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            command = commands.recv() => match command {
                Some(WsCommand::Send(frame)) => {
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsCommand::Close(code, reason)) => {
                    let _ = close(&mut socket, code, &reason).await;
                    break;
                }
                // Dropping the socket ends the TCP connection without a close frame.
                Some(WsCommand::Drop) | None => break,
            },
            _ = shutdown.changed() => break,
        }
    }
    if let Some(id) = session_id {
        let mut state = shared.lock();
        if let Some(session) = state.sessions.get_mut(&id) {
            if session.live.as_ref().is_some_and(|(c, _)| *c == connection) {
                session.live = None;
            }
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) -> Result<(), axum::Error> {
    socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })))
        .await
}

enum Reply {
    Nothing,
    /// Sent at once, before anything queued for the session.
    Frames(Vec<String>),
    Close(u16, &'static str),
}

/// The bot a gateway token names; serenity sends it with or without `Bot `.
fn bot_of(state: &State, token: &Value) -> Option<u64> {
    let given = token.as_str().unwrap_or_default();
    state.bot_of_token(given.strip_prefix("Bot ").unwrap_or(given))
}

fn on_payload(
    shared: &Shared,
    payload: &Value,
    connection: u64,
    commands: &mpsc::UnboundedSender<WsCommand>,
    session_id: &mut Option<String>,
) -> Reply {
    let d = &payload["d"];
    match payload["op"].as_u64() {
        // Heartbeat.
        Some(1) => {
            shared.lock().heartbeats += 1;
            Reply::Frames(vec![json!({ "op": 11 }).to_string()])
        }
        // Identify.
        Some(2) => {
            let mut state = shared.lock();
            let Some(bot) = bot_of(&state, &d["token"]) else {
                return Reply::Close(4004, "Authentication failed.");
            };
            let intents = d["intents"].as_u64().unwrap_or(0);
            if intents & PRIVILEGED_INTENTS & !state.granted_intents != 0 {
                return Reply::Close(4014, "Disallowed intent(s).");
            }
            state.identifies += 1;
            let id = format!("session-{}", state.snowflake());
            *session_id = Some(id.clone());
            let mut session = GatewaySession {
                bot,
                intents,
                seq: 0,
                sent: Vec::new(),
                live: Some((connection, commands.clone())),
            };
            // Only this session gets its READY and GUILD_CREATEs.
            session.dispatch("READY", ready(&state, bot, &id));
            for guild in state.guilds.iter().filter(|g| state.is_member(g.id, bot)) {
                session.dispatch("GUILD_CREATE", shapes::guild_create(&state, guild));
            }
            state.sessions.insert(id, session);
            Reply::Nothing
        }
        // Resume.
        Some(6) => {
            let mut state = shared.lock();
            let Some(bot) = bot_of(&state, &d["token"]) else {
                return Reply::Close(4004, "Authentication failed.");
            };
            let wanted = d["session_id"].as_str().unwrap_or_default().to_owned();
            let after = d["seq"].as_u64().unwrap_or(0);
            let Some(session) = state.sessions.get_mut(&wanted).filter(|s| s.bot == bot) else {
                // Not resumable: the client must identify again.
                return Reply::Frames(vec![op(9, json!(false))]);
            };
            session.live = Some((connection, commands.clone()));
            let mut frames: Vec<String> = session
                .sent
                .iter()
                .filter(|(seq, _)| *seq > after)
                .map(|(_, frame)| frame.clone())
                .collect();
            frames.push(session.record("RESUMED", json!({})));
            *session_id = Some(wanted);
            state.resumes += 1;
            Reply::Frames(frames)
        }
        // Presence update: recorded for the tests to read.
        Some(3) => {
            let mut state = shared.lock();
            let bot = session_id
                .as_ref()
                .and_then(|id| state.sessions.get(id))
                .map(|s| s.bot);
            if let Some(bot) = bot {
                state.presence_updates.push((bot, d.clone()));
            }
            Reply::Nothing
        }
        // Voice state, request guild members: accepted, not acted on.
        Some(4 | 8) => Reply::Nothing,
        _ => Reply::Close(4001, "Unknown opcode."),
    }
}

/// READY for a session of `bot`: the bot itself and the guilds it is in.
fn ready(state: &State, bot: u64, session_id: &str) -> Value {
    let guilds: Vec<Value> = state
        .guilds
        .iter()
        .filter(|g| state.is_member(g.id, bot))
        .map(|g| json!({ "id": g.id.to_string(), "unavailable": true }))
        .collect();
    json!({
        "v": 10,
        "user": shapes::user(state.user(bot)),
        "guilds": guilds,
        "session_id": session_id,
        "resume_gateway_url": format!("ws://127.0.0.1:{}/gateway-ws", state.gateway_port),
        "shard": [0, 1],
        "application": { "id": state.application_of(bot).to_string(), "flags": 0 },
    })
}
