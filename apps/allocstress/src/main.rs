//! Allocator stress test and benchmark. Needs a profile with an allocator.
//!
//! - `allocstress` (or `stress`): raw blocks of 1 B .. 1 MiB with alignments up to 4 KiB, freed
//!   in random order, each filled with a pattern checked before it is freed; then `Vec`, `Box`,
//!   `BTreeMap` and `hashbrown` churn. Prints a checksum of the data (the same for every
//!   allocator) and the heap statistics, then `allocstress: ok`. A wrong alignment or a block
//!   whose content changed (an overlap) fails with status 1.
//! - `oom`: allocates 1 MiB blocks until the heap runs out, which must end in the kernel's
//!   out-of-memory panic (status 101).
//! - `bench small|mixed|vec`: one timed workload; prints one `allocbench:` line (units of work,
//!   cycles, TSC Hz, peak live bytes, footprint, allocations and frees) for
//!   `cargo xtask bench alloc`.
#![no_std]
#![no_main]

use core::alloc::Layout;
use stardust::alloc::alloc::{alloc, dealloc};
use stardust::alloc::boxed::Box;
use stardust::alloc::collections::BTreeMap;
use stardust::alloc::string::{String, ToString};
use stardust::alloc::vec::Vec;
use stardust::println;

/// xorshift64*: deterministic, so every allocator sees the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Log-uniform in `lo..=hi`.
    fn log_size(&mut self, lo: usize, hi: usize) -> usize {
        let bits = usize::BITS - hi.leading_zeros();
        let b = self.below(u64::from(bits)) as u32;
        let top = (1usize << b).clamp(lo, hi);
        lo + self.below((top - lo + 1) as u64) as usize
    }
    /// 90% up to 1 KiB, 9% up to 64 KiB, 1% up to 1 MiB.
    fn mixed_size(&mut self) -> usize {
        match self.below(100) {
            0..=89 => self.log_size(1, 1024),
            90..=98 => self.log_size(1025, 64 * 1024),
            _ => self.log_size(64 * 1024 + 1, 1024 * 1024),
        }
    }
}

/// FNV-1a over bytes.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

struct Block {
    ptr: *mut u8,
    layout: Layout,
    tag: u8,
    full: bool,
}

impl Block {
    /// Allocates and fills the block: all of it when `full`, else its first and last bytes
    /// (the benchmark measures the allocator, not memset).
    fn new(layout: Layout, tag: u8, full: bool) -> Result<Block, String> {
        // SAFETY: the layout has a non-zero size; the kernel panics rather than return null.
        let ptr = unsafe { alloc(layout) };
        if !(ptr as usize).is_multiple_of(layout.align()) {
            return Err(stardust::alloc::format!(
                "block {ptr:p} of {} B not aligned to {}",
                layout.size(),
                layout.align()
            ));
        }
        // SAFETY: a fresh block of `layout.size()` bytes, ours.
        let bytes = unsafe { core::slice::from_raw_parts_mut(ptr, layout.size()) };
        if full {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = pattern(tag, i);
            }
        } else {
            let last = bytes.len() - 1;
            bytes[0] = pattern(tag, 0);
            bytes[last] = pattern(tag, last);
        }
        Ok(Block {
            ptr,
            layout,
            tag,
            full,
        })
    }

    /// Checks the pattern, frees the block and returns its contribution to the checksum.
    fn free(self) -> Result<u64, String> {
        // SAFETY: a live block of `layout.size()` bytes, ours.
        let bytes = unsafe { core::slice::from_raw_parts(self.ptr, self.layout.size()) };
        let mut checked = (0..bytes.len()).filter(|&i| self.full || i == 0 || i == bytes.len() - 1);
        if let Some(i) = checked.find(|&i| bytes[i] != pattern(self.tag, i)) {
            return Err(stardust::alloc::format!(
                "block {:p} of {} B was overwritten at byte {i}: another block overlaps it",
                self.ptr,
                self.layout.size()
            ));
        }
        let sum = fnv(self.layout.size() as u64, &bytes[..bytes.len().min(64)]);
        // SAFETY: allocated with this layout, freed once.
        unsafe { dealloc(self.ptr, self.layout) };
        Ok(sum)
    }
}

fn pattern(tag: u8, i: usize) -> u8 {
    tag ^ (i as u8).wrapping_mul(0x3b) ^ (i >> 8) as u8
}

/// Raw blocks: `ops` random steps over `slots` slots; a full slot is checked and freed. `full`:
/// fill and check every byte (else only the first and last).
fn raw_blocks(rng: &mut Rng, ops: usize, slots: usize, full: bool) -> Result<(u64, usize), String> {
    let mut table: Vec<Option<Block>> = (0..slots).map(|_| None).collect();
    let (mut sum, mut allocations) = (0u64, 0usize);
    for op in 0..ops {
        let slot = rng.below(slots as u64) as usize;
        match table[slot].take() {
            Some(b) => sum = sum.wrapping_add(b.free()?),
            None => {
                let size = rng.mixed_size();
                let align = 1usize << rng.below(13);
                let layout = Layout::from_size_align(size, align).map_err(|e| e.to_string())?;
                table[slot] = Some(Block::new(layout, op as u8, full)?);
                allocations += 1;
            }
        }
    }
    // Free what is left in random order.
    let mut left: Vec<Block> = table.into_iter().flatten().collect();
    while !left.is_empty() {
        let i = rng.below(left.len() as u64) as usize;
        sum = sum.wrapping_add(left.swap_remove(i).free()?);
    }
    Ok((sum, allocations))
}

