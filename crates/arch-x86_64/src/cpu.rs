//! CPU tables (GDT + TSS, IDT), fatal exception reports, and the few privileged instructions the
//! rest of the kernel needs.

use crate::percpu;
use core::arch::{asm, global_asm};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use platform::irq::CpuId;
use x86_64::VirtAddr;
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::SegmentSelector;

/// Registers at the time of a CPU exception, as the entry stubs push them (lowest address first).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The exception vector (0..32).
    pub vector: u64,
    /// The error code the CPU pushed, 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// A fatal CPU exception: the frame plus CR2 (the faulting address of a page fault).
#[derive(Clone, Copy, Debug)]
pub struct Exception {
    /// The registers.
    pub frame: ExceptionFrame,
    /// CR2 when the exception was taken.
    pub cr2: u64,
}

impl Exception {
    /// Short mnemonic and name of the vector, e.g. `("#PF", "page fault")`.
    pub fn name(&self) -> (&'static str, &'static str) {
        vector_name(self.frame.vector)
    }
}

/// The mnemonic and name of exception vector `v`.
pub fn vector_name(v: u64) -> (&'static str, &'static str) {
    match v {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point error"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        _ => ("#??", "reserved exception"),
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.frame;
        let (mnemonic, name) = self.name();
        writeln!(f, "{mnemonic} {name} (vector {})", r.vector)?;
        write!(f, "  error code={:#x}", r.error_code)?;
        if r.vector == 14 {
            let e = r.error_code;
            write!(
                f,
                " ({} {}{})",
                if e & 1 != 0 {
                    "protection violation"
                } else {
                    "page not present"
                },
                if e & 0x10 != 0 {
                    "on instruction fetch"
                } else if e & 2 != 0 {
                    "on write"
                } else {
                    "on read"
                },
                if e & 4 != 0 { ", user mode" } else { "" }
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x} cr2={:#x}",
            r.rip, r.cs, r.rflags, r.rsp, r.ss, self.cr2
        )?;
        writeln!(
            f,
            "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
            r.rax, r.rbx, r.rcx, r.rdx
        )?;
        writeln!(
            f,
            "  rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}",
            r.rsi, r.rdi, r.rbp, r.r8
        )?;
        writeln!(
            f,
            "  r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}",
            r.r9, r.r10, r.r11, r.r12
        )?;
        write!(
            f,
            "  r13={:#018x} r14={:#018x} r15={:#018x}",
            r.r13, r.r14, r.r15
        )
    }
}

unsafe extern "Rust" {
    /// Reports a fatal exception and powers off; defined by the kernel (composition root), like
    /// `__stardust_start`. Must not return.
    fn __stardust_exception(exception: &Exception) -> !;
}

/// 256 gates of 16 bytes: the 32 exception vectors, the PIC range, the APIC timer and spurious vectors.
#[repr(C, align(16))]
struct Idt([AtomicU64; 512]);

static IDT: Idt = Idt([const { AtomicU64::new(0) }; 512]);

unsafe extern "C" {
    /// The GDT in `boot.rs`; entries 3 and 4 are the TSS descriptor.
    static mut stardust_gdt: [u64; GDT_ENTRIES];
    /// Entry points of the 32 exception stubs below.
    static stardust_exception_stubs: [u64; 32];
    /// The entry stub of interrupts that need nothing but `iretq` (spurious ones).
    static stardust_ignore_entry: u8;
}

/// Defines an interrupt entry stub `$entry` for an interrupt gate (interrupts masked on entry)
/// on the interrupted code's stack: it saves every caller-saved register (the target is
/// soft-float: no vector state), aligns the stack, calls the `extern "C" fn()` named
/// `$handler`, restores and returns with `iretq`. The handler may switch threads before it
/// returns: the frame stays on this stack until the thread is switched back to. Used for the
/// local APIC timer (the `pc` crate) and for Xen PVH's event callback vector.
#[macro_export]
macro_rules! interrupt_entry {
    ($entry:literal, $handler:literal) => {
        core::arch::global_asm!(
            concat!(
                ".section .text.",
                $entry,
                ", \"ax\", @progbits\n",
                ".global ",
                $entry,
                "\n",
                $entry,
                ":\n",
                "push %rax\n push %rcx\n push %rdx\n push %rsi\n push %rdi\n",
                "push %r8\n push %r9\n push %r10\n push %r11\n push %rbx\n",
                // Taken at the idle `hlt` (its `sti` shadow not kept): return past it.
                "lea stardust_idle_hlt(%rip), %rax\n cmp %rax, 80(%rsp)\n jne 1f\n",
                "incq 80(%rsp)\n",
                "1:\n",
                "mov %rsp, %rbx\n and $-16, %rsp\n cld\n",
                "call ",
                $handler,
                "\n",
                "mov %rbx, %rsp\n",
                "pop %rbx\n pop %r11\n pop %r10\n pop %r9\n pop %r8\n",
                "pop %rdi\n pop %rsi\n pop %rdx\n pop %rcx\n pop %rax\n",
                "iretq\n",
            ),
            options(att_syntax)
        );
    };
}

/// The device vectors: IDT vectors `0x40 + i`, one per slot `i` of a platform's interrupt
/// handler table (`platform::irq::HandlerTable<32>`).
pub const DEVICE_VECTORS: core::ops::Range<u8> = 0x40..0x60;

/// Defines [`DEVICE_VECTORS`]`.len()` interrupt entry stubs and a table of their addresses,
/// `$table` (`[u64; 32]`, in `.rodata`): stub `i` pushes `i` and joins a common path that
/// saves every caller-saved register (as [`interrupt_entry!`]), calls
/// `extern "C" fn $handler(index: u64)` with interrupts masked on the interrupted code's stack,
/// restores and returns with `iretq`. A platform points gate `0x40 + i` at entry `i`
/// ([`set_interrupt_gate`]) and dispatches from its handler table in `$handler`.
#[macro_export]
macro_rules! device_interrupt_entries {
    ($table:literal, $handler:literal) => {
        core::arch::global_asm!(
            concat!(
                ".section .text.",
                $table,
                ", \"ax\", @progbits\n",
                ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n",
                $table,
                "_\\n:\n",
                "push $\\n\n",
                "jmp ",
                $table,
                "_common\n",
                ".endr\n",
                $table,
                "_common:\n",
                "push %rax\n push %rcx\n push %rdx\n push %rsi\n push %rdi\n",
                "push %r8\n push %r9\n push %r10\n push %r11\n push %rbx\n",
                // Taken at the idle `hlt` (its `sti` shadow not kept): return past it.
                "lea stardust_idle_hlt(%rip), %rax\n cmp %rax, 88(%rsp)\n jne 1f\n",
                "incq 88(%rsp)\n",
                "1:\n",
                "mov 80(%rsp), %rdi\n",
                "mov %rsp, %rbx\n and $-16, %rsp\n cld\n",
                "call ",
                $handler,
                "\n",
                "mov %rbx, %rsp\n",
                "pop %rbx\n pop %r11\n pop %r10\n pop %r9\n pop %r8\n",
                "pop %rdi\n pop %rsi\n pop %rdx\n pop %rcx\n pop %rax\n",
                "add $8, %rsp\n",
                "iretq\n",
                ".section .rodata.",
                $table,
                ", \"a\", @progbits\n",
                ".p2align 3\n",
                ".global ",
                $table,
                "\n",
                $table,
                ":\n",
                ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n",
                ".quad ",
                $table,
                "_\\n\n",
                ".endr\n",
            ),
            options(att_syntax)
        );
    };
}

/// The local APIC's spurious-interrupt vector (no EOI).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Entries of a GDT (`boot.rs`'s `stardust_gdt`, and each other CPU's in its per-CPU block):
/// null, 64-bit code (0x08), data (0x10), the CPU's TSS (0x18, 16 bytes).
pub const GDT_ENTRIES: usize = 5;
/// The legacy PICs' vectors once remapped (the `pc` crate's `pic::disable`): all masked, but a PIC can
/// still raise a spurious IRQ 7 or 15, which must not land on an exception vector.
pub const PIC_VECTORS: core::ops::Range<u8> = 0x20..0x30;

/// Fills IDT gate `vector` with an interrupt gate (interrupts masked on entry) to `stub`, on
/// IST `ist` (0: the interrupted code's stack).
fn set_gate(vector: usize, stub: u64, ist: u64) {
    let low = (stub & 0xffff)
        | (0x08 << 16)
        | (ist << 32)
        | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
        | ((stub >> 16 & 0xffff) << 48);
    IDT.0[2 * vector].store(low, Ordering::Relaxed);
    IDT.0[2 * vector + 1].store(stub >> 32, Ordering::Relaxed);
}

/// Points IDT gate `vector` at `stub`: an interrupt gate (interrupts masked on entry) on the
/// interrupted code's stack, for a platform's own interrupt (the KVM platform's local APIC timer,
/// Xen PVH's event callback vector).
/// Call after [`init`]; `vector` must not be an exception vector (below 32) nor one [`init`]
/// uses ([`SPURIOUS_VECTOR`], [`PIC_VECTORS`]).
///
/// # Safety
/// `stub` is the address of an interrupt entry that preserves every register it does not own
/// and returns by `iretq`.
pub unsafe fn set_interrupt_gate(vector: u8, stub: u64) {
    assert!(
        vector >= 32 && vector != SPURIOUS_VECTOR && !PIC_VECTORS.contains(&vector),
        "vector {vector:#x} is reserved"
    );
    set_gate(vector.into(), stub, 0);
}

/// Sets up the boot CPU: [`init_cpu`] for CPU 0.
pub fn init() {
    init_cpu(CpuId(0));
}

/// Sets up the calling CPU as CPU `cpu`: fills and installs its per-CPU block
/// ([`percpu::install`], GS base included), loads its TSS (with a separate stack for double
/// faults, so that a stack overflow into a guard page is reported instead of triple-faulting)
/// and the IDT (shared by all CPUs; filled by CPU 0). Exceptions go to the kernel's
/// `__stardust_exception`. Call once per CPU, on that CPU, before anything can fault; CPU 0
/// first.
///
/// The boot CPU uses the boot GDT (`stardust_gdt`); every other CPU copies its code and data
/// descriptors into a GDT of its own in its per-CPU block, with its own TSS descriptor, and
/// loads that (`ltr` marks a TSS descriptor busy, so two CPUs cannot share one). The selectors
/// are the same everywhere.
pub fn init_cpu(cpu: CpuId) {
    let block = percpu::install(cpu, true);
    let tss_words = &block.tss.0;
    let ist1 = block.ist1_top();
    assert!(
        ist1 != 0,
        "CPU {} has no double-fault stack (percpu::set_ist_stack)",
        cpu.0
    );
    // IST1 is at byte offset 0x24: words 9 and 10.
    tss_words[9].store(ist1 as u32, Ordering::Relaxed);
    tss_words[10].store((ist1 >> 32) as u32, Ordering::Relaxed);
    // I/O map base = size of the TSS: no I/O permission bitmap (offset 0x66, upper half of word 25).
    tss_words[25].store(104 << 16, Ordering::Relaxed);

    let tss = (&raw const block.tss) as u64;
    let limit = 103u64;
    let low = (limit & 0xffff)
        | ((tss & 0xff_ffff) << 16)
        | (0x89 << 40) // present, 64-bit TSS (available)
        | ((tss >> 24 & 0xff) << 56);
    let high = tss >> 32;
    if cpu.0 == 0 {
        // SAFETY: the boot CPU, during its init: nothing else reads or writes the boot GDT's
        // TSS slot, and the descriptor is not loaded yet (ltr below is what reads it).
        unsafe {
            let gdt = &raw mut stardust_gdt;
            (*gdt)[3] = low;
            (*gdt)[4] = high;
        }
    } else {
        let own = &block.gdt;
        // SAFETY: reading the boot GDT's null, code and data descriptors (its first three
        // entries), which are never written.
        let boot = unsafe { (&raw const stardust_gdt).cast::<[u64; 3]>().read() };
        for (slot, &entry) in own.iter().zip(&boot) {
            slot.store(entry, Ordering::Relaxed);
        }
        own[3].store(low, Ordering::Relaxed);
        own[4].store(high, Ordering::Relaxed);
        let pointer = DescriptorTablePointer {
            limit: (GDT_ENTRIES * 8 - 1) as u16,
            base: VirtAddr::new(own.as_ptr() as u64),
        };
        // SAFETY: the GDT is in a static per-CPU block that lives forever, with the same code
        // and data descriptors as the boot GDT the CPU runs on (so its segment registers stay
        // valid) and this CPU's TSS descriptor.
        unsafe { x86_64::instructions::tables::lgdt(&pointer) };
    }
    // SAFETY: selector 0x18 is the valid, available TSS descriptor written just above, and the
    // TSS is in a static per-CPU block that lives forever.
    unsafe { load_tss(SegmentSelector(0x18)) };

    if cpu.0 == 0 {
        // SAFETY: reading a table of 32 code addresses the linker filled in; it is never written.
        let stubs = unsafe { &stardust_exception_stubs };
        for (vector, &stub) in stubs.iter().enumerate() {
            set_gate(vector, stub, if vector == 8 { 1 } else { 0 });
        }
        let ignore = (&raw const stardust_ignore_entry) as u64;
        for vector in PIC_VECTORS.chain([SPURIOUS_VECTOR]) {
            set_gate(vector.into(), ignore, 0);
        }
    }
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new((&raw const IDT) as u64),
    };
    // SAFETY: the IDT is a static (lives forever) whose 32 exception gates, PIC and spurious
    // gates point at the stubs below with the kernel code selector; the other gates
    // are not present (#GP/#NP if raised).
    unsafe { lidt(&pointer) };
}

