//! The per-CPU block: what each CPU keeps for itself (its number and local APIC id, its TSS and
//! interrupt stack, its platform timer's deadline, Xen's `vcpu_info`), one block per CPU in a
//! static array of [`MAX_CPUS`], reached through the CPU's GS base.
//!
//! The block's first word is its own address, so [`current`] is one `mov %gs:0` (the GS base
//! is the `IA32_GS_BASE` MSR on KVM-class monitors and Xen PVH, written by [`install`]; on Xen
//! PV, whose kernel runs in ring 3, `HYPERVISOR_set_segment_base`'s, through
//! [`install_with_base`]). Before a CPU installed its block (early boot), and where the GS base
//! could not be written, [`current`] is the boot CPU's block: correct while only one CPU runs.
//!
//! Every CPU calls `cpu::init_cpu(CpuId(n))` on itself, which fills block `n` (its TSS,
//! pointing at its IST stack; for CPUs after the boot CPU a GDT of their own, whose TSS
//! descriptor is theirs) and installs it. The boot CPU's double-fault stack is a static; the
//! others' come from the frame allocator ([`set_ist_stack`] before their `init_cpu`), so the
//! image does not carry `MAX_CPUS` stacks of which one is used.
//!
//! Hermit (`core_local.rs`) keeps its per-core data the same way: a self pointer at GS:0.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use platform::irq::CpuId;

/// The most CPUs the kernel has blocks for.
pub const MAX_CPUS: usize = 8;

/// Size of each CPU's double-fault stack (IST1).
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// MSR IA32_GS_BASE: the GS segment's base in 64-bit mode.
const IA32_GS_BASE: u32 = 0xc000_0101;

/// 104-byte 64-bit TSS as 32-bit words (it is only 4-byte aligned inside, so no u64 fields).
#[repr(C, align(16))]
pub(crate) struct Tss(pub(crate) [AtomicU32; 26]);

/// A CPU's interrupt stack, written only by the CPU (through its stack pointer).
#[repr(C, align(16))]
struct IstStack(UnsafeCell<[u8; IST_STACK_SIZE]>);

// SAFETY: the stack is never accessed through a reference, only by its address, as the stack
// of the one CPU whose TSS points at it.
unsafe impl Sync for IstStack {}

/// The boot CPU's double-fault stack.
static BOOT_IST: IstStack = IstStack(UnsafeCell::new([0; IST_STACK_SIZE]));

/// One CPU's block.
#[repr(C, align(64))]
pub struct PerCpu {
    /// The block's own address (read as `%gs:0`); 0 until installed.
    this: AtomicU64,
    /// The CPU's number.
    id: AtomicU32,
    /// Its local APIC id (CPUID's initial APIC id).
    apic_id: AtomicU32,
    /// The platform timer's deadline on this CPU, in the platform's units (the KVM platform:
    /// a TSC value), `u64::MAX` when none is armed. The platform's to use.
    pub timer_deadline: AtomicU64,
    /// Xen: the address of this CPU's `vcpu_info` (0 elsewhere). The platform's to use.
    pub vcpu_info: AtomicU64,
    /// Whether [`install`] ran for this block.
    online: AtomicBool,
    /// Its TSS.
    pub(crate) tss: Tss,
    /// The top of its double-fault stack (IST1); 0 until set.
    ist1_top: AtomicU64,
    /// Its GDT, for every CPU but the boot CPU (`cpu::init_cpu`).
    pub(crate) gdt: [AtomicU64; crate::cpu::GDT_ENTRIES],
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            this: AtomicU64::new(0),
            id: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
            timer_deadline: AtomicU64::new(0),
            vcpu_info: AtomicU64::new(0),
            online: AtomicBool::new(false),
            tss: Tss([const { AtomicU32::new(0) }; 26]),
            ist1_top: AtomicU64::new(0),
            gdt: [const { AtomicU64::new(0) }; crate::cpu::GDT_ENTRIES],
        }
    }

    /// The CPU's number.
    pub fn id(&self) -> CpuId {
        CpuId(self.id.load(Ordering::Relaxed))
    }

    /// The CPU's local APIC id.
    pub fn apic_id(&self) -> u32 {
        self.apic_id.load(Ordering::Relaxed)
    }

    /// Whether the CPU is up (its block installed).
    pub fn online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// The top of the IST1 stack (its end address): the boot CPU's static one for block 0.
    pub(crate) fn ist1_top(&self) -> u64 {
        match self.ist1_top.load(Ordering::Acquire) {
            0 if self.id.load(Ordering::Relaxed) == 0 => {
                BOOT_IST.0.get() as u64 + IST_STACK_SIZE as u64
            }
            top => top,
        }
    }
}

