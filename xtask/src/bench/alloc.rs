//! `cargo xtask bench alloc`: the allocators side by side, in the guest, in one run.
//!
//! For each allocator (every `allocator` of crates/stardust/Cargo.toml but `none`: `bump`,
//! `buddy`, `talc`, the reference `bump` first): throughput (allocations + frees per second)
//! and fragmentation (the heap's footprint over the peak of live bytes) of `apps/allocstress`'s
//! benchmark workloads, medians of several boots; the image-size delta of hello against `bump`;
//! and the smallest `-m` with which hello still boots (binary search, see `bench::memory`).
//! Every allocator runs the same workloads with the same seed and the same guest memory.

use std::fmt::Write as _;
use std::time::Duration;

use super::stats::median;
use crate::bench::memory;
use crate::qemu::{self, Outcome, QemuConfig};
use crate::workspace::Workspace;
use anyhow::{Error, Result};

/// The workloads of `allocstress bench`.
pub const WORKLOADS: [&str; 3] = ["small", "mixed", "vec"];
/// Guest memory of the workload runs: enough for `bump`, which never reuses memory.
const BENCH_MEMORY: &str = "256M";

/// One `allocbench:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Cycles the workload took.
    pub cycles: u64,
    /// TSC frequency (0 when unknown).
    pub hz: u64,
    /// Peak live bytes.
    pub peak: u64,
    /// Heap footprint (bytes from the heap's start to the highest block end).
    pub footprint: u64,
    /// Allocations.
    pub allocations: u64,
    /// Frees.
    pub frees: u64,
}

impl Sample {
    /// Allocations and frees per second.
    pub fn ops_per_second(&self) -> Option<f64> {
        (self.hz > 0 && self.cycles > 0)
            .then(|| (self.allocations + self.frees) as f64 * self.hz as f64 / self.cycles as f64)
    }

    /// Footprint over peak live bytes (1.0 = perfect packing).
    pub fn fragmentation(&self) -> Option<f64> {
        (self.peak > 0).then(|| self.footprint as f64 / self.peak as f64)
    }
}

/// Parses `allocbench: workload=W work=N cycles=C hz=H peak=P footprint=F allocations=A
/// frees=R`; `None` for any other line or a missing/garbled field.
pub fn parse_line(line: &str) -> Option<(String, Sample)> {
    let rest = line.trim().strip_prefix("allocbench: ")?;
    let field = |name: &str| -> Option<&str> {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let num = |name: &str| -> Option<u64> { field(name)?.parse().ok() };
    Some((
        field("workload")?.to_string(),
        Sample {
            cycles: num("cycles")?,
            hz: num("hz")?,
            peak: num("peak")?,
            footprint: num("footprint")?,
            allocations: num("allocations")?,
            frees: num("frees")?,
        },
    ))
}

/// One allocator's figures.
#[derive(Debug, Clone, Default)]
pub struct AllocatorResult {
    /// Allocator name.
    pub allocator: String,
    /// Per workload: median allocations+frees per second, and fragmentation.
    pub workloads: Vec<(String, Option<f64>, Option<f64>)>,
    /// Stripped hello image bytes.
    pub hello_bytes: u64,
    /// Smallest `-m` for hello, bytes.
    pub min_memory: Option<u64>,
}

/// Options of the run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Boots per workload and allocator (the median is reported).
    pub runs: usize,
    /// Also search the minimum memory (slower).
    pub memory: bool,
}

fn boot_workload(cfg: &QemuConfig, workload: &str) -> Result<Sample> {
    let mut cfg = cfg.clone();
    cfg.app_args = vec!["bench".into(), workload.into()];
    let boot = qemu::boot(&cfg, true, Some(Duration::from_secs(120)))?;
    if boot.outcome != Outcome::Guest(0) {
        return Err(Error::msg(format!(
            "allocstress bench {workload}: {:?}\n{}",
            boot.outcome, boot.stdout
        )));
    }
    boot.lines()
        .find_map(parse_line)
        .map(|(_, s)| s)
        .ok_or_else(|| Error::msg(format!("no allocbench line in:\n{}", boot.stdout)))
}

