//! `barrage worker`: join a master and run whatever it assigns, until the master ends
//! the run or `--give-up-after` passes without one.

use tracing::info;

use crate::cli::WorkerArgs;
use crate::exit::{EXIT_CLUSTER, Failure};
use crate::setup::credentials::{cluster_token, read_pem};
use crate::signals::shutdown_signal;

/// Runs `barrage worker`: 0 when the worker finished, 3 when the master refused it or
/// could not be reached, 2 for a flag or TLS file problem.
pub(super) async fn command(args: WorkerArgs) -> anyhow::Result<u8> {
    let mut cfg = barrage_worker::WorkerConfig::new(args.master);
    if let Some(id) = args.worker_id {
        cfg.worker_id = id;
    }
    cfg.weight = args.weight.unwrap_or(0);
    cfg.threads = args.threads.map_or(0, |t| t as usize);
    cfg.give_up_after = args.give_up_after;
    if let Some(list) = &args.source_addresses {
        let sources = source_addresses(list)?;
        info!(
            addresses = sources.len(),
            "binding target connections to source addresses in turn"
        );
        cfg.source_addresses = Some(std::sync::Arc::new(sources));
    }
    cfg.token = cluster_token()?;
    cfg.tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (None, None, None) => None,
        (Some(ca), cert, key) => Some(barrage_worker::MasterTls {
            ca_pem: read_pem("--tls-ca", ca)?,
            identity: match (cert, key) {
                (Some(c), Some(k)) => Some((read_pem("--tls-cert", c)?, read_pem("--tls-key", k)?)),
                (None, None) => None,
                _ => return Err(Failure::usage("--tls-cert and --tls-key go together").into()),
            },
            domain: args.tls_domain.clone(),
        }),
        (None, _, _) => return Err(Failure::usage("--tls-cert/--tls-key need --tls-ca (the CA of the master)").into()),
    };
    match barrage_worker::run(cfg, shutdown_signal()).await {
        Ok(exit) => {
            info!(?exit, "worker finished");
            Ok(0)
        }
        Err(barrage_worker::Error::Refused(m)) => Err(Failure {
            code: EXIT_CLUSTER,
            message: format!("the master refused this worker: {m}"),
        }
        .into()),
        Err(e) => Err(Failure {
            code: EXIT_CLUSTER,
            message: e.to_string(),
        }
        .into()),
    }
}

/// `--source-addresses LIST` parsed, and each address bound once: a usage error (exit
/// 2) naming the entry or the address that is wrong.
pub(super) fn source_addresses(list: &str) -> Result<barrage_worker::SourceAddrs, Failure> {
    barrage_worker::SourceAddrs::parse(list)
        .and_then(|s| s.check_bindable().map(|()| s))
        .map_err(|e| Failure::usage(format!("--source-addresses: {e}")))
}
