//! `GET /metrics`: the Prometheus exposition of a running test, scraped from a live
//! in-process cluster and parsed here, checked against the mock's ground truth.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

/// One GET with extra header lines; returns (status, head, body).
async fn get(addr: SocketAddr, path: &str, header: &str) -> (u16, String, String) {
    http(addr, "GET", path, header, "").await
}

async fn post(addr: SocketAddr, path: &str, token: &str) -> u16 {
    http(addr, "POST", path, &token_header(Some(token)), "").await.0
}

type Labels = BTreeMap<String, String>;

/// A parsed exposition: HELP and TYPE per family, and every sample.
#[derive(Debug, Default)]
struct Scrape {
    help: HashMap<String, String>,
    types: HashMap<String, String>,
    samples: Vec<(String, Labels, f64)>,
}

impl Scrape {
    /// Sum of a metric's samples whose labels include `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && with.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    fn value(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let mut found = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && l.len() == with.len())
            .filter(|(_, l, _)| with.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)));
        let first = found.next().map(|(_, _, v)| *v);
        assert!(found.next().is_none(), "{name} {with:?} appears twice");
        first
    }

    /// The family a sample name belongs to (a histogram's `_bucket`, `_sum`, `_count`).
    fn family<'a>(&self, name: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(f) = name.strip_suffix(suffix)
                && self.types.get(f).is_some_and(|t| t == "histogram")
            {
                return f;
            }
        }
        name
    }
}

/// A small parser of the text format 0.0.4: comments, `name{labels} value` lines with
/// escaped label values. Panics on anything it does not understand.
fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(s.help.insert(name.into(), help.into()).is_none(), "HELP {name} twice");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(s.types.insert(name.into(), kind.into()).is_none(), "TYPE {name} twice");
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(r) => parse_labels(r, line),
            None => (Labels::new(), &line[name_end..]),
        };
        let value = rest.trim_start().split(' ').next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v} in {line}")),
        };
        let family = s.family(name);
        assert!(s.types.contains_key(family), "{name} before its TYPE line");
        s.samples.push((name.to_string(), labels, value));
    }
    s
}

