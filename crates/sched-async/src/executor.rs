//! The executor: task slab, ready queue, wakers, the run loop and its idling.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use platform::Platform;

use crate::join::{self, JoinHandle};
use crate::time::{Elapsed, Sleep, Timers};

/// A spawned task's future, boxed; it completes its [`JoinHandle`] itself.
type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The slab index that names [`Executor::block_on`]'s own future (never a slab slot).
const MAIN_INDEX: u32 = u32::MAX;

/// The executor's spin locks: with the platform's back-off for virtual CPUs (a CPU that finds
/// one held by a descheduled vCPU yields to the hypervisor now and then; with one CPU they are
/// never contended).
type Lock<T, P> = spin::mutex::SpinMutex<T, platform::relax::Backoff<P, true>>;

/// An executor of [`Future`] tasks on one CPU, over the platform `P` (its clock, one-shot
/// timer, interrupt masking and idle). Meant to be one `static`:
/// `static EXECUTOR: Executor<SelectedPlatform> = Executor::new();`. See the crate docs for
/// the design.
pub struct Executor<P: 'static> {
    /// Tasks woken and not yet polled, FIFO. Taken with interrupts masked (wakers may run in
    /// interrupt handlers).
    ready: Lock<VecDeque<Arc<TaskWaker<P>>>, P>,
    /// The spawned tasks' futures.
    tasks: Lock<Slab, P>,
    /// Sleeping futures by deadline.
    pub(crate) timers: Lock<Timers, P>,
    /// Whether [`Executor::block_on`] is running (it must not nest).
    running: AtomicBool,
    /// `block_on`'s own future was woken (it is polled only where `block_on` runs, never in
    /// the ready queue another CPU takes from).
    main_woken: AtomicBool,
    /// The CPU `block_on` runs on.
    main_cpu: AtomicU32,
    /// Per CPU (bit n: CPU n), whether it idles waiting for work (other CPUs than `block_on`'s
    /// run [`Executor::run_worker`]).
    idle_cpus: AtomicU32,
    /// Generation of the next [`Executor::block_on`]'s main-future id.
    main_generation: AtomicU32,
    polls: AtomicU64,
    idles: AtomicU64,
    tasks_spawned: AtomicU64,
    tasks_finished: AtomicU64,
    timers_fired: AtomicU64,
    _platform: PhantomData<fn() -> P>,
}

/// Counters for benchmarks and tests, from [`Executor::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Futures polled (spawned tasks and `block_on`'s own future).
    pub polls: u64,
    /// Times the executor idled in [`Platform::idle`] because nothing was ready.
    pub idles: u64,
    /// Tasks spawned.
    pub tasks_spawned: u64,
    /// Spawned tasks that ran to completion.
    pub tasks_finished: u64,
    /// Sleeps the timer queue woke because their deadline passed.
    pub timers_fired: u64,
}

