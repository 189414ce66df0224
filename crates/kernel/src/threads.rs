//! Glue: the thread runtime (`scheduler = "coop" | "preempt"`, crate `sched-threads`) on this
//! kernel's machine. [`Kernel`] names the concrete types (the selected platform and policy,
//! `arch_x86_64::context`, stacks from the heap's frames, guard pages through the platform)
//! and owns the one [`Runtime`]; the functions below forward to it for the facade and `boot.rs`.

use crate::select::{HEAP, SelectedPlatform, SelectedPolicy};
use alloc::boxed::Box;
use alloc::string::String;
use arch_x86_64::context;
use heap::{FrameAllocator, Frames};
use sched::Policy;
pub use sched_threads::{MIN_STACK, ShortName, SpawnError, Stats, TaskId, WaitQueue};
use sched_threads::{Machine, Runtime};

/// The selected policy's slot value.
pub const POLICY: &str = SelectedPolicy::NAME;

/// This kernel's machine: the thread runtime's types and services.
#[derive(Debug)]
pub struct Kernel;

/// The one thread runtime.
static RUNTIME: Runtime<Kernel> = Runtime::new();

// SAFETY: stacks are frames of the kernel's heap (RAM mapped read-write, owned until given
// back); guard pages go through the platform's `unmap_page`/`remap_page`, which report
// whether the page is unmapped; `prepare_stack` and `switch` are `arch_x86_64::context`'s.
unsafe impl Machine for Kernel {
    type Platform = SelectedPlatform;
    type Policy = SelectedPolicy;
    const CPUS: usize = crate::config::CPUS;

    fn idle_work(cpu: usize) {
        crate::smp::run_job(cpu);
    }

    fn runtime() -> &'static Runtime<Self> {
        &RUNTIME
    }

    fn alloc_stack(pages: usize) -> Option<Frames> {
        HEAP.alloc_frames(pages)
    }

    unsafe fn free_stack(frames: Frames) {
        // SAFETY: forwarded to the caller: the frames came from `alloc_stack`, unused now.
        unsafe { HEAP.free_frames(frames) }
    }

    unsafe fn guard_page(page: u64) -> bool {
        // SAFETY: forwarded to the caller: the lowest frame of a stack it owns.
        unsafe { crate::guard::guard_page(page) }
    }

    unsafe fn unguard_page(page: u64) {
        // SAFETY: forwarded to the caller: a page `guard_page` unmapped.
        unsafe { crate::guard::unguard_page(page) }
    }

    unsafe fn prepare_stack(top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
        // SAFETY: forwarded to the caller: the stack below `top` is its own.
        unsafe { context::prepare_stack(top, entry, arg) }
    }

    unsafe fn switch(from_sp: *mut u64, to_sp: u64) {
        // SAFETY: forwarded to the caller (interrupts masked, both contexts valid).
        unsafe { context::switch(from_sp, to_sp) }
    }
}

/// Starts the runtime: the boot code becomes thread 0, `main` (see [`Runtime::init`]).
pub fn init(time_slice_ns: u64) {
    RUNTIME.init(time_slice_ns)
}

/// Makes the calling CPU (not the boot CPU) run threads (see [`Runtime::run_cpu`]).
pub fn run_cpu() -> ! {
    RUNTIME.run_cpu()
}

/// See [`Runtime::spawn`].
pub fn spawn(
    name: Option<String>,
    stack_size: usize,
    entry: Box<dyn FnOnce() + Send>,
) -> Result<(TaskId, u64, String), SpawnError> {
    RUNTIME.spawn(name, stack_size, entry)
}

/// See [`Runtime::spawn_on`].
pub fn spawn_on(
    cpu: usize,
    name: Option<String>,
    stack_size: usize,
    entry: Box<dyn FnOnce() + Send>,
) -> Result<(TaskId, u64, String), SpawnError> {
    RUNTIME.spawn_on(cpu, name, stack_size, entry)
}

/// See [`Runtime::wait_exit`].
pub fn wait_exit(thread: TaskId, id: u64) {
    RUNTIME.wait_exit(thread, id)
}

/// See [`Runtime::current_info`].
pub fn current_info() -> (u64, String) {
    RUNTIME.current_info()
}

/// See [`Runtime::current_guard_page`].
pub fn current_guard_page() -> Option<u64> {
    RUNTIME.current_guard_page()
}

/// See [`Runtime::yield_now`].
pub fn yield_now() {
    RUNTIME.yield_now()
}

/// See [`Runtime::sleep_until`].
pub fn sleep_until(deadline_ns: u64) {
    RUNTIME.sleep_until(deadline_ns)
}

/// See [`Runtime::timer_tick`] (the platform's timer interrupt).
pub fn timer_tick() {
    RUNTIME.timer_tick()
}

/// See [`Runtime::stats`].
pub fn stats() -> Stats {
    RUNTIME.stats()
}

/// See [`Runtime::guard_owner`] (the exception report).
pub fn guard_owner(addr: u64) -> Option<(ShortName, u64, usize)> {
    RUNTIME.guard_owner(addr)
}

/// See [`Runtime::expect_device_wakeups`] (a device interrupt was registered).
pub fn expect_device_wakeups() {
    RUNTIME.expect_device_wakeups()
}

/// See [`Runtime::dump`] (an NMI's report).
pub fn dump(w: &mut dyn core::fmt::Write) -> core::fmt::Result {
    RUNTIME.dump(w)
}
