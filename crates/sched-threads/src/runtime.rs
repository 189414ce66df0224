//! The runtime proper: stacks with guard pages, context switches, blocking and waking (park /
//! unpark), sleeping on the platform timer, and the timer tick that preempts. *Which* thread
//! runs next is the [`sched::Policy`]'s decision; this module only carries it out.
//!
//! State is per CPU (`Cpu`; one for now) behind a real lock, always taken with interrupts
//! masked. A switch is decided under the lock, the lock is released, and the switch runs with
//! interrupts still masked: on one CPU nothing can run in between. (With more CPUs a thread
//! that is switched away from must not be picked elsewhere before its registers are saved: the
//! multi-core issue adds an "on CPU" flag that the picker waits on.)
//!
//! Blocking uses a wake token, like `std::thread::park`: [`Runtime::unpark`] on a thread that is not
//! blocked sets the token and the next [`Runtime::park`] returns at once, so a wake-up that comes
//! between a check and the park is never lost. Every primitive re-checks its condition in a
//! loop, so a stale token only costs one spurious return.

use crate::Machine;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use heap::{FRAME_SIZE, Frames};
use platform::Platform;
use sched::{Policy, TaskId, TimerKey, Timers};

/// The smallest stack a thread may ask for (the rest of the request is rounded up to pages).
pub const MIN_STACK: usize = 2 * FRAME_SIZE;
/// Written at the lowest word above the guard page; checked at every switch away from the
/// thread (catches an overflow where the platform cannot unmap a guard page).
const CANARY: u64 = 0x5354_4152_4455_5354;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Ready,
    Blocked,
    Exited,
}

struct Stack {
    frames: Frames,
    guarded: bool,
}

impl Stack {
    fn guard(&self) -> u64 {
        self.frames.addr() as u64
    }
    fn canary(&self) -> *mut u64 {
        (self.frames.addr() + FRAME_SIZE) as *mut u64
    }
}

struct Thread {
    id: u64,
    name: String,
    state: State,
    sp: u64,
    token: bool,
    stack: Option<Stack>,
    entry: Option<Box<dyn FnOnce() + Send>>,
    timer: Option<TimerKey>,
    waiters: Vec<TaskId>,
}

struct Cpu<Pol> {
    threads: Vec<Option<Box<Thread>>>,
    free: Vec<usize>,
    current: TaskId,
    policy: Pol,
    timers: Timers,
    picked_at: u64,
    dead: Vec<TaskId>,
    switches: u64,
    preemptions: u64,
    live: usize,
    /// The deadline the platform timer is armed for (`None`: not armed, or it fired).
    armed: Option<u64>,
}

/// CPUs with scheduler state (one until the multi-core issue brings the others up).
const MAX_CPUS: usize = 1;

/// The thread runtime: each CPU's scheduler state (its own ready set, timers and current
/// thread, behind its own lock, always taken with interrupts masked) and the thread ids.
///
/// One instance per image, a `static` that [`Machine::runtime`] returns (a new thread finds
/// it there).
pub struct Runtime<M: Machine> {
    cpus: [spin::Mutex<Option<Cpu<M::Policy>>>; MAX_CPUS],
    next_id: AtomicU64,
    /// Whether something besides the timer can make a thread ready (a device interrupt's
    /// handler waking a waiter): then every thread blocked without a timer is waiting for it,
    /// not a deadlock ([`Runtime::expect_device_wakeups`]).
    device_wakeups: AtomicBool,
    _machine: PhantomData<fn() -> M>,
}

