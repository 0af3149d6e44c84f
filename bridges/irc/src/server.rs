//! One user's presence on one IRC server: a task that owns the connection,
//! reconnects it with backoff, keeps channel state, and turns IRC lines into
//! neutral events.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use estuary_bridge::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use estuary_bridge::{
    Affiliation, BridgeError, ChatState, EventPermit, EventSender, JoinRefusal, MessageKind,
    NickRefusal, Occupant, PresenceShow, RemoteAddress, RemoteEvent, RemoteMessage, Role, RoomInfo,
    SendRefusal,
};
use rand::Rng;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::address::IrcAddress;
use crate::channel_encodings::ChannelEncodings;
use crate::channel_queries::{BanEntry, BanListReply, ChannelAnswers, ModesReply};
use crate::connection::{connect, Identity, LineReader, LineWriter, Registered};
use crate::ctcp::{CtcpExchange, CtcpReply};
use crate::isupport::Isupport;
use crate::line::IrcLine;
use crate::modes::{self, ModeChange, ModeSet};
use crate::monitor::Contacts;
use crate::options::ServerOptions;
use crate::reactions::{self, ReactionSets};
use crate::room_config::ConfigModes;
use crate::text;
use crate::typing::{self, TypingSent};
use crate::whois::{WhoisQueries, WhoisReply};

/// What the session asks of a server task.
pub enum ServerCommand {
    Join {
        channel: String,
        /// The channel key (`+k`), if the user gave one. Never logged.
        key: Option<String>,
        reply: oneshot::Sender<Result<(), BridgeError>>,
    },
    Part {
        channel: String,
    },
    Say {
        target: String,
        text: String,
        kind: MessageKind,
        /// The msgid of the message answered, sent as `+draft/reply`.
        reply_to: Option<String>,
        reply: oneshot::Sender<Result<String, BridgeError>>,
    },
    Topic {
        channel: String,
        topic: String,
    },
    Away {
        message: Option<String>,
    },
    /// LIST: every channel the server shows.
    List {
        reply: ListReply,
    },
    Nick {
        nick: String,
    },
    /// What to tell the user about this connection.
    Describe {
        reply: oneshot::Sender<String>,
    },
    /// A CTCP query to a user, answered by their NOTICE.
    Ctcp {
        target: String,
        verb: &'static str,
        args: String,
        reply: CtcpReply,
    },
    Kick {
        channel: String,
        nick: String,
        reason: Option<String>,
    },
    Invite {
        channel: String,
        nick: String,
    },
    /// Change a member's role and/or affiliation through MODE.
    Standing {
        channel: String,
        nick: String,
        affiliation: Option<Affiliation>,
        role: Option<Role>,
        /// Why, told in the kick that goes with a ban.
        reason: Option<String>,
    },
    /// Channel mode changes: a ban mask set or lifted, a configuration.
    Modes {
        channel: String,
        changes: Vec<ModeChange>,
    },
    /// The channel's ban list.
    BanList {
        channel: String,
        reply: BanListReply,
    },
    /// The channel's modes.
    ChannelModes {
        channel: String,
        reply: ModesReply,
    },
    /// The user's whole set of reactions (XEP-0444) to the message `msgid`
    /// in `target`; what changed goes out as `+draft/react` TAGMSGs.
    React {
        target: String,
        msgid: String,
        emojis: Vec<String>,
        reply: oneshot::Sender<Result<(), BridgeError>>,
    },
    /// A typing notification (XEP-0085 chat state) to a channel or nick.
    Typing {
        target: String,
        state: ChatState,
    },
    /// What the server tells of a user (WHOIS).
    Whois {
        nick: String,
        reply: WhoisReply,
    },
    /// Follow a contact's presence (MONITOR), or stop.
    Watch {
        nick: String,
        watch: bool,
    },
    /// Keep the connection open with no channel joined, or no longer;
    /// answered once taken, so that a hold reaching a connection that was
    /// closing goes to a new one.
    Hold {
        hold: bool,
        reply: Option<oneshot::Sender<Result<(), BridgeError>>>,
    },
    /// Close the connection for good, with this QUIT message.
    Quit {
        message: String,
    },
}

