//! Keep-alive connections the server ends: an idle timeout shorter than the users' wait
//! (plain or TLS with `close_notify`), a close racing the next request, and a Dify
//! stream that failed by its content but ended cleanly. The client's own connection
//! handling must never show up as the target's failures.
//!
//! The HTTP targets here are written in the test, plain or TLS (a self-signed
//! certificate from `rcgen`), and count what they answered: Barrage's figures are
//! compared with those counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use barrage_common::metrics::{EndpointStats, FailureKind};
use barrage_common::plan::RunPlan;

use crate::drive::{drive, kinds, plan};
use crate::server::{Hostile, Step};

/// What the target does with the `n`th request (1-based) it reads on a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Act {
    /// `200 OK` with a two-byte body; the connection stays open.
    Answer,
    /// Closes without a byte of answer (TLS: `close_notify`; plain: a TCP reset):
    /// an idle timeout that fired just as the request arrived.
    Close,
    /// Writes the start of a status line, then closes.
    Partial,
}

/// The target's treatment of the `n`th request on a connection.
type Acting = fn(u64) -> Act;

/// What the target counted.
#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    /// Requests answered in full.
    served: AtomicU64,
    /// Requests read and closed on without a complete answer.
    unanswered: AtomicU64,
    /// Idle connections closed by the idle timeout.
    idle_closes: AtomicU64,
}

/// An HTTP/1.1 target on `127.0.0.1:0`: closes a connection idle for `idle`, and
/// treats each request by `act`. TLS when `tls` is given.
async fn target(
    tls: Option<tokio_rustls::TlsAcceptor>,
    idle: Duration,
    act: Acting,
) -> (SocketAddr, Arc<Counts>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let counts = Arc::new(Counts::default());
    let seen = counts.clone();
    let accept = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            seen.connections.fetch_add(1, SeqCst);
            let (seen, tls) = (seen.clone(), tls.clone());
            conns.spawn(async move {
                match tls {
                    None => serve(tcp, idle, act, &seen).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve(stream, idle, act, &seen).await;
                        }
                    }
                }
            });
        }
    });
    (addr, counts, accept)
}

