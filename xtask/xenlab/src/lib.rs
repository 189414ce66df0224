//! The Xen lab: a real Xen 4.17 hypervisor with a Debian dom0, booted in QEMU (TCG,
//! `-cpu max` without SMAP and XSAVE: see [`LAB_CPU`] for why),
//! that runs a batch of guest kernels with `xl create`, one after the other, in one lab boot.
//!
//! Booting the lab costs about 30 s of TCG; a guest then costs about 4 s. So tests collect
//! their guests into one [`GuestSpec`] list and call [`Lab::run_batch`] once:
//!
//! ```no_run
//! use std::time::Duration;
//! use xenlab::{Expect, GuestSpec, GuestType, Lab, RefGuest};
//!
//! let lab = Lab::from_env();
//! if let Err(why) = lab.availability() {
//!     println!("skipped: {why}");   // never silent
//!     return;
//! }
//! let guests = vec![
//!     GuestSpec::new("reference", lab.reference(RefGuest::PvHello)),
//!     GuestSpec::new("hello", "target/stardust/xen/hello.elf".into())
//!         .memory_mb(16)
//!         .cmdline("-- one two")
//!         .timeout(Duration::from_secs(30)),
//!     GuestSpec::new("panic", "target/stardust/xen/faults.elf".into())
//!         .cmdline("-- panic")
//!         .expect(Expect::Crash),
//!     GuestSpec::new("pvh", lab.reference(RefGuest::PvhHello)).guest_type(GuestType::Pvh),
//! ];
//! let report = lab.run_batch(&guests, &Default::default()).expect("the lab itself works");
//! for g in &report.guests {
//!     assert!(g.passed(), "{}", g.summary());
//!     println!("{}", g.console_text());
//! }
//! ```
//!
//! How: xtask writes every guest (kernel, `xl` config, timeout) and the dom0 batch runner
//! (`xtask/xenlab/dom0-batch`) into an ext4 payload image (`mke2fs -d`, no root needed), boots
//! Xen with dom0 on the lab's `rootfs.img` (read-only through `snapshot=on`, so several labs may
//! run at once) and the payload as a second disk. dom0's init (`xtask/xenlab/dom0-init`) starts
//! the toolstack and runs the batch; the batch prints markers with dom0 timestamps and every
//! guest's console on the serial line, which this module reads, logs and parses.
//!
//! The lab directory is `$STARDUST_XENLAB_DIR`, else `~/.cache/stardust-xenlab`;
//! `cargo xtask xen-lab build` makes it ([`build`]).
//!
//! This crate is the lab alone, used by xtask (`xen-lab`, `run --platform xen`, the Xen benches)
//! and by the whole-image tests (`tests/tests/xen.rs`, as `xtask::xenlab`). Its modules, each
//! item re-exported here:
//! - this one: [`Lab`] and [`Lab::run_batch`] (the payload image, QEMU, the run);
//! - `spec.rs`: the guests of a batch ([`GuestSpec`], [`GuestType`], [`Expect`], [`RefGuest`]);
//! - `serial.rs`: the serial protocol ([`SerialParser`]);
//! - `report.rs`: what a batch did ([`Shutdown`], [`GuestResult`], [`BatchReport`],
//!   [`print_report`]);
//! - [`build`]: `xen-lab build`;
//! - and what it shares with xtask because the lab boots QEMU too: [`child`] (child processes
//!   that never outlive xtask: one registry for every QEMU), [`qemu_version`] (the QEMU versions
//!   known to work) and [`skip`] (the `skipped:` lines of tests that cannot run here).
//!
//! The lab's files sit beside `src/`: dom0's init and batch runner, the reference guests'
//! sources.

pub mod build;
pub mod child;
pub mod qemu_version;
pub mod skip;

mod report;
mod serial;
mod spec;

pub use report::{
    BatchReport, DeviceState, GuestIo, GuestResult, LiveLine, Shutdown, VifWait, lab_error,
    print_report,
};
pub use serial::SerialParser;
pub use spec::{
    DEFAULT_VIF_WAIT, DISK_VDEV, DOM0_IP, Expect, FORWARD_HOST_IP, FORWARD_NIC_MAC, Forward,
    GUEST_IP, GUEST_MAC, GuestSpec, GuestType, MAX_DISKS, MAX_VCPUS, RefGuest, check_forwards,
};

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::child::find_in_path;
use anyhow::bail;
use anyhow::{Context, Result};

/// dom0's init (PID 1), installed into the root file system by `xen-lab build`.
pub const DOM0_INIT: &str = include_str!("../dom0-init");
/// The dom0 batch runner, written into every payload.
pub const DOM0_BATCH: &str = include_str!("../dom0-batch");
/// The dom0 scripts' readiness helper (`xenlab-wait ping|tcp PORT|console REGEX [SEC]`),
/// written into every payload as `bin/xenlab-wait`.
pub const DOM0_WAIT: &str = include_str!("../xenlab-wait");
/// The reference PV guest's source (GNU as).
pub const PV_SOURCE: &str = include_str!("../pvhello.S");
/// Its link script.
pub const PV_LINK: &str = include_str!("../pv.ld");
/// The reference PVH guest's source (GNU as, 32-bit).
pub const PVH_SOURCE: &str = include_str!("../pvhhello.S");
/// Its link script.
pub const PVH_LINK: &str = include_str!("../pvh.ld");
/// The longest time limit any option takes (`--timeout` of `run`, `bench` and `xen-lab run`):
/// a week, far beyond any boot, and far from where durations overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Bumped when the lab's files change in a way that needs `xen-lab build` again.
pub const LAB_FORMAT: u32 = 1;
/// `lab.stamp`'s text for a lab of Xen `xen_version`: [`LAB_FORMAT`] and the dom0 packages
/// ([`build::DOM0_PACKAGES`]), so that a change of either makes an existing lab not ready.
pub fn stamp_text(xen_version: &str) -> String {
    format!(
        "stardust xen lab\nformat = {LAB_FORMAT}\nxen = {xen_version}\npackages = {}\n",
        build::DOM0_PACKAGES
    )
}

