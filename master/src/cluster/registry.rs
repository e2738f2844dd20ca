//! The registry: every worker of the run as the master knows it, the run's phase, and
//! the commands the master sends them. It owns `command_seq`, so every `Assign` and
//! `Stop` is numbered here and nowhere else, and it builds those messages (and the
//! `Fence` of a worker written off) from what the controller asks for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use barrage_common::arrival_process::ArrivalSequence;
use barrage_proto::v1::{self, master_message::Kind as MKind};

use super::worker::WorkerEntry;
use crate::partition::{apportion, class_totals, partition_totals};

/// Where the run is: the controller moves it forward; admission reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for workers (or for a start from the web UI).
    Waiting,
    /// The load runs.
    Running,
    /// Stop sent; final reports are being collected.
    Stopping,
    /// Over: no worker is admitted any more.
    Done,
}

/// A worker just written off by [`Registry::write_off_silent`].
#[derive(Debug)]
pub(super) struct WrittenOff {
    pub(super) id: String,
    /// How long it had been silent.
    pub(super) silent: Duration,
    /// It had been given load (its missing closing report then means missing data).
    pub(super) had_load: bool,
}

/// What the controller wants running, for [`Registry::assign`] to split across the
/// active workers.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    /// Users cluster-wide (0 in the open model).
    pub users: u32,
    /// Users started per second cluster-wide.
    pub spawn_rate: f64,
    /// The open model: arrivals on a schedule instead of users.
    pub arrival: Option<&'a barrage_common::scenario::Arrival>,
    /// Class names, weights and fixed counts from the plan, in plan order.
    pub classes: &'a [(String, u32, Option<u32>)],
    /// Host override sent with every assignment ("" = the scenario's).
    pub host: &'a str,
    /// The run's length, which ends each worker's arrivals (None = until stopped).
    pub run_time: Option<Duration>,
}

/// The workers of the run, the run's phase and clock, and the commands sent to them.
#[derive(Debug)]
pub struct Registry {
    /// The run's epoch, stamped on every command.
    epoch: u64,
    pub(super) workers: BTreeMap<String, WorkerEntry>,
    pub(super) phase: Phase,
    pub(super) next_index: u32,
    /// The number of the last Assign or Stop: workers apply a command once, in order.
    command_seq: u64,
    /// Bumped on every join, loss or return: the controller rebalances when it moves.
    pub(super) membership: u64,
    pub(super) run_start: Option<Instant>,
    pub(super) next_conn: u64,
    /// The Stop of this run once sent, resent to a worker that reconnects after it.
    stop: Option<v1::Stop>,
    /// The load the workers were last given: (users, spawn rate) or (0, arrivals/s).
    target: Option<(u32, f64)>,
    /// Events worth a line in the final report (joins mid-run, losses).
    pub(super) events: Vec<(Duration, String)>,
}

impl Registry {
    /// An empty registry for the run of `epoch`.
    pub(super) fn new(epoch: u64) -> Registry {
        Registry {
            epoch,
            workers: BTreeMap::new(),
            phase: Phase::Waiting,
            next_index: 0,
            command_seq: 0,
            membership: 0,
            run_start: None,
            next_conn: 0,
            stop: None,
            target: None,
            events: Vec::new(),
        }
    }

    /// The worker under this id, if it ever joined.
    pub fn worker(&self, id: &str) -> Option<&WorkerEntry> {
        self.workers.get(id)
    }

