//! The connection ([`Conn`]): one user's keep-alive HTTP/1.1 connection, opened on
//! demand, sending a request and reading its answer's head and body pieces.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::{TcpSocket, TcpStream};

use barrage_common::metrics::FailureKind;

use super::body::{Body, Chunk, framing, step_chunked};
use super::failure::{Failure, SOURCE_PORT_EXHAUSTION, incomplete, io_detail, io_failure};
use super::head::{MAX_HEAD, parse_head};
use super::request::Outgoing;
use super::socket::Socket;
use super::target::Target;

/// One user's connection; reconnects on demand.
///
/// Our own HTTP/1.1 client side rather than hyper's `client::conn`: the user's task
/// writes the request and reads the response itself, with no connection task, no
/// channel between the two and one read buffer. hyper's client costs two tasks and a
/// dispatch channel per connection (about 9 KiB for the channel, 8 KiB of write
/// buffer and 8 KiB of read buffer, measured with massif at 1,000 idle streams) and a
/// task switch per body chunk, which is most of a load generator's own cost per SSE
/// event. Heads are parsed by `httparse` (hyper's own parser); bodies are framed by
/// RFC 9112 section 6.3: no body (HEAD, 1xx, 204, 304), chunked, Content-Length, or
/// until the server closes.
pub(crate) struct Conn {
    /// The socket, while connected.
    io: Option<Socket>,
    /// Bytes read and not yet consumed: the next head, or body bytes.
    buf: BytesMut,
    /// The request being written, kept for its capacity.
    out: Outgoing,
    /// The body being read.
    body: Body,
    /// The connection may carry another request once the body is read.
    reusable: bool,
    /// The connection already carried a request before the current one.
    reused: bool,
    /// The last [`Conn::send`] failed on a reused connection before any byte of an
    /// answer arrived (see [`Conn::may_retry`]).
    retryable: bool,
    /// Bytes to ask the kernel for on the next read: grows while reads fill it.
    read_size: usize,
    /// The current request's bytes went to the socket (see [`Conn::request_written`]).
    written: bool,
    /// The current request opened a new connection (see [`Conn::opened_for_request`]).
    opened: bool,
    /// Reads are stamped with when their bytes arrived (see [`Conn::stamp_reads`]).
    stamp: bool,
    /// The socket was asked to stamp arrivals (once per connection).
    stamping: bool,
    /// When the bytes of the last stamped read arrived (see [`Conn::arrived`]).
    arrived: Option<Instant>,
}

/// Opens a TCP connection to `addr`, bound first to the target's next source address
/// when it has some (see [`crate::source`]).
async fn open(target: &Target, addr: SocketAddr) -> Result<TcpStream, Failure> {
    let failed = |e: std::io::Error, from: Option<IpAddr>| {
        let from = from.map(|ip| format!(" from {ip}")).unwrap_or_default();
        let detail = io_detail(&e);
        let hint = if detail == SOURCE_PORT_EXHAUSTION {
            " (source port exhaustion: every ephemeral port of the source address is in use; \
             see `barrage worker --source-addresses`)"
        } else {
            ""
        };
        Failure::new(
            FailureKind::Connect,
            detail,
            format!("connecting to {addr}{from}: {e}{hint}"),
        )
    };
    let Some(sources) = &target.sources else {
        return TcpStream::connect(addr).await.map_err(|e| failed(e, None));
    };
    if sources.is_ipv4() != addr.is_ipv4() {
        return Err(Failure::new(
            FailureKind::Connect,
            "source_family",
            format!(
                "connecting to {addr}: --source-addresses are {} and the target is not",
                if sources.is_ipv4() { "IPv4" } else { "IPv6" }
            ),
        ));
    }
    let ip = sources.next();
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| failed(e, Some(ip)))?;
    // Port 0: the kernel picks a free ephemeral port of this address.
    socket.bind(SocketAddr::new(ip, 0)).map_err(|e| failed(e, Some(ip)))?;
    socket.connect(addr).await.map_err(|e| failed(e, Some(ip)))
}

