//! What a batch runs: one [`GuestSpec`] per guest (its kernel, [`GuestType`], memory, command
//! line, time limit and [`Expect`]ed end; its I/O: a vif, a disk, a dom0 script), the ports a
//! batch forwards from the host ([`Forward`]), and the lab's reference guests ([`RefGuest`]).
//!
//! The lab's network: dom0's bridge `xenbr0` is [`DOM0_IP`]/24; a guest with a vif has the MAC
//! [`GUEST_MAC`] (every guest: they run one at a time, so dom0's and slirp's ARP caches stay
//! right) and, by convention, the address [`GUEST_IP`]/24: the guest sets it itself (its profile
//! or command line, e.g. `ip=10.0.0.2/24 gw=10.0.0.1`); the lab only gives the vif.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::{DEFAULT_GUEST_TIMEOUT, Lab, MAX_TIMEOUT, Shutdown};

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
    /// A server ([`GuestSpec::keeps_running`]): still running when its dom0 script ended, then
    /// destroyed ([`Shutdown::Destroyed`]); a poweroff before that is fine too.
    Running,
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
            Expect::Running => s == Shutdown::Destroyed || s == Shutdown::Poweroff,
            Expect::Any => true,
        }
    }
}

/// dom0's address on the lab's bridge `xenbr0` (a /24).
pub const DOM0_IP: &str = "10.0.0.1";
/// The address a guest with a vif uses by convention (the guest sets it itself; dom0 scripts
/// get it as `GUEST_IP`, and `--forward` forwards to it).
pub const GUEST_IP: &str = "10.0.0.2";
/// The MAC of every guest's vif (`xl`'s `mac=`; Xen's OUI 00:16:3e).
pub const GUEST_MAC: &str = "00:16:3e:00:00:02";
/// The lab QEMU's NIC for `--forward` (user networking, enslaved to `xenbr0` in dom0).
pub const FORWARD_NIC_MAC: &str = "52:54:00:5e:00:01";
/// Where slirp (QEMU's user networking) sits on the lab's bridge when ports are forwarded:
/// forwarded connections reach the guest from this address.
pub const FORWARD_HOST_IP: &str = "10.0.0.254";
/// The xenstore `vdev` of a guest's disk: `xvda`, 51712 (`device/vbd/51712`).
pub const DISK_VDEV: u32 = 51712;
/// The most guests of one batch that may have a disk (each is a PCI device of the lab's QEMU).
pub const MAX_DISKS: usize = 16;
/// How long a dom0 script waits by default for a guest's vif to be Connected
/// ([`GuestSpec::vif_wait`]).
pub const DEFAULT_VIF_WAIT: Duration = Duration::from_secs(30);

/// A port forwarded from the host's 127.0.0.1 to [`GUEST_IP`] on the lab's bridge, for the whole
/// batch (QEMU's user networking joins the bridge; see [`crate::BatchOptions::forwards`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// UDP instead of TCP.
    pub udp: bool,
    /// The host port (on 127.0.0.1).
    pub host: u16,
    /// The guest's port.
    pub guest: u16,
}

const FORWARD_HELP: &str =
    "expected [tcp:|udp:]HOSTPORT:GUESTPORT with ports 1 to 65535, e.g. 8080:80";

impl Forward {
    /// TCP from 127.0.0.1:`host` to the guest's `guest`.
    pub fn tcp(host: u16, guest: u16) -> Forward {
        Forward {
            udp: false,
            host,
            guest,
        }
    }

    /// Parses `[tcp:|udp:]HOSTPORT:GUESTPORT`.
    pub fn parse(spec: &str) -> Result<Forward> {
        let (udp, rest) = match spec.split_once(':') {
            Some(("tcp", rest)) => (false, rest),
            Some(("udp", rest)) => (true, rest),
            _ => (false, spec),
        };
        let Some((h, g)) = rest.split_once(':') else {
            bail!("--forward {spec}: no guest port; {FORWARD_HELP}");
        };
        let port = |which: &str, t: &str| match t.parse::<u16>() {
            Ok(p) if p > 0 && t.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
            _ => Err(anyhow::Error::msg(format!(
                "--forward {spec}: {which} port `{t}` is not a port from 1 to 65535; {FORWARD_HELP}"
            ))),
        };
        Ok(Forward {
            udp,
            host: port("host", h)?,
            guest: port("guest", g)?,
        })
    }

    /// QEMU's `hostfwd=` value.
    pub fn hostfwd(&self) -> String {
        format!(
            "hostfwd={}:127.0.0.1:{}-{GUEST_IP}:{}",
            if self.udp { "udp" } else { "tcp" },
            self.host,
            self.guest
        )
    }
}

