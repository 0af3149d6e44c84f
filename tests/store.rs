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
    let by_stanza_id = store
        .message_by_xmpp_ref("gw", "alice@localhost", "#room", "sid-r1", &Sender::Account)
        .await
        .unwrap();
    assert_eq!(by_stanza_id.map(|r| r.remote_id), Some("r1".to_owned()));
    // A client that reuses an id refers to its newest message of that id.
    store
        .save_message(&record("#room", "r3", Sender::Account, "m1"))
        .await
        .unwrap();
    let newest = store
        .message_by_xmpp_ref("gw", "alice@localhost", "#room", "m1", &Sender::Account)
        .await
        .unwrap();
    assert_eq!(newest.map(|r| r.remote_id), Some("r3".to_owned()));
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

    // Per-address settings, kept for registered users and for users who
    // never registered (IRC), each listed once.
    for (account, address) in [
        ("alice@localhost", "#room"),
        ("alice@localhost", "irc.example.org"),
        ("guest@localhost", "#room"),
    ] {
        store
            .save_address_settings("gw", account, address, "{\"persistent\":true}")
            .await
            .unwrap();
    }
    store
        .save_address_settings("other-gw", "carol@localhost", "#room", "{}")
        .await
        .unwrap();
    assert_eq!(
        store.accounts_with_settings("gw").await.unwrap(),
        ["alice@localhost", "guest@localhost"]
    );
    assert_eq!(
        store
            .address_settings("gw", "guest@localhost")
            .await
            .unwrap(),
        [("#room".to_owned(), "{\"persistent\":true}".to_owned())]
    );

    // Who keeps the gateway's JID in their roster, registered or not.
    assert!(store
        .add_gateway_subscriber("gw", "alice@localhost")
        .await
        .unwrap());
    assert!(!store
        .add_gateway_subscriber("gw", "alice@localhost")
        .await
        .unwrap());
    for (gw, jid) in [("gw", "guest@localhost"), ("other-gw", "carol@localhost")] {
        store.add_gateway_subscriber(gw, jid).await.unwrap();
    }
    assert_eq!(
        store.gateway_subscribers("gw").await.unwrap(),
        ["alice@localhost", "guest@localhost"]
    );
    store
        .remove_gateway_subscriber("gw", "guest@localhost")
        .await
        .unwrap();
    assert_eq!(
        store.gateway_subscribers("gw").await.unwrap(),
        ["alice@localhost"]
    );
    assert_eq!(
        store.gateway_subscribers("other-gw").await.unwrap(),
        ["carol@localhost"]
    );

    // Deleting the account removes what was kept for it.
    assert!(store.delete_account("gw", "alice@localhost").await.unwrap());
    assert!(store.gateway_subscribers("gw").await.unwrap().is_empty());
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
    assert_eq!(
        store.accounts_with_settings("gw").await.unwrap(),
        ["guest@localhost"]
    );
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

    // Time bounds when row order is not time order: a delayed message gets
    // a new row with an old time (L3). Few messages on the far side of a
    // bound (the store then bounds row ids by them), and many.
    store
        .archive(&[
            in_room("#late", "L0", None, "al", 100),
            in_room("#late", "L1", None, "al", 200),
            in_room("#late", "L2", None, "al", 300),
            in_room("#late", "L3", None, "al", 150),
            in_room("#late", "L4", None, "al", 400),
        ])
        .await
        .unwrap();
    let late = |start_ms: Option<i64>, end_ms: Option<i64>| ArchiveRange {
        start_ms,
        end_ms,
        ..whole("#late")
    };
    for (range, oldest_first) in [
        // The message with the earliest time from 140 on is L3; L1 and L2
        // come before it in row order and are still in.
        (late(Some(140), None), vec!["L1", "L2", "L3", "L4"]),
        (late(Some(160), None), vec!["L1", "L2", "L4"]),
        // The message with the latest time until 250 is L1; L3 comes after
        // it in row order and is still in.
        (late(None, Some(250)), vec!["L0", "L1", "L3"]),
        (late(Some(150), Some(300)), vec!["L1", "L2", "L3"]),
        (late(Some(1_000), None), vec![]),
        (late(None, Some(50)), vec![]),
    ] {
        assert_eq!(
            ids(store.archive_range(&range, 10, false).await.unwrap()),
            oldest_first,
            "{range:?}"
        );
        let mut newest_first = ids(store.archive_range(&range, 10, true).await.unwrap());
        newest_first.reverse();
        assert_eq!(newest_first, oldest_first, "{range:?}");
        assert_eq!(
            store.archive_count(&range).await.unwrap(),
            oldest_first.len() as i64,
            "{range:?}"
        );
    }
    let many: Vec<ArchivedMessage> = (0..1_100)
        .map(|i| in_room("#many", &format!("m{i}"), None, "al", 10_000 + i))
        .collect();
    store.archive(&many).await.unwrap();
    let since = |start_ms| ArchiveRange {
        start_ms: Some(start_ms),
        ..whole("#many")
    };
    assert_eq!(store.archive_count(&since(10_000)).await.unwrap(), 1_100);
    assert_eq!(
        ids(store.archive_range(&since(10_000), 3, false).await.unwrap()),
        ["m0", "m1", "m2"]
    );
    assert_eq!(store.archive_count(&since(11_050)).await.unwrap(), 50);
    assert_eq!(
        ids(store.archive_range(&since(11_050), 3, false).await.unwrap()),
        ["m1050", "m1051", "m1052"]
    );

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
    let url = world::sqlite_url(&dir.path().join("sub/estuary.sqlite"));
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

