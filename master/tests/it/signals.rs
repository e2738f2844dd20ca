//! Signals as operators send them: SIGINT/SIGTERM to a master, SIGTERM to a worker,
//! and a wrong cluster token.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn example() -> String {
    format!("{}/../examples/dify-workflow.toml", env!("CARGO_MANIFEST_DIR"))
}

fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// `barrage master` on 127.0.0.1:`port` against the mock, 60 s, `users` users.
fn master_command(mock: std::net::SocketAddr, port: u16, users: u32) -> Command {
    let mut cmd = barrage();
    cmd.args([
        "master",
        "-f",
        &example(),
        "-H",
        &format!("http://{mock}"),
        "-u",
        &users.to_string(),
    ])
    .args([
        "-r",
        "100",
        "-t",
        "60s",
        "--headless",
        "--master-bind-host",
        "127.0.0.1",
    ])
    .args(["--master-bind-port", &port.to_string()]);
    cmd
}

/// SIGINT: stop, collect final reports, write every report, exit; the numbers hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_on_the_master_stops_gracefully_and_writes_the_report() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let port = free_port();
    let master = master_command(mock.addr, port, 3)
        .args(["--json", json.to_str().unwrap(), "--only-summary"])
        .env("DIFY_API_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let w = worker(format!("127.0.0.1:{port}").parse().unwrap(), "w");
    assert!(
        eventually(Duration::from_secs(15), || mock.state.ground_truth().requests >= 10).await,
        "no load"
    );
    kill("-INT", master.id());
    let at = Instant::now();
    let out = tokio::task::spawn_blocking(move || master.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        at.elapsed() < Duration::from_secs(10),
        "graceful stop took {:?}",
        at.elapsed()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("FINAL RESULTS") && stdout.contains("interrupted"),
        "{stdout}"
    );
    assert_eq!(w.await.unwrap().unwrap(), barrage_worker::Exit::RunFinished);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        report["aggregated"]["requests"].as_u64().unwrap(),
        mock.state.ground_truth().requests
    );
}

/// A second signal while the first one's graceful stop waits: exit at once (130).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    // Streams of 10 s and a 60 s stop timeout: the graceful stop would take long.
    let mock = mock(sse_mock_config(5, 100, 100)).await;
    let port = free_port();
    let mut master = master_command(mock.addr, port, 2)
        .args(["--stop-timeout", "60s", "--only-summary"])
        .env("DIFY_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let w = worker(format!("127.0.0.1:{port}").parse().unwrap(), "w");
    assert!(
        eventually(Duration::from_secs(15), || mock.state.ground_truth().active_streams
            >= 2)
        .await,
        "no streams"
    );
    kill("-TERM", master.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        master.try_wait().unwrap().is_none(),
        "the first signal must wait for in-flight streams"
    );
    kill("-TERM", master.id());
    let at = Instant::now();
    let status = tokio::task::spawn_blocking(move || master.wait().unwrap())
        .await
        .unwrap();
    assert!(
        at.elapsed() < Duration::from_secs(3),
        "the second signal took {:?}",
        at.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    w.abort();
}

/// SIGTERM on a worker: it finishes in-flight requests, sends its final report, leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_worker_sends_its_final_report_and_leaves() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 2, 100.0, Duration::from_secs(8));
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 1)).await;
    let mut child = barrage()
        .args(["worker", "--master", &m.addr.to_string(), "--worker-id", "leaver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || reports_of(&m.cluster, "leaver") >= 2).await);
    kill("-TERM", child.id());
    let at = Instant::now();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(at.elapsed() < Duration::from_secs(8), "leaving took {:?}", at.elapsed());
    assert!(
        m.cluster.aggregator().workers["leaver"].final_seen,
        "no final report before leaving"
    );
    let in_flight = mock.state.ground_truth().active_streams;
    assert_eq!(in_flight, 0, "the worker left streams open");
    m.run.abort();
}

/// A worker with the wrong cluster token is refused at once and says why (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_with_a_clear_message() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 1, 1.0, Duration::from_secs(30));
    let mut s = setup(&workflow_scenario("constant(1)"), &load, 1);
    s.opts.token = Some("right-token".into());
    let m = master(s).await;
    let addr = m.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        barrage()
            .args(["worker", "--master", &addr])
            .env("BARRAGE_CLUSTER_TOKEN", "wrong-token")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("wrong cluster token") && stderr.contains("BARRAGE_CLUSTER_TOKEN"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong-token") && !stderr.contains("right-token"),
        "a token was printed: {stderr}"
    );
    assert!(m.cluster.registry().is_empty());
    m.run.abort();
}

/// The token can come from a file (a Kubernetes Secret mount); a missing file is a
/// usage error that names the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_is_read_and_checked() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 1, 1.0, Duration::from_secs(30));
    let mut s = setup(&workflow_scenario("constant(1)"), &load, 1);
    s.opts.token = Some("right-token".into());
    let m = master(s).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "wrong-token\n").unwrap();
    let (addr, f) = (m.addr.to_string(), file.clone());
    let out = tokio::task::spawn_blocking(move || {
        barrage()
            .args(["worker", "--master", &addr])
            .env("BARRAGE_CLUSTER_TOKEN_FILE", &f)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "the file's (wrong) token must be used");
    let missing = dir.path().join("nope");
    let out = barrage()
        .args(["worker", "--master", &m.addr.to_string()])
        .env("BARRAGE_CLUSTER_TOKEN_FILE", &missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("BARRAGE_CLUSTER_TOKEN_FILE"), "{stderr}");
    m.run.abort();
}
