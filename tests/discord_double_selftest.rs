//! The Discord API double against serenity itself: if serenity's own client
//! connects, deserialises READY and GUILD_CREATE, receives dispatches, and
//! its REST calls work, the double is faithful enough for the bridge tests.

mod world;

use std::sync::Arc;
use std::time::Duration;

use estuary_discord::serenity;
use serde_json::Value;
use serenity::all::{
    ChannelId, Context, CreateAttachment, CreateMessage, CreateWebhook, EditMessage, EventHandler,
    ExecuteWebhook, GatewayIntents, Guild, GuildId, HttpBuilder, Message, MessageId,
    MessageUpdateEvent, Presence, Reaction, ReactionType, Ready, ResumedEvent, ShardManager,
    TypingStartEvent, UserId,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use world::discord::{DiscordDouble, UploadRec};

const TOKEN: &str = "double-bot-token";
/// A user's personal bot, registered beside the gateway's.
const PERSONAL_TOKEN: &str = "personal-bot-token";
const WAIT: Duration = Duration::from_secs(10);

/// Every event the client sees, as one line of text, in order.
struct Recorder(mpsc::UnboundedSender<String>);

#[serenity::async_trait]
impl EventHandler for Recorder {
    async fn ready(&self, _: Context, ready: Ready) {
        let _ = self.0.send(format!(
            "READY {} guilds={}",
            ready.user.name,
            ready.guilds.len()
        ));
    }
    async fn guild_create(&self, _: Context, guild: Guild, _: Option<bool>) {
        let mut channels: Vec<_> = guild.channels.values().map(|c| c.name.clone()).collect();
        channels.sort();
        let mut members: Vec<_> = guild
            .members
            .values()
            .map(|m| m.display_name().to_owned())
            .collect();
        members.sort();
        let _ = self.0.send(format!(
            "GUILD_CREATE {} channels={} members={}",
            guild.name,
            channels.join(","),
            members.join(",")
        ));
    }
    async fn message(&self, _: Context, m: Message) {
        let reply = m
            .message_reference
            .and_then(|r| r.message_id)
            .map(|id| format!(" reply_to={id}"))
            .unwrap_or_default();
        let files: Vec<_> = m.attachments.iter().map(|a| a.filename.as_str()).collect();
        let files = if files.is_empty() {
            String::new()
        } else {
            format!(" files={}", files.join(","))
        };
        let _ = self.0.send(format!(
            "MESSAGE {} from={} webhook={}{reply}{files}",
            m.content,
            m.author.name,
            m.webhook_id.is_some()
        ));
    }
    async fn message_update(
        &self,
        _: Context,
        _: Option<Message>,
        _: Option<Message>,
        e: MessageUpdateEvent,
    ) {
        let _ = self
            .0
            .send(format!("UPDATE {} {}", e.id, e.content.unwrap_or_default()));
    }
    async fn message_delete(&self, _: Context, _: ChannelId, id: MessageId, _: Option<GuildId>) {
        let _ = self.0.send(format!("DELETE {id}"));
    }
    async fn reaction_add(&self, _: Context, r: Reaction) {
        let _ = self.0.send(format!("REACT+ {} {}", r.message_id, r.emoji));
    }
    async fn reaction_remove(&self, _: Context, r: Reaction) {
        let _ = self.0.send(format!("REACT- {} {}", r.message_id, r.emoji));
    }
    async fn typing_start(&self, _: Context, e: TypingStartEvent) {
        let _ = self.0.send(format!("TYPING {}", e.user_id));
    }
    async fn presence_update(&self, _: Context, p: Presence) {
        let _ = self
            .0
            .send(format!("PRESENCE {} {}", p.user.id, p.status.name()));
    }
    async fn resume(&self, _: Context, _: ResumedEvent) {
        let _ = self.0.send("RESUMED".to_owned());
    }
}

async fn next_matching(rx: &mut mpsc::UnboundedReceiver<String>, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) if line.starts_with(prefix) => return line,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the client stopped before '{prefix}'"),
            Err(_) => panic!("no '{prefix}' within {WAIT:?}"),
        }
    }
}

fn http(double: &DiscordDouble, token: &str) -> serenity::http::Http {
    HttpBuilder::new(token)
        .proxy(double.base_url())
        .ratelimiter_disabled(true)
        .build()
}

fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::GUILD_MEMBERS
        | GatewayIntents::GUILD_PRESENCES
        | GatewayIntents::GUILD_MESSAGE_REACTIONS
        | GatewayIntents::GUILD_MESSAGE_TYPING
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// A serenity client on the double's gateway, recording what it sees.
struct Client {
    events: mpsc::UnboundedReceiver<String>,
    shards: Arc<ShardManager>,
    runner: JoinHandle<serenity::Result<()>>,
}

impl Client {
    async fn start(double: &DiscordDouble, token: &str) -> Client {
        let (tx, events) = mpsc::unbounded_channel();
        let mut client =
            serenity::all::ClientBuilder::new_with_http(http(double, token), intents())
                .event_handler(Recorder(tx))
                .await
                .expect("client");
        let shards = client.shard_manager.clone();
        let runner = tokio::spawn(async move { client.start().await });
        Client {
            events,
            shards,
            runner,
        }
    }

    async fn stop(self) {
        self.shards.shutdown_all().await;
        let _ = tokio::time::timeout(WAIT, self.runner).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serenity_connects_to_the_double_and_sees_everything() {
    estuary_discord::ensure_crypto_provider();
    let (double, c) = DiscordDouble::start_with_community(TOKEN).await;
    let mut client = Client::start(&double, TOKEN).await;
    let events = &mut client.events;

    // READY and GUILD_CREATE with the channels the bot may see and every member's display name.
    let ready = next_matching(events, "READY").await;
    assert_eq!(ready, "READY estuary-bot guilds=1");
    let guild = next_matching(events, "GUILD_CREATE").await;
    assert_eq!(
        guild,
        "GUILD_CREATE Estuary Test Guild channels=general,random \
         members=Bobby,Carol C,Olivia,estuary-bot"
    );

    // A user posts; a user replies.
    let hello = double.post(c.bob, c.general, "hello from bob");
    assert_eq!(
        next_matching(events, "MESSAGE").await,
        "MESSAGE hello from bob from=bob webhook=false"
    );
    double.post_reply(c.carol, c.general, "answer", Some(hello));
    assert_eq!(
        next_matching(events, "MESSAGE").await,
        format!("MESSAGE answer from=carol webhook=false reply_to={hello}")
    );

    // REST through the proxy: the bot posts, edits, reacts and types, and the gateway echoes.
    let http = http(&double, TOKEN);
    let me = http.get_current_user().await.expect("users/@me");
    assert_eq!(me.id, UserId::new(double.bot_id()));
    let channel = ChannelId::new(c.general);
    let posted = channel
        .send_message(&http, CreateMessage::new().content("bot says hi"))
        .await
        .expect("create message");
    assert_eq!(
        next_matching(events, "MESSAGE").await,
        "MESSAGE bot says hi from=estuary-bot webhook=false"
    );
    channel
        .edit_message(&http, posted.id, EditMessage::new().content("bot said hi"))
        .await
        .expect("edit");
    assert_eq!(
        next_matching(events, "UPDATE").await,
        format!("UPDATE {} bot said hi", posted.id)
    );
    channel
        .create_reaction(&http, hello, ReactionType::Unicode("👍".into()))
        .await
        .expect("react");
    assert_eq!(
        next_matching(events, "REACT+").await,
        format!("REACT+ {hello} 👍")
    );
    assert_eq!(double.reactions_of(double.bot_id(), hello), vec!["👍"]);
    channel.broadcast_typing(&http).await.expect("typing");
    assert_eq!(double.lock().bot_typing, vec![c.general]);
    channel
        .delete_message(&http, posted.id)
        .await
        .expect("delete");
    assert_eq!(
        next_matching(events, "DELETE").await,
        format!("DELETE {}", posted.id)
    );

    // Webhooks: create, list, execute with wait=true; the message carries the webhook id.
    let hook = channel
        .create_webhook(&http, CreateWebhook::new("Estuary"))
        .await
        .expect("create webhook");
    assert_eq!(channel.webhooks(&http).await.expect("list").len(), 1);
    let via_hook = hook
        .execute(
            &http,
            true,
            ExecuteWebhook::new().content("from xmpp").username("alice"),
        )
        .await
        .expect("execute")
        .expect("wait=true returns the message");
    assert_eq!(via_hook.webhook_id, Some(hook.id));
    assert_eq!(via_hook.author.name, "alice");
    assert_eq!(
        next_matching(events, "MESSAGE").await,
        "MESSAGE from xmpp from=alice webhook=true"
    );

    // Guild REST: channels and members deserialise.
    let guild_id = GuildId::new(c.guild);
    assert_eq!(
        http.get_channels(guild_id).await.expect("channels").len(),
        2
    );
    let members = http
        .get_guild_members(guild_id, Some(100), None)
        .await
        .expect("members");
    assert_eq!(members.len(), 4);

    // Events from users: edits, deletes, reactions, typing, presence.
    double.edit(hello, "hello, edited");
    assert_eq!(
        next_matching(events, "UPDATE").await,
        format!("UPDATE {hello} hello, edited")
    );
    double.react(c.carol, hello, "🎉");
    assert_eq!(
        next_matching(events, "REACT+").await,
        format!("REACT+ {hello} 🎉")
    );
    double.unreact(c.carol, hello, "🎉");
    assert_eq!(
        next_matching(events, "REACT-").await,
        format!("REACT- {hello} 🎉")
    );
    double.typing(c.bob, c.general);
    assert_eq!(
        next_matching(events, "TYPING").await,
        format!("TYPING {}", c.bob)
    );
    double.set_presence(c.bob, c.guild, "idle");
    assert_eq!(
        next_matching(events, "PRESENCE").await,
        format!("PRESENCE {} idle", c.bob)
    );
    double.delete(hello);
    assert_eq!(
        next_matching(events, "DELETE").await,
        format!("DELETE {hello}")
    );

    // Faults. A dropped websocket: serenity resumes and gets what was said meanwhile.
    assert_eq!(double.drop_gateway(), 1);
    double.post(c.bob, c.random, "said while you were away");
    // serenity runs each handler on its own task, so the replayed message and
    // RESUMED may be seen in either order.
    let mut seen = vec![
        next_matching(events, "").await,
        next_matching(events, "").await,
    ];
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "MESSAGE said while you were away from=bob webhook=false".to_owned(),
            "RESUMED".to_owned()
        ]
    );
    assert_eq!(double.resume_count(), 1);
    assert_eq!(double.identify_count(), 1);

