//! `--html FILE`: the page of a real run opened in headless Chromium. Every chart has
//! data drawn, the tables hold the report's figures (read back from the DOM), nothing
//! is fetched, nothing throws, and a failure sample that tries to close the script
//! element is shown as text. Screenshots: `target/browser-artifacts/html_*.png`.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use barrage_master::report::{html, json::to_json};

use crate::support::browser::{self, Page};
use crate::support::*;

/// What the hostile endpoint answers: Dify's error envelope whose message tries to end
/// the page's data element and run a script of its own.
const HOSTILE: &str = "</script><script>window.pwned = 1</script><!--";

/// Streams and blocking chats against the mock, and a class whose endpoint answers 500
/// with [`HOSTILE`] (that message becomes the failure sample).
fn scenario(hostile: std::net::SocketAddr) -> String {
    workflow_scenario("constant(0.05)")
        + &format!(
            r#"
[[users]]
name = "Hostile"
weight = 1
wait = "constant(0.2)"
host = "http://{hostile}"
[[users.tasks]]
name = "/v1/hostile"
method = "POST"
path = "/v1/hostile"
body = "{{}}"
"#
        )
}

/// Writes `report` as `target/browser-artifacts/<name>.html` (kept beside its
/// screenshot, to open by hand) and opens it; None when the test is skipped.
fn open(name: &str, report: &Value) -> Option<Page> {
    let page = browser::launch(name)?;
    let path = browser::artifacts_dir().join(format!("{name}.html"));
    html::write(report, &path).unwrap();
    page.goto_file(&path);
    page.wait_for(
        "document.querySelector('#summary .cards') !== null",
        Duration::from_secs(10),
    );
    Some(page)
}

/// Each visible chart: its id, the number of drawn series paths with at least two
/// points (a line segment or a bar), and of point markers.
const CHARTS_JS: &str = r#"Array.from(document.querySelectorAll('.chart-card'))
  .filter((c) => !c.closest('section').hidden)
  .map((c) => ({
    id: c.id,
    svg: c.querySelector('svg') !== null,
    drawn: Array.from(c.querySelectorAll('path.bc-series'))
      .filter((p) => /[LV]/.test(p.getAttribute('d') || '')).length,
    markers: c.querySelectorAll('circle.bc-marker').length,
    empty: c.querySelector('.bc-empty') !== null,
  }))"#;

/// A table's body rows as {method, name, requests, failures} read from the cells.
fn rows_js(table: &str) -> String {
    format!(
        r#"Array.from(document.querySelectorAll('#{table} tbody tr, #{table} tfoot tr')).map((tr) => ({{
            method: tr.dataset.method || '',
            name: tr.dataset.name || tr.querySelector('.c-name').textContent,
            total: tr.classList.contains('total'),
            requests: Number(tr.querySelector('.c-requests').textContent.replace(/,/g, '')),
            failures: Number(tr.querySelector('.c-failures').textContent.replace(/,/g, '')),
        }}))"#
    )
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_of_a_real_run_shows_every_chart_and_the_reports_figures() {
    let mock = mock(sse_mock_config(20, 4, 10)).await;
    let hostile = serve(axum::Router::new().route(
        "/v1/hostile",
        post(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"code": "hostile", "message": HOSTILE})),
            )
        }),
    ))
    .await;
    let mut load = load_args(mock.addr, 6, 100.0, Duration::from_secs(3));
    // One threshold the hostile class fails, one every run passes.
    load.threshold = vec!["error_rate < 1%".into(), "p99(ttfe) < 60s".into()];
    let report = to_json(&run_with_one_worker(setup(&scenario(hostile), &load, 1)).await);
    let truth = mock.state.ground_truth();
    // The run is real: the mock saw requests and one sample carries the hostile text.
    assert!(truth.requests > 5, "{truth:?}");
    let samples: Vec<&str> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["sample"].as_str())
        .collect();
    assert!(samples.iter().any(|s| s.contains("</script>")), "{samples:?}");

    let report2 = report.clone();
    tokio::task::spawn_blocking(move || check_real_run_page(&report2))
        .await
        .unwrap();
}

