//! The runtime proper: stacks with guard pages, context switches, blocking and waking (park /
//! unpark), sleeping on the platform timer, and the timer tick that preempts. *Which* thread
//! runs next is the [`sched::Policy`]'s decision; this module only carries it out.
//!
//! State is one `Sched` (the threads, the policy's ready set, the timers, and per CPU its
//! current thread, slice start and armed timer) behind one lock, always taken with interrupts
//! masked. A switch is decided under the lock, the lock is released, and the switch runs with
//! interrupts still masked.
//!
//! With more than one CPU ([`Machine::CPUS`]), every CPU picks from the one ready set (a thread
//! runs wherever a CPU is free: migration is the normal case, and an idle CPU is woken by an
//! IPI when a thread becomes ready), and two more rules hold:
//! - A thread switched away from may be picked by another CPU before its registers are saved.
//!   Its saved stack pointer doubles as the flag: it is zeroed under the lock before the switch,
//!   and the switch writes it last, once everything else is saved; a CPU that picked the thread
//!   waits until it is not zero.
//! - A CPU never idles on the stack of a blocked thread (another CPU may wake and run it):
//!   each CPU has an idle context of its own (the boot CPU a small thread, the others the stack
//!   they started on) that waits for work, and a CPU with nothing to run switches to it.
//!
//! One lock for all CPUs rather than run queues per CPU with stealing: with the up to 8 CPUs of
//! `percpu::MAX_CPUS` and critical sections of a few hundred instructions, it balances load at
//! once and keeps the policies (`sched-coop`, `sched-preempt`) as they are; `cargo xtask bench
//! smp` measures what it costs.
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

/// Tries of the scheduler's lock with the spin-loop hint before a contended CPU yields to the
/// hypervisor between tries ([`Runtime::lock_sched`]).
const SPINS_BEFORE_YIELD: u32 = 1000;

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
    /// A CPU's idle context (more than one CPU): never in the ready set, picked only by its CPU.
    Idle,
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
    /// The saved stack pointer; with more than one CPU, 0 while the thread's registers are
    /// being saved (see the module docs).
    sp: AtomicU64,
    token: bool,
    stack: Option<Stack>,
    entry: Option<Box<dyn FnOnce() + Send>>,
    timer: Option<TimerKey>,
    waiters: Vec<TaskId>,
    /// The one CPU it may run on (more than one CPU; `None`: any).
    cpu: Option<usize>,
}

/// What each CPU keeps in the scheduler's state.
#[derive(Clone, Copy)]
struct OnCpu {
    /// The thread it runs (its idle context when it has nothing to run).
    current: TaskId,
    /// When `current` was picked.
    picked_at: u64,
    /// The deadline its platform timer is armed for (`None`: not armed, or it fired).
    armed: Option<u64>,
    /// Its idle context (more than one CPU only; `None` before it joined).
    idle_task: Option<TaskId>,
    /// Whether it is halted in its idle context, waiting for an interrupt.
    idle: bool,
}

struct Sched<Pol> {
    threads: Vec<Option<Box<Thread>>>,
    free: Vec<usize>,
    policy: Pol,
    timers: Timers,
    dead: Vec<TaskId>,
    switches: u64,
    preemptions: u64,
    live: usize,
    cpu: [OnCpu; MAX_CPUS],
    /// Per CPU, the ready threads bound to it (first in, first out), picked before the
    /// policy's.
    bound: [VecDeque<TaskId>; MAX_CPUS],
}

/// The most CPUs the runtime schedules on (`arch_x86_64::percpu::MAX_CPUS`).
pub const MAX_CPUS: usize = 8;

