//! Goodput against injected truth: a target written here answers SSE streams, slows a
//! known third of them (a late first event, long gaps, or a 500), and logs every
//! request it answered to its end with what it did. Our good count must equal the
//! target's count of answered, unslowed, successful requests exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::support::browser;
use crate::support::*;

/// What the target does with one request: its status, when it sends its first chunk
/// and the gaps between the next ones, and whether it counts as slowed.
#[derive(Clone)]
struct Answer {
    status: u16,
    first_ms: u64,
    gaps_ms: Vec<u64>,
    slowed: bool,
}

/// The target's log: every request it answered to the end, `slowed` or not, by status.
#[derive(Default)]
struct Log {
    next: AtomicU64,
    answered: Mutex<Vec<(u16, bool)>>,
}

impl Log {
    /// Requests answered with a 200 and not slowed: what should be good.
    fn fast_ok(&self) -> u64 {
        let answered = self.answered.lock().unwrap();
        answered.iter().filter(|(s, slowed)| *s == 200 && !slowed).count() as u64
    }

    fn count(&self, pick: impl Fn(u16, bool) -> bool) -> u64 {
        let answered = self.answered.lock().unwrap();
        answered.iter().filter(|(s, slowed)| pick(*s, *slowed)).count() as u64
    }
}

type Plan = Arc<dyn Fn(u64) -> Answer + Send + Sync>;

/// One chunk of text, as an SSE event the worker reads as a text chunk.
const CHUNK: &[u8] = b"data: {\"event\": \"message\", \"answer\": \"x\"}\n\n";

