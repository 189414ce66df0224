//! `cargo xtask bench smp`: what more CPUs buy, in one run.
//!
//! - Speedup: `apps/smpprobe bench N` (two threads sum a hash of 0..N in halves) in the same
//!   image (`cpus = 2`, `scheduler = "coop"`) on QEMU with one vCPU and with two (TCG with one
//!   host thread per vCPU either way), against the same computation on the host with one and
//!   with two threads (the ceiling this 2-core machine allows), built by the host's `rustc -O`
//!   from the same source as the guest's. The figure that counts is the
//!   guest's speedup as a share of the host's.
//! - Hand-off: two threads passing a token through two channels, per hand-off, on one vCPU (a
//!   context switch) and on two (mostly a wake-up of the other CPU by IPI).
//!
//! Medians over the runs; nothing here is asserted (speed is for benches, not tests).

use std::fmt::Write as _;
use std::time::Duration;

use super::stats::median;
use crate::qemu::{self, Outcome, QemuConfig};
use crate::workspace::Workspace;
use anyhow::{Error, Result};

/// Items summed by each run (the guest's and the host's).
pub const ITEMS: u64 = 100_000_000;

/// One guest boot's figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Microseconds for the parallel sum.
    pub parallel_us: Option<f64>,
    /// Nanoseconds per hand-off.
    pub handoff_ns: Option<f64>,
    /// Nanoseconds per lock of a mutex two threads contend for.
    pub mutex_ns: Option<f64>,
}

/// Reads `bench parallel: N items in T us ...` and `bench handoff: H ns ...`.
pub fn parse(console: &str) -> Sample {
    let after = |prefix: &str, word: usize| -> Option<f64> {
        console.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)?
                .split_whitespace()
                .nth(word)?
                .parse()
                .ok()
        })
    };
    Sample {
        parallel_us: after("bench parallel: ", 3),
        handoff_ns: after("bench handoff: ", 0),
        mutex_ns: after("bench mutex: ", 0),
    }
}

/// The host's side: the guest's computation (smpprobe's hash, splitmix64's finaliser, summed
/// over halves of 0..N in threads), compiled by `rustc -O` for the host as the guest's is
/// optimized (xtask itself is a debug build), run with 1 and 2 threads. It prints microseconds.
const HOST_PROGRAM: &str = r#"
fn hash(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
fn sum(range: std::ops::Range<u64>) -> u64 {
    range.fold(0u64, |s, i| s.wrapping_add(hash(i)))
}
fn main() {
    let mut args = std::env::args().skip(1);
    let threads: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000_000);
    let start = std::time::Instant::now();
    let parts: Vec<_> = (0..threads)
        .map(|k| {
            let range = n * k / threads..n * (k + 1) / threads;
            std::thread::spawn(move || sum(range))
        })
        .collect();
    let total = parts.into_iter().fold(0u64, |s, h| s.wrapping_add(h.join().unwrap_or(0)));
    println!("{} {total}", start.elapsed().as_micros());
}
"#;

/// Builds [`HOST_PROGRAM`] into `dir` with the host's `rustc -O`; returns the binary's path.
fn build_host_program(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let source = dir.join("smp_host.rs");
    std::fs::write(&source, HOST_PROGRAM)?;
    let binary = dir.join("smp_host");
    let status = std::process::Command::new("rustc")
        .args(["-C", "opt-level=3", "--edition", "2021", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .map_err(|e| Error::msg(format!("running rustc for the host reference: {e}")))?;
    if !status.success() {
        return Err(Error::msg(format!(
            "rustc could not build the host reference {}",
            source.display()
        )));
    }
    Ok(binary)
}

/// The host program's time with `threads` threads.
fn host_time(binary: &std::path::Path, threads: u64) -> Result<Duration> {
    let out = std::process::Command::new(binary)
        .arg(threads.to_string())
        .arg(ITEMS.to_string())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let us: u64 = text
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| Error::msg(format!("the host reference printed {text:?}")))?;
    Ok(Duration::from_micros(us))
}

/// The figures of one run of the bench.
#[derive(Debug, Clone, Default)]
pub struct SmpResult {
    /// Guest medians with one vCPU and with two.
    pub guest: [Sample; 2],
    /// Host medians, microseconds, one thread and two.
    pub host_us: [f64; 2],
}

impl SmpResult {
    /// The guest's speedup from one vCPU to two.
    pub fn guest_speedup(&self) -> Option<f64> {
        Some(self.guest[0].parallel_us? / self.guest[1].parallel_us?)
    }

    /// The host's speedup from one thread to two.
    pub fn host_speedup(&self) -> f64 {
        self.host_us[0] / self.host_us[1]
    }
}

/// Runs the bench, `runs` boots per vCPU count and `runs` host measurements each; progress to
/// stderr.
pub fn run(ws: &Workspace, runs: usize) -> Result<SmpResult> {
    let qemu_bin = crate::cmd::setup::ensure_qemu()?;
    let set = vec!["cpus=2".to_string(), "scheduler=coop".to_string()];
    let (profile, image) = crate::build_app(ws, "smpprobe", "default", &set)?;
    let host = build_host_program(&ws.root.join("target/bench"))?;
    let mut result = SmpResult::default();
    for (i, vcpus) in [1usize, 2].into_iter().enumerate() {
        let mut cfg = QemuConfig::new(qemu_bin.clone(), image.elf.clone(), &profile);
        cfg.app_args = vec!["bench".into(), ITEMS.to_string()];
        if vcpus == 1 {
            // The same accelerator line; QEMU takes the last -smp.
            cfg.extra_args = vec!["-smp".into(), "1".into()];
        }
        let (mut parallel, mut handoff, mut mutex) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            eprintln!("bench smp: {vcpus} vCPU(s), run {}/{runs}", run + 1);
            let boot = qemu::boot(&cfg, true, Some(Duration::from_secs(300)))?;
            if boot.outcome != Outcome::Guest(0) {
                return Err(Error::msg(format!(
                    "smpprobe bench on {vcpus} vCPU(s): {:?}\n{}",
                    boot.outcome, boot.stdout
                )));
            }
            let s = parse(&boot.stdout);
            parallel.extend(s.parallel_us);
            handoff.extend(s.handoff_ns);
            mutex.extend(s.mutex_ns);
        }
        result.guest[i] = Sample {
            parallel_us: median(&parallel),
            handoff_ns: median(&handoff),
            mutex_ns: median(&mutex),
        };
        let mut times = Vec::new();
        for _ in 0..runs {
            times.push(host_time(&host, vcpus as u64)?.as_secs_f64() * 1e6);
        }
        result.host_us[i] = median(&times).unwrap_or(f64::NAN);
    }
    Ok(result)
}

