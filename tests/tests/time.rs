//! The platform's timer, wall clock and guard pages (apps/timeprobe) on both QEMU machines:
//! sleeps end on the local APIC timer and never early, the CMOS RTC gives the wall clock, and
//! an unmapped guard page faults (and can be mapped again).

use std::time::{SystemTime, UNIX_EPOCH};

use stardust_tests::{Boot, Machine, Run, assert_exit, line_with};

fn timeprobe(machine: Machine, mode: &str) -> Boot {
    Run::new("timeprobe")
        .machine(machine)
        .kargs("log=debug")
        .args(&[mode])
        .boot()
}

fn sleeps_on_the_apic_timer(machine: Machine) {
    let boot = timeprobe(machine, "sleep");
    assert_exit(&boot, 0);
    line_with(&boot, &["local APIC at 0x", "timer", "MHz"]);
    for ms in [1, 10, 50] {
        line_with(&boot, &[&format!("slept {ms} ms: late by "), " us"]);
    }
    assert!(
        !boot.stdout.contains("EARLY"),
        "a sleep ended early:\n{}",
        boot.stdout
    );
}

#[test]
fn sleep_is_never_early_on_q35() {
    sleeps_on_the_apic_timer(Machine::Q35);
}

#[test]
fn sleep_is_never_early_on_microvm() {
    sleeps_on_the_apic_timer(Machine::Microvm);
}

fn wall_clock_matches_the_host(machine: Machine) {
    let boot = timeprobe(machine, "wall");
    assert_exit(&boot, 0);
    let line = line_with(&boot, &["wall clock: "]);
    let seconds: u64 = line
        .trim()
        .trim_start_matches("wall clock: ")
        .parse()
        .unwrap_or_else(|e| panic!("bad wall clock line {line:?}: {e}"));
    assert!(seconds >= 1_704_067_200, "before 2024-01-01: {seconds}");
    // QEMU's RTC starts at the host's UTC time: the guest read it within this test.
    let host = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("host clock after 1970")
        .as_secs();
    assert!(
        seconds.abs_diff(host) < 600,
        "guest wall clock {seconds} vs host {host}"
    );
}

#[test]
fn wall_clock_on_q35() {
    wall_clock_matches_the_host(Machine::Q35);
}

#[test]
fn wall_clock_on_microvm() {
    wall_clock_matches_the_host(Machine::Microvm);
}

/// The address in `guard page at 0x...`.
fn guard_address(boot: &Boot) -> u64 {
    let line = line_with(boot, &["guard page at 0x"]);
    let hex = line.trim().trim_start_matches("guard page at 0x");
    let page = u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
    // Above the first 2 MiB (mapped with 4 KiB pages around the image): the page was inside a
    // 2 MiB page, which unmapping it split.
    assert!(page >= 2 << 20, "guard page {page:#x} below 2 MiB");
    page
}

fn guard_page_faults(machine: Machine) {
    let boot = timeprobe(machine, "guard");
    assert_exit(&boot, 102);
    let page = guard_address(&boot);
    line_with(&boot, &["EXCEPTION: ", "#PF"]);
    line_with(&boot, &["page not present on read"]);
    line_with(&boot, &[&format!("cr2={page:#x}")]);
}

#[test]
fn guard_page_faults_on_q35() {
    guard_page_faults(Machine::Q35);
}

#[test]
fn guard_page_faults_on_microvm() {
    guard_page_faults(Machine::Microvm);
}

#[test]
fn unguarded_page_is_usable_again() {
    let boot = timeprobe(Machine::Q35, "unguard");
    assert_exit(&boot, 0);
    guard_address(&boot);
    line_with(&boot, &["unguard ok"]);
}

#[test]
fn unknown_mode_prints_the_usage() {
    let boot = timeprobe(Machine::Microvm, "nonsense");
    assert_exit(&boot, 2);
    line_with(&boot, &["usage: timeprobe"]);
}

/// Under KVM (where `/dev/kvm` opens) the TSC frequency comes from KVM's paravirtual clock
/// when neither CPUID nor a PIT gives it (`microvm` with `pit=off`, as on Firecracker), so the
/// timer still works and sleeps idle rather than poll. Nested KVM is slow here, so this is
/// the one test that uses it.
#[test]
fn kvmclock_gives_the_tsc_frequency_without_a_pit() {
    if let Err(e) = xtask::qemu::check_kvm() {
        return xtask::cmd::test::report_skip(None, &e.to_string());
    }
    let boot = Run::new("timeprobe")
        .machine(Machine::Microvm)
        .machine_opts("pit=off")
        .accel(xtask::qemu::Accel::Kvm)
        .kargs("log=debug")
        .args(&["sleep"])
        .boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["TSC frequency ", "from kvmclock"]);
    line_with(&boot, &["local APIC at 0x", "timer", "MHz"]);
    line_with(&boot, &["slept 50 ms: late by "]);
}
