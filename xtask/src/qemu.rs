//! Booting images in QEMU: the command line, the exit status protocol, and a timeout.
//!
//! The guest reports its exit code through `isa-debug-exit` at port 0xf4: QEMU then exits with
//! `(code << 1) | 1`, which keeps 7 bits. A status of 128 or more the kernel prints as the
//! console's last line `exit status N` and writes 127 (QEMU exits with 255): [`decode_status`]
//! reads it back from there. QEMU status 0 means the guest stopped without reporting (triple
//! fault with `-no-reboot`, plain power-off). QEMU's own errors also exit with 1, so a status-1
//! exit with a QEMU error message on stderr is reported as a QEMU failure, not as guest code 0.
//! What `run` exits with for each [`Outcome`] is in [`crate::status`].

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::image::shell_quote;
use crate::profile::{Profile, qemu_memory_arg};
use crate::status;
use anyhow::bail;
use anyhow::{Error, Result};

/// Where qboot (a tiny firmware that skips SeaBIOS) is looked for.
pub const QBOOT_PATHS: &[&str] = &[
    "/usr/share/qemu/qboot.rom",
    "/usr/local/share/qemu/qboot.rom",
];

/// Default time limit of a boot.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub use xenlab::MAX_TIMEOUT;

/// The option `flag`'s value `text` (seconds, `2.5` or `1e3`) as a time limit: more than 0 and
/// at most [`MAX_TIMEOUT`], else a one-line error that quotes `text` and gives the bounds.
pub fn parse_timeout(flag: &str, text: &str) -> Result<Duration> {
    let max = MAX_TIMEOUT.as_secs();
    let secs: f64 = match text.trim().parse() {
        Ok(s) if f64::is_finite(s) && s > 0.0 => s,
        _ => bail!("{flag} {text}: expected a number of seconds, more than 0 and at most {max}"),
    };
    if secs > max as f64 {
        bail!("{flag} {text}: at most {max} seconds (7 days)");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The kernel command line limit (docs/CONTRACT.md); longer lines are the kernel's to reject.
pub const CMDLINE_LIMIT: usize = 1024;

/// The qboot firmware, if installed.
pub fn qboot_rom() -> Option<PathBuf> {
    QBOOT_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// Plain emulation: the default (the nested KVM on machines like ours is slower and breaks).
    #[default]
    Tcg,
    /// KVM, when `/dev/kvm` is usable.
    Kvm,
}

/// QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Machine {
    /// q35 with the qboot firmware (falls back to microvm when qboot.rom is missing).
    #[default]
    Q35,
    /// The minimal `microvm` machine.
    Microvm,
}

impl Accel {
    /// `tcg` or `kvm`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

impl Machine {
    /// `q35+qboot` or `microvm`.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35+qboot",
            Machine::Microvm => "microvm",
        }
    }
}

/// Which port the guest console is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// COM1 (16550): `-serial stdio`.
    Serial,
    /// Port 0xe9: `-debugcon stdio`.
    Debugcon,
}

impl Console {
    /// The console a profile's `console` slot selects.
    pub fn of(profile: &Profile) -> Console {
        match profile.slot("console") {
            Some(c) if c.contains("debugcon") => Console::Debugcon,
            _ => Console::Serial,
        }
    }
}

/// Whether KVM is known to be worth using, and why (or why not).
///
/// KVM is chosen only when `/dev/kvm` opens, the host is not itself a virtual machine (no
/// `hypervisor` flag in `/proc/cpuinfo`) and the KVM module is the hardware one (`kvm_intel` or
/// `kvm_amd`). Nested KVM, such as the `kvm_pvm` module on the machines this project is built
/// on, boots slower than TCG and fails on some instructions (see the README).
pub fn kvm_is_real(kvm_opens: bool, cpuinfo: &str, modules: &[String]) -> (bool, String) {
    if !kvm_opens {
        return (false, "/dev/kvm cannot be opened".into());
    }
    let nested = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    if nested {
        return (
            false,
            "this host is itself a virtual machine: nested KVM is slower than TCG".into(),
        );
    }
    match modules
        .iter()
        .find(|m| *m == "kvm_intel" || *m == "kvm_amd")
    {
        Some(m) => (true, format!("/dev/kvm opens and {m} is loaded")),
        None => (
            false,
            "no hardware KVM module (kvm_intel, kvm_amd) is loaded".into(),
        ),
    }
}

/// The accelerator `--accel auto` picks on this host, and why.
pub fn auto_accel() -> (Accel, String) {
    let opens = check_kvm().is_ok();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let modules: Vec<String> = std::fs::read_dir("/sys/module")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let (real, why) = kvm_is_real(opens, &cpuinfo, &modules);
    (if real { Accel::Kvm } else { Accel::Tcg }, why)
}

/// Fails unless `/dev/kvm` can be opened read-write.
pub fn check_kvm() -> Result<()> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => Ok(()),
        Err(e) => {
            bail!("KVM is not usable: cannot open /dev/kvm ({e}); use --accel tcg (the default)")
        }
    }
}

