//! The `estuary` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use estuary::config::{Config, ConfigError};
use estuary::networks::Networks;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "An XMPP gateway component bridging to IRC, Matrix and Discord"
)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, default_value = "estuary.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file and print every problem with its key.
    CheckConfig {
        /// The file to check (defaults to --config).
        file: Option<PathBuf>,
    },
    /// Carry a biboumi database over to an IRC gateway of this
    /// configuration: users' settings, persistent channels and channel
    /// archives. Run it once, with Estuary stopped, before its first start
    /// on biboumi's component domain.
    ImportBiboumi {
        /// biboumi's database, as its `db_name` says: an SQLite file or a
        /// `postgresql://` URL.
        database: String,
        /// The IRC gateway to import into, where the configuration has several.
        #[arg(long)]
        gateway: Option<String>,
        /// Leave biboumi's channel archives behind. biboumi kept one per
        /// user; Estuary keeps one per channel, which its users in the
        /// channel share.
        #[arg(long)]
        without_archives: bool,
    },
}

/// jemalloc rather than glibc's malloc. The gateway holds many small,
/// long-lived objects (member lists, one IRC connection per user) among
/// bursts of short-lived stanzas; glibc's arenas fragment under that mix and
/// keep the burst's peak resident. Measured with `cargo bench --bench
/// irc_load`: resident memory per joined user 110–126 KB with glibc (even
/// with `malloc_trim` once a second), 70 KB with jemalloc, and CPU per 1,000
/// messages 38–42 ms against 31–34 ms.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at start-up: a background thread hands unused
/// pages back to the system after a second (`dirty_decay_ms`) instead of
/// keeping them for reuse indefinitely, and one arena rather than four per
/// core (fewer arenas hold less memory apart: on the two-core bench machine
/// 70 KB per user with two arenas against 82 KB with the default, and later
/// 29.7 KB on average with one (seven runs, 28.0–31.8) against 30.7 KB with
/// two (six runs), at the same CPU, since each thread's cache takes most
/// allocations without the arena's lock). A host with many cores and busy
/// gateways may want more: the `MALLOC_CONF` environment variable overrides
/// these, e.g. `MALLOC_CONF=narenas:8`.
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ESTUARY_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let networks = Networks::builtin();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file.unwrap_or(cli.config), &networks),
        Some(Command::ImportBiboumi {
            database,
            gateway,
            without_archives,
        }) => {
            match import_biboumi(
                &cli.config,
                &networks,
                &database,
                gateway.as_deref(),
                !without_archives,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Settings are written over and each room's archive
                    // is written whole or not at all, so running it again
                    // after fixing the cause is safe.
                    tracing::error!("the import stopped: {e:#}; it can be run again");
                    ExitCode::FAILURE
                }
            }
        }
        None => run(&cli.config, networks),
    }
}

fn check_config(path: &std::path::Path, networks: &Networks) -> ExitCode {
    match Config::load(path, &networks.kinds()) {
        Ok(config) => {
            println!(
                "{}: OK, {} gateway(s): {}",
                path.display(),
                config.gateways.len(),
                config
                    .gateways
                    .iter()
                    .map(|g| format!("{} ({})", g.domain, g.kind))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(problems)) => {
            println!("{}: {} problem(s)", path.display(), problems.len());
            for p in problems {
                println!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn import_biboumi(
    path: &std::path::Path,
    networks: &Networks,
    database: &str,
    gateway: Option<&str>,
    archives: bool,
) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    let config = Config::load(path, &networks.kinds())?;
    let irc: Vec<_> = config
        .gateways
        .iter()
        .filter(|g| g.kind == "irc" && gateway.is_none_or(|d| d == g.domain))
        .collect();
    let target = match irc.as_slice() {
        [one] => *one,
        [] => bail!(
            "{} has no IRC gateway{}",
            path.display(),
            gateway.map(|d| format!(" {d}")).unwrap_or_default()
        ),
        _ => bail!(
            "{} has several IRC gateways: choose one with --gateway",
            path.display()
        ),
    };
    let options = estuary_irc::options::IrcOptions::from_value(&target.options)
        .map_err(anyhow::Error::msg)?;
    let to = estuary::biboumi::Destination {
        gateway: target.domain.clone(),
        fixed_server: options.fixed_server,
        archives,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = estuary::store::Store::open(&config.store.effective_url())
            .await
            .context("cannot open the store")?;
        let report = estuary::biboumi::import(database, &store, &to).await;
        store.close().await;
        let report = report?;
        print!("imported into {}:\n{report}", to.gateway);
        Ok(())
    })
}

fn run(path: &std::path::Path, networks: Networks) -> ExitCode {
    let config = match Config::load(path, &networks.kinds()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tokio_env_set = std::env::var_os("TOKIO_WORKER_THREADS").is_some();
    if let Some(threads) = config.runtime.worker_threads(cores, tokio_env_set) {
        builder.worker_threads(threads);
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut signal = estuary::shutdown::on_signal();
        let running = match estuary::app::start(config, &networks).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        estuary::reload::on_signals(running.reloads.clone());
        let result = running
            .run_until(async move {
                let _ = signal.changed().await;
            })
            .await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
