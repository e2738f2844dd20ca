//! In-process clusters: real gRPC on loopback, figures checked against the mock.

use std::time::Duration;

use barrage_proto::v1;
use tokio_stream::StreamExt;

use crate::support::*;

/// What we report equals what the target served, and TTFE matches its injected delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_figures_match_the_targets_ground_truth() {
    let mock = mock(sse_mock_config(50, 5, 10)).await;
    let load = load_args(mock.addr, 12, 100.0, Duration::from_secs(3));
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 2)).await;
    let workers = [worker(m.addr, "w-a"), worker(m.addr, "w-b")];
    let outcome = m.run.await.unwrap().unwrap();
    for w in workers {
        assert_eq!(w.await.unwrap().unwrap(), barrage_worker::Exit::RunFinished);
    }
    let truth = mock.state.ground_truth();
    let r = &outcome.report;
    // Requests: every request the mock received is in our report, and no more.
    assert!(truth.requests > 50, "too little load to judge: {truth:?}");
    assert_eq!(r.aggregated.requests, truth.requests, "requests: ours vs the mock's");
    assert_eq!(r.aggregated.failures, 0, "failures: {:?}", r.failures);
    let sse = r.endpoints.iter().find(|e| e.name == "/v1/workflows/run").unwrap();
    assert_eq!(sse.requests, truth.workflow_runs);
    assert_eq!(sse.streams_completed, truth.streams_completed);
    assert_eq!(sse.events, truth.events_sent, "events: ours vs the mock's");
    assert_eq!(sse.events_by_type["text_chunk"], 5 * truth.streams_completed);
    let chat = r
        .endpoints
        .iter()
        .find(|e| e.name.starts_with("/v1/chat-messages"))
        .unwrap();
    assert_eq!(chat.requests, truth.chat_messages);
    assert_eq!(chat.requests + sse.requests, truth.requests);
    // TTFE: the mock writes its first event 50 ms after the request arrives.
    let ttfe = r.ttfe_ms.unwrap();
    assert!(ttfe.min >= 50.0, "TTFE below the injected delay: {ttfe:?}");
    assert!(
        ttfe.p50 < 50.0 + 5.0,
        "TTFE p50 {} ms is not within 5 ms of the 50 ms delay",
        ttfe.p50
    );
    // Class mix 3:1 of 12 users: 9 workflow users, 3 health users across both workers.
    assert_eq!(r.workers.len(), 2);
    assert!(r.workers.iter().all(|w| w.final_report && !w.lost));
    assert!(
        r.connections.max_concurrent >= 1 && r.connections.max_concurrent <= 9,
        "{:?}",
        r.connections
    );
    assert!(
        r.warnings.iter().all(|w| !w.contains("no final report")),
        "{:?}",
        r.warnings
    );
}

/// The exact split: 12 users 3:1 over two equal workers, and each worker really runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joining_mid_run_takes_its_share() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 12, 1000.0, Duration::from_secs(4));
    let m = master(setup(&workflow_scenario("constant(0.1)"), &load, 1)).await;
    let first = worker(m.addr, "first");
    let users = |id: &str| users_of(&m.cluster, id);
    let assigned_of = |id: &str| {
        let reg = m.cluster.registry();
        reg.worker(id).and_then(|w| w.last_assign().cloned()).map(|a| {
            a.classes
                .iter()
                .map(|c| (c.class_name.clone(), c.users))
                .collect::<Vec<_>>()
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || users("first") == Some(12)).await,
        "first worker never ran 12 users"
    );
    assert_eq!(
        assigned_of("first").unwrap(),
        [("Workflow".to_string(), 9), ("Chat".to_string(), 3)]
    );

    let second = worker(m.addr, "second");
    assert!(
        eventually(Duration::from_secs(3), || users("first") == Some(6)
            && users("second") == Some(6))
        .await,
        "after the join: first {:?}, second {:?}",
        users("first"),
        users("second")
    );
    let (a, b) = (assigned_of("first").unwrap(), assigned_of("second").unwrap());
    let total = |c: usize| a[c].1 + b[c].1;
    assert_eq!(
        (total(0), total(1)),
        (9, 3),
        "class mix exact cluster-wide: {a:?} {b:?}"
    );
    let outcome = m.run.await.unwrap().unwrap();
    let _ = (first.await, second.await);
    assert!(
        outcome
            .report
            .events
            .iter()
            .any(|e| e.contains("second") && e.contains("joined mid-run"))
    );
    assert_eq!(outcome.report.aggregated.requests, mock.state.ground_truth().requests);
}

