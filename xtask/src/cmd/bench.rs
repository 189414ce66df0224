//! `cargo xtask bench`: its options; the benches themselves are in [`crate::bench`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use super::QemuArgs;
use crate::bench;
use crate::qemu::{Accel, Machine};
use crate::workspace::Workspace;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchWhich {
    /// Stripped image bytes per profile and app, per crate, against benches/baseline.json.
    Size,
    /// QEMU start to first line and to exit, as a ratio to the empty PVH kernel; boot chart.
    Boot,
    /// The smallest -m that still boots (binary search).
    Memory,
    /// size, boot and memory.
    All,
    /// The allocators side by side: throughput, fragmentation, size delta, minimum memory.
    Alloc,
    /// The schedulers side by side: switch time, spawn + join, wake-up latency, size delta.
    Sched,
    /// Two CPUs against one: a parallel sum's speedup beside the host's, channel hand-offs.
    Smp,
    /// Networking over TAP: HTTP (wrk) and bulk TCP against Stardust, the Linux reference
    /// guest and the host; user networking for reference (root only).
    Net,
    /// A Redis-protocol server under redis-benchmark over TAP: Stardust's kvstore, redis-server
    /// in the Linux reference guest, the host's redis-server (root only).
    Kv,
    /// Disk throughput (MB/s, IOPS) through the driver and through the filesystem: Stardust's
    /// blkprobe beside fio in the Linux reference guest (root only).
    Disk,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Which benches (default: all).
    #[arg(value_enum)]
    pub which: Vec<BenchWhich>,
    /// Profile(s) to measure (repeatable; default: every profiles/*.toml).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// App(s) to measure with each profile (repeatable; default: hello). Budgets apply to each.
    #[arg(long = "app", value_name = "APP")]
    pub apps: Vec<String>,
    /// Override a profile key (repeatable), applied to every profile.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Boots of each kernel (the app and the empty kernel) in the boot bench.
    #[arg(long, default_value_t = crate::bench::boot::DEFAULT_RUNS)]
    pub runs: usize,
    #[command(flatten)]
    pub qemu: QemuArgs,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Fail when a figure is over its profile's budget (or the profile has none for it).
    #[arg(long)]
    pub check: bool,
    /// Write the measured sizes to benches/baseline.json (the size bench only).
    #[arg(long)]
    pub save_baseline: bool,
    /// Boots per allocator and workload in the allocator bench, and per scheduler in the
    /// scheduler bench (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub alloc_runs: usize,
    #[command(flatten)]
    pub net: crate::bench::net::NetArgs,
    #[command(flatten)]
    pub storage: crate::bench::storage::StorageArgs,
}

pub fn run(ws: &Workspace, mut args: BenchArgs) -> Result<ExitCode> {
    // Bounds first, before any bench runs.
    let timeout = args.qemu.timeout(None)?;
    // Before anything runs: an unwritable --json path would waste the whole bench.
    if let Some(path) = &args.json {
        let only_tables = !args.which.is_empty()
            && args
                .which
                .iter()
                .all(|w| matches!(w, BenchWhich::Sched | BenchWhich::Alloc | BenchWhich::Smp));
        if only_tables {
            bail!(
                "--json writes the size, boot and memory figures; `bench sched`, `bench alloc` and `bench smp` \
                 print a table only (add size, boot, memory or all, or drop --json)"
            );
        }
        bench::check_json_path(path)?;
    }
    for (which, name) in [
        (BenchWhich::Net, "net"),
        (BenchWhich::Kv, "kv"),
        (BenchWhich::Disk, "disk"),
    ] {
        if !args.which.contains(&which) {
            continue;
        }
        if args.which.len() > 1 {
            bail!(
                "`bench {name}` runs alone (it needs the machine to itself): drop the other benches"
            );
        }
        return match which {
            BenchWhich::Net => bench::net::run(ws, &args.net, &args.qemu),
            BenchWhich::Kv => bench::kv::run(ws, &args.net, &args.storage, &args.qemu),
            _ => bench::disk::run(ws, &args.net, &args.storage, &args.qemu),
        }
        .map(|()| ExitCode::SUCCESS);
    }
    if args.which.contains(&BenchWhich::Smp) {
        let result = bench::smp::run(ws, args.alloc_runs.max(1))?;
        println!("{}", bench::smp::markdown(&result));
        args.which.retain(|w| *w != BenchWhich::Smp);
        if args.which.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if args.which.contains(&BenchWhich::Sched) {
        let (none, results) = bench::sched::run(ws, args.alloc_runs.max(1))?;
        println!("{}", bench::sched::markdown(none, &results));
        args.which.retain(|w| *w != BenchWhich::Sched);
        if args.which.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if args.which.contains(&BenchWhich::Alloc) {
        let results = bench::alloc::run(
            ws,
            &bench::alloc::Options {
                runs: args.alloc_runs.max(1),
                memory: true,
            },
        )?;
        println!("{}", bench::alloc::markdown(&results));
        args.which.retain(|w| *w != BenchWhich::Alloc);
        if args.which.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut which = args.which.clone();
    if which.is_empty() || which.contains(&BenchWhich::All) {
        which = vec![BenchWhich::Size, BenchWhich::Boot, BenchWhich::Memory];
    }
    let benches: Vec<bench::Bench> = which
        .iter()
        .map(|w| match w {
            BenchWhich::Size => bench::Bench::Size,
            BenchWhich::Boot => bench::Bench::Boot,
            _ => bench::Bench::Memory,
        })
        .collect();
    let needs_qemu = benches.iter().any(|b| *b != bench::Bench::Size);
    let (accel, machine) = if needs_qemu {
        args.qemu.resolve()?
    } else {
        (Accel::Tcg, Machine::Q35)
    };
    let opts = bench::Options {
        benches,
        profiles: args.profiles,
        apps: args.apps,
        overrides: args.set,
        runs: args.runs,
        accel,
        machine,
        timeout,
        json: args.json,
        check: args.check,
        save_baseline: args.save_baseline,
    };
    bench::run(ws, &opts).map(|_| ExitCode::SUCCESS)
}
