//! Soak run: 20,000 requests through a worker while the broker and the database
//! connections are cut every few seconds; prints sent / answered / rows /
//! duplicates / parked. Not a test: run it by hand and keep its output in
//! RELIABILITY.md.
//!
//! ```sh
//! cargo run --release --example soak -- [requests] [seconds between cuts] [cut seconds]
//! ```
//!
//! It needs the services the tests need (RabbitMQ at AMQP_URL, PostgreSQL at
//! TEST_POSTGRES_URL) and uses the tests' harness: its own exchange, queues and
//! database, and TCP proxies of its own between the worker and both services.

#[allow(dead_code)]
#[path = "../tests/integration/bus.rs"]
mod bus;
#[allow(dead_code)]
#[path = "../tests/integration/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../tests/integration/proxy.rs"]
mod proxy;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use helpers::{Backend, amqp_url, postgres_admin_url, spawn_app_with};
use proxy::{Proxy, upstream_of, via_proxy};

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let requests = args.first().copied().unwrap_or(20_000) as usize;
    let every = Duration::from_secs(args.get(1).copied().unwrap_or(4));
    let cut_for = Duration::from_millis(args.get(2).copied().unwrap_or(2) * 1000);

    let broker_proxy = Proxy::start(upstream_of(&amqp_url())).await;
    let db_proxy = Proxy::start(upstream_of(&postgres_admin_url())).await;
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.broker.amqp_url = via_proxy(&s.broker.amqp_url, &broker_proxy);
        s.store.url = via_proxy(&s.store.url, &db_proxy);
        s.prefetch = 256;
    })
    .await;
    let mut replies = app.replies().await;
    let started = Instant::now();

    // Publish at a steady pace (batches of 250 per 250 ms) so cuts land mid-stream.
    let publisher = {
        let bus = helpers::Bus::connect().await;
        let exchange = app.topology().exchange.clone();
        tokio::spawn(async move {
            for batch in 0..requests.div_ceil(250) {
                for i in batch * 250..((batch + 1) * 250).min(requests) {
                    let id = format!("soak-{i}");
                    let body = helpers::sample_with(&[
                        ("callid", serde_json::json!(id)),
                        ("AccountNumber", serde_json::json!(id)),
                    ]);
                    bus.publish_pipelined(
                        &exchange,
                        "LCM.WebService.GetDataPrivacyStatusRequest",
                        &body,
                        helpers::properties(Some(&id), Some(&id)),
                    )
                    .await;
                }
                bus.wait_for_confirms().await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    let mut replies_seen = 0usize;
    let mut cuts = (0, 0);
    let mut next_cut = Instant::now() + every;
    let mut cut_ends: Option<(Instant, bool)> = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    while ids.len() < requests && Instant::now() < deadline {
        if let Some(reply) = replies.next_within(Duration::from_millis(100)).await {
            replies_seen += 1;
            if let (Some(corr), Some(id)) = (reply.correlation_id.clone(), reply.response()) {
                ids.entry(corr).or_default().insert(id.to_owned());
            }
        }
        let now = Instant::now();
        match cut_ends {
            Some((end, broker)) if now >= end => {
                if broker {
                    broker_proxy.restore()
                } else {
                    db_proxy.restore()
                }
                cut_ends = None;
                next_cut = now + every;
            }
            None if now >= next_cut && ids.len() < requests => {
                let broker = (cuts.0 + cuts.1) % 2 == 0;
                if broker {
                    broker_proxy.cut();
                    cuts.0 += 1
                } else {
                    db_proxy.cut();
                    cuts.1 += 1
                }
                cut_ends = Some((now + cut_for, broker));
            }
            _ => {}
        }
    }
    broker_proxy.restore();
    db_proxy.restore();
    publisher.await.unwrap();

    let (rows, messages) = app.store.counts().await.unwrap();
    let distinct_ids: HashSet<&String> = ids.values().flatten().collect();
    let doubled = ids.values().filter(|set| set.len() > 1).count();
    let dead = app.bus.depth(&app.topology().dead_queue).await;
    let invalid = app.bus.depth(&app.topology().invalid_queue).await;
    let left = app.bus.depth(&app.topology().work_queue).await;
    let summary = serde_json::json!({
        "sent": requests,
        "answered": ids.len(),
        "lost": requests - ids.len(),
        "replies_including_repeats": replies_seen,
        "distinct_ids": distinct_ids.len(),
        "requests_answered_with_two_ids": doubled,
        "request_rows": rows,
        "message_rows": messages,
        "duplicate_rows": rows - ids.len() as i64,
        "parked_dead": dead,
        "parked_invalid": invalid,
        "left_in_work_queue": left,
        "broker_cuts": cuts.0,
        "database_cuts": cuts.1,
        "cut_seconds": cut_for.as_secs_f64(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{summary}");
    app.stop().await;
    let ok = ids.len() == requests
        && doubled == 0
        && rows == requests as i64
        && dead + invalid + left == 0;
    std::process::exit(if ok { 0 } else { 1 });
}