/// Two processes given the same `--worker-id`: the second is refused while the first
/// is connected (their report seqs would be taken for each other's and dropped), and
/// sends nothing; the first's figures stay exactly the target's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_under_a_taken_id_is_refused() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 2, 100.0, Duration::from_secs(3));
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 1)).await;
    let first = worker(m.addr, "same");
    assert!(eventually(Duration::from_secs(5), || users_of(&m.cluster, "same") == Some(2)).await);
    let second = worker(m.addr, "same");
    let refused = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("worker id `same` is taken") && refused.contains("--worker-id"),
        "{refused}"
    );
    let outcome = m.run.await.unwrap().unwrap();
    let _ = first.await;
    assert_eq!(outcome.report.workers.len(), 1);
    assert_eq!(outcome.report.aggregated.requests, mock.state.ground_truth().requests);
}

/// A worker process killed and started again under the same id (a pod restarted
/// under a stable name) before the master wrote it off: the new process replaces the
/// old one, and its reports, whose seqs start again at 1, all count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_under_its_id_counts_from_its_first_report() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 2, 100.0, Duration::from_secs(6));
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 1)).await;
    let spawn = || {
        barrage()
            .args(["worker", "--master", &m.addr.to_string(), "--worker-id", "pod-0"])
            .args(["--give-up-after", "10s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut old = spawn();
    assert!(eventually(Duration::from_secs(10), || reports_of(&m.cluster, "pod-0") >= 3).await);
    old.kill().unwrap();
    let _ = old.wait();
    // The master has seen the stream end, and not yet written the worker off (5 s).
    let disconnected = || {
        let reg = m.cluster.registry();
        reg.worker("pod-0").is_some_and(|w| !w.is_connected() && !w.is_lost())
    };
    assert!(eventually(Duration::from_secs(3), disconnected).await);
    // Nothing reaches the target now, and the old process will report nothing more:
    // from here on, both counts grow by the new process's requests alone.
    let before = mock.state.ground_truth().requests;
    let counted = m.cluster.aggregator().aggregated().counts.requests;
    let mut new = spawn();
    let outcome = m.run.await.unwrap().unwrap();
    let _ = new.wait();
    let truth = mock.state.ground_truth().requests;
    let r = &outcome.report;
    assert!(truth > before, "the new process sent load");
    assert_eq!(
        r.aggregated.requests - counted,
        truth - before,
        "every request of the new process counts"
    );
    assert!(
        r.events
            .iter()
            .any(|e| e.contains("pod-0") && e.contains("new process")),
        "{:?}",
        r.events
    );
}

/// A worker speaking another protocol version is refused, and told both versions.
#[tokio::test]
async fn an_incompatible_worker_is_refused_with_both_versions() {
    let mock = mock(sse_mock_config(5, 1, 5)).await;
    let load = load_args(mock.addr, 1, 1.0, Duration::from_secs(1));
    let m = master(setup(&workflow_scenario("constant(1)"), &load, 1)).await;
    let mut client = v1::coordinator_client::CoordinatorClient::connect(format!("http://{}", m.addr))
        .await
        .unwrap();
    let hello = v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Hello(v1::Hello {
            protocol_version: 99,
            worker_id: "from-the-future".into(),
            build_version: "barrage 9.0.0".into(),
            ..Default::default()
        })),
    };
    let mut replies = client.join(tokio_stream::iter([hello])).await.unwrap().into_inner();
    let first = replies.next().await.unwrap().unwrap();
    match first.kind {
        Some(v1::master_message::Kind::Refuse(r)) => {
            assert_eq!(r.reason, v1::RefuseReason::Version as i32);
            assert!(r.message.contains("99") && r.message.contains("1..=1"), "{}", r.message);
            assert!(r.message.contains("barrage 9.0.0"), "{}", r.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // It never joined: the registry does not know it.
    assert!(m.cluster.registry().is_empty());
    m.run.abort();
}

/// With a cluster token set, a worker without it is refused before it sees the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_token_keeps_strangers_out() {
    let mock = mock(sse_mock_config(5, 1, 5)).await;
    let load = load_args(mock.addr, 1, 1.0, Duration::from_secs(1));
    let mut s = setup(&workflow_scenario("constant(1)"), &load, 1);
    s.opts.token = Some("sesame".into());
    let m = master(s).await;
    let mut client = v1::coordinator_client::CoordinatorClient::connect(format!("http://{}", m.addr))
        .await
        .unwrap();
    let hello = v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Hello(v1::Hello {
            protocol_version: barrage_proto::PROTOCOL_VERSION,
            worker_id: "stranger".into(),
            ..Default::default()
        })),
    };
    let status = client.join(tokio_stream::iter([hello])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(m.cluster.registry().is_empty());
    m.run.abort();
}

/// Bytes on the gRPC port at `addr` that are no gRPC: HTTP/1, noise, a cut HTTP/2 preface.
async fn send_garbage(addr: std::net::SocketAddr) {
    use tokio::io::AsyncWriteExt;
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xffu8; 4096][..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(junk).await;
    }
}

