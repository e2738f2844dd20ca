//! Dify's error envelope, `{"code": "...", "message": "...", "status": N}`, the body of
//! every non-2xx answer dify-api gives; [`ApiError`] is that envelope as a Rust error.

use std::borrow::Cow;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::outcome::{Outcome, Tally};

/// One Dify error answer. Handlers return `Result<_, ApiError>` so the HTTP status,
/// Dify's `code` and the body can never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 `invalid_param`: Dify's answer to a body or argument it cannot accept.
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_param", message)
    }

    /// 401 `unauthorized`, with one of Dify's messages for a missing or wrong key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 `not_found`, Werkzeug's wording, as dify-api sends it for unknown URLs.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
        )
    }

    /// 405 `method_not_allowed`, for a known URL asked with the wrong method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "The method is not allowed for the requested URL.",
        )
    }

    /// 400 `completion_request_error`: Dify's answer when the model provider fails
    /// a blocking call.
    pub fn completion_request_error(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "completion_request_error", message)
    }

    /// 429 `too_many_requests`: the app already has `max` requests in flight. Dify's
    /// `AppInvokeQuotaExceededError` (`APP_MAX_ACTIVE_REQUESTS`), word for word.
    pub fn too_many_requests(app_id: &str, max: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "Too many requests. Please try again later. The current maximum concurrent requests allowed for {app_id} is {max}."
            ),
        )
    }

    /// 429 `rate_limit_error`: Dify's answer when the workspace's plan quota is spent.
    pub fn rate_limit_error() -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "Rate Limit Error")
    }

    /// What a client that reads this answer should count it as.
    pub fn outcome(&self) -> Outcome {
        Outcome::of_status(self.status, &self.code)
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub fn code(&self) -> &str {
        &self.code
    }

    #[cfg(test)]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let outcome = self.outcome();
        let body = json!({
            "code": self.code,
            "message": self.message,
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, Json(body)).into_response();
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
}
