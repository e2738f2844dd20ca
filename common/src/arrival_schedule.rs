//! The open model: iterations arrive on a schedule (iterations per second), whether or
//! not earlier ones have finished.
//!
//! The cluster-wide schedule numbers its arrivals 0, 1, 2, ...: arrival `i` is due when
//! the integral of the rate reaches `i` (the first at the start). A worker runs the
//! arrivals of its segment: with the workers' shares summing to `den`, worker `w` owns
//! the indices whose `(i mod den) * stride mod den` falls in its `[start, end)`. Since
//! `stride` is coprime with `den`, every run of `den` consecutive arrivals holds exactly
//! `end - start` of each worker's, spread through it (k6's execution segments do the
//! same with striped offsets), so the workers together reproduce the single-machine
//! schedule exactly, and each is within one arrival of its share at any moment.

use std::time::Duration;

/// A stage of a ramping arrival rate: the rate moves linearly to `rate` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStage {
    /// How long the ramp lasts.
    pub duration: Duration,
    /// The rate reached at its end, arrivals per second, cluster-wide.
    pub rate: f64,
}

/// Arrivals per second over time: `start_rate`, then each stage's ramp; after the last
/// stage its rate holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    /// Arrivals per second at the start (`arrival_rate`).
    pub start_rate: f64,
    /// The ramps that follow, in order (`arrival_stages`).
    pub stages: Vec<RateStage>,
}

impl Schedule {
    /// `rate` arrivals per second for the whole run.
    pub fn constant(rate: f64) -> Schedule {
        Schedule {
            start_rate: rate,
            stages: Vec::new(),
        }
    }

    /// The rate at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut from = self.start_rate;
        let mut begin = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            if t < begin + d {
                return from + (s.rate - from) * (t - begin) / d;
            }
            from = s.rate;
            begin += d;
        }
        from
    }

    /// Arrivals due by `t` seconds, as a real number (the integral of the rate).
    pub fn cumulative(&self, t: f64) -> f64 {
        let mut from = self.start_rate;
        let mut begin = 0.0;
        let mut total = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let span = (t - begin).clamp(0.0, d);
            total += from * span + (s.rate - from) * span * span / (2.0 * d.max(1e-12));
            if t < begin + d {
                return total;
            }
            from = s.rate;
            begin += d;
        }
        total + from * (t - begin).max(0.0)
    }

    /// When arrival `i` is due, in seconds from the start (None: the rate has fallen to
    /// 0 for good before it).
    pub fn time_of(&self, i: u64) -> Option<f64> {
        self.time_at(i as f64)
    }

    /// When the integral of the rate reaches `x`, in seconds from the start (None: the
    /// rate has fallen to 0 for good before). `time_of(i)` is `time_at(i)`; a random
    /// arrival process maps its unit-rate arrival times through it (time-rescaling).
    pub fn time_at(&self, x: f64) -> Option<f64> {
        let mut left = x.max(0.0);
        let mut from = self.start_rate;
        let mut begin = 0.0;
        if left == 0.0 {
            return Some(0.0);
        }
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let a = (s.rate - from) / (2.0 * d.max(1e-12));
            let in_stage = from * d + a * d * d;
            if left <= in_stage && in_stage > 0.0 {
                // Solve a*x^2 + from*x = left for the first x in [0, d].
                let x = if a.abs() < 1e-12 {
                    left / from
                } else {
                    (-from + (from * from + 4.0 * a * left).max(0.0).sqrt()) / (2.0 * a)
                };
                return Some(begin + x.clamp(0.0, d));
            }
            left -= in_stage;
            from = s.rate;
            begin += d;
        }
        (from > 0.0).then(|| begin + left / from)
    }

    /// This schedule up to `at`, then `rate` from there on (a step taking 1 ms): how a
    /// rate changed during the run keeps every arrival already due where it was.
    pub fn with_rate_from(&self, at: Duration, rate: f64) -> Schedule {
        let mut out = Schedule {
            start_rate: self.start_rate,
            stages: Vec::new(),
        };
        let mut begin = Duration::ZERO;
        for s in &self.stages {
            if begin + s.duration >= at {
                let part = at.saturating_sub(begin);
                if !part.is_zero() {
                    out.stages.push(RateStage {
                        duration: part,
                        rate: self.rate_at(at.as_secs_f64()),
                    });
                }
                begin = at;
                break;
            }
            out.stages.push(*s);
            begin += s.duration;
        }
        if at > begin {
            out.stages.push(RateStage {
                duration: at - begin,
                rate: self.rate_at(at.as_secs_f64()),
            });
        }
        out.stages.push(RateStage {
            duration: Duration::from_millis(1),
            rate,
        });
        out
    }

    /// The stages' whole length (0 for a constant rate).
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }
}

