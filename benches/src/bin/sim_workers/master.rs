//! The real master as a child process: its scenario file, its command line, its log,
//! and waiting for its port. The child is killed when this handle is dropped, so an
//! error anywhere never leaves a master behind.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// One user class with a task per endpoint the fake workers report (every fifth SSE),
/// so the master's plan has them all and refuses none. The fake workers never run
/// it: the target is the discard port on loopback, so nothing leaves the machine even
/// if a real worker joined by mistake.
fn scenario_text(endpoints: u32) -> String {
    let mut text = String::from(
        "# Written by sim-workers: fake workers run none of this.\n\
         host = \"http://127.0.0.1:9\"\n\n\
         [[users]]\nname = \"SimUser\"\nwait = \"constant(1)\"\n",
    );
    for i in 0..endpoints as usize {
        let (name, sse) = crate::reports::scenario_endpoint(i);
        let kind = if sse { "\nkind = \"sse\"" } else { "" };
        text.push_str(&format!(
            "\n[[users.tasks]]\nname = \"{name}\"\nmethod = \"GET\"\npath = \"/\"{kind}\n"
        ));
    }
    text
}

pub(crate) struct Master {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub log: PathBuf,
    pub json: PathBuf,
}

impl Master {
    /// Writes the scenario into `dir` and starts `barrage master` expecting `workers`.
    pub(crate) async fn start(
        barrage: &Path,
        dir: &Path,
        (workers, endpoints): (u32, u32),
        run_time: Duration,
    ) -> Result<Master> {
        if !barrage.is_file() {
            bail!(
                "{} does not exist; build it with `cargo build --release -p barrage-master` or pass --barrage",
                barrage.display()
            );
        }
        let scenario = dir.join("scenario.toml");
        std::fs::write(&scenario, scenario_text(endpoints))
            .with_context(|| format!("writing {}", scenario.display()))?;
        let log = dir.join("master.log");
        let json = dir.join("report.json");
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let port = free_port().context("finding a free loopback port for the master")?;
        let users = workers.saturating_mul(10).to_string();
        let run_time = format!("{}ms", run_time.as_millis());
        let port_text = port.to_string();
        let mut cmd = Command::new(barrage);
        cmd.arg("master")
            .arg("-f")
            .arg(&scenario)
            .args(["-u", &users, "-r", "1000000", "-t", &run_time])
            .args(["--headless", "--only-summary"])
            .args(["--expect-workers", &workers.to_string()])
            .args(["--expect-workers-max-wait", "120s"])
            .args(["--master-bind-host", "127.0.0.1", "--master-bind-port", &port_text])
            .arg("--json")
            .arg(&json)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} master", barrage.display()))?;
        let pid = child.id().context("the master exited at once")?;
        Ok(Master {
            child,
            pid,
            port,
            log,
            json,
        })
    }

    /// Waits until the master accepts connections on its port.
    pub(crate) async fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        loop {
            if let Some(status) = self.child.try_wait().context("checking the master process")? {
                bail!("the master exited early ({status}); see {}", self.log.display());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the master did not listen on 127.0.0.1:{} in time; see {}",
                    self.port,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) async fn wait(&mut self) -> Result<ExitStatus> {
        self.child.wait().await.context("waiting for the master process")
    }

    /// Kills the master and reaps it.
    pub(crate) async fn kill(&mut self) {
        // An error here means it already exited.
        let _ = self.child.kill().await;
    }
}

/// A loopback port free right now. The master binds it a moment later; another
/// process taking it in between makes the master fail to start, with a clear error.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The master's last log lines, for an error message.
pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
