//! The run itself: a tick every 250 ms (or at the shape's next change) that writes
//! off lost workers, asks the load source what should run now and sends it when it
//! changed or the workers did, heartbeats the workers, and feeds the sinks; until the
//! run time, a stop, a loss policy, the hunt or a threshold ends it.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tracing::info;

use super::load::{Load, LoadSource};
use super::sinks::Sinks;
use super::steering::Command;
use super::{Controller, RunError, TICK, WorkerLossPolicy};
use crate::cluster::Targets;
use crate::threshold_eval::ThresholdRow;

/// How the run ended, for its summary.
#[derive(Debug)]
pub(super) struct Ended {
    /// Why it stopped, as the report says.
    pub(super) stop_reason: String,
    /// Why it ended as a cluster error (exit code 3), if it did.
    pub(super) aborted: Option<String>,
    /// The `abort_on_fail` threshold that stopped it.
    pub(super) threshold_abort: Option<ThresholdRow>,
}

impl Ended {
    /// An ordinary stop, for this reason.
    fn stop(reason: String) -> Ended {
        Ended {
            stop_reason: reason,
            aborted: None,
            threshold_abort: None,
        }
    }

    /// A stop that is a cluster error (exit code 3).
    fn abort(reason: String, why: String) -> Ended {
        Ended {
            aborted: Some(why),
            ..Ended::stop(reason)
        }
    }
}

/// The state of the driving loop.
#[derive(Debug)]
struct Drive {
    /// When the run started: the run clock's origin.
    start: Instant,
    /// What should run, and what changed it.
    load: LoadSource,
    /// The load the workers were last given...
    sent: Option<Load>,
    /// ...and the membership it was split over.
    balanced_at: u64,
    /// The membership seen this tick.
    membership: u64,
    next_heartbeat: Instant,
    sinks: Sinks,
}

impl Controller {
    /// Starts the run clock; the run is on.
    pub(super) fn begin(&self, load: &LoadSource) -> Instant {
        let start = Instant::now();
        self.cluster.registry().start_run(start);
        self.cluster.aggregator().start_clock(start);
        info!(users = load.users(), spawn_rate = load.spawn_rate(), run_time = ?self.cfg.run_time, "run started");
        start
    }

    /// Drives the run started at `start` until something ends it; hands back how it
    /// ended and the load source (its schedule as it ran).
    pub(super) async fn drive<F: Future<Output = ()>>(
        &mut self,
        start: Instant,
        load: LoadSource,
        shutdown: &mut Pin<&mut F>,
    ) -> (Ended, LoadSource) {
        let mut d = Drive {
            start,
            load,
            sent: None,
            balanced_at: u64::MAX,
            membership: 0,
            next_heartbeat: start,
            sinks: Sinks::new(&self.cfg, start),
        };
        let ended = loop {
            let now = Instant::now();
            if let Some(ended) = self.tick(&mut d, now) {
                break ended;
            }
            // Wake at the next stage change rather than up to a tick after it.
            let elapsed = now.duration_since(start);
            let nap = d
                .load
                .next_change_after(elapsed)
                .map_or(TICK, |at| (at - elapsed).min(TICK));
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = self.cluster.changed().notified() => {}
                Some(command) = self.steered.commands.recv() => match command {
                    Command::Start(_, answer) => { let _ = answer.send(false); }
                    Command::Retarget(r) => self.retarget = Some(r),
                    Command::Stop(reason) => break Ended::stop(reason),
                },
                _ = shutdown.as_mut() => break Ended::stop("interrupted (Ctrl-C / SIGTERM)".to_string()),
            }
        };
        d.sinks.finish();
        (ended, d.load)
    }

    /// One look at the run at `now`: Some when it ends.
    fn tick(&mut self, d: &mut Drive, now: Instant) -> Option<Ended> {
        let elapsed = now.duration_since(d.start);
        if let Some(rt) = self.cfg.run_time
            && elapsed >= rt
        {
            return Some(Ended::stop(format!(
                "run time of {} reached",
                barrage_common::duration::format(rt)
            )));
        }
        let last_due_us = self.cluster.aggregator().last_arrival_due_us;
        if let Some(reason) = super::replay::finished(self.cfg.arrival.as_ref(), elapsed, last_due_us) {
            return Some(Ended::stop(reason));
        }
        if let Some(ended) = self.check_workers(d) {
            return Some(ended);
        }
        if let Err(reason) = self.steer(d, elapsed) {
            return Some(Ended::stop(reason));
        }
        if now >= d.next_heartbeat {
            d.next_heartbeat = now + self.cluster.opts().heartbeat_interval;
            self.cluster.registry().heartbeat(elapsed);
        }
        let failed = d.sinks.feed(&self.cluster, now, elapsed, d.sent.as_ref())?;
        Some(Ended {
            stop_reason: failed.reason,
            aborted: None,
            threshold_abort: Some(failed.row),
        })
    }

    /// Writes off lost workers and applies `--on-worker-loss`; Some when the run ends
    /// for it (or because no worker is left: the report is still written).
    fn check_workers(&self, d: &mut Drive) -> Option<Ended> {
        let lost = self.cluster.declare_lost(self.cfg.liveness_timeout);
        if let Some(id) = lost.first()
            && self.cfg.on_worker_loss == WorkerLossPolicy::Abort
        {
            return Some(Ended::abort(
                format!("worker {id} lost (--on-worker-loss abort)"),
                format!("worker {id} was lost and --on-worker-loss is abort"),
            ));
        }
        d.membership = self.cluster.registry().membership();
        if !lost.is_empty() && self.cfg.on_worker_loss == WorkerLossPolicy::Continue {
            // Keep the others' targets: the lost users are not replaced.
            d.balanced_at = d.membership;
        }
        if self.cluster.registry().all_lost() {
            return Some(Ended::abort(
                "every worker was lost".to_string(),
                RunError::AllWorkersLost.to_string(),
            ));
        }
        None
    }

    /// Asks the load source what should run now (after the hunt's step and any
    /// retarget) and sends it when it changed or the workers did. Err: the hunt ends
    /// the run, for this reason.
    fn steer(&mut self, d: &mut Drive, elapsed: Duration) -> Result<(), String> {
        let mut why = d
            .load
            .hunt(elapsed, &self.cluster, d.sent.is_some())?
            .unwrap_or("shape");
        if let Some(r) = self.retarget.take() {
            why = d.load.retarget(r, elapsed, d.sent.as_ref());
        }
        let target = d.load.at(elapsed);
        if d.membership != d.balanced_at || d.sent.as_ref() != Some(&target) {
            if d.sent.is_some() && d.sent.as_ref() != Some(&target) {
                let what = target.describe(elapsed);
                info!(target = %what, "{why}: new target");
                self.cluster.registry().note_event_at(elapsed, format!("{why}: {what}"));
            }
            d.balanced_at = d.membership;
            self.assign(&target, &d.load);
            d.sent = Some(target);
        }
        Ok(())
    }

    /// Sends every active worker its share of `load`.
    fn assign(&self, load: &Load, source: &LoadSource) {
        let (users, spawn_rate, arrival) = match load {
            Load::Users(users, rate) => (*users, *rate, None),
            Load::Arrivals(a) => (0, source.spawn_rate(), Some(a)),
        };
        self.cluster.registry().assign(&Targets {
            users,
            spawn_rate,
            arrival,
            classes: &self.cfg.classes,
            host: self.cfg.host.as_deref().unwrap_or_default(),
            run_time: self.cfg.run_time,
        });
    }
}
