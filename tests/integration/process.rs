//! The worker binary as a child process, for faults that need a real process:
//! kill -9, SIGTERM, several instances.

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::helpers::TestApp;

/// A running `privacy-worker run`, logging to a file.
pub struct WorkerProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts a worker on `app`'s resources, with `extra` environment on top.
    pub fn start(app: &TestApp, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("worker.log");
        let out = File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_privacy-worker"));
        command
            .arg("run")
            .env("RUST_LOG", "info")
            // Off unless a test asks: several workers run at once on one host.
            .env("PRIVACY_HTTP_ADDR", "")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .kill_on_drop(true);
        for (key, value) in app.worker_env() {
            command.env(key, value);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("the worker binary starts");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// SIGKILL: no chance to drain or close anything.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill -9");
        self.child.wait().await.expect("reaped");
    }

    /// SIGTERM, then asserts a clean exit: status 0 within `within`. The panic
    /// message carries the worker's log.
    pub async fn sigterm_exits_zero(&mut self, within: Duration) {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "no exit within {within:?} of SIGTERM; log:\n{}",
                self.logs()
            ),
        };
        assert!(
            status.success(),
            "exit status {status} after SIGTERM; log:\n{}",
            self.logs()
        );
    }

    /// What the worker logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
