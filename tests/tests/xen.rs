//! Whole images on real Xen: every guest below is built for `platform = "xen"`, and all of them
//! run in ONE boot of the Xen lab (Xen 4.17 + Debian dom0 in QEMU, `cargo xtask xen-lab
//! build`), after the lab's reference guest `pvhello` as a warm-up. Each `#[test]` then checks
//! its own guest's console and how it ended (poweroff = status 0; a crash carries its status on
//! the `xen: exit status N` line, see xtask/src/cmd/run/xen.rs).
//!
//! Adding a guest is one line in [`GUESTS`] plus its `#[test]`.
//!
//! Where the lab cannot run (not built, no root to build it, `STARDUST_XENLAB=off`) every test
//! here prints `skipped: <test>: <why>` and passes; `cargo xtask test` counts it as skipped. With
//! `STARDUST_XENLAB_REQUIRED=1` (as `.ci/run` sets it) they fail instead. The guests are still
//! built first: a Xen image that does not build fails its test anyway, lab or no lab.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use stardust_tests::{Machine, assert_exit, boot_image, file_bytes, fingerprint, workspace};
use xtask::cmd::run::xen::{self as xenlab_run, StatusSource, XenOutcome};
use xtask::xenlab::{
    BatchOptions, BatchReport, GuestResult, GuestSpec, GuestType, Lab, RefGuest, Shutdown,
};

/// One guest of the batch: an app built with a profile (`default` unless it says) on
/// `platform = "xen"` (or `"universal"`: the universal image).
struct Guest {
    /// Its name in the batch (and in reports).
    name: &'static str,
    app: &'static str,
    /// The profile it is built with.
    profile: &'static str,
    /// `xen`, or `universal` for the universal image (booted as what its ELF notes say: PVH).
    platform: &'static str,
    /// `--set` overrides besides `platform=...`.
    set: &'static [&'static str],
    /// The app's arguments (after `--` on the guest's command line).
    args: &'static [&'static str],
    /// Left out of the batch (with a skip line) when its app does not exist (yet). An app that
    /// exists and does not build fails its test, optional or not.
    optional: bool,
    /// From `xl create` to shutdown, at most.
    timeout_s: u64,
}

impl Guest {
    const fn new(name: &'static str, app: &'static str) -> Guest {
        Guest {
            name,
            app,
            profile: "default",
            platform: "xen",
            set: &[],
            args: &[],
            optional: false,
            timeout_s: 30,
        }
    }
    const fn args(mut self, args: &'static [&'static str]) -> Guest {
        self.args = args;
        self
    }
    const fn set(mut self, set: &'static [&'static str]) -> Guest {
        self.set = set;
        self
    }
    const fn profile(mut self, profile: &'static str) -> Guest {
        self.profile = profile;
        self
    }
    /// Built for `platform = "universal"` (one image for KVM and Xen) instead of `xen`.
    const fn universal(mut self) -> Guest {
        self.platform = "universal";
        self
    }
    const fn optional(mut self) -> Guest {
        self.optional = true;
        self
    }
    const fn timeout_s(mut self, s: u64) -> Guest {
        self.timeout_s = s;
        self
    }
}

/// `faults args ...`: arguments with spaces, quotes, backslashes, an empty one, Unicode, a
/// control character and what looks like a marker or a kernel option.
const ARGS: &[&str] = &[
    "args",
    "exit 7",
    "",
    r#"say "hi" \o/"#,
    "--",
    "log=debug",
    "grüße 🦀",
    "tab\there",
    "'single'",
];

