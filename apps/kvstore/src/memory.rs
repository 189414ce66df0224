//! The in-memory store (images without a filesystem, such as profile `net`'s): lost when the
//! guest stops.

use alloc::string::String;
use kv::{Effect, Engine, Session, Settings};
use resp::Request;
use stardust::settings::KV_MAX_KEYS;
use stardust::sync::{Mutex, MutexGuard};

/// What the connection threads lock.
pub type Inner = Engine;

/// The shared store.
pub struct Store {
    inner: Mutex<Inner>,
}

/// The ready line's words.
pub const MODE: &str = "in memory";

impl Store {
    /// An empty store.
    pub fn open(_now_ms: u64) -> Result<Store, String> {
        Ok(Store {
            inner: Mutex::new(Engine::new(Settings {
                max_keys: KV_MAX_KEYS,
                record: false, // no log to feed
                appendonly: false,
            })),
        })
    }

    /// The engine, locked.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Ends a batch: nothing to wait for.
    pub fn finish(&self, _inner: &mut Inner, _now_ms: u64) -> u64 {
        0
    }

    /// Nothing is ever waited for.
    pub fn durable(&self, _target: u64) -> bool {
        true
    }
}

/// One command on the locked store.
pub fn execute(
    inner: &mut Inner,
    request: &Request,
    session: &mut Session,
    now_ms: u64,
    out: &mut alloc::vec::Vec<u8>,
) -> Effect {
    inner.execute(request, session, now_ms, out)
}

/// Removes expired keys.
pub fn sweep(inner: &mut Inner, now_ms: u64, budget: usize) {
    inner.sweep(now_ms, budget);
}
