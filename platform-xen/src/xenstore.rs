//! XenStore: the ring page and event channel from `start_info` (PV) or the HVM params (PVH),
//! the client from
//! `xen_services::xenstore` (wire format, request ids, errors: host-tested), and waiting for
//! xenstored by blocking on events with a timeout.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use xen_services::event::EventChannel;
use xen_services::mem::raw::RawShared;
pub use xen_services::xenstore::{Error, Tx, WatchEvent, XsError};
use xen_services::xenstore::{Wait, XenStore};

/// How long one wait for xenstored blocks before the ring is looked at again.
const WAIT_SLICE_NS: u64 = 10_000_000;
/// How long a call waits for xenstored in all before it fails with `TimedOut`.
const CALL_LIMIT_NS: u64 = 10_000_000_000;

static STORE: spin::Mutex<Option<XenStore<RawShared>>> = spin::Mutex::new(None);
static PORT: AtomicU32 = AtomicU32::new(0);
static BOUND: AtomicBool = AtomicBool::new(false);

fn on_store_event(_port: EventChannel, _ctx: usize) {}

/// Notifies xenstored and blocks on events (any event, or a short timeout) while waiting.
#[derive(Debug)]
pub struct StoreWait {
    port: u32,
    started: u64,
}

impl Wait for StoreWait {
    fn notify(&mut self) {
        crate::hypercall::notify(self.port);
    }

    fn wait(&mut self) -> bool {
        let now = crate::time::system_time_ns().unwrap_or(0);
        if now.saturating_sub(self.started) > CALL_LIMIT_NS {
            return false;
        }
        let was = crate::events::disable();
        crate::events::set_timer(now + WAIT_SLICE_NS);
        crate::guest::block();
        if !was {
            crate::events::disable();
        }
        true
    }
}

/// Runs `f` with the XenStore client (set up on first use).
pub fn with<R>(f: impl FnOnce(&mut XenStore<RawShared>, &mut StoreWait) -> R) -> R {
    let mut store = STORE.lock();
    let client = store.get_or_insert_with(|| {
        let (page, port) = crate::guest::store_ring();
        PORT.store(port, Ordering::Relaxed);
        let page = NonNull::new(page as *mut u8).expect("no XenStore ring page from Xen");
        // SAFETY: the XenStore ring is a page Xen set up for us and the platform mapped (PV: a
        // bootstrap page at its pseudo-physical address, kept reserved; PVH: a page outside
        // RAM, returned as device memory at init), shared only with xenstored and touched only
        // through this one client.
        let shared = unsafe { RawShared::new(page, 4096) };
        XenStore::new(shared)
    });
    let port = PORT.load(Ordering::Relaxed);
    if !BOUND.swap(true, Ordering::AcqRel) {
        let _ = crate::events::bind(port, on_store_event, 0);
    }
    let mut wait = StoreWait {
        port,
        started: crate::time::system_time_ns().unwrap_or(0),
    };
    f(client, &mut wait)
}

/// Reads `path` (relative paths are under the domain's home, `/local/domain/<id>`).
pub fn read<'b>(path: &str, buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
    with(|xs, w| xs.read(Tx(0), path, buf, w))
}

/// Writes `value` to `path`.
pub fn write(path: &str, value: &[u8]) -> Result<(), Error> {
    with(|xs, w| xs.write(Tx(0), path, value, w))
}

/// Lists the children of `path` into `buf` (NUL-separated names).
pub fn directory<'b>(path: &str, buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
    with(|xs, w| xs.directory(Tx(0), path, buf, w))
}

/// Watches `path`; events carry `token` (xenstored fires one at once).
pub fn watch(path: &str, token: &str) -> Result<(), Error> {
    with(|xs, w| xs.watch(path, token, w))
}

/// Waits for the next watch event.
pub fn next_event(buf: &mut [u8]) -> Result<WatchEvent<'_>, Error> {
    with(|xs, w| xs.next_event(buf, w))
}

/// Starts a transaction.
pub fn transaction_start() -> Result<Tx, Error> {
    with(|xs, w| xs.transaction_start(w))
}

/// Ends a transaction (`commit` false aborts it).
pub fn transaction_end(tx: Tx, commit: bool) -> Result<(), Error> {
    with(|xs, w| xs.transaction_end(tx, commit, w))
}