/// Serves `POST /stream`: request n (from 0) is answered as `plan(n)` says, and logged
/// once its last byte is handed to the connection.
async fn target(plan: Plan) -> (std::net::SocketAddr, Arc<Log>) {
    let log = Arc::new(Log::default());
    let handler = |State((plan, log)): State<(Plan, Arc<Log>)>| async move {
        let n = log.next.fetch_add(1, Ordering::SeqCst);
        let a = plan(n);
        if a.status != 200 {
            log.answered.lock().unwrap().push((a.status, a.slowed));
            return Response::builder()
                .status(StatusCode::from_u16(a.status).unwrap())
                .body(Body::from("{\"code\": \"internal_server_error\"}"))
                .unwrap();
        }
        let delays: Vec<u64> = std::iter::once(a.first_ms).chain(a.gaps_ms.iter().copied()).collect();
        let stream = futures::stream::unfold((0usize, delays, log, a), |(i, delays, log, a)| async move {
            if i == delays.len() {
                log.answered.lock().unwrap().push((200, a.slowed));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(delays[i])).await;
            Some((
                Ok::<_, std::io::Error>(Bytes::from_static(CHUNK)),
                (i + 1, delays, log, a),
            ))
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap()
    };
    let app = axum::Router::new()
        .route("/stream", axum::routing::post(handler))
        .with_state((plan, log.clone()));
    (serve(app).await, log)
}

/// A scenario of one SSE task with these goodput objectives.
fn scenario(goodput: &str) -> String {
    format!(
        r#"
[[users]]
name = "U"
wait = "constant(0.01)"
[[users.tasks]]
name = "stream"
method = "POST"
path = "/stream"
kind = "sse"
goodput = {{ {goodput} }}
"#
    )
}

/// Runs `scenario` (2 s unless `adjust` changes its flags) with 4 users against a target answering by `plan`; the
/// outcome and the target's log.
async fn run(
    scenario: &str,
    plan: Plan,
    adjust: impl FnOnce(&mut barrage_master::cli::LoadArgs),
) -> (barrage_master::serve::Outcome, Arc<Log>) {
    let (addr, log) = target(plan).await;
    let mut load = load_args(addr, 4, 100.0, Duration::from_secs(2));
    adjust(&mut load);
    let m = master(setup(scenario, &load, 1)).await;
    let w = worker(m.addr, "w");
    let out = m.run.await.unwrap().unwrap();
    let _ = w.await;
    (out, log)
}

/// Every third request slowed as `slow` says, the others fast (20 ms to the first
/// chunk, gaps of 10 ms).
fn every_third(slow: Answer) -> Plan {
    Arc::new(move |n| {
        if n % 3 == 0 {
            slow.clone()
        } else {
            Answer {
                status: 200,
                first_ms: 20,
                gaps_ms: vec![10, 10],
                slowed: false,
            }
        }
    })
}

/// Checks the report against the target's log: every answered request counted, the
/// good ones exactly the fast successful ones; returns (good, requests).
fn check(out: &barrage_master::serve::Outcome, log: &Log) -> (u64, u64) {
    let r = &out.report;
    let row = r.endpoints.iter().find(|e| e.name == "stream").unwrap();
    let g = row.goodput.expect("a row with objectives shows goodput");
    let answered = log.count(|_, _| true);
    assert_eq!(row.requests, answered, "every request answered to its end, counted");
    assert!(log.count(|_, slowed| slowed) >= 3, "too few slowed requests to tell");
    assert_eq!(g.good, log.fast_ok(), "good = the target's fast successful answers");
    assert!((g.share - g.good as f64 / row.requests as f64).abs() < 1e-12);
    let aggregated = r.aggregated.goodput.unwrap();
    assert_eq!(aggregated.good, g.good);
    // Over time: the seconds' good requests add up to the total.
    let per_second: u64 = r.timeline.iter().filter_map(|p| p.good_per_s).sum();
    assert_eq!(per_second, g.good);
    (g.good, row.requests)
}

/// A late first event (400 ms against `ttfe = "150ms"`) is not good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_first_event_is_not_good() {
    let slow = Answer {
        status: 200,
        first_ms: 400,
        gaps_ms: vec![10, 10],
        slowed: true,
    };
    let (out, log) = run(&scenario("ttfe = \"150ms\""), every_third(slow), |_| {}).await;
    let (good, requests) = check(&out, &log);
    eprintln!("ttfe: {good} good of {requests} (target: {} fast)", log.fast_ok());
    // The JSON report carries it within the schema, and a saved file re-read
    // (`barrage report`) recomputes the same goodput from its merged data.
    let json = barrage_master::report::json::to_json(&out.report);
    assert_eq!(json["endpoints"][0]["goodput"]["good"], good);
    crate::support::assert_schema(&json);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    barrage_master::report::json::write(&out.report, &path).unwrap();
    let again = barrage_master::report::json::read(&path).unwrap();
    assert_eq!(again.endpoints[0].goodput, out.report.endpoints[0].goodput);
    assert_eq!(again.aggregated.goodput, out.report.aggregated.goodput);
    let text = barrage_master::report::console::render_final(&again);
    assert!(text.contains("Goodput (successful requests"), "{text}");
}

/// A stream that takes 320 ms in all against `response_time = "200ms"` is not good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_is_not_good() {
    let slow = Answer {
        status: 200,
        first_ms: 20,
        gaps_ms: vec![100, 100, 100],
        slowed: true,
    };
    // 4 s with the CSV history, whose last rows cover complete seconds.
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("run");
    let csv = prefix.clone();
    let (out, log) = run(&scenario("response_time = \"200ms\""), every_third(slow), |load| {
        load.run_time = Some(Duration::from_secs(4));
        load.csv = Some(csv);
    })
    .await;
    let (good, requests) = check(&out, &log);
    eprintln!(
        "response_time: {good} good of {requests} (target: {} fast)",
        log.fast_ok()
    );
    // The history ends with Good/s: the window's good requests per second, at most
    // its Requests/s and, with a third slow, below it.
    let history = std::fs::read_to_string(dir.path().join("run_stats_history.csv")).unwrap();
    let mut lines = history.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.last(), Some(&"Good/s"), "{history}");
    let last: Vec<&str> = lines.last().unwrap().split(',').collect();
    assert_eq!(last.len(), header.len(), "{history}");
    let (rps, good_s): (f64, f64) = (last[4].parse().unwrap(), last[last.len() - 1].parse().unwrap());
    assert!(good_s > 0.0 && good_s < rps, "{history}");
}