/// Whether a `lab.stamp` records this xtask's dom0 packages (a stamp without them: a lab made
/// before they were recorded, without `redis-tools`).
pub fn same_packages(stamp: &str) -> bool {
    stamp
        .lines()
        .any(|l| l.strip_prefix("packages = ") == Some(build::DOM0_PACKAGES))
}

/// Environment variable naming the lab directory.
pub const LAB_DIR_ENV: &str = "STARDUST_XENLAB_DIR";
/// Set to `off` (or `0`) to skip every lab run, with that as the reason.
pub const LAB_SWITCH_ENV: &str = "STARDUST_XENLAB";
/// Set to `1` where the Xen lab must run (`.ci/run` sets it): the Xen tests then fail, instead of
/// skipping, when the lab is not built or cannot run, so Xen coverage cannot vanish while CI
/// stays green.
pub const LAB_REQUIRED_ENV: &str = "STARDUST_XENLAB_REQUIRED";

/// Whether [`LAB_REQUIRED_ENV`] says the lab must run.
pub fn required() -> bool {
    std::env::var(LAB_REQUIRED_ENV).is_ok_and(|v| v == "1" || v == "yes" || v == "true")
}

/// A test that needs the lab, where it cannot run for `why`: prints the `skipped: ` line
/// ([`crate::skip::report_skip`]), or fails the test when [`required`].
#[track_caller]
pub fn skip_test(why: &str) {
    if required() {
        panic!("the Xen lab is required here ({LAB_REQUIRED_ENV}=1) but cannot run: {why}");
    }
    crate::skip::report_skip(None, why);
}

/// Seconds from QEMU start until dom0 must say it is ready (measured: 22-39 s; slack for load).
pub const DEFAULT_DOM0_TIMEOUT: Duration = Duration::from_secs(240);
/// A guest's default time limit, from `xl create` to its shutdown.
pub const DEFAULT_GUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most guests one batch runs (two-digit guest numbers in the dom0 runner).
pub const MAX_GUESTS: usize = 99;

/// The CPU model the lab's QEMU emulates: everything TCG can do (`max`: SVM with nested paging,
/// which PVH guests need) except SMAP and XSAVE (with the AVX family, which needs XSAVE).
///
/// Why not SMAP: under QEMU 7.2's TCG (Debian bookworm's `qemu-system-x86`, 7.2.22), `-cpu max`
/// makes the PV dom0 crash as it starts, before any guest:
/// `(XEN) d0v0 Unhandled: vec 14, #PF[0001]` with `fault at ... create_bounce_frame`. Error code
/// 0001 is a supervisor read of a *present* page, and the page walk Xen prints shows that page
/// (the dom0 kernel's stack) mapped user-accessible (`...067` at every level): a 64-bit PV
/// kernel runs in ring 3, so its pages are user pages to the CPU, and Xen writes the bounce frame
/// onto that stack in supervisor mode. The only check that faults a present user page on a
/// supervisor read is SMAP, and it should not have (Xen opens the access with STAC). Measured on
/// 7.2.22: `max` and `EPYC` crash, `max,-smep` crashes, `max,-smap` boots dom0 and runs PV and
/// PVH guests; QEMU 10.0.2 boots dom0 with and without SMAP. So the lab turns SMAP off: Xen then
/// does not use it for itself, which changes nothing the lab tests (guests never see the host
/// CPU's SMAP: a PV guest's kernel runs in ring 3, a PVH guest gets its own CPUID policy).
///
/// Why not XSAVE: with it, dom0 fell sick whenever a Linux PV guest ran beside it (the reference
/// guest of `bench net --xen` and `bench kv --xen`): its user programs segfaulted at random
/// (`xenstore-read` in the lab's own poller, `redis-benchmark`, once an `exec` that found no
/// file), XenStore reads failed now and then, runs stalled, and the serial line went silent
/// after the last guest. Never with Stardust guests alone, which use no FPU or SSE state. A
/// Linux guest does, so Xen saves and restores extended state (XSAVE/XSAVEOPT/XRSTOR, with XCR0
/// switched per vCPU) at every switch between it and dom0; our reading (not shown) is that this
/// emulation corrupts dom0's SSE registers now and then. Measured on 7.2.22 with `bench kv --xen`, 2026-12-08: sick
/// in 3 runs of 3 with `max,-smap`, with AVX off (`-avx,-avx2,-fma,-f16c,-vaes`) and with
/// FSGSBASE off; clean in 3 runs of 3 with XSAVE off (twice also without PKU and FSGSBASE), every
/// figure in and the lab ending on its own. Without XSAVE, Xen switches that state with
/// FXSAVE/FXRSTOR. The Linux guest is slower for it (its pipelined redis-benchmark figures
/// about a third lower than in the one full run under `max,-smap`), Stardust's are unchanged:
/// compare figures from the same CPU model only.
pub const LAB_CPU: &str = "max,-smap,-xsave,-avx,-avx2,-fma,-f16c,-vaes";

