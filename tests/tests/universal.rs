//! One image for KVM-class monitors and Xen (`platform = "universal"`): hello and faults are built
//! ONCE each with `--set platform=universal`, and that same file, byte for byte (its bytes compared
//! before every boot with what the build gave), boots on QEMU microvm and q35 (COM1, the KVM
//! platform, isa-debug-exit status). The same build on Xen PVH is in `tests/xen.rs` (guests
//! `universal-*`, in that file's one lab boot), which then boots the file it gave Xen on QEMU
//! too.

use std::path::PathBuf;
use std::sync::OnceLock;

use stardust_tests::{
    Machine, assert_exit, boot_image, file_bytes, fingerprint, image_with, line_with,
};

/// A universal image: its path and its bytes right after the build.
struct Universal {
    elf: PathBuf,
    bytes: Vec<u8>,
}

fn universal(app: &str) -> Universal {
    let (profile, image) = image_with(app, "default", &["platform=universal"]);
    assert_eq!(profile.platform, "universal");
    assert_eq!(
        profile.slot("console"),
        Some("auto"),
        "--platform universal brings console auto"
    );
    let bytes = file_bytes(&image.elf);
    Universal {
        elf: image.elf,
        bytes,
    }
}

fn hello() -> &'static Universal {
    static HELLO: OnceLock<Universal> = OnceLock::new();
    HELLO.get_or_init(|| universal("hello"))
}

fn faults() -> &'static Universal {
    static FAULTS: OnceLock<Universal> = OnceLock::new();
    FAULTS.get_or_init(|| universal("faults"))
}

/// Boots `image` on `machine`, after checking the file is still the one built.
fn boot(image: &Universal, machine: Machine, args: &[&str]) -> stardust_tests::Boot {
    let now = file_bytes(&image.elf);
    assert!(
        now == image.bytes,
        "{} changed since it was built: {} then, {} now",
        image.elf.display(),
        fingerprint(&image.bytes),
        fingerprint(&now)
    );
    eprintln!(
        "universal: booting {} {} on {machine:?}",
        image.elf.display(),
        fingerprint(&now)
    );
    boot_image(&image.elf, machine, args)
}

fn hello_on(machine: Machine) {
    let boot = boot(hello(), machine, &["one", "two"]);
    assert_exit(&boot, 0);
    line_with(&boot, &["Hello from Stardust!"]);
    let line = line_with(&boot, &["command line:"]);
    assert!(line.ends_with("command line: one two"), "got {line:?}");
}

#[test]
fn hello_on_microvm() {
    hello_on(Machine::Microvm);
}

#[test]
fn hello_on_q35() {
    hello_on(Machine::Q35);
}

#[test]
fn panic_exits_101_on_microvm_and_q35() {
    for machine in [Machine::Microvm, Machine::Q35] {
        let boot = boot(faults(), machine, &["panic"]);
        assert_exit(&boot, 101);
        line_with(&boot, &["panicked at ", "deliberate panic"]);
    }
}

/// The image has the PVH entry note that both QEMU and Xen boot (`type = "pvh"`), and not the
/// PV one: `run --image` on Xen boots it as PVH.
#[test]
fn the_image_is_a_pvh_guest_for_qemu_and_xen() {
    let image = hello();
    assert_eq!(
        xtask::cmd::run::xen::guest_type_of_image(&image.bytes).expect("Xen boots it"),
        xtask::xenlab::GuestType::Pvh
    );
    let notes = xtask::strip::note_types(&image.bytes, "Xen").expect("an ELF");
    assert!(notes.contains(&18), "XEN_ELFNOTE_PHYS32_ENTRY: {notes:?}");
    assert!(!notes.contains(&1), "no PV entry: {notes:?}");
}
