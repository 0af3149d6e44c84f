//! The Discord bridge against the Discord API double (tests/world/discord)
//! and a real Prosody: channels as MUCs, messages both ways through a
//! webhook, edits, deletes, reactions, replies, typing, direct messages,
//! and the faults Discord can throw at a gateway.

mod world;

use std::time::Duration;

use estuary::app::{self, Running};
use estuary::config::{ComponentConfig, Config, GatewayConfig, StoreConfig};
use estuary::networks::Networks;
use world::discord::{Community, DiscordDouble, MessageRec};
use world::{attr, body, el, find_child, moderation, Element, Prosody, XmppClient};

const GW: &str = "discord.localhost";
const TOKEN: &str = "bot-token-for-tests";
const WAIT: Duration = Duration::from_secs(10);
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";

struct Setup {
    _prosody: Prosody,
    discord: DiscordDouble,
    c: Community,
    estuary: Option<Running>,
    _dir: tempfile::TempDir,
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
    estuary_discord::ensure_crypto_provider();
}

fn discord_gateway(domain: &str, double: &DiscordDouble, token: &str) -> GatewayConfig {
    GatewayConfig {
        domain: domain.to_owned(),
        secret: "secret".to_owned(),
        kind: "discord".to_owned(),
        server: None,
        host_domain: None,
        allowed: vec!["localhost".to_owned()],
        admins: vec![],
        persistent_by_default: false,
        // Files linked from XMPP are served on loopback in these tests.
        options: serde_json::json!({
            "bot_token": token,
            "api_base": double.base_url(),
            "fetch_private_media": true,
        }),
    }
}

async fn start_estuary(
    prosody: &Prosody,
    dir: &tempfile::TempDir,
    gateways: Vec<GatewayConfig>,
) -> Running {
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
        gateways: gateways.clone(),
    };
    let estuary = app::start(config, &Networks::builtin()).await.unwrap();
    for gw in &gateways {
        world::wait_for_link(&estuary, &gw.domain).await;
    }
    estuary
}

/// Register `client` with a gateway (XEP-0077, no fields); returns the reply.
async fn register(client: &mut XmppClient, gateway: &str) -> Element {
    client.submit_registration(gateway, &[]).await
}

/// Asserts that `reply` is an error whose XML says `expected`.
fn assert_refused(reply: &Element, expected: &str) {
    let xml = String::from(reply);
    assert_eq!(attr(reply, "type"), "error", "{xml}");
    assert!(xml.contains(expected), "{xml}");
}

/// Register `client` with their own bot's token; returns the reply.
async fn register_own_bot(client: &mut XmppClient, token: &str) -> Element {
    client.submit_registration(GW, &[("token", token)]).await
}

/// Prosody, the Discord double with its community, Estuary with the
/// Discord bridge, and `alice` registered.
async fn setup() -> Setup {
    setup_with(|_| {}).await
}

/// The same, with the double adjusted before the bot connects.
async fn setup_with(adjust: impl FnOnce(&DiscordDouble)) -> Setup {
    setup_configured(adjust, |_| {}).await
}

/// The same, with the gateway's options adjusted too.
async fn setup_configured(
    adjust: impl FnOnce(&DiscordDouble),
    configure: impl FnOnce(&mut serde_json::Value),
) -> Setup {
    init_logging();
    let prosody = Prosody::start(&[(GW, "secret")]);
    let (discord, c) = DiscordDouble::start_with_community(TOKEN).await;
    adjust(&discord);
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = discord_gateway(GW, &discord, TOKEN);
    configure(&mut gateway.options);
    let estuary = start_estuary(&prosody, &dir, vec![gateway]).await;
    discord.wait_for_bot(WAIT).await;
    let alice = another_user(&prosody, "alice").await;
    Setup {
        _prosody: prosody,
        discord,
        c,
        estuary: Some(estuary),
        _dir: dir,
        alice,
    }
}

/// A user of the XMPP server, online and registered with the gateway.
async fn another_user(prosody: &Prosody, name: &str) -> XmppClient {
    prosody.add_user(name, "pw");
    let mut client = XmppClient::connect(prosody.c2s_port(), name, "localhost", "pw", "res").await;
    client.send(el("<presence/>")).await;
    let reply = register(&mut client, GW).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    client
}

fn room(channel: u64) -> String {
    format!("{channel}@{GW}")
}

fn from(s: &Element, jid: &str) -> bool {
    attr(s, "from") == jid
}

fn is_groupchat_from(m: &Element, jid: &str) -> bool {
    m.name() == "message" && attr(m, "type") == "groupchat" && from(m, jid)
}

fn muc_item(p: &Element) -> (String, String) {
    let x = find_child(p, "x", NS_MUC_USER).expect("muc#user");
    let item = x.children().find(|c| c.name() == "item").expect("item");
    (
        attr(item, "affiliation").to_owned(),
        attr(item, "role").to_owned(),
    )
}

