//! A hostile worker against the master's decoder and merge (issue 14): proptest makes
//! reports with any seq and epoch, names and methods planned or not, failure texts of
//! any size, counts up to `u64::MAX`, NaN and infinite gauges, intervals anywhere in
//! `i64`, floods of peers, and histogram bytes that are noise, truncated, or one huge
//! run of zeros, and feeds them to an [`Aggregator`] that knows the plan.
//!
//! Whatever comes, nothing panics, every map and text the aggregator keeps is bounded,
//! every plausible report is acknowledged, and the planned endpoints' totals are exactly
//! the sum of the valid deltas it merged: a reference the test keeps itself. (The
//! decoder alone is fuzzed in `common/tests/wire_fuzz.rs`.)

use std::collections::BTreeMap;

use proptest::prelude::*;

use barrage_common::bounds::{MAX_DETAIL, MAX_EVENT_TYPE, MAX_EVENT_TYPES, MAX_NODE_NAME, MAX_NODES, MAX_SAMPLE};
use barrage_common::metrics::{
    EndpointStats, FailureEntry, FailureKind, MAX_OUTCOME_KEYS, Metric, NodeKey, NodeStats, encode_histogram,
    new_histogram,
};
use barrage_common::plan::{Endpoint, TaskKindTag};
use barrage_common::wire::{MAX_COUNT, endpoint_to_proto};
use barrage_master::aggregate::{Aggregator, MAX_PEER_ROWS, Merge};
use barrage_proto::v1;

const EPOCH: u64 = 0x5eed;
const PLANNED: [(&str, &str); 2] = [("/v1/workflows/run", "POST"), ("/health", "GET")];
const WORKERS: [&str; 2] = ["w1", "w2"];
/// Longest peer address kept as a row of its own (`aggregate::MAX_PEER`, private).
const MAX_PEER: usize = 64;
/// Addresses kept in `peer_users` (`aggregate::MAX_PEER_USERS`, private).
const MAX_PEER_USERS: usize = 256;

/// Any text: short and varied, or long and repetitive (up to 100 KB).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        (0usize..100_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
}

/// A delta the master must take: a planned endpoint, counts that add up.
#[derive(Debug, Clone)]
struct Valid {
    endpoint: usize,
    extra_requests: u64,
    failures: Vec<(String, String, String, u64)>,
    outcomes: Vec<(String, String, String, u64)>,
    events: Vec<(String, u64)>,
    peer: String,
    response_times: Vec<u64>,
    /// Dify nodes (title, type, executions, elapsed µs): any texts, more than the cap.
    nodes: Vec<(String, String, u64, u64)>,
}

fn valid() -> impl Strategy<Value = Valid> {
    let outcome = || (text(), text(), text(), 0u64..50);
    (
        0..PLANNED.len(),
        0u64..1000,
        prop::collection::vec(outcome(), 0..80),
        prop::collection::vec(outcome(), 0..8),
        prop::collection::vec((text(), 0u64..1000), 0..100),
        prop_oneof!["", (0u8..255).prop_map(|n| format!("10.0.0.{n}:80")), text()],
        prop::collection::vec(1u64..10_000_000_000, 0..10),
        prop::collection::vec((text(), text(), 0u64..1000, 1u64..100_000_000), 0..100),
    )
        .prop_map(
            |(endpoint, extra_requests, failures, outcomes, events, peer, response_times, nodes)| Valid {
                endpoint,
                extra_requests,
                failures,
                outcomes,
                events,
                peer,
                response_times,
                nodes,
            },
        )
}