/// The thread runtime: each CPU's scheduler state (its own ready set, timers and current
/// thread, behind its own lock, always taken with interrupts masked) and the thread ids.
///
/// One instance per image, a `static` that [`Machine::runtime`] returns (a new thread finds
/// it there).
pub struct Runtime<M: Machine> {
    sched: spin::Mutex<Option<Sched<M::Policy>>>,
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

impl<Pol: Policy> Sched<Pol> {
    fn thread(&mut self, t: TaskId) -> &mut Thread {
        self.threads[t.0].as_mut().expect("a live thread id")
    }

    /// Makes a blocked thread ready, or leaves a wake token for one that is not blocked.
    /// Returns whether it became ready.
    fn wake(&mut self, t: TaskId, multi: bool) -> bool {
        let Some(Some(thread)) = self.threads.get_mut(t.0) else {
            return false;
        };
        match thread.state {
            State::Blocked => {
                thread.state = State::Ready;
                if let Some(key) = thread.timer.take() {
                    self.timers.cancel(key);
                }
                self.make_ready(t, multi);
                true
            }
            State::Running | State::Ready => {
                thread.token = true;
                false
            }
            State::Exited | State::Idle => false,
        }
    }

    /// Hands ready thread `t` to the policy, or to its CPU's queue when it is bound to one
    /// (more than one CPU).
    /// (`multi`: more than one CPU, else the bound queues are not looked at.)
    fn make_ready(&mut self, t: TaskId, multi: bool) {
        let bound = self
            .threads
            .get(t.0)
            .and_then(|t| t.as_ref())
            .and_then(|t| t.cpu);
        match bound {
            Some(c) if multi && c < MAX_CPUS => self.bound[c].push_back(t),
            _ => self.policy.enqueue(t),
        }
    }

    /// The next thread for CPU `c`: one bound to it first, else the policy's pick.
    fn pick(&mut self, c: usize, multi: bool) -> Option<TaskId> {
        if multi && let Some(t) = self.bound[c].pop_front() {
            return Some(t);
        }
        self.policy.pick()
    }

    /// Ready threads CPU `c` could run.
    fn ready(&self, c: usize, multi: bool) -> usize {
        self.policy.ready() + if multi { self.bound[c].len() } else { 0 }
    }

    /// Wakes idle CPUs other than `me` (more than one CPU) for threads made ready: each idle
    /// CPU that has threads bound to it, and one more when the policy has ready threads.
    fn kick<P: Platform>(&mut self, me: usize) {
        let mut any = self.policy.ready() > 0;
        for c in 0..MAX_CPUS {
            let on = &mut self.cpu[c];
            if c == me || !on.idle {
                continue;
            }
            if !self.bound[c].is_empty() || core::mem::take(&mut any) {
                on.idle = false;
                P::send_ipi(platform::irq::CpuId(c as u32));
            }
        }
    }

    /// Expires the timers due at `now`; returns whether a thread became ready.
    fn expire_timers(&mut self, now: u64, multi: bool) -> bool {
        let mut woke = false;
        while let Some(t) = self.timers.pop_expired(now) {
            if let Some(Some(thread)) = self.threads.get_mut(t.0) {
                thread.timer = None;
            }
            woke |= self.wake(t, multi);
        }
        woke
    }

