//! Helpers for the whole-image tests in `tests/*.rs`: build images with the xtask library (once
//! per test process, serialized), boot them in QEMU, and assert on the console and exit status.
//!
//! Tests run in parallel threads; builds are serialized by one lock (cargo would serialize them
//! anyway, and the copy of cargo's output must not race with the next build), boots are not.
//!
//! Cargo features: none.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub use xtask::guest::Guest;
pub use xtask::image::Image;
pub use xtask::net::Forward;
pub use xtask::profile::Profile;
use xtask::qemu::{self, QemuConfig};
pub use xtask::qemu::{Boot, Machine, Outcome};
use xtask::workspace::Workspace;

/// Where a test runs: a machine, and the image's `--set` overrides.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name in failure messages.
    pub name: &'static str,
    /// The QEMU machine.
    pub machine: Machine,
    /// `--set` overrides of the image.
    pub set: &'static [&'static str],
}

/// A panic's message (a `String` or `&str` payload).
pub fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(panic without a message)".into())
}

/// Runs `check` on each target in its own thread; fails naming every target that failed.
pub fn on_targets(targets: &[Target], check: impl Fn(Target) + Sync) {
    let check = &check;
    let failed: Vec<String> = std::thread::scope(|s| {
        let running: Vec<_> = targets
            .iter()
            .map(|&t| (t, s.spawn(move || check(t))))
            .collect();
        running
            .into_iter()
            .filter_map(|(t, h)| {
                h.join()
                    .err()
                    .map(|e| format!("{}: {}", t.name, panic_message(&*e)))
            })
            .collect()
    });
    assert!(failed.is_empty(), "failed on:\n{}", failed.join("\n"));
}

/// The workspace under test.
pub fn workspace() -> &'static Workspace {
    static WS: OnceLock<Workspace> = OnceLock::new();
    WS.get_or_init(Workspace::locate)
}

type Built = Result<(Profile, Image), String>;

/// Builds `app` with `profile` (once per process; later calls reuse the image). Panics with the
/// build error.
pub fn image(app: &str, profile: &str) -> (Profile, Image) {
    image_with(app, profile, &[])
}

/// Like [`image`], with `--set` overrides (`KEY=VALUE`).
pub fn image_with(app: &str, profile: &str, overrides: &[&str]) -> (Profile, Image) {
    type Key = (String, String, Vec<String>);
    static BUILT: OnceLock<Mutex<HashMap<Key, Built>>> = OnceLock::new();
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let key = (app.to_string(), profile.to_string(), overrides.clone());
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let entry = built.entry(key).or_insert_with(|| {
        xtask::build_app(workspace(), app, profile, &overrides).map_err(|e| e.to_string())
    });
    match entry {
        Ok(built) => built.clone(),
        Err(e) => panic!("building {app} with profile {profile} {overrides:?} failed: {e:#}"),
    }
}

/// Builds the empty kernel fixture (once per process).
pub fn empty_kernel() -> Image {
    static BUILT: Mutex<Option<Result<Image, String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let result = built.get_or_insert_with(|| {
        xtask::image::build_empty_kernel(workspace()).map_err(|e| e.to_string())
    });
    match result {
        Ok(image) => image.clone(),
        Err(e) => panic!("building the empty kernel failed: {e:#}"),
    }
}

/// QEMU, installed if missing (panics with the setup error).
pub fn qemu_binary() -> std::path::PathBuf {
    xtask::cmd::setup::ensure_qemu().unwrap_or_else(|e| panic!("{e:#}"))
}

/// One boot: which image, on which machine, with which kernel options and app arguments.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// App name.
    pub app: &'a str,
    /// Profile name.
    pub profile: &'a str,
    /// Machine type.
    pub machine: Machine,
    /// Kernel options.
    pub kargs: &'a str,
    /// App arguments.
    pub args: &'a [&'a str],
    /// `--set` overrides.
    pub set: &'a [&'a str],
    /// Attach isa-debug-exit (default yes).
    pub debug_exit: bool,
    /// Extra `-machine` options.
    pub machine_opts: &'a str,
    /// The accelerator (default TCG).
    pub accel: xtask::qemu::Accel,
    /// Ports forwarded from 127.0.0.1 to the guest over QEMU user networking.
    pub forwards: Vec<Forward>,
    /// A NIC even without forwards (a profile with a NIC driver always has one).
    pub nic: bool,
    /// QEMU's time limit (default [`xtask::qemu::DEFAULT_TIMEOUT`]).
    pub timeout: std::time::Duration,
    /// Extra QEMU arguments, appended last.
    pub extra: &'a [&'a str],
    /// The NIC a profile with a NIC driver gets by itself (default yes; tests that attach their
    /// own devices with [`Run::extra`] turn it off).
    pub auto_nic: bool,
    /// A raw disk image as the guest's virtio-blk disk (the profile needs a disk driver, e.g.
    /// `storage`).
    pub disk: Option<xtask::qemu::Disk>,
}

