//! Admission and fencing: who may join the run from a `Hello`, under which
//! connection, and whether it must first be fenced (a worker written off, or one
//! still running another epoch's assignment). The gRPC side is [`super::service`].
//!
//! Read before the registry is locked, the aggregator says whether a fenced session
//! still owes its closing report; the two locks are never held at once here.

use std::time::Instant;

use tracing::info;

use barrage_proto::v1::{self, master_message::Kind as MKind};
use barrage_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use super::registry::{Phase, Registry};
use super::worker::WorkerEntry;
use super::{Cluster, Outbound};

/// The build this master is, as hellos and refusals name it.
pub(super) const BUILD: &str = concat!("barrage ", env!("CARGO_PKG_VERSION"));

/// How a hello relates to what the registry knew of that id.
#[derive(Debug, Clone, Copy)]
struct Return {
    /// Another process under an id whose holder is gone: it replaces it.
    replaced: bool,
    /// A fenced session of this run, back to hand in what it holds and close.
    closing: bool,
    /// Written off and back for a new session.
    returning_lost: bool,
    /// The same session, reconnected.
    resumed: bool,
    /// It must be fenced before it takes part.
    fence: bool,
}

impl Cluster {
    /// Admits a worker: returns its connection id, or the refusal to send.
    pub(super) fn admit(&self, hello: &v1::Hello, tx: Outbound) -> Result<u64, v1::Refuse> {
        check_hello(hello)?;
        // A fenced session of this run that has not delivered its closing report yet
        // (read before the registry is locked: never both locks at once here).
        let unclosed = self
            .aggregator()
            .workers
            .get(&hello.worker_id)
            .is_some_and(|p| p.fenced && !p.final_seen);
        let mut reg = self.registry();
        check_open(&reg, hello, self.epoch)?;
        let replaced = check_id(&reg, hello)?;
        let (conn, ret) = enter(&mut reg, hello, tx, self.epoch, unclosed, replaced);
        drop(reg);
        if ret.replaced {
            self.aggregator()
                .forget(&hello.worker_id, "was replaced by a new process");
        } else if ret.returning_lost || (ret.fence && !ret.closing) {
            // A new session: seqs from 1. What the old one delivered stays counted.
            self.aggregator().forget(&hello.worker_id, "was written off");
        }
        info!(worker = %hello.worker_id, host = %hello.hostname, cores = hello.cpu_cores, resumed = ret.resumed, closing = ret.closing, "worker joined");
        Ok(conn)
    }
}

/// A refusal with this master's protocol version.
fn refuse(reason: v1::RefuseReason, message: String) -> v1::Refuse {
    v1::Refuse {
        message,
        reason: reason as i32,
        master_protocol_version: PROTOCOL_VERSION,
    }
}

/// The hello itself: a protocol this master speaks, a usable id.
fn check_hello(hello: &v1::Hello) -> Result<(), v1::Refuse> {
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol_version) {
        let build = if hello.build_version.is_empty() {
            "unknown build"
        } else {
            &hello.build_version
        };
        return Err(refuse(
            v1::RefuseReason::Version,
            format!(
                "incompatible protocol: worker `{}` ({}) speaks version {}, this master ({}) accepts {}..={}",
                hello.worker_id, build, hello.protocol_version, BUILD, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION
            ),
        ));
    }
    if hello.worker_id.is_empty() || hello.worker_id.len() > 256 {
        return Err(refuse(
            v1::RefuseReason::BadHello,
            "hello without a usable worker id".into(),
        ));
    }
    Ok(())
}

/// While stopping, a worker of this run that reconnects may still deliver its final
/// report; anyone else is too late.
fn check_open(reg: &Registry, hello: &v1::Hello, epoch: u64) -> Result<(), v1::Refuse> {
    let rejoining = reg.workers.get(&hello.worker_id).is_some_and(|w| !w.lost) && hello.resume_epoch == epoch;
    if reg.phase == Phase::Done || (reg.phase == Phase::Stopping && !rejoining) {
        return Err(refuse(
            v1::RefuseReason::Full,
            "the run is over; this master takes no more workers".into(),
        ));
    }
    Ok(())
}