/// Called by the common exception stub with a pointer to the saved registers.
#[unsafe(no_mangle)]
extern "C" fn stardust_exception(frame: &ExceptionFrame) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    let exception = Exception { frame: *frame, cr2 };
    // SAFETY: the kernel defines `__stardust_exception` with exactly this signature.
    unsafe { __stardust_exception(&exception) }
}

/// Stops this CPU for good: interrupts off, `hlt` in a loop.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting only stops this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Resets the CPU by a triple fault: an empty IDT, then an exception. Monitors end the VM or
/// reset it (QEMU with `-no-reboot` exits). The last resort of a power-off.
pub fn triple_fault() -> ! {
    let empty = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::new(0),
    };
    // SAFETY: deliberately makes every interrupt and exception unhandled, then raises one: the
    // CPU shuts down. Nothing runs after this.
    unsafe {
        lidt(&empty);
        asm!("int3", options(nomem, nostack));
    }
    halt_forever()
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The caller must know what the device at `port` does with the write.
#[inline]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::instructions::port::PortWriteOnly::<u8>::new(port).write(value) }
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// The caller must know what the device at `port` does with the write.
#[inline]
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::instructions::port::PortWriteOnly::<u32>::new(port).write(value) }
}

/// Writes a 16-bit value to an I/O port.
///
/// # Safety
/// The caller must know what the device at `port` does with the write.
#[inline]
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::instructions::port::PortWriteOnly::<u16>::new(port).write(value) }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// The caller must know what the device at `port` does on a read.
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::instructions::port::PortReadOnly::<u8>::new(port).read() }
}

