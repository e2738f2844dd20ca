//! Correlation: values captured from one response feed the next request.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use crate::support::*;

/// A target that issues ids and answers only for ids it issued (and the right header).
#[derive(Default)]
struct Items {
    ids: Mutex<HashSet<String>>,
    created: AtomicU64,
    found: AtomicU64,
    unknown: AtomicU64,
}

async fn items_server() -> (std::net::SocketAddr, Arc<Items>) {
    let items = Arc::new(Items::default());
    let app = axum::Router::new()
        .route(
            "/items",
            post(|State(s): State<Arc<Items>>| async move {
                let n = s.created.fetch_add(1, Ordering::SeqCst);
                let id = format!("item-{n}-{:x}", rand::random::<u32>());
                s.ids.lock().unwrap().insert(id.clone());
                let mut h = HeaderMap::new();
                h.insert("x-item-token", format!("tok-{id}").parse().unwrap());
                (StatusCode::CREATED, h, format!(r#"{{"data": {{"id": "{id}"}}}}"#))
            }),
        )
        .route(
            "/items/{id}",
            get(
                |State(s): State<Arc<Items>>, Path(id): Path<String>, headers: HeaderMap| async move {
                    let token_ok =
                        headers.get("x-item-token").and_then(|v| v.to_str().ok()) == Some(&format!("tok-{id}"));
                    if s.ids.lock().unwrap().contains(&id) && token_ok {
                        s.found.fetch_add(1, Ordering::SeqCst);
                        StatusCode::OK
                    } else {
                        s.unknown.fetch_add(1, Ordering::SeqCst);
                        StatusCode::NOT_FOUND
                    }
                },
            ),
        )
        .with_state(items.clone());
    (serve(app).await, items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_id_and_header_flow_into_the_next_request() {
    let (addr, items) = items_server().await;
    let scenario = r#"
[[users]]
name = "Creator"
wait = "constant(0.02)"
order = "sequential"
[[users.tasks]]
name = "create"
method = "POST"
path = "/items"
expect = [201]
capture = { id = "/data/id", token = "header:X-Item-Token" }
[[users.tasks]]
name = "/items/:id"
path = "/items/{{id}}"
headers = { X-Item-Token = "{{token}}" }
"#;
    let load = load_args(addr, 3, 100.0, Duration::from_secs(2));
    let r = run_with_one_worker(setup(scenario, &load, 1)).await;
    let found = items.found.load(Ordering::SeqCst);
    assert!(found > 5, "too few reads: {found}");
    assert_eq!(
        items.unknown.load(Ordering::SeqCst),
        0,
        "a read used an id or token it was not given"
    );
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    let read = r.endpoints.iter().find(|e| e.name == "/items/:id").unwrap();
    assert_eq!(read.requests, found);
}

#[test]
fn capture_is_validated() {
    let bad = |capture: &str, kind: &str| {
        let text = format!("[[users]]\n[[users.tasks]]\npath = \"/x\"\n{kind}capture = {{ {capture} }}\n");
        barrage_common::scenario::parse_str(&text, config::FileFormat::Toml, "c.toml", &env)
            .unwrap_err()
            .to_string()
    };
    assert!(
        bad("id = \"data.id\"", "").contains("neither a JSON pointer"),
        "{}",
        bad("id = \"data.id\"", "")
    );
    assert!(bad("user = \"/id\"", "").contains("not a usable variable name"));
    assert!(bad("id = \"/id\"", "kind = \"sse\"\n").contains("capture works on kind = \"http\""));
}

/// A `json` body reaches the target as valid JSON with each pool value intact, even
/// values holding quotes, backslashes and newlines (rendered escaped, not raw).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_arrive_as_the_json_they_describe() {
    #[derive(Default)]
    struct Seen {
        valid: AtomicU64,
        invalid: AtomicU64,
        prompts: Mutex<HashSet<String>>,
    }
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route(
            "/v1/workflows/run",
            post(|State(s): State<Arc<Seen>>, body: axum::body::Bytes| async move {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(v) if v["inputs"]["n"] == 3 && v["response_mode"] == "blocking" => {
                        s.valid.fetch_add(1, Ordering::SeqCst);
                        let prompt = v["inputs"]["query"].as_str().unwrap_or_default().to_string();
                        s.prompts.lock().unwrap().insert(prompt);
                        StatusCode::OK
                    }
                    _ => {
                        s.invalid.fetch_add(1, Ordering::SeqCst);
                        StatusCode::BAD_REQUEST
                    }
                }
            }),
        )
        .with_state(seen.clone());
    let addr = serve(app).await;
    let scenario = r#"
[data.prompt]
values = ['say "hi"', 'back\slash', "two\nlines", "plain"]
mode = "sequential"
[[users]]
name = "Json"
wait = "constant(0.01)"
[[users.tasks]]
method = "POST"
path = "/v1/workflows/run"
json = { inputs = { query = "{{prompt}}", n = 3 }, response_mode = "blocking", user = "{{user}}" }
"#;
    let load = load_args(addr, 2, 100.0, Duration::from_secs(2));
    let r = run_with_one_worker(setup(scenario, &load, 1)).await;
    assert_eq!(
        seen.invalid.load(Ordering::SeqCst),
        0,
        "a body was not the JSON described"
    );
    let valid = seen.valid.load(Ordering::SeqCst);
    assert!(valid >= 8, "too few requests: {valid}");
    assert_eq!(r.aggregated.requests, valid);
    let prompts = seen.prompts.lock().unwrap().clone();
    let want: HashSet<String> = ["say \"hi\"", "back\\slash", "two\nlines", "plain"]
        .map(String::from)
        .into();
    assert_eq!(prompts, want);
}

/// `events_per_request`: throughput in business events is single x 1 + batch x N,
/// counted from the requests the target actually answered with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_requests_count_their_business_events() {
    #[derive(Default)]
    struct Counts {
        single: AtomicU64,
        batch: AtomicU64,
    }
    let counts = Arc::new(Counts::default());
    let app = axum::Router::new()
        .route(
            "/events",
            post(|State(c): State<Arc<Counts>>| async move {
                c.single.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }),
        )
        .route(
            "/events/batch",
            post(|State(c): State<Arc<Counts>>| async move {
                c.batch.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }),
        )
        .with_state(counts.clone());
    let addr = serve(app).await;
    let scenario = r#"
[[users]]
name = "Events"
wait = "constant(0.01)"
[[users.tasks]]
method = "POST"
path = "/events"
weight = 3
json = { type = "click" }
[[users.tasks]]
method = "POST"
path = "/events/batch"
weight = 1
events_per_request = 20
json = { events = [1, 2, 3] }
"#;
    let load = load_args(addr, 2, 100.0, Duration::from_secs(2));
    let r = run_with_one_worker(setup(scenario, &load, 1)).await;
    let (single, batch) = (
        counts.single.load(Ordering::SeqCst),
        counts.batch.load(Ordering::SeqCst),
    );
    assert!(single > 0 && batch > 0, "{single} {batch}");
    let row = |path: &str| r.endpoints.iter().find(|e| e.name == path).unwrap();
    assert_eq!(
        (row("/events").business_events, row("/events").events_per_request),
        (single, 1)
    );
    assert_eq!(
        (
            row("/events/batch").business_events,
            row("/events/batch").events_per_request
        ),
        (batch * 20, 20)
    );
    assert_eq!(r.aggregated.business_events, single + batch * 20);
}

#[test]
fn events_per_request_is_validated() {
    let bad = |tasks: &str| {
        let text = format!("[[users]]\n{tasks}");
        barrage_common::scenario::parse_str(&text, config::FileFormat::Toml, "e.toml", &env)
            .unwrap_err()
            .to_string()
    };
    assert!(bad("[[users.tasks]]\npath = \"/x\"\nevents_per_request = -1\n").contains("between 0 and 1000000"));
    let mixed = bad("[[users.tasks]]\npath = \"/x\"\nevents_per_request = 20\n[[users.tasks]]\npath = \"/x\"\n");
    assert!(mixed.contains("carries 20; give this one its own name"), "{mixed}");
}

/// A CSV pool: one request takes every column from the same row (a login's email and
/// its password), quoted fields with commas survive, and every row gets used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_stay_together_in_a_request() {
    #[derive(Default)]
    struct Logins {
        matched: AtomicU64,
        mismatched: AtomicU64,
        emails: Mutex<HashSet<String>>,
    }
    let logins = Arc::new(Logins::default());
    let app = axum::Router::new()
        .route(
            "/login",
            post(|State(s): State<Arc<Logins>>, body: axum::body::Bytes| async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let (email, password) = (v["email"].as_str().unwrap_or(""), v["password"].as_str().unwrap_or(""));
                if !email.is_empty() && password == format!("pw-{email}") {
                    s.matched.fetch_add(1, Ordering::SeqCst);
                    s.emails.lock().unwrap().insert(email.to_string());
                    StatusCode::OK
                } else {
                    s.mismatched.fetch_add(1, Ordering::SeqCst);
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .with_state(logins.clone());
    let addr = serve(app).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("accounts.csv"),
        "email,password\na@x,pw-a@x\n\"b, with comma@x\",\"pw-b, with comma@x\"\n c@x , pw-c@x \n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        r#"
[data.accounts]
csv = "accounts.csv"
mode = "random"
[[users]]
name = "Login"
wait = "constant(0.01)"
[[users.tasks]]
method = "POST"
path = "/login"
json = { email = "{{accounts.email}}", password = "{{accounts.password}}" }
"#,
    )
    .unwrap();
    let scenario = barrage_common::scenario::load(&dir.path().join("s.toml"), &env).unwrap();
    let load = load_args(addr, 2, 100.0, Duration::from_secs(2));
    let mut s = barrage_master::setup::MasterSetup::resolve(&load, scenario, 1, Some(Duration::from_secs(20))).unwrap();
    s.print_report = false;
    let r = run_with_one_worker(s).await;
    assert_eq!(
        logins.mismatched.load(Ordering::SeqCst),
        0,
        "an email went out with another row's password"
    );
    let matched = logins.matched.load(Ordering::SeqCst);
    assert!(matched >= 6, "too few logins: {matched}");
    assert_eq!((r.aggregated.requests, r.aggregated.failures), (matched, 0));
    let emails = logins.emails.lock().unwrap().clone();
    let want: HashSet<String> = ["a@x", "b, with comma@x", "c@x"].map(String::from).into();
    assert_eq!(emails, want, "every row used, quoted commas and padding handled");
}

/// `checks`: a 200 whose body says otherwise is a failure named by the check, counted
/// exactly as often as the target sent such a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_are_failures_named_by_the_check() {
    #[derive(Default)]
    struct Answers {
        n: AtomicU64,
        bad_status: AtomicU64,
        no_id: AtomicU64,
    }
    let answers = Arc::new(Answers::default());
    let app = axum::Router::new()
        .route(
            "/api/jobs",
            post(|State(a): State<Arc<Answers>>| async move {
                // Every 3rd answer claims failure; every 5th (otherwise fine) lacks its id.
                let n = a.n.fetch_add(1, Ordering::SeqCst);
                if n % 3 == 0 {
                    a.bad_status.fetch_add(1, Ordering::SeqCst);
                    r#"{"status": "failed", "id": 1}"#
                } else if n % 5 == 0 {
                    a.no_id.fetch_add(1, Ordering::SeqCst);
                    r#"{"status": "ok"}"#
                } else {
                    r#"{"status": "ok", "id": 7, "ready": true}"#
                }
            }),
        )
        .with_state(answers.clone());
    let addr = serve(app).await;
    let scenario = r#"
[[users]]
name = "Jobs"
wait = "constant(0.01)"
[[users.tasks]]
method = "POST"
path = "/api/jobs"
checks = [
  { name = "status ok", json = "/status", equals = "ok" },
  { name = "has id", json = "/id" },
  { name = "mentions status", body_contains = "\"status\"" },
  { name = "ready", json = "/ready", equals = "true" },
  { name = "id 7", json = "/id", equals = "7" },
]
"#;
    let load = load_args(addr, 2, 100.0, Duration::from_secs(2));
    let r = run_with_one_worker(setup(scenario, &load, 1)).await;
    let count = |detail: &str| {
        r.failures
            .iter()
            .filter(|f| f.kind == "check" && f.detail == detail)
            .map(|f| f.count)
            .sum::<u64>()
    };
    let (n, bad, no_id) = (
        answers.n.load(Ordering::SeqCst),
        answers.bad_status.load(Ordering::SeqCst),
        answers.no_id.load(Ordering::SeqCst),
    );
    assert!(bad > 0 && no_id > 0, "{bad} {no_id}");
    assert_eq!(r.aggregated.requests, n);
    assert_eq!(count("status ok"), bad);
    assert_eq!(count("has id"), no_id);
    assert_eq!(count("mentions status"), 0);
    // Non-string values compare as JSON: `true` and `7` hold for every good body.
    assert_eq!(count("ready") + count("id 7"), 0);
    assert_eq!(r.aggregated.failures, bad + no_id);
}

#[test]
fn checks_are_validated() {
    let bad = |check: &str| {
        let text = format!("[[users]]\n[[users.tasks]]\npath = \"/x\"\nchecks = [{check}]\n");
        barrage_common::scenario::parse_str(&text, config::FileFormat::Toml, "c.toml", &env)
            .unwrap_err()
            .to_string()
    };
    assert!(bad("{ json = \"/a\" }").contains("give each check a `name`"));
    assert!(bad("{ name = \"n\", json = \"a\" }").contains("not a JSON pointer"));
    assert!(bad("{ name = \"n\", equals = \"x\" }").contains("body_contains"));
    assert!(bad("{ name = \"n\", json = \"/a\", body_contains = \"x\" }").contains("body_contains"));
    assert!(bad("{ name = \"n\", jsn = \"/a\" }").contains("jsn"));
}

/// One request, one draw per pool: `{{n}}` in the path and in a header is the same
/// entry; a task's own Host and User-Agent replace Barrage's (virtual hosts behind an
/// ingress); a declared 429 on an `sse` task is an expected outcome, not a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_draw_once_per_request_and_own_headers_replace_ours() {
    #[derive(Default)]
    struct Seen {
        matched: AtomicU64,
        mismatched: AtomicU64,
        bad_host: AtomicU64,
        limited: AtomicU64,
    }
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route(
            "/n/{n}",
            get(
                |State(s): State<Arc<Seen>>, Path(n): Path<String>, headers: HeaderMap| async move {
                    let hosts: Vec<_> = headers.get_all("host").iter().collect();
                    let agents: Vec<_> = headers.get_all("user-agent").iter().collect();
                    if hosts != ["api.example.test"] || agents != ["compat/1.0"] {
                        s.bad_host.fetch_add(1, Ordering::SeqCst);
                    }
                    if headers.get("x-n").and_then(|v| v.to_str().ok()) == Some(n.as_str()) {
                        s.matched.fetch_add(1, Ordering::SeqCst);
                    } else {
                        s.mismatched.fetch_add(1, Ordering::SeqCst);
                    }
                    "ok"
                },
            ),
        )
        .route(
            "/events",
            get(|State(s): State<Arc<Seen>>| async move {
                s.limited.fetch_add(1, Ordering::SeqCst);
                (StatusCode::TOO_MANY_REQUESTS, "slow down")
            }),
        )
        .with_state(seen.clone());
    let addr = serve(app).await;
    let scenario = r#"
[data.n]
values = ["1", "2", "3", "4", "5", "6", "7", "8"]
[[users]]
name = "U"
wait = "constant(0.01)"
order = "sequential"
[[users.tasks]]
name = "/n/:n"
path = "/n/{{n}}"
headers = { X-N = "{{n}}", Host = "api.example.test", User-Agent = "compat/1.0" }
[[users.tasks]]
name = "/events"
path = "/events"
kind = "sse"
expect = [200, 429]
"#;
    let load = load_args(addr, 3, 100.0, Duration::from_secs(1));
    let r = run_with_one_worker(setup(scenario, &load, 1)).await;
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    assert!(seen.matched.load(Ordering::SeqCst) > 10);
    assert_eq!(seen.mismatched.load(Ordering::SeqCst), 0);
    assert_eq!(seen.bad_host.load(Ordering::SeqCst), 0);
    let expected: u64 = r
        .outcomes
        .iter()
        .filter(|o| o.name == "/events" && o.kind == "expected_status" && o.detail == "429")
        .map(|o| o.count)
        .sum();
    assert_eq!(expected, seen.limited.load(Ordering::SeqCst));
    assert!(expected > 0);
}