impl core::fmt::Debug for PerCpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PerCpu")
            .field("id", &self.id())
            .field("apic_id", &self.apic_id())
            .field("online", &self.online())
            .finish_non_exhaustive()
    }
}

static BLOCKS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// Whether the boot CPU's GS base points at its block (then every CPU's does).
static GS_READY: AtomicBool = AtomicBool::new(false);

/// Whether [`current`] reads the calling CPU's block through its GS base (else it is always
/// the boot CPU's, and no other CPU may run kernel code).
pub fn per_cpu_ready() -> bool {
    GS_READY.load(Ordering::Acquire)
}

/// Block `cpu`, if the kernel has one.
pub fn block(cpu: CpuId) -> Option<&'static PerCpu> {
    BLOCKS.get(cpu.0 as usize)
}

/// The calling CPU's block (the boot CPU's before [`install`], and where GS is not used).
pub fn current() -> &'static PerCpu {
    if !GS_READY.load(Ordering::Acquire) {
        return &BLOCKS[0];
    }
    let this: u64;
    // SAFETY: the GS base is this CPU's block (GS_READY: `install` wrote it on this CPU, and
    // every CPU writes its own before it runs anything that asks); its first word is its
    // address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) this, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: `this` is the address of one of BLOCKS (written by `install`), which are statics.
    unsafe { &*(this as *const PerCpu) }
}

/// Gives CPU `cpu` (not the boot CPU, whose stack is static) its double-fault stack: `top` is
/// the end of [`IST_STACK_SIZE`] bytes of memory it owns for good (from the frame allocator).
/// Call before that CPU's `cpu::init_cpu`.
pub fn set_ist_stack(cpu: CpuId, top: u64) {
    if let Some(b) = block(cpu) {
        b.ist1_top.store(top, Ordering::Release);
    }
}

/// The CPUs that are up.
pub fn online() -> impl Iterator<Item = &'static PerCpu> {
    BLOCKS.iter().filter(|b| b.online())
}

/// Fills block `cpu` (its number and the CPU's local APIC id) for the calling CPU; with
/// `gs` it also points the GS base at it (`IA32_GS_BASE`; not on Xen PV). Returns the block.
/// Called by [`crate::cpu::init_cpu`] once per CPU, on that CPU, before anything asks for
/// [`current`] there.
///
/// # Panics
/// If `cpu` is [`MAX_CPUS`] or more.
pub fn install(cpu: CpuId, gs: bool) -> &'static PerCpu {
    if gs {
        install_with_base(cpu, |this| {
            // SAFETY: IA32_GS_BASE exists on every x86_64 CPU (in ring 0); the kernel never
            // loads the GS selector, so the base stays this block's.
            unsafe { crate::cpu::wrmsr(IA32_GS_BASE, this) };
            true
        })
    } else {
        install_with_base(cpu, |_| false)
    }
}

/// [`install`] where the GS base is written by `set_base` (Xen PV: the kernel's GS base is
/// `HYPERVISOR_set_segment_base`'s), which returns whether it did; if the boot CPU's did,
/// [`current`] reads the GS base from then on, so every other CPU's must succeed before it
/// runs anything that asks.
///
/// # Panics
/// If `cpu` is [`MAX_CPUS`] or more.
pub fn install_with_base(cpu: CpuId, set_base: impl FnOnce(u64) -> bool) -> &'static PerCpu {
    let b = block(cpu).expect("a CPU number below MAX_CPUS");
    // SAFETY: CPUID leaf 1 exists on every x86_64 CPU.
    #[allow(unused_unsafe)]
    let apic_id = unsafe { core::arch::x86_64::__cpuid(1) }.ebx >> 24;
    b.id.store(cpu.0, Ordering::Relaxed);
    b.apic_id.store(apic_id, Ordering::Relaxed);
    b.timer_deadline.store(u64::MAX, Ordering::Relaxed);
    let this = b as *const PerCpu as u64;
    b.this.store(this, Ordering::Release);
    if set_base(this) && cpu.0 == 0 {
        GS_READY.store(true, Ordering::Release);
    }
    b.online.store(true, Ordering::Release);
    b
}
