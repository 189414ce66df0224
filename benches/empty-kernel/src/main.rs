//! The empty PVH kernel: the boot-time floor that `cargo xtask bench boot` compares images with.
//!
//! It is a PVH ELF (Xen ELF note `XEN_ELFNOTE_PHYS32_ENTRY`, linked at 1 MiB by the script that
//! `build.rs` writes) whose 32-bit entry prints one line, `empty`, on both consoles a profile may
//! use (COM1 at 0x3f8 and the debug port 0xe9; a port without a device ignores the write), then
//! writes 0 to QEMU's `isa-debug-exit` port 0xf4, so QEMU exits at once with status 1 (= guest
//! exit code 0). The line is the floor of the bench's "QEMU start to first line" figure. Without
//! isa-debug-exit it halts forever with interrupts off. It touches no memory, needs no stack, and
//! depends on no other crate.
//!
//! Build: `cargo build --release --target x86_64-unknown-none -p empty-kernel`.
#![no_std]
#![no_main]

// PVH entry: 32-bit protected mode, paging off, interrupts off (%ebx = start_info, unused).
core::arch::global_asm!(
    r#"
    .section .text.pvh_entry, "ax", @progbits
    .code32
    .global pvh_start32
pvh_start32:
    .irp c, 'e', 'm', 'p', 't', 'y', '\n'
    movb $\c, %al
    outb %al, $0xe9
    movw $0x3f8, %dx
    outb %al, %dx
    .endr
    xorl %eax, %eax
    outb %al, $0xf4
1:  cli
    hlt
    jmp 1b
    .code64

    /* Xen PVH entry note: namesz, descsz, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen", entry. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4
    .text
"#,
    options(att_syntax)
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