/// A worker's part of the arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First of the worker's shares, in `0..den`.
    pub start: u64,
    /// End (exclusive) of the worker's shares.
    pub end: u64,
    /// Sum of every worker's shares: the period of the assignment.
    pub den: u64,
    /// `stride(den)`, worked out once: `owns` runs for every arrival.
    stride: u64,
}

impl Segment {
    /// The whole schedule (one worker).
    pub const ALL: Segment = Segment {
        start: 0,
        end: 1,
        den: 1,
        stride: 1,
    };

    /// Indices `[start, end)` of `den` (0 taken as 1).
    pub fn new(start: u64, end: u64, den: u64) -> Segment {
        let den = den.max(1);
        Segment {
            start,
            end,
            den,
            stride: stride(den),
        }
    }

    /// Whether arrival `i` is this worker's.
    pub fn owns(&self, i: u64) -> bool {
        if self.den <= 1 {
            return self.start == 0 && self.end >= 1;
        }
        let p = ((i % self.den) as u128 * u128::from(self.stride) % u128::from(self.den)) as u64;
        self.start <= p && p < self.end
    }

    /// The first index at or after `from` that is this worker's (None: it owns none).
    pub fn next_owned(&self, from: u64) -> Option<u64> {
        if self.end <= self.start {
            return None;
        }
        (from..from.saturating_add(self.den.max(1))).find(|&i| self.owns(i))
    }

    /// Consecutive segments for workers of these shares (their weights), in order.
    pub fn split(shares: &[u32]) -> Vec<Segment> {
        let den: u64 = shares.iter().map(|&s| u64::from(s)).sum();
        let mut at = 0;
        shares
            .iter()
            .map(|&s| {
                let seg = Segment::new(at, at + u64::from(s), den);
                at += u64::from(s);
                seg
            })
            .collect()
    }
}

