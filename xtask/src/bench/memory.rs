//! `bench memory`: the smallest guest memory (`-m`) with which an image still boots and exits 0,
//! by binary search between the image's own end and the profile's `memory` setting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::qemu::{self, Outcome, QemuConfig};
use anyhow::Result;

/// Granularity of the search.
pub const STEP: u64 = 64 * 1024;

/// Time limit of one probe: a guest short of memory fails fast or hangs; do not wait a minute.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The smallest multiple of `step` in `(low, high]` for which `works` holds, assuming it is
/// monotonic (more memory never hurts); `None` when it fails at `high` (rounded down to a
/// multiple of `step`). Probes `high` first, then O(log((high - low) / step)) values.
pub fn smallest_working(
    low: u64,
    high: u64,
    step: u64,
    mut works: impl FnMut(u64) -> Result<bool>,
) -> Result<Option<u64>> {
    let high = high / step * step;
    if high <= low || !works(high)? {
        return Ok(None);
    }
    // Invariant: `bad` fails (or is below anything bootable), `good` works.
    let mut bad = low / step;
    let mut good = high / step;
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        if works(mid * step)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(Some(good * step))
}

/// One boot of the search: memory in bytes, and whether it booted and exited 0.
pub type Probe = (u64, bool);

/// The memory bench of one app with one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryResult {
    /// Profile tag.
    pub profile: String,
    /// App.
    pub app: String,
    /// Machine actually used.
    pub machine: String,
    /// Accelerator.
    pub accel: String,
    /// The smallest `-m` in bytes that boots and exits 0; `None` when even `ceiling` fails.
    pub min_memory: Option<u64>,
    /// One past the image's highest loaded byte (the search starts above it).
    pub image_end: u64,
    /// The profile's `memory` setting (the search's upper end).
    pub ceiling: u64,
    /// Search granularity in bytes.
    pub step: u64,
    /// Every probe, in the order made.
    pub probes: Vec<Probe>,
    /// The profile's `min_memory` budget.
    pub budget: Option<u64>,
}

/// Finds the smallest `-m` (a multiple of [`STEP`] above `image_end`, at most `cfg.memory`)
/// with which `cfg` boots and the guest exits 0; every probe is reported to `progress` and
/// returned.
pub fn min_memory(
    cfg: &QemuConfig,
    image_end: u64,
    timeout: Duration,
    mut progress: impl FnMut(u64, &Outcome),
) -> Result<(Option<u64>, Vec<Probe>)> {
    let mut probes = Vec::new();
    let found = smallest_working(image_end, cfg.memory, STEP, |memory| {
        let mut probe = cfg.clone();
        probe.memory = memory;
        let boot = qemu::boot(&probe, true, Some(timeout))?;
        progress(memory, &boot.outcome);
        let ok = boot.outcome == Outcome::Guest(0);
        probes.push((memory, ok));
        Ok(ok)
    })?;
    Ok((found, probes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_threshold_in_few_probes() {
        for threshold in [1_300_000u64, 2 << 20, 5_000_000, 64 << 20] {
            let mut probes = Vec::new();
            let found = smallest_working(1 << 20, 64 << 20, STEP, |m| {
                probes.push(m);
                Ok(m >= threshold)
            })
            .expect("no error");
            let expect = threshold.div_ceil(STEP) * STEP;
            assert_eq!(found, Some(expect), "threshold {threshold}");
            assert!(probes.len() <= 12, "{} probes", probes.len());
            assert_eq!(probes[0], 64 << 20, "the ceiling first");
            assert!(probes.iter().all(|p| p % STEP == 0 && *p > 1 << 20));
        }
    }

    #[test]
    fn none_when_even_the_ceiling_fails() {
        let mut probes = 0;
        let none = smallest_working(1 << 20, 64 << 20, STEP, |_| {
            probes += 1;
            Ok(false)
        });
        assert_eq!((none.expect("no error"), probes), (None, 1));
        // A ceiling at or under the floor is not searched at all.
        let none = smallest_working(4 << 20, 4 << 20, STEP, |_| panic!("no probe"));
        assert_eq!(none.expect("no error"), None);
    }

    #[test]
    fn the_first_step_above_the_floor_can_win() {
        let low = (1 << 20) + 5000; // the image ends inside the 17th 64 KiB step
        let found = smallest_working(low, 16 << 20, STEP, |_| Ok(true)).expect("no error");
        assert_eq!(found, Some(low.div_ceil(STEP) * STEP));
    }

    #[test]
    fn errors_stop_the_search() {
        let r = smallest_working(0, 1 << 20, STEP, |_| {
            Err(anyhow::Error::msg("QEMU is gone"))
        });
        assert!(r.is_err());
    }
}
