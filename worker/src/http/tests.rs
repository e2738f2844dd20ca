//! The client against real sockets: framing under any read split, malformed and
//! truncated answers, keep-alive reuse, TLS.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use barrage_common::metrics::FailureKind;

use super::*;

/// A one-shot HTTPS server with a self-signed certificate for `localhost`.
async fn tls_server() -> SocketAddr {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let body = "data: {\"event\":\"ping\"}\n\n";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_with_insecure_accepts_a_self_signed_certificate() {
    let addr = tls_server().await;
    let tls = crate::tls::client_config(true).unwrap();
    let target = Target::parse(&format!("https://localhost:{}", addr.port()), Some(&tls)).unwrap();
    let mut conn = Conn::new();
    assert!(conn.ready(&target, Some(addr), Duration::from_secs(5)).await.unwrap());
    let req = conn.outgoing();
    req.start("GET", "/").unwrap();
    req.header("host", "localhost").unwrap();
    req.finish(b"");
    let (status, _) = conn.send().await.unwrap();
    assert_eq!(status, 200);
    let mut body = Vec::new();
    while let Some(piece) = conn.frame().await {
        body.extend_from_slice(&piece.unwrap());
    }
    assert!(body.starts_with(b"data: "));
}

#[tokio::test]
async fn https_verifies_certificates_by_default() {
    let addr = tls_server().await;
    let tls = crate::tls::client_config(false).unwrap();
    let target = Target::parse(&format!("https://localhost:{}", addr.port()), Some(&tls)).unwrap();
    let err = Conn::new()
        .ready(&target, Some(addr), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.detail.as_str()),
        (FailureKind::Connect, "tls"),
        "{}",
        err.message
    );
    assert!(err.message.contains("certificate"), "{}", err.message);
}

#[test]
fn targets_parse() {
    let t = Target::parse("http://127.0.0.1:5001", None).unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.authority.as_str()),
        ("127.0.0.1", 5001, "127.0.0.1:5001")
    );
    assert_eq!(Target::parse("http://dify-api/", None).unwrap().port, 80);
    assert!(
        Target::parse("https://x", None).is_err(),
        "https needs a TLS configuration"
    );
    let tls = crate::tls::client_config(false).unwrap();
    let t = Target::parse("https://dify.example", Some(&tls)).unwrap();
    assert_eq!((t.port, t.tls.is_some()), (443, true));
    assert!(Target::parse("http://x:99999", None).is_err());
    assert!(Target::parse("ftp://x", None).is_err());
}

#[tokio::test]
async fn refused_connection_is_a_named_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let target = Target::parse(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let err = Conn::new()
        .ready(&target, None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.detail.as_str()), (FailureKind::Connect, "refused"));
}

/// A server that writes `response` in pieces cut at `cuts`, then closes (or holds).
async fn scripted(pieces: Vec<Vec<u8>>, hold: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 4096];
        let _ = tcp.read(&mut head).await;
        for piece in pieces {
            if tcp.write_all(&piece).await.is_err() {
                return;
            }
            let _ = tcp.flush().await;
            tokio::task::yield_now().await;
        }
        if hold {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    addr
}

