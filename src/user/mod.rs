//! One task per logged-in user: it owns the user's bridge session, turns the
//! user's stanzas into session calls (`inbound`) and the session's events into
//! stanzas (`outbound`), in order, so one slow user never holds up another.

mod archive;
mod avatar;
mod contacts;
mod inbound;
mod outbound;
mod outbox;
mod own_messages;
mod private_chats;
mod room_defaults;
mod room_settings;
pub(crate) use contacts::is_offered_marker;
pub use room_defaults::{RoomDefaults, DEFAULTS_ADDRESS};
pub use room_settings::{RoomSettings, StoredRoomSettings, CONFIGURE_NODE};
pub(crate) use server_connections::{is_disconnect_node, nothing_to_close, DISCONNECT_NODE};
mod rooms;
mod server_connections;
mod server_settings;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use estuary_bridge::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use estuary_bridge::{
    EventSender, PresenceShow, RemoteAddress, RemoteEvent, RemotePresence, Session,
};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;

use crate::gateway::Gateway;
use crate::store::Account;
use crate::xmpp::address::Target;
use crate::xmpp::errors::Failure;
use crate::xmpp::muc;

use self::rooms::Rooms;

/// Room for this many events between a session and its user task.
const EVENT_QUEUE: usize = 1024;

pub enum UserCommand {
    Stanza {
        stanza: Box<Stanza>,
        target: Target,
    },
    Online {
        resource: FullJid,
        show: PresenceShow,
        status: Option<String>,
    },
    Offline {
        resource: FullJid,
    },
    Probe {
        from: Jid,
    },
    /// disco#items on the gateway JID from this user.
    GatewayItems {
        iq: Box<xmpp_parsers::iq::Iq>,
    },
    /// An ad-hoc command on the gateway JID about the user's session: the
    /// settings of all rooms (`configure`), or closing connections to
    /// chosen servers.
    GatewayCommand {
        iq: Box<xmpp_parsers::iq::Iq>,
    },
    /// Leave every room, tell the user's clients, and log out.
    Shutdown,
}

/// Start a user's task; it logs in at once.
/// A running user task, as the router holds it.
pub struct UserTask {
    /// Boxed: a queue keeps room for up to 64 once a burst has passed.
    pub commands: MailboxSender<Box<UserCommand>>,
    pub task: JoinHandle<()>,
    /// Set while a persistent room keeps the network session needed with no
    /// client online: the router then lets the task live on.
    pub keeps_session: Arc<AtomicBool>,
}

pub fn spawn(gw: Arc<Gateway>, account: Account) -> UserTask {
    let (tx, rx) = mailbox();
    let span = info_span!("user", user = %account.jid, gateway = %gw.domain);
    let jid: BareJid = account
        .jid
        .parse()
        .expect("accounts are stored with valid bare JIDs");
    let keeps_session = Arc::new(AtomicBool::new(false));
    let room_defaults = RoomDefaults {
        persistent: gw.persistent_by_default(),
        ..RoomDefaults::default()
    };
    let user = UserSession {
        gw,
        jid,
        account,
        session: None,
        login_error: None,
        resources: BTreeSet::new(),
        rooms: Rooms::default(),
        room_settings: HashMap::new(),
        room_network_settings: HashMap::new(),
        room_defaults,
        server_settings: HashMap::new(),
        contacts: HashSet::new(),
        contact_presence: HashMap::new(),
        awaiting_echo: Default::default(),
        private_chats: Default::default(),
        server_holds: Vec::new(),
        keeps_session: keeps_session.clone(),
    };
    let task = tokio::spawn(Box::new(user).run(rx).instrument(span));
    UserTask {
        commands: tx,
        task,
        keeps_session,
    }
}

