//! One Service API call as the handlers see it ([`ApiCall`]): accepted in dify-api's
//! order (key, body, app mode, quota, concurrency), with the mock's `X-Mock-*` overrides
//! resolved and the time the request arrived, from which every delay is measured.

use axum::extract::Request;
use http::header;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::auth;
use crate::config::{AppMode, Behaviour, Overrides};
use crate::envelope::ApiError;
use crate::limits::ActiveSlot;
use crate::outcome::Outcome;
use crate::state::MockState;
use crate::tasks::TaskKind;

/// Largest request body accepted (Dify's default upload limit is of this order); the
/// mock reads bodies whole, so this also bounds its memory per request.
const MAX_BODY: usize = 16 << 20;

/// When a request reached the mock, stamped by the counting middleware before anything
/// else runs, so injected delays are measured from arrival, not from handler start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival(pub Instant);

/// `response_mode` of a Service API body; Dify treats a missing one as blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ResponseMode {
    #[default]
    Blocking,
    Streaming,
}

/// A JSON request body with the checks serde's shape alone cannot express.
pub(crate) trait Payload: DeserializeOwned {
    fn check(&self) -> Result<(), ApiError>;
}

/// Dify's Service API requires a non-empty `user` on every call.
pub(crate) fn require_user(user: &str) -> Result<(), ApiError> {
    if user.trim().is_empty() {
        return Err(ApiError::invalid_param("user is required and must not be empty"));
    }
    Ok(())
}

/// When and with which overrides a request was received, once its key and body passed.
#[derive(Debug)]
pub(crate) struct Received {
    pub arrival: Instant,
    pub overrides: Overrides,
}

/// The checks every Service API call passes first, in dify-api's order: the key (401),
/// the `X-Mock-*` headers and the body (400, or 413 when oversized).
pub(crate) async fn accept_body<B: Payload>(state: &MockState, request: Request) -> Result<(B, Received), ApiError> {
    let (parts, body) = request.into_parts();
    let arrival = parts
        .extensions
        .get::<Arrival>()
        .map_or_else(Instant::now, |arrival| arrival.0);

    if let Err(err) = auth::check(state.config().api_key.as_deref(), &parts.headers) {
        state.counters().unauthorized();
        return Err(err);
    }
    let overrides = Overrides::from_headers(&parts.headers)?;

    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "request_entity_too_large",
            format!("request body is larger than {MAX_BODY} bytes"),
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|err| ApiError::invalid_param(format!("reading the request body: {err}")))?;
    let body: B = serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::invalid_param(format!("request body is not valid JSON for this API: {err}")))?;
    body.check()?;
    Ok((body, Received { arrival, overrides }))
}

/// An accepted run: authorised, body parsed and checked, overrides resolved, and a
/// place under `--max-active` taken.
#[derive(Debug)]
pub(crate) struct ApiCall<B> {
    pub arrival: Instant,
    pub behaviour: Behaviour,
    pub body: B,
    /// The run's place under `--max-active`, held until the run ends (`None` only in
    /// unit tests).
    pub slot: Option<ActiveSlot>,
}

impl<B: Payload> ApiCall<B> {
    /// Accepts a run on a `route` of the given kind, or answers it with Dify's envelope,
    /// in dify-api's order: 401 for the key; 400 for overrides, body or an app of the
    /// wrong mode (413 if oversized); an injected `http-<code>` or `rate-limit` fault
    /// (where Dify's billing check would answer); then "Too many requests" (400 or
    /// 429 by `--dify-version`) if `--max-active` runs are already in flight.
    pub(crate) async fn accept(state: &MockState, request: Request, route: TaskKind) -> Result<Self, ApiError> {
        let (body, received) = accept_body::<B>(state, request).await?;
        let behaviour = Behaviour::resolve(state.config(), &received.overrides);
        match (route, behaviour.app_mode) {
            (TaskKind::Workflow, Some(AppMode::Chat(_))) => {
                return Err(ApiError::new(
                    http::StatusCode::BAD_REQUEST,
                    "not_workflow_app",
                    "Please check if your app mode matches the right API route.",
                ));
            }
            (TaskKind::Chat, Some(AppMode::Workflow)) => {
                return Err(ApiError::new(
                    http::StatusCode::BAD_REQUEST,
                    "not_chat_app",
                    "Please check if your app mode matches the right API route.",
                ));
            }
            _ => {}
        }
        if let Some(err) = behaviour.fault.answer() {
            if err.outcome() == Outcome::Unauthorized {
                state.counters().unauthorized();
            }
            return Err(err);
        }
        let limit = state.active_limit();
        let slot = limit
            .try_acquire()
            .ok_or_else(|| ApiError::too_many_requests(state.config().dify_version, state.app_id(), limit.max()))?;
        Ok(Self {
            arrival: received.arrival,
            behaviour,
            body,
            slot: Some(slot),
        })
    }
}
