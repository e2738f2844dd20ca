//! Blocking answers (`response_mode: "blocking"`): the wait, then the answer, or what a
//! transport fault looks like when the whole answer is one JSON body:
//!
//! - `reset`: the connection is closed instead of the body (after the headers at most);
//! - `stall`: headers, then a body that never comes (until the client leaves or the
//!   server shuts down);
//! - `malformed-json`: a 200 whose body is `{not json`;
//! - `giant-event`: the usual answer padded (top-level `"padding"`) to `giant_bytes`.
//!
//! Each is tagged with its [`Outcome`] for the counting middleware.

use std::io;

use axum::Json;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};

use crate::cadence::after;
use crate::config::Behaviour;
use crate::envelope::ApiError;
use crate::fault::Fault;
use crate::outcome::{Outcome, Tally};
use crate::state::MockState;

/// A blocking answer's body and what it reads as to a client.
pub(crate) struct Answer {
    pub body: Value,
    pub outcome: Outcome,
}

/// Waits until the stream would have delivered its last chunk (measured from
/// `arrival`), then answers with `answer()` or the injected transport fault. A client
/// that hangs up first is never answered (and counted `aborted`).
pub(crate) async fn respond(
    state: &MockState,
    behaviour: &Behaviour,
    arrival: Instant,
    answer: impl FnOnce() -> Result<Answer, ApiError>,
) -> Response {
    sleep_until(after(arrival, behaviour.blocking_duration())).await;
    let (mut response, outcome) = match behaviour.fault {
        Fault::Reset => {
            let body = futures::stream::once(async {
                Err::<Bytes, _>(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "barrage-mock: reset injected by X-Mock-Fault",
                ))
            });
            (json_response(Body::from_stream(body)), Outcome::Reset)
        }
        Fault::Stall => {
            let shutdown = state.shutdown().clone();
            let body = futures::stream::once(async move {
                shutdown.cancelled_owned().await;
                Err::<Bytes, _>(io::Error::other("barrage-mock: server shutting down"))
            });
            (json_response(Body::from_stream(body)), Outcome::Stall)
        }
        Fault::MalformedJson => {
            state.counters().blocking_completed();
            (json_response(Body::from("{not json")), Outcome::MalformedJson)
        }
        _ => match answer() {
            Err(err) => return err.into_response(),
            Ok(Answer { mut body, outcome }) => {
                let outcome = if behaviour.fault == Fault::GiantEvent {
                    pad(&mut body, behaviour.giant_bytes);
                    Outcome::GiantEvent
                } else {
                    outcome
                };
                state.counters().blocking_completed();
                (Json(body).into_response(), outcome)
            }
        },
    };
    response.extensions_mut().insert(Tally::Now(outcome));
    response
}

fn json_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Adds a top-level `"padding"` string so the serialized body is `bytes` long (or as
/// short as it can be, if that is less).
fn pad(body: &mut Value, bytes: u64) {
    let Value::Object(fields) = body else { return };
    fields.insert("padding".into(), json!(""));
    let len = body.to_string().len() as u64;
    let fill = usize::try_from(bytes.saturating_sub(len)).unwrap_or(usize::MAX);
    if let Value::Object(fields) = body {
        fields.insert("padding".into(), json!("A".repeat(fill)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_the_exact_size() {
        let mut body = json!({"answer": "hi", "id": 7});
        pad(&mut body, 10_000);
        assert_eq!(body.to_string().len(), 10_000);
        let mut small = json!({"answer": "hi"});
        pad(&mut small, 3);
        assert_eq!(small["padding"], "");
    }
}
