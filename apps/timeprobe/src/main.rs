//! Timeprobe: checks the platform's timer, wall clock and guard pages, for the tests.
//!
//! - `sleep`: sleeps 1, 10 and 50 ms, prints `slept N ms: late by X us` for each; exit 1 if a
//!   sleep ended early.
//! - `wall`: prints `wall clock: <unix seconds>`; exit 1 without a wall clock or if it is
//!   before 2024-01-01.
//! - `guard`: unmaps a page of two fresh frames above 2 MiB of padding (`guard page at 0x...`;
//!   on KVM inside a 2 MiB page, which is split), then reads it: the
//!   read must fault (`EXCEPTION: #PF`, status 102); status 1 if it did not.
//! - `unguard`: unmaps then maps the page again, reads and writes it, prints `unguard ok`.
//! - `idle MS`: one sleep of MS milliseconds (default 2000), then `idled MS ms`: with nothing
//!   to run the CPU halts, which the idle test sees as QEMU's low CPU time; a long one is a
//!   guest that runs until it is killed (the signal tests).
//!
//! Anything else prints the usage, status 2.
#![no_std]
#![no_main]

use stardust::FrameAllocator;
use stardust::println;

/// 2024-01-01T00:00:00Z in Unix seconds.
const JAN_2024: u64 = 1_704_067_200;

#[stardust::main]
fn main() {
    let mut args = stardust::args();
    match args.next() {
        Some("sleep") => sleep(),
        Some("wall") => wall(),
        Some("guard") => guard(false),
        Some("unguard") => guard(true),
        Some("idle") => idle(args.next()),
        _ => {
            println!("usage: timeprobe sleep|wall|guard|unguard|idle [MS]");
            stardust::exit(2);
        }
    }
}

fn now() -> u64 {
    match stardust::time::now_ns() {
        Some(now) => now,
        None => {
            println!("timeprobe: no clock");
            stardust::exit(1);
        }
    }
}

fn sleep() {
    let mut early = false;
    for ms in [1u64, 10, 50] {
        let ns = ms * 1_000_000;
        let start = now();
        stardust::time::sleep_ns(ns);
        let slept = now() - start;
        if slept < ns {
            println!("slept {ms} ms: EARLY by {} us", (ns - slept) / 1000);
            early = true;
        } else {
            println!("slept {ms} ms: late by {} us", (slept - ns) / 1000);
        }
    }
    if early {
        stardust::exit(1);
    }
}

fn idle(ms: Option<&str>) {
    let Some(ms) = ms.map_or(Some(2000), |ms| ms.parse::<u64>().ok()) else {
        println!("timeprobe: idle MS: MS must be a number of milliseconds");
        stardust::exit(2);
    };
    println!("idle {ms} ms");
    stardust::time::sleep_ns(ms.saturating_mul(1_000_000));
    println!("idled {ms} ms");
}

fn wall() {
    let Some(ns) = stardust::time::wall_clock_ns() else {
        println!("timeprobe: no wall clock");
        stardust::exit(1);
    };
    let seconds = ns / 1_000_000_000;
    println!("wall clock: {seconds}");
    if seconds < JAN_2024 {
        println!("timeprobe: the wall clock is before 2024-01-01");
        stardust::exit(1);
    }
}

fn guard(unguard: bool) {
    // 2 MiB of padding first (kept), so that the probe's frames lie above the image's first
    // 2 MiB, where KVM maps RAM with 2 MiB pages: unmapping one splits its large page.
    let padding = stardust::frames().alloc_frames(512);
    let Some(frames) = stardust::frames().alloc_frames(2) else {
        println!("timeprobe: no frames");
        stardust::exit(1);
    };
    let page = frames.addr() as u64;
    // SAFETY: the first of two frames this function owns; only touched again (deliberately, to
    // fault) after it was unmapped, or after it was mapped again.
    if !unsafe { stardust::__test_guard_page(page) } {
        println!("timeprobe: could not unmap {page:#x}");
        stardust::exit(1);
    }
    println!("guard page at {page:#x}");
    // The neighbouring frame is still mapped (a split large page keeps the rest).
    let next = (page + stardust::FRAME_SIZE as u64) as *mut u64;
    // SAFETY: the second frame, ours and mapped read-write.
    unsafe { next.write_volatile(0x5eed) };
    // SAFETY: as above.
    if unsafe { next.read_volatile() } != 0x5eed {
        println!("timeprobe: the frame after the guard page lost a write");
        stardust::exit(1);
    }
    let p = page as *mut u64;
    if unguard {
        // SAFETY: the page was unmapped just above, by __test_guard_page.
        unsafe { stardust::__test_unguard_page(page) };
        // SAFETY: the page is ours and mapped read-write again.
        unsafe { p.write_volatile(0xfeed) };
        // SAFETY: as above.
        let value = unsafe { p.read_volatile() };
        if value != 0xfeed {
            println!("timeprobe: read {value:#x} back from the remapped page");
            stardust::exit(1);
        }
        println!("unguard ok");
        // SAFETY: the frames came from this allocator and are no longer used.
        unsafe { stardust::frames().free_frames(frames) };
        if let Some(padding) = padding {
            // SAFETY: as above.
            unsafe { stardust::frames().free_frames(padding) };
        }
    } else {
        // SAFETY: deliberately reads the unmapped page: it must fault (the kernel reports the
        // exception and exits 102).
        let value = unsafe { p.read_volatile() };
        println!("timeprobe: read {value:#x} from the guard page without a fault");
        stardust::exit(1);
    }
}
