//! Trace replay against a target written here: every request's `q` is logged as the
//! target saw it, and the run must deliver each trace line exactly once, whatever the
//! number of workers, at its offset, with its input.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;

use crate::support::*;

/// What the target saw: each request's `q`, the worker it named, and when it came.
type Log = Arc<Mutex<Vec<(String, String, Instant)>>>;

/// A target that answers `GET /r?q=..&w=..` with 200 and logs it.
async fn logging_target() -> (std::net::SocketAddr, Log) {
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .route(
            "/r",
            get(
                |State(log): State<Log>, Query(q): Query<BTreeMap<String, String>>| async move {
                    let (input, worker) = (q.get("q").cloned(), q.get("w").cloned());
                    log.lock()
                        .unwrap()
                        .push((input.unwrap_or_default(), worker.unwrap_or_default(), Instant::now()));
                    "ok"
                },
            ),
        )
        .with_state(log.clone());
    (serve(app).await, log)
}

/// One class whose task sends the trace line's `q` (a pool, whose value a line's input
/// replaces) and the worker's index.
const SCENARIO: &str = r#"
[data.q]
values = ["from-the-pool"]
[[users]]
name = "Replay"
weight = 1
wait = "constant(0)"
[[users.tasks]]
name = "lookup"
method = "GET"
path = "/r?q={{q}}&w={{worker}}"
timeout = "5s"
[[users.tasks]]
name = "other"
weight = 0
method = "GET"
path = "/r?q=other-{{q}}&w={{worker}}"
"#;

