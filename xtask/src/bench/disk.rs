//! `cargo xtask bench disk`: disk throughput through the driver and through the filesystem,
//! one run, side by side.
//!
//! Targets (`--target`; default both):
//! - **Linux (TAP)**: `fio` in the reference guest ([`crate::netref`]): one boot per layer with
//!   the job file of [`fio_jobfile`] (on the guest's second disk, `netref.fio=`), its JSON read
//!   back from the serial console ([`parse_fio`]);
//! - **Stardust (TAP)**: the `blkprobe` app's bench mode, one boot per layer (the contract is
//!   [`probe_args`] and [`parse_probe`]); "not available yet" when the workspace has no
//!   `apps/blkprobe`.
//!
//! Both on `bench net`'s QEMU line (q35, TCG, the same `-m`, virtio-net over TAP, unused here)
//! plus the same data disk: a fresh sparse raw image per boot on the options of
//! [`crate::netref::data_disk_args`]. No host target: the host's disk is no ceiling for a
//! virtual one.
//!
//! Layers:
//! - **driver**: the raw device, direct I/O (Linux: `/dev/vdX`, `direct=1`);
//! - **filesystem**: a file on the guest's filesystem (Linux: ext4, made at boot, buffered I/O
//!   with the page cache dropped before each workload, fio's `invalidate=1`), the writes
//!   ending with `fsync`.
//!
//! Workloads, over a region (or file) of `--disk-size` MiB written in full first: sequential
//! write and read in 1 MiB requests, random write and read in 4 KiB requests (uniform, aligned),
//! `--iodepth` requests in flight (libaio), each `--duration` seconds and `--storage-runs` times
//! (medians). Writes include their final flush (`end_fsync`). MB/s = 10^6 bytes/s; IOPS =
//! requests per second. Results: Markdown on stdout, and `target/bench/disk.md` + `disk.json`.
//! Reported, never gated.

use crate::bench::report::cell;
use std::time::{Duration, Instant};

use anyhow::{Context, Error, Result, bail};
use serde::Serialize;

use super::net::{Guest, NetArgs, TargetKind};
use super::stats::{median, ratio};
use super::storage::{Setup, StorageArgs};
use crate::cmd::QemuArgs;
use crate::netns;
use crate::netref::{self, RefGuest};
use crate::workspace::{Workspace, display_path};

/// Stardust's block probe.
pub const PROBE_APP: &str = "blkprobe";
/// The file the Linux guest's filesystem workloads use (on the data disk, mounted at /data).
const FS_FILE: &str = "/data/fio.dat";

fn progress(msg: impl std::fmt::Display) {
    eprintln!("bench disk: {msg}");
}

/// Where the workloads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Layer {
    /// The raw device, direct I/O.
    Driver,
    /// A file on the filesystem.
    Fs,
}

impl Layer {
    /// Both, in the order measured.
    pub const ALL: [Layer; 2] = [Layer::Driver, Layer::Fs];

    /// `driver`, `fs`: the probe's `layer=` and the image's name.
    pub fn word(self) -> &'static str {
        match self {
            Layer::Driver => "driver",
            Layer::Fs => "fs",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Layer::Driver => "driver (raw device, direct I/O)",
            Layer::Fs => "filesystem (a file, synced)",
        }
    }
}

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Pattern {
    /// Sequential writes of 1 MiB.
    SeqWrite,
    /// Sequential reads of 1 MiB.
    SeqRead,
    /// Random writes of 4 KiB.
    RandWrite,
    /// Random reads of 4 KiB.
    RandRead,
}

impl Pattern {
    /// Every workload, in the order run (each read after the write of its kind).
    pub const ALL: [Pattern; 4] = [
        Pattern::SeqWrite,
        Pattern::SeqRead,
        Pattern::RandWrite,
        Pattern::RandRead,
    ];

