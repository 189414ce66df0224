//! An exhaustive explorer of the real runtime (`Runtime`, its `Sched`, the policies
//! `sched_coop::Coop` and `sched_preempt::Preempt`, and the `sync` types) on 2 or 3 SIMULATED
//! CPUs: every schedule of the CPUs, up to a preemption bound, is run and checked.
//!
//! # The model
//! - **Contexts** (threads, `main`, each CPU's idle context) are host threads; each simulated
//!   CPU has a baton naming the context it runs, and exactly one CPU runs at a time (the
//!   *active* one): a context runs only while its CPU is active and the baton is its.
//! - **Step points**: every platform call the runtime makes (`interrupts_disable/restore`,
//!   `now_ns`, `set_timer`, `send_ipi`, `idle`, `yield_cpu`), every context switch (before the
//!   switch saves the old context: the window of the `sp == 0` handshake, where another CPU may
//!   pick the thread being saved), and `step()` in the scenarios' threads. At each one, the
//!   explorer chooses what happens next: the active CPU continues (the default), another CPU
//!   that can run takes over, or a timer fires (virtual time jumps to that CPU's armed
//!   deadline: on the active CPU, if its interrupts are enabled, or on a halted CPU).
//! - **Spin locks**: a CPU is never suspended while it holds the scheduler's lock
//!   (`Runtime::is_locked`; step points under it are not choice points), and no step point
//!   is inside a `WaitQueue`'s lock (its critical sections only test atomics), so a CPU
//!   never spins on a lock held by a suspended CPU: every critical section is atomic here, and
//!   the interleavings explored are those *between* critical sections, which is where wake-ups
//!   are lost. The one other spin, a CPU waiting for the thread it picked to be saved by its
//!   last CPU, calls `Platform::yield_cpu` after 1,000 tries (as `lock_sched` does): a step
//!   point where that CPU cannot continue until another one has made progress.
//! - **Interrupts**: `send_ipi` makes the target's pending flag true; a halted CPU
//!   (`Platform::idle`) can run again only once an IPI is pending or its armed timer is due.
//!   A due timer interrupt is delivered at the first step point where the CPU's interrupts are
//!   enabled (the runtime's tick runs, masked, and may preempt). If no CPU can run and no timer
//!   is armed, every CPU sleeps for ever while the scenario has not finished: a lost wake-up
//!   (or a thread stranded ready), reported with the schedule.
//!
//! # What is explored, and the bound
//! Depth-first over the choice points: each schedule is a sequence of choices, replayed on a
//! fresh world (fresh host threads) from the start, the next schedule being the last choice
//! point with an untried option (the model is deterministic: the same choices give the same
//! run). Choosing anything but the default (switching away from a CPU that could continue,
//! firing a timer) spends one unit of a budget (CHESS's preemption bounding): schedules with
//! more than `bound` such choices are not run; forced choices (the active CPU halted or
//! waiting for another) are free. So the exploration is exhaustive for every schedule with at
//! most `bound` preemptions (3 on 2 CPUs, 2 for the two largest scenarios and on 3 CPUs but
//! for the idle race); most concurrency bugs
//! need one or two (a wake-up landing in a window, a CPU going idle in another). Each test
//! prints how many schedules it ran, and how many of them made a CPU wait for a thread's save
//! (the handshake exercised). Schedules leak their host threads (blocked in the runtime's
//! frames: they cannot be unwound past its `extern "C"` thread entry), so each test runs in
//! child processes of the test binary, [`CHUNK`] schedules each, each starting where the last
//! stopped.
//!
//! Why it is sound for what it checks: the code between two step points runs as one atomic
//! block here, so the exploration covers every ordering of these blocks (within the bound) on
//! a sequentially consistent machine. That is every ordering that matters where each block
//! touches shared state at most in one critical section (the scheduler's lock, a `WaitQueue`'s
//! lock) or one atomic operation, which holds for the runtime and `sync` as written: each
//! critical section is entered after a platform call (masking interrupts) and left before one
//! (unmasking, the switch, `idle`: the idle window between unlocking and halting is a step
//! point of its own), and the atomics of `Mutex` and `Semaphore` sit next to such calls. Two
//! accesses with no step point between them (say, a condition checked outside a queue's lock
//! and the queue pushed under it) would be explored as one: a change bringing such a window
//! needs a `step` there to be covered.
//!
//! # Checks, in every schedule
//! No context runs on two CPUs at once (a switch to a context that holds another CPU's baton);
//! every scenario finishes (no lost wake-up: all CPUs halted with nothing pending is a
//! failure, as is the runtime's own deadlock report; a livelock runs into a step limit); the
//! policy is never handed a thread that is already ready (woken twice); the scenarios' own
//! asserts (each waiter woken once, mutual exclusion and counts of `Mutex` and `Semaphore`, no
//! sleeper woken early, a bound thread only on its CPU). A failure prints the choice sequence;
//! `EXPLORE_SCHEDULE=0,1,... cargo test -p sched-threads --test explore_cpus NAME --
//! --nocapture` replays only that schedule, printing each choice point.
//!
//! # It can fail
//! Checked by hand with deliberate breakages of `runtime.rs` (never committed): without the
//! `kick` in `unpark`, `wake_up_racing_going_idle` (on 2 and on 3 CPUs) reports the lost
//! wake-up on its first schedule (every CPU halted, no IPI pending, no timer armed); without
//! the wake token (`Running | Ready => false` in `wake`), every scenario reports the runtime's
//! deadlock (a joiner's wake-up lost) within 100 schedules; without zeroing `sp` before the
//! switch, the
//! scenarios that migrate report a context resumed on one CPU while the other still runs it;
//! with `WaitQueue::wait_if` checking its condition before taking its lock (and a platform call
//! between the check and the push), the `WaitQueue`, `Mutex` and `Semaphore` scenarios
//! report the lost notify. Without that platform call the last one goes unseen: see below.
//!
//! # Not covered
//! Weak memory orderings (the host runs one CPU at a time, under a std mutex: sequentially
//! consistent); interleavings inside a critical section (atomic here, as its lock makes it);
//! more than 3 CPUs; schedules beyond the bound; device interrupts;
//! a timer firing on a CPU that is neither active nor halted (it fires once that CPU runs
//! again with interrupts enabled); an IPI's handler (it only wakes a halted CPU here).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use heap::{FRAME_SIZE, Frames};
use platform::Platform;
use platform::irq::CpuId;
use sched::{Policy, TaskId};
use sched_coop::Coop;
use sched_preempt::Preempt;
use sched_threads::sync::{Mutex as SchedMutex, Semaphore};
use sched_threads::{Machine, Runtime, WaitQueue};

