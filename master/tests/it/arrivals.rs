//! The open model against the mock: arrivals on schedule, split exactly across
//! workers, dropped (not delayed) at the in-flight cap, timed from when they were due.

use std::time::Duration;

use barrage_common::arrival_schedule::RateStage;

use crate::support::*;

fn scenario() -> String {
    workflow_scenario("constant(0)").replace("weight = 1\nwait", "weight = 0\nwait")
}

/// Runs `load` with `workers` in-process workers; the report.
async fn run(load: &barrage_master::cli::LoadArgs, workers: u32) -> barrage_master::report::FinalReport {
    let m = master(setup(&scenario(), load, workers)).await;
    let ws: Vec<_> = (0..workers).map(|i| worker(m.addr, &format!("w{i}"))).collect();
    let out = m.run.await.unwrap().unwrap();
    for w in ws {
        let _ = w.await;
    }
    out.report
}

fn open_load(addr: std::net::SocketAddr, rate: f64, secs: u64) -> barrage_master::cli::LoadArgs {
    let mut load = load_args(addr, 1, 1.0, Duration::from_secs(secs));
    load.users = None;
    load.spawn_rate = None;
    load.arrival_rate = Some(rate);
    load
}

async fn on_schedule_with(workers: u32) {
    // Short streams: every arrival finishes well within the run.
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = open_load(mock.addr, 100.0, 3);
    let r = run(&load, workers).await;
    let arrivals = r.arrivals.clone().unwrap();
    let truth = mock.state.ground_truth();
    // What we report is what the target received.
    assert_eq!(r.aggregated.requests, truth.requests, "{workers} workers");
    assert_eq!(arrivals.dropped, 0);
    // The cluster ran the schedule: 100/s for the 3 s run time (arrivals due from 0 s
    // to 2.99 s), within one arrival per worker.
    let planned = 300;
    assert!(
        truth.requests.abs_diff(planned) <= u64::from(workers),
        "{workers} workers: {} requests for {planned} planned over {:.2}s",
        truth.requests,
        r.duration_s
    );
    assert_eq!(arrivals.due, planned);
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_follow_the_schedule_on_one_worker() {
    on_schedule_with(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_follow_the_schedule_on_two_workers() {
    on_schedule_with(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_follow_the_schedule_on_three_workers() {
    on_schedule_with(3).await;
}

/// 100 arrivals a second into a target that takes 200 ms, with at most 5 in flight:
/// the target can take 25 a second; the rest are dropped and counted, and nothing
/// queues to be sent late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_beyond_the_in_flight_cap_are_dropped_not_delayed() {
    let mock = mock(sse_mock_config(200, 1, 5)).await;
    let mut load = open_load(mock.addr, 100.0, 3);
    load.max_in_flight = Some(5);
    load.threshold = vec!["dropped_iterations < 1".into(), "dropped_iterations[2s] < 1".into()];
    let r = run(&load, 1).await;
    let a = r.arrivals.clone().unwrap();
    // A gate on dropped arrivals sees them: over the run, and in its last seconds.
    assert_eq!(r.thresholds[0].observed, Some(a.dropped as f64));
    assert!(r.thresholds.iter().all(|t| !t.passed), "{:?}", r.thresholds);
    let truth = mock.state.ground_truth();
    assert_eq!(r.aggregated.requests, truth.requests);
    assert!(truth.max_concurrent_streams <= 5, "{truth:?}");
    // Every due arrival was either started or dropped.
    assert!(
        (r.aggregated.requests + a.dropped).abs_diff(a.due) <= 2,
        "{} started + {} dropped for {} due",
        r.aggregated.requests,
        a.dropped,
        a.due
    );
    assert!(a.dropped > a.due / 2, "{a:?}");
    // Nothing waited for a slot: each request took its 200 ms, not more.
    let p99 = r.aggregated.response_time_ms.as_ref().unwrap().p99;
    assert!(p99 < 400.0, "p99 {p99} ms");
}

/// A ramping rate: 0 -> 60/s over 2 s (60 arrivals), then 60/s for 1 s (60 more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramping_rate_integrates_to_its_arrivals() {
    let mock = mock(sse_mock_config(5, 1, 5)).await;
    let mut load = open_load(mock.addr, 0.0, 3);
    load.arrival_rate = None;
    load.run_time = None;
    load.arrival_stage = vec![
        RateStage {
            duration: Duration::from_secs(2),
            rate: 60.0,
        },
        RateStage {
            duration: Duration::from_secs(1),
            rate: 60.0,
        },
    ];
    let r = run(&load, 2).await;
    let truth = mock.state.ground_truth();
    assert_eq!(r.aggregated.requests, truth.requests);
    assert!(
        truth.requests.abs_diff(120) <= 3,
        "{} requests for 120 planned",
        truth.requests
    );
    // The first second holds a quarter of the ramp's arrivals (15), the second 45.
    let first: u64 = r.timeline.iter().filter(|p| p.t == 0).map(|p| p.rps).sum();
    assert!(first.abs_diff(15) <= 3, "{first} in the first second; {:?}", r.timeline);
}

/// Latency runs from when an arrival was due: while the first virtual users log in
/// (500 ms, `on_start`), arrivals wait for them, and that wait is in their latency,
/// although the target answers each task in a few milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_the_due_time_not_the_send() {
    let app = axum::Router::new()
        .route(
            "/login",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "{}"
            }),
        )
        .route("/work", axum::routing::get(|| async { "ok" }));
    let addr = serve(app).await;
    let scenario = r#"
[[users]]
name = "U"
[[users.on_start]]
name = "login"
method = "POST"
path = "/login"
[[users.tasks]]
name = "work"
path = "/work"
"#;
    let mut load = open_load(addr, 40.0, 2);
    load.max_in_flight = Some(100);
    let m = master(setup(scenario, &load, 1)).await;
    let w = worker(m.addr, "w");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    let work = r.endpoints.iter().find(|e| e.name == "work").unwrap();
    let rt = work.response_time_ms.as_ref().unwrap();
    let headers = work.time_to_headers_ms.as_ref().unwrap();
    // The first arrivals waited for a logged-in user: ~500 ms from their due time.
    assert!(rt.max >= 400.0, "max {} ms", rt.max);
    // Those due after users were free went straight out.
    assert!(rt.min < 100.0, "min {} ms", rt.min);
    assert!(headers.max >= 400.0, "time to headers counts from the due time too");
    assert_eq!(r.arrivals.as_ref().unwrap().dropped, 0);
}

