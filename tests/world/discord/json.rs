//! Discord's JSON shapes, as the API v10 documents them and as serenity's
//! models deserialise them: snowflakes as strings, permissions as strings,
//! timestamps as ISO 8601, every field serenity requires present.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::state::{ChannelRec, GuildRec, MemberRec, MessageRec, RoleRec, State, UserRec};

/// Discord's epoch (2015-01-01) in Unix milliseconds; snowflakes count from it.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// An ISO 8601 timestamp in UTC with microseconds, as Discord writes them.
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (hh, mm, ss) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Howard Hinnant's civil_from_days, for a date without a time crate.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}.{:03}000+00:00",
        unix_ms % 1000
    )
}

/// The unix milliseconds a snowflake was minted at.
pub fn snowflake_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

pub fn user(u: &UserRec) -> Value {
    json!({
        "id": u.id.to_string(),
        "username": u.username,
        "discriminator": "0",
        "global_name": u.global_name,
        "avatar": null,
        "bot": u.bot,
        "system": false,
        "public_flags": 0,
        "banner": null,
        "accent_color": null,
    })
}

pub fn member(state: &State, m: &MemberRec) -> Value {
    let u = state.user(m.user_id);
    json!({
        "user": user(u),
        "nick": m.nick,
        "avatar": null,
        "banner": null,
        "roles": m.roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "joined_at": iso8601(snowflake_ms(m.user_id)),
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
    })
}

/// A member as embedded in a message (`user` left out, as Discord does).
pub fn partial_member(m: &MemberRec) -> Value {
    json!({
        "nick": m.nick,
        "roles": m.roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "joined_at": iso8601(snowflake_ms(m.user_id)),
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "avatar": null,
    })
}

pub fn role(r: &RoleRec, position: usize) -> Value {
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "color": 0,
        "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null },
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": position,
        "permissions": r.permissions.to_string(),
        "managed": false,
        "mentionable": false,
        "flags": 0,
    })
}

pub fn channel(c: &ChannelRec) -> Value {
    json!({
        "id": c.id.to_string(),
        "type": c.kind,
        "guild_id": c.guild_id.to_string(),
        "position": c.position,
        "permission_overwrites": [],
        "name": c.name,
        "topic": c.topic,
        "nsfw": false,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "parent_id": null,
        "flags": 0,
    })
}

pub fn dm_channel(id: u64, recipient: &UserRec) -> Value {
    json!({
        "id": id.to_string(),
        "type": 1,
        "last_message_id": null,
        "recipients": [user(recipient)],
        "flags": 0,
    })
}

/// The full guild object of GUILD_CREATE: only the channels the bot can see.
pub fn guild_create(state: &State, g: &GuildRec) -> Value {
    let channels: Vec<Value> = g
        .channels
        .iter()
        .filter(|c| c.visible_to_bot)
        .map(channel)
        .collect();
    let members: Vec<Value> = g.members.iter().map(|m| member(state, m)).collect();
    let roles: Vec<Value> = g
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| role(r, i))
        .collect();
    let guild = json!({
        "id": g.id.to_string(),
        "name": g.name,
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": g.owner_id.to_string(),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": roles,
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 250000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
    });
    // Two literals: one would exceed serde_json's macro recursion limit.
    let create_fields = json!({
        "safety_alerts_channel_id": null,
        "incidents_data": null,
        "joined_at": iso8601(snowflake_ms(g.id)),
        "large": false,
        "unavailable": false,
        "member_count": members.len(),
        "voice_states": [],
        "members": members,
        "channels": channels,
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    });
    let mut guild = guild;
    let object = guild.as_object_mut().expect("an object");
    for (key, value) in create_fields.as_object().expect("an object") {
        object.insert(key.clone(), value.clone());
    }
    guild
}

pub fn message(state: &State, m: &MessageRec) -> Value {
    let author = match m.webhook_id {
        // A webhook message's author is the webhook itself, under the name it was executed with.
        Some(webhook) => json!({
            "id": webhook.to_string(),
            "username": m.author_name,
            "discriminator": "0000",
            "global_name": null,
            "avatar": null,
            "bot": true,
        }),
        None => user(state.user(m.author_id)),
    };
    let mut value = json!({
        "id": m.id.to_string(),
        "channel_id": m.channel_id.to_string(),
        "author": author,
        "content": m.content,
        "timestamp": iso8601(snowflake_ms(m.id)),
        "edited_timestamp": m.edited_ms.map(iso8601),
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": (0..m.attachments.len()).map(|i| attachment(m, i)).collect::<Vec<_>>(),
        "embeds": [],
        "pinned": false,
        "type": if m.reply_to.is_some() { 19 } else { 0 },
        "flags": 0,
        "components": [],
    });
    let object = value.as_object_mut().expect("an object");
    if let Some(guild_id) = m.guild_id {
        object.insert("guild_id".into(), json!(guild_id.to_string()));
        if m.webhook_id.is_none() {
            if let Some(member) = state.member(guild_id, m.author_id) {
                object.insert("member".into(), partial_member(member));
            }
        }
    }
    if let Some(webhook) = m.webhook_id {
        object.insert("webhook_id".into(), json!(webhook.to_string()));
    }
    if let Some(target) = m.reply_to {
        object.insert(
            "message_reference".into(),
            json!({
                "type": 0,
                "message_id": target.to_string(),
                "channel_id": m.channel_id.to_string(),
                "guild_id": m.guild_id.map(|g| g.to_string()),
            }),
        );
        let referenced = state.message(target).map(|r| {
            // One level only, as Discord does.
            let mut r = r.clone();
            r.reply_to = None;
            message(state, &r)
        });
        object.insert("referenced_message".into(), json!(referenced));
    }
    value
}

/// An attachment of a message: an uploaded file with its real size and
/// type, a linked one with a placeholder size.
fn attachment(m: &MessageRec, index: usize) -> Value {
    let (name, url) = &m.attachments[index];
    let upload = m.upload_of(index);
    json!({
        "id": (m.id + 1 + index as u64).to_string(),
        "filename": name,
        "size": upload.map_or(1024, |f| f.bytes.len()),
        "url": url,
        "proxy_url": url,
        "content_type": upload.map(|f| &f.content_type),
    })
}

pub fn webhook(w: &super::state::WebhookRec, creator: &UserRec) -> Value {
    json!({
        "id": w.id.to_string(),
        "type": 1,
        "guild_id": w.guild_id.to_string(),
        "channel_id": w.channel_id.to_string(),
        "user": user(creator),
        "name": w.name,
        "avatar": null,
        "token": w.token,
        "application_id": null,
    })
}

/// Discord's error body: `{"message": ..., "code": ...}`.
pub fn error(code: u32, message: &str) -> Value {
    json!({ "message": message, "code": code })
}
