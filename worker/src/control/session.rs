//! One session: the state of one epoch (one run of one master) on this worker, kept
//! across reconnects: the plan and engine, the stop phase, and the heartbeats and
//! reports it sends on the run clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use barrage_common::plan::RunPlan;
use barrage_proto::v1::{self, worker_message::Kind as WKind};

use crate::recorder::{GaugeInterval, GaugeMark};
use crate::runner::Engine;
use crate::sys::{CpuMeter, LagProbe};

use super::link::Link;
use super::outbox::Outbox;
use super::report::replica_rows;

/// State of one epoch (one run of one master), kept across reconnects.
pub(super) struct Session {
    /// The master's run epoch this session belongs to.
    pub(super) epoch: u64,
    /// The run plan from Welcome.
    pub(super) plan: Arc<RunPlan>,
    /// This worker's index in the cluster (from Welcome).
    pub(super) worker_index: u32,
    /// Heartbeat period the master asked for.
    heartbeat_every: Duration,
    /// Report period the master asked for.
    pub(super) report_every: Duration,
    /// Silence from the master after which the load stops.
    pub(super) master_timeout: Duration,
    /// The load, once the first Assign started it.
    pub(super) engine: Option<Engine>,
    /// Run clock origin on this machine: master's run start.
    pub(super) origin: Option<Instant>,
    /// The target host the master assigned (overrides the plan's).
    pub(super) host: Option<String>,
    /// The highest command seq applied: older or repeated commands are ignored.
    pub(super) applied_cmd: u64,
    /// The seq of the next report.
    next_seq: u64,
    /// Reports sent and not yet acknowledged.
    pub(super) outbox: Outbox,
    /// Run time (µs) where the last report's interval ended: the next one starts there.
    pub(super) last_report_end_us: i64,
    /// When the next periodic report is due (None: before the first Assign).
    pub(super) next_report_at: Option<Instant>,
    /// When the next heartbeat is due.
    next_heartbeat_at: Instant,
    /// Where the users gauge's last report interval ended.
    pub(super) users_mark: GaugeMark,
    /// Where the active-streams gauge's last report interval ended.
    pub(super) streams_mark: GaugeMark,
    /// Running, stopping, or waiting for a final or closing report's acknowledgement.
    pub(super) stop: StopPhase,
}

/// Where a session is in stopping its load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum StopPhase {
    /// Load as assigned.
    Running,
    /// Users are stopping; then a final report goes out.
    Stopping {
        /// The worker exits once the final report is acknowledged.
        exit: bool,
    },
    /// Final report `seq` sent; exit once it is acknowledged (if `exit`).
    Final {
        /// The final report's seq.
        seq: u64,
        /// The worker exits once it is acknowledged.
        exit: bool,
    },
    /// Fenced (declared lost): users aborted, closing report `seq` sent; once it is
    /// acknowledged, or at `until`, the session is dropped and the worker joins again.
    Fenced {
        /// The closing report's seq.
        seq: u64,
        /// When to give up waiting for its acknowledgement.
        until: Instant,
    },
}

impl Session {
    /// A new session for the epoch `Welcome` opened (intervals of 0 take defaults).
    pub(super) fn new(epoch: u64, plan: Arc<RunPlan>, w: &v1::Welcome) -> Self {
        let ms = |v: u64, default: u64| Duration::from_millis(if v == 0 { default } else { v });
        Session {
            epoch,
            plan,
            worker_index: w.worker_index,
            heartbeat_every: ms(w.heartbeat_interval_ms, 1000),
            report_every: ms(w.report_interval_ms, 1000),
            master_timeout: ms(w.master_timeout_ms, 15_000),
            engine: None,
            origin: None,
            host: None,
            applied_cmd: 0,
            next_seq: 1,
            outbox: Outbox::default(),
            last_report_end_us: 0,
            next_report_at: None,
            next_heartbeat_at: Instant::now(),
            users_mark: GaugeMark::default(),
            streams_mark: GaugeMark::default(),
            stop: StopPhase::Running,
        }
    }

    /// What a Hello resumes: this epoch and the last report seq sent.
    pub(super) fn resume(&self) -> (u64, u64) {
        (self.epoch, self.next_seq.saturating_sub(1))
    }

    /// The run time now, in microseconds (0 before the first Assign).
    fn run_us(&self) -> i64 {
        self.origin.map_or(0, |o| o.elapsed().as_micros() as i64)
    }

    /// Every tick: a heartbeat when one is due, and a report at each boundary of the
    /// report grid while the load runs or stops.
    pub(super) fn housekeeping(
        &mut self,
        now: Instant,
        worker_id: &str,
        (cpu, hb_cpu): (&mut CpuMeter, &mut CpuMeter),
        lag: &LagProbe,
        link: &mut Link,
    ) {
        if now >= self.next_heartbeat_at {
            self.next_heartbeat_at = now + self.heartbeat_every;
            let hb = self.heartbeat(hb_cpu, lag);
            if let Link::Up { tx, welcomed: true, .. } = link
                && tx
                    .try_send(v1::WorkerMessage {
                        kind: Some(WKind::Heartbeat(hb)),
                    })
                    .is_err()
            {
                *link = Link::down(now, Duration::from_millis(200));
            }
        }
        if let Some(at) = self.next_report_at
            && now >= at
            && matches!(self.stop, StopPhase::Running | StopPhase::Stopping { .. })
        {
            self.next_report_at = Some(at + self.report_every);
            if self.engine.is_some() {
                let report = self.make_report(worker_id, cpu, lag, false);
                self.outbox.push(report, link);
            }
        }
    }

