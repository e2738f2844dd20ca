//! Pre-built report contents: one second of plausible per-endpoint figures, built
//! once with barrage-common's own `EndpointStats` and `endpoint_to_proto`, so every
//! delta is byte-for-byte what a real worker's recorder would send. A fake worker
//! only clones one of these and fills in seq and interval per report.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use barrage_common::metrics::{EndpointStats, FailureKind, Metric};
use barrage_common::plan::{Endpoint, TaskKindTag};
use barrage_common::wire::endpoint_to_proto;
use barrage_proto::v1;

/// The endpoints of one report interval and their totals (for the exactness check).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub endpoints: Vec<v1::EndpointDelta>,
    pub requests: u64,
    pub failures: u64,
    /// Bytes of V2-encoded histograms (the bulk of a report), for the summary.
    pub histogram_bytes: usize,
}

/// Every fifth endpoint streams (SSE); the rest are plain HTTP.
fn endpoint(i: usize) -> Endpoint {
    Endpoint {
        name: format!("/api/endpoint-{i:02}"),
        method: "GET".into(),
        kind: if i % 5 == 4 {
            TaskKindTag::Sse
        } else {
            TaskKindTag::Http
        },
    }
}

/// The scenario's endpoint `i` as the master's plan names it: its name, and
/// whether it streams.
pub(crate) fn scenario_endpoint(i: usize) -> (String, bool) {
    let ep = endpoint(i);
    (ep.name, ep.kind == TaskKindTag::Sse)
}

/// `count` different templates over `endpoints` endpoints, reproducible from `seed`.
/// Each endpoint is in a template with probability `active_percent` / 100 (a real
/// worker sends no delta for an endpoint that saw nothing that second); a template
/// has at least one.
pub(crate) fn build(count: usize, endpoints: usize, active_percent: u32, seed: u64) -> Vec<Template> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut active: Vec<usize> = (0..endpoints)
                .filter(|_| rng.random_range(0..100) < active_percent)
                .collect();
            if active.is_empty() {
                active.push(rng.random_range(0..endpoints.max(1)));
            }
            let deltas: Vec<v1::EndpointDelta> = active
                .into_iter()
                .map(|i| {
                    let ep = endpoint(i);
                    let stats = match ep.kind {
                        TaskKindTag::Http => http_second(&mut rng),
                        TaskKindTag::Sse => sse_second(&mut rng),
                    };
                    endpoint_to_proto(&ep, &stats)
                })
                .collect();
            Template {
                requests: deltas.iter().map(|d| d.requests).sum(),
                failures: deltas.iter().map(|d| d.failures).sum(),
                histogram_bytes: deltas.iter().flat_map(|d| &d.histograms).map(|h| h.hdr_v2.len()).sum(),
                endpoints: deltas,
            }
        })
        .collect()
}

/// A log-normal sample in microseconds: `median_ms` with spread `sigma` (Box-Muller).
fn lognormal_us(rng: &mut StdRng, median_ms: f64, sigma: f64) -> u64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (median_ms * 1000.0 * (sigma * z).exp()).max(1.0) as u64
}

/// Records one failed request, about 1 in 100, by one of the kinds a worker reports.
fn maybe_fail(rng: &mut StdRng, s: &mut EndpointStats) {
    if rng.random_range(0..100) != 0 {
        return;
    }
    match rng.random_range(0..3) {
        0 => s.fail(FailureKind::HttpStatus, "503", || "HTTP 503 Service Unavailable".into()),
        1 => s.fail(FailureKind::Timeout, "", || "no response within 30s".into()),
        _ => s.fail(FailureKind::Connect, "refused", || "connection refused".into()),
    }
}

/// One second of a plain HTTP endpoint: 20-200 requests around 50 ms.
fn http_second(rng: &mut StdRng) -> EndpointStats {
    let mut s = EndpointStats::default();
    let requests = rng.random_range(20..=200u64);
    for _ in 0..requests {
        s.counts.requests += 1;
        let rt = lognormal_us(rng, 50.0, 0.5);
        s.record(Metric::ResponseTime, rt);
        s.record(Metric::TimeToHeaders, rt * 9 / 10);
        s.counts.bytes_received += rng.random_range(500..4000);
        maybe_fail(rng, &mut s);
    }
    s.counts.connections_opened = rng.random_range(0..3);
    s
}

/// One second of an SSE endpoint: 20-80 streams ending, first event around 300 ms,
/// 10-40 events per stream over about 3 s.
fn sse_second(rng: &mut StdRng) -> EndpointStats {
    const TYPES: [&str; 5] = [
        "workflow_started",
        "node_started",
        "text_chunk",
        "node_finished",
        "ping",
    ];
    let mut s = EndpointStats::default();
    let streams = rng.random_range(20..=80u64);
    for _ in 0..streams {
        s.counts.requests += 1;
        s.counts.streams_started += 1;
        let headers = lognormal_us(rng, 20.0, 0.4);
        let ttfe = headers + lognormal_us(rng, 300.0, 0.5);
        let ttft = ttfe + lognormal_us(rng, 100.0, 0.5);
        let stream = lognormal_us(rng, 3000.0, 0.4);
        s.record(Metric::TimeToHeaders, headers);
        s.record(Metric::Ttfe, ttfe);
        s.record(Metric::Ttft, ttft);
        s.record(Metric::StreamDuration, stream);
        s.record(Metric::ResponseTime, headers + stream);
        s.record(Metric::ServerElapsed, stream * 95 / 100);
        let events = rng.random_range(10..=40u64);
        for e in 0..events {
            s.count_event(TYPES[(e as usize) % TYPES.len()]);
            let gap = stream / events;
            s.record(Metric::EventGap, gap / 2 + rng.random_range(0..=gap.max(1)));
            if e % TYPES.len() as u64 == 2 {
                s.record(Metric::ChunkGap, gap * 2 + rng.random_range(0..=gap.max(1)));
            }
        }
        s.count_event("workflow_finished");
        s.counts.bytes_received += events * rng.random_range(100..400);
        s.counts.total_tokens += rng.random_range(100..500);
        let before = s.counts.failures;
        maybe_fail(rng, &mut s);
        if s.counts.failures == before {
            s.counts.streams_completed += 1;
        }
    }
    s.counts.connections_opened = rng.random_range(0..3);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::wire::endpoint_from_proto;

    #[test]
    fn templates_decode_as_the_master_decodes_them() {
        for t in build(3, 10, 100, 7) {
            assert_eq!(t.endpoints.len(), 10, "every endpoint at 100 %");
            let mut requests = 0;
            for d in &t.endpoints {
                let (_, stats) = endpoint_from_proto(d).unwrap();
                assert_eq!(
                    stats.histogram(Metric::ResponseTime).unwrap().len(),
                    stats.counts.requests,
                    "one response time per request"
                );
                requests += stats.counts.requests;
            }
            assert_eq!(requests, t.requests);
        }
    }

    #[test]
    fn a_share_of_the_endpoints_is_active_each_second() {
        let templates = build(200, 50, 30, 7);
        let deltas: usize = templates.iter().map(|t| t.endpoints.len()).sum();
        let share = deltas as f64 / (200.0 * 50.0);
        assert!((0.25..0.35).contains(&share), "{share}");
        assert!(templates.iter().all(|t| !t.endpoints.is_empty()));
        assert!(
            templates
                .iter()
                .flat_map(|t| &t.endpoints)
                .flat_map(|d| &d.histograms)
                .all(|h| !h.hdr_v2.is_empty()),
            "only histograms that got values travel"
        );
    }
}
