//! A bridge used only in tests: a pretend network that lives in the test
//! process, so that the whole path (stanza → core → bridge → event → stanza)
//! can be proven against a real Prosody without any real network.
//!
//! It behaves like a small chat network:
//! - the user `echo` answers every direct message with `echo: <text>`;
//!   the text `burst N` makes it send N numbered messages, 10 ms apart;
//! - a room `#room` has `alice` (owner) and `bob`, the topic `Welcome`,
//!   and `bob` answers every message said in it;
//! - registrations with the password `wrong` are refused;
//! - `LoopbackNetwork::set_down(true)` makes every send fail as unreachable.
//!
//! Everything the core asks of it is written to a log that tests read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use estuary_bridge::{
    AddressKind, Affiliation, BridgeError, Capabilities, ChatState, Credentials, EventSender,
    FormValues, Network, NetworkInfo, Occupant, OutgoingMessage, PresenceShow, RegistrationField,
    RemoteAddress, RemoteEvent, RemoteMessage, Role, Session,
};

#[derive(Default)]
pub struct LoopbackNetwork {
    log: Mutex<Vec<String>>,
    down: AtomicBool,
    next_id: AtomicU64,
    /// The live session's events, by account, with the login it came from:
    /// a replaced session logging out late must not remove its successor's.
    senders: Mutex<HashMap<String, (u64, EventSender)>>,
    logins: AtomicU64,
}

