//! The scheduler interface: pure policy, kept apart from context switching.
//!
//! A scheduling [`Policy`] decides *which* ready thread runs next and *whether* the running one
//! should give way at a timer tick. It never touches a stack or a register: the kernel's thread
//! runtime (stacks, context switches, blocking and waking, the timer) calls it under its lock
//! and does what it says. So every policy is plain data and logic, tested on the host against
//! the same checks ([`testkit`], feature `testkit`).
//!
//! ```
//! use sched::{Policy, TaskId, Timers};
//! let mut timers = Timers::new();
//! timers.insert(30, TaskId(1));
//! timers.insert(10, TaskId(2));
//! assert_eq!(timers.next_deadline(), Some(10));
//! assert_eq!(timers.expire(20).collect::<Vec<_>>(), [TaskId(2)]);
//! ```
//!
//! # Cargo features
//! - `testkit`: [`testkit`], the order, fairness and no-starvation checks each policy's host
//!   tests run.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

/// A thread (task) as the policy knows it: an index the runtime hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub usize);

/// A scheduling policy: the ready set, its order, and the preemption rule.
///
/// Contract (the runtime keeps it; the testkit checks the policy's side):
/// - A task is in the ready set at most once: the runtime calls [`Policy::enqueue`] only for a
///   task that is neither running nor already ready.
/// - [`Policy::pick`] removes and returns the next task to run, or `None` when none is ready.
/// - The running task is not in the ready set. When it yields or is preempted the runtime
///   enqueues it again before picking; when it blocks or exits it does not.
/// - [`Policy::should_preempt`] is asked at timer ticks only; [`Policy::slice_ns`] tells the
///   runtime when the next tick is needed (`None`: no tick, the runtime stays tickless).
pub trait Policy {
    /// The slot value that selects this policy (`scheduler = "..."`).
    const NAME: &'static str;

    /// Makes a policy; `time_slice_ns` is the profile's `time_slice` (ignored by policies that
    /// never preempt).
    fn new(time_slice_ns: u64) -> Self;

    /// `task` became ready (spawned, woken, yielded or preempted).
    fn enqueue(&mut self, task: TaskId);

    /// Takes the next task to run out of the ready set.
    fn pick(&mut self) -> Option<TaskId>;

    /// How many tasks are ready (the running one not counted).
    fn ready(&self) -> usize;

    /// At a timer tick: whether `current`, which has run `ran_ns` since it was last picked,
    /// must give way now (the runtime then enqueues it and picks).
    fn should_preempt(&self, current: TaskId, ran_ns: u64) -> bool;

    /// How long the task just picked may run before the runtime needs a tick to ask
    /// [`Policy::should_preempt`], or `None` when no tick is needed (nothing else is ready, or
    /// the policy never preempts): the runtime is then tickless.
    fn slice_ns(&self) -> Option<u64>;
}

/// The sleep / timeout queue: deadlines (nanoseconds on the platform clock) and the task each
/// one wakes, earliest first; equal deadlines in insertion order.
///
/// A sorted `Vec` rather than a `BTreeMap` or heap: a unikernel has few sleepers at a time, so
/// binary-search insertion is as fast in practice, and the image is some 3 KB smaller.
#[derive(Debug, Default)]
pub struct Timers {
    /// `(deadline, sequence number, task)`, sorted by deadline then sequence.
    queue: Vec<(u64, u64, TaskId)>,
    seq: u64,
}

/// Names one entry of [`Timers`], to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey(u64, u64);

impl Timers {
    /// An empty queue.
    pub const fn new() -> Self {
        Timers {
            queue: Vec::new(),
            seq: 0,
        }
    }

    /// Wakes `task` at `deadline_ns`.
    pub fn insert(&mut self, deadline_ns: u64, task: TaskId) -> TimerKey {
        self.seq += 1;
        let at = self.queue.partition_point(|&(d, _, _)| d <= deadline_ns);
        self.queue.insert(at, (deadline_ns, self.seq, task));
        TimerKey(deadline_ns, self.seq)
    }

    /// Removes an entry that has not expired; returns whether it was still there.
    pub fn cancel(&mut self, key: TimerKey) -> bool {
        let start = self.queue.partition_point(|&(d, _, _)| d < key.0);
        let found = self.queue[start..]
            .iter()
            .take_while(|&&(d, _, _)| d == key.0)
            .position(|&(_, seq, _)| seq == key.1);
        if let Some(i) = found {
            self.queue.remove(start + i);
        }
        found.is_some()
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.queue.first().map(|&(deadline, _, _)| deadline)
    }

    /// Removes and returns, earliest first, every task whose deadline is `<= now_ns`.
    pub fn expire(&mut self, now_ns: u64) -> impl Iterator<Item = TaskId> + '_ {
        let due = self.queue.partition_point(|&(d, _, _)| d <= now_ns);
        self.queue.drain(..due).map(|(_, _, task)| task)
    }

    /// Removes and returns the earliest task whose deadline is `<= now_ns`, if any.
    pub fn pop_expired(&mut self, now_ns: u64) -> Option<TaskId> {
        match self.queue.first() {
            Some(&(deadline, _, task)) if deadline <= now_ns => {
                self.queue.remove(0);
                Some(task)
            }
            _ => None,
        }
    }

    /// How many entries are waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no entry is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_expire_in_deadline_then_insertion_order() {
        let mut t = Timers::new();
        t.insert(50, TaskId(5));
        t.insert(10, TaskId(1));
        t.insert(10, TaskId(2));
        let k = t.insert(20, TaskId(3));
        t.insert(u64::MAX, TaskId(9));
        assert_eq!(t.len(), 5);
        assert!(t.cancel(k));
        assert!(!t.cancel(k));
        assert_eq!(t.expire(9).count(), 0);
        assert_eq!(t.pop_expired(9), None);
        assert_eq!(t.expire(20).collect::<Vec<_>>(), [TaskId(1), TaskId(2)]);
        assert_eq!(t.next_deadline(), Some(50));
        assert_eq!(t.expire(u64::MAX - 1).collect::<Vec<_>>(), [TaskId(5)]);
        assert_eq!(t.expire(u64::MAX).collect::<Vec<_>>(), [TaskId(9)]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    /// Against a simple model: random inserts, cancels and expiries keep deadline order,
    /// insertion order among equal deadlines, and lose nothing.
    #[test]
    fn timers_match_a_model() {
        let mut t = Timers::new();
        let mut model: Vec<(u64, u64, TaskId, TimerKey)> = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut now = 0;
        for i in 0..5_000u64 {
            match next() % 4 {
                0 | 1 => {
                    let deadline = now + next() % 50;
                    let key = t.insert(deadline, TaskId(i as usize));
                    model.push((deadline, i, TaskId(i as usize), key));
                }
                2 if !model.is_empty() => {
                    let (_, _, _, key) = model.remove((next() % model.len() as u64) as usize);
                    assert!(t.cancel(key));
                }
                _ => {
                    now += next() % 20;
                    model.sort_by_key(|&(d, seq, _, _)| (d, seq));
                    let due: Vec<TaskId> = model
                        .iter()
                        .filter(|&&(d, ..)| d <= now)
                        .map(|&(_, _, task, _)| task)
                        .collect();
                    model.retain(|&(d, ..)| d > now);
                    assert_eq!(t.expire(now).collect::<Vec<_>>(), due);
                }
            }
            assert_eq!(t.len(), model.len());
        }
    }
}