    /// This worker's state, users and load now (CPU measured since the last one).
    fn heartbeat(&self, hb_cpu: &mut CpuMeter, lag: &LagProbe) -> v1::WorkerHeartbeat {
        let tids = self.engine.as_ref().map(Engine::load_thread_ids).unwrap_or_default();
        let (cpu_percent, rss_bytes) = hb_cpu.sample();
        let (busiest_thread_cpu_percent, load_threads) = hb_cpu.threads.sample(&tids);
        let state = match (self.stop, &self.engine) {
            (StopPhase::Stopping { .. }, _) => v1::WorkerState::Stopping,
            (StopPhase::Final { .. }, _) => v1::WorkerState::Stopped,
            (_, None) => v1::WorkerState::Ready,
            (_, Some(_)) => v1::WorkerState::Running,
        };
        v1::WorkerHeartbeat {
            state: state as i32,
            users: self.engine.as_ref().map_or(0, Engine::users),
            cpu_percent,
            rss_bytes,
            applied_command_seq: self.applied_cmd,
            sched_lag_p99_us: lag.peek_p99_us(),
            busiest_thread_cpu_percent,
            load_threads,
        }
    }

    /// The next report: of the engine's counts if it runs, else an empty one.
    pub(super) fn make_report(
        &mut self,
        worker_id: &str,
        cpu: &mut CpuMeter,
        lag: &LagProbe,
        final_: bool,
    ) -> v1::Report {
        match self.engine.take() {
            Some(engine) => {
                let r = self.make_report_from(&engine, worker_id, cpu, lag, final_);
                self.engine = Some(engine);
                r
            }
            None => self.next_report(worker_id, final_),
        }
    }

    /// The next report, of what `engine` recorded since the last one.
    pub(super) fn make_report_from(
        &mut self,
        engine: &Engine,
        worker_id: &str,
        cpu: &mut CpuMeter,
        lag: &LagProbe,
        final_: bool,
    ) -> v1::Report {
        let rec = engine.recorder();
        let endpoints = replica_rows(&self.plan, engine, rec.take());
        let gauge = |g: GaugeInterval| {
            Some(v1::Gauge {
                last: g.last,
                max: g.max,
                time_avg: g.time_avg,
            })
        };
        let (users, um) = rec.users.interval(self.users_mark);
        let (streams, sm) = rec.active_streams.interval(self.streams_mark);
        self.users_mark = um;
        self.streams_mark = sm;
        let (cpu_percent, rss_bytes) = cpu.sample();
        let (busiest_thread_cpu_percent, load_threads) = cpu.threads.sample(&engine.load_thread_ids());
        let mut report = self.next_report(worker_id, final_);
        report.endpoints = endpoints;
        report.users = gauge(users);
        report.active_streams = gauge(streams);
        report.cpu_percent = cpu_percent;
        report.busiest_thread_cpu_percent = busiest_thread_cpu_percent;
        report.load_threads = load_threads;
        report.rss_bytes = rss_bytes;
        report.sched_lag_p99_us = lag.take_p99_us();
        report.dropped_iterations = rec.dropped.swap(0, std::sync::atomic::Ordering::SeqCst);
        report.last_arrival_due_us = rec.last_due_us.swap(0, std::sync::atomic::Ordering::SeqCst);
        report.peer_users = engine
            .placement()
            .take_users()
            .into_iter()
            .map(|(addr, last, max)| v1::PeerUsers {
                peer: addr.to_string(),
                last,
                max,
            })
            .collect();
        report
    }

    /// A final report with nothing in it (no load ran).
    pub(super) fn make_empty_final(&mut self, worker_id: &str) -> v1::Report {
        self.next_report(worker_id, true)
    }

    /// A report with the next seq covering the time since the previous one.
    fn next_report(&mut self, worker_id: &str, final_: bool) -> v1::Report {
        let end = self.run_us().max(self.last_report_end_us);
        let report = v1::Report {
            worker_id: worker_id.to_string(),
            epoch: self.epoch,
            seq: self.next_seq,
            interval_start_us: self.last_report_end_us,
            interval_end_us: end,
            r#final: final_,
            ..Default::default()
        };
        self.next_seq += 1;
        self.last_report_end_us = end;
        report
    }

    /// Stops the engine's users in the background (the loop keeps heartbeating).
    pub(super) fn spawn_stop(&self, grace: Duration) -> tokio::task::JoinHandle<()> {
        // The engine stays in the session so its last counts can be reported; stopping
        // only needs its tokens.
        let handle = self.engine.as_ref().map(Engine::stop_handle);
        tokio::spawn(async move {
            if let Some(h) = handle {
                h.stop(grace).await;
            }
        })
    }
}
