//! The hunt's search: which level to probe next, given the verdicts so far
//! ([`Search`]), within a budget of probes (`--max-probes`) and down to a resolution
//! (`--resolution`).
//!
//! Two ways to climb: **geometric** (the default) multiplies the level by a growth
//! factor until the first bad level, then bisects between the last good and the first
//! bad one until the gap is within the resolution; **linear** adds `--step` each time
//! (the hunt as it was) and bisects `--bisect` rounds. Both stop when the budget is
//! spent. The geometric growth is planned once, before the run ([`plan_growth`]): the
//! smallest factor whose worst case over every boundary in the range fits the budget
//! and the resolution, so a 0-2,000 range is searched in at most 12 probes.
//!
//! A pure state machine over levels and verdicts: the unit tests drive it with a
//! synthetic target, a function level -> good or bad.

/// How the search climbs (`--search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SearchKind {
    /// Multiply the level until a bad one, then bisect to the resolution.
    #[default]
    Geometric,
    /// Add `--step` each time (then `--bisect` rounds), as the hunt did before.
    Linear,
}

/// How close the last good and the first bad level must be for the search to stop
/// (`--resolution`): a number of levels (`5`: users or arrivals/s) or a share of the
/// last good level (`5%`). Never finer than one level: levels are whole numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolution {
    /// A gap of at most this many levels.
    Absolute(u32),
    /// A gap of at most this fraction of the last good level (0.05 for `5%`).
    Fraction(f64),
}

impl Resolution {
    /// Parses `5` or `5%`; the message names the flag.
    pub fn parse(text: &str) -> Result<Resolution, String> {
        let bad = || format!("--resolution {text}: expected a number of levels (5) or a percentage (5%)");
        let text = text.trim();
        if let Some(pct) = text.strip_suffix('%') {
            let v: f64 = pct.trim().parse().map_err(|_| bad())?;
            if !(v > 0.0 && v < 100.0) {
                return Err(bad());
            }
            return Ok(Resolution::Fraction(v / 100.0));
        }
        let v: u32 = text.parse().map_err(|_| bad())?;
        if v == 0 {
            return Err(bad());
        }
        Ok(Resolution::Absolute(v))
    }

    /// The widest gap accepted above the last good level `good` (at least 1).
    pub fn gap_at(self, good: u32) -> u32 {
        match self {
            Resolution::Absolute(n) => n.max(1),
            Resolution::Fraction(f) => ((f * f64::from(good)).floor() as u32).max(1),
        }
    }
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolution::Absolute(n) => write!(f, "{n}"),
            Resolution::Fraction(x) => write!(f, "{}%", x * 100.0),
        }
    }
}

/// The search's settings, from the hunt's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPlan {
    /// Geometric or linear climb.
    pub kind: SearchKind,
    /// The first level (`--start`, at least 1).
    pub start: u32,
    /// The highest level tried (`--max`).
    pub max: u32,
    /// Linear: what each climbing step adds (`--step`).
    pub step: u32,
    /// Linear: rounds of bisection after the first bad level (`--bisect`).
    pub bisect: u32,
    /// Geometric: the factor each climbing step multiplies the level by (from
    /// [`plan_growth`]).
    pub growth: f64,
    /// Geometric: when to stop bisecting.
    pub resolution: Resolution,
    /// At most this many judged probes in the search (the boundary's re-measure is
    /// not one of them: `--max-probes` less one when it is on).
    pub budget: u32,
}

/// What the search wants next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Probe this level.
    Probe(u32),
    /// The search is over, for this reason.
    Done(String),
}

/// The search in progress: the bracket found so far and the probes spent.
#[derive(Debug, Clone)]
pub struct Search {
    plan: SearchPlan,
    /// The highest level judged good.
    good: Option<u32>,
    /// The lowest level judged bad (a broken SLO or a stall).
    bad: Option<u32>,
    /// Probes judged so far.
    probes: u32,
    /// Linear: bisection rounds left.
    rounds_left: u32,
}

impl Search {
    /// A search that has probed nothing yet.
    pub fn new(plan: SearchPlan) -> Search {
        Search {
            rounds_left: plan.bisect,
            plan,
            good: None,
            bad: None,
            probes: 0,
        }
    }

    /// The first level to probe.
    pub fn first(&self) -> u32 {
        self.plan.start.max(1).min(self.plan.max.max(1))
    }

    /// Still climbing (no bad level yet): the next level can start before this
    /// one's verdict, which will only confirm it.
    pub fn climbing(&self) -> bool {
        self.bad.is_none()
    }

    /// Probes judged so far.
    pub fn probes(&self) -> u32 {
        self.probes
    }

    /// The bracket: (highest good level, lowest bad level).
    pub fn bracket(&self) -> (Option<u32>, Option<u32>) {
        (self.good, self.bad)
    }

