//! `goodput = { ttfe = "500ms", .. }`: a task's per-request objectives, checked into a
//! [`Slo`]. The scenario-wide `[goodput]` (or `--goodput`, which the caller lays over
//! it) applies to every task without its own ([`apply_goodput`]); a task's table
//! replaces it whole (it does not merge key by key).

use std::collections::BTreeMap;

use crate::duration;
use crate::goodput::{SLO_KEYS, Slo};
use crate::plan::{RunPlan, TaskKindTag};

/// The keys only a stream has figures for.
const STREAM_KEYS: [&str; 3] = ["ttfe", "ttft", "chunk_gap_p95"];

/// Checks a `goodput` table as written; the error is the field below it (`goodput.ttfe`
/// or `goodput`) and the message. `stream`: the task reads a stream, so the stream
/// keys apply (`None`: the scenario-wide default, checked for every kind later).
pub(super) fn slo(raw: &BTreeMap<String, String>, stream: Option<bool>) -> Result<Slo, (String, String)> {
    if raw.is_empty() {
        return Err((
            "goodput".into(),
            format!("is empty; give at least one of {}", SLO_KEYS.join(", ")),
        ));
    }
    let mut slo = Slo::default();
    for (key, text) in raw {
        let field = format!("goodput.{key}");
        let slot = match key.as_str() {
            "ttfe" => &mut slo.ttfe_us,
            "ttft" => &mut slo.ttft_us,
            "chunk_gap_p95" => &mut slo.chunk_gap_p95_us,
            "response_time" => &mut slo.response_time_us,
            _ => {
                return Err((
                    field,
                    format!("`{key}` is not a goodput objective; expected {}", SLO_KEYS.join(", ")),
                ));
            }
        };
        if stream == Some(false) && STREAM_KEYS.contains(&key.as_str()) {
            return Err((
                field,
                "only applies to kind = \"sse\" or \"dify\" (a plain request has no events)".into(),
            ));
        }
        let bound = duration::parse(text).map_err(|m| (field.clone(), m))?;
        if bound.is_zero() {
            return Err((field, "must be above 0".into()));
        }
        *slot = Some(u64::try_from(bound.as_micros()).unwrap_or(u64::MAX));
    }
    Ok(slo)
}

/// `--goodput ttfe=500ms,response_time=10s`: the scenario-wide objectives as a flag
/// gives them (the keys and checks of `[goodput]`).
pub fn parse_goodput(text: &str) -> Result<Slo, String> {
    let mut raw = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("\"{pair}\" is not KEY=DURATION; expected e.g. ttfe=500ms,response_time=10s"))?;
        raw.insert(key.trim().to_string(), value.trim().to_string());
    }
    slo(&raw, None).map_err(|(field, m)| format!("{field}: {m}"))
}

/// Gives every task of `plan` without objectives of its own the scenario-wide ones
/// (`[goodput]`, or `--goodput` over it), the stream keys dropped for plain requests.
pub fn apply_goodput(plan: &mut RunPlan, default: Option<Slo>) {
    for c in &mut plan.classes {
        for t in c.tasks.iter_mut().chain(&mut c.on_start) {
            t.goodput = for_task(t.goodput, default, t.kind.tag());
        }
    }
}

/// The objectives of a task of `kind`: its own when it has them, else the scenario's
/// default without the stream keys for a plain request (none left: no goodput).
fn for_task(own: Option<Slo>, default: Option<Slo>, kind: TaskKindTag) -> Option<Slo> {
    own.or_else(|| {
        let mut slo = default?;
        if kind == TaskKindTag::Http {
            slo.ttfe_us = None;
            slo.ttft_us = None;
            slo.chunk_gap_p95_us = None;
        }
        (!slo.is_empty()).then_some(slo)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A table as written, whether the task streams, the field and message expected.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<bool>, &'a str, &'a str);

    #[test]
    fn refuses_what_is_not_an_objective() {
        let cases: [Case<'_>; 6] = [
            (
                &[],
                Some(true),
                "goodput",
                "give at least one of ttfe, ttft, chunk_gap_p95, response_time",
            ),
            (
                &[("ttfb", "1s")],
                Some(true),
                "goodput.ttfb",
                "`ttfb` is not a goodput objective; expected ttfe, ttft, chunk_gap_p95, response_time",
            ),
            (&[("ttfe", "soon")], Some(true), "goodput.ttfe", "\"soon\""),
            (
                &[("response_time", "0s")],
                Some(true),
                "goodput.response_time",
                "must be above 0",
            ),
            (
                &[("ttft", "1s")],
                Some(false),
                "goodput.ttft",
                "only applies to kind = \"sse\"",
            ),
            (
                &[("chunk_gap_p95", "1s")],
                Some(false),
                "goodput.chunk_gap_p95",
                "only applies",
            ),
        ];
        for (raw, stream, field, message) in cases {
            let (f, m) = slo(&table(raw), stream).expect_err(field);
            assert_eq!(f, field);
            assert!(m.contains(message), "{field}: {m}");
        }
    }

    #[test]
    fn reads_each_bound_in_microseconds() {
        let got = slo(
            &table(&[
                ("ttfe", "500ms"),
                ("ttft", "1s"),
                ("chunk_gap_p95", "200ms"),
                ("response_time", "10s"),
            ]),
            Some(true),
        )
        .unwrap();
        assert_eq!(
            got,
            Slo {
                ttfe_us: Some(500_000),
                ttft_us: Some(1_000_000),
                chunk_gap_p95_us: Some(200_000),
                response_time_us: Some(10_000_000),
            }
        );
        assert_eq!(
            slo(&table(&[("response_time", "2s")]), Some(false))
                .unwrap()
                .response_time_us,
            Some(2_000_000)
        );
    }

    #[test]
    fn the_flag_reads_like_the_table() {
        let got = parse_goodput("ttfe=500ms, response_time = 10s").unwrap();
        assert_eq!((got.ttfe_us, got.response_time_us), (Some(500_000), Some(10_000_000)));
        for (text, says) in [
            ("", "goodput: is empty"),
            ("ttfe", "\"ttfe\" is not KEY=DURATION"),
            ("ttfb=1s", "goodput.ttfb: `ttfb` is not a goodput objective"),
            ("ttft=0", "goodput.ttft: must be above 0"),
        ] {
            let err = parse_goodput(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_task_replaces_the_default_and_a_plain_request_drops_stream_keys() {
        let default = Slo {
            ttfe_us: Some(1),
            response_time_us: Some(9),
            ..Slo::default()
        };
        let own = Slo {
            ttft_us: Some(5),
            ..Slo::default()
        };
        assert_eq!(for_task(Some(own), Some(default), TaskKindTag::Sse), Some(own));
        assert_eq!(for_task(None, Some(default), TaskKindTag::Sse), Some(default));
        let plain = for_task(None, Some(default), TaskKindTag::Http).unwrap();
        assert_eq!((plain.ttfe_us, plain.response_time_us), (None, Some(9)));
        let only_stream = Slo {
            ttfe_us: Some(1),
            ..Slo::default()
        };
        assert_eq!(for_task(None, Some(only_stream), TaskKindTag::Http), None);
        assert_eq!(for_task(None, None, TaskKindTag::Sse), None);
    }
}
