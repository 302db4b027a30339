//! The `privacy-worker` binary: parse the command line, set up logging, hand over
//! to the library.

use std::process::ExitCode;

use clap::Parser;
use privacy_worker::amqp::Broker;
use privacy_worker::app::{self, shutdown_signal};
use privacy_worker::config::{Cli, Command, DatamapAction, DatamapArgs, DlqAction, DlqArgs};
use privacy_worker::{check, dlq, operator, send, telemetry};
use tracing::error;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let answers_on_stdout = !matches!(cli.command, None | Some(Command::Run(_)));
    telemetry::init(cli.log_format, answers_on_stdout);
    match cli.command {
        Some(Command::Send(args)) => match send::send(&args).await {
            Ok(reply) => {
                println!("{reply}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("privacy-worker send: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Dlq(args)) => match dlq(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("privacy-worker dlq: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Datamap(DatamapArgs {
            action: DatamapAction::Check { datamap },
        })) => match check::run(&datamap).await {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("privacy-worker datamap check: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Requests(args)) => match operator::run(&args).await {
            Ok(output) => {
                println!("{output}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("privacy-worker requests: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Ledger(args)) => match privacy_worker::ledger::run(&args).await {
            Ok(output) => {
                println!("{output}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("privacy-worker ledger: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Keygen { path }) => {
            if path.exists() {
                eprintln!(
                    "privacy-worker keygen: {} exists; not overwriting keys",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            match privacy_worker::crypto::Keys::load_or_create(&path) {
                Ok(_) => {
                    println!(
                        "wrote {} (owner-only); back it up and keep it private",
                        path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("privacy-worker keygen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Run(args)) => run(*args).await,
        None => run(cli.run).await,
    }
}

async fn run(args: privacy_worker::config::RunArgs) -> ExitCode {
    match app::run(args.settings(), shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "fatal: cannot run with this configuration");
            ExitCode::FAILURE
        }
    }
}

async fn dlq(args: &DlqArgs) -> anyhow::Result<()> {
    let broker = Broker::connect(&args.broker.amqp_url, "privacy-worker dlq").await?;
    match args.action {
        DlqAction::List { limit, json } => {
            let parked = dlq::list(&broker, &args.dead_queue, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&parked)?);
            } else {
                for p in &parked {
                    println!(
                        "message_id={} correlation_id={} routing_key={} reason={} attempts={} parked_at={} bytes={} last_error={:?}",
                        p.message_id.as_deref().unwrap_or("-"),
                        p.correlation_id.as_deref().unwrap_or("-"),
                        p.original_routing_key.as_deref().unwrap_or("-"),
                        p.reason.as_deref().unwrap_or("-"),
                        p.attempts.as_deref().unwrap_or("-"),
                        p.parked_at.as_deref().unwrap_or("-"),
                        p.body_bytes,
                        p.last_error.as_deref().unwrap_or(""),
                    );
                }
                eprintln!("{} parked message(s) in {}", parked.len(), args.dead_queue);
            }
        }
        DlqAction::Replay { limit } => {
            let moved = dlq::replay(&broker, &args.dead_queue, &args.queue, limit).await?;
            println!(
                "replayed {moved} message(s) from {} to {}",
                args.dead_queue, args.queue
            );
        }
    }
    broker.close().await;
    Ok(())
}
