//! The result block: what the master cost and whether its report is exact.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;

use crate::cli::Args;
use crate::procfs::{Reading, cpu_percent};
use crate::run::Observed;
use crate::worker::{Shared, Times};

/// Steady state starts this long after every worker got its first Assign.
const WARM_UP: Duration = Duration::from_secs(5);

/// The totals of the master's JSON report (`aggregated` in report.schema.json).
struct ReportTotals {
    requests: u64,
    failures: u64,
    endpoints: usize,
    stop_reason: String,
}

fn read_totals(o: &Observed) -> Result<ReportTotals> {
    let text = std::fs::read_to_string(&o.json).with_context(|| format!("reading {}", o.json.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", o.json.display()))?;
    let number = |key: &str| {
        v["aggregated"][key]
            .as_u64()
            .with_context(|| format!("{}: aggregated.{key} is not a number", o.json.display()))
    };
    Ok(ReportTotals {
        requests: number("requests")?,
        failures: number("failures")?,
        endpoints: v["endpoints"].as_array().map_or(0, Vec::len),
        stop_reason: v["stop_reason"].as_str().unwrap_or("?").to_string(),
    })
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn cpu_line(readings: &[Reading], from: Option<Instant>, to: Option<Instant>) -> String {
    match (from, to) {
        (Some(from), Some(to)) => match cpu_percent(readings, from.into_std(), to.into_std()) {
            Some((pct, wall)) => format!("{pct:.1} % of one core (over {:.1} s)", wall.as_secs_f64()),
            None => "n/a (window shorter than two samples)".into(),
        },
        _ => "n/a (phase not reached)".into(),
    }
}

/// The phases of a run the CPU figures are measured over.
struct Phases {
    /// Steady state: from [`WARM_UP`] after the last worker started ...
    steady_from: Option<Instant>,
    /// ... to the Stop (or to the master's exit, when it ended the run without one).
    steady_to: Option<Instant>,
    /// When the master process exited.
    master_end: Option<Instant>,
}

impl Phases {
    fn of(o: &Observed, times: &Times) -> Self {
        let master_end = o.master_exit.map(|(at, _)| at);
        Self {
            steady_from: times.all_assigned.map(|t| t + WARM_UP),
            steady_to: times.first_stop.or(master_end),
            master_end,
        }
    }
}

/// Prints the result block; true when the run was complete and the totals agree.
pub(crate) fn print(args: &Args, o: &Observed) -> bool {
    let s = &o.shared;
    let times = s.times();
    let welcomed = s.welcomed.load(Ordering::Relaxed);
    let finals_acked = s.finals_acked.load(Ordering::Relaxed);
    let phases = Phases::of(o, &times);

    print_traffic(args, o, &times);
    let peak = print_master_cost(o, &phases);
    print_final_timings(o, &times);
    let mut ok = welcomed == args.workers as usize && finals_acked == args.workers as usize && o.errors.is_empty();
    let totals = read_totals(o);
    if let Some(path) = &args.json_out {
        write_figures(path, args, o, (&times, &phases), peak, &totals);
    }
    ok &= print_exactness(s, totals);
    print_errors(o);
    println!("files                    {}", o.dir.display());
    ok
}

/// The heading, the workers connected, the reports sent and what one holds.
fn print_traffic(args: &Args, o: &Observed, times: &Times) {
    let s = &o.shared;
    let welcomed = s.welcomed.load(Ordering::Relaxed);
    let finals_acked = s.finals_acked.load(Ordering::Relaxed);
    let reports_sent = s.reports_sent.load(Ordering::Relaxed);
    let hist_bytes = o.templates.iter().map(|t| t.histogram_bytes).sum::<usize>() / o.templates.len().max(1);
    let req_per_report = o.templates.iter().map(|t| t.requests).sum::<u64>() / o.templates.len().max(1) as u64;

    println!();
    println!(
        "== sim-workers: {} fake workers x {} endpoints, run time {:?} ==",
        args.workers, args.endpoints, args.duration
    );
    println!(
        "workers connected        {welcomed} / {} over {} HTTP/2 connections; all running {}",
        args.workers,
        o.connections,
        times
            .all_assigned
            .map_or("never".into(), |t| format!("{} after launch", ms(t - o.launched)))
    );
    println!(
        "reports                  sent {reports_sent}, acknowledged {} (finals {finals_acked} / {} acknowledged); heartbeats {}",
        s.reports_acked.load(Ordering::Relaxed),
        args.workers,
        s.heartbeats_sent.load(Ordering::Relaxed)
    );
    let deltas_per_report =
        o.templates.iter().map(|t| t.endpoints.len()).sum::<usize>() as f64 / o.templates.len().max(1) as f64;
    println!(
        "report content           ~{req_per_report} requests, {deltas_per_report:.1} of {} endpoints ({} % active) and {:.1} KB of V2 histograms per report ({} templates)",
        args.endpoints,
        args.active_percent,
        hist_bytes as f64 / 1e3,
        o.templates.len()
    );
}

/// The master's CPU by phase, its memory, and the simulator's own CPU; the master's
/// peak resident memory in bytes.
fn print_master_cost(o: &Observed, phases: &Phases) -> u64 {
    let Phases {
        steady_from,
        steady_to,
        master_end,
    } = *phases;
    println!(
        "master CPU, steady state {}",
        cpu_line(&o.samples.master, steady_from, steady_to)
    );
    println!(
        "master CPU, join + 5 s   {}",
        cpu_line(&o.samples.master, Some(o.launched), steady_from)
    );
    println!(
        "master CPU, whole run    {}",
        cpu_line(&o.samples.master, Some(o.launched), master_end)
    );
    let peak = o.samples.master.iter().map(|r| r.hwm_bytes).max().unwrap_or(0);
    let steady_rss = o
        .samples
        .master
        .iter()
        .rev()
        .find(|r| steady_to.is_some_and(|t| r.at <= t.into_std()))
        .map_or("n/a".into(), |r| mb(r.rss_bytes));
    println!(
        "master RSS               peak {} (VmHWM); {steady_rss} at the end of steady state",
        mb(peak)
    );
    println!(
        "simulator CPU, steady    {}",
        cpu_line(&o.samples.own, steady_from, steady_to)
    );
    peak
}

/// How long the master took to write its report and exit after the last final report,
/// and from the Stop to the last final report's Ack.
fn print_final_timings(o: &Observed, times: &Times) {
    let ready = match (times.last_final_sent, o.json_seen) {
        (Some(sent), Some(seen)) => ms(seen.saturating_duration_since(sent)),
        _ => "n/a".into(),
    };
    let exited = match (times.last_final_sent, o.master_exit) {
        (Some(sent), Some((at, status))) => {
            // barrage exits 1 when the report holds failures, which ours always do.
            let note = if status.code() == Some(1) {
                ", = the report has failures: expected"
            } else {
                ""
            };
            format!("{} ({status}{note})", ms(at.saturating_duration_since(sent)))
        }
        (_, Some((_, status))) => format!("n/a ({status})"),
        _ => "n/a".into(),
    };
    let stop_to_final = match (times.first_stop, times.last_final_acked) {
        (Some(stop), Some(acked)) => ms(acked.saturating_duration_since(stop)),
        _ => "n/a".into(),
    };
    println!("final report ready after {ready} (last final report sent -> JSON file appeared)");
    println!("master exited after      {exited}");
    println!("stop to last final ack   {stop_to_final}");
}

/// `--json-out`: the run's figures as one JSON object, for benches/RESULTS.md.
fn write_figures(
    path: &Path,
    args: &Args,
    o: &Observed,
    (times, phases): (&Times, &Phases),
    peak: u64,
    totals: &Result<ReportTotals>,
) {
    let s = &o.shared;
    let steady = match (phases.steady_from, phases.steady_to) {
        (Some(from), Some(to)) => cpu_percent(&o.samples.master, from.into_std(), to.into_std()).map(|(p, _)| p),
        _ => None,
    };
    let ready_ms = match (times.last_final_sent, o.json_seen) {
        (Some(sent), Some(seen)) => Some(seen.saturating_duration_since(sent).as_secs_f64() * 1e3),
        _ => None,
    };
    let figures = serde_json::json!({
        "workers": args.workers,
        "endpoints": args.endpoints,
        "active_percent": args.active_percent,
        "histogram_bytes_per_report": o.templates.iter().map(|t| t.histogram_bytes).sum::<usize>() / o.templates.len().max(1),
        "workers_connected": s.welcomed.load(Ordering::Relaxed),
        "reports_sent": s.reports_sent.load(Ordering::Relaxed),
        "reports_acked": s.reports_acked.load(Ordering::Relaxed),
        "finals_acked": s.finals_acked.load(Ordering::Relaxed),
        "master_cpu_percent": steady,
        "master_peak_rss_mib": peak as f64 / (1024.0 * 1024.0),
        "final_report_ms": ready_ms,
        "requests_sent": s.requests_sent.load(Ordering::Relaxed),
        "requests_reported": totals.as_ref().ok().map(|t| t.requests),
        "worker_errors": o.errors.len(),
    });
    if let Err(e) = std::fs::write(path, figures.to_string()) {
        println!("cannot write {}: {e}", path.display());
    }
}

/// What the fake workers sent against the report's totals; true when they agree.
fn print_exactness(s: &Shared, totals: Result<ReportTotals>) -> bool {
    let requests_sent = s.requests_sent.load(Ordering::Relaxed);
    let failures_sent = s.failures_sent.load(Ordering::Relaxed);
    match totals {
        Ok(t) => {
            let verdict = |a: u64, b: u64| if a == b { "equal" } else { "DIFFERENT" };
            println!(
                "exactness, requests      fake workers sent {requests_sent} ({} acknowledged), report JSON aggregated.requests {} -> {}",
                s.requests_acked.load(Ordering::Relaxed),
                t.requests,
                verdict(requests_sent, t.requests)
            );
            println!(
                "exactness, failures      fake workers sent {failures_sent}, report JSON aggregated.failures {} -> {} ({} endpoints in the report)",
                t.failures,
                verdict(failures_sent, t.failures),
                t.endpoints
            );
            println!("master's stop reason     {}", t.stop_reason);
            t.requests == requests_sent && t.failures == failures_sent
        }
        Err(e) => {
            println!("exactness                cannot check: {e:#}");
            false
        }
    }
}

/// How many worker errors, and up to five distinct ones.
fn print_errors(o: &Observed) {
    println!("worker errors            {}", o.errors.len());
    let mut distinct: Vec<&String> = o.errors.iter().collect();
    distinct.sort();
    distinct.dedup();
    for e in distinct.iter().take(5) {
        println!("    {e}");
    }
}
