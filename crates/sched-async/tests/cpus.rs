//! The executor on several CPUs at once, for real: `block_on` on the test's thread (CPU 0) and
//! `run_worker` on three more host threads (CPUs 1-3), over a platform whose `idle` waits until
//! `send_ipi` (or a short timeout) and whose clock is the host's. Workloads: a mutex count with
//! yields inside, a channel, tasks that wake each other, sleeps; each must end with nothing
//! lost (a lost wake-up would hang it: a watchdog fails the test after a minute; it does when a
//! task woken while another CPU polls it is not polled again), and no task may be polled by two
//! CPUs at once.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use platform::Platform;
use platform::irq::CpuId;
use sched_async::sync::{Mutex as AsyncMutex, channel};
use sched_async::{Executor, yield_now};

const CPUS: usize = 4;

thread_local! {
    static CPU: Cell<u32> = const { Cell::new(0) };
    static IRQ: Cell<bool> = const { Cell::new(true) };
}

/// Per CPU: whether it was interrupted (`send_ipi`) since it last idled.
static KICKED: Mutex<[bool; CPUS]> = Mutex::new([false; CPUS]);
static KICK: Condvar = Condvar::new();
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

struct Par;

impl Platform for Par {
    platform::fake_platform_unused_items!();

    fn now_ns() -> Option<u64> {
        Some(START.get_or_init(Instant::now).elapsed().as_nanos() as u64)
    }

    /// No timer interrupt: `idle` waits at most 200 us, so sleeps end by polling the clock.
    fn set_timer(_deadline_ns: u64) -> bool {
        true
    }

    fn interrupts_disable() -> bool {
        IRQ.replace(false)
    }

    fn interrupts_restore(enabled: bool) {
        IRQ.set(enabled);
    }

    fn idle() {
        let c = CPU.get() as usize;
        let mut kicked = KICKED.lock().unwrap_or_else(|e| e.into_inner());
        if !kicked[c] {
            kicked = KICK
                .wait_timeout(kicked, Duration::from_micros(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        kicked[c] = false;
        IRQ.set(true);
    }

    fn current_cpu() -> CpuId {
        CpuId(CPU.get())
    }

    fn send_ipi(cpu: CpuId) -> bool {
        KICKED.lock().unwrap_or_else(|e| e.into_inner())[cpu.0 as usize] = true;
        KICK.notify_all();
        true
    }
}

static EXECUTOR: Executor<Par> = Executor::new();

/// A future polled by two CPUs at once would see this set.
struct Exclusive(AtomicBool);

impl Exclusive {
    fn enter(&self) {
        assert!(
            !self.0.swap(true, Ordering::SeqCst),
            "a task polled by two CPUs at once"
        );
    }
    fn leave(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn workloads() {
    for c in 1..CPUS as u32 {
        std::thread::spawn(move || {
            CPU.set(c);
            EXECUTOR.run_worker(|| {})
        });
    }
    let ex = &EXECUTOR;
    let on = Arc::new(Mutex::new(Vec::new()));
    ex.block_on(async {
        // A mutex count: 200 tasks x 20 increments, a yield inside the critical section.
        let count = Arc::new(AsyncMutex::<u64>::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (count, on) = (count.clone(), on.clone());
                let mine = Arc::new(Exclusive(AtomicBool::new(false)));
                ex.spawn(async move {
                    for _ in 0..20 {
                        mine.enter();
                        on.lock().expect("the log").push(CPU.get());
                        mine.leave();
                        let mut c = count.lock().await;
                        let v = *c;
                        yield_now().await;
                        *c = v + 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert_eq!(*count.lock().await, 4_000, "the mutex count");

        // A channel: 4 producers x 500 items, each received once.
        let (tx, mut rx) = channel::<u64>(8);
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let tx = tx.clone();
                ex.spawn(async move {
                    for i in 0..500 {
                        tx.send(p * 1000 + i).await.expect("the receiver lives");
                    }
                })
            })
            .collect();
        drop(tx);
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            got.push(v);
        }
        for p in producers {
            p.await;
        }
        got.sort_unstable();
        let want: Vec<u64> = (0..4u64)
            .flat_map(|p| (0..500).map(move |i| p * 1000 + i))
            .collect();
        assert_eq!(got, want, "every item exactly once");

        // Sleeps end, none early.
        let woke = Arc::new(AtomicUsize::new(0));
        let sleepers: Vec<_> = (0..20u64)
            .map(|i| {
                let woke = woke.clone();
                ex.spawn(async move {
                    let deadline = Par::now_ns().unwrap_or(0) + (i % 5 + 1) * 1_000_000;
                    ex.sleep_until(deadline).await;
                    assert!(
                        Par::now_ns().unwrap_or(0) >= deadline,
                        "a sleep ended early"
                    );
                    woke.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for s in sleepers {
            s.await;
        }
        assert_eq!(woke.load(Ordering::SeqCst), 20);

        // Ping-pong through two channels: each side wakes the other, 2,000 times.
        let (to_b, mut from_a) = channel::<u64>(1);
        let (to_a, mut from_b) = channel::<u64>(1);
        let echo = ex.spawn(async move {
            while let Some(v) = from_a.recv().await {
                if to_a.send(v + 1).await.is_err() {
                    break;
                }
            }
        });
        let mut v = 0;
        for _ in 0..2_000 {
            to_b.send(v).await.expect("echo lives");
            v = from_b.recv().await.expect("echo answers");
        }
        drop(to_b);
        echo.await;
        assert_eq!(v, 2_000);
    });
    let cpus: std::collections::HashSet<u32> =
        on.lock().expect("the log").iter().copied().collect();
    assert!(cpus.len() > 1, "tasks ran on CPUs {cpus:?} only");
}

#[test]
fn tasks_on_four_cpus_lose_nothing_and_never_run_twice_at_once() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        workloads();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the workloads did not end within a minute: a lost wake-up?")
        }
        Err(_) => panic!("the workloads panicked (see above)"),
    }
}
