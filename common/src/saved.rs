//! [`EndpointStats`] as JSON, for results saved to disk (`--json`) and read back
//! (`barrage report run.json`): counters as numbers, each histogram as the base64 of
//! its uncompressed HdrHistogram V2 encoding (the interchange format other HdrHistogram
//! libraries decode). Reading goes through the same checked decoder as the wire, so a
//! corrupt or hostile file cannot make us allocate without bound.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{Counts, EndpointStats, FailureEntry, Metric, OutcomeKey, decode_histogram, encode_histogram};

/// One endpoint's [`EndpointStats`] as saved: the counters as top-level numbers, the
/// outcome maps as lists, the histograms as base64 text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedStats {
    /// The counters, flattened: `"requests": 3` and so on at this object's top level.
    #[serde(flatten)]
    pub counts: Counts,
    /// Failures by (kind, detail), as in `EndpointStats::failure_kinds`.
    pub failure_kinds: Vec<SavedOutcome>,
    /// Outcomes that are not failures, as in `EndpointStats::outcomes`.
    pub outcomes: Vec<SavedOutcome>,
    /// SSE events by type.
    pub events_by_type: BTreeMap<String, u64>,
    /// Metric name (`response_time`, `ttfe`, ...) to base64 HdrHistogram V2, in µs.
    pub histograms: BTreeMap<String, String>,
    /// Dify endpoints: per-node figures; absent in files saved before them and for
    /// rows without nodes, so those files read and write as they did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<crate::saved_nodes::SavedNode>,
}

/// One (kind, detail) pair of a saved outcome map, with its [`FailureEntry`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedOutcome {
    /// The failure kind as its string (`http_status`); a peer's unknown kind stays as sent.
    pub kind: String,
    /// The status, error code or I/O error class (`503`).
    pub detail: String,
    /// How many times the pair was recorded.
    pub count: u64,
    /// One example message, bounded.
    pub sample: String,
    /// Unix ms; absent (0) in files saved before we kept them.
    #[serde(default)]
    pub first_seen_unix_ms: u64,
    /// Unix ms of the last time; absent (0) in files saved before we kept them.
    #[serde(default)]
    pub last_seen_unix_ms: u64,
}

fn save_outcomes(map: &BTreeMap<OutcomeKey, FailureEntry>) -> Vec<SavedOutcome> {
    map.iter()
        .map(|((kind, detail), e)| SavedOutcome {
            kind: kind.clone(),
            detail: detail.clone(),
            count: e.count,
            sample: e.sample.clone(),
            first_seen_unix_ms: e.first_seen_unix_ms,
            last_seen_unix_ms: e.last_seen_unix_ms,
        })
        .collect()
}

fn load_outcomes(list: &[SavedOutcome]) -> BTreeMap<OutcomeKey, FailureEntry> {
    let mut map: BTreeMap<OutcomeKey, FailureEntry> = BTreeMap::new();
    for o in list {
        let e = map.entry((o.kind.clone(), o.detail.clone())).or_default();
        e.count += o.count;
        if e.sample.is_empty() {
            e.sample = o.sample.clone();
        }
        e.seen(o.first_seen_unix_ms, o.last_seen_unix_ms);
    }
    map
}

impl From<&EndpointStats> for SavedStats {
    fn from(s: &EndpointStats) -> Self {
        let histograms = Metric::ALL
            .iter()
            .filter_map(|m| {
                let h = s.histogram(*m)?;
                Some((m.as_str().to_string(), STANDARD.encode(encode_histogram(h))))
            })
            .collect();
        SavedStats {
            counts: s.counts,
            failure_kinds: save_outcomes(&s.failure_kinds),
            outcomes: save_outcomes(&s.outcomes),
            events_by_type: s.events_by_type.clone(),
            histograms,
            nodes: crate::saved_nodes::save_nodes(&s.nodes),
        }
    }
}

impl TryFrom<&SavedStats> for EndpointStats {
    type Error = Error;

    fn try_from(s: &SavedStats) -> Result<Self> {
        let mut stats = EndpointStats {
            counts: s.counts,
            failure_kinds: load_outcomes(&s.failure_kinds),
            outcomes: load_outcomes(&s.outcomes),
            events_by_type: s.events_by_type.clone(),
            nodes: crate::saved_nodes::load_nodes(&s.nodes)?,
            ..EndpointStats::default()
        };
        for (name, text) in &s.histograms {
            let malformed = |message: String| Error::Histogram {
                metric: name.clone(),
                message,
            };
            let metric = Metric::parse(name).ok_or_else(|| malformed("not a metric Barrage records".into()))?;
            let bytes = STANDARD
                .decode(text)
                .map_err(|e| malformed(format!("not base64: {e}")))?;
            stats.histograms[metric as usize] = Some(decode_histogram(name, &bytes)?);
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FailureKind;

    fn sample() -> EndpointStats {
        let mut s = EndpointStats {
            counts: Counts {
                requests: 3,
                bytes_received: 900,
                ..Counts::default()
            },
            ..EndpointStats::default()
        };
        for us in [1_000, 52_345, 7_000_000] {
            s.record(Metric::ResponseTime, us);
        }
        s.record(Metric::Ttfe, 12_500);
        s.fail(FailureKind::HttpStatus, "503", || "Service Unavailable".into());
        s.outcome(FailureKind::ExpectedStatus, "429", || "Too Many Requests".into());
        s.count_event("message");
        s
    }

    #[test]
    fn saved_stats_read_back_to_the_same_figures() {
        let s = sample();
        let json = serde_json::to_string(&SavedStats::from(&s)).unwrap();
        let back = EndpointStats::try_from(&serde_json::from_str::<SavedStats>(&json).unwrap()).unwrap();
        assert_eq!(back.counts.requests, 3);
        assert_eq!(back.counts, s.counts);
        assert_eq!(back.failure_kinds, s.failure_kinds);
        assert_eq!(back.outcomes, s.outcomes);
        assert_eq!(back.events_by_type, s.events_by_type);
        for m in Metric::ALL {
            assert_eq!(back.histogram(m), s.histogram(m), "{m:?}");
        }
        // Read back, they merge like the originals.
        let mut twice = back.clone();
        twice.merge(&s);
        assert_eq!(twice.histogram(Metric::ResponseTime).unwrap().len(), 6);
    }

    /// The counters stay top-level numbers of the saved object, as in files saved
    /// before they were one struct; `retries` may be absent.
    #[test]
    fn counters_are_saved_as_top_level_numbers() {
        let v = serde_json::to_value(SavedStats::from(&sample())).unwrap();
        assert_eq!(
            (v["requests"].as_u64(), v["bytes_received"].as_u64()),
            (Some(3), Some(900))
        );
        assert!(v.get("counts").is_none());
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("retries");
        let back: SavedStats = serde_json::from_value(old).unwrap();
        assert_eq!((back.counts.retries, back.counts.requests), (0, 3));
    }

    #[test]
    fn a_corrupt_histogram_is_an_error_naming_the_metric() {
        let mut saved = SavedStats::from(&sample());
        saved.histograms.insert("ttfe".into(), "AAAA".into());
        let err = EndpointStats::try_from(&saved).unwrap_err().to_string();
        assert!(err.contains("ttfe"), "{err}");
        saved.histograms.insert("ttfe".into(), "not base64!".into());
        assert!(
            EndpointStats::try_from(&saved)
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        saved.histograms.clear();
        saved.histograms.insert("latency".into(), String::new());
        assert!(EndpointStats::try_from(&saved).is_err());
    }
}
