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
    let (m, web, w) = web_run(mock.addr, 2, Duration::from_secs(60), "let-me-stop").await;

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
    let out = barrage()
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
    let out = barrage()
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
pub(crate) async fn post_json(addr: SocketAddr, path: &str, token: Option<&str>, json: &str) -> (u16, String) {
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

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `--start-from-ui`: the master waits with its workers in until the web API starts
/// the run with users, spawn rate and run time of its own; the run's figures, its
/// downloads and the target's count agree; after the run the page keeps its downloads
/// until a POST /api/stop closes the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_from_the_web_api_runs_what_it_was_asked() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let (m, web, w) = ui_master(mock.addr, "tok").await;
    assert!(
        eventually(Duration::from_secs(10), || m.cluster.registry().len() == 1).await,
        "the worker joins"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = json(&call(web, "GET", "/api/state", None).await.1);
    assert_eq!(state["state"], "waiting", "{state}");
    assert_eq!(state["start_from_ui"], true);
    assert_eq!(state["workers"][0]["state"], "connected", "{state}");
    assert_eq!(
        mock.state.ground_truth().requests,
        0,
        "nothing is sent before the start"
    );

    let start = r#"{"users": 3, "spawn_rate": 100, "run_time_s": 2}"#;
    assert_eq!(post_json(web, "/api/start", None, start).await.0, 401);
    let (status, body) = post_json(web, "/api/start", Some("tok"), r#"{"users": 3, "spawn_rate": 0}"#).await;
    assert_eq!((status, body.contains("spawn_rate")), (400, true), "{body}");
    let (status, body) = post_json(
        web,
        "/api/start",
        Some("tok"),
        r#"{"users": 3, "spawn_rate": 1, "host": "ftp://x"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(post_json(web, "/api/start", Some("tok"), start).await.0, 202);
    assert_eq!(
        post_json(web, "/api/start", Some("tok"), start).await.0,
        409,
        "one start"
    );

    // The final report is out once /api/stats serves it instead of the run so far.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut over = false;
    while !over && tokio::time::Instant::now() < deadline {
        over = json(&call(web, "GET", "/api/stats", None).await.1)["stop_reason"] != "running";
        if !over {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(over, "the 2 s run ends");
    let state = json(&call(web, "GET", "/api/state", None).await.1);
    assert_eq!(
        (state["state"].as_str(), state["users"].as_u64()),
        (Some("done"), Some(3)),
        "{state}"
    );
    let truth = mock.state.ground_truth().requests;
    let stats = json(&call(web, "GET", "/api/stats", None).await.1);
    assert_eq!(stats["users"], 3);
    assert_eq!(stats["aggregated"]["requests"].as_u64(), Some(truth));
    assert!(
        (2.0..4.0).contains(&stats["duration_s"].as_f64().unwrap()),
        "{}",
        stats["duration_s"]
    );

    // The downloads: Locust's stats CSV, the JSON with its merged data, the HTML page.
    let (status, head, csv) = http(web, "GET", "/api/download/stats.csv", "", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("attachment; filename=\"barrage-stats.csv\""), "{head}");
    let aggregated = csv.lines().last().unwrap();
    assert!(aggregated.starts_with(&format!(",Aggregated,{truth},")), "{csv}");
    let saved = json(&call(web, "GET", "/api/download/report.json", None).await.1);
    assert!(!saved["merged"].as_array().unwrap().is_empty());
    let (status, _, page) = http(web, "GET", "/api/download/report.html", "", "").await;
    assert!(status == 200 && page.contains("id=\"barrage-report\""));
    assert_eq!(call(web, "GET", "/api/download/secrets.txt", None).await.0, 404);
    assert_eq!(
        post_json(web, "/api/reset", Some("tok"), "").await.0,
        409,
        "the run is over"
    );

    assert!(!m.run.is_finished(), "the master keeps the downloads up");
    assert_eq!(post_json(web, "/api/stop", Some("tok"), "").await.0, 202);
    let out = tokio::time::timeout(Duration::from_secs(10), m.run)
        .await
        .expect("POST /api/stop closes the master")
        .unwrap()
        .unwrap();
    assert_eq!(out.report.users, 3);
    assert_eq!(out.report.aggregated.requests, truth);
    let _ = w.await;
}

/// Reset statistics mid-run: the totals start again (fewer than the target saw over
/// the run, as many as it saw since), the timeline stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_the_statistics_counts_from_the_reset() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let (m, web, w) = web_run(mock.addr, 2, Duration::from_secs(4), "tok").await;
    assert!(
        eventually(Duration::from_secs(10), || m
            .cluster
            .aggregator()
            .aggregated()
            .counts
            .requests
            > 5)
        .await
    );
    assert_eq!(post_json(web, "/api/reset", None, "").await.0, 401);
    let (status, body) = post_json(web, "/api/reset", Some("tok"), "").await;
    assert_eq!(status, 202, "{body}");
    let at = json(&body)["reset_at_s"].as_f64().unwrap();
    let out = m.run.await.unwrap().unwrap();
    let _ = w.await;
    let r = &out.report;
    let truth = mock.state.ground_truth().requests;
    assert!(r.aggregated.requests < truth, "{} of {truth}", r.aggregated.requests);
    assert!(r.aggregated.requests > 0);
    assert_eq!(r.stats_since_s, at);
    // Rates are over the time since the reset.
    let rate = r.aggregated.requests as f64 / (r.duration_s - at);
    assert!((r.aggregated.rps - rate).abs() < 1e-9, "{} vs {rate}", r.aggregated.rps);
    // The per-second timeline still holds the seconds before the reset.
    let timeline: u64 = r.timeline.iter().map(|p| p.rps).sum();
    assert!(
        timeline > r.aggregated.requests,
        "{timeline} vs {}",
        r.aggregated.requests
    );
    assert!(
        r.events.iter().any(|e| e.contains("statistics reset")),
        "{:?}",
        r.events
    );
}
