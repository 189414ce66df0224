//! `bench boot`: wall time from spawning QEMU to the app's first console line and to QEMU's exit,
//! as a ratio to the empty PVH kernel (benches/empty-kernel) booted with the same command line,
//! interleaved in the same run; plus one boot with `bootchart` for the guest-side phases.
//!
//! Runs alternate ABBA-style (empty then app, then app then empty, ...) after one unrecorded
//! warm-up boot of each, so that drift in the machine's load and the page cache treat both
//! kernels alike. The ratio is median(app) / median(empty); the spread of the per-pair ratios
//! says how far to trust it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bootchart::{self, Bootchart};
use super::stats::{Summary, ratio};
use crate::qemu::{self, Boot, Outcome, QemuConfig};
use anyhow::Result;
use anyhow::bail;

/// Runs per kernel when not told otherwise.
pub const DEFAULT_RUNS: usize = 10;

/// A kernel log line (`[INFO  kernel] ...`, see crates/logger) or a boot chart line: not the
/// app's output.
pub fn is_kernel_line(line: &str) -> bool {
    if line.starts_with(bootchart::PREFIX) {
        return true;
    }
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    ["ERROR ", "WARN  ", "INFO  ", "DEBUG ", "TRACE "]
        .iter()
        .any(|level| rest.starts_with(level))
}

/// Milliseconds from spawning QEMU to the first console line that is not the kernel's.
pub fn first_app_line_ms(boot: &Boot) -> Option<f64> {
    boot.lines()
        .zip(&boot.line_times)
        .find(|(line, _)| !is_kernel_line(line))
        .map(|(_, t)| ms(*t))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Medians and spreads of one kernel's boots, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// QEMU spawn to the first (app) console line; `None` when nothing was printed.
    pub first_line_ms: Option<Summary>,
    /// QEMU spawn to QEMU's exit.
    pub exit_ms: Option<Summary>,
}

impl Timing {
    fn of(first_line: &[f64], exit: &[f64]) -> Timing {
        Timing {
            first_line_ms: Summary::of(first_line),
            exit_ms: Summary::of(exit),
        }
    }
}

/// The boot bench of one app with one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootResult {
    /// Profile tag.
    pub profile: String,
    /// App.
    pub app: String,
    /// Machine actually used (`q35+qboot`, `microvm`).
    pub machine: String,
    /// Accelerator (`tcg`, `kvm`).
    pub accel: String,
    /// The app's QEMU command line (the empty kernel's differs only in `-kernel`).
    pub command: String,
    /// The empty kernel.
    pub empty: Timing,
    /// The app.
    pub image: Timing,
    /// Median first line, app over empty kernel.
    pub ratio_first_line: Option<f64>,
    /// Median exit, app over empty kernel: what the profile's `boot_ratio` bounds.
    pub ratio_exit: Option<f64>,
    /// The exit ratio of each interleaved pair (their spread is the ratio's).
    pub pair_ratios: Option<Summary>,
    /// The profile's `boot_ratio` budget.
    pub budget: Option<f64>,
    /// Guest-side phases from one more boot with `bootchart`.
    pub bootchart: Option<Bootchart>,
}

/// Raw samples, in milliseconds, in run order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// Empty kernel: first line.
    pub empty_first: Vec<f64>,
    /// Empty kernel: exit.
    pub empty_exit: Vec<f64>,
    /// App: first line.
    pub app_first: Vec<f64>,
    /// App: exit.
    pub app_exit: Vec<f64>,
}

impl Samples {
    /// Medians, ratios and spreads; labels and budget are left for the caller to fill in.
    pub fn summarize(&self) -> (Timing, Timing, Option<f64>, Option<f64>, Option<Summary>) {
        let empty = Timing::of(&self.empty_first, &self.empty_exit);
        let image = Timing::of(&self.app_first, &self.app_exit);
        let med = |s: &Option<Summary>| s.as_ref().map(|s| s.median);
        let r = |a: Option<f64>, b: Option<f64>| ratio(a?, b?);
        let first = r(med(&image.first_line_ms), med(&empty.first_line_ms));
        let exit = r(med(&image.exit_ms), med(&empty.exit_ms));
        let pairs: Vec<f64> = self
            .app_exit
            .iter()
            .zip(&self.empty_exit)
            .filter_map(|(a, e)| ratio(*a, *e))
            .collect();
        (empty, image, first, exit, Summary::of(&pairs))
    }
}

