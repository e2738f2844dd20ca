//! The open model on a worker: fire this worker's arrivals of the cluster schedule on
//! time, each to a free virtual user of its class, or count it dropped when the
//! in-flight cap is reached. Never delayed: an arrival that cannot start now is not
//! started later (that would hide the stall it measures).
//!
//! The arrivals come from the schedule (a rate, spaced by the seeded process), or from
//! a replayed trace: then the master sends this worker its own lines, each fired at
//! its offset with its inputs (and its task, when the line names one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use barrage_common::arrival_process::{ArrivalProcess, ArrivalSequence};
use barrage_common::arrival_schedule::{RateStage, Schedule, Segment};
use barrage_common::arrival_trace::{TraceLine, lines_from_proto};
use barrage_proto::v1;

use crate::factory::Factory;
use crate::user::{self, ArrivalQueue, Ticket};

/// A replayed trace's lines this worker fires: (global index, line), in index order.
pub type TraceShare = Arc<[(u64, Arc<TraceLine>)]>;

/// This worker's part of the arrivals, from the master's `ArrivalShare`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrivalPlan {
    /// The cluster-wide arrival rate over the run clock.
    pub schedule: Schedule,
    /// Which arrivals of the schedule are this worker's (its share of every index).
    pub segment: Segment,
    /// This worker's cap on arrivals in flight; one beyond it is dropped and counted.
    pub max_in_flight: u32,
    /// The global arrival index this plan applies from (a re-split starts mid-run).
    pub from_index: u64,
    /// Arrivals due at or after this (run clock) are not started; None: no end.
    pub until: Option<Duration>,
    /// How the arrivals are spaced (the constant rate, Poisson or gamma gaps).
    pub process: ArrivalProcess,
    /// The random processes' seed, the same on every worker: each draws the cluster's
    /// whole sequence and fires its segment of it.
    pub seed: u64,
    /// Trace replay: this worker's lines (global index, line) in index order, fired
    /// instead of the schedule's arrivals. Shared: the plan is cloned per change.
    pub trace: Option<TraceShare>,
}

impl ArrivalPlan {
    /// The plan in an Assign's `ArrivalShare` (negative rates and durations clamped).
    pub fn from_proto(a: &v1::ArrivalShare) -> ArrivalPlan {
        ArrivalPlan {
            schedule: Schedule {
                start_rate: a.rate_per_s.max(0.0),
                stages: a
                    .stages
                    .iter()
                    .map(|s| RateStage {
                        duration: Duration::from_micros(s.duration_us.max(1) as u64),
                        rate: s.rate_per_s.max(0.0),
                    })
                    .collect(),
            },
            segment: Segment::new(a.segment_start_num, a.segment_end_num, a.segment_den),
            max_in_flight: a.max_in_flight,
            from_index: a.from_index,
            until: (a.until_us > 0).then(|| Duration::from_micros(a.until_us as u64)),
            process: barrage_common::wire::process_from_proto(a.process, a.burstiness),
            seed: a.seed,
            trace: a.replay.then(|| {
                lines_from_proto(&a.trace)
                    .into_iter()
                    .map(|(i, l)| (i, Arc::new(l)))
                    .collect()
            }),
        }
    }

    /// The first arrival at or after index `from` this worker fires: its index, when it
    /// is due (seconds on the run clock), and its trace line when replaying.
    fn next_due(&self, seq: &mut ArrivalSequence, from: u64) -> Option<(u64, f64, Option<Arc<TraceLine>>)> {
        match &self.trace {
            Some(lines) => {
                let at = lines.partition_point(|(i, _)| *i < from);
                lines
                    .get(at)
                    .map(|(i, l)| (*i, l.offset_us as f64 / 1e6, Some(l.clone())))
            }
            None => seq
                .next_due(&self.schedule, &self.segment, from)
                .map(|(i, t)| (i, t, None)),
        }
    }
}

