//! The room archive end to end: what rooms show is archived (both ways, in
//! batches, across a restart), read back through MAM on the room JID and as
//! history when a join completes. A real Prosody, Estuary in this process
//! with the loopback bridge, and raw XMPP clients.

mod support;
mod world;

use std::time::Duration;

use estuary::store::Store;
use estuary_bridge::{RemoteAddress, RemoteEvent, RemoteMessage};
use support::{condition, Fixture, GW, WAIT};
use world::{attr, body, el, find_child, Element, XmppClient};

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const FORWARD: &str = "urn:xmpp:forward:0";
const DELAY: &str = "urn:xmpp:delay";
const SID: &str = "urn:xmpp:sid:0";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const CLIENT: &str = "jabber:client";
const ALICE: &str = "alice@localhost";
/// 2020-01-01T00:00:00Z.
const JAN_2020_MS: i64 = 1_577_836_800_000;

fn room() -> String {
    format!("#room@{GW}")
}

/// A message said in `#room` by `nick`, as the network reports it.
fn said(id: &str, nick: &str, text: &str, timestamp_ms: Option<i64>) -> RemoteEvent {
    RemoteEvent::from(RemoteMessage {
        room: Some(RemoteAddress::new("#room")),
        nick: Some(nick.to_owned()),
        timestamp_ms,
        ..RemoteMessage::text(id, RemoteAddress::new(nick), text)
    })
}

/// Join with an optional `<history/>`; returns the delayed messages that came
/// before the subject, after checking they followed the self-presence.
async fn join(client: &mut XmppClient, nick: &str, history: &str) -> Vec<Element> {
    client
        .send(el(&format!(
            "<presence to='{}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>{history}</x></presence>",
            room()
        )))
        .await;
    let mut joined = false;
    let mut delayed = Vec::new();
    loop {
        let s = client.recv(WAIT).await.expect("the join completes");
        if s.name() == "message" && s.get_child("subject", CLIENT).is_some() {
            return delayed;
        }
        if s.name() == "presence" && attr(&s, "from") == format!("{}/{nick}", room()) {
            joined = find_child(&s, "x", MUC_USER).is_some_and(|x| {
                x.children()
                    .any(|c| c.name() == "status" && attr(c, "code") == "110")
            });
        }
        if s.name() == "message" && find_child(&s, "delay", DELAY).is_some() {
            assert!(
                joined,
                "history before the self-presence: {}",
                String::from(&s)
            );
            delayed.push(s);
        }
    }
}

async fn leave(client: &mut XmppClient, nick: &str) {
    let me = format!("{}/{nick}", room());
    client
        .send(el(&format!("<presence to='{me}' type='unavailable'/>")))
        .await;
    client
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "type") == "unavailable" && attr(s, "from") == me
        })
        .await;
}

fn rsm(max: usize, extra: &str) -> String {
    format!("<set xmlns='{RSM}'><max>{max}</max>{extra}</set>")
}

/// The forwarded message of a result.
fn forwarded(result: &Element) -> &Element {
    find_child(result, "forwarded", FORWARD)
        .and_then(|f| find_child(f, "message", CLIENT))
        .expect("a forwarded message")
}

fn bodies(results: &[Element]) -> Vec<String> {
    results
        .iter()
        .map(|r| body(forwarded(r)).unwrap_or_default())
        .collect()
}

fn ids(results: &[Element]) -> Vec<String> {
    results.iter().map(|r| attr(r, "id").to_owned()).collect()
}