impl<P: Platform + 'static> fmt::Debug for Executor<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("running", &self.running.load(Ordering::Relaxed))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<P: Platform + 'static> Default for Executor<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Platform + 'static> Executor<P> {
    /// An executor with no tasks (`const`, for a `static`).
    pub const fn new() -> Self {
        Executor {
            ready: Lock::new(VecDeque::new()),
            tasks: Lock::new(Slab::new()),
            timers: Lock::new(Timers::new()),
            running: AtomicBool::new(false),
            main_woken: AtomicBool::new(false),
            main_cpu: AtomicU32::new(0),
            idle_cpus: AtomicU32::new(0),
            main_generation: AtomicU32::new(0),
            polls: AtomicU64::new(0),
            idles: AtomicU64::new(0),
            tasks_spawned: AtomicU64::new(0),
            tasks_finished: AtomicU64::new(0),
            timers_fired: AtomicU64::new(0),
            _platform: PhantomData,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ExecutorStats {
        ExecutorStats {
            polls: self.polls.load(Ordering::Relaxed),
            idles: self.idles.load(Ordering::Relaxed),
            tasks_spawned: self.tasks_spawned.load(Ordering::Relaxed),
            tasks_finished: self.tasks_finished.load(Ordering::Relaxed),
            timers_fired: self.timers_fired.load(Ordering::Relaxed),
        }
    }

    /// Spawned tasks that have not completed (including those left over by an earlier
    /// [`Executor::block_on`]).
    pub fn live_tasks(&self) -> usize {
        self.tasks.lock().live
    }

    /// Sleeps waiting on the timer queue.
    pub fn pending_timers(&self) -> usize {
        self.timers.lock().len()
    }
}

impl<P: Platform + 'static> Executor<P> {
    /// Runs `future` and every spawned task until `future` completes, and returns its output.
    ///
    /// Idles (see the crate docs) whenever no task is ready. Spawned tasks that are still
    /// pending when `future` completes are kept, not polled and not dropped: they go on at the
    /// next `block_on`.
    ///
    /// # Panics
    /// When called from inside `block_on` (from a task).
    pub fn block_on<F: Future>(&'static self, future: F) -> F::Output {
        let _running = RunningGuard::enter(&self.running);
        let mut future = pin!(future);
        let generation = self.main_generation.fetch_add(1, Ordering::Relaxed);
        let main_id = TaskId::new(MAIN_INDEX, generation);
        let main = Arc::new(TaskWaker {
            id: main_id,
            queued: AtomicBool::new(false),
            executor: self,
        });
        let main_waker = Waker::from(main);
        self.main_cpu.store(P::current_cpu().0, Ordering::Relaxed);
        self.main_woken.store(true, Ordering::Release);
        loop {
            if self.main_woken.swap(false, Ordering::AcqRel) {
                self.polls.fetch_add(1, Ordering::Relaxed);
                let mut cx = Context::from_waker(&main_waker);
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return output;
                }
            }
            // One round: the tasks that are ready now, in FIFO order.
            for _ in 0..self.ready_len() {
                let Some(task) = self.pop_ready() else {
                    break;
                };
                self.run_task(task);
            }
            self.fire_timers();
            self.wait(true);
        }
    }

    /// Runs spawned tasks on the calling CPU, for good: a CPU other than `block_on`'s (the
    /// kernel's CPUs after the first, with `scheduler = "async"`). Tasks are taken from the one
    /// ready queue, so a task runs wherever a CPU is free, one CPU at a time. `idle_work` runs
    /// whenever the CPU wakes (the kernel's test jobs).
    pub fn run_worker(&'static self, idle_work: fn()) -> ! {
        loop {
            idle_work();
            for _ in 0..self.ready_len().max(1) {
                let Some(task) = self.pop_ready() else {
                    break;
                };
                self.run_task(task);
            }
            self.fire_timers();
            self.wait(false);
        }
    }

    /// Starts running `future` as a task of its own (at the next round of
    /// [`Executor::block_on`]) and returns a handle that resolves to its output.
    ///
    /// The future must be `Send` so that the executor can be a `static` (see the crate docs).
    pub fn spawn<F>(&'static self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (handle, completer) = join::pair();
        let task: TaskFuture = Box::pin(async move { completer.complete(future.await) });
        let id = self.tasks.lock().insert(task);
        self.tasks_spawned.fetch_add(1, Ordering::Relaxed);
        self.push_ready(Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
            executor: self,
        }));
        handle
    }

    /// A future that completes `ns` nanoseconds from now (at once without a clock).
    pub fn sleep(&'static self, ns: u64) -> Sleep<P> {
        let deadline = P::now_ns().map_or(0, |now| now.saturating_add(ns));
        Sleep::new(self, deadline)
    }

    /// A future that completes once the clock ([`Platform::now_ns`]) reads `deadline_ns` or
    /// later (at once without a clock).
    pub fn sleep_until(&'static self, deadline_ns: u64) -> Sleep<P> {
        Sleep::new(self, deadline_ns)
    }

    /// Runs `future` for at most `ns` nanoseconds from now: its output, or [`Elapsed`] (and
    /// `future` dropped) when the time ran out first. The deadline is taken now, not at the
    /// first poll.
    pub fn timeout<F: Future>(
        &'static self,
        ns: u64,
        future: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> {
        timeout_at(self.sleep(ns), future)
    }

    /// Like [`Executor::timeout`], with the deadline on the [`Platform::now_ns`] clock.
    pub fn timeout_until<F: Future>(
        &'static self,
        deadline_ns: u64,
        future: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> {
        timeout_at(self.sleep_until(deadline_ns), future)
    }

    /// Polls the spawned task `task` names, if it has not completed.
    fn run_task(&self, task: Arc<TaskWaker<P>>) {
        let id = task.id;
        // A stale wake of a completed task (its slot is vacant or reused) finds nothing.
        let Some(mut future) = self.tasks.lock().take(id) else {
            return;
        };
        self.polls.fetch_add(1, Ordering::Relaxed);
        let waker = Waker::from(task);
        let mut cx = Context::from_waker(&waker);
        let done = future.as_mut().poll(&mut cx).is_ready();
        let mut tasks = self.tasks.lock();
        if done {
            tasks.finish(id);
            drop(tasks);
            // The future's own drop (its captures) runs outside the lock.
            drop(future);
            self.tasks_finished.fetch_add(1, Ordering::Relaxed);
        } else if tasks.put_back(id, future) {
            drop(tasks);
            waker.wake();
        }
    }

    /// Wakes the sleeps whose deadline passed (reads the clock only when there are any).
    fn fire_timers(&self) {
        if self.timers.lock().is_empty() {
            return;
        }
        let Some(now) = P::now_ns() else {
            return;
        };
        // One at a time, each wake outside the lock.
        loop {
            let Some(waker) = self.timers.lock().pop_expired(now) else {
                break;
            };
            self.timers_fired.fetch_add(1, Ordering::Relaxed);
            waker.wake();
        }
    }

    /// Waits for something to become ready when nothing is: the timer armed for the earliest
    /// deadline and the CPU idle until an interrupt, or (without a timer) one spin of polling.
    fn wait(&self, main: bool) {
        let enabled = P::interrupts_disable();
        let me = 1u32 << (P::current_cpu().0 % 32);
        // Marked idle first: a wake from now on sees the mark and interrupts this CPU.
        self.idle_cpus.fetch_or(me, Ordering::AcqRel);
        // With interrupts masked, no waker can slip in between this check and `idle`.
        if !self.ready.lock().is_empty() || main && self.main_woken.load(Ordering::Acquire) {
            self.idle_cpus.fetch_and(!me, Ordering::AcqRel);
            P::interrupts_restore(enabled);
            return;
        }
        let next = self.timers.lock().next_deadline();
        if let Some(deadline) = next
            && !P::set_timer(deadline)
        {
            // No timer: the caller polls the clock (the platform's documented fallback).
            self.idle_cpus.fetch_and(!me, Ordering::AcqRel);
            P::interrupts_restore(enabled);
            core::hint::spin_loop();
            return;
        }
        self.idles.fetch_add(1, Ordering::Relaxed);
        // Returns with interrupts enabled, after an interrupt (the timer or a device) came.
        P::idle();
        self.idle_cpus.fetch_and(!me, Ordering::AcqRel);
        if !enabled {
            P::interrupts_disable();
        }
    }

    /// Interrupts one idle CPU (other than the caller's), for work made ready; `cpu`: that
    /// one, if it idles.
    fn kick(&self, cpu: Option<u32>) {
        let idle = self.idle_cpus.load(Ordering::Acquire);
        if idle == 0 {
            return;
        }
        let me = P::current_cpu().0 % 32;
        let target = match cpu {
            Some(c) => (idle & (1 << (c % 32)) != 0 && c % 32 != me).then_some(c),
            None => (0..32).find(|&c| c != me && idle & (1 << c) != 0),
        };
        if let Some(c) = target {
            P::send_ipi(platform::irq::CpuId(c));
        }
    }

    fn push_ready(&self, task: Arc<TaskWaker<P>>) {
        let enabled = P::interrupts_disable();
        self.ready.lock().push_back(task);
        self.kick(None);
        P::interrupts_restore(enabled);
    }

    fn pop_ready(&self) -> Option<Arc<TaskWaker<P>>> {
        let enabled = P::interrupts_disable();
        let task = self.ready.lock().pop_front();
        P::interrupts_restore(enabled);
        // Cleared before the poll: a wake from now on queues the task again.
        task.inspect(|task| task.queued.store(false, Ordering::Release))
    }

    fn ready_len(&self) -> usize {
        let enabled = P::interrupts_disable();
        let len = self.ready.lock().len();
        P::interrupts_restore(enabled);
        len
    }
}

/// `future`'s output, or [`Elapsed`] once `sleep` completed first.
async fn timeout_at<P: Platform + 'static, F: Future>(
    mut sleep: Sleep<P>,
    future: F,
) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    core::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(&mut sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Clears the running flag when `block_on` returns (or unwinds, on the host).
struct RunningGuard<'a>(&'a AtomicBool);

