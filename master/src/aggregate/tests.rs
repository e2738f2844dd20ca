use super::*;
use barrage_common::metrics::Metric;
use barrage_common::plan::TaskKindTag;
use barrage_proto::v1;

fn report(seq: u64, start_s: i64, requests: u64) -> v1::Report {
    let mut s = EndpointStats {
        counts: barrage_common::metrics::Counts {
            requests,
            ..Default::default()
        },
        ..Default::default()
    };
    s.record(Metric::ResponseTime, 1000);
    let mut r = testing::one_second(7, seq, start_s, "/x", TaskKindTag::Http, &s);
    r.worker_id = "w1".into();
    r
}

#[test]
fn each_seq_counts_once_in_any_order() {
    let mut a = Aggregator::new(7);
    assert_eq!(a.merge(&report(1, 0, 5)), Merge::Merged { acked: 1 });
    assert_eq!(a.merge(&report(3, 2, 5)), Merge::Merged { acked: 1 });
    assert_eq!(a.merge(&report(3, 2, 5)), Merge::Duplicate { acked: 1 });
    assert_eq!(a.merge(&report(2, 1, 5)), Merge::Merged { acked: 3 });
    assert_eq!(a.merge(&report(1, 0, 5)), Merge::Duplicate { acked: 3 });
    assert_eq!(a.aggregated().counts.requests, 15);
    assert_eq!(a.timeline.len(), 3);
    assert_eq!(a.timeline[&2].requests, 5, "placed by interval, not arrival");
}

/// A 16-thread worker at 6 % a thread (96 % of one core for the process) is not
/// saturated; one whose busiest thread ran at 95 % is, whatever its other threads
/// did. Live figures, the report's warning and the hunt's window all read this.
#[test]
fn saturation_is_judged_on_the_busiest_load_thread() {
    let mut a = Aggregator::new(7);
    let mut r = report(1, 0, 1);
    (r.cpu_percent, r.busiest_thread_cpu_percent, r.load_threads) = (96.0, 6.5, 16);
    a.merge(&r);
    let p = &a.workers["w1"];
    assert_eq!((p.cpu_max, p.thread_cpu_max), (96.0, 6.5));
    assert!(!cpu_saturated(p.thread_cpu_max));
    assert!(!cpu_saturated(a.window(0, 1).worker_cpu_max));
    let row = |p: &WorkerProgress| crate::report::WorkerRow {
        id: "w1".into(),
        index: 0,
        hostname: "h".into(),
        cores: 16,
        source_addresses: 0,
        reports: p.reports,
        final_report: false,
        lost: false,
        cpu_max_percent: p.cpu_max,
        thread_cpu_max_percent: p.thread_cpu_max,
        rss_bytes: 0,
        sched_lag_max_ms: 0.0,
    };
    assert_eq!(crate::report::saturation_warning(&row(p)), None);

    // One hot thread among 16: the process says 110 % of a core (7 % of 16).
    let mut r = report(2, 1, 1);
    (r.cpu_percent, r.busiest_thread_cpu_percent, r.load_threads) = (110.0, 95.0, 16);
    a.merge(&r);
    let p = &a.workers["w1"];
    assert!(cpu_saturated(p.thread_cpu_max));
    assert!(cpu_saturated(a.window(1, 2).worker_cpu_max));
    let w = crate::report::saturation_warning(&row(p)).expect("a warning");
    assert!(w.contains("busiest load thread peaked at 95%"), "{w}");

    // An older worker sends only the process figure, which stands in.
    assert_eq!(saturation_cpu(0.0, 0, 93.0), 93.0);
    assert_eq!(saturation_cpu(f64::NAN, 4, 93.0), 0.0);
}

#[test]
fn the_worst_timer_lag_and_its_second_are_kept() {
    let mut a = Aggregator::new(7);
    for (seq, lag) in [(1, 300), (2, 7_000), (3, 900)] {
        let mut r = report(seq, seq as i64 - 1, 1);
        r.sched_lag_p99_us = lag;
        a.merge(&r);
    }
    let p = &a.workers["w1"];
    assert_eq!(
        (p.sched_lag_max_us, p.sched_lag_max_at_s, p.sched_lag_p99_us),
        (7_000, 1, 900)
    );
}

#[test]
fn old_slots_shrink_to_summaries_and_keep_their_figures() {
    let mut a = Aggregator::new(7);
    for seq in 1..=40u64 {
        a.merge(&report(seq, seq as i64 - 1, 2));
    }
    let old = &a.timeline[&0];
    assert!(old.summary.is_some() && old.ttfe.is_none() && old.response_time.is_none());
    assert_eq!((old.requests, old.summary().rt_p50_us), (2, 1000));
    assert!(
        a.timeline[&39].summary.is_none(),
        "the open window keeps its histograms"
    );
    // A late report for a compacted second still counts (not its percentiles).
    a.merge(&report(41, 0, 3));
    assert_eq!(a.timeline[&0].requests, 5);
    assert_eq!(a.aggregated().counts.requests, 83);
}