    /// The name in fio's job names and in the probe's lines.
    pub fn word(self) -> &'static str {
        match self {
            Pattern::SeqWrite => "seqwrite",
            Pattern::SeqRead => "seqread",
            Pattern::RandWrite => "randwrite",
            Pattern::RandRead => "randread",
        }
    }

    /// The workload named `word`.
    pub fn from_word(word: &str) -> Option<Pattern> {
        Pattern::ALL.into_iter().find(|p| p.word() == word)
    }

    /// The request size in bytes.
    pub fn block(self) -> u64 {
        match self {
            Pattern::SeqWrite | Pattern::SeqRead => 1 << 20,
            Pattern::RandWrite | Pattern::RandRead => 4096,
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Pattern::SeqWrite | Pattern::RandWrite)
    }

    /// fio's `rw=`.
    fn fio_rw(self) -> &'static str {
        match self {
            Pattern::SeqWrite => "write",
            Pattern::SeqRead => "read",
            Pattern::RandWrite => "randwrite",
            Pattern::RandRead => "randread",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Pattern::SeqWrite => "seq write 1 MiB",
            Pattern::SeqRead => "seq read 1 MiB",
            Pattern::RandWrite => "rand write 4 KiB",
            Pattern::RandRead => "rand read 4 KiB",
        }
    }
}

/// One run of one workload: bytes moved in so many nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Which.
    pub pattern: Pattern,
    /// Bytes read or written.
    pub bytes: u64,
    /// Time taken (ns), a write's final flush included.
    pub ns: u64,
}

impl Sample {
    /// 10^6 bytes per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.ns as f64 * 1e3
    }

    /// Requests per second.
    pub fn iops(&self) -> f64 {
        self.bytes as f64 / self.pattern.block() as f64 / (self.ns as f64 / 1e9)
    }
}

/// fio's job file for `layer`: a fill of the whole region (not reported), then every workload
/// `runs` times, one after another (`stonewall`). The raw device is `${NETREF_DATA}` (the init
/// exports the data disk's path).
pub fn fio_jobfile(
    layer: Layer,
    size_mib: u64,
    seconds: u64,
    iodepth: usize,
    runs: usize,
) -> String {
    let (file, direct) = match layer {
        Layer::Driver => ("${NETREF_DATA}", 1),
        Layer::Fs => (FS_FILE, 0),
    };
    let mut s = format!(
        "[global]\nioengine=libaio\niodepth={iodepth}\nfilename={file}\nsize={size_mib}m\n\
         direct={direct}\ninvalidate=1\nrandrepeat=0\nnorandommap=1\n\n\
         [fill]\nrw=write\nbs=1m\nend_fsync=1\n"
    );
    for run in 1..=runs {
        for p in Pattern::ALL {
            s.push_str(&format!(
                "\n[{}.{run}]\nstonewall\nrw={}\nbs={}\ntime_based=1\nruntime={seconds}s\n",
                p.word(),
                p.fio_rw(),
                p.block()
            ));
            if p.is_write() {
                s.push_str("end_fsync=1\n");
            }
        }
    }
    s
}

/// The JSON between the init's [`netref::FIO_BEGIN`] and [`netref::FIO_END`] lines: from the
/// first line that opens an object to the last that closes one (fio may print notes first).
pub fn fio_json(console: &[String]) -> Result<String> {
    let begin = console
        .iter()
        .position(|l| l.contains(netref::FIO_BEGIN))
        .ok_or_else(|| Error::msg("no fio output (no begin line)"))?;
    let end = console[begin..]
        .iter()
        .position(|l| l.contains(netref::FIO_END))
        .map(|i| begin + i)
        .ok_or_else(|| Error::msg("fio's output has no end line"))?;
    let body = &console[begin + 1..end];
    let first = body
        .iter()
        .position(|l| l.starts_with('{'))
        .ok_or_else(|| Error::msg("fio printed no JSON"))?;
    let last = body
        .iter()
        .rposition(|l| l.starts_with('}'))
        .filter(|l| *l >= first)
        .ok_or_else(|| Error::msg("fio's JSON does not end"))?;
    Ok(body[first..=last].join("\n"))
}

