//! The master's HTTP API (port 8089 unless `--headless`): a view of the run (state,
//! statistics, downloads) and its controls (start, change the load, reset, stop). The
//! web UI ([`crate::ui`], `GET /`) is built on these same endpoints. `GET /metrics`
//! shows the same run to Prometheus ([`crate::prometheus`]).
//!
//! Reads come from the cluster (registry, then aggregator); start, retarget and stop
//! go to the controller as commands ([`crate::controller::steering`]); the final
//! report, once written, arrives on a `watch` channel.
//!
//! Security rules, because this port can stop a load test or reveal a target:
//! - It binds to 127.0.0.1 unless `--web-host` says otherwise, and binding anywhere else
//!   requires `--web-auth` (then every request needs the token).
//! - State-changing calls are POST and always need the token (`X-Barrage-Token`), so a
//!   page on another origin cannot trigger them with a simple form or image request.
//!   The token is `BARRAGE_WEB_TOKEN`, or a random one logged at start.

mod controls;
mod reads;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::controller::Steering;
use crate::report::{FinalReport, RunInfo};

/// Header carrying the token.
pub const TOKEN_HEADER: &str = "x-barrage-token";

/// How the web API is protected: its token, and whether reads need it too.
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
    /// Start, retarget and stop go to the controller through this.
    steering: Steering,
    /// The final report once written, for the downloads (None while the run lasts).
    report: watch::Receiver<Option<Arc<FinalReport>>>,
    /// `--start-from-ui`: POST /api/start starts the run...
    start_from_ui: bool,
    /// ...and POST /api/stop after it ends closes the master.
    quit: CancellationToken,
}

/// How the web API and the run steer each other.
#[derive(Debug, Clone)]
pub struct Controls {
    /// `POST /api/start`, `/api/target` and `/api/stop` during the run go to the
    /// controller through this.
    pub steering: Steering,
    /// The final report once written (the master publishes it).
    pub report: watch::Receiver<Option<Arc<FinalReport>>>,
    /// Cancelled by `POST /api/stop` after the run (`--start-from-ui`).
    pub quit: CancellationToken,
    /// The server ends when this is cancelled.
    pub done: CancellationToken,
    /// `--start-from-ui`: `POST /api/start` starts the run.
    pub start_from_ui: bool,
}

/// Serves until `controls.done` is cancelled.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    info: RunInfo,
    cfg: WebConfig,
    controls: Controls,
) -> std::io::Result<()> {
    let done = controls.done.clone();
    let state = AppState {
        cluster,
        info,
        cfg,
        steering: controls.steering,
        report: controls.report,
        start_from_ui: controls.start_from_ui,
        quit: controls.quit,
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/api/stats", get(reads::stats))
        .route("/api/state", get(reads::run_state))
        .route("/api/start", post(controls::start_run))
        .route("/api/reset", post(controls::reset_stats))
        .route("/api/download/{file}", get(reads::download))
        .route("/metrics", get(reads::metrics))
        .route("/api/stop", post(controls::stop_run))
        .route("/api/target", post(controls::retarget))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(done.cancelled_owned())
        .await
}

/// `GET /`: the web UI's page ([`crate::ui`]).
async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::ui::page(&headers, &state.cfg.token, state.cfg.auth_all)
}

/// The request carries the web API's token.
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    crate::auth::token_matches(
        headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()),
        &state.cfg.token,
    )
}

/// The answer to a request without the right token.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"error": "missing or wrong X-Barrage-Token"})),
    )
        .into_response()
}
