//! The IRC bridge against a real InspIRCd and a real Prosody: the first
//! slice of the IRC issue (connections, channels, messages both ways).

mod world;

use std::time::Duration;

use estuary::app::{self, Running};
use estuary::config::{ComponentConfig, Config, GatewayConfig, StoreConfig};
use estuary::networks::Networks;
use world::inspircd::Inspircd;
use world::irc_client::IrcClient;
use world::{attr, body, el, find_child, Element, Prosody, XmppClient};

const GW: &str = "irc.localhost";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    prosody: Prosody,
    ircd: Inspircd,
    estuary: Option<Running>,
    _dir: tempfile::TempDir,
    alice: XmppClient,
    /// To start Estuary again on the same store.
    config: Config,
}

/// Prosody, InspIRCd, Estuary with the IRC bridge, and `alice` registered with nick `alice`.
async fn setup() -> Setup {
    let ircd = Inspircd::start();
    let server = serde_json::json!({ "address": "127.0.0.1", "port": ircd.port() });
    setup_with(ircd, server).await
}

/// Like [`setup`], with the given InspIRCd and options for the `localhost` server.
async fn setup_with(ircd: Inspircd, server: serde_json::Value) -> Setup {
    setup_with_servers(ircd, serde_json::json!({ "localhost": server })).await
}

/// Like [`setup`], with the given InspIRCd (`ircd`) and `servers` options.
async fn setup_with_servers(ircd: Inspircd, servers: serde_json::Value) -> Setup {
    setup_with_options(ircd, serde_json::json!({ "servers": servers })).await
}

/// Like [`setup`], with the given InspIRCd (`ircd`) and gateway `options`.
async fn setup_with_options(ircd: Inspircd, options: serde_json::Value) -> Setup {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESTUARY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let prosody = Prosody::start(&[(GW, "secret")]);
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        component: ComponentConfig {
            server: prosody.component_addr(),
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..ComponentConfig::default()
        },
        store: StoreConfig {
            url: String::new(),
            data_dir: dir.path().to_owned(),
        },
        runtime: Default::default(),
        source: None,
        gateways: vec![GatewayConfig {
            domain: GW.to_owned(),
            secret: "secret".to_owned(),
            kind: "irc".to_owned(),
            server: None,
            host_domain: None,
            allowed: vec![],
            admins: vec![],
            persistent_by_default: false,
            options,
        }],
    };
    let estuary = start_estuary(config.clone()).await;
    prosody.add_user("alice", "pw");
    let mut alice =
        XmppClient::connect(prosody.c2s_port(), "alice", "localhost", "pw", "res").await;
    alice.send(el("<presence/>")).await;
    let reply = alice.submit_registration(GW, &[("nick", "alice")]).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    Setup {
        prosody,
        ircd,
        estuary: Some(estuary),
        _dir: dir,
        alice,
        config,
    }
}

/// Estuary on `config`, once its component link is up.
async fn start_estuary(config: Config) -> Running {
    let estuary = app::start(config, &Networks::builtin()).await.unwrap();
    world::wait_for_link(&estuary, GW).await;
    estuary
}

impl Setup {
    /// Stops Estuary, keeping its store for [`Setup::start_gateway`].
    async fn stop_gateway(&mut self) {
        self.estuary.take().unwrap().stop().await.unwrap();
    }

    /// Starts Estuary again, on the same configuration and store, and
    /// waits for its component link.
    async fn start_gateway(&mut self) {
        self.estuary = Some(start_estuary(self.config.clone()).await);
    }
}

/// `client` says `body` in `room` under the id `id`; returns what comes
/// back under that id (the reflection, or an error).
async fn say_in_room(client: &mut XmppClient, room: &str, id: &str, body: &str) -> Element {
    client
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='{id}'><body>{body}</body></message>"
        )))
        .await;
    client
        .expect(WAIT, |m| m.name() == "message" && attr(m, "id") == id)
        .await
}

fn from(s: &Element, jid: &str) -> bool {
    attr(s, "from") == jid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_round_trip_between_xmpp_and_irc() {
    let mut s = setup().await;
    let room = format!("#test%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#test").await;

    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/bob"))
        })
        .await;
    let own = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    assert!(
        String::from(&own).contains("code='110'"),
        "{}",
        String::from(&own)
    );
    s.alice
        .expect(WAIT, |m| {
            m.name() == "message" && m.get_child("subject", "jabber:client").is_some()
        })
        .await;
    bob.expect(WAIT, |l| l.contains("JOIN") && l.contains("alice"))
        .await;

    // XMPP → IRC; the reflection comes once, after the server's echo, with
    // the client's id and origin-id kept.
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='x1'><body>hello irc</body>\
             <origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG #test :hello irc"))
        .await;
    let reflected = s.alice.expect(WAIT, |m| attr(m, "id") == "x1").await;
    let origin = find_child(&reflected, "origin-id", "urn:xmpp:sid:0").expect("origin-id");
    assert_eq!(attr(origin, "id"), "o1");
    assert!(find_child(&reflected, "stanza-id", "urn:xmpp:sid:0").is_some());
    let twice = tokio::time::timeout(
        Duration::from_millis(300),
        s.alice.expect(WAIT, |m| attr(m, "id") == "x1"),
    )
    .await;
    assert!(twice.is_err(), "reflected twice");

    // IRC cannot edit or retract: each is refused as such, never sent as text.
    for (id, payload) in [
        (
            "c1",
            "<body>hello IRC</body><replace xmlns='urn:xmpp:message-correct:0' id='x1'/>",
        ),
        (
            "r1",
            "<retract xmlns='urn:xmpp:message-retract:1' id='x1'/>",
        ),
    ] {
        s.alice
            .send(el(&format!(
                "<message to='{room}' type='groupchat' id='{id}'>{payload}</message>"
            )))
            .await;
        let refused = s.alice.expect(WAIT, |m| attr(m, "id") == id).await;
        assert_eq!(attr(&refused, "type"), "error", "{id}");
        assert!(
            String::from(&refused).contains("feature-not-implemented"),
            "{id}"
        );
    }

    // A long line is split under 512 bytes, on word boundaries, losing nothing.
    let words: Vec<String> = (0..200).map(|i| format!("word{i}")).collect();
    let long = words.join(" ");
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat'><body>{long}</body></message>"
        )))
        .await;
    let mut got = Vec::new();
    while got.len() < words.len() {
        let line = bob
            .expect(WAIT, |l| l.contains("PRIVMSG #test :word"))
            .await;
        assert!(line.len() + 2 <= 512, "line too long: {}", line.len());
        let text = line.split_once(" :").unwrap().1.to_owned();
        got.extend(text.split(' ').map(str::to_owned));
    }
    assert_eq!(got, words);

    // IRC → XMPP, formatting turned into styling.
    bob.privmsg("#test", "\u{2}bold\u{2} and \u{3}04red").await;
    let m = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &format!("{room}/bob"))
        })
        .await;
    assert_eq!(body(&m).as_deref(), Some("*bold* and red"));

    // Private messages both ways.
    bob.privmsg("alice", "psst").await;
    let private = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &format!("bob%localhost@{GW}"))
        })
        .await;
    assert_eq!(body(&private).as_deref(), Some("psst"));
    s.alice
        .send(el(&format!(
            "<message to='bob%localhost@{GW}' type='chat'><body>back</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG bob :back")).await;

    // No injection: a line break makes two messages, never a command.
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat'><body>one\nQUIT :pwned</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG #test :one")).await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG #test :QUIT :pwned"))
        .await;

    // /me is a CTCP ACTION, both ways.
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat'><body>/me waves</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| {
        l.contains("PRIVMSG #test :\u{1}ACTION waves\u{1}")
    })
    .await;
    bob.privmsg("#test", "\u{1}ACTION nods\u{1}").await;
    let action = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("/me nods"))
        .await;
    assert!(from(&action, &format!("{room}/bob")));

    // Invalid UTF-8 from IRC arrives as Latin-1 text.
    bob.send_bytes(b"PRIVMSG #test :caf\xe9").await;
    s.alice
        .expect(WAIT, |m| body(m).as_deref() == Some("café"))
        .await;

    // Leaving parts the channel.
    s.alice
        .send(el(&format!(
            "<presence to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    bob.expect(WAIT, |l| {
        l.starts_with(":alice!") && l.contains("PART") && l.contains("#test")
    })
    .await;
    if let Some(e) = s.estuary.take() {
        e.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_prefixes_become_affiliations_and_roles() {
    let mut s = setup().await;
    let room = format!("#modes%localhost@{GW}");
    let mut op = IrcClient::connect(s.ircd.port(), "chanop").await;
    op.join("#modes").await; // the first to join gets @
    let mut voiced = IrcClient::connect(s.ircd.port(), "voiced").await;
    voiced.join("#modes").await;
    op.send("MODE #modes +v voiced").await;
    op.expect(WAIT, |l| {
        l.contains("MODE #modes +v") && l.contains("voiced")
    })
    .await;

    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    let item = |p: &Element| {
        let x = find_child(p, "x", "http://jabber.org/protocol/muc#user").unwrap();
        let item = x.children().find(|c| c.name() == "item").unwrap();
        (
            attr(item, "affiliation").to_owned(),
            attr(item, "role").to_owned(),
        )
    };
    let p = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/chanop"))
        })
        .await;
    assert_eq!(item(&p), ("admin".to_owned(), "moderator".to_owned()));
    let p = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/voiced"))
        })
        .await;
    assert_eq!(item(&p), ("member".to_owned(), "participant".to_owned()));

    // The room is non-anonymous (status 100), so each occupant is shown with
    // a JID: an IRC user's own (where a private chat with them goes), and
    // alice her full JID in her self-presence.
    let real = |p: &Element| {
        let x = find_child(p, "x", "http://jabber.org/protocol/muc#user").unwrap();
        let item = x.children().find(|c| c.name() == "item").unwrap();
        attr(item, "jid").to_owned()
    };
    assert_eq!(real(&p), format!("voiced%localhost@{GW}"));
    let own = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    assert!(String::from(&own).contains("code='100'"));
    assert_eq!(real(&own), "alice@localhost/res");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_irc_server_is_reported_and_rejoined() {
    let mut s = setup().await;
    let room = format!("#back%localhost@{GW}");
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;

    s.ircd.kill();
    let gone = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room}/alice"))
                && attr(p, "type") == "unavailable"
        })
        .await;
    assert!(
        String::from(&gone).contains("code='332'"),
        "{}",
        String::from(&gone)
    );

    s.ircd.restart();
    // A fresh join once the server is back.
    let back = s
        .alice
        .expect(Duration::from_secs(30), |p| {
            p.name() == "presence"
                && from(p, &format!("{room}/alice"))
                && attr(p, "type").is_empty()
        })
        .await;
    assert!(String::from(&back).contains("code='110'"));
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#back").await;
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat'><body>still here</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG #back :still here"))
        .await;
}

fn muc_item(p: &Element) -> (String, String) {
    let x = find_child(p, "x", "http://jabber.org/protocol/muc#user").expect("muc#user");
    let item = x.children().find(|c| c.name() == "item").expect("item");
    (
        attr(item, "affiliation").to_owned(),
        attr(item, "role").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_modes_kicks_and_away_both_ways() {
    let mut s = setup().await;
    let room = format!("#mod%localhost@{GW}");
    let occupant = |nick: &str| format!("{room}/{nick}");
    let mut chanop = IrcClient::connect(s.ircd.port(), "chanop").await;
    chanop.join("#mod").await;

    s.alice
        .send(el(&format!("<presence to='{}'/>", occupant("alice"))))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &occupant("alice"))
        })
        .await;

    // Topic from IRC.
    chanop.send("TOPIC #mod :from irc").await;
    let subject = s
        .alice
        .expect(WAIT, |m| {
            m.get_child("subject", "jabber:client")
                .map(Element::text)
                .as_deref()
                == Some("from irc")
        })
        .await;
    assert!(from(&subject, &occupant("chanop")));

    // +o from IRC makes alice a moderator on the XMPP side.
    chanop.send("MODE #mod +o alice").await;
    let promoted = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &occupant("alice")) && muc_item(p).1 == "moderator"
        })
        .await;
    assert_eq!(
        muc_item(&promoted),
        ("admin".to_owned(), "moderator".to_owned())
    );

    // Topic from XMPP.
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat'><subject>from xmpp</subject></message>"
        )))
        .await;
    chanop
        .expect(WAIT, |l| l.contains("TOPIC #mod :from xmpp"))
        .await;

    // A role change from XMPP becomes MODE.
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#mod").await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &occupant("bob"))
        })
        .await;
    let reply = s
        .alice
        .iq(
            &room,
            "set",
            el("<query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='moderator'/></query>"),
        )
        .await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    chanop
        .expect(WAIT, |l| l.contains("MODE #mod +o") && l.contains("bob"))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &occupant("bob")) && muc_item(p).1 == "moderator"
        })
        .await;

    // away-notify: bob goes away.
    bob.send("AWAY :lunch").await;
    let away = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &occupant("bob"))
                && p.get_child("show", "jabber:client").is_some()
        })
        .await;
    assert_eq!(
        away.get_child("show", "jabber:client").unwrap().text(),
        "away"
    );

    // A kick from XMPP.
    let reply = s
        .alice
        .iq(
            &room,
            "set",
            el("<query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='none'><reason>bye</reason></item></query>"),
        )
        .await;
    assert_eq!(attr(&reply, "type"), "result");
    bob.expect(WAIT, |l| l.contains("KICK #mod bob") && l.contains("bye"))
        .await;
    let kicked = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &occupant("bob")) && attr(p, "type") == "unavailable"
        })
        .await;
    assert!(
        String::from(&kicked).contains("code='307'"),
        "{}",
        String::from(&kicked)
    );
}

/// The ban list as XMPP clients manage it (XEP-0045 §9.1–9.2): a ban names
/// a JID, the outcast list is the channel's `+b` list with each mask as a
/// JID, and lifting a listed ban takes its mask off. A ban also kicks, as
/// MUC removes whoever it bans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_managed_through_the_muc_outcast_list() {
    const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
    let mut s = setup().await;
    let room = format!("#bans%localhost@{GW}");
    let occupant = |nick: &str| format!("{room}/{nick}");
    let mut chanop = join_as_operator(&mut s, "#bans").await;
    let query = |items: &str| el(&format!("<query xmlns='{MUC_ADMIN}'>{items}</query>"));
    let listed = |reply: &Element| -> Vec<(String, String, String)> {
        let query = reply
            .get_child("query", MUC_ADMIN)
            .expect("a muc#admin query");
        query
            .children()
            .map(|item| {
                let reason = item
                    .get_child("reason", MUC_ADMIN)
                    .map(Element::text)
                    .unwrap_or_default();
                (
                    attr(item, "jid").to_owned(),
                    attr(item, "affiliation").to_owned(),
                    reason,
                )
            })
            .collect()
    };
    let mask_jid = format!("*!*\\40evil.example%localhost@{GW}");

    // A ban set on IRC is in the outcast list, its mask as a JID.
    chanop.send("MODE #bans +b *!*@evil.example").await;
    chanop
        .expect(WAIT, |l| {
            l.contains("MODE #bans +b :*!*@evil.example")
                || l.contains("MODE #bans +b *!*@evil.example")
        })
        .await;
    s.alice
        .expect(WAIT, |m| {
            String::from(m).contains("sets mode +b *!*@evil.example")
        })
        .await;
    let reply = s
        .alice
        .iq(&room, "get", query("<item affiliation='outcast'/>"))
        .await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    let bans = listed(&reply);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(
        (bans[0].0.as_str(), bans[0].1.as_str()),
        (mask_jid.as_str(), "outcast")
    );
    assert!(bans[0].2.contains("chanop"), "{bans:?}");

    // Listing it showed the user nothing from the server: the next thing
    // alice sees is chanop's message.
    chanop.send("PRIVMSG #bans :after the list").await;
    let next = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && (String::from(m).contains("evil.example")
                    || String::from(m).contains("ban list")
                    || String::from(m).contains("after the list"))
        })
        .await;
    assert!(
        String::from(&next).contains("after the list"),
        "{}",
        String::from(&next)
    );

    // A ban by JID, as clients send it: +b on the nick, and a kick with the reason.
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#bans").await;
    presence_from(&mut s.alice, &occupant("bob")).await;
    let reply = s
        .alice
        .iq(
            &room,
            "set",
            query(&format!(
                "<item affiliation='outcast' jid='bob%localhost@{GW}'><reason>spam</reason></item>"
            )),
        )
        .await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    chanop
        .expect(WAIT, |l| {
            l.contains("MODE #bans +b") && l.contains("bob!*@*")
        })
        .await;
    bob.expect(WAIT, |l| l.contains("KICK #bans bob") && l.contains("spam"))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &occupant("bob")) && attr(p, "type") == "unavailable"
        })
        .await;
    bob.send("JOIN #bans").await;
    bob.expect(WAIT, |l| l.contains(" 474 ")).await;

    // Lifting a listed ban, by the JID the list gave.
    let reply = s
        .alice
        .iq(
            &room,
            "set",
            query(&format!("<item affiliation='none' jid='{mask_jid}'/>")),
        )
        .await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    chanop
        .expect(WAIT, |l| {
            l.contains("MODE #bans -b") && l.contains("*!*@evil.example")
        })
        .await;
    let reply = s
        .alice
        .iq(&room, "get", query("<item affiliation='outcast'/>"))
        .await;
    let bans: Vec<String> = listed(&reply).into_iter().map(|b| b.0).collect();
    assert_eq!(bans, [format!("bob!*\\40*%localhost@{GW}")]);

    // The admins are those the room shows as such, with their JIDs.
    let reply = s
        .alice
        .iq(&room, "get", query("<item affiliation='admin'/>"))
        .await;
    let mut admins: Vec<String> = listed(&reply).into_iter().map(|a| a.0).collect();
    admins.sort();
    assert_eq!(admins.len(), 2, "{admins:?}");
    assert_eq!(admins[1], format!("chanop%localhost@{GW}"));

    // What has no place in IRC's lists is refused, and nothing is sent.
    let refusals = [
        (
            "set",
            "<item affiliation='outcast' jid='mallory@localhost'/>".to_owned(),
            "not-acceptable",
        ),
        (
            "set",
            format!("<item affiliation='member' jid='{mask_jid}'/>"),
            "bad-request",
        ),
        (
            "get",
            "<item affiliation='none'/>".to_owned(),
            "bad-request",
        ),
        ("get", "<item/>".to_owned(), "bad-request"),
    ];
    for (kind, items, condition) in refusals {
        let reply = s.alice.iq(&room, kind, query(&items)).await;
        assert_eq!(
            attr(&reply, "type"),
            "error",
            "{items}: {}",
            String::from(&reply)
        );
        assert!(
            String::from(&reply).contains(condition),
            "{items}: {}",
            String::from(&reply)
        );
    }
}

