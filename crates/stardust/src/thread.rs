//! Threads (`scheduler = "coop"` or `"preempt"`): spawn with a stack size, join, yield, sleep,
//! the current thread. Like `std::thread`, with two differences: a panic in any thread ends the
//! whole program (the kernel's panic is fatal), so [`JoinHandle::join`] returns the value
//! itself; and every stack has a fixed size with an unmapped guard page below it, so a stack
//! overflow ends in a panic naming the thread, never in silent corruption.
//!
//! ```ignore
//! let worker = stardust::thread::Builder::new()
//!     .name("worker".into())
//!     .stack_size(16 * 1024)
//!     .spawn(|| 6 * 7)?;
//! assert_eq!(worker.join(), 42);
//! ```

use crate::time::Instant;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::time::Duration;
use kernel::sync::Mutex;
use kernel::threads;

pub use kernel::threads::SpawnError;

/// The stack size of threads spawned without [`Builder::stack_size`].
pub const DEFAULT_STACK_SIZE: usize = 32 * 1024;
/// The smallest stack a thread gets (smaller requests are rounded up).
pub const MIN_STACK_SIZE: usize = threads::MIN_STACK;

/// A thread's unique id (never reused; `main` is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(u64);

impl ThreadId {
    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// A handle to a thread: its id and name.
#[derive(Clone, Debug)]
pub struct Thread {
    id: ThreadId,
    name: String,
}

impl Thread {
    /// The thread's id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// The thread's name (`main`, the name given to [`Builder::name`], or `thread-<id>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The running thread.
pub fn current() -> Thread {
    let (id, name) = threads::current_info();
    Thread {
        id: ThreadId(id),
        name,
    }
}

/// The address of the running thread's guard page: the 4 KiB page just below its stack, left
/// unmapped so that an overflow faults there. `None` on `main`'s boot stack, or where the platform
/// could not unmap it (the stack's canary still catches an overflow at the next switch).
pub fn guard_page() -> Option<u64> {
    threads::current_guard_page()
}

/// Thread options: name, stack size, and the CPU it runs on.
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    cpu: Option<usize>,
}

impl Builder {
    /// Default options: [`DEFAULT_STACK_SIZE`], named `thread-<id>`.
    pub fn new() -> Self {
        Builder::default()
    }

    /// Names the thread (in panics, stack-overflow reports and [`Thread::name`]).
    pub fn name(mut self, name: String) -> Self {
        self.name = Some(name);
        self
    }

    /// The stack size in bytes (rounded up to whole pages; at least [`MIN_STACK_SIZE`]).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Binds the thread to CPU `cpu` (0 to [`crate::cpus`] - 1): it runs there only, before
    /// the threads free to run anywhere. Without it the thread runs on whichever CPU is free.
    pub fn cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// Spawns the thread; fails when there is no memory for its stack, or when it is bound to
    /// a CPU that does not run threads.
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let packet: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let result = packet.clone();
        let entry = Box::new(move || {
            let value = f();
            *result.lock() = Some(value);
        });
        let stack = self.stack_size.unwrap_or(DEFAULT_STACK_SIZE);
        let (task, id, name) = match self.cpu {
            Some(cpu) => threads::spawn_on(cpu, self.name, stack, entry)?,
            None => threads::spawn(self.name, stack, entry)?,
        };
        Ok(JoinHandle {
            task,
            thread: Thread {
                id: ThreadId(id),
                name,
            },
            packet,
        })
    }
}

/// Spawns a thread with the default options. Panics when there is no memory for its stack
/// (use [`Builder::spawn`] to handle that).
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(handle) => handle,
        Err(e) => panic!("thread::spawn: {e}"),
    }
}

/// Owns a spawned thread's result. Dropping it detaches the thread (its stack is freed when
/// it ends either way).
#[derive(Debug)]
pub struct JoinHandle<T> {
    task: threads::TaskId,
    thread: Thread,
    packet: Arc<Mutex<Option<T>>>,
}

impl<T> JoinHandle<T> {
    /// Waits for the thread to end and returns what it returned.
    pub fn join(self) -> T {
        threads::wait_exit(self.task, self.thread.id.0);
        self.packet
            .lock()
            .take()
            .expect("a thread that ended has stored its result")
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.packet.lock().is_some()
    }

    /// The thread.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }
}

/// Lets the next ready thread run (returns at once when none is ready).
pub fn yield_now() {
    threads::yield_now()
}

/// Sleeps at least `duration` (the CPU idles when no other thread is ready).
pub fn sleep(duration: Duration) {
    sleep_until(Instant::now() + duration)
}

/// Sleeps until `deadline`.
pub fn sleep_until(deadline: Instant) {
    threads::sleep_until(deadline.as_nanos())
}

/// The scheduler's slot value: `coop` or `preempt`.
pub fn scheduler_name() -> &'static str {
    threads::POLICY
}

/// Scheduler counters: context switches, preemptions and live threads.
pub fn stats() -> threads::Stats {
    threads::stats()
}
