//! The end of the run: Stop to every worker, then their final reports collected
//! until all are in or the stop timeout (plus slack) runs out.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracing::info;

use super::Controller;
use super::steering::Command;
use crate::cluster::Cluster;

impl Controller {
    /// Stops the run (`reason`) and waits for every final report; returns the
    /// workers whose final report never came. `duration`: the run's length, stamped
    /// on the heartbeats sent meanwhile.
    pub(super) async fn stop_and_collect(&mut self, reason: &str, duration: Duration) -> Vec<String> {
        info!(reason = %reason, "stopping the run; collecting final reports");
        let expecting = self.cluster.registry().stop(self.cfg.stop_timeout, reason);
        // Users get stop_timeout to finish; then a report interval and some slack.
        let deadline = Instant::now() + self.cfg.stop_timeout + Duration::from_secs(5);
        // Heartbeats on their own interval: this loop wakes on every final report, and a
        // heartbeat to every worker per wake-up is N^2 messages (1,000 workers overflowed
        // their queues and lost their final acks in the simulated-worker benchmark).
        let mut next_heartbeat = Instant::now();
        let cluster = self.cluster.clone();
        loop {
            // Registered before the look: a final report merged between the look and
            // the wait still wakes it (`notify_waiters` wakes only those registered;
            // one that slipped in between used to wait out the 250 ms sleep).
            let changed = cluster.changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (missing, closing) = final_reports_due(&cluster, &expecting, self.cfg.liveness_timeout);
            if (missing.is_empty() && !closing) || Instant::now() >= deadline {
                return missing;
            }
            self.cluster.declare_lost(self.cfg.liveness_timeout);
            if Instant::now() >= next_heartbeat {
                next_heartbeat = Instant::now() + self.cluster.opts().heartbeat_interval;
                self.cluster.registry().heartbeat(duration);
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                // The run is past starting; retargets and stops change nothing now.
                Some(command) = self.steered.commands.recv() => {
                    if let Command::Start(_, answer) = command {
                        let _ = answer.send(false);
                    }
                }
            }
        }
    }
}

/// The workers asked to stop whose final report is still due (not lost meanwhile),
/// and whether a fenced worker still talking may yet hand in its closing report.
fn final_reports_due(cluster: &Cluster, expecting: &[String], liveness: Duration) -> (Vec<String>, bool) {
    // Copied out of the registry, then the aggregator is read: never both locks.
    let (active, talking) = {
        let reg = cluster.registry();
        (reg.active_ids(), reg.lost_but_talking(liveness))
    };
    // A set: this runs on every final report, and a list's `contains` made it
    // quadratic in the workers.
    let active: HashSet<String> = active.into_iter().collect();
    let agg = cluster.aggregator();
    let missing = expecting
        .iter()
        .filter(|id| !agg.workers.get(*id).is_some_and(|p| p.final_seen))
        .filter(|id| active.contains(*id))
        .cloned()
        .collect();
    let closing = talking.iter().any(|id| {
        agg.workers
            .get(id)
            .is_some_and(|p| p.fenced && p.had_load && !p.final_seen)
    });
    (missing, closing)
}