/// A channel's modes as its MUC configuration (XEP-0045 §10.2), which
/// biboumi does not offer: the form shows `+m`, `+i`, `+t`, `+s`/`+p`, `+k`
/// and `+l` as the room's settings, a moderator's submission becomes the
/// MODE line that makes the channel so, and the key is never shown. The
/// room's disco#info tells the same settings as features, and a change
/// from either side is announced with status 104.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_modes_are_its_room_configuration() {
    const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
    let mut s = setup().await;
    let room = format!("#conf%localhost@{GW}");
    let occupant = |nick: &str| format!("{room}/{nick}");
    let mut chanop = join_as_operator(&mut s, "#conf").await;
    let values = |reply: &Element| -> std::collections::BTreeMap<String, String> {
        let form = reply
            .get_child("query", MUC_OWNER)
            .and_then(|q| q.get_child("x", "jabber:x:data"))
            .unwrap_or_else(|| panic!("a form: {}", String::from(reply)));
        form.children()
            .filter(|f| f.name() == "field")
            .map(|f| {
                let value = f
                    .children()
                    .find(|v| v.name() == "value")
                    .map(Element::text)
                    .unwrap_or_default();
                (attr(f, "var").to_owned(), value)
            })
            .collect()
    };
    let get = el(&format!("<query xmlns='{MUC_OWNER}'/>"));
    let submit = |fields: &[(&str, &str)]| {
        let fields: String = fields
            .iter()
            .map(|(var, value)| {
                format!("<field var='muc#roomconfig_{var}'><value>{value}</value></field>")
            })
            .collect();
        el(&format!(
            "<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             {fields}</x></query>"
        ))
    };

    // The room's disco#info tells its settings (XEP-0045 §15.2), once the
    // gateway has read the channel's modes after the join; InspIRCd makes
    // a channel +nt.
    let unconfigured = ["muc_unsecured", "muc_open", "muc_unmoderated", "muc_public"];
    let features = features_once(&mut s.alice, &room, |f| f.contains(&"muc_open".into())).await;
    for feature in unconfigured {
        assert!(
            features.iter().any(|f| f == feature),
            "{feature}: {features:?}"
        );
    }
    let config_changed = |m: &Element| {
        m.name() == "message"
            && from(m, &room)
            && find_child(m, "x", "http://jabber.org/protocol/muc#user")
                .is_some_and(|x| x.children().any(|c| c.attr("code") == Some("104")))
    };
    // Learnt after the join, which a client may have read the disco#info
    // before: told as a change.
    s.alice.expect(WAIT, config_changed).await;
    let reply = s.alice.iq(&room, "get", get.clone()).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    let form = values(&reply);
    assert_eq!(form["muc#roomconfig_moderatedroom"], "0", "{form:?}");
    assert_eq!(form["muc#roomconfig_changesubject"], "0", "{form:?}");
    assert_eq!(form["muc#roomconfig_publicroom"], "1", "{form:?}");
    assert_eq!(
        form["muc#roomconfig_passwordprotectedroom"], "0",
        "{form:?}"
    );
    assert_eq!(form["muc#roomconfig_maxusers"], "0", "{form:?}");

    let reply = s
        .alice
        .iq(
            &room,
            "set",
            submit(&[
                ("moderatedroom", "1"),
                ("publicroom", "0"),
                ("passwordprotectedroom", "1"),
                ("roomsecret", "sesame"),
                ("maxusers", "20"),
                ("changesubject", "0"),
            ]),
        )
        .await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    let line = chanop
        .expect(WAIT, |l| l.contains("MODE #conf +") && l.contains("sesame"))
        .await;
    assert!(
        line.contains("+mskl sesame") && line.contains("20"),
        "{line}"
    );
    // The room says so, and tells the clients in it that its configuration
    // changed (status 104), which its disco#info then shows.
    s.alice
        .expect(WAIT, |m| String::from(m).contains("sets mode +mskl"))
        .await;
    s.alice.expect(WAIT, config_changed).await;
    let features = s.alice.disco_features(&room).await;
    for feature in [
        "muc_passwordprotected",
        "muc_open",
        "muc_moderated",
        "muc_hidden",
    ] {
        assert!(
            features.iter().any(|f| f == feature),
            "{feature}: {features:?}"
        );
    }
    // A change made on IRC too.
    chanop.send("MODE #conf +i").await;
    s.alice.expect(WAIT, config_changed).await;
    let features = s.alice.disco_features(&room).await;
    assert!(
        features.iter().any(|f| f == "muc_membersonly"),
        "{features:?}"
    );
    let form = values(&s.alice.iq(&room, "get", get.clone()).await);
    assert_eq!(form["muc#roomconfig_moderatedroom"], "1", "{form:?}");
    assert_eq!(form["muc#roomconfig_publicroom"], "0", "{form:?}");
    assert_eq!(
        form["muc#roomconfig_passwordprotectedroom"], "1",
        "{form:?}"
    );
    assert_eq!(
        form["muc#roomconfig_roomsecret"], "",
        "the key is never shown"
    );
    assert_eq!(form["muc#roomconfig_maxusers"], "20", "{form:?}");

    // Taking the key and the limit off.
    let reply = s
        .alice
        .iq(
            &room,
            "set",
            submit(&[("passwordprotectedroom", "0"), ("maxusers", "0")]),
        )
        .await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    chanop.expect(WAIT, |l| l.contains("MODE #conf -kl")).await;

    // What IRC cannot take is refused; a cancel is answered.
    let reply = s
        .alice
        .iq(
            &room,
            "set",
            submit(&[("passwordprotectedroom", "1"), ("roomsecret", "two words")]),
        )
        .await;
    assert!(
        String::from(&reply).contains("bad-request"),
        "{}",
        String::from(&reply)
    );
    let cancel = el(&format!(
        "<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='cancel'/></query>"
    ));
    let reply = s.alice.iq(&room, "set", cancel).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));

    // Once no longer an operator, alice may read the settings but not change them.
    chanop.send("MODE #conf -o alice").await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &occupant("alice")) && muc_item(p).1 == "participant"
        })
        .await;
    let reply = s
        .alice
        .iq(&room, "set", submit(&[("moderatedroom", "0")]))
        .await;
    assert!(
        String::from(&reply).contains("forbidden"),
        "{}",
        String::from(&reply)
    );
}

/// The features of `room`'s disco#info, once `ready` holds of them.
async fn features_once(
    client: &mut XmppClient,
    room: &str,
    ready: impl Fn(&Vec<String>) -> bool,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let features = client.disco_features(room).await;
        if ready(&features) || std::time::Instant::now() > deadline {
            return features;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `chanop` opens `channel` on IRC, alice joins it through the gateway,
/// and `chanop` makes her an operator: a moderator once she is told so.
async fn join_as_operator(s: &mut Setup, channel: &str) -> IrcClient {
    let occupant = format!("{channel}%localhost@{GW}/alice");
    let mut chanop = IrcClient::connect(s.ircd.port(), "chanop").await;
    chanop.join(channel).await;
    s.alice
        .send(el(&format!("<presence to='{occupant}'/>")))
        .await;
    presence_from(&mut s.alice, &occupant).await;
    chanop.send(&format!("MODE {channel} +o alice")).await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &occupant) && muc_item(p).1 == "moderator"
        })
        .await;
    chanop
}

/// The next presence from `jid`, setting aside everything else.
async fn presence_from(client: &mut XmppClient, jid: &str) -> Element {
    client
        .expect(WAIT, |p| p.name() == "presence" && from(p, jid))
        .await
}

/// Status modes, away, nick changes and quits of someone in one of the
/// user's two channels show in that room only, with the standing each
/// earlier change left. IRC tells a quit, a nick change and away-notify
/// without a channel, and the gateway keeps no member list per IRC
/// connection: the room's own list decides where they show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_away_nicks_and_quits_follow_the_member_in_each_room() {
    let mut s = setup().await;
    let one = format!("#one%localhost@{GW}");
    let two = format!("#two%localhost@{GW}");
    let mut chanop = IrcClient::connect(s.ircd.port(), "chanop").await;
    chanop.join("#one").await;
    chanop.join("#two").await;
    join_as_alice(&mut s, &one).await;
    join_as_alice(&mut s, &two).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#one").await;
    presence_from(&mut s.alice, &format!("{one}/bob")).await;

    // Each change is shown with everything bob holds: -o leaves the +v.
    let steps = [
        ("+v", ("member", "participant")),
        ("+o", ("admin", "moderator")),
        ("-o", ("member", "participant")),
    ];
    for (change, (affiliation, role)) in steps {
        chanop.send(&format!("MODE #one {change} bob")).await;
        let shown = presence_from(&mut s.alice, &format!("{one}/bob")).await;
        assert_eq!(
            muc_item(&shown),
            (affiliation.to_owned(), role.to_owned()),
            "after {change}: {}",
            String::from(&shown)
        );
    }

    // Away keeps the standing.
    bob.send("AWAY :lunch").await;
    let away = presence_from(&mut s.alice, &format!("{one}/bob")).await;
    assert_eq!(
        away.get_child("show", "jabber:client").unwrap().text(),
        "away"
    );
    assert_eq!(
        muc_item(&away),
        ("member".to_owned(), "participant".to_owned())
    );

    // A nick change keeps both the standing and the away.
    bob.send("NICK bobby").await;
    let gone = presence_from(&mut s.alice, &format!("{one}/bob")).await;
    assert!(
        String::from(&gone).contains("code='303'"),
        "{}",
        String::from(&gone)
    );
    let renamed = presence_from(&mut s.alice, &format!("{one}/bobby")).await;
    assert_eq!(
        muc_item(&renamed),
        ("member".to_owned(), "participant".to_owned())
    );
    assert_eq!(
        renamed
            .get_child("show", "jabber:client")
            .map(Element::text)
            .as_deref(),
        Some("away")
    );

    // The modes moved with the nick: dropping the voice leaves none.
    chanop.send("MODE #one -v bobby").await;
    let devoiced = presence_from(&mut s.alice, &format!("{one}/bobby")).await;
    assert_eq!(
        muc_item(&devoiced),
        ("none".to_owned(), "participant".to_owned())
    );

    bob.quit("bye").await;
    let quit = presence_from(&mut s.alice, &format!("{one}/bobby")).await;
    assert_eq!(attr(&quit, "type"), "unavailable");

    // Nothing of bob's ever showed in #two: read up to a later message there.
    chanop.send("PRIVMSG #two :marker").await;
    let mut in_two = Vec::new();
    loop {
        let stanza = s.alice.recv(WAIT).await.expect("the marker never came");
        if body(&stanza).as_deref() == Some("marker") {
            break;
        }
        if attr(&stanza, "from").starts_with(&format!("{two}/bob")) {
            in_two.push(String::from(&stanza));
        }
    }
    assert!(in_two.is_empty(), "bob showed in #two: {in_two:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_list_nick_change_and_closing_after_the_last_part() {
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    for chan in ["#alpha", "#beta", "#gamma"] {
        bob.join(chan).await;
    }
    let server = format!("localhost@{GW}");
    let list = s.alice.disco_items(&server).await;
    let xml = String::from(&list);
    for chan in ["#alpha", "#beta", "#gamma"] {
        assert!(
            xml.contains(&format!("jid='{chan}%localhost@{GW}'")),
            "{xml}"
        );
    }
    let page = s
        .alice
        .iq(
            &server,
            "get",
            el("<query xmlns='http://jabber.org/protocol/disco#items'>\
                <set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set></query>"),
        )
        .await;
    let query = find_child(&page, "query", "http://jabber.org/protocol/disco#items").unwrap();
    assert_eq!(query.children().filter(|c| c.name() == "item").count(), 2);
    let set = query
        .get_child("set", "http://jabber.org/protocol/rsm")
        .expect("rsm set");
    assert_eq!(
        set.get_child("count", "http://jabber.org/protocol/rsm")
            .unwrap()
            .text(),
        "3"
    );

    // A nick change from XMPP.
    let room = format!("#alpha%localhost@{GW}");
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    s.alice
        .send(el(&format!("<presence to='{room}/alicia'/>")))
        .await;
    bob.expect(WAIT, |l| {
        l.starts_with(":alice!") && l.contains("NICK") && l.contains("alicia")
    })
    .await;
    let changed = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room}/alice"))
                && attr(p, "type") == "unavailable"
        })
        .await;
    assert!(String::from(&changed).contains("code='303'"));
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alicia"))
        })
        .await;

    // Leaving the last channel closes the IRC connection.
    s.alice
        .send(el(&format!(
            "<presence to='{room}/alicia' type='unavailable'/>"
        )))
        .await;
    bob.expect(WAIT, |l| l.starts_with(":alicia!") && l.contains("PART"))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        bob.send("ISON alicia").await;
        let reply = bob.expect(WAIT, |l| l.contains(" 303 ")).await;
        if !reply.contains("alicia") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alicia is still connected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_jid_takes_raw_commands_and_away_follows_presence() {
    let mut s = setup().await;
    let server = format!("localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#lobby").await;
    let room = format!("#lobby%localhost@{GW}");
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    // The server's message of the day comes from its JID, as one message.
    let motd = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && from(m, &server)
                && body(m).is_some_and(|b| b.starts_with("Message of the day"))
        })
        .await;
    assert!(body(&motd).unwrap().contains("Estuary test IRC server."));

    // A message to the server JID is a raw command; replies come from there.
    s.alice
        .send(el(&format!(
            "<message to='{server}' type='chat'><body>WHOIS bob</body></message>"
        )))
        .await;
    let reply = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &server) && body(m).is_some_and(|b| b.contains("bob"))
        })
        .await;
    assert!(body(&reply).is_some());

    // XMPP away becomes IRC AWAY, with the status as the message. Clients
    // repeat their presence to each room they are in (XEP-0045 §7.7).
    s.alice
        .send(el(&format!(
            "<presence to='{room}/alice'><show>away</show><status>brb</status></presence>"
        )))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        bob.send("WHOIS alice").await;
        let end = bob.expect(WAIT, |l| l.contains(" 318 ")).await;
        let away = bob
            .take_backlog()
            .into_iter()
            .any(|l| l.contains(" 301 ") && l.contains("brb"));
        if away {
            break;
        }
        let _ = end;
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice never went away on IRC"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A presence change is never a nick change.
    bob.expect_none(Duration::from_millis(300), |l| l.contains(" NICK "))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_control_queues_rather_than_drops() {
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#flood").await;
    let room = format!("#flood%localhost@{GW}");
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    // Defaults: a burst of 10 lines, then 2 lines a second.
    let started = tokio::time::Instant::now();
    for i in 0..16 {
        s.alice
            .send(el(&format!(
                "<message to='{room}' type='groupchat'><body>flood {i}</body></message>"
            )))
            .await;
    }
    for i in 0..16 {
        bob.expect(WAIT, |l| l.ends_with(&format!(":flood {i}")))
            .await;
    }
    // Six lines past the burst at two a second take at least about 2.5 s.
    assert!(
        started.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_both_ways() {
    const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    let mut s = setup().await;
    let lobby = format!("#inv%localhost@{GW}");
    let secret = format!("#secret%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#secret").await;
    s.alice
        .send(el(&format!("<presence to='{lobby}/alice'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{lobby}/alice"))
        })
        .await;

    // IRC → XMPP: an INVITE becomes a mediated invitation from the room.
    bob.send("INVITE alice #secret").await;
    let invite = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && from(m, &secret)
                && find_child(m, "x", MUC_USER)
                    .is_some_and(|x| x.get_child("invite", MUC_USER).is_some())
        })
        .await;
    let x = find_child(&invite, "x", MUC_USER).unwrap();
    assert_eq!(
        attr(x.get_child("invite", MUC_USER).unwrap(), "from"),
        format!("bob%localhost@{GW}")
    );
    assert!(body(&invite).unwrap().contains("invites you"));

    // XMPP → IRC: a mediated invitation sent to the room becomes INVITE.
    s.alice
        .send(el(&format!(
            "<message to='{lobby}'><x xmlns='{MUC_USER}'>\
             <invite to='bob%localhost@{GW}'><reason>come</reason></invite></x></message>"
        )))
        .await;
    bob.expect(WAIT, |l| {
        l.contains(" INVITE bob :#inv") || l.contains(" INVITE bob #inv")
    })
    .await;

    // A direct invitation (XEP-0249) sent to the IRC user does the same.
    let mut carol = IrcClient::connect(s.ircd.port(), "carol").await;
    s.alice
        .send(el(&format!(
            "<message to='carol%localhost@{GW}'>\
             <x xmlns='jabber:x:conference' jid='{lobby}'/></message>"
        )))
        .await;
    carol
        .expect(WAIT, |l| {
            l.contains(" INVITE carol :#inv") || l.contains(" INVITE carol #inv")
        })
        .await;

    // An XMPP user elsewhere is invited the way a MUC service would.
    s.alice
        .send(el(&format!(
            "<message to='{lobby}'><x xmlns='{MUC_USER}'>\
             <invite to='alice@localhost'/></x></message>"
        )))
        .await;
    let forwarded = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && from(m, &lobby)
                && find_child(m, "x", MUC_USER)
                    .is_some_and(|x| x.get_child("invite", MUC_USER).is_some())
        })
        .await;
    let x = find_child(&forwarded, "x", MUC_USER).unwrap();
    assert_eq!(
        attr(x.get_child("invite", MUC_USER).unwrap(), "from"),
        "alice@localhost"
    );

    // Inviting into a room one is not in is refused, and nothing reaches IRC.
    s.alice
        .send(el(&format!(
            "<message id='bad' to='#elsewhere%localhost@{GW}'><x xmlns='{MUC_USER}'>\
             <invite to='bob%localhost@{GW}'/></x></message>"
        )))
        .await;
    let error = s
        .alice
        .expect(WAIT, |m| m.name() == "message" && attr(m, "id") == "bad")
        .await;
    assert_eq!(attr(&error, "type"), "error");
    assert!(String::from(&error).contains("not-acceptable"));
    bob.expect_none(Duration::from_millis(300), |l| l.contains("#elsewhere"))
        .await;
}

