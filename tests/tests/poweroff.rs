//! Power-off without QEMU's isa-debug-exit: the guest finds the ACPI sleep register in the
//! firmware tables (PM1a on q35 and pc, the hardware-reduced sleep control register on microvm)
//! and QEMU exits by itself with no status; with no ACPI at all, the last resort (a triple
//! fault under `-no-reboot`) still ends the VM instead of hanging.

use stardust_tests::{Machine, Outcome, Run, line_with};

fn powers_off(run: Run<'_>, method: &str) {
    let boot = run.args(&["bye"]).without_debug_exit().boot();
    assert_eq!(
        boot.outcome,
        Outcome::NoStatus,
        "expected a plain power-off (QEMU status 0)\n--- console ---\n{}--- qemu stderr ---\n{}",
        boot.stdout,
        boot.stderr
    );
    line_with(&boot, &["command line: bye"]);
    // QEMU would also exit on the fallbacks (i8042 reset, triple fault): check the method.
    line_with(&boot, &["ACPI power-off: ", method]);
}

#[test]
fn q35_powers_off_through_acpi_pm1a() {
    powers_off(
        Run::new("hello").machine(Machine::Q35).kargs("log=debug"),
        "PM1a control port 0x604 <- 0x2000",
    );
}

#[test]
fn microvm_powers_off_through_the_acpi_sleep_control_register() {
    powers_off(
        Run::new("hello")
            .machine(Machine::Microvm)
            .kargs("log=debug"),
        "sleep control MMIO 0xfea00200 <- 0x34",
    );
}

#[test]
fn with_isa_debug_exit_the_acpi_tables_are_not_read() {
    for machine in [Machine::Q35, Machine::Microvm] {
        let boot = Run::new("hello").machine(machine).kargs("log=debug").boot();
        stardust_tests::assert_exit(&boot, 0);
        line_with(
            &boot,
            &["isa-debug-exit present: ACPI power-off not needed"],
        );
        assert!(!boot.stdout.contains("ACPI power-off:"), "{}", boot.stdout);
    }
}

#[test]
fn microvm_without_acpi_still_ends() {
    let boot = Run::new("hello")
        .machine(Machine::Microvm)
        .machine_opts("acpi=off")
        .kargs("log=debug")
        .args(&["bye"])
        .without_debug_exit()
        .boot();
    assert_eq!(boot.outcome, Outcome::NoStatus, "{}", boot.stdout);
    line_with(&boot, &["no ACPI power-off"]);
}
