//! The gateway core end to end: a real Prosody, Estuary in this process with
//! the loopback bridge, and raw XMPP clients. Each test is one behaviour.

mod support;
mod world;

use std::sync::atomic::Ordering;
use std::time::Duration;

use estuary_bridge::{PresenceShow, RemoteAddress, RemoteEvent, RemoteMessage, RemotePresence};
use support::{condition, register, Fixture, GW, WAIT};
use world::{attr, body, el, find_child, Element};

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const SID: &str = "urn:xmpp:sid:0";

fn is_message_from<'a>(from: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |s| s.name() == "message" && attr(s, "from") == from && body(s).is_some()
}

fn features(info: &Element) -> Vec<String> {
    let query = find_child(info, "query", DISCO_INFO).expect("disco#info query");
    query
        .children()
        .filter(|c| c.name() == "feature")
        .map(|c| attr(c, "var").to_owned())
        .collect()
}

fn identity(info: &Element) -> (String, String) {
    let query = find_child(info, "query", DISCO_INFO).expect("disco#info query");
    let id = query.get_child("identity", DISCO_INFO).expect("identity");
    (attr(id, "category").to_owned(), attr(id, "type").to_owned())
}

fn statuses(p: &Element) -> Vec<String> {
    find_child(p, "x", MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .map(|c| attr(c, "code").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_for_log(fx: &Fixture, entry: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !fx.net.logged(entry) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the network never saw {entry:?}; it saw {:#?}",
            fx.net.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_disco_version_and_ping() {
    let fx = Fixture::start().await;
    let mut alice = fx.user("alice").await;

    let info = alice
        .iq(GW, "get", el(&format!("<query xmlns='{DISCO_INFO}'/>")))
        .await;
    assert_eq!(attr(&info, "type"), "result");
    assert_eq!(identity(&info), ("gateway".into(), "loopback".into()));
    let f = features(&info);
    for feature in [
        "jabber:iq:register",
        COMMANDS,
        "urn:xmpp:ping",
        "jabber:iq:version",
    ] {
        assert!(f.iter().any(|x| x == feature), "missing {feature} in {f:?}");
    }

    let items = alice
        .iq(GW, "get", el(&format!("<query xmlns='{DISCO_ITEMS}'/>")))
        .await;
    assert_eq!(attr(&items, "type"), "result");

    let version = alice
        .iq(GW, "get", el("<query xmlns='jabber:iq:version'/>"))
        .await;
    let name = find_child(&version, "query", "jabber:iq:version")
        .and_then(|q| q.get_child("name", "jabber:iq:version"))
        .map(Element::text);
    assert_eq!(name.as_deref(), Some("Estuary"));

    let pong = alice
        .iq(GW, "get", el("<ping xmlns='urn:xmpp:ping'/>"))
        .await;
    assert_eq!(attr(&pong, "type"), "result");

    // XEP-0100: the gateway turns a typed address into a JID, escaping it.
    let reply = alice
        .iq(
            GW,
            "set",
            el("<query xmlns='jabber:iq:gateway'><prompt>d'artagnan</prompt></query>"),
        )
        .await;
    let jid = find_child(&reply, "query", "jabber:iq:gateway")
        .and_then(|q| q.get_child("jid", "jabber:iq:gateway"))
        .map(Element::text);
    assert_eq!(jid, Some(format!("d\\27artagnan@{GW}")));

    let room = alice
        .iq(
            &format!("#room@{GW}"),
            "get",
            el(&format!("<query xmlns='{DISCO_INFO}'/>")),
        )
        .await;
    assert_eq!(identity(&room), ("conference".into(), "text".into()));
    // What clients check before they rely on it: stanza-ids they may take
    // for MAM (Conversations, Dino), reflections under the sender's id,
    // self-pings answered, real JIDs, and what the network can do.
    let features = features(&room);
    for feature in [
        "http://jabber.org/protocol/muc",
        "urn:xmpp:mam:2",
        "urn:xmpp:sid:0",
        "http://jabber.org/protocol/muc#stable_id",
        "http://jabber.org/protocol/muc#self-ping-optimization",
        "muc_nonanonymous",
        "urn:xmpp:reactions:0",
    ] {
        assert!(
            features.iter().any(|f| f == feature),
            "{feature}: {features:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_gateway_cannot_serve_gets_an_error() {
    let fx = Fixture::start().await;
    let mut alice = fx.user("alice").await;

    let unknown = alice
        .iq(GW, "get", el("<query xmlns='urn:example:nothing'/>"))
        .await;
    assert_eq!(condition(&unknown), "service-unavailable");

    alice
        .send(el(&format!(
            "<message to='{GW}' id='m0'><body>hello?</body></message>"
        )))
        .await;
    let bounced = alice
        .expect(WAIT, |s| {
            s.name() == "message" && attr(s, "type") == "error"
        })
        .await;
    assert_eq!(condition(&bounced), "service-unavailable");

    // Escaping that decodes to a leading space, and a name the network rejects.
    for bad in [format!("\\20lead@{GW}"), format!("bad!name@{GW}")] {
        let reply = alice
            .iq(&bad, "get", el(&format!("<query xmlns='{DISCO_INFO}'/>")))
            .await;
        assert_eq!(condition(&reply), "jid-malformed", "{bad}");
    }

    // Talking to a remote user before registering.
    alice
        .send(el(&format!(
            "<message to='echo@{GW}' id='m1' type='chat'><body>hi</body></message>"
        )))
        .await;
    let refused = alice
        .expect(WAIT, |s| s.name() == "message" && attr(s, "id") == "m1")
        .await;
    assert_eq!(condition(&refused), "registration-required");
    assert!(
        fx.net.log().is_empty(),
        "nothing may reach the network: {:?}",
        fx.net.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_stanza_gets_bad_request_and_the_link_survives() {
    let fx = Fixture::start().await;
    let mut alice = fx.user("alice").await;

    // An iq get must carry exactly one payload; this one carries none.
    alice
        .send(el(&format!("<iq to='{GW}' type='get' id='bad1'/>")))
        .await;
    let reply = alice.expect(WAIT, |s| attr(s, "id") == "bad1").await;
    assert_eq!(attr(&reply, "type"), "error");
    assert_eq!(condition(&reply), "bad-request");

    // A message whose type is not one of RFC 6121's.
    alice
        .send(el(&format!(
            "<message to='echo@{GW}' type='bogus' id='bad2'><body>x</body></message>"
        )))
        .await;
    let reply = alice.expect(WAIT, |s| attr(s, "id") == "bad2").await;
    assert_eq!(condition(&reply), "bad-request");

    let pong = alice
        .iq(GW, "get", el("<ping xmlns='urn:xmpp:ping'/>"))
        .await;
    assert_eq!(attr(&pong, "type"), "result");
    let stats = fx.estuary.as_ref().unwrap().link(GW).unwrap();
    assert_eq!(
        stats.connects.load(Ordering::SeqCst),
        1,
        "the link must not have dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_who_are_not_allowed_are_refused() {
    let fx = Fixture::start_with(|c| c.gateways[0].allowed = vec!["example.org".into()]).await;
    let mut alice = fx.user("alice").await;
    let reply = register(&mut alice, "alice", "pw").await;
    assert_eq!(condition(&reply), "forbidden");
    let info = alice
        .iq(GW, "get", el(&format!("<query xmlns='{DISCO_INFO}'/>")))
        .await;
    assert_eq!(condition(&info), "forbidden");
    assert!(
        fx.net.log().is_empty(),
        "nothing may reach the network: {:?}",
        fx.net.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_stores_credentials_logs_in_and_can_be_removed() {
    let fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    wait_for_log(&fx, "login alice@localhost as alice").await;
    let store = &fx.estuary.as_ref().unwrap().store;
    let account = store
        .account(GW, "alice@localhost")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(account.credentials.get("password"), Some("pw"));

    // The form shows the user as registered, with the user name but never the password.
    let form = alice
        .iq(GW, "get", el("<query xmlns='jabber:iq:register'/>"))
        .await;
    let query = find_child(&form, "query", "jabber:iq:register").unwrap();
    assert!(query
        .get_child("registered", "jabber:iq:register")
        .is_some());
    let xml = String::from(&form);
    assert!(xml.contains(">alice<"), "{xml}");
    assert!(
        !xml.contains(">pw<"),
        "the password must not be echoed: {xml}"
    );

    let removed = alice
        .iq(
            GW,
            "set",
            el("<query xmlns='jabber:iq:register'><remove/></query>"),
        )
        .await;
    assert_eq!(attr(&removed, "type"), "result");
    alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == GW && attr(s, "type") == "unavailable"
        })
        .await;
    wait_for_log(&fx, "logout alice@localhost").await;
    assert!(store
        .account(GW, "alice@localhost")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_refused_and_store_nothing() {
    let fx = Fixture::start().await;
    let mut alice = fx.user("alice").await;
    let store = &fx.estuary.as_ref().unwrap().store;

    let missing = alice.submit_registration(GW, &[("user", "alice")]).await;
    assert_eq!(condition(&missing), "not-acceptable");

    let long = "x".repeat(300);
    let oversized = register(&mut alice, &long, "pw").await;
    assert_eq!(condition(&oversized), "not-acceptable");

    let huge = "y".repeat(20_000);
    let too_big = register(&mut alice, "alice", &huge).await;
    assert_eq!(condition(&too_big), "policy-violation");

    let wrong = register(&mut alice, "alice", "wrong").await;
    assert_eq!(condition(&wrong), "not-authorized");

    let not_submit = alice
        .iq(
            GW,
            "set",
            el("<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='form'/></query>"),
        )
        .await;
    assert_eq!(condition(&not_submit), "bad-request");

    assert!(store
        .account(GW, "alice@localhost")
        .await
        .unwrap()
        .is_none());
    assert!(!fx.net.log().iter().any(|l| l.starts_with("login")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_works_as_an_adhoc_command_too() {
    let fx = Fixture::start().await;
    let mut alice = fx.user("alice").await;

    let list = alice
        .iq(
            GW,
            "get",
            el(&format!("<query xmlns='{DISCO_ITEMS}' node='{COMMANDS}'/>")),
        )
        .await;
    let xml = String::from(&list);
    assert!(xml.contains("node='register'"), "{xml}");
    assert!(
        !xml.contains("node='unregister'"),
        "not registered yet: {xml}"
    );

    let form = alice
        .iq(
            GW,
            "set",
            el(&format!(
                "<command xmlns='{COMMANDS}' node='register' action='execute'/>"
            )),
        )
        .await;
    let command = find_child(&form, "command", COMMANDS).expect("command");
    assert_eq!(attr(command, "status"), "executing");
    let session = attr(command, "sessionid").to_owned();
    assert!(command.get_child("x", "jabber:x:data").is_some());

    let done = alice
        .iq(
            GW,
            "set",
            el(&format!(
                "<command xmlns='{COMMANDS}' node='register' sessionid='{session}' action='complete'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='user'><value>alice</value></field>\
                 <field var='password'><value>pw</value></field></x></command>"
            )),
        )
        .await;
    assert_eq!(
        attr(find_child(&done, "command", COMMANDS).unwrap(), "status"),
        "completed"
    );
    wait_for_log(&fx, "login alice@localhost as alice").await;

    let done = alice
        .iq(
            GW,
            "set",
            el(&format!("<command xmlns='{COMMANDS}' node='unregister'/>")),
        )
        .await;
    assert_eq!(
        attr(find_child(&done, "command", COMMANDS).unwrap(), "status"),
        "completed"
    );
    let store = &fx.estuary.as_ref().unwrap().store;
    assert!(store
        .account(GW, "alice@localhost")
        .await
        .unwrap()
        .is_none());

    let unknown = alice
        .iq(
            GW,
            "set",
            el(&format!("<command xmlns='{COMMANDS}' node='nope'/>")),
        )
        .await;
    assert_eq!(condition(&unknown), "item-not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_edits_retractions_and_reactions_map_through_the_store() {
    let fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    let echo = format!("echo@{GW}");

    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat' id='m1'><body>hi</body>\
             <origin-id xmlns='{SID}' id='o1'/></message>"
        )))
        .await;
    let answer = alice.expect(WAIT, is_message_from(&echo)).await;
    assert_eq!(body(&answer).as_deref(), Some("echo: hi"));
    let stanza_id = find_child(&answer, "stanza-id", SID).expect("a stanza-id");
    assert_eq!(attr(stanza_id, "id"), attr(&answer, "id"));
    // The network's reply-to pointed at our message; the user sees their own id.
    let reply = find_child(&answer, "reply", "urn:xmpp:reply:0").expect("reply");
    assert_eq!(attr(reply, "id"), "m1");
    let echo_id = attr(&answer, "id").to_owned();
    wait_for_log(&fx, "message alice@localhost echo None hi").await;

    // Correct our own message: the bridge is told which remote message.
    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat' id='m2'><body>hi!</body>\
             <replace xmlns='urn:xmpp:message-correct:0' id='m1'/></message>"
        )))
        .await;
    wait_for_log(&fx, "edit alice@localhost echo r0 hi!").await;

    // A correction that names someone else's message is refused.
    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat' id='m3'><body>forged</body>\
             <replace xmlns='urn:xmpp:message-correct:0' id='{echo_id}'/></message>"
        )))
        .await;
    let refused = alice.expect(WAIT, |s| attr(s, "id") == "m3").await;
    assert_eq!(condition(&refused), "item-not-found");
    assert!(!fx.net.log().iter().any(|l| l.contains("forged")));

    // Reactions name any message the user saw; retractions only their own.
    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat' id='m4'><reactions xmlns='urn:xmpp:reactions:0' id='{echo_id}'>\
             <reaction>👍</reaction></reactions></message>"
        )))
        .await;
    wait_for_log(&fx, "react alice@localhost echo r1 👍").await;
    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat' id='m5'><retract xmlns='urn:xmpp:message-retract:1' id='o1'/></message>"
        )))
        .await;
    wait_for_log(&fx, "retract alice@localhost echo r0").await;
    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat' id='m6'><retract xmlns='urn:xmpp:message-retract:1' id='{echo_id}'/></message>"
        )))
        .await;
    let refused = alice.expect(WAIT, |s| attr(s, "id") == "m6").await;
    assert_eq!(condition(&refused), "item-not-found");

    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )))
        .await;
    wait_for_log(&fx, "typing alice@localhost echo Composing").await;

    // A message the network refuses comes back as an error.
    alice
        .send(el(&format!(
            "<message to='nobody@{GW}' type='chat' id='m7'><body>?</body></message>"
        )))
        .await;
    let refused = alice.expect(WAIT, |s| attr(s, "id") == "m7").await;
    assert_eq!(condition(&refused), "item-not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_events_become_stanzas() {
    let fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    let account = "alice@localhost";
    let carol = RemoteAddress::new("carol");

    fx.net
        .emit(
            account,
            RemoteEvent::from(RemoteMessage::text(
                "c1",
                carol.clone(),
                "hello\u{3}4 \u{0}there",
            )),
        )
        .await;
    let first = alice
        .expect(WAIT, is_message_from(&format!("carol@{GW}")))
        .await;
    assert_eq!(
        body(&first).as_deref(),
        Some("hello4 there"),
        "control characters are dropped"
    );
    let first_id = attr(&first, "id").to_owned();

    fx.net
        .emit(
            account,
            RemoteEvent::Edit {
                room: None,
                sender: carol.clone(),
                nick: None,
                target: "c1".into(),
                body: "hello again".into(),
            },
        )
        .await;
    let edit = alice
        .expect(WAIT, |s| {
            find_child(s, "replace", "urn:xmpp:message-correct:0").is_some()
        })
        .await;
    assert_eq!(
        attr(
            find_child(&edit, "replace", "urn:xmpp:message-correct:0").unwrap(),
            "id"
        ),
        first_id
    );

    fx.net
        .emit(
            account,
            RemoteEvent::Reaction {
                room: None,
                sender: carol.clone(),
                nick: None,
                target: "c1".into(),
                emojis: vec!["🎉".into()],
            },
        )
        .await;
    let reaction = alice
        .expect(WAIT, |s| {
            find_child(s, "reactions", "urn:xmpp:reactions:0").is_some()
        })
        .await;
    let reactions = find_child(&reaction, "reactions", "urn:xmpp:reactions:0").unwrap();
    assert_eq!(attr(reactions, "id"), first_id);
    assert_eq!(
        reactions.children().next().map(Element::text).as_deref(),
        Some("🎉")
    );

    fx.net
        .emit(
            account,
            RemoteEvent::Retract {
                room: None,
                sender: carol.clone(),
                nick: None,
                target: "c1".into(),
            },
        )
        .await;
    let retract = alice
        .expect(WAIT, |s| {
            find_child(s, "retract", "urn:xmpp:message-retract:1").is_some()
        })
        .await;
    assert_eq!(
        attr(
            find_child(&retract, "retract", "urn:xmpp:message-retract:1").unwrap(),
            "id"
        ),
        first_id
    );

    fx.net
        .emit(
            account,
            RemoteEvent::Presence(RemotePresence {
                user: carol.clone(),
                show: PresenceShow::Away,
                status: Some("lunch".into()),
            }),
        )
        .await;
    // The new contact is first offered to the roster (a subscription
    // request), then its presence follows.
    let presence = alice
        .expect(WAIT, |s| {
            s.name() == "presence"
                && attr(s, "from") == format!("carol@{GW}")
                && attr(s, "type").is_empty()
        })
        .await;
    assert_eq!(
        presence
            .get_child("show", "jabber:client")
            .map(Element::text)
            .as_deref(),
        Some("away")
    );

    // A sender whose name needs XEP-0106 escaping.
    fx.net
        .emit(
            account,
            RemoteEvent::from(RemoteMessage::text(
                "c2",
                RemoteAddress::new("d'artagnan"),
                "en garde",
            )),
        )
        .await;
    alice
        .expect(WAIT, is_message_from(&format!("d\\27artagnan@{GW}")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_joined_spoken_in_and_left() {
    let fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    let room = format!("#room@{GW}");

    alice
        .send(el(&format!(
            "<presence to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    let owner = alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == format!("{room}/alice")
        })
        .await;
    let item = find_child(&owner, "x", MUC_USER)
        .unwrap()
        .children()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        (attr(&item, "affiliation"), attr(&item, "role")),
        ("owner", "moderator")
    );
    alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == format!("{room}/bob")
        })
        .await;
    let own = alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == format!("{room}/al")
        })
        .await;
    assert!(
        statuses(&own).contains(&"110".to_owned()),
        "{}",
        String::from(&own)
    );
    let subject = alice
        .expect(WAIT, |s| {
            s.name() == "message" && s.get_child("subject", "jabber:client").is_some()
        })
        .await;
    assert_eq!(
        subject
            .get_child("subject", "jabber:client")
            .unwrap()
            .text(),
        "Welcome"
    );
    wait_for_log(&fx, "join alice@localhost #room al").await;

    alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='g1'><body>hello room</body></message>"
        )))
        .await;
    let reflected = alice
        .expect(WAIT, |s| {
            attr(s, "id") == "g1" && attr(s, "type") == "groupchat"
        })
        .await;
    assert_eq!(attr(&reflected, "from"), format!("{room}/al"));
    let answer = alice
        .expect(WAIT, is_message_from(&format!("{room}/bob")))
        .await;
    assert_eq!(body(&answer).as_deref(), Some("bob heard: hello room"));
    assert_eq!(
        attr(find_child(&answer, "stanza-id", SID).unwrap(), "by"),
        room
    );

    // A private message to an occupant's in-room JID goes to that
    // occupant's user, never to the room (XEP-0045 §7.5).
    alice
        .send(el(&format!(
            "<message to='{room}/bob' type='chat' id='pm1'><body>between us</body></message>"
        )))
        .await;
    wait_for_log(&fx, "message alice@localhost bob None between us").await;
    assert!(
        !fx.net
            .log()
            .iter()
            .any(|l| l.contains("#room") && l.contains("between us")),
        "{:?}",
        fx.net.log()
    );

    // XEP-0410: a client pings its own occupant JID to learn it is still
    // in; the room answers for itself, and a ping of the room is answered.
    let ping = || el("<ping xmlns='urn:xmpp:ping'/>");
    let own_jid = format!("{room}/al");
    let pong = alice.iq(&own_jid, "get", ping()).await;
    assert_eq!(attr(&pong, "type"), "result", "{}", String::from(&pong));
    let pong = alice.iq(&room, "get", ping()).await;
    assert_eq!(attr(&pong, "type"), "result", "{}", String::from(&pong));

    alice
        .send(el(&format!(
            "<presence to='{room}/al' type='unavailable'/>"
        )))
        .await;
    let gone = alice
        .expect(WAIT, |s| {
            s.name() == "presence"
                && attr(s, "type") == "unavailable"
                && attr(s, "from") == format!("{room}/al")
        })
        .await;
    assert!(statuses(&gone).contains(&"110".to_owned()));
    wait_for_log(&fx, "leave alice@localhost #room").await;
    // Gone, the self-ping says so, and the client knows to join again.
    let out = alice.iq(&own_jid, "get", ping()).await;
    assert_eq!(condition(&out), "not-acceptable", "{}", String::from(&out));
    let pong = alice.iq(&room, "get", ping()).await;
    assert_eq!(attr(&pong, "type"), "result", "{}", String::from(&pong));

    // Speaking in a room one is not in, and joining a room the network refuses.
    alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='g2'><body>still here?</body></message>"
        )))
        .await;
    let refused = alice.expect(WAIT, |s| attr(s, "id") == "g2").await;
    assert_eq!(condition(&refused), "not-acceptable");
    // Nor by a message of another type.
    alice
        .send(el(&format!(
            "<message to='{room}' type='normal' id='g3'><body>from outside</body></message>"
        )))
        .await;
    let refused = alice.expect(WAIT, |s| attr(s, "id") == "g3").await;
    assert_eq!(condition(&refused), "not-acceptable");
    assert!(
        !fx.net
            .logged("message alice@localhost #room None from outside"),
        "{:?}",
        fx.net.log()
    );
    alice
        .send(el(&format!("<presence to='#closed@{GW}/al'/>")))
        .await;
    let refused = alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "type") == "error"
        })
        .await;
    assert_eq!(condition(&refused), "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_follow_the_users_presence() {
    let fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    wait_for_log(&fx, "login alice@localhost as alice").await;

    alice
        .send(el(
            "<presence><show>away</show><status>out</status></presence>",
        ))
        .await;
    wait_for_log(&fx, "presence alice@localhost Away out").await;

    alice.send(el("<presence type='unavailable'/>")).await;
    wait_for_log(&fx, "logout alice@localhost").await;

    alice.send(el("<presence/>")).await;
    let logins = || {
        fx.net
            .log()
            .iter()
            .filter(|l| l.starts_with("login alice"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while logins() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second login: {:?}",
            fx.net.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_while_the_network_is_down_and_mappings_survive_a_restart() {
    let mut fx = Fixture::start().await;
    let mut alice = fx.registered("alice").await;
    let echo = format!("echo@{GW}");

    fx.net.set_down(true);
    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat' id='q1'><body>queued</body></message>"
        )))
        .await;
    // Accepted, not bounced: no error comes back.
    let bounce = tokio::time::timeout(
        Duration::from_millis(500),
        alice.expect(WAIT, |s| {
            attr(s, "id") == "q1" && attr(s, "type") == "error"
        }),
    )
    .await;
    assert!(bounce.is_err(), "a queued message must not bounce");
    fx.net.set_down(false);
    fx.net
        .emit("alice@localhost", RemoteEvent::Reconnected { server: None })
        .await;
    wait_for_log(&fx, "message alice@localhost echo None queued").await;
    alice.expect(WAIT, is_message_from(&echo)).await;

    // Restart the gateway: the mapping from q1 to its remote id is still there.
    fx.stop_estuary().await;
    alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == GW && attr(s, "type") == "unavailable"
        })
        .await;
    fx.start_estuary().await;
    // The gateway probes its registered users and logs alice in by itself.
    alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == GW && attr(s, "type").is_empty()
        })
        .await;
    alice
        .send(el(&format!(
            "<message to='{echo}' type='chat' id='q2'><body>queued, fixed</body>\
             <replace xmlns='urn:xmpp:message-correct:0' id='q1'/></message>"
        )))
        .await;
    let edit = fx
        .net
        .log()
        .iter()
        .find(|l| l.starts_with("message alice@localhost echo None queued"))
        .cloned();
    assert!(edit.is_some());
    let deadline = tokio::time::Instant::now() + WAIT;
    while !fx
        .net
        .log()
        .iter()
        .any(|l| l.starts_with("edit alice@localhost echo r") && l.ends_with("queued, fixed"))
    {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", fx.net.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_resource_shares_the_room() {
    let fx = Fixture::start().await;
    let mut laptop = fx.registered("alice").await;
    let room = format!("#room@{GW}");
    let has_subject =
        |s: &Element| s.name() == "message" && s.get_child("subject", "jabber:client").is_some();
    laptop
        .send(el(&format!("<presence to='{room}/al'/>")))
        .await;
    laptop.expect(WAIT, has_subject).await;

    let mut phone = fx.connect("alice", "phone").await;
    phone.send(el(&format!("<presence to='{room}/al'/>"))).await;
    phone
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == format!("{room}/bob")
        })
        .await;
    let own = phone
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == format!("{room}/al")
        })
        .await;
    assert!(statuses(&own).contains(&"110".to_owned()));
    let subject = phone.expect(WAIT, has_subject).await;
    assert_eq!(
        subject
            .get_child("subject", "jabber:client")
            .unwrap()
            .text(),
        "Welcome"
    );

    laptop
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='both'><body>to all</body></message>"
        )))
        .await;
    for client in [&mut laptop, &mut phone] {
        client.expect(WAIT, |s| attr(s, "id") == "both").await;
        client
            .expect(WAIT, is_message_from(&format!("{room}/bob")))
            .await;
    }
    let joins = fx
        .net
        .log()
        .iter()
        .filter(|l| l.starts_with("join "))
        .count();
    assert_eq!(
        joins,
        1,
        "one network join serves both resources: {:?}",
        fx.net.log()
    );

    // The laptop leaves; the phone stays, so the network room is kept.
    laptop
        .send(el(&format!(
            "<presence to='{room}/al' type='unavailable'/>"
        )))
        .await;
    laptop
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "type") == "unavailable"
        })
        .await;
    laptop
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='gone'><body>x</body></message>"
        )))
        .await;
    phone
        .expect(WAIT, |s| {
            attr(s, "type") != "error" && body(s).as_deref() == Some("bob heard: x")
        })
        .await;
    assert!(!fx.net.log().iter().any(|l| l.starts_with("leave ")));
}

