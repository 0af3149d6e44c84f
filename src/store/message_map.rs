use super::{now_ms, opt_text, text, Result, Store};

/// Who wrote a mapped message, relative to the account it is stored for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// The account's own user, writing from XMPP.
    Account,
    /// Someone on the remote side (their remote address).
    Remote(String),
}

impl Sender {
    pub(crate) fn column(&self) -> &str {
        match self {
            Sender::Account => "",
            Sender::Remote(who) => who,
        }
    }

    fn from_column(value: String) -> Sender {
        if value.is_empty() {
            Sender::Account
        } else {
            Sender::Remote(value)
        }
    }
}

/// One message known on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub gateway: String,
    pub account: String,
    /// The remote room or contact the message belongs to.
    pub chat: String,
    pub remote_id: String,
    pub sender: Sender,
    /// The `id` attribute of the XMPP message (client-chosen for the user's own).
    pub xmpp_id: Option<String>,
    /// The XEP-0359 stanza-id the gateway assigned; always set.
    pub stanza_id: String,
    /// The XEP-0359 origin-id the client sent, if any.
    pub origin_id: Option<String>,
}

/// The mapped columns, as a macro because sqlx wants `'static` SQL text.
macro_rules! columns {
    () => {
        "gateway, account, chat, remote_id, sender, xmpp_id, stanza_id, origin_id"
    };
}

impl Store {
    /// Record a mapping; recording the same remote message twice keeps the first.
    pub async fn save_message(&self, record: &MessageRecord) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO message_map (",
            columns!(),
            ", created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (gateway, account, chat, remote_id) DO NOTHING"
        ))
        .bind(&record.gateway)
        .bind(&record.account)
        .bind(&record.chat)
        .bind(&record.remote_id)
        .bind(record.sender.column())
        .bind(record.xmpp_id.as_deref())
        .bind(&record.stanza_id)
        .bind(record.origin_id.as_deref())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record several mappings in one transaction.
    pub async fn save_messages(&self, records: &[MessageRecord]) -> Result<()> {
        self.write_batch(&[], records).await
    }

    /// Insert id-map rows within `tx`, many per statement.
    pub(super) async fn insert_records(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        records: &[MessageRecord],
    ) -> Result<()> {
        let now = now_ms();
        for chunk in super::statement_chunks(records) {
            let sql = self.insert_skipping_duplicates(
                concat!("message_map (", columns!(), ", created_at)"),
                9,
                chunk.len(),
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for record in chunk {
                query = query
                    .bind(&record.gateway)
                    .bind(&record.account)
                    .bind(&record.chat)
                    .bind(&record.remote_id)
                    .bind(record.sender.column())
                    .bind(record.xmpp_id.as_deref())
                    .bind(&record.stanza_id)
                    .bind(record.origin_id.as_deref())
                    .bind(now);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub async fn message_by_remote_id(
        &self,
        gateway: &str,
        account: &str,
        chat: &str,
        remote_id: &str,
    ) -> Result<Option<MessageRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM message_map \
             WHERE gateway = $1 AND account = $2 AND chat = $3 AND remote_id = $4"
        ))
        .bind(gateway)
        .bind(account)
        .bind(chat)
        .bind(remote_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| record_from_row(&r)).transpose()
    }

    /// Find a message by an ID an XMPP client used to refer to it (its id,
    /// origin-id or the gateway's stanza-id), written by `sender` only.
    ///
    /// Scoping by sender is what stops a client from correcting or retracting
    /// someone else's message by guessing or copying its ID.
    ///
    /// The newest match, looked up in each id's own index. Asked as one
    /// `OR`, SQLite walked every record of the chat instead: 54 ms in a chat
    /// of 200,000 records (`benches/archive_write.rs`), for every
    /// correction, reaction, reply and read marker. The union of three index
    /// lookups takes 0.1 ms.
    pub async fn message_by_xmpp_ref(
        &self,
        gateway: &str,
        account: &str,
        chat: &str,
        reference: &str,
        sender: &Sender,
    ) -> Result<Option<MessageRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM message_map WHERE id = (SELECT MAX(id) FROM (\
             SELECT id FROM message_map WHERE gateway = $1 AND account = $2 AND chat = $3 \
             AND stanza_id = $5 AND sender = $4 \
             UNION ALL SELECT id FROM message_map WHERE gateway = $1 AND account = $2 \
             AND chat = $3 AND origin_id = $5 AND sender = $4 \
             UNION ALL SELECT id FROM message_map WHERE gateway = $1 AND account = $2 \
             AND chat = $3 AND xmpp_id = $5 AND sender = $4) AS hits)"
        ))
        .bind(gateway)
        .bind(account)
        .bind(chat)
        .bind(sender.column())
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| record_from_row(&r)).transpose()
    }

    /// A message by the stanza-id the gateway gave it, whoever wrote it.
    pub async fn message_by_stanza_id(
        &self,
        gateway: &str,
        account: &str,
        chat: &str,
        stanza_id: &str,
    ) -> Result<Option<MessageRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM message_map \
             WHERE gateway = $1 AND account = $2 AND chat = $3 AND stanza_id = $4"
        ))
        .bind(gateway)
        .bind(account)
        .bind(chat)
        .bind(stanza_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| record_from_row(&r)).transpose()
    }
}

fn record_from_row(row: &sqlx::any::AnyRow) -> Result<MessageRecord> {
    Ok(MessageRecord {
        gateway: text(row, "gateway")?,
        account: text(row, "account")?,
        chat: text(row, "chat")?,
        remote_id: text(row, "remote_id")?,
        sender: Sender::from_column(text(row, "sender")?),
        xmpp_id: opt_text(row, "xmpp_id")?,
        stanza_id: text(row, "stanza_id")?,
        origin_id: opt_text(row, "origin_id")?,
    })
}
