//! What a batch did: how each guest ended ([`Shutdown`], [`GuestResult`]), the whole
//! [`BatchReport`], and how `cargo xtask xen-lab run` prints it ([`print_report`]).

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Error;

use crate::Expect;

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
    /// Still running when its dom0 script ended, then destroyed (a server,
    /// [`GuestSpec::keeps_running`](crate::GuestSpec::keeps_running)).
    Destroyed,
    /// No shutdown was seen (`xl create` failed, or the lab ended first).
    NotSeen,
}

impl Shutdown {
    /// From the batch runner's `REASON` word.
    pub fn parse(word: &str) -> Shutdown {
        match word {
            "timeout" => Shutdown::Timeout,
            "destroyed" => Shutdown::Destroyed,
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
            Shutdown::Destroyed => f.write_str("destroyed after the dom0 script"),
            Shutdown::NotSeen => f.write_str("no shutdown seen"),
        }
    }
}

/// A xenstore device's handshake states as dom0 saw them change (XenbusState: 1 Initialising,
/// 2 InitWait, 3 Initialised, 4 Connected, 5 Closing, 6 Closed; `None`: not there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceState {
    /// The backend's `state` (`/local/domain/0/backend/{vif,vbd}/D/N/state`).
    pub backend: Option<u32>,
    /// The frontend's `state` (`/local/domain/D/device/{vif,vbd}/N/state`).
    pub frontend: Option<u32>,
    /// `xl create` → this state seen (dom0 polls every 0.2 s).
    pub at: Option<Duration>,
}

/// How the dom0 script's wait for the vif ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifWait {
    /// netback's state when the script started (4: Connected).
    pub state: Option<u32>,
    /// `connected`, `waited` (the [`GuestSpec::vif_wait`](crate::GuestSpec::vif_wait) bound ran
    /// out first) or `gone` (the guest had shut down).
    pub how: String,
}

/// What a guest's I/O did: its dom0 script, its vif and vbd, its disk.
#[derive(Debug, Clone, Default)]
pub struct GuestIo {
    /// It had a dom0 script (then [`GuestResult::passed`] needs status 0).
    pub has_script: bool,
    /// The dom0 script's output, line by line (stdout and stderr).
    pub script: Vec<String>,
    /// Its exit status (124: killed at the guest's time limit); `None`: it never ran (the
    /// domain was never created, or the lab ended first).
    pub script_status: Option<i32>,
    /// `xl create` → the script started.
    pub to_script: Option<Duration>,
    /// `xl create` → the domain was unpaused: built and its devices attached (measured for
    /// guests with a dom0 script, which starts after it).
    pub to_running: Option<Duration>,
    /// The vif wait before the script.
    pub vif_wait: Option<VifWait>,
    /// Each change of the vif's states (`vif/D/0`) while the guest ran.
    pub vif: Vec<DeviceState>,
    /// Each change of the disk's states (`vbd/D/51712`) while the guest ran.
    pub vbd: Vec<DeviceState>,
    /// dom0's device behind the guest's disk (`/dev/vdc`), or `missing`.
    pub disk_dev: Option<String>,
    /// Where the disk's contents are after the run
    /// ([`GuestSpec::disk_out_path`](crate::GuestSpec::disk_out_path)).
    pub disk_out: Option<PathBuf>,
    /// Console lines that arrived live ([`crate::LiveLine::Console`]).
    pub live_lines: usize,
}

impl GuestIo {
    /// Did the vif's backend and frontend both reach Connected (4)?
    pub fn vif_connected(&self) -> bool {
        self.vif
            .iter()
            .any(|s| s.backend == Some(4) && s.frontend == Some(4))
    }

    /// Did the disk's backend and frontend both reach Connected (4)?
    pub fn vbd_connected(&self) -> bool {
        self.vbd
            .iter()
            .any(|s| s.backend == Some(4) && s.frontend == Some(4))
    }

    /// The dom0 script's output as one string.
    pub fn script_text(&self) -> String {
        self.script.join("\n")
    }
}

/// A line that arrives while a guest runs ([`crate::BatchOptions::live`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveLine {
    /// A console line of guest `guest` (0-based), with
    /// [`GuestSpec::live_console`](crate::GuestSpec::live_console).
    Console {
        /// The guest's index in the batch.
        guest: usize,
        /// The line.
        text: String,
    },
    /// A line of guest `guest`'s dom0 script.
    Script {
        /// The guest's index in the batch.
        guest: usize,
        /// The line.
        text: String,
    },
}

/// What one guest did.
#[derive(Debug, Clone)]
pub struct GuestResult {
    /// [`GuestSpec::name`](crate::GuestSpec::name).
    pub name: String,
    /// The kernel it ran.
    pub kernel: PathBuf,
    /// [`GuestSpec::expect`](crate::GuestSpec::expect).
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
    /// Its dom0 script, vif and disk.
    pub io: GuestIo,
}

impl GuestResult {
    /// Did it end as expected, and did its dom0 script, if any, exit 0?
    pub fn passed(&self) -> bool {
        self.expect.matches(self.shutdown) && self.script_passed()
    }

    /// No dom0 script, or one that exited 0.
    pub fn script_passed(&self) -> bool {
        !self.io.has_script || self.io.script_status == Some(0)
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
        let script = if !self.io.has_script {
            String::new()
        } else {
            match self.io.script_status {
                Some(0) => ", dom0 script passed".to_string(),
                Some(124) => ", dom0 script killed at the time limit (status 124)".to_string(),
                Some(n) => format!(", dom0 script failed (status {n})"),
                None => ", dom0 script never ran".to_string(),
            }
        };
        let failed = if self.passed() {
            String::new()
        } else if !self.expect.matches(self.shutdown) {
            format!(", expected {:?}: FAILED", self.expect)
        } else {
            ": FAILED".to_string()
        };
        let mut io = String::new();
        if let Some(w) = &self.io.vif_wait {
            io.push_str(&format!(
                ", vif {} (state {})",
                match w.how.as_str() {
                    "connected" => "Connected",
                    "waited" => "not Connected in time",
                    _ => "not Connected before the guest ended",
                },
                w.state.map_or_else(|| "-".to_string(), |s| s.to_string())
            ));
        }
        if let Some(d) = &self.io.disk_out {
            io.push_str(&format!(", disk now in {}", d.display()));
        }
        format!(
            "{}: {}{script}{failed} (xl create -> domain {}, first line {}, shutdown {}){io}",
            self.name,
            self.shutdown,
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
        if g.io.has_script {
            writeln!(out, "--- dom0 script ---")?;
            for l in &g.io.script {
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

    #[test]
    fn shutdown_words() {
        assert_eq!(Shutdown::parse("0"), Shutdown::Poweroff);
        assert_eq!(Shutdown::parse("3"), Shutdown::Crash);
        assert_eq!(Shutdown::parse("5"), Shutdown::Other(5));
        assert_eq!(Shutdown::parse("timeout"), Shutdown::Timeout);
        assert_eq!(Shutdown::parse("none"), Shutdown::NotSeen);
        assert_eq!(Shutdown::parse("destroyed"), Shutdown::Destroyed);
        assert!(Expect::Running.matches(Shutdown::Destroyed));
        assert!(Expect::Running.matches(Shutdown::Poweroff));
        assert!(!Expect::Running.matches(Shutdown::Timeout));
        assert!(!Expect::Poweroff.matches(Shutdown::Destroyed));
        assert!(Expect::Any.matches(Shutdown::NotSeen));
        assert!(!Expect::Crash.matches(Shutdown::Poweroff));
    }
}