    /// Every worker that ever joined, by id.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerEntry> {
        self.workers.values()
    }

    /// How many workers ever joined.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// No worker ever joined.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Workers whose stream is open now.
    pub fn connected(&self) -> usize {
        self.workers.values().filter(|w| w.tx.is_some()).count()
    }

    /// Every worker was written off (also true with none).
    pub fn all_lost(&self) -> bool {
        self.workers.values().all(|w| w.lost)
    }

    /// The ids of the workers not written off.
    pub fn active_ids(&self) -> Vec<String> {
        self.workers
            .values()
            .filter(|w| !w.lost)
            .map(|w| w.id.clone())
            .collect()
    }

    /// The workers written off but heard from within `within`: they may still hand in
    /// their closing report.
    pub fn lost_but_talking(&self, within: Duration) -> Vec<String> {
        self.workers
            .values()
            .filter(|w| w.lost && w.last_seen.elapsed() < within)
            .map(|w| w.id.clone())
            .collect()
    }

    /// Where the run is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Moves the run to `phase`.
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Starts the run clock at `at`: the run is on.
    pub fn start_run(&mut self, at: Instant) {
        self.phase = Phase::Running;
        self.run_start = Some(at);
    }

    /// Run time so far (zero before the start).
    pub fn run_elapsed(&self) -> Duration {
        self.run_start.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Changes on every join, loss or return: the controller rebalances when it moves.
    pub fn membership(&self) -> u64 {
        self.membership
    }

    /// The load the workers were last given: (users, spawn rate), or (0, arrivals/s)
    /// in the open model; None before the run.
    pub fn target(&self) -> Option<(u32, f64)> {
        self.target
    }

    /// Users running now: the sum of each live worker's last heartbeat.
    pub fn live_users(&self) -> u32 {
        self.workers
            .values()
            .filter(|w| !w.lost)
            .map(|w| w.heartbeat.users)
            .sum()
    }

    /// Notes a cluster event for the report, at the current run time.
    pub fn note_event(&mut self, what: String) {
        let at = self.run_elapsed();
        self.events.push((at, what));
    }

    /// Notes a cluster event for the report, at run time `at`.
    pub fn note_event_at(&mut self, at: Duration, what: String) {
        self.events.push((at, what));
    }

    /// The workers and events as the final report shows them.
    pub fn roster(&self) -> crate::report::Roster {
        crate::report::Roster {
            workers: self
                .workers
                .values()
                .map(|w| crate::report::RosterWorker {
                    id: w.id.clone(),
                    index: w.index,
                    hostname: w.hostname.clone(),
                    cores: w.cores,
                    source_addresses: w.source_addresses,
                    lost: w.lost,
                })
                .collect(),
            events: self.events.clone(),
        }
    }

    /// One heartbeat to every connected worker, stamped with the run time.
    pub fn heartbeat(&mut self, elapsed: Duration) {
        let hb = v1::MasterHeartbeat {
            epoch: self.epoch,
            run_elapsed_us: micros(elapsed),
        };
        for w in self.workers.values_mut().filter(|w| w.tx.is_some()) {
            w.send(MKind::Heartbeat(hb));
        }
    }

    /// Sends every active worker its absolute targets, `targets` split by capacity
    /// (nothing when none is left), under a new command seq.
    pub fn assign(&mut self, targets: &Targets<'_>) {
        // The run's first targets: a replayed trace starts from its first line, even
        // one due at 0 that the clock has passed by the time this is sent.
        let first = self.target.is_none();
        self.target = Some(match targets.arrival {
            None => (targets.users, targets.spawn_rate),
            Some(a) => (0, a.schedule.rate_at(self.run_elapsed().as_secs_f64())),
        });
        let elapsed = self.run_elapsed();
        let ids = self.active_ids();
        if ids.is_empty() {
            return;
        }
        let weights: Vec<u32> = ids.iter().map(|id| self.workers[id].capacity()).collect();
        let arrival_shares = targets
            .arrival
            .map(|a| arrival_shares(a, &weights, elapsed, targets.run_time, first));
        let class_weights: Vec<u32> = targets.classes.iter().map(|(_, w, _)| *w).collect();
        let fixed: Vec<Option<u32>> = targets.classes.iter().map(|(_, _, f)| *f).collect();
        let totals = class_totals(targets.users, &class_weights, &fixed);
        let p = partition_totals(&totals, targets.spawn_rate, &weights);
        self.command_seq += 1;
        let seq = self.command_seq;
        // Per class, the cluster-wide index of each worker's first user: the users of the
        // workers before it. Workers place users on replicas by it, so the spread over a
        // host's addresses is even whatever the number of workers.
        let mut first_user = vec![0u64; targets.classes.len()];
        for (i, id) in ids.iter().enumerate() {
            let firsts = first_user.clone();
            for (f, &n) in first_user.iter_mut().zip(&p.matrix[i]) {
                *f += u64::from(n);
            }
            let assign = v1::Assign {
                epoch: self.epoch,
                command_seq: seq,
                classes: targets
                    .classes
                    .iter()
                    .zip(&p.matrix[i])
                    .zip(&firsts)
                    .map(|(((name, _, _), &users), &first_user)| v1::ClassTarget {
                        class_name: name.clone(),
                        users,
                        first_user,
                    })
                    .collect(),
                spawn_rate: p.spawn_rates[i],
                run_elapsed_us: micros(elapsed),
                arrival: arrival_shares.as_ref().map(|s| s[i].clone()),
                host: targets.host.to_string(),
            };
            if let Some(w) = self.workers.get_mut(id) {
                w.last_assign = Some(assign.clone());
                w.send(MKind::Assign(assign));
            }
        }
        info!(workers = ids.len(), seq, "targets sent");
    }

    /// Stops the run: every active worker gets a Stop (kept for those that reconnect)
    /// giving its users `stop_timeout` to finish. Returns the ids it went to.
    pub fn stop(&mut self, stop_timeout: Duration, reason: &str) -> Vec<String> {
        self.phase = Phase::Stopping;
        self.command_seq += 1;
        let stop = v1::Stop {
            epoch: self.epoch,
            command_seq: self.command_seq,
            stop_timeout_ms: stop_timeout.as_millis() as u64,
            reason: reason.to_string(),
            exit: true,
        };
        self.stop = Some(stop.clone());
        let mut ids = Vec::new();
        for w in self.workers.values_mut().filter(|w| !w.lost) {
            w.send(MKind::Stop(stop.clone()));
            ids.push(w.id.clone());
        }
        ids
    }

    /// A reconnecting worker gets its current assignment again (it ignores it if
    /// already applied: same command seq), and the Stop once sent.
    pub(super) fn resend_commands(&mut self, id: &str) {
        let stop = self.stop.clone();
        if let Some(w) = self.workers.get_mut(id) {
            if let Some(a) = w.last_assign.clone() {
                w.send(MKind::Assign(a));
            }
            if let Some(stop) = stop {
                w.send(MKind::Stop(stop));
            }
        }
    }

    /// Writes off the workers silent or disconnected for `timeout` or longer: each is
    /// fenced (on a stream still open, a paused process, Fence makes it stop its load
    /// and hand in what it holds; nothing it sends after that counts) and its share
    /// goes to the others at the next [`Registry::assign`].
    pub(super) fn write_off_silent(&mut self, timeout: Duration) -> Vec<WrittenOff> {
        let epoch = self.epoch;
        let mut lost = Vec::new();
        for w in self.workers.values_mut().filter(|w| !w.lost) {
            let silent = w.last_seen.elapsed();
            let gone = w.disconnected_at.is_some_and(|d| d.elapsed() >= timeout);
            if gone || silent >= timeout {
                w.send(MKind::Fence(v1::Fence {
                    epoch,
                    reason: format!("declared lost after {silent:.1?} of silence"),
                    close: true,
                }));
                let had_load = w.last_assign.is_some() || w.heartbeat.users > 0;
                w.lost = true;
                w.tx = None;
                w.last_assign = None;
                lost.push(WrittenOff {
                    id: w.id.clone(),
                    silent,
                    had_load,
                });
            }
        }
        lost
    }

    /// Notes the losses [`Registry::write_off_silent`] made, each with the run time
    /// its figures cover (`covered`, seconds), and moves the membership.
    pub(super) fn note_losses(&mut self, lost: &[WrittenOff], covered: &[f64]) {
        let elapsed = self.run_elapsed();
        for (w, covered) in lost.iter().zip(covered) {
            let (id, silent) = (&w.id, w.silent);
            warn!(worker = %id, silent = ?silent, "worker lost");
            self.events.push((
                elapsed,
                format!(
                    "worker {id} lost after {silent:.1?} of silence and fenced: its figures count up to {covered:.1}s of the run (its last merged report), plus what it hands in when it closes its session"
                ),
            ));
            self.membership += 1;
        }
    }

    /// Notes that `worker` was heard from (any message).
    pub(super) fn touch(&mut self, worker: &str) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.last_seen = Instant::now();
        }
    }

    /// Keeps a worker's latest heartbeat (its users).
    pub(super) fn on_heartbeat(&mut self, worker: &str, hb: v1::WorkerHeartbeat) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.heartbeat = hb;
        }
    }

    /// Marks a worker disconnected if `conn` is still its current connection.
    pub(super) fn on_disconnect(&mut self, worker: &str, conn: u64) {
        if let Some(w) = self.workers.get_mut(worker)
            && w.conn == conn
        {
            w.tx = None;
            w.disconnected_at = Some(Instant::now());
            info!(worker, "worker disconnected");
        }
    }

    /// Closes every worker stream (the run is over).
    pub fn close_streams(&mut self) {
        for w in self.workers.values_mut() {
            w.tx = None;
        }
    }
}

