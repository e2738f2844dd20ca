//! The mergeable unit of measurement, [`EndpointStats`]: everything recorded for one
//! endpoint over some span. Workers record into it and the master merges them:
//! merging is associative and exact, so the cluster-wide figures are the same as if
//! one process had recorded everything.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::counts::Counts;
use super::failure_kind::FailureKind;
use super::histogram::{MAX_TRACKABLE_US, new_histogram};
use super::metric::{METRIC_COUNT, Metric};
use super::nodes::{NodeKey, NodeRun, NodeStats, merge_nodes, record_node};
use super::outcomes::{FailureEntry, OutcomeKey, bump, merge_outcomes};
use crate::bounds;

/// Everything recorded for one endpoint over some span (an interval or a whole run).
#[derive(Debug, Clone, Default)]
pub struct EndpointStats {
    /// The plain counters: requests, failures, bytes, connections, streams, events.
    pub counts: Counts,
    /// Failures by (kind, detail): their counts add up to `counts.failures`.
    pub failure_kinds: BTreeMap<OutcomeKey, FailureEntry>,
    /// Outcomes that are not failures but not plain successes either (expected
    /// statuses, cancelled at stop).
    pub outcomes: BTreeMap<OutcomeKey, FailureEntry>,
    /// SSE events by their type (`message`, `workflow_finished`), bounded (see
    /// [`EndpointStats::count_event`]).
    pub events_by_type: BTreeMap<String, u64>,
    /// One histogram per [`Metric`] (indexed by `metric as usize`), µs; `None` until
    /// a value is recorded.
    pub histograms: [Option<Histogram<u64>>; METRIC_COUNT],
    /// Dify endpoints: where the workflow's time goes, per node (bounded, see
    /// [`super::nodes`]); empty for other endpoints.
    pub nodes: BTreeMap<NodeKey, NodeStats>,
}

impl EndpointStats {
    /// Records one value in microseconds; values below 1 µs are recorded as 1 µs.
    /// Values above [`MAX_TRACKABLE_US`] (one day; a target's own `elapsed_time` can
    /// claim anything) are recorded as that maximum, so every report stays decodable.
    pub fn record(&mut self, metric: Metric, micros: u64) {
        let h = self.histograms[metric as usize].get_or_insert_with(new_histogram);
        // Auto-resizing histograms accept any u64 above 0.
        let _ = h.record(micros.clamp(1, MAX_TRACKABLE_US));
    }

    /// The histogram of `metric`, if a value was recorded.
    pub fn histogram(&self, metric: Metric) -> Option<&Histogram<u64>> {
        self.histograms[metric as usize].as_ref()
    }

    /// HTTP 429 answers, failures and declared outcomes alike: Dify's two kinds (the app
    /// limit also when dify-api 1.14.1 answers it 400), a plain `http_status 429`, and
    /// an expected 429.
    pub fn status_429(&self) -> u64 {
        self.failure_kinds
            .iter()
            .chain(&self.outcomes)
            .filter(|((kind, detail), _)| {
                kind == FailureKind::TooManyRequests.as_str()
                    || kind == FailureKind::RateLimitError.as_str()
                    || (kind == FailureKind::ExpectedStatus.as_str() && detail == "429")
                    || (kind == FailureKind::HttpStatus.as_str() && detail.starts_with("429"))
            })
            .map(|(_, e)| e.count)
            .sum()
    }

    /// Counts a failure. `detail` and the sample (made only for a new key) come from the
    /// target: redact them first, then they are bounded here ([`crate::bounds`]).
    pub fn fail(&mut self, kind: FailureKind, detail: &str, sample: impl FnOnce() -> String) {
        self.counts.failures += 1;
        bump(&mut self.failure_kinds, kind.as_str(), detail, sample);
    }

    /// Counts an outcome that is not a failure; bounded as [`Self::fail`].
    pub fn outcome(&mut self, kind: FailureKind, detail: &str, sample: impl FnOnce() -> String) {
        bump(&mut self.outcomes, kind.as_str(), detail, sample);
    }

    /// Counts one event under its type, bounded: names cut to
    /// [`bounds::MAX_EVENT_TYPE`] bytes, and past [`bounds::MAX_EVENT_TYPES`] types
    /// the rest count under [`bounds::OTHER`].
    pub fn count_event(&mut self, event_type: &str) {
        self.counts.events += 1;
        add_event_type(&mut self.events_by_type, event_type, 1);
    }

    /// Records one Dify node execution (bounded, see [`super::nodes`]).
    pub fn record_node(&mut self, run: &NodeRun<'_>) {
        record_node(&mut self.nodes, run);
    }

