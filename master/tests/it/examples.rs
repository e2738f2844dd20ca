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
    let parsed = barrage_common::scenario::parse_str(&scenario, config::FileFormat::Toml, "p.toml", &env).unwrap();
    let load = load_args(addr, 10, 1000.0, Duration::from_secs(2));
    let mut s = barrage_master::app::MasterSetup::resolve(&load, parsed, 1, Some(Duration::from_secs(20))).unwrap();
    s.print_report = false;
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
