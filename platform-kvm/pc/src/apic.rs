//! The local APIC in xAPIC mode (MMIO), whose one-shot timer is the platform timer, on IDT
//! vector [`TIMER_VECTOR`] (the platform's entry stub calls [`timer_fired`], then the handler
//! the kernel registered), and whose EOI ([`eoi`]) ends every interrupt but the spurious one.
//!
//! The timer counts down at the APIC bus clock over a divider (QEMU: 1 GHz / 16); its rate is
//! measured against the TSC when the APIC is set up. It is armed for a TSC deadline: the
//! interrupt handler checks that deadline and re-arms the timer when it fired early (a rounding
//! or calibration error, a stale interrupt after a re-arm, a deadline beyond the 32-bit count),
//! so the kernel's handler only ever runs at or after the deadline. The deadline is per CPU
//! (`arch_x86_64::percpu`'s `timer_deadline`). TSC-deadline mode is not used:
//! under TCG, CPUID does not report it (QEMU 10.0.2, `qemu64` and `-cpu max`), so it could not
//! be tested; the count mode works on every local APIC.

use arch_x86_64::{cpu, percpu, tsc};
use core::sync::atomic::{AtomicU64, Ordering};

/// The vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x30;

/// MSR IA32_APIC_BASE: the APIC's physical base address (bits 12..), global enable (bit 11).
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const APIC_X2APIC: u64 = 1 << 10;

// Register offsets of the xAPIC page.
const EOI: u64 = 0x0b0;
const SPURIOUS: u64 = 0x0f0;
const TASK_PRIORITY: u64 = 0x080;
const LVT_TIMER: u64 = 0x320;
const LVT_LINT0: u64 = 0x350;
const LVT_ERROR: u64 = 0x370;
const TIMER_INITIAL: u64 = 0x380;
const TIMER_CURRENT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3e0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;

/// ICR delivery modes and flags.
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_PENDING: u32 = 1 << 12;

const LVT_MASKED: u32 = 1 << 16;
const SOFTWARE_ENABLE: u32 = 1 << 8;
/// Divide configuration 0b0011: the bus clock divided by 16.
const DIVIDE_BY_16: u32 = 0b0011;

/// The xAPIC page's physical (= virtual) address; 0 until [`init`] succeeded.
static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per second (after the divider).
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per TSC tick, 32.32 fixed point: arming the timer is then one multiply (no
/// 128-bit division on the scheduler's hot path).
static TICKS_PER_TSC: AtomicU64 = AtomicU64::new(0);

/// The local APIC's base address from IA32_APIC_BASE, when CPUID reports an APIC that is
/// enabled and in xAPIC mode (the page to map uncached before [`init`]).
pub fn xapic_base() -> Option<u64> {
    // SAFETY: CPUID leaf 1 exists on every x86_64 CPU.
    #[allow(unused_unsafe)]
    let features = unsafe { core::arch::x86_64::__cpuid(1) };
    if features.edx & (1 << 9) == 0 {
        return None;
    }
    // SAFETY: IA32_APIC_BASE exists wherever CPUID reports an APIC.
    let msr = unsafe { cpu::rdmsr(IA32_APIC_BASE) };
    if msr & APIC_GLOBAL_ENABLE == 0 || msr & APIC_X2APIC != 0 {
        return None;
    }
    Some(msr & 0x000f_ffff_ffff_f000)
}

/// Whether CPUID reports the TSC-deadline timer mode (logged; not used, see the module docs).
pub fn has_tsc_deadline() -> bool {
    // SAFETY: CPUID leaf 1 exists on every x86_64 CPU.
    #[allow(unused_unsafe)]
    let features = unsafe { core::arch::x86_64::__cpuid(1) };
    features.ecx & (1 << 24) != 0
}

fn read(base: u64, register: u64) -> u32 {
    // SAFETY: `base` is the xAPIC page, mapped uncached (contract of `init`); its registers
    // are 32-bit, 16-byte aligned.
    unsafe { ((base + register) as *const u32).read_volatile() }
}

fn write(base: u64, register: u64, value: u32) {
    // SAFETY: as in `read`; callers write values the register defines.
    unsafe { ((base + register) as *mut u32).write_volatile(value) }
}

/// Enables the local APIC at `base` (software enable, spurious vector
/// [`cpu::SPURIOUS_VECTOR`], LINT0 and error interrupts masked), and measures its timer against
/// the TSC (`tsc_hz`) for about two milliseconds. Its ID register gives its APIC id. Returns the timer's rate in Hz (after its
/// divider), or `None` if it does not count.
///
/// # Safety
/// `base` is the xAPIC page ([`xapic_base`]), identity-mapped uncached; [`cpu::init`] installed
/// the spurious gates and the platform the timer's ([`TIMER_VECTOR`]); interrupts are masked;
/// call once.
pub unsafe fn init(base: u64, tsc_hz: u64) -> Option<u64> {
    enable(base);
    // Calibrate: count down from the top for ~2 ms of TSC, sampling (TSC, count) pairs with
    // the same code at both ends (under TCG, translating new code on the way would skew one
    // end by tens of microseconds).
    let window = (tsc_hz / 500).max(1);
    write(base, TIMER_INITIAL, u32::MAX);
    let sample = || {
        let t = tsc::now();
        (t, read(base, TIMER_CURRENT))
    };
    let (t0, c0) = sample();
    let (mut t1, mut c1) = (t0, c0);
    while t1 - t0 < window {
        core::hint::spin_loop();
        (t1, c1) = sample();
    }
    write(base, TIMER_INITIAL, 0);
    let ticks = u64::from(c0 - c1);
    let hz = (u128::from(ticks) * u128::from(tsc_hz) / u128::from(t1 - t0)) as u64;
    if hz < 1000 {
        return None;
    }
    write(base, LVT_TIMER, u32::from(TIMER_VECTOR));
    TIMER_HZ.store(hz, Ordering::Relaxed);
    let scale = (u128::from(hz) << 32).div_ceil(u128::from(tsc_hz.max(1)));
    TICKS_PER_TSC.store(u64::try_from(scale).unwrap_or(u64::MAX), Ordering::Relaxed);
    BASE.store(base, Ordering::Release);
    Some(hz)
}

/// Enables the calling CPU's local APIC like [`init`] (whose calibration every CPU shares: the
/// APIC bus clock is one), with its timer stopped.
///
/// # Safety
/// [`init`] succeeded on the boot CPU; interrupts are masked on the calling CPU, whose IDT is
/// the shared one ([`cpu::init_cpu`] ran).
pub unsafe fn init_other_cpu() {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return;
    }
    enable(base);
    write(base, TIMER_INITIAL, 0);
    write(base, LVT_TIMER, u32::from(TIMER_VECTOR));
}

