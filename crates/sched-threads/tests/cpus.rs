//! The runtime on several CPUs at once, for real: each simulated CPU is a host thread that runs
//! whichever context holds that CPU's baton, so contexts run in parallel on the host and
//! migrate between CPUs as the runtime decides. Workloads (a mutex count with yields, a
//! channel, sleepers, park/unpark ping-pong, threads bound to each CPU) run under `coop` and
//! `preempt` on 4 CPUs, with
//! checks that no context ever holds two CPUs, that nothing is lost, and that each workload ends
//! (a lost wake-up would hang it: a watchdog fails the test after 60 s).
//!
//! Not exhaustive (the interleavings are the host's); `interleavings.rs` explores one CPU's
//! exhaustively.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use heap::{FRAME_SIZE, Frames};
use platform::Platform;
use platform::irq::CpuId;
use sched::Policy;
use sched_coop::Coop;
use sched_preempt::Preempt;
use sched_threads::sync::{Mutex as SchedMutex, channel};
use sched_threads::{Machine, Runtime};

const CPUS: usize = 4;
/// The context id of `main`.
const MAIN: u64 = 999;

#[derive(Default)]
struct CpuState {
    /// The context that runs on this CPU.
    baton: u64,
    irq: bool,
    armed: Option<u64>,
    kicked: bool,
}

struct World {
    state: Mutex<(Vec<CpuState>, u64, Vec<String>)>,
    cv: Condvar,
    start: Instant,
    runtime: &'static (dyn Any + Send + Sync),
    tick: fn(),
}

thread_local! {
    static WORLD: RefCell<Option<Arc<World>>> = const { RefCell::new(None) };
    static CTX: Cell<u64> = const { Cell::new(0) };
    static CPU: Cell<usize> = const { Cell::new(0) };
}

fn world() -> Arc<World> {
    WORLD.with_borrow(|w| w.clone().expect("a world on this thread"))
}

type Guard<'a> = std::sync::MutexGuard<'a, (Vec<CpuState>, u64, Vec<String>)>;

impl World {
    fn lock(&self) -> Guard<'_> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until some CPU's baton names this context; returns that CPU.
    fn wait_for_a_cpu(&self, mut s: Guard<'_>, me: u64) -> usize {
        loop {
            let holders: Vec<usize> = (0..CPUS).filter(|&c| s.0[c].baton == me).collect();
            match holders.as_slice() {
                [c] => return *c,
                [] => s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                many => {
                    let message = format!("context {me} holds CPUs {many:?} at once");
                    s.2.push(message);
                    return many[0];
                }
            }
        }
    }
}

struct Par<Pol>(PhantomData<Pol>);
struct ParPlatform;

fn now_ns() -> u64 {
    world().start.elapsed().as_nanos() as u64 + 1_000_000_000
}

impl Platform for ParPlatform {
    platform::fake_platform_unused_items!();

    fn now_ns() -> Option<u64> {
        Some(now_ns())
    }

    fn set_timer(deadline_ns: u64) -> bool {
        world().lock().0[CPU.get()].armed = Some(deadline_ns);
        true
    }

    fn interrupts_disable() -> bool {
        std::mem::replace(&mut world().lock().0[CPU.get()].irq, false)
    }

    /// Enabling interrupts delivers a timer interrupt that is due, as the hardware would.
    fn interrupts_restore(enabled: bool) {
        if !enabled {
            return;
        }
        let w = world();
        let due = {
            let mut s = w.lock();
            let cpu = &mut s.0[CPU.get()];
            cpu.irq = true;
            cpu.armed.is_some_and(|d| d <= now_ns())
        };
        if due {
            interrupt(&w);
        }
    }

