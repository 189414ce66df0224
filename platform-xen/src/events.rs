//! Event channels: the upcall (Xen's event callback), handlers per port, the one-shot timer
//! (`set_timer_op` + `VIRQ_TIMER`) and idle.
//!
//! PV: the callback is registered by `set_callbacks` and entered with a PV frame; events are
//! masked in `vcpu_info` (this platform's interrupt enable/disable) and idle is
//! `SCHEDOP_block`. PVH: the callback is an IDT vector (`HVM_PARAM_CALLBACK_IRQ`, type vector),
//! which Xen injects while `evtchn_upcall_pending` is set and RFLAGS.IF allows it; events are
//! masked by `cli` and idle is `sti; hlt` (never `hlt` with interrupts off: on Xen HVM that is
//! a clean power-off).
//!
//! The scan and the handler table are `xen_services::event` (host-tested); this module is the
//! glue: the entry stubs, the shared info bitmaps and the hypercalls.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, compiler_fence};
use xen_services::event::{EventBits, EventChannel, Handler, Handlers};

/// Ports with a handler slot (2-level ABI ports go up to 4095; a unikernel uses a handful).
const PORTS: usize = 256;

static HANDLERS: spin::Mutex<Handlers<PORTS>> = spin::Mutex::new(Handlers::new());
static TIMER_PORT: AtomicU32 = AtomicU32::new(u32::MAX);
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static READY: AtomicBool = AtomicBool::new(false);
/// Set by the timer VIRQ's handler, taken by the upcall.
static TIMER_FIRED: AtomicBool = AtomicBool::new(false);

#[cfg(not(feature = "pvh"))]
core::arch::global_asm!(
    r#"
    .section .text.xen_events, "ax", @progbits
    /* Xen enters here with events masked and [rcx, r11, rip, cs, rflags, rsp, ss] on the
       stack. The handler runs in Rust (soft-float target: no vector state to save). */
    .global xen_event_callback
xen_event_callback:
    mov (%rsp), %rcx
    mov 8(%rsp), %r11
    add $16, %rsp
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbx
    mov %rsp, %rbx
    and $-16, %rsp
    call xen_upcall
    mov %rbx, %rsp
    pop %rbx
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    /* Back to the guest kernel (ring 3) directly: iretq at the same privilege level. */
    orb $3, 8(%rsp)
    orb $3, 32(%rsp)
    iretq

    /* Xen could not return to the guest (a bad segment or frame): report and crash. */
    .global xen_failsafe_callback
xen_failsafe_callback:
    and $-16, %rsp
    call xen_failsafe
    ud2
"#,
    options(att_syntax)
);

/// The vector Xen injects for events on PVH (`HVM_PARAM_CALLBACK_IRQ`, type vector).
#[cfg(feature = "pvh")]
pub const CALLBACK_VECTOR: u8 = 0xf3;

// The PVH callback vector's entry (the arch crate's interrupt stub around the upcall, which
// may switch threads before it returns). No EOI: Xen's callback vector does not go through
// the local APIC, it is raised while `evtchn_upcall_pending` is set.
#[cfg(feature = "pvh")]
arch_x86_64::interrupt_entry!("xen_pvh_callback_entry", "xen_upcall");

#[cfg(not(feature = "pvh"))]
unsafe extern "C" {
    static xen_event_callback: u8;
    static xen_failsafe_callback: u8;
}

#[cfg(feature = "pvh")]
unsafe extern "C" {
    static xen_pvh_callback_entry: u8;
}

fn vcpu() -> &'static xen_sys::vcpu_info {
    // SAFETY: the shared info page is mapped (time::map_shared_info runs in Platform::init,
    // before events are set up); vcpu_info[0] is ours and only accessed atomically below.
    unsafe { &(*(crate::time::shared_info_va() as *const xen_sys::shared_info)).vcpu_info[0] }
}

