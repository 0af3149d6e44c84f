//! biboumi's database, read once to move its users to an IRC gateway of
//! Estuary on the same component domain (`estuary import-biboumi`).
//!
//! The JIDs are the same, so bookmarks and rosters keep working by
//! themselves; this carries over what biboumi kept in its database:
//!
//! - each user's global options (`configure` on the gateway's JID):
//!   persistent, record history, max history length;
//! - each user's server options (`configure` on `server@gw`): nick,
//!   username, realname, SASL and server passwords, ports, TLS ports,
//!   certificate verification and fingerprint, throttle limit, in-encoding
//!   and the after-connection commands;
//! - each user's channel options (`configure` on `#chan%server@gw`):
//!   persistent, record history and in-encoding; a persistent channel is
//!   joined again as soon as Estuary starts, as Estuary does with its own;
//! - who keeps the gateway's JID in their roster (biboumi's `roster`), to
//!   be told when it comes and goes;
//! - the channel archives, under biboumi's own message ids, so that clients
//!   which already fetched them through MAM see the same stanza-ids and
//!   show no message twice.
//!
//! biboumi keeps one archive per user and channel, Estuary one per channel
//! that the gateway's users in it share: a line that several users'
//! archives hold is imported once. biboumi kept archives apart so that no
//! user learns from one when another was in a channel; an admin who wants
//! that kept for the old lines imports without them
//! ([`Destination::archives`] false).
//!
//! What Estuary has no place for is counted and named in the report, never
//! dropped silently: plaintext ports after the first, out-encodings (which
//! biboumi ignored too), per-server and per-channel history lengths.
//!
//! biboumi's database is read where its `db_name` says: an SQLite file, or
//! a PostgreSQL URL.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context};
use estuary_bridge::FormValues;
use estuary_irc::address::IrcAddress;
use estuary_irc::options::{UserServerSettings, CHANNEL_ENCODING};
use estuary_irc::text::encoding_for_label;
use futures::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::store::{ArchiveRange, ArchivedMessage, RoomRecord, Store};
use crate::user::{RoomDefaults, RoomSettings, StoredRoomSettings, DEFAULTS_ADDRESS};

/// Archive rows written per statement batch.
const ARCHIVE_BATCH: usize = 500;

/// The gateway the data goes to.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Its component domain, biboumi's `hostname`.
    pub gateway: String,
    /// Its `fixed_server`, biboumi's `fixed_irc_server`.
    pub fixed_server: Option<String>,
    /// Whether the channel archives are imported too.
    pub archives: bool,
}

impl Destination {
    fn address(&self, name: &str, server: &str) -> String {
        IrcAddress::remote(name, server, self.fixed_server.as_deref()).to_string()
    }
}

/// What an import carried over, and what it could not.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub users: usize,
    pub global_settings: usize,
    pub server_settings: usize,
    pub channel_settings: usize,
    /// Persistent channels Estuary joins again on its next start.
    pub channels_to_rejoin: usize,
    /// Users who keep the gateway's JID in their roster (biboumi's `roster`).
    pub gateway_subscribers: usize,
    pub messages: usize,
    /// Lines that more than one user's archive held.
    pub shared_lines: usize,
    /// Channels whose archive was already in Estuary's (an import run before).
    pub archives_skipped: Vec<String>,
    /// What has no place in Estuary, one line each.
    pub not_carried: Vec<String>,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "users: {}", self.users)?;
        writeln!(f, "global settings: {}", self.global_settings)?;
        writeln!(f, "server settings: {}", self.server_settings)?;
        writeln!(f, "channel settings: {}", self.channel_settings)?;
        writeln!(
            f,
            "persistent channels to join on start: {}",
            self.channels_to_rejoin
        )?;
        writeln!(
            f,
            "the gateway's JID in rosters: {}",
            self.gateway_subscribers
        )?;
        writeln!(
            f,
            "archived messages: {} ({} lines held by several users' archives, imported once)",
            self.messages, self.shared_lines
        )?;
        for room in &self.archives_skipped {
            writeln!(
                f,
                "archive of {room} not imported: Estuary's archive of it is not empty"
            )?;
        }
        for line in &self.not_carried {
            writeln!(f, "not carried over: {line}")?;
        }
        Ok(())
    }
}

