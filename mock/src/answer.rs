//! The mock's canned answer, one word per chunk, and the token usage Dify reports for
//! it: one completion token per chunk on top of a fixed prompt.

use serde_json::{Value, json};

/// Prompt tokens every run reports; completion tokens are one per chunk.
pub(crate) const PROMPT_TOKENS: u64 = 12;

const WORDS: [&str; 12] = [
    "Barrage",
    "is",
    "streaming",
    "a",
    "canned",
    "answer",
    "from",
    "the",
    "mock",
    "dify-api",
    "double",
    "today.",
];

/// The text of chunk `index`: a word, preceded by a space after the first, so the
/// concatenated chunks read as a sentence.
pub(crate) fn chunk(index: u64) -> String {
    // `index % len` is below `WORDS.len()`, so the conversion and the index are in range.
    let word = WORDS[(index % WORDS.len() as u64) as usize];
    if index == 0 {
        word.to_owned()
    } else {
        format!(" {word}")
    }
}

/// Total tokens for a run of `chunks` chunks, as `total_tokens` reports it.
pub(crate) fn total_tokens(chunks: u64) -> u64 {
    PROMPT_TOKENS + chunks
}

/// Dify's `metadata.usage` object for a chat run of `chunks` chunks taking `latency` s.
pub(crate) fn usage(chunks: u64, latency: f64) -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "prompt_unit_price": "0",
        "prompt_price_unit": "0.001",
        "prompt_price": "0",
        "completion_tokens": chunks,
        "completion_unit_price": "0",
        "completion_price_unit": "0.001",
        "completion_price": "0",
        "total_tokens": total_tokens(chunks),
        "total_price": "0",
        "currency": "USD",
        "latency": latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_as_a_sentence() {
        let text: String = (0..4).map(chunk).collect();
        assert_eq!(text, "Barrage is streaming a");
        assert_eq!(chunk(12), " Barrage");
    }
}
