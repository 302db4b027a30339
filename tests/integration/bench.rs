//! The bench tool itself works: every request answered, nothing missing, both
//! modes, a summary with a ratio. (Its figures are read by people, not asserted.)

use serde_json::Value;

use crate::helpers::amqp_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_runs_echo_and_worker_and_prints_a_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_privacy-worker"))
        .args(["bench", "--n", "200", "--window", "32", "--rounds", "1"])
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
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let runs: Vec<&Value> = lines.iter().filter(|l| l.get("mode").is_some()).collect();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["replied"], 200, "{run}");
        assert_eq!(run["missing"], 0);
        assert_eq!(run["duplicates"], 0);
        assert_eq!(run["errors"], 0);
        assert!(run["p99_ms"].as_f64().unwrap() > 0.0);
    }
    let summary = &lines.last().unwrap()["summary"];
    assert!(
        summary["ratio_worker_to_echo"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
}
