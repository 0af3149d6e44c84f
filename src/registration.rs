//! Registering with a gateway, by XEP-0077 or by the `register` and
//! `unregister` ad-hoc commands: both end in the same checks and the same
//! store writes, and XEP-0100's presence subscription follows.

use std::collections::BTreeMap;

use estuary_bridge::RemoteAddress;
use tokio::sync::mpsc;
use tracing::{info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;

use crate::gateway::Gateway;
use crate::router::RouterNote;
use crate::store::Account;
use crate::user;
use crate::xmpp::address::bare_jid;
use crate::xmpp::adhoc;
use crate::xmpp::errors::Failure;
use crate::xmpp::forms::{registration_form, submitted_values, validate};
use crate::xmpp::privilege::RosterEdit;
use crate::xmpp::register::{self, RegisterRequest};
use crate::xmpp::service;
use crate::xmpp::xml::{NS_COMMANDS, NS_REGISTER};

pub const REGISTER_NODE: &str = "register";
pub const UNREGISTER_NODE: &str = "unregister";

pub enum Request {
    /// A `set` on `jabber:iq:register`, with its query.
    Register(Element),
    /// A `set` with an ad-hoc `<command/>`.
    Command(Element),
}

/// The ad-hoc commands a user (or an admin) can run on the gateway.
/// The gateway JID's commands for a user: settings of all rooms where the
/// network has rooms, and closing connections where it keeps one per
/// remote server.
pub fn command_list(
    domain: &str,
    registered: bool,
    admin: bool,
    capabilities: &estuary_bridge::Capabilities,
) -> Element {
    let mut items = vec![(
        domain.to_owned(),
        Some(REGISTER_NODE.to_owned()),
        "Register".to_owned(),
    )];
    if registered {
        items.push((
            domain.to_owned(),
            Some(UNREGISTER_NODE.to_owned()),
            "Unregister".to_owned(),
        ));
    }
    if capabilities.rooms {
        items.push((
            domain.to_owned(),
            Some(crate::user::CONFIGURE_NODE.to_owned()),
            "Settings of all your rooms".to_owned(),
        ));
    }
    if capabilities.server_info {
        items.push((
            domain.to_owned(),
            Some(crate::user::DISCONNECT_NODE.to_owned()),
            "Disconnect from servers".to_owned(),
        ));
    }
    if admin {
        items.push((
            domain.to_owned(),
            Some(crate::admin::DISCONNECT_USER_NODE.to_owned()),
            "Disconnect users (admins)".to_owned(),
        ));
        items.push((
            domain.to_owned(),
            Some(crate::admin::RELOAD_NODE.to_owned()),
            "Reload the configuration (admins)".to_owned(),
        ));
    }
    service::items(Some(NS_COMMANDS), &items)
}

/// Serve one request, telling the router what it must do about sessions
/// before the user sees the answer: a client that sends a message as soon as
/// its registration is confirmed must reach the session started with the new
/// credentials, not the one they replace.
pub async fn handle(
    gw: &Gateway,
    request: Request,
    iq: Iq,
    from: Jid,
    router: &mpsc::UnboundedSender<RouterNote>,
) {
    let outcome = match request {
        Request::Register(query) => match register::parse(&query) {
            Ok(RegisterRequest::Remove) => unregister(gw, &from).await.map(|note| (None, note)),
            Ok(RegisterRequest::Submit(values)) => register_account(gw, &from, values)
                .await
                .map(|note| (None, note)),
            Err(f) => Err(f),
        },
        Request::Command(command) => run_command(gw, &from, &command).await,
    };
    match outcome {
        Ok((payload, note)) => {
            if let Some(note) = note {
                let _ = router.send(note);
            }
            gw.reply_result(&iq, payload);
        }
        Err(failure) => {
            info!(condition = ?failure.condition, reason = %failure.text, "registration refused");
            gw.reply_error(&Stanza::Iq(iq), &failure);
        }
    }
}

async fn run_command(
    gw: &Gateway,
    from: &Jid,
    command: &Element,
) -> Result<(Option<Element>, Option<RouterNote>), Failure> {
    let request = adhoc::parse(command)?;
    let session = request.session_id.clone();
    if request.action == "cancel" {
        return Ok((Some(adhoc::canceled(&request.node, &session)), None));
    }
    match (request.node.as_str(), &request.form) {
        (REGISTER_NODE, None) => {
            let current = gw
                .store
                .account(&gw.domain, from.to_bare().as_str())
                .await
                .ok()
                .flatten()
                .map(|a| a.credentials.0)
                .unwrap_or_default();
            let form = registration_form(
                NS_REGISTER,
                &gw.info.name,
                &gw.info.instructions,
                &gw.fields,
                &current,
            );
            Ok((Some(adhoc::executing(REGISTER_NODE, &session, form)), None))
        }
        (REGISTER_NODE, Some(form)) => {
            let values = submitted_values(form)?;
            let note = register_account(gw, from, values).await?;
            let done = adhoc::completed(REGISTER_NODE, &session, "You are registered.");
            Ok((Some(done), note))
        }
        (UNREGISTER_NODE, _) => {
            let note = unregister(gw, from).await?;
            let done = adhoc::completed(UNREGISTER_NODE, &session, "You are unregistered.");
            Ok((Some(done), note))
        }
        _ => Err(Failure::item_not_found(format!(
            "no command '{}' here",
            request.node
        ))),
    }
}

async fn register_account(
    gw: &Gateway,
    from: &Jid,
    values: BTreeMap<String, String>,
) -> Result<Option<RouterNote>, Failure> {
    let clean = validate(&gw.fields, &values)?;
    // The network checks the credentials; nothing is stored if it refuses.
    let credentials = gw.network.register(clean).await.map_err(Failure::from)?;
    let bare = from.to_bare();
    let existed = gw
        .store
        .account(&gw.domain, bare.as_str())
        .await
        .map_err(store_failure)?
        .is_some();
    let account = Account {
        gateway: gw.domain.clone(),
        jid: bare.to_string(),
        credentials,
    };
    gw.store
        .save_account(&account)
        .await
        .map_err(store_failure)?;
    info!(new = !existed, "user registered");
    if !existed {
        // XEP-0100: the gateway asks to see the user's presence, which is how
        // it learns when to log them in; with the roster privilege it puts
        // itself in the roster instead.
        let group = &gw.info.name;
        let edit = RosterEdit::Add {
            name: Some(group),
            group,
        };
        if !gw.write_roster(&bare, &gw.jid.to_bare(), edit) {
            send_presence(gw, &bare, PresenceType::Subscribe);
        }
    }
    Ok(Some(RouterNote::Registered {
        account,
        resource: from.clone(),
    }))
}

async fn unregister(gw: &Gateway, from: &Jid) -> Result<Option<RouterNote>, Failure> {
    let bare = from.to_bare();
    // The network first, while the credentials are still known; a failure
    // there is logged and does not keep the user registered.
    if let Ok(Some(account)) = gw.store.account(&gw.domain, bare.as_str()).await {
        if let Err(e) = gw
            .network
            .unregister(&account.jid, account.credentials)
            .await
        {
            warn!(error = %e, "the network side of the registration could not be ended");
        }
    }
    let contacts = roster_contacts(gw, &bare).await;
    let existed = gw
        .store
        .delete_account(&gw.domain, bare.as_str())
        .await
        .map_err(store_failure)?;
    if !existed {
        return Err(Failure::registration_required("you are not registered"));
    }
    info!("user unregistered");
    for contact in &contacts {
        gw.write_roster(&bare, contact, RosterEdit::Remove);
    }
    send_presence(gw, &bare, PresenceType::Unavailable);
    if !gw.write_roster(&bare, &gw.jid.to_bare(), RosterEdit::Remove) {
        send_presence(gw, &bare, PresenceType::Unsubscribe);
        send_presence(gw, &bare, PresenceType::Unsubscribed);
    }
    Ok(Some(RouterNote::Unregistered { jid: bare }))
}

/// The contacts the gateway put in `user`'s roster, where it may take them
/// out again; none without the roster privilege.
async fn roster_contacts(gw: &Gateway, user: &BareJid) -> Vec<BareJid> {
    if !gw.may_write_roster(user.domain().as_str()) {
        return Vec::new();
    }
    match gw.store.address_settings(&gw.domain, user.as_str()).await {
        Ok(rows) => rows
            .into_iter()
            .filter(|(_, json)| user::is_offered_marker(json))
            .filter_map(|(address, _)| bare_jid(&RemoteAddress::new(address), gw.jid.domain()).ok())
            .collect(),
        Err(e) => {
            warn!("cannot list the contacts to take out of the roster: {e}");
            Vec::new()
        }
    }
}

fn send_presence(gw: &Gateway, to: &BareJid, type_: PresenceType) {
    let mut p = Presence::new(type_);
    p.from = Some(gw.jid.clone());
    p.to = Some(Jid::from(to.clone()));
    gw.send_presence(p);
}

fn store_failure(e: crate::store::StoreError) -> Failure {
    warn!("store error: {e}");
    Failure::internal("the gateway's store failed")
}