    /// The climbing level after `level` (`level` itself at `--max`).
    pub fn climb_after(&self, level: u32) -> u32 {
        let next = match self.plan.kind {
            SearchKind::Linear => level.saturating_add(self.plan.step),
            SearchKind::Geometric => {
                let grown = (f64::from(level) * self.plan.growth).ceil();
                (grown.min(f64::from(u32::MAX)) as u32).max(level.saturating_add(1))
            }
        };
        next.min(self.plan.max)
    }

    /// Records the verdict on `level` (good: every SLO held and no stall) and says
    /// what to probe next, or why the search is over.
    pub fn judged(&mut self, level: u32, good: bool) -> Next {
        self.probes += 1;
        if good {
            self.good = Some(self.good.map_or(level, |g| g.max(level)));
        } else {
            self.bad = Some(self.bad.map_or(level, |b| b.min(level)));
        }
        let Some(bad) = self.bad else {
            if level >= self.plan.max {
                return Next::Done(format!("reached --max {} without breaking an SLO", self.plan.max));
            }
            return self.spend(self.climb_after(level));
        };
        let low = self.good.unwrap_or(0);
        if bad <= low + 1 {
            return Next::Done(format!("the boundary lies between {low} and {bad}"));
        }
        let mid = match self.plan.kind {
            SearchKind::Linear => {
                if self.rounds_left == 0 {
                    return Next::Done(if self.plan.bisect == 0 {
                        "the first bad level ends a linear climb".to_string()
                    } else {
                        format!("bisected between {low} and {bad}")
                    });
                }
                self.rounds_left -= 1;
                low + (bad - low) / 2
            }
            SearchKind::Geometric => {
                if bad - low <= self.plan.resolution.gap_at(low) {
                    return Next::Done(format!(
                        "the boundary lies between {low} and {bad}, within --resolution {}",
                        self.plan.resolution
                    ));
                }
                midpoint(low, bad, self.plan.resolution)
            }
        };
        self.spend(mid)
    }

    /// Probes `level` if the budget allows.
    fn spend(&self, level: u32) -> Next {
        if self.probes >= self.plan.budget {
            let (low, bad) = (self.good.unwrap_or(0), self.bad);
            return Next::Done(match bad {
                Some(bad) => format!(
                    "the probe budget ({}) is spent; the boundary lies between {low} and {bad}",
                    self.plan.budget
                ),
                None => format!(
                    "the probe budget ({}) is spent before any level broke an SLO",
                    self.plan.budget
                ),
            });
        }
        Next::Probe(level)
    }
}

/// The level between `low` (good, or 0) and `bad`: the geometric mean for a
/// resolution relative to the level (it halves the ratio, which is what a relative
/// resolution measures), the arithmetic mean otherwise or from 0; always strictly
/// between the two.
fn midpoint(low: u32, bad: u32, resolution: Resolution) -> u32 {
    let mid = match resolution {
        Resolution::Fraction(_) if low > 0 => (f64::from(low) * f64::from(bad)).sqrt().round() as u32,
        _ => low + (bad - low) / 2,
    };
    mid.clamp(low + 1, bad - 1)
}

/// The growth factors tried, smallest (gentlest on the target) first.
const GROWTHS: [f64; 6] = [2.0, 3.0, 4.0, 6.0, 8.0, 16.0];

/// Boundaries simulated at most when planning; wider ranges are sampled.
const SIMULATED: u32 = 4096;

/// The geometric growth for `plan` (its `growth` is ignored): the smallest factor
/// with which every boundary in `0..=max` is found within the budget and the
/// resolution, by simulating the search against each (a sample of them, log-spaced,
/// past [`SIMULATED`] levels); the largest factor when none fits, the budget then
/// cutting the search short and the report saying so.
pub fn plan_growth(plan: &SearchPlan) -> f64 {
    let boundaries = boundaries(plan.max);
    GROWTHS
        .iter()
        .copied()
        .find(|&growth| {
            let p = SearchPlan { growth, ..plan.clone() };
            boundaries.iter().all(|&b| simulate(&p, b).is_some())
        })
        .unwrap_or(GROWTHS[GROWTHS.len() - 1])
}

/// The boundaries the planning simulates: all of `0..=max`, or a log-spaced sample.
fn boundaries(max: u32) -> Vec<u32> {
    if max <= SIMULATED {
        return (0..=max).collect();
    }
    let mut out: Vec<u32> = (0..SIMULATED)
        .map(|i| (f64::from(max).powf(f64::from(i) / f64::from(SIMULATED - 1))).round() as u32)
        .collect();
    out.push(0);
    out.sort_unstable();
    out.dedup();
    out
}