/// complete, first, last and count of a query's `<fin/>`.
fn fin(reply: &Element) -> (String, String, String, String) {
    assert_eq!(attr(reply, "type"), "result", "{}", String::from(reply));
    let fin = find_child(reply, "fin", MAM).expect("fin");
    let set = find_child(fin, "set", RSM).expect("set");
    let text = |name: &str| {
        find_child(set, name, RSM)
            .map(Element::text)
            .unwrap_or_default()
    };
    (
        attr(fin, "complete").to_owned(),
        text("first"),
        text("last"),
        text("count"),
    )
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_are_archived_and_paged_through_mam() {
    let fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    let room = room();

    let features = alice.disco_features(&room).await;
    assert!(features.iter().any(|f| f == MAM), "{features:?}");

    join(&mut alice, "al", "").await;
    // Both ways: the user's own message, and the network's answer.
    alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='g1'><body>hello room</body></message>"
        )))
        .await;
    let reflected = alice.expect(WAIT, |s| attr(s, "id") == "g1").await;
    let own_id = attr(find_child(&reflected, "stanza-id", SID).unwrap(), "id").to_owned();
    assert_ne!(own_id, "g1", "the gateway's stanza-id, not the client's id");
    let answer = alice
        .expect(WAIT, |s| {
            body(s).as_deref() == Some("bob heard: hello room")
        })
        .await;
    let answer_id = attr(find_child(&answer, "stanza-id", SID).unwrap(), "id").to_owned();
    let (results, reply) = alice.mam_query(&room, "", "").await;
    assert_eq!(bodies(&results), ["hello room", "bob heard: hello room"]);
    assert_eq!(ids(&results), [own_id.clone(), answer_id]);
    let senders: Vec<_> = results
        .iter()
        .map(|r| attr(forwarded(r), "from").to_owned())
        .collect();
    assert_eq!(senders, [format!("{room}/al"), format!("{room}/bob")]);
    assert!(results.iter().all(|r| find_child(
        find_child(r, "forwarded", FORWARD).unwrap(),
        "delay",
        DELAY
    )
    .is_some()));
    assert_eq!(fin(&reply).0, "true");

    // The network echoing the user's own message adds nothing new.
    fx.net
        .emit(
            ALICE,
            RemoteEvent::from(RemoteMessage {
                room: Some(RemoteAddress::new("#room")),
                nick: Some("al".to_owned()),
                from_self: true,
                ..RemoteMessage::text("r0", RemoteAddress::new("alice"), "hello room")
            }),
        )
        .await;
    alice.expect(WAIT, |s| attr(s, "id") == "g1").await;

    // 28 more, one a minute from 2020-01-01: 30 in all.
    for i in 0..28 {
        let ts = JAN_2020_MS + i as i64 * 60_000;
        fx.net
            .emit(
                ALICE,
                said(&format!("t{i}"), "carol", &format!("line {i}"), Some(ts)),
            )
            .await;
    }
    alice
        .expect(WAIT, |s| body(s).as_deref() == Some("line 27"))
        .await;
    let mut all = vec!["hello room".to_owned(), "bob heard: hello room".to_owned()];
    all.extend(numbered("line", 0..28));

    // Forwards, ten at a time.
    let (page1, reply) = alice.mam_query(&room, "", &rsm(10, "")).await;
    assert_eq!(bodies(&page1), all[0..10]);
    let (complete, first, last, count) = fin(&reply);
    assert_eq!((complete.as_str(), count.as_str()), ("false", "30"));
    assert_eq!((first, last.clone()), (own_id, ids(&page1)[9].clone()));
    let (page2, reply) = alice
        .mam_query(&room, "", &rsm(10, &format!("<after>{last}</after>")))
        .await;
    assert_eq!(bodies(&page2), all[10..20]);
    assert_eq!(fin(&reply).0, "false");
    let (page3, reply) = alice
        .mam_query(
            &room,
            "",
            &rsm(10, &format!("<after>{}</after>", fin(&reply).2)),
        )
        .await;
    assert_eq!(bodies(&page3), all[20..30]);
    assert_eq!(fin(&reply).0, "true");

    // Backwards from the end: the last page, then the one before it.
    let (last_page, reply) = alice.mam_query(&room, "", &rsm(10, "<before/>")).await;
    assert_eq!(ids(&last_page), ids(&page3));
    let (complete, first, _, _) = fin(&reply);
    assert_eq!(complete, "false");
    let (before, reply) = alice
        .mam_query(&room, "", &rsm(10, &format!("<before>{first}</before>")))
        .await;
    assert_eq!(ids(&before), ids(&page2));
    let (_, reply) = alice
        .mam_query(
            &room,
            "",
            &rsm(10, &format!("<before>{}</before>", fin(&reply).1)),
        )
        .await;
    assert_eq!(
        fin(&reply).0,
        "true",
        "the first page is complete backwards"
    );

    // By date: 00:10 to 00:14 on 2020-01-01 is lines 10 to 14.
    let (window, reply) = alice
        .mam_query(
            &room,
            "<field var='start'><value>2020-01-01T00:10:00Z</value></field>\
         <field var='end'><value>2020-01-01T00:14:30Z</value></field>",
            "",
        )
        .await;
    assert_eq!(bodies(&window), numbered("line", 10..15));
    assert_eq!(fin(&reply).3, "5");
    let stamp = find_child(
        find_child(&window[0], "forwarded", FORWARD).unwrap(),
        "delay",
        DELAY,
    )
    .map(|d| attr(d, "stamp").to_owned());
    assert_eq!(stamp.as_deref(), Some("2020-01-01T00:10:00.000Z"));
    let (by_bob, _) = alice
        .mam_query(
            &room,
            &format!("<field var='with'><value>{room}/bob</value></field>"),
            "",
        )
        .await;
    assert_eq!(bodies(&by_bob), ["bob heard: hello room"]);

    // Bad ids and bad dates are refused; rooms one is not in are closed.
    let (_, reply) = alice
        .mam_query(&room, "", &rsm(10, "<after>nope</after>"))
        .await;
    assert_eq!(condition(&reply), "item-not-found");
    let (_, reply) = alice
        .mam_query(&room, "<field var='start'><value>soon</value></field>", "")
        .await;
    assert_eq!(condition(&reply), "bad-request");
    let (none, reply) = alice.mam_query(&format!("#other@{GW}"), "", "").await;
    assert!(none.is_empty());
    assert_eq!(condition(&reply), "forbidden");
    let mut dave = fx.user("dave").await;
    let (none, reply) = dave.mam_query(&room, "", "").await;
    assert!(none.is_empty());
    assert_eq!(condition(&reply), "registration-required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_shown_the_history_it_asks_for() {
    let fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    assert!(
        join(&mut alice, "al", "").await.is_empty(),
        "a new room has no history"
    );
    for i in 0..25 {
        fx.net
            .emit(
                ALICE,
                said(&format!("h{i}"), "carol", &format!("old {i}"), None),
            )
            .await;
    }
    alice
        .expect(WAIT, |s| body(s).as_deref() == Some("old 24"))
        .await;
    leave(&mut alice, "al").await;

    // By default the last 20, each from its sender, delayed, with its stanza-id.
    let history = join(&mut alice, "al", "").await;
    let texts: Vec<_> = history
        .iter()
        .map(|m| body(m).unwrap_or_default())
        .collect();
    assert_eq!(texts, numbered("old", 5..25));
    let m = &history[0];
    assert_eq!(attr(m, "type"), "groupchat");
    assert_eq!(attr(m, "from"), format!("{}/carol", room()));
    assert_eq!(attr(find_child(m, "delay", DELAY).unwrap(), "from"), room());
    assert_eq!(attr(find_child(m, "stanza-id", SID).unwrap(), "by"), room());
    leave(&mut alice, "al").await;

    let three = join(&mut alice, "al", "<history maxstanzas='3'/>").await;
    let texts: Vec<_> = three.iter().map(|m| body(m).unwrap_or_default()).collect();
    assert_eq!(texts, numbered("old", 22..25));
    leave(&mut alice, "al").await;

    assert!(join(&mut alice, "al", "<history maxstanzas='0'/>")
        .await
        .is_empty());
    assert!(join_second(&fx, "<history maxchars='0'/>").await.is_empty());
    let two = join_second(&fx, "<history maxstanzas='2'/>").await;
    assert_eq!(two.len(), 2, "a second resource gets its own history");
}

