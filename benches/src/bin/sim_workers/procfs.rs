//! CPU time and resident memory of a process from /proc (Linux), and a sampler that
//! records the master's and our own once a second.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::oneshot;

/// Clock ticks per second of /proc/PID/stat's times. Asked of `getconf` (sysconf
/// would need unsafe code, which the workspace forbids); 100 is Linux's value
/// everywhere in practice.
pub(crate) fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// One reading of one process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    pub at: Instant,
    /// User + system time consumed since the process started.
    pub cpu: Duration,
    pub rss_bytes: u64,
    /// Peak RSS so far (VmHWM), which also catches peaks between two readings.
    pub hwm_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` may be "self").
pub(crate) fn read(pid: &str, ticks_per_s: u64) -> Result<Reading> {
    let at = Instant::now();
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted
    // after its closing parenthesis, where field 3 (state) is index 0.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("/proc/{pid}/stat has no command field"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat field {} is missing or not a number", i + 3))
    };
    // Fields 14 and 15: utime and stime, in clock ticks.
    let ticks = field(11)? + field(12)?;
    let cpu = Duration::from_micros(ticks * 1_000_000 / ticks_per_s.max(1));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb = |key: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("/proc/{pid}/status has no {key}"))?;
        match line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()) {
            Some(v) => Ok(v * 1024),
            None => bail!("/proc/{pid}/status: cannot read `{line}`"),
        }
    };
    Ok(Reading {
        at,
        cpu,
        rss_bytes: kb("VmRSS:")?,
        hwm_bytes: kb("VmHWM:")?,
    })
}

/// Readings of the master and of this process, taken at the same moments.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    pub master: Vec<Reading>,
    pub own: Vec<Reading>,
}

/// Samples once a second until `stop` fires (or is dropped); a reading that fails
/// (the master has exited) is skipped.
pub(crate) async fn sample(master_pid: u32, ticks_per_s: u64, mut stop: oneshot::Receiver<()>) -> Samples {
    let pid = master_pid.to_string();
    let mut samples = Samples::default();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = every.tick() => {
                if let (Ok(m), Ok(o)) = (read(&pid, ticks_per_s), read("self", ticks_per_s)) {
                    samples.master.push(m);
                    samples.own.push(o);
                }
            }
        }
    }
    samples
}

/// CPU used over `[from, to]` as percent of one core, from the first reading at or
/// after `from` to the last at or before `to` (None if fewer than two fall inside).
pub(crate) fn cpu_percent(readings: &[Reading], from: Instant, to: Instant) -> Option<(f64, Duration)> {
    let first = readings.iter().find(|r| r.at >= from)?;
    let last = readings.iter().rev().find(|r| r.at <= to)?;
    let wall = last.at.checked_duration_since(first.at)?;
    if wall < Duration::from_millis(500) {
        return None;
    }
    let used = last.cpu.saturating_sub(first.cpu);
    Some((100.0 * used.as_secs_f64() / wall.as_secs_f64(), wall))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let r = read("self", clock_ticks()).unwrap();
        assert!(r.rss_bytes > 0 && r.hwm_bytes >= r.rss_bytes);
    }
}
