//! TLS and mutual TLS between master and workers, with certificates made here.

use std::time::Duration;

use barrage_master::cluster::ServerTls;
use barrage_worker::MasterTls;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::support::*;

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    /// A client certificate from another CA: must be refused under mutual TLS.
    stranger: (String, String),
}

fn leaf(name: &str, issuer: &CertifiedIssuer<'_, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let ca = ca();
    let other = ca_other();
    Pki {
        ca_pem: ca.pem(),
        server: leaf("localhost", &ca),
        client: leaf("worker-1", &ca),
        stranger: leaf("intruder", &other),
    }
}

fn ca_other() -> CertifiedIssuer<'static, KeyPair> {
    ca()
}

fn tls_worker(
    port: u16,
    id: &str,
    tls: MasterTls,
) -> tokio::task::JoinHandle<barrage_worker::Result<barrage_worker::Exit>> {
    let mut cfg = barrage_worker::WorkerConfig::new(format!("localhost:{port}"));
    cfg.worker_id = id.to_string();
    cfg.give_up_after = Some(Duration::from_secs(6));
    cfg.tls = Some(tls);
    tokio::spawn(barrage_worker::run(cfg, std::future::pending()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_over_tls_and_mutual_tls_refuses_strangers() {
    let pki = pki();
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 2, 100.0, Duration::from_secs(2));
    let mut s = setup(&workflow_scenario("constant(0.05)"), &load, 1);
    s.run.expect_workers_max_wait = Some(Duration::from_secs(15));
    s.opts.tls = Some(ServerTls {
        cert_pem: pki.server.0.clone().into(),
        key_pem: pki.server.1.clone().into(),
        client_ca_pem: Some(pki.ca_pem.clone().into()),
    });
    let m = master(s).await;
    let port = m.addr.port();
    let trust = |identity: Option<(String, String)>| MasterTls {
        ca_pem: pki.ca_pem.clone().into(),
        identity: identity.map(|(c, k)| (c.into_bytes(), k.into_bytes())),
        domain: None,
    };
    // Without a client certificate, with one from another CA, and in plaintext: refused.
    let no_cert = tls_worker(port, "no-cert", trust(None));
    let stranger = tls_worker(port, "stranger", trust(Some(pki.stranger.clone())));
    let mut plain_cfg = barrage_worker::WorkerConfig::new(format!("127.0.0.1:{port}"));
    plain_cfg.worker_id = "plain".into();
    plain_cfg.give_up_after = Some(Duration::from_secs(6));
    let plain = tokio::spawn(barrage_worker::run(plain_cfg, std::future::pending()));
    for (name, w) in [("no-cert", no_cert), ("stranger", stranger), ("plain", plain)] {
        let result = tokio::time::timeout(Duration::from_secs(20), w).await.unwrap().unwrap();
        assert!(
            matches!(result, Err(barrage_worker::Error::MasterLost { .. })),
            "{name}: {result:?}"
        );
    }
    assert!(m.cluster.registry().is_empty(), "a refused worker got in");

    // With the right certificate: joins, runs, and the figures are the target's.
    let good = tls_worker(port, "worker-1", trust(Some(pki.client.clone())));
    let r = m.run.await.unwrap().unwrap().report;
    assert_eq!(good.await.unwrap().unwrap(), barrage_worker::Exit::RunFinished);
    assert!(r.aggregated.requests > 0);
    assert_eq!(r.aggregated.requests, mock.state.ground_truth().requests);
}
