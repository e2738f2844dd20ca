//! The fast path of the judge: the fields of a Dify event ([`Head`]) read by one pass
//! over its JSON, without serde.
//!
//! Every event of a Dify stream is JSON, and the judge reads a handful of its fields
//! (`event`, `task_id`, `data.status`, a few numbers). serde_json's derive walks the
//! same bytes but pays a visitor call per key and per skipped value; on a 2-core machine
//! streaming 500 users it was the largest user-space item of the worker's profile
//! after the kernel. This pass validates the whole text as JSON (a Dify stream that
//! sends a broken event must still fail as `invalid_json`) and picks the fields on
//! the way.
//!
//! It answers only what it can vouch for: any text it does not understand exactly as
//! serde would (invalid JSON, a known field twice or of another type, an escape in a
//! field we read or in any key, a negative or fractional count, nesting deeper than
//! [`MAX_DEPTH`], a top level that is not an object) gives `None`, and the judge
//! parses it with serde_json as before: same verdicts, same error messages. A property
//! test holds the two to the same answer on random and damaged bodies.

use std::borrow::Cow;

use super::{Data, Head, Metadata, Usage};

/// Deepest nesting the fast path follows (serde_json's own limit is 128).
const MAX_DEPTH: usize = 100;

/// The fields of `text`, read as serde would read them; `None`: ask serde.
pub(super) fn head(text: &str) -> Option<Head<'_>> {
    let mut p = Scanner { text, at: 0, depth: 0 };
    p.ws();
    let mut head = Head::default();
    let mut seen = Seen::default();
    p.object(|p, key| {
        match key {
            "event" => head.event = p.once(&mut seen, 0)?.text_or_null()?,
            "task_id" => head.task_id = p.once(&mut seen, 1)?.text_or_null()?,
            "conversation_id" => head.conversation_id = p.once(&mut seen, 2)?.text_or_null()?,
            "code" => head.code = p.once(&mut seen, 3)?.text_or_null()?,
            "answer" => head.answer = p.once(&mut seen, 4)?.text_or_null()?,
            "data" => head.data = p.once(&mut seen, 5)?.object_or_null(Scanner::data)?,
            "metadata" => head.metadata = p.once(&mut seen, 6)?.object_or_null(Scanner::metadata)?,
            _ => p.skip()?,
        }
        Some(())
    })?;
    p.ws();
    (p.at == text.len()).then_some(head)
}

/// Known fields of one object already read (serde refuses a known field twice).
#[derive(Default)]
struct Seen(u16);

