//! The link to the master: down (waiting to retry), connecting, or up (a gRPC stream
//! each way, welcomed or not yet).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::Streaming;

use barrage_proto::v1;

/// An open `Join` stream: where to send our messages, and the master's messages.
pub(super) type Joined = (mpsc::Sender<v1::WorkerMessage>, Streaming<v1::MasterMessage>);

/// A connection attempt in progress; `Err`: why it failed, as text.
pub(super) type Connecting = Pin<Box<dyn Future<Output = Result<Joined, String>> + Send>>;

/// The state of the link to the master.
pub(super) enum Link {
    /// No connection: the next attempt is at `retry_at`.
    Down {
        /// When to dial again.
        retry_at: Instant,
        /// The pause before this attempt; if it fails, the next waits twice as long
        /// (up to `max_backoff`).
        backoff: Duration,
    },
    /// Dialing the master and sending Hello.
    Connecting {
        /// The attempt.
        fut: Connecting,
        /// When it began (it is abandoned after the welcome timeout).
        since: Instant,
    },
    /// The stream is open.
    Up {
        /// Our messages to the master (a bounded queue; full means stuck).
        tx: mpsc::Sender<v1::WorkerMessage>,
        /// The master's messages. Boxed: the decoder state is large and the link
        /// changes often.
        rx: Box<Streaming<v1::MasterMessage>>,
        /// The master answered Hello with Welcome: reports and heartbeats may go.
        welcomed: bool,
        /// When the stream opened (it is dropped without Welcome after the timeout).
        since: Instant,
        /// The highest report seq written to this link: reports above it are sent
        /// as the queue has room (a full queue defers them, never drops them).
        sent_upto: u64,
    },
}

impl Link {
    /// A link that is down and dials again at `retry_at`, after a pause of `backoff`.
    pub(super) fn down(retry_at: Instant, backoff: Duration) -> Link {
        Link::Down { retry_at, backoff }
    }
}