/// Alice joins `room`, and gets her own presence (110) back.
async fn join_as_alice(s: &mut Setup, room: &str) {
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    let own = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    assert!(
        attr(&own, "type").is_empty() && String::from(&own).contains("code='110'"),
        "{}",
        String::from(&own)
    );
}

/// An IRC line telling that alice left (a part, or the quit that closes
/// her connection after her last part).
fn alice_left(line: &str) -> bool {
    line.starts_with(":alice!") && (line.contains(" PART ") || line.contains(" QUIT "))
}

/// `client` joins as `occupant` asking for the history `attributes` say
/// (`maxstanzas='5'`).
async fn join_with_history(client: &mut XmppClient, occupant: &str, attributes: &str) {
    client
        .send(el(&format!(
            "<presence to='{occupant}'><x xmlns='http://jabber.org/protocol/muc'>\
             <history {attributes}/></x></presence>"
        )))
        .await;
}

/// Alice asks to join `room` and is refused: the error presence, as text.
async fn refused_join(s: &mut Setup, room: &str) -> String {
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    let error = presence_from(&mut s.alice, &format!("{room}/alice")).await;
    let text = String::from(&error);
    assert_eq!(attr(&error, "type"), "error", "{text}");
    text
}

/// The WHOIS 311 line `asker` gets for `nick`: `… 311 asker nick user host * :realname`.
async fn whois_user(asker: &mut IrcClient, nick: &str) -> String {
    asker.send(&format!("WHOIS {nick}")).await;
    let me = asker.nick().to_owned();
    asker
        .expect(WAIT, |l| l.contains(&format!(" 311 {me} {nick} ")))
        .await
}

/// Whether InspIRCd says `nick` is on a secure connection (WHOIS 671),
/// asked by `asker`, a plaintext client.
async fn whois_secure(asker: &mut IrcClient, nick: &str) -> bool {
    asker.send(&format!("WHOIS {nick}")).await;
    let mut secure = false;
    loop {
        let line = asker
            .expect(WAIT, |l| {
                [" 311 ", " 671 ", " 318 ", " 401 "]
                    .iter()
                    .any(|n| l.contains(n))
            })
            .await;
        assert!(!line.contains(" 401 "), "{nick} is not on IRC: {line}");
        secure |= line.contains(" 671 ");
        if line.contains(" 318 ") {
            return secure;
        }
    }
}

/// A TLS port with a certificate trusted through `ca_file`: the user is on
/// IRC over TLS (InspIRCd's WHOIS says so) and messages flow both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_trusted_certificate() {
    let ircd = Inspircd::start_with_tls();
    let server = serde_json::json!({
        "address": "127.0.0.1",
        "port": ircd.port(),
        "tls_ports": [ircd.tls_port()],
        "ca_file": ircd.cert_path(),
    });
    let mut s = setup_with(ircd, server).await;
    let room = format!("#tls%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#tls").await;
    join_as_alice(&mut s, &room).await;
    assert!(whois_secure(&mut bob, "alice").await, "alice is not on TLS");
    // bob is the plaintext control: the check tells the two apart.
    assert!(!whois_secure(&mut bob, "bob").await);

    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat'><body>over tls</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG #tls :over tls"))
        .await;
    bob.privmsg("#tls", "back over tls").await;
    let m = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &format!("{room}/bob"))
        })
        .await;
    assert_eq!(body(&m).as_deref(), Some("back over tls"));
}

/// A certificate nobody trusts (self-signed, no ca_file): the join fails
/// with an error naming the certificate, and the gateway never falls back
/// to the plain port, which here is a listener that counts connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_without_plaintext_fallback() {
    let ircd = Inspircd::start_with_tls();
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    let plain_accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = plain_accepts.clone();
    let sentinel = tokio::spawn(async move {
        while plain.accept().await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let server = serde_json::json!({
        "address": "127.0.0.1",
        "port": plain_port,
        "tls_ports": [ircd.tls_port()],
    });
    let mut s = setup_with(ircd, server).await;
    let room = format!("#tls%localhost@{GW}");
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    let error = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    let text = String::from(&error);
    assert_eq!(attr(&error, "type"), "error", "{text}");
    assert!(text.contains("TLS certificate"), "{text}");
    assert!(text.contains("not falling back to plaintext"), "{text}");

    // Retries (with backoff) keep to TLS: the plain port never hears from us.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        plain_accepts.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the gateway fell back to the plain port"
    );
    sentinel.abort();
    // And InspIRCd has no alice at all.
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.send("WHOIS alice").await;
    bob.expect(WAIT, |l| l.contains(" 401 ")).await;
}

/// With `verify_certificates = false`, the same untrusted certificate is
/// taken and the connection is over TLS; a refused TLS port before it
/// passes to the next TLS port, not to plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_verification_takes_any_certificate() {
    let ircd = Inspircd::start_with_tls();
    // Reserved by the test world and never listened on: refuses at once.
    let closed = world::free_port();
    let server = serde_json::json!({
        "address": "127.0.0.1",
        "port": ircd.port(),
        "tls_ports": [closed, ircd.tls_port()],
        "verify_certificates": false,
    });
    let mut s = setup_with(ircd, server).await;
    let room = format!("#tls%localhost@{GW}");
    join_as_alice(&mut s, &room).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    assert!(whois_secure(&mut bob, "alice").await, "alice is not on TLS");
}

/// The SHA-256 fingerprint of the certificate in the PEM file at `path`,
/// as `openssl x509 -fingerprint -sha256` prints it.
fn cert_fingerprint(path: &std::path::Path) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let pem = std::fs::read_to_string(path).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let digest = sha2::Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// A pinned certificate (`tls_fingerprint`, biboumi's "fingerprint of the
/// TLS certificate to trust") is taken with no CA behind it; another
/// fingerprint refuses it, with no plaintext fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_certificate_is_taken_and_no_other() {
    let ircd = Inspircd::start_with_tls();
    let pin = cert_fingerprint(&ircd.cert_path());
    let server = serde_json::json!({
        "address": "127.0.0.1",
        "port": ircd.port(),
        "tls_ports": [ircd.tls_port()],
        "tls_fingerprint": pin,
    });
    let mut s = setup_with(ircd, server).await;
    let room = format!("#pinned%localhost@{GW}");
    join_as_alice(&mut s, &room).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    assert!(whois_secure(&mut bob, "alice").await, "alice is not on TLS");

    // A certificate other than the pinned one: refused.
    let ircd = Inspircd::start_with_tls();
    let server = serde_json::json!({
        "address": "127.0.0.1",
        "port": ircd.port(),
        "tls_ports": [ircd.tls_port()],
        "tls_fingerprint": "00:".repeat(31) + "00",
    });
    let mut s = setup_with(ircd, server).await;
    s.alice
        .send(el(&format!(
            "<presence to='#pinned%localhost@{GW}/alice'/>"
        )))
        .await;
    let error = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("#pinned%localhost@{GW}/alice"))
        })
        .await;
    let text = String::from(&error);
    assert_eq!(attr(&error, "type"), "error", "{text}");
    assert!(text.contains("not falling back to plaintext"), "{text}");
}

/// A TLS port that refuses the connection passes to the next port, and the
/// plain port comes last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_port_falls_back_to_the_plain_port() {
    let ircd = Inspircd::start();
    // Reserved by the test world and never listened on: refuses at once.
    let closed = world::free_port();
    let server = serde_json::json!({
        "address": "127.0.0.1",
        "port": ircd.port(),
        "tls_ports": [closed],
    });
    let mut s = setup_with(ircd, server).await;
    let room = format!("#plain%localhost@{GW}");
    join_as_alice(&mut s, &room).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    assert!(!whois_secure(&mut bob, "alice").await, "alice is on TLS?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_resources_share_one_connection_and_see_everything() {
    let mut s = setup().await;
    let room = format!("#multi%localhost@{GW}");
    let me = format!("{room}/alice");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#multi").await;
    let mut phone =
        XmppClient::connect(s.prosody.c2s_port(), "alice", "localhost", "pw", "phone").await;
    phone.send(el("<presence/>")).await;

    for client in [&mut s.alice, &mut phone] {
        client.send(el(&format!("<presence to='{me}'/>"))).await;
        let own = client
            .expect(WAIT, |p| {
                p.name() == "presence" && from(p, &me) && String::from(p).contains("code='110'")
            })
            .await;
        assert!(String::from(&own).contains("code='110'"));
    }
    // One IRC connection: bob sees alice join once, and no second nick.
    bob.expect(WAIT, |l| l.contains(" JOIN ") && l.starts_with(":alice!"))
        .await;
    bob.expect_none(Duration::from_millis(500), |l| {
        l.contains(" JOIN ") && !l.starts_with(":alice!")
    })
    .await;

    // A message from IRC reaches both resources.
    bob.send("PRIVMSG #multi :hello both").await;
    for client in [&mut s.alice, &mut phone] {
        client
            .expect(WAIT, |m| body(m).as_deref() == Some("hello both"))
            .await;
    }
    // A message from one resource goes to IRC once and is reflected to both.
    phone
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='p1'><body>from the phone</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG #multi :from the phone"))
        .await;
    for client in [&mut s.alice, &mut phone] {
        let echo = client
            .expect(WAIT, |m| body(m).as_deref() == Some("from the phone"))
            .await;
        assert_eq!(attr(&echo, "id"), "p1");
        assert!(from(&echo, &me));
    }
    bob.expect_none(Duration::from_millis(300), |l| l.contains("from the phone"))
        .await;

    // One resource leaving keeps the nick on IRC; the last one leaving parts.
    phone
        .send(el(&format!("<presence to='{me}' type='unavailable'/>")))
        .await;
    phone
        .expect(WAIT, |p| {
            p.name() == "presence" && attr(p, "type") == "unavailable" && from(p, &me)
        })
        .await;
    bob.expect_none(Duration::from_millis(500), alice_left)
        .await;
    s.alice
        .send(el(&format!("<presence to='{me}' type='unavailable'/>")))
        .await;
    bob.expect(WAIT, alice_left).await;
}

/// A room's `configure` submitted with `fields` that it refuses: the error, as text.
async fn refused_configure(client: &mut XmppClient, room: &str, fields: &str) -> String {
    let refused = client.submit_command(room, "configure", "x", fields).await;
    assert_eq!(
        attr(&refused, "type"),
        "error",
        "{}",
        String::from(&refused)
    );
    String::from(&refused)
}

/// Runs the `configure` command on `room` and submits `fields`.
async fn configure_room(client: &mut XmppClient, room: &str, fields: &str) -> Element {
    let (form, done) = client.run_command(room, "configure", fields).await;
    assert!(form.contains("var='persistent'"));
    done
}

/// A room's disco#info tells the user who is in it how many occupants it
/// has and its subject (XEP-0045 muc#roominfo), as Gajim shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_rooms_info_tells_its_occupants_and_subject() {
    const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    let mut s = setup().await;
    let room = format!("#info%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#info").await;
    bob.send("TOPIC #info :all about <info> & more").await;
    let mut carol = IrcClient::connect(s.ircd.port(), "carol").await;
    carol.join("#info").await;
    let roominfo = |info: &Element| -> Option<(String, Option<String>)> {
        let form = find_child(info, "query", DISCO_INFO)?.get_child("x", "jabber:x:data")?;
        let value = |var: &str| {
            form.children()
                .find(|f| f.attr("var") == Some(var))
                .and_then(|f| f.get_child("value", "jabber:x:data"))
                .map(Element::text)
        };
        assert_eq!(
            value("FORM_TYPE").as_deref(),
            Some("http://jabber.org/protocol/muc#roominfo")
        );
        Some((
            value("muc#roominfo_occupants")?,
            value("muc#roominfo_subject"),
        ))
    };
    let ask = format!("<query xmlns='{DISCO_INFO}'/>");

    // Not in the room: what any room is, without what is in it.
    let before = s.alice.iq(&room, "get", el(&ask)).await;
    assert_eq!(attr(&before, "type"), "result");
    assert_eq!(roominfo(&before), None, "{}", String::from(&before));

    join_as_alice(&mut s, &room).await;
    let info = s.alice.iq(&room, "get", el(&ask)).await;
    assert_eq!(
        roominfo(&info),
        Some(("3".to_owned(), Some("all about <info> & more".to_owned()))),
        "{}",
        String::from(&info)
    );
    let features = s.alice.disco_features(&room).await;
    assert!(
        features.iter().any(|f| f == "urn:xmpp:sid:0"),
        "{features:?}"
    );

    carol.send("PART #info").await;
    // Her leaving, not the presence of hers the join showed.
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{room}/carol"))
                && attr(p, "type") == "unavailable"
        })
        .await;
    let info = s.alice.iq(&room, "get", el(&ask)).await;
    assert_eq!(roominfo(&info).map(|(n, _)| n).as_deref(), Some("2"));
}

