//! Interrupts on KVM-class monitors: the timer's entry, the device vectors and their handler
//! table, the IOAPICs.
//!
//! - The local APIC timer (vector [`apic::TIMER_VECTOR`]) enters through the stub below, which
//!   acknowledges it ([`apic::timer_fired`]: EOI, re-arm when early) and calls the one handler
//!   the kernel registered ([`set_timer_handler`], `Platform::set_timer_handler`), kept in a
//!   one-slot [`HandlerTable`].
//! - Device lines: IDT vectors [`cpu::DEVICE_VECTORS`] (0x40 + slot) each have a stub (the arch
//!   crate's `device_interrupt_entries!`) that calls [`stardust_device_interrupt`] with its slot.
//!   Slot `i` of [`DEVICES`] holds the line (a GSI), the CPU and the handler. The dispatcher
//!   masks the line at its IOAPIC, sends the local APIC its EOI and calls the handler (the
//!   "oneshot" contract of `platform::irq`); `Platform::irq_unmask` opens the line again. A
//!   vector without a slot is spurious: counted ([`spurious`]), acknowledged, nothing else.
//! - `Platform::irq_register` puts the handler into a free slot, then programs the line's
//!   redirection entry (vector 0x40 + slot, the CPU's local APIC id, the line's trigger and
//!   polarity from [`pc::ioapic::Routing::mode`]) masked, then unmasks it: the registration is
//!   published before the line can fire.
//! - The IOAPICs are found at `Platform::init` (ACPI's MADT, else the standard one, see
//!   `pc::ioapic`), their pages returned as device memory; as soon as the kernel's page tables
//!   map them (`Platform::map_memory`, [`prepare`]) their input counts are read and every input
//!   parked: masked, with its line's trigger and polarity already, so that a level line a device
//!   raises before its handler is registered is latched and delivered on unmask (QEMU's IOAPIC
//!   drops a line raised on a masked edge-triggered entry, the reset state, for good). One
//!   lock serialises their index/data register pairs; it is taken with interrupts masked.

use arch_x86_64::{cpu, percpu};
use core::sync::atomic::{AtomicU64, Ordering};
use pc::apic;
use pc::ioapic::{self, Mode, Routing};
use platform::irq::{CpuId, Handler, HandlerTable, Irq, IrqError};
use platform::{PAGE_SIZE, PhysRead, Range};

/// Device slots: one per vector of [`cpu::DEVICE_VECTORS`].
pub const SLOTS: usize = 32;
const _: () =
    assert!(SLOTS == cpu::DEVICE_VECTORS.end as usize - cpu::DEVICE_VECTORS.start as usize);

/// The device lines' handlers: slot `i` is vector `0x40 + i`.
pub static DEVICES: HandlerTable<SLOTS> = HandlerTable::new();
/// The timer's handler (one slot; its line is the local APIC timer, not an IOAPIC input).
static TIMER: HandlerTable<1> = HandlerTable::new();
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// The IOAPICs (found at init) and whether their inputs were counted and masked.
struct IoApics {
    routing: Option<Routing>,
    ready: bool,
}

static IOAPICS: spin::Mutex<IoApics> = spin::Mutex::new(IoApics {
    routing: None,
    ready: false,
});

arch_x86_64::interrupt_entry!("stardust_timer_entry", "stardust_apic_timer");
arch_x86_64::device_interrupt_entries!("stardust_device_entries", "stardust_device_interrupt");

unsafe extern "C" {
    /// The timer interrupt's entry stub.
    static stardust_timer_entry: u8;
    /// The device vectors' entry stubs, slot by slot.
    static stardust_device_entries: [u64; SLOTS];
}

/// Points the timer's IDT gate at its stub, on the interrupted code's stack (no IST: the
/// kernel may switch threads inside an interrupt, and each thread's interrupt frame must stay
/// on that thread's stack). Call after `cpu::init_cpu`. The device vectors' gates are installed
/// by the first registration ([`device_gates`]): an image that registers no device line does
/// not carry their stubs and dispatcher.
pub fn install_gates() {
    // SAFETY: the stub above saves every caller-saved register and returns by `iretq`.
    unsafe {
        cpu::set_interrupt_gate(apic::TIMER_VECTOR, (&raw const stardust_timer_entry) as u64)
    };
}

