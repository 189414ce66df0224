//! `cargo xtask bench boot`: boot time as a ratio to the empty PVH kernel; `cargo xtask bench
//! memory`: the smallest guest memory with which an image still boots and exits 0.
//!
//! The empty kernel (benches/empty-kernel) and the app image are booted alternately with the
//! same QEMU command line except `-kernel`, and the wall time from spawning QEMU to its exit is
//! compared as medians; the ratio is what the profile's `boot_ratio` budget bounds. One more
//! boot with `bootchart` on the kernel command line shows the guest-side TSC timestamps.

use std::time::Duration;

use crate::bail;
use crate::error::Result;
use crate::image::Image;
use crate::qemu::{self, Outcome, QemuConfig};

/// Median of a non-empty sample.
pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    match s.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2,
    }
}

/// The measurements of one `bench boot`.
#[derive(Debug, Clone)]
pub struct BootBench {
    /// Wall times of the empty kernel.
    pub empty: Vec<Duration>,
    /// Wall times of the app.
    pub app: Vec<Duration>,
    /// `bootchart:` lines of the extra run.
    pub bootchart: Vec<String>,
}

impl BootBench {
    /// Median app time over median empty-kernel time.
    pub fn ratio(&self) -> f64 {
        median(&self.app).as_secs_f64() / median(&self.empty).as_secs_f64().max(1e-9)
    }
}

fn expect_success(what: &str, boot: &qemu::Boot) -> Result<()> {
    if boot.outcome != Outcome::Guest(0) {
        bail!(
            "{what} did not exit with status 0: {}\n--- console ---\n{}--- qemu stderr ---\n{}",
            boot.outcome.message(),
            boot.stdout,
            boot.stderr
        );
    }
    Ok(())
}

/// Boots `empty` and `app` alternately `runs` times each with `cfg` (whose `-kernel` is
/// replaced), then once more with `bootchart`.
pub fn boot_bench(
    cfg: &QemuConfig,
    empty: &Image,
    app: &Image,
    runs: usize,
    timeout: Duration,
) -> Result<BootBench> {
    let mut result = BootBench {
        empty: Vec::new(),
        app: Vec::new(),
        bootchart: Vec::new(),
    };
    let mut empty_cfg = cfg.clone();
    empty_cfg.kernel = empty.elf.clone();
    let mut app_cfg = cfg.clone();
    app_cfg.kernel = app.elf.clone();
    for i in 0..runs {
        let e = qemu::boot(&empty_cfg, true, Some(timeout))?;
        expect_success("the empty kernel", &e)?;
        let a = qemu::boot(&app_cfg, true, Some(timeout))?;
        expect_success(&app.app, &a)?;
        eprintln!(
            "bench: run {}/{runs}: empty {:6.1} ms  {} {:6.1} ms",
            i + 1,
            e.elapsed.as_secs_f64() * 1e3,
            app.app,
            a.elapsed.as_secs_f64() * 1e3
        );
        result.empty.push(e.elapsed);
        result.app.push(a.elapsed);
    }
    let mut chart_cfg = app_cfg.clone();
    chart_cfg.kargs = format!("{} bootchart", cfg.kargs).trim().to_string();
    let chart = qemu::boot(&chart_cfg, true, Some(timeout))?;
    expect_success(&format!("{} with bootchart", app.app), &chart)?;
    result.bootchart = chart
        .lines()
        .filter(|l| l.starts_with("bootchart:"))
        .map(str::to_string)
        .collect();
    Ok(result)
}

/// Granularity of the minimum-memory search.
pub const MEMORY_STEP: u64 = 64 * 1024;

/// The smallest multiple of `step` in `(low, high]` for which `works` holds, assuming it holds
/// at `high` and is monotonic (more memory never hurts); `None` when it fails at `high`.
/// Probes O(log((high - low) / step)) values.
pub fn smallest_working(
    low: u64,
    high: u64,
    step: u64,
    mut works: impl FnMut(u64) -> Result<bool>,
) -> Result<Option<u64>> {
    let high = high / step * step;
    if !works(high)? {
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

/// Finds the smallest `-m` (a multiple of [`MEMORY_STEP`] above the image's own end) with which
/// `cfg` boots and the guest exits 0.
pub fn min_memory(cfg: &QemuConfig, image_end: u64, timeout: Duration) -> Result<Option<u64>> {
    smallest_working(image_end, cfg.memory, MEMORY_STEP, |memory| {
        let mut probe = cfg.clone();
        probe.memory = memory;
        let boot = qemu::boot(&probe, true, Some(timeout))?;
        let ok = boot.outcome == Outcome::Guest(0);
        eprintln!(
            "bench: -m {} KiB: {}",
            memory / 1024,
            if ok {
                "ok".to_string()
            } else {
                boot.outcome.message()
            }
        );
        Ok(ok)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_working_finds_the_threshold_in_few_probes() {
        for threshold in [1_300_000u64, 2 << 20, 5_000_000, 64 << 20] {
            let mut probes = 0;
            let found = smallest_working(1 << 20, 64 << 20, MEMORY_STEP, |m| {
                probes += 1;
                Ok(m >= threshold)
            })
            .unwrap();
            let expect = threshold.div_ceil(MEMORY_STEP) * MEMORY_STEP;
            assert_eq!(found, Some(expect), "threshold {threshold}");
            assert!(probes <= 12, "{probes} probes");
        }
        // Fails even at the top: None, after one probe.
        let mut probes = 0;
        let none = smallest_working(1 << 20, 64 << 20, MEMORY_STEP, |_| {
            probes += 1;
            Ok(false)
        });
        assert_eq!((none.unwrap(), probes), (None, 1));
    }

    #[test]
    fn medians() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median(&ms(&[3, 1, 2])), Duration::from_millis(2));
        assert_eq!(median(&ms(&[4, 1, 3, 2])), Duration::from_micros(2500));
        assert_eq!(median(&[]), Duration::ZERO);
        let b = BootBench {
            empty: ms(&[100, 90, 110]),
            app: ms(&[120, 99, 130]),
            bootchart: vec![],
        };
        assert!((b.ratio() - 1.2).abs() < 1e-9);
    }
}
