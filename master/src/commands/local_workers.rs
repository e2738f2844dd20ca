//! Local worker processes for `run`, `hunt` and `demo`: this same executable started as
//! `barrage worker` on loopback, sharing the machine's cores, killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::warn;

use crate::serve::{Outcome, serve_and_run};
use crate::setup::MasterSetup;
use crate::signals::shutdown_signal;

/// Local worker processes for `run` and `demo`; killed when dropped.
pub(super) struct LocalWorkers {
    children: Vec<tokio::process::Child>,
}

impl LocalWorkers {
    /// Starts `n` `barrage worker` processes (this same executable) joining `master`,
    /// each with `--source-addresses sources` when given.
    pub(super) fn spawn(n: u32, master: SocketAddr, sources: Option<&str>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the barrage executable")?;
        Self::spawn_exe(&exe, n, master, sources)
    }

    /// Starts `n` worker processes of the executable `exe` joining `master`.
    fn spawn_exe(exe: &Path, n: u32, master: SocketAddr, sources: Option<&str>) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        // The local workers share this machine's cores rather than each taking all.
        let threads = (barrage_worker::cores::default_threads() / n.max(1) as usize).max(1);
        for i in 0..n {
            let mut command = tokio::process::Command::new(exe);
            command.args(["worker", "--master", &master.to_string(), "--give-up-after", "30s"]);
            if let Some(list) = sources {
                command.args(["--source-addresses", list]);
            }
            let child = command
                .arg("--threads")
                .arg(threads.to_string())
                .arg("--worker-id")
                .arg(format!("local-{}-{i}", std::process::id()))
                .env(
                    "RUST_LOG",
                    std::env::var("BARRAGE_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting worker process {i} ({})", exe.display()))?;
            children.push(child);
        }
        Ok(LocalWorkers { children })
    }

    /// Waits for the workers to exit by themselves (they leave after the final ack).
    pub(super) async fn wait(mut self, limit: Duration) {
        let all = async {
            for c in &mut self.children {
                let _ = c.wait().await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            warn!("local workers did not exit in time; killing them");
        }
    }
}

/// Local workers when none are asked for: one per CPU core.
pub(super) fn default_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Runs `setup` on a loopback master port with `workers` local worker processes
/// (binding their target connections to `sources`, a checked `--source-addresses`).
pub(super) async fn run_local(setup: MasterSetup, workers: u32, sources: Option<&str>) -> anyhow::Result<Outcome> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a local master port")?;
    let addr = listener.local_addr()?;
    let local = LocalWorkers::spawn(workers, addr, sources)?;
    let outcome = serve_and_run(setup, listener, shutdown_signal()).await;
    local.wait(Duration::from_secs(5)).await;
    outcome
}
