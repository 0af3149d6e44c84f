//! Posting on Discord for XMPP users: through a channel webhook under the
//! user's nick, so that it looks native, or by the bot as `**nick**: text`
//! when the bot may not manage webhooks. Webhooks are found or created
//! once per channel and reused (Discord allows 10 per channel), and made
//! again when someone deletes them.
//!
//! Every call retries on 429: serenity's rate limiter waits out most of
//! them in production, and this catches the rest (and all of them when the
//! limiter is off, against the test double), so a storm delays messages
//! instead of losing them.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serenity::all::{
    ChannelId, CreateAttachment, CreateMessage, CreateWebhook, EditMessage, EditWebhookMessage,
    ExecuteWebhook, MessageId, UserId, Webhook,
};
use tracing::{debug, info, warn};

use crate::bot::Bot;
use crate::error::{DiscordError, UNKNOWN_WEBHOOK};
use crate::text::{self, MAX_MESSAGE_CHARS};

/// Discord's limit on webhooks per channel.
const MAX_WEBHOOKS_PER_CHANNEL: usize = 10;
/// How long to post as the bot in a channel where webhooks were refused,
/// before asking again (someone may grant the permission).
const WEBHOOKS_RECHECK: Duration = Duration::from_secs(600);
// serenity does not hand out the 429's retry-after when its own limiter is
// off, so waits double from 100 ms to 2 s: about a minute in all before the
// message is given back to the core, which queues it as undeliverable-for-now.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
const RETRY_ATTEMPTS: u32 = 32;

/// What is posted for an XMPP user.
#[derive(Debug, Default)]
pub struct Post {
    pub text: String,
    /// A file fetched from the user's link, sent with the first piece.
    pub file: Option<CreateAttachment>,
    /// The message answered; a webhook cannot reply, so the bot posts it.
    pub reply_to: Option<u64>,
}

impl Post {
    /// The text in pieces under `limit` characters; one empty piece for a
    /// file without text, which Discord accepts.
    fn pieces(&self, limit: usize) -> Vec<String> {
        let mut pieces = text::split(&self.text, limit);
        if pieces.is_empty() && self.file.is_some() {
            pieces.push(String::new());
        }
        pieces
    }

    /// The file, for the first piece only.
    fn file_for(&self, first: bool) -> Option<CreateAttachment> {
        self.file.clone().filter(|_| first)
    }
}

/// How a message was posted, so edits and deletes take the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Webhook(u64),
    Bot,
}

enum Slot {
    Hook(Box<Webhook>),
    /// Webhooks cannot be used here (no permission, or the channel is full of others').
    Refused(Instant),
}

#[derive(Default)]
pub struct Poster {
    slots: tokio::sync::Mutex<HashMap<u64, Slot>>,
    own_webhooks: Mutex<HashSet<u64>>,
    sent: Mutex<HashMap<u64, Via>>,
}

impl Poster {
    pub fn is_own_webhook(&self, id: u64) -> bool {
        self.own_webhooks
            .lock()
            .expect("not poisoned")
            .contains(&id)
    }

    fn note_sent(&self, message: u64, via: Via) {
        self.sent.lock().expect("not poisoned").insert(message, via);
    }

    fn via(&self, message: u64) -> Option<Via> {
        self.sent
            .lock()
            .expect("not poisoned")
            .get(&message)
            .copied()
    }
}

