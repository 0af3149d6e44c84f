//! The room archive: every message shown in a room, for history on join and
//! for MAM. Rows are ordered by their `id`, which is also the paging order.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{lock, opt_text, text, Result, Store, StoreError};

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

/// One room's archive being imported: rows appended in order, kept only
/// once committed.
pub struct RoomArchiveImport<'s> {
    store: &'s Store,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    key: i64,
}

impl RoomArchiveImport<'_> {
    /// Append `messages`, all of this import's room, after those before.
    /// Messages already archived (same stanza-id) are skipped.
    pub async fn append(&mut self, messages: &[ArchivedMessage]) -> Result<()> {
        let keys = vec![self.key; messages.len()];
        self.store
            .insert_archived(&mut self.tx, messages, &keys)
            .await
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
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

/// The columns of an [`ArchivedRow`] besides its room. Macros rather than
/// constants, so that statements are built with `concat!` and stay literal
/// SQL.
macro_rules! columns {
    () => {
        "id, stanza_id, remote_id, nick, sender, body, ts_ms"
    };
}

/// The row of `archive_rooms` for gateway `$1` and room `$2`: NULL, which
/// matches no row, for a room never archived.
macro_rules! room_key {
    () => {
        "(SELECT id FROM archive_rooms WHERE gateway = $1 AND room = $2)"
    };
}

/// The conditions of an [`ArchiveRange`], bound by [`bind_range`]. Open sides
/// are sentinels rather than `$n IS NULL` tests, so that one statement with
/// typed parameters serves both databases and can use the (room_id, id)
/// index.
macro_rules! range {
    () => {
        concat!(range_any_nick!(), " AND ($7 = '' OR nick = $7)")
    };
}

/// [`range!`] without its nick condition, for ranges with no nick: every
/// other column it tests is in the (room_id, id) and (room_id, ts_ms)
/// indexes, so a count needs no table rows (a third of the time).
macro_rules! range_any_nick {
    () => {
        concat!(
            "room_id = ",
            room_key!(),
            " AND ts_ms >= $3 AND ts_ms <= $4 AND id > $5 AND id < $6"
        )
    };
}

/// The keys of the rooms archived so far, by gateway and room: a room's key
/// never changes once made, so it is looked up once per process.
#[derive(Debug, Default)]
pub(super) struct ArchiveRoomKeys(HashMap<String, HashMap<String, i64>>);

impl ArchiveRoomKeys {
    fn get(&self, gateway: &str, room: &str) -> Option<i64> {
        self.0.get(gateway)?.get(room).copied()
    }
}

impl Store {
    /// Append messages in one transaction. Messages already archived (same
    /// stanza-id, or same remote id in the same room) are skipped.
    pub async fn archive(&self, messages: &[ArchivedMessage]) -> Result<()> {
        self.write_batch(messages, &[]).await
    }

    /// The room key of each message, in order, making keys for rooms never
    /// archived before. Called before the batch's transaction: a key is
    /// remembered only once it is committed, and a key made for a batch that
    /// then fails is merely unused.
    pub(super) async fn archive_room_keys(&self, messages: &[ArchivedMessage]) -> Result<Vec<i64>> {
        let mut missing: Vec<(&str, &str)> = {
            let known = lock(&self.archive_rooms);
            messages
                .iter()
                .filter(|m| known.get(&m.gateway, &m.room).is_none())
                .map(|m| (m.gateway.as_str(), m.room.as_str()))
                .collect()
        };
        missing.sort_unstable();
        missing.dedup();
        for (gateway, room) in missing {
            let key = self.make_archive_room(gateway, room).await?;
            lock(&self.archive_rooms)
                .0
                .entry(gateway.to_owned())
                .or_default()
                .insert(room.to_owned(), key);
        }
        let known = lock(&self.archive_rooms);
        messages
            .iter()
            .map(|m| {
                known.get(&m.gateway, &m.room).ok_or_else(|| {
                    StoreError::Corrupt(format!("no archive key for room '{}'", m.room))
                })
            })
            .collect()
    }

    /// Begin writing one room's archive whole, in one transaction, for an
    /// import: a room is then imported whole or not at all, and an import
    /// that failed can be run again.
    pub async fn import_room_archive(
        &self,
        gateway: &str,
        room: &str,
    ) -> Result<RoomArchiveImport<'_>> {
        let probe = ArchivedMessage {
            gateway: gateway.to_owned(),
            room: room.to_owned(),
            stanza_id: String::new(),
            remote_id: None,
            nick: String::new(),
            sender: None,
            body: String::new(),
            ts_ms: 0,
        };
        // The room's key is made outside the transaction, as for the
        // batched writer; an unused key costs nothing.
        let key = self.archive_room_keys(std::slice::from_ref(&probe)).await?[0];
        let tx = self.pool.begin().await?;
        Ok(RoomArchiveImport {
            store: self,
            tx,
            key,
        })
    }

    /// The key of a room's archive, made if it has none yet (by this process
    /// or, on PostgreSQL, another one at the same time).
    async fn make_archive_room(&self, gateway: &str, room: &str) -> Result<i64> {
        sqlx::query(
            "INSERT INTO archive_rooms (gateway, room) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(gateway)
        .bind(room)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(concat!("SELECT ", room_key!(), " AS id"))
            .bind(gateway)
            .bind(room)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("id")?)
    }

    /// Insert archive rows within `tx`, many per statement; `room_keys` are
    /// the messages' room keys, in order.
    pub(super) async fn insert_archived(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        messages: &[ArchivedMessage],
        room_keys: &[i64],
    ) -> Result<()> {
        let mut keys = room_keys.iter();
        for chunk in super::statement_chunks(messages) {
            let sql = self.insert_skipping_duplicates(
                "archive (room_id, stanza_id, remote_id, nick, sender, body, ts_ms)",
                7,
                chunk.len(),
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (m, key) in chunk.iter().zip(keys.by_ref()) {
                query = query
                    .bind(*key)
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

    /// The stanza-id of an archived room message, by its remote id.
    pub async fn archived_stanza_id(
        &self,
        gateway: &str,
        room: &str,
        remote_id: &str,
    ) -> Result<Option<String>> {
        let sql = concat!(
            "SELECT stanza_id AS found FROM archive WHERE room_id = ",
            room_key!(),
            " AND remote_id = $3"
        );
        self.archived_id(sql, gateway, room, remote_id).await
    }

    /// The remote id of an archived room message, by its stanza-id.
    pub async fn archived_remote_id(
        &self,
        gateway: &str,
        room: &str,
        stanza_id: &str,
    ) -> Result<Option<String>> {
        let sql = concat!(
            "SELECT remote_id AS found FROM archive WHERE room_id = ",
            room_key!(),
            " AND stanza_id = $3"
        );
        self.archived_id(sql, gateway, room, stanza_id).await
    }

    /// One id of a room's archived message, by another (`sql`, whose
    /// columns are both indexed with the room).
    async fn archived_id(
        &self,
        sql: &'static str,
        gateway: &str,
        room: &str,
        value: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(sql)
            .bind(gateway)
            .bind(room)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(row.try_get::<Option<String>, _>("found")?),
            None => Ok(None),
        }
    }

    /// The row id of a message in a room's archive, by its stanza-id.
    pub async fn archive_position(
        &self,
        gateway: &str,
        room: &str,
        stanza_id: &str,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(concat!(
            "SELECT id FROM archive WHERE room_id = ",
            room_key!(),
            " AND stanza_id = $3"
        ))
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
        match self.narrowed(range).await? {
            Some(range) => self.rows_in(&range, limit, newest_first).await,
            None => Ok(Vec::new()),
        }
    }

    /// How many messages a range holds.
    pub async fn archive_count(&self, range: &ArchiveRange) -> Result<i64> {
        match self.narrowed(range).await? {
            Some(range) => self.count_in(&range).await,
            None => Ok(0),
        }
    }

    /// One page of a MAM query: up to `limit` messages of `filters` after
    /// row `after_id` and before row `before_id` (as [`Store::archive_range`]
    /// orders them), and how many messages `filters` holds in all. The time
    /// bounds are narrowed once for both, where asking for the page and the
    /// count apart would narrow them twice.
    pub async fn archive_page(
        &self,
        filters: &ArchiveRange,
        after_id: Option<i64>,
        before_id: Option<i64>,
        limit: i64,
        newest_first: bool,
    ) -> Result<(Vec<ArchivedRow>, i64)> {
        let Some(filters) = self.narrowed(filters).await? else {
            return Ok((Vec::new(), 0));
        };
        let page = ArchiveRange {
            after_id: tighter_bound(filters.after_id, after_id, i64::max),
            before_id: tighter_bound(filters.before_id, before_id, i64::min),
            ..filters.clone()
        };
        let rows = self.rows_in(&page, limit, newest_first).await?;
        Ok((rows, self.count_in(&filters).await?))
    }

    /// [`Store::archive_range`] of a range already narrowed.
    async fn rows_in(
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
        rows.iter().map(|row| archived_row(row, range)).collect()
    }

    /// [`Store::archive_count`] of a range already narrowed.
    async fn count_in(&self, range: &ArchiveRange) -> Result<i64> {
        let row = match range.nick {
            Some(_) => {
                let sql = concat!("SELECT COUNT(*) AS n FROM archive WHERE ", range!());
                bind_range(sqlx::query(sql), range)
            }
            None => {
                let sql = concat!(
                    "SELECT COUNT(*) AS n FROM archive WHERE ",
                    range_any_nick!()
                );
                bind_times_and_ids(sqlx::query(sql), range)
            }
        }
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// `range` with row-id bounds that its time bounds imply, when they
    /// leave few messages; `None` when they leave none.
    ///
    /// Pages and counts walk the (room, id) index, checking times on the
    /// way: a MAM catch-up ("since this morning") in a room of a million
    /// messages walked a million entries to find the last hundred (130 ms,
    /// twice per page). Row order is not time order (a delayed message
    /// gets a new row with an old time), so the bound is the least id of
    /// all the messages after the start, found through the (room, time)
    /// index, and is taken only when they are few; otherwise the walk from
    /// the other end is the short one, and the range is left as it is.
    async fn narrowed(&self, range: &ArchiveRange) -> Result<Option<ArchiveRange>> {
        let mut range = range.clone();
        let sides = [
            range.start_ms.map(TimeSide::From),
            range.end_ms.map(TimeSide::Until),
        ];
        for side in sides.into_iter().flatten() {
            let (count, bound) = self.few_ids(side, &range).await?;
            if count > FEW_ROWS {
                continue;
            }
            let Some(bound) = bound else {
                return Ok(None);
            };
            match side {
                TimeSide::From(_) => {
                    range.after_id = tighter_bound(range.after_id, Some(bound - 1), i64::max);
                }
                TimeSide::Until(_) => {
                    range.before_id = tighter_bound(range.before_id, Some(bound + 1), i64::min);
                }
            }
        }
        Ok(Some(range))
    }

    /// How many of a room's messages are on `side` of a time, counted up to
    /// one past [`FEW_ROWS`], and the least (from a time) or greatest
    /// (until a time) row id among them.
    async fn few_ids(&self, side: TimeSide, range: &ArchiveRange) -> Result<(i64, Option<i64>)> {
        // The two sides differ only in their aggregate and comparison.
        macro_rules! beyond {
            ($bound:literal, $cmp:literal) => {
                concat!(
                    "SELECT COUNT(*) AS n, ",
                    $bound,
                    "(id) AS bound FROM (SELECT id FROM archive WHERE room_id = ",
                    room_key!(),
                    " AND ts_ms ",
                    $cmp,
                    " $3 LIMIT $4) AS beyond"
                )
            };
        }
        let (sql, time) = match side {
            TimeSide::From(start) => (beyond!("MIN", ">="), start),
            TimeSide::Until(end) => (beyond!("MAX", "<="), end),
        };
        let row = sqlx::query(sql)
            .bind(range.gateway.as_str())
            .bind(range.room.as_str())
            .bind(time)
            .bind(FEW_ROWS + 1)
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("n")?, row.try_get("bound")?))
    }
}

/// Two optional row-id bounds as one: the tighter of the two (`tighter` is
/// `i64::max` for lower bounds, `i64::min` for upper ones), or the one given.
fn tighter_bound(a: Option<i64>, b: Option<i64>, tighter: fn(i64, i64) -> i64) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(tighter(a, b)),
        (a, b) => a.or(b),
    }
}

