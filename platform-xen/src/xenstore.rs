//! XenStore: the ring page and event channel from `start_info` (PV) or the HVM params (PVH),
//! the client from
//! `xen_services::xenstore` (wire format, request ids, errors: host-tested), and waiting for
//! xenstored by blocking on events with a timeout.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use xen_services::event::EventChannel;
use xen_services::mem::raw::RawShared;
pub use xen_services::xenstore::{Error, Tx, WatchEvent, WatchId, XsError};
use xen_services::xenstore::{Wait, XenStore};

/// How long one wait for xenstored blocks before the ring is looked at again.
const WAIT_SLICE_NS: u64 = 10_000_000;
/// How long a call waits for xenstored in all before it fails with `TimedOut`.
const CALL_LIMIT_NS: u64 = 10_000_000_000;

static STORE: spin::Mutex<Option<XenStore<RawShared>>> = spin::Mutex::new(None);
static PORT: AtomicU32 = AtomicU32::new(0);
static BOUND: AtomicBool = AtomicBool::new(false);

/// xenstored sent something (a reply, or a watch event) since [`fired`] last looked.
static SEEN: AtomicBool = AtomicBool::new(false);
/// The client's watches that fired and were not taken yet ([`WatchId::bit`]s).
static FIRED: AtomicU32 = AtomicU32::new(0);
/// What to call on a XenStore event (`fn()`s as addresses; 0: free), see [`on_event`].
static HOOKS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

/// The XenStore event channel's handler (in interrupt context): notes that something arrived
/// and calls the hooks, which wake whoever looks at their watches.
fn on_store_event(_port: EventChannel, _ctx: usize) {
    SEEN.store(true, Ordering::Release);
    for hook in &HOOKS {
        let f = hook.load(Ordering::Acquire);
        if f != 0 {
            // SAFETY: every non-zero value in HOOKS was stored by `on_event` from a `fn()`.
            let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
            f();
        }
    }
}

/// Calls `hook` (in interrupt context: it may only set flags and wake) whenever xenstored
/// sends the guest something: a driver's poller wakes and asks [`fired`] about its watch.
/// At most four hooks; `false` when all are taken. A hook already there is not added twice.
pub fn on_event(hook: fn()) -> bool {
    let f = hook as usize;
    if HOOKS.iter().any(|h| h.load(Ordering::Acquire) == f) {
        return true;
    }
    HOOKS.iter().any(|h| {
        h.compare_exchange(0, f, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })
}

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
        if !was && crate::events::ready() {
            // The caller masked events: it may hold a lock that others take with events masked
            // (a driver's poll holds the network stack's). Blocking with events enabled would
            // run the upcall, whose timer handler may switch to such a thread, which then spins
            // on that lock for good with events masked (seen: a guest that answered nothing
            // after its ready line, spinning in a socket call). So wait for XenStore's port
            // alone, events still masked; while it is pending already (an event the upcall will
            // take later), give the CPU to xenstored rather than spin.
            if crate::events::is_pending(self.port) {
                crate::hypercall::yield_cpu();
            } else {
                crate::hypercall::poll_port(self.port, now + WAIT_SLICE_NS);
            }
            return true;
        }
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
    with_client(&mut store, f)
}

/// As [`with`], but `Err(Busy)` at once when another CPU or thread is in a call: for callers
/// that must not wait for the lock (a driver's poll, with interrupts masked and its own lock
/// held, while the holder may be a thread it preempted).
pub fn try_with<R>(
    f: impl FnOnce(&mut XenStore<RawShared>, &mut StoreWait) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut store = STORE.try_lock().ok_or(Error::Busy)?;
    with_client(&mut store, f)
}

fn with_client<R>(
    store: &mut Option<XenStore<RawShared>>,
    f: impl FnOnce(&mut XenStore<RawShared>, &mut StoreWait) -> R,
) -> R {
    let (client, mut wait) = client(store);
    let r = f(client, &mut wait);
    // events that arrived during the call, for `fired`
    FIRED.fetch_or(client.take_all_fired(), Ordering::AcqRel);
    r
}

/// The client (set up on first use) and a fresh wait; not generic, so that each caller of
/// [`with`] does not carry its own copy.
#[inline(never)]
fn client(store: &mut Option<XenStore<RawShared>>) -> (&mut XenStore<RawShared>, StoreWait) {
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
    let wait = StoreWait {
        port,
        started: crate::time::system_time_ns().unwrap_or(0),
    };
    (client, wait)
}

/// Reads `path` (relative paths are under the domain's home, `/local/domain/<id>`).
pub fn read<'b>(path: &str, buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
    with(|xs, w| xs.read(Tx(0), path, buf, w))
}

/// Reads `path` unless another CPU or thread is in a XenStore call: then `Err(Busy)` at once
/// (see [`try_with`]).
pub fn try_read<'b>(path: &str, buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
    try_with(|xs, w| xs.read(Tx(0), path, buf, w))
}

/// Writes `value` to `path` unless another CPU or thread is in a XenStore call: then
/// `Err(Busy)` at once (see [`try_with`]).
pub fn try_write(path: &str, value: &[u8]) -> Result<(), Error> {
    try_with(|xs, w| xs.write(Tx(0), path, value, w))
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

/// Watches `path` (and below) under a token of the kernel's: [`fired`] says when it changed.
pub fn add_watch(path: &str) -> Result<WatchId, Error> {
    with(|xs, w| xs.add_watch(path, w))
}

/// Whether watch `id` fired since it was last asked (clears it). Never blocks: when another
/// CPU or thread is in a XenStore call, what it took is looked at (the call keeps the events
/// it meets), and the rest of the ring on the next ask.
pub fn fired(id: WatchId) -> bool {
    if SEEN.swap(false, Ordering::AcqRel) {
        match STORE.try_lock() {
            Some(mut store) => {
                if let Some(client) = store.as_mut() {
                    if client.poll_events().is_err() {
                        log::warn!("xenstore: garbage in the ring while looking for watch events");
                    }
                    FIRED.fetch_or(client.take_all_fired(), Ordering::AcqRel);
                }
            }
            None => SEEN.store(true, Ordering::Release), // look again next time
        }
    }
    FIRED.fetch_and(!id.bit(), Ordering::AcqRel) & id.bit() != 0
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
