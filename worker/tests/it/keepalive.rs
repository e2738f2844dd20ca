//! Keep-alive connections: a Dify stream that failed by its content but ended cleanly
//! keeps its connection. The client's own connection handling must never show up as
//! the target's failures.

use bytes::Bytes;

use barrage_common::metrics::failure;

use crate::drive::{drive, kinds, plan};
use crate::server::{Hostile, Step};

/// One HTTP/1.1 chunk.
fn chunk(data: &[u8]) -> Bytes {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verdict_on_a_cleanly_ended_stream_keeps_the_connection() {
    // dify-api ends a failed run's stream cleanly (the last chunk, keep-alive): the
    // failure is the run's, not the connection's. One user, one connection.
    let server = Hostile::start(|n| {
        let event: &[u8] = if n % 2 == 0 {
            b"data: {\"event\": \"workflow_finished\", \"task_id\": \"t1\", \"data\": {\"status\": \"failed\", \"error\": \"boom\"}}\n\n"
        } else {
            b"data: {\"event\": \"error\", \"task_id\": \"t1\", \"status\": 400, \"code\": \"invalid_param\", \"message\": \"boom\"}\n\n"
        };
        vec![
            Step::Send(Bytes::from_static(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            )),
            Step::Send(chunk(b"data: {\"event\": \"workflow_started\", \"task_id\": \"t1\", \"data\": {}}\n\n")),
            Step::Send(chunk(event)),
            Step::Send(Bytes::from_static(b"0\r\n\r\n")),
        ]
    })
    .await;
    let stats = drive(plan("dify", ""), &server.url(), 1, 6).await;
    assert_eq!(stats.failures, stats.requests, "every run failed: {:?}", kinds(&stats));
    assert!(
        stats
            .failure_kinds
            .keys()
            .all(|(k, _)| k == failure::TERMINAL_STATUS || k == failure::ERROR_EVENT),
        "{:?}",
        kinds(&stats)
    );
    assert_eq!(server.requests(), stats.requests, "requests the target saw vs ours");
    assert_eq!(server.connections(), 1, "the target accepted one connection");
    assert_eq!(stats.connections_opened, 1, "we opened one connection");
}
