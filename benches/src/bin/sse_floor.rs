//! The floor under SSE client cost: N connections to a Dify-style streaming endpoint,
//! each read into a buffer and its `\n\n` event boundaries counted, nothing else (no
//! parsing, no JSON, no timing, no recording). `benches/system.py` runs it next to a
//! Barrage worker against the same mock and divides each one's CPU by the events
//! served, so "cost per event" has a measured floor to compare with.
//!
//!     sse-floor --target 127.0.0.1:5001 --streams 500 --duration 20s

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Read-only SSE client: the floor of CPU per event (see benches/README.md)")]
struct Args {
    /// The mock's address, HOST:PORT (loopback only).
    #[arg(long)]
    target: String,
    /// Concurrent streams, each on its own keep-alive connection, restarted when it ends.
    #[arg(long, default_value_t = 500)]
    streams: u32,
    /// How long to run.
    #[arg(long, default_value = "20s", value_parser = barrage_common::duration::parse)]
    duration: Duration,
    /// Single-threaded runtimes to spread the streams over (like the worker's --threads).
    #[arg(long, default_value_t = 1)]
    threads: u32,
}

const REQUEST_BODY: &str = r#"{"inputs": {}, "response_mode": "streaming", "user": "floor"}"#;

/// The last bytes of a chunked response: the end of the last chunk, then the zero-size chunk.
const CHUNKED_END: &[u8] = b"\r\n0\r\n\r\n";

/// One stream after another until the deadline, on one keep-alive connection as the
/// clients we compare with use (a new one only when the server closes it); returns
/// events seen. A stream ends at the chunked body's terminator: the mock answers every
/// stream chunked, its events hold no CR, so a read ending in [`CHUNKED_END`] (kept
/// across reads in `tail`) is the end of the response.
async fn stream_loop(target: String, until: tokio::time::Instant) -> Result<u64> {
    let request = format!(
        "POST /v1/workflows/run HTTP/1.1\r\nhost: {target}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{REQUEST_BODY}",
        REQUEST_BODY.len()
    );
    let mut events = 0u64;
    let mut buf = vec![0u8; 4096];
    'connection: while tokio::time::Instant::now() < until {
        let mut tcp = TcpStream::connect(&target)
            .await
            .with_context(|| format!("connecting to {target}"))?;
        tcp.set_nodelay(true)?;
        while tokio::time::Instant::now() < until {
            tcp.write_all(request.as_bytes()).await?;
            let (mut last, mut tail) = (0u8, [0u8; CHUNKED_END.len()]);
            loop {
                let read = tokio::time::timeout_at(until, tcp.read(&mut buf)).await;
                let Ok(n) = read else { return Ok(events) };
                let n = n?;
                if n == 0 {
                    continue 'connection;
                }
                for &b in &buf[..n] {
                    if b == b'\n' && last == b'\n' {
                        events += 1;
                    }
                    last = b;
                }
                // The response's last CHUNKED_END.len() bytes, whichever reads they came in.
                let keep = CHUNKED_END.len().min(n);
                tail.copy_within(keep.., 0);
                let at = CHUNKED_END.len() - keep;
                tail[at..].copy_from_slice(&buf[n - keep..n]);
                if tail == CHUNKED_END {
                    break;
                }
            }
        }
    }
    Ok(events)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.target.starts_with("127.0.0.1:") && !args.target.starts_with("localhost:") {
        bail!("--target must be on loopback (127.0.0.1:PORT): benchmarks load only this machine");
    }
    let until = tokio::time::Instant::now() + args.duration;
    let mut threads = Vec::new();
    for t in 0..args.threads.max(1) {
        let (target, n) = (
            args.target.clone(),
            args.streams / args.threads.max(1) + u32::from(t < args.streams % args.threads.max(1)),
        );
        threads.push(std::thread::spawn(move || -> Result<u64> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let tasks: Vec<_> = (0..n)
                    .map(|_| tokio::spawn(stream_loop(target.clone(), until)))
                    .collect();
                let mut total = 0;
                for task in tasks {
                    total += task.await??;
                }
                Ok(total)
            })
        }));
    }
    let mut events = 0;
    for t in threads {
        events += t.join().map_err(|_| anyhow::anyhow!("a reader thread panicked"))??;
    }
    println!("sse-floor: {events} events read");
    Ok(())
}
