//! Conversions between protocol messages (`barrage_proto::v1`) and domain types.
//! Decoding is where untrusted input enters: every conversion checks what it can.

use barrage_proto::v1;

use std::collections::BTreeMap;

use crate::arrival_process::{ArrivalProcess, MIN_BURSTINESS};
use crate::bounds;
use crate::error::{Error, Result};
use crate::metrics::{
    Buckets, Counts, EndpointStats, FailureEntry, MAX_OUTCOME_KEYS, METRIC_COUNT, Metric, OutcomeKey, add_event_type,
    decode_buckets, encode_histogram,
};
use crate::plan::{Endpoint, TaskKindTag};

impl From<TaskKindTag> for v1::EndpointKind {
    fn from(k: TaskKindTag) -> Self {
        match k {
            TaskKindTag::Http => v1::EndpointKind::Http,
            TaskKindTag::Sse => v1::EndpointKind::Sse,
        }
    }
}

/// An arrival process as an `ArrivalShare` carries it: its kind and its burstiness
/// (0 but for gamma).
pub fn process_to_proto(p: ArrivalProcess) -> (v1::ArrivalProcess, f64) {
    match p {
        ArrivalProcess::Constant => (v1::ArrivalProcess::Constant, 0.0),
        ArrivalProcess::Poisson => (v1::ArrivalProcess::Poisson, 0.0),
        ArrivalProcess::Gamma { shape } => (v1::ArrivalProcess::Gamma, shape),
    }
}

/// The arrival process of an `ArrivalShare`: an unknown kind is the constant rate, a
/// gamma shape out of range is brought into it (a non-number: 1, Poisson's).
pub fn process_from_proto(kind: i32, burstiness: f64) -> ArrivalProcess {
    match v1::ArrivalProcess::try_from(kind) {
        Ok(v1::ArrivalProcess::Poisson) => ArrivalProcess::Poisson,
        Ok(v1::ArrivalProcess::Gamma) => ArrivalProcess::Gamma {
            shape: if burstiness.is_finite() {
                burstiness.max(MIN_BURSTINESS)
            } else {
                1.0
            },
        },
        Ok(v1::ArrivalProcess::Constant) | Err(_) => ArrivalProcess::Constant,
    }
}

/// Encodes one endpoint's stats for a report.
pub fn endpoint_to_proto(endpoint: &Endpoint, s: &EndpointStats) -> v1::EndpointDelta {
    let outcomes = |m: &BTreeMap<OutcomeKey, FailureEntry>| {
        m.iter()
            .map(|((kind, detail), e)| v1::FailureCount {
                kind: kind.clone(),
                detail: detail.clone(),
                count: e.count,
                sample: e.sample.clone(),
                first_seen_unix_ms: e.first_seen_unix_ms,
                last_seen_unix_ms: e.last_seen_unix_ms,
            })
            .collect()
    };
    let mut delta = v1::EndpointDelta {
        name: endpoint.name.clone(),
        method: endpoint.method.clone(),
        kind: v1::EndpointKind::from(endpoint.kind) as i32,
        failure_kinds: outcomes(&s.failure_kinds),
        expected_outcomes: outcomes(&s.outcomes),
        events_by_type: s
            .events_by_type
            .iter()
            .map(|(t, n)| v1::EventCount {
                event_type: t.clone(),
                count: *n,
            })
            .collect(),
        histograms: Metric::ALL
            .iter()
            .filter(|m| **m != Metric::ResponseTimeOk)
            .filter_map(|m| {
                s.histogram(*m).filter(|h| !h.is_empty()).map(|h| v1::Histogram {
                    metric: m.as_str().to_string(),
                    hdr_v2: encode_histogram(h).into(),
                })
            })
            .collect(),
        peer: String::new(),
        // Its own field: a master that does not know it ignores it.
        response_time_ok_hdr_v2: s
            .histogram(Metric::ResponseTimeOk)
            .filter(|h| !h.is_empty())
            .map(encode_histogram)
            .unwrap_or_default(),
        nodes: crate::wire_nodes::nodes_to_proto(&s.nodes),
        ..v1::EndpointDelta::default()
    };
    put_counts(&s.counts, &mut delta);
    delta
}

