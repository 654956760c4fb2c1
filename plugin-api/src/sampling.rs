//! The seeded sample every plugin draws (feature `sampling`): the same seed picks the same
//! positions in every store, on every platform, whatever the `rand` crate's version.

use std::collections::HashSet;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// `n` distinct positions in `0..count`, sorted (all of them when `n >= count`). Robert Floyd's
/// algorithm over ChaCha8's 64-bit output.
pub fn choose_positions(count: u64, n: u64, seed: u64) -> Vec<u64> {
    let n = n.min(count);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = HashSet::with_capacity(usize::try_from(n).unwrap_or(0));
    for j in count - n..count {
        let t = uniform_below(&mut rng, j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    let mut positions: Vec<u64> = chosen.into_iter().collect();
    positions.sort_unstable();
    positions
}

/// A uniform draw from `0..bound` (`bound > 0`), by rejection so that no value is favoured.
fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    // 2^64 mod bound values at the top of the range would be drawn once too often.
    let excess = (u64::MAX - bound + 1) % bound;
    let limit = u64::MAX - excess;
    loop {
        let x = rng.next_u64();
        if x <= limit {
            return x % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_distinct_sorted_in_range_and_fixed_by_the_seed() {
        for (count, n) in [(10, 3), (10, 9), (1000, 500), (5, 0), (1, 0), (5, 5)] {
            let positions = choose_positions(count, n, 42);
            assert_eq!(positions.len() as u64, n);
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
            assert!(positions.iter().all(|&p| p < count));
            assert_eq!(choose_positions(count, n, 42), positions);
        }
        assert_ne!(choose_positions(1000, 10, 1), choose_positions(1000, 10, 2));
        assert_eq!(
            choose_positions(3, 10, 1),
            vec![0, 1, 2],
            "n above count takes everything"
        );
    }

    #[test]
    fn the_draw_is_pinned_to_chacha8_so_it_never_changes_silently() {
        // A change here changes which records every existing seed samples: only on purpose.
        assert_eq!(choose_positions(100, 5, 7), vec![3, 25, 27, 40, 45]);
    }

    #[test]
    fn uniform_draws_stay_below_the_bound_and_cover_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[uniform_below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(uniform_below(&mut rng, 1), 0);
        assert!(uniform_below(&mut rng, u64::MAX) < u64::MAX);
    }
}
