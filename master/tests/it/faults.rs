//! Cluster faults: disconnects, partitions, killed workers, signals.

use std::time::Duration;

use crate::support::proxy::Proxy;
use crate::support::*;

/// A disconnect mid-run: workers reconnect, resend what was not acknowledged, and the
/// master counts each report once — the totals equal what the target served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_disconnect_loses_nothing_and_counts_nothing_twice() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 6, 100.0, Duration::from_secs(5));
    let m = master(setup(&workflow_scenario("constant(0.02)"), &load, 2)).await;
    let proxy = Proxy::start(m.addr).await;
    let workers = [worker(proxy.addr, "w1"), worker(proxy.addr, "w2")];
    assert!(
        eventually(Duration::from_secs(5), || m
            .cluster
            .aggregator()
            .workers
            .values()
            .all(|p| p.reports >= 2)
            && m.cluster.aggregator().workers.len() == 2)
        .await
    );
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut();
    let r = m.run.await.unwrap().unwrap().report;
    for w in workers {
        assert_eq!(w.await.unwrap().unwrap(), barrage_worker::Exit::RunFinished);
    }
    let truth = mock.state.ground_truth();
    assert_eq!(
        r.aggregated.requests, truth.requests,
        "requests after two disconnects: ours vs the mock's"
    );
    assert_eq!(r.aggregated.events, truth.events_sent);
    assert!(r.workers.iter().all(|w| !w.lost && w.final_report), "{:?}", r.workers);
    assert!(r.events.iter().all(|e| !e.contains("lost")), "{:?}", r.events);
}

/// A partition longer than the liveness timeout: the worker is declared lost, its users
/// go to the other worker, and when it comes back it is fenced before it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_lost_in_a_partition_is_fenced_when_it_returns() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let mut load = load_args(mock.addr, 6, 1000.0, Duration::from_secs(8));
    load.heartbeat_liveness = Duration::from_secs(2);
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 2)).await;
    let proxy = Proxy::start(m.addr).await;
    let steady = worker(m.addr, "steady");
    let partitioned = worker(proxy.addr, "partitioned");
    let users = |id: &str| users_of(&m.cluster, id);
    assert!(
        eventually(Duration::from_secs(5), || users("steady") == Some(3)
            && users("partitioned") == Some(3))
        .await
    );
    proxy.freeze(true);
    // Declared lost: the steady worker takes all 6 users.
    assert!(
        eventually(Duration::from_secs(5), || users("steady") == Some(6)).await,
        "no rebalance: {:?}",
        users("steady")
    );
    assert!(m.cluster.registry().worker("partitioned").unwrap().is_lost());
    proxy.freeze(false);
    proxy.cut();
    // It comes back, is fenced, rejoins, and the users are split again.
    assert!(
        eventually(Duration::from_secs(4), || users("steady") == Some(3)
            && users("partitioned") == Some(3))
        .await,
        "after the return: steady {:?}, partitioned {:?}",
        users("steady"),
        users("partitioned")
    );
    let r = m.run.await.unwrap().unwrap().report;
    let _ = (steady.await, partitioned.await);
    let truth = mock.state.ground_truth();
    assert!(
        r.events.iter().any(|e| e.contains("partitioned lost")),
        "{:?}",
        r.events
    );
    // Fenced when it came back, it handed in what it did while cut off before it
    // joined again: nothing lost, nothing counted twice.
    assert_eq!(r.aggregated.requests, truth.requests, "{:?}", r.completeness);
    assert!(r.completeness.is_complete(), "{:?}", r.completeness);
}

/// SIGKILL a worker process: the master notices, rebalances, and says so in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_is_noticed_and_its_users_move() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let mut load = load_args(mock.addr, 4, 1000.0, Duration::from_secs(5));
    load.heartbeat_liveness = Duration::from_secs(2);
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 2)).await;
    let inproc = worker(m.addr, "survivor");
    let mut child = barrage()
        .args([
            "worker",
            "--master",
            &m.addr.to_string(),
            "--worker-id",
            "victim",
            "--give-up-after",
            "10s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let users = |id: &str| users_of(&m.cluster, id);
    assert!(
        eventually(Duration::from_secs(8), || users("victim") == Some(2)
            && users("survivor") == Some(2))
        .await
    );
    child.kill().unwrap();
    let killed = std::time::Instant::now();
    let _ = child.wait();
    assert!(
        eventually(Duration::from_secs(5), || users("survivor") == Some(4)).await,
        "users did not move"
    );
    assert!(
        killed.elapsed() < Duration::from_millis(2000 + 1500),
        "noticed only after {:?}",
        killed.elapsed()
    );
    let r = m.run.await.unwrap().unwrap().report;
    let _ = inproc.await;
    assert!(r.events.iter().any(|e| e.contains("victim lost")), "{:?}", r.events);
    assert!(r.workers.iter().any(|w| w.id == "victim" && w.lost));
    assert!(r.aggregated.requests <= mock.state.ground_truth().requests);
}

/// `--on-worker-loss abort`: the run stops, reports are still written, exit code 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_worker_loss_abort_stops_the_run_with_exit_code_3() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let mut load = load_args(mock.addr, 2, 1000.0, Duration::from_secs(30));
    load.heartbeat_liveness = Duration::from_secs(2);
    load.on_worker_loss = barrage_master::controller::WorkerLossPolicy::Abort;
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 2)).await;
    let proxy = Proxy::start(m.addr).await;
    let a = worker(m.addr, "a");
    let b = worker(proxy.addr, "b");
    assert!(
        eventually(Duration::from_secs(5), || m
            .cluster
            .registry()
            .workers()
            .filter(|w| w.users() == 1)
            .count()
            == 2)
        .await
    );
    let started = std::time::Instant::now();
    proxy.freeze(true);
    let outcome = m.run.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the abort took {:?}",
        started.elapsed()
    );
    assert_eq!(outcome.exit_code, 3);
    assert!(
        outcome.report.stop_reason.contains("--on-worker-loss abort"),
        "{}",
        outcome.report.stop_reason
    );
    assert_eq!(
        outcome.report.events.iter().filter(|e| e.contains(" lost ")).count(),
        1,
        "{:?}",
        outcome.report.events
    );
    assert!(
        outcome.report.events.iter().any(|e| e.contains("worker b lost")),
        "{:?}",
        outcome.report.events
    );
    b.abort();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), a)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        barrage_worker::Exit::RunFinished
    );
}

/// Every worker lost: the run ends as a cluster error (exit 3) but the report, with
/// who was lost and when, is still produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_worker_still_produces_the_report() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let mut load = load_args(mock.addr, 2, 1000.0, Duration::from_secs(30));
    load.heartbeat_liveness = Duration::from_secs(2);
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 1)).await;
    let proxy = Proxy::start(m.addr).await;
    let w = worker(proxy.addr, "only");
    assert!(eventually(Duration::from_secs(5), || reports_of(&m.cluster, "only") >= 1).await);
    proxy.freeze(true);
    let outcome = tokio::time::timeout(Duration::from_secs(20), m.run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(outcome.report.stop_reason, "every worker was lost");
    assert!(
        outcome.report.events.iter().any(|e| e.contains("only lost")),
        "{:?}",
        outcome.report.events
    );
    assert!(
        outcome.report.aggregated.requests > 0,
        "what it reported before the loss is kept"
    );
    w.abort();
}
