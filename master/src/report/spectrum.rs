//! HdrHistogram's percentile spectrum ([`SpectrumRow`]): each latency metric's value
//! against the percentile, 0 to 99.999 %, for the Aggregated row and each stats row;
//! the HTML report and the web UI draw it on a log "nines" axis. Computed from merged
//! histograms, so a saved run re-rendered gets it from the histograms it carries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use barrage_common::metrics::{EndpointStats, Metric};

/// Ticks per half distance to 100 % (HdrHistogram's `percentileTicksPerHalfDistance`):
/// 5 gives the percentiles 0, 10, 20, 30, 40, 50, 55, ... 75, 77.5, ..., about 85 of
/// them up to 99.999 %, enough for a smooth line and small in the JSON.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The highest percentile drawn: past it a nines axis runs to infinity.
pub const TOP_PERCENTILE: f64 = 99.999;

/// One stats row's spectrum: a line per metric with data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpectrumRow {
    /// The row's HTTP method (empty on the Aggregated row).
    pub method: String,
    /// The row's name (`Aggregated` for every row merged).
    pub name: String,
    /// One line per metric with data, in the metrics' order (`response_time` first).
    pub lines: Vec<SpectrumLine>,
}

/// One metric's percentile spectrum.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpectrumLine {
    /// The metric's name (`response_time`, `ttfe`, ...).
    pub metric: String,
    /// `[percentile, value_ms]` pairs, percentiles rising from 0 to [`TOP_PERCENTILE`];
    /// each value is the histogram's `value_at_quantile(percentile / 100)`.
    pub points: Vec<[f64; 2]>,
}

/// The spectrum of the Aggregated row (`all`) then of each `(method, name, stats)` row.
pub fn spectrum<'a>(
    all: &'a EndpointStats,
    rows: impl IntoIterator<Item = (&'a str, &'a str, &'a EndpointStats)>,
) -> Vec<SpectrumRow> {
    std::iter::once(("", "Aggregated", all))
        .chain(rows)
        .map(|(method, name, stats)| SpectrumRow {
            method: method.to_string(),
            name: name.to_string(),
            lines: Metric::ALL
                .into_iter()
                .filter_map(|m| {
                    let h = stats.histogram(m).filter(|h| !h.is_empty())?;
                    Some(SpectrumLine {
                        metric: m.as_str().to_string(),
                        points: points(h),
                    })
                })
                .collect(),
        })
        .collect()
}

/// `[percentile, value_ms]` of a histogram in µs at HdrHistogram's percentile ticks
/// (`iter_quantiles`, which ends early once the last recorded value is reached), below
/// [`TOP_PERCENTILE`], then at [`TOP_PERCENTILE`]. Empty for an empty histogram.
pub fn points(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    let top = TOP_PERCENTILE / 100.0;
    // The ticks are sums of f64 steps (0.30000000000000004): rounded to 1e-9 %, they
    // read as written, and each value is taken at the percentile the JSON says.
    let mut percentiles: Vec<f64> = h
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| v.quantile_iterated_to())
        .take_while(|q| *q < top)
        .map(|q| (q * 1e11).round() / 1e9)
        .collect();
    percentiles.dedup();
    percentiles.push(TOP_PERCENTILE);
    // One pass over the counts for every percentile (they rise).
    let values = h.value_at_quantiles(percentiles.iter().map(|p| p / 100.0));
    percentiles
        .iter()
        .zip(values)
        .map(|(p, us)| [*p, us as f64 / 1000.0])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    /// Every point is the histogram's own `value_at_quantile` at the percentile it
    /// names, and for 1..=1000 µs (exact below 2048 at 3 digits) the ceil(p x 1000)-th
    /// value; the ticks are HdrHistogram's, ending at 99.999 %.
    #[test]
    fn points_are_value_at_quantile_at_hdrhistograms_ticks() {
        let h = hist(1..=1000);
        let pts = points(&h);
        for [p, ms] in &pts {
            let us = h.value_at_quantile(p / 100.0);
            assert_eq!(*ms, us as f64 / 1000.0, "at {p} %");
            let nth = ((p / 100.0 * 1000.0).ceil() as u64).max(1);
            assert_eq!(us, nth, "at {p} %");
        }
        let ps: Vec<f64> = pts.iter().map(|p| p[0]).collect();
        assert_eq!(ps[..8], [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0]);
        assert!(ps.windows(2).all(|w| w[0] < w[1]), "{ps:?}");
        assert_eq!(pts.last(), Some(&[TOP_PERCENTILE, 1.0]));

        // A long tail: a million values, the last twenty 1000x the rest. The spectrum
        // reaches 99.999 % through every tick and shows the tail there.
        let h = hist((0..1_000_000u64).map(|i| if i < 999_980 { 1000 + i % 1000 } else { 2_000_000 }));
        let pts = points(&h);
        for [p, ms] in &pts {
            assert_eq!(*ms, h.value_at_quantile(p / 100.0) as f64 / 1000.0, "at {p} %");
        }
        assert!((80..=100).contains(&pts.len()), "{} pts", pts.len());
        assert!(pts[pts.len() - 2][0] > 99.998, "{:?}", &pts[pts.len() - 3..]);
        assert_eq!(pts.last().unwrap()[1], h.value_at_quantile(0.99999) as f64 / 1000.0);
        let at_999 = pts.iter().find(|p| p[0] >= 99.9).unwrap();
        assert!(pts.last().unwrap()[1] > 1000.0 && at_999[1] < 3.0, "{at_999:?}");
    }

    /// The Aggregated row first, then each row; a line per metric with data only.
    #[test]
    fn rows_have_a_line_per_metric_with_data() {
        let mut a = EndpointStats::default();
        a.record(Metric::ResponseTime, 5000);
        a.record(Metric::Ttfe, 700);
        let mut b = EndpointStats::default();
        b.record(Metric::ResponseTime, 900);
        let mut all = a.clone();
        all.merge(&b);
        let rows = spectrum(&all, [("POST", "/chat", &a), ("GET", "/x", &b)]);
        let shape: Vec<(&str, Vec<&str>)> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.lines.iter().map(|l| l.metric.as_str()).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                ("Aggregated", vec!["response_time", "ttfe"]),
                ("/chat", vec!["response_time", "ttfe"]),
                ("/x", vec!["response_time"]),
            ]
        );
        assert_eq!(rows[2].lines[0].points.last(), Some(&[TOP_PERCENTILE, 0.9]));
        assert!(points(&hist([])).is_empty());
    }
}