pub(crate) struct Dispatcher {
    factory: Arc<Factory>,
    rx: watch::Receiver<Option<ArrivalPlan>>,
    /// The run clock's zero: the schedule's time 0.
    origin: Instant,
    /// Per class: where its arrivals queue for an idle user, and how to send there.
    queues: Vec<Arc<ArrivalQueue>>,
    senders: Vec<mpsc::UnboundedSender<Ticket>>,
    in_flight: Arc<AtomicUsize>,
    /// Which class each arrival is, cycling: the classes interleaved by weight.
    class_cycle: Vec<usize>,
    /// Per class: users created so far, each one's index among this worker's users of
    /// the class (its replica placement).
    spawned: Vec<u64>,
}

impl Dispatcher {
    pub(crate) fn new(factory: Arc<Factory>, rx: watch::Receiver<Option<ArrivalPlan>>, origin: Instant) -> Self {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (mut queues, mut senders) = (Vec::new(), Vec::new());
        for _ in &factory.plan.classes {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            queues.push(Arc::new(ArrivalQueue {
                rx: tokio::sync::Mutex::new(rx),
                idle: AtomicUsize::new(0),
                in_flight: in_flight.clone(),
            }));
        }
        let weights: Vec<u32> = factory.plan.classes.iter().map(|c| c.weight).collect();
        Dispatcher {
            class_cycle: interleave(&weights),
            spawned: vec![0; queues.len()],
            factory,
            rx,
            origin,
            queues,
            senders,
            in_flight,
        }
    }

    pub(crate) async fn run(mut self) {
        let stopping = self.factory.stopping.clone();
        // The next global arrival index not yet handled here.
        let mut next = 0u64;
        let mut sequence: Option<ArrivalSequence> = None;
        // Trace replay: the lines of the plan in force, for the hand-over to the next.
        let mut lines_in_force: Option<TraceShare> = None;
        'plans: loop {
            let plan = self.rx.borrow_and_update().clone();
            let Some(mut plan) = plan else {
                tokio::select! {
                    changed = self.rx.changed() => if changed.is_err() { return },
                    _ = stopping.cancelled() => return,
                }
                continue;
            };
            match &plan.trace {
                // A re-split hands over at `from_index`: the lines before it are still
                // this worker's under the plan it had (the master splits from a little
                // ahead of its clock, so no line is fired by two workers).
                Some(share) => {
                    let lines = handover(lines_in_force.as_deref(), share, next, plan.from_index);
                    lines_in_force = Some(lines.clone());
                    plan.trace = Some(lines);
                }
                None => {
                    lines_in_force = None;
                    next = next.max(plan.from_index);
                }
            }
            // The cluster's sequence, kept across re-splits (drawing it is sequential);
            // drawn afresh only if the process or its seed changed.
            if sequence.as_ref().map(ArrivalSequence::source) != Some((plan.process, plan.seed)) {
                sequence = None;
            }
            let seq = sequence.get_or_insert_with(|| ArrivalSequence::new(plan.process, plan.seed));
            while let Some((i, due_s, line)) = plan.next_due(seq, next) {
                if plan.until.is_some_and(|u| due_s >= u.as_secs_f64()) {
                    break;
                }
                let due = self.origin + Duration::from_secs_f64(due_s);
                tokio::select! {
                    biased;
                    _ = stopping.cancelled() => return,
                    changed = self.rx.changed() => {
                        if changed.is_err() { return }
                        continue 'plans;
                    }
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
                self.fire(i, due, plan.max_in_flight, line);
                let due_us = (due_s * 1e6).round() as i64;
                self.factory.recorder.last_due_us.fetch_max(due_us, SeqCst);
                next = i + 1;
            }
            // No more arrivals for this plan: wait for another (or the end).
            tokio::select! {
                changed = self.rx.changed() => if changed.is_err() { return },
                _ = stopping.cancelled() => return,
            }
        }
    }