/// Parses fio's `--output-format=json`: one sample per job named `<pattern>.<run>` (the fill
/// and other jobs are left out). An error for JSON that is not fio's, a job that failed, or a
/// job of ours that moved nothing.
pub fn parse_fio(json: &str) -> Result<Vec<Sample>> {
    let v: serde_json::Value = serde_json::from_str(json).context("fio's JSON")?;
    let jobs = v
        .get("jobs")
        .and_then(|j| j.as_array())
        .ok_or_else(|| Error::msg("fio's JSON has no jobs"))?;
    let mut out = Vec::new();
    for job in jobs {
        let name = job
            .get("jobname")
            .and_then(|n| n.as_str())
            .ok_or_else(|| Error::msg("a fio job without a name"))?;
        let Some(pattern) = name.split('.').next().and_then(Pattern::from_word) else {
            continue;
        };
        let error = job.get("error").and_then(|e| e.as_i64()).unwrap_or(0);
        if error != 0 {
            bail!("fio job {name} failed (error {error})");
        }
        let dir = if pattern.is_write() { "write" } else { "read" };
        let field = |f: &str| job.get(dir).and_then(|d| d.get(f)).and_then(|x| x.as_u64());
        let (Some(bytes), Some(ms)) = (field("io_bytes"), field("runtime")) else {
            bail!("fio job {name} has no {dir} io_bytes and runtime");
        };
        if bytes == 0 || ms == 0 {
            bail!("fio job {name} moved {bytes} bytes in {ms} ms");
        }
        out.push(Sample {
            pattern,
            bytes,
            ns: ms * 1_000_000,
        });
    }
    if out.is_empty() {
        bail!("fio's JSON has none of the bench's jobs");
    }
    Ok(out)
}

/// The app arguments of `blkprobe`'s bench mode. The contract the app is to follow:
///
/// - arguments `bench layer=driver|fs bytes=B seconds=S runs=R qd=Q`;
/// - `layer=driver`: the workloads go to the virtio-blk device itself, the region its first `B`
///   bytes; `layer=fs`: to one file of `B` bytes on the `filesystem` slot's filesystem (the
///   disk is all zeros at boot: formatted first);
/// - it writes the whole region first (not reported), then runs [`Pattern::ALL`] in that
///   order, `R` times over: sequential 1 MiB requests, random 4 KiB ones (uniform, aligned),
///   `Q` requests in flight, each workload for about `S` seconds;
/// - a write workload's time includes its final flush (driver) or `sync` (fs);
/// - after each workload, one console line `bench <pattern> <bytes> <ns>` (`seqwrite`,
///   `seqread`, `randwrite`, `randread`; the bytes moved, the nanoseconds taken), and after the
///   last one `bench done`; a failure prints `bench error <what>` and ends the run.
pub fn probe_args(layer: Layer, bytes: u64, seconds: u64, runs: usize, qd: usize) -> Vec<String> {
    vec![
        "bench".into(),
        format!("layer={}", layer.word()),
        format!("bytes={bytes}"),
        format!("seconds={seconds}"),
        format!("runs={runs}"),
        format!("qd={qd}"),
    ]
}

/// The line `blkprobe` ends its bench with.
pub const PROBE_DONE: &str = "bench done";

/// Parses `blkprobe`'s bench lines ([`probe_args`]) in a console: the samples, and what was
/// wrong (a line that starts as a bench line but is not one, `bench error ...`, or no
/// [`PROBE_DONE`]). Other lines (the kernel's) are left alone.
pub fn parse_probe(console: &[String]) -> (Vec<Sample>, Vec<String>) {
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    let mut done = false;
    for line in console {
        let Some(at) = line.find("bench ") else {
            continue;
        };
        let words: Vec<&str> = line[at..].split_whitespace().collect();
        match words[..] {
            ["bench", "done"] => done = true,
            ["bench", "error", ..] => problems.push(format!("the probe says: {}", &line[at..])),
            ["bench", name, bytes, ns] => {
                let parsed = Pattern::from_word(name)
                    .zip(bytes.parse::<u64>().ok())
                    .zip(ns.parse::<u64>().ok());
                match parsed {
                    Some(((pattern, bytes), ns)) if bytes > 0 && ns > 0 => {
                        samples.push(Sample { pattern, bytes, ns })
                    }
                    _ => problems.push(format!("a malformed bench line: `{}`", &line[at..])),
                }
            }
            _ => problems.push(format!("a malformed bench line: `{}`", &line[at..])),
        }
    }
    if !done {
        problems.push(format!("no `{PROBE_DONE}` line"));
    }
    (samples, problems)
}

/// The medians of one workload's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskSummary {
    /// Which.
    pub pattern: Pattern,
    /// Median MB/s.
    pub mb_per_s: f64,
    /// Median IOPS.
    pub iops: f64,
    /// Every run.
    pub runs: Vec<Sample>,
}

