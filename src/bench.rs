//! `privacy-worker bench`: the measuring stick of intake throughput and latency.
//!
//! Each run declares fresh names (exchange, queues), starts a child process, either
//! the real worker (`privacy-worker run`) or the echo stand-in (`privacy-worker
//! echo`: consume, publish a confirmed reply, ack, no database), publishes N valid
//! requests with at most W unconfirmed (or at a fixed rate), matches replies by
//! correlation id, and prints one JSON line. Runs alternate echo and worker for
//! several rounds; the summary is the ratio of their medians. Only ratios from one
//! invocation mean anything on a noisy machine.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::amqp::{Broker, Incoming, Outgoing, Publisher, Topology};
use crate::config::BenchArgs;
use crate::send::SAMPLE_REQUEST;

/// What one run measured.
#[derive(Debug, Clone)]
struct RunResult {
    mode: &'static str,
    throughput: f64,
    line: Value,
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
            let result = run_once(args, mode, round).await?;
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
        }
    });
    lines.push(summary.to_string());
    Ok(lines)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

async fn run_once(args: &BenchArgs, mode: &'static str, round: u32) -> anyhow::Result<RunResult> {
    let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let topology = Topology {
        exchange: format!("bench.{id}.lcm"),
        work_queue: format!("bench.{id}.requests"),
        invalid_queue: format!("bench.{id}.invalid"),
        dead_queue: format!("bench.{id}.dead"),
        bindings: Topology::default_bindings(),
        delivery_limit: 20,
        retry_delays: Topology::default_retry_delays(),
    };
    let broker = Broker::connect(&args.broker.amqp_url, "privacy-worker bench").await?;
    broker.declare(&topology).await?;
    let reply_queue = broker
        .reply_queue(Some((
            &topology.exchange,
            "*.*.SetDataPrivacyStatusResponse",
        )))
        .await?;
    let mut replies = broker.consume(&reply_queue, 2048).await?;

    let mut child = spawn_child(args, mode, &topology)?;
    let pid = child.id().context("child pid")?;
    wait_for_consumer(&broker, &topology.work_queue, &mut child).await?;

    let publisher = broker.publisher().await?;
    let sent: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let started = Instant::now();
    let publishing = {
        let sent = sent.clone();
        let exchange = topology.exchange.clone();
        let (n, window, rate) = (args.n, args.window.max(1), args.rate);
        tokio::spawn(
            async move { publish_all(publisher, exchange, id, n, window, rate, sent).await },
        )
    };

    let mut latencies = Vec::with_capacity(args.n);
    let mut seen: HashMap<String, u32> = HashMap::new();
    let (mut errors, mut last_reply) = (0usize, started);
    let deadline = started + Duration::from_secs(args.timeout_secs);
    while seen.len() < args.n {
        let next = tokio::time::timeout_at(deadline.into(), replies.next()).await;
        let Ok(Some(Ok(reply))) = next else { break };
        let now = Instant::now();
        reply.ack().await?;
        let Some(correlation) = reply.correlation_id.clone() else {
            continue;
        };
        let count = seen.entry(correlation.clone()).or_default();
        *count += 1;
        if *count > 1 {
            continue;
        }
        if !is_success(&reply) {
            errors += 1;
        }
        if let Some(at) = sent.lock().expect("not poisoned").get(&correlation) {
            latencies.push(now.duration_since(*at));
        }
        last_reply = now;
    }
    publishing.await??;
    let elapsed = last_reply.duration_since(started).as_secs_f64().max(1e-6);
    let (cpu, rss) = (cpu_seconds(pid), peak_rss_mib(pid));
    stop_child(&mut child).await;
    broker.delete_topology(&topology).await;
    broker.close().await;

    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
    };
    let replied = seen.len();
    let throughput = replied as f64 / elapsed;
    let line = json!({
        "mode": mode, "round": round, "n": args.n, "window": args.window, "rate": args.rate,
        "replied": replied, "missing": args.n - replied,
        "duplicates": seen.values().filter(|c| **c > 1).count(), "errors": errors,
        "throughput_per_s": round1(throughput),
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        "cpu_s": cpu, "rss_peak_mib": rss,
        "cpu_us_per_request": cpu.map(|c| (c * 1e6 / args.n as f64).round()),
    });
    Ok(RunResult {
        mode,
        throughput,
        line,
    })
}

