//! Before the run: waiting for the expected workers (and, with `--start-from-ui`, for
//! a start from the web UI), heartbeating the ones already in.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tracing::info;

use super::steering::{Command, Start};
use super::{Controller, RunError, TICK};
use crate::cluster::Phase;

impl Controller {
    /// Waits until enough workers are in (and the web UI started the run, with
    /// `--start-from-ui`). Returns the web UI's start, if there was one.
    pub(super) async fn wait_for_workers<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<Option<Start>, RunError> {
        let expected = self.cfg.expect_workers;
        let wait_start = Instant::now();
        let mut announced = usize::MAX;
        // A start asked for before the workers were all in.
        let mut pending: Option<Start> = None;
        // Workers that joined early hear from us while they wait for the others.
        let mut next_heartbeat = Instant::now();
        loop {
            let joined = self.cluster.registry().connected();
            if joined != announced {
                info!(joined, expected, "waiting for workers");
                announced = joined;
            }
            let enough = joined >= expected.max(1) as usize;
            if enough && !self.cfg.start_from_ui {
                return Ok(None);
            }
            if enough && let Some(start) = pending.take() {
                info!(?start, "started from the web UI");
                self.steered.started(&start);
                return Ok(Some(start));
            }
            if !enough
                && let Some(max) = self.cfg.expect_workers_max_wait
                && wait_start.elapsed() >= max
            {
                self.cluster.registry().set_phase(Phase::Done);
                return Err(RunError::NotEnoughWorkers {
                    joined,
                    expected,
                    waited: max,
                });
            }
            if Instant::now() >= next_heartbeat {
                next_heartbeat = Instant::now() + self.cluster.opts().heartbeat_interval;
                self.cluster.registry().heartbeat(Duration::ZERO);
            }
            tokio::select! {
                _ = self.cluster.changed().notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                Some(command) = self.steered.commands.recv() => match command {
                    Command::Start(start, answer) => {
                        let taken = pending.is_none();
                        if taken {
                            pending = Some(start);
                        }
                        let _ = answer.send(taken);
                    }
                    // Applied once the run starts.
                    Command::Retarget(r) => self.retarget = Some(r),
                    Command::Stop(_) => return self.interrupted(),
                },
                _ = shutdown.as_mut() => return self.interrupted(),
            }
        }
    }

    /// Ends the run before it started.
    fn interrupted(&self) -> Result<Option<Start>, RunError> {
        self.cluster.registry().set_phase(Phase::Done);
        Err(RunError::Interrupted)
    }
}