/// A delta of the workflow row with `requests`, `failures` and, unless empty, `hist` as
/// its TTFE histogram.
fn lying_endpoint(requests: u64, failures: u64, hist: Vec<u8>) -> v1::EndpointDelta {
    v1::EndpointDelta {
        name: "/v1/workflows/run".into(),
        method: "POST".into(),
        kind: v1::EndpointKind::Sse as i32,
        requests,
        failures,
        histograms: if hist.is_empty() {
            vec![]
        } else {
            vec![v1::Histogram {
                metric: "ttfe".into(),
                hdr_v2: hist.into(),
            }]
        },
        ..Default::default()
    }
}

/// The reports worker "liar" of `epoch` sends: each is impossible in one way.
fn lies(epoch: u64) -> [v1::Report; 6] {
    [
        // Another epoch.
        v1::Report {
            worker_id: "liar".into(),
            epoch: epoch ^ 1,
            seq: 1,
            endpoints: vec![lying_endpoint(1000, 0, vec![])],
            ..Default::default()
        },
        // Far-future sequence.
        v1::Report {
            worker_id: "liar".into(),
            epoch,
            seq: 1_000_000,
            endpoints: vec![lying_endpoint(1000, 0, vec![])],
            ..Default::default()
        },
        // More failures than requests.
        v1::Report {
            worker_id: "liar".into(),
            epoch,
            seq: 1,
            endpoints: vec![lying_endpoint(5, 9, vec![])],
            ..Default::default()
        },
        // A malformed histogram.
        v1::Report {
            worker_id: "liar".into(),
            epoch,
            seq: 1,
            endpoints: vec![lying_endpoint(5, 0, vec![0x1c, 0x84, 0x93, 0x14, 1, 2, 3])],
            ..Default::default()
        },
        // A negative gauge.
        v1::Report {
            worker_id: "liar".into(),
            epoch,
            seq: 1,
            active_streams: Some(v1::Gauge {
                last: -5,
                max: 0,
                time_avg: -1.0,
            }),
            ..Default::default()
        },
        // Someone else's id.
        v1::Report {
            worker_id: "honest".into(),
            epoch,
            seq: 99,
            endpoints: vec![lying_endpoint(1000, 0, vec![])],
            ..Default::default()
        },
    ]
}

