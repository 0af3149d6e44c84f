//! The Matrix bridge against a real Synapse and a real Prosody.
//!
//! One Synapse serves the whole binary (it takes seconds to start); each
//! test registers its own Matrix users and makes its own rooms, and runs
//! its own Prosody and Estuary. The Matrix side is driven with plain
//! client-server API calls (`world::synapse::MatrixUser`), the XMPP side
//! with the raw XML client.

mod world;

use std::time::Duration;

use estuary::app::{self, Running};
use estuary::config::{ComponentConfig, Config, GatewayConfig, StoreConfig};
use estuary::networks::Networks;
use reqwest::Method;
use serde_json::json;
use world::synapse::{MatrixUser, Synapse};
use world::{attr, body, el, find_child, moderation, Element, Prosody, XmppClient};

const GW: &str = "matrix.localhost";
const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "correct horse";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";

struct Setup<'a> {
    prosody: Prosody,
    estuary: Option<Running>,
    dir: tempfile::TempDir,
    synapse: &'a Synapse,
    /// The Matrix account the XMPP user `alice@localhost` registers with.
    matrix_alice: MatrixUser,
    alice: XmppClient,
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESTUARY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn config(prosody: &Prosody, dir: &std::path::Path) -> Config {
    let media_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    Config {
        component: ComponentConfig {
            server: prosody.component_addr(),
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..ComponentConfig::default()
        },
        store: StoreConfig {
            url: String::new(),
            data_dir: dir.to_owned(),
        },
        runtime: Default::default(),
        source: None,
        gateways: vec![GatewayConfig {
            domain: GW.to_owned(),
            secret: "secret".to_owned(),
            kind: "matrix".to_owned(),
            server: None,
            host_domain: None,
            allowed: vec![],
            admins: vec![],
            persistent_by_default: false,
            // The test's file server is on loopback, which a real gateway
            // would refuse to fetch from. The media proxy listens on a free
            // loopback port and is reached there directly.
            options: json!({
                "state_dir": dir.join("matrix"),
                "fetch_private_media": true,
                "media_listen": format!("127.0.0.1:{media_port}"),
                "media_url": format!("http://127.0.0.1:{media_port}"),
            }),
        }],
    }
}

async fn start_estuary(prosody: &Prosody, dir: &std::path::Path) -> Running {
    let estuary = app::start(config(prosody, dir), &Networks::builtin())
        .await
        .unwrap();
    world::wait_for_link(&estuary, GW).await;
    estuary
}

/// Prosody, Estuary with the Matrix bridge, `alice@localhost` online (not
/// registered yet) and her Matrix account on the shared Synapse.
async fn setup_unregistered() -> Setup<'static> {
    setup_unregistered_on(Synapse::shared()).await
}

async fn setup_unregistered_on(synapse: &Synapse) -> Setup<'_> {
    setup_unregistered_with(synapse, Prosody::start(&[(GW, "secret")])).await
}

async fn setup_unregistered_with(synapse: &Synapse, prosody: Prosody) -> Setup<'_> {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let estuary = start_estuary(&prosody, dir.path()).await;
    let matrix_alice = MatrixUser::new(synapse, "alice", PASSWORD).await;
    prosody.add_user("alice", "pw");
    let mut alice =
        XmppClient::connect(prosody.c2s_port(), "alice", "localhost", "pw", "res").await;
    alice.send(el("<presence/>")).await;
    Setup {
        prosody,
        estuary: Some(estuary),
        dir,
        synapse,
        matrix_alice,
        alice,
    }
}

/// The same, with alice registered with her Matrix password.
async fn setup() -> Setup<'static> {
    setup_on(Synapse::shared()).await
}

async fn setup_on(synapse: &Synapse) -> Setup<'_> {
    registered(setup_unregistered_on(synapse).await).await
}

async fn registered(mut s: Setup<'_>) -> Setup<'_> {
    let url = s.synapse.url();
    let user = s.matrix_alice.user_id.clone();
    let reply = register(&mut s.alice, &url, &user, Some(PASSWORD), None).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    // XEP-0100: accept the gateway's subscription, so that it sees alice
    // come online (and logs her in) after a restart.
    s.alice
        .send(el(&format!("<presence to='{GW}' type='subscribed'/>")))
        .await;
    s
}

/// A roster item of `jid` in a roster query or push.
fn roster_item<'a>(query: &'a Element, jid: &str) -> Option<&'a Element> {
    find_child(query, "query", "jabber:iq:roster")?
        .children()
        .find(|i| i.attr("jid") == Some(jid))
}

/// Submits the XEP-0077 form; returns the iq reply.
async fn register(
    alice: &mut XmppClient,
    homeserver: &str,
    user: &str,
    password: Option<&str>,
    token: Option<&str>,
) -> Element {
    let optional = [("password", password), ("token", token)];
    let fields: Vec<(&str, &str)> = [("homeserver", homeserver), ("user", user)]
        .into_iter()
        .chain(optional.into_iter().filter_map(|(var, v)| Some((var, v?))))
        .collect();
    alice.submit_registration(GW, &fields).await
}

/// Removes the registration (XEP-0077); returns the iq reply.
async fn unregister(alice: &mut XmppClient) -> Element {
    alice
        .iq(
            GW,
            "set",
            el("<query xmlns='jabber:iq:register'><remove/></query>"),
        )
        .await
}

/// A muc#admin set giving the Matrix user `user` `affiliation`, by JID
/// as clients send it (XEP-0045 §9.1).
fn affiliation_of(user: &str, affiliation: &str) -> Element {
    el(&format!(
        "<query xmlns='http://jabber.org/protocol/muc#admin'>\
         <item jid='{}' affiliation='{affiliation}'/></query>",
        jid_of(user)
    ))
}

/// The XMPP address of a Matrix user or room ID (`@a:b`, `!r:b`, `#a:b`).
fn jid_of(matrix_id: &str) -> String {
    let id = matrix_id.trim_start_matches('@');
    let (name, server) = id.split_once(':').expect("a Matrix ID");
    format!("{name}%{server}@{GW}")
}

fn from(s: &Element, jid: &str) -> bool {
    attr(s, "from") == jid
}

fn error_condition(reply: &Element) -> String {
    let error = reply
        .children()
        .find(|c| c.name() == "error")
        .unwrap_or_else(|| panic!("no error in {}", String::from(reply)));
    error
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_default()
}

fn error_text(reply: &Element) -> String {
    let error = reply.children().find(|c| c.name() == "error").unwrap();
    error
        .children()
        .find(|c| c.name() == "text")
        .map(|t| t.text())
        .unwrap_or_default()
}

/// `(affiliation, role)` of a MUC occupant presence.
fn standing(p: &Element) -> (String, String) {
    let x = find_child(p, "x", NS_MUC_USER).expect("muc#user");
    let item = x.children().find(|c| c.name() == "item").expect("item");
    (
        attr(item, "affiliation").to_owned(),
        attr(item, "role").to_owned(),
    )
}

