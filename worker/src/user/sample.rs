//! What one request produced ([`Sample`]), and how it is recorded: one update of the
//! user's recorder shard per request, target-supplied text redacted first.

use std::time::Duration;

use barrage_common::goodput::{GapTally, RequestTimes};
use barrage_common::metrics::{EndpointStats, FailureKind, Metric};
use barrage_common::plan::Task;

use crate::http::Failure;

use super::context::UserCtx;

/// What one request produced, recorded in one shard update at the end.
#[derive(Default)]
pub(super) struct Sample {
    /// The request opened a new connection (counted as `connections_opened`).
    pub(super) connected: bool,
    /// Sent a second time on a fresh connection (see [`crate::http::Conn::may_retry`]).
    pub(super) retried: bool,
    /// From the start to the response head.
    pub(super) time_to_headers: Option<Duration>,
    /// From the start to the first event that is not a ping.
    pub(super) ttfe: Option<Duration>,
    /// From the start to the first event carrying text.
    pub(super) ttft: Option<Duration>,
    /// From the response head to the verdict (or the end of the body).
    pub(super) stream: Option<Duration>,
    /// The server's own elapsed time for the request (Dify's `elapsed_time`), seconds.
    pub(super) server_elapsed: Option<f64>,
    /// Dify: from the response head to `workflow_started` (queueing before the run).
    pub(super) queueing: Option<Duration>,
    /// Dify: when `workflow_finished` came, from the start.
    pub(super) workflow_finished_at: Option<Duration>,
    /// Dify: from `workflow_finished` to the end of the body, when the end was seen.
    pub(super) stream_tail: Option<Duration>,
    /// Body bytes read, drained bytes included.
    pub(super) bytes: u64,
    /// Tokens the answer reported using (Dify's `total_tokens`).
    pub(super) tokens: u64,
    /// A declared non-2xx status (`expect = [200, 429]`) that answered.
    pub(super) expected_status: Option<u16>,
    /// When the verdict was in (the terminal event), if before the body ended.
    pub(super) end: Option<Duration>,
    /// The body was not read to its end: the connection cannot be reused.
    pub(super) drop_conn: bool,
    /// The Dify conversation the answer belongs to.
    pub(super) conversation_id: Option<String>,
    /// Values captured from this response.
    pub(super) captures: Vec<(String, String)>,
    /// The chunk gaps counted against the task's `chunk_gap_p95` objective (goodput).
    pub(super) gaps: GapTally,
}

/// Records one finished request of `task` into the user's shard: its counters and
/// timings, and its outcome (`result`) taken `elapsed` from its start.
pub(super) fn record(ctx: &UserCtx, task: &Task, sample: &Sample, result: Result<(), Failure>, elapsed: Duration) {
    let good = result.is_ok() && is_good(task, sample, elapsed);
    ctx.record(task.endpoint, |s: &mut EndpointStats| {
        s.counts.requests += 1;
        s.counts.good += u64::from(good);
        s.counts.bytes_received += sample.bytes;
        s.counts.total_tokens += sample.tokens;
        if sample.connected {
            s.counts.connections_opened += 1;
        }
        if sample.retried {
            s.counts.retries += 1;
        }
        s.record(Metric::ResponseTime, micros(elapsed));
        for (metric, value) in [
            (Metric::TimeToHeaders, sample.time_to_headers),
            (Metric::Ttfe, sample.ttfe),
            (Metric::Ttft, sample.ttft),
            (Metric::StreamDuration, sample.stream),
            (Metric::Queueing, sample.queueing),
            (Metric::StreamTail, sample.stream_tail),
        ] {
            if let Some(v) = value {
                s.record(metric, micros(v));
            }
        }
        if let Some(secs) = sample.server_elapsed.filter(|s| s.is_finite() && *s >= 0.0) {
            s.record(Metric::ServerElapsed, (secs * 1e6) as u64);
        }
        match result {
            Ok(()) => {
                // Per replica, beside the failures by kind: a dead replica's instant
                // refusals must not make it look fast (dropped from unsplit rows).
                s.record(Metric::ResponseTimeOk, micros(elapsed));
                if let Some(code) = sample.expected_status {
                    s.outcome(FailureKind::ExpectedStatus, &code.to_string(), || {
                        format!("HTTP {code} (expected)")
                    });
                }
            }
            Err(f) => {
                // Detail and message are target-supplied: redacted here, then bounded by
                // the stats (redacting first, so a clip never leaves half a secret).
                let detail = redact(&ctx.secrets, f.detail);
                s.fail(f.kind, &detail, || redact(&ctx.secrets, f.message))
            }
        }
    });
}

/// Whether a request that succeeded met every goodput objective of its task (a task
/// without objectives has no good requests; an expected non-2xx outcome is not good).
fn is_good(task: &Task, sample: &Sample, elapsed: Duration) -> bool {
    let Some(slo) = &task.goodput else {
        return false;
    };
    sample.expected_status.is_none()
        && slo.met(&RequestTimes {
            ttfe_us: sample.ttfe.map(micros),
            ttft_us: sample.ttft.map(micros),
            response_time_us: micros(elapsed),
            gaps: sample.gaps,
        })
}

/// A duration in whole microseconds, the unit of every histogram.
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Failure messages and details may quote a response; no plan secret rides along.
fn redact(secrets: &[String], mut message: String) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if message.contains(secret.as_str()) {
            message = message.replace(secret.as_str(), barrage_common::template::REDACTED);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use barrage_common::goodput::Slo;

    use super::super::fixtures::chat_task;
    use super::*;

    #[test]
    fn a_request_is_good_when_it_met_its_tasks_objectives() {
        let ms = Duration::from_millis;
        let mut task = chat_task(1);
        let fast = Sample {
            ttfe: Some(ms(20)),
            ttft: Some(ms(30)),
            ..Sample::default()
        };
        // No objectives: never good, whatever the request did.
        assert!(!is_good(&task, &fast, ms(40)));
        task.goodput = Some(Slo {
            ttfe_us: Some(150_000),
            response_time_us: Some(1_000_000),
            ..Slo::default()
        });
        assert!(is_good(&task, &fast, ms(40)));
        let late = Sample {
            ttfe: Some(ms(300)),
            ..Sample::default()
        };
        assert!(!is_good(&task, &late, ms(400)), "first event after the bound");
        assert!(!is_good(&task, &Sample::default(), ms(40)), "no first event at all");
        assert!(!is_good(&task, &fast, ms(1001)), "response time over");
        let expected = Sample {
            expected_status: Some(429),
            ..fast
        };
        assert!(!is_good(&task, &expected, ms(40)), "an expected outcome is not good");
    }
}
