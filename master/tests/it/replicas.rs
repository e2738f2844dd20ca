//! Several replicas of one host (`[resolve]` to distinct ports on 127.0.0.1, as a
//! headless Service gives pod IPs): a real master and in-process workers against
//! targets written here, each counting what it served. Per-replica rows must equal
//! each target's own count, users must spread evenly by their cluster-wide index
//! whatever the number of workers, every address must have a row, and a dead replica
//! must show its failures, not a fast latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use barrage_master::report::{FinalReport, ReplicaRow};

use crate::support::{load_args, master, serve, setup, worker};

/// A target that counts the requests it answered.
struct Counted {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
}

impl Counted {
    fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

async fn counted() -> Counted {
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let app = axum::Router::new().route(
        "/hit",
        axum::routing::get(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    Counted {
        addr: serve(app).await,
        served,
    }
}

/// A loopback address nothing listens on (connections are refused).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `users` users on `workers` in-process workers against `replicas.test`, which
/// `[resolve]` maps to `addrs`, for a second and a half.
async fn run(addrs: &[SocketAddr], users: u32, workers: u32) -> FinalReport {
    let listed: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let scenario = format!(
        r#"
[[users]]
name = "Caller"
wait = "constant(0.02)"
[[users.tasks]]
name = "hit"
method = "GET"
path = "/hit"
[resolve]
"replicas.test" = [{}]
"#,
        listed.join(", ")
    );
    let mut load = load_args(addrs[0], users, 1000.0, Duration::from_millis(1500));
    load.host = Some("http://replicas.test:80".into());
    let m = master(setup(&scenario, &load, workers)).await;
    let ws: Vec<_> = (0..workers).map(|i| worker(m.addr, &format!("w{i}"))).collect();
    let report = m.run.await.unwrap().unwrap().report;
    for w in ws {
        let _ = w.await;
    }
    report
}

fn row(r: &FinalReport, addr: SocketAddr) -> &ReplicaRow {
    r.replicas
        .iter()
        .find(|x| x.peer == addr.to_string())
        .unwrap_or_else(|| panic!("no row for {addr}: {:?}", r.replicas))
}

/// Each replica's row equals what that replica served, and the rows add up.
fn rows_match_targets(r: &FinalReport, targets: &[&Counted]) {
    for t in targets {
        assert_eq!(row(r, t.addr).requests, t.served(), "{}", t.addr);
        assert_eq!(row(r, t.addr).failures, 0, "{}", t.addr);
    }
    let rows: u64 = r.replicas.iter().map(|x| x.requests).sum();
    assert_eq!(rows, r.aggregated.requests);
}

/// 10 users on 2 workers over 2 replicas: 5 and 5 (by index within a worker, the
/// split was 6 and 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_spread_evenly_over_replicas_across_workers() {
    let (a, b) = (counted().await, counted().await);
    let r = run(&[a.addr, b.addr], 10, 2).await;
    assert_eq!(
        (row(&r, a.addr).users, row(&r, b.addr).users),
        (5, 5),
        "{:?}",
        r.replicas
    );
    assert!(a.served() > 0 && b.served() > 0);
    rows_match_targets(&r, &[&a, &b]);
}

/// One user on each of 2 workers: one per replica (each worker's first user went to
/// the first replica, and the second got nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_per_worker_loads_every_replica() {
    let (a, b) = (counted().await, counted().await);
    let r = run(&[a.addr, b.addr], 2, 2).await;
    assert!(
        a.served() > 0 && b.served() > 0,
        "served {} / {}",
        a.served(),
        b.served()
    );
    assert_eq!((row(&r, a.addr).users, row(&r, b.addr).users), (1, 1));
    rows_match_targets(&r, &[&a, &b]);
}

/// A replica that refuses connections has a row with its failures by kind and no
/// success latency (its instant refusals made it look the fastest); the live ones
/// have their success latency and exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_shows_its_failures_not_a_fast_latency() {
    let (a, b, dead) = (counted().await, counted().await, closed_port());
    let r = run(&[a.addr, b.addr, dead], 3, 2).await;
    let d = row(&r, dead);
    assert_eq!(d.users, 1);
    assert!(d.requests > 0 && d.failures == d.requests, "{d:?}");
    let refused: u64 = d
        .failure_kinds
        .iter()
        .filter(|k| k.kind == "connect")
        .map(|k| k.count)
        .sum();
    assert_eq!(refused, d.failures, "{:?}", d.failure_kinds);
    assert!(d.response_time_ok_ms.is_none(), "{d:?}");
    for t in [&a, &b] {
        let x = row(&r, t.addr);
        assert_eq!(x.requests, t.served());
        assert_eq!(x.failures, 0);
        assert!(x.failure_kinds.is_empty());
        assert!(x.response_time_ok_ms.is_some(), "{x:?}");
    }
    assert_eq!(r.aggregated.requests, a.served() + b.served() + d.requests);
    // The JSON carries it all, as the schema says.
    let json = serde_json::to_value(&r).unwrap();
    crate::support::assert_schema(&json);
    let text = barrage_master::report::console::render_final(&r);
    assert!(text.contains(&dead.to_string()) && text.contains("connect"), "{text}");
}

/// One user over two replicas: the second has a row saying 0 (zero is a finding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_requests_has_a_zero_row() {
    let (a, b) = (counted().await, counted().await);
    let r = run(&[a.addr, b.addr], 1, 1).await;
    assert_eq!(b.served(), 0);
    let idle = row(&r, b.addr);
    assert_eq!((idle.requests, idle.users), (0, 0), "{idle:?}");
    assert_eq!(row(&r, a.addr).users, 1);
    rows_match_targets(&r, &[&a, &b]);
}