fn check_real_run_page(report: &Value) {
    let Some(page) = open("html_real_run", report) else {
        return;
    };
    page.wait_for(
        "document.querySelectorAll('.chart-card svg').length >= 6",
        Duration::from_secs(10),
    );
    page.screenshot();
    page.assert_no_problems();
    assert_eq!(page.eval("document.querySelectorAll('.render-error').length"), json!(0));

    // Every chart of a run with streams is there and has data drawn.
    let charts = page.eval(CHARTS_JS);
    let ids: Vec<&str> = charts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let expected = vec![
        "chart-spectrum",
        "chart-users",
        "chart-rps",
        "chart-response-time",
        "chart-ttfe",
        "chart-streams",
        "chart-events",
    ];
    assert_eq!(ids, expected, "{charts:#}");
    for c in charts.as_array().unwrap() {
        assert!(c["svg"] == json!(true) && c["empty"] == json!(false), "{c}");
        assert!(as_u64(&c["drawn"]) >= 1, "nothing drawn: {c}");
    }

    check_spectrum(&page, report);

    // The request table: a row per endpoint with the report's counts, then Aggregated.
    let rows = page.eval(&rows_js("endpoints-table"));
    let rows = rows.as_array().unwrap();
    let endpoints = report["endpoints"].as_array().unwrap();
    assert_eq!(rows.len(), endpoints.len() + 1, "{rows:#?}");
    for (row, e) in rows.iter().zip(endpoints) {
        assert_eq!((&row["method"], &row["name"]), (&e["method"], &e["name"]));
        assert_eq!(
            (&row["requests"], &row["failures"]),
            (&e["requests"], &e["failures"]),
            "{row}"
        );
    }
    let total = rows.last().unwrap();
    assert_eq!(total["total"], json!(true));
    assert_eq!(total["requests"], report["aggregated"]["requests"]);
    assert_eq!(total["failures"], report["aggregated"]["failures"]);
    assert!(as_u64(&total["failures"]) > 0, "the hostile class fails");

    // SSE rows have their TTFE percentiles; the figure shown is the report's.
    let sse: Vec<&Value> = endpoints.iter().filter(|e| e["kind"] == "sse").collect();
    assert_eq!(sse.len(), 1);
    let ttfe_rows = page.eval("Array.from(document.querySelectorAll('#ttfe-table tbody tr')).map((tr) => tr.querySelector('.c-count').textContent)");
    assert_eq!(ttfe_rows, json!([format_count(as_u64(&sse[0]["ttfe_ms"]["count"]))]));

    // The hostile sample is text on the page, and its script never ran.
    assert_eq!(page.eval("typeof window.pwned"), json!("undefined"));
    let shown = page.eval("document.querySelector('#failures-table').textContent");
    assert!(shown.as_str().unwrap().contains(HOSTILE), "{shown}");
    assert_eq!(page.eval("document.querySelectorAll('script').length"), json!(4));

    // Each threshold with the report's observed value and verdict.
    let shown = page.eval(
        "Array.from(document.querySelectorAll('#thresholds-table tbody tr')).map((tr) => \
         [tr.querySelector('.c-threshold').textContent, tr.querySelector('.c-observed').textContent, \
          tr.querySelector('.c-verdict').textContent])",
    );
    let expected: Vec<Value> = report["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            json!([
                t["threshold"],
                t["shown"],
                if t["passed"] == json!(true) { "pass" } else { "FAIL" }
            ])
        })
        .collect();
    assert_eq!(shown, json!(expected));
    assert_eq!(
        page.eval("document.querySelector('.verdict').textContent"),
        json!("1 threshold failed")
    );

    // Parts without data are left out: no hunt, no drift under 30 s, no open model.
    for id in ["hunt", "drift", "arrivals"] {
        assert_eq!(
            page.eval(&format!("document.getElementById('{id}').hidden")),
            json!(true),
            "{id}"
        );
    }

    // Self-contained: the page fetched nothing but itself.
    assert_eq!(page.eval("performance.getEntriesByType('resource').length"), json!(0));
    let requests = page.requests();
    assert!(
        requests.len() == 1 && requests[0].starts_with("file://"),
        "{requests:?}"
    );
}

/// The names the page gives the spectrum's metrics.
fn metric_label(metric: &str) -> &'static str {
    match metric {
        "response_time" => "response time",
        "ttfe" => "TTFE",
        "ttft" => "TTFT",
        "time_to_headers" => "time to headers",
        "stream_duration" => "stream duration",
        "event_gap" => "event gap",
        "chunk_gap" => "chunk gap",
        "server_elapsed" => "server elapsed",
        "response_time_ok" => "response time (successes)",
        "queueing" => "queueing",
        "stream_tail" => "stream tail",
        other => panic!("unknown metric {other}"),
    }
}

