//! Migrating from biboumi, as an admin does it: a real biboumi (Debian's
//! package) serves two users on the test Prosody and InspIRCd and fills its
//! database; it is stopped, `estuary import-biboumi` reads the database, and
//! Estuary, started on the same component domain, carries on where biboumi
//! stopped.

mod world;

use std::time::Duration;

use estuary::app;
use estuary::config::Config;
use estuary::networks::Networks;
use world::biboumi::Biboumi;
use world::inspircd::Inspircd;
use world::irc_client::IrcClient;
use world::{attr, body, el, stanza_id, Postgres, Prosody, XmppClient};

const GW: &str = "irc.localhost";
const MUC: &str = "http://jabber.org/protocol/muc";
const WAIT: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_estuary");

/// A user of biboumi who set their connection to the test InspIRCd (biboumi
/// would otherwise try TLS on 6697 and look the name up in DNS), with
/// `extra` server settings, and joined `#migrate` as `nick`. The server is
/// `ircnet`, an alias of the user's own whose address is the InspIRCd's, as
/// biboumi's users name networks (`libera@gw` for irc.libera.chat): their
/// bookmarks name the alias, so the import must keep the address.
async fn biboumi_user(
    prosody: &Prosody,
    port: u16,
    user: &str,
    nick: &str,
    extra: &str,
) -> XmppClient {
    prosody.add_user(user, "pw");
    let mut client = XmppClient::connect(prosody.c2s_port(), user, "localhost", "pw", "res").await;
    client.send(el("<presence/>")).await;
    client
        .run_command(
            &format!("ircnet@{GW}"),
            "configure",
            &format!(
                "<field var='address'><value>127.0.0.1</value></field>\
             <field var='ports'><value>{port}</value></field>\
             <field var='tls_ports'/>\
             <field var='verify_cert'><value>true</value></field>\
             <field var='throttle_limit'><value>10</value></field>{extra}"
            ),
        )
        .await;
    let me = format!("#migrate%ircnet@{GW}/{nick}");
    client
        .send(el(&format!(
            "<presence to='{me}'><x xmlns='{MUC}'/></presence>"
        )))
        .await;
    client
        .expect(WAIT, |p| p.name() == "presence" && attr(p, "from") == me)
        .await;
    client
}

/// A room's archive through MAM: each message's id and body, in order.
async fn archive_of(client: &mut XmppClient, room: &str) -> Vec<(String, String)> {
    let (results, _) = client.mam_query(room, "", "").await;
    results
        .iter()
        .map(|r| {
            let message = r
                .get_child("forwarded", "urn:xmpp:forward:0")
                .and_then(|f| f.get_child("message", "jabber:client"))
                .expect("a forwarded message");
            (attr(r, "id").to_owned(), body(message).unwrap_or_default())
        })
        .collect()
}

