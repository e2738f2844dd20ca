//! Fuzzing on the stable toolchain (proptest) of the report decoder, where untrusted
//! bytes (a worker's reports) enter: endpoint deltas and the HDR histograms inside them.
//! Whatever it is given, it answers with a value or an error, never a panic, and never
//! grows memory by more than a small budget. (The scenario loader, where a file's text
//! enters, is fuzzed in `scenario_fuzz.rs`.)
//!
//! Regression corpus: proptest records the seed of every failing case in
//! `common/tests/proptest-regressions/wire_fuzz.txt` (see [`config`]; one file for all the
//! properties here, each replays every seed) and replays them before any new case.
//! Commit that file (it is not gitignored). Inputs worth keeping by name live in
//! `the_histogram_corpus_decodes_or_fails_cleanly` and run on every `cargo test`.

use std::sync::Mutex;

use barrage_common::metrics::{
    EndpointStats, MAX_DECODED_US, MAX_TRACKABLE_US, Metric, decode_histogram, encode_histogram, new_histogram,
};
use barrage_common::wire::endpoint_from_proto;
use barrage_proto::v1;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Cases per property: together about 6 s in a debug build on 2 cores.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Relative to the package root, where cargo runs integration tests.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/wire_fuzz.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// How much the decoder may grow the process's peak memory for one delta: a real
/// histogram (3 significant digits, up to one day) decodes in well under 1 MiB.
const MEMORY_BUDGET: u64 = 24 << 20;

/// Serialises the measured sections: the peak is per process and tests run in parallel.
static MEASURING: Mutex<()> = Mutex::new(());

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `f` and returns how far the process's peak resident memory rose above where it
/// stood at the start, where Linux tells (resetting the peak through `clear_refs`).
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_kib("VmRSS:").filter(|_| reset);
    let out = f();
    let growth = before
        .zip(status_kib("VmHWM:"))
        .map(|(b, peak)| peak.saturating_sub(b) * 1024);
    (out, growth)
}

fn within_budget(what: &str, growth: Option<u64>) -> Result<(), TestCaseError> {
    if let Some(g) = growth {
        prop_assert!(
            g <= MEMORY_BUDGET,
            "{what} grew peak memory by {} MiB (budget {} MiB)",
            g >> 20,
            MEMORY_BUDGET >> 20
        );
    }
    Ok(())
}

fn valid_encoding(values: &[u64]) -> Vec<u8> {
    let mut h = new_histogram();
    for v in values {
        h.record(*v).unwrap();
    }
    encode_histogram(&h)
}

/// A V2 header (40 bytes, big-endian) with chosen fields, then `payload`.
fn v2_bytes(payload_len: u32, digits: u32, low: u64, high: u64, ratio: f64, payload: &[u8]) -> Vec<u8> {
    let cookie = &valid_encoding(&[])[..4];
    let mut b = cookie.to_vec();
    b.extend_from_slice(&payload_len.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&digits.to_be_bytes());
    b.extend_from_slice(&low.to_be_bytes());
    b.extend_from_slice(&high.to_be_bytes());
    b.extend_from_slice(&ratio.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// A valid encoding with bits flipped. Byte 4 is the top byte of the payload length: a
/// flip there claims up to 2 GiB, which the deterministic test below covers at 256 MiB;
/// here it is kept under 64 MiB so a regression costs seconds, not gigabytes.
fn flipped(values: &[u64], flips: &[(usize, u8)]) -> Vec<u8> {
    let mut b = valid_encoding(values);
    let top = b[4];
    for (at, bit) in flips {
        let i = at % b.len();
        b[i] ^= 1 << (bit % 8);
    }
    b[4] = top | (b[4] & 0x03);
    b
}

fn histogram_values() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![1u64..10_000, 1u64..MAX_TRACKABLE_US, Just(MAX_TRACKABLE_US)],
        0..20,
    )
}

/// Bytes a peer might send as a histogram: noise, the real thing, the real thing
/// damaged, or a header with every field chosen.
fn histogram_bytes() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        prop_oneof![0u32..256, 0u32..(16 << 20)],
        prop_oneof![0u32..6, any::<u32>()],
        prop_oneof![Just(1u64), any::<u64>()],
        prop_oneof![
            1u64..MAX_TRACKABLE_US,
            Just(MAX_TRACKABLE_US + 1),
            any::<u64>(),
            Just(u64::MAX / 2)
        ],
        prop_oneof![Just(1.0f64), any::<f64>()],
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(len, digits, low, high, ratio, payload)| v2_bytes(len, digits, low, high, ratio, &payload));
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        2 => histogram_values().prop_map(|v| valid_encoding(&v)),
        3 => (histogram_values(), prop::collection::vec((any::<usize>(), any::<u8>()), 1..4))
            .prop_map(|(v, f)| flipped(&v, &f)),
        2 => header,
    ]
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 0u64..1_000, 1 => any::<u64>(), 1 => Just(u64::MAX)]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["", "http_status", "503", "io", "/v1/workflows/run", "POST", "ttfe"]).prop_map(str::to_string),
        2 => ".{0,16}",
        1 => (0usize..1_200).prop_map(|n| "x".repeat(n)),
        1 => (4_090usize..4_200).prop_map(|n| "s".repeat(n)),
    ]
}

