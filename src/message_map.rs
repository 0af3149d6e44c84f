//! The gateway's map between remote message ids and XMPP ids, written behind.
//!
//! Every message in either direction adds a record, so recording must not
//! cost a commit per message. Records go to the archiver's batched writer
//! (see [`crate::archive`]); until their transaction commits they are
//! looked up in memory, so a lookup right after a record (a network echoing
//! a message it was just sent) always finds it.

use crate::archive::Archiver;
use crate::store::{MessageRecord, Sender, Store, StoreError};

#[derive(Debug, Clone)]
pub struct MessageMap {
    domain: String,
    store: Store,
    writer: Archiver,
}

impl MessageMap {
    pub fn new(domain: &str, store: Store, writer: Archiver) -> MessageMap {
        MessageMap {
            domain: domain.to_owned(),
            store,
            writer,
        }
    }

    /// Record a mapping; recording the same remote message twice keeps the first.
    pub fn record(&self, record: MessageRecord) {
        self.writer.map(record);
    }

    pub async fn by_remote_id(
        &self,
        account: &str,
        chat: &str,
        remote_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        if let Some(found) = self
            .writer
            .find_unwritten(|r| r.remote_id == remote_id && self.scope(r, account, chat))
        {
            return Ok(Some(found));
        }
        self.store
            .message_by_remote_id(&self.domain, account, chat, remote_id)
            .await
    }

    /// A message by an id an XMPP client used for it (its id, origin-id or
    /// stanza-id), written by `sender` only, so that nobody can correct or
    /// retract someone else's message by naming its id.
    pub async fn by_xmpp_ref(
        &self,
        account: &str,
        chat: &str,
        reference: &str,
        sender: &Sender,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let newest_unwritten = self.writer.find_unwritten_newest(|r| {
            self.scope(r, account, chat)
                && &r.sender == sender
                && (r.stanza_id == reference
                    || r.origin_id.as_deref() == Some(reference)
                    || r.xmpp_id.as_deref() == Some(reference))
        });
        if let Some(found) = newest_unwritten {
            return Ok(Some(found));
        }
        self.store
            .message_by_xmpp_ref(&self.domain, account, chat, reference, sender)
            .await
    }

    /// A message by the stanza-id the gateway gave it, whoever wrote it.
    pub async fn by_stanza_id(
        &self,
        account: &str,
        chat: &str,
        stanza_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        if let Some(found) = self
            .writer
            .find_unwritten(|r| r.stanza_id == stanza_id && self.scope(r, account, chat))
        {
            return Ok(Some(found));
        }
        self.store
            .message_by_stanza_id(&self.domain, account, chat, stanza_id)
            .await
    }

    fn scope(&self, r: &MessageRecord, account: &str, chat: &str) -> bool {
        r.gateway == self.domain && r.account == account && r.chat == chat
    }
}
