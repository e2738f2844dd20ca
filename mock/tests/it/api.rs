//! The API surface: auth, validation, Dify's error envelope, and the mock's own routes.

use http::Method;
use serde_json::{Value, json};

use barrage_mock::Outcome;

use crate::support::{Mock, fast_config};

const RUN: &str = "/v1/workflows/run";

fn body() -> Value {
    json!({"inputs": {}, "response_mode": "blocking", "user": "u"})
}

fn assert_envelope(body: &Value, code: &str, status: u16) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn api_key_is_enforced_with_401_envelopes() {
    let mut cfg = fast_config();
    cfg.api_key = Some("app-test".into());
    let mock = Mock::start(cfg).await;

    for headers in [vec![], vec![("authorization", "Bearer app-wrong")]] {
        let response = mock.post(RUN, &headers, body()).await;
        assert_eq!(response.status(), 401);
        assert_envelope(&response.json().await.0, "unauthorized", 401);
    }
    let response = mock.post(RUN, &[("authorization", "Bearer app-test")], body()).await;
    assert_eq!(response.status(), 200);

    let truth = mock.truth();
    assert_eq!(truth.requests, 3);
    assert_eq!(truth.workflow_runs, 3);
    assert_eq!(truth.unauthorized, 2);
    assert_eq!(truth.blocking_completed, 1);
}

#[tokio::test]
async fn bad_requests_get_invalid_param() {
    let mock = Mock::start(fast_config()).await;
    let cases = [
        (vec![], Some(json!({"inputs": {}, "response_mode": "blocking"}))), // no user
        (vec![], Some(json!({"inputs": {}, "user": ""}))),                  // empty user
        (vec![], Some(json!({"user": "u"}))),                               // no inputs
        (
            vec![],
            Some(json!({"inputs": {}, "user": "u", "response_mode": "sideways"})),
        ),
        (vec![], Some(json!([1, 2]))),
        (vec![], None), // empty body: not JSON
        (vec![("x-mock-chunks", "many")], Some(body())),
        (vec![("x-mock-first-event-delay-ms", "-5")], Some(body())),
    ];
    let sent = cases.len() as u64;
    for (headers, json) in cases {
        let response = mock.send(Method::POST, RUN, &headers, json.clone()).await;
        assert_eq!(response.status(), 400, "{headers:?} {json:?}");
        assert_envelope(&response.json().await.0, "invalid_param", 400);
    }
    let truth = mock.truth();
    assert_eq!(truth.requests, sent);
    assert_eq!(truth.workflow_runs, sent);
    assert_eq!(truth.streams_started + truth.blocking_completed, 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_envelopes_and_count() {
    let mock = Mock::start(fast_config()).await;
    let response = mock.send(Method::GET, "/v1/nowhere", &[], None).await;
    assert_eq!(response.status(), 404);
    let (body, len) = response.json().await;
    assert_envelope(&body, "not_found", 404);

    let response = mock.send(Method::GET, RUN, &[], None).await;
    assert_eq!(response.status(), 405);
    let (body, len2) = response.json().await;
    assert_envelope(&body, "method_not_allowed", 405);

    let truth = mock.truth();
    assert_eq!(truth.requests, 2);
    assert_eq!(truth.workflow_runs, 0);
    assert_eq!(truth.bytes_sent, (len + len2) as u64);
}

#[tokio::test]
async fn control_routes_are_not_counted() {
    let mock = Mock::start(fast_config()).await;
    mock.post(RUN, &[], body()).await.json().await;

    let response = mock.send(Method::GET, "/health", &[], None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json().await.0, json!({"status": "ok"}));

    let (stats, _) = mock.send(Method::GET, "/_mock/stats", &[], None).await.json().await;
    let served: barrage_mock::GroundTruth = serde_json::from_value(stats).unwrap();
    // The stats call's own connection may have closed since: the one gauge that moves.
    let now = mock.truth();
    assert_eq!(
        served,
        barrage_mock::GroundTruth {
            active_connections: served.active_connections,
            ..now
        }
    );
    assert_eq!(served.requests, 1);
    assert_eq!(served.blocking_completed, 1);
    assert_eq!(served.outcome(Outcome::Succeeded), 1);
    assert_eq!(served.connections_accepted, 3);

    mock.wait_until(|t| t.active_connections == 0).await;
    let response = mock.send(Method::POST, "/_mock/reset", &[], None).await;
    assert_eq!(response.status(), 204);
    // Reset keeps gauges (the reset call's own connection was open) and restarts peaks
    // from them; everything else is zero.
    let truth = mock.wait_until(|t| t.active_connections == 0).await;
    assert_eq!(
        truth,
        barrage_mock::GroundTruth {
            max_concurrent_connections: 1,
            ..Default::default()
        }
    );
}
