//! Workflow runs over the wire: the event sequence, its timing, overrides, blocking mode.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Mock, fast_config};

const RUN: &str = "/v1/workflows/run";

fn streaming() -> Value {
    json!({"inputs": {"q": "hi"}, "response_mode": "streaming", "user": "u-1"})
}

#[tokio::test]
async fn stream_follows_difys_sequence_and_timetable() {
    let mock = Mock::start(fast_config()).await;
    let response = mock
        .post(
            RUN,
            &[
                ("x-mock-first-event-delay-ms", "20"),
                ("x-mock-chunks", "4"),
                ("x-mock-chunk-interval-ms", "3"),
            ],
            streaming(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("content-type"), "text/event-stream");
    assert_eq!(response.header("cache-control"), "no-cache");
    let mut sse = response.into_sse();
    let events = sse.collect().await;

    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "workflow_started",
            "node_started",
            "node_finished",
            "text_chunk",
            "text_chunk",
            "text_chunk",
            "text_chunk",
            "node_started",
            "node_finished",
            "workflow_finished",
        ]
    );
    // The first event is written 20 ms after arrival, the last 9 intervals later.
    assert!(events[0].at >= Duration::from_millis(20), "{:?}", events[0].at);
    let last = events.last().unwrap();
    assert!(last.at >= Duration::from_millis(20 + 9 * 3), "{:?}", last.at);

    let data: Vec<&Value> = events.iter().filter_map(|e| e.data.as_ref()).collect();
    let run_id = data[0]["workflow_run_id"].as_str().unwrap();
    for event in &data {
        assert_eq!(event["workflow_run_id"], run_id);
        assert_eq!(event["task_id"], data[0]["task_id"]);
        assert!(event["data"].is_object());
    }
    let started = &data[0]["data"];
    assert_eq!(started["id"], run_id);
    assert_eq!(started["sequence_number"], 1);
    assert!(started["workflow_id"].is_string() && started["created_at"].is_u64());
    assert_eq!(data[1]["data"]["node_type"], "start");
    let streamed: String = data[3..7].iter().map(|e| e["data"]["text"].as_str().unwrap()).collect();
    let finished = &data[9]["data"];
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["error"], Value::Null);
    assert_eq!(finished["outputs"]["text"], streamed);
    assert_eq!(finished["total_steps"], 2);
    assert!(finished["total_tokens"].as_u64().unwrap() >= 4);
    assert!(finished["elapsed_time"].as_f64().unwrap() >= 0.020 + 9.0 * 0.003);
    assert!(finished["finished_at"].as_u64() >= finished["created_at"].as_u64());

    let truth = mock.truth();
    assert_eq!(truth.requests, 1);
    assert_eq!(truth.workflow_runs, 1);
    assert_eq!(truth.streams_started, 1);
    assert_eq!(truth.streams_completed, 1);
    assert_eq!(truth.streams_aborted, 0);
    assert_eq!(truth.active_streams, 0);
    assert_eq!(truth.events_sent, 10);
    assert_eq!(truth.bytes_sent, sse.bytes as u64);
}

#[tokio::test]
async fn workflow_id_route_reports_that_id() {
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post("/v1/workflows/wf-42/run", &[("x-mock-chunks", "0")], streaming())
        .await
        .into_sse();
    let events = sse.collect().await;
    assert_eq!(events.len(), 6);
    let last = events.last().unwrap().data.clone().unwrap();
    assert_eq!(last["event"], "workflow_finished");
    assert_eq!(last["data"]["workflow_id"], "wf-42");
    assert_eq!(mock.truth().workflow_runs, 1);
}

#[tokio::test]
async fn config_defaults_apply_without_headers() {
    let mock = Mock::start(fast_config()).await; // chunks = 3
    let events = mock.post(RUN, &[], streaming()).await.into_sse().collect().await;
    let chunks = events.iter().filter(|e| e.name() == "text_chunk").count();
    assert_eq!(chunks, 3);
    assert!(events[0].at >= Duration::from_millis(5));
}

#[tokio::test]
async fn pings_are_sent_and_counted() {
    let mock = Mock::start(fast_config()).await;
    let events = mock
        .post(
            RUN,
            &[
                ("x-mock-ping-interval-ms", "4"),
                ("x-mock-first-event-delay-ms", "40"),
                ("x-mock-chunks", "0"),
                ("x-mock-chunk-interval-ms", "0"),
            ],
            streaming(),
        )
        .await
        .into_sse()
        .collect()
        .await;
    let pings = events.iter().filter(|e| e.data.is_none()).count();
    // Pings due every 4 ms come before the first event at 40 ms; even a mock running
    // late on a loaded machine (a late ping slips the next one) sends two of them.
    assert_eq!(events[0].name(), "ping");
    assert!(pings >= 2, "{events:?}");
    assert_eq!(events.last().unwrap().name(), "workflow_finished");
    let truth = mock.truth();
    assert_eq!(truth.pings_sent, pings as u64);
    assert_eq!(truth.events_sent, events.len() as u64);
}

#[tokio::test]
async fn blocking_answers_the_finished_run() {
    let mock = Mock::start(fast_config()).await;
    let response = mock
        .post(
            RUN,
            &[
                ("x-mock-first-event-delay-ms", "10"),
                ("x-mock-chunks", "3"),
                ("x-mock-chunk-interval-ms", "5"),
            ],
            json!({"inputs": {}, "response_mode": "blocking", "user": "u"}),
        )
        .await;
    let sent_at = response.sent_at;
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("content-type"), "application/json");
    let (body, len) = response.json().await;
    assert!(sent_at.elapsed() >= Duration::from_millis(10 + 3 * 5));
    assert!(body["task_id"].is_string());
    assert_eq!(body["data"]["id"], body["workflow_run_id"]);
    assert_eq!(body["data"]["status"], "succeeded");
    assert_eq!(body["data"]["outputs"]["text"], "Barrage is streaming");

    // No response_mode means blocking, as in Dify.
    let (body, len2) = mock
        .post(RUN, &[], json!({"inputs": {}, "user": "u"}))
        .await
        .json()
        .await;
    assert_eq!(body["data"]["status"], "succeeded");

    let truth = mock.truth();
    assert_eq!(truth.requests, 2);
    assert_eq!(truth.blocking_completed, 2);
    assert_eq!(truth.streams_started, 0);
    assert_eq!(truth.events_sent, 0);
    assert_eq!(truth.bytes_sent, (len + len2) as u64);
}

#[tokio::test]
async fn injected_faults_look_like_difys_failures() {
    let mock = Mock::start(fast_config()).await;
    let events = mock
        .post(RUN, &[("x-mock-fault", "failed")], streaming())
        .await
        .into_sse()
        .collect()
        .await;
    let last = events.last().unwrap().data.clone().unwrap();
    assert_eq!(last["data"]["status"], "failed");
    assert!(last["data"]["error"].is_string());

    let events = mock
        .post(RUN, &[("x-mock-fault", "error")], streaming())
        .await
        .into_sse()
        .collect()
        .await;
    let last = events.last().unwrap().data.clone().unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["status"], 400);

    let response = mock.post(RUN, &[("x-mock-fault", "http-500")], streaming()).await;
    assert_eq!(response.status(), 500);
    let (body, _) = response.json().await;
    assert_eq!(body["code"], "internal_server_error");

    let truth = mock.truth();
    // A failed run's terminal event is still written in full.
    assert_eq!(truth.streams_completed, 2);
    assert_eq!(truth.streams_started, 2);
    assert_eq!(truth.requests, 3);
}
