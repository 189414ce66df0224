//! Xen's other vCPUs (profile setting `cpus` above 1), PV and PVH alike but for the context a
//! vCPU starts with (`pv.rs`: a `vcpu_guest_context`; `pvh.rs`: a `vcpu_hvm_context`, both
//! given to `VCPUOP_initialise`) and the CPU's own set-up once it runs (`init_other_cpu`).
//!
//! - [`find`]: the domain's vCPUs, by `VCPUOP_is_up` on ids 0, 1, ... until Xen says there is
//!   no such vCPU (`-ENOENT`): a domain's vCPUs are numbered from 0 (xl's `vcpus = N`).
//! - [`start`]: one vCPU at a time. The boot vCPU fills the mailbox (kernel CPU number, Xen
//!   vCPU id, what it runs) and the new CPU's per-CPU block (its `vcpu_info`: shared info's
//!   legacy slot for its id, events masked there before it runs), then `VCPUOP_initialise` and
//!   `VCPUOP_up`. The vCPU enters `xen_ap_start` on its own stack, sets itself up (the guest
//!   type's `init_other_cpu`: its per-CPU block through its GS base, trap table or IDT), binds
//!   its own `VIRQ_TIMER` and an IPI port (`EVTCHNOP_bind_ipi`, with `vcpu` = its id: Xen then
//!   raises both on it) and says it arrived; then it runs the kernel's `main(n)` with events
//!   masked. A vCPU that has not arrived within [`START_BOUND_NS`] of Xen system time is
//!   reported, taken down again (`VCPUOP_down`) and left out, with the ones after it.
//! - [`send_ipi`]: `EVTCHNOP_send` on the target CPU's IPI port. Its handler does nothing: the
//!   upcall it causes is what ends the target's `SCHEDOP_block` (PV) or `hlt` (PVH).
//!
//! TLB shoot-down goes through Xen here, not through IPIs (see `memory::unmap_page` for PV and
//! `pvh::unmap_page`): Xen flushes every vCPU of the domain before the hypercall returns.
//!
//! Models read: Linux `arch/x86/xen/smp_pv.c` (`cpu_initialize_context`), Mini-OS and
//! Unikraft's Xen x86 platform.

use arch_x86_64::percpu::{self, MAX_CPUS};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use platform::CpuStacks;
use platform::irq::CpuId;
use xen_services::event::EventChannel;

/// How long (Xen system time) a started vCPU has to arrive.
const START_BOUND_NS: u64 = 2_000_000_000;

/// How many vCPUs to start (the boot vCPU among them), from `find`.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// How many CPUs run (0 until `start`: one).
static UP: AtomicUsize = AtomicUsize::new(0);
/// Per CPU: its IPI port (`u32::MAX`: none).
static IPI_PORT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
/// Per CPU: set by the CPU once it is set up (its events bound).
static ARRIVED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The mailbox: the kernel CPU number and Xen vCPU id of the vCPU being started.
static AP_CPU: AtomicU32 = AtomicU32::new(0);
static AP_VCPU: AtomicU32 = AtomicU32::new(0);
/// The started vCPU's Xen system time when it arrived (a clock check, logged).
static AP_CLOCK: AtomicU64 = AtomicU64::new(0);
/// The kernel's function for a started CPU (a `fn(CpuId) -> !`).
static KERNEL_MAIN: AtomicUsize = AtomicUsize::new(0);

/// `-ENOENT`: `VCPUOP_is_up` on an id the domain does not have.
const ENOENT: i64 = -2;

// The first code a started vCPU runs, on the stack its context gave it (PV: in ring 3 with
// the kernel's flat selectors; PVH: in 64-bit mode, ring 0, the kernel's page tables, flat
// segments whose selectors are 0 until `init_other_cpu` loads its GDT).
core::arch::global_asm!(
    r#"
    .section .text.xen_ap, "ax", @progbits
    .global xen_ap_start
xen_ap_start:
    cld
    and $-16, %rsp
    xor %ebp, %ebp
    call {entry}
    ud2
"#,
    entry = sym xen_ap_entry,
    options(att_syntax)
);