#[test]
fn endpoint_seconds_are_kept_only_when_asked_and_only_while_open() {
    let mut off = Aggregator::new(7);
    off.merge(&report(1, 0, 2));
    assert!(off.endpoint_window(0, 1).is_empty());

    let mut a = Aggregator::new(7);
    a.keep_endpoint_seconds();
    for seq in 1..=20u64 {
        a.merge(&report(seq, seq as i64 - 1, seq));
    }
    let key = EndpointKey {
        name: "/x".into(),
        method: "POST".into(),
    };
    // Seconds 15..20 hold seqs 16..=20: their requests, and their response times.
    let open = a.endpoint_window(15, 20);
    let x = &open[&key];
    assert_eq!((x.requests, x.failures), (16 + 17 + 18 + 19 + 20, 0));
    assert_eq!(x.response_time.to_histogram().len(), 5);
    assert_eq!(x.requests, a.window(15, 20).requests);
    // Compacted seconds no longer keep them.
    assert!(a.endpoint_window(0, 4).is_empty());
}

#[test]
fn unusable_reports_count_nothing_and_are_lost_data() {
    let mut a = Aggregator::new(7);
    let mut wrong_epoch = report(1, 0, 5);
    wrong_epoch.epoch = 8;
    assert!(matches!(a.merge(&wrong_epoch), Merge::Rejected { .. }));
    assert!(matches!(a.merge(&report(50_000, 0, 5)), Merge::Rejected { .. }));
    assert_eq!(a.aggregated().counts.requests, 0);
    assert_eq!(a.acked("w1"), 0);
    assert_eq!(a.lost_reports, 2);
    assert_eq!(a.data_loss([]).len(), 1, "{:?}", a.data_loss([]));
}

#[test]
fn an_impossible_delta_is_refused_and_acknowledged_the_rest_of_its_report_counts() {
    let mut a = Aggregator::new(7);
    let mut r = report(1, 0, 5);
    let mut bad = r.endpoints[0].clone();
    bad.name = "/y".into();
    bad.failures = 9;
    r.endpoints.push(bad);
    assert_eq!(
        a.merge(&r),
        Merge::Merged { acked: 1 },
        "acknowledged: the outbox drains"
    );
    assert_eq!(a.aggregated().counts.requests, 5, "the good delta counts");
    assert_eq!((a.refused_deltas, a.refused_requests), (1, 5));
    assert!(!a.data_loss([]).is_empty(), "a refused delta is lost data");
}

#[test]
fn endpoints_the_plan_does_not_have_are_refused_never_stored() {
    let mut a = Aggregator::new(7);
    a.plan_endpoints([("/x", "POST")]);
    let mut r = report(1, 0, 5);
    for i in 0..1000 {
        let mut d = r.endpoints[0].clone();
        d.name = format!("/invented/{i}");
        r.endpoints.push(d);
    }
    assert_eq!(a.merge(&r), Merge::Merged { acked: 1 });
    assert_eq!(a.endpoints.len(), 1);
    assert_eq!(a.aggregated().counts.requests, 5);
    assert_eq!((a.refused_deltas, a.refused_requests), (1000, 5000));
}

/// Sessions decode a report before taking the lock (`DecodedReport::decode`); the
/// refusals and clips found then count exactly as `merge` counts them, once, and
/// not at all for a duplicate or a report of another run.
#[test]
fn a_report_decoded_outside_the_lock_is_refused_and_counted_as_merge_does() {
    let planned = Planned::new([("/x", "POST")]);
    let hostile = |seq| {
        let mut r = report(seq, 0, 5);
        let mut invented = r.endpoints[0].clone();
        invented.name = "/invented".into();
        let mut impossible = r.endpoints[0].clone();
        impossible.failures = 9;
        let mut long_sample = r.endpoints[0].clone();
        long_sample.failures = 1;
        long_sample.failure_kinds = vec![v1::FailureCount {
            kind: "http_status".into(),
            detail: "500".into(),
            count: 1,
            sample: "x".repeat(10_000),
            ..Default::default()
        }];
        r.endpoints.extend([invented, impossible, long_sample]);
        r
    };
    let mut direct = Aggregator::new(7);
    direct.plan_endpoints([("/x", "POST")]);
    assert_eq!(direct.merge(&hostile(1)), Merge::Merged { acked: 1 });

    let mut a = Aggregator::new(7);
    a.plan_endpoints([("/x", "POST")]);
    let r = hostile(1);
    let decoded = DecodedReport::decode(&planned, &r);
    assert_eq!((a.refused_deltas, a.clipped), (0, 0), "nothing counts before the merge");
    assert_eq!(a.merge_decoded(decoded), Merge::Merged { acked: 1 });
    for agg in [&direct, &a] {
        assert_eq!((agg.refused_deltas, agg.refused_requests), (2, 10));
        assert_eq!(agg.clipped, 1, "the sample clipped once");
        let s = agg.aggregated();
        assert_eq!((s.counts.requests, s.counts.failures), (10, 1));
        assert_eq!(s.histogram(Metric::ResponseTime).map(|h| h.len()), Some(2));
    }
    // The same seq again, decoded again: acknowledged, nothing counted twice.
    let again = hostile(1);
    assert_eq!(
        a.merge_decoded(DecodedReport::decode(&planned, &again)),
        Merge::Duplicate { acked: 1 }
    );
    let mut other_run = hostile(2);
    other_run.epoch = 8;
    assert!(matches!(
        a.merge_decoded(DecodedReport::decode(&planned, &other_run)),
        Merge::Rejected { .. }
    ));
    assert_eq!((a.refused_deltas, a.refused_requests, a.clipped), (2, 10, 1));
    assert_eq!(a.aggregated().counts.requests, 10);
}