/// Everything that makes up one QEMU command line.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// Machine type asked for.
    pub machine: Machine,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Virtual CPUs (the profile's `cpus`): above 1, `-smp N`, and TCG runs one host thread
    /// per CPU (`-accel tcg,thread=multi`); 1 adds nothing (QEMU's default of one CPU).
    pub cpus: u32,
    /// Console port.
    pub console: Console,
    /// The (stripped) image.
    pub kernel: PathBuf,
    /// Kernel options (`log=debug bootchart`).
    pub kargs: String,
    /// App arguments (after `--` on the kernel command line).
    pub app_args: Vec<String>,
    /// Start halted with QEMU's GDB server on this port of 127.0.0.1 (`-gdb tcp:... -S`).
    pub gdb: Option<u16>,
    /// Attach `isa-debug-exit` (how the guest reports its status). Tests turn it off to check
    /// the guest's ACPI power-off.
    pub debug_exit: bool,
    /// Extra machine options, appended to `-machine NAME` after a comma (`acpi=off`).
    pub machine_opts: String,
    /// A virtio-net NIC on QEMU user networking ([`crate::net`]): given by [`QemuConfig::new`]
    /// to a profile with a NIC driver (`net_device` not `none`), forwards by `run --forward`.
    pub nic: Option<crate::net::Nic>,
    /// Extra QEMU arguments, appended last (`-device virtio-net-pci,netdev=n0`).
    pub extra_args: Vec<String>,
    /// A virtio-net NIC on a TAP device; QEMU then runs inside its network namespace
    /// (`--net tap`, [`crate::netns`]).
    pub tap: Option<crate::netns::TapNic>,
    /// A raw disk image as a virtio-blk device (`run --disk`).
    pub disk: Option<Disk>,
}

/// A raw disk image attached as the guest's virtio-blk disk (`run --disk FILE`): virtio-blk-pci
/// (modern only) on q35, virtio-blk-device on microvm (legacy virtio-mmio unless a NIC's
/// `virtio-mmio.force-legacy=false` makes every transport modern). QEMU's default cache mode,
/// `cache=writeback`: the guest's writes go to the host's page cache and a guest flush is an
/// fsync of the file, so data is durable once the guest's flush completed.
///
/// With [`Disk::log`] (`run --disk-log LOG`) the same device sits on QEMU's `blklogwrites`
/// block driver instead, which writes the image as ever and also records every write, write of
/// zeros, discard and flush, in order, in LOG (the format of Linux's dm-log-writes, read by
/// [`crate::disklog`]): `-blockdev driver=file` nodes for the image and the log, and a
/// `blklogwrites` node (`log-sector-size=512`) that the virtio-blk device takes as its drive.
/// The log is made new (emptied) by [`Disk::prepare_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file (raw).
    pub file: PathBuf,
    /// Attach it read-only (`-drive ...,readonly=on`: the device offers `VIRTIO_BLK_F_RO`).
    pub read_only: bool,
    /// Record the guest's writes in this file through `blklogwrites` (never with `read_only`).
    pub log: Option<PathBuf>,
}

impl Disk {
    /// `file`, read-write.
    pub fn new(file: impl Into<PathBuf>) -> Disk {
        Disk {
            file: file.into(),
            read_only: false,
            log: None,
        }
    }

