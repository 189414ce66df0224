//! The async executor: `scheduler = "async"`. Tasks are [`Future`]s, each polled when something
//! woke it, by one CPU at a time: `block_on`'s CPU and every CPU that runs
//! [`Executor::run_worker`] take them from one ready queue (a task woken while another CPU polls
//! it is polled again once that poll ends; `block_on`'s own future is polled only on its CPU;
//! an idle CPU is interrupted with `Platform::send_ipi` when work is queued); a timer queue inside the executor serves
//! [`Executor::sleep`], [`Executor::sleep_until`] and [`Executor::timeout`]; [`sync`] has the
//! async `Mutex`, `Semaphore` and bounded `channel` tasks coordinate with.
//!
//! ```
//! # use platform::{BootInfo, DeviceMemory, FreeMemory};
//! # struct MyPlatform;
//! # impl platform::Platform for MyPlatform {
//! #     type BootError = &'static str;
//! #     type MapError = &'static str;
//! #     fn boot_info(_: u64) -> Result<BootInfo, &'static str> { Err("no") }
//! #     fn init(_: &BootInfo) -> DeviceMemory { DeviceMemory::new() }
//! #     fn init_cpu() {}
//! #     fn map_memory(_: &BootInfo, _: &mut FreeMemory, _: &DeviceMemory) -> Result<u64, &'static str> { Err("no") }
//! #     fn exit(_: u8) -> ! { panic!() }
//! #     fn tsc_frequency() -> Option<u64> { None }
//! #     fn now_ns() -> Option<u64> { None }
//! #     fn set_timer(_: u64) -> bool { false }
//! #     fn interrupts_disable() -> bool { false }
//! #     fn interrupts_restore(_: bool) {}
//! #     fn idle() {}
//! #     fn wall_clock_ns() -> Option<u64> { None }
//! #     unsafe fn unmap_page(_: u64, _: &mut dyn FnMut() -> Option<u64>) -> bool { false }
//! #     unsafe fn remap_page(_: u64) {}
//! # }
//! use sched_async::{Executor, yield_now};
//!
//! static EXECUTOR: Executor<MyPlatform> = Executor::new();
//!
//! let answer = EXECUTOR.block_on(async {
//!     let task = EXECUTOR.spawn(async { 6 * 7 });
//!     yield_now().await;
//!     task.await
//! });
//! assert_eq!(answer, 42);
//! ```
//!
//! # Design
//!
//! - **Tasks** are boxed futures in a slab inside the executor, named by an id (slot index and
//!   generation). The executor owns them; nothing else ever touches a future.
//! - **Wakers** are [`alloc::task::Wake`] on an `Arc` that holds only the task id, a `queued`
//!   flag and the `&'static` executor. Waking pushes the task onto the ready queue unless it is
//!   queued already; the ready queue is a `spin::Mutex<VecDeque>` taken with interrupts masked
//!   through `P`, so a waker may run in an interrupt handler. The executor clears `queued`
//!   before polling, so a wake during the poll queues the task again (no lost wakeup); a wake
//!   of a finished task finds a stale id and is ignored (no task is polled after it
//!   completed).
//! - **Scheduling** is FIFO, in rounds: a round polls the tasks that were ready when it
//!   began, then fires expired timers (reading the clock only when there are timers), so a
//!   task that keeps yielding cannot starve sleepers.
//! - **No busy polling.** When nothing is ready the executor masks interrupts, checks the ready
//!   queue once more, arms the platform's one-shot timer for the earliest deadline
//!   ([`Platform::set_timer`]) and calls [`Platform::idle`], which enables interrupts and waits
//!   atomically. Without any timer pending it idles until any interrupt (a deadlocked program
//!   idles for ever). Only where the platform has no timer (`set_timer` returns `false`) does it
//!   poll the clock, spinning, as the platform contract prescribes.
//! - **The timer queue** is a `BTreeMap<(deadline, seq), Waker>` inside the executor; the
//!   [`Sleep`] future holds the `&'static Executor<P>` it registers with (so sleeping is a
//!   method: `EXECUTOR.sleep(ns)`; the kernel's facade turns it into a free function over its
//!   one static executor). A `Sleep` that is dropped early takes its entry out, so a
//!   [`Executor::timeout`] whose future won leaves no stale timer behind.
//! - **`Send` futures.** [`Executor::spawn`] requires `F: Send` and `F::Output: Send`: the
//!   executor is a `static`, so it must be `Sync`, and with `Send` futures it is, without any
//!   `unsafe` (the crate has none). [`Executor::block_on`]'s own future needs no `Send`: it
//!   stays on the caller's stack.
//! - **`block_on` returns as soon as its future completes.** Spawned tasks still pending are
//!   neither polled nor dropped then: they stay in the executor and go on at the next
//!   `block_on`. `block_on` must not be nested (it panics).
//! - **Sync primitives** are written here, not taken from `embassy-sync`; see [`sync`] for
//!   why.
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod executor;
mod join;
pub mod sync;
mod time;

pub use executor::{Executor, ExecutorStats};
pub use join::JoinHandle;
pub use time::{Elapsed, Sleep};

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

/// Gives the other ready tasks a turn: returns `Pending` once (waking itself at once), so the
/// task is polled again after every task that was ready before it.
pub async fn yield_now() {
    YieldNow { yielded: false }.await
}

/// The future behind [`yield_now`].
#[derive(Debug)]
struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