const MS: u64 = 1_000_000;
const SLICE: u64 = 10 * MS;
const START: u64 = 1_000 * MS;
/// The context id of `main` (never 0: a saved stack pointer of 0 means "being saved").
const MAIN: u64 = 1;
/// The context id of CPU 1's own (idle) context.
const CPU1: u64 = 2;
/// Steps in one schedule before it counts as a livelock.
const STEP_LIMIT: u64 = 20_000;

/// The scenario and schedule running (for a report from the panic hook).
static RUNNING: Mutex<String> = Mutex::new(String::new());
/// Schedules in which the scenario saw what it is about (it counts them: a preemption, a
/// thread that changed CPUs...), in this process.
static EVENTS: AtomicU64 = AtomicU64::new(0);
/// Whether this schedule saw the scenario's event.
static SAW: AtomicBool = AtomicBool::new(false);
/// Whether an IPI was pending when its CPU went to halt (it came in the idle window).
static EARLY_IPI: AtomicBool = AtomicBool::new(false);
/// Print each choice point (replaying one schedule).
static TRACE: AtomicBool = AtomicBool::new(false);
/// Schedules per child process (each leaks its host threads).
const CHUNK: u64 = 1500;

#[derive(Clone, Default)]
struct Cpu {
    /// The context it runs.
    baton: u64,
    /// Interrupts enabled.
    irq: bool,
    armed: Option<u64>,
    /// An IPI is pending.
    ipi: bool,
    /// In `Platform::idle`, waiting for an interrupt.
    halted: bool,
    /// Waiting for another CPU (`yield_cpu`): cannot continue until another CPU steps.
    spinning: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    /// The active CPU continues.
    Continue,
    /// CPU n takes over.
    Run(usize),
    /// CPU n's armed timer fires (time jumps to its deadline); CPU n takes over.
    Fire(usize),
}

struct State {
    cpus: Vec<Cpu>,
    active: usize,
    now: u64,
    next_ctx: u64,
    booting: bool,
    /// The choices to replay, then the default (0) at every later choice point.
    prefix: Vec<usize>,
    /// Each choice point: (the choice, the options allowed there).
    trace: Vec<(usize, usize)>,
    /// Options other than the default taken so far, and at most how many.
    spent: u32,
    bound: u32,
    steps: u64,
    /// `yield_cpu` calls (a CPU waiting for a thread's save: the handshake exercised).
    spins: u64,
    failed: bool,
    result: mpsc::Sender<Result<(), String>>,
}

struct World {
    state: Mutex<State>,
    cv: Condvar,
    runtime: &'static (dyn Any + Send + Sync),
    tick: fn(),
    is_locked: fn() -> bool,
}

thread_local! {
    static WORLD: RefCell<Option<Arc<World>>> = const { RefCell::new(None) };
    static CTX: Cell<u64> = const { Cell::new(0) };
    static CPU: Cell<usize> = const { Cell::new(0) };
}

fn world() -> Arc<World> {
    WORLD.with_borrow(|w| w.clone().expect("a world on this thread"))
}

type Guard<'a> = MutexGuard<'a, State>;

impl World {
    fn lock(&self) -> Guard<'_> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports a failure with the schedule so far, and stops this context for good (the world
    /// is abandoned).
    fn fail(&self, mut s: Guard<'_>, message: String) -> ! {
        if !s.failed {
            s.failed = true;
            let _ = s.result.send(Err(self.report(&s, &message)));
        }
        self.cv.notify_all();
        drop(s);
        loop {
            std::thread::park();
        }
    }