impl Valid {
    fn stats(&self) -> EndpointStats {
        let entry = |(kind, detail, sample, count): &(String, String, String, u64)| {
            (
                (kind.clone(), detail.clone()),
                FailureEntry {
                    count: *count,
                    sample: sample.clone(),
                    ..FailureEntry::default()
                },
            )
        };
        let sum = |list: &[(String, String, String, u64)]| list.iter().map(|f| f.3).sum::<u64>();
        // Same (kind, detail) twice in the list: the counts add, as they would on a worker.
        let mut failure_kinds: BTreeMap<_, FailureEntry> = BTreeMap::new();
        for (k, e) in self.failures.iter().map(entry) {
            failure_kinds
                .entry(k)
                .or_insert_with(|| FailureEntry { count: 0, ..e.clone() })
                .count += e.count;
        }
        let mut outcomes: BTreeMap<_, FailureEntry> = BTreeMap::new();
        for (k, e) in self.outcomes.iter().map(entry) {
            outcomes
                .entry(k)
                .or_insert_with(|| FailureEntry { count: 0, ..e.clone() })
                .count += e.count;
        }
        let mut s = EndpointStats {
            counts: barrage_common::metrics::Counts {
                requests: sum(&self.failures) + sum(&self.outcomes) + self.extra_requests,
                failures: sum(&self.failures),
                events: self.events.iter().map(|e| e.1).sum(),
                ..Default::default()
            },
            failure_kinds,
            outcomes,
            events_by_type: self.events.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            ..EndpointStats::default()
        };
        for v in &self.response_times {
            s.record(Metric::ResponseTime, *v);
        }
        // Straight into the map, past the worker's own bounds: what a hostile peer sends.
        for (title, node_type, count, us) in &self.nodes {
            let mut elapsed = new_histogram();
            elapsed.record(*us).unwrap();
            let n = s
                .nodes
                .entry(NodeKey {
                    title: title.clone(),
                    node_type: node_type.clone(),
                })
                .or_default();
            n.statuses[0] += count;
            n.elapsed = Some(elapsed);
        }
        s
    }

    /// Node executions the delta carries.
    fn node_executions(&self) -> u64 {
        self.nodes.iter().map(|n| n.2).sum()
    }

    fn delta(&self) -> v1::EndpointDelta {
        let (name, method) = PLANNED[self.endpoint];
        let ep = Endpoint {
            name: name.into(),
            method: method.into(),
            kind: TaskKindTag::Sse,
        };
        let mut d = endpoint_to_proto(&ep, &self.stats());
        d.peer = self.peer.clone();
        d
    }
}

/// A delta the master must refuse, each for a different reason.
#[derive(Debug, Clone)]
enum Garbage {
    Unplanned(String, String, u64),
    WrongMethod(u64),
    MoreFailuresThanRequests(u64),
    CountAboveMax(u64),
    UnknownMetric(String),
    KindsDoNotAddUp(u64),
    NodeCountAboveMax(u64),
}

fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        // A leading `?` is no planned name.
        // Plausible counts too, so only the plan can refuse them.
        (text(), "[A-Z]{1,8}", requests()).prop_map(|(n, m, r)| Garbage::Unplanned(format!("?{n}"), m, r)),
        (text(), text(), any::<u64>()).prop_map(|(n, m, r)| Garbage::Unplanned(format!("?{n}"), m, r)),
        requests().prop_map(Garbage::WrongMethod),
        (1u64..u64::MAX).prop_map(Garbage::MoreFailuresThanRequests),
        (MAX_COUNT + 1..=u64::MAX).prop_map(Garbage::CountAboveMax),
        text().prop_map(|m| Garbage::UnknownMetric(format!("?{m}"))),
        (1u64..1000).prop_map(Garbage::KindsDoNotAddUp),
        (MAX_COUNT + 1..=u64::MAX).prop_map(Garbage::NodeCountAboveMax),
    ]
}

impl Garbage {
    fn delta(&self) -> v1::EndpointDelta {
        let planned = |requests| v1::EndpointDelta {
            name: PLANNED[0].0.into(),
            method: PLANNED[0].1.into(),
            kind: v1::EndpointKind::Sse as i32,
            requests,
            ..Default::default()
        };
        match self {
            Garbage::Unplanned(name, method, requests) => v1::EndpointDelta {
                name: name.clone(),
                method: method.clone(),
                ..planned(*requests)
            },
            Garbage::WrongMethod(requests) => v1::EndpointDelta {
                method: "DELETE".into(),
                ..planned(*requests)
            },
            Garbage::MoreFailuresThanRequests(requests) => {
                let failures = requests.saturating_add(1);
                v1::EndpointDelta {
                    failures,
                    failure_kinds: vec![v1::FailureCount {
                        kind: "io".into(),
                        count: failures,
                        ..Default::default()
                    }],
                    ..planned(*requests)
                }
            }
            Garbage::CountAboveMax(requests) => planned(*requests),
            Garbage::UnknownMetric(metric) => v1::EndpointDelta {
                histograms: vec![v1::Histogram {
                    metric: metric.clone(),
                    hdr_v2: encode_histogram(&new_histogram()).into(),
                }],
                ..planned(5)
            },
            Garbage::KindsDoNotAddUp(failures) => v1::EndpointDelta {
                failures: *failures,
                failure_kinds: vec![v1::FailureCount {
                    kind: "io".into(),
                    count: failures - 1,
                    ..Default::default()
                }],
                ..planned(failures + 1)
            },
            Garbage::NodeCountAboveMax(count) => v1::EndpointDelta {
                nodes: vec![v1::NodeDelta {
                    title: "LLM".into(),
                    node_type: "llm".into(),
                    failed: *count,
                    ..Default::default()
                }],
                ..planned(5)
            },
        }
    }