/// Runs the benchmark; progress goes to stderr.
pub fn run(ws: &Workspace, opts: &Options) -> Result<Vec<AllocatorResult>> {
    let qemu_bin = crate::cmd::setup::ensure_qemu()?;
    let mut results = Vec::new();
    for allocator in ws.allocators()? {
        let set = vec![format!("allocator={allocator}")];
        let mut bench_set = set.clone();
        bench_set.push(format!("memory={BENCH_MEMORY}"));
        let (profile, image) = crate::build_app(ws, "allocstress", "default", &bench_set)?;
        let cfg = QemuConfig::new(qemu_bin.clone(), image.elf.clone(), &profile);
        let mut result = AllocatorResult {
            allocator: allocator.clone(),
            ..AllocatorResult::default()
        };
        for workload in WORKLOADS {
            let mut rates = Vec::new();
            let mut frags = Vec::new();
            for run in 0..opts.runs {
                eprintln!(
                    "bench alloc: {allocator} {workload} run {}/{}",
                    run + 1,
                    opts.runs
                );
                let s = boot_workload(&cfg, workload)?;
                rates.extend(s.ops_per_second());
                frags.extend(s.fragmentation());
            }
            result
                .workloads
                .push((workload.into(), median(&rates), median(&frags)));
        }
        let (hello_profile, hello) = crate::build_app(ws, "hello", "default", &set)?;
        result.hello_bytes = hello.bytes;
        if opts.memory {
            eprintln!("bench alloc: {allocator} minimum memory of hello");
            let cfg = QemuConfig::new(qemu_bin.clone(), hello.elf.clone(), &hello_profile);
            let end = crate::bench::image_end(&hello.elf)?;
            let (found, _) = memory::min_memory(&cfg, end, memory::PROBE_TIMEOUT, |_, _| {})?;
            result.min_memory = found;
        }
        results.push(result);
    }
    Ok(results)
}

/// The results as a Markdown table (throughput in millions of operations per second, under
/// the run's accelerator).
pub fn markdown(results: &[AllocatorResult]) -> String {
    let mut md = String::from("## Allocators\n\n");
    md.push_str("| allocator |");
    for w in WORKLOADS {
        let _ = write!(md, " {w} Mops/s | {w} frag |");
    }
    md.push_str(" hello bytes | vs bump | min -m |\n|---|");
    for _ in WORKLOADS {
        md.push_str("---:|---:|");
    }
    md.push_str("---:|---:|---:|\n");
    let bump = results.first().map_or(0, |r| r.hello_bytes as i64);
    for r in results {
        let _ = write!(md, "| {} |", r.allocator);
        for (_, rate, frag) in &r.workloads {
            let rate = rate.map_or("-".into(), |v| format!("{:.2}", v / 1e6));
            let frag = frag.map_or("-".into(), |v| format!("{v:.2}"));
            let _ = write!(md, " {rate} | {frag} |");
        }
        let min = r
            .min_memory
            .map_or("-".into(), |m| format!("{} KiB", m / 1024));
        let _ = writeln!(
            md,
            " {} | {:+} | {min} |",
            r.hello_bytes,
            r.hello_bytes as i64 - bump
        );
    }
    md.push_str(
        "\nMops/s: allocations + frees per second (millions), median of the runs. frag: heap \
         footprint / peak live bytes (1.00 = perfect packing). Same workloads, seed and guest \
         memory for every allocator.\n",
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_guest_line_and_rejects_garbage() {
        let (w, s) = parse_line(
            "allocbench: workload=small work=200000 cycles=2000 hz=1000 peak=100 footprint=150 \
             allocations=30 frees=10",
        )
        .expect("a line");
        assert_eq!(w, "small");
        assert_eq!(s.ops_per_second(), Some(20.0));
        assert_eq!(s.fragmentation(), Some(1.5));
        assert!(parse_line("allocstress: ok").is_none());
        assert!(parse_line("allocbench: workload=x cycles=zz").is_none());
        let zero = Sample { hz: 0, ..s };
        assert_eq!(zero.ops_per_second(), None);
    }

    #[test]
    fn table_shows_the_delta_against_bump() {
        let r = |name: &str, bytes| AllocatorResult {
            allocator: name.into(),
            workloads: vec![("small".into(), Some(2e6), Some(1.25))],
            hello_bytes: bytes,
            min_memory: Some(1216 * 1024),
        };
        let md = markdown(&[r("bump", 1000), r("talc", 1500)]);
        assert!(md.contains("| talc | 2.00 | 1.25 |"), "{md}");
        assert!(md.contains("1500 | +500 | 1216 KiB |"), "{md}");
    }
}
