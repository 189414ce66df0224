//! The Xen lab: a real Xen 4.17 hypervisor with a Debian dom0, booted in QEMU (TCG,
//! `-cpu max,-smap`: see [`LAB_CPU`] for why),
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
//! and by the whole-image tests (`tests/tests/xen.rs`, as `xtask::xenlab`). Its modules: this
//! one (guests, batches, the serial protocol, reports), [`build`] (`xen-lab build`), and what
//! it shares with xtask because the lab boots QEMU too: [`child`] (child processes that never
//! outlive xtask: one registry for every QEMU), [`qemu_version`] (the QEMU versions known to
//! work) and [`skip`] (the `skipped:` lines of tests that cannot run here). The lab's files sit
//! beside `src/`: dom0's init and batch runner, the reference guests' sources.

pub mod build;
pub mod child;
pub mod qemu_version;
pub mod skip;

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::child::find_in_path;
use anyhow::bail;
use anyhow::{Context, Error, Result};

/// dom0's init (PID 1), installed into the root file system by `xen-lab build`.
pub const DOM0_INIT: &str = include_str!("../dom0-init");
/// The dom0 batch runner, written into every payload.
pub const DOM0_BATCH: &str = include_str!("../dom0-batch");
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
/// which PVH guests need) except SMAP.
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
pub const LAB_CPU: &str = "max,-smap";

/// Environment variable that replaces [`LAB_CPU`] (for trying a CPU model; not needed otherwise).
pub const LAB_CPU_ENV: &str = "STARDUST_XENLAB_CPU";

/// The `-cpu` the lab runs with: `$STARDUST_XENLAB_CPU`, else [`LAB_CPU`].
pub fn lab_cpu() -> String {
    std::env::var(LAB_CPU_ENV)
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| LAB_CPU.to_string())
}

/// The lab's kernel command line for Xen.
const XEN_CMDLINE: &str = "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M dom0_max_vcpus=1 loglvl=all guest_loglvl=all";

/// One of the reference guests `xen-lab build` assembles into the lab directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefGuest {
    /// PV: prints `pvhello: hello ...; cmdline=...` on the console ring, powers off (reason 0).
    /// The benchmark reference for Stardust on Xen PV.
    PvHello,
    /// PV: prints, then shuts down with reason 3 (crash).
    PvCrash,
    /// PV: prints, then yields forever (for timeouts).
    PvHang,
    /// PVH (32-bit): prints `pvhhello: hello ...; cmdline=...`, powers off.
    PvhHello,
}

impl RefGuest {
    /// Every reference guest.
    pub const ALL: [RefGuest; 4] = [
        RefGuest::PvHello,
        RefGuest::PvCrash,
        RefGuest::PvHang,
        RefGuest::PvhHello,
    ];

    /// `pvhello`, `pvcrash`, `pvhang`, `pvhhello`.
    pub fn name(self) -> &'static str {
        match self {
            RefGuest::PvHello => "pvhello",
            RefGuest::PvCrash => "pvcrash",
            RefGuest::PvHang => "pvhang",
            RefGuest::PvhHello => "pvhhello",
        }
    }

    /// The file name in the lab directory.
    pub fn file_name(self) -> String {
        format!("{}.elf", self.name())
    }

    /// By name.
    pub fn from_name(name: &str) -> Option<RefGuest> {
        RefGuest::ALL.into_iter().find(|g| g.name() == name)
    }

    /// PV or PVH.
    pub fn guest_type(self) -> GuestType {
        match self {
            RefGuest::PvhHello => GuestType::Pvh,
            _ => GuestType::Pv,
        }
    }

    /// How it ends.
    pub fn expect(self) -> Expect {
        match self {
            RefGuest::PvCrash => Expect::Crash,
            RefGuest::PvHang => Expect::Timeout,
            _ => Expect::Poweroff,
        }
    }
}

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
        let work = WorkDir::new(&self.dir)?;
        let payload = work.path.join("payload.img");
        write_payload(&work.path.join("p"), &payload, guests)?;
        let log_path = opts
            .log
            .clone()
            .unwrap_or_else(|| self.dir.join("last-batch.log"));
        let mut log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;

        let mut cmd = self.qemu_command(&payload);
        let versions = self.versions();
        let _ = writeln!(log, "XENLAB-HOST: {versions}; -cpu {}", lab_cpu());
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
                    parser.line(t, &line);
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
        let results: Vec<GuestResult> = guests
            .iter()
            .enumerate()
            .map(|(i, g)| parser.result(i, g))
            .collect();
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

    fn qemu_command(&self, payload: &Path) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        let d = |f: &str| self.dir.join(f).to_string_lossy().into_owned();
        cmd.args([
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-cpu",
            &lab_cpu(),
            "-m",
            "2048",
            "-smp",
            "1",
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
        .args(["-device", "virtio-blk-pci,drive=payload"])
        .arg("-kernel")
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

/// PV (paravirtualised, the original Stardust's mode) or PVH (hardware virtualization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuestType {
    /// `type = "pv"`.
    #[default]
    Pv,
    /// `type = "pvh"`.
    Pvh,
}

impl GuestType {
    /// `pv` or `pvh`, as in the `xl` config.
    pub fn name(self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
        }
    }
}

