//! The user's connections to remote servers, as a whole: the ad-hoc
//! command on the gateway's JID that closes chosen ones (biboumi's
//! `disconnect-from-irc-servers`). The rooms a closed connection carried
//! are left.

use estuary_bridge::RemoteAddress;
use tracing::{info, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid};
use xmpp_parsers::minidom::Element;

use crate::admin::USER_FIELD;
use crate::xmpp::adhoc;
use crate::xmpp::errors::Failure;
use crate::xmpp::forms::{form, hidden_field, list_multi, submitted_values};
use crate::xmpp::xml::{element, Attrs, NS_DATA};

use super::rooms::send_self_gone;
use super::UserSession;

/// Close chosen connections to remote servers.
pub const DISCONNECT_NODE: &str = "disconnect-from-servers";

/// Whether `node` names that command, by its name or by biboumi's (older
/// and newer), so that what worked with biboumi works here.
pub fn is_disconnect_node(node: &str) -> bool {
    matches!(
        node,
        DISCONNECT_NODE | "disconnect-from-irc-servers" | "disconnect-from-irc-server"
    )
}

const FORM_TYPE: &str = "urn:xmpp:estuary:disconnect-from-servers:0";

/// The quit message when the user gives none.
const DEFAULT_MESSAGE: &str = "Disconnected by the user";

impl UserSession {
    pub(super) async fn on_disconnect_command(
        &mut self,
        iq: &Iq,
        command: &Element,
    ) -> Result<(), Failure> {
        let request = adhoc::parse(command)?;
        let node = request.node.as_str();
        let session_id = request.session_id.clone();
        if request.action == "cancel" {
            self.gw
                .reply_result(iq, Some(adhoc::canceled(node, &session_id)));
            return Ok(());
        }
        let connected = match self.session.as_deref() {
            Some(session) => session.connected_servers().await,
            None => Vec::new(),
        };
        let values = match &request.form {
            Some(form) => Some(submitted_values(form)?),
            None => None,
        };
        // An admin acting for this user names them first (the router checked
        // who may): the servers are chosen in a second step, which names
        // them again.
        let named = values.as_ref().and_then(|v| v.get(USER_FIELD)).cloned();
        let values = match values {
            Some(values) if named.is_none() || values.contains_key("servers") => values,
            _ => {
                let reply = if connected.is_empty() {
                    let note = nothing_to_close(named.is_some().then_some(&self.jid));
                    adhoc::completed(node, &session_id, &note)
                } else {
                    let form = disconnect_form(&connected, named.as_deref());
                    adhoc::executing(node, &session_id, form)
                };
                self.gw.reply_result(iq, Some(reply));
                return Ok(());
            }
        };
        let message = values
            .get("quit-message")
            .map(|m| m.trim())
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_MESSAGE)
            .to_owned();
        let chosen: Vec<RemoteAddress> = values
            .get("servers")
            .map(String::as_str)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(RemoteAddress::from)
            .collect();
        let mut closed = Vec::new();
        for server in chosen {
            if !connected.contains(&server) {
                continue;
            }
            self.disconnect_server(&server, &message).await;
            closed.push(server.to_string());
        }
        let note = if closed.is_empty() {
            "No connection was closed.".to_owned()
        } else {
            format!("Disconnected from {}.", closed.join(", "))
        };
        self.gw
            .reply_result(iq, Some(adhoc::completed(node, &session_id, &note)));
        Ok(())
    }

    /// An available (`available`) or unavailable presence from the user's
    /// resource `from` to a server's JID, as biboumi's force-connect: the
    /// connection opens, and stays open with no room joined while any of
    /// the user's resources holds it. A roster item with a subscription
    /// both ways does this at each login, as the user's server sends it
    /// their presence.
    pub(super) async fn on_server_presence(
        &mut self,
        server: &RemoteAddress,
        from: &FullJid,
        available: bool,
    ) {
        self.server_holds
            .retain(|(held, holder)| !(held == server && holder == from));
        if available {
            self.server_holds.push((server.clone(), from.clone()));
        } else if self.server_holds.iter().any(|(held, _)| held == server) {
            return;
        }
        let Some(session) = self.session.as_deref() else {
            return;
        };
        match session.hold_connection(server, available).await {
            Ok(()) => info!(%server, held = available, "connection held by presence"),
            Err(e) => warn!(%server, error = %e, "the connection could not be held"),
        }
    }

    /// Close the connection to `server`, and leave the rooms it carried.
    async fn disconnect_server(&mut self, server: &RemoteAddress, message: &str) {
        self.server_holds.retain(|(held, _)| held != server);
        let Some(session) = self.session.as_deref() else {
            return;
        };
        if let Err(e) = session.disconnect_server(server, message).await {
            warn!(%server, error = %e, "the connection could not be closed");
            return;
        }
        info!(%server, "the user closed their connection");
        let status = format!("Disconnected from {server}");
        let carried: Vec<RemoteAddress> = self
            .rooms
            .addresses()
            .into_iter()
            .filter(|room| self.gw.network.server_of(room).as_ref() == Some(server))
            .collect();
        for room in carried {
            if let Some(state) = self.rooms.get(&room) {
                send_self_gone(&self.gw, state, &[], Some(&status));
            }
            self.forget_room(&room).await;
        }
    }
}

/// What a user with no connection to close is told; `named`, the user an
/// admin asked for.
pub(crate) fn nothing_to_close(named: Option<&BareJid>) -> String {
    match named {
        Some(user) => format!("{user} is connected to no server."),
        None => "You are connected to no server.".to_owned(),
    }
}

/// The form: which of the `connected` servers to leave, and the message;
/// `user`, the JID an admin named, is kept in it for its submission.
fn disconnect_form(connected: &[RemoteAddress], user: Option<&str>) -> Element {
    let mut form = form(
        Some(FORM_TYPE),
        "Disconnect from servers",
        "You leave every room on the servers chosen; a later join connects again.",
    );
    if let Some(user) = user {
        form = form.append(hidden_field(USER_FIELD, user));
    }
    form.append(list_multi(
        "servers",
        "Servers to disconnect from",
        connected.iter().map(RemoteAddress::to_string),
    ))
    .append(
        element("field", NS_DATA)
            .with("var", "quit-message")
            .with("type", "text-single")
            .with("label", "Quit message")
            .append(element("value", NS_DATA).append(DEFAULT_MESSAGE.to_owned())),
    )
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_offers_the_connected_servers() {
        let form = String::from(&disconnect_form(&[RemoteAddress::new("irc.example")], None));
        assert!(form.contains("<value>irc.example</value>"), "{form}");
        assert!(form.contains("var='quit-message'"), "{form}");
        assert!(!form.contains("var='jid'"), "{form}");
        let named = String::from(&disconnect_form(
            &[RemoteAddress::new("irc.example")],
            Some("bob@localhost"),
        ));
        assert!(
            named.contains("var='jid'") && named.contains("<value>bob@localhost</value>"),
            "{named}"
        );
        assert!(is_disconnect_node("disconnect-from-irc-servers"));
        assert!(is_disconnect_node(DISCONNECT_NODE));
        assert!(!is_disconnect_node("disconnect-user"));
    }
}
