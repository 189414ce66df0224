//! What a batch runs: one [`GuestSpec`] per guest (its kernel, [`GuestType`], memory, command
//! line, time limit and [`Expect`]ed end), and the lab's reference guests ([`RefGuest`]).

use std::path::PathBuf;
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
            vcpus: 1,
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

    pub(crate) fn validate(&self) -> Result<()> {
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
        c.push_str(&format!("vcpus = {}\n", self.vcpus));
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
        assert!(c.contains("mac=00:16:3e:00:00:04,bridge=xenbr0"));
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
}
