//! Checks every policy's host tests run: the ready set's bookkeeping, round-robin order, and a
//! simulation of threads on a virtual clock for fairness and starvation.
//!
//! The simulation plays the runtime's part exactly as the kernel does: it picks, runs the
//! picked task, asks [`Policy::should_preempt`] when the slice [`Policy::slice_ns`] gave is
//! over, enqueues yielding and preempted tasks again, and leaves blocked (sleeping) tasks out
//! until their wake-up.

use crate::{Policy, TaskId};
use alloc::vec;
use alloc::vec::Vec;

/// What a simulated thread does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Computes forever, never yields (the thread a cooperative scheduler cannot take back).
    Hog,
    /// Yields after each `run_ns` of computing.
    Yields {
        /// Nanoseconds between yields.
        run_ns: u64,
    },
    /// Computes `run_ns`, then sleeps `sleep_ns`, forever.
    Sleeps {
        /// Nanoseconds of work per round.
        run_ns: u64,
        /// Nanoseconds asleep per round.
        sleep_ns: u64,
    },
}

/// What the simulation saw, per task (index = `TaskId.0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// CPU time each task got.
    pub run_ns: Vec<u64>,
    /// The longest time each task waited ready (runnable but not running).
    pub max_wait_ns: Vec<u64>,
    /// Preemptions by the policy.
    pub preemptions: u64,
    /// Context switches (picks of a different task than the one before).
    pub switches: u64,
}

/// The simulation's time step: tasks run, sleep and get ticked in multiples of it.
pub const STEP_NS: u64 = 50_000;

/// Runs `tasks` (all ready at time 0, enqueued in order) for `total_ns` of virtual time.
pub fn simulate<P: Policy>(slice_ns: u64, tasks: &[Behaviour], total_ns: u64) -> Report {
    let n = tasks.len();
    let mut policy = P::new(slice_ns);
    let mut report = Report {
        run_ns: vec![0; n],
        max_wait_ns: vec![0; n],
        preemptions: 0,
        switches: 0,
    };
    let mut ready_since: Vec<Option<u64>> = vec![Some(0); n];
    let mut wake_at: Vec<Option<u64>> = vec![None; n];
    let mut since_event = vec![0u64; n];
    for i in 0..n {
        policy.enqueue(TaskId(i));
    }
    let mut current: Option<(usize, u64, Option<u64>)> = None; // (task, picked at, slice end)
    let mut last: Option<usize> = None;
    let mut now = 0;
    while now < total_ns {
        for i in 0..n {
            if wake_at[i].is_some_and(|t| t <= now) {
                wake_at[i] = None;
                ready_since[i] = Some(now);
                policy.enqueue(TaskId(i));
            }
        }
        if current.is_none()
            && let Some(t) = policy.pick()
        {
            let i = t.0;
            let waited = now
                - ready_since[i]
                    .take()
                    .expect("picked a task that was not ready");
            report.max_wait_ns[i] = report.max_wait_ns[i].max(waited);
            if last != Some(i) {
                report.switches += 1;
            }
            last = Some(i);
            current = Some((i, now, policy.slice_ns().map(|s| now + s)));
        }
        now += STEP_NS;
        let Some((i, picked, slice_end)) = current else {
            continue;
        };
        report.run_ns[i] += STEP_NS;
        since_event[i] += STEP_NS;
        match tasks[i] {
            Behaviour::Hog => {}
            Behaviour::Yields { run_ns } if since_event[i] >= run_ns => {
                since_event[i] = 0;
                ready_since[i] = Some(now);
                policy.enqueue(TaskId(i));
                current = None;
                continue;
            }
            Behaviour::Sleeps { run_ns, sleep_ns } if since_event[i] >= run_ns => {
                since_event[i] = 0;
                wake_at[i] = Some(now + sleep_ns);
                current = None;
                continue;
            }
            _ => {}
        }
        if slice_end.is_some_and(|end| now >= end) {
            if policy.should_preempt(TaskId(i), now - picked) {
                report.preemptions += 1;
                ready_since[i] = Some(now);
                policy.enqueue(TaskId(i));
                current = None;
            } else {
                current = Some((i, picked, policy.slice_ns().map(|s| now + s)));
            }
        }
    }
    // Tasks still waiting at the end (never picked, perhaps) count too.
    for (i, since) in ready_since.iter().enumerate() {
        if let Some(t) = since {
            report.max_wait_ns[i] = report.max_wait_ns[i].max(now - t);
        }
    }
    report
}

