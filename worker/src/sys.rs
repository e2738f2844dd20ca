//! The worker's view of its own health, so reports can say when the generator itself
//! was the bottleneck: process CPU and RSS from `/proc/self` (Linux; zeros elsewhere),
//! and the scheduling lag of the tokio runtime measured by a probe task.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// CPU ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on every Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// Reads process CPU time (seconds) and resident memory (bytes).
pub fn process_usage() -> (f64, u64) {
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the `(comm)`; utime and stime are fields 14 and 15 overall.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / TICKS_PER_SEC)
        })
        .unwrap_or(0.0);
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

/// CPU percent between successive calls.
pub struct CpuMeter {
    last_cpu: f64,
    last_at: Instant,
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter {
            last_cpu: process_usage().0,
            last_at: Instant::now(),
        }
    }
}

impl CpuMeter {
    /// (cpu percent of one core since the previous call, rss bytes).
    pub fn sample(&mut self) -> (f64, u64) {
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

/// How late timers fire: a probe sleeps PERIOD repeatedly and records the overshoot.
#[derive(Clone)]
pub struct LagProbe {
    lags: Arc<Mutex<Histogram<u64>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl LagProbe {
    const PERIOD: Duration = Duration::from_millis(20);

    /// Starts the probe on the current runtime; it ends when `stop` is cancelled.
    pub fn start(stop: tokio_util::sync::CancellationToken) -> Self {
        let probe = LagProbe {
            lags: Arc::new(Mutex::new(barrage_common::metrics::new_histogram())),
            stop,
        };
        probe.watch(&tokio::runtime::Handle::current());
        probe
    }

    /// Also probes `runtime` (a load thread's), into the same figures, until the
    /// probe's `stop` is cancelled or that runtime ends.
    pub fn watch(&self, runtime: &tokio::runtime::Handle) {
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
    pub fn peek_p99_us(&self) -> u64 {
        self.lags
            .lock()
            .map_or(0, |h| if h.is_empty() { 0 } else { h.value_at_quantile(0.99) })
    }

    /// p99 lag in µs since the previous call; resets.
    pub fn take_p99_us(&self) -> u64 {
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

    #[test]
    fn reads_own_usage() {
        let (_, rss) = process_usage();
        if cfg!(target_os = "linux") {
            assert!(rss > 1024 * 1024, "rss {rss}");
        }
    }
}