/// First read size (and the size an idle connection goes back to).
const READ_MIN: usize = 2 * 1024;
/// The largest the adaptive read size grows to.
const READ_MAX: usize = 64 * 1024;

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl Conn {
    /// A connection not opened yet (see [`Conn::ready`]).
    pub(crate) fn new() -> Self {
        Conn {
            io: None,
            buf: BytesMut::new(),
            out: Outgoing::default(),
            body: Body::Done,
            reusable: false,
            reused: false,
            retryable: false,
            read_size: READ_MIN,
            written: false,
            opened: false,
            stamp: false,
            stamping: false,
            arrived: None,
        }
    }

    /// A socket is open (it may be reused, or dropped at the next request).
    #[cfg(test)]
    pub(super) fn is_open(&self) -> bool {
        self.io.is_some()
    }

    /// Bytes the read buffer holds room for (an idle connection: none).
    #[cfg(test)]
    pub(super) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// A new request begins: nothing of it is written yet.
    pub(crate) fn begin_request(&mut self) {
        self.written = false;
        self.opened = false;
    }

    /// Whether the request begun last opened a new connection: the target accepted
    /// it even when the request is cut off at a hard stop, so it is counted then too.
    pub(crate) fn opened_for_request(&self) -> bool {
        self.opened
    }

    /// Whether the request begun last ([`Conn::begin_request`]) was handed to the
    /// socket whole: a request cut off before this never reached the target, so it is
    /// not counted as one.
    pub(crate) fn request_written(&self) -> bool {
        self.written
    }

    /// Stamps the next reads with when their bytes arrived at this host (the kernel's
    /// receive timestamp; plain TCP only), until turned off: a stream's first event is
    /// timed by it (see [`Conn::arrived`]). Off, reads cost one plain `read` as before.
    pub(crate) fn stamp_reads(&mut self, on: bool) {
        self.stamp = on;
        if !on {
            self.arrived = None;
        }
    }

    /// When the bytes of the last read arrived, while [`Conn::stamp_reads`] is on and
    /// the kernel stamped them: what the body's pieces handed out since were read from
    /// arrived then or before. `None`: time them by the clock as they are handed out.
    pub(crate) fn arrived(&self) -> Option<Instant> {
        self.arrived
    }

    /// Drops the connection (after a protocol error or an unread body).
    pub(crate) fn reset(&mut self) {
        self.io = None;
        self.stamping = false;
        self.arrived = None;
        self.body = Body::Done;
        self.buf = BytesMut::new();
        self.read_size = READ_MIN;
    }

    /// Makes sure a usable connection exists; returns true when it opened a new one.
    /// `pinned` connects to that address instead of resolving the host again.
    pub(crate) async fn ready(
        &mut self,
        target: &Target,
        pinned: Option<SocketAddr>,
        connect_timeout: Duration,
    ) -> Result<bool, Failure> {
        if let Some(io) = &mut self.io {
            if self.body == Body::Done && self.reusable && self.buf.is_empty() && io.idle_and_open() {
                self.reused = true;
                return Ok(false);
            }
            self.reset();
        }
        let addr = match pinned {
            Some(a) => a,
            None => target.resolve().await?,
        };
        let stream = tokio::time::timeout(connect_timeout, open(target, addr))
            .await
            .map_err(|_| {
                Failure::new(
                    FailureKind::Connect,
                    "timeout",
                    format!("connecting to {addr} took over {connect_timeout:?}"),
                )
            })??;
        let _ = stream.set_nodelay(true);
        let stream = match &target.tls {
            None => Socket::Plain(stream),
            Some((config, name)) => {
                let tls = tokio::time::timeout(
                    connect_timeout,
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name.clone(), stream),
                )
                .await
                .map_err(|_| {
                    Failure::new(
                        FailureKind::Connect,
                        "tls",
                        format!("TLS handshake with {addr} timed out"),
                    )
                })?
                .map_err(|e| Failure::new(FailureKind::Connect, "tls", format!("TLS handshake with {addr}: {e}")))?;
                Socket::Tls(Box::new(tls))
            }
        };
        self.io = Some(stream);
        self.reusable = true;
        self.reused = false;
        self.opened = true;
        Ok(true)
    }

    /// The buffer of the next request, to write it into (see [`Outgoing`]).
    pub(crate) fn outgoing(&mut self) -> &mut Outgoing {
        &mut self.out
    }

    /// Writes the request in [`Conn::outgoing`] on the ready connection and reads the
    /// response head. The body follows from [`Conn::frame`]; it must be read to its
    /// end (or the connection reset) before the next request.
    ///
    /// The request stays in [`Conn::outgoing`], so that it can be sent again when
    /// [`Conn::may_retry`] says so.
    pub(crate) async fn send(&mut self) -> Result<(http::StatusCode, http::HeaderMap), Failure> {
        self.retryable = false;
        if self.io.is_none() {
            return Err(Failure::new(FailureKind::Request, "no_connection", "no connection"));
        }
        self.body = Body::Done;
        let written = match &mut self.io {
            Some(io) => io.write_all(self.out.as_bytes()).await,
            None => Ok(()),
        };
        if let Err(e) = written {
            self.retryable = self.reused;
            self.reset();
            return Err(io_failure(&e, "writing the request"));
        }
        self.written = true;
        let (close_requested, head_request) = (self.out.close, self.out.head);
        // Whether any byte of an answer arrived: until one does, a failure on a reused
        // connection means the server closed it without reading our request.
        let mut answered = !self.buf.is_empty();
        loop {
            let parsed = parse_head(&self.buf);
            match parsed {
                Err(message) => {
                    self.reset();
                    return Err(Failure::new(FailureKind::Io, "parse", message));
                }
                Ok(None) => {
                    if self.buf.len() > MAX_HEAD {
                        self.reset();
                        return Err(Failure::new(
                            FailureKind::Io,
                            "parse",
                            format!("response head larger than {MAX_HEAD} bytes"),
                        ));
                    }
                    let read = self.read_more().await;
                    if !matches!(read, Ok(n) if n > 0) {
                        self.retryable = self.reused && !answered;
                        self.reset();
                        return Err(read.err().unwrap_or_else(|| {
                            Failure::new(
                                FailureKind::Io,
                                "incomplete_message",
                                "connection closed before the response head was complete",
                            )
                        }));
                    }
                    answered = true;
                }
                Ok(Some(head)) => {
                    let _ = self.buf.split_to(head.len);
                    // Interim answers (100 Continue, 103 Early Hints) precede the real one.
                    if head.status.is_informational() && head.status != http::StatusCode::SWITCHING_PROTOCOLS {
                        continue;
                    }
                    self.reusable = !close_requested && head.keep_alive;
                    self.body = match framing(head_request, &head) {
                        Ok(body) => body,
                        Err(message) => {
                            self.reset();
                            return Err(Failure::new(FailureKind::Io, "parse", message));
                        }
                    };
                    if self.body == Body::UntilClose || head.status == http::StatusCode::SWITCHING_PROTOCOLS {
                        self.reusable = false;
                    }
                    self.finish_if_done();
                    return Ok((head.status, head.headers));
                }
            }
        }
    }

    /// The last [`Conn::send`] failed on a reused connection before any byte of an
    /// answer: the server closed it (an idle timeout racing the request) without
    /// processing the request, so it may go once more on a fresh connection, as
    /// browsers and hyper do. Never after an answer began, never on a fresh connection.
    pub(crate) fn may_retry(&self) -> bool {
        self.retryable
    }

    /// The next piece of the response body; `None` once it has been read to its end.
    pub(crate) async fn frame(&mut self) -> Option<Result<Bytes, Failure>> {
        let result = self.next_frame().await;
        match &result {
            Some(Err(_)) => self.reset(),
            None => self.finish_if_done(),
            Some(Ok(_)) => {}
        }
        result
    }

    /// Reads and discards the rest of the body.
    pub(crate) async fn drain(&mut self) -> Result<u64, Failure> {
        let mut n = 0;
        while let Some(piece) = self.frame().await {
            n += piece?.len() as u64;
        }
        Ok(n)
    }

    /// [`Conn::frame`] before its clean-up.
    async fn next_frame(&mut self) -> Option<Result<Bytes, Failure>> {
        self.next_piece().await.transpose()
    }

    /// The next piece of the body as its framing cuts it; `Ok(None)` at its end.
    async fn next_piece(&mut self) -> Result<Option<Bytes>, Failure> {
        loop {
            match self.body {
                Body::Done => return Ok(None),
                Body::Length(0) => {
                    self.body = Body::Done;
                    return Ok(None);
                }
                Body::Length(left) => {
                    if !self.fill().await? {
                        return Err(incomplete("the body ended before its Content-Length"));
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(self.buf.len());
                    self.body = Body::Length(left - take as u64);
                    return Ok(Some(self.buf.split_to(take).freeze()));
                }
                Body::UntilClose => {
                    if !self.fill().await? {
                        self.body = Body::Done;
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Body::Chunked(Chunk::Data(left)) => {
                    if !self.fill().await? {
                        return Err(incomplete("the body ended inside a chunk"));
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(self.buf.len());
                    let rest = left - take as u64;
                    self.body = Body::Chunked(if rest == 0 { Chunk::DataEnd } else { Chunk::Data(rest) });
                    return Ok(Some(self.buf.split_to(take).freeze()));
                }
                Body::Chunked(state) => match step_chunked(state, &mut self.buf) {
                    Ok(Some(next)) => self.body = next,
                    Ok(None) => {
                        if self.read_more().await? == 0 {
                            return Err(incomplete("the body ended inside its chunked framing"));
                        }
                    }
                    Err(message) => return Err(Failure::new(FailureKind::Io, "parse", message)),
                },
            }
        }
    }

    /// Makes sure `buf` holds bytes, reading if it is empty; false at end of stream.
    async fn fill(&mut self) -> Result<bool, Failure> {
        Ok(!self.buf.is_empty() || self.read_more().await? > 0)
    }

    /// Once a body is complete: keep the connection only if it can carry another request.
    fn finish_if_done(&mut self) {
        if self.body != Body::Done {
            return;
        }
        if !self.reusable || !self.buf.is_empty() {
            self.reset();
        } else if self.buf.capacity() > 4 * READ_MAX {
            // A large body grew the buffer: an idle connection goes back to a small one.
            self.buf = BytesMut::new();
            self.read_size = READ_MIN;
        }
    }

    /// Reads what the kernel has (at least one byte, or 0 at EOF) into `buf`.
    ///
    /// With nothing buffered, the wait for the socket holds no buffer: an idle
    /// connection (a stream between events, most of an SSE run) would otherwise keep
    /// a 2 KiB read buffer each; the empty buffer goes to the thread's spares while
    /// it waits and one comes back when bytes are there, so a busy thread does not
    /// allocate per read.
    async fn read_more(&mut self) -> Result<usize, Failure> {
        let Some(io) = &mut self.io else {
            return Ok(0);
        };
        loop {
            let empty = self.buf.is_empty();
            let buf = &mut self.buf;
            io.readable(|| {
                if empty {
                    spare::give_back(std::mem::take(buf));
                }
            })
            .await
            .map_err(|e| io_failure(&e, "reading the response"))?;
            if self.buf.capacity() == 0 {
                self.buf = spare::take();
            }
            if self.stamp && !self.stamping {
                self.stamping = io.stamp_arrivals();
            }
            self.buf.reserve(self.read_size);
            let room = self.buf.capacity() - self.buf.len();
            match io.read_some(&mut self.buf, room, self.stamp).await {
                Ok((n, at)) => {
                    if self.stamp {
                        self.arrived = at;
                    }
                    if n == room && self.read_size < READ_MAX {
                        self.read_size *= 2;
                    }
                    return Ok(n);
                }
                // Stale readiness: wait again (giving the buffer back if it is empty).
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_failure(&e, "reading the response")),
            }
        }
    }
}

/// Empty read buffers a load thread keeps between its connections' reads.
///
/// Per thread, not per connection: a thread reads one socket at a time, so a few
/// spares serve thousands of idle streams. A thread-local, not a shared pool: a user
/// never leaves its thread (see `crate::cores`), and no lock is taken per read.
mod spare {
    use std::cell::RefCell;

    use bytes::BytesMut;

    use super::{READ_MAX, READ_MIN};

    /// Spares kept per thread: enough for the connections one wake-up reads.
    const KEPT: usize = 16;

    thread_local! {
        static SPARES: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// Keeps an empty buffer of an ordinary size for the next read on this thread;
    /// any other is freed.
    pub(super) fn give_back(mut buf: BytesMut) {
        // `try_reclaim`: the room before the bytes already handed out comes back when
        // no frame still shares the allocation (frames are dropped before the next read).
        if !buf.is_empty() || !buf.try_reclaim(READ_MIN) || buf.capacity() > 2 * READ_MAX {
            return;
        }
        SPARES.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut()
                && s.len() < KEPT
            {
                s.push(buf);
            }
        });
    }

    /// A spare buffer, or a new empty one (allocated by the read's `reserve`).
    pub(super) fn take() -> BytesMut {
        SPARES
            .with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
            .unwrap_or_default()
    }
}
