//! The HTTP/1.1 client side: one keep-alive connection owned by one virtual user.
//!
//! No pool: a user owns its connection like a browser tab would, the pool lookup
//! disappears from the hot path, and "connections opened" is exactly what we count.
//! See [`Conn`] for why the client is our own rather than hyper's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use barrage_common::metrics::FailureKind;

/// Why a request failed, before the response was classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, detail: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            kind,
            detail: detail.into(),
            message: message.into(),
        }
    }
}

/// A parsed target: `http://host:port` or `https://host:port`.
#[derive(Clone)]
pub struct Target {
    /// `host:port` as the Host header wants it.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// For https: the client configuration and the name the certificate must carry.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.tls.is_some() { "https" } else { "http" },
            self.authority
        )
    }
}

impl Target {
    /// `tls` is used for https targets (see [`crate::tls::client_config`]).
    pub fn parse(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Target, String> {
        let (rest, secure) = if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("https://") {
            (r, true)
        } else {
            return Err(format!("\"{url}\" is not an http:// or https:// target"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h.to_string(),
                p.parse::<u16>().map_err(|_| format!("\"{url}\": bad port `{p}`"))?,
            ),
            _ => (rest.to_string(), if secure { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("\"{url}\" has no host"));
        }
        let tls = if secure {
            let config = tls.ok_or_else(|| format!("\"{url}\": no TLS configuration"))?.clone();
            let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let name = ServerName::try_from(bare).map_err(|e| format!("\"{url}\": {e}"))?;
            Some((config, name))
        } else {
            None
        };
        Ok(Target {
            authority: rest.to_string(),
            host,
            port,
            tls,
        })
    }

    async fn resolve(&self) -> Result<SocketAddr, Failure> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let mut addrs = tokio::net::lookup_host((host, self.port))
            .await
            .map_err(|e| Failure::new(FailureKind::Connect, "dns", format!("resolving {}: {e}", self.host)))?;
        addrs.next().ok_or_else(|| {
            Failure::new(
                FailureKind::Connect,
                "dns",
                format!("{} resolves to no address", self.host),
            )
        })
    }
}

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
pub struct Conn {
    io: Option<Stream>,
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
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// False when an idle connection has been closed by the server (or sent bytes no
    /// request asked for): it must not carry the next request.
    fn idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        // One poll: pending means nothing to read, the connection is quietly open.
        let polled = match self {
            Stream::Plain(s) => futures::FutureExt::now_or_never(s.peek(&mut probe)),
            // Through the TLS layer, not the socket under it: a server's `close_notify`
            // is bytes on the socket (a peek there sees "data", so the connection looked
            // open and the next request failed as `incomplete_message`), while records
            // without data (session tickets) are consumed here and leave it pending.
            // A read is cancel-safe: rustls keeps whatever part of a record it has.
            Stream::Tls(s) => futures::FutureExt::now_or_never(s.read(&mut probe)),
        };
        // Ok(0): closed (FIN, or close_notify); Ok(n): bytes no request asked for.
        polled.is_none()
    }
}

/// A request as it goes on the wire, written straight into a reused buffer by
/// [`Outgoing::start`], [`Outgoing::header`] and [`Outgoing::finish`]. Everything a
/// template renders is checked here: a target or header value carrying CR, LF or
/// another control byte is refused (`request/build`), so no pool value or captured
/// string can split the request or smuggle a second one.
#[derive(Debug, Default)]
pub struct Outgoing {
    bytes: Vec<u8>,
    /// A HEAD request: its answer has no body whatever its headers say.
    head: bool,
    /// `Connection: close` was sent: the connection ends with this answer.
    close: bool,
    /// A method without body semantics: no Content-Length unless a body is given.
    bodyless: bool,
}

impl Outgoing {
    /// Begins a request: `METHOD target HTTP/1.1`. `target` is origin-form
    /// (`/path?query`) of visible ASCII.
    pub fn start(&mut self, method: &str, target: &str) -> Result<(), Failure> {
        // A large request grew the buffer: shrink it here, not after the send, which
        // may need the bytes again (see [`Conn::may_retry`]).
        if self.bytes.capacity() > 64 * 1024 {
            self.bytes = Vec::new();
        }
        self.bytes.clear();
        self.head = method == "HEAD";
        self.bodyless = matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE");
        self.close = false;
        if method.is_empty() || !method.bytes().all(is_token) {
            return Err(build_failure(format!("invalid method {method:?}")));
        }
        if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(build_failure(format!(
                "invalid request target {:?}: a path of visible ASCII (percent-encode the rest)",
                target.chars().take(80).collect::<String>()
            )));
        }
        self.bytes.extend_from_slice(method.as_bytes());
        self.bytes.push(b' ');
        self.bytes.extend_from_slice(target.as_bytes());
        self.bytes.extend_from_slice(b" HTTP/1.1\r\n");
        Ok(())
    }

