//! `GET /metrics`: the running test in the Prometheus text exposition format 0.0.4,
//! written by hand (the format is small and stable), from the aggregator's cumulative
//! totals and the worker registry.
//!
//! - Counters come from the merged totals, which only ever grow while the run lasts,
//!   so they are cumulative and monotonic (a future "reset stats" would show as a
//!   counter reset, which `rate()` handles).
//! - The totals are the live view's snapshot ([`Aggregator::live`]), built at most
//!   once a second whoever reads it, so a scrape may be up to a second behind.
//! - Histograms use fixed bounds ([`BOUNDS_S`]); their bucket counts are read off the
//!   merged HDR histograms: an HDR bucket counts towards `le` when its lowest value is
//!   at most the bound, the same rule as `Histogram::count_between(0, bound)`, so a
//!   count is exact except for the one HDR bucket (at most 0.1 % of the bound wide)
//!   that contains the bound itself.
//! - `barrage_users` is live: the sum of the users in each worker's latest heartbeat
//!   (once a second). `barrage_active_streams` has no heartbeat field, so it is the
//!   timeline's newest complete second (two seconds behind, the report lag):
//!   the sum over workers of their time-averaged open streams.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use barrage_common::metrics::{EndpointStats, Metric};
use barrage_common::plan::TaskKindTag;

use crate::aggregate::{Aggregator, LiveTotals};
use crate::cluster::{Cluster, Registry};

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (`le`) of the histogram buckets, seconds; `+Inf` follows.
pub const BOUNDS_S: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// The same bounds in µs, the histograms' unit.
const BOUNDS_US: [u64; 13] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
    60_000_000,
];

/// Everything one scrape shows, copied out under the locks and rendered after.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Run time at the scrape (zero before the start).
    pub elapsed: Duration,
    /// Sum of the users in the latest heartbeat of each worker not lost.
    pub users: u64,
    /// Workers in the run (not written off), connected or briefly not.
    pub workers_connected: u64,
    /// Workers declared lost.
    pub workers_lost: u64,
    /// Open SSE streams, time-averaged over the newest complete second.
    pub active_streams: f64,
    /// Open model: arrivals not started because of the in-flight cap, run total.
    pub dropped_iterations: u64,
    /// Every endpoint's totals, in the aggregator's order.
    pub endpoints: Vec<EndpointSnapshot>,
}

/// One endpoint's totals at the scrape.
#[derive(Debug)]
pub struct EndpointSnapshot {
    /// HTTP method, the `method` label.
    pub method: String,
    /// Endpoint name, the `name` label.
    pub name: String,
    /// HTTP or SSE: only SSE endpoints get a TTFE histogram.
    pub kind: TaskKindTag,
    /// The merged totals since the start (or the last reset).
    pub stats: EndpointStats,
    /// Its tasks have goodput objectives: it gets a `barrage_good_requests_total`.
    pub goodput: bool,
}

impl Snapshot {
    /// Reads the cluster: the registry, then the aggregator (never both locks at once).
    pub fn take(cluster: &Cluster) -> Snapshot {
        let elapsed = cluster.run_elapsed();
        let mut snap = Snapshot {
            elapsed,
            ..Default::default()
        };
        snap.read_registry(&cluster.registry());
        let rows = snap.read_aggregator(&cluster.aggregator());
        // The rows are copied out of the shared snapshot after the lock is released.
        snap.set_endpoints(rows);
        snap
    }

    /// The endpoints from the live view's totals and each row's goodput flag.
    fn set_endpoints(&mut self, (live, goodput): (Arc<LiveTotals>, Vec<bool>)) {
        self.endpoints = live
            .rows
            .iter()
            .zip(goodput)
            .map(|((k, kind, stats), goodput)| EndpointSnapshot {
                method: k.method.clone(),
                name: k.name.clone(),
                kind: *kind,
                stats: stats.clone(),
                goodput,
            })
            .collect();
    }

    fn read_registry(&mut self, reg: &Registry) {
        for w in reg.workers() {
            if w.is_lost() {
                self.workers_lost += 1;
            } else {
                self.workers_connected += 1;
                self.users += u64::from(w.users());
            }
        }
    }

    /// The gauges, and the live view's totals of this second ([`Aggregator::live`]:
    /// built at most once a second, not per scrape) with each row's goodput flag.
    fn read_aggregator(&mut self, agg: &Aggregator) -> (Arc<LiveTotals>, Vec<bool>) {
        // The gauges of the latest second at the report-lag boundary (the aggregator's
        // one rule for which seconds have all their reports in).
        let complete = agg.complete_end(self.elapsed);
        self.active_streams = agg
            .timeline
            .range(..=complete)
            .next_back()
            .map_or(0.0, |(_, slot)| slot.active_streams);
        self.dropped_iterations = agg.dropped_iterations;
        let live = agg.live();
        let goodput = live.rows.iter().map(|(k, _, _)| agg.has_goodput(k)).collect();
        (live, goodput)
    }
}