/// An admin ends a user's session (biboumi's `disconnect-user`): the
/// command is offered to admins only, lists who is logged in, and logs the
/// chosen users out of the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_disconnect_users() {
    const COMMANDS: &str = "http://jabber.org/protocol/commands";
    const NODE: &str = "disconnect-user";
    let fx = Fixture::start_with(|config| {
        config.gateways[0].admins = vec!["boss@localhost".to_owned()];
    })
    .await;
    let mut alice = fx.registered("alice").await;
    wait_for_log(&fx, "login alice@localhost as alice").await;
    let mut boss = fx.user("boss").await;

    let listed = |client_items: &Element| String::from(client_items).contains(NODE);
    let items = alice
        .iq(
            GW,
            "get",
            el(&format!("<query xmlns='{DISCO_ITEMS}' node='{COMMANDS}'/>")),
        )
        .await;
    assert!(!listed(&items), "{}", String::from(&items));
    let items = boss
        .iq(
            GW,
            "get",
            el(&format!("<query xmlns='{DISCO_ITEMS}' node='{COMMANDS}'/>")),
        )
        .await;
    assert!(listed(&items), "{}", String::from(&items));

    // Not for users.
    let refused = alice
        .iq(
            GW,
            "set",
            el(&format!("<command xmlns='{COMMANDS}' node='{NODE}'/>")),
        )
        .await;
    assert_eq!(condition(&refused), "forbidden");

    let form = boss
        .iq(
            GW,
            "set",
            el(&format!("<command xmlns='{COMMANDS}' node='{NODE}'/>")),
        )
        .await;
    let command = find_child(&form, "command", COMMANDS).unwrap();
    assert_eq!(attr(command, "status"), "executing");
    assert!(
        String::from(command).contains("<value>alice@localhost</value>"),
        "{}",
        String::from(command)
    );
    let session = attr(command, "sessionid").to_owned();
    let done = boss
        .iq(
            GW,
            "set",
            el(&format!(
                "<command xmlns='{COMMANDS}' node='{NODE}' sessionid='{session}'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='jids'><value>alice@localhost</value></field></x></command>"
            )),
        )
        .await;
    let command = find_child(&done, "command", COMMANDS).unwrap();
    assert_eq!(attr(command, "status"), "completed");
    assert!(String::from(command).contains("1 of 1 disconnected"));
    wait_for_log(&fx, "logout alice@localhost").await;
    alice
        .expect(WAIT, |s| {
            s.name() == "presence" && attr(s, "from") == GW && attr(s, "type") == "unavailable"
        })
        .await;
}
