//! Device discovery at boot (`log=debug` shows a `device: ...` line per device the platform
//! found): virtio PCI functions on q35 with their INTx routed by the ICH9 swizzle, virtio-mmio
//! transports on microvm with ACPI (the fixed layout, GSI 24 + n) and with `acpi=off` (the
//! command line's tokens, IRQ 5 + n), and none on machines without devices. Discovery is built
//! into images with a device driver only (`net_device = "virtio"`).

use stardust_tests::{Boot, Machine, Run, assert_exit};

/// The `device: ...` lines, without the log prefix, and the count line.
fn devices(boot: &Boot) -> (Vec<String>, String) {
    let listed = boot
        .lines()
        .filter(|l| l.contains("kernel::boot"))
        .filter_map(|l| {
            l.split_once("device: ")
                .map(|(_, d)| d.trim_end().to_string())
        })
        .collect();
    let count = boot
        .lines()
        .find(|l| l.contains("kernel::boot") && l.trim_end().ends_with(" devices"))
        .unwrap_or_else(|| panic!("no device count line\n{}", boot.stdout))
        .trim_end()
        .to_string();
    (listed, count)
}

fn boot(machine: Machine, opts: &str, extra: &[&str]) -> Boot {
    let boot = Run::new("hello")
        .set(&["net_device=virtio"])
        .without_nic()
        .machine(machine)
        .machine_opts(opts)
        .kargs("log=debug")
        .extra(extra)
        .boot();
    assert_exit(&boot, 0);
    boot
}

const NET_AND_BLOCK_PCI: &[&str] = &[
    "-netdev",
    "user,id=n0",
    "-device",
    "virtio-net-pci,netdev=n0",
    "-drive",
    "if=none,id=d0,file=/dev/null,format=raw,readonly=on",
    "-device",
    "virtio-blk-pci,drive=d0,addr=4",
];

#[test]
fn q35_lists_virtio_pci_functions_with_their_gsi() {
    let boot = boot(Machine::Q35, "", NET_AND_BLOCK_PCI);
    if !boot.stdout.contains("Q35 host bridge") {
        eprintln!("skipped: no qboot.rom, so q35 ran as microvm");
        return;
    }
    let (listed, count) = devices(&boot);
    // The first free slot is 1 (INTA: PIRQ F, GSI 21); slot 4's INTA is PIRQ E, GSI 20.
    assert_eq!(
        listed,
        [
            "PCI 00:01.0 [1af4:1000] virtio-net, interrupt 21",
            "PCI 00:04.0 [1af4:1001] virtio-blk, interrupt 20",
        ],
        "{}",
        boot.stdout
    );
    assert!(count.ends_with("2 devices"), "{count}");
    // The chipset's own functions are left alone, and the BARs come from the window.
    assert!(
        boot.stdout.contains("4 others left alone"),
        "{}",
        boot.stdout
    );
    assert!(
        boot.stdout.contains("BAR4 64-bit at 0xc0"),
        "{}",
        boot.stdout
    );
}

const NET_AND_BLOCK_MMIO: &[&str] = &[
    "-netdev",
    "user,id=n0",
    "-device",
    "virtio-net-device,netdev=n0",
    "-drive",
    "if=none,id=d0,file=/dev/null,format=raw,readonly=on",
    "-device",
    "virtio-blk-device,drive=d0",
];

#[test]
fn microvm_with_acpi_lists_transports_of_the_fixed_layout() {
    let boot = boot(Machine::Microvm, "", NET_AND_BLOCK_MMIO);
    let (listed, count) = devices(&boot);
    // QEMU plugs from the top: the first -device sits at transport 23 (GSI 47).
    assert_eq!(
        listed,
        [
            "virtio-mmio at 0xfeb02c00 [554d:0002] virtio-blk, interrupt 46",
            "virtio-mmio at 0xfeb02e00 [554d:0001] virtio-net, interrupt 47",
        ],
        "{}",
        boot.stdout
    );
    assert!(count.ends_with("2 devices"), "{count}");
}

#[test]
fn microvm_without_acpi_lists_the_command_lines_transports() {
    let boot = boot(Machine::Microvm, "acpi=off", NET_AND_BLOCK_MMIO);
    assert!(
        boot.stdout.contains("virtio_mmio.device=512@0xfeb00e00:12"),
        "QEMU names the transports on the command line\n{}",
        boot.stdout
    );
    let (listed, count) = devices(&boot);
    assert_eq!(
        listed,
        [
            "virtio-mmio at 0xfeb00e00 [554d:0001] virtio-net, interrupt 12",
            "virtio-mmio at 0xfeb00c00 [554d:0002] virtio-blk, interrupt 11",
        ],
        "{}",
        boot.stdout
    );
    assert!(count.ends_with("2 devices"), "{count}");
}

#[test]
fn modern_transports_are_listed_too() {
    let boot = boot(
        Machine::Microvm,
        "",
        &[
            "-global",
            "virtio-mmio.force-legacy=false",
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-device,netdev=n0",
        ],
    );
    let (listed, _) = devices(&boot);
    assert_eq!(
        listed,
        ["virtio-mmio at 0xfeb02e00 [554d:0001] virtio-net, interrupt 47"]
    );
    assert!(boot.stdout.contains("modern virtio"), "{}", boot.stdout);
}

#[test]
fn images_without_a_device_driver_do_not_look() {
    let boot = Run::new("hello")
        .kargs("log=debug")
        .extra(NET_AND_BLOCK_PCI)
        .boot();
    assert_exit(&boot, 0);
    assert!(
        !boot.stdout.contains("device"),
        "net_device = none: no discovery\n{}",
        boot.stdout
    );
}

#[test]
fn machines_without_devices_list_none() {
    for (machine, opts) in [
        (Machine::Q35, ""),
        (Machine::Microvm, ""),
        (Machine::Microvm, "acpi=off"),
    ] {
        let boot = boot(machine, opts, &[]);
        let (listed, count) = devices(&boot);
        assert!(listed.is_empty(), "{machine:?} {opts}: {listed:?}");
        assert!(count.ends_with(" 0 devices"), "{count}");
    }
}

#[test]
fn the_universal_image_finds_devices_on_kvm_class_monitors() {
    for (machine, extra, expected) in [
        (
            Machine::Q35,
            NET_AND_BLOCK_PCI,
            "PCI 00:01.0 [1af4:1000] virtio-net, interrupt 21",
        ),
        (
            Machine::Microvm,
            NET_AND_BLOCK_MMIO,
            "virtio-mmio at 0xfeb02e00 [554d:0001] virtio-net, interrupt 47",
        ),
    ] {
        let boot = Run::new("hello")
            .set(&["platform=universal", "net_device=virtio"])
            .without_nic()
            .machine(machine)
            .kargs("log=debug")
            .extra(extra)
            .boot();
        assert_exit(&boot, 0);
        if machine == Machine::Q35 && !boot.stdout.contains("Q35 host bridge") {
            eprintln!("skipped q35: no qboot.rom");
            continue;
        }
        let (listed, count) = devices(&boot);
        assert!(
            listed.iter().any(|d| d == expected),
            "{machine:?}: {listed:?}"
        );
        assert!(count.ends_with("2 devices"), "{count}");
    }
}