/// Medians per workload of `samples` (in [`Pattern::ALL`]'s order; none for a workload without
/// samples).
pub fn summarize(samples: &[Sample]) -> Vec<DiskSummary> {
    Pattern::ALL
        .into_iter()
        .filter_map(|p| {
            let runs: Vec<Sample> = samples.iter().filter(|s| s.pattern == p).copied().collect();
            let mb = median(&runs.iter().map(Sample::mb_per_s).collect::<Vec<_>>())?;
            let iops = median(&runs.iter().map(Sample::iops).collect::<Vec<_>>())?;
            Some(DiskSummary {
                pattern: p,
                mb_per_s: mb,
                iops,
                runs,
            })
        })
        .collect()
}

/// One target's figures at one layer.
#[derive(Debug, Clone, Serialize)]
pub struct DiskTarget {
    /// Which.
    pub kind: TargetKind,
    /// Where.
    pub layer: Layer,
    /// Per workload.
    pub workloads: Vec<DiskSummary>,
    /// What failed or was not measured.
    pub notes: Vec<String>,
}

impl DiskTarget {
    fn get(&self, p: Pattern) -> Option<&DiskSummary> {
        self.workloads.iter().find(|s| s.pattern == p)
    }
}

/// The whole bench's result.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    /// MiB each workload covers.
    pub size_mib: u64,
    /// Seconds of each workload.
    pub seconds: u64,
    /// Requests in flight.
    pub iodepth: usize,
    /// Repetitions.
    pub runs: usize,
    /// Guest memory (MiB).
    pub guest_memory: u64,
    /// The guests' machine.
    pub machine: String,
    /// The guests' accelerator.
    pub accel: String,
    /// The data disk's QEMU options.
    pub disk: String,
    /// Per target and layer, in the order measured.
    pub targets: Vec<DiskTarget>,
    /// Targets skipped, with why.
    pub skipped: Vec<String>,
}

impl DiskReport {
    /// The report as Markdown: MB/s and IOPS per target and layer, the Stardust/Linux ratios,
    /// skips and notes.
    pub fn markdown(&self) -> String {
        let mut s = String::from("## Disk (virtio-blk)\n\n");
        s.push_str(&format!(
            "Guests: QEMU {} ({}), -m {}M, data disk `{}` (fresh, sparse); a region of {} MiB \
             written in full first, then each workload for {} s with {} request(s) in flight; \
             writes include their final flush; medians of {} runs. Linux: fio (libaio; driver = \
             the raw device with O_DIRECT, filesystem = a file on ext4, buffered, the page cache \
             dropped before each workload). MB/s = 10^6 bytes/s.\n\n",
            self.machine,
            self.accel,
            self.guest_memory,
            self.disk,
            self.size_mib,
            self.seconds,
            self.iodepth,
            self.runs
        ));
        if self.targets.is_empty() {
            s.push_str("No target was measured.\n");
        } else {
            self.tables(&mut s);
        }
        let notes: Vec<String> = self
            .skipped
            .iter()
            .map(|n| format!("- skipped: {n}"))
            .chain(self.targets.iter().flat_map(|t| {
                t.notes
                    .iter()
                    .map(move |n| format!("- {}, {}: {n}", t.kind.label(), t.layer.word()))
            }))
            .collect();
        if !notes.is_empty() {
            s.push('\n');
            s.push_str(&notes.join("\n"));
            s.push('\n');
        }
        s
    }

