//! `irc_load`: the IRC gateway's load tool (the benchmark the IRC issue asks
//! for).
//!
//! # Running it
//!
//! ```sh
//! cargo bench --bench irc_load
//! ```
//!
//! That one command builds this tool and `target/release/estuary` in the
//! optimised bench profile (which is the release profile), then runs the
//! tool. It is never built by `cargo test`. It needs `prosody` and
//! `inspircd` installed (`scripts/test` installs both). One JSON object goes
//! to stdout; human progress goes to stderr. A run takes a few minutes at
//! most: every count is bounded and every wait has a timeout. A phase that
//! times out reports what it received and the run goes on.
//!
//! Smaller or larger runs, for example while debugging:
//! `IRC_LOAD_MESSAGES=500 IRC_LOAD_USERS=10 cargo bench --bench irc_load`.
//! The variables are `IRC_LOAD_MESSAGES` (messages per throughput phase,
//! default 5000), `IRC_LOAD_LATENCY_MESSAGES` (default 200, one every 5 ms),
//! `IRC_LOAD_USERS` (default 100) and `IRC_LOAD_FANOUT_MESSAGES` (default
//! 200). Each is capped, so a run stays bounded. `IRC_LOAD_ESTUARY` runs
//! another Estuary binary than this checkout's release build, to compare two
//! builds on the same machine, one run after the other.
//!
//! # What runs
//!
//! Everything runs on 127.0.0.1, in temporary directories, and is stopped at
//! the end:
//! - Prosody from the test world, with the components `irc.localhost` and
//!   `bound.localhost` (the stand-in gateway, below). Its log level is
//!   `warn`: the test world's debug log would make Prosody's logging the
//!   bottleneck of every figure.
//! - InspIRCd from the test world, with no flood limits (`fakelag="no"`).
//! - Estuary as a separate process: `target/release/estuary`, with a
//!   generated TOML config. The store is SQLite in a temporary directory.
//!   The gateway `irc.localhost` is of kind `irc`, and its server
//!   `localhost` has `throttle_burst = 1000000` and
//!   `throttle_per_sec = 1000000`, so flood control does not cap the
//!   figures. It runs with `ESTUARY_LOG=warn`.
//! - The test world's raw XMPP and IRC clients, inside this process. All
//!   timestamps come from this process's monotonic clock. The timestamps are
//!   embedded in message bodies as `<tag> <seq> <nanoseconds>`. The tool
//!   sets TCP_NODELAY on its own client sockets, which the test world's
//!   clients do not do, so that Nagle's algorithm in the tool does not show
//!   in the figures. Its IRC clients also acknowledge every read at once
//!   (TCP_QUICKACK, as Estuary does on its IRC connections): InspIRCd leaves
//!   Nagle on, so each of its lines written behind an unacknowledged one
//!   waited for the tool's delayed ACK, up to 40 ms. The servers and Estuary
//!   run as they are.
//!
//! Every throughput phase sends the same way: bursts of 20 messages, each
//! burst written at once, while fewer than 400 messages are in flight (sent
//! and not yet received). Without that window, one IRC client writing
//! thousands of lines at once measures InspIRCd alone: it works through a
//! long backlog from one client at about 500 lines/s.
//!
//! The machine is shared: Prosody, InspIRCd, Estuary and this tool's clients
//! all compete for the same cores. The `cpu_ms_by_process` part of each
//! phase shows who used the CPU.
//!
//! # The figures
//!
//! - `rounds`: the throughput phases run in [`ROUNDS`] rounds, each the
//!   c2s ceiling, its like-clients variant, then the gateway IRC → XMPP and
//!   XMPP → IRC, then the stand-in gateway both ways; each round's ratios are against its own ceiling. The
//!   figures below are the medians over the rounds, and the ratios in
//!   `targets` are the medians of the rounds' ratios.
//! - `prosody_ceiling_msgs_per_s`: Prosody's own c2s throughput in this run.
//!   One XMPP client sends N chat messages to another. The figure is N
//!   received, divided by the time from the first send to the last receipt.
//!   `irc_client_ceiling_msgs_per_s` is the same between two IRC clients in
//!   a channel. `prosody_ceiling_like_clients` (a diagnostic, not the
//!   target) repeats the c2s phase with messages that also carry an origin-id
//!   and a UUID-long id, as real clients send: as many elements as the
//!   gateway's messages, whose stanza-id Prosody must parse and write too.
//! - `irc_to_xmpp_msgs_per_s`: one XMPP user has registered with the gateway
//!   (XEP-0077, nick `alice`) and joined `#bench%localhost@irc.localhost/alice`.
//!   A plain IRC client (`bob`) in `#bench` sends N PRIVMSGs. The XMPP
//!   client counts the groupchat messages. The figure is messages received
//!   per second, from the first send to the last receipt.
//! - `xmpp_to_irc_msgs_per_s`: the reverse. The XMPP client sends N
//!   groupchat messages, and `bob` counts the PRIVMSGs. The gateway also
//!   reflects each message back to the XMPP client once the IRC server has
//!   echoed it. If a phase stalls, its figure is computed over what did
//!   arrive, and the phase is listed in `anomalies`.
//! - `stand_in_gateway`: what any gateway could reach on this Prosody. A
//!   second component of the same Prosody (`bound.localhost`,
//!   `benches/irc_load/stand_in.rs`) sends only the stanzas the issue
//!   requires of the gateway, with no network behind it and next to no
//!   work: to IRC → XMPP's client, the gateway's groupchat message (an
//!   in-room sender, an `id` and a stanza-id, each id 22 characters as
//!   Estuary's); from XMPP → IRC's client, it counts each groupchat message
//!   as sent to the network and reflects it at once under the client's id
//!   with a stanza-id. Both are windowed as the gateway's phases are, in
//!   each round right after them. Its ratios are to the same ceiling, and
//!   `estuary_share_of_it` is Estuary's rate over the stand-in's, the median
//!   of the rounds'.
//! - `irc_to_xmpp_latency_ms` and `xmpp_to_irc_latency_ms`: `{p50, p99}` of
//!   the send-to-receipt time over paced messages (200, one every 5 ms), so
//!   they measure latency rather than queueing.
//! - `baseline_latency_ms`: the same paced measurement without the gateway.
//!   `prosody_c2s` is an XMPP client sending to another XMPP client, and
//!   `irc_client_to_client` is an IRC client sending to another IRC client
//!   in a channel.
//! - `added_latency_ms`: for each direction, the gateway path's p50 minus
//!   the p50 of both baselines. The gateway path is an IRC hop (client →
//!   InspIRCd → Estuary), then Estuary, then an XMPP hop (Estuary → Prosody
//!   → client). Those two hops are what the two baselines measure, each
//!   with a client on both ends. So the difference is Estuary's own time:
//!   reading, handling and writing a message, less what a bare test client
//!   spends reading and writing one. Noise can make it slightly negative.
//! - `deliveries_per_s_100_users`: 100 XMPP users each register with
//!   Prosody and the gateway, connect at the same time and join the same
//!   channel (`#fan`) through the gateway, which makes 100 IRC connections.
//!   One IRC client then sends M messages (default 200). The figure is the deliveries received (M × 100 when nothing is lost),
//!   divided by the time from the first send until the last client received
//!   its last message.
//! - `gateway_cpu_ms_per_1000_msgs`: Estuary's user plus system CPU time,
//!   from `/proc/<pid>/stat` (clock ticks, converted with
//!   `sysconf(_SC_CLK_TCK)`), over the gateway's throughput phases (IRC →
//!   XMPP, then XMPP → IRC, sampled before the first and after the second
//!   of each round). It is divided by the messages delivered in those
//!   phases, per 1000. A message to IRC also costs the reflection back to the XMPP
//!   client. The fan-out's CPU per 1000 deliveries is in
//!   `phases.fanout.gateway_cpu_ms_per_1000_deliveries`.
//! - `gateway_cpu_per_prosody_ceiling_cpu`: that CPU divided by Prosody's
//!   CPU per 1000 messages in this run's c2s ceiling phases. Not a target: a
//!   yardstick for comparing two builds on a host whose speed drifts between
//!   runs (both figures move with it).
//! - `rss_kb_per_joined_user`: Estuary's `VmRSS` from `/proc/<pid>/status`
//!   after the users joined (and 2 s to settle), less before, divided by the
//!   number of users who joined. Each side is the least of readings every
//!   250 ms until none has set a new low for two seconds (at most ten),
//!   since one reading swings with what is in flight, and memory freed
//!   after a burst goes back to the system over a few seconds.
//! - `targets`: the issue's targets, each with its value and `met`.
//!   - Throughput to and from IRC: at least 80% of the Prosody ceiling,
//!     with every message delivered.
//!   - CPU: at most 30 ms per 1000 messages.
//!   - Added latency: p50 at most 0.5 ms, in both directions.
//!   - Memory: at most 32 KB per joined user.
//! - `phases`: per phase, what was sent and received, duplicates,
//!   reordering, errors, timeouts and CPU by process. The last phase,
//!   `xmpp_to_irc_unwindowed_burst`, is an overload check rather than a
//!   figure: the XMPP user writes 3000 groupchat messages at once, with no
//!   window, and every one should still reach IRC.
//! - `anomalies`: each phase that lost messages, stalled, duplicated or
//!   saw errors, in one line. `gateway_log` counts the warnings and errors
//!   Estuary logged, and `gateway_stop` says how the SIGTERM shutdown went.

#[path = "irc_load/stand_in.rs"]
mod stand_in;
#[path = "../tests/world/mod.rs"]
mod world;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use stand_in::StandIn;
use world::{attr, body, el, Element, Inspircd, IrcClient, IrcLine, Prosody, XmppClient};

