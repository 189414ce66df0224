//! A fake platform for the host tests: a clock per test thread that only moves when the
//! executor idles (to the armed deadline) or, for the timerless fake, a little on every read.
#![allow(dead_code)]

use std::boxed::Box;
use std::cell::Cell;

use platform::Platform;
use sched_async::Executor;

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(1_000_000) };
    static ARMED: Cell<Option<u64>> = const { Cell::new(None) };
    static IDLES: Cell<u64> = const { Cell::new(0) };
    static NOW_CALLS: Cell<u64> = const { Cell::new(0) };
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// The fake clock now.
pub fn now() -> u64 {
    NOW.get()
}

/// Times the executor idled on the fake.
pub fn idles() -> u64 {
    IDLES.get()
}

/// Times the clock was read.
pub fn now_calls() -> u64 {
    NOW_CALLS.get()
}

/// Whether interrupts are enabled on the fake CPU.
pub fn interrupts_enabled() -> bool {
    ENABLED.get()
}

/// A fresh executor for one test (leaked: `block_on` wants `&'static`).
pub fn executor<P: Platform + 'static>() -> &'static Executor<P> {
    Box::leak(Box::new(Executor::new()))
}

pub const MS: u64 = 1_000_000;

/// A platform with a one-shot timer: `idle` jumps the clock to the armed deadline.
#[derive(Debug)]
pub struct Fake;

/// A platform without a timer: `set_timer` fails and every clock read advances it 10 µs.
#[derive(Debug)]
pub struct FakeNoTimer;

/// The items `Fake` and `FakeNoTimer` share: those the seam does not use, and the interrupt flag.
macro_rules! common_platform_items {
    () => {
        platform::fake_platform_unused_items!();

        fn interrupts_disable() -> bool {
            ENABLED.replace(false)
        }

        fn interrupts_restore(enabled: bool) {
            ENABLED.set(enabled);
        }
    };
}

impl Platform for Fake {
    common_platform_items!();

    fn now_ns() -> Option<u64> {
        NOW_CALLS.set(NOW_CALLS.get() + 1);
        Some(NOW.get())
    }

    fn set_timer(deadline_ns: u64) -> bool {
        ARMED.set(Some(deadline_ns));
        true
    }

    fn idle() {
        assert!(!ENABLED.get(), "idle called with interrupts enabled");
        IDLES.set(IDLES.get() + 1);
        let deadline = ARMED
            .take()
            .expect("idle with no timer armed: nothing could wake the executor (deadlock)");
        NOW.set(NOW.get().max(deadline));
        ENABLED.set(true);
    }
}

impl Platform for FakeNoTimer {
    common_platform_items!();

    fn now_ns() -> Option<u64> {
        NOW_CALLS.set(NOW_CALLS.get() + 1);
        NOW.set(NOW.get() + 10_000);
        Some(NOW.get())
    }

    fn set_timer(_deadline_ns: u64) -> bool {
        false
    }

    fn idle() {
        panic!("idle without a timer: nothing could wake the executor (deadlock)");
    }
}
