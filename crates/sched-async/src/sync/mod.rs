//! Async synchronisation between tasks: [`Mutex`], [`Semaphore`] and the bounded
//! [`channel`].
//!
//! All three are fair (waiters are served first come, first served), wake exactly the
//! waiters that can make progress, and pass a wakeup on when a woken waiter is dropped before
//! it used it (a cancelled `lock()`, `acquire()` or `send()`), so no wakeup is lost. Their
//! state sits behind a `spin::Mutex`, held only for a few instructions and never while a
//! waker runs; they are for tasks, not for interrupt handlers, and need no platform.
//!
//! # Why not `embassy-sync`
//!
//! `embassy-sync` is the well-kept `no_std` crate with an async `Mutex`, `Channel` and
//! semaphores, and was considered first. It does not fit here:
//! - its `Channel<M, T, N>` has a `const` capacity and borrowed senders; we want
//!   `channel(capacity)` at run time with clonable, owned senders and a receiver that sees
//!   `None` once every sender is gone (it has no notion of closing);
//! - its `Mutex` and `GreedySemaphore` keep one waker (`WakerRegistration`): a second waiter
//!   wakes the first out, so with many contending tasks (the 1,000-task counter) waiters keep
//!   waking each other, polls without progress; `FairSemaphore` needs the number of waiters
//!   as a `const`;
//! - every primitive is generic over a `RawMutex` type, which would leak into the facade's
//!   types (`Mutex<RawMutex, T>`).
//!
//! Written by hand over `alloc` (a FIFO `BTreeMap` of waiters keyed by arrival number), they
//! are a few hundred lines with no `unsafe`.

mod channel;
mod mutex;
mod semaphore;

pub use channel::{Closed, Receiver, Sender, channel};
pub use mutex::{Mutex, MutexGuard};
pub use semaphore::{Acquire, Semaphore};