    /// `file`, read-write, with its writes recorded in `log` (see [`Disk::log`]).
    pub fn logged(file: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Disk {
        Disk {
            log: Some(log.into()),
            ..Disk::new(file)
        }
    }

    /// Makes the write log new and empty (QEMU's `file` driver needs the file to exist; without
    /// `log-append`, `blklogwrites` starts a new log at the start of the file, so what an
    /// earlier run left must not stay behind it). Without a log it does nothing.
    pub fn prepare_log(&self) -> anyhow::Result<()> {
        if let Some(log) = &self.log {
            std::fs::File::create(log)
                .map_err(|e| anyhow::anyhow!("--disk-log {}: cannot create: {e}", log.display()))?;
        }
        Ok(())
    }

    /// Refuses a file that is not there or is a directory, saying so.
    pub fn check(&self) -> anyhow::Result<()> {
        let file = &self.file;
        match std::fs::metadata(file) {
            Ok(m) if m.is_dir() => {
                anyhow::bail!("--disk {}: a directory, not a disk image", file.display())
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "--disk {}: no such file (a raw image; make an empty one with e.g. \
                 `truncate -s 64M {}`)",
                file.display(),
                file.display()
            ),
            Err(e) => anyhow::bail!("--disk {}: {e}", file.display()),
        }
        if let Some(log) = &self.log {
            if self.read_only {
                anyhow::bail!("--disk-log records writes: it does not go with --disk-read-only");
            }
            if log.is_dir() {
                anyhow::bail!("--disk-log {}: a directory, not a file", log.display());
            }
            if std::fs::canonicalize(log).ok() == std::fs::canonicalize(file).ok() {
                anyhow::bail!(
                    "--disk-log {}: the disk image itself; the log is another file",
                    log.display()
                );
            }
        }
        Ok(())
    }

    /// QEMU's arguments for the disk on `machine`.
    pub fn qemu_args(&self, machine: Machine) -> Vec<String> {
        // QEMU's option syntax doubles a comma inside a value.
        let quote = |p: &Path| p.display().to_string().replace(',', ",,");
        let file = quote(&self.file);
        let ro = if self.read_only { ",readonly=on" } else { "" };
        let device = match machine {
            Machine::Q35 => "virtio-blk-pci,drive=disk0,disable-legacy=on,romfile=",
            Machine::Microvm => "virtio-blk-device,drive=disk0",
        };
        let mut args: Vec<String> = match &self.log {
            None => vec![
                "-drive".into(),
                format!("file={file},format=raw,if=none,id=disk0{ro}"),
            ],
            Some(log) => vec![
                "-blockdev".into(),
                format!("driver=file,filename={file},node-name=disk0-file"),
                "-blockdev".into(),
                format!("driver=file,filename={},node-name=disk0-log", quote(log)),
                "-blockdev".into(),
                "driver=blklogwrites,node-name=disk0,file=disk0-file,log=disk0-log,\
                 log-sector-size=512"
                    .into(),
            ],
        };
        args.extend(["-device".into(), device.into()]);
        args
    }
}

impl QemuConfig {
    /// A TCG, q35 configuration with the profile's memory and console.
    pub fn new(qemu: PathBuf, kernel: PathBuf, profile: &Profile) -> QemuConfig {
        QemuConfig {
            qemu,
            accel: Accel::Tcg,
            machine: Machine::Q35,
            memory: profile.settings.memory,
            cpus: u32::try_from(profile.settings.cpus).expect("cpus is checked: at most 8"),
            console: Console::of(profile),
            kernel,
            kargs: String::new(),
            app_args: Vec::new(),
            gdb: None,
            debug_exit: true,
            machine_opts: String::new(),
            nic: crate::net::has_driver(profile).then(crate::net::Nic::default),
            extra_args: Vec::new(),
            tap: None,
            disk: None,
        }
    }

    /// The kernel command line: `<kargs> -- <app args> --`, each argument encoded (just the
    /// kargs without app args; see [`crate::cmdline`]).
    pub fn append(&self) -> String {
        crate::cmdline::kernel_cmdline(&self.kargs, &self.app_args)
    }

    /// The machine actually used (q35 falls back to microvm without qboot).
    pub fn effective_machine(&self) -> Machine {
        match self.machine {
            Machine::Q35 if qboot_rom().is_none() => Machine::Microvm,
            m => m,
        }
    }

    /// QEMU's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        match (self.accel, self.cpus > 1) {
            // One host thread per virtual CPU, asked for rather than left to QEMU's default.
            (Accel::Tcg, true) => push(&["-accel", "tcg,thread=multi"]),
            (accel, _) => push(&["-accel", accel.name()]),
        }
        let with_opts = |name: &str| {
            if self.machine_opts.is_empty() {
                name.to_string()
            } else {
                format!("{name},{}", self.machine_opts)
            }
        };
        match (self.effective_machine(), qboot_rom()) {
            (Machine::Q35, Some(rom)) => push(&[
                "-machine",
                &with_opts("q35"),
                "-bios",
                &rom.display().to_string(),
            ]),
            // microvm loads its own qboot (bios-microvm.bin); with -nodefaults it still has COM1.
            _ => push(&["-machine", &with_opts("microvm")]),
        }
        push(&["-m", &qemu_memory_arg(self.memory)]);
        if self.cpus > 1 {
            push(&["-smp", &self.cpus.to_string()]);
        }
        push(&["-display", "none", "-no-reboot", "-nodefaults"]);
        if self.debug_exit {
            push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        }
        // A TAP NIC (`--net tap`) replaces the user-networking one a net profile gets.
        if let (Some(nic), None) = (&self.nic, &self.tap) {
            let nic = nic.qemu_args(self.effective_machine());
            push(&nic.iter().map(String::as_str).collect::<Vec<_>>());
        }
        if let Some(disk) = &self.disk {
            let disk = disk.qemu_args(self.effective_machine());
            push(&disk.iter().map(String::as_str).collect::<Vec<_>>());
        }
        push(&["-kernel", &self.kernel.display().to_string()]);
        let append = self.append();
        if !append.is_empty() {
            push(&["-append", &append]);
        }
        match self.console {
            Console::Serial => push(&["-serial", "stdio"]),
            Console::Debugcon => push(&["-debugcon", "stdio"]),
        }
        if let Some(port) = self.gdb {
            push(&["-gdb", &format!("tcp:127.0.0.1:{port}"), "-S"]);
        }
        a.extend(self.extra_args.iter().cloned());
        if let Some(tap) = &self.tap {
            a.extend(tap.qemu_args(self.effective_machine()));
        }
        a
    }

    /// The program and arguments before QEMU's own: `ip netns exec NS` with a TAP NIC.
    fn prefix(&self) -> Vec<String> {
        match &self.tap {
            Some(tap) => ["ip", "netns", "exec", &tap.netns]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            None => Vec::new(),
        }
    }

    /// The command that starts QEMU (inside the TAP NIC's namespace, if any).
    pub fn command(&self) -> Command {
        let mut words = self.prefix();
        words.push(self.qemu.display().to_string());
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]).args(self.args());
        cmd
    }

    /// The command as one shell line.
    pub fn shell_line(&self) -> String {
        self.prefix()
            .into_iter()
            .chain(std::iter::once(self.qemu.display().to_string()))
            .chain(self.args())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reported this exit code (0-255) through isa-debug-exit, or, for 128 and more,
    /// on the console's last line.
    Guest(i32),
    /// QEMU exited with status 0: triple fault or plain power-off, no status reported.
    NoStatus,
    /// QEMU exited with 255 (the guest's status is on the console), but the console does not
    /// end with `exit status N`.
    StatusNotOnConsole,
    /// QEMU itself failed (bad option, missing file, ...), with its exit status.
    QemuFailed(i32),
    /// QEMU was killed by a signal it did not get from us.
    Killed,
    /// QEMU ran longer than the time limit and was killed.
    TimedOut(Duration),
    /// A background guest ([`crate::guest::Guest`]) was still running when its owner stopped
    /// it (killed QEMU).
    Stopped,
}

