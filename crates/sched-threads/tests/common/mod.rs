//! The fake machine and platform the host tests run the real runtime on.
//!
//! - **Threads**: each simulated thread is a host thread; a baton (one context id, under a
//!   std mutex) says which one runs, so exactly one runs at a time, as on one CPU. The fake
//!   `switch` stores the caller's id in `*from_sp`, hands the baton to `to_sp` and waits for it
//!   to come back; `prepare_stack` starts a host thread that waits for its id, then calls the
//!   runtime's entry. An exited thread's host thread stays blocked in its last switch (leaked:
//!   it cannot leave the runtime's frames without unwinding through `extern "C"`), so the
//!   explorers keep their scenarios small.
//! - **Stacks** are real host memory (the canary is written and checked there); guard pages are
//!   only recorded, and must all be given back.
//! - **The platform**: a clock that moves only when the CPU idles (to the armed deadline) or
//!   when a test's event says so; an interrupt flag; `idle` delivers what would wake the CPU.
//! - **Events** (the interleavings): a test schedules actions at a *step*, a count of the
//!   places where the runtime calls the platform or switches (plus [`step`] in thread bodies).
//!   A remote action (another CPU's `unpark`, say) runs at the first step from then on where no
//!   CPU state is locked (the other CPU would wait for the lock); a timer interrupt at the
//!   first such step where interrupts are enabled, as the hardware delivers it. An explorer
//!   runs a scenario once for every step (or pair of steps) and checks its invariants each time.
#![allow(dead_code)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};

use heap::{FRAME_SIZE, Frames};
use platform::Platform;
use sched::{Policy, TaskId};
use sched_threads::{Machine, Runtime};

pub const MS: u64 = 1_000_000;
/// The time slice the tests' runtimes get.
pub const SLICE: u64 = 10 * MS;
/// Where the fake clock starts.
pub const START: u64 = 1_000 * MS;

type Action = Box<dyn FnOnce() + Send>;

struct Event {
    at: u64,
    /// A timer interrupt (delivered only with interrupts enabled), else a remote action.
    interrupt: bool,
    action: Action,
}

struct State {
    baton: u64,
    next_ctx: u64,
    now: u64,
    armed: Option<u64>,
    irq: bool,
    steps: u64,
    events: Vec<Event>,
    delivering: bool,
    guarded: HashSet<u64>,
    guard_ok: bool,
    stacks: usize,
    stack_limit: usize,
    failures: Vec<String>,
    aborted: bool,
    idles: u64,
    /// Per task: how many times the policy was handed it (enqueue).
    enqueues: Vec<u64>,
}

/// One simulated machine: the runtime, its clock, its threads' baton.
pub struct World {
    state: Mutex<State>,
    cv: Condvar,
    runtime: &'static (dyn Any + Send + Sync),
    tick: fn(),
    is_locked: fn() -> bool,
}

thread_local! {
    static WORLD: RefCell<Option<Arc<World>>> = const { RefCell::new(None) };
    static CTX: Cell<u64> = const { Cell::new(0) };
}

fn world() -> Arc<World> {
    WORLD.with_borrow(|w| w.clone().expect("a test world on this thread"))
}