impl<M: Machine> core::fmt::Debug for Runtime<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Runtime")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl<M: Machine> Default for Runtime<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Pol: Policy> Cpu<Pol> {
    fn thread(&mut self, t: TaskId) -> &mut Thread {
        self.threads[t.0].as_mut().expect("a live thread id")
    }

    /// Makes a blocked thread ready, or leaves a wake token for one that is not blocked.
    fn wake(&mut self, t: TaskId) {
        let Some(Some(thread)) = self.threads.get_mut(t.0) else {
            return;
        };
        match thread.state {
            State::Blocked => {
                thread.state = State::Ready;
                if let Some(key) = thread.timer.take() {
                    self.timers.cancel(key);
                }
                self.policy.enqueue(t);
            }
            State::Running | State::Ready => thread.token = true,
            State::Exited => {}
        }
    }

    fn expire_timers(&mut self, now: u64) {
        while let Some(t) = self.timers.pop_expired(now) {
            if let Some(Some(thread)) = self.threads.get_mut(t.0) {
                thread.timer = None;
            }
            self.wake(t);
        }
    }

    /// Arms the platform timer for the next deadline: the earliest sleeper, or the end of the
    /// running thread's slice when the policy wants a tick. A timer already armed for an
    /// earlier deadline is left alone (programming it costs more than an early tick, which
    /// only re-arms). Returns whether a timer is armed.
    fn arm<P: Platform>(&mut self) -> bool {
        // A slice runs only while its thread does: a blocked current thread (the CPU idling
        // on its stack) has no slice end, or a stale one would fire the timer at once.
        let running = matches!(
            self.threads.get(self.current.0),
            Some(Some(t)) if t.state == State::Running
        );
        let slice_end = self
            .policy
            .slice_ns()
            .filter(|_| running)
            .map(|s| self.picked_at.saturating_add(s));
        let deadline = match (self.timers.next_deadline(), slice_end) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(d) => d,
                None => return self.armed.is_some(),
            },
        };
        // An armed deadline already past is treated as fired (its tick may be on its way).
        if self
            .armed
            .is_some_and(|armed| armed <= deadline && armed > now::<P>())
        {
            return true;
        }
        let armed = P::set_timer(deadline);
        self.armed = armed.then_some(deadline);
        armed
    }

    /// Frees the stacks of exited threads other than the running one.
    fn reap<M: Machine>(&mut self) {
        let current = self.current;
        let mut i = 0;
        while i < self.dead.len() {
            let t = self.dead[i];
            if t == current {
                i += 1;
                continue;
            }
            self.dead.swap_remove(i);
            if let Some(thread) = self.threads[t.0].take() {
                free_stack::<M>(thread.stack);
                self.free.push(t.0);
            }
        }
    }
}

fn now<P: Platform>() -> u64 {
    P::now_ns().unwrap_or(0)
}

fn free_stack<M: Machine>(stack: Option<Stack>) {
    let Some(stack) = stack else { return };
    if stack.guarded {
        // SAFETY: the guard page was guarded by `spawn` when the stack was made, and the
        // thread has exited and is not running: nothing uses the stack any more.
        unsafe { M::unguard_page(stack.guard()) };
    }
    // SAFETY: the frames came from `M::alloc_stack` in `spawn` and nothing uses them any more.
    unsafe { M::free_stack(stack.frames) };
}

fn check_canary(thread: &Thread) {
    if let Some(stack) = &thread.stack {
        // SAFETY: the canary word lies inside the thread's stack allocation (the page above
        // the guard), which is mapped and lives as long as the thread.
        if unsafe { stack.canary().read_volatile() } != CANARY {
            panic!(
                "stack overflow in thread '{}' (id {}): its {} KiB stack ran over its lowest word",
                thread.name,
                thread.id,
                (stack.frames.len() - FRAME_SIZE) >> 10
            );
        }
    }
}

/// Why a thread could not be spawned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// No memory for the stack.
    OutOfMemory {
        /// The stack bytes asked for (guard page included).
        bytes: usize,
    },
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::OutOfMemory { bytes } => {
                write!(f, "out of memory for a {bytes}-byte thread stack")
            }
        }
    }
}

impl<M: Machine> Runtime<M> {
    /// A runtime not started yet ([`Runtime::init`] starts it).
    pub const fn new() -> Self {
        Runtime {
            cpus: [const { spin::Mutex::new(None) }; MAX_CPUS],
            next_id: AtomicU64::new(1),
            device_wakeups: AtomicBool::new(false),
            _machine: PhantomData,
        }
    }