/// Another process under a taken id: refused while the holder is connected (two
/// workers under one id would have their reports' seqs mixed up); once the holder is
/// gone it replaces it, as a pod restarted under a stable name does. True: replaces.
fn check_id(reg: &Registry, hello: &v1::Hello) -> Result<bool, v1::Refuse> {
    let Some(w) = reg.workers.get(&hello.worker_id) else {
        return Ok(false);
    };
    if hello.instance == 0 || w.instance == 0 || hello.instance == w.instance {
        return Ok(false);
    }
    if w.tx.is_some() && !w.lost {
        return Err(refuse(
            v1::RefuseReason::DuplicateId,
            format!(
                "worker id `{}` is taken by a connected worker ({}, pid {}); give each worker its own \
                 --worker-id (BARRAGE_WORKER_ID), or leave it unset",
                hello.worker_id, w.hostname, w.pid
            ),
        ));
    }
    Ok(true)
}

/// Enters an admitted worker under a new connection: fences it when it must be,
/// and notes the membership change. Returns the connection id.
fn enter(
    reg: &mut Registry,
    hello: &v1::Hello,
    tx: Outbound,
    epoch: u64,
    unclosed: bool,
    replaced: bool,
) -> (u64, Return) {
    reg.next_conn += 1;
    let conn = reg.next_conn;
    let elapsed = reg.run_elapsed();
    let running = reg.phase == Phase::Running;
    let next_index = reg.next_index;
    let mut new_index = false;
    let entry = reg.workers.entry(hello.worker_id.clone()).or_insert_with(|| {
        new_index = true;
        WorkerEntry::new(hello, next_index)
    });
    // The same process of a fenced session, back to hand in what it still holds
    // (a stream that broke while it was paused): it stays written off, resends its
    // unacknowledged reports, and is fenced again to close its session.
    let closing =
        entry.lost && unclosed && !replaced && hello.resume_epoch == epoch && hello.instance == entry.instance;
    let returning_lost = entry.lost && !closing;
    let ret = Return {
        replaced,
        closing,
        returning_lost,
        resumed: !new_index && !returning_lost && !replaced && hello.resume_epoch == epoch,
        // Fence a worker we wrote off that still holds a session, and one that still
        // runs an older epoch's assignment.
        fence: closing || (hello.resume_epoch != 0 && (returning_lost || hello.resume_epoch != epoch)),
    };
    connect(entry, hello, tx, conn, ret);
    if ret.fence {
        entry.send(MKind::Fence(fence_for(epoch, closing)));
    }
    let (id, index) = (entry.id.clone(), entry.index);
    if new_index {
        reg.next_index += 1;
    }
    if !ret.resumed && !closing {
        reg.membership += 1;
        if replaced {
            reg.events.push((
                elapsed,
                format!("worker {id} (#{index}) came back as a new process; the old one's unreported data is lost"),
            ));
        } else if running {
            reg.events
                .push((elapsed, format!("worker {id} (#{index}) joined mid-run")));
        }
    }
    (conn, ret)
}

/// Binds the entry to its new connection and process.
fn connect(entry: &mut WorkerEntry, hello: &v1::Hello, tx: Outbound, conn: u64, ret: Return) {
    if ret.replaced {
        // A new process: what the old one was assigned and had not reported is gone,
        // and its report seqs start again at 1.
        entry.lost = false;
        entry.last_assign = None;
        entry.hostname = hello.hostname.clone();
        entry.cores = hello.cpu_cores;
        entry.source_addresses = hello.source_addresses;
        entry.weight = hello.weight;
    }
    entry.pid = hello.pid;
    entry.instance = hello.instance;
    entry.tx = Some(tx);
    entry.conn = conn;
    entry.disconnected_at = None;
    entry.last_seen = Instant::now();
    if ret.returning_lost {
        // It was written off: its old assignment and unreported data are gone.
        entry.lost = false;
        entry.last_assign = None;
    }
}

