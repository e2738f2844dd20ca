//! What the run feeds each second while it drives: the console's live view and
//! progress line, the CSV stats history, and the watcher of `abort_on_fail`
//! thresholds (the one sink that can stop the run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::RunConfig;
use super::load::Load;
use crate::cluster::Cluster;
use crate::report::console;
use crate::report::csv::Csv;
use crate::threshold_eval::{ThresholdRow, Thresholds};

/// The sinks of one run, each with its next due time.
#[derive(Debug)]
pub(crate) struct Sinks {
    /// Checks the `abort_on_fail` thresholds once a second (None: none to watch).
    thresholds: Option<(Arc<Thresholds>, Instant)>,
    /// `--csv`: a history row at the start, then every second (Locust's
    /// `CSV_STATS_INTERVAL_SEC`).
    csv: Option<(Csv, Instant)>,
    /// The live view, printed every `.1` from `.2` on.
    console: Option<(Instant, Duration)>,
    /// The one-line progress, redrawn every second (a terminal with the live view on).
    progress: Option<Instant>,
    /// The run's length, for the progress line's remaining time.
    run_time: Option<Duration>,
}

/// A threshold that failed during the run: why the run stops, and the verdict.
#[derive(Debug)]
pub(crate) struct ThresholdStop {
    /// The stop reason.
    pub(crate) reason: String,
    /// The failed threshold as it stood then.
    pub(crate) row: ThresholdRow,
}

impl Sinks {
    /// The sinks the configuration asks for, for a run started at `start`.
    pub(crate) fn new(cfg: &RunConfig, start: Instant) -> Sinks {
        let watch = cfg.thresholds.list.iter().any(|t| t.abort_on_fail);
        if let Some(csv) = &cfg.csv_history {
            csv.start();
        }
        Sinks {
            thresholds: watch.then(|| (cfg.thresholds.clone(), start + Duration::from_secs(1))),
            csv: cfg.csv_history.clone().map(|c| (c, start)),
            console: cfg.console_every.map(|e| (start + e, e)),
            progress: cfg.progress_line.then_some(start + Duration::from_secs(1)),
            run_time: cfg.run_time,
        }
    }

    /// Feeds every sink due at `now`; the run's elapsed time is `elapsed` and `sent`
    /// the load the workers were last given. A failed threshold stops the run.
    pub(crate) fn feed(
        &mut self,
        cluster: &Cluster,
        now: Instant,
        elapsed: Duration,
        sent: Option<&Load>,
    ) -> Option<ThresholdStop> {
        if let Some((thresholds, next)) = &mut self.thresholds
            && now >= *next
        {
            *next = now + Duration::from_secs(1);
            let failed = thresholds.first_abort(&cluster.aggregator(), elapsed);
            if let Some(row) = failed {
                let reason = format!(
                    "threshold `{}` failed at {:.0}s ({}); abort_on_fail",
                    row.threshold,
                    elapsed.as_secs_f64(),
                    row.shown
                );
                warn!(reason = %reason, "aborting the run");
                return Some(ThresholdStop { reason, row });
            }
        }
        if let Some((csv, next)) = &mut self.csv
            && now >= *next
        {
            *next += Duration::from_secs(1);
            let users = cluster.live_users();
            csv.history_row(&cluster.aggregator(), users, elapsed);
        }
        self.console(cluster, now, elapsed);
        self.progress(cluster, now, elapsed, sent);
        None
    }

    /// The live view, when due.
    fn console(&mut self, cluster: &Cluster, now: Instant, elapsed: Duration) {
        if let Some((at, every)) = &mut self.console
            && now >= *at
        {
            *at += *every;
            if self.progress.is_some() {
                console::clear_progress();
            }
            let users = cluster.live_users();
            console::print_live(&cluster.aggregator(), users, elapsed, *every);
        }
    }

    /// The progress line, when due.
    fn progress(&mut self, cluster: &Cluster, now: Instant, elapsed: Duration, sent: Option<&Load>) {
        if let Some(next) = &mut self.progress
            && now >= *next
        {
            *next += Duration::from_secs(1);
            let target = match sent {
                Some(Load::Users(users, rate)) => console::Target::Users(*users, *rate),
                Some(Load::Arrivals(a)) => console::Target::Rate(a.schedule.rate_at(elapsed.as_secs_f64())),
                None => console::Target::Users(0, 0.0),
            };
            let users = cluster.live_users();
            console::print_progress(&cluster.aggregator(), users, elapsed, self.run_time, target);
        }
    }

    /// Clears the progress line (the run is stopping).
    pub(crate) fn finish(&self) {
        if self.progress.is_some() {
            console::clear_progress();
        }
    }
}