fn is_success(reply: &Incoming) -> bool {
    serde_json::from_slice::<Value>(&reply.body)
        .map(|v| v["message"]["response"].is_string())
        .unwrap_or(false)
}

async fn publish_all(
    publisher: Publisher,
    exchange: String,
    run: String,
    n: usize,
    window: usize,
    rate: Option<u32>,
    sent: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>>,
) -> anyhow::Result<()> {
    let template: Value = serde_json::from_str(SAMPLE_REQUEST)?;
    let mut in_flight = FuturesUnordered::new();
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let start = Instant::now();
    for i in 0..n {
        if let Some(interval) = interval {
            tokio::time::sleep_until((start + interval * i as u32).into()).await;
        }
        while in_flight.len() >= window {
            in_flight.next().await.transpose()?;
        }
        let id = format!("{run}-{i}");
        let mut body = template.clone();
        body["message"]["callid"] = json!(id);
        body["message"]["AccountNumber"] = json!(id);
        let body = serde_json::to_vec(&body)?;
        let publisher = publisher.clone();
        let exchange = exchange.clone();
        sent.lock()
            .expect("not poisoned")
            .insert(id.clone(), Instant::now());
        in_flight.push(async move {
            publisher
                .publish(Outgoing {
                    exchange: &exchange,
                    routing_key: "LCM.WebService.GetDataPrivacyStatusRequest",
                    body: &body,
                    correlation_id: Some(&id),
                    message_id: Some(&id),
                    reply_to: None,
                })
                .await
        });
    }
    while let Some(result) = in_flight.next().await {
        result?;
    }
    Ok(())
}

fn spawn_child(
    args: &BenchArgs,
    mode: &str,
    t: &Topology,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg(if mode == "echo" { "echo" } else { "run" })
        .env("AMQP_URL", &args.broker.amqp_url)
        .env("LCM_EXCHANGE", &t.exchange)
        .env("PRIVACY_QUEUE", &t.work_queue)
        .env("PRIVACY_INVALID_QUEUE", &t.invalid_queue)
        .env("PRIVACY_DEAD_QUEUE", &t.dead_queue)
        .env("PRIVACY_PREFETCH", args.prefetch.to_string())
        .env("DATABASE_URL", &args.database_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(path) = &args.key_file {
        command.env("PRIVACY_KEY_FILE", path);
    }
    Ok(command.spawn()?)
}

async fn wait_for_consumer(
    broker: &Broker,
    queue: &str,
    child: &mut tokio::process::Child,
) -> anyhow::Result<()> {
    for _ in 0..300 {
        if broker.consumer_count(queue).await? > 0 {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the child exited before consuming: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the child did not start consuming within 30 s")
}

async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}

/// utime + stime of a process, in seconds (Linux; clock ticks of 100 Hz).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Peak resident set size (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// The echo stand-in: the bus path of the worker without a database.
pub async fn echo(
    amqp_url: &str,
    topology: &Topology,
    prefetch: u16,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let broker = Broker::connect(amqp_url, "privacy-worker echo").await?;
    broker.declare(topology).await?;
    let publisher = broker.publisher().await?;
    let mut deliveries = broker.consume(&topology.work_queue, prefetch).await?;
    let exchange = topology.exchange.clone();
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            delivery = deliveries.next() => {
                let Some(Ok(incoming)) = delivery else { break };
                let (publisher, exchange) = (publisher.clone(), exchange.clone());
                tasks.spawn(async move {
                    let correlation = incoming.correlation().map(str::to_owned);
                    let body = br#"{"channel":"LCM","topic":"WebService","subtopic":"SetDataPrivacyStatusResponse","source":"echo","message":{"response":"0"}}"#;
                    let sent = publisher.publish(Outgoing {
                        exchange: &exchange,
                        routing_key: "LCM.WebService.SetDataPrivacyStatusResponse",
                        body,
                        correlation_id: correlation.as_deref(),
                        message_id: None,
                        reply_to: None,
                    }).await;
                    if sent.is_ok() {
                        let _ = incoming.ack().await;
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    broker.close().await;
    Ok(())
}
