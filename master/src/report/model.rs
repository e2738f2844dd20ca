//! The report as saved ([`FinalReport`] and the tables it holds): the shape of the
//! `--json` file and of `master/schema/report.schema.json`. Rows of stats, workers,
//! arrivals, drift and completeness have their own files; this one holds the rest.

use serde::{Deserialize, Serialize};

use super::arrivals::ArrivalFigures;
use super::completeness::Completeness;
use super::drift::Drift;
use super::nodes::WhereTimeGoes;
use super::rows::{EndpointRow, MergedRow, Percentiles};
use super::spectrum::SpectrumRow;
use super::workers::WorkerRow;
use crate::hunt::HuntReport;
use crate::threshold_eval::ThresholdRow;

/// The `schema` of every report this version writes (and the only one it reads).
pub const SCHEMA_ID: &str = "barrage.report.v1";

/// The final report of a run: every table and figure the console, JSON, HTML and CSV
/// outputs show, and the merged data they come from. Saved as `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalReport {
    /// Always [`SCHEMA_ID`]: what a reader checks before trusting the rest.
    pub schema: String,
    /// The scenario file the run was given.
    pub scenario: String,
    /// `--host`, when it overrode the scenario's.
    pub host: Option<String>,
    /// Users asked for, cluster-wide (0 with an arrival rate).
    pub users: u32,
    /// Users started per second while ramping up.
    pub spawn_rate: f64,
    /// When the run started, Unix seconds.
    pub started_unix: f64,
    /// How long the run lasted, seconds.
    pub duration_s: f64,
    /// Seconds into the run the statistics were last reset from the web UI (0 without
    /// a reset): the tables and their rates cover `duration_s - stats_since_s`.
    pub stats_since_s: f64,
    /// Why the run stopped, in words.
    pub stop_reason: String,
    /// One row per stats row (endpoint and method), sorted by (name, method).
    pub endpoints: Vec<EndpointRow>,
    /// Every stats row merged (Locust's `Aggregated`).
    pub aggregated: EndpointRow,
    /// Events per second over the run's seconds (Dify's Event Throughput table).
    pub event_throughput: MaxAvgMin,
    /// Time to first event of the SSE rows merged (None without SSE).
    pub ttfe_ms: Option<Percentiles>,
    /// Streams and connections (Dify's Connections table).
    pub connections: Connections,
    /// Requests per second (Dify's QPS table).
    pub qps: Qps,
    /// Failures by (row, kind, detail), most frequent first.
    pub failures: Vec<FailureRow>,
    /// Declared outcomes (expected non-2xx answers): counted, not failures.
    pub outcomes: Vec<FailureRow>,
    /// Per target address (replica), when the host resolved to several.
    pub replicas: Vec<ReplicaRow>,
    /// Every worker that took part, in join order.
    pub workers: Vec<WorkerRow>,
    /// Cluster events, one line each with its run time (`    3.0s worker w joined`).
    pub events: Vec<String>,
    /// What may make the figures misleading (a saturated generator, clipped fields).
    pub warnings: Vec<String>,
    /// Whether these figures are everything the workers recorded (reports written
    /// before this existed read as complete).
    #[serde(default)]
    pub completeness: Completeness,
    /// Every second of the run, for the charts and `_sse.csv`.
    pub timeline: Vec<TimelinePoint>,
    /// Each threshold with its observed value and verdict (empty without thresholds).
    pub thresholds: Vec<ThresholdRow>,
    /// `barrage hunt`: each step and the verdict (null for other runs).
    pub hunt: Option<HuntReport>,
    /// The open model (null for users): arrivals due by the schedule over the run,
    /// and those dropped at the in-flight cap.
    pub arrivals: Option<ArrivalFigures>,
    /// Soak: the run's early third against its late third (null below 30 s).
    pub drift: Option<Drift>,
    /// The whole run's latency distributions (all rows merged), in log buckets.
    pub distributions: Option<Distributions>,
    /// HdrHistogram's percentile spectrum of the Aggregated row, then of each stats
    /// row: every latency metric with data from 0 to 99.999 %. Files saved before it
    /// existed read with none, and `barrage report` computes it from `merged`.
    #[serde(default)]
    pub spectrum: Vec<SpectrumRow>,
    /// Dify endpoints: where the workflow's time goes, per node, with queueing and the
    /// stream's tail. Absent (empty) without Dify node data, as in older files, which
    /// `barrage report` fills from `merged`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub where_time_goes: Vec<WhereTimeGoes>,
    /// The merged data the tables come from: each row's counters and HDR histograms,
    /// so a saved result can be re-rendered or merged again (`barrage report`).
    pub merged: Vec<MergedRow>,
}

