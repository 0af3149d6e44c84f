//! XEP-0050 ad-hoc commands: the wire format. xmpp-parsers has no types for
//! it, so these are small minidom builders and one parser.

use xmpp_parsers::minidom::Element;

use super::errors::Failure;
use super::xml::{element, Attrs, NS_COMMANDS, NS_DATA};

/// A command request as the client sent it.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub node: String,
    /// The client's, or a new one on the command's first step.
    pub session_id: String,
    /// `execute` (the default), `complete`, `next`, `prev` or `cancel`.
    pub action: String,
    pub form: Option<Element>,
}

/// Where a command of one form stands.
pub enum FormStep<'a> {
    /// Answer with this and stop: the command was cancelled, or its form
    /// is to be shown.
    Reply(Element),
    /// The form came back filled in.
    Submitted(&'a Element),
}

impl CommandRequest {
    /// The step of a command of one form: a cancel is answered, a first
    /// step shows the form `form` builds, and a submission is handed back.
    pub fn form_step(&self, form: impl FnOnce() -> Element) -> FormStep<'_> {
        if self.action == "cancel" {
            return FormStep::Reply(canceled(&self.node, &self.session_id));
        }
        match &self.form {
            Some(submitted) => FormStep::Submitted(submitted),
            None => FormStep::Reply(executing(&self.node, &self.session_id, form())),
        }
    }

    /// This command, finished with `note`.
    pub fn completed(&self, note: &str) -> Element {
        completed(&self.node, &self.session_id, note)
    }
}

pub fn parse(command: &Element) -> Result<CommandRequest, Failure> {
    let node = command
        .attr("node")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Failure::bad_request("the command has no node"))?;
    Ok(CommandRequest {
        node: node.to_owned(),
        session_id: command
            .attr("sessionid")
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned),
        action: command.attr("action").unwrap_or("execute").to_owned(),
        form: command.get_child("x", NS_DATA).cloned(),
    })
}

/// A command waiting for its form to be filled in.
pub fn executing(node: &str, session_id: &str, form: Element) -> Element {
    element("command", NS_COMMANDS)
        .with("node", node)
        .with("sessionid", session_id)
        .with("status", "executing")
        .append(
            element("actions", NS_COMMANDS)
                .with("execute", "complete")
                .append(element("complete", NS_COMMANDS)),
        )
        .append(form)
        .build()
}

/// A finished command with a note for the user.
pub fn completed(node: &str, session_id: &str, note: &str) -> Element {
    element("command", NS_COMMANDS)
        .with("node", node)
        .with("sessionid", session_id)
        .with("status", "completed")
        .append(
            element("note", NS_COMMANDS)
                .with("type", "info")
                .append(note.to_owned()),
        )
        .build()
}

pub fn canceled(node: &str, session_id: &str) -> Element {
    element("command", NS_COMMANDS)
        .with("node", node)
        .with("sessionid", session_id)
        .with("status", "canceled")
        .build()
}
