//! The runtime on the fake machine: spawning, joining, yielding, sleeping, preempting, and the
//! bookkeeping of stacks and guard pages.

mod common;

use common::*;
use sched_coop::Coop;
use sched_preempt::Preempt;
use sched_threads::SpawnError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn spawned_threads_run_once_and_are_joined() {
    let rt = boot::<Coop>();
    let ran = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let ran = ran.clone();
        let (task, id, name) = rt
            .spawn(
                None,
                8192,
                checked(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .expect("a stack");
        assert_eq!(name, format!("thread-{id}"));
        handles.push((task, id));
    }
    assert_eq!(rt.stats().live, 5);
    for (task, id) in handles {
        rt.wait_exit(task, id);
    }
    assert_eq!(ran.load(Ordering::SeqCst), 4);
    assert_eq!(rt.stats().live, 1);
    // The last thread to exit is reaped by the next switch away from it: at most one left.
    let left = live_stacks();
    assert!(left <= 1, "{left} stacks left");
    finish(left);
}

#[test]
fn yield_now_takes_turns_in_order() {
    let rt = boot::<Coop>();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for n in 0..3 {
        let order = order.clone();
        let rt2 = rt;
        handles.push(
            rt.spawn(
                Some(format!("t{n}")),
                8192,
                checked(move || {
                    for round in 0..3 {
                        order.lock().unwrap().push((round, n));
                        rt2.yield_now();
                    }
                }),
            )
            .expect("a stack"),
        );
    }
    for (task, id, _) in handles {
        rt.wait_exit(task, id);
    }
    let order = order.lock().unwrap().clone();
    let expected: Vec<_> = (0..3).flat_map(|r| (0..3).map(move |n| (r, n))).collect();
    assert_eq!(order, expected);
    assert!(rt.stats().switches >= 9);
    let left = live_stacks();
    finish(left);
}

#[test]
fn sleep_until_idles_to_the_deadline() {
    let rt = boot::<Coop>();
    let deadline = now() + 5 * MS;
    rt.sleep_until(deadline);
    assert!(now() >= deadline);
    assert!(idles() >= 1, "slept without idling");
    // Sleeping threads wake in deadline order.
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for (n, ms) in [(0, 30), (1, 10), (2, 20)] {
        let order = order.clone();
        handles.push(
            rt.spawn(
                None,
                8192,
                checked(move || {
                    let rt = <Sim<Coop> as sched_threads::Machine>::runtime();
                    rt.sleep_until(START + 100 * MS + ms * MS);
                    order.lock().unwrap().push(n);
                }),
            )
            .expect("a stack"),
        );
    }
    for (task, id, _) in handles {
        rt.wait_exit(task, id);
    }
    assert_eq!(*order.lock().unwrap(), [1, 2, 0]);
    let left = live_stacks();
    finish(left);
}

#[test]
fn a_timer_tick_preempts_a_thread_that_never_yields() {
    let rt = boot::<Preempt>();
    let stop = Arc::new(AtomicBool::new(false));
    let hog_ran = Arc::new(AtomicU64::new(0));
    let (task, id, _) = {
        let (stop, hog_ran) = (stop.clone(), hog_ran.clone());
        rt.spawn(
            Some("hog".into()),
            8192,
            checked(move || {
                while !stop.load(Ordering::SeqCst) {
                    hog_ran.fetch_add(1, Ordering::SeqCst);
                    step();
                }
            }),
        )
        .expect("a stack")
    };
    // main yields to the hog, which spins until a tick after its slice gives main the CPU.
    let at = steps() + 20;
    tick_at(at, now() + SLICE);
    rt.yield_now();
    assert!(hog_ran.load(Ordering::SeqCst) > 0);
    assert_eq!(rt.stats().preemptions, 1);
    stop.store(true, Ordering::SeqCst);
    rt.wait_exit(task, id);
    let left = live_stacks();
    finish(left);
}

#[test]
fn park_returns_at_once_on_a_wake_token() {
    let rt = boot::<Coop>();
    let me = rt.current();
    rt.unpark(me);
    rt.park(); // the token: no deadlock
    // A timed park with no token waits for its deadline.
    let deadline = now() + MS;
    rt.park_until(Some(deadline));
    assert!(now() >= deadline);
    finish(0);
}

#[test]
#[should_panic(expected = "deadlock: all 1 threads are blocked")]
fn parking_the_last_thread_for_ever_is_a_reported_deadlock() {
    let rt = boot::<Coop>();
    rt.park();
}

#[test]
fn with_device_wakeups_the_last_thread_parked_waits_for_an_interrupt() {
    let rt = boot::<Coop>();
    rt.expect_device_wakeups();
    let me = rt.current();
    // A device interrupt's handler wakes the thread while the CPU idles.
    remote_at(steps() + 5, move || rt.unpark(me));
    let idled = idles();
    rt.park();
    assert!(idles() > idled, "the CPU idled until the interrupt");
    finish(0);
}

#[test]
fn stacks_and_guard_pages_are_given_back() {
    let rt = boot::<Preempt>();
    for _ in 0..3 {
        let (task, id, _) = rt.spawn(None, 16 * 1024, checked(|| {})).expect("a stack");
        assert_eq!(guarded_pages(), live_stacks());
        rt.wait_exit(task, id);
    }
    // Spawning again reaps what is left.
    let (task, id, _) = rt.spawn(None, 0, checked(|| {})).expect("a stack");
    rt.wait_exit(task, id);
    rt.yield_now();
    let left = live_stacks();
    assert!(left <= 1);
    assert_eq!(guarded_pages(), left);
    finish(left);
}

#[test]
fn a_stack_the_machine_cannot_give_is_an_error() {
    let rt = boot::<Coop>();
    limit_stacks(0);
    let err = rt.spawn(None, 20_000, checked(|| {})).unwrap_err();
    // 20,000 bytes round up to 5 pages, plus the guard page.
    assert_eq!(err, SpawnError::OutOfMemory { bytes: 6 * 4096 });
    assert_eq!(
        err.to_string(),
        "out of memory for a 24576-byte thread stack"
    );
    assert_eq!(rt.stats().live, 1);
    finish(0);
}

#[test]
fn guard_pages_name_their_thread() {
    let rt = boot::<Coop>();
    let seen = Arc::new(Mutex::new(None));
    let (task, id, _) = {
        let seen = seen.clone();
        rt.spawn(
            Some("deep".into()),
            16 * 1024,
            checked(move || {
                let rt = <Sim<Coop> as sched_threads::Machine>::runtime();
                *seen.lock().unwrap() = rt.current_guard_page();
            }),
        )
        .expect("a stack")
    };
    rt.yield_now();
    let page = seen.lock().unwrap().expect("a guarded stack");
    let (name, owner, bytes) = rt.guard_owner(page + 100).expect("the owner");
    assert_eq!(
        (name.to_string().as_str(), owner, bytes),
        ("deep", id, 16 * 1024)
    );
    assert!(
        rt.guard_owner(page + 4096).is_none(),
        "above the guard page"
    );
    assert_eq!(rt.current_guard_page(), None, "main runs on the boot stack");
    rt.wait_exit(task, id);
    // Without guard pages a stack still works; it has none to report.
    refuse_guard_pages();
    let (task, id, _) = {
        let seen = seen.clone();
        rt.spawn(
            None,
            0,
            checked(move || {
                let rt = <Sim<Coop> as sched_threads::Machine>::runtime();
                *seen.lock().unwrap() = rt.current_guard_page();
            }),
        )
        .expect("a stack")
    };
    rt.wait_exit(task, id);
    assert_eq!(*seen.lock().unwrap(), None);
    let left = live_stacks();
    finish(left);
}

#[test]
#[should_panic(expected = "stack overflow in thread 'victim'")]
fn a_broken_canary_is_reported_at_the_next_switch() {
    let rt = boot::<Coop>();
    let (task, id, _) = rt
        .spawn(
            Some("victim".into()),
            8192,
            checked(move || {
                let rt = <Sim<Coop> as sched_threads::Machine>::runtime();
                let page = rt.current_guard_page().expect("a guarded stack");
                // SAFETY: the word above the guard page lies in this thread's own stack
                // allocation (host memory), which it may write.
                unsafe { ((page + 4096) as *mut u64).write_volatile(0) };
                let main = sched::TaskId(0);
                rt.unpark(main);
                rt.yield_now();
            }),
        )
        .expect("a stack");
    rt.wait_exit(task, id);
}

#[test]
fn interrupts_are_enabled_in_threads_and_masked_across_switches() {
    let rt = boot::<Coop>();
    assert!(interrupts_enabled());
    let seen = Arc::new(AtomicBool::new(false));
    let (task, id, _) = {
        let seen = seen.clone();
        rt.spawn(
            None,
            0,
            checked(move || seen.store(interrupts_enabled(), Ordering::SeqCst)),
        )
        .expect("a stack")
    };
    rt.wait_exit(task, id);
    assert!(seen.load(Ordering::SeqCst));
    assert!(interrupts_enabled());
    let left = live_stacks();
    finish(left);
}
