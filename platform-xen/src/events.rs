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
//! glue: the shared info bitmaps, the upcall and the hypercalls. The entry stubs, the callback
//! registration and idle differ by guest type and are `pv.rs`'s and `pvh.rs`'s
//! (`init_events`, `block`); they call [`bind_timer`] and the upcall, never the reverse. Only
//! masking ([`disable`], [`enable`]) differs here, because [`bind`] needs it.

use arch_x86_64::percpu::{self, MAX_CPUS};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, compiler_fence};
use platform::irq::{CpuId, HandlerTable, Irq, IrqError};
use xen_services::event::{EventBits, EventChannel, EventError, Handler, Handlers};

/// Ports with a handler slot (2-level ABI ports go up to 4095; a unikernel uses a handful).
const PORTS: usize = 256;

static HANDLERS: spin::Mutex<Handlers<PORTS>> = spin::Mutex::new(Handlers::new());
/// Per CPU: its timer VIRQ's port (`u32::MAX`: none).
static TIMER_PORT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static READY: AtomicBool = AtomicBool::new(false);
/// Per CPU: set by its timer VIRQ's handler, taken by its upcall.
static TIMER_FIRED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Words of the handler table's ports (`PORTS` / 64).
const PORT_WORDS: usize = PORTS / 64;
/// Per CPU but the boot CPU: the ports bound to it (its timer VIRQ and IPI; every other port
/// is Xen's default, vCPU 0). The upcall handles only its own CPU's ports.
static BOUND: [[AtomicU64; PORT_WORDS]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; PORT_WORDS] }; MAX_CPUS];
/// The union of `BOUND` over the CPUs after the boot CPU: ports the boot CPU leaves alone.
static ELSEWHERE: [AtomicU64; PORT_WORDS] = [const { AtomicU64::new(0) }; PORT_WORDS];

/// The calling CPU's number, as an index (below `MAX_CPUS`).
fn me() -> usize {
    percpu::current().id().0 as usize % MAX_CPUS
}
/// The kernel's timer handler (`Platform::set_timer_handler`): the table's one slot.
static TIMER_HANDLER: HandlerTable<1> = HandlerTable::new();
/// Device handlers (`Platform::irq_register`): their slots, found by the port's context word.
static DEVICES: HandlerTable<32> = HandlerTable::new();

/// The calling vCPU's `vcpu_info`: the one its per-CPU block names (`smp.rs` sets it before
/// the vCPU starts), else shared info's first (the boot vCPU's).
fn vcpu() -> &'static xen_sys::vcpu_info {
    let named = percpu::current().vcpu_info.load(Ordering::Relaxed);
    if named != 0 {
        // SAFETY: a `vcpu_info` slot of the mapped shared info page, the calling vCPU's
        // (set by `smp.rs` before it started), only accessed atomically below.
        return unsafe { &*(named as *const xen_sys::vcpu_info) };
    }
    vcpu_info(0)
}

/// Shared info's `vcpu_info` slot `n` (n < 32, the legacy slots; `n` is checked).
pub(crate) fn vcpu_info(n: usize) -> &'static xen_sys::vcpu_info {
    // SAFETY: the shared info page is mapped (the guest type's map_shared_info runs in
    // Platform::init, before events are set up); its slots are only accessed atomically.
    let info = unsafe { &(*(crate::time::shared_info_va() as *const xen_sys::shared_info)) };
    &info.vcpu_info[n.min(info.vcpu_info.len() - 1)]
}

/// Masks events of the vCPU whose `vcpu_info` is `info` (before it starts: `smp.rs`).
pub(crate) fn mask_vcpu(info: &xen_sys::vcpu_info) {
    // SAFETY: a byte of a mapped vcpu_info, shared with Xen, accessed only atomically.
    unsafe { AtomicU8::from_ptr((&raw const info.evtchn_upcall_mask).cast_mut()) }
        .store(1, Ordering::Release);
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
    fn owned(&self, w: usize) -> u64 {
        match (me(), w < PORT_WORDS) {
            (0, true) => !ELSEWHERE[w].load(Ordering::Acquire),
            (0, false) => u64::MAX,
            (cpu, true) => BOUND[cpu][w].load(Ordering::Acquire),
            (_, false) => 0,
        }
    }
}