/// Every Stardust guest of the batch, in the order they run (after `pvhello`).
const GUESTS: &[Guest] = &[
    Guest::new("hello", "hello").args(&["one", "two"]),
    // The minimal profile's settings: no allocator, a 16 KiB boot stack.
    Guest::new("minimal-hello", "hello").set(&[
        "allocator=none",
        "stack_size=16K",
        "log_level=warn",
    ]),
    Guest::new("panic", "faults").args(&["panic"]),
    Guest::new("pagefault", "faults").args(&["pagefault"]),
    Guest::new("write-text", "faults").args(&["write-text"]),
    Guest::new("exec-data", "faults").args(&["exec-data"]),
    Guest::new("null", "faults").args(&["null"]),
    Guest::new("exit42", "faults").args(&["exit", "42"]),
    // A status beyond 7 bits, as a PV guest (`stardust::exit`).
    Guest::new("exit128", "faults").args(&["exit", "128"]),
    // Every argument unchanged through xl's `extra =` and start_info's command line.
    Guest::new("args", "faults").args(ARGS),
    Guest::new("allocstress", "allocstress")
        .set(&["allocator=talc"])
        .timeout_s(60),
    Guest::new("xenprobe", "xenprobe").optional().timeout_s(60),
    Guest::new("timeprobe-sleep", "timeprobe").args(&["sleep"]),
    Guest::new("timeprobe-wall", "timeprobe").args(&["wall"]),
    Guest::new("timeprobe-guard", "timeprobe").args(&["guard"]),
    // The schedulers on Xen's timer (set_timer_op + VIRQ_TIMER) and SCHEDOP_block.
    Guest::new("threads-coop", "threads")
        .set(&["scheduler=coop"])
        .args(&["all"])
        .timeout_s(60),
    Guest::new("threads-preempt", "threads")
        .set(&["scheduler=preempt"])
        .args(&["all"])
        .timeout_s(60),
    Guest::new("threads-overflow", "threads")
        .set(&["scheduler=preempt"])
        .args(&["overflow"]),
    Guest::new("asyncprobe", "asyncprobe")
        .set(&["scheduler=async"])
        .args(&["all"])
        .timeout_s(60),
    // PVH guests (`xen_guest = "pvh"`, `type = "pvh"`): the PVH entry, native page tables.
    Guest::new("pvh-hello", "hello")
        .set(&["xen_guest=pvh"])
        .args(&["one", "two"]),
    Guest::new("pvh-panic", "faults")
        .set(&["xen_guest=pvh"])
        .args(&["panic"]),
    Guest::new("pvh-allocstress", "allocstress")
        .set(&["xen_guest=pvh", "allocator=talc"])
        .timeout_s(60),
    // The timer on PVH: set_timer_op + VIRQ_TIMER through the HVM callback vector.
    Guest::new("pvh-timeprobe-sleep", "timeprobe")
        .set(&["xen_guest=pvh"])
        .args(&["sleep"]),
    Guest::new("pvh-threads-coop", "threads")
        .set(&["xen_guest=pvh", "scheduler=coop"])
        .args(&["all"])
        .timeout_s(60),
    Guest::new("pvh-threads-preempt", "threads")
        .set(&["xen_guest=pvh", "scheduler=preempt"])
        .args(&["all"])
        .timeout_s(60),
    // PVH has the native IDT (a double-fault IST stack): a thread's overflow is reported.
    Guest::new("pvh-threads-overflow", "threads")
        .set(&["xen_guest=pvh", "scheduler=preempt"])
        .args(&["overflow"]),
    Guest::new("pvh-timeprobe-wall", "timeprobe")
        .set(&["xen_guest=pvh"])
        .args(&["wall"]),
    Guest::new("pvh-pagefault", "faults")
        .set(&["xen_guest=pvh"])
        .args(&["pagefault"]),
    Guest::new("pvh-write-text", "faults")
        .set(&["xen_guest=pvh"])
        .args(&["write-text"]),
    Guest::new("pvh-exec-data", "faults")
        .set(&["xen_guest=pvh"])
        .args(&["exec-data"]),
    Guest::new("pvh-args", "faults")
        .set(&["xen_guest=pvh"])
        .args(ARGS),
    // XenStore (ring from HVM_PARAM_STORE_PFN), watches, transactions, a grant copy.
    Guest::new("pvh-xenprobe", "xenprobe")
        .set(&["xen_guest=pvh"])
        .optional()
        .timeout_s(60),
    // The universal image (`platform = "universal"`), the same file tests/universal.rs boots on QEMU:
    // here it finds Xen by CPUID and runs the Xen PVH platform.
    Guest::new("universal-hello", "hello")
        .universal()
        .args(&["one", "two"]),
    Guest::new("universal-panic", "faults")
        .universal()
        .args(&["panic"]),
    // The status main returns, 255, from the universal image as a Xen PVH guest; its test boots
    // the same file on QEMU too.
    Guest::new("universal-return255", "faults")
        .universal()
        .args(&["return", "255"]),
    // The interrupt seam (`Platform::irq_register`, `irq_unmask`) on event channels: a loopback
    // pair of ports (alloc_unbound + bind_interdomain to ourselves), events sent and counted.
    Guest::new("irqprobe-evtchn", "irqprobe").args(&["evtchn"]),
    Guest::new("pvh-irqprobe-evtchn", "irqprobe")
        .set(&["xen_guest=pvh"])
        .args(&["evtchn"]),
    Guest::new("universal-irqprobe-evtchn", "irqprobe")
        .universal()
        .args(&["evtchn"]),
    // With the preemptive scheduler: the device handler and the timer's tick share the upcall,
    // and a thread waits for the events.
    Guest::new("irqprobe-evtchn-preempt", "irqprobe")
        .set(&["scheduler=preempt"])
        .args(&["evtchn", "50"]),
    // The universal image with the network profile (virtio-net, which Xen has not): no NIC, so
    // the network is down; hello runs as ever, echo says why it cannot serve.
    Guest::new("universal-net-hello", "hello")
        .profile("net")
        .universal()
        .args(&["one", "two"]),
    Guest::new("universal-net-echo", "echo")
        .profile("net")
        .universal(),
    Guest::new("universal-net-httpd", "httpd")
        .profile("net")
        .universal(),
    // The async network (the kernel's `net` task): none without a NIC either.
    Guest::new("universal-net-asyncecho", "asyncecho")
        .profile("net")
        .universal()
        .set(&["scheduler=async"]),
];