impl<'a> Run<'a> {
    /// `app` with the default profile on q35, no options, no arguments.
    pub fn new(app: &'a str) -> Run<'a> {
        Run {
            app,
            profile: "default",
            machine: Machine::Q35,
            kargs: "",
            args: &[],
            set: &[],
            debug_exit: true,
            machine_opts: "",
            accel: xtask::qemu::Accel::Tcg,
            forwards: Vec::new(),
            nic: false,
            timeout: qemu::DEFAULT_TIMEOUT,
            extra: &[],
            auto_nic: true,
            disk: None,
        }
    }

    /// With `file` (a raw image) as the guest's virtio-blk disk, read-write or read-only.
    pub fn disk(mut self, file: &std::path::Path, read_only: bool) -> Self {
        self.disk = Some(xtask::qemu::Disk {
            file: file.to_path_buf(),
            read_only,
            log: None,
        });
        self
    }

    /// With `file` (a raw image) as the guest's virtio-blk disk, read-write, through QEMU's
    /// `blklogwrites` driver: every write and flush is recorded in `log` (made new at each
    /// start), for `xtask::disklog` to replay.
    pub fn disk_log(mut self, file: &std::path::Path, log: &std::path::Path) -> Self {
        self.disk = Some(xtask::qemu::Disk::logged(file, log));
        self
    }

    /// With 127.0.0.1:`host` forwarded to the guest's TCP port `guest` (QEMU user networking;
    /// the profile needs a NIC driver, e.g. `net`). Take `host` from [`free_port`].
    pub fn forward(mut self, host: u16, guest: u16) -> Self {
        self.forwards.push(Forward::tcp(host, guest));
        self
    }

    /// With 127.0.0.1:`host` forwarded to the guest's UDP port `guest`.
    pub fn forward_udp(mut self, host: u16, guest: u16) -> Self {
        self.forwards.push(Forward::udp(host, guest));
        self
    }

    /// With a NIC on QEMU user networking (no forwards needed; the profile needs a NIC driver).
    pub fn nic(mut self) -> Self {
        self.nic = true;
        self
    }

    /// With this time limit for QEMU (a background guest is killed after it too).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Without the NIC a profile with a NIC driver gets by itself (the test attaches its own
    /// devices, or none).
    pub fn without_nic(mut self) -> Self {
        self.auto_nic = false;
        self
    }

    /// With these extra QEMU arguments, appended last (`-device ...`, `-netdev ...`).
    pub fn extra(mut self, extra: &'a [&'a str]) -> Self {
        self.extra = extra;
        self
    }

    /// Under this accelerator.
    pub fn accel(mut self, accel: xtask::qemu::Accel) -> Self {
        self.accel = accel;
        self
    }

    /// Without isa-debug-exit: the guest must power off by itself (ACPI), reporting no status.
    pub fn without_debug_exit(mut self) -> Self {
        self.debug_exit = false;
        self
    }

    /// With extra `-machine` options (`acpi=off`).
    pub fn machine_opts(mut self, opts: &'a str) -> Self {
        self.machine_opts = opts;
        self
    }

    /// With this profile.
    pub fn profile(mut self, profile: &'a str) -> Self {
        self.profile = profile;
        self
    }

    /// On this machine.
    pub fn machine(mut self, machine: Machine) -> Self {
        self.machine = machine;
        self
    }

    /// With these kernel options.
    pub fn kargs(mut self, kargs: &'a str) -> Self {
        self.kargs = kargs;
        self
    }