/// Forgets which CPU `port` was bound to (it is closed, or its binding failed): the boot CPU's
/// again, as Xen's default for a port it hands out.
fn disown(port: u32) {
    let w = port as usize / 64;
    if w >= PORT_WORDS {
        return;
    }
    let bit = 1u64 << (port % 64);
    for cpu in &BOUND {
        cpu[w].fetch_and(!bit, Ordering::AcqRel);
    }
    ELSEWHERE[w].fetch_and(!bit, Ordering::AcqRel);
}

/// Records that `port` is bound to CPU `cpu` (not the boot CPU): only its upcall handles it.
/// False when the port is beyond the handler table.
fn own(port: u32, cpu: usize) -> bool {
    let w = port as usize / 64;
    if cpu == 0 || cpu >= MAX_CPUS || w >= PORT_WORDS {
        return cpu == 0;
    }
    let bit = 1u64 << (port % 64);
    BOUND[cpu][w].fetch_or(bit, Ordering::AcqRel);
    ELSEWHERE[w].fetch_or(bit, Ordering::AcqRel);
    true
}

/// The upcall: handles pending ports until none is left; then, if the timer fired, calls the
/// kernel's timer handler (last, with events still masked, no lock held: the kernel may switch
/// threads inside it, and this upcall finishes when this thread is switched back to); then
/// unmasks events, and starts over if more arrived meanwhile.
///
/// The handler runs at most once per upcall: a handler that arms the timer for a time already past
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
        if !ticked && TIMER_FIRED[me()].swap(false, Ordering::AcqRel) {
            ticked = true;
            // The timer's pending bit is cleared, every other pending port handled, the
            // handler lock released; the upcall's state is all on this stack.
            TIMER_HANDLER.dispatch(0);
        }
        if TIMER_FIRED[me()].swap(false, Ordering::AcqRel) {
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
    let port = TIMER_PORT[me()].load(Ordering::Relaxed);
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

/// The timer VIRQ's handler (`cpu`: whose timer): only notes it; that CPU's upcall calls the
/// kernel's handler at its end.
fn on_timer(_port: EventChannel, cpu: usize) {
    TIMER_FIRED[cpu % MAX_CPUS].store(true, Ordering::Release);
}

/// Binds the boot vCPU's timer VIRQ to its handler, marks events ready and enables them: the
/// end of the guest type's `init_events` (`pv.rs`, `pvh.rs`), once Xen calls [`xen_upcall`].
pub(crate) fn bind_timer() {
    // The boot vCPU's vcpu_info, recorded in its per-CPU block.
    percpu::current().vcpu_info.store(
        vcpu_info(0) as *const xen_sys::vcpu_info as u64,
        Ordering::Relaxed,
    );
    if let Err(e) = bind_cpu_timer(0, 0) {
        log::warn!("binding the timer VIRQ failed ({e}): sleeping will poll");
    }
    READY.store(true, Ordering::Release);
    enable();
}

/// Binds `VIRQ_TIMER` of Xen vCPU `vcpu` (kernel CPU `cpu`) to that CPU's timer handler: Xen
/// raises it on that vCPU when the `set_timer_op` it made expires. Call on that CPU with its
/// events masked.
pub(crate) fn bind_cpu_timer(cpu: usize, vcpu: u32) -> Result<(), XenError> {
    let mut virq = xen_sys::evtchn_bind_virq {
        virq: xen_sys::VIRQ_TIMER,
        vcpu,
        port: 0,
    };
    evtchn_op(xen_sys::EVTCHNOP_bind_virq, &mut virq)?;
    if !own(virq.port, cpu) {
        return Err(XenError(-22));
    }
    TIMER_PORT[cpu % MAX_CPUS].store(virq.port, Ordering::Relaxed);
    bind(virq.port, on_timer, cpu).map_err(|_| XenError(-16))
}

/// `EVTCHNOP_bind_ipi`: a port that signals Xen vCPU `vcpu` (kernel CPU `cpu`) when any vCPU
/// sends on it ([`send`]), with `handler` called there (context: `cpu`). Returns the port.
pub(crate) fn bind_ipi(cpu: usize, vcpu: u32, handler: Handler) -> Result<u32, XenError> {
    let mut arg = xen_sys::evtchn_bind_ipi { vcpu, port: 0 };
    evtchn_op(xen_sys::EVTCHNOP_bind_ipi, &mut arg)?;
    if !own(arg.port, cpu) {
        return Err(XenError(-22));
    }
    bind(arg.port, handler, cpu).map_err(|_| XenError(-16))?;
    Ok(arg.port)
}

/// Whether the event callback and the calling CPU's timer VIRQ are set up (else timers cannot
/// wake a blocked vCPU, and callers must poll).
pub fn ready() -> bool {
    READY.load(Ordering::Acquire) && TIMER_PORT[me()].load(Ordering::Relaxed) != u32::MAX
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

/// `Platform::set_timer_handler`: the handler the upcall calls when the timer fired.
pub fn set_timer_handler(handler: platform::irq::Handler, data: usize) {
    let was = disable();
    TIMER_HANDLER.unregister(0);
    // Cannot fail: the one slot was just freed, and line 0 is not a marker.
    let _ = TIMER_HANDLER.register(Irq(0), CpuId(0), handler, data);
    restore(was);
}

/// The ports of the 2-level ABI (64 words of 64 bits in shared info).
const ABI_PORTS: u32 = 64 * 64;

/// Masks `port` in shared info (delivery stops until [`unmask`]); no port beyond the ABI's.
fn mask(port: u32) {
    if port >= ABI_PORTS {
        return;
    }
    let w = (port / 64) as usize;
    // SAFETY: address of a field of the mapped page; nothing is read through the raw place.
    word(unsafe { (&raw const (*shared()).evtchn_mask).cast() }, w)
        .fetch_or(1u64 << (port % 64), Ordering::AcqRel);
}

/// A device port's handler (the port table's): masks the port, then calls the registered
/// handler (the oneshot contract of `platform::irq`; an event channel needs no EOI).
fn on_device(port: EventChannel, slot: usize) {
    mask(port.0);
    DEVICES.dispatch(slot);
}

/// `Platform::irq_register` on Xen: `irq` is an event-channel port (bound by the caller: see
/// [`alloc_unbound`]). Xen notifies a new port on vCPU 0; for another CPU the port is moved
/// there (`EVTCHNOP_bind_vcpu`) and that CPU's upcall handles it (its [`BOUND`] bits) before
/// the port is unmasked, so an event already pending is delivered there.
pub fn register(
    irq: Irq,
    cpu: CpuId,
    handler: platform::irq::Handler,
    data: usize,
) -> Result<(), IrqError> {
    if !READY.load(Ordering::Acquire) {
        return Err(IrqError::Unsupported);
    }
    let n = cpu.0 as usize;
    if n >= crate::smp::up() || n >= MAX_CPUS {
        return Err(IrqError::NoSuchCpu(cpu));
    }
    if irq.0 as usize >= PORTS {
        return Err(IrqError::NoSuchLine(irq));
    }
    let slot = DEVICES.register(irq, cpu, handler, data)?;
    if n != 0 {
        own(irq.0, n);
        let mut arg = xen_sys::evtchn_bind_vcpu {
            port: irq.0,
            vcpu: cpu.0,
        };
        if let Err(e) = evtchn_op(xen_sys::EVTCHNOP_bind_vcpu, &mut arg) {
            disown(irq.0);
            DEVICES.unregister(slot);
            log::warn!("event channel {}: moving it to vCPU {}: {e}", irq.0, cpu.0);
            return Err(IrqError::NoSuchCpu(cpu));
        }
    }
    bind(irq.0, on_device, slot).map_err(|e| {
        disown(irq.0);
        DEVICES.unregister(slot);
        match e {
            EventError::OutOfRange(_) => IrqError::NoSuchLine(irq),
            EventError::Busy(_) => IrqError::Busy(irq),
        }
    })
}

/// Xen's refusal of an event-channel operation: its negative errno (`-EINVAL` = -22, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XenError(pub i32);

impl core::fmt::Display for XenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Xen error {}", self.0)
    }
}

