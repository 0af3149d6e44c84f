//! The server task against scripted IRC servers.

use super::*;
use tokio::sync::mpsc;

/// The task's next event, within ten seconds.
/// The next event but the server's own presence (see
/// `the_servers_own_presence_follows_the_connection`).
async fn next_event(received: &mut mpsc::Receiver<Box<RemoteEvent>>) -> Box<RemoteEvent> {
    loop {
        let event = next_event_at_all(received).await;
        if !matches!(&*event, RemoteEvent::Presence(p) if p.user.as_str() == "srv") {
            return event;
        }
    }
}

async fn next_event_at_all(received: &mut mpsc::Receiver<Box<RemoteEvent>>) -> Box<RemoteEvent> {
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("events stopped")
        .expect("the task ended")
}

/// A server task for alice on the scripted server at `port`, and the
/// events it reports.
fn connect_alice(port: u16) -> (ServerHandle, mpsc::Receiver<Box<RemoteEvent>>) {
    connect(port, crate::scripted_server::alice(), &[])
}

/// A server task for `identity`, following `contacts`, on the scripted
/// server at `port`, and the events it reports.
fn connect(
    port: u16,
    identity: crate::connection::Identity,
    contacts: &[&str],
) -> (ServerHandle, mpsc::Receiver<Box<RemoteEvent>>) {
    let (events, received) = EventSender::channel(64);
    let server = spawn(
        "srv".into(),
        crate::scripted_server::options(port),
        identity,
        None,
        events,
        contacts.iter().map(|c| (*c).to_owned()).collect(),
        Default::default(),
    );
    (server, received)
}

/// Follow `nick` as a contact, or stop.
fn watch(server: &ServerHandle, nick: &str, watch: bool) {
    server
        .send(ServerCommand::Watch {
            nick: nick.to_owned(),
            watch,
        })
        .unwrap();
}

/// Join `channel` and wait for the task to take it.
async fn join(server: &ServerHandle, channel: &str) {
    let (reply, done) = oneshot::channel();
    server
        .send(ServerCommand::Join {
            channel: channel.to_owned(),
            key: None,
            reply,
        })
        .unwrap();
    done.await.unwrap().unwrap();
}