/// Points the device vectors' gates at their stubs (once; the IDT is shared by all CPUs).
fn device_gates() {
    static DONE: spin::Once = spin::Once::new();
    DONE.call_once(|| {
        // SAFETY: a table of 32 code addresses the linker filled in; it is never written.
        let stubs = unsafe { &stardust_device_entries };
        for (vector, &stub) in cpu::DEVICE_VECTORS.zip(stubs.iter()) {
            // SAFETY: the stubs save every caller-saved register and return by `iretq`.
            unsafe { cpu::set_interrupt_gate(vector, stub) };
        }
    });
}

/// Finds the IOAPICs (the MADT under `rsdp`, else the standard one) and returns the device
/// memory that covers their pages (one range: QEMU's are 64 KiB apart).
pub fn discover(mem: &impl PhysRead, rsdp: u64) -> Option<Range> {
    let routing = match Routing::from_madt(mem, rsdp) {
        Ok(r) => r,
        // (The reason is not printed: its formatting would cost every image that never
        // registers a line; `pc::ioapic`'s tests cover the parser.)
        Err(_) => {
            log::debug!("no usable ACPI MADT: assuming the standard IOAPIC at 0xfec00000");
            Routing::legacy()
        }
    };
    let start = routing.ioapics().map(|io| io.address).min()?;
    let end = routing.ioapics().map(|io| io.address + PAGE_SIZE).max()?;
    IOAPICS.lock().routing = Some(routing);
    Some(Range::new(start, end))
}

/// Sets how `irq` is triggered, for discovery that knows a line better than the conventions
/// (`pc::ioapic::Routing::mode`): virtio-mmio lines named on the command line are
/// level-triggered. Call before the line is registered. Returns false without IOAPICs or when
/// too many lines were set.
pub fn set_line_mode(irq: Irq, mode: Mode) -> bool {
    let was = cpu::interrupts_disable();
    let mut state = IOAPICS.lock();
    let ok = state
        .routing
        .as_mut()
        .is_some_and(|r| r.set_mode(irq.0, mode));
    // Parked already (`prepare`): the line's entry takes its new mode now, before its device
    // starts. A registered line keeps its entry.
    if ok
        && state.ready
        && DEVICES.find(irq).is_none()
        && let Some((base, pin)) = input(&mut state, irq.0)
    {
        // SAFETY: as in `register`: mapped, locked with interrupts masked, a real input.
        let mut regs = unsafe { ioapic::Mmio::new() };
        ioapic::set_entry(&mut regs, base, pin, ioapic::parked(mode));
    }
    drop(state);
    restore(was);
    ok
}

fn restore(enabled: bool) {
    if enabled {
        cpu::interrupts_enable();
    }
}

/// Counts the IOAPICs' inputs and parks every one (`pc::ioapic::park_all`: masked, with its
/// line's trigger and polarity), once (the caller holds the lock with interrupts masked; the
/// pages are mapped).
fn park(state: &mut IoApics) {
    if state.ready {
        return;
    }
    let Some(routing) = state.routing.as_mut() else {
        return;
    };
    // SAFETY: the IOAPIC pages of `routing` (the firmware's tables or the standard one), which
    // `init` returned as device memory and the kernel mapped uncached (MAPPED); the caller holds
    // the lock with interrupts masked; `park_all` writes redirection entries only.
    ioapic::park_all(&mut unsafe { ioapic::Mmio::new() }, routing);
    for io in routing.ioapics() {
        log::debug!(
            "IOAPIC {} at {:#x}: GSI {}-{}",
            io.id,
            io.address,
            io.gsi_base,
            io.gsi_base + io.inputs - 1
        );
    }
    state.ready = true;
}

/// Parks every IOAPIC input (see `park`) as soon as the kernel's tables map them
/// (`Platform::map_memory`), before any driver starts a device: a level-triggered line a device
/// raises from then on is latched by its IOAPIC even though no handler is registered yet, and
/// delivered when `register` unmasks it. (Parked only at the first registration, a line raised
/// before it met the reset entry, masked and edge-triggered, and QEMU's IOAPIC dropped it for
/// good: the silent NIC of issue 16, see `pc::ioapic::park_all`.)
pub fn prepare() {
    if !crate::MAPPED.load(Ordering::Acquire) {
        return;
    }
    let was = cpu::interrupts_disable();
    park(&mut IOAPICS.lock());
    restore(was);
}

