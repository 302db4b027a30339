//! One run of the bench: a fresh topology, the children under test, N requests
//! published, every reply matched by correlation id, and one JSON line of figures.
//!
//! Two loads: a stream (the children run while requests are published, at most W
//! unconfirmed or at a fixed rate), and a backlog (all N wait in the queue before
//! the children start, as after an outage), which measures drain rate and memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use privacy_worker::amqp::{Broker, Incoming, Outgoing, Publisher, Topology};
use privacy_worker::send::SAMPLE_REQUEST;

use crate::child::Children;
use crate::rounds::{RunResult, round1};
use crate::{BenchArgs, Under};

/// When each request (by correlation id) was published.
type SentAt = Arc<Mutex<HashMap<String, Instant>>>;

/// The publisher's confirm latencies: already known (backlog), or to come.
enum Publishing {
    Done(Vec<Duration>),
    Running(tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>),
}

/// One run of `mode` (echo or worker) on fresh names; its figures as a JSON line.
pub async fn run_once(args: &BenchArgs, under: Under, round: u32) -> anyhow::Result<RunResult> {
    let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let topology = Topology::scratch(&format!("bench.{id}"));
    let broker = Broker::connect(&args.broker.amqp_url, "privacy-worker bench").await?;
    broker.declare(&topology).await?;
    let reply_queue = broker
        .reply_queue(Some((
            &topology.exchange,
            "*.*.SetDataPrivacyStatusResponse",
        )))
        .await?;
    let mut replies = broker.consume(&reply_queue, 2048).await?;

    let publisher = broker.publisher().await?;
    let sent: SentAt = Default::default();
    let (n, window, rate) = (args.n, args.window.max(1), args.rate);
    let exchange = topology.exchange.clone();
    let (children, started, publishing) = if args.backlog {
        // The whole backlog is queued before any child starts; the clock starts
        // when they are all consuming.
        let confirms = publish_all(publisher, exchange, id, n, window, None, sent.clone()).await?;
        let children = Children::start(args, under, &topology, &broker).await?;
        (children, Instant::now(), Publishing::Done(confirms))
    } else {
        let children = Children::start(args, under, &topology, &broker).await?;
        let sent = sent.clone();
        let publishing = tokio::spawn(async move {
            publish_all(publisher, exchange, id, n, window, rate, sent).await
        });
        (children, Instant::now(), Publishing::Running(publishing))
    };

    // (when it was published, from the start; its latency), per reply.
    let mut latencies: Vec<(Duration, Duration)> = Vec::with_capacity(args.n);
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
        // A backlogged request waits from the moment the children are ready.
        if let Some(at) = sent.lock().expect("not poisoned").get(&correlation) {
            let at = (*at).max(started);
            latencies.push((at - started, now - at));
        }
        last_reply = now;
    }
    let mut confirms = match publishing {
        Publishing::Running(publishing) => publishing.await??,
        Publishing::Done(confirms) => confirms,
    };
    let elapsed = last_reply.duration_since(started).as_secs_f64().max(1e-6);
    let (cpu, rss) = (children.cpu_seconds(), children.peak_rss_mib());
    children.stop().await;
    broker.delete_topology(&topology).await;
    broker.close().await;

    if let Some(path) = &args.latency_log {
        write_latency_log(path, under, round, &latencies)?;
    }
    let mut latencies: Vec<Duration> = latencies.into_iter().map(|(_, l)| l).collect();
    latencies.sort();
    confirms.sort();
    let pct = |p: f64| percentile(&latencies, p);
    let replied = seen.len();
    let throughput = replied as f64 / elapsed;
    let line = json!({
        "mode": under.as_str(), "round": round, "n": args.n, "window": args.window, "rate": args.rate,
        "backlog": args.backlog, "instances": args.instances,
        "replied": replied, "missing": args.n - replied,
        "duplicates": seen.values().filter(|c| **c > 1).count(), "errors": errors,
        "throughput_per_s": round1(throughput),
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        "confirm_p50_ms": percentile(&confirms, 0.5), "confirm_p99_ms": percentile(&confirms, 0.99),
        "cpu_s": cpu, "rss_peak_mib": rss,
        "cpu_us_per_request": cpu.map(|c| (c * 1e6 / args.n as f64).round()),
    });
    Ok(RunResult {
        under,
        throughput,
        line,
    })
}

/// Writes `<path>-<mode>-<round>`: per reply, seconds from the start to its
/// publish and its latency in ms, in the order the replies came.
fn write_latency_log(
    path: &std::path::Path,
    under: Under,
    round: u32,
    latencies: &[(Duration, Duration)],
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(latencies.len() * 16);
    for (at, latency) in latencies {
        let _ = writeln!(
            text,
            "{:.4} {:.3}",
            at.as_secs_f64(),
            latency.as_secs_f64() * 1e3
        );
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!("-{}-{round}", under.as_str()));
    std::fs::write(&name, text)?;
    Ok(())
}

/// The p-th percentile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> Option<f64> {
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted
        .get(at)
        .map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
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
    sent: SentAt,
) -> anyhow::Result<Vec<Duration>> {
    let template: Value = serde_json::from_str(SAMPLE_REQUEST)?;
    // Each publish is its own task, so it goes out at once, not when the window
    // next fills up, and a sleeping rate schedule does not hold it back.
    let mut in_flight = tokio::task::JoinSet::new();
    let mut confirms = Vec::with_capacity(n);
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let start = Instant::now();
    for i in 0..n {
        if let Some(interval) = interval {
            tokio::time::sleep_until((start + interval * i as u32).into()).await;
        }
        while let Some(done) = in_flight.try_join_next() {
            confirms.push(done??);
        }
        while in_flight.len() >= window {
            confirms.push(in_flight.join_next().await.expect("not empty")??);
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
        in_flight.spawn(async move {
            let at = Instant::now();
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
                .map(|()| at.elapsed())
        });
    }
    while let Some(done) = in_flight.join_next().await {
        confirms.push(done??);
    }
    Ok(confirms)
}
