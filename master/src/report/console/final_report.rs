//! The final report as text ([`render_final`]): the request table, percentiles, the
//! SSE and Dify benchmark tables, failures, replicas, workers, the hunt, drift,
//! thresholds and the verdict, one function per section in the order printed.

use std::fmt::Write;

use super::{RULE, fmt_ms, hunt_search, truncate};
use crate::hunt::{HuntLevel, HuntReport, StepVerdict};
use crate::report::model::FinalReport;
use crate::report::rows::{EndpointRow, Percentiles};

/// The whole final report as text, section by section.
pub fn render_final(r: &FinalReport) -> String {
    let mut out = String::new();
    title(&mut out, r);
    requests_table(&mut out, r);
    response_time_percentiles(&mut out, r);
    sse_tables(&mut out, r);
    business_events(&mut out, r);
    super::goodput::goodput_table(&mut out, r);
    dify_tables(&mut out, r);
    crate::report::nodes::render_console(&mut out, &r.where_time_goes);
    failures(&mut out, r);
    replicas(&mut out, r);
    workers(&mut out, r);
    if let Some(h) = &r.hunt {
        hunt(&mut out, h);
    }
    drift(&mut out, r);
    arrivals(&mut out, r);
    thresholds(&mut out, r);
    verdict(&mut out, r);
    let _ = writeln!(out, "{RULE}");
    out
}

/// The title rule with the run's length, stop reason and load, and the scenario.
fn title(out: &mut String, r: &FinalReport) {
    let load = match &r.arrivals {
        Some(a) if a.trace.is_some() => format!("replaying a trace, at most {} in flight", a.max_in_flight),
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
}

/// Locust's request table: one line per row, then Aggregated.
fn requests_table(out: &mut String, r: &FinalReport) {
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
}

/// Response time percentiles of every row and Aggregated.
fn response_time_percentiles(out: &mut String, r: &FinalReport) {
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
}

/// The SSE rows' TTFE percentiles and stream figures (nothing without SSE rows).
fn sse_tables(out: &mut String, r: &FinalReport) {
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
}

/// Business events per row, when a row carries more than one per request.
fn business_events(out: &mut String, r: &FinalReport) {
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
}

/// The four tables of Dify's published benchmark: event throughput, TTFE,
/// connections and QPS.
fn dify_tables(out: &mut String, r: &FinalReport) {
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
}

/// Failures, then declared outcomes (not failures), by row, kind and detail.
fn failures(out: &mut String, r: &FinalReport) {
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
}

/// Per target address, when the host resolved to several.
fn replicas(out: &mut String, r: &FinalReport) {
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
}

/// The workers table, then the cluster events.
fn workers(out: &mut String, r: &FinalReport) {
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
}

/// The soak drift table: the early third against the late one.
fn drift(out: &mut String, r: &FinalReport) {
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
}

/// The open model's due, started and dropped arrivals.
fn arrivals(out: &mut String, r: &FinalReport) {
    if let Some(a) = &r.arrivals {
        let _ = writeln!(
            out,
            "\nOpen model: {} arrivals due by the schedule, {} requests started, {} dropped at the in-flight cap of {} (latencies from each arrival's due time)",
            a.due, r.aggregated.requests, a.dropped, a.max_in_flight
        );
        if let (Some(process), Some(seed)) = (&a.process, a.seed) {
            let shape = a.burstiness.map(|k| format!(", burstiness {k}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "Arrivals: {process}{shape}, seed {seed} (`--arrival-seed {seed}` repeats them)"
            );
        }
        if let Some(t) = &a.trace {
            let _ = writeln!(
                out,
                "Arrivals: replayed trace {} ({} lines over {:.3}s; due = its lines within the run)",
                t.file, t.lines, t.span_s
            );
        }
    }
}

/// Each threshold with what was observed and its verdict.
fn thresholds(out: &mut String, r: &FinalReport) {
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
}

/// Warnings, and why the data is incomplete when it is.
fn verdict(out: &mut String, r: &FinalReport) {
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
}

/// The breaking-point hunt: each step, the capacity found and what broke first.
fn hunt(out: &mut String, h: &HuntReport) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let stops = hunt_search::has_stops(h);
    let _ = writeln!(
        out,
        "\nBreaking-point hunt (each step judged after its warm-up)\n| {} | req/s | events/s | TTFE p50 | TTFE p95 | TTFE p99 | RT p95 | Errors | 429s | Little req/s | Busiest thread CPU | Verdict |{}\n|---|---|---|---|---|---|---|---|---|---|---|---|{}",
        match h.level {
            HuntLevel::Users => "Users",
            HuntLevel::ArrivalsPerSecond => "Arrivals/s",
        },
        if stops { " Step ended |" } else { "" },
        if stops { "---|" } else { "" },
    );
    for s in &h.steps {
        let verdict = match s.verdict {
            StepVerdict::Slo => format!("SLO broken: {}", s.broken.join("; ")),
            StepVerdict::Stall => "throughput stalled".to_string(),
            StepVerdict::Ok => "ok".to_string(),
        };
        let _ = writeln!(
            out,
            "| {}{} | {:.1} | {:.1} | {} | {} | {} | {} | {:.2}% | {} | {} | {:.0}% | {verdict} |{}",
            s.users,
            hunt_search::level_note(s),
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
            if stops {
                format!(" {} |", hunt_search::step_end(s))
            } else {
                String::new()
            },
        );
    }
    let capacity = match (h.sustainable_users, h.sustainable_rps) {
        (Some(u), Some(rps)) => format!("{u} {} ({rps:.1} req/s)", h.level),
        _ => "none: the first step already broke an SLO".to_string(),
    };
    let _ = writeln!(out, "Sustainable capacity: {capacity}");
    hunt_search::lines(out, h);
    hunt_confidence(out, h);
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
    crate::hunt::nodes::render_console(out, h);
    let _ = writeln!(out, "Search ended: {}", h.ended);
    let _ = writeln!(out, "Generators: {}", h.validity);
}

/// The sustainable level's interval and the cliff-or-knee call (files saved before
/// them print nothing here, as they did).
fn hunt_confidence(out: &mut String, h: &HuntReport) {
    let pct = |m: f64| format!("{:.1} %", m * 100.0);
    if let Some(c) = &h.confidence {
        let _ = writeln!(
            out,
            "Confidence: {} at {} {}: {}, {} resamples of {} s; margin to the limit {} ({} to {}): {} ({})",
            c.slo,
            c.level,
            h.level,
            c.shown,
            c.resamples,
            c.seconds,
            pct(c.margin),
            pct(c.margin_low),
            pct(c.margin_high),
            c.call,
            if c.call == "confident" {
                "the whole interval meets the SLO"
            } else {
                "the interval crosses the limit"
            }
        );
    }
    if let Some(m) = &h.margin_shape {
        let _ = writeln!(
            out,
            "SLO margin: {} ({}: {} at the first level, {} at the last good one, {} kept; a cliff keeps more than half)",
            m.call,
            m.slo,
            pct(m.first_margin),
            pct(m.last_good_margin),
            pct(m.kept),
        );
    }
}

/// A row of percentiles (50 % to 100 %) and the count, or `-` without values.
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
