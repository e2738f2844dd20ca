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
pub fn fast_config() -> MockConfig {
    MockConfig {
        first_event_delay: Duration::from_millis(5),
        chunks: 3,
        chunk_interval: Duration::from_millis(2),
        ping_interval: Duration::ZERO,
        api_key: None,
    }
}

/// A mock served in-process until dropped.
pub struct Mock {
    pub state: MockState,
    pub addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl Mock {
    pub async fn start(cfg: MockConfig) -> Self {
        let state = MockState::new(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(barrage_mock::run(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Self {
            state,
            addr,
            _shutdown: tx,
        }
    }

    pub fn truth(&self) -> GroundTruth {
        self.state.ground_truth()
    }

    /// Waits (bounded) for the mock's counters to satisfy `done`.
    pub async fn wait_until(&self, done: impl FnMut(&GroundTruth) -> bool) -> GroundTruth {
        tokio::time::timeout(Duration::from_secs(3), self.state.wait_until(done))
            .await
            .unwrap_or_else(|_| panic!("counters never settled: {:?}", self.truth()))
    }

    /// Sends one request on a fresh connection and returns the response with its body
    /// unread, plus the time it was sent.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Response {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header(http::header::HOST, self.addr.to_string());
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
        let response = sender
            .send_request(request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        Response {
            sent_at,
            response,
            connection,
        }
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: Value) -> Response {
        self.send(Method::POST, path, headers, Some(body)).await
    }
}

pub struct Response {
    pub sent_at: Instant,
    pub response: hyper::Response<Incoming>,
    connection: JoinHandle<()>,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    pub fn header(&self, name: &str) -> &str {
        self.response.headers().get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// Reads the whole body as JSON.
    pub async fn json(self) -> (Value, usize) {
        let bytes = self.response.into_body().collect().await.unwrap().to_bytes();
        (serde_json::from_slice(&bytes).unwrap(), bytes.len())
    }

    pub fn into_sse(self) -> Sse {
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
pub struct Event {
    /// Since the request was sent.
    pub at: Duration,
    /// `None` for a ping.
    pub data: Option<Value>,
}

impl Event {
    pub fn name(&self) -> &str {
        match &self.data {
            Some(data) => data["event"].as_str().unwrap(),
            None => "ping",
        }
    }
}

/// An SSE body being read.
pub struct Sse {
    sent_at: Instant,
    body: Incoming,
    buf: Vec<u8>,
    /// Body bytes received so far.
    pub bytes: usize,
    connection: JoinHandle<()>,
}

impl Sse {
    /// The next event, or `None` at the end of the body.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = std::str::from_utf8(&raw[..end]).unwrap();
                let at = self.sent_at.elapsed();
                let data = match text.strip_prefix("data: ") {
                    Some(json) => Some(serde_json::from_str(json).unwrap()),
                    None => {
                        assert_eq!(text, "event: ping", "unexpected SSE block");
                        None
                    }
                };
                return Some(Event { at, data });
            }
            let frame = self.body.frame().await?.unwrap();
            if let Ok(data) = frame.into_data() {
                self.bytes += data.len();
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// Every remaining event, to the end of the body.
    pub async fn collect(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        assert!(self.buf.is_empty(), "body ended mid-event");
        events
    }

    /// Hangs up: drops the body and closes the connection under it.
    pub fn hang_up(self) {
        self.connection.abort();
    }
}
