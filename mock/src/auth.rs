//! The Service API key check, with dify-api's three 401 messages, so a load tester's
//! auth mistakes look here exactly as they would against the real thing.

use http::{HeaderMap, header};

use crate::envelope::ApiError;

/// Accepts the request if no key is configured, or if it carries
/// `Authorization: Bearer <expected>` (scheme case-insensitive, as Dify's is).
pub(crate) fn check(expected: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(char::is_whitespace))
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be provided and start with 'Bearer'"))?;
    let (scheme, token) = value;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized("Authorization scheme must be 'Bearer'"));
    }
    if !same(token.trim().as_bytes(), expected.as_bytes()) {
        return Err(ApiError::unauthorized("Access token is invalid"));
    }
    Ok(())
}

/// Compares in time independent of where the inputs differ, so probing the mock's
/// key byte by byte is no easier than probing the real server's.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_auth(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn no_key_configured_accepts_anything() {
        assert!(check(None, &HeaderMap::new()).is_ok());
    }

    #[test]
    fn checks_like_dify() {
        let key = Some("app-secret");
        assert!(check(key, &with_auth("Bearer app-secret")).is_ok());
        assert!(check(key, &with_auth("bearer  app-secret")).is_ok());
        let message = |headers: &HeaderMap| check(key, headers).unwrap_err().message().to_owned();
        assert_eq!(
            message(&HeaderMap::new()),
            "Authorization header must be provided and start with 'Bearer'"
        );
        assert_eq!(
            message(&with_auth("Bearer")),
            "Authorization header must be provided and start with 'Bearer'"
        );
        assert_eq!(
            message(&with_auth("Basic app-secret")),
            "Authorization scheme must be 'Bearer'"
        );
        assert_eq!(message(&with_auth("Bearer app-secreT")), "Access token is invalid");
        assert_eq!(message(&with_auth("Bearer app-secre")), "Access token is invalid");
    }
}
