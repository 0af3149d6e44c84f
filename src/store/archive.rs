use sqlx::Row;

use super::{opt_text, text, Result, Store};

/// One room message as kept for history and MAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    pub gateway: String,
    pub room: String,
    pub stanza_id: String,
    pub remote_id: Option<String>,
    pub nick: String,
    pub sender: Option<String>,
    pub body: String,
    pub ts_ms: i64,
}

impl Store {
    /// Append messages in one transaction: one commit per batch, not per message,
    /// so that archiving keeps up with a busy room.
    pub async fn archive(&self, messages: &[ArchivedMessage]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for m in messages {
            sqlx::query(
                "INSERT INTO archive (gateway, room, stanza_id, remote_id, nick, sender, body, ts_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (gateway, room, stanza_id) DO NOTHING",
            )
            .bind(&m.gateway)
            .bind(&m.room)
            .bind(&m.stanza_id)
            .bind(m.remote_id.as_deref())
            .bind(&m.nick)
            .bind(m.sender.as_deref())
            .bind(&m.body)
            .bind(m.ts_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` messages of a room at or after `since_ms`, oldest first.
    pub async fn history(
        &self,
        gateway: &str,
        room: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<ArchivedMessage>> {
        let rows = sqlx::query(
            "SELECT gateway, room, stanza_id, remote_id, nick, sender, body, ts_ms FROM archive \
             WHERE gateway = $1 AND room = $2 AND ts_ms >= $3 ORDER BY id DESC LIMIT $4",
        )
        .bind(gateway)
        .bind(room)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|row| {
                Ok(ArchivedMessage {
                    gateway: text(row, "gateway")?,
                    room: text(row, "room")?,
                    stanza_id: text(row, "stanza_id")?,
                    remote_id: opt_text(row, "remote_id")?,
                    nick: text(row, "nick")?,
                    sender: opt_text(row, "sender")?,
                    body: text(row, "body")?,
                    ts_ms: row.try_get("ts_ms")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }
}