/// Open model: each worker its segment of the arrivals and its share of the cap,
/// from the arrival due now on (a re-split after a join or a loss); `first`: the
/// run's first split.
fn arrival_shares(
    a: &barrage_common::scenario::Arrival,
    weights: &[u32],
    elapsed: Duration,
    run_time: Option<Duration>,
    first: bool,
) -> Vec<v1::ArrivalShare> {
    // The first arrival not yet due, of the cluster's sequence (the integral rounded
    // up, for the constant rate).
    let seed = a.seed.unwrap_or(0);
    let from_index = match &a.trace {
        // A trace: from its start, then (a re-split) from a little ahead: the workers
        // fire their old lines up to there (the hand-over, see `HANDOVER`).
        Some(_) if first => 0,
        Some(t) => t.count_before(elapsed + barrage_common::arrival_trace::HANDOVER),
        None => ArrivalSequence::new(a.process, seed).count_before(a.schedule.cumulative(elapsed.as_secs_f64())),
    };
    let (process, burstiness) = barrage_common::wire::process_to_proto(a.process);
    let caps = apportion(a.max_in_flight, weights);
    barrage_common::arrival_schedule::Segment::split(weights)
        .into_iter()
        .zip(caps)
        .map(|(seg, cap)| v1::ArrivalShare {
            segment_start_num: seg.start,
            segment_end_num: seg.end,
            segment_den: seg.den,
            rate_per_s: a.schedule.start_rate,
            max_in_flight: cap.max(1),
            stages: a
                .schedule
                .stages
                .iter()
                .map(|s| v1::RateStage {
                    duration_us: micros(s.duration),
                    rate_per_s: s.rate,
                })
                .collect(),
            from_index,
            until_us: run_time.map_or(0, micros),
            process: process.into(),
            burstiness,
            seed,
            replay: a.trace.is_some(),
            // Only this worker's lines, from the arrival due now on.
            trace: a.trace.as_ref().map_or_else(Vec::new, |t| {
                t.share(&seg, from_index)
                    .map(|(i, l)| barrage_common::arrival_trace::line_to_proto(i, l))
                    .collect()
            }),
        })
        .collect()
}

