//! `--csv PREFIX`: Locust's CSV files, with Locust 2.x's headers and row conventions
//! (`StatsCSV` and `StatsCSVFileWriter` in locust/stats.py), so scripts and notebooks
//! written for Locust's output read ours unchanged:
//!
//! - `PREFIX_stats.csv`: a row per endpoint, sorted by (name, method) as Locust's
//!   `sort_stats`, then `Aggregated` (Type empty).
//! - `PREFIX_stats_history.csv`: one `Aggregated` row a second, appended and flushed by
//!   the controller while the run goes on. Its rates are the current window's (10 s
//!   ending 2 s back) and its percentiles the run's so far, as Locust writes them. With
//!   `--csv-full-history`, each second also has a row per endpoint (sorted as in
//!   `_stats.csv`) before `Aggregated`, and every row's percentiles are the window's.
//! - `PREFIX_failures.csv`: a row per (endpoint, failure kind and detail).
//! - `PREFIX_exceptions.csv`: the header only (workers raise no user-code exceptions).
//! - `PREFIX_sse.csv` (ours, not Locust's): the per-second SSE timeline.
//!
//! Like Python's `csv.writer` (the `excel` dialect) rows end in CRLF, fields are quoted
//! only when needed, and a missing method is an empty field.
//!
//! One difference from Locust, on purpose: times are exact HDR values in milliseconds
//! (3 significant digits), not rounded to two digits and cut to integers. The window
//! is placed by the workers' own interval times (Locust's by when requests were
//! logged), so a late report still lands in its second.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tracing::{info, warn};

use barrage_common::metrics::{Accum, EndpointStats, Metric};

use super::{FailureRow, FinalReport, TimelinePoint};
use crate::cluster::Cluster;

/// Locust's `PERCENTILES_TO_REPORT`.
pub const PERCENTILES: [f64; 11] = [0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0];

/// `StatsCSV.requests_csv_columns`: 11 named columns, then the percentiles as
/// `get_readable_percentiles(PERCENTILES_TO_REPORT)` names them.
pub const STATS_COLUMNS: [&str; 22] = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
];

/// `StatsCSVFileWriter.stats_history_csv_columns`.
pub const HISTORY_COLUMNS: [&str; 24] = [
    "Timestamp",
    "User Count",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
    "Total Request Count",
    "Total Failure Count",
    "Total Median Response Time",
    "Total Average Response Time",
    "Total Min Response Time",
    "Total Max Response Time",
    "Total Average Content Size",
];

/// `StatsCSV.failures_columns` (Locust 2.47).
pub const FAILURES_COLUMNS: [&str; 6] = ["Method", "Name", "Error", "Occurrences", "First Seen", "Last Seen"];

/// `StatsCSV.exceptions_columns`.
pub const EXCEPTIONS_COLUMNS: [&str; 4] = ["Count", "Message", "Traceback", "Nodes"];

/// Ours: the per-second SSE figures of the report's timeline.
pub const SSE_COLUMNS: [&str; 7] = [
    "Timestamp",
    "Elapsed",
    "Active Streams",
    "Connections/s",
    "Events/s",
    "TTFE 50%",
    "TTFE 95%",
];

/// What Locust writes in the percentile columns of a row without requests.
pub const NA: &str = "N/A";

/// The file suffixes after PREFIX, Locust's four and ours.
pub const STATS_SUFFIX: &str = "_stats.csv";
pub const HISTORY_SUFFIX: &str = "_stats_history.csv";
pub const FAILURES_SUFFIX: &str = "_failures.csv";
pub const EXCEPTIONS_SUFFIX: &str = "_exceptions.csv";
pub const SSE_SUFFIX: &str = "_sse.csv";

/// Locust's current rates and percentiles cover 10 seconds ending 2 seconds before
/// the newest (`StatsEntry.current_rps`); 2 s is also our report lag, so the window's
/// seconds are complete.
const WINDOW_S: i64 = 10;
const REPORT_LAG_S: i64 = 2;

/// A CSV file that could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("--csv: cannot write {}: {reason}", path.display())]
pub struct CsvError {
    pub path: PathBuf,
    pub reason: String,
}