impl World {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A machine whose policy is `Pol` wrapped in the contract checks of [`Checked`].
#[derive(Debug)]
pub struct Sim<Pol>(PhantomData<Pol>);

/// The fake platform.
#[derive(Debug)]
pub struct SimPlatform;

/// Makes a world on this (the test's) thread, which becomes thread 0 (`main`), and starts its
/// runtime with [`SLICE`].
pub fn boot<Pol: Policy + Send + 'static>() -> &'static Runtime<Sim<Pol>> {
    let runtime: &'static Runtime<Sim<Pol>> = Box::leak(Box::new(Runtime::new()));
    let world = Arc::new(World {
        state: Mutex::new(State {
            baton: 0,
            next_ctx: 1,
            now: START,
            armed: None,
            irq: false,
            steps: 0,
            events: Vec::new(),
            delivering: false,
            guarded: HashSet::new(),
            guard_ok: true,
            stacks: 0,
            stack_limit: usize::MAX,
            failures: Vec::new(),
            aborted: false,
            idles: 0,
            enqueues: Vec::new(),
        }),
        cv: Condvar::new(),
        runtime,
        tick: || Sim::<Pol>::runtime().timer_tick(),
        is_locked: || Sim::<Pol>::runtime().is_locked(),
    });
    WORLD.set(Some(world));
    CTX.set(0);
    runtime.init(SLICE);
    runtime
}

/// The fake clock now.
pub fn now() -> u64 {
    world().lock().now
}

/// Moves the fake clock (never backwards) without an interrupt.
pub fn advance_to(t: u64) {
    let w = world();
    let mut s = w.lock();
    s.now = s.now.max(t);
}

/// Steps counted so far.
pub fn steps() -> u64 {
    world().lock().steps
}

/// Times the CPU idled.
pub fn idles() -> u64 {
    world().lock().idles
}

/// Whether interrupts are enabled on the fake CPU.
pub fn interrupts_enabled() -> bool {
    world().lock().irq
}

/// Stacks allocated and not given back.
pub fn live_stacks() -> usize {
    world().lock().stacks
}

/// Guard pages not given back.
pub fn guarded_pages() -> usize {
    world().lock().guarded.len()
}

/// Makes every later `guard_page` fail (a platform that cannot unmap).
pub fn refuse_guard_pages() {
    world().lock().guard_ok = false;
}

/// At most `n` stacks at a time (then `alloc_stack` fails).
pub fn limit_stacks(n: usize) {
    world().lock().stack_limit = n;
}

/// How many times the policy was handed `task`.
pub fn enqueues(task: TaskId) -> u64 {
    world().lock().enqueues.get(task.0).copied().unwrap_or(0)
}

/// Records a broken invariant (checked by [`finish`]); never panics, so it is safe anywhere.
pub fn violation(message: String) {
    world().lock().failures.push(message);
}

/// Runs `action` as another CPU would, at the first step from `at` on where no CPU state is
/// locked.
pub fn remote_at(at: u64, action: impl FnOnce() + Send + 'static) {
    world().lock().events.push(Event {
        at,
        interrupt: false,
        action: Box::new(action),
    });
}

/// A timer interrupt at the first step from `at` on with interrupts enabled: the clock moves
/// to `to` (if later), then the runtime's tick runs, as the platform's handler calls it.
pub fn tick_at(at: u64, to: u64) {
    let w = world();
    let tick = w.tick;
    w.lock().events.push(Event {
        at,
        interrupt: true,
        action: Box::new(move || {
            advance_to(to);
            tick();
        }),
    });
}

/// A place where the running thread's own code could be interrupted (counts as a step).
pub fn step() {
    hook();
}

/// The end of a scenario (on `main`): the events not delivered yet run now, in order, then the
/// world's invariants are checked: no recorded violation, every stack and guard page given
/// back except `stacks_left` (threads not reaped yet), interrupts enabled.
pub fn finish(stacks_left: usize) -> u64 {
    loop {
        let event = {
            let w = world();
            let mut s = w.lock();
            let Some(i) = (0..s.events.len()).min_by_key(|&i| (s.events[i].at, i)) else {
                break;
            };
            s.events.remove(i)
        };
        deliver(event);
    }
    let w = world();
    let s = w.lock();
    assert!(s.failures.is_empty(), "violations: {:#?}", s.failures);
    assert!(s.irq, "main ended with interrupts masked");
    assert_eq!(s.stacks, stacks_left, "stacks still allocated");
    assert!(
        s.guarded.len() <= stacks_left,
        "guard pages not given back: {}",
        s.guarded.len()
    );
    s.steps
}

/// Runs `body` as a thread body that records a panic as a violation (a panic may not unwind
/// into the runtime's `extern "C"` entry) and then stops the world.
pub fn checked(body: impl FnOnce() + Send + 'static) -> Box<dyn FnOnce() + Send> {
    Box::new(move || {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            let message = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let w = world();
            let mut s = w.lock();
            s.failures.push(format!("a thread panicked: {message}"));
            s.aborted = true;
            w.cv.notify_all();
            drop(s);
            // The runtime's state is not to be trusted after a panic inside it: stay here.
            loop {
                std::thread::park();
            }
        }
    })
}

fn deliver(event: Event) {
    let w = world();
    w.lock().delivering = true;
    if event.interrupt {
        let irq = std::mem::replace(&mut w.lock().irq, false);
        (event.action)();
        let mut s = w.lock();
        s.irq = irq;
        s.delivering = false;
    } else {
        (event.action)();
        w.lock().delivering = false;
    }
}

/// A step: counts it, then delivers the events that are due and may run here.
fn hook() {
    let w = world();
    let mut s = w.lock();
    s.steps += 1;
    loop {
        if s.delivering || (w.is_locked)() {
            return;
        }
        let (steps, irq) = (s.steps, s.irq);
        let Some(i) = s
            .events
            .iter()
            .position(|e| e.at <= steps && (!e.interrupt || irq))
        else {
            return;
        };
        let event = s.events.remove(i);
        drop(s);
        deliver(event);
        s = w.lock();
    }
}

/// The contract checks around a policy: a task is never handed over while it is already
/// ready (woken twice), and the counts of [`enqueues`].
#[derive(Debug)]
pub struct Checked<Pol> {
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
            violation(format!("{task:?} enqueued while already ready"));
        }
        self.ready.push(task);
        let w = world();
        let mut s = w.lock();
        if s.enqueues.len() <= task.0 {
            s.enqueues.resize(task.0 + 1, 0);
        }
        s.enqueues[task.0] += 1;
        drop(s);
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

