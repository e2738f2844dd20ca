//! Hostile targets (issue 4): each misbehaviour becomes a failure of a named kind, the
//! target saw exactly the requests and connections we counted, and nothing panics.
//!
//! Each test drives a real [`barrage_worker::runner::Engine`] against a scripted
//! [`Hostile`] server, once per task kind where the kinds differ, concurrently.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;

use barrage_common::metrics::{EndpointStats, Metric};
use barrage_worker::sse::{DEFAULT_MAX_EVENT_BYTES, SseError, SseParser};

use crate::drive::{assert_all_failed_as, drive, kinds, plan, plan_with};
use crate::server::{Hostile, Script, Step, send};

/// An event stream whose body ends when the connection does (no length, no chunks), so
/// only a FIN is a clean end and a reset is an error.
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
/// An event stream as dify-api sends it.
const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
const PING: &[u8] = b"event: ping\n\n";

/// A complete first event that is not a ping, for each kind.
fn first_event(kind: &str) -> &'static [u8] {
    match kind {
        "dify" => b"data: {\"event\": \"workflow_started\", \"task_id\": \"t1\", \"data\": {}}\n\n",
        _ => b"event: hello\ndata: first\n\n",
    }
}

/// The start of an event that never completes.
fn event_start(kind: &str) -> &'static [u8] {
    match kind {
        "dify" => b"data: {\"event\": \"text_chunk\", \"data\": {\"text\": \"",
        _ => b"data: ",
    }
}

