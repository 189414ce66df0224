//! One Stardust image on real Xen: `cargo xtask run APP --platform xen` boots the Xen lab
//! ([`crate::xenlab`]) with the image as its only guest, prints the guest's console and the
//! timings, and maps how the guest ended to the app's exit status ([`XenOutcome`]).
//!
//! On Xen there is no `isa-debug-exit`: the platform powers off (`SHUTDOWN_poweroff`, reason 0)
//! for status 0, and for any other status prints `xen: exit status N` on its console, then
//! crashes (`SHUTDOWN_crash`, reason 3). So the status is read back from the console:
//!
//! | the guest | outcome | `run` exits with |
//! | --- | --- | --- |
//! | powered off (reason 0) | [`XenOutcome::Exited`] 0 | 0 |
//! | crashed, console has `xen: exit status N` | `Exited` N | N |
//! | crashed, no status line, a `PANIC: ` line | `Exited` 101 | 101 |
//! | crashed, no status line, an `EXCEPTION: ` line | `Exited` 102 | 102 |
//! | crashed (or another reason) with none of these | [`XenOutcome::NoStatus`] | [`NO_STATUS_EXIT`] (127) |
//! | still running at its time limit | [`XenOutcome::Timeout`] | [`TIMEOUT_EXIT`] (124) |
//! | never ran (`xl create` failed), or the lab failed | [`XenOutcome::NotStarted`] | [`LAB_EXIT`] (125) |
//! | the lab's QEMU was killed by a signal before the guest ended | [`XenOutcome::LabKilled`] | [`KILLED_EXIT`] (126) |
//!
//! These are the statuses of [`crate::status`], as on QEMU.
//!
//! The whole-image tests (`tests/tests/xen.rs`) build their guests with [`guest_spec`] too, so a
//! test's guest is exactly what `run` would boot.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::profile::Profile;
use crate::status;
use crate::xenlab::{
    BatchOptions, BatchReport, GuestResult, GuestSpec, GuestType, Lab, LiveLine, LiveSink, Shutdown,
};
use anyhow::{Error, Result};

/// `run`'s exit status when the guest was still running at its time limit (as `timeout(1)`).
pub const TIMEOUT_EXIT: u8 = status::TIMEOUT;
/// `run`'s exit status when the guest never ran: the lab cannot run here, the lab failed, or
/// `xl create` refused the image.
pub const LAB_EXIT: u8 = status::NEVER_RAN;
/// `run`'s exit status when the guest ended without reporting a status.
pub const NO_STATUS_EXIT: u8 = status::NO_STATUS;
/// `run`'s exit status when the lab's QEMU was killed by a signal (not xtask's) before the guest
/// ended.
pub const KILLED_EXIT: u8 = status::KILLED;
/// The console line the Xen platform prints before crashing with a non-zero status.
pub const STATUS_LINE: &str = "xen: exit status ";
/// Kernel panic status (docs/CONTRACT.md).
pub const PANIC_STATUS: i32 = status::PANIC as i32;
/// CPU exception status.
pub const EXCEPTION_STATUS: i32 = status::EXCEPTION as i32;

/// Where an [`XenOutcome::Exited`] status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSource {
    /// The guest powered off (status 0).
    Poweroff,
    /// The `xen: exit status N` console line.
    StatusLine,
    /// No status line, but a `PANIC: ` line (101).
    PanicLine,
    /// No status line, but an `EXCEPTION: ` line (102).
    ExceptionLine,
}

/// How a Stardust guest ended on Xen, as an exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XenOutcome {
    /// The app's (or the kernel's) exit status.
    Exited {
        /// 0 to 255.
        status: i32,
        /// How it was found.
        source: StatusSource,
        /// The shutdown reason Xen reported (poweroff for 0, crash otherwise).
        shutdown: Shutdown,
    },
    /// The guest shut down without a status on its console: a crash with no `xen: exit
    /// status`, `PANIC: ` or `EXCEPTION: ` line (Xen killed it, e.g. a fault before the trap
    /// table), or a reboot/suspend/watchdog reason the platform never uses.
    NoStatus(Shutdown),
    /// Still running at its time limit (then destroyed).
    Timeout(Duration),
    /// It never ran to a shutdown: `xl create` failed or the lab ended first.
    NotStarted,
    /// The lab's QEMU was killed by this signal (not sent by xtask) before the guest ended.
    LabKilled(i32),
}