/// Writes the counters into the delta's fields of the same names.
fn put_counts(c: &Counts, d: &mut v1::EndpointDelta) {
    d.requests = c.requests;
    d.failures = c.failures;
    d.bytes_received = c.bytes_received;
    d.connections_opened = c.connections_opened;
    d.retries = c.retries;
    d.streams_started = c.streams_started;
    d.streams_completed = c.streams_completed;
    d.events = c.events;
    d.total_tokens = c.total_tokens;
    d.good = c.good;
}

/// The counters a delta carries, as sent (unchecked).
fn counts_of(d: &v1::EndpointDelta) -> Counts {
    Counts {
        requests: d.requests,
        failures: d.failures,
        bytes_received: d.bytes_received,
        connections_opened: d.connections_opened,
        retries: d.retries,
        streams_started: d.streams_started,
        streams_completed: d.streams_completed,
        events: d.events,
        total_tokens: d.total_tokens,
        good: d.good,
    }
}

/// Longest endpoint name accepted from a peer (a planned name is never longer).
const MAX_TEXT: usize = 1024;
pub use crate::bounds::MAX_COUNT;

/// Decodes one endpoint delta, rejecting impossible content (texts past the bounds
/// are clipped, see [`endpoint_from_proto_sparse`]).
pub fn endpoint_from_proto(d: &v1::EndpointDelta) -> Result<(Endpoint, EndpointStats)> {
    let (endpoint, mut stats, buckets) = endpoint_from_proto_sparse(d, &mut 0)?;
    for (into, b) in stats.histograms.iter_mut().zip(buckets) {
        *into = b.map(|b| b.to_histogram());
    }
    Ok((endpoint, stats))
}

/// Histograms of one delta as [`Buckets`], indexed by [`Metric`].
pub type DeltaBuckets = [Option<Buckets>; METRIC_COUNT];