/// Serves one connection until the client leaves or the target closes it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Closable>(
    mut stream: S,
    idle: Duration,
    act: Acting,
    seen: &Counts,
) {
    let mut buf = Vec::new();
    let mut nth = 0;
    loop {
        match tokio::time::timeout(idle, read_head(&mut stream, &mut buf)).await {
            Err(_) => {
                seen.idle_closes.fetch_add(1, SeqCst);
                stream.close_abruptly().await;
                return;
            }
            Ok(false) => return,
            Ok(true) => {}
        }
        nth += 1;
        match act(nth) {
            Act::Answer => {
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(answer).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                seen.served.fetch_add(1, SeqCst);
            }
            Act::Close => {
                seen.unanswered.fetch_add(1, SeqCst);
                stream.close_abruptly().await;
                return;
            }
            Act::Partial => {
                seen.unanswered.fetch_add(1, SeqCst);
                // Then a clean close (FIN, or close_notify): a reset could discard the
                // bytes before the client reads them.
                let _ = stream.write_all(b"HTTP/1.1 200").await;
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// How each kind of connection ends when the server gives up on it.
trait Closable {
    async fn close_abruptly(self);
}

impl Closable for TcpStream {
    /// A reset (`SO_LINGER` 0), as a server or middlebox dropping the connection does.
    async fn close_abruptly(self) {
        let _ = self.set_zero_linger();
    }
}

impl Closable for tokio_rustls::server::TlsStream<TcpStream> {
    /// `close_notify`, then the socket closes: what uvicorn and ingress controllers do.
    async fn close_abruptly(mut self) {
        let _ = self.shutdown().await;
    }
}

/// Reads one request head (the client's GETs carry no body); false when the client left.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            return true;
        }
        let mut piece = [0u8; 4096];
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    }
}

/// A TLS acceptor with a fresh self-signed certificate (the client runs `tls_insecure`).
fn acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("certificate parameters")
        .self_signed(&key)
        .expect("a self-signed certificate");
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server configuration");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// One GET task; users wait `wait` between requests.
fn get_plan(wait: &str) -> Arc<RunPlan> {
    let text = format!(
        r#"
[limits]
connect_timeout = "2s"
tls_insecure = true

[[users]]
name = "Idle"
wait = "{wait}"

[[users.tasks]]
name = "get"
method = "GET"
path = "/"
timeout = "5s"
"#
    );
    let scenario = barrage_common::scenario::parse_str(&text, config::FileFormat::Toml, "keepalive.toml", &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    Arc::new(scenario.plan)
}

fn url(tls: bool, addr: SocketAddr) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

/// Our figures against the target's: every request we counted was answered, every
/// connection it accepted we opened.
#[track_caller]
fn assert_matches_target(stats: &EndpointStats, counts: &Counts, what: &str) {
    assert_eq!(stats.counts.failures, 0, "{what}: no failures: {:?}", kinds(stats));
    assert_eq!(
        counts.served.load(SeqCst),
        stats.counts.requests,
        "{what}: requests the target answered vs requests we counted"
    );
    assert_eq!(
        counts.connections.load(SeqCst),
        stats.counts.connections_opened,
        "{what}: connections the target accepted vs connections we counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_shorter_than_the_wait_costs_no_request() {
    // The target closes idle connections after 100 ms; users wait 500 ms. Over TLS the
    // close is `close_notify` (uvicorn's 5 s keep-alive, ingress controllers), which
    // a peek at the socket took for "still open": every request after a pause failed
    // as `incomplete_message`. Plain: a reset, which was already detected.
    for tls in [true, false] {
        let what = if tls { "TLS close_notify" } else { "plain reset" };
        let (addr, counts, accept) = target(tls.then(acceptor), Duration::from_millis(100), |_| Act::Answer).await;
        let stats = drive(get_plan("constant(500ms)"), &url(tls, addr), 2, 6).await;
        accept.abort();
        assert_matches_target(&stats, &counts, what);
        assert!(
            counts.idle_closes.load(SeqCst) >= 2,
            "{what}: the target did close idle connections"
        );
        assert_eq!(
            stats.counts.retries, 0,
            "{what}: the closed connection is seen before the request is written, not retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_closed_before_any_answer_is_retried_once() {
    // The target reads the second request of each connection and closes without a byte
    // of answer: its idle timeout racing our request. Nothing was processed, so the
    // request goes once more on a fresh connection, counted as a retry, not a failure.
    for tls in [true, false] {
        let what = if tls { "TLS" } else { "plain" };
        let act: Acting = |nth| if nth == 2 { Act::Close } else { Act::Answer };
        let (addr, counts, accept) = target(tls.then(acceptor), Duration::from_secs(30), act).await;
        let stats = drive(get_plan("constant(0)"), &url(tls, addr), 1, 8).await;
        accept.abort();
        assert_matches_target(&stats, &counts, what);
        let closed = counts.unanswered.load(SeqCst);
        assert!(closed >= 3, "{what}: the target closed {closed} reused connections");
        assert_eq!(
            stats.counts.retries, closed,
            "{what}: one retry per request the target dropped"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_connection_or_a_begun_answer_is_never_retried() {
    // Closed on the first request of a fresh connection: a failure, not a retry (the
    // target may be refusing us). Closed after part of the status line on a reused
    // one: the request may have been processed, so it is a failure too.
    let cases: [(Acting, bool); 2] = [
        (|_| Act::Close, true),
        (|nth| if nth == 2 { Act::Partial } else { Act::Answer }, false),
    ];
    for (act, first) in cases {
        let (addr, counts, accept) = target(None, Duration::from_secs(30), act).await;
        let stats = drive(get_plan("constant(0)"), &url(false, addr), 1, 6).await;
        accept.abort();
        let unanswered = counts.unanswered.load(SeqCst);
        assert_eq!(stats.counts.retries, 0, "first request: {first}");
        assert_eq!(
            stats.counts.failures,
            unanswered,
            "every dropped request is a failure: {:?}",
            kinds(&stats)
        );
        assert_eq!(
            counts.served.load(SeqCst) + unanswered,
            stats.counts.requests,
            "requests the target read vs requests we counted"
        );
        assert!(
            stats.failure_kinds.keys().all(|(k, _)| k == FailureKind::Io.as_str()),
            "{:?}",
            kinds(&stats)
        );
    }
}

/// One HTTP/1.1 chunk.
fn chunk(data: &[u8]) -> Bytes {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verdict_on_a_cleanly_ended_stream_keeps_the_connection() {
    // dify-api ends a failed run's stream cleanly (the last chunk, keep-alive): the
    // failure is the run's, not the connection's. One user, one connection.
    let server = Hostile::start(|n| {
        let event: &[u8] = if n % 2 == 0 {
            b"data: {\"event\": \"workflow_finished\", \"task_id\": \"t1\", \"data\": {\"status\": \"failed\", \"error\": \"boom\"}}\n\n"
        } else {
            b"data: {\"event\": \"error\", \"task_id\": \"t1\", \"status\": 400, \"code\": \"invalid_param\", \"message\": \"boom\"}\n\n"
        };
        vec![
            Step::Send(Bytes::from_static(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            )),
            Step::Send(chunk(b"data: {\"event\": \"workflow_started\", \"task_id\": \"t1\", \"data\": {}}\n\n")),
            Step::Send(chunk(event)),
            Step::Send(Bytes::from_static(b"0\r\n\r\n")),
        ]
    })
    .await;
    let stats = drive(plan("dify", ""), &server.url(), 1, 6).await;
    assert_eq!(
        stats.counts.failures,
        stats.counts.requests,
        "every run failed: {:?}",
        kinds(&stats)
    );
    assert!(
        stats
            .failure_kinds
            .keys()
            .all(|(k, _)| k == FailureKind::TerminalStatus.as_str() || k == FailureKind::ErrorEvent.as_str()),
        "{:?}",
        kinds(&stats)
    );
    assert_eq!(
        server.requests(),
        stats.counts.requests,
        "requests the target saw vs ours"
    );
    assert_eq!(server.connections(), 1, "the target accepted one connection");
    assert_eq!(stats.counts.connections_opened, 1, "we opened one connection");
}
