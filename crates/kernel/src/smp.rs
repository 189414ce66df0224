//! The CPUs after the boot CPU (profile setting `cpus` above 1): each gets its stacks from the
//! frame allocator before the heap takes the rest, then the platform starts it
//! (`Platform::start_cpus`) and it waits in the platform's idle for work.
//!
//! Each started CPU's stacks (its own, for its idle context and interrupts, and its
//! double-fault stack) have a guard page below them.
//!
//! With threads (`coop`, `preempt`) each started CPU joins the thread runtime
//! (`threads::run_cpu`); with `async` it runs spawned tasks (`Executor::run_worker`); with
//! neither, it idles. Either way an idle CPU also runs the jobs the tests
//! give it ([`start_on`], [`join`]: one function call at a time per CPU, run outside interrupt
//! context, on the CPU's own stack), woken by an inter-processor interrupt.

use crate::config;
use crate::select::SelectedPlatform;
use arch_x86_64::percpu::MAX_CPUS;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use platform::irq::CpuId;
use platform::{CpuStacks, FreeMemory, PAGE_SIZE, Platform};

/// A job for one CPU: a function, its argument and its result.
struct Job {
    func: AtomicUsize,
    arg: AtomicUsize,
    result: AtomicUsize,
    state: AtomicU8,
}

/// No job (the CPU's slot is free).
const FREE: u8 = 0;
/// Given, not done yet.
const GIVEN: u8 = 1;
/// Done: the result is there.
const DONE: u8 = 2;
/// Being given (by one `start_on`).
const CLAIMED: u8 = 3;

static JOBS: [Job; MAX_CPUS] = [const {
    Job {
        func: AtomicUsize::new(0),
        arg: AtomicUsize::new(0),
        result: AtomicUsize::new(0),
        state: AtomicU8::new(FREE),
    }
}; MAX_CPUS];

/// How many CPUs run (0 before `start`: one).
static UP: AtomicUsize = AtomicUsize::new(0);

/// How many CPUs run, the boot CPU included.
pub fn cpus() -> usize {
    UP.load(Ordering::Acquire).max(1)
}

/// Gives CPU `cpu` (not the boot CPU) the job `f(arg)`, which it runs as soon as it is idle.
/// False when the CPU is not up or still has a job ([`join`] it first).
pub fn start_on(cpu: usize, f: fn(usize) -> usize, arg: usize) -> bool {
    if cpu == 0 || cpu >= cpus() {
        return false;
    }
    let job = &JOBS[cpu];
    if job
        .state
        .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    job.func.store(f as usize, Ordering::Relaxed);
    job.arg.store(arg, Ordering::Relaxed);
    job.state.store(GIVEN, Ordering::Release);
    SelectedPlatform::send_ipi(CpuId(cpu as u32));
    true
}

/// Waits for the job given to CPU `cpu` and returns its result (`None`: it has none).
pub fn join(cpu: usize) -> Option<usize> {
    let job = JOBS.get(cpu)?;
    loop {
        match job.state.load(Ordering::Acquire) {
            FREE | CLAIMED => return None,
            DONE => break,
            _ => core::hint::spin_loop(),
        }
    }
    let result = job.result.load(Ordering::Relaxed);
    job.state.store(FREE, Ordering::Release);
    Some(result)
}

/// Bytes of each started CPU's own stack (its idle loop and the interrupts it takes there).
const STACK_SIZE: u64 = 16 * 1024;

/// Starts up to `config::CPUS - 1` more CPUs, of the `machine` CPUs the platform found, and
/// says how many run.
pub fn start(free: &mut FreeMemory, machine: usize) {
    let fault = arch_x86_64::percpu::IST_STACK_SIZE as u64;
    // [guard][double-fault stack][guard][stack]: an overflow of either faults on its guard
    // page (the double-fault handler reports it) instead of running into other memory.
    let mut stacks = |_: CpuId| -> Option<CpuStacks> {
        let pages = (PAGE_SIZE + fault + PAGE_SIZE + STACK_SIZE) / PAGE_SIZE;
        let base = free.alloc_frames(pages).ok()?.0;
        let stack_guard = base + PAGE_SIZE + fault;
        for guard in [base, stack_guard] {
            let mut table = || free.alloc_frames(1).ok().map(|p| p.0);
            // SAFETY: the page is the lowest of a stack just taken from free memory, owned by
            // the CPU about to start and never touched (nor mapped again) by anyone; the table
            // frames come from free memory too, and the tables keep them.
            if !unsafe { SelectedPlatform::unmap_page(guard, &mut table) } {
                log::debug!("no guard page below a CPU's stack at {guard:#x}");
            }
        }
        Some(CpuStacks {
            fault: base + PAGE_SIZE + fault,
            stack: stack_guard + PAGE_SIZE + STACK_SIZE,
        })
    };
    let up = SelectedPlatform::start_cpus(&mut stacks, other_cpu);
    UP.store(up, Ordering::Release);
    let wanted = config::CPUS.min(machine);
    let cpus = if up == 1 { "CPU" } else { "CPUs" };
    if up < wanted {
        log::warn!(
            "only {up} of {wanted} CPUs up (the machine has {machine}; profile setting cpus = {})",
            config::CPUS
        );
    } else {
        log::info!(
            "{up} {cpus} up (the machine has {machine}; profile setting cpus = {})",
            config::CPUS
        );
    }
}

/// Runs the job [`start_on`] gave CPU `cpu`, if there is one (interrupts enabled while it runs).
pub fn run_job(cpu: usize) {
    let Some(job) = JOBS.get(cpu) else { return };
    if job.state.load(Ordering::Acquire) != GIVEN {
        return;
    }
    let was = SelectedPlatform::interrupts_disable();
    SelectedPlatform::interrupts_restore(true);
    let f = job.func.load(Ordering::Relaxed);
    // SAFETY: `start_on` stored a `fn(usize) -> usize` before it marked the job given.
    let f: fn(usize) -> usize = unsafe { core::mem::transmute::<usize, fn(usize) -> usize>(f) };
    job.result
        .store(f(job.arg.load(Ordering::Relaxed)), Ordering::Relaxed);
    job.state.store(DONE, Ordering::Release);
    if !was {
        SelectedPlatform::interrupts_disable();
    }
}

/// Runs the calling CPU's job, if it has one (the async executor's idle work).
#[cfg(feature = "scheduler-async")]
fn run_own_job() {
    run_job(SelectedPlatform::current_cpu().0 as usize);
}

/// What a started CPU runs once the platform set it up (interrupts masked): with threads, the
/// scheduler's idle context (it runs threads, and the jobs [`start_on`] gives it when idle);
/// without, it idles and runs the jobs.
fn other_cpu(cpu: CpuId) -> ! {
    log::debug!("CPU {} up", cpu.0);
    #[cfg(feature = "threads")]
    crate::threads::run_cpu();
    #[cfg(feature = "scheduler-async")]
    crate::select::EXECUTOR.run_worker(run_own_job);
    #[cfg(not(any(feature = "threads", feature = "scheduler-async")))]
    loop {
        // Checked with interrupts masked: the platform's idle enables them and halts in one
        // step, so the IPI that comes with a job given after this check ends the halt.
        SelectedPlatform::interrupts_disable();
        if JOBS[cpu.0 as usize % MAX_CPUS]
            .state
            .load(Ordering::Acquire)
            == GIVEN
        {
            run_job(cpu.0 as usize);
        } else {
            SelectedPlatform::idle();
        }
    }
}
