use sqlx::Row;

use super::{now_ms, text, Result, Store};

/// A room a user has joined, remembered so that it can be rejoined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    pub gateway: String,
    pub account: String,
    pub room: String,
    pub nick: String,
    /// Bridge- and room-specific settings, JSON text.
    pub settings: String,
}

impl Store {
    pub async fn save_room(&self, room: &RoomRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO rooms (gateway, account, room, nick, settings, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (gateway, account, room) DO UPDATE \
             SET nick = excluded.nick, settings = excluded.settings, updated_at = excluded.updated_at",
        )
        .bind(&room.gateway)
        .bind(&room.account)
        .bind(&room.room)
        .bind(&room.nick)
        .bind(&room.settings)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn rooms(&self, gateway: &str, account: &str) -> Result<Vec<RoomRecord>> {
        let rows = sqlx::query(
            "SELECT gateway, account, room, nick, settings FROM rooms \
             WHERE gateway = $1 AND account = $2 ORDER BY room",
        )
        .bind(gateway)
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoomRecord {
                    gateway: text(row, "gateway")?,
                    account: text(row, "account")?,
                    room: text(row, "room")?,
                    nick: text(row, "nick")?,
                    settings: row.try_get("settings")?,
                })
            })
            .collect()
    }

    pub async fn delete_room(&self, gateway: &str, account: &str, room: &str) -> Result<()> {
        sqlx::query("DELETE FROM rooms WHERE gateway = $1 AND account = $2 AND room = $3")
            .bind(gateway)
            .bind(account)
            .bind(room)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Every per-address setting of one account (rooms and servers):
    /// (address, settings JSON).
    pub async fn address_settings(
        &self,
        gateway: &str,
        account: &str,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT address, settings FROM address_settings WHERE gateway = $1 AND account = $2",
        )
        .bind(gateway)
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((text(row, "address")?, text(row, "settings")?)))
            .collect()
    }

    /// The accounts that were in any room of `gateway` when it stopped,
    /// registered or not.
    pub async fn accounts_with_rooms(&self, gateway: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT DISTINCT account FROM rooms WHERE gateway = $1 ORDER BY account")
                .bind(gateway)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| text(row, "account")).collect()
    }

    /// The accounts that keep any per-address setting on `gateway`,
    /// registered or not.
    pub async fn accounts_with_settings(&self, gateway: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT account FROM address_settings WHERE gateway = $1 ORDER BY account",
        )
        .bind(gateway)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| text(row, "account")).collect()
    }

    /// Drop what is kept for one address of one account.
    pub async fn forget_address_settings(
        &self,
        gateway: &str,
        account: &str,
        address: &str,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM address_settings WHERE gateway = $1 AND account = $2 AND address = $3",
        )
        .bind(gateway)
        .bind(account)
        .bind(address)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn save_address_settings(
        &self,
        gateway: &str,
        account: &str,
        address: &str,
        settings: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO address_settings (gateway, account, address, settings, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (gateway, account, address) DO UPDATE \
             SET settings = excluded.settings, updated_at = excluded.updated_at",
        )
        .bind(gateway)
        .bind(account)
        .bind(address)
        .bind(settings)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