    /// This CPU's scheduler state. (With one CPU the index is 0; the multi-core issue reads it
    /// from a per-CPU register such as `gs` or the APIC id.)
    fn this_cpu(&self) -> &spin::Mutex<Option<Cpu<M::Policy>>> {
        &self.cpus[0]
    }

    /// Says that device interrupts may wake threads from now on (a driver registered its
    /// interrupt, whose handler wakes a waiter): with every thread blocked and no timer
    /// pending, the CPU then idles until an interrupt instead of reporting a deadlock.
    pub fn expect_device_wakeups(&self) {
        self.device_wakeups.store(true, Ordering::Relaxed);
    }

    /// Starts the runtime: the running (boot) code becomes thread 0, `main`, on the boot
    /// stack. Then interrupts are enabled (the timer's tick and wake-ups).
    pub fn init(&self, time_slice_ns: u64) {
        let main = Box::new(Thread {
            id: 0,
            name: String::from("main"),
            state: State::Running,
            sp: 0,
            token: false,
            stack: None,
            entry: None,
            timer: None,
            waiters: Vec::new(),
        });
        let threads = alloc::vec![Some(main)];
        *self.this_cpu().lock() = Some(Cpu {
            threads,
            free: Vec::new(),
            current: TaskId(0),
            policy: M::Policy::new(time_slice_ns),
            timers: Timers::new(),
            picked_at: now::<M::Platform>(),
            dead: Vec::new(),
            switches: 0,
            preemptions: 0,
            live: 1,
            armed: None,
        });
        M::Platform::interrupts_restore(true);
    }

    /// Runs `f` with interrupts masked and the CPU's scheduler state locked.
    fn with_cpu<R>(&self, f: impl FnOnce(&mut Cpu<M::Policy>) -> R) -> R {
        let irq = M::Platform::interrupts_disable();
        let r = {
            let mut guard = self.this_cpu().lock();
            f(guard.as_mut().expect("Runtime::init ran"))
        };
        M::Platform::interrupts_restore(irq);
        r
    }

