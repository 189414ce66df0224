//! [`Semaphore`]: counting permits with a fair (FIFO) queue of waiters.

use alloc::collections::BTreeMap;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// A counting semaphore: [`Semaphore::acquire`] waits for a permit and takes it,
/// [`Semaphore::release`] gives one back (to the longest waiter, if any).
///
/// Permits are not tied to a guard: whoever acquired is responsible for releasing (any task
/// may release).
pub struct Semaphore {
    state: spin::Mutex<State>,
}

struct State {
    /// Free permits. Invariant: non-zero only while no waiter is `Waiting`.
    permits: usize,
    /// Waiters in arrival order.
    waiters: BTreeMap<u64, Waiter>,
    next_id: u64,
}

enum Waiter {
    Waiting(Waker),
    /// Handed a permit by `release`, not yet polled to take it.
    Granted,
}

impl State {
    /// Hands a permit to the first waiting waiter (returning its waker), else frees it.
    fn release(&mut self) -> Option<Waker> {
        let first = self
            .waiters
            .values_mut()
            .find(|waiter| matches!(waiter, Waiter::Waiting(_)));
        match first {
            Some(waiter) => match core::mem::replace(waiter, Waiter::Granted) {
                Waiter::Waiting(waker) => Some(waker),
                Waiter::Granted => None,
            },
            None => {
                self.permits += 1;
                None
            }
        }
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits (`const`, for a `static`).
    pub const fn new(permits: usize) -> Self {
        Semaphore {
            state: spin::Mutex::new(State {
                permits,
                waiters: BTreeMap::new(),
                next_id: 0,
            }),
        }
    }

    /// Waits for a permit and takes it. Dropping the future before it completed gives up the
    /// place in the queue (and the permit, if one was already handed over, to the next
    /// waiter).
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            semaphore: self,
            id: None,
            done: false,
        }
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock();
        if state.permits > 0 {
            state.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Gives a permit back: to the first waiter, else to the free permits.
    pub fn release(&self) {
        let waker = self.state.lock().release();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.state.lock().permits
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Semaphore")
            .field("permits", &state.permits)
            .field("waiters", &state.waiters.len())
            .finish()
    }
}

/// The future of [`Semaphore::acquire`].
pub struct Acquire<'a> {
    semaphore: &'a Semaphore,
    /// The place in the queue while waiting.
    id: Option<u64>,
    done: bool,
}

impl Future for Acquire<'_> {
    type Output = ();

    /// # Panics
    /// When polled again after it completed.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        assert!(!self.done, "Acquire polled after it completed");
        let semaphore = self.semaphore;
        let mut state = semaphore.state.lock();
        let Some(id) = self.id else {
            if state.permits > 0 {
                state.permits -= 1;
                drop(state);
                self.done = true;
                return Poll::Ready(());
            }
            let id = state.next_id;
            state.next_id += 1;
            state
                .waiters
                .insert(id, Waiter::Waiting(cx.waker().clone()));
            drop(state);
            self.id = Some(id);
            return Poll::Pending;
        };
        match state.waiters.get_mut(&id) {
            Some(Waiter::Waiting(waker)) => {
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
                Poll::Pending
            }
            Some(Waiter::Granted) => {
                state.waiters.remove(&id);
                drop(state);
                self.id = None;
                self.done = true;
                Poll::Ready(())
            }
            None => unreachable!("a waiting Acquire is in the queue"),
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id else {
            return;
        };
        let waker = {
            let mut state = self.semaphore.state.lock();
            match state.waiters.remove(&id) {
                // Handed a permit it will never use: pass it on.
                Some(Waiter::Granted) => state.release(),
                _ => None,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("waiting", &self.id.is_some())
            .field("done", &self.done)
            .finish()
    }
}