/// A channel's own encoding (biboumi's channel "In encoding"), set with
/// the channel's `configure`: its lines that are not UTF-8 are read with
/// it, while the server's other channels keep the server's (Latin-1 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_reads_its_non_utf8_lines_in_its_own_encoding() {
    let mut s = setup().await;
    let ru = format!("#ru%localhost@{GW}");
    let fr = format!("#fr%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#ru").await;
    bob.join("#fr").await;
    join_as_alice(&mut s, &ru).await;
    join_as_alice(&mut s, &fr).await;
    // "Привет" in KOI8-R, and the same bytes (Latin-1 letters) in #fr.
    const KOI8: &[u8] = b"\xf0\xd2\xc9\xd7\xc5\xd4";
    const LATIN1: &str = "ðÒÉ×ÅÔ";
    let say = |channel: &str| [b"PRIVMSG ", channel.as_bytes(), b" :", KOI8].concat();
    let read_in = |room: &str, text: &'static str| {
        let room = room.to_owned();
        move |m: &Element| body(m).as_deref() == Some(text) && from(m, &format!("{room}/bob"))
    };

    bob.send_bytes(&say("#ru")).await;
    s.alice.expect(WAIT, read_in(&ru, LATIN1)).await;

    let (form, _) = s
        .alice
        .run_command(
            &ru,
            "configure",
            "<field var='encoding'><value>KOI8-R</value></field>",
        )
        .await;
    assert!(form.contains("var='encoding'"), "{form}");
    bob.send_bytes(&say("#ru")).await;
    s.alice.expect(WAIT, read_in(&ru, "Привет")).await;
    // The topic is the channel's too.
    bob.send_bytes(&[b"TOPIC #ru :", KOI8].concat()).await;
    s.alice
        .expect(WAIT, |m| {
            from(m, &format!("{ru}/bob"))
                && m.get_child("subject", "jabber:client")
                    .is_some_and(|s| s.text() == "Привет")
        })
        .await;
    // Another channel keeps the server's encoding.
    bob.send_bytes(&say("#fr")).await;
    s.alice.expect(WAIT, read_in(&fr, LATIN1)).await;
    assert!(s
        .alice
        .command_form(&ru, "configure")
        .await
        .contains("<value>KOI8-R</value>"));

    // An encoding nobody knows is refused, and the channel keeps its own.
    let refused = refused_configure(
        &mut s.alice,
        &ru,
        "<field var='encoding'><value>klingon</value></field>",
    )
    .await;
    assert!(refused.contains("unknown encoding"), "{refused}");
    bob.send_bytes(&say("#ru")).await;
    s.alice.expect(WAIT, read_in(&ru, "Привет")).await;

    // Emptied, the field gives the channel the server's encoding again.
    s.alice
        .run_command(
            &ru,
            "configure",
            "<field var='encoding'><value></value></field>",
        )
        .await;
    bob.send_bytes(&say("#ru")).await;
    s.alice.expect(WAIT, read_in(&ru, LATIN1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_channel_stays_joined_while_the_user_is_offline() {
    let mut s = setup().await;
    let room = format!("#keep%localhost@{GW}");
    let me = format!("{room}/alice");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#keep").await;
    // Accept the gateway's subscription, as a client does, so that the
    // gateway learns when alice goes offline.
    s.alice
        .send(el(&format!("<presence to='{GW}' type='subscribed'/>")))
        .await;
    s.alice.send(el("<presence/>")).await;
    s.alice.send(el(&format!("<presence to='{me}'/>"))).await;
    s.alice
        .expect(WAIT, |p| p.name() == "presence" && from(p, &me))
        .await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" JOIN "))
        .await;

    // A bad value is refused with an error, and nothing changes.
    let refused = refused_configure(
        &mut s.alice,
        &room,
        "<field var='persistent'><value>perhaps</value></field>",
    )
    .await;
    assert!(refused.contains("bad-request"), "{refused}");

    configure_room(
        &mut s.alice,
        &room,
        "<field var='persistent'><value>1</value></field>",
    )
    .await;

    // alice's only client goes away: the gateway stays in the channel.
    let alice = std::mem::replace(
        &mut s.alice,
        XmppClient::connect(s.prosody.c2s_port(), "alice", "localhost", "pw", "later").await,
    );
    alice.close().await;
    bob.expect_none(Duration::from_millis(1500), alice_left)
        .await;
    bob.send("PRIVMSG #keep :said while you were away").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Back online and in the room: the history has what was said meanwhile.
    s.alice.send(el("<presence/>")).await;
    join_with_history(&mut s.alice, &format!("{room}/alice"), "maxstanzas='5'").await;
    s.alice
        .expect(WAIT, |m| {
            body(m).as_deref() == Some("said while you were away")
                && from(m, &format!("{room}/bob"))
        })
        .await;

    // No longer persistent, and the last client leaves: the channel is left.
    configure_room(
        &mut s.alice,
        &room,
        "<field var='persistent'><value>0</value></field>",
    )
    .await;
    s.alice
        .send(el(&format!(
            "<presence to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    bob.expect(WAIT, alice_left).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_channel_is_rejoined_after_a_gateway_restart() {
    let mut s = setup().await;
    let room = format!("#stay%localhost@{GW}");
    let me = format!("{room}/alice");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#stay").await;
    s.alice.send(el(&format!("<presence to='{me}'/>"))).await;
    s.alice
        .expect(WAIT, |p| p.name() == "presence" && from(p, &me))
        .await;
    configure_room(
        &mut s.alice,
        &room,
        "<field var='persistent'><value>1</value></field>",
    )
    .await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" JOIN "))
        .await;

    // alice is gone from XMPP; the gateway restarts.
    let alice = std::mem::replace(
        &mut s.alice,
        XmppClient::connect(s.prosody.c2s_port(), "alice", "localhost", "pw", "later").await,
    );
    alice.close().await;
    s.stop_gateway().await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" QUIT "))
        .await;
    s.start_gateway().await;

    // Without any client of alice online, the channel is joined again, and
    // what is said there is kept for her.
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" JOIN "))
        .await;
    bob.send("PRIVMSG #stay :after the restart").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.alice.send(el("<presence/>")).await;
    join_with_history(&mut s.alice, &me, "maxstanzas='5'").await;
    s.alice
        .expect(WAIT, |m| body(m).as_deref() == Some("after the restart"))
        .await;
}

/// The note of the `connection-info` command on a server's JID.
async fn connection_info(client: &mut XmppClient, server: &str) -> String {
    let done = client
        .iq(
            server,
            "set",
            el(&format!(
                "<command xmlns='{COMMANDS}' node='connection-info' action='execute'/>"
            )),
        )
        .await;
    let command = find_child(&done, "command", COMMANDS).unwrap();
    assert_eq!(attr(command, "status"), "completed");
    command.get_child("note", COMMANDS).unwrap().text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_configure_their_own_server_settings() {
    const ITEMS: &str = "http://jabber.org/protocol/disco#items";
    let mut s = setup().await;
    let server = format!("localhost@{GW}");

    // The commands are found the XEP-0050 way, on the server's JID and on a
    // channel's; asking the server's is not taken for a channel list.
    let room = format!("#conf%localhost@{GW}");
    for (jid, name) in [(&server, "server"), (&room, "room")] {
        let items = s
            .alice
            .iq(
                jid,
                "get",
                el(&format!("<query xmlns='{ITEMS}' node='{COMMANDS}'/>")),
            )
            .await;
        assert_eq!(attr(&items, "type"), "result", "{}", String::from(&items));
        let query = find_child(&items, "query", ITEMS).unwrap();
        let found: Vec<(String, String)> = query
            .children()
            .map(|i| (attr(i, "jid").to_owned(), attr(i, "node").to_owned()))
            .collect();
        let expected: &[&str] = if name == "server" {
            &["connection-info", "configure"]
        } else {
            &["configure"]
        };
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|node| (jid.clone(), (*node).to_owned()))
            .collect();
        assert_eq!(found, expected, "{name}");
    }

    // biboumi's get-irc-connection-info: not connected yet (connected: below).
    assert_eq!(
        connection_info(&mut s.alice, &server).await,
        "Not connected to localhost."
    );
    let form = s
        .alice
        .iq(
            &server,
            "set",
            el(&format!(
                "<command xmlns='{COMMANDS}' node='configure' action='execute'/>"
            )),
        )
        .await;
    let command = find_child(&form, "command", COMMANDS).unwrap();
    let text = String::from(command);
    for var in [
        "realname",
        "username",
        "tls_ports",
        "verify_certificates",
        "after_connect",
    ] {
        assert!(
            text.contains(&format!("var='{var}'")),
            "{var} missing: {text}"
        );
    }
    // `after_connect` takes several lines, as biboumi's form does.
    assert!(
        text.contains("type='text-multi' var='after_connect'"),
        "{text}"
    );
    let session = attr(command, "sessionid").to_owned();
    let submit = |fields: &str| {
        el(&format!(
            "<command xmlns='{COMMANDS}' node='configure' sessionid='{session}'>\
             <x xmlns='jabber:x:data' type='submit'>{fields}</x></command>"
        ))
    };
    // A bad value is refused, naming the field.
    let refused = s
        .alice
        .iq(
            &server,
            "set",
            submit("<field var='throttle_burst'><value>lots</value></field>"),
        )
        .await;
    assert_eq!(attr(&refused, "type"), "error");
    assert!(String::from(&refused).contains("throttle_burst"));

    let done = s
        .alice
        .iq(
            &server,
            "set",
            submit(
                "<field var='nick'><value>alicia</value></field>\
                 <field var='username'><value>wonder</value></field>\
                 <field var='realname'><value>Alice Liddell</value></field>\
                 <field var='after_connect'><value>PRIVMSG bob :one</value>\
                 <value>PRIVMSG bob :two</value></field>",
            ),
        )
        .await;
    assert_eq!(attr(&done, "type"), "result", "{}", String::from(&done));

    // The next connection uses them.
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    let room = format!("#own%localhost@{GW}");
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && attr(p, "from").starts_with(&room)
                && String::from(p).contains("code='110'")
        })
        .await;
    // Each line of the commands is one command.
    bob.expect(WAIT, |l| {
        l.starts_with(":alicia!") && l.ends_with("PRIVMSG bob :one")
    })
    .await;
    bob.expect(WAIT, |l| {
        l.starts_with(":alicia!") && l.ends_with("PRIVMSG bob :two")
    })
    .await;
    let whois = whois_user(&mut bob, "alicia").await;
    assert!(whois.contains("wonder"), "{whois}");
    assert!(whois.contains("Alice Liddell"), "{whois}");

    let text = connection_info(&mut s.alice, &server).await;
    let port = s.ircd.port();
    assert!(
        text.starts_with(&format!(
            "Connected to localhost at 127.0.0.1:{port}, not encrypted since 20"
        )) && text.ends_with(", as alicia. Channels: #own."),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_lists_its_servers_to_a_registered_user() {
    let mut s = setup().await;
    let items = s.alice.disco_items(GW).await;
    assert_eq!(attr(&items, "type"), "result");
    assert!(
        String::from(&items).contains(&format!("jid='localhost@{GW}'")),
        "{}",
        String::from(&items)
    );
}

/// The MAM bodies of `room`, asked by `client` (the archiver flushes first).
async fn archived_bodies(client: &mut XmppClient, room: &str) -> Vec<String> {
    let (results, reply) = client.mam_query(room, "", "").await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    results
        .iter()
        .map(|result| forwarded_body(result).unwrap_or_default())
        .collect()
}

/// The body of the message a MAM `<result/>` forwards.
fn forwarded_body(result: &Element) -> Option<String> {
    let message = find_child(result, "forwarded", "urn:xmpp:forward:0")
        .and_then(|f| find_child(f, "message", "jabber:client"))
        .expect("a forwarded message");
    body(message)
}

/// Two users of the gateway in one channel: each message is archived once,
/// though the gateway saw it twice, as the sender's echo and as the other
/// user's incoming message (under one msgid), and both were shown it under
/// the stanza-id MAM gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_of_a_shared_channel_is_archived_once() {
    let mut s = setup().await;
    let room = format!("#both%localhost@{GW}");
    s.prosody.add_user("carol", "pw");
    let mut carol =
        XmppClient::connect(s.prosody.c2s_port(), "carol", "localhost", "pw", "res").await;
    carol.send(el("<presence/>")).await;
    let reply = carol.submit_registration(GW, &[("nick", "carol")]).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    join_as_alice(&mut s, &room).await;
    carol
        .send(el(&format!("<presence to='{room}/carol'/>")))
        .await;
    carol
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/carol"))
        })
        .await;
    let messages =
        world::shared_room::exchange(&room, (&mut s.alice, "alice"), (&mut carol, "carol"), 5)
            .await;
    world::shared_room::assert_archived_once_as_shown(&mut s.alice, &room, &messages).await;
}

/// A client that reuses a message id (some count from 1 again on each
/// start) still gets each message archived, and reflected under its own
/// stanza-id; the id it chose comes back as the reflection's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_message_id_loses_no_message() {
    let mut s = setup().await;
    let room = format!("#reuse%localhost@{GW}");
    join_as_alice(&mut s, &room).await;
    let mut stanza_ids = Vec::new();
    for text in ["first with id 1", "second with id 1"] {
        s.alice
            .send(el(&format!(
                "<message to='{room}' type='groupchat' id='1'><body>{text}</body></message>"
            )))
            .await;
        let reflected = s
            .alice
            .expect(WAIT, |m| body(m).as_deref() == Some(text))
            .await;
        assert_eq!(attr(&reflected, "id"), "1", "the client's id is kept");
        stanza_ids.push(world::stanza_id(&reflected));
    }
    assert_ne!(
        stanza_ids[0], stanza_ids[1],
        "a stanza-id names one message"
    );
    let archived = archived_bodies(&mut s.alice, &room).await;
    assert_eq!(archived, ["first with id 1", "second with id 1"]);
}

/// biboumi's way, which Estuary keeps so that replacing it breaks no
/// bookmark: a user who never registered joins a channel under the nick of
/// the join, talks both ways, and keeps a persistent channel across a
/// gateway restart; a private message opens a connection under a nick made
/// from the JID. An admin can require registration instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_user_joins_under_the_nick_of_the_join() {
    let mut s = setup().await;
    s.prosody.add_user("carol", "pw");
    s.prosody.add_user("dave.smith", "pw");
    let mut carol =
        XmppClient::connect(s.prosody.c2s_port(), "carol", "localhost", "pw", "res").await;
    carol.send(el("<presence/>")).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#open").await;

    let room = format!("#open%localhost@{GW}");
    let me = format!("{room}/Carol_");
    carol.send(el(&format!("<presence to='{me}'/>"))).await;
    let own = carol
        .expect(WAIT, |p| p.name() == "presence" && from(p, &me))
        .await;
    let own = String::from(&own);
    assert!(attr(&el(&own), "type").is_empty(), "{own}");
    assert!(own.contains("code='110'"), "{own}");
    assert!(!own.contains("code='210'"), "the nick is the join's: {own}");
    bob.expect(WAIT, |l| l.starts_with(":Carol_!") && l.contains(" JOIN "))
        .await;
    bob.send("PRIVMSG #open :hello carol").await;
    carol
        .expect(WAIT, |m| body(m).as_deref() == Some("hello carol"))
        .await;
    carol
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='c1'><body>hi bob</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| {
        l.starts_with(":Carol_!") && l.ends_with("PRIVMSG #open :hi bob")
    })
    .await;

    // No join at all: a private message opens the connection, under a nick
    // made from the JID's local part.
    let mut dave =
        XmppClient::connect(s.prosody.c2s_port(), "dave.smith", "localhost", "pw", "res").await;
    dave.send(el("<presence/>")).await;
    let bob_jid = format!("bob%localhost@{GW}");
    dave.send(el(&format!(
        "<message to='{bob_jid}' type='chat' id='d1'><body>psst</body></message>"
    )))
    .await;
    bob.expect(WAIT, |l| {
        l.starts_with(":dave_smith!") && l.ends_with("PRIVMSG bob :psst")
    })
    .await;
    bob.send("PRIVMSG dave_smith :yes?").await;
    dave.expect(WAIT, |m| {
        from(m, &bob_jid) && body(m).as_deref() == Some("yes?")
    })
    .await;

    // A persistent channel of a user who never registered is joined again
    // after a restart, under the nick it was joined with.
    configure_room(
        &mut carol,
        &room,
        "<field var='persistent'><value>1</value></field>",
    )
    .await;
    carol.close().await;
    dave.close().await;
    s.stop_gateway().await;
    bob.expect(WAIT, |l| l.starts_with(":Carol_!") && l.contains(" QUIT "))
        .await;
    s.start_gateway().await;
    bob.expect(WAIT, |l| l.starts_with(":Carol_!") && l.contains(" JOIN "))
        .await;

    // Required by the admin: a user who never registered is refused.
    s.stop_gateway().await;
    let mut config = s.config.clone();
    config.gateways[0].options["registration_required"] = true.into();
    s.estuary = Some(app::start(config, &Networks::builtin()).await.unwrap());
    let mut dave = XmppClient::connect(
        s.prosody.c2s_port(),
        "dave.smith",
        "localhost",
        "pw",
        "again",
    )
    .await;
    let refused_at = format!("{room}/dave");
    dave.send(el(&format!("<presence to='{refused_at}'/>")))
        .await;
    let refused = dave
        .expect(WAIT, |p| p.name() == "presence" && from(p, &refused_at))
        .await;
    assert_eq!(attr(&refused, "type"), "error");
    assert!(
        String::from(&refused).contains("registration-required"),
        "{}",
        String::from(&refused)
    );
}

