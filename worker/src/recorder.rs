//! Where virtual users record outcomes, and where the reporter takes each interval's
//! delta from.
//!
//! Sharded: user `i` records into shard `i % shards`, each shard a `std::sync::Mutex`
//! held only for the few hundred nanoseconds of an update (never across `.await`).
//! With several shards per core the locks are effectively uncontended, and the
//! reporter's once-a-second `take` swaps each shard out instead of copying it.
//! Gauges (active streams, users) are lock-free atomics; see [`Gauge`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use barrage_common::metrics::EndpointStats;

/// This worker's counts and histograms per (replica, endpoint), and its gauges.
pub struct Recorder {
    /// Per shard: one `EndpointStats` per (peer slot, endpoint), slot-major, grown on
    /// demand as addresses appear (at most [`crate::placement::MAX_PEERS`] + 1 slots).
    shards: Box<[Mutex<Vec<EndpointStats>>]>,
    /// The plan's endpoint count (at least 1): the stride of a slot.
    endpoints: usize,
    /// SSE streams being followed now (from the response head to the verdict).
    pub active_streams: Gauge,
    /// Virtual users alive now.
    pub users: Gauge,
    /// Open model: arrivals not started because the in-flight cap was reached.
    pub dropped: std::sync::atomic::AtomicU64,
    /// Open model: the latest due time (run clock, µs) of an arrival handled (started
    /// or dropped) since the last report.
    pub last_due_us: std::sync::atomic::AtomicI64,
}

impl Recorder {
    /// `endpoints` = the plan's endpoint count; `shards` = how many locks to spread
    /// over.
    pub fn new(endpoints: usize, shards: usize, origin: Instant) -> Self {
        let endpoints = endpoints.max(1);
        let shards = (0..shards.max(1))
            .map(|_| Mutex::new(vec![EndpointStats::default(); endpoints]))
            .collect();
        Recorder {
            shards,
            endpoints,
            active_streams: Gauge::new(origin),
            users: Gauge::new(origin),
            dropped: std::sync::atomic::AtomicU64::new(0),
            last_due_us: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The plan's endpoint count (at least 1): [`Recorder::take`]'s stride per slot.
    pub fn endpoints(&self) -> usize {
        self.endpoints
    }

    /// Runs `f` on the stats of (`endpoint`, `slot`) in the shard of user `user`.
    /// Slot 0 = no address (the host did not resolve); slot `p + 1` = peer `p` of the
    /// engine's [`crate::placement::Placement`].
    pub fn with<R>(&self, user: usize, endpoint: usize, slot: usize, f: impl FnOnce(&mut EndpointStats) -> R) -> R {
        let shard = &self.shards[user % self.shards.len()];
        // A poisoned shard means a panic mid-update elsewhere; the counts are still
        // plain numbers, so keep recording rather than lose the run.
        let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slot.min(crate::placement::MAX_PEERS);
        let at = slot * self.endpoints + endpoint;
        if guard.len() <= at {
            guard.resize((slot + 1) * self.endpoints, EndpointStats::default());
        }
        f(&mut guard[at])
    }

    /// Takes everything recorded since the previous call, merged across shards;
    /// index `slot * endpoints() + endpoint`.
    pub fn take(&self) -> Vec<EndpointStats> {
        let mut out: Vec<EndpointStats> = Vec::new();
        for shard in self.shards.iter() {
            let taken = {
                let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
                let len = guard.len();
                std::mem::replace(&mut *guard, vec![EndpointStats::default(); len])
            };
            if out.len() < taken.len() {
                out.resize(taken.len(), EndpointStats::default());
            }
            for (into, from) in out.iter_mut().zip(&taken) {
                if !from.is_empty() || !from.outcomes.is_empty() {
                    into.merge(from);
                }
            }
        }
        out
    }
}

/// A gauge whose time-weighted average over any interval can be read without locks.
///
/// Besides the value it keeps `acc = Σ(-t_up) + Σ(t_down)` over unit changes, with
/// times in µs since `origin`. Then `acc + value·t` is the integral of the value from
/// the origin to `t`, and the average over an interval is the difference of two such
/// readings divided by its length. Races between the two loads shift the result by at
/// most one change's worth of microseconds.
pub struct Gauge {
    origin: Instant,
    value: AtomicI64,
    acc: AtomicI64,
    max: AtomicI64,
}

/// A reading of a gauge at an instant, for [`Gauge::interval`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GaugeMark {
    at_us: i64,
    integral: i64,
}

/// A gauge over one report interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GaugeInterval {
    /// The value at the interval's end.
    pub last: i64,
    /// The highest value during the interval.
    pub max: i64,
    /// The time-weighted average over the interval.
    pub time_avg: f64,
}

