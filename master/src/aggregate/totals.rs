//! A stats row's merged totals ([`Totals`], keyed by [`EndpointKey`]): the counters
//! and histograms of every delta merged into it, per endpoint and per target address,
//! and the business events a row's requests carry.

use std::collections::BTreeMap;

use barrage_common::metrics::{Accum, EndpointStats, METRIC_COUNT};
use barrage_common::plan::TaskKindTag;
use barrage_common::wire::DeltaBuckets;

/// Distinct (endpoint, peer address) rows kept; past it a peer counts as `(other)`.
pub const MAX_PEER_ROWS: usize = 1024;
/// Longest peer address kept (`[v6]:port` fits easily).
const MAX_PEER: usize = 64;

/// A stats row: an endpoint by name and method (ordered by name, then method, as
/// Locust sorts its rows).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    /// The row's name (the task's `name`, or its path).
    pub name: String,
    /// The HTTP method.
    pub method: String,
}

/// One stats row's totals and what kind of task it is.
#[derive(Debug, Clone)]
pub struct EndpointTotals {
    /// HTTP or SSE (decides the TTFE table).
    pub kind: TaskKindTag,
    /// Everything merged into the row.
    pub totals: Totals,
}

impl EndpointTotals {
    /// The merged figures, histograms included.
    pub fn stats(&self) -> EndpointStats {
        self.totals.stats()
    }
}

/// Merged deltas: the counters, and the histograms as [`Accum`]s (an array increment
/// per bucket of a delta; dense histograms are built only when a report is drawn).
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Every figure but the histograms (its own histograms stay empty).
    pub counters: EndpointStats,
    hists: [Accum; METRIC_COUNT],
}

impl Totals {
    /// Adds one delta: its counters, and its histograms bucket by bucket.
    pub(crate) fn merge(&mut self, counters: &EndpointStats, buckets: &DeltaBuckets) {
        self.counters.merge(counters);
        for (mine, theirs) in self.hists.iter_mut().zip(buckets) {
            if let Some(theirs) = theirs {
                mine.add(theirs);
            }
        }
    }

    /// The merged figures, histograms included.
    pub fn stats(&self) -> EndpointStats {
        let mut stats = self.counters.clone();
        for (h, accum) in stats.histograms.iter_mut().zip(&self.hists) {
            if !accum.is_empty() {
                *h = Some(accum.to_histogram());
            }
        }
        stats
    }
}

/// Adds a delta to its endpoint's totals and, when it names a peer, to that peer's row
/// (bounded: a peer past [`MAX_PEER_ROWS`] rows or [`MAX_PEER`] bytes counts as
/// `(other)`).
pub(crate) fn totals_into(
    endpoints: &mut BTreeMap<EndpointKey, EndpointTotals>,
    peers: &mut BTreeMap<(EndpointKey, String), Totals>,
    clipped: &mut u64,
    (key, kind): (EndpointKey, TaskKindTag),
    stats: &EndpointStats,
    buckets: &DeltaBuckets,
    peer: &str,
) {
    if !peer.is_empty() {
        let mut row = (key.clone(), peer.to_string());
        if peer.len() > MAX_PEER || (!peers.contains_key(&row) && peers.len() >= MAX_PEER_ROWS) {
            *clipped += 1;
            row.1 = barrage_common::bounds::OTHER.to_string();
        }
        peers.entry(row).or_default().merge(stats, buckets);
    }
    endpoints
        .entry(key)
        .or_insert_with(|| EndpointTotals {
            kind,
            totals: Totals::default(),
        })
        .totals
        .merge(stats, buckets);
}

/// The `events_per_request` of a stats row in a (name, method) map of those that are
/// not 1.
pub fn events_per_request_of(map: &BTreeMap<(String, String), u32>, k: &EndpointKey) -> u32 {
    map.get(&(k.name.clone(), k.method.clone())).copied().unwrap_or(1)
}

/// Successful requests x `events_per_request`. Expected non-2xx outcomes (a declared
/// 429) carry no business events.
pub fn business_events(s: &EndpointStats, epr: u32) -> u64 {
    let expected: u64 = s.outcomes.values().map(|e| e.count).sum();
    s.counts
        .requests
        .saturating_sub(s.counts.failures)
        .saturating_sub(expected)
        * u64::from(epr)
}