/// XEP-0092 version and XEP-0199 ping of an IRC user become CTCP VERSION and
/// PING (biboumi's mapping), answered without holding up the user's other
/// stanzas; CTCP queries from IRC are answered and never shown as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_pings_travel_as_ctcp() {
    const VERSION: &str = "jabber:iq:version";
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#ctcp").await;
    let room = format!("#ctcp%localhost@{GW}");
    join_as_alice(&mut s, &room).await;

    // The occupant's software, asked through its in-room JID. Until bob
    // answers, alice's messages still go out.
    s.alice
        .send(el(&format!(
            "<iq type='get' id='v1' to='{room}/bob'><query xmlns='{VERSION}'/></iq>"
        )))
        .await;
    bob.expect(WAIT, |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG bob :\x01VERSION\x01")
    })
    .await;
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='m1'><body>not held up</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.ends_with("PRIVMSG #ctcp :not held up"))
        .await;
    bob.send("NOTICE alice :\x01VERSION HexChat 2.16.1 / Linux\x01")
        .await;
    let version = s
        .alice
        .expect(WAIT, |i| i.name() == "iq" && attr(i, "id") == "v1")
        .await;
    assert_eq!(
        attr(&version, "type"),
        "result",
        "{}",
        String::from(&version)
    );
    let query = find_child(&version, "query", VERSION).unwrap();
    let text = |name: &str| query.get_child(name, VERSION).map(|e| e.text());
    assert_eq!(text("name").as_deref(), Some("HexChat"));
    assert_eq!(text("version").as_deref(), Some("2.16.1 / Linux"));

    // A ping of bob's user JID waits for his CTCP PING answer.
    let bob_jid = format!("bob%localhost@{GW}");
    s.alice
        .send(el(&format!(
            "<iq type='get' id='p1' to='{bob_jid}'><ping xmlns='urn:xmpp:ping'/></iq>"
        )))
        .await;
    let query = bob
        .expect(WAIT, |l| l.contains("PRIVMSG bob :\x01PING "))
        .await;
    let token = query
        .rsplit_once("PING ")
        .unwrap()
        .1
        .trim_end_matches('\x01');
    assert!(token.bytes().all(|b| b.is_ascii_digit()), "{query:?}");
    bob.send(&format!("NOTICE alice :\x01PING {token}\x01"))
        .await;
    let pong = s
        .alice
        .expect(WAIT, |i| i.name() == "iq" && attr(i, "id") == "p1")
        .await;
    assert_eq!(attr(&pong, "type"), "result", "{}", String::from(&pong));

    // Nobody by that nick: the server's 401 answers at once.
    s.alice
        .send(el(&format!(
            "<iq type='get' id='v2' to='nobody%localhost@{GW}'><query xmlns='{VERSION}'/></iq>"
        )))
        .await;
    let missing = s
        .alice
        .expect(WAIT, |i| i.name() == "iq" && attr(i, "id") == "v2")
        .await;
    assert_eq!(attr(&missing, "type"), "error");
    assert!(
        String::from(&missing).contains("<item-not-found"),
        "{}",
        String::from(&missing)
    );

    // bob's queries are answered for alice, and she is shown none of them.
    bob.send("PRIVMSG alice :\x01VERSION\x01").await;
    let answer = bob
        .expect(WAIT, |l| l.contains("NOTICE bob :\x01VERSION "))
        .await;
    assert!(answer.contains("Estuary"), "{answer:?}");
    bob.send("PRIVMSG alice :\x01PING 42\x01").await;
    bob.expect(WAIT, |l| l.ends_with("NOTICE bob :\x01PING 42\x01"))
        .await;
    bob.send("PRIVMSG alice :plain text").await;
    let next = s
        .alice
        .expect(WAIT, |m| m.name() == "message" && from(m, &bob_jid))
        .await;
    assert_eq!(body(&next).as_deref(), Some("plain text"));
}

/// With `identd_port`, the IRC server sees each user under an ident of
/// their own, biboumi's (the SHA-1 of the bare JID, cut by the server), so
/// that one user can be banned rather than the whole gateway. InspIRCd asks
/// on port 113 only, which needs privileges; without them there is nothing
/// to test here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ident_server_names_each_user() {
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", 113)) {
        eprintln!("skipped: port 113 cannot be bound here ({e})");
        return;
    }
    let ircd = Inspircd::start_with_ident();
    let server = serde_json::json!({ "address": "127.0.0.1", "port": ircd.port() });
    let mut s = setup_with(ircd, server).await;
    s.stop_gateway().await;
    let mut config = s.config.clone();
    config.gateways[0].options["identd_port"] = 113.into();
    s.estuary = Some(app::start(config, &Networks::builtin()).await.unwrap());

    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#ident").await;
    let room = format!("#ident%localhost@{GW}");
    join_as_alice(&mut s, &room).await;
    let whois = whois_user(&mut bob, "alice").await;
    // sha1("alice@localhost") = 9637f279e87dc3aba7eb582ceceaa621fa695865,
    // cut to InspIRCd's maxident of 10, with no `~` (which marks no ident).
    assert!(whois.contains(" 311 bob alice 9637f279e8 "), "{whois:?}");
    // bob, who runs no ident server, is marked as such: the ident came
    // from Estuary, not from the USER line.
    let own = whois_user(&mut bob, "bob").await;
    assert!(own.contains(" 311 bob bob ~"), "{own:?}");
}

/// `outgoing_bind` (biboumi's name): connections come from the local
/// address the admin chose, on a host with several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_come_from_the_outgoing_bind_address() {
    let ircd = Inspircd::start();
    let server = serde_json::json!({
        "address": "127.0.0.1",
        "port": ircd.port(),
        "outgoing_bind": "127.0.0.2",
    });
    let mut s = setup_with(ircd, server).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#bound").await;
    join_as_alice(&mut s, &format!("#bound%localhost@{GW}")).await;
    let whois = whois_user(&mut bob, "alice").await;
    assert!(whois.contains(" 127.0.0.2 * :"), "{whois:?}");
    let own = whois_user(&mut bob, "bob").await;
    assert!(own.contains(" 127.0.0.1 * :"), "{own:?}");
}

/// A keyed channel is joined with the MUC password, and a refused join is a
/// MUC join error (XEP-0045 §7.2) a client can act on: not-authorized asks
/// for the password, forbidden for a ban, registration-required for an
/// invite-only channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_keys_and_refused_joins() {
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    for (channel, mode) in [
        ("#locked", "+k sesame"),
        ("#invited", "+i"),
        ("#banned", "+b alice!*@*"),
    ] {
        bob.join(channel).await;
        bob.send(&format!("MODE {channel} {mode}")).await;
        bob.expect(WAIT, |l| l.contains(" MODE ") && l.contains(channel))
            .await;
    }
    for (channel, condition) in [
        ("#locked", "not-authorized"),
        ("#invited", "registration-required"),
        ("#banned", "forbidden"),
    ] {
        let me = format!("{channel}%localhost@{GW}/alice");
        s.alice.send(el(&format!("<presence to='{me}'/>"))).await;
        let refused = s
            .alice
            .expect(WAIT, |p| p.name() == "presence" && from(p, &me))
            .await;
        let text = String::from(&refused);
        assert_eq!(attr(&refused, "type"), "error", "{text}");
        assert!(
            text.contains(&format!("<{condition} ")),
            "{channel}: {text}"
        );
    }

    // With the key, the join goes through (the refusal was forgotten).
    let me = format!("#locked%localhost@{GW}/alice");
    s.alice
        .send(el(&format!(
            "<presence to='{me}'><x xmlns='http://jabber.org/protocol/muc'>\
             <password>sesame</password></x></presence>"
        )))
        .await;
    let own = s
        .alice
        .expect(WAIT, |p| p.name() == "presence" && from(p, &me))
        .await;
    let own = String::from(&own);
    assert!(
        own.contains("code='110'") && !own.contains("type='error'"),
        "{own}"
    );
    bob.expect(WAIT, |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ") && l.ends_with("#locked")
    })
    .await;
}

/// A nick change IRC refuses reaches the client as MUC says (XEP-0045
/// §7.6): conflict for a nick in use, not-acceptable for one IRC does not
/// take; the user keeps the old nick, and a later change goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_nick_change_is_a_muc_error() {
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#nicks").await;
    let room = format!("#nicks%localhost@{GW}");
    join_as_alice(&mut s, &room).await;
    // A second channel on the same server, where alice asks for nothing.
    let other = format!("#other%localhost@{GW}");
    join_as_alice(&mut s, &other).await;

    for (nick, condition) in [("bob", "conflict"), ("9lives", "not-acceptable")] {
        let asked = format!("{room}/{nick}");
        s.alice.send(el(&format!("<presence to='{asked}'/>"))).await;
        // (bob's own presence comes from the same JID.)
        let refused = s
            .alice
            .expect(WAIT, |p| {
                p.name() == "presence" && from(p, &asked) && attr(p, "type") == "error"
            })
            .await;
        let text = String::from(&refused);
        assert!(text.contains(&format!("<{condition} ")), "{nick}: {text}");
    }
    // Told where it was asked only.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Some(stanza) = s
        .alice
        .recv(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert!(
            !(attr(&stanza, "from").starts_with(&other) && attr(&stanza, "type") == "error"),
            "{}",
            String::from(&stanza)
        );
    }

    let renamed = format!("{room}/alice2");
    s.alice
        .send(el(&format!("<presence to='{renamed}'/>")))
        .await;
    let back = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &renamed) && attr(p, "type").is_empty()
        })
        .await;
    assert!(String::from(&back).contains("code='110'"));
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" NICK "))
        .await;
}

/// A message IRC refuses (a moderated channel, a nick that is gone) comes
/// back to the sender as an error under its own id, where it used to wait
/// forever for an echo that never came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_comes_back_as_an_error() {
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#quiet").await;
    bob.send("MODE #quiet +m").await;
    bob.expect(WAIT, |l| l.contains(" MODE #quiet ") && l.ends_with("+m"))
        .await;
    let room = format!("#quiet%localhost@{GW}");
    join_as_alice(&mut s, &room).await;

    let refused = say_in_room(&mut s.alice, &room, "q1", "can you hear me").await;
    let text = String::from(&refused);
    assert_eq!(attr(&refused, "type"), "error", "{text}");
    assert_eq!(attr(&refused, "from"), room, "{text}");
    assert!(text.contains("<forbidden "), "{text}");

    // Voiced, alice is heard, and her message reflected as usual.
    bob.send("MODE #quiet +v alice").await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='q2'><body>now?</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.ends_with("PRIVMSG #quiet :now?"))
        .await;
    let reflected = s
        .alice
        .expect(WAIT, |m| m.name() == "message" && attr(m, "id") == "q2")
        .await;
    assert_eq!(attr(&reflected, "type"), "groupchat");

    // A private message to a nick nobody has.
    let nobody = format!("nobody%localhost@{GW}");
    s.alice
        .send(el(&format!(
            "<message to='{nobody}' type='chat' id='p1'><body>hello?</body></message>"
        )))
        .await;
    let missing = s
        .alice
        .expect(WAIT, |m| m.name() == "message" && attr(m, "id") == "p1")
        .await;
    let text = String::from(&missing);
    assert_eq!(attr(&missing, "type"), "error", "{text}");
    assert!(text.contains("<item-not-found "), "{text}");
}

/// A keyed persistent channel is joined again after a gateway restart, with
/// the key of the user's join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_persistent_channel_is_rejoined_after_a_restart() {
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#vault").await;
    bob.send("MODE #vault +k opensesame").await;
    bob.expect(WAIT, |l| l.contains(" MODE #vault ") && l.contains("+k"))
        .await;
    let room = format!("#vault%localhost@{GW}");
    let me = format!("{room}/alice");
    s.alice
        .send(el(&format!(
            "<presence to='{me}'><x xmlns='http://jabber.org/protocol/muc'>\
             <password>opensesame</password></x></presence>"
        )))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &me) && String::from(p).contains("code='110'")
        })
        .await;
    configure_room(
        &mut s.alice,
        &room,
        "<field var='persistent'><value>1</value></field>",
    )
    .await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" JOIN "))
        .await;

    s.stop_gateway().await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" QUIT "))
        .await;
    s.start_gateway().await;
    bob.expect(WAIT, |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ") && l.ends_with("#vault")
    })
    .await;
}

/// The presence of `jid` that `client` gets next: (type, show, status).
async fn contact_presence(client: &mut XmppClient, jid: &str) -> (String, String, String) {
    let p = presence_from(client, jid).await;
    let text = |name: &str| {
        find_child(&p, name, "jabber:client")
            .map(|c| c.text())
            .unwrap_or_default()
    };
    (attr(&p, "type").to_owned(), text("show"), text("status"))
}

/// An IRC user in the roster is a contact with a presence: online, away and
/// offline as they are on IRC (MONITOR, away-notify), told again to each
/// new client of the user's through its server's probe, and no longer
/// followed once the user drops them. No connection opens for a contact
/// alone; while none is open, contacts show offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irc_contact_shows_online_away_and_offline() {
    let mut s = setup().await;
    let carol_jid = format!("carol%localhost@{GW}");
    let room = format!("#lobby%localhost@{GW}");
    // A client that read its roster is told of subscription changes.
    s.alice
        .iq(
            "alice@localhost",
            "get",
            el("<query xmlns='jabber:iq:roster'/>"),
        )
        .await;
    s.alice
        .send(el(&format!(
            "<presence to='{carol_jid}' type='subscribe'/>"
        )))
        .await;
    let (type_, _, _) = contact_presence(&mut s.alice, &carol_jid).await;
    assert_eq!(type_, "subscribed");
    join_as_alice(&mut s, &room).await;

    let mut carol = IrcClient::connect(s.ircd.port(), "carol").await;
    assert_eq!(
        contact_presence(&mut s.alice, &carol_jid).await,
        ("".into(), "".into(), "".into())
    );
    carol.join("#lobby").await;
    carol.send("AWAY :lunch").await;
    assert_eq!(
        contact_presence(&mut s.alice, &carol_jid).await,
        ("".into(), "away".into(), "lunch".into())
    );

    // A new client: its server probes the contact, and the gateway answers.
    let mut alice2 =
        XmppClient::connect(s.prosody.c2s_port(), "alice", "localhost", "pw", "res2").await;
    alice2.send(el("<presence/>")).await;
    assert_eq!(
        contact_presence(&mut alice2, &carol_jid).await,
        ("".into(), "away".into(), "lunch".into())
    );

    carol.send("QUIT :bye").await;
    let (type_, _, _) = contact_presence(&mut s.alice, &carol_jid).await;
    assert_eq!(type_, "unavailable");
    let mut carol = IrcClient::connect(s.ircd.port(), "carol").await;
    let (type_, _, _) = contact_presence(&mut s.alice, &carol_jid).await;
    assert_eq!(type_, "");

    // The last part closes the connection: nothing is known of carol then.
    s.alice
        .send(el(&format!(
            "<presence to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    presence_from(&mut s.alice, &format!("{room}/alice")).await;
    assert_eq!(
        contact_presence(&mut s.alice, &carol_jid).await,
        (
            "unavailable".into(),
            "".into(),
            "Not connected to localhost".into()
        )
    );
    join_as_alice(&mut s, &room).await;
    let (type_, _, _) = contact_presence(&mut s.alice, &carol_jid).await;
    assert_eq!(type_, "");

    // Kept across a restart of the gateway.
    s.stop_gateway().await;
    s.start_gateway().await;
    let ended = presence_from(&mut s.alice, &format!("{room}/alice")).await;
    assert_eq!(attr(&ended, "type"), "unavailable");
    join_as_alice(&mut s, &room).await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &carol_jid) && attr(p, "type").is_empty()
        })
        .await;

    // Dropped: carol's comings and goings are no longer told.
    s.alice
        .send(el(&format!(
            "<presence to='{carol_jid}' type='unsubscribe'/>"
        )))
        .await;
    // The gateway has passed it on once it answers for the connection.
    connection_info(&mut s.alice, &format!("localhost@{GW}")).await;
    carol.send("QUIT :bye").await;
    let _carol = IrcClient::connect(s.ircd.port(), "carol").await;
    s.alice
        .expect_none(Duration::from_secs(2), |p| {
            p.name() == "presence" && from(p, &carol_jid)
        })
        .await;
}

