//! The master's HTTP API (port 8089 unless `--headless`): a read-only view of the run
//! and a stop control. The web UI (a later issue) is built on these same endpoints.
//! `GET /metrics` shows the same run to Prometheus ([`crate::prometheus`]).
//!
//! Security rules, because this port can stop a load test or reveal a target:
//! - It binds to 127.0.0.1 unless `--web-host` says otherwise, and binding anywhere else
//!   requires `--web-auth` (then every request needs the token).
//! - State-changing calls are POST and always need the token (`X-Barrage-Token`), so a
//!   page on another origin cannot trigger them with a simple form or image request.
//!   The token is `BARRAGE_WEB_TOKEN`, or a random one logged at start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::report::{FinalReport, RunInfo};

/// Header carrying the token.
pub const TOKEN_HEADER: &str = "x-barrage-token";

#[derive(Clone)]
pub struct WebConfig {
    /// The token POST calls (and, with `auth_all`, every call) must carry.
    pub token: String,
    /// `--web-auth`: reads need the token too.
    pub auth_all: bool,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig").field("auth_all", &self.auth_all).finish()
    }
}

/// Refuses a non-loopback bind without `--web-auth`.
pub fn check_bind(addr: &SocketAddr, auth: bool) -> Result<(), String> {
    if !addr.ip().is_loopback() && !auth {
        return Err(format!(
            "--web-host {}: the web API can stop the run and shows the target; binding beyond this machine needs --web-auth (and BARRAGE_WEB_TOKEN)",
            addr.ip()
        ));
    }
    Ok(())
}

#[derive(Clone)]
struct AppState {
    cluster: Arc<Cluster>,
    info: RunInfo,
    cfg: WebConfig,
    stop: CancellationToken,
}

/// Serves until `done` is cancelled. `stop` is cancelled by `POST /api/stop`.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    info: RunInfo,
    cfg: WebConfig,
    stop: CancellationToken,
    done: CancellationToken,
) -> std::io::Result<()> {
    let state = AppState {
        cluster,
        info,
        cfg,
        stop,
    };
    let app = Router::new()
        .route("/api/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/api/stop", post(stop_run))
        .route("/api/target", post(retarget))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(done.cancelled_owned())
        .await
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) == Some(state.cfg.token.as_str())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"error": "missing or wrong X-Barrage-Token"})),
    )
        .into_response()
}

/// The run so far, in the shape of the final report (`barrage.report.v1`).
async fn stats(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.cfg.auth_all && !authorized(&state, &headers) {
        return unauthorized();
    }
    let elapsed = state.cluster.run_elapsed().max(Duration::from_millis(1));
    let mut report = FinalReport::from_aggregator(&state.cluster.aggregator(), &state.info, elapsed);
    report.stop_reason = "running".into();
    Json(crate::report::json::to_json(&report)).into_response()
}

/// The run so far for Prometheus (text format 0.0.4). The read rule of `/api/stats`:
/// open on loopback, the token with `--web-auth`, where `Authorization: Bearer <token>`
/// is accepted too (what Prometheus's scrape `authorization` sends).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(state.cfg.token.as_str());
    if state.cfg.auth_all && !bearer && !authorized(&state, &headers) {
        return unauthorized();
    }
    let text = crate::prometheus::render(&state.cluster);
    (
        [(axum::http::header::CONTENT_TYPE, crate::prometheus::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// Changes the load of the running test: `{"users": 50, "spawn_rate": 10}` (users),
/// or `{"arrival_rate": 200}` (the open model). It replaces any shape from then on.
async fn retarget(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let bad = |why: String| (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": why}))).into_response();
    let r: crate::cluster::Retarget = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "{e}; expected {{\"users\": N, \"spawn_rate\": R}} or {{\"arrival_rate\": R}}"
            ));
        }
    };
    let open = state.info.arrival.is_some();
    if open && (r.users.is_some() || r.spawn_rate.is_some()) {
        return bad("this run is the open model: change its arrival_rate".into());
    }
    if !open && r.arrival_rate.is_some() {
        return bad("this run has users: change users and spawn_rate".into());
    }
    if r.users.is_none() && r.spawn_rate.is_none() && r.arrival_rate.is_none() {
        return bad("nothing to change".into());
    }
    if let Some(rate) = r.spawn_rate.or(r.arrival_rate)
        && !(rate.is_finite() && rate > 0.0)
    {
        return bad(format!("{rate} is not a rate; expected a number above 0"));
    }
    state.cluster.request_retarget(r);
    (StatusCode::ACCEPTED, Json(serde_json::json!({"accepted": r}))).into_response()
}

async fn stop_run(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    state.cluster.request_stop("stopped from the web API");
    state.stop.cancel();
    (StatusCode::ACCEPTED, Json(serde_json::json!({"stopping": true}))).into_response()
}