impl<'a> RunningGuard<'a> {
    fn enter(running: &'a AtomicBool) -> Self {
        assert!(
            !running.swap(true, Ordering::Acquire),
            "Executor::block_on called inside block_on"
        );
        RunningGuard(running)
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A task's waker: its id, whether it is in the ready queue, and the executor to queue it on.
struct TaskWaker<P: 'static> {
    id: TaskId,
    queued: AtomicBool,
    executor: &'static Executor<P>,
}

impl<P: Platform + 'static> Wake for TaskWaker<P> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let executor = self.executor;
        if self.id.index == MAIN_INDEX {
            // `block_on`'s future: flagged for its own CPU, which is interrupted if it idles.
            executor.main_woken.store(true, Ordering::Release);
            let enabled = P::interrupts_disable();
            executor.kick(Some(executor.main_cpu.load(Ordering::Relaxed)));
            P::interrupts_restore(enabled);
        } else if !self.queued.swap(true, Ordering::AcqRel) {
            executor.push_ready(Arc::clone(self));
        }
    }
}

/// A task's name: its slab index and the slot's generation when it was spawned, so a waker
/// that outlives its task never names the task that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TaskId {
    index: u32,
    generation: u32,
}

impl TaskId {
    const fn new(index: u32, generation: u32) -> Self {
        TaskId { index, generation }
    }
}

