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
//!
//! The files: [`columns`] (names and headers), [`records`] (the rows written after the
//! run), [`history`] (the file written during it), [`files`] (writing one).

pub mod columns;
pub mod files;
pub mod history;
pub mod records;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::info;

pub use columns::{
    EXCEPTIONS_COLUMNS, EXCEPTIONS_SUFFIX, FAILURES_COLUMNS, FAILURES_SUFFIX, HISTORY_COLUMNS, HISTORY_SUFFIX, NA,
    PERCENTILES, SSE_COLUMNS, SSE_SUFFIX, STATS_COLUMNS, STATS_SUFFIX,
};
pub use files::CsvError;
use files::{to_text, write_file};
use history::{History, history_rows};
use records::{failure_record, sse_record, stats_rows};

use crate::aggregate::Aggregator;
use crate::report::model::FinalReport;

/// The CSV output of one run: its prefix and the history file the controller appends
/// to. Cloning shares the history (the controller's and the final write's copies are
/// one file).
#[derive(Debug, Clone)]
pub struct Csv {
    prefix: PathBuf,
    /// `--csv-full-history`: a history row per endpoint too, with current percentiles.
    full_history: bool,
    /// Some task has goodput objectives: the history ends with a `Good/s` column.
    goodput: bool,
    history: Arc<Mutex<History>>,
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

impl Csv {
    /// The output to `prefix` (`out/run1` writes `out/run1_stats.csv`, ...).
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        Csv {
            prefix: prefix.into(),
            full_history: false,
            goodput: false,
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

    /// Some task has goodput objectives: the history ends with a `Good/s` column.
    pub fn with_goodput(mut self, on: bool) -> Self {
        self.goodput = on;
        self
    }

    /// Whether the history has a row per endpoint (`--csv-full-history`).
    pub fn full_history(&self) -> bool {
        self.full_history
    }

    /// `--csv PREFIX` as given.
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
        self.lock().start(&self.path(HISTORY_SUFFIX), self.goodput);
    }

    /// Appends the history rows for `elapsed` into the run (the endpoints' with
    /// `--csv-full-history`, then `Aggregated`) and flushes them.
    pub fn history_row(&self, agg: &Aggregator, users: u32, elapsed: Duration) {
        if !self.lock().is_open() {
            return;
        }
        let rows = history_rows(agg, users, elapsed, self.full_history, self.goodput);
        self.lock().append(&self.path(HISTORY_SUFFIX), &rows);
    }

    /// After the run: closes the history and writes the other files from the final
    /// report and the merged totals. Every file is attempted; the first error (the
    /// history's included) is returned.
    /// The stats rows come from the report's merged data, so a saved report
    /// (`barrage report run.json --csv p`) writes the same files; the history is only
    /// written live, during a run.
    pub fn write_final(&self, report: &FinalReport) -> Result<(), CsvError> {
        let (history_error, started_unix) = self.lock().close(&self.path(HISTORY_SUFFIX));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_append_the_suffix_to_the_prefix() {
        let c = Csv::new("out/run1");
        assert_eq!(c.path(STATS_SUFFIX), PathBuf::from("out/run1_stats.csv"));
        assert_eq!(c.path(HISTORY_SUFFIX), PathBuf::from("out/run1_stats_history.csv"));
    }
}