/// A guest that ran.
struct Ran {
    /// Its place in the batch (1-based, pvhello is 1): the lab names the domain `sdNN`.
    number: usize,
    spec: GuestSpec,
    result: GuestResult,
    outcome: XenOutcome,
    /// The image's bytes when it was given to the lab (universal guests, which are booted on
    /// QEMU afterwards and must be the same file).
    image: Option<Vec<u8>>,
}

/// What happened to a guest of [`GUESTS`].
enum Slot {
    Ran(Box<Ran>),
    /// Its image did not build (the error).
    BuildFailed(String),
    /// An optional guest left out, and why.
    LeftOut(String),
}

/// The one batch of this test process.
enum Batch {
    /// The lab cannot run here: the reason, and what building each guest gave (a guest that did
    /// not build fails its test even so).
    Skipped {
        why: String,
        guests: HashMap<&'static str, Slot>,
    },
    /// The lab itself failed (dom0 never ready, QEMU died): every test fails with this.
    LabFailed(String),
    Ran {
        reference: Box<GuestResult>,
        guests: HashMap<&'static str, Slot>,
    },
}

/// Straight to stderr, past libtest's capture: the batch's timings show in every run.
fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// The guest's `--set` overrides: `platform=xen` (or `pvh`), then its own.
fn sets(g: &Guest) -> Vec<String> {
    let mut set: Vec<String> = vec![format!("platform={}", g.platform)];
    set.extend(g.set.iter().map(|s| s.to_string()));
    set
}

fn build(g: &Guest) -> Result<PathBuf, String> {
    xtask::build_app(workspace(), g.app, g.profile, &sets(g))
        .map(|(_, image)| image.elf)
        .map_err(|e| e.to_string())
}

/// Builds every guest, then runs the reference guest and every guest that built in one lab boot
/// (once per process: every test waits on the first).
fn batch() -> &'static Batch {
    static BATCH: OnceLock<Batch> = OnceLock::new();
    // Never panics inside: a panic would leave the OnceLock empty and the next test would boot
    // the lab again.
    BATCH.get_or_init(run_batch)
}

