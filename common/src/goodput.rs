//! Goodput: a task's per-request service-level objectives ([`Slo`], the scenario's
//! `goodput = { ttfe = "500ms", .. }`) and the judgement of one finished request
//! against them ([`Slo::met`]). A request is *good* when it succeeded and met every
//! objective of its task; workers count good requests as `Counts::good`.

use serde::{Deserialize, Serialize};

/// The keys `goodput = { .. }` takes, in the order the docs list them.
pub const SLO_KEYS: [&str; 4] = ["ttfe", "ttft", "chunk_gap_p95", "response_time"];

/// The per-request objectives of a task, each a bound in microseconds (the unit of
/// every histogram); `None` = no objective on that figure. At least one is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slo {
    /// Longest time from the request's start to its first event that is not a ping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfe_us: Option<u64>,
    /// Longest time from the request's start to its first text chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_us: Option<u64>,
    /// Largest p95 of the request's own gaps between consecutive text chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_gap_p95_us: Option<u64>,
    /// Longest response time (for a stream: to its verdict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time_us: Option<u64>,
}

/// What one finished request measured, as the judgement needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTimes {
    /// Start to the first event that is not a ping, µs; `None` if it never came.
    pub ttfe_us: Option<u64>,
    /// Start to the first text chunk, µs; `None` if none came.
    pub ttft_us: Option<u64>,
    /// Start to the end of the answer (the response time), µs.
    pub response_time_us: u64,
    /// The request's chunk gaps, tallied against the task's `chunk_gap_p95`.
    pub gaps: GapTally,
}

/// A request's chunk gaps counted against one bound: enough to decide exactly whether
/// their p95 is within it, in two counters instead of a buffer of every gap.
///
/// With the nearest-rank p95 (the `ceil(0.95 n)`-th smallest of `n` gaps), the p95 is
/// within the bound exactly when at most `n - ceil(0.95 n)` gaps exceed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GapTally {
    /// Gaps between consecutive text chunks seen.
    pub gaps: u32,
    /// Of those, the gaps longer than the bound.
    pub over: u32,
}

impl GapTally {
    /// Counts one gap of `gap_us` against `bound_us` (no bound: nothing to count).
    pub fn note(&mut self, gap_us: u64, bound_us: Option<u64>) {
        if let Some(bound) = bound_us {
            self.gaps = self.gaps.saturating_add(1);
            if gap_us > bound {
                self.over = self.over.saturating_add(1);
            }
        }
    }

    /// Whether the p95 of the counted gaps is within the bound; fewer than one gap
    /// (fewer than two chunks) has no p95 and meets it.
    pub fn p95_within(&self) -> bool {
        let n = u64::from(self.gaps);
        // ceil(0.95 n) in integers: the rank of the p95.
        let rank = (95 * n).div_ceil(100);
        u64::from(self.over) <= n - rank
    }
}

impl Slo {
    /// Whether the objectives are all unset (a scenario never yields one; saved
    /// figures use it to tell a row without goodput).
    pub fn is_empty(&self) -> bool {
        *self == Slo::default()
    }

    /// Whether a *successful* request that measured `r` met every objective. A figure
    /// the request never reached (no first event, no text) fails the objective on it.
    pub fn met(&self, r: &RequestTimes) -> bool {
        let within = |bound: Option<u64>, value: Option<u64>| bound.is_none_or(|b| value.is_some_and(|v| v <= b));
        within(self.ttfe_us, r.ttfe_us)
            && within(self.ttft_us, r.ttft_us)
            && within(self.response_time_us, Some(r.response_time_us))
            && (self.chunk_gap_p95_us.is_none() || r.gaps.p95_within())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(ttfe: Option<u64>, ttft: Option<u64>, rt: u64, gaps: (u32, u32)) -> RequestTimes {
        RequestTimes {
            ttfe_us: ttfe,
            ttft_us: ttft,
            response_time_us: rt,
            gaps: GapTally {
                gaps: gaps.0,
                over: gaps.1,
            },
        }
    }

    #[test]
    fn each_objective_is_judged_on_its_own_figure() {
        let slo = Slo {
            ttfe_us: Some(150_000),
            ttft_us: Some(1_000_000),
            chunk_gap_p95_us: Some(200_000),
            response_time_us: Some(10_000_000),
        };
        let cases = [
            (
                "all within",
                times(Some(20_000), Some(30_000), 1_000_000, (10, 0)),
                true,
            ),
            (
                "ttfe at the bound",
                times(Some(150_000), Some(150_000), 1_000_000, (0, 0)),
                true,
            ),
            (
                "ttfe over",
                times(Some(150_001), Some(150_001), 1_000_000, (0, 0)),
                false,
            ),
            ("no first event", times(None, None, 1_000, (0, 0)), false),
            ("no text", times(Some(1_000), None, 1_000, (0, 0)), false),
            (
                "slow answer",
                times(Some(1_000), Some(1_000), 10_000_001, (0, 0)),
                false,
            ),
            (
                "one slow gap of 20 (p95 is the 19th)",
                times(Some(1), Some(1), 1, (20, 1)),
                true,
            ),
            ("two slow gaps of 20", times(Some(1), Some(1), 1, (20, 2)), false),
            ("one slow gap of 2", times(Some(1), Some(1), 1, (2, 1)), false),
        ];
        for (name, t, want) in cases {
            assert_eq!(slo.met(&t), want, "{name}");
        }
    }

    #[test]
    fn unset_objectives_ask_nothing() {
        let slo = Slo {
            response_time_us: Some(100),
            ..Slo::default()
        };
        assert!(slo.met(&times(None, None, 100, (5, 5))));
        assert!(!slo.met(&times(Some(1), Some(1), 101, (0, 0))));
        assert!(Slo::default().is_empty() && !slo.is_empty());
    }

    #[test]
    fn gap_tally_decides_the_nearest_rank_p95_exactly() {
        // Against a brute-force nearest-rank p95 over every mix of slow and fast gaps.
        for n in 0u32..60 {
            for over in 0..=n {
                let mut gaps: Vec<u64> = (0..n).map(|i| if i < over { 300 } else { 100 }).collect();
                gaps.sort_unstable();
                let brute = n == 0 || gaps[((95 * n as usize).div_ceil(100)).max(1) - 1] <= 200;
                let mut tally = GapTally::default();
                for g in &gaps {
                    tally.note(*g, Some(200));
                }
                assert_eq!(tally.p95_within(), brute, "{over} slow of {n}");
            }
        }
    }
}