/// Refuses a host port forwarded twice (per protocol).
pub fn check_forwards(forwards: &[Forward]) -> Result<()> {
    for (i, f) in forwards.iter().enumerate() {
        if forwards[..i]
            .iter()
            .any(|o| o.udp == f.udp && o.host == f.host)
        {
            bail!("--forward: host port {} is forwarded twice", f.host);
        }
    }
    Ok(())
}

/// The most `vcpus` a guest may have (Xen's own limit for a PV guest is far above; Stardust's
/// `cpus` stops at 8).
pub const MAX_VCPUS: u32 = 64;

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
    /// `vcpus =`: the domain's virtual CPUs (default 1; a profile's `cpus`).
    pub vcpus: u32,
    /// `extra =`: the guest's command line (none by default; PVH then gets `cmdline_paddr` 0).
    pub cmdline: Option<String>,
    /// From `xl create` to shutdown; then the guest is destroyed and reported as a timeout.
    pub timeout: Duration,
    /// How it should end ([`GuestResult::passed`](crate::GuestResult::passed)).
    pub expect: Expect,
    /// Give it a vif on dom0's bridge `xenbr0` (dom0 is [`DOM0_IP`]/24; the vif's MAC is
    /// [`GUEST_MAC`], the guest should take [`GUEST_IP`]/24).
    pub vif: bool,
    /// Extra `xl` config lines, e.g. `vcpus = 2`.
    pub extra_cfg: Vec<String>,
    /// A shell script dom0 runs while the guest runs (`sh`, or its own `#!`): with a vif, once
    /// netback says the vif is Connected (or after [`GuestSpec::vif_wait`], or when the guest
    /// has shut down, whichever comes first), else once the domain exists. Its output arrives
    /// live ([`crate::LiveLine::Script`]) and in [`crate::GuestIo::script`]; its status in
    /// [`crate::GuestIo::script_status`]; a status other than 0 fails the guest. It ends at the
    /// guest's time limit at the latest (status 124). Its environment: `GUEST_IP`, `DOM0_IP`,
    /// `GUEST_MAC`, `GUEST_DOMID`, `GUEST_NAME` (`sdNN`), `GUEST_CONSOLE` (the console log),
    /// `GUEST_VIF` (`vifD.0`), `VIF_STATE` (netback's state when it started: 4 Connected),
    /// `GUEST_DISK_DEV` (dom0's block device behind the guest's disk, or empty); on `PATH`:
    /// `xenlab-wait ping [SEC]`, `xenlab-wait tcp PORT [SEC]`, `xenlab-wait console REGEX [SEC]`
    /// (exit 0 when ready within SEC, default 30). dom0 has curl, nc (OpenBSD), ping, wrk, ab,
    /// tcpdump, ethtool, ip.
    pub dom0_script: Option<String>,
    /// A server: once the dom0 script ends, the guest is destroyed and the script's status
    /// decides ([`Expect::Running`]); without it the guest must still end by itself.
    pub keeps_running: bool,
    /// How long the dom0 script waits for the vif to be Connected before it starts anyway.
    pub vif_wait: Duration,
    /// A raw disk image the guest sees as its first vbd (`xvda`, vdev 51712, read-write,
    /// through dom0's blkback). The lab works on a copy: the file itself is never modified; what
    /// the guest wrote is in [`GuestSpec::disk_out`] after the run.
    pub disk: Option<PathBuf>,
    /// Where the disk's final contents go (default `<disk>.out` beside the disk; the disk itself
    /// to write it back in place).
    pub disk_out: Option<PathBuf>,
    /// Send the guest's console live while it runs ([`crate::LiveLine::Console`]), not only at
    /// its end.
    pub live_console: bool,
    /// An initial ramdisk for the kernel (`xl`'s `ramdisk =`; a Linux guest's initramfs),
    /// copied into the payload beside the kernel.
    pub ramdisk: Option<PathBuf>,
}