/// The gateway's component domain.
const GW: &str = "irc.localhost";
const SECRET: &str = "irc-load-secret";
/// The IRC server's name in JIDs (`#chan%localhost@irc.localhost`).
const IRC_NAME: &str = "localhost";
/// The XMPP users' domain (the test world's only virtual host).
const DOMAIN: &str = "localhost";
const PASSWORD: &str = "pw";
const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";

/// Lines or stanzas written at once by a bursting sender.
const BURST: usize = 20;
/// The interval between paced messages in the latency phases.
const PACE: Duration = Duration::from_millis(5);
/// The longest a throughput or latency phase may take.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a receiver waits without progress before it gives up.
const STALL: Duration = Duration::from_secs(10);
/// The longest the users of the fan-out may take to connect and join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Setup steps: the link coming up, a registration, a join.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most messages in flight in [`Mode::Windowed`]. It keeps the IRC server's
/// receive queue short: InspIRCd works through a long backlog from one
/// client slowly (about 500 lines/s for 5000 lines written at once, against
/// 18,000 lines/s when they come in bursts of 20 a millisecond apart).
const WINDOW: usize = 400;
/// Messages of the overload phase: more than the gateway's per-user event
/// queue (1024), written at once.
const OVERLOAD: usize = 3000;
/// Messages sent, and awaited, before each measured path.
const WARMUP: usize = 20;

/// The issue's targets.
const TARGET_THROUGHPUT_RATIO: f64 = 0.8;
const TARGET_CPU_MS_PER_1000: f64 = 30.0;
const TARGET_ADDED_LATENCY_MS: f64 = 0.5;
const TARGET_RSS_KB_PER_USER: f64 = 32.0;

/// Rounds of the throughput comparison. The machine's speed drifts during a
/// run (it is a shared virtual machine), so one ceiling measured a minute
/// before the gateway's phases made single ratios swing by 0.2 from run to
/// run; each round measures the ceiling next to the gateway's phases, and
/// the figures are medians over the rounds.
const ROUNDS: usize = 3;

/// One round: the ceilings, then the gateway both ways, then the stand-in
/// gateway both ways, in messages/s.
struct Round {
    ceiling: f64,
    like_clients: f64,
    i2x: f64,
    x2i: f64,
    stand_in_i2x: f64,
    stand_in_x2i: f64,
}

impl Round {
    fn json(&self) -> Value {
        json!({
            "prosody_ceiling_msgs_per_s": round(self.ceiling, 0),
            "prosody_ceiling_like_clients_msgs_per_s": round(self.like_clients, 0),
            "irc_to_xmpp_msgs_per_s": round(self.i2x, 0),
            "xmpp_to_irc_msgs_per_s": round(self.x2i, 0),
            "irc_to_xmpp_ratio": (self.ceiling > 0.0).then(|| round(self.i2x / self.ceiling, 3)),
            "xmpp_to_irc_ratio": (self.ceiling > 0.0).then(|| round(self.x2i / self.ceiling, 3)),
            "stand_in_irc_to_xmpp_ratio": (self.ceiling > 0.0)
                .then(|| round(self.stand_in_i2x / self.ceiling, 3)),
            "stand_in_xmpp_to_irc_ratio": (self.ceiling > 0.0)
                .then(|| round(self.stand_in_x2i / self.ceiling, 3)),
        })
    }
}

/// The median of some figures; `None` when there are none.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The counts of one run.
#[derive(Clone, Copy)]
struct Counts {
    messages: usize,
    latency_messages: usize,
    users: usize,
    fanout_messages: usize,
}

impl Counts {
    fn from_env() -> Counts {
        Counts {
            messages: env_count("IRC_LOAD_MESSAGES", 5000, 100_000),
            latency_messages: env_count("IRC_LOAD_LATENCY_MESSAGES", 200, 10_000),
            users: env_count("IRC_LOAD_USERS", 100, 500),
            fanout_messages: env_count("IRC_LOAD_FANOUT_MESSAGES", 200, 10_000),
        }
    }
}

/// A positive count from the environment, `default` when unset, capped.
fn env_count(name: &str, default: usize, max: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n.min(max),
            _ => {
                eprintln!("ignoring {name}={v:?}: not a positive number");
                default
            }
        },
        Err(_) => default,
    }
}

fn main() {
    let started = Instant::now();
    let counts = Counts::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let mut report = runtime.block_on(run(counts));
    report["run_seconds"] = json!(round(started.elapsed().as_secs_f64(), 1));
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("serialise the report")
    );
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

