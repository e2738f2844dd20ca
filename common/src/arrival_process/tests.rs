use std::time::Duration;

use super::*;
use crate::arrival_schedule::RateStage;

/// 0 -> 40/s over 5 s, then 40/s: stages, so the time-rescaling is exercised.
fn ramp() -> Schedule {
    Schedule {
        start_rate: 0.0,
        stages: vec![RateStage {
            duration: Duration::from_secs(5),
            rate: 40.0,
        }],
    }
}

/// What a worker of `segment` fires before `until` seconds, as the dispatcher walks it.
fn fired(process: ArrivalProcess, seed: u64, schedule: &Schedule, segment: &Segment, until: f64) -> Vec<(u64, f64)> {
    let mut seq = ArrivalSequence::new(process, seed);
    let mut out = Vec::new();
    let mut next = 0;
    while let Some((i, t)) = seq.next_due(schedule, segment, next) {
        if t >= until {
            break;
        }
        out.push((i, t));
        next = i + 1;
    }
    out
}

#[test]
fn the_workers_segments_together_are_the_single_process_sequence() {
    let processes = [
        ArrivalProcess::Constant,
        ArrivalProcess::Poisson,
        ArrivalProcess::Gamma { shape: 0.5 },
        ArrivalProcess::Gamma { shape: 3.0 },
    ];
    for process in processes {
        for seed in [1, 42, u64::MAX] {
            let alone = fired(process, seed, &ramp(), &Segment::ALL, 20.0);
            assert!(alone.len() > 500, "{process}: {} arrivals", alone.len());
            for shares in [vec![1], vec![1, 1], vec![1, 2, 1, 3, 1]] {
                let mut union: Vec<(u64, f64)> = Segment::split(&shares)
                    .iter()
                    .flat_map(|seg| fired(process, seed, &ramp(), seg, 20.0))
                    .collect();
                union.sort_by_key(|&(i, _)| i);
                // Exactly: the same indices at bit-identical times.
                assert_eq!(union, alone, "{process}, seed {seed}, {} workers", shares.len());
            }
        }
    }
}

#[test]
fn the_constant_process_is_the_schedule_as_before() {
    let s = ramp();
    let mut seq = ArrivalSequence::new(ArrivalProcess::Constant, 7);
    for i in 0..300 {
        assert_eq!(seq.next_due(&s, &Segment::ALL, i).map(|(_, t)| t), s.time_of(i));
    }
    assert_eq!(seq.count_before(2.5), 3);
    assert_eq!(seq.count_before(3.0), 3);
    assert_eq!(seq.count_through(3.0), 4);
}

