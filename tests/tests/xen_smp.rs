//! Xen's other vCPUs on a real Xen (the lab; its QEMU gets 2 CPUs, TCG with a thread each,
//! because the guests have more than one vCPU): smpprobe and `threads all` as PV and as PVH
//! guests with `vcpus = 2`, and `vcpus = 4` on the lab's 2 physical CPUs (more vCPUs than
//! pCPUs). ONE lab boot runs every guest; each `#[test]` checks its own.
//!
//! The kernel must say that every vCPU came up, and each probe's checks must pass: the parallel
//! sum and the count under one lock, a page unmapped on CPU 0 that faults when CPU 1 reads it
//! again, a panic on CPU 1 that ends the domain with its message and status, a stack overflow on
//! CPU 1 (PVH: a double fault on its own IST stack), the thread runtime on every CPU, and an
//! event channel routed to another vCPU (`irqprobe evtchn cpu C`).
//! `smpprobe bench` runs on 1 and on 2 vCPUs in the same boot; its figures are printed (a
//! speedup is not asserted: the lab's TCG shares 2 host cores with other work).
//!
//! Where the lab cannot run (not built, `STARDUST_XENLAB=off`) every test prints
//! `skipped: <test>: <why>` and passes; with `STARDUST_XENLAB_REQUIRED=1` they fail instead.
//! The guests are built first: an image that does not build fails its test, lab or no lab.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use stardust_tests::workspace;
use xtask::cmd::run::xen::{self as xenlab_run, XenOutcome};
use xtask::xenlab::{BatchOptions, GuestResult, GuestSpec, Lab};

/// One guest: its name, app, guest type (`pv`, `pvh`, or `universal`: the universal image,
/// which Xen boots as PVH), vCPUs, the app's arguments.
struct Guest {
    name: &'static str,
    app: &'static str,
    kind: &'static str,
    cpus: usize,
    scheduler: &'static str,
    args: &'static [&'static str],
}

const fn g(
    name: &'static str,
    app: &'static str,
    kind: &'static str,
    cpus: usize,
    args: &'static [&'static str],
) -> Guest {
    Guest {
        name,
        app,
        kind,
        cpus,
        scheduler: "coop",
        args,
    }
}

/// `smpprobe parallel`'s arguments (a sum of 400,000 items).
const PARALLEL: &[&str] = &["parallel", "400000"];

const GUESTS: [Guest; 20] = [
    g("pv-parallel-2", "smpprobe", "pv", 2, PARALLEL),
    g("pvh-parallel-2", "smpprobe", "pvh", 2, PARALLEL),
    g("pv-parallel-4", "smpprobe", "pv", 4, PARALLEL),
    g("pvh-parallel-4", "smpprobe", "pvh", 4, PARALLEL),
    g("universal-parallel-2", "smpprobe", "universal", 2, PARALLEL),
    g("pv-shootdown", "smpprobe", "pv", 2, &["shootdown"]),
    g("pvh-shootdown", "smpprobe", "pvh", 2, &["shootdown"]),
    g("pv-panic", "smpprobe", "pv", 2, &["panic"]),
    g("pvh-panic", "smpprobe", "pvh", 2, &["panic"]),
    g("pv-overflow", "smpprobe", "pv", 2, &["overflow"]),
    g("pvh-overflow", "smpprobe", "pvh", 2, &["overflow"]),
    g("pv-threads-2", "threads", "pv", 2, &["all"]),
    g("pvh-threads-4", "threads", "pvh", 4, &["all"]),
    g("pv-bench-1", "smpprobe", "pv", 1, &["bench"]),
    g("pv-bench-2", "smpprobe", "pv", 2, &["bench"]),
    g("pvh-bench-1", "smpprobe", "pvh", 1, &["bench"]),
    g("pvh-bench-2", "smpprobe", "pvh", 2, &["bench"]),
    g("pv-hello-1", "hello", "pv", 1, &[]),
    g(
        "pv-evtchn-cpu1",
        "irqprobe",
        "pv",
        2,
        &["evtchn", "cpu", "1"],
    ),
    g(
        "pvh-evtchn-cpu3",
        "irqprobe",
        "pvh",
        4,
        &["evtchn", "cpu", "3"],
    ),
];