/// Alice joins `room_jid` as `nick` and waits for her own presence and the subject.
async fn join(alice: &mut XmppClient, room_jid: &str, nick: &str) -> Element {
    alice
        .send(el(&format!("<presence to='{room_jid}/{nick}'/>")))
        .await;
    let own = alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room_jid}/{nick}"))
        })
        .await;
    assert!(
        String::from(&own).contains("code='110'"),
        "{}",
        String::from(&own)
    );
    own
}

async fn subject(alice: &mut XmppClient, room_jid: &str) -> String {
    let m = alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && from(m, room_jid)
                && m.get_child("subject", "jabber:client").is_some()
        })
        .await;
    m.get_child("subject", "jabber:client").unwrap().text()
}

/// A room made by `owner` with an alias, a name and a topic; returns
/// `(room id, alias)`.
async fn public_room(owner: &MatrixUser, name: &str) -> (String, String) {
    let alias_local = Synapse::unique_user(name);
    let room = owner
        .create_room(json!({
            "preset": "public_chat",
            "room_alias_name": alias_local,
            "name": format!("The {name} room"),
            "topic": format!("All about {name}"),
        }))
        .await;
    (room, format!("#{alias_local}:localhost"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_a_wrong_password_and_an_unreachable_homeserver() {
    let mut s = setup_unregistered().await;
    let url = s.synapse.url();
    let user = s.matrix_alice.user_id.clone();

    let wrong = register(&mut s.alice, &url, &user, Some("wrong password"), None).await;
    assert_eq!(attr(&wrong, "type"), "error");
    assert_eq!(error_condition(&wrong), "not-authorized");
    assert!(
        error_text(&wrong).contains("Invalid username or password"),
        "{}",
        String::from(&wrong)
    );

    let down = format!("http://127.0.0.1:{}", world::free_port());
    let unreachable = register(&mut s.alice, &down, &user, Some(PASSWORD), None).await;
    assert_eq!(attr(&unreachable, "type"), "error");
    assert_eq!(error_condition(&unreachable), "remote-server-timeout");
    assert!(
        error_text(&unreachable).contains("cannot reach the homeserver"),
        "{}",
        String::from(&unreachable)
    );

    let bad_token = register(&mut s.alice, &url, &user, None, Some("syt_not_a_token")).await;
    assert_eq!(error_condition(&bad_token), "not-authorized");

    let store = &s.estuary.as_ref().unwrap().store;
    assert!(
        store
            .account(GW, "alice@localhost")
            .await
            .unwrap()
            .is_none(),
        "nothing may be stored after a refused registration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_stores_the_session_and_a_restart_makes_no_device_and_replays_nothing() {
    let mut s = setup().await;
    let account = s
        .estuary
        .as_ref()
        .unwrap()
        .store
        .account(GW, "alice@localhost")
        .await
        .unwrap()
        .expect("stored");
    let stored: Vec<&str> = account.credentials.0.values().map(String::as_str).collect();
    assert!(
        !stored.contains(&PASSWORD),
        "the password must not be stored"
    );
    assert_eq!(
        account.credentials.get("user"),
        Some(s.matrix_alice.user_id.as_str())
    );
    // One device from the shared-secret registration, one for the gateway.
    let devices = s.matrix_alice.call(Method::GET, "/devices", None).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2, "{devices}");

    // A direct chat from Matrix before the restart.
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let dm = bob
        .create_room(json!({
            "is_direct": true, "preset": "trusted_private_chat",
            "invite": [s.matrix_alice.user_id],
        }))
        .await;
    let before = bob.say(&dm, "before the restart").await;
    let bob_jid = jid_of(&bob.user_id);
    let first = s
        .alice
        .expect(WAIT, |m| m.name() == "message" && from(m, &bob_jid))
        .await;
    assert_eq!(body(&first).as_deref(), Some("before the restart"));

    // A reaction made before the restart...
    let first_id = attr(&first, "id").to_owned();
    s.alice
        .send(el(&format!(
            "<message to='{bob_jid}' type='chat' id='re1'>\
             <reactions xmlns='urn:xmpp:reactions:0' id='{first_id}'><reaction>👀</reaction></reactions></message>"
        )))
        .await;
    let reaction = bob
        .expect_event(&dm, WAIT, |e| {
            e["type"] == "m.reaction" && e["content"]["m.relates_to"]["key"] == "👀"
        })
        .await;

    // ...and one of bob's.
    bob.send(
        &dm,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": before, "key": "👍"}}),
    )
    .await;
    s.alice
        .expect(WAIT, |m| {
            from(m, &bob_jid) && find_child(m, "reactions", "urn:xmpp:reactions:0").is_some()
        })
        .await;

    // Forget what arrived so far, so that the gateway's presence awaited
    // below is the one after the restart.
    while s.alice.recv(Duration::from_millis(300)).await.is_some() {}

    // Restart the gateway with the same store and state directory.
    s.estuary.take().unwrap().stop().await.unwrap();
    s.estuary = Some(start_estuary(&s.prosody, s.dir.path()).await);
    // The restarted gateway probes its registered users and logs alice in.
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, GW) && attr(p, "type").is_empty()
        })
        .await;
    bob.say(&dm, "after the restart").await;
    let next = s
        .alice
        .expect(WAIT, |m| m.name() == "message" && from(m, &bob_jid))
        .await;
    assert_eq!(
        body(&next).as_deref(),
        Some("after the restart"),
        "history must not be replayed: {}",
        String::from(&next)
    );
    // An edit of a message from before the restart still finds it in the store.
    bob.send(
        &dm,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "* before the restart (edited)",
            "m.new_content": {"msgtype": "m.text", "body": "before the restart (edited)"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": before},
        }),
    )
    .await;
    let edit = s
        .alice
        .expect(WAIT, |m| {
            find_child(m, "replace", "urn:xmpp:message-correct:0").is_some()
        })
        .await;
    assert_eq!(body(&edit).as_deref(), Some("before the restart (edited)"));
    assert_eq!(
        attr(
            find_child(&edit, "replace", "urn:xmpp:message-correct:0").unwrap(),
            "id"
        ),
        attr(&first, "id")
    );
    // Bob's second reaction after the restart arrives as the full set.
    bob.send(
        &dm,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": before, "key": "🎉"}}),
    )
    .await;
    let both = s
        .alice
        .expect(WAIT, |m| {
            from(m, &bob_jid) && find_child(m, "reactions", "urn:xmpp:reactions:0").is_some()
        })
        .await;
    let reactions = find_child(&both, "reactions", "urn:xmpp:reactions:0").unwrap();
    assert_eq!(attr(reactions, "id"), first_id);
    let mut keys: Vec<String> = reactions.children().map(|r| r.text()).collect();
    keys.sort();
    assert_eq!(keys, ["🎉", "👍"]);
    // Alice's reaction from before the restart can be taken back after it.
    s.alice
        .send(el(&format!(
            "<message to='{bob_jid}' type='chat' id='re2'>\
             <reactions xmlns='urn:xmpp:reactions:0' id='{first_id}'/></message>"
        )))
        .await;
    bob.expect_event(&dm, WAIT, |e| {
        e["type"] == "m.room.redaction"
            && (e["redacts"] == reaction["event_id"]
                || e["content"]["redacts"] == reaction["event_id"])
    })
    .await;
    let devices = s.matrix_alice.call(Method::GET, "/devices", None).await;
    assert_eq!(
        devices["devices"].as_array().unwrap().len(),
        2,
        "a restart must not create a device: {devices}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_a_muc_with_occupants_subject_and_messages_both_ways() {
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let carol = MatrixUser::new(s.synapse, "carol", "pw").await;
    let (room, alias) = public_room(&bob, "muc").await;
    carol.join(&room).await;
    bob.set_state(
        &room,
        "m.room.power_levels",
        // Bob created the room: from room version 12 on that makes him an
        // owner without being listed (and listing him is refused).
        json!({ "users": { carol.user_id.clone(): 50 } }),
    )
    .await;
    let room_jid = jid_of(&alias);

    s.alice
        .send(el(&format!("<presence to='{room_jid}/alice'/>")))
        .await;
    let bob_p = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room_jid}/{}", bob.name()))
        })
        .await;
    assert_eq!(standing(&bob_p), ("owner".into(), "moderator".into()));
    let carol_p = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room_jid}/{}", carol.name()))
        })
        .await;
    assert_eq!(standing(&carol_p), ("admin".into(), "moderator".into()));
    let own = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room_jid}/alice"))
        })
        .await;
    assert!(String::from(&own).contains("code='110'"));
    assert_eq!(standing(&own), ("member".into(), "participant".into()));

    // disco#items on the gateway lists the joined room, by its alias.
    let items = s.alice.disco_items(GW).await;
    assert!(
        String::from(&items).contains(&format!("jid='{room_jid}'")),
        "{}",
        String::from(&items)
    );
    assert_eq!(subject(&mut s.alice, &room_jid).await, "All about muc");
    // Alice's Matrix account really joined.
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == s.matrix_alice.user_id.as_str()
            && e["content"]["membership"] == "join"
    })
    .await;

    // Matrix → XMPP: text, emote, notice.
    bob.say(&room, "hello xmpp").await;
    let m = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &format!("{room_jid}/{}", bob.name()))
        })
        .await;
    assert_eq!(attr(&m, "type"), "groupchat");
    assert_eq!(body(&m).as_deref(), Some("hello xmpp"));
    bob.send(
        &room,
        "m.room.message",
        json!({"msgtype": "m.emote", "body": "waves"}),
    )
    .await;
    s.alice
        .expect(WAIT, |m| body(m).as_deref() == Some("/me waves"))
        .await;
    bob.send(
        &room,
        "m.room.message",
        json!({"msgtype": "m.notice", "body": "a notice"}),
    )
    .await;
    s.alice
        .expect(WAIT, |m| body(m).as_deref() == Some("a notice"))
        .await;

    // Formatting: Matrix HTML becomes XEP-0393 styling, and back.
    bob.send(
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "**loud** and *soft*",
            "format": "org.matrix.custom.html",
            "formatted_body": "<strong>loud</strong> and <em>soft</em>",
        }),
    )
    .await;
    s.alice
        .expect(WAIT, |m| body(m).as_deref() == Some("*loud* and _soft_"))
        .await;
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat'><body>a *styled* `reply`</body></message>"
        )))
        .await;
    let styled = bob
        .expect_event(&room, WAIT, |e| {
            e["content"]["body"] == "a *styled* `reply`"
        })
        .await;
    assert_eq!(styled["content"]["format"], "org.matrix.custom.html");
    assert_eq!(
        styled["content"]["formatted_body"],
        "a <strong>styled</strong> <code>reply</code>"
    );

    let bob_occupant = format!("{room_jid}/{}", bob.name());
    // Odd content is tolerated (a malformed relation and an unknown msgtype give a
    // plain message), an unknown event type is skipped, and what follows
    // still arrives.
    bob.send(
        &room,
        "m.room.message",
        json!({"msgtype": "org.example.odd", "body": "odd one", "m.relates_to": "nonsense"}),
    )
    .await;
    bob.send(&room, "org.example.unknown", json!({"x": [1, 2]}))
        .await;
    bob.say(&room, "after the odd ones").await;
    let odd = s
        .alice
        .expect(WAIT, |m| from(m, &bob_occupant) && body(m).is_some())
        .await;
    assert_eq!(body(&odd).as_deref(), Some("odd one"));
    let next = s
        .alice
        .expect(WAIT, |m| from(m, &bob_occupant) && body(m).is_some())
        .await;
    assert_eq!(body(&next).as_deref(), Some("after the odd ones"));

    // XMPP → Matrix, reflected once with the client's id after the echo.
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='x1'><body>hello matrix</body></message>"
        )))
        .await;
    let sent = bob
        .expect_event(&room, WAIT, |e| e["content"]["body"] == "hello matrix")
        .await;
    assert_eq!(sent["sender"], s.matrix_alice.user_id.as_str());
    assert_eq!(sent["content"]["msgtype"], "m.text");
    let reflected = s.alice.expect(WAIT, |m| attr(m, "id") == "x1").await;
    assert!(from(&reflected, &format!("{room_jid}/alice")));
    let twice = tokio::time::timeout(
        Duration::from_millis(500),
        s.alice.expect(WAIT, |m| attr(m, "id") == "x1"),
    )
    .await;
    assert!(twice.is_err(), "reflected twice");
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat'><body>/me dances</body></message>"
        )))
        .await;
    bob.expect_event(&room, WAIT, |e| {
        e["content"]["msgtype"] == "m.emote" && e["content"]["body"] == "dances"
    })
    .await;

    // A nick change is the user's display name in the room.
    s.alice
        .send(el(&format!("<presence to='{room_jid}/alicia'/>")))
        .await;
    let renamed = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/alice"))
                && attr(p, "type") == "unavailable"
        })
        .await;
    assert!(String::from(&renamed).contains("code='303'"));
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room_jid}/alicia"))
        })
        .await;
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == s.matrix_alice.user_id.as_str()
            && e["content"]["displayname"] == "alicia"
    })
    .await;
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='x2'><body>renamed</body></message>"
        )))
        .await;
    let reflected = s.alice.expect(WAIT, |m| attr(m, "id") == "x2").await;
    assert!(from(&reflected, &format!("{room_jid}/alicia")));

    // A topic change becomes the subject; joins and leaves are occupants.
    bob.set_state(&room, "m.room.topic", json!({"topic": "new topic"}))
        .await;
    assert_eq!(subject_from(&mut s.alice, &room_jid).await, "new topic");
    let dave = MatrixUser::new(s.synapse, "dave", "pw").await;
    dave.join(&room).await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/{}", dave.name()))
                && attr(p, "type").is_empty()
        })
        .await;
    dave.room_action(&room, "leave", json!({})).await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/{}", dave.name()))
                && attr(p, "type") == "unavailable"
        })
        .await;

    // Kicked on Matrix: the user's own occupant is gone with 307.
    bob.room_action(
        &room,
        "kick",
        json!({"user_id": s.matrix_alice.user_id, "reason": "enough"}),
    )
    .await;
    let kicked = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/alicia"))
                && attr(p, "type") == "unavailable"
        })
        .await;
    let xml = String::from(&kicked);
    assert!(
        xml.contains("code='307'") && xml.contains("enough"),
        "{xml}"
    );
}

