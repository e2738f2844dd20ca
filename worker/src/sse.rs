//! Incremental, bounded parser for `text/event-stream` bodies (server-sent events).
//!
//! This module owns turning the bytes of an SSE response body into events. It follows the
//! HTML Living Standard, "Server-sent events", section "Interpreting an event stream":
//!
//! - lines end with CRLF, LF or a lone CR, and a CR that ends one chunk followed by an LF
//!   that starts the next is one line ending, not two;
//! - one leading UTF-8 byte order mark is skipped;
//! - a blank line dispatches the event, lines starting with `:` are comments, `field: value`
//!   loses exactly one space after the colon, and a line without a colon is a field with an
//!   empty value;
//! - `event` sets the type, `data` appends a line to the data, `id` sets the last event id
//!   unless the value contains NUL (the id persists across events), `retry` sets the
//!   reconnection time when the value is all ASCII digits, and other fields are ignored;
//! - bytes are decoded as UTF-8 with replacement, so invalid input never errors;
//! - an event still open when the stream ends is discarded ([`SseParser::has_pending`] tells
//!   the caller that this happened, which for dify-api means the stream was cut mid-event).
//!
//! **Deliberate deviation from the standard:** the standard drops an event whose data buffer
//! is empty. dify-api keeps streams alive with `event: ping\n\n`, and a load tester must
//! count those, so an event that has a non-empty `event` type but no `data` line is
//! dispatched with that type and empty data. An event with neither data nor a type (for
//! example an `id:`-only or `retry:`-only block) is still not dispatched, and neither is
//! `event:` with an empty value, which the standard treats as no type at all.
//!
//! The parser is on the hot path of every virtual user, so it keeps its buffers between
//! events and hands the caller borrowed [`Event`]s: in the steady state a well-formed UTF-8
//! stream is parsed without allocating. Lines that arrive whole inside one chunk are parsed
//! in place; only a line cut by a chunk boundary is copied.
//!
//! Memory is bounded by `max_event_bytes`: the line being read, the current event's type and
//! data and the last event id together never exceed it, so a hostile or broken server cannot
//! make a virtual user buffer without limit. Exceeding it is [`SseError::EventTooLarge`].

/// Default bound on what one parser buffers: one line, or one event's data, of 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// The UTF-8 encoding of U+FEFF, skipped once at the start of the stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Capacity a buffer keeps after an unusually large event. Without this, one 1 MiB event
/// would pin 1 MiB per stream for the rest of the stream; 500 streams of typical dify-api
/// events (a few KiB) never reach it, so the steady state never reallocates.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// One dispatched event, borrowing the parser's buffers until the callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event` field, or `"message"` when the event had none.
    pub event_type: &'a str,
    /// The `data` lines joined with `"\n"`; empty for a data-less typed event such as a ping.
    pub data: &'a str,
    /// The last event id of the stream (it persists across events, as in the standard);
    /// `None` while it is empty, because an empty id means "no id" to a reconnecting client.
    pub id: Option<&'a str>,
    /// Some when this event's block carried a valid `retry` field.
    pub retry_ms: Option<u64>,
}

/// An [`Event`] that owns its strings, for tests and benches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEvent {
    /// The `event` field, or `"message"` when the event had none.
    pub event_type: String,
    /// The `data` lines joined with `"\n"`.
    pub data: String,
    /// The last event id of the stream (see [`Event::id`]).
    pub id: Option<String>,
    /// Some when this event's block carried a valid `retry` field.
    pub retry_ms: Option<u64>,
}

impl From<Event<'_>> for OwnedEvent {
    fn from(ev: Event<'_>) -> Self {
        Self {
            event_type: ev.event_type.to_owned(),
            data: ev.data.to_owned(),
            id: ev.id.map(str::to_owned),
            retry_ms: ev.retry_ms,
        }
    }
}

/// Why a stream could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// An event or a line grew past the limit (`sse_max_event_bytes`) before it ended.
    #[error("event or line larger than {limit} bytes")]
    EventTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Where the parser is in the check for a leading byte order mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// At the start of the stream, having matched this many bytes of [`BOM`]. The matched
    /// bytes are not stored: they are known, and become line content if the match fails.
    Checking(usize),
    Done,
}

