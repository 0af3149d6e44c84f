//! The room archive: every message shown in a room, for history on join and
//! for MAM. Rows are ordered by their `id`, which is also the paging order.

use sqlx::any::AnyRow;
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

/// An archived message with its row id, the archive's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRow {
    pub id: i64,
    pub message: ArchivedMessage,
}

/// Which part of one room's archive a query covers. Times are inclusive,
/// row ids exclusive (RSM's after and before); `None` leaves a side open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveRange {
    pub gateway: String,
    pub room: String,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub nick: Option<String>,
    pub after_id: Option<i64>,
    pub before_id: Option<i64>,
}

/// The columns of an [`ArchivedRow`]. Macros rather than constants, so that
/// statements are built with `concat!` and stay literal SQL.
macro_rules! columns {
    () => {
        "id, gateway, room, stanza_id, remote_id, nick, sender, body, ts_ms"
    };
}

/// The conditions of an [`ArchiveRange`], bound by [`bind_range`]. Open sides
/// are sentinels rather than `$n IS NULL` tests, so that one statement with
/// typed parameters serves both databases and can use the (gateway, room, id)
/// index.
macro_rules! range {
    () => {
        "gateway = $1 AND room = $2 AND ts_ms >= $3 AND ts_ms <= $4 \
         AND id > $5 AND id < $6 AND ($7 = '' OR nick = $7)"
    };
}

impl Store {
    /// Append messages in one transaction. Messages already archived (same
    /// stanza-id, or same remote id in the same room) are skipped.
    pub async fn archive(&self, messages: &[ArchivedMessage]) -> Result<()> {
        self.write_batch(messages, &[]).await
    }

    /// Insert archive rows within `tx`, many per statement.
    pub(super) async fn insert_archived(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        messages: &[ArchivedMessage],
    ) -> Result<()> {
        for chunk in super::statement_chunks(messages) {
            let sql = self.insert_skipping_duplicates(
                "archive (gateway, room, stanza_id, remote_id, nick, sender, body, ts_ms)",
                8,
                chunk.len(),
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for m in chunk {
                query = query
                    .bind(&m.gateway)
                    .bind(&m.room)
                    .bind(&m.stanza_id)
                    .bind(m.remote_id.as_deref())
                    .bind(&m.nick)
                    .bind(m.sender.as_deref())
                    .bind(&m.body)
                    .bind(m.ts_ms);
            }
            query.execute(&mut **tx).await?;
        }
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
        let range = ArchiveRange {
            gateway: gateway.to_owned(),
            room: room.to_owned(),
            start_ms: Some(since_ms),
            ..ArchiveRange::default()
        };
        let mut rows = self.archive_range(&range, limit, true).await?;
        rows.reverse();
        Ok(rows.into_iter().map(|r| r.message).collect())
    }

    /// The row id of a message in a room's archive, by its stanza-id.
    pub async fn archive_position(
        &self,
        gateway: &str,
        room: &str,
        stanza_id: &str,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT id FROM archive WHERE gateway = $1 AND room = $2 AND stanza_id = $3",
        )
        .bind(gateway)
        .bind(room)
        .bind(stanza_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("id")?),
            None => None,
        })
    }

    /// Up to `limit` messages of a range: the oldest ones, or the newest ones
    /// when `newest_first` (then in that order).
    pub async fn archive_range(
        &self,
        range: &ArchiveRange,
        limit: i64,
        newest_first: bool,
    ) -> Result<Vec<ArchivedRow>> {
        let sql = if newest_first {
            concat!(
                "SELECT ",
                columns!(),
                " FROM archive WHERE ",
                range!(),
                " ORDER BY id DESC LIMIT $8"
            )
        } else {
            concat!(
                "SELECT ",
                columns!(),
                " FROM archive WHERE ",
                range!(),
                " ORDER BY id ASC LIMIT $8"
            )
        };
        let rows = bind_range(sqlx::query(sql), range)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(archived_row).collect()
    }

    /// How many messages a range holds.
    pub async fn archive_count(&self, range: &ArchiveRange) -> Result<i64> {
        let sql = concat!("SELECT COUNT(*) AS n FROM archive WHERE ", range!());
        let row = bind_range(sqlx::query(sql), range)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind_range<'q>(query: Query<'q>, range: &'q ArchiveRange) -> Query<'q> {
    query
        .bind(range.gateway.as_str())
        .bind(range.room.as_str())
        .bind(range.start_ms.unwrap_or(i64::MIN))
        .bind(range.end_ms.unwrap_or(i64::MAX))
        .bind(range.after_id.unwrap_or(i64::MIN))
        .bind(range.before_id.unwrap_or(i64::MAX))
        .bind(range.nick.as_deref().unwrap_or(""))
}

fn archived_row(row: &AnyRow) -> Result<ArchivedRow> {
    Ok(ArchivedRow {
        id: row.try_get("id")?,
        message: ArchivedMessage {
            gateway: text(row, "gateway")?,
            room: text(row, "room")?,
            stanza_id: text(row, "stanza_id")?,
            remote_id: opt_text(row, "remote_id")?,
            nick: text(row, "nick")?,
            sender: opt_text(row, "sender")?,
            body: text(row, "body")?,
            ts_ms: row.try_get("ts_ms")?,
        },
    })
}