impl CsvError {
    fn new(path: &Path, reason: impl std::fmt::Display) -> Self {
        CsvError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// The CSV output of one run: its prefix and the history file the controller appends
/// to. Cloning shares the history (the controller's and the final write's copies are
/// one file).
#[derive(Debug, Clone)]
pub struct Csv {
    prefix: PathBuf,
    /// `--csv-full-history`: a history row per endpoint too, with current percentiles.
    full_history: bool,
    history: Arc<Mutex<History>>,
}

#[derive(Default)]
struct History {
    out: Option<::csv::Writer<File>>,
    /// The first error, reported again by [`Csv::write_final`].
    error: Option<CsvError>,
    /// When the run started, unix seconds (the SSE file's timestamps).
    started_unix: Option<f64>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("open", &self.out.is_some())
            .field("error", &self.error)
            .field("started_unix", &self.started_unix)
            .finish()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A writer with Python's `csv.writer` conventions (CRLF, minimal quoting).
fn create(path: &Path) -> Result<::csv::Writer<File>, CsvError> {
    let file = File::create(path).map_err(|e| CsvError::new(path, e))?;
    Ok(::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(file))
}

fn write_row<I, T>(out: &mut ::csv::Writer<File>, path: &Path, row: I) -> Result<(), CsvError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    out.write_record(row).map_err(|e| CsvError::new(path, e))
}

/// A whole file as text (the web UI's downloads), with the files' conventions.
fn to_text(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = out.write_record(header);
    for row in rows {
        let _ = out.write_record(row);
    }
    String::from_utf8_lossy(&out.into_inner().unwrap_or_default()).into_owned()
}

/// `_stats.csv`'s rows: one per stats row, then Aggregated, from the merged data.
fn stats_rows(report: &FinalReport) -> barrage_common::Result<Vec<Vec<String>>> {
    let secs = (report.duration_s - report.stats_since_s).max(1e-3);
    let rows = super::rows_from_merged(&report.merged, secs)?.stats;
    let mut all = EndpointStats::default();
    let mut stats: Vec<Vec<String>> = rows
        .iter()
        .map(|(method, name, s)| {
            all.merge(s);
            stats_record(method, name, s, secs)
        })
        .collect();
    stats.push(stats_record("", "Aggregated", &all, secs));
    Ok(stats)
}

/// `PREFIX_stats.csv` as text.
pub fn stats_text(report: &FinalReport) -> Result<String, String> {
    let rows = stats_rows(report).map_err(|e| e.to_string())?;
    Ok(to_text(&STATS_COLUMNS, &rows))
}

/// `PREFIX_failures.csv` as text.
pub fn failures_text(report: &FinalReport) -> String {
    let rows: Vec<Vec<String>> = report.failures.iter().map(failure_record).collect();
    to_text(&FAILURES_COLUMNS, &rows)
}

/// A whole file: the header, then the rows.
fn write_file(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<(), CsvError> {
    let mut out = create(path)?;
    write_row(&mut out, path, header)?;
    for row in rows {
        write_row(&mut out, path, row)?;
    }
    out.flush().map_err(|e| CsvError::new(path, e))
}

impl Csv {
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        Csv {
            prefix: prefix.into(),
            full_history: false,
            history: Arc::default(),
        }
    }

    /// `--csv-full-history`: every second, a history row for each endpoint before the
    /// `Aggregated` one, and every row's percentiles those of the current window
    /// (Locust's `full_history`). The cluster must keep each endpoint's seconds
    /// ([`crate::aggregate::Aggregator::keep_endpoint_seconds`]).
    pub fn with_full_history(mut self, on: bool) -> Self {
        self.full_history = on;
        self
    }

    pub fn full_history(&self) -> bool {
        self.full_history
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// PREFIX followed by `suffix` (e.g. [`STATS_SUFFIX`]).
    pub fn path(&self, suffix: &str) -> PathBuf {
        let mut name = self.prefix.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        // A panic elsewhere while holding it leaves plain data: carry on with it.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At the start of the run: creates the prefix's folders (as Locust does) and the
    /// history file with its header. A failure is logged now and returned by
    /// [`Csv::write_final`]; the run goes on.
    pub fn start(&self) {
        let path = self.path(HISTORY_SUFFIX);
        let mut h = self.lock();
        h.started_unix = Some(unix_now());
        h.out = None;
        h.error = None;
        let opened = (|| -> Result<::csv::Writer<File>, CsvError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| CsvError::new(&path, format!("creating {}: {e}", dir.display())))?;
            }
            let mut out = create(&path)?;
            write_row(&mut out, &path, HISTORY_COLUMNS)?;
            out.flush().map_err(|e| CsvError::new(&path, e))?;
            Ok(out)
        })();
        match opened {
            Ok(out) => h.out = Some(out),
            Err(e) => {
                warn!(error = %e, "no stats history will be written");
                h.error = Some(e);
            }
        }
    }

    /// Appends the history rows for `elapsed` into the run (the endpoints' with
    /// `--csv-full-history`, then `Aggregated`) and flushes them.
    pub fn history_row(&self, cluster: &Cluster, elapsed: Duration) {
        if self.lock().out.is_none() {
            return;
        }
        // One lock at a time: the registry, then the aggregator, then the file.
        let users = cluster.live_users();
        let to = elapsed.as_secs() as i64 - REPORT_LAG_S;
        let from = (to - WINDOW_S).max(0);
        let unix = unix_now() as i64;
        let rows = {
            let agg = cluster.aggregator();
            let window = agg.window(from, to.max(from));
            let mut rows = Vec::new();
            let all = if self.full_history {
                let mut current = agg.endpoint_window(from, to.max(from));
                let mut all = EndpointStats::default();
                for (key, totals) in &agg.endpoints {
                    let total = totals.stats();
                    all.merge(&total);
                    let now = current.remove(key).unwrap_or_default();
                    rows.push(history_record(
                        unix,
                        users,
                        window.seconds,
                        &HistoryLine {
                            method: &key.method,
                            name: &key.name,
                            window: (now.requests, now.failures),
                            current: Some(&now.response_time),
                            total: &total,
                        },
                    ));
                }
                all
            } else {
                agg.aggregated()
            };
            let current = self.full_history.then_some(&window.response_time);
            rows.push(history_record(
                unix,
                users,
                window.seconds,
                &HistoryLine {
                    method: "",
                    name: "Aggregated",
                    window: (window.requests, window.failures),
                    current,
                    total: &all,
                },
            ));
            rows
        };
        let path = self.path(HISTORY_SUFFIX);
        let mut h = self.lock();
        let Some(out) = h.out.as_mut() else { return };
        let written = rows
            .iter()
            .try_for_each(|row| write_row(out, &path, row))
            .and_then(|()| out.flush().map_err(|e| CsvError::new(&path, e)));
        if let Err(e) = written {
            warn!(error = %e, "the stats history stops here");
            h.out = None;
            h.error.get_or_insert(e);
        }
    }

    /// After the run: closes the history and writes the other files from the final
    /// report and the merged totals. Every file is attempted; the first error (the
    /// history's included) is returned.
    /// The stats rows come from the report's merged data, so a saved report
    /// (`barrage report run.json --csv p`) writes the same files; the history is only
    /// written live, during a run.
    pub fn write_final(&self, report: &FinalReport) -> Result<(), CsvError> {
        let (history_error, started_unix) = {
            let mut h = self.lock();
            let path = self.path(HISTORY_SUFFIX);
            if let Some(mut out) = h.out.take()
                && let Err(e) = out.flush()
            {
                h.error.get_or_insert(CsvError::new(&path, e));
            }
            (h.error.clone(), h.started_unix)
        };
        // A saved report re-rendered has no live history: its own start time.
        let started_unix = started_unix.unwrap_or(report.started_unix);
        let stats = stats_rows(report).map_err(|e| CsvError::new(&self.path(STATS_SUFFIX), e))?;
        let failures: Vec<Vec<String>> = report.failures.iter().map(failure_record).collect();
        let sse: Vec<Vec<String>> = report.timeline.iter().map(|p| sse_record(started_unix, p)).collect();
        let results = [
            write_file(&self.path(STATS_SUFFIX), &STATS_COLUMNS, &stats),
            write_file(&self.path(FAILURES_SUFFIX), &FAILURES_COLUMNS, &failures),
            write_file(&self.path(EXCEPTIONS_SUFFIX), &EXCEPTIONS_COLUMNS, &[]),
            write_file(&self.path(SSE_SUFFIX), &SSE_COLUMNS, &sse),
        ];
        let first = history_error
            .into_iter()
            .chain(results.into_iter().filter_map(Result::err))
            .next();
        match first {
            Some(e) => Err(e),
            None => {
                info!(prefix = %self.prefix.display(), "CSV files written");
                Ok(())
            }
        }
    }
}

/// Microseconds as milliseconds, plainly (`51.455`, `12`).
fn ms(us: u64) -> String {
    (us as f64 / 1000.0).to_string()
}

/// The mean, ms, to the nanosecond (HDR's own resolution is coarser): no float noise
/// such as `56.888000000000005`.
fn mean_ms(h: &Histogram<u64>) -> String {
    ((h.mean() * 1000.0).round() / 1e6).to_string()
}

/// The percentile columns: `N/A` without requests (Locust's `_percentile_fields`),
/// 0 when there are requests but no response times in `h`.
fn percentiles(requests: u64, h: Option<&Histogram<u64>>) -> Vec<String> {
    PERCENTILES
        .iter()
        .map(|&q| match (requests, h) {
            (0, _) => NA.to_string(),
            (_, Some(h)) => ms(h.value_at_quantile(q)),
            (_, None) => "0".to_string(),
        })
        .collect()
}

fn response_times(s: &EndpointStats) -> Option<&Histogram<u64>> {
    s.histogram(Metric::ResponseTime).filter(|h| !h.is_empty())
}

/// Median, average, min and max response time, ms; 0 each without any (Locust's
/// `median_response_time`, `avg_response_time`, `min_response_time or 0`, ...).
fn times(h: Option<&Histogram<u64>>) -> [String; 4] {
    match h {
        Some(h) => [ms(h.value_at_quantile(0.5)), mean_ms(h), ms(h.min()), ms(h.max())],
        None => ["0".into(), "0".into(), "0".into(), "0".into()],
    }
}

fn avg_content_size(s: &EndpointStats) -> String {
    if s.counts.requests == 0 {
        "0".into()
    } else {
        (s.counts.bytes_received as f64 / s.counts.requests as f64).to_string()
    }
}

/// A `_stats.csv` row: `_requests_data_rows`, with the run's rates.
fn stats_record(method: &str, name: &str, s: &EndpointStats, secs: f64) -> Vec<String> {
    let h = response_times(s);
    let mut row = vec![
        method.to_string(),
        name.to_string(),
        s.counts.requests.to_string(),
        s.counts.failures.to_string(),
    ];
    row.extend(times(h));
    row.push(avg_content_size(s));
    row.push((s.counts.requests as f64 / secs).to_string());
    row.push((s.counts.failures as f64 / secs).to_string());
    row.extend(percentiles(s.counts.requests, h));
    row
}

/// What a `_stats_history.csv` row shows.
struct HistoryLine<'a> {
    method: &'a str,
    name: &'a str,
    /// Requests and failures in the current window.
    window: (u64, u64),
    /// With `--csv-full-history`, the window's response times: the row's percentiles.
    /// Without, the percentiles are the run's so far, as Locust writes them.
    current: Option<&'a Accum>,
    /// The run's totals for the row.
    total: &'a EndpointStats,
}