/// The labels after a `{`, and the rest of the line after the `}`.
fn parse_labels<'a>(r: &'a str, line: &str) -> (Labels, &'a str) {
    let mut labels = Labels::new();
    let mut it = r.char_indices();
    loop {
        let mut key = String::new();
        loop {
            match it.next().unwrap_or_else(|| panic!("unterminated labels in {line}")) {
                (_, '=') => break,
                (i, '}') if key.is_empty() => return (labels, &r[i + 1..]),
                (_, c) if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                (_, c) => panic!("{c:?} in a label name in {line}"),
            }
        }
        assert_eq!(it.next().map(|(_, c)| c), Some('"'), "{line}");
        let mut value = String::new();
        loop {
            match it.next().unwrap().1 {
                '\\' => match it.next().unwrap().1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("bad escape \\{other} in {line}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        assert!(labels.insert(key, value).is_none(), "label twice in {line}");
        match it.next() {
            Some((_, ',')) => {}
            Some((i, '}')) => return (labels, &r[i + 1..]),
            other => panic!("{other:?} after a label in {line}"),
        }
    }
}

async fn scrape(web: SocketAddr) -> Scrape {
    let (status, head, body) = get(web, "/metrics", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    parse(&body)
}

const COUNTERS: [&str; 7] = [
    "barrage_requests_total",
    "barrage_failures_total",
    "barrage_events_total",
    "barrage_streams_started_total",
    "barrage_bytes_received_total",
    "barrage_dropped_iterations_total",
    "barrage_status_429_total",
];
const GAUGES: [&str; 4] = [
    "barrage_users",
    "barrage_active_streams",
    "barrage_workers",
    "barrage_run_elapsed_seconds",
];
const HISTOGRAMS: [&str; 2] = ["barrage_response_time_seconds", "barrage_ttfe_seconds"];
const USERS: u32 = 4;
const WORKFLOW: &str = "/v1/workflows/run";
const CHAT: &str = "/v1/chat-messages (blocking)";

/// What every scrape must hold on its own.
fn check_one(s: &Scrape) {
    for (names, kind) in [
        (&COUNTERS[..], "counter"),
        (&GAUGES[..], "gauge"),
        (&HISTOGRAMS[..], "histogram"),
    ] {
        for name in names {
            assert_eq!(s.types.get(*name).map(String::as_str), Some(kind), "TYPE of {name}");
            assert!(s.help.get(*name).is_some_and(|h| !h.is_empty()), "HELP of {name}");
        }
    }
    // Histograms: per series, buckets cumulative in `le` order, `+Inf` == `_count`.
    for h in HISTOGRAMS {
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for (n, l, v) in &s.samples {
            if *n == format!("{h}_bucket") {
                let mut key = l.clone();
                let le = key.remove("le").expect("a bucket without le");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                series.entry(key).or_default().push((le, *v));
            }
        }
        for (labels, mut buckets) in series {
            let with: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{h} {labels:?} not cumulative: {buckets:?}"
            );
            let (le, inf) = *buckets.last().unwrap();
            assert!(le.is_infinite(), "{h} {labels:?} has no +Inf bucket");
            let count = s.value(&format!("{h}_count"), &with).expect("a _count");
            assert_eq!(inf, count, "{h} {labels:?}: +Inf bucket vs _count");
            let sum = s.value(&format!("{h}_sum"), &with).expect("a _sum");
            assert!(sum >= 0.0 && (count > 0.0 || sum == 0.0), "{h} {labels:?}: sum {sum}");
        }
    }
    // Response times: every request records one, in the same update as its count, and
    // a scrape reads both from one aggregator snapshot; so `_count` equals
    // `requests_total` for each endpoint. (The only exception, requests cut short when
    // the run stops, counted without a time, cannot happen before the stop.)
    for (n, l, requests) in &s.samples {
        if n == "barrage_requests_total" {
            let with = [("method", l["method"].as_str()), ("name", l["name"].as_str())];
            let count = s.value("barrage_response_time_seconds_count", &with);
            assert_eq!(count, Some(*requests), "response-time count of {l:?}");
        }
    }
    // TTFE is there for the SSE endpoint only, at most one per stream started (the
    // stream's start is recorded when its headers arrive, its TTFE when it ends).
    let ttfe = |name: &str| s.value("barrage_ttfe_seconds_count", &[("method", "POST"), ("name", name)]);
    assert!(ttfe(CHAT).is_none(), "a blocking endpoint has no TTFE series");
    if let Some(n) = ttfe(WORKFLOW) {
        assert!(n <= s.sum("barrage_streams_started_total", &[]), "TTFE {n}");
    }
    assert_eq!(s.value("barrage_workers", &[("state", "connected")]), Some(1.0));
    assert_eq!(s.value("barrage_workers", &[("state", "lost")]), Some(0.0));
    let users = s.value("barrage_users", &[]).unwrap();
    assert!((0.0..=f64::from(USERS)).contains(&users), "users {users}");
    assert!(s.value("barrage_active_streams", &[]).unwrap() >= 0.0);
    assert_eq!(
        s.value("barrage_dropped_iterations_total", &[]),
        Some(0.0),
        "closed model"
    );
}

/// Counters (histogram buckets, sums and counts included) never go down between two
/// scrapes, and no series disappears.
fn check_monotonic(before: &Scrape, after: &Scrape) {
    let later: HashMap<(&String, &Labels), f64> = after.samples.iter().map(|(n, l, v)| ((n, l), *v)).collect();
    for (n, l, v) in &before.samples {
        let kind = before.types[before.family(n)].as_str();
        if kind == "gauge" {
            continue;
        }
        let now = later.get(&(n, l)).unwrap_or_else(|| panic!("{n} {l:?} disappeared"));
        assert!(now >= v, "{n} {l:?} went down: {v} -> {now}");
    }
}

/// A live run scraped several times, then stopped from the API: every scrape is well
/// formed, counters only grow, and what we expose never exceeds what the mock received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_running_test_are_well_formed_monotonic_and_within_ground_truth() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    // Four users: the scenario's 3:1 class mix gives each endpoint users of its own.
    let load = load_args(mock.addr, USERS, 100.0, Duration::from_secs(60));
    let mut s = setup(&workflow_scenario("constant(0.05)"), &load, 1);
    let web = with_web(&mut s, "scrape-then-stop", false);
    let m = master(s).await;
    let w = worker(m.addr, "w");
    let both = || {
        let agg = m.cluster.aggregator();
        agg.endpoints.len() == 2 && agg.endpoints.values().all(|e| e.totals.counters.counts.requests > 0)
    };
    assert!(
        eventually(Duration::from_secs(10), both).await,
        "both endpoints see requests"
    );

    let mut scrapes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = scrape(web).await;
        // Ground truth read after the scrape: the mock counts a request on arrival,
        // before Barrage can finish and report it, so ours can only be behind.
        let truth = mock.state.ground_truth();
        check_one(&s);
        let requests = s.sum("barrage_requests_total", &[]);
        assert!(requests > 0.0);
        assert!(
            requests <= truth.requests as f64,
            "{requests} > the mock's {}",
            truth.requests
        );
        let of = |name: &'static str| [("method", "POST"), ("name", name)];
        assert!(s.sum("barrage_requests_total", &of(WORKFLOW)) <= truth.workflow_runs as f64);
        assert!(s.sum("barrage_requests_total", &of(CHAT)) <= truth.chat_messages as f64);
        assert!(s.sum("barrage_events_total", &of(WORKFLOW)) <= truth.events_sent as f64);
        assert!(s.sum("barrage_streams_started_total", &[]) <= truth.streams_started as f64);
        assert_eq!(s.sum("barrage_failures_total", &[]), 0.0, "the mock injects no faults");
        if let Some(prev) = scrapes.last() {
            check_monotonic(prev, &s);
        }
        scrapes.push(s);
        // Enough once the heartbeats show every user and the counters moved on.
        let last = scrapes.last().unwrap();
        let moved = scrapes.len() >= 2
            && last.sum("barrage_requests_total", &[]) > scrapes[0].sum("barrage_requests_total", &[]);
        if moved && last.value("barrage_users", &[]) == Some(f64::from(USERS)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "users {:?} after {} scrapes",
            last.value("barrage_users", &[]),
            scrapes.len()
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (first, last) = (&scrapes[0], scrapes.last().unwrap());
    assert!(
        last.value("barrage_run_elapsed_seconds", &[]) > first.value("barrage_run_elapsed_seconds", &[]),
        "the run clock moves"
    );
    assert!(last.sum("barrage_ttfe_seconds_count", &[]) > 0.0);
    assert!(last.sum("barrage_events_total", &[]) > 0.0);

    assert_eq!(post(web, "/api/stop", "scrape-then-stop").await, 202);
    let r = tokio::time::timeout(Duration::from_secs(20), m.run)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .report;
    let _ = w.await;
    // The final report carries on from the last scrape.
    for e in &r.endpoints {
        let with = [("method", e.method.as_str()), ("name", e.name.as_str())];
        assert!(
            e.requests as f64 >= last.sum("barrage_requests_total", &with),
            "{}",
            e.name
        );
        assert!(e.events as f64 >= last.sum("barrage_events_total", &with), "{}", e.name);
    }
    assert_eq!(r.aggregated.requests, mock.state.ground_truth().requests);
}

/// The read rule of /api/stats: with --web-auth a scrape needs the token, as the
/// X-Barrage-Token header or as Prometheus's `Authorization: Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_web_auth_a_scrape_needs_the_token() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 1, 100.0, Duration::from_secs(30));
    let mut s = setup(&workflow_scenario("constant(0.05)"), &load, 1);
    let web = with_web(&mut s, "tok", true);
    let m = master(s).await;
    assert!(eventually(Duration::from_secs(5), || std::net::TcpStream::connect(web).is_ok()).await);
    assert_eq!(get(web, "/metrics", "").await.0, 401);
    assert_eq!(get(web, "/metrics", "authorization: Bearer nope\r\n").await.0, 401);
    assert_eq!(get(web, "/metrics", "x-barrage-token: nope\r\n").await.0, 401);
    let (status, _, body) = get(web, "/metrics", "x-barrage-token: tok\r\n").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(web, "/metrics", "authorization: Bearer tok\r\n").await;
    assert_eq!(status, 200, "{body}");
    // Before any worker: every family is there, with no endpoint series yet.
    let s = parse(&body);
    assert_eq!(s.value("barrage_workers", &[("state", "connected")]), Some(0.0));
    assert_eq!(s.sum("barrage_requests_total", &[]), 0.0);
    assert!(HISTOGRAMS.iter().all(|h| s.types.contains_key(*h)));
    m.run.abort();
}

/// Debian's Prometheus server and its promtool.
fn prometheus() -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    static TOOL: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    let server = TOOL
        .get_or_init(|| crate::support::tools::debian_tool("prometheus", &["/usr/bin/prometheus"]))
        .clone()?;
    Ok((server.clone(), server.with_file_name("promtool")))
}

/// A URL query value, percent-encoded.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every PromQL expression of the Grafana dashboard, its `$endpoint` variable set to
/// all endpoints.
fn dashboard_queries() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/barrage-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                    out.push(e.replace("$endpoint", ".*"));
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    out
}

