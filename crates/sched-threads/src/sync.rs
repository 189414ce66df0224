//! Blocking synchronization for threads: `Mutex`, `Condvar`, `Semaphore` and a bounded
//! channel, all on the runtime's [`WaitQueue`] (a blocked thread is parked, never spinning).
//!
//! Written by hand: the primitives must park through this runtime, which no published crate
//! knows (`spin`'s locks spin; `lock_api` would still need the parking). Each is generic over
//! the [`Machine`] whose runtime parks its waiters; the kernel names them with its machine
//! (`kernel::sync::Mutex<T>` is `Mutex<Kernel, T>`).

use crate::{Machine, WaitQueue};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use platform::Platform;

fn now<M: Machine>() -> u64 {
    M::Platform::now_ns().unwrap_or(0)
}

fn deadline_after<M: Machine>(ns: u64) -> u64 {
    now::<M>().saturating_add(ns)
}

/// A mutual-exclusion lock whose waiters sleep (they are parked, and woken in FIFO order).
pub struct Mutex<M, T: ?Sized> {
    locked: AtomicBool,
    waiters: WaitQueue<M>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one thread at a time access to `data`, as for `std::sync::Mutex`.
unsafe impl<M, T: ?Sized + Send> Send for Mutex<M, T> {}
// SAFETY: as above: `&Mutex<T>` only hands out `&mut T` to the lock holder.
unsafe impl<M, T: ?Sized + Send> Sync for Mutex<M, T> {}

impl<M, T: ?Sized + core::fmt::Debug> core::fmt::Debug for Mutex<M, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mutex")
            .field("locked", &self.locked)
            .field("waiters", &self.waiters)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, T: Default> Default for Mutex<M, T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// Access to a [`Mutex`]'s data; unlocks when dropped.
pub struct MutexGuard<'a, M: Machine, T: ?Sized> {
    mutex: &'a Mutex<M, T>,
}

impl<M: Machine, T: ?Sized + core::fmt::Debug> core::fmt::Debug for MutexGuard<'_, M, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MutexGuard")
            .field("mutex", &self.mutex)
            .finish()
    }
}

impl<M: Machine, T> Mutex<M, T> {
    /// A new, unlocked mutex.
    pub const fn new(value: T) -> Self {
        Mutex {
            locked: AtomicBool::new(false),
            waiters: WaitQueue::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The data, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<M: Machine, T: ?Sized> Mutex<M, T> {
    /// Locks, sleeping while another thread holds the lock.
    pub fn lock(&self) -> MutexGuard<'_, M, T> {
        lock_raw(&self.locked, &self.waiters);
        MutexGuard { mutex: self }
    }

    /// Locks if nobody holds the lock.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, M, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| MutexGuard { mutex: self })
    }

    /// The data, through a unique reference (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// [`Mutex::lock`]'s loop, apart from the data's type: one copy per machine rather than one per
/// locked type (kvstore [storage] has three).
fn lock_raw<M: Machine>(locked: &AtomicBool, waiters: &WaitQueue<M>) {
    while locked
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        waiters.wait_if(|| locked.load(Ordering::Acquire), None);
    }
}

impl<M: Machine, T: ?Sized> Drop for MutexGuard<'_, M, T> {
    fn drop(&mut self) {
        self.mutex.locked.store(false, Ordering::Release);
        self.mutex.waiters.notify_one();
    }
}

impl<M: Machine, T: ?Sized> Deref for MutexGuard<'_, M, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<M: Machine, T: ?Sized> DerefMut for MutexGuard<'_, M, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this thread holds the lock, and is unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

/// A condition variable: waits for a change made under a [`Mutex`].
pub struct Condvar<M> {
    waiters: WaitQueue<M>,
    /// Bumped by every notify: a waiter that saw it change since it queued was notified.
    epoch: AtomicUsize,
}

impl<M> core::fmt::Debug for Condvar<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Condvar")
            .field("waiters", &self.waiters)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl<M: Machine> Default for Condvar<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Machine> Condvar<M> {
    /// A new condition variable.
    pub const fn new() -> Self {
        Condvar {
            waiters: WaitQueue::new(),
            epoch: AtomicUsize::new(0),
        }
    }

    /// Unlocks `guard`'s mutex, sleeps until notified, and locks it again. May wake spuriously:
    /// check the condition in a loop (or use [`Condvar::wait_while`]).
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, M, T>) -> MutexGuard<'a, M, T> {
        self.wait_deadline(guard, None).0
    }

    /// Waits while `condition` holds.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, M, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, M, T> {
        while condition(&mut guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Like [`Condvar::wait`], giving up after `timeout_ns`; the flag says whether it timed out.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, M, T>,
        timeout_ns: u64,
    ) -> (MutexGuard<'a, M, T>, bool) {
        self.wait_deadline(guard, Some(deadline_after::<M>(timeout_ns)))
    }

    fn wait_deadline<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, M, T>,
        deadline: Option<u64>,
    ) -> (MutexGuard<'a, M, T>, bool) {
        let mutex = guard.mutex;
        let epoch = self.epoch.load(Ordering::Acquire);
        // The epoch is read while the mutex is held: a notify after the unlock below changes
        // it, and `wait_if` then does not sleep (or the notify finds this thread queued).
        drop(guard);
        self.waiters
            .wait_if(|| self.epoch.load(Ordering::Acquire) == epoch, deadline);
        let timed_out = deadline.is_some_and(|d| now::<M>() >= d);
        (mutex.lock(), timed_out)
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
        self.waiters.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
        self.waiters.notify_all();
    }
}

/// A counting semaphore: `acquire` takes a permit, sleeping while there is none.
pub struct Semaphore<M> {
    permits: AtomicUsize,
    waiters: WaitQueue<M>,
}

