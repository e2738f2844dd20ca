//! Goodput in the report ([`Goodput`]): of a stats row whose tasks have objectives
//! (scenario `goodput = {..}`), the requests that met them all, per second and as a
//! share of the row's requests. A row without objectives has none (not 100 %).

use serde::{Deserialize, Serialize};

/// A stats row's goodput: good requests, their rate and their share.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Goodput {
    /// Requests that succeeded and met every objective of their task.
    pub good: u64,
    /// The requests `good` is a share of: the row's, or on the Aggregated row those of
    /// the rows with objectives (a row without them does not dilute the share).
    pub requests: u64,
    /// Good requests per second since the statistics started (as `rps` is computed).
    pub per_s: f64,
    /// good / requests of the rows with objectives, a fraction (0 without requests).
    pub share: f64,
}

impl Goodput {
    /// The figures of `good` out of `requests` over `secs` seconds.
    pub(crate) fn of(good: u64, requests: u64, secs: f64) -> Goodput {
        Goodput {
            good,
            requests,
            per_s: good as f64 / secs,
            share: if requests > 0 {
                good as f64 / requests as f64
            } else {
                0.0
            },
        }
    }

    /// The Aggregated row's: the goodput of the rows with objectives summed (their
    /// requests are what the share is of), or none when no row has objectives.
    pub(crate) fn aggregated(rows: impl IntoIterator<Item = Goodput>, secs: f64) -> Option<Goodput> {
        let mut rows = rows.into_iter().peekable();
        rows.peek()?;
        let (good, requests) = rows.fold((0, 0), |(g, n), r| (g + r.good, n + r.requests));
        Some(Goodput::of(good, requests, secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_sums_the_rows_with_objectives_and_is_none_without() {
        assert_eq!(Goodput::aggregated([], 10.0), None);
        let rows = [Goodput::of(9, 10, 10.0), Goodput::of(1, 30, 10.0)];
        let all = Goodput::aggregated(rows, 10.0).unwrap();
        assert_eq!((all.good, all.requests), (10, 40));
        assert!((all.per_s - 1.0).abs() < 1e-12 && (all.share - 0.25).abs() < 1e-12);
        assert_eq!(Goodput::of(0, 0, 1.0).share, 0.0, "no requests: a share of 0, not NaN");
    }
}