fn evtchn_op<T>(cmd: u32, arg: &mut T) -> Result<(), XenError> {
    // SAFETY: every caller passes the structure `cmd` takes (the wrappers below pair them), live
    // for the call; these operations only allocate, bind, signal or close this domain's ports.
    let rc = unsafe { crate::hypercall::event_channel_op(cmd, (arg as *mut T).cast()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(XenError(i32::try_from(rc).unwrap_or(i32::MIN)))
    }
}

/// `EVTCHNOP_alloc_unbound`: a fresh port of this domain, unbound, that domain `remote` may
/// connect to with `EVTCHNOP_bind_interdomain` (a split driver's frontend does this, then writes
/// the port to XenStore for its backend). `remote` may be [`xen_sys::DOMID_SELF`]: a loopback
/// channel (see [`bind_interdomain`]). Give the port a handler with `Platform::irq_register`
/// (`Irq(port)`), which unmasks it.
pub fn alloc_unbound(remote: u16) -> Result<u32, XenError> {
    let mut arg = xen_sys::evtchn_alloc_unbound {
        dom: xen_sys::DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    evtchn_op(xen_sys::EVTCHNOP_alloc_unbound, &mut arg)?;
    Ok(arg.port)
}

/// `EVTCHNOP_bind_interdomain`: a fresh port of this domain connected to port `remote_port` of
/// domain `remote` (which allocated it unbound for us: a backend's side; with
/// [`xen_sys::DOMID_SELF`], the other end of a loopback channel). Sending on either end signals
/// the other.
pub fn bind_interdomain(remote: u16, remote_port: u32) -> Result<u32, XenError> {
    let mut arg = xen_sys::evtchn_bind_interdomain {
        remote_dom: remote,
        remote_port,
        local_port: 0,
    };
    evtchn_op(xen_sys::EVTCHNOP_bind_interdomain, &mut arg)?;
    Ok(arg.local_port)
}

/// `EVTCHNOP_send`: signals the other end of `port` (the port itself for an IPI or a VIRQ).
pub fn send(port: u32) -> Result<(), XenError> {
    let mut arg = xen_sys::evtchn_send { port };
    evtchn_op(xen_sys::EVTCHNOP_send, &mut arg)
}

/// Closes `port` (`EVTCHNOP_close`): masks it, drops its handler (a device's slot of
/// `Platform::irq_register` too), then gives it back to Xen (the other end, if any, becomes
/// unbound). Not for the timer's port, which is the platform's.
pub fn close(port: u32) -> Result<(), XenError> {
    mask(port);
    let was = disable();
    HANDLERS.lock().unbind(EventChannel(port));
    if let Some(slot) = DEVICES.find(Irq(port)) {
        DEVICES.unregister(slot);
    }
    restore(was);
    let mut arg = xen_sys::evtchn_close { port };
    let closed = evtchn_op(xen_sys::EVTCHNOP_close, &mut arg);
    // Xen gives a closed port's number out again bound to vCPU 0.
    if closed.is_ok() {
        disown(port);
    }
    closed
}

/// Whether `port`'s pending bit is set in shared info: an event Xen holds for it (while it is
/// masked, or not yet delivered).
pub fn is_pending(port: u32) -> bool {
    if port >= ABI_PORTS {
        return false;
    }
    // SAFETY: address of a field of the mapped page; nothing is read through the raw place.
    word(
        unsafe { (&raw const (*shared()).evtchn_pending).cast() },
        (port / 64) as usize,
    )
    .load(Ordering::Acquire)
        & (1u64 << (port % 64))
        != 0
}