/// Collections churn: a growing `Vec`, boxes, a `BTreeMap` and a `hashbrown::HashMap`.
fn collections(rng: &mut Rng) -> Result<u64, String> {
    let mut sum = 0u64;
    let mut v: Vec<u32> = Vec::new();
    for i in 0..100_000u32 {
        v.push(i.wrapping_mul(2_654_435_761));
    }
    sum = sum.wrapping_add(v.iter().map(|&x| u64::from(x)).sum::<u64>());
    drop(v);

    let boxes: Vec<Box<[u64; 32]>> = (0..2000u64).map(|i| Box::new([i; 32])).collect();
    sum = sum.wrapping_add(boxes.iter().map(|b| b[31]).sum::<u64>());
    drop(boxes);

    let mut tree: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut map: hashbrown::HashMap<u64, String> = hashbrown::HashMap::new();
    for _ in 0..20_000 {
        let k = rng.below(4096);
        if rng.below(3) == 0 {
            tree.remove(&(k as u32));
            map.remove(&k);
        } else {
            let len = rng.log_size(1, 512);
            tree.insert(k as u32, (0..len).map(|i| (i as u64 ^ k) as u8).collect());
            map.insert(k, stardust::alloc::format!("value-{k}-{len}"));
        }
    }
    for (k, val) in &tree {
        if val
            .iter()
            .enumerate()
            .any(|(i, &b)| b != (i as u64 ^ u64::from(*k)) as u8)
        {
            return Err(stardust::alloc::format!(
                "BTreeMap value of key {k} changed"
            ));
        }
        sum = sum.wrapping_add(fnv(u64::from(*k), val));
    }
    // Order-independent: hashbrown's iteration order depends on its hasher's seed.
    for (k, val) in &map {
        sum = sum.wrapping_add(fnv(*k, val.as_bytes()));
    }
    Ok(sum)
}

fn stress() -> Result<(), String> {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let (raw, allocations) = raw_blocks(&mut rng, 6000, 256, true)?;
    let coll = collections(&mut rng)?;
    println!(
        "allocstress: {allocations} raw blocks, checksum {:#018x}",
        raw ^ coll.rotate_left(17)
    );
    let stats = stardust::heap_stats().ok_or("this profile has no allocator")?;
    println!("allocstress: heap: {stats}");
    if stats.used != 0 {
        return Err(stardust::alloc::format!(
            "{} bytes still in use after everything was freed",
            stats.used
        ));
    }
    println!("allocstress: ok");
    Ok(())
}

fn oom() -> Result<(), String> {
    let mut kept: Vec<Box<[u8]>> = Vec::new();
    loop {
        // Every block is touched, so this is real memory, not a lazy reservation.
        kept.push(stardust::alloc::vec![0xa5u8; 1 << 20].into_boxed_slice());
        println!("allocstress: holding {} MiB", kept.len());
    }
}

fn bench(workload: &str) -> Result<(), String> {
    let mut rng = Rng(0xbe0c_4a11_0c00_0001);
    let start = stardust::cycles();
    let ops = match workload {
        // Small objects, replaced at random in a table of 1,000: the common case of a server.
        "small" => {
            let mut table: Vec<Option<Box<[u8]>>> = (0..1000).map(|_| None).collect();
            let ops = 200_000;
            for _ in 0..ops {
                let slot = rng.below(1000) as usize;
                let size = 16 + rng.below(241) as usize;
                table[slot] = match table[slot].take() {
                    Some(_) => None,
                    None => Some(stardust::alloc::vec![1u8; size].into_boxed_slice()),
                };
            }
            ops
        }
        // The stress test's mixed sizes and alignments.
        "mixed" => {
            raw_blocks(&mut rng, 20_000, 256, false)?;
            20_000
        }
        // Growing vectors: realloc-heavy.
        "vec" => {
            let rounds = 50;
            let mut total = 0;
            for r in 0..rounds {
                let mut vs: Vec<Vec<u64>> = (0..8).map(|_| Vec::new()).collect();
                for i in 0..8192u64 {
                    vs[(i % 8) as usize].push(i ^ r);
                }
                total += vs.iter().map(|v| v.len()).sum::<usize>();
            }
            total
        }
        other => {
            return Err(stardust::alloc::format!(
                "unknown workload `{other}` (small, mixed, vec)"
            ));
        }
    };
    let cycles = stardust::cycles() - start;
    let stats = stardust::heap_stats().ok_or("this profile has no allocator")?;
    println!(
        "allocbench: workload={workload} work={ops} cycles={cycles} hz={} peak={} footprint={} \
         allocations={} frees={}",
        stardust::cycles_per_second().unwrap_or(0),
        stats.peak,
        stats.footprint,
        stats.allocations,
        stats.frees
    );
    Ok(())
}

#[stardust::main]
fn main() -> Result<(), String> {
    let args: Vec<&str> = stardust::args().collect();
    match args.as_slice() {
        [] | ["stress"] => stress(),
        ["oom"] => oom(),
        ["bench", workload] => bench(workload),
        _ => Err("usage: allocstress [stress | oom | bench small|mixed|vec]".into()),
    }
}
