//! A TCP proxy between workers and the master that a test can cut (close every
//! connection) or freeze (stop forwarding, like a network partition).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) struct Proxy {
    pub addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    /// Bumped to close every connection open at that moment.
    cuts: watch::Sender<u64>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0u64);
        let (f, c) = (frozen.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                let generation = *c.borrow();
                tokio::spawn(pump(ri, wo, f.clone(), c.subscribe(), generation));
                tokio::spawn(pump(ro, wi, f.clone(), c.subscribe(), generation));
            }
        });
        Proxy { addr, frozen, cuts }
    }

    /// Closes every connection now (a transient disconnect); new ones are accepted.
    pub(crate) fn cut(&self) {
        self.cuts.send_modify(|g| *g += 1);
    }

    pub(crate) fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    mut cuts: watch::Receiver<u64>,
    generation: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            if *cuts.borrow() != generation {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // Data read while frozen is held until the thaw.
                    while frozen.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            _ = cuts.changed() => return,
        }
        if *cuts.borrow() != generation {
            return;
        }
    }
}
