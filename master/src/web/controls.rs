//! What the web API changes: start the run (`--start-from-ui`), change its load,
//! reset its statistics, stop it (or, once over, close the master). Every one is a
//! POST that needs the token; start, retarget and stop go to the controller as
//! commands.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AppState, authorized, unauthorized};
use crate::controller::{Retarget, Start};

/// `--start-from-ui`: starts the run, `{"users": 50, "spawn_rate": 10, "host":
/// "http://...", "run_time_s": 60}` (host and run time optional).
pub(super) async fn start_run(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
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
pub(super) async fn reset_stats(State(state): State<AppState>, headers: HeaderMap) -> Response {
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

/// Changes the load of the running test: `{"users": 50, "spawn_rate": 10}` (users),
/// or `{"arrival_rate": 200}` (the open model). It replaces any shape from then on.
pub(super) async fn retarget(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
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
    let arrival = state.steering.run_info(&state.info).arrival;
    if arrival.as_ref().is_some_and(|a| a.trace.is_some()) {
        return bad("this run replays a trace: its arrivals are the recording's; stop it instead".into());
    }
    let open = arrival.is_some();
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

/// Stops the running test (`{"stopping": true}`), or, once it is over and the page
/// kept its downloads up, closes the master (`{"closing": true}`).
pub(super) async fn stop_run(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
