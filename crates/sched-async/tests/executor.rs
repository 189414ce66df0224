//! The executor: order, join handles, sleeping and idling, timeouts, stale wakes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Poll, Waker};
use std::vec::Vec;

use common::{Fake, FakeNoTimer, MS, executor};
use sched_async::{Elapsed, yield_now};

#[test]
fn tasks_run_in_fifo_order() {
    let ex = executor::<Fake>();
    let log = Arc::new(StdMutex::new(Vec::new()));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let log = Arc::clone(&log);
            ex.spawn(async move {
                log.lock().unwrap().push(i);
                yield_now().await;
                log.lock().unwrap().push(10 + i);
            })
        })
        .collect();
    ex.block_on(async {
        for handle in handles {
            handle.await;
        }
    });
    assert_eq!(*log.lock().unwrap(), [0, 1, 2, 3, 10, 11, 12, 13]);
    assert_eq!(ex.stats().tasks_spawned, 4);
    assert_eq!(ex.stats().tasks_finished, 4);
    assert_eq!(ex.live_tasks(), 0);
}

#[test]
fn join_handle_yields_the_value() {
    let ex = executor::<Fake>();
    let handle = ex.spawn(async { 6 * 7 });
    assert!(!handle.is_finished());
    let (value, finished) = ex.block_on(async move {
        yield_now().await;
        let finished = handle.is_finished();
        (handle.await, finished)
    });
    assert_eq!(value, 42);
    assert!(finished);
}

#[test]
fn spawn_from_a_task_and_join_it() {
    let ex = executor::<Fake>();
    let value = ex.block_on(async {
        let outer = ex.spawn(async {
            let inner = ex.spawn(async { String::from("inner") });
            inner.await + " and outer"
        });
        outer.await
    });
    assert_eq!(value, "inner and outer");
}

#[test]
fn a_task_waits_on_another_tasks_join_handle() {
    let ex = executor::<Fake>();
    let start = common::now();
    let result = ex.block_on(async {
        let sleeper = ex.spawn(async {
            ex.sleep(5 * MS).await;
            7
        });
        let waiter = ex.spawn(async move { sleeper.await + 1 });
        waiter.await
    });
    assert_eq!(result, 8);
    assert!(common::now() >= start + 5 * MS);
    assert!(common::idles() >= 1);
}

#[test]
fn sleep_never_completes_early_and_the_executor_idles() {
    let ex = executor::<Fake>();
    for ms in [1, 10, 50] {
        let calls_before = common::now_calls();
        let idles_before = common::idles();
        let start = common::now();
        ex.block_on(ex.sleep(ms * MS));
        assert!(common::now() >= start + ms * MS, "woke early");
        assert_eq!(
            common::now(),
            start + ms * MS,
            "the fake idles to the deadline"
        );
        assert_eq!(common::idles() - idles_before, 1, "one idle per sleep");
        // No busy loop: a handful of clock reads per sleep, whatever its length.
        let calls = common::now_calls() - calls_before;
        assert!(calls <= 5, "{calls} clock reads for one sleep");
    }
    assert!(common::interrupts_enabled());
    assert_eq!(ex.pending_timers(), 0);
}

#[test]
fn sleeps_wake_in_deadline_order() {
    let ex = executor::<Fake>();
    let log = Arc::new(StdMutex::new(Vec::new()));
    let start = common::now();
    ex.block_on(async {
        let handles: Vec<_> = [30, 10, 20, 10]
            .into_iter()
            .enumerate()
            .map(|(i, ms)| {
                let log = Arc::clone(&log);
                ex.spawn(async move {
                    ex.sleep(ms * MS).await;
                    log.lock().unwrap().push((i, common::now() - start));
                })
            })
            .collect();
        for handle in handles {
            handle.await;
        }
    });
    assert_eq!(
        *log.lock().unwrap(),
        [(1, 10 * MS), (3, 10 * MS), (2, 20 * MS), (0, 30 * MS)]
    );
    assert_eq!(ex.stats().timers_fired, 4);
}

#[test]
fn sleep_until_a_past_deadline_is_ready_at_once() {
    let ex = executor::<Fake>();
    ex.block_on(ex.sleep_until(0));
    ex.block_on(ex.sleep(0));
    assert_eq!(common::idles(), 0);
}

