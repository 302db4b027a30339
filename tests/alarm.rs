//! A broker memory alarm longer than the confirm timeout: every delivery still
//! ends acknowledged or handed back, none keeps its prefetch slot, and once the
//! alarm clears every request is answered and nothing is left unacknowledged.
//!
//! A test binary of its own because the alarm blocks every publisher on the
//! broker: cargo runs test binaries one after another, so no other test shares
//! the broker with it. It needs `rabbitmqctl` (the broker's own tool) to raise
//! and clear the alarm, and fails with a clear message without it.

#![allow(dead_code)] // the shared helpers serve the integration tests too

#[path = "integration/bus.rs"]
mod bus;
#[path = "integration/helpers.rs"]
mod helpers;

use std::process::Command;
use std::time::{Duration, Instant};

use helpers::{Answers, Backend, test_env};

fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .env("PATH", "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "rabbitmqctl is needed to raise a memory alarm ({e}); install RabbitMQ (see README)"
            )
        });
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A memory alarm on the broker for as long as it lives.
struct MemoryAlarm;

impl MemoryAlarm {
    fn raise() -> Self {
        rabbitmqctl(&["set_vm_memory_high_watermark", "absolute", "10MB"]);
        Self
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        rabbitmqctl(&["set_vm_memory_high_watermark", "0.4"]);
    }
}

fn unacknowledged(queue: &str) -> u64 {
    let listing = rabbitmqctl(&[
        "-q",
        "list_queues",
        "--no-table-headers",
        "name",
        "messages_unacknowledged",
    ]);
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{queue} is not in {listing}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_longer_than_the_confirm_timeout_leaves_no_delivery_stuck() {
    let mut app = test_env(Backend::Sqlite).await;
    let n = 300;
    let mut replies = app.replies().await;
    app.publish_burst("alarm", n).await;

    let alarm = MemoryAlarm::raise();
    let mut settings = app.settings.clone();
    settings.broker.confirm_timeout = Duration::from_secs(2);
    app.start_worker(settings);
    // The worker takes a prefetch's worth, and its replies are held by the alarm
    // for longer than the confirm timeout.
    tokio::time::sleep(Duration::from_secs(8)).await;
    drop(alarm);

    let mut answers = Answers::default();
    replies
        .collect(&mut answers, n, Duration::from_secs(120))
        .await;
    let queue = app.topology().work_queue.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut unacked = unacknowledged(&queue);
    while unacked > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        unacked = unacknowledged(&queue);
    }
    assert_eq!(unacked, 0, "deliveries left unacknowledged in {queue}");
    app.assert_exactly_once(&answers, n).await;
    app.stop().await;
}
