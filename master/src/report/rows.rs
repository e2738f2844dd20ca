//! The report's stats rows ([`EndpointRow`], [`Percentiles`]): one per endpoint and
//! method, and `Aggregated`, computed from merged stats the same way for a live run and
//! for a saved one re-rendered from the [`MergedRow`]s it carries ([`rows_from_merged`]).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use barrage_common::metrics::{EndpointStats, FailureKind, Metric};
use barrage_common::plan::TaskKindTag;
use barrage_common::saved::SavedStats;

use super::goodput::Goodput;
use crate::aggregate::business_events;

/// One stats row of the report (an endpoint and method, or `Aggregated`): its counts,
/// rates over the run and latency percentiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointRow {
    /// `http` or `sse` (the Aggregated row says `http`).
    pub kind: String,
    /// The HTTP method (empty on the Aggregated row).
    pub method: String,
    /// The row's name (the task's `name`, or its path; `Aggregated`).
    pub name: String,
    /// Requests sent and answered (or failed).
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// failures / requests (0 without requests).
    pub failure_ratio: f64,
    /// Requests per second since the statistics started.
    pub rps: f64,
    /// Failures per second since the statistics started.
    pub failures_per_s: f64,
    /// Request start to the end of the answer (or the failure).
    pub response_time_ms: Option<Percentiles>,
    /// Request start to the first non-ping SSE event.
    pub ttfe_ms: Option<Percentiles>,
    /// Request start to the first token (an LLM answer's first text).
    pub ttft_ms: Option<Percentiles>,
    /// Request start to the response headers.
    pub time_to_headers_ms: Option<Percentiles>,
    /// First byte to the end of a stream.
    pub stream_duration_ms: Option<Percentiles>,
    /// Time between consecutive events of a stream.
    pub event_gap_ms: Option<Percentiles>,
    /// Time between consecutive body chunks.
    pub chunk_gap_ms: Option<Percentiles>,
    /// The server's own elapsed time, as its final event reports it.
    pub server_elapsed_ms: Option<Percentiles>,
    /// HTTP 429 answers: the app's concurrency limit and the plan's quota.
    pub too_many_requests: u64,
    /// Rate-limit errors the app reported in a stream (`rate_limit_error`).
    pub rate_limit_errors: u64,
    /// Ping events received (keep-alives, not counted as first events).
    pub pings: u64,
    /// Tokens the app reported per second of the run.
    pub tokens_per_s: f64,
    /// Streams opened.
    pub streams_started: u64,
    /// Streams that ended with their closing event.
    pub streams_completed: u64,
    /// SSE events received, pings included.
    pub events: u64,
    /// Events by their `event` type (bounded: the rest under `(other)`).
    pub events_by_type: BTreeMap<String, u64>,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Connections opened for this row's requests.
    pub connections_opened: u64,
    /// Requests sent again on a fresh connection (not requests, not failures);
    /// absent in reports saved before they were counted.
    #[serde(default)]
    pub retries: u64,
    /// Tokens the app reported using, summed.
    pub total_tokens: u64,
    /// Business events one successful request carries (the task's `events_per_request`).
    pub events_per_request: u32,
    /// Successful requests x `events_per_request`.
    pub business_events: u64,
    /// Business events per second since the statistics started.
    pub business_events_per_s: f64,
    /// Requests that met their task's goodput objectives, their rate and share;
    /// absent for a row whose tasks have none (and in reports saved before goodput).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
}

/// A latency distribution's figures, ms, exact to the HDR histogram's 3 significant
/// digits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Their mean.
    pub avg: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
}

impl Percentiles {
    /// From a histogram in µs to milliseconds.
    pub fn from_us(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            count: h.len(),
            avg: h.mean() / 1000.0,
            min: ms(h.min()),
            max: ms(h.max()),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
        })
    }
}

/// Failures plus declared outcomes of one kind (a 429 may be either).
fn count_kind(s: &EndpointStats, kind: FailureKind) -> u64 {
    s.failure_kinds
        .iter()
        .chain(&s.outcomes)
        .filter(|((k, _), _)| k == kind.as_str())
        .map(|(_, e)| e.count)
        .sum()
}

/// How a task kind is written in the report (`http`, `sse`).
pub(crate) fn kind_name(kind: TaskKindTag) -> &'static str {
    match kind {
        TaskKindTag::Http => "http",
        TaskKindTag::Sse => "sse",
    }
}