enum Batch {
    Skipped(String),
    Failed(String),
    Ran(Vec<(GuestSpec, GuestResult)>),
}

fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn batch() -> &'static Batch {
    static BATCH: OnceLock<Batch> = OnceLock::new();
    // Never panics inside: the next test would boot the lab again.
    BATCH.get_or_init(run)
}

fn run() -> Batch {
    let ws = workspace();
    let dir = ws.target_dir().join("xen-smp");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Batch::Failed(format!("creating {}: {e}", dir.display()));
    }
    let mut specs = Vec::new();
    for g in &GUESTS {
        let mut set = vec![
            format!("cpus={}", g.cpus),
            format!("scheduler={}", g.scheduler),
        ];
        match g.kind {
            "pv" => set.push("platform=xen".into()),
            "pvh" => set.extend(["platform=xen".into(), "xen_guest=pvh".into()]),
            _ => set.push("platform=universal".into()),
        }
        let built = ws.load_profile("default", &set).and_then(|profile| {
            xtask::build_app(ws, g.app, "default", &set).map(|(_, i)| (profile, i.elf))
        });
        let (profile, elf) = match built {
            Ok(b) => b,
            Err(e) => return Batch::Failed(format!("building {}: {e:#}", g.name)),
        };
        // The universal image boots as what its ELF notes say (PVH), as `run --image` does.
        let universal_type = if g.kind == "universal" {
            match std::fs::read(&elf)
                .map_err(|e| e.to_string())
                .and_then(|b| xenlab_run::guest_type_of_image(&b).map_err(|e| e.to_string()))
            {
                Ok(t) => Some(t),
                Err(e) => return Batch::Failed(format!("{}: {e}", g.name)),
            }
        } else {
            None
        };
        let args: Vec<String> = g.args.iter().map(|s| s.to_string()).collect();
        let mut spec =
            xenlab_run::guest_spec(g.name, elf, &profile, "", &args, Duration::from_secs(120));
        if let Some(t) = universal_type {
            spec.guest_type = t;
        }
        specs.push(spec);
    }
    let lab = Lab::from_env();
    if let Err(why) = lab.availability() {
        return Batch::Skipped(why.to_string());
    }
    let opts = BatchOptions {
        log: Some(dir.join("serial.log")),
        ..Default::default()
    };
    note(&format!(
        "xen-smp: one Xen lab boot ({} host CPUs) for {} guests",
        opts.host_cpus_for(&specs),
        specs.len()
    ));
    let mut results = match lab.run_batch(&specs, &opts) {
        Err(e) => return Batch::Failed(format!("{e:#}")),
        Ok(report) => {
            if let Some(e) = &report.lab_error {
                return Batch::Failed(format!("{e} (serial log {})", report.log.display()));
            }
            report.guests
        }
    };
    for g in &results {
        note(&format!("xen-smp: {}", g.summary()));
    }
    // The lab's PVH vCPUs (Xen's HVM under QEMU's emulation of SVM) now and then triple-fault
    // right after an instruction Xen intercepted (a hypercall's `vmmcall`, `rdtsc`), with a
    // valid stack and no exception of the guest's own reported: about one 4-vCPU guest in 30,
    // never a PV guest. Such a guest gets one more run, in a second lab boot, said here; a
    // second triple fault fails its test.
    let lab_faults: Vec<usize> = (0..results.len())
        .filter(|&i| GUESTS[i].kind != "pv" && lab_triple_fault(&results[i]))
        .collect();
    if !lab_faults.is_empty() {
        let again: Vec<GuestSpec> = lab_faults.iter().map(|&i| specs[i].clone()).collect();
        for &i in &lab_faults {
            note(&format!(
                "xen-smp: {} triple-faulted at an intercepted instruction (the lab's emulated \
                 SVM): one more run",
                GUESTS[i].name
            ));
        }
        let opts = BatchOptions {
            log: Some(dir.join("serial-again.log")),
            ..Default::default()
        };
        match lab.run_batch(&again, &opts) {
            Err(e) => return Batch::Failed(format!("the second run: {e:#}")),
            Ok(report) => {
                if let Some(e) = &report.lab_error {
                    return Batch::Failed(format!(
                        "the second run: {e} (serial log {})",
                        report.log.display()
                    ));
                }
                for (&i, g) in lab_faults.iter().zip(report.guests) {
                    note(&format!("xen-smp: again: {}", g.summary()));
                    results[i] = g;
                }
            }
        }
    }
    Batch::Ran(specs.into_iter().zip(results).collect())
}