impl Outcome {
    /// The exit status `cargo xtask run` should end with: the guest's own, or one of xtask's
    /// (README "Exit statuses", [`crate::status`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Guest(code) => (*code).clamp(0, 255) as u8,
            Outcome::NoStatus | Outcome::StatusNotOnConsole => status::NO_STATUS,
            Outcome::QemuFailed(_) => status::NEVER_RAN,
            Outcome::Killed | Outcome::Stopped => status::KILLED,
            Outcome::TimedOut(_) => status::TIMEOUT,
        }
    }

    /// A sentence for the user, naming the outcome and the status `run` exits with.
    pub fn message(&self) -> String {
        let code = self.exit_code();
        match self {
            Outcome::Guest(_) => match status::meaning(code) {
                Some(what) => format!("guest exited with status {code} ({what})"),
                None => format!("guest exited with status {code}"),
            },
            Outcome::NoStatus => format!(
                "guest stopped without reporting an exit status (triple fault or plain \
                 power-off); exit status {code}"
            ),
            Outcome::StatusNotOnConsole => format!(
                "guest reported a status of 128 or more (QEMU exit status {}), but the \
                 console does not end with its `{}N` line; exit status {code}",
                status::QEMU_STATUS_ON_CONSOLE,
                status::CONSOLE_LINE
            ),
            Outcome::QemuFailed(s) => format!(
                "QEMU failed (its exit status {s}; see its message above): the guest never \
                 ran; exit status {code}"
            ),
            Outcome::Killed => {
                format!("QEMU was killed by a signal; exit status {code}")
            }
            Outcome::Stopped => {
                format!("QEMU was still running and was stopped; exit status {code}")
            }
            Outcome::TimedOut(t) => format!(
                "timeout: QEMU did not exit within {} s and was killed (the guest hangs? raise \
                 --timeout); exit status {code}",
                t.as_secs_f64()
            ),
        }
    }
}

/// Decodes QEMU's exit status (`None` = killed by a signal) given what it printed on stderr
/// and the end of the guest's console (where a status of 128 or more is).
pub fn decode_status(code: Option<i32>, stderr: &str, console_tail: &str) -> Outcome {
    let qemu_error = stderr.lines().any(|l| {
        (l.starts_with("qemu-system-") || l.starts_with("qemu:")) && !l.contains("warning:")
    });
    match code {
        None => Outcome::Killed,
        Some(0) => Outcome::NoStatus,
        Some(1) if qemu_error => Outcome::QemuFailed(1),
        Some(status::QEMU_STATUS_ON_CONSOLE) => match status::from_console(console_tail) {
            Some(n) => Outcome::Guest(i32::from(n)),
            None => Outcome::StatusNotOnConsole,
        },
        Some(s) if s % 2 == 1 => Outcome::Guest(s >> 1),
        Some(s) => Outcome::QemuFailed(s),
    }
}

/// How much of the console's end [`boot`] keeps when it does not capture the console: enough
/// for the `exit status N` line.
const CONSOLE_TAIL: usize = 256;

/// The result of one boot.
#[derive(Debug, Clone)]
pub struct Boot {
    /// How it ended.
    pub outcome: Outcome,
    /// The guest console (when not captured: only its last bytes, where a status of 128 or
    /// more is).
    pub stdout: String,
    /// QEMU's stderr.
    pub stderr: String,
    /// Wall time from spawning QEMU to seeing it exit.
    pub elapsed: Duration,
    /// QEMU's CPU time (user + system) over the whole boot.
    pub cpu: Duration,
    /// When captured: the wall time (from spawning QEMU) at which each console line's `\n`
    /// arrived; entry `i` belongs to the `i`-th item of [`Boot::lines`].
    pub line_times: Vec<Duration>,
}