fn mask_byte() -> &'static AtomicU8 {
    // SAFETY: a byte of the mapped vcpu_info, shared with Xen, accessed only atomically.
    unsafe { AtomicU8::from_ptr((&raw const vcpu().evtchn_upcall_mask).cast_mut()) }
}

fn pending_byte() -> &'static AtomicU8 {
    // SAFETY: as in `mask_byte`.
    unsafe { AtomicU8::from_ptr((&raw const vcpu().evtchn_upcall_pending).cast_mut()) }
}

/// The shared info page's event bitmaps.
struct SharedBits;

fn shared() -> *mut xen_sys::shared_info {
    crate::time::shared_info_va() as *mut xen_sys::shared_info
}

fn word(array: *const u64, w: usize) -> &'static AtomicU64 {
    // SAFETY: `array` is one of the 64-word bitmaps of the mapped shared info page (w < 64,
    // the scan's contract), shared with Xen, accessed only atomically.
    unsafe { AtomicU64::from_ptr(array.add(w).cast_mut()) }
}

impl EventBits for SharedBits {
    fn take_selector(&self) -> u64 {
        // SAFETY: the selector word of the mapped vcpu_info, accessed only atomically.
        let sel = unsafe { AtomicU64::from_ptr((&raw const vcpu().evtchn_pending_sel).cast_mut()) };
        sel.swap(0, Ordering::AcqRel)
    }
    fn pending(&self, w: usize) -> u64 {
        // SAFETY: address of a field of the mapped page; nothing is read through the raw place.
        word(unsafe { (&raw const (*shared()).evtchn_pending).cast() }, w).load(Ordering::Acquire)
    }
    fn mask(&self, w: usize) -> u64 {
        // SAFETY: as in `pending`.
        word(unsafe { (&raw const (*shared()).evtchn_mask).cast() }, w).load(Ordering::Acquire)
    }
    fn clear_pending(&self, port: EventChannel) {
        let w = (port.0 / 64) as usize;
        // SAFETY: as in `pending`.
        let pending = word(unsafe { (&raw const (*shared()).evtchn_pending).cast() }, w);
        pending.fetch_and(!(1u64 << (port.0 % 64)), Ordering::AcqRel);
    }
}

/// The upcall: handles pending ports until none is left; then, if the timer fired, calls the
/// kernel's timer hook (last, with events still masked, no lock held: the kernel may switch
/// threads inside it, and this upcall finishes when this thread is switched back to); then
/// unmasks events, and starts over if more arrived meanwhile.
///
/// The hook runs at most once per upcall: a hook that arms the timer for a time already past
/// (Xen raises the VIRQ at once) would otherwise keep the upcall looping and never let the
/// interrupted code run. A timer that fires again is re-raised as pending ([`defer_timer`]),
/// for Xen to deliver on its next return to the guest.
#[unsafe(no_mangle)]
extern "C" fn xen_upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let mut ticked = false;
    loop {
        loop {
            pending_byte().store(0, Ordering::Release);
            // Events are masked here, so this cannot interrupt a holder on this CPU (bind takes
            // the lock with events masked too). The guard drops at the end of the statement.
            HANDLERS.lock().scan(&SharedBits);
            if pending_byte().load(Ordering::Acquire) == 0 {
                break;
            }
        }
        if !ticked && TIMER_FIRED.swap(false, Ordering::AcqRel) {
            ticked = true;
            // The timer's pending bit is cleared, every other pending port handled, the
            // handler lock released; the upcall's state is all on this stack.
            arch_x86_64::cpu::timer_interrupt();
        }
        if TIMER_FIRED.swap(false, Ordering::AcqRel) {
            defer_timer();
            break;
        }
        mask_byte().store(0, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
        if pending_byte().load(Ordering::Acquire) == 0 {
            return;
        }
        mask_byte().store(1, Ordering::Release);
    }
    // Leave with the timer pending again: unmasked, Xen delivers it on its next return to the
    // guest (a hypercall, or any exit), after the interrupted code ran on.
    mask_byte().store(0, Ordering::Release);
}

