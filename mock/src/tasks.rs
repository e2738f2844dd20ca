//! Running tasks: every open stream registers its `task_id` in [`Tasks`] for as long as
//! it runs, so the stop routes (`crate::stop`) can signal it to end at once with its
//! stopped ending.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Which stop route may stop a task: the workflow route stops workflow runs, the chat
/// route chat messages of any mode, as dify-api's routes check the app's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    Workflow,
    Chat,
}

/// Shards of the task table: a stream's start and end each lock one shard briefly, so
/// streams starting together rarely wait on each other. `std` mutexes: never held
/// across an `.await`.
const SHARDS: usize = 64;

struct Entry {
    kind: TaskKind,
    user: String,
    stop: CancellationToken,
}

/// The open streams' tasks, by `task_id`.
pub(crate) struct Tasks {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    hasher: RandomState,
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Tasks {
    fn shard(&self, task_id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // `hash % SHARDS` is below `SHARDS`, the length of `shards`.
        let index = (self.hasher.hash_one(task_id) % SHARDS as u64) as usize;
        // A panic while holding a shard leaves the map itself consistent (every
        // operation is a single insert, remove or lookup), so poisoning is ignored.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a running task; it is unregistered when the handle is dropped.
    pub(crate) fn register(self: &Arc<Self>, task_id: &str, kind: TaskKind, user: &str) -> TaskHandle {
        let stop = CancellationToken::new();
        self.shard(task_id).insert(
            task_id.to_owned(),
            Entry {
                kind,
                user: user.to_owned(),
                stop: stop.clone(),
            },
        );
        TaskHandle {
            tasks: self.clone(),
            task_id: task_id.to_owned(),
            stop,
        }
    }

    /// Signals the task to stop if it is running, of `kind`, and `user`'s.
    pub(crate) fn stop(&self, task_id: &str, kind: TaskKind, user: &str) {
        if let Some(entry) = self.shard(task_id).get(task_id)
            && entry.kind == kind
            && entry.user == user
        {
            entry.stop.cancel();
        }
    }
}

/// A running task's registration: tells the stream when a stop was asked for.
pub(crate) struct TaskHandle {
    tasks: Arc<Tasks>,
    task_id: String,
    stop: CancellationToken,
}

impl TaskHandle {
    /// Resolves once a stop has been asked for.
    pub(crate) async fn stopped(&self) {
        self.stop.cancelled().await;
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        self.tasks.shard(&self.task_id).remove(&self.task_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn only_the_right_kind_and_user_stop_a_task() {
        let tasks = Arc::new(Tasks::default());
        let handle = tasks.register("t-1", TaskKind::Workflow, "alice");
        tasks.stop("t-1", TaskKind::Chat, "alice");
        tasks.stop("t-1", TaskKind::Workflow, "bob");
        tasks.stop("t-2", TaskKind::Workflow, "alice");
        let early = tokio::time::timeout(Duration::from_millis(20), handle.stopped()).await;
        assert!(early.is_err(), "stopped by the wrong call");
        tasks.stop("t-1", TaskKind::Workflow, "alice");
        handle.stopped().await;
        drop(handle);
        assert!(tasks.shard("t-1").get("t-1").is_none());
    }
}