/// The report row of stats `s` over `secs` seconds, each successful request carrying
/// `epr` business events.
pub(crate) fn row(kind: &str, method: &str, name: &str, s: &EndpointStats, secs: f64, epr: u32) -> EndpointRow {
    let pct = |m: Metric| s.histogram(m).and_then(Percentiles::from_us);
    let business_events = business_events(s, epr);
    EndpointRow {
        kind: kind.to_string(),
        method: method.to_string(),
        name: name.to_string(),
        requests: s.counts.requests,
        failures: s.counts.failures,
        failure_ratio: if s.counts.requests > 0 {
            s.counts.failures as f64 / s.counts.requests as f64
        } else {
            0.0
        },
        rps: s.counts.requests as f64 / secs,
        failures_per_s: s.counts.failures as f64 / secs,
        response_time_ms: pct(Metric::ResponseTime),
        ttfe_ms: pct(Metric::Ttfe),
        ttft_ms: pct(Metric::Ttft),
        time_to_headers_ms: pct(Metric::TimeToHeaders),
        stream_duration_ms: pct(Metric::StreamDuration),
        event_gap_ms: pct(Metric::EventGap),
        chunk_gap_ms: pct(Metric::ChunkGap),
        server_elapsed_ms: pct(Metric::ServerElapsed),
        too_many_requests: count_kind(s, FailureKind::TooManyRequests),
        rate_limit_errors: count_kind(s, FailureKind::RateLimitError),
        pings: s.events_by_type.get("ping").copied().unwrap_or(0),
        tokens_per_s: s.counts.total_tokens as f64 / secs,
        streams_started: s.counts.streams_started,
        streams_completed: s.counts.streams_completed,
        events: s.counts.events,
        events_by_type: s.events_by_type.clone(),
        bytes_received: s.counts.bytes_received,
        connections_opened: s.counts.connections_opened,
        retries: s.counts.retries,
        total_tokens: s.counts.total_tokens,
        events_per_request: epr,
        business_events,
        business_events_per_s: business_events as f64 / secs,
        goodput: None,
    }
}

/// One stats row's merged data, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergedRow {
    /// `http` or `sse`.
    pub kind: String,
    /// The HTTP method of the row.
    pub method: String,
    /// The row's name (the task's `name`, or its path).
    pub name: String,
    /// Business events one successful request carries.
    pub events_per_request: u32,
    /// Its counters and HDR histograms, as saved files hold them.
    pub stats: SavedStats,
    /// Its tasks have goodput objectives, so its good count is shown (absent: none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub goodput: bool,
}

/// The endpoint rows and the Aggregated row of saved merged data, computed the way a
/// run computes them. Also gives each row's stats, for the CSV files.
pub fn rows_from_merged(merged: &[MergedRow], duration_s: f64) -> barrage_common::Result<Recomputed> {
    let secs = duration_s.max(1e-3);
    let mut all = EndpointStats::default();
    let mut rows = Vec::with_capacity(merged.len());
    let mut stats = Vec::with_capacity(merged.len());
    for m in merged {
        let s = EndpointStats::try_from(&m.stats)?;
        all.merge(&s);
        let mut r = row(&m.kind, &m.method, &m.name, &s, secs, m.events_per_request);
        r.goodput = m.goodput.then(|| Goodput::of(s.counts.good, s.counts.requests, secs));
        rows.push(r);
        stats.push((m.method.clone(), m.name.clone(), s));
    }
    Ok(Recomputed {
        aggregated: aggregated_row(&all, &rows, secs),
        endpoints: rows,
        stats,
        all,
    })
}

/// The Aggregated row: every row's stats merged (`all`), its business events the sum
/// of the rows' (each row has its own `events_per_request`).
pub(crate) fn aggregated_row(all: &EndpointStats, rows: &[EndpointRow], secs: f64) -> EndpointRow {
    let mut aggregated = row("http", "", "Aggregated", all, secs, 1);
    aggregated.business_events = rows.iter().map(|e| e.business_events).sum();
    aggregated.business_events_per_s = aggregated.business_events as f64 / secs;
    aggregated.goodput = Goodput::aggregated(rows.iter().filter_map(|r| r.goodput), secs);
    aggregated
}

/// What [`rows_from_merged`] gives.
pub struct Recomputed {
    /// One row per merged row, in the saved order.
    pub endpoints: Vec<EndpointRow>,
    /// Every row merged.
    pub aggregated: EndpointRow,
    /// (method, name, stats) of each row.
    pub stats: Vec<(String, String, EndpointStats)>,
    /// Every row's stats merged (the Aggregated row's).
    pub all: EndpointStats,
}
