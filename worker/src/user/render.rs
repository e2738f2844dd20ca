//! Request rendering: a task's templates (path, headers, body) filled with this
//! user's values and written into the connection's outgoing request.

use std::fmt::Write;

use rand::Rng;
use rand::rngs::SmallRng;

use barrage_common::plan::{ConnectionPolicy, PoolMode, Task};

use crate::http::{Failure, Outgoing};

use super::context::UserCtx;
use super::state::UserState;

/// Renders `task` for this user into `req`: request line, headers (ours, then the
/// task's), and the body with its content type. Fails as `request/build` when a
/// rendered value cannot go on the wire.
pub(super) fn render_request(
    ctx: &UserCtx,
    task: &Task,
    state: &mut UserState,
    rng: &mut SmallRng,
    req: &mut Outgoing,
) -> Result<(), Failure> {
    // CSV pools: the row each group (file) gave this request, and its sequential cursor.
    state.group_rows.iter_mut().for_each(|r| *r = None);
    state.pool_picks.iter_mut().for_each(|r| *r = None);
    let UserState {
        iteration,
        conversation_id,
        sequence,
        last_auth,
        vars,
        group_rows,
        pool_picks,
        group_sequence,
        value_buf,
        body_buf,
        trace_line,
        ..
    } = state;
    let mut values = Values {
        ctx,
        iteration: *iteration,
        conversation: conversation_id,
        captured: vars,
        inputs: trace_line.as_deref().map_or(&[], |l| l.inputs.as_slice()),
        sequence,
        group_rows,
        group_sequence,
        pool_picks,
        rng,
    };
    let mut var = |name: &str, out: &mut String| values.write(name, out);
    let mut path = String::new();
    task.path.render_into(&mut path, &mut var);
    req.start(task.method.as_str(), &path)?;
    // A task's own Host (virtual hosts behind an ingress) or User-Agent replaces ours.
    if !task.headers.iter().any(|(n, _)| n == "host") {
        req.header("host", &ctx.target.authority)?;
    }
    if !task.headers.iter().any(|(n, _)| n == "user-agent") {
        req.header("user-agent", concat!("barrage/", env!("CARGO_PKG_VERSION")))?;
    }
    if task.connection == ConnectionPolicy::PerRequest {
        req.header("connection", "close")?;
    }
    let (value, body) = (value_buf, body_buf);
    let mut sent_auth = false;
    for (name, template) in &task.headers {
        value.clear();
        template.render_into(value, &mut var);
        req.header(name, value)?;
        if name == "authorization" {
            sent_auth = true;
            // Kept for a Dify task stop; copied only when it changes.
            if last_auth.as_deref() != Some(value.as_str()) {
                *last_auth = Some(value.clone());
            }
        }
    }
    if !sent_auth {
        *last_auth = None;
    }
    body.clear();
    if let Some(t) = &task.body {
        if task.json_body {
            t.render_json_into(body, &mut var);
        } else {
            t.render_into(body, &mut var);
        }
        if !task.headers.iter().any(|(n, _)| n == "content-type") {
            let json = body.trim_start().starts_with(['{', '[']);
            req.header("content-type", if json { "application/json" } else { "text/plain" })?;
        }
    }
    req.finish(body.as_bytes());
    Ok(())
}

/// What a template's `{{name}}` renders to in one request: the built-in variables,
/// a replayed trace line's inputs, captured values, then pools (an entry taken once per request and name).
struct Values<'a> {
    ctx: &'a UserCtx,
    iteration: u64,
    conversation: &'a str,
    captured: &'a [(String, String)],
    /// A replayed trace line's inputs (empty otherwise): they win over captures and
    /// pools of the same name, as the recorded request's own values.
    inputs: &'a [(String, String)],
    /// Next index per sequential pool.
    sequence: &'a mut [usize],
    /// CSV pools: the row each group gave this request.
    group_rows: &'a mut Vec<Option<usize>>,
    /// CSV pools: each group's sequential cursor.
    group_sequence: &'a mut Vec<usize>,
    /// Plain pools: the entry each one gave this request.
    pool_picks: &'a mut [Option<usize>],
    rng: &'a mut SmallRng,
}

impl Values<'_> {
    /// Appends the value of `name` to `out` (nothing for an unknown name).
    fn write(&mut self, name: &str, out: &mut String) {
        let ctx = self.ctx;
        match name {
            "user" => {
                let _ = write!(out, "barrage-w{}-u{}", ctx.worker_index, ctx.id);
            }
            "iteration" => {
                let _ = write!(out, "{}", self.iteration);
            }
            "worker" => {
                let _ = write!(out, "{}", ctx.worker_index);
            }
            "uuid" => write_uuid_v4(out, self.rng.random()),
            "conversation_id" => out.push_str(self.conversation),
            name if self.inputs.iter().any(|(n, _)| n == name) => {
                if let Some((_, v)) = self.inputs.iter().find(|(n, _)| n == name) {
                    out.push_str(v);
                }
            }
            name if self.captured.iter().any(|(n, _)| n == name) => {
                if let Some((_, v)) = self.captured.iter().find(|(n, _)| n == name) {
                    out.push_str(v);
                }
            }
            pool => self.write_pool(pool, out),
        }
    }

    /// Appends this request's entry of pool `pool`, taking it on first use.
    fn write_pool(&mut self, pool: &str, out: &mut String) {
        let ctx = self.ctx;
        let Some((i, (_, p))) = ctx.plan.pools.iter().enumerate().find(|(_, (n, _))| n.as_str() == pool) else {
            return;
        };
        if p.entries.is_empty() {
            return;
        }
        let n = p.entries.len();
        let rng = &mut *self.rng;
        let mut pick = |cursor: &mut usize| match p.mode {
            PoolMode::Random => rng.random_range(0..n),
            PoolMode::PerUser => (ctx.worker_index as usize).wrapping_mul(7919).wrapping_add(ctx.id) % n,
            PoolMode::Sequential => {
                let at = (*cursor + ctx.id) % n;
                *cursor += 1;
                at
            }
        };
        let at = match p.row_group.map(|g| g as usize) {
            None => *self.pool_picks[i].get_or_insert_with(|| pick(&mut self.sequence[i])),
            Some(g) => {
                if self.group_rows.len() <= g {
                    self.group_rows.resize(g + 1, None);
                    self.group_sequence.resize(g + 1, 0);
                }
                *self.group_rows[g].get_or_insert_with(|| pick(&mut self.group_sequence[g]))
            }
        };
        out.push_str(&p.entries[at.min(n - 1)]);
    }
}

/// Writes `bits` as a random (version 4, RFC 9562) UUID: ids for objects a request creates.
fn write_uuid_v4(out: &mut String, bits: u128) {
    let v = (bits & !(0xFu128 << 76) & !(0x3u128 << 62)) | (0x4u128 << 76) | (0x2u128 << 62);
    let _ = write!(
        out,
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        v >> 96,
        (v >> 80) & 0xFFFF,
        (v >> 64) & 0xFFFF,
        (v >> 48) & 0xFFFF,
        v & 0xFFFF_FFFF_FFFF
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_follow_their_bits() {
        for bits in [0u128, u128::MAX, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef] {
            let mut out = String::new();
            write_uuid_v4(&mut out, bits);
            let groups: Vec<&str> = out.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{out}"
            );
            assert!(groups[2].starts_with('4'), "{out}");
            assert!("89ab".contains(&groups[3][..1]), "{out}");
        }
        let mut out = String::new();
        write_uuid_v4(&mut out, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(out, "01234567-89ab-4def-8123-456789abcdef");
    }
}