/// Whether `r` ended in a triple fault (Xen's line, a reboot) without an exception report or
/// panic of the guest's own.
fn lab_triple_fault(r: &GuestResult) -> bool {
    let text = r.console_text();
    r.xen_lines.iter().any(|l| l.contains("Triple fault"))
        && !text.contains("EXCEPTION")
        && !text.contains("PANIC")
}

/// Guest `name`'s console, after checking it ended with `status` and said that all its vCPUs
/// came up; `None` when the lab is skipped.
fn console(name: &str, status: i32) -> Option<String> {
    let ran = match batch() {
        Batch::Skipped(why) => {
            xtask::xenlab::skip_test(why);
            return None;
        }
        Batch::Failed(e) => panic!("the Xen lab failed: {e}"),
        Batch::Ran(ran) => ran,
    };
    let i = GUESTS
        .iter()
        .position(|g| g.name == name)
        .expect("a guest of GUESTS");
    let (spec, r) = &ran[i];
    assert_eq!(r.name, name);
    let text = r.console_text();
    let describe = format!("{}\n--- console ---\n{text}", r.summary());
    match xenlab_run::guest_outcome(r, spec) {
        XenOutcome::Exited { status: s, .. } if s == status => {}
        other => panic!("{name}: expected status {status}, got {other:?}\n{describe}"),
    }
    let n = GUESTS[i].cpus;
    if n > 1 {
        let up = format!("{n} CPUs up (the machine has {n}; profile setting cpus = {n})");
        assert!(text.contains(&up), "{name}: `{up}`\n{describe}");
    }
    Some(text)
}

fn has(name: &str, text: &str, line: &str) {
    assert!(
        text.contains(line),
        "{name}: `{line}` missing\n--- console ---\n{text}"
    );
}

#[test]
fn a_computation_split_across_vcpus_and_a_shared_lock_count_right() {
    for (name, n) in [
        ("pv-parallel-2", 2),
        ("pvh-parallel-2", 2),
        ("pv-parallel-4", 4),
        ("pvh-parallel-4", 4),
        ("universal-parallel-2", 2),
    ] {
        let Some(text) = console(name, 0) else { return };
        has(
            name,
            &text,
            &format!("smpprobe: parallel sum on {n} CPUs matches"),
        );
        has(
            name,
            &text,
            &format!("smpprobe: {n} CPUs counted {} under one lock", n * 100_000),
        );
    }
}

/// In this lab the fault comes even without Xen's flush of the other vCPUs (checked by hand:
/// PV with `UVMF_INVLPG` alone, PVH without `HVMOP_flush_tlbs`): something else drops CPU 1's
/// TLB in between here. Not found out which; XPTI is off in the lab (Xen's boot log says so), so
/// the likely one is Xen switching CPU 1's physical CPU to another vCPU (dom0's, which the
/// console line wakes: three runnable vCPUs on two physical CPUs), a CR3 change QEMU's TCG
/// flushes on. The probe keeps CPU 1 spinning between its reads so that where its vCPU keeps
/// its physical CPU a missing flush shows; the QEMU test of the same probe (tests/smp.rs) does
/// fail without the shoot-down.
#[test]
fn a_page_unmapped_on_vcpu_0_faults_on_vcpu_1() {
    for name in ["pv-shootdown", "pvh-shootdown"] {
        let Some(text) = console(name, 102) else {
            return;
        };
        has(
            name,
            &text,
            "smpprobe: CPU 1 reads the page unmapped on CPU 0",
        );
        has(name, &text, "CPU 1 EXCEPTION: #PF page fault");
        assert!(!text.contains("FAIL"), "{name}\n{text}");
    }
}

