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
}

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

fn run(path: &std::path::Path, networks: Networks) -> ExitCode {
    let config = match Config::load(path, &networks.kinds()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
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
