//! Spin-lock back-off for virtual CPUs: [`Backoff`], the `spin` crate's `RelaxStrategy` that
//! the kernel gives its spin locks (the heap's, the network stack's, the drivers', the thread
//! runtime's wait queues, the async executor's), and [`backoff`], one failed try of any spin
//! loop.
//!
//! A lock's holder may be a virtual CPU the hypervisor descheduled (four vCPUs on two physical
//! CPUs, or a Xen PV guest, which has no pause-loop exiting): spinning through the rest of the
//! waiter's time slice only keeps the holder from finishing. So a CPU's failed tries use the
//! spin-loop hint (`pause`), and every [`SPINS_PER_YIELD`]th of them gives the physical CPU
//! back with [`Platform::yield_cpu`] (`SCHEDOP_yield` on Xen; on KVM-class monitors `pause`
//! again, whose pause-loop exiting is their yield). With one CPU nothing is ever contended (a
//! lock is taken with interrupts masked), and `Backoff<P, false>` is the plain hint, the same
//! code as `spin`'s own.

use crate::Platform;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

/// Failed tries on one CPU between two yields to the hypervisor.
pub const SPINS_PER_YIELD: u32 = 1024;

/// Per CPU (by number, modulo the array): failed tries so far.
static SPINS: [AtomicU32; 16] = [const { AtomicU32::new(0) }; 16];

/// One failed try of a spin loop on the calling CPU: the spin-loop hint, and every
/// [`SPINS_PER_YIELD`]th time a yield to the hypervisor.
#[inline]
pub fn backoff<P: Platform>() {
    let cpu = P::current_cpu().0 as usize % SPINS.len();
    if SPINS[cpu].fetch_add(1, Ordering::Relaxed) % SPINS_PER_YIELD == SPINS_PER_YIELD - 1 {
        P::yield_cpu();
    } else {
        core::hint::spin_loop();
    }
}

/// `spin::RelaxStrategy` for platform `P`: [`backoff`] when `MULTI` (more than one CPU), the
/// spin-loop hint alone otherwise.
#[derive(Debug)]
pub struct Backoff<P, const MULTI: bool>(PhantomData<P>);

impl<P: Platform, const MULTI: bool> spin::RelaxStrategy for Backoff<P, MULTI> {
    #[inline]
    fn relax() {
        if MULTI {
            backoff::<P>();
        } else {
            core::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::CpuId;
    use core::sync::atomic::AtomicUsize;

    static YIELDS: AtomicUsize = AtomicUsize::new(0);
    static CPU: AtomicUsize = AtomicUsize::new(0);

    struct Counting;
    impl Platform for Counting {
        crate::fake_platform_unused_items!();
        fn now_ns() -> Option<u64> {
            None
        }
        fn set_timer(_deadline_ns: u64) -> bool {
            false
        }
        fn interrupts_disable() -> bool {
            false
        }
        fn interrupts_restore(_enabled: bool) {}
        fn idle() {}
        fn yield_cpu() {
            YIELDS.fetch_add(1, Ordering::Relaxed);
        }
        fn current_cpu() -> CpuId {
            CpuId(CPU.load(Ordering::Relaxed) as u32)
        }
    }

    #[test]
    fn every_1024th_failed_try_of_a_cpu_yields_and_one_cpu_never_does() {
        // CPU 5's counter is this test's own (the array is shared by the crate's tests).
        CPU.store(5, Ordering::Relaxed);
        for _ in 0..3 * SPINS_PER_YIELD {
            <Backoff<Counting, true> as spin::RelaxStrategy>::relax();
        }
        assert_eq!(YIELDS.load(Ordering::Relaxed), 3);
        for _ in 0..3 * SPINS_PER_YIELD {
            <Backoff<Counting, false> as spin::RelaxStrategy>::relax();
        }
        assert_eq!(YIELDS.load(Ordering::Relaxed), 3);
        // A lock with it works as any spin lock.
        let m = spin::mutex::SpinMutex::<u32, Backoff<Counting, true>>::new(1);
        *m.lock() += 1;
        assert_eq!(*m.lock(), 2);
    }
}