/// Another resource of alice's joins the room she is in.
async fn join_second(fx: &Fixture, history: &str) -> Vec<Element> {
    let mut phone = fx
        .connect("alice", &format!("phone-{}", uuid::Uuid::new_v4()))
        .await;
    join(&mut phone, "al", history).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_survives_a_restart() {
    let mut fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    join(&mut alice, "al", "").await;
    for i in 0..3 {
        fx.net
            .emit(
                ALICE,
                said(&format!("k{i}"), "carol", &format!("kept {i}"), None),
            )
            .await;
    }
    alice
        .expect(WAIT, |s| body(s).as_deref() == Some("kept 2"))
        .await;
    // Straight away: the last batch is written on the way out, not lost.
    fx.stop_estuary().await;
    let store = Store::open(&fx.config.store.effective_url()).await.unwrap();
    let kept = store.history(GW, "#room", 0, 10).await.unwrap();
    store.close().await;
    assert_eq!(
        kept.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        numbered("kept", 0..3)
    );

    fx.start_estuary().await;
    alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == GW && attr(s, "type").is_empty()
        })
        .await;
    let history = join(&mut alice, "al", "").await;
    assert_eq!(history.len(), 3);
    let (results, _) = alice.mam_query(&room(), "", "").await;
    assert_eq!(bodies(&results), numbered("kept", 0..3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_room_messages_is_archived_completely() {
    let fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    join(&mut alice, "al", "").await;
    const BURST: usize = 500;
    let started = tokio::time::Instant::now();
    for i in 0..BURST {
        fx.net
            .emit(
                ALICE,
                said(&format!("b{i}"), "carol", &format!("burst {i}"), None),
            )
            .await;
    }
    // What a client was shown, MAM has.
    alice
        .expect(WAIT, |s| body(s).as_deref() == Some("burst 499"))
        .await;
    let (results, reply) = alice.mam_query(&room(), "", &rsm(100, "<before/>")).await;
    let (complete, _, _, count) = fin(&reply);
    assert_eq!(count, BURST.to_string());
    assert_eq!(complete, "false");
    assert_eq!(bodies(&results), numbered("burst", 400..500));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "archiving {BURST} messages took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archiver_batches_concurrent_writers_without_loss() {
    use estuary::archive::{ArchiveError, Archiver};
    use estuary::store::{ArchiveRange, ArchivedMessage};

    let dir = tempfile::tempdir().unwrap();
    let url = world::sqlite_url(&dir.path().join("a.sqlite"));
    let store = Store::open(&url).await.unwrap();
    let archiver = Archiver::spawn(store.clone());
    let message = |writer: usize, i: usize| ArchivedMessage {
        gateway: GW.into(),
        room: "#busy".into(),
        stanza_id: format!("s{writer}-{i}"),
        remote_id: Some(format!("x{writer}-{i}")),
        nick: format!("n{writer}"),
        sender: None,
        body: format!("{writer}/{i}"),
        ts_ms: i as i64,
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let archiver = archiver.clone();
            tokio::spawn(async move {
                for i in 0..1000 {
                    archiver.push(message(w, i));
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    archiver.flush().await.unwrap();
    let all = ArchiveRange {
        gateway: GW.into(),
        room: "#busy".into(),
        ..ArchiveRange::default()
    };
    assert_eq!(store.archive_count(&all).await.unwrap(), 4000);

    // What is queued when it closes is written; nothing is taken after.
    archiver.push(message(9, 0));
    archiver.close().await.unwrap();
    archiver.push(message(9, 1));
    assert!(matches!(archiver.flush().await, Err(ArchiveError::Stopped)));
    assert_eq!(store.archive_count(&all).await.unwrap(), 4001);
}
