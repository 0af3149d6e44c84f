//! One router per gateway domain: checks who sent a stanza, answers what the
//! gateway answers by itself (disco, version, ping, registration, commands),
//! and hands everything addressed to a remote entity to that user's session.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use estuary_bridge::mailbox::MailboxSender;
use estuary_bridge::{AddressKind, Credentials, PresenceShow};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::MessageType;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Show, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;

use crate::admin;
use crate::component::LinkEvent;
use crate::gateway::Gateway;
use crate::registration;
use crate::store::Account;
use crate::user::{self, UserCommand};
use crate::xmpp::address::{self, Target};
use crate::xmpp::errors::{reply_to_invalid, Failure};
use crate::xmpp::xml::{
    NS_COMMANDS, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_GATEWAY, NS_PING, NS_REGISTER, NS_VERSION,
};
use crate::xmpp::{adhoc, privilege, service};

/// What background work (registration) tells the router when it is done.
pub enum RouterNote {
    Registered { account: Account, resource: Jid },
    Unregistered { jid: BareJid },
}

/// A logged-in user: the channel to their session task and their online resources.
struct UserHandle {
    commands: MailboxSender<Box<UserCommand>>,
    resources: BTreeSet<FullJid>,
    task: JoinHandle<()>,
    keeps_session: Arc<AtomicBool>,
}

impl UserHandle {
    fn send(&self, command: UserCommand) {
        // The task only ends after this handle is dropped, so this cannot fail
        // while the handle exists; a panic in the task is logged by tokio.
        let _ = self.commands.send(Box::new(command));
    }
}

pub struct Router {
    gw: Arc<Gateway>,
    users: HashMap<BareJid, UserHandle>,
    notes: mpsc::UnboundedSender<RouterNote>,
    /// Who keeps the gateway's JID in their roster, where the network needs
    /// no registration: read from the store at the first link-up and kept
    /// in step with it, so that a probe (every login of theirs) costs no
    /// store work once they are known.
    subscribers: HashSet<BareJid>,
}

impl Router {
    pub fn new(gw: Arc<Gateway>, notes: mpsc::UnboundedSender<RouterNote>) -> Router {
        Router {
            gw,
            users: HashMap::new(),
            notes,
            subscribers: HashSet::new(),
        }
    }

