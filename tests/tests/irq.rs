//! Device interrupts through the platform's interrupt seam (apps/irqprobe): the PIT's IRQ 0,
//! routed by the IOAPIC (GSI 2, the MADT's override; the standard IOAPIC without ACPI) to a
//! device vector of the handler table, arrives again and again with the line masked before each
//! call and unmasked by the handler, on q35, microvm (two IOAPICs, from the MADT), microvm
//! without ACPI, and in the universal image; and with a thread scheduler, whose tick is the
//! table's other client, the timer.

use stardust_tests::{Machine, Run, assert_exit, line_with};

fn probe(run: Run<'_>, machine: &str) {
    let boot = run.kargs("log=debug").boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["irqprobe: 20 interrupts on line 2 (CPU 0)"]);
    line_with(
        &boot,
        &["interrupt line 2 (edge/high) -> vector 0x40 on CPU 0"],
    );
    if machine == "microvm" {
        line_with(&boot, &["IOAPIC 1 at 0xfec10000: GSI 24-47"]);
    } else {
        line_with(&boot, &["IOAPIC 0 at 0xfec00000: GSI 0-23"]);
    }
}

#[test]
fn the_pit_interrupts_through_the_ioapic_on_q35() {
    probe(Run::new("irqprobe").machine(Machine::Q35), "q35");
}

#[test]
fn the_pit_interrupts_through_the_ioapic_on_microvm() {
    probe(Run::new("irqprobe").machine(Machine::Microvm), "microvm");
}

#[test]
fn without_acpi_the_standard_ioapic_is_assumed() {
    let boot = Run::new("irqprobe")
        .machine(Machine::Microvm)
        .machine_opts("acpi=off")
        .kargs("log=debug")
        .boot();
    assert_exit(&boot, 0);
    line_with(
        &boot,
        &["no usable ACPI MADT: assuming the standard IOAPIC at 0xfec00000"],
    );
    line_with(&boot, &["irqprobe: 20 interrupts on line 2 (CPU 0)"]);
}

#[test]
fn the_universal_image_routes_device_interrupts_on_qemu() {
    probe(
        Run::new("irqprobe")
            .machine(Machine::Q35)
            .set(&["platform=universal"]),
        "q35",
    );
}

#[test]
fn device_interrupts_and_the_preemptive_tick_share_the_cpu() {
    let boot = Run::new("irqprobe")
        .machine(Machine::Q35)
        .set(&["scheduler=preempt"])
        .args(&["200"])
        .boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["irqprobe: 200 interrupts on line 2 (CPU 0)"]);
}

/// `irqprobe evtchn` off Xen: the facade's event-channel calls refuse (`NOT_XEN`), on platform
/// `kvm` and in the universal image on QEMU alike.
#[test]
fn event_channels_are_refused_off_xen() {
    for set in [&[][..], &["platform=universal"][..]] {
        let boot = Run::new("irqprobe")
            .machine(Machine::Microvm)
            .set(set)
            .args(&["evtchn"])
            .boot();
        assert_exit(&boot, 3);
        line_with(
            &boot,
            &["irqprobe: not on Xen: no event channels (Xen error -38)"],
        );
    }
}
