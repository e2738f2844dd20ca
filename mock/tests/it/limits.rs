//! The two capacity limits of a dify-api pod: runs in flight per app (`--max-active`,
//! answered 400 as dify-api 1.14.1 does, or 429 for an earlier `--dify-version`) and TCP
//! connections served at once (`--max-connections`, queued).

use http::Method;
use serde_json::{Value, json};

use barrage_mock::{DifyVersion, MockConfig, Outcome};

use crate::support::{Mock, assert_one_outcome_per_request, fast_config, send_to};

const RUN: &str = "/v1/workflows/run";
/// Headers for a stream that stays open (its first event is a minute away).
const HELD: [(&str, &str); 1] = [("x-mock-first-event-delay-ms", "60000")];

fn streaming() -> Value {
    json!({"inputs": {}, "response_mode": "streaming", "user": "u"})
}

fn blocking() -> Value {
    json!({"inputs": {}, "response_mode": "blocking", "user": "u"})
}

/// dify-api 1.14.1's answer to a run over `max_active_requests` = 2, as captured from
/// the real server (headers `HTTP/1.1 400 BAD REQUEST`, `Content-Type: application/json`,
/// `Content-Length: 188`, `X-Version: 1.14.1`); `{app_id}` is the app's id.
const LIMIT_400_BODY: &str = "{\"code\":\"invalid_param\",\"message\":\"Too many requests. Please try again later. The current maximum concurrent requests allowed for {app_id} is 2.\",\"status\":400}\n";

#[tokio::test]
async fn max_active_answers_as_dify_1_14_1_does_byte_for_byte() {
    let mock = Mock::start(MockConfig {
        max_active: 2,
        ..fast_config()
    })
    .await;
    let _first = mock.post(RUN, &HELD, streaming()).await.into_sse();
    let _second = mock.post(RUN, &HELD, streaming()).await.into_sse();
    for body in [streaming(), blocking()] {
        let response = mock.post(RUN, &[], body).await;
        assert_eq!(response.status(), 400);
        assert_eq!(response.header("content-type"), "application/json");
        assert_eq!(response.header("x-version"), "1.14.1");
        let want = LIMIT_400_BODY.replace("{app_id}", mock.state.app_id());
        assert_eq!(String::from_utf8(response.bytes().await).unwrap(), want);
    }
    let truth = mock.truth();
    // The status is 400, but a client that reads it right counts the app's limit.
    assert_eq!(truth.outcome(Outcome::TooManyRequests), 2);
    assert_eq!(truth.outcome(Outcome::Http4xx), 0);
    assert_eq!(truth.http_statuses["400"], 2);
}

#[tokio::test]
async fn max_active_answers_too_many_requests_before_1_14_1() {
    let mock = Mock::start(MockConfig {
        max_active: 2,
        dify_version: DifyVersion::new(1, 13, 0),
        ..fast_config()
    })
    .await;
    let first = mock.post(RUN, &HELD, streaming()).await.into_sse();
    let _second = mock.post(RUN, &HELD, streaming()).await.into_sse();

    for body in [streaming(), blocking()] {
        let response = mock.post(RUN, &[], body).await;
        assert_eq!(response.status(), 429);
        let (body, _) = response.json().await;
        assert_eq!(body["code"], "too_many_requests");
        assert_eq!(body["status"], 429);
        assert_eq!(
            body["message"],
            format!(
                "Too many requests. Please try again later. The current maximum concurrent requests allowed for {} is 2.",
                mock.state.app_id()
            )
        );
    }

    // A slot frees when a stream ends; then runs are admitted again.
    first.hang_up();
    mock.wait_until(|t| t.active_streams == 1).await;
    assert_eq!(mock.post(RUN, &[], blocking()).await.status(), 200);

    let truth = mock.truth();
    assert_eq!(truth.outcome(Outcome::TooManyRequests), 2);
    assert_eq!(truth.http_statuses["429"], 2);
    assert_eq!(truth.max_concurrent_streams, 2);
    assert_eq!(truth.streams_started, 2);
}

#[tokio::test]
async fn a_slot_is_free_again_once_the_run_has_answered() {
    let mock = Mock::start(MockConfig {
        max_active: 1,
        ..fast_config()
    })
    .await;
    for _ in 0..3 {
        let events = mock.post(RUN, &[], streaming()).await.into_sse().collect().await;
        assert_eq!(events.last().unwrap().name(), "workflow_finished");
        let (body, _) = mock.post(RUN, &[], blocking()).await.json().await;
        assert_eq!(body["data"]["status"], "succeeded");
    }
    let truth = mock.truth();
    assert_eq!(truth.outcome(Outcome::Succeeded), 6);
    assert_eq!(truth.outcome(Outcome::TooManyRequests), 0);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn max_connections_queues_at_accept() {
    let mock = Mock::start(MockConfig {
        max_connections: 1,
        ..fast_config()
    })
    .await;
    let held = mock.post(RUN, &HELD, streaming()).await.into_sse();
    mock.wait_until(|t| t.active_connections == 1).await;

    let addr = mock.addr;
    let queued = tokio::spawn(async move {
        let response = send_to(addr, Method::POST, RUN, &[], Some(blocking())).await.unwrap();
        (response.status(), response.json().await.0)
    });
    let truth = mock
        .wait_until(|t| t.queued_connections == 1 && t.connections_accepted == 2)
        .await;
    // Accepted, but its request has not been read: the one served connection is busy.
    assert_eq!(truth.requests, 1);
    assert_eq!(truth.active_connections, 1);
    assert!(!queued.is_finished());

    held.hang_up();
    let (status, body) = queued.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "succeeded");

    let truth = mock
        .wait_until(|t| t.active_connections == 0 && t.queued_connections == 0)
        .await;
    assert_eq!(truth.requests, 2);
    assert_eq!(truth.connections_accepted, 2);
    assert_eq!(truth.max_concurrent_connections, 1);
    assert_eq!(truth.max_queued_connections, 1);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn connections_are_counted_without_a_cap() {
    let mock = Mock::start(fast_config()).await;
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| mock.post(RUN, &HELD, streaming()))).await;
    let truth = mock.wait_until(|t| t.active_connections == 3).await;
    assert_eq!(truth.queued_connections, 0);
    assert_eq!(truth.max_queued_connections, 0);
    for response in held {
        response.hang_up();
    }
    let truth = mock.wait_until(|t| t.active_connections == 0).await;
    assert_eq!((truth.connections_accepted, truth.max_concurrent_connections), (3, 3));
}