/// The spawned tasks' futures, in reusable slots.
struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

struct Slot {
    generation: u32,
    state: SlotState,
}

enum SlotState {
    Vacant,
    /// Waiting to be polled.
    Idle(TaskFuture),
    /// Being polled (its future taken out, so the lock is not held across the poll); `true`
    /// when another CPU was handed a wake of it meanwhile (it is polled again after).
    Running(bool),
}

impl Slab {
    const fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    fn insert(&mut self, future: TaskFuture) -> TaskId {
        self.live += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.state = SlotState::Idle(future);
            return TaskId::new(index, slot.generation);
        }
        let index = u32::try_from(self.slots.len())
            .ok()
            .filter(|&index| index != MAIN_INDEX)
            .expect("too many tasks");
        self.slots.push(Slot {
            generation: 0,
            state: SlotState::Idle(future),
        });
        TaskId::new(index, 0)
    }

    /// The future of a pending task, to poll; `None` for a stale id, or one another CPU polls
    /// (marked to be polled again).
    fn take(&mut self, id: TaskId) -> Option<TaskFuture> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        match core::mem::replace(&mut slot.state, SlotState::Running(false)) {
            SlotState::Idle(future) => Some(future),
            SlotState::Running(_) => {
                // Polled on another CPU right now: it polls it again when done.
                slot.state = SlotState::Running(true);
                None
            }
            SlotState::Vacant => {
                slot.state = SlotState::Vacant;
                None
            }
        }
    }

    /// Puts a polled, pending future back; returns whether it was woken while it was polled
    /// elsewhere (then it must be queued again).
    fn put_back(&mut self, id: TaskId, future: TaskFuture) -> bool {
        let slot = &mut self.slots[id.index as usize];
        let rewake = matches!(slot.state, SlotState::Running(true));
        slot.state = SlotState::Idle(future);
        rewake
    }

    fn finish(&mut self, id: TaskId) {
        let slot = &mut self.slots[id.index as usize];
        slot.state = SlotState::Vacant;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
    }
}
