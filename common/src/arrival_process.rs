//! How the open model spaces its arrivals: evenly (the constant rate), as a Poisson
//! process, or with gamma-distributed gaps (bursty traffic), seeded so a run can be
//! repeated.
//!
//! Every process is drawn at unit rate and mapped through the schedule's integrated
//! rate (time-rescaling: a unit-rate Poisson process read on the clock of the rate's
//! integral is the Poisson process of that rate, ramps included). Arrival `i` is due
//! when the integral reaches [`ArrivalSequence::unit_time`]`(i)`: `i` itself for the
//! constant rate (the schedule as it always was), else the sum of the first `i + 1`
//! unit-mean gaps. The gaps come one after the other from ChaCha8 keyed by the run's
//! seed, so every worker derives the same global sequence and takes its segment of the
//! indices: the union over the workers is the planned sequence, whatever their number.

use std::fmt;

use rand_chacha::ChaCha8Rng;

use crate::arrival_schedule::{Schedule, Segment};
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Smallest burstiness (gamma shape) accepted: below it nearly every gap underflows to
/// 0 and the arrivals would pile up at a handful of instants.
pub const MIN_BURSTINESS: f64 = 0.001;

/// The distribution of the gaps between arrivals, each of mean 1 at unit rate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ArrivalProcess {
    /// Evenly spaced: arrival `i` when the rate's integral reaches `i`.
    #[default]
    Constant,
    /// Exponential gaps: a Poisson process (coefficient of variation 1).
    Poisson,
    /// Gamma gaps of shape `shape` (the burstiness): coefficient of variation
    /// `1/sqrt(shape)`; 1 is Poisson, below 1 burstier, above 1 more regular.
    Gamma {
        /// The gamma shape k, at least [`MIN_BURSTINESS`].
        shape: f64,
    },
}

impl ArrivalProcess {
    /// The process called `name` (`constant`, `poisson`, `gamma`), with `burstiness`
    /// (gamma only, required there). The error says what was expected.
    pub fn parse(name: &str, burstiness: Option<f64>) -> Result<ArrivalProcess, String> {
        let process = match name {
            "constant" => ArrivalProcess::Constant,
            "poisson" => ArrivalProcess::Poisson,
            "gamma" => {
                let Some(k) = burstiness else {
                    return Err("gamma needs a burstiness (its shape k, e.g. 0.5: burstier than Poisson)".into());
                };
                ArrivalProcess::Gamma {
                    shape: check_burstiness(k)?,
                }
            }
            other => {
                return Err(format!(
                    "`{other}` is not an arrival process; expected constant, poisson or gamma"
                ));
            }
        };
        if burstiness.is_some() && !matches!(process, ArrivalProcess::Gamma { .. }) {
            return Err(format!(
                "burstiness shapes the gamma process; {name} takes none (give arrival_process = \"gamma\")"
            ));
        }
        Ok(process)
    }

    /// Whether the gaps are drawn at random (and a seed matters).
    pub fn is_random(&self) -> bool {
        !matches!(self, ArrivalProcess::Constant)
    }

    /// Its name as written in a scenario: `constant`, `poisson` or `gamma`.
    pub fn name(&self) -> &'static str {
        match self {
            ArrivalProcess::Constant => "constant",
            ArrivalProcess::Poisson => "poisson",
            ArrivalProcess::Gamma { .. } => "gamma",
        }
    }
}

impl fmt::Display for ArrivalProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrivalProcess::Gamma { shape } => write!(f, "gamma (burstiness {shape})"),
            other => f.write_str(other.name()),
        }
    }
}

/// `k` if it is a usable gamma shape: finite and at least [`MIN_BURSTINESS`].
pub fn check_burstiness(k: f64) -> Result<f64, String> {
    if k.is_finite() && k >= MIN_BURSTINESS {
        Ok(k)
    } else {
        Err(format!(
            "{k} is not a burstiness; expected a number of at least {MIN_BURSTINESS} \
             (the gamma shape k: 1 is Poisson, 0.5 burstier, 4 more regular)"
        ))
    }
}