/// An archive written before rooms had integer keys (migrations 1 to 3),
/// opened by this version: every row is still there, in its room, under its
/// row id (MAM's order and paging positions), and new rows follow the old.
async fn an_archive_of_named_rooms_is_migrated(url: &str, migrations: sqlx::migrate::Migrator) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    migrations.run_to(3, &pool).await.unwrap();
    // Interleaved rooms and gateways, with and without remote ids.
    let old_rows = [
        (1, "gw", "#a", "s1", Some("r1"), "al", "one in a"),
        (2, "gw", "#b", "s2", None, "bo", "one in b"),
        (
            3,
            "other-gw",
            "#a",
            "s3",
            Some("r1"),
            "al",
            "one in the other a",
        ),
        (4, "gw", "#a", "s4", None, "bo", "two in a"),
        (
            7,
            "gw",
            "#a",
            "s7",
            Some("r7"),
            "al",
            "three in a, after a gap",
        ),
        (9, "gw", "#b", "s9-gone", None, "bo", "deleted below"),
    ];
    for (id, gateway, room, stanza_id, remote_id, nick, body) in old_rows {
        sqlx::query(
            "INSERT INTO archive (id, gateway, room, stanza_id, remote_id, nick, sender, body, ts_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)",
        )
        .bind(id as i64)
        .bind(gateway)
        .bind(room)
        .bind(stanza_id)
        .bind(remote_id)
        .bind(nick)
        .bind(body)
        .bind(1_600_000_000_000 + id as i64)
        .execute(&pool)
        .await
        .unwrap();
    }
    if url.starts_with("postgres") {
        // As BIGSERIAL would have left it had the rows come without ids.
        sqlx::query("SELECT setval('archive_id_seq', 9)")
            .execute(&pool)
            .await
            .unwrap();
    }
    // The newest row is gone; its id must not be given again.
    sqlx::query("DELETE FROM archive WHERE id = 9")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = Store::open(url).await.unwrap();
    let rows = |gateway: &str, room: &str| ArchiveRange {
        gateway: gateway.into(),
        room: room.into(),
        ..ArchiveRange::default()
    };
    let seen = |rows: Vec<ArchivedRow>| -> Vec<(i64, String, String)> {
        rows.into_iter()
            .map(|r| (r.id, r.message.stanza_id, r.message.body))
            .collect()
    };
    let a = seen(
        store
            .archive_range(&rows("gw", "#a"), 10, false)
            .await
            .unwrap(),
    );
    assert_eq!(
        a,
        [
            (1, "s1".into(), "one in a".into()),
            (4, "s4".into(), "two in a".into()),
            (7, "s7".into(), "three in a, after a gap".into()),
        ]
    );
    let b = seen(
        store
            .archive_range(&rows("gw", "#b"), 10, false)
            .await
            .unwrap(),
    );
    assert_eq!(b, [(2, "s2".into(), "one in b".into())]);
    let other = store
        .archive_range(&rows("other-gw", "#a"), 10, false)
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].message.remote_id.as_deref(), Some("r1"));
    assert_eq!(other[0].message.gateway, "other-gw");
    assert_eq!(
        store.archive_position("gw", "#a", "s4").await.unwrap(),
        Some(4)
    );
    assert_eq!(
        store.archive_position("gw", "#b", "s4").await.unwrap(),
        None
    );
    assert_eq!(
        store.archive_count(&rows("gw", "#nowhere")).await.unwrap(),
        0
    );

    // The unique keys hold per room as before, and new rows come after the old.
    let message = |room: &str, stanza_id: &str, remote_id: &str| ArchivedMessage {
        gateway: "gw".into(),
        room: room.into(),
        stanza_id: stanza_id.into(),
        remote_id: Some(remote_id.into()),
        nick: "al".into(),
        sender: None,
        body: format!("{stanza_id} in {room}"),
        ts_ms: 1_700_000_000_000,
    };
    store
        .archive(&[
            message("#a", "s8", "r7"),    // remote id already in #a: skipped
            message("#b", "s9", "r7"),    // the same remote id in #b: kept
            message("#new", "s10", "r1"), // a room never archived
        ])
        .await
        .unwrap();
    let a = store
        .archive_range(&rows("gw", "#a"), 10, false)
        .await
        .unwrap();
    assert_eq!(a.len(), 3);
    let b = store
        .archive_range(&rows("gw", "#b"), 10, false)
        .await
        .unwrap();
    assert_eq!(b.len(), 2);
    assert!(b[1].id > 9, "no row id is given twice: {}", b[1].id);
    let new = store
        .archive_range(&rows("gw", "#new"), 10, false)
        .await
        .unwrap();
    assert_eq!(new[0].message.stanza_id, "s10");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_of_named_rooms_is_migrated_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = world::sqlite_url(&dir.path().join("old.sqlite"));
    an_archive_of_named_rooms_is_migrated(&url, sqlx::migrate!("./migrations/sqlite")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_of_named_rooms_is_migrated_on_postgresql() {
    let pg = Postgres::start();
    let url = pg.fresh_database();
    an_archive_of_named_rooms_is_migrated(&url, sqlx::migrate!("./migrations/postgres")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_a_clear_error() {
    let err = Store::open("mysql://nope").await.unwrap_err();
    assert!(
        err.to_string().contains("sqlite:// or postgres://"),
        "{err}"
    );
}
