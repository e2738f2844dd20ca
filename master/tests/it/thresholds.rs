//! Thresholds judged on real runs against the mock: observed values compared with
//! what the mock did, verdicts, exit codes, and `abort_on_fail` stopping the run.

use std::time::Duration;

use barrage_master::serve::Outcome;

use crate::support::*;

/// Runs `setup` with one in-process worker; the whole outcome (report and exit code).
async fn outcome(setup: barrage_master::setup::MasterSetup) -> Outcome {
    let m = master(setup).await;
    let w = worker(m.addr, "w");
    let out = m.run.await.unwrap().unwrap();
    let _ = w.await;
    out
}

/// A one-class workflow scenario (streams whose first event the mock delays).
fn workflows() -> String {
    workflow_scenario("constant(0.05)").replace("weight = 1\nwait", "weight = 0\nwait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_are_judged_on_what_the_target_did() {
    let mock = mock(sse_mock_config(50, 2, 5)).await;
    let mut load = load_args(mock.addr, 4, 100.0, Duration::from_secs(2));
    load.threshold = [
        "p95(ttfe) < 500ms",
        "p50(ttfe) < 40ms",
        "error_rate < 1%",
        "requests > 0",
        "p99(response_time){name=/v1/workflows/run} < 5s",
        "events_per_s > 1000000",
    ]
    .map(String::from)
    .to_vec();
    let out = outcome(setup(&workflows(), &load, 1)).await;
    let truth = mock.state.ground_truth();
    let t = &out.report.thresholds;
    let verdicts: Vec<(&str, bool)> = t.iter().map(|r| (r.threshold.as_str(), r.passed)).collect();
    assert_eq!(
        verdicts,
        [
            ("p95(ttfe) < 500ms", true),
            // The mock holds every first event back 50 ms: below 40 ms is impossible.
            ("p50(ttfe) < 40ms", false),
            ("error_rate < 1%", true),
            ("requests > 0", true),
            ("p99(response_time){name=/v1/workflows/run} < 5s", true),
            ("events_per_s > 1000000", false),
        ]
    );
    // Observed values are the target's own figures.
    assert_eq!(t[3].observed, Some(truth.requests as f64));
    assert!(truth.requests > 10, "{truth:?}");
    let p50 = t[1].observed.unwrap();
    assert!(
        p50 >= 50_000.0 && p50 < truth.first_event_p50_us as f64 + 10_000.0,
        "p50(ttfe) observed {p50} µs; the mock sent first events at p50 {} µs",
        truth.first_event_p50_us
    );
    assert_eq!(t[2].observed, Some(0.0));
    assert_eq!(out.exit_code, 1, "a failed threshold is exit code 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_on_fail_threshold_stops_the_run_cluster_wide() {
    let mock = mock(sse_mock_config(50, 2, 5)).await;
    let mut load = load_args(mock.addr, 4, 100.0, Duration::from_secs(120));
    load.threshold_abort = vec!["p50(ttfe) < 20ms".into()];
    load.threshold = vec!["error_rate < 1%".into()];
    let out = outcome(setup(&workflows(), &load, 1)).await;
    let r = &out.report;
    assert!(
        r.stop_reason.contains("threshold `p50(ttfe) < 20ms` failed"),
        "{}",
        r.stop_reason
    );
    assert!(r.duration_s < 60.0, "ran {} s of 120", r.duration_s);
    assert_eq!(out.exit_code, 1);
    let fired = r.thresholds.iter().find(|t| t.abort_on_fail).unwrap();
    assert!(
        !fired.passed && fired.shown.contains("failed during the run"),
        "{fired:?}"
    );
    assert!(r.thresholds.iter().any(|t| !t.abort_on_fail && t.passed));
    // The load stopped with the run: the mock hears nothing more.
    let before = mock.state.ground_truth().requests;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.state.ground_truth().requests, before);
    assert_eq!(r.aggregated.requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_set_the_exit_code_unless_told_otherwise() {
    // Every request is refused (wrong key): failures, and no threshold.
    let mut cfg = sse_mock_config(5, 1, 5);
    cfg.api_key = Some("another-key".into());
    let mock = mock(cfg).await;
    let mut load = load_args(mock.addr, 2, 100.0, Duration::from_secs(1));
    let out = outcome(setup(&workflows(), &load, 1)).await;
    assert!(out.report.aggregated.failures > 0);
    assert_eq!(out.exit_code, 1, "failures are exit code 1 by default, as in Locust");
    load.exit_code_on_error = Some(0);
    let out = outcome(setup(&workflows(), &load, 1)).await;
    assert_eq!(out.exit_code, 0, "--exit-code-on-error 0: failures alone pass");
    load.threshold = vec!["error_rate < 50%".into()];
    let out = outcome(setup(&workflows(), &load, 1)).await;
    assert_eq!(out.report.thresholds[0].observed, Some(1.0));
    assert_eq!(
        out.exit_code, 1,
        "a failed threshold fails the run whatever --exit-code-on-error says"
    );
}