impl GuestSpec {
    /// A PV guest with 32 MiB, no command line, the default timeout, expected to power off.
    pub fn new(name: impl Into<String>, kernel: PathBuf) -> GuestSpec {
        GuestSpec {
            name: name.into(),
            kernel,
            guest_type: GuestType::Pv,
            memory_mb: 32,
            vcpus: 1,
            cmdline: None,
            timeout: DEFAULT_GUEST_TIMEOUT,
            expect: Expect::Poweroff,
            vif: false,
            extra_cfg: Vec::new(),
            dom0_script: None,
            keeps_running: false,
            vif_wait: DEFAULT_VIF_WAIT,
            disk: None,
            disk_out: None,
            live_console: false,
            ramdisk: None,
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

    /// Sets `vcpus =`.
    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
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

    /// Sets the dom0 script ([`GuestSpec::dom0_script`]).
    pub fn dom0_script(mut self, script: impl Into<String>) -> Self {
        self.dom0_script = Some(script.into());
        self
    }

    /// A server: destroyed once its dom0 script ends (expects [`Expect::Running`]; `false`
    /// goes back to [`Expect::Poweroff`]).
    pub fn keeps_running(mut self, on: bool) -> Self {
        self.keeps_running = on;
        if on {
            self.expect = Expect::Running;
        } else if self.expect == Expect::Running {
            self.expect = Expect::Poweroff;
        }
        self
    }

    /// Sets how long the dom0 script waits for the vif to be Connected.
    pub fn vif_wait(mut self, t: Duration) -> Self {
        self.vif_wait = t;
        self
    }

    /// Gives the guest a disk ([`GuestSpec::disk`]).
    pub fn disk(mut self, file: impl Into<PathBuf>) -> Self {
        self.disk = Some(file.into());
        self
    }

    /// Sets where the disk's final contents go.
    pub fn disk_out(mut self, file: impl Into<PathBuf>) -> Self {
        self.disk_out = Some(file.into());
        self
    }

    /// Streams the guest's console live.
    pub fn live_console(mut self, on: bool) -> Self {
        self.live_console = on;
        self
    }

    /// Gives the kernel an initial ramdisk ([`GuestSpec::ramdisk`]).
    pub fn ramdisk(mut self, file: impl Into<PathBuf>) -> Self {
        self.ramdisk = Some(file.into());
        self
    }

    /// Where the disk's contents end up after the run: [`GuestSpec::disk_out`], else
    /// `<disk>.out`; `None` without a disk.
    pub fn disk_out_path(&self) -> Option<PathBuf> {
        let disk = self.disk.as_ref()?;
        Some(self.disk_out.clone().unwrap_or_else(|| {
            let mut s = disk.as_os_str().to_owned();
            s.push(".out");
            PathBuf::from(s)
        }))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !self.kernel.is_file() {
            bail!(
                "guest {}: no such kernel {}",
                self.name,
                self.kernel.display()
            );
        }
        if self.memory_mb < 1 || self.memory_mb > crate::MAX_GUEST_MIB {
            bail!(
                "guest {}: memory {} MiB: the lab has room for 1 to {} MiB",
                self.name,
                self.memory_mb,
                crate::MAX_GUEST_MIB
            );
        }
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            bail!(
                "guest {}: vcpus = {}: must be 1 to {MAX_VCPUS}",
                self.name,
                self.vcpus
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
        match &self.dom0_script {
            Some(s) if s.trim().is_empty() => {
                bail!("guest {}: the dom0 script is empty", self.name)
            }
            Some(s) if s.contains('\0') => {
                bail!("guest {}: the dom0 script has a NUL byte", self.name)
            }
            None if self.keeps_running => bail!(
                "guest {}: keeps_running needs a dom0 script (its status decides, then the \
                 guest is destroyed)",
                self.name
            ),
            _ => {}
        }
        if self.dom0_script.is_some()
            && self.vif
            && (self.vif_wait < Duration::from_secs(1) || self.vif_wait > self.timeout)
        {
            bail!(
                "guest {}: vif_wait must be 1 s to the time limit ({} s)",
                self.name,
                self.timeout.as_secs()
            );
        }
        if let Some(r) = &self.ramdisk
            && !r.is_file()
        {
            bail!("guest {}: no such ramdisk {}", self.name, r.display());
        }
        if let Some(disk) = &self.disk {
            check_disk(&self.name, disk)?;
        } else if self.disk_out.is_some() {
            bail!("guest {}: disk_out without a disk", self.name);
        }
        if let Some(out) = self.disk_out_path() {
            let dir = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.is_dir() || out.is_dir() {
                bail!(
                    "guest {}: cannot write the disk's contents to {} (no such directory, or a \
                     directory)",
                    self.name,
                    out.display()
                );
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
        if self.ramdisk.is_some() {
            c.push_str("ramdisk = \"@GUESTDIR@ramdisk\"\n");
        }
        c.push_str(&format!("memory = {}\n", self.memory_mb));
        c.push_str(&format!("vcpus = {}\n", self.vcpus));
        c.push_str(
            "on_poweroff = \"preserve\"\non_reboot = \"preserve\"\non_crash = \"preserve\"\n",
        );
        if let Some(cmd) = &self.cmdline {
            c.push_str(&format!("extra = \"{}\"\n", quote(cmd)));
        }
        if self.vif {
            c.push_str(&format!("vif = [ 'mac={GUEST_MAC},bridge=xenbr0' ]\n"));
        }
        if self.disk.is_some() {
            // dom0's batch runner puts the virtio disk with serial `xenlab-dNN` for @DISK@.
            c.push_str("disk = [ 'format=raw,vdev=xvda,access=rw,target=@DISK@' ]\n");
        }
        for l in &self.extra_cfg {
            c.push_str(l);
            c.push('\n');
        }
        c
    }
}

/// A disk image the lab can use: a regular file of a non-zero multiple of 512 bytes.
fn check_disk(guest: &str, disk: &Path) -> Result<()> {
    let meta = match std::fs::metadata(disk) {
        Ok(m) if m.is_file() => m,
        Ok(_) => bail!(
            "guest {guest}: disk {} is not a regular file",
            disk.display()
        ),
        Err(e) => bail!("guest {guest}: no disk image {}: {e}", disk.display()),
    };
    if meta.len() == 0 || meta.len() % 512 != 0 {
        bail!(
            "guest {guest}: disk {} has {} bytes: a disk image is a non-zero multiple of 512 bytes",
            disk.display(),
            meta.len()
        );
    }
    if disk.to_string_lossy().contains('\n') {
        bail!("guest {guest}: the disk's path has a newline");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xl_config_quotes_the_command_line() {
        let g = GuestSpec::new("x", PathBuf::from("/k"))
            .guest_type(GuestType::Pvh)
            .memory_mb(8)
            .cmdline(r#"-- say "hi" \o/"#)
            .vif(true)
            .cfg_line("on_watchdog = \"preserve\"");
        let c = g.xl_config(3);
        assert!(c.contains("name = \"sd03\"\n"));
        assert!(c.contains("type = \"pvh\"\n"));
        assert!(c.contains("memory = 8\n"));
        assert!(c.contains(r#"extra = "-- say \"hi\" \\o/""#));
        assert!(c.contains("vif = [ 'mac=00:16:3e:00:00:02,bridge=xenbr0' ]\n"));
        assert!(!c.contains("disk ="), "{c}");
        assert!(!c.contains("ramdisk"), "{c}");
        let r = g.clone().ramdisk("/r.img").xl_config(3);
        assert!(
            r.contains("kernel = \"@GUESTDIR@kernel\"\nramdisk = \"@GUESTDIR@ramdisk\"\n"),
            "{r}"
        );
        assert!(c.contains("\nvcpus = 1\n"), "{c}");
        assert!(c.ends_with("\non_watchdog = \"preserve\"\n"), "{c}");
    }

    #[test]
    fn vcpus_is_written_and_checked() {
        let k = std::env::current_exe().expect("a file that exists");
        let g = GuestSpec::new("x", k.clone()).vcpus(4);
        let c = g.xl_config(1);
        assert!(c.contains("\nmemory = 32\nvcpus = 4\n"), "{c}");
        assert_eq!(c.matches("vcpus").count(), 1, "{c}");
        g.validate().expect("4 vCPUs are fine");
        for bad in [0, MAX_VCPUS + 1] {
            let e = GuestSpec::new("x", k.clone())
                .vcpus(bad)
                .validate()
                .expect_err("refused")
                .to_string();
            assert!(e.contains(&format!("vcpus = {bad}: must be 1 to")), "{e}");
        }
    }

    #[test]
    fn forward_specs_parse_or_say_why() {
        assert_eq!(
            Forward::parse("8080:80").expect("ok"),
            Forward::tcp(8080, 80)
        );
        assert_eq!(
            Forward::parse("tcp:1:65535").expect("ok"),
            Forward::tcp(1, 65535)
        );
        let udp = Forward::parse("udp:5353:53").expect("ok");
        assert!(udp.udp);
        assert_eq!(
            Forward::tcp(8080, 80).hostfwd(),
            "hostfwd=tcp:127.0.0.1:8080-10.0.0.2:80"
        );
        assert_eq!(udp.hostfwd(), "hostfwd=udp:127.0.0.1:5353-10.0.0.2:53");
        for (bad, why) in [
            ("80", "no guest port"),
            ("0:80", "host port `0`"),
            ("80:0", "guest port `0`"),
            ("x:y", "host port `x`"),
            ("8080:y", "guest port `y`"),
            ("1:2:3", "guest port `2:3`"),
            ("70000:80", "host port `70000`"),
            ("+80:80", "host port `+80`"),
            ("", "no guest port"),
        ] {
            let e = Forward::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains(&format!("--forward {bad}:")), "{bad}: {e}");
        }
        check_forwards(&[Forward::tcp(1, 2), udp, Forward::tcp(5353, 53)]).expect("distinct");
        let e = check_forwards(&[Forward::tcp(1, 2), Forward::tcp(1, 3)])
            .expect_err("twice")
            .to_string();
        assert!(e.contains("host port 1 is forwarded twice"), "{e}");
    }

    fn temp_file(name: &str, bytes: usize) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xenlab-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let f = dir.join(name);
        std::fs::write(&f, vec![0u8; bytes]).expect("temp file");
        f
    }

    #[test]
    fn a_disk_is_checked_and_configured() {
        let k = std::env::current_exe().expect("a file that exists");
        let disk = temp_file("disk.img", 4096);
        let g = GuestSpec::new("d", k.clone()).disk(&disk);
        g.validate().expect("a good disk");
        let c = g.xl_config(2);
        assert!(
            c.contains("\ndisk = [ 'format=raw,vdev=xvda,access=rw,target=@DISK@' ]\n"),
            "{c}"
        );
        assert!(!c.contains("vif"), "{c}");
        let mut out = disk.clone().into_os_string();
        out.push(".out");
        assert_eq!(g.disk_out_path(), Some(PathBuf::from(out)));
        let back = GuestSpec::new("d", k.clone()).disk(&disk).disk_out(&disk);
        assert_eq!(back.disk_out_path().as_deref(), Some(disk.as_path()));
        back.validate().expect("written back in place");
        assert_eq!(GuestSpec::new("d", k.clone()).disk_out_path(), None);

        let err = |g: GuestSpec| g.validate().expect_err("refused").to_string();
        let e = err(GuestSpec::new("d", k.clone()).disk("/nonexistent/disk.img"));
        assert!(e.contains("no disk image /nonexistent/disk.img"), "{e}");
        let e = err(GuestSpec::new("d", k.clone()).disk(temp_file("odd.img", 1000)));
        assert!(e.contains("has 1000 bytes"), "{e}");
        let e = err(GuestSpec::new("d", k.clone()).disk(temp_file("empty.img", 0)));
        assert!(e.contains("has 0 bytes"), "{e}");
        let e = err(GuestSpec::new("d", k.clone()).disk(std::env::temp_dir()));
        assert!(e.contains("is not a regular file"), "{e}");
        let e = err(GuestSpec::new("d", k.clone()).disk_out("/tmp/x.out"));
        assert!(e.contains("disk_out without a disk"), "{e}");
        let e = err(GuestSpec::new("d", k.clone())
            .disk(&disk)
            .disk_out("/nonexistent/dir/x.out"));
        assert!(e.contains("cannot write the disk's contents"), "{e}");
    }

    #[test]
    fn dom0_scripts_and_servers_are_checked() {
        let k = std::env::current_exe().expect("a file that exists");
        let g = GuestSpec::new("s", k.clone())
            .vif(true)
            .dom0_script("xenlab-wait ping")
            .keeps_running(true);
        assert_eq!(g.expect, Expect::Running);
        g.validate().expect("a server with a script");
        assert_eq!(g.clone().keeps_running(false).expect, Expect::Poweroff);
        // keeps_running(false) leaves another expectation alone
        let crash = GuestSpec::new("s", k.clone()).expect(Expect::Crash);
        assert_eq!(crash.keeps_running(false).expect, Expect::Crash);
        let err = |g: GuestSpec| g.validate().expect_err("refused").to_string();
        let e = err(GuestSpec::new("s", k.clone()).keeps_running(true));
        assert!(e.contains("keeps_running needs a dom0 script"), "{e}");
        let e = err(GuestSpec::new("s", k.clone()).dom0_script(" \n"));
        assert!(e.contains("the dom0 script is empty"), "{e}");
        let e = err(GuestSpec::new("s", k.clone()).dom0_script("a\0b"));
        assert!(e.contains("NUL"), "{e}");
        let e = err(GuestSpec::new("s", k.clone())
            .vif(true)
            .dom0_script("true")
            .timeout(Duration::from_secs(10))
            .vif_wait(Duration::from_secs(11)));
        assert!(
            e.contains("vif_wait must be 1 s to the time limit (10 s)"),
            "{e}"
        );
    }
}