/// A peer that sends impossible reports, oversized messages or plain garbage changes
/// nothing: the totals stay exactly what the real worker reported and the target saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_do_not_corrupt_the_totals() {
    let mock = mock(sse_mock_config(5, 2, 5)).await;
    let load = load_args(mock.addr, 2, 100.0, Duration::from_secs(3));
    let m = master(setup(&workflow_scenario("constant(0.05)"), &load, 1)).await;
    let honest = worker(m.addr, "honest");

    // Garbage on the gRPC port.
    send_garbage(m.addr).await;

    // A peer that joins properly, then lies. Its answers stay open (`_replies`) while
    // it sends, so the master reads every lie.
    let FakeWorker {
        tx,
        replies: _replies,
        epoch,
        ..
    } = FakeWorker::join(m.addr, "liar").await;
    for lie in lies(epoch) {
        tx.send(v1::WorkerMessage {
            kind: Some(v1::worker_message::Kind::Report(lie)),
        })
        .await
        .unwrap();
    }
    // An oversized message: refused by the size limit, not decoded.
    let huge = v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Goodbye(v1::Goodbye {
            reason: "x".repeat(barrage_master::setup::MAX_MESSAGE + 1),
        })),
    };
    let _ = tx.send(huge).await;
    drop(tx);

    let r = m.run.await.unwrap().unwrap().report;
    assert_eq!(honest.await.unwrap().unwrap(), barrage_worker::Exit::RunFinished);
    let truth = mock.state.ground_truth();
    assert_eq!(r.aggregated.requests, truth.requests, "the lies leaked into the totals");
    // The lies are acknowledged, never counted, and make the run's data incomplete.
    assert!(!r.completeness.is_complete(), "{:?}", r.completeness);
    let reasons = r.completeness.reasons.join("\n");
    assert!(
        reasons.contains("could not be used") && reasons.contains("refused"),
        "{reasons}"
    );
}

/// on_start runs once per user, `order = "sequential"` alternates tasks, and
/// `--tags` leaves the others out: all checked against the mock's own counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_start_sequence_and_tags_do_what_they_say() {
    let mock = mock(sse_mock_config(5, 1, 5)).await;
    let scenario = r#"
[[users]]
name = "Ordered"
wait = "constant(0.02)"
order = "sequential"
[[users.on_start]]
name = "login"
method = "POST"
path = "/v1/chat-messages"
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {}, "query": "hi", "response_mode": "blocking", "user": "{{user}}"}'
[[users.tasks]]
name = "run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
tags = ["core"]
headers = { Authorization = "Bearer ${DIFY_API_KEY}" }
body = '{"inputs": {}, "response_mode": "streaming", "user": "{{user}}"}'
[[users.tasks]]
name = "health"
path = "/health"
tags = ["core"]
[[users.tasks]]
name = "missing"
path = "/nowhere"
tags = ["slow"]
"#;
    let mut load = load_args(mock.addr, 3, 100.0, Duration::from_secs(2));
    load.exclude_tags = vec!["slow".into()];
    let m = master(setup(scenario, &load, 1)).await;
    let w = worker(m.addr, "w");
    let r = m.run.await.unwrap().unwrap().report;
    let _ = w.await;
    let truth = mock.state.ground_truth();
    let count = |name: &str| r.endpoints.iter().find(|e| e.name == name).map_or(0, |e| e.requests);
    assert_eq!(count("login"), 3, "on_start runs once per user");
    assert_eq!(truth.chat_messages, 3);
    assert_eq!(count("missing"), 0, "an excluded tag never runs");
    assert_eq!(count("run"), truth.workflow_runs);
    let (runs, health) = (count("run"), count("health"));
    assert!(
        runs > 3 && runs.abs_diff(health) <= 3,
        "sequential: {runs} runs vs {health} health"
    );
    assert_eq!(r.aggregated.failures, 0, "{:?}", r.failures);
}
