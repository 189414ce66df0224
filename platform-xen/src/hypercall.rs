//! Hypercalls through the hypercall page Xen fills in at load time (`XEN_ELFNOTE_HYPERCALL_PAGE`).
//!
//! x86_64 ABI: number = stub index (each stub is 32 bytes), arguments in rdi, rsi, rdx, r10, r8,
//! result in rax; the stubs clobber rcx and r11 (syscall), and Xen may clobber the argument
//! registers.

use core::arch::asm;

unsafe extern "C" {
    /// The hypercall page (in `entry.rs`): 4 KiB that Xen overwrites with one stub per call.
    static hypercall_page: [u8; 4096];
}

fn stub(nr: u32) -> usize {
    (&raw const hypercall_page) as usize + nr as usize * xen_sys::HYPERCALL_STUB_SIZE
}

/// A hypercall with up to four arguments.
///
/// # Safety
/// `nr` and the arguments must form a valid call of the Xen ABI: pointers point at live,
/// correctly laid-out structures for the duration of the call, and the call's effect (on
/// page tables, events, the domain itself) must keep the guest's invariants.
pub unsafe fn hypercall4(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    let ret: i64;
    // SAFETY: the caller upholds the ABI contract; the stub is code Xen wrote into our page.
    unsafe {
        asm!(
            "call {stub}",
            stub = in(reg) stub(nr),
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            lateout("rax") ret,
            lateout("rcx") _,
            lateout("r11") _,
            lateout("r8") _,
        );
    }
    ret
}

/// A hypercall with up to two arguments.
///
/// # Safety
/// As [`hypercall4`].
pub unsafe fn hypercall2(nr: u32, a1: u64, a2: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall4(nr, a1, a2, 0, 0) }
}

/// `sched_op(cmd, arg)`.
///
/// # Safety
/// As [`hypercall4`]; `arg` points at the structure `cmd` takes (or is null where none).
pub unsafe fn sched_op(cmd: u32, arg: *const u8) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall2(xen_sys::__HYPERVISOR_sched_op, u64::from(cmd), arg as u64) }
}

/// `event_channel_op(cmd, arg)`.
///
/// # Safety
/// As [`hypercall4`]; `arg` points at the structure `cmd` takes.
pub unsafe fn event_channel_op(cmd: u32, arg: *const u8) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        hypercall2(
            xen_sys::__HYPERVISOR_event_channel_op,
            u64::from(cmd),
            arg as u64,
        )
    }
}

/// Gives up the CPU for a moment (`SCHEDOP_yield`).
pub fn yield_cpu() {
    // SAFETY: SCHEDOP_yield takes no argument and only reschedules.
    unsafe { sched_op(xen_sys::SCHEDOP_yield, core::ptr::null()) };
}

/// Blocks until `port` is pending or Xen system time `deadline_ns` passes (`SCHEDOP_poll`;
/// 0: no deadline), WITHOUT delivering events: the upcall does not run, so a caller with events
/// masked (holding a lock that the upcall's thread switch could leave held) stays where it is.
/// Returns at once when the port is pending already.
pub fn poll_port(port: u32, deadline_ns: u64) {
    let mut ports = [port];
    let arg = xen_sys::sched_poll {
        ports: xen_sys::__guest_handle_evtchn_port_t {
            p: ports.as_mut_ptr(),
        },
        nr_ports: 1,
        timeout: deadline_ns,
    };
    // SAFETY: a live sched_poll naming one live port number; Xen only reads it, and polling
    // only blocks this vCPU until that port is pending or the deadline passes.
    unsafe { sched_op(xen_sys::SCHEDOP_poll, (&raw const arg).cast()) };
}

/// Signals an event channel (`EVTCHNOP_send`).
pub fn notify(port: u32) {
    let send = xen_sys::evtchn_send { port };
    // SAFETY: `send` is a live evtchn_send for the call; sending on a port only raises an event.
    unsafe { event_channel_op(xen_sys::EVTCHNOP_send, (&raw const send).cast()) };
}

/// Ends the domain with a `SHUTDOWN_*` reason. Returns only if Xen refuses.
pub fn shutdown(reason: u32) {
    let arg = xen_sys::sched_shutdown { reason };
    // SAFETY: a live sched_shutdown; shutting down is what the caller wants.
    unsafe { sched_op(xen_sys::SCHEDOP_shutdown, (&raw const arg).cast()) };
}

/// One `mmu_update` batch; returns Xen's status (0 = all done).
///
/// # Safety
/// Every request must keep the guest's page tables valid and keep mapped everything the kernel
/// still uses (the image, the stack, the tables themselves, live heap memory).
pub unsafe fn mmu_update(requests: &[xen_sys::mmu_update]) -> i64 {
    let mut done = 0u32;
    // SAFETY: the slice and `done` live for the call; the caller vouches for the requests.
    unsafe {
        hypercall4(
            xen_sys::__HYPERVISOR_mmu_update,
            requests.as_ptr() as u64,
            requests.len() as u64,
            (&raw mut done) as u64,
            u64::from(xen_sys::DOMID_SELF),
        )
    }
}

/// Changes the mapping of one virtual page (`update_va_mapping`); returns Xen's status.
///
/// # Safety
/// As [`mmu_update`], for the page at `va`.
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall4(xen_sys::__HYPERVISOR_update_va_mapping, va, pte, flags, 0) }
}