#[test]
fn a_panic_on_vcpu_1_ends_the_domain_with_its_message() {
    for name in ["pv-panic", "pvh-panic"] {
        let Some(text) = console(name, 101) else {
            return;
        };
        has(name, &text, "CPU 1 PANIC: panicked at");
        has(name, &text, "smpprobe: a panic on CPU 1");
    }
}

#[test]
fn an_overflow_of_vcpu_1_s_stack_is_reported() {
    // PVH: the push into the guard page cannot take a #PF frame there: a double fault, on
    // CPU 1's own double-fault stack (its TSS's IST1).
    let Some(text) = console("pvh-overflow", 102) else {
        return;
    };
    has("pvh-overflow", &text, "CPU 1 EXCEPTION: #DF double fault");
}

/// A device's event channel routed to another vCPU (`EVTCHNOP_bind_vcpu` through
/// `stardust::irq::register`): every event's handler runs there, masking and unmasking as on
/// vCPU 0.
#[test]
fn an_event_channel_routed_to_another_vcpu_is_handled_there() {
    for (name, cpu) in [("pv-evtchn-cpu1", 1), ("pvh-evtchn-cpu3", 3)] {
        let Some(text) = console(name, 0) else { return };
        has(
            name,
            &text,
            &format!("(CPU {cpu}), each held while masked until unmasked"),
        );
        has(name, &text, "irqprobe: ok");
        assert!(!text.contains("FAIL"), "{name}\n{text}");
    }
}

#[test]
fn one_vcpu_still_boots_without_a_word_about_cpus() {
    let Some(text) = console("pv-hello-1", 0) else {
        return;
    };
    has("pv-hello-1", &text, "Hello from Stardust!");
    assert!(!text.contains("CPUs up"), "{text}");
}

#[test]
fn threads_all_passes_with_threads_on_every_vcpu() {
    for name in ["pv-threads-2", "pvh-threads-4"] {
        let Some(text) = console(name, 0) else { return };
        has(name, &text, "mutex count: 10000 (1000 threads");
        has(name, &text, "threads stayed on their CPUs");
        has(name, &text, "threads: all passed");
    }
}

/// `bench parallel: N items in T us on C CPUs`: T.
fn parallel_us(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("bench parallel: "))?;
    let rest = line.split(" items in ").nth(1)?;
    rest.split(" us").next()?.trim().parse().ok()
}

#[test]
fn the_bench_runs_on_one_and_two_vcpus() {
    for guest in ["pv", "pvh"] {
        let one = format!("{guest}-bench-1");
        let two = format!("{guest}-bench-2");
        let (Some(a), Some(b)) = (console(&one, 0), console(&two, 0)) else {
            return;
        };
        let (Some(t1), Some(t2)) = (parallel_us(&a), parallel_us(&b)) else {
            panic!("{guest}: no `bench parallel` line\n{a}\n{b}");
        };
        has(&two, &b, "on 2 CPUs");
        // Not a speedup, but a clock that ran: a frozen one measured 0 us here once.
        assert!(
            t1 > 0.0 && t2 > 0.0,
            "{guest}: the clock did not advance during the bench\n{a}\n{b}"
        );
        note(&format!(
            "xen-smp: {guest} bench parallel: {t1} us on 1 vCPU, {t2} us on 2: speedup {:.2}x",
            t1 / t2
        ));
        for l in a.lines().chain(b.lines()).filter(|l| l.contains("bench ")) {
            note(&format!("xen-smp: {guest}: {}", l.trim()));
        }
    }
}