/// Read biboumi's database at `source` (biboumi's `db_name`: an SQLite
/// file, or a `postgresql://` URL) and write what it holds into `store`,
/// for the gateway `to`.
pub async fn import(source: &str, store: &Store, to: &Destination) -> anyhow::Result<ImportReport> {
    sqlx::any::install_default_drivers();
    // biboumi's own test for a PostgreSQL `db_name`.
    let url = if source.starts_with("postgresql://") || source.starts_with("postgres://") {
        source.to_owned()
    } else if Path::new(source).is_file() {
        format!("sqlite://{source}?mode=ro")
    } else {
        bail!("{source} is not a file");
    };
    let shown = crate::app::redact_url(source);
    let biboumi = AnyPool::connect(&url)
        .await
        .with_context(|| format!("cannot open {shown}"))?;
    sqlx::query("SELECT id_ FROM muclogline_ LIMIT 1")
        .fetch_all(&biboumi)
        .await
        .with_context(|| format!("{shown} is not a biboumi database"))?;
    let mut report = ImportReport::default();
    let mut users = HashSet::new();
    let defaults = import_global_options(&biboumi, store, to, &mut report, &mut users).await?;
    let nicks = import_server_options(&biboumi, store, to, &mut report, &mut users).await?;
    import_channel_options(
        &biboumi,
        store,
        to,
        &defaults,
        &nicks,
        &mut report,
        &mut users,
    )
    .await?;
    import_roster(&biboumi, store, to, &mut report, &mut users).await?;
    if to.archives {
        import_archive(&biboumi, store, to, &mut report).await?;
    } else {
        report
            .not_carried
            .push("the channel archives (--without-archives)".to_owned());
    }
    report.users = users.len();
    biboumi.close().await;
    Ok(report)
}

fn text(row: &AnyRow, column: &str) -> anyhow::Result<String> {
    Ok(row
        .try_get::<Option<String>, _>(column)
        .with_context(|| format!("reading {column}"))?
        .unwrap_or_default())
}

fn number(row: &AnyRow, column: &str) -> anyhow::Result<i64> {
    Ok(row
        .try_get::<Option<i64>, _>(column)
        .with_context(|| format!("reading {column}"))?
        .unwrap_or_default())
}

/// biboumi's global options, by owner: Estuary's defaults for all rooms.
async fn import_global_options(
    biboumi: &AnyPool,
    store: &Store,
    to: &Destination,
    report: &mut ImportReport,
    users: &mut HashSet<String>,
) -> anyhow::Result<HashMap<String, RoomDefaults>> {
    let rows = sqlx::query(
        "SELECT owner_, maxhistorylength_, recordhistory_, persistent_ FROM globaloptions_",
    )
    .fetch_all(biboumi)
    .await?;
    let mut all = HashMap::new();
    for row in &rows {
        let owner = text(row, "owner_")?;
        let max_history = number(row, "maxhistorylength_")?;
        let defaults = RoomDefaults {
            persistent: number(row, "persistent_")? == 1,
            record_history: number(row, "recordhistory_")? == 1,
            max_history: u32::try_from(max_history).ok().filter(|n| *n > 0),
        };
        let json = serde_json::to_string(&defaults)?;
        store
            .save_address_settings(&to.gateway, &owner, DEFAULTS_ADDRESS, &json)
            .await?;
        report.global_settings += 1;
        users.insert(owner.clone());
        all.insert(owner, defaults);
    }
    Ok(all)
}