pub(crate) struct UserSession {
    gw: Arc<Gateway>,
    jid: BareJid,
    account: Account,
    session: Option<Box<dyn Session>>,
    /// Why the last login failed, told to the user instead of silence.
    login_error: Option<String>,
    resources: BTreeSet<FullJid>,
    rooms: Rooms,
    room_settings: HashMap<RemoteAddress, room_settings::RoomSettings>,
    /// The user's settings of rooms by the network's own fields, where set.
    room_network_settings: HashMap<RemoteAddress, estuary_bridge::FormValues>,
    /// The user's settings of all rooms, over and under each room's own.
    room_defaults: room_defaults::RoomDefaults,
    /// The user's own settings of remote servers, by the network's fields.
    server_settings: HashMap<RemoteAddress, estuary_bridge::FormValues>,
    /// The user's remote contacts as far as the gateway knows: offered to
    /// their roster, or asked for by them. Their presence is watched.
    contacts: HashSet<RemoteAddress>,
    /// The last presence of each contact seen online, to answer the probes
    /// of the user's server.
    contact_presence: HashMap<RemoteAddress, RemotePresence>,
    /// Own messages sent where no id map keeps them, until their echo.
    awaiting_echo: own_messages::AwaitingEcho,
    /// Remote users written to through a room's occupant JID, who answer
    /// from there.
    private_chats: private_chats::RoomPrivateChats,
    /// Which of the user's resources hold a server's connection open with
    /// an available presence to its JID (biboumi's force-connect).
    server_holds: Vec<(RemoteAddress, FullJid)>,
    keeps_session: Arc<AtomicBool>,
}

impl UserSession {
    /// Every user has this task while logged in, mostly idle, so its future
    /// is kept small: the session is boxed (a future holding it by value
    /// keeps two copies), and so are the futures of handling one command or
    /// event, which exist only while that runs.
    async fn run(mut self: Box<Self>, mut commands: MailboxReceiver<Box<UserCommand>>) {
        let (events_tx, mut events) = EventSender::channel(EVENT_QUEUE);
        Box::pin(self.start(events_tx.clone())).await;
        loop {
            tokio::select! {
                command = commands.recv() => match command.map(|c| *c) {
                    Some(UserCommand::Shutdown) | None => break,
                    Some(UserCommand::Online { resource, show, status }) => {
                        Box::pin(self.come_online(&events_tx, resource, show, status)).await;
                    }
                    Some(command) => Box::pin(self.on_command(command)).await,
                },
                Some(event) = events.recv() => Box::pin(self.on_event(*event)).await,
            }
            self.note_persistence();
        }
        Box::pin(self.logout()).await;
    }

    async fn start(&mut self, events: EventSender) {
        self.load_settings().await;
        self.login(events).await;
        self.restore_persistent_rooms().await;
    }

    async fn come_online(
        &mut self,
        events: &EventSender,
        resource: FullJid,
        show: PresenceShow,
        status: Option<String>,
    ) {
        if self.session.is_none() {
            self.login(events.clone()).await;
        }
        self.on_online(resource, show, status).await;
    }

    async fn login(&mut self, events: EventSender) {
        let login =
            self.gw
                .network
                .login(&self.account.jid, self.account.credentials.clone(), events);
        // Read at the same time, so that logging in takes no longer.
        let (logged_in, avatar) = tokio::join!(login, avatar::fetch(&self.gw, &self.jid));
        match logged_in {
            Ok(session) => {
                info!("logged in");
                if let Some(avatar) = avatar {
                    if let Err(e) = session.set_avatar(avatar).await {
                        debug!(error = %e, "the avatar is not passed on");
                    }
                }
                self.session = Some(session);
                self.login_error = None;
                // Before anything opens a connection with the defaults.
                self.apply_network_settings().await;
                self.flush_outbox().await;
                self.offer_known_contacts().await;
                self.watch_contacts().await;
            }
            Err(e) => {
                warn!(error = %e, "login failed");
                self.login_error = Some(e.to_string());
                for resource in self.resources.clone() {
                    self.send_gateway_presence(Jid::from(resource));
                }
            }
        }
    }

    async fn logout(&mut self) {
        for resource in std::mem::take(&mut self.resources) {
            let mut p = Presence::new(PresenceType::Unavailable);
            p.from = Some(self.gw.jid.clone());
            p.to = Some(Jid::from(resource));
            self.gw.send_presence(p);
        }
        self.rooms.leave_all(
            &self.gw,
            &[muc::SHUTDOWN],
            Some("The gateway session ended"),
        );
        if let Some(session) = self.session.take() {
            if let Err(e) = session.logout().await {
                warn!(error = %e, "logout failed");
            }
            info!("logged out");
        }
    }

