//! [`CappedListener`]: serves at most N TCP connections at once, as a dify-api pod does
//! with `SERVER_WORKER_CONNECTIONS` (gunicorn's gevent `worker_connections`). Past the
//! cap, new connections are accepted but not read: their requests wait, queued, until a
//! served connection closes, exactly as a client of a saturated pod sees it (connect
//! succeeds, the answer is late). Nothing is refused.
//!
//! A served connection keeps its slot until it closes, idle keep-alive time included.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::truth::Counters;

/// Connections held accepted-but-unserved at most; past this they wait in the kernel's
/// listen backlog instead (tokio's default backlog is 1024 too), still not refused.
const MAX_QUEUED: usize = 1024;

/// A [`Listener`] handing out connections only while fewer than the cap are served.
pub(crate) struct CappedListener<L: Listener> {
    inner: L,
    /// One permit per connection that may be served at once.
    slots: Arc<Semaphore>,
    /// Accepted connections waiting for a slot, oldest first. Lives in `self`, not in
    /// the `accept` future, so nothing is lost when axum drops that future at shutdown.
    queue: VecDeque<(L::Io, L::Addr)>,
    counters: Arc<Counters>,
}

impl<L: Listener> CappedListener<L> {
    /// `max` = 0 means no cap (still counted).
    pub(crate) fn new(inner: L, max: usize, counters: Arc<Counters>) -> Self {
        let permits = if max == 0 { Semaphore::MAX_PERMITS } else { max };
        Self {
            inner,
            slots: Arc::new(Semaphore::new(permits)),
            queue: VecDeque::new(),
            counters,
        }
    }

    fn serve(&self, io: L::Io, permit: OwnedSemaphorePermit) -> Served<L::Io> {
        self.counters.connection_served(true);
        Served {
            io,
            _permit: permit,
            counters: self.counters.clone(),
        }
    }
}

impl<L: Listener> Listener for CappedListener<L>
where
    L::Addr: Send,
{
    type Io = Served<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if self.queue.is_empty() {
                let (io, addr) = self.inner.accept().await;
                self.counters.connection_accepted();
                match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => return (self.serve(io, permit), addr),
                    Err(_) => {
                        self.queue.push_back((io, addr));
                        self.counters.connection_queued(true);
                    }
                }
                continue;
            }
            // Both futures are cancel-safe: a dropped `acquire_owned` only loses its
            // place in the semaphore's queue, and `accept` loses nothing.
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => {
                    // The semaphore is never closed, so acquiring cannot fail; if it
                    // somehow did, the connection stays queued and we try again.
                    let Ok(permit) = permit else { continue };
                    let Some((io, addr)) = self.queue.pop_front() else { continue };
                    self.counters.connection_queued(false);
                    return (self.serve(io, permit), addr);
                }
                (io, addr) = self.inner.accept(), if self.queue.len() < MAX_QUEUED => {
                    self.counters.connection_accepted();
                    self.queue.push_back((io, addr));
                    self.counters.connection_queued(true);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl<L: Listener> Drop for CappedListener<L> {
    /// Queued connections are closed unserved (at shutdown); take them off the gauge.
    fn drop(&mut self) {
        for _ in self.queue.drain(..) {
            self.counters.connection_queued(false);
        }
    }
}

/// A served connection: holds its slot until the connection is dropped.
pub(crate) struct Served<Io> {
    io: Io,
    _permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl<Io> Drop for Served<Io> {
    fn drop(&mut self) {
        self.counters.connection_served(false);
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Served<Io> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Served<Io> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
