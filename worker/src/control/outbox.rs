//! The outbox: reports sent and not yet acknowledged, kept across reconnects and
//! resent in order on each new link (the master merges each (worker, seq) once).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use barrage_proto::v1::{self, worker_message::Kind as WKind};

use super::link::Link;

/// Unacknowledged reports kept; beyond this the oldest are dropped with a warning.
const OUTBOX_LIMIT: usize = 3600;

/// Reports not yet acknowledged by the master, oldest first.
#[derive(Default)]
pub(super) struct Outbox {
    reports: VecDeque<v1::Report>,
}

impl Outbox {
    /// Reports waiting for their acknowledgement.
    pub(super) fn len(&self) -> usize {
        self.reports.len()
    }

    /// Forgets the reports the master has merged: seqs up to `acked_seq`.
    pub(super) fn acknowledge(&mut self, acked_seq: u64) {
        self.reports.retain(|r| r.seq > acked_seq);
    }

    /// Queues a report for delivery and sends it if the link is up.
    pub(super) fn push(&mut self, report: v1::Report, link: &mut Link) {
        if self.reports.len() >= OUTBOX_LIMIT {
            // The master sees the gap in seqs and calls the run's data incomplete.
            warn!(
                seq = self.reports.front().map(|r| r.seq),
                "outbox full: dropping the oldest unacknowledged report"
            );
            self.reports.pop_front();
        }
        self.reports.push_back(report);
        self.flush(link);
    }

    /// Sends, in order, the unacknowledged reports this link has not carried yet, as
    /// far as its queue has room; the rest go on a later tick. A closed link is
    /// dropped (everything unacknowledged goes again on the next one).
    pub(super) fn flush(&self, link: &mut Link) {
        let Link::Up {
            tx,
            welcomed: true,
            sent_upto,
            ..
        } = link
        else {
            return;
        };
        if send_pending(&self.reports, tx, sent_upto).is_err() {
            *link = Link::down(Instant::now(), Duration::from_millis(200));
        }
    }
}

/// Sends the reports of `outbox` above `sent_upto`, in order, while `tx` has room,
/// moving `sent_upto` to the last one sent; stops (to go on later) at a full queue.
/// Err when the link is closed.
fn send_pending(
    outbox: &VecDeque<v1::Report>,
    tx: &mpsc::Sender<v1::WorkerMessage>,
    sent_upto: &mut u64,
) -> std::result::Result<(), ()> {
    let from = *sent_upto;
    for report in outbox.iter().filter(|r| r.seq > from) {
        match tx.try_send(wrap_report(report.clone())) {
            Ok(()) => *sent_upto = report.seq,
            Err(mpsc::error::TrySendError::Full(_)) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
        }
    }
    Ok(())
}

/// A report as a message on the stream.
fn wrap_report(r: v1::Report) -> v1::WorkerMessage {
    v1::WorkerMessage {
        kind: Some(WKind::Report(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog larger than the link's queue (after a long disconnect) goes out whole,
    /// in order, as the queue drains: before, the resend stopped at the first full
    /// queue and the rest waited for the next reconnect.
    #[test]
    fn a_backlog_larger_than_the_queue_is_sent_whole_and_in_order() {
        let outbox: VecDeque<v1::Report> = (1..=10)
            .map(|seq| v1::Report {
                seq,
                ..Default::default()
            })
            .collect();
        let (tx, mut rx) = mpsc::channel(3);
        let mut sent_upto = 0;
        let mut received = Vec::new();
        for _ in 0..10 {
            send_pending(&outbox, &tx, &mut sent_upto).unwrap();
            while let Ok(m) = rx.try_recv() {
                if let Some(WKind::Report(r)) = m.kind {
                    received.push(r.seq);
                }
            }
        }
        assert_eq!(received, (1..=10).collect::<Vec<_>>());
        assert_eq!(sent_upto, 10);
        drop(rx);
        let mut more = outbox.clone();
        more.push_back(v1::Report {
            seq: 11,
            ..Default::default()
        });
        assert!(
            send_pending(&more, &tx, &mut sent_upto).is_err(),
            "a closed link says so"
        );
    }
}
