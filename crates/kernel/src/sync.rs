//! Glue: the runtime's blocking `Mutex`, `Condvar`, `Semaphore` and bounded channel
//! (`sched_threads::sync`), named with this kernel's machine.

use crate::threads::Kernel;
use sched_threads::sync;
pub use sched_threads::sync::{RecvError, SendError};

/// A mutual-exclusion lock whose waiters sleep (see [`sync::Mutex`]).
pub type Mutex<T> = sync::Mutex<Kernel, T>;
/// Access to a [`Mutex`]'s data; unlocks when dropped.
pub type MutexGuard<'a, T> = sync::MutexGuard<'a, Kernel, T>;
/// A condition variable (see [`sync::Condvar`]).
pub type Condvar = sync::Condvar<Kernel>;
/// A counting semaphore (see [`sync::Semaphore`]).
pub type Semaphore = sync::Semaphore<Kernel>;
/// The sending half of a bounded channel ([`channel`]).
pub type Sender<T> = sync::Sender<Kernel, T>;
/// The receiving half of a bounded channel ([`channel`]).
pub type Receiver<T> = sync::Receiver<Kernel, T>;

/// A bounded multi-producer, single-consumer channel (see [`sync::channel`]).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    sync::channel(capacity)
}
