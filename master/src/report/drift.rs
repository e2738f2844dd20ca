//! The drift table of a long (soak) run ([`Drift`]): the run's early third against its
//! late third, figure by figure, read from the per-second timeline.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregator;

/// How the figures moved over a long run: the first third of it (after its first 10 %,
/// the ramp) against the last third.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drift {
    /// The early seconds compared, run clock: [from, to).
    pub early_s: (i64, i64),
    /// The late seconds compared, run clock: [from, to).
    pub late_s: (i64, i64),
    /// One row per figure (users, req/s, error rate, latencies).
    pub rows: Vec<DriftRow>,
}

/// One figure of the drift table, early against late.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftRow {
    /// What is compared, with its unit (`req/s`, `response time mean ms`).
    pub figure: String,
    /// Its value over the early seconds.
    pub early: f64,
    /// Its value over the late seconds.
    pub late: f64,
    /// (late - early) / early, in percent; null when early is 0.
    pub change_pct: Option<f64>,
}

/// Shortest run that gets a drift table.
const DRIFT_MIN_S: f64 = 30.0;

/// The drift table of a run that lasted `duration` (None below [`DRIFT_MIN_S`]).
pub(crate) fn drift(agg: &Aggregator, duration: Duration) -> Option<Drift> {
    let secs = duration.as_secs_f64();
    if secs < DRIFT_MIN_S {
        return None;
    }
    let span = |from: f64, to: f64| ((secs * from).floor() as i64, (secs * to).floor() as i64);
    let (early, late) = (span(0.1, 0.4), span(0.6, 0.9));
    let figures = |(from, to): (i64, i64)| {
        let (mut requests, mut failures, mut events, mut users) = (0u64, 0u64, 0u64, 0.0);
        let (mut rt_sum, mut rt_n, mut rt95_sum, mut rt95_n, mut ttfe_sum, mut ttfe_n) =
            (0.0, 0u64, 0.0, 0u64, 0.0, 0u64);
        for (_, slot) in agg.timeline.range(from..to) {
            let s = slot.summary();
            requests += slot.requests;
            failures += slot.failures;
            events += slot.events;
            users += slot.users;
            if slot.requests > 0 {
                rt_sum += s.rt_mean_us * slot.requests as f64;
                rt_n += slot.requests;
                rt95_sum += s.rt_p95_us as f64;
                rt95_n += 1;
            }
            ttfe_sum += s.ttfe_mean_us * s.ttfe_count as f64;
            ttfe_n += s.ttfe_count;
        }
        let n = (to - from).max(1) as f64;
        let per = |sum: f64, count: u64| if count == 0 { 0.0 } else { sum / count as f64 };
        [
            ("users (avg)", users / n),
            ("req/s", requests as f64 / n),
            ("events/s", events as f64 / n),
            ("error rate %", per(failures as f64 * 100.0, requests)),
            ("response time mean ms", per(rt_sum, rt_n) / 1000.0),
            ("response time p95 ms (mean of seconds)", per(rt95_sum, rt95_n) / 1000.0),
            ("TTFE mean ms", per(ttfe_sum, ttfe_n) / 1000.0),
        ]
    };
    let rows = figures(early)
        .into_iter()
        .zip(figures(late))
        .map(|((figure, e), (_, l))| DriftRow {
            figure: figure.to_string(),
            early: e,
            late: l,
            change_pct: (e != 0.0).then(|| (l - e) / e * 100.0),
        })
        .collect();
    Some(Drift {
        early_s: early,
        late_s: late,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::requests_at;

    #[test]
    fn drift_compares_the_early_third_with_the_late_one() {
        // 60 s: 10 req/s at 10 ms for the first half, 8 req/s at 20 ms after.
        let mut agg = Aggregator::new(1);
        for at in 0..60 {
            let (n, rt) = if at < 30 { (10, 10) } else { (8, 20) };
            agg.merge(&requests_at(at, n, rt));
        }
        let d = drift(&agg, Duration::from_secs(60)).unwrap();
        assert_eq!((d.early_s, d.late_s), ((6, 24), (36, 54)));
        let row = |f: &str| d.rows.iter().find(|r| r.figure == f).unwrap().clone();
        let rps = row("req/s");
        assert_eq!((rps.early, rps.late), (10.0, 8.0));
        assert!((rps.change_pct.unwrap() + 20.0).abs() < 1e-9);
        let rt = row("response time mean ms");
        assert!(
            (rt.early - 10.0).abs() < 0.05 && (rt.late - 20.0).abs() < 0.05,
            "{rt:?}"
        );
        assert!((rt.change_pct.unwrap() - 100.0).abs() < 1.0);
        // No TTFE in this run: no change to speak of.
        assert_eq!(row("TTFE mean ms").change_pct, None);
        // Short runs have none.
        assert!(drift(&agg, Duration::from_secs(20)).is_none());
    }
}
