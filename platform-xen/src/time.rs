//! Xen's shared info page and the PV clock (`vcpu_time_info`).
//!
//! PV maps the shared info frame over a page of the image (`update_va_mapping`, `pv.rs`); PVH
//! asks Xen to put it at that page's guest frame (`XENMEM_add_to_physmap`, `pvh.rs`). The rest
//! is the same, here.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use xen_services::pvclock::{self, Scale};

unsafe extern "C" {
    /// A page-aligned page of the image (entry.rs) whose virtual address is remapped onto the
    /// shared info frame.
    static xen_shared_info_page: u8;
}

static MAPPED: AtomicBool = AtomicBool::new(false);

/// Notes that the guest type's `map_shared_info` (`pv.rs`, `pvh.rs`) mapped the page at
/// [`shared_info_va`].
pub(crate) fn set_mapped() {
    MAPPED.store(true, Ordering::Release);
}

/// The virtual address the shared info page is mapped at.
pub fn shared_info_va() -> u64 {
    (&raw const xen_shared_info_page) as u64
}

/// Whether the shared info page is mapped.
pub fn shared_info_mapped() -> bool {
    MAPPED.load(Ordering::Acquire)
}

fn time_info(vcpu: usize) -> Option<&'static xen_sys::vcpu_time_info> {
    if !MAPPED.load(Ordering::Acquire) {
        return None;
    }
    // vCPU 0's record, on every vCPU. Xen keeps one per vCPU, each extrapolated from the
    // calibration of the physical CPU it last ran on; without a stable TSC (the lab's) those
    // disagree, and a thread that reads its start on one CPU and its end on another saw time run
    // backwards or leap (the lab's 2-vCPU bench measured 4.8x speedups and a hang, with each
    // vCPU reading its own). One record is one function of the TSC, which the CPUs share.
    Some(&crate::events::vcpu_info(vcpu).time)
}

/// A consistent copy of vCPU 0's time record.
fn snapshot() -> Option<xen_sys::vcpu_time_info> {
    snapshot_of(0)
}

/// A consistent copy of vCPU `vcpu`'s time record (retried while Xen updates it: odd version,
/// or version changed during the copy).
fn snapshot_of(vcpu: usize) -> Option<xen_sys::vcpu_time_info> {
    let t = time_info(vcpu)?;
    loop {
        // SAFETY: reading fields of the mapped time record; Xen writes it concurrently, which
        // the version check detects.
        let version = unsafe { (&raw const t.version).read_volatile() };
        fence(Ordering::Acquire);
        // SAFETY: as above.
        let copy = unsafe { (t as *const xen_sys::vcpu_time_info).read_volatile() };
        fence(Ordering::Acquire);
        // SAFETY: as above.
        let again = unsafe { (&raw const t.version).read_volatile() };
        if version & 1 == 0 && version == again {
            return Some(copy);
        }
    }
}

/// The scale of record `t`.
fn scale(t: &xen_sys::vcpu_time_info) -> Scale {
    Scale {
        mul: t.tsc_to_system_mul,
        shift: t.tsc_shift,
    }
}

/// The TSC frequency in Hz, from the PV clock's scale: ns = (tsc << shift) * mul >> 32.
pub fn tsc_frequency() -> Option<u64> {
    let t = snapshot()?;
    // The nanoseconds of 2^32 ticks; the frequency is 10^9 * 2^32 over it.
    let ns_per_2_32_ticks = u128::from(scale(&t).ns(1 << 32));
    if ns_per_2_32_ticks == 0 {
        return None;
    }
    Some((1_000_000_000u128 << 32).checked_div(ns_per_2_32_ticks)? as u64)
}

/// Xen system time (ns since the domain's start of time), from the PV clock.
pub fn system_time_ns() -> Option<u64> {
    let (now, stable) = raw_system_time_ns()?;
    if stable {
        return Some(now);
    }
    // When Xen updates the record (vCPU 0 ran again) its new extrapolation may start a little
    // behind the old one, as read on another CPU meanwhile: never hand out a time before one
    // already handed out on any CPU (as Linux's pvclock does).
    Some(LAST.fetch_max(now, Ordering::AcqRel).max(now))
}

/// Xen system time from vCPU 0's record as the calling CPU reads it, and whether Xen flags the
/// records stable (the same on every vCPU).
pub(crate) fn raw_system_time_ns() -> Option<(u64, bool)> {
    let t = snapshot()?;
    Some((
        time_at(&t, arch_x86_64::tsc::now()),
        t.flags & TSC_STABLE != 0,
    ))
}

/// System time by record `t` at TSC value `tsc` (which may be a little below the record's
/// stamp when the record is another vCPU's: see [`xen_services::pvclock`]).
fn time_at(t: &xen_sys::vcpu_time_info, tsc: u64) -> u64 {
    pvclock::time_at(t.system_time, t.tsc_timestamp, scale(t), tsc)
}

/// How far vCPU `vcpu`'s own time record runs ahead of vCPU 0's (which every CPU reads), at
/// this moment's TSC, in ns (a clock check: `smp.rs` logs it as each vCPU arrives).
pub(crate) fn record_skew_ns(vcpu: usize) -> Option<i128> {
    let (own, zero) = (snapshot_of(vcpu)?, snapshot()?);
    let tsc = arch_x86_64::tsc::now();
    Some(i128::from(time_at(&own, tsc)) - i128::from(time_at(&zero, tsc)))
}

/// `XEN_PVCLOCK_TSC_STABLE_BIT` of `vcpu_time_info.flags`: every vCPU's record gives the same
/// time.
const TSC_STABLE: u8 = 1 << 0;

/// The latest system time [`system_time_ns`] returned (for records without [`TSC_STABLE`]).
static LAST: AtomicU64 = AtomicU64::new(0);

/// Wall-clock nanoseconds since the Unix epoch: shared info's wall clock (the time at system
/// time 0, read with its version protocol) plus the PV system time.
pub fn wall_clock_ns() -> Option<u64> {
    if !MAPPED.load(Ordering::Acquire) {
        return None;
    }
    let info = shared_info_va() as *const xen_sys::shared_info;
    let (seconds, nanoseconds) = loop {
        // SAFETY: the page is mapped onto the shared info frame (MAPPED); Xen writes the wall
        // clock fields concurrently, which the version check detects.
        let (version, sec, sec_hi, nsec, again) = unsafe {
            let version = (&raw const (*info).wc_version).read_volatile();
            fence(Ordering::Acquire);
            let sec = (&raw const (*info).wc_sec).read_volatile();
            let sec_hi = (&raw const (*info).wc_sec_hi).read_volatile();
            let nsec = (&raw const (*info).wc_nsec).read_volatile();
            fence(Ordering::Acquire);
            let again = (&raw const (*info).wc_version).read_volatile();
            (version, sec, sec_hi, nsec, again)
        };
        if version & 1 == 0 && version == again {
            break (u64::from(sec_hi) << 32 | u64::from(sec), u64::from(nsec));
        }
        core::hint::spin_loop();
    };
    let boot = seconds * 1_000_000_000 + nanoseconds;
    Some(boot + system_time_ns()?)
}
