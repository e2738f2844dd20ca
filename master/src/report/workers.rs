//! The report's workers table ([`WorkerRow`]): each worker of the roster with what it
//! delivered and how loaded it was, and the warnings when a worker was too busy to
//! keep time (its latency figures then include the generator's own delay).

use serde::{Deserialize, Serialize};

use super::run::Roster;
use crate::aggregate::{Aggregator, LAG_SATURATED_US, cpu_saturated};

/// One worker of the run, as the report's workers table shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRow {
    /// The worker's id (`HOSTNAME-PID-RANDOM` unless set).
    pub id: String,
    /// Its place in join order (the table is sorted by it).
    pub index: u32,
    /// The host it said it runs on.
    pub hostname: String,
    /// CPU cores it said it has.
    pub cores: u32,
    /// Local addresses its target connections bound to in turn (`barrage worker
    /// --source-addresses`), each good for ~28k connections to one target address;
    /// 0 (and absent from the JSON) when not set: the kernel picked one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub source_addresses: u32,
    /// Reports merged from it.
    pub reports: u64,
    /// Whether its final (closing) report arrived.
    pub final_report: bool,
    /// Written off during the run (silent past the liveness timeout, or replaced).
    pub lost: bool,
    /// Process CPU, percent of one core (all load threads: up to 100 x cores).
    pub cpu_max_percent: f64,
    /// The busiest load thread's CPU, percent of one core: the saturation figure
    /// (absent in results saved before it existed).
    #[serde(default)]
    pub thread_cpu_max_percent: f64,
    /// Resident memory in its latest report, bytes.
    pub rss_bytes: u64,
    /// Worst p99 lateness of the worker's timers in any interval (generator delay).
    pub sched_lag_max_ms: f64,
}

/// Whether a count is 0 (for `skip_serializing_if`: a field rows without it leave out).
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The roster's workers with what each delivered, in join order.
pub(crate) fn worker_rows(agg: &Aggregator, roster: &Roster) -> Vec<WorkerRow> {
    let mut rows: Vec<WorkerRow> = roster
        .workers
        .iter()
        .map(|w| {
            let p = agg.workers.get(&w.id);
            WorkerRow {
                id: w.id.clone(),
                index: w.index,
                hostname: w.hostname.clone(),
                cores: w.cores,
                source_addresses: w.source_addresses,
                reports: p.map_or(0, |p| p.reports),
                final_report: p.is_some_and(|p| p.final_seen),
                lost: w.lost,
                cpu_max_percent: p.map_or(0.0, |p| p.cpu_max),
                thread_cpu_max_percent: p.map_or(0.0, |p| p.thread_cpu_max),
                rss_bytes: p.map_or(0, |p| p.rss_bytes),
                sched_lag_max_ms: p.map_or(0.0, |p| p.sched_lag_max_us as f64 / 1000.0),
            }
        })
        .collect();
    rows.sort_by_key(|w| w.index);
    rows
}

/// The warnings about workers whose timers ran late or whose busiest load thread was
/// saturated, in the order of `workers`.
pub(crate) fn generator_warnings(agg: &Aggregator, workers: &[WorkerRow]) -> Vec<String> {
    let mut warnings = Vec::new();
    for w in workers {
        if let Some(p) = agg.workers.get(&w.id).filter(|p| p.sched_lag_max_us > LAG_SATURATED_US) {
            warnings.push(format!(
                "worker {}: its timers ran up to {:.1} ms late (p99, around {}s of the run): latency figures include generator delay there",
                w.id,
                p.sched_lag_max_us as f64 / 1000.0,
                p.sched_lag_max_at_s
            ));
        }
        if let Some(warning) = saturation_warning(w) {
            warnings.push(warning);
        }
    }
    warnings
}

/// A worker whose busiest load thread passed the saturation line: its users waited for
/// their event loop, so its latency figures include generator delay. Judged per
/// thread, never on the process figure: 16 threads at 6 % each are idle, one at 95 %
/// is not.
pub fn saturation_warning(w: &WorkerRow) -> Option<String> {
    cpu_saturated(w.thread_cpu_max_percent).then(|| {
        format!(
            "worker {}: its busiest load thread peaked at {:.0}% CPU (of one core; the process used {:.0}% over {} cores): latency figures include generator delay",
            w.id, w.thread_cpu_max_percent, w.cpu_max_percent, w.cores
        )
    })
}