/// [`endpoint_from_proto`] with the histograms left as [`Buckets`] (the stats' own
/// histograms are empty): what the master merges, at the cost of their buckets.
///
/// A delta whose *counts* are impossible (failures above requests, kinds that do not
/// add up, a count above [`MAX_COUNT`], a bad histogram) is refused: none of it can be
/// trusted. Text is never a reason to refuse: failure kinds, details and samples and
/// event type names past [`crate::bounds`] are clipped, keys past the caps fold into
/// [`bounds::OTHER`], and each change adds one to `clipped`; every count is kept.
pub fn endpoint_from_proto_sparse(
    d: &v1::EndpointDelta,
    clipped: &mut u64,
) -> Result<(Endpoint, EndpointStats, DeltaBuckets)> {
    let bad = |m: String| Error::Protocol(format!("endpoint `{}`: {m}", bounds::clip_name(&d.name, 80)));
    if d.name.is_empty() || d.name.len() > MAX_TEXT || d.method.is_empty() || d.method.len() > 16 {
        return Err(bad("name or method missing or too long".into()));
    }
    let kind = match v1::EndpointKind::try_from(d.kind) {
        Ok(v1::EndpointKind::Http) => TaskKindTag::Http,
        Ok(v1::EndpointKind::Sse) => TaskKindTag::Sse,
        _ => return Err(bad(format!("unknown kind {}", d.kind))),
    };
    let counts = counts_of(d);
    if counts.failures > counts.requests {
        return Err(bad(format!("{} failures out of {} requests", d.failures, d.requests)));
    }
    if counts.good > counts.requests - counts.failures {
        return Err(bad(format!(
            "{} good out of {} requests with {} failures",
            d.good, d.requests, d.failures
        )));
    }
    // `failures` is at most `requests` here: checking it too changes no verdict.
    let listed = d.failure_kinds.iter().chain(&d.expected_outcomes).map(|f| f.count);
    let typed = d.events_by_type.iter().map(|e| e.count);
    if counts
        .each()
        .into_iter()
        .chain(listed)
        .chain(typed)
        .any(|c| c > MAX_COUNT)
    {
        return Err(bad(format!("a count above {MAX_COUNT}")));
    }
    let failure_kinds = bounded_outcomes(&d.failure_kinds, clipped);
    if failure_kinds.values().map(|e| e.count).sum::<u64>() != counts.failures {
        return Err(bad("failure kinds do not add up to the failure count".into()));
    }
    let mut buckets: DeltaBuckets = Default::default();
    for h in &d.histograms {
        let metric = Metric::parse(&h.metric)
            .ok_or_else(|| bad(format!("unknown metric `{}`", bounds::clip_name(&h.metric, 40))))?;
        buckets[metric as usize] = Some(decode_buckets(&h.metric, &h.hdr_v2)?);
    }
    if !d.response_time_ok_hdr_v2.is_empty() {
        let metric = Metric::ResponseTimeOk;
        buckets[metric as usize] = Some(decode_buckets(metric.as_str(), &d.response_time_ok_hdr_v2)?);
    }
    let nodes = crate::wire_nodes::nodes_from_proto(&d.nodes, clipped).map_err(|e| bad(e.to_string()))?;
    let mut events_by_type = std::collections::BTreeMap::new();
    for e in &d.events_by_type {
        let name = bounds::clip_name(&e.event_type, bounds::MAX_EVENT_TYPE);
        let folded = !events_by_type.contains_key(name) && events_by_type.len() >= bounds::MAX_EVENT_TYPES;
        if folded || name.len() != e.event_type.len() {
            *clipped += 1;
        }
        add_event_type(&mut events_by_type, &e.event_type, e.count);
    }
    Ok((
        Endpoint {
            name: d.name.clone(),
            method: d.method.clone(),
            kind,
        },
        EndpointStats {
            counts,
            failure_kinds,
            outcomes: bounded_outcomes(&d.expected_outcomes, clipped),
            events_by_type,
            histograms: Default::default(),
            nodes,
        },
        buckets,
    ))
}

