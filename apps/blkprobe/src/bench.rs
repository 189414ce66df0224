//! `blkprobe bench layer=driver bytes=B seconds=S runs=R qd=Q`: the Stardust side of
//! `cargo xtask bench disk` (the contract is `xtask/src/bench/disk.rs`'s `probe_args`).
//!
//! The region is the disk's first `B` bytes. It is written whole first (not reported); then,
//! `R` times over: sequential 1 MiB writes, sequential 1 MiB reads, random aligned 4 KiB writes,
//! random 4 KiB reads, each for about `S` seconds, a write workload's time including its final
//! flush. After each, one line `bench <pattern> <bytes> <ns>`; at the end `bench done`; a
//! failure prints `bench error <what>` and ends the run (status 5).
//!
//! What it measures: the driver through `stardust::block`'s `BlockIo`, one call at a time. A
//! 1 MiB call is split into requests of the device's largest size, all in flight at once (the
//! `Blocking` adapter), so sequential workloads have several requests in flight; 4 KiB calls
//! have one. `qd` above 1 is refused: the facade has no asynchronous submission yet. The
//! filesystem layer (`layer=fs`) comes with the `filesystem` slot.

use alloc::vec;
use stardust::block::{BlockIo, disk};
use stardust::println;

/// Bytes of a sequential request.
const SEQ: usize = 1 << 20;
/// Bytes of a random request.
const RAND: usize = 4096;

fn now() -> u64 {
    stardust::time::now_ns().unwrap_or(0)
}

/// A small deterministic generator for the random offsets.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn fail(what: impl core::fmt::Display) -> u8 {
    println!("bench error {what}");
    5
}

/// Runs the bench with the arguments after `bench`.
pub fn run(args: &[&str]) -> u8 {
    let (mut layer, mut bytes, mut seconds, mut runs, mut qd) =
        ("driver", 64u64 << 20, 5u64, 1usize, 1usize);
    for arg in args {
        let ok = match arg.split_once('=') {
            Some(("layer", v)) => {
                layer = v;
                true
            }
            Some(("bytes", v)) => v.parse().map(|n| bytes = n).is_ok(),
            Some(("seconds", v)) => v.parse().map(|n| seconds = n).is_ok(),
            Some(("runs", v)) => v.parse().map(|n| runs = n).is_ok(),
            Some(("qd", v)) => v.parse().map(|n| qd = n).is_ok(),
            _ => false,
        };
        if !ok {
            return fail(format_args!(
                "bad argument {arg:?}; usage: blkprobe bench layer=driver bytes=B seconds=S runs=R qd=1"
            ));
        }
    }
    if layer != "driver" {
        return fail(format_args!(
            "layer={layer}: only layer=driver (the filesystem layer needs the filesystem slot)"
        ));
    }
    if qd != 1 {
        return fail(format_args!(
            "qd={qd}: one call in flight at a time (the facade's BlockIo is synchronous)"
        ));
    }
    let Some(mut disk) = disk() else {
        return fail("no disk");
    };
    let info = disk.info();
    let size = u64::from(info.block_size);
    let region = bytes / SEQ as u64 * SEQ as u64;
    if region == 0 || region / size > info.blocks {
        return fail(format_args!(
            "bytes={bytes}: the region must be at least 1 MiB and fit the disk ({} bytes)",
            info.bytes()
        ));
    }
    let mut buf = vec![0x5au8; SEQ];
    // The whole region written first, so reads read written blocks.
    let mut at = 0;
    while at < region {
        if let Err(e) = disk.write(at / size, &buf) {
            return fail(format_args!("prefill at byte {at}: {e}"));
        }
        at += SEQ as u64;
    }
    if let Err(e) = disk.flush() {
        return fail(format_args!("prefill flush: {e}"));
    }
    let limit = seconds.max(1) * 1_000_000_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..runs.max(1) {
        for (name, write, seq) in [
            ("seqwrite", true, true),
            ("seqread", false, true),
            ("randwrite", true, false),
            ("randread", false, false),
        ] {
            let len = if seq { SEQ } else { RAND };
            let t0 = now();
            let (mut moved, mut offset) = (0u64, 0u64);
            while now().saturating_sub(t0) < limit {
                let at = if seq {
                    let at = offset;
                    offset = (offset + SEQ as u64) % region;
                    at
                } else {
                    rng.below(region / RAND as u64) * RAND as u64
                };
                let result = if write {
                    disk.write(at / size, &buf[..len])
                } else {
                    disk.read(at / size, &mut buf[..len])
                };
                if let Err(e) = result {
                    return fail(format_args!("{name} at byte {at}: {e}"));
                }
                moved += len as u64;
            }
            if write && let Err(e) = disk.flush() {
                return fail(format_args!("{name} flush: {e}"));
            }
            println!("bench {name} {moved} {}", now().saturating_sub(t0).max(1));
        }
    }
    println!("bench done");
    0
}