impl LoopbackNetwork {
    pub fn new() -> Arc<LoopbackNetwork> {
        Arc::new(LoopbackNetwork::default())
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn logged(&self, entry: &str) -> bool {
        self.log().iter().any(|e| e == entry)
    }

    fn record(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn id(&self) -> String {
        format!("r{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    /// Push an event into a logged-in user's session, as the network would.
    pub async fn emit(&self, account: &str, event: RemoteEvent) {
        let sender = self
            .senders
            .lock()
            .unwrap()
            .get(account)
            .map(|(_, sender)| sender.clone())
            .unwrap_or_else(|| panic!("{account} is not logged in"));
        assert!(sender.send(event).await, "the core dropped the session");
    }
}

/// Wrapper so that a test can keep the `Arc` and hand the core a `Network`.
pub struct Shared(pub Arc<LoopbackNetwork>);

#[async_trait]
impl Network for Shared {
    fn info(&self) -> NetworkInfo {
        NetworkInfo {
            kind: "loopback",
            name: "Loopback test network".to_owned(),
            instructions: "Pick any user name and password.".to_owned(),
            capabilities: Capabilities {
                rooms: true,
                direct_messages: true,
                edits: true,
                retractions: true,
                reactions: true,
                ..Capabilities::default()
            },
        }
    }

    fn registration_fields(&self) -> Vec<RegistrationField> {
        vec![
            RegistrationField::text("user", "User name", true),
            RegistrationField::secret("password", "Password", true),
        ]
    }

    fn classify(&self, local: &str) -> Result<AddressKind, BridgeError> {
        if local.starts_with('#') {
            Ok(AddressKind::Room)
        } else if local.contains('!') {
            Err(BridgeError::BadRequest(format!(
                "'{local}' is not a loopback name"
            )))
        } else {
            Ok(AddressKind::User)
        }
    }

    async fn register(&self, values: FormValues) -> Result<Credentials, BridgeError> {
        if values.get("password").map(String::as_str) == Some("wrong") {
            return Err(BridgeError::Auth("invalid password".to_owned()));
        }
        self.0.record(format!("register {}", values["user"]));
        Ok(Credentials::from(values))
    }

    async fn login(
        &self,
        account: &str,
        credentials: Credentials,
        events: EventSender,
    ) -> Result<Box<dyn Session>, BridgeError> {
        self.0.record(format!(
            "login {account} as {}",
            credentials.get("user").unwrap_or("?")
        ));
        let login = self.0.logins.fetch_add(1, Ordering::SeqCst);
        self.0
            .senders
            .lock()
            .unwrap()
            .insert(account.to_owned(), (login, events.clone()));
        Ok(Box::new(LoopbackSession {
            net: self.0.clone(),
            account: account.to_owned(),
            events,
            login,
        }))
    }
}

struct LoopbackSession {
    net: Arc<LoopbackNetwork>,
    account: String,
    events: EventSender,
    login: u64,
}

impl LoopbackSession {
    fn check_up(&self) -> Result<(), BridgeError> {
        if self.net.down.load(Ordering::SeqCst) {
            Err(BridgeError::Unavailable(
                "the loopback network is down".to_owned(),
            ))
        } else {
            Ok(())
        }
    }

    fn emit_later(&self, events: Vec<RemoteEvent>, gap: Duration) {
        let sender = self.events.clone();
        tokio::spawn(async move {
            for event in events {
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                if !sender.send(event).await {
                    return;
                }
            }
        });
    }
}

fn occupant(nick: &str, affiliation: Affiliation, role: Role) -> Occupant {
    Occupant {
        user: Some(RemoteAddress::new(nick)),
        nick: nick.to_owned(),
        affiliation,
        role,
        show: PresenceShow::Online,
        status: None,
    }
}

#[async_trait]
impl Session for LoopbackSession {
    async fn send_message(
        &self,
        to: &RemoteAddress,
        message: OutgoingMessage,
    ) -> Result<String, BridgeError> {
        self.check_up()?;
        let id = self.net.id();
        self.net.record(format!(
            "message {} {} {:?} {}",
            self.account, to, message.reply_to, message.body
        ));
        let echo = RemoteAddress::new("echo");
        if to.as_str() == "echo" {
            if let Some(n) = message.body.strip_prefix("burst ") {
                let n: u32 = n
                    .parse()
                    .map_err(|_| BridgeError::BadRequest("burst N".into()))?;
                let events = (1..=n)
                    .map(|i| {
                        RemoteEvent::from(RemoteMessage::text(
                            self.net.id(),
                            echo.clone(),
                            format!("burst {i}"),
                        ))
                    })
                    .collect();
                self.emit_later(events, Duration::from_millis(10));
            } else {
                let reply = RemoteMessage {
                    reply_to: Some(id.clone()),
                    ..RemoteMessage::text(self.net.id(), echo, format!("echo: {}", message.body))
                };
                self.emit_later(vec![RemoteEvent::from(reply)], Duration::ZERO);
            }
        } else if to.as_str().starts_with('#') {
            let reply = RemoteMessage {
                room: Some(to.clone()),
                nick: Some("bob".to_owned()),
                ..RemoteMessage::text(
                    self.net.id(),
                    RemoteAddress::new("bob"),
                    format!("bob heard: {}", message.body),
                )
            };
            self.emit_later(vec![RemoteEvent::from(reply)], Duration::ZERO);
        } else if to.as_str() == "nobody" {
            return Err(BridgeError::NotFound("no user 'nobody'".to_owned()));
        }
        Ok(id)
    }

    async fn edit_message(
        &self,
        to: &RemoteAddress,
        target: &str,
        message: OutgoingMessage,
    ) -> Result<Option<String>, BridgeError> {
        self.check_up()?;
        self.net.record(format!(
            "edit {} {to} {target} {}",
            self.account, message.body
        ));
        Ok(None)
    }

    async fn retract_message(&self, to: &RemoteAddress, target: &str) -> Result<(), BridgeError> {
        self.net
            .record(format!("retract {} {to} {target}", self.account));
        Ok(())
    }

    async fn react(
        &self,
        to: &RemoteAddress,
        target: &str,
        emojis: Vec<String>,
    ) -> Result<(), BridgeError> {
        self.net.record(format!(
            "react {} {to} {target} {}",
            self.account,
            emojis.join(",")
        ));
        Ok(())
    }

    async fn join_room(
        &self,
        room: &RemoteAddress,
        nick: &str,
        _password: Option<&str>,
    ) -> Result<(), BridgeError> {
        self.check_up()?;
        if room.as_str() == "#closed" {
            return Err(BridgeError::Forbidden("the room is invite-only".to_owned()));
        }
        self.net
            .record(format!("join {} {room} {nick}", self.account));
        let events = vec![
            RemoteEvent::Topic {
                room: room.clone(),
                topic: "Welcome".to_owned(),
                by: None,
            },
            RemoteEvent::Join {
                room: room.clone(),
                occupant: occupant("alice", Affiliation::Owner, Role::Moderator),
                is_self: false,
                nick_changed: false,
            },
            RemoteEvent::Join {
                room: room.clone(),
                occupant: occupant("bob", Affiliation::None, Role::Participant),
                is_self: false,
                nick_changed: false,
            },
            RemoteEvent::Join {
                room: room.clone(),
                occupant: occupant(nick, Affiliation::Member, Role::Participant),
                is_self: true,
                nick_changed: false,
            },
        ];
        self.emit_later(events, Duration::ZERO);
        Ok(())
    }

    async fn leave_room(&self, room: &RemoteAddress) -> Result<(), BridgeError> {
        self.net.record(format!("leave {} {room}", self.account));
        Ok(())
    }

    async fn set_presence(
        &self,
        show: PresenceShow,
        status: Option<&str>,
    ) -> Result<(), BridgeError> {
        self.net.record(format!(
            "presence {} {show:?} {}",
            self.account,
            status.unwrap_or("")
        ));
        Ok(())
    }

    async fn send_typing(&self, to: &RemoteAddress, state: ChatState) -> Result<(), BridgeError> {
        self.net
            .record(format!("typing {} {to} {state:?}", self.account));
        Ok(())
    }

    async fn logout(&self) -> Result<(), BridgeError> {
        self.net.record(format!("logout {}", self.account));
        let mut senders = self.net.senders.lock().unwrap();
        if senders
            .get(&self.account)
            .is_some_and(|(login, _)| *login == self.login)
        {
            senders.remove(&self.account);
        }
        Ok(())
    }
}
