//! Xen's shared info page and the PV clock (`vcpu_time_info`).
//!
//! PV maps the shared info frame over a page of the image (`update_va_mapping`, `pv.rs`); PVH
//! asks Xen to put it at that page's guest frame (`XENMEM_add_to_physmap`, `pvh.rs`). The rest
//! is the same, here.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

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

fn time_info() -> Option<&'static xen_sys::vcpu_time_info> {
    if !MAPPED.load(Ordering::Acquire) {
        return None;
    }
    // The calling vCPU's record (Xen keeps one per vCPU, updated when it runs).
    Some(&crate::events::current_vcpu_info().time)
}

/// A consistent copy of the calling vCPU's time record (retried while Xen updates it: odd version, or
/// version changed during the copy).
fn snapshot() -> Option<xen_sys::vcpu_time_info> {
    let t = time_info()?;
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

/// The TSC frequency in Hz, from the PV clock's scale: ns = (tsc << shift) * mul >> 32.
pub fn tsc_frequency() -> Option<u64> {
    let t = snapshot()?;
    let mul = u128::from(t.tsc_to_system_mul);
    if mul == 0 {
        return None;
    }
    let ns_per_2_32_ticks = if t.tsc_shift >= 0 {
        mul << t.tsc_shift
    } else {
        mul >> -t.tsc_shift
    };
    Some((1_000_000_000u128 << 32).checked_div(ns_per_2_32_ticks)? as u64)
}

/// Xen system time (ns since the domain's start of time), from the PV clock.
pub fn system_time_ns() -> Option<u64> {
    let (now, stable) = own_system_time_ns()?;
    if stable {
        return Some(now);
    }
    // Each vCPU reads its own record, and without a stable TSC Xen's extrapolations on
    // different vCPUs may disagree a little: never hand out a time before one already handed
    // out on any CPU (as Linux's pvclock does).
    Some(LAST.fetch_max(now, Ordering::AcqRel).max(now))
}

/// The calling vCPU's own reading of Xen system time, and whether Xen flags the records
/// stable (the same on every vCPU).
pub(crate) fn own_system_time_ns() -> Option<(u64, bool)> {
    let t = snapshot()?;
    let delta = u128::from(arch_x86_64::tsc::now().wrapping_sub(t.tsc_timestamp));
    let scaled = if t.tsc_shift >= 0 {
        delta << t.tsc_shift
    } else {
        delta >> -t.tsc_shift
    };
    let now = t.system_time + ((scaled * u128::from(t.tsc_to_system_mul)) >> 32) as u64;
    Some((now, t.flags & TSC_STABLE != 0))
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