/// How a guest is expected to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// `SCHEDOP_shutdown` with reason poweroff (0).
    #[default]
    Poweroff,
    /// Reason crash (3): a panic or an exception, or Xen killing the domain.
    Crash,
    /// Still running when its time limit ran out.
    Timeout,
    /// Anything (the caller looks at the result itself).
    Any,
}

impl Expect {
    /// Does `s` meet the expectation?
    pub fn matches(self, s: Shutdown) -> bool {
        match self {
            Expect::Poweroff => s == Shutdown::Poweroff,
            Expect::Crash => s == Shutdown::Crash,
            Expect::Timeout => s == Shutdown::Timeout,
            Expect::Any => true,
        }
    }
}

/// One guest of a batch.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// A name for reports (free text).
    pub name: String,
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// PV or PVH.
    pub guest_type: GuestType,
    /// `memory =` in MiB (default 32).
    pub memory_mb: u32,
    /// `extra =`: the guest's command line (none by default; PVH then gets `cmdline_paddr` 0).
    pub cmdline: Option<String>,
    /// From `xl create` to shutdown; then the guest is destroyed and reported as a timeout.
    pub timeout: Duration,
    /// How it should end ([`GuestResult::passed`]).
    pub expect: Expect,
    /// Give it a vif on dom0's bridge `xenbr0` (dom0 is 10.0.0.1/24).
    pub vif: bool,
    /// Extra `xl` config lines, e.g. `vcpus = 2`.
    pub extra_cfg: Vec<String>,
}

impl GuestSpec {
    /// A PV guest with 32 MiB, no command line, the default timeout, expected to power off.
    pub fn new(name: impl Into<String>, kernel: PathBuf) -> GuestSpec {
        GuestSpec {
            name: name.into(),
            kernel,
            guest_type: GuestType::Pv,
            memory_mb: 32,
            cmdline: None,
            timeout: DEFAULT_GUEST_TIMEOUT,
            expect: Expect::Poweroff,
            vif: false,
            extra_cfg: Vec::new(),
        }
    }

    /// A reference guest with its own type and expectation.
    pub fn reference(lab: &Lab, guest: RefGuest) -> GuestSpec {
        GuestSpec::new(guest.name(), lab.reference(guest))
            .guest_type(guest.guest_type())
            .expect(guest.expect())
            .timeout(if guest == RefGuest::PvHang {
                Duration::from_secs(10)
            } else {
                DEFAULT_GUEST_TIMEOUT
            })
    }

    /// Sets the guest type.
    pub fn guest_type(mut self, t: GuestType) -> Self {
        self.guest_type = t;
        self
    }

    /// Sets `memory =` (MiB).
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// Sets the command line (`extra =`).
    pub fn cmdline(mut self, s: impl Into<String>) -> Self {
        self.cmdline = Some(s.into());
        self
    }