    /// A failure's report: the message and the schedule that led there.
    fn report(&self, s: &State, message: &str) -> String {
        let choices: Vec<String> = s.trace.iter().map(|(c, _)| c.to_string()).collect();
        format!(
            "{message}\n  schedule (EXPLORE_SCHEDULE={}), {} steps, CPU {} active",
            choices.join(","),
            s.steps,
            s.active
        )
    }

    /// Waits until a CPU that runs context `me` is active; returns the guard (and sets `CPU`).
    fn wait_turn<'a>(&'a self, mut s: Guard<'a>, me: u64) -> Guard<'a> {
        loop {
            if s.failed {
                drop(s);
                loop {
                    std::thread::park();
                }
            }
            let c = s.active;
            if s.cpus[c].baton == me {
                CPU.set(c);
                return s;
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Hands the machine to CPU `c` and waits for this context's turn.
    fn hand_to<'a>(&'a self, mut s: Guard<'a>, c: usize) -> Guard<'a> {
        s.active = c;
        self.cv.notify_all();
        self.wait_turn(s, CTX.get())
    }

    /// Delivers the timer interrupt of the calling CPU if it is due and interrupts are on.
    fn deliver_due<'a>(&'a self, mut s: Guard<'a>) -> Guard<'a> {
        let c = CPU.get();
        let now = s.now;
        let cpu = &mut s.cpus[c];
        if cpu.irq && cpu.armed.is_some_and(|d| d <= now) {
            cpu.armed = None;
            cpu.irq = false;
            drop(s);
            (self.tick)();
            // Back from the handler (maybe much later, maybe on another CPU): as `iret`.
            s = self.lock();
            let c = CPU.get();
            s.cpus[c].irq = true;
        }
        s
    }

    /// The options at a choice point of the active CPU `c`, the default first, with their cost.
    fn options(s: &State, c: usize) -> Vec<(Opt, u32)> {
        let due = |x: usize| s.cpus[x].armed.is_some_and(|d| d <= s.now);
        let can_run = |x: usize| {
            let cpu = &s.cpus[x];
            !cpu.spinning && (!cpu.halted || cpu.ipi || due(x))
        };
        let mut v = Vec::new();
        if can_run(c) {
            v.push(Opt::Continue);
        }
        let n = s.cpus.len();
        for k in 1..n {
            let x = (c + k) % n;
            if can_run(x) {
                v.push(Opt::Run(x));
            }
        }
        let mut fires: Vec<(u64, usize)> = (0..n)
            .filter_map(|x| {
                let cpu = &s.cpus[x];
                let d = cpu.armed.filter(|&d| d > s.now)?;
                let here = x == c && cpu.irq && !cpu.halted && !cpu.spinning;
                (here || (cpu.halted && !can_run(x))).then_some((d, x))
            })
            .collect();
        fires.sort_unstable();
        v.extend(fires.into_iter().map(|(_, x)| Opt::Fire(x)));
        v.into_iter()
            .enumerate()
            .map(|(i, o)| (o, u32::from(i > 0)))
            .collect()
    }

    /// A choice point of the calling (active) CPU.
    fn choose<'a>(&'a self, mut s: Guard<'a>) -> Guard<'a> {
        let c = CPU.get();
        let options: Vec<Opt> = Self::options(&s, c)
            .into_iter()
            .filter(|&(_, cost)| s.spent + cost <= s.bound)
            .map(|(o, _)| o)
            .collect();
        if options.is_empty() {
            let cpus: Vec<String> = s
                .cpus
                .iter()
                .enumerate()
                .map(|(i, cpu)| {
                    format!(
                        "CPU {i}: halted {} ipi {} armed {:?} spinning {}",
                        cpu.halted, cpu.ipi, cpu.armed, cpu.spinning
                    )
                })
                .collect();
            self.fail(
                s,
                format!(
                    "no CPU can run and no timer is armed, the scenario not finished: a lost \
                     wake-up ({})",
                    cpus.join("; ")
                ),
            );
        }
        let pick = if options.len() > 1 {
            let i = s.trace.len();
            let pick = s.prefix.get(i).copied().unwrap_or(0);
            if pick >= options.len() {
                self.fail(s, format!("replay diverged: choice {pick} of {options:?}"));
            }
            if TRACE.load(Ordering::Relaxed) {
                eprintln!(
                    "choice {i}: step {}, CPU {c}: {options:?} -> {pick}",
                    s.steps
                );
            }
            s.trace.push((pick, options.len()));
            if pick > 0 {
                s.spent += 1;
            }
            pick
        } else {
            0
        };
        match options[pick] {
            Opt::Continue => s,
            Opt::Run(x) => self.hand_to(s, x),
            Opt::Fire(x) => {
                let d = s.cpus[x].armed.expect("an armed timer");
                s.now = s.now.max(d);
                if x == c && !s.cpus[c].halted {
                    self.deliver_due(s)
                } else if x == c {
                    // Halted: `idle` delivers it as it wakes.
                    s
                } else {
                    self.hand_to(s, x)
                }
            }
        }
    }

    /// A step point of the calling CPU (`spin`: it waits for another CPU).
    fn step(&self, spin: bool) {
        let mut s = self.lock();
        if s.booting {
            return;
        }
        let c = CPU.get();
        s.steps += 1;
        if s.steps > STEP_LIMIT {
            self.fail(s, format!("no end after {STEP_LIMIT} steps: a livelock"));
        }
        for (o, cpu) in s.cpus.iter_mut().enumerate() {
            if o != c {
                cpu.spinning = false;
            }
        }
        if spin {
            s.spins += 1;
            s.cpus[c].spinning = true;
        }
        if (self.is_locked)() {
            return;
        }
        let s = self.deliver_due(s);
        drop(self.choose(s));
    }
}

/// A step point in a scenario's thread.
fn step() {
    world().step(false);
}

/// Marks this schedule as one that saw the scenario's event.
fn saw() {
    SAW.store(true, Ordering::SeqCst);
}

/// The virtual clock.
fn now() -> u64 {
    world().lock().now
}

/// The CPU the caller runs on.
fn cpu() -> usize {
    CPU.get()
}

/// The contract check around a policy: a task is never handed over while it is already ready.
#[derive(Debug)]
struct Checked<Pol> {
    inner: Pol,
    ready: Vec<TaskId>,
}

impl<Pol: Policy> Policy for Checked<Pol> {
    const NAME: &'static str = Pol::NAME;

    fn new(time_slice_ns: u64) -> Self {
        Checked {
            inner: Pol::new(time_slice_ns),
            ready: Vec::new(),
        }
    }

    fn enqueue(&mut self, task: TaskId) {
        if self.ready.contains(&task) {
            let w = world();
            let s = w.lock();
            w.fail(s, format!("{task:?} enqueued while already ready"));
        }
        self.ready.push(task);
        self.inner.enqueue(task);
    }

    fn pick(&mut self) -> Option<TaskId> {
        let t = self.inner.pick()?;
        self.ready.retain(|&r| r != t);
        Some(t)
    }

    fn ready(&self) -> usize {
        self.inner.ready()
    }

    fn should_preempt(&self, current: TaskId, ran_ns: u64) -> bool {
        self.inner.should_preempt(current, ran_ns)
    }

    fn slice_ns(&self) -> Option<u64> {
        self.inner.slice_ns()
    }
}

/// The simulated machine: policy `Pol` (checked), `N` CPUs.
struct Sim<Pol, const N: usize>(PhantomData<Pol>);
struct SimPlatform;

impl Platform for SimPlatform {
    platform::fake_platform_unused_items!();

    fn now_ns() -> Option<u64> {
        let w = world();
        w.step(false);
        Some(w.lock().now)
    }

    fn set_timer(deadline_ns: u64) -> bool {
        let w = world();
        w.step(false);
        w.lock().cpus[CPU.get()].armed = Some(deadline_ns);
        true
    }

    fn interrupts_disable() -> bool {
        let w = world();
        w.step(false);
        std::mem::replace(&mut w.lock().cpus[CPU.get()].irq, false)
    }

    fn interrupts_restore(enabled: bool) {
        let w = world();
        w.lock().cpus[CPU.get()].irq = enabled;
        if enabled {
            w.step(false);
        }
    }

    /// Halts the CPU (interrupts enabled) until an IPI is pending or its timer is due; the
    /// timer's interrupt is delivered before it returns.
    fn idle() {
        let w = world();
        // The idle window: the runtime marked this CPU idle and unlocked; another CPU may make
        // a thread ready and send the IPI before this one halts.
        w.step(false);
        let mut s = w.lock();
        let c = CPU.get();
        s.cpus[c].irq = true;
        s.cpus[c].halted = true;
        if s.cpus[c].ipi {
            EARLY_IPI.store(true, Ordering::SeqCst);
        }
        if s.booting {
            // CPU 1 joined: back to main on CPU 0.
            s = w.hand_to(s, 0);
        } else {
            s.steps += 1;
            for (o, cpu) in s.cpus.iter_mut().enumerate() {
                if o != c {
                    cpu.spinning = false;
                }
            }
            s = w.choose(s);
            // Woken: choose returns only once this CPU can run.
            while s.cpus[c].halted && !s.cpus[c].ipi && s.cpus[c].armed.is_none_or(|d| d > s.now) {
                s = w.choose(s);
            }
        }
        let c = CPU.get();
        s.cpus[c].halted = false;
        s.cpus[c].ipi = false;
        drop(w.deliver_due(s));
    }

    fn current_cpu() -> CpuId {
        CpuId(CPU.get() as u32)
    }

    fn send_ipi(cpu: CpuId) -> bool {
        let w = world();
        w.lock().cpus[cpu.0 as usize].ipi = true;
        w.step(false);
        true
    }

    fn yield_cpu() {
        world().step(true);
    }
}

// SAFETY: stacks are host allocations owned until freed; guard pages always "succeed" (nothing
// touches them); `prepare_stack`/`switch` hand a CPU's baton between host threads so that each
// CPU runs exactly the context the runtime resumed there, one CPU at a time.
unsafe impl<Pol: Policy + Send + 'static, const N: usize> Machine for Sim<Pol, N> {
    type Platform = SimPlatform;
    type Policy = Checked<Pol>;
    const CPUS: usize = N;

    fn runtime() -> &'static Runtime<Self> {
        world()
            .runtime
            .downcast_ref::<Runtime<Self>>()
            .expect("the world's runtime has this machine's policy")
    }

    fn alloc_stack(pages: usize) -> Option<Frames> {
        let layout = std::alloc::Layout::from_size_align(pages * FRAME_SIZE, FRAME_SIZE).ok()?;
        // SAFETY: a non-zero size.
        let p = std::ptr::NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        // SAFETY: `pages` frames just allocated, aligned, owned by the caller.
        Some(unsafe { Frames::from_raw(p, pages) })
    }

    unsafe fn free_stack(frames: Frames) {
        let layout = std::alloc::Layout::from_size_align(frames.len(), FRAME_SIZE)
            .expect("the layout alloc_stack used");
        // SAFETY: allocated by `alloc_stack` with this layout; the caller gives it back.
        unsafe { std::alloc::dealloc(frames.as_ptr(), layout) }
    }

    unsafe fn guard_page(_page: u64) -> bool {
        true
    }

    unsafe fn unguard_page(_page: u64) {}

    unsafe fn prepare_stack(_top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
        let w = world();
        let id = {
            let mut s = w.lock();
            s.next_ctx += 1;
            s.next_ctx
        };
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                WORLD.set(Some(w.clone()));
                CTX.set(id);
                drop(w.wait_turn(w.lock(), id));
                entry(arg)
            })
            .expect("a host thread for a simulated thread");
        id
    }

    unsafe fn switch(from_sp: *mut u64, to_sp: u64) {
        let w = world();
        // The handshake's window: `from_sp` still reads 0, another CPU may pick the thread.
        w.step(false);
        let me = CTX.get();
        let mut s = w.lock();
        let c = CPU.get();
        if let Some(o) = (0..N).find(|&o| o != c && s.cpus[o].baton == to_sp) {
            w.fail(
                s,
                format!("context {to_sp} resumed on CPU {c} while CPU {o} still runs it"),
            );
        }
        // SAFETY: the caller's contract: `from_sp` is valid until the switch back.
        unsafe { *from_sp = me };
        s.cpus[c].baton = to_sp;
        w.cv.notify_all();
        drop(w.wait_turn(s, me));
    }
}