/// Enables the calling CPU's local APIC at `base`: software enable with the spurious vector,
/// every priority accepted, LINT0 and error interrupts masked, the timer masked on its vector
/// with the divider by 16.
fn enable(base: u64) {
    write(base, TASK_PRIORITY, 0);
    write(base, LVT_LINT0, LVT_MASKED);
    write(base, LVT_ERROR, LVT_MASKED);
    write(
        base,
        SPURIOUS,
        SOFTWARE_ENABLE | u32::from(cpu::SPURIOUS_VECTOR),
    );
    write(base, TIMER_DIVIDE, DIVIDE_BY_16);
    write(base, LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
}

/// Sends an inter-processor interrupt: `command` (the ICR's low word: vector, delivery mode,
/// level) to the CPU with local APIC id `apic_id`, and waits (boundedly) until the APIC took
/// it. Returns false when there is no APIC or it never took it.
fn send(apic_id: u32, command: u32) -> bool {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 || apic_id > 0xff {
        return false;
    }
    let enabled = cpu::interrupts_disable();
    write(base, ICR_HIGH, apic_id << 24);
    write(base, ICR_LOW, command);
    let mut sent = false;
    for _ in 0..100_000 {
        if read(base, ICR_LOW) & ICR_PENDING == 0 {
            sent = true;
            break;
        }
        core::hint::spin_loop();
    }
    if enabled {
        cpu::interrupts_enable();
    }
    sent
}

/// Sends interrupt `vector` to the CPU with local APIC id `apic_id` (a fixed IPI).
pub fn send_fixed(apic_id: u32, vector: u8) -> bool {
    send(apic_id, ICR_ASSERT | u32::from(vector))
}

/// Sends INIT to the CPU with local APIC id `apic_id` (it resets and waits for a startup IPI).
pub fn send_init(apic_id: u32) -> bool {
    send(apic_id, ICR_INIT | ICR_ASSERT)
}

/// Sends a startup IPI to the CPU with local APIC id `apic_id`: it starts in real mode at
/// `vector << 12`.
pub fn send_startup(apic_id: u32, vector: u8) -> bool {
    send(apic_id, ICR_STARTUP | ICR_ASSERT | u32::from(vector))
}

/// Whether [`init`] succeeded.
pub fn ready() -> bool {
    BASE.load(Ordering::Acquire) != 0
}

/// Starts the one-shot count for `tsc_ticks` of TSC time (at least about a microsecond, at most
/// the 32-bit count; the handler re-arms for what is left).
fn start(base: u64, tsc_ticks: u64) {
    let hz = TIMER_HZ.load(Ordering::Relaxed);
    let scale = TICKS_PER_TSC.load(Ordering::Relaxed);
    // Round up (the scale is rounded up too): the count must not end before the deadline.
    // At least ~1 us: a deadline already past (re-armed from the hook, say) must still let
    // the interrupted code run on between two interrupts.
    let count = ((u128::from(tsc_ticks) * u128::from(scale)) >> 32) + 1;
    let min = u128::from((hz / 1_000_000).max(1));
    let count = count.max(min).min(u128::from(u32::MAX)) as u32;
    write(base, TIMER_INITIAL, count);
}

/// Arms the timer: its interrupt calls the kernel's handler at or after TSC value `deadline`
/// (one in the past fires almost at once). Call with interrupts masked. Returns `false` when
/// the APIC is not set up.
pub fn set_deadline(deadline: u64) -> bool {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return false;
    }
    percpu::current()
        .timer_deadline
        .store(deadline, Ordering::Relaxed);
    start(base, deadline.saturating_sub(tsc::now()));
    true
}

/// Acknowledges an interrupt at the local APIC (end of interrupt). Call from the handler of
/// every vector but the spurious one, once the interrupt's source cannot raise it again (its
/// line masked) or has been served.
pub fn eoi() {
    let base = BASE.load(Ordering::Acquire);
    if base != 0 {
        write(base, EOI, 0);
    }
}

/// Called by the platform's timer entry with interrupts masked, on the interrupted stack:
/// acknowledges the interrupt, then returns `true` if this CPU's deadline has passed (the
/// caller then calls the kernel's handler), else re-arms for the rest and returns `false`.
pub fn timer_fired() -> bool {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return false;
    }
    write(base, EOI, 0);
    let slot = &percpu::current().timer_deadline;
    let deadline = slot.load(Ordering::Relaxed);
    if deadline == u64::MAX {
        return false;
    }
    let now = tsc::now();
    if now < deadline {
        start(base, deadline - now);
        return false;
    }
    slot.store(u64::MAX, Ordering::Relaxed);
    // The acknowledgement is done and no APIC state is held: the kernel may switch threads.
    true
}