impl Boot {
    /// Console lines, `\r` removed.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines().map(|l| l.trim_end_matches('\r'))
    }
}

/// Boots `cfg`. With `capture`, the guest console is collected into [`Boot::stdout`]; otherwise
/// it is copied to our stdout as it comes (and its last bytes kept, for the status line). QEMU's stderr is always collected (and echoed unless
/// capturing). With a `timeout`, QEMU is killed when it runs longer. QEMU is started through
/// [`crate::child::spawn`]: in its own process group, and killed when xtask dies or is stopped by
/// a signal.
pub fn boot(cfg: &QemuConfig, capture: bool, timeout: Option<Duration>) -> Result<Boot> {
    if !cfg.kernel.is_file() {
        bail!("image {} does not exist", cfg.kernel.display());
    }
    if let Some(disk) = &cfg.disk {
        disk.prepare_log()?;
    }
    let mut cmd = cfg.command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = crate::child::spawn(&mut cmd, "QEMU")
        .map_err(|e| Error::msg(format!("could not start {}: {e}", cfg.qemu.display())))?;
    let stdout = child.take_stdout().map(|mut out| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let mut times = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if capture {
                    let at = start.elapsed();
                    times.extend(chunk[..n].iter().filter(|b| **b == b'\n').map(|_| at));
                } else {
                    let mut ours = std::io::stdout().lock();
                    let _ = ours.write_all(&chunk[..n]).and_then(|()| ours.flush());
                    let keep = buf.len().saturating_sub(CONSOLE_TAIL);
                    buf.drain(..keep);
                }
            }
            (String::from_utf8_lossy(&buf).into_owned(), times)
        })
    });
    let stderr = child.take_stderr().map(|err| {
        thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                if !capture {
                    eprintln!("{line}");
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        })
    });
    let (exit, timed_out, elapsed) = loop {
        if let Some(exit) = child
            .try_wait()
            .map_err(|e| Error::msg(format!("waiting for QEMU: {e}")))?
        {
            break (exit, None, start.elapsed());
        }
        if let Some(limit) = timeout
            && start.elapsed() > limit
        {
            child.kill();
            let exit = child
                .wait()
                .map_err(|e| Error::msg(format!("waiting for QEMU: {e}")))?;
            break (exit, Some(limit), start.elapsed());
        }
        thread::sleep(Duration::from_micros(500));
    };
    let (stdout, line_times) = stdout
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = stderr
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    let outcome = match timed_out {
        Some(limit) => Outcome::TimedOut(limit),
        None => decode_status(exit.status.code(), &stderr, &stdout),
    };
    Ok(Boot {
        outcome,
        stdout,
        stderr,
        elapsed,
        cpu: exit.cpu,
        line_times,
    })
}

/// The gdb command that attaches to a `--gdb` boot (GDB server on `port`) of an image with
/// symbols in `debug`.
pub fn gdb_command(debug: &Path, port: u16) -> String {
    format!(
        "gdb {} -ex 'target remote :{port}'",
        shell_quote(&crate::workspace::display_path(debug))
    )
}

/// A port of 127.0.0.1 that is free right now for TCP and UDP, for QEMU's GDB server and for
/// forwarded host ports.
///
/// It is taken below the kernel's ephemeral range (`ip_local_port_range`), never from it: a
/// port the kernel hands out for `bind(0)` is also the one it hands to the next outgoing
/// connection, so a client connecting anywhere on this machine could take it before QEMU binds
/// it (a parallel test suite did exactly that). Below the range only listeners compete; the
/// candidates start at a point drawn from the process id and a counter, so that parallel
/// processes walk different ports. Another listener may still take a port before QEMU binds
/// it: QEMU then fails and says so.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let (first, end) = listener_ports(
        &std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default(),
    );
    let span = u32::from(end - first);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut x = (std::process::id() ^ call.wrapping_mul(0x9e37_79b9)) | 1;
    for _ in 0..256 {
        // xorshift32: a spread of candidates that differs between processes.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = first + (x % span) as u16;
        if port_is_free(port) {
            return Ok(port);
        }
    }
    // Everything tried was taken (an unusual machine): let the kernel pick.
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::msg(format!("finding a free TCP port on 127.0.0.1: {e}")))
}

