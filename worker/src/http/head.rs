//! Response head parsing: the status line and headers of an answer (by `httparse`),
//! and whether the server keeps the connection open.

/// Longest response head accepted (status line and headers).
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Most header fields accepted in one head.
pub(super) const MAX_HEADERS: usize = 100;

/// A parsed response head.
pub(super) struct Head {
    /// Bytes of the head, blank line included.
    pub(super) len: usize,
    /// The status (an interim 1xx too).
    pub(super) status: http::StatusCode,
    /// The header fields, in order.
    pub(super) headers: http::HeaderMap,
    /// The server keeps the connection open after this answer (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `keep-alive`).
    pub(super) keep_alive: bool,
}

/// Parses the response head at the start of `buf`. `Ok(None)`: not complete yet.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Uninitialized slots: zeroing 100 headers per parse was the client's largest
    // single cost per plain request.
    let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid response head: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    let status = http::StatusCode::from_u16(code).map_err(|_| format!("invalid status code {code}"))?;
    let mut headers = http::HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name =
            http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| format!("invalid header name {:?}", h.name))?;
        let value = http::HeaderValue::from_bytes(h.value).map_err(|_| format!("invalid value of header {name}"))?;
        headers.append(name, value);
    }
    let keep_alive = if resp.version == Some(1) {
        !has_token(&headers, "close")
    } else {
        has_token(&headers, "keep-alive")
    };
    Ok(Some(Head {
        len,
        status,
        headers,
        keep_alive,
    }))
}

/// Whether a Connection header lists `token`.
fn has_token(headers: &http::HeaderMap, token: &str) -> bool {
    headers.get_all(http::header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}