fn expect_success(what: &str, boot: &Boot) -> Result<()> {
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

/// Boots the empty kernel and `app_elf` alternately `runs` times each with `cfg` (whose
/// `-kernel` is replaced), after one warm-up boot of each; `progress` sees each pair as
/// `(run, empty, app)`. Then boots the app once more with `bootchart` on its command line.
pub fn measure(
    cfg: &QemuConfig,
    empty_elf: &Path,
    app_elf: &Path,
    app: &str,
    runs: usize,
    timeout: Duration,
    mut progress: impl FnMut(usize, &Boot, &Boot),
) -> Result<(Samples, Option<Bootchart>)> {
    let mut empty_cfg = cfg.clone();
    empty_cfg.kernel = empty_elf.to_path_buf();
    let mut app_cfg = cfg.clone();
    app_cfg.kernel = app_elf.to_path_buf();
    let boot_empty = || -> Result<Boot> {
        let b = qemu::boot(&empty_cfg, true, Some(timeout))?;
        expect_success("the empty kernel", &b)?;
        Ok(b)
    };
    let boot_app = || -> Result<Boot> {
        let b = qemu::boot(&app_cfg, true, Some(timeout))?;
        expect_success(app, &b)?;
        Ok(b)
    };
    boot_empty()?;
    boot_app()?;
    let mut s = Samples::default();
    for run in 0..runs {
        let (e, a) = if run % 2 == 0 {
            let e = boot_empty()?;
            (e, boot_app()?)
        } else {
            let a = boot_app()?;
            (boot_empty()?, a)
        };
        progress(run, &e, &a);
        s.empty_exit.push(ms(e.elapsed));
        s.app_exit.push(ms(a.elapsed));
        s.empty_first.extend(first_app_line_ms(&e));
        s.app_first.extend(first_app_line_ms(&a));
    }
    let mut chart_cfg = app_cfg.clone();
    chart_cfg.kargs = format!("{} bootchart", cfg.kargs).trim().to_string();
    let chart = qemu::boot(&chart_cfg, true, Some(timeout))?;
    expect_success(&format!("{app} with bootchart"), &chart)?;
    Ok((s, Bootchart::parse(chart.lines())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(stdout: &str, times_ms: &[u64]) -> Boot {
        Boot {
            outcome: Outcome::Guest(0),
            stdout: stdout.into(),
            stderr: String::new(),
            elapsed: Duration::from_millis(100),
            cpu: Duration::from_millis(50),
            line_times: times_ms.iter().map(|t| Duration::from_millis(*t)).collect(),
        }
    }

    #[test]
    fn kernel_lines_are_not_the_app() {
        assert!(is_kernel_line("[INFO  kernel] 32 MiB"));
        assert!(is_kernel_line("[WARN  kernel::boot] x"));
        assert!(is_kernel_line("bootchart: entry + 0 cycles"));
        assert!(!is_kernel_line("Hello from Stardust!"));
        assert!(!is_kernel_line("[1, 2, 3]"));
        assert!(!is_kernel_line(""));
    }

    #[test]
    fn first_app_line_skips_the_kernel_log() {
        let b = boot("[INFO  kernel] up\r\nHello\r\nbye\r\n", &[40, 45, 46]);
        assert_eq!(first_app_line_ms(&b), Some(45.0));
        let b = boot("[INFO  kernel] up\n", &[40]);
        assert_eq!(first_app_line_ms(&b), None);
        // An unterminated last line has no time yet.
        let b = boot("Hello", &[]);
        assert_eq!(first_app_line_ms(&b), None);
    }

    #[test]
    fn ratios_of_medians_and_of_pairs() {
        let s = Samples {
            empty_first: vec![40.0, 42.0, 41.0],
            empty_exit: vec![100.0, 90.0, 110.0],
            app_first: vec![60.0, 63.0, 61.5],
            app_exit: vec![120.0, 99.0, 130.0],
        };
        let (empty, image, first, exit, pairs) = s.summarize();
        assert_eq!(empty.exit_ms.as_ref().map(|s| s.median), Some(100.0));
        assert_eq!(image.first_line_ms.as_ref().map(|s| s.median), Some(61.5));
        assert!((exit.expect("ratio") - 1.2).abs() < 1e-9);
        assert!((first.expect("ratio") - 1.5).abs() < 1e-9);
        let pairs = pairs.expect("pairs");
        assert_eq!(pairs.n, 3);
        // Pairs 1.2, 1.1 and 1.1818...: the median pair is the third.
        assert!((pairs.median - 130.0 / 110.0).abs() < 1e-9, "{pairs:?}");
        // No first lines at all: no first-line ratio, the exit ratio still stands.
        let s = Samples {
            app_first: vec![],
            ..s
        };
        let (_, _, first, exit, _) = s.summarize();
        assert_eq!(first, None);
        assert!(exit.is_some());
    }
}
