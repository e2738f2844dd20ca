//! Target host lookups: once per engine and on the refresh interval, never per
//! connection (so never inside a request's clock), and users follow the answers when
//! they change (a restarted pod with a new IP). A resolver written here counts the
//! lookups and says what the test wants; the targets count what they served.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use barrage_worker::placement::Resolve;
use barrage_worker::runner::{Engine, Targets};

use crate::drive::{plan_with, watch_panics};
use crate::server::{Hostile, send};

/// Answers every lookup with the current list, and counts the lookups.
struct Counting {
    lookups: AtomicU64,
    answer: Mutex<Vec<SocketAddr>>,
}

impl Counting {
    fn new(answer: SocketAddr) -> Arc<Counting> {
        Arc::new(Counting {
            lookups: AtomicU64::new(0),
            answer: Mutex::new(vec![answer]),
        })
    }

    fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }

    fn answer_with(&self, addr: SocketAddr) {
        *self.answer.lock().unwrap() = vec![addr];
    }
}

impl Resolve for Counting {
    fn lookup(
        &self,
        host: String,
        _port: u16,
    ) -> Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> {
        assert_eq!(host, "svc.test", "only the target host is looked up");
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move { Ok(answer) })
    }
}

async fn ok_target() -> Hostile {
    Hostile::start(|_| vec![send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")]).await
}

/// Waits (bounded) until `check` holds; false if it never did.
async fn until(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// A new connection per request, 40 requests: the host is looked up once, at engine
/// start, not by each connection (it was, inside the measured latency).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_are_looked_up_once_per_engine_not_per_connection() {
    watch_panics();
    let target = ok_target().await;
    let resolver = Counting::new(target.addr);
    let plan = plan_with(r#"dns_refresh = "1h""#, "http", r#"connection = "per-request""#);
    let host = format!("http://svc.test:{}", target.addr.port());
    let engine = Engine::start_with(plan, Some(&host), 0, Instant::now(), 1, resolver.clone())
        .await
        .expect("engine starts");
    engine.set_targets(Targets {
        users: vec![2],
        spawn_rate: 0.0,
    });
    let served = until(|| target.connections() >= 40).await;
    engine.stop(Duration::from_secs(5)).await;
    assert!(served, "only {} connections", target.connections());
    let recorded: u64 = engine
        .recorder()
        .take()
        .iter()
        .map(|s| s.counts.connections_opened)
        .sum();
    assert!(recorded >= 40, "{recorded} connections recorded");
    assert_eq!(
        resolver.lookups(),
        1,
        "{} lookups for {} connections",
        resolver.lookups(),
        target.connections()
    );
}

/// The Service's pod restarts under a new IP: at the next refresh the users leave
/// the old address and load the new one, and nothing is looked up per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_move_to_the_new_address_after_a_refresh() {
    watch_panics();
    let (old, new) = (ok_target().await, ok_target().await);
    assert_ne!(old.addr, new.addr);
    let resolver = Counting::new(old.addr);
    let plan = plan_with(r#"dns_refresh = "50ms""#, "http", r#"connection = "per-request""#);
    // The port of the URL does not matter: the answers carry their own.
    let engine = Engine::start_with(plan, Some("http://svc.test:80"), 0, Instant::now(), 1, resolver.clone())
        .await
        .expect("engine starts");
    let users = 2;
    engine.set_targets(Targets {
        users: vec![users],
        spawn_rate: 0.0,
    });
    assert!(until(|| old.requests() >= 5).await, "the first address got no load");
    resolver.answer_with(new.addr);
    let moved = until(|| new.requests() >= 5).await;
    let old_then = old.requests();
    let more = until(|| new.requests() >= 30).await;
    engine.stop(Duration::from_secs(5)).await;
    assert!(moved && more, "the new address served {}", new.requests());
    // Each user moves at its next request; at most its request in flight then lands
    // on the old address.
    assert!(
        old.requests() <= old_then + u64::from(users),
        "the old address kept getting load: {} after {old_then}",
        old.requests()
    );
    assert!(resolver.lookups() >= 2, "{} lookups", resolver.lookups());
}
