//! Who may reach the master: constant-time token checks (cluster and web tokens) and
//! the worker port's bind policy. A worker that says Hello receives the plan with its
//! `${ENV}` secrets substituted, so the port is open to strangers only on request.

use std::net::IpAddr;

use subtle::ConstantTimeEq;

/// Whether `given` is the expected token, in time independent of where they differ
/// (a byte-by-byte `==` returns at the first difference, which a network peer can
/// time). Only the length may leak, as with any fixed-size secret.
pub fn token_matches(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())))
}

/// Interface of the worker port when the operator names none: every interface when
/// workers must authenticate, else loopback only.
pub const OPEN_BIND: &str = "0.0.0.0";
/// Interface of the worker port when workers need not authenticate: this machine only.
pub const LOOPBACK_BIND: &str = "127.0.0.1";

/// How the worker port may be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindPolicy {
    /// The interface to listen on.
    pub host: String,
    /// A warning for the operator: the port is open to unauthenticated workers.
    pub warning: Option<String>,
}

/// Decides the worker port's interface. `authenticated`: a cluster token or mutual
/// TLS (`--tls-client-ca`) is set. An error is a usage error naming both fixes.
pub fn bind_policy(
    requested: Option<&str>,
    authenticated: bool,
    allow_unauthenticated: bool,
) -> Result<BindPolicy, String> {
    let host = match requested {
        Some(h) => h.to_string(),
        None if authenticated || allow_unauthenticated => OPEN_BIND.to_string(),
        None => LOOPBACK_BIND.to_string(),
    };
    if authenticated || is_loopback(&host) {
        return Ok(BindPolicy { host, warning: None });
    }
    if allow_unauthenticated {
        let warning = format!(
            "the worker port listens on {host} without a cluster token or mutual TLS \
             (--allow-unauthenticated-workers): anyone who reaches it can join and receive \
             the plan, API keys included"
        );
        return Ok(BindPolicy {
            host,
            warning: Some(warning),
        });
    }
    Err(format!(
        "--master-bind-host {host}: workers beyond this machine would receive the plan, API keys \
         included, without proving who they are; set a cluster token (BARRAGE_CLUSTER_TOKEN or \
         BARRAGE_CLUSTER_TOKEN_FILE, on the master and every worker) or mutual TLS \
         (--tls-cert, --tls-key, --tls-client-ca), or accept the risk with \
         --allow-unauthenticated-workers"
    ))
}

/// Loopback addresses and the name `localhost`; any other name counts as beyond.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches(Some("s3cret"), "s3cret"));
        assert!(!token_matches(Some("s3cres"), "s3cret"));
        assert!(!token_matches(Some("s3cret "), "s3cret"));
        assert!(!token_matches(Some(""), "s3cret"));
        assert!(!token_matches(None, "s3cret"));
    }

    #[test]
    fn without_authentication_the_default_bind_is_loopback() {
        let p = bind_policy(None, false, false).unwrap();
        assert_eq!(p.host, "127.0.0.1");
        assert_eq!(p.warning, None);
        let p = bind_policy(None, true, false).unwrap();
        assert_eq!(p.host, "0.0.0.0");
        assert_eq!(p.warning, None);
    }

    #[test]
    fn beyond_loopback_without_authentication_needs_the_flag() {
        for host in ["0.0.0.0", "::", "10.0.0.7", "master.example"] {
            let e = bind_policy(Some(host), false, false).unwrap_err();
            assert!(
                e.contains("BARRAGE_CLUSTER_TOKEN")
                    && e.contains("--tls-client-ca")
                    && e.contains("--allow-unauthenticated-workers"),
                "{e}"
            );
            let p = bind_policy(Some(host), false, true).unwrap();
            assert_eq!(p.host, host);
            assert!(p.warning.is_some());
            assert_eq!(bind_policy(Some(host), true, false).unwrap().warning, None);
        }
        for host in ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"] {
            assert_eq!(bind_policy(Some(host), false, false).unwrap().warning, None, "{host}");
        }
        let p = bind_policy(None, false, true).unwrap();
        assert_eq!(p.host, "0.0.0.0");
        assert!(p.warning.is_some());
    }
}
