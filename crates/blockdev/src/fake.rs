//! Fakes for host tests: [`RamDisk`], a disk in memory, and [`PowerCut`], a disk with a volatile
//! write cache that loses power at a chosen write.
//!
//! Both complete requests in submission order, or in a seeded random order
//! ([`RamDisk::reorder`], [`PowerCut::reorder`]), so that callers cannot rely on an order the
//! interface does not promise. Data moves at submission; the completion only reports it.

use crate::{BlockDevice, Completion, Error, Info, Op, Request, SECTOR_SIZE, Stats};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

/// A small deterministic generator (xorshift64*), so the fakes need no dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Requests that have moved their data and wait to be reported.
#[derive(Debug, Default)]
struct Completions {
    queue: VecDeque<Completion>,
    reorder: Option<Rng>,
}

impl Completions {
    fn pop(&mut self) -> Option<Completion> {
        let i = match &mut self.reorder {
            Some(rng) => rng.below(self.queue.len()),
            None => 0,
        };
        self.queue.remove(i)
    }
}

/// The default geometry of the fakes: 512-byte blocks, writable, flushable, 64 blocks per
/// request, 16 requests in flight.
pub const fn geometry(blocks: u64, block_size: u32) -> Info {
    Info {
        block_size,
        blocks,
        read_only: false,
        flush: true,
        max_request_blocks: 64,
        max_in_flight: 16,
    }
}

fn stats_for(stats: &mut Stats, c: &Completion) {
    match (c.op, c.result) {
        (Op::Read, Ok(())) => {
            stats.reads += 1;
            stats.read_bytes += c.buffer.len() as u64;
        }
        (Op::Write, Ok(())) => {
            stats.writes += 1;
            stats.written_bytes += c.buffer.len() as u64;
        }
        (Op::Flush, Ok(())) => stats.flushes += 1,
        (_, Err(_)) => stats.errors += 1,
    }
}

/// A disk in memory. Every write is at once durable (there is no cache to lose).
#[derive(Debug)]
pub struct RamDisk {
    data: Vec<u8>,
    info: Info,
    done: Completions,
    failing: Option<u64>,
    stats: Stats,
}

impl RamDisk {
    /// A zeroed disk of `blocks` blocks of `block_size` bytes, with [`geometry`]'s limits.
    pub fn new(blocks: u64, block_size: u32) -> Self {
        let len = usize::try_from(blocks * block_size as u64).expect("a fake disk fits in memory");
        RamDisk::with_info(vec![0; len], geometry(blocks, block_size))
    }

    /// A disk holding `image` (its length a whole number of blocks of `block_size`).
    pub fn from_image(image: Vec<u8>, block_size: u32) -> Self {
        let blocks = (image.len() / block_size as usize) as u64;
        RamDisk::with_info(image, geometry(blocks, block_size))
    }

    /// A disk holding `image`, with the geometry `info` (read-only, no flush, limits...).
    pub fn with_info(mut image: Vec<u8>, info: Info) -> Self {
        image.resize(usize::try_from(info.bytes()).expect("fits"), 0);
        RamDisk {
            data: image,
            info,
            done: Completions::default(),
            failing: None,
            stats: Stats::default(),
        }
    }

    /// Completes requests in a random order from `seed`.
    pub fn reorder(mut self, seed: u64) -> Self {
        self.done.reorder = Some(Rng::new(seed));
        self
    }

    /// Makes every request that touches `block` fail with an I/O error (a bad sector).
    pub fn fail_block(mut self, block: u64) -> Self {
        self.failing = Some(block);
        self
    }

    /// The disk's bytes.
    pub fn image(&self) -> &[u8] {
        &self.data
    }

    /// The disk's bytes, to change behind the filesystem's back (corruption tests).
    pub fn image_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The disk's bytes, given back.
    pub fn into_image(self) -> Vec<u8> {
        self.data
    }
}

impl BlockDevice for RamDisk {
    fn info(&self) -> Info {
        self.info
    }

