//! The thread runtime (`scheduler = "coop" | "preempt"`): stacks with guard pages, context
//! switches, blocking and waking (park / unpark), sleeping on the platform timer, the timer
//! tick that preempts ([`Runtime`]), and the blocking `Mutex`, `Condvar`, `Semaphore` and
//! bounded channel built on it ([`sync`]).
//!
//! *Which* thread runs next is the [`Policy`](sched::Policy)'s decision (`sched-coop`,
//! `sched-preempt`); this crate carries it out. It is generic over the two seams below it, as
//! `sched-async` is over the platform:
//!
//! - the platform ([`platform::Platform`]): the clock, the one-shot timer, interrupt masking,
//!   idle;
//! - the [`Machine`]: stacks (frames and their guard pages) and the context switch. The kernel
//!   implements it with `arch_x86_64::context` and its frame allocator; the host tests with a
//!   fake whose threads are host threads that hand a baton to each other (one runs at a time).
//!
//! The kernel names the concrete types once (a zero-sized type implementing [`Machine`], whose
//! [`Machine::runtime`] returns its one `static` [`Runtime`]) and forwards to it.
//!
//! ```text
//! struct Kernel;
//! static THREADS: Runtime<Kernel> = Runtime::new();
//! unsafe impl Machine for Kernel {
//!     type Platform = MyPlatform;
//!     type Policy = sched_coop::Coop;
//!     fn runtime() -> &'static Runtime<Self> { &THREADS }
//!     // stacks, guard pages, prepare_stack, switch ...
//! }
//! THREADS.init(10_000_000);
//! let (task, id, _name) = THREADS.spawn(None, 16 * 1024, Box::new(|| {}))?;
//! THREADS.wait_exit(task, id);
//! ```
//!
//! # Host tests
//! `cargo test -p sched-threads`: `tests/runtime.rs` (spawn, join, yield order, sleep, a
//! preempting tick, tokens, deadlock report, stacks and guard pages given back, canary) and
//! `tests/interleavings.rs`, an exhaustive explorer: a scenario runs once for every step (or
//! pair of steps) at which a racing event lands (another CPU's operation, a timer interrupt),
//! with its invariants checked each time (no lost wake-up, woken once, mutual exclusion).
//! The fake machine and platform are in `tests/common`. `tests/cpus.rs` runs the runtime on 4
//! CPUs at once (each a host thread running whichever context holds its baton, contexts
//! migrating as the runtime decides): a mutex count, a channel, sleepers and park/unpark under
//! `coop` and `preempt`, checking that no context holds two CPUs and that nothing is lost.
//! `tests/explore_cpus.rs` explores exhaustively (up to a preemption bound of 2 or 3) every
//! schedule of 2 (and 3) simulated CPUs, one running at a time and switched at each platform
//! call or context switch: park/unpark, migration while the last CPU still saves the thread, a
//! wake-up racing a CPU going idle, `WaitQueue`, `Semaphore`, `Mutex`, preemption, sleepers
//! and bound threads, checking for lost wake-ups and a context on two CPUs (a failure prints
//! its schedule, to replay with `EXPLORE_SCHEDULE`).
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod runtime;
pub mod sync;

pub use runtime::{MAX_CPUS, MIN_STACK, Runtime, ShortName, SpawnError, Stats, WaitQueue};
pub use sched::TaskId;

use heap::Frames;

/// What the runtime needs from the machine below the platform: memory for stacks, guard pages
/// and the context switch, plus the one [`Runtime`] instance.
///
/// # Safety
/// Implementors promise:
/// - [`Machine::alloc_stack`] returns frames that are RAM, mapped read-write, owned by the
///   caller until given back with [`Machine::free_stack`];
/// - [`Machine::guard_page`] makes its page inaccessible only when it returns `true`, and
///   [`Machine::unguard_page`] makes it read-write again;
/// - [`Machine::prepare_stack`] and [`Machine::switch`] behave as `arch_x86_64::context`'s
///   functions of the same names: a switch saves the running context's stack pointer in
///   `*from_sp` and resumes `to_sp`'s context, and returns when some later switch resumes
///   `*from_sp`; a prepared context runs `entry(arg)` on its first resumption.
pub unsafe trait Machine: Sized + 'static {
    /// The platform seam: clock, one-shot timer, interrupt masking, idle.
    type Platform: platform::Platform;
    /// The scheduling policy.
    type Policy: sched::Policy + Send;

    /// The most CPUs the runtime runs threads on (the profile's `cpus`; at most
    /// `runtime::MAX_CPUS`). With 1 (the default) none of the multi-CPU rules is compiled in.
    const CPUS: usize = 1;

    /// Work an idle CPU does before it looks for threads (more than one CPU: each idle context
    /// calls it with its CPU's number, interrupts as they are, whenever it wakes). The default:
    /// none.
    fn idle_work(cpu: usize) {
        let _ = cpu;
    }

    /// The one runtime these types run (the kernel's `static`).
    fn runtime() -> &'static Runtime<Self>;

    /// `pages` contiguous frames for a stack (the lowest becomes its guard page), or `None`.
    fn alloc_stack(pages: usize) -> Option<Frames>;

    /// Gives a stack's frames back.
    ///
    /// # Safety
    /// `frames` came from [`Machine::alloc_stack`], and nothing uses them any more (its guard
    /// page, if any, was mapped again with [`Machine::unguard_page`]).
    unsafe fn free_stack(frames: Frames);

    /// Makes the 4 KiB page at `page` inaccessible (a stack's guard); returns whether it is.
    ///
    /// # Safety
    /// `page` is the lowest frame of a stack from [`Machine::alloc_stack`], and nothing touches
    /// it until [`Machine::unguard_page`].
    unsafe fn guard_page(page: u64) -> bool;

    /// Maps a page [`Machine::guard_page`] made inaccessible again, read-write.
    ///
    /// # Safety
    /// `page` was guarded by [`Machine::guard_page`] (which returned `true`) and not since.
    unsafe fn unguard_page(page: u64);

    /// Prepares a new context on the stack whose top (exclusive, 16-byte aligned) is `top`:
    /// the first switch to the returned stack pointer calls `entry(arg)`, which never returns.
    ///
    /// # Safety
    /// The stack below `top` is writable memory owned by the caller, unused by anything else.
    unsafe fn prepare_stack(top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64;

    /// Saves the running context (its stack pointer into `*from_sp`) and resumes `to_sp`'s.
    ///
    /// # Safety
    /// Interrupts are masked. `to_sp` was saved by a switch (of a context that is not running)
    /// or made by [`Machine::prepare_stack`] (not started yet), and its stack stays valid while
    /// that context lives. `from_sp` stays valid until the switch back.
    unsafe fn switch(from_sp: *mut u64, to_sp: u64);
}
