//! Who keeps a gateway's own JID in their roster.

use super::{now_ms, text, Result, Store};

impl Store {
    /// `account` keeps `gateway`'s JID in their roster; true if newly so.
    pub async fn add_gateway_subscriber(&self, gateway: &str, account: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO gateway_subscribers (gateway, account, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (gateway, account) DO NOTHING",
        )
        .bind(gateway)
        .bind(account)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// `account` dropped `gateway`'s JID from their roster.
    pub async fn remove_gateway_subscriber(&self, gateway: &str, account: &str) -> Result<()> {
        sqlx::query("DELETE FROM gateway_subscribers WHERE gateway = $1 AND account = $2")
            .bind(gateway)
            .bind(account)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every account that keeps `gateway`'s JID in their roster.
    pub async fn gateway_subscribers(&self, gateway: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT account FROM gateway_subscribers WHERE gateway = $1 ORDER BY account",
        )
        .bind(gateway)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| text(row, "account")).collect()
    }
}