    async fn on_command(&mut self, command: UserCommand) {
        match command {
            UserCommand::Stanza { stanza, target } => self.on_stanza(*stanza, target).await,
            UserCommand::Offline { resource } => {
                self.resources.remove(&resource);
                for room in self.rooms.resource_gone(&resource) {
                    // No client of the user is left in it; a persistent room stays.
                    if !self.settings_of(&room).persistent {
                        self.forget_room(&room).await;
                    }
                }
            }
            UserCommand::Probe { from } => self.send_gateway_presence(from),
            UserCommand::GatewayItems { iq } => {
                if let xmpp_parsers::iq::Iq::Get { payload, .. } = iq.as_ref() {
                    self.list_top_rooms(&iq, payload).await;
                }
            }
            UserCommand::GatewayCommand { iq } => {
                if let xmpp_parsers::iq::Iq::Set { payload, .. } = iq.as_ref() {
                    let handled = if payload.attr("node") == Some(CONFIGURE_NODE) {
                        self.on_defaults_command(&iq, payload).await
                    } else {
                        self.on_disconnect_command(&iq, payload).await
                    };
                    if let Err(failure) = handled {
                        self.gw
                            .reply_error(&Stanza::Iq(iq.as_ref().clone()), &failure);
                    }
                }
            }
            UserCommand::Online { .. } | UserCommand::Shutdown => {}
        }
    }

    async fn on_online(&mut self, resource: FullJid, show: PresenceShow, status: Option<String>) {
        self.resources.insert(resource.clone());
        self.send_gateway_presence(Jid::from(resource));
        if let Some(session) = &self.session {
            if let Err(e) = session.set_presence(show, status.as_deref()).await {
                tracing::debug!(error = %e, "presence not passed on");
            }
        }
    }

    /// The gateway's own presence: available while logged in; otherwise
    /// unavailable, with the reason the login failed.
    fn send_gateway_presence(&self, to: Jid) {
        let mut p = match (&self.session, &self.login_error) {
            (Some(_), _) => Presence::new(PresenceType::None),
            (None, reason) => {
                let mut p = Presence::new(PresenceType::Unavailable);
                if let Some(reason) = reason {
                    p.set_status(String::new(), format!("Login failed: {reason}"));
                }
                p
            }
        };
        p.from = Some(self.gw.jid.clone());
        p.to = Some(to);
        self.gw.send_presence(p);
    }

    /// The session, or the failure to answer with when there is none.
    fn session(&self) -> Result<&dyn Session, Failure> {
        self.session.as_deref().ok_or_else(|| {
            Failure::service_unavailable(match &self.login_error {
                Some(reason) => format!("not logged in to the network: {reason}"),
                None => "not logged in to the network".to_owned(),
            })
        })
    }

    async fn on_event(&mut self, event: RemoteEvent) {
        let span = info_span!("event", room = event_room(&event).unwrap_or("-"));
        outbound::handle(self, event).instrument(span).await;
    }
}

/// The room or contact an event is about, for the log.
fn event_room(event: &RemoteEvent) -> Option<&str> {
    match event {
        RemoteEvent::Message(m) => Some(m.room.as_ref().unwrap_or(&m.sender).as_str()),
        RemoteEvent::Edit { room, sender, .. }
        | RemoteEvent::Retract { room, sender, .. }
        | RemoteEvent::Reaction { room, sender, .. }
        | RemoteEvent::Typing { room, sender, .. }
        | RemoteEvent::ReadMarker { room, sender, .. } => {
            Some(room.as_ref().unwrap_or(sender).as_str())
        }
        RemoteEvent::Presence(p) => Some(p.user.as_str()),
        RemoteEvent::SendRefused { to, .. } => Some(to.as_str()),
        RemoteEvent::Join { room, .. }
        | RemoteEvent::Part { room, .. }
        | RemoteEvent::JoinRefused { room, .. }
        | RemoteEvent::NickChange { room, .. }
        | RemoteEvent::NickRefused { room, .. }
        | RemoteEvent::Topic { room, .. }
        | RemoteEvent::RoomNotice { room, .. }
        | RemoteEvent::Kick { room, .. }
        | RemoteEvent::RoleChange { room, .. }
        | RemoteEvent::OccupantStatus { room, .. }
        | RemoteEvent::RoomInfo { room, .. }
        | RemoteEvent::RoomConfig { room, .. }
        | RemoteEvent::Invited { room, .. } => Some(room.as_str()),
        RemoteEvent::Disconnected { .. } | RemoteEvent::Reconnected { .. } => None,
    }
}