/// Incremental event-stream parser: feed it chunks as they arrive, in any sizes.
///
/// After [`SseError::EventTooLarge`] the parser drops what it buffered and every later
/// [`feed`](Self::feed) returns the same error: resuming in the middle of an oversized line
/// would misparse the stream, so the caller should abandon it.
#[derive(Debug, Clone)]
pub struct SseParser {
    /// Bound on `buffered_bytes()` plus the line being parsed.
    max_event_bytes: usize,
    /// The start of a line cut by a chunk boundary; empty when the last chunk ended a line.
    line: Vec<u8>,
    /// The event type buffer of the standard.
    event_type: String,
    /// The data buffer of the standard: each `data` value followed by `"\n"`.
    data: String,
    /// The last event id buffer of the standard; persists across events.
    last_id: String,
    /// The valid `retry` of the current block, reported on the event it dispatches.
    block_retry: Option<u64>,
    /// The stream's reconnection time: the last valid `retry` seen in any block.
    reconnection_ms: Option<u64>,
    /// A field line has been seen since the last blank line.
    in_event: bool,
    /// The previous chunk ended with CR, so an LF starting the next chunk ends no line.
    after_cr: bool,
    bom: Bom,
    /// Set by an `EventTooLarge` error; see the type's docs.
    failed: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that buffers at most `max_event_bytes` (see the module docs).
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            event_type: String::new(),
            data: String::new(),
            last_id: String::new(),
            block_retry: None,
            reconnection_ms: None,
            in_event: false,
            after_cr: false,
            bom: Bom::Checking(0),
            failed: false,
        }
    }

    /// Feed the next chunk; calls on_event for each dispatched event, in order.
    ///
    /// Events completed before an oversized line or event are still delivered before the
    /// error is returned, so splitting a stream differently never changes what is seen.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(Event<'_>)) -> Result<(), SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        let result = self.feed_inner(chunk, on_event);
        if result.is_err() {
            self.failed = true;
            self.line = Vec::new();
            self.event_type = String::new();
            self.data = String::new();
            self.last_id = String::new();
            self.in_event = false;
        }
        result
    }

    /// True when bytes of an undispatched event (or a partial line) are buffered.
    ///
    /// Checked at end of stream, true means the server closed it mid-event.
    pub fn has_pending(&self) -> bool {
        self.in_event || !self.line.is_empty() || matches!(self.bom, Bom::Checking(n) if n > 0)
    }

    /// Bytes currently buffered (for memory accounting tests). Never exceeds the limit.
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.event_type.len() + self.data.len() + self.last_id.len()
    }

    /// The stream's reconnection time in milliseconds, from the last valid `retry` field,
    /// including one in a block that dispatched no event.
    pub fn reconnection_ms(&self) -> Option<u64> {
        self.reconnection_ms
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    /// Errors unless the current event plus `extra` more bytes fit in the limit.
    ///
    /// It is checked for every whole line and for every partial line before it is stored.
    /// A partial line is a prefix of the whole line, so the check fails on the same line
    /// however the stream is split.
    fn ensure_room(&self, extra: usize) -> Result<(), SseError> {
        if self.buffered_bytes().saturating_add(extra) > self.max_event_bytes {
            Err(self.too_large())
        } else {
            Ok(())
        }
    }

    fn feed_inner(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(Event<'_>)) -> Result<(), SseError> {
        let mut rest = self.skip_bom(chunk);
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(after_lf) = rest.strip_prefix(b"\n") {
                rest = after_lf;
            }
        }
        while let Some(eol) = find_eol(rest) {
            let next = match (rest[eol], rest.get(eol + 1)) {
                (b'\r', Some(b'\n')) => eol + 2,
                (b'\r', None) => {
                    self.after_cr = true;
                    eol + 1
                }
                _ => eol + 1,
            };
            let text = &rest[..eol];
            if self.line.is_empty() {
                self.process_line(text, on_event)?;
            } else {
                self.ensure_room(text.len())?;
                // Taken out so that `process_line` can borrow the parser mutably; taking a
                // Vec moves its allocation without copying, and it is put back below.
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(text);
                let result = self.process_line(&line, on_event);
                line.clear();
                self.line = line;
                result?;
            }
            rest = &rest[next..];
        }
        if !rest.is_empty() {
            self.ensure_room(rest.len())?;
            self.line.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Consumes a byte order mark at the very start of the stream, even one split across
    /// chunks, and returns the rest of `chunk`.
    fn skip_bom<'c>(&mut self, mut chunk: &'c [u8]) -> &'c [u8] {
        while let Bom::Checking(matched) = self.bom {
            let Some((&byte, after)) = chunk.split_first() else {
                return chunk;
            };
            if BOM.get(matched) == Some(&byte) {
                chunk = after;
                self.bom = if matched + 1 == BOM.len() {
                    Bom::Done
                } else {
                    Bom::Checking(matched + 1)
                };
            } else {
                // Not a BOM after all: the bytes matched so far start the first line.
                self.line.extend_from_slice(&BOM[..matched]);
                self.bom = Bom::Done;
            }
        }
        chunk
    }

    /// Applies one complete line (without its line ending) to the parser state.
    fn process_line(&mut self, line: &[u8], on_event: &mut dyn FnMut(Event<'_>)) -> Result<(), SseError> {
        self.ensure_room(line.len())?;
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return Ok(()), // comment
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        self.in_event = true;
        match field {
            b"data" => {
                push_utf8(&mut self.data, value);
                self.data.push('\n');
            }
            b"event" => {
                self.event_type.clear();
                push_utf8(&mut self.event_type, value);
            }
            // U+0000 is encoded as the single byte 0 and no other sequence contains it.
            b"id" if !value.contains(&0) => {
                self.last_id.clear();
                push_utf8(&mut self.last_id, value);
            }
            b"retry" => {
                if let Some(ms) = parse_retry(value) {
                    self.block_retry = Some(ms);
                    self.reconnection_ms = Some(ms);
                }
            }
            _ => {}
        }
        // Replacement characters take three bytes for each invalid one, so the decoded
        // value can outgrow the line that was checked on entry.
        self.ensure_room(0)
    }

    /// The blank-line step of the standard, with the ping deviation of the module docs.
    fn dispatch(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        let retry_ms = self.block_retry.take();
        self.in_event = false;
        if self.data.is_empty() && self.event_type.is_empty() {
            return;
        }
        let event_type = match self.event_type.as_str() {
            "" => "message",
            typed => typed,
        };
        on_event(Event {
            event_type,
            data: self.data.strip_suffix('\n').unwrap_or(&self.data),
            id: Some(self.last_id.as_str()).filter(|id| !id.is_empty()),
            retry_ms,
        });
        self.data.clear();
        self.event_type.clear();
        self.data.shrink_to(RETAINED_CAPACITY);
        self.line.shrink_to(RETAINED_CAPACITY);
    }
}

/// A `retry` value: one or more ASCII digits, saturating at `u64::MAX` milliseconds.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |ms, &d| ms.saturating_mul(10).saturating_add(u64::from(d - b'0'))),
    )
}