/// The chat state of `m` (XEP-0085), if it carries one.
fn chat_state(m: &Element) -> Option<String> {
    const NS: &str = "http://jabber.org/protocol/chatstates";
    ["active", "composing", "paused", "inactive", "gone"]
        .into_iter()
        .find(|state| m.get_child(state, NS).is_some())
        .map(str::to_owned)
}

/// Typing notifications, both ways: XEP-0085 chat states are IRCv3's
/// `+typing` tag on TAGMSG, in channels and in private, with repeats held
/// back as the IRCv3 spec asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_notifications_both_ways() {
    let mut s = setup().await;
    let room = format!("#lobby%localhost@{GW}");
    let mut bob = IrcClient::connect_with_caps(s.ircd.port(), "bob", &["message-tags"]).await;
    bob.join("#lobby").await;
    join_as_alice(&mut s, &room).await;

    let typing = |state: &str| {
        format!(
            "<message to='{room}' type='groupchat'>\
             <{state} xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )
    };
    s.alice.send(el(&typing("composing"))).await;
    bob.expect(WAIT, |l| {
        l.starts_with('@') && l.contains("+typing=active") && l.contains(" TAGMSG ")
    })
    .await;
    // A client's repeat within three seconds is not sent again.
    s.alice.send(el(&typing("composing"))).await;
    s.alice.send(el(&typing("paused"))).await;
    let next = bob.expect(WAIT, |l| l.contains("+typing=")).await;
    assert!(next.contains("+typing=paused"), "{next}");

    bob.send("@+typing=active TAGMSG #lobby").await;
    let m = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &format!("{room}/bob")) && chat_state(m).is_some()
        })
        .await;
    assert_eq!(chat_state(&m).as_deref(), Some("composing"));
    assert_eq!(attr(&m, "type"), "groupchat");
    assert!(body(&m).is_none());

    bob.send("@+typing=done TAGMSG alice").await;
    let m = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &format!("bob%localhost@{GW}"))
        })
        .await;
    assert_eq!(chat_state(&m).as_deref(), Some("active"));
    assert!(body(&m).is_none());
}

/// With two IRC servers, losing one is told in its channels only: the
/// user stays in the other server's, which keep working, and the lost
/// server's channels are joined again when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_irc_server_leaves_the_others_channels_alone() {
    let ircd = Inspircd::start();
    let mut other = Inspircd::start();
    let servers = serde_json::json!({
        "localhost": { "address": "127.0.0.1", "port": ircd.port() },
        "other": { "address": "127.0.0.1", "port": other.port() },
    });
    let mut s = setup_with_servers(ircd, servers).await;
    let kept = format!("#kept%localhost@{GW}");
    let lost = format!("#lost%other@{GW}");
    join_as_alice(&mut s, &kept).await;
    join_as_alice(&mut s, &lost).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#kept").await;

    other.kill();
    let gone = presence_from(&mut s.alice, &format!("{lost}/alice")).await;
    assert_eq!(attr(&gone, "type"), "unavailable");
    assert!(String::from(&gone).contains("code='332'"));
    other.restart();
    let back = s
        .alice
        .expect(Duration::from_secs(30), |p| {
            p.name() == "presence"
                && from(p, &format!("{lost}/alice"))
                && attr(p, "type").is_empty()
        })
        .await;
    assert!(String::from(&back).contains("code='110'"));

    // Nothing happened in the other server's channel.
    s.alice
        .expect_none(Duration::from_millis(500), |p| {
            p.name() == "presence" && from(p, &format!("{kept}/alice"))
        })
        .await;
    bob.send("PRIVMSG #kept :still there?").await;
    s.alice
        .expect(WAIT, |m| body(m).as_deref() == Some("still there?"))
        .await;
    s.alice
        .send(el(&format!(
            "<message to='{kept}' type='groupchat' id='k1'><body>yes</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.ends_with("PRIVMSG #kept :yes"))
        .await;
}

/// A user closes their connection to chosen servers from the gateway's JID
/// (biboumi's `disconnect-from-irc-servers`, under that name too): the
/// form lists the servers they are connected to, the QUIT carries their
/// message, the rooms there are left, and other servers' are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_disconnects_from_chosen_servers() {
    let ircd = Inspircd::start();
    let other = Inspircd::start();
    let servers = serde_json::json!({
        "localhost": { "address": "127.0.0.1", "port": ircd.port() },
        "other": { "address": "127.0.0.1", "port": other.port() },
    });
    let mut s = setup_with_servers(ircd, servers).await;
    let gone_room = format!("#bye%localhost@{GW}");
    let kept_room = format!("#stay%other@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#bye").await;
    join_as_alice(&mut s, &gone_room).await;
    join_as_alice(&mut s, &kept_room).await;

    let items = s
        .alice
        .iq(
            GW,
            "get",
            el(&format!(
                "<query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/>"
            )),
        )
        .await;
    assert!(
        String::from(&items).contains("node='disconnect-from-servers'"),
        "{}",
        String::from(&items)
    );
    let (form, done) = s
        .alice
        .run_command(
            GW,
            "disconnect-from-irc-servers",
            "<field var='servers'><value>localhost</value></field>\
         <field var='quit-message'><value>see you</value></field>",
        )
        .await;
    assert!(
        form.contains("<value>localhost</value>") && form.contains("<value>other</value>"),
        "{form}"
    );
    let command = find_child(&done, "command", COMMANDS).unwrap();
    assert_eq!(
        attr(command, "status"),
        "completed",
        "{}",
        String::from(&done)
    );
    assert!(String::from(command).contains("Disconnected from localhost."));

    bob.expect(WAIT, |l| {
        l.starts_with(":alice!") && l.contains(" QUIT ") && l.contains("see you")
    })
    .await;
    let left = presence_from(&mut s.alice, &format!("{gone_room}/alice")).await;
    assert_eq!(attr(&left, "type"), "unavailable");
    assert!(connection_info(&mut s.alice, &format!("localhost@{GW}"))
        .await
        .starts_with("Not connected to localhost"));
    // The other server's room is untouched, and its connection open.
    s.alice
        .expect_none(Duration::from_millis(300), |p| {
            p.name() == "presence" && from(p, &format!("{kept_room}/alice"))
        })
        .await;
    assert!(connection_info(&mut s.alice, &format!("other@{GW}"))
        .await
        .starts_with("Connected to other"));
}

/// An admin closes another user's connections, as biboumi's admins could
/// with `disconnect-from-irc-servers`: the first step asks whose, the second
/// lists that user's servers. Anyone else may name only themself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_closes_another_users_connections() {
    const NODE: &str = "disconnect-from-irc-servers";
    let mut s = setup().await;
    s.stop_gateway().await;
    s.config.gateways[0].admins = vec!["root@localhost".to_owned()];
    s.start_gateway().await;
    let room = format!("#ops%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#ops").await;
    join_as_alice(&mut s, &room).await;
    s.prosody.add_user("root", "pw");
    let mut root =
        XmppClient::connect(s.prosody.c2s_port(), "root", "localhost", "pw", "res").await;
    root.send(el("<presence/>")).await;

    // alice is no admin: she may not name root, nor anyone but herself.
    let refused = s
        .alice
        .submit_command(
            GW,
            NODE,
            "x",
            "<field var='jid'><value>root@localhost</value></field>",
        )
        .await;
    assert_eq!(attr(&refused, "type"), "error");
    assert!(String::from(&refused).contains("<forbidden"));

    // root is: whose connections first, his own by default.
    let first = root.command_form(GW, NODE).await;
    assert!(
        first.contains("var='jid'") && first.contains("<value>root@localhost</value>"),
        "{first}"
    );
    let session = attr(&el(&first), "sessionid").to_owned();
    let named = "<field var='jid'><value>alice@localhost</value></field>";
    let second = root.submit_command(GW, NODE, &session, named).await;
    let second = String::from(&second);
    assert!(
        second.contains("status='executing'")
            && second.contains("<value>localhost</value>")
            && second.contains("<value>alice@localhost</value>"),
        "{second}"
    );
    let done = root
        .submit_command(
            GW,
            NODE,
            &session,
            &format!(
                "{named}<field var='servers'><value>localhost</value></field>\
             <field var='quit-message'><value>maintenance</value></field>"
            ),
        )
        .await;
    let done = String::from(&done);
    assert!(
        done.contains("status='completed'") && done.contains("Disconnected from localhost."),
        "{done}"
    );
    bob.expect(WAIT, |l| {
        l.starts_with(":alice!") && l.contains(" QUIT ") && l.contains("maintenance")
    })
    .await;
    let left = presence_from(&mut s.alice, &format!("{room}/alice")).await;
    assert_eq!(attr(&left, "type"), "unavailable");

    // Now she has no connection left to close.
    let first = root.command_form(GW, NODE).await;
    let session = attr(&el(&first), "sessionid").to_owned();
    let none = root.submit_command(GW, NODE, &session, named).await;
    assert!(
        String::from(&none).contains("alice@localhost is connected to no server."),
        "{}",
        String::from(&none)
    );
    // A cancel ends it at any step, for users with no session too.
    for client in [&mut root, &mut s.alice] {
        let canceled = client
            .iq(
                GW,
                "set",
                el(&format!(
                    "<command xmlns='{COMMANDS}' node='{NODE}' sessionid='{session}' \
                     action='cancel'/>"
                )),
            )
            .await;
        let canceled = String::from(&canceled);
        assert!(canceled.contains("status='canceled'"), "{canceled}");
    }
}

/// Settings of all rooms, on the gateway's JID (biboumi's global
/// `configure`): every room persistent, whatever its own setting, and at
/// most so many messages of history on a join, whatever the join asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_of_all_rooms_from_the_gateways_jid() {
    let mut s = setup().await;
    let (form, done) = s
        .alice
        .run_command(
            GW,
            "configure",
            "<field var='persistent'><value>1</value></field>\
         <field var='max_history'><value>2</value></field>",
        )
        .await;
    assert!(
        form.contains("var='persistent'") && form.contains("var='max_history'"),
        "{form}"
    );
    let command = find_child(&done, "command", COMMANDS).unwrap();
    assert_eq!(
        attr(command, "status"),
        "completed",
        "{}",
        String::from(&done)
    );

    let room = format!("#every%localhost@{GW}");
    let me = format!("{room}/alice");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#every").await;
    join_as_alice(&mut s, &room).await;
    for line in ["one", "two", "three"] {
        bob.privmsg("#every", line).await;
        s.alice
            .expect(WAIT, |m| body(m).as_deref() == Some(line))
            .await;
    }
    // Left on XMPP, the room stays joined on IRC: every room is persistent.
    s.alice
        .send(el(&format!("<presence to='{me}' type='unavailable'/>")))
        .await;
    presence_from(&mut s.alice, &me).await;
    bob.expect_none(Duration::from_millis(800), alice_left)
        .await;

    // The join asks for ten messages and gets two.
    join_with_history(&mut s.alice, &me, "maxstanzas='10'").await;
    let subject = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && from(m, &room)
                && m.get_child("subject", "jabber:client").is_some()
        })
        .await;
    drop(subject);
    let mut history = Vec::new();
    while let Some(m) = s.alice.recv(Duration::from_millis(300)).await {
        if m.name() == "message" && from(&m, &format!("{room}/bob")) {
            if let Some(text) = body(&m) {
                history.push(text);
            }
        }
    }
    assert_eq!(history, ["two", "three"]);
}

/// A join IRC forwards to another channel (470: Libera's +f, InspIRCd's
/// +L) is a MUC join error with a `redirect` to that channel's JID, and the
/// user is not left in the channel the server put them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_join_is_a_redirect() {
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#overflow").await;
    bob.join("#full").await;
    bob.send("MODE #full +lL 1 #overflow").await;
    bob.expect(WAIT, |l| {
        l.contains(" MODE #full ") && l.contains("#overflow")
    })
    .await;

    let room = format!("#full%localhost@{GW}");
    let text = refused_join(&mut s, &room).await;
    assert!(
        text.contains("xmpp:%23overflow%25localhost@irc.localhost?join</redirect>"),
        "{text}"
    );
    // Put in #overflow by the server, alice leaves it at once.
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" JOIN "))
        .await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" PART "))
        .await;
    // And she can still join it, or any other, as she likes.
    join_as_alice(&mut s, &format!("#overflow%localhost@{GW}")).await;
}

/// A join refused with a numeric the gateway has no name for (InspIRCd's
/// 495: rejoining too soon after a kick, under +J) is still a join error
/// with the server's text, not a join that waits for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_error_answering_a_join_refuses_it() {
    let mut s = setup().await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#strict").await;
    bob.send("MODE #strict +J 60").await;
    bob.expect(WAIT, |l| l.contains(" MODE #strict ")).await;
    let room = format!("#strict%localhost@{GW}");
    join_as_alice(&mut s, &room).await;
    bob.send("KICK #strict alice :out").await;
    let kicked = presence_from(&mut s.alice, &format!("{room}/alice")).await;
    assert_eq!(attr(&kicked, "type"), "unavailable");

    let text = refused_join(&mut s, &room).await;
    assert!(text.contains("<not-allowed "), "{text}");
}

/// A user's server name, port or address never makes the gateway connect
/// inside its own network: a server the admin did not configure is refused
/// on a private address, and so is a configured server at a port of the
/// user's, and an address of the user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cannot_point_the_gateway_at_private_addresses() {
    let mut s = setup().await;
    let unlisted = format!("#x%127.0.0.1@{GW}");
    let text = refused_join(&mut s, &unlisted).await;
    assert!(text.contains("is a private address"), "{text}");

    // The admin's server, at a port of the user's choosing (here, Prosody's).
    let c2s = s.prosody.c2s_port();
    let server = format!("localhost@{GW}");
    s.alice
        .run_command(
            &server,
            "configure",
            &format!("<field var='port'><value>{c2s}</value></field>"),
        )
        .await;
    let room = format!("#y%localhost@{GW}");
    let text = refused_join(&mut s, &room).await;
    assert!(text.contains("is a private address"), "{text}");

    // A user's own address, an alias of a network as biboumi had them:
    // never one inside the gateway's network, at whatever port.
    let alias = format!("ircnet@{GW}");
    let port = s.ircd.port();
    s.alice
        .run_command(
            &alias,
            "configure",
            &format!(
                "<field var='address'><value>127.0.0.1</value></field>\
                 <field var='port'><value>{port}</value></field>"
            ),
        )
        .await;
    let text = refused_join(&mut s, &format!("#z%ircnet@{GW}")).await;
    assert!(text.contains("is a private address"), "{text}");
    // Nor on the admin's server, whose private port was for the admin's address.
    s.alice
        .run_command(
            &server,
            "configure",
            &format!(
                "<field var='address'><value>127.0.0.2</value></field>\
                 <field var='port'><value>{port}</value></field>"
            ),
        )
        .await;
    let text = refused_join(&mut s, &room).await;
    assert!(text.contains("is a private address"), "{text}");
}

/// A contact's vCard comes from WHOIS over the user's open connection: the
/// nick, and the rest as a description; the replies are not shown as
/// notices, and a nick nobody has is `item-not-found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irc_users_vcard_comes_from_whois() {
    const VCARD: &str = "vcard-temp";
    let mut s = setup().await;
    join_as_alice(&mut s, &format!("#lobby%localhost@{GW}")).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.send("AWAY :busy").await;
    bob.expect(WAIT, |l| l.contains(" 306 ")).await;

    let card = s
        .alice
        .iq(
            &format!("bob%localhost@{GW}"),
            "get",
            el(&format!("<vCard xmlns='{VCARD}'/>")),
        )
        .await;
    assert_eq!(attr(&card, "type"), "result", "{}", String::from(&card));
    let vcard = find_child(&card, "vCard", VCARD).unwrap();
    let field = |name: &str| vcard.get_child(name, VCARD).map(|c| c.text());
    assert_eq!(field("NICKNAME").as_deref(), Some("bob"));
    let desc = field("DESC").unwrap_or_default();
    assert!(
        desc.contains("Away: busy") && desc.contains("bob@"),
        "{desc}"
    );

    let missing = s
        .alice
        .iq(
            &format!("nobody%localhost@{GW}"),
            "get",
            el(&format!("<vCard xmlns='{VCARD}'/>")),
        )
        .await;
    let text = String::from(&missing);
    assert_eq!(attr(&missing, "type"), "error", "{text}");
    assert!(text.contains("<item-not-found "), "{text}");
    s.alice
        .expect_none(Duration::from_millis(500), |m| {
            m.name() == "message"
                && from(m, &format!("localhost@{GW}"))
                && body(m).is_some_and(|b| !b.starts_with("Message of the day"))
        })
        .await;
}