    /// Adds `other` into `self`. Exact: counts add, histograms merge bucket by bucket.
    pub fn merge(&mut self, other: &EndpointStats) {
        self.counts.add(&other.counts);
        merge_outcomes(&mut self.failure_kinds, &other.failure_kinds);
        merge_outcomes(&mut self.outcomes, &other.outcomes);
        for (k, v) in &other.events_by_type {
            add_event_type(&mut self.events_by_type, k, *v);
        }
        merge_nodes(&mut self.nodes, &other.nodes);
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            if let Some(theirs) = theirs {
                let mine = mine.get_or_insert_with(new_histogram);
                // Both auto-resize: add only fails for non-resizing histograms.
                let _ = mine.add(theirs);
            }
        }
    }

    /// Whether nothing worth a report row was recorded: no request, connection, retry,
    /// event, stream, byte or histogram.
    pub fn is_empty(&self) -> bool {
        let c = &self.counts;
        c.requests == 0
            && c.connections_opened == 0
            && c.retries == 0
            && c.events == 0
            && c.streams_started == 0
            && c.bytes_received == 0
            && self.histograms.iter().all(Option::is_none)
    }
}

/// Adds `count` events of `event_type` into `map`, bounded as [`EndpointStats::count_event`].
pub fn add_event_type(map: &mut BTreeMap<String, u64>, event_type: &str, count: u64) {
    let mut name = bounds::clip_name(event_type, bounds::MAX_EVENT_TYPE);
    if !map.contains_key(name) && map.len() >= bounds::MAX_EVENT_TYPES {
        name = bounds::OTHER;
    }
    match map.get_mut(name) {
        Some(n) => *n = n.saturating_add(count),
        None => {
            map.insert(name.to_string(), count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::outcomes::unix_ms;
    use proptest::prelude::*;

    #[test]
    fn failures_group_by_kind_and_detail() {
        let mut s = EndpointStats::default();
        s.fail(FailureKind::HttpStatus, "503", || "503 Service Unavailable".into());
        s.fail(FailureKind::HttpStatus, "503", || unreachable!("sample taken once"));
        s.fail(FailureKind::Connect, "refused", || "connection refused".into());
        assert_eq!(s.counts.failures, 3);
        assert_eq!(s.failure_kinds[&("http_status".into(), "503".into())].count, 2);
    }

    #[test]
    fn failures_keep_when_they_were_first_and_last_seen_through_merges() {
        let entry = |first, last| FailureEntry {
            count: 1,
            sample: "s".into(),
            first_seen_unix_ms: first,
            last_seen_unix_ms: last,
        };
        let key: OutcomeKey = ("http_status".into(), "503".into());
        let mut total = EndpointStats::default();
        for (first, last) in [(0, 0), (2_000, 3_000), (1_000, 1_500), (0, 0), (2_500, 4_000)] {
            let mut delta = EndpointStats::default();
            delta.failure_kinds.insert(key.clone(), entry(first, last));
            total.merge(&delta);
        }
        let e = &total.failure_kinds[&key];
        // Min of the known firsts, max of the lasts; a 0 (an older worker) is unknown.
        assert_eq!((e.count, e.first_seen_unix_ms, e.last_seen_unix_ms), (5, 1_000, 4_000));

        let before = unix_ms();
        let mut s = EndpointStats::default();
        s.fail(FailureKind::Connect, "refused", || "refused".into());
        s.fail(FailureKind::Connect, "refused", || "refused".into());
        let e = &s.failure_kinds[&(FailureKind::Connect.as_str().into(), "refused".into())];
        assert!(before <= e.first_seen_unix_ms && e.first_seen_unix_ms <= e.last_seen_unix_ms);
        assert!(e.last_seen_unix_ms <= unix_ms());
    }

    proptest! {
        /// Merging split recordings equals recording everything in one place.
        #[test]
        fn merge_is_exact(values in proptest::collection::vec(1u64..10_000_000, 1..300), split in 0usize..300) {
            let split = split.min(values.len());
            let mut whole = EndpointStats::default();
            let (mut a, mut b) = (EndpointStats::default(), EndpointStats::default());
            for (i, v) in values.iter().enumerate() {
                whole.counts.requests += 1;
                whole.record(Metric::Ttfe, *v);
                let part = if i < split { &mut a } else { &mut b };
                part.counts.requests += 1;
                part.record(Metric::Ttfe, *v);
            }
            a.merge(&b);
            prop_assert_eq!(a.counts.requests, whole.counts.requests);
            let (ha, hw) = (a.histogram(Metric::Ttfe).unwrap(), whole.histogram(Metric::Ttfe).unwrap());
            for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
                prop_assert_eq!(ha.value_at_quantile(q), hw.value_at_quantile(q));
            }
        }
    }
}
