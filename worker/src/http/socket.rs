//! The socket under a connection: plain TCP or TLS over it, and the check that an
//! idle kept-alive connection is still open.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection's byte stream.
pub(super) enum Socket {
    /// http: TCP.
    Plain(TcpStream),
    /// https: TLS over TCP (boxed: the TLS state is large).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Socket {
    /// Reads what is there (at least one byte, or 0 at EOF) into `buf`.
    pub(super) async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Socket::Plain(s) => s.read_buf(buf).await,
            Socket::Tls(s) => s.read_buf(buf).await,
        }
    }

    /// Writes all of `bytes` (and flushes the TLS layer).
    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Socket::Plain(s) => s.write_all(bytes).await,
            Socket::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// False when an idle connection has been closed by the server (or sent bytes no
    /// request asked for): it must not carry the next request.
    pub(super) fn idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        // One poll: pending means nothing to read, the connection is quietly open.
        let polled = match self {
            Socket::Plain(s) => futures::FutureExt::now_or_never(s.peek(&mut probe)),
            // Through the TLS layer, not the socket under it: a server's `close_notify`
            // is bytes on the socket (a peek there sees "data", so the connection looked
            // open and the next request failed as `incomplete_message`), while records
            // without data (session tickets) are consumed here and leave it pending.
            // A read is cancel-safe: rustls keeps whatever part of a record it has.
            Socket::Tls(s) => futures::FutureExt::now_or_never(s.read(&mut probe)),
        };
        // Ok(0): closed (FIN, or close_notify); Ok(n): bytes no request asked for.
        polled.is_none()
    }
}