/// The Fence a returning worker gets: close its session (`closing`), or drop an old
/// assignment.
fn fence_for(epoch: u64, closing: bool) -> v1::Fence {
    v1::Fence {
        epoch,
        reason: if closing {
            "you were declared lost: stop your load, send what you hold, then join again".into()
        } else {
            "you were declared lost or belong to another run: dropping your old assignment".into()
        },
        close: closing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    const EPOCH: u64 = 7;

    fn hello(id: &str, instance: u64, resume_epoch: u64) -> v1::Hello {
        v1::Hello {
            worker_id: id.into(),
            protocol_version: PROTOCOL_VERSION,
            instance,
            resume_epoch,
            cpu_cores: 2,
            ..Default::default()
        }
    }

    fn stream() -> (Outbound, mpsc::Receiver<Result<v1::MasterMessage, tonic::Status>>) {
        mpsc::channel(8)
    }

    #[test]
    fn a_hello_needs_a_known_protocol_and_a_usable_id() {
        assert!(check_hello(&hello("w", 1, 0)).is_ok());
        let mut newer = hello("w", 1, 0);
        newer.protocol_version = PROTOCOL_VERSION + 1;
        let refused = check_hello(&newer).unwrap_err();
        assert_eq!(refused.reason, v1::RefuseReason::Version as i32);
        assert!(refused.message.contains("unknown build"), "{}", refused.message);
        let refused = check_hello(&hello("", 1, 0)).unwrap_err();
        assert_eq!(refused.reason, v1::RefuseReason::BadHello as i32);
        assert!(check_hello(&hello(&"x".repeat(257), 1, 0)).is_err());
    }

    #[test]
    fn joins_resumes_and_replacements_move_the_membership_as_they_should() {
        let mut reg = Registry::new(EPOCH);
        let (tx, _rx) = stream();
        let (conn, ret) = enter(&mut reg, &hello("w", 1, 0), tx, EPOCH, false, false);
        assert_eq!((conn, ret.resumed, ret.fence), (1, false, false));
        assert_eq!((reg.membership(), reg.worker("w").unwrap().index()), (1, 0));

        // The same process back on a new stream: resumed, nothing else moves.
        let (tx, _rx2) = stream();
        let (conn, ret) = enter(&mut reg, &hello("w", 1, EPOCH), tx, EPOCH, false, false);
        assert_eq!((conn, ret.resumed, ret.fence), (2, true, false));
        assert_eq!(reg.membership(), 1);

        // Another process under the id while it is connected: refused...
        let refused = check_id(&reg, &hello("w", 2, 0)).unwrap_err();
        assert_eq!(refused.reason, v1::RefuseReason::DuplicateId as i32);
        // ...and once it is gone, it replaces it, under the same index.
        reg.workers.get_mut("w").unwrap().tx = None;
        assert_eq!(check_id(&reg, &hello("w", 2, 0)), Ok(true));
        let (tx, _rx3) = stream();
        reg.set_phase(Phase::Running);
        let (_, ret) = enter(&mut reg, &hello("w", 2, 0), tx, EPOCH, false, true);
        assert!(ret.replaced && !ret.resumed);
        assert_eq!((reg.membership(), reg.worker("w").unwrap().index()), (2, 0));
        assert!(
            reg.events[0].1.contains("came back as a new process"),
            "{:?}",
            reg.events
        );
    }

    #[test]
    fn a_written_off_worker_is_fenced_when_it_returns() {
        let mut reg = Registry::new(EPOCH);
        let (tx, _rx) = stream();
        enter(&mut reg, &hello("w", 1, 0), tx, EPOCH, false, false);
        reg.workers.get_mut("w").unwrap().lost = true;

        // With its session still open (unclosed): fenced to close it, still lost.
        let (tx, mut rx) = stream();
        let (_, ret) = enter(&mut reg, &hello("w", 1, EPOCH), tx, EPOCH, true, false);
        assert!(ret.closing && ret.fence && !ret.returning_lost);
        assert!(reg.worker("w").unwrap().is_lost());
        let Some(MKind::Fence(f)) = rx.try_recv().unwrap().unwrap().kind else {
            panic!("a Fence")
        };
        assert!(f.close);

        // Once closed, it comes back for a new session: fenced off its old
        // assignment, and in the run again.
        let (tx, mut rx) = stream();
        let (_, ret) = enter(&mut reg, &hello("w", 1, EPOCH), tx, EPOCH, false, false);
        assert!(ret.returning_lost && ret.fence && !ret.closing);
        assert!(!reg.worker("w").unwrap().is_lost());
        let Some(MKind::Fence(f)) = rx.try_recv().unwrap().unwrap().kind else {
            panic!("a Fence")
        };
        assert!(!f.close);
    }

    #[test]
    fn a_finished_run_takes_nobody_and_a_stopping_one_only_its_own() {
        let mut reg = Registry::new(EPOCH);
        let (tx, _rx) = stream();
        enter(&mut reg, &hello("w", 1, 0), tx, EPOCH, false, false);
        reg.set_phase(Phase::Stopping);
        assert!(check_open(&reg, &hello("w", 1, EPOCH), EPOCH).is_ok());
        assert!(check_open(&reg, &hello("new", 1, 0), EPOCH).is_err());
        reg.set_phase(Phase::Done);
        let refused = check_open(&reg, &hello("w", 1, EPOCH), EPOCH).unwrap_err();
        assert_eq!(refused.reason, v1::RefuseReason::Full as i32);
    }
}
