//! Merging one worker report into the aggregate ([`Aggregator::merge`]): each
//! (worker, epoch, seq) counts exactly once; what cannot be used is refused and
//! counted as lost data or clipped; the rest goes into the totals, the worker's
//! progress, and the timeline second its interval started in.
//!
//! The costly half, decoding and checking the endpoint deltas ([`DecodedReport`]),
//! needs only the plan ([`Planned`]), so a worker's session task does it before it
//! takes the aggregator lock; under the lock [`Aggregator::merge_decoded`] only
//! checks the seq and adds buckets. With 1,000 workers the decoding then spreads over
//! the runtime's threads instead of queueing behind one mutex.

use std::collections::BTreeMap;

use barrage_common::metrics::{Accum, EndpointStats, Metric};
use barrage_common::plan::Endpoint;
use barrage_common::wire::{DeltaBuckets, MAX_COUNT, endpoint_from_proto_sparse};
use barrage_proto::v1;

use super::Aggregator;
use super::progress::{WorkerProgress, saturation_cpu};
use super::totals::{EndpointKey, totals_into};

/// Reports further ahead than this many seqs of the last merged one are refused.
const MAX_SEQ_AHEAD: u64 = 10_000;
/// How far past the run clock a report's interval may end (clock skew between
/// machines is far smaller; a report from further ahead is not placed in the timeline).
const CLOCK_SLACK_US: i64 = 60_000_000;
/// Most target addresses whose users the aggregator keeps (a hostile worker cannot
/// grow the map without bound).
const MAX_PEER_USERS: usize = 256;

/// What became of a report, and what to acknowledge to its worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// Counted; acknowledge up to `acked`.
    Merged {
        /// Every seq up to this one has been received.
        acked: u64,
    },
    /// Already counted before; acknowledge again.
    Duplicate {
        /// Every seq up to this one has been received.
        acked: u64,
    },
    /// Not counted, with the reason (wrong epoch, far-ahead seq, a fenced worker's
    /// report after its closing one): lost data, counted in
    /// [`Aggregator::lost_reports`]. Still acknowledged up to `acked` (which counts
    /// this seq as received when it could), so a worker's outbox never stalls on it.
    Rejected {
        /// Every seq up to this one has been received.
        acked: u64,
        /// Why it was not counted, for the log.
        why: String,
    },
}

/// One endpoint delta of a report, decoded: its endpoint, counters, histogram buckets
/// and target address.
type Decoded<'r> = (Endpoint, EndpointStats, DeltaBuckets, &'r str);

/// The endpoints of the plan, name -> methods: a delta for any other is refused,
/// never allocated (empty: not checked). Keyed by name so a lookup borrows the
/// delta's strings instead of copying them for every delta of every report. Fixed
/// for the run, so sessions share it and check deltas without the aggregator lock.
#[derive(Debug, Default)]
pub struct Planned(BTreeMap<String, Vec<String>>);

impl Planned {
    /// The plan's endpoints as (name, method).
    pub fn new<'a>(endpoints: impl IntoIterator<Item = (&'a str, &'a str)>) -> Planned {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, method) in endpoints {
            map.entry(name.to_string()).or_default().push(method.to_string());
        }
        Planned(map)
    }

    /// Whether a delta of `name` and `method` may be counted.
    fn allows(&self, name: &str, method: &str) -> bool {
        self.0.is_empty()
            || self
                .0
                .get(name)
                .is_some_and(|methods| methods.iter().any(|m| m == method))
    }
}

/// A report with its endpoint deltas decoded and checked field by field (see
/// [`DecodedReport::decode`]), not yet counted: what the lock-free half of a merge
/// hands [`Aggregator::merge_decoded`]. What it refused and clipped counts only if
/// the report itself is merged (a duplicate counts nothing, as before).
#[derive(Debug)]
pub struct DecodedReport<'r> {
    report: &'r v1::Report,
    deltas: Vec<Decoded<'r>>,
    /// Deltas refused (an endpoint the plan does not have, impossible counts) ...
    refused_deltas: u64,
    /// ... and the requests they claimed.
    refused_requests: u64,
    /// Texts clipped and keys folded while decoding.
    clipped: u64,
}