    /// The tables (MB/s, IOPS) and the ratios.
    fn tables(&self, s: &mut String) {
        let head: Vec<&str> = Pattern::ALL.iter().map(|p| p.label()).collect();
        for (what, digits, f) in [
            (
                "MB/s",
                1,
                (|d: &DiskSummary| d.mb_per_s) as fn(&DiskSummary) -> f64,
            ),
            ("IOPS", 0, |d: &DiskSummary| d.iops),
        ] {
            if what == "IOPS" {
                s.push('\n');
            }
            s.push_str(&format!(
                "{what}:\n\n| target | layer | {} |\n",
                head.join(" | ")
            ));
            s.push_str(&format!("| --- | --- |{}\n", " ---: |".repeat(head.len())));
            for t in &self.targets {
                let cells: Vec<String> = Pattern::ALL
                    .iter()
                    .map(|p| cell(t.get(*p).map(f), digits))
                    .collect();
                s.push_str(&format!(
                    "| {} | {} | {} |\n",
                    t.kind.label(),
                    t.layer.label(),
                    cells.join(" | ")
                ));
            }
        }
        let mut first = true;
        let find = |k, l| self.targets.iter().find(|t| t.kind == k && t.layer == l);
        for layer in Layer::ALL {
            let (Some(sd), Some(lx)) = (
                find(TargetKind::Stardust, layer),
                find(TargetKind::Linux, layer),
            ) else {
                continue;
            };
            let r: Vec<String> = Pattern::ALL
                .iter()
                .map(|p| {
                    let v = sd
                        .get(*p)
                        .zip(lx.get(*p))
                        .and_then(|(a, b)| ratio(a.mb_per_s, b.mb_per_s));
                    format!(
                        "{} {}",
                        p.word(),
                        v.map_or("—".into(), |v| format!("{v:.2}×"))
                    )
                })
                .collect();
            if first {
                s.push('\n');
                first = false;
            }
            s.push_str(&format!(
                "Stardust / Linux, {}: {}\n",
                layer.word(),
                r.join(", ")
            ));
        }
    }
}

/// The data image for `layer`: the region, plus room for ext4's own blocks and journal.
fn image_bytes(layer: Layer, size_mib: u64) -> u64 {
    match layer {
        Layer::Driver => (size_mib + 16) << 20,
        Layer::Fs => (size_mib + size_mib / 4 + 128) << 20,
    }
}

/// How long a boot with every workload may take: the boot, the fill at 1 MB/s at worst, and
/// each workload with a minute to spare.
fn run_limit(opts: &StorageArgs, seconds: u64) -> Duration {
    super::net::BOOT_LIMIT
        + Duration::from_secs(
            opts.disk_size + opts.storage_runs as u64 * Pattern::ALL.len() as u64 * (seconds + 60),
        )
}

/// `cargo xtask bench disk`.
pub fn run(ws: &Workspace, net: &NetArgs, opts: &StorageArgs, qemu_args: &QemuArgs) -> Result<()> {
    if opts.storage_runs == 0 || opts.disk_size == 0 || opts.iodepth == 0 {
        bail!("--storage-runs, --disk-size and --iodepth must be at least 1");
    }
    let mut skipped = Vec::new();
    let targets = super::storage::targets(&net.targets, false, &mut skipped);
    let setup = Setup::new(ws, "disk", net, qemu_args, &["ip"], &targets, &mut skipped)?;
    progress(format_args!(
        "network namespace {}; disks in {}",
        setup.ns.name(),
        display_path(&setup.tmp.0)
    ));
    let mut report = DiskReport {
        size_mib: opts.disk_size,
        seconds: net.duration,
        iodepth: opts.iodepth,
        runs: opts.storage_runs,
        guest_memory: net.guest_memory,
        machine: setup.machine_name(),
        accel: setup.accel.name().into(),
        disk: setup.disk_options(),
        targets: Vec::new(),
        skipped,
    };
    'targets: for kind in targets {
        for layer in Layer::ALL {
            let mut res = DiskTarget {
                kind,
                layer,
                workloads: Vec::new(),
                notes: Vec::new(),
            };
            let outcome = match kind {
                TargetKind::Linux => match &setup.reference {
                    None => continue 'targets,
                    Some(g) => run_linux(&setup, g, net, opts, &mut res),
                },
                _ => run_stardust(ws, &setup, net, opts, &mut res),
            };
            match outcome {
                Ok(true) => report.targets.push(res),
                Ok(false) => {
                    report.skipped.extend(res.notes);
                    continue 'targets;
                }
                Err(e) => {
                    progress(format_args!(
                        "{}, {}: FAILED: {e:#}",
                        kind.label(),
                        layer.word()
                    ));
                    res.notes.push(format!("failed: {e:#}"));
                    report.targets.push(res);
                }
            }
        }
    }
    drop(setup);
    let md = report.markdown();
    print!("{md}");
    let json = serde_json::to_string_pretty(&report).context("the report as JSON")?;
    let [a, b] = super::storage::write_report(ws, "disk", &md, &json)?;
    progress(format_args!(
        "wrote {}, {}",
        display_path(&a),
        display_path(&b)
    ));
    Ok(())
}

