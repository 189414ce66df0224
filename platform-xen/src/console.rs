//! The PV console ring (`xencons_interface`): this platform's console device and `log` backend.
//!
//! The ring page and its event channel come from `start_info` (`console.domU`); xenconsoled in
//! dom0 reads `out[]` between `out_cons` and `out_prod`. A full ring is waited out (notify,
//! yield), bounded so that a dead backend drops output instead of hanging the guest.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use platform::ConsoleDevice;

/// Bytes of `out[]`.
const OUT_SIZE: u32 = 2048;
/// Offsets in `xencons_interface` (checked by xen-sys's layout tests).
const OUT: usize = 1024;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;
/// Yields to wait for room before output is dropped.
const WAIT_LIMIT: u32 = 100_000;

/// The console ring device.
#[derive(Debug)]
pub struct XenConsole {
    ring: AtomicU64,
    port: AtomicU32,
}

/// The one console ring.
pub static XEN_CONSOLE: XenConsole = XenConsole {
    ring: AtomicU64::new(0),
    port: AtomicU32::new(0),
};

impl XenConsole {
    fn index(&self, ring: u64, offset: usize) -> &AtomicU32 {
        // SAFETY: `ring` is the mapped console page (set in `init`), offset is one of the two
        // 4-byte-aligned indexes inside it; the page is shared with the backend, so it is only
        // accessed atomically.
        unsafe { &*((ring as usize + offset) as *const AtomicU32) }
    }

    /// Waits (bounded) until the backend has taken everything written so far.
    pub fn flush(&self) {
        let ring = self.ring.load(Ordering::Relaxed);
        if ring == 0 {
            return;
        }
        for _ in 0..WAIT_LIMIT {
            let cons = self.index(ring, OUT_CONS).load(Ordering::Acquire);
            let prod = self.index(ring, OUT_PROD).load(Ordering::Relaxed);
            if cons == prod {
                return;
            }
            crate::hypercall::notify(self.port.load(Ordering::Relaxed));
            crate::hypercall::yield_cpu();
        }
    }
}

impl ConsoleDevice for XenConsole {
    fn init(&self) {
        let si = crate::entry::START_INFO.load(Ordering::Relaxed);
        if si == 0 {
            return;
        }
        // SAFETY: `si` is the start_info page Xen mapped for us and handed over in %rsi; it is
        // read-only for us at this point and laid out as xen_sys::start_info.
        let info = unsafe { &*(si as *const xen_sys::start_info) };
        // SAFETY: console.domU is the union member for an unprivileged guest.
        let (mfn, port) = unsafe { (info.console.domU.mfn, info.console.domU.evtchn) };
        // The ring page is one of the bootstrap pages, mapped at its pseudo-physical address.
        let ring = crate::memory::pfn_of_mfn(mfn) << 12;
        self.port.store(port, Ordering::Relaxed);
        self.ring.store(ring, Ordering::Release);
    }

    fn write(&self, bytes: &[u8]) {
        let ring = self.ring.load(Ordering::Acquire);
        if ring == 0 {
            return;
        }
        let port = self.port.load(Ordering::Relaxed);
        let prod_index = self.index(ring, OUT_PROD);
        let mut prod = prod_index.load(Ordering::Relaxed);
        let mut waited = 0;
        for &b in bytes {
            while prod.wrapping_sub(self.index(ring, OUT_CONS).load(Ordering::Acquire)) >= OUT_SIZE
            {
                prod_index.store(prod, Ordering::Release);
                crate::hypercall::notify(port);
                crate::hypercall::yield_cpu();
                waited += 1;
                if waited > WAIT_LIMIT {
                    return;
                }
            }
            let slot = ring as usize + OUT + (prod % OUT_SIZE) as usize;
            // SAFETY: `slot` is inside out[] of the mapped ring page, in the part the backend
            // does not read until `out_prod` moves past it.
            unsafe { (slot as *mut u8).write_volatile(b) };
            prod = prod.wrapping_add(1);
        }
        // The bytes must be visible before the index that publishes them.
        fence(Ordering::Release);
        prod_index.store(prod, Ordering::Release);
        crate::hypercall::notify(port);
    }
}
