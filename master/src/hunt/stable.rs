//! When a hunt step may end: once it is stable ([`StopRule`]).
//!
//! The rule: the 95 % confidence half-width of the step's windowed p95 of the key
//! metric, relative to that p95, is under `--stable-within`; checked after at least
//! `--min-step-time`, and the step ends anyway at `--step-time` (the maximum).
//!
//! The half-width comes from batch means ([`half_width`]): each complete second of the
//! step is a batch, its p95 one observation; the interval is the Student-t interval of
//! their mean. It costs one p95 per new second and a mean and a variance over a few
//! dozen numbers, so the controller's tick can afford it every second, where a
//! resampling bootstrap could not (that one runs once, on the boundary, in the report).

use std::time::Duration;

/// The stop rule for each step, from the hunt's flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    /// The relative half-width under which a step is stable (`--stable-within`, a
    /// fraction: 0.05); None: every step runs to `--step-time`.
    pub within: Option<f64>,
    /// No step ends stable before this much of it has run (`--min-step-time`).
    pub min: Duration,
}

/// `--stable-within`: the relative half-width under which a step is stable, or None
/// (`off`): every step runs to `--step-time`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Within(pub Option<f64>);

impl Within {
    /// Parses `0.05`, `5%` or `off`; the message names the flag.
    pub fn parse(s: &str) -> Result<Within, String> {
        let s = s.trim();
        if s == "off" {
            return Ok(Within(None));
        }
        let v = match s.strip_suffix('%') {
            Some(pct) => pct.trim().parse::<f64>().map(|v| v / 100.0),
            None => s.parse::<f64>(),
        };
        match v {
            Ok(v) if v > 0.0 && v < 1.0 => Ok(Within(Some(v))),
            _ => Err(format!(
                "--stable-within {s}: expected a fraction between 0 and 1 (0.05 or 5%), or off"
            )),
        }
    }
}

/// Fewer batches say nothing about spread: a step is never stable on fewer.
pub const MIN_BATCHES: usize = 3;

/// The 97.5th percentile of Student's t with `df` degrees of freedom (the 95 %
/// two-sided interval); the normal 1.96 from 30 on.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        d if d <= T.len() => T[d - 1],
        _ => 1.96,
    }
}

/// The 95 % confidence half-width of the mean of `batches` (each second's p95)
/// relative to that mean: 0.05 is ±5 %. None on fewer than [`MIN_BATCHES`] or a mean
/// of 0 (nothing to be relative to).
pub fn half_width(batches: &[f64]) -> Option<f64> {
    let n = batches.len();
    if n < MIN_BATCHES {
        return None;
    }
    let mean = batches.iter().sum::<f64>() / n as f64;
    if mean.abs() <= f64::EPSILON {
        return None;
    }
    let var = batches.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Some(t975(n - 1) * (var / n as f64).sqrt() / mean.abs())
}

impl StopRule {
    /// Whether a step that has run `ran` (up to its last complete second), with these
    /// per-second p95s after its warm-up, may end now; Some(half-width) when it may.
    pub fn stable(&self, ran: Duration, batches: &[f64]) -> Option<f64> {
        let within = self.within?;
        if ran < self.min {
            return None;
        }
        half_width(batches).filter(|hw| *hw < within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> StopRule {
        StopRule {
            within: Some(0.05),
            min: Duration::from_secs(5),
        }
    }

    /// A steady p95 (100 ms ± 2 ms) is stable once five seconds have run and five
    /// seconds are in (three leave a half-width of 5.7 %); a noisy one (alternating 60
    /// and 140 ms) never is; an upward drift (a queue filling) only once the tail
    /// levels off.
    #[test]
    fn steady_seconds_are_stable_noisy_and_drifting_ones_are_not() {
        let steady: Vec<f64> = (0..10).map(|i| 100.0 + if i % 2 == 0 { 2.0 } else { -2.0 }).collect();
        let r = rule();
        assert_eq!(
            r.stable(Duration::from_secs(4), &steady),
            None,
            "before --min-step-time"
        );
        assert_eq!(
            r.stable(Duration::from_secs(9), &steady[..2]),
            None,
            "two seconds say nothing"
        );
        let three = half_width(&steady[..3]).unwrap();
        assert!((three - 0.057).abs() < 0.001, "{three}");
        assert_eq!(r.stable(Duration::from_secs(9), &steady[..3]), None);
        let hw = r.stable(Duration::from_secs(5), &steady[..5]).expect("stable");
        // Mean 100.4, sd 2.19, t(4) = 2.776: 2.776 x 2.19 / sqrt(5) / 100.4 = 2.7 %.
        assert!((hw - 0.0271).abs() < 0.001, "{hw}");
        let noisy: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 60.0 } else { 140.0 }).collect();
        assert_eq!(
            r.stable(Duration::from_secs(60), &noisy),
            None,
            "{:?}",
            half_width(&noisy)
        );
        let mut drifting: Vec<f64> = (0..8).map(|i| 50.0 + 20.0 * f64::from(i)).collect();
        assert_eq!(r.stable(Duration::from_secs(20), &drifting), None);
        drifting.extend([200.0; 30]);
        assert!(r.stable(Duration::from_secs(60), &drifting[8..]).is_some());
        let off = StopRule { within: None, ..r };
        assert_eq!(
            off.stable(Duration::from_secs(60), &steady),
            None,
            "no rule: run to the maximum"
        );
    }

    /// The half-width against a hand computation: 10, 12, 14 have mean 12 and sd 2;
    /// t(2) = 4.303, so ±4.303 x 2 / sqrt(3) = ±4.969, 41.4 % of 12.
    #[test]
    fn fractions_parse_as_decimals_percentages_or_off() {
        assert_eq!(Within::parse("5%"), Ok(Within(Some(0.05))));
        assert_eq!(Within::parse("0.1"), Ok(Within(Some(0.1))));
        assert_eq!(Within::parse("off"), Ok(Within(None)));
        for bad in ["0", "1", "150%", "x", ""] {
            assert!(Within::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_half_width_is_the_student_t_interval_of_the_batch_means() {
        let hw = half_width(&[10.0, 12.0, 14.0]).unwrap();
        assert!((hw - 4.303 * 2.0 / 3f64.sqrt() / 12.0).abs() < 1e-9, "{hw}");
        assert_eq!(half_width(&[0.0, 0.0, 0.0]), None);
        assert_eq!(half_width(&[5.0; 3]), Some(0.0));
    }
}