/// Join `channel` as `nick` and wait for the self-presence and subject;
/// returns the occupant presences seen before the self-presence.
async fn join(client: &mut XmppClient, channel: u64, nick: &str) -> Vec<Element> {
    let room = room(channel);
    client
        .send(el(&format!(
            "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    let own = client
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{room}/{nick}"))
        })
        .await;
    assert!(
        String::from(&own).contains("code='110'"),
        "{}",
        String::from(&own)
    );
    client
        .expect(WAIT, |m| {
            m.name() == "message" && m.get_child("subject", "jabber:client").is_some()
        })
        .await;
    let mut occupants = Vec::new();
    while let Some(p) = client.recv(Duration::from_millis(100)).await {
        occupants.push(p);
    }
    occupants
}

/// The groupchat message with `text` that `client` gets from `nick` in `channel`.
async fn expect_from(client: &mut XmppClient, channel: u64, nick: &str, text: &str) -> Element {
    let jid = format!("{}/{nick}", room(channel));
    client
        .expect(WAIT, |m| {
            is_groupchat_from(m, &jid) && body(m).as_deref() == Some(text)
        })
        .await
}

/// The XEP-0359 stanza-id the gateway gave a message.
async fn send_groupchat(client: &mut XmppClient, channel: u64, id: &str, text: &str, extra: &str) {
    client
        .send(el(&format!(
            "<message to='{}' type='groupchat' id='{id}'><body>{}</body>{extra}</message>",
            room(channel),
            world::client::escape(text)
        )))
        .await;
}

async fn stop(mut s: Setup) {
    if let Some(e) = s.estuary.take() {
        e.stop().await.unwrap();
    }
}

fn webhook_posts(messages: &[MessageRec]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|m| m.webhook_id.is_some())
        .map(|m| (m.author_name.clone(), m.content.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_is_a_room_and_messages_flow_both_ways() {
    let mut s = setup().await;
    let c = s.c;

    // Members are occupants: display names as nicks, owner and admins as such.
    let occupants = join(&mut s.alice, c.general, "alice").await;
    let _ = occupants;
    s.alice
        .send(el(&format!("<presence to='{}/alice2'/>", room(c.random))))
        .await;
    let seen = |nick: &str| format!("{}/{nick}", room(c.random));
    let mut items = std::collections::BTreeMap::new();
    while items.len() < 3 {
        let p = s
            .alice
            .expect(WAIT, |p| {
                p.name() == "presence"
                    && attr(p, "from").starts_with(&room(c.random))
                    && !from(p, &seen("alice2"))
            })
            .await;
        items.insert(attr(&p, "from").to_owned(), muc_item(&p));
    }
    assert_eq!(
        items,
        [
            (
                seen("Bobby"),
                ("member".to_owned(), "participant".to_owned())
            ),
            (
                seen("Carol C"),
                ("admin".to_owned(), "moderator".to_owned())
            ),
            (seen("Olivia"), ("owner".to_owned(), "moderator".to_owned())),
        ]
        .into_iter()
        .collect()
    );

    // Someone joining and leaving the Discord server comes and goes from the room.
    let erin = s.discord.add_user("erin", None);
    s.discord.member_joins(c.guild, erin, Some("Erin"));
    let came = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{}/Erin", room(c.general)))
        })
        .await;
    assert_eq!(
        muc_item(&came),
        ("member".to_owned(), "participant".to_owned())
    );
    s.discord.member_renames(c.guild, erin, Some("Erin B"));
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{}/Erin B", room(c.general)))
        })
        .await;
    s.discord.member_leaves(c.guild, erin);
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{}/Erin B", room(c.general)))
                && attr(p, "type") == "unavailable"
        })
        .await;

    // Discord → XMPP, with mentions shown as nicks.
    s.discord.post(
        c.bob,
        c.general,
        &format!("hello <@{}>, see <#{}>", c.carol, c.random),
    );
    expect_from(
        &mut s.alice,
        c.general,
        "Bobby",
        "hello @Carol C, see #random",
    )
    .await;

    // A burst arrives in order, although serenity handles each event on its own task.
    for i in 0..8 {
        s.discord.post(c.bob, c.general, &format!("burst {i}"));
    }
    let mut burst = Vec::new();
    while burst.len() < 8 {
        let m = s
            .alice
            .expect(WAIT, |m| body(m).is_some_and(|b| b.starts_with("burst ")))
            .await;
        burst.push(body(&m).unwrap());
    }
    assert_eq!(
        burst,
        (0..8).map(|i| format!("burst {i}")).collect::<Vec<_>>()
    );

    // XMPP → Discord through the channel's webhook, under the user's nick.
    send_groupchat(&mut s.alice, c.general, "x1", "hi from xmpp, @Bobby", "").await;
    let posted = s
        .discord
        .wait_for_message(c.general, WAIT, |m| m.webhook_id.is_some())
        .await;
    assert_eq!(posted.author_name, "alice");
    assert_eq!(posted.content, format!("hi from xmpp, <@{}>", c.bob));
    // Reflected to the sender once, under its id; the webhook's echo on the gateway is not bridged back.
    s.alice.expect(WAIT, |m| attr(m, "id") == "x1").await;
    send_groupchat(&mut s.alice, c.general, "x2", "second", "").await;
    s.alice.expect(WAIT, |m| attr(m, "id") == "x2").await;
    s.discord
        .wait_for_message(c.general, WAIT, |m| m.content == "second")
        .await;
    let echo = s.alice.recv(Duration::from_millis(500)).await;
    assert!(
        echo.as_ref().is_none_or(|m| body(m).is_none()),
        "something came back: {}",
        echo.map(|m| String::from(&m)).unwrap_or_default()
    );

    // One webhook, made once and reused.
    assert_eq!(s.discord.webhooks_in(c.general).len(), 1);
    let creations = s
        .discord
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST /channels/") && r.ends_with("/webhooks"))
        .count();
    assert_eq!(creations, 1);
    assert_eq!(
        webhook_posts(&s.discord.messages_in(c.general)),
        vec![
            ("alice".to_owned(), format!("hi from xmpp, <@{}>", c.bob)),
            ("alice".to_owned(), "second".to_owned())
        ]
    );

    // disco#items on the guild lists its text channels (not the hidden one).
    let items = s.alice.disco_items(&format!("{}@{GW}", c.guild)).await;
    let listed: Vec<String> = items
        .children()
        .flat_map(|q| q.children())
        .filter(|i| i.name() == "item")
        .map(|i| format!("{} {}", attr(i, "jid"), attr(i, "name")))
        .collect();
    assert_eq!(
        listed,
        vec![
            format!("{} #general", room(c.general)),
            format!("{} #random", room(c.random))
        ]
    );
    // ... and disco#items on the gateway lists the guilds.
    let top = s.alice.disco_items(GW).await;
    assert!(
        String::from(&top).contains(&format!("jid='{}@{GW}'", c.guild)),
        "{}",
        String::from(&top)
    );
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletes_reactions_and_replies_both_ways() {
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;

    // Discord → XMPP.
    let hello = s.discord.post(c.bob, c.general, "helo");
    let shown = expect_from(&mut s.alice, c.general, "Bobby", "helo").await;
    let shown_id = world::stanza_id(&shown);
    s.discord.edit(hello, "hello");
    let fix = expect_from(&mut s.alice, c.general, "Bobby", "hello").await;
    assert_eq!(
        attr(
            find_child(&fix, "replace", "urn:xmpp:message-correct:0").expect("a correction"),
            "id"
        ),
        shown_id
    );
    s.discord.react(c.carol, hello, "👍");
    let reaction = s
        .alice
        .expect(WAIT, |m| {
            find_child(m, "reactions", "urn:xmpp:reactions:0").is_some()
        })
        .await;
    assert!(from(&reaction, &format!("{}/Carol C", room(c.general))));
    let reactions = find_child(&reaction, "reactions", "urn:xmpp:reactions:0").unwrap();
    assert_eq!(attr(reactions, "id"), shown_id);
    assert_eq!(
        reactions.children().map(|r| r.text()).collect::<Vec<_>>(),
        vec!["👍"]
    );
    let answer = s
        .discord
        .post_reply(c.carol, c.general, "indeed", Some(hello));
    let reply = expect_from(&mut s.alice, c.general, "Carol C", "indeed").await;
    assert_eq!(
        attr(
            find_child(&reply, "reply", "urn:xmpp:reply:0").expect("a reply"),
            "id"
        ),
        shown_id
    );
    s.discord.delete(answer);
    let retraction = s
        .alice
        .expect(WAIT, |m| {
            find_child(m, "retract", "urn:xmpp:message-retract:1").is_some()
        })
        .await;
    assert_eq!(
        attr(
            find_child(&retraction, "retract", "urn:xmpp:message-retract:1").unwrap(),
            "id"
        ),
        world::stanza_id(&reply)
    );

    // XMPP → Discord: the correction edits the webhook's message in place.
    send_groupchat(&mut s.alice, c.general, "m1", "typo", "").await;
    s.alice.expect(WAIT, |m| attr(m, "id") == "m1").await;
    let posted = s
        .discord
        .wait_for_message(c.general, WAIT, |m| m.content == "typo")
        .await;
    send_groupchat(
        &mut s.alice,
        c.general,
        "m2",
        "fixed",
        "<replace xmlns='urn:xmpp:message-correct:0' id='m1'/>",
    )
    .await;
    s.discord.wait_for_edit(posted.id, "fixed", WAIT).await;
    // A reaction from XMPP is the bot's reaction on Discord.
    s.alice
        .send(el(&format!(
            "<message to='{}' type='groupchat' id='r1'><reactions xmlns='urn:xmpp:reactions:0' id='{shown_id}'>\
             <reaction>🎉</reaction></reactions></message>",
            room(c.general)
        )))
        .await;
    let bot = s.discord.bot_id();
    s.discord
        .wait_until(WAIT, "the bot's reaction", |st| {
            st.reactions.contains(&(hello, bot, "🎉".to_owned()))
        })
        .await;
    // A reply from XMPP is a threaded Discord reply.
    send_groupchat(
        &mut s.alice,
        c.general,
        "m3",
        "answering",
        &format!("<reply xmlns='urn:xmpp:reply:0' id='{shown_id}'/>"),
    )
    .await;
    let threaded = s
        .discord
        .wait_for_message(c.general, WAIT, |m| m.content.ends_with("answering"))
        .await;
    assert_eq!(threaded.reply_to, Some(hello));
    assert_eq!(threaded.content, "**alice**: answering");
    // The retraction deletes it on Discord.
    s.alice
        .send(el(&format!(
            "<message to='{}' type='groupchat' id='d1'><retract xmlns='urn:xmpp:message-retract:1' id='m1'/></message>",
            room(c.general)
        )))
        .await;
    s.discord
        .wait_until(WAIT, "the delete", |st| {
            st.message(posted.id).is_some_and(|m| m.deleted)
        })
        .await;
    // Nothing the gateway did on Discord came back as an event from someone else.
    while let Some(stray) = s.alice.recv(Duration::from_millis(500)).await {
        assert!(
            attr(&stray, "from").ends_with("/alice"),
            "{}",
            String::from(&stray)
        );
    }
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_made_again_reused_and_replaced_by_the_bot_when_refused() {
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;
    join(&mut s.alice, c.random, "alice").await;

    send_groupchat(&mut s.alice, c.general, "a1", "first", "").await;
    s.discord
        .wait_for_message(c.general, WAIT, |m| m.content == "first")
        .await;
    let hooks = s.discord.webhooks_in(c.general);
    assert_eq!(hooks.len(), 1);

    // Deleted behind the gateway's back: made again, and the message still goes out.
    s.discord.delete_webhook(hooks[0].id);
    send_groupchat(&mut s.alice, c.general, "a2", "after the delete", "").await;
    let again = s
        .discord
        .wait_for_message(c.general, WAIT, |m| m.content == "after the delete")
        .await;
    let new_hooks = s.discord.webhooks_in(c.general);
    assert_eq!(new_hooks.len(), 1);
    assert_ne!(new_hooks[0].id, hooks[0].id);
    assert_eq!(again.webhook_id, Some(new_hooks[0].id));
    assert_eq!(again.author_name, "alice");

    // A channel already holding 10 webhooks of others: the bot posts, never an 11th.
    for i in 0..10 {
        let mut state = s.discord.lock();
        let id = state.snowflake();
        let creator = c.owner;
        state.webhooks.push(world::discord::WebhookRec {
            id,
            token: format!("other-{i}"),
            guild_id: c.guild,
            channel_id: c.random,
            name: format!("other integration {i}"),
            creator_id: creator,
        });
    }
    send_groupchat(&mut s.alice, c.random, "a3", "crowded", "").await;
    let crowded = s
        .discord
        .wait_for_message(c.random, WAIT, |m| m.content.ends_with("crowded"))
        .await;
    assert_eq!(crowded.content, "**alice**: crowded");
    assert_eq!(crowded.webhook_id, None);
    assert_eq!(s.discord.webhooks_in(c.random).len(), 10);

    // Without Manage Webhooks in a new channel: `**nick**: text` by the bot.
    let quiet = s.discord.add_text_channel(c.guild, "quiet", None);
    s.discord.set_bot_can_manage_webhooks(false);
    // The bot learns about the channel on its next GUILD_CREATE: make it re-identify.
    s.discord.invalidate_sessions();
    s.discord.wait_for_bot(WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    join(&mut s.alice, quiet, "alice").await;
    send_groupchat(&mut s.alice, quiet, "a4", "no hooks here", "").await;
    let plain = s
        .discord
        .wait_for_message(quiet, WAIT, |m| m.content.ends_with("no hooks here"))
        .await;
    assert_eq!(plain.content, "**alice**: no hooks here");
    assert_eq!(plain.author_id, s.discord.bot_id());
    // The bot's own post is not bridged back either.
    let stray = s.alice.recv(Duration::from_millis(500)).await;
    assert!(
        stray.as_ref().is_none_or(|m| attr(m, "id") == "a4"),
        "{}",
        stray.map(|m| String::from(&m)).unwrap_or_default()
    );
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_messages_are_split_and_a_429_storm_only_delays_them() {
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;

    let words: Vec<String> = (0..900).map(|i| format!("word{i}")).collect();
    let long = words.join(" ");
    assert!(long.chars().count() > 4000);
    send_groupchat(&mut s.alice, c.general, "l1", &long, "").await;
    s.discord
        .wait_until(WAIT, "every piece", |st| {
            st.messages
                .iter()
                .filter(|m| m.channel_id == c.general)
                .map(|m| m.content.len())
                .sum::<usize>()
                == long.len()
        })
        .await;
    let pieces: Vec<String> = s
        .discord
        .messages_in(c.general)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert!(pieces.len() >= 3, "{}", pieces.len());
    assert!(pieces.iter().all(|p| p.chars().count() <= 2000));
    assert_eq!(pieces.concat(), long);

    // Six sends in a row answer 429: every message still arrives, in order.
    join(&mut s.alice, c.random, "alice").await;
    s.discord.rate_limit_next(6, Duration::from_millis(100));
    for i in 0..5 {
        send_groupchat(
            &mut s.alice,
            c.random,
            &format!("s{i}"),
            &format!("storm {i}"),
            "",
        )
        .await;
    }
    s.discord
        .wait_until(
            Duration::from_secs(30),
            "five messages through the storm",
            |st| {
                st.messages
                    .iter()
                    .filter(|m| m.channel_id == c.random)
                    .count()
                    == 5
            },
        )
        .await;
    let got: Vec<String> = s
        .discord
        .messages_in(c.random)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(
        got,
        (0..5).map(|i| format!("storm {i}")).collect::<Vec<_>>()
    );
    assert_eq!(s.discord.rate_limited_count(), 6);
    // The sender saw each of them accepted, in order.
    for i in 0..5 {
        s.alice
            .expect(WAIT, |m| attr(m, "id") == format!("s{i}"))
            .await;
    }
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_bot_cannot_see_is_refused() {
    let mut s = setup().await;
    let c = s.c;
    let room = room(c.hidden);
    s.alice
        .send(el(&format!("<presence to='{room}/alice'/>")))
        .await;
    let refused = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && attr(p, "type") == "error"
        })
        .await;
    let xml = String::from(&refused);
    assert!(
        xml.contains("<forbidden") || xml.contains("<item-not-found"),
        "{xml}"
    );
    assert!(xml.contains("Missing Access"), "{xml}");
    // Nothing was posted.
    assert!(s.discord.messages_in(c.hidden).is_empty());
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_direct_messages_both_ways() {
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;

    // Typing on Discord is XEP-0085 composing in the room, and back.
    s.discord.typing(c.bob, c.general);
    let composing = s
        .alice
        .expect(WAIT, |m| {
            find_child(m, "composing", "http://jabber.org/protocol/chatstates").is_some()
        })
        .await;
    assert!(from(&composing, &format!("{}/Bobby", room(c.general))));
    s.alice
        .send(el(&format!(
            "<message to='{}' type='groupchat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            room(c.general)
        )))
        .await;
    s.discord
        .wait_until(WAIT, "the bot typing", |st| {
            st.bot_typing.contains(&c.general)
        })
        .await;

    // A chat to <user id>@gateway is a DM from the bot, with the sender's name in front.
    let bob = format!("{}@{GW}", c.bob);
    s.alice
        .send(el(&format!(
            "<message to='{bob}' type='chat' id='dm1'><body>psst</body></message>"
        )))
        .await;
    let dm_channel = loop {
        if let Some(ch) = s.discord.dm_channel_of(c.bob) {
            break ch;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let dm = s.discord.wait_for_message(dm_channel, WAIT, |_| true).await;
    assert_eq!(dm.content, "**alice**: psst");
    // Bob answers in the DM: it comes from bob's JID.
    s.discord.dm_bot(c.bob, "what?");
    let answer = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &bob) && body(m).is_some()
        })
        .await;
    assert_eq!(body(&answer).as_deref(), Some("what?"));
    assert_eq!(attr(&answer, "type"), "chat");

    // Presence of a contact (the privileged Presence intent is granted here).
    s.discord.set_presence(c.bob, c.guild, "idle");
    let away = s
        .alice
        .expect(WAIT, |p| {
            // Not the subscription request that offers bob to the roster.
            p.name() == "presence" && from(p, &bob) && attr(p, "type").is_empty()
        })
        .await;
    assert_eq!(
        find_child(&away, "show", "jabber:client")
            .map(|e| e.text())
            .as_deref(),
        Some("away")
    );
    s.discord.set_presence(c.bob, c.guild, "offline");
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &bob) && attr(p, "type") == "unavailable"
        })
        .await;
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_privileged_intents_the_bot_connects_with_the_others() {
    let mut s = setup_with(|d| d.grant_privileged_intents(0)).await;
    let c = s.c;
    // The first IDENTIFY asked for them and was closed with 4014; the second did not.
    let intents: Vec<u64> = s
        .discord
        .lock()
        .sessions
        .values()
        .map(|x| x.intents)
        .collect();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0] & world::discord::state::PRIVILEGED_INTENTS, 0);
    assert_ne!(intents[0], 0);
    join(&mut s.alice, c.general, "alice").await;
    send_groupchat(&mut s.alice, c.general, "p1", "still works", "").await;
    s.discord
        .wait_for_message(c.general, WAIT, |m| m.content == "still works")
        .await;
    // Discord sends no text without Message Content: nothing empty is shown.
    s.discord.post(c.bob, c.general, "you cannot read this");
    s.discord.set_presence(c.bob, c.guild, "idle");
    while let Some(stray) = s.alice.recv(Duration::from_millis(500)).await {
        assert!(attr(&stray, "id") == "p1", "{}", String::from(&stray));
    }
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_resumes_after_a_drop_and_reidentifies_after_an_invalid_session() {
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;

    assert_eq!(s.discord.drop_gateway(), 1);
    // Said while the gateway connection was down: replayed on RESUME.
    s.discord.post(c.bob, c.general, "while you were out");
    expect_from(&mut s.alice, c.general, "Bobby", "while you were out").await;
    assert_eq!(s.discord.resume_count(), 1);

    assert_eq!(s.discord.invalidate_sessions(), 1);
    s.discord
        .wait_until(WAIT, "a second IDENTIFY", |st| st.identifies == 2)
        .await;
    s.discord.wait_for_bot(WAIT).await;
    s.discord.post(c.bob, c.general, "fresh session");
    expect_from(&mut s.alice, c.general, "Bobby", "fresh session").await;
    send_groupchat(&mut s.alice, c.general, "b1", "still bridged", "").await;
    s.discord
        .wait_for_message(c.general, WAIT, |m| m.content == "still bridged")
        .await;
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_a_clear_error_and_other_gateways_keep_running() {
    init_logging();
    const BAD: &str = "bad.discord.localhost";
    let prosody = Prosody::start(&[(GW, "secret"), (BAD, "secret")]);
    let (discord, c) = DiscordDouble::start_with_community(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let estuary = start_estuary(
        &prosody,
        &dir,
        vec![
            discord_gateway(BAD, &discord, "not-the-token"),
            discord_gateway(GW, &discord, TOKEN),
        ],
    )
    .await;
    prosody.add_user("alice", "pw");
    let mut alice =
        XmppClient::connect(prosody.c2s_port(), "alice", "localhost", "pw", "res").await;
    alice.send(el("<presence/>")).await;

    // The bad gateway says why at registration.
    discord
        .wait_until(WAIT, "both gateways checking their token", |st| {
            st.requests
                .iter()
                .filter(|r| *r == "GET /users/@me")
                .count()
                >= 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = register(&mut alice, BAD).await;
    assert_refused(&refused, "refused the gateway's bot token");

    // The good one works.
    discord.wait_for_bot(WAIT).await;
    let ok = register(&mut alice, GW).await;
    assert_eq!(attr(&ok, "type"), "result", "{}", String::from(&ok));
    join(&mut alice, c.general, "alice").await;
    discord.post(c.bob, c.general, "the other gateway is fine");
    expect_from(&mut alice, c.general, "Bobby", "the other gateway is fine").await;
    estuary.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_still_work_after_a_restart() {
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;
    send_groupchat(&mut s.alice, c.general, "before", "written before", "").await;
    let mine = s
        .discord
        .wait_for_message(c.general, WAIT, |m| m.content == "written before")
        .await;
    let theirs = s.discord.post(c.bob, c.general, "bob before");
    let shown = expect_from(&mut s.alice, c.general, "Bobby", "bob before").await;

    // A new Estuary process on the same store; the old bot disconnects.
    s.estuary.take().unwrap().stop().await.unwrap();
    s.discord
        .wait_until(WAIT, "the old bot gone", |st| {
            st.sessions.values().all(|x| x.live.is_none())
        })
        .await;
    let gateway = discord_gateway(GW, &s.discord, TOKEN);
    s.estuary = Some(start_estuary(&s._prosody, &s._dir, vec![gateway]).await);
    s.alice.send(el("<presence/>")).await;
    join(&mut s.alice, c.general, "alice").await;

    // The user's correction and retraction reach the message posted before.
    send_groupchat(
        &mut s.alice,
        c.general,
        "after",
        "written before, fixed",
        "<replace xmlns='urn:xmpp:message-correct:0' id='before'/>",
    )
    .await;
    s.discord
        .wait_for_edit(mine.id, "written before, fixed", WAIT)
        .await;
    s.alice
        .send(el(&format!(
            "<message to='{}' type='groupchat' id='gone'><retract xmlns='urn:xmpp:message-retract:1' id='before'/></message>",
            room(c.general)
        )))
        .await;
    s.discord
        .wait_until(WAIT, "the delete after the restart", |st| {
            st.message(mine.id).is_some_and(|m| m.deleted)
        })
        .await;
    // Discord's edit and delete of a message relayed before reach the same stanza.
    s.discord.edit(theirs, "bob after");
    let fix = expect_from(&mut s.alice, c.general, "Bobby", "bob after").await;
    assert_eq!(
        attr(
            find_child(&fix, "replace", "urn:xmpp:message-correct:0").unwrap(),
            "id"
        ),
        world::stanza_id(&shown)
    );
    s.discord.delete(theirs);
    let shown_id = world::stanza_id(&shown);
    s.alice
        .expect(WAIT, |m| {
            find_child(m, "retract", "urn:xmpp:message-retract:1")
                .is_some_and(|r| attr(r, "id") == shown_id)
        })
        .await;
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_users_in_the_same_channel_see_each_other() {
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;
    let mut dave = another_user(&s._prosody, "dave").await;
    let occupants = join(&mut dave, c.general, "dave").await;
    let general = room(c.general);
    // dave sees alice among the occupants, and alice sees dave come in.
    assert!(
        occupants
            .iter()
            .any(|p| from(p, &format!("{general}/alice"))),
        "{:?}",
        occupants.iter().map(String::from).collect::<Vec<_>>()
    );
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{general}/dave"))
        })
        .await;

    // What alice writes reaches Discord once and dave once; alice only by reflection.
    send_groupchat(&mut s.alice, c.general, "h1", "hello dave", "").await;
    let posted = s
        .discord
        .wait_for_message(c.general, WAIT, |m| m.content == "hello dave")
        .await;
    let seen = expect_from(&mut dave, c.general, "alice", "hello dave").await;
    let reflected = s.alice.expect(WAIT, |m| attr(m, "id") == "h1").await;
    // One stanza-id for both, whichever of them the gateway heard of first.
    assert_eq!(world::stanza_id(&reflected), world::stanza_id(&seen));
    // Her correction reaches dave as a correction of what he saw.
    send_groupchat(
        &mut s.alice,
        c.general,
        "h2",
        "hello, dave",
        "<replace xmlns='urn:xmpp:message-correct:0' id='h1'/>",
    )
    .await;
    let fix = expect_from(&mut dave, c.general, "alice", "hello, dave").await;
    assert_eq!(
        attr(
            find_child(&fix, "replace", "urn:xmpp:message-correct:0").unwrap(),
            "id"
        ),
        world::stanza_id(&seen)
    );
    s.discord
        .wait_for_edit(posted.id, "hello, dave", WAIT)
        .await;
    // Nothing of hers came back to alice from Discord.
    while let Some(stray) = s.alice.recv(Duration::from_millis(500)).await {
        assert!(
            body(&stray).is_none() || attr(&stray, "id").starts_with('h'),
            "{}",
            String::from(&stray)
        );
    }

    // Both react with the same emoji: one Discord reaction, kept until both take it back.
    let hello = s.discord.post(c.bob, c.general, "react to me");
    let shown = expect_from(&mut dave, c.general, "Bobby", "react to me").await;
    let target = world::stanza_id(&shown);
    let react = |id: &str, emojis: &str| {
        el(&format!(
            "<message to='{general}' type='groupchat' id='{id}'>\
             <reactions xmlns='urn:xmpp:reactions:0' id='{target}'>{emojis}</reactions></message>"
        ))
    };
    let bot = s.discord.bot_id();
    s.alice.send(react("ra", "<reaction>👍</reaction>")).await;
    dave.send(react("rd", "<reaction>👍</reaction>")).await;
    s.discord
        .wait_until(WAIT, "the bot's reaction", |st| {
            st.reactions.contains(&(hello, bot, "👍".to_owned()))
        })
        .await;
    dave.expect(WAIT, |m| attr(m, "id") == "rd").await;
    s.alice.send(react("ra2", "")).await;
    s.alice.expect(WAIT, |m| attr(m, "id") == "ra2").await;
    assert_eq!(s.discord.reactions_of(bot, hello), vec!["👍"]);
    dave.send(react("rd2", "")).await;
    s.discord
        .wait_until(WAIT, "the reaction taken back", |st| {
            !st.reactions.contains(&(hello, bot, "👍".to_owned()))
        })
        .await;

    // A nick a Discord member has is taken: the gateway assigns another (210).
    s.alice
        .send(el(&format!(
            "<presence to='{}/Bobby'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
            room(c.random)
        )))
        .await;
    let own = s
        .alice
        .expect(WAIT, |p| {
            p.name() == "presence" && from(p, &format!("{}/Bobby (xmpp)", room(c.random)))
        })
        .await;
    let own = String::from(&own);
    assert!(
        own.contains("code='110'") && own.contains("code='210'"),
        "{own}"
    );

    // dave leaving is seen by alice.
    dave.send(el(&format!(
        "<presence to='{general}/dave' type='unavailable'/>"
    )))
    .await;
    s.alice
        .expect(WAIT, |p| {
            p.name() == "presence"
                && from(p, &format!("{general}/dave"))
                && attr(p, "type") == "unavailable"
        })
        .await;
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_arrive_as_oob_links() {
    const OOB: &str = "jabber:x:oob";
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;
    let url = "https://cdn.discordapp.com/attachments/1/2/cat.png";

    // A file alone: the body is the link itself, as clients show inline.
    s.discord
        .post_with_file(c.bob, c.general, "", ("cat.png", url));
    let alone = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && find_child(m, "x", OOB).is_some()
        })
        .await;
    assert_eq!(body(&alone).as_deref(), Some(url));
    let x = find_child(&alone, "x", OOB).unwrap();
    assert_eq!(
        x.get_child("url", OOB).map(Element::text).as_deref(),
        Some(url)
    );
    assert_eq!(
        x.get_child("desc", OOB).map(Element::text).as_deref(),
        Some("cat.png")
    );

    // With text: the text, then the link on its own line.
    s.discord
        .post_with_file(c.bob, c.general, "look", ("cat.png", url));
    let with_text = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message"
                && find_child(m, "x", OOB).is_some()
                && body(m).is_some_and(|b| b.starts_with("look"))
        })
        .await;
    assert_eq!(body(&with_text), Some(format!("look\n{url}")));

    // From XMPP, an OOB link reaches Discord as a link (Discord embeds it),
    // also when the client put only the link in the OOB element.
    s.alice
        .send(el(&format!(
            "<message to='{}' type='groupchat'><body>a dog</body>\
             <x xmlns='{OOB}'><url>https://upload.localhost/dog.jpg</url></x></message>",
            room(c.general)
        )))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !s
        .discord
        .messages_in(c.general)
        .iter()
        .any(|m| m.content == "a dog\nhttps://upload.localhost/dog.jpg")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link never reached Discord"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_vcard_gives_its_discord_names() {
    let mut s = setup().await;
    let c = s.c;
    let card = s
        .alice
        .iq(
            &format!("{}@{GW}", c.bob),
            "get",
            el("<vCard xmlns='vcard-temp'/>"),
        )
        .await;
    assert_eq!(attr(&card, "type"), "result", "{}", String::from(&card));
    let vcard = find_child(&card, "vCard", "vcard-temp").unwrap();
    let field = |name: &str| vcard.get_child(name, "vcard-temp").map(Element::text);
    assert_eq!(field("FN").as_deref(), Some("Robert"));
    assert_eq!(field("NICKNAME").as_deref(), Some("bob"));

    // Someone Discord does not know is item-not-found, not silence.
    let unknown = s
        .alice
        .iq(
            &format!("424242424242@{GW}"),
            "get",
            el("<vCard xmlns='vcard-temp'/>"),
        )
        .await;
    assert_eq!(
        attr(&unknown, "type"),
        "error",
        "{}",
        String::from(&unknown)
    );
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_from_xmpp_is_for_the_gateways_moderators_only() {
    let mut s = setup_configured(
        |_| {},
        |options| options["moderators"] = serde_json::json!(["alice@localhost"]),
    )
    .await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;
    let mut dave = another_user(&s._prosody, "dave").await;
    let occupants = join(&mut dave, c.general, "dave").await;
    let alice = occupants
        .iter()
        .find(|p| from(p, &format!("{}/alice", room(c.general))))
        .expect("alice is in the room");
    assert_eq!(
        muc_item(alice),
        ("admin".to_owned(), "moderator".to_owned())
    );

    let posted = s.discord.post(c.bob, c.general, "spam");
    let seen_by = |m: &Element| body(m).as_deref() == Some("spam");
    let dave_copy = dave.expect(WAIT, seen_by).await;
    let alice_copy = s.alice.expect(WAIT, seen_by).await;

    // dave is no moderator of the gateway: the bot's rights are not his.
    let refused = dave
        .iq(
            &room(c.general),
            "set",
            moderation(&world::stanza_id(&dave_copy)),
        )
        .await;
    assert_refused(&refused, "forbidden");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.discord.message(posted).is_some_and(|m| !m.deleted),
        "the message was deleted"
    );

    // alice is: the bot deletes it, and dave sees it retracted.
    let done = s
        .alice
        .iq(
            &room(c.general),
            "set",
            moderation(&world::stanza_id(&alice_copy)),
        )
        .await;
    assert_eq!(attr(&done, "type"), "result", "{}", String::from(&done));
    s.discord
        .wait_until(WAIT, "the message deleted", |st| {
            st.message(posted).is_some_and(|m| m.deleted)
        })
        .await;
    dave.expect(WAIT, |m| {
        find_child(m, "retract", "urn:xmpp:message-retract:1")
            .is_some_and(|r| r.attr("id") == Some(world::stanza_id(&dave_copy).as_str()))
    })
    .await;
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_xmpp_is_uploaded_to_discord() {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n not really an image, but bytes to compare";
    let mut s = setup().await;
    let c = s.c;
    join(&mut s.alice, c.general, "alice").await;
    let url = world::file_server::serve(PNG, "image/png").await;

    // What HTTP-upload clients send: the URL as body and as OOB.
    s.alice
        .send(el(&format!(
            "<message to='{}' type='groupchat' id='f1'><body>{url}</body>\
             <x xmlns='jabber:x:oob'><url>{url}</url></x></message>",
            room(c.general)
        )))
        .await;
    let posted = s
        .discord
        .wait_for_message(c.general, WAIT, |m| !m.files.is_empty())
        .await;
    assert_eq!(posted.content, "", "the file replaces its link");
    assert_eq!(posted.author_name, "alice", "posted under her nick");
    assert_eq!(posted.files[0].name, "cat.png");
    assert_eq!(posted.files[0].bytes, PNG);
    // Her own client sees what she sent, under her id.
    let reflected = s.alice.expect(WAIT, |m| attr(m, "id") == "f1").await;
    assert_eq!(body(&reflected).as_deref(), Some(url.as_str()));

    // A link that cannot be fetched goes as the link.
    let gone = url.replace("cat.png", "gone.png");
    s.alice
        .send(el(&format!(
            "<message to='{}' type='groupchat'><body>{gone}</body>\
             <x xmlns='jabber:x:oob'><url>{gone}</url></x></message>",
            room(c.general)
        )))
        .await;
    let link = s
        .discord
        .wait_for_message(c.general, WAIT, |m| m.content == gone)
        .await;
    assert!(link.files.is_empty());
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_bot_carries_their_direct_messages() {
    let mut s = setup().await;
    let c = s.c;
    let own_bot = s.discord.add_bot("alices-bot", "alice-token");

    // A token Discord refuses is a clear error, and the registration stays as it was.
    let refused = register_own_bot(&mut s.alice, "wrong-token").await;
    assert_refused(&refused, "not-authorized");
    let reply = register_own_bot(&mut s.alice, "alice-token").await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));

    // Her chat to bob is a DM from her own bot, without her name in front.
    // (The new login is done before her next stanza is handled.)
    let bob = format!("{}@{GW}", c.bob);
    s.alice
        .send(el(&format!(
            "<message to='{bob}' type='chat' id='own1'><body>psst</body></message>"
        )))
        .await;
    s.discord
        .wait_until(WAIT, "a DM channel of her bot", |st| {
            st.messages.iter().any(|m| m.author_id == own_bot)
        })
        .await;
    let dm_channel = s
        .discord
        .dm_channel_between(own_bot, c.bob)
        .expect("a DM channel of her bot");
    let dm = s.discord.wait_for_message(dm_channel, WAIT, |_| true).await;
    assert_eq!(dm.content, "psst");
    assert_eq!(dm.author_id, own_bot);
    assert_eq!(
        s.discord.dm_channel_of(c.bob),
        None,
        "not the gateway's bot"
    );

    // A correction edits it through her bot.
    s.alice
        .send(el(&format!(
            "<message to='{bob}' type='chat' id='own2'><body>psst!</body>\
             <replace xmlns='urn:xmpp:message-correct:0' id='own1'/></message>"
        )))
        .await;
    s.discord.wait_for_edit(dm.id, "psst!", WAIT).await;

    // Her XMPP presence is her bot's: dnd with her status as its custom
    // status. (Directed: she has not approved the gateway's subscription.)
    s.alice
        .send(el(&format!(
            "<presence to='{GW}'><show>dnd</show><status>in a meeting</status></presence>"
        )))
        .await;
    s.discord
        .wait_until(WAIT, "her bot's presence", |st| {
            st.presence_updates.iter().any(|(bot, d)| {
                *bot == own_bot
                    && d["status"] == "dnd"
                    && d["activities"][0]["type"] == 4
                    && d["activities"][0]["state"] == "in a meeting"
            })
        })
        .await;

    // What bob writes to her bot comes from bob's JID.
    s.discord.dm_bot_as(own_bot, c.bob, "what?");
    let answer = s
        .alice
        .expect(WAIT, |m| {
            m.name() == "message" && from(m, &bob) && body(m).as_deref() == Some("what?")
        })
        .await;
    assert_eq!(attr(&answer, "type"), "chat");
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_posts_show_the_users_vcard_avatar() {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\nalice avatar";
    const PNG_BASE64: &str = "iVBORw0KGgphbGljZSBhdmF0YXI=";
    let port = world::free_port();
    let mut s = setup_configured(
        |_| {},
        |options| {
            options["media_listen"] = serde_json::json!(format!("127.0.0.1:{port}"));
            options["media_url"] = serde_json::json!(format!("http://127.0.0.1:{port}/"));
        },
    )
    .await;
    let c = s.c;
    let photo = el(&format!(
        "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>\
         <BINVAL>{PNG_BASE64}</BINVAL></PHOTO></vCard>"
    ));
    let stored = s.alice.iq("alice@localhost", "set", photo).await;
    assert_eq!(attr(&stored, "type"), "result", "{}", String::from(&stored));
    // Registering again logs her in again, which reads her vCard.
    let reply = register(&mut s.alice, GW).await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));

    join(&mut s.alice, c.general, "alice").await;
    send_groupchat(&mut s.alice, c.general, "a1", "look at me", "").await;
    let posted = s
        .discord
        .wait_for_message(c.general, WAIT, |m| m.content == "look at me")
        .await;
    let url = posted
        .avatar_url
        .expect("an avatar URL on the webhook post");
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/avatar/")),
        "{url}"
    );
    let served = reqwest::get(&url).await.unwrap();
    assert_eq!(
        served.headers()["content-type"].to_str().unwrap(),
        "image/png"
    );
    assert_eq!(served.bytes().await.unwrap().as_ref(), PNG);
    let unknown = reqwest::get(format!("http://127.0.0.1:{port}/avatar/0000"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    stop(s).await;
}