/// Environment variable that replaces [`LAB_CPU`] (for trying a CPU model; not needed otherwise).
pub const LAB_CPU_ENV: &str = "STARDUST_XENLAB_CPU";

/// The `-cpu` the lab runs with: `$STARDUST_XENLAB_CPU`, else [`LAB_CPU`].
pub fn lab_cpu() -> String {
    std::env::var(LAB_CPU_ENV)
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| LAB_CPU.to_string())
}

/// The lab's kernel command line for Xen. dom0 gets 1 GiB of the lab's 2 (it runs wrk or
/// redis-benchmark, and netback and blkback for the guests): headroom, first given while dom0
/// fell sick under the benches' Linux PV reference guest, which turned out to be the lab CPU's
/// XSAVE (see [`LAB_CPU`]), not memory. Guests have the rest (up to [`MAX_GUEST_MIB`]).
const XEN_CMDLINE: &str = "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1 loglvl=all guest_loglvl=all";

/// The most memory a lab guest may have: what is left of the lab's 2 GiB after dom0's 1 GiB
/// and Xen's own.
pub const MAX_GUEST_MIB: u32 = 896;

/// The lab directory and what is in it.
#[derive(Debug, Clone)]
pub struct Lab {
    /// The lab directory.
    pub dir: PathBuf,
}

/// Why the lab cannot run here; its `Display` is the reason (print it as `skipped: {reason}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