fn run_batch() -> Batch {
    let ws = workspace();
    let lab = Lab::from_env();
    let mut slots: HashMap<&'static str, Slot> = HashMap::new();
    let mut specs: Vec<(&'static str, GuestSpec, Option<Vec<u8>>)> = Vec::new();
    for g in GUESTS {
        if g.optional && !ws.apps_dir().join(g.app).join("Cargo.toml").is_file() {
            slots.insert(
                g.name,
                Slot::LeftOut(format!("there is no apps/{} yet", g.app)),
            );
            continue;
        }
        // The guest's own profile: its memory and its guest type (`xen_guest`).
        let profile = match ws.load_profile(g.profile, &sets(g)) {
            Ok(p) => p,
            Err(e) => {
                slots.insert(g.name, Slot::BuildFailed(e.to_string()));
                continue;
            }
        };
        match build(g) {
            Ok(elf) => {
                let args: Vec<String> = g.args.iter().map(|s| s.to_string()).collect();
                let mut image = None;
                if g.platform != "xen" {
                    // As `run --image FILE --platform xen`: the guest type from the ELF notes.
                    match std::fs::read(&elf)
                        .map_err(|e| e.to_string())
                        .and_then(|b| {
                            xenlab_run::guest_type_of_image(&b)
                                .map(|t| (t, b))
                                .map_err(|e| e.to_string())
                        }) {
                        Ok((t, bytes)) => image = Some((t, bytes)),
                        Err(e) => {
                            slots.insert(g.name, Slot::BuildFailed(e));
                            continue;
                        }
                    }
                }
                let mut spec = xenlab_run::guest_spec(
                    g.name,
                    elf,
                    &profile,
                    "",
                    &args,
                    Duration::from_secs(g.timeout_s),
                );
                if let Some((guest_type, _)) = &image {
                    spec.guest_type = *guest_type;
                }
                specs.push((g.name, spec, image.map(|(_, b)| b)));
            }
            Err(e) => {
                slots.insert(g.name, Slot::BuildFailed(e));
            }
        }
    }
    if let Err(why) = lab.availability() {
        return Batch::Skipped {
            why: why.to_string(),
            guests: slots,
        };
    }
    let mut all = vec![GuestSpec::reference(&lab, RefGuest::PvHello)];
    all.extend(specs.iter().map(|(_, s, _)| s.clone()));
    let dir = ws.target_dir().join("xen-tests");
    let _ = std::fs::create_dir_all(&dir);
    let opts = BatchOptions {
        log: Some(dir.join("serial.log")),
        ..Default::default()
    };
    note(&format!(
        "xen tests: one Xen lab boot for {} guests (pvhello, {})",
        all.len(),
        specs
            .iter()
            .map(|(n, _, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let report = match lab.run_batch(&all, &opts) {
        Ok(r) => r,
        Err(e) => return Batch::LabFailed(format!("{e:#}")),
    };
    summarize(&report, &dir);
    if let Some(e) = &report.lab_error {
        return Batch::LabFailed(format!(
            "{e} (serial log {}; what each guest did is in {})",
            report.log.display(),
            dir.join("report.txt").display()
        ));
    }
    let mut results = report.guests.into_iter();
    let reference = Box::new(results.next().expect("the reference guest's result"));
    for (i, ((name, spec, image), result)) in specs.into_iter().zip(results).enumerate() {
        let outcome = xenlab_run::guest_outcome(&result, &spec);
        slots.insert(
            name,
            Slot::Ran(Box::new(Ran {
                number: i + 2,
                spec,
                result,
                outcome,
                image,
            })),
        );
    }
    Batch::Ran {
        reference,
        guests: slots,
    }
}

/// The batch's summary with timings on stderr; the full report in `dir/report.txt`.
fn summarize(report: &BatchReport, dir: &std::path::Path) {
    let mut full = Vec::new();
    let _ = xtask::xenlab::print_report(report, &mut full);
    let _ = std::fs::write(dir.join("report.txt"), &full);
    let s =
        |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{:.1} s", d.as_secs_f64()));
    let mut text = format!(
        "xen tests: Xen {}: dom0 ready {}, lab total {:.1} s; consoles in {}, serial log {}",
        report.xen_version.as_deref().unwrap_or("?"),
        s(report.dom0_ready),
        report.total.as_secs_f64(),
        dir.join("report.txt").display(),
        report.log.display()
    );
    for g in &report.guests {
        text.push_str(&format!("\n  {}", g.summary()));
    }
    note(&text);
}

/// Everything about a guest, for failure messages.
fn describe(ran: &Ran) -> String {
    let r = &ran.result;
    let mut s = format!(
        "{}\noutcome: {}\n--- console ---\n{}",
        r.summary(),
        ran.outcome.message(),
        r.console_text()
    );
    if !r.xen_lines.is_empty() {
        s.push_str(&format!(
            "\n--- Xen's lines while it ran ---\n{}",
            r.xen_lines.join("\n")
        ));
    }
    if !r.xl_output.is_empty() {
        s.push_str(&format!("\n--- xl create ---\n{}", r.xl_output.join("\n")));
    }
    s.push_str(&format!(
        "\n(command line {:?}, {} MiB)",
        ran.spec.cmdline.as_deref().unwrap_or(""),
        ran.spec.memory_mb
    ));
    s
}

/// The guest `name` of the batch; `None` (after printing the skip line) when the lab cannot run
/// here or an optional guest was left out. Panics when the lab failed or the image did not build.
fn guest(name: &str) -> Option<&'static Ran> {
    match batch() {
        Batch::Skipped { why, guests } => {
            if let Some(Slot::BuildFailed(e)) = guests.get(name) {
                panic!("guest {name} did not build for Xen: {e}");
            }
            xtask::xenlab::skip_test(why);
            None
        }
        Batch::LabFailed(e) => panic!("the Xen lab failed: {e}"),
        Batch::Ran { guests, .. } => match guests.get(name) {
            Some(Slot::Ran(ran)) => Some(ran),
            Some(Slot::BuildFailed(e)) => panic!("guest {name} did not build for Xen: {e}"),
            Some(Slot::LeftOut(why)) => {
                xtask::cmd::test::report_skip(None, why);
                None
            }
            None => panic!("no guest {name} in GUESTS"),
        },
    }
}

/// The first console line with every one of `needles`.
#[track_caller]
fn line_with<'a>(ran: &'a Ran, needles: &[&str]) -> &'a str {
    match ran
        .result
        .console
        .iter()
        .find(|l| needles.iter().all(|n| l.contains(n)))
    {
        Some(l) => l,
        None => panic!("no console line has all of {needles:?}\n{}", describe(ran)),
    }
}

#[track_caller]
fn assert_ended(ran: &Ran, shutdown: Shutdown, status: i32) {
    assert!(
        ran.result.shutdown == shutdown && ran.outcome.status() == Some(status),
        "expected {shutdown} with status {status}\n{}",
        describe(ran)
    );
}

#[test]
fn reference_pvhello_powers_off() {
    let reference = match batch() {
        Batch::Skipped { why, .. } => return xtask::xenlab::skip_test(why),
        Batch::LabFailed(e) => panic!("the Xen lab failed: {e}"),
        Batch::Ran { reference, .. } => reference,
    };
    assert_eq!(
        reference.shutdown,
        Shutdown::Poweroff,
        "the lab's own reference guest: {}\n{}",
        reference.summary(),
        reference.console_text()
    );
    assert!(
        reference
            .console
            .iter()
            .any(|l| l.contains("pvhello: hello")),
        "{}",
        reference.console_text()
    );
}

#[test]
fn hello_prints_its_arguments_and_powers_off() {
    let Some(ran) = guest("hello") else { return };
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["Hello from Stardust!"]);
    let line = line_with(ran, &["command line: "]);
    assert_eq!(
        line.trim_end(),
        "command line: one two",
        "{}",
        describe(ran)
    );
}

/// The arguments `faults args` printed (`faults: arg N: "..."`), as `{:?}` of each.
fn printed_args(ran: &Ran) -> Vec<String> {
    ran.result
        .console
        .iter()
        .filter_map(|l| l.trim_end().strip_prefix("faults: arg "))
        .map(|l| l.split_once(": ").map_or(l, |(_, a)| a).to_string())
        .collect()
}

#[test]
fn every_argument_arrives_unchanged_on_pv_and_pvh() {
    let expected: Vec<String> = ARGS[1..].iter().map(|a| format!("{a:?}")).collect();
    for name in ["args", "pvh-args"] {
        let Some(ran) = guest(name) else { return };
        assert_ended(ran, Shutdown::Poweroff, 0);
        assert_eq!(printed_args(ran), expected, "{name}: {}", describe(ran));
        assert!(
            !ran.result.console.iter().any(|l| l.contains("DEBUG")),
            "{name}: the kernel took the app's `log=debug`\n{}",
            describe(ran)
        );
    }
}

#[test]
fn hello_without_allocator_on_a_16k_stack_powers_off() {
    let Some(ran) = guest("minimal-hello") else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["Hello from Stardust!"]);
}