fn failure_counts() -> impl Strategy<Value = Vec<v1::FailureCount>> {
    let one = (
        prop::sample::select(vec!["http_status", "io", ""]),
        prop::sample::select(vec!["503", ""]),
        count(),
        text(),
    )
        .prop_map(|(kind, detail, count, sample)| v1::FailureCount {
            kind: kind.into(),
            detail: detail.into(),
            count,
            sample,
            ..Default::default()
        });
    prop::collection::vec(one, 0..4)
}

fn delta() -> impl Strategy<Value = v1::EndpointDelta> {
    let metric = prop_oneof![
        6 => prop::sample::select(Metric::ALL.to_vec()).prop_map(|m| m.as_str().to_string()),
        1 => text(),
    ];
    let histograms = prop::collection::vec(
        (metric, histogram_bytes()).prop_map(|(metric, hdr_v2)| v1::Histogram {
            metric,
            hdr_v2: hdr_v2.into(),
        }),
        0..4,
    );
    let events = prop::collection::vec(
        (text(), count()).prop_map(|(event_type, count)| v1::EventCount { event_type, count }),
        0..4,
    );
    // Dify nodes: any title and type, any count, any histogram bytes.
    let nodes = prop::collection::vec(
        (text(), text(), count(), histogram_bytes()).prop_map(|(title, node_type, failed, elapsed_hdr_v2)| {
            v1::NodeDelta {
                title,
                node_type,
                failed,
                elapsed_hdr_v2,
                ..Default::default()
            }
        }),
        0..4,
    );
    (
        (text(), text(), prop_oneof![0i32..4, any::<i32>()]),
        (count(), count(), failure_counts(), failure_counts()),
        (count(), count(), count(), count(), count(), count(), count()),
        (events, histograms, text(), count(), nodes),
    )
        .prop_map(
            |(
                (name, method, kind),
                (requests, failures, failure_kinds, expected_outcomes),
                (bytes_received, connections_opened, retries, streams_started, streams_completed, events, total_tokens),
                (events_by_type, histograms, peer, good, nodes),
            )| v1::EndpointDelta {
                name,
                method,
                kind,
                requests,
                failures,
                failure_kinds,
                expected_outcomes,
                bytes_received,
                connections_opened,
                retries,
                streams_started,
                streams_completed,
                events,
                events_by_type,
                total_tokens,
                histograms,
                peer,
                response_time_ok_hdr_v2: Default::default(),
                good,
                nodes,
            },
        )
}

/// A delta that decodes cleanly, so that random damage starts from something real.
fn sane_delta() -> impl Strategy<Value = v1::EndpointDelta> {
    (0u64..1_000, histogram_values()).prop_map(|(requests, values)| v1::EndpointDelta {
        name: "/v1/workflows/run".into(),
        method: "POST".into(),
        kind: v1::EndpointKind::Sse as i32,
        requests,
        histograms: vec![v1::Histogram {
            metric: "ttfe".into(),
            hdr_v2: valid_encoding(&values).into(),
        }],
        ..Default::default()
    })
}

fn check_histogram(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (decoded, growth) = peak_growth(|| decode_histogram("ttfe", bytes));
    within_budget("decode_histogram", growth)?;
    match decoded {
        Ok(h) => prop_assert!(h.max() <= MAX_DECODED_US, "decoded a max of {} µs", h.max()),
        Err(e) => prop_assert!(e.to_string().starts_with("histogram `ttfe` is malformed"), "{e}"),
    }
    Ok(())
}

