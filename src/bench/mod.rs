//! `privacy-worker bench`: the measuring stick of intake throughput and latency.
//!
//! Each run declares fresh names (exchange, queues), starts child processes (one,
//! or `--instances`), either the real worker (`privacy-worker run`) or the echo
//! stand-in (`privacy-worker echo`: consume, publish a confirmed reply, ack, no
//! database), publishes N valid requests with at most W unconfirmed (or at a fixed
//! rate, or all before the children start with `--backlog`), matches replies by
//! correlation id, and prints one JSON line. Runs alternate echo and worker for
//! several rounds; the summary is the ratio of their medians. Only ratios from one
//! invocation mean anything on a noisy machine.

mod child;
mod echo;
mod run;

use anyhow::bail;
use serde_json::{Value, json};

pub use echo::echo;

use crate::config::BenchArgs;

/// What one run measured.
#[derive(Debug, Clone)]
struct RunResult {
    pub mode: &'static str,
    pub throughput: f64,
    pub line: Value,
}

/// Runs the rounds and returns the lines to print.
pub async fn bench(args: &BenchArgs) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut results: Vec<RunResult> = Vec::new();
    let modes: Vec<&'static str> = match args.mode.as_str() {
        "echo" => vec!["echo"],
        "worker" => vec!["worker"],
        "both" => vec!["echo", "worker"],
        other => bail!("--mode must be echo, worker or both, not {other}"),
    };
    for round in 1..=args.rounds {
        for mode in &modes {
            let result = run::run_once(args, mode, round).await?;
            println!("{}", result.line);
            lines.push(result.line.to_string());
            results.push(result);
        }
    }
    let median = |mode: &str| {
        let mut v: Vec<f64> = results
            .iter()
            .filter(|r| r.mode == mode)
            .map(|r| r.throughput)
            .collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let (echo, worker) = (median("echo"), median("worker"));
    let summary = json!({
        "summary": {
            "echo_median_per_s": echo.map(round1),
            "worker_median_per_s": worker.map(round1),
            "ratio_worker_to_echo": echo.zip(worker).map(|(e, w)| (w / e * 1000.0).round() / 1000.0),
            "rounds": args.rounds, "n": args.n, "window": args.window, "rate": args.rate,
            "backlog": args.backlog, "instances": args.instances,
        }
    });
    lines.push(summary.to_string());
    Ok(lines)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
