//! The CPU the archive's batched writes cost per row, through the store as
//! the gateway uses it (sqlx, SQLite, one transaction per batch), with no
//! network in the way: `cargo bench --bench archive_write`. Prints JSON.
//!
//! `ROWS` (default 200,000) and `BATCH` (default 1,000, about what the
//! archiver commits at once under load) set the shape.
//!
//! Then MAM pages of 50 on that archive, each with its count, the best of
//! five: the first page with no filter (`first_page_ms`), and a catch-up as
//! a client reconnecting asks it, from a time 100 messages before the end
//! (`catch_up_page_ms`). And, in a message-id map of as
//! many records in one chat (Matrix, Discord), the lookup a correction,
//! reaction, reply or read marker makes by the id the user's client used
//! (`map_lookup_ms`, the best of five).

use estuary::archive::{self, PageRequest};
use estuary::store::{ArchivedMessage, MessageRecord, Sender, Store};

/// CPU time of this whole process (every thread, SQLite's included), in ms.
fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    // `cargo bench` passes `--bench`; this tool has no options.
    let rows = setting("ROWS", 200_000);
    let batch = setting("BATCH", 1_000).max(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("archive.sqlite").display()
    );
    let store = Store::open(&url).await.expect("the store opens");
    let t0 = 1_700_000_000_000i64;
    // Shaped like the IRC load's: UUIDv7-like stanza-ids and InspIRCd msgids.
    let messages: Vec<ArchivedMessage> = (0..rows)
        .map(|i| ArchivedMessage {
            gateway: "irc.localhost".into(),
            room: "#bench%localhost".into(),
            stanza_id: format!("019{:013x}-7abc-8def-{i:012x}", t0 + i as i64),
            remote_id: Some(format!("001AAAAAA~1700000000~{i}")),
            nick: "bob".into(),
            sender: None,
            body: format!("tp_i2x {i} 1234567890123"),
            ts_ms: t0 + i as i64,
        })
        .collect();
    let cpu_before = cpu_ms();
    let started = std::time::Instant::now();
    for chunk in messages.chunks(batch) {
        store.archive(chunk).await.expect("the batch is written");
    }
    let cpu = cpu_ms() - cpu_before;
    let wall = started.elapsed().as_secs_f64() * 1e3;

    let catch_up = PageRequest {
        start_ms: Some(t0 + rows.saturating_sub(100) as i64),
        max: 50,
        ..PageRequest::default()
    };
    let first_page = PageRequest {
        max: 50,
        ..PageRequest::default()
    };
    let best_page = |request: PageRequest, count: usize| {
        let store = &store;
        async move {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let asked = std::time::Instant::now();
                let page = archive::page(store, "irc.localhost", "#bench%localhost", &request)
                    .await
                    .expect("the page");
                assert_eq!(page.count, count as i64, "the page's count");
                best = best.min(asked.elapsed().as_secs_f64() * 1e3);
            }
            best
        }
    };
    let first_best = best_page(first_page, rows).await;
    let best = best_page(catch_up, rows.min(100)).await;

    let records: Vec<MessageRecord> = (0..rows)
        .map(|i| MessageRecord {
            gateway: "matrix.localhost".into(),
            account: "alice@localhost".into(),
            chat: "#room%matrix.org".into(),
            remote_id: format!("$event{i}"),
            sender: if i % 2 == 0 {
                Sender::Account
            } else {
                Sender::Remote("@bob:matrix.org".into())
            },
            xmpp_id: Some(format!("client-{i}")),
            stanza_id: format!("019{:013x}-7abc-8def-{i:012x}", t0 + i as i64),
            origin_id: Some(format!("origin-{i}")),
        })
        .collect();
    for chunk in records.chunks(batch) {
        store
            .write_batch(&[], chunk)
            .await
            .expect("the records are written");
    }
    let wanted = format!("client-{}", rows / 2 / 2 * 2);
    let mut map_best = f64::MAX;
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        let found = store
            .message_by_xmpp_ref(
                "matrix.localhost",
                "alice@localhost",
                "#room%matrix.org",
                &wanted,
                &Sender::Account,
            )
            .await
            .expect("the lookup");
        assert!(found.is_some(), "the record is found");
        map_best = map_best.min(asked.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "batch": batch,
            "cpu_us_per_row": (cpu * 1e3 / rows as f64 * 100.0).round() / 100.0,
            "wall_us_per_row": (wall * 1e3 / rows as f64 * 100.0).round() / 100.0,
            "first_page_ms": (first_best * 100.0).round() / 100.0,
            "catch_up_page_ms": (best * 100.0).round() / 100.0,
            "map_lookup_ms": (map_best * 100.0).round() / 100.0,
        })
    );
    store.close().await;
}