/// Reads a 32-bit value from an I/O port.
///
/// # Safety
/// The caller must know what the device at `port` does on a read.
#[inline]
pub unsafe fn inl(port: u16) -> u32 {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::instructions::port::PortReadOnly::<u32>::new(port).read() }
}

/// Loads a new top-level page table.
///
/// # Safety
/// `pml4` must be the physical address of a valid PML4 that maps all code, data and stacks in
/// use (with the identity mapping this kernel uses), and it must stay valid while loaded.
pub unsafe fn load_page_table(pml4: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) };
}

/// The physical address of the live PML4 (CR3 without its flag bits).
pub fn page_table_root() -> u64 {
    x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64()
}

/// Drops the TLB entries (of any page size) and paging-structure caches for `addr`.
pub fn flush_page(addr: u64) {
    x86_64::instructions::tlb::flush(VirtAddr::new(addr));
}

/// Whether maskable interrupts are enabled (RFLAGS.IF).
pub fn interrupts_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}

/// Masks interrupts (`cli`); returns whether they were enabled.
pub fn interrupts_disable() -> bool {
    let enabled = interrupts_enabled();
    x86_64::instructions::interrupts::disable();
    enabled
}

/// Enables interrupts (`sti`).
pub fn interrupts_enable() {
    x86_64::instructions::interrupts::enable();
}