#[test]
fn panic_crashes_with_the_panic_line() {
    let Some(ran) = guest("panic") else { return };
    assert_ended(ran, Shutdown::Crash, 101);
    let line = line_with(ran, &["PANIC: ", "panicked at ", "deliberate panic"]);
    assert!(
        line.starts_with("PANIC: ") && line.contains(".rs:"),
        "{line:?}"
    );
    line_with(ran, &["xen: exit status 101"]);
}

/// A PVH guest: its lines through the console ring (found by HVM params), then
/// `SCHEDOP_shutdown(poweroff)`, reason 0.
#[test]
fn pvh_hello_prints_its_arguments_and_powers_off() {
    let Some(ran) = guest("pvh-hello") else {
        return;
    };
    assert_eq!(ran.spec.guest_type, GuestType::Pvh, "{}", describe(ran));
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["Hello from Stardust!"]);
    let line = line_with(ran, &["command line: "]);
    assert_eq!(
        line.trim_end(),
        "command line: one two",
        "{}",
        describe(ran)
    );
}

/// A panic on PVH ends as a crash (reason 3) with its status, never as the clean power-off
/// that `cli; hlt` would be on Xen HVM.
#[test]
fn pvh_panic_crashes_with_the_panic_line() {
    let Some(ran) = guest("pvh-panic") else {
        return;
    };
    assert_ended(ran, Shutdown::Crash, 101);
    line_with(ran, &["PANIC: ", "panicked at ", "deliberate panic"]);
    line_with(ran, &["xen: exit status 101"]);
}

/// The universal image (`platform = "universal"`) on Xen: booted as PVH (its notes), it finds Xen by
/// CPUID and prints through the console ring, then powers off. The very file Xen booted, byte
/// for byte, then boots on QEMU microvm and q35 (COM1, the KVM platform) with the same lines.
#[test]
fn universal_hello_runs_on_xen_pvh_and_the_same_file_on_qemu() {
    let Some(ran) = guest("universal-hello") else {
        return;
    };
    assert_eq!(ran.spec.guest_type, GuestType::Pvh, "{}", describe(ran));
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["Hello from Stardust!"]);
    let line = line_with(ran, &["command line: "]);
    assert_eq!(
        line.trim_end(),
        "command line: one two",
        "{}",
        describe(ran)
    );
    let booted = ran
        .image
        .as_ref()
        .expect("a universal guest keeps its bytes");
    for machine in [Machine::Microvm, Machine::Q35] {
        let now = file_bytes(&ran.spec.kernel);
        assert!(
            &now == booted,
            "{} changed after Xen booted it: {} then, {} now",
            ran.spec.kernel.display(),
            fingerprint(booted),
            fingerprint(&now)
        );
        note(&format!(
            "xen tests: universal-hello {} {}: Xen PVH, now {machine:?}",
            ran.spec.kernel.display(),
            fingerprint(&now)
        ));
        let boot = boot_image(&ran.spec.kernel, machine, &["one", "two"]);
        assert_exit(&boot, 0);
        let qemu_lines: Vec<&str> = boot.lines().collect();
        assert!(
            qemu_lines.contains(&"Hello from Stardust!"),
            "{}",
            boot.stdout
        );
        assert!(
            qemu_lines
                .iter()
                .any(|l| l.trim_end() == "command line: one two"),
            "{}",
            boot.stdout
        );
    }
}

/// A panic in the universal image on Xen: the Xen platform's crash with the status line.
#[test]
fn universal_panic_crashes_with_the_panic_line() {
    let Some(ran) = guest("universal-panic") else {
        return;
    };
    assert_eq!(ran.spec.guest_type, GuestType::Pvh, "{}", describe(ran));
    assert_ended(ran, Shutdown::Crash, 101);
    line_with(ran, &["panicked at ", "deliberate panic"]);
    line_with(ran, &["xen: exit status 101"]);
}

