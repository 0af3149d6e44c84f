//! The store, the same suite on SQLite and on a real PostgreSQL.

mod world;

use estuary::archive::{self, Page, PageRequest};
use estuary::store::{
    Account, ArchiveRange, ArchivedMessage, ArchivedRow, MessageRecord, RoomRecord, Sender, Store,
};
use estuary_bridge::Credentials;
use world::Postgres;

fn record(chat: &str, remote_id: &str, sender: Sender, xmpp_id: &str) -> MessageRecord {
    MessageRecord {
        gateway: "gw".into(),
        account: "alice@localhost".into(),
        chat: chat.into(),
        remote_id: remote_id.into(),
        sender,
        xmpp_id: Some(xmpp_id.into()),
        stanza_id: format!("sid-{remote_id}"),
        origin_id: Some(format!("origin-{xmpp_id}")),
    }
}

async fn suite(store: Store) {
    // Accounts: save, replace, list, delete with everything kept for them.
    let mut credentials = Credentials::default();
    credentials.0.insert("password".into(), "pw".into());
    let account = Account {
        gateway: "gw".into(),
        jid: "alice@localhost".into(),
        credentials: credentials.clone(),
    };
    store.save_account(&account).await.unwrap();
    credentials.0.insert("password".into(), "pw2".into());
    store
        .save_account(&Account {
            credentials: credentials.clone(),
            ..account.clone()
        })
        .await
        .unwrap();
    let got = store
        .account("gw", "alice@localhost")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.credentials.get("password"), Some("pw2"));
    assert!(store
        .account("other-gw", "alice@localhost")
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.accounts("gw").await.unwrap().len(), 1);

    // Message map: scoped by sender, so others' messages cannot be reached by their ids.
    let own = record("#room", "r1", Sender::Account, "m1");
    let theirs = record("#room", "r2", Sender::Remote("bob".into()), "x2");
    store.save_message(&own).await.unwrap();
    store.save_message(&theirs).await.unwrap();
    store.save_message(&own).await.unwrap(); // idempotent
    let found = store
        .message_by_xmpp_ref("gw", "alice@localhost", "#room", "m1", &Sender::Account)
        .await
        .unwrap();
    assert_eq!(found.as_ref().map(|r| r.remote_id.as_str()), Some("r1"));
    let by_origin = store
        .message_by_xmpp_ref(
            "gw",
            "alice@localhost",
            "#room",
            "origin-m1",
            &Sender::Account,
        )
        .await
        .unwrap();
    assert_eq!(by_origin, found);
    let spoofed = store
        .message_by_xmpp_ref("gw", "alice@localhost", "#room", "sid-r2", &Sender::Account)
        .await
        .unwrap();
    assert!(
        spoofed.is_none(),
        "bob's message must not be found as alice's"
    );
    let other_room = store
        .message_by_xmpp_ref("gw", "alice@localhost", "#other", "m1", &Sender::Account)
        .await
        .unwrap();
    assert!(other_room.is_none());
    let by_remote = store
        .message_by_remote_id("gw", "alice@localhost", "#room", "r2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_remote.sender, Sender::Remote("bob".into()));
    assert!(store
        .message_by_stanza_id("gw", "alice@localhost", "#room", "sid-r2")
        .await
        .unwrap()
        .is_some());

    // Rooms.
    let room = RoomRecord {
        gateway: "gw".into(),
        account: "alice@localhost".into(),
        room: "#room".into(),
        nick: "al".into(),
        settings: "{\"persistent\":true}".into(),
    };
    store.save_room(&room).await.unwrap();
    store
        .save_room(&RoomRecord {
            nick: "al2".into(),
            ..room.clone()
        })
        .await
        .unwrap();
    let rooms = store.rooms("gw", "alice@localhost").await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].nick, "al2");

    // Archive: batched writes, history in order with time and count limits.
    let batch: Vec<_> = (0..50)
        .map(|i| ArchivedMessage {
            gateway: "gw".into(),
            room: "#room".into(),
            stanza_id: format!("a{i}"),
            remote_id: Some(format!("remote{i}")),
            nick: "bob".into(),
            sender: None,
            body: format!("line {i}"),
            ts_ms: 1_000 + i,
        })
        .collect();
    store.archive(&batch).await.unwrap();
    store.archive(&batch[..5]).await.unwrap(); // duplicates are ignored
    let last = store.history("gw", "#room", 0, 3).await.unwrap();
    let bodies: Vec<_> = last.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["line 47", "line 48", "line 49"]);
    let since = store.history("gw", "#room", 1_045, 100).await.unwrap();
    assert_eq!(since.len(), 5);

    // Outbox: in order, attempts counted, removed when done.
    let first = store
        .outbox_push("gw", "alice@localhost", "remote", "one")
        .await
        .unwrap();
    let second = store
        .outbox_push("gw", "alice@localhost", "remote", "two")
        .await
        .unwrap();
    store.outbox_attempted(first).await.unwrap();
    let pending = store.outbox_pending("gw", "alice@localhost").await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|p| p.payload.as_str())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_eq!(pending[0].attempts, 1);
    store.outbox_done(first).await.unwrap();
    assert_eq!(
        store.outbox_pending("gw", "alice@localhost").await.unwrap()[0].id,
        second
    );

    // Deleting the account removes what was kept for it.
    assert!(store.delete_account("gw", "alice@localhost").await.unwrap());
    assert!(!store.delete_account("gw", "alice@localhost").await.unwrap());
    assert!(store
        .message_by_remote_id("gw", "alice@localhost", "#room", "r1")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .outbox_pending("gw", "alice@localhost")
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .rooms("gw", "alice@localhost")
        .await
        .unwrap()
        .is_empty());

    // Archive dedupe: a remote id is archived once per room, whatever its
    // stanza-id; messages without a remote id are all kept.
    let in_room =
        |room: &str, stanza_id: &str, remote_id: Option<&str>, nick: &str, ts_ms| ArchivedMessage {
            gateway: "gw".into(),
            room: room.into(),
            stanza_id: stanza_id.into(),
            remote_id: remote_id.map(str::to_owned),
            nick: nick.into(),
            sender: None,
            body: format!("{stanza_id} by {nick}"),
            ts_ms,
        };
    store
        .archive(&[
            in_room("#room", "again3", Some("remote3"), "bob", 5_000),
            in_room("#other", "o1", Some("remote3"), "bob", 5_000),
            in_room("#other", "o2", None, "al", 5_001),
            in_room("#other", "o3", None, "al", 5_002),
        ])
        .await
        .unwrap();
    let whole = |room: &str| ArchiveRange {
        gateway: "gw".into(),
        room: room.into(),
        ..ArchiveRange::default()
    };
    assert_eq!(store.archive_count(&whole("#room")).await.unwrap(), 50);
    assert_eq!(store.archive_count(&whole("#other")).await.unwrap(), 3);
    assert!(store
        .archive_position("gw", "#room", "again3")
        .await
        .unwrap()
        .is_none());

    // Archive ranges: by row order both ways, by time, by nick.
    let ids = |rows: Vec<ArchivedRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.message.stanza_id).collect()
    };
    let a =
        |range: std::ops::Range<i64>| -> Vec<String> { range.map(|i| format!("a{i}")).collect() };
    let oldest = store
        .archive_range(&whole("#room"), 10, false)
        .await
        .unwrap();
    assert!(oldest.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(ids(oldest), a(0..10));
    let a9 = store.archive_position("gw", "#room", "a9").await.unwrap();
    let a40 = store.archive_position("gw", "#room", "a40").await.unwrap();
    assert!(a9.is_some() && a40.is_some());
    let next = ArchiveRange {
        after_id: a9,
        ..whole("#room")
    };
    assert_eq!(
        ids(store.archive_range(&next, 10, false).await.unwrap()),
        a(10..20)
    );
    let newest = store.archive_range(&whole("#room"), 3, true).await.unwrap();
    assert_eq!(ids(newest), ["a49", "a48", "a47"]);
    let before = ArchiveRange {
        before_id: a40,
        ..whole("#room")
    };
    let mut previous = ids(store.archive_range(&before, 10, true).await.unwrap());
    previous.reverse();
    assert_eq!(previous, a(30..40));
    let window = ArchiveRange {
        start_ms: Some(1_010),
        end_ms: Some(1_014),
        ..whole("#room")
    };
    assert_eq!(
        ids(store.archive_range(&window, 100, false).await.unwrap()),
        a(10..15)
    );
    assert_eq!(store.archive_count(&window).await.unwrap(), 5);
    let between = ArchiveRange {
        after_id: a9,
        before_id: a40,
        ..window.clone()
    };
    assert_eq!(store.archive_count(&between).await.unwrap(), 5);
    let by_al = ArchiveRange {
        nick: Some("al".into()),
        ..whole("#other")
    };
    assert_eq!(
        ids(store.archive_range(&by_al, 10, false).await.unwrap()),
        ["o2", "o3"]
    );
    assert_eq!(store.archive_count(&by_al).await.unwrap(), 2);

    // MAM paging on top: pages, the last page, completeness, unknown ids.
    let request = |max, after: Option<&str>, before: Option<Option<&str>>| PageRequest {
        max,
        after: after.map(str::to_owned),
        before: before.map(|b| b.map(str::to_owned)),
        ..PageRequest::default()
    };
    let bodies = |page: &Page| -> Vec<String> {
        page.messages.iter().map(|m| m.stanza_id.clone()).collect()
    };
    let first = archive::page(&store, "gw", "#room", &request(20, None, None))
        .await
        .unwrap();
    assert_eq!(
        (bodies(&first), first.complete, first.count),
        (a(0..20), false, 50)
    );
    let last = archive::page(&store, "gw", "#room", &request(20, Some("a39"), None))
        .await
        .unwrap();
    assert_eq!((bodies(&last), last.complete), (a(40..50), true));
    let end = archive::page(&store, "gw", "#room", &request(20, None, Some(None)))
        .await
        .unwrap();
    assert_eq!((bodies(&end), end.complete), (a(30..50), false));
    let start = archive::page(&store, "gw", "#room", &request(20, None, Some(Some("a15"))))
        .await
        .unwrap();
    assert_eq!((bodies(&start), start.complete), (a(0..15), true));
    let count_only = archive::page(&store, "gw", "#room", &request(0, None, None))
        .await
        .unwrap();
    assert_eq!((count_only.messages.len(), count_only.count), (0, 50));
    assert!(matches!(
        archive::page(&store, "gw", "#room", &request(5, Some("nope"), None)).await,
        Err(archive::ArchiveError::UnknownId(_))
    ));
    store.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("sub/estuary.sqlite").display()
    );
    suite(Store::open(&url).await.unwrap()).await;
    // Reopening applies no migration twice and keeps the data.
    let store = Store::open(&url).await.unwrap();
    assert!(store.accounts("gw").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_postgresql() {
    let pg = Postgres::start();
    let url = pg.fresh_database();
    suite(Store::open(&url).await.unwrap()).await;
    let store = Store::open(&url).await.unwrap();
    assert!(store.accounts("gw").await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_a_clear_error() {
    let err = Store::open("mysql://nope").await.unwrap_err();
    assert!(
        err.to_string().contains("sqlite:// or postgres://"),
        "{err}"
    );
}