async fn run(counts: Counts) -> Value {
    let binary = estuary_binary();
    let dir = tempfile::Builder::new()
        .prefix("irc-load-")
        .tempdir()
        .expect("create a temporary directory");

    progress("starting Prosody and InspIRCd");
    let prosody_log = dir.path().join("prosody-warn.log");
    let prosody = Prosody::start_with(
        &[(GW, SECRET), (stand_in::DOMAIN, stand_in::SECRET)],
        &format!("log = {{ warn = \"{}\" }}", prosody_log.display()),
    );
    let ircd = Inspircd::start();

    progress("starting Estuary");
    let mut gateway = Gateway::start(&binary, dir.path(), &prosody, &ircd);
    let procs = Procs {
        estuary: gateway.pid(),
        prosody: find_pid(&prosody.log_path().with_file_name("prosody.cfg.lua")),
        inspircd: find_pid(ircd.config_path()),
        bench: std::process::id(),
    };

    let mut phases = serde_json::Map::new();
    let c2s = prosody.c2s_port();
    for user in ["pa", "pb", "alice"] {
        prosody.add_user(user, PASSWORD);
    }
    let mut pa = XmppClient::connect(c2s, "pa", DOMAIN, PASSWORD, "bench").await;
    let mut pb = XmppClient::connect(c2s, "pb", DOMAIN, PASSWORD, "bench").await;
    pa.send(el("<presence/>")).await;
    pb.send(el("<presence/>")).await;
    wait_for_link(&mut pa, &mut gateway).await;
    let servers = [c2s, ircd.port()];
    nodelay_client_sockets(&servers);

    // --- Prosody on its own ------------------------------------------------
    let pb_jid = pb.jid();
    progress("Prosody c2s → c2s: warm-up and latency baseline");
    let (pa, pb, _) = xmpp_to_xmpp(
        pa,
        pb,
        &pb_jid,
        "warm_x",
        WARMUP,
        Mode::Burst,
        Shape::Plain,
        &procs,
    )
    .await;
    let (pa, pb, base_xmpp) = xmpp_to_xmpp(
        pa,
        pb,
        &pb_jid,
        "base_x",
        counts.latency_messages,
        Mode::Paced,
        Shape::Plain,
        &procs,
    )
    .await;
    let base_xmpp_latency = base_xmpp.latency();
    phases.insert("prosody_c2s_latency".into(), base_xmpp.json());

    // --- IRC on its own ----------------------------------------------------
    progress("IRC clients bob and carol");
    let mut bob = IrcClient::connect(ircd.port(), "bob").await;
    let mut carol = IrcClient::connect(ircd.port(), "carol").await;
    nodelay_client_sockets(&servers);
    bob.acknowledge_at_once();
    carol.acknowledge_at_once();
    bob.join("#base").await;
    carol.join("#base").await;
    irc_drain(&mut bob).await;
    progress("IRC client → client: warm-up and latency baseline");
    let (bob, carol, _) =
        irc_to_irc(bob, carol, "#base", "warm_i", WARMUP, Mode::Burst, &procs).await;
    let (bob, carol, base_irc) = irc_to_irc(
        bob,
        carol,
        "#base",
        "base_i",
        counts.latency_messages,
        Mode::Paced,
        &procs,
    )
    .await;
    progress(&format!(
        "IRC client → client: {} PRIVMSGs in bursts of {BURST}, at most {WINDOW} in flight",
        counts.messages
    ));
    let (mut bob, mut carol, irc_ceiling) = irc_to_irc(
        bob,
        carol,
        "#base",
        "ceil_i",
        counts.messages,
        Mode::Windowed,
        &procs,
    )
    .await;
    let base_irc_latency = base_irc.latency();
    phases.insert("irc_client_latency".into(), base_irc.json());
    phases.insert("irc_client_throughput".into(), irc_ceiling.json());

    // --- One user through the gateway --------------------------------------
    progress("alice registers with the gateway and joins #bench");
    bob.join("#bench").await;
    let room = format!("#bench%{IRC_NAME}@{GW}");
    let alice = match join_user(c2s, "alice", &room).await {
        Ok(alice) => {
            nodelay_client_sockets(&servers);
            Some(alice)
        }
        Err(e) => {
            progress(&format!("alice could not join: {e}"));
            phases.insert("alice_join".into(), json!({ "error": e }));
            None
        }
    };
    let mut stand_in = match StandIn::connect(prosody.component_port()).await {
        Ok(stand_in) => Some(stand_in),
        Err(e) => {
            progress(&format!("the stand-in gateway could not connect: {e}"));
            phases.insert("stand_in_connect".into(), json!({ "error": e }));
            None
        }
    };
    let mut rounds: Vec<Round> = Vec::new();
    let mut i2x_latency = None;
    let mut x2i_latency = None;
    let mut throughput_cpu_ms = 0.0;
    let mut throughput_handled = 0;
    let mut alice_left = None;
    let mut throughput_complete = true;
    let (mut pa, mut pb) = (pa, pb);
    if let Some(alice) = alice {
        irc_drain(&mut bob).await;
        progress("gateway: warm-up both ways");
        let (b, alice, warm_i) =
            irc_to_xmpp(bob, alice, &room, "warm_i2x", WARMUP, Mode::Burst, &procs).await;
        let (alice, b, warm_x) =
            xmpp_to_irc(alice, b, &room, "warm_x2i", WARMUP, Mode::Burst, &procs).await;
        phases.insert(
            "gateway_warmup".into(),
            json!({ "irc_to_xmpp": warm_i.json(), "xmpp_to_irc": warm_x.json() }),
        );

        progress("gateway: paced latency, IRC → XMPP then XMPP → IRC");
        let (b, alice, lat_i) = irc_to_xmpp(
            b,
            alice,
            &room,
            "lat_i2x",
            counts.latency_messages,
            Mode::Paced,
            &procs,
        )
        .await;
        let (alice, b, lat_x) = xmpp_to_irc(
            alice,
            b,
            &room,
            "lat_x2i",
            counts.latency_messages,
            Mode::Paced,
            &procs,
        )
        .await;

        let mut b = b;
        let mut alice = alice;
        for round in 1..=ROUNDS {
            progress(&format!(
                "round {round}/{ROUNDS}: {} messages each, Prosody c2s → c2s (plain, then shaped \
                 like clients'), IRC → XMPP, XMPP → IRC",
                counts.messages
            ));
            let (a, c, ceiling) = xmpp_to_xmpp(
                pa,
                pb,
                &pb_jid,
                &format!("ceil_x{round}"),
                counts.messages,
                Mode::Windowed,
                Shape::Plain,
                &procs,
            )
            .await;
            let (a, c, like_clients) = xmpp_to_xmpp(
                a,
                c,
                &pb_jid,
                &format!("ceil_xs{round}"),
                counts.messages,
                Mode::Windowed,
                Shape::LikeClients,
                &procs,
            )
            .await;
            (pa, pb) = (a, c);
            let before = procs.sample();
            let (b2, alice2, tp_i) = irc_to_xmpp(
                b,
                alice,
                &room,
                &format!("tp_i2x{round}"),
                counts.messages,
                Mode::Windowed,
                &procs,
            )
            .await;
            let (alice2, b2, tp_x) = xmpp_to_irc(
                alice2,
                b2,
                &room,
                &format!("tp_x2i{round}"),
                counts.messages,
                Mode::Windowed,
                &procs,
            )
            .await;
            let after = procs.sample();
            (b, alice) = (b2, alice2);
            let (mut stand_in_i2x, mut stand_in_x2i) = (0.0, 0.0);
            if let Some(s) = stand_in.take() {
                let (s, c, tp) = stand_in_to_xmpp(
                    s,
                    pb,
                    &pb_jid,
                    &format!("si_i2x{round}"),
                    counts.messages,
                    &procs,
                )
                .await;
                stand_in_i2x = tp.rate();
                phases.insert(format!("stand_in_irc_to_xmpp_{round}"), tp.json());
                let (a, s, tp) =
                    xmpp_to_stand_in(pa, s, &format!("si_x2i{round}"), counts.messages, &procs)
                        .await;
                stand_in_x2i = tp.rate();
                phases.insert(format!("stand_in_xmpp_to_irc_{round}"), tp.json());
                (pa, pb, stand_in) = (a, c, Some(s));
            }
            throughput_cpu_ms += after.estuary_ms_since(&before);
            throughput_handled += tp_i.unique + tp_x.unique;
            throughput_complete &= tp_i.tally.complete() && tp_x.tally.complete();
            rounds.push(Round {
                ceiling: ceiling.rate(),
                like_clients: like_clients.rate(),
                i2x: tp_i.rate(),
                x2i: tp_x.rate(),
                stand_in_i2x,
                stand_in_x2i,
            });
            phases.insert(format!("prosody_c2s_throughput_{round}"), ceiling.json());
            phases.insert(
                format!("prosody_c2s_throughput_like_clients_{round}"),
                like_clients.json(),
            );
            phases.insert(format!("irc_to_xmpp_throughput_{round}"), tp_i.json());
            phases.insert(format!("xmpp_to_irc_throughput_{round}"), tp_x.json());
        }
        bob = b;
        i2x_latency = Some(lat_i.latency());
        x2i_latency = Some(lat_x.latency());
        phases.insert("irc_to_xmpp_latency".into(), lat_i.json());
        phases.insert("xmpp_to_irc_latency".into(), lat_x.json());
        alice_left = Some(alice);
    }

    pa.close().await;
    pb.close().await;

    // --- Many users through the gateway ------------------------------------
    let fanout = fanout(&prosody, &mut carol, counts, &procs, &mut bob).await;
    let rss_per_user = fanout.rss_kb_per_user;
    let deliveries = fanout.deliveries_per_s;
    phases.insert("fanout".into(), fanout.json);

    // --- Overload: one XMPP user sends without flow control ----------------
    if let Some(alice) = alice_left {
        progress(&format!(
            "overload: alice sends {OVERLOAD} groupchat messages at once, without flow control"
        ));
        irc_drain(&mut bob).await;
        let (alice, b, burst) = xmpp_to_irc(
            alice,
            bob,
            &room,
            "burst_x2i",
            OVERLOAD,
            Mode::Burst,
            &procs,
        )
        .await;
        bob = b;
        phases.insert("xmpp_to_irc_unwindowed_burst".into(), burst.json());
        alice.close().await;
    }
    let anomalies = anomalies(&phases);

    // --- Stop everything ---------------------------------------------------
    progress("stopping");
    bob.quit("done").await;
    carol.quit("done").await;
    let stop = gateway.stop();
    let gateway_log = gateway.log_summary();
    drop(ircd);
    drop(prosody);

    // --- The report --------------------------------------------------------
    let added = |path: Option<Latency>| -> Option<f64> {
        let path = path?;
        Some(path.p50_ms? - base_irc_latency.p50_ms? - base_xmpp_latency.p50_ms?)
    };
    let added_i2x = added(i2x_latency);
    let added_x2i = added(x2i_latency);
    let cpu_per_1000 =
        (throughput_handled > 0).then(|| throughput_cpu_ms * 1000.0 / throughput_handled as f64);
    let cpu_vs_prosody = cpu_per_1000
        .zip(prosody_ceiling_cpu_per_1000(&phases))
        .filter(|(_, prosody)| *prosody > 0.0)
        .map(|(gateway, prosody)| gateway / prosody);
    let prosody_ceiling = median(rounds.iter().map(|r| r.ceiling)).unwrap_or(0.0);
    let like_clients_ceiling = median(rounds.iter().map(|r| r.like_clients)).unwrap_or(0.0);
    let i2x = median(rounds.iter().map(|r| r.i2x));
    let x2i = median(rounds.iter().map(|r| r.x2i));
    // Each round's rates over the ceiling measured just before them, so
    // that the machine's speed, which drifts during a run, cancels out.
    let ratio_of = |rate: fn(&Round) -> f64, ceiling: fn(&Round) -> f64| {
        median(
            rounds
                .iter()
                .filter(|r| ceiling(r) > 0.0)
                .map(|r| rate(r) / ceiling(r)),
        )
        .map(|v| round(v, 3))
    };
    let i2x_ratio = ratio_of(|r| r.i2x, |r| r.ceiling);
    let x2i_ratio = ratio_of(|r| r.x2i, |r| r.ceiling);
    let threshold = prosody_ceiling * TARGET_THROUGHPUT_RATIO;
    let worst_added = match (added_i2x, added_x2i) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    json!({
        "prosody_ceiling_msgs_per_s": round(prosody_ceiling, 0),
        "prosody_ceiling_like_clients": {
            "msgs_per_s": round(like_clients_ceiling, 0),
            "irc_to_xmpp_ratio": ratio_of(|r| r.i2x, |r| r.like_clients),
            "xmpp_to_irc_ratio": ratio_of(|r| r.x2i, |r| r.like_clients),
            "note": "Diagnostic, not the target: the same c2s phase with messages carrying a \
                     UUID-long id and an XEP-0359 origin-id, as Conversations, Dino and Gajim \
                     send; that is the element and attribute count of the gateway's messages \
                     (which carry a stanza-id). Prosody's cost per stanza grows with its \
                     elements. An XMPP → IRC message is two stanzas through Prosody (the \
                     message and its reflection), so it cannot reach the c2s rate of one.",
        },
        "stand_in_gateway": {
            "irc_to_xmpp_ratio": ratio_of(|r| r.stand_in_i2x, |r| r.ceiling),
            "xmpp_to_irc_ratio": ratio_of(|r| r.stand_in_x2i, |r| r.ceiling),
            "estuary_share_of_it": {
                "irc_to_xmpp": ratio_of(|r| r.i2x, |r| r.stand_in_i2x),
                "xmpp_to_irc": ratio_of(|r| r.x2i, |r| r.stand_in_x2i),
            },
            "note": "The bound for any gateway on this Prosody: a second component that \
                     sends only the stanzas the issue requires (the groupchat message with an \
                     id and a stanza-id; for XMPP → IRC the reflection too) with no network \
                     behind it, windowed as the gateway's phases are, in the same rounds. \
                     Ratios are to the same c2s ceiling; estuary_share_of_it is Estuary's rate \
                     over the stand-in's, round by round.",
        },
        "rounds": rounds.iter().map(Round::json).collect::<Vec<_>>(),
        "irc_to_xmpp_msgs_per_s": i2x.map(|r| round(r, 0)),
        "xmpp_to_irc_msgs_per_s": x2i.map(|r| round(r, 0)),
        "irc_client_ceiling_msgs_per_s": round(irc_ceiling_rate(&phases), 0),
        "irc_to_xmpp_latency_ms": i2x_latency.map(Latency::json),
        "xmpp_to_irc_latency_ms": x2i_latency.map(Latency::json),
        "baseline_latency_ms": {
            "prosody_c2s": base_xmpp_latency.json(),
            "irc_client_to_client": base_irc_latency.json(),
        },
        "added_latency_ms": {
            "irc_to_xmpp_p50": added_i2x.map(|v| round(v, 3)),
            "xmpp_to_irc_p50": added_x2i.map(|v| round(v, 3)),
            "note": "gateway path p50 minus (Prosody c2s→c2s p50 + IRC client→client p50), \
                     all paced (one message every 5 ms) in this run. The gateway path is an IRC \
                     hop, Estuary and an XMPP hop; each baseline is one of those hops between two \
                     test clients, so the difference is Estuary's own read + handle + write time \
                     less a test client's read + write. Noise can make it slightly negative.",
        },
        "deliveries_per_s_100_users": deliveries.map(|r| round(r, 0)),
        "gateway_cpu_ms_per_1000_msgs": cpu_per_1000.map(|v| round(v, 2)),
        "gateway_cpu_note": "Estuary utime+stime over the two throughput phases (IRC → XMPP, then \
                             XMPP → IRC), divided by the messages delivered in them; an XMPP → IRC \
                             message also costs its reflection to the sender.",
        "gateway_cpu_per_prosody_ceiling_cpu": cpu_vs_prosody.map(|v| round(v, 3)),
        "gateway_cpu_per_prosody_ceiling_cpu_note": "gateway_cpu_ms_per_1000_msgs divided by \
                             Prosody's CPU per 1000 messages in this run's c2s ceiling phases: \
                             a yardstick for comparing builds on a host whose speed drifts \
                             between runs, since both move with it.",
        "rss_kb_per_joined_user": rss_per_user.map(|v| round(v, 1)),
        "targets": {
            "throughput": {
                "target": "irc_to_xmpp and xmpp_to_irc >= 80% of prosody_ceiling_msgs_per_s, \
                           every message delivered",
                "all_delivered": throughput_complete,
                "threshold_msgs_per_s": round(threshold, 0),
                "irc_to_xmpp_ratio": i2x_ratio,
                "xmpp_to_irc_ratio": x2i_ratio,
                "met": throughput_complete
                    && i2x_ratio.is_some_and(|r| r >= TARGET_THROUGHPUT_RATIO)
                    && x2i_ratio.is_some_and(|r| r >= TARGET_THROUGHPUT_RATIO),
            },
            "cpu": {
                "target": "gateway_cpu_ms_per_1000_msgs <= 30",
                "value": cpu_per_1000.map(|v| round(v, 2)),
                "met": cpu_per_1000.is_some_and(|v| v <= TARGET_CPU_MS_PER_1000),
            },
            "added_latency": {
                "target": "added latency p50 <= 0.5 ms in both directions",
                "value": worst_added.map(|v| round(v, 3)),
                "met": worst_added.is_some_and(|v| v <= TARGET_ADDED_LATENCY_MS),
            },
            "memory": {
                "target": "rss_kb_per_joined_user <= 32",
                "value": rss_per_user.map(|v| round(v, 1)),
                "met": rss_per_user.is_some_and(|v| v <= TARGET_RSS_KB_PER_USER),
            },
        },
        "counts": {
            "messages_per_throughput_phase": counts.messages,
            "latency_messages": counts.latency_messages,
            "latency_interval_ms": PACE.as_millis() as u64,
            "burst_lines": BURST,
            "users": counts.users,
            "fanout_messages": counts.fanout_messages,
        },
        "anomalies": anomalies,
        "phases": phases,
        "gateway_stop": stop,
        "gateway_log": gateway_log,
        "estuary_binary": binary.display().to_string(),
    })
}

