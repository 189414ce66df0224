//! The boot-time floor fixture (benches/empty-kernel) is a valid PVH ELF that QEMU boots and
//! that exits at once with status 0, on both machine types.

use object::read::elf::{ElfFile64, ProgramHeader};
use stardust_tests::{Machine, assert_exit, empty_kernel, qemu_binary};
use xtask::qemu::{self, Console, QemuConfig};

fn boot(machine: Machine) -> xtask::qemu::Boot {
    let image = empty_kernel();
    let cfg = QemuConfig {
        qemu: qemu_binary(),
        accel: qemu::Accel::Tcg,
        machine,
        memory: 32 << 20,
        cpus: 1,
        console: Console::Serial,
        kernel: image.elf,
        kargs: String::new(),
        app_args: Vec::new(),
        gdb: None,
        debug_exit: true,
        machine_opts: String::new(),
        nic: None,
        extra_args: Vec::new(),
        tap: None,
        disk: None,
    };
    qemu::boot(&cfg, true, Some(qemu::DEFAULT_TIMEOUT)).expect("QEMU starts")
}

#[test]
fn exits_zero_on_q35() {
    assert_exit(&boot(Machine::Q35), 0);
}

#[test]
fn exits_zero_on_microvm() {
    assert_exit(&boot(Machine::Microvm), 0);
}

#[test]
fn is_a_small_pvh_elf() {
    let image = empty_kernel();
    let bytes = std::fs::read(&image.elf).expect("image exists");
    assert!(bytes.len() < 4096, "empty kernel is {} bytes", bytes.len());
    let elf = ElfFile64::<object::Endianness>::parse(&*bytes).expect("ELF");
    let e = elf.endian();
    let note = elf
        .elf_program_headers()
        .iter()
        .find(|p| p.p_type(e) == object::elf::PT_NOTE)
        .expect("a PT_NOTE");
    let mut notes = note
        .notes(e, &*bytes)
        .expect("notes")
        .expect("is a note segment");
    let mut found = false;
    while let Some(n) = notes.next().expect("note parses") {
        if n.name() == b"Xen" && n.n_type(e).0 == 18 {
            let desc = n.desc();
            assert_eq!(desc.len(), 8);
            let entry = u64::from_le_bytes(desc.try_into().expect("8 bytes"));
            assert!((0x100000..0x101000).contains(&entry), "entry {entry:#x}");
            found = true;
        }
    }
    assert!(found, "XEN_ELFNOTE_PHYS32_ENTRY note present");
}

#[test]
fn a_boot_that_outlives_its_timeout_is_killed() {
    let image = empty_kernel();
    let cfg = QemuConfig {
        qemu: qemu_binary(),
        accel: qemu::Accel::Tcg,
        machine: Machine::Q35,
        memory: 32 << 20,
        cpus: 1,
        console: Console::Serial,
        kernel: image.elf,
        kargs: String::new(),
        app_args: Vec::new(),
        // -S: the CPU never starts, so only the timeout ends this boot.
        gdb: Some(qemu::free_port().expect("a free port")),
        debug_exit: true,
        machine_opts: String::new(),
        nic: None,
        extra_args: Vec::new(),
        tap: None,
        disk: None,
    };
    let limit = std::time::Duration::from_millis(300);
    let boot = qemu::boot(&cfg, true, Some(limit)).expect("QEMU starts");
    // The outcome alone: tests assert no timings (a kill that failed would hang this test).
    assert_eq!(boot.outcome, qemu::Outcome::TimedOut(limit));
}