impl Lab {
    /// The lab in `$STARDUST_XENLAB_DIR`, else `~/.cache/stardust-xenlab`.
    pub fn from_env() -> Lab {
        let dir = match std::env::var_os(LAB_DIR_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let home =
                    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
                home.join(".cache").join("stardust-xenlab")
            }
        };
        Lab { dir }
    }

    /// The lab in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Lab {
        Lab { dir: dir.into() }
    }

    /// `lab.stamp`: written last by `xen-lab build`.
    pub fn stamp(&self) -> PathBuf {
        self.dir.join("lab.stamp")
    }

    /// The path of a reference guest.
    pub fn reference(&self, guest: RefGuest) -> PathBuf {
        self.dir.join(guest.file_name())
    }

    /// The Xen version the lab was built with (from `xen.version`), if known.
    pub fn xen_version(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("xen.version"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The dom0 kernel's release and Debian package version (`6.1.0-50-amd64 (6.1.158-1)`), from
    /// the lab's root file system.
    pub fn dom0_kernel_version(&self) -> Option<String> {
        let rootfs = self.dir.join("rootfs");
        let mut releases: Vec<String> = std::fs::read_dir(rootfs.join("lib/modules"))
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        releases.sort();
        let release = releases.pop()?;
        let status =
            std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap_or_default();
        let package = format!("Package: linux-image-{release}");
        let version = status
            .split("\n\n")
            .find(|stanza| stanza.lines().any(|l| l == package))
            .and_then(|stanza| stanza.lines().find_map(|l| l.strip_prefix("Version: ")));
        Some(match version {
            Some(v) => format!("{release} ({v})"),
            None => release,
        })
    }

    /// What the lab is made of: QEMU, Xen and the dom0 kernel, one line.
    pub fn versions(&self) -> String {
        let unknown = || "?".to_string();
        format!(
            "QEMU {}, Xen {}, dom0 Linux {}",
            crate::qemu_version::installed().map_or_else(
                || "not installed".into(),
                |v| v
                    .text
                    .trim_start_matches("QEMU emulator version ")
                    .to_string()
            ),
            self.xen_version().unwrap_or_else(unknown),
            self.dom0_kernel_version().unwrap_or_else(unknown),
        )
    }

    /// `Ok` when [`Lab::run_batch`] can run here; else the reason (the lab is not built, QEMU
    /// or mke2fs is missing, `STARDUST_XENLAB=off`, ...).
    pub fn availability(&self) -> std::result::Result<(), Unavailable> {
        let no = |s: String| Err(Unavailable(s));
        if let Ok(v) = std::env::var(LAB_SWITCH_ENV)
            && (v == "off" || v == "0")
        {
            return no(format!(
                "the Xen lab is switched off ({LAB_SWITCH_ENV}={v})"
            ));
        }
        if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            return no("the Xen lab needs an x86-64 Linux host".into());
        }
        let stamp = std::fs::read_to_string(self.stamp()).unwrap_or_default();
        if stamp.is_empty() {
            return no(format!(
                "the Xen lab is not built in {} (build it with `cargo xtask xen-lab build`: root and debootstrap, \
                 about 2 minutes and 1.4 GB; `{LAB_DIR_ENV}` chooses the directory)",
                self.dir.display()
            ));
        }
        let format = stamp
            .lines()
            .find_map(|l| l.strip_prefix("format = "))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if format != Some(LAB_FORMAT) {
            return no(format!(
                "the Xen lab in {} was built by another version of xtask (format {:?}, want {LAB_FORMAT}); \
                 rebuild it with `cargo xtask xen-lab build`",
                self.dir.display(),
                format
            ));
        }
        if !same_packages(&stamp) {
            return no(format!(
                "the Xen lab in {} was built with other dom0 packages (this xtask's: {}); \
                 rebuild it with `cargo xtask xen-lab build`",
                self.dir.display(),
                build::DOM0_PACKAGES
            ));
        }
        for f in ["xen.elf", "dom0-vmlinuz", "dom0-initrd.img", "rootfs.img"] {
            if !self.dir.join(f).is_file() {
                return no(format!(
                    "the Xen lab in {} is incomplete ({f} is missing); rebuild it with `cargo xtask xen-lab build`",
                    self.dir.display()
                ));
            }
        }
        for (tool, package) in [
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("mke2fs", "e2fsprogs"),
        ] {
            if find_in_path(tool).is_none() {
                return no(format!(
                    "{tool} is not installed (apt-get install {package})"
                ));
            }
        }
        if let Some(v) = crate::qemu_version::installed()
            && let crate::qemu_version::Support::Unusable(why)
            | crate::qemu_version::Support::NoLab(why) = v.support()
        {
            return no(format!("the Xen lab cannot run with this QEMU: {why}"));
        }
        let s = self.dir.to_string_lossy();
        if s.contains(',') || s.contains(' ') {
            return no(format!(
                "the lab directory {s} contains a comma or a space, which QEMU's -initrd cannot take"
            ));
        }
        Ok(())
    }

    /// Runs `guests` one after the other in one lab boot and returns what each did.
    ///
    /// `Err` means the lab itself failed (unavailable, dom0 never ready, QEMU died); a guest
    /// that crashes or hangs is a [`GuestResult`] with that [`Shutdown`]. Guests run in order,
    /// each with its own time limit ([`GuestSpec::timeout`]).
    pub fn run_batch(&self, guests: &[GuestSpec], opts: &BatchOptions) -> Result<BatchReport> {
        if let Err(why) = self.availability() {
            bail!("the Xen lab cannot run: {why}");
        }
        if guests.is_empty() {
            bail!("a lab batch needs at least one guest");
        }
        if guests.len() > MAX_GUESTS {
            bail!(
                "a lab batch runs at most {MAX_GUESTS} guests, got {}",
                guests.len()
            );
        }
        for g in guests {
            g.validate()?;
        }
        let disks = guests.iter().filter(|g| g.disk.is_some()).count();
        if disks > MAX_DISKS {
            bail!("a lab batch has room for {MAX_DISKS} guests with a disk, got {disks}");
        }
        check_forwards(&opts.forwards)?;
        let work = WorkDir::new(&self.dir)?;
        let payload = work.path.join("payload.img");
        write_payload(&work.path.join("p"), &payload, guests, opts)?;
        // Each guest's disk: a copy in the run directory, dom0's virtio disk `xenlab-dNN`.
        let mut disk_copies = Vec::new();
        for (i, g) in guests.iter().enumerate() {
            if let Some(disk) = &g.disk {
                let copy = work.path.join(format!("disk-{:02}.img", i + 1));
                copy_sparse(disk, &copy)?;
                disk_copies.push((i, copy));
            }
        }
        let log_path = opts
            .log
            .clone()
            .unwrap_or_else(|| self.dir.join("last-batch.log"));
        let mut log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;

        let host_cpus = opts.host_cpus_for(guests);
        let mut cmd = self.qemu_command(&payload, &disk_copies, &opts.forwards, host_cpus);
        // A human monitor on a socket in the run directory: what the lab's CPU was doing when
        // it is killed for a stall goes into the log ([`monitor_dump`]).
        let monitor = work.path.join("monitor.sock");
        let monitor = (monitor.as_os_str().len() < 100).then_some(monitor);
        if let Some(m) = &monitor {
            cmd.arg("-monitor")
                .arg(format!("unix:{},server=on,wait=off", m.display()));
        }
        let versions = self.versions();
        let _ = writeln!(
            log,
            "XENLAB-HOST: {versions}; -cpu {}; -smp {host_cpus}",
            lab_cpu()
        );
        let untested = crate::qemu_version::installed().and_then(|v| match v.support() {
            crate::qemu_version::Support::Untested(why) => Some(why),
            _ => None,
        });
        if opts.echo {
            eprintln!("xen-lab: {versions}");
            if let Some(why) = &untested {
                eprintln!("xen-lab: warning: {why}");
            }
            eprintln!(
                "xen-lab: booting Xen + dom0 ({} guest{}), log {}",
                guests.len(),
                if guests.len() == 1 { "" } else { "s" },
                log_path.display()
            );
        }
        let start = Instant::now();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Killed with xtask (or by a signal that stops it): never a lab left running.
        let mut child = crate::child::spawn(&mut cmd, "the Xen lab's QEMU")
            .context("starting qemu-system-x86_64 for the Xen lab")?;
        let rx = spawn_line_readers(&mut child);
        let guest_budget: Duration = guests
            .iter()
            .map(|g| g.timeout + Duration::from_secs(20))
            .sum();
        let mut parser = SerialParser::new(guests.len());
        let mut killed: Option<String> = None;
        let mut ready_at: Option<Instant> = None;
        let mut last_line = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok((at, line)) => {
                    last_line = at;
                    let t = at.saturating_duration_since(start);
                    let _ = writeln!(log, "[{:8.3}] {line}", t.as_secs_f64());
                    let before = parser.finished();
                    if let Some(live) = parser.line(t, &line)
                        && let Some(sink) = &opts.live
                    {
                        (sink.0)(&live);
                    }
                    if ready_at.is_none() && parser.dom0_ready.is_some() {
                        ready_at = Some(at);
                        if opts.echo {
                            eprintln!("xen-lab: dom0 ready after {:.1} s", t.as_secs_f64());
                        }
                    }
                    if opts.echo && parser.finished() > before {
                        let i = parser.finished() - 1;
                        let r = parser.result(i, &guests[i]);
                        eprintln!("xen-lab: {}", r.summary());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if killed.is_none() {
                let why = match ready_at {
                    None if start.elapsed() > opts.dom0_timeout => Some(format!(
                        "dom0 was not ready after {} s",
                        opts.dom0_timeout.as_secs()
                    )),
                    Some(r) if r.elapsed() > guest_budget + Duration::from_secs(60) => {
                        Some(format!(
                            "the batch did not end within {} s of dom0 being ready",
                            (guest_budget + Duration::from_secs(60)).as_secs()
                        ))
                    }
                    // The serial line is silent while a guest runs (its console comes at its
                    // end), for at most its time limit: silence much longer than that is a
                    // stalled lab (seen once under QEMU 10.0.2 on a loaded host: dom0 stopped
                    // after a guest's `xl create`, and QEMU no longer took SIGTERM), which must
                    // not eat the whole batch's budget.
                    Some(_) if last_line.elapsed() > stall_limit(guests, parser.finished()) => {
                        Some(format!(
                            "the lab stalled: no serial output for {} s while guest {} ran",
                            last_line.elapsed().as_secs(),
                            guests
                                .get(parser.finished())
                                .map_or("(none)", |g| g.name.as_str())
                        ))
                    }
                    _ => None,
                };
                if let Some(why) = why {
                    if let Some(m) = &monitor {
                        for line in monitor_dump(m, &["info registers", "info cpus"]) {
                            let _ = writeln!(log, "XENLAB-HOST: monitor: {line}");
                        }
                    }
                    let _ = writeln!(log, "XENLAB-HOST: {why}; killing QEMU");
                    child.kill();
                    killed = Some(why);
                }
            }
        }
        let status = child.wait().context("waiting for QEMU")?.status;
        let total = start.elapsed();
        let _ = writeln!(
            log,
            "XENLAB-HOST: qemu exited ({status}) after {:.2} s",
            total.as_secs_f64()
        );
        let mut results: Vec<GuestResult> = guests
            .iter()
            .enumerate()
            .map(|(i, g)| parser.result(i, g))
            .collect();
        // What the guests wrote: out of the run directory before it goes.
        let mut disk_errors = Vec::new();
        for (i, copy) in &disk_copies {
            let Some(out) = guests[*i].disk_out_path() else {
                continue;
            };
            match move_file(copy, &out) {
                Ok(()) => results[*i].io.disk_out = Some(out),
                Err(e) => disk_errors.push(format!(
                    "guest {}: cannot write its disk to {}: {e:#}",
                    guests[*i].name,
                    out.display()
                )),
            }
        }
        let qemu_signal = match killed {
            None => std::os::unix::process::ExitStatusExt::signal(&status),
            Some(_) => None,
        };
        let lab_error = if let Some(why) = killed {
            Some(why)
        } else if parser.dom0_ready.is_none() {
            Some(format!("QEMU exited ({status}) before dom0 was ready"))
        } else if parser.end_rc.is_none() {
            Some(format!("QEMU exited ({status}) before the batch ended"))
        } else if !disk_errors.is_empty() {
            Some(disk_errors.join("; "))
        } else {
            None
        };
        let report = BatchReport {
            guests: results,
            dom0_ready: parser.dom0_ready,
            total,
            log: log_path,
            lab_error,
            xen_version: self.xen_version(),
            qemu_signal,
        };
        if let Some(e) = &report.lab_error
            && parser.dom0_ready.is_none()
        {
            bail!(
                "Xen lab failure: {e}; the serial log is {}{}",
                report.log.display(),
                tail_hint(&report.log)
            );
        }
        Ok(report)
    }

    /// The lab's QEMU: dom0's root and the payload, plus a disk per guest that has one
    /// (`serial=xenlab-dNN`) and, with forwarded ports, a NIC on user networking for
    /// 10.0.0.0/24 (slirp at [`FORWARD_HOST_IP`], MAC [`FORWARD_NIC_MAC`]) that dom0 puts on
    /// its bridge. `host_cpus` CPUs (Xen's physical CPUs; above 1, TCG with one host thread per
    /// CPU).
    pub fn qemu_command(
        &self,
        payload: &Path,
        disks: &[(usize, PathBuf)],
        forwards: &[Forward],
        host_cpus: u32,
    ) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        let d = |f: &str| self.dir.join(f).to_string_lossy().into_owned();
        let accel = if host_cpus > 1 {
            "tcg,thread=multi"
        } else {
            "tcg"
        };
        let smp = host_cpus.max(1).to_string();
        cmd.args([
            "-accel",
            accel,
            "-machine",
            "q35",
            "-cpu",
            &lab_cpu(),
            "-m",
            "2048",
            "-smp",
            &smp,
        ])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .args(["-nic", "none"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=root,snapshot=on",
            d("rootfs.img")
        ))
        .args(["-device", "virtio-blk-pci,drive=root"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=payload,readonly=on",
            payload.to_string_lossy().replace(',', ",,")
        ))
        .args(["-device", "virtio-blk-pci,drive=payload"]);
        for (i, file) in disks {
            let n = i + 1;
            cmd.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=gd{n:02}",
                    file.to_string_lossy().replace(',', ",,")
                ))
                .arg("-device")
                .arg(format!(
                    "virtio-blk-pci,drive=gd{n:02},serial={}",
                    disk_serial(*i)
                ));
        }
        if !forwards.is_empty() {
            let mut netdev = format!(
                "user,id=fwd,net=10.0.0.0/24,host={FORWARD_HOST_IP},dhcpstart=10.0.0.200,restrict=on"
            );
            for f in forwards {
                netdev.push(',');
                netdev.push_str(&f.hostfwd());
            }
            cmd.arg("-netdev").arg(netdev).arg("-device").arg(format!(
                "virtio-net-pci,netdev=fwd,mac={FORWARD_NIC_MAC},romfile="
            ));
        }
        cmd.arg("-kernel")
            .arg(d("xen.elf"))
            .arg("-append")
            .arg(XEN_CMDLINE)
            .arg("-initrd")
            .arg(format!(
                "{} root=/dev/vda rw console=hvc0 init=/{} panic=5 quiet,{}",
                d("dom0-vmlinuz"),
                crate::build::INIT_PATH,
                d("dom0-initrd.img")
            ));
        cmd
    }
}

