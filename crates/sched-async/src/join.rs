//! [`JoinHandle`]: a spawned task's output, as a future.

use alloc::sync::Arc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

/// The handle [`crate::Executor::spawn`] returns: a future that resolves to the task's output.
/// Dropping it detaches the task (it runs on; its output is dropped).
pub struct JoinHandle<T> {
    state: Arc<JoinState<T>>,
}

/// The task's side: completes the handle with the output.
pub(crate) struct Completer<T> {
    state: Arc<JoinState<T>>,
}

struct JoinState<T> {
    finished: AtomicBool,
    inner: spin::Mutex<Inner<T>>,
}

struct Inner<T> {
    output: Option<T>,
    /// Set once the handle has returned the output.
    taken: bool,
    waker: Option<Waker>,
}

/// A handle and the completer its task's wrapper future owns.
pub(crate) fn pair<T>() -> (JoinHandle<T>, Completer<T>) {
    let state = Arc::new(JoinState {
        finished: AtomicBool::new(false),
        inner: spin::Mutex::new(Inner {
            output: None,
            taken: false,
            waker: None,
        }),
    });
    (
        JoinHandle {
            state: Arc::clone(&state),
        },
        Completer { state },
    )
}

impl<T> Completer<T> {
    /// Stores the output and wakes the task waiting on the handle, if any.
    pub(crate) fn complete(self, output: T) {
        let waker = {
            let mut inner = self.state.inner.lock();
            inner.output = Some(output);
            self.state.finished.store(true, Ordering::Release);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> JoinHandle<T> {
    /// Whether the task has completed (its output is ready, or was already taken).
    pub fn is_finished(&self) -> bool {
        self.state.finished.load(Ordering::Acquire)
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    /// # Panics
    /// When polled again after it returned the output.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut inner = self.state.inner.lock();
        if let Some(output) = inner.output.take() {
            inner.taken = true;
            inner.waker = None;
            return Poll::Ready(output);
        }
        assert!(!inner.taken, "JoinHandle polled after it returned");
        match &inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