    /// Arms the platform timer for the next deadline: the earliest sleeper, or the end of the
    /// running thread's slice when the policy wants a tick. A timer already armed for an
    /// earlier deadline is left alone (programming it costs more than an early tick, which
    /// only re-arms). Returns whether a timer is armed.
    fn arm<P: Platform>(&mut self, c: usize) -> bool {
        // A slice runs only while its thread does: a blocked current thread (the CPU idling
        // on its stack) has no slice end, or a stale one would fire the timer at once.
        let running = matches!(
            self.threads.get(self.cpu[c].current.0),
            Some(Some(t)) if t.state == State::Running
        );
        let picked_at = self.cpu[c].picked_at;
        let slice_end = self
            .policy
            .slice_ns()
            .filter(|_| running)
            .map(|s| picked_at.saturating_add(s));
        let deadline = match (self.timers.next_deadline(), slice_end) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(d) => d,
                None => return self.cpu[c].armed.is_some(),
            },
        };
        // An armed deadline already past is treated as fired (its tick may be on its way).
        if self.cpu[c]
            .armed
            .is_some_and(|armed| armed <= deadline && armed > now::<P>())
        {
            return true;
        }
        let armed = P::set_timer(deadline);
        self.cpu[c].armed = armed.then_some(deadline);
        armed
    }

    /// Frees the stacks of exited threads that no CPU runs or is still switching away from.
    fn reap<M: Machine>(&mut self) {
        let mut i = 0;
        while i < self.dead.len() {
            let t = self.dead[i];
            let saving = M::CPUS > 1
                && self.threads[t.0]
                    .as_ref()
                    .is_some_and(|th| th.sp.load(Ordering::Acquire) == 0);
            if saving
                || self.cpu[..M::CPUS.min(MAX_CPUS)]
                    .iter()
                    .any(|on| on.current == t)
            {
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

/// One more failed try of a wait on another CPU (the scheduler's lock, a picked thread's
/// save): the spin-loop hint for the first [`SPINS_BEFORE_YIELD`] tries, then a yield to the
/// hypervisor each time (the other CPU may be a descheduled vCPU).
fn spin_or_yield<M: Machine>(spins: &mut u32) {
    *spins = spins.saturating_add(1);
    if *spins < SPINS_BEFORE_YIELD {
        core::hint::spin_loop();
    } else {
        <M::Platform as platform::Platform>::yield_cpu();
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
    /// Bound to a CPU that does not run threads.
    NoCpu {
        /// The CPU asked for.
        cpu: usize,
    },
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::OutOfMemory { bytes } => {
                write!(f, "out of memory for a {bytes}-byte thread stack")
            }
            SpawnError::NoCpu { cpu } => write!(f, "CPU {cpu} does not run threads"),
        }
    }
}

impl<M: Machine> Runtime<M> {
    /// A runtime not started yet ([`Runtime::init`] starts it).
    pub const fn new() -> Self {
        Runtime {
            sched: spin::Mutex::new(None),
            next_id: AtomicU64::new(1),
            device_wakeups: AtomicBool::new(false),
            _machine: PhantomData,
        }
    }

    /// The number of the calling CPU (0 with one CPU).
    fn cpu() -> usize {
        if M::CPUS <= 1 {
            0
        } else {
            (M::Platform::current_cpu().0 as usize).min(MAX_CPUS - 1)
        }
    }

    /// Says that device interrupts may wake threads from now on (a driver registered its
    /// interrupt, whose handler wakes a waiter): with every thread blocked and no timer
    /// pending, the CPU then idles until an interrupt instead of reporting a deadlock.
    pub fn expect_device_wakeups(&self) {
        self.device_wakeups.store(true, Ordering::Relaxed);
    }

    fn new_thread(id: u64, name: String, state: State) -> Box<Thread> {
        Box::new(Thread {
            id,
            name,
            state,
            sp: AtomicU64::new(0),
            token: false,
            stack: None,
            entry: None,
            timer: None,
            waiters: Vec::new(),
            cpu: None,
        })
    }

    /// Starts the runtime: the running (boot) code becomes thread 0, `main`, on the boot
    /// stack. Then interrupts are enabled (the timer's tick and wake-ups). With more than one
    /// CPU the boot CPU also gets its idle context, a thread of [`MIN_STACK`] bytes.
    pub fn init(&self, time_slice_ns: u64) {
        // Masked from here (the platform's events may already be on: Xen's are, for its own
        // timer): a tick while this CPU holds the lock below would spin on it forever (and
        // another CPU waiting in `run_cpu` with it).
        M::Platform::interrupts_disable();
        let main = Self::new_thread(0, String::from("main"), State::Running);
        let threads = alloc::vec![Some(main)];
        let on = OnCpu {
            current: TaskId(0),
            picked_at: now::<M::Platform>(),
            armed: None,
            idle_task: None,
            idle: false,
        };
        *self.lock_sched() = Some(Sched {
            threads,
            free: Vec::new(),
            policy: M::Policy::new(time_slice_ns),
            timers: Timers::new(),
            dead: Vec::new(),
            switches: 0,
            preemptions: 0,
            live: 1,
            cpu: [on; MAX_CPUS],
            bound: [const { VecDeque::new() }; MAX_CPUS],
        });
        if M::CPUS > 1 {
            match self.make_thread(
                Some(String::from("idle-0")),
                MIN_STACK,
                None,
                State::Idle,
                None,
            ) {
                Ok((task, ..)) => self.with_sched(|s| s.cpu[0].idle_task = Some(task)),
                Err(e) => panic!("the boot CPU's idle context: {e}"),
            }
        }
        M::Platform::interrupts_restore(true);
    }

    /// Makes the calling CPU (not the boot CPU; more than one CPU) run threads: its running
    /// context (the stack it started on) becomes its idle context, which waits for ready
    /// threads. Call once per CPU, after [`Runtime::init`]; never returns.
    pub fn run_cpu(&self) -> ! {
        let c = Self::cpu();
        M::Platform::interrupts_disable();
        // The boot CPU may start this one before it starts the runtime: wait for it.
        let mut guard = self.lock_sched();
        while guard.is_none() {
            drop(guard);
            // Let the boot CPU (maybe a vCPU the hypervisor runs on the same physical CPU)
            // take the lock to start the runtime, rather than take it back at once: a while of
            // spin-loop hints, then one yield (not a hypercall per try: starting the other CPUs
            // takes the boot CPU a while).
            for _ in 0..SPINS_BEFORE_YIELD {
                core::hint::spin_loop();
            }
            <M::Platform as platform::Platform>::yield_cpu();
            guard = self.lock_sched();
        }
        let s = guard.as_mut().expect("Runtime::init ran");
        let index = s.free.pop().unwrap_or_else(|| {
            s.threads.push(None);
            s.threads.len() - 1
        });
        let mut name = String::from("idle-");
        name.push(char::from(b'0' + (c % 10) as u8));
        s.threads[index] = Some(Self::new_thread(u64::MAX, name, State::Idle));
        let task = TaskId(index);
        s.cpu[c] = OnCpu {
            current: task,
            picked_at: now::<M::Platform>(),
            armed: None,
            idle_task: Some(task),
            idle: false,
        };
        drop(guard);
        self.idle_loop()
    }

    /// An idle context's loop: the machine's idle work, then switch to whatever is ready, or
    /// wait for an interrupt.
    fn idle_loop(&self) -> ! {
        let c = Self::cpu();
        loop {
            M::idle_work(c);
            M::Platform::interrupts_disable();
            let guard = self.lock_sched();
            self.switch_away(guard);
        }
    }

    /// Runs `f` with interrupts masked and the scheduler's state locked.
    fn with_sched<R>(&self, f: impl FnOnce(&mut Sched<M::Policy>) -> R) -> R {
        let irq = M::Platform::interrupts_disable();
        let r = {
            let mut guard = self.lock_sched();
            f(guard.as_mut().expect("Runtime::init ran"))
        };
        M::Platform::interrupts_restore(irq);
        r
    }

    /// Switches to the next ready thread. The current thread's state is already set (Ready
    /// and enqueued for a yield or a preemption; Blocked; Exited; Idle for an idle context).
    /// With nothing ready, one CPU idles on the current stack until an interrupt makes a
    /// thread ready; with more, the CPU switches to its idle context, which waits. Called with
    /// interrupts masked; returns (masked) when the current thread runs again.
    /// Takes the scheduler's lock. With one CPU it is never contended (interrupts are masked
    /// around it). With more, a CPU spins a while with the CPU's spin-loop hint, then asks the
    /// platform to run another virtual CPU between tries ([`platform::Platform::yield_cpu`]:
    /// `SCHEDOP_yield` on Xen), since the holder may be a vCPU the hypervisor descheduled
    /// (four vCPUs on two physical CPUs): spinning through its whole time slice would only
    /// keep it from finishing.
    fn lock_sched(&self) -> spin::MutexGuard<'_, Option<Sched<M::Policy>>> {
        if M::CPUS == 1 {
            return self.sched.lock();
        }
        let mut spins = 0u32;
        loop {
            if let Some(guard) = self.sched.try_lock() {
                return guard;
            }
            spin_or_yield::<M>(&mut spins);
        }
    }

    fn switch_away<'a>(&'a self, mut guard: spin::MutexGuard<'a, Option<Sched<M::Policy>>>) {
        let c = Self::cpu();
        loop {
            let s = guard.as_mut().expect("Runtime::init ran");
            s.cpu[c].idle = false;
            s.reap::<M>();
            let now = now::<M::Platform>();
            if s.expire_timers(now, M::CPUS > 1) && M::CPUS > 1 {
                s.kick::<M::Platform>(c);
            }
            let prev = s.cpu[c].current;
            let idle_task = s.cpu[c].idle_task;
            let next = match s.pick(c, M::CPUS > 1) {
                Some(next) => Some(next),
                // Nothing ready: to the idle context, unless this is it.
                None if M::CPUS > 1 && idle_task.is_some_and(|t| t != prev) => idle_task,
                None => None,
            };
            if let Some(next) = next {
                s.cpu[c].picked_at = now;
                if s.thread(next).state != State::Idle {
                    s.thread(next).state = State::Running;
                }
                s.cpu[c].current = next;
                s.arm::<M::Platform>(c);
                if next == prev {
                    return;
                }
                s.switches += 1;
                let to: *const AtomicU64 = &s.thread(next).sp;
                let from = s.thread(prev);
                check_canary(from);
                let from_sp: *const AtomicU64 = &from.sp;
                if M::CPUS > 1 {
                    // Not saved yet: another CPU that picks `prev` waits for the switch below.
                    from.sp.store(0, Ordering::Relaxed);
                }
                drop(guard);
                // SAFETY: both threads are boxed and live: `next` runs on this CPU from now
                // on, and `prev` is only freed once its context is saved and no CPU runs it.
                let to_sp = unsafe { &*to };
                let mut sp = to_sp.load(Ordering::Acquire);
                let mut spins = 0u32;
                while M::CPUS > 1 && sp == 0 {
                    // Its last CPU is still saving it (more than one CPU only); a vCPU the
                    // hypervisor descheduled there: yield as `lock_sched` does.
                    spin_or_yield::<M>(&mut spins);
                    sp = to_sp.load(Ordering::Acquire);
                }
                // SAFETY: interrupts are masked (the caller's contract); `sp` was saved by a
                // switch away from `next` or made by `prepare_stack`, and `next`'s stack lives
                // until it exits and is reaped. `from_sp` points into `prev`'s boxed thread,
                // which is only freed after `prev` exits and its context is saved.
                unsafe { M::switch(from_sp as *mut u64, sp) };
                return;
            }
            // (With one CPU, the current thread is the only one that could be running, and it
            // is not: it is why this CPU looks for another.)
            let running = M::CPUS > 1
                && s.cpu[..M::CPUS.min(MAX_CPUS)].iter().any(|on| {
                    matches!(s.threads.get(on.current.0), Some(Some(t)) if t.state == State::Running)
                });
            if !s.arm::<M::Platform>(c)
                && s.timers.is_empty()
                && s.thread(s.cpu[c].current).state != State::Ready
                && !running
                && (M::CPUS <= 1 || s.bound.iter().all(VecDeque::is_empty))
                && !self.device_wakeups.load(Ordering::Relaxed)
            {
                let live = s.live;
                let name = if M::CPUS > 1 {
                    s.threads
                        .iter()
                        .flatten()
                        .filter(|t| t.state == State::Blocked)
                        .map(|t| ShortName::of(&t.name))
                        .next_back()
                        .unwrap_or_else(|| ShortName::of("?"))
                } else {
                    ShortName::of(&s.thread(s.cpu[c].current).name)
                };
                drop(guard);
                panic!(
                    "deadlock: all {live} threads are blocked and no timer is pending (the last \
                     to block was '{name}')"
                );
            }
            s.cpu[c].idle = true;
            drop(guard);
            // Returns with interrupts enabled after the timer (or another interrupt) fired.
            M::Platform::idle();
            M::Platform::interrupts_disable();
            if M::CPUS > 1 && idle_task == Some(prev) {
                // The idle context: back to its loop (and the machine's idle work).
                return;
            }
            guard = self.lock_sched();
        }
    }

    /// Makes a thread with a stack of at least `stack_size` bytes (plus a guard page) that
    /// runs `entry` (or, with `None`, an idle context's loop), in state `state`.
    fn make_thread(
        &self,
        name: Option<String>,
        stack_size: usize,
        entry: Option<Box<dyn FnOnce() + Send>>,
        state: State,
        cpu: Option<usize>,
    ) -> Result<(TaskId, u64, String), SpawnError> {
        if let Some(c) = cpu
            && (c >= M::CPUS.min(MAX_CPUS)
                || M::CPUS > 1 && c > 0 && self.with_sched(|s| s.cpu[c].idle_task.is_none()))
        {
            return Err(SpawnError::NoCpu { cpu: c });
        }
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
        let id = if state == State::Idle {
            u64::MAX
        } else {
            self.next_id.fetch_add(1, Ordering::Relaxed)
        };
        let name = name.unwrap_or_else(|| alloc::format!("thread-{id}"));
        // Before the thread is ready: once it is, another CPU may run it to its end.
        let given = name.clone();
        let top = base + (pages * FRAME_SIZE) as u64;
        Ok(self.with_sched(|s| {
            let me = Self::cpu();
            let index = s.free.pop().unwrap_or_else(|| {
                s.threads.push(None);
                s.threads.len() - 1
            });
            let task = TaskId(index);
            // SAFETY: the top of the new stack, owned by this thread-to-be; 16-byte aligned.
            let sp = unsafe { M::prepare_stack(top, thread_start::<M>, index as u64) };
            let mut thread = Self::new_thread(id, name, state);
            thread.sp = AtomicU64::new(sp);
            thread.stack = Some(stack);
            thread.entry = entry;
            thread.cpu = cpu.filter(|_| M::CPUS > 1);
            s.threads[index] = Some(thread);
            if state == State::Ready {
                s.live += 1;
                s.make_ready(task, M::CPUS > 1);
                s.arm::<M::Platform>(me);
                if M::CPUS > 1 {
                    s.kick::<M::Platform>(me);
                }
            }
            (task, id, given)
        }))
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
        self.make_thread(name, stack_size, Some(entry), State::Ready, None)
    }

    /// Like [`Runtime::spawn`], but the thread runs only on CPU `cpu` (which must run threads:
    /// CPU 0, or one that joined with [`Runtime::run_cpu`]). Threads bound to a CPU go before
    /// the policy's ready threads there. With one CPU, CPU 0 is the only one to ask for.
    pub fn spawn_on(
        &self,
        cpu: usize,
        name: Option<String>,
        stack_size: usize,
        entry: Box<dyn FnOnce() + Send>,
    ) -> Result<(TaskId, u64, String), SpawnError> {
        self.make_thread(name, stack_size, Some(entry), State::Ready, Some(cpu))
    }

    /// Ends the running thread: wakes its joiners and switches away for good.
    fn exit_current(&self) -> ! {
        M::Platform::interrupts_disable();
        let c = Self::cpu();
        let mut guard = self.lock_sched();
        let s = guard.as_mut().expect("Runtime::init ran");
        let current = s.cpu[c].current;
        let waiters = core::mem::take(&mut s.thread(current).waiters);
        s.thread(current).state = State::Exited;
        s.live -= 1;
        s.dead.push(current);
        let mut woke = false;
        for t in waiters {
            woke |= s.wake(t, M::CPUS > 1);
        }
        if woke && M::CPUS > 1 {
            s.kick::<M::Platform>(c);
        }
        self.switch_away(guard);
        unreachable!("an exited thread was resumed");
    }

    /// Blocks until `thread` has exited (returns at once if it has).
    pub fn wait_exit(&self, thread: TaskId, id: u64) {
        loop {
            let exited = self.with_sched(|s| {
                let current = s.cpu[Self::cpu()].current;
                match s.threads.get_mut(thread.0) {
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
        self.with_sched(|s| s.cpu[Self::cpu()].current)
    }

    /// The running thread's unique id and name.
    pub fn current_info(&self) -> (u64, String) {
        self.with_sched(|s| {
            let current = s.cpu[Self::cpu()].current;
            let t = s.thread(current);
            (t.id, t.name.clone())
        })
    }

    /// The running thread's guard page (the inaccessible 4 KiB page just below its stack),
    /// where its stack has one; `None` on the boot stack or where the machine could not guard
    /// it.
    pub fn current_guard_page(&self) -> Option<u64> {
        self.with_sched(|s| {
            let t = s.thread(s.cpu[Self::cpu()].current);
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
        let c = Self::cpu();
        let mut guard = self.lock_sched();
        let s = guard.as_mut().expect("Runtime::init ran");
        let current = s.cpu[c].current;
        if core::mem::take(&mut s.thread(current).token) {
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
            let key = s.timers.insert(deadline, current);
            s.thread(current).timer = Some(key);
        }
        s.thread(current).state = State::Blocked;
        self.switch_away(guard);
        M::Platform::interrupts_restore(irq);
    }

    /// Wakes a parked thread (or leaves it a token).
    pub fn unpark(&self, thread: TaskId) {
        self.with_sched(|s| {
            let c = Self::cpu();
            let woke = s.wake(thread, M::CPUS > 1);
            if s.policy.slice_ns().is_some() {
                s.arm::<M::Platform>(c);
            }
            if woke && M::CPUS > 1 {
                s.kick::<M::Platform>(c);
            }
        });
    }

    /// Gives the CPU to the next ready thread, if any.
    pub fn yield_now(&self) {
        let irq = M::Platform::interrupts_disable();
        let c = Self::cpu();
        let mut guard = self.lock_sched();
        let s = guard.as_mut().expect("Runtime::init ran");
        if s.ready(c, M::CPUS > 1) == 0 {
            drop(guard);
            M::Platform::interrupts_restore(irq);
            return;
        }
        let current = s.cpu[c].current;
        s.thread(current).state = State::Ready;
        s.make_ready(current, M::CPUS > 1);
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
        let c = Self::cpu();
        // With more than one CPU another may hold the lock for a moment: wait (this CPU holds
        // it only with interrupts masked, so never here). With one, a held lock cannot be.
        let mut guard = if M::CPUS > 1 {
            self.lock_sched()
        } else {
            match self.sched.try_lock() {
                Some(guard) => guard,
                None => return,
            }
        };
        let Some(s) = guard.as_mut() else { return };
        s.cpu[c].armed = None;
        let now = now::<M::Platform>();
        if s.expire_timers(now, M::CPUS > 1) && M::CPUS > 1 {
            s.kick::<M::Platform>(c);
        }
        let current = s.cpu[c].current;
        let picked_at = s.cpu[c].picked_at;
        if s.thread(current).state == State::Running
            && s.policy
                .should_preempt(current, now.saturating_sub(picked_at))
        {
            s.preemptions += 1;
            s.thread(current).state = State::Ready;
            s.make_ready(current, M::CPUS > 1);
            self.switch_away(guard);
        } else {
            s.arm::<M::Platform>(c);
        }
    }

    /// Writes the runtime's state for a hung machine's report (an NMI): the time, each CPU's
    /// current thread, idle flag and armed timer, every thread's state, the sleepers and the
    /// ready counts. Never waits: a locked state is reported as such.
    pub fn dump(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let Some(guard) = self.sched.try_lock() else {
            return writeln!(w, "threads: the scheduler's state is locked");
        };
        let Some(s) = guard.as_ref() else {
            return Ok(());
        };
        writeln!(
            w,
            "threads: now {} ns, {} live, {} ready, timers {:?}, device wake-ups {}",
            now::<M::Platform>(),
            s.live,
            s.policy.ready(),
            s.timers,
            self.device_wakeups.load(Ordering::Relaxed)
        )?;
        for (c, on) in s.cpu[..M::CPUS.min(MAX_CPUS)].iter().enumerate() {
            writeln!(
                w,
                "  CPU {c}: current {} idle {} armed {:?} picked at {} bound {:?}",
                on.current.0, on.idle, on.armed, on.picked_at, s.bound[c]
            )?;
        }
        for (i, t) in s.threads.iter().enumerate() {
            if let Some(t) = t {
                writeln!(
                    w,
                    "  thread {i} '{}' (id {}): {:?} token {} timer {:?} waiters {:?} sp {:#x}",
                    t.name,
                    t.id,
                    t.state,
                    t.token,
                    t.timer,
                    t.waiters,
                    t.sp.load(Ordering::Relaxed)
                )?;
            }
        }
        Ok(())
    }

    /// The runtime's counters.
    pub fn stats(&self) -> Stats {
        self.with_sched(|s| Stats {
            switches: s.switches,
            preemptions: s.preemptions,
            live: s.live,
        })
    }

    /// Whether the scheduler's state is locked right now (a test's fake machine injects
    /// another CPU's operations only where it is not: that CPU would wait for the lock).
    pub fn is_locked(&self) -> bool {
        self.sched.is_locked()
    }

    /// The thread whose guard page holds `addr`, if any: `(name, id, stack bytes)`. Used by
    /// the exception report: never blocks (a locked state is skipped) and never allocates.
    pub fn guard_owner(&self, addr: u64) -> Option<(ShortName, u64, usize)> {
        let guard = self.sched.try_lock()?;
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
    }
}

/// Where a new thread starts (through the machine's trampoline), interrupts masked.
extern "C" fn thread_start<M: Machine>(index: u64) -> ! {
    let runtime = M::runtime();
    let (entry, idle) = {
        let mut guard = runtime.lock_sched();
        let s = guard.as_mut().expect("Runtime::init ran");
        let t = s.thread(TaskId(index as usize));
        (t.entry.take(), M::CPUS > 1 && t.state == State::Idle)
    };
    if idle {
        runtime.idle_loop();
    }
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

/// How the wait queues' spin locks wait for a holder on another CPU: the platform's back-off
/// for virtual CPUs with more than one CPU ([`platform::relax::backoff`]: a yield to the
/// hypervisor now and then), the spin-loop hint alone with one (never contended there).
pub struct Relax<M>(PhantomData<fn() -> M>);

impl<M: Machine> spin::RelaxStrategy for Relax<M> {
    #[inline]
    fn relax() {
        if M::CPUS > 1 {
            platform::relax::backoff::<M::Platform>();
        } else {
            core::hint::spin_loop();
        }
    }
}

/// A FIFO of blocked threads: the building block of the synchronization primitives.
pub struct WaitQueue<M> {
    waiters: spin::mutex::SpinMutex<VecDeque<TaskId>, Relax<M>>,
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
            waiters: spin::mutex::SpinMutex::new(VecDeque::new()),
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
