//! The persistent store: accounts, ID maps, rooms, the archive and the outbox.
//!
//! One code base serves SQLite (the embedded default) and PostgreSQL (for
//! several gateway processes against one database): sqlx's `Any` driver picks
//! the backend from the URL. Only portable column types are used through it
//! (integers, text), so times are milliseconds as `BIGINT` and JSON is text.

mod accounts;
mod archive;
mod message_map;
mod outbox;
mod rooms;
mod subscribers;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use thiserror::Error;

pub use accounts::Account;
pub use archive::{ArchiveRange, ArchivedMessage, ArchivedRow, RoomArchiveImport};
pub use message_map::{MessageRecord, Sender};
pub use outbox::OutboxItem;
pub use rooms::RoomRecord;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL '{0}': use sqlite:// or postgres://")]
    UnsupportedUrl(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    archive_rooms: Arc<Mutex<archive::ArchiveRoomKeys>>,
}

impl Store {
    /// Connect, create the SQLite file if needed, and apply the migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let options = AnyPoolOptions::new();
        let pool = match backend {
            Backend::Sqlite => {
                if let Some(dir) = sqlite_dir(url) {
                    std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
                }
                options
                    // SQLite serialises writers anyway; a few readers are enough.
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                 PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Backend::Postgres => options.max_connections(8).connect(url).await?,
        };
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            archive_rooms: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Archive rows and id-map records together, in one transaction: the
    /// batched writer's one commit per batch.
    pub async fn write_batch(
        &self,
        messages: &[ArchivedMessage],
        records: &[MessageRecord],
    ) -> Result<()> {
        let room_keys = self.archive_room_keys(messages).await?;
        let mut tx = self.pool.begin().await?;
        self.insert_records(&mut tx, records).await?;
        self.insert_archived(&mut tx, messages, &room_keys).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `INSERT` text for `rows` rows of `columns` values each into `target`
    /// (`table (column, …)`), skipping any row that would duplicate a unique
    /// key: the batched writer's one kind of insert.
    ///
    /// SQLite gets `INSERT OR IGNORE`. `ON CONFLICT DO NOTHING` skips the
    /// same rows, but still lets a NOT NULL constraint abort a multi-row
    /// statement halfway, so SQLite writes a statement journal for every
    /// insert; `OR IGNORE` cannot abort and needs none (measured on the
    /// archive: 20 µs per row down to 12). Callers bind no NULL to a NOT NULL
    /// column, and each table has one unique key besides its row id, so both
    /// forms skip the same rows. PostgreSQL gets `ON CONFLICT DO NOTHING`.
    ///
    /// SQLite gets anonymous `?` parameters, PostgreSQL `$1…`. sqlx asks
    /// SQLite for each parameter's name, and SQLite finds a name by a linear
    /// scan, so numbered parameters made binding quadratic in the row count
    /// (profiled: a tenth of the gateway's CPU at 100 rows per statement);
    /// anonymous ones have no name to look up.
    pub(crate) fn insert_skipping_duplicates(
        &self,
        target: &str,
        columns: usize,
        rows: usize,
    ) -> String {
        let (head, tail) = match self.backend {
            Backend::Sqlite => ("INSERT OR IGNORE INTO ", ""),
            Backend::Postgres => ("INSERT INTO ", " ON CONFLICT DO NOTHING"),
        };
        let mut sql =
            String::with_capacity(head.len() + target.len() + tail.len() + rows * columns * 5);
        sql.push_str(head);
        sql.push_str(target);
        sql.push_str(" VALUES ");
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for column in 0..columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                match self.backend {
                    Backend::Sqlite => sql.push('?'),
                    Backend::Postgres => {
                        sql.push('$');
                        sql.push_str(&(row * columns + column + 1).to_string());
                    }
                }
            }
            sql.push(')');
        }
        sql.push_str(tail);
        sql
    }

    /// Make everything written so far durable; used on shutdown.
    pub async fn flush(&self) -> Result<()> {
        if self.backend == Backend::Sqlite {
            self.pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The directory of a `sqlite://path?…` URL, so it can be created first.
fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_owned())
}

/// Rows per multi-row statement, largest first: each statement is a round
/// trip to the database (for SQLite, to sqlx's worker thread), so batched
/// writers put many rows in one. Only these sizes are used, so that the few
/// statements they make stay in sqlx's prepared-statement cache; a statement
/// for every possible remainder (1 to 255 rows) would be parsed and planned
/// again batch after batch. At most 256 rows of at most 9 columns: 2,304
/// parameters, well within SQLite's 32,766 and PostgreSQL's 65,535; 256
/// rather than 64 took a tenth off the CPU of each archived row (a full batch is
/// 4 statements rather than 16).
const ROWS_PER_STATEMENT: [usize; 5] = [256, 64, 16, 4, 1];

/// `rows` cut into slices of the [`ROWS_PER_STATEMENT`] sizes, in order.
pub(crate) fn statement_chunks<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    for size in ROWS_PER_STATEMENT {
        while rows.len() >= size {
            let (chunk, rest) = rows.split_at(size);
            chunks.push(chunk);
            rows = rest;
        }
    }
    chunks
}

/// A poisoned lock still guards data that is whole: nothing here panics
/// halfway through a change.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn text(row: &AnyRow, column: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(column)?)
}

pub(crate) fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

#[cfg(test)]
mod tests {
    use super::statement_chunks;

    #[test]
    fn rows_are_cut_into_the_few_statement_sizes_in_order() {
        let rows: Vec<usize> = (0..406).collect();
        let chunks = statement_chunks(&rows);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [256, 64, 64, 16, 4, 1, 1]);
        let joined: Vec<usize> = chunks.concat();
        assert_eq!(joined, rows);
        assert!(statement_chunks::<usize>(&[]).is_empty());
    }
}
