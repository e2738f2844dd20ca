//! The worker's view of its own health, so reports can say when the generator itself
//! was the bottleneck: process CPU and RSS from `/proc/self`, each load thread's CPU
//! from `/proc/self/task/<tid>/stat` (Linux; zeros elsewhere), and the scheduling lag
//! of the tokio runtime measured by a probe task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// CPU ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on every Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime, in seconds, of a `/proc/.../stat` file.
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 overall.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// The calling thread's kernel id, from the `/proc/thread-self` link
/// (`<pid>/task/<tid>`); None off Linux.
pub(crate) fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time (seconds) of thread `tid` of this process.
pub(crate) fn thread_cpu_seconds(tid: u32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat"))
}

/// Reads process CPU time (seconds) and resident memory (bytes).
pub(crate) fn process_usage() -> (f64, u64) {
    let cpu = stat_cpu_seconds("/proc/self/stat").unwrap_or(0.0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0);
    (cpu, rss)
}

/// CPU percent between successive calls: the process's, and (`threads`) the busiest
/// load thread's.
pub(crate) struct CpuMeter {
    last_cpu: f64,
    last_at: Instant,
    /// The load threads' CPU, for the busiest one's percent.
    pub threads: ThreadCpuMeter,
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter {
            last_cpu: process_usage().0,
            last_at: Instant::now(),
            threads: ThreadCpuMeter::default(),
        }
    }
}

impl CpuMeter {
    /// (cpu percent of one core since the previous call, rss bytes).
    pub(crate) fn sample(&mut self) -> (f64, u64) {
        let (cpu, rss) = process_usage();
        let wall = self.last_at.elapsed().as_secs_f64();
        let pct = if wall > 0.0 {
            (cpu - self.last_cpu).max(0.0) / wall * 100.0
        } else {
            0.0
        };
        self.last_cpu = cpu;
        self.last_at = Instant::now();
        (pct, rss)
    }
}

/// The busiest of a set of threads, by CPU percent of one core between successive
/// calls. Each load thread is one event loop, so one thread near 100 % delays its
/// users however idle the other cores are: this, not the process figure, is the
/// saturation figure.
pub(crate) struct ThreadCpuMeter {
    last: HashMap<u32, f64>,
    last_at: Instant,
}

impl Default for ThreadCpuMeter {
    fn default() -> Self {
        ThreadCpuMeter {
            last: HashMap::new(),
            last_at: Instant::now(),
        }
    }
}

impl ThreadCpuMeter {
    /// (busiest thread's percent of one core since the previous call, threads measured).
    /// A thread first seen counts from its start (its CPU time so far).
    pub(crate) fn sample(&mut self, tids: &[u32]) -> (f64, u32) {
        let wall = self.last_at.elapsed().as_secs_f64();
        self.last_at = Instant::now();
        let mut busiest: f64 = 0.0;
        let mut measured = 0;
        let mut now = HashMap::with_capacity(tids.len());
        for &tid in tids {
            let Some(cpu) = thread_cpu_seconds(tid) else {
                continue;
            };
            measured += 1;
            let before = self.last.get(&tid).copied().unwrap_or(0.0);
            if wall > 0.0 {
                busiest = busiest.max((cpu - before).max(0.0) / wall * 100.0);
            }
            now.insert(tid, cpu);
        }
        self.last = now;
        (busiest, measured)
    }
}

/// How late timers fire: a probe sleeps PERIOD repeatedly and records the overshoot.
#[derive(Clone)]
pub(crate) struct LagProbe {
    lags: Arc<Mutex<Histogram<u64>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl LagProbe {
    const PERIOD: Duration = Duration::from_millis(20);

    /// Starts the probe on the current runtime; it ends when `stop` is cancelled.
    pub(crate) fn start(stop: tokio_util::sync::CancellationToken) -> Self {
        let probe = LagProbe {
            lags: Arc::new(Mutex::new(barrage_common::metrics::new_histogram())),
            stop,
        };
        probe.watch(&tokio::runtime::Handle::current());
        probe
    }

    /// Also probes `runtime` (a load thread's), into the same figures, until the
    /// probe's `stop` is cancelled or that runtime ends.
    pub(crate) fn watch(&self, runtime: &tokio::runtime::Handle) {
        let lags = self.lags.clone();
        let stop = self.stop.clone();
        runtime.spawn(async move {
            let mut next = tokio::time::Instant::now() + Self::PERIOD;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stop.cancelled() => return,
                }
                let late = tokio::time::Instant::now().saturating_duration_since(next);
                if let Ok(mut h) = lags.lock() {
                    let _ = h.record(u64::try_from(late.as_micros()).unwrap_or(u64::MAX).max(1));
                }
                next = tokio::time::Instant::now() + Self::PERIOD;
            }
        });
    }

    /// p99 lag in µs since the last `take_p99_us`, without resetting (heartbeats).
    pub(crate) fn peek_p99_us(&self) -> u64 {
        self.lags
            .lock()
            .map_or(0, |h| if h.is_empty() { 0 } else { h.value_at_quantile(0.99) })
    }

    /// p99 lag in µs since the previous call; resets.
    pub(crate) fn take_p99_us(&self) -> u64 {
        match self.lags.lock() {
            Ok(mut h) => {
                let p = if h.is_empty() { 0 } else { h.value_at_quantile(0.99) };
                h.reset();
                p
            }
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One load thread spinning and one idle: the meter names the busy one's share,
    /// near a whole core, while an average over the threads would say half.
    #[test]
    fn a_busy_load_thread_shows_as_busy() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let pool = crate::cores::LoadThreads::start(2).expect("threads");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.thread_ids().len() < 2 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        let tids = pool.thread_ids();
        assert_eq!(tids.len(), 2, "both threads report their id");
        let mut meter = ThreadCpuMeter::default();
        let from = Instant::now();
        meter.sample(&tids);
        // Spin on thread 0 for 600 ms of its own CPU time (not wall time, so a loaded
        // machine only makes the test slower).
        let (tx, rx) = std::sync::mpsc::channel();
        let spinning = tids[0];
        pool.handle(0).spawn(async move {
            let start = thread_cpu_seconds(spinning).unwrap_or(0.0);
            while thread_cpu_seconds(spinning).unwrap_or(0.0) - start < 0.6 {
                std::hint::spin_loop();
            }
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(60)).expect("the spin ended");
        let (busiest, measured) = meter.sample(&tids);
        let wall = from.elapsed().as_secs_f64();
        assert_eq!(measured, 2);
        // The spinning thread's 0.6 s (less a 10 ms tick) over at most `wall`: on an
        // idle machine ~100 %. An average over both threads would be half of it.
        let floor = (0.6 - 0.01) / wall * 100.0;
        assert!(busiest >= floor, "busiest {busiest:.1} % < {floor:.1} %");
        let idle = thread_cpu_seconds(tids[1]).unwrap_or(0.0);
        assert!(idle < 0.1, "the idle thread used {idle} s");
        let mut only_idle = ThreadCpuMeter::default();
        only_idle.sample(&tids[1..]);
        std::thread::sleep(Duration::from_millis(200));
        assert!(only_idle.sample(&tids[1..]).0 < 20.0);
    }

    #[test]
    fn reads_own_usage() {
        let (_, rss) = process_usage();
        if cfg!(target_os = "linux") {
            assert!(rss > 1024 * 1024, "rss {rss}");
        }
    }
}
