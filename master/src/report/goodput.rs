//! Goodput in the report ([`Goodput`]): of a stats row whose tasks have objectives
//! (scenario `goodput = {..}`), the requests that met them all, per second and as a
//! share of the row's requests. A row without objectives has none (not 100 %).

use serde::{Deserialize, Serialize};

use super::rows::EndpointRow;

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
            share: if requests > 0 { good as f64 / requests as f64 } else { 0.0 },
        }
    }

    /// The Aggregated row's: the rows with objectives summed (their requests are what
    /// the share is of), or none when no row has objectives.
    pub(crate) fn aggregated(rows: &[EndpointRow], secs: f64) -> Option<Goodput> {
        let with: Vec<_> = rows.iter().filter_map(|r| r.goodput.map(|g| (g.good, r.requests))).collect();
        if with.is_empty() {
            return None;
        }
        let (good, requests) = with.iter().fold((0, 0), |(g, n), (rg, rn)| (g + rg, n + rn));
        Some(Goodput::of(good, requests, secs))
    }
}