fn cut(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

/// Sends one GET and reads the whole answer: status, body, and whether the
/// connection was kept for another request.
async fn exchange(pieces: Vec<Vec<u8>>, method: &str) -> Result<(u16, Vec<u8>, bool), Failure> {
    exchange_then(pieces, method, true).await
}

async fn exchange_then(pieces: Vec<Vec<u8>>, method: &str, hold: bool) -> Result<(u16, Vec<u8>, bool), Failure> {
    let addr = scripted(pieces, hold).await;
    let target = Target::parse(&format!("http://{addr}"), None).unwrap();
    let mut conn = Conn::new();
    conn.ready(&target, Some(addr), Duration::from_secs(5)).await?;
    let req = conn.outgoing();
    req.start(method, "/x")?;
    req.header("host", &addr.to_string())?;
    req.finish(b"");
    let (status, _) = conn.send().await?;
    let mut body = Vec::new();
    while let Some(piece) = conn.frame().await {
        body.extend_from_slice(&piece?);
    }
    Ok((status.as_u16(), body, conn.is_open()))
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n\
    5;ext=1\r\nhello\r\n19\r\n, world, in two chunks...\r\n0\r\nx-trailer: 1\r\n\r\n";

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// However the bytes arrive, the body is the same and the connection is kept.
    #[test]
    fn chunked_bodies_survive_any_split(cuts in proptest::collection::vec(0usize..200, 0..12)) {
        let (status, body, kept) = run(exchange(cut(CHUNKED, &cuts), "GET")).unwrap();
        proptest::prop_assert_eq!(status, 200);
        proptest::prop_assert_eq!(&body[..], &b"hello, world, in two chunks..."[..]);
        proptest::prop_assert!(kept);
    }

    #[test]
    fn content_length_bodies_survive_any_split(cuts in proptest::collection::vec(0usize..80, 0..8)) {
        let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 11\r\n\r\nhello there";
        let (status, body, kept) = run(exchange(cut(resp, &cuts), "POST")).unwrap();
        proptest::prop_assert_eq!(status, 201);
        proptest::prop_assert_eq!(&body[..], &b"hello there"[..]);
        proptest::prop_assert!(kept);
    }
}

#[test]
fn framing_follows_rfc_9112() {
    let ok = |resp: &[u8], method: &str| run(exchange(vec![resp.to_vec()], method));
    // Read until close: the body is whatever came, and the connection is gone.
    let (_, body, kept) = run(exchange_then(
        vec![b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec()],
        "GET",
        false,
    ))
    .unwrap();
    assert_eq!((&body[..], kept), (&b"until close"[..], false));
    // HEAD, 204 and 304 have no body whatever their headers say.
    let (_, body, kept) = ok(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", "HEAD").unwrap();
    assert!(body.is_empty() && kept);
    let (status, body, _) = ok(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", "GET").unwrap();
    assert_eq!((status, body.len()), (204, 0));
    // Connection: close and HTTP/1.0 without keep-alive end the connection.
    let (_, _, kept) = ok(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        "GET",
    )
    .unwrap();
    assert!(!kept);
    let (_, _, kept) = ok(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", "GET").unwrap();
    assert!(!kept);
    let (_, _, kept) = ok(
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
        "GET",
    )
    .unwrap();
    assert!(kept);
    // Bytes beyond the declared body: the connection is not trusted again.
    let (_, body, kept) = ok(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA", "GET").unwrap();
    assert_eq!((&body[..], kept), (&b"ok"[..], false));
}

#[test]
fn malformed_answers_are_named_failures() {
    let fail = |resp: &[u8]| {
        let f = run(exchange(vec![resp.to_vec()], "GET")).unwrap_err();
        (f.kind, f.detail)
    };
    let parse = (FailureKind::Io, "parse".to_string());
    assert_eq!(fail(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n"), parse);
    assert_eq!(fail(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"), parse);
    assert_eq!(
        fail(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        parse
    );
    assert_eq!(
        fail(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n11111111111111111\r\n"),
        parse,
        "a chunk size beyond 64 bits"
    );
    assert_eq!(
        fail(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX"),
        parse
    );
    assert_eq!(fail(b"NOT HTTP\r\n\r\n"), parse);
    assert_eq!(fail(b"HTTP/1.1 999999 Nope\r\n\r\n"), parse);
}

#[test]
fn a_close_before_the_end_is_incomplete() {
    let closed = |resp: &[u8]| {
        let resp = resp.to_vec();
        run(async move {
            let addr = scripted(vec![resp], false).await;
            let target = Target::parse(&format!("http://{addr}"), None).unwrap();
            let mut conn = Conn::new();
            conn.ready(&target, Some(addr), Duration::from_secs(5)).await?;
            conn.outgoing().start("GET", "/")?;
            conn.outgoing().finish(b"");
            conn.send().await?;
            conn.drain().await
        })
    };
    for resp in [
        &b""[..],
        b"HTTP/1.1 200 OK\r\ncontent-le",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
    ] {
        let f = closed(resp).unwrap_err();
        assert_eq!(
            (f.kind, f.detail.as_str()),
            (FailureKind::Io, "incomplete_message"),
            "{resp:?}"
        );
    }
    // Until-close bodies end cleanly at the close.
    assert_eq!(closed(b"HTTP/1.1 200 OK\r\n\r\nall of it").unwrap(), 9);
}

#[test]
fn requests_are_encoded_as_written() {
    let mut out = Outgoing::default();
    out.start("POST", "/v1/run?x=1").unwrap();
    out.header("host", "h:1").unwrap();
    out.header("content-length", "999").unwrap();
    out.finish(b"{}");
    assert_eq!(
        String::from_utf8(out.as_bytes().to_vec()).unwrap(),
        "POST /v1/run?x=1 HTTP/1.1\r\nhost: h:1\r\ncontent-length: 2\r\n\r\n{}"
    );
    out.start("GET", "/").unwrap();
    out.finish(b"");
    assert_eq!(
        String::from_utf8(out.as_bytes().to_vec()).unwrap(),
        "GET / HTTP/1.1\r\n\r\n"
    );
}

#[test]
fn nothing_rendered_can_split_a_request() {
    let mut out = Outgoing::default();
    for target in ["/a b", "/a\r\nX: y", "relative", "/caf\u{e9}", ""] {
        let f = out.start("GET", target).unwrap_err();
        assert_eq!(
            (f.kind, f.detail.as_str()),
            (FailureKind::Request, "build"),
            "{target:?}"
        );
    }
    out.start("GET", "/").unwrap();
    for (name, value) in [("x", "a\r\nInjected: 1"), ("x", "nul\0"), ("bad name", "v"), ("", "v")] {
        let f = out.header(name, value).unwrap_err();
        assert_eq!(
            (f.kind, f.detail.as_str()),
            (FailureKind::Request, "build"),
            "{name:?}: {value:?}"
        );
    }
    out.header("x", "tab\tand caf\u{e9} are fine").unwrap();
    assert!(out.start("G T", "/").is_err());
}

#[test]
fn a_keep_alive_connection_closed_while_idle_is_replaced() {
    run(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                // Keep-alive promised, then closed while idle (an idle timeout).
                drop(tcp);
            }
        });
        let target = Target::parse(&format!("http://{addr}"), None).unwrap();
        let mut conn = Conn::new();
        for round in 0..3 {
            let opened = conn.ready(&target, Some(addr), Duration::from_secs(5)).await.unwrap();
            assert!(opened, "round {round}: the closed connection is not reused");
            conn.outgoing().start("GET", "/").unwrap();
            conn.outgoing().finish(b"");
            conn.send().await.unwrap();
            assert_eq!(conn.drain().await.unwrap(), 2);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// With source addresses, connections bind to them in turn, as the listener sees them;
/// a target of the other family fails as `connect / source_family`.
#[tokio::test]
async fn connections_bind_to_the_source_addresses_in_turn() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut target = Target::parse(&format!("http://{addr}"), None).unwrap();
    let sources = crate::source::SourceAddrs::parse("127.0.0.2,127.0.0.3").unwrap();
    target.sources = Some(Arc::new(sources));
    let mut peers = Vec::new();
    for _ in 0..3 {
        let mut conn = Conn::new();
        assert!(conn.ready(&target, Some(addr), Duration::from_secs(5)).await.unwrap());
        assert!(conn.opened_for_request());
        let (_, peer) = listener.accept().await.unwrap();
        peers.push(peer.ip().to_string());
    }
    assert_eq!(peers, ["127.0.0.2", "127.0.0.3", "127.0.0.2"]);

    let mut v6 = target.clone();
    v6.sources = Some(Arc::new(crate::source::SourceAddrs::parse("::1").unwrap()));
    let err = Conn::new()
        .ready(&v6, Some(addr), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.detail.as_str()), (FailureKind::Connect, "source_family"));
}

/// A server on its own thread (the test blocks its runtime's thread on purpose): it
/// answers one request with an SSE head, then one event when told, and says when the
/// event's bytes went to the socket; it holds the connection until the client closes.
fn sse_server() -> (
    SocketAddr,
    std::sync::mpsc::Sender<()>,
    std::sync::mpsc::Receiver<std::time::Instant>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = tcp.read(&mut buf);
        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n";
        tcp.write_all(head).unwrap();
        if go_rx.recv().is_ok() {
            tcp.write_all(b"f\r\ndata: {\"a\":1}\n\n\r\n").unwrap();
            let _ = sent_tx.send(std::time::Instant::now());
        }
        // Until the client closes.
        while tcp.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    (addr, go_tx, sent_rx)
}

/// Connects to `addr` and sends a GET: the head read, the body to come.
async fn streaming(addr: SocketAddr, stamp: bool) -> Conn {
    let target = Target::parse(&format!("http://{addr}"), None).unwrap();
    let mut conn = Conn::new();
    conn.ready(&target, Some(addr), Duration::from_secs(5)).await.unwrap();
    conn.outgoing().start("GET", "/sse").unwrap();
    conn.outgoing().finish(b"");
    conn.stamp_reads(stamp);
    let (status, _) = conn.send().await.unwrap();
    assert_eq!(status, 200);
    conn
}

/// A read made late, as by a busy event loop, is stamped with when its bytes arrived,
/// not with when it was made; unstamped reads say nothing.
#[test]
fn stamped_reads_carry_the_arrival_not_the_read() {
    run(async {
        let (addr, go, sent) = sse_server();
        let mut conn = streaming(addr, true).await;
        go.send(()).unwrap();
        let sent_at = sent.recv().unwrap();
        // The event loop is busy elsewhere while the event waits in the socket.
        std::thread::sleep(Duration::from_millis(150));
        let data = conn.frame().await.unwrap().unwrap();
        let read_at = std::time::Instant::now();
        assert_eq!(&data[..], b"data: {\"a\":1}\n\n");
        let arrived = conn.arrived().expect("a stamped read");
        // The kernel stamped it as it was written, before the server's clock read.
        assert!(
            arrived <= sent_at + Duration::from_millis(20),
            "{:?} after the write",
            arrived - sent_at
        );
        assert!(
            read_at - arrived >= Duration::from_millis(150),
            "{:?}",
            read_at - arrived
        );
        conn.stamp_reads(false);
        assert_eq!(conn.arrived(), None);

        let (addr, go, sent) = sse_server();
        let mut conn = streaming(addr, false).await;
        go.send(()).unwrap();
        sent.recv().unwrap();
        assert!(conn.frame().await.unwrap().is_ok());
        assert_eq!(conn.arrived(), None, "plain reads are not stamped");
    });
}

/// A connection waiting for bytes holds no read buffer (an idle stream costs no
/// private buffer), and reads as before once they come; stamped reads too (a
/// `recvmsg` leaves the socket's readiness set, so the next wait starts stale).
#[test]
fn a_waiting_connection_holds_no_read_buffer() {
    for stamp in [false, true] {
        waiting_holds_no_buffer(stamp);
    }
}

fn waiting_holds_no_buffer(stamp: bool) {
    run(async {
        let (addr, go, sent) = sse_server();
        let mut conn = streaming(addr, stamp).await;
        assert!(
            futures::FutureExt::now_or_never(conn.frame()).is_none(),
            "nothing sent yet"
        );
        assert_eq!(conn.buffer_capacity(), 0, "an empty buffer held while waiting");
        go.send(()).unwrap();
        sent.recv().unwrap();
        let data = conn.frame().await.unwrap().unwrap();
        assert_eq!(&data[..], b"data: {\"a\":1}\n\n");
        drop(data);
        assert!(futures::FutureExt::now_or_never(conn.frame()).is_none());
        assert_eq!(conn.buffer_capacity(), 0);
    });
}
