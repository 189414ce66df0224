//! [`Mutex`]: an async mutual-exclusion lock, a one-permit [`Semaphore`] over the data.

use core::fmt;
use core::ops::{Deref, DerefMut};

use super::Semaphore;

/// An async mutex: [`Mutex::lock`] waits (without blocking the CPU) until the lock is free;
/// the guard may be held across `.await`s. Fair: waiters get the lock in arrival order.
///
/// The data sits in a `spin::Mutex` that the semaphore's one permit guards: whoever holds the
/// permit finds the spin lock free, so it never spins (and the crate needs no `unsafe`).
pub struct Mutex<T> {
    permit: Semaphore,
    data: spin::Mutex<T>,
}

/// Access to a [`Mutex`]'s data; unlocks when dropped.
pub struct MutexGuard<'a, T> {
    // Fields drop in order: the data unlocks before the permit goes to the next waiter.
    data: spin::MutexGuard<'a, T>,
    _permit: Permit<'a>,
}

/// Releases the mutex's permit when dropped.
struct Permit<'a>(&'a Semaphore);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value` (`const`, for a `static`).
    pub const fn new(value: T) -> Self {
        Mutex {
            permit: Semaphore::new(1),
            data: spin::Mutex::new(value),
        }
    }

    /// Waits for the lock and takes it.
    pub async fn lock(&self) -> MutexGuard<'_, T> {
        self.permit.acquire().await;
        self.guard()
    }

    /// Takes the lock if it is free now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.permit.try_acquire().then(|| self.guard())
    }

    /// The data, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// The data, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }

    /// The guard, for the holder of the permit.
    fn guard(&self) -> MutexGuard<'_, T> {
        let permit = Permit(&self.permit);
        let data = self
            .data
            .try_lock()
            .expect("the async mutex's permit holder finds its data unlocked");
        MutexGuard {
            data,
            _permit: permit,
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("locked", &(self.permit.available_permits() == 0))
            .finish_non_exhaustive()
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl<T: fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.data, f)
    }
}
