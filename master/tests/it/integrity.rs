//! Numbers that stay true when the target or a peer misbehaves (issue 14): each test
//! compares what we report with what a target written here, not our mock, says it
//! served, or with what a peer written here sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::response::IntoResponse;

use barrage_master::report::FinalReport;
use barrage_proto::v1;

use crate::support::*;

/// What a target written in a test served, counted by itself.
#[derive(Default)]
struct Served {
    requests: AtomicU64,
    failed: AtomicU64,
}

/// A workflow run as dify-api 1.14.1 streams it (see shared/dify-transcripts): ping,
/// workflow_started, the nodes, workflow_finished; a failed run carries the Code
/// node's traceback in `data.error`, as the real server does.
fn workflow_stream(error: Option<&str>) -> String {
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    let (status, error) = match error {
        Some(e) => ("failed", quoted(e)),
        None => ("succeeded", "null".to_string()),
    };
    let ids = r#""workflow_run_id":"ce048c2c","task_id":"ce717038""#;
    [
        "event: ping\n\n".to_string(),
        format!(r#"data: {{"event":"workflow_started",{ids},"data":{{"id":"ce048c2c","inputs":{{}}}}}}"#) + "\n\n",
        format!(r#"data: {{"event":"node_started",{ids},"data":{{"node_id":"code","node_type":"code","title":"Code","index":1}}}}"#) + "\n\n",
        format!(r#"data: {{"event":"node_finished",{ids},"data":{{"node_id":"code","node_type":"code","title":"Code","index":1,"status":"{status}","error":{error},"elapsed_time":0.07}}}}"#) + "\n\n",
        format!(r#"data: {{"event":"workflow_finished",{ids},"data":{{"id":"ce048c2c","status":"{status}","outputs":{{}},"error":{error},"elapsed_time":0.08,"total_tokens":0}}}}"#) + "\n\n",
    ]
    .concat()
}

/// A Python traceback of about `bytes` bytes, as dify-sandbox returns it.
fn traceback(bytes: usize) -> String {
    let mut t = String::from("Traceback (most recent call last):\n");
    let mut frame = 0;
    while t.len() < bytes {
        t.push_str(&format!(
            "  File \"<string>\", line {frame}, in step_{frame}\n    value = compute(value, {frame})\n"
        ));
        frame += 1;
    }
    t.push_str("ValueError: boom\n");
    t
}

/// Serves `POST /v1/workflows/run`: every `fail_every`-th run fails with `error`.
async fn dify_target(error: String, fail_every: u64) -> (std::net::SocketAddr, Arc<Served>) {
    let served = Arc::new(Served::default());
    let counter = served.clone();
    let app = axum::Router::new().route(
        "/v1/workflows/run",
        axum::routing::post(move || {
            let served = counter.clone();
            let error = error.clone();
            async move {
                let n = served.requests.fetch_add(1, Ordering::SeqCst) + 1;
                let failed = n % fail_every == 0;
                if failed {
                    served.failed.fetch_add(1, Ordering::SeqCst);
                }
                (
                    [("content-type", "text/event-stream; charset=utf-8")],
                    workflow_stream(failed.then_some(error.as_str())),
                )
                    .into_response()
            }
        }),
    );
    (serve(app).await, served)
}

const WORKFLOW: &str = r#"
[[users]]
name = "Workflow"
wait = "constant(0.02)"
[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {}, "response_mode": "streaming", "user": "{{user}}"}'
"#;

/// Runs WORKFLOW against `target` with one in-process worker: the exit code and report.
async fn run_workflow(target: std::net::SocketAddr, users: u32, secs: u64) -> (u8, FinalReport) {
    let load = load_args(target, users, 100.0, Duration::from_secs(secs));
    let m = master(setup(WORKFLOW, &load, 1)).await;
    let w = worker(m.addr, "w");
    let outcome = m.run.await.unwrap().unwrap();
    let _ = w.await;
    (outcome.exit_code, outcome.report)
}

/// The headline of issue 14: a workflow whose Code node raises returns
/// `workflow_finished` with a 9 KB traceback. Every run counts, the failures are
/// failures, the sample is bounded, and the run is complete (before: 0 requests,
/// exit 0, every report refused for its long failure text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_dify_error_costs_no_report() {
    let (target, served) = dify_target(traceback(9 * 1024), 1).await;
    let (code, r) = run_workflow(target, 3, 2).await;
    let (requests, failed) = (
        served.requests.load(Ordering::SeqCst),
        served.failed.load(Ordering::SeqCst),
    );
    assert!(requests > 10, "the target served {requests}");
    assert_eq!(r.aggregated.requests, requests, "requests: ours vs the target's");
    assert_eq!(r.aggregated.failures, failed, "failures: ours vs the target's");
    assert!(r.completeness.is_complete(), "{:?}", r.completeness);
    assert_eq!(code, 1, "failed requests: exit code 1");
    let f = r
        .failures
        .iter()
        .find(|f| f.kind == "terminal_status")
        .expect("terminal_status row");
    assert!(
        f.sample.len() <= barrage_common::bounds::MAX_SAMPLE
            && f.sample.contains("Traceback (most recent call last)")
            && f.sample.ends_with("bytes, clipped]"),
        "{} bytes: {}",
        f.sample.len(),
        f.sample
    );
}

/// The 9:1 mix seen against the real dify-api: the good runs of every second count
/// too (before: the seconds holding a failure vanished whole, good runs included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_runs_beside_long_errors_all_count() {
    let (target, served) = dify_target(traceback(6123), 10).await;
    let (code, r) = run_workflow(target, 3, 2).await;
    let (requests, failed) = (
        served.requests.load(Ordering::SeqCst),
        served.failed.load(Ordering::SeqCst),
    );
    assert!(failed > 0, "the target served {requests}, none failed");
    assert_eq!(r.aggregated.requests, requests, "requests: ours vs the target's");
    assert_eq!(r.aggregated.failures, failed, "failures: ours vs the target's");
    assert!(r.completeness.is_complete(), "{:?}", r.completeness);
    assert_eq!(code, 1);
}

/// A report the master cannot use in part (an endpoint the plan does not have) is
/// acknowledged, so the worker's outbox drains, and the run ends incomplete, exit 3
/// (before: refused unacknowledged, the outbox stalled, and the run passed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_master_cannot_use_is_acknowledged_and_the_run_is_incomplete() {
    let (target, _) = dify_target(String::new(), u64::MAX).await;
    let load = load_args(target, 1, 10.0, Duration::from_secs(1));
    let m = master(setup(WORKFLOW, &load, 1)).await;
    let mut fake = FakeWorker::join(m.addr, "fake").await;
    let delta = |name: &str, requests: u64| v1::EndpointDelta {
        name: name.into(),
        method: "POST".into(),
        kind: v1::EndpointKind::Sse as i32,
        requests,
        ..Default::default()
    };
    fake.report(v1::Report {
        seq: 1,
        interval_end_us: 1_000,
        endpoints: vec![delta("/v1/workflows/run", 4), delta("/not/planned", 7)],
        ..Default::default()
    })
    .await;
    assert!(fake.acked(1).await, "the report was not acknowledged");
    fake.report(v1::Report {
        seq: 2,
        interval_start_us: 1_000,
        interval_end_us: 2_000,
        r#final: true,
        ..Default::default()
    })
    .await;
    assert!(fake.acked(2).await);
    let outcome = m.run.await.unwrap().unwrap();
    let r = &outcome.report;
    assert_eq!(r.aggregated.requests, 4, "the planned endpoint's requests count");
    assert!(r.endpoints.iter().all(|e| e.name != "/not/planned"));
    assert!(!r.completeness.is_complete());
    assert!(
        r.completeness.reasons.iter().any(|w| w.contains("claiming 7 request")),
        "{:?}",
        r.completeness
    );
    assert_eq!(outcome.exit_code, 3);
}

/// A run meant to send load whose workers report no request never exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_reports_no_request_exits_3() {
    let (target, _) = dify_target(String::new(), u64::MAX).await;
    let load = load_args(target, 1, 10.0, Duration::from_secs(1));
    let m = master(setup(WORKFLOW, &load, 1)).await;
    let mut fake = FakeWorker::join(m.addr, "fake").await;
    fake.report(v1::Report {
        seq: 1,
        r#final: true,
        ..Default::default()
    })
    .await;
    assert!(fake.acked(1).await);
    let outcome = m.run.await.unwrap().unwrap();
    assert_eq!(outcome.report.aggregated.requests, 0);
    assert!(
        outcome
            .report
            .completeness
            .reasons
            .iter()
            .any(|w| w.contains("no request")),
        "{:?}",
        outcome.report.completeness
    );
    assert_eq!(outcome.exit_code, 3);
}