impl<M> core::fmt::Debug for Semaphore<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Semaphore")
            .field("permits", &self.permits)
            .field("waiters", &self.waiters)
            .finish()
    }
}

impl<M: Machine> Semaphore<M> {
    /// A semaphore with `permits` permits.
    pub const fn new(permits: usize) -> Self {
        Semaphore {
            permits: AtomicUsize::new(permits),
            waiters: WaitQueue::new(),
        }
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> bool {
        self.permits
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |p| p.checked_sub(1))
            .is_ok()
    }

    /// Takes a permit, sleeping until one is free.
    pub fn acquire(&self) {
        while !self.try_acquire() {
            self.waiters
                .wait_if(|| self.permits.load(Ordering::Acquire) == 0, None);
        }
    }

    /// Takes a permit, giving up after `timeout_ns`; returns whether it got one.
    pub fn acquire_timeout(&self, timeout_ns: u64) -> bool {
        let deadline = deadline_after::<M>(timeout_ns);
        loop {
            if self.try_acquire() {
                return true;
            }
            if now::<M>() >= deadline {
                return false;
            }
            self.waiters
                .wait_if(|| self.permits.load(Ordering::Acquire) == 0, Some(deadline));
        }
    }

    /// Gives a permit back (or a new one), waking a waiter.
    pub fn release(&self) {
        self.permits.fetch_add(1, Ordering::Release);
        self.waiters.notify_one();
    }

    /// Free permits now.
    pub fn available(&self) -> usize {
        self.permits.load(Ordering::Relaxed)
    }
}

struct Channel<M: Machine, T> {
    state: Mutex<M, ChannelState<T>>,
    not_empty: Condvar<M>,
    not_full: Condvar<M>,
    capacity: usize,
}

struct ChannelState<T> {
    buffer: VecDeque<T>,
    senders: usize,
    receiver: bool,
}

/// The sending half of a bounded channel ([`channel`]); clone it for more producers.
pub struct Sender<M: Machine, T> {
    channel: Arc<Channel<M, T>>,
}

/// The receiving half of a bounded channel ([`channel`]).
pub struct Receiver<M: Machine, T> {
    channel: Arc<Channel<M, T>>,
}

impl<M: Machine, T> core::fmt::Debug for Sender<M, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.channel.capacity)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, T> core::fmt::Debug for Receiver<M, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.channel.capacity)
            .finish_non_exhaustive()
    }
}

/// The receiver is gone: the value comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Why `recv` returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Every sender is gone and the buffer is empty.
    Disconnected,
    /// The timeout passed first.
    Timeout,
}

/// A bounded multi-producer, single-consumer channel holding at most `capacity` values
/// (at least 1): `send` sleeps while it is full, `recv` while it is empty.
pub fn channel<M: Machine, T>(capacity: usize) -> (Sender<M, T>, Receiver<M, T>) {
    let channel = Arc::new(Channel {
        state: Mutex::new(ChannelState {
            buffer: VecDeque::with_capacity(capacity.max(1)),
            senders: 1,
            receiver: true,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        capacity: capacity.max(1),
    });
    (
        Sender {
            channel: channel.clone(),
        },
        Receiver { channel },
    )
}

impl<M: Machine, T> Sender<M, T> {
    /// Sends `value`, sleeping while the channel is full; fails if the receiver is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let c = &*self.channel;
        let mut state = c.not_full.wait_while(c.state.lock(), |s| {
            s.receiver && s.buffer.len() >= c.capacity
        });
        if !state.receiver {
            return Err(SendError(value));
        }
        state.buffer.push_back(value);
        drop(state);
        c.not_empty.notify_one();
        Ok(())
    }
}

impl<M: Machine, T> Clone for Sender<M, T> {
    fn clone(&self) -> Self {
        self.channel.state.lock().senders += 1;
        Sender {
            channel: self.channel.clone(),
        }
    }
}

impl<M: Machine, T> Drop for Sender<M, T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.channel.state.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.channel.not_empty.notify_all();
        }
    }
}

impl<M: Machine, T> Receiver<M, T> {
    /// Receives the next value, sleeping while the channel is empty; fails when every sender
    /// is gone and nothing is left.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_deadline(None)
    }

    /// Like [`Receiver::recv`], giving up after `timeout_ns`.
    pub fn recv_timeout(&self, timeout_ns: u64) -> Result<T, RecvError> {
        self.recv_deadline(Some(deadline_after::<M>(timeout_ns)))
    }

    /// A value if one is there now.
    pub fn try_recv(&self) -> Option<T> {
        let value = self.channel.state.lock().buffer.pop_front();
        if value.is_some() {
            self.channel.not_full.notify_one();
        }
        value
    }

    fn recv_deadline(&self, deadline: Option<u64>) -> Result<T, RecvError> {
        let c = &*self.channel;
        let mut state = c.state.lock();
        loop {
            if let Some(value) = state.buffer.pop_front() {
                drop(state);
                c.not_full.notify_one();
                return Ok(value);
            }
            if state.senders == 0 {
                return Err(RecvError::Disconnected);
            }
            state = match deadline {
                None => c.not_empty.wait(state),
                Some(d) => {
                    if now::<M>() >= d {
                        return Err(RecvError::Timeout);
                    }
                    c.not_empty.wait_deadline(state, Some(d)).0
                }
            };
        }
    }
}

impl<M: Machine, T> Iterator for &Receiver<M, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.recv().ok()
    }
}

impl<M: Machine, T> Drop for Receiver<M, T> {
    fn drop(&mut self) {
        self.channel.state.lock().receiver = false;
        self.channel.not_full.notify_all();
    }
}
