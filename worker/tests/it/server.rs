//! A hostile HTTP/1.1 target: a raw TCP listener on `127.0.0.1:0` that answers each
//! request with a [`Script`] of writes, periodic writes, silences, resets and closes, and counts
//! what it saw so tests can compare it with what the engine reported.
//!
//! Raw sockets rather than hyper on the server side, because the point is to send what
//! a well-behaved HTTP server never would: bad chunk sizes, endless 1xx heads, a TCP
//! reset in the middle of a body.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// One thing the server does after reading a request. A script that ends without
/// `Reset`, `Close`, `Hold` or `Every` leaves the connection open for the next request.
pub(crate) enum Step {
    Send(Bytes),
    /// Writes these bytes every period, until the client leaves.
    Every(Bytes, Duration),
    /// Ends the connection with a TCP reset (`SO_LINGER` 0) instead of a FIN.
    Reset,
    /// Ends the connection with a FIN.
    Close,
    /// Never writes again; keeps the connection open until the client leaves.
    Hold,
}

pub(crate) type Script = Vec<Step>;

/// Shorthand for `Step::Send` of static bytes.
pub(crate) fn send(bytes: &'static [u8]) -> Step {
    Step::Send(Bytes::from_static(bytes))
}

type Respond = dyn Fn(u64) -> Script + Send + Sync;

#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    requests: AtomicU64,
    paths: Mutex<BTreeMap<String, u64>>,
}

/// A running hostile server; it stops (with every connection) when dropped.
pub(crate) struct Hostile {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    accept: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Serves request number `n` (0-based, across connections) with `respond(n)`.
    pub(crate) async fn start(respond: impl Fn(u64) -> Script + Send + Sync + 'static) -> Hostile {
        // A backlog for a thousand simultaneous connects: at std's default of 128 the
        // kernel drops SYNs of a burst and those clients retry a second later.
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let listener = socket.listen(4096).expect("listen");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Seen::default());
        let respond: Arc<Respond> = Arc::new(respond);
        let accept = tokio::spawn(accept_loop(listener, seen.clone(), respond));
        Hostile { addr, seen, accept }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Complete request heads (and bodies) read.
    pub(crate) fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    pub(crate) fn connections(&self) -> u64 {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// Requests seen for `path`.
    pub(crate) fn hits(&self, path: &str) -> u64 {
        let paths = self.seen.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths.get(path).copied().unwrap_or(0)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it ends them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, seen: Arc<Seen>, respond: Arc<Respond>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    seen.connections.fetch_add(1, Ordering::SeqCst);
                    conns.spawn(serve(stream, seen.clone(), respond.clone()));
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve(mut stream: TcpStream, seen: Arc<Seen>, respond: Arc<Respond>) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let Some(path) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let n = seen.requests.fetch_add(1, Ordering::SeqCst);
        *seen
            .paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(path)
            .or_default() += 1;
        for step in respond(n) {
            match step {
                Step::Send(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Step::Every(bytes, period) => loop {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(period).await;
                },
                Step::Reset => {
                    let _ = stream.set_zero_linger();
                    return;
                }
                Step::Close => {
                    let _ = stream.shutdown().await;
                    return;
                }
                Step::Hold => {
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
            }
        }
    }
}

/// Reads one request (head and `content-length` body) and returns its path; `None` when
/// the client left or sent something that is not a request.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    const MAX_HEAD: usize = 64 * 1024;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?;
            let path = head.split(' ').nth(1)?.to_string();
            let body_len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let whole = end + 4 + body_len;
            while buf.len() < whole {
                if stream.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
            buf.drain(..whole);
            return Some(path);
        }
        if buf.len() > MAX_HEAD || stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}