    // INVALID_SESSION: serenity identifies again and gets a fresh READY.
    assert_eq!(double.invalidate_sessions(), 1);
    next_matching(events, "READY").await;
    assert_eq!(double.identify_count(), 2);

    // Heartbeats are acknowledged (the interval is 2 s).
    double
        .wait_until(WAIT, "a heartbeat", |s| s.heartbeats > 0)
        .await;

    // 429 with retry-after: without serenity's rate limiter the error surfaces.
    double.rate_limit_next(1, Duration::from_millis(100));
    let limited = channel
        .send_message(&http, CreateMessage::new().content("too fast"))
        .await
        .expect_err("a 429");
    assert!(
        limited.to_string().contains("429") || format!("{limited:?}").contains("429"),
        "{limited:?}"
    );
    assert_eq!(double.rate_limited_count(), 1);
    channel
        .send_message(&http, CreateMessage::new().content("later"))
        .await
        .expect("after the 429");

    // An invalid token: 401 on REST, 4004 on the gateway.
    let bad = http_with_bad_token(&double);
    let refused = bad.get_current_user().await.expect_err("401");
    assert!(format!("{refused:?}").contains("401"), "{refused:?}");

    client.stop().await;
}

fn http_with_bad_token(double: &DiscordDouble) -> serenity::http::Http {
    http(double, "not-the-token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_token_is_closed_with_4004() {
    estuary_discord::ensure_crypto_provider();
    let (double, _) = DiscordDouble::start_with_community(TOKEN).await;
    let (tx, _events) = mpsc::unbounded_channel();
    let mut client =
        serenity::all::ClientBuilder::new_with_http(http(&double, "wrong-token"), intents())
            .event_handler(Recorder(tx))
            .await
            .expect("client");
    let result = tokio::time::timeout(WAIT, client.start())
        .await
        .expect("the client gives up");
    let error = result.expect_err("an authentication failure");
    assert!(
        format!("{error:?}").contains("InvalidAuthentication"),
        "{error:?}"
    );
    assert_eq!(double.identify_count(), 0);
}

/// The content of every MESSAGE_CREATE the double dispatched to `bot`'s
/// gateway sessions: what Discord routed to that bot, whatever serenity did with it.
fn messages_dispatched_to(double: &DiscordDouble, bot: u64) -> Vec<String> {
    let state = double.lock();
    state
        .sessions
        .values()
        .filter(|session| session.bot == bot)
        .flat_map(|session| &session.sent)
        .filter_map(|(_, frame)| {
            let frame: Value = serde_json::from_str(frame).expect("a JSON frame");
            let content = frame["d"]["content"].as_str()?.to_owned();
            (frame["t"] == "MESSAGE_CREATE").then_some(content)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_bot_has_its_own_identity_dms_and_events() {
    estuary_discord::ensure_crypto_provider();
    let (double, c) = DiscordDouble::start_with_community(TOKEN).await;
    let personal = double.add_bot("carols-bot", PERSONAL_TOKEN);
    let mut gateway_client = Client::start(&double, TOKEN).await;
    let mut personal_client = Client::start(&double, PERSONAL_TOKEN).await;
    let (gateway_events, personal_events) =
        (&mut gateway_client.events, &mut personal_client.events);

    // Each session is told which bot it is, with only that bot's guilds.
    assert_eq!(
        next_matching(gateway_events, "READY").await,
        "READY estuary-bot guilds=1"
    );
    next_matching(gateway_events, "GUILD_CREATE").await;
    assert_eq!(
        next_matching(personal_events, "READY").await,
        "READY carols-bot guilds=0"
    );

    // REST knows the personal bot by its token.
    let gateway_http = http(&double, TOKEN);
    let personal_http = http(&double, PERSONAL_TOKEN);
    let me = personal_http.get_current_user().await.expect("users/@me");
    assert_eq!(
        (me.id.get(), me.name.as_str(), me.bot),
        (personal, "carols-bot", true)
    );

    // Carol has one DM channel with each bot.
    let dm = UserId::new(c.carol)
        .create_dm_channel(&personal_http)
        .await
        .expect("the personal bot's DM channel");
    let gateway_dm = UserId::new(c.carol)
        .create_dm_channel(&gateway_http)
        .await
        .expect("the gateway bot's DM channel");
    assert_ne!(dm.id, gateway_dm.id);
    assert_eq!(
        double.dm_channel_between(personal, c.carol),
        Some(dm.id.get())
    );
    assert_eq!(double.dm_channel_of(c.carol), Some(gateway_dm.id.get()));

    // The personal bot posts, types and reacts in its DM; the gateway bot may not touch it.
    let posted = dm
        .id
        .send_message(&personal_http, CreateMessage::new().content("hi carol"))
        .await
        .expect("a DM from the personal bot");
    assert_eq!(
        double.message(posted.id.get()).expect("stored").author_id,
        personal
    );
    dm.id
        .broadcast_typing(&personal_http)
        .await
        .expect("typing");
    let from_carol = double.dm_bot_as(personal, c.carol, "hello carols-bot");
    dm.id
        .create_reaction(
            &personal_http,
            from_carol,
            ReactionType::Unicode("👋".into()),
        )
        .await
        .expect("react");
    assert_eq!(double.reactions_of(personal, from_carol), vec!["👋"]);
    {
        let state = double.lock();
        assert_eq!(state.bots_typing, vec![(personal, dm.id.get())]);
        assert!(state.bot_typing.is_empty());
    }
    let intrusion = dm
        .id
        .send_message(&gateway_http, CreateMessage::new().content("not mine"))
        .await
        .expect_err("another bot's DM");
    assert!(format!("{intrusion:?}").contains("50001"), "{intrusion:?}");

    // Carol's DM reaches only the personal bot; guild chatter only the gateway bot.
    double.post(c.bob, c.general, "guild chatter");
    assert_eq!(
        next_matching(personal_events, "MESSAGE hello").await,
        "MESSAGE hello carols-bot from=carol webhook=false"
    );
    next_matching(gateway_events, "MESSAGE guild chatter").await;
    assert_eq!(
        messages_dispatched_to(&double, personal),
        vec!["hi carol", "hello carols-bot"]
    );
    assert_eq!(
        messages_dispatched_to(&double, double.bot_id()),
        vec!["guild chatter"]
    );

    // Outside the guild the personal bot gets Missing Access, as on Discord.
    let general = ChannelId::new(c.general);
    let outsider = general
        .send_message(&personal_http, CreateMessage::new().content("let me in"))
        .await
        .expect_err("not a member");
    assert!(format!("{outsider:?}").contains("50001"), "{outsider:?}");
    let guild = GuildId::new(c.guild);
    let listing = personal_http
        .get_channels(guild)
        .await
        .expect_err("not a member");
    assert!(format!("{listing:?}").contains("50001"), "{listing:?}");

    // Once it joins, it is sent the guild and its messages, and may post there.
    double.member_joins(c.guild, personal, None);
    assert!(next_matching(personal_events, "GUILD_CREATE")
        .await
        .contains("carols-bot"));
    double.post(c.bob, c.general, "both of you");
    next_matching(personal_events, "MESSAGE both of you").await;
    next_matching(gateway_events, "MESSAGE both of you").await;
    general
        .send_message(&personal_http, CreateMessage::new().content("now I am in"))
        .await
        .expect("a member posts");

    gateway_client.stop().await;
    personal_client.stop().await;
}

/// GET a URL the double serves: its status, content type and bytes.
async fn fetch(url: &str) -> (u16, String, Vec<u8>) {
    let response = reqwest::get(url).await.expect("the double answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("a body").to_vec();
    (status, content_type, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_files_are_stored_and_served() {
    estuary_discord::ensure_crypto_provider();
    let (double, c) = DiscordDouble::start_with_community(TOKEN).await;
    let mut client = Client::start(&double, TOKEN).await;
    let events = &mut client.events;
    next_matching(events, "GUILD_CREATE").await;
    let http = http(&double, TOKEN);
    let channel = ChannelId::new(c.general);

    // The bot uploads a file with its message (multipart, as serenity sends it).
    let png = vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3];
    let posted = channel
        .send_message(
            &http,
            CreateMessage::new()
                .content("a cat")
                .add_file(CreateAttachment::bytes(png.clone(), "cat.png")),
        )
        .await
        .expect("an upload");
    let attachment = &posted.attachments[0];
    assert_eq!(
        (attachment.filename.as_str(), attachment.size as usize),
        ("cat.png", png.len())
    );
    assert_eq!(attachment.content_type.as_deref(), Some("image/png"));
    assert_eq!(
        next_matching(events, "MESSAGE a cat").await,
        "MESSAGE a cat from=estuary-bot webhook=false files=cat.png"
    );
    let stored = double.message(posted.id.get()).expect("stored");
    assert_eq!(
        stored.files,
        vec![UploadRec {
            name: "cat.png".to_owned(),
            content_type: "image/png".to_owned(),
            bytes: png.clone(),
        }]
    );
    assert_eq!(
        stored.attachments,
        vec![("cat.png".to_owned(), attachment.url.clone())]
    );
    assert_eq!(
        fetch(&attachment.url).await,
        (200, "image/png".to_owned(), png)
    );

    // A webhook posts a file alone: no content is needed when there is a file.
    let hook = channel
        .create_webhook(&http, CreateWebhook::new("Estuary"))
        .await
        .expect("create webhook");
    let notes = b"minutes of the meeting".to_vec();
    let via_hook = hook
        .execute(
            &http,
            true,
            ExecuteWebhook::new()
                .username("alice")
                .add_file(CreateAttachment::bytes(notes.clone(), "notes v1.txt")),
        )
        .await
        .expect("execute with a file")
        .expect("wait=true returns the message");
    assert_eq!(via_hook.content, "");
    assert_eq!(
        next_matching(events, "MESSAGE  from=alice").await,
        "MESSAGE  from=alice webhook=true files=notes v1.txt"
    );
    let stored = double.message(via_hook.id.get()).expect("stored");
    assert_eq!(stored.files[0].bytes, notes);
    let url = &via_hook.attachments[0].url;
    assert!(url.ends_with("/notes%20v1.txt"), "{url}");
    assert_eq!(fetch(url).await, (200, "text/plain".to_owned(), notes));

    // Without content or a file Discord refuses the message; unknown files are 404.
    let empty = channel
        .send_message(&http, CreateMessage::new())
        .await
        .expect_err("an empty message");
    assert!(format!("{empty:?}").contains("50006"), "{empty:?}");
    let missing = url.replace("notes%20v1.txt", "other.txt");
    assert_eq!(fetch(&missing).await.0, 404);

    client.stop().await;
}