impl XenOutcome {
    /// What `cargo xtask run --platform xen` exits with.
    pub fn exit_code(&self) -> u8 {
        match self {
            XenOutcome::Exited { status, .. } => (*status).clamp(0, 255) as u8,
            XenOutcome::NoStatus(_) => NO_STATUS_EXIT,
            XenOutcome::Timeout(_) => TIMEOUT_EXIT,
            XenOutcome::NotStarted => LAB_EXIT,
            XenOutcome::LabKilled(_) => KILLED_EXIT,
        }
    }

    /// The app's status, when the guest reported one.
    pub fn status(&self) -> Option<i32> {
        match self {
            XenOutcome::Exited { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A sentence for the user.
    pub fn message(&self) -> String {
        match self {
            XenOutcome::Exited {
                status,
                source,
                shutdown,
            } => {
                let from = match source {
                    StatusSource::Poweroff => String::new(),
                    StatusSource::StatusLine => format!("; {shutdown}"),
                    StatusSource::PanicLine => {
                        format!("; {shutdown}, no status line: from the PANIC line")
                    }
                    StatusSource::ExceptionLine => {
                        format!("; {shutdown}, no status line: from the EXCEPTION line")
                    }
                };
                let what = u8::try_from(*status)
                    .ok()
                    .and_then(status::meaning)
                    .map_or_else(String::new, |w| format!(" ({w})"));
                format!("guest exited with status {status}{what}{from}")
            }
            XenOutcome::NoStatus(s) => format!(
                "guest ended with {s} without reporting an exit status (no `{STATUS_LINE}N`, \
                 PANIC or EXCEPTION line on its console; Xen's own lines, if any, are above); \
                 exit status {NO_STATUS_EXIT}"
            ),
            XenOutcome::Timeout(t) => format!(
                "timeout: the guest was still running after {} s and was destroyed (it hangs? \
                 raise --timeout); exit status {TIMEOUT_EXIT}",
                t.as_secs()
            ),
            XenOutcome::NotStarted => format!(
                "the guest never ran to a shutdown (`xl create` failed or the lab ended first; \
                 see above); exit status {LAB_EXIT}"
            ),
            XenOutcome::LabKilled(signal) => format!(
                "the Xen lab's QEMU was killed by signal {signal} before the guest ended; exit \
                 status {KILLED_EXIT}"
            ),
        }
    }
}

/// The status on a `xen: exit status N` line (the last one, if several; a status of 0 there
/// is not a crash status and is ignored).
pub fn status_line(console: &[String]) -> Option<i32> {
    console.iter().rev().find_map(|l| {
        let n = l
            .trim()
            .strip_prefix(STATUS_LINE)?
            .trim()
            .parse::<i32>()
            .ok()?;
        ((1..=255).contains(&n)).then_some(n)
    })
}

/// Maps a guest's end to its exit status (see the module table).
pub fn outcome(shutdown: Shutdown, console: &[String], timeout: Duration) -> XenOutcome {
    let exited = |status, source| XenOutcome::Exited {
        status,
        source,
        shutdown,
    };
    match shutdown {
        Shutdown::Poweroff => exited(0, StatusSource::Poweroff),
        Shutdown::Crash => {
            if let Some(n) = status_line(console) {
                return exited(n, StatusSource::StatusLine);
            }
            // The first report wins: a panic while reporting an exception still exits 102.
            let first = console.iter().map(|l| l.trim_start()).find_map(|l| {
                if l.starts_with("PANIC: ") {
                    Some((PANIC_STATUS, StatusSource::PanicLine))
                } else if l.starts_with("EXCEPTION: ") {
                    Some((EXCEPTION_STATUS, StatusSource::ExceptionLine))
                } else {
                    None
                }
            });
            match first {
                Some((n, source)) => exited(n, source),
                None => XenOutcome::NoStatus(shutdown),
            }
        }
        Shutdown::Timeout => XenOutcome::Timeout(timeout),
        Shutdown::NotSeen => XenOutcome::NotStarted,
        other => XenOutcome::NoStatus(other),
    }
}

/// [`outcome`] of a lab result.
pub fn guest_outcome(r: &GuestResult, spec: &GuestSpec) -> XenOutcome {
    outcome(r.shutdown, &r.console, spec.timeout)
}

/// A guest's outcome given how the lab's QEMU ended: a guest that never ended because a signal
/// killed QEMU is [`XenOutcome::LabKilled`], not "never ran".
pub fn with_lab_end(outcome: XenOutcome, qemu_signal: Option<i32>) -> XenOutcome {
    match (outcome, qemu_signal) {
        (XenOutcome::NotStarted, Some(signal)) => XenOutcome::LabKilled(signal),
        (outcome, _) => outcome,
    }
}

/// The guest's command line: `<kernel options> -- <app args> --`, as on QEMU's `-append`
/// ([`crate::cmdline::kernel_cmdline`]), or none when both are empty.
pub fn kernel_cmdline(kargs: &str, app_args: &[String]) -> Option<String> {
    let line = crate::cmdline::kernel_cmdline(kargs, app_args);
    (!line.is_empty()).then_some(line)
}

/// A profile's `memory` in whole MiB for `xl` (rounded up, at least 1).
pub fn memory_mib(bytes: u64) -> u32 {
    bytes.div_ceil(1 << 20).clamp(1, u64::from(u32::MAX)) as u32
}

/// The lab guest for `kernel` built with `profile`: PV, or PVH with `xen_guest = "pvh"`, the
/// profile's memory and `cpus` (as `vcpus`), the command line from `kargs` and `app_args`, expected to end any way
/// (callers map it with [`outcome`]).
pub fn guest_spec(
    name: &str,
    kernel: PathBuf,
    profile: &Profile,
    kargs: &str,
    app_args: &[String],
    timeout: Duration,
) -> GuestSpec {
    let mut g = GuestSpec::new(name, kernel)
        .guest_type(guest_type(profile))
        .memory_mb(memory_mib(profile.settings.memory))
        .vcpus(u32::try_from(profile.settings.cpus).expect("cpus is checked: at most 8"))
        .timeout(timeout)
        .expect(crate::xenlab::Expect::Any);
    if let Some(c) = kernel_cmdline(kargs, app_args) {
        g = g.cmdline(c);
    }
    g
}

/// The Xen guest type a profile's image boots as (`xen_guest`; the universal image is always a
/// PVH guest on Xen).
pub fn guest_type(profile: &Profile) -> GuestType {
    if profile.xen_pvh() || profile.platform == "universal" {
        GuestType::Pvh
    } else {
        GuestType::Pv
    }
}

/// The Xen guest type a prebuilt image boots as (`run --image`): PVH when it has the PVH entry
/// note (`XEN_ELFNOTE_PHYS32_ENTRY`, type 18: a Xen PVH or a universal `platform = "universal"`
/// image), PV when it has only the PV entry (`XEN_ELFNOTE_ENTRY`, type 1). `Err` for a file
/// that is not an ELF or that Xen cannot boot.
pub fn guest_type_of_image(elf: &[u8]) -> Result<GuestType> {
    const XEN_ELFNOTE_ENTRY: u32 = 1;
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    let notes = crate::strip::note_types(elf, "Xen")?;
    if notes.contains(&XEN_ELFNOTE_PHYS32_ENTRY) {
        Ok(GuestType::Pvh)
    } else if notes.contains(&XEN_ELFNOTE_ENTRY) {
        Ok(GuestType::Pv)
    } else {
        Err(Error::msg(
            "the image has no Xen entry note (neither XEN_ELFNOTE_PHYS32_ENTRY nor \
             XEN_ELFNOTE_ENTRY): Xen cannot boot it",
        ))
    }
}

/// What [`run`] found.
#[derive(Debug, Clone)]
pub struct XenRun {
    /// The guest's result.
    pub guest: GuestResult,
    /// Its exit status.
    pub outcome: XenOutcome,
    /// The whole batch (dom0 ready time, QEMU total, serial log).
    pub report: BatchReport,
}

/// `run --forward`'s ports as the lab's ([`crate::xenlab::Forward`]: to 10.0.0.2 on the lab's
/// bridge).
pub fn lab_forwards(forwards: &[crate::net::Forward]) -> Vec<crate::xenlab::Forward> {
    forwards
        .iter()
        .map(|f| crate::xenlab::Forward {
            udp: f.proto == crate::net::Proto::Udp,
            host: f.host,
            guest: f.guest,
        })
        .collect()
}

/// Boots the lab with `spec` as its only guest (and `forwards` from the host), printing progress
/// on stderr and the guest's console on stdout as it comes (the lines that did not arrive live,
/// if any, once it ended; its dom0 script's lines, if any, go to stderr as `dom0: ...`). `Err`
/// when the lab cannot run here or failed before dom0 was ready. `console` gets the console
/// lines that did not arrive live.
pub fn run(
    lab: &Lab,
    spec: &GuestSpec,
    forwards: &[crate::xenlab::Forward],
    console: &mut impl Write,
) -> Result<XenRun> {
    let spec = spec.clone().live_console(true);
    let opts = BatchOptions {
        echo: true,
        forwards: forwards.to_vec(),
        live: Some(LiveSink::new(|l: &LiveLine| match l {
            LiveLine::Console { text, .. } => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
            LiveLine::Script { text, .. } => eprintln!("dom0: {text}"),
        })),
        ..Default::default()
    };
    let report = lab.run_batch(std::slice::from_ref(&spec), &opts)?;
    let Some(guest) = report.guests.first().cloned() else {
        return Err(Error::msg("the lab returned no result for the guest"));
    };
    let outcome = with_lab_end(guest_outcome(&guest, &spec), report.qemu_signal);
    let io = |e: std::io::Error| Error::msg(format!("writing the console: {e}"));
    // The live lines are the console's first lines (tail follows the same log); the rest
    // (xenconsoled's last bytes after the stream stopped) come now.
    for l in guest.console.iter().skip(guest.io.live_lines) {
        writeln!(console, "{l}").map_err(io)?;
    }
    console.flush().map_err(io)?;
    if !guest.xen_lines.is_empty() {
        eprintln!("--- Xen's console while the guest ran ---");
        for l in guest.xen_lines.iter().take(80) {
            eprintln!("{l}");
        }
    }
    if outcome == XenOutcome::NotStarted && !guest.xl_output.is_empty() {
        eprintln!("--- xl create ---");
        for l in &guest.xl_output {
            eprintln!("{l}");
        }
        if let Some(hint) = xl_hint(&guest.xl_output) {
            eprintln!("xtask: {hint}");
        }
    }
    if let Some(out) = &guest.io.disk_out {
        eprintln!("xtask: the guest's disk (xvda) is now in {}", out.display());
    }
    eprintln!("xtask: {}", timings(&guest, &report));
    if let Some(e) = &report.lab_error {
        eprintln!(
            "xtask: lab failure: {e} (serial log {})",
            report.log.display()
        );
    }
    Ok(XenRun {
        guest,
        outcome,
        report,
    })
}

/// The `cr2` of Xen's register dump of a crashed PV guest (`(XEN) cr3: ...   cr2: 0000000000111f48`).
pub fn crash_cr2(xen_lines: &[String]) -> Option<u64> {
    crash_register(xen_lines, "cr2")
}

/// A register of Xen's dump of a crashed PV guest (`rsp`, `cr2`, ...).
pub fn crash_register(xen_lines: &[String], name: &str) -> Option<u64> {
    let key = format!("{name}: ");
    xen_lines.iter().rev().find_map(|l| {
        let hex = l.split(key.as_str()).nth(1)?.split_whitespace().next()?;
        u64::from_str_radix(hex, 16).ok()
    })
}

/// `[__stack_guard, __stack_bottom)`: the boot stack's guard page, from an image's symbols.
pub fn stack_guard(elf: &[u8]) -> Option<(u64, u64)> {
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(elf).ok()?;
    let find = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
    };
    Some((find("__stack_guard")?, find("__stack_bottom")?))
}

/// Why Xen killed a guest that could not report it: a fault inside the boot stack's guard page
/// is a stack overflow (Xen could not push the exception frame, so the guest never saw it); so
/// is a fault within a page of the stack pointer (a thread's stack running into its guard
/// page).
pub fn crash_hint(cr2: u64, rsp: Option<u64>, guard: Option<(u64, u64)>) -> String {
    match guard {
        Some((start, end)) if (start..end).contains(&cr2) => format!(
            "Xen killed the domain on a fault at {cr2:#x}, inside the boot stack's guard page \
             [{start:#x}, {end:#x}): a stack overflow (raise stack_size in the profile)"
        ),
        // Xen kills a PV domain when it cannot write the exception frame onto the guest's
        // stack: a fault that close to the stack pointer means the stack itself ran out.
        _ if rsp.is_some_and(|rsp| rsp.abs_diff(cr2) <= 4096) => format!(
            "Xen killed the domain on a fault at {cr2:#x}, next to the stack pointer ({:#x}): \
             a thread's stack overflow into its guard page (give the thread a larger stack; a \
             PV guest cannot report it itself, as Xen cannot push the exception frame)",
            rsp.unwrap_or_default()
        ),
        _ => {
            format!("Xen killed the domain on a fault at {cr2:#x} (see Xen's register dump above)")
        }
    }
}

/// A hint for an `xl create` failure the user can fix.
pub fn xl_hint(xl_output: &[String]) -> Option<&'static str> {
    xl_output
        .iter()
        .any(|l| l.contains("no loader found") || l.contains("Invalid kernel"))
        .then_some(
            "Xen found no PV kernel in the image: is it built for Xen (`--platform xen`, or a \
             profile with platform = \"xen\")? A KVM image boots only in QEMU.",
        )
}

/// One line of timings: dom0 ready, then `xl create` to the domain, to the first console line
/// and to the shutdown, and the lab's total.
pub fn timings(guest: &GuestResult, report: &BatchReport) -> String {
    let s =
        |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    format!(
        "Xen {}: dom0 ready {}; xl create -> domain {}, first line {}, shutdown {}; lab total {:.1} s",
        report.xen_version.as_deref().unwrap_or("?"),
        s(report.dom0_ready),
        s(guest.to_domid),
        s(guest.to_first_line),
        s(guest.to_shutdown),
        report.total.as_secs_f64()
    )
}

/// Why `run --platform xen` cannot run here, with how to fix it; `None` when the lab is ready.
pub fn unavailable_message(lab: &Lab) -> Option<String> {
    let why = lab.availability().err()?;
    let mut msg = format!("cannot run on Xen here: {why}");
    if !lab.stamp().is_file()
        && let Some(cannot) = xenlab::build::cannot_build()
    {
        msg.push_str(&format!("; and this machine cannot build it: {cannot}"));
    }
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_in_the_guard_page_is_named_a_stack_overflow() {
        let lines: Vec<String> = [
            "(XEN) r15: 000000000000000e   cr0: 000000008005003b   cr4: 0000000000340664",
            "(XEN) cr3: 0000000007d35000   cr2: 0000000000111f48",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cr2 = crash_cr2(&lines).expect("cr2");
        assert_eq!(cr2, 0x111f48);
        assert!(crash_hint(cr2, None, Some((0x111000, 0x112000))).contains("a stack overflow"));
        assert!(!crash_hint(cr2, None, Some((0x200000, 0x201000))).contains("overflow"));
        // A thread's stack: the push at rsp - 8 faulted in the page below, or rsp is already
        // in the guard page and Xen's frame write faulted there (as seen in the lab).
        let thread = crash_hint(0x157ff8, Some(0x158000), None);
        assert!(thread.contains("a thread's stack overflow"), "{thread}");
        assert!(crash_hint(0x158fd8, Some(0x158fd0), None).contains("a thread's stack overflow"));
        // A fault far from rsp is not named an overflow.
        assert!(!crash_hint(0x5000, Some(0x158000), None).contains("overflow"));
        let dump = ["(XEN) rbp: 0000000000000000   rsp: 0000000000158000   r8:  0".to_string()];
        assert_eq!(crash_register(&dump, "rsp"), Some(0x158000));
        assert_eq!(crash_cr2(&["(XEN) nothing".to_string()]), None);
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn poweroff_is_status_0() {
        let o = outcome(Shutdown::Poweroff, &lines("Hello from Stardust!"), T);
        assert_eq!(o.exit_code(), 0);
        assert_eq!(o.status(), Some(0));
        assert_eq!(o.message(), "guest exited with status 0");
    }

    #[test]
    fn crash_takes_the_status_line() {
        let o = outcome(
            Shutdown::Crash,
            &lines("faults: exit 42\nxen: exit status 042"),
            T,
        );
        assert_eq!(
            o,
            XenOutcome::Exited {
                status: 42,
                source: StatusSource::StatusLine,
                shutdown: Shutdown::Crash
            }
        );
        assert_eq!(o.exit_code(), 42);
        assert!(
            o.message().contains("status 42; crash (reason 3)"),
            "{}",
            o.message()
        );
        // the status line wins over the PANIC line, and the last status line over earlier ones
        let o = outcome(
            Shutdown::Crash,
            &lines("PANIC: panicked at a.rs:1:1: x\nxen: exit status 7\n  xen: exit status 255  "),
            T,
        );
        assert_eq!(o.exit_code(), 255);
    }

    #[test]
    fn crash_without_status_line_falls_back_to_panic_and_exception_lines() {
        let o = outcome(
            Shutdown::Crash,
            &lines("PANIC: panicked at a.rs:1:1: boom"),
            T,
        );
        assert_eq!(o.exit_code(), 101);
        assert!(o.message().contains("from the PANIC line"));
        assert!(
            o.message().contains("status 101 (kernel panic)"),
            "{}",
            o.message()
        );
        let o = outcome(
            Shutdown::Crash,
            &lines("EXCEPTION: #PF page fault (vector 14)\n  cr2=0xdead0000"),
            T,
        );
        assert_eq!(o.exit_code(), 102);
        assert!(o.message().contains("from the EXCEPTION line"));
        // the first report wins
        let o = outcome(
            Shutdown::Crash,
            &lines("EXCEPTION: #GP\nPANIC: panicked at a.rs:1:1: in the handler"),
            T,
        );
        assert_eq!(o.exit_code(), 102);
        // garbage and a zero status line are not statuses
        let o = outcome(
            Shutdown::Crash,
            &lines("xen: exit status 000\nxen: exit status x\nxen: exit status 300"),
            T,
        );
        assert_eq!(o, XenOutcome::NoStatus(Shutdown::Crash));
        assert_eq!(o.exit_code(), 127);
        // "PANIC: " must start the line
        let o = outcome(Shutdown::Crash, &lines("app says PANIC: no"), T);
        assert_eq!(o.exit_code(), 127);
    }

    #[test]
    fn timeouts_missing_guests_and_other_reasons_are_distinct_failures() {
        let o = outcome(Shutdown::Timeout, &[], Duration::from_secs(30));
        assert_eq!(o.exit_code(), TIMEOUT_EXIT);
        assert!(o.message().contains("after 30 s"), "{}", o.message());
        let o = outcome(Shutdown::NotSeen, &[], T);
        assert_eq!(o.exit_code(), LAB_EXIT);
        assert_eq!(o.status(), None);
        for s in [
            Shutdown::Reboot,
            Shutdown::Suspend,
            Shutdown::Watchdog,
            Shutdown::Other(9),
        ] {
            let o = outcome(s, &lines("xen: exit status 5"), T);
            assert_eq!(o, XenOutcome::NoStatus(s));
            assert_eq!(o.exit_code(), 127);
            assert!(o.message().ends_with("exit status 127"), "{}", o.message());
        }
        assert_ne!(TIMEOUT_EXIT, LAB_EXIT);
        // A lab killed by a signal before the guest ended; a guest that ended keeps its status.
        let o = with_lab_end(outcome(Shutdown::NotSeen, &[], T), Some(9));
        assert_eq!(o, XenOutcome::LabKilled(9));
        assert_eq!(o.exit_code(), 126);
        assert!(o.message().contains("signal 9"), "{}", o.message());
        let o = with_lab_end(outcome(Shutdown::Poweroff, &[], T), Some(9));
        assert_eq!(o.exit_code(), 0);
        let o = with_lab_end(outcome(Shutdown::NotSeen, &[], T), None);
        assert_eq!(o.exit_code(), 125);
    }

    #[test]
    fn command_line_and_memory() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            kernel_cmdline(" log=debug  bootchart ", &args(&["one", "two"])).as_deref(),
            Some("log=debug bootchart -- one two --")
        );
        assert_eq!(
            kernel_cmdline("", &args(&["exit 7", ""])).as_deref(),
            Some(r#"-- "exit 7" "" --"#)
        );
        assert_eq!(kernel_cmdline("log=off", &[]).as_deref(), Some("log=off"));
        assert_eq!(kernel_cmdline(" ", &[]), None);
        assert_eq!(memory_mib(32 << 20), 32);
        assert_eq!(memory_mib((32 << 20) + 1), 33);
        assert_eq!(memory_mib(1536 << 10), 2);
        assert_eq!(memory_mib(0), 1);
    }

    #[test]
    fn a_kvm_image_on_xen_gets_a_hint() {
        let xl = lines(
            "Parsing config from /tmp/sd01.cfg\n\
             xc: error: panic: xg_dom_core.c:689: xc_dom_find_loader: no loader found: Invalid kernel",
        );
        assert!(xl_hint(&xl).is_some_and(|h| h.contains("--platform xen")));
        assert_eq!(xl_hint(&lines("libxl: error: out of memory")), None);
    }

    #[test]
    fn run_forwards_become_the_lab_s() {
        let f =
            crate::net::parse_forwards(&["8080:80".into(), "udp:5353:53".into()]).expect("valid");
        let lab = lab_forwards(&f);
        assert_eq!(lab[0], crate::xenlab::Forward::tcp(8080, 80));
        assert_eq!(lab[1].hostfwd(), "hostfwd=udp:127.0.0.1:5353-10.0.0.2:53");
    }

    #[test]
    fn an_unbuilt_lab_says_how_to_build_it() {
        let lab = Lab::new("/nonexistent/stardust-xenlab");
        let msg = unavailable_message(&lab).expect("not available");
        assert!(
            msg.contains("cargo xtask xen-lab build") || msg.contains("switched off"),
            "{msg}"
        );
    }

    #[test]
    fn the_guest_gets_the_profile_s_cpus_as_vcpus() {
        let catalog = crate::profile::test_catalog(
            &[
                "platform-xen",
                "allocator-talc",
                "scheduler-none",
                "scheduler-coop",
                "console-xen",
            ],
            "",
        );
        let text = "platform = \"xen\"\n[slots]\nallocator = \"talc\"\nconsole = \"xen\"\n";
        let spec = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let profile = Profile::parse("xen", text, &sets, &catalog).expect("valid");
            guest_spec(
                "g",
                "k.elf".into(),
                &profile,
                "",
                &[],
                Duration::from_secs(5),
            )
        };
        let one = spec(&[]);
        assert_eq!(one.vcpus, 1);
        assert!(one.xl_config(1).contains("\nvcpus = 1\n"));
        let four = spec(&["scheduler=coop", "cpus=4"]);
        assert_eq!(four.vcpus, 4);
        let cfg = four.xl_config(1);
        assert!(cfg.contains("\nvcpus = 4\n"), "{cfg}");
        assert!(!cfg.contains("vcpus = 1"), "{cfg}");
    }

    #[test]
    fn the_universal_image_boots_as_a_pvh_guest() {
        let catalog = crate::profile::test_catalog(
            &[
                "platform-xen",
                "platform-universal",
                "allocator-talc",
                "scheduler-none",
                "console-xen",
                "console-auto",
            ],
            "",
        );
        let parse = |text: &str| Profile::parse("p", text, &[], &catalog).expect("valid");
        let universal =
            parse("platform = \"universal\"\n[slots]\nallocator = \"talc\"\nconsole = \"auto\"\n");
        assert_eq!(guest_type(&universal), GuestType::Pvh);
        let pv = parse("platform = \"xen\"\n[slots]\nallocator = \"talc\"\nconsole = \"xen\"\n");
        assert_eq!(guest_type(&pv), GuestType::Pv);
    }
}