/// How long the serial line may stay silent while guest `running` (an index into `guests`) runs:
/// its time limit, plus time for `xl destroy` and the console dump on a loaded host.
fn stall_limit(guests: &[GuestSpec], running: usize) -> Duration {
    let timeout = guests
        .get(running)
        .map_or(DEFAULT_GUEST_TIMEOUT, |g| g.timeout);
    timeout + Duration::from_secs(120)
}

/// Runs `commands` on the lab QEMU's human monitor at socket `path` and returns what they
/// printed, line by line (the monitor's echo of each command and its prompts left out); on
/// any failure, one line saying so. At most about two seconds a command.
fn monitor_dump(path: &Path, commands: &[&str]) -> Vec<String> {
    use std::os::unix::net::UnixStream;
    let run = || -> std::io::Result<Vec<String>> {
        let mut s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut out = Vec::new();
        let read_until_prompt = |s: &mut UnixStream| -> std::io::Result<String> {
            let mut got = Vec::new();
            let end = Instant::now() + Duration::from_secs(2);
            let mut buf = [0u8; 4096];
            while Instant::now() < end && !got.ends_with(b"(qemu) ") {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(String::from_utf8_lossy(&got).into_owned())
        };
        read_until_prompt(&mut s)?; // the banner
        for c in commands {
            s.write_all(format!("{c}\n").as_bytes())?;
            let text = read_until_prompt(&mut s)?;
            out.push(format!("({c})"));
            out.extend(monitor_output(&text));
        }
        Ok(out)
    };
    run().unwrap_or_else(|e| vec![format!("(no monitor: {e})")])
}

/// What one human-monitor command printed, from what the socket gave after it was sent: the
/// monitor echoes the command as it is typed (with terminal escapes) on the first line, then
/// prints the output and a new prompt.
fn monitor_output(text: &str) -> Vec<String> {
    let body = text.split_once('\n').map_or("", |(_, rest)| rest);
    body.trim_end_matches("(qemu) ")
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn tail_hint(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(12);
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last lines:\n{}", lines[from..].join("\n"))
    }
}

/// Reads QEMU's stdout and stderr line by line, with the time each line arrived.
fn spawn_line_readers(child: &mut crate::child::Child) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    fn pump(
        r: impl Read + Send + 'static,
        tx: mpsc::Sender<(Instant, String)>,
        prefix: &'static str,
    ) {
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let s = String::from_utf8_lossy(&buf);
                        let s = s.trim_end_matches(['\n', '\r']).replace('\r', "");
                        if tx.send((Instant::now(), format!("{prefix}{s}"))).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    if let Some(out) = child.take_stdout() {
        pump(out, tx.clone(), "");
    }
    if let Some(err) = child.take_stderr() {
        pump(err, tx, "QEMU: ");
    }
    rx
}

/// A temporary directory in the lab directory, removed on drop (or when a signal stops xtask).
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn new(lab: &Path) -> Result<WorkDir> {
        remove_stale_work_dirs(lab);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = lab.join(format!("run-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        crate::child::remove_if_stopped(&path);
        Ok(WorkDir { path })
    }
}

/// Removes the run directories (`run-<pid>-<nanos>`) of xtask processes that no longer exist:
/// what a SIGKILL left behind. Nothing when /proc cannot tell.
fn remove_stale_work_dirs(lab: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(lab) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        crate::child::forget_temp_dir(&self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The virtio serial of guest `i`'s (0-based) disk in the lab's QEMU, by which dom0 finds it
/// (`/sys/block/vd*/serial`).
pub fn disk_serial(i: usize) -> String {
    format!("xenlab-d{:02}", i + 1)
}

/// `cp --sparse=always` (a disk image stays as small as it is).
fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    let out = Command::new("cp")
        .arg("--sparse=always")
        .arg("--")
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .output()
        .context("running cp")?;
    if !out.status.success() {
        bail!(
            "copying {} to {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Moves `from` to `to`: a rename where it can, else a sparse copy (another file system).
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    copy_sparse(from, to)
}

/// The lines of a guest's `guest.env` for dom0's batch runner (guest `n`, 1-based).
pub fn guest_env(g: &GuestSpec, n: usize) -> String {
    let flag = |b: bool| if b { 1 } else { 0 };
    let mut env = format!(
        "TIMEOUT={}\nVIF={}\nVIF_WAIT={}\nSCRIPT={}\nKEEP={}\nLIVE={}\n",
        g.timeout.as_secs().max(1),
        flag(g.vif),
        g.vif_wait.as_secs().max(1),
        flag(g.dom0_script.is_some()),
        flag(g.keeps_running),
        flag(g.live_console),
    );
    if g.disk.is_some() {
        env.push_str(&format!("DISK={}\n", disk_serial(n - 1)));
    }
    env
}

fn write_payload(
    dir: &Path,
    image: &Path,
    guests: &[GuestSpec],
    opts: &BatchOptions,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let guests_dir = dir.join("guests");
    std::fs::create_dir_all(&guests_dir).context("creating the payload directory")?;
    std::fs::write(dir.join("batch.sh"), DOM0_BATCH).context("writing batch.sh")?;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).context("creating the payload's bin")?;
    let wait = bin.join("xenlab-wait");
    std::fs::write(&wait, DOM0_WAIT).context("writing xenlab-wait")?;
    std::fs::set_permissions(&wait, std::fs::Permissions::from_mode(0o755))
        .context("chmod xenlab-wait")?;
    let batch_env = if opts.forwards.is_empty() {
        String::new()
    } else {
        format!("FORWARD_MAC={FORWARD_NIC_MAC}\n")
    };
    std::fs::write(dir.join("batch.env"), batch_env).context("writing batch.env")?;
    let mut bytes: u64 = 0;
    for (i, g) in guests.iter().enumerate() {
        let n = i + 1;
        let gd = guests_dir.join(format!("{n:02}"));
        std::fs::create_dir_all(&gd).context("creating a guest directory")?;
        bytes += std::fs::copy(&g.kernel, gd.join("kernel"))
            .with_context(|| format!("copying {}", g.kernel.display()))?;
        if let Some(r) = &g.ramdisk {
            bytes += std::fs::copy(r, gd.join("ramdisk"))
                .with_context(|| format!("copying {}", r.display()))?;
        }
        std::fs::write(gd.join("guest.cfg"), g.xl_config(n)).context("writing guest.cfg")?;
        std::fs::write(gd.join("guest.env"), guest_env(g, n)).context("writing guest.env")?;
        if let Some(script) = &g.dom0_script {
            std::fs::write(gd.join("dom0-script"), script).context("writing dom0-script")?;
        }
    }
    let mib = bytes / (1 << 20) + 16;
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-d"])
        .arg(dir)
        .arg(image)
        .arg(format!("{mib}M"))
        .stdin(Stdio::null())
        .output()
        .context("running mke2fs for the payload image")?;
    if !out.status.success() {
        bail!(
            "mke2fs (payload image) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Options of [`Lab::run_batch`].
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// QEMU start → dom0 ready, at most.
    pub dom0_timeout: Duration,
    /// Where the serial log goes (default: `last-batch.log` in the lab directory).
    pub log: Option<PathBuf>,
    /// Print progress on stderr (dom0 ready, each guest's summary as it ends).
    pub echo: bool,
    /// Ports forwarded from the host's 127.0.0.1 to [`GUEST_IP`] on the lab's bridge, for the
    /// whole batch (QEMU user networking on the bridge; the guests run one at a time, so the
    /// one that runs gets the connections).
    pub forwards: Vec<Forward>,
    /// Called with each line a guest's console ([`GuestSpec::live_console`]) or dom0 script
    /// prints, as it arrives.
    pub live: Option<LiveSink>,
    /// The lab QEMU's CPUs (Xen's physical CPUs): 0 (the default) gives [`SMP_HOST_CPUS`] when
    /// a guest has more than one vCPU, else 1. Above 1, QEMU's TCG runs one host thread per CPU
    /// (`-accel tcg,thread=multi`). Dom0 keeps one vCPU (`dom0_max_vcpus=1`).
    pub host_cpus: u32,
}

/// The lab QEMU's CPUs when a guest of the batch has more than one vCPU (this machine has 2
/// cores: more would only add TCG threads that take turns).
pub const SMP_HOST_CPUS: u32 = 2;

impl BatchOptions {
    /// How many CPUs the lab QEMU gets for `guests` ([`BatchOptions::host_cpus`]).
    pub fn host_cpus_for(&self, guests: &[GuestSpec]) -> u32 {
        match self.host_cpus {
            0 if guests.iter().any(|g| g.vcpus > 1) => SMP_HOST_CPUS,
            0 => 1,
            n => n,
        }
    }
}

/// A callback for [`BatchOptions::live`].
#[derive(Clone)]
pub struct LiveSink(pub std::sync::Arc<dyn Fn(&LiveLine) + Send + Sync>);

impl LiveSink {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&LiveLine) + Send + Sync + 'static) -> LiveSink {
        LiveSink(std::sync::Arc::new(f))
    }
}

impl fmt::Debug for LiveSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveSink")
    }
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            dom0_timeout: DEFAULT_DOM0_TIMEOUT,
            log: None,
            echo: false,
            forwards: Vec::new(),
            live: None,
            host_cpus: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_output_drops_the_echo_and_the_prompt() {
        let text =
            "i\x1b[K\x1b[Din\x1b[Kinfo cpus\r\n* CPU #0: thread_id=7\r\n  CPU #1: x\r\n(qemu) ";
        assert_eq!(
            monitor_output(text),
            vec![
                "* CPU #0: thread_id=7".to_string(),
                "  CPU #1: x".to_string()
            ]
        );
        assert!(monitor_output("").is_empty());
        assert!(monitor_output("no newline at all").is_empty());
    }

    #[test]
    fn monitor_dump_says_when_there_is_no_monitor() {
        let got = monitor_dump(Path::new("/nonexistent/monitor.sock"), &["info cpus"]);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("(no monitor: "), "{got:?}");
    }

    #[test]
    fn unbuilt_lab_is_unavailable_with_a_reason() {
        let lab = Lab::new("/nonexistent/stardust-xenlab");
        let why = lab.availability().expect_err("no lab there");
        assert!(
            why.to_string().contains("xen-lab build") || why.to_string().contains("switched off")
        );
    }

    /// A lab made with other dom0 packages (or before they were recorded: no `redis-tools`)
    /// is not ready, so `xen-lab status` says so and `.ci/run` builds it again.
    #[test]
    fn a_lab_with_other_dom0_packages_is_not_ready() {
        let dir = std::env::temp_dir().join(format!("xenlab-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for f in ["xen.elf", "dom0-vmlinuz", "dom0-initrd.img", "rootfs.img"] {
            std::fs::write(dir.join(f), b"").expect("file");
        }
        let lab = Lab::new(&dir);
        let why = |stamp: &str| {
            std::fs::write(lab.stamp(), stamp).expect("stamp");
            lab.availability().err().map(|e| e.to_string())
        };
        let now = stamp_text("4.17");
        assert!(now.contains(&format!("format = {LAB_FORMAT}\n")), "{now}");
        assert!(same_packages(&now) && now.contains("redis-tools"), "{now}");
        let old = format!("stardust xen lab\nformat = {LAB_FORMAT}\nxen = 4.17\n");
        let other = now.replace(",redis-tools", "");
        for stamp in [old.as_str(), other.as_str()] {
            assert!(!same_packages(stamp), "{stamp}");
            // Where the lab cannot run at all (switched off, no QEMU), that is the reason.
            if let Some(w) = why(stamp) {
                assert!(
                    w.contains("other dom0 packages") || why(&now).is_some(),
                    "{w}"
                );
            }
        }
        if let Some(w) = why(&now) {
            assert!(!w.contains("dom0 packages"), "{w}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_lab_gets_two_cpus_when_a_guest_has_more_than_one_vcpu() {
        let one = GuestSpec::new("one", PathBuf::from("/k"));
        let two = GuestSpec::new("two", PathBuf::from("/k")).vcpus(2);
        let auto = BatchOptions::default();
        assert_eq!(auto.host_cpus_for(std::slice::from_ref(&one)), 1);
        assert_eq!(auto.host_cpus_for(&[one.clone(), two]), SMP_HOST_CPUS);
        let forced = BatchOptions {
            host_cpus: 2,
            ..BatchOptions::default()
        };
        assert_eq!(forced.host_cpus_for(&[one]), 2);
    }

    #[test]
    fn guest_env_and_qemu_carry_the_guests_io() {
        let k = PathBuf::from("/k");
        let plain = GuestSpec::new("p", k.clone());
        assert_eq!(
            guest_env(&plain, 1),
            "TIMEOUT=60\nVIF=0\nVIF_WAIT=30\nSCRIPT=0\nKEEP=0\nLIVE=0\n"
        );
        let server = GuestSpec::new("s", k)
            .vif(true)
            .vif_wait(Duration::from_secs(5))
            .timeout(Duration::from_secs(40))
            .dom0_script("true")
            .keeps_running(true)
            .live_console(true)
            .disk("/d.img");
        assert_eq!(
            guest_env(&server, 3),
            "TIMEOUT=40\nVIF=1\nVIF_WAIT=5\nSCRIPT=1\nKEEP=1\nLIVE=1\nDISK=xenlab-d03\n"
        );
        let lab = Lab::new("/lab");
        let args = |c: &Command| -> Vec<String> {
            c.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let none = args(&lab.qemu_command(Path::new("/p.img"), &[], &[], 1));
        assert!(!none.iter().any(|a| a.contains("netdev")), "{none:?}");
        let disks = [(2, PathBuf::from("/run/disk,03.img"))];
        let fwd = [Forward::tcp(8080, 80), Forward::tcp(2222, 22)];
        let a = args(&lab.qemu_command(Path::new("/p.img"), &disks, &fwd, 1));
        assert!(
            a.contains(&"file=/run/disk,,03.img,format=raw,if=none,id=gd03".to_string()),
            "{a:?}"
        );
        assert!(
            a.contains(&"virtio-blk-pci,drive=gd03,serial=xenlab-d03".to_string()),
            "{a:?}"
        );
        assert!(
            a.contains(
                &"user,id=fwd,net=10.0.0.0/24,host=10.0.0.254,dhcpstart=10.0.0.200,restrict=on,\
                  hostfwd=tcp:127.0.0.1:8080-10.0.0.2:80,hostfwd=tcp:127.0.0.1:2222-10.0.0.2:22"
                    .to_string()
            ),
            "{a:?}"
        );
        assert!(
            a.contains(&"virtio-net-pci,netdev=fwd,mac=52:54:00:5e:00:01,romfile=".to_string()),
            "{a:?}"
        );
        assert!(a.windows(2).any(|w| w == ["-smp", "1"]), "{a:?}");
        assert!(a.windows(2).any(|w| w == ["-accel", "tcg"]), "{a:?}");
        let two = args(&lab.qemu_command(Path::new("/p.img"), &[], &[], 2));
        assert!(two.windows(2).any(|w| w == ["-smp", "2"]), "{two:?}");
        assert!(
            two.windows(2).any(|w| w == ["-accel", "tcg,thread=multi"]),
            "{two:?}"
        );
        // The NIC's MAC is how dom0 finds it: lower case, as /sys/class/net/*/address is.
        assert_eq!(FORWARD_NIC_MAC, FORWARD_NIC_MAC.to_lowercase());
    }
}
