//! Starting the other CPUs on KVM-class monitors: the real-mode trampoline that a startup IPI
//! (SIPI) points a CPU at, and the mailbox that gives each CPU its number, its stack and the
//! function it runs.
//!
//! A CPU woken by INIT-SIPI-SIPI starts in 16-bit real mode at `vector << 12`. The trampoline
//! ([`install_trampoline`] copies it to a page below 1 MiB) goes straight from real mode to long
//! mode: it loads the kernel's GDT, turns on PAE, points CR3 at the boot page tables (the
//! identity map of the first GiB that `pvh_start32` built, 2 MiB pages without NX, which map the
//! trampoline page and the image alike), sets EFER.LME and NXE, then PE and PG together (allowed:
//! PG needs PE, and both are set by one write), and far-jumps to `stardust_ap_start64` in the
//! image's text with the 64-bit code selector. That code switches to the kernel's own page
//! tables (`AP_CR3`), takes its stack from the mailbox and calls the function the platform named
//! ([`prepare`]), which must first run [`crate::cpu::init_cpu`].
//!
//! One mailbox serves every CPU: the platform starts them one at a time and waits until the
//! CPU took its mailbox ([`arrived`]) before it prepares the next. Linux's trampoline
//! (`arch/x86/realmode/rm/trampoline_64.S`) goes through 32-bit protected mode; the direct jump
//! saves its GDT of 32-bit descriptors.
//!
//! Only with the `pvh-entry` feature: the boot page tables are the PVH entry's.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use platform::irq::CpuId;

/// The kernel's page tables (CR3), for the CPU being started.
static AP_CR3: AtomicU64 = AtomicU64::new(0);
/// The top of the stack of the CPU being started.
static AP_STACK: AtomicU64 = AtomicU64::new(0);
/// The number of the CPU being started.
static AP_CPU: AtomicU32 = AtomicU32::new(0);
/// What it runs: a `fn(CpuId) -> !`.
static AP_MAIN: AtomicUsize = AtomicUsize::new(0);
/// The number of the last CPU that took the mailbox, plus one (0: none yet).
static AP_ARRIVED: AtomicU32 = AtomicU32::new(0);

/// The GDT's limit (its size minus one): `boot.rs`'s `stardust_gdt`.
const GDT_LIMIT: u16 = (crate::cpu::GDT_ENTRIES * 8 - 1) as u16;

core::arch::global_asm!(
    r#"
    /* Copied to a page below 1 MiB; position independent (offsets from its start, %ds = %cs). */
    .section .rodata.stardust_ap, "a", @progbits
    .p2align 4
    .global stardust_ap_trampoline
stardust_ap_trampoline:
    .code16
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl (3f - stardust_ap_trampoline)
    mov $0x20, %eax                     /* CR4.PAE */
    mov %eax, %cr4
    movl (4f - stardust_ap_trampoline), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx               /* EFER */
    rdmsr
    or $0x900, %eax                     /* LME | NXE */
    wrmsr
    mov $0x80010001, %eax               /* PG | WP | PE */
    mov %eax, %cr0
    ljmpl *(5f - stardust_ap_trampoline)
    .p2align 3
3:  .word {gdt_limit}
    .long stardust_gdt
    .p2align 2
4:  .long boot_pml4
5:  .long stardust_ap_start64
    .word 0x08
    .global stardust_ap_trampoline_end
stardust_ap_trampoline_end:
    .code64

    .section .text.stardust_ap, "ax", @progbits
    .global stardust_ap_start64
stardust_ap_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov {cr3}(%rip), %rax
    mov %rax, %cr3
    mov {stack}(%rip), %rsp
    xor %ebp, %ebp
    call {entry}
    ud2
"#,
    gdt_limit = const GDT_LIMIT,
    cr3 = sym AP_CR3,
    stack = sym AP_STACK,
    entry = sym stardust_ap_entry,
    options(att_syntax)
);

unsafe extern "C" {
    static stardust_ap_trampoline: u8;
    static stardust_ap_trampoline_end: u8;
}

/// The trampoline's length in bytes.
fn trampoline_len() -> usize {
    // Only the addresses of the two linker symbols are taken.
    (&raw const stardust_ap_trampoline_end) as usize - (&raw const stardust_ap_trampoline) as usize
}

/// Copies the trampoline to `page` and returns the SIPI vector that starts a CPU there.
///
/// # Safety
/// `page` is a page-aligned page of RAM below 1 MiB (not page 0) that nothing else uses from
/// now on, identity-mapped writable in the live tables and mapped by the boot tables (the first
/// GiB is).
pub unsafe fn install_trampoline(page: u64) -> u8 {
    debug_assert!(page.is_multiple_of(4096) && page > 0 && page < 0x10_0000);
    let len = trampoline_len();
    // SAFETY: the source is the trampoline's bytes in the image's read-only data; the
    // destination is the page the caller gave (contract above), which the trampoline fits
    // (a few dozen bytes).
    unsafe {
        core::ptr::copy_nonoverlapping(
            &raw const stardust_ap_trampoline,
            page as *mut u8,
            len.min(4096),
        )
    };
    (page >> 12) as u8
}

/// Fills the mailbox for the next CPU to start: it will run `main(cpu)` on the stack that ends
/// at `stack_top`, with the page tables that are live now. Call before its startup IPIs, and
/// not again until [`arrived`] says it took the mailbox (or it was given up).
pub fn prepare(cpu: CpuId, stack_top: u64, main: fn(CpuId) -> !) {
    AP_CR3.store(crate::cpu::page_table_root(), Ordering::Relaxed);
    AP_STACK.store(stack_top, Ordering::Relaxed);
    AP_CPU.store(cpu.0, Ordering::Relaxed);
    AP_MAIN.store(main as usize, Ordering::Release);
}

/// Whether CPU `cpu` took its mailbox (it runs its `main` now).
pub fn arrived(cpu: CpuId) -> bool {
    AP_ARRIVED.load(Ordering::Acquire) == cpu.0 + 1
}

/// The Rust side of `stardust_ap_start64`: on the new CPU's stack, with the kernel's tables.
extern "C" fn stardust_ap_entry() -> ! {
    let cpu = CpuId(AP_CPU.load(Ordering::Acquire));
    let main = AP_MAIN.load(Ordering::Acquire);
    AP_ARRIVED.store(cpu.0 + 1, Ordering::Release);
    // SAFETY: AP_MAIN holds a `fn(CpuId) -> !`, stored by `prepare` before the startup IPIs
    // that brought this CPU here (a CPU only gets here through them).
    let main: fn(CpuId) -> ! = unsafe { core::mem::transmute::<usize, fn(CpuId) -> !>(main) };
    main(cpu)
}