impl Gauge {
    /// A gauge at 0 whose clock starts at `origin` (the run's start).
    pub fn new(origin: Instant) -> Self {
        Gauge {
            origin,
            value: AtomicI64::new(0),
            acc: AtomicI64::new(0),
            max: AtomicI64::new(0),
        }
    }

    /// Microseconds since the origin.
    fn now_us(&self) -> i64 {
        i64::try_from(self.origin.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// One more (a stream opened, a user started).
    pub fn inc(&self) {
        let t = self.now_us();
        self.acc.fetch_sub(t, Ordering::Relaxed);
        let v = self.value.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// One fewer.
    pub fn dec(&self) {
        let t = self.now_us();
        self.acc.fetch_add(t, Ordering::Relaxed);
        self.value.fetch_sub(1, Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    /// A reading now, where the next interval begins.
    pub fn mark(&self) -> GaugeMark {
        let at_us = self.now_us();
        let v = self.value.load(Ordering::Relaxed);
        let acc = self.acc.load(Ordering::Relaxed);
        GaugeMark {
            at_us,
            integral: acc + v * at_us,
        }
    }

    /// Closes the interval that began at `since`: returns its figures and the mark
    /// that begins the next one. The max restarts from the current value.
    pub fn interval(&self, since: GaugeMark) -> (GaugeInterval, GaugeMark) {
        let now = self.mark();
        let last = self.get();
        let max = self.max.swap(last, Ordering::Relaxed).max(last);
        let span = now.at_us - since.at_us;
        let time_avg = if span > 0 {
            ((now.integral - since.integral) as f64 / span as f64).max(0.0)
        } else {
            last as f64
        };
        (GaugeInterval { last, max, time_avg }, now)
    }
}

/// RAII guard that holds a gauge up while alive (an open stream, a live user).
pub struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    /// Raises `g` by one until the guard is dropped.
    pub fn new(g: &'a Gauge) -> Self {
        g.inc();
        GaugeGuard(g)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::metrics::Metric;
    use std::time::Duration;

    #[test]
    fn shards_merge_on_take_and_reset() {
        let r = Recorder::new(2, 4, Instant::now());
        for user in 0..10 {
            r.with(user, 1, 0, |s| {
                s.counts.requests += 1;
                s.record(Metric::ResponseTime, 1000 + user as u64);
            });
        }
        let taken = r.take();
        assert_eq!(taken[0].counts.requests, 0);
        assert_eq!(taken[1].counts.requests, 10);
        assert_eq!(taken[1].histogram(Metric::ResponseTime).unwrap().len(), 10);
        assert_eq!(r.take()[1].counts.requests, 0, "take resets");
        // A peer slot appears when first used.
        r.with(3, 0, 2, |s| s.counts.requests += 1);
        let taken = r.take();
        assert_eq!(taken.len(), 6);
        assert_eq!(taken[2 * 2].counts.requests, 1);
    }

    #[test]
    fn gauge_time_average_is_weighted_by_time() {
        let g = Gauge::new(Instant::now());
        let start = g.mark();
        g.inc();
        g.inc();
        std::thread::sleep(Duration::from_millis(40));
        g.dec();
        std::thread::sleep(Duration::from_millis(40));
        let (iv, _) = g.interval(start);
        assert_eq!(iv.last, 1);
        assert_eq!(iv.max, 2);
        // 2 for ~half the span, 1 for the other half: ~1.5 (sleep jitter allowed).
        assert!((1.3..=1.7).contains(&iv.time_avg), "{iv:?}");
        let (iv2, _) = g.interval(g.mark());
        assert_eq!(iv2.max, 1, "max restarts from the current value");
    }
}
