//! One Service API call as the handlers see it ([`ApiCall`]): accepted in dify-api's
//! order (key, then body), with the mock's `X-Mock-*` overrides resolved and the time
//! the request arrived, from which every delay is measured.

use axum::extract::Request;
use http::header;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::auth;
use crate::config::{Behaviour, Fault, Overrides};
use crate::envelope::ApiError;
use crate::state::MockState;

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

/// An accepted call: authorised, body parsed and checked, overrides resolved.
#[derive(Debug)]
pub(crate) struct ApiCall<B> {
    pub arrival: Instant,
    pub behaviour: Behaviour,
    pub body: B,
}

impl<B: Payload> ApiCall<B> {
    /// Accepts `request` or answers it with Dify's envelope: 401 for the key, 400 for
    /// overrides or body, 413 for an oversized body, and 500 if the client asked for
    /// an injected `http-500`.
    pub async fn accept(state: &MockState, request: Request) -> Result<Self, ApiError> {
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

        let behaviour = Behaviour::resolve(state.config(), &overrides);
        if behaviour.fault == Fault::Http500 {
            return Err(ApiError::internal(
                "Internal Server Error (injected by X-Mock-Fault: http-500)",
            ));
        }
        Ok(Self {
            arrival,
            behaviour,
            body,
        })
    }
}