    /// Switches to the next ready thread. The current thread's state is already set (Ready
    /// and enqueued for a yield or a preemption; Blocked; Exited). With nothing ready, idles
    /// on the current stack until an interrupt makes a thread ready. Called with interrupts
    /// masked; returns (masked) when the current thread runs again.
    fn switch_away<'a>(&'a self, mut guard: spin::MutexGuard<'a, Option<Cpu<M::Policy>>>) {
        loop {
            let cpu = guard.as_mut().expect("Runtime::init ran");
            cpu.reap::<M>();
            let now = now::<M::Platform>();
            cpu.expire_timers(now);
            if let Some(next) = cpu.policy.pick() {
                let prev = cpu.current;
                cpu.picked_at = now;
                cpu.thread(next).state = State::Running;
                cpu.current = next;
                cpu.arm::<M::Platform>();
                if next == prev {
                    return;
                }
                cpu.switches += 1;
                let to_sp = cpu.thread(next).sp;
                let from = cpu.thread(prev);
                check_canary(from);
                let from_sp: *mut u64 = &mut from.sp;
                drop(guard);
                // SAFETY: interrupts are masked (the caller's contract); `to_sp` was saved by a
                // switch away from `next` or made by `prepare_stack`, and `next`'s stack lives
                // until it exits and is reaped by another thread. `from_sp` points into
                // `prev`'s boxed thread, which is only freed after `prev` exits and another
                // thread runs.
                unsafe { M::switch(from_sp, to_sp) };
                return;
            }
            if !cpu.arm::<M::Platform>()
                && cpu.timers.is_empty()
                && cpu.thread(cpu.current).state != State::Ready
                && !self.device_wakeups.load(Ordering::Relaxed)
            {
                let (live, name) = (cpu.live, ShortName::of(&cpu.thread(cpu.current).name));
                drop(guard);
                panic!(
                    "deadlock: all {live} threads are blocked and no timer is pending (the last \
                     to block was '{name}')"
                );
            }
            drop(guard);
            // Returns with interrupts enabled after the timer (or another interrupt) fired.
            M::Platform::idle();
            M::Platform::interrupts_disable();
            guard = self.this_cpu().lock();
        }
    }

    /// Spawns a thread running `entry` with a stack of at least `stack_size` bytes (plus a
    /// guard page below it), named `name` or `thread-<id>`. Returns its runtime id, its unique
    /// thread id and its name.
    pub fn spawn(
        &self,
        name: Option<String>,
        stack_size: usize,
        entry: Box<dyn FnOnce() + Send>,
    ) -> Result<(TaskId, u64, String), SpawnError> {
        let pages = stack_size.max(MIN_STACK).div_ceil(FRAME_SIZE) + 1;
        let frames = M::alloc_stack(pages).ok_or(SpawnError::OutOfMemory {
            bytes: pages * FRAME_SIZE,
        })?;
        let base = frames.addr() as u64;
        // SAFETY: the lowest frame of a stack just allocated: this code owns it and never
        // touches it until `free_stack` maps it again.
        let guarded = unsafe { M::guard_page(base) };
        let stack = Stack { frames, guarded };
        // SAFETY: the canary word is inside the new stack, mapped (above the guard page).
        unsafe { stack.canary().write_volatile(CANARY) };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = name.unwrap_or_else(|| alloc::format!("thread-{id}"));
        let given = name.clone();
        let top = base + (pages * FRAME_SIZE) as u64;
        let task = self.with_cpu(|cpu| {
            let index = cpu.free.pop().unwrap_or_else(|| {
                cpu.threads.push(None);
                cpu.threads.len() - 1
            });
            let task = TaskId(index);
            // SAFETY: the top of the new stack, owned by this thread-to-be; 16-byte aligned.
            let sp = unsafe { M::prepare_stack(top, thread_start::<M>, index as u64) };
            cpu.threads[index] = Some(Box::new(Thread {
                id,
                name,
                state: State::Ready,
                sp,
                token: false,
                stack: Some(stack),
                entry: Some(entry),
                timer: None,
                waiters: Vec::new(),
            }));
            cpu.live += 1;
            cpu.policy.enqueue(task);
            cpu.arm::<M::Platform>();
            task
        });
        Ok((task, id, given))
    }

    /// Ends the running thread: wakes its joiners and switches away for good.
    fn exit_current(&self) -> ! {
        M::Platform::interrupts_disable();
        let mut guard = self.this_cpu().lock();
        let cpu = guard.as_mut().expect("Runtime::init ran");
        let current = cpu.current;
        let waiters = core::mem::take(&mut cpu.thread(current).waiters);
        cpu.thread(current).state = State::Exited;
        cpu.live -= 1;
        cpu.dead.push(current);
        for t in waiters {
            cpu.wake(t);
        }
        self.switch_away(guard);
        unreachable!("an exited thread was resumed");
    }

    /// Blocks until `thread` has exited (returns at once if it has).
    pub fn wait_exit(&self, thread: TaskId, id: u64) {
        loop {
            let exited = self.with_cpu(|cpu| {
                let current = cpu.current;
                match cpu.threads.get_mut(thread.0) {
                    Some(Some(t)) if t.id == id && t.state != State::Exited => {
                        t.waiters.push(current);
                        false
                    }
                    _ => true,
                }
            });
            if exited {
                return;
            }
            self.park();
        }
    }

    /// The running thread's runtime id.
    pub fn current(&self) -> TaskId {
        self.with_cpu(|cpu| cpu.current)
    }

    /// The running thread's unique id and name.
    pub fn current_info(&self) -> (u64, String) {
        self.with_cpu(|cpu| {
            let current = cpu.current;
            let t = cpu.thread(current);
            (t.id, t.name.clone())
        })
    }

    /// The running thread's guard page (the inaccessible 4 KiB page just below its stack),
    /// where its stack has one; `None` on the boot stack or where the machine could not guard
    /// it.
    pub fn current_guard_page(&self) -> Option<u64> {
        self.with_cpu(|cpu| {
            let t = cpu.thread(cpu.current);
            t.stack.as_ref().filter(|s| s.guarded).map(Stack::guard)
        })
    }

    /// Blocks the running thread until [`Runtime::unpark`] (or returns at once, consuming the
    /// token, if one is pending).
    pub fn park(&self) {
        self.park_until(None);
    }

    /// Like [`Runtime::park`], but also wakes at `deadline_ns` on the platform clock.
    pub fn park_until(&self, deadline_ns: Option<u64>) {
        let irq = M::Platform::interrupts_disable();
        let mut guard = self.this_cpu().lock();
        let cpu = guard.as_mut().expect("Runtime::init ran");
        let current = cpu.current;
        if core::mem::take(&mut cpu.thread(current).token) {
            drop(guard);
            M::Platform::interrupts_restore(irq);
            return;
        }
        if let Some(deadline) = deadline_ns {
            if deadline <= now::<M::Platform>() {
                drop(guard);
                M::Platform::interrupts_restore(irq);
                return;
            }
            let key = cpu.timers.insert(deadline, current);
            cpu.thread(current).timer = Some(key);
        }
        cpu.thread(current).state = State::Blocked;
        self.switch_away(guard);
        M::Platform::interrupts_restore(irq);
    }

    /// Wakes a parked thread (or leaves it a token).
    pub fn unpark(&self, thread: TaskId) {
        self.with_cpu(|cpu| {
            cpu.wake(thread);
            if cpu.policy.slice_ns().is_some() {
                cpu.arm::<M::Platform>();
            }
        });
    }

    /// Gives the CPU to the next ready thread, if any.
    pub fn yield_now(&self) {
        let irq = M::Platform::interrupts_disable();
        let mut guard = self.this_cpu().lock();
        let cpu = guard.as_mut().expect("Runtime::init ran");
        if cpu.policy.ready() == 0 {
            drop(guard);
            M::Platform::interrupts_restore(irq);
            return;
        }
        let current = cpu.current;
        cpu.thread(current).state = State::Ready;
        cpu.policy.enqueue(current);
        self.switch_away(guard);
        M::Platform::interrupts_restore(irq);
    }

    /// Sleeps the running thread until `deadline_ns` on the platform clock.
    pub fn sleep_until(&self, deadline_ns: u64) {
        while now::<M::Platform>() < deadline_ns {
            self.park_until(Some(deadline_ns));
        }
    }

    /// The timer tick: wakes sleepers whose time has come and, if the policy says so, preempts
    /// the running thread. Called from the platform's timer interrupt, interrupts masked.
    pub fn timer_tick(&self) {
        let Some(mut guard) = self.this_cpu().try_lock() else {
            return;
        };
        let Some(cpu) = guard.as_mut() else { return };
        cpu.armed = None;
        let now = now::<M::Platform>();
        cpu.expire_timers(now);
        let current = cpu.current;
        if cpu.thread(current).state == State::Running
            && cpu
                .policy
                .should_preempt(current, now.saturating_sub(cpu.picked_at))
        {
            cpu.preemptions += 1;
            cpu.thread(current).state = State::Ready;
            cpu.policy.enqueue(current);
            self.switch_away(guard);
        } else {
            cpu.arm::<M::Platform>();
        }
    }

    /// The runtime's counters.
    pub fn stats(&self) -> Stats {
        self.with_cpu(|cpu| Stats {
            switches: cpu.switches,
            preemptions: cpu.preemptions,
            live: cpu.live,
        })
    }

    /// Whether some CPU's scheduler state is locked right now (a test's fake machine injects
    /// another CPU's operations only where it is not: that CPU would wait for the lock).
    pub fn is_locked(&self) -> bool {
        self.cpus.iter().any(spin::Mutex::is_locked)
    }

    /// The thread whose guard page holds `addr`, if any: `(name, id, stack bytes)`. Used by
    /// the exception report: never blocks (a CPU whose state is locked is skipped) and never
    /// allocates.
    pub fn guard_owner(&self, addr: u64) -> Option<(ShortName, u64, usize)> {
        self.cpus.iter().find_map(|cpu| {
            let guard = cpu.try_lock()?;
            guard.as_ref()?.threads.iter().flatten().find_map(|t| {
                let stack = t.stack.as_ref()?;
                let page = stack.guard()..stack.guard() + FRAME_SIZE as u64;
                (stack.guarded && page.contains(&addr)).then(|| {
                    (
                        ShortName::of(&t.name),
                        t.id,
                        stack.frames.len() - FRAME_SIZE,
                    )
                })
            })
        })
    }
}

