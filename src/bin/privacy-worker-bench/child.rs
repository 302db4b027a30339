//! The processes under test: starting the worker or the echo as child processes
//! on a run's own topology, waiting for their consumers, stopping them, and reading
//! their CPU time and peak memory from /proc.

use std::process::Stdio;
use std::time::Duration;

use anyhow::bail;

use privacy_worker::amqp::{Broker, Topology};

use crate::{BenchArgs, Under};

/// The children of one run, all consuming the run's work queue.
pub struct Children {
    children: Vec<tokio::process::Child>,
    pids: Vec<u32>,
}

impl Children {
    /// Starts `args.instances` children (the worker, or the echo) on `t` and waits
    /// until each has a consumer on the work queue.
    pub async fn start(
        args: &BenchArgs,
        under: Under,
        t: &Topology,
        broker: &Broker,
    ) -> anyhow::Result<Self> {
        let count = args.instances.max(1);
        let mut children = Vec::with_capacity(count);
        for _ in 0..count {
            children.push(spawn_child(args, under, t)?);
        }
        let pids = children.iter().filter_map(|c| c.id()).collect();
        let mut started = Self { children, pids };
        started.wait_for_consumers(broker, &t.work_queue).await?;
        Ok(started)
    }

    async fn wait_for_consumers(&mut self, broker: &Broker, queue: &str) -> anyhow::Result<()> {
        for _ in 0..300 {
            if broker.consumer_count(queue).await? as usize >= self.children.len() {
                return Ok(());
            }
            for child in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!("a child exited before consuming: {status}");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the children did not all start consuming within 30 s")
    }

    /// CPU seconds (user + system) of all children together.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.pids.iter().map(|&pid| cpu_seconds(pid)).sum()
    }

    /// The largest peak resident set size of any child, in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let peaks: Option<Vec<f64>> = self.pids.iter().map(|&pid| peak_rss_mib(pid)).collect();
        peaks?.into_iter().reduce(f64::max)
    }

    /// Stops every child with SIGTERM (a graceful drain) and waits for it.
    pub async fn stop(mut self) {
        for pid in &self.pids {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        for child in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        }
    }
}

fn spawn_child(
    args: &BenchArgs,
    under: Under,
    t: &Topology,
) -> anyhow::Result<tokio::process::Child> {
    // The echo is this binary; the worker is the `privacy-worker` beside it.
    let bench = std::env::current_exe()?;
    let (exe, subcommand) = match under {
        Under::Echo => (bench, "echo"),
        Under::Worker => (bench.with_file_name("privacy-worker"), "run"),
    };
    let mut command = tokio::process::Command::new(exe);
    command
        .arg(subcommand)
        .env("AMQP_URL", &args.broker.amqp_url)
        .env("LCM_EXCHANGE", &t.exchange)
        .env("PRIVACY_QUEUE", &t.work_queue)
        .env("PRIVACY_INVALID_QUEUE", &t.invalid_queue)
        .env("PRIVACY_DEAD_QUEUE", &t.dead_queue)
        .env("PRIVACY_PREFETCH", args.prefetch.to_string())
        .env("DATABASE_URL", &args.database_url)
        .env("RUST_LOG", "warn")
        // Several workers on one host; the bench scrapes nothing.
        .env("PRIVACY_HTTP_ADDR", "")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(path) = &args.key_file {
        command.env("PRIVACY_KEY_FILE", path);
    }
    Ok(command.spawn()?)
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