/// Index of the first CR or LF in `hay`.
///
/// Lines of dify-api streams are hundreds of bytes of JSON, so this skips eight bytes at a
/// time with the classic "has zero byte" word trick (`(v - 0x01..) & !v & 0x80..` is
/// non-zero exactly when some byte of `v` is zero) before locating the byte in the word.
fn find_eol(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const CRS: u64 = u64::from_ne_bytes([b'\r'; 8]);
    fn has_zero_byte(v: u64) -> bool {
        v.wrapping_sub(ONES) & !v & HIGHS != 0
    }
    fn is_eol(b: &u8) -> bool {
        *b == b'\n' || *b == b'\r'
    }
    let mut words = hay.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let Ok(bytes) = <[u8; 8]>::try_from(word) else {
            break; // unreachable: chunks_exact(8) yields 8-byte slices
        };
        let v = u64::from_ne_bytes(bytes);
        if has_zero_byte(v ^ LFS) || has_zero_byte(v ^ CRS) {
            return word.iter().position(is_eol).map(|i| offset + i);
        }
        offset += 8;
    }
    hay[offset..].iter().position(is_eol).map(|i| offset + i)
}

/// Parses a whole stream with the default limit, for tests and benches.
///
/// An event still open at the end is discarded, as at the end of a real stream.
pub fn parse_all(bytes: &[u8]) -> Result<Vec<OwnedEvent>, SseError> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser.feed(bytes, &mut |ev| events.push(ev.into()))?;
    Ok(events)
}