/// Phases that lost messages, duplicated them, saw errors or did not finish.
fn anomalies(phases: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    for (name, phase) in phases {
        if name == "fanout" {
            let expected = phase["deliveries_expected"].as_u64().unwrap_or(0);
            let got = phase["deliveries"].as_u64().unwrap_or(0);
            let failures = phase["join_failures"].as_u64().unwrap_or(0);
            if got < expected || failures > 0 {
                found.push(format!(
                    "fanout: {got} of {expected} deliveries, {failures} users failed to join"
                ));
            }
            continue;
        }
        if phase.get("sent").is_none() {
            continue;
        }
        let sent = phase["sent"].as_u64().unwrap_or(0);
        let received = phase["received"].as_u64().unwrap_or(0);
        let end = phase["end"].as_str().unwrap_or("");
        let duplicates = phase["duplicates"].as_u64().unwrap_or(0);
        let errors = phase["receiver_errors"].as_u64().unwrap_or(0)
            + phase["sender_errors"]
                .as_array()
                .map_or(0, |a| a.len() as u64);
        if end != "complete" || received < sent || duplicates > 0 || errors > 0 {
            found.push(format!(
                "{name}: received {received} of {sent} ({end}), {duplicates} duplicates, \
                 {errors} errors, {} stanzas or lines read back by the sender",
                phase["sender_read_meanwhile"]
            ));
        }
    }
    found
}

/// Prosody's CPU per 1000 messages over the run's c2s ceiling phases (the
/// body-only ones), from each phase's CPU and delivered count.
fn prosody_ceiling_cpu_per_1000(phases: &serde_json::Map<String, Value>) -> Option<f64> {
    let (mut cpu_ms, mut received) = (0.0, 0.0);
    for (name, phase) in phases {
        let round = name.strip_prefix("prosody_c2s_throughput_");
        if round.is_some_and(|r| r.parse::<u32>().is_ok()) {
            cpu_ms += phase["cpu_ms_by_process"]["prosody"].as_f64()?;
            received += phase["received"].as_f64()?;
        }
    }
    (received > 0.0).then(|| cpu_ms * 1000.0 / received)
}

fn irc_ceiling_rate(phases: &serde_json::Map<String, Value>) -> f64 {
    phases
        .get("irc_client_throughput")
        .and_then(|p| p["msgs_per_s"].as_f64())
        .unwrap_or(0.0)
}

fn progress(what: &str) {
    eprintln!(
        "[irc_load {:>6.1}s] {what}",
        clock().elapsed().as_secs_f64()
    );
}

fn round(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

// ---------------------------------------------------------------------------
// The clock and message bodies
// ---------------------------------------------------------------------------

/// The process's reference instant; bodies carry nanoseconds since it.
fn clock() -> &'static Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(clock().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// `<tag> <seq> <ns>`.
fn stamp(tag: &str, seq: usize) -> String {
    format!("{tag} {seq} {}", now_ns())
}

fn parse_stamp(text: &str) -> Option<(&str, usize, u64)> {
    let mut words = text.split(' ');
    let tag = words.next()?;
    let seq = words.next()?.parse().ok()?;
    let ns = words.next()?.parse().ok()?;
    Some((tag, seq, ns))
}

// ---------------------------------------------------------------------------
// Counting what arrives
// ---------------------------------------------------------------------------

/// What one receiver saw of one phase.
struct Tally {
    tag: String,
    expected: usize,
    seen: Vec<bool>,
    unique: usize,
    duplicates: usize,
    out_of_order: usize,
    last_seq: Option<usize>,
    latencies_ns: Vec<u64>,
    last_at: Option<Instant>,
    errors: usize,
    first_error: Option<String>,
    /// Other stanzas or lines that arrived meanwhile (e.g. reflections).
    other: usize,
    end: &'static str,
    flow: Option<Flow>,
}

impl Tally {
    fn new(tag: &str, expected: usize) -> Tally {
        Tally {
            tag: tag.to_owned(),
            expected,
            seen: vec![false; expected],
            unique: 0,
            duplicates: 0,
            out_of_order: 0,
            last_seq: None,
            latencies_ns: Vec::with_capacity(expected),
            last_at: None,
            errors: 0,
            first_error: None,
            other: 0,
            end: "running",
            flow: None,
        }
    }

    fn with_flow(mut self, flow: &Flow) -> Tally {
        self.flow = Some(flow.clone());
        self
    }

    fn complete(&self) -> bool {
        self.unique >= self.expected
    }

    /// Counts `text` if it is one of this phase's bodies; true if it was.
    fn offer(&mut self, text: &str) -> bool {
        let Some((tag, seq, sent_ns)) = parse_stamp(text) else {
            return false;
        };
        if tag != self.tag || seq >= self.expected {
            return false;
        }
        let now = now_ns();
        if self.seen[seq] {
            self.duplicates += 1;
            return true;
        }
        self.seen[seq] = true;
        self.unique += 1;
        if let Some(flow) = &self.flow {
            flow.received.fetch_add(1, Ordering::Relaxed);
        }
        if self.last_seq.is_some_and(|last| seq < last) {
            self.out_of_order += 1;
        }
        self.last_seq = Some(seq);
        self.latencies_ns.push(now.saturating_sub(sent_ns));
        self.last_at = Some(Instant::now());
        true
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }

    fn latency(&self) -> Latency {
        let mut v = self.latencies_ns.clone();
        v.sort_unstable();
        let pick = |p: f64| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            Some(v[rank - 1] as f64 / 1e6)
        };
        Latency {
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
        }
    }

    /// The first missing sequence numbers, for the report.
    fn missing(&self) -> Vec<usize> {
        self.seen
            .iter()
            .enumerate()
            .filter(|(_, seen)| !**seen)
            .map(|(i, _)| i)
            .take(10)
            .collect()
    }
}

