//! The user's own settings of a remote server: the `configure` ad-hoc
//! command on the server's JID (biboumi's), with the fields the network
//! declares. They are stored, handed to the network session at login and on
//! every change, and used by the connections opened afterwards.

use estuary_bridge::RemoteAddress;
use tracing::warn;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;

use crate::xmpp::adhoc::{self, FormStep};
use crate::xmpp::errors::Failure;
use crate::xmpp::forms::{registration_form, submitted_values, validate};

use super::room_settings::CONFIGURE_NODE;

/// The command on a server's JID that tells the user about their
/// connection (biboumi's `get-irc-connection-info`).
pub const CONNECTION_INFO_NODE: &str = "connection-info";
use super::UserSession;

const FORM_TYPE: &str = "urn:xmpp:estuary:server-settings:0";

impl UserSession {
    /// Hand every stored setting of servers and rooms by the network's
    /// fields to a session that just logged in.
    pub(super) async fn apply_network_settings(&self) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        for (server, values) in &self.server_settings {
            if let Err(e) = session.set_server_settings(server, values).await {
                warn!(%server, error = %e, "stored server settings were refused");
            }
        }
        for (room, values) in &self.room_network_settings {
            if let Err(e) = session.set_room_settings(room, values).await {
                warn!(%room, error = %e, "stored room settings were refused");
            }
        }
    }

    pub(super) async fn on_server_command(
        &mut self,
        iq: &Iq,
        server: &RemoteAddress,
        command: &Element,
    ) -> Result<(), Failure> {
        let request = adhoc::parse(command)?;
        // biboumi's name for it, too.
        if request.node == CONNECTION_INFO_NODE || request.node == "get-irc-connection-info" {
            let info = self
                .session()?
                .server_info(server)
                .await
                .map_err(Failure::from)?;
            self.gw.reply_result(iq, Some(request.completed(&info)));
            return Ok(());
        }
        let fields = self.gw.network.server_fields();
        if request.node != CONFIGURE_NODE || fields.is_empty() {
            return Err(Failure::item_not_found(format!(
                "no command '{}' here",
                request.node
            )));
        }
        let current = self
            .server_settings
            .get(server)
            .cloned()
            .unwrap_or_default();
        let form = match request.form_step(|| {
            registration_form(
                FORM_TYPE,
                &format!("Your settings for {server}"),
                "Used by your next connection to this server; leave a field empty for the \
                 gateway's default. Passwords are never shown again.",
                &fields,
                &current,
            )
        }) {
            FormStep::Reply(reply) => {
                self.gw.reply_result(iq, Some(reply));
                return Ok(());
            }
            FormStep::Submitted(form) => form,
        };
        let mut submitted = submitted_values(form)?;
        // A secret left empty keeps the stored one: forms never show it.
        for field in &fields {
            if field.kind == estuary_bridge::FieldKind::Secret
                && submitted.get(field.var).is_none_or(|v| v.is_empty())
            {
                if let Some(old) = current.get(field.var) {
                    submitted.insert(field.var.to_owned(), old.clone());
                }
            }
        }
        let values = validate(&fields, &submitted)?;
        let session = self.session()?;
        session
            .set_server_settings(server, &values)
            .await
            .map_err(Failure::from)?;
        self.save_settings(server.as_str(), &values).await?;
        self.server_settings.insert(server.clone(), values);
        self.gw.reply_result(
            iq,
            Some(
                request.completed(
                    "Settings saved; they apply to your next connection to this server.",
                ),
            ),
        );
        Ok(())
    }
}
