//! Async executor probe and benchmark. Needs `scheduler = "async"`:
//! `cargo xtask run asyncprobe --set scheduler=async -- MODE`.
//!
//! - `timer`: sleeps of 1, 10 and 50 ms are never early (how late is printed).
//! - `join`: `main` waits on a spawned task that sleeps, through another task awaiting its
//!   `JoinHandle`, and checks the value.
//! - `mutex`: 1,000 tasks each add 1 to a shared counter 10 times under the async `Mutex`,
//!   yielding inside the critical section; the count must be exactly 10,000.
//! - `channel`: 4 producers send 1,000 numbered items each through a 16-slot channel to `main`;
//!   every item must arrive exactly once.
//! - `bench`: yield ping-pong between two tasks, spawn + join, and timer wake-up latency
//!   (`bench ...:` lines).
//! - `cpus`: with more than one CPU (`stardust::cpus()`), 8 tasks that compute and yield
//!   record the CPUs they were polled on: tasks must run on more than one
//!   (`cpus: tasks ran on N of C CPUs`); with one CPU, on CPU 0.
//! - `all` (default): timer, join, mutex, channel, cpus, then `asyncprobe: all passed`.
//!
//! A failed check ends with status 1.
#![no_std]
#![no_main]

use stardust::alloc::sync::Arc;
use stardust::alloc::vec;
use stardust::alloc::vec::Vec;
use stardust::println;
use stardust::task::sync::{Mutex, channel};
use stardust::task::{JoinHandle, sleep, spawn, yield_now};

const MS: u64 = 1_000_000;

#[stardust::main]
async fn main() -> Result<(), &'static str> {
    let mode = stardust::args().next().unwrap_or("all");
    println!("asyncprobe: mode {mode}");
    let result = match mode {
        "timer" => timer().await,
        "join" => join().await,
        "mutex" => mutex().await,
        "channel" => channels().await,
        "bench" => bench().await,
        "cpus" => cpus().await,
        "all" => all().await,
        _ => Err("unknown mode: expected timer, join, mutex, channel, cpus, bench or all"),
    };
    let stats = stardust::task::stats();
    log::info!(
        "executor: {} polls, {} idles, {} tasks spawned",
        stats.polls,
        stats.idles,
        stats.tasks_spawned
    );
    result
}

async fn all() -> Result<(), &'static str> {
    timer().await?;
    join().await?;
    mutex().await?;
    channels().await?;
    cpus().await?;
    println!("asyncprobe: all passed");
    Ok(())
}

/// Tasks run on every CPU: 8 tasks compute and yield, recording where they were polled.
async fn cpus() -> Result<(), &'static str> {
    use core::sync::atomic::{AtomicU32, Ordering};
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let tasks: Vec<JoinHandle<u64>> = (0..8u64)
        .map(|k| {
            spawn(async move {
                let mut x = k;
                for _ in 0..200 {
                    SEEN.fetch_or(1 << (stardust::current_cpu() % 32), Ordering::Relaxed);
                    for _ in 0..2_000 {
                        x = core::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                    }
                    yield_now().await;
                }
                x
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let seen = SEEN.load(Ordering::Relaxed);
    let cpus = stardust::cpus();
    println!("cpus: tasks ran on {} of {cpus} CPUs", seen.count_ones());
    match cpus {
        1 if seen == 1 => Ok(()),
        1 => Err("tasks ran on a CPU other than 0 with one CPU"),
        _ if seen.count_ones() > 1 => Ok(()),
        _ => Err("with more than one CPU, tasks ran on one only"),
    }
}

/// Monotonic nanoseconds (the platform's clock).
fn now() -> Result<u64, &'static str> {
    stardust::time::now_ns().ok_or("no clock on this platform")
}

async fn timer() -> Result<(), &'static str> {
    let idles = stardust::task::stats().idles;
    for ms in [1, 10, 50] {
        let start = now()?;
        sleep(ms * MS).await;
        let slept = now()? - start;
        if slept < ms * MS {
            println!("slept {ms} ms: EARLY by {} us", (ms * MS - slept) / 1000);
            return Err("a sleep ended before its deadline");
        }
        println!("slept {ms} ms: late by {} us", (slept - ms * MS) / 1000);
    }
    println!(
        "timer: {} idles while sleeping",
        stardust::task::stats().idles - idles
    );
    Ok(())
}

async fn join() -> Result<(), &'static str> {
    let start = now()?;
    let sleeper: JoinHandle<u64> = spawn(async {
        sleep(5 * MS).await;
        40
    });
    // A task that itself waits on the sleeper's handle.
    let waiter = spawn(async move { sleeper.await + 2 });
    if waiter.is_finished() {
        return Err("join: the task finished before it could have run");
    }
    let value = waiter.await;
    let waited = now()? - start;
    if value != 42 {
        return Err("join: wrong value from the JoinHandle");
    }
    if waited < 5 * MS {
        return Err("join: the value came before the task's sleep ended");
    }
    println!("join: value {value} after {} us", waited / 1000);
    Ok(())
}