/// Replies both ways: an IRC reply (`+draft/reply` with the msgid of the
/// message answered) is an XEP-0461 reply to that message's stanza-id, and
/// an XMPP reply goes to IRC with the msgid of the message it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_both_ways() {
    const REPLY: &str = "urn:xmpp:reply:0";
    let mut s = setup().await;
    let room = format!("#lobby%localhost@{GW}");
    let mut bob =
        IrcClient::connect_with_caps(s.ircd.port(), "bob", &["message-tags", "echo-message"]).await;
    bob.join("#lobby").await;
    join_as_alice(&mut s, &room).await;

    let reflected = say_in_room(&mut s.alice, &room, "q", "first").await;
    let first_sid = world::stanza_id(&reflected);
    let line = bob
        .expect(WAIT, |l| l.ends_with("PRIVMSG #lobby :first"))
        .await;
    let first_msgid = tag(&line, "msgid");

    // IRC → XMPP.
    bob.send(&format!(
        "@+draft/reply={first_msgid} PRIVMSG #lobby :answer"
    ))
    .await;
    let answer = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("answer"))
        .await;
    let reply = find_child(&answer, "reply", REPLY).expect("an XEP-0461 reply");
    assert_eq!(attr(reply, "id"), first_sid);
    let echo = bob
        .expect(WAIT, |l| l.ends_with("PRIVMSG #lobby :answer"))
        .await;
    let answer_msgid = tag(&echo, "msgid");

    // XMPP → IRC.
    let answer_sid = world::stanza_id(&answer);
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat'><body>ok</body>\
             <reply xmlns='{REPLY}' to='{room}/bob' id='{answer_sid}'/></message>"
        )))
        .await;
    let line = bob
        .expect(WAIT, |l| l.ends_with("PRIVMSG #lobby :ok"))
        .await;
    assert_eq!(tag(&line, "+draft/reply"), answer_msgid, "{line}");
}

/// Reactions both ways, as IRCv3's `+draft/react` client tag on a TAGMSG
/// naming the message by its msgid (`+draft/reply`): XEP-0444 gives a
/// sender's whole set, IRC one reaction at a time, and the gateway turns
/// each into the other, in a channel and in private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_both_ways() {
    const REACTIONS: &str = "urn:xmpp:reactions:0";
    let mut s = setup().await;
    let room = format!("#react%localhost@{GW}");
    let bob_jid = format!("bob%localhost@{GW}");
    let mut bob =
        IrcClient::connect_with_caps(s.ircd.port(), "bob", &["message-tags", "echo-message"]).await;
    bob.join("#react").await;
    join_as_alice(&mut s, &room).await;
    let react = |to: &str, kind: &str, id: &str, target: &str, emojis: &[&str]| {
        let emojis: String = emojis
            .iter()
            .map(|e| format!("<reaction>{e}</reaction>"))
            .collect();
        el(&format!(
            "<message to='{to}' type='{kind}' id='{id}'>\
             <reactions xmlns='{REACTIONS}' id='{target}'>{emojis}</reactions></message>"
        ))
    };
    let reactions_of = |m: &Element| -> (String, Vec<String>) {
        let r = find_child(m, "reactions", REACTIONS).expect("reactions");
        let emojis = r.children().map(|c| c.text()).collect();
        (attr(r, "id").to_owned(), emojis)
    };

    // Clients look for the feature before they offer reactions.
    let features = s.alice.disco_features(&room).await;
    assert!(features.iter().any(|f| f == REACTIONS), "{features:?}");

    // XMPP → IRC: bob's message, by the stanza-id alice's client knows it by.
    bob.privmsg("#react", "react to me").await;
    let theirs = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("react to me"))
        .await;
    let echo = bob
        .expect(WAIT, |l| l.ends_with("PRIVMSG #react :react to me"))
        .await;
    let msgid = tag(&echo, "msgid");
    s.alice
        .send(react(
            &room,
            "groupchat",
            "r1",
            &world::stanza_id(&theirs),
            &["👍", "🎉"],
        ))
        .await;
    for emoji in ["👍", "🎉"] {
        let line = bob
            .expect(WAIT, |l| {
                l.contains(" TAGMSG ") && l.contains("#react") && l.contains("+draft/react")
            })
            .await;
        assert!(line.contains(":alice!"), "{line}");
        assert_eq!(tag(&line, "+draft/reply"), msgid, "{line}");
        assert_eq!(tag(&line, "+draft/react"), emoji, "{line}");
    }
    let reflected = s.alice.expect(WAIT, |m| attr(m, "id") == "r1").await;
    assert_eq!(
        attr(&reflected, "type"),
        "groupchat",
        "{}",
        String::from(&reflected)
    );
    // A new set sends what changed: one taken back, nothing added again.
    s.alice
        .send(react(
            &room,
            "groupchat",
            "r2",
            &world::stanza_id(&theirs),
            &["🎉"],
        ))
        .await;
    let line = bob
        .expect(WAIT, |l| {
            l.contains(" TAGMSG ") && l.contains("#react") && l.contains("draft/")
        })
        .await;
    assert_eq!(tag(&line, "+draft/unreact"), "👍", "{line}");
    assert_eq!(tag(&line, "+draft/react"), "", "{line}");
    s.alice.expect(WAIT, |m| attr(m, "id") == "r2").await;

    // IRC → XMPP: bob's reactions to alice's message add up to his set.
    let mine = say_in_room(&mut s.alice, &room, "m1", "mine").await;
    let mine_sid = world::stanza_id(&mine);
    let line = bob
        .expect(WAIT, |l| l.ends_with("PRIVMSG #react :mine"))
        .await;
    let mine_msgid = tag(&line, "msgid");
    let mut sets = Vec::new();
    for tags in [
        format!("+draft/reply={mine_msgid};+draft/react=❤"),
        format!("+draft/reply={mine_msgid};+draft/react=👀"),
        format!("+draft/reply={mine_msgid};+draft/unreact=❤"),
    ] {
        bob.send(&format!("@{tags} TAGMSG #react")).await;
        let m = s
            .alice
            .expect(WAIT, |m| find_child(m, "reactions", REACTIONS).is_some())
            .await;
        assert_eq!(attr(&m, "from"), format!("{room}/bob"));
        assert_eq!(attr(&m, "type"), "groupchat");
        let (target, emojis) = reactions_of(&m);
        assert_eq!(target, mine_sid);
        sets.push(emojis);
    }
    assert_eq!(sets, [vec!["❤"], vec!["❤", "👀"], vec!["👀"]]);

    // A message the gateway never saw is no message to react to.
    s.alice
        .send(react(&room, "groupchat", "r3", "no-such-id", &["👍"]))
        .await;
    let refused = s.alice.expect(WAIT, |m| attr(m, "id") == "r3").await;
    assert_eq!(attr(&refused, "type"), "error");
    assert!(String::from(&refused).contains("item-not-found"));

    // In private, both ways.
    bob.privmsg("alice", "psst").await;
    let private = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("psst"))
        .await;
    let echo = bob
        .expect(WAIT, |l| l.ends_with("PRIVMSG alice :psst"))
        .await;
    let private_msgid = tag(&echo, "msgid");
    s.alice
        .send(react(&bob_jid, "chat", "r4", attr(&private, "id"), &["👌"]))
        .await;
    let line = bob
        .expect(WAIT, |l| {
            l.contains(" TAGMSG ") && l.ends_with("bob") && l.contains("+draft/react")
        })
        .await;
    assert_eq!(tag(&line, "+draft/reply"), private_msgid, "{line}");
    assert_eq!(tag(&line, "+draft/react"), "👌", "{line}");
    // Named with the unprefixed `+reply`, as some clients do.
    bob.send(&format!(
        "@+reply={private_msgid};+draft/react=🙂 TAGMSG alice"
    ))
    .await;
    let m = s
        .alice
        .expect(WAIT, |m| find_child(m, "reactions", REACTIONS).is_some())
        .await;
    assert_eq!(attr(&m, "from"), bob_jid);
    assert_eq!(
        reactions_of(&m),
        (attr(&private, "id").to_owned(), vec!["🙂".to_owned()])
    );
}

/// A private message to an occupant's in-room JID (XEP-0045 §7.5, what a
/// client sends when the user opens a private chat from the room's list)
/// goes to that nick alone, never to the channel; and their answers come
/// back from that in-room JID, so the client shows one conversation, as
/// biboumi did. A message to their own address turns that back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_through_the_room_stay_private_and_answers_come_back_there() {
    const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    let mut s = setup().await;
    let room = format!("#pm%localhost@{GW}");
    let in_room = format!("{room}/bob");
    let bob_jid = format!("bob%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#pm").await;
    join_as_alice(&mut s, &room).await;
    presence_from(&mut s.alice, &in_room).await;

    s.alice
        .send(el(&format!(
            "<message to='{in_room}' type='chat' id='pm1'><body>just for you</body>\
             <x xmlns='{MUC_USER}'/></message>"
        )))
        .await;
    let line = bob
        .expect(WAIT, |l| {
            l.contains("PRIVMSG") && l.contains("just for you")
        })
        .await;
    assert!(line.contains("PRIVMSG bob :just for you"), "{line}");

    bob.privmsg("alice", "got it").await;
    let answer = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("got it"))
        .await;
    assert_eq!(attr(&answer, "from"), in_room, "{}", String::from(&answer));
    assert_eq!(attr(&answer, "type"), "chat");
    assert!(
        find_child(&answer, "x", MUC_USER).is_some(),
        "{}",
        String::from(&answer)
    );

    // Written to at their own address, they answer from it again.
    s.alice
        .send(el(&format!(
            "<message to='{bob_jid}' type='chat'><body>direct now</body></message>"
        )))
        .await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG bob :direct now"))
        .await;
    bob.privmsg("alice", "ok").await;
    let answer = s
        .alice
        .expect(WAIT, |m| body(m).as_deref() == Some("ok"))
        .await;
    assert_eq!(attr(&answer, "from"), bob_jid);

    // Out of the room, its occupants are no one to write to.
    s.alice
        .send(el(&format!(
            "<presence to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    presence_from(&mut s.alice, &format!("{room}/alice")).await;
    s.alice
        .send(el(&format!(
            "<message to='{in_room}' type='chat' id='pm2'><body>still there?</body></message>"
        )))
        .await;
    let refused = s.alice.expect(WAIT, |m| attr(m, "id") == "pm2").await;
    assert_eq!(attr(&refused, "type"), "error");
    assert!(String::from(&refused).contains("not-acceptable"));
    bob.expect_none(Duration::from_millis(500), |l| l.contains("still there?"))
        .await;
}

/// Channel modes as biboumi had them: `/mode …` said in the room sets
/// modes rather than being said, and every mode change, most of which MUC
/// has no word for (+m, +b…), is told from the room's JID; a status mode
/// also changes the occupant's role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_are_set_with_slash_mode_and_shown_from_the_room() {
    let mut s = setup().await;
    let room = format!("#modes%localhost@{GW}");
    // alice makes the channel, so she holds its operator status.
    join_as_alice(&mut s, &room).await;
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#modes").await;
    presence_from(&mut s.alice, &format!("{room}/bob")).await;

    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='md1'><body>/mode +m</body></message>"
        )))
        .await;
    let line = bob.expect(WAIT, |l| l.contains(" MODE #modes")).await;
    assert!(
        line.starts_with(":alice!") && line.ends_with("+m"),
        "{line}"
    );
    let notice = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &room) && body(m).is_some()
        })
        .await;
    assert_eq!(attr(&notice, "from"), room, "{}", String::from(&notice));
    assert_eq!(attr(&notice, "type"), "groupchat");
    assert_eq!(body(&notice).as_deref(), Some("alice sets mode +m"));

    // A status mode: the occupant's role changes, and the change is told.
    s.alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat'><body>/mode +o bob</body></message>"
        )))
        .await;
    let opped = presence_from(&mut s.alice, &format!("{room}/bob")).await;
    assert!(
        String::from(&opped).contains("role='moderator'"),
        "{}",
        String::from(&opped)
    );
    let notice = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &room) && body(m).is_some()
        })
        .await;
    assert_eq!(body(&notice).as_deref(), Some("alice sets mode +o bob"));

    // Modes set on IRC are told too, with who set them (bob, now an operator).
    bob.send("MODE #modes +b someone!*@*").await;
    let notice = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &room) && body(m).is_some()
        })
        .await;
    assert_eq!(attr(&notice, "from"), room);
    assert!(
        body(&notice).is_some_and(|b| b.contains("+b someone!*@*")),
        "{}",
        String::from(&notice)
    );
    // Never said as text in the channel.
    bob.expect_none(Duration::from_millis(300), |l| l.contains("PRIVMSG #modes"))
        .await;
}

/// The value of tag `name` of an IRC line, "" without it.
fn tag(line: &str, name: &str) -> String {
    world::irc_client::IrcLine::parse(line)
        .tag(name)
        .unwrap_or_default()
        .to_owned()
}

/// A host change (a cloak given on identifying, here an oper's CHGHOST) is
/// no leave and join in the room: the gateway takes IRCv3 chghost, which
/// tells it apart from a real quit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_change_is_no_leave_and_join() {
    let mut s = setup().await;
    let room = format!("#lobby%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#lobby").await;
    join_as_alice(&mut s, &room).await;
    presence_from(&mut s.alice, &format!("{room}/bob")).await;
    bob.oper().await;
    bob.send("CHGHOST bob cloaked.example").await;
    bob.expect(WAIT, |l| l.contains("cloaked.example")).await;
    s.alice
        .expect_none(Duration::from_millis(800), |p| {
            p.name() == "presence" && from(p, &format!("{room}/bob"))
        })
        .await;
    // bob is still there, and heard.
    bob.privmsg("#lobby", "same bob").await;
    s.alice
        .expect(WAIT, |m| body(m).as_deref() == Some("same bob"))
        .await;
}

/// Channel history the server replays on join (InspIRCd's +H, Ergo's
/// autoreplay) is not shown again where the archive already showed it:
/// each message is seen once, and what only the server kept (said while no
/// user of the gateway was there) is shown and archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_the_server_replays_is_not_shown_twice() {
    let mut s = setup().await;
    let room = format!("#replay%localhost@{GW}");
    let me = format!("{room}/alice");
    let mut bob = IrcClient::connect_with_caps(s.ircd.port(), "bob", &["message-tags"]).await;
    bob.join("#replay").await;
    bob.send("MODE #replay +H 10:1d").await;
    bob.expect(WAIT, |l| l.contains(" MODE #replay ")).await;
    join_as_alice(&mut s, &room).await;
    for line in ["one", "two"] {
        bob.privmsg("#replay", line).await;
        s.alice
            .expect(WAIT, |m| body(m).as_deref() == Some(line))
            .await;
    }
    s.alice
        .send(el(&format!("<presence to='{me}' type='unavailable'/>")))
        .await;
    presence_from(&mut s.alice, &me).await;
    bob.expect(WAIT, alice_left).await;

    // Said while no user of the gateway is there: only the server has it.
    bob.privmsg("#replay", "three").await;

    join_with_history(&mut s.alice, &me, "maxstanzas='10'").await;
    presence_from(&mut s.alice, &me).await;
    let mut seen = Vec::new();
    while let Some(m) = s.alice.recv(Duration::from_millis(1500)).await {
        if m.name() == "message" && from(&m, &format!("{room}/bob")) {
            seen.extend(body(&m));
        }
    }
    assert_eq!(seen, ["one", "two", "three"]);
    // And the archive has it now.
    assert_eq!(
        archived_bodies(&mut s.alice, &room).await,
        ["one", "two", "three"]
    );

    // A join asking for no history (as clients that read MAM do) is shown
    // none; what only the server had is still archived.
    s.alice
        .send(el(&format!("<presence to='{me}' type='unavailable'/>")))
        .await;
    presence_from(&mut s.alice, &me).await;
    bob.expect(WAIT, alice_left).await;
    bob.privmsg("#replay", "four").await;
    join_with_history(&mut s.alice, &me, "maxchars='0'").await;
    presence_from(&mut s.alice, &me).await;
    s.alice
        .expect_none(Duration::from_millis(1500), |m| {
            m.name() == "message" && from(m, &format!("{room}/bob"))
        })
        .await;
    assert_eq!(
        archived_bodies(&mut s.alice, &room).await,
        ["one", "two", "three", "four"]
    );
}

