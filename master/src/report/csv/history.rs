//! `PREFIX_stats_history.csv`, written while the run goes on: each second the current
//! window's rates (10 s ending 2 s back, as Locust's `current_rps`) and the run's
//! totals, as `Aggregated` and with `--csv-full-history` per endpoint too.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

use barrage_common::metrics::{Accum, EndpointStats};

use super::columns::{HISTORY_COLUMNS, HISTORY_GOODPUT_COLUMN};
use super::files::{CsvError, create, write_row};
use super::records::{avg_content_size, percentiles, response_times, times};
use crate::aggregate::Aggregator;

/// Locust's current rates and percentiles cover 10 seconds ending 2 seconds before
/// the newest (`StatsEntry.current_rps`); 2 s is also our report lag
/// ([`crate::aggregate::REPORT_LAG`]), so the window's seconds are complete.
const WINDOW_S: i64 = 10;

/// The history file while the run goes on, shared by the controller's copy of the
/// [`super::Csv`] and the final write's.
#[derive(Default)]
pub(crate) struct History {
    out: Option<::csv::Writer<File>>,
    /// The first error, reported again by [`super::Csv::write_final`].
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

impl History {
    /// Starts the history at `path`: creates its folders (as Locust does) and the file
    /// with its header. A failure is logged now and kept for [`History::close`].
    /// With `goodput`, the header ends with [`HISTORY_GOODPUT_COLUMN`].
    pub(crate) fn start(&mut self, path: &Path, goodput: bool) {
        self.started_unix = Some(unix_now());
        self.out = None;
        self.error = None;
        let opened = (|| -> Result<::csv::Writer<File>, CsvError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| CsvError::new(path, format!("creating {}: {e}", dir.display())))?;
            }
            let mut out = create(path)?;
            let mut header = HISTORY_COLUMNS.to_vec();
            if goodput {
                header.push(HISTORY_GOODPUT_COLUMN);
            }
            write_row(&mut out, path, header)?;
            out.flush().map_err(|e| CsvError::new(path, e))?;
            Ok(out)
        })();
        match opened {
            Ok(out) => self.out = Some(out),
            Err(e) => {
                warn!(error = %e, "no stats history will be written");
                self.error = Some(e);
            }
        }
    }

    /// Whether rows are still written (started, and no error since).
    pub(crate) fn is_open(&self) -> bool {
        self.out.is_some()
    }

    /// Appends `rows` to the file at `path` and flushes them; on an error the history
    /// stops there (logged now, kept for [`History::close`]).
    pub(crate) fn append(&mut self, path: &Path, rows: &[Vec<String>]) {
        let Some(out) = self.out.as_mut() else { return };
        let written = rows
            .iter()
            .try_for_each(|row| write_row(out, path, row))
            .and_then(|()| out.flush().map_err(|e| CsvError::new(path, e)));
        if let Err(e) = written {
            warn!(error = %e, "the stats history stops here");
            self.out = None;
            self.error.get_or_insert(e);
        }
    }

    /// Closes the file at `path`: the first error the history met, and when the run
    /// started (None when the history was never started, as for a saved report).
    pub(crate) fn close(&mut self, path: &Path) -> (Option<CsvError>, Option<f64>) {
        if let Some(mut out) = self.out.take()
            && let Err(e) = out.flush()
        {
            self.error.get_or_insert(CsvError::new(path, e));
        }
        (self.error.clone(), self.started_unix)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The history rows for `elapsed` into the run, `users` running: with `full_history`
/// one per endpoint (its window's percentiles) before `Aggregated`; with `goodput`
/// each row ends with its window's good requests per second.
pub(crate) fn history_rows(
    agg: &Aggregator,
    users: u32,
    elapsed: Duration,
    full_history: bool,
    goodput: bool,
) -> Vec<Vec<String>> {
    let to = agg.complete_end(elapsed);
    let from = (to - WINDOW_S).max(0);
    let unix = unix_now() as i64;
    let window = agg.window(from, to.max(from));
    let mut rows = Vec::new();
    // The totals of this second, shared with the other live readers.
    let live = agg.live();
    if full_history {
        let mut current = agg.endpoint_window(from, to.max(from));
        for (key, _, total) in &live.rows {
            let now = current.remove(key).unwrap_or_default();
            rows.push(history_record(
                unix,
                users,
                window.seconds,
                &HistoryLine {
                    method: &key.method,
                    name: &key.name,
                    window: (now.requests, now.failures),
                    good: goodput.then_some(now.good),
                    current: Some(&now.response_time),
                    total,
                },
            ));
        }
    }
    let all = &live.all;
    let current = full_history.then_some(&window.response_time);
    rows.push(history_record(
        unix,
        users,
        window.seconds,
        &HistoryLine {
            method: "",
            name: "Aggregated",
            window: (window.requests, window.failures),
            good: goodput.then_some(window.good),
            current,
            total: all,
        },
    ));
    rows
}

/// What a `_stats_history.csv` row shows.
struct HistoryLine<'a> {
    method: &'a str,
    name: &'a str,
    /// Requests and failures in the current window.
    window: (u64, u64),
    /// Good requests in the current window, when the history has a goodput column.
    good: Option<u64>,
    /// With `--csv-full-history`, the window's response times: the row's percentiles.
    /// Without, the percentiles are the run's so far, as Locust writes them.
    current: Option<&'a Accum>,
    /// The run's totals for the row.
    total: &'a EndpointStats,
}

/// A `_stats_history.csv` row: `_stats_history_data_rows` for one entry. Rates over
/// the window's `seconds` as `f"{x:2f}"` (six decimals); percentiles `N/A` until the
/// row has requests, `0` when its window has none.
fn history_record(unix: i64, users: u32, seconds: i64, line: &HistoryLine<'_>) -> Vec<String> {
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
    if let Some(good) = line.good {
        row.push(format!("{:.6}", good as f64 / seconds));
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::csv::columns::NA;
    use crate::report::csv::records::stats_record;
    use barrage_common::metrics::Metric;
    use hdrhistogram::Histogram;

    use crate::aggregate::testing::stats;

    fn accum_of(h: &Histogram<u64>) -> barrage_common::metrics::Accum {
        let bytes = barrage_common::metrics::encode_histogram(h);
        let mut a = barrage_common::metrics::Accum::default();
        a.add(&barrage_common::metrics::decode_buckets("response_time", &bytes).unwrap());
        a
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
            good: None,
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
            good: Some(1),
            current: Some(&current),
            total: &all,
        };
        let row = history_record(1, 7, 10, &line);
        assert_eq!(row[2..6], ["POST", "/v1/chat-messages", "0.200000", "0.000000"]);
        assert_eq!((row[6].as_str(), row[16].as_str()), ("0.1", "2"), "{row:?}");
        // The totals stay the run's; the goodput column is the window's.
        assert_eq!(row[17..], ["30", "3", "1.5", "1.5", "1.5", "1.5", "100", "0.100000"]);
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
}