/// `sti; hlt`: enables interrupts and halts until the next one, atomically. Returns with
/// interrupts enabled, after the handler ran.
///
/// The atomicity is the `sti` shadow: the instruction after `sti` runs before any interrupt is
/// taken, so one already pending wakes the `hlt` instead of being handled before it (and the
/// `hlt` then waiting for another that may never come). Not every virtual CPU keeps the shadow
/// (Xen PVH guests in the lab, under QEMU's emulation of SVM, halted with their wake-up
/// handled), so the interrupt entries ([`interrupt_entry!`], [`device_interrupt_entries!`])
/// also check: an interrupt taken *at* the `hlt` returns past it, as if it had woken it.
pub fn enable_interrupts_and_halt() {
    // SAFETY: the stub only enables interrupts, halts and returns (C ABI, no registers used).
    unsafe { stardust_sti_hlt() }
}

unsafe extern "C" {
    /// `sti`, then `hlt` at [`stardust_idle_hlt`], then `ret`.
    fn stardust_sti_hlt();
}

global_asm!(
    r#"
    .section .text.stardust_sti_hlt, "ax", @progbits
    .global stardust_sti_hlt
    .global stardust_idle_hlt
stardust_sti_hlt:
    sti
stardust_idle_hlt:
    hlt
    ret
"#,
    options(att_syntax)
);

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).read() }
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP), and the write's effect must keep the kernel's
/// invariants (a hypervisor MSR that writes into guest memory writes only into a page the
/// caller set aside for it).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(value) }
}

