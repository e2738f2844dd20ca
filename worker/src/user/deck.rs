//! The task deck: how a user with weighted tasks picks its next one.

use rand::Rng;
use rand::rngs::SmallRng;

use barrage_common::plan::UserClass;

/// Weighted task choice without replacement: each cycle of `sum(weights)` picks holds
/// every task exactly `weight` times, in random order. Every pick is still a fair draw
/// from what the cycle has left, so the long-run mix is the plan's, and even a short run
/// (or a user with few iterations) realises it closely, where independent rolls drift.
pub(super) struct Deck {
    /// Each task's weight, as the plan gives it.
    weights: Vec<u64>,
    /// Draws left per task in the current cycle.
    left: Vec<u64>,
    /// Sum of `left`.
    left_total: u64,
}

impl Deck {
    /// A fresh deck for `class`'s tasks.
    pub(super) fn new(class: &UserClass) -> Self {
        let weights: Vec<u64> = class.tasks.iter().map(|t| u64::from(t.weight)).collect();
        Deck {
            left: weights.clone(),
            left_total: weights.iter().sum(),
            weights,
        }
    }

    /// The index of the next task.
    pub(super) fn draw(&mut self, rng: &mut SmallRng) -> usize {
        if self.weights.len() <= 1 {
            return 0;
        }
        if self.left_total == 0 {
            self.left.copy_from_slice(&self.weights);
            self.left_total = self.weights.iter().sum();
            if self.left_total == 0 {
                return 0;
            }
        }
        let mut roll = rng.random_range(0..self.left_total);
        let last = self.left.iter().rposition(|&w| w > 0).unwrap_or(0);
        let at = self
            .left
            .iter()
            .position(|&w| {
                if roll < w {
                    return true;
                }
                roll -= w;
                false
            })
            .unwrap_or(last);
        self.left[at] -= 1;
        self.left_total -= 1;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::fixtures::class_of;

    #[test]
    fn every_cycle_of_the_deck_holds_each_task_its_weight_times() {
        use rand::SeedableRng;
        let mut rng = SmallRng::seed_from_u64(7);
        let mut deck = Deck::new(&class_of(&[5, 2, 0, 3]));
        for _cycle in 0..50 {
            let mut seen = [0u32; 4];
            for _ in 0..10 {
                seen[deck.draw(&mut rng)] += 1;
            }
            assert_eq!(seen, [5, 2, 0, 3]);
        }
        // Order varies: the first picks of the cycles are not all the same task.
        let firsts: std::collections::BTreeSet<usize> = (0..40)
            .map(|_| {
                let first = deck.draw(&mut rng);
                (0..9).for_each(|_| {
                    deck.draw(&mut rng);
                });
                first
            })
            .collect();
        assert!(firsts.len() >= 2, "{firsts:?}");
        // Degenerate classes: one task, or every weight 0, always give the first.
        assert_eq!(Deck::new(&class_of(&[4])).draw(&mut rng), 0);
        assert_eq!(Deck::new(&class_of(&[0, 0])).draw(&mut rng), 0);
    }
}