/// CPU exceptions on PVH go through the native IDT to the kernel's report (status 102, a
/// crash), and the image is W^X under the kernel's own page tables.
#[test]
fn pvh_exceptions_are_reported_and_the_image_is_w_xor_x() {
    for (name, needle) in [
        ("pvh-pagefault", "page not present on read"),
        ("pvh-write-text", "protection violation on write"),
        ("pvh-exec-data", "protection violation on instruction fetch"),
    ] {
        let Some(ran) = guest(name) else {
            return;
        };
        assert_ended(ran, Shutdown::Crash, 102);
        line_with(ran, &["EXCEPTION: ", "#PF"]);
        line_with(ran, &[needle]);
        line_with(ran, &["xen: exit status 102"]);
    }
}

#[test]
fn pvh_allocstress_passes_on_talc() {
    let Some(ran) = guest("pvh-allocstress") else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["allocstress: ok"]);
}

/// Sleeps on PVH (the one-shot timer through the callback vector) are never early.
#[test]
fn pvh_timeprobe_sleeps_are_never_early() {
    let Some(ran) = guest("pvh-timeprobe-sleep") else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    for ms in [1, 10, 50] {
        line_with(ran, &[&format!("slept {ms} ms: late by "), " us"]);
    }
}

#[test]
fn pvh_coop_threads_pass() {
    threads_pass(
        "pvh-threads-coop",
        "hog: not preempted (coop, as documented)",
    );
}

/// Preemption needs the timer interrupt: on PVH, `VIRQ_TIMER` through the callback vector.
#[test]
fn pvh_preempt_threads_pass() {
    threads_pass("pvh-threads-preempt", "hog: preempted");
}

/// The wall clock from shared info (placed by `XENMEM_add_to_physmap` on PVH).
#[test]
fn pvh_timeprobe_wall_clock_is_recent() {
    let Some(ran) = guest("pvh-timeprobe-wall") else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    let line = line_with(ran, &["wall clock: "]);
    let seconds: u64 = line
        .trim()
        .trim_start_matches("wall clock: ")
        .parse()
        .unwrap_or_else(|e| panic!("bad wall clock line {line:?}: {e}\n{}", describe(ran)));
    assert!(seconds >= 1_704_067_200, "{}", describe(ran));
}

/// The image is W^X on Xen too (the PV memory code rewrites Xen's initial mappings), and page 0
/// is unmapped.
#[test]
fn the_image_is_w_xor_x_and_page_0_unmapped() {
    for (name, needle) in [
        ("write-text", "protection violation on write"),
        ("exec-data", "protection violation on instruction fetch"),
        ("null", "page not present on read"),
    ] {
        let Some(ran) = guest(name) else {
            return;
        };
        assert_ended(ran, Shutdown::Crash, 102);
        line_with(ran, &["EXCEPTION: ", "#PF"]);
        line_with(ran, &[needle]);
    }
}

#[test]
fn page_fault_crashes_with_the_exception_line() {
    let Some(ran) = guest("pagefault") else {
        return;
    };
    assert_ended(ran, Shutdown::Crash, 102);
    let line = line_with(ran, &["EXCEPTION: ", "#PF"]);
    assert!(
        line.starts_with("EXCEPTION: "),
        "{line:?}\n{}",
        describe(ran)
    );
    line_with(ran, &["error code=0x", "page not present on read"]);
    line_with(ran, &["rip=0x"]);
    line_with(ran, &["cr2=0xdead0000"]);
    line_with(ran, &["xen: exit status 102"]);
}

#[test]
fn an_app_status_comes_back_through_the_status_line() {
    let Some(ran) = guest("exit42") else { return };
    assert_ended(ran, Shutdown::Crash, 42);
    assert!(
        matches!(
            ran.outcome,
            XenOutcome::Exited {
                source: StatusSource::StatusLine,
                ..
            }
        ),
        "{}",
        describe(ran)
    );
    assert_eq!(ran.outcome.exit_code(), 42);
}