unsafe extern "C" {
    static xen_ap_start: u8;
}

/// The address a started vCPU begins at (its context's instruction pointer).
pub(crate) fn entry_point() -> u64 {
    (&raw const xen_ap_start) as u64
}

fn vcpu_op(cmd: u32, vcpu: u32, arg: u64) -> i64 {
    // SAFETY: every caller passes the structure `cmd` takes (or 0 where it takes none), live for
    // the call; these operations only query, start or stop this domain's vCPUs.
    unsafe {
        crate::hypercall::hypercall4(
            xen_sys::__HYPERVISOR_vcpu_op,
            u64::from(cmd),
            u64::from(vcpu),
            arg,
            0,
        )
    }
}

/// `VCPUOP_initialise` for `vcpu` with the guest type's context at `context`; Xen's status.
pub(crate) fn initialise(vcpu: u32, context: u64) -> i64 {
    vcpu_op(xen_sys::VCPUOP_initialise, vcpu, context)
}

/// `Platform::find_cpus`: the domain's vCPUs (by `VCPUOP_is_up`), the boot vCPU's first; up to
/// `max` (and `MAX_CPUS`, and shared info's legacy `vcpu_info` slots) are kept to start.
pub(crate) fn find(max: usize) -> usize {
    let mut found = 1u32;
    while found < 128 && vcpu_op(xen_sys::VCPUOP_is_up, found, 0) != ENOENT {
        found += 1;
    }
    let slots = xen_sys::XEN_LEGACY_MAX_VCPUS as usize;
    let keep = max.clamp(1, MAX_CPUS).min(found as usize).min(slots);
    COUNT.store(keep, Ordering::Release);
    found as usize
}

/// How many CPUs run.
pub(crate) fn up() -> usize {
    UP.load(Ordering::Acquire).max(1)
}

/// Spins (yielding the vCPU to Xen: with more vCPUs than physical CPUs the one started may
/// need this one's) until `done()` or `ns` of Xen system time passed; returns `done()`.
fn wait_until(ns: u64, done: impl Fn() -> bool) -> bool {
    let Some(start) = crate::time::system_time_ns() else {
        // No clock: a bounded number of yields.
        for _ in 0..100_000 {
            if done() {
                return true;
            }
            crate::hypercall::yield_cpu();
        }
        return done();
    };
    while crate::time::system_time_ns().is_some_and(|t| t.saturating_sub(start) < ns) {
        if done() {
            return true;
        }
        crate::hypercall::yield_cpu();
    }
    done()
}

/// The IPI's handler: nothing to do (the upcall woke the CPU).
fn on_ipi(_port: EventChannel, _cpu: usize) {}

