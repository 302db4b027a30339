//! The rounds of a bench invocation and their summary.

use serde_json::{Value, json};

use crate::{BenchArgs, Mode, Under, run};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub under: Under,
    pub throughput: f64,
    pub line: Value,
}

/// Runs the rounds and returns the lines to print.
pub async fn bench(args: &BenchArgs) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut results: Vec<RunResult> = Vec::new();
    let modes = match args.mode {
        Mode::Echo => vec![Under::Echo],
        Mode::Worker => vec![Under::Worker],
        Mode::Both => vec![Under::Echo, Under::Worker],
    };
    for round in 1..=args.rounds {
        for under in &modes {
            let result = run::run_once(args, *under, round).await?;
            println!("{}", result.line);
            lines.push(result.line.to_string());
            results.push(result);
        }
    }
    let median = |under: Under| {
        let mut v: Vec<f64> = results
            .iter()
            .filter(|r| r.under == under)
            .map(|r| r.throughput)
            .collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let (echo, worker) = (median(Under::Echo), median(Under::Worker));
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

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
