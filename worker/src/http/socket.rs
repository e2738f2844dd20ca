//! The socket under a connection: plain TCP or TLS over it, the check that an idle
//! kept-alive connection is still open, and reads stamped with when their bytes
//! arrived.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt::ReceiveTimestampns};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// A connection's byte stream.
pub(super) enum Socket {
    /// http: TCP.
    Plain(TcpStream),
    /// https: TLS over TCP (boxed: the TLS state is large).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Socket {
    /// Waits until a read may find bytes, holding no buffer: `on_wait` runs once if it
    /// has to wait, so the caller can give its empty read buffer back meanwhile (an
    /// idle stream then holds none; see `Conn::read_more`). Over TLS it returns at
    /// once: rustls keeps its own buffers, and readiness of the socket under it does
    /// not mean a record is complete.
    pub(super) async fn readable(&mut self, on_wait: impl FnOnce()) -> std::io::Result<()> {
        let Socket::Plain(s) = self else {
            return Ok(());
        };
        let mut on_wait = Some(on_wait);
        std::future::poll_fn(|cx| {
            let polled = s.poll_read_ready(cx);
            if polled.is_pending()
                && let Some(f) = on_wait.take()
            {
                f();
            }
            polled
        })
        .await
    }

    /// Asks the kernel to stamp what this socket receives with its arrival time
    /// (`SO_TIMESTAMPNS`), for [`Socket::read_stamped`]; false over TLS or when the
    /// kernel refuses.
    pub(super) fn stamp_arrivals(&self) -> bool {
        match self {
            Socket::Plain(s) => setsockopt(s, ReceiveTimestampns, &true).is_ok(),
            Socket::Tls(_) => false,
        }
    }

    /// One read after [`Socket::readable`]: what the kernel has (at least one byte, 0
    /// at EOF, `WouldBlock` when the readiness was stale: wait again), up to `want`
    /// bytes; over TLS, waits for a record instead. With `stamp`, also when the bytes
    /// arrived at this host: the kernel's receive timestamp of the last of them (see
    /// [`Socket::stamp_arrivals`]; `None` over TLS or without one).
    ///
    /// Never waiting with the buffer on plain TCP is what lets an idle connection hold
    /// none (a pending read would keep it). Stamping: a busy event loop polls a socket
    /// some time after its bytes came, and stamping a stream's first event with the
    /// read's own clock counted that delay as the target's; the kernel stamps a
    /// segment as it is received, before any of ours.
    pub(super) async fn read_some(
        &mut self,
        buf: &mut BytesMut,
        want: usize,
        stamp: bool,
    ) -> std::io::Result<(usize, Option<Instant>)> {
        let s = match self {
            Socket::Plain(s) => s,
            Socket::Tls(s) => return Ok((s.read_buf(buf).await?, None)),
        };
        if !stamp {
            return Ok((s.try_read_buf(buf)?, None));
        }
        let fd = s.as_raw_fd();
        let len = buf.len();
        // Zeroed, not left uninitialized: reading into spare capacity needs unsafe.
        // Only a stream's first reads come this way.
        buf.resize(len + want, 0);
        let read = s.try_io(Interest::READABLE, || recv_stamped(fd, &mut buf[len..]));
        let n = read.as_ref().map_or(0, |(n, _)| *n);
        buf.truncate(len + n);
        read.map(|(n, at)| (n, at.and_then(arrival)))
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

/// Room for one `SO_TIMESTAMPNS` control message, aligned as the kernel writes it.
#[repr(align(8))]
struct Control([u8; 64]);

/// One `recvmsg` into `dst`: the bytes read and the kernel's receive timestamp.
fn recv_stamped(fd: std::os::fd::RawFd, dst: &mut [u8]) -> std::io::Result<(usize, Option<SystemTime>)> {
    let mut iov = [std::io::IoSliceMut::new(dst)];
    let mut control = Control([0; 64]);
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut control.0), MsgFlags::empty())?;
    let mut at = None;
    for c in msg.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmTimestampns(ts) = c {
            let (secs, nanos) = (u64::try_from(ts.tv_sec()), u32::try_from(ts.tv_nsec()));
            if let (Ok(secs), Ok(nanos)) = (secs, nanos) {
                at = SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos));
            }
        }
    }
    Ok((msg.bytes, at))
}

/// The kernel's receive time (wall clock) on our monotonic clock: as long ago as it
/// is on the wall clock now. A stamp from the future or over a minute old (the wall
/// clock stepped meanwhile) is not trusted.
fn arrival(at: SystemTime) -> Option<Instant> {
    let age = SystemTime::now().duration_since(at).ok()?;
    if age > Duration::from_secs(60) {
        return None;
    }
    Instant::now().checked_sub(age)
}
