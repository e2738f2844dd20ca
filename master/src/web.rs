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
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, Phase};
use crate::controller::{Retarget, Start, Steering};
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
        .route("/api/stats", get(stats))
        .route("/api/state", get(run_state))
        .route("/api/start", post(start_run))
        .route("/api/reset", post(reset_stats))
        .route("/api/download/{file}", get(download))
        .route("/metrics", get(metrics))
        .route("/api/stop", post(stop_run))
        .route("/api/target", post(retarget))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(done.cancelled_owned())
        .await
}

/// `GET /`: the web UI's page ([`crate::ui`]).
async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::ui::page(&headers, &state.cfg.token, state.cfg.auth_all)
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    crate::auth::token_matches(
        headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()),
        &state.cfg.token,
    )
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
    // The merged histograms are for saved files (GET /api/download/report.json).
    let report = live_report(&state, false);
    Json(crate::report::json::to_json(&report)).into_response()
}

/// The final report once the run is over, else the run so far.
/// `merged`: with the rows' histograms (for saved files), or without (the live view).
fn live_report(state: &AppState, merged: bool) -> FinalReport {
    if let Some(done) = state.report.borrow().clone() {
        let mut report = (*done).clone();
        if !merged {
            report.merged.clear();
        }
        return report;
    }
    let elapsed = state.cluster.run_elapsed().max(Duration::from_millis(1));
    let info = state.steering.run_info(&state.info);
    let agg = state.cluster.aggregator();
    let mut report = FinalReport::from_aggregator(&agg, &info, elapsed);
    if merged {
        report = report.with_merged(&agg, &info);
    }
    report.stop_reason = "running".into();
    report
}

/// What the UI needs beside the figures: the run's phase, the workers, the load.
async fn run_state(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.cfg.auth_all && !authorized(&state, &headers) {
        return unauthorized();
    }
    let c = &state.cluster;
    let info = state.steering.run_info(&state.info);
    let elapsed = c.run_elapsed();
    let live_users = c.live_users();
    // The registry, copied and released before the aggregator is taken: never both.
    let (phase, members) = {
        let reg = c.registry();
        let members: Vec<_> = reg
            .workers()
            .map(|w| {
                (
                    w.id().to_string(),
                    w.index(),
                    w.hostname().to_string(),
                    w.cores(),
                    w.is_lost(),
                    w.is_connected(),
                    w.users(),
                )
            })
            .collect();
        (reg.phase(), members)
    };
    let phase = match (phase, state.report.borrow().is_some()) {
        (_, true) | (Phase::Done, _) => "done",
        (Phase::Waiting, _) => "waiting",
        (Phase::Running, _) => "running",
        (Phase::Stopping, _) => "stopping",
    };
    let now_us = elapsed.as_micros() as i64;
    let agg = c.aggregator();
    let workers: Vec<serde_json::Value> = members
        .into_iter()
        .map(|(id, index, hostname, cores, lost, connected, users)| {
            let p = agg.workers.get(&id);
            let state = if lost {
                "lost"
            } else if !connected {
                "disconnected"
            } else if p.is_some_and(|p| p.final_seen) {
                "finished"
            } else {
                "connected"
            };
            serde_json::json!({
                "id": id,
                "index": index,
                "hostname": hostname,
                "cores": cores,
                "state": state,
                "users": users,
                "cpu_percent": p.map_or(0.0, |p| p.cpu_percent),
                // The busiest load thread, percent of one core: the saturation figure.
                "thread_cpu_percent": p.map_or(0.0, |p| p.thread_cpu_percent),
                "rss_bytes": p.map_or(0, |p| p.rss_bytes),
                "reports": p.map_or(0, |p| p.reports),
                // Run time since the end of the last interval it reported (null: none yet).
                "last_report_age_s": p.filter(|p| p.reports > 0).map(|p| (now_us - p.last_interval_end_us).max(0) as f64 / 1e6),
            })
        })
        .collect();
    let stats_since_s = agg.stats_since_s;
    drop(agg);
    Json(serde_json::json!({
        "state": phase,
        "start_from_ui": state.start_from_ui,
        "scenario": info.scenario,
        "host": info.host,
        // The load in force (changed by POST /api/target), else the run's as asked.
        "users": c.registry().target().filter(|_| info.arrival.is_none()).map_or(info.users, |t| t.0),
        "spawn_rate": c.registry().target().filter(|_| info.arrival.is_none()).map_or(info.spawn_rate, |t| t.1),
        "arrival_rate": c.registry().target().filter(|_| info.arrival.is_some()).map(|t| t.1),
        "open_model": info.arrival.is_some(),
        "live_users": live_users,
        "elapsed_s": elapsed.as_secs_f64(),
        "stats_since_s": stats_since_s,
        "workers": workers,
    }))
    .into_response()
}