    /// What the master should count as refused requests for it.
    fn requests(&self) -> u64 {
        self.delta().requests.min(MAX_COUNT)
    }
}

fn requests() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, any::<u64>()]
}

/// Histogram bytes whose fate we do not predict: noise, a valid encoding cut short, or
/// a valid header over one huge run of zeros.
fn odd_histogram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (
            prop::collection::vec(1u64..1_000_000, 1..20),
            any::<prop::sample::Index>()
        )
            .prop_map(|(values, cut)| {
                let mut h = new_histogram();
                values.iter().for_each(|v| h.record(*v).unwrap());
                let mut b = encode_histogram(&h);
                b.truncate(cut.index(b.len()));
                b
            }),
        (1u64..=u64::MAX / 2, 0u64..1000).prop_map(|(zeros, count)| zero_run(zeros, count)),
    ]
}

/// A V2 encoding (the header of a real one) whose payload is a run of `zeros` empty
/// buckets, then one bucket of `count`.
fn zero_run(zeros: u64, count: u64) -> Vec<u8> {
    let mut h = new_histogram();
    h.record(1).unwrap();
    let real = encode_histogram(&h);
    let mut payload = Vec::new();
    // Zigzag LEB128 as HdrHistogram writes it: a negative value is a run of zeros.
    for v in [-(zeros as i64), count as i64] {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                payload.push(byte);
                break;
            }
            payload.push(byte | 0x80);
        }
    }
    let mut b = real[..40].to_vec();
    b[4..8].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(&payload);
    b
}

#[derive(Debug, Clone)]
enum Seq {
    /// The worker's next seq: a plausible report, which must be acknowledged.
    Next,
    Any(u64),
}

#[derive(Debug, Clone)]
struct Hostile {
    worker: usize,
    seq: Seq,
    right_epoch: bool,
    epoch: u64,
    interval: (i64, i64),
    gauges: [(i64, i64, f64); 2],
    cpu: (f64, f64, u32),
    counts: (u64, u64, u64, i64),
    is_final: bool,
    peer_users: Vec<(String, i64, i64)>,
    valid: Vec<Valid>,
    /// Small valid deltas, each on an address of its own (`prefix`, `n`).
    flood: (usize, u32, u16),
    garbage: Vec<Garbage>,
    /// A valid delta with odd histogram bytes: taken or refused, never half of each.
    odd: Option<(Valid, Vec<u8>)>,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let interval = prop_oneof![
        (0i64..60_000_000, 0i64..2_000_000).prop_map(|(s, len)| (s, s + len)),
        (any::<i64>(), any::<i64>()),
    ];
    let gauge = (any::<i64>(), any::<i64>(), any::<f64>());
    (
        (
            0..WORKERS.len(),
            prop_oneof![4 => Just(Seq::Next), 1 => any::<u64>().prop_map(Seq::Any)],
        ),
        (prop::bool::weighted(0.9), any::<u64>(), interval),
        ([gauge, gauge], (any::<f64>(), any::<f64>(), any::<u32>())),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<i64>()),
        prop::bool::weighted(0.05),
        prop::collection::vec((text(), any::<i64>(), any::<i64>()), 0..300),
        prop::collection::vec(valid(), 0..4),
        (0..PLANNED.len(), any::<u32>(), prop_oneof![Just(0u16), 0u16..400]),
        prop::collection::vec(garbage(), 0..4),
        prop::option::of((valid(), odd_histogram())),
    )
        .prop_map(
            |(
                (worker, seq),
                (right_epoch, epoch, interval),
                (gauges, cpu),
                counts,
                is_final,
                peer_users,
                valid,
                flood,
                garbage,
                odd,
            )| Hostile {
                worker,
                seq,
                right_epoch,
                epoch,
                interval,
                gauges,
                cpu,
                counts,
                is_final,
                peer_users,
                valid,
                flood,
                garbage,
                odd,
            },
        )
}