/// One gap of 300 ms among three (the p95 of three gaps is the largest) against
/// `chunk_gap_p95 = "100ms"` is not good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_chunk_gap_is_not_good() {
    let slow = Answer {
        status: 200,
        first_ms: 20,
        gaps_ms: vec![10, 300, 10],
        slowed: true,
    };
    let (out, log) = run(&scenario("chunk_gap_p95 = \"100ms\""), every_third(slow), |_| {}).await;
    let (good, requests) = check(&out, &log);
    eprintln!(
        "chunk_gap_p95: {good} good of {requests} (target: {} fast)",
        log.fast_ok()
    );
}

/// A 500, however fast, is never good; the failures are the target's 500s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_never_good() {
    let failing = Answer {
        status: 500,
        first_ms: 0,
        gaps_ms: Vec::new(),
        slowed: true,
    };
    let (out, log) = run(&scenario("ttfe = \"150ms\""), every_third(failing), |_| {}).await;
    let (good, requests) = check(&out, &log);
    let row = out.report.endpoints.iter().find(|e| e.name == "stream").unwrap();
    assert_eq!(row.failures, log.count(|s, _| s == 500));
    eprintln!("failures: {good} good of {requests}, {} failed", row.failures);
}

/// `good_rate > 90%` fails the run (exit code 1) when a third of the first events are
/// late; `good_rate > 50%` holds on the same run, and its observed value is the
/// target's share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_rate_threshold_fails_the_run() {
    let slow = Answer {
        status: 200,
        first_ms: 400,
        gaps_ms: vec![10],
        slowed: true,
    };
    let thresholds = ["good_rate > 90%", "good_rate > 50%", "goodput > 0"];
    let (out, log) = run(&scenario("ttfe = \"150ms\""), every_third(slow), |load| {
        load.threshold = thresholds.map(String::from).to_vec();
    })
    .await;
    let (good, requests) = check(&out, &log);
    let verdicts: Vec<(&str, bool)> = out
        .report
        .thresholds
        .iter()
        .map(|t| (t.threshold.as_str(), t.passed))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("good_rate > 90%", false),
            ("good_rate > 50%", true),
            ("goodput > 0", true)
        ]
    );
    assert_eq!(out.report.thresholds[0].observed, Some(good as f64 / requests as f64));
    assert_eq!(out.report.aggregated.failures, 0, "only the threshold fails the run");
    assert_eq!(out.exit_code, 1);
}

/// A row without objectives shows no goodput (not 100 %), and neither does Aggregated
/// when no row has any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_without_objectives_has_no_goodput() {
    let plan = every_third(Answer {
        status: 200,
        first_ms: 20,
        gaps_ms: vec![],
        slowed: true,
    });
    let text = scenario("ttfe = \"1s\"").replace("goodput = { ttfe = \"1s\" }\n", "");
    let (addr, _log) = target(plan).await;
    let load = load_args(addr, 2, 100.0, Duration::from_secs(1));
    let r = run_with_one_worker(setup(&text, &load, 1)).await;
    assert!(r.aggregated.requests > 0);
    assert!(r.endpoints.iter().all(|e| e.goodput.is_none()));
    assert!(r.aggregated.goodput.is_none());
    assert!(r.timeline.iter().all(|p| p.good_per_s.is_none()));
}

