//! What the web API shows: the run so far or its final report (`/api/stats`), the
//! run's phase, workers and load (`/api/state`), the report as files
//! (`/api/download/..`), and the Prometheus exposition (`/metrics`). Reads need the
//! token only with `--web-auth`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AppState, authorized, unauthorized};
use crate::cluster::Phase;
use crate::report::FinalReport;

/// The run so far, in the shape of the final report (`barrage.report.v1`).
pub(super) async fn stats(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
    // The figures from the live view's totals of this second (built at most once a
    // second, whoever asks), not rebuilt per call under the lock.
    let mut report = FinalReport::live(&agg, &info, elapsed);
    if merged {
        report = report.with_merged(&agg, &info);
    }
    report.stop_reason = "running".into();
    report
}

/// What the UI needs beside the figures: the run's phase, the workers, the load.
pub(super) async fn run_state(State(state): State<AppState>, headers: HeaderMap) -> Response {
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

/// The report as files: `report.json` (with the merged histograms), `report.html`,
/// and Locust's `stats.csv` / `failures.csv`; the run so far, or the final report.
pub(super) async fn download(
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
pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
