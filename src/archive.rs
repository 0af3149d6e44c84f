//! The room archive of one gateway: a writer task that batches, and the
//! paging MAM needs on top of the store.
//!
//! The same writer also records the message-id map (see
//! [`crate::message_map`]): both are written on every message, and one
//! transaction for both halves the commits.
//!
//! Every message shown in a room is archived, so the write path is as hot as
//! message delivery itself. One transaction per message would cap a busy
//! gateway at the disk's commit rate; instead user tasks hand messages to one
//! writer per gateway, which commits up to [`BATCH`] of them at a time, at
//! most [`LINGER`] after the first one arrived. Readers (MAM, history on
//! join) ask the writer to flush first, so they always see what was shown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};
use tracing::{error, warn, Instrument};

use crate::store::{lock, ArchiveRange, ArchivedMessage, MessageRecord, Store, StoreError};

/// Most messages written in one transaction.
pub const BATCH: usize = 1024;
/// Longest a message waits for others to share its transaction.
pub const LINGER: Duration = Duration::from_millis(100);
/// Tries per batch before its messages are given up (and logged).
const WRITE_ATTEMPTS: u32 = 3;
/// How many recent remote ids the archiver remembers the stanza-id of.
const RECENT_IDS: usize = 8192;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("the archiver has stopped")]
    Stopped,
    #[error("archiving failed: {0}")]
    Write(String),
    #[error("no archived message with id '{0}' in this room")]
    UnknownId(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Ack = oneshot::Sender<Result<(), String>>;

enum Command {
    Archive(ArchivedMessage),
    /// A record was added to the unwritten id map.
    Map,
    /// Write everything sent before, then answer.
    Flush(Ack),
    /// Write everything still queued, answer, and stop.
    Close(Ack),
}

/// The handle user tasks archive through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Archiver {
    commands: mpsc::UnboundedSender<Command>,
    recent: std::sync::Arc<Mutex<RecentIds>>,
    /// Id-map records not yet committed, oldest first. They stay here until
    /// their transaction commits, so a lookup always finds them somewhere.
    unwritten: UnwrittenRecords,
}

type UnwrittenRecords = std::sync::Arc<Mutex<VecDeque<MessageRecord>>>;

impl Archiver {
    /// Start the writer task of one gateway.
    pub fn spawn(store: Store) -> Archiver {
        // Unbounded, so that archiving never holds up a user task; the writer
        // drains it in batches far faster than messages arrive.
        let (commands, rx) = mpsc::unbounded_channel();
        let unwritten = UnwrittenRecords::default();
        tokio::spawn(run(store, rx, unwritten.clone()).instrument(tracing::Span::current()));
        Archiver {
            commands,
            recent: Default::default(),
            unwritten,
        }
    }

    /// Queue an id-map record; it is committed within [`LINGER`], and
    /// [`Archiver::find_unwritten`] finds it until then.
    pub fn map(&self, record: MessageRecord) {
        lock(&self.unwritten).push_back(record);
        if self.commands.send(Command::Map).is_err() {
            warn!("the archiver has stopped; a message id was not recorded");
        }
    }

    /// The first queued, uncommitted id-map record that `matches`.
    pub fn find_unwritten(
        &self,
        matches: impl Fn(&MessageRecord) -> bool,
    ) -> Option<MessageRecord> {
        lock(&self.unwritten).iter().find(|r| matches(r)).cloned()
    }

    /// The last queued, uncommitted id-map record that `matches`.
    pub fn find_unwritten_newest(
        &self,
        matches: impl Fn(&MessageRecord) -> bool,
    ) -> Option<MessageRecord> {
        lock(&self.unwritten)
            .iter()
            .rev()
            .find(|r| matches(r))
            .cloned()
    }

    /// Queue a message; it is written within [`LINGER`].
    pub fn push(&self, message: ArchivedMessage) {
        if self.commands.send(Command::Archive(message)).is_err() {
            warn!("the archiver has stopped; a room message was not archived");
        }
    }

    /// The stanza-id a remote room message is known by on this gateway: the
    /// one first proposed for it. Several users of one room receive the same
    /// remote message; they must all see the stanza-id it is archived under,
    /// or their clients could not match MAM results with what they saw.
    pub fn stanza_id_for(&self, room: &str, remote_id: &str, proposed: &str) -> String {
        let mut recent = lock(&self.recent);
        recent.claim(room, remote_id, proposed)
    }