    /// With these app arguments.
    pub fn args(mut self, args: &'a [&'a str]) -> Self {
        self.args = args;
        self
    }

    /// With these `--set` overrides.
    pub fn set(mut self, set: &'a [&'a str]) -> Self {
        self.set = set;
        self
    }

    /// The QEMU configuration of this run (builds the image if needed). Panics when a NIC is
    /// asked for and the profile has no NIC driver, or a forward is given twice.
    pub fn config(&self) -> QemuConfig {
        let (profile, image) = image_with(self.app, self.profile, self.set);
        let mut cfg = QemuConfig::new(qemu_binary(), image.elf, &profile);
        if !self.auto_nic {
            cfg.nic = None;
        }
        cfg.machine = self.machine;
        cfg.debug_exit = self.debug_exit;
        cfg.machine_opts = self.machine_opts.to_string();
        cfg.accel = self.accel;
        cfg.extra_args = self.extra.iter().map(|s| s.to_string()).collect();
        cfg.kargs = self.kargs.to_string();
        cfg.app_args = self.args.iter().map(|s| s.to_string()).collect();
        if self.nic || !self.forwards.is_empty() {
            let asked = if self.forwards.is_empty() {
                "Run::nic"
            } else {
                "Run::forward"
            };
            xtask::net::check_driver(&profile, asked).unwrap_or_else(|e| panic!("{self:?}: {e}"));
            xtask::net::check_distinct(&self.forwards).unwrap_or_else(|e| panic!("{self:?}: {e}"));
        }
        if let Some(disk) = &self.disk {
            xtask::cmd::run::check_disk_driver(&profile)
                .unwrap_or_else(|e| panic!("{self:?}: {e}"));
            disk.check().unwrap_or_else(|e| panic!("{self:?}: {e}"));
            cfg.disk = Some(disk.clone());
        }
        if let Some(nic) = &mut cfg.nic {
            nic.forwards = self.forwards.clone();
            nic.guest_ip = xtask::net::guest_ip(&profile, &cfg.kargs);
        }
        cfg
    }

    /// Builds (if needed) and starts the guest in the background (see [`Guest`]): wait for a
    /// console line, talk to it over its forwarded ports, then [`Guest::stop`] it; dropping it
    /// kills QEMU. Panics when a forwarded host port is in use or QEMU cannot start.
    pub fn start(&self) -> Guest {
        let cfg = self.config();
        if let Some(nic) = &cfg.nic {
            xtask::net::check_host_ports(&nic.forwards)
                .unwrap_or_else(|e| panic!("starting {self:?}: {e}"));
        }
        eprintln!("--- {self:?}: starting\n$ {}", cfg.shell_line());
        xtask::guest::start(&cfg, Some(self.timeout))
            .unwrap_or_else(|e| panic!("starting {self:?}: {e:#}"))
    }

    /// Builds (if needed) and boots, capturing the console.
    pub fn boot(&self) -> Boot {
        let cfg = self.config();
        let boot = qemu::boot(&cfg, true, Some(self.timeout))
            .unwrap_or_else(|e| panic!("booting {self:?}: {e}"));
        eprintln!(
            "--- {self:?}: {:?} in {:?}\n$ {}\n{}",
            boot.outcome,
            boot.elapsed,
            cfg.shell_line(),
            boot.stdout
        );
        boot
    }
}

/// Boots a prebuilt image on QEMU as `cargo xtask run --image ELF --platform kvm` does (the
/// default profile on platform kvm: its memory, COM1), on `machine` with TCG, capturing the
/// console. For an image built once and booted on several monitors (`platform = "universal"`).
pub fn boot_image(elf: &std::path::Path, machine: Machine, args: &[&str]) -> Boot {
    let profile = workspace()
        .load_profile("default", &["platform=kvm".to_string()])
        .unwrap_or_else(|e| panic!("the default profile on kvm: {e}"));
    let mut cfg = QemuConfig::new(qemu_binary(), elf.to_path_buf(), &profile);
    cfg.machine = machine;
    cfg.accel = xtask::qemu::Accel::Tcg;
    cfg.app_args = args.iter().map(|s| s.to_string()).collect();
    let boot = qemu::boot(&cfg, true, Some(qemu::DEFAULT_TIMEOUT))
        .unwrap_or_else(|e| panic!("booting {}: {e}", elf.display()));
    eprintln!(
        "--- {} on {machine:?}: {:?} in {:?}\n$ {}\n{}",
        elf.display(),
        boot.outcome,
        boot.elapsed,
        cfg.shell_line(),
        boot.stdout
    );
    boot
}

/// A TCP port of 127.0.0.1 that is free now and that no other call in this test process has
/// returned (parallel tests each get their own), for [`Run::forward`].
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        // Free for TCP and UDP, and outside the ephemeral range that the tests' own client
        // connections draw from.
        let port = qemu::free_port().unwrap_or_else(|e| panic!("{e:#}"));
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A file's bytes (panics when it cannot be read): to check that the same image, byte for
/// byte, is what each boot gets.
pub fn file_bytes(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A short fingerprint of `bytes` for messages (FNV-1a, 64 bits).
pub fn fingerprint(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x} ({} bytes)", bytes.len())
}

/// Asserts the guest's exit code, showing the console on failure.
#[track_caller]
pub fn assert_exit(boot: &Boot, code: i32) {
    assert_eq!(
        boot.outcome,
        Outcome::Guest(code),
        "expected guest exit status {code}\n--- console ---\n{}--- qemu stderr ---\n{}",
        boot.stdout,
        boot.stderr
    );
}

/// The first console line containing every one of `needles`; panics (showing the console) if none.
#[track_caller]
pub fn line_with<'b>(boot: &'b Boot, needles: &[&str]) -> &'b str {
    match boot.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
        Some(line) => line,
        None => panic!(
            "no console line contains all of {needles:?}\n--- console ---\n{}",
            boot.stdout
        ),
    }
}

/// `len` pseudo-random bytes from `seed` (xorshift64): payloads that a stream cannot deliver
/// right by accident (the network tests' echoes).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
