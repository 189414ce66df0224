//! Smpprobe: checks the CPUs after the first (profile setting `cpus` above 1), for the tests. It
//! gives the other CPUs jobs through the kernel's test hooks (`stardust::__test_start_on`: one
//! function call per CPU, run when the CPU is idle; the schedulers do not use these CPUs yet).
//!
//! - `smpprobe parallel [N]`: sums a hash of 0..N (default 4,000,000) split across every CPU,
//!   and checks the sum against the same work on CPU 0 alone; then every CPU adds 1 to a counter
//!   behind one spin lock 100,000 times (a non-atomic read-modify-write under the lock), and the
//!   total must be exact. Prints `smpprobe: parallel sum on C CPUs matches` and
//!   `smpprobe: C CPUs counted N under one lock`; exit 1 on a mismatch (`smpprobe: FAIL: ...`).
//! - `smpprobe shootdown`: CPU 1 reads a page (so its TLB holds the page) and spins, CPU 0
//!   unmaps it like a thread's guard page, and CPU 1 reads it again without having gone idle
//!   in between (on Xen an idle vCPU is switched out, which drops its TLB anyway): that read
//!   must fault (the kernel's exception report, `CPU 1 EXCEPTION: ...`, status 102). Prints
//!   `smpprobe: CPU 1 reads the page unmapped on CPU 0` just before; a read that succeeds
//!   (a stale translation) prints `smpprobe: FAIL: ...` and exits 1.
//! - `smpprobe overflow`: a job on CPU 1 recurses until its stack (CPU 1's own, 16 KiB) runs
//!   into the guard page below it: the kernel's exception report from CPU 1, status 102.
//! - `smpprobe panic`: CPU 1 panics (`CPU 1 PANIC: ... smpprobe: a panic on CPU 1`, status 101).
//! - `smpprobe alloc [N]`: every CPU at once makes N small heap allocations of mixed sizes
//!   (16 to 256 bytes), each freed 16 allocations later (so each CPU holds 16 blocks at a
//!   time), and fills each block with a byte of its own; the sum of what it reads back from
//!   each block just before freeing it must be what it wrote (a block handed out twice, to two
//!   CPUs or twice to one, would lose its content). Then CPU 0 alone does the same. Prints
//!   `smpprobe: alloc on C CPUs: checksums match, P ns per pair in parallel (one CPU alone: Q
//!   ns)`, where a pair is one allocation and one free (wall time over N); exit 1 on a
//!   mismatch.
//! - `smpprobe bench [N]` (for `cargo xtask bench smp`; any number of CPUs, threads): two
//!   threads sum a hash of 0..N (default 20,000,000) in halves, joined by `main`:
//!   `bench parallel: N items in T us on C CPUs`; then two threads hand a token back and forth
//!   through two channels 20,000 times: `bench handoff: H ns per hand-off on C CPUs` (on one
//!   CPU a context switch; on two, mostly a wake-up of the other CPU by IPI); then two threads
//!   each take a `Mutex` 20,000 times to add to a counter: `bench mutex: M ns per lock on C
//!   CPUs` (the total must be exact).
//!
//! Exit 2 when fewer than two CPUs run (`smpprobe: only one CPU`), but for `bench`. Needs
//! `scheduler = "coop"` or `"preempt"` (and `cpus` above 1).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use stardust::sync::channel;
use stardust::thread;
use stardust::time::Instant;
use stardust::{ExitCode, FrameAllocator, println};

