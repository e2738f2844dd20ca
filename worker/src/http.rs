//! The HTTP/1.1 client side: one keep-alive connection owned by one virtual user.
//!
//! hyper's low-level `client::conn::http1` rather than a pooled client: a user owns its
//! connection like a browser tab would, the pool lookup disappears from the hot path,
//! and "connections opened" is exactly what we count.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
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

/// A parsed target: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` as the Host header wants it.
    pub authority: String,
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("\"{url}\" is not an http:// target"))?
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h.to_string(),
                p.parse::<u16>().map_err(|_| format!("\"{url}\": bad port `{p}`"))?,
            ),
            _ => (rest.to_string(), 80),
        };
        if host.is_empty() {
            return Err(format!("\"{url}\" has no host"));
        }
        Ok(Target {
            authority: rest.to_string(),
            host,
            port,
        })
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
    pub async fn ready(&mut self, target: &Target, connect_timeout: Duration) -> Result<bool, Failure> {
        if let Some(sender) = &mut self.sender {
            if sender.ready().await.is_ok() {
                return Ok(false);
            }
            self.sender = None;
        }
        let addr = target.resolve().await?;
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
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::new(failure::CONNECT, "handshake", e.to_string()))?;
        // The connection task ends when the sender is dropped or the peer closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
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

    #[test]
    fn targets_parse() {
        let t = Target::parse("http://127.0.0.1:5001").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("127.0.0.1", 5001, "127.0.0.1:5001")
        );
        assert_eq!(Target::parse("http://dify-api/").unwrap().port, 80);
        assert!(Target::parse("https://x").is_err());
        assert!(Target::parse("http://x:99999").is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_a_named_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let target = Target::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = Conn::new().ready(&target, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!((err.kind, err.detail.as_str()), (failure::CONNECT, "refused"));
    }
}