    fn idle() {
        let w = world();
        let mut s = w.lock();
        let c = CPU.get();
        s.0[c].irq = true;
        loop {
            if std::mem::take(&mut s.0[c].kicked) {
                return;
            }
            let now = now_ns();
            match s.0[c].armed {
                Some(d) if d <= now => {
                    drop(s);
                    interrupt(&w);
                    return;
                }
                Some(d) => {
                    let wait = Duration::from_nanos((d - now).min(1_000_000));
                    s =
                        w.cv.wait_timeout(s, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                }
                None => {
                    s =
                        w.cv.wait_timeout(s, Duration::from_millis(1))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                }
            }
        }
    }

    fn current_cpu() -> CpuId {
        CpuId(CPU.get() as u32)
    }

    fn send_ipi(cpu: CpuId) -> bool {
        let w = world();
        w.lock().0[cpu.0 as usize].kicked = true;
        w.cv.notify_all();
        true
    }
}

/// The timer interrupt on this CPU: masked while the runtime's tick runs (which may switch).
fn interrupt(w: &World) {
    {
        let mut s = w.lock();
        let cpu = &mut s.0[CPU.get()];
        cpu.armed = None;
        cpu.irq = false;
    }
    (w.tick)();
    w.lock().0[CPU.get()].irq = true;
}

// SAFETY: stacks are host allocations owned until freed; guard pages always "succeed" (nothing
// touches them); `prepare_stack`/`switch` hand a CPU's baton between host threads so that each
// CPU runs exactly the context the runtime resumed there.
unsafe impl<Pol: Policy + Send + 'static> Machine for Par<Pol> {
    type Platform = ParPlatform;
    type Policy = Pol;
    const CPUS: usize = CPUS;

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
            s.1 += 1;
            s.1
        };
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                WORLD.set(Some(w.clone()));
                CTX.set(id);
                let s = w.lock();
                let c = w.wait_for_a_cpu(s, id);
                CPU.set(c);
                entry(arg)
            })
            .expect("a host thread for a simulated thread");
        id
    }

    unsafe fn switch(from_sp: *mut u64, to_sp: u64) {
        let w = world();
        let me = CTX.get();
        let c = CPU.get();
        let mut s = w.lock();
        if (0..CPUS).any(|o| o != c && s.0[o].baton == to_sp) {
            let message = format!("context {to_sp} resumed on CPU {c} while it runs elsewhere");
            s.2.push(message);
        }
        // Saved: written last, with the CPU handed over in the same step (as the real switch
        // stores the stack pointer once the registers are on the stack).
        // SAFETY: the caller's contract: `from_sp` is valid until the switch back.
        unsafe { *from_sp = me };
        s.0[c].baton = to_sp;
        w.cv.notify_all();
        let c = w.wait_for_a_cpu(s, me);
        CPU.set(c);
    }
}

/// A world with `CPUS` CPUs running `Pol`: this thread is CPU 0's `main`, the others start
/// their idle contexts. Returns the runtime.
fn boot<Pol: Policy + Send + 'static>() -> &'static Runtime<Par<Pol>> {
    let runtime: &'static Runtime<Par<Pol>> = Box::leak(Box::new(Runtime::new()));
    let mut cpus: Vec<CpuState> = (0..CPUS).map(|_| CpuState::default()).collect();
    for (c, cpu) in cpus.iter_mut().enumerate() {
        // Contexts 1000.. are the CPUs' own (idle) contexts, 999 is main on CPU 0 (never 0: a
        // saved stack pointer of 0 means "not saved yet" to the runtime).
        cpu.baton = if c == 0 { MAIN } else { 1000 + c as u64 };
    }
    let w = Arc::new(World {
        state: Mutex::new((cpus, 2000, Vec::new())),
        cv: Condvar::new(),
        start: Instant::now(),
        runtime,
        tick: || Par::<Pol>::runtime().timer_tick(),
    });
    WORLD.set(Some(w.clone()));
    CTX.set(MAIN);
    CPU.set(0);
    runtime.init(10_000_000);
    for c in 1..CPUS {
        let w = w.clone();
        std::thread::spawn(move || {
            WORLD.set(Some(w));
            CTX.set(1000 + c as u64);
            CPU.set(c);
            Par::<Pol>::runtime().run_cpu()
        });
    }
    runtime
}

fn failures() -> Vec<String> {
    world().lock().2.clone()
}