#[derive(Clone, Copy, Default)]
struct Latency {
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

impl Latency {
    fn json(self) -> Value {
        json!({
            "p50": self.p50_ms.map(|v| round(v, 3)),
            "p99": self.p99_ms.map(|v| round(v, 3)),
            "max": self.max_ms.map(|v| round(v, 3)),
        })
    }
}

/// How long a collector may still wait for its next message, or how its
/// phase ended: at the deadline, or with nothing new for [`STALL`].
fn wait_left(progress_at: Instant, deadline: Instant) -> Result<Duration, &'static str> {
    let now = Instant::now();
    let left = deadline
        .saturating_duration_since(now)
        .min(STALL.saturating_sub(now - progress_at));
    if !left.is_zero() {
        Ok(left)
    } else if now >= deadline {
        Err("timeout")
    } else {
        Err("stalled")
    }
}

/// Receives until `tally` is complete, the deadline passes, nothing new
/// arrives for [`STALL`], or the stream ends.
async fn collect_xmpp(
    mut client: XmppClient,
    mut tally: Tally,
    deadline: Instant,
) -> (XmppClient, Tally) {
    let mut progress_at = Instant::now();
    while !tally.complete() {
        let left = match wait_left(progress_at, deadline) {
            Ok(left) => left,
            Err(end) => {
                tally.end = end;
                return (client, tally);
            }
        };
        match client.recv(left).await {
            Some(stanza) if offer_stanza(&mut tally, &stanza) => progress_at = Instant::now(),
            Some(_) => {}
            None if client.is_closed() => {
                tally.end = "stream closed";
                return (client, tally);
            }
            None => {}
        }
    }
    tally.end = "complete";
    (client, tally)
}

fn offer_stanza(tally: &mut Tally, stanza: &Element) -> bool {
    if attr(stanza, "type") == "error" {
        tally.error(String::from(stanza));
        return false;
    }
    if stanza.name() == "message" {
        if let Some(text) = body(stanza) {
            if tally.offer(&text) {
                return true;
            }
        }
    }
    tally.other += 1;
    false
}

/// Like [`collect_xmpp`], for PRIVMSGs to `chan`.
async fn collect_irc(
    mut client: IrcClient,
    chan: String,
    mut tally: Tally,
    deadline: Instant,
) -> (IrcClient, Tally) {
    let mut progress_at = Instant::now();
    while !tally.complete() {
        let left = match wait_left(progress_at, deadline) {
            Ok(left) => left,
            Err(end) => {
                tally.end = end;
                return (client, tally);
            }
        };
        match client.recv_line(left).await {
            Some(line) if offer_line(&mut tally, &chan, &line) => progress_at = Instant::now(),
            Some(_) => {}
            None if client.is_closed() => {
                tally.end = "connection closed";
                return (client, tally);
            }
            None => {}
        }
    }
    tally.end = "complete";
    (client, tally)
}

fn offer_line(tally: &mut Tally, chan: &str, line: &str) -> bool {
    let parsed = IrcLine::parse(line);
    if parsed.is("PRIVMSG")
        && parsed
            .param(0)
            .is_some_and(|t| t.eq_ignore_ascii_case(chan))
    {
        if let Some(text) = parsed.trailing() {
            if tally.offer(text) {
                return true;
            }
        }
    }
    if parsed.is("ERROR") || is_error_numeric(&parsed) {
        tally.error(line.to_owned());
    } else {
        tally.other += 1;
    }
    false
}