/// A peer's failure counts as a bounded map: kinds and details cut to
/// [`bounds::MAX_DETAIL`], samples to [`bounds::MAX_SAMPLE`], and past
/// [`MAX_OUTCOME_KEYS`] keys the rest counted under `((other), (other))`. Counts add.
fn bounded_outcomes(list: &[v1::FailureCount], clipped: &mut u64) -> BTreeMap<OutcomeKey, FailureEntry> {
    let mut map: BTreeMap<OutcomeKey, FailureEntry> = BTreeMap::new();
    for f in list {
        let kind = bounds::clip_name(&f.kind, bounds::MAX_DETAIL);
        let detail = bounds::clip_name(&f.detail, bounds::MAX_DETAIL);
        let sample = bounds::clip(&f.sample, bounds::MAX_SAMPLE);
        if kind.len() != f.kind.len() || detail.len() != f.detail.len() || sample.len() != f.sample.len() {
            *clipped += 1;
        }
        let mut key = (kind.to_string(), detail.to_string());
        if !map.contains_key(&key) && map.len() >= MAX_OUTCOME_KEYS {
            *clipped += 1;
            key = (bounds::OTHER.to_string(), bounds::OTHER.to_string());
        }
        let e = map.entry(key).or_default();
        e.count += f.count;
        if e.sample.is_empty() {
            e.sample = sample.into_owned();
        }
        e.seen(f.first_seen_unix_ms, f.last_seen_unix_ms);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FailureKind;

    fn endpoint() -> Endpoint {
        Endpoint {
            name: "/v1/workflows/run".into(),
            method: "POST".into(),
            kind: TaskKindTag::Sse,
        }
    }

    #[test]
    fn endpoint_stats_roundtrip() {
        let mut s = EndpointStats {
            counts: Counts {
                requests: 3,
                streams_started: 3,
                retries: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        s.fail(FailureKind::StreamClosed, "", || "closed".into());
        s.count_event("text_chunk");
        s.record(Metric::Ttfe, 50_000);
        let (ep, back) = endpoint_from_proto(&endpoint_to_proto(&endpoint(), &s)).unwrap();
        assert_eq!(ep, endpoint());
        assert_eq!(back.counts.requests, 3);
        assert_eq!(back.counts.failures, 1);
        assert_eq!(back.counts.retries, 2);
        assert_eq!(back.counts, s.counts);
        assert_eq!(back.events_by_type["text_chunk"], 1);
        assert_eq!(
            back.histogram(Metric::Ttfe).unwrap().max(),
            s.histogram(Metric::Ttfe).unwrap().max()
        );
    }

    #[test]
    fn success_latency_travels_apart_from_the_histograms() {
        let mut s = EndpointStats {
            counts: Counts {
                requests: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        s.record(Metric::ResponseTime, 700);
        s.record(Metric::ResponseTimeOk, 700);
        let d = endpoint_to_proto(&endpoint(), &s);
        // A master that does not know the metric would refuse it in `histograms`.
        assert!(d.histograms.iter().all(|h| h.metric != "response_time_ok"));
        assert!(!d.response_time_ok_hdr_v2.is_empty());
        let (_, back) = endpoint_from_proto(&d).unwrap();
        assert_eq!(back.histogram(Metric::ResponseTimeOk).unwrap().len(), 1);
    }

    /// A report carries only the histograms that got a value this interval (the
    /// master reads an absent one as empty): a quiet metric costs no bytes.
    #[test]
    fn only_histograms_with_values_travel_and_absent_ones_read_as_empty() {
        let mut s = EndpointStats {
            counts: Counts {
                requests: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        s.record(Metric::ResponseTime, 900);
        s.record(Metric::ResponseTime, 1100);
        // Created by a merge but given nothing this interval: stays home too.
        s.histograms[Metric::Ttfe as usize] = Some(crate::metrics::new_histogram());
        s.histograms[Metric::ResponseTimeOk as usize] = Some(crate::metrics::new_histogram());
        let d = endpoint_to_proto(&endpoint(), &s);
        let sent: Vec<&str> = d.histograms.iter().map(|h| h.metric.as_str()).collect();
        assert_eq!(sent, ["response_time"]);
        assert!(d.response_time_ok_hdr_v2.is_empty());
        let (_, back, buckets) = endpoint_from_proto_sparse(&d, &mut 0).unwrap();
        assert_eq!(back.counts.requests, 2);
        for m in Metric::ALL {
            assert_eq!(buckets[m as usize].is_some(), m == Metric::ResponseTime, "{m:?}");
        }
    }

    #[test]
    fn impossible_deltas_are_rejected() {
        let mut d = endpoint_to_proto(
            &endpoint(),
            &EndpointStats {
                counts: Counts {
                    requests: 1,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        d.failures = 2;
        assert!(endpoint_from_proto(&d).is_err());
        // Good requests are successes: never more than requests - failures.
        d.failures = 0;
        d.good = 1;
        assert_eq!(endpoint_from_proto(&d).unwrap().1.counts.good, 1);
        d.good = 2;
        assert!(endpoint_from_proto(&d).is_err());
        let mut d = endpoint_to_proto(&endpoint(), &EndpointStats::default());
        d.histograms.push(v1::Histogram {
            metric: "ttfe".into(),
            hdr_v2: vec![1, 2, 3].into(),
        });
        assert!(endpoint_from_proto(&d).is_err());
    }
}
