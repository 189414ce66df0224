//! The sync primitives: under the executor (counts, producers and consumers, concurrency
//! limits) and polled by hand (cancellation passes wakeups on).

mod common;

use std::boxed::Box;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::vec::Vec;

use common::{Fake, MS, executor};
use sched_async::sync::{Closed, Mutex, Semaphore, channel};
use sched_async::yield_now;

#[test]
fn a_thousand_tasks_count_exactly_under_the_mutex() {
    static COUNTER: Mutex<u64> = Mutex::new(0);
    let ex = executor::<Fake>();
    ex.block_on(async {
        let handles: Vec<_> = (0..1000)
            .map(|_| {
                ex.spawn(async {
                    for _ in 0..10 {
                        let mut counter = COUNTER.lock().await;
                        let seen = *counter;
                        // Others run while the lock is held: they must wait.
                        yield_now().await;
                        *counter = seen + 1;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await;
        }
    });
    assert_eq!(*COUNTER.try_lock().unwrap(), 10_000);
    // Fair hand-over: each lock costs O(1) polls, not a wake-everyone storm.
    let polls = ex.stats().polls;
    assert!(polls <= 30_000, "{polls} polls");
}

#[test]
fn mutex_try_lock_and_get_mut() {
    let mut mutex = Mutex::new(1);
    {
        let guard = mutex.try_lock().unwrap();
        assert!(mutex.try_lock().is_none());
        drop(guard);
    }
    *mutex.get_mut() += 1;
    assert_eq!(mutex.into_inner(), 2);
}

#[test]
fn channel_producers_and_consumer_lose_and_duplicate_nothing() {
    const PRODUCERS: u64 = 4;
    const ITEMS: u64 = 1000;
    let ex = executor::<Fake>();
    let received = ex.block_on(async {
        let (tx, mut rx) = channel::<u64>(16);
        for p in 0..PRODUCERS {
            let tx = tx.clone();
            ex.spawn(async move {
                for i in 0..ITEMS {
                    tx.send(p * ITEMS + i).await.unwrap();
                    if i % 7 == 0 {
                        yield_now().await;
                    }
                }
            });
        }
        drop(tx);
        let mut received = Vec::new();
        while let Some(item) = rx.recv().await {
            assert!(rx.len() <= 16);
            received.push(item);
        }
        received
    });
    assert_eq!(received.len() as u64, PRODUCERS * ITEMS);
    // Each producer's items arrive in its order.
    for p in 0..PRODUCERS {
        let mine: Vec<_> = received.iter().filter(|&&v| v / ITEMS == p).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
    let mut sorted = received;
    sorted.sort_unstable();
    assert_eq!(sorted, (0..PRODUCERS * ITEMS).collect::<Vec<_>>());
}

#[test]
fn channel_drains_then_ends_and_send_to_a_closed_channel_fails() {
    let ex = executor::<Fake>();
    ex.block_on(async {
        let (tx, mut rx) = channel(4);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.recv().await, None);

        let (tx, rx) = channel(1);
        tx.send(1).await.unwrap();
        // Full: this sender waits until the receiver goes away.
        let waiting = ex.spawn({
            let tx = tx.clone();
            async move { tx.send(2).await }
        });
        yield_now().await;
        assert!(!waiting.is_finished());
        drop(rx);
        assert_eq!(waiting.await, Err(Closed));
        assert!(tx.is_closed());
        assert_eq!(tx.send(3).await, Err(Closed));
    });
}

#[test]
fn semaphore_limits_concurrency() {
    static SEMAPHORE: Semaphore = Semaphore::new(3);
    static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    static MAX: AtomicUsize = AtomicUsize::new(0);
    let ex = executor::<Fake>();
    let start = common::now();
    ex.block_on(async {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                ex.spawn(async {
                    SEMAPHORE.acquire().await;
                    let active = ACTIVE.fetch_add(1, Ordering::SeqCst) + 1;
                    MAX.fetch_max(active, Ordering::SeqCst);
                    ex.sleep(MS).await;
                    ACTIVE.fetch_sub(1, Ordering::SeqCst);
                    SEMAPHORE.release();
                })
            })
            .collect();
        for handle in handles {
            handle.await;
        }
    });
    assert_eq!(MAX.load(Ordering::SeqCst), 3);
    assert_eq!(SEMAPHORE.available_permits(), 3);
    // 20 tasks, 3 at a time, 1 ms each: 7 rounds of sleeping.
    assert_eq!(common::now() - start, 7 * MS);
}

#[test]
fn semaphore_try_acquire() {
    let semaphore = Semaphore::new(1);
    assert!(semaphore.try_acquire());
    assert!(!semaphore.try_acquire());
    semaphore.release();
    assert!(semaphore.try_acquire());
}

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&counter));
    (counter, waker)
}

fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(waker))
}

#[test]
fn a_dropped_acquire_that_was_handed_a_permit_passes_it_on() {
    let semaphore = Semaphore::new(1);
    assert!(semaphore.try_acquire());
    let (first_wakes, first_waker) = counting();
    let (second_wakes, second_waker) = counting();
    let mut first = Box::pin(semaphore.acquire());
    let mut second = Box::pin(semaphore.acquire());
    assert!(poll_once(first.as_mut(), &first_waker).is_pending());
    assert!(poll_once(second.as_mut(), &second_waker).is_pending());
    // Handed to the first waiter, which gives up before taking it.
    semaphore.release();
    assert_eq!(first_wakes.0.load(Ordering::SeqCst), 1);
    drop(first);
    assert_eq!(second_wakes.0.load(Ordering::SeqCst), 1);
    assert!(poll_once(second.as_mut(), &second_waker).is_ready());
    assert_eq!(semaphore.available_permits(), 0);
    semaphore.release();
    assert_eq!(semaphore.available_permits(), 1);
}

#[test]
fn a_dropped_waiting_acquire_leaves_the_queue() {
    let semaphore = Semaphore::new(0);
    let (_, waker) = counting();
    let mut waiting = Box::pin(semaphore.acquire());
    assert!(poll_once(waiting.as_mut(), &waker).is_pending());
    drop(waiting);
    semaphore.release();
    assert_eq!(semaphore.available_permits(), 1);
}

#[test]
fn a_dropped_send_that_was_woken_passes_the_room_on() {
    let (tx, mut rx) = channel(1);
    let (_, waker) = counting();
    assert!(poll_once(Box::pin(tx.send(0)).as_mut(), &waker).is_ready());
    let (first_wakes, first_waker) = counting();
    let (second_wakes, second_waker) = counting();
    let mut first = Box::pin(tx.send(1));
    let mut second = Box::pin(tx.send(2));
    assert!(poll_once(first.as_mut(), &first_waker).is_pending());
    assert!(poll_once(second.as_mut(), &second_waker).is_pending());
    assert_eq!(rx.try_recv(), Some(0));
    assert_eq!(first_wakes.0.load(Ordering::SeqCst), 1);
    assert_eq!(second_wakes.0.load(Ordering::SeqCst), 0);
    drop(first);
    assert_eq!(second_wakes.0.load(Ordering::SeqCst), 1);
    assert!(poll_once(second.as_mut(), &second_waker).is_ready());
    assert_eq!(rx.try_recv(), Some(2));
}

#[test]
fn the_receiver_is_woken_by_a_send_and_by_the_last_sender_leaving() {
    let (tx, mut rx) = channel::<u8>(2);
    let (wakes, waker) = counting();
    {
        let mut recv = Box::pin(rx.recv());
        assert!(poll_once(recv.as_mut(), &waker).is_pending());
    }
    let (_, other) = counting();
    assert!(poll_once(Box::pin(tx.send(9)).as_mut(), &other).is_ready());
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    assert_eq!(rx.try_recv(), Some(9));
    {
        let mut recv = Box::pin(rx.recv());
        assert!(poll_once(recv.as_mut(), &waker).is_pending());
        let tx2 = tx.clone();
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        drop(tx2);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert_eq!(poll_once(recv.as_mut(), &waker), Poll::Ready(None));
    }
}