/// Where a new thread starts (through the machine's trampoline), interrupts masked.
extern "C" fn thread_start<M: Machine>(index: u64) -> ! {
    let runtime = M::runtime();
    let entry = {
        let mut guard = runtime.this_cpu().lock();
        let cpu = guard.as_mut().expect("Runtime::init ran");
        cpu.thread(TaskId(index as usize)).entry.take()
    };
    M::Platform::interrupts_restore(true);
    if let Some(entry) = entry {
        entry();
    }
    runtime.exit_current()
}

/// Counters for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Context switches.
    pub switches: u64,
    /// Of which preemptions by the timer.
    pub preemptions: u64,
    /// Threads alive (main included).
    pub live: usize,
}

/// A thread name copied without allocating (the exception path may run with the heap locked).
#[derive(Clone, Copy, Debug)]
pub struct ShortName {
    bytes: [u8; 48],
    len: usize,
}

impl ShortName {
    fn of(name: &str) -> Self {
        let mut bytes = [0; 48];
        let mut len = name.len().min(bytes.len());
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        ShortName { bytes, len }
    }
}

impl core::fmt::Display for ShortName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?"))
    }
}

/// A FIFO of blocked threads: the building block of the synchronization primitives.
pub struct WaitQueue<M> {
    waiters: spin::Mutex<VecDeque<TaskId>>,
    _machine: PhantomData<fn() -> M>,
}