/// One HTTP/1.1 chunk.
fn chunk(data: &[u8]) -> Bytes {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// A complete response with a `content-length` body (the connection stays open).
fn response(status: &str, headers: &str, body: &[u8]) -> Bytes {
    let mut out = format!("HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// Runs `users` users of `kind` against a fresh server scripted by `respond` until
/// `requests` completed, and checks the server saw exactly what the engine counted.
async fn against(
    kind: &str,
    task: &str,
    limits: &str,
    users: u32,
    requests: u64,
    respond: impl Fn(u64) -> Script + Send + Sync + 'static,
) -> (EndpointStats, Hostile) {
    let server = Hostile::start(respond).await;
    let stats = drive(plan_with(limits, kind, task), &server.url(), users, requests).await;
    assert_eq!(
        server.requests(),
        stats.counts.requests,
        "{kind}: requests the target saw vs requests we counted"
    );
    assert_eq!(
        server.connections(),
        stats.counts.connections_opened,
        "{kind}: connections the target accepted vs connections we counted"
    );
    (stats, server)
}

/// Response times in ms: (min, max).
fn response_times(stats: &EndpointStats) -> (u64, u64) {
    let h = stats.histogram(Metric::ResponseTime).expect("response times recorded");
    (h.min() / 1000, h.max() / 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_connect_refused() {
    // Bound but not listening: the port stays ours for the test, and connects are refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let host = format!("http://{}", socket.local_addr().unwrap());
    for kind in ["http", "sse", "dify"] {
        let stats = drive(plan(kind, ""), &host, 2, 10).await;
        let details = assert_all_failed_as(&stats, "connect");
        assert_eq!(details.into_keys().collect::<Vec<_>>(), ["refused"], "{kind}");
        assert_eq!(stats.counts.connections_opened, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_stream_is_io() {
    join_all(["sse", "dify"].map(|kind| async move {
        let (first, start) = (first_event(kind), event_start(kind));
        // With a FIN instead of the reset, this close-delimited `sse` stream would be a
        // clean end (a success): only the reset makes it a failure.
        let (stats, _) = against(kind, "", "", 2, 4, move |_| {
            vec![send(SSE_HEAD), send(first), send(start), Step::Reset]
        })
        .await;
        let details = assert_all_failed_as(&stats, "io");
        println!("{kind}: reset mid-stream -> io {details:?}");
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_mid_stream_fails_by_what_is_missing() {
    // Inside a chunked body a FIN leaves the framing incomplete: `io`.
    let cut_chunk = join_all(["sse", "dify"].map(|kind| async move {
        let first = chunk(first_event(kind));
        let (stats, _) = against(kind, "", "", 2, 4, move |_| {
            vec![
                send(CHUNKED_HEAD),
                Step::Send(first.clone()),
                send(b"20\r\ndata: {"),
                Step::Close,
            ]
        })
        .await;
        assert_all_failed_as(&stats, "io");
    }));
    // At an event boundary of a close-delimited body, the stream ended cleanly but before
    // its terminal event: `stream_closed`.
    let before_terminal = join_all([("dify", ""), ("sse", r#"terminal_event = "done""#)].map(
        |(kind, task)| async move {
            let first = first_event(kind);
            let (stats, _) = against(kind, task, "", 2, 4, move |_| {
                vec![send(SSE_HEAD), send(first), Step::Close]
            })
            .await;
            assert_all_failed_as(&stats, "stream_closed");
        },
    ));
    tokio::join!(cut_chunk, before_terminal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_times_out() {
    join_all(["http", "sse", "dify"].map(|kind| async move {
        let (stats, _) = against(kind, r#"timeout = "400ms""#, "", 2, 2, |_| vec![Step::Hold]).await;
        assert_all_failed_as(&stats, "timeout");
        assert!(response_times(&stats).0 >= 399, "{kind}: {:?}", response_times(&stats));
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_then_silence_is_first_event_timeout() {
    join_all(["sse", "dify"].map(|kind| async move {
        let task = "timeout = \"5s\"\nfirst_event_timeout = \"300ms\"";
        let (stats, _) = against(kind, task, "", 2, 2, |_| vec![send(SSE_HEAD), Step::Hold]).await;
        assert_all_failed_as(&stats, "first_event_timeout");
        let (min, max) = response_times(&stats);
        assert!((299..1000).contains(&min) && max < 1000, "{kind}: {min}..{max} ms");
    }))
    .await;
}

/// Bytes keep coming, so the silence timeout (`read_timeout`) never fires: only the
/// task's `timeout` ends a stream that never completes an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_after_the_first_event_is_bounded_by_the_task_timeout() {
    join_all(["sse", "dify"].map(|kind| async move {
        let (first, start) = (first_event(kind), event_start(kind));
        let task = "timeout = \"700ms\"\nread_timeout = \"300ms\"\nfirst_event_timeout = \"5s\"";
        let (stats, _) = against(kind, task, "", 2, 2, move |_| {
            vec![
                send(SSE_HEAD),
                send(first),
                send(start),
                Step::Every(Bytes::from_static(b"x"), Duration::from_millis(100)),
            ]
        })
        .await;
        assert_all_failed_as(&stats, "timeout");
        let ttfe = stats.histogram(Metric::Ttfe).map_or(0, |h| h.len());
        assert_eq!(
            ttfe, stats.counts.requests,
            "{kind}: the first event arrived every time"
        );
        let (min, max) = response_times(&stats);
        assert!(
            min >= 699 && max < 700 + 500,
            "{kind}: the bound holds: {min}..{max} ms"
        );
    }))
    .await;
}

/// A stream that never completes an event: a trickle of one line, or pings only.
fn eventless(name: &str) -> Script {
    match name {
        "trickle" => vec![
            send(SSE_HEAD),
            send(b"data: "),
            Step::Every(Bytes::from_static(b"x"), Duration::from_millis(100)),
        ],
        _ => vec![
            send(SSE_HEAD),
            Step::Every(Bytes::from_static(PING), Duration::from_millis(50)),
        ],
    }
}

/// `first_event_timeout` is a deadline for the first real event, not a silence timeout:
/// neither a trickle of bytes nor a stream of pings keeps a stream alive without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_first_event_is_first_event_timeout_however_busy_the_stream() {
    let runs = ["trickle", "pings"].into_iter().flat_map(|name| {
        ["sse", "dify"].map(move |kind| async move {
            let task = "timeout = \"5s\"\nfirst_event_timeout = \"400ms\"\nread_timeout = \"5s\"";
            let (stats, _) = against(kind, task, "", 2, 2, move |_| eventless(name)).await;
            assert_all_failed_as(&stats, "first_event_timeout");
            let (min, max) = response_times(&stats);
            assert!(min >= 399 && max < 400 + 500, "{kind} {name}: {min}..{max} ms");
        })
    });
    join_all(runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_stream_times_out() {
    join_all(["http", "sse", "dify"].map(|kind| async move {
        let task = if kind == "http" {
            "timeout = \"700ms\""
        } else {
            "timeout = \"700ms\"\nread_timeout = \"300ms\""
        };
        let first = first_event(kind);
        let (stats, _) = against(kind, task, "", 2, 2, move |_| {
            vec![
                send(SSE_HEAD),
                send(first),
                Step::Every(Bytes::from_static(PING), Duration::from_millis(50)),
            ]
        })
        .await;
        assert_all_failed_as(&stats, "timeout");
        let (min, max) = response_times(&stats);
        assert!(min >= 699 && max < 700 + 500, "{kind}: {min}..{max} ms");
        if kind != "http" {
            let pings = stats.events_by_type.get("ping").copied().unwrap_or(0);
            assert!(
                pings >= stats.counts.requests * 5,
                "{kind}: pings were counted: {pings}"
            );
        }
    }))
    .await;
}

const TEN_MB: usize = 10 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_line_is_event_too_large_without_reading_it_all() {
    let mut line = b"data: ".to_vec();
    line.resize(line.len() + TEN_MB, b'x');
    line.extend_from_slice(b"\n\n");
    let line = Bytes::from(line);

    // The parser itself never holds more than its limit, wherever the stream is cut.
    let mut parser = SseParser::new(DEFAULT_MAX_EVENT_BYTES);
    let mut fed = 0;
    let mut result = Ok(());
    for piece in line.chunks(64 * 1024) {
        fed += piece.len();
        result = parser.feed(piece, &mut |_| panic!("no event fits"));
        assert!(parser.buffered_bytes() <= DEFAULT_MAX_EVENT_BYTES);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(
        result,
        Err(SseError::EventTooLarge {
            limit: DEFAULT_MAX_EVENT_BYTES
        })
    );
    assert!(
        fed <= DEFAULT_MAX_EVENT_BYTES + 64 * 1024,
        "failed as soon as the line passed the limit"
    );

    // And the engine gives up on the stream instead of reading 10 MB.
    join_all(["sse", "dify"].map(|kind| {
        let line = line.clone();
        async move {
            let (stats, _) = against(kind, "", "", 2, 4, move |_| {
                vec![send(SSE_HEAD), Step::Send(line.clone()), Step::Close]
            })
            .await;
            assert_all_failed_as(&stats, "event_too_large");
            let per_request = stats.counts.bytes_received / stats.counts.requests;
            assert!(
                per_request < 2 * DEFAULT_MAX_EVENT_BYTES as u64,
                "{kind}: read {per_request} bytes per request of a {TEN_MB}-byte line"
            );
        }
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_events_for_sse_and_invalid_json_for_dify() {
    // Two events: invalid bytes in data, in the event type, and a cut multi-byte character.
    let sse = async {
        let body = b"data: \xff\xfe\xfd\n\nevent: \xc3(\ndata: ok\xe2\x82\n\n";
        let (stats, _) = against("sse", "", "", 2, 10, move |_| {
            vec![Step::Send(response(
                "200 OK",
                "content-type: text/event-stream\r\n",
                body,
            ))]
        })
        .await;
        assert_eq!(
            (stats.counts.failures, stats.outcomes.len()),
            (0, 0),
            "{:?}",
            kinds(&stats)
        );
        assert_eq!(stats.counts.events, 2 * stats.counts.requests);
        assert_eq!(
            stats.events_by_type.get("\u{FFFD}(").copied(),
            Some(stats.counts.requests)
        );
    };
    let dify_garbage = async {
        let body = b"data: \xff\xfe{\"event\": \"workflow_started\"\n\n";
        let (stats, _) = against("dify", "", "", 2, 10, move |_| {
            vec![Step::Send(response(
                "200 OK",
                "content-type: text/event-stream\r\n",
                body,
            ))]
        })
        .await;
        assert_all_failed_as(&stats, "invalid_json");
    };
    // An invalid byte inside a JSON string decodes to U+FFFD: the JSON stays valid and the
    // stream is judged on its events like any other.
    let dify_in_string = async {
        let body = b"data: {\"event\": \"text_chunk\", \"data\": {\"text\": \"\xff\"}}\n\n\
                     data: {\"event\": \"workflow_finished\", \"data\": {\"status\": \"succeeded\"}}\n\n";
        let (stats, _) = against("dify", "", "", 2, 10, move |_| {
            vec![Step::Send(response(
                "200 OK",
                "content-type: text/event-stream\r\n",
                body,
            ))]
        })
        .await;
        assert_eq!(
            (stats.counts.failures, stats.outcomes.len()),
            (0, 0),
            "{:?}",
            kinds(&stats)
        );
        assert_eq!(
            stats.events_by_type.get("text_chunk").copied(),
            Some(stats.counts.requests)
        );
    };
    tokio::join!(sse, dify_garbage, dify_in_string);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chunked_encoding_is_io() {
    join_all(["http", "sse", "dify"].map(|kind| async move {
        let (stats, _) = against(kind, "", "", 2, 4, |_| {
            vec![send(CHUNKED_HEAD), send(b"zz\r\nhello\r\n"), Step::Hold]
        })
        .await;
        let details = assert_all_failed_as(&stats, "io");
        println!("{kind}: bad chunk size line -> io {details:?}");
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_response_head_is_io() {
    let mut head = b"HTTP/1.1 200 OK\r\nx-junk: ".to_vec();
    head.resize(head.len() + (1 << 20), b'a');
    head.extend_from_slice(b"\r\n\r\n");
    let head = Bytes::from(head);
    join_all(["http", "sse"].map(|kind| {
        let head = head.clone();
        async move {
            let (stats, _) = against(kind, "", "", 2, 4, move |_| vec![Step::Send(head.clone()), Step::Hold]).await;
            let details = assert_all_failed_as(&stats, "io");
            assert_eq!(details.into_keys().collect::<Vec<_>>(), ["parse"], "{kind}");
        }
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_http_status_and_never_followed() {
    join_all(["http", "sse", "dify"].map(|kind| async move {
        let users = 2;
        let (stats, server) = against(kind, "", "", users, 20, |_| {
            vec![Step::Send(response("302 Found", "location: /elsewhere\r\n", b""))]
        })
        .await;
        let details = assert_all_failed_as(&stats, "http_status");
        assert_eq!(
            details,
            BTreeMap::from([("302".to_string(), stats.counts.requests)]),
            "{kind}"
        );
        assert_eq!(server.hits("/elsewhere"), 0, "{kind}: the redirect was not followed");
        assert_eq!(
            stats.counts.connections_opened,
            u64::from(users),
            "{kind}: a 302 keeps the connection"
        );
    }))
    .await;
}

/// Informational heads hyper skips before the real answer.
const INFORMATIONAL: [&[u8]; 3] = [
    b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\n",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informational_heads_before_the_answer_are_skipped() {
    let runs = [1, 50].into_iter().flat_map(|heads| {
        ["http", "sse"].map(move |kind| async move {
            let mut answer: Vec<u8> = INFORMATIONAL
                .iter()
                .cycle()
                .take(heads)
                .copied()
                .flatten()
                .copied()
                .collect();
            answer.extend_from_slice(&response(
                "200 OK",
                "content-type: text/event-stream\r\n",
                first_event("sse"),
            ));
            let answer = Bytes::from(answer);
            let (stats, _) = against(kind, "", "", 2, 10, move |_| vec![Step::Send(answer.clone())]).await;
            assert_eq!(
                (stats.counts.failures, stats.outcomes.len()),
                (0, 0),
                "{kind} x{heads}: {:?}",
                kinds(&stats)
            );
            if kind == "sse" {
                assert_eq!(stats.events_by_type.get("hello").copied(), Some(stats.counts.requests));
            }
        })
    });
    join_all(runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_informational_heads_time_out() {
    let (stats, _) = against("http", r#"timeout = "400ms""#, "", 2, 2, |_| {
        vec![Step::Every(
            Bytes::from_static(INFORMATIONAL[0]),
            Duration::from_millis(2),
        )]
    })
    .await;
    assert_all_failed_as(&stats, "timeout");
}

/// Every status of a storm of 3xx, 429 and 5xx answers is counted exactly, by kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_storm_is_counted_exactly() {
    const STORM: [u16; 10] = [301, 302, 303, 307, 308, 429, 500, 502, 503, 504];
    join_all(["http", "dify"].map(|kind| async move {
        let (stats, server) = against(kind, "", "", 4, 500, |n| {
            let code = STORM[(n % STORM.len() as u64) as usize];
            let location = if code < 400 { "location: /elsewhere\r\n" } else { "" };
            let headers = format!("content-type: text/plain\r\n{location}");
            vec![Step::Send(response(&format!("{code} Storm"), &headers, b"storm"))]
        })
        .await;
        let total = server.requests();
        let len = STORM.len() as u64;
        let want: BTreeMap<(String, String), u64> = STORM
            .iter()
            .enumerate()
            .map(|(i, code)| {
                let kind = if *code == 429 {
                    "too_many_requests"
                } else {
                    "http_status"
                };
                let count = total / len + u64::from((i as u64) < total % len);
                ((kind.to_string(), code.to_string()), count)
            })
            .collect();
        assert_eq!(kinds(&stats), want, "{kind}");
        assert_eq!(stats.counts.failures, total);
        assert_eq!(server.hits("/elsewhere"), 0);
    }))
    .await;
}

/// Users stopped while still opening their connections (a TLS handshake the target
/// never answers) sent no request: none is counted, cancelled or otherwise, so our
/// count stays what the target saw (zero). Before, each counted a cancelled request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_stopped_before_writing_their_request_count_none() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use barrage_worker::runner::{Engine, Targets};

    const USERS: u32 = 4;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    // Accepts and holds every connection, answering nothing: the handshake hangs.
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let engine = Engine::start(
        plan("http", ""),
        Some(&format!("https://{addr}")),
        0,
        std::time::Instant::now(),
        0,
    )
    .await
    .expect("engine starts");
    engine.set_targets(Targets {
        users: vec![USERS],
        spawn_rate: 0.0,
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) < USERS as usize && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        USERS as usize,
        "every user is connecting"
    );
    engine.abort().await;
    server.abort();
    let mut stats = EndpointStats::default();
    crate::drive::merge_into(&mut stats, engine.recorder().take());
    assert_eq!(stats.counts.requests, 0, "no request was written: {:?}", kinds(&stats));
    assert!(stats.outcomes.is_empty(), "{:?}", stats.outcomes);
    assert_eq!(stats.counts.failures, 0, "{:?}", kinds(&stats));
}
