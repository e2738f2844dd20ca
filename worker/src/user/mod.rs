//! A virtual user: one tokio task that walks its class's tasks, owns one keep-alive
//! connection, and records every outcome. A failed request is data (counted by kind),
//! never control flow. Stream verdicts come from [`crate::judge::Judge`].
//!
//! This file holds a user's life (on_start, then tasks: back to back in the closed
//! model, one per arrival ticket in the open model); the rest by concept:
//! [`context`] (what a user is given), [`deck`] (which task next), [`state`] (what it
//! carries between requests), [`render`] (the request from the task's templates),
//! [`exchange`] (one request sent and answered), [`stream`] (an SSE answer followed),
//! [`checks`] (checks and captures on an answer), [`sample`] (what a request produced,
//! recorded) and [`cancel`] (a Dify task stopped when its stream is abandoned).

mod cancel;
mod checks;
mod context;
mod deck;
mod exchange;
#[cfg(test)]
mod fixtures;
mod render;
mod sample;
mod state;
mod stream;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::Rng;
use rand::rngs::SmallRng;

use barrage_common::arrival_trace::TraceLine;
use barrage_common::metrics::FailureKind;
use barrage_common::plan::{Task, TaskOrder, Wait};

use crate::http::Conn;
use crate::recorder::GaugeGuard;

use cancel::stop_dify_task;
pub(crate) use context::{SeatCell, UserCtx};
use deck::Deck;
use exchange::execute;
use state::UserState;

/// A user's own things: its connection, variables, task deck and stream in flight.
struct Me {
    conn: Conn,
    state: UserState,
    deck: Deck,
    /// Sequential classes: the index of the next task.
    next_in_order: usize,
    /// The Dify task id of the stream in flight, for stop_on_cancel.
    live_task: Mutex<Option<String>>,
}

impl Me {
    fn new(ctx: &UserCtx) -> Me {
        Me {
            conn: Conn::new(),
            state: UserState {
                sequence: vec![0; ctx.plan.pools.len()],
                pool_picks: vec![None; ctx.plan.pools.len()],
                ..Default::default()
            },
            deck: Deck::new(&ctx.plan.classes[ctx.class]),
            next_in_order: 0,
            live_task: Mutex::new(None),
        }
    }

    /// on_start: once, in order (log in, create a project); failures are counted, and
    /// the user goes on, as a person would retry inside the app. A graceful stop lets
    /// the request in flight finish (and be counted), as in the task loop; a hard stop
    /// counts it as cancelled. False: the run is stopping.
    async fn start(&mut self, ctx: &UserCtx, rng: &mut SmallRng) -> bool {
        for task in &ctx.plan.classes[ctx.class].on_start {
            if ctx.stopping.is_cancelled() || ctx.cancel.is_cancelled() {
                return false;
            }
            if !self.one(ctx, task, rng, None).await {
                return false;
            }
        }
        true
    }

    /// The next task of the class: by the deck, or in order.
    fn pick<'a>(&mut self, ctx: &'a UserCtx, rng: &mut SmallRng) -> &'a Task {
        let class = &ctx.plan.classes[ctx.class];
        match class.order {
            TaskOrder::Weighted => &class.tasks[self.deck.draw(rng)],
            TaskOrder::Sequential => {
                let at = self.next_in_order % class.tasks.len();
                self.next_in_order = at + 1;
                &class.tasks[at]
            }
        }
    }

    /// Runs one task to its end; a hard stop abandons it, counted as cancelled (false).
    async fn one(&mut self, ctx: &UserCtx, task: &Task, rng: &mut SmallRng, intended: Option<Instant>) -> bool {
        let Me {
            conn, state, live_task, ..
        } = self;
        // The addresses or this user's place changed: move before the request, so
        // its connect is to the new address and it is recorded there.
        if ctx.seat.refresh() {
            conn.reset();
        }
        conn.begin_request();
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                // A request counts once the target can have seen it: cut off before
                // its bytes were written (connecting, or between tasks), it never was
                // one, and counting it would put us above the target's own count.
                // A connection it opened was accepted by the target all the same.
                let (written, opened) = (conn.request_written(), conn.opened_for_request());
                if written || opened {
                    ctx.record(task.endpoint, |s| {
                        s.counts.connections_opened += u64::from(opened);
                        if written {
                            s.counts.requests += 1;
                            s.outcome(FailureKind::Cancelled, "", || "in flight when the run stopped".into());
                        }
                    });
                }
                stop_dify_task(ctx, task, live_task, state.last_auth.as_deref());
                false
            }
            _ = execute(ctx, task, conn, state, rng, live_task, intended) => true,
        }
    }
}