/// Estuary's configuration. The users' alias points at the loopback
/// InspIRCd, a private address, which only `allow_private_addresses` lets
/// a user's own address reach.
fn config_file(dir: &std::path::Path, prosody: &Prosody) -> std::path::PathBuf {
    let path = dir.join("estuary.toml");
    std::fs::write(
        &path,
        format!(
            "[component]\nserver = \"{}\"\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n\n\
             [store]\ndata_dir = \"{}\"\n\n\
             [[gateway]]\ndomain = \"{GW}\"\nsecret = \"secret\"\nkind = \"irc\"\n\n\
             [gateway.options]\nallow_private_addresses = true\n",
            prosody.component_addr(),
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn import(config: &std::path::Path, database: &str, options: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("import-biboumi")
        .arg(database)
        .args(options)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estuary_carries_on_from_a_biboumi_sqlite_database() {
    carries_on_from_biboumi(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estuary_carries_on_from_a_biboumi_postgresql_database() {
    let postgres = Postgres::start();
    carries_on_from_biboumi(Some(&postgres.create_database("biboumi"))).await;
}

/// biboumi with its database at `database` (SQLite without one), then
/// Estuary after the import.
async fn carries_on_from_biboumi(database: Option<&str>) {
    let prosody = Prosody::start(&[(GW, "secret")]);
    let ircd = Inspircd::start();
    let port = ircd.port();
    let mut biboumi =
        Biboumi::start_with_database(GW, "secret", prosody.component_port(), database);
    let mut bob = IrcClient::connect(port, "bob").await;
    bob.join("#migrate").await;
    let room = format!("#migrate%ircnet@{GW}");

    // alice set her nick, ident, real name and two commands for her
    // connection, keeps #migrate persistent, reads its non-UTF-8 lines as
    // KOI8-R, and caps join history at 7.
    let mut alice = biboumi_user(
        &prosody,
        port,
        "alice",
        "alicia",
        "<field var='nick'><value>alicia</value></field>\
         <field var='username'><value>aliceu</value></field>\
         <field var='realname'><value>Alice L</value></field>\
         <field var='after_connect_commands'>\
         <value>PRIVMSG bob :first command</value><value>PRIVMSG bob :second command</value>\
         </field>",
    )
    .await;
    alice
        .run_command(
            GW,
            "configure",
            "<field var='max_history_length'><value>7</value></field>\
         <field var='record_history'><value>true</value></field>\
         <field var='persistent'><value>false</value></field>",
        )
        .await;
    alice
        .run_command(
            &room,
            "configure",
            "<field var='persistent'><value>true</value></field>\
         <field var='record_history'><value>true</value></field>\
         <field var='encoding_in'><value>koi8-r</value></field>",
        )
        .await;
    // carol is in the channel too: biboumi archives each line for each of them.
    let mut carol = biboumi_user(&prosody, port, "carol", "carol", "").await;
    // She keeps the gateway's JID in her roster (biboumi's `roster` table).
    carol
        .iq(
            "carol@localhost",
            "get",
            el("<query xmlns='jabber:iq:roster'/>"),
        )
        .await;
    carol
        .send(el(&format!("<presence to='{GW}' type='subscribe'/>")))
        .await;
    for expected in ["subscribed", "", "subscribe"] {
        assert_eq!(gateway_presence(&mut carol).await, expected);
    }

    bob.send("PRIVMSG #migrate :hello from bob").await;
    bob.send("PRIVMSG #migrate :\u{1}ACTION waves\u{1}").await;
    alice
        .send(el(&format!(
            "<message to='{room}' type='groupchat' id='m1'><body>hi from alice</body></message>"
        )))
        .await;
    // The stanza-ids biboumi gave, as alice's client keeps them.
    let mut ids = Vec::new();
    for text in ["hello from bob", "/me waves", "hi from alice"] {
        let m = alice
            .expect(WAIT, |m| body(m).as_deref() == Some(text))
            .await;
        ids.push((text, stanza_id(&m)));
    }
    carol
        .expect(WAIT, |m| body(m).as_deref() == Some("hi from alice"))
        .await;
    // biboumi's MAM, in biboumi's order (its own line first, as it archives
    // what it sends before the echo), with the ids the client saw live.
    let biboumi_archive = archive_of(&mut alice, &room).await;
    let mut archived_ids: Vec<&str> = biboumi_archive.iter().map(|(id, _)| id.as_str()).collect();
    let mut live_ids: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    archived_ids.sort_unstable();
    live_ids.sort_unstable();
    assert_eq!(archived_ids, live_ids);
    biboumi.stop();
    bob.expect(WAIT, |l| l.starts_with(":alicia!") && l.contains(" QUIT "))
        .await;
    assert_eq!(gateway_presence(&mut carol).await, "unavailable");
    // What bob saw of biboumi's connections is behind him.
    bob.take_backlog();

    // The import, then Estuary on biboumi's component domain.
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &prosody);
    // An admin may leave the archives behind: biboumi kept one per user.
    let without = import(&config, biboumi.database(), &["--without-archives"]);
    assert!(without.contains("archived messages: 0 "), "{without}");
    assert!(
        without.contains("not carried over: the channel archives"),
        "{without}"
    );
    let report = import(&config, biboumi.database(), &[]);
    assert!(report.contains("users: 2"), "{report}");
    assert!(
        report.contains("persistent channels to join on start: 1"),
        "{report}"
    );
    // Each line was in alice's archive and in carol's: imported once.
    assert!(report.contains("archived messages: 3 (3 lines"), "{report}");
    // (Carried by the first import; the second finds it there.)
    assert!(
        without.contains("the gateway's JID in rosters: 1"),
        "{without}"
    );
    let estuary = app::start(
        Config::load(&config, &Networks::builtin().kinds()).unwrap(),
        &Networks::builtin(),
    )
    .await
    .unwrap();

    // With no client of alice online, her persistent channel is joined at
    // once, through the port she set, under her nick and ident, and her
    // commands are sent.
    let joined = bob
        .expect(WAIT, |l| l.starts_with(":alicia!") && l.contains(" JOIN "))
        .await;
    assert!(joined.contains("aliceu@"), "{joined}");
    bob.expect(WAIT, |l| l.contains("PRIVMSG bob :first command"))
        .await;
    bob.expect(WAIT, |l| l.contains("PRIVMSG bob :second command"))
        .await;
    bob.send("WHOIS alicia").await;
    bob.expect(WAIT, |l| l.contains(" 311 ") && l.ends_with(":Alice L"))
        .await;
    // carol's roster shows the gateway back, as biboumi's would have.
    assert_eq!(gateway_presence(&mut carol).await, "");

    // Her bookmark joins the room as before; history and MAM show
    // biboumi's lines under biboumi's ids, so her client shows none twice.
    // (Of a line both archives held, the id kept is that of the user whose
    // JID sorts first, alice, whichever copy biboumi wrote first.)
    let me = format!("{room}/alicia");
    alice
        .send(el(&format!(
            "<presence to='{me}'><x xmlns='{MUC}'><history maxstanzas='20'/></x></presence>"
        )))
        .await;
    for (text, id) in &ids {
        let m = alice
            .expect(WAIT, |m| body(m).as_deref() == Some(*text))
            .await;
        assert_eq!(&stanza_id(&m), id, "{}", String::from(&m));
    }
    assert_eq!(archive_of(&mut alice, &room).await, biboumi_archive);
    // Her settings are Estuary's now: history capped at 7 for all rooms,
    // and the server settings with both commands.
    let defaults = alice.command_form(GW, "configure").await;
    assert!(
        defaults.contains("var='max_history'") && defaults.contains("<value>7</value>"),
        "{defaults}"
    );
    let server = alice
        .command_form(&format!("ircnet@{GW}"), "configure")
        .await;
    assert!(
        server.contains(
            "<value>PRIVMSG bob :first command</value><value>PRIVMSG bob :second command</value>"
        ),
        "{server}"
    );

    // Running the import again adds nothing.
    let again = import(&config, biboumi.database(), &[]);
    assert!(again.contains("archived messages: 0"), "{again}");
    assert!(
        again.contains("archive of #migrate%ircnet not imported"),
        "{again}"
    );
    assert_eq!(archive_of(&mut alice, &room).await, biboumi_archive);
    // The channel's own encoding came along: KOI8-R there, not Latin-1.
    bob.send_bytes(b"PRIVMSG #migrate :\xf0\xd2\xc9\xd7\xc5\xd4")
        .await;
    alice
        .expect(WAIT, |m| body(m).as_deref() == Some("Привет"))
        .await;
    let channel = alice.command_form(&room, "configure").await;
    assert!(
        channel.contains("var='encoding'") && channel.contains("<value>koi8-r</value>"),
        "{channel}"
    );
    estuary.stop().await.unwrap();
}

/// The type of the next presence `client` gets from the gateway's own JID
/// ("" when available). Errors are passed over: biboumi on PostgreSQL
/// answers the unavailable presence Prosody sends it after the
/// subscription with an `internal-server-error` (its log: "basic_string:
/// construction from null"), where on SQLite it answers nothing.
async fn gateway_presence(client: &mut XmppClient) -> String {
    let p = client
        .expect(WAIT, |p| {
            p.name() == "presence" && attr(p, "from") == GW && attr(p, "type") != "error"
        })
        .await;
    attr(&p, "type").to_owned()
}

/// What is not a biboumi database is refused with a clear error, and
/// nothing is written.
#[test]
fn a_file_that_is_not_a_biboumi_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("estuary.toml");
    std::fs::write(
        &config,
        format!(
            "[component]\nserver = \"127.0.0.1:1\"\n[store]\ndata_dir = \"{}\"\n\
             [[gateway]]\ndomain = \"{GW}\"\nsecret = \"s\"\nkind = \"irc\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let other = dir.path().join("other.sqlite");
    std::fs::write(&other, b"not a database at all").unwrap();
    for database in [other, dir.path().join("missing.sqlite")] {
        let database = database.display().to_string();
        let out = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("import-biboumi")
            .arg(&database)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not a biboumi database")
                || stderr.contains("cannot open")
                || stderr.contains("is not a file"),
            "{stderr}"
        );
    }
}

/// A database from before biboumi 8, which had no `roster` table: the rest
/// is imported, and the report says the roster was not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_biboumi_database_without_a_roster_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("biboumi.sqlite");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=rwc", database.display()))
        .await
        .unwrap();
    // biboumi 9's tables (as `sqlite3 .schema` gives them), but the roster.
    for statement in [
        "CREATE TABLE muclogline_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,uuid_ TEXT,owner_ TEXT,\
         ircchanname_ TEXT,ircservername_ TEXT,date_ INTEGER,body_ TEXT,nick_ TEXT)",
        "CREATE TABLE globaloptions_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,owner_ TEXT,\
         maxhistorylength_ INTEGER,recordhistory_ INTEGER,persistent_ INTEGER)",
        "CREATE TABLE ircserveroptions_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,owner_ TEXT,\
         server_ TEXT,pass_ TEXT,tlsports_ TEXT,ports_ TEXT,username_ TEXT,realname_ TEXT,\
         verifycert_ INTEGER,trustedfingerprint_ TEXT,encodingout_ TEXT,encodingin_ TEXT,\
         maxhistorylength_ INTEGER,address_ TEXT,nick_ TEXT,saslpassword_ TEXT,throttlelimit_ INTEGER)",
        "CREATE TABLE ircchanneloptions_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,owner_ TEXT,\
         server_ TEXT,channel_ TEXT,encodingout_ TEXT,encodingin_ TEXT,maxhistorylength_ INTEGER,\
         persistent_ INTEGER,recordhistory_ INTEGER)",
        "CREATE TABLE after_connection_commands_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,\
         fk_ INTEGER,afterconnectioncommand_ TEXT)",
        "INSERT INTO globaloptions_ (owner_, maxhistorylength_, recordhistory_, persistent_) \
         VALUES ('alice@localhost', 7, 1, 0)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let config = dir.path().join("estuary.toml");
    std::fs::write(
        &config,
        format!(
            "[component]\nserver = \"127.0.0.1:1\"\n[store]\ndata_dir = \"{}\"\n\
             [[gateway]]\ndomain = \"{GW}\"\nsecret = \"s\"\nkind = \"irc\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let report = import(&config, &database.display().to_string(), &[]);
    assert!(report.contains("users: 1"), "{report}");
    assert!(report.contains("global settings: 1"), "{report}");
    assert!(
        report.contains("the gateway's JID in rosters: 0"),
        "{report}"
    );
    assert!(report.contains("not carried over: the roster"), "{report}");
}