    /// The stanza-id a recent remote room message is known by, if it is.
    pub fn recent_stanza_id(&self, room: &str, remote_id: &str) -> Option<String> {
        lock(&self.recent).get(room, remote_id)
    }

    /// Wait until everything queued before is in the store.
    pub async fn flush(&self) -> Result<(), ArchiveError> {
        self.ask(Command::Flush).await
    }

    /// Write what is queued and stop; for shutdown, before the store closes.
    pub async fn close(&self) -> Result<(), ArchiveError> {
        self.ask(Command::Close).await
    }

    async fn ask(&self, command: impl FnOnce(Ack) -> Command) -> Result<(), ArchiveError> {
        let (ack, done) = oneshot::channel();
        self.commands
            .send(command(ack))
            .map_err(|_| ArchiveError::Stopped)?;
        done.await
            .map_err(|_| ArchiveError::Stopped)?
            .map_err(ArchiveError::Write)
    }
}

/// Remote id → stanza-id for the most recent room messages, bounded.
///
/// Looked up for every message shown in a room, so a lookup allocates
/// nothing: its key is built in `key`, and a kept key is one allocation
/// shared by the map and the eviction order.
#[derive(Debug, Default)]
struct RecentIds {
    ids: HashMap<Arc<str>, String>,
    order: VecDeque<Arc<str>>,
    key: String,
}

impl RecentIds {
    fn set_key(&mut self, room: &str, remote_id: &str) {
        // The room's length first, so that no two (room, id) pairs share a key.
        use std::fmt::Write;
        self.key.clear();
        let _ = write!(self.key, "{}:{room}{remote_id}", room.len());
    }

    fn get(&mut self, room: &str, remote_id: &str) -> Option<String> {
        self.set_key(room, remote_id);
        self.ids.get(self.key.as_str()).cloned()
    }

    fn claim(&mut self, room: &str, remote_id: &str, proposed: &str) -> String {
        if let Some(id) = self.get(room, remote_id) {
            return id;
        }
        if self.order.len() >= RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        let key: Arc<str> = Arc::from(self.key.as_str());
        self.order.push_back(key.clone());
        self.ids.insert(key, proposed.to_owned());
        proposed.to_owned()
    }
}

/// What the writer holds between two commits.
struct Pending {
    messages: Vec<ArchivedMessage>,
    /// How many id-map records were announced since the last write.
    records: usize,
    unwritten: UnwrittenRecords,
    acks: Vec<Ack>,
    close: Option<Ack>,
}

impl Pending {
    fn take(&mut self, command: Command) {
        match command {
            Command::Archive(m) => self.messages.push(m),
            Command::Map => self.records += 1,
            Command::Flush(ack) => self.acks.push(ack),
            Command::Close(ack) => self.close = Some(ack),
        }
    }

    /// Whether to write now rather than wait for more messages.
    fn due(&self) -> bool {
        self.messages.len() + self.records >= BATCH || !self.acks.is_empty() || self.close.is_some()
    }

    /// Commit everything pending in one transaction.
    async fn write(&mut self, store: &Store) -> Result<(), String> {
        // Records are copied out and only dropped from the queue once
        // committed, so lookups see them throughout.
        let records: Vec<MessageRecord> = lock(&self.unwritten).iter().cloned().collect();
        self.records = 0;
        let result = if records.is_empty() && self.messages.is_empty() {
            Ok(())
        } else {
            write_with_retries(store, &self.messages, &records).await
        };
        lock(&self.unwritten).drain(..records.len());
        self.messages.clear();
        for ack in self.acks.drain(..) {
            let _ = ack.send(result.clone());
        }
        result
    }
}

