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
    /// Every room setting of one account: (room, settings JSON).
    pub async fn room_settings(
        &self,
        gateway: &str,
        account: &str,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT room, settings FROM room_settings WHERE gateway = $1 AND account = $2",
        )
        .bind(gateway)
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((text(row, "room")?, text(row, "settings")?)))
            .collect()
    }

    pub async fn save_room_settings(
        &self,
        gateway: &str,
        account: &str,
        room: &str,
        settings: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO room_settings (gateway, account, room, settings, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (gateway, account, room) DO UPDATE \
             SET settings = excluded.settings, updated_at = excluded.updated_at",
        )
        .bind(gateway)
        .bind(account)
        .bind(room)
        .bind(settings)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
