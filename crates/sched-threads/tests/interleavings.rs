//! The interleavings a multi-core machine (or an interrupt) produces, explored exhaustively on
//! small scenarios: each scenario runs once for every step (or pair of steps) at which the
//! racing event can land (see `common`: a step is a platform call, a switch or a `step()` in a
//! thread), and its invariants are checked every time. The racing event is another CPU's
//! operation (injected where no CPU state is locked) or a timer interrupt (where interrupts are
//! enabled).

mod common;

use common::*;
use sched_coop::Coop;
use sched_preempt::Preempt;
use sched_threads::Machine;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

/// Runs `scenario(k)` for k = 1, 2, ... until the event at step k came after the scenario's
/// last step; returns how many runs that took. Each run is on a fresh host thread (a fresh
/// world).
fn explore_one(scenario: fn(u64) -> u64) -> u64 {
    let mut k = 1;
    loop {
        let steps = run(move || scenario(k));
        if k > steps {
            return k;
        }
        k += 1;
    }
}

/// Like [`explore_one`] for two events: every pair (k1, k2) up to the scenario's length.
fn explore_two(scenario: fn(u64, u64) -> u64) -> u64 {
    let length = run(move || scenario(u64::MAX, u64::MAX));
    let mut runs = 0;
    for k1 in 1..=length + 1 {
        for k2 in 1..=length + 1 {
            run(move || scenario(k1, k2));
            runs += 1;
        }
    }
    runs
}

fn run(f: impl FnOnce() -> u64 + Send + 'static) -> u64 {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("a host thread");
    rx.recv()
        .expect("the scenario finished (a panic is a failure)")
}

