//! The bench tool itself works: every request answered, nothing missing, both
//! modes, a summary with a ratio; and the backlog load with two instances.
//! (Its figures are read by people, not asserted.)

use serde_json::Value;

use crate::helpers::amqp_url;

/// Runs `privacy-worker-bench` with `args` on a fresh SQLite store; returns the
/// run lines and the summary.
async fn bench(args: &[&str]) -> (Vec<Value>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_privacy-worker-bench"))
        .args(args)
        .env("AMQP_URL", amqp_url())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        )
        .env_remove("PRIVACY_KEY_FILE")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let summary = lines.pop().expect("a summary line")["summary"].clone();
    (lines, summary)
}

fn assert_all_answered_once(run: &Value, n: u64) {
    assert_eq!(run["replied"], n, "{run}");
    assert_eq!(run["missing"], 0, "{run}");
    assert_eq!(run["duplicates"], 0, "{run}");
    assert_eq!(run["errors"], 0, "{run}");
    assert!(run["p99_ms"].as_f64().unwrap() > 0.0, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_runs_echo_and_worker_and_prints_a_ratio() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("latency");
    let log_arg = log.to_str().unwrap();
    let (runs, summary) = bench(&[
        "--n",
        "200",
        "--window",
        "32",
        "--rounds",
        "1",
        "--latency-log",
        log_arg,
    ])
    .await;
    let modes: Vec<&str> = runs.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["echo", "worker"]);
    for run in &runs {
        assert_all_answered_once(run, 200);
        // The latency log has a line per reply: publish offset (s), latency (ms).
        let path = format!("{log_arg}-{}-1", run["mode"].as_str().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Vec<f64>> = text
            .lines()
            .map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect())
            .collect();
        assert_eq!(lines.len(), 200, "{path}");
        assert!(
            lines
                .iter()
                .all(|l| l.len() == 2 && l[0] >= 0.0 && l[1] > 0.0)
        );
    }
    assert!(
        summary["ratio_worker_to_echo"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_drain_a_backlog_queued_before_they_start() {
    let args = [
        "--mode",
        "worker",
        "--backlog",
        "--instances",
        "2",
        "--n",
        "400",
    ];
    let (runs, summary) = bench(&[&args[..], &["--rounds", "1"]].concat()).await;
    assert_eq!(runs.len(), 1);
    assert_all_answered_once(&runs[0], 400);
    assert_eq!(runs[0]["instances"], 2);
    assert_eq!(runs[0]["backlog"], true);
    assert!(summary["worker_median_per_s"].as_f64().unwrap() > 0.0);
}