    pub async fn on_link(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up { first } => self.on_link_up(first).await,
            LinkEvent::Down => {}
            LinkEvent::Stanza(stanza) => self.on_stanza(*stanza).await,
            LinkEvent::Invalid {
                kind,
                from,
                to,
                id,
                type_,
                reason,
            } => {
                let failure = Failure::bad_request(format!("invalid {kind}: {reason}"));
                if let Some(reply) = reply_to_invalid(
                    kind,
                    from.as_deref(),
                    to.as_deref(),
                    id.as_deref(),
                    type_.as_deref(),
                    &failure,
                ) {
                    self.gw.send(reply);
                }
            }
        }
    }

    /// After (re)connecting, ask every registered user's server who is online,
    /// so that sessions come back without waiting for users to reconnect.
    async fn on_link_up(&mut self, first: bool) {
        let accounts = match self.gw.store.accounts(&self.gw.domain).await {
            Ok(a) => a,
            Err(e) => {
                warn!("cannot list accounts to probe: {e}");
                return;
            }
        };
        info!(accounts = accounts.len(), first, "probing registered users");
        if first {
            self.load_subscribers().await;
        }
        self.tell_subscribers(PresenceType::None);
        if first && !self.gw.network.requires_registration() {
            self.restore_guests(&accounts).await;
        }
        for account in accounts {
            if let Ok(jid) = account.jid.parse::<BareJid>() {
                if first
                    && !self.users.contains_key(&jid)
                    && self.has_persistent_rooms(&account).await
                {
                    // Persistent rooms are joined again at once, online or not.
                    self.start_user(jid.clone(), account.clone());
                }
                let mut probe = Presence::new(PresenceType::Probe);
                probe.from = Some(self.gw.jid.clone());
                probe.to = Some(Jid::from(jid));
                self.gw.send_presence(probe);
            }
        }
    }

    /// Start the users who never registered but keep a persistent room, so
    /// that it is joined again as a registered user's is.
    async fn restore_guests(&mut self, registered: &[Account]) {
        let mut jids = match self.gw.store.accounts_with_settings(&self.gw.domain).await {
            Ok(jids) => jids,
            Err(e) => {
                warn!("cannot list the users with settings: {e}");
                return;
            }
        };
        if self.gw.persistent_by_default() {
            // Their rooms are persistent without any setting.
            match self.gw.store.accounts_with_rooms(&self.gw.domain).await {
                Ok(more) => jids.extend(more),
                Err(e) => warn!("cannot list the users in rooms: {e}"),
            }
            jids.sort_unstable();
            jids.dedup();
        }
        for jid in jids {
            if registered.iter().any(|a| a.jid == jid) {
                continue;
            }
            let Ok(jid) = jid.parse::<BareJid>() else {
                continue;
            };
            let guest = self.guest(&jid);
            if !self.users.contains_key(&jid) && self.has_persistent_rooms(&guest).await {
                self.start_user(jid, guest);
            }
        }
    }

    async fn has_persistent_rooms(&self, account: &Account) -> bool {
        let rows = match self
            .gw
            .store
            .address_settings(&self.gw.domain, &account.jid)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                warn!("cannot read room settings: {e}");
                return false;
            }
        };
        let persistent =
            |json: &str| user::RoomSettings::from_json(json).is_some_and(|s| s.persistent);
        if rows.iter().any(|(_, json)| persistent(json)) {
            return true;
        }
        // With persistent rooms by default, every room the user was in is
        // persistent, unless the user turned that off for all their rooms.
        let opted_out = rows
            .iter()
            .any(|(address, json)| address == user::DEFAULTS_ADDRESS && !persistent(json));
        if !self.gw.persistent_by_default() || opted_out {
            return false;
        }
        match self.gw.store.rooms(&self.gw.domain, &account.jid).await {
            Ok(rooms) => !rooms.is_empty(),
            Err(e) => {
                warn!("cannot read the rooms to rejoin: {e}");
                false
            }
        }
    }

    pub async fn on_note(&mut self, note: RouterNote) {
        match note {
            RouterNote::Registered { account, resource } => {
                let jid: BareJid = match account.jid.parse() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                // A new registration replaces any running session and its credentials.
                self.users.remove(&jid);
                self.start_user(jid.clone(), account);
                if let Ok(full) = resource.try_into_full() {
                    self.online(&jid, full, PresenceShow::Online, None);
                }
            }
            RouterNote::Unregistered { jid } => {
                if let Some(handle) = self.users.remove(&jid) {
                    handle.send(UserCommand::Shutdown);
                }
            }
        }
    }

    async fn on_stanza(&mut self, stanza: Stanza) {
        let (from, to) = addresses(&stanza);
        let Some(from) = from else {
            warn!("dropping a stanza without a sender");
            return;
        };
        let span = info_span!("stanza", user = %from.to_bare(), gateway = %self.gw.domain);
        async {
            if let Stanza::Iq(iq) = &stanza {
                if self.gw.take_answer(iq) {
                    return;
                }
            }
            // The server's own privilege advertisement comes from its bare
            // domain, which the access list does not name.
            if let Stanza::Message(m) = &stanza {
                if let Some(granted) = privilege::grants_roster_write(m) {
                    info!(server = %from, granted, "the server's roster privilege (XEP-0356)");
                    self.gw
                        .set_roster_privilege(from.domain().as_str(), granted);
                    return;
                }
            }
            if !self.gw.access().allows(&from) {
                warn!("refusing a stanza from a sender who is not allowed");
                self.gw.reply_error(
                    &stanza,
                    &Failure::forbidden("you are not allowed to use this gateway"),
                );
                return;
            }
            let to = to.unwrap_or_else(|| self.gw.jid.clone());
            if to.domain().as_str() != self.gw.domain {
                // ejabberd with global routes can hand one component another's
                // stanzas; answering for a domain that is not ours would lie.
                warn!(to = %to, "dropping a stanza for another domain");
                return;
            }
            match address::target(&to, self.gw.network.as_ref()) {
                Ok(Target::Gateway) => self.on_gateway_stanza(stanza, from).await,
                Ok(target) => self.on_remote_stanza(stanza, from, target).await,
                Err(failure) => self.gw.reply_error(&stanza, &failure),
            }
        }
        .instrument(span)
        .await
    }

    async fn on_remote_stanza(&mut self, stanza: Stanza, from: Jid, target: Target) {
        if let (
            Stanza::Iq(iq @ Iq::Get { payload, .. }),
            Target::Remote {
                address,
                kind,
                resource: None,
            },
        ) = (&stanza, &target)
        {
            // What a remote address is follows from the address alone; no
            // login needed. A room the user may be in tells more
            // (muc#roominfo), from their session if they have one.
            let in_session = *kind == AddressKind::Room && self.users.contains_key(&from.to_bare());
            if payload.is("query", NS_DISCO_INFO) && payload.attr("node").is_none() && !in_session {
                let info = service::remote_info(*kind, &self.gw.info, address.as_str());
                self.gw.reply_result(iq, Some(info));
                return;
            }
        }
        let bare = from.to_bare();
        if !self.users.contains_key(&bare) {
            if let Stanza::Presence(p) = &stanza {
                // A join, or a contact (or a server's JID) added to or
                // dropped from the roster, which the session answers for
                // and remembers. Leaving a room one is not in, a probe of
                // a contact while no connection is open (offline), or an
                // error: nothing to do.
                if !matches!(
                    p.type_,
                    PresenceType::None | PresenceType::Subscribe | PresenceType::Unsubscribe
                ) {
                    return;
                }
            }
            if let Err(failure) = self.start_session_of(&bare).await {
                self.gw.reply_error(&stanza, &failure);
                return;
            }
        }
        if let Some(handle) = self.users.get(&bare) {
            handle.send(UserCommand::Stanza {
                stanza: Box::new(stanza),
                target,
            });
        }
    }

    /// Start the session of `bare`, who has none: their account's, or a
    /// guest's where the network needs no registration.
    async fn start_session_of(&mut self, bare: &BareJid) -> Result<(), Failure> {
        match self.gw.store.account(&self.gw.domain, bare.as_str()).await {
            Ok(Some(account)) => self.start_user(bare.clone(), account),
            Ok(None) if !self.gw.network.requires_registration() => {
                info!("a user who never registered; logging in as a guest");
                self.start_user(bare.clone(), self.guest(bare));
            }
            Ok(None) => {
                return Err(Failure::registration_required(format!(
                    "register with {} first",
                    self.gw.domain
                )))
            }
            Err(e) => {
                warn!("store error: {e}");
                return Err(Failure::internal("the gateway's store failed"));
            }
        }
        Ok(())
    }

    /// The account of a user who never registered, where the network needs
    /// none: nothing is stored for it but what the user chooses to keep
    /// (settings, persistent rooms).
    fn guest(&self, jid: &BareJid) -> Account {
        Account {
            gateway: self.gw.domain.clone(),
            jid: jid.to_string(),
            credentials: Credentials::default(),
        }
    }

    fn start_user(&mut self, jid: BareJid, account: Account) {
        let user = user::spawn(self.gw.clone(), account);
        self.users.insert(
            jid,
            UserHandle {
                commands: user.commands,
                resources: BTreeSet::new(),
                task: user.task,
                keeps_session: user.keeps_session,
            },
        );
    }

    fn online(
        &mut self,
        jid: &BareJid,
        resource: FullJid,
        show: PresenceShow,
        status: Option<String>,
    ) {
        if let Some(handle) = self.users.get_mut(jid) {
            handle.resources.insert(resource.clone());
            handle.send(UserCommand::Online {
                resource,
                show,
                status,
            });
        }
    }

    async fn on_gateway_stanza(&mut self, stanza: Stanza, from: Jid) {
        match &stanza {
            Stanza::Iq(iq) => self.on_gateway_iq(iq, &stanza, from).await,
            Stanza::Presence(p) => self.on_gateway_presence(p, from).await,
            Stanza::Message(m) => {
                if m.type_ != MessageType::Error {
                    self.gw.reply_error(
                        &stanza,
                        &Failure::service_unavailable(
                            "the gateway itself takes no messages: write to a contact or a room",
                        ),
                    );
                }
            }
        }
    }

    async fn on_gateway_iq(&mut self, iq: &Iq, stanza: &Stanza, from: Jid) {
        let (payload, is_get) = match iq {
            Iq::Get { payload, .. } => (payload, true),
            Iq::Set { payload, .. } => (payload, false),
            Iq::Result { .. } => return,
            Iq::Error { id, error, .. } => {
                warn!(%id, ?error, "the server refused an iq the gateway sent");
                return;
            }
        };
        let ns = payload.ns();
        let name = payload.name();
        let gw = &self.gw;
        match (is_get, name, ns.as_str()) {
            (true, "query", NS_DISCO_INFO) => match payload.attr("node") {
                None => gw.reply_result(iq, Some(service::gateway_info(&gw.info))),
                Some(NS_COMMANDS) => gw.reply_result(iq, Some(service::commands_node_info())),
                Some(_) => gw.reply_error(stanza, &Failure::item_not_found("no such node")),
            },
            (true, "query", NS_DISCO_ITEMS) => match payload.attr("node") {
                None => match self.users.get(&from.to_bare()) {
                    // A logged-in user sees what their network lists.
                    Some(handle) => handle.send(UserCommand::GatewayItems {
                        iq: Box::new(iq.clone()),
                    }),
                    None => gw.reply_result(iq, Some(service::items(None, &[]))),
                },
                Some(NS_COMMANDS) => {
                    let registered = self.is_registered(&from).await;
                    let admin = gw.access().is_admin(&from);
                    let list = registration::command_list(
                        &gw.domain,
                        registered,
                        admin,
                        &gw.info.capabilities,
                    );
                    gw.reply_result(iq, Some(list))
                }
                Some(_) => gw.reply_error(stanza, &Failure::item_not_found("no such node")),
            },
            (true, "query", NS_GATEWAY) => {
                gw.reply_result(iq, Some(service::gateway_prompt(&gw.info)))
            }
            (false, "query", NS_GATEWAY) => {
                let typed = payload
                    .get_child("prompt", NS_GATEWAY)
                    .map(|p| p.text())
                    .unwrap_or_default();
                let typed = typed.trim();
                let result = gw
                    .network
                    .classify(typed)
                    .map_err(|e| Failure::not_acceptable(e.to_string()))
                    .and_then(|_| address::bare_jid(&typed.into(), gw.jid.domain()));
                match result {
                    Ok(jid) => gw.reply_result(iq, Some(service::gateway_jid(jid.as_str()))),
                    Err(failure) => gw.reply_error(stanza, &failure),
                }
            }
            (true, "query", NS_VERSION) => gw.reply_result(iq, Some(service::version())),
            (true, "ping", NS_PING) => gw.reply_result(iq, None),
            (true, "query", NS_REGISTER) => {
                let current = self.current_values(&from).await;
                gw.reply_result(
                    iq,
                    Some(crate::xmpp::register::query(
                        &gw.info,
                        &gw.fields,
                        current.as_ref(),
                    )),
                );
            }
            (false, "query", NS_REGISTER) => {
                self.spawn_registration(registration::Request::Register(payload.clone()), iq, from);
            }
            (false, "command", NS_COMMANDS) => {
                let node = payload.attr("node").unwrap_or_default();
                if node == admin::DISCONNECT_USER_NODE {
                    self.on_disconnect_users(iq, stanza, payload, &from);
                } else if node == admin::RELOAD_NODE {
                    self.on_reload(iq, stanza, payload, &from);
                } else if node == user::CONFIGURE_NODE && gw.info.capabilities.rooms {
                    let bare = from.to_bare();
                    if !self.users.contains_key(&bare) {
                        if let Err(failure) = self.start_session_of(&bare).await {
                            self.gw.reply_error(stanza, &failure);
                            return;
                        }
                    }
                    if let Some(handle) = self.users.get(&bare) {
                        handle.send(UserCommand::GatewayCommand {
                            iq: Box::new(iq.clone()),
                        });
                    }
                } else if user::is_disconnect_node(node) {
                    self.on_disconnect_servers(iq, stanza, payload, &from);
                } else {
                    self.spawn_registration(
                        registration::Request::Command(payload.clone()),
                        iq,
                        from,
                    );
                }
            }
            _ => gw.reply_error(
                stanza,
                &Failure::service_unavailable(format!("{{{ns}}}{name} is not supported here")),
            ),
        }
    }

    /// An admin-only command's request; `None` once refused (not an admin,
    /// or not a command).
    fn admin_command(
        &self,
        stanza: &Stanza,
        command: &Element,
        from: &Jid,
    ) -> Option<adhoc::CommandRequest> {
        if !self.gw.access().is_admin(from) {
            self.gw
                .reply_error(stanza, &Failure::forbidden("only the gateway's admins may"));
            return None;
        }
        adhoc::parse(command)
            .map_err(|failure| self.gw.reply_error(stanza, &failure))
            .ok()
    }

    /// An admin has the configuration file read again; the answer tells
    /// what changed and what waits for a restart. Apart from the router's
    /// loop, since it waits for the file and the networks.
    fn on_reload(&self, iq: &Iq, stanza: &Stanza, command: &Element, from: &Jid) {
        let gw = self.gw.clone();
        let Some(request) = self.admin_command(stanza, command, from) else {
            return;
        };
        let session = request.session_id;
        let iq = iq.clone();
        info!(admin = %from, "an admin asked for a reload");
        tokio::spawn(
            async move {
                match crate::reload::request(&gw.reloads).await {
                    Ok(report) => {
                        let note = format!("Configuration reloaded: {report}.");
                        let done = adhoc::completed(admin::RELOAD_NODE, &session, &note);
                        gw.reply_result(&iq, Some(done));
                    }
                    Err(e) => gw.reply_error(
                        &Stanza::Iq(iq),
                        &Failure::internal(format!("configuration not reloaded: {e}")),
                    ),
                }
            }
            .in_current_span(),
        );
    }

    /// An admin ends chosen users' sessions: the form lists who is logged
    /// in, and the submitted choice logs them out of every network.
    fn on_disconnect_users(&mut self, iq: &Iq, stanza: &Stanza, command: &Element, from: &Jid) {
        let gw = self.gw.clone();
        let Some(request) = self.admin_command(stanza, command, from) else {
            return;
        };
        let session = request.session_id.clone();
        let node = admin::DISCONNECT_USER_NODE;
        if request.action == "cancel" {
            return gw.reply_result(iq, Some(adhoc::canceled(node, &session)));
        }
        let Some(form) = &request.form else {
            let mut users: Vec<BareJid> = self.users.keys().cloned().collect();
            users.sort();
            let form = admin::disconnect_form(&users);
            return gw.reply_result(iq, Some(adhoc::executing(node, &session, form)));
        };
        let chosen = match admin::chosen_users(form) {
            Ok(chosen) => chosen,
            Err(failure) => return gw.reply_error(stanza, &failure),
        };
        let mut ended = 0;
        for jid in &chosen {
            if let Some(handle) = self.users.remove(jid) {
                handle.send(UserCommand::Shutdown);
                info!(user = %jid, "an admin disconnected the user");
                ended += 1;
            }
        }
        let note = format!("{ended} of {} disconnected.", chosen.len());
        gw.reply_result(iq, Some(adhoc::completed(node, &session, &note)));
    }

    /// `disconnect-from-servers`: carried out by the session of the user
    /// whose connections close, the sender's own or, for an admin, anyone's
    /// (biboumi's admins could too): an admin's first step asks whose.
    fn on_disconnect_servers(&mut self, iq: &Iq, stanza: &Stanza, command: &Element, from: &Jid) {
        let gw = self.gw.clone();
        let request = match adhoc::parse(command) {
            Ok(request) => request,
            Err(failure) => return gw.reply_error(stanza, &failure),
        };
        let own = from.to_bare();
        let admin = gw.access().is_admin(from);
        let node = request.node.as_str();
        if request.action == "cancel" {
            return gw.reply_result(iq, Some(adhoc::canceled(node, &request.session_id)));
        }
        if admin && request.form.is_none() {
            let form = admin::choose_user_form(&own);
            return gw.reply_result(iq, Some(adhoc::executing(node, &request.session_id, form)));
        }
        let chosen = match request.form.as_ref().map(admin::chosen_user) {
            Some(Ok(chosen)) => chosen,
            Some(Err(failure)) => return gw.reply_error(stanza, &failure),
            None => None,
        };
        let whose = chosen.unwrap_or_else(|| own.clone());
        if whose != own && !admin {
            return gw.reply_error(
                stanza,
                &Failure::forbidden(
                    "only the gateway's admins may close another user's connections",
                ),
            );
        }
        match self.users.get(&whose) {
            Some(handle) => {
                if whose != own {
                    info!(user = %whose, "an admin closes the user's connections");
                }
                handle.send(UserCommand::GatewayCommand {
                    iq: Box::new(iq.clone()),
                })
            }
            None => {
                let note = user::nothing_to_close((whose != own).then_some(&whose));
                gw.reply_result(iq, Some(adhoc::completed(node, &request.session_id, &note)))
            }
        }
    }

    /// Registration may wait on the remote network (checking a password), so
    /// it runs on its own task; the router is told the outcome.
    fn spawn_registration(&self, request: registration::Request, iq: &Iq, from: Jid) {
        let gw = self.gw.clone();
        let notes = self.notes.clone();
        let iq = iq.clone();
        let span = info_span!("registration", user = %from.to_bare(), gateway = %gw.domain);
        tokio::spawn(
            async move {
                registration::handle(&gw, request, iq, from, &notes).await;
            }
            .instrument(span),
        );
    }

    async fn is_registered(&self, from: &Jid) -> bool {
        matches!(
            self.gw
                .store
                .account(&self.gw.domain, from.to_bare().as_str())
                .await,
            Ok(Some(_))
        )
    }

    async fn current_values(
        &self,
        from: &Jid,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.gw
            .store
            .account(&self.gw.domain, from.to_bare().as_str())
            .await
            .ok()
            .flatten()
            .map(|a| a.credentials.0)
    }

    async fn on_gateway_presence(&mut self, p: &Presence, from: Jid) {
        let bare = from.to_bare();
        match p.type_ {
            PresenceType::None => {
                let Ok(full) = from.clone().try_into_full() else {
                    return;
                };
                if !self.users.contains_key(&bare) {
                    match self.gw.store.account(&self.gw.domain, bare.as_str()).await {
                        Ok(Some(account)) => self.start_user(bare.clone(), account),
                        _ => return,
                    }
                }
                let status = p.statuses.values().next().cloned();
                self.online(&bare, full, show_of(p.show.as_ref()), status);
            }
            PresenceType::Unavailable => {
                let Ok(full) = from.try_into_full() else {
                    return;
                };
                let last = match self.users.get_mut(&bare) {
                    Some(handle) => {
                        handle.resources.remove(&full);
                        handle.send(UserCommand::Offline { resource: full });
                        handle.resources.is_empty()
                    }
                    None => false,
                };
                let kept = self
                    .users
                    .get(&bare)
                    .is_some_and(|h| h.keeps_session.load(Ordering::Relaxed));
                if last && kept {
                    info!("last resource went offline; persistent rooms keep the session");
                } else if last {
                    info!("last resource went offline; logging out");
                    if let Some(handle) = self.users.remove(&bare) {
                        handle.send(UserCommand::Shutdown);
                    }
                }
            }
            PresenceType::Probe => {
                if self.open_to_guests() {
                    // A server probes only the contacts its user is
                    // subscribed to: a probe is proof enough, and keeps
                    // working a roster from before the store knew it (a
                    // biboumi database not imported).
                    self.keep_subscriber(&bare, true).await;
                }
                match self.users.get(&bare) {
                    Some(handle) => handle.send(UserCommand::Probe { from }),
                    None if self.open_to_guests() => {
                        self.send_gateway_presence(from, PresenceType::None);
                    }
                    None => self.send_gateway_presence(from, PresenceType::Unavailable),
                }
            }
            PresenceType::Subscribe if self.open_to_guests() => {
                // As biboumi answers: approved, the gateway's presence, and
                // a request back, so that the roster entry is mutual.
                self.keep_subscriber(&bare, true).await;
                let to = Jid::from(bare);
                self.send_gateway_presence(to.clone(), PresenceType::Subscribed);
                self.send_gateway_presence(to.clone(), PresenceType::None);
                self.send_gateway_presence(to, PresenceType::Subscribe);
            }
            PresenceType::Subscribe => {
                if self.is_registered(&from).await {
                    self.send_gateway_presence(Jid::from(bare.clone()), PresenceType::Subscribed);
                } else {
                    self.send_gateway_presence(Jid::from(bare), PresenceType::Unsubscribed);
                }
            }
            PresenceType::Unsubscribe => {
                if self.open_to_guests() {
                    self.keep_subscriber(&bare, false).await;
                    self.send_gateway_presence(Jid::from(bare.clone()), PresenceType::Unavailable);
                }
                self.send_gateway_presence(Jid::from(bare), PresenceType::Unsubscribed);
            }
            PresenceType::Subscribed | PresenceType::Unsubscribed | PresenceType::Error => {
                debug!(type_ = ?p.type_, "presence noted");
            }
        }
    }

    /// Whether users reach the network without registering (IRC). Then
    /// anyone allowed may keep the gateway's JID in their roster, and it is
    /// online for as long as the gateway runs, as biboumi's is; where
    /// registration is needed, it is online while the user is logged in.
    fn open_to_guests(&self) -> bool {
        !self.gw.network.requires_registration()
    }

    /// Whether `bare` keeps the gateway's JID in their roster: remembered,
    /// so that the gateway tells them when it comes and goes, or forgotten.
    /// The store is written only for a change.
    async fn keep_subscriber(&mut self, bare: &BareJid, keep: bool) {
        let (domain, jid) = (&self.gw.domain, bare.as_str());
        let kept = if keep {
            if !self.subscribers.insert(bare.clone()) {
                return;
            }
            self.gw
                .store
                .add_gateway_subscriber(domain, jid)
                .await
                .map(drop)
        } else {
            // Also when not known here: the store may have failed to list it.
            self.subscribers.remove(bare);
            self.gw.store.remove_gateway_subscriber(domain, jid).await
        };
        if let Err(e) = kept {
            warn!(keep, "cannot note a roster subscription: {e}");
        }
    }

    /// Who keeps the gateway's JID in their roster, from the store.
    async fn load_subscribers(&mut self) {
        if !self.open_to_guests() {
            return;
        }
        match self.gw.store.gateway_subscribers(&self.gw.domain).await {
            Ok(jids) => {
                for jid in jids {
                    match jid.parse::<BareJid>() {
                        Ok(bare) => {
                            self.subscribers.insert(bare);
                        }
                        Err(e) => warn!(jid, "a stored roster subscriber is not a JID: {e}"),
                    }
                }
            }
            Err(e) => warn!("cannot list the gateway's roster subscribers: {e}"),
        }
    }

    /// The gateway's presence to each user who keeps its JID in their
    /// roster, to their bare JID so that every client of theirs hears it
    /// (a session tells only the resources it knows): available when the
    /// link comes up, unavailable when the gateway stops.
    fn tell_subscribers(&self, type_: PresenceType) {
        for bare in &self.subscribers {
            self.send_gateway_presence(Jid::from(bare.clone()), type_.clone());
        }
    }

    fn send_gateway_presence(&self, to: Jid, type_: PresenceType) {
        let mut p = Presence::new(type_);
        p.from = Some(self.gw.jid.clone());
        p.to = Some(to);
        self.gw.send_presence(p);
    }

    /// Tell every user the gateway is going away, log every session out, and
    /// wait (a bounded time) for them to finish.
    pub async fn shutdown(&mut self) {
        self.tell_subscribers(PresenceType::Unavailable);
        let users: Vec<_> = self.users.drain().collect();
        info!(users = users.len(), "shutting down sessions");
        let mut tasks = Vec::new();
        for (_, handle) in users {
            handle.send(UserCommand::Shutdown);
            tasks.push(handle.task);
        }
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            warn!("some sessions did not log out in time");
        }
    }
}

/// Sender and recipient of any stanza.
fn addresses(stanza: &Stanza) -> (Option<Jid>, Option<Jid>) {
    match stanza {
        Stanza::Message(m) => (m.from.clone(), m.to.clone()),
        Stanza::Presence(p) => (p.from.clone(), p.to.clone()),
        Stanza::Iq(Iq::Get { from, to, .. })
        | Stanza::Iq(Iq::Set { from, to, .. })
        | Stanza::Iq(Iq::Result { from, to, .. })
        | Stanza::Iq(Iq::Error { from, to, .. }) => (from.clone(), to.clone()),
    }
}

pub fn show_of(show: Option<&Show>) -> PresenceShow {
    match show {
        None => PresenceShow::Online,
        Some(Show::Away) => PresenceShow::Away,
        Some(Show::Xa) => PresenceShow::ExtendedAway,
        Some(Show::Dnd) => PresenceShow::DoNotDisturb,
        Some(Show::Chat) => PresenceShow::Chat,
    }
}