/// A subject change sent by an occupant (from `room/nick`, not the room).
async fn subject_from(alice: &mut XmppClient, room_jid: &str) -> String {
    let m = alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && attr(m, "from").starts_with(room_jid)
                && m.get_child("subject", "jabber:client").is_some()
        })
        .await;
    m.get_child("subject", "jabber:client").unwrap().text()
}

/// Two XMPP users of the gateway in one Matrix room, each through their own
/// Matrix account, so the gateway hears of each message twice: as the
/// sender's echo and as the other user's event. Both users are shown each
/// message under one stanza-id, the one MAM gives it, and it is archived
/// once, whichever copy came first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_xmpp_users_in_one_room_are_shown_one_stanza_id_per_message() {
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let (_, alias) = public_room(&bob, "shared").await;
    let room_jid = jid_of(&alias);
    let matrix_dave = MatrixUser::new(s.synapse, "dave", PASSWORD).await;
    s.prosody.add_user("dave", "pw");
    let mut dave =
        XmppClient::connect(s.prosody.c2s_port(), "dave", "localhost", "pw", "res").await;
    dave.send(el("<presence/>")).await;
    let url = s.synapse.url();
    let reply = register(&mut dave, &url, &matrix_dave.user_id, Some(PASSWORD), None).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    join(&mut s.alice, &room_jid, "alice").await;
    join(&mut dave, &room_jid, "dave").await;

    let messages =
        world::shared_room::exchange(&room_jid, (&mut s.alice, "alice"), (&mut dave, "dave"), 3)
            .await;
    world::shared_room::assert_archived_once_as_shown(&mut s.alice, &room_jid, &messages).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_chats_are_contacts_both_ways() {
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let bob_jid = jid_of(&bob.user_id);

    // Messaging a new contact creates the direct chat on Matrix.
    s.alice.message(&bob_jid, "hi bob").await;
    let dm = bob.expect_invite(WAIT).await;
    bob.join(&dm).await;
    let first = bob
        .expect_event(&dm, WAIT, |e| e["content"]["body"] == "hi bob")
        .await;
    assert_eq!(first["sender"], s.matrix_alice.user_id.as_str());
    let create = bob
        .expect_event(&dm, WAIT, |e| {
            e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()
        })
        .await;
    assert_eq!(create["content"]["membership"], "join");
    let direct = s
        .matrix_alice
        .call(
            Method::GET,
            &format!(
                "/user/{}/account_data/m.direct",
                world::synapse::encode(&s.matrix_alice.user_id)
            ),
            None,
        )
        .await;
    assert_eq!(direct[&bob.user_id], json!([dm]), "{direct}");

    // The answer arrives as a chat message from the contact, not a MUC.
    bob.say(&dm, "hi alice").await;
    let answer = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &bob_jid) && body(m).is_some()
        })
        .await;
    assert_eq!(attr(&answer, "type"), "chat");
    assert_eq!(body(&answer).as_deref(), Some("hi alice"));

    // The new contact is offered to the roster (XEP-0100), and a request
    // from the user's client is approved for it. Servers deliver
    // subscription requests to clients that fetched their roster.
    let roster = s
        .alice
        .iq(
            "alice@localhost",
            "get",
            el("<query xmlns='jabber:iq:roster'/>"),
        )
        .await;
    assert_eq!(attr(&roster, "type"), "result");
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &bob_jid) && attr(p, "type") == "subscribe"
        })
        .await;
    s.alice
        .send(el(&format!("<presence to='{bob_jid}' type='subscribe'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &bob_jid) && attr(p, "type") == "subscribed"
        })
        .await;

    // The contact's vCard gives its Matrix ID (and display name, if any).
    let card = s
        .alice
        .iq(&bob_jid, "get", el("<vCard xmlns='vcard-temp'/>"))
        .await;
    assert_eq!(attr(&card, "type"), "result", "{}", String::from(&card));
    assert!(
        String::from(&card).contains(&format!("<NICKNAME>{}</NICKNAME>", bob.user_id)),
        "{}",
        String::from(&card)
    );

    // XEP-0333 from XMPP: displaying the answer becomes a Matrix read receipt.
    let answer_event = bob
        .expect_event(&dm, WAIT, |e| e["content"]["body"] == "hi alice")
        .await;
    s.alice
        .send(el(&format!(
            "<message to='{bob_jid}' type='chat'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='{}'/></message>",
            attr(&answer, "id")
        )))
        .await;
    assert!(
        bob.sees_read_receipt(
            &dm,
            &s.matrix_alice.user_id,
            answer_event["event_id"].as_str().unwrap(),
            WAIT
        )
        .await,
        "no read receipt from alice on Matrix"
    );

    // A second message reuses the same room.
    s.alice.message(&bob_jid, "again").await;
    let again = bob
        .expect_event(&dm, WAIT, |e| e["content"]["body"] == "again")
        .await;

    // A read receipt becomes a XEP-0333 displayed marker from the contact.
    bob.call(
        Method::POST,
        &format!(
            "/rooms/{}/receipt/m.read/{}",
            world::synapse::encode(&dm),
            world::synapse::encode(again["event_id"].as_str().unwrap())
        ),
        Some(json!({})),
    )
    .await;
    s.alice
        .expect(WAIT, |m| {
            from(m, &bob_jid) && find_child(m, "displayed", "urn:xmpp:chat-markers:0").is_some()
        })
        .await;

    // Presence, both ways: the contact's Matrix presence and status...
    bob.call(
        Method::PUT,
        &format!("/presence/{}/status", world::synapse::encode(&bob.user_id)),
        Some(json!({"presence": "unavailable", "status_msg": "at lunch"})),
    )
    .await;
    let away = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &bob_jid) && String::from(p).contains("at lunch")
        })
        .await;
    assert_eq!(
        away.get_child("show", "jabber:client")
            .map(|s| s.text())
            .as_deref(),
        Some("away")
    );
    // ...and the user's XMPP show and status on Matrix.
    s.alice
        .send(el(
            "<presence><show>dnd</show><status>in a meeting</status></presence>",
        ))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let presence = bob
            .call(
                Method::GET,
                &format!(
                    "/presence/{}/status",
                    world::synapse::encode(&s.matrix_alice.user_id)
                ),
                None,
            )
            .await;
        if presence["presence"] == "unavailable" && presence["status_msg"] == "in a meeting" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice's presence never reached Matrix: {presence}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A direct chat opened from Matrix is accepted and shows up as a contact.
    let carol = MatrixUser::new(s.synapse, "carol", "pw").await;
    let dm2 = carol
        .create_room(json!({
            "is_direct": true, "preset": "trusted_private_chat",
            "invite": [s.matrix_alice.user_id],
        }))
        .await;
    carol.say(&dm2, "psst").await;
    let psst = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &jid_of(&carol.user_id))
        })
        .await;
    assert_eq!(body(&psst).as_deref(), Some("psst"));

    // An encrypted message is announced, never dropped in silence.
    carol
        .send(
            &dm2,
            "m.room.encrypted",
            json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "session_id": "x"}),
        )
        .await;
    let notice = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &jid_of(&carol.user_id))
        })
        .await;
    assert!(
        body(&notice).unwrap_or_default().contains("cannot decrypt"),
        "{}",
        String::from(&notice)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_retractions_reactions_and_replies_both_ways() {
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let (room, alias) = public_room(&bob, "edits").await;
    let room_jid = jid_of(&alias);
    let bob_occupant = format!("{room_jid}/{}", bob.name());
    join(&mut s.alice, &room_jid, "alice").await;

    // Matrix → XMPP.
    let original = bob.say(&room, "teh typo").await;
    let shown = s
        .alice
        .expect(WAIT, |m| {
            from(m, &bob_occupant) && body(m).as_deref() == Some("teh typo")
        })
        .await;
    let stanza_id = world::stanza_id(&shown);
    bob.send(
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "* the typo",
            "m.new_content": {"msgtype": "m.text", "body": "the typo"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        }),
    )
    .await;
    let correction = s
        .alice
        .expect(WAIT, |m| {
            from(m, &bob_occupant)
                && find_child(m, "replace", "urn:xmpp:message-correct:0").is_some()
        })
        .await;
    assert_eq!(body(&correction).as_deref(), Some("the typo"));
    assert_eq!(
        attr(
            find_child(&correction, "replace", "urn:xmpp:message-correct:0").unwrap(),
            "id"
        ),
        stanza_id
    );
    bob.send(
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "👍"}}),
    )
    .await;
    let reaction = s
        .alice
        .expect(WAIT, |m| {
            find_child(m, "reactions", "urn:xmpp:reactions:0").is_some()
        })
        .await;
    let reactions = find_child(&reaction, "reactions", "urn:xmpp:reactions:0").unwrap();
    assert_eq!(attr(reactions, "id"), stanza_id);
    assert_eq!(reactions.children().next().unwrap().text(), "👍");
    bob.redact(&room, &original).await;
    let retraction = s
        .alice
        .expect(WAIT, |m| {
            String::from(m).contains("urn:xmpp:message-retract")
        })
        .await;
    assert!(from(&retraction, &bob_occupant));
    assert!(String::from(&retraction).contains(&stanza_id));

    // XMPP → Matrix: send, correct, react, reply, retract.
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='m1'><body>frist</body></message>"
        )))
        .await;
    let mine = bob
        .expect_event(&room, WAIT, |e| e["content"]["body"] == "frist")
        .await;
    let mine_id = mine["event_id"].as_str().unwrap().to_owned();
    s.alice.expect(WAIT, |m| attr(m, "id") == "m1").await;
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='m2'><body>first</body>\
             <replace xmlns='urn:xmpp:message-correct:0' id='m1'/></message>"
        )))
        .await;
    let edit = bob
        .expect_event(&room, WAIT, |e| {
            e["content"]["m.relates_to"]["rel_type"] == "m.replace"
                && e["sender"] == s.matrix_alice.user_id.as_str()
        })
        .await;
    assert_eq!(
        edit["content"]["m.relates_to"]["event_id"],
        mine_id.as_str()
    );
    assert_eq!(edit["content"]["m.new_content"]["body"], "first");

    let bobs = bob.say(&room, "react to me").await;
    let shown = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("react to me"))
        .await;
    let target = world::stanza_id(&shown);
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='r1'>\
             <reactions xmlns='urn:xmpp:reactions:0' id='{target}'><reaction>🎉</reaction></reactions></message>"
        )))
        .await;
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.reaction"
            && e["content"]["m.relates_to"]["event_id"] == bobs.as_str()
            && e["content"]["m.relates_to"]["key"] == "🎉"
    })
    .await;
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='rep1'><body>a reply</body>\
             <reply xmlns='urn:xmpp:reply:0' id='{target}'/></message>"
        )))
        .await;
    let reply = bob
        .expect_event(&room, WAIT, |e| e["content"]["body"] == "a reply")
        .await;
    assert_eq!(
        reply["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        bobs.as_str()
    );
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='x9'>\
             <retract xmlns='urn:xmpp:message-retract:1' id='m1'/></message>"
        )))
        .await;
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.redaction"
            && (e["redacts"] == mine_id.as_str() || e["content"]["redacts"] == mine_id.as_str())
    })
    .await;

    // A Matrix reply arrives as a XEP-0461 reply to the right message.
    bob.send(
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "> <@x:y> react to me\n\nanswered",
            "m.relates_to": {"m.in_reply_to": {"event_id": bobs}},
        }),
    )
    .await;
    let answered = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("answered"))
        .await;
    let reply_to = find_child(&answered, "reply", "urn:xmpp:reply:0").expect("reply");
    assert_eq!(attr(reply_to, "id"), target);

    // Typing, both ways.
    bob.typing(&room, true).await;
    s.alice
        .expect(WAIT, |m| {
            from(m, &bob_occupant)
                && find_child(m, "composing", "http://jabber.org/protocol/chatstates").is_some()
        })
        .await;
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )))
        .await;
    assert!(
        bob.sees_typing(&room, &s.matrix_alice.user_id, WAIT).await,
        "alice's typing never reached Matrix"
    );

    // Leaving the MUC leaves the Matrix room.
    s.alice
        .send(el(&format!(
            "<presence to='{room_jid}/alice' type='unavailable'/>"
        )))
        .await;
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == s.matrix_alice.user_id.as_str()
            && e["content"]["membership"] == "leave"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let (room, alias) = public_room(&bob, "closed").await;

    // A message to a room the user is not in.
    s.alice
        .send(el(&format!(
            "<message to='{}' type='chat' id='e1'><body>let me in</body></message>",
            jid_of(&alias)
        )))
        .await;
    let refused = s
        .alice
        .expect(WAIT, |m| {
            attr(m, "id") == "e1" && attr(m, "type") == "error"
        })
        .await;
    assert_eq!(
        error_condition(&refused),
        "forbidden",
        "{}",
        String::from(&refused)
    );

    // A room alias that does not exist.
    s.alice
        .send(el(&format!(
            "<message to='#nowhere%localhost@{GW}' type='chat' id='e2'><body>hello?</body></message>"
        )))
        .await;
    let missing = s
        .alice
        .expect(WAIT, |m| {
            attr(m, "id") == "e2" && attr(m, "type") == "error"
        })
        .await;
    assert_eq!(error_condition(&missing), "item-not-found");

    // A contact that does not exist on Matrix.
    s.alice
        .send(el(&format!(
            "<message to='nobody%localhost@{GW}' type='chat' id='e3'><body>anyone?</body></message>"
        )))
        .await;
    let nobody = s
        .alice
        .expect(WAIT, |m| {
            attr(m, "id") == "e3" && attr(m, "type") == "error"
        })
        .await;
    assert_eq!(
        error_condition(&nobody),
        "item-not-found",
        "{}",
        String::from(&nobody)
    );
    let rooms = s
        .matrix_alice
        .call(Method::GET, "/joined_rooms", None)
        .await;
    assert_eq!(
        rooms["joined_rooms"],
        json!([]),
        "no room may be left behind"
    );

    // Joining a room with no such alias fails the join.
    s.alice
        .send(el(&format!(
            "<presence to='#nowhere%localhost@{GW}/alice'/>"
        )))
        .await;
    let join_error = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && attr(p, "type") == "error"
        })
        .await;
    assert_eq!(error_condition(&join_error), "item-not-found");

    // A spoofed correction: bob's message, named by its id, is not the user's.
    let room_jid = jid_of(&alias);
    join(&mut s.alice, &room_jid, "alice").await;
    let bobs = bob.say(&room, "mine, not yours").await;
    let shown = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("mine, not yours"))
        .await;
    let stanza_id = world::stanza_id(&shown);
    for (id, spoof) in [(&stanza_id, "c1"), (&bobs, "c2")] {
        s.alice
            .send(el(&format!(
                "<message to='{room_jid}' type='groupchat' id='{spoof}'><body>hacked</body>\
                 <replace xmlns='urn:xmpp:message-correct:0' id='{id}'/></message>"
            )))
            .await;
        let refused = s
            .alice
            .expect(WAIT, |m| {
                attr(m, "id") == spoof && attr(m, "type") == "error"
            })
            .await;
        assert_eq!(error_condition(&refused), "item-not-found");
    }

    // Retracting someone else's message by its id is refused the same way.
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='r1'>\
             <retract xmlns='urn:xmpp:message-retract:1' id='{stanza_id}'/></message>"
        )))
        .await;
    let refused = s
        .alice
        .expect(WAIT, |m| {
            attr(m, "id") == "r1" && attr(m, "type") == "error"
        })
        .await;
    assert_eq!(error_condition(&refused), "item-not-found");

    // A body Matrix cannot carry (events are limited to 64 KiB).
    let big = "x".repeat(65_000);
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='big'><body>{big}</body></message>"
        )))
        .await;
    let too_big = s
        .alice
        .expect(WAIT, |m| {
            attr(m, "id") == "big" && attr(m, "type") == "error"
        })
        .await;
    assert_eq!(
        error_condition(&too_big),
        "bad-request",
        "{}",
        error_text(&too_big)
    );

    let events = bob.recent(&room).await;
    assert!(
        !events.iter().any(|e| e["content"]["body"] == "hacked"),
        "a refused correction reached Matrix"
    );
    assert!(
        !events.iter().any(|e| e["type"] == "m.room.redaction"),
        "a refused retraction reached Matrix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_room_is_refused_with_a_clear_error() {
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let (room, alias) = public_room(&bob, "secret").await;
    bob.set_state(
        &room,
        "m.room.encryption",
        json!({"algorithm": "m.megolm.v1.aes-sha2"}),
    )
    .await;
    s.alice
        .send(el(&format!("<presence to='{}/alice'/>", jid_of(&alias))))
        .await;
    let refused = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && attr(p, "type") == "error"
        })
        .await;
    assert_eq!(error_condition(&refused), "feature-not-implemented");
    assert!(
        error_text(&refused).contains("end-to-end encrypted"),
        "{}",
        String::from(&refused)
    );
    // The gateway did not leave the account sitting in the room.
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == s.matrix_alice.user_id.as_str()
            && e["content"]["membership"] == "leave"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_homeserver_restart_loses_nothing() {
    // This test stops its homeserver, so it has one of its own.
    let synapse = Synapse::start();
    let mut s = setup_on(&synapse).await;
    let bob = MatrixUser::new(&synapse, "bob", "pw").await;
    let bob_jid = jid_of(&bob.user_id);
    s.alice.message(&bob_jid, "before").await;
    let dm = bob.expect_invite(WAIT).await;
    bob.join(&dm).await;
    bob.expect_event(&dm, WAIT, |e| e["content"]["body"] == "before")
        .await;
    let (_, alias) = public_room(&bob, "outage").await;
    let room_jid = jid_of(&alias);
    join(&mut s.alice, &room_jid, "alice").await;

    synapse.stop();
    // The room is reported gone (332) while the homeserver is away.
    let gone = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/alice"))
                && attr(p, "type") == "unavailable"
        })
        .await;
    assert!(
        String::from(&gone).contains("code='332'"),
        "{}",
        String::from(&gone)
    );
    // Sent while the homeserver is down: accepted and queued, not bounced.
    s.alice
        .send(el(&format!(
            "<message to='{bob_jid}' type='chat' id='q1'><body>while you were out</body></message>"
        )))
        .await;
    let bounced = tokio::time::timeout(
        Duration::from_secs(2),
        s.alice.expect(WAIT, |m| {
            attr(m, "id") == "q1" && attr(m, "type") == "error"
        }),
    )
    .await;
    assert!(
        bounced.is_err(),
        "a message was bounced while the homeserver was down"
    );

    synapse.restart();
    // The room is joined again...
    let rejoined = s
        .alice
        .expect(Duration::from_secs(40), |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/alice"))
                && attr(p, "type").is_empty()
        })
        .await;
    assert!(String::from(&rejoined).contains("code='110'"));
    // ...and the queued message goes out once the sync loop is back.
    bob.expect_event(&dm, Duration::from_secs(40), |e| {
        e["content"]["body"] == "while you were out"
    })
    .await;
    // And the sync loop resumed: new events arrive.
    bob.say(&dm, "welcome back").await;
    let back = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && body(m).as_deref() == Some("welcome back")
        })
        .await;
    assert!(from(&back, &bob_jid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_moderator_moderates_from_xmpp() {
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let carol = MatrixUser::new(s.synapse, "carol", "pw").await;
    let dave = MatrixUser::new(s.synapse, "dave", "pw").await;
    let (room, alias) = public_room(&bob, "moderated").await;
    carol.join(&room).await;
    dave.join(&room).await;
    bob.set_state(
        &room,
        "m.room.power_levels",
        json!({ "users": { s.matrix_alice.user_id.clone(): 100 } }),
    )
    .await;
    let room_jid = jid_of(&alias);
    let own = join(&mut s.alice, &room_jid, "alice").await;
    assert_eq!(standing(&own), ("owner".into(), "moderator".into()));

    // The room's disco#info tells its settings: a public room that anyone
    // may speak in; a new join rule is told with status 104.
    let features = s.alice.disco_features(&room_jid).await;
    for feature in ["muc_open", "muc_unmoderated", "muc_unsecured"] {
        assert!(
            features.iter().any(|f| f == feature),
            "{feature}: {features:?}"
        );
    }
    bob.set_state(&room, "m.room.join_rules", json!({ "join_rule": "invite" }))
        .await;
    s.alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && from(m, &room_jid)
                && find_child(m, "x", "http://jabber.org/protocol/muc#user")
                    .is_some_and(|x| x.children().any(|c| c.attr("code") == Some("104")))
        })
        .await;
    let features = s.alice.disco_features(&room_jid).await;
    assert!(
        features.iter().any(|f| f == "muc_membersonly"),
        "{features:?}"
    );

    // The subject from XMPP is the Matrix topic.
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat'><subject>set from xmpp</subject></message>"
        )))
        .await;
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.topic" && e["content"]["topic"] == "set from xmpp"
    })
    .await;

    // A kick (role none) by nick.
    let kick = s
        .alice
        .iq(
            &room_jid,
            "set",
            el(&format!(
                "<query xmlns='http://jabber.org/protocol/muc#admin'>\
                 <item nick='{}' role='none'><reason>behave</reason></item></query>",
                carol.name()
            )),
        )
        .await;
    assert_eq!(attr(&kick, "type"), "result", "{}", String::from(&kick));
    let kicked = bob
        .expect_event(&room, WAIT, |e| {
            e["type"] == "m.room.member"
                && e["state_key"] == carol.user_id.as_str()
                && e["content"]["membership"] == "leave"
        })
        .await;
    assert_eq!(kicked["sender"], s.matrix_alice.user_id.as_str());
    assert_eq!(kicked["content"]["reason"], "behave");
    let gone = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/{}", carol.name()))
                && attr(p, "type") == "unavailable"
        })
        .await;
    assert!(String::from(&gone).contains("code='307'"));

    // A ban names a JID, as clients send it (XEP-0045 §9.1).
    let ban = s
        .alice
        .iq(&room_jid, "set", affiliation_of(&dave.user_id, "outcast"))
        .await;
    assert_eq!(attr(&ban, "type"), "result", "{}", String::from(&ban));
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == dave.user_id.as_str()
            && e["content"]["membership"] == "ban"
    })
    .await;
    let banned = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/{}", dave.name()))
                && attr(p, "type") == "unavailable"
        })
        .await;
    let xml = String::from(&banned);
    assert!(
        xml.contains("code='301'") && xml.contains("affiliation='outcast'"),
        "{xml}"
    );

    // The outcast list is the room's bans, and lifting one unbans.
    let outcasts = |reply: &Element| -> Vec<String> {
        let query = reply
            .get_child("query", "http://jabber.org/protocol/muc#admin")
            .unwrap_or_else(|| panic!("a list: {}", String::from(reply)));
        query
            .children()
            .map(|i| attr(i, "jid").to_owned())
            .collect()
    };
    let list = el(
        "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast'/></query>",
    );
    let reply = s.alice.iq(&room_jid, "get", list.clone()).await;
    assert_eq!(outcasts(&reply), [jid_of(&dave.user_id)]);
    let unban = s
        .alice
        .iq(&room_jid, "set", affiliation_of(&dave.user_id, "none"))
        .await;
    assert_eq!(attr(&unban, "type"), "result", "{}", String::from(&unban));
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == dave.user_id.as_str()
            && e["content"]["membership"] == "leave"
    })
    .await;
    let reply = s.alice.iq(&room_jid, "get", list).await;
    assert!(outcasts(&reply).is_empty(), "{}", String::from(&reply));

    // XEP-0425: a moderator retracts someone else's message.
    let spam = bob.say(&room, "spam").await;
    let shown = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("spam"))
        .await;
    let stanza_id = world::stanza_id(&shown);
    let moderated = s.alice.iq(&room_jid, "set", moderation(&stanza_id)).await;
    assert_eq!(
        attr(&moderated, "type"),
        "result",
        "{}",
        String::from(&moderated)
    );
    bob.expect_event(&room, WAIT, |e| {
        e["type"] == "m.room.redaction"
            && (e["redacts"] == spam.as_str() || e["content"]["redacts"] == spam.as_str())
    })
    .await;

    // Without the power to, Matrix refuses and so does the gateway.
    bob.set_state(
        &room,
        "m.room.power_levels",
        json!({ "users": { s.matrix_alice.user_id.clone(): 0 } }),
    )
    .await;
    let demoted = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room_jid}/alice"))
                && String::from(p).contains("participant")
        })
        .await;
    assert_eq!(standing(&demoted), ("member".into(), "participant".into()));
    let refused = s
        .alice
        .iq(
            &room_jid,
            "set",
            el(&format!(
                "<query xmlns='http://jabber.org/protocol/muc#admin'>\
                 <item nick='{}' role='none'/></query>",
                bob.name()
            )),
        )
        .await;
    let more = bob.say(&room, "more spam").await;
    let _ = more;
    let shown = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("more spam"))
        .await;
    let stanza_id = world::stanza_id(&shown);
    let not_allowed = s.alice.iq(&room_jid, "set", moderation(&stanza_id)).await;
    assert_eq!(
        error_condition(&not_allowed),
        "forbidden",
        "{}",
        String::from(&not_allowed)
    );
    assert_eq!(
        error_condition(&refused),
        "forbidden",
        "{}",
        String::from(&refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_without_alias_is_joined_by_its_id_capitals_and_all() {
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let room = bob
        .create_room(json!({ "preset": "public_chat", "name": "No alias" }))
        .await;
    assert!(
        room.chars().any(|c| c.is_ascii_uppercase()),
        "expected a room ID with capitals, got {room}"
    );
    let address = estuary_matrix::address::room_id_address(&room).unwrap();
    let room_jid = format!("{}@{GW}", address.as_str());
    join(&mut s.alice, &room_jid, "alice").await;
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat'><body>found it</body></message>"
        )))
        .await;
    bob.expect_event(&room, WAIT, |e| e["content"]["body"] == "found it")
        .await;
    // The gateway lists it under the same JID.
    let items = s.alice.disco_items(GW).await;
    assert!(
        String::from(&items).contains(&format!("jid='{room_jid}'")),
        "{}",
        String::from(&items)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistering_logs_the_matrix_device_out() {
    let mut s = setup().await;
    let devices = |reply: &serde_json::Value| {
        reply["devices"]
            .as_array()
            .map(|d| d.len())
            .unwrap_or_default()
    };
    // The test's own login and the gateway's.
    let before = s.matrix_alice.call(Method::GET, "/devices", None).await;
    assert_eq!(devices(&before), 2, "{before}");
    let reply = unregister(&mut s.alice).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    let after = s.matrix_alice.call(Method::GET, "/devices", None).await;
    assert_eq!(devices(&after), 1, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_link_from_xmpp_becomes_matrix_media() {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n not really an image, but bytes to compare";
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let (room, alias) = public_room(&bob, "files").await;
    let room_jid = jid_of(&alias);
    join(&mut s.alice, &room_jid, "alice").await;
    let url = world::file_server::serve(PNG, "image/png").await;

    // What Conversations and Dino send for an HTTP upload: the URL as body and as OOB.
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='f1'><body>{url}</body>\
             <x xmlns='jabber:x:oob'><url>{url}</url></x></message>"
        )))
        .await;
    let event = bob
        .expect_event(&room, WAIT, |e| {
            e["type"] == "m.room.message" && e["content"]["msgtype"] == "m.image"
        })
        .await;
    let content = &event["content"];
    assert_eq!(content["body"], "cat.png", "{content}");
    assert_eq!(content["info"]["mimetype"], "image/png", "{content}");
    assert_eq!(content["info"]["size"], PNG.len(), "{content}");
    let mxc = content["url"].as_str().expect("an mxc URI");
    assert_eq!(bob.download(mxc).await, PNG);

    // The sender's reflection carries the link they sent, under their id.
    let reflected = s.alice.expect(WAIT, |m| attr(m, "id") == "f1").await;
    assert_eq!(body(&reflected).as_deref(), Some(url.as_str()));

    // A link inside other text stays text.
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}' type='groupchat' id='f2'><body>look: {url}</body>\
             <x xmlns='jabber:x:oob'><url>{url}</url></x></message>"
        )))
        .await;
    let text = bob
        .expect_event(&room, WAIT, |e| {
            e["content"]["body"].as_str() == Some(&format!("look: {url}"))
        })
        .await;
    assert_eq!(text["content"]["msgtype"], "m.text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_matrix_is_a_link_the_xmpp_client_can_open() {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n bytes of a picture sent from Matrix";
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let (room, alias) = public_room(&bob, "pictures").await;
    let room_jid = jid_of(&alias);
    join(&mut s.alice, &room_jid, "alice").await;

    let mxc = bob.upload(PNG, "image/png", "sunset.png").await;
    bob.send(
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.image", "body": "sunset.png", "url": mxc,
            "info": {"mimetype": "image/png", "size": PNG.len()},
        }),
    )
    .await;
    let shown = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && find_child(m, "x", "jabber:x:oob").is_some()
        })
        .await;
    let oob = find_child(&shown, "x", "jabber:x:oob").unwrap();
    let url = find_child(oob, "url", "jabber:x:oob").unwrap().text();
    // The body is the link alone, which is what makes clients show it inline.
    assert_eq!(body(&shown).as_deref(), Some(url.as_str()));
    assert!(url.ends_with("/sunset.png"), "{url}");

    // The XMPP client opens it without any Matrix credentials.
    let http = reqwest::Client::new();
    let reply = http.get(&url).send().await.unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    assert_eq!(reply.headers()["content-type"], "image/png");
    assert_eq!(reply.bytes().await.unwrap().as_ref(), PNG);

    // A link the gateway did not make opens nothing.
    let (head, tail) = url.split_at(url.len() - "/sunset.png".len());
    let (base, media) = head.rsplit_once('/').unwrap(); // media id
    let (base, server) = base.rsplit_once('/').unwrap();
    let (base, _signature) = base.rsplit_once('/').unwrap();
    let forged = format!("{base}/{}/{server}/{media}{tail}", "0".repeat(32));
    let reply = http.get(&forged).send().await.unwrap();
    assert_eq!(reply.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_to_rooms_both_ways() {
    const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    let mut s = setup().await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    let carol = MatrixUser::new(s.synapse, "carol", "pw").await;
    let room = bob
        .create_room(json!({ "preset": "private_chat", "name": "Secret" }))
        .await;

    // Matrix → XMPP: a mediated invitation from the room, naming the inviter.
    bob.room_action(
        &room,
        "invite",
        json!({ "user_id": s.matrix_alice.user_id, "reason": "come in" }),
    )
    .await;
    let invitation = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && find_child(m, "x", MUC_USER)
                    .is_some_and(|x| x.get_child("invite", MUC_USER).is_some())
        })
        .await;
    let room_jid = attr(&invitation, "from").to_owned();
    // The room's ID as its JID (IDs of room version 12 have no server part).
    assert!(
        room_jid.starts_with('!') && room_jid.ends_with(&format!("@{GW}")),
        "{room_jid}"
    );
    let invite = find_child(&invitation, "x", MUC_USER)
        .and_then(|x| x.get_child("invite", MUC_USER))
        .unwrap();
    assert_eq!(attr(invite, "from"), jid_of(&bob.user_id));
    assert_eq!(
        invite
            .get_child("reason", MUC_USER)
            .map(Element::text)
            .as_deref(),
        Some("come in")
    );

    // Accepting is joining the MUC.
    join(&mut s.alice, &room_jid, "alice").await;

    // XMPP → Matrix: a mediated invitation sent to the room invites carol.
    s.alice
        .send(el(&format!(
            "<message to='{room_jid}'><x xmlns='{MUC_USER}'>\
             <invite to='{}'><reason>join us</reason></invite></x></message>",
            jid_of(&carol.user_id)
        )))
        .await;
    let path = format!(
        "/rooms/{}/state/m.room.member/{}",
        world::synapse::encode(&room),
        world::synapse::encode(&carol.user_id)
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, member) = bob.try_call(Method::GET, &path, None).await;
        if status.is_success() && member["membership"] == "invite" {
            assert_eq!(member["reason"], "join us");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol was not invited: {member}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where the server grants the roster privilege (XEP-0356), the gateway and
/// each new contact go straight into the roster, named and grouped, with no
/// request to accept; unregistering takes them out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_roster_privilege_contacts_are_put_in_the_roster() {
    let prosody = Prosody::start_with_roster_privilege(&[(GW, "secret")]);
    let mut s = registered(setup_unregistered_with(Synapse::shared(), prosody).await).await;
    let bob = MatrixUser::new(s.synapse, "bob", "pw").await;
    bob.call(
        Method::PUT,
        &format!(
            "/profile/{}/displayname",
            world::synapse::encode(&bob.user_id)
        ),
        Some(json!({"displayname": "Bob Builder"})),
    )
    .await;
    let bob_jid = jid_of(&bob.user_id);
    let get_roster = el("<query xmlns='jabber:iq:roster'/>");
    // Servers push roster changes to resources that fetched the roster.
    let roster = s
        .alice
        .iq("alice@localhost", "get", get_roster.clone())
        .await;
    let gateway = roster_item(&roster, GW).expect("the gateway is in the roster");
    assert_eq!(gateway.attr("subscription"), Some("both"));
    assert!(roster_item(&roster, &bob_jid).is_none());

    s.alice.message(&bob_jid, "hi bob").await;
    let dm = bob.expect_invite(WAIT).await;
    bob.join(&dm).await;
    bob.say(&dm, "hi alice").await;
    let push = s
        .alice
        .expect(WAIT, |iq| {
            iq.name() == "iq" && attr(iq, "type") == "set" && roster_item(iq, &bob_jid).is_some()
        })
        .await;
    let item = roster_item(&push, &bob_jid).unwrap();
    let xml = String::from(&push);
    assert_eq!(item.attr("subscription"), Some("both"), "{xml}");
    assert_eq!(item.attr("name"), Some("Bob Builder"), "{xml}");
    let group = find_child(item, "group", "jabber:iq:roster").map(|g| g.text());
    assert_eq!(group.as_deref(), Some("Matrix gateway"), "{xml}");

    // It stays in the roster, and no subscription request came instead,
    // neither from the contact nor from the gateway.
    let roster = s
        .alice
        .iq("alice@localhost", "get", get_roster.clone())
        .await;
    let kept = roster_item(&roster, &bob_jid).expect("bob is in the roster");
    assert_eq!(kept.attr("subscription"), Some("both"));
    while let Some(stanza) = s.alice.recv(Duration::from_millis(500)).await {
        assert!(
            !(stanza.name() == "presence" && attr(&stanza, "type") == "subscribe"),
            "a subscription request came as well: {}",
            String::from(&stanza)
        );
    }

    // Unregistering takes the contact and the gateway out of the roster.
    let reply = unregister(&mut s.alice).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    for jid in [bob_jid.as_str(), GW] {
        s.alice
            .expect(WAIT, |iq| {
                roster_item(iq, jid).is_some_and(|i| i.attr("subscription") == Some("remove"))
            })
            .await;
    }
    let roster = s.alice.iq("alice@localhost", "get", get_roster).await;
    assert!(roster_item(&roster, &bob_jid).is_none() && roster_item(&roster, GW).is_none());
}