    fn submit(&mut self, mut request: Request) -> Result<(), (Error, Request)> {
        if let Err(e) = self.info.check(&request) {
            self.stats.errors += 1;
            return Err((e, request));
        }
        if self.done.queue.len() >= self.info.max_in_flight as usize {
            return Err((Error::Busy, request));
        }
        let size = self.info.block_size as u64;
        let start = (request.block * size) as usize;
        let end = start + request.buffer.len();
        let count = request.buffer.len() as u64 / size;
        let result = match self.failing {
            Some(bad)
                if request.op != Op::Flush
                    && (request.block..request.block + count).contains(&bad) =>
            {
                Err(Error::Io {
                    block: request.block,
                })
            }
            _ => {
                match request.op {
                    Op::Read => request
                        .buffer
                        .as_mut_slice()
                        .copy_from_slice(&self.data[start..end]),
                    Op::Write => self.data[start..end].copy_from_slice(request.buffer.as_slice()),
                    Op::Flush => {}
                }
                Ok(())
            }
        };
        self.done.queue.push_back(Completion {
            id: request.id,
            op: request.op,
            block: request.block,
            buffer: request.buffer,
            result,
        });
        Ok(())
    }

    fn complete(&mut self) -> Option<Completion> {
        let c = self.done.pop()?;
        stats_for(&mut self.stats, &c);
        Some(c)
    }

    fn in_flight(&self) -> usize {
        self.done.queue.len()
    }

    fn stats(&self) -> Stats {
        self.stats
    }
}

/// What survives a power cut of the writes that no completed flush covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survival {
    /// All of them, in order: a disk without a volatile cache (and the torn write's prefix).
    All,
    /// None of them: the cache was lost whole.
    None,
    /// Each 512-byte sector of each of them independently, from the seed: a disk whose cache
    /// writes back in any order, sector by sector (sectors themselves are atomic). The harshest
    /// model a crash-safe filesystem must survive.
    Random(u64),
}

#[derive(Debug)]
struct Unflushed {
    id: u64,
    offset: usize,
    data: Vec<u8>,
    reported: bool,
}

/// A disk with a volatile write cache that loses power after a given number of writes.
///
/// Writes `1..=cut_after` complete normally (reads see them at once). Write `cut_after + 1`
/// is where the power fails: with `tear`, a random prefix of its sectors reaches the cache,
/// otherwise none; it and every request after it fail with [`Error::PowerCut`]. A completed
/// flush makes durable every write whose completion was reported before the flush was
/// submitted (and only those: a filesystem that flushes before its writes completed is caught). [`after_power_cut`](PowerCut::after_power_cut)
/// gives the image the disk holds when power returns: the durable data, plus what
/// [`Survival`] keeps of the writes no flush covered. Without a cut point it never fails, and
/// counts writes ([`writes`](PowerCut::writes)) so that a test can choose its cut points.
#[derive(Debug)]
pub struct PowerCut {
    durable: Vec<u8>,
    volatile: Vec<u8>,
    /// Writes no flush covered yet, in order: request id, byte offset, data, and whether its
    /// completion has been reported (only those does a flush make durable).
    unflushed: Vec<Unflushed>,
    info: Info,
    writes: u64,
    cut_after: Option<u64>,
    tear: Option<Rng>,
    cut: bool,
    done: Completions,
    stats: Stats,
}

impl PowerCut {
    /// A disk holding `image` (a whole number of blocks of `block_size`), that fails at write
    /// `cut_after + 1` (never with `None`), tearing that write from `tear_seed` if given.
    pub fn new(
        image: Vec<u8>,
        block_size: u32,
        cut_after: Option<u64>,
        tear_seed: Option<u64>,
    ) -> Self {
        let info = geometry((image.len() / block_size as usize) as u64, block_size);
        PowerCut {
            volatile: image.clone(),
            durable: image,
            unflushed: Vec::new(),
            info,
            writes: 0,
            cut_after,
            tear: tear_seed.map(Rng::new),
            cut: false,
            done: Completions::default(),
            stats: Stats::default(),
        }
    }