/// `--start-from-ui`: starts the run, `{"users": 50, "spawn_rate": 10, "host":
/// "http://...", "run_time_s": 60}` (host and run time optional).
async fn start_run(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let bad = |code: StatusCode, why: String| (code, Json(serde_json::json!({"error": why}))).into_response();
    if !state.start_from_ui {
        return bad(
            StatusCode::CONFLICT,
            "this master starts on its own; run it with --start-from-ui to start from the web UI".into(),
        );
    }
    let s: Start = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "{e}; expected {{\"users\": N, \"spawn_rate\": R, \"host\": \"http://...\", \"run_time_s\": S}}"
                ),
            );
        }
    };
    if !(s.spawn_rate.is_finite() && s.spawn_rate > 0.0) {
        return bad(
            StatusCode::BAD_REQUEST,
            format!("spawn_rate {} is not a rate; expected a number above 0", s.spawn_rate),
        );
    }
    if let Some(t) = s.run_time_s
        && !(t.is_finite() && t > 0.0 && t <= 366.0 * 86_400.0)
    {
        return bad(
            StatusCode::BAD_REQUEST,
            format!("run_time_s {t}: expected seconds above 0"),
        );
    }
    if let Some(host) = &s.host
        && let Err(e) = barrage_common::scenario::check_host(host)
    {
        return bad(StatusCode::BAD_REQUEST, format!("host {host:?}: {e}"));
    }
    if !state.steering.start(s.clone()).await {
        return bad(StatusCode::CONFLICT, "the run has already been started".into());
    }
    (StatusCode::ACCEPTED, Json(serde_json::json!({"starting": s}))).into_response()
}

/// Starts the statistics again (Locust's "reset stats"); the timeline stays.
async fn reset_stats(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    if state.report.borrow().is_some() {
        return (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": "the run is over"})),
        )
            .into_response();
    }
    let at = state.cluster.run_elapsed().as_secs_f64();
    state.cluster.aggregator().reset_stats(at);
    state
        .cluster
        .registry()
        .note_event(format!("statistics reset from the web API at {at:.0} s"));
    (StatusCode::ACCEPTED, Json(serde_json::json!({"reset_at_s": at}))).into_response()
}

/// The report as files: `report.json` (with the merged histograms), `report.html`,
/// and Locust's `stats.csv` / `failures.csv`; the run so far, or the final report.
async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    if state.cfg.auth_all && !authorized(&state, &headers) {
        return unauthorized();
    }
    let report = live_report(&state, true);
    let (content_type, body) = match file.as_str() {
        "report.json" => (
            "application/json",
            serde_json::to_string_pretty(&crate::report::json::to_json(&report)).unwrap_or_default(),
        ),
        "report.html" => (
            "text/html; charset=utf-8",
            crate::report::html::render(&crate::report::json::to_json(&report)),
        ),
        "stats.csv" => match crate::report::csv::stats_text(&report) {
            Ok(t) => ("text/csv; charset=utf-8", t),
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        },
        "failures.csv" => ("text/csv; charset=utf-8", crate::report::csv::failures_text(&report)),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "files: report.json, report.html, stats.csv, failures.csv"})),
            )
                .into_response();
        }
    };
    let disposition = format!("attachment; filename=\"barrage-{file}\"");
    (
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// The run so far for Prometheus (text format 0.0.4). The read rule of `/api/stats`:
/// open on loopback, the token with `--web-auth`, where `Authorization: Bearer <token>`
/// is accepted too (what Prometheus's scrape `authorization` sends).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = crate::auth::token_matches(
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ")),
        &state.cfg.token,
    );
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
    let r: Retarget = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "{e}; expected {{\"users\": N, \"spawn_rate\": R}} or {{\"arrival_rate\": R}}"
            ));
        }
    };
    let open = state.steering.run_info(&state.info).arrival.is_some();
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
    state.steering.retarget(r);
    (StatusCode::ACCEPTED, Json(serde_json::json!({"accepted": r}))).into_response()
}

async fn stop_run(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    if state.report.borrow().is_some() {
        // The run is over (the UI stayed up for its downloads): close the master.
        state.quit.cancel();
        return (StatusCode::ACCEPTED, Json(serde_json::json!({"closing": true}))).into_response();
    }
    state.steering.stop("stopped from the web API");
    (StatusCode::ACCEPTED, Json(serde_json::json!({"stopping": true}))).into_response()
}
