//! `scheduler = "preempt"`: preemptive round-robin with a time slice.
//!
//! Ready threads run in the order they became ready, like `coop`; in addition, a thread that
//! has run for a whole time slice (the profile's `time_slice`) while another thread is ready
//! is preempted at the timer tick and goes to the back of the queue. The runtime arms the tick
//! only while another thread is ready ([`Policy::slice_ns`]), so a lone thread or an idle CPU
//! takes no timer interrupts at all (tickless).
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use sched::{Policy, TaskId};

/// Preemptive round-robin: a FIFO ready queue and a time slice.
#[derive(Debug)]
pub struct Preempt {
    ready: VecDeque<TaskId>,
    slice_ns: u64,
}

impl Policy for Preempt {
    const NAME: &'static str = "preempt";

    fn new(time_slice_ns: u64) -> Self {
        Preempt {
            ready: VecDeque::new(),
            slice_ns: time_slice_ns.max(1),
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

    fn should_preempt(&self, _current: TaskId, ran_ns: u64) -> bool {
        ran_ns >= self.slice_ns && !self.ready.is_empty()
    }

    fn slice_ns(&self) -> Option<u64> {
        (!self.ready.is_empty()).then_some(self.slice_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::Preempt;
    use sched::{Policy, TaskId, testkit};

    #[test]
    fn ready_set() {
        testkit::check_ready_set::<Preempt>();
    }

    #[test]
    fn round_robin_order() {
        testkit::check_round_robin_order::<Preempt>();
    }

    #[test]
    fn yielders_share_the_cpu() {
        testkit::check_yielders_share::<Preempt>(1_000_000);
    }

    #[test]
    fn never_starves_a_ready_task() {
        for slice in [500_000, 1_000_000, 10_000_000] {
            testkit::check_no_starvation::<Preempt>(slice);
        }
    }

    #[test]
    fn preempts_only_after_the_slice_and_only_for_someone() {
        let mut p = Preempt::new(1_000);
        assert!(!p.should_preempt(TaskId(0), 5_000), "nobody else is ready");
        assert_eq!(p.slice_ns(), None, "tickless while alone");
        p.enqueue(TaskId(1));
        assert!(!p.should_preempt(TaskId(0), 999));
        assert!(p.should_preempt(TaskId(0), 1_000));
        assert_eq!(p.slice_ns(), Some(1_000));
    }
}
