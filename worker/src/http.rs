//! The HTTP/1.1 client side: one keep-alive connection owned by one virtual user.
//!
//! hyper's low-level `client::conn::http1` rather than a pooled client: a user owns its
//! connection like a browser tab would, the pool lookup disappears from the hot path,
//! and "connections opened" is exactly what we count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use barrage_common::metrics::failure;

/// Why a request failed, before the response was classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: &'static str,
    pub detail: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: &'static str, detail: impl Into<String>, message: impl Into<String>) -> Self {
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

    /// Every address the host resolves to (a headless Service gives one per pod).
    pub async fn resolve_all(&self) -> Result<Vec<SocketAddr>, Failure> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs = tokio::net::lookup_host((host, self.port))
            .await
            .map_err(|e| Failure::new(failure::CONNECT, "dns", format!("resolving {}: {e}", self.host)))?;
        let mut out: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        Ok(out)
    }

    async fn resolve(&self) -> Result<SocketAddr, Failure> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let mut addrs = tokio::net::lookup_host((host, self.port))
            .await
            .map_err(|e| Failure::new(failure::CONNECT, "dns", format!("resolving {}: {e}", self.host)))?;
        addrs
            .next()
            .ok_or_else(|| Failure::new(failure::CONNECT, "dns", format!("{} resolves to no address", self.host)))
    }
}

/// One user's connection; reconnects on demand.
pub struct Conn {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl Conn {
    pub fn new() -> Self {
        Conn { sender: None }
    }

    /// Drops the connection (after a protocol error or an unread body).
    pub fn reset(&mut self) {
        self.sender = None;
    }

    /// Makes sure a usable connection exists; returns true when it opened a new one.
    /// `pinned` connects to that address instead of resolving the host again.
    pub async fn ready(
        &mut self,
        target: &Target,
        pinned: Option<SocketAddr>,
        connect_timeout: Duration,
    ) -> Result<bool, Failure> {
        if let Some(sender) = &mut self.sender {
            if sender.ready().await.is_ok() {
                return Ok(false);
            }
            self.sender = None;
        }
        let addr = match pinned {
            Some(a) => a,
            None => target.resolve().await?,
        };
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Failure::new(
                    failure::CONNECT,
                    "timeout",
                    format!("connecting to {addr} took over {connect_timeout:?}"),
                )
            })?
            .map_err(|e| Failure::new(failure::CONNECT, io_detail(&e), format!("connecting to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let handshake_failed = |e: hyper::Error| Failure::new(failure::CONNECT, "handshake", e.to_string());
        // The connection task ends when the sender is dropped or the peer closes.
        let sender = match &target.tls {
            None => {
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(handshake_failed)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                sender
            }
            Some((config, name)) => {
                let tls = tokio::time::timeout(
                    connect_timeout,
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name.clone(), stream),
                )
                .await
                .map_err(|_| Failure::new(failure::CONNECT, "tls", format!("TLS handshake with {addr} timed out")))?
                .map_err(|e| Failure::new(failure::CONNECT, "tls", format!("TLS handshake with {addr}: {e}")))?;
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(handshake_failed)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                sender
            }
        };
        self.sender = Some(sender);
        Ok(true)
    }

    /// Sends a request on the ready connection and waits for the response head.
    pub async fn send(&mut self, req: http::Request<Full<Bytes>>) -> Result<http::Response<Incoming>, Failure> {
        let Some(sender) = &mut self.sender else {
            return Err(Failure::new(failure::REQUEST, "no_connection", "no connection"));
        };
        match sender.send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                self.sender = None;
                Err(hyper_failure(&e))
            }
        }
    }
}

pub fn hyper_failure(e: &hyper::Error) -> Failure {
    let detail = if e.is_incomplete_message() {
        "incomplete_message"
    } else if e.is_parse() {
        "parse"
    } else if e.is_closed() || e.is_canceled() {
        "closed"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "other"
    };
    Failure::new(failure::IO, detail, e.to_string())
}

fn io_detail(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        TimedOut => "timeout",
        AddrNotAvailable | AddrInUse => "no_local_port",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        let req = http::Request::get("/")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
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
            (failure::CONNECT, "tls"),
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
        assert_eq!((err.kind, err.detail.as_str()), (failure::CONNECT, "refused"));
    }
}
