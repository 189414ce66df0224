//! Blkprobe: the disk (`block_device = "virtio"` or `"blkfront"`). Prints the disk's geometry, writes a pattern
//! over `blocks=N` blocks from block `start=B` (defaults 1000 from 8: several requests in
//! flight), flushes, reads the range back and checks it; with `verify` it only reads and checks
//! (the pattern an earlier boot wrote: persistence); with `noflush` it writes and reads back
//! without flushing (a guest that forgets its flush: the negative control of the write-log replay
//! tests, `tests/tests/disk_replay.rs`). The pattern is a function of `seed=S` and
//! each byte's offset on the disk ([`byte`]), so the host can check the image file too. Then it
//! prints the driver's counters (`blkprobe: stats ...`).
//!
//! `blkprobe bench ...` runs the driver layer of `cargo xtask bench disk` instead ([`bench`]).
//!
//! Exit statuses: 0 done; 2 a bad argument or a range past the end of the disk; 3 no disk;
//! 4 the data read back is not the pattern; 5 a write or flush refused or failed (a read-only
//! disk, one that cannot flush: the range is then read, to show reads still work); 6 a read
//! failed.
#![no_std]
#![no_main]

extern crate alloc;

mod bench;

use alloc::vec;
use stardust::block::{BlockIo, disk};
use stardust::println;

/// Byte `offset` of the disk in the pattern of `seed` (the host's test computes the same).
fn byte(seed: u64, offset: u64) -> u8 {
    let x = (offset ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 56) as u8
}

#[stardust::main]
fn main() -> u8 {
    let args: alloc::vec::Vec<&str> = stardust::args().collect();
    if args.first() == Some(&"bench") {
        return bench::run(&args[1..]);
    }
    let (mut start, mut blocks, mut seed, mut verify) = (8u64, 1000u64, 1u64, false);
    let mut flush = true;
    for arg in args {
        let parsed = match arg.split_once('=') {
            Some(("start", v)) => v.parse().map(|n| start = n).is_ok(),
            Some(("blocks", v)) => v.parse().map(|n| blocks = n).is_ok(),
            Some(("seed", v)) => v.parse().map(|n| seed = n).is_ok(),
            None if arg == "verify" => {
                verify = true;
                true
            }
            None if arg == "noflush" => {
                flush = false;
                true
            }
            _ => false,
        };
        if !parsed {
            println!(
                "blkprobe: bad argument {arg:?}; usage: blkprobe [start=8] [blocks=1000] [seed=1] [verify] [noflush]"
            );
            return 2;
        }
    }
    let Some(mut disk) = disk() else {
        println!("blkprobe: no disk");
        return 3;
    };
    let info = disk.info();
    println!(
        "blkprobe: disk of {} blocks of {} bytes, {}, {}, {} blocks per request, {} in flight",
        info.blocks,
        info.block_size,
        if info.read_only {
            "read-only"
        } else {
            "read-write"
        },
        if info.flush { "flush" } else { "no flush" },
        info.max_request_blocks,
        info.max_in_flight,
    );
    if blocks == 0
        || start
            .checked_add(blocks)
            .is_none_or(|end| end > info.blocks)
    {
        println!(
            "blkprobe: blocks {start}..{} are not on the disk",
            start.saturating_add(blocks)
        );
        return 2;
    }
    let size = u64::from(info.block_size);
    let base = start * size;
    let len = (blocks * size) as usize;
    let mut data = vec![0u8; len];
    for (i, b) in data.iter_mut().enumerate() {
        *b = byte(seed, base + i as u64);
    }
    let mut status = 0;
    if !verify {
        let written = disk
            .write(start, &data)
            .and_then(|()| if flush { disk.flush() } else { Ok(()) });
        if let Err(e) = written {
            println!("blkprobe: write refused: {e}");
            status = 5;
        }
    }
    let mut back = vec![0u8; len];
    if let Err(e) = disk.read(start, &mut back) {
        println!("blkprobe: read failed: {e}");
        return 6;
    }
    if status == 5 {
        println!("blkprobe: read {blocks} blocks ok");
    } else if let Some(at) = back.iter().zip(&data).position(|(a, b)| a != b) {
        println!(
            "blkprobe: mismatch at block {} (byte {at} of the range)",
            start + at as u64 / size
        );
        status = 4;
    } else if verify {
        println!("blkprobe: verified {blocks} blocks from {start} (seed {seed})");
    } else if !flush {
        println!(
            "blkprobe: wrote (no flush) and read back {blocks} blocks from {start} (seed {seed})"
        );
    } else {
        println!(
            "blkprobe: wrote, flushed and read back {blocks} blocks from {start} (seed {seed})"
        );
    }
    let s = disk.stats();
    println!(
        "blkprobe: stats reads {} writes {} flushes {} errors {} device_errors {} interrupts {}",
        s.reads,
        s.writes,
        s.flushes,
        s.errors,
        s.device_errors,
        disk.interrupts()
    );
    status
}
