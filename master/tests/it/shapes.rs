//! Load shapes against the mock: the users the target sees follow the stages, exactly,
//! whatever the number of workers.

use std::time::Duration;

use barrage_common::shape::Stage;

use crate::support::*;

/// Every user holds one long stream open at a time, so the mock's open streams are
/// the cluster's live users.
fn long_streams() -> barrage_mock::MockConfig {
    sse_mock_config(5, 2000, 10)
}

fn scenario() -> String {
    workflow_scenario("constant(0)").replace("weight = 1\nwait", "weight = 0\nwait")
}

async fn staged_run(workers: u32) {
    let mock = mock(long_streams()).await;
    let mut load = load_args(mock.addr, 1, 1.0, Duration::from_secs(5));
    load.users = None;
    load.run_time = None;
    // Streams outlive the run: cut them at the end instead of waiting for them.
    load.stop_timeout = Duration::from_millis(200);
    // 0 -> 6 -> 11 -> 3 users, each reached at 200 users/s (within 60 ms).
    load.stage = [(6, 2), (11, 2), (3, 2)]
        .map(|(users, secs)| Stage {
            duration: Duration::from_millis(1500 * secs / 2),
            users,
            spawn_rate: Some(200.0),
        })
        .to_vec();
    let m = master(setup(&scenario(), &load, workers)).await;
    let ws: Vec<_> = (0..workers).map(|i| worker(m.addr, &format!("w{i}"))).collect();
    // Wait for the run to start, then look at the target in the middle of each stage.
    assert!(
        eventually(Duration::from_secs(20), || mock.state.ground_truth().active_streams > 0).await,
        "no load"
    );
    let started = tokio::time::Instant::now();
    let mut seen = Vec::new();
    for middle in [900u64, 2400, 3900] {
        tokio::time::sleep_until(started + Duration::from_millis(middle)).await;
        seen.push(mock.state.ground_truth().active_streams);
    }
    let out = m.run.await.unwrap().unwrap();
    for w in ws {
        let _ = w.await;
    }
    assert_eq!(seen, [6, 11, 3], "{workers} workers: open streams mid-stage");
    assert_eq!(
        mock.state.ground_truth().max_concurrent_streams,
        11,
        "{workers} workers: the peak"
    );
    assert_eq!(out.report.users, 11);
    assert!(
        out.report.duration_s >= 4.5 && out.report.duration_s < 8.0,
        "the run lasts its stages: {}",
        out.report.duration_s
    );
    let shape_events = out.report.events.iter().filter(|e| e.contains("shape:")).count();
    assert_eq!(shape_events, 2, "{:?}", out.report.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_are_followed_exactly_by_one_worker() {
    staged_run(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_are_followed_exactly_by_two_workers() {
    staged_run(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_are_followed_exactly_by_three_workers() {
    staged_run(3).await;
}