/// The results as a Markdown table.
pub fn markdown(r: &SmpResult) -> String {
    let mut md = String::from("## SMP\n\n");
    let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    md.push_str("| | 1 CPU | 2 CPUs | speedup |\n|---|---:|---:|---:|\n");
    let _ = writeln!(
        md,
        "| Stardust: parallel sum (us) | {} | {} | {} |",
        show(r.guest[0].parallel_us),
        show(r.guest[1].parallel_us),
        r.guest_speedup().map_or("-".into(), |s| format!("{s:.2}x"))
    );
    let _ = writeln!(
        md,
        "| host: the same sum, 1 and 2 threads (us) | {:.0} | {:.0} | {:.2}x |",
        r.host_us[0],
        r.host_us[1],
        r.host_speedup()
    );
    let _ = writeln!(
        md,
        "| Stardust: channel hand-off (ns) | {} | {} | |",
        show(r.guest[0].handoff_ns),
        show(r.guest[1].handoff_ns)
    );
    let _ = writeln!(
        md,
        "| Stardust: mutex lock, two threads contending (ns) | {} | {} | |",
        show(r.guest[0].mutex_ns),
        show(r.guest[1].mutex_ns)
    );
    if let Some(s) = r.guest_speedup() {
        let _ = writeln!(
            md,
            "\nStardust's speedup is {:.0}% of the host's (goal: at least 90%).",
            100.0 * s / r.host_speedup()
        );
    }
    let _ = writeln!(
        md,
        "\nparallel sum: {ITEMS} items of a hash, in two threads (halves) joined by main; the \
         guest is one image (cpus = 2, coop) on QEMU TCG with -smp 1 and -smp 2; the host runs \
         the same code built by rustc -O. hand-off: two \
         threads passing a token through two channels. mutex: two threads taking one mutex \
         20,000 times each. Medians over the runs."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_probe_lines() {
        let s = parse(
            "bench parallel: 20000000 items in 44578 us on 2 CPUs\n\
             bench handoff: 2420 ns per hand-off on 2 CPUs\nbench mutex: 95 ns per lock on 2 CPUs\n",
        );
        assert_eq!(s.parallel_us, Some(44578.0));
        assert_eq!(s.handoff_ns, Some(2420.0));
        assert_eq!(s.mutex_ns, Some(95.0));
        assert_eq!(parse("bench parallel: lots\n"), Sample::default());
    }

    #[test]
    fn the_table_gives_both_speedups_and_their_ratio() {
        let r = SmpResult {
            guest: [
                Sample {
                    parallel_us: Some(200.0),
                    handoff_ns: Some(900.0),
                    mutex_ns: None,
                },
                Sample {
                    parallel_us: Some(125.0),
                    handoff_ns: Some(2400.0),
                    mutex_ns: Some(80.0),
                },
            ],
            host_us: [100.0, 62.5],
        };
        let md = markdown(&r);
        assert!(md.contains("| 200 | 125 | 1.60x |"), "{md}");
        assert!(md.contains("| 100 | 62 | 1.60x |"), "{md}");
        assert!(md.contains("100% of the host's"), "{md}");
    }
}
