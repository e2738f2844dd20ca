//! Text rendering: the live view every few seconds (Dify's stress-suite box and a
//! Locust-style table) and the final report (per-endpoint table, percentiles, the four
//! tables of Dify's published benchmark, failures, workers). Plain text, no colours:
//! it reads the same in a terminal, a CI log and a Kubernetes pod log.

use std::fmt::Write;
use std::time::Duration;

use barrage_common::metrics::{EndpointStats, Metric};

use super::{EndpointRow, FinalReport, Percentiles};
use crate::cluster::Cluster;

const RULE: &str = "============================================================";

/// Prints the live view for the window that just ended.
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
pub fn print_progress(cluster: &Cluster, elapsed: Duration, run_time: Option<Duration>, target: Target) {
    use std::io::Write;
    let users = cluster.live_users();
    let (rps, errors) = {
        let agg = cluster.aggregator();
        // The last complete second.
        let last = agg.timeline.get(&(elapsed.as_secs() as i64 - 1));
        let all = agg.aggregated();
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

pub fn print_live(cluster: &Cluster, elapsed: Duration, window: Duration) {
    print!("{}", live_view(cluster, elapsed, window));
}

pub fn live_view(cluster: &Cluster, elapsed: Duration, window: Duration) -> String {
    // The registry first, released before the aggregator is taken: never both at once.
    let users = cluster.live_users();
    let agg = cluster.aggregator();
    let all = agg.aggregated();
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
    let stats: Vec<(String, String, EndpointStats)> = agg
        .endpoints
        .iter()
        .map(|(k, t)| (k.method.clone(), k.name.clone(), t.stats()))
        .collect();
    let rows: Vec<(String, String, &EndpointStats)> = stats.iter().map(|(m, n, s)| (m.clone(), n.clone(), s)).collect();
    out.push_str(&locust_table(&rows, &all, elapsed.as_secs_f64()));
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

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

fn fmt_ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn pct_row(p: &Option<Percentiles>) -> String {
    match p {
        None => "-".into(),
        Some(p) => format!(
            "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            fmt_ms(p.p50),
            fmt_ms(p.p90),
            fmt_ms(p.p95),
            fmt_ms(p.p99),
            fmt_ms(p.p999),
            fmt_ms(p.max),
            p.count
        ),
    }
}

/// The whole final report as text.
pub fn render_final(r: &FinalReport) -> String {
    let mut out = String::new();
    let load = match &r.arrivals {
        Some(a) if a.stages.is_empty() => format!("{} arrivals/s, at most {} in flight", a.start_rate, a.max_in_flight),
        Some(a) => format!(
            "arrivals from {}/s through {} stages, at most {} in flight",
            a.start_rate,
            a.stages.len(),
            a.max_in_flight
        ),
        None => format!("{} users, spawn rate {}", r.users, r.spawn_rate),
    };
    let _ = writeln!(
        out,
        "\n{RULE}\nFINAL RESULTS  ({:.1}s, {}; {load})\n{RULE}",
        r.duration_s, r.stop_reason
    );
    let _ = writeln!(
        out,
        "Scenario: {}   Host: {}",
        r.scenario,
        r.host.as_deref().unwrap_or("(from scenario)")
    );
    // Locust-style table from the rows.
    let mut header = String::new();
    let _ = writeln!(
        header,
        "{:<6} {:<30} {:>8} {:>14} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>11}",
        "Type", "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s"
    );
    out.push('\n');
    out.push_str(&header);
    let sep = "-".repeat(header.trim_end().len());
    let _ = writeln!(out, "{sep}");
    let line = |e: &EndpointRow| {
        let rt = e.response_time_ms;
        let f = |g: fn(&Percentiles) -> f64| rt.as_ref().map_or("-".into(), |p| fmt_ms(g(p)));
        format!(
            "{:<6} {:<30} {:>8} {:>14} | {:>8} {:>8} {:>8} {:>8} | {:>8.2} {:>11.2}\n",
            e.method,
            truncate(&e.name, 30),
            e.requests,
            format!("{}({:.2}%)", e.failures, e.failure_ratio * 100.0),
            f(|p| p.avg),
            f(|p| p.min),
            f(|p| p.max),
            f(|p| p.p50),
            e.rps,
            e.failures_per_s
        )
    };
    for e in &r.endpoints {
        out.push_str(&line(e));
    }
    let _ = writeln!(out, "{sep}");
    out.push_str(&line(&r.aggregated));

    let _ = writeln!(out, "\nResponse time percentiles (ms, exact to 3 significant digits)");
    let _ = writeln!(
        out,
        "{:<6} {:<30} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "Type", "Name", "50%", "90%", "95%", "99%", "99.9%", "100%", "# reqs"
    );
    for e in r.endpoints.iter().chain(std::iter::once(&r.aggregated)) {
        let _ = writeln!(
            out,
            "{:<6} {:<30} {}",
            e.method,
            truncate(&e.name, 30),
            pct_row(&e.response_time_ms)
        );
    }
    let sse: Vec<&EndpointRow> = r.endpoints.iter().filter(|e| e.kind == "sse").collect();
    if !sse.is_empty() {
        let _ = writeln!(out, "\nTTFE percentiles (ms, request start to first non-ping event)");
        let _ = writeln!(
            out,
            "{:<6} {:<30} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "Type", "Name", "50%", "90%", "95%", "99%", "99.9%", "100%", "# streams"
        );
        for e in &sse {
            let _ = writeln!(
                out,
                "{:<6} {:<30} {}",
                e.method,
                truncate(&e.name, 30),
                pct_row(&e.ttfe_ms)
            );
        }
    }

    if !sse.is_empty() {
        let _ = writeln!(out, "\nStreams (ms; p50 / p99)");
        let _ = writeln!(
            out,
            "{:<30} {:>15} {:>15} {:>15} {:>15} {:>8} {:>9} {:>6} {:>6}",
            "Name", "TTFT", "event gap", "chunk gap", "server elapsed", "events", "tokens/s", "pings", "429s"
        );
        let p = |x: &Option<Percentiles>| {
            x.as_ref()
                .map_or("-".to_string(), |p| format!("{} / {}", fmt_ms(p.p50), fmt_ms(p.p99)))
        };
        for e in &sse {
            let _ = writeln!(
                out,
                "{:<30} {:>15} {:>15} {:>15} {:>15} {:>8} {:>9.1} {:>6} {:>6}",
                truncate(&e.name, 30),
                p(&e.ttft_ms),
                p(&e.event_gap_ms),
                p(&e.chunk_gap_ms),
                p(&e.server_elapsed_ms),
                e.events,
                e.tokens_per_s,
                e.pings,
                e.too_many_requests + e.rate_limit_errors
            );
        }
    }

    // Batch endpoints (events_per_request > 1): throughput in business events, as
    // `RPS_single x 1 + RPS_batch x N`.
    if r.endpoints.iter().any(|e| e.events_per_request != 1) {
        let _ = writeln!(
            out,
            "\nBusiness events (successful requests x events_per_request)\n| Name | Events | Events/s |\n|---|---|---|"
        );
        for e in r.endpoints.iter().chain(std::iter::once(&r.aggregated)) {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} |",
                e.name, e.business_events, e.business_events_per_s
            );
        }
    }
    let _ = writeln!(out, "\nEvent Throughput (events/s)\n| Max | Avg | Min |\n|---|---|---|");
    let et = r.event_throughput;
    let _ = writeln!(out, "| {:.1} | {:.2} | {:.1} |", et.max, et.avg, et.min);
    let _ = writeln!(
        out,
        "\nTTFE - Time To First Event (ms)\n| Avg | Min | Max | P50 | P90 | P95 | P99 |\n|---|---|---|---|---|---|---|"
    );
    match &r.ttfe_ms {
        Some(p) => {
            let _ = writeln!(
                out,
                "| {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                p.avg, p.min, p.max, p.p50, p.p90, p.p95, p.p99
            );
        }
        None => {
            let _ = writeln!(out, "| - | - | - | - | - | - | - |");
        }
    }
    let c = r.connections;
    let _ = writeln!(
        out,
        "\nConnections\n| Max Concurrent | Avg Active |\n|---|---|\n| {} | {:.1} |",
        c.max_concurrent, c.avg_active
    );
    if c.retries > 0 {
        let _ = writeln!(
            out,
            "Retries: {} (sent again on a fresh connection: the server closed a kept-alive one before answering; not failures)",
            c.retries
        );
    }
    let q = r.qps;
    let _ = writeln!(
        out,
        "\nQPS\n| Max QPS | Avg QPS | Avg Duration (ms) |\n|---|---|---|\n| {:.1} | {:.2} | {:.2} |",
        q.max, q.avg, q.avg_duration_ms
    );

    if !r.failures.is_empty() {
        let _ = writeln!(
            out,
            "\nFailures\n{:>8}  {:<6} {:<30} {:<20} {:<10} sample",
            "count", "Type", "Name", "kind", "detail"
        );
        for f in &r.failures {
            let _ = writeln!(
                out,
                "{:>8}  {:<6} {:<30} {:<20} {:<10} {}",
                f.count,
                f.method,
                truncate(&f.name, 30),
                f.kind,
                f.detail,
                truncate(&f.sample, 80)
            );
        }
    }
    if !r.outcomes.is_empty() {
        let _ = writeln!(out, "\nOther outcomes (not failures)");
        for f in &r.outcomes {
            let _ = writeln!(
                out,
                "{:>8}  {:<6} {:<30} {} {}",
                f.count,
                f.method,
                truncate(&f.name, 30),
                f.kind,
                f.detail
            );
        }
    }
    if !r.replicas.is_empty() {
        let _ = writeln!(
            out,
            "\nPer replica (target address; latency of successful requests, failures by kind)"
        );
        let _ = writeln!(
            out,
            "{:<24} {:<6} {:<30} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}  failures by kind",
            "address", "Type", "Name", "users", "# reqs", "# fails", "req/s", "ok p50", "ok p95", "ttfe p50"
        );
        for x in &r.replicas {
            let q =
                |p: &Option<Percentiles>, f: fn(&Percentiles) -> f64| p.as_ref().map_or("-".into(), |p| fmt_ms(f(p)));
            let kinds: Vec<String> = x
                .failure_kinds
                .iter()
                .map(|k| format!("{} {} {}", k.kind, k.detail, k.count).replace("  ", " "))
                .collect();
            let _ = writeln!(
                out,
                "{:<24} {:<6} {:<30} {:>6} {:>8} {:>8} {:>8.2} {:>9} {:>9} {:>9}  {}",
                x.peer,
                x.method,
                truncate(&x.name, 30),
                x.users,
                x.requests,
                x.failures,
                x.rps,
                q(&x.response_time_ok_ms, |p| p.p50),
                q(&x.response_time_ok_ms, |p| p.p95),
                q(&x.ttfe_ms, |p| p.p50),
                kinds.join(", ")
            );
        }
    }
    let _ = writeln!(
        out,
        "\nWorkers\n{:<4} {:<32} {:<16} {:>5} {:>8} {:>6} {:>8} {:>10} {:>9} {:>9}",
        "#", "id", "host", "cores", "reports", "final", "cpu max", "thread max", "rss MiB", "lag ms"
    );
    for w in &r.workers {
        let _ = writeln!(
            out,
            "{:<4} {:<32} {:<16} {:>5} {:>8} {:>6} {:>7.0}% {:>9.0}% {:>9.1} {:>9.1}{}",
            w.index,
            truncate(&w.id, 32),
            truncate(&w.hostname, 16),
            w.cores,
            w.reports,
            if w.final_report { "yes" } else { "no" },
            w.cpu_max_percent,
            w.thread_cpu_max_percent,
            w.rss_bytes as f64 / 1048576.0,
            w.sched_lag_max_ms,
            if w.lost { "  LOST" } else { "" }
        );
    }
    if !r.events.is_empty() {
        let _ = writeln!(out, "\nCluster events");
        for e in &r.events {
            let _ = writeln!(out, "{e}");
        }
    }
    if let Some(h) = &r.hunt {
        render_hunt(&mut out, h);
    }
    if let Some(d) = &r.drift {
        let _ = writeln!(
            out,
            "\nDrift (seconds {}-{} against {}-{} of the run)\n| Figure | Early | Late | Change |\n|---|---|---|---|",
            d.early_s.0, d.early_s.1, d.late_s.0, d.late_s.1
        );
        for row in &d.rows {
            let change = row.change_pct.map_or("-".to_string(), |c| format!("{c:+.1}%"));
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {change} |",
                row.figure, row.early, row.late
            );
        }
    }
    if let Some(a) = &r.arrivals {
        let _ = writeln!(
            out,
            "\nOpen model: {} arrivals due by the schedule, {} requests started, {} dropped at the in-flight cap of {} (latencies from each arrival's due time)",
            a.due, r.aggregated.requests, a.dropped, a.max_in_flight
        );
    }
    if !r.thresholds.is_empty() {
        let _ = writeln!(out, "\nThresholds\n| Threshold | Observed | Verdict |\n|---|---|---|");
        for t in &r.thresholds {
            let verdict = match (t.passed, t.abort_on_fail) {
                (true, _) => "pass",
                (false, false) => "FAIL",
                (false, true) => "FAIL (abort_on_fail)",
            };
            let _ = writeln!(out, "| {} | {} | {verdict} |", t.threshold, t.shown);
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    if !r.completeness.is_complete() {
        let _ = writeln!(
            out,
            "DATA INCOMPLETE (exit code 3): these figures miss data the workers recorded"
        );
        for why in &r.completeness.reasons {
            let _ = writeln!(out, "  - {why}");
        }
    }
    let _ = writeln!(out, "{RULE}");
    out
}

fn render_hunt(out: &mut String, h: &crate::hunt::HuntReport) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let _ = writeln!(
        out,
        "\nBreaking-point hunt (each step judged after its warm-up)\n| {} | req/s | events/s | TTFE p50 | TTFE p95 | TTFE p99 | RT p95 | Errors | 429s | Little req/s | Busiest thread CPU | Verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
        if h.level == "users" { "Users" } else { "Arrivals/s" }
    );
    for s in &h.steps {
        let verdict = match s.verdict.as_str() {
            "slo" => format!("SLO broken: {}", s.broken.join("; ")),
            "stall" => "throughput stalled".to_string(),
            _ => "ok".to_string(),
        };
        let _ = writeln!(
            out,
            "| {}{} | {:.1} | {:.1} | {} | {} | {} | {} | {:.2}% | {} | {} | {:.0}% | {verdict} |",
            s.users,
            if s.bisecting { " (bisect)" } else { "" },
            s.rps,
            s.events_per_s,
            ms(s.ttfe_p50_ms),
            ms(s.ttfe_p95_ms),
            ms(s.ttfe_p99_ms),
            ms(s.response_time_p95_ms),
            s.error_rate * 100.0,
            s.status_429,
            s.little_rps.map_or("-".into(), |l| format!("{l:.1}")),
            s.worker_cpu_max,
        );
    }
    let capacity = match (h.sustainable_users, h.sustainable_rps) {
        (Some(u), Some(rps)) => format!("{u} {} ({rps:.1} req/s)", h.level),
        _ => "none: the first step already broke an SLO".to_string(),
    };
    let _ = writeln!(out, "Sustainable capacity: {capacity}");
    if let Some(bad) = h.first_bad_users {
        let _ = writeln!(
            out,
            "First bad level: {bad} {}; broke first: {}",
            h.level,
            h.broke_first.as_deref().unwrap_or("-")
        );
    }
    if let Some(knee) = h.knee_users {
        let _ = writeln!(out, "Knee (throughput peaked): {knee} {}", h.level);
    }
    if let Some(ratio) = h.little_ratio {
        let _ = writeln!(
            out,
            "Little's law at the sustainable level: observed / expected throughput = {ratio:.2} (users / (response time + wait))"
        );
    }
    let _ = writeln!(out, "Search ended: {}", h.ended);
    let _ = writeln!(out, "Generators: {}", h.validity);
}

#[cfg(test)]
mod progress_tests {
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
