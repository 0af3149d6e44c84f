use sqlx::Row;

use super::{now_ms, text, Result, Store};

/// Work accepted from one side and not yet acknowledged by the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub gateway: String,
    pub account: String,
    /// Which side it goes to: `remote` or `xmpp`.
    pub kind: String,
    /// What to send, serialised by whoever queued it.
    pub payload: String,
    pub attempts: i64,
}

impl Store {
    /// Queue an item; returns its ID, to be passed to [`Store::outbox_done`].
    pub async fn outbox_push(
        &self,
        gateway: &str,
        account: &str,
        kind: &str,
        payload: &str,
    ) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO outbox (gateway, account, kind, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(gateway)
        .bind(account)
        .bind(kind)
        .bind(payload)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("id")?)
    }

    /// Everything still queued for an account, oldest first.
    pub async fn outbox_pending(&self, gateway: &str, account: &str) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT id, gateway, account, kind, payload, attempts FROM outbox \
             WHERE gateway = $1 AND account = $2 ORDER BY id",
        )
        .bind(gateway)
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxItem {
                    id: row.try_get("id")?,
                    gateway: text(row, "gateway")?,
                    account: text(row, "account")?,
                    kind: text(row, "kind")?,
                    payload: text(row, "payload")?,
                    attempts: row.try_get::<i64, _>("attempts")?,
                })
            })
            .collect()
    }

    pub async fn outbox_attempted(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE outbox SET attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_done(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