impl<'r> DecodedReport<'r> {
    /// Decodes report `r`'s endpoint deltas against the plan: what cannot be used (an
    /// endpoint the plan does not have, impossible counts, a histogram that does not
    /// decode) is refused and counted, the rest kept with its histograms as buckets.
    /// Needs no lock: sessions call it before taking the aggregator's.
    pub fn decode(planned: &Planned, r: &'r v1::Report) -> DecodedReport<'r> {
        let mut out = DecodedReport {
            report: r,
            deltas: Vec::with_capacity(r.endpoints.len()),
            refused_deltas: 0,
            refused_requests: 0,
            clipped: 0,
        };
        for d in &r.endpoints {
            let decoded = if planned.allows(&d.name, &d.method) {
                endpoint_from_proto_sparse(d, &mut out.clipped).ok()
            } else {
                None
            };
            match decoded {
                Some((endpoint, stats, buckets)) => out.deltas.push((endpoint, stats, buckets, d.peer.as_str())),
                None => {
                    out.refused_deltas += 1;
                    out.refused_requests = out.refused_requests.saturating_add(d.requests.min(MAX_COUNT));
                }
            }
        }
        out
    }
}

/// A report's gauges made sane: what the worker sent, or zero when it cannot be true.
struct Gauges {
    users: v1::Gauge,
    streams: v1::Gauge,
    cpu_percent: f64,
    /// Whether the interval lies on the run clock (else its counts go to the totals
    /// only, not to the timeline).
    placed: bool,
}

impl Aggregator {
    /// Merges report `r` once: duplicates and unusable reports count nothing and are
    /// still acknowledged (see [`Merge`]). Decodes under the caller's lock; sessions
    /// decode first ([`DecodedReport::decode`]) and call [`Aggregator::merge_decoded`].
    pub fn merge(&mut self, r: &v1::Report) -> Merge {
        let decoded = DecodedReport::decode(&self.planned, r);
        self.merge_decoded(decoded)
    }

    /// Merges a report decoded beforehand, once: checks its seq, then adds what it
    /// refused and clipped to the loss counters and its deltas to the figures.
    pub fn merge_decoded(&mut self, decoded: DecodedReport<'_>) -> Merge {
        let r = decoded.report;
        let acked = match self.receive(r) {
            Ok(acked) => acked,
            Err(refused) => return refused,
        };
        if r.r#final {
            // The end of a worker's run: the live view shows it at once.
            self.live_changed();
        }
        self.refused_deltas += decoded.refused_deltas;
        self.refused_requests = self.refused_requests.saturating_add(decoded.refused_requests);
        self.clipped += decoded.clipped;
        let decoded = decoded.deltas;
        let gauges = self.gauges(r);
        let thread_cpu = saturation_cpu(r.busiest_thread_cpu_percent, r.load_threads, gauges.cpu_percent);
        if let Some(progress) = self.workers.get_mut(&r.worker_id) {
            note_progress(progress, r, &gauges, thread_cpu);
        }
        // A report of an interval that ended before the last "reset statistics" (it was
        // on its way) belongs to the timeline, not to the totals that restarted there.
        let before_reset =
            gauges.placed && self.stats_since_s > 0.0 && r.interval_end_us as f64 <= self.stats_since_s * 1e6;
        if !before_reset {
            self.dropped_iterations += r.dropped_iterations.min(MAX_COUNT);
        }
        self.note_peer_users(r);
        if !gauges.placed {
            // Counts kept, time unknown: totals only.
            for (endpoint, stats, buckets, peer) in decoded {
                self.add_totals(endpoint, &stats, &buckets, peer);
            }
            return Merge::Merged { acked };
        }
        self.place(r, &gauges, thread_cpu, decoded, before_reset);
        Merge::Merged { acked }
    }