/// Every status 0-255 reaches the caller on Xen too: 128 from a PV guest's `stardust::exit`, and
/// 255 returned from `main` of the universal image as a PVH guest, whose very file then gives
/// 255 on QEMU (where isa-debug-exit carries 7 bits and the status travels on the console).
#[test]
fn statuses_beyond_seven_bits_reach_the_caller_on_pv_pvh_and_the_same_file_on_qemu() {
    for (name, code) in [("exit128", 128), ("universal-return255", 255)] {
        let Some(ran) = guest(name) else { return };
        assert_ended(ran, Shutdown::Crash, code);
        assert_eq!(
            i32::from(ran.outcome.exit_code()),
            code,
            "{}",
            describe(ran)
        );
        line_with(ran, &[&format!("xen: exit status {code}")]);
        // Xen's exit carries the status itself: no QEMU-style `exit status N` line.
        assert!(
            !ran.result
                .console
                .iter()
                .any(|l| l.trim() == format!("exit status {code}")),
            "{}",
            describe(ran)
        );
    }
    let Some(ran) = guest("universal-return255") else {
        return;
    };
    let booted = ran
        .image
        .as_ref()
        .expect("a universal guest keeps its bytes");
    let now = file_bytes(&ran.spec.kernel);
    assert!(
        &now == booted,
        "{} changed after Xen booted it: {} then, {} now",
        ran.spec.kernel.display(),
        fingerprint(booted),
        fingerprint(&now)
    );
    let boot = boot_image(&ran.spec.kernel, Machine::Microvm, &["return", "255"]);
    assert_exit(&boot, 255);
    assert_eq!(
        boot.lines().last(),
        Some("exit status 255"),
        "{}",
        boot.stdout
    );
}

#[test]
fn allocstress_passes_on_talc() {
    let Some(ran) = guest("allocstress") else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["allocstress: ok"]);
    line_with(ran, &["allocstress: ", "checksum 0x"]);
}

#[test]
fn xenprobe_reads_its_name_and_domid_and_passes() {
    xenprobe_passes("xenprobe");
}

#[test]
fn pvh_xenprobe_reads_its_name_and_domid_and_passes() {
    xenprobe_passes("pvh-xenprobe");
}

fn xenprobe_passes(name: &str) {
    let Some(ran) = guest(name) else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["xenprobe: ok"]);
    // 100 lines of 80 bytes went through the 2 KiB console ring, none lost.
    let lines = ran
        .result
        .console
        .iter()
        .filter(|l| l.contains("xenprobe: console line"))
        .count();
    assert_eq!(lines, 100, "{}", describe(ran));
    // The lab names guest n `sdNN` (its place in the batch, pvhello first).
    let domid = ran.result.domid.expect("the lab saw its domain id");
    line_with(ran, &[&format!("xenprobe: domid={domid}")]);
    line_with(ran, &[&format!("xenprobe: name=sd{:02}", ran.number)]);
}

/// Sleeps end on the one-shot timer VIRQ, never early.
#[test]
fn timeprobe_sleeps_are_never_early() {
    let Some(ran) = guest("timeprobe-sleep") else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    for ms in [1, 10, 50] {
        line_with(ran, &[&format!("slept {ms} ms: late by "), " us"]);
    }
}

/// The wall clock (shared info's, plus system time) is after 2024-01-01.
#[test]
fn timeprobe_wall_clock_is_recent() {
    let Some(ran) = guest("timeprobe-wall") else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    let line = line_with(ran, &["wall clock: "]);
    let seconds: u64 = line
        .trim()
        .trim_start_matches("wall clock: ")
        .parse()
        .unwrap_or_else(|e| panic!("bad wall clock line {line:?}: {e}\n{}", describe(ran)));
    assert!(seconds >= 1_704_067_200, "{}", describe(ran));
}

/// A page unmapped by `update_va_mapping` faults when read.
#[test]
fn timeprobe_guard_page_faults() {
    let Some(ran) = guest("timeprobe-guard") else {
        return;
    };
    assert_ended(ran, Shutdown::Crash, 102);
    let line = line_with(ran, &["guard page at 0x"]);
    let page = line.trim().trim_start_matches("guard page at ");
    line_with(ran, &["EXCEPTION: ", "#PF"]);
    line_with(ran, &["page not present on read"]);
    line_with(ran, &[&format!("cr2={page}")]);
}

fn threads_pass(name: &str, hog: &str) {
    let Some(ran) = guest(name) else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["mutex count: 10000 (1000 threads"]);
    line_with(ran, &["channel: 4000 items", "no loss, no duplicates"]);
    line_with(ran, &["semaphore: at most 3 of 20"]);
    line_with(ran, &["sleepers woke in order [1, 2, 3, 4, 5, 6, 7, 8]"]);
    line_with(ran, &[hog]);
    line_with(ran, &["threads: all passed"]);
}

#[test]
fn coop_threads_pass_on_xen() {
    threads_pass("threads-coop", "hog: not preempted (coop, as documented)");
}

#[test]
fn preempt_threads_pass_on_xen() {
    threads_pass("threads-preempt", "hog: preempted");
}

/// On PVH the guest has its own IDT with an IST stack for double faults, so a thread running
/// into its guard page is reported by the guest itself: the panic names the thread.
#[test]
fn pvh_thread_stack_overflow_is_a_panic_naming_the_thread() {
    let Some(ran) = guest("pvh-threads-overflow") else {
        return;
    };
    assert_ended(ran, Shutdown::Crash, 101);
    line_with(
        ran,
        &[
            "PANIC:",
            "stack overflow in thread 'deep'",
            "16 KiB stack",
            "guard page",
        ],
    );
}

