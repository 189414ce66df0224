//! The Xen PV entry: the `.note.Xen` ELF notes that make the image a PV kernel, the 64-bit entry
//! point, the hypercall page, and the trampolines from Xen's trap frames to the arch crate's
//! exception stubs.
//!
//! Xen loads the image at its link address (`VIRT_BASE` 0, so virtual = pseudo-physical) and
//! enters `xen_pv_start` in 64-bit mode (the guest kernel runs in ring 3) with `%rsi` = the
//! virtual address of `start_info`, on a bootstrap stack, events masked.

core::arch::global_asm!(
    r#"
    .macro xen_note_begin type
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 2f - 1f
    .long \type
    .asciz "Xen"
1:
    .endm
    .macro xen_note_end
2:  .balign 4
    .popsection
    .endm
    .macro xen_note_str type, text
    xen_note_begin \type
    .asciz "\text"
    xen_note_end
    .endm
    .macro xen_note_quad type, value
    xen_note_begin \type
    .quad \value
    xen_note_end
    .endm

    xen_note_str 6, "Stardust"               /* GUEST_OS */
    xen_note_str 7, "0"                      /* GUEST_VERSION */
    xen_note_str 5, "xen-3.0"                /* XEN_VERSION */
    xen_note_str 8, "generic"                /* LOADER */
    xen_note_quad 3, 0                       /* VIRT_BASE */
    xen_note_quad 4, 0                       /* PADDR_OFFSET */
    xen_note_quad 1, xen_pv_start            /* ENTRY */
    xen_note_quad 2, hypercall_page          /* HYPERCALL_PAGE */
    xen_note_str 10, "!writable_page_tables" /* FEATURES: page tables change by hypercall */

    /* Page-aligned pages without bytes in the file (the linker script's .platform_pages,
       placed on a page boundary; no .balign here, see the script). Xen writes the hypercall
       stubs into the first at load time (memory.rs keeps it executable when it makes the rest
       of the data NX); the second is remapped onto the shared info frame (time.rs). */
    .section .platform_pages, "aw", @nobits
    .global hypercall_page
hypercall_page:
    .skip 4096
    /* Pages whose virtual addresses are remapped onto Xen's frames: memory.rs leaves them
       alone when it applies W^X to the image. */
    .global xen_remapped_start
xen_remapped_start:
    .global xen_shared_info_page
xen_shared_info_page:
    .skip 4096
    .global xen_grant_frames
xen_grant_frames:
    .skip 4096 * {grant_frames}
    .global xen_remapped_end
xen_remapped_end:

    .section .text.boot, "ax", @progbits
    .global xen_pv_start
    .global stardust_entry
    .set stardust_entry, xen_pv_start
xen_pv_start:
    cld
    mov %rsi, %rdi
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, {tsc}(%rip)
    mov %rdi, {start_info}(%rip)
    lea __stack_top(%rip), %rsp
    xor %ebp, %ebp
    call __stardust_start
    ud2

    /* Trap trampolines. Xen delivers an exception on the guest kernel stack with %rcx and %r11
       pushed on top of the hardware frame; restore them and continue in the arch crate's stub
       for the vector, which sees the same frame as on bare metal. */
    .section .text.xen_traps, "ax", @progbits
    .global xen_trap_entries
    .macro xen_trap n
xen_trap_\n:
    mov (%rsp), %rcx
    mov 8(%rsp), %r11
    add $16, %rsp
    jmp *stardust_exception_stubs + 8 * \n(%rip)
    .endm
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    xen_trap \n
    .endr

    .section .rodata.xen_trap_entries, "a", @progbits
    .balign 8
xen_trap_entries:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad xen_trap_\n
    .endr
"#,
    tsc = sym arch_x86_64::ENTRY_TSC,
    start_info = sym crate::memory::START_INFO,
    grant_frames = const crate::grant::FRAMES,
    options(att_syntax)
);

unsafe extern "C" {
    /// Entry points of the 32 trap trampolines above.
    static xen_trap_entries: [u64; 32];
}

/// Installs the trap table: every exception vector goes through its trampoline to the arch
/// crate's stub and from there to the kernel's report.
pub fn install_trap_table() {
    // SAFETY: a table of 32 code addresses the linker filled in; never written.
    let entries = unsafe { &xen_trap_entries };
    let mut table = [xen_sys::trap_info {
        vector: 0,
        flags: 0,
        cs: 0,
        address: 0,
    }; 33];
    for (vector, (slot, &address)) in table.iter_mut().zip(entries).enumerate() {
        *slot = xen_sys::trap_info {
            vector: vector as u8,
            // Privilege level 0: only the guest kernel raises these (int3 included).
            flags: 0,
            cs: xen_sys::FLAT_KERNEL_CS64,
            address,
        };
    }
    // The 33rd entry stays zero: it ends the table.
    // SAFETY: a zero-terminated trap_info array that lives for the call (Xen copies it); the
    // addresses are our trampolines in the kernel's code segment.
    let rc = unsafe {
        crate::hypercall::hypercall2(
            xen_sys::__HYPERVISOR_set_trap_table,
            table.as_ptr() as u64,
            0,
        )
    };
    if rc != 0 {
        log::warn!("set_trap_table failed ({rc}): exceptions will crash the domain unreported");
    }
}
