//! Proves that each piece of the test world works, so failures in real
//! integration tests point at Estuary, not at the harness.

mod world;

use std::collections::HashSet;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use world::client::{bare_jid, base64, NS_CLIENT};
use world::{attr, body, el, find_child, free_port, Postgres, Prosody, XmppClient};

const COMPONENT: (&str, &str) = ("bridge.localhost", "s3cret");
const WAIT: Duration = Duration::from_secs(5);

async fn login(prosody: &Prosody, user: &str, resource: &str) -> XmppClient {
    XmppClient::connect(prosody.c2s_port(), user, prosody.domain(), "pw", resource).await
}

#[test]
fn free_ports_are_not_repeated() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let unique: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), ports.len());
}

#[test]
fn el_defaults_to_jabber_client() {
    let message = el("<message to='a@b'><body>hi &amp; bye</body><x xmlns='urn:x'/></message>");
    assert_eq!(message.ns(), NS_CLIENT);
    assert_eq!(attr(&message, "to"), "a@b");
    assert_eq!(attr(&message, "missing"), "");
    assert_eq!(body(&message).as_deref(), Some("hi & bye"));
    assert!(find_child(&message, "x", "urn:x").is_some());
    assert_eq!(bare_jid("a@b/res"), "a@b");
}

#[test]
fn base64_matches_rfc4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (input, expected) in cases {
        assert_eq!(base64(input.as_bytes()), expected, "input {input:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_exchange_messages_and_ping_the_server() {
    let prosody = Prosody::start(&[COMPONENT]);
    prosody.add_user("alice", "pw");
    prosody.add_user("bob", "pw");
    let mut alice = login(&prosody, "alice", "test").await;
    let mut bob = login(&prosody, "bob", "test").await;
    assert_eq!(alice.jid(), "alice@localhost/test");
    assert_eq!(bob.bare(), "bob@localhost");

    // Initial presence makes bob available for messages to his bare JID;
    // the server echoes it back, which `expect` must set aside.
    bob.presence(None, None).await;
    alice.message(&bob.bare(), "hello bob").await;
    let message = bob
        .expect(WAIT, |s| s.name() == "message" && body(s).is_some())
        .await;
    assert_eq!(body(&message).as_deref(), Some("hello bob"));
    assert_eq!(bare_jid(attr(&message, "from")), "alice@localhost");
    let echo = bob.recv(WAIT).await.expect("own presence was set aside");
    assert_eq!(echo.name(), "presence");

    let pong = alice
        .iq("localhost", "get", el("<ping xmlns='urn:xmpp:ping'/>"))
        .await;
    assert_eq!(attr(&pong, "type"), "result", "{}", String::from(&pong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_raw_reaches_the_other_client() {
    let prosody = Prosody::start(&[]);
    prosody.add_user("alice", "pw");
    prosody.add_user("bob", "pw");
    let mut alice = login(&prosody, "alice", "a").await;
    let mut bob = login(&prosody, "bob", "b").await;
    let raw = format!(
        "<message to='{}' type='chat'><body>raw</body></message>",
        bob.jid()
    );
    alice.send_raw(&raw).await;
    let message = bob.expect(WAIT, |s| body(s).is_some()).await;
    assert_eq!(body(&message).as_deref(), Some("raw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_needing_encoding_can_log_in() {
    let prosody = Prosody::start(&[]);
    prosody.add_user("carol.x-y", "pw");
    let carol = login(&prosody, "carol.x-y", "r").await;
    assert_eq!(carol.bare(), "carol.x-y@localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_survives_kill_and_restart() {
    let mut prosody = Prosody::start(&[COMPONENT]);
    prosody.add_user("alice", "pw");
    let (c2s, component) = (prosody.c2s_port(), prosody.component_port());
    let mut alice = login(&prosody, "alice", "before").await;

    prosody.kill();
    assert!(!prosody.is_running());
    assert!(alice.recv(WAIT).await.is_none());
    assert!(alice.is_closed(), "the client noticed the crash");

    prosody.restart();
    assert_eq!(
        (prosody.c2s_port(), prosody.component_port()),
        (c2s, component)
    );
    let alice = login(&prosody, "alice", "after").await;
    assert_eq!(alice.jid(), "alice@localhost/after");

    prosody.stop();
    assert!(!prosody.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_port_answers_with_a_stream_header() {
    let prosody = Prosody::start(&[COMPONENT]);
    assert_eq!(
        prosody.component_addr(),
        format!("127.0.0.1:{}", prosody.component_port())
    );
    let mut tcp = TcpStream::connect(prosody.component_addr()).await.unwrap();
    let header = format!(
        "<stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        COMPONENT.0
    );
    tcp.write_all(header.as_bytes()).await.unwrap();

    let mut received = Vec::new();
    let read_header = async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&received).contains("<stream:stream") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before a stream header");
            received.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WAIT, read_header)
        .await
        .expect("no stream header from the component port");
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains(COMPONENT.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serves_a_fresh_database() {
    let postgres = Postgres::start();
    let url = postgres.create_database("estuary_test");
    assert_eq!(url, postgres.url("estuary_test"));

    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);

    sqlx::any::install_default_drivers();
    let any = sqlx::AnyPool::connect(&postgres.fresh_database())
        .await
        .expect("connect via Any");
    let two: i32 = sqlx::query_scalar("SELECT 2")
        .fetch_one(&any)
        .await
        .unwrap();
    assert_eq!(two, 2);
    // Left open on purpose: dropping Postgres must not hang on sessions.
    std::mem::forget(any);
    pool.close().await;
}

/// The configured secret lets tokio-xmpp's own component (what Estuary
/// uses) log in, and Prosody routes its stanzas to clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_xmpp_component_logs_in_and_reaches_clients() {
    use tokio_xmpp::connect::DnsConfig;
    use tokio_xmpp::parsers::message::Message;
    use tokio_xmpp::xmlstream::Timeouts;
    use tokio_xmpp::{jid::Jid, Component, Stanza};

    let prosody = Prosody::start(&[COMPONENT]);
    prosody.add_user("bob", "pw");
    let mut bob = login(&prosody, "bob", "b").await;
    let addr = DnsConfig::addr(&prosody.component_addr());
    let mut component = Component::new_plaintext(COMPONENT.0, COMPONENT.1, addr, Timeouts::tight())
        .await
        .expect("component login with the configured secret");

    let to: Jid = bob.jid().parse().unwrap();
    let mut message = Message::chat(to).with_body(Default::default(), "from the bridge".into());
    message.from = Some(format!("room@{}", COMPONENT.0).parse().unwrap());
    component
        .send_stanza(Stanza::Message(message))
        .await
        .unwrap();

    let received = bob.expect(WAIT, |s| body(s).is_some()).await;
    assert_eq!(attr(&received, "from"), format!("room@{}", COMPONENT.0));
    assert_eq!(body(&received).as_deref(), Some("from the bridge"));

    let wrong = DnsConfig::addr(&prosody.component_addr());
    let refused = Component::new_plaintext(COMPONENT.0, "wrong", wrong, Timeouts::tight()).await;
    assert!(refused.is_err(), "a wrong secret must be refused");
}
