//! Thread-per-core load runtimes: the virtual users run on N single-threaded tokio
//! runtimes, one OS thread each, never on the worker's control runtime.
//!
//! Why not one multi-threaded runtime: with a work-stealing scheduler every wake-up of
//! a user's task may unpark another worker thread (a futex wake and an inter-processor
//! interrupt), and a connection task and its user task may sit on different cores.
//! Profiled at 50 keep-alive users against nginx, those wake-ups cost about a fifth of
//! the worker's CPU per request. A user never leaves the thread it starts on, so its
//! connection task, its timers and its socket readiness stay on one core, the way wrk
//! runs one event loop per thread. Users are dealt round-robin, so threads stay even.
//!
//! The control runtime (gRPC to the master, per-second reports) stays apart: a
//! saturated load thread cannot delay a heartbeat.

use std::io;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The load threads of one engine. Dropping it ends the threads; a user task still
/// alive on one is dropped with its runtime (the engine cancels users before that).
pub struct LoadThreads {
    handles: Vec<Handle>,
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
    /// Each thread's kernel id, set by the thread itself as it starts (Linux), so the
    /// control loop can read its CPU time: saturation is per event loop.
    tids: Vec<Arc<OnceLock<u32>>>,
}

impl LoadThreads {
    /// Starts `n` threads (at least one), named `barrage-load-{i}`.
    pub fn start(n: usize) -> io::Result<LoadThreads> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        let mut tids = Vec::new();
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let ended = stop.clone();
            let tid = Arc::new(OnceLock::new());
            tids.push(tid.clone());
            let thread = std::thread::Builder::new()
                .name(format!("barrage-load-{i}"))
                .spawn(move || {
                    if let Some(id) = crate::sys::current_thread_id() {
                        let _ = tid.set(id);
                    }
                    runtime.block_on(ended.cancelled())
                });
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.cancel();
                    return Err(e);
                }
            }
        }
        Ok(LoadThreads {
            handles,
            stop,
            threads,
            tids,
        })
    }

    /// The kernel ids of the threads that have started (none off Linux).
    pub fn thread_ids(&self) -> Vec<u32> {
        self.tids.iter().filter_map(|t| t.get().copied()).collect()
    }

    /// How many threads there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never true: `start` makes at least one thread.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The runtime of thread `i % len()`.
    pub fn handle(&self, i: usize) -> &Handle {
        &self.handles[i % self.handles.len()]
    }

    /// Every thread's runtime.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for LoadThreads {
    fn drop(&mut self) {
        self.stop.cancel();
        // Not joined: a drop may happen inside the control runtime, where blocking on
        // a thread is not allowed. The threads end on their own once cancelled.
        self.threads.clear();
    }
}

/// The default number of load threads: one per core this process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn tasks_run_on_their_own_thread_and_stop_with_the_pool() {
        let pool = LoadThreads::start(2).expect("threads");
        assert_eq!(pool.len(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..4 {
            let tx = tx.clone();
            pool.handle(i).spawn(async move {
                let name = std::thread::current().name().unwrap_or_default().to_string();
                tx.send((i, name)).expect("send");
            });
        }
        let mut seen: Vec<(usize, String)> = (0..4).map(|_| rx.recv().expect("recv")).collect();
        seen.sort();
        let names: Vec<&str> = seen.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            ["barrage-load-0", "barrage-load-1", "barrage-load-0", "barrage-load-1"]
        );

        // A task still pending when the pool drops is dropped, not leaked or run on.
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let flag = Flag(dropped.clone());
        let handle = pool.handle(0).clone();
        handle.spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        drop(pool);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while dropped.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}
