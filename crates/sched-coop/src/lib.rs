//! `scheduler = "coop"`: cooperative round-robin.
//!
//! The running thread keeps the CPU until it yields, blocks (a lock, a channel, a sleep) or
//! exits; ready threads then run in the order they became ready. A thread that computes
//! without ever yielding keeps every other thread (and the timers' wake-ups) waiting: that is
//! the documented behaviour of this policy, and the price of its simplicity (no timer tick, no
//! preemption points, smallest code). Use `scheduler = "preempt"` when threads may compute for
//! long.
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use sched::{Policy, TaskId};

/// Cooperative round-robin: a FIFO ready queue, no preemption.
#[derive(Debug, Default)]
pub struct Coop {
    ready: VecDeque<TaskId>,
}

impl Policy for Coop {
    const NAME: &'static str = "coop";

    fn new(_time_slice_ns: u64) -> Self {
        Coop {
            ready: VecDeque::new(),
        }
    }

    fn enqueue(&mut self, task: TaskId) {
        self.ready.push_back(task);
    }

    fn pick(&mut self) -> Option<TaskId> {
        self.ready.pop_front()
    }

    fn ready(&self) -> usize {
        self.ready.len()
    }

    fn should_preempt(&self, _current: TaskId, _ran_ns: u64) -> bool {
        false
    }

    fn slice_ns(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Coop;
    use sched::testkit;

    #[test]
    fn ready_set() {
        testkit::check_ready_set::<Coop>();
    }

    #[test]
    fn round_robin_order() {
        testkit::check_round_robin_order::<Coop>();
    }

    #[test]
    fn yielders_share_the_cpu() {
        testkit::check_yielders_share::<Coop>(1_000_000);
    }

    /// The starvation check can fail: a policy that never preempts starves the other threads
    /// behind a hog.
    #[test]
    #[should_panic(expected = "waited")]
    fn the_starvation_check_catches_a_policy_that_never_preempts() {
        testkit::check_no_starvation::<Coop>(1_000_000);
    }

    #[test]
    fn never_preempts() {
        testkit::check_cooperative::<Coop>();
    }
}
