//! Messages the network could not take (it was unreachable) wait in the
//! store's outbox and are sent, in order, once the session is back.

use estuary_bridge::{MessageKind, OutgoingMessage, RemoteAddress};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::store::{MessageRecord, Sender};

use super::UserSession;

pub const KIND_REMOTE: &str = "remote";

/// One queued send, as stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueuedSend {
    pub to: String,
    pub body: String,
    pub action: bool,
    pub reply_to: Option<String>,
    /// Linked files: URL and name. Absent in entries queued before there were any.
    #[serde(default)]
    pub attachments: Vec<(String, Option<String>)>,
    pub xmpp_id: Option<String>,
    pub origin_id: Option<String>,
    pub stanza_id: String,
}

impl UserSession {
    pub(super) async fn queue_send(&self, item: &QueuedSend) -> bool {
        let payload = match serde_json::to_string(item) {
            Ok(p) => p,
            Err(_) => return false,
        };
        match self
            .gw
            .store
            .outbox_push(&self.gw.domain, &self.account.jid, KIND_REMOTE, &payload)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                warn!("cannot queue a message: {e}");
                false
            }
        }
    }

    /// Send what is queued, oldest first, stopping at the first transient failure.
    pub(super) async fn flush_outbox(&mut self) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        let items = match self
            .gw
            .store
            .outbox_pending(&self.gw.domain, &self.account.jid)
            .await
        {
            Ok(items) => items,
            Err(e) => {
                warn!("cannot read the outbox: {e}");
                return;
            }
        };
        if !items.is_empty() {
            info!(count = items.len(), "sending queued messages");
        }
        for item in items.into_iter().filter(|i| i.kind == KIND_REMOTE) {
            let Ok(queued) = serde_json::from_str::<QueuedSend>(&item.payload) else {
                warn!(id = item.id, "dropping an unreadable outbox entry");
                let _ = self.gw.store.outbox_done(item.id).await;
                continue;
            };
            let to = RemoteAddress::new(queued.to.clone());
            let message = OutgoingMessage {
                body: queued.body.clone(),
                kind: if queued.action {
                    MessageKind::Action
                } else {
                    MessageKind::Normal
                },
                reply_to: queued.reply_to.clone(),
                attachments: queued
                    .attachments
                    .iter()
                    .map(|(url, name)| estuary_bridge::Attachment {
                        url: url.clone(),
                        name: name.clone(),
                    })
                    .collect(),
            };
            match session.send_message(&to, message).await {
                Ok(remote_id) => {
                    let record = MessageRecord {
                        gateway: self.gw.domain.clone(),
                        account: self.account.jid.clone(),
                        chat: queued.to.clone(),
                        remote_id,
                        sender: Sender::Account,
                        xmpp_id: queued.xmpp_id.clone(),
                        stanza_id: queued.stanza_id.clone(),
                        origin_id: queued.origin_id.clone(),
                    };
                    let in_room = self.rooms.get(&to).is_some();
                    self.awaiting_echo.keep(&self.gw, record, in_room);
                    let _ = self.gw.store.outbox_done(item.id).await;
                }
                Err(e) if e.is_transient() => {
                    let _ = self.gw.store.outbox_attempted(item.id).await;
                    info!(error = %e, "network still unavailable; keeping the queue");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "a queued message was refused by the network");
                    let _ = self.gw.store.outbox_done(item.id).await;
                }
            }
        }
    }
}