/// A scripted server: alice joins #one (with op and bob) and #two (with
/// op only); then bob goes away, changes nick and quits, and op quits.
/// What names no channel is reported where that nick is, and only there.
#[tokio::test]
async fn quit_nick_and_away_are_reported_in_the_nicks_channels_only() {
    let mut joins = 0;
    let (port, _seen) = crate::scripted_server::start(move |line| {
        let mut reply = match line {
            "CAP LS 302" => vec!["CAP * LS :away-notify"],
            l if l.starts_with("CAP REQ") => vec!["CAP * ACK :away-notify"],
            "CAP END" => vec![
                ":srv 001 alice :hi",
                ":srv 005 alice PREFIX=(ov)@+ CHANTYPES=# :are supported",
                ":srv 376 alice :end",
            ],
            "JOIN #one" => vec![
                ":alice!a@h JOIN #one",
                ":srv 353 alice = #one :alice @op bob",
                ":srv 366 alice #one :end",
            ],
            "JOIN #two" => vec![
                ":alice!a@h JOIN #two",
                ":srv 353 alice = #two :alice @op",
                ":srv 366 alice #two :end",
            ],
            _ => vec![],
        };
        if line.starts_with("JOIN") {
            joins += 1;
            if joins == 2 {
                reply.extend([
                    ":bob!b@h AWAY :lunch",
                    ":bob!b@h NICK bobby",
                    ":bobby!b@h QUIT :bye",
                    ":op!o@h QUIT :gone",
                ]);
            }
        }
        reply
    })
    .await;
    let (server, mut received) = connect_alice(port);
    for channel in ["#one", "#two"] {
        join(&server, channel).await;
    }
    let one = IrcAddress::remote("#one", "srv", None);
    let two = IrcAddress::remote("#two", "srv", None);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let event = next_event(&mut received).await;
        match *event {
            RemoteEvent::Join { .. } => {}
            RemoteEvent::OccupantStatus {
                room, nick, show, ..
            } => {
                assert_eq!(show, PresenceShow::Away);
                seen.push((room, format!("away {nick}")));
            }
            RemoteEvent::NickChange { room, old, new, .. } => {
                seen.push((room, format!("nick {old} {new}")));
            }
            RemoteEvent::Part { room, nick, .. } => seen.push((room, format!("part {nick}"))),
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    let mut expected = vec![
        (one.clone(), "away bob".to_owned()),
        (one.clone(), "nick bob bobby".to_owned()),
        (one.clone(), "part bobby".to_owned()),
        (one, "part op".to_owned()),
        (two, "part op".to_owned()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    server
        .send(ServerCommand::Quit {
            message: "bye".into(),
        })
        .unwrap();
}

async fn next_presence(
    received: &mut mpsc::Receiver<Box<RemoteEvent>>,
) -> (String, PresenceShow, Option<String>) {
    let event = next_event(received).await;
    match *event {
        RemoteEvent::Presence(p) => (p.user.to_string(), p.show, p.status),
        other => panic!("unexpected {other:?}"),
    }
}

/// Contacts are followed through MONITOR: those the connection starts
/// with in one line, later ones as they come, and none once dropped.
/// Online, away and offline reach the user as contact presence, and a
/// lost connection shows every online contact offline.
#[tokio::test]
async fn contacts_are_followed_through_monitor() {
    let (port, seen) = crate::scripted_server::start(|line| match line {
        "CAP LS 302" => vec!["CAP * LS :extended-monitor"],
        l if l.starts_with("CAP REQ") => vec!["CAP * ACK :extended-monitor"],
        "CAP END" => vec![
            ":srv 001 alice :hi",
            ":srv 005 alice MONITOR=10 CASEMAPPING=ascii :are supported",
            ":srv 376 alice :end",
        ],
        "MONITOR + Bob,carol" => vec![":srv 730 alice :bob!b@h", ":srv 731 alice :carol"],
        "MONITOR + dave" => vec![":srv 730 alice :dave!d@h", ":dave!d@h AWAY :lunch"],
        "MONITOR - carol" => vec!["ERROR :closing"],
        _ => vec![],
    })
    .await;
    let (server, mut received) = connect(port, crate::scripted_server::alice(), &["Bob", "carol"]);
    // As the user named them, though the server spells it otherwise.
    assert_eq!(
        next_presence(&mut received).await,
        ("Bob%srv".into(), PresenceShow::Online, None)
    );
    watch(&server, "dave", true);
    assert_eq!(
        next_presence(&mut received).await,
        ("dave%srv".into(), PresenceShow::Online, None)
    );
    assert_eq!(
        next_presence(&mut received).await,
        ("dave%srv".into(), PresenceShow::Away, Some("lunch".into()))
    );
    watch(&server, "carol", false);
    let mut gone = vec![
        next_presence(&mut received).await,
        next_presence(&mut received).await,
    ];
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    let why = Some("Disconnected from srv".to_owned());
    assert_eq!(
        gone,
        [
            ("Bob%srv".into(), PresenceShow::Offline, why.clone()),
            ("dave%srv".into(), PresenceShow::Offline, why),
        ]
    );
    server
        .send(ServerCommand::Quit {
            message: "bye".into(),
        })
        .unwrap();
    let lines = seen.await.unwrap();
    let monitor: Vec<_> = lines.iter().filter(|l| l.starts_with("MONITOR")).collect();
    assert_eq!(
        monitor,
        ["MONITOR + Bob,carol", "MONITOR + dave", "MONITOR - carol"]
    );
}

/// A server without MONITOR is asked with ISON: every contact when the
/// connection opens, a new one at once; its answers are the contacts'
/// presence, and an ISON the user typed is theirs to read.
#[tokio::test]
async fn without_monitor_contacts_are_asked_after_with_ison() {
    let (port, seen) = crate::scripted_server::start(|line| match line {
        "CAP LS 302" => vec!["CAP * LS :"],
        "CAP END" => vec![
            ":srv 001 alice :hi",
            ":srv 005 alice CHANTYPES=# :are supported",
            ":srv 376 alice :end",
        ],
        "ISON bob carol" => vec![":srv 303 alice :bob"],
        "ISON dave" => vec![":srv 303 alice :dave"],
        "ISON zed" => vec![":srv 303 alice :zed"],
        _ => vec![],
    })
    .await;
    let (server, mut received) = connect(port, crate::scripted_server::alice(), &["bob", "carol"]);
    assert_eq!(
        next_presence(&mut received).await,
        ("bob%srv".into(), PresenceShow::Online, None)
    );
    watch(&server, "dave", true);
    assert_eq!(
        next_presence(&mut received).await,
        ("dave%srv".into(), PresenceShow::Online, None)
    );
    let (reply, _) = oneshot::channel();
    server
        .send(ServerCommand::Say {
            target: String::new(),
            text: "ISON zed".into(),
            kind: MessageKind::Normal,
            reply_to: None,
            reply,
        })
        .unwrap();
    let event = next_event(&mut received).await;
    match *event {
        RemoteEvent::Message(m) => assert_eq!(m.body, "zed"),
        other => panic!("unexpected {other:?}"),
    }
    server
        .send(ServerCommand::Quit {
            message: "bye".into(),
        })
        .unwrap();
    let lines = seen.await.unwrap();
    let ison: Vec<_> = lines.iter().filter(|l| l.starts_with("ISON")).collect();
    assert_eq!(ison, ["ISON bob carol", "ISON dave", "ISON zed"]);
}

/// What the server says while the connection registers reaches the
/// user from the server's JID once connected: its notices, a failed
/// SASL login, and the message of the day as one message.
#[tokio::test]
async fn registration_notices_and_the_motd_are_shown() {
    let (port, _seen) = crate::scripted_server::start(|line| match line {
        "CAP LS 302" => vec![
            ":srv NOTICE * :*** Looking up your hostname",
            "CAP * LS :sasl",
        ],
        l if l.starts_with("CAP REQ") => vec!["CAP * ACK :sasl"],
        "AUTHENTICATE PLAIN" => vec!["AUTHENTICATE +"],
        l if l.starts_with("AUTHENTICATE ") => {
            vec![":srv 904 alice :SASL authentication failed"]
        }
        "CAP END" => vec![
            ":srv 001 alice :hi",
            ":srv 375 alice :- srv Message of the day -",
            ":srv 372 alice :- be nice",
            ":srv 372 alice :- no flooding",
            ":srv 376 alice :End of /MOTD command.",
        ],
        _ => vec![],
    })
    .await;
    let identity = crate::connection::Identity {
        password: Some("wrong".into()),
        ..crate::scripted_server::alice()
    };
    let (server, mut received) = connect(port, identity, &[]);
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let event = next_event(&mut received).await;
        match *event {
            RemoteEvent::Message(m) => {
                assert_eq!(m.sender.as_str(), "srv");
                bodies.push(m.body);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        bodies,
        [
            "*** Looking up your hostname",
            "SASL authentication failed: SASL authentication failed",
            "Message of the day:\n- be nice\n- no flooding",
        ]
    );
    server
        .send(ServerCommand::Quit {
            message: "bye".into(),
        })
        .unwrap();
}

#[test]
fn local_ids_are_told_from_msgids() {
    let mut ids = LocalIds::new();
    assert!(LocalIds::is_local(&ids.next("in")));
    assert!(LocalIds::is_local(&ids.next("out")));
    for msgid in ["483~1796146768~0", "abc-def", "in-xyz-1", "AAAA-BBBB"] {
        assert!(!LocalIds::is_local(msgid), "{msgid}");
    }
}

/// IRCv3 standard replies reach the user as the server's notices,
/// never silently dropped.
#[tokio::test]
async fn standard_replies_are_shown() {
    let (port, _seen) = crate::scripted_server::start(|line| match line {
        "CAP LS 302" => vec!["CAP * LS :"],
        "CAP END" => vec![":srv 001 alice :hi", ":srv 376 alice :end"],
        "LIST" => vec![":srv FAIL LIST TEMPORARILY_UNAVAILABLE :Try again later"],
        _ => vec![],
    })
    .await;
    let (server, mut received) = connect_alice(port);
    // Answering a command of the gateway's: that command fails with it.
    let (reply, listing) = oneshot::channel();
    server.send(ServerCommand::List { reply }).unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(10), listing)
        .await
        .expect("the listing never ended")
        .unwrap();
    assert_eq!(
        failed,
        Err(BridgeError::Unavailable("Try again later".into()))
    );
    // Otherwise, for the user to read.
    server
        .send(ServerCommand::Say {
            target: String::new(),
            text: "LIST".into(),
            kind: MessageKind::Normal,
            reply_to: None,
            reply: oneshot::channel().0,
        })
        .unwrap();
    let event = next_event(&mut received).await;
    match *event {
        RemoteEvent::Message(m) => {
            assert_eq!(m.body, "LIST FAIL: Try again later")
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A standard reply refusing the nick the user asked for is a refused
/// nick change in the joined rooms, as a 433 is; one refusing a join
/// naming the channel, a refused join.
#[tokio::test]
async fn fail_replies_refuse_the_nick_or_the_join_asked_for() {
    let (port, _seen) = crate::scripted_server::start(|line| match line {
        "CAP LS 302" => vec!["CAP * LS :"],
        "CAP END" => vec![":srv 001 alice :hi", ":srv 376 alice :end"],
        "JOIN #one" => vec![
            ":alice!a@h JOIN #one",
            ":srv 353 alice = #one :alice",
            ":srv 366 alice #one :end",
        ],
        "NICK bad" => vec![":srv FAIL NICK NICKNAME_RESERVED bad :That nick is reserved"],
        "JOIN #two" => vec![":srv FAIL JOIN CHANNEL_RESTRICTED #two :Not for you"],
        _ => vec![],
    })
    .await;
    let (server, mut received) = connect_alice(port);
    join(&server, "#one").await;
    server
        .send(ServerCommand::Nick { nick: "bad".into() })
        .unwrap();
    loop {
        let event = next_event(&mut received).await;
        match *event {
            RemoteEvent::Join { .. } => {}
            RemoteEvent::NickRefused {
                nick, why, text, ..
            } => {
                assert_eq!((nick.as_str(), why), ("bad", NickRefusal::NotAllowed));
                assert_eq!(text, "That nick is reserved");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // And one refusing a join, the join.
    join(&server, "#two").await;
    let event = next_event(&mut received).await;
    match *event {
        RemoteEvent::JoinRefused { room, text, .. } => {
            assert_eq!(room.as_str(), "#two%srv");
            assert_eq!(text, "Not for you");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A server that keeps channel history is asked for it on each join;
/// what comes in its `chathistory` batch is marked played back, and
/// what follows the batch is not.
#[tokio::test]
async fn a_join_asks_for_the_history_the_server_kept() {
    let (port, _seen) = crate::scripted_server::start(|line| match line {
        "CAP LS 302" => vec!["CAP * LS :batch draft/chathistory message-tags server-time"],
        l if l.starts_with("CAP REQ") => {
            vec!["CAP * ACK :batch draft/chathistory message-tags server-time"]
        }
        "CAP END" => vec![
            ":srv 001 alice :hi",
            ":srv 005 alice CHATHISTORY=100 CHANTYPES=# :are supported",
            ":srv 376 alice :end",
        ],
        "JOIN #one" => vec![
            ":alice!a@h JOIN #one",
            ":srv 353 alice = #one :alice bob",
            ":srv 366 alice #one :end",
        ],
        "CHATHISTORY LATEST #one * 50" => vec![
            ":srv BATCH +h1 chathistory #one",
            "@batch=h1;msgid=m1;time=2026-01-01T00:00:00.000Z :bob!b@h PRIVMSG #one :earlier",
            ":srv BATCH -h1",
            "@msgid=m2 :bob!b@h PRIVMSG #one :now",
        ],
        _ => vec![],
    })
    .await;
    let (server, mut received) = connect_alice(port);
    join(&server, "#one").await;
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let event = next_event(&mut received).await;
        match *event {
            RemoteEvent::Join { .. } => {}
            RemoteEvent::Message(m) => messages.push((m.body, m.replayed, m.id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        messages,
        [
            ("earlier".to_owned(), true, "m1".to_owned()),
            ("now".to_owned(), false, "m2".to_owned()),
        ]
    );
}

/// A two-line message the channel refuses line by line is reported
/// refused once and never echoed; the next message, heard, is echoed
/// under its own id.
#[tokio::test]
async fn a_refused_message_is_reported_once_and_never_echoed() {
    let (port, _seen) = crate::scripted_server::start(|line| match line {
        "CAP LS 302" => vec!["CAP * LS :echo-message"],
        l if l.starts_with("CAP REQ") => vec!["CAP * ACK :echo-message"],
        "CAP END" => vec![
            ":srv 001 alice :hi",
            ":srv 005 alice CHANTYPES=# :are supported",
            ":srv 376 alice :end",
        ],
        "JOIN #m" => vec![
            ":alice!a@h JOIN #m",
            ":srv 353 alice = #m :alice @op",
            ":srv 366 alice #m :end",
        ],
        "PRIVMSG #m one" | "PRIVMSG #m two" => {
            vec![":srv 404 alice #m :Cannot send to channel (+m)"]
        }
        "PRIVMSG #m three" => vec![":alice!a@h PRIVMSG #m :three"],
        _ => vec![],
    })
    .await;
    let (server, mut received) = connect_alice(port);
    join(&server, "#m").await;
    let say = |text: &str| {
        let (reply, id) = oneshot::channel();
        server
            .send(ServerCommand::Say {
                target: "#m".into(),
                text: text.into(),
                kind: MessageKind::Normal,
                reply_to: None,
                reply,
            })
            .unwrap();
        id
    };
    let refused_id = say("one\ntwo").await.unwrap().unwrap();
    let heard_id = say("three").await.unwrap().unwrap();
    let mut refusals = Vec::new();
    loop {
        let event = next_event(&mut received).await;
        match *event {
            RemoteEvent::Join { .. } => {}
            RemoteEvent::SendRefused { id, why, .. } => refusals.push((id, why)),
            RemoteEvent::Message(m) => {
                assert!(m.from_self);
                assert_eq!(m.sent_as.as_deref().unwrap_or(&m.id), heard_id);
                assert_eq!(m.body, "three");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refusals, [(refused_id, SendRefusal::Forbidden)]);
    server
        .send(ServerCommand::Quit {
            message: "bye".into(),
        })
        .unwrap();
}

#[test]
fn local_ids_differ_between_connections_and_grow_with_time() {
    let mut first = LocalIds::new();
    let mut second = LocalIds::new();
    // Two connections started in the same millisecond still differ.
    second.started_ms = first.started_ms;
    while second.salt == first.salt {
        second.salt = rand::Rng::random(&mut rand::rng());
    }
    let a = first.next("out");
    let b = second.next("out");
    assert_ne!(a, b);
    assert_ne!(first.next("out"), a, "the counter moves on");
    // A connection started later sorts after, whatever its salt.
    let mut later = LocalIds::new();
    later.started_ms = first.started_ms + 1;
    later.salt = 0;
    first.salt = u32::MAX;
    assert!(later.next("out") > first.next("out"));
}

/// The server's own presence (its JID in a roster, as biboumi has it):
/// online once registered, offline when the connection ends.
#[tokio::test]
async fn the_servers_own_presence_follows_the_connection() {
    let (port, _seen) = crate::scripted_server::start(|line| match line {
        "CAP LS 302" => vec!["CAP * LS :"],
        "CAP END" => vec![":srv 001 alice :hi", ":srv 376 alice :end"],
        _ => vec![],
    })
    .await;
    let (server, mut received) = connect_alice(port);
    let online = next_event_at_all(&mut received).await;
    assert!(
        matches!(&*online, RemoteEvent::Presence(p)
            if p.user.as_str() == "srv"
                && p.show == PresenceShow::Online
                && p.status.as_deref() == Some("Connected to srv")),
        "{online:?}"
    );
    server
        .send(ServerCommand::Quit {
            message: "bye".into(),
        })
        .unwrap();
    loop {
        let event = next_event_at_all(&mut received).await;
        if let RemoteEvent::Presence(p) = &*event {
            assert_eq!(p.user.as_str(), "srv");
            assert_eq!(p.show, PresenceShow::Offline);
            break;
        }
    }
}

/// Reactions go out only where the server passes them: with message-tags,
/// and the tags not denied (CLIENTTAGDENY); and only to a message the
/// server gave a msgid. Otherwise the user is told, and nothing is sent.
#[tokio::test]
async fn reactions_are_refused_where_the_server_passes_none() {
    for (caps, isupport, sent) in [
        ("", "CHANTYPES=#", false),
        (
            "message-tags",
            "CHANTYPES=# CLIENTTAGDENY=draft/react",
            false,
        ),
        (
            "message-tags",
            "CHANTYPES=# CLIENTTAGDENY=*,-draft/react,-draft/reply",
            true,
        ),
    ] {
        // The script's lines live as long as the test process; three small leaks.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let ls = leak(format!("CAP * LS :{caps}"));
        let ack = leak(format!("CAP * ACK :{caps}"));
        let welcome = leak(format!(":srv 005 alice {isupport} :are supported"));
        let (port, seen) = crate::scripted_server::start(move |line| match line {
            "CAP LS 302" => vec![ls],
            l if l.starts_with("CAP REQ") => vec![ack],
            "CAP END" => vec![":srv 001 alice :hi", welcome, ":srv 376 alice :end"],
            _ => vec![],
        })
        .await;
        let (server, _received) = connect_alice(port);
        let react = |msgid: &str, emojis: &[&str]| {
            let (reply, answer) = oneshot::channel();
            server
                .send(ServerCommand::React {
                    target: "#m".into(),
                    msgid: msgid.into(),
                    emojis: emojis.iter().map(|e| (*e).to_owned()).collect(),
                    reply,
                })
                .unwrap();
            answer
        };
        let answer = react("m1", &["👍"]).await.unwrap();
        assert_eq!(answer.is_ok(), sent, "{caps} {isupport}: {answer:?}");
        if sent {
            let local = react(&LocalIds::new().next("in"), &["👍"]).await.unwrap();
            assert!(
                matches!(local, Err(BridgeError::Unsupported(_))),
                "{local:?}"
            );
            let bell = react("m1", &["a\u{7}"]).await.unwrap();
            assert!(matches!(bell, Err(BridgeError::BadRequest(_))), "{bell:?}");
        } else {
            assert!(matches!(answer, Err(BridgeError::Unsupported(_))));
        }
        server
            .send(ServerCommand::Quit {
                message: "bye".into(),
            })
            .unwrap();
        let tagmsgs: Vec<_> = seen
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.contains("TAGMSG"))
            .collect();
        let expected: &[&str] = if sent {
            &["@+draft/reply=m1;+draft/react=👍 TAGMSG #m"]
        } else {
            &[]
        };
        assert_eq!(tagmsgs, expected, "{caps} {isupport}");
    }
}
