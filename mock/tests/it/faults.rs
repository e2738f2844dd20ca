//! Injected faults over the wire: what a client sees, and the outcome the mock counted.

use std::time::Duration;

use barrage_mock::{Fault, MockConfig, Outcome};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::support::{Mock, assert_one_outcome_per_request, fast_config};

const RUN: &str = "/v1/workflows/run";
const CHAT: &str = "/v1/chat-messages";

fn streaming() -> Value {
    json!({"inputs": {}, "response_mode": "streaming", "user": "u"})
}

fn blocking() -> Value {
    json!({"inputs": {}, "response_mode": "blocking", "user": "u"})
}

fn chat_streaming() -> Value {
    json!({"inputs": {}, "query": "q", "response_mode": "streaming", "user": "u"})
}

#[tokio::test]
async fn http_faults_answer_difys_envelope_with_a_fitting_code() {
    let mock = Mock::start(fast_config()).await;
    let cases = [
        ("http-400", 400, "invalid_param"),
        ("http-401", 401, "unauthorized"),
        ("http-404", 404, "not_found"),
        ("http-429", 429, "too_many_requests"),
        ("http-500", 500, "internal_server_error"),
        ("http-502", 502, "bad_gateway"),
        ("http-503", 503, "app_unavailable"),
        ("rate-limit", 429, "rate_limit_error"),
    ];
    for (fault, status, code) in cases {
        let response = mock.post(RUN, &[("x-mock-fault", fault)], streaming()).await;
        assert_eq!(response.status(), status, "{fault}");
        let (body, _) = response.json().await;
        assert_eq!(
            (body["code"].as_str(), body["status"].as_u64()),
            (Some(code), Some(status.into()))
        );
        if fault == "rate-limit" {
            assert_eq!(body["message"], "Rate Limit Error");
        }
    }
    let truth = mock.truth();
    assert_eq!(truth.outcome(Outcome::Http4xx), 2);
    assert_eq!(truth.outcome(Outcome::Unauthorized), 1);
    assert_eq!(truth.outcome(Outcome::TooManyRequests), 1);
    assert_eq!(truth.outcome(Outcome::RateLimitError), 1);
    assert_eq!(truth.outcome(Outcome::Http5xx), 3);
    assert_eq!(truth.http_statuses["429"], 2);
    assert_eq!(truth.unauthorized, 1);
    assert_eq!(truth.streams_started, 0);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn a_configured_fault_applies_unless_the_header_says_otherwise() {
    let mock = Mock::start(MockConfig {
        fault: Fault::RateLimit,
        ..fast_config()
    })
    .await;
    assert_eq!(mock.post(RUN, &[], blocking()).await.status(), 429);
    assert_eq!(
        mock.post(RUN, &[("x-mock-fault", "none")], blocking()).await.status(),
        200
    );
    let truth = mock.wait_until(|t| t.outcomes.values().sum::<u64>() == 2).await;
    assert_eq!(truth.outcome(Outcome::RateLimitError), 1);
    assert_eq!(truth.outcome(Outcome::Succeeded), 1);
}

#[tokio::test]
async fn reset_breaks_the_stream_after_k_events() {
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post(
            RUN,
            &[("x-mock-fault", "reset"), ("x-mock-fault-after", "3")],
            streaming(),
        )
        .await
        .into_sse();
    let (events, error) = sse.read_all().await;
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["workflow_started", "node_started", "node_finished"]);
    assert!(error.is_some(), "the body ended cleanly");

    let truth = mock.wait_until(|t| t.streams_reset == 1 && t.active_streams == 0).await;
    assert_eq!((truth.streams_completed, truth.streams_aborted), (0, 0));
    assert_eq!(truth.outcome(Outcome::Reset), 1);
    assert_eq!(truth.events_sent, 3);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn stall_goes_silent_until_the_client_leaves() {
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post(
            CHAT,
            &[
                ("x-mock-fault", "stall"),
                ("x-mock-fault-after", "1"),
                ("x-mock-ping-interval-ms", "2"),
                ("x-mock-chunk-interval-ms", "10"),
            ],
            chat_streaming(),
        )
        .await
        .into_sse();
    let stalled = mock.wait_until(|t| t.outcome(Outcome::Stall) == 1).await;
    let mut received = Vec::new();
    while received.len() < stalled.events_sent as usize {
        received.push(sse.next().await.unwrap().name().to_owned());
    }
    assert_eq!(
        received.iter().filter(|name| *name == "message").count(),
        1,
        "{received:?}"
    );
    // Then silence: not even the 2 ms pings.
    let silence = tokio::time::timeout(Duration::from_millis(100), sse.next()).await;
    assert!(silence.is_err(), "the stall sent {silence:?}");
    sse.hang_up();

    let truth = mock.wait_until(|t| t.active_streams == 0).await;
    assert_eq!((truth.streams_aborted, truth.streams_completed), (1, 0));
    assert_eq!(truth.outcomes.len(), 1, "{:?}", truth.outcomes);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn giant_event_arrives_whole_then_the_stream_continues() {
    const GIANT: usize = 300_000;
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post(
            RUN,
            &[
                ("x-mock-fault", "giant-event"),
                ("x-mock-giant-bytes", "300000"),
                ("x-mock-chunks", "2"),
            ],
            streaming(),
        )
        .await
        .into_sse();
    let events = sse.collect().await;
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "workflow_started",
            "node_started",
            "tts_message",
            "node_finished",
            "text_chunk",
            "text_chunk",
            "node_started",
            "node_finished",
            "workflow_finished",
        ]
    );
    assert_eq!(events[2].len, GIANT);
    assert_eq!(events[2].json()["task_id"], events[0].json()["task_id"]);
    assert_eq!(events[8].json()["data"]["status"], "succeeded");

    let truth = mock.truth();
    assert_eq!(truth.outcome(Outcome::GiantEvent), 1);
    assert_eq!(truth.outcome(Outcome::Succeeded), 0);
    assert_eq!(truth.streams_completed, 1);
    assert_eq!(truth.events_sent, events.len() as u64);
    assert_eq!(truth.bytes_sent, sse.bytes as u64);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn malformed_json_is_one_bad_event_in_a_good_stream() {
    let mock = Mock::start(fast_config()).await;
    let events = mock
        .post(
            CHAT,
            &[("x-mock-fault", "malformed-json"), ("x-mock-fault-after", "0")],
            chat_streaming(),
        )
        .await
        .into_sse()
        .collect()
        .await;
    assert_eq!(events[0].raw.as_deref(), Some("{not json"));
    let names: Vec<&str> = events[1..].iter().map(|e| e.name()).collect();
    assert_eq!(names, ["message", "message", "message", "message_end"]);
    let truth = mock.truth();
    assert_eq!(truth.outcome(Outcome::MalformedJson), 1);
    assert_eq!(truth.streams_completed, 1);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn stopped_fault_ends_with_status_stopped() {
    let mock = Mock::start(fast_config()).await;
    let events = mock
        .post(
            RUN,
            &[
                ("x-mock-fault", "stopped"),
                ("x-mock-fault-after", "4"),
                ("x-mock-chunks", "5"),
            ],
            streaming(),
        )
        .await
        .into_sse()
        .collect()
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "workflow_started",
            "node_started",
            "node_finished",
            "text_chunk",
            "workflow_finished"
        ]
    );
    let finished = &events[4].json()["data"];
    assert_eq!(finished["status"], "stopped");
    assert_eq!(finished["total_tokens"], 12 + 1);
    let truth = mock.truth();
    assert_eq!(truth.outcome(Outcome::Stopped), 1);
    assert_eq!((truth.streams_completed, truth.streams_stopped), (1, 0));
    assert_eq!(truth.workflow_total_tokens, 13);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn jitter_stretches_the_intervals() {
    let mock = Mock::start(fast_config()).await;
    let events = mock
        .post(
            CHAT,
            &[
                ("x-mock-chunks", "19"),
                ("x-mock-chunk-interval-ms", "1"),
                ("x-mock-jitter-ms", "10"),
            ],
            chat_streaming(),
        )
        .await
        .into_sse()
        .collect()
        .await;
    assert_eq!(events.len(), 20);
    // 19 intervals of 1 ms plus 19 uniform draws from 0..=10 ms (mean 95 ms in all);
    // under 19 ms of jitter in total has a probability around 1e-9.
    let span = events[19].at - events[0].at;
    assert!(span >= Duration::from_millis(19 + 19), "{span:?}");
}

#[tokio::test]
async fn blocking_calls_fail_in_the_body() {
    let mock = Mock::start(fast_config()).await;

    let response = mock.post(RUN, &[("x-mock-fault", "malformed-json")], blocking()).await;
    assert_eq!(response.status(), 200);
    let body = response.response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"{not json");

    let response = mock
        .post(
            RUN,
            &[("x-mock-fault", "giant-event"), ("x-mock-giant-bytes", "100000")],
            blocking(),
        )
        .await;
    let (body, len) = response.json().await;
    assert_eq!(len, 100_000);
    assert_eq!(body["data"]["status"], "succeeded");

    let failed = match mock.try_post(RUN, &[("x-mock-fault", "reset")], blocking()).await {
        Err(_) => true,
        Ok(response) => response.response.into_body().collect().await.is_err(),
    };
    assert!(failed, "a reset blocking call was answered in full");

    let mut stalled = mock.post(RUN, &[("x-mock-fault", "stall")], blocking()).await;
    let silence = tokio::time::timeout(Duration::from_millis(50), stalled.response.body_mut().frame()).await;
    assert!(silence.is_err(), "a stalled blocking call was answered");
    stalled.hang_up();

    let truth = mock
        .wait_until(|t| t.outcomes.values().sum::<u64>() == 4 && t.active_connections == 0)
        .await;
    for outcome in [
        Outcome::MalformedJson,
        Outcome::GiantEvent,
        Outcome::Reset,
        Outcome::Stall,
    ] {
        assert_eq!(truth.outcome(outcome), 1, "{outcome}");
    }
    assert_eq!(truth.blocking_completed, 2);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn shutdown_ends_stalled_streams() {
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post(
            CHAT,
            &[("x-mock-fault", "stall"), ("x-mock-fault-after", "0")],
            chat_streaming(),
        )
        .await
        .into_sse();
    mock.wait_until(|t| t.outcome(Outcome::Stall) == 1).await;
    let state = mock.state.clone();
    // Graceful shutdown waits for open streams; a stall must not hold it forever.
    mock.stop().await;
    let (events, _) = sse.read_all().await;
    assert!(events.is_empty(), "{events:?}");
    let truth = state.ground_truth();
    assert_eq!((truth.active_streams, truth.streams_aborted), (0, 1));
    assert_eq!(truth.outcomes.len(), 1);
}