impl ServerCommand {
    /// Answer a command that awaits a result with `error`, for want of a
    /// connection; the others are dropped.
    fn refuse(self, error: BridgeError) {
        match self {
            ServerCommand::Join { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            ServerCommand::Say { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            ServerCommand::Ctcp { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            ServerCommand::React { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            ServerCommand::Whois { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            ServerCommand::BanList { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            ServerCommand::ChannelModes { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            _ => {}
        }
    }
}

/// The session's handle on a server task.
#[derive(Clone)]
pub struct ServerHandle {
    /// Boxed: a queue keeps room for up to 64 once a burst has passed, and
    /// every user has one per server.
    commands: MailboxSender<Box<ServerCommand>>,
}

impl ServerHandle {
    /// The task has ended (the connection was closed for good).
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    pub fn send(&self, command: ServerCommand) -> Result<(), BridgeError> {
        self.commands
            .send(Box::new(command))
            .map_err(|_| BridgeError::Unavailable("the IRC connection task ended".into()))
    }
}

/// Start the task for one server; it connects at once.
pub fn spawn(
    server: String,
    options: ServerOptions,
    identity: Identity,
    fixed: Option<String>,
    events: EventSender,
    contacts: Vec<String>,
    channel_encodings: Arc<ChannelEncodings>,
) -> ServerHandle {
    let (tx, rx) = mailbox();
    let span = info_span!("irc", server = %server);
    let task = ServerTask {
        server,
        options,
        identity,
        fixed,
        events,
        commands: rx,
        channels: HashMap::new(),
        listing: None,
        echoes: std::collections::VecDeque::new(),
        unconfirmed: Vec::new(),
        local_ids: LocalIds::new(),
        away: None,
        backlog: Default::default(),
        connect_error: None,
        ctcp: None,
        nick_asked: None,
        contacts: Contacts::new(contacts),
        typing: TypingSent::default(),
        reactions: ReactionSets::default(),
        held: false,
        forwarded: Vec::new(),
        whois: None,
        asked: None,
        history_batches: Vec::new(),
        channel_encodings,
    };
    tokio::spawn(Box::new(task).run().instrument(span));
    ServerHandle { commands: tx }
}

/// How many messages of a channel's history a join asks a server for.
const HISTORY_ASKED: usize = 50;

/// How often a server without MONITOR is asked which contacts are online.
const ISON_INTERVAL: Duration = Duration::from_secs(60);

/// A channel being joined or joined.
struct Channel {
    name: String,
    /// The status modes of members, by nick. Until the join completes, every
    /// member (the NAMES reply, and who came and went since), to be reported
    /// together. Once joined, only the members holding a mode: a MODE line
    /// tells a change, and the role follows from every mode held. The core
    /// keeps the full list of each room for the user; a second copy here cost
    /// 5 KB per user of a channel of a hundred.
    members: HashMap<Box<str>, ModeSet>,
    /// Once joined, who is in the channel, as a digest of each case-folded
    /// nick ([`nick_digest`]). A QUIT, a NICK or an away-notify names no
    /// channel: this says in which channels to report it, at five bytes a
    /// member. Two nicks with one digest only make the core look for an
    /// occupant who is not there, which it ignores.
    present: HashSet<u32>,
    /// NAMES finished and the self-join was reported.
    joined: bool,
    /// The modes that make the room's configuration, once 324 told them.
    config: Option<ConfigModes>,
}

impl Channel {
    fn new(name: String) -> Channel {
        Channel {
            name,
            members: HashMap::new(),
            present: HashSet::new(),
            joined: false,
            config: None,
        }
    }

    /// The join completed: from now on, members are known by digest
    /// (`present`, one for each of `members`), and only those holding a
    /// mode by name.
    fn complete_join(&mut self, present: HashSet<u32>) {
        self.joined = true;
        self.present = present;
        self.members.retain(|_, modes| !modes.is_empty());
        self.members.shrink_to_fit();
    }

    /// Someone left: whether they were here (always, before the join completes).
    fn remove(&mut self, nick: &str, digest: u32) -> bool {
        self.members.remove(nick);
        !self.joined || self.present.remove(&digest)
    }

    /// Someone changed nick: whether they were here.
    fn rename(&mut self, old: &str, new: &str, digests: (u32, u32)) -> bool {
        let modes = self.members.remove(old);
        let here = !self.joined || self.present.remove(&digests.0);
        if let Some(modes) = modes {
            self.members.insert(new.into(), modes);
        }
        if here && self.joined {
            self.present.insert(digests.1);
        }
        here
    }
}

/// What a numeric refusing a JOIN means, in MUC's terms.
fn join_refusal(numeric: &str) -> JoinRefusal {
    match numeric {
        "475" => JoinRefusal::PasswordRequired,
        "474" => JoinRefusal::Banned,
        "473" => JoinRefusal::MembersOnly,
        "477" => JoinRefusal::RegistrationRequired,
        "471" => JoinRefusal::Full,
        "405" => JoinRefusal::TooManyRooms,
        "403" => JoinRefusal::NoSuchRoom,
        _ => JoinRefusal::Other,
    }
}

/// Whether an error numeric that names a channel being joined is the
/// answer to that JOIN: every error but those that answer other commands
/// about a channel (a message, a mode, a kick, a part, an invitation).
fn refuses_a_join(numeric: &str) -> bool {
    const OTHER_COMMANDS: [&str; 9] = [
        "401", "404", "441", "442", "443", "467", "472", "478", "482",
    ];
    numeric.len() == 3
        && matches!(numeric.as_bytes()[0], b'4' | b'5' | b'9')
        && numeric.bytes().all(|b| b.is_ascii_digit())
        && !OTHER_COMMANDS.contains(&numeric)
}

/// The numerics of a WHOIS answer, each `<me> <nick> ...`.
fn is_whois_reply(numeric: &str) -> bool {
    matches!(
        numeric,
        "311"
            | "312"
            | "313"
            | "317"
            | "318"
            | "319"
            | "301"
            | "330"
            | "671"
            | "338"
            | "378"
            | "379"
            | "276"
            | "307"
            | "320"
    )
}

/// One line of a WHOIS answer, into what is known of the user.
fn gather_whois(info: &mut crate::whois::WhoisInfo, line: &IrcLine) {
    let last = || line.params.last().cloned();
    match line.command.as_str() {
        // `311 me nick user host * :realname`
        "311" => {
            info.nick = line.param(1).to_owned();
            info.user = Some(line.param(2).to_owned());
            info.host = Some(line.param(3).to_owned());
            info.realname = last();
        }
        "312" => info.server = Some(line.param(2).to_owned()),
        "301" => info.away = last(),
        "330" => info.account = Some(line.param(2).to_owned()),
        "317" => info.idle_secs = line.param(2).parse().ok(),
        "671" => info.secure = true,
        _ => {}
    }
}

/// A 32-bit digest of a nick as the server compares nicks.
fn nick_digest(isupport: &Isupport, nick: &str) -> u32 {
    folded_digest(&isupport.fold(nick))
}

fn folded_digest(folded: &str) -> u32 {
    let mut hasher = std::hash::DefaultHasher::new();
    folded.hash(&mut hasher);
    hasher.finish() as u32
}

struct ServerTask {
    server: String,
    options: ServerOptions,
    identity: Identity,
    fixed: Option<String>,
    events: EventSender,
    commands: MailboxReceiver<Box<ServerCommand>>,
    /// By case-folded name.
    channels: HashMap<String, Channel>,
    /// A LIST in progress: the channels so far, and who waits for them.
    listing: Option<(Vec<RoomInfo>, ListReply)>,
    /// Own messages sent, oldest first, until the server echoes them.
    echoes: std::collections::VecDeque<PendingEcho>,
    /// Messages never echoed by a connection that was lost, to send again
    /// once the new connection is back in their channel.
    unconfirmed: Vec<PendingEcho>,
    local_ids: LocalIds,
    /// Events the core's full queue could not take yet, oldest first.
    backlog: std::collections::VecDeque<Box<RemoteEvent>>,
    /// The away message in force, so that repeats (a client sends its
    /// presence to every room) cost nothing and a reconnect restores it.
    away: Option<String>,
    /// Why the last connection attempt failed (a refused TLS certificate,
    /// say), told to whoever asks while down, until a connection succeeds.
    connect_error: Option<String>,
    /// CTCP queries awaiting answers, and the rate of answers given; boxed
    /// and made on the first CTCP, as most connections never see one.
    ctcp: Option<Box<CtcpExchange>>,
    /// The nick the user asked for and the server has not given yet, so
    /// that a refusal reaches the user as one.
    nick_asked: Option<Box<str>>,
    /// The user's contacts on this server, whose presence is followed.
    contacts: Contacts,
    /// The typing notifications sent, to hold back repeats.
    typing: TypingSent,
    /// The reactions seen and sent, to turn IRC's one at a time into
    /// XEP-0444's whole sets and back.
    reactions: ReactionSets,
    /// The user holds the connection open, joined or not (biboumi's
    /// force-connect): the last part does not close it.
    held: bool,
    /// Channels a refused join was forwarded to (470), by case-folded name:
    /// the server puts the user there unasked, and they are left at once.
    forwarded: Vec<String>,
    /// WHOIS queries of the gateway's own, awaiting their answers; boxed
    /// and made on the first, as most connections never see one.
    whois: Option<Box<WhoisQueries>>,
    /// Ban lists and modes asked for the user's MUC outcast list and room
    /// configuration; boxed and made on the first, as most connections
    /// never see one.
    asked: Option<Box<ChannelAnswers>>,
    /// The open batches of history played back (`BATCH +id chathistory`).
    history_batches: Vec<String>,
    /// The user's encodings of this server's channels, for each connection's reader.
    channel_encodings: Arc<ChannelEncodings>,
}

/// A live connection's state.
struct Live {
    reader: LineReader,
    writer: LineWriter,
    me: Registered,
}

enum Ended {
    Quit,
    Lost(String),
}

// Every user has one of these tasks per server, for as long as they are
// connected, so its future is kept small: the task and its connection state
// are boxed (a future holding them by value keeps two copies), and so are the
// futures it awaits only now and then (connecting, handling one line).
impl ServerTask {
    async fn run(mut self: Box<Self>) {
        let mut attempt: u32 = 0;
        let mut was_connected = false;
        loop {
            let live = Box::pin(connect(
                &self.server,
                &self.options,
                &self.identity,
                self.channel_encodings.clone(),
            ))
            .await
            .map(|(reader, writer, me)| Box::new(Live { reader, writer, me }));
            match live {
                Ok(live) => {
                    attempt = 0;
                    self.connect_error = None;
                    if was_connected {
                        self.emit(RemoteEvent::Reconnected {
                            server: Some(RemoteAddress::new(self.server.clone())),
                        });
                    }
                    was_connected = true;
                    let connected = format!("Connected to {}", self.server);
                    self.server_presence(PresenceShow::Online, &connected);
                    match self.serve(live).await {
                        Ended::Quit => {
                            self.contacts_unseen(&format!("Not connected to {}", self.server));
                            return;
                        }
                        Ended::Lost(reason) => {
                            warn!(%reason, "IRC connection lost");
                            self.contacts_unseen(&format!("Disconnected from {}", self.server));
                            self.channels.clear();
                            self.forwarded.clear();
                            self.history_batches.clear();
                            if let Some(ctcp) = &mut self.ctcp {
                                ctcp.fail_all(&reason);
                            }
                            if let Some(whois) = &mut self.whois {
                                whois.fail_all(&reason);
                            }
                            // Their replies fail with "the task ended".
                            self.asked = None;
                            // Lines the server never echoed may be lost: send them again.
                            self.unconfirmed.extend(self.echoes.drain(..));
                            self.emit(RemoteEvent::Disconnected {
                                reason,
                                server: Some(RemoteAddress::new(self.server.clone())),
                            });
                        }
                    }
                }
                Err(e) => {
                    attempt += 1;
                    warn!(attempt, error = %e, "cannot connect to the IRC server");
                    self.connect_error = Some(e.to_string());
                    if !was_connected {
                        // Nobody has been told yet: fail what is waiting.
                        self.fail_waiting(&e.to_string());
                    }
                }
            }
            let delay = backoff(attempt.max(1));
            tokio::select! {
                _ = sleep(delay) => {}
                quit = self.wait_while_down() => if quit { return },
            }
        }
    }

    /// The oldest backlogged event, into the room `permit` holds in the
    /// core's queue; without a permit the core is gone, and the backlog with it.
    fn pass_on_backlog(&mut self, permit: Option<EventPermit<'_>>) {
        match (permit, self.backlog.pop_front()) {
            (Some(permit), Some(event)) => permit.send(event),
            (Some(_), None) => {}
            (None, _) => self.backlog.clear(),
        }
    }

    /// While disconnected, answer commands with `Unavailable` so the core
    /// queues messages; returns true on Quit.
    async fn wait_while_down(&mut self) -> bool {
        loop {
            let events = self.events.clone();
            let command = tokio::select! {
                permit = events.reserve(), if !self.backlog.is_empty() => {
                    self.pass_on_backlog(permit);
                    continue;
                }
                command = self.commands.recv() => command.map(|c| *c),
            };
            let Some(command) = command else { break };
            match command {
                ServerCommand::Quit { .. } => return true,
                ServerCommand::Describe { reply } => {
                    let _ = reply.send(format!(
                        "Not connected to {}, trying again: {}",
                        self.server,
                        self.down_error()
                    ));
                }
                ServerCommand::Watch { nick, watch } => self.note_watch(nick, watch),
                command => command.refuse(self.down_error()),
            }
        }
        true
    }

    /// The answer while disconnected: the last connection error if there is one.
    fn down_error(&self) -> BridgeError {
        match &self.connect_error {
            Some(reason) => BridgeError::Unavailable(reason.clone()),
            None => unavailable(),
        }
    }

    fn fail_waiting(&mut self, reason: &str) {
        while let Some(command) = self.commands.try_recv().map(|c| *c) {
            match command {
                ServerCommand::Watch { nick, watch } => self.note_watch(nick, watch),
                // Noted for the connection to come.
                ServerCommand::Hold { hold, reply } => self.hold(hold, reply),
                command => command.refuse(BridgeError::Unavailable(reason.to_owned())),
            }
        }
    }

    /// Send again the unconfirmed messages `which` selects.
    async fn resend_unconfirmed(&mut self, live: &mut Live, which: impl Fn(&PendingEcho) -> bool) {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unconfirmed)
            .into_iter()
            .partition(|e| which(e));
        self.unconfirmed = later;
        for echo in now {
            info!(target = %echo.target_name, "sending again a message the lost connection never confirmed");
            let (reply, _) = oneshot::channel();
            self.on_command(
                live,
                ServerCommand::Say {
                    target: echo.target_name.clone(),
                    text: echo.body.clone(),
                    kind: echo.kind,
                    reply_to: None,
                    reply,
                },
            )
            .await;
            // Keep the original ID so the echo reflects the user's message.
            if let Some(last) = self.echoes.back_mut() {
                last.id = echo.id.clone();
            }
        }
    }

    async fn serve(&mut self, mut live: Box<Live>) -> Ended {
        for notice in std::mem::take(&mut live.me.notices) {
            self.server_notice(notice).await;
        }
        for command in &self.options.after_connect {
            let command = command.replace("{nick}", &live.me.nick);
            if !live.writer.send_raw(&command) {
                warn!(%command, "skipping an after-connect command that is not one IRC line");
            }
        }
        if self.away.is_some() {
            send_away(&live.writer, self.away.as_deref());
        }
        self.monitor_contacts(&live);
        {
            // Scoped: a copy kept alive through the loop below would cost
            // every connection a second ISUPPORT table.
            let chantypes = live.me.isupport.clone();
            Box::pin(self.resend_unconfirmed(&mut live, |e| !chantypes.is_channel(&e.target_name)))
                .await;
        }
        let ping_interval = self.options.ping_interval();
        let mut last_read = Instant::now();
        let mut pinged = false;
        let mut ison_at = Instant::now() + ISON_INTERVAL;
        loop {
            let polls = live.me.isupport.monitor.is_none() && !self.contacts.is_empty();
            let deadline = last_read
                + if pinged {
                    ping_interval * 2
                } else {
                    ping_interval
                };
            // A clone, so that waiting for room does not borrow `self`.
            let events = self.events.clone();
            tokio::select! {
                permit = events.reserve(), if !self.backlog.is_empty() => {
                    self.pass_on_backlog(permit);
                }
                line = live.reader.next(), if self.backlog.is_empty() => match line {
                    Ok(Some(line)) => {
                        last_read = Instant::now();
                        pinged = false;
                        if let Some(ended) = Box::pin(self.on_line(&mut live, line)).await {
                            return ended;
                        }
                    }
                    Ok(None) => return Ended::Lost("the server closed the connection".into()),
                    Err(e) => return Ended::Lost(e.to_string()),
                },
                command = self.commands.recv() => match command.map(|c| *c) {
                    Some(ServerCommand::Quit { message }) => {
                        let line = text::sanitize_outgoing(&message).into_iter().next();
                        live.writer.send("QUIT", &[line.as_deref().unwrap_or("Leaving")]);
                        // Give the writer a moment to flush the QUIT.
                        sleep(Duration::from_millis(100)).await;
                        return Ended::Quit;
                    }
                    None => {
                        live.writer.send("QUIT", &["Gateway shutdown"]);
                        // Give the writer a moment to flush the QUIT.
                        sleep(Duration::from_millis(100)).await;
                        return Ended::Quit;
                    }
                    Some(command) => {
                        let parting = matches!(
                            command,
                            ServerCommand::Part { .. } | ServerCommand::Hold { hold: false, .. }
                        );
                        self.on_command(&mut live, command).await;
                        if parting && !self.held && self.channels.is_empty() && self.echoes.is_empty() {
                            // The last channel is left: the connection has no more use.
                            info!("last channel left; closing the connection");
                            live.writer.send("QUIT", &["Leaving"]);
                            sleep(Duration::from_millis(100)).await;
                            return Ended::Quit;
                        }
                    }
                },
                _ = tokio::time::sleep_until(ison_at), if polls => {
                    self.ask_ison(&live);
                    ison_at = Instant::now() + ISON_INTERVAL;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if pinged {
                        return Ended::Lost("no answer to PING".into());
                    }
                    live.writer.send("PING", &["estuary"]);
                    pinged = true;
                }
            }
        }
    }

    /// Keep the connection open with no channel joined, or no longer; the
    /// same whether it is open now or still to come.
    fn hold(&mut self, hold: bool, reply: Option<oneshot::Sender<Result<(), BridgeError>>>) {
        self.held = hold;
        if let Some(reply) = reply {
            let _ = reply.send(Ok(()));
        }
    }

    async fn on_command(&mut self, live: &mut Live, command: ServerCommand) {
        match command {
            ServerCommand::Join {
                channel,
                key,
                reply,
            } => {
                let folded = live.me.isupport.fold(&channel);
                if let Some(existing) = self.channels.get(&folded) {
                    if existing.joined {
                        // Already in: report the room again for the new joiner.
                        let _ = reply.send(Ok(()));
                        return;
                    }
                }
                self.channels.insert(folded, Channel::new(channel.clone()));
                match key.as_deref() {
                    Some(key) => live.writer.send("JOIN", &[&channel, key]),
                    None => live.writer.send("JOIN", &[&channel]),
                };
                let _ = reply.send(Ok(()));
            }
            ServerCommand::Part { channel } => {
                // Not in it (a refused join): a PART would only earn a 442.
                if self
                    .channels
                    .remove(&live.me.isupport.fold(&channel))
                    .is_some()
                {
                    live.writer.send("PART", &[&channel]);
                }
            }
            ServerCommand::Say {
                target,
                text: body,
                reply,
                ..
            } if target.is_empty() => {
                // To the server itself: each line is a raw command.
                let lines = text::sanitize_outgoing(&body);
                let sent = lines.iter().filter(|l| live.writer.send_raw(l)).count();
                let id = self.local_ids.next("raw");
                let _ = reply.send(if sent == lines.len() && sent > 0 {
                    Ok(id)
                } else {
                    Err(BridgeError::BadRequest("not an IRC command".into()))
                });
            }
            ServerCommand::Say {
                target,
                text: body,
                kind: MessageKind::Normal,
                reply,
                ..
            } if live.me.isupport.is_channel(&target) && text::mode_command(&body).is_some() => {
                // Not said, so never echoed: the server's MODE line, shown
                // from the room, is what the user sees of it.
                let mut params = vec![target.as_str()];
                params.extend(text::mode_command(&body).unwrap_or_default());
                let sent = live.writer.send("MODE", &params);
                let _ = reply.send(if sent {
                    Ok(self.local_ids.next("out"))
                } else {
                    Err(BridgeError::BadRequest(
                        "not a mode change IRC takes".into(),
                    ))
                });
            }
            ServerCommand::Say {
                target,
                text: body,
                kind,
                reply_to,
                reply,
            } => {
                let verb = if kind == MessageKind::Notice {
                    "NOTICE"
                } else {
                    "PRIVMSG"
                };
                let mut overhead =
                    text::privmsg_overhead(verb, &target, text::assumed_prefix_len(&live.me.nick));
                if kind == MessageKind::Action {
                    overhead += text::ACTION_OVERHEAD;
                }
                let max_line = live.me.isupport.linelen.unwrap_or(text::MAX_LINE);
                self.typing.message_sent(&live.me.isupport.fold(&target));
                // On the first line: IRC clients that show replies thread it.
                let mut reply_tag = reply_to.filter(|id| {
                    live.me.caps.contains("message-tags")
                        && live.me.isupport.allows_client_tag("+draft/reply")
                        && !LocalIds::is_local(id)
                });
                let mut sent = 0;
                for line in text::sanitize_outgoing(&body) {
                    for chunk in text::split_line(overhead, &line, max_line) {
                        let chunk = if kind == MessageKind::Action {
                            text::make_action(&chunk)
                        } else {
                            chunk
                        };
                        let tags = reply_tag.take();
                        let tags: Vec<(&str, &str)> = tags
                            .iter()
                            .map(|id| ("+draft/reply", id.as_str()))
                            .collect();
                        if live.writer.send_tagged(&tags, verb, &[&target, &chunk]) {
                            sent += 1;
                        }
                    }
                }
                if sent == 0 {
                    let _ = reply.send(Err(BridgeError::BadRequest("nothing to send".into())));
                    return;
                }
                let id = self.local_ids.next("out");
                let _ = reply.send(Ok(id.clone()));
                let echo = PendingEcho {
                    target: live.me.isupport.fold(&target),
                    target_name: target.clone(),
                    id,
                    network_id: None,
                    body: text::sanitize_outgoing(&body).join("\n"),
                    kind,
                    remaining: sent,
                    refused: false,
                };
                if live.me.caps.contains("echo-message") {
                    self.echoes.push_back(echo);
                } else {
                    // Without echo-message the server says nothing back: echo
                    // here so the user's clients see the message the same way.
                    self.emit_echo(echo);
                }
            }
            ServerCommand::Topic { channel, topic } => {
                for line in text::sanitize_outgoing(&topic).into_iter().take(1) {
                    live.writer.send("TOPIC", &[&channel, &line]);
                }
            }
            ServerCommand::Away { message } => {
                let message = message.map(|m| {
                    text::sanitize_outgoing(&m)
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| "Away".into())
                });
                if message != self.away {
                    self.away = message;
                    send_away(&live.writer, self.away.as_deref());
                }
            }
            ServerCommand::List { reply } => {
                if let Some((_, previous)) = self.listing.take() {
                    let _ =
                        previous.send(Err(BridgeError::Other("replaced by a newer LIST".into())));
                }
                self.listing = Some((Vec::new(), reply));
                live.writer.send("LIST", &[]);
            }
            ServerCommand::Nick { nick } => {
                if live.writer.send("NICK", &[&nick]) {
                    self.nick_asked = Some(nick.into());
                }
            }
            ServerCommand::Describe { reply } => {
                let _ = reply.send(self.describe(live));
            }
            ServerCommand::Ctcp {
                target,
                verb,
                args,
                reply,
            } => {
                if live
                    .writer
                    .send("PRIVMSG", &[&target, &text::make_ctcp(verb, &args)])
                {
                    let folded = live.me.isupport.fold(&target);
                    self.ctcp.get_or_insert_default().wait(folded, verb, reply);
                } else {
                    let _ = reply.send(Err(BridgeError::BadRequest(format!(
                        "'{target}' cannot be sent a query"
                    ))));
                }
            }
            ServerCommand::Invite { channel, nick } => {
                live.writer.send("INVITE", &[&nick, &channel]);
            }
            ServerCommand::Kick {
                channel,
                nick,
                reason,
            } => kick(&live.writer, &channel, &nick, reason.as_deref()),
            ServerCommand::Standing {
                channel,
                nick,
                affiliation,
                role,
                reason,
            } => {
                let isupport = &live.me.isupport;
                let held = self
                    .channels
                    .get(&isupport.fold(&channel))
                    .and_then(|ch| ch.members.get(nick.as_str()))
                    .map(|modes| modes.iter().collect::<Vec<char>>())
                    .unwrap_or_default();
                let mut changes = Vec::new();
                if let Some(affiliation) = affiliation {
                    changes.extend(modes::affiliation_mode_changes(
                        &nick,
                        &held,
                        affiliation,
                        &isupport.prefix,
                    ));
                }
                if let Some(role) = role {
                    changes.extend(modes::role_mode_changes(
                        &nick,
                        &held,
                        role,
                        &isupport.prefix,
                    ));
                }
                send_modes(&live.writer, &channel, &changes, isupport.modes_per_line());
                // MUC removes whoever it bans (XEP-0045 §9.1); on IRC a ban
                // only keeps them from coming back, so they are kicked too.
                let present = || {
                    self.channels
                        .get(&isupport.fold(&channel))
                        .is_some_and(|ch| ch.present.contains(&nick_digest(isupport, &nick)))
                };
                if affiliation == Some(Affiliation::Outcast) && present() {
                    kick(&live.writer, &channel, &nick, reason.as_deref());
                }
            }
            ServerCommand::Modes { channel, changes } => {
                let per_line = live.me.isupport.modes_per_line();
                send_modes(&live.writer, &channel, &changes, per_line);
            }
            ServerCommand::BanList { channel, reply } => {
                let folded = live.me.isupport.fold(&channel);
                if self.asked.get_or_insert_default().bans.wait(folded, reply) {
                    live.writer.send("MODE", &[&channel, "+b"]);
                }
            }
            ServerCommand::ChannelModes { channel, reply } => {
                let folded = live.me.isupport.fold(&channel);
                if self.asked.get_or_insert_default().modes.wait(folded, reply) {
                    live.writer.send("MODE", &[&channel]);
                }
            }
            ServerCommand::Whois { nick, reply } => {
                let folded = live.me.isupport.fold(&nick);
                if self.whois.get_or_insert_default().wait(folded, reply) {
                    live.writer.send("WHOIS", &[&nick]);
                }
            }
            ServerCommand::Typing { target, state } => {
                let isupport = &live.me.isupport;
                if !live.me.caps.contains("message-tags") || !isupport.allows_client_tag("+typing")
                {
                    return;
                }
                let value = typing::tag_value(state);
                if self
                    .typing
                    .should_send(&isupport.fold(&target), value, Instant::now())
                {
                    live.writer
                        .send_tagged(&[("+typing", value)], "TAGMSG", &[&target]);
                }
            }
            ServerCommand::React {
                target,
                msgid,
                emojis,
                reply,
            } => {
                let _ = reply.send(self.react(live, &target, &msgid, emojis));
            }
            ServerCommand::Watch { nick, watch } => self.watch_contact(live, nick, watch),
            ServerCommand::Hold { hold, reply } => self.hold(hold, reply),
            ServerCommand::Quit { .. } => {}
        }
    }

    /// Send what changed in the user's reactions to `msgid` in `target`.
    fn react(
        &mut self,
        live: &Live,
        target: &str,
        msgid: &str,
        emojis: Vec<String>,
    ) -> Result<(), BridgeError> {
        let isupport = &live.me.isupport;
        if !live.me.caps.contains("message-tags")
            || !isupport.allows_client_tag(reactions::REACT)
            || !isupport.allows_client_tag(reactions::REPLY)
        {
            return Err(BridgeError::Unsupported(
                "reactions, on this IRC server (it passes no +draft/react tags)".into(),
            ));
        }
        if LocalIds::is_local(msgid) {
            return Err(BridgeError::Unsupported(
                "reactions to a message the IRC server gave no msgid".into(),
            ));
        }
        if !emojis.iter().all(|e| reactions::sendable(e)) {
            return Err(BridgeError::BadRequest(format!(
                "a reaction on IRC is at most {} bytes, without control characters",
                reactions::MAX_REACTION
            )));
        }
        let change = self.reactions.own(&isupport.fold(target), msgid, emojis);
        let tags = change
            .added
            .iter()
            .map(|emoji| (reactions::REACT, emoji))
            .chain(
                // Taking one back only where the server passes the tag;
                // elsewhere IRC clients keep showing it, as IRC has no way
                // to say otherwise.
                change
                    .removed
                    .iter()
                    .filter(|_| isupport.allows_client_tag(reactions::UNREACT))
                    .map(|emoji| (reactions::UNREACT, emoji)),
            );
        for (name, emoji) in tags {
            live.writer.send_tagged(
                &[(reactions::REPLY, msgid), (name, emoji)],
                "TAGMSG",
                &[target],
            );
        }
        Ok(())
    }

    fn room(&self, channel: &str) -> RemoteAddress {
        IrcAddress::remote(channel, &self.server, self.fixed.as_deref())
    }

    fn user(&self, nick: &str) -> RemoteAddress {
        IrcAddress::remote(nick, &self.server, self.fixed.as_deref())
    }

    /// Hand an event to the core without ever waiting: the core may itself
    /// be waiting on this task (a `Say` reply), so a blocking send here could
    /// deadlock the two. When the core's queue is full, events wait in
    /// `backlog` and the reader pauses, which keeps the backpressure.
    fn emit(&mut self, event: RemoteEvent) {
        let event = Box::new(event);
        if !self.backlog.is_empty() {
            self.backlog.push_back(event);
            return;
        }
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => self.backlog.push_back(event),
            Err(TrySendError::Closed(_)) => debug!("the session is gone; event dropped"),
        }
    }

    /// Handle one line; `Some` ends the connection.
    async fn on_line(&mut self, live: &mut Live, line: IrcLine) -> Option<Ended> {
        let isupport = &live.me.isupport;
        match line.command.as_str() {
            "PING" => {
                live.writer.send("PONG", &[line.param(0)]);
            }
            "ERROR" => return Some(Ended::Lost(line.param(0).to_owned())),
            "PRIVMSG" | "NOTICE" => self.on_message(live, &line).await,
            "TAGMSG" => self.on_tagmsg(live, &line),
            "JOIN" => {
                let nick = line.nick().unwrap_or_default().to_owned();
                let channel = line.param(0).to_owned();
                let folded = isupport.fold(&channel);
                if isupport.fold(&nick) == isupport.fold(&live.me.nick) {
                    // Put there by a forward the user was told of: leave.
                    if !self.channels.contains_key(&folded) {
                        if let Some(pos) = self.forwarded.iter().position(|f| *f == folded) {
                            self.forwarded.swap_remove(pos);
                            live.writer.send("PART", &[&channel]);
                        }
                    }
                } else {
                    let occupant = Occupant::new(&nick, Affiliation::None, Role::Participant);
                    let joined_room = match self.channels.get_mut(&folded) {
                        Some(ch) if ch.joined => {
                            ch.present.insert(nick_digest(isupport, &nick));
                            Some(ch.name.clone())
                        }
                        Some(ch) => {
                            ch.members.insert(nick.as_str().into(), ModeSet::default());
                            None
                        }
                        None => None,
                    };
                    if let Some(name) = joined_room {
                        let room = self.room(&name);
                        self.emit(RemoteEvent::Join {
                            room,
                            occupant,
                            is_self: false,
                            nick_changed: false,
                        });
                    }
                }
            }
            "353" => {
                // `353 me = #chan :@op +voice nick`
                let folded = isupport.fold(line.param(2));
                if let Some(ch) = self.channels.get_mut(&folded) {
                    for entry in modes::parse_names(line.param(3), &isupport.prefix) {
                        let modes: ModeSet = entry.modes(&isupport.prefix).into_iter().collect();
                        // A NAMES asked for later must not refill the list.
                        if ch.joined {
                            ch.present.insert(nick_digest(isupport, &entry.nick));
                        }
                        if !ch.joined || !modes.is_empty() {
                            ch.members.insert(entry.nick.as_str().into(), modes);
                        }
                    }
                }
            }
            "366" => {
                let folded = isupport.fold(line.param(1));
                let my_folded = isupport.fold(&live.me.nick);
                let ch = self.channels.get_mut(&folded)?;
                if ch.joined {
                    return None;
                }
                let room = IrcAddress::remote(&ch.name, &self.server, self.fixed.as_deref());
                let mut own = None;
                let mut others = Vec::new();
                let mut present = HashSet::with_capacity(ch.members.len());
                for (nick, &modes) in &ch.members {
                    let (affiliation, role) = modes::standing_for_modes(modes.iter());
                    let member = Occupant::new(&**nick, affiliation, role);
                    let folded = isupport.fold(nick);
                    present.insert(folded_digest(&folded));
                    if folded == my_folded {
                        own = Some(member);
                    } else {
                        others.push(member);
                    }
                }
                ch.complete_join(present);
                let own = own.unwrap_or_else(|| {
                    Occupant::new(&live.me.nick, Affiliation::None, Role::Participant)
                });
                // By nick, so that every join shows the room in the same order.
                others.sort_unstable_by(|a, b| a.nick.cmp(&b.nick));
                for occupant in others {
                    self.emit(RemoteEvent::Join {
                        room: room.clone(),
                        occupant,
                        is_self: false,
                        nick_changed: false,
                    });
                }
                self.emit(RemoteEvent::Join {
                    room,
                    occupant: own,
                    is_self: true,
                    nick_changed: live.me.nick_changed,
                });
                // Its modes, for the room's configuration (324).
                live.writer.send("MODE", &[&self.channels[&folded].name]);
                // What the server kept of the channel: the core shows and
                // archives what its archive lacks.
                if let Some(limit) = isupport.chathistory {
                    if live.me.caps.contains("draft/chathistory") {
                        let limit = if limit == 0 {
                            HISTORY_ASKED
                        } else {
                            limit.min(HISTORY_ASKED)
                        };
                        let channel = self.channels[&folded].name.clone();
                        live.writer.send(
                            "CHATHISTORY",
                            &["LATEST", &channel, "*", &limit.to_string()],
                        );
                    }
                }
                self.resend_unconfirmed(live, |e| e.target == folded).await;
            }
            "332" => {
                let room = self.room(line.param(1));
                self.emit(RemoteEvent::Topic {
                    room,
                    topic: text::irc_to_styling(line.param(2)),
                    by: None,
                });
            }
            "TOPIC" => {
                let room = self.room(line.param(0));
                self.emit(RemoteEvent::Topic {
                    room,
                    topic: text::irc_to_styling(line.param(1)),
                    by: line.nick().map(str::to_owned),
                });
            }
            "PART" => {
                let nick = line.nick().unwrap_or_default().to_owned();
                let folded = isupport.fold(line.param(0));
                let is_self = isupport.fold(&nick) == isupport.fold(&live.me.nick);
                if let Some(ch) = self.channels.get_mut(&folded) {
                    ch.remove(&nick, nick_digest(isupport, &nick));
                    let room = self.room(&self.channels[&folded].name);
                    if is_self {
                        self.channels.remove(&folded);
                    }
                    self.emit(RemoteEvent::Part {
                        room,
                        nick,
                        reason: line.params.get(1).map(|r| text::strip_formatting(r)),
                        is_self,
                    });
                }
            }
            "QUIT" => {
                let nick = line.nick().unwrap_or_default().to_owned();
                let digest = nick_digest(isupport, &nick);
                let mut rooms = Vec::new();
                for ch in self.channels.values_mut() {
                    if ch.remove(&nick, digest) && ch.joined {
                        rooms.push(ch.name.clone());
                    }
                }
                for channel in rooms {
                    self.emit(RemoteEvent::Part {
                        room: self.room(&channel),
                        nick: nick.clone(),
                        reason: line.params.first().map(|r| text::strip_formatting(r)),
                        is_self: false,
                    });
                }
            }
            // Invitations for us; with invite-notify the server also tells
            // channel operators of others', which are not ours to show.
            "INVITE" if isupport.fold(line.param(0)) == isupport.fold(&live.me.nick) => {
                if let Some(by) = line.nick() {
                    let event = RemoteEvent::Invited {
                        room: self.room(line.param(1)),
                        by: self.user(by),
                        reason: None,
                    };
                    self.emit(event);
                }
            }
            "KICK" => {
                let folded = isupport.fold(line.param(0));
                let target = line.param(1).to_owned();
                let is_self = isupport.fold(&target) == isupport.fold(&live.me.nick);
                if let Some(ch) = self.channels.get_mut(&folded) {
                    ch.remove(&target, nick_digest(isupport, &target));
                    let room = self.room(&self.channels[&folded].name);
                    if is_self {
                        self.channels.remove(&folded);
                    }
                    self.emit(RemoteEvent::Kick {
                        room,
                        nick: target,
                        by: line.nick().map(str::to_owned),
                        reason: line.params.get(2).map(|r| text::strip_formatting(r)),
                        is_self,
                        // An IRC ban is a separate MODE +b.
                        banned: false,
                    });
                }
            }
            "NICK" => {
                let old = line.nick().unwrap_or_default().to_owned();
                let new = line.param(0).to_owned();
                let is_self = isupport.fold(&old) == isupport.fold(&live.me.nick);
                if is_self {
                    live.me.nick = new.clone();
                    self.nick_asked = None;
                }
                let digests = (nick_digest(isupport, &old), nick_digest(isupport, &new));
                let mut rooms = Vec::new();
                for ch in self.channels.values_mut() {
                    if (ch.rename(&old, &new, digests) || is_self) && ch.joined {
                        rooms.push(ch.name.clone());
                    }
                }
                for channel in rooms {
                    self.emit(RemoteEvent::NickChange {
                        room: self.room(&channel),
                        old: old.clone(),
                        new: new.clone(),
                        is_self,
                    });
                }
            }
            "MODE" => self.on_mode(live, &line).await,
            // RPL_LIST: `322 me #chan users :topic`.
            "322" => {
                let address = self.room(line.param(1));
                if let Some((rooms, _)) = &mut self.listing {
                    rooms.push(RoomInfo {
                        address,
                        name: Some(line.param(1).to_owned()),
                        members: line.param(2).parse().ok(),
                    });
                }
            }
            "323" => {
                if let Some((rooms, reply)) = self.listing.take() {
                    let _ = reply.send(Ok(rooms));
                }
            }
            "AWAY" => self.on_away(live, &line).await,
            // `BATCH +id type params` opens a batch, `BATCH -id` closes it;
            // only history played back matters here.
            "BATCH" => {
                let reference = line.param(0);
                if let Some(id) = reference.strip_prefix('+') {
                    if matches!(line.param(1), "chathistory" | "draft/chathistory") {
                        self.history_batches.push(id.to_owned());
                    }
                } else if let Some(id) = reference.strip_prefix('-') {
                    self.history_batches.retain(|b| b != id);
                }
            }
            // A standard reply refusing the nick asked for.
            "FAIL" if line.param(0) == "NICK" && self.nick_asked.is_some() => {
                let why = match line.param(1) {
                    "NICKNAME_IN_USE" => NickRefusal::InUse,
                    "ERRONEOUS_NICKNAME" => NickRefusal::Invalid,
                    _ => NickRefusal::NotAllowed,
                };
                self.refuse_nick(why, line.params.last().map_or("", String::as_str));
            }
            // A standard reply refusing a channel list, or a join.
            "FAIL" if line.param(0) == "LIST" && self.listing.is_some() => {
                let text = line.params.last().cloned().unwrap_or_default();
                if let Some((_, reply)) = self.listing.take() {
                    let _ = reply.send(Err(BridgeError::Unavailable(text)));
                }
            }
            "FAIL" if line.param(0) == "JOIN" && self.fail_refuses_join(isupport, &line) => {}
            // IRCv3 standard replies (`FAIL JOIN CODE #chan :text`): for the
            // user to read, from the server's JID, as numerics are.
            "FAIL" | "WARN" | "NOTE" if line.params.len() >= 3 => {
                let text = format!(
                    "{} {}: {}",
                    line.param(0),
                    line.command,
                    line.params.last().map_or("", String::as_str)
                );
                self.server_notice(text).await;
            }
            // MONITOR and ISON replies about the user's contacts.
            "730" | "731" | "303" | "734" if self.on_contact_reply(isupport, &line) => {}
            // A join forwarded elsewhere: `470 me #asked #forward :text`.
            "470" => {
                let forward = line.param(2);
                let why = JoinRefusal::Redirected {
                    to: self.room(forward),
                };
                let text = line.params.last().cloned().unwrap_or_default();
                if self.refuse_join(&isupport.fold(line.param(1)), why, text) {
                    self.forwarded.push(isupport.fold(forward));
                }
            }
            // An error naming a channel being joined refuses the join: full,
            // invite-only, banned, wrong key, too many channels, no such
            // channel, identified users only, TLS only, and those the
            // gateway has no name for (437 unavailable, 476 or 479 a bad
            // name, 480 throttled, 495 a rejoin too soon after a kick, 520
            // opers only, 926 forbidden…), so that no join waits for ever.
            numeric
                if refuses_a_join(numeric) && self.is_joining(&isupport.fold(line.param(1))) =>
            {
                let text = line.params.last().cloned().unwrap_or_default();
                self.refuse_join(&isupport.fold(line.param(1)), join_refusal(numeric), text);
            }
            // A joined channel where only identified users speak.
            "477"
                if self.refuse_send(
                    &isupport.fold(line.param(1)),
                    SendRefusal::Forbidden,
                    line.params.last().map_or("", String::as_str),
                ) => {}
            // The nick the user asked for is refused: taken, invalid, held,
            // or forbidden by a channel (+N). Other such numerics (a nick
            // asked for by a raw command) are server notices.
            "433" | "436" | "432" | "437" | "447"
                if self.nick_asked.as_deref().is_some_and(|asked| {
                    isupport.fold(asked) == isupport.fold(line.param(1)) || line.command == "447"
                }) =>
            {
                let why = match line.command.as_str() {
                    "433" | "436" => NickRefusal::InUse,
                    "432" => NickRefusal::Invalid,
                    _ => NickRefusal::NotAllowed,
                };
                self.refuse_nick(why, line.params.last().map_or("", String::as_str));
            }
            // No such nick: a message or CTCP query to them gets nowhere.
            "401" => {
                let text = line.params.last().cloned().unwrap_or_default();
                let folded = isupport.fold(line.param(1));
                if let Some(ctcp) = &mut self.ctcp {
                    ctcp.no_such_nick(&folded, &text);
                }
                let asked = self
                    .whois
                    .as_mut()
                    .is_some_and(|w| w.no_such_nick(&folded, &text));
                if !self.refuse_send(&folded, SendRefusal::NoSuchRecipient, &text) && !asked {
                    self.server_notice(line.params[1.min(line.params.len())..].join(" "))
                        .await;
                }
            }
            // A WHOIS reply about a nick the gateway asked after itself.
            numeric
                if is_whois_reply(numeric)
                    && self
                        .whois
                        .as_mut()
                        .is_some_and(|w| w.gathering(&isupport.fold(line.param(1))).is_some()) =>
            {
                let folded = isupport.fold(line.param(1));
                let whois = self.whois.as_mut().expect("checked above");
                if numeric == "318" {
                    whois.end(&folded);
                } else if let Some(info) = whois.gathering(&folded) {
                    gather_whois(info, &line);
                }
            }
            // A ban list the gateway asked for itself: `367 me #chan mask [setter [time]]`.
            "367"
                if self.asked.as_mut().is_some_and(|a| {
                    let Some(bans) = a.bans.gathering(&isupport.fold(line.param(1))) else {
                        return false;
                    };
                    bans.push(BanEntry {
                        mask: line.param(2).to_owned(),
                        set_by: line.params.get(3).filter(|s| !s.is_empty()).cloned(),
                    });
                    true
                }) => {}
            "368"
                if self
                    .asked
                    .as_mut()
                    .is_some_and(|a| a.bans.end(&isupport.fold(line.param(1)), None)) => {}
            // The channel's modes: `324 me #chan +ntk key`.
            "324" => {
                let folded = isupport.fold(line.param(1));
                let set =
                    modes::parse_mode_changes(&line.params[2.min(line.params.len())..], isupport);
                let config = ConfigModes::of(&isupport.chanmodes, &set);
                let changed = (self.channels.get_mut(&folded))
                    .filter(|c| c.joined && c.config != Some(config))
                    .map(|c| {
                        c.config = Some(config);
                        c.name.clone()
                    });
                if let Some(channel) = changed {
                    let room = self.room(&channel);
                    self.emit(RemoteEvent::RoomConfig {
                        room,
                        config: config.config(&isupport.chanmodes),
                    });
                }
                if let Some(asked) = self.asked.as_mut() {
                    if let Some(modes) = asked.modes.gathering(&folded) {
                        modes.set = set;
                        modes.chanmodes = isupport.chanmodes.clone();
                        asked.modes.end(&folded, None);
                    }
                }
            }
            // What the gateway asked refused: not in the channel, not an
            // operator, no such channel.
            "442" | "482" | "403"
                if self.asked.as_mut().is_some_and(|a| {
                    let text = line.params.last().cloned().unwrap_or_default();
                    let error = if line.command == "403" {
                        BridgeError::NotFound(text)
                    } else {
                        BridgeError::Forbidden(text)
                    };
                    a.refuse(&isupport.fold(line.param(1)), error)
                }) => {}
            // The end of an answer to a WHOIS of the gateway's refused (401).
            "318"
                if self
                    .whois
                    .as_mut()
                    .is_some_and(|w| w.end(&isupport.fold(line.param(1)))) => {}
            // The channel will not take the user's message: moderated, a
            // ban, no outside messages, identified users only.
            "404" => {
                let text = line.params.last().cloned().unwrap_or_default();
                let folded = isupport.fold(line.param(1));
                if !self.refuse_send(&folded, SendRefusal::Forbidden, &text) {
                    self.server_notice(line.params[1.min(line.params.len())..].join(" "))
                        .await;
                }
            }
            // Replies that only fill the screen of a plain IRC client.
            "331" | "333" | "329" | "265" | "266" | "250" | "251" | "252" | "253" | "254"
            | "255" | "042" => {}
            // Every other numeric (refusals such as 482 or 404, WHOIS replies,
            // MOTD) is for the user to read, from the server's JID.
            numeric if numeric.len() == 3 && numeric.bytes().all(|b| b.is_ascii_digit()) => {
                let text = line.params[1.min(line.params.len())..].join(" ");
                self.server_notice(text).await;
            }
            _ => {}
        }
        None
    }

    /// A message from the server itself, shown as coming from its JID.
    async fn server_notice(&mut self, body: String) {
        let message = RemoteMessage {
            kind: MessageKind::Notice,
            ..RemoteMessage::text(
                self.local_ids.next("srv"),
                RemoteAddress::new(self.server.clone()),
                text::irc_to_styling(&body),
            )
        };
        self.emit(RemoteEvent::from(message));
    }

    /// Status mode changes (`+o nick`) become role and affiliation changes.
    async fn on_mode(&mut self, live: &Live, line: &IrcLine) {
        let isupport = &live.me.isupport;
        let channel = line.param(0);
        if !isupport.is_channel(channel) {
            return;
        }
        let folded = isupport.fold(channel);
        let mut changed = Vec::new();
        let mut config = None;
        if let Some(ch) = self.channels.get_mut(&folded) {
            for change in modes::parse_mode_changes(&line.params[1..], isupport) {
                if let Some(modes) = ch.config.as_mut() {
                    if modes.apply(&isupport.chanmodes, &change) {
                        config = Some(*modes);
                    }
                }
                if !isupport.prefix.has_mode(change.mode) {
                    continue;
                }
                let Some(nick) = change.arg.as_deref() else {
                    continue;
                };
                // Once joined, a member without modes has no entry.
                let mut held = match ch.members.get(nick) {
                    Some(&modes) => modes,
                    None if ch.joined => ModeSet::default(),
                    None => continue,
                };
                if change.adding {
                    held.insert(change.mode);
                } else {
                    held.remove(change.mode);
                }
                if ch.joined && held.is_empty() {
                    ch.members.remove(nick);
                } else {
                    ch.members.insert(nick.into(), held);
                }
                let (affiliation, role) = modes::standing_for_modes(held.iter());
                changed.push((nick.to_owned(), affiliation, role));
            }
            if !ch.joined {
                return;
            }
        }
        let room = self.room(channel);
        for (nick, affiliation, role) in changed {
            self.emit(RemoteEvent::RoleChange {
                room: room.clone(),
                nick,
                affiliation,
                role,
            });
        }
        // Every change as IRC has it, as biboumi showed them: most modes
        // (+m, +k, +b…) have no MUC counterpart, and a ban is only seen here.
        let setter = line
            .nick()
            .or(line.source.as_deref())
            .unwrap_or("The server");
        let modes = line.params[1..].join(" ");
        self.emit(RemoteEvent::RoomNotice {
            room: room.clone(),
            text: format!("{setter} sets mode {modes}"),
        });
        if let Some(modes) = config {
            self.emit(RemoteEvent::RoomConfig {
                room,
                config: modes.config(&isupport.chanmodes),
            });
        }
    }

    /// away-notify: someone went away or came back; their occupants change show.
    async fn on_away(&mut self, live: &Live, line: &IrcLine) {
        let Some(nick) = line.nick().map(str::to_owned) else {
            return;
        };
        if live.me.isupport.fold(&nick) == live.me.isupport.fold(&live.me.nick) {
            return;
        }
        let status = line.params.first().map(|m| text::strip_formatting(m));
        let show = if status.is_some() {
            PresenceShow::Away
        } else {
            PresenceShow::Online
        };
        let folded = live.me.isupport.fold(&nick);
        let digest = folded_digest(&folded);
        for channel in self.joined_channels(|ch| ch.present.contains(&digest)) {
            self.emit(RemoteEvent::OccupantStatus {
                room: self.room(&channel),
                nick: nick.clone(),
                show,
                status: status.clone(),
            });
        }
        if let Some(change) = self.contacts.on_away(&folded, status.as_deref()) {
            self.emit_contact(change);
        }
    }

    /// The server refused a line of the oldest message awaiting its echo
    /// to `folded_target`: the user is told once per message, and the
    /// message is never echoed. Whether there was one.
    fn refuse_send(&mut self, folded_target: &str, why: SendRefusal, text: &str) -> bool {
        let Some(pos) = self.echoes.iter().position(|e| e.target == folded_target) else {
            return false;
        };
        let echo = &mut self.echoes[pos];
        echo.remaining -= 1;
        let first = !echo.refused;
        echo.refused = true;
        let (target_name, id) = (echo.target_name.clone(), echo.id.clone());
        if echo.remaining == 0 {
            self.echoes.remove(pos);
        }
        if first {
            let to = match self.channels.get(folded_target) {
                Some(ch) => self.room(&ch.name),
                None => self.user(&target_name),
            };
            self.emit(RemoteEvent::SendRefused {
                to,
                id,
                why,
                text: text.to_owned(),
            });
        }
        true
    }

    /// `FAIL JOIN CODE [context...] :text` naming a channel being joined:
    /// the join is refused. Whether it was.
    fn fail_refuses_join(&mut self, isupport: &Isupport, line: &IrcLine) -> bool {
        let context = &line.params[2.min(line.params.len())..line.params.len().saturating_sub(1)];
        let Some(folded) = context
            .iter()
            .map(|c| isupport.fold(c))
            .find(|f| self.is_joining(f))
        else {
            return false;
        };
        let text = line.params.last().cloned().unwrap_or_default();
        self.refuse_join(&folded, JoinRefusal::Other, text)
    }

    /// Whether the channel `folded` is being joined (asked for, not in yet).
    fn is_joining(&self, folded: &str) -> bool {
        self.channels.get(folded).is_some_and(|ch| !ch.joined)
    }

    /// The server refused the join of `folded`: the core is told, and the
    /// channel forgotten. Whether that join was waiting.
    fn refuse_join(&mut self, folded: &str, why: JoinRefusal, text: String) -> bool {
        if !self.is_joining(folded) {
            return false;
        }
        let ch = self.channels.remove(folded).expect("checked above");
        self.emit(RemoteEvent::JoinRefused {
            room: self.room(&ch.name),
            why,
            text,
        });
        true
    }

    /// The nick the user asked for is refused: told in every joined
    /// channel (the core tells only the room where it was asked).
    fn refuse_nick(&mut self, why: NickRefusal, text: &str) {
        let Some(nick) = self.nick_asked.take() else {
            return;
        };
        for channel in self.joined_channels(|_| true) {
            self.emit(RemoteEvent::NickRefused {
                room: self.room(&channel),
                nick: nick.to_string(),
                why,
                text: text.to_owned(),
            });
        }
    }

    /// The names of the joined channels `which` picks.
    fn joined_channels(&self, which: impl Fn(&Channel) -> bool) -> Vec<String> {
        self.channels
            .values()
            .filter(|ch| ch.joined && which(ch))
            .map(|ch| ch.name.clone())
            .collect()
    }

    /// The connection, as the user reads it: where, how, as whom, since
    /// when, and in which channels.
    fn describe(&self, live: &Live) -> String {
        let mut channels = self.joined_channels(|_| true);
        channels.sort_unstable();
        let channels = if channels.is_empty() {
            "none".to_owned()
        } else {
            channels.join(", ")
        };
        format!(
            "Connected to {} at {} since {}, as {}. Channels: {channels}.",
            self.server,
            live.me.via,
            crate::server_time::format(live.me.since_ms),
            live.me.nick,
        )
    }

    /// A CTCP query sent to the user is answered (within a rate); a reply
    /// goes to whoever waits for it. Neither is shown as text.
    fn on_ctcp(&mut self, live: &Live, line: &IrcLine, nick: &str, verb: &str, args: &str) {
        let isupport = &live.me.isupport;
        let ctcp = self.ctcp.get_or_insert_default();
        if line.command == "NOTICE" {
            if !ctcp.answered(&isupport.fold(nick), verb, args) {
                debug!(%nick, verb, "a CTCP reply nobody waits for");
            }
        } else if isupport.fold(line.param(0)) != isupport.fold(&live.me.nick) {
            // Sent to a channel: answering would flood it.
            debug!(%nick, verb, "ignoring a CTCP query to a channel");
        } else if let Some((verb, args)) = ctcp.answer(verb, args, std::time::Instant::now()) {
            live.writer
                .send("NOTICE", &[nick, &text::make_ctcp(&verb, &args)]);
        } else {
            debug!(%nick, verb, "a CTCP query left unanswered");
        }
    }

    /// A message with tags only: a typing notification is a chat state
    /// from the sender (in the channel, or to the user alone), and a
    /// reaction changes the sender's set of reactions to a message.
    fn on_tagmsg(&mut self, live: &Live, line: &IrcLine) {
        let Some(nick) = line.nick() else {
            return;
        };
        let isupport = &live.me.isupport;
        let target = line.param(0);
        // Our own, echoed; or sent to a channel's operators only (`@#chan`).
        if isupport.fold(nick) == isupport.fold(&live.me.nick)
            || target.starts_with(|c| isupport.prefix.is_symbol(c))
        {
            return;
        }
        let room = isupport.is_channel(target).then(|| self.room(target));
        if let Some(state) = line.tags.get("+typing").and_then(|v| typing::chat_state(v)) {
            self.emit(RemoteEvent::Typing {
                nick: room.as_ref().map(|_| nick.to_owned()),
                room: room.clone(),
                sender: self.user(nick),
                state,
            });
        }
        let reaction = match (
            line.tags.get(reactions::REACT),
            line.tags.get(reactions::UNREACT),
        ) {
            (Some(emoji), _) => Some((emoji, true)),
            (None, Some(emoji)) => Some((emoji, false)),
            (None, None) => None,
        };
        let msgid = (line.tags.get(reactions::REPLY))
            .or_else(|| line.tags.get(reactions::REPLY_UNPREFIXED));
        let (Some((emoji, added)), Some(msgid)) = (reaction, msgid) else {
            return;
        };
        if !reactions::sendable(emoji) || msgid.is_empty() {
            debug!(%nick, "a reaction too long or with control characters; skipped");
            return;
        }
        // A private chat is the sender's, as the user's own reactions there are.
        let chat = isupport.fold(if room.is_some() { target } else { nick });
        let emojis = self
            .reactions
            .received(&chat, msgid, &isupport.fold(nick), emoji, added);
        self.emit(RemoteEvent::Reaction {
            nick: room.as_ref().map(|_| nick.to_owned()),
            room,
            sender: self.user(nick),
            target: msgid.clone(),
            emojis,
        });
    }

    async fn on_message(&mut self, live: &Live, line: &IrcLine) {
        let Some(nick) = line.nick().map(str::to_owned) else {
            return;
        };
        if !line.source.as_deref().unwrap_or_default().contains('!') {
            // No `nick!user@host`: the server itself is talking.
            self.server_notice(line.param(1).to_owned()).await;
            return;
        }
        let isupport = &live.me.isupport;
        let target = line.param(0);
        let raw = line.param(1);
        let from_self = isupport.fold(&nick) == isupport.fold(&live.me.nick);
        if from_self {
            // echo-message: the server confirms our own line. Report the
            // message once its last line is confirmed, with the ID the
            // session returned for it (so the core reflects it with the
            // user's own id) and the server's msgid for it (so the core
            // archives it once, however many users of the gateway saw it).
            let folded = isupport.fold(target);
            if let Some(pos) = self.echoes.iter().position(|e| e.target == folded) {
                if self.echoes[pos].network_id.is_none() {
                    self.echoes[pos].network_id = line.tags.get("msgid").cloned();
                }
                self.echoes[pos].remaining -= 1;
                if self.echoes[pos].remaining == 0 {
                    let echo = self.echoes.remove(pos).expect("position is valid");
                    if !echo.refused {
                        self.emit_echo(echo);
                    }
                }
            }
            return;
        }
        let (body, kind) = if let Some(action) = text::ctcp_action(raw) {
            (action.to_owned(), MessageKind::Action)
        } else if let Some((verb, args)) = text::ctcp_query(raw) {
            self.on_ctcp(live, line, &nick, verb, args);
            return;
        } else if line.command == "NOTICE" {
            (raw.to_owned(), MessageKind::Notice)
        } else {
            (raw.to_owned(), MessageKind::Normal)
        };
        let id = match line.tags.get("msgid") {
            Some(id) => id.clone(),
            None => self.local_ids.next("in"),
        };
        let room = if isupport.is_channel(target) {
            Some(self.room(target))
        } else {
            None
        };
        let message = RemoteMessage {
            id,
            nick: room.as_ref().map(|_| nick.clone()),
            room,
            sender: self.user(&nick),
            body: text::irc_to_styling(&body),
            kind,
            reply_to: (line.tags.get(reactions::REPLY))
                .or_else(|| line.tags.get(reactions::REPLY_UNPREFIXED))
                .cloned(),
            timestamp_ms: line
                .tags
                .get("time")
                .and_then(|t| crate::server_time::parse(t)),
            from_self,
            sent_as: None,
            attachments: Vec::new(),
            replayed: line
                .tags
                .get("batch")
                .is_some_and(|b| self.history_batches.contains(b)),
        };
        self.emit(RemoteEvent::from(message));
    }
}

/// Where the result of a LIST goes.
type ListReply = oneshot::Sender<Result<Vec<RoomInfo>, BridgeError>>;

/// One of the user's messages whose echo is awaited.
/// MODE lines making `changes` in `channel`, as many as the server's
/// limit of modes per line asks.
fn send_modes(writer: &LineWriter, channel: &str, changes: &[ModeChange], per_line: usize) {
    for params in modes::mode_lines(changes, per_line) {
        let mut all: Vec<&str> = vec![channel];
        all.extend(params.iter().map(String::as_str));
        writer.send("MODE", &all);
    }
}

/// KICK, with the reason's first line (none can carry a second command).
fn kick(writer: &LineWriter, channel: &str, nick: &str, reason: Option<&str>) {
    let reason = reason.and_then(|r| text::sanitize_outgoing(r).into_iter().next());
    match reason {
        Some(r) => writer.send("KICK", &[channel, nick, &r]),
        None => writer.send("KICK", &[channel, nick]),
    };
}

fn send_away(writer: &LineWriter, message: Option<&str>) {
    match message {
        Some(m) => writer.send("AWAY", &[m]),
        None => writer.send("AWAY", &[]),
    };
}

#[derive(Clone)]
struct PendingEcho {
    /// Case-folded target.
    target: String,
    /// The target as written, to send again.
    target_name: String,
    id: String,
    /// The msgid the server gave the first echoed line: the id the other
    /// users in the channel see the message under.
    network_id: Option<String>,
    body: String,
    kind: MessageKind,
    /// Lines not yet echoed.
    remaining: usize,
    /// The server refused a line of it (and the user was told).
    refused: bool,
}

/// The ids a connection gives messages the server gave none (no msgid, or
/// the user's own before their echo): a counter after a prefix unique to the
/// connection task, its start time and then a random number. The archive
/// keeps one row per (room, id), so a bare counter, which every connection
/// and every run starts again, would make different messages one row; the
/// time first keeps the archive's index growing at its end.
struct LocalIds {
    started_ms: u64,
    salt: u32,
    next: u64,
}

impl LocalIds {
    fn new() -> LocalIds {
        LocalIds {
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            salt: rand::rng().random(),
            next: 0,
        }
    }

    /// Whether `id` is one of these rather than a server's msgid.
    fn is_local(id: &str) -> bool {
        let mut parts = id.splitn(3, '-');
        let (Some(kind), Some(stamp), Some(count)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        matches!(kind, "in" | "out" | "srv" | "raw")
            && stamp.len() == 19
            && stamp.bytes().all(|b| b.is_ascii_hexdigit())
            && count.bytes().all(|b| b.is_ascii_digit())
    }

    fn next(&mut self, kind: &str) -> String {
        self.next += 1;
        format!(
            "{kind}-{:011x}{:08x}-{}",
            self.started_ms, self.salt, self.next
        )
    }
}

impl ServerTask {
    fn emit_echo(&mut self, echo: PendingEcho) {
        let room = self
            .channels
            .get(&echo.target)
            .map(|ch| self.room(&ch.name));
        let sender = match &room {
            Some(_) => RemoteAddress::new(String::new()),
            None => self.user(&echo.target),
        };
        // Under the id everyone else sees it by, where the server gave one,
        // so the core archives the message once for all of them.
        let (id, sent_as) = match echo.network_id {
            Some(network_id) => (network_id, Some(echo.id)),
            None => (echo.id, None),
        };
        let message = RemoteMessage {
            id,
            sent_as,
            room,
            sender,
            nick: None,
            body: echo.body,
            kind: echo.kind,
            reply_to: None,
            timestamp_ms: None,
            from_self: true,
            attachments: Vec::new(),
            replayed: false,
        };
        self.emit(RemoteEvent::from(message));
    }
}

fn unavailable() -> BridgeError {
    BridgeError::Unavailable("not connected to the IRC server".into())
}

/// Reconnection delay: exponential, capped at five minutes, with jitter.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1) * 2u32.pow(attempt.saturating_sub(1).min(8));
    let capped = base.min(Duration::from_secs(300));
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerHandle")
    }
}

mod contacts;
#[cfg(test)]
mod tests;