/// A multiplier coprime with `den` near `den` times the golden ratio's fraction: it
/// scatters consecutive indices evenly over the segments.
pub fn stride(den: u64) -> u64 {
    if den <= 2 {
        return 1;
    }
    let mut k = ((den as f64) * 0.618_033_988_75).round() as u64;
    k = k.clamp(1, den - 1);
    while gcd(k, den) != 1 {
        k += 1;
        if k >= den {
            k = 1;
        }
    }
    k
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_constant_rate_is_evenly_spaced() {
        let s = Schedule::constant(4.0);
        assert_eq!(s.time_of(0), Some(0.0));
        assert_eq!(s.time_of(1), Some(0.25));
        assert_eq!(s.time_of(8), Some(2.0));
        assert_eq!(s.cumulative(2.0), 8.0);
        assert_eq!(Schedule::constant(0.0).time_of(3), None);
    }

    #[test]
    fn a_ramp_integrates_linearly() {
        // 0 -> 10/s over 10 s (50 arrivals), then 10/s.
        let s = Schedule {
            start_rate: 0.0,
            stages: vec![RateStage {
                duration: Duration::from_secs(10),
                rate: 10.0,
            }],
        };
        assert!((s.cumulative(10.0) - 50.0).abs() < 1e-9);
        assert!((s.cumulative(12.0) - 70.0).abs() < 1e-9);
        assert_eq!(s.rate_at(5.0), 5.0);
        // Arrival 50 is due when 50 have accumulated: at 10 s.
        assert!((s.time_of(50).unwrap() - 10.0).abs() < 1e-9);
        // Half the ramp's arrivals by t = sqrt(0.5) * 10.
        assert!((s.time_of(25).unwrap() - 50f64.sqrt()).abs() < 1e-9);
        assert!((s.time_of(60).unwrap() - 11.0).abs() < 1e-9);
        // Down to 0 and stay there: arrivals end.
        let down = Schedule {
            start_rate: 10.0,
            stages: vec![RateStage {
                duration: Duration::from_secs(2),
                rate: 0.0,
            }],
        };
        assert!((down.cumulative(2.0) - 10.0).abs() < 1e-9);
        assert!(down.time_of(9).is_some());
        assert_eq!(down.time_of(11), None);
    }

    #[test]
    fn a_rate_changed_mid_run_keeps_the_arrivals_already_due() {
        let ramp = Schedule {
            start_rate: 0.0,
            stages: vec![RateStage {
                duration: Duration::from_secs(10),
                rate: 10.0,
            }],
        };
        // At 4 s (rate 4/s, 8 arrivals due), switch to 20/s.
        let changed = ramp.with_rate_from(Duration::from_secs(4), 20.0);
        assert!((changed.cumulative(4.0) - 8.0).abs() < 1e-9);
        assert!((changed.rate_at(3.0) - 3.0).abs() < 1e-9);
        assert!((changed.rate_at(5.0) - 20.0).abs() < 1e-9);
        // 1 s after the switch: ~20 more (less the 1 ms step).
        assert!(
            (changed.cumulative(5.001) - 28.0).abs() < 0.05,
            "{}",
            changed.cumulative(5.001)
        );
        // From a constant rate, and twice in a row.
        let c = Schedule::constant(5.0).with_rate_from(Duration::from_secs(2), 1.0);
        assert!((c.cumulative(2.0) - 10.0).abs() < 1e-9);
        let twice = c.with_rate_from(Duration::from_secs(4), 3.0);
        assert!((twice.cumulative(4.0) - c.cumulative(4.0)).abs() < 1e-9);
        assert!((twice.rate_at(6.0) - 3.0).abs() < 1e-9);
    }

    proptest! {
        /// Whatever the shares, every arrival has exactly one owner, and in any prefix
        /// each worker is within one arrival of its exact share.
        #[test]
        fn segments_cover_every_arrival_once_and_stay_within_one_of_their_share(
            shares in proptest::collection::vec(1u32..9, 1..6),
            n in 1u64..3000,
        ) {
            let segments = Segment::split(&shares);
            let den: u64 = shares.iter().map(|&s| u64::from(s)).sum();
            let mut counts = vec![0u64; shares.len()];
            for i in 0..n {
                let owners: Vec<usize> = (0..segments.len()).filter(|&w| segments[w].owns(i)).collect();
                prop_assert_eq!(owners.len(), 1, "arrival {} owned by {:?}", i, owners);
                counts[owners[0]] += 1;
                // In every prefix, each worker is within one of its share (k6's guarantee
                // for striped segments holds per cycle; we check the whole prefix).
            }
            for (w, &c) in counts.iter().enumerate() {
                let exact = n as f64 * f64::from(shares[w]) / den as f64;
                prop_assert!((c as f64 - exact).abs() < f64::from(shares[w]).max(1.0) + 1.0,
                    "worker {} of {:?}: {} of {} arrivals, exact share {:.1}", w, shares, c, n, exact);
            }
            prop_assert_eq!(counts.iter().sum::<u64>(), n);
        }
    }

    #[test]
    fn whole_cycles_are_exact() {
        let segments = Segment::split(&[2, 1, 3]);
        for cycle in 0..5u64 {
            let mut counts = [0; 3];
            for i in cycle * 6..(cycle + 1) * 6 {
                counts[(0..3).find(|&w| segments[w].owns(i)).unwrap()] += 1;
            }
            assert_eq!(counts, [2, 1, 3]);
        }
        assert_eq!(Segment::ALL.next_owned(7), Some(7));
        assert_eq!(segments[1].next_owned(0).map(|i| segments[1].owns(i)), Some(true));
    }
}