/// The HTML report and the live web UI show goodput: the table's figures are the
/// report's, and the goodput chart has its lines drawn. Screenshots:
/// `target/browser-artifacts/goodput_*.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_and_web_ui_show_goodput() {
    let slow = Answer {
        status: 200,
        first_ms: 400,
        gaps_ms: vec![10],
        slowed: true,
    };
    let (addr, log) = target(every_third(slow)).await;
    // Chromium starts before the run (a start can wait for a browser slot while other
    // tests hold them), so the run's 10 s are for reading the live page.
    let browser = tokio::task::spawn_blocking(|| browser::launch("goodput_webui"))
        .await
        .unwrap();
    let load = load_args(addr, 4, 100.0, Duration::from_secs(10));
    let mut s = setup(&scenario("ttfe = \"150ms\""), &load, 1);
    let web = with_web(&mut s, "goodput-token", false);
    let m = master(s).await;
    let w = worker(m.addr, "w");
    assert!(
        eventually(Duration::from_secs(10), || m
            .cluster
            .aggregator()
            .aggregated()
            .counts
            .good
            > 0)
        .await
    );
    assert!(eventually(Duration::from_secs(10), || std::net::TcpStream::connect(web).is_ok()).await);
    let url = format!("http://{web}/");
    let live = tokio::task::spawn_blocking(move || live_page(browser, &url))
        .await
        .unwrap();
    let out = m.run.await.unwrap().unwrap();
    let _ = w.await;
    let r = &out.report;
    assert_eq!(r.aggregated.goodput.unwrap().good, log.fast_ok());
    if let Some(live) = live {
        // Live figures: some good requests, never more than the requests.
        let (good, requests) = (live["good"].as_u64().unwrap(), live["requests"].as_u64().unwrap());
        assert!(good > 0 && good <= requests, "{live}");
    }
    let json = barrage_master::report::json::to_json(r);
    let seen = tokio::task::spawn_blocking(move || html_page(&json)).await.unwrap();
    let Some(seen) = seen else { return };
    let g = r.aggregated.goodput.unwrap();
    assert_eq!(seen["good"].as_u64(), Some(g.good), "{seen}");
    assert_eq!(seen["requests"].as_u64(), Some(g.requests), "{seen}");
}

/// The goodput table's total row (good, requests) and whether its chart has lines.
const GOODPUT_JS: &str = r#"(() => {
  const total = document.querySelector('#goodput-table tfoot tr');
  const num = (c) => Number(total.querySelector(c).textContent.replace(/,/g, ''));
  const chart = document.querySelector('#chart-goodput');
  return {
    good: num('.c-good'),
    requests: num('.c-requests'),
    lines: chart ? Array.from(chart.querySelectorAll('path.bc-series')).filter((p) => /[LV]/.test(p.getAttribute('d') || '')).length : 0,
  };
})()"#;

/// The web UI during the run: the goodput section is there; None without a browser.
fn live_page(page: Option<browser::Page>, url: &str) -> Option<serde_json::Value> {
    let page = page?;
    page.goto(url);
    page.wait_for(
        "document.querySelector('#goodput-table tfoot tr') !== null && !document.getElementById('goodput').hidden",
        Duration::from_secs(20),
    );
    let seen = page.eval(GOODPUT_JS);
    page.screenshot();
    page.assert_no_problems();
    Some(seen)
}

/// The `--html` page of the finished run: its goodput table and chart.
fn html_page(report: &serde_json::Value) -> Option<serde_json::Value> {
    let page = browser::launch("goodput_html")?;
    let path = browser::artifacts_dir().join("goodput_html.html");
    barrage_master::report::html::write(report, &path).unwrap();
    page.goto_file(&path);
    page.wait_for(
        "document.querySelector('#goodput-table tfoot tr') !== null",
        Duration::from_secs(10),
    );
    page.wait_for(
        "document.querySelectorAll('#chart-goodput path.bc-series').length >= 2",
        Duration::from_secs(10),
    );
    let seen = page.eval(GOODPUT_JS);
    assert_eq!(seen["lines"], 2, "good/s and req/s drawn: {seen}");
    page.screenshot();
    page.assert_no_problems();
    Some(seen)
}