/// The hash summed by `parallel` (splitmix64's finaliser).
fn hash(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sum(range: core::ops::Range<u64>) -> u64 {
    range.fold(0u64, |s, i| s.wrapping_add(hash(i)))
}

/// The parts of `parallel`: 0..N in `CPUS` pieces.
static N: AtomicUsize = AtomicUsize::new(0);
static CPUS: AtomicUsize = AtomicUsize::new(1);

fn part(k: usize) -> core::ops::Range<u64> {
    let (n, cpus) = (
        N.load(Ordering::Relaxed) as u64,
        CPUS.load(Ordering::Relaxed) as u64,
    );
    let k = k as u64;
    n * k / cpus..n * (k + 1) / cpus
}

fn part_sum(k: usize) -> usize {
    sum(part(k)) as usize
}

/// The counter behind one lock, and how often each CPU adds to it.
static COUNTER: spin::Mutex<u64> = spin::Mutex::new(0);
const ADDS: usize = 100_000;

fn count(_: usize) -> usize {
    for _ in 0..ADDS {
        let mut c = COUNTER.lock();
        // A read and a write, not an atomic add: only the lock keeps them together.
        let v = core::hint::black_box(*c);
        *c = v + 1;
    }
    0
}

/// The sizes `alloc` cycles through.
const ALLOC_SIZES: [usize; 9] = [16, 24, 32, 48, 64, 96, 128, 200, 256];
/// Blocks each CPU holds at a time in `alloc`.
const ALLOC_RING: usize = 16;

fn alloc_layout(i: usize) -> core::alloc::Layout {
    let size = ALLOC_SIZES[(i * 7 + i / 5) % ALLOC_SIZES.len()];
    core::alloc::Layout::from_size_align(size, 8).expect("a valid layout")
}

/// The byte CPU `k` writes into its `i`th block.
fn alloc_fill(k: usize, i: usize) -> u8 {
    (k * 31 + i * 7 + 1) as u8
}

/// What CPU `k` must read back from its N blocks.
fn alloc_expected(k: usize) -> usize {
    (0..N.load(Ordering::Relaxed))
        .map(|i| alloc_layout(i).size() * usize::from(alloc_fill(k, i)))
        .sum()
}

/// `alloc`'s work on CPU `k`: returns the sum of the bytes read back.
fn alloc_pairs(k: usize) -> usize {
    let n = N.load(Ordering::Relaxed);
    let mut ring = [(core::ptr::null_mut::<u8>(), alloc_layout(0)); ALLOC_RING];
    let mut sum = 0usize;
    let mut give_back = |p: *mut u8, l: core::alloc::Layout| {
        // SAFETY: a live block of `l.size()` bytes this CPU filled; freed once, with its layout.
        unsafe {
            sum += core::slice::from_raw_parts(p, l.size())
                .iter()
                .map(|&b| usize::from(b))
                .sum::<usize>();
            stardust::alloc::alloc::dealloc(p, l);
        }
    };
    for i in 0..n {
        let slot = &mut ring[i % ALLOC_RING];
        if !slot.0.is_null() {
            give_back(slot.0, slot.1);
        }
        let l = alloc_layout(i);
        // SAFETY: a non-zero size.
        let p = unsafe { stardust::alloc::alloc::alloc(l) };
        if p.is_null() {
            stardust::alloc::alloc::handle_alloc_error(l);
        }
        // SAFETY: a fresh block of `l.size()` bytes.
        unsafe { p.write_bytes(alloc_fill(k, i), l.size()) };
        *slot = (p, l);
    }
    for (p, l) in ring {
        if !p.is_null() {
            give_back(p, l);
        }
    }
    sum
}

/// Set by CPU 1 once it read the page (its TLB holds the translation now).
static READ: AtomicBool = AtomicBool::new(false);
/// Set by CPU 0 once the page is unmapped.
static UNMAPPED: AtomicBool = AtomicBool::new(false);

/// CPU 1's part of `shootdown`: reads the page, then spins (never idle: on Xen a vCPU that
/// blocks is switched out, and that alone would drop its TLB) until CPU 0 unmapped it, and
/// reads it again: that read must fault.
fn read_page_twice(page: usize) -> usize {
    // SAFETY: `page` is the probe's own page, mapped for this read.
    let first = unsafe { core::ptr::read_volatile(page as *const u8) as usize };
    READ.store(true, Ordering::Release);
    while !UNMAPPED.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    // SAFETY: the page is unmapped now: this read is meant to fault, which the kernel reports.
    first + unsafe { core::ptr::read_volatile(page as *const u8) as usize }
}

fn recurse(depth: usize) -> usize {
    let pad = core::hint::black_box([depth; 64]);
    if depth == usize::MAX {
        return pad[0];
    }
    recurse(depth + 1) + pad[1]
}

fn panic_here(_: usize) -> usize {
    panic!("smpprobe: a panic on CPU 1");
}

fn fail(what: core::fmt::Arguments<'_>) -> ExitCode {
    println!("smpprobe: FAIL: {what}");
    ExitCode::from(1)
}

/// Runs `f(k)` on every CPU k (CPU 0 here) and returns the results.
fn on_every_cpu(cpus: usize, f: fn(usize) -> usize) -> [usize; 8] {
    let mut results = [0usize; 8];
    for (k, _) in results.iter().enumerate().take(cpus).skip(1) {
        assert!(stardust::__test_start_on(k, f, k), "CPU {k} takes a job");
    }
    results[0] = f(0);
    for (k, r) in results.iter_mut().enumerate().take(cpus).skip(1) {
        *r = stardust::__test_join(k).expect("the job's result");
    }
    results
}

/// `smpprobe bench`: see the crate docs.
fn bench(n: u64, cpus: usize) -> ExitCode {
    let start = Instant::now();
    let halves: [_; 2] = core::array::from_fn(|k| {
        let range = n * k as u64 / 2..n * (k as u64 + 1) / 2;
        thread::spawn(move || sum(range))
    });
    let together = halves
        .into_iter()
        .fold(0u64, |s, h| s.wrapping_add(h.join()));
    let took = start.elapsed();
    if together != sum(0..n) {
        return fail(format_args!("two threads summed {together:#x}"));
    }
    println!(
        "bench parallel: {n} items in {} us on {cpus} CPUs",
        took.as_micros()
    );
    const ROUNDS: u32 = 20_000;
    let (to_b, from_a) = channel::<u32>(1);
    let (to_a, from_b) = channel::<u32>(1);
    let echo = thread::spawn(move || {
        while let Ok(v) = from_a.recv() {
            if to_a.send(v + 1).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut v = 0;
    for _ in 0..ROUNDS {
        if to_b.send(v).is_err() {
            return fail(format_args!("the echo thread is gone"));
        }
        v = from_b.recv().unwrap_or(0);
    }
    let took = start.elapsed();
    drop(to_b);
    echo.join();
    if v != ROUNDS {
        return fail(format_args!("the token came back as {v}"));
    }
    println!(
        "bench handoff: {} ns per hand-off on {cpus} CPUs",
        took.as_nanos() / u128::from(2 * ROUNDS)
    );
    static SHARED: stardust::sync::Mutex<u64> = stardust::sync::Mutex::new(0);
    const LOCKS: u64 = 20_000;
    let start = Instant::now();
    let lockers: [_; 2] = core::array::from_fn(|_| {
        thread::spawn(|| {
            for _ in 0..LOCKS {
                *SHARED.lock() += 1;
            }
        })
    });
    for h in lockers {
        h.join();
    }
    let took = start.elapsed();
    let total = *SHARED.lock();
    if total != 2 * LOCKS {
        return fail(format_args!("two threads counted {total} under a mutex"));
    }
    println!(
        "bench mutex: {} ns per lock on {cpus} CPUs",
        took.as_nanos() / u128::from(2 * LOCKS)
    );
    ExitCode::SUCCESS
}

#[stardust::main]
fn main() -> ExitCode {
    let mut args = stardust::args();
    let mode = args.next().unwrap_or("parallel");
    let cpus = stardust::cpus().min(8);
    if mode == "bench" {
        let n = args
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or(20_000_000u64);
        return bench(n, cpus);
    }
    if cpus < 2 {
        println!("smpprobe: only one CPU");
        return ExitCode::from(2);
    }
    match mode {
        "parallel" => {
            let n = args
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or(4_000_000usize);
            N.store(n, Ordering::Relaxed);
            CPUS.store(cpus, Ordering::Relaxed);
            let t0 = stardust::cycles();
            let parts = on_every_cpu(cpus, part_sum);
            let t1 = stardust::cycles();
            let together = parts[..cpus]
                .iter()
                .fold(0u64, |s, &p| s.wrapping_add(p as u64));
            let alone = sum(0..n as u64);
            let t2 = stardust::cycles();
            if together != alone {
                return fail(format_args!(
                    "{cpus} CPUs summed {together:#x}, one {alone:#x}"
                ));
            }
            println!(
                "smpprobe: parallel sum on {cpus} CPUs matches ({} cycles; one CPU: {})",
                t1 - t0,
                t2 - t1
            );
            on_every_cpu(cpus, count);
            let total = *COUNTER.lock();
            if total != (cpus * ADDS) as u64 {
                return fail(format_args!(
                    "{cpus} CPUs counted {total} under one lock, not {}",
                    cpus * ADDS
                ));
            }
            println!("smpprobe: {cpus} CPUs counted {total} under one lock");
            ExitCode::SUCCESS
        }
        "alloc" => {
            let n = args
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or(200_000usize);
            N.store(n, Ordering::Relaxed);
            let start = Instant::now();
            let sums = on_every_cpu(cpus, alloc_pairs);
            let parallel = start.elapsed();
            for (k, &s) in sums.iter().enumerate().take(cpus) {
                if s != alloc_expected(k) {
                    return fail(format_args!(
                        "CPU {k} read back {s} from its blocks, not {}",
                        alloc_expected(k)
                    ));
                }
            }
            let start = Instant::now();
            let alone = alloc_pairs(0);
            let alone_took = start.elapsed();
            if alone != alloc_expected(0) {
                return fail(format_args!("CPU 0 alone read back {alone}"));
            }
            let per_pair = |t: core::time::Duration| t.as_nanos() / n.max(1) as u128;
            println!(
                "smpprobe: alloc on {cpus} CPUs: checksums match, {} ns per pair in parallel \
                 (one CPU alone: {} ns)",
                per_pair(parallel),
                per_pair(alone_took)
            );
            ExitCode::SUCCESS
        }
        "shootdown" => {
            let Some(frames) = stardust::frames().alloc_frames_zeroed(1) else {
                return fail(format_args!("no memory for the page"));
            };
            let page = frames.addr();
            assert!(stardust::__test_start_on(1, read_page_twice, page));
            while !READ.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
            // SAFETY: the page is the probe's own, never touched again but by CPU 1's second
            // read, which is meant to fault.
            if !unsafe { stardust::__test_guard_page(page as u64) } {
                return fail(format_args!("the page could not be unmapped"));
            }
            println!("smpprobe: CPU 1 reads the page unmapped on CPU 0");
            UNMAPPED.store(true, Ordering::Release);
            stardust::__test_join(1);
            fail(format_args!(
                "CPU 1 read the page through a stale translation"
            ))
        }
        "overflow" => {
            assert!(stardust::__test_start_on(1, recurse, 0));
            stardust::__test_join(1);
            fail(format_args!("CPU 1 recursed for ever without a fault"))
        }
        "panic" => {
            assert!(stardust::__test_start_on(1, panic_here, 0));
            stardust::__test_join(1);
            fail(format_args!("CPU 1's panic did not stop the machine"))
        }
        other => {
            println!(
                "usage: smpprobe parallel [N] | alloc [N] | shootdown | overflow | panic | bench [N] (not \
                 {other:?})"
            );
            ExitCode::from(2)
        }
    }
}