/// biboumi's admin options for how users appear on IRC:
/// `realname_from_jid` (the real name is the user's bare JID),
/// `realname_customization = false` (users cannot set their own), and
/// `webirc_password` (the user shows on IRC as coming from their XMPP
/// server, through InspIRCd's WebIRC block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_appear_on_irc_as_the_admin_chose() {
    let ircd = Inspircd::start();
    let server = serde_json::json!({
        "address": "127.0.0.1",
        "port": ircd.port(),
        "webirc_password": world::inspircd::WEBIRC_PASSWORD,
    });
    let mut s = setup_with_options(
        ircd,
        serde_json::json!({
            "servers": { "localhost": server },
            "realname_from_jid": true,
            "realname_customization": false,
        }),
    )
    .await;
    let server = format!("localhost@{GW}");
    let form = s.alice.command_form(&server, "configure").await;
    assert!(
        form.contains("var='nick'") && !form.contains("var='realname'"),
        "{form}"
    );
    assert!(!form.contains("var='username'"), "{form}");

    let room = format!("#names%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/alice"))
        })
        .await;
    // Her real name is her JID (`311 bob alice <user> <host> * :<real
    // name>`), and she came through WebIRC, with her XMPP server's address
    // (InspIRCd 3 looks the host up itself, which the test server does not).
    let whois = whois_user(&mut bob, "alice").await;
    assert!(whois.ends_with(" :alice@localhost"), "{whois}");
    bob.expect(WAIT, |l| {
        l.contains(" 350 bob alice ") && l.ends_with(":is connected via the estuary WebIRC gateway")
    })
    .await;
}

/// biboumi's `persistent_by_default`: each room stays joined on IRC when
/// the user leaves it on XMPP, and is joined again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_persistent_by_default_where_the_admin_says_so() {
    let mut s = setup().await;
    s.stop_gateway().await;
    s.config.gateways[0].persistent_by_default = true;
    s.start_gateway().await;
    let room = format!("#always%localhost@{GW}");
    let me = format!("{room}/alice");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    bob.join("#always").await;
    s.alice.send(el(&format!("<presence to='{me}'/>"))).await;
    s.alice
        .expect(WAIT, |p| p.name() == "presence" && from(p, &me))
        .await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" JOIN "))
        .await;

    // Left on XMPP, the room stays joined on IRC.
    s.alice
        .send(el(&format!("<presence to='{me}' type='unavailable'/>")))
        .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &me) && attr(p, "type") == "unavailable"
        })
        .await;
    bob.expect_none(Duration::from_secs(2), alice_left).await;

    // After a restart it is joined again at once.
    s.stop_gateway().await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" QUIT "))
        .await;
    s.start_gateway().await;
    bob.expect(WAIT, |l| l.starts_with(":alice!") && l.contains(" JOIN "))
        .await;
}

/// A server's JID in the roster is online while the user is connected to
/// that server, as in biboumi: online once a join opens the connection,
/// told again to a new client through its server's probe, and offline once
/// the last part closes it. The user's settings of the server, kept under
/// the same address, are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_jid_in_the_roster_shows_the_connection() {
    let mut s = setup().await;
    let server = format!("localhost@{GW}");
    let room = format!("#seen%localhost@{GW}");
    s.alice
        .run_command(
            &server,
            "configure",
            "<field var='realname'><value>Alice in the roster</value></field>",
        )
        .await;
    // The server's request back is left unanswered here (see
    // `a_presence_to_a_servers_jid_holds_its_connection_open`).
    subscribe_to_server(&mut s.alice, &server).await;
    // Its presence follows the approval: not connected yet.
    let (type_, _, _) = contact_presence(&mut s.alice, &server).await;
    assert_eq!(type_, "unavailable");

    join_as_alice(&mut s, &room).await;
    assert_eq!(
        contact_presence(&mut s.alice, &server).await,
        ("".into(), "".into(), "Connected to localhost".into())
    );
    let mut alice2 =
        XmppClient::connect(s.prosody.c2s_port(), "alice", "localhost", "pw", "res2").await;
    alice2.send(el("<presence/>")).await;
    // (The server's subscription request, pending, is told to a new client too.)
    let mut seen = contact_presence(&mut alice2, &server).await;
    if seen.0 == "subscribe" {
        seen = contact_presence(&mut alice2, &server).await;
    }
    assert_eq!(
        seen,
        ("".into(), "".into(), "Connected to localhost".into())
    );
    alice2.close().await;

    s.alice
        .send(el(&format!(
            "<presence to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    presence_from(&mut s.alice, &format!("{room}/alice")).await;
    let (type_, _, _) = contact_presence(&mut s.alice, &server).await;
    assert_eq!(type_, "unavailable");

    // The settings kept under the server's address are still there.
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;
    join_as_alice(&mut s, &room).await;
    let whois = whois_user(&mut bob, "alice").await;
    assert!(whois.ends_with(":Alice in the roster"), "{whois}");
}

/// alice's `client` (which reads her roster, so that it is told of subscription
/// changes) subscribes to the server JID `server`: the gateway approves,
/// and asks back, as biboumi did.
async fn subscribe_to_server(client: &mut XmppClient, server: &str) {
    client
        .iq(
            "alice@localhost",
            "get",
            el("<query xmlns='jabber:iq:roster'/>"),
        )
        .await;
    client
        .send(el(&format!("<presence to='{server}' type='subscribe'/>")))
        .await;
    let (type_, _, _) = contact_presence(client, server).await;
    assert_eq!(type_, "subscribed");
    let (type_, _, _) = contact_presence(client, server).await;
    assert_eq!(type_, "subscribe");
}

/// A new user `name` of Prosody, online, who never registered with the
/// gateway, with a client that read its roster (so that it is told of
/// subscription changes).
async fn guest(prosody: &Prosody, name: &str) -> XmppClient {
    prosody.add_user(name, "pw");
    let mut client = XmppClient::connect(prosody.c2s_port(), name, "localhost", "pw", "a").await;
    client.send(el("<presence/>")).await;
    client
        .iq(
            &format!("{name}@localhost"),
            "get",
            el("<query xmlns='jabber:iq:roster'/>"),
        )
        .await;
    client
}

/// The gateway's own JID in the roster of a user who never registered, as
/// biboumi keeps it: the subscription is approved and asked back, the
/// gateway shows online to each new client of the user's with no session
/// open, goes offline when it stops and online when it starts again (the
/// store remembers the subscriber), and an unsubscribed user is told no
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_jid_in_a_guests_roster_follows_the_gateway() {
    let mut s = setup().await;
    let mut dave = guest(&s.prosody, "dave").await;
    dave.send(el(&format!("<presence to='{GW}' type='subscribe'/>")))
        .await;
    for expected in ["subscribed", "", "subscribe"] {
        let (type_, _, _) = contact_presence(&mut dave, GW).await;
        assert_eq!(type_, expected);
    }
    dave.send(el(&format!("<presence to='{GW}' type='subscribed'/>")))
        .await;
    dave.close().await;

    // dave's next client: his server probes the gateway, which answers
    // online though dave is in no room and has no session.
    let mut dave = XmppClient::connect(s.prosody.c2s_port(), "dave", "localhost", "pw", "b").await;
    dave.send(el("<presence/>")).await;
    assert_eq!(contact_presence(&mut dave, GW).await.0, "");

    // Offline while the gateway is stopped, online again when it is back.
    s.stop_gateway().await;
    assert_eq!(contact_presence(&mut dave, GW).await.0, "unavailable");
    s.start_gateway().await;
    assert_eq!(contact_presence(&mut dave, GW).await.0, "");

    // Dropped from the roster: offline, and not told of the next restart.
    dave.send(el(&format!("<presence to='{GW}' type='unsubscribe'/>")))
        .await;
    // (Its `unsubscribed` too, which Prosody keeps: there is nothing left
    // to cancel.)
    assert_eq!(contact_presence(&mut dave, GW).await.0, "unavailable");
    s.stop_gateway().await;
    s.start_gateway().await;
    // Once the gateway answers again, whatever it said on the way is in.
    let info = dave
        .iq(
            GW,
            "get",
            el("<query xmlns='http://jabber.org/protocol/disco#info'/>"),
        )
        .await;
    assert_eq!(attr(&info, "type"), "result");
    dave.expect_none(Duration::from_millis(500), |p| {
        p.name() == "presence" && from(p, GW)
    })
    .await;
}

/// A user who never registered and is in no room adds a server's JID and
/// an IRC user to the roster: the gateway starts their session to answer,
/// as biboumi answers anyone: the server's JID approved, asked back and
/// offline (no connection is open), the contact approved. Dropping the
/// contact with no session open (after a restart) is heard too: once a
/// connection opens, the contact is not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_adds_a_servers_jid_and_a_contact_with_no_session_open() {
    let mut s = setup().await;
    let mut erin = guest(&s.prosody, "erin").await;
    let server = format!("localhost@{GW}");
    erin.send(el(&format!("<presence to='{server}' type='subscribe'/>")))
        .await;
    for expected in ["subscribed", "subscribe", "unavailable"] {
        assert_eq!(contact_presence(&mut erin, &server).await.0, expected);
    }
    let carol = format!("carol%localhost@{GW}");
    erin.send(el(&format!("<presence to='{carol}' type='subscribe'/>")))
        .await;
    assert_eq!(contact_presence(&mut erin, &carol).await.0, "subscribed");

    s.stop_gateway().await;
    s.start_gateway().await;
    erin.send(el(&format!("<presence to='{carol}' type='unsubscribe'/>")))
        .await;
    let _carol_on_irc = IrcClient::connect(s.ircd.port(), "carol").await;
    let me = format!("#lobby%localhost@{GW}/erin");
    erin.send(el(&format!(
        "<presence to='{me}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )))
    .await;
    presence_from(&mut erin, &me).await;
    erin.expect_none(Duration::from_secs(1), |p| {
        p.name() == "presence" && from(p, &carol) && attr(p, "type").is_empty()
    })
    .await;
}

/// Whether `nick` is on IRC, as `asker` learns with ISON, within a few
/// seconds of asking again.
async fn becomes_online(asker: &mut IrcClient, nick: &str, online: bool) {
    for _ in 0..50 {
        asker.send(&format!("ISON {nick}")).await;
        let line = asker.expect(WAIT, |l| l.contains(" 303 ")).await;
        if line.trim_end().ends_with(&format!(":{nick}")) == online {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{nick} never became {}",
        if online { "online" } else { "offline" }
    );
}

/// biboumi's force-connect: an available presence to a server's JID opens
/// the user's connection there, which then stays open with no channel
/// joined, for private messages or commands before any join, until an
/// unavailable presence. A server JID in the roster with a subscription
/// both ways does it at each login, as the user's server sends it the
/// user's presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_to_a_servers_jid_holds_its_connection_open() {
    let mut s = setup().await;
    let server = format!("localhost@{GW}");
    let room = format!("#brief%localhost@{GW}");
    let mut bob = IrcClient::connect(s.ircd.port(), "bob").await;

    s.alice
        .send(el(&format!("<presence to='{server}'/>")))
        .await;
    becomes_online(&mut bob, "alice", true).await;
    // A room joined and left: the connection stays, being held.
    join_as_alice(&mut s, &room).await;
    s.alice
        .send(el(&format!(
            "<presence to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    presence_from(&mut s.alice, &format!("{room}/alice")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    becomes_online(&mut bob, "alice", true).await;
    bob.privmsg("alice", "still there?").await;
    s.alice
        .expect(WAIT, |m| body(m).as_deref() == Some("still there?"))
        .await;
    // Released, and no room needs it: it closes.
    s.alice
        .send(el(&format!("<presence to='{server}' type='unavailable'/>")))
        .await;
    becomes_online(&mut bob, "alice", false).await;

    // In the roster both ways: the user's own presence holds it.
    subscribe_to_server(&mut s.alice, &server).await;
    s.alice
        .send(el(&format!("<presence to='{server}' type='subscribed'/>")))
        .await;
    becomes_online(&mut bob, "alice", true).await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &server)
                && String::from(p).contains("Connected to localhost")
        })
        .await;
}

/// biboumi's `reload`: an admin has the configuration file read again
/// (SIGHUP, SIGUSR1 and SIGUSR2 do the same, `tests/cli.rs`). A changed
/// admin list and `persistent_by_default` apply at once, new IRC server
/// options reach the next connection, and a file that does not check
/// changes nothing and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reloads_the_configuration() {
    const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
    let prosody = Prosody::start(&[(GW, "secret")]);
    let ircd = Inspircd::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("estuary.toml");
    let write = |admins: &str, realname: &str, extra: &str| {
        let file = format!(
            r#"
[component]
server = "{}"
backoff_initial_ms = 100
backoff_max_ms = 1000

[store]
data_dir = "{}"

[[gateway]]
domain = "{GW}"
secret = "secret"
kind = "irc"
admins = [{admins}]
{extra}

[gateway.options.servers.localhost]
address = "127.0.0.1"
port = {}
realname = "{realname}"
"#,
            prosody.component_addr(),
            dir.path().display(),
            ircd.port(),
        );
        std::fs::write(&path, file).unwrap();
    };
    write("\"alice@localhost\"", "Before", "");
    let config = Config::load(&path, &Networks::builtin().kinds()).unwrap();
    let estuary = start_estuary(config).await;
    prosody.add_user("alice", "pw");
    prosody.add_user("carol", "pw");
    let mut alice =
        XmppClient::connect(prosody.c2s_port(), "alice", "localhost", "pw", "res").await;
    let mut carol =
        XmppClient::connect(prosody.c2s_port(), "carol", "localhost", "pw", "res").await;
    let reload = el(&format!(
        "<command xmlns='{NS_COMMANDS}' node='reload' action='execute'/>"
    ));
    let note = |reply: &Element| {
        assert_eq!(attr(reply, "type"), "result", "{}", String::from(reply));
        let command = find_child(reply, "command", NS_COMMANDS).expect("a command");
        assert_eq!(attr(command, "status"), "completed");
        String::from(command)
    };

    // Only admins may, and only they are offered it.
    let refused = carol.iq(GW, "set", reload.clone()).await;
    assert!(
        String::from(&refused).contains("forbidden"),
        "{}",
        String::from(&refused)
    );
    let offered = |items: &Element| String::from(items).contains("node='reload'");
    let commands = el(&format!(
        "<query xmlns='http://jabber.org/protocol/disco#items' node='{NS_COMMANDS}'/>"
    ));
    assert!(offered(&alice.iq(GW, "get", commands.clone()).await));
    assert!(!offered(&carol.iq(GW, "get", commands.clone()).await));

    // Unchanged, nothing changes.
    let done = note(&alice.iq(GW, "set", reload.clone()).await);
    assert!(done.contains("nothing changed"), "{done}");

    write(
        "\"alice@localhost\", \"carol@localhost\"",
        "After reload",
        "persistent_by_default = true",
    );
    let done = note(&alice.iq(GW, "set", reload.clone()).await);
    for applied in ["allowed and admins", "persistent_by_default", "options"] {
        assert!(done.contains(applied), "{applied}: {done}");
    }
    assert!(!done.contains("next restart"), "{done}");
    // carol is an admin now.
    assert!(offered(&carol.iq(GW, "get", commands).await));

    // The next connection has the new real name.
    let mut bob = IrcClient::connect(ircd.port(), "bob").await;
    bob.join("#reload").await;
    let occupant = format!("#reload%localhost@{GW}/alice");
    alice
        .send(el(&format!(
            "<presence to='{occupant}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    presence_from(&mut alice, &occupant).await;
    let whois = whois_user(&mut bob, "alice").await;
    assert!(whois.ends_with(" :After reload"), "{whois}");

    // A file that does not check is refused whole, saying why.
    std::fs::write(
        &path,
        format!("[[gateway]]\ndomain = \"{GW}\"\nsecret = \"s\"\nkind = \"nope\"\n"),
    )
    .unwrap();
    let refused = carol.iq(GW, "set", reload).await;
    let text = String::from(&refused);
    assert!(
        text.contains("internal-server-error") && text.contains("nope"),
        "{text}"
    );
    estuary.stop().await.unwrap();
}
