//! The Discord API double against serenity itself: if serenity's own client
//! connects, deserialises READY and GUILD_CREATE, receives dispatches, and
//! its REST calls work, the double is faithful enough for the bridge tests.

mod world;

use std::time::Duration;

use estuary_discord::serenity;
use serenity::all::{
    ChannelId, Context, CreateMessage, CreateWebhook, EditMessage, EventHandler, ExecuteWebhook,
    GatewayIntents, Guild, GuildId, HttpBuilder, Message, MessageId, MessageUpdateEvent, Presence,
    Reaction, ReactionType, Ready, ResumedEvent, TypingStartEvent, UserId,
};
use tokio::sync::mpsc;
use world::discord::DiscordDouble;

const TOKEN: &str = "double-bot-token";
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
        let _ = self.0.send(format!(
            "MESSAGE {} from={} webhook={}{reply}",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serenity_connects_to_the_double_and_sees_everything() {
    estuary_discord::ensure_crypto_provider();
    let (double, c) = DiscordDouble::start_with_community(TOKEN).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut client = serenity::all::ClientBuilder::new_with_http(http(&double, TOKEN), intents())
        .event_handler(Recorder(tx))
        .await
        .expect("client");
    let shards = client.shard_manager.clone();
    let runner = tokio::spawn(async move { client.start().await });
    let events = &mut events;

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

    shards.shutdown_all().await;
    let _ = tokio::time::timeout(WAIT, runner).await;
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
