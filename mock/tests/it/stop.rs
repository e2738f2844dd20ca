//! Task stop calls: `POST /v1/workflows/tasks/{task_id}/stop` and
//! `POST /v1/chat-messages/{task_id}/stop` end the open stream at once.

use serde_json::{Value, json};

use barrage_mock::Outcome;

use crate::support::{Mock, assert_one_outcome_per_request, fast_config};

/// A run that would take minutes if nobody stopped it.
const LONG: [(&str, &str); 2] = [("x-mock-chunks", "10000"), ("x-mock-chunk-interval-ms", "20")];

fn stop_body(user: &str) -> Value {
    json!({ "user": user })
}

#[tokio::test]
async fn stopping_a_workflow_ends_it_with_status_stopped() {
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post(
            "/v1/workflows/run",
            &LONG,
            json!({"inputs": {}, "response_mode": "streaming", "user": "u-1"}),
        )
        .await
        .into_sse();
    let mut seen = vec![sse.next().await.unwrap()];
    let task_id = seen[0].json()["task_id"].as_str().unwrap().to_owned();
    while seen.len() < 5 {
        seen.push(sse.next().await.unwrap());
    }

    let response = mock
        .post(&format!("/v1/workflows/tasks/{task_id}/stop"), &[], stop_body("u-1"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json().await.0, json!({"result": "success"}));

    seen.extend(sse.collect().await);
    let last = seen.last().unwrap().json();
    assert_eq!(last["event"], "workflow_finished");
    assert_eq!(last["data"]["status"], "stopped");
    assert_eq!(last["data"]["error"], "Stopped by user.");
    let chunks = seen.iter().filter(|e| e.name() == "text_chunk").count() as u64;
    assert!(chunks < 10_000);
    assert_eq!(last["data"]["total_tokens"], 12 + chunks);

    let truth = mock.truth();
    assert_eq!((truth.stops_requested, truth.streams_stopped), (1, 1));
    assert_eq!(truth.streams_completed, 1);
    assert_eq!(truth.outcome(Outcome::Stopped), 1);
    assert_eq!(truth.requests, 2);
    assert_eq!(truth.http_statuses["200"], 2);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn stopping_chats_ends_them_with_message_end() {
    let mock = Mock::start(fast_config()).await;
    for (mode, ending) in [
        ("chat", vec!["message_end"]),
        ("advanced-chat", vec!["workflow_finished", "message_end"]),
        ("agent-chat", vec!["message_end"]),
    ] {
        let mut sse = mock
            .post(
                "/v1/chat-messages",
                &[LONG[0], LONG[1], ("x-mock-app-mode", mode)],
                json!({"inputs": {}, "query": "q", "response_mode": "streaming", "user": "u-2"}),
            )
            .await
            .into_sse();
        let first = sse.next().await.unwrap();
        let task_id = first.json()["task_id"].as_str().unwrap().to_owned();
        let response = mock
            .post(&format!("/v1/chat-messages/{task_id}/stop"), &[], stop_body("u-2"))
            .await;
        assert_eq!(response.json().await.0, json!({"result": "success"}));
        let rest = sse.collect().await;
        let tail: Vec<&str> = rest[rest.len() - ending.len()..].iter().map(|e| e.name()).collect();
        assert_eq!(tail, ending, "{mode}");
    }
    let truth = mock.truth();
    assert_eq!((truth.stops_requested, truth.streams_stopped), (3, 3));
    assert_eq!(truth.outcome(Outcome::Stopped), 3);
    assert_eq!(truth.message_end, 3);
    assert_one_outcome_per_request(&truth);
}

#[tokio::test]
async fn stop_calls_that_match_nothing_succeed_and_change_nothing() {
    let mock = Mock::start(fast_config()).await;
    let mut sse = mock
        .post(
            "/v1/workflows/run",
            &[("x-mock-chunks", "30"), ("x-mock-chunk-interval-ms", "2")],
            json!({"inputs": {}, "response_mode": "streaming", "user": "owner"}),
        )
        .await
        .into_sse();
    let first = sse.next().await.unwrap();
    let task_id = first.json()["task_id"].as_str().unwrap().to_owned();
    for (path, user) in [
        ("/v1/workflows/tasks/no-such-task/stop".to_owned(), "owner"),
        (format!("/v1/workflows/tasks/{task_id}/stop"), "someone-else"),
        (format!("/v1/chat-messages/{task_id}/stop"), "owner"),
    ] {
        let response = mock.post(&path, &[], stop_body(user)).await;
        assert_eq!(response.json().await.0, json!({"result": "success"}), "{path}");
    }
    let response = mock
        .post(&format!("/v1/workflows/tasks/{task_id}/stop"), &[], json!({}))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json().await.0["code"], "invalid_param");

    let rest = sse.collect().await;
    assert_eq!(rest.last().unwrap().json()["data"]["status"], "succeeded");
    let truth = mock.truth();
    assert_eq!((truth.stops_requested, truth.streams_stopped), (4, 0));
    assert_eq!(truth.outcome(Outcome::Succeeded), 1);
    assert_eq!(truth.outcomes.len(), 1, "stop calls have no outcome");
    assert_one_outcome_per_request(&truth);
}