/// A duration in whole µs, as the protocol carries run times.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    type Inbox = mpsc::Receiver<Result<v1::MasterMessage, tonic::Status>>;

    /// A connected worker of `cores` cores in `reg`; its inbox.
    fn join(reg: &mut Registry, id: &str, cores: u32) -> Inbox {
        let hello = v1::Hello {
            worker_id: id.into(),
            cpu_cores: cores,
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel(8);
        let mut w = WorkerEntry::new(&hello, reg.next_index);
        w.tx = Some(tx);
        reg.next_index += 1;
        reg.workers.insert(id.into(), w);
        rx
    }

    fn next(inbox: &mut Inbox) -> MKind {
        inbox.try_recv().unwrap().unwrap().kind.unwrap()
    }

    #[test]
    fn assign_splits_by_capacity_under_one_command_seq_and_stop_takes_the_next() {
        let mut reg = Registry::new(7);
        let mut a = join(&mut reg, "a", 1);
        let mut b = join(&mut reg, "b", 3);
        let classes = vec![("chat".to_string(), 1, None)];
        reg.assign(&Targets {
            users: 8,
            spawn_rate: 4.0,
            arrival: None,
            classes: &classes,
            host: "",
            run_time: None,
        });
        let (MKind::Assign(x), MKind::Assign(y)) = (next(&mut a), next(&mut b)) else {
            panic!("an Assign each")
        };
        assert_eq!((x.epoch, x.command_seq, y.command_seq), (7, 1, 1));
        assert_eq!((x.classes[0].users, y.classes[0].users), (2, 6), "1:3 by cores");
        assert_eq!((x.classes[0].first_user, y.classes[0].first_user), (0, 2));
        assert!((x.spawn_rate + y.spawn_rate - 4.0).abs() < 1e-9);
        assert_eq!(reg.target(), Some((8, 4.0)));
        assert_eq!(reg.worker("b").unwrap().last_assign(), Some(&y));

        assert_eq!(reg.stop(Duration::from_secs(3), "done"), ["a", "b"]);
        assert_eq!(reg.phase(), Phase::Stopping);
        let MKind::Stop(stop) = next(&mut a) else {
            panic!("a Stop")
        };
        assert_eq!(
            (stop.command_seq, stop.stop_timeout_ms, stop.reason.as_str()),
            (2, 3000, "done")
        );
        // A reconnecting worker gets its assignment and the stop again, verbatim.
        let _ = next(&mut b);
        reg.resend_commands("b");
        assert!(matches!(next(&mut b), MKind::Assign(again) if again == y));
        assert!(matches!(next(&mut b), MKind::Stop(again) if again == stop));
    }

    #[test]
    fn a_silent_worker_is_fenced_written_off_and_its_loss_noted() {
        let mut reg = Registry::new(7);
        let mut a = join(&mut reg, "a", 1);
        let _b = join(&mut reg, "b", 1);
        reg.workers.get_mut("a").unwrap().last_seen = Instant::now() - Duration::from_secs(10);
        let lost = reg.write_off_silent(Duration::from_secs(5));
        assert_eq!(lost.len(), 1);
        assert_eq!((lost[0].id.as_str(), lost[0].had_load), ("a", false));
        let MKind::Fence(fence) = next(&mut a) else {
            panic!("a Fence")
        };
        assert!(fence.close && fence.epoch == 7, "{fence:?}");
        let w = reg.worker("a").unwrap();
        assert!(w.is_lost() && !w.is_connected());
        let before = reg.membership();
        reg.note_losses(&lost, &[1.5]);
        assert_eq!(reg.membership(), before + 1);
        assert!(reg.events[0].1.contains("worker a lost") && reg.events[0].1.contains("up to 1.5s"));
        assert_eq!(reg.active_ids(), ["b"]);
        assert!(!reg.all_lost());
        assert!(reg.write_off_silent(Duration::from_secs(5)).is_empty(), "once");
    }
}
