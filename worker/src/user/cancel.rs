//! Task cancel: when a hard stop abandons a Dify stream, ask dify-api to stop the
//! task behind it (opt-in `stop_on_cancel`), so the target does not generate on.

use std::sync::Mutex;
use std::time::Duration;

use barrage_common::plan::{SseSpec, Task, TaskKind};

use crate::http::Conn;

use super::context::UserCtx;

/// Asks dify-api to stop the task of an abandoned stream (opt-in `stop_on_cancel`).
/// `live_task`: the Dify task id of the stream in flight; `auth`: the Authorization
/// header its request carried.
pub(super) fn stop_dify_task(ctx: &UserCtx, task: &Task, live_task: &Mutex<Option<String>>, auth: Option<&str>) {
    let TaskKind::Sse(SseSpec { dify: Some(dify), .. }) = &task.kind else {
        return;
    };
    if !dify.stop_on_cancel {
        return;
    }
    let Some(task_id) = live_task.lock().ok().and_then(|mut t| t.take()) else {
        return;
    };
    let path = dify.app.stop_path(&task_id);
    let body = format!(r#"{{"user":"barrage-w{}-u{}"}}"#, ctx.worker_index, ctx.id);
    let mut conn = Conn::new();
    let req = conn.outgoing();
    let built = req.start("POST", &path).and_then(|()| {
        req.header("host", &ctx.target.authority)?;
        req.header("content-type", "application/json")?;
        match auth {
            Some(auth) => req.header("authorization", auth),
            None => Ok(()),
        }
    });
    if built.is_err() {
        return;
    }
    req.finish(body.as_bytes());
    let target = ctx.target.clone();
    let Ok(pinned) = ctx.seat.address() else { return };
    let connect_timeout = ctx.plan.limits.connect_timeout;
    // Detached and bounded: the run is ending and nobody waits for the answer.
    ctx.background.spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), async move {
            if conn.ready(&target, Some(pinned), connect_timeout).await.is_ok() && conn.send().await.is_ok() {
                let _ = conn.drain().await;
            }
        })
        .await;
    });
}