/// Park / unpark racing the condition: the waiter checks a flag and parks; another CPU sets
/// the flag and unparks it, two operations that each land at any step. No placement may lose
/// the wake-up (a lost one leaves the CPU idle with nothing to wake it: `idle` reports it).
fn park_unpark_scenario(k1: u64, k2: u64) -> u64 {
    let rt = boot::<Coop>();
    let flag = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(AtomicU64::new(0));
    let (task, id, _) = {
        let (flag, woken) = (flag.clone(), woken.clone());
        rt.spawn(
            Some("waiter".into()),
            0,
            checked(move || {
                let rt = Sim::<Coop>::runtime();
                while !flag.load(Ordering::SeqCst) {
                    step();
                    rt.park();
                }
                woken.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .expect("a stack")
    };
    let base = steps();
    {
        let flag = flag.clone();
        remote_at(base.saturating_add(k1), move || {
            flag.store(true, Ordering::SeqCst)
        });
    }
    // The unpark never comes before the store (the other CPU's program order).
    remote_at(base.saturating_add(k1.max(k2)), move || {
        Sim::<Coop>::runtime().unpark(task);
    });
    // main polls with a timed sleep rather than joining: with every thread blocked and no
    // timer pending the runtime reports a deadlock, since today nothing but a timer can wake a
    // thread on one CPU (the other CPU's wake here would come too late for that check).
    // Every event is delivered by the first idle after its step, so a waiter still parked
    // after a few polls lost its wake-up.
    for _ in 0..10 {
        if woken.load(Ordering::SeqCst) != 0 {
            break;
        }
        rt.sleep_until(now() + MS);
    }
    assert_eq!(woken.load(Ordering::SeqCst), 1, "the wake-up was lost");
    rt.wait_exit(task, id);
    let left = live_stacks();
    let steps = finish(left) - base;
    assert_eq!(woken.load(Ordering::SeqCst), 1);
    steps
}

#[test]
fn park_unpark_racing_a_remote_wake_never_loses_it() {
    let runs = explore_two(park_unpark_scenario);
    eprintln!("{runs} interleavings");
    assert!(runs > 100, "only {runs} interleavings");
}

/// A timer expiring while an explicit wake arrives: the waiter parks until a deadline; a timer
/// interrupt past the deadline and another CPU's unpark each land at any step. The waiter is
/// made ready once per park (never enqueued while ready: `Checked`), its timer is gone when it
/// runs again, and it returns spuriously at most once (a stale token).
fn timer_and_wake_scenario(k1: u64, k2: u64) -> u64 {
    let rt = boot::<Coop>();
    let deadline = now() + 3 * MS;
    let parks = Arc::new(AtomicU64::new(0));
    let (task, id, _) = {
        let parks = parks.clone();
        rt.spawn(
            Some("sleeper".into()),
            0,
            checked(move || {
                let rt = Sim::<Coop>::runtime();
                rt.park_until(Some(deadline));
                parks.fetch_add(1, Ordering::SeqCst);
                // A second, longer park: a stale token may end it at once, nothing else may
                // (the old timer must be cancelled or expired, not fire into this one).
                let before = now();
                rt.park_until(Some(deadline + 50 * MS));
                if now() < deadline + 50 * MS && before != now() {
                    violation(format!("woken early at {} by a stale timer", now()));
                }
                parks.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .expect("a stack")
    };
    let base = steps();
    tick_at(base.saturating_add(k1), deadline);
    remote_at(base.saturating_add(k2), move || {
        Sim::<Coop>::runtime().unpark(task)
    });
    rt.wait_exit(task, id);
    // Twice made ready per park at most (the first park: the timer or the wake, once; the
    // second: its own timer), plus the spawn.
    let enq = enqueues(task);
    assert!(enq <= 3, "the sleeper was made ready {enq} times");
    let left = live_stacks();
    let steps = finish(left) - base;
    assert_eq!(parks.load(Ordering::SeqCst), 2);
    steps
}

#[test]
fn a_timer_expiring_while_a_wake_arrives_wakes_once() {
    let runs = explore_two(timer_and_wake_scenario);
    eprintln!("{runs} interleavings");
    assert!(runs > 100, "only {runs} interleavings");
}

/// A Mutex handed off while its owner is preempted: two threads each take the lock twice and
/// stay inside (a few steps) where a timer tick (a full slice later) may preempt them; the
/// tick lands at any step. Mutual exclusion holds, both finish, the count is right, and no
/// waiter is left queued.
fn mutex_handoff_scenario(k: u64) -> u64 {
    type M = Sim<Preempt>;
    let rt = boot::<Preempt>();
    let mutex: &'static sched_threads::sync::Mutex<M, u64> =
        Box::leak(Box::new(sched_threads::sync::Mutex::new(0)));
    let inside = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for n in 0..2 {
        let inside = inside.clone();
        handles.push(
            rt.spawn(
                Some(format!("worker{n}")),
                0,
                checked(move || {
                    for _ in 0..2 {
                        let mut guard = mutex.lock();
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            violation("two threads inside the mutex".into());
                        }
                        step();
                        *guard += 1;
                        step();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(guard);
                        step();
                    }
                }),
            )
            .expect("a stack"),
        );
    }
    let base = steps();
    let t = now() + SLICE;
    tick_at(base + k, t);
    tick_at(base + k + 7, t + SLICE);
    for (task, id, _) in handles {
        rt.wait_exit(task, id);
    }
    assert_eq!(*mutex.lock(), 4);
    assert!(mutex.try_lock().is_some(), "unlocked at the end");
    let left = live_stacks();
    finish(left) - base
}

#[test]
fn a_mutex_is_handed_off_while_its_owner_is_preempted() {
    let runs = explore_one(mutex_handoff_scenario);
    eprintln!("{runs} interleavings");
    assert!(runs > 20, "only {runs} interleavings");
}

/// A Condvar notify racing the wait: the waiter waits for a flag under the mutex; another
/// thread sets it and notifies; a preempting tick lands at any step. The waiter always wakes.
fn condvar_scenario(k: u64) -> u64 {
    type M = Sim<Preempt>;
    let rt = boot::<Preempt>();
    let pair: &'static (
        sched_threads::sync::Mutex<M, bool>,
        sched_threads::sync::Condvar<M>,
    ) = Box::leak(Box::new((
        sched_threads::sync::Mutex::new(false),
        sched_threads::sync::Condvar::new(),
    )));
    let (waiter, wid, _) = rt
        .spawn(
            Some("waiter".into()),
            0,
            checked(move || {
                let guard = pair.1.wait_while(pair.0.lock(), |ready| !*ready);
                assert!(*guard);
            }),
        )
        .expect("a stack");
    let (setter, sid, _) = rt
        .spawn(
            Some("setter".into()),
            0,
            checked(move || {
                step();
                *pair.0.lock() = true;
                step();
                pair.1.notify_one();
            }),
        )
        .expect("a stack");
    let base = steps();
    tick_at(base + k, now() + SLICE);
    rt.wait_exit(waiter, wid);
    rt.wait_exit(setter, sid);
    let left = live_stacks();
    finish(left) - base
}

#[test]
fn a_condvar_notify_racing_the_wait_is_never_lost() {
    let runs = explore_one(condvar_scenario);
    eprintln!("{runs} interleavings");
    assert!(runs > 20, "only {runs} interleavings");
}