async fn mutex() -> Result<(), &'static str> {
    let counter = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..1000)
        .map(|_| {
            let counter = Arc::clone(&counter);
            spawn(async move {
                for _ in 0..10 {
                    let mut c = counter.lock().await;
                    let seen = *c;
                    // Every other task runs while the lock is held: they must wait.
                    yield_now().await;
                    *c = seen + 1;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await;
    }
    let count = *counter.lock().await;
    println!("mutex count: {count}");
    if count != 10_000 {
        return Err("mutex: lost updates");
    }
    Ok(())
}

async fn channels() -> Result<(), &'static str> {
    const PRODUCERS: u64 = 4;
    const ITEMS: u64 = 1000;
    let (tx, mut rx) = channel::<u64>(16);
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        spawn(async move {
            for i in 0..ITEMS {
                if tx.send(p * ITEMS + i).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut seen = vec![false; (PRODUCERS * ITEMS) as usize];
    let (mut count, mut sum) = (0u64, 0u64);
    while let Some(item) = rx.recv().await {
        let slot = seen
            .get_mut(item as usize)
            .ok_or("channel: an item that was never sent")?;
        if *slot {
            return Err("channel: an item arrived twice");
        }
        *slot = true;
        count += 1;
        sum += item;
    }
    if count != PRODUCERS * ITEMS || seen.iter().any(|s| !s) {
        return Err("channel: items lost");
    }
    println!("channel: {count} items, sum {sum}, no loss, no duplicates");
    Ok(())
}

async fn bench() -> Result<(), &'static str> {
    // Yield ping-pong: two tasks take turns; every yield is one switch.
    const ROUNDS: u64 = 10_000;
    let start = now()?;
    let a = spawn(async {
        for _ in 0..ROUNDS {
            yield_now().await;
        }
    });
    let b = spawn(async {
        for _ in 0..ROUNDS {
            yield_now().await;
        }
    });
    a.await;
    b.await;
    let elapsed = now()? - start;
    println!("bench yield: {} ns per switch", elapsed / (2 * ROUNDS));

    const SPAWNS: u64 = 1000;
    let start = now()?;
    for i in 0..SPAWNS {
        if spawn(async move { i }).await != i {
            return Err("bench: wrong value from a JoinHandle");
        }
    }
    let elapsed = now()? - start;
    println!("bench spawn: {} ns per spawn+join", elapsed / SPAWNS);

    let mut late_us = Vec::with_capacity(20);
    for _ in 0..20 {
        let deadline = now()? + MS;
        stardust::task::sleep_until(deadline).await;
        let woke = now()?;
        if woke < deadline {
            return Err("bench: a sleep ended before its deadline");
        }
        late_us.push((woke - deadline) / 1000);
    }
    late_us.sort_unstable();
    println!("bench wake: median {} us", late_us[late_us.len() / 2]);
    Ok(())
}