/// The workloads, on `main` of a fresh world.
fn workloads<Pol: Policy + Send + 'static>() {
    let rt = boot::<Pol>();
    let spawn = |f: Box<dyn FnOnce() + Send>| rt.spawn(None, 64 * 1024, f).expect("a stack");

    // A mutex count: 100 threads x 50 increments, a yield inside the critical section.
    let count: &'static SchedMutex<Par<Pol>, u64> = Box::leak(Box::new(SchedMutex::new(0)));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            spawn(Box::new(move || {
                for _ in 0..50 {
                    let mut c = count.lock();
                    let v = *c;
                    Par::<Pol>::runtime().yield_now();
                    *c = v + 1;
                }
            }))
        })
        .collect();
    for (t, id, _) in threads {
        rt.wait_exit(t, id);
    }
    assert_eq!(*count.lock(), 5_000, "the mutex count");

    // A channel: 4 producers x 500 items, each received once.
    let (tx, rx) = channel::<Par<Pol>, u64>(8);
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let tx = tx.clone();
            spawn(Box::new(move || {
                for i in 0..500 {
                    tx.send(p * 1000 + i).expect("the receiver lives");
                }
            }))
        })
        .collect();
    drop(tx);
    let mut got: Vec<u64> = std::iter::from_fn(|| rx.recv().ok()).collect();
    for (t, id, _) in producers {
        rt.wait_exit(t, id);
    }
    got.sort_unstable();
    let want: Vec<u64> = (0..4u64)
        .flat_map(|p| (0..500).map(move |i| p * 1000 + i))
        .collect();
    assert_eq!(got, want, "every item exactly once");

    // Sleepers: none wakes early, none is lost.
    let woke = Arc::new(AtomicUsize::new(0));
    let sleepers: Vec<_> = (0..20u64)
        .map(|i| {
            let woke = woke.clone();
            spawn(Box::new(move || {
                let deadline = now_ns() + (i % 5 + 1) * 1_000_000;
                Par::<Pol>::runtime().sleep_until(deadline);
                assert!(now_ns() >= deadline, "a sleep ended early");
                woke.fetch_add(1, Ordering::SeqCst);
            }))
        })
        .collect();
    for (t, id, _) in sleepers {
        rt.wait_exit(t, id);
    }
    assert_eq!(woke.load(Ordering::SeqCst), 20);

    // Park/unpark ping-pong between two threads on (likely) different CPUs.
    let turn = Arc::new(AtomicU64::new(0));
    let ids: Arc<Mutex<[Option<sched::TaskId>; 2]>> = Arc::new(Mutex::new([None; 2]));
    let players: Vec<_> = (0..2u64)
        .map(|me| {
            let (turn, ids) = (turn.clone(), ids.clone());
            spawn(Box::new(move || {
                let rt = Par::<Pol>::runtime();
                ids.lock().expect("ids")[me as usize] = Some(rt.current());
                for round in 0..500u64 {
                    while turn.load(Ordering::SeqCst) != round * 2 + me {
                        rt.park();
                    }
                    turn.fetch_add(1, Ordering::SeqCst);
                    loop {
                        let other = ids.lock().expect("ids")[1 - me as usize];
                        if let Some(other) = other {
                            rt.unpark(other);
                            break;
                        }
                        rt.yield_now();
                    }
                }
            }))
        })
        .collect();
    for (t, id, _) in players {
        rt.wait_exit(t, id);
    }
    assert_eq!(turn.load(Ordering::SeqCst), 1000);

    // Threads bound to each CPU stay there across yields and sleeps; a CPU that does not run
    // threads cannot be asked for.
    let strays = Arc::new(AtomicUsize::new(0));
    let bound: Vec<_> = (0..CPUS)
        .map(|cpu| {
            let strays = strays.clone();
            let f: Box<dyn FnOnce() + Send> = Box::new(move || {
                let rt = Par::<Pol>::runtime();
                for i in 0..100u64 {
                    if CPU.get() != cpu {
                        strays.fetch_add(1, Ordering::SeqCst);
                    }
                    if i % 10 == 0 {
                        rt.sleep_until(now_ns() + 100_000);
                    } else {
                        rt.yield_now();
                    }
                }
            });
            rt.spawn_on(cpu, None, 64 * 1024, f).expect("a stack")
        })
        .collect();
    for (t, id, _) in bound {
        rt.wait_exit(t, id);
    }
    assert_eq!(
        strays.load(Ordering::SeqCst),
        0,
        "a bound thread ran elsewhere"
    );
    assert!(
        rt.spawn_on(CPUS, None, 64 * 1024, Box::new(|| ())).is_err(),
        "bound to a CPU that does not exist"
    );

    let failures = failures();
    assert!(failures.is_empty(), "violations: {failures:#?}");
}

/// Runs `f` on a host thread of its own; fails when it panics or has not ended after a minute
/// (a lost wake-up leaves a workload waiting for ever).
fn within_a_minute(f: fn()) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .expect("a host thread");
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the workloads did not end within a minute: a lost wake-up?")
        }
        Err(_) => panic!("the workloads panicked (see above)"),
    }
}

#[test]
fn coop_on_four_cpus_loses_nothing_and_never_runs_a_thread_twice() {
    within_a_minute(workloads::<Coop>);
}

#[test]
fn preempt_on_four_cpus_loses_nothing_and_never_runs_a_thread_twice() {
    within_a_minute(workloads::<Preempt>);
}