/// The page of the IOAPIC serving `gsi` and the input, parking every input first if that was
/// not done (the caller holds the lock with interrupts masked; the pages are mapped).
fn input(state: &mut IoApics, gsi: u32) -> Option<(u64, u32)> {
    park(state);
    let routing = state.routing.as_ref()?;
    let (index, pin) = routing.input(gsi)?;
    let io = routing.ioapics().nth(index)?;
    Some((io.address, pin))
}

/// `Platform::irq_register` on KVM-class monitors (see the module docs).
pub fn register(irq: Irq, cpu: CpuId, handler: Handler, data: usize) -> Result<(), IrqError> {
    if !crate::MAPPED.load(Ordering::Acquire) || !crate::apic_ready() {
        return Err(IrqError::Unsupported);
    }
    let target = percpu::block(cpu)
        .filter(|b| b.online())
        .ok_or(IrqError::NoSuchCpu(cpu))?;
    let apic_id = u8::try_from(target.apic_id()).map_err(|_| IrqError::NoSuchCpu(cpu))?;
    device_gates();
    let was = cpu::interrupts_disable();
    let result = (|| {
        let mut state = IOAPICS.lock();
        if state.routing.is_none() {
            return Err(IrqError::Unsupported);
        }
        let (base, pin) = input(&mut state, irq.0).ok_or(IrqError::NoSuchLine(irq))?;
        let mode = state.routing.as_ref().map_or(Mode::ISA, |r| r.mode(irq.0));
        let slot = DEVICES.register(irq, cpu, handler, data)?;
        let vector = cpu::DEVICE_VECTORS.start + slot as u8;
        // SAFETY: the IOAPIC page is mapped (see `input`), the lock is held with interrupts
        // masked, `pin` is one of its inputs.
        let mut regs = unsafe { ioapic::Mmio::new() };
        // Written masked, then unmasked once the slot is published.
        ioapic::route(&mut regs, base, pin, vector, apic_id, mode);
        log::debug!(
            "interrupt line {} ({mode}) -> vector {vector:#x} on CPU {}",
            irq.0,
            cpu.0
        );
        Ok(())
    })();
    restore(was);
    result
}

/// Masks (`true`) or unmasks `irq` at its IOAPIC, if it has one.
fn set_masked(irq: Irq, masked: bool) {
    let was = cpu::interrupts_disable();
    let mut state = IOAPICS.lock();
    if state.ready
        && let Some((base, pin)) = input(&mut state, irq.0)
    {
        // SAFETY: as in `register`: mapped, locked with interrupts masked, a real input.
        let mut regs = unsafe { ioapic::Mmio::new() };
        ioapic::set_masked(&mut regs, base, pin, masked);
    }
    drop(state);
    restore(was);
}

/// `Platform::irq_unmask`.
pub fn unmask(irq: Irq) {
    set_masked(irq, false);
}

/// `Platform::set_timer_handler`: the handler the timer interrupt calls.
pub fn set_timer_handler(handler: Handler, data: usize) {
    let was = cpu::interrupts_disable();
    TIMER.unregister(0);
    // Cannot fail: the one slot was just freed, and line 0 is not a marker.
    let _ = TIMER.register(Irq(0), CpuId(0), handler, data);
    restore(was);
}

/// Device interrupts that found no handler (a vector without a slot).
pub fn spurious() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}

/// The timer's entry (stub above), interrupts masked, on the interrupted stack.
#[unsafe(no_mangle)]
extern "C" fn stardust_apic_timer() {
    if apic::timer_fired() {
        // The EOI is sent and no lock is held: the handler may switch threads.
        TIMER.dispatch(0);
    }
}

/// The device vectors' common entry (the stubs above), with the vector's slot; interrupts
/// masked, on the interrupted stack.
#[unsafe(no_mangle)]
extern "C" fn stardust_device_interrupt(slot: u64) {
    match DEVICES.get(slot as usize) {
        Some(r) => {
            set_masked(r.irq, true);
            apic::eoi();
            (r.handler)(r.data);
        }
        None => {
            SPURIOUS.fetch_add(1, Ordering::Relaxed);
            apic::eoi();
        }
    }
}