/// One request as a target written here saw it: when, from which worker (the
/// `X-Worker` header), on which client port.
#[derive(Debug, Clone)]
struct Seen {
    at: std::time::Instant,
    worker: String,
    port: u16,
}

/// A plain HTTP target that logs every request it answered.
async fn logging_target() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<Seen>>>) {
    use axum::extract::ConnectInfo;
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = log.clone();
    let app = axum::Router::new().route(
        "/work",
        axum::routing::get(
            move |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>, headers: axum::http::HeaderMap| {
                let log = into.clone();
                async move {
                    let worker = headers
                        .get("x-worker")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    log.lock().unwrap().push(Seen {
                        at: std::time::Instant::now(),
                        worker,
                        port: peer.port(),
                    });
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    (addr, log)
}

/// A worker process frozen longer than the liveness timeout (SIGSTOP, as a VM pause or
/// a stuck runtime does) is declared lost and fenced on its still-open stream. After
/// SIGCONT it stops its load within a second (its old connections carry nothing
/// more), hands in what it recorded, and joins again; the target's own count equals
/// ours, and the run is complete. Before: it kept its users and its reports were
/// merged while the others ran its share too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_is_fenced_stops_its_load_and_is_counted_once() {
    let (target, log) = logging_target().await;
    let scenario = r#"
[[users]]
name = "Plain"
wait = "constant(0.05)"
[[users.tasks]]
name = "/work"
path = "/work"
headers = { X-Worker = "{{worker}}" }
"#;
    let mut load = load_args(target, 4, 100.0, Duration::from_secs(12));
    load.heartbeat_liveness = Duration::from_secs(2);
    let m = master(setup(scenario, &load, 2)).await;
    let steady = worker(m.addr, "steady");
    let mut frozen = barrage()
        .args(["worker", "--master", &m.addr.to_string(), "--worker-id", "frozen"])
        .args(["--give-up-after", "20s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = frozen.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    assert!(eventually(Duration::from_secs(10), || reports_of(&m.cluster, "frozen") >= 2).await);
    let index = m.cluster.registry().worker("frozen").unwrap().index().to_string();
    signal("-STOP");
    let stopped_at = std::time::Instant::now();
    let lost = || m.cluster.registry().worker("frozen").unwrap().is_lost();
    assert!(eventually(Duration::from_secs(8), lost).await, "never declared lost");
    // Past the declaration, still frozen: the others carry its share now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal("-CONT");
    let continued_at = std::time::Instant::now();
    let outcome = m.run.await.unwrap().unwrap();
    let _ = steady.await;
    // A fenced worker leaves by itself once the run is over; one that never heard of
    // its fence would run on, so the wait is bounded.
    let exited = eventually(Duration::from_secs(30), || frozen.try_wait().unwrap().is_some()).await;
    if !exited {
        let _ = frozen.kill();
    }
    let _ = frozen.wait();
    let r = &outcome.report;
    let seen = log.lock().unwrap().clone();
    let old_ports: std::collections::BTreeSet<u16> = seen
        .iter()
        .filter(|s| s.worker == index && s.at < stopped_at)
        .map(|s| s.port)
        .collect();
    assert!(!old_ports.is_empty(), "the frozen worker sent nothing before its pause");
    let late: Vec<&Seen> = seen
        .iter()
        // It must stop within a second of reading its fence; the fence reaches it as it
        // wakes, and half a second more covers a busy machine's scheduling.
        .filter(|s| s.at > continued_at + Duration::from_millis(1500) && old_ports.contains(&s.port))
        .collect();
    assert!(
        late.is_empty(),
        "{} requests on the fenced session's connections more than 1.5 s after SIGCONT",
        late.len()
    );
    assert_eq!(
        r.aggregated.requests,
        seen.len() as u64,
        "requests: ours vs the target's log; {:?}",
        r.completeness
    );
    assert!(r.completeness.is_complete(), "{:?}", r.completeness);
    assert!(
        r.events
            .iter()
            .any(|e| e.contains("frozen lost") && e.contains("fenced")),
        "{:?}",
        r.events
    );
    assert_eq!(outcome.exit_code, 0, "{:?}", r.failures);
}