/// On PV, Xen cannot push the exception frame of a fault in a thread's guard page (no IST for
/// a PV guest's kernel mode), so it kills the domain; its register dump names the overflow
/// (`cargo xtask run` says so, from the same dump).
#[test]
fn thread_stack_overflow_crashes_the_pv_domain_in_its_guard_page() {
    let Some(ran) = guest("threads-overflow") else {
        return;
    };
    assert_eq!(ran.result.shutdown, Shutdown::Crash, "{}", describe(ran));
    let cr2 = xenlab_run::crash_cr2(&ran.result.xen_lines);
    let rsp = xenlab_run::crash_register(&ran.result.xen_lines, "rsp");
    let hint = xenlab_run::crash_hint(cr2.unwrap_or_default(), rsp, None);
    assert!(
        hint.contains("a thread's stack overflow"),
        "{hint}\n{}",
        describe(ran)
    );
    // Not only near the stack pointer: inside the guard page of that very thread.
    let line = line_with(ran, &["overflow: thread 'deep' has its guard page at 0x"]);
    let guard = line
        .rsplit_once("0x")
        .and_then(|(_, hex)| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("a guard page address");
    let cr2 = cr2.expect("Xen's dump names the faulting address");
    assert!(
        (guard..guard + 4096).contains(&cr2),
        "the fault at {cr2:#x} is not in thread 'deep''s guard page at {guard:#x}\n{}",
        describe(ran)
    );
}

#[test]
fn async_tasks_pass_on_xen() {
    let Some(ran) = guest("asyncprobe") else {
        return;
    };
    assert_ended(ran, Shutdown::Poweroff, 0);
    line_with(ran, &["mutex count: 10000"]);
    line_with(ran, &["channel: 4000 items", "no loss, no duplicates"]);
    line_with(ran, &["asyncprobe: all passed"]);
}

/// The command line's own answer where the lab cannot run (no lab boot: `STARDUST_XENLAB=off`).
#[test]
fn run_says_why_the_lab_cannot_run() {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&workspace().root)
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(["run", "hello", "--platform", "xen"])
        .env(xtask::xenlab::LAB_SWITCH_ENV, "off")
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(i32::from(xenlab_run::LAB_EXIT)),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot run on Xen here: the Xen lab is switched off"),
        "{stderr}"
    );
}

/// The interrupt seam on Xen's event channels (apps/irqprobe `evtchn`): a loopback pair of
/// ports, a handler registered through `Platform::irq_register`, every event masked before its
/// call (oneshot), held by Xen while masked and delivered on `irq_unmask`, on PV, PVH, the
/// universal image, and under the preemptive scheduler.
#[test]
fn event_channel_interrupts_pass_the_seam_on_pv_pvh_and_universal() {
    for (name, n) in [
        ("irqprobe-evtchn", 20),
        ("pvh-irqprobe-evtchn", 20),
        ("universal-irqprobe-evtchn", 20),
        ("irqprobe-evtchn-preempt", 50),
    ] {
        let Some(ran) = guest(name) else { return };
        if name.starts_with("pvh") || name.starts_with("universal") {
            assert_eq!(ran.spec.guest_type, GuestType::Pvh, "{}", describe(ran));
        }
        assert_ended(ran, Shutdown::Poweroff, 0);
        line_with(ran, &["irqprobe: event channel ports ", "a loopback pair"]);
        line_with(
            ran,
            &[
                &format!("irqprobe: {n} events on port "),
                "(CPU 0), each held while masked until unmasked",
            ],
        );
        line_with(
            ran,
            &["irqprobe: two events sent while masked arrived as one"],
        );
        line_with(ran, &["irqprobe: ok"]);
    }
}

/// The universal image of the network profile as a Xen PVH guest: virtio-net finds no device
/// on Xen, the kernel says the network is down, and the app runs on: hello powers off, the
/// servers (echo, httpd, and asyncecho under the async executor) end with their own status 1
/// naming the missing device. Nothing panics or faults.
#[test]
fn the_universal_net_image_runs_without_a_nic_on_xen() {
    for name in [
        "universal-net-hello",
        "universal-net-echo",
        "universal-net-httpd",
        "universal-net-asyncecho",
    ] {
        let Some(ran) = guest(name) else { return };
        assert_eq!(ran.spec.guest_type, GuestType::Pvh, "{}", describe(ran));
        line_with(ran, &["net: no network device: the network is down"]);
        for bad in ["PANIC", "EXCEPTION", "[ERROR"] {
            assert!(
                !ran.result.console.iter().any(|l| l.contains(bad)),
                "{name}: {bad}\n{}",
                describe(ran)
            );
        }
        if name == "universal-net-hello" {
            assert_ended(ran, Shutdown::Poweroff, 0);
            let line = line_with(ran, &["command line: "]);
            assert_eq!(
                line.trim_end(),
                "command line: one two",
                "{}",
                describe(ran)
            );
        } else {
            assert_ended(ran, Shutdown::Crash, 1);
            let app = name.trim_start_matches("universal-net-");
            line_with(ran, &[&format!("{app}: "), "no network device"]);
        }
    }
}