/// An open-model run of 100 arrivals/s for 3 s (`adjust` changes its load), on one
/// worker and a second joining 1.2 s in: its report and what the target saw.
async fn with_a_worker_joining(
    adjust: impl FnOnce(&mut barrage_master::cli::LoadArgs),
) -> (barrage_master::report::FinalReport, barrage_mock::GroundTruth) {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let mut load = open_load(mock.addr, 100.0, 3);
    adjust(&mut load);
    let m = master(setup(&scenario(), &load, 1)).await;
    let first = worker(m.addr, "w0");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = worker(m.addr, "w1");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = first.await;
    let _ = second.await;
    (r, mock.state.ground_truth())
}

/// A worker joining mid-run takes its share of the arrivals from the one due then: the
/// cluster still runs the schedule once, not twice nor with gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_takes_its_share_of_the_arrivals() {
    let (r, truth) = with_a_worker_joining(|_| {}).await;
    assert_eq!(r.aggregated.requests, truth.requests);
    // The re-split happens while arrivals keep coming: allow one each side of it.
    assert!(
        truth.requests.abs_diff(300) <= 3,
        "{} requests for 300 due",
        truth.requests
    );
    let reports: Vec<u64> = r.workers.iter().map(|w| w.reports).collect();
    assert!(reports.len() == 2 && reports.iter().all(|&n| n > 0), "{:?}", r.workers);
    assert!(
        r.events.iter().any(|e| e.contains("joined") || e.contains("w1")),
        "{:?}",
        r.events
    );
}