/// The exposition of the cluster as it is now.
pub fn render(cluster: &Cluster) -> String {
    render_snapshot(&Snapshot::take(cluster))
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as the text format wants it.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// `{a="x",b="y"}` from label pairs (empty for none).
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

struct Out(String);

impl Out {
    /// The `# HELP` and `# TYPE` lines of a family (HELP text has no `\n` or `\`).
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{} {value}", labels(pairs));
    }
}

/// Cumulative bucket counts (one per `BOUNDS_US` bound), the total, and the sum of
/// the values in seconds.
///
/// The sum is HDR's mean times the count, computed without the division (each HDR
/// bucket's median value times its count, in integer µs) so that it, too, only grows.
pub fn buckets(h: &Histogram<u64>) -> ([u64; BOUNDS_US.len()], u64, f64) {
    let mut counts = [0u64; BOUNDS_US.len()];
    let mut sum_us: u128 = 0;
    for v in h.iter_recorded() {
        let value = v.value_iterated_to();
        let count = v.count_at_value();
        sum_us += u128::from(h.median_equivalent(value)) * u128::from(count);
        let lowest = h.lowest_equivalent(value);
        if let Some(i) = BOUNDS_US.iter().position(|&b| lowest <= b) {
            counts[i] += count;
        }
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    (counts, h.len(), sum_us as f64 / 1e6)
}

/// The `method` and `name` labels of an endpoint.
fn ep(e: &EndpointSnapshot) -> [(&'static str, &str); 2] {
    [("method", e.method.as_str()), ("name", e.name.as_str())]
}

/// Renders a snapshot in the text format 0.0.4.
pub fn render_snapshot(snap: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(4096 + snap.endpoints.len() * 4096));
    counters(&mut o, snap);
    gauges(&mut o, snap);
    histograms(&mut o, &snap.endpoints);
    o.0
}

/// The counter families: per endpoint, per failure kind, and cluster-wide.
fn counters(o: &mut Out, snap: &Snapshot) {
    let eps = &snap.endpoints;

    type Pick = fn(&EndpointStats) -> u64;
    let per_endpoint: [(&str, &str, Pick); 4] = [
        (
            "barrage_requests_total",
            "Requests completed, per endpoint (failures and requests cut short at stop included).",
            |s| s.counts.requests,
        ),
        (
            "barrage_events_total",
            "SSE events received, per endpoint (pings included).",
            |s| s.counts.events,
        ),
        (
            "barrage_bytes_received_total",
            "Response bytes received, per endpoint.",
            |s| s.counts.bytes_received,
        ),
        (
            "barrage_status_429_total",
            "HTTP 429 answers, per endpoint (failures and declared expected statuses alike).",
            EndpointStats::status_429,
        ),
    ];
    for (name, help, pick) in per_endpoint {
        o.family(name, "counter", help);
        for e in eps {
            o.sample(name, &ep(e), pick(&e.stats));
        }
    }

    o.family(
        "barrage_failures_total",
        "counter",
        "Failed requests, per endpoint and failure kind.",
    );
    for e in eps {
        let mut by_kind: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for ((kind, _), entry) in &e.stats.failure_kinds {
            *by_kind.entry(kind).or_default() += entry.count;
        }
        for (kind, count) in by_kind {
            let [m, n] = ep(e);
            o.sample("barrage_failures_total", &[m, n, ("kind", kind)], count);
        }
    }

    if eps.iter().any(|e| e.goodput) {
        let name = "barrage_good_requests_total";
        o.family(
            name,
            "counter",
            "Requests that succeeded and met every goodput objective of their task, per endpoint with objectives.",
        );
        for e in eps.iter().filter(|e| e.goodput) {
            o.sample(name, &ep(e), e.stats.counts.good);
        }
    }

    o.family(
        "barrage_streams_started_total",
        "counter",
        "SSE streams started (response headers of a stream received).",
    );
    o.sample(
        "barrage_streams_started_total",
        &[],
        eps.iter().map(|e| e.stats.counts.streams_started).sum::<u64>(),
    );
    o.family(
        "barrage_dropped_iterations_total",
        "counter",
        "Open model: arrivals not started because the in-flight cap was reached.",
    );
    o.sample("barrage_dropped_iterations_total", &[], snap.dropped_iterations);
}

/// The gauge families: users, streams, workers, run time.
fn gauges(o: &mut Out, snap: &Snapshot) {
    o.family(
        "barrage_users",
        "gauge",
        "Virtual users running: the sum of each connected worker's latest heartbeat.",
    );
    o.sample("barrage_users", &[], snap.users);
    o.family(
        "barrage_active_streams",
        "gauge",
        "Open SSE streams: time-averaged over the newest complete second of the timeline, summed over workers.",
    );
    o.sample("barrage_active_streams", &[], float(snap.active_streams));
    o.family(
        "barrage_workers",
        "gauge",
        "Workers by state: connected (in the run) or lost.",
    );
    o.sample("barrage_workers", &[("state", "connected")], snap.workers_connected);
    o.sample("barrage_workers", &[("state", "lost")], snap.workers_lost);
    o.family(
        "barrage_run_elapsed_seconds",
        "gauge",
        "Seconds since the run started (0 before it starts).",
    );
    o.sample("barrage_run_elapsed_seconds", &[], float(snap.elapsed.as_secs_f64()));
}

/// The histogram families: response time for every endpoint, TTFE for SSE ones.
fn histograms(o: &mut Out, eps: &[EndpointSnapshot]) {
    for (name, help, metric, only_sse) in [
        (
            "barrage_response_time_seconds",
            "Request start to the full response (for SSE, the end of the stream).",
            Metric::ResponseTime,
            false,
        ),
        (
            "barrage_ttfe_seconds",
            "Time to the first event that is not a ping, SSE endpoints.",
            Metric::Ttfe,
            true,
        ),
    ] {
        o.family(name, "histogram", help);
        for e in eps.iter().filter(|e| !only_sse || e.kind == TaskKindTag::Sse) {
            let (counts, total, sum) = match e.stats.histogram(metric) {
                Some(h) => buckets(h),
                None => ([0; BOUNDS_US.len()], 0, 0.0),
            };
            let [m, n] = ep(e);
            let bucket = format!("{name}_bucket");
            for (bound, count) in BOUNDS_S.iter().zip(counts) {
                o.sample(&bucket, &[m, n, ("le", &float(*bound))], count);
            }
            o.sample(&bucket, &[m, n, ("le", "+Inf")], total);
            o.sample(&format!("{name}_sum"), &[m, n], float(sum));
            o.sample(&format!("{name}_count"), &[m, n], total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::metrics::FailureKind;
    use barrage_common::metrics::new_histogram;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label("plain /v1/x"), "plain /v1/x");
        assert_eq!(escape_label(r#"a\b"#), r#"a\\b"#);
        assert_eq!(escape_label(r#"say "hi""#), r#"say \"hi\""#);
        assert_eq!(escape_label("two\nlines"), r"two\nlines");
        assert_eq!(escape_label("\\\"\n"), r#"\\\"\n"#);
        assert_eq!(escape_label("naïve ✓"), "naïve ✓", "UTF-8 passes as is");
        assert_eq!(
            labels(&[("method", "POST"), ("name", "a \"b\"\n")]),
            r#"{method="POST",name="a \"b\"\n"}"#
        );
    }

    #[test]
    fn buckets_match_count_between_and_are_cumulative() {
        let mut h = new_histogram();
        // Around every bound, and far beyond the last.
        for us in [
            1, 4_999, 5_000, 5_001, 5_003, 9_990, 10_000, 24_000, 99_999, 100_000, 100_100,
        ] {
            h.record(us).unwrap();
        }
        h.record_n(1_000_000, 7).unwrap();
        h.record(59_999_000).unwrap();
        h.record(60_100_000).unwrap();
        h.record(3_600_000_000).unwrap();
        let (counts, total, sum) = buckets(&h);
        for (bound, count) in BOUNDS_US.iter().zip(counts) {
            assert_eq!(count, h.count_between(0, *bound), "le {bound}");
        }
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(total, h.len());
        assert_eq!(
            counts[0], 5,
            "1, 4999 and the HDR bucket 5000..=5003 (5000, 5001, 5003)"
        );
        assert_eq!(counts[BOUNDS_US.len() - 1], total - 2, "60.1 s and 1 h are above 60 s");
        assert!((sum - h.mean() * h.len() as f64 / 1e6).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn every_family_has_help_and_type_and_a_histogram_ends_at_its_count() {
        let mut stats = EndpointStats {
            counts: barrage_common::metrics::Counts {
                requests: 3,
                events: 12,
                streams_started: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        for ms in [3, 40, 700] {
            stats.record(Metric::ResponseTime, ms * 1000);
        }
        stats.record(Metric::Ttfe, 2000);
        stats.fail(FailureKind::HttpStatus, "429", || "429".into());
        stats.fail(FailureKind::HttpStatus, "500", || "500".into());
        stats.fail(FailureKind::Io, "reset", || "reset".into());
        let mut snap = Snapshot {
            elapsed: Duration::from_millis(2500),
            users: 4,
            workers_connected: 2,
            workers_lost: 1,
            active_streams: 1.5,
            dropped_iterations: 6,
            endpoints: vec![EndpointSnapshot {
                method: "POST".into(),
                name: "/v1/workflows/run \"x\"".into(),
                kind: TaskKindTag::Sse,
                stats,
                goodput: false,
            }],
        };
        let text = render_snapshot(&snap);
        let ep = r#"method="POST",name="/v1/workflows/run \"x\"""#;
        for line in [
            format!("barrage_requests_total{{{ep}}} 3"),
            format!("barrage_failures_total{{{ep},kind=\"http_status\"}} 2"),
            format!("barrage_failures_total{{{ep},kind=\"io\"}} 1"),
            format!("barrage_status_429_total{{{ep}}} 1"),
            format!("barrage_events_total{{{ep}}} 12"),
            "barrage_streams_started_total 3".into(),
            "barrage_dropped_iterations_total 6".into(),
            "barrage_users 4".into(),
            "barrage_active_streams 1.5".into(),
            "barrage_workers{state=\"connected\"} 2".into(),
            "barrage_workers{state=\"lost\"} 1".into(),
            "barrage_run_elapsed_seconds 2.5".into(),
            format!("barrage_response_time_seconds_bucket{{{ep},le=\"0.005\"}} 1"),
            format!("barrage_response_time_seconds_bucket{{{ep},le=\"0.05\"}} 2"),
            format!("barrage_response_time_seconds_bucket{{{ep},le=\"1\"}} 3"),
            format!("barrage_response_time_seconds_bucket{{{ep},le=\"+Inf\"}} 3"),
            format!("barrage_response_time_seconds_count{{{ep}}} 3"),
            format!("barrage_ttfe_seconds_bucket{{{ep},le=\"0.005\"}} 1"),
            format!("barrage_ttfe_seconds_count{{{ep}}} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(
            !text.contains("barrage_good_requests_total"),
            "no objectives: no family"
        );
        // A row with goodput objectives gets its good requests.
        snap.endpoints[0].goodput = true;
        snap.endpoints[0].stats.counts.good = 1;
        let good = render_snapshot(&snap);
        assert!(
            good.lines()
                .any(|l| l == format!("barrage_good_requests_total{{{ep}}} 1")),
            "{good}"
        );
        // Each family's HELP and TYPE come once, before its samples.
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_string()), "{name} twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| seen.contains(*f)))
                    .unwrap_or(name);
                assert!(seen.contains(family), "{name} before its TYPE");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn active_streams_come_from_the_newest_complete_second_and_counters_from_totals() {
        let mut agg = Aggregator::new(1);
        for at in 0..6i64 {
            let mut s = EndpointStats {
                counts: barrage_common::metrics::Counts {
                    requests: 2,
                    ..Default::default()
                },
                ..Default::default()
            };
            s.record(Metric::ResponseTime, 20_000);
            s.record(Metric::ResponseTime, 200_000);
            let mut r = crate::aggregate::testing::one_second(1, at as u64 + 1, at, "/x", TaskKindTag::Http, &s);
            r.active_streams = Some(barrage_proto::v1::Gauge {
                last: at,
                max: at,
                time_avg: at as f64,
            });
            r.dropped_iterations = 1;
            agg.merge(&r);
        }
        let mut snap = Snapshot {
            elapsed: Duration::from_millis(5_500),
            ..Default::default()
        };
        let rows = snap.read_aggregator(&agg);
        snap.set_endpoints(rows);
        assert_eq!(snap.active_streams, 3.0, "second 3: two behind the run clock");
        assert_eq!(snap.dropped_iterations, 6);
        let text = render_snapshot(&snap);
        for line in [
            r#"barrage_requests_total{method="POST",name="/x"} 12"#,
            r#"barrage_response_time_seconds_bucket{method="POST",name="/x",le="0.025"} 6"#,
            r#"barrage_response_time_seconds_bucket{method="POST",name="/x",le="0.25"} 12"#,
            r#"barrage_response_time_seconds_count{method="POST",name="/x"} 12"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(!text.contains("barrage_ttfe_seconds_bucket"), "no TTFE series for HTTP");
        // Before the first complete second there is nothing to show yet.
        snap.elapsed = Duration::from_millis(1_500);
        snap.read_aggregator(&agg);
        assert_eq!(snap.active_streams, 0.0);
    }
}
