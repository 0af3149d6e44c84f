//! The component link under stress: keepalive, a killed server, shutdown.

mod support;
mod world;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{Fixture, GW, WAIT};
use world::{attr, body, el, find_child};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_are_answered_on_an_idle_link() {
    let fx = Fixture::start_with(|c| c.component.keepalive_secs = 1).await;
    let stats = fx.estuary.as_ref().unwrap().link(GW).unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(stats.pings_sent.load(Ordering::SeqCst) >= 2, "{stats:?}");
    assert!(stats.pongs.load(Ordering::SeqCst) >= 2, "{stats:?}");
    assert_eq!(stats.connects.load(Ordering::SeqCst), 1);
}

/// A conversation of one stanza at a time is acknowledged by a ping now and
/// then, not by one per stanza: each ping is a stanza the server must route
/// and answer, which would double its work per relayed message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_traffic_is_acknowledged_in_batches() {
    const N: usize = 60;
    let fx = Fixture::start().await;
    let echo = format!("echo@{GW}");
    let mut alice = fx.registered("alice").await;
    let stats = fx.estuary.as_ref().unwrap().link(GW).unwrap();
    let sent_before = stats.stanzas_sent.load(Ordering::SeqCst);
    let pings_before = stats.pings_sent.load(Ordering::SeqCst);
    for i in 0..N {
        let text = format!("one at a time {i}");
        alice.message(&echo, &text).await;
        let reply = format!("echo: {text}");
        alice
            .expect(WAIT, |s| body(s).as_deref() == Some(&*reply))
            .await;
    }
    // Whatever is still unacknowledged is asked about shortly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = stats.stanzas_sent.load(Ordering::SeqCst) - sent_before;
    let pings = stats.pings_sent.load(Ordering::SeqCst) - pings_before;
    assert!(sent >= N as u64, "{stats:?}");
    assert!(pings >= 1, "nothing was acknowledged: {stats:?}");
    assert!(
        pings * 4 <= sent,
        "{pings} pings for {sent} stanzas: {stats:?}"
    );
    assert_eq!(
        stats.pongs.load(Ordering::SeqCst),
        stats.pings_sent.load(Ordering::SeqCst),
        "{stats:?}"
    );
}

/// Prosody is killed while the gateway is sending a burst of messages to a
/// user, and restarted: the gateway reconnects, and every message arrives
/// (some from the user's offline store, the rest live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_queued_stanza() {
    const N: usize = 300;
    let mut fx = Fixture::start().await;
    let echo = format!("echo@{GW}");
    let mut alice = fx.registered("alice").await;
    alice.message(&echo, &format!("burst {N}")).await;
    let mut seen = BTreeSet::new();
    while seen.len() < 40 {
        let m = alice
            .expect(WAIT, |s| s.name() == "message" && attr(s, "from") == echo)
            .await;
        seen.insert(body(&m).unwrap());
    }
    fx.prosody.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    fx.prosody.restart();
    let stats = fx.estuary.as_ref().unwrap().link(GW).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats.connects.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut alice = fx.connect("alice", "again").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < N {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = alice.recv(left).await else {
            let missing: Vec<_> = (1..=N)
                .map(|i| format!("burst {i}"))
                .filter(|b| !seen.contains(b))
                .collect();
            panic!(
                "{} messages lost: {missing:?}; link {stats:?}",
                missing.len()
            );
        };
        if m.name() == "message" && attr(&m, "from") == echo {
            seen.insert(body(&m).unwrap());
        }
    }
    eprintln!("link after the kill: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_users_and_logs_sessions_out() {
    let mut fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    let room = format!("#room@{GW}");
    alice.send(el(&format!("<presence to='{room}/al'/>"))).await;
    alice
        .expect(WAIT, |s| {
            s.name() == "message" && s.get_child("subject", "jabber:client").is_some()
        })
        .await;

    fx.stop_estuary().await;
    let gone = alice
        .expect(WAIT, |s| {
            s.name() == "presence"
                && attr(s, "from") == format!("{room}/al")
                && attr(s, "type") == "unavailable"
        })
        .await;
    let x = find_child(&gone, "x", "http://jabber.org/protocol/muc#user").unwrap();
    let codes: Vec<_> = x
        .children()
        .filter(|c| c.name() == "status")
        .map(|c| attr(c, "code").to_owned())
        .collect();
    assert!(codes.contains(&"332".to_owned()), "{codes:?}");
    alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == GW && attr(s, "type") == "unavailable"
        })
        .await;
    assert!(
        fx.net.logged("logout alice@localhost"),
        "{:?}",
        fx.net.log()
    );
}
