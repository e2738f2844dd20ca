//! The shipped examples beyond Dify's: each validates and runs against an in-process
//! target that counts what it was sent, and the realised mix and outcomes are checked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use crate::support::*;

const HIGH: &str = "sp_high_limit_key";
const LOW: &str = "sp_low_limit_key";
/// Requests the low-limit key may make before its answers turn to 429.
const LOW_LIMIT: u64 = 3;

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The prompt service as its Locust suite sees it: keys with limits, a cache probe.
#[derive(Default)]
struct PromptService {
    /// Requests by (route, key: "high" / "low" / "none"), as received.
    seen: Mutex<BTreeMap<(String, String), u64>>,
    low_used: AtomicU64,
    too_many: AtomicU64,
}

impl PromptService {
    fn note(&self, route: &str, headers: &HeaderMap) -> &'static str {
        let key = match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            Some(v) if v == format!("Bearer {HIGH}") => "high",
            Some(v) if v == format!("Bearer {LOW}") => "low",
            Some(_) => "wrong",
            None => "none",
        };
        *self.seen.lock().unwrap().entry((route.into(), key.into())).or_default() += 1;
        key
    }

    fn count(&self, route: &str, key: &str) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .get(&(route.to_string(), key.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

async fn prompt_service() -> (std::net::SocketAddr, Arc<PromptService>) {
    let svc = Arc::new(PromptService::default());
    let app = axum::Router::new()
        .route(
            "/api/v1/analyze",
            post(
                |State(s): State<Arc<PromptService>>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    let key = s.note("analyze", &headers);
                    let valid =
                        serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v["prompt"].is_string());
                    match key {
                        _ if !valid => (StatusCode::BAD_REQUEST, "{}".to_string()),
                        "high" => (StatusCode::OK, r#"{"analysis": {"tokens": 12}}"#.to_string()),
                        "low" if s.low_used.fetch_add(1, Ordering::SeqCst) < LOW_LIMIT => {
                            (StatusCode::OK, r#"{"analysis": {"tokens": 3}}"#.to_string())
                        }
                        "low" => {
                            s.too_many.fetch_add(1, Ordering::SeqCst);
                            (StatusCode::TOO_MANY_REQUESTS, r#"{"detail": "rate limit"}"#.to_string())
                        }
                        _ => (StatusCode::UNAUTHORIZED, r#"{"detail": "missing key"}"#.to_string()),
                    }
                },
            ),
        )
        .route(
            "/api/v1/providers",
            get(|State(s): State<Arc<PromptService>>, headers: HeaderMap| async move {
                s.note("providers", &headers);
                r#"{"providers": ["openai"]}"#
            }),
        )
        .route(
            "/api/v1/cache/stats",
            get(|State(s): State<Arc<PromptService>>, headers: HeaderMap| async move {
                s.note("cache_stats", &headers);
                r#"{"hits": 1}"#
            }),
        )
        .with_state(svc.clone());
    (serve(app).await, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_service_runs_its_mix_and_counts_401_and_429_as_expected() {
    let (addr, svc) = prompt_service().await;
    // The example as shipped, waits shortened so a 2-second run has thousands of requests.
    let scenario = example("prompt-service.toml")
        .replace("between(1, 3)", "constant(0)")
        .replace("between(1, 2)", "constant(0.02)")
        .replace("between(2, 4)", "constant(0.02)");
    let env = |name: &str| match name {
        "PROMPT_API_KEY" => Some(HIGH.to_string()),
        "PROMPT_RATE_LIMIT_KEY" => Some(LOW.to_string()),
        _ => None,
    };
    let load = load_args(addr, 10, 1000.0, Duration::from_secs(2));
    let s = setup_with_env(&scenario, &load, 1, &env);
    let r = run_with_one_worker(s).await;

    let row = |name: &str| {
        r.endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no row {name}"))
    };
    // Nothing failed: 401s and 429s are the expected answers of their users.
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    let outcome = |name: &str, detail: &str| {
        r.outcomes
            .iter()
            .filter(|o| o.name == name && o.kind == "expected_status" && o.detail == detail)
            .map(|o| o.count)
            .sum::<u64>()
    };
    // The target's own counts against the report's.
    assert_eq!(outcome("analyze_prompt (no key)", "401"), svc.count("analyze", "none"));
    assert_eq!(row("analyze_prompt (no key)").requests, svc.count("analyze", "none"));
    assert_eq!(
        outcome("analyze_prompt (rate limited)", "429"),
        svc.too_many.load(Ordering::SeqCst)
    );
    assert_eq!(
        row("analyze_prompt (rate limited)").requests,
        svc.count("analyze", "low")
    );
    assert!(svc.too_many.load(Ordering::SeqCst) > 0, "the low key was never spent");
    assert_eq!(svc.count("analyze", "wrong"), 0);
    // The main user's mix is 10/2/1/1.
    let main = [
        "analyze_prompt",
        "analyze_cached_prompt",
        "check_providers",
        "check_cache_stats",
    ];
    let counts: Vec<u64> = main.iter().map(|n| row(n).requests).collect();
    let total: u64 = counts.iter().sum();
    assert!(total > 2000, "too few requests for a mix: {total}");
    assert_eq!(counts[0] + counts[1], svc.count("analyze", "high"));
    assert_eq!(counts[2], svc.count("providers", "high"));
    assert_eq!(counts[3], svc.count("cache_stats", "high"));
    for (name, (count, weight)) in main.iter().zip(counts.iter().zip([10.0, 2.0, 1.0, 1.0])) {
        let share = *count as f64 / total as f64;
        let want = weight / 14.0;
        assert!(
            (share - want).abs() < 0.03,
            "{name}: {share:.3} of requests, planned {want:.3}"
        );
    }
}

/// The orchestrator of `orchestrator-mix.toml`: logins, workflows, leads and campaigns
/// kept in memory, every id checked against who created it.
#[derive(Default)]
struct Orchestrator {
    /// Requests by "METHOD /route/:pattern", as received.
    seen: Mutex<BTreeMap<String, u64>>,
    /// token -> username; workflow and lead id -> the token that created it.
    tokens: Mutex<BTreeMap<String, String>>,
    owners: Mutex<BTreeMap<String, String>>,
    lead_emails: Mutex<std::collections::BTreeSet<String>>,
    next_id: AtomicU64,
    /// Reads of an id nobody created, or that another user created; bad tokens.
    unknown_ids: AtomicU64,
    foreign_ids: AtomicU64,
    unauthorized: AtomicU64,
    duplicate_emails: AtomicU64,
}

const CAMPAIGNS: [&str; 2] = ["cmp-1", "cmp-2"];

impl Orchestrator {
    fn count(&self, route: &str) -> u64 {
        self.seen.lock().unwrap().get(route).copied().unwrap_or(0)
    }

    fn handle(&self, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match (method, segs.as_slice()) {
            (_, ["api", "workflows", _]) => format!("{method} /api/workflows/:id"),
            (_, ["api", "workflows", _, tail]) => format!("{method} /api/workflows/:id/{tail}"),
            (_, ["api", "leads", _]) => format!("{method} /api/leads/:id"),
            (_, ["api", "campaigns", _, tail]) => format!("{method} /api/campaigns/:id/{tail}"),
            _ => format!("{method} {path}"),
        };
        *self.seen.lock().unwrap().entry(route.clone()).or_default() += 1;
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let ok = |v: serde_json::Value| (StatusCode::OK, v.to_string());
        let public = [
            "GET /health",
            "GET /health/detailed",
            "GET /metrics",
            "GET /docs",
            "GET /openapi.json",
        ];
        if public.contains(&route.as_str()) {
            return ok(serde_json::json!({"status": "ok"}));
        }
        if route == "POST /api/auth/login" {
            if json["username"] != "orchestrator-user" || json["password"] != "orchestrator-secret" {
                self.unauthorized.fetch_add(1, Ordering::SeqCst);
                return (StatusCode::UNAUTHORIZED, "{}".into());
            }
            let token = format!("tok-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
            self.tokens
                .lock()
                .unwrap()
                .insert(token.clone(), "orchestrator-user".into());
            return ok(serde_json::json!({"access_token": token}));
        }
        if route == "GET /api/nonexistent" {
            return (StatusCode::NOT_FOUND, r#"{"detail": "Not Found"}"#.into());
        }
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        let Some(username) = self.tokens.lock().unwrap().get(&token).cloned() else {
            self.unauthorized.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::UNAUTHORIZED, "{}".into());
        };
        // An id in the path must exist and belong to this token's user.
        let owned = |id: &str| match self.owners.lock().unwrap().get(id) {
            None => {
                self.unknown_ids.fetch_add(1, Ordering::SeqCst);
                false
            }
            Some(owner) if *owner != token => {
                self.foreign_ids.fetch_add(1, Ordering::SeqCst);
                false
            }
            Some(_) => true,
        };
        let create = |prefix: &str| {
            let id = format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
            self.owners.lock().unwrap().insert(id.clone(), token.clone());
            ok(serde_json::json!({"id": id}))
        };
        let not_found = (StatusCode::NOT_FOUND, "{}".to_string());
        match (route.as_str(), segs.get(2).copied().unwrap_or_default()) {
            ("GET /api/auth/me", _) => ok(serde_json::json!({"username": username})),
            ("GET /api/auth/keys" | "GET /api/workflows" | "GET /api/leads", _) => ok(serde_json::json!({"items": []})),
            ("GET /api/campaigns", _) => ok(serde_json::json!({"items": [{"id": CAMPAIGNS[0]}, {"id": CAMPAIGNS[1]}]})),
            ("POST /api/workflows", _) if json["name"].is_string() => create("wf"),
            ("POST /api/leads", _) => {
                let email = json["email"].as_str().unwrap_or_default().to_string();
                if !self.lead_emails.lock().unwrap().insert(email) {
                    self.duplicate_emails.fetch_add(1, Ordering::SeqCst);
                }
                create("lead")
            }
            ("GET /api/workflows/:id/status", id) if owned(id) => ok(serde_json::json!({"status": "idle"})),
            ("PUT /api/workflows/:id", id) if owned(id) => ok(serde_json::json!({"id": id})),
            ("POST /api/workflows/:id/execute", id) if owned(id) => ok(serde_json::json!({"status": "queued"})),
            ("GET /api/leads/:id", id) if owned(id) => ok(serde_json::json!({"id": id})),
            ("GET /api/campaigns/:id/metrics", id) if CAMPAIGNS.contains(&id) => ok(serde_json::json!({"sent": 1})),
            ("GET /api/campaigns/:id/metrics", _) => {
                self.unknown_ids.fetch_add(1, Ordering::SeqCst);
                not_found
            }
            _ => not_found,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_mix_realises_its_18_endpoint_mix_and_reads_what_it_created() {
    let svc = Arc::new(Orchestrator::default());
    let app = axum::Router::new()
        .fallback(
            |State(s): State<Arc<Orchestrator>>,
             method: axum::http::Method,
             uri: axum::http::Uri,
             headers: HeaderMap,
             body: axum::body::Bytes| async move { s.handle(method.as_str(), uri.path(), &headers, &body) },
        )
        .with_state(svc.clone());
    let addr = serve(app).await;
    let scenario = example("orchestrator-mix.toml").replace("between(1, 2)", "constant(0)");
    let env = |name: &str| match name {
        "ORCHESTRATOR_USER" => Some("orchestrator-user".to_string()),
        "ORCHESTRATOR_PASSWORD" => Some("orchestrator-secret".to_string()),
        _ => None,
    };
    let load = load_args(addr, 12, 1000.0, Duration::from_secs(3));
    let s = setup_with_env(&scenario, &load, 1, &env);
    let r = run_with_one_worker(s).await;

    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    let row = |name: &str, method: &str| {
        r.endpoints
            .iter()
            .find(|e| e.name == name && e.method == method)
            .map_or(0, |e| e.requests)
    };
    // Each user logged in once and set up once.
    assert_eq!(row("/api/auth/login", "POST"), 12);
    assert_eq!(svc.count("POST /api/auth/login"), 12);
    assert_eq!(row("/api/leads (setup)", "POST"), 12);
    // (row name, method, the target's route, weight)
    let mix = [
        ("/health", "GET", "GET /health", 5),
        ("/health/detailed", "GET", "GET /health/detailed", 2),
        ("/metrics", "GET", "GET /metrics", 1),
        ("/api/auth/me", "GET", "GET /api/auth/me", 3),
        ("/api/auth/keys", "GET", "GET /api/auth/keys", 1),
        ("/api/workflows", "GET", "GET /api/workflows", 10),
        ("/api/workflows/:id/status", "GET", "GET /api/workflows/:id/status", 5),
        ("/api/workflows", "POST", "POST /api/workflows", 3),
        ("/api/workflows/:id", "PUT", "PUT /api/workflows/:id", 2),
        (
            "/api/workflows/:id/execute",
            "POST",
            "POST /api/workflows/:id/execute",
            4,
        ),
        ("/api/leads", "GET", "GET /api/leads", 8),
        ("/api/leads", "POST", "POST /api/leads", 3),
        ("/api/leads/:id", "GET", "GET /api/leads/:id", 2),
        ("/api/campaigns", "GET", "GET /api/campaigns", 6),
        ("/api/campaigns/:id/metrics", "GET", "GET /api/campaigns/:id/metrics", 2),
        ("/api/nonexistent", "GET", "GET /api/nonexistent", 1),
        ("/docs", "GET", "GET /docs", 2),
        ("/openapi.json", "GET", "GET /openapi.json", 1),
    ];
    let setup = |route: &str| match route {
        "POST /api/workflows" => row("/api/workflows (setup)", "POST"),
        "POST /api/leads" => row("/api/leads (setup)", "POST"),
        "GET /api/campaigns" => row("/api/campaigns (setup)", "GET"),
        _ => 0,
    };
    let total: u64 = mix.iter().map(|(n, m, ..)| row(n, m)).sum();
    assert!(total > 3000, "too few requests for a mix: {total}");
    let worst = mix
        .iter()
        .map(|(n, m, _, w)| (row(n, m) as f64 / total as f64 - f64::from(*w) / 61.0).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "orchestrator mix: {total} requests, largest gap to the plan {:.3} points",
        worst * 100.0
    );
    for (name, method, route, weight) in mix {
        // The report's count is what the target received (setup calls apart).
        assert_eq!(row(name, method) + setup(route), svc.count(route), "{method} {name}");
        let share = row(name, method) as f64 / total as f64;
        let plan = f64::from(weight) / 61.0;
        assert!(
            (share - plan).abs() < 0.01,
            "{method} {name}: {:.2} % of requests, planned {:.2} %",
            100.0 * share,
            100.0 * plan
        );
    }
    // Create-then-read: every id a request named existed and was this user's own.
    assert_eq!(svc.unknown_ids.load(Ordering::SeqCst), 0);
    assert_eq!(svc.foreign_ids.load(Ordering::SeqCst), 0);
    assert_eq!(svc.unauthorized.load(Ordering::SeqCst), 0);
    assert_eq!(svc.duplicate_emails.load(Ordering::SeqCst), 0, "{{uuid}} repeated");
    // The deliberate 404: all expected, none a failure.
    let not_found: u64 = r
        .outcomes
        .iter()
        .filter(|o| o.name == "/api/nonexistent" && o.kind == "expected_status" && o.detail == "404")
        .map(|o| o.count)
        .sum();
    assert_eq!(not_found, svc.count("GET /api/nonexistent"));
    assert!(not_found > 0);
}

const EVENT_KEYS: [(&str, &str); 4] = [
    ("EVENTS_KEY_FREE", "wk_free"),
    ("EVENTS_KEY_PRO_1", "wk_pro_1"),
    ("EVENTS_KEY_PRO_2", "wk_pro_2"),
    ("EVENTS_KEY_ENTERPRISE", "wk_enterprise"),
];
/// Requests the FREE project may make before its answers turn to 429.
const FREE_LIMIT: u64 = 40;

/// The ingest API of `event-analytics.toml`: counts what it accepted, by kind.
#[derive(Default)]
struct Analytics {
    /// Requests by (row kind, source): ("page_view", "mixed"), ("batch", "stress"), ...
    requests: Mutex<BTreeMap<(String, String), u64>>,
    /// Events accepted (a 429 accepts none), and their ids, to find repeats.
    accepted_events: AtomicU64,
    event_ids: Mutex<std::collections::BTreeSet<String>>,
    repeated_ids: AtomicU64,
    users: Mutex<std::collections::BTreeSet<String>>,
    by_key: Mutex<BTreeMap<String, u64>>,
    free_used: AtomicU64,
    too_many: AtomicU64,
    rejected: AtomicU64,
}

impl Analytics {
    fn handle(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
        let key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        if !EVENT_KEYS.iter().any(|(_, k)| *k == key) {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::UNAUTHORIZED, "{}".into());
        }
        *self.by_key.lock().unwrap().entry(key.clone()).or_default() += 1;
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let events: Vec<serde_json::Value> = match path {
            "/api/v1/event" => vec![json.clone()],
            "/api/v1/event/batch" => json["events"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        let kind = match path {
            "/api/v1/event" => json["event_type"].as_str().unwrap_or("?").to_string(),
            "/api/v1/event/batch" => "batch".into(),
            _ => "stats".into(),
        };
        let source = events
            .first()
            .and_then(|e| e["source"].as_str())
            .unwrap_or_default()
            .to_string();
        *self.requests.lock().unwrap().entry((kind, source)).or_default() += 1;
        if key == "wk_free" && self.free_used.fetch_add(1, Ordering::SeqCst) >= FREE_LIMIT {
            self.too_many.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::TOO_MANY_REQUESTS, r#"{"detail": "rate limit"}"#.into());
        }
        if path == "/api/v1/stats" {
            let total = self.accepted_events.load(Ordering::SeqCst);
            return (StatusCode::OK, format!(r#"{{"total_events": {total}}}"#));
        }
        let valid = !events.is_empty()
            && events
                .iter()
                .all(|e| e["event_type"].is_string() && e["event_id"].is_string() && e["user_id"].is_string());
        if !valid {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::UNPROCESSABLE_ENTITY, "{}".into());
        }
        for e in &events {
            self.accepted_events.fetch_add(1, Ordering::SeqCst);
            if !self
                .event_ids
                .lock()
                .unwrap()
                .insert(e["event_id"].as_str().unwrap().to_string())
            {
                self.repeated_ids.fetch_add(1, Ordering::SeqCst);
            }
            self.users
                .lock()
                .unwrap()
                .insert(e["user_id"].as_str().unwrap().to_string());
        }
        (StatusCode::ACCEPTED, format!(r#"{{"accepted": {}}}"#, events.len()))
    }

    fn count(&self, kind: &str, source: &str) -> u64 {
        let requests = self.requests.lock().unwrap();
        requests
            .get(&(kind.to_string(), source.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// Runs `event-analytics.toml` (waits shortened) against an in-process ingest API.
async fn run_event_analytics(
    tweak: impl FnOnce(&mut barrage_master::cli::LoadArgs),
) -> (barrage_master::report::FinalReport, Arc<Analytics>) {
    let svc = Arc::new(Analytics::default());
    let app = axum::Router::new()
        .fallback(
            |State(s): State<Arc<Analytics>>, uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| async move {
                s.handle(uri.path(), &headers, &body)
            },
        )
        .with_state(svc.clone());
    let addr = serve(app).await;
    let scenario = example("event-analytics.toml").replace("between(1, 3)", "constant(0.005)");
    let env = |name: &str| EVENT_KEYS.iter().find(|(n, _)| *n == name).map(|(_, k)| k.to_string());
    let mut load = load_args(addr, 11, 1000.0, Duration::from_secs(2));
    tweak(&mut load);
    let s = setup_with_env(&scenario, &load, 1, &env);
    (run_with_one_worker(s).await, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_analytics_counts_business_events_as_the_target_ingested_them() {
    let (r, svc) = run_event_analytics(|_| {}).await;
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    assert_eq!(svc.rejected.load(Ordering::SeqCst), 0);
    let row = |name: &str| {
        r.endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no row {name}"))
    };
    // Every row's requests are what the target received of that kind.
    for (name, kind, source) in [
        ("/api/v1/event (Page View)", "page_view", "mixed"),
        ("/api/v1/event (Click)", "click", "mixed"),
        ("/api/v1/event (Purchase)", "purchase", "mixed"),
        ("/api/v1/event/batch (mixed)", "batch", "mixed"),
        ("/api/v1/event/batch (stress)", "batch", "stress"),
        ("/api/v1/stats", "stats", ""),
    ] {
        assert_eq!(row(name).requests, svc.count(kind, source), "{name}");
        assert!(row(name).requests > 0, "{name} never ran");
    }
    // Business events: exactly what the target accepted (batches x 20, no 429s).
    assert_eq!(r.aggregated.business_events, svc.accepted_events.load(Ordering::SeqCst));
    assert_eq!(row("/api/v1/event/batch (stress)").events_per_request, 20);
    assert!(
        r.aggregated.business_events > r.aggregated.requests,
        "batches carry 20 events"
    );
    assert_eq!(svc.repeated_ids.load(Ordering::SeqCst), 0, "{{uuid}} repeated");
    // The FREE plan's 429s are expected outcomes, equal to the target's count.
    let too_many: u64 = r
        .outcomes
        .iter()
        .filter(|o| o.kind == "expected_status" && o.detail == "429")
        .map(|o| o.count)
        .sum();
    assert_eq!(too_many, svc.too_many.load(Ordering::SeqCst));
    assert!(too_many > 0, "the FREE plan's limit was never reached");
    // Keys at random per request: every project was used.
    let by_key = svc.by_key.lock().unwrap().clone();
    assert_eq!(by_key.len(), 4, "{by_key:?}");
    // 100:10 of 11 users: ten mixed users and one stress user.
    let users = svc.users.lock().unwrap().clone();
    assert_eq!(users.len(), 11, "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preset_a_class_and_a_tag_select_the_smoke_test_of_purchases() {
    let (r, svc) = run_event_analytics(|load| {
        load.users = None;
        load.preset = Some("smoke".into());
        load.classes = vec!["MixedLoadUser".into()];
        load.tags = vec!["purchase".into()];
    })
    .await;
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
    // Only purchases, from the preset's 5 users of the one class.
    let requests = svc.requests.lock().unwrap().clone();
    assert_eq!(
        requests.keys().collect::<Vec<_>>(),
        [&("purchase".to_string(), "mixed".to_string())]
    );
    assert_eq!(r.endpoints.len(), 1, "{:?}", r.endpoints);
    assert_eq!(r.endpoints[0].requests, svc.count("purchase", "mixed"));
    assert_eq!(svc.users.lock().unwrap().len(), 5);
}