async fn run(
    store: Store,
    mut commands: mpsc::UnboundedReceiver<Command>,
    unwritten: UnwrittenRecords,
) {
    let mut pending = Pending {
        messages: Vec::with_capacity(BATCH),
        records: 0,
        unwritten,
        acks: Vec::new(),
        close: None,
    };
    while let Some(command) = commands.recv().await {
        pending.take(command);
        let deadline = Instant::now() + LINGER;
        while !pending.due() {
            match timeout_at(deadline, commands.recv()).await {
                Ok(Some(command)) => pending.take(command),
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(close) = pending.close.take() {
            // Refuse new messages, but keep those already queued.
            commands.close();
            while let Some(command) = commands.recv().await {
                pending.take(command);
            }
            let result = pending.write(&store).await;
            let _ = close.send(result);
            return;
        }
        let _ = pending.write(&store).await;
    }
    // Every handle is gone without a close: write what is left all the same.
    let _ = pending.write(&store).await;
}

/// One batch, tried [`WRITE_ATTEMPTS`] times with growing pauses; a batch
/// that still fails is logged as lost.
async fn write_with_retries(
    store: &Store,
    messages: &[ArchivedMessage],
    records: &[MessageRecord],
) -> Result<(), String> {
    let mut attempt = 1;
    loop {
        match store.write_batch(messages, records).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < WRITE_ATTEMPTS => {
                warn!(
                    attempt,
                    "writing the archive and message ids failed; retrying: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100) * attempt).await;
                attempt += 1;
            }
            Err(e) => {
                error!(
                    messages = messages.len(),
                    records = records.len(),
                    "writing the archive and message ids failed; these rows are lost: {e}"
                );
                return Err(e.to_string());
            }
        }
    }
}

/// What a MAM query asks of a room's archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Only messages from this nick.
    pub nick: Option<String>,
    /// Page size.
    pub max: usize,
    /// RSM `<after>`: messages after this stanza-id.
    pub after: Option<String>,
    /// RSM `<before>`: page backwards, from before this stanza-id, or from
    /// the end for an empty `<before/>` (`Some(None)`).
    pub before: Option<Option<String>>,
}

/// One page of a room's archive, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<ArchivedMessage>,
    /// The page reaches the end of the results in the paging direction
    /// (the newest when paging forwards, the oldest when backwards).
    pub complete: bool,
    /// How many messages match the filters, all pages together.
    pub count: i64,
}

/// One page of a room's archive. Rows are read one past the page size to
/// learn whether the page is the last one without a second query.
pub async fn page(
    store: &Store,
    gateway: &str,
    room: &str,
    request: &PageRequest,
) -> Result<Page, ArchiveError> {
    let filters = ArchiveRange {
        gateway: gateway.to_owned(),
        room: room.to_owned(),
        start_ms: request.start_ms,
        end_ms: request.end_ms,
        nick: request.nick.clone(),
        after_id: None,
        before_id: None,
    };
    let after_id = position(store, gateway, room, request.after.as_deref()).await?;
    let before_id = position(
        store,
        gateway,
        room,
        request.before.clone().flatten().as_deref(),
    )
    .await?;
    let backwards = request.before.is_some();
    let limit = i64::try_from(request.max).unwrap_or(i64::MAX - 1);
    let (mut rows, count) = store
        .archive_page(&filters, after_id, before_id, limit + 1, backwards)
        .await?;
    let complete = rows.len() <= request.max;
    rows.truncate(request.max);
    if backwards {
        rows.reverse();
    }
    Ok(Page {
        messages: rows.into_iter().map(|r| r.message).collect(),
        complete,
        count,
    })
}

/// The row of an RSM id; an id the room's archive lacks is an error.
async fn position(
    store: &Store,
    gateway: &str,
    room: &str,
    stanza_id: Option<&str>,
) -> Result<Option<i64>, ArchiveError> {
    let Some(stanza_id) = stanza_id else {
        return Ok(None);
    };
    match store.archive_position(gateway, room, stanza_id).await? {
        Some(row) => Ok(Some(row)),
        None => Err(ArchiveError::UnknownId(stanza_id.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::RecentIds;

    #[test]
    fn the_first_stanza_id_proposed_wins_and_memory_is_bounded() {
        let mut recent = RecentIds::default();
        assert_eq!(recent.claim("#r", "x1", "a"), "a");
        assert_eq!(recent.claim("#r", "x1", "b"), "a");
        assert_eq!(recent.claim("#other", "x1", "c"), "c");
        for i in 0..super::RECENT_IDS {
            recent.claim("#r", &format!("fill{i}"), "f");
        }
        assert_eq!(recent.ids.len(), super::RECENT_IDS);
        assert_eq!(recent.claim("#r", "x1", "d"), "d");
    }

    #[test]
    fn a_room_and_an_id_are_never_taken_for_another_pair() {
        let mut recent = RecentIds::default();
        assert_eq!(recent.claim("#a:b", "c", "first"), "first");
        assert_eq!(recent.claim("#a", ":bc", "second"), "second");
        assert_eq!(recent.claim("#a:", "bc", "third"), "third");
    }
}
