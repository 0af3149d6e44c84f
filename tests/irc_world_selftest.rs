//! Proves that the IRC part of the test world works: InspIRCd starts with
//! the capabilities and prefixes the IRC bridge relies on, survives load
//! and restarts, and the raw IRC client handles registration, PINGs and
//! raw bytes.

mod world;

use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use world::irc_client::MODERN_CAPS;
use world::{Inspircd, IrcClient, IrcLine};

const WAIT: Duration = Duration::from_secs(5);

fn is_command(line: &str, command: &str) -> bool {
    IrcLine::parse(line).is(command)
}

#[test]
fn irc_line_parses_tags_prefix_and_params() {
    let line = IrcLine::parse(
        "@time=2024-01-01T00:00:00.000Z;msgid=a\\sb\\:c;flag :alice!al@127.0.0.1 PRIVMSG #test :hello  there\r\n",
    );
    assert_eq!(line.tag("time"), Some("2024-01-01T00:00:00.000Z"));
    assert_eq!(line.tag("msgid"), Some("a b;c"));
    assert_eq!(line.tag("flag"), Some(""));
    assert_eq!(line.tag("missing"), None);
    assert_eq!(line.prefix.as_deref(), Some("alice!al@127.0.0.1"));
    assert_eq!(line.nick(), Some("alice"));
    assert!(line.is("privmsg"));
    assert_eq!(line.params, ["#test", "hello  there"]);
    assert_eq!(line.trailing(), Some("hello  there"));

    let line = IrcLine::parse("PING irc.localhost");
    assert_eq!(line.prefix, None);
    assert_eq!(line.command, "PING");
    assert_eq!(line.param(0), Some("irc.localhost"));

    let line = IrcLine::parse(":irc.localhost 353 bob = #test :~&@%+bob alice");
    assert_eq!(line.nick(), Some("irc.localhost"));
    assert_eq!(line.params, ["bob", "=", "#test", "~&@%+bob alice"]);

    let line = IrcLine::parse(":irc.localhost CAP * LS :");
    assert_eq!(line.params, ["*", "LS", ""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_chat_in_a_channel_with_ircv3() {
    let ircd = Inspircd::start();
    assert_eq!(ircd.name(), "irc.localhost");
    assert_eq!(ircd.addr(), format!("127.0.0.1:{}", ircd.port()));
    assert!(
        ircd.log_path().is_file(),
        "log goes to {:?}",
        ircd.log_path()
    );

    // InspIRCd 3 completes registrations on a once-a-second timer:
    // connect in parallel.
    let (mut alice, mut bob) = tokio::join!(
        IrcClient::connect_with_caps(ircd.port(), "alice", MODERN_CAPS),
        IrcClient::connect(ircd.port(), "bob"),
    );

    for cap in [
        "server-time",
        "echo-message",
        "message-tags",
        "away-notify",
        "multi-prefix",
        "extended-join",
        "account-notify",
        "userhost-in-names",
        "chghost",
        "cap-notify",
        "batch",
        "labeled-response",
    ] {
        assert!(
            alice.offers_cap(cap),
            "CAP LS lacks {cap}: {:?}",
            alice.caps_offered()
        );
    }
    for cap in MODERN_CAPS {
        assert!(
            alice.has_cap(cap),
            "{cap} not enabled: {:?}",
            alice.caps_enabled()
        );
    }
    assert!(bob.caps_enabled().is_empty());
    assert_eq!(alice.isupport("NETWORK").as_deref(), Some("EstuaryTest"));
    assert_eq!(alice.isupport("PREFIX").as_deref(), Some("(qaohv)~&@%+"));
    assert!(alice.isupport("NAMESX").is_some());
    assert!(alice.isupport("NO-SUCH-TOKEN").is_none());
    assert!(
        alice.welcome().iter().any(|l| l.contains(" 001 alice ")),
        "{:?}",
        alice.welcome()
    );

    assert_eq!(alice.join("#test").await, ["@alice"]);
    let names = bob.join("#test").await;
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"@alice".to_owned()) && names.contains(&"bob".to_owned()));
    alice
        .expect(WAIT, |l| {
            l.contains(":bob!bob@127.0.0.1 JOIN") && l.contains("#test")
        })
        .await;

    alice.privmsg("#test", "hello bob").await;
    let got = bob.expect(WAIT, |l| is_command(l, "PRIVMSG")).await;
    assert_eq!(got, ":alice!alice@127.0.0.1 PRIVMSG #test :hello bob");

    // echo-message, server-time and msgid for the client that asked.
    let echo = alice.expect(WAIT, |l| is_command(l, "PRIVMSG")).await;
    let echo = IrcLine::parse(&echo);
    assert_eq!(echo.nick(), Some("alice"));
    assert_eq!(echo.params, ["#test", "hello bob"]);
    assert!(
        echo.tag("time").is_some_and(|t| t.ends_with('Z')),
        "{echo:?}"
    );
    assert!(echo.tag("msgid").is_some_and(|m| !m.is_empty()), "{echo:?}");

    // Client tags are relayed with message-tags.
    bob.send("PRIVMSG #test :plain").await;
    let plain = alice
        .expect(WAIT, |l| l.ends_with(" PRIVMSG #test :plain"))
        .await;
    assert!(plain.starts_with('@'), "{plain}");

    // Nick changes are followed.
    bob.send("NICK robert").await;
    bob.expect(WAIT, |l| is_command(l, "NICK")).await;
    assert_eq!(bob.nick(), "robert");
    alice
        .expect(WAIT, |l| l.ends_with(":bob!bob@127.0.0.1 NICK :robert"))
        .await;

    // Raw bytes pass through, invalid UTF-8 included.
    bob.send_bytes(b"PRIVMSG #test :caf\xe9 \xff").await;
    let raw = alice
        .expect_raw(WAIT, |l| l.windows(7).any(|w| w == b"PRIVMSG"))
        .await;
    assert!(raw.ends_with(b"PRIVMSG #test :caf\xe9 \xff"), "{raw:?}");
    bob.send_bytes(b"PRIVMSG alice :\xc3\x28").await;
    let lossy = alice.expect(WAIT, |l| l.contains("PRIVMSG alice")).await;
    assert!(lossy.ends_with(":\u{fffd}("), "{lossy}");

    alice
        .expect_none(Duration::from_millis(300), |l| l.contains("PRIVMSG"))
        .await;
    bob.quit("bye").await;
    alice
        .expect(WAIT, |l| l.contains(":robert!bob@127.0.0.1 QUIT :"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oper_sets_every_prefix_mode() {
    let ircd = Inspircd::start();
    let (mut oper, mut bob, mut carol) = tokio::join!(
        IrcClient::connect(ircd.port(), "oper1"),
        IrcClient::connect_with_caps(ircd.port(), "bob", &["multi-prefix"]),
        IrcClient::connect(ircd.port(), "carol"),
    );
    assert!(bob.has_cap("multi-prefix"));
    oper.oper().await;

    bob.join("#test").await;
    carol.join("#test").await;
    // Override: the oper sets modes without being in the channel.
    oper.send("MODE #test -o+qaohv bob bob bob bob bob bob")
        .await;
    let mode = bob
        .expect(WAIT, |l| is_command(l, "MODE") && l.contains("#test"))
        .await;
    assert!(
        mode.starts_with(":oper1!oper1@127.0.0.1 MODE #test"),
        "{mode}"
    );

    let mut names = bob.names("#test").await;
    names.sort();
    assert_eq!(names, ["carol", "~&@%+bob"]);
    // Without multi-prefix only the highest prefix shows.
    let mut names = carol.names("#test").await;
    names.sort();
    assert_eq!(names, ["carol", "~bob"]);

    // KICK needs membership even for opers; SAKICK does not.
    oper.send("SAKICK #test carol :out").await;
    carol
        .expect(WAIT, |l| {
            is_command(l, "KICK") && l.contains("#test carol :out")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_connect_at_once() {
    let ircd = Inspircd::start();
    let port = ircd.port();
    let started = Instant::now();
    let clients = join_all(
        (0..100).map(|i| async move { IrcClient::connect(port, &format!("load{i}")).await }),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(clients.len(), 100);
    for (i, client) in clients.iter().enumerate() {
        assert_eq!(client.nick(), format!("load{i}"));
        assert!(client.welcome().iter().any(|l| is_command(l, "001")));
    }
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");

    // All of them are really there.
    let mut last = IrcClient::connect(port, "counter").await;
    last.send("LUSERS").await;
    let lusers = last.expect(WAIT, |l| is_command(l, "266")).await;
    assert!(lusers.contains("Current global users: 101"), "{lusers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart() {
    let mut ircd = Inspircd::start();
    let port = ircd.port();
    let mut before = IrcClient::connect(port, "before").await;
    assert!(ircd.is_running());

    ircd.kill();
    assert!(!ircd.is_running());
    assert_eq!(before.recv_line(WAIT).await, None);
    assert!(before.is_closed());

    ircd.restart();
    assert!(ircd.is_running());
    assert_eq!(ircd.port(), port);
    let mut after = IrcClient::connect(port, "before").await;
    after.join("#again").await;

    // A graceful stop works as well.
    ircd.stop();
    assert!(!ircd.is_running());
    assert_eq!(
        after.recv_line(WAIT).await.map(|l| l.starts_with("ERROR")),
        Some(true)
    );
}

/// The client against a scripted fake server: multi-line CAP LS,
/// CAP REQ only for offered caps, PINGs answered and not returned.
#[tokio::test]
async fn client_answers_pings_and_negotiates_caps() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut got = Vec::new();
        let mut next = async || {
            let line = lines.next_line().await.unwrap().expect("client line");
            got.push(line.clone());
            line
        };
        assert_eq!(next().await, "CAP LS 302");
        assert_eq!(next().await, "NICK tester");
        assert_eq!(next().await, "USER tester 0 * :tester");
        write
            .write_all(b":fake CAP * LS * :server-time batch\r\n:fake CAP * LS :echo-message\r\n")
            .await
            .unwrap();
        assert_eq!(next().await, "CAP REQ :server-time echo-message");
        write
            .write_all(b":fake CAP tester ACK :server-time echo-message\r\n")
            .await
            .unwrap();
        assert_eq!(next().await, "CAP END");
        write
            .write_all(b"PING :early\r\n:fake 001 tester :hi\r\n:fake 422 tester :no MOTD\r\n")
            .await
            .unwrap();
        assert_eq!(next().await, "PONG :early");
        write
            .write_all(b"@time=x :fake PING :tok 123\r\n:fake NOTICE tester :after\r\n")
            .await
            .unwrap();
        assert_eq!(next().await, "PONG :tok 123");
        got
    });

    let mut client =
        IrcClient::connect_with_caps(port, "tester", &["server-time", "echo-message", "sasl"])
            .await;
    assert_eq!(
        client.caps_offered(),
        ["server-time", "batch", "echo-message"]
    );
    assert_eq!(client.caps_enabled(), ["server-time", "echo-message"]);
    let line = client.recv_line(WAIT).await.expect("a line after the PING");
    assert_eq!(line, ":fake NOTICE tester :after");
    server.await.unwrap();
}