/// Kills the child when the test ends, however it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus server (Debian's package, installed by the test when missing)
/// scrapes a running master: `promtool check metrics` accepts the exposition, the
/// target is up, and every query of `deploy/grafana/barrage-dashboard.json` answers
/// with data, as its panels would (the failure panel excepted: this run has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_master_and_fills_the_dashboard() {
    let test = "a_real_prometheus_scrapes_the_master_and_fills_the_dashboard";
    let Some((server, promtool)) = crate::support::tools::required("prometheus test", test, prometheus()) else {
        return;
    };
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let (m, web, w) = web_run(mock.addr, 3, Duration::from_secs(60), "tok").await;

    // Prometheus's own linter on one scrape.
    let (_, _, body) = get(web, "/metrics", "").await;
    let mut lint = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let lint = lint.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&lint.stdout).to_string() + &String::from_utf8_lossy(&lint.stderr);
    assert!(lint.status.success() && said.trim().is_empty(), "promtool: {said}");

    // The server, scraping every second.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: barrage\n    static_configs:\n      - targets: [\"{web}\"]\n"),
    )
    .unwrap();
    let api = free_addr();
    let _server = Reaped(
        std::process::Command::new(&server)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={api}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = |q: String| async move {
        let (status, _, body) = http(api, "GET", &format!("/api/v1/query?query={}", encode(&q)), "", "").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (status, v["data"]["result"].as_array().map_or(0, Vec::len), body)
    };
    assert!(
        eventually(Duration::from_secs(20), || std::net::TcpStream::connect(api).is_ok()).await,
        "prometheus listens"
    );
    // Every panel's query has data once a few scrapes are in (rates need two).
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut empty: Vec<String> = queries.clone();
    while !empty.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut still = Vec::new();
        for q in empty {
            let (status, series, body) = query(q.clone()).await;
            // 503 while its storage starts; anything else is a bad query.
            assert!(status == 200 || status == 503, "{q}: {status} {body}");
            if (status != 200 || series == 0) && !q.contains("barrage_failures_total") {
                still.push(q);
            }
        }
        empty = still;
    }
    assert!(empty.is_empty(), "dashboard queries without data after 30 s: {empty:?}");
    let (_, _, body) = query("sum(barrage_requests_total)".into()).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let scraped: f64 = v["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        scraped > 0.0 && scraped <= mock.state.ground_truth().requests as f64,
        "{scraped}"
    );

    assert_eq!(post(web, "/api/stop", "tok").await, 202);
    let _ = m.run.await;
    let _ = w.await;
}
