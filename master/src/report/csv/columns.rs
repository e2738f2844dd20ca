//! The CSV files' names and columns: Locust 2.x's headers (`StatsCSV` and
//! `StatsCSVFileWriter` in locust/stats.py) and our `_sse.csv`, and the suffixes each
//! file adds to `--csv PREFIX`.

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

/// Ours, after Locust's history columns and only when some task has goodput
/// objectives: good requests per second over the row's current window.
pub const HISTORY_GOODPUT_COLUMN: &str = "Good/s";

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

/// `PREFIX_stats.csv`: a row per stats row, then Aggregated.
pub const STATS_SUFFIX: &str = "_stats.csv";
/// `PREFIX_stats_history.csv`: the Aggregated row (and each endpoint's) every second.
pub const HISTORY_SUFFIX: &str = "_stats_history.csv";
/// `PREFIX_failures.csv`: a row per (row, failure kind and detail).
pub const FAILURES_SUFFIX: &str = "_failures.csv";
/// `PREFIX_exceptions.csv`: the header only (workers raise no user-code exceptions).
pub const EXCEPTIONS_SUFFIX: &str = "_exceptions.csv";
/// `PREFIX_sse.csv` (ours, not Locust's): the per-second SSE timeline.
pub const SSE_SUFFIX: &str = "_sse.csv";

#[cfg(test)]
mod tests {
    use super::*;

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
}