fn check_delta(d: &v1::EndpointDelta) -> Result<(), TestCaseError> {
    let (decoded, growth) = peak_growth(|| endpoint_from_proto(d));
    within_budget("endpoint_from_proto", growth)?;
    match decoded {
        Ok((endpoint, s)) => {
            prop_assert!(!endpoint.name.is_empty() && endpoint.name.len() <= 1024);
            prop_assert!(s.counts.failures <= s.counts.requests);
            prop_assert!(s.nodes.len() <= barrage_common::bounds::MAX_NODES + 1);
            prop_assert!(
                s.nodes
                    .keys()
                    .all(|k| k.title.len() <= barrage_common::bounds::MAX_NODE_NAME)
            );
            // Summed without wrapping: a delta whose kinds add up only modulo 2^64 is a lie.
            let kinds: u128 = d.failure_kinds.iter().map(|f| u128::from(f.count)).sum();
            prop_assert_eq!(kinds, u128::from(d.failures));
            prop_assert_eq!(
                s.failure_kinds.values().map(|e| u128::from(e.count)).sum::<u128>(),
                u128::from(s.counts.failures)
            );
            for h in s.histograms.iter().flatten() {
                prop_assert!(h.max() <= MAX_DECODED_US, "a histogram with max {} µs", h.max());
            }
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("protocol: ") || msg.starts_with("histogram "), "{msg}");
        }
    }
    Ok(())
}

/// A header that claims a 256 MiB payload and carries none: the decoder must see the
/// lie before it allocates for it.
#[test]
fn a_lying_payload_length_allocates_nothing_absurd() {
    let mut bytes = valid_encoding(&[50_000, 2_000_000]);
    bytes[4..8].copy_from_slice(&(256u32 << 20).to_be_bytes());
    let (decoded, growth) = peak_growth(|| decode_histogram("ttfe", &bytes));
    assert!(decoded.is_err(), "a truncated histogram decoded");
    if let Some(g) = growth {
        assert!(
            g <= MEMORY_BUDGET,
            "a 40-byte histogram claiming 256 MiB grew peak memory by {} MiB (budget {} MiB)",
            g >> 20,
            MEMORY_BUDGET >> 20
        );
    }
}

/// Inputs kept by name for the histogram decoder.
#[test]
fn the_histogram_corpus_decodes_or_fails_cleanly() {
    let corpus: Vec<Vec<u8>> = vec![
        vec![],
        b"not a histogram".to_vec(),
        valid_encoding(&[]),
        valid_encoding(&[MAX_TRACKABLE_US]),
        // The widest range the format allows, nothing recorded.
        v2_bytes(0, 5, 1, u64::MAX / 2, 1.0, &[]),
        // A value above the limit.
        {
            let mut h = new_histogram();
            h.record(MAX_TRACKABLE_US * 2).unwrap();
            encode_histogram(&h)
        },
        // Counts that overflow when added up (zig-zag varints of i64::MAX).
        v2_bytes(
            18,
            3,
            1,
            MAX_TRACKABLE_US,
            1.0,
            &[
                0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff,
            ],
        ),
        v2_bytes(1, 3, 1, MAX_TRACKABLE_US, f64::NAN, &[2]),
    ];
    let mut failed = Vec::new();
    for bytes in corpus {
        match std::panic::catch_unwind(|| check_histogram(&bytes)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(format!("{bytes:02x?}: {e}")),
            Err(_) => failed.push(format!("{bytes:02x?}: the decoder panicked")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

proptest! {
    #![proptest_config(config(2048))]

    /// What a worker records, the master accepts: a delta that fails to decode is a
    /// whole report lost. Values come from clocks and from the target (Dify's
    /// `elapsed_time` becomes `server_elapsed`), so any u64 can be recorded.
    #[test]
    fn whatever_a_worker_records_survives_the_wire(
        values in prop::collection::vec(prop_oneof![1u64..MAX_TRACKABLE_US, Just(MAX_TRACKABLE_US), any::<u64>()], 1..20),
    ) {
        let mut s = EndpointStats { counts: barrage_common::metrics::Counts { requests: 1, ..Default::default() }, ..Default::default() };
        for v in &values {
            s.record(Metric::ServerElapsed, *v);
        }
        let recorded = s.histogram(Metric::ServerElapsed).unwrap();
        let back = decode_histogram("server_elapsed", &encode_histogram(recorded));
        prop_assert!(back.is_ok(), "values {:?}: {}", values, back.err().unwrap());
        prop_assert_eq!(back.unwrap().len(), recorded.len());
    }

    #[test]
    fn the_histogram_decoder_survives_any_bytes(bytes in histogram_bytes()) {
        check_histogram(&bytes)?;
    }

    #[test]
    fn the_delta_decoder_survives_any_delta(d in delta()) {
        check_delta(&d)?;
    }

    #[test]
    fn the_delta_decoder_survives_a_damaged_real_delta(
        d in sane_delta(),
        requests in count(),
        failures in count(),
        kinds in failure_counts(),
        damaged in histogram_bytes(),
    ) {
        check_delta(&d)?;
        let mut d = d;
        d.requests = requests;
        d.failures = failures;
        d.failure_kinds = kinds;
        d.histograms.push(v1::Histogram {
            metric: "ttft".into(),
            hdr_v2: damaged.into(),
        });
        check_delta(&d)?;
    }
}
