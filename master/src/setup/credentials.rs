//! Secrets and access from files and the environment: the worker port's TLS material,
//! the cluster token and the web API's token. Never from a flag: flags show in `ps`.

use std::net::SocketAddr;
use std::path::Path;

use crate::cli::LoadArgs;
use crate::exit::Failure;

/// The web API's address and token, unless `--headless`: `BARRAGE_WEB_TOKEN`, or a
/// random one (an error with `--web-auth` and no token).
pub(super) fn web_setup(load: &LoadArgs) -> Result<Option<(SocketAddr, crate::web::WebConfig)>, Failure> {
    if load.headless {
        return Ok(None);
    }
    let addr = SocketAddr::new(load.web_host, load.web_port);
    crate::web::check_bind(&addr, load.web_auth).map_err(Failure::usage)?;
    let token = match env_lookup("BARRAGE_WEB_TOKEN").filter(|t| !t.is_empty()) {
        Some(t) => t,
        None if load.web_auth => return Err(Failure::usage("--web-auth needs BARRAGE_WEB_TOKEN in the environment")),
        None => format!("{:032x}", rand::random::<u128>()),
    };
    Ok(Some((
        addr,
        crate::web::WebConfig {
            token,
            auth_all: load.web_auth,
        },
    )))
}

/// Reads a PEM file named by a flag, naming the flag in the error.
pub(crate) fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("{flag} {}: cannot read: {e}", path.display())))
}

/// TLS for the worker port from `--tls-cert`/`--tls-key` (and `--tls-client-ca` for
/// mutual TLS); None without them.
pub(super) fn server_tls(load: &LoadArgs) -> Result<Option<crate::cluster::ServerTls>, Failure> {
    match (&load.tls_cert, &load.tls_key) {
        (None, None) if load.tls_client_ca.is_some() => Err(Failure::usage(
            "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)",
        )),
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(crate::cluster::ServerTls {
            cert_pem: read_pem("--tls-cert", cert)?,
            key_pem: read_pem("--tls-key", key)?,
            client_ca_pem: load
                .tls_client_ca
                .as_deref()
                .map(|p| read_pem("--tls-client-ca", p))
                .transpose()?,
        })),
        _ => Err(Failure::usage("--tls-cert and --tls-key go together")),
    }
}

/// The cluster token: `BARRAGE_CLUSTER_TOKEN`, or the first line of the file named by
/// `BARRAGE_CLUSTER_TOKEN_FILE` (a Kubernetes Secret mount). Never a flag: flags show in `ps`.
pub(crate) fn cluster_token() -> Result<Option<String>, Failure> {
    if let Some(path) = env_lookup("BARRAGE_CLUSTER_TOKEN_FILE").filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::usage(format!("BARRAGE_CLUSTER_TOKEN_FILE={path}: cannot read: {e}")))?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.is_empty() {
            return Err(Failure::usage(format!(
                "BARRAGE_CLUSTER_TOKEN_FILE={path}: the file is empty"
            )));
        }
        return Ok(Some(token));
    }
    Ok(env_lookup("BARRAGE_CLUSTER_TOKEN").filter(|t| !t.is_empty()))
}

/// Reads an environment variable; None when unset or not UTF-8.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
