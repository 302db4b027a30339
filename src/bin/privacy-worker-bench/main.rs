//! `privacy-worker-bench`: the measuring stick of intake throughput and latency
//! (BENCHMARKS.md), a binary of its own so the worker's library carries none of it.
//!
//! Each run declares fresh names (exchange, queues), starts child processes (one,
//! or `--instances`), either the real worker (`privacy-worker run`, the binary
//! beside this one) or the echo stand-in (`privacy-worker-bench echo`: consume,
//! publish a confirmed reply, ack, no database), publishes N valid requests with at
//! most W unconfirmed (or at a fixed rate, or all before the children start with
//! `--backlog`), matches replies by correlation id, and prints one JSON line. Runs
//! alternate echo and worker for several rounds; the summary is the ratio of their
//! medians. Only ratios from one invocation mean anything on a noisy machine.

mod child;
mod echo;
mod rounds;
mod run;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use privacy_worker::config::{BrokerArgs, LogFormat, RunArgs};
use privacy_worker::{app, telemetry};

/// Measures the worker's intake against the echo stand-in.
#[derive(Debug, Parser)]
#[command(name = "privacy-worker-bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The stand-in for the worker: consume, reply, ack; no database. Takes the
    /// worker's options (and environment), of which it uses the broker's.
    #[command(hide = true)]
    Echo(Box<RunArgs>),
}

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The echo stand-in only.
    Echo,
    /// The worker only.
    Worker,
    /// Both, alternating, and the ratio of their medians.
    Both,
}

/// The process under test in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Under {
    /// The echo stand-in.
    Echo,
    /// The real worker.
    Worker,
}

impl Under {
    /// As the JSON lines name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Worker => "worker",
        }
    }
}

/// Options of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Requests per run.
    #[arg(long, default_value_t = 20_000)]
    pub n: usize,
    /// Requests published but not yet confirmed, at most.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Publish at this many requests per second instead of as fast as the window allows.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Rounds; each runs every mode once.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// What to measure: the echo, the worker, or both alternating.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,
    /// The worker's store.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://bench.db")]
    pub database_url: String,
    /// The worker's key file (required with PostgreSQL).
    #[arg(long, env = "PRIVACY_KEY_FILE")]
    pub key_file: Option<std::path::PathBuf>,
    /// Prefetch of the worker and the echo.
    #[arg(long, default_value_t = 256)]
    pub prefetch: u16,
    /// Give up waiting for replies after this long.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Queue all N requests before the children start (a backlog to drain)
    /// instead of publishing while they run.
    #[arg(long)]
    pub backlog: bool,
    /// Children (worker or echo processes) consuming the one work queue.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Also write every reply's latency over time, one file per run
    /// (`<path>-<mode>-<round>`): a line per reply with the seconds from the
    /// run's start to its publish, and its latency in ms. Shows whether slow
    /// replies are spread out or bunched in stalls.
    #[arg(long)]
    pub latency_log: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let echoing = cli.command.is_some();
    // The bench's answer is its stdout (JSON lines), so it logs to stderr.
    telemetry::init(LogFormat::Text, !echoing);
    let result = match cli.command {
        Some(Command::Echo(args)) => {
            let settings = args.settings();
            let shutdown = app::shutdown_signal();
            echo::echo(
                &settings.broker.amqp_url,
                &settings.intake.topology,
                settings.prefetch,
                shutdown,
            )
            .await
        }
        None => rounds::bench(&cli.bench).await.map(|lines| {
            if let Some(summary) = lines.last() {
                println!("{summary}");
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("privacy-worker-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