#[test]
fn timeout_elapses() {
    let ex = executor::<Fake>();
    let start = common::now();
    let result = ex.block_on(ex.timeout(MS, ex.sleep(10 * MS)));
    assert_eq!(result, Err(Elapsed));
    assert_eq!(common::now(), start + MS);
    assert_eq!(ex.pending_timers(), 0, "the dropped sleep left the queue");
}

#[test]
fn timeout_returns_the_output_in_time() {
    let ex = executor::<Fake>();
    let start = common::now();
    let result = ex.block_on(ex.timeout(10 * MS, async {
        ex.sleep(MS).await;
        5
    }));
    assert_eq!(result, Ok(5));
    assert_eq!(common::now(), start + MS);
    assert_eq!(ex.pending_timers(), 0, "the timeout's sleep left the queue");
}

#[test]
fn without_a_timer_sleep_polls_the_clock() {
    let ex = executor::<FakeNoTimer>();
    let start = common::now();
    ex.block_on(ex.sleep(MS));
    assert!(common::now() >= start + MS);
    assert_eq!(ex.stats().idles, 0);
}

#[test]
fn leftover_tasks_go_on_at_the_next_block_on() {
    let ex = executor::<Fake>();
    let handle = ex.spawn(async {
        ex.sleep(5 * MS).await;
        "late"
    });
    ex.block_on(yield_now());
    assert_eq!(ex.live_tasks(), 1);
    assert!(!handle.is_finished());
    assert_eq!(ex.block_on(handle), "late");
    assert_eq!(ex.live_tasks(), 0);
}

#[test]
#[should_panic(expected = "inside block_on")]
fn block_on_does_not_nest() {
    let ex = executor::<Fake>();
    ex.block_on(async { ex.block_on(async {}) });
}

/// A task that completed is never polled again, even when its waker is woken later; a
/// task woken many times before it runs is polled once.
#[test]
fn no_poll_after_completion_and_no_duplicate_queueing() {
    let ex = executor::<Fake>();
    let stored: Arc<StdMutex<Option<Waker>>> = Arc::default();
    let polls = Arc::new(AtomicUsize::new(0));
    let (stored2, polls2) = (Arc::clone(&stored), Arc::clone(&polls));
    let handle = ex.spawn(std::future::poll_fn(move |cx| {
        let n = polls2.fetch_add(1, Ordering::SeqCst);
        *stored2.lock().unwrap() = Some(cx.waker().clone());
        if n == 0 {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }));
    ex.block_on(async {
        yield_now().await;
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Woken three times: queued once, polled once (and completes).
        let waker = stored.lock().unwrap().clone().unwrap();
        waker.wake_by_ref();
        waker.wake_by_ref();
        waker.wake_by_ref();
        handle.await;
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        // Woken after completion: ignored.
        waker.wake();
        yield_now().await;
        yield_now().await;
    });
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    // The slot is reused by a new task; the old waker must not poll it.
    let stale = stored.lock().unwrap().clone().unwrap();
    let polls3 = Arc::new(AtomicUsize::new(0));
    let polls4 = Arc::clone(&polls3);
    let fresh = ex.spawn(std::future::poll_fn(move |_| {
        polls4.fetch_add(1, Ordering::SeqCst);
        Poll::<()>::Pending
    }));
    ex.block_on(async {
        yield_now().await;
        stale.wake_by_ref();
        yield_now().await;
        yield_now().await;
    });
    assert_eq!(polls3.load(Ordering::SeqCst), 1);
    drop(fresh);
}

#[test]
fn stats_count_polls_and_spawns() {
    let ex = executor::<Fake>();
    ex.block_on(async {
        let handle = ex.spawn(async { yield_now().await });
        handle.await;
    });
    let stats = ex.stats();
    assert_eq!(stats.tasks_spawned, 1);
    assert_eq!(stats.tasks_finished, 1);
    // main: first poll, woken by the handle; task: two polls (yield).
    assert_eq!(stats.polls, 4);
    assert_eq!(stats.idles, 0);
}