    /// Sets the time limit.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sets the expected end.
    pub fn expect(mut self, e: Expect) -> Self {
        self.expect = e;
        self
    }

    /// Gives the guest a vif on `xenbr0`.
    pub fn vif(mut self, on: bool) -> Self {
        self.vif = on;
        self
    }

    /// Adds an `xl` config line.
    pub fn cfg_line(mut self, line: impl Into<String>) -> Self {
        self.extra_cfg.push(line.into());
        self
    }

    fn validate(&self) -> Result<()> {
        if !self.kernel.is_file() {
            bail!(
                "guest {}: no such kernel {}",
                self.name,
                self.kernel.display()
            );
        }
        if self.memory_mb < 1 || self.memory_mb > 1024 {
            bail!(
                "guest {}: memory {} MiB: the lab has room for 1 to 1024 MiB",
                self.name,
                self.memory_mb
            );
        }
        if self.timeout < Duration::from_secs(1) || self.timeout > MAX_TIMEOUT {
            bail!(
                "guest {}: the time limit must be 1 to {} s",
                self.name,
                MAX_TIMEOUT.as_secs()
            );
        }
        if let Some(c) = &self.cmdline {
            if c.len() > 1023 {
                bail!("guest {}: the command line is over 1023 bytes", self.name);
            }
            if c.contains('\n') {
                bail!("guest {}: the command line has a newline", self.name);
            }
        }
        Ok(())
    }

    /// The `xl` config (guest number `n`, 1-based); `@GUESTDIR@` is the guest's payload dir.
    pub fn xl_config(&self, n: usize) -> String {
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut c = String::new();
        c.push_str(&format!("name = \"sd{n:02}\"\n"));
        c.push_str(&format!("type = \"{}\"\n", self.guest_type.name()));
        c.push_str("kernel = \"@GUESTDIR@kernel\"\n");
        c.push_str(&format!("memory = {}\n", self.memory_mb));
        c.push_str("vcpus = 1\n");
        c.push_str(
            "on_poweroff = \"preserve\"\non_reboot = \"preserve\"\non_crash = \"preserve\"\n",
        );
        if let Some(cmd) = &self.cmdline {
            c.push_str(&format!("extra = \"{}\"\n", quote(cmd)));
        }
        if self.vif {
            c.push_str(&format!(
                "vif = [ 'mac=00:16:3e:00:00:{:02x},bridge=xenbr0' ]\n",
                n + 1
            ));
        }
        for l in &self.extra_cfg {
            c.push_str(l);
            c.push('\n');
        }
        c
    }
}

fn write_payload(dir: &Path, image: &Path, guests: &[GuestSpec]) -> Result<()> {
    let guests_dir = dir.join("guests");
    std::fs::create_dir_all(&guests_dir).context("creating the payload directory")?;
    std::fs::write(dir.join("batch.sh"), DOM0_BATCH).context("writing batch.sh")?;
    let mut bytes: u64 = 0;
    for (i, g) in guests.iter().enumerate() {
        let n = i + 1;
        let gd = guests_dir.join(format!("{n:02}"));
        std::fs::create_dir_all(&gd).context("creating a guest directory")?;
        bytes += std::fs::copy(&g.kernel, gd.join("kernel"))
            .with_context(|| format!("copying {}", g.kernel.display()))?;
        std::fs::write(gd.join("guest.cfg"), g.xl_config(n)).context("writing guest.cfg")?;
        std::fs::write(
            gd.join("guest.env"),
            format!("TIMEOUT={}\n", g.timeout.as_secs().max(1)),
        )
        .context("writing guest.env")?;
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

/// How a guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Reason 0: `SCHEDOP_shutdown(SHUTDOWN_poweroff)` (and, on PVH, `cli; hlt`).
    Poweroff,
    /// Reason 1 (also a PVH triple fault).
    Reboot,
    /// Reason 2.
    Suspend,
    /// Reason 3: `SHUTDOWN_crash`, or Xen crashed the domain (an unhandled PV exception).
    Crash,
    /// Reason 4.
    Watchdog,
    /// Another reason code.
    Other(u32),
    /// Still running at its time limit (then destroyed).
    Timeout,
    /// No shutdown was seen (`xl create` failed, or the lab ended first).
    NotSeen,
}

impl Shutdown {
    /// From the batch runner's `REASON` word.
    pub fn parse(word: &str) -> Shutdown {
        match word {
            "timeout" => Shutdown::Timeout,
            "0" => Shutdown::Poweroff,
            "1" => Shutdown::Reboot,
            "2" => Shutdown::Suspend,
            "3" => Shutdown::Crash,
            "4" => Shutdown::Watchdog,
            w => w.parse().map_or(Shutdown::NotSeen, Shutdown::Other),
        }
    }
}

impl fmt::Display for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shutdown::Poweroff => f.write_str("poweroff (reason 0)"),
            Shutdown::Reboot => f.write_str("reboot (reason 1)"),
            Shutdown::Suspend => f.write_str("suspend (reason 2)"),
            Shutdown::Crash => f.write_str("crash (reason 3)"),
            Shutdown::Watchdog => f.write_str("watchdog (reason 4)"),
            Shutdown::Other(n) => write!(f, "reason {n}"),
            Shutdown::Timeout => f.write_str("timeout"),
            Shutdown::NotSeen => f.write_str("no shutdown seen"),
        }
    }
}