/// biboumi's roster: who keeps the gateway's JID in their roster, to be
/// told when it comes and goes. Entries of a server's JID (`server@gw`)
/// need nothing kept: the user's server probes it at each login, and the
/// user's session answers for the server as biboumi did.
async fn import_roster(
    biboumi: &AnyPool,
    store: &Store,
    to: &Destination,
    report: &mut ImportReport,
    users: &mut HashSet<String>,
) -> anyhow::Result<()> {
    // The table came with biboumi 8; an older database has none, and
    // the rest of it is imported all the same.
    let rows = match sqlx::query("SELECT local, remote FROM roster")
        .fetch_all(biboumi)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            report.not_carried.push(format!(
                "the roster (biboumi's `roster` table could not be read: {e})"
            ));
            return Ok(());
        }
    };
    for row in &rows {
        let remote = text(row, "remote")?;
        if text(row, "local")? != to.gateway || remote.is_empty() {
            continue;
        }
        if store.add_gateway_subscriber(&to.gateway, &remote).await? {
            report.gateway_subscribers += 1;
        }
        users.insert(remote);
    }
    Ok(())
}

/// biboumi's server options: each user's own settings of a server. Returns
/// each user's nick on each server that has one, for the channels to rejoin.
async fn import_server_options(
    biboumi: &AnyPool,
    store: &Store,
    to: &Destination,
    report: &mut ImportReport,
    users: &mut HashSet<String>,
) -> anyhow::Result<HashMap<(String, String), String>> {
    let mut commands: HashMap<i64, Vec<String>> = HashMap::new();
    for row in sqlx::query(
        "SELECT fk_, afterconnectioncommand_ FROM after_connection_commands_ ORDER BY id_",
    )
    .fetch_all(biboumi)
    .await?
    {
        let command = text(&row, "afterconnectioncommand_")?;
        if !command.trim().is_empty() {
            commands
                .entry(number(&row, "fk_")?)
                .or_default()
                .push(command);
        }
    }
    let rows = sqlx::query(
        "SELECT id_, owner_, server_, pass_, tlsports_, ports_, username_, realname_, \
         verifycert_, trustedfingerprint_, encodingout_, encodingin_, maxhistorylength_, \
         address_, nick_, saslpassword_, throttlelimit_ FROM ircserveroptions_",
    )
    .fetch_all(biboumi)
    .await?;
    let mut nicks = HashMap::new();
    for row in &rows {
        let owner = text(row, "owner_")?;
        let server = text(row, "server_")?;
        let whose = format!("{owner}'s settings of {server}");
        let mut values = FormValues::new();
        let mut set = |var: &str, value: String| {
            if !value.trim().is_empty() {
                values.insert(var.to_owned(), value.trim().to_owned());
            }
        };
        set("nick", text(row, "nick_")?);
        set("username", text(row, "username_")?);
        set("realname", text(row, "realname_")?);
        set("password", text(row, "saslpassword_")?);
        set("server_password", text(row, "pass_")?);
        set("tls_fingerprint", text(row, "trustedfingerprint_")?);
        set("encoding", text(row, "encodingin_")?);
        set(
            "verify_certificates",
            u8::from(number(row, "verifycert_")? == 1).to_string(),
        );
        // biboumi keeps port lists as `6667;6668;`; Estuary has one
        // plaintext port and a list of TLS ports.
        let ports = port_list(&text(row, "ports_")?);
        if let Some(first) = ports.first() {
            set("port", first.clone());
        }
        if ports.len() > 1 {
            report.not_carried.push(format!(
                "{whose}: plaintext ports after the first ({})",
                ports[1..].join(", ")
            ));
        }
        set("tls_ports", port_list(&text(row, "tlsports_")?).join(", "));
        // biboumi sends `throttle_limit` lines at once, then one a second;
        // a negative limit turns throttling off, which Estuary never does
        // (the admin's throttle applies).
        let throttle = number(row, "throttlelimit_")?;
        if throttle >= 0 {
            set("throttle_burst", throttle.max(1).to_string());
            set("throttle_per_sec", "1".to_owned());
        }
        if let Some(commands) = commands.get(&number(row, "id_")?) {
            set("after_connect", commands.join("\n"));
        }
        // A network's alias (`libera@gw` with irc.libera.chat), which the
        // user's bookmarks name; the server's own name changes nothing.
        let address = text(row, "address_")?;
        if address != server {
            set("address", address);
        }
        let out_encoding = text(row, "encodingout_")?;
        if !out_encoding.is_empty() {
            report.not_carried.push(format!(
                "{whose}: out encoding, which biboumi ignored (Estuary sends UTF-8): {out_encoding}"
            ));
        }
        if number(row, "maxhistorylength_")? > 0 {
            report.not_carried.push(format!(
                "{whose}: max history length (Estuary has it for all rooms only)"
            ));
        }
        if let Err(e) = UserServerSettings::parse(&values) {
            report
                .not_carried
                .push(format!("{whose}: not imported, Estuary refuses them: {e}"));
            continue;
        }
        if let Some(nick) = values.get("nick") {
            nicks.insert((owner.clone(), server.clone()), nick.clone());
        }
        if to.fixed_server.is_some() {
            // With a fixed server there is no server JID to configure: its
            // settings are the admin's alone.
            report.not_carried.push(format!(
                "{whose}: the gateway has a fixed server, configured by its admin only"
            ));
            users.insert(owner);
            continue;
        }
        let json = serde_json::to_string(&values)?;
        store
            .save_address_settings(&to.gateway, &owner, &server, &json)
            .await?;
        report.server_settings += 1;
        users.insert(owner);
    }
    Ok(nicks)
}

