//! The HTTP surface: the [`router`] (Service API routes, the mock's own `/_mock/*`
//! control routes, `/health`) and [`run`], which serves it on a given listener.

use std::future::Future;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use http::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::envelope::ApiError;
use crate::request::Arrival;
use crate::state::MockState;
use crate::truth::GroundTruth;
use crate::{chat, workflow};

/// Serves the mock on `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests (streams included) run to their end.
pub async fn run(
    state: MockState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading the mock's listening address")?;
    let cfg = state.config();
    info!(
        %addr,
        first_event_delay = ?cfg.first_event_delay,
        chunks = cfg.chunks,
        chunk_interval = ?cfg.chunk_interval,
        ping_interval = ?cfg.ping_interval,
        auth = cfg.api_key.is_some(),
        "mock dify-api listening"
    );
    // SSE events are small writes; without TCP_NODELAY, Nagle's algorithm would hold
    // each one back until the previous is acknowledged and skew every measured gap.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            debug!(%err, "could not set TCP_NODELAY on an accepted connection");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .with_context(|| format!("serving the mock dify-api on {addr}"))
}

/// The mock's routes, ready to serve or to embed in a larger router.
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/v1/workflows/run", post(workflow::run).fallback(method_not_allowed))
        .route(
            "/v1/workflows/{workflow_id}/run",
            post(workflow::run_by_id).fallback(method_not_allowed),
        )
        .route("/v1/chat-messages", post(chat::send).fallback(method_not_allowed))
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/_mock/stats", get(stats).fallback(method_not_allowed))
        .route("/_mock/reset", post(reset).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Routes that are the mock's own, not dify-api's, and so never counted.
fn is_control(path: &str) -> bool {
    path == "/health" || path.starts_with("/_mock/")
}

/// Stamps every request's arrival; on counted routes also counts it on arrival and,
/// for answers of known length, their body bytes (streams count their own frames).
async fn count(State(state): State<MockState>, mut request: Request, next: Next) -> Response {
    let arrival = Instant::now();
    let counted = !is_control(request.uri().path());
    if counted {
        state.counters().request();
    }
    request.extensions_mut().insert(Arrival(arrival));
    let response = next.run(request).await;
    if counted && let Some(len) = response.body().size_hint().exact() {
        state.counters().bytes(len);
    }
    response
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn stats(State(state): State<MockState>) -> Json<GroundTruth> {
    Json(state.ground_truth())
}

async fn reset(State(state): State<MockState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}