/// A cursor over the JSON text.
struct Scanner<'a> {
    text: &'a str,
    /// The next byte to read.
    at: usize,
    /// Objects and arrays open around the cursor.
    depth: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// JSON's whitespace, as serde_json skips it.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes `b` (after whitespace), or fails.
    fn expect(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(b)).then(|| self.at += 1)
    }

    /// Marks known field `bit` of the current object as read; `None` the second time.
    fn once(&mut self, seen: &mut Seen, bit: u16) -> Option<&mut Self> {
        if seen.0 & (1 << bit) != 0 {
            return None;
        }
        seen.0 |= 1 << bit;
        Some(self)
    }

    /// An object, each key handed to `field` with the cursor on its value, which
    /// `field` must consume.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.enter()?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            self.ws();
            let (key, escaped) = self.string()?;
            // An escaped key may spell a known field: serde decodes it, we do not.
            if escaped {
                return None;
            }
            self.expect(b':')?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    self.depth -= 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// A string (the cursor on its opening quote): its raw text and whether it holds
    /// an escape. `None` for anything serde_json would refuse. Escaped surrogates are
    /// not checked, as serde_json does not check them in a value it skips; a string
    /// we read (a key, a known field) with any escape is serde's anyway.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        let bytes = self.text.as_bytes();
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i += bytes[i..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            match bytes[i] {
                b'"' => {
                    self.at = i + 1;
                    return Some((&self.text[start..i], escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *bytes.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' => {
                            let hex = bytes.get(i + 2..i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            i += 6;
                        }
                        _ => return None,
                    }
                }
                // A control character: JSON strings must escape them.
                _ => return None,
            }
        }
    }

    /// A number (JSON's grammar): its text.
    fn number(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.at = i;
        Some(&self.text[start..i])
    }

    /// Consumes `word` (true, false, null).
    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.at..].starts_with(word).then(|| self.at += word.len())
    }

    /// Any value, checked and skipped.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(|p, _| p.skip()),
            b'[' => {
                self.at += 1;
                self.enter()?;
                self.ws();
                if self.peek() == Some(b']') {
                    self.at += 1;
                } else {
                    loop {
                        self.ws();
                        self.skip()?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.at += 1,
                            b']' => {
                                self.at += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
                Some(())
            }
            b'"' => self.string().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number().map(drop),
        }
    }

    /// `null`, consumed: for an `Option` field, serde's `None`.
    fn null(&mut self) -> bool {
        self.peek() == Some(b'n') && self.literal("null").is_some()
    }

    /// A string field: its text, or `None` for null; fails on any other type and on
    /// an escape (serde would decode it).
    fn text_or_null(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        match self.string()? {
            (text, false) => Some(Some(Cow::Borrowed(text))),
            (_, true) => None,
        }
    }

    /// A count field (`u64`): plain digits that fit, or null; anything else (a sign,
    /// a fraction, an exponent, too large) is serde's to judge.
    fn count_or_null(&mut self) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let text = self.number()?;
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().map(Some)
    }

    /// A seconds field (`f64`), parsed by serde_json itself so the value is the same
    /// to the last bit; or null.
    fn seconds_or_null(&mut self) -> Option<Option<f64>> {
        if self.null() {
            return Some(None);
        }
        serde_json::from_str(self.number()?).ok().map(Some)
    }

    /// An object field read by `read`, or null.
    fn object_or_null<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            return Some(None);
        }
        if self.peek() != Some(b'{') {
            return None;
        }
        read(self).map(Some)
    }

    /// An event's `data`.
    fn data(&mut self) -> Option<Data<'a>> {
        let mut data = Data::default();
        let mut seen = Seen::default();
        self.object(|p, key| {
            match key {
                "status" => data.status = p.once(&mut seen, 0)?.text_or_null()?,
                "total_tokens" => data.total_tokens = p.once(&mut seen, 1)?.count_or_null()?,
                "elapsed_time" => data.elapsed_time = p.once(&mut seen, 2)?.seconds_or_null()?,
                "error" => data.error = p.once(&mut seen, 3)?.text_or_null()?,
                "title" => data.title = p.once(&mut seen, 4)?.text_or_null()?,
                "node_type" => data.node_type = p.once(&mut seen, 5)?.text_or_null()?,
                "execution_metadata" => {
                    data.execution_metadata = p.once(&mut seen, 6)?.object_or_null(Scanner::usage)?;
                }
                _ => p.skip()?,
            }
            Some(())
        })?;
        Some(data)
    }

    /// A chat answer's `metadata`.
    fn metadata(&mut self) -> Option<Metadata> {
        let mut metadata = Metadata::default();
        let mut seen = Seen::default();
        self.object(|p, key| {
            match key {
                "usage" => metadata.usage = p.once(&mut seen, 0)?.object_or_null(Scanner::usage)?,
                _ => p.skip()?,
            }
            Some(())
        })?;
        Some(metadata)
    }

    /// `usage` / `execution_metadata`: the token count.
    fn usage(&mut self) -> Option<Usage> {
        let mut usage = Usage::default();
        let mut seen = Seen::default();
        self.object(|p, key| {
            match key {
                "total_tokens" => usage.total_tokens = p.once(&mut seen, 0)?.count_or_null()?,
                _ => p.skip()?,
            }
            Some(())
        })?;
        Some(usage)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The full parse the fast path stands in for.
    fn full(text: &str) -> Option<Head<'_>> {
        serde_json::from_str(text).ok()
    }

    /// Every event of the captured dify-api 1.14.1 streams and of our Dify fixtures
    /// (chat, agent, chatflow): the fast path answers each
    /// one without an escape (all but a traceback's), and as serde does.
    #[test]
    fn real_dify_events_take_the_fast_path_and_agree() {
        let transcripts = [
            include_str!("../../tests/fixtures/dify-1.14.1/workflow-streaming-succeeded.txt"),
            include_str!("../../tests/fixtures/dify-1.14.1/workflow-streaming-code-ok.txt"),
            include_str!("../../tests/fixtures/dify-1.14.1/workflow-streaming-code-failed-short.txt"),
            include_str!("../../tests/fixtures/dify-1.14.1/workflow-streaming-code-failed-long.txt"),
            include_str!("../../tests/fixtures/dify-1.14.1/workflow-streaming-silent-node-25s-timed.txt"),
            include_str!("../../tests/fixtures/sse/workflow.sse"),
            include_str!("../../tests/fixtures/sse/chatflow.sse"),
            include_str!("../../tests/fixtures/sse/chat.sse"),
            include_str!("../../tests/fixtures/sse/agent.sse"),
        ];
        let mut fast = 0;
        for text in transcripts {
            for data in text.lines().filter_map(|l| l.split_once("data: ").map(|(_, d)| d)) {
                let data = data.trim_end_matches('\r');
                let head = head(data);
                if !data.contains('\\') {
                    assert!(head.is_some(), "not on the fast path: {data}");
                }
                if let Some(h) = head {
                    assert_eq!(Some(h), full(data), "{data}");
                    fast += 1;
                }
            }
        }
        assert!(fast > 20, "{fast} events on the fast path");
    }

    #[test]
    fn fields_are_read_as_serde_reads_them() {
        let cases = [
            r#"{"event":"text_chunk","task_id":"t","data":{"text":"a","from_variable_selector":["x",1,true,null,{"y":[]}]}}"#,
            r#" {"event":"message_end","metadata":{"usage":{"total_tokens":7,"price":"0.1"}}} "#,
            r#"{"event":"node_finished","data":{"title":"T","node_type":"llm","status":"succeeded","elapsed_time":1.25e-1,"execution_metadata":{"total_tokens":3}}}"#,
            r#"{"event":null,"data":null,"metadata":null,"code":"c","answer":"","conversation_id":"cv"}"#,
            r#"{"data":{"total_tokens":null,"elapsed_time":3,"execution_metadata":null}}"#,
            r#"{"other":{"event":"nested, not ours"},"event":"x","other":1}"#,
            r#"{}"#,
        ];
        for text in cases {
            let h = head(text);
            assert!(h.is_some(), "{text}");
            assert_eq!(h, full(text), "{text}");
        }
    }

    #[test]
    fn what_serde_refuses_or_decodes_is_left_to_serde() {
        let cases = [
            r#"{"event":"a","event":"b"}"#,
            r#"{"data":{"status":"a","status":"b"}}"#,
            r#"{"event":"a\nb"}"#,
            r#"{"ev\u0065nt":"x"}"#,
            r#"{"event":5}"#,
            r#"{"data":{"total_tokens":-1}}"#,
            r#"{"data":{"total_tokens":1.0}}"#,
            r#"{"data":{"total_tokens":18446744073709551616}}"#,
            r#"{"data":{"elapsed_time":1e400}}"#,
            r#"{"data":[]}"#,
            r#"["x"]"#,
            r#"{"event":"x"} trailing"#,
            r#"{"event":"x","#,
            "{\"x\":\"a\u{1}b\"}",
            r#"{"x":01}"#,
            r#"{"x":"\q"}"#,
            r#"{"x":tru}"#,
        ];
        for text in cases {
            assert_eq!(head(text), None, "{text}");
        }
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(head(&deep), None);
    }

    /// Pieces random bodies are made of: the fields we read, in and out of place,
    /// values of every JSON type and of odd shapes.
    fn piece() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "event",
            "task_id",
            "conversation_id",
            "code",
            "answer",
            "data",
            "metadata",
            "usage",
            "status",
            "total_tokens",
            "elapsed_time",
            "error",
            "title",
            "node_type",
            "execution_metadata",
            "text",
            "ev\\u0065nt",
        ]);
        let scalar = prop::sample::select(vec![
            "null",
            "true",
            "false",
            "0",
            "7",
            "-0",
            "-3",
            "1.5",
            "2e3",
            "1E-2",
            "01",
            "1.",
            "-",
            "1e400",
            "18446744073709551615",
            "18446744073709551616",
            "\"\"",
            "\"s\"",
            "\"a\\nb\"",
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"é\"",
            "[]",
            "{}",
            "[1,[2,{}]]",
            "tru",
        ]);
        let leaf = (key.clone(), scalar).prop_map(|(k, v)| format!("\"{k}\":{v}"));
        leaf.prop_recursive(4, 24, 5, move |inner| {
            (key.clone(), prop::collection::vec(inner, 0..5))
                .prop_map(|(k, fields)| format!("\"{k}\":{{{}}}", fields.join(",")))
        })
    }

    /// A body: an object of pieces, then maybe damaged (cut, a byte in, a byte out).
    fn body() -> impl Strategy<Value = String> {
        let damage = prop::sample::select(vec![
            "", "\"", "\\", "{", "}", ",", ":", "\u{1}", " ", "x", "-", "1", "]",
        ]);
        (
            prop::collection::vec(piece(), 0..6),
            any::<prop::sample::Index>(),
            damage,
            0u8..4,
        )
            .prop_map(|(fields, at, byte, how)| {
                let mut text = format!("{{{}}}", fields.join(","));
                let mut at = at.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match how {
                    0 => {}
                    1 => text.truncate(at),
                    2 => text.insert_str(at, byte),
                    _ => {
                        if at < text.len() {
                            text.remove(at);
                        }
                    }
                }
                text
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the body, an answer of the fast path is serde's answer.
        #[test]
        fn the_fast_path_agrees_with_serde(text in body()) {
            if let Some(h) = head(&text) {
                prop_assert_eq!(Some(h), full(&text), "{}", text);
            }
        }
    }
}