global_asm!(
    r#"
    .section .text.exceptions, "ax", @progbits
    .macro EXC_NOERR n
exc_\n:
    push $0
    push $\n
    jmp exc_common
    .endm
    .macro EXC_ERR n
exc_\n:
    push $\n
    jmp exc_common
    .endm

    EXC_NOERR 0
    EXC_NOERR 1
    EXC_NOERR 2
    EXC_NOERR 3
    EXC_NOERR 4
    EXC_NOERR 5
    EXC_NOERR 6
    EXC_NOERR 7
    EXC_ERR 8
    EXC_NOERR 9
    EXC_ERR 10
    EXC_ERR 11
    EXC_ERR 12
    EXC_ERR 13
    EXC_ERR 14
    EXC_NOERR 15
    EXC_NOERR 16
    EXC_ERR 17
    EXC_NOERR 18
    EXC_NOERR 19
    EXC_NOERR 20
    EXC_ERR 21
    EXC_NOERR 22
    EXC_NOERR 23
    EXC_NOERR 24
    EXC_NOERR 25
    EXC_NOERR 26
    EXC_NOERR 27
    EXC_NOERR 28
    EXC_ERR 29
    EXC_ERR 30
    EXC_NOERR 31

exc_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    and $-16, %rsp
    call stardust_exception
    ud2

    /* Spurious interrupts (APIC vector 0xff, PIC IRQ 7/15): nothing to acknowledge. */
    .global stardust_ignore_entry
stardust_ignore_entry:
    iretq

    .section .rodata.exception_stubs, "a", @progbits
    .p2align 3
    .global stardust_exception_stubs
stardust_exception_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_\n
    .endr
"#,
    options(att_syntax)
);