impl<M> core::fmt::Debug for WaitQueue<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitQueue")
            .field("waiters", &self.waiters)
            .finish()
    }
}

impl<M: Machine> Default for WaitQueue<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Machine> WaitQueue<M> {
    /// An empty queue.
    pub const fn new() -> Self {
        WaitQueue {
            waiters: spin::Mutex::new(VecDeque::new()),
            _machine: PhantomData,
        }
    }

    /// If `blocked()` still holds (checked under the queue's lock), queues the running thread
    /// and parks it (until `deadline_ns`, if given). Returns at once otherwise. Callers loop:
    /// a return does not promise the condition changed.
    pub fn wait_if(&self, blocked: impl FnOnce() -> bool, deadline_ns: Option<u64>) {
        let runtime = M::runtime();
        let irq = M::Platform::interrupts_disable();
        let me = runtime.current();
        {
            let mut waiters = self.waiters.lock();
            if !blocked() {
                drop(waiters);
                M::Platform::interrupts_restore(irq);
                return;
            }
            waiters.push_back(me);
        }
        runtime.park_until(deadline_ns);
        // After a timeout, or a return on a stale wake token, the entry may still be queued:
        // take it out, or a later notify would be spent on a thread that is not waiting.
        self.waiters.lock().retain(|&t| t != me);
        M::Platform::interrupts_restore(irq);
    }

    /// Wakes the longest waiter; returns whether there was one.
    pub fn notify_one(&self) -> bool {
        let irq = M::Platform::interrupts_disable();
        let t = self.waiters.lock().pop_front();
        if let Some(t) = t {
            M::runtime().unpark(t);
        }
        M::Platform::interrupts_restore(irq);
        t.is_some()
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let irq = M::Platform::interrupts_disable();
        // The whole queue taken at once (a `drain(..)` into a new `Vec` costs the image 1 KB
        // of `VecDeque::Drain`); the next waiter allocates it again, as `collect` did here.
        let all = core::mem::take(&mut *self.waiters.lock());
        for t in all {
            M::runtime().unpark(t);
        }
        M::Platform::interrupts_restore(irq);
    }

    /// How many threads are queued (for tests and reports; it may change at once).
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    /// Whether no thread is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
