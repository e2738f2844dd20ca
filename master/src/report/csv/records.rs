//! The rows of the files written after the run, as text fields: `_stats.csv` (one per
//! stats row, then Aggregated), `_failures.csv` and `_sse.csv`, and the formatting of
//! times and percentiles they share with the history.

use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::Histogram;

use barrage_common::metrics::{EndpointStats, Metric};

use super::columns::{NA, PERCENTILES};
use crate::report::model::{FailureRow, FinalReport, TimelinePoint};
use crate::report::rows::rows_from_merged;

/// `_stats.csv`'s rows: one per stats row, then Aggregated, from the merged data.
pub(crate) fn stats_rows(report: &FinalReport) -> barrage_common::Result<Vec<Vec<String>>> {
    let secs = (report.duration_s - report.stats_since_s).max(1e-3);
    let rows = rows_from_merged(&report.merged, secs)?.stats;
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

/// Microseconds as milliseconds, plainly (`51.455`, `12`).
pub(crate) fn ms(us: u64) -> String {
    (us as f64 / 1000.0).to_string()
}

/// The mean, ms, to the nanosecond (HDR's own resolution is coarser): no float noise
/// such as `56.888000000000005`.
pub(crate) fn mean_ms(h: &Histogram<u64>) -> String {
    ((h.mean() * 1000.0).round() / 1e6).to_string()
}

/// The percentile columns: `N/A` without requests (Locust's `_percentile_fields`),
/// 0 when there are requests but no response times in `h`.
pub(crate) fn percentiles(requests: u64, h: Option<&Histogram<u64>>) -> Vec<String> {
    PERCENTILES
        .iter()
        .map(|&q| match (requests, h) {
            (0, _) => NA.to_string(),
            (_, Some(h)) => ms(h.value_at_quantile(q)),
            (_, None) => "0".to_string(),
        })
        .collect()
}

/// The response times of `s`, when it has any.
pub(crate) fn response_times(s: &EndpointStats) -> Option<&Histogram<u64>> {
    s.histogram(Metric::ResponseTime).filter(|h| !h.is_empty())
}

/// Median, average, min and max response time, ms; 0 each without any (Locust's
/// `median_response_time`, `avg_response_time`, `min_response_time or 0`, ...).
pub(crate) fn times(h: Option<&Histogram<u64>>) -> [String; 4] {
    match h {
        Some(h) => [ms(h.value_at_quantile(0.5)), mean_ms(h), ms(h.min()), ms(h.max())],
        None => ["0".into(), "0".into(), "0".into(), "0".into()],
    }
}

/// Bytes received per request (0 without requests).
pub(crate) fn avg_content_size(s: &EndpointStats) -> String {
    if s.counts.requests == 0 {
        "0".into()
    } else {
        (s.counts.bytes_received as f64 / s.counts.requests as f64).to_string()
    }
}

/// A `_stats.csv` row: `_requests_data_rows`, with the run's rates.
pub(crate) fn stats_record(method: &str, name: &str, s: &EndpointStats, secs: f64) -> Vec<String> {
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

/// A `_failures.csv` row. Locust's Error is the exception's text; ours is the kind and
/// detail the row counts, then the first occurrence's message.
pub(crate) fn failure_record(f: &FailureRow) -> Vec<String> {
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

/// A `_sse.csv` row: one second of the timeline, its unix time from `started_unix`.
pub(crate) fn sse_record(started_unix: f64, p: &TimelinePoint) -> Vec<String> {
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
    use crate::report::csv::columns::STATS_COLUMNS;

    use crate::aggregate::testing::stats;

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
}
