//! The target of a user class ([`Target`]): scheme, host and port from its URL, and
//! the TLS configuration an https target connects with.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;

use barrage_common::metrics::FailureKind;

use super::failure::Failure;
use crate::source::SourceAddrs;

/// A parsed target: `http://host:port` or `https://host:port`.
#[derive(Clone)]
pub(crate) struct Target {
    /// `host:port` as the Host header wants it.
    pub(crate) authority: String,
    /// The host as written (an IPv6 address in brackets), to look up.
    pub(crate) host: String,
    /// The port (80 or 443 when the URL gives none).
    pub(crate) port: u16,
    /// For https: the client configuration and the name the certificate must carry.
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// Local addresses its connections bind to in turn (`--source-addresses`; None:
    /// the kernel picks the source address, as for any client).
    pub(crate) sources: Option<Arc<SourceAddrs>>,
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
    pub(crate) fn parse(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Target, String> {
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
            sources: None,
        })
    }

    /// The first address the host resolves to (when no address is pinned).
    pub(super) async fn resolve(&self) -> Result<SocketAddr, Failure> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let mut addrs = tokio::net::lookup_host((host, self.port))
            .await
            .map_err(|e| Failure::new(FailureKind::Connect, "dns", format!("resolving {}: {e}", self.host)))?;
        addrs.next().ok_or_else(|| {
            Failure::new(
                FailureKind::Connect,
                "dns",
                format!("{} resolves to no address", self.host),
            )
        })
    }
}
