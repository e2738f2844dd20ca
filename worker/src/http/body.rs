//! Body framing (RFC 9112 section 6.3): no body, Content-Length, chunked, or until
//! the server closes; and the chunked framing's state machine.

use bytes::BytesMut;

use super::head::Head;

/// What framing the body of the current response has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// No body, or it was read to its end.
    Done,
    /// Content-Length: this many bytes left.
    Length(u64),
    /// Chunked, in this state of its framing.
    Chunked(Chunk),
    /// Until the server closes the connection.
    UntilClose,
}

/// Where the chunked framing is, between pieces of chunk data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one; bytes of trailers so far.
    Trailers(usize),
}

/// Longest chunk-size line (with extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Longest trailer section (all trailer lines together).
const MAX_TRAILERS: usize = 16 * 1024;

/// RFC 9112 section 6.3 (`head_request`: the request was a HEAD).
pub(super) fn framing(head_request: bool, head: &Head) -> Result<Body, String> {
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
pub(super) fn step_chunked(state: Chunk, buf: &mut BytesMut) -> Result<Option<Body>, String> {
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