/// What one guest did.
#[derive(Debug, Clone)]
pub struct GuestResult {
    /// [`GuestSpec::name`].
    pub name: String,
    /// The kernel it ran.
    pub kernel: PathBuf,
    /// [`GuestSpec::expect`].
    pub expect: Expect,
    /// How it ended.
    pub shutdown: Shutdown,
    /// Its console output, line by line (from xenconsoled's log, timestamps removed).
    pub console: Vec<String>,
    /// Xen's own console lines while it ran (`(XEN) ...` crash dumps, `(dN) ...` PVH port 0xe9).
    pub xen_lines: Vec<String>,
    /// What `xl create -F` printed (errors when the domain could not be built).
    pub xl_output: Vec<String>,
    /// Its domain id.
    pub domid: Option<u32>,
    /// `xl create` → the domain exists (dom0 polls every 50 ms).
    pub to_domid: Option<Duration>,
    /// `xl create` → its console log is no longer empty (dom0 polls every 50 ms).
    pub to_first_line: Option<Duration>,
    /// `xl create` → shutdown seen (or the time limit).
    pub to_shutdown: Option<Duration>,
}

impl GuestResult {
    /// Did it end as expected?
    pub fn passed(&self) -> bool {
        self.expect.matches(self.shutdown)
    }

    /// The console as one string (lines joined by `\n`).
    pub fn console_text(&self) -> String {
        self.console.join("\n")
    }

    /// One line: name, shutdown, verdict, timings.
    pub fn summary(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or_else(|| "-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        format!(
            "{}: {}{} (xl create -> domain {}, first line {}, shutdown {})",
            self.name,
            self.shutdown,
            if self.passed() {
                String::new()
            } else {
                format!(", expected {:?}: FAILED", self.expect)
            },
            ms(self.to_domid),
            ms(self.to_first_line),
            ms(self.to_shutdown)
        )
    }
}

/// What a batch did.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// One result per guest, in order.
    pub guests: Vec<GuestResult>,
    /// QEMU start → dom0 ready.
    pub dom0_ready: Option<Duration>,
    /// QEMU start → QEMU exit.
    pub total: Duration,
    /// The full, timestamped serial log.
    pub log: PathBuf,
    /// The lab went wrong after dom0 was ready (QEMU killed or died early); the guests it did
    /// not reach are [`Shutdown::NotSeen`].
    pub lab_error: Option<String>,
    /// The Debian version of Xen.
    pub xen_version: Option<String>,
    /// The signal that killed the lab's QEMU, when one did that xtask did not send.
    pub qemu_signal: Option<i32>,
}