/// A `_stats_history.csv` row: `_stats_history_data_rows` for one entry. Rates over
/// the window's `seconds` as `f"{x:2f}"` (six decimals); percentiles `N/A` until the
/// row has requests, `0` when its window has none.
fn history_record(unix: i64, users: u32, seconds: i64, line: &HistoryLine) -> Vec<String> {
    let seconds = seconds.max(1) as f64;
    let all = line.total;
    let h = response_times(all);
    let (requests, failures) = line.window;
    let mut row = vec![
        unix.to_string(),
        users.to_string(),
        line.method.to_string(),
        line.name.to_string(),
        format!("{:.6}", requests as f64 / seconds),
        format!("{:.6}", failures as f64 / seconds),
    ];
    match line.current {
        Some(current) => {
            let current = (!current.is_empty()).then(|| current.to_histogram());
            row.extend(percentiles(all.counts.requests, current.as_ref()));
        }
        None => row.extend(percentiles(all.counts.requests, h)),
    }
    row.push(all.counts.requests.to_string());
    row.push(all.counts.failures.to_string());
    row.extend(times(h));
    row.push(avg_content_size(all));
    row
}

/// A `_failures.csv` row. Locust's Error is the exception's text; ours is the kind and
/// detail the row counts, then the first occurrence's message.
fn failure_record(f: &FailureRow) -> Vec<String> {
    let what = [f.kind.as_str(), f.detail.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let error = if f.sample.is_empty() {
        what
    } else {
        format!("{what}: {}", f.sample)
    };
    vec![
        f.method.clone(),
        f.name.clone(),
        error,
        f.count.to_string(),
        seen(f.first_seen_unix_ms),
        seen(f.last_seen_unix_ms),
    ]
}

/// First Seen / Last Seen as Locust's `format_utc_timestamp` writes them: whole
/// seconds, UTC, `2026-12-03T09:42:35Z`; empty when not known.
fn seen(unix_ms: Option<u64>) -> String {
    unix_ms.map_or_else(String::new, |ms| {
        let at = UNIX_EPOCH + Duration::from_secs(ms / 1000);
        humantime::format_rfc3339_seconds(at).to_string()
    })
}

fn sse_record(started_unix: f64, p: &TimelinePoint) -> Vec<String> {
    vec![
        ((started_unix + p.t as f64).floor() as i64).to_string(),
        p.t.to_string(),
        p.active_streams.to_string(),
        p.streams_per_s.to_string(),
        p.events_per_s.to_string(),
        p.ttfe_p50_ms.to_string(),
        p.ttfe_p95_ms.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Response times in µs: below 2048 µs HDR (3 significant digits) is exact.
    fn stats(requests: u64, failures: u64, rts_us: &[u64], bytes: u64) -> EndpointStats {
        let mut s = EndpointStats {
            counts: barrage_common::metrics::Counts {
                requests,
                failures,
                bytes_received: bytes,
                ..Default::default()
            },
            ..Default::default()
        };
        for &rt in rts_us {
            s.record(Metric::ResponseTime, rt);
        }
        s
    }

    fn accum_of(h: &Histogram<u64>) -> barrage_common::metrics::Accum {
        let bytes = barrage_common::metrics::encode_histogram(h);
        let mut a = barrage_common::metrics::Accum::default();
        a.add(&barrage_common::metrics::decode_buckets("response_time", &bytes).unwrap());
        a
    }

    #[test]
    fn percentile_headers_are_locusts_readable_names() {
        // get_readable_percentiles: int(p*100) when whole, else round(100p, 6), then "%".
        let readable: Vec<String> = PERCENTILES
            .iter()
            .map(|p| {
                let pct = p * 100.0;
                if (pct - pct.round()).abs() < 1e-9 {
                    format!("{}%", pct.round() as i64)
                } else {
                    format!("{}%", (pct * 1e6).round() / 1e6)
                }
            })
            .collect();
        assert_eq!(STATS_COLUMNS[11..], readable[..]);
        assert_eq!(HISTORY_COLUMNS[6..17], readable[..]);
    }

    #[test]
    fn a_stats_row_has_exact_times_in_ms() {
        let s = stats(4, 1, &[1000, 1200, 1400, 1600], 400);
        let row = stats_record("POST", "/x", &s, 2.0);
        assert_eq!(row.len(), STATS_COLUMNS.len());
        assert_eq!(row[..4], ["POST", "/x", "4", "1"]);
        // Median, average, min, max.
        assert_eq!(row[4..8], ["1.2", "1.3", "1", "1.6"]);
        assert_eq!(row[8], "100", "bytes / requests");
        assert_eq!(row[9..11], ["2", "0.5"]);
        assert_eq!(row[11], "1.2", "50%");
        assert_eq!(row[20..], ["1.6", "1.6"], "99.99% and 100%");
        // Not rounded to two digits as Locust would (1200).
        let row = stats_record("GET", "/y", &stats(1, 0, &[1234], 0), 1.0);
        assert_eq!((row[4].as_str(), row[21].as_str()), ("1.234", "1.234"));
    }

    #[test]
    fn rows_without_requests_write_na_percentiles_and_zeros() {
        let row = stats_record("GET", "/none", &EndpointStats::default(), 1.0);
        assert_eq!(row[2..11], ["0", "0", "0", "0", "0", "0", "0", "0", "0"]);
        assert!(row[11..].iter().all(|v| v == NA), "{row:?}");
        let none = EndpointStats::default();
        let history = history_record(1_700_000_000, 0, 0, &aggregated((0, 0), None, &none));
        assert_eq!(history.len(), HISTORY_COLUMNS.len());
        assert_eq!(
            history[..6],
            ["1700000000", "0", "", "Aggregated", "0.000000", "0.000000"]
        );
        assert!(history[6..17].iter().all(|v| v == NA), "{history:?}");
        assert_eq!(history[17..], ["0", "0", "0", "0", "0", "0", "0"]);
    }

    fn aggregated<'a>(window: (u64, u64), current: Option<&'a Accum>, total: &'a EndpointStats) -> HistoryLine<'a> {
        HistoryLine {
            method: "",
            name: "Aggregated",
            window,
            current,
            total,
        }
    }

    #[test]
    fn history_rates_come_from_the_window_and_the_rest_from_the_run() {
        let all = stats(30, 3, &[1500; 30], 3000);
        let row = history_record(1, 7, 10, &aggregated((25, 2), None, &all));
        assert_eq!(row[1], "7");
        assert_eq!(row[4..6], ["2.500000", "0.200000"]);
        // Percentiles are the run's so far, as Locust writes them by default.
        assert!(row[6..17].iter().all(|v| v == "1.5"), "{row:?}");
        assert_eq!(row[17..], ["30", "3", "1.5", "1.5", "1.5", "1.5", "100"]);
    }

    #[test]
    fn full_history_percentiles_are_the_windows() {
        let all = stats(30, 3, &[1500; 30], 3000);
        let mut recent = stats(2, 0, &[100, 2000], 0);
        let h = recent.histograms[Metric::ResponseTime as usize].take().unwrap();
        let current = accum_of(&h);
        let line = HistoryLine {
            method: "POST",
            name: "/v1/chat-messages",
            window: (2, 0),
            current: Some(&current),
            total: &all,
        };
        let row = history_record(1, 7, 10, &line);
        assert_eq!(row[2..6], ["POST", "/v1/chat-messages", "0.200000", "0.000000"]);
        assert_eq!((row[6].as_str(), row[16].as_str()), ("0.1", "2"), "{row:?}");
        // The totals stay the run's.
        assert_eq!(row[17..], ["30", "3", "1.5", "1.5", "1.5", "1.5", "100"]);
        // A window without requests: 0, not N/A (the row has requests in the run).
        let row = history_record(
            1,
            7,
            10,
            &HistoryLine {
                current: Some(&Accum::default()),
                ..line
            },
        );
        assert!(row[6..17].iter().all(|v| v == "0"), "{row:?}");
    }

    #[test]
    fn a_failure_names_its_kind_detail_and_message() {
        let f = FailureRow {
            method: "POST".into(),
            name: "/v1/chat-messages".into(),
            kind: "http_status".into(),
            detail: "503".into(),
            count: 9,
            sample: "HTTP 503: busy, try later".into(),
            first_seen_unix_ms: Some(1_796_290_955_999),
            last_seen_unix_ms: None,
        };
        assert_eq!(
            failure_record(&f),
            [
                "POST",
                "/v1/chat-messages",
                "http_status 503: HTTP 503: busy, try later",
                "9",
                // Cut to the second, as Locust's int(unix_timestamp); empty when unknown.
                "2026-12-03T09:42:35Z",
                ""
            ]
        );
    }

    #[test]
    fn files_follow_pythons_csv_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        write_file(
            &path,
            &FAILURES_COLUMNS,
            &[vec![
                "GET".into(),
                "/a,b".into(),
                "say \"hi\"".into(),
                "1".into(),
                String::new(),
                String::new(),
            ]],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "Method,Name,Error,Occurrences,First Seen,Last Seen\r\nGET,\"/a,b\",\"say \"\"hi\"\"\",1,,\r\n"
        );
        // Errors name the file.
        let missing = dir.path().join("no/such/dir/x.csv");
        let e = write_file(&missing, &FAILURES_COLUMNS, &[]).unwrap_err();
        assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn paths_append_the_suffix_to_the_prefix() {
        let c = Csv::new("out/run1");
        assert_eq!(c.path(STATS_SUFFIX), PathBuf::from("out/run1_stats.csv"));
        assert_eq!(c.path(HISTORY_SUFFIX), PathBuf::from("out/run1_stats_history.csv"));
    }
}
