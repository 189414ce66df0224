//! Seeded random inputs for the parsers' host tests (feature `test-utils`).
//!
//! The parsers of what a monitor, firmware or another domain hands over (ACPI tables,
//! `hvm_start_info`, the memory map, XenStore replies, xtask's ELF checker) must return an error
//! on garbage, never panic nor wrap silently. Their tests (here, in `arch-x86_64`,
//! `xen-services` and `xtask`, the last three through a dev-dependency) feed them thousands of
//! random, mostly nearly-valid inputs from [`Rng`], a SplitMix64 generator: the same seed gives
//! the same inputs on every run, so a failure names a case that can be replayed.
//!
//! A longer run to hunt for panics: `STARDUST_FUZZ_CASES=1000000 cargo test -p platform fuzz`
//! (and `STARDUST_FUZZ_SEED=N` for other inputs). The suite runs the default count.

/// A small deterministic pseudo-random generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (`STARDUST_FUZZ_SEED` in the environment, when set, is mixed in).
    pub fn new(seed: u64) -> Self {
        let extra = std::env::var("STARDUST_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        Rng(seed ^ extra.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items` (not empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A value that tends to find overflows: near 0, near a power of two, near `u64::MAX`, or
    /// plain random.
    pub fn edgy_u64(&mut self) -> u64 {
        let near = match self.below(5) {
            0 => 0,
            1 => u64::MAX,
            2 => 1u64 << self.below(64),
            3 => u64::from(u32::MAX),
            _ => return self.next_u64(),
        };
        near.wrapping_add(self.below(17)).wrapping_sub(8)
    }

    /// A `bits`-bit value (`bits` in `1..=64`) that tends to find overflows: near 0, near a power
    /// of two, near the top of the type, or plain random.
    pub fn edgy(&mut self, bits: u32) -> u64 {
        let max = u64::MAX >> (64 - bits);
        let near = match self.below(4) {
            0 => 0,
            1 => max,
            2 => 1u64 << self.below(u64::from(bits)),
            _ => return self.next_u64() & max,
        };
        near.wrapping_add(self.below(9)).wrapping_sub(4) & max
    }

    /// [`edgy`](Self::edgy) for a `u32`.
    pub fn edgy_u32(&mut self) -> u32 {
        self.edgy(32) as u32
    }

    /// `n` random bytes, one per draw (unlike [`fill`](Self::fill), which takes eight a draw).
    pub fn bytes(&mut self, n: usize) -> std::vec::Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// How many cases a random-input test runs: `default`, or `STARDUST_FUZZ_CASES` from the
/// environment (for a long run by hand).
pub fn cases(default: u64) -> u64 {
    std::env::var("STARDUST_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        let xs: std::vec::Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: std::vec::Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        assert!((0..1000).all(|_| a.below(10) < 10));
    }

    #[test]
    fn edgy_values_fit_their_width_and_hit_the_edges() {
        let mut r = Rng(1);
        for bits in [1, 8, 16, 32, 64] {
            let max = u64::MAX >> (64 - bits);
            let xs: std::vec::Vec<u64> = (0..2000).map(|_| r.edgy(bits)).collect();
            assert!(xs.iter().all(|&x| x <= max), "{bits} bits");
            assert!(xs.contains(&0) && xs.contains(&max), "{bits} bits");
        }
        assert_eq!(r.bytes(5).len(), 5);
    }
}