    /// Adds a header. Content-Length and Transfer-Encoding are the client's own
    /// (from the body) and are left out if given.
    pub fn header(&mut self, name: &str, value: &str) -> Result<(), Failure> {
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(build_failure(format!("invalid header name {name:?}")));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(build_failure(format!(
                "the value of header {name} holds a control character"
            )));
        }
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding") {
            return Ok(());
        }
        if name.eq_ignore_ascii_case("connection") && value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")) {
            self.close = true;
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Ends the head (with Content-Length for a body, or for a method that has one)
    /// and appends the body.
    pub fn finish(&mut self, body: &[u8]) {
        if !body.is_empty() || !self.bodyless {
            self.bytes.extend_from_slice(b"content-length: ");
            self.bytes.extend_from_slice(body.len().to_string().as_bytes());
            self.bytes.extend_from_slice(b"\r\n");
        }
        self.bytes.extend_from_slice(b"\r\n");
        self.bytes.extend_from_slice(body);
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// RFC 9110 `tchar`: what a method or header name may hold.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn build_failure(message: String) -> Failure {
    Failure::new(
        FailureKind::Request,
        "build",
        format!("request could not be built: {message}"),
    )
}

/// What framing the body of the current response has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// No body, or it was read to its end.
    Done,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one; bytes of trailers so far.
    Trailers(usize),
}

/// Longest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields accepted in one head.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with extensions) and all trailers together.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;
/// First read size, and the largest the adaptive size grows to.
const READ_MIN: usize = 2 * 1024;
const READ_MAX: usize = 64 * 1024;

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl Conn {
    pub fn new() -> Self {
        Conn {
            io: None,
            buf: BytesMut::new(),
            out: Outgoing::default(),
            body: Body::Done,
            reusable: false,
            reused: false,
            retryable: false,
            read_size: READ_MIN,
        }
    }

    /// Drops the connection (after a protocol error or an unread body).
    pub fn reset(&mut self) {
        self.io = None;
        self.body = Body::Done;
        self.buf = BytesMut::new();
        self.read_size = READ_MIN;
    }

    /// Makes sure a usable connection exists; returns true when it opened a new one.
    /// `pinned` connects to that address instead of resolving the host again.
    pub async fn ready(
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
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Failure::new(
                    FailureKind::Connect,
                    "timeout",
                    format!("connecting to {addr} took over {connect_timeout:?}"),
                )
            })?
            .map_err(|e| {
                Failure::new(
                    FailureKind::Connect,
                    io_detail(&e),
                    format!("connecting to {addr}: {e}"),
                )
            })?;
        let _ = stream.set_nodelay(true);
        let stream = match &target.tls {
            None => Stream::Plain(stream),
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
                Stream::Tls(Box::new(tls))
            }
        };
        self.io = Some(stream);
        self.reusable = true;
        self.reused = false;
        Ok(true)
    }

    /// The buffer of the next request, to write it into (see [`Outgoing`]).
    pub fn outgoing(&mut self) -> &mut Outgoing {
        &mut self.out
    }

    /// Writes the request in [`Conn::outgoing`] on the ready connection and reads the
    /// response head. The body follows from [`Conn::frame`]; it must be read to its
    /// end (or the connection reset) before the next request.
    ///
    /// The request stays in [`Conn::outgoing`], so that it can be sent again when
    /// [`Conn::may_retry`] says so.
    pub async fn send(&mut self) -> Result<(http::StatusCode, http::HeaderMap), Failure> {
        self.retryable = false;
        if self.io.is_none() {
            return Err(Failure::new(FailureKind::Request, "no_connection", "no connection"));
        }
        self.body = Body::Done;
        let written = match &mut self.io {
            Some(io) => io.write_all(&self.out.bytes).await,
            None => Ok(()),
        };
        if let Err(e) = written {
            self.retryable = self.reused;
            self.reset();
            return Err(io_failure(&e, "writing the request"));
        }
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
    pub fn may_retry(&self) -> bool {
        self.retryable
    }

    /// The next piece of the response body; `None` once it has been read to its end.
    pub async fn frame(&mut self) -> Option<Result<Bytes, Failure>> {
        let result = self.next_frame().await;
        match &result {
            Some(Err(_)) => self.reset(),
            None => self.finish_if_done(),
            Some(Ok(_)) => {}
        }
        result
    }

    /// Reads and discards the rest of the body.
    pub async fn drain(&mut self) -> Result<u64, Failure> {
        let mut n = 0;
        while let Some(piece) = self.frame().await {
            n += piece?.len() as u64;
        }
        Ok(n)
    }

    async fn next_frame(&mut self) -> Option<Result<Bytes, Failure>> {
        self.next_piece().await.transpose()
    }

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
    async fn read_more(&mut self) -> Result<usize, Failure> {
        let Some(io) = &mut self.io else {
            return Ok(0);
        };
        self.buf.reserve(self.read_size);
        let room = self.buf.capacity() - self.buf.len();
        let n = io
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| io_failure(&e, "reading the response"))?;
        if n == room && self.read_size < READ_MAX {
            self.read_size *= 2;
        }
        Ok(n)
    }
}

/// A parsed response head.
struct Head {
    /// Bytes of the head, blank line included.
    len: usize,
    status: http::StatusCode,
    headers: http::HeaderMap,
    keep_alive: bool,
}

