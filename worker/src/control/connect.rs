//! Dialing the master: its URL, the gRPC channel (TLS, keep-alive, message limits),
//! the cluster token, and the Hello that opens the `Join` stream.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use barrage_proto::PROTOCOL_VERSION;
use barrage_proto::v1::{self, worker_message::Kind as WKind};

use crate::error::{Error, Result};

use super::config::{MasterTls, WorkerConfig};
use super::link::Joined;

/// Outgoing messages queued per connection. Reports are 1/s and heartbeats 1/s, so
/// 256 is minutes of backlog; a full queue means the link is stuck and is dropped
/// (everything unacknowledged is resent on the next connection).
const LINK_QUEUE: usize = 256;
/// Marks a connection error as the master's refusal of our token.
pub(super) const UNAUTHENTICATED: &str = "unauthenticated: ";

/// The pause after `b` when an attempt fails: doubled, at most `max`.
pub(super) fn next_backoff(b: Duration, max: Duration) -> Duration {
    (b * 2).min(max)
}

/// The gRPC URL of `--master` (`HOST:PORT`, with or without a scheme).
pub(super) fn master_url(master: &str, tls: bool) -> Result<String> {
    let scheme = if tls { "https" } else { "http" };
    let bare = master.trim_start_matches("http://").trim_start_matches("https://");
    let url = format!("{scheme}://{bare}");
    let authority = url.split_once("://").map(|(_, a)| a).unwrap_or("");
    if authority.is_empty() || !authority.contains(':') {
        return Err(Error::BadMasterAddress(master.to_string()));
    }
    Ok(url)
}

/// The Hello that opens a stream. `resume`: the epoch of the session this worker is
/// in and the last report seq it sent (None: a new worker).
pub(super) fn hello(cfg: &WorkerConfig, resume: Option<(u64, u64)>) -> v1::WorkerMessage {
    v1::WorkerMessage {
        kind: Some(WKind::Hello(v1::Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id: cfg.worker_id.clone(),
            hostname: cfg.hostname.clone(),
            cpu_cores: cfg.cpu_cores,
            build_version: concat!("barrage ", env!("CARGO_PKG_VERSION")).to_string(),
            resume_epoch: resume.map_or(0, |(epoch, _)| epoch),
            last_sent_seq: resume.map_or(0, |(_, seq)| seq),
            weight: cfg.weight,
            pid: std::process::id(),
            instance: cfg.instance,
            source_addresses: cfg.source_addresses.as_ref().map_or(0, |s| s.len() as u32),
        })),
    }
}

/// Connects to `url`, sends `hello` and opens the `Join` stream. `Err`: why not, as
/// text (starting with [`UNAUTHENTICATED`] when the master refused the token).
pub(super) async fn connect(
    url: String,
    hello: v1::WorkerMessage,
    token: Option<String>,
    tls: Option<MasterTls>,
) -> std::result::Result<Joined, String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10));
    if let Some(tls) = tls {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        if let Some(domain) = tls.domain {
            config = config.domain_name(domain);
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("TLS configuration: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
    // The master's limit both ways: the plan in Welcome can be MiBs (inline data pools),
    // beyond tonic's 4 MiB default.
    let mut client = v1::coordinator_client::CoordinatorClient::new(channel)
        .max_decoding_message_size(barrage_proto::MAX_MESSAGE)
        .max_encoding_message_size(barrage_proto::MAX_MESSAGE);
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    tx.send(hello).await.map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the cluster token is not valid header text".to_string())?;
        request.metadata_mut().insert("authorization", value);
    }
    let response = client.join(request).await.map_err(|s| {
        if s.code() == tonic::Code::Unauthenticated {
            format!("{UNAUTHENTICATED}{}", s.message())
        } else {
            s.message().to_string()
        }
    })?;
    Ok((tx, response.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addresses() {
        assert_eq!(master_url("127.0.0.1:5557", false).unwrap(), "http://127.0.0.1:5557");
        assert_eq!(master_url("http://m:5557", false).unwrap(), "http://m:5557");
        assert_eq!(master_url("m:5557", true).unwrap(), "https://m:5557");
        assert!(master_url("nohost", false).is_err());
    }
}
