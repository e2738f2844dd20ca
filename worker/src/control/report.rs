//! What a report holds and when it is due: the run-clock grid reports end on
//! ([`ReportGrid`]), and the interval's endpoint rows, split per replica.

use std::time::{Duration, Instant};

use barrage_common::metrics::EndpointStats;
use barrage_common::plan::RunPlan;
use barrage_common::wire::endpoint_to_proto;
use barrage_proto::v1;

use crate::runner::Engine;

/// Where a worker's reports fall on the run clock, from the first Assign: the run's
/// origin on this machine's clock, the first report boundary after now (reports end
/// on whole multiples of `every` since the origin), and the run time now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportGrid {
    /// The run's start (run time 0) on this machine's clock.
    pub origin: Instant,
    /// The end of the first report: the next whole multiple of `every` after now.
    pub next_report_at: Instant,
    /// The run time now, in microseconds: where the first report's interval starts.
    pub elapsed_us: i64,
}

impl ReportGrid {
    /// `run_elapsed_us`: the run time the master stamped on the Assign.
    pub fn new(now: Instant, run_elapsed_us: i64, every: Duration) -> ReportGrid {
        let origin = now
            .checked_sub(Duration::from_micros(run_elapsed_us.max(0) as u64))
            .unwrap_or(now);
        let elapsed = now.duration_since(origin);
        let k = elapsed.as_micros() / every.as_micros().max(1) + 1;
        ReportGrid {
            origin,
            next_report_at: origin + every * k as u32,
            elapsed_us: elapsed.as_micros() as i64,
        }
    }
}

/// An interval's endpoint deltas from the recorder's slots (slot 0: no address; slot
/// `p + 1`: peer `p`), each labelled with its address where the host is split by
/// replica. Every split address of a class's host gets a row for each endpoint of the
/// class even without a request: a replica that got nothing is a finding.
pub(super) fn replica_rows(plan: &RunPlan, engine: &Engine, stats: Vec<EndpointStats>) -> Vec<v1::EndpointDelta> {
    let endpoints = engine.recorder().endpoints();
    let labels = engine.placement().labels();
    let label = |slot: usize| slot.checked_sub(1).and_then(|p| labels.get(p).copied().flatten());
    let mut due: std::collections::BTreeSet<(usize, usize)> = std::collections::BTreeSet::new();
    for (class, peers) in plan.classes.iter().zip(engine.placement().class_split_peers()) {
        for task in class.tasks.iter().chain(&class.on_start) {
            due.extend(peers.iter().map(|p| (p + 1, task.endpoint)));
        }
    }
    let mut out = Vec::new();
    for (i, mut s) in stats.into_iter().enumerate() {
        let (slot, endpoint) = (i / endpoints, i % endpoints);
        let Some(meta) = plan.endpoints.get(endpoint) else {
            continue;
        };
        let peer = label(slot);
        let zero_row = due.remove(&(slot, endpoint));
        if s.is_empty() && s.outcomes.is_empty() && !zero_row {
            continue;
        }
        if peer.is_none() {
            // The success-only latency is a per-replica figure.
            s.histograms[barrage_common::metrics::Metric::ResponseTimeOk as usize] = None;
        }
        let mut d = endpoint_to_proto(meta, &s);
        d.peer = peer.map(|a| a.to_string()).unwrap_or_default();
        out.push(d);
    }
    for (slot, endpoint) in due {
        if let (Some(meta), Some(peer)) = (plan.endpoints.get(endpoint), label(slot)) {
            let mut d = endpoint_to_proto(meta, &EndpointStats::default());
            d.peer = peer.to_string();
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_land_on_whole_seconds_of_the_run_clock() {
        let now = Instant::now();
        let grid = ReportGrid::new(now, 2_500_000, Duration::from_secs(1));
        assert_eq!(grid.elapsed_us, 2_500_000);
        assert_eq!(now.duration_since(grid.origin), Duration::from_micros(2_500_000));
        assert_eq!(grid.next_report_at.duration_since(grid.origin), Duration::from_secs(3));
        // A master that lies (negative run time) cannot put the origin in the future.
        let grid = ReportGrid::new(now, -5, Duration::from_secs(1));
        assert_eq!((grid.origin, grid.elapsed_us), (now, 0));
    }
}