#[test]
fn odd_fields_are_clipped_and_every_count_kept() {
    let mut a = Aggregator::new(7);
    a.start_clock(std::time::Instant::now());
    let mut r = report(1, 0, 5);
    r.users = Some(v1::Gauge {
        last: -1,
        max: 3,
        time_avg: f64::NAN,
    });
    r.cpu_percent = f64::INFINITY;
    r.endpoints[0].failures = 2;
    r.endpoints[0].failure_kinds = vec![v1::FailureCount {
        kind: "terminal_status".into(),
        detail: "failed".repeat(100),
        count: 2,
        sample: "Traceback (most recent call last):\n".repeat(300),
        ..Default::default()
    }];
    r.endpoints[0].events_by_type = (0..500)
        .map(|i| v1::EventCount {
            event_type: format!("made-up-{i}-{}", "x".repeat(i)),
            count: 1,
        })
        .collect();
    r.endpoints[0].events = 500;
    r.endpoints[0].peer = "9".repeat(300);
    assert_eq!(a.merge(&r), Merge::Merged { acked: 1 });
    let s = a.aggregated();
    assert_eq!((s.counts.requests, s.counts.failures, s.counts.events), (5, 2, 500));
    assert_eq!(s.events_by_type.values().sum::<u64>(), 500);
    assert!(s.events_by_type.len() <= barrage_common::bounds::MAX_EVENT_TYPES + 1);
    assert!(
        s.events_by_type
            .keys()
            .all(|k| k.len() <= barrage_common::bounds::MAX_EVENT_TYPE)
    );
    let (_, f) = s.failure_kinds.iter().next().unwrap();
    assert!(f.sample.len() <= barrage_common::bounds::MAX_SAMPLE && f.sample.contains("clipped"));
    assert_eq!(a.peers.keys().next().unwrap().1, barrage_common::bounds::OTHER);
    assert!(a.clipped >= 5, "{}", a.clipped);
    assert!(a.data_loss([]).is_empty(), "clipping loses no count");
    assert_eq!(a.timeline[&0].users, 0.0);
}

#[test]
fn an_interval_far_beyond_the_run_clock_counts_but_is_not_placed() {
    let mut a = Aggregator::new(7);
    a.start_clock(std::time::Instant::now());
    let far = report(1, 10_000_000, 5);
    assert_eq!(a.merge(&far), Merge::Merged { acked: 1 });
    assert_eq!(a.aggregated().counts.requests, 5);
    assert!(a.timeline.is_empty());
    assert_eq!(a.clipped, 1);
}

#[test]
fn a_fenced_session_counts_until_its_closing_report_and_nothing_after() {
    let mut a = Aggregator::new(7);
    a.merge(&report(1, 0, 5));
    a.fence("w1", true);
    assert_eq!(a.data_loss(["w1"]).len(), 1, "written off before its data arrived");
    let mut closing = report(2, 1, 3);
    closing.r#final = true;
    assert_eq!(a.merge(&closing), Merge::Merged { acked: 2 });
    assert!(a.data_loss(["w1"]).is_empty(), "its closing report arrived");
    assert!(matches!(a.merge(&report(3, 2, 4)), Merge::Rejected { acked: 3, .. }));
    assert_eq!(a.aggregated().counts.requests, 8);
    assert_eq!(a.lost_reports, 1);
}

#[test]
fn a_missing_seq_is_lost_data() {
    let mut a = Aggregator::new(7);
    a.merge(&report(1, 0, 5));
    a.merge(&report(3, 2, 5));
    assert_eq!(
        a.data_loss([]),
        vec!["worker w1: report(s) 2..2 never arrived".to_string()]
    );
    a.merge(&report(2, 1, 5));
    assert!(a.data_loss([]).is_empty());
}

#[test]
fn forgetting_a_worker_that_never_closed_is_lost_data() {
    let mut a = Aggregator::new(7);
    a.merge(&report(1, 0, 5));
    a.forget("w1", "was replaced by a new process");
    assert_eq!(a.data_loss([]).len(), 1);
    assert_eq!(a.aggregated().counts.requests, 5, "what it delivered stays counted");
}