fn is_error_numeric(line: &IrcLine) -> bool {
    line.command.len() == 3
        && line.command.starts_with(['4', '5'])
        && line.command.bytes().all(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Bursts of [`BURST`], written back to back with no flow control.
    Burst,
    /// Bursts of [`BURST`] while fewer than [`WINDOW`] messages are in flight
    /// (sent, and not yet received by every receiver).
    Windowed,
    /// One message every [`PACE`].
    Paced,
}

/// How many messages each receiver has received, shared with the sender.
#[derive(Clone)]
struct Flow {
    received: Arc<AtomicUsize>,
    receivers: usize,
}

impl Flow {
    fn new(receivers: usize) -> Flow {
        Flow {
            received: Arc::new(AtomicUsize::new(0)),
            receivers: receivers.max(1),
        }
    }

    /// Messages every receiver has received, on average.
    fn delivered(&self) -> usize {
        self.received.load(Ordering::Relaxed) / self.receivers
    }

    /// In [`Mode::Windowed`], waits until fewer than [`WINDOW`] of `sent`
    /// messages are in flight. False if the receivers made no progress for
    /// [`STALL`]: the sender then stops.
    async fn wait_for_room(&self, mode: Mode, sent: usize) -> bool {
        if mode != Mode::Windowed {
            return true;
        }
        let mut last = self.delivered();
        let mut progress_at = Instant::now();
        while sent.saturating_sub(self.delivered()) >= WINDOW {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = self.delivered();
            if now != last {
                last = now;
                progress_at = Instant::now();
            } else if progress_at.elapsed() >= STALL {
                return false;
            }
        }
        true
    }
}

/// What a sender did.
struct Sent {
    count: usize,
    started: Instant,
    finished: Instant,
    /// Stanzas or lines the sender read meanwhile (reflections, errors).
    drained: usize,
    errors: Vec<String>,
    /// True when the sender gave up because the receivers stalled.
    gave_up: bool,
}

impl Sent {
    fn new() -> Sent {
        Sent {
            count: 0,
            started: Instant::now(),
            finished: Instant::now(),
            drained: 0,
            errors: Vec::new(),
            gave_up: false,
        }
    }
}

/// Sends `n` messages of `kind` to `to` from an XMPP client. Between
/// bursts it reads whatever arrived (reflections), without waiting.
#[allow(clippy::too_many_arguments)] // a test client's knobs, each used
async fn send_xmpp(
    client: &mut XmppClient,
    to: &str,
    kind: &str,
    tag: &str,
    n: usize,
    mode: Mode,
    flow: &Flow,
    shape: Shape,
) -> Sent {
    let mut sent = Sent::new();
    let mut ticker = tokio::time::interval(PACE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0..n {
        if mode == Mode::Paced {
            ticker.tick().await;
        }
        if seq % BURST == 0 && !flow.wait_for_room(mode, seq).await {
            sent.gave_up = true;
            break;
        }
        let stanza = el(&match shape {
            Shape::Plain => format!(
                "<message to='{to}' type='{kind}' id='{tag}-{seq}'><body>{}</body></message>",
                stamp(tag, seq)
            ),
            Shape::LikeClients => format!(
                "<message to='{to}' type='{kind}' id='01a22f35-fa7b-77d7-9e6c-{seq:012}'>\
                 <body>{}</body>\
                 <origin-id xmlns='urn:xmpp:sid:0' id='01a22f35-fa7b-77d7-9e6c-{seq:012}'/>\
                 </message>",
                stamp(tag, seq)
            ),
        });
        client.send(stanza).await;
        sent.count += 1;
        if mode == Mode::Paced || (seq + 1) % BURST == 0 {
            xmpp_drain_into(client, &mut sent).await;
            tokio::task::yield_now().await;
        }
    }
    sent.finished = Instant::now();
    sent
}

async fn xmpp_drain_into(client: &mut XmppClient, sent: &mut Sent) {
    while let Some(stanza) = client.recv(Duration::ZERO).await {
        sent.drained += 1;
        if attr(&stanza, "type") == "error" && sent.errors.len() < 3 {
            sent.errors.push(String::from(&stanza));
        }
    }
}

/// Sends `n` PRIVMSGs to `chan`, each burst in one write.
async fn send_irc(
    client: &mut IrcClient,
    chan: &str,
    tag: &str,
    n: usize,
    mode: Mode,
    flow: &Flow,
) -> Sent {
    let mut sent = Sent::new();
    let mut ticker = tokio::time::interval(PACE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0;
    while seq < n {
        let lines = match mode {
            Mode::Paced => {
                ticker.tick().await;
                1
            }
            Mode::Burst | Mode::Windowed => {
                if !flow.wait_for_room(mode, seq).await {
                    sent.gave_up = true;
                    break;
                }
                BURST.min(n - seq)
            }
        };
        let mut buf = String::new();
        for i in 0..lines {
            if i > 0 {
                buf.push_str("\r\n");
            }
            write!(buf, "PRIVMSG {chan} :{}", stamp(tag, seq + i)).expect("write to String");
        }
        client.send_bytes(buf.as_bytes()).await;
        seq += lines;
        sent.count = seq;
        tokio::task::yield_now().await;
    }
    sent.finished = Instant::now();
    for line in irc_drain(client).await {
        let parsed = IrcLine::parse(&line);
        if (parsed.is("ERROR") || is_error_numeric(&parsed)) && sent.errors.len() < 3 {
            sent.errors.push(line);
        }
        sent.drained += 1;
    }
    sent
}

/// Reads every line already there (answering PINGs), without waiting.
async fn irc_drain(client: &mut IrcClient) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(line) = client.recv_line(Duration::ZERO).await {
        lines.push(line);
    }
    lines
}

/// Reads every stanza already there, without waiting.
async fn xmpp_drain(client: &mut XmppClient) -> usize {
    let mut n = 0;
    while client.recv(Duration::ZERO).await.is_some() {
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------

/// The outcome of one phase: one sender, one receiver.
struct Phase {
    sent: Sent,
    tally: Tally,
    unique: usize,
    cpu: CpuDelta,
}

impl Phase {
    fn new(sent: Sent, tally: Tally, cpu: CpuDelta) -> Phase {
        Phase {
            unique: tally.unique,
            sent,
            tally,
            cpu,
        }
    }

    fn seconds(&self) -> Option<f64> {
        let last = self.tally.last_at?;
        Some(
            last.saturating_duration_since(self.sent.started)
                .as_secs_f64(),
        )
    }

    /// Messages received per second, from the first send to the last receipt.
    fn rate(&self) -> f64 {
        match self.seconds() {
            Some(s) if s > 0.0 => self.unique as f64 / s,
            _ => 0.0,
        }
    }

    fn latency(&self) -> Latency {
        self.tally.latency()
    }

    fn json(&self) -> Value {
        let t = &self.tally;
        json!({
            "sent": self.sent.count,
            "send_seconds": round(self.sent.finished.duration_since(self.sent.started).as_secs_f64(), 3),
            "received": t.unique,
            "lost": t.expected - t.unique,
            "first_missing": t.missing(),
            "duplicates": t.duplicates,
            "out_of_order": t.out_of_order,
            "end": t.end,
            "seconds": self.seconds().map(|s| round(s, 3)),
            "msgs_per_s": round(self.rate(), 0),
            "latency_ms": t.latency().json(),
            "receiver_errors": t.errors,
            "receiver_first_error": t.first_error,
            "receiver_other": t.other,
            "sender_read_meanwhile": self.sent.drained,
            "sender_errors": self.sent.errors,
            "sender_gave_up": self.sent.gave_up,
            "cpu_ms_by_process": self.cpu.json(),
        })
    }
}

fn deadline(n: usize, mode: Mode) -> Instant {
    let paced = match mode {
        Mode::Paced => PACE * u32::try_from(n).unwrap_or(u32::MAX),
        Mode::Burst | Mode::Windowed => Duration::ZERO,
    };
    Instant::now() + PHASE_TIMEOUT + paced
}

/// What the XMPP test clients' messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A body only.
    Plain,
    /// A UUID-long id and an XEP-0359 origin-id too, as Conversations, Dino
    /// and Gajim send: the same number of elements and attributes as the
    /// gateway's messages, which carry a stanza-id.
    LikeClients,
}

#[allow(clippy::too_many_arguments)] // a test client's knobs, each used
async fn xmpp_to_xmpp(
    mut from: XmppClient,
    to: XmppClient,
    to_jid: &str,
    tag: &str,
    n: usize,
    mode: Mode,
    shape: Shape,
    procs: &Procs,
) -> (XmppClient, XmppClient, Phase) {
    let (before, flow, tally) = start_phase(tag, n, procs);
    let receiver = tokio::spawn(collect_xmpp(to, tally, deadline(n, mode)));
    let sent = send_xmpp(&mut from, to_jid, "chat", tag, n, mode, &flow, shape).await;
    let (to, tally) = receiver.await.expect("receiver task");
    let phase = end_phase(tag, sent, tally, procs, &before);
    (from, to, phase)
}

async fn irc_to_irc(
    mut from: IrcClient,
    to: IrcClient,
    chan: &str,
    tag: &str,
    n: usize,
    mode: Mode,
    procs: &Procs,
) -> (IrcClient, IrcClient, Phase) {
    let (before, flow, tally) = start_phase(tag, n, procs);
    let receiver = tokio::spawn(collect_irc(to, chan.to_owned(), tally, deadline(n, mode)));
    let sent = send_irc(&mut from, chan, tag, n, mode, &flow).await;
    let (to, tally) = receiver.await.expect("receiver task");
    let phase = end_phase(tag, sent, tally, procs, &before);
    (from, to, phase)
}

async fn irc_to_xmpp(
    mut from: IrcClient,
    to: XmppClient,
    room: &str,
    tag: &str,
    n: usize,
    mode: Mode,
    procs: &Procs,
) -> (IrcClient, XmppClient, Phase) {
    let chan = channel_of(room);
    let (before, flow, tally) = start_phase(tag, n, procs);
    let receiver = tokio::spawn(collect_xmpp(to, tally, deadline(n, mode)));
    let sent = send_irc(&mut from, &chan, tag, n, mode, &flow).await;
    let (to, tally) = receiver.await.expect("receiver task");
    let phase = end_phase(tag, sent, tally, procs, &before);
    (from, to, phase)
}

async fn xmpp_to_irc(
    from: XmppClient,
    to: IrcClient,
    room: &str,
    tag: &str,
    n: usize,
    mode: Mode,
    procs: &Procs,
) -> (XmppClient, IrcClient, Phase) {
    let chan = channel_of(room);
    let (before, flow, tally) = start_phase(tag, n, procs);
    let receiver = tokio::spawn(collect_irc(to, chan, tally, deadline(n, mode)));
    groupchat_phase(from, room, tag, n, mode, &flow, receiver, (procs, before)).await
}

/// The sending half of an XMPP → IRC phase, whatever stands behind `room`:
/// `from` sends `n` groupchat messages while `receiver` counts them on the
/// other side; then the reflections of the last ones are read.
#[allow(clippy::too_many_arguments)] // a test client's knobs, each used
async fn groupchat_phase<R: Send + 'static>(
    mut from: XmppClient,
    room: &str,
    tag: &str,
    n: usize,
    mode: Mode,
    flow: &Flow,
    receiver: tokio::task::JoinHandle<(R, Tally)>,
    (procs, before): (&Procs, CpuSample),
) -> (XmppClient, R, Phase) {
    let mut sent = send_xmpp(
        &mut from,
        room,
        "groupchat",
        tag,
        n,
        mode,
        flow,
        Shape::Plain,
    )
    .await;
    let (to, tally) = receiver.await.expect("receiver task");
    tokio::time::sleep(Duration::from_millis(200)).await;
    xmpp_drain_into(&mut from, &mut sent).await;
    let phase = end_phase(tag, sent, tally, procs, &before);
    (from, to, phase)
}

/// The stand-in's IRC → XMPP: `n` of the gateway's messages to the client
/// `to_jid`, in bursts of [`BURST`] written at once, at most [`WINDOW`] in
/// flight, as `send_irc` sends.
async fn stand_in_to_xmpp(
    mut stand_in: StandIn,
    to: XmppClient,
    to_jid: &str,
    tag: &str,
    n: usize,
    procs: &Procs,
) -> (StandIn, XmppClient, Phase) {
    let (before, flow, tally) = start_phase(tag, n, procs);
    let receiver = tokio::spawn(collect_xmpp(to, tally, deadline(n, Mode::Windowed)));
    let mut sent = Sent::new();
    while sent.count < n {
        if !flow.wait_for_room(Mode::Windowed, sent.count).await {
            sent.gave_up = true;
            break;
        }
        let mut burst = String::new();
        for seq in sent.count..(sent.count + BURST).min(n) {
            burst.push_str(&stand_in.message_from_irc(to_jid, &stamp(tag, seq)));
        }
        stand_in.write(&burst).await;
        sent.count = (sent.count + BURST).min(n);
        tokio::task::yield_now().await;
    }
    sent.finished = Instant::now();
    let (to, tally) = receiver.await.expect("receiver task");
    let phase = end_phase(tag, sent, tally, procs, &before);
    (stand_in, to, phase)
}

/// The stand-in's XMPP → IRC: `from` sends `n` groupchat messages to the
/// stand-in's room as `xmpp_to_irc` sends; the stand-in counts each as
/// sent to the network and reflects it.
async fn xmpp_to_stand_in(
    from: XmppClient,
    stand_in: StandIn,
    tag: &str,
    n: usize,
    procs: &Procs,
) -> (XmppClient, StandIn, Phase) {
    let (before, flow, tally) = start_phase(tag, n, procs);
    let receiver = tokio::spawn(collect_stand_in(
        stand_in,
        tally,
        deadline(n, Mode::Windowed),
    ));
    let mode = Mode::Windowed;
    groupchat_phase(
        from,
        stand_in::ROOM,
        tag,
        n,
        mode,
        &flow,
        receiver,
        (procs, before),
    )
    .await
}

/// Like [`collect_xmpp`], for the stand-in, which reflects each message
/// it counts (all of one read in one write).
async fn collect_stand_in(
    mut stand_in: StandIn,
    mut tally: Tally,
    deadline: Instant,
) -> (StandIn, Tally) {
    let mut progress_at = Instant::now();
    while !tally.complete() {
        let left = match wait_left(progress_at, deadline) {
            Ok(left) => left,
            Err(end) => {
                tally.end = end;
                return (stand_in, tally);
            }
        };
        let messages = stand_in
            .read_messages(left.min(Duration::from_millis(100)))
            .await;
        let mut reflections = String::new();
        for message in &messages {
            if tally.offer(&message.body) {
                progress_at = Instant::now();
            } else {
                tally.other += 1;
            }
            reflections.push_str(&stand_in.reflection(message, "pa"));
        }
        if !reflections.is_empty() {
            stand_in.write(&reflections).await;
        }
    }
    tally.end = "complete";
    (stand_in, tally)
}

/// A one-receiver phase begins: the CPU so far, the flow its receiver
/// reports to, and the tally it counts in.
fn start_phase(tag: &str, n: usize, procs: &Procs) -> (CpuSample, Flow, Tally) {
    let before = procs.sample();
    let flow = Flow::new(1);
    let tally = Tally::new(tag, n).with_flow(&flow);
    (before, flow, tally)
}

/// The phase begun at `before` ends: its figures, reported.
fn end_phase(tag: &str, sent: Sent, tally: Tally, procs: &Procs, before: &CpuSample) -> Phase {
    let phase = Phase::new(sent, tally, procs.sample().since(before));
    report_phase(tag, &phase);
    phase
}

fn report_phase(tag: &str, phase: &Phase) {
    let l = phase.latency();
    progress(&format!(
        "  {tag}: {}/{} received ({}), {:.0} msgs/s, p50 {:.3} ms, p99 {:.3} ms, {} duplicates, {} errors",
        phase.unique,
        phase.tally.expected,
        phase.tally.end,
        phase.rate(),
        l.p50_ms.unwrap_or(f64::NAN),
        l.p99_ms.unwrap_or(f64::NAN),
        phase.tally.duplicates,
        phase.tally.errors + phase.sent.errors.len(),
    ));
}

/// `#chan` of `#chan%server@gateway`.
fn channel_of(room: &str) -> String {
    room.split('%').next().unwrap_or(room).to_owned()
}

// ---------------------------------------------------------------------------
// Joining through the gateway
// ---------------------------------------------------------------------------

/// Connects `user`, sends presence, registers with the gateway with the nick
/// `user` and joins `room` as `user`. Never panics on the gateway's answers:
/// a refusal or a timeout is an `Err`.
async fn join_user(c2s: u16, user: &str, room: &str) -> Result<XmppClient, String> {
    let mut client = XmppClient::connect(c2s, user, DOMAIN, PASSWORD, "bench").await;
    client.send(el("<presence/>")).await;
    let id = format!("reg-{user}");
    client
        .send(el(&format!(
            "<iq to='{GW}' type='set' id='{id}'><query xmlns='jabber:iq:register'>\
             <x xmlns='jabber:x:data' type='submit'><field var='nick'><value>{user}</value></field>\
             </x></query></iq>"
        )))
        .await;
    let reply = wait_stanza(&mut client, SETUP_TIMEOUT, |s| {
        s.name() == "iq" && attr(s, "id") == id
    })
    .await
    .map_err(|e| format!("{user}: registration: {e}"))?;
    if attr(&reply, "type") != "result" {
        return Err(format!(
            "{user}: registration refused: {}",
            String::from(&reply)
        ));
    }
    client
        .send(el(&format!(
            "<presence to='{room}/{user}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>"
        )))
        .await;
    let prefix = format!("{room}/");
    let own = wait_stanza(&mut client, JOIN_TIMEOUT, |s| {
        s.name() == "presence"
            && attr(s, "from").starts_with(&prefix)
            && (attr(s, "type") == "error" || is_self_presence(s))
    })
    .await
    .map_err(|e| format!("{user}: join: {e}"))?;
    if attr(&own, "type") == "error" {
        return Err(format!("{user}: join refused: {}", String::from(&own)));
    }
    Ok(client)
}

fn is_self_presence(presence: &Element) -> bool {
    presence.get_child("x", NS_MUC_USER).is_some_and(|x| {
        x.children()
            .any(|c| c.name() == "status" && c.attr("code") == Some("110"))
    })
}

/// Reads until a stanza matches `pred`; the others are dropped.
async fn wait_stanza(
    client: &mut XmppClient,
    timeout: Duration,
    pred: impl Fn(&Element) -> bool,
) -> Result<Element, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no answer within {timeout:?}"));
        }
        match client.recv(left).await {
            Some(stanza) if pred(&stanza) => return Ok(stanza),
            Some(_) => {}
            None if client.is_closed() => return Err("the stream ended".into()),
            None => {}
        }
    }
}