/// Runs one schedule: boots a world with `prefix` to replay, runs `scenario` on its `main`.
/// Returns the choice points passed (or the failure).
fn run_one<X: Machine>(
    prefix: Vec<usize>,
    bound: u32,
    scenario: fn(),
) -> Result<(Vec<(usize, usize)>, u64), String> {
    SAW.store(false, Ordering::SeqCst);
    EARLY_IPI.store(false, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    let runtime: &'static Runtime<X> = Box::leak(Box::new(Runtime::new()));
    let mut cpus = vec![Cpu::default(); X::CPUS];
    for (c, cpu) in cpus.iter_mut().enumerate() {
        // CPU c > 0 starts on its own context, CPU1 + c - 1.
        cpu.baton = if c == 0 { MAIN } else { CPU1 + c as u64 - 1 };
    }
    let w = Arc::new(World {
        state: Mutex::new(State {
            cpus,
            active: 0,
            now: START,
            next_ctx: 100,
            booting: true,
            prefix,
            trace: Vec::new(),
            spent: 0,
            bound,
            steps: 0,
            spins: 0,
            failed: false,
            result: tx.clone(),
        }),
        cv: Condvar::new(),
        runtime,
        tick: || X::runtime().timer_tick(),
        is_locked: || X::runtime().is_locked(),
    });
    {
        let w = w.clone();
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                WORLD.set(Some(w.clone()));
                CTX.set(MAIN);
                CPU.set(0);
                runtime.init(SLICE);
                let mut s = w.lock();
                for c in 1..X::CPUS {
                    let cpu = w.clone();
                    let ctx = CPU1 + c as u64 - 1;
                    std::thread::Builder::new()
                        .stack_size(256 * 1024)
                        .spawn(move || {
                            WORLD.set(Some(cpu.clone()));
                            CTX.set(ctx);
                            drop(cpu.wait_turn(cpu.lock(), ctx));
                            X::runtime().run_cpu()
                        })
                        .expect("a host thread for a CPU");
                    // It joins, halts and hands the machine back.
                    s = w.hand_to(s, c);
                }
                s.booting = false;
                drop(s);
                scenario();
                let _ = tx.send(Ok(()));
            })
            .expect("a host thread for main");
    }
    let outcome = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| Err("the schedule hung for 20 s".into()));
    let s = w.lock();
    if outcome.is_ok() && SAW.swap(false, Ordering::SeqCst) {
        EVENTS.fetch_add(1, Ordering::SeqCst);
    }
    outcome.map(|()| (s.trace.clone(), s.spins))
}