/// Marks the timer VIRQ pending again in shared info (port bit, selector bit, upcall pending),
/// as Xen would. Called with events masked.
fn defer_timer() {
    let port = TIMER_PORT.load(Ordering::Relaxed);
    if port == u32::MAX {
        return;
    }
    let w = (port / 64) as usize;
    // SAFETY: address of a field of the mapped page; nothing is read through the raw place.
    word(unsafe { (&raw const (*shared()).evtchn_pending).cast() }, w)
        .fetch_or(1u64 << (port % 64), Ordering::AcqRel);
    // SAFETY: the selector word of the mapped vcpu_info, accessed only atomically.
    let sel = unsafe { AtomicU64::from_ptr((&raw const vcpu().evtchn_pending_sel).cast_mut()) };
    sel.fetch_or(1u64 << w, Ordering::AcqRel);
    pending_byte().store(1, Ordering::Release);
}

#[cfg(not(feature = "pvh"))]
#[unsafe(no_mangle)]
extern "C" fn xen_failsafe() -> ! {
    log::error!("Xen failsafe callback: could not return to the guest");
    <crate::Xen as platform::Platform>::exit(platform::status::EXCEPTION)
}

/// Masks events; returns whether they were enabled.
#[cfg(not(feature = "pvh"))]
pub fn disable() -> bool {
    mask_byte().swap(1, Ordering::AcqRel) == 0
}

/// Masks events (`cli`: the callback vector is an interrupt); returns whether they were
/// enabled.
#[cfg(feature = "pvh")]
pub fn disable() -> bool {
    arch_x86_64::cpu::interrupts_disable()
}

/// Unmasks events (`sti`); Xen injects the callback vector if one is pending.
#[cfg(feature = "pvh")]
pub fn enable() {
    arch_x86_64::cpu::interrupts_enable();
}

/// Unmasks events, delivering any that arrived while masked.
#[cfg(not(feature = "pvh"))]
pub fn enable() {
    mask_byte().store(0, Ordering::Release);
    compiler_fence(Ordering::SeqCst);
    if pending_byte().load(Ordering::Acquire) != 0 {
        // Any hypercall returns through Xen's event delivery check, which runs the upcall.
        // SAFETY: xen_version(XENVER_version, NULL) only reads the version.
        unsafe { crate::hypercall::hypercall2(xen_sys::__HYPERVISOR_xen_version, 0, 0) };
    }
}

/// Restores the state [`disable`] returned.
pub fn restore(was_enabled: bool) {
    if was_enabled {
        enable();
    }
}

/// Sets `port`'s handler and unmasks the port.
pub fn bind(
    port: u32,
    handler: Handler,
    ctx: usize,
) -> Result<(), xen_services::event::EventError> {
    let was = disable();
    let r = HANDLERS.lock().bind(EventChannel(port), handler, ctx);
    restore(was);
    r?;
    unmask(port);
    Ok(())
}

/// Unmasks `port` (`EVTCHNOP_unmask`, which re-raises it if it is pending).
pub fn unmask(port: u32) {
    let arg = xen_sys::evtchn_unmask { port };
    // SAFETY: a live evtchn_unmask for the call; unmasking only enables delivery.
    unsafe {
        crate::hypercall::event_channel_op(xen_sys::EVTCHNOP_unmask, (&raw const arg).cast())
    };
}

/// The timer VIRQ's handler: only notes it; the upcall calls the kernel's hook at its end.
fn on_timer(_port: EventChannel, _ctx: usize) {
    TIMER_FIRED.store(true, Ordering::Release);
}

/// Registers the event and failsafe callbacks, binds the timer VIRQ, and enables events.
#[cfg(not(feature = "pvh"))]
pub fn init() {
    let event = (&raw const xen_event_callback) as u64;
    let failsafe = (&raw const xen_failsafe_callback) as u64;
    // SAFETY: both addresses are entry stubs above, in our code; set_callbacks only records
    // them (x86_64: event, failsafe, syscall).
    let rc = unsafe {
        crate::hypercall::hypercall4(xen_sys::__HYPERVISOR_set_callbacks, event, failsafe, 0, 0)
    };
    if rc != 0 {
        log::warn!("set_callbacks failed ({rc}): no events");
        return;
    }
    bind_timer();
}