/// Run a Discord call, retrying with backoff while it answers 429.
pub async fn with_retry<T, F, Fut>(action: &'static str, mut call: F) -> Result<T, DiscordError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, serenity::Error>>,
{
    let mut wait = RETRY_FIRST;
    for attempt in 1..=RETRY_ATTEMPTS {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                let e = DiscordError::from_serenity(action, e);
                if !e.is_rate_limit() {
                    return Err(e);
                }
                debug!(action, attempt, ?wait, "rate limited by Discord; waiting");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
    Err(DiscordError::RateLimited {
        action,
        attempts: RETRY_ATTEMPTS,
    })
}

/// A nick Discord accepts as a webhook username: 1 to 80 characters, and
/// never "discord" or "clyde", which Discord refuses.
fn webhook_username(nick: &str) -> String {
    let mut name: String = nick.chars().take(80).collect();
    for banned in ["discord", "clyde"] {
        // ASCII lower-casing keeps byte offsets, so `at` is valid in `name`.
        while let Some(at) = name.to_ascii_lowercase().find(banned) {
            name.replace_range(at..at + 1, "_");
        }
    }
    if name.trim().is_empty() {
        "xmpp user".to_owned()
    } else {
        name
    }
}

fn prefixed(nick: &str, text: &str) -> String {
    format!("**{nick}**: {text}")
}

impl Bot {
    /// The gateway's webhook in a channel, found or made; `None` when the
    /// bot must post itself instead.
    async fn webhook_for(&self, channel: u64) -> Result<Option<Webhook>, DiscordError> {
        let mut slots = self.poster.slots.lock().await;
        match slots.get(&channel) {
            Some(Slot::Hook(hook)) => return Ok(Some((**hook).clone())),
            Some(Slot::Refused(since)) if since.elapsed() < WEBHOOKS_RECHECK => return Ok(None),
            _ => {}
        }
        let channel_id = ChannelId::new(channel);
        let listed = with_retry("list the channel's webhooks", || {
            channel_id.webhooks(&*self.rest)
        })
        .await;
        let hooks = match listed {
            Ok(hooks) => hooks,
            Err(e) if e.status() == Some(403) => {
                info!(
                    channel,
                    "no Manage Webhooks permission here; posting as the bot with the nick in front"
                );
                slots.insert(channel, Slot::Refused(Instant::now()));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let bot = self.user_id();
        let ours = hooks.iter().find(|h| {
            h.user.as_ref().is_some_and(|u| u.id.get() == bot)
                && h.name.as_deref() == Some(self.options.webhook_name.as_str())
                && h.token.is_some()
        });
        let hook = match ours {
            Some(hook) => hook.clone(),
            None if hooks.len() >= MAX_WEBHOOKS_PER_CHANNEL => {
                warn!(channel, "the channel has Discord's maximum of 10 webhooks, none ours; posting as the bot");
                slots.insert(channel, Slot::Refused(Instant::now()));
                return Ok(None);
            }
            None => {
                let name = self.options.webhook_name.clone();
                let created = with_retry("create a webhook", || {
                    channel_id.create_webhook(&*self.rest, CreateWebhook::new(name.clone()))
                })
                .await;
                match created {
                    Ok(hook) => {
                        info!(channel, "created the gateway's webhook");
                        hook
                    }
                    Err(e) if e.status() == Some(403) => {
                        info!(channel, "no Manage Webhooks permission here; posting as the bot with the nick in front");
                        slots.insert(channel, Slot::Refused(Instant::now()));
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.poster
            .own_webhooks
            .lock()
            .expect("not poisoned")
            .insert(hook.id.get());
        slots.insert(channel, Slot::Hook(Box::new(hook.clone())));
        Ok(Some(hook))
    }

    async fn forget_webhook(&self, channel: u64) {
        self.poster.slots.lock().await.remove(&channel);
    }

    /// Post an XMPP user's message in a guild channel; long text is split
    /// at Discord's limit. Returns the id of the first piece.
    pub async fn post_in_channel(
        &self,
        channel: u64,
        account: &str,
        nick: &str,
        post: Post,
    ) -> Result<u64, DiscordError> {
        let hook = match post.reply_to {
            None => self.webhook_for(channel).await?,
            Some(_) => None,
        };
        match hook {
            Some(hook) => {
                self.post_by_webhook(channel, hook, account, nick, post)
                    .await
            }
            None => self.post_by_bot(channel, account, Some(nick), post).await,
        }
    }

    async fn post_by_webhook(
        &self,
        channel: u64,
        mut hook: Webhook,
        account: &str,
        nick: &str,
        post: Post,
    ) -> Result<u64, DiscordError> {
        let username = webhook_username(nick);
        let avatar_url = self.avatars.as_ref().and_then(|a| a.url_of(account));
        let mut first = None;
        for piece in post.pieces(MAX_MESSAGE_CHARS) {
            let file = post.file_for(first.is_none());
            let mut recreated = false;
            let id = loop {
                let execute = || {
                    let mut message = ExecuteWebhook::new()
                        .content(piece.clone())
                        .username(username.clone());
                    if let Some(url) = &avatar_url {
                        message = message.avatar_url(url.clone());
                    }
                    if let Some(file) = &file {
                        message = message.add_file(file.clone());
                    }
                    hook.execute(&*self.rest, true, message)
                };
                match with_retry("post through the webhook", execute).await {
                    Ok(Some(message)) => break message.id.get(),
                    Ok(None) => {
                        return Err(DiscordError::BadRequest(
                            "Discord did not return the posted message".to_owned(),
                        ))
                    }
                    Err(e)
                        if !recreated
                            && (e.code() == Some(UNKNOWN_WEBHOOK) || e.status() == Some(404)) =>
                    {
                        // Deleted behind the gateway's back: make a new one.
                        warn!(channel, "the gateway's webhook is gone; making a new one");
                        recreated = true;
                        self.forget_webhook(channel).await;
                        match self.webhook_for(channel).await? {
                            Some(new_hook) => hook = new_hook,
                            None => {
                                return self.post_by_bot(channel, account, Some(nick), post).await
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            };
            self.poster.note_sent(id, Via::Webhook(hook.id.get()));
            self.note_posted(id, account, nick);
            first.get_or_insert(id);
        }
        first.ok_or_else(|| DiscordError::BadRequest("empty message".to_owned()))
    }

    /// Post as the bot, with `nick` in front when the bot speaks for
    /// someone (the gateway's bot) and without when it is the user's own.
    async fn post_by_bot(
        &self,
        channel: u64,
        account: &str,
        nick: Option<&str>,
        post: Post,
    ) -> Result<u64, DiscordError> {
        let channel_id = ChannelId::new(channel);
        let prefix_len = nick.map_or(0, |nick| prefixed(nick, "").chars().count());
        let mut first = None;
        for piece in post.pieces(MAX_MESSAGE_CHARS.saturating_sub(prefix_len).max(1)) {
            let content = match nick {
                Some(nick) if !piece.is_empty() => prefixed(nick, &piece),
                Some(nick) => format!("**{nick}**"),
                None => piece,
            };
            let is_first = first.is_none();
            let reference = post.reply_to.filter(|_| is_first);
            let file = post.file_for(is_first);
            let send = || {
                let mut message = CreateMessage::new().content(content.clone());
                if let Some(target) = reference {
                    message = message.reference_message((channel_id, MessageId::new(target)));
                }
                if let Some(file) = &file {
                    message = message.add_file(file.clone());
                }
                channel_id.send_message(&*self.rest, message)
            };
            let message = with_retry("post as the bot", send).await?;
            self.poster.note_sent(message.id.get(), Via::Bot);
            self.note_posted(message.id.get(), account, nick.unwrap_or_default());
            first.get_or_insert(message.id.get());
        }
        first.ok_or_else(|| DiscordError::BadRequest("empty message".to_owned()))
    }

    /// Send a direct message from the bot to a Discord user, with the
    /// XMPP user's `nick` in front when the bot is shared.
    pub async fn post_direct(
        &self,
        user: u64,
        account: &str,
        nick: Option<&str>,
        post: Post,
    ) -> Result<u64, DiscordError> {
        let channel = self.dm_channel(user).await?;
        self.post_by_bot(channel, account, nick, post).await
    }

    /// The bot's direct message channel with a Discord user.
    pub async fn dm_channel(&self, user: u64) -> Result<u64, DiscordError> {
        if let Some(channel) = self.dm_channels.lock().expect("not poisoned").get(&user) {
            return Ok(*channel);
        }
        let user_id = UserId::new(user);
        let dm = with_retry("open a direct message channel", || {
            user_id.create_dm_channel(&*self.rest)
        })
        .await?;
        let channel = dm.id.get();
        self.dm_channels
            .lock()
            .expect("not poisoned")
            .insert(user, channel);
        Ok(channel)
    }

    /// Replace the text of a message the gateway posted; `nick` as for
    /// [`Bot::post_direct`].
    pub async fn edit_posted(
        &self,
        channel: u64,
        message: u64,
        nick: Option<&str>,
        text: &str,
    ) -> Result<(), DiscordError> {
        let message_id = MessageId::new(message);
        let via = self.poster.via(message);
        if via != Some(Via::Bot) {
            if text.chars().count() > MAX_MESSAGE_CHARS {
                return Err(DiscordError::BadRequest(format!(
                    "a correction cannot be longer than Discord's {MAX_MESSAGE_CHARS} characters"
                )));
            }
            if let Some(hook) = self.webhook_for(channel).await? {
                let edit = || {
                    hook.edit_message(
                        &*self.rest,
                        message_id,
                        EditWebhookMessage::new().content(text.to_owned()),
                    )
                };
                match with_retry("edit through the webhook", edit).await {
                    Ok(_) => return Ok(()),
                    // Not the webhook's: after a restart it may be the bot's.
                    Err(e) if via.is_none() && e.status() == Some(404) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let content = match nick {
            Some(nick) => prefixed(nick, text),
            None => text.to_owned(),
        };
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return Err(DiscordError::BadRequest(format!(
                "a correction cannot be longer than Discord's {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let channel_id = ChannelId::new(channel);
        with_retry("edit the message", || {
            channel_id.edit_message(
                &*self.rest,
                message_id,
                EditMessage::new().content(content.clone()),
            )
        })
        .await?;
        Ok(())
    }

    /// Delete a message the gateway posted.
    pub async fn delete_posted(&self, channel: u64, message: u64) -> Result<(), DiscordError> {
        let message_id = MessageId::new(message);
        let via = self.poster.via(message);
        if via != Some(Via::Bot) {
            if let Some(hook) = self.webhook_for(channel).await? {
                match with_retry("delete through the webhook", || {
                    hook.delete_message(&*self.rest, None, message_id)
                })
                .await
                {
                    Ok(()) => return Ok(()),
                    Err(e) if via.is_none() && e.status() == Some(404) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let channel_id = ChannelId::new(channel);
        with_retry("delete the message", || {
            channel_id.delete_message(&*self.rest, message_id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_usernames_are_ones_discord_accepts() {
        assert_eq!(webhook_username("alice"), "alice");
        assert_eq!(webhook_username("my Discord"), "my _iscord");
        assert_eq!(webhook_username("CLYDE"), "_LYDE");
        assert_eq!(webhook_username(" "), "xmpp user");
        assert_eq!(webhook_username(&"x".repeat(100)).chars().count(), 80);
    }
}
