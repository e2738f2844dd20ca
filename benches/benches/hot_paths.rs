//! Micro-benchmarks of the per-event and per-report hot paths. They print figures;
//! nothing here asserts a speed (see benches/README.md).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use barrage_common::metrics::{
    Accum, EndpointStats, METRIC_COUNT, Metric, decode_buckets, decode_histogram, encode_histogram,
};
use barrage_common::plan::{Endpoint, TaskKindTag};
use barrage_common::wire::{endpoint_from_proto, endpoint_from_proto_sparse, endpoint_to_proto};
use barrage_worker::sse::SseParser;

const WORKFLOW: &[u8] = include_bytes!("../../worker/tests/fixtures/sse/workflow.sse");

fn sse_parsing(c: &mut Criterion) {
    let events = barrage_worker::sse::parse_all(WORKFLOW).map(|e| e.len()).unwrap_or(1) as u64;
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(WORKFLOW.len() as u64));
    g.bench_function("workflow_stream_whole", |b| {
        b.iter(|| {
            let mut p = SseParser::default();
            let mut n = 0u64;
            let _ = p.feed(black_box(WORKFLOW), &mut |_| n += 1);
            n
        })
    });
    // One read per event, as 500 streams with events 10 ms apart deliver them.
    let chunks: Vec<&[u8]> = WORKFLOW.split_inclusive(|&b| b == b'\n').collect();
    g.throughput(Throughput::Elements(events));
    g.bench_function("workflow_stream_line_by_line", |b| {
        b.iter(|| {
            let mut p = SseParser::default();
            let mut n = 0u64;
            for chunk in &chunks {
                let _ = p.feed(black_box(chunk), &mut |_| n += 1);
            }
            n
        })
    });
    g.finish();
}

fn histograms(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram");
    g.bench_function("record", |b| {
        let mut s = EndpointStats::default();
        let mut v = 1u64;
        b.iter(|| {
            v = v.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s.record(Metric::Ttfe, black_box(1000 + (v >> 44)));
        })
    });
    let endpoint = Endpoint {
        name: "/v1/workflows/run".into(),
        method: "POST".into(),
        kind: TaskKindTag::Sse,
    };
    let mut stats = EndpointStats {
        counts: barrage_common::metrics::Counts {
            requests: 1000,
            ..Default::default()
        },
        ..Default::default()
    };
    for i in 0..1000u64 {
        stats.record(Metric::ResponseTime, 200_000 + i * 97);
        stats.record(Metric::Ttfe, 50_000 + i * 7);
    }
    let h = stats
        .histogram(Metric::Ttfe)
        .cloned()
        .unwrap_or_else(barrage_common::metrics::new_histogram);
    let bytes = encode_histogram(&h);
    g.bench_function("encode_v2", |b| b.iter(|| encode_histogram(black_box(&h))));
    g.bench_function("decode_v2_dense", |b| {
        b.iter(|| decode_histogram("ttfe", black_box(&bytes)))
    });
    g.bench_function("decode_v2_buckets", |b| {
        b.iter(|| decode_buckets("ttfe", black_box(&bytes)))
    });
    let delta = endpoint_to_proto(&endpoint, &stats);
    g.bench_function("endpoint_delta_decode", |b| {
        b.iter(|| endpoint_from_proto(black_box(&delta)))
    });
    g.bench_function("endpoint_delta_decode_sparse", |b| {
        b.iter(|| endpoint_from_proto_sparse(black_box(&delta), &mut 0))
    });
    // The master's path: one endpoint's deltas from 1,000 workers, decoded to buckets
    // and accumulated (what Aggregator::merge does per report).
    g.bench_function("decode_and_accumulate_1000_workers", |b| {
        b.iter(|| {
            let mut hists: Vec<Accum> = vec![Accum::default(); METRIC_COUNT];
            let mut requests = 0;
            for _ in 0..1000 {
                if let Ok((_, counters, buckets)) = endpoint_from_proto_sparse(black_box(&delta), &mut 0) {
                    requests += counters.counts.requests;
                    for (into, b) in hists.iter_mut().zip(&buckets) {
                        if let Some(b) = b {
                            into.add(b);
                        }
                    }
                }
            }
            requests
        })
    });
    // Dense histograms merged (what the worker does each second with its shards).
    let decoded: Vec<EndpointStats> = (0..1000)
        .filter_map(|_| endpoint_from_proto(&delta).ok().map(|(_, s)| s))
        .collect();
    g.bench_function("merge_1000_workers", |b| {
        b.iter(|| {
            let mut total = EndpointStats::default();
            for s in &decoded {
                total.merge(s);
            }
            total.counts.requests
        })
    });
    g.finish();
}

criterion_group!(benches, sse_parsing, histograms);
criterion_main!(benches);
