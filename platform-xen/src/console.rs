//! The PV console ring as this platform's console device and `log` backend.
//!
//! The ring page and its event channel come from `start_info` (`console.domU`) on PV, from the
//! HVM params `CONSOLE_PFN` and `CONSOLE_EVTCHN` on PVH (`pvh.rs`); the ring
//! itself is `xen_services::console::ConsoleRing` (host-tested). A full ring is waited out
//! (notify, yield), bounded so that a dead backend drops output instead of hanging the guest;
//! a corrupt ring (garbage indexes from the other side) drops output too, never panics.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use platform::ConsoleDevice;
use xen_services::console::ConsoleRing;
use xen_services::mem::raw::RawShared;

/// Yields to wait for room (or for the backend to take everything) before giving up.
const WAIT_LIMIT: u32 = 100_000;

/// Attempts at the ring's lock before output is dropped (a writer interrupted on this CPU, by
/// a fault in the middle of a write, must not deadlock the report of that fault).
const LOCK_TRIES: u32 = 1_000_000;

/// The console ring device.
#[derive(Debug)]
pub struct XenConsole {
    ring: spin::Once<spin::Mutex<ConsoleRing<RawShared>>>,
    port: AtomicU32,
}

/// The one console ring.
pub static XEN_CONSOLE: XenConsole = XenConsole {
    ring: spin::Once::new(),
    port: AtomicU32::new(0),
};

impl XenConsole {
    /// The ring, locked (bounded: `None` when it is not set up or stays locked).
    fn ring(&self) -> Option<spin::MutexGuard<'_, ConsoleRing<RawShared>>> {
        let ring = self.ring.get()?;
        (0..LOCK_TRIES).find_map(|_| {
            let guard = ring.try_lock();
            if guard.is_none() {
                core::hint::spin_loop();
            }
            guard
        })
    }

    fn kick(&self) {
        crate::hypercall::notify(self.port.load(Ordering::Relaxed));
    }

    /// Waits (bounded) until the backend has taken everything written so far.
    pub fn flush(&self) {
        let Some(ring) = self.ring() else {
            return;
        };
        for _ in 0..WAIT_LIMIT {
            if ring.unsent().map_or(true, |n| n == 0) {
                return;
            }
            self.kick();
            crate::hypercall::yield_cpu();
        }
    }
}

impl ConsoleDevice for XenConsole {
    fn init(&self) {
        let Some((page, port)) = crate::guest::console_ring() else {
            return;
        };
        self.port.store(port, Ordering::Relaxed);
        self.ring.call_once(|| {
            // SAFETY: the console ring is a page Xen set up for us and that the platform mapped
            // (PV: a bootstrap page, kept reserved; PVH: a page outside RAM, mapped at boot and
            // returned as device memory), shared only with xenconsoled and touched only through
            // this one ring.
            let shared =
                unsafe { RawShared::new(NonNull::new(page as *mut u8).expect("mapped"), 4096) };
            spin::Mutex::new(ConsoleRing::new(shared))
        });
    }

    fn write(&self, bytes: &[u8]) {
        let Some(ring) = self.ring() else {
            return;
        };
        let mut waited = 0;
        let _ = ring.write_all(bytes, || {
            self.kick();
            crate::hypercall::yield_cpu();
            waited += 1;
            waited < WAIT_LIMIT
        });
        self.kick();
    }
}