/// `Platform::start_cpus`.
pub(crate) fn start(
    stacks: &mut dyn FnMut(CpuId) -> Option<CpuStacks>,
    main: fn(CpuId) -> !,
) -> usize {
    let count = COUNT.load(Ordering::Acquire);
    if count <= 1 {
        return 1;
    }
    if !percpu::per_cpu_ready() || !crate::events::ready() {
        log::warn!(
            "one CPU: starting Xen's other vCPUs needs the per-CPU block's GS base and events"
        );
        return 1;
    }
    match crate::events::bind_ipi(0, 0, on_ipi) {
        Ok(port) => IPI_PORT[0].store(port, Ordering::Release),
        Err(e) => {
            log::warn!("one CPU: binding the boot vCPU's IPI failed ({e})");
            return 1;
        }
    }
    KERNEL_MAIN.store(main as usize, Ordering::Release);
    let mut up = 1usize;
    for vcpu in 1..count as u32 {
        let cpu = CpuId(up as u32);
        let Some(s) = stacks(cpu) else {
            log::warn!("vCPU {vcpu}: no memory for its stacks; left out");
            break;
        };
        let Some(block) = percpu::block(cpu) else {
            break;
        };
        percpu::set_ist_stack(cpu, s.fault);
        let info = crate::events::vcpu_info(vcpu as usize);
        crate::events::mask_vcpu(info);
        block
            .vcpu_info
            .store(info as *const xen_sys::vcpu_info as u64, Ordering::Release);
        AP_CPU.store(cpu.0, Ordering::Relaxed);
        AP_VCPU.store(vcpu, Ordering::Release);
        let rc = crate::guest::start_vcpu(vcpu, cpu, s.stack);
        if rc != 0 {
            log::warn!("vCPU {vcpu}: VCPUOP_initialise failed ({rc}); left out");
            break;
        }
        let rc = vcpu_op(xen_sys::VCPUOP_up, vcpu, 0);
        if rc != 0 {
            log::warn!("vCPU {vcpu}: VCPUOP_up failed ({rc}); left out");
            break;
        }
        if wait_until(START_BOUND_NS, || ARRIVED[up].load(Ordering::Acquire)) {
            let (seen, stable) = crate::time::raw_system_time_ns().unwrap_or((0, false));
            log::debug!(
                "vCPU {vcpu} up as CPU {up}: the clock it read on arrival was {} us before this \
                 CPU's now; its own time record runs {} us ahead of vCPU 0's (TSC stable: \
                 {stable})",
                (i128::from(seen) - i128::from(AP_CLOCK.load(Ordering::Acquire))) / 1000,
                crate::time::record_skew_ns(vcpu as usize).unwrap_or(0) / 1000
            );
            up += 1;
            UP.store(up, Ordering::Release);
        } else {
            vcpu_op(xen_sys::VCPUOP_down, vcpu, 0);
            log::warn!(
                "vCPU {vcpu} did not come up within {} ms; left out, with any after it",
                START_BOUND_NS / 1_000_000
            );
            break;
        }
    }
    UP.store(up, Ordering::Release);
    up
}

/// The Rust side of `xen_ap_start`: sets this vCPU up, binds its timer and IPI, says it
/// arrived, runs the kernel's `main`.
extern "C" fn xen_ap_entry() -> ! {
    let cpu = CpuId(AP_CPU.load(Ordering::Acquire));
    let vcpu = AP_VCPU.load(Ordering::Acquire);
    let n = cpu.0 as usize % MAX_CPUS;
    if !crate::guest::init_other_cpu(cpu) {
        // Not reported as arrived: the boot vCPU says so and takes this one down.
        loop {
            crate::hypercall::yield_cpu();
        }
    }
    if let Err(e) = crate::events::bind_cpu_timer(n, vcpu) {
        log::warn!("CPU {n}: binding its timer VIRQ failed ({e}): its sleeps will poll");
    }
    match crate::events::bind_ipi(n, vcpu, on_ipi) {
        Ok(port) => IPI_PORT[n].store(port, Ordering::Release),
        Err(e) => log::warn!("CPU {n}: binding its IPI failed ({e}): it cannot be woken"),
    }
    AP_CLOCK.store(
        crate::time::raw_system_time_ns().map_or(0, |(t, _)| t),
        Ordering::Release,
    );
    ARRIVED[n].store(true, Ordering::Release);
    let main = KERNEL_MAIN.load(Ordering::Acquire);
    // SAFETY: KERNEL_MAIN holds the `fn(CpuId) -> !` that `start` stored before it started
    // any vCPU.
    let main: fn(CpuId) -> ! = unsafe { core::mem::transmute::<usize, fn(CpuId) -> !>(main) };
    main(cpu)
}

/// `Platform::send_ipi`: an event on `cpu`'s IPI port. False when it is not up (or has no
/// port), or is the caller.
pub(crate) fn send_ipi(cpu: CpuId) -> bool {
    let n = cpu.0 as usize;
    if n >= up() || cpu == percpu::current().id() {
        return false;
    }
    match IPI_PORT[n].load(Ordering::Acquire) {
        u32::MAX => false,
        port => crate::events::send(port).is_ok(),
    }
}