impl Hostile {
    fn flood(&self) -> Vec<v1::EndpointDelta> {
        let (endpoint, prefix, n) = self.flood;
        let (name, method) = PLANNED[endpoint];
        let ep = Endpoint {
            name: name.into(),
            method: method.into(),
            kind: TaskKindTag::Http,
        };
        let one = EndpointStats {
            counts: barrage_common::metrics::Counts {
                requests: 1,
                ..Default::default()
            },
            ..EndpointStats::default()
        };
        (0..n)
            .map(|i| v1::EndpointDelta {
                peer: format!("{prefix:x}.{i}:443"),
                ..endpoint_to_proto(&ep, &one)
            })
            .collect()
    }

    fn report(&self, seq: u64) -> v1::Report {
        let gauge = |(last, max, time_avg): (i64, i64, f64)| Some(v1::Gauge { last, max, time_avg });
        let mut endpoints: Vec<v1::EndpointDelta> = self.valid.iter().map(Valid::delta).collect();
        endpoints.extend(self.flood());
        endpoints.extend(self.garbage.iter().map(Garbage::delta));
        if let Some((valid, bytes)) = &self.odd {
            let mut d = valid.delta();
            d.histograms = vec![v1::Histogram {
                metric: Metric::ResponseTime.as_str().into(),
                hdr_v2: bytes.clone().into(),
            }];
            endpoints.push(d);
        }
        v1::Report {
            worker_id: WORKERS[self.worker].into(),
            epoch: if self.right_epoch { EPOCH } else { self.epoch },
            seq,
            interval_start_us: self.interval.0,
            interval_end_us: self.interval.1,
            endpoints,
            users: gauge(self.gauges[0]),
            active_streams: gauge(self.gauges[1]),
            r#final: self.is_final,
            cpu_percent: self.cpu.0,
            busiest_thread_cpu_percent: self.cpu.1,
            load_threads: self.cpu.2,
            rss_bytes: self.counts.0,
            sched_lag_p99_us: self.counts.1,
            dropped_iterations: self.counts.2,
            last_arrival_due_us: self.counts.3,
            peer_users: self
                .peer_users
                .iter()
                .map(|(peer, last, max)| v1::PeerUsers {
                    peer: peer.clone(),
                    last: *last,
                    max: *max,
                })
                .collect(),
        }
    }
}

/// Requests, failures and Dify node executions per planned endpoint.
type Reference = BTreeMap<&'static str, (u64, u64, u64)>;

fn add(reference: &mut Reference, valid: &Valid) {
    let s = valid.stats();
    let e = reference.entry(PLANNED[valid.endpoint].0).or_default();
    e.0 += s.counts.requests;
    e.1 += s.counts.failures;
    e.2 += valid.node_executions();
}