#[test]
fn a_seed_repeats_and_another_differs() {
    let draw = |seed| {
        let mut seq = ArrivalSequence::new(ArrivalProcess::Poisson, seed);
        (0..50).map(|i| seq.unit_time(i)).collect::<Vec<_>>()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
    // Going back starts again from the seed and lands on the same times.
    let mut seq = ArrivalSequence::new(ArrivalProcess::Gamma { shape: 0.5 }, 9);
    let late = seq.unit_time(100);
    let early = seq.unit_time(3);
    assert_eq!(seq.unit_time(100), late);
    assert_eq!(
        ArrivalSequence::new(ArrivalProcess::Gamma { shape: 0.5 }, 9).unit_time(3),
        early
    );
    // Counting agrees with the times.
    let mut seq = ArrivalSequence::new(ArrivalProcess::Poisson, 5);
    let t10 = seq.unit_time(10);
    assert_eq!(seq.count_before(t10), 10);
    assert_eq!(seq.count_through(t10), 11);
}

#[test]
fn processes_parse_with_clear_errors() {
    assert_eq!(ArrivalProcess::parse("poisson", None), Ok(ArrivalProcess::Poisson));
    assert_eq!(
        ArrivalProcess::parse("gamma", Some(0.5)),
        Ok(ArrivalProcess::Gamma { shape: 0.5 })
    );
    assert!(
        ArrivalProcess::parse("gamma", None)
            .unwrap_err()
            .contains("needs a burstiness")
    );
    assert!(
        ArrivalProcess::parse("poison", None)
            .unwrap_err()
            .contains("constant, poisson or gamma")
    );
    assert!(
        ArrivalProcess::parse("poisson", Some(2.0))
            .unwrap_err()
            .contains("shapes the gamma")
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-9] {
        assert!(
            ArrivalProcess::parse("gamma", Some(bad))
                .unwrap_err()
                .contains("not a burstiness"),
            "{bad}"
        );
    }
}

/// Gaps in a KS test: enough that the critical value at alpha = 0.001 is small.
const KS_N: usize = 20_000;

/// The two-sided KS critical value at alpha = 0.001 for `n` samples (asymptotic:
/// sqrt(-ln(alpha / 2) / 2) / sqrt(n) = 1.9495 / sqrt(n); 0.0138 for 20,000).
fn ks_critical(n: usize) -> f64 {
    (-(0.001f64 / 2.0).ln() / 2.0).sqrt() / (n as f64).sqrt()
}

/// The KS statistic of `sample` against `cdf`: the largest gap between the empirical
/// and the given distribution function.
fn ks_statistic(mut sample: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
    sample.sort_by(f64::total_cmp);
    let n = sample.len() as f64;
    sample
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// Gaps between consecutive arrivals of `process` at a constant `rate` per second.
fn gaps(process: ArrivalProcess, rate: f64) -> Vec<f64> {
    let s = Schedule::constant(rate);
    let mut seq = ArrivalSequence::new(process, 2026);
    let times: Vec<f64> = (0..=KS_N as u64)
        .map(|i| s.time_at(seq.unit_time(i)).expect("a positive rate"))
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// ln Gamma(x) (Lanczos, g = 7, 9 terms; 1e-15 relative for x > 0).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = C[0] + (1..9).map(|i| C[i] / (x + i as f64)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularised lower incomplete gamma P(a, x): the Gamma(a, 1) CDF at x (series
/// below a + 1, Lentz's continued fraction above; Numerical Recipes 6.2).
fn gamma_cdf(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
        while term.abs() > sum.abs() * 1e-15 {
            n += 1.0;
            term *= x / n;
            sum += term;
        }
        return sum * front;
    }
    let tiny = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / tiny;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        d = if d.abs() < tiny { tiny } else { d };
        c = b + an / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    1.0 - front * h
}

#[test]
fn the_incomplete_gamma_is_right_where_it_is_known() {
    // Shape 1 is the exponential; shape 0.5 at x is erf(sqrt(x)).
    for x in [0.1, 0.7, 1.0, 2.5, 9.0] {
        assert!((gamma_cdf(1.0, x) - (1.0 - (-x).exp())).abs() < 1e-12, "{x}");
    }
    assert!((gamma_cdf(0.5, 1.0) - 0.842_700_792_949_714_9).abs() < 1e-12);
    // Shape 2: 1 - e^-x (1 + x).
    assert!((gamma_cdf(2.0, 3.0) - (1.0 - (-3.0f64).exp() * 4.0)).abs() < 1e-12);
}

#[test]
fn poisson_gaps_are_exponential_by_kolmogorov_smirnov() {
    let rate = 50.0;
    let d = ks_statistic(gaps(ArrivalProcess::Poisson, rate), |x| 1.0 - (-rate * x).exp());
    let crit = ks_critical(KS_N);
    println!("poisson: D = {d:.5}, critical (alpha 0.001, n {KS_N}) = {crit:.5}");
    assert!(d < crit, "D = {d} >= {crit}");
}

#[test]
fn gamma_gaps_have_their_shape_by_kolmogorov_smirnov() {
    let rate = 50.0;
    let crit = ks_critical(KS_N);
    for k in [0.25, 0.5, 1.0, 2.0, 4.0] {
        // Gaps of mean 1/rate: Gamma(k, scale 1 / (k rate)).
        let d = ks_statistic(gaps(ArrivalProcess::Gamma { shape: k }, rate), |x| {
            gamma_cdf(k, x * k * rate)
        });
        println!("gamma k = {k}: D = {d:.5}, critical (alpha 0.001, n {KS_N}) = {crit:.5}");
        assert!(d < crit, "k = {k}: D = {d} >= {crit}");
    }
}

#[test]
fn the_kolmogorov_smirnov_test_rejects_the_wrong_distribution() {
    // The test can fail: Poisson gaps are not gamma(2), gamma(0.5) gaps not exponential.
    let rate = 50.0;
    let crit = ks_critical(KS_N);
    let d = ks_statistic(gaps(ArrivalProcess::Poisson, rate), |x| gamma_cdf(2.0, x * 2.0 * rate));
    assert!(d > 5.0 * crit, "{d}");
    let d = ks_statistic(gaps(ArrivalProcess::Gamma { shape: 0.5 }, rate), |x| {
        1.0 - (-rate * x).exp()
    });
    assert!(d > 5.0 * crit, "{d}");
    let d = ks_statistic(gaps(ArrivalProcess::Constant, rate), |x| 1.0 - (-rate * x).exp());
    assert!(d > 5.0 * crit, "{d}");
}
