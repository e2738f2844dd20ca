//! The web API's security rules: loopback by default, POST with a token to change
//! anything, every call behind the token with --web-auth.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

/// One call to the web API; returns (status, body).
async fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = http(addr, method, path, &token_header(token), "").await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_open_on_loopback_and_stopping_needs_a_post_with_the_token() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 2, 100.0, Duration::from_secs(60));
    let mut s = setup(&workflow_scenario("constant(0.05)"), &load, 1);
    let web = with_web(&mut s, "let-me-stop", false);
    let m = master(s).await;
    let w = worker(m.addr, "w");
    assert!(
        eventually(Duration::from_secs(10), || m.cluster.aggregator().aggregated().requests
            > 0)
        .await
    );

    let (status, body) = call(web, "GET", "/api/stats", None).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["schema"], "barrage.report.v1");
    assert!(stats["aggregated"]["requests"].as_u64().unwrap() > 0);

    assert_eq!(
        call(web, "GET", "/api/stop", Some("let-me-stop")).await.0,
        405,
        "stop is POST only"
    );
    assert_eq!(call(web, "POST", "/api/stop", None).await.0, 401);
    assert_eq!(call(web, "POST", "/api/stop", Some("guess")).await.0, 401);
    assert!(!m.run.is_finished(), "a refused stop must not stop the run");
    assert_eq!(call(web, "POST", "/api/stop", Some("let-me-stop")).await.0, 202);
    let r = tokio::time::timeout(Duration::from_secs(20), m.run)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .report;
    assert_eq!(r.stop_reason, "stopped from the web API");
    assert_eq!(r.aggregated.requests, mock.state.ground_truth().requests);
    let _ = w.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_web_auth_reads_need_the_token_too() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 1, 100.0, Duration::from_secs(30));
    let mut s = setup(&workflow_scenario("constant(0.05)"), &load, 1);
    let web = with_web(&mut s, "tok", true);
    let m = master(s).await;
    assert!(eventually(Duration::from_secs(5), || std::net::TcpStream::connect(web).is_ok()).await);
    assert_eq!(call(web, "GET", "/api/stats", None).await.0, 401);
    assert_eq!(call(web, "GET", "/api/stats", Some("tok")).await.0, 200);
    m.run.abort();
}

#[test]
fn binding_beyond_loopback_needs_web_auth() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args([
            "master",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/dify-workflow.toml"),
        ])
        .args(["--web-host", "0.0.0.0", "-t", "1s"])
        .env("DIFY_API_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs --web-auth"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args([
            "master",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/dify-workflow.toml"),
        ])
        .args(["--web-host", "0.0.0.0", "--web-auth", "-t", "1s"])
        .env("DIFY_API_KEY", KEY)
        .env_remove("BARRAGE_WEB_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("BARRAGE_WEB_TOKEN"), "{stderr}");
}

/// POST with a JSON body; returns (status, body).
async fn post_json(addr: SocketAddr, path: &str, token: Option<&str>, json: &str) -> (u16, String) {
    let headers = format!("{}content-type: application/json\r\n", token_header(token));
    let (status, _, body) = http(addr, "POST", path, &headers, json).await;
    (status, body)
}

/// The users of a running test change from the API: the target sees the new count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_change_live_from_the_api() {
    // Long streams: each user holds one open, so the mock's open streams are our users.
    let mock = mock(sse_mock_config(5, 2000, 10)).await;
    let mut load = load_args(mock.addr, 2, 100.0, Duration::from_secs(60));
    load.stop_timeout = Duration::from_millis(200);
    let mut s = setup(
        &workflow_scenario("constant(0)").replace("weight = 1\nwait", "weight = 0\nwait"),
        &load,
        1,
    );
    let web = with_web(&mut s, "steer", false);
    let m = master(s).await;
    let w = worker(m.addr, "w");
    let streams = || mock.state.ground_truth().active_streams;
    assert!(eventually(Duration::from_secs(10), || streams() == 2).await);

    let (status, _) = post_json(web, "/api/target", None, r#"{"users": 5}"#).await;
    assert_eq!(status, 401, "changing the load needs the token");
    let (status, body) = post_json(web, "/api/target", Some("steer"), r#"{"arrival_rate": 5}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("change users and spawn_rate"), "{body}");
    let (status, body) = post_json(web, "/api/target", Some("steer"), r#"{"users": "many"}"#).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = post_json(web, "/api/target", Some("steer"), r#"{"users": 5, "spawn_rate": 50}"#).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        eventually(Duration::from_secs(10), || streams() == 5).await,
        "{}",
        streams()
    );
    let (status, _) = post_json(web, "/api/target", Some("steer"), r#"{"users": 1}"#).await;
    assert_eq!(status, 202);
    assert!(
        eventually(Duration::from_secs(10), || streams() == 1).await,
        "{}",
        streams()
    );

    let (status, _) = call(web, "POST", "/api/stop", Some("steer")).await;
    assert_eq!(status, 202);
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    assert_eq!(mock.state.ground_truth().max_concurrent_streams, 5);
    let changes: Vec<&String> = r.events.iter().filter(|e| e.contains("web API")).collect();
    assert_eq!(changes.len(), 2, "{:?}", r.events);
}