impl BatchReport {
    /// Every guest passed and the lab ended normally.
    pub fn all_passed(&self) -> bool {
        self.lab_error.is_none() && self.guests.iter().all(GuestResult::passed)
    }
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
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            dom0_timeout: DEFAULT_DOM0_TIMEOUT,
            log: None,
            echo: false,
        }
    }
}

/// The dom0 markers of one guest, as they arrive.
#[derive(Debug, Default, Clone)]
struct RawGuest {
    create: Option<f64>,
    domid_at: Option<f64>,
    domid: Option<u32>,
    done: Option<f64>,
    reason: Option<String>,
    console: Vec<String>,
    first: Option<f64>,
    xen: Vec<String>,
    xl: Vec<String>,
    ended: bool,
}

/// Parses the lab's serial output (see `xtask/xenlab/dom0-batch` for the markers).
#[derive(Debug)]
pub struct SerialParser {
    guests: Vec<RawGuest>,
    current: Option<usize>,
    /// QEMU start → `XENLAB: DOM0-READY`.
    pub dom0_ready: Option<Duration>,
    /// The batch's status from `XENLAB: END rc=N`.
    pub end_rc: Option<i32>,
}

impl SerialParser {
    /// A parser for `n` guests.
    pub fn new(n: usize) -> SerialParser {
        SerialParser {
            guests: vec![RawGuest::default(); n],
            current: None,
            dom0_ready: None,
            end_rc: None,
        }
    }

    /// How many guests have ended.
    pub fn finished(&self) -> usize {
        self.guests.iter().filter(|g| g.ended).count()
    }

    fn guest(&mut self, num: &str) -> Option<&mut RawGuest> {
        let n: usize = num.parse().ok()?;
        self.guests.get_mut(n.checked_sub(1)?)
    }

