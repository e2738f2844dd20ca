//! How much of what a target (or a peer) sends may enter a report.
//!
//! A target decides the text of its errors and the names of its events: a Python
//! traceback in Dify's `data.error` is kilobytes, and a broken server can invent a new
//! event type per event. Everything of that kind is bounded *before* it is stored, on
//! the worker when it is recorded and again on the master when a report is decoded,
//! so neither memory nor a report's size depends on the target. Bounding never
//! changes a count: a clipped text keeps its counts, and event types past the cap are
//! counted under [`OTHER`].

/// Longest failure sample kept (bytes, marker included): enough for the first lines
/// of a traceback or an error envelope.
pub const MAX_SAMPLE: usize = 512;
/// Longest failure detail kept (a status and an error code fit easily).
pub const MAX_DETAIL: usize = 64;
/// Longest event type name kept.
pub const MAX_EVENT_TYPE: usize = 64;
/// Distinct event types kept per endpoint; the rest are counted under [`OTHER`].
pub const MAX_EVENT_TYPES: usize = 64;
/// Longest Dify node title or node type kept (per-node attribution).
pub const MAX_NODE_NAME: usize = 64;
/// Distinct workflow nodes kept per endpoint; the rest are counted under [`OTHER`].
pub const MAX_NODES: usize = 64;
/// Largest count accepted in one delta or histogram bucket from a peer (2^40, about
/// 10^12 per second): far above any real interval, and low enough that merging can
/// never overflow a u64.
pub const MAX_COUNT: u64 = 1 << 40;
/// The name that stands for every key past a cap (event types, failure details,
/// peers).
pub const OTHER: &str = "(other)";

/// `text` cut to at most `max` bytes on a character boundary, with a marker saying
/// how long it was; unchanged when it fits.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let marker = format!("… [{} bytes, clipped]", text.len());
    let keep = floor_char_boundary(text, max.saturating_sub(marker.len()));
    std::borrow::Cow::Owned(format!("{}{marker}", &text[..keep]))
}

/// `text` cut to at most `max` bytes on a character boundary, without a marker: for
/// names, which must stay short and stable (two long names with one prefix share a key).
pub fn clip_name(text: &str, max: usize) -> &str {
    &text[..floor_char_boundary(text, max)]
}

/// The largest index `<= at` that is a character boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_short_text_is_kept_as_it_is() {
        assert_eq!(clip("boom", MAX_SAMPLE), "boom");
        assert_eq!(clip("", MAX_SAMPLE), "");
        assert_eq!(clip_name("ping", MAX_EVENT_TYPE), "ping");
    }

    #[test]
    fn a_traceback_is_clipped_with_its_length() {
        let traceback = "Traceback (most recent call last):\n".repeat(300);
        let clipped = clip(&traceback, MAX_SAMPLE);
        assert!(clipped.len() <= MAX_SAMPLE, "{}", clipped.len());
        assert!(clipped.starts_with("Traceback (most recent call last):\n"));
        assert!(
            clipped.ends_with(&format!("[{} bytes, clipped]", traceback.len())),
            "{clipped}"
        );
    }

    proptest! {
        #[test]
        fn clipping_fits_and_keeps_a_prefix(text in ".{0,2000}", max in 0usize..700) {
            let clipped = clip(&text, max);
            if text.len() <= max {
                prop_assert_eq!(clipped.as_ref(), text.as_str());
            } else {
                // The marker alone may exceed a tiny limit; the kept text never does.
                let marker = format!("… [{} bytes, clipped]", text.len());
                prop_assert!(clipped.len() <= max.max(marker.len()));
                prop_assert!(text.starts_with(clipped.strip_suffix(marker.as_str()).unwrap()));
            }
            let name = clip_name(&text, max);
            prop_assert!(name.len() <= max && text.starts_with(name));
        }
    }
}