// SAFETY: stacks are host allocations owned until freed; guard pages are only recorded (and
// `guard_page` returns whether it recorded one); `prepare_stack`/`switch` hand a baton between
// host threads so that exactly the resumed context runs, as a real switch does.
unsafe impl<Pol: Policy + Send + 'static> Machine for Sim<Pol> {
    type Platform = SimPlatform;
    type Policy = Checked<Pol>;

    fn runtime() -> &'static Runtime<Self> {
        world()
            .runtime
            .downcast_ref::<Runtime<Self>>()
            .expect("the world's runtime has this machine's policy")
    }

    fn alloc_stack(pages: usize) -> Option<Frames> {
        let w = world();
        let mut s = w.lock();
        if s.stacks >= s.stack_limit {
            return None;
        }
        s.stacks += 1;
        let layout = std::alloc::Layout::from_size_align(pages * FRAME_SIZE, FRAME_SIZE).ok()?;
        // SAFETY: a non-zero size.
        let p = std::ptr::NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        // SAFETY: `pages` frames just allocated, aligned, owned by the caller.
        Some(unsafe { Frames::from_raw(p, pages) })
    }

    unsafe fn free_stack(frames: Frames) {
        world().lock().stacks -= 1;
        let layout = std::alloc::Layout::from_size_align(frames.len(), FRAME_SIZE)
            .expect("the layout alloc_stack used");
        // SAFETY: allocated by `alloc_stack` with this layout; the caller gives it back.
        unsafe { std::alloc::dealloc(frames.as_ptr(), layout) }
    }

    unsafe fn guard_page(page: u64) -> bool {
        let w = world();
        let mut s = w.lock();
        if !s.guard_ok {
            return false;
        }
        if !s.guarded.insert(page) {
            s.failures.push(format!("page {page:#x} guarded twice"));
        }
        true
    }

    unsafe fn unguard_page(page: u64) {
        let w = world();
        let mut s = w.lock();
        if !s.guarded.remove(&page) {
            s.failures
                .push(format!("page {page:#x} unguarded but not guarded"));
        }
    }

    unsafe fn prepare_stack(top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
        assert_eq!(top % 16, 0, "stack top not 16-byte aligned");
        let w = world();
        let id = {
            let mut s = w.lock();
            s.next_ctx += 1;
            s.next_ctx
        };
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                WORLD.set(Some(w.clone()));
                CTX.set(id);
                let mut s = w.lock();
                while s.baton != id {
                    s = w.cv.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                drop(s);
                entry(arg)
            })
            .expect("a host thread for a simulated thread");
        id
    }

    unsafe fn switch(from_sp: *mut u64, to_sp: u64) {
        hook();
        let me = CTX.get();
        // SAFETY: the caller's contract: `from_sp` is valid until the switch back.
        unsafe { *from_sp = me };
        let w = world();
        let mut s = w.lock();
        assert!(!s.irq, "switch with interrupts enabled");
        s.delivering = false;
        s.baton = to_sp;
        w.cv.notify_all();
        while s.baton != me {
            if s.aborted && me == 0 {
                let failures = s.failures.join("\n");
                drop(s);
                panic!("{failures}");
            }
            s = w.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Platform for SimPlatform {
    platform::fake_platform_unused_items!();

    fn now_ns() -> Option<u64> {
        hook();
        Some(world().lock().now)
    }

    fn set_timer(deadline_ns: u64) -> bool {
        hook();
        world().lock().armed = Some(deadline_ns);
        true
    }

    fn interrupts_disable() -> bool {
        hook();
        std::mem::replace(&mut world().lock().irq, false)
    }

    fn interrupts_restore(enabled: bool) {
        world().lock().irq = enabled;
        hook();
    }

    /// Enables interrupts and waits for one: the next event by step (whatever its step: time passes
    /// while the CPU idles), else the armed timer (the clock jumps to it). With neither, the
    /// real CPU would sleep for ever: a lost wake-up or a deadlock, reported.
    fn idle() {
        let w = world();
        let mut s = w.lock();
        assert!(!s.irq, "idle called with interrupts enabled");
        s.idles += 1;
        // The earliest event by step (the first scheduled among equals).
        let first = (0..s.events.len()).min_by_key(|&i| (s.events[i].at, i));
        let event = first.map(|i| s.events.remove(i));
        let armed = s.armed.take();
        drop(s);
        match (event, armed) {
            (Some(event), armed) => {
                w.lock().armed = armed;
                deliver(event);
            }
            (None, Some(deadline)) => {
                advance_to(deadline);
                deliver(Event {
                    at: 0,
                    interrupt: true,
                    action: Box::new(w.tick),
                });
            }
            (None, None) => {
                violation(
                    "idle with nothing armed or pending: the CPU would sleep for ever".into(),
                );
                panic!("idle with nothing armed or pending: the CPU would sleep for ever");
            }
        }
        w.lock().irq = true;
    }
}