/// Up to how many messages on the far side of a time bound are looked at to
/// turn it into a row-id bound (see [`Store::narrowed`]).
const FEW_ROWS: i64 = 1024;

#[derive(Debug, Clone, Copy)]
enum TimeSide {
    /// Messages at or after a time.
    From(i64),
    /// Messages at or before a time.
    Until(i64),
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind_range<'q>(query: Query<'q>, range: &'q ArchiveRange) -> Query<'q> {
    bind_times_and_ids(query, range).bind(range.nick.as_deref().unwrap_or(""))
}

/// The parameters of [`range_any_nick!`].
fn bind_times_and_ids<'q>(query: Query<'q>, range: &'q ArchiveRange) -> Query<'q> {
    query
        .bind(range.gateway.as_str())
        .bind(range.room.as_str())
        .bind(range.start_ms.unwrap_or(i64::MIN))
        .bind(range.end_ms.unwrap_or(i64::MAX))
        .bind(range.after_id.unwrap_or(i64::MIN))
        .bind(range.before_id.unwrap_or(i64::MAX))
}

/// A row of the archive of `range`'s room.
fn archived_row(row: &AnyRow, range: &ArchiveRange) -> Result<ArchivedRow> {
    Ok(ArchivedRow {
        id: row.try_get("id")?,
        message: ArchivedMessage {
            gateway: range.gateway.clone(),
            room: range.room.clone(),
            stanza_id: text(row, "stanza_id")?,
            remote_id: opt_text(row, "remote_id")?,
            nick: text(row, "nick")?,
            sender: opt_text(row, "sender")?,
            body: text(row, "body")?,
            ts_ms: row.try_get("ts_ms")?,
        },
    })
}