fn print_samples(res: &DiskTarget, samples: &[Sample]) {
    for s in samples {
        progress(format_args!(
            "{}, {}: {}: {:.1} MB/s, {:.0} IOPS ({} bytes in {:.2} s)",
            res.kind.label(),
            res.layer.word(),
            s.pattern.word(),
            s.mb_per_s(),
            s.iops(),
            s.bytes,
            s.ns as f64 / 1e9
        ));
    }
}

/// fio in the Linux reference guest, one boot for `res.layer`.
fn run_linux(
    setup: &Setup,
    g: &RefGuest,
    net: &NetArgs,
    opts: &StorageArgs,
    res: &mut DiskTarget,
) -> Result<bool> {
    let layer = res.layer;
    let job = fio_jobfile(
        layer,
        opts.disk_size,
        net.duration,
        opts.iodepth,
        opts.storage_runs,
    );
    let job_disk = setup.tmp.0.join("job.img");
    netref::write_page_disk(&job_disk, job.as_bytes())?;
    let cfg = setup.guest_cfg(
        g.kernel.clone(),
        RefGuest::fio_cmdline(
            netns::GUEST_CIDR,
            netns::HOST_IP,
            job.len(),
            layer == Layer::Driver,
        ),
    );
    let disk = setup.data_image(
        &format!("linux-{}.img", layer.word()),
        image_bytes(layer, opts.disk_size),
    )?;
    let mut cmd = cfg.command();
    cmd.args(g.extra_args_with_data(cfg.effective_machine(), &job_disk));
    cmd.args(netref::data_disk_args(cfg.effective_machine(), &disk));
    progress(format_args!(
        "{}, {}: booting {} with fio ({})",
        res.kind.label(),
        layer.word(),
        display_path(&g.kernel),
        cfg.shell_line()
    ));
    let t0 = Instant::now();
    let mut guest = Guest::start(cmd)?;
    let end = guest.wait_line(netref::FIO_END, run_limit(opts, net.duration))?;
    progress(format_args!(
        "{}, {}: {end} ({:.1} s after QEMU started)",
        res.kind.label(),
        layer.word(),
        t0.elapsed().as_secs_f64()
    ));
    if !end.ends_with("status=0") {
        let _ = guest.wait_line("\u{0}", Duration::from_millis(500));
        bail!("fio failed in the guest; {}", guest.tail());
    }
    let json = fio_json(&guest.console)?;
    drop(guest);
    let samples = parse_fio(&json)?;
    print_samples(res, &samples);
    res.workloads = summarize(&samples);
    Ok(true)
}