/// The ready set's bookkeeping: every enqueued task comes out of `pick` exactly once, `ready`
/// counts, and an empty set picks `None`.
pub fn check_ready_set<P: Policy>() {
    let mut p = P::new(10_000_000);
    assert_eq!(p.pick(), None, "{}: empty set picked a task", P::NAME);
    assert_eq!(p.ready(), 0);
    for i in 0..100 {
        p.enqueue(TaskId(i));
    }
    assert_eq!(p.ready(), 100, "{}: ready count", P::NAME);
    let mut seen = [false; 100];
    while let Some(t) = p.pick() {
        assert!(!seen[t.0], "{}: task {} picked twice", P::NAME, t.0);
        seen[t.0] = true;
    }
    assert!(seen.iter().all(|&s| s), "{}: a task was lost", P::NAME);
    assert_eq!(p.ready(), 0);
}

/// Round-robin order: tasks run in the order they became ready, and a task that yields goes
/// behind every task already waiting.
pub fn check_round_robin_order<P: Policy>() {
    let mut p = P::new(10_000_000);
    for i in [3, 1, 4, 0] {
        p.enqueue(TaskId(i));
    }
    let first = p.pick().expect("ready");
    assert_eq!(
        first,
        TaskId(3),
        "{}: not first come, first served",
        P::NAME
    );
    p.enqueue(first); // it yields
    let order: Vec<_> = core::iter::from_fn(|| p.pick()).map(|t| t.0).collect();
    assert_eq!(
        order,
        [1, 4, 0, 3],
        "{}: a yield must go to the back",
        P::NAME
    );
}

/// Tasks that yield share the CPU evenly under any policy: with four yielders, each gets a
/// quarter of the time (within one time step per round).
pub fn check_yielders_share<P: Policy>(slice_ns: u64) {
    let tasks = [Behaviour::Yields { run_ns: 200_000 }; 4];
    let r = simulate::<P>(slice_ns, &tasks, 400_000_000);
    let (min, max) = (
        *r.run_ns.iter().min().expect("tasks"),
        *r.run_ns.iter().max().expect("tasks"),
    );
    assert!(
        max - min <= 200_000,
        "{}: yielders got uneven CPU time {:?}",
        P::NAME,
        r.run_ns
    );
}

/// A preemptive policy never starves a ready task: with compute-bound hogs, yielders and
/// sleepers together, every task waits at most one slice per other task (plus a step), and the
/// hogs share the CPU evenly.
pub fn check_no_starvation<P: Policy>(slice_ns: u64) {
    let tasks = [
        Behaviour::Hog,
        Behaviour::Yields { run_ns: 300_000 },
        Behaviour::Hog,
        Behaviour::Sleeps {
            run_ns: 100_000,
            sleep_ns: 2_000_000,
        },
        Behaviour::Hog,
    ];
    let r = simulate::<P>(slice_ns, &tasks, 2_000_000_000);
    let bound = (tasks.len() as u64 - 1) * (slice_ns + STEP_NS) + STEP_NS;
    for (i, &wait) in r.max_wait_ns.iter().enumerate() {
        assert!(
            wait <= bound,
            "{}: task {i} ({:?}) waited {wait} ns ready, more than {bound} ns",
            P::NAME,
            tasks[i]
        );
    }
    let hogs: Vec<u64> = [0, 2, 4].iter().map(|&i| r.run_ns[i]).collect();
    let (min, max) = (
        *hogs.iter().min().expect("hogs"),
        *hogs.iter().max().expect("hogs"),
    );
    assert!(
        max - min <= 2 * slice_ns,
        "{}: hogs got uneven CPU time {hogs:?}",
        P::NAME
    );
    assert!(r.preemptions > 0, "{}: never preempted a hog", P::NAME);
    // A lone task is never ticked: tickless when nothing else is ready.
    let alone = simulate::<P>(slice_ns, &[Behaviour::Hog], 100_000_000);
    assert_eq!(alone.preemptions, 0, "{}: preempted a lone task", P::NAME);
}

/// A cooperative policy never takes the CPU back: the first hog to run keeps it, and the
/// runtime is never asked for a tick.
pub fn check_cooperative<P: Policy>() {
    let tasks = [
        Behaviour::Yields { run_ns: 100_000 },
        Behaviour::Hog,
        Behaviour::Yields { run_ns: 100_000 },
    ];
    let r = simulate::<P>(1_000_000, &tasks, 100_000_000);
    assert_eq!(
        r.preemptions,
        0,
        "{}: a cooperative policy preempted",
        P::NAME
    );
    assert!(
        r.run_ns[1] >= 99_000_000,
        "{}: the hog lost the CPU: {:?}",
        P::NAME,
        r.run_ns
    );
    let mut p = P::new(1_000_000);
    p.enqueue(TaskId(1));
    assert_eq!(p.slice_ns(), None, "{}: asked for a tick", P::NAME);
}