/// Waits until the gateway answers disco#info through Prosody.
async fn wait_for_link(client: &mut XmppClient, gateway: &mut Gateway) {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    for attempt in 0.. {
        gateway.check_alive();
        let id = format!("link-{attempt}");
        client
            .send(el(&format!(
                "<iq to='{GW}' type='get' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            )))
            .await;
        let reply = wait_stanza(client, Duration::from_secs(5), |s| {
            s.name() == "iq" && attr(s, "id") == id
        })
        .await;
        if reply.is_ok_and(|r| attr(&r, "type") == "result") {
            progress("the gateway's component link is up");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not come up within {SETUP_TIMEOUT:?}:\n{}",
            gateway.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------
// The fan-out: many users in one channel
// ---------------------------------------------------------------------------

struct Fanout {
    json: Value,
    rss_kb_per_user: Option<f64>,
    deliveries_per_s: Option<f64>,
}

async fn fanout(
    prosody: &Prosody,
    carol: &mut IrcClient,
    counts: Counts,
    procs: &Procs,
    bob: &mut IrcClient,
) -> Fanout {
    let users = counts.users;
    let m = counts.fanout_messages;
    let room = format!("#fan%{IRC_NAME}@{GW}");
    carol.join("#fan").await;
    irc_drain(carol).await;
    irc_drain(bob).await;

    let rss_before = procs.settled_rss_kb().await;
    progress(&format!(
        "fan-out: {users} users register and join #fan at once (Estuary VmRSS {} kB)",
        rss_before.unwrap_or(0)
    ));
    let names: Vec<String> = (0..users).map(|i| format!("u{i:03}")).collect();
    for name in &names {
        prosody.add_user(name, PASSWORD);
    }
    let join_started = Instant::now();
    let c2s = prosody.c2s_port();
    let tasks: Vec<_> = names
        .iter()
        .map(|name| {
            let (name, room) = (name.clone(), room.clone());
            tokio::spawn(async move {
                let joined = join_user(c2s, &name, &room).await;
                (joined, Instant::now())
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut failures = Vec::new();
    let mut last_join = join_started;
    for task in tasks {
        match task.await {
            Ok((Ok(client), at)) => {
                clients.push(client);
                last_join = last_join.max(at);
            }
            Ok((Err(e), _)) => failures.push(e),
            Err(e) => failures.push(format!("join task panicked: {e}")),
        }
    }
    let join_seconds = last_join.duration_since(join_started).as_secs_f64();
    nodelay_client_sockets(&[c2s]);
    progress(&format!(
        "fan-out: {} joined in {join_seconds:.1} s, {} failed",
        clients.len(),
        failures.len()
    ));
    for failure in failures.iter().take(5) {
        progress(&format!("  {failure}"));
    }
    // Let the JOIN presences settle, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut settled = 0;
    for client in &mut clients {
        settled += xmpp_drain(client).await;
    }
    let rss_after = procs.settled_rss_kb().await;
    let joined = clients.len();
    let rss_kb_per_user = match (rss_before, rss_after) {
        (Some(b), Some(a)) if joined > 0 => Some((a as f64 - b as f64) / joined as f64),
        _ => None,
    };
    let irc_names = carol.names("#fan").await.len();
    progress(&format!(
        "fan-out: Estuary VmRSS {} kB after the joins; #fan has {irc_names} members on IRC",
        rss_after.unwrap_or(0)
    ));

    let mut json = json!({
        "users": users,
        "joined": joined,
        "join_failures": failures.len(),
        "first_join_failures": failures.iter().take(5).collect::<Vec<_>>(),
        "join_seconds": round(join_seconds, 2),
        "stanzas_read_while_settling": settled,
        "irc_members_of_channel": irc_names,
        "rss_kb_before": rss_before,
        "rss_kb_after": rss_after,
    });
    if joined == 0 {
        return Fanout {
            json,
            rss_kb_per_user,
            deliveries_per_s: None,
        };
    }

    progress(&format!(
        "fan-out: carol sends {m} messages to #fan, {joined} users receive"
    ));
    let before = procs.sample();
    let phase_deadline = deadline(m, Mode::Windowed);
    let flow = Flow::new(joined);
    let receivers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let tally = Tally::new("fan", m).with_flow(&flow);
            tokio::spawn(collect_xmpp(client, tally, phase_deadline))
        })
        .collect();
    let sent = send_irc(carol, "#fan", "fan", m, Mode::Windowed, &flow).await;
    let mut delivered = 0;
    let mut complete = 0;
    let mut duplicates = 0;
    let mut errors = 0;
    let mut last_at = None::<Instant>;
    let mut latencies = Vec::new();
    let mut ends = std::collections::BTreeMap::<&str, usize>::new();
    let mut clients = Vec::new();
    for receiver in receivers {
        let Ok((client, tally)) = receiver.await else {
            continue;
        };
        delivered += tally.unique;
        duplicates += tally.duplicates;
        errors += tally.errors;
        complete += usize::from(tally.complete());
        *ends.entry(tally.end).or_default() += 1;
        last_at = match (last_at, tally.last_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        latencies.extend_from_slice(&tally.latencies_ns);
        clients.push(client);
    }
    let cpu = procs.sample().since(&before);
    let seconds = last_at.map(|at| at.saturating_duration_since(sent.started).as_secs_f64());
    let deliveries_per_s = seconds.filter(|s| *s > 0.0).map(|s| delivered as f64 / s);
    let estuary_ms = cpu.estuary_ms();
    let mut all = Tally::new("fan", 0);
    all.latencies_ns = latencies;
    progress(&format!(
        "fan-out: {delivered}/{} deliveries in {:.2} s = {:.0}/s; {complete} users got all",
        m * joined,
        seconds.unwrap_or(f64::NAN),
        deliveries_per_s.unwrap_or(0.0)
    ));
    json["messages_sent"] = json!(sent.count);
    json["deliveries_expected"] = json!(m * joined);
    json["deliveries"] = json!(delivered);
    json["users_complete"] = json!(complete);
    json["receiver_ends"] = json!(ends);
    json["duplicates"] = json!(duplicates);
    json["receiver_errors"] = json!(errors);
    json["sender_errors"] = json!(sent.errors);
    json["send_seconds"] = json!(round(
        sent.finished.duration_since(sent.started).as_secs_f64(),
        3
    ));
    json["seconds"] = json!(seconds.map(|s| round(s, 3)));
    json["deliveries_per_s"] = json!(deliveries_per_s.map(|r| round(r, 0)));
    json["delivery_latency_ms"] = all.latency().json();
    json["cpu_ms_by_process"] = cpu.json();
    json["rss_kb_after_fanout"] = json!(procs.rss_kb());
    json["gateway_cpu_ms_per_1000_deliveries"] =
        json!((delivered > 0).then(|| round(estuary_ms * 1000.0 / delivered as f64, 2)));
    for client in clients {
        client.close().await;
    }
    Fanout {
        json,
        rss_kb_per_user,
        deliveries_per_s,
    }
}

// ---------------------------------------------------------------------------
// Estuary as a separate process
// ---------------------------------------------------------------------------

/// The release binary. Under `cargo bench` Cargo has just built it; when it
/// is missing or older than the sources (they changed since), it is built
/// again with `cargo build --release --bin estuary`. `IRC_LOAD_ESTUARY`
/// names another binary instead, to compare two builds on the same machine.
fn estuary_binary() -> PathBuf {
    if let Some(other) = std::env::var_os("IRC_LOAD_ESTUARY") {
        return PathBuf::from(other);
    }
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_estuary"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let newest = newest_source(root);
    let stale = match (built, newest) {
        (None, _) => true,
        (Some(built), Some(newest)) => newest > built,
        (Some(_), None) => false,
    };
    if stale {
        progress(&format!(
            "{} is missing or older than the sources: running `cargo build --release --bin estuary`",
            binary.display()
        ));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "estuary"])
            .current_dir(root)
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => {
                assert!(
                    binary.is_file(),
                    "building Estuary failed ({other:?}); run `cargo build --release --bin estuary` in {}",
                    root.display()
                );
                progress("building failed; using the existing binary");
            }
        }
    }
    binary
}

/// The newest modification time among the sources that make the binary.
fn newest_source(root: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![
        root.join("src"),
        root.join("bridges"),
        root.join("migrations"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "toml" || e == "lock" || e == "sql")
        {
            if let Ok(modified) = meta.modified() {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}

/// The running gateway. SIGTERMed (then SIGKILLed) on drop.
struct Gateway {
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
}

impl Gateway {
    fn start(binary: &Path, dir: &Path, prosody: &Prosody, ircd: &Inspircd) -> Gateway {
        let data = dir.join("estuary-data");
        fs::create_dir_all(&data).expect("create Estuary's data directory");
        let config = format!(
            r#"# Generated by benches/irc_load.rs.
[component]
server = "{server}"
backoff_initial_ms = 100
backoff_max_ms = 1000

[store]
data_dir = "{data}"

[[gateway]]
domain = "{GW}"
secret = "{SECRET}"
kind = "irc"

[gateway.options.servers.{IRC_NAME}]
address = "127.0.0.1"
port = {port}
throttle_burst = 1000000
throttle_per_sec = 1000000
"#,
            server = prosody.component_addr(),
            data = data.display(),
            port = ircd.port(),
        );
        let config_path = dir.join("estuary.toml");
        fs::write(&config_path, config).expect("write estuary.toml");
        let log = dir.join("estuary.log");
        let file = fs::File::create(&log).expect("create estuary.log");
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .env("ESTUARY_LOG", "warn")
            .env("NO_COLOR", "1")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup estuary.log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let pid = child.id();
        Gateway {
            child: Some(child),
            pid,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    /// Panics with the log if Estuary has exited.
    fn check_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!("Estuary exited ({status}):\n{}", self.log_tail(30));
            }
        }
    }

    /// SIGTERM, and how the shutdown went.
    fn stop(&mut self) -> Value {
        let Some(mut child) = self.child.take() else {
            return json!({ "exited_before_stop": true });
        };
        if let Ok(Some(status)) = child.try_wait() {
            return json!({ "exited_before_stop": true, "status": status.to_string() });
        }
        let started = Instant::now();
        world::terminate(&mut child, libc::SIGTERM, Duration::from_secs(10));
        let seconds = started.elapsed().as_secs_f64();
        json!({
            "exited_before_stop": false,
            "sigterm_to_exit_seconds": round(seconds, 2),
            "needed_sigkill": seconds >= 10.0,
        })
    }

    fn log_tail(&self, lines: usize) -> String {
        world::log_tail(&self.log, lines)
    }

    /// Counts of warnings and errors in Estuary's log, with a few samples.
    fn log_summary(&self) -> Value {
        let text = strip_ansi(&fs::read_to_string(&self.log).unwrap_or_default());
        let warn: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
        let error: Vec<&str> = text.lines().filter(|l| l.contains(" ERROR ")).collect();
        json!({
            "lines": text.lines().count(),
            "warn_lines": warn.len(),
            "error_lines": error.len(),
            "first_warnings": warn.iter().take(3).map(|l| truncate(l, 300)).collect::<Vec<_>>(),
            "first_errors": error.iter().take(3).map(|l| truncate(l, 300)).collect::<Vec<_>>(),
            "last_lines": text.lines().rev().take(3).map(|l| truncate(l, 300)).collect::<Vec<_>>(),
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            world::terminate(&mut child, libc::SIGTERM, Duration::from_secs(5));
        }
    }
}

/// `text` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

// ---------------------------------------------------------------------------
// /proc: CPU time and memory
// ---------------------------------------------------------------------------

/// The processes whose CPU time is reported.
struct Procs {
    estuary: u32,
    prosody: Option<u32>,
    inspircd: Option<u32>,
    bench: u32,
}

/// CPU ticks per process at one moment.
struct CpuSample {
    ticks: [Option<u64>; 4],
}

/// CPU milliseconds per process between two samples.
struct CpuDelta {
    ms: [Option<f64>; 4],
}

const PROC_NAMES: [&str; 4] = ["estuary", "prosody", "inspircd", "irc_load"];

impl Procs {
    fn pids(&self) -> [Option<u32>; 4] {
        [
            Some(self.estuary),
            self.prosody,
            self.inspircd,
            Some(self.bench),
        ]
    }

    fn sample(&self) -> CpuSample {
        CpuSample {
            ticks: self.pids().map(|pid| pid.and_then(cpu_ticks)),
        }
    }

    /// Estuary's resident set, in kB.
    fn rss_kb(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.estuary)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The gateway's settled resident size: the least of readings every
    /// 250 ms, taken until none has set a new low (by 64 kB or more) for
    /// two seconds, and for at most ten. One reading swings by megabytes
    /// with what happens to be in flight; and after a burst (the throughput
    /// phases, 100 joins) jemalloc hands freed pages back over a few
    /// seconds, so a fixed two-second window measured how far that had got.
    async fn settled_rss_kb(&self) -> Option<u64> {
        const STEP: Duration = Duration::from_millis(250);
        const QUIET: Duration = Duration::from_secs(2);
        const MOST: Duration = Duration::from_secs(10);
        const NEW_LOW_KB: u64 = 64;
        let started = Instant::now();
        let mut least: Option<u64> = None;
        let mut last_low = started;
        loop {
            if let Some(kb) = self.rss_kb() {
                if least.is_none_or(|l| kb + NEW_LOW_KB <= l) {
                    last_low = Instant::now();
                }
                least = Some(least.map_or(kb, |l| l.min(kb)));
            }
            if last_low.elapsed() >= QUIET || started.elapsed() >= MOST {
                break;
            }
            tokio::time::sleep(STEP).await;
        }
        least
    }
}

impl CpuSample {
    fn since(&self, before: &CpuSample) -> CpuDelta {
        let mut ms = [None; 4];
        for (i, slot) in ms.iter_mut().enumerate() {
            if let (Some(a), Some(b)) = (self.ticks[i], before.ticks[i]) {
                *slot = Some(ticks_to_ms(a.saturating_sub(b)));
            }
        }
        CpuDelta { ms }
    }

    fn estuary_ms_since(&self, before: &CpuSample) -> f64 {
        self.since(before).estuary_ms()
    }
}

impl CpuDelta {
    fn estuary_ms(&self) -> f64 {
        self.ms[0].unwrap_or(0.0)
    }

    fn json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (name, ms) in PROC_NAMES.iter().zip(self.ms) {
            map.insert((*name).into(), json!(ms.map(|v| round(v, 0))));
        }
        Value::Object(map)
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start with field 3
    // (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_to_ms(ticks: u64) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_s = if per_s > 0 { per_s as f64 } else { 100.0 };
    ticks as f64 * 1000.0 / per_s
}

/// The pid of the process whose command line names `config` (our own
/// Prosody or InspIRCd child, which the test world does not expose).
fn find_pid(config: &Path) -> Option<u32> {
    let needle = config.to_string_lossy().into_owned();
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (pid != std::process::id() && cmdline.contains(&needle)).then_some(pid)
    })
}

// ---------------------------------------------------------------------------
// TCP_NODELAY on the tool's own client sockets
// ---------------------------------------------------------------------------

/// Sets TCP_NODELAY on every TCP socket of this process connected to
/// 127.0.0.1 on one of `ports`, and returns how many it set.
///
/// The test world's clients do not expose their sockets, and leave Nagle's
/// algorithm on. Then a small write that follows an unacknowledged one
/// waits for the peer's delayed ACK (40 ms on Linux), which would put the
/// tool's own clients into the figures. Real servers and gateways are
/// measured as they are: this only touches the tool's sockets.
fn nodelay_client_sockets(ports: &[u16]) -> usize {
    let Ok(fds) = fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut set = 0;
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        let is_socket = fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: a zeroed sockaddr_in is valid; getpeername writes at most
        // `len` bytes into it; the fd is one of ours (it fails harmlessly
        // on a socket that is not AF_INET or not connected).
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = unsafe { libc::getpeername(fd, (&raw mut addr).cast(), &raw mut len) };
        if rc != 0 || libc::c_int::from(addr.sin_family) != libc::AF_INET {
            continue;
        }
        let port = u16::from_be(addr.sin_port);
        let loopback =
            u32::from_be(addr.sin_addr.s_addr) == u32::from(std::net::Ipv4Addr::LOCALHOST);
        if !loopback || !ports.contains(&port) {
            continue;
        }
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from a valid pointer.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        set += usize::from(rc == 0);
    }
    set
}
