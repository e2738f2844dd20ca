//! Exact partitioning of users and spawn rate across workers.
//!
//! Three steps, each exact in sum:
//! 1. Class totals: the requested users split by class weight (largest remainder).
//! 2. Worker totals: the same users split by worker weight (cores unless `--weight`).
//! 3. The class x worker matrix: the users laid out in one smooth, interleaved
//!    sequence of classes (weighted round robin), cut into consecutive blocks of each
//!    worker's total. Row sums are the worker totals, column sums the class totals, and
//!    each worker's mix is within one user per class of its proportional share.
//!
//! Spawn rate is split in proportion to each worker's share of users, so every worker
//! finishes its ramp at the same moment.

/// Splits `total` by `weights` with the largest-remainder method; ties go to the
/// lower index. All-zero weights split evenly.
pub fn apportion(total: u32, weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let even = weights.iter().all(|&w| w == 0);
    let w: Vec<u64> = weights.iter().map(|&w| if even { 1 } else { u64::from(w) }).collect();
    let sum: u64 = w.iter().sum();
    let total64 = u64::from(total);
    let mut out: Vec<u32> = w.iter().map(|&wi| (total64 * wi / sum) as u32).collect();
    let given: u64 = out.iter().map(|&x| u64::from(x)).sum();
    let mut order: Vec<usize> = (0..w.len()).filter(|&i| w[i] > 0).collect();
    // Remainders compared exactly as integers: (total * w) mod sum.
    order.sort_by(|&a, &b| ((total64 * w[b]) % sum).cmp(&((total64 * w[a]) % sum)).then(a.cmp(&b)));
    for &i in order.iter().cycle().take((total64 - given) as usize) {
        out[i] += 1;
    }
    out
}

/// Per-worker targets: `matrix[worker][class]` users and each worker's spawn rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    /// Users per worker (rows, in worker order) and class (columns, in plan order).
    pub matrix: Vec<Vec<u32>>,
    /// Each worker's spawn rate, users/s; they sum to the cluster's.
    pub spawn_rates: Vec<f64>,
}

/// Users per class: `fixed_count` classes first, in order, exactly (as far as the users
/// go); the rest split by weight among the other classes. With only fixed (or weight-0)
/// classes the total can be below `users`.
pub fn class_totals(users: u32, weights: &[u32], fixed: &[Option<u32>]) -> Vec<u32> {
    let mut left = users;
    let mut totals = vec![0u32; weights.len()];
    for (i, f) in fixed.iter().enumerate() {
        if let Some(n) = f {
            totals[i] = (*n).min(left);
            left -= totals[i];
        }
    }
    // Weight 0 means no users: beside fixed classes, a weight-0 class gets none
    // (apportion would split evenly among all-zero weights).
    let free: Vec<usize> = (0..weights.len())
        .filter(|&i| fixed.get(i).is_none_or(|f| f.is_none()) && weights[i] > 0)
        .collect();
    if !free.is_empty() {
        let shares = apportion(left, &free.iter().map(|&i| weights[i]).collect::<Vec<_>>());
        for (&i, n) in free.iter().zip(shares) {
            totals[i] = n;
        }
    }
    totals
}

/// Partitions `users` across workers (`worker_weights`) and classes (`class_weights`).
pub fn partition(users: u32, spawn_rate: f64, class_weights: &[u32], worker_weights: &[u32]) -> Partition {
    partition_totals(&apportion(users, class_weights), spawn_rate, worker_weights)
}

/// Partitions given class totals across workers.
pub fn partition_totals(class_totals: &[u32], spawn_rate: f64, worker_weights: &[u32]) -> Partition {
    let class_totals = class_totals.to_vec();
    let users: u32 = class_totals.iter().sum();
    let worker_totals = apportion(users, worker_weights);
    let sequence = interleave(&class_totals);
    let mut matrix = Vec::with_capacity(worker_totals.len());
    let mut at = 0usize;
    for &n in &worker_totals {
        let mut row = vec![0u32; class_totals.len()];
        for &class in &sequence[at..at + n as usize] {
            row[class] += 1;
        }
        at += n as usize;
        matrix.push(row);
    }
    let spawn_rates = worker_totals
        .iter()
        .map(|&n| {
            if users == 0 {
                0.0
            } else {
                spawn_rate * f64::from(n) / f64::from(users)
            }
        })
        .collect();
    Partition { matrix, spawn_rates }
}