/// Points the callback vector's IDT gate at our entry, asks Xen for that vector
/// (`HVM_PARAM_CALLBACK_IRQ`, type vector, in bits 63..56), binds the timer VIRQ, and enables
/// events. Needs the shared info page (mapped by `init`) and the IDT (`init_cpu`).
#[cfg(feature = "pvh")]
pub fn init() {
    if !crate::time::shared_info_mapped() {
        log::warn!("no shared info: no events, sleeping will poll");
        return;
    }
    let entry = (&raw const xen_pvh_callback_entry) as u64;
    // SAFETY: the entry above saves every caller-saved register and returns by iretq.
    unsafe { arch_x86_64::cpu::set_interrupt_gate(CALLBACK_VECTOR, entry) };
    let via = u64::from(xen_sys::HVM_PARAM_CALLBACK_TYPE_VECTOR) << 56 | u64::from(CALLBACK_VECTOR);
    if let Err(rc) = crate::pvh::set_hvm_param(xen_sys::HVM_PARAM_CALLBACK_IRQ, via) {
        log::warn!("setting the event callback vector failed ({rc}): no events");
        return;
    }
    bind_timer();
}

/// Binds the timer VIRQ to its handler, marks events ready and enables them.
fn bind_timer() {
    let mut virq = xen_sys::evtchn_bind_virq {
        virq: xen_sys::VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    // SAFETY: a live evtchn_bind_virq; Xen writes the new port into it.
    let rc = unsafe {
        crate::hypercall::event_channel_op(xen_sys::EVTCHNOP_bind_virq, (&raw mut virq).cast())
    };
    if rc != 0 {
        log::warn!("binding the timer VIRQ failed ({rc}): sleeping will poll");
    } else {
        TIMER_PORT.store(virq.port, Ordering::Relaxed);
        let _ = bind(virq.port, on_timer, 0);
    }
    READY.store(true, Ordering::Release);
    enable();
}

/// Whether the event callback and the timer VIRQ are set up (else timers cannot wake a
/// blocked vCPU, and callers must poll).
pub fn ready() -> bool {
    READY.load(Ordering::Acquire) && TIMER_PORT.load(Ordering::Relaxed) != u32::MAX
}

/// Upcalls taken so far.
pub fn upcalls() -> u64 {
    UPCALLS.load(Ordering::Relaxed)
}

/// Arms the one-shot timer for Xen system time `deadline_ns` (0 cancels it).
pub fn set_timer(deadline_ns: u64) {
    // SAFETY: set_timer_op takes an absolute system time; it only schedules VIRQ_TIMER.
    unsafe { crate::hypercall::hypercall2(xen_sys::__HYPERVISOR_set_timer_op, deadline_ns, 0) };
}

/// Idles until an event arrives: `sti; hlt` (atomic by the `sti` shadow, so an event that
/// arrived after the caller's last check wakes the `hlt`). Call with events masked; returns with
/// them enabled (the upcall has run).
#[cfg(feature = "pvh")]
pub fn block() {
    if ready() {
        arch_x86_64::cpu::enable_interrupts_and_halt();
    } else {
        // Nothing would wake a halted vCPU: enable, give the vCPU back for a moment.
        enable();
        crate::hypercall::yield_cpu();
    }
}

/// Idles until an event arrives: `SCHEDOP_block` unmasks events and blocks unless one is
/// pending, atomically, so an event that arrives after the caller's last check is not lost.
/// Call with events masked; returns with them enabled (the upcall has run).
#[cfg(not(feature = "pvh"))]
pub fn block() {
    // SAFETY: SCHEDOP_block takes no argument; it unmasks events and waits for one.
    unsafe { crate::hypercall::sched_op(xen_sys::SCHEDOP_block, core::ptr::null()) };
}
