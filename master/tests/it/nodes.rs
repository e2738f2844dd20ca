//! Where a Dify workflow's time goes, against injected truth: the mock's per-node
//! delays and queueing (`--workflow-nodes`, `--queue-delay`), and a target written
//! here that replays a real dify-api 1.14.1 stream with its own elapsed times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use barrage_master::report::{FinalReport, WhereTimeGoes};
use barrage_mock::MockConfig;

use crate::support::browser;
use crate::support::*;

/// One streamed workflow task (kind `dify`).
const SCENARIO: &str = r#"
[[users]]
name = "Workflow"
wait = "constant(0.01)"
[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {"query": "x"}, "response_mode": "streaming", "user": "{{user}}"}'
"#;

fn table(r: &FinalReport) -> &WhereTimeGoes {
    r.where_time_goes
        .iter()
        .find(|t| t.name == "/v1/workflows/run")
        .unwrap_or_else(|| panic!("no table: {:?}", r.where_time_goes))
}

/// The report's JSON keeps to the committed schema.
fn assert_schema(r: &FinalReport) {
    let json = serde_json::to_value(r).unwrap();
    crate::support::assert_schema(&json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_node_delays_and_queueing_are_reported_where_they_were_spent() {
    let cfg = MockConfig {
        first_event_delay: Duration::ZERO,
        chunk_interval: Duration::ZERO,
        ping_interval: Duration::from_secs(30),
        api_key: Some(KEY.into()),
        workflow_nodes: Some(
            "start:Start:0ms,llm:LLM:200ms,code:Code:30ms,end:End:0ms"
                .parse()
                .unwrap(),
        ),
        queue_delay: Duration::from_millis(150),
        ..MockConfig::default()
    };
    let mock = mock(cfg).await;
    let load = load_args(mock.addr, 3, 100.0, Duration::from_secs(3));
    let r = run_with_one_worker(setup(SCENARIO, &load, 1)).await;
    let truth = mock.state.ground_truth();
    assert!(
        r.aggregated.requests > 5 && r.aggregated.failures == 0,
        "{:?}",
        r.aggregated
    );
    let t = table(&r);
    let titles: Vec<&str> = t.nodes.iter().map(|n| n.title.as_str()).collect();
    assert_eq!(titles, ["Start", "LLM", "Code", "End"], "workflow order");
    for n in &t.nodes {
        // Every node_finished the mock sent is counted, none twice.
        assert_eq!(
            Some(n.count),
            truth.nodes_finished.get(&n.title).copied(),
            "{}: {truth:?}",
            n.title
        );
        assert_eq!(n.failures, 0);
    }
    let p50 = |title: &str| {
        let n = t.nodes.iter().find(|n| n.title == title).unwrap();
        n.elapsed_ms.unwrap().p50
    };
    let injected = [("Start", 0.0), ("LLM", 200.0), ("Code", 30.0), ("End", 0.0)];
    for (title, ms) in injected {
        let got = p50(title);
        eprintln!("node {title}: injected {ms} ms, reported p50 {got} ms");
        // The mock reports the time between its node's events: the injected delay, give
        // or take its timer's lateness (well under a few ms on loopback).
        assert!(
            (got - ms).abs() < 3.0,
            "{title}: injected {ms} ms, reported p50 {got} ms"
        );
    }
    let llm = t.nodes.iter().find(|n| n.title == "LLM").unwrap();
    assert_eq!(llm.tokens, 10 * llm.count, "10 tokens per LLM execution");
    // Queueing went before workflow_started: reported as queueing, in no node.
    let q = t.queueing.as_ref().unwrap();
    eprintln!("queueing: injected 150 ms, reported p50 {} ms", q.elapsed_ms.p50);
    assert!(q.elapsed_ms.p50 >= 150.0 && q.elapsed_ms.p50 < 160.0, "{q:?}");
    assert_eq!(q.elapsed_ms.count, r.aggregated.requests);
    let share = q.share_of_response.unwrap();
    // 150 of about 380 ms per response.
    assert!(share > 0.3 && share < 0.5, "{share}");
    let llm_share = llm.share_of_workflow.unwrap();
    // 200 of about 230 ms of workflow time (the mock's workflow elapsed counts from the request).
    assert!(llm_share > 0.4 && llm_share < 0.9, "{llm_share}");
    let console = barrage_master::report::console::render_final(&r);
    assert!(
        console.contains("Where the time goes: POST /v1/workflows/run"),
        "{console}"
    );
    assert!(console.contains("| (queueing) |"), "{console}");
    assert_schema(&r);
    // A saved file read back gives the same table.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
    let again = barrage_master::report::json::read(&path).unwrap();
    assert_eq!(again.where_time_goes, r.where_time_goes);
    check_page(&r);
}

/// The HTML report (the web UI draws `/api/stats` with the same renderer) shows the
/// table: the nodes in order, then the workflow, queueing and tail rows, with the
/// report's counts and p50s.
fn check_page(r: &FinalReport) {
    let Some(page) = browser::launch("nodes_where_time_goes") else {
        return;
    };
    let path = browser::artifacts_dir().join("nodes_where_time_goes.html");
    barrage_master::report::html::write(&barrage_master::report::json::to_json(r), &path).unwrap();
    page.goto_file(&path);
    page.wait_for(
        "document.querySelector('#nodes-table-0') !== null",
        Duration::from_secs(10),
    );
    let rows = page.eval(
        "Array.from(document.querySelectorAll('#nodes-table-0 tbody tr')).map((tr) => [tr.querySelector('.c-node').textContent, tr.querySelector('.c-count').textContent, tr.querySelector('.c-p50').textContent])",
    );
    let t = table(r);
    let mut want: Vec<serde_json::Value> = t
        .nodes
        .iter()
        .map(|n| serde_json::json!([n.title, n.count.to_string(), fmt_ms(n.elapsed_ms.unwrap().p50)]))
        .collect();
    let w = t.workflow_ms.unwrap();
    want.push(serde_json::json!(["(workflow)", w.count.to_string(), fmt_ms(w.p50)]));
    let q = t.queueing.as_ref().unwrap().elapsed_ms;
    want.push(serde_json::json!(["(queueing)", q.count.to_string(), fmt_ms(q.p50)]));
    if let Some(tail) = &t.stream_tail {
        let e = tail.elapsed_ms;
        want.push(serde_json::json!(["(stream tail)", e.count.to_string(), fmt_ms(e.p50)]));
    }
    assert_eq!(rows, serde_json::Value::Array(want));
    assert!(!page.eval("document.getElementById('nodes').hidden").as_bool().unwrap());
    page.screenshot();
    page.assert_no_problems();
}

/// A millisecond figure as the page writes it (report.js `ms`; counts below 1,000).
fn fmt_ms(v: f64) -> String {
    let fixed = |d: usize| {
        let s = format!("{v:.d$}");
        // Thousands separators, as `toLocaleString('en-US')`.
        let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
        let mut grouped = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if frac.is_empty() {
            grouped
        } else {
            format!("{grouped}.{frac}")
        }
    };
    if v.abs() >= 100.0 {
        fixed(0)
    } else if v.abs() >= 1.0 || v == 0.0 {
        fixed(2)
    } else {
        fixed(3)
    }
}

/// A target of our own: replays dify-api 1.14.1's captured Start -> Code -> End stream
/// (its events as they are, with their elapsed times), then keeps the body open for
/// `TAIL` after `workflow_finished` as dify-api's relay does, and counts what it served.
const TAIL: Duration = Duration::from_millis(300);

/// The Code node's and the workflow's `elapsed_time` in the replayed transcript, ms.
fn transcript_elapsed_ms() -> (f64, f64) {
    let (mut code, mut workflow) = (0.0, 0.0);
    for line in TRANSCRIPT.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ms = v["data"]["elapsed_time"].as_f64().unwrap_or(0.0) * 1000.0;
        match (v["event"].as_str(), v["data"]["title"].as_str()) {
            (Some("node_finished"), Some("Code")) => code = ms,
            (Some("workflow_finished"), _) => workflow = ms,
            _ => {}
        }
    }
    (code, workflow)
}

const TRANSCRIPT: &str = include_str!("../../../worker/tests/fixtures/dify-1.14.1/workflow-streaming-code-ok.txt");

async fn replaying_target(served: Arc<AtomicU64>) -> std::net::SocketAddr {
    let text = TRANSCRIPT;
    let body_at = text.find("\r\n\r\n").map_or(0, |i| i + 4);
    let body: &'static str = &text[body_at..];
    let app = axum::Router::new().route(
        "/v1/workflows/run",
        axum::routing::post(move || {
            let served = served.clone();
            async move {
                served.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
                tokio::spawn(async move {
                    // The head goes out alone and is acknowledged before the events:
                    // written back to back, Nagle's algorithm and the client's delayed
                    // ACK would hold the events ~40 ms and shorten the tail it sees.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = tx.send(Ok(Bytes::from(body.replace("\r\n", "\n")))).await;
                    tokio::time::sleep(TAIL).await;
                });
                Response::builder()
                    .header("content-type", "text/event-stream; charset=utf-8")
                    .body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
                    .unwrap()
            }
        }),
    );
    serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dify_stream_is_read_node_by_node_with_its_tail() {
    let served = Arc::new(AtomicU64::new(0));
    let addr = replaying_target(served.clone()).await;
    let load = load_args(addr, 2, 100.0, Duration::from_secs(3));
    let r = run_with_one_worker(setup(SCENARIO, &load, 1)).await;
    assert_eq!(r.aggregated.requests, served.load(Ordering::Relaxed));
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    let t = table(&r);
    let got: Vec<(&str, &str, u64)> = t
        .nodes
        .iter()
        .map(|n| (n.title.as_str(), n.node_type.as_str(), n.count))
        .collect();
    let n = r.aggregated.requests;
    assert_eq!(got, [("Start", "start", n), ("Code", "code", n), ("End", "end", n)]);
    // The transcript's own figures, read with a generic JSON parser.
    let (code_ms, workflow_ms) = transcript_elapsed_ms();
    let code = t.nodes[1].elapsed_ms.unwrap();
    eprintln!("Code: transcript {code_ms} ms, reported p50 {} ms", code.p50);
    assert!(
        (code.p50 - code_ms).abs() <= code_ms / 1000.0,
        "within HDR precision: {code:?}"
    );
    let share = t.nodes[1].share_of_workflow.unwrap();
    assert!((share - code_ms / workflow_ms).abs() < 0.002, "{share}");
    // The tail the target held the body open for, measured from workflow_finished.
    let tail = t.stream_tail.as_ref().unwrap().elapsed_ms;
    eprintln!(
        "stream tail: target held {} ms, reported p50 {} ms",
        TAIL.as_millis(),
        tail.p50
    );
    assert!(tail.p50 >= 295.0 && tail.p50 < 340.0, "{tail:?}");
    assert_eq!(tail.count, n);
}

/// A target whose LLM node slows with load: it takes 40 ms per request in flight (and
/// says so in its `elapsed_time`), its Code node always 10 ms; in a closed loop without
/// waits the requests in flight are the users.
async fn loaded_target() -> std::net::SocketAddr {
    let in_flight = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/v1/workflows/run",
        axum::routing::post(move || {
            let in_flight = in_flight.clone();
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
                tokio::spawn(async move {
                    let llm = Duration::from_millis(40 * now);
                    let ev = |e: serde_json::Value| Ok(Bytes::from(format!("data: {e}\n\n")));
                    let node = |event: &str, title: &str, ty: &str, secs: f64| {
                        serde_json::json!({"event": event, "task_id": "t", "data": {"title": title, "node_type": ty, "status": "succeeded", "elapsed_time": secs}})
                    };
                    let _ = tx.send(ev(serde_json::json!({"event": "workflow_started", "task_id": "t", "data": {}}))).await;
                    let _ = tx.send(ev(node("node_started", "LLM", "llm", 0.0))).await;
                    tokio::time::sleep(llm).await;
                    let _ = tx.send(ev(node("node_finished", "LLM", "llm", llm.as_secs_f64()))).await;
                    let _ = tx.send(ev(node("node_finished", "Code", "code", 0.010))).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let done = serde_json::json!({"event": "workflow_finished", "task_id": "t", "data": {"status": "succeeded", "elapsed_time": llm.as_secs_f64() + 0.010}});
                    let _ = tx.send(ev(done)).await;
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
                    .unwrap()
            }
        }),
    );
    serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hunt_shows_each_node_per_level_and_names_the_node_that_grew() {
    use clap::Parser;
    let addr = loaded_target().await;
    let host = format!("http://{addr}");
    let argv = [
        "barrage",
        "hunt",
        "-f",
        "hunt.toml",
        "-H",
        &host,
        // The linear climb (2, 6, 10): levels this test can name in advance.
        "--search",
        "linear",
        "--stable-within",
        "off",
        "--no-remeasure",
        "--start",
        "2",
        "--step",
        "4",
        "--step-time",
        "3s",
        "--warmup",
        "1s",
        "--max",
        "30",
        "--slo",
        "p95(response_time) < 300ms",
        "--no-stall",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        "0",
    ];
    let barrage_master::cli::Command::Hunt(mut args) = barrage_master::cli::Cli::try_parse_from(argv).unwrap().command
    else {
        panic!("not a hunt");
    };
    args.load.headless = true;
    args.load.web_port = 0;
    args.load.only_summary = true;
    args.load.stop_timeout = Duration::from_secs(1);
    let parsed = barrage_common::scenario::parse_str(SCENARIO, config::FileFormat::Toml, "hunt.toml", &env).unwrap();
    let mut setup = barrage_master::setup::hunt_setup(&args, parsed, 1).unwrap();
    setup.print_report = false;
    let m = master(setup).await;
    let w = worker(m.addr, "w");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    let h = r.hunt.as_ref().unwrap();
    let levels: Vec<u32> = h.steps.iter().map(|s| s.users).collect();
    assert_eq!(
        h.first_bad_users,
        Some(10),
        "steps {levels:?}: 400 ms of LLM at 10 users"
    );
    for level in [2, 6, 10] {
        let mut nodes: Vec<&str> = h
            .node_steps
            .iter()
            .filter(|n| n.level == level)
            .map(|n| n.title.as_str())
            .collect();
        nodes.sort();
        assert_eq!(nodes, ["Code", "LLM"], "level {level}: {:?}", h.node_steps);
    }
    let llm = |level: u32| {
        let row = h
            .node_steps
            .iter()
            .find(|n| n.level == level && n.title == "LLM")
            .unwrap();
        row.elapsed_ms.unwrap().p95
    };
    for level in [2, 6, 10] {
        let injected = 40.0 * f64::from(level);
        eprintln!(
            "hunt: LLM at {level} users: injected {injected} ms, step p95 {} ms",
            llm(level)
        );
        assert!(
            (llm(level) - injected).abs() <= injected * 0.1 + 1.0,
            "level {level}: {}",
            llm(level)
        );
    }
    assert_eq!(h.nodes_grew[0].title, "LLM", "{:?}", h.nodes_grew);
    assert!(h.nodes_grew[0].ratio > 3.0, "{:?}", h.nodes_grew);
    let console = barrage_master::report::console::render_final(&r);
    assert!(
        console.contains("Nodes whose p95 grew fastest up to the first bad level: LLM (llm)"),
        "{console}"
    );
    assert_schema(&r);
    check_hunt_page(&r);
}

/// The page shows a row per node and level, as the report has them.
fn check_hunt_page(r: &FinalReport) {
    let h = r.hunt.as_ref().unwrap();
    let Some(page) = browser::launch("nodes_hunt") else {
        return;
    };
    let path = browser::artifacts_dir().join("nodes_hunt.html");
    barrage_master::report::html::write(&barrage_master::report::json::to_json(r), &path).unwrap();
    page.goto_file(&path);
    page.wait_for(
        "document.querySelector('#hunt-nodes-table') !== null",
        Duration::from_secs(10),
    );
    let rows = page.eval(
        "Array.from(document.querySelectorAll('#hunt-nodes-table tbody tr')).map((tr) => [tr.querySelector('.c-level').textContent, tr.querySelector('.c-node').textContent, tr.querySelector('.c-count').textContent])",
    );
    let want: Vec<serde_json::Value> = h
        .node_steps
        .iter()
        .map(|n| serde_json::json!([n.level.to_string(), n.title, n.count.to_string()]))
        .collect();
    assert_eq!(rows, serde_json::Value::Array(want));
    page.screenshot();
    page.assert_no_problems();
}