    fn fire(&mut self, i: u64, due: Instant, cap: u32, line: Option<Arc<TraceLine>>) {
        // A trace line naming a task runs it, in the first class that has it; else the
        // class cycle picks the class and the class its task.
        let named = line
            .as_ref()
            .and_then(|l| l.task.as_deref())
            .and_then(|name| self.task_named(name));
        let (class, task) = match named {
            Some((class, task)) => (class, Some(task)),
            None => (self.class_cycle[(i % self.class_cycle.len() as u64) as usize], None),
        };
        let cap = cap as usize;
        if self.in_flight.load(SeqCst) >= cap {
            self.factory.recorder.dropped.fetch_add(1, SeqCst);
            return;
        }
        self.in_flight.fetch_add(1, SeqCst);
        let queue = &self.queues[class];
        let ticket = Ticket {
            intended: due,
            task,
            line,
        };
        // Reserve an idle user for this ticket, atomically: a burst fires many arrivals
        // before any user wakes, and checking `idle > 0` without taking one sent every
        // ticket of the burst to the same idle user (one after the other, their wait
        // in their latency) while the cap allowed users of their own.
        if queue.idle.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
            let _ = self.senders[class].send(ticket);
        } else {
            // No idle user: a new one, with this ticket as its first. A user is always
            // counted idle or in flight (see `user::serve`), so with none idle every
            // user of the class holds a ticket, and users stay within the cap.
            // Open model: placed by its index among this worker's users of the class.
            let slot = self.spawned[class];
            self.spawned[class] += 1;
            let q = queue.clone();
            self.factory
                .spawn(class, slot, move |ctx, rng| user::serve(ctx, rng, q, ticket));
        }
    }
}

/// The lines a worker fires after a re-split at `from`: those of the plan it had
/// (`before`) from `next` up to `from`, then its new `share` (all at `from` or after).
fn handover(before: Option<&[(u64, Arc<TraceLine>)]>, share: &TraceShare, next: u64, from: u64) -> TraceShare {
    let carried = before
        .unwrap_or_default()
        .iter()
        .filter(|(i, _)| (next..from).contains(i));
    if carried.clone().next().is_none() {
        return share.clone();
    }
    carried
        .chain(share.iter().filter(|(i, _)| *i >= from))
        .cloned()
        .collect()
}

impl Dispatcher {
    /// The first class holding a task called `name`, and the task's index there.
    fn task_named(&self, name: &str) -> Option<(usize, usize)> {
        self.factory
            .plan
            .classes
            .iter()
            .enumerate()
            .find_map(|(c, class)| class.tasks.iter().position(|t| t.name == name).map(|t| (c, t)))
    }
}

/// Class indices in proportion to `weights`, spread through one cycle (smooth weighted
/// round robin); all-zero weights: the first class.
fn interleave(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    if total == 0 {
        return vec![0];
    }
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, &w) in current.iter_mut().zip(weights) {
                *c += i64::from(w);
            }
            let best = (0..weights.len())
                .max_by_key(|&k| (current[k], -(k as i64)))
                .unwrap_or(0);
            current[best] -= total;
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_re_split_keeps_the_old_lines_before_its_index_then_takes_the_new() {
        let line = |i: u64| (i, Arc::new(TraceLine::default()));
        let old: TraceShare = [0, 2, 4, 6, 8].into_iter().map(line).collect();
        let new: TraceShare = [5, 7, 9].into_iter().map(line).collect();
        let indices = |s: &TraceShare| s.iter().map(|(i, _)| *i).collect::<Vec<_>>();
        // Fired up to 2 (next = 3); the split is at 5: 4 is still ours, then 5, 7, 9.
        assert_eq!(indices(&handover(Some(&old), &new, 3, 5)), [4, 5, 7, 9]);
        // A worker joining has nothing before: its share only.
        assert_eq!(indices(&handover(None, &new, 0, 5)), [5, 7, 9]);
        // The same plan again (from 0) is itself; the dispatcher goes on from `next`.
        assert_eq!(indices(&handover(Some(&old), &old, 3, 0)), [0, 2, 4, 6, 8]);
    }

    #[test]
    fn classes_interleave_by_weight() {
        let c = interleave(&[3, 1]);
        assert_eq!(c.len(), 4);
        assert_eq!(c.iter().filter(|&&k| k == 0).count(), 3);
        assert_eq!(interleave(&[0, 0]), [0]);
        assert_eq!(interleave(&[0, 2]), [1, 1]);
        let c = interleave(&[100, 10]);
        assert_eq!(c.iter().filter(|&&k| k == 1).count(), 10);
    }
}
