//! Request writing ([`Outgoing`]): the request line, headers and body written straight
//! into a reused buffer, every rendered value checked before it goes on the wire.

use barrage_common::metrics::FailureKind;

use super::failure::Failure;

/// A request as it goes on the wire, written straight into a reused buffer by
/// [`Outgoing::start`], [`Outgoing::header`] and [`Outgoing::finish`]. Everything a
/// template renders is checked here: a target or header value carrying CR, LF or
/// another control byte is refused (`request/build`), so no pool value or captured
/// string can split the request or smuggle a second one.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// The request as written so far.
    bytes: Vec<u8>,
    /// A HEAD request: its answer has no body whatever its headers say.
    pub(super) head: bool,
    /// `Connection: close` was sent: the connection ends with this answer.
    pub(super) close: bool,
    /// A method without body semantics: no Content-Length unless a body is given.
    bodyless: bool,
}

impl Outgoing {
    /// Begins a request: `METHOD target HTTP/1.1`. `target` is origin-form
    /// (`/path?query`) of visible ASCII.
    pub(crate) fn start(&mut self, method: &str, target: &str) -> Result<(), Failure> {
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
    pub(crate) fn header(&mut self, name: &str, value: &str) -> Result<(), Failure> {
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
    pub(crate) fn finish(&mut self, body: &[u8]) {
        if !body.is_empty() || !self.bodyless {
            self.bytes.extend_from_slice(b"content-length: ");
            self.bytes.extend_from_slice(body.len().to_string().as_bytes());
            self.bytes.extend_from_slice(b"\r\n");
        }
        self.bytes.extend_from_slice(b"\r\n");
        self.bytes.extend_from_slice(body);
    }

    /// The bytes written so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// RFC 9110 `tchar`: what a method or header name may hold.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A value that cannot go on the wire, as a `request/build` failure.
fn build_failure(message: String) -> Failure {
    Failure::new(
        FailureKind::Request,
        "build",
        format!("request could not be built: {message}"),
    )
}