    /// Checks the report's epoch and seq and marks the seq received: the seqs
    /// acknowledged through, or how the report is refused.
    fn receive(&mut self, r: &v1::Report) -> Result<u64, Merge> {
        if r.epoch != self.epoch {
            self.lost_reports += 1;
            return Err(Merge::Rejected {
                acked: 0,
                why: format!("report of epoch {} in epoch {}", r.epoch, self.epoch),
            });
        }
        let progress = self
            .workers
            .entry(r.worker_id.clone())
            .or_insert_with(|| WorkerProgress {
                epoch: r.epoch,
                ..Default::default()
            });
        if r.seq == 0 || r.seq <= progress.acked || progress.above.contains(&r.seq) {
            return Err(Merge::Duplicate { acked: progress.acked });
        }
        if r.seq > progress.acked + MAX_SEQ_AHEAD {
            self.lost_reports += 1;
            return Err(Merge::Rejected {
                acked: progress.acked,
                why: format!("seq {} is far ahead of {}", r.seq, progress.acked),
            });
        }
        // From here on the seq counts as received, whatever its content.
        progress.above.insert(r.seq);
        while progress.above.remove(&(progress.acked + 1)) {
            progress.acked += 1;
        }
        if progress.fenced && progress.final_seen {
            self.lost_reports += 1;
            return Err(Merge::Rejected {
                acked: progress.acked,
                why: "a report after the closing report of a fenced session".into(),
            });
        }
        Ok(progress.acked)
    }

    /// The report's gauges and interval checked (each one refused counts as clipped).
    fn gauges(&mut self, r: &v1::Report) -> Gauges {
        let mut clipped = 0;
        let mut gauge = |g: &Option<v1::Gauge>| {
            let mut g = g.unwrap_or_default();
            // A gauge past MAX_COUNT is no worker's: refused, so that sums over reports
            // and workers cannot overflow.
            let bound = MAX_COUNT as i64;
            if !(0..=bound).contains(&g.last)
                || !(0..=bound).contains(&g.max)
                || !(0.0..=bound as f64).contains(&g.time_avg)
            {
                clipped += 1;
                g = v1::Gauge::default();
            }
            g
        };
        let (users, streams) = (gauge(&r.users), gauge(&r.active_streams));
        let cpu_percent = if r.cpu_percent.is_finite() && r.cpu_percent >= 0.0 {
            r.cpu_percent
        } else {
            clipped += 1;
            0.0
        };
        let clock_us = self
            .run_start
            .map_or(0, |s| i64::try_from(s.elapsed().as_micros()).unwrap_or(i64::MAX));
        let placed = r.interval_start_us >= 0
            && r.interval_end_us >= r.interval_start_us
            && r.interval_end_us <= clock_us.saturating_add(CLOCK_SLACK_US);
        if !placed {
            clipped += 1;
        }
        self.clipped += clipped;
        Gauges {
            users,
            streams,
            cpu_percent,
            placed,
        }
    }

    /// Users per replica: each worker's peak per address. What does not fit a sane
    /// address or gauge is skipped.
    fn note_peer_users(&mut self, r: &v1::Report) {
        for u in r.peer_users.iter().take(MAX_PEER_USERS) {
            if u.peer.is_empty() || u.peer.len() > 256 || u.max < 0 {
                self.clipped += 1;
                continue;
            }
            if !self.peer_users.contains_key(&u.peer) && self.peer_users.len() >= MAX_PEER_USERS {
                self.clipped += 1;
                continue;
            }
            let peak = self
                .peer_users
                .entry(u.peer.clone())
                .or_default()
                .entry(r.worker_id.clone())
                .or_default();
            *peak = (*peak).max(u.max);
        }
    }