/// Every map the aggregator keeps is within its cap, every text within its bound.
fn assert_bounded(a: &Aggregator) -> Result<(), TestCaseError> {
    prop_assert!(
        a.endpoints.len() <= PLANNED.len(),
        "{} endpoint keys",
        a.endpoints.len()
    );
    for key in a.endpoints.keys() {
        prop_assert!(PLANNED.contains(&(key.name.as_str(), key.method.as_str())), "{key:?}");
    }
    // One `(other)` row per endpoint past the cap.
    prop_assert!(
        a.peers.len() <= MAX_PEER_ROWS + PLANNED.len(),
        "{} peer rows",
        a.peers.len()
    );
    prop_assert!(
        a.peer_users.len() <= MAX_PEER_USERS,
        "{} peer_users",
        a.peer_users.len()
    );
    for peer in a.peer_users.keys() {
        prop_assert!(peer.len() <= 256, "a {}-byte peer in peer_users", peer.len());
    }
    let stats = a
        .endpoints
        .values()
        .map(|t| (String::new(), &t.totals.counters))
        .chain(a.peers.iter().map(|((_, peer), t)| (peer.clone(), &t.counters)));
    for (peer, s) in stats {
        prop_assert!(peer.len() <= MAX_PEER, "a {}-byte peer row", peer.len());
        for map in [&s.failure_kinds, &s.outcomes] {
            // Past the cap, one `(kind, (other))` per kind a worker reports, one for the rest.
            let cap = MAX_OUTCOME_KEYS + FailureKind::ALL.len() + 1;
            prop_assert!(map.len() <= cap, "{} failure keys", map.len());
            for ((kind, detail), e) in map {
                prop_assert!(kind.len() <= MAX_DETAIL && detail.len() <= MAX_DETAIL);
                prop_assert!(e.sample.len() <= MAX_SAMPLE, "a {}-byte sample", e.sample.len());
            }
        }
        prop_assert!(s.events_by_type.len() <= MAX_EVENT_TYPES + 1);
        prop_assert!(s.events_by_type.keys().all(|k| k.len() <= MAX_EVENT_TYPE));
        prop_assert!(s.nodes.len() <= MAX_NODES + 1, "{} nodes", s.nodes.len());
        for k in s.nodes.keys() {
            prop_assert!(
                k.title.len() <= MAX_NODE_NAME && k.node_type.len() <= MAX_NODE_NAME,
                "{k:?}"
            );
        }
    }
    Ok(())
}

fn play(reports: Vec<Hostile>) -> Result<(), TestCaseError> {
    let mut a = Aggregator::new(EPOCH);
    a.plan_endpoints(PLANNED);
    a.start_clock(std::time::Instant::now());
    let mut reference = Reference::new();
    let mut refused_requests = 0u64;
    for h in &reports {
        let worker = WORKERS[h.worker];
        let next = a.acked(worker) + 1;
        let seq = match h.seq {
            Seq::Next => next,
            Seq::Any(seq) => seq,
        };
        let plausible = h.right_epoch && seq == next;
        let refused_before = a.refused_deltas;
        let merged = a.merge(&h.report(seq));
        if plausible {
            let acked = match &merged {
                Merge::Merged { acked } | Merge::Rejected { acked, .. } | Merge::Duplicate { acked } => *acked,
            };
            prop_assert!(acked >= seq, "seq {seq} not acknowledged: {merged:?}");
        }
        let refused = a.refused_deltas - refused_before;
        if !matches!(merged, Merge::Merged { .. }) {
            prop_assert_eq!(refused, 0, "a report not merged refused deltas");
            continue;
        }
        let garbage = h.garbage.len() as u64;
        prop_assert!(
            refused == garbage || (h.odd.is_some() && refused == garbage + 1),
            "{refused} deltas refused, {garbage} garbage, odd: {}",
            h.odd.is_some()
        );
        refused_requests = h
            .garbage
            .iter()
            .fold(refused_requests, |sum, g| sum.saturating_add(g.requests()));
        h.valid.iter().for_each(|v| add(&mut reference, v));
        let flood = reference.entry(PLANNED[h.flood.0].0).or_default();
        flood.0 += u64::from(h.flood.2);
        if let Some((odd, _)) = &h.odd {
            if refused == garbage {
                add(&mut reference, odd);
            } else {
                let claimed = odd.stats().counts.requests;
                refused_requests = refused_requests.saturating_add(claimed);
            }
        }
        assert_bounded(&a)?;
    }
    let got: Reference = a
        .endpoints
        .iter()
        .filter_map(|(k, t)| {
            let name = PLANNED.iter().find(|p| p.0 == k.name)?.0;
            let c = &t.totals.counters;
            let nodes = c.nodes.values().map(NodeStats::count).sum();
            Some((name, (c.counts.requests, c.counts.failures, nodes)))
        })
        .filter(|(_, counts)| *counts != (0, 0, 0))
        .collect();
    reference.retain(|_, counts| *counts != (0, 0, 0));
    prop_assert_eq!(got, reference, "planned totals vs the valid deltas merged");
    prop_assert_eq!(
        a.refused_requests,
        refused_requests,
        "requests claimed by refused deltas"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_hostile_worker_cannot_break_the_merge_or_its_bounds(reports in prop::collection::vec(hostile(), 1..30)) {
        play(reports)?;
    }
}
