//! The console while a run goes on: the progress line redrawn in place on a terminal
//! ([`print_progress`]) and the live view every few seconds ([`print_live`]: Dify's
//! stress-suite box and a Locust-style table).

use std::fmt::Write;
use std::time::Duration;

use barrage_common::metrics::{EndpointStats, Metric};

use super::{RULE, truncate};
use crate::aggregate::Aggregator;

/// What the run is heading for, for the progress line.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Users and spawn rate (closed model).
    Users(u32, f64),
    /// Arrivals per second now (open model).
    Rate(f64),
}

/// Erases the progress line (before other output, and at the end).
pub fn clear_progress() {
    use std::io::Write;
    print!("\r\x1b[2K");
    let _ = std::io::stdout().flush();
}

/// Redraws the progress line in place (stdout is a terminal).
pub fn print_progress(agg: &Aggregator, users: u32, elapsed: Duration, run_time: Option<Duration>, target: Target) {
    use std::io::Write;
    let (rps, errors) = {
        // The last complete second.
        let last = agg.timeline.get(&(elapsed.as_secs() as i64 - 1));
        let live = agg.live();
        let all = &live.all;
        let errors = if all.counts.requests > 0 {
            all.counts.failures as f64 * 100.0 / all.counts.requests as f64
        } else {
            0.0
        };
        (last.map_or(0, |s| s.requests), errors)
    };
    print!(
        "\r\x1b[2K{}",
        progress_line(elapsed, run_time, users, target, rps, errors)
    );
    let _ = std::io::stdout().flush();
}

/// `[#####-----] 0:42 / 2:00, 1:18 left | users 37 -> 50 at 10/s | 152 req/s | 0.00 % errors`
pub fn progress_line(
    elapsed: Duration,
    run_time: Option<Duration>,
    users: u32,
    target: Target,
    rps: u64,
    error_pct: f64,
) -> String {
    let clock = |d: Duration| {
        let s = d.as_secs();
        if s >= 3600 {
            format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        } else {
            format!("{}:{:02}", s / 60, s % 60)
        }
    };
    let time = match run_time {
        Some(total) => {
            const WIDTH: usize = 20;
            let done = (elapsed.as_secs_f64() / total.as_secs_f64().max(1e-3)).clamp(0.0, 1.0);
            let filled = (done * WIDTH as f64).round() as usize;
            format!(
                "[{}{}] {} / {}, {} left",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled),
                clock(elapsed),
                clock(total),
                clock(total.saturating_sub(elapsed))
            )
        }
        None => format!("{} (until stopped)", clock(elapsed)),
    };
    let load = match target {
        Target::Users(goal, rate) if goal != users => format!("users {users} -> {goal} at {rate}/s"),
        Target::Users(..) => format!("users {users}"),
        Target::Rate(r) => format!("{r:.1} arrivals/s, users {users}"),
    };
    format!("{time} | {load} | {rps} req/s | {error_pct:.2} % errors")
}

/// Prints the live view for the window that just ended.
pub fn print_live(agg: &Aggregator, users: u32, elapsed: Duration, window: Duration) {
    print!("{}", live_view(agg, users, elapsed, window));
}

