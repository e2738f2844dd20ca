//! Reports made up for unit tests: one worker's second of figures as the wire carries it.

use barrage_common::metrics::{EndpointStats, Metric};
use barrage_common::plan::{Endpoint, TaskKindTag};
use barrage_common::wire::endpoint_to_proto;
use barrage_proto::v1;

/// Worker `w`'s report number `seq` for second `at` of the run: `stats` as the one
/// endpoint `POST name`.
pub(crate) fn one_second(
    epoch: u64,
    seq: u64,
    at: i64,
    name: &str,
    kind: TaskKindTag,
    stats: &EndpointStats,
) -> v1::Report {
    let ep = Endpoint {
        name: name.into(),
        method: "POST".into(),
        kind,
    };
    v1::Report {
        worker_id: "w".into(),
        epoch,
        seq,
        interval_start_us: at * 1_000_000,
        interval_end_us: (at + 1) * 1_000_000,
        endpoints: vec![endpoint_to_proto(&ep, stats)],
        ..Default::default()
    }
}

/// One second of a worker: `requests` to `POST /x` answered in `rt_ms` each, as
/// report number `at + 1` for second `at`.
pub(crate) fn requests_at(at: i64, requests: u64, rt_ms: u64) -> v1::Report {
    let mut s = EndpointStats {
        counts: barrage_common::metrics::Counts {
            requests,
            ..Default::default()
        },
        ..Default::default()
    };
    for _ in 0..requests {
        s.record(Metric::ResponseTime, rt_ms * 1000);
    }
    one_second(1, at as u64 + 1, at, "/x", TaskKindTag::Http, &s)
}

/// A stats row of `requests` and `failures`, `bytes` received, and one response time
/// per entry of `rts_us` (µs: below 2048 µs HDR, 3 significant digits, is exact).
pub(crate) fn stats(requests: u64, failures: u64, rts_us: &[u64], bytes: u64) -> EndpointStats {
    let mut s = EndpointStats {
        counts: barrage_common::metrics::Counts {
            requests,
            failures,
            bytes_received: bytes,
            ..Default::default()
        },
        ..Default::default()
    };
    for &rt in rts_us {
        s.record(Metric::ResponseTime, rt);
    }
    s
}
