//! "Cliff or knee": how an SLO's margin fell over a hunt's levels ([`call`]).

/// Above this share of the first level's margin kept at the last good level, the
/// break was sudden: a cliff.
pub const CLIFF_KEPT: f64 = 0.5;

/// The call on `margins`, (level, margin) in level order from the lowest level to the
/// first bad one (the last entry, which broke an SLO): `cliff` when the last good
/// level kept more than [`CLIFF_KEPT`] of the first level's margin, else `knee`.
/// Returns the call and the share kept; None with fewer than two good levels before
/// the bad one (one good level shows no bend), or when the last is not broken.
pub fn call(margins: &[(u32, f64)]) -> Option<(&'static str, f64)> {
    let [good @ .., (_, bad)] = margins else {
        return None;
    };
    if good.len() < 2 || *bad >= 0.0 {
        return None;
    }
    let first = good[0].1;
    let last = good[good.len() - 1].1;
    // A first level with no headroom kept nothing to lose: a knee.
    let kept = if first > 0.0 { last / first } else { 0.0 };
    Some((if kept > CLIFF_KEPT { "cliff" } else { "knee" }, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic step series: (level, margin) up to the first bad level.
    #[test]
    fn sudden_breaks_are_cliffs_and_gradual_ones_knees() {
        type Case<'a> = (&'a str, &'a [(u32, f64)], Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (
                "error rate 0 until a concurrency limit: full margin, then broken",
                &[(15, 1.0), (25, 1.0), (35, 1.0), (45, -11.0)],
                Some("cliff"),
            ),
            (
                "latency growing with load: 58 %, 17 %, broken",
                &[(10, 0.58), (20, 0.17), (30, -0.25)],
                Some("knee"),
            ),
            (
                "exactly half kept is not more than half: a knee",
                &[(10, 0.8), (20, 0.4), (30, -0.1)],
                Some("knee"),
            ),
            (
                "just over half kept: a cliff",
                &[(10, 0.8), (20, 0.41), (30, -0.1)],
                Some("cliff"),
            ),
            (
                "no headroom at the first level",
                &[(10, 0.0), (20, 0.0), (30, -0.1)],
                Some("knee"),
            ),
            ("one good level shows no bend", &[(10, 0.9), (20, -0.5)], None),
            ("nothing broke", &[(10, 0.9), (20, 0.8), (30, 0.7)], None),
            ("no steps", &[], None),
        ];
        for (case, margins, want) in cases {
            assert_eq!(call(margins).map(|(c, _)| c), *want, "{case}");
        }
        let (_, kept) = call(&[(10, 0.8), (20, 0.2), (30, -0.1)]).unwrap();
        assert!((kept - 0.25).abs() < 1e-9, "{kept}");
    }
}
