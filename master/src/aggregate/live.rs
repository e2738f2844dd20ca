//! The totals as the live view reads them ([`LiveTotals`]): every row's dense
//! histograms, the aggregated row and the SSE row, built at most once per
//! [`LIVE_EVERY`] and shared by every reader of that second.
//!
//! Why: the totals keep histograms as bucket counts ([`barrage_common::metrics::Accum`]);
//! percentiles need a dense histogram, and building one per row used to happen for
//! every Prometheus scrape, console line, CSV history row and `/api/stats` call, each
//! under the aggregator lock that 1,000 workers' reports wait on. Now the first reader
//! of a second builds them and the others share the result. The final report builds
//! its own, fresh ([`LiveTotals::of`]): it must hold every report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barrage_common::metrics::EndpointStats;
use barrage_common::plan::TaskKindTag;

use super::{Aggregator, EndpointKey, EndpointTotals};

/// How long one snapshot of the totals serves the live view.
pub const LIVE_EVERY: Duration = Duration::from_secs(1);

/// Every stats row's merged figures with dense histograms, and their sums.
#[derive(Debug)]
pub struct LiveTotals {
    /// When it was built.
    pub built: Instant,
    /// Each row: its key, its kind, its figures (histograms included), in the
    /// aggregator's order.
    pub rows: Vec<(EndpointKey, TaskKindTag, EndpointStats)>,
    /// Every row merged (Locust's "Aggregated").
    pub all: EndpointStats,
    /// The SSE rows merged (the TTFE table).
    pub sse: EndpointStats,
    /// The aggregator's state it was built from (see [`Aggregator::live`]).
    generation: u64,
}

impl LiveTotals {
    /// The figures of `endpoints` now: one dense build per row's histogram.
    pub fn of(endpoints: &BTreeMap<EndpointKey, EndpointTotals>) -> LiveTotals {
        let rows: Vec<_> = endpoints.iter().map(|(k, t)| (k.clone(), t.kind, t.stats())).collect();
        let mut all = EndpointStats::default();
        let mut sse = EndpointStats::default();
        for (_, kind, s) in &rows {
            all.merge(s);
            if *kind == TaskKindTag::Sse {
                sse.merge(s);
            }
        }
        LiveTotals {
            built: Instant::now(),
            rows,
            all,
            sse,
            generation: 0,
        }
    }
}

impl Aggregator {
    /// The totals for the live view: the snapshot of this second, built now if the
    /// last one is older than [`LIVE_EVERY`] or the totals changed in a way a reader
    /// must see at once (a reset of the statistics, a final report). Up to a second
    /// behind otherwise; the final report reads the totals themselves.
    pub fn live(&self) -> Arc<LiveTotals> {
        // Plain data: a poisoned lock still holds a usable snapshot.
        let mut cache = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = cache.as_ref()
            && live.generation == self.live_generation
            && live.built.elapsed() < LIVE_EVERY
        {
            return live.clone();
        }
        let mut live = LiveTotals::of(&self.endpoints);
        live.generation = self.live_generation;
        let live = Arc::new(live);
        *cache = Some(live.clone());
        live
    }

    /// The next live read builds a new snapshot.
    pub(super) fn live_changed(&mut self) {
        self.live_generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing;

    #[test]
    fn one_snapshot_serves_a_second_and_a_final_report_or_reset_shows_at_once() {
        let mut a = Aggregator::new(1);
        a.merge(&testing::requests_at(0, 3, 5));
        let first = a.live();
        assert_eq!(first.all.counts.requests, 3);
        a.merge(&testing::requests_at(1, 4, 5));
        let again = a.live();
        assert!(Arc::ptr_eq(&first, &again), "built once per second");
        assert_eq!(a.aggregated().counts.requests, 7, "the totals themselves are current");

        let mut last = testing::requests_at(2, 2, 5);
        last.r#final = true;
        a.merge(&last);
        let after_final = a.live();
        assert_eq!(after_final.all.counts.requests, 9, "a final report shows at once");
        assert_eq!(
            after_final.rows[0]
                .2
                .histogram(barrage_common::metrics::Metric::ResponseTime)
                .map(|h| h.len()),
            Some(9)
        );
        a.reset_stats(3.0);
        assert_eq!(a.live().all.counts.requests, 0, "a reset shows at once");
    }
}
