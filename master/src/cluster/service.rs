//! The gRPC service workers join (`Coordinator.Join`): the token check, the hello,
//! admission ([`super::admission`]), the welcome, and one session task per stream that
//! merges the worker's reports and acknowledges them.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use barrage_proto::PROTOCOL_VERSION;
use barrage_proto::v1::{self, master_message::Kind as MKind, worker_message::Kind as WKind};

use super::Cluster;
use super::admission::BUILD;
use crate::aggregate::{DecodedReport, Merge};

/// Messages queued to one worker. Commands are rare and acks 1/s, so 64 is ample; a
/// worker that lets it fill is stuck and gets disconnected rather than block us.
const WORKER_QUEUE: usize = 64;
/// How long a new stream has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC service: `Coordinator.Join`, serving one cluster.
#[derive(Clone)]
pub struct Service {
    cluster: Arc<Cluster>,
}

impl Service {
    /// The service workers of `cluster` join through.
    pub fn new(cluster: Arc<Cluster>) -> Service {
        Service { cluster }
    }
}

type JoinStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::coordinator_server::Coordinator for Service {
    type JoinStream = JoinStream;

    async fn join(&self, request: Request<Streaming<v1::WorkerMessage>>) -> Result<Response<JoinStream>, Status> {
        if let Some(token) = &self.cluster.opts.token {
            let given = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !crate::auth::token_matches(given, token) {
                return Err(Status::unauthenticated("missing or wrong cluster token"));
            }
        }
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(v1::WorkerMessage {
                kind: Some(WKind::Hello(h)),
            }))) => h,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message must be Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        let out: JoinStream = Box::pin(ReceiverStream::new(rx));
        let conn = match self.cluster.admit(&hello, tx.clone()) {
            Ok(conn) => conn,
            Err(refuse) => {
                warn!(worker = %hello.worker_id, why = %refuse.message, "worker refused");
                let _ = tx.try_send(Ok(v1::MasterMessage {
                    kind: Some(MKind::Refuse(refuse)),
                }));
                return Ok(Response::new(out));
            }
        };
        let welcome = self.cluster.welcome(&hello.worker_id);
        let _ = tx
            .send(Ok(v1::MasterMessage {
                kind: Some(MKind::Welcome(welcome)),
            }))
            .await;
        self.cluster.registry().resend_commands(&hello.worker_id);
        self.cluster.changed.notify_waiters();
        tokio::spawn(session(self.cluster.clone(), hello.worker_id, conn, inbound, tx));
        Ok(Response::new(out))
    }
}

/// One worker's stream after its welcome: reports merged and acknowledged,
/// heartbeats kept, until it ends or says goodbye.
async fn session(
    cluster: Arc<Cluster>,
    worker: String,
    conn: u64,
    mut inbound: Streaming<v1::WorkerMessage>,
    tx: super::Outbound,
) {
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => {
                debug!(worker = %worker, error = %status, "worker stream error");
                break;
            }
        };
        cluster.registry().touch(&worker);
        match msg.kind {
            Some(WKind::Report(r)) => {
                let ack = v1::Ack {
                    epoch: cluster.epoch,
                    acked_seq: cluster.on_report(&worker, &r),
                };
                if tx
                    .try_send(Ok(v1::MasterMessage {
                        kind: Some(MKind::Ack(ack)),
                    }))
                    .is_err()
                {
                    break;
                }
            }
            Some(WKind::Heartbeat(hb)) => cluster.registry().on_heartbeat(&worker, hb),
            Some(WKind::Goodbye(g)) => {
                info!(worker = %worker, reason = %g.reason, "worker said goodbye");
                break;
            }
            Some(WKind::Hello(_)) | None => {}
        }
    }
    cluster.registry().on_disconnect(&worker, conn);
    cluster.changed.notify_waiters();
}

impl Cluster {
    /// The welcome of an admitted worker: its index, the plan, the intervals.
    fn welcome(&self, worker: &str) -> v1::Welcome {
        let index = self.registry().worker(worker).map_or(0, |w| w.index());
        v1::Welcome {
            protocol_version: PROTOCOL_VERSION,
            worker_index: index,
            epoch: self.epoch,
            plan_json: self.plan_json.clone(),
            plan_format: barrage_common::plan::PLAN_FORMAT,
            heartbeat_interval_ms: self.opts.heartbeat_interval.as_millis() as u64,
            report_interval_ms: self.opts.report_interval.as_millis() as u64,
            master_timeout_ms: self.opts.master_timeout.as_millis() as u64,
            acked_seq: self.aggregator().acked(worker),
            build_version: BUILD.into(),
        }
    }

    /// Merges a report; the seq to acknowledge. Every report is acknowledged, even
    /// one that cannot be used (counted as lost data instead), so the worker's outbox
    /// never stalls behind it. Its deltas are decoded and checked here, in the
    /// worker's own session task, before the aggregator lock is taken: under the lock
    /// only the seq is checked and buckets added.
    fn on_report(&self, worker: &str, report: &v1::Report) -> u64 {
        if report.worker_id != worker {
            warn!(worker, claimed = %report.worker_id, "report under another worker's id: not counted");
            let mut agg = self.aggregator();
            agg.lost_reports += 1;
            return agg.acked(worker);
        }
        let decoded = DecodedReport::decode(&self.planned, report);
        let outcome = self.aggregator().merge_decoded(decoded);
        if report.r#final {
            self.changed.notify_waiters();
        }
        match outcome {
            Merge::Merged { acked } | Merge::Duplicate { acked } => acked,
            Merge::Rejected { acked, why } => {
                warn!(worker, seq = report.seq, why = %why, "report not counted: its data is lost");
                acked
            }
        }
    }
}