    /// Completes requests in a random order from `seed`.
    pub fn reorder(mut self, seed: u64) -> Self {
        self.done.reorder = Some(Rng::new(seed));
        self
    }

    /// Write requests submitted so far (including the one the power failed in).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Whether the power has failed.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// What reads see now (the cache over the durable data).
    pub fn current(&self) -> &[u8] {
        &self.volatile
    }

    /// The image on the disk when the power comes back.
    pub fn after_power_cut(&self, survival: Survival) -> Vec<u8> {
        let mut image = self.durable.clone();
        let mut rng = match survival {
            Survival::None => return image,
            Survival::All => None,
            Survival::Random(seed) => Some(Rng::new(seed)),
        };
        let sector = SECTOR_SIZE as usize;
        for w in &self.unflushed {
            for (i, chunk) in w.data.chunks(sector).enumerate() {
                if rng.as_mut().is_none_or(|r| r.next() & 1 == 1) {
                    let at = w.offset + i * sector;
                    image[at..at + chunk.len()].copy_from_slice(chunk);
                }
            }
        }
        image
    }

    fn finish(&mut self, request: Request, result: Result<(), Error>) {
        self.done.queue.push_back(Completion {
            id: request.id,
            op: request.op,
            block: request.block,
            buffer: request.buffer,
            result,
        });
    }
}

impl BlockDevice for PowerCut {
    fn info(&self) -> Info {
        self.info
    }

    fn submit(&mut self, mut request: Request) -> Result<(), (Error, Request)> {
        if let Err(e) = self.info.check(&request) {
            self.stats.errors += 1;
            return Err((e, request));
        }
        if self.done.queue.len() >= self.info.max_in_flight as usize {
            return Err((Error::Busy, request));
        }
        if self.cut {
            self.finish(request, Err(Error::PowerCut));
            return Ok(());
        }
        let start = (request.block * self.info.block_size as u64) as usize;
        let end = start + request.buffer.len();
        match request.op {
            Op::Read => {
                request
                    .buffer
                    .as_mut_slice()
                    .copy_from_slice(&self.volatile[start..end]);
            }
            Op::Write => {
                self.writes += 1;
                if self.cut_after.is_some_and(|n| self.writes > n) {
                    self.cut = true;
                    let sectors = request.buffer.len() / SECTOR_SIZE as usize;
                    let kept = self.tear.as_mut().map_or(0, |r| r.below(sectors + 1));
                    if kept > 0 {
                        let n = kept * SECTOR_SIZE as usize;
                        let data = request.buffer.as_slice()[..n].to_vec();
                        self.volatile[start..start + n].copy_from_slice(&data);
                        self.unflushed.push(Unflushed {
                            id: request.id,
                            offset: start,
                            data,
                            reported: false,
                        });
                    }
                    self.finish(request, Err(Error::PowerCut));
                    return Ok(());
                }
                let data = request.buffer.as_slice().to_vec();
                self.volatile[start..end].copy_from_slice(&data);
                self.unflushed.push(Unflushed {
                    id: request.id,
                    offset: start,
                    data,
                    reported: false,
                });
            }
            Op::Flush => {
                let durable = &mut self.durable;
                self.unflushed.retain(|w| {
                    if w.reported {
                        durable[w.offset..w.offset + w.data.len()].copy_from_slice(&w.data);
                    }
                    !w.reported
                });
            }
        }
        self.finish(request, Ok(()));
        Ok(())
    }

    fn complete(&mut self) -> Option<Completion> {
        let c = self.done.pop()?;
        stats_for(&mut self.stats, &c);
        if c.op == Op::Write && c.result.is_ok() {
            // Ids are the caller's and may repeat: the oldest unreported write of that id.
            if let Some(w) = self
                .unflushed
                .iter_mut()
                .find(|w| w.id == c.id && !w.reported)
            {
                w.reported = true;
            }
        }
        Some(c)
    }

    fn in_flight(&self) -> usize {
        self.done.queue.len()
    }

    fn stats(&self) -> Stats {
        self.stats
    }
}