/// Runs every schedule of `scenario` with at most `bound` preemptions, printing how many.
/// Fails with the first failing schedule. `name` is the test's: it runs in child processes
/// (see [`in_children`]), each exploring up to [`CHUNK`] schedules from where the last one
/// stopped.
/// Returns (in the parent) the schedules in which the scenario saw what it is about.
fn explore<X: Machine>(name: &str, bound: u32, scenario: fn()) -> Option<u64> {
    if let Some(events) = in_children(name, bound) {
        return Some(events);
    }
    report_panics();
    let parse = |list: &str| -> Vec<usize> {
        list.split(',')
            .filter(|c| !c.is_empty())
            .map(|c| c.trim().parse().expect("a choice number"))
            .collect()
    };
    if let Ok(only) = std::env::var("EXPLORE_SCHEDULE") {
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = format!("{name}: {only}");
        TRACE.store(true, Ordering::Relaxed);
        if let Err(e) = run_one::<X>(parse(&only), bound, scenario) {
            panic!("{name}: {e}");
        }
        eprintln!("explore-done 1 0 {}", EVENTS.load(Ordering::SeqCst));
        return None;
    }
    let mut prefix = parse(&std::env::var("EXPLORE_FROM").unwrap_or_default());
    let (mut runs, mut spins) = (0u64, 0u64);
    loop {
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = format!(
            "{name} ({}): schedule {:?}",
            <X::Policy as Policy>::NAME,
            prefix
        );
        let (mut trace, s) = match run_one::<X>(prefix, bound, scenario) {
            Ok(r) => r,
            Err(e) => panic!(
                "{name} ({}): a schedule failed: {e}",
                <X::Policy as Policy>::NAME
            ),
        };
        runs += 1;
        spins += s;
        loop {
            match trace.pop() {
                None => {
                    eprintln!(
                        "explore-done {runs} {spins} {}",
                        EVENTS.load(Ordering::SeqCst)
                    );
                    return None;
                }
                Some((pick, n)) if pick + 1 < n => {
                    trace.push((pick + 1, n));
                    break;
                }
                Some(_) => {}
            }
        }
        prefix = trace.into_iter().map(|(c, _)| c).collect();
        if runs == CHUNK {
            let next: Vec<String> = prefix.iter().map(usize::to_string).collect();
            eprintln!(
                "explore-next {runs} {spins} {} {}",
                EVENTS.load(Ordering::SeqCst),
                next.join(",")
            );
            return None;
        }
    }
}