/// `6667;6668;` as `["6667", "6668"]`.
fn port_list(ports: &str) -> Vec<String> {
    ports
        .split([';', ',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// biboumi's channel options, and the persistent channels to join again.
async fn import_channel_options(
    biboumi: &AnyPool,
    store: &Store,
    to: &Destination,
    defaults: &HashMap<String, RoomDefaults>,
    nicks: &HashMap<(String, String), String>,
    report: &mut ImportReport,
    users: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let rows = sqlx::query(
        "SELECT owner_, server_, channel_, encodingout_, encodingin_, maxhistorylength_, \
         persistent_, recordhistory_ FROM ircchanneloptions_",
    )
    .fetch_all(biboumi)
    .await?;
    for row in &rows {
        let owner = text(row, "owner_")?;
        let server = text(row, "server_")?;
        let channel = text(row, "channel_")?;
        let room = to.address(&channel, &server);
        let own_defaults = defaults.get(&owner).copied().unwrap_or_default();
        // biboumi's channel `record_history` may be unset (0), following
        // the global one; Estuary's room setting is always set, so an unset
        // one takes the global value it had.
        let record_history = match number(row, "recordhistory_")? {
            1 => true,
            0 => own_defaults.record_history,
            _ => false,
        };
        let settings = RoomSettings {
            persistent: number(row, "persistent_")? == 1,
            record_history,
        };
        let mut network = FormValues::new();
        let in_encoding = text(row, "encodingin_")?;
        let in_encoding = in_encoding.trim();
        if encoding_for_label(in_encoding).is_some() {
            network.insert(CHANNEL_ENCODING.to_owned(), in_encoding.to_owned());
        } else if !in_encoding.is_empty() {
            report.not_carried.push(format!(
                "{owner}'s in encoding of {room}: {in_encoding} (an encoding Estuary does not know)"
            ));
        }
        let out_encoding = text(row, "encodingout_")?;
        if !out_encoding.is_empty() {
            report.not_carried.push(format!(
                "{owner}'s out encoding of {room}, which biboumi ignored (Estuary sends UTF-8): \
                 {out_encoding}"
            ));
        }
        let json = serde_json::to_string(&StoredRoomSettings {
            own: settings,
            network,
        })?;
        store
            .save_address_settings(&to.gateway, &owner, &room, &json)
            .await?;
        report.channel_settings += 1;
        if number(row, "maxhistorylength_")? > 0 {
            report.not_carried.push(format!(
                "{owner}'s max history length of {room} (Estuary has it for all rooms only)"
            ));
        }
        if settings.persistent || own_defaults.persistent {
            // The nick the user set for the server, else the one Estuary
            // gives a user who never chose one.
            let nick = nicks
                .get(&(owner.clone(), server.clone()))
                .cloned()
                .unwrap_or_else(|| estuary_irc::nick_for(&owner));
            store
                .save_room(&RoomRecord {
                    gateway: to.gateway.clone(),
                    account: owner.clone(),
                    room: room.clone(),
                    nick,
                    settings: "{}".to_owned(),
                })
                .await?;
            report.channels_to_rejoin += 1;
        }
        users.insert(owner);
    }
    Ok(())
}

/// One line of a biboumi archive.
struct LogLine {
    uuid: String,
    owner: String,
    date: i64,
    nick: String,
    body: String,
}

/// How far apart, in seconds, two users' archives may date one line: each
/// user's copy is dated when biboumi handled it for that user (a user's
/// own line when sent, the others' when the server relayed it).
const SAME_LINE_WITHIN: i64 = 2;

/// The lines of one channel within [`SAME_LINE_WITHIN`] of the newest, each
/// with the users whose archives were found to hold it, held back until no
/// copy of them can come any more.
///
/// Of a line's copies, the id kept is the one of the user whose JID sorts
/// first, whatever order biboumi wrote them in: that
/// order is whichever user's IRC connection it read first, so keeping the
/// first written gave different ids from one import to the next (a trial
/// import, then the real one) and from one run of the same exchange to
/// another.
#[derive(Default)]
struct RecentLines {
    lines: std::collections::VecDeque<(LogLine, Vec<String>)>,
}

impl RecentLines {
    /// Takes `line`; true if it is a copy of a line held, from another
    /// user's archive, counted as that user's too. A user's own archive
    /// never holds one line twice, so a repeat there is a new line.
    fn take(&mut self, line: LogLine) -> bool {
        let found = self.lines.iter_mut().find(|(held, owners)| {
            (line.date - held.date).abs() <= SAME_LINE_WITHIN
                && held.nick == line.nick
                && held.body == line.body
                && !owners.contains(&line.owner)
        });
        match found {
            Some((held, owners)) => {
                owners.push(line.owner.clone());
                if line.owner < held.owner {
                    // Its id; the date stays the earliest, so that lines
                    // stay in order.
                    held.uuid = line.uuid;
                    held.owner = line.owner;
                }
                true
            }
            None => {
                self.lines.push_back((line, Vec::new()));
                let (held, owners) = self.lines.back_mut().expect("just pushed");
                owners.push(held.owner.clone());
                false
            }
        }
    }

    /// The lines no copy can come for any more, now that lines of `date`
    /// are read (rows come by date), oldest first.
    fn settled(&mut self, date: i64) -> Vec<LogLine> {
        let mut settled = Vec::new();
        while self
            .lines
            .front()
            .is_some_and(|(held, _)| held.date < date - SAME_LINE_WITHIN)
        {
            settled.extend(self.lines.pop_front().map(|(line, _)| line));
        }
        settled
    }

    /// Every line still held, at the end of the channel's rows.
    fn rest(&mut self) -> Vec<LogLine> {
        self.lines.drain(..).map(|(line, _)| line).collect()
    }
}

impl LogLine {
    fn archived(self, room: &str, to: &Destination) -> ArchivedMessage {
        ArchivedMessage {
            gateway: to.gateway.clone(),
            room: room.to_owned(),
            stanza_id: if self.uuid.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                self.uuid
            },
            remote_id: None,
            nick: self.nick,
            sender: None,
            body: self.body,
            ts_ms: self.date.saturating_mul(1000),
        }
    }
}

/// The channel archives, oldest first, each line once.
async fn import_archive(
    biboumi: &AnyPool,
    store: &Store,
    to: &Destination,
    report: &mut ImportReport,
) -> anyhow::Result<()> {
    let channels = sqlx::query(
        "SELECT DISTINCT ircservername_, ircchanname_ FROM muclogline_ \
         ORDER BY ircservername_, ircchanname_",
    )
    .fetch_all(biboumi)
    .await?;
    for channel in &channels {
        let server = text(channel, "ircservername_")?;
        let name = text(channel, "ircchanname_")?;
        let room = to.address(&name, &server);
        let existing = store
            .archive_count(&ArchiveRange {
                gateway: to.gateway.clone(),
                room: room.clone(),
                ..ArchiveRange::default()
            })
            .await?;
        if existing > 0 {
            report.archives_skipped.push(room);
            continue;
        }
        let mut rows = sqlx::query(
            "SELECT uuid_, owner_, date_, body_, nick_ FROM muclogline_ \
             WHERE ircservername_ = $1 AND ircchanname_ = $2 ORDER BY date_, id_",
        )
        .bind(&server)
        .bind(&name)
        .fetch(biboumi);
        let mut archive = store.import_room_archive(&to.gateway, &room).await?;
        let mut recent = RecentLines::default();
        let mut batch = Vec::with_capacity(ARCHIVE_BATCH);
        while let Some(row) = rows.try_next().await? {
            let line = LogLine {
                uuid: text(&row, "uuid_")?,
                owner: text(&row, "owner_")?,
                date: number(&row, "date_")?,
                nick: text(&row, "nick_")?,
                body: text(&row, "body_")?,
            };
            let date = line.date;
            if recent.take(line) {
                report.shared_lines += 1;
            }
            for line in recent.settled(date) {
                batch.push(line.archived(&room, to));
            }
            if batch.len() >= ARCHIVE_BATCH {
                report.messages += batch.len();
                archive.append(&batch).await?;
                batch.clear();
            }
        }
        for line in recent.rest() {
            batch.push(line.archived(&room, to));
        }
        report.messages += batch.len();
        archive.append(&batch).await?;
        archive.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_in_several_archives_is_kept_once_and_repeats_stay() {
        let line = |owner: &str, date: i64, body: &str| LogLine {
            uuid: format!("{owner}-{date}"),
            owner: owner.to_owned(),
            date,
            nick: "bob".to_owned(),
            body: body.to_owned(),
        };
        let mut recent = RecentLines::default();
        let mut kept = Vec::new();
        let copies: Vec<bool> = [
            // b's copy first (biboumi read b's connection first), a's a
            // second later.
            line("b@x", 100, "hi"),
            line("a@x", 101, "hi"),
            // bob said it again: a new line in a's archive, then b's copy.
            line("a@x", 101, "hi"),
            line("b@x", 102, "hi"),
            // Long after: the same words are a new line.
            line("b@x", 110, "hi"),
            line("b@x", 110, "only b saw this"),
        ]
        .into_iter()
        .map(|l| {
            let date = l.date;
            let copy = recent.take(l);
            kept.extend(recent.settled(date).into_iter().map(|l| l.uuid));
            copy
        })
        .collect();
        kept.extend(recent.rest().into_iter().map(|l| l.uuid));
        assert_eq!(copies, [false, true, false, true, false, false]);
        // Oldest first, each under a's id where a's archive has it.
        assert_eq!(kept, ["a@x-101", "a@x-101", "b@x-110", "b@x-110"]);
    }

    #[test]
    fn port_lists() {
        assert_eq!(port_list("6667;6668;"), ["6667", "6668"]);
        assert!(port_list("").is_empty());
    }
}
