//! The timer queue and the futures on it: [`Sleep`] and the `timeout` error [`Elapsed`].

use alloc::collections::BTreeMap;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use platform::Platform;

use crate::Executor;

/// The executor's timer queue: the wakers of pending sleeps, earliest deadline first (ties
/// in registration order).
pub(crate) struct Timers {
    queue: BTreeMap<(u64, u64), Waker>,
    next_seq: u64,
}

/// A timer queue entry's key: deadline, then registration order.
type TimerKey = (u64, u64);

impl Timers {
    pub(crate) const fn new() -> Self {
        Timers {
            queue: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.queue
            .first_key_value()
            .map(|(&(deadline, _), _)| deadline)
    }

    /// Takes out the earliest entry if its deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: u64) -> Option<Waker> {
        let entry = self.queue.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }

    fn insert(&mut self, deadline: u64, waker: Waker) -> TimerKey {
        let key = (deadline, self.next_seq);
        self.next_seq += 1;
        self.queue.insert(key, waker);
        key
    }

    /// Refreshes the waker of a pending entry; `false` when the entry fired (is gone).
    fn update(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.queue.get_mut(&key) {
            Some(stored) => {
                if !stored.will_wake(waker) {
                    *stored = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, key: TimerKey) {
        self.queue.remove(&key);
    }
}

/// A future that completes at a deadline on the platform's clock: from
/// [`Executor::sleep`] or [`Executor::sleep_until`]. It never completes before the deadline
/// (where the platform has a clock; without one it completes at once).
///
/// It registers with the executor that made it, which wakes it when the deadline has passed;
/// it must be polled by a task of that executor. Dropping it takes it off the timer queue.
pub struct Sleep<P: Platform + 'static> {
    executor: &'static Executor<P>,
    deadline: u64,
    /// The timer queue entry while registered.
    key: Option<TimerKey>,
}

impl<P: Platform + 'static> Sleep<P> {
    pub(crate) fn new(executor: &'static Executor<P>, deadline: u64) -> Self {
        Sleep {
            executor,
            deadline,
            key: None,
        }
    }

    /// The deadline, on the [`Platform::now_ns`] clock.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

impl<P: Platform + 'static> Future for Sleep<P> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(key) = self.key {
            // The executor takes the entry out only once the clock passed the deadline.
            if self.executor.timers.lock().update(key, cx.waker()) {
                return Poll::Pending;
            }
            self.key = None;
            return Poll::Ready(());
        }
        match P::now_ns() {
            Some(now) if now < self.deadline => {
                let key = self
                    .executor
                    .timers
                    .lock()
                    .insert(self.deadline, cx.waker().clone());
                self.key = Some(key);
                Poll::Pending
            }
            // Due, or no clock to wait on.
            _ => Poll::Ready(()),
        }
    }
}

impl<P: Platform + 'static> Drop for Sleep<P> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.executor.timers.lock().remove(key);
        }
    }
}

impl<P: Platform + 'static> fmt::Debug for Sleep<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("registered", &self.key.is_some())
            .finish()
    }
}

/// The error of [`Executor::timeout`]: the time ran out before the future completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}
