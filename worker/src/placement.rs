//! Which target address (replica) each virtual user connects to, and where those
//! addresses come from.
//!
//! Every target host is looked up once when the engine starts and again every
//! `limits.dns_refresh` by a background task ([`refresh_loop`]), never inside a
//! request: users connect to the addresses of the last lookup, so DNS time is not in
//! any latency. `[resolve]` entries are fixed and never looked up. The lookup goes
//! through [`Resolve`], so tests can count lookups and change the answers.
//!
//! A user is placed by its cluster-wide index within its class: the master sends each
//! worker the index of its first user of each class (`ClassTarget.first_user`), and
//! user `k` of the class on this worker is user `first_user + k` of the cluster, on
//! address `(first_user + k) mod n` of the host's `n` addresses (sorted, so every
//! worker orders them alike). The spread is then even whatever the number of workers.
//! When the addresses or the offsets change, each user finds out before its next
//! request (one atomic load per request) and reconnects if its address changed.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Most distinct addresses an engine records apart; later new addresses are not used.
/// Bounds the recorder's peer dimension whatever DNS answers.
pub const MAX_PEERS: usize = 64;

/// How long a host without any address waits before it is looked up again.
const EMPTY_RETRY: Duration = Duration::from_secs(1);

/// A DNS lookup; [`SystemResolver`] in production, a counting fake in tests.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` (its port is `port`), in any order.
    fn lookup(&self, host: String, port: u16)
    -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;
}

/// The operating system's resolver (`getaddrinfo` through tokio).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(
        &self,
        host: String,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> {
        Box::pin(async move {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Ok(tokio::net::lookup_host((host, port)).await?.collect())
        })
    }
}

/// One target host (name and port) and its current addresses.
struct HostEntry {
    host: String,
    port: u16,
    /// From `[resolve]`: never looked up.
    fixed: bool,
    /// Indices into `State::peers`, in address order.
    current: Vec<usize>,
    /// Why the last lookup found nothing (while `current` is empty).
    error: Option<String>,
}

struct State {
    /// Every address ever used, append-only: index = the recorder's peer slot - 1.
    peers: Vec<SocketAddr>,
    /// Per peer: recorded apart in reports (its host is in `[resolve]` or has had
    /// several addresses).
    split: Vec<bool>,
    hosts: Vec<HostEntry>,
    /// Per class: its index in `hosts`.
    class_host: Vec<usize>,
    /// Per class: the cluster-wide index of this worker's first user.
    first_user: Vec<u64>,
}

/// Where a user is to connect now.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    /// Peer index and address.
    Peer(usize, SocketAddr),
    /// The host has no address (yet): the failure message.
    Unresolved(String),
}

/// The engine's address table and user placement, shared by all users.
pub struct Placement {
    /// Bumped on every change; a user re-reads its pick when it differs.
    generation: AtomicU64,
    state: Mutex<State>,
    /// Per peer: users pinned to it now, and the most since the last report.
    users: Box<[AtomicI64]>,
    users_max: Box<[AtomicI64]>,
}