/// The live view at `elapsed` over the last `window` of complete seconds, with `users`
/// running cluster-wide.
pub fn live_view(agg: &Aggregator, users: u32, elapsed: Duration, window: Duration) -> String {
    // The totals of this second, shared with the other live readers.
    let live = agg.live();
    let all = &live.all;
    // The last `window` of complete seconds (the current second is still arriving).
    let now_s = elapsed.as_secs() as i64;
    let from = now_s - window.as_secs().max(1) as i64;
    let slots: Vec<_> = agg.timeline.range(from..now_s).map(|(_, s)| s).collect();
    let secs = window.as_secs_f64().max(1.0);
    let streams: u64 = slots.iter().map(|s| s.streams_started).sum();
    let events: u64 = slots.iter().map(|s| s.events).sum();
    let (ttfe_sum, ttfe_n) = slots.iter().fold((0.0, 0u64), |(sum, n), s| {
        let x = s.summary();
        (sum + x.ttfe_mean_us * x.ttfe_count as f64, n + x.ttfe_count)
    });
    let active = agg
        .timeline
        .range(..now_s)
        .next_back()
        .map_or(0.0, |(_, s)| s.active_streams);
    let mut out = String::new();
    let _ = writeln!(out, "\n{RULE}");
    let _ = writeln!(
        out,
        "SSE Metrics | Active: {:>4.0} | Total Conn: {:>6} | Events: {:>8}",
        active, all.counts.streams_started, all.counts.events
    );
    let ttfe = if ttfe_n > 0 {
        format!("{:.0}ms", ttfe_sum / ttfe_n as f64 / 1000.0)
    } else {
        "-".into()
    };
    let _ = writeln!(
        out,
        "Rates: {:.1} conn/s | {:.1} events/s | TTFE: {ttfe}",
        streams as f64 / secs,
        events as f64 / secs
    );
    let _ = writeln!(out, "Elapsed: {:.0}s | Users: {users}", elapsed.as_secs_f64());
    let _ = writeln!(out, "{RULE}");
    let rows: Vec<(String, String, &EndpointStats)> = live
        .rows
        .iter()
        .map(|(k, _, s)| (k.method.clone(), k.name.clone(), s))
        .collect();
    out.push_str(&locust_table(&rows, all, elapsed.as_secs_f64()));
    out
}

/// Locust's request table: Type, Name, # reqs, # fails, Avg/Min/Max/Med, req/s, failures/s.
fn locust_table(rows: &[(String, String, &EndpointStats)], all: &EndpointStats, secs: f64) -> String {
    let secs = secs.max(1e-3);
    let mut out = String::new();
    let header = format!(
        "{:<8} {:<30} {:>8} {:>14} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>11}",
        "Type", "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s"
    );
    let sep = "-".repeat(header.len());
    let _ = writeln!(out, "{header}\n{sep}");
    let line = |method: &str, name: &str, s: &EndpointStats| {
        let h = s.histogram(Metric::ResponseTime).filter(|h| !h.is_empty());
        let ms = |f: &dyn Fn(&hdrhistogram::Histogram<u64>) -> f64| {
            h.map_or("-".to_string(), |h| format!("{:.0}", f(h) / 1000.0))
        };
        let pct = if s.counts.requests > 0 {
            s.counts.failures as f64 * 100.0 / s.counts.requests as f64
        } else {
            0.0
        };
        format!(
            "{:<8} {:<30} {:>8} {:>14} | {:>8} {:>8} {:>8} {:>8} | {:>8.2} {:>11.2}\n",
            method,
            truncate(name, 30),
            s.counts.requests,
            format!("{}({:.2}%)", s.counts.failures, pct),
            ms(&|h| h.mean()),
            ms(&|h| h.min() as f64),
            ms(&|h| h.max() as f64),
            ms(&|h| h.value_at_quantile(0.5) as f64),
            s.counts.requests as f64 / secs,
            s.counts.failures as f64 / secs
        )
    };
    for (method, name, s) in rows {
        out.push_str(&line(method, name, s));
    }
    let _ = writeln!(out, "{sep}");
    out.push_str(&line("", "Aggregated", all));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_time_left_the_ramp_and_the_rate() {
        let line = progress_line(
            Duration::from_secs(42),
            Some(Duration::from_secs(120)),
            37,
            Target::Users(50, 10.0),
            152,
            0.5,
        );
        assert_eq!(
            line,
            "[#######-------------] 0:42 / 2:00, 1:18 left | users 37 -> 50 at 10/s | 152 req/s | 0.50 % errors"
        );
        let line = progress_line(Duration::from_secs(3725), None, 50, Target::Users(50, 10.0), 0, 0.0);
        assert_eq!(line, "1:02:05 (until stopped) | users 50 | 0 req/s | 0.00 % errors");
        let line = progress_line(
            Duration::from_secs(200),
            Some(Duration::from_secs(100)),
            3,
            Target::Rate(12.0),
            12,
            0.0,
        );
        assert!(
            line.starts_with("[####################] 3:20 / 1:40, 0:00 left | 12.0 arrivals/s, users 3"),
            "{line}"
        );
    }
}