/// Appends `bytes` as text, invalid sequences replaced by U+FFFD as the spec says.
/// Valid UTF-8 (every real stream) takes the fast validating path; `from_utf8_lossy`
/// walks byte chunks and showed up in the per-event profile.
fn push_utf8(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WORKFLOW: &[u8] = include_bytes!("../tests/fixtures/sse/workflow.sse");
    const CHATFLOW: &[u8] = include_bytes!("../tests/fixtures/sse/chatflow.sse");
    const CHAT: &[u8] = include_bytes!("../tests/fixtures/sse/chat.sse");
    const AGENT: &[u8] = include_bytes!("../tests/fixtures/sse/agent.sse");
    const FIXTURES: [&[u8]; 4] = [WORKFLOW, CHATFLOW, CHAT, AGENT];

    /// Feeds `chunks` in order to a parser with `limit`; returns the events seen (including
    /// those before an error), the result, the final `has_pending` and the largest
    /// `buffered_bytes` observed after any feed.
    fn run(limit: usize, chunks: &[&[u8]]) -> (Vec<OwnedEvent>, Result<(), SseError>, bool, usize) {
        let mut parser = SseParser::new(limit);
        let mut events = Vec::new();
        let mut result = Ok(());
        let mut peak = 0;
        for chunk in chunks {
            result = parser.feed(chunk, &mut |ev| events.push(ev.into()));
            peak = peak.max(parser.buffered_bytes());
            if result.is_err() {
                break;
            }
        }
        (events, result, parser.has_pending(), peak)
    }

    fn events(chunks: &[&[u8]]) -> Vec<OwnedEvent> {
        let (events, result, _, _) = run(DEFAULT_MAX_EVENT_BYTES, chunks);
        assert_eq!(result, Ok(()));
        events
    }

    fn ev(event_type: &str, data: &str) -> OwnedEvent {
        OwnedEvent {
            event_type: event_type.into(),
            data: data.into(),
            id: None,
            retry_ms: None,
        }
    }

    fn with_id(mut e: OwnedEvent, id: &str) -> OwnedEvent {
        e.id = Some(id.into());
        e
    }

    /// Splits `bytes` at the given offsets (taken modulo the length, in any order).
    fn split_at_points(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            pieces.push(bytes[start..cut].to_vec());
            start = cut;
        }
        pieces
    }

    fn as_slices(pieces: &[Vec<u8>]) -> Vec<&[u8]> {
        pieces.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn every_line_ending_ends_a_line() {
        let want = vec![ev("message", "a\nb")];
        assert_eq!(events(&[b"data: a\ndata: b\n\n"]), want);
        assert_eq!(events(&[b"data: a\r\ndata: b\r\n\r\n"]), want);
        assert_eq!(events(&[b"data: a\rdata: b\r\r"]), want);
        assert_eq!(events(&[b"data: a\r\ndata: b\r\n\n"]), want);
        // CR LF CR is one line ending then a blank line, not two blank lines.
        assert_eq!(
            events(&[b"data: a\r\n\rdata: b\n\n"]),
            [ev("message", "a"), ev("message", "b")]
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        let want = vec![ev("message", "a\nb")];
        assert_eq!(events(&[b"data: a\r", b"\ndata: b\r\n\r\n"]), want);
        assert_eq!(events(&[b"data: a\r", b"", b"\ndata: b\r", b"\n\r", b"\n"]), want);
        // A CR at the end of a chunk followed by another CR is a blank line.
        assert_eq!(events(&[b"data: a\r", b"\r"]), [ev("message", "a")]);
    }

    #[test]
    fn leading_bom_is_skipped_once_even_when_split() {
        assert_eq!(events(&[b"\xEF\xBB\xBFdata: x\n\n"]), [ev("message", "x")]);
        assert_eq!(
            events(&[b"\xEF", b"\xBB", b"\xBF", b"data: x\n\n"]),
            [ev("message", "x")]
        );
        // A second BOM is part of the first field name, which is then unknown.
        assert_eq!(events(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"]), []);
        // A BOM later in the stream is not skipped either.
        assert_eq!(events(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]), [ev("message", "x")]);
    }

    #[test]
    fn partial_bom_becomes_line_content() {
        let mut parser = SseParser::default();
        let mut seen = Vec::new();
        let mut sink = |ev: Event<'_>| seen.push(OwnedEvent::from(ev));
        assert_eq!(parser.feed(b"\xEF", &mut sink), Ok(()));
        assert!(parser.has_pending(), "a possible BOM start is a pending line");
        assert_eq!(parser.feed(b"\xBB\ndata: x\n\n", &mut sink), Ok(()));
        assert!(!parser.has_pending());
        assert_eq!(seen, [ev("message", "x")]);
        // The two bytes were a line of their own: an unknown (replacement-char) field.
        assert_eq!(events(&[b"\xEF\xBBdata: x\n\n"]), []);
    }

    #[test]
    fn comments_are_ignored_and_do_not_dispatch() {
        assert_eq!(events(&[b": keep-alive\n\n"]), []);
        assert_eq!(events(&[b":\n\n"]), []);
        assert_eq!(
            events(&[b"data: a\n: comment inside an event\ndata: b\n\n"]),
            [ev("message", "a\nb")]
        );
    }

    #[test]
    fn line_without_colon_is_field_with_empty_value() {
        assert_eq!(events(&[b"data\n\n"]), [ev("message", "")]);
        assert_eq!(events(&[b"data\ndata\n\n"]), [ev("message", "\n")]);
        // `event` with an empty value leaves the default type.
        assert_eq!(events(&[b"event\ndata: x\n\n"]), [ev("message", "x")]);
    }

    #[test]
    fn exactly_one_leading_space_is_removed() {
        assert_eq!(events(&[b"data:x\n\n"]), [ev("message", "x")]);
        assert_eq!(events(&[b"data: x\n\n"]), [ev("message", "x")]);
        assert_eq!(events(&[b"data:  x \n\n"]), [ev("message", " x ")]);
        assert_eq!(events(&[b"data:\tx\n\n"]), [ev("message", "\tx")]);
        assert_eq!(events(&[b"event:  t\ndata: x\n\n"]), [ev(" t", "x")]);
        // Only the first colon separates; later ones belong to the value.
        assert_eq!(events(&[b"data: a: b\n\n"]), [ev("message", "a: b")]);
    }

    #[test]
    fn data_lines_join_with_newline_and_last_newline_is_removed() {
        assert_eq!(
            events(&[b"data: a\ndata:\ndata: b\ndata\n\n"]),
            [ev("message", "a\n\nb\n")]
        );
        assert_eq!(events(&[b"data: {\"x\":1}\n\n"]), [ev("message", "{\"x\":1}")]);
    }

    #[test]
    fn field_names_are_exact_and_unknown_fields_ignored() {
        assert_eq!(events(&[b"Data: x\n\n"]), []);
        assert_eq!(events(&[b"data : x\n\n"]), []);
        assert_eq!(events(&[b"foo: bar\ndata: x\n\n"]), [ev("message", "x")]);
    }

    #[test]
    fn event_field_sets_type_and_type_resets_after_dispatch() {
        assert_eq!(
            events(&[b"event: a\nevent: b\ndata: 1\n\ndata: 2\n\n"]),
            [ev("b", "1"), ev("message", "2")]
        );
    }

    #[test]
    fn id_persists_resets_when_empty_and_is_ignored_with_nul() {
        assert_eq!(
            events(&[b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid\ndata: d\n\n"]),
            [
                with_id(ev("message", "a"), "1"),
                with_id(ev("message", "b"), "1"),
                with_id(ev("message", "c"), "1"),
                ev("message", "d"),
            ]
        );
        // An id-only block sets the id for later events but dispatches nothing.
        assert_eq!(events(&[b"id: 7\n\ndata: x\n\n"]), [with_id(ev("message", "x"), "7")]);
    }

    #[test]
    fn retry_needs_ascii_digits_and_belongs_to_its_block() {
        let mut parser = SseParser::default();
        let mut seen = Vec::new();
        let stream = b"retry: 1500\ndata: a\n\ndata: b\n\nretry: 15a0\ndata: c\n\n\
            retry: -1\nretry: 1.5\nretry:  20\nretry:\nretry\ndata: d\n\nretry: 99\n\n";
        let result = parser.feed(stream, &mut |ev| seen.push(OwnedEvent::from(ev)));
        assert_eq!(result, Ok(()));
        let mut a = ev("message", "a");
        a.retry_ms = Some(1500);
        assert_eq!(seen, [a, ev("message", "b"), ev("message", "c"), ev("message", "d")]);
        // The retry-only block dispatched nothing but still set the reconnection time.
        assert_eq!(parser.reconnection_ms(), Some(99));
        assert_eq!(parse_retry(b"99999999999999999999999"), Some(u64::MAX));
    }

    #[test]
    fn dify_ping_is_dispatched_with_empty_data() {
        assert_eq!(events(&[b"event: ping\n\n"]), [ev("ping", "")]);
        assert_eq!(
            events(&[b"data: {}\n\nevent: ping\n\ndata: {}\n\n"]),
            [ev("message", "{}"), ev("ping", ""), ev("message", "{}")]
        );
    }

    #[test]
    fn type_defaults_to_message() {
        assert_eq!(events(&[b"data: x\n\n"]), [ev("message", "x")]);
        assert_eq!(events(&[b"event:\ndata: x\n\n"]), [ev("message", "x")]);
    }

    #[test]
    fn blocks_without_data_or_type_are_not_dispatched() {
        assert_eq!(events(&[b"\n\n\r\n\r"]), []);
        assert_eq!(events(&[b"id: 3\n\n"]), []);
        assert_eq!(events(&[b"retry: 10\n\n"]), []);
        assert_eq!(events(&[b"event:\n\n"]), []);
        assert_eq!(events(&[b"foo\n\n"]), []);
    }

    #[test]
    fn incomplete_event_at_end_is_discarded_but_reported_pending() {
        assert_eq!(parse_all(b"data: x\n"), Ok(vec![]));
        for (stream, pending) in [
            (&b"data: x\n"[..], true),
            (b"data: x", true),
            (b"event: ping\n", true),
            (b"id: 1\n", true),
            (b"data: x\n\n", false),
            (b"data: x\r", true),
            (b"data: x\r\r", false),
            (b": comment\n", false),
            (b"", false),
        ] {
            let (_, result, has_pending, _) = run(DEFAULT_MAX_EVENT_BYTES, &[stream]);
            assert_eq!(result, Ok(()));
            assert_eq!(has_pending, pending, "{:?}", String::from_utf8_lossy(stream));
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(events(&[b"data: a\xFFb\n\n"]), [ev("message", "a\u{FFFD}b")]);
        assert_eq!(
            events(&[b"event: \xC3\ndata: \xE2\x82\n\n"]),
            [ev("\u{FFFD}", "\u{FFFD}")]
        );
        // A multi-byte character split across chunks is decoded whole.
        assert_eq!(events(&[b"data: \xC3", b"\xA9\n\n"]), [ev("message", "\u{E9}")]);
    }

    #[test]
    fn long_line_exceeds_limit_without_buffering_it() {
        let limit = 16;
        let long = [b'x'; 40];
        for chunks in [
            vec![&b"data: "[..], &long[..]],
            vec![&b"data: "[..], &long[..], b"\n\n"],
            vec![&b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\n"[..]],
        ] {
            let (events, result, _, peak) = run(limit, &chunks);
            assert_eq!(result, Err(SseError::EventTooLarge { limit }));
            assert!(events.is_empty());
            assert!(peak <= limit, "buffered {peak} > {limit}");
        }
        // A line of exactly the limit fits.
        assert_eq!(run(limit, &[b"data: 0123456789\n\n"]).0, [ev("message", "0123456789")]);
    }

    #[test]
    fn many_data_lines_exceed_limit_after_earlier_events_are_delivered() {
        let limit = 64;
        let mut stream = b"data: first\n\n".to_vec();
        for _ in 0..20 {
            stream.extend_from_slice(b"data: 0123456789\n");
        }
        let (events, result, has_pending, peak) = run(limit, &[&stream]);
        assert_eq!(events, [ev("message", "first")]);
        assert_eq!(result, Err(SseError::EventTooLarge { limit }));
        assert!(peak <= limit);
        assert!(!has_pending, "the failed parser drops its buffers");

        let mut parser = SseParser::new(limit);
        let mut sink = |_: Event<'_>| {};
        assert!(parser.feed(&stream, &mut sink).is_err());
        assert_eq!(parser.buffered_bytes(), 0);
        assert_eq!(
            parser.feed(b"data: ok\n\n", &mut sink),
            Err(SseError::EventTooLarge { limit }),
            "a failed parser stays failed"
        );
    }

    #[test]
    fn replacement_growth_counts_against_the_limit() {
        // 10 invalid bytes fit as a line but decode to 30 bytes of U+FFFD.
        let (_, result, _, peak) = run(24, &[b"data:\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\n"]);
        assert_eq!(result, Err(SseError::EventTooLarge { limit: 24 }));
        assert!(peak <= 24);
    }

    #[test]
    fn steady_state_reuses_buffers() {
        let mut parser = SseParser::default();
        let mut count = 0;
        let mut sink = |_: Event<'_>| count += 1;
        let event = b"event: message\ndata: {\"event\": \"message\", \"answer\": \"hi\"}\n\n";
        assert_eq!(parser.feed(event, &mut sink), Ok(()));
        let (data_ptr, type_ptr) = (parser.data.as_ptr(), parser.event_type.as_ptr());
        for _ in 0..100 {
            assert_eq!(parser.feed(event, &mut sink), Ok(()));
        }
        assert_eq!(count, 101);
        assert_eq!(parser.data.as_ptr(), data_ptr);
        assert_eq!(parser.event_type.as_ptr(), type_ptr);
        assert_eq!(parser.buffered_bytes(), 0);
    }

    #[test]
    fn large_event_does_not_pin_its_capacity() {
        let mut stream = b"data: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 300 * 1024));
        stream.extend_from_slice(b"\n\n");
        let mut parser = SseParser::default();
        let mut len = 0;
        for piece in stream.chunks(4096) {
            assert_eq!(parser.feed(piece, &mut |ev| len = ev.data.len()), Ok(()));
        }
        assert_eq!(len, 300 * 1024);
        assert!(parser.data.capacity() <= RETAINED_CAPACITY);
        assert!(parser.line.capacity() <= RETAINED_CAPACITY);
    }

    #[test]
    fn find_eol_matches_naive_search() {
        let mut hay = vec![b'a'; 40];
        assert_eq!(find_eol(&hay), None);
        for i in 0..hay.len() {
            for eol in [b'\n', b'\r'] {
                hay[i] = eol;
                assert_eq!(find_eol(&hay), Some(i));
                assert_eq!(find_eol(&hay[..i]), None);
                hay[i] = b'a';
            }
        }
        // Bytes that differ from CR/LF by one bit, and high bytes, must not match.
        let near = [0x0B, 0x0C, 0x0E, 0x8A, 0x8D, 0xFF, 0x00, 0x09, 0x2A, 0x2D];
        assert_eq!(find_eol(&near.repeat(5)), None);
    }

    /// A kind of event and how many times it repeats in a row.
    type KindRun = (&'static str, usize);

    /// Each fixture as (bytes, expected kinds in order, where a kind is "ping" or the
    /// `event` field of the JSON data, with counts of consecutive repeats).
    fn fixture_expectations() -> [(&'static str, &'static [u8], Vec<KindRun>); 4] {
        [
            (
                "workflow",
                WORKFLOW,
                vec![
                    ("workflow_started", 1),
                    ("node_started", 1),
                    ("node_finished", 1),
                    ("node_started", 1),
                    ("ping", 1),
                    ("text_chunk", 6),
                    ("ping", 1),
                    ("text_chunk", 5),
                    ("node_finished", 1),
                    ("ping", 1),
                    ("node_started", 1),
                    ("node_finished", 1),
                    ("workflow_finished", 1),
                ],
            ),
            (
                "chatflow",
                CHATFLOW,
                vec![
                    ("workflow_started", 1),
                    ("node_started", 1),
                    ("node_finished", 1),
                    ("node_started", 1),
                    ("message", 5),
                    ("ping", 1),
                    ("message", 7),
                    ("node_finished", 1),
                    ("workflow_finished", 1),
                    ("message_end", 1),
                ],
            ),
            (
                "chat",
                CHAT,
                vec![("message", 8), ("ping", 1), ("message", 7), ("message_end", 1)],
            ),
            (
                "agent",
                AGENT,
                vec![
                    ("agent_thought", 2),
                    ("ping", 1),
                    ("agent_thought", 1),
                    ("agent_message", 7),
                    ("agent_thought", 1),
                    ("message_end", 1),
                ],
            ),
        ]
    }

    fn json(event: &OwnedEvent) -> serde_json::Value {
        serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{e}: {:?}", event.data))
    }

    #[test]
    fn fixtures_parse_to_the_dify_event_sequence() {
        for (name, bytes, runs) in fixture_expectations() {
            let events = parse_all(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let kinds: Vec<String> = events
                .iter()
                .map(|event| match event.event_type.as_str() {
                    "ping" => {
                        assert_eq!(event.data, "", "{name}");
                        "ping".to_owned()
                    }
                    "message" => json(event)["event"].as_str().unwrap_or("?").to_owned(),
                    other => panic!("{name}: unexpected type {other}"),
                })
                .collect();
            let want: Vec<String> = runs
                .iter()
                .flat_map(|&(kind, n)| std::iter::repeat_n(kind.to_owned(), n))
                .collect();
            assert_eq!(kinds, want, "{name}");
            assert!(events.iter().all(|e| e.id.is_none() && e.retry_ms.is_none()));
        }
    }

    #[test]
    fn fixtures_carry_dify_fields() {
        assert!(CHAT.windows(2).any(|w| w == b"\r\n"), "chat.sse exercises CRLF");
        let answer = |bytes, kind: &str| -> String {
            let events = parse_all(bytes).unwrap_or_default();
            let parts: Vec<serde_json::Value> = events.iter().filter(|e| e.event_type == "message").map(json).collect();
            parts
                .iter()
                .filter(|v| v["event"] == kind)
                .filter_map(|v| v["answer"].as_str().or(v["data"]["text"].as_str()))
                .collect()
        };
        assert_eq!(
            answer(AGENT, "agent_message"),
            "现在是 UTC 时间 08:05 😀 — 祝你有美好的一天。"
        );
        assert_eq!(
            answer(CHAT, "message"),
            "Hello! I'm an assistant built with Dify. How can I help today?"
        );
        assert_eq!(
            answer(WORKFLOW, "text_chunk"),
            "Load testing measures how a system behaves under concurrent users. Start small, then ramp up."
        );
        let chat = parse_all(CHAT).unwrap_or_default();
        let end = chat.last().map(json).unwrap_or_default();
        assert_eq!(end["metadata"]["usage"]["total_tokens"], 1168);
        assert!(end["task_id"].is_string() && end["message_id"].is_string());
    }

    #[test]
    fn fixtures_fed_byte_by_byte_match_whole() {
        for bytes in FIXTURES {
            let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
            let (split, result, pending, _) = run(DEFAULT_MAX_EVENT_BYTES, &pieces);
            assert_eq!(result, Ok(()));
            assert!(!pending);
            assert_eq!(Ok(split), parse_all(bytes));
        }
    }

    /// A direct transcription of the standard (plus the ping deviation) over the whole
    /// stream, decoded first: the oracle for the incremental parser.
    fn reference(bytes: &[u8]) -> (Vec<OwnedEvent>, bool) {
        let decoded = String::from_utf8_lossy(bytes);
        let mut rest = decoded.strip_prefix('\u{FEFF}').unwrap_or(&decoded);
        let (mut events, mut ty, mut data, mut id) = (vec![], String::new(), String::new(), String::new());
        let (mut retry, mut in_event) = (None, false);
        while let Some(i) = rest.find(['\r', '\n']) {
            let line = &rest[..i];
            rest = &rest[i + if rest[i..].starts_with("\r\n") { 2 } else { 1 }..];
            if line.is_empty() {
                if !data.is_empty() || !ty.is_empty() {
                    events.push(OwnedEvent {
                        event_type: if ty.is_empty() { "message".into() } else { ty.clone() },
                        data: data.strip_suffix('\n').unwrap_or(&data).to_owned(),
                        id: Some(id.clone()).filter(|id: &String| !id.is_empty()),
                        retry_ms: retry,
                    });
                }
                (ty, data, retry, in_event) = (String::new(), String::new(), None, false);
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            in_event = true;
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => ty = value.into(),
                "data" => data += &format!("{value}\n"),
                "id" if !value.contains('\0') => id = value.into(),
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    retry = value.parse().ok().or(Some(u64::MAX));
                }
                _ => {}
            }
        }
        (events, in_event || !rest.is_empty())
    }

    /// Streams built from SSE-ish tokens so that random input often forms real fields.
    fn sse_soup() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            4 => prop::sample::select(vec![
                &b"data"[..], b"event", b"id", b"retry", b"ping", b":", b" ", b"\n", b"\r",
                b"\r\n", b"\n\n", b"\0", b"\xEF\xBB\xBF", b"\xEF", b"\xC3", b"\xA9", b"12",
                b"\xE6\x97\xB6",
            ])
            .prop_map(<[u8]>::to_vec),
            1 => prop::collection::vec(any::<u8>(), 0..6),
        ];
        prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat())
    }

    proptest! {
        #[test]
        fn fixtures_split_anywhere_give_the_same_events(
            which in 0..FIXTURES.len(),
            points in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let bytes = FIXTURES[which];
            let whole = parse_all(bytes);
            prop_assert!(whole.as_ref().is_ok_and(|w| !w.is_empty()));
            let pieces = split_at_points(bytes, &points);
            let (split, result, pending, _) = run(DEFAULT_MAX_EVENT_BYTES, &as_slices(&pieces));
            prop_assert_eq!(result, Ok(()));
            prop_assert!(!pending);
            prop_assert_eq!(Ok(split), whole);
        }

        #[test]
        fn parser_matches_the_reference(bytes in sse_soup()) {
            let (events, result, pending, _) = run(usize::MAX, &[&bytes]);
            prop_assert_eq!(result, Ok(()));
            prop_assert_eq!((events, pending), reference(&bytes));
        }

        #[test]
        fn arbitrary_bytes_never_panic_stay_bounded_and_split_invariant(
            bytes in prop_oneof![sse_soup(), prop::collection::vec(any::<u8>(), 0..300)],
            points in prop::collection::vec(any::<usize>(), 0..20),
            limit in prop_oneof![0usize..64, Just(DEFAULT_MAX_EVENT_BYTES)],
        ) {
            let whole = run(limit, &[&bytes]);
            let pieces = split_at_points(&bytes, &points);
            let split = run(limit, &as_slices(&pieces));
            prop_assert!(whole.3 <= limit, "buffered {} > limit {}", whole.3, limit);
            prop_assert!(split.3 <= limit, "buffered {} > limit {}", split.3, limit);
            prop_assert_eq!(&split.0, &whole.0);
            prop_assert_eq!(&split.1, &whole.1);
            prop_assert_eq!(split.2, whole.2);
        }
    }
}