/// The run's latency distributions in log buckets (five per decade, from 0.1 ms), for
/// the HTML report's histograms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Distributions {
    /// Response times of every request.
    pub response_time: Vec<Bucket>,
    /// Times to first event of every stream.
    pub ttfe: Vec<Bucket>,
}

/// Values up to `le_ms` (and above the previous bucket's) seen `count` times.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    /// The bucket's upper bound, ms.
    pub le_ms: f64,
    /// Values that fell in it.
    pub count: u64,
}

/// A per-second figure's highest, average and lowest second (the average is the
/// total over the run's time; a second without reports counts as 0 for the lowest).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct MaxAvgMin {
    /// The busiest second.
    pub max: f64,
    /// The total divided by the seconds since the statistics started.
    pub avg: f64,
    /// The quietest second after the first active one.
    pub min: f64,
}

/// Streams and connections over the run (Dify's Connections table).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Connections {
    /// The most streams open at once in any second (sum of the workers' peaks).
    pub max_concurrent: i64,
    /// Streams open on average (stream-seconds over the run's seconds).
    pub avg_active: f64,
    /// Streams started.
    pub total_streams: u64,
    /// TCP (or TLS) connections opened.
    pub connections_opened: u64,
    /// See [`EndpointRow::retries`].
    #[serde(default)]
    pub retries: u64,
}

/// Requests per second over the run (Dify's QPS table).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Qps {
    /// The busiest second's requests.
    pub max: f64,
    /// Requests over the seconds since the statistics started.
    pub avg: f64,
    /// Mean response time of every request, ms.
    pub avg_duration_ms: f64,
}

/// Failures (or declared outcomes) of one stats row of one kind and detail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRow {
    /// The row's HTTP method.
    pub method: String,
    /// The row's name.
    pub name: String,
    /// What failed (`http_status`, `timeout`, `terminal_status`, ...).
    pub kind: String,
    /// Which (the status code, the event's status; may be empty).
    pub detail: String,
    /// How many times.
    pub count: u64,
    /// The first occurrence's message (bounded).
    pub sample: String,
    /// When the pair was first and last recorded, unix ms (as Locust's `_failures.csv`
    /// First Seen / Last Seen); null when not known (workers or files from before).
    #[serde(default)]
    pub first_seen_unix_ms: Option<u64>,
    /// See `first_seen_unix_ms`.
    #[serde(default)]
    pub last_seen_unix_ms: Option<u64>,
}

/// One stats row's figures against one target address (replica).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaRow {
    /// The address (`ip:port`, or `(other)` past the row cap).
    pub peer: String,
    /// The row's HTTP method.
    pub method: String,
    /// The row's name.
    pub name: String,
    /// Peak users pinned to this address (sum of each worker's peak; the same on each
    /// of the address's rows).
    #[serde(default)]
    pub users: u64,
    /// Requests sent to this address.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Requests per second over the run.
    pub rps: f64,
    /// Every request, failures included.
    pub response_time_ms: Option<Percentiles>,
    /// Successful requests only: a dead replica fails fast and must not look fast.
    #[serde(default)]
    pub response_time_ok_ms: Option<Percentiles>,
    /// Time to first event of its streams.
    pub ttfe_ms: Option<Percentiles>,
    /// This address's failures by (kind, detail).
    #[serde(default)]
    pub failure_kinds: Vec<ReplicaFailure>,
}

/// Failures of one kind and detail at one replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaFailure {
    /// What failed (as [`FailureRow::kind`]).
    pub kind: String,
    /// Which (as [`FailureRow::detail`]).
    pub detail: String,
    /// How many times.
    pub count: u64,
}

/// One second of the run, summed over the workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the run started (start of the 1 s slot).
    pub t: i64,
    /// Users running (time average over the second).
    pub users: f64,
    /// Requests in the second.
    pub rps: u64,
    /// Failed requests in the second.
    pub failures_per_s: u64,
    /// SSE events received in the second.
    pub events_per_s: u64,
    /// Streams started in the second.
    pub streams_per_s: u64,
    /// Streams open (time average over the second).
    pub active_streams: f64,
    /// The most streams open at once in the second (sum of the workers' peaks).
    pub active_streams_max: i64,
    /// Time to first event, median of the second, ms (0 without streams).
    pub ttfe_p50_ms: f64,
    /// Time to first event, 95th percentile, ms.
    pub ttfe_p95_ms: f64,
    /// Time to first event, 99th percentile, ms.
    pub ttfe_p99_ms: f64,
    /// Response time, median of the second, ms (0 without requests).
    pub response_time_p50_ms: f64,
    /// Response time, 95th percentile, ms.
    pub response_time_p95_ms: f64,
    /// Response time, 99th percentile, ms.
    pub response_time_p99_ms: f64,
    /// Requests in the second that met their task's goodput objectives; absent when
    /// no task has objectives (and in reports saved before goodput).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_per_s: Option<u64>,
}