/// The cluster's arrivals at unit rate, drawn in order from the seed. Advancing is
/// cheap; asking for an earlier index than the last starts again from the seed.
#[derive(Debug, Clone)]
pub struct ArrivalSequence {
    process: ArrivalProcess,
    seed: u64,
    rng: ChaCha8Rng,
    /// Arrivals drawn so far: `at` is the unit time of arrival `drawn - 1`.
    drawn: u64,
    at: f64,
}

impl ArrivalSequence {
    /// The sequence of `process` from `seed` (ignored by the constant rate).
    pub fn new(process: ArrivalProcess, seed: u64) -> ArrivalSequence {
        ArrivalSequence {
            process,
            seed,
            rng: rng(seed),
            drawn: 0,
            at: 0.0,
        }
    }

    /// The process and seed it was made from.
    pub fn source(&self) -> (ArrivalProcess, u64) {
        (self.process, self.seed)
    }

    /// When arrival `i` is due, on the clock of the integrated rate.
    pub fn unit_time(&mut self, i: u64) -> f64 {
        if !self.process.is_random() {
            return i as f64;
        }
        if self.drawn > i + 1 {
            *self = ArrivalSequence::new(self.process, self.seed);
        }
        while self.drawn <= i {
            self.at += self.gap();
            self.drawn += 1;
        }
        self.at
    }

    /// The first arrival at or after index `from` in `segment`: its index and when it
    /// is due, in seconds on the run clock of `schedule` (None: the rate fell to 0 for
    /// good, or the segment owns none). Each worker walks its segment with this.
    pub fn next_due(&mut self, schedule: &Schedule, segment: &Segment, from: u64) -> Option<(u64, f64)> {
        let i = segment.next_owned(from)?;
        schedule.time_at(self.unit_time(i)).map(|t| (i, t))
    }

    /// How many arrivals are due before `x` on the integrated clock (`unit_time < x`).
    pub fn count_before(&mut self, x: f64) -> u64 {
        if !self.process.is_random() {
            return x.ceil().max(0.0) as u64;
        }
        self.count_while(|t| t < x)
    }

    /// How many arrivals are due at or before `x` (`unit_time <= x`).
    pub fn count_through(&mut self, x: f64) -> u64 {
        if !self.process.is_random() {
            return if x < 0.0 { 0 } else { x.floor() as u64 + 1 };
        }
        self.count_while(|t| t <= x)
    }

    fn count_while(&mut self, due: impl Fn(f64) -> bool) -> u64 {
        let mut n = 0;
        while due(self.unit_time(n)) {
            n += 1;
        }
        n
    }

    /// The next unit-mean gap.
    fn gap(&mut self) -> f64 {
        match self.process {
            ArrivalProcess::Constant => 1.0,
            ArrivalProcess::Poisson => -(1.0 - uniform(&mut self.rng)).ln(),
            ArrivalProcess::Gamma { shape } => gamma(&mut self.rng, shape) / shape,
        }
    }
}

/// ChaCha8 keyed by the seed's little-endian bytes (`from_seed`, fixed by the
/// algorithm, rather than `seed_from_u64`, whose expansion rand_core may change).
fn rng(seed: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..24].copy_from_slice(b"barrage-arrivals");
    ChaCha8Rng::from_seed(key)
}

/// Uniform in [0, 1), 53 bits.
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal (Box-Muller, one of the pair).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - uniform(rng);
    let u2 = uniform(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Gamma(`shape`, scale 1): Marsaglia and Tsang's squeeze for shape >= 1; below 1,
/// Gamma(shape + 1) times `U^(1/shape)`.
fn gamma(rng: &mut ChaCha8Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - uniform(rng);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = uniform(rng);
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests;
