use estuary_bridge::Credentials;
use sqlx::Row;

use super::{now_ms, text, Result, Store, StoreError};

/// A user registered with one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub gateway: String,
    /// The user's bare JID.
    pub jid: String,
    pub credentials: Credentials,
}

impl Store {
    /// Create or replace a registration.
    pub async fn save_account(&self, account: &Account) -> Result<()> {
        let credentials = serde_json::to_string(&account.credentials.0)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO accounts (gateway, jid, credentials, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (gateway, jid) DO UPDATE SET credentials = excluded.credentials",
        )
        .bind(&account.gateway)
        .bind(&account.jid)
        .bind(credentials)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn account(&self, gateway: &str, jid: &str) -> Result<Option<Account>> {
        let row = sqlx::query(
            "SELECT gateway, jid, credentials FROM accounts WHERE gateway = $1 AND jid = $2",
        )
        .bind(gateway)
        .bind(jid)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| account_from_row(&row)).transpose()
    }

    pub async fn accounts(&self, gateway: &str) -> Result<Vec<Account>> {
        let rows = sqlx::query(
            "SELECT gateway, jid, credentials FROM accounts WHERE gateway = $1 ORDER BY jid",
        )
        .bind(gateway)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// Remove a registration and everything kept for it; returns whether it existed.
    pub async fn delete_account(&self, gateway: &str, jid: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        for statement in [
            "DELETE FROM message_map WHERE gateway = $1 AND account = $2",
            "DELETE FROM rooms WHERE gateway = $1 AND account = $2",
            "DELETE FROM address_settings WHERE gateway = $1 AND account = $2",
            "DELETE FROM outbox WHERE gateway = $1 AND account = $2",
            "DELETE FROM gateway_subscribers WHERE gateway = $1 AND account = $2",
        ] {
            sqlx::query(statement)
                .bind(gateway)
                .bind(jid)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM accounts WHERE gateway = $1 AND jid = $2")
            .bind(gateway)
            .bind(jid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

fn account_from_row(row: &sqlx::any::AnyRow) -> Result<Account> {
    let credentials: String = row.try_get("credentials")?;
    let credentials = serde_json::from_str(&credentials)
        .map_err(|e| StoreError::Corrupt(format!("credentials: {e}")))?;
    Ok(Account {
        gateway: text(row, "gateway")?,
        jid: text(row, "jid")?,
        credentials: Credentials(credentials),
    })
}