impl Placement {
    /// `class_hosts[c]` = (host, port, `[resolve]` addresses) of class `c`'s target.
    pub fn new(class_hosts: Vec<(String, u16, Option<Vec<SocketAddr>>)>) -> Placement {
        let mut state = State {
            peers: Vec::new(),
            split: Vec::new(),
            hosts: Vec::new(),
            class_host: Vec::new(),
            first_user: vec![0; class_hosts.len()],
        };
        for (host, port, fixed) in class_hosts {
            let at = match state.hosts.iter().position(|h| h.host == host && h.port == port) {
                Some(at) => at,
                None => {
                    state.hosts.push(HostEntry {
                        host,
                        port,
                        fixed: fixed.is_some(),
                        current: Vec::new(),
                        error: None,
                    });
                    let at = state.hosts.len() - 1;
                    if let Some(addrs) = fixed {
                        // Listed addresses keep their order, and are always split.
                        state.set_addresses(at, addrs, true);
                    }
                    at
                }
            };
            state.class_host.push(at);
        }
        Placement {
            generation: AtomicU64::new(1),
            state: Mutex::new(state),
            users: (0..MAX_PEERS).map(|_| AtomicI64::new(0)).collect(),
            users_max: (0..MAX_PEERS).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is replaced field by field under the lock; a panic elsewhere
        // leaves it consistent enough to keep placing users.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bumped on every change of addresses or placement: a seat of an older
    /// generation re-reads its pick.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where user `slot` (its index among this worker's users of `class`) connects.
    pub fn pick(&self, class: usize, slot: u64) -> (u64, Pick) {
        let generation = self.generation();
        let s = self.lock();
        let host = &s.hosts[s.class_host[class]];
        let pick = if host.current.is_empty() {
            Pick::Unresolved(
                host.error
                    .clone()
                    .unwrap_or_else(|| format!("{} resolves to no address", host.host)),
            )
        } else {
            let global = s.first_user[class].wrapping_add(slot);
            let p = host.current[(global % host.current.len() as u64) as usize];
            Pick::Peer(p, s.peers[p])
        };
        (generation, pick)
    }

    /// Sets each class's cluster-wide index of its first user here (from `Assign`).
    pub fn set_first_users(&self, first: &[u64]) {
        let mut s = self.lock();
        if s.first_user.as_slice() != first && first.len() == s.first_user.len() {
            s.first_user = first.to_vec();
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Looks every host not in `[resolve]` up again; users move at their next request
    /// when the addresses changed. A failed or empty lookup keeps the last addresses.
    /// Returns true when some host still has no address.
    pub async fn refresh(&self, resolver: &dyn Resolve) -> bool {
        let todo: Vec<(usize, String, u16)> = {
            let s = self.lock();
            s.hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| !h.fixed)
                .map(|(i, h)| (i, h.host.clone(), h.port))
                .collect()
        };
        for (i, host, port) in todo {
            let answer = resolver.lookup(host.clone(), port).await;
            let mut s = self.lock();
            match answer {
                Ok(mut addrs) if !addrs.is_empty() => {
                    addrs.sort();
                    addrs.dedup();
                    if s.set_addresses(i, addrs, false) {
                        self.generation.fetch_add(1, Ordering::AcqRel);
                    }
                }
                Ok(_) => s.hosts[i].error = Some(format!("{host} resolves to no address")),
                Err(e) => s.hosts[i].error = Some(format!("resolving {host}: {e}")),
            }
        }
        self.lock().hosts.iter().any(|h| h.current.is_empty())
    }

    /// Every address recorded apart, by peer index (`None`: not split).
    pub fn labels(&self) -> Vec<Option<SocketAddr>> {
        let s = self.lock();
        s.peers
            .iter()
            .zip(&s.split)
            .map(|(a, split)| split.then_some(*a))
            .collect()
    }

    /// Per class: the split peers its host has now (for the zero rows of a report).
    pub fn class_split_peers(&self) -> Vec<Vec<usize>> {
        let s = self.lock();
        s.class_host
            .iter()
            .map(|&h| s.hosts[h].current.iter().copied().filter(|&p| s.split[p]).collect())
            .collect()
    }

    /// Per split peer that is current or has users: (address, users now, most users
    /// since the previous call).
    pub fn take_users(&self) -> Vec<(SocketAddr, i64, i64)> {
        let s = self.lock();
        let current: Vec<usize> = s.hosts.iter().flat_map(|h| h.current.iter().copied()).collect();
        (0..s.peers.len())
            .filter(|&p| s.split[p])
            .filter_map(|p| {
                let last = self.users[p].load(Ordering::Relaxed);
                let max = self.users_max[p].swap(last, Ordering::Relaxed).max(last);
                (current.contains(&p) || max > 0).then_some((s.peers[p], last, max))
            })
            .collect()
    }

    fn pin(&self, peer: usize) {
        let v = self.users[peer].fetch_add(1, Ordering::Relaxed) + 1;
        self.users_max[peer].fetch_max(v, Ordering::Relaxed);
    }

    fn unpin(&self, peer: usize) {
        self.users[peer].fetch_sub(1, Ordering::Relaxed);
    }
}

impl State {
    /// Replaces host `i`'s addresses; true when they changed.
    fn set_addresses(&mut self, i: usize, addrs: Vec<SocketAddr>, split: bool) -> bool {
        let mut current = Vec::with_capacity(addrs.len());
        for a in addrs {
            let p = match self.peers.iter().position(|p| *p == a) {
                Some(p) => p,
                None if self.peers.len() < MAX_PEERS => {
                    self.peers.push(a);
                    self.split.push(false);
                    self.peers.len() - 1
                }
                None => continue,
            };
            if !current.contains(&p) {
                current.push(p);
            }
        }
        let host = &mut self.hosts[i];
        if current.is_empty() || current == host.current {
            return false;
        }
        host.error = None;
        // Once a host has had several addresses (or is listed), its addresses are
        // recorded apart for the rest of the run.
        let split = split || current.len() > 1 || host.current.iter().any(|&p| self.split[p]);
        if split {
            for &p in &current {
                self.split[p] = true;
            }
        }
        host.current = current;
        true
    }
}

/// Looks the hosts up again every `every` (sooner while one has no address) until
/// `stop` is cancelled.
pub async fn refresh_loop(
    placement: std::sync::Arc<Placement>,
    resolver: std::sync::Arc<dyn Resolve>,
    every: Duration,
    mut empty: bool,
    stop: CancellationToken,
) {
    loop {
        let wait = if empty { every.min(EMPTY_RETRY) } else { every };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        empty = placement.refresh(resolver.as_ref()).await;
    }
}

/// A user's place: re-read when the placement changes, and counted in the per-peer
/// users gauge while held.
pub struct Seat {
    class: usize,
    slot: u64,
    generation: u64,
    pick: Pick,
}

impl Seat {
    /// Seats user `slot` of `class` (its index among this worker's users of the
    /// class) at its pick of `placement`, pinned there.
    pub fn new(placement: &Placement, class: usize, slot: u64) -> Seat {
        let (generation, pick) = placement.pick(class, slot);
        if let Pick::Peer(p, _) = pick {
            placement.pin(p);
        }
        Seat {
            class,
            slot,
            generation,
            pick,
        }
    }

    /// The current pick; true in `.1` when it changed since the last call (the user
    /// must drop a connection to the old address).
    pub fn current(&mut self, placement: &Placement) -> (&Pick, bool) {
        if placement.generation() == self.generation {
            return (&self.pick, false);
        }
        let (generation, pick) = placement.pick(self.class, self.slot);
        self.generation = generation;
        let moved = pick != self.pick;
        if moved {
            if let Pick::Peer(p, _) = self.pick {
                placement.unpin(p);
            }
            if let Pick::Peer(p, _) = pick {
                placement.pin(p);
            }
            self.pick = pick;
        }
        (&self.pick, moved)
    }

    /// The pick as last read (no re-read).
    pub fn pick(&self) -> &Pick {
        &self.pick
    }

    /// Gives the seat up (the user ends).
    pub fn leave(&mut self, placement: &Placement) {
        if let Pick::Peer(p, _) = self.pick {
            placement.unpin(p);
        }
        self.pick = Pick::Unresolved(String::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn users_are_placed_by_their_cluster_wide_index() {
        let p = Placement::new(vec![("api".into(), 80, Some(vec![addr(1), addr(2)]))]);
        // Worker 2 of 2 with 5 users each: its users are 5..9 of the cluster.
        p.set_first_users(&[5]);
        let on = |slot| match p.pick(0, slot).1 {
            Pick::Peer(_, a) => a.port(),
            other => panic!("{other:?}"),
        };
        assert_eq!((0..5).map(on).collect::<Vec<_>>(), [2, 1, 2, 1, 2]);
        // One user per worker: the second worker's user is on the second address.
        p.set_first_users(&[1]);
        assert_eq!(on(0), 2);
    }

    #[test]
    fn a_seat_moves_when_the_placement_changes_and_counts_users_per_peer() {
        let p = Placement::new(vec![("api".into(), 80, Some(vec![addr(1), addr(2)]))]);
        let mut seat = Seat::new(&p, 0, 0);
        assert_eq!(p.take_users(), [(addr(1), 1, 1), (addr(2), 0, 0)]);
        assert!(!seat.current(&p).1);
        p.set_first_users(&[1]);
        let (pick, moved) = seat.current(&p);
        assert!(moved && *pick == Pick::Peer(1, addr(2)));
        assert_eq!(p.take_users(), [(addr(1), 0, 1), (addr(2), 1, 1)]);
        seat.leave(&p);
        assert_eq!(p.take_users(), [(addr(1), 0, 0), (addr(2), 0, 1)]);
    }
}
