//! Test harness: a mock served in-process on 127.0.0.1:0 and a plain hyper HTTP/1.1
//! client that reads SSE bodies frame by frame, time-stamping each event.

use std::net::SocketAddr;
use std::time::Duration;

use barrage_mock::{GroundTruth, MockConfig, MockState};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Small timings keep the suite fast; every test overrides what it measures.
pub(crate) fn fast_config() -> MockConfig {
    MockConfig {
        first_event_delay: Duration::from_millis(5),
        chunks: 3,
        chunk_interval: Duration::from_millis(2),
        ping_interval: Duration::ZERO,
        ..MockConfig::default()
    }
}

/// A mock served in-process until dropped.
pub(crate) struct Mock {
    pub state: MockState,
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl Mock {
    pub(crate) async fn start(cfg: MockConfig) -> Self {
        let state = MockState::new(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(barrage_mock::run(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Self {
            state,
            addr,
            shutdown: tx,
            server,
        }
    }

    /// Shuts the server down gracefully and waits (bounded) until it has stopped.
    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(3), self.server)
            .await
            .expect("the mock did not shut down")
            .unwrap()
            .unwrap();
    }

    pub(crate) fn truth(&self) -> GroundTruth {
        self.state.ground_truth()
    }

    /// Waits (bounded) for the mock's counters to satisfy `done`.
    pub(crate) async fn wait_until(&self, done: impl FnMut(&GroundTruth) -> bool) -> GroundTruth {
        tokio::time::timeout(Duration::from_secs(3), self.state.wait_until(done))
            .await
            .unwrap_or_else(|_| panic!("counters never settled: {:?}", self.truth()))
    }

    /// Sends one request on a fresh connection and returns the response with its body
    /// unread, plus the time it was sent.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Response {
        send_to(self.addr, method, path, headers, body).await.unwrap()
    }

    pub(crate) async fn post(&self, path: &str, headers: &[(&str, &str)], body: Value) -> Response {
        self.send(Method::POST, path, headers, Some(body)).await
    }

    /// Like [`Mock::post`], but the connection may fail before a response arrives.
    pub(crate) async fn try_post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Result<Response, hyper::Error> {
        send_to(self.addr, Method::POST, path, headers, Some(body)).await
    }
}

/// Sends one request to `addr` on a fresh connection (usable from a spawned task).
pub(crate) async fn send_to(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Response, hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(json) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    let sent_at = Instant::now();
    let response = sender.send_request(request.body(Full::new(body)).unwrap()).await?;
    Ok(Response {
        sent_at,
        response,
        connection,
    })
}

pub(crate) struct Response {
    pub sent_at: Instant,
    pub response: hyper::Response<Incoming>,
    connection: JoinHandle<()>,
}

impl Response {
    pub(crate) fn status(&self) -> StatusCode {
        self.response.status()
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.response.headers().get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// Reads the whole body, byte for byte.
    pub(crate) async fn bytes(self) -> Vec<u8> {
        self.response.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    /// Reads the whole body as JSON.
    pub(crate) async fn json(self) -> (Value, usize) {
        let bytes = self.response.into_body().collect().await.unwrap().to_bytes();
        (serde_json::from_slice(&bytes).unwrap(), bytes.len())
    }

    /// Closes the connection without reading the body.
    pub(crate) fn hang_up(self) {
        self.connection.abort();
    }

    pub(crate) fn into_sse(self) -> Sse {
        Sse {
            sent_at: self.sent_at,
            body: self.response.into_body(),
            buf: Vec::new(),
            bytes: 0,
            connection: self.connection,
        }
    }
}

/// One SSE event as received.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Since the request was sent.
    pub at: Duration,
    /// `None` for a ping or data that is not JSON.
    pub data: Option<Value>,
    /// The data line's text when it is not JSON.
    pub raw: Option<String>,
    /// Length of the block, its `\n\n` excluded.
    pub len: usize,
}

impl Event {
    pub(crate) fn name(&self) -> &str {
        match (&self.data, &self.raw) {
            (Some(data), _) => data["event"].as_str().unwrap(),
            (None, Some(_)) => "<not json>",
            (None, None) => "ping",
        }
    }

    pub(crate) fn json(&self) -> &Value {
        self.data
            .as_ref()
            .unwrap_or_else(|| panic!("not a JSON event: {self:?}"))
    }
}

/// An SSE body being read.
pub(crate) struct Sse {
    sent_at: Instant,
    body: Incoming,
    buf: Vec<u8>,
    /// Body bytes received so far.
    pub bytes: usize,
    connection: JoinHandle<()>,
}

impl Sse {
    /// The next event, or `None` at the end of the body.
    pub(crate) async fn next(&mut self) -> Option<Event> {
        self.try_next().await.unwrap()
    }

    /// The next event, `None` at the end of the body, or the error that broke it.
    pub(crate) async fn try_next(&mut self) -> Result<Option<Event>, hyper::Error> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = std::str::from_utf8(&block[..end]).unwrap();
                let at = self.sent_at.elapsed();
                let (data, raw) = match text.strip_prefix("data: ") {
                    Some(json) => match serde_json::from_str(json) {
                        Ok(value) => (Some(value), None),
                        Err(_) => (None, Some(json.to_owned())),
                    },
                    None => {
                        assert_eq!(text, "event: ping", "unexpected SSE block");
                        (None, None)
                    }
                };
                return Ok(Some(Event {
                    at,
                    data,
                    raw,
                    len: end,
                }));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            if let Ok(data) = frame?.into_data() {
                self.bytes += data.len();
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// Every event until the body ends or breaks, and the error if it broke.
    pub(crate) async fn read_all(&mut self) -> (Vec<Event>, Option<hyper::Error>) {
        let mut events = Vec::new();
        loop {
            match self.try_next().await {
                Ok(Some(event)) => events.push(event),
                Ok(None) => return (events, None),
                Err(err) => return (events, Some(err)),
            }
        }
    }

    /// Every remaining event, to the end of the body.
    pub(crate) async fn collect(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        assert!(self.buf.is_empty(), "body ended mid-event");
        events
    }

    /// Hangs up: drops the body and closes the connection under it.
    pub(crate) fn hang_up(self) {
        self.connection.abort();
    }
}

/// Checks the ground truth's bookkeeping identity once traffic has settled: every
/// counted request has exactly one outcome, except the stop calls.
pub(crate) fn assert_one_outcome_per_request(truth: &GroundTruth) {
    let outcomes: u64 = truth.outcomes.values().sum();
    assert_eq!(outcomes + truth.stops_requested, truth.requests, "{truth:#?}");
}