    /// Feeds one line that arrived `t` after QEMU started.
    pub fn line(&mut self, t: Duration, line: &str) {
        if let Some(rest) = line.strip_prefix("XENLAB-C ") {
            let (num, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some(g) = self.guest(num) {
                g.console.push(text.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("XENLAB-X ") {
            let (num, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some(g) = self.guest(num) {
                g.xl.push(text.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("XENLAB-GUEST ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let num = words.first().copied().unwrap_or("");
            let idx = num.parse::<usize>().ok().and_then(|n| n.checked_sub(1));
            let Some(g) = self.guest(num) else { return };
            let f = |w: Option<&&str>| w.and_then(|s| s.parse::<f64>().ok());
            match words.get(1).copied() {
                Some("T") => match words.get(2).copied() {
                    Some("create") => g.create = f(words.get(3)),
                    Some("domid") => {
                        g.domid_at = f(words.get(3));
                        g.domid = words.get(4).and_then(|s| s.parse().ok());
                    }
                    Some("first") => g.first = f(words.get(3)),
                    Some("done") => g.done = f(words.get(3)),
                    _ => {}
                },
                Some("REASON") => g.reason = words.get(2).map(|s| s.to_string()),
                Some("END") => {
                    g.ended = true;
                    self.current = None;
                }
                Some("BEGIN") => self.current = idx,
                _ => {}
            }
        } else if let Some(rest) = line.strip_prefix("XENLAB: ") {
            if rest.starts_with("DOM0-READY") {
                self.dom0_ready = Some(t);
            } else if let Some(rc) = rest.strip_prefix("END rc=") {
                self.end_rc = rc.split_whitespace().next().and_then(|s| s.parse().ok());
            }
        } else if (line.starts_with("(XEN)") || is_guest_debug_line(line))
            && !is_builder_noise(line)
            && let Some(i) = self.current
            && let Some(g) = self.guests.get_mut(i)
        {
            g.xen.push(line.to_string());
        }
    }

    /// The result of guest `i` (0-based) so far.
    pub fn result(&self, i: usize, spec: &GuestSpec) -> GuestResult {
        let raw = self.guests.get(i).cloned().unwrap_or_default();
        let since = |t: Option<f64>| match (raw.create, t) {
            (Some(c), Some(t)) if t >= c => Some(Duration::from_secs_f64(t - c)),
            _ => None,
        };
        GuestResult {
            name: spec.name.clone(),
            kernel: spec.kernel.clone(),
            expect: spec.expect,
            shutdown: raw
                .reason
                .as_deref()
                .map_or(Shutdown::NotSeen, Shutdown::parse),
            console: raw.console,
            xen_lines: raw.xen,
            xl_output: raw.xl,
            domid: raw.domid,
            to_domid: since(raw.domid_at),
            to_first_line: since(raw.first),
            to_shutdown: since(raw.done),
        }
    }
}

/// The domain builder's `HVM d1v0 save: CPU` / `HVM1 restore: ...` lines (loglvl=all noise).
fn is_builder_noise(line: &str) -> bool {
    let rest = line.trim_start_matches("(XEN)").trim_start();
    rest.starts_with("HVM") && (rest.contains(" save: ") || rest.contains(" restore: "))
}

/// `(d12) text`: a PVH guest's port 0xe9 output on Xen's console.
fn is_guest_debug_line(line: &str) -> bool {
    line.strip_prefix("(d")
        .and_then(|r| r.split_once(')'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Prints a batch report the way `cargo xtask xen-lab run` shows it.
pub fn print_report(report: &BatchReport, out: &mut impl Write) -> std::io::Result<()> {
    for g in &report.guests {
        writeln!(out, "=== {} ({}) ===", g.name, g.kernel.display())?;
        for l in &g.console {
            writeln!(out, "{l}")?;
        }
        if !g.xen_lines.is_empty() {
            writeln!(out, "--- Xen console while it ran ---")?;
            for l in g.xen_lines.iter().take(80) {
                writeln!(out, "{l}")?;
            }
        }
        if g.shutdown == Shutdown::NotSeen && !g.xl_output.is_empty() {
            writeln!(out, "--- xl create ---")?;
            for l in &g.xl_output {
                writeln!(out, "{l}")?;
            }
        }
    }
    writeln!(out, "=== summary ===")?;
    let s =
        |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{:.1} s", d.as_secs_f64()));
    writeln!(
        out,
        "lab: Xen {}, dom0 ready {}, QEMU total {:.1} s, log {}",
        report.xen_version.as_deref().unwrap_or("?"),
        s(report.dom0_ready),
        report.total.as_secs_f64(),
        report.log.display()
    )?;
    for g in &report.guests {
        writeln!(out, "{}", g.summary())?;
    }
    if let Some(e) = &report.lab_error {
        writeln!(out, "lab failure: {e}")?;
    }
    let passed = report.guests.iter().filter(|g| g.passed()).count();
    writeln!(
        out,
        "xen-lab: {passed} passed, {} failed",
        report.guests.len() - passed
    )
}

/// A lab failure as an [`Error`].
pub fn lab_error(report: &BatchReport) -> Option<Error> {
    report
        .lab_error
        .as_ref()
        .map(|e| Error::msg(format!("Xen lab failure: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, expect: Expect) -> GuestSpec {
        GuestSpec::new(name, PathBuf::from("/k")).expect(expect)
    }

    #[test]
    fn parses_a_batch_transcript() {
        let transcript = "\
(XEN) Xen version 4.17.5
XENLAB: DOM0-READY uptime=20.1s
XENLAB-GUEST 01 BEGIN
XENLAB-GUEST 01 T create 1000.000
XENLAB-GUEST 01 T domid 1001.500 1
XENLAB-GUEST 01 T first 1002.100
XENLAB-GUEST 01 T done 1003.000
XENLAB-GUEST 01 REASON 0
XENLAB-C 01 pvhello: hello
XENLAB-C 01 second line
XENLAB-X 01 Parsing config from /tmp/sd01.cfg
XENLAB-GUEST 01 END
XENLAB-GUEST 02 BEGIN
XENLAB-GUEST 02 T create 1010.000
(XEN) d2v0 Unhandled: vec 6, #UD[ffffffff]
(XEN) HVM d2v0 save: CPU
(XEN) HVM2 restore: MTRR 0
(d2) port e9 text
XENLAB-GUEST 02 T done 1012.000
XENLAB-GUEST 02 REASON 3
XENLAB-GUEST 02 END
(XEN) after the batch
XENLAB-GUEST 03 BEGIN
XENLAB-GUEST 03 T create 1020.000
XENLAB-GUEST 03 T done 1030.000
XENLAB-GUEST 03 REASON timeout
XENLAB-GUEST 03 END
XENLAB-GUEST 07 REASON 0
XENLAB-GUEST x garbage
XENLAB-C
XENLAB: END rc=0 uptime=40s
";
        let mut p = SerialParser::new(4);
        for (i, l) in transcript.lines().enumerate() {
            p.line(Duration::from_secs(i as u64), l);
        }
        assert_eq!(p.dom0_ready, Some(Duration::from_secs(1)));
        assert_eq!(p.end_rc, Some(0));
        assert_eq!(p.finished(), 3);
        let a = p.result(0, &spec("a", Expect::Poweroff));
        assert_eq!(a.shutdown, Shutdown::Poweroff);
        assert!(a.passed());
        assert_eq!(a.console, vec!["pvhello: hello", "second line"]);
        assert_eq!(a.domid, Some(1));
        assert_eq!(a.to_domid, Some(Duration::from_millis(1500)));
        let first = a.to_first_line.expect("first line time");
        assert!((first.as_secs_f64() - 2.1).abs() < 1e-6);
        assert_eq!(a.to_shutdown, Some(Duration::from_secs(3)));
        assert_eq!(a.xl_output, vec!["Parsing config from /tmp/sd01.cfg"]);
        let b = p.result(1, &spec("b", Expect::Poweroff));
        assert_eq!(b.shutdown, Shutdown::Crash);
        assert!(!b.passed());
        assert!(b.summary().contains("FAILED"));
        assert_eq!(b.xen_lines.len(), 2);
        assert_eq!(b.to_first_line, None);
        let c = p.result(2, &spec("c", Expect::Timeout));
        assert_eq!(c.shutdown, Shutdown::Timeout);
        assert!(c.passed());
        let d = p.result(3, &spec("d", Expect::Poweroff));
        assert_eq!(d.shutdown, Shutdown::NotSeen);
        assert!(!d.passed());
        // out of range guest numbers are ignored, not a panic
        let e = p.result(9, &spec("e", Expect::Any));
        assert!(e.passed());
    }

    #[test]
    fn xl_config_quotes_the_command_line() {
        let g = GuestSpec::new("x", PathBuf::from("/k"))
            .guest_type(GuestType::Pvh)
            .memory_mb(8)
            .cmdline(r#"-- say "hi" \o/"#)
            .vif(true)
            .cfg_line("vcpus = 1");
        let c = g.xl_config(3);
        assert!(c.contains("name = \"sd03\"\n"));
        assert!(c.contains("type = \"pvh\"\n"));
        assert!(c.contains("memory = 8\n"));
        assert!(c.contains(r#"extra = "-- say \"hi\" \\o/""#));
        assert!(c.contains("mac=00:16:3e:00:00:04,bridge=xenbr0"));
    }

    #[test]
    fn shutdown_words() {
        assert_eq!(Shutdown::parse("0"), Shutdown::Poweroff);
        assert_eq!(Shutdown::parse("3"), Shutdown::Crash);
        assert_eq!(Shutdown::parse("5"), Shutdown::Other(5));
        assert_eq!(Shutdown::parse("timeout"), Shutdown::Timeout);
        assert_eq!(Shutdown::parse("none"), Shutdown::NotSeen);
        assert!(Expect::Any.matches(Shutdown::NotSeen));
        assert!(!Expect::Crash.matches(Shutdown::Poweroff));
    }

    #[test]
    fn unbuilt_lab_is_unavailable_with_a_reason() {
        let lab = Lab::new("/nonexistent/stardust-xenlab");
        let why = lab.availability().expect_err("no lab there");
        assert!(
            why.to_string().contains("xen-lab build") || why.to_string().contains("switched off")
        );
    }
}