/// `Ok(None)`: not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Uninitialized slots: zeroing 100 headers per parse was the client's largest
    // single cost per plain request.
    let mut slots = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid response head: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    let status = http::StatusCode::from_u16(code).map_err(|_| format!("invalid status code {code}"))?;
    let mut headers = http::HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name =
            http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| format!("invalid header name {:?}", h.name))?;
        let value = http::HeaderValue::from_bytes(h.value).map_err(|_| format!("invalid value of header {name}"))?;
        headers.append(name, value);
    }
    let keep_alive = if resp.version == Some(1) {
        !has_token(&headers, "close")
    } else {
        has_token(&headers, "keep-alive")
    };
    Ok(Some(Head {
        len,
        status,
        headers,
        keep_alive,
    }))
}

/// RFC 9112 section 6.3 (`head_request`: the request was a HEAD).
fn framing(head_request: bool, head: &Head) -> Result<Body, String> {
    let status = head.status.as_u16();
    if head_request || head.status.is_informational() || status == 204 || status == 304 {
        return Ok(Body::Done);
    }
    if let Some(te) = head.headers.get_all(http::header::TRANSFER_ENCODING).iter().next_back() {
        let te = te.to_str().map_err(|_| "invalid Transfer-Encoding".to_string())?;
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Body::Chunked(Chunk::Size)
        } else {
            Body::UntilClose
        });
    }
    let mut length: Option<u64> = None;
    for value in head.headers.get_all(http::header::CONTENT_LENGTH) {
        for part in value.to_str().unwrap_or("x").split(',') {
            let part = part.trim();
            let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| format!("invalid Content-Length {part:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length values".into());
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => Body::Length(n),
        None => Body::UntilClose,
    })
}

/// Advances the chunked framing by what `buf` holds (all but chunk data). `Ok(None)`:
/// more bytes are needed.
fn step_chunked(state: Chunk, buf: &mut BytesMut) -> Result<Option<Body>, String> {
    match state {
        Chunk::Size => {
            let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > MAX_CHUNK_LINE {
                    return Err(format!("chunk-size line longer than {MAX_CHUNK_LINE} bytes"));
                }
                return Ok(None);
            };
            let line = buf.split_to(end + 1);
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let digits = digits.trim_ascii();
            if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
                return Err(format!(
                    "invalid chunk size {:?}",
                    String::from_utf8_lossy(&digits[..digits.len().min(32)])
                ));
            }
            let text = std::str::from_utf8(digits).unwrap_or("");
            let size = u64::from_str_radix(text, 16).map_err(|e| format!("invalid chunk size: {e}"))?;
            Ok(Some(Body::Chunked(if size == 0 {
                Chunk::Trailers(0)
            } else {
                Chunk::Data(size)
            })))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                if buf.first().is_some_and(|&b| b != b'\r' && b != b'\n') {
                    return Err("chunk data not followed by CRLF".into());
                }
                if buf.first() == Some(&b'\n') {
                    let _ = buf.split_to(1);
                    return Ok(Some(Body::Chunked(Chunk::Size)));
                }
                return Ok(None);
            }
            match &buf[..2] {
                b"\r\n" => {
                    let _ = buf.split_to(2);
                }
                [b'\n', _] => {
                    let _ = buf.split_to(1);
                }
                _ => return Err("chunk data not followed by CRLF".into()),
            }
            Ok(Some(Body::Chunked(Chunk::Size)))
        }
        Chunk::Trailers(seen) => {
            let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                if seen + buf.len() > MAX_TRAILERS {
                    return Err(format!("trailers longer than {MAX_TRAILERS} bytes"));
                }
                return Ok(None);
            };
            let line = buf.split_to(end + 1);
            if line.len() <= 2 && line.iter().all(|&b| b == b'\r' || b == b'\n') {
                return Ok(Some(Body::Done));
            }
            if seen + line.len() > MAX_TRAILERS {
                return Err(format!("trailers longer than {MAX_TRAILERS} bytes"));
            }
            Ok(Some(Body::Chunked(Chunk::Trailers(seen + line.len()))))
        }
        Chunk::Data(_) => Ok(Some(Body::Chunked(state))),
    }
}

/// Whether a Connection header lists `token`.
fn has_token(headers: &http::HeaderMap, token: &str) -> bool {
    headers.get_all(http::header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn incomplete(message: &str) -> Failure {
    Failure::new(FailureKind::Io, "incomplete_message", message)
}

fn io_failure(e: &std::io::Error, doing: &str) -> Failure {
    use std::io::ErrorKind::*;
    let detail = match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe => "reset",
        UnexpectedEof => "incomplete_message",
        TimedOut => "timeout",
        _ => "other",
    };
    Failure::new(FailureKind::Io, detail, format!("{doing}: {e}"))
}

fn io_detail(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    // EMFILE / ENFILE: the worker is out of file descriptors, not the target at fault.
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        return "too_many_open_files";
    }
    match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        TimedOut => "timeout",
        AddrNotAvailable | AddrInUse => "no_local_port",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