/// Stardust's `blkprobe` in its bench mode ([`probe_args`]), one boot for `res.layer`, on the
/// QEMU line and data disk options Linux gets. `Ok(false)` (with why in `res.notes`) when the
/// app does not exist in this workspace or does not build.
fn run_stardust(
    ws: &Workspace,
    setup: &Setup,
    net: &NetArgs,
    opts: &StorageArgs,
    res: &mut DiskTarget,
) -> Result<bool> {
    if ws.check_app(PROBE_APP).is_err() {
        res.notes.push(format!(
            "Stardust `{PROBE_APP}`: not available yet (no apps/{PROBE_APP} in this workspace); \
             its figures are left out"
        ));
        return Ok(false);
    }
    let (_, image) = match crate::build_app(ws, PROBE_APP, &opts.storage_profile, &opts.storage_set)
    {
        Ok(b) => b,
        Err(e) => {
            res.notes.push(format!(
                "Stardust `{PROBE_APP}` [{}]: does not build: {}",
                opts.storage_profile,
                format!("{e:#}").lines().next().unwrap_or("")
            ));
            return Ok(false);
        }
    };
    let layer = res.layer;
    let mut cfg = setup.guest_cfg(image.elf.clone(), netns::guest_kargs());
    cfg.app_args = probe_args(
        layer,
        opts.disk_size << 20,
        net.duration,
        opts.storage_runs,
        opts.iodepth,
    );
    let disk = setup.data_image(
        &format!("stardust-{}.img", layer.word()),
        image_bytes(layer, opts.disk_size),
    )?;
    cfg.extra_args = netref::data_disk_args(cfg.effective_machine(), &disk);
    progress(format_args!(
        "Stardust {PROBE_APP}, {}: {}",
        layer.word(),
        cfg.shell_line()
    ));
    let mut guest = Guest::start(cfg.command())?;
    let waited = guest.wait_line(PROBE_DONE, run_limit(opts, net.duration));
    let (samples, problems) = parse_probe(&guest.console);
    if let Err(e) = waited {
        bail!("{e:#}");
    }
    drop(guest);
    print_samples(res, &samples);
    res.notes.extend(problems);
    res.workloads = summarize(&samples);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fio 3.33's JSON, cut to what the parser reads (and a few neighbours).
    const FIO: &str = r#"{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "fill",
      "error" : 0,
      "read" : { "io_bytes" : 0, "bw_bytes" : 0, "iops" : 0.0, "runtime" : 0 },
      "write" : { "io_bytes" : 268435456, "bw_bytes" : 100000000, "runtime" : 2684 }
    },
    {
      "jobname" : "seqwrite.1",
      "error" : 0,
      "read" : { "io_bytes" : 0, "runtime" : 0 },
      "write" : { "io_bytes" : 500000000, "bw_bytes" : 100000000, "iops" : 95.3, "runtime" : 5000 }
    },
    {
      "jobname" : "randread.1",
      "error" : 0,
      "read" : { "io_bytes" : 40960000, "runtime" : 5000 },
      "write" : { "io_bytes" : 0, "runtime" : 0 }
    }
  ]
}"#;

    #[test]
    fn fio_json_is_parsed() {
        let s = parse_fio(FIO).expect("samples");
        assert_eq!(
            s,
            [
                Sample {
                    pattern: Pattern::SeqWrite,
                    bytes: 500_000_000,
                    ns: 5_000_000_000
                },
                Sample {
                    pattern: Pattern::RandRead,
                    bytes: 40_960_000,
                    ns: 5_000_000_000
                }
            ]
        );
        assert_eq!(s[0].mb_per_s(), 100.0);
        assert!((s[1].iops() - 2000.0).abs() < 1e-9);
        assert!((s[0].iops() - 500_000_000.0 / 1048576.0 / 5.0).abs() < 1.0);
    }

    #[test]
    fn malformed_fio_output_is_an_error() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"jobs": 3}"#,
            r#"{"jobs": []}"#,
            r#"{"jobs": [{"jobname": "fill", "write": {"io_bytes": 1, "runtime": 1}}]}"#,
            r#"{"jobs": [{"error": 0}]}"#,
            r#"{"jobs": [{"jobname": "seqread.1", "error": 5, "read": {"io_bytes": 1, "runtime": 1}}]}"#,
            r#"{"jobs": [{"jobname": "seqread.1", "read": {"io_bytes": 1}}]}"#,
            r#"{"jobs": [{"jobname": "seqread.1", "read": {"io_bytes": 0, "runtime": 9}}]}"#,
            r#"{"jobs": [{"jobname": "seqread.1", "read": {"io_bytes": -1, "runtime": 9}}]}"#,
            // A write job's figures are under "write".
            r#"{"jobs": [{"jobname": "randwrite.2", "read": {"io_bytes": 4, "runtime": 9}}]}"#,
        ] {
            assert!(parse_fio(bad).is_err(), "{bad}");
        }
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn fio_json_is_cut_from_the_console() {
        let console = lines(&format!(
            "[    1.0] kernel\nNETREF: init\n{}\nnote: a warning of fio\n{FIO}\n{} status=0\nafter",
            netref::FIO_BEGIN,
            netref::FIO_END
        ));
        let json = fio_json(&console).expect("json");
        assert_eq!(json, FIO);
        assert!(fio_json(&console[..3]).is_err(), "no end");
        assert!(fio_json(&console[3..]).is_err(), "no begin");
        let empty = lines(&format!(
            "{}\nfio: failed\n{} status=1",
            netref::FIO_BEGIN,
            netref::FIO_END
        ));
        assert!(fio_json(&empty).is_err());
        let cut = lines(&format!(
            "{}\n{{\n  \"jobs\" : [\n{} status=0",
            netref::FIO_BEGIN,
            netref::FIO_END
        ));
        assert!(fio_json(&cut).is_err(), "an object that does not close");
    }

    #[test]
    fn the_job_file_runs_every_workload_each_run_after_a_fill() {
        let job = fio_jobfile(Layer::Driver, 64, 3, 4, 2);
        assert!(
            job.contains("filename=${NETREF_DATA}\nsize=64m\ndirect=1\n"),
            "{job}"
        );
        assert!(job.contains("iodepth=4\n"));
        let names: Vec<&str> = job
            .lines()
            .filter_map(|l| l.strip_prefix('[')?.strip_suffix(']'))
            .collect();
        assert_eq!(
            names,
            [
                "global",
                "fill",
                "seqwrite.1",
                "seqread.1",
                "randwrite.1",
                "randread.1",
                "seqwrite.2",
                "seqread.2",
                "randwrite.2",
                "randread.2"
            ]
        );
        assert!(job.contains("[randwrite.2]\nstonewall\nrw=randwrite\nbs=4096\ntime_based=1\nruntime=3s\nend_fsync=1\n"));
        assert!(
            job.contains(
                "[seqread.1]\nstonewall\nrw=read\nbs=1048576\ntime_based=1\nruntime=3s\n\n"
            )
        );
        let fs = fio_jobfile(Layer::Fs, 64, 3, 1, 1);
        assert!(
            fs.contains("filename=/data/fio.dat\n") && fs.contains("direct=0\n"),
            "{fs}"
        );
    }

    #[test]
    fn probe_lines_are_parsed_and_problems_named() {
        assert_eq!(
            probe_args(Layer::Fs, 1 << 20, 5, 3, 1).join(" "),
            "bench layer=fs bytes=1048576 seconds=5 runs=3 qd=1"
        );
        let console = lines(
            "boot\n\
             bench seqwrite 1048576 1000000000\n\
             [app] bench randread 4096000 500000000\n\
             bench seqread 12 x\n\
             bench copy 1 1\n\
             bench seqread 0 5\n\
             bench\n\
             benchmark of nothing\n\
             bench done\n",
        );
        let (samples, problems) = parse_probe(&console);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].pattern, Pattern::SeqWrite);
        assert!((samples[1].iops() - 2000.0).abs() < 1e-9);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`bench seqread 12 x`"));
        let (_, problems) = parse_probe(&lines("bench seqwrite 1 1\nbench error no disk"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("no disk") && problems[1].contains("bench done"));
    }

    #[test]
    fn summaries_and_the_table() {
        let s = |pattern, mb: u64| Sample {
            pattern,
            bytes: mb * 1_000_000,
            ns: 1_000_000_000,
        };
        let linux = DiskTarget {
            kind: TargetKind::Linux,
            layer: Layer::Driver,
            workloads: summarize(&[
                s(Pattern::SeqRead, 100),
                s(Pattern::SeqRead, 300),
                s(Pattern::SeqRead, 200),
                s(Pattern::RandRead, 8),
            ]),
            notes: Vec::new(),
        };
        assert_eq!(linux.workloads.len(), 2);
        assert_eq!(linux.workloads[0].mb_per_s, 200.0);
        assert_eq!(linux.workloads[0].runs.len(), 3);
        let sd = DiskTarget {
            kind: TargetKind::Stardust,
            layer: Layer::Driver,
            workloads: summarize(&[s(Pattern::SeqRead, 100)]),
            notes: vec!["no `bench done` line".into()],
        };
        let report = DiskReport {
            size_mib: 64,
            seconds: 5,
            iodepth: 1,
            runs: 3,
            guest_memory: 256,
            machine: "q35+qboot".into(),
            accel: "tcg".into(),
            disk: "d".into(),
            targets: vec![linux, sd],
            skipped: vec!["x".into()],
        };
        let md = report.markdown();
        assert!(
            md.contains(
                "| Linux guest, TAP | driver (raw device, direct I/O) | — | 200.0 | — | 8.0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| Linux guest, TAP | driver (raw device, direct I/O) | — | 191 | — | 1953 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "Stardust / Linux, driver: seqwrite —, seqread 0.50×, randwrite —, randread —"
            ),
            "{md}"
        );
        assert!(
            md.contains("- Stardust, TAP, driver: no `bench done` line"),
            "{md}"
        );
        assert!(md.contains("- skipped: x"));
        assert!(!md.contains("\n\n\n"), "{md}");
        let none = DiskReport {
            targets: Vec::new(),
            ..report
        }
        .markdown();
        assert!(none.contains("No target was measured.\n") && !none.contains("| target"));
        assert!(none.contains("- skipped: x"), "{none}");
    }
}
