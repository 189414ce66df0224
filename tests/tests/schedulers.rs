//! Every scheduler, in the guest: the thread schedulers (`coop`, `preempt`) run
//! `apps/threads` (1,000 threads counting under a mutex, producer/consumer over a channel,
//! a semaphore, sleeps, a thread that never yields, a stack overflow), and the async executor
//! runs `apps/asyncprobe` (a timer, a second task, 1,000 tasks under an async mutex, a
//! channel). Sleep lateness is printed, never asserted.

use stardust_tests::{Machine, Run, assert_exit, line_with};

fn threads(
    scheduler: &'static [&'static str],
    mode: &'static [&'static str],
) -> stardust_tests::Boot {
    Run::new("threads").set(scheduler).args(mode).boot()
}

const COOP: &[&str] = &["scheduler=coop"];
const PREEMPT: &[&str] = &["scheduler=preempt"];

fn all_passed(scheduler: &'static [&'static str]) -> stardust_tests::Boot {
    let boot = threads(scheduler, &["all"]);
    assert_exit(&boot, 0);
    line_with(
        &boot,
        &[
            "spawn with a 1 TiB stack: out of memory for a ",
            "-byte thread stack",
        ],
    );
    line_with(&boot, &["mutex count: 10000 (1000 threads"]);
    line_with(&boot, &["channel: 4000 items", "no loss, no duplicates"]);
    line_with(&boot, &["semaphore: at most 3 of 20"]);
    for ms in [
        "slept 1 ms: late by",
        "slept 10 ms: late by",
        "slept 50 ms: late by",
    ] {
        line_with(&boot, &[ms]);
    }
    line_with(&boot, &["sleepers woke in order [1, 2, 3, 4, 5, 6, 7, 8]"]);
    // First in, first out: a LIFO ready queue passes everything above, not this.
    line_with(
        &boot,
        &["order: 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7"],
    );
    line_with(&boot, &["threads: all passed"]);
    boot
}

#[test]
fn coop_threads_count_exchange_and_sleep_exactly() {
    let boot = all_passed(COOP);
    line_with(&boot, &["hog: not preempted (coop, as documented)"]);
}

#[test]
fn preempt_threads_count_exchange_and_sleep_exactly() {
    let boot = all_passed(PREEMPT);
    line_with(&boot, &["hog: preempted"]);
}

#[test]
fn preempt_works_on_microvm_too() {
    let boot = Run::new("threads")
        .set(PREEMPT)
        .machine(Machine::Microvm)
        .args(&["hog"])
        .boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["hog: preempted"]);
}

#[test]
fn a_short_time_slice_preempts_too() {
    let boot = threads(&["scheduler=preempt", "time_slice=1ms"], &["hog"]);
    assert_exit(&boot, 0);
    line_with(&boot, &["hog: preempted"]);
}

#[test]
fn the_longest_time_slice_preempts_too() {
    // 1 s, the largest valid time slice: the hog outlasts it, so it is preempted.
    let boot = threads(&["scheduler=preempt", "time_slice=1s"], &["hog"]);
    assert_exit(&boot, 0);
    line_with(&boot, &["hog: preempted"]);
}

fn overflow(scheduler: &'static [&'static str]) {
    let boot = threads(scheduler, &["overflow"]);
    assert_exit(&boot, 101);
    line_with(
        &boot,
        &[
            "PANIC:",
            "stack overflow in thread 'deep'",
            "16 KiB stack",
            "guard page",
        ],
    );
}

#[test]
fn coop_stack_overflow_is_a_panic_naming_the_thread() {
    overflow(COOP);
}

#[test]
fn preempt_stack_overflow_is_a_panic_naming_the_thread() {
    overflow(PREEMPT);
}

#[test]
fn async_waits_on_timers_tasks_mutex_and_channel() {
    let boot = Run::new("asyncprobe")
        .set(&["scheduler=async"])
        .args(&["all"])
        .boot();
    assert_exit(&boot, 0);
    for ms in [
        "slept 1 ms: late by",
        "slept 10 ms: late by",
        "slept 50 ms: late by",
    ] {
        line_with(&boot, &[ms]);
    }
    line_with(&boot, &["mutex count: 10000"]);
    line_with(&boot, &["channel: 4000 items", "no loss, no duplicates"]);
    line_with(&boot, &["asyncprobe: all passed"]);
}