/// A seeded Poisson run: the target receives the arrivals the seeded sequence plans
/// (started + dropped <= due, due the planned count), and the same seed plans the same
/// arrivals again, on one worker or two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_poisson_run_sends_the_planned_arrivals_and_repeats() {
    use barrage_common::arrival_process::{ArrivalProcess, ArrivalSequence};
    use barrage_common::arrival_schedule::Schedule;
    // Arrivals of the seeded sequence due before the 3 s run time at 100/s.
    let planned = |seed| {
        ArrivalSequence::new(ArrivalProcess::Poisson, seed).count_before(Schedule::constant(100.0).cumulative(3.0))
    };
    // Seed 3 plans 335 arrivals, seed 4 287.
    assert_eq!(planned(3), planned(3));
    assert_ne!(planned(3), planned(4), "another seed, other arrivals");
    // Nor the constant rate's 300: a worker firing the constant schedule would miss.
    assert!(planned(3).abs_diff(300) > 20, "{}", planned(3));
    for workers in [1, 2] {
        let mock = mock(sse_mock_config(5, 2, 5)).await;
        let mut load = open_load(mock.addr, 100.0, 3);
        load.arrival_process = Some("poisson".into());
        load.arrival_seed = Some(3);
        let r = run(&load, workers).await;
        let a = r.arrivals.clone().unwrap();
        let truth = mock.state.ground_truth();
        assert_eq!(r.aggregated.requests, truth.requests, "{workers} workers");
        assert_eq!((a.process.as_deref(), a.seed), (Some("poisson"), Some(3)));
        // The report's due is the seeded plan, and the target saw it.
        assert_eq!(a.due, planned(3), "{workers} workers");
        assert!(
            truth.requests + a.dropped <= a.due,
            "{} started + {} dropped for {} due",
            truth.requests,
            a.dropped,
            a.due
        );
        assert_eq!(a.dropped, 0);
        assert!(
            truth.requests.abs_diff(a.due) <= u64::from(workers),
            "{workers} workers: {} requests for {} planned",
            truth.requests,
            a.due
        );
        assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
        // The JSON report carries the process and its seed, within the schema.
        let json = barrage_master::report::json::to_json(&r);
        assert_eq!(
            (&json["arrivals"]["process"], &json["arrivals"]["seed"]),
            (&"poisson".into(), &3.into())
        );
        crate::support::assert_schema(&json);
    }
}

/// A worker joining a seeded Poisson run takes its share from the arrival of the
/// sequence due then: the cluster still sends the planned arrivals once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_takes_its_share_of_a_seeded_sequence() {
    use barrage_common::arrival_process::{ArrivalProcess, ArrivalSequence};
    use barrage_common::arrival_schedule::Schedule;
    let planned =
        ArrivalSequence::new(ArrivalProcess::Poisson, 3).count_before(Schedule::constant(100.0).cumulative(3.0));
    let (r, truth) = with_a_worker_joining(|load| {
        load.arrival_process = Some("poisson".into());
        load.arrival_seed = Some(3);
    })
    .await;
    assert_eq!(r.aggregated.requests, truth.requests);
    assert_eq!(r.arrivals.as_ref().unwrap().due, planned);
    // The re-split happens while arrivals keep coming: allow one each side of it.
    assert!(
        truth.requests.abs_diff(planned) <= 3,
        "{} requests for {planned} due",
        truth.requests
    );
    let reports: Vec<u64> = r.workers.iter().map(|w| w.reports).collect();
    assert!(reports.len() == 2 && reports.iter().all(|&n| n > 0), "{:?}", r.workers);
}