/// Makes a panic on a simulated CPU (a failed assert, the runtime's own deadlock report, in
/// any context) fail the schedule, with its choices, before anything unwinds (the runtime's
/// `extern "C"` thread entry would abort the process).
fn report_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let Some(w) = WORLD.with_borrow(|w| w.clone()) else {
            return default(info);
        };
        let message = format!("a panic: {}", info.payload_as_str().unwrap_or("?"));
        let message = match info.location() {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        };
        // Not unwinding (through the runtime's `extern "C"` entry the process would abort,
        // and parked here the hook's lock would stay held): report and end the process.
        // (Locked: by this very thread, the only one running, which panicked inside the model.)
        let report = match w.state.try_lock() {
            Ok(s) => w.report(&s, &message),
            Err(std::sync::TryLockError::Poisoned(e)) => w.report(&e.into_inner(), &message),
            Err(std::sync::TryLockError::WouldBlock) => format!("{message} (in the model)"),
        };
        eprintln!(
            "{}: {report}",
            RUNNING.lock().unwrap_or_else(|e| e.into_inner())
        );
        std::process::exit(101);
    }));
}

/// Runs test `name` again in child processes, unless this is one; returns whether it did
/// (and they passed). Each schedule leaks its host threads (they stay blocked inside the
/// runtime's frames, which cannot be unwound past its `extern "C"` thread entry), and a process
/// has room for some 16,000 threads (`vm.max_map_count`): each child explores [`CHUNK`]
/// schedules, then says where the next one takes over.
fn in_children(name: &str, bound: u32) -> Option<u64> {
    if std::env::var_os("EXPLORE_CHILD").is_some() {
        return None;
    }
    let start = Instant::now();
    let (mut runs, mut spins, mut events, mut from) = (0u64, 0u64, 0u64, String::new());
    loop {
        let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads", "1"])
            .env("EXPLORE_CHILD", "1")
            .env("EXPLORE_FROM", &from)
            .output()
            .expect("the test binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("explore-"))
            .map(|l| l.split(' ').collect::<Vec<_>>());
        match last.as_deref() {
            Some([word, r, s, e, rest @ ..]) if out.status.success() => {
                runs += r.parse::<u64>().expect("a count");
                spins += s.parse::<u64>().expect("a count");
                events += e.parse::<u64>().expect("a count");
                if *word == "explore-done" {
                    break;
                }
                from = rest.concat();
            }
            _ => panic!(
                "{name} failed after {runs} schedules:\n{}\n{stderr}",
                String::from_utf8_lossy(&out.stdout)
            ),
        }
    }
    eprintln!(
        "{name}: {runs} schedules (preemption bound {bound}), {spins} waits for a save, \
         {events} with the scenario's event, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Some(events)
}

fn rt<X: Machine>() -> &'static Runtime<X> {
    X::runtime()
}

type Spawned = (TaskId, u64, String);

fn spawn<X: Machine>(name: &str, body: impl FnOnce() + Send + 'static) -> Spawned {
    rt::<X>()
        .spawn(Some(name.into()), 0, Box::new(body))
        .expect("a stack")
}

fn spawn_on<X: Machine>(c: usize, name: &str, body: impl FnOnce() + Send + 'static) -> Spawned {
    rt::<X>()
        .spawn_on(c, Some(name.into()), 0, Box::new(body))
        .expect("a stack")
}

fn join<X: Machine>(t: Spawned) {
    rt::<X>().wait_exit(t.0, t.1);
}

// ---- The scenarios (each on `main`, CPU 1 idle at the start) ----

/// Park / unpark: a waiter parks until a flag is set; a waker sets it and unparks it. The
/// waiter may block on one CPU and be woken and picked by the other while its first CPU is
/// still switching away from it (the `sp == 0` handshake).
fn park_unpark<X: Machine>() {
    let flag = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(AtomicU64::new(0));
    let waiter = {
        let (flag, woken) = (flag.clone(), woken.clone());
        spawn::<X>("waiter", move || {
            while !flag.load(Ordering::SeqCst) {
                let before = cpu();
                rt::<X>().park();
                if cpu() != before {
                    saw();
                }
            }
            woken.fetch_add(1, Ordering::SeqCst);
        })
    };
    let task = waiter.0;
    let waker = spawn::<X>("waker", move || {
        step();
        flag.store(true, Ordering::SeqCst);
        rt::<X>().unpark(task);
    });
    join::<X>(waiter);
    join::<X>(waker);
    assert_eq!(woken.load(Ordering::SeqCst), 1, "woken once");
}

/// Migration by yielding: two threads yield to each other; each may continue on either CPU,
/// picked by one while the other still saves it.
fn migration<X: Machine>() {
    let runs = Arc::new(AtomicU64::new(0));
    let threads: Vec<Spawned> = (0..2)
        .map(|_| {
            let runs = runs.clone();
            spawn::<X>("yielder", move || {
                runs.fetch_add(1, Ordering::SeqCst);
                let before = cpu();
                rt::<X>().yield_now();
                if cpu() != before {
                    saw();
                }
                runs.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    threads.into_iter().for_each(join::<X>);
    assert_eq!(runs.load(Ordering::SeqCst), 4);
}

/// Wake-up against going idle: a waiter bound to CPU 0 parks (CPU 0 then idles, main being
/// blocked too); a waker bound to CPU 1 unparks it, racing CPU 0's `idle = true; unlock;
/// Platform::idle()` window: the IPI must not be lost.
fn idle_race<X: Machine>() {
    let flag = Arc::new(AtomicBool::new(false));
    let waiter = {
        let flag = flag.clone();
        spawn_on::<X>(0, "waiter", move || {
            while !flag.load(Ordering::SeqCst) {
                rt::<X>().park();
            }
            assert_eq!(cpu(), 0, "a thread bound to CPU 0 ran elsewhere");
        })
    };
    let task = waiter.0;
    let waker = spawn_on::<X>(1, "waker", move || {
        step();
        flag.store(true, Ordering::SeqCst);
        rt::<X>().unpark(task);
        assert_eq!(cpu(), 1, "a thread bound to CPU 1 ran elsewhere");
    });
    join::<X>(waiter);
    join::<X>(waker);
    if EARLY_IPI.load(Ordering::SeqCst) {
        saw();
    }
}

/// A `WaitQueue` notify racing the wait: the waiter waits while a flag is clear; the
/// notifier sets it and notifies one.
fn wait_queue<X: Machine>() {
    let queue: &'static WaitQueue<X> = Box::leak(Box::new(WaitQueue::new()));
    let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let waiter = spawn::<X>("waiter", move || {
        while !flag.load(Ordering::SeqCst) {
            queue.wait_if(|| !flag.load(Ordering::SeqCst), None);
        }
    });
    let notifier = spawn::<X>("notifier", move || {
        flag.store(true, Ordering::SeqCst);
        step();
        if queue.notify_one() {
            saw();
        }
    });
    join::<X>(waiter);
    join::<X>(notifier);
    assert!(queue.is_empty(), "a waiter left queued");
}

/// A `Semaphore` of 1 permit, 3 threads across the 2 CPUs: never two inside, all get in.
fn semaphore<X: Machine>() {
    let sem: &'static Semaphore<X> = Box::leak(Box::new(Semaphore::new(1)));
    let inside: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let done: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let threads: Vec<Spawned> = (0..3)
        .map(|_| {
            spawn::<X>("taker", move || {
                if !sem.try_acquire() {
                    saw();
                    sem.acquire();
                }
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two inside");
                step();
                inside.fetch_sub(1, Ordering::SeqCst);
                sem.release();
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    threads.into_iter().for_each(join::<X>);
    assert_eq!(done.load(Ordering::SeqCst), 3);
    assert_eq!(sem.available(), 1, "the permit given back");
}

/// A `Mutex` count: 2 threads, 2 increments each, a step between the read and the write.
fn mutex<X: Machine>() {
    let count: &'static SchedMutex<X, u64> = Box::leak(Box::new(SchedMutex::new(0)));
    let threads: Vec<Spawned> = (0..2)
        .map(|_| {
            spawn::<X>("counter", move || {
                for _ in 0..2 {
                    let mut c = count.try_lock().unwrap_or_else(|| {
                        saw();
                        count.lock()
                    });
                    let v = *c;
                    step();
                    *c = v + 1;
                }
            })
        })
        .collect();
    threads.into_iter().for_each(join::<X>);
    assert_eq!(*count.lock(), 4, "the mutex count");
}

/// Preemption: 3 busy threads on 2 CPUs (main joins): a timer tick preempts one, which the
/// other CPU may pick up.
fn preemption<X: Machine>() {
    let steps = Arc::new(AtomicU64::new(0));
    let threads: Vec<Spawned> = (0..3)
        .map(|_| {
            let steps = steps.clone();
            spawn::<X>("busy", move || {
                let first = cpu();
                for _ in 0..2 {
                    step();
                    steps.fetch_add(1, Ordering::SeqCst);
                }
                // A busy thread never blocks or yields: on another CPU, it was preempted.
                if cpu() != first {
                    saw();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(join::<X>);
    assert_eq!(steps.load(Ordering::SeqCst), 6);
}

/// Sleepers: none wakes before its deadline, none is lost; one is bound to CPU 1.
fn sleepers<X: Machine>() {
    let sleeper = |i: u64| {
        move || {
            let (deadline, before) = (now() + (i + 1) * MS, cpu());
            rt::<X>().sleep_until(deadline);
            if cpu() != before {
                saw();
            }
            assert!(now() >= deadline, "a sleep ended early");
        }
    };
    let a = spawn::<X>("sleeper", sleeper(0));
    let b = spawn_on::<X>(1, "bound sleeper", {
        let sleep = sleeper(1);
        move || {
            sleep();
            assert_eq!(cpu(), 1, "a thread bound to CPU 1 ran elsewhere");
        }
    });
    join::<X>(a);
    join::<X>(b);
}

#[test]
fn park_unpark_across_cpus() {
    let seen = explore::<Sim<Coop, 2>>("park_unpark_across_cpus", 3, park_unpark::<Sim<Coop, 2>>);
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: the waiter woken on the other CPU"
    );
}

#[test]
fn migration_while_saving() {
    let seen = explore::<Sim<Coop, 2>>("migration_while_saving", 3, migration::<Sim<Coop, 2>>);
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: a yielder resumed on the other CPU"
    );
}

#[test]
fn wake_up_racing_going_idle() {
    let seen = explore::<Sim<Coop, 2>>("wake_up_racing_going_idle", 3, idle_race::<Sim<Coop, 2>>);
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: the IPI sent in the idle window"
    );
}

#[test]
fn wait_queue_notify_racing_the_wait() {
    let seen = explore::<Sim<Coop, 2>>(
        "wait_queue_notify_racing_the_wait",
        3,
        wait_queue::<Sim<Coop, 2>>,
    );
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: the notifier found the waiter queued"
    );
}

#[test]
fn semaphore_of_one_with_three_threads() {
    let seen = explore::<Sim<Coop, 2>>(
        "semaphore_of_one_with_three_threads",
        3,
        semaphore::<Sim<Coop, 2>>,
    );
    assert!(seen.is_none_or(|n| n > 0), "never: a taker waited");
}

#[test]
fn mutex_count() {
    let seen = explore::<Sim<Coop, 2>>("mutex_count", 3, mutex::<Sim<Coop, 2>>);
    assert!(seen.is_none_or(|n| n > 0), "never: the lock contended");
}

#[test]
fn preemption_and_pick_up() {
    let seen =
        explore::<Sim<Preempt, 2>>("preemption_and_pick_up", 2, preemption::<Sim<Preempt, 2>>);
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: a busy thread preempted and picked by the other CPU"
    );
}

#[test]
fn sleepers_never_early() {
    let seen = explore::<Sim<Coop, 2>>("sleepers_never_early", 2, sleepers::<Sim<Coop, 2>>);
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: a sleeper woken on the other CPU"
    );
}

// On 3 CPUs (more schedules: a smaller bound).

#[test]
fn park_unpark_on_three_cpus() {
    let seen = explore::<Sim<Coop, 3>>("park_unpark_on_three_cpus", 2, park_unpark::<Sim<Coop, 3>>);
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: the waiter woken on another CPU"
    );
}

#[test]
fn wake_up_racing_going_idle_on_three_cpus() {
    let seen = explore::<Sim<Coop, 3>>(
        "wake_up_racing_going_idle_on_three_cpus",
        3,
        idle_race::<Sim<Coop, 3>>,
    );
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: the IPI sent in the idle window"
    );
}

#[test]
fn semaphore_on_three_cpus() {
    let seen = explore::<Sim<Coop, 3>>("semaphore_on_three_cpus", 2, semaphore::<Sim<Coop, 3>>);
    assert!(seen.is_none_or(|n| n > 0), "never: a taker waited");
}

#[test]
fn preemption_on_three_cpus() {
    let seen =
        explore::<Sim<Preempt, 3>>("preemption_on_three_cpus", 2, preemption::<Sim<Preempt, 3>>);
    assert!(
        seen.is_none_or(|n| n > 0),
        "never: a busy thread preempted and picked by another CPU"
    );
}