/// The search against a target good up to `boundary` (inclusive): Some((probes, the
/// highest good level found)) when it ends within the resolution (or at `--max`),
/// None when the budget cut it short.
pub fn simulate(plan: &SearchPlan, boundary: u32) -> Option<(u32, Option<u32>)> {
    let mut s = Search::new(plan.clone());
    let mut level = s.first();
    loop {
        match s.judged(level, level <= boundary) {
            Next::Probe(next) => level = next,
            Next::Done(why) => {
                return (!why.contains("budget")).then_some((s.probes, s.good));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometric(start: u32, max: u32, resolution: &str, budget: u32) -> SearchPlan {
        let mut p = SearchPlan {
            kind: SearchKind::Geometric,
            start,
            max,
            step: 10,
            bisect: 0,
            growth: 2.0,
            resolution: Resolution::parse(resolution).unwrap(),
            budget,
        };
        p.growth = plan_growth(&p);
        p
    }

    /// Every boundary from 0 to 2,000 over a 0-2,000 range, from 10 and from 1, to 5 %
    /// and to 10 levels: at most 12 probes (11 for the search, one kept for the
    /// boundary's re-measure), and the boundary found within the resolution below the
    /// true one.
    #[test]
    fn a_0_to_2000_range_is_searched_in_at_most_12_probes_to_the_resolution() {
        for (start, resolution) in [(10, "5%"), (1, "5%"), (10, "10"), (50, "2%")] {
            let plan = geometric(start, 2000, resolution, 11);
            let mut worst = 0;
            for boundary in 0..=2000 {
                let Some((probes, found)) = simulate(&plan, boundary) else {
                    panic!(
                        "{start} {resolution}: budget spent at boundary {boundary}, growth {}",
                        plan.growth
                    );
                };
                worst = worst.max(probes);
                assert!(probes <= 11, "{boundary}: {probes} probes");
                let found = found.unwrap_or(0);
                assert!(found <= boundary, "{boundary}: found {found}, which is bad");
                if boundary < 2000 {
                    assert!(
                        boundary - found < plan.resolution.gap_at(found),
                        "{start} {resolution}: true {boundary}, found {found}"
                    );
                }
            }
            assert!(worst >= 5, "{start} {resolution}: the worst case is {worst} probes");
        }
    }

    /// The gentlest growth that fits is chosen: doubling when the range and the
    /// resolution allow it.
    #[test]
    fn the_growth_is_the_gentlest_that_fits_the_budget() {
        assert_eq!(geometric(10, 200, "10%", 11).growth, 2.0);
        let wide = geometric(10, 2000, "5%", 11).growth;
        assert!(wide > 2.0, "{wide}");
        // A budget too small for any factor: the largest, and the search says the
        // budget cut it short.
        let tight = geometric(10, 2000, "1", 4);
        assert_eq!(tight.growth, 16.0);
        let mut s = Search::new(tight);
        let mut level = s.first();
        let why = loop {
            match s.judged(level, level <= 1234) {
                Next::Probe(l) => level = l,
                Next::Done(why) => break why,
            }
        };
        assert!(why.contains("budget (4) is spent"), "{why}");
        assert_eq!(s.probes(), 4);
    }

    /// The linear climb as before: `--step` up to the first bad level, then `--bisect`
    /// rounds; and it never passes `--max`.
    #[test]
    fn the_linear_climb_steps_then_bisects_its_rounds() {
        let plan = SearchPlan {
            kind: SearchKind::Linear,
            start: 10,
            max: 100,
            step: 10,
            bisect: 2,
            growth: 2.0,
            resolution: Resolution::Absolute(1),
            budget: 12,
        };
        let mut s = Search::new(plan.clone());
        let mut levels = vec![s.first()];
        loop {
            let level = *levels.last().unwrap();
            match s.judged(level, level <= 43) {
                Next::Probe(l) => levels.push(l),
                Next::Done(why) => {
                    assert_eq!(why, "bisected between 42 and 45");
                    break;
                }
            }
        }
        assert_eq!(levels, [10, 20, 30, 40, 50, 45, 42]);
        assert_eq!(s.climb_after(95), 100);
        assert_eq!(simulate(&plan, 1000), Some((10, Some(100))), "good up to --max");
    }

    #[test]
    fn resolutions_parse_as_levels_or_percentages() {
        assert_eq!(Resolution::parse("5%"), Ok(Resolution::Fraction(0.05)));
        assert_eq!(Resolution::parse("3"), Ok(Resolution::Absolute(3)));
        for bad in ["0", "0%", "100%", "x", "-1"] {
            assert!(Resolution::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Resolution::Fraction(0.05).gap_at(1000), 50);
        assert_eq!(Resolution::Fraction(0.05).gap_at(10), 1, "never below one level");
    }
}