    /// Places a report on the run clock: its second of the timeline, then (unless its
    /// interval ended before a reset) the totals.
    fn place(
        &mut self,
        r: &v1::Report,
        gauges: &Gauges,
        thread_cpu: f64,
        decoded: Vec<Decoded<'_>>,
        before_reset: bool,
    ) {
        let second = r.interval_start_us / 1_000_000;
        let endpoint_seconds = self.endpoint_seconds;
        let slot = self.timeline.entry(second).or_default();
        slot.reports += 1;
        // A partial interval (a final report) weighs its gauges by its share of a second.
        let span = ((r.interval_end_us - r.interval_start_us) as f64 / 1e6).clamp(0.0, 1.0);
        slot.users += gauges.users.time_avg * span;
        slot.active_streams += gauges.streams.time_avg * span;
        slot.active_streams_max = slot.active_streams_max.saturating_add(gauges.streams.max);
        slot.worker_cpu_max = slot.worker_cpu_max.max(thread_cpu);
        slot.sched_lag_max_us = slot.sched_lag_max_us.max(r.sched_lag_p99_us);
        slot.dropped_iterations += r.dropped_iterations.min(MAX_COUNT);
        // An arrival handled within the interval was due by its end.
        let last_due = r.last_arrival_due_us.min(r.interval_end_us);
        self.last_arrival_due_us = self.last_arrival_due_us.max(last_due);
        for (endpoint, stats, buckets, peer) in decoded {
            slot.requests += stats.counts.requests;
            slot.failures += stats.counts.failures;
            slot.good += stats.counts.good;
            slot.events += stats.counts.events;
            slot.streams_started += stats.counts.streams_started;
            slot.connections_opened += stats.counts.connections_opened;
            slot.bytes += stats.counts.bytes_received;
            slot.status_429 += stats.status_429();
            if slot.summary.is_none() {
                for (metric, into) in [
                    (Metric::Ttfe, &mut slot.ttfe),
                    (Metric::ResponseTime, &mut slot.response_time),
                ] {
                    if let Some(b) = &buckets[metric as usize] {
                        into.get_or_insert_with(Accum::default).add(b);
                    }
                }
            }
            let key = EndpointKey {
                name: endpoint.name.clone(),
                method: endpoint.method.clone(),
            };
            if self.goodput_rows.contains(&key) {
                slot.slo_requests += stats.counts.requests;
            }
            if endpoint_seconds && slot.summary.is_none() {
                let e = slot.endpoints.entry(key.clone()).or_default();
                e.requests += stats.counts.requests;
                e.failures += stats.counts.failures;
                e.good += stats.counts.good;
                if let Some(b) = &buckets[Metric::ResponseTime as usize] {
                    e.response_time.add(b);
                }
            }
            if before_reset {
                continue;
            }
            totals_into(
                &mut self.endpoints,
                &mut self.peers,
                &mut self.clipped,
                (key, endpoint.kind),
                &stats,
                &buckets,
                peer,
            );
        }
        self.compact(second);
    }

    /// Adds one decoded delta to the totals (and its peer's row) only.
    fn add_totals(&mut self, endpoint: Endpoint, stats: &EndpointStats, buckets: &DeltaBuckets, peer: &str) {
        let key = EndpointKey {
            name: endpoint.name,
            method: endpoint.method,
        };
        totals_into(
            &mut self.endpoints,
            &mut self.peers,
            &mut self.clipped,
            (key, endpoint.kind),
            stats,
            buckets,
            peer,
        );
    }
}

/// What report `r` says about its worker: seen, final, CPU, memory, timer lag.
fn note_progress(progress: &mut WorkerProgress, r: &v1::Report, gauges: &Gauges, thread_cpu: f64) {
    progress.reports += 1;
    progress.had_load |= !r.endpoints.is_empty();
    progress.final_seen |= r.r#final;
    if gauges.placed {
        progress.last_interval_end_us = progress.last_interval_end_us.max(r.interval_end_us);
    }
    progress.cpu_percent = gauges.cpu_percent;
    progress.cpu_max = progress.cpu_max.max(gauges.cpu_percent);
    progress.thread_cpu_percent = thread_cpu;
    progress.thread_cpu_max = progress.thread_cpu_max.max(thread_cpu);
    progress.rss_bytes = r.rss_bytes;
    progress.sched_lag_p99_us = r.sched_lag_p99_us;
    if r.sched_lag_p99_us > progress.sched_lag_max_us && gauges.placed {
        progress.sched_lag_max_us = r.sched_lag_p99_us;
        progress.sched_lag_max_at_s = r.interval_start_us / 1_000_000;
    }
}