/// Whether `port` of 127.0.0.1 can be bound now, for TCP and for UDP.
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// The ports to pick listeners from, `first..end`, given `ip_local_port_range` ("LOW HIGH"):
/// up to 12,000 ports just below LOW, never below 1024. An unreadable or odd range means
/// Linux's default (32768 60999).
fn listener_ports(range: &str) -> (u16, u16) {
    let low = range
        .split_whitespace()
        .next()
        .and_then(|w| w.parse::<u16>().ok())
        .filter(|&low| low >= 2048)
        .unwrap_or(32768);
    (low.saturating_sub(12_000).max(1024), low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QemuConfig {
        QemuConfig {
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            machine: Machine::Microvm,
            memory: 32 << 20,
            cpus: 1,
            console: Console::Serial,
            kernel: "k.elf".into(),
            kargs: " log=debug  bootchart ".into(),
            app_args: vec!["one".into(), "two".into()],
            gdb: None,
            debug_exit: true,
            machine_opts: String::new(),
            nic: None,
            extra_args: Vec::new(),
            tap: None,
            disk: None,
        }
    }

    #[test]
    fn a_nic_follows_the_debug_exit_device() {
        let mut c = cfg();
        c.nic = Some(crate::net::Nic::with_forwards(vec![
            crate::net::Forward::tcp(8080, 80),
        ]));
        let args = c.args().join(" ");
        assert!(
            args.contains(
                "iosize=0x04 -netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80 \
                 -global virtio-mmio.force-legacy=false \
                 -device virtio-net-device,netdev=n0,mac=52:54:00:12:34:56 -kernel k.elf"
            ),
            "{args}"
        );
        c.machine = Machine::Q35;
        let args = c.args().join(" ");
        if qboot_rom().is_some() {
            assert!(
                args.contains(" -device virtio-net-pci,netdev=n0,"),
                "{args}"
            );
            assert!(!args.contains("virtio-mmio"), "{args}");
        }
    }

    #[test]
    fn a_disk_is_virtio_blk_on_either_machine_read_only_when_asked_and_commas_doubled() {
        let mut c = cfg();
        c.disk = Some(Disk::new("/tmp/a,b.img"));
        let args = c.args().join(" ");
        assert!(
            args.contains(
                "-drive file=/tmp/a,,b.img,format=raw,if=none,id=disk0 \
                 -device virtio-blk-device,drive=disk0 -kernel k.elf"
            ),
            "{args}"
        );
        let disk = Disk {
            read_only: true,
            ..Disk::new("d.img")
        };
        let args = disk.qemu_args(Machine::Q35).join(" ");
        assert_eq!(
            args,
            "-drive file=d.img,format=raw,if=none,id=disk0,readonly=on \
             -device virtio-blk-pci,drive=disk0,disable-legacy=on,romfile="
        );
    }

    #[test]
    fn a_logged_disk_is_the_same_device_on_blklogwrites() {
        let disk = Disk::logged("d,1.img", "w.log");
        for (machine, device) in [
            (
                Machine::Q35,
                "virtio-blk-pci,drive=disk0,disable-legacy=on,romfile=",
            ),
            (Machine::Microvm, "virtio-blk-device,drive=disk0"),
        ] {
            assert_eq!(
                disk.qemu_args(machine).join(" "),
                format!(
                    "-blockdev driver=file,filename=d,,1.img,node-name=disk0-file \
                     -blockdev driver=file,filename=w.log,node-name=disk0-log \
                     -blockdev driver=blklogwrites,node-name=disk0,file=disk0-file,\
                     log=disk0-log,log-sector-size=512 -device {device}"
                )
            );
        }
    }

    #[test]
    fn a_log_is_refused_read_only_as_a_directory_or_as_the_image_itself() {
        let dir = std::env::temp_dir().join(format!("xtask-disklog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("d.img");
        std::fs::write(&img, [0u8; 512]).unwrap();
        let ro = Disk {
            read_only: true,
            ..Disk::logged(&img, dir.join("w.log"))
        };
        assert!(
            ro.check()
                .unwrap_err()
                .to_string()
                .contains("--disk-read-only")
        );
        let e = Disk::logged(&img, &dir).check().unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let e = Disk::logged(&img, &img).check().unwrap_err();
        assert!(e.to_string().contains("the disk image itself"), "{e}");
        let ok = Disk::logged(&img, dir.join("w.log"));
        std::fs::write(dir.join("w.log"), b"old").unwrap();
        ok.check().unwrap();
        ok.prepare_log().unwrap();
        assert_eq!(std::fs::metadata(dir.join("w.log")).unwrap().len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_disk_file_or_a_directory_is_a_clear_error() {
        let e = Disk::new("/nonexistent/disk.img").check().unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        assert!(e.to_string().contains("truncate -s"), "{e}");
        let e = Disk::new(std::env::temp_dir()).check().unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[test]
    fn a_tap_nic_runs_qemu_in_its_namespace() {
        let mut c = cfg();
        c.tap = Some(crate::netns::TapNic {
            netns: "stardust-9-0".into(),
            ifname: "tap0".into(),
        });
        let line = c.shell_line();
        assert!(
            line.starts_with("ip netns exec stardust-9-0 qemu-system-x86_64 "),
            "{line}"
        );
        assert!(
            line.ends_with("-device virtio-net-device,netdev=n0,mac=52:54:00:12:34:56"),
            "{line}"
        );
        assert_eq!(c.command().get_program(), "ip");
    }

    #[test]
    fn kvm_only_when_real() {
        let hw = vec!["kvm".to_string(), "kvm_intel".to_string()];
        let pvm = vec!["kvm".to_string(), "kvm_pvm".to_string()];
        let bare = "processor\t: 0\nflags\t\t: fpu vme sse2 vmx\n";
        let guest = "processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n";
        assert!(kvm_is_real(true, bare, &hw).0);
        assert!(!kvm_is_real(false, bare, &hw).0);
        let (real, why) = kvm_is_real(true, guest, &hw);
        assert!(!real && why.contains("virtual machine"), "{why}");
        let (real, why) = kvm_is_real(true, bare, &pvm);
        assert!(!real && why.contains("kvm_intel"), "{why}");
    }

    #[test]
    fn command_line() {
        let c = cfg();
        assert_eq!(c.append(), "log=debug bootchart -- one two --");
        assert_eq!(
            c.args().join(" "),
            "-accel tcg -machine microvm -m 32M -display none -no-reboot -nodefaults \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel k.elf \
             -append log=debug bootchart -- one two -- -serial stdio"
        );
        let mut c = cfg();
        c.kargs.clear();
        c.app_args.clear();
        c.console = Console::Debugcon;
        c.gdb = Some(4321);
        c.accel = Accel::Kvm;
        let args = c.args().join(" ");
        assert!(!args.contains("-append"), "{args}");
        assert!(args.starts_with("-accel kvm "), "{args}");
        assert!(
            args.ends_with("-debugcon stdio -gdb tcp:127.0.0.1:4321 -S"),
            "{args}"
        );
        let mut c = cfg();
        c.kargs.clear();
        assert_eq!(c.append(), "-- one two --");
        assert!(c.shell_line().contains("-append '-- one two --'"));
        let mut c = cfg();
        c.debug_exit = false;
        c.machine_opts = "acpi=off".into();
        let args = c.args().join(" ");
        assert!(!args.contains("isa-debug-exit"), "{args}");
        assert!(args.contains("-machine microvm,acpi=off "), "{args}");
    }

    #[test]
    fn more_than_one_cpu_is_smp_and_multi_threaded_tcg() {
        let one = cfg().args().join(" ");
        assert!(!one.contains("-smp") && !one.contains("thread="), "{one}");
        let mut c = cfg();
        c.cpus = 4;
        assert_eq!(
            c.args().join(" "),
            "-accel tcg,thread=multi -machine microvm -m 32M -smp 4 -display none -no-reboot \
             -nodefaults -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel k.elf \
             -append log=debug bootchart -- one two -- -serial stdio"
        );
        assert!(
            c.shell_line().starts_with(
                "qemu-system-x86_64 -accel tcg,thread=multi -machine microvm -m 32M -smp 4 "
            ),
            "{}",
            c.shell_line()
        );
        c.accel = Accel::Kvm;
        c.cpus = 2;
        let args = c.args().join(" ");
        assert!(
            args.starts_with("-accel kvm -machine microvm -m 32M -smp 2 -display none "),
            "{args}"
        );
    }

    #[test]
    fn the_profile_gives_its_cpus() {
        let catalog = crate::profile::test_catalog(
            &[
                "platform-kvm",
                "allocator-talc",
                "scheduler-none",
                "scheduler-coop",
                "console-serial",
            ],
            "",
        );
        let text = "platform = \"kvm\"\n[slots]\nallocator = \"talc\"\nconsole = \"serial\"\n";
        let profile = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Profile::parse("default", text, &sets, &catalog).expect("valid")
        };
        let one = QemuConfig::new("q".into(), "k".into(), &profile(&[]));
        assert_eq!(one.cpus, 1);
        assert!(!one.args().contains(&"-smp".to_string()));
        let four = QemuConfig::new(
            "q".into(),
            "k".into(),
            &profile(&["scheduler=coop", "cpus=4"]),
        );
        assert_eq!(four.cpus, 4);
        let args = four.args().join(" ");
        assert!(
            args.starts_with("-accel tcg,thread=multi ") && args.contains(" -smp 4 "),
            "{args}"
        );
    }

    #[test]
    fn extra_args_come_last() {
        let mut c = cfg();
        c.extra_args = vec!["-device".into(), "virtio-net-device,netdev=n0".into()];
        let args = c.args();
        assert_eq!(args[args.len() - 2..], c.extra_args[..]);
    }

    #[test]
    fn q35_uses_qboot_when_present() {
        let mut c = cfg();
        c.machine = Machine::Q35;
        let args = c.args().join(" ");
        match qboot_rom() {
            Some(rom) => assert!(
                args.contains(&format!("-machine q35 -bios {}", rom.display())),
                "{args}"
            ),
            None => assert!(args.contains("-machine microvm"), "{args}"),
        }
    }

    #[test]
    fn exit_status_decoding() {
        assert_eq!(decode_status(Some(1), "", ""), Outcome::Guest(0));
        assert_eq!(decode_status(Some(203), "", ""), Outcome::Guest(101));
        assert_eq!(decode_status(Some(205), "", ""), Outcome::Guest(102));
        assert_eq!(decode_status(Some(207), "", ""), Outcome::Guest(103));
        assert_eq!(decode_status(Some(253), "", ""), Outcome::Guest(126));
        assert_eq!(decode_status(Some(0), "", ""), Outcome::NoStatus);
        assert_eq!(decode_status(None, "", ""), Outcome::Killed);
        assert_eq!(decode_status(Some(2), "", ""), Outcome::QemuFailed(2));
        let err = "qemu: could not open kernel file 'x': No such file or directory\n";
        assert_eq!(decode_status(Some(1), err, ""), Outcome::QemuFailed(1));
        let err = "qemu-system-x86_64: -bogus: invalid option\n";
        assert_eq!(decode_status(Some(1), err, ""), Outcome::QemuFailed(1));
        let warn = "qemu-system-x86_64: warning: host doesn't support requested feature\n";
        assert_eq!(decode_status(Some(1), warn, ""), Outcome::Guest(0));
    }

    #[test]
    fn statuses_of_128_and_more_come_from_the_console() {
        // The guest writes 127 to isa-debug-exit: QEMU exits with 255.
        let on_console = |tail| decode_status(Some(255), "", tail);
        assert_eq!(
            on_console("faults: exit\nexit status 128\n"),
            Outcome::Guest(128)
        );
        assert_eq!(on_console("exit status 200\r\n"), Outcome::Guest(200));
        assert_eq!(on_console("exit status 255\n"), Outcome::Guest(255));
        assert_eq!(on_console("faults: exit\n"), Outcome::StatusNotOnConsole);
        assert_eq!(
            on_console("exit status 200\nmore\n"),
            Outcome::StatusNotOnConsole
        );
        // A status line that is not the last one, or a status that fits 7 bits, is not taken.
        assert_eq!(on_console("exit status 7\n"), Outcome::StatusNotOnConsole);
        // Other QEMU statuses ignore the console.
        assert_eq!(
            decode_status(Some(1), "", "exit status 200\n"),
            Outcome::Guest(0)
        );
        assert_eq!(Outcome::StatusNotOnConsole.exit_code(), 127);
    }

    #[test]
    fn each_outcome_has_its_own_status_and_names_it() {
        let t = Duration::from_secs(5);
        let cases = [
            (Outcome::Guest(0), 0, "status 0"),
            (Outcome::Guest(1), 1, "status 1"),
            (Outcome::Guest(200), 200, "status 200"),
            (Outcome::Guest(101), 101, "(kernel panic)"),
            (
                Outcome::Guest(103),
                103,
                "(kernel configuration or boot error)",
            ),
            (Outcome::TimedOut(t), 124, "timeout"),
            (Outcome::QemuFailed(1), 125, "never ran"),
            (Outcome::Killed, 126, "killed by a signal"),
            (Outcome::NoStatus, 127, "triple fault or plain power-off"),
        ];
        for (outcome, code, words) in cases {
            assert_eq!(outcome.exit_code(), code, "{outcome:?}");
            let message = outcome.message();
            assert!(message.contains(words), "{outcome:?}: {message}");
            if status::OUTCOMES.contains(&code) {
                assert!(
                    message.ends_with(&format!("exit status {code}")),
                    "{outcome:?}: {message}"
                );
            }
        }
    }

    #[test]
    fn timeouts_are_bounded() {
        let t = |s: &str| parse_timeout("--timeout", s);
        assert_eq!(t("1.5").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(t("604800").ok(), Some(MAX_TIMEOUT));
        for bad in [
            "0",
            "-1",
            "nan",
            "inf",
            "604800.5",
            "1e300",
            "99999999999999999999",
            "x",
            "",
        ] {
            let e = t(bad).expect_err("refused").to_string();
            assert!(e.starts_with(&format!("--timeout {bad}: ")), "{e}");
            assert!(e.contains("604800") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn gdb_line() {
        assert_eq!(
            gdb_command(Path::new("target/stardust/default/hello.debug"), 4321),
            "gdb target/stardust/default/hello.debug -ex 'target remote :4321'"
        );
        let port = free_port().expect("a free port");
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("free indeed");
    }

    #[test]
    fn free_ports_come_from_below_the_ephemeral_range() {
        assert_eq!(listener_ports("32768\t60999\n"), (20768, 32768));
        assert_eq!(listener_ports("10000 65000"), (1024, 10000));
        assert_eq!(listener_ports(""), (20768, 32768));
        assert_eq!(listener_ports("80 90"), (20768, 32768));
        let (first, end) = listener_ports(
            &std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default(),
        );
        let ports: Vec<u16> = (0..8).map(|_| free_port().expect("a free port")).collect();
        for &p in &ports {
            assert!((first..end).contains(&p), "{p} not in {first}..{end}");
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 1, "always the same port: {ports:?}");
    }
}
