//! The HTTP surface: the [`router`] (Service API routes, the mock's own `/_mock/*`
//! control routes, `/health`) and [`run`], which serves it on a given listener.

use std::future::Future;
use std::sync::Arc;

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
use crate::listener::CappedListener;
use crate::outcome::{Outcome, Tally};
use crate::request::Arrival;
use crate::state::MockState;
use crate::truth::{Counters, GroundTruth};
use crate::{chat, stop, workflow};

/// Serves the mock on `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests (streams included) run to their end; stalled responses
/// (`X-Mock-Fault: stall`) end at once, and connections still queued under
/// `--max-connections` are closed unserved.
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
        max_active = cfg.max_active,
        max_connections = cfg.max_connections,
        jitter = ?cfg.jitter,
        chat_mode = cfg.chat_mode.name(),
        fault = %cfg.fault,
        dify_version = %cfg.dify_version,
        "mock dify-api listening"
    );
    // SSE events are small writes; without TCP_NODELAY, Nagle's algorithm would hold
    // each one back until the previous is acknowledged and skew every measured gap.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            debug!(%err, "could not set TCP_NODELAY on an accepted connection");
        }
    });
    let listener = CappedListener::new(listener, cfg.max_connections, state.counters().clone());
    let stalls = state.shutdown().clone();
    let shutdown = async move {
        shutdown.await;
        stalls.cancel();
    };
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
        .route(
            "/v1/workflows/tasks/{task_id}/stop",
            post(stop::stop_workflow).fallback(method_not_allowed),
        )
        .route("/v1/chat-messages", post(chat::send).fallback(method_not_allowed))
        .route(
            "/v1/chat-messages/{task_id}/stop",
            post(stop::stop_chat).fallback(method_not_allowed),
        )
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/_mock/stats", get(stats).fallback(method_not_allowed))
        .route("/_mock/reset", post(reset).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(middleware::map_response_with_state(state.clone(), stamp_version))
        .with_state(state)
}

/// `X-Version`, which dify-api puts on every answer: the `--dify-version` we answer as.
async fn stamp_version(State(state): State<MockState>, mut response: Response) -> Response {
    if let Ok(value) = http::HeaderValue::from_str(&state.config().dify_version.to_string()) {
        response.headers_mut().insert("x-version", value);
    }
    response
}

/// Routes that are the mock's own, not dify-api's, and so never counted.
fn is_control(path: &str) -> bool {
    path == "/health" || path.starts_with("/_mock/")
}

/// Stamps every request's arrival; on counted routes also counts it on arrival and,
/// when it leaves, its status, the bytes of answers of known length (streams count
/// their own frames) and its [`Outcome`] (see [`Settle`]).
async fn count(State(state): State<MockState>, mut request: Request, next: Next) -> Response {
    let arrival = Instant::now();
    let path = request.uri().path();
    if is_control(path) {
        return next.run(request).await;
    }
    let counters = state.counters().clone();
    counters.request();
    let stop_call = stop::is_stop_path(path);
    if stop_call {
        counters.stop_requested();
    }
    let settle = Settle {
        counters,
        outcome_due: !stop_call,
    };
    request.extensions_mut().insert(Arrival(arrival));
    let response = next.run(request).await;
    settle.answered(&response);
    response
}

/// Counts how a request left the handler. The outcome comes from the response's
/// [`Tally`]: recorded now, left to the stream, or (for answers the mock's handlers did
/// not tag) read off the status. Dropped before an answer (the client hung up while the
/// handler waited), the request counts as [`Outcome::Aborted`]. Stop calls have no
/// outcome (`stops_requested` counts them).
struct Settle {
    counters: Arc<Counters>,
    outcome_due: bool,
}

impl Settle {
    fn answered(mut self, response: &Response) {
        self.counters.status(response.status());
        if let Some(len) = response.body().size_hint().exact() {
            self.counters.bytes(len);
        }
        if std::mem::take(&mut self.outcome_due) {
            match response.extensions().get::<Tally>() {
                Some(Tally::Now(outcome)) => self.counters.outcome(*outcome),
                Some(Tally::Later) => {}
                None => self.counters.outcome(Outcome::of_status(response.status(), "")),
            }
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if self.outcome_due {
            self.counters.outcome(Outcome::Aborted);
        }
    }
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