/// A trace of `n` lines 10 ms apart, line i carrying q = `line-i`; every 50th line
/// names the task `other`, which only a line can pick (its weight is 0).
fn write_trace(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("trace.jsonl");
    let text: String = (0..n)
        .map(|i| {
            let task = if i % 50 == 7 { ", \"task\": \"other\"" } else { "" };
            format!(
                "{{\"offset_ms\": {}, \"inputs\": {{\"q\": \"line-{i}\"}}{task}}}\n",
                i * 10
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

async fn replays_every_line_once_with(workers: u32) {
    let (addr, log) = logging_target().await;
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path(), 300);
    let mut load = load_args(addr, 1, 1.0, Duration::from_secs(30));
    load.users = None;
    load.spawn_rate = None;
    load.arrival_trace = Some(trace);
    let mut s = setup(SCENARIO, &load, workers);
    let web = crate::support::with_web(&mut s, "steer", false);
    let m = master(s).await;
    let ws: Vec<_> = (0..workers).map(|i| worker(m.addr, &format!("w{i}"))).collect();
    // A replayed trace's rate is the recording's: the web UI cannot change it.
    let up = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(web).await.is_err() && Instant::now() < up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = crate::web::post_json(web, "/api/target", Some("steer"), r#"{"arrival_rate": 5}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("this run replays a trace"), "{body}");
    let r = m.run.await.unwrap().unwrap().report;
    for w in ws {
        let _ = w.await;
    }
    let seen = log.lock().unwrap().clone();
    // Every input arrived exactly once, each with its task.
    let mut inputs: Vec<String> = seen.iter().map(|(q, _, _)| q.clone()).collect();
    inputs.sort();
    let mut expected: Vec<String> = (0..300)
        .map(|i| {
            if i % 50 == 7 {
                format!("other-line-{i}")
            } else {
                format!("line-{i}")
            }
        })
        .collect();
    expected.sort();
    assert_eq!(inputs, expected, "{workers} workers");
    // What we report is what the target logged.
    assert_eq!(r.aggregated.requests, seen.len() as u64, "{workers} workers");
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    // Each worker sent lines (the split is by the arrivals' segment rule).
    let senders: std::collections::BTreeSet<&str> = seen.iter().map(|(_, w, _)| w.as_str()).collect();
    assert_eq!(senders.len(), workers as usize, "{senders:?}");
    // Offsets kept: the last line came about 2.99 s after the first (loosely: not at
    // once, and not after the run's 30 s bound).
    let at = |q: &str| seen.iter().find(|(s, _, _)| s == q).map(|(_, _, t)| *t).unwrap();
    let apart = at("line-299").duration_since(at("line-0")).as_secs_f64();
    assert!(
        (2.0..10.0).contains(&apart),
        "first to last line: {apart:.3}s, recorded 2.99s"
    );
    println!(
        "{workers} workers: 300 lines replayed, target logged {}, reported {}, first to last line {apart:.3}s (recorded 2.990s), run {:.2}s",
        seen.len(),
        r.aggregated.requests,
        r.duration_s
    );
    // The run ended with the trace, not at -t, and its report says what it replayed.
    assert!(
        r.stop_reason.starts_with("trace trace.jsonl replayed"),
        "{}",
        r.stop_reason
    );
    let a = r.arrivals.clone().unwrap();
    assert_eq!((a.due, a.dropped), (300, 0));
    let t = a.trace.clone().unwrap();
    assert_eq!((t.file.as_str(), t.lines, t.span_s), ("trace.jsonl", 300, 2.99));
    let json = barrage_master::report::json::to_json(&r);
    assert_eq!(json["arrivals"]["trace"]["lines"], 300);
    crate::support::assert_schema(&json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_replays_every_line_once() {
    replays_every_line_once_with(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_replay_every_line_once_between_them() {
    replays_every_line_once_with(2).await;
}

/// `barrage validate` and `barrage run` name the trace file, the line and the problem,
/// and refuse a trace given with a rate.
#[test]
fn trace_errors_name_the_file_the_line_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"offset_ms\": 5}\n{\"offset_ms\": 9, \"task\": \"lookup\"}\n{\"offset_ms\": 8}\n",
    )
    .unwrap();
    let run = |extra: &str, args: &[&str]| {
        std::fs::write(
            &scenario,
            format!("host = \"http://127.0.0.1:9\"\n[run]\n{extra}\n{SCENARIO}"),
        )
        .unwrap();
        let out = barrage().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let file = scenario.to_str().unwrap();
    // A good trace: validate names it.
    std::fs::write(
        &bad,
        "{\"offset_ms\": 0}\n{\"offset_ms\": 1500, \"inputs\": {\"q\": 7}}\n",
    )
    .unwrap();
    std::fs::write(
        &scenario,
        format!("host = \"http://127.0.0.1:9\"\n[run]\narrival_trace = \"bad.jsonl\"\n{SCENARIO}"),
    )
    .unwrap();
    let out = barrage().args(["validate", "-f", file]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("open model: replaying trace bad.jsonl (2 arrivals over 1.500s), at most 1000 in flight, run time (the trace's end)"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        &bad,
        "{\"offset_ms\": 5}\n{\"offset_ms\": 9, \"task\": \"lookup\"}\n{\"offset_ms\": 8}\n",
    )
    .unwrap();
    let e = run("arrival_trace = \"bad.jsonl\"", &["validate", "-f", file]);
    assert!(
        e.contains("run.arrival_trace")
            && e.contains("bad.jsonl:3: offset_ms 8 goes backwards (the line before is at 9 ms)"),
        "{e}"
    );
    let e = run(
        "arrival_trace = \"bad.jsonl\"\narrival_rate = 5",
        &["validate", "-f", file],
    );
    assert!(
        e.contains("run.arrival_rate")
            && e.contains("arrival_trace replays recorded arrivals and replaces arrival_rate"),
        "{e}"
    );
    std::fs::write(&bad, "{\"offset_ms\": 1, \"task\": \"nope\"}\n").unwrap();
    let trace = bad.to_str().unwrap();
    let e = run("", &["run", "-f", file, "--headless", "--arrival-trace", trace]);
    assert!(
        e.contains("--arrival-trace: ")
            && e.contains("bad.jsonl:1: unknown task `nope`; the scenario's tasks are lookup, other"),
        "{e}"
    );
    let e = run(
        "",
        &[
            "run",
            "-f",
            file,
            "--headless",
            "--arrival-trace",
            trace,
            "--arrival-rate",
            "5",
        ],
    );
    assert!(
        e.contains("--arrival-trace replays recorded arrivals and replaces --arrival-rate"),
        "{e}"
    );
}

/// A worker joining mid-replay takes its share from a line a little ahead of the
/// master's clock; the first worker fires its lines before that: every line still
/// arrives exactly once, and both workers sent some after the join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joining_mid_replay_takes_over_without_loss_or_repeat() {
    let (addr, log) = logging_target().await;
    let dir = tempfile::tempdir().unwrap();
    let mut load = load_args(addr, 1, 1.0, Duration::from_secs(30));
    load.users = None;
    load.spawn_rate = None;
    load.arrival_trace = Some(write_trace(dir.path(), 300));
    let m = master(setup(SCENARIO, &load, 1)).await;
    let first = worker(m.addr, "w0");
    // Join once the replay is under way (a third of the lines sent).
    let under_way = eventually(Duration::from_secs(20), || log.lock().unwrap().len() >= 100).await;
    assert!(under_way, "the replay did not start");
    let second = worker(m.addr, "w1");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = first.await;
    let _ = second.await;
    let seen = log.lock().unwrap().clone();
    let mut inputs: Vec<&str> = seen.iter().map(|(q, _, _)| q.as_str()).collect();
    inputs.sort_unstable();
    let mut unique = inputs.clone();
    unique.dedup();
    assert_eq!(unique.len(), inputs.len(), "a line sent twice");
    assert_eq!(inputs.len(), 300, "lines lost at the hand-over");
    assert_eq!(r.aggregated.requests, seen.len() as u64);
    let late: std::collections::BTreeSet<&str> = seen.iter().skip(150).map(|(_, w, _)| w.as_str()).collect();
    assert_eq!(late.len(), 2, "after the join both workers send: {late:?}");
    println!(
        "joining worker: 300 lines, target logged {} ({} distinct), reported {}",
        seen.len(),
        unique.len(),
        r.aggregated.requests
    );
}
