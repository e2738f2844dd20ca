//! Dify semantics end to end: every failure the mock can inject shows up under the
//! right kind, with the count the mock says it produced.

use std::collections::BTreeMap;
use std::time::Duration;

use barrage_master::report::{EndpointRow, FinalReport};

use crate::support::*;

/// One task per fault, all on /v1/workflows/run, told apart by name.
fn fault_scenario(faults: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "[limits]\nsse_max_event_bytes = 65536\n[data.q]\nvalues = [\"a\"]\n[[users]]\nname = \"Faults\"\nwait = \"constant(0.02)\"\n",
    );
    for (fault, extra) in faults {
        s.push_str(&format!(
            r#"[[users.tasks]]
name = "fault={fault}"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
{extra}
headers = {{ Authorization = "Bearer ${{DIFY_API_KEY}}", X-Mock-Fault = "{fault}", X-Mock-Giant-Bytes = "200000" }}
body = '{{"inputs": {{"query": "{{{{q}}}}"}}, "response_mode": "streaming", "user": "{{{{user}}}}"}}'
"#
        ));
    }
    s
}

fn endpoint<'a>(r: &'a FinalReport, name: &str) -> &'a EndpointRow {
    r.endpoints
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no endpoint {name}"))
}

/// (kind, detail) -> count of failures of one endpoint.
fn failures(r: &FinalReport, name: &str) -> BTreeMap<(String, String), u64> {
    r.failures
        .iter()
        .filter(|f| f.name == name)
        .map(|f| ((f.kind.clone(), f.detail.clone()), f.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_injected_fault_is_classified_and_counted_once() {
    let mock = mock(sse_mock_config(5, 4, 5)).await;
    let faults = [
        ("none", ""),
        ("failed", ""),
        ("stopped", ""),
        ("error", ""),
        ("http-500", ""),
        ("http-400", ""),
        ("rate-limit", ""),
        ("reset", ""),
        ("malformed-json", ""),
        ("giant-event", ""),
        ("stall", "read_timeout = \"300ms\""),
    ];
    let load = load_args(mock.addr, 11, 100.0, Duration::from_secs(4));
    let m = master(setup(&fault_scenario(&faults), &load, 2)).await;
    let workers = [worker(m.addr, "w1"), worker(m.addr, "w2")];
    let r = m.run.await.unwrap().unwrap().report;
    for w in workers {
        let _ = w.await;
    }
    let truth = mock.state.ground_truth();
    let outcome = |name: &str| truth.outcomes.get(name).copied().unwrap_or(0);
    assert_eq!(
        r.aggregated.requests, truth.requests,
        "all requests: ours vs the mock's {truth:?}"
    );

    // Each fault: the endpoint's failures are all of the expected kind, and their count
    // is what the mock says it delivered.
    let cases: &[(&str, &str, &str, &str)] = &[
        ("failed", "terminal_status", "failed", "failed_status"),
        ("stopped", "terminal_status", "stopped", "stopped"),
        ("error", "error_event", "completion_request_error", "error_event"),
        ("http-500", "http_status", "500 internal_server_error", "http_5xx"),
        ("http-400", "http_status", "400 invalid_param", "http_4xx"),
        ("rate-limit", "rate_limit_error", "429", "rate_limit_error"),
        ("malformed-json", "invalid_json", "", "malformed_json"),
        ("giant-event", "event_too_large", "", "giant_event"),
        ("stall", "read_timeout", "", "stall"),
    ];
    for (fault, kind, detail, truth_name) in cases {
        let name = format!("fault={fault}");
        let e = endpoint(&r, &name);
        let f = failures(&r, &name);
        assert!(e.requests > 0, "{name}: no requests");
        assert_eq!(e.failures, e.requests, "{name}: every request must fail: {f:?}");
        assert_eq!(
            f.get(&(kind.to_string(), detail.to_string())).copied(),
            Some(e.failures),
            "{name}: {f:?}"
        );
        assert_eq!(
            e.failures,
            outcome(truth_name),
            "{name}: ours vs the mock's `{truth_name}`"
        );
    }
    // A reset mid-stream is an I/O failure (the body broke), never a success.
    let reset = endpoint(&r, "fault=reset");
    assert_eq!(reset.failures, reset.requests);
    assert!(
        failures(&r, "fault=reset").keys().all(|(k, _)| k == "io"),
        "{:?}",
        failures(&r, "fault=reset")
    );
    assert_eq!(reset.failures, outcome("reset"));
    // The healthy task: every success is one the mock delivered.
    let ok = endpoint(&r, "fault=none");
    assert_eq!((ok.failures, ok.requests), (0, outcome("succeeded")));
    assert_eq!(r.aggregated.rate_limit_errors, outcome("rate_limit_error"));
}

/// dify-api 1.14.1 answers its app concurrency limit 400 `invalid_param` "Too many
/// requests...", earlier versions 429 `too_many_requests`: both are the app's limit, with
/// the mock's count of refusals on the nose, and never an `http_status` failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_concurrency_limit_is_too_many_requests_in_either_status_and_server_figures_match() {
    for (version, status) in [
        (barrage_mock::DifyVersion::V1_14_1, "400"),
        (barrage_mock::DifyVersion::new(1, 13, 0), "429"),
    ] {
        app_concurrency_limit_as(version, status).await;
    }
}

async fn app_concurrency_limit_as(version: barrage_mock::DifyVersion, status: &str) {
    let mut cfg = sse_mock_config(20, 3, 10);
    cfg.max_active = 2;
    cfg.dify_version = version;
    let mock = mock(cfg).await;
    let load = load_args(mock.addr, 6, 100.0, Duration::from_secs(3));
    let m = master(setup(
        &workflow_scenario("constant(0)").replace(
            "kind = \"sse\"\nterminal_event = \"workflow_finished\"",
            "kind = \"dify\"",
        ),
        &load,
        1,
    ))
    .await;
    let w = worker(m.addr, "w1");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    let truth = mock.state.ground_truth();
    let wf = endpoint(&r, "/v1/workflows/run");
    let too_many = truth.outcomes.get("too_many_requests").copied().unwrap_or(0);
    assert!(too_many > 0, "{version}: the limit never triggered: {truth:?}");
    assert_eq!(truth.http_statuses.get(status).copied(), Some(too_many), "{version}");
    assert_eq!(r.aggregated.too_many_requests, too_many, "{version}");
    let by_kind = failures(&r, "/v1/workflows/run");
    assert_eq!(
        by_kind.get(&("too_many_requests".into(), status.into())).copied(),
        Some(wf.too_many_requests),
        "{version}: {by_kind:?}"
    );
    assert!(
        by_kind.keys().all(|(k, _)| k == "too_many_requests"),
        "{version}: {by_kind:?}"
    );
    // Server-side figures: tokens and elapsed_time of every workflow_finished we read.
    assert_eq!(wf.total_tokens, truth.workflow_total_tokens);
    let elapsed = wf.server_elapsed_ms.unwrap();
    assert_eq!(elapsed.count, truth.workflow_finished);
    let truth_mean_ms = truth.workflow_elapsed_us as f64 / truth.workflow_finished as f64 / 1000.0;
    assert!(
        (elapsed.avg - truth_mean_ms).abs() <= truth_mean_ms * 0.002,
        "server elapsed {} vs {truth_mean_ms}",
        elapsed.avg
    );
    // Chunk gaps: the mock spaces events 10 ms apart.
    let gap = wf.chunk_gap_ms.unwrap();
    assert!((9.0..15.0).contains(&gap.p50), "chunk gap p50 {}", gap.p50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatflow_agent_and_blocking_calls_succeed_by_their_own_rules() {
    let mock = mock(sse_mock_config(5, 3, 5)).await;
    let scenario = r#"
[[users]]
name = "Apps"
wait = "constant(0.02)"
[[users.tasks]]
name = "chatflow"
method = "POST"
path = "/v1/chat-messages"
kind = "dify"
app = "chatflow"
headers = { Authorization = "Bearer ${DIFY_API_KEY}", X-Mock-App-Mode = "advanced-chat" }
body = '{"inputs": {}, "query": "hi", "response_mode": "streaming", "user": "{{user}}"}'
[[users.tasks]]
name = "agent"
method = "POST"
path = "/v1/chat-messages"
kind = "dify"
app = "agent"
headers = { Authorization = "Bearer ${DIFY_API_KEY}", X-Mock-App-Mode = "agent-chat" }
body = '{"inputs": {}, "query": "hi", "response_mode": "streaming", "user": "{{user}}"}'
[[users.tasks]]
name = "chat, 3 turns"
method = "POST"
path = "/v1/chat-messages"
kind = "dify"
conversation_turns = 3
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {}, "query": "hi", "response_mode": "streaming", "conversation_id": "{{conversation_id}}", "user": "{{user}}"}'
[[users.tasks]]
name = "workflow, blocking"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {}, "response_mode": "blocking", "user": "{{user}}"}'
"#;
    let load = load_args(mock.addr, 4, 100.0, Duration::from_secs(3));
    let m = master(setup(scenario, &load, 1)).await;
    let w = worker(m.addr, "w1");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    let truth = mock.state.ground_truth();
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    assert_eq!(r.aggregated.requests, truth.requests);
    assert_eq!(
        r.aggregated.requests,
        truth.outcomes.get("succeeded").copied().unwrap_or(0)
    );
    for name in ["chatflow", "agent", "chat, 3 turns", "workflow, blocking"] {
        assert!(endpoint(&r, name).requests > 0, "{name} never ran");
    }
    let chatflow = endpoint(&r, "chatflow");
    assert!(
        chatflow.events_by_type.contains_key("workflow_finished")
            && chatflow.events_by_type.contains_key("message_end")
    );
    assert!(endpoint(&r, "agent").ttft_ms.is_some(), "agent_message is a text event");
}

/// A host spread over two addresses (`[resolve]`): users split, one row per address,
/// each row equal to what that replica served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_get_their_own_figures() {
    let (a, b) = (
        mock(sse_mock_config(5, 2, 5)).await,
        mock(sse_mock_config(5, 2, 5)).await,
    );
    let scenario = workflow_scenario("constant(0.05)").replace(
        "kind = \"sse\"\nterminal_event = \"workflow_finished\"",
        "kind = \"dify\"",
    ) + &format!("[resolve]\n\"dify.test\" = [\"{}\", \"{}\"]\n", a.addr, b.addr);
    let mut load = load_args(a.addr, 8, 100.0, Duration::from_secs(2));
    load.host = Some("http://dify.test:5001".into());
    let m = master(setup(&scenario, &load, 1)).await;
    let w = worker(m.addr, "w1");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    let (ta, tb) = (a.state.ground_truth(), b.state.ground_truth());
    assert!(
        ta.requests > 0 && tb.requests > 0,
        "both replicas must get load: {} / {}",
        ta.requests,
        tb.requests
    );
    let served = |addr: std::net::SocketAddr| -> u64 {
        r.replicas
            .iter()
            .filter(|x| x.peer == addr.to_string())
            .map(|x| x.requests)
            .sum()
    };
    assert_eq!(served(a.addr), ta.requests);
    assert_eq!(served(b.addr), tb.requests);
    assert_eq!(r.aggregated.requests, ta.requests + tb.requests);
    let text = barrage_master::report::console::render_final(&r);
    assert!(
        text.contains("Per replica") && text.contains(&a.addr.to_string()),
        "{text}"
    );
}

/// A run that ends mid-stream with stop_on_cancel asks dify-api to stop each task
/// (dify-api keeps running a workflow after its client hangs up, hence the call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_streams_are_stopped_on_the_target() {
    let mock = mock(sse_mock_config(5, 200, 50)).await;
    let scenario = workflow_scenario("constant(0)").replace(
        "kind = \"sse\"\nterminal_event = \"workflow_finished\"",
        "kind = \"dify\"\nstop_on_cancel = true",
    );
    let mut load = load_args(mock.addr, 3, 100.0, Duration::from_secs(1));
    load.stop_timeout = Duration::ZERO;
    let m = master(setup(&scenario, &load, 1)).await;
    let w = worker(m.addr, "w1");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    let cancelled: u64 = r
        .outcomes
        .iter()
        .filter(|o| o.kind == "cancelled_at_stop" && o.name == "/v1/workflows/run")
        .map(|o| o.count)
        .sum();
    assert!(cancelled > 0, "no stream was in flight at the stop: {:?}", r.outcomes);
    let asked = eventually(Duration::from_secs(5), || {
        mock.state.ground_truth().stops_requested == cancelled
    })
    .await;
    assert!(
        asked,
        "{} stops asked for {cancelled} cancelled streams",
        mock.state.ground_truth().stops_requested
    );
    // Each stop named the stream's own task and user: none was refused as malformed.
    assert_eq!(mock.state.ground_truth().outcomes.get("http_4xx"), None);
}

/// No first event in time: `first_event_timeout`, and the mock saw each client leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_event_times_out_by_name() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let scenario = r#"
[[users]]
name = "Slow"
wait = "constant(0)"
[[users.tasks]]
name = "slow"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
first_event_timeout = "150ms"
headers = { Authorization = "Bearer ${DIFY_API_KEY}", X-Mock-First-Event-Delay-Ms = "1000" }
body = '{"inputs": {}, "response_mode": "streaming", "user": "{{user}}"}'
"#;
    let load = load_args(mock.addr, 2, 100.0, Duration::from_secs(2));
    let m = master(setup(scenario, &load, 1)).await;
    let w = worker(m.addr, "w1");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    let e = endpoint(&r, "slow");
    assert!(e.requests >= 4, "{}", e.requests);
    assert_eq!(
        failures(&r, "slow")
            .get(&("first_event_timeout".into(), String::new()))
            .copied(),
        Some(e.requests)
    );
    let aborted = eventually(Duration::from_secs(3), || {
        mock.state.ground_truth().outcomes.get("aborted").copied() == Some(e.requests)
    })
    .await;
    assert!(aborted, "mock: {:?}", mock.state.ground_truth().outcomes);
}
