//! [`channel`]: a bounded multi-producer, single-consumer queue.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::fmt;
use core::future::poll_fn;
use core::task::{Context, Poll, Waker};

/// A bounded channel holding at most `capacity` items: [`Sender::send`] waits while it is
/// full, [`Receiver::recv`] while it is empty. Senders are served in arrival order.
///
/// # Panics
/// When `capacity` is 0 (there is no rendezvous channel).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "a channel needs a capacity of at least 1");
    let shared = Arc::new(Shared {
        state: spin::Mutex::new(State {
            buffer: VecDeque::with_capacity(capacity),
            capacity,
            senders: 1,
            receiver_alive: true,
            send_waiters: BTreeMap::new(),
            next_id: 0,
            recv_waker: None,
        }),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

/// The error of [`Sender::send`]: the receiver is gone (the value was dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel closed")
    }
}

struct Shared<T> {
    state: spin::Mutex<State<T>>,
}

struct State<T> {
    buffer: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    /// Senders waiting for room, in arrival order. One is taken out (and woken) per item
    /// received; it puts itself back under the same number if it then finds no room.
    send_waiters: BTreeMap<u64, Waker>,
    next_id: u64,
    recv_waker: Option<Waker>,
}

impl<T> State<T> {
    /// Takes out the first waiting sender, to wake: there is room for one more item.
    fn next_sender(&mut self) -> Option<Waker> {
        self.send_waiters.pop_first().map(|(_, waker)| waker)
    }
}

/// The sending half of a [`channel`]; clone it for more producers. The receiver sees the end
/// of the channel when the last one is dropped.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half of a [`channel`].
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full. Fails with [`Closed`] (dropping
    /// `value`) once the receiver is gone.
    pub async fn send(&self, value: T) -> Result<(), Closed> {
        let mut value = Some(value);
        let mut place = SendPlace {
            shared: &self.shared,
            id: None,
        };
        poll_fn(|cx| place.poll_send(cx, &mut value)).await
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.shared.state.lock().receiver_alive
    }
}

/// A pending send's place in the queue of waiting senders; its drop gives the place up.
struct SendPlace<'a, T> {
    shared: &'a Shared<T>,
    id: Option<u64>,
}

impl<T> SendPlace<'_, T> {
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        value: &mut Option<T>,
    ) -> Poll<Result<(), Closed>> {
        let mut state = self.shared.state.lock();
        if !state.receiver_alive {
            drop(state);
            // Dropped outside the lock.
            drop(value.take());
            return Poll::Ready(Err(Closed));
        }
        if state.buffer.len() < state.capacity {
            let item = value.take().expect("send polled after it completed");
            state.buffer.push_back(item);
            if let Some(id) = self.id.take() {
                state.send_waiters.remove(&id);
            }
            let receiver = state.recv_waker.take();
            drop(state);
            if let Some(waker) = receiver {
                waker.wake();
            }
            return Poll::Ready(Ok(()));
        }
        let id = *self.id.get_or_insert_with(|| {
            let id = state.next_id;
            state.next_id += 1;
            id
        });
        match state.send_waiters.get_mut(&id) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => *waker = cx.waker().clone(),
            None => {
                state.send_waiters.insert(id, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for SendPlace<'_, T> {
    fn drop(&mut self) {
        let Some(id) = self.id else {
            return;
        };
        let waker = {
            let mut state = self.shared.state.lock();
            if state.send_waiters.remove(&id).is_some() {
                None
            } else if state.buffer.len() < state.capacity {
                // Woken for room it will not use: pass the wakeup on.
                state.next_sender()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.state.lock();
            state.senders -= 1;
            if state.senders == 0 {
                state.recv_waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, waiting while the channel is empty; `None` once it is empty and every
    /// sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next item if there is one now.
    pub fn try_recv(&mut self) -> Option<T> {
        let (item, sender) = {
            let mut state = self.shared.state.lock();
            let item = state.buffer.pop_front();
            let sender = if item.is_some() {
                state.next_sender()
            } else {
                None
            };
            (item, sender)
        };
        if let Some(waker) = sender {
            waker.wake();
        }
        item
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.state.lock();
        if let Some(item) = state.buffer.pop_front() {
            let sender = state.next_sender();
            drop(state);
            if let Some(waker) = sender {
                waker.wake();
            }
            return Poll::Ready(Some(item));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut state.recv_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Items waiting in the channel.
    pub fn len(&self) -> usize {
        self.shared.state.lock().buffer.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (senders, items) = {
            let mut state = self.shared.state.lock();
            state.receiver_alive = false;
            (
                core::mem::take(&mut state.send_waiters),
                core::mem::take(&mut state.buffer),
            )
        };
        // Items and wakes outside the lock: waiting senders see the channel closed.
        drop(items);
        for (_, waker) in senders {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}