/// A sequence holding `counts[c]` copies of each class c, spread evenly (smooth
/// weighted round robin): any prefix is within one of proportional per class.
fn interleave(counts: &[u32]) -> Vec<usize> {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let mut current = vec![0i64; counts.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, cur) in current.iter_mut().enumerate() {
            *cur += i64::from(counts[c]);
        }
        // Some class has a positive count while out.len() < total, so max exists.
        let Some(best) = (0..counts.len()).max_by(|&a, &b| current[a].cmp(&current[b]).then(b.cmp(&a))) else {
            break;
        };
        current[best] -= total as i64;
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn simple_cases() {
        assert_eq!(apportion(10, &[1, 1, 1]), [4, 3, 3]);
        assert_eq!(apportion(100, &[2, 2]), [50, 50]);
        assert_eq!(apportion(5, &[0, 0]), [3, 2]);
        assert_eq!(apportion(7, &[3, 0, 1]), [5, 0, 2]);
        let p = partition(50, 10.0, &[1], &[2, 2]);
        assert_eq!(p.matrix, [[25], [25]]);
        assert_eq!(p.spawn_rates, [5.0, 5.0]);
    }

    #[test]
    fn fixed_counts_come_first_and_exact() {
        // 10 users: class 0 fixed at 3, classes 1 and 2 share the other 7 by 1:1.
        assert_eq!(class_totals(10, &[1, 1, 1], &[Some(3), None, None]), [3, 4, 3]);
        // Fixed counts beyond the users: as far as they go, in order.
        assert_eq!(class_totals(4, &[1, 1, 1], &[Some(3), Some(3), None]), [3, 1, 0]);
        // Only fixed classes: the total is theirs.
        assert_eq!(class_totals(100, &[1], &[Some(2)]), [2]);
        // A weight-0 class beside a fixed one gets nobody, not an even share.
        assert_eq!(class_totals(10, &[0, 0, 2], &[Some(3), None, None]), [3, 0, 7]);
        assert_eq!(class_totals(10, &[0, 0], &[Some(3), None]), [3, 0]);
        let p = partition_totals(&class_totals(10, &[1, 1], &[Some(1), None]), 5.0, &[1, 1]);
        assert_eq!(
            p.matrix.iter().map(|r| r[0]).sum::<u32>(),
            1,
            "the fixed user exists once cluster-wide"
        );
        assert_eq!(
            p.matrix.iter().map(|r| r.iter().sum::<u32>()).collect::<Vec<_>>(),
            [5, 5]
        );
    }

    #[test]
    fn mix_is_interleaved_not_blocked() {
        // 3:1 over 2 equal workers: each gets 6 of A and 2 of B, not 8 A and 0+B.
        let p = partition(16, 4.0, &[3, 1], &[1, 1]);
        assert_eq!(p.matrix, [[6, 2], [6, 2]]);
    }

    proptest! {
        #[test]
        fn sums_are_exact(
            users in 0u32..5000,
            rate in 0.1f64..1000.0,
            classes in proptest::collection::vec(0u32..20, 1..6),
            workers in proptest::collection::vec(0u32..64, 1..12),
        ) {
            prop_assume!(classes.iter().any(|&w| w > 0));
            let p = partition(users, rate, &classes, &workers);
            let class_totals = apportion(users, &classes);
            let worker_totals = apportion(users, &workers);
            // Rows: each worker gets exactly its apportioned total.
            for (row, &want) in p.matrix.iter().zip(&worker_totals) {
                prop_assert_eq!(row.iter().sum::<u32>(), want);
            }
            // Columns: the class mix is exact cluster-wide.
            for (c, &want) in class_totals.iter().enumerate() {
                prop_assert_eq!(p.matrix.iter().map(|r| r[c]).sum::<u32>(), want);
            }
            // Totals and rates.
            prop_assert_eq!(worker_totals.iter().sum::<u32>(), users);
            let rate_sum: f64 = p.spawn_rates.iter().sum();
            if users > 0 { prop_assert!((rate_sum - rate).abs() < 1e-6 * rate.max(1.0)); }
            // Each worker within one user of its weighted share.
            let wsum: f64 = if workers.iter().all(|&w| w == 0) { workers.len() as f64 } else { workers.iter().map(|&w| f64::from(w)).sum() };
            for (i, &n) in worker_totals.iter().enumerate() {
                let w = if workers.iter().all(|&w| w == 0) { 1.0 } else { f64::from(workers[i]) };
                let ideal = f64::from(users) * w / wsum;
                prop_assert!((f64::from(n) - ideal).abs() < 1.0 + 1e-9, "worker {} got {} ideal {}", i, n, ideal);
            }
            // Each worker's mix within one user per class of proportional.
            let csum: f64 = classes.iter().map(|&w| f64::from(w)).sum();
            for row in &p.matrix {
                let n: u32 = row.iter().sum();
                for (c, &k) in row.iter().enumerate() {
                    let ideal = f64::from(n) * f64::from(classes[c]) / csum;
                    prop_assert!((f64::from(k) - ideal).abs() <= 2.0, "class {} got {} ideal {}", c, k, ideal);
                }
            }
            // Ramp ends together: rate share equals user share.
            for (row, r) in p.matrix.iter().zip(&p.spawn_rates) {
                let n: u32 = row.iter().sum();
                if users > 0 { prop_assert!((r / rate - f64::from(n) / f64::from(users)).abs() < 1e-9); }
            }
        }
    }
}