/// The metrics in the order the page offers them.
const METRIC_ORDER: [&str; 11] = [
    "response_time",
    "ttfe",
    "ttft",
    "time_to_headers",
    "stream_duration",
    "event_gap",
    "chunk_gap",
    "server_elapsed",
    "response_time_ok",
    "queueing",
    "stream_tail",
];

/// The spectrum chart's drawn lines, by name.
const SPECTRUM_LINES_JS: &str =
    "Array.from(document.querySelectorAll('#chart-spectrum path.bc-series')).map((p) => p.dataset.series)";

/// Picks the spectrum's view `key` in its selector, as a person would.
fn pick_spectrum(page: &Page, key: &str) {
    page.eval(&format!(
        "(() => {{ const s = document.getElementById('spectrum-view'); s.value = {key:?}; \
           s.dispatchEvent(new Event('change')); }})()"
    ));
}

/// The percentile spectrum: the nines axis, a line per metric of the Aggregated row
/// (the first view), a line per metric of each endpoint, a line per endpoint of each
/// metric, and its last point at 99.999 %, where the report puts it.
fn check_spectrum(page: &Page, report: &Value) {
    let ticks =
        page.eval("Array.from(document.querySelectorAll('#chart-spectrum .bc-xtick')).map((t) => t.textContent)");
    assert_eq!(ticks, json!(["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]));
    let rows = report["spectrum"].as_array().expect("the report's spectrum");
    assert_eq!(rows[0]["name"], "Aggregated");
    assert_eq!(rows.len(), report["endpoints"].as_array().unwrap().len() + 1);
    let lines_of = |row: &Value| -> Vec<String> {
        let metrics: Vec<&str> = row["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["metric"].as_str().unwrap())
            .collect();
        METRIC_ORDER
            .iter()
            .filter(|m| metrics.contains(m))
            .map(|m| metric_label(m).to_string())
            .collect()
    };
    let aggregated = lines_of(&rows[0]);
    assert!(
        aggregated.len() >= 6 && aggregated[..2] == ["response time", "TTFE"],
        "{aggregated:?}"
    );
    assert_eq!(page.eval(SPECTRUM_LINES_JS), json!(aggregated));
    // The response time line ends on the 99.999 % tick.
    let ends_on_top_tick = page.eval(
        "(() => { const d = document.querySelector('#chart-spectrum path.bc-series').getAttribute('d'); \
           const last = d.trim().split(/[ML]/).filter(Boolean).pop().split(' ')[0]; \
           const tick = Array.from(document.querySelectorAll('#chart-spectrum .bc-xtick')).pop().getAttribute('x'); \
           return Math.abs(Number(last) - Number(tick)) < 0.5; })()",
    );
    assert_eq!(ends_on_top_tick, json!(true));
    // Each endpoint: a line per metric it has.
    for row in &rows[1..] {
        let label = format!("{} {}", row["method"].as_str().unwrap(), row["name"].as_str().unwrap());
        pick_spectrum(page, &format!("row:{label}"));
        assert_eq!(page.eval(SPECTRUM_LINES_JS), json!(lines_of(row)), "{label}");
    }
    // Each metric: a line per endpoint that has it.
    for metric in ["response_time", "ttfe"] {
        pick_spectrum(page, &format!("metric:{metric}"));
        let having: Vec<String> = rows[1..]
            .iter()
            .filter(|r| r["lines"].as_array().unwrap().iter().any(|l| l["metric"] == metric))
            .map(|r| format!("{} {}", r["method"].as_str().unwrap(), r["name"].as_str().unwrap()))
            .collect();
        assert!(!having.is_empty(), "{metric}");
        assert_eq!(page.eval(SPECTRUM_LINES_JS), json!(having), "{metric}");
    }
    // Every endpoint has response times; only the SSE one has TTFE.
    pick_spectrum(page, "metric:response_time");
    assert_eq!(page.eval(&format!("{SPECTRUM_LINES_JS}.length")), json!(rows.len() - 1));
    // The live page renders again every 2 s: the view picked stays.
    page.eval(
        "BarrageReport.render(document.getElementById('app'), \
           JSON.parse(document.getElementById('barrage-report').textContent))",
    );
    assert_eq!(
        page.eval("document.getElementById('spectrum-view').value"),
        json!("metric:response_time")
    );
    assert_eq!(page.eval(&format!("{SPECTRUM_LINES_JS}.length")), json!(rows.len() - 1));
    page.screenshot_stage("spectrum_by_endpoint");
    pick_spectrum(page, "row:Aggregated");
    // The stage took the test's screenshot file: the page as it opened, again.
    page.screenshot();
}

/// 1234567 as the page writes it: 1,234,567.
fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One step of a hunt, as `barrage hunt` reports it.
fn step(users: u32, rps: f64, ttfe_p95: f64, error_rate: f64, verdict: &str, bisecting: bool) -> Value {
    json!({
        "users": users, "from_s": users, "to_s": users + 50, "users_avg": users as f64,
        "rps": rps, "events_per_s": rps * 12.0, "error_rate": error_rate,
        "status_429": (error_rate * rps * 50.0) as u64,
        "ttfe_p50_ms": ttfe_p95 / 2.0, "ttfe_p95_ms": ttfe_p95, "ttfe_p99_ms": ttfe_p95 * 1.4,
        "response_time_p50_ms": ttfe_p95 * 3.0, "response_time_p95_ms": ttfe_p95 * 5.0,
        "response_time_avg_ms": ttfe_p95 * 3.2, "little_rps": users as f64 * 8.2,
        "worker_cpu_max": 30.0 + users as f64 / 10.0, "sched_lag_max_ms": 0.4,
        "verdict": verdict,
        "broken": if verdict == "slo" { json!(["p95(ttfe) < 500ms: 812.00ms"]) } else { json!([]) },
        "bisecting": bisecting,
    })
}

/// A hunt report in the schema's shape: 10 → 50 users, broken at 50, bisected to 45.
fn hunt_report(steps: Vec<Value>) -> Value {
    let timeline: Vec<Value> = (0..300)
        .map(|t| {
            let users = 10 + 10 * (t / 60);
            // Seconds 120-124 saw no request: a gap in the response-time lines.
            let rps = if (120..125).contains(&t) { 0 } else { users * 8 };
            json!({"t": t, "users": users, "rps": rps, "failures_per_s": if users >= 50 { 5 } else { 0 },
                   "events_per_s": users * 96, "streams_per_s": users * 8, "active_streams": users as f64 * 0.9,
                   "active_streams_max": users, "ttfe_p50_ms": 40.0 + users as f64, "ttfe_p95_ms": 80.0 + 10.0 * users as f64,
                   "ttfe_p99_ms": 100.0 + 14.0 * users as f64,
                   "response_time_p50_ms": 400.0, "response_time_p95_ms": 600.0, "response_time_p99_ms": 900.0})
        })
        .collect();
    json!({
        "schema": "barrage.report.v1", "scenario": "hunt <i>demo</i>", "host": "http://127.0.0.1:5001",
        "users": 50, "spawn_rate": 10.0, "duration_s": 300.0, "stop_reason": "hunt finished",
        "endpoints": [], "aggregated": {"kind": "http", "method": "", "name": "Aggregated", "requests": 0, "failures": 0,
                                         "failure_ratio": 0.0, "rps": 0.0, "failures_per_s": 0.0},
        "event_throughput": {"max": 0.0, "avg": 0.0, "min": 0.0}, "ttfe_ms": null,
        "connections": {"max_concurrent": 0, "avg_active": 0.0, "total_streams": 0, "connections_opened": 0},
        "qps": {"max": 0.0, "avg": 0.0, "avg_duration_ms": 0.0},
        "failures": [], "outcomes": [], "replicas": [], "workers": [], "events": [], "warnings": [],
        "timeline": timeline, "thresholds": [], "arrivals": null, "drift": null, "distributions": null,
        "hunt": {
            "level": "users", "steps": steps, "sustainable_users": 45, "sustainable_rps": 352.5,
            "first_bad_users": 50, "knee_users": null, "broke_first": "p95(ttfe) < 500ms: 812.00ms (429s: 0)",
            "ended": "an SLO broke at 50 users; bisected 1 round", "little_ratio": 0.98,
            "valid": true, "validity": "valid: every worker stayed under 90% CPU and 5 ms of timer lag",
        },
    })
}

#[test]
fn html_report_of_a_hunt_draws_its_curves_and_updates_in_place() {
    let mut steps = vec![
        step(10, 80.0, 180.0, 0.0, "ok", false),
        step(20, 160.0, 260.0, 0.0, "ok", false),
        step(30, 238.0, 330.0, 0.0, "ok", false),
        step(40, 312.0, 420.0, 0.001, "ok", false),
        step(50, 330.0, 812.0, 0.02, "slo", false),
    ];
    let Some(page) = open("html_hunt", &hunt_report(steps.clone())) else {
        return;
    };
    page.assert_no_problems();
    assert_eq!(page.eval("document.getElementById('hunt').hidden"), json!(false));
    let charts = page.eval(CHARTS_JS);
    let hunt: Vec<&Value> = charts
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"].as_str().unwrap().starts_with("chart-hunt-"))
        .collect();
    assert_eq!(hunt.len(), 3, "{charts:#}");
    for c in &hunt {
        assert!(as_u64(&c["drawn"]) >= 1, "{c}");
        // Each step is a marked point of each of the chart's series.
        assert_eq!(as_u64(&c["markers"]) % 5, 0, "{c}");
        assert!(as_u64(&c["markers"]) >= 5, "{c}");
    }
    // The search's levels are marked on the curves.
    let labels = page.eval(
        "Array.from(document.querySelectorAll('#chart-hunt-throughput .bc-vline text')).map((t) => t.textContent)",
    );
    assert_eq!(labels, json!(["sustainable", "first bad"]));
    assert_eq!(
        page.eval("document.querySelectorAll('#hunt-table tbody tr').length"),
        json!(5)
    );
    // A run without streams has no SSE charts; its timeline charts still draw.
    let ids: Vec<&str> = charts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"chart-ttfe") && ids.contains(&"chart-rps"), "{ids:?}");
    // Seconds without a request break the latency lines in two; req/s is 0 there.
    let moves =
        "(s) => (document.querySelector(`#chart-${s} path.bc-series`).getAttribute('d').match(/M/g) || []).length";
    assert_eq!(page.eval(&format!("({moves})('response-time')")), json!(2));
    assert_eq!(page.eval(&format!("({moves})('rps')")), json!(1));
    // The hover tooltip shows the values at the nearest step.
    page.eval(
        "(() => { const o = document.querySelector('#chart-hunt-throughput .bc-overlay'); const r = o.getBoundingClientRect(); \
         o.dispatchEvent(new MouseEvent('mousemove', { clientX: r.right - 1, clientY: r.top + 5, bubbles: true })); })()",
    );
    let tip = page.eval("document.querySelector('#chart-hunt-throughput .bc-tip').textContent");
    assert!(
        tip.as_str().unwrap().contains("users: 50") && tip.as_str().unwrap().contains("330"),
        "{tip}"
    );
    page.screenshot();

    // The live page calls render again with the newer report: same chart elements, one
    // more step drawn, the tooltip still there.
    // A saved hunt without the interval and the cliff-or-knee call shows neither.
    let hunt_text = "document.querySelector('#hunt').textContent";
    let before = page.eval(hunt_text);
    assert!(!before.as_str().unwrap().contains("Confidence"), "{before}");
    steps.push(step(45, 350.0, 470.0, 0.0, "ok", true));
    let mut newer = hunt_report(steps);
    newer["hunt"]["confidence"] = json!({"slo": "p95(ttfe) < 500ms", "level": 45, "figure": 470000.0,
        "low": 455000.0, "high": 512000.0, "shown": "470.00ms (95 % CI 455.00ms to 512.00ms)", "margin": 0.06,
        "margin_low": -0.024, "margin_high": 0.09, "call": "marginal", "seconds": 50, "resamples": 1000});
    newer["hunt"]["margin_shape"] = json!({"call": "knee", "slo": "p95(ttfe) < 500ms", "first_margin": 0.64,
        "last_good_margin": 0.06, "kept": 0.094, "margins": [[10, 0.64], [45, 0.06], [50, -0.62]]});
    let newer = serde_json::to_string(&newer).unwrap();
    let redrawn = page.eval(&format!(
        "(() => {{ const before = document.getElementById('chart-hunt-throughput'); \
           BarrageReport.render(document.getElementById('app'), {newer}); \
           return before === document.getElementById('chart-hunt-throughput'); }})()"
    ));
    assert_eq!(redrawn, json!(true));
    assert_eq!(
        page.eval("document.querySelectorAll('#hunt-table tbody tr').length"),
        json!(6)
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#chart-hunt-throughput circle.bc-marker').length"),
        json!(12)
    );
    assert!(
        page.eval("document.querySelector('#hunt-table').textContent")
            .as_str()
            .unwrap()
            .contains("45 (bisect)")
    );
    let after = page.eval(hunt_text);
    let after = after.as_str().unwrap();
    assert!(
        after.contains("marginal p95(ttfe) < 500ms at 45 users: 470.00ms (95 % CI 455.00ms to 512.00ms)")
            && after.contains("knee p95(ttfe) < 500ms: 64.00 % at the first level"),
        "{after}"
    );
    page.assert_no_problems();
}

/// The hunt's search in the page: how each step ended (stable after N s, or at the
/// maximum), the re-measured boundary, and the search's budget; and a re-measure
/// that broke says the level moved down.
#[test]
fn html_report_of_a_hunt_says_how_each_step_ended_and_whether_the_boundary_held() {
    let stop = |stable: bool, after_s: f64, hw: f64| json!({"stable": stable, "after_s": after_s, "half_width": hw});
    let mut steps = vec![
        step(10, 80.0, 180.0, 0.0, "ok", false),
        step(40, 312.0, 420.0, 0.001, "ok", false),
        step(80, 330.0, 812.0, 0.02, "slo", false),
        step(57, 340.0, 470.0, 0.0, "ok", true),
        step(57, 338.0, 480.0, 0.0, "ok", false),
    ];
    for (s, st) in steps.iter_mut().zip([
        stop(true, 14.0, 0.031),
        stop(true, 22.0, 0.044),
        stop(false, 60.0, 0.19),
        stop(true, 18.0, 0.02),
        stop(true, 16.0, 0.03),
    ]) {
        s["stop"] = st;
    }
    steps[4]["remeasure"] = json!(true);
    let mut report = hunt_report(steps);
    report["hunt"]["search"] = json!({"kind": "geometric", "growth": 2.0, "resolution": "5%", "budget": 11,
        "probes": 4, "stop_rule": "stable within 5 % (15s to 60s)"});
    report["hunt"]["remeasure"] = json!({"level": 57, "confirmed": true, "slo": "p95(ttfe) < 500ms",
        "first": 470000.0, "second": 480000.0, "shown": "470.00ms then 480.00ms", "moved_to": null});
    let Some(page) = open("html_hunt_search", &report) else {
        return;
    };
    page.assert_no_problems();
    let cells = page.eval("Array.from(document.querySelectorAll('#hunt-table td.c-stop')).map((t) => t.textContent)");
    assert_eq!(
        cells,
        json!([
            "stable after 14 s (±3.1 %)",
            "stable after 22 s (±4.4 %)",
            "max 60 s (±19.0 %)",
            "stable after 18 s (±2.0 %)",
            "stable after 16 s (±3.0 %)"
        ])
    );
    let table = page.eval("document.querySelector('#hunt-table').textContent");
    assert!(table.as_str().unwrap().contains("57 (re-measure)"), "{table}");
    let text = page.eval("document.querySelector('#hunt').textContent");
    let text = text.as_str().unwrap();
    assert!(text.contains("confirmed 57 users again"), "{text}");
    assert!(
        text.contains("geometric ×2 per climbing step, to within 5%; 4 of 11 probes"),
        "{text}"
    );
    page.screenshot();
    // A re-measure that broke: the level moves down.
    report["hunt"]["remeasure"]["confirmed"] = json!(false);
    report["hunt"]["remeasure"]["moved_to"] = json!(40);
    let newer = serde_json::to_string(&report).unwrap();
    page.eval(&format!(
        "BarrageReport.render(document.getElementById('app'), {newer})"
    ));
    let text = page.eval("document.querySelector('#hunt').textContent");
    assert!(
        text.as_str()
            .unwrap()
            .contains("not confirmed 57 users again: the sustainable level moves down to 40 users"),
        "{text}"
    );
    page.assert_no_problems();
}

#[test]
fn html_report_tolerates_missing_and_null_fields() {
    // The least a report can be, then one whose every optional part is null or empty.
    for (name, report) in [
        ("html_minimal", json!({"schema": "barrage.report.v1"})),
        (
            "html_nulls",
            json!({"schema": "barrage.report.v1", "scenario": "s", "host": null, "endpoints": [], "aggregated": null,
                   "timeline": [], "ttfe_ms": null, "hunt": null, "arrivals": null, "drift": null, "distributions": null,
                   "failures": [], "workers": [], "warnings": ["a <b>warning</b>"], "stop_reason": "running"}),
        ),
    ] {
        let Some(page) = open(name, &report) else {
            return;
        };
        page.assert_no_problems();
        assert_eq!(
            page.eval("document.querySelectorAll('.render-error').length"),
            json!(0),
            "{name}"
        );
        // Charts without data say so instead of drawing axes over nothing.
        let charts = page.eval(CHARTS_JS);
        assert!(
            charts.as_array().unwrap().iter().all(|c| c["empty"] == json!(true)),
            "{name}: {charts:#}"
        );
        if name == "html_nulls" {
            assert_eq!(
                page.eval("document.querySelector('.verdict').textContent"),
                json!("running")
            );
            let warning = page.eval("document.querySelector('.callout-warn').textContent");
            assert!(warning.as_str().unwrap().contains("a <b>warning</b>"), "{warning}");
        }
        page.screenshot();
    }
}

/// The open model's section says where the arrivals came from: a seeded random
/// process with the seed that repeats it, or a replayed trace (its name shown as text).
#[test]
fn html_report_names_the_arrival_process_and_the_replayed_trace() {
    let report = |arrivals: Value| {
        json!({"schema": "barrage.report.v1", "scenario": "s", "stop_reason": "run time reached",
               "aggregated": {"requests": 300, "failures": 0}, "timeline": [], "arrivals": arrivals})
    };
    let open_model = |extra: Value| {
        let mut a = json!({"due": 300, "dropped": 0, "max_in_flight": 100, "start_rate": 50.0, "stages": []});
        a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        a
    };
    let cases = [
        (
            "html_trace",
            open_model(json!({"trace": {"file": "prod <b>1</b>.jsonl", "lines": 300, "span_s": 2.99}})),
            [
                "Replayed trace",
                "prod <b>1</b>.jsonl",
                "Arrivals in the trace300",
                "Span (s)2.990",
            ],
        ),
        (
            "html_seeded",
            open_model(json!({"process": "gamma", "burstiness": 0.5, "seed": 42})),
            [
                "Arrival process",
                "Processgamma",
                "Burstiness (gamma k)0.50",
                "Seed (repeats the run)42",
            ],
        ),
    ];
    for (name, arrivals, want) in cases {
        let Some(page) = open(name, &report(arrivals)) else {
            return;
        };
        page.assert_no_problems();
        let text = page.eval("document.getElementById('arrivals').textContent");
        let text = text.as_str().unwrap();
        for w in want {
            assert!(text.contains(w), "{name}: no {w:?} in {text:?}");
        }
        // A trace's name is text, never markup.
        assert_eq!(
            page.eval("document.querySelectorAll('#arrivals b').length"),
            json!(0),
            "{name}"
        );
        page.screenshot();
    }
}

/// An incomplete run's page says so first: the verdict badge and a callout listing
/// each reason (as text: a reason may quote a worker id).
#[test]
fn html_report_of_an_incomplete_run_says_so_first() {
    let report = json!({"schema": "barrage.report.v1", "scenario": "s", "stop_reason": "run time reached",
        "aggregated": {"requests": 12, "failures": 0}, "timeline": [],
        "completeness": {"verdict": "incomplete", "clipped": 0,
                         "reasons": ["worker <b>w2</b> was lost: what it did after 4.0s of the run never arrived"]}});
    let Some(page) = open("html_incomplete", &report) else {
        return;
    };
    page.assert_no_problems();
    assert_eq!(
        page.eval("document.querySelector('.verdict').textContent"),
        json!("data incomplete")
    );
    let callout = page.eval("document.querySelector('#incomplete').textContent");
    assert!(
        callout.as_str().unwrap().contains("worker <b>w2</b> was lost"),
        "{callout}"
    );
    page.screenshot();
}
