//! Dify's error envelope, `{"code": "...", "message": "...", "status": N}`, the body of
//! every non-2xx answer dify-api gives; [`ApiError`] is that envelope as a Rust error.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::outcome::{Outcome, Tally};
use crate::version::DifyVersion;

/// One Dify error answer. Handlers return `Result<_, ApiError>` so the HTTP status,
/// Dify's `code` and the body can never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    /// How a client should count it: by status and code, except where Dify answers a
    /// limit in another status's clothes (the app limit as 400 `invalid_param`).
    outcome: Outcome,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        let code = code.into();
        Self {
            outcome: Outcome::of_status(status, &code),
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_param`: Dify's answer to a body or argument it cannot accept.
    pub(crate) fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_param", message)
    }

    /// 401 `unauthorized`, with one of Dify's messages for a missing or wrong key.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 `not_found`, Werkzeug's wording, as dify-api sends it for unknown URLs.
    pub(crate) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
        )
    }

    /// 405 `method_not_allowed`, for a known URL asked with the wrong method.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "The method is not allowed for the requested URL.",
        )
    }

    /// 400 `completion_request_error`: Dify's answer when the model provider fails
    /// a blocking call.
    pub(crate) fn completion_request_error(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "completion_request_error", message)
    }

    /// The app already has `max` requests in flight: Dify's
    /// `AppInvokeQuotaExceededError` (`APP_MAX_ACTIVE_REQUESTS`), word for word. dify-api
    /// 1.14.1 answers it 400 `invalid_param` (its `ValueError` handler catches it
    /// first), earlier versions as we knew them 429 `too_many_requests`; a client should
    /// count both as [`Outcome::TooManyRequests`].
    pub(crate) fn too_many_requests(version: DifyVersion, app_id: &str, max: u64) -> Self {
        let message = format!(
            "Too many requests. Please try again later. The current maximum concurrent requests allowed for {app_id} is {max}."
        );
        let mut err = if version.app_limit_is_400() {
            Self::invalid_param(message)
        } else {
            Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        };
        err.outcome = Outcome::TooManyRequests;
        err
    }

    /// 429 `rate_limit_error`: Dify's answer when the workspace's plan quota is spent.
    pub(crate) fn rate_limit_error() -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "Rate Limit Error")
    }

    /// What a client that reads this answer should count it as.
    pub(crate) fn outcome(&self) -> Outcome {
        self.outcome
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub(crate) fn code(&self) -> &str {
        &self.code
    }

    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    /// As Flask's `jsonify` writes it in dify-api: compact, keys in this order, a
    /// trailing newline, `Content-Type: application/json`.
    fn into_response(self) -> Response {
        let outcome = self.outcome();
        let body = json!({
            "code": self.code,
            "message": self.message,
            "status": self.status.as_u16(),
        });
        let mut bytes = body.to_string().into_bytes();
        bytes.push(b'\n');
        let content_type = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        let mut response = (self.status, content_type, bytes).into_response();
        response.extensions_mut().insert(Tally::Now(outcome));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn renders_difys_envelope() {
        let response = ApiError::invalid_param("user is required").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            json!({"code": "invalid_param", "message": "user is required", "status": 400})
        );
    }

    #[test]
    fn the_app_limit_takes_the_versions_form_and_one_outcome() {
        let new = ApiError::too_many_requests(DifyVersion::V1_14_1, "app", 2);
        assert_eq!((new.status(), new.code()), (StatusCode::BAD_REQUEST, "invalid_param"));
        let old = ApiError::too_many_requests(DifyVersion::new(1, 13, 0), "app", 2);
        assert_eq!(
            (old.status(), old.code()),
            (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
        );
        assert_eq!(new.message(), old.message());
        assert_eq!(
            (new.outcome(), old.outcome()),
            (Outcome::TooManyRequests, Outcome::TooManyRequests)
        );
    }
}
