//! How sure the sustainable level is: an SLO's margin to its limit ([`margin`]), and a
//! percentile bootstrap of the boundary step's SLO figure over its seconds
//! ([`bootstrap`]), seeded so the same timeline always gives the same interval.

use std::borrow::Borrow;

use barrage_common::metrics::Metric;
use barrage_common::threshold::{Op, Stat, Threshold};

use crate::aggregate::{Aggregator, Window};
use crate::threshold_eval::window_value;

/// Resamples of the boundary step's seconds.
pub const RESAMPLES: u32 = 1000;

/// The interval's coverage: the 2.5th and 97.5th percentiles of the resampled figures.
const COVERAGE: f64 = 0.95;

/// The fixed seed: a hunt re-rendered or re-run on the same timeline gives the same
/// interval.
const SEED: u64 = 0x0b0a_77a6_e5ee_d016;

/// How far `value` is inside the SLO's limit, as a fraction of the limit: 0.4 is 40 %
/// of headroom (`p95 < 500ms` at 300 ms), negative when broken. A limit of 0 (e.g.
/// `error_rate <= 0`) has no scale, so the margin is the plain difference.
pub fn margin(slo: &Threshold, value: f64) -> f64 {
    let room = match slo.op {
        Op::Lt | Op::Le => slo.limit - value,
        Op::Gt | Op::Ge => value - slo.limit,
    };
    if slo.limit.abs() > 0.0 {
        room / slo.limit.abs()
    } else {
        room
    }
}

/// The seconds `from..to` of the timeline, one window each: what [`bootstrap`]
/// resamples, copied out so the aggregator's lock is not held while it runs.
pub fn seconds(agg: &Aggregator, from: i64, to: i64) -> Vec<Window> {
    (from..to.max(from + 1)).map(|s| agg.window(s, s + 1)).collect()
}

/// The 95 % percentile-bootstrap interval of `slo`'s figure over `seconds` (a step's,
/// from [`seconds`]): [`RESAMPLES`] times, draw as many seconds as the step judged,
/// with replacement, sum them as one window, and compute the figure; the interval is
/// the middle 95 % of those figures. None without a second with data.
pub fn bootstrap<W: Borrow<Window>>(slo: &Threshold, seconds: &[W]) -> Option<(f64, f64)> {
    let mut rng = SplitMix(SEED);
    let n = seconds.len() as u64;
    let mut figures: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let mut sum = Window {
                seconds: n as i64,
                complete: true,
                ..Default::default()
            };
            for _ in 0..n {
                add(&mut sum, seconds[(rng.next() % n) as usize].borrow(), slo.stat);
            }
            window_value(slo.stat, &sum)
        })
        .collect();
    if figures.is_empty() {
        return None;
    }
    figures.sort_by(f64::total_cmp);
    let tail = (1.0 - COVERAGE) / 2.0;
    let at = |q: f64| figures[((q * figures.len() as f64) as usize).min(figures.len() - 1)];
    Some((at(tail), at(1.0 - tail)))
}

/// `slo`'s figure over `seconds` pooled (two measurements of one level, say): their
/// sum as one window. None without data.
pub fn figure<W: Borrow<Window>>(slo: &Threshold, seconds: &[W]) -> Option<f64> {
    let mut sum = Window {
        seconds: seconds.len() as i64,
        complete: true,
        ..Default::default()
    };
    for second in seconds {
        add(&mut sum, second.borrow(), slo.stat);
    }
    window_value(slo.stat, &sum)
}

/// Adds one second into a resample (what `timeline::window` sums, for the figures an
/// SLO reads); of the histograms only the one `stat` reads, the costly part.
fn add(sum: &mut Window, second: &Window, stat: Stat) {
    sum.requests += second.requests;
    sum.failures += second.failures;
    sum.good += second.good;
    sum.slo_requests += second.slo_requests;
    sum.events += second.events;
    sum.status_429 += second.status_429;
    sum.dropped_iterations += second.dropped_iterations;
    if let Stat::Percentile(_, m) | Stat::Avg(m) | Stat::Min(m) | Stat::Max(m) = stat {
        if m == Metric::Ttfe {
            sum.ttfe.merge(&second.ttfe);
        } else {
            sum.response_time.merge(&second.response_time);
        }
    }
}

/// SplitMix64 (Steele, Lea and Flood): a few lines, and the same sequence on every
/// platform and version, which a library RNG does not promise.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::{one_second, stats};
    use barrage_common::metrics::FailureKind;
    use barrage_common::plan::TaskKindTag;

    fn slo(text: &str) -> Threshold {
        Threshold::parse(text).unwrap()
    }

    #[test]
    fn margins_are_fractions_of_the_limit_and_negative_when_broken() {
        let cases = [
            ("p95(ttfe) < 500ms", 300_000.0, 0.4),
            ("p95(ttfe) < 500ms", 600_000.0, -0.2),
            ("error_rate < 1%", 0.0, 1.0),
            ("rps > 100", 150.0, 0.5),
            ("error_rate <= 0", 0.25, -0.25),
        ];
        for (text, value, want) in cases {
            let got = margin(&slo(text), value);
            assert!((got - want).abs() < 1e-9, "{text} at {value}: {got}, want {want}");
        }
    }

    /// Ten seconds, one of them with 5 failures in 10 requests: the interval of the
    /// error rate spans the resamples without that second (0) and those drawing it
    /// twice or more; the figure over all ten (5 %) lies inside it; and it is the same
    /// every time.
    #[test]
    fn the_bootstrap_brackets_the_figure_and_repeats() {
        let mut agg = Aggregator::new(1);
        for at in 0..10 {
            let mut s = stats(10, 0, &[1000; 10], 0);
            for _ in 0..if at == 4 { 5 } else { 0 } {
                s.fail(FailureKind::HttpStatus, "500", || "HTTP 500".into());
            }
            agg.merge(&one_second(1, at as u64 + 1, at, "/x", TaskKindTag::Http, &s));
        }
        let rate = slo("error_rate < 1%");
        let (low, high) = bootstrap(&rate, &seconds(&agg, 0, 10)).unwrap();
        let figure = window_value(rate.stat, &agg.window(0, 10)).unwrap();
        assert!((figure - 0.05).abs() < 1e-9, "{figure}");
        assert!(low <= figure && figure <= high, "{low} .. {high} around {figure}");
        assert_eq!(low, 0.0, "a tenth of resamples miss the bad second");
        assert!(high >= 0.1, "{high}: some draw it twice or more");
        assert_eq!(bootstrap(&rate, &seconds(&agg, 0, 10)), Some((low, high)), "seeded");
        assert_eq!(bootstrap(&rate, &seconds(&agg, 20, 30)), None, "no data, no interval");
    }
}