/// A closed-model user: tasks back to back, its class's wait between them.
pub(crate) async fn run(ctx: UserCtx, mut rng: SmallRng) {
    let _alive = GaugeGuard::new(&ctx.recorder.users);
    let class = &ctx.plan.classes[ctx.class];
    let mut me = Me::new(&ctx);
    if !me.start(&ctx, &mut rng).await {
        return;
    }
    loop {
        if ctx.stopping.is_cancelled() || ctx.cancel.is_cancelled() {
            return;
        }
        let started = Instant::now();
        let task = me.pick(&ctx, &mut rng);
        if !me.one(&ctx, task, &mut rng, None).await {
            return;
        }
        me.state.iteration += 1;
        let pause = match class.wait {
            Wait::Constant(d) => d,
            Wait::Between(a, b) => {
                if a == b {
                    a
                } else {
                    rng.random_range(a..=b)
                }
            }
            Wait::Pacing(p) => p.saturating_sub(started.elapsed()),
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = ctx.stopping.cancelled() => return,
                _ = ctx.cancel.cancelled() => return,
            }
        }
    }
}

/// One open-model arrival: a task of the class to run, timed from when it was due.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    /// When the arrival was due on this machine's clock: its latency counts from here.
    pub(crate) intended: Instant,
    /// The class's task to run, by index (a trace line naming it); None: the class picks.
    pub(crate) task: Option<usize>,
    /// The trace line replayed (its inputs fill the templates); None: not a replay.
    pub(crate) line: Option<Arc<TraceLine>>,
}

/// Where a class's arrivals wait for a free virtual user.
pub(crate) struct ArrivalQueue {
    /// The class's tickets, taken by whichever idle user of the class asks first.
    pub(crate) rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Ticket>>,
    /// Virtual users waiting for a ticket and not yet reserved for one: the dispatcher
    /// takes one (decrements) before it sends a ticket, so each ticket has its user.
    pub(crate) idle: AtomicUsize,
    /// Arrivals taken and not finished, worker-wide (the in-flight cap counts these).
    pub(crate) in_flight: Arc<AtomicUsize>,
}

/// An open-model virtual user, created for the ticket `first`: runs one task per
/// ticket, timed from the ticket's due time (so a late start shows in the latency, not
/// hidden by it), no wait between.
pub(crate) async fn serve(ctx: UserCtx, mut rng: SmallRng, queue: Arc<ArrivalQueue>, first: Ticket) {
    let _alive = GaugeGuard::new(&ctx.recorder.users);
    let mut me = Me::new(&ctx);
    if !me.start(&ctx, &mut rng).await {
        queue.in_flight.fetch_sub(1, SeqCst);
        return;
    }
    let mut ticket = first;
    loop {
        let named = ticket.task.and_then(|t| ctx.plan.classes[ctx.class].tasks.get(t));
        let task = match named {
            Some(task) => task,
            None => me.pick(&ctx, &mut rng),
        };
        me.state.trace_line = ticket.line.take();
        let finished = me.one(&ctx, task, &mut rng, Some(ticket.intended)).await;
        if !finished {
            queue.in_flight.fetch_sub(1, SeqCst);
            return;
        }
        me.state.iteration += 1;
        // Idle before out of flight: the user is always counted in one of the two, so
        // the dispatcher never sees neither and creates a user beyond the cap.
        queue.idle.fetch_add(1, SeqCst);
        queue.in_flight.fetch_sub(1, SeqCst);
        let next = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => None,
            _ = ctx.stopping.cancelled() => None,
            t = async { queue.rx.lock().await.recv().await } => t,
        };
        match next {
            // The dispatcher took this user out of `idle` when it sent the ticket.
            Some(t) => ticket = t,
            None => {
                // Leaving; a ticket may have reserved us meanwhile (the run is ending).
                let _ = queue.idle.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
                return;
            }
        }
    }
}
