//! What each worker has delivered ([`WorkerProgress`]: seqs merged, its final report,
//! whether it was fenced) and how loaded it was: CPU, memory, timer lag, and the
//! saturation figure the report, the live figures and the hunt judge on.

use std::collections::BTreeSet;

/// Timer lateness (p99 per interval), µs, above which a worker's latency figures
/// include the generator's own delay: the report warns, and a hunt's step is not a
/// valid limit.
pub const LAG_SATURATED_US: u64 = 5_000;

/// Above this a load thread (one event loop) is saturated: its users wait for it.
pub const CPU_SATURATED_PERCENT: f64 = 90.0;

/// The figure saturation is judged on: the busiest load thread's CPU, percent of one
/// core. Each load thread is one single-threaded runtime, so one thread at 95 % delays
/// its users even when 15 other cores idle, and 16 threads at 6 % each (96 % of one
/// core for the process) are far from it. A worker of an older version
/// (`load_threads` 0) sent only the process figure, which stands in.
pub fn saturation_cpu(busiest_thread_percent: f64, load_threads: u32, process_percent: f64) -> f64 {
    let v = if load_threads > 0 {
        busiest_thread_percent
    } else {
        process_percent
    };
    if v.is_finite() { v.max(0.0) } else { 0.0 }
}

/// Whether a saturation figure ([`saturation_cpu`]) means the generator was saturated.
pub fn cpu_saturated(thread_percent: f64) -> bool {
    thread_percent > CPU_SATURATED_PERCENT
}

/// What a worker has delivered.
#[derive(Debug, Clone, Default)]
pub struct WorkerProgress {
    /// The run (epoch) its reports belong to.
    pub epoch: u64,
    /// Every seq <= acked has been merged.
    pub acked: u64,
    /// Merged seqs above `acked` (out of order).
    pub(super) above: BTreeSet<u64>,
    /// Reports merged from it.
    pub reports: u64,
    /// Its final (closing) report arrived.
    pub final_seen: bool,
    /// Declared lost and sent Fence: its reports still count until its closing
    /// (final) one, none after.
    pub fenced: bool,
    /// It was given load or reported some: if its data stops short, data is lost.
    pub had_load: bool,
    /// The end of the latest interval it reported, run clock, µs.
    pub last_interval_end_us: i64,
    /// Process CPU, percent of one core (all threads: may exceed 100).
    pub cpu_percent: f64,
    /// The highest process CPU it reported, percent of one core.
    pub cpu_max: f64,
    /// The saturation figure ([`saturation_cpu`]), latest and highest.
    pub thread_cpu_percent: f64,
    /// See `thread_cpu_percent`.
    pub thread_cpu_max: f64,
    /// Resident memory in its latest report, bytes.
    pub rss_bytes: u64,
    /// Its timers' lateness (p99) in its latest report, µs.
    pub sched_lag_p99_us: u64,
    /// Worst per-interval lag p99, and the run second it was seen in.
    pub sched_lag_max_us: u64,
    /// See `sched_lag_max_us`.
    pub sched_lag_max_at_s: i64,
}
