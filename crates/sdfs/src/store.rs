//! The blocks: reading and checking them, the free-space bitmap, blocks retired by the running
//! transaction (free only once it commits), the count of dirty blocks the next sync will write,
//! and writes combined into runs of neighbouring blocks.

use crate::crc::crc32c;
use crate::format::{BLOCK, FIRST_DATA_BLOCK, MAX_RUN, Ptr, Run};
use crate::{Corruption, Error};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use blockdev::BlockIo;

/// A block's bytes.
pub type Block = Box<[u8; BLOCK]>;

/// A zeroed block.
pub fn zeroed() -> Block {
    Box::new([0u8; BLOCK])
}

/// The longest run of blocks written with one device write.
const RUN_BLOCKS: usize = 64;

/// A set of block numbers.
#[derive(Debug, Clone)]
pub struct Bitmap(Vec<u64>);

impl Bitmap {
    pub fn new(bits: u64) -> Self {
        Bitmap(vec![0; bits.div_ceil(64) as usize])
    }
    pub fn get(&self, i: u64) -> bool {
        self.0[(i / 64) as usize] >> (i % 64) & 1 == 1
    }
    pub fn set(&mut self, i: u64) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }
    pub fn clear(&mut self, i: u64) {
        self.0[(i / 64) as usize] &= !(1 << (i % 64));
    }
}

/// The device and the state of its blocks.
#[derive(Debug)]
pub struct Store<D> {
    pub dev: D,
    /// Device blocks per filesystem block.
    scale: u64,
    /// Filesystem blocks.
    pub blocks: u64,
    /// Blocks the committed tree or the running transaction's written blocks use.
    used: Bitmap,
    /// Blocks not in `used`.
    pub free: u64,
    /// Dirty blocks in memory: each needs a free block at the next sync.
    pub dirty: u64,
    /// Blocks the committed tree uses that the running transaction no longer does.
    pub retired: Vec<u32>,
    /// Where the next allocation starts looking.
    cursor: u64,
    /// Blocks allocated and not yet written: the first block and the bytes.
    run: Option<(u32, Vec<u8>)>,
    /// Blocks read or written lately, as (pointer, contents), the newest last: indirect blocks
    /// read (checked), so that reading a file leaf by leaf reads each of them once, and every
    /// block a sync wrote, so that the next change to the same place (an append to a log: its
    /// last leaf, the path above it, the inode table's leaf) does not read them back. A pointer
    /// carries its block's checksum and a block is dropped from here when it is written again,
    /// so an entry is always what the block holds.
    cache: Vec<(Ptr, Block)>,
    /// The blocks the running transaction wrote, while they form one run of at most
    /// [`MAX_RUN`] blocks: its first block and their CRC-32Cs; `None` once they do not.
    tx: Option<(u32, Vec<u32>)>,
    /// The running transaction wrote some block.
    tx_wrote: bool,
}

/// What the running transaction wrote ([`Store::written`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// No block.
    Nothing,
    /// One run of at most [`MAX_RUN`] blocks.
    Run(Run),
    /// More, or in several places.
    Scattered,
}

/// Blocks kept by the cache: a path of the tallest tree, twice (a sync's writes for an append
/// to one file: its path and the inode table's).
const CACHE_BLOCKS: usize = 2 * crate::format::MAX_HEIGHT as usize;

impl<D: BlockIo> Store<D> {
    /// A store over `dev` for `blocks` filesystem blocks, all free but the superblocks.
    pub fn new(dev: D, scale: u64, blocks: u64) -> Self {
        let mut used = Bitmap::new(blocks);
        used.set(0);
        used.set(1);
        Store {
            dev,
            scale,
            blocks,
            used,
            free: blocks - u64::from(FIRST_DATA_BLOCK),
            dirty: 0,
            retired: Vec::new(),
            cursor: u64::from(FIRST_DATA_BLOCK),
            run: None,
            cache: Vec::new(),
            tx: None,
            tx_wrote: false,
        }
    }

    /// Reads block `block` without checking it.
    pub fn read_raw(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.dev
            .read(block * self.scale, &mut buf[..BLOCK])
            .map_err(Error::Device)
    }

    /// Writes block `block` at once (the superblocks).
    pub fn write_raw(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        self.dev
            .write(block * self.scale, &buf[..BLOCK])
            .map_err(Error::Device)
    }

    /// Reads the block `ptr` points to and checks its checksum; a block in the cache is
    /// copied from it, without a device read.
    pub fn read(&mut self, ptr: Ptr, buf: &mut [u8; BLOCK]) -> Result<(), Error> {
        if ptr.is_hole() {
            buf.fill(0);
            return Ok(());
        }
        if let Some(i) = self.cache.iter().position(|(p, _)| *p == ptr) {
            let entry = self.cache.remove(i);
            buf.copy_from_slice(&entry.1[..]);
            self.cache.push(entry);
            return Ok(());
        }
        self.read_raw(u64::from(ptr.block), buf)?;
        if crc32c(buf) != ptr.crc {
            return Err(Error::Corrupt(Corruption::Checksum { block: ptr.block }));
        }
        Ok(())
    }

    /// The block `ptr` points to, checked.
    pub fn load(&mut self, ptr: Ptr) -> Result<Block, Error> {
        let mut b = zeroed();
        self.read(ptr, &mut b)?;
        Ok(b)
    }

    /// Reads the indirect block `ptr` points to into `buf`, and keeps it in the cache.
    pub fn read_cached(&mut self, ptr: Ptr, buf: &mut [u8; BLOCK]) -> Result<(), Error> {
        let hit = self.cache.iter().any(|(p, _)| *p == ptr);
        self.read(ptr, buf)?;
        if !hit {
            self.remember(ptr, buf);
        }
        Ok(())
    }

    /// Keeps a copy of `data`, the contents of the block `ptr` points to, in the cache (the
    /// oldest entry goes when it is full).
    fn remember(&mut self, ptr: Ptr, data: &[u8; BLOCK]) {
        let mut copy = if self.cache.len() >= CACHE_BLOCKS {
            self.cache.remove(0).1
        } else {
            zeroed()
        };
        copy.copy_from_slice(&data[..]);
        self.cache.push((ptr, copy));
    }

    /// Whether `n` more dirty blocks fit in the free space.
    pub fn ensure(&self, n: u64) -> Result<(), Error> {
        if self.dirty.saturating_add(n) > self.free {
            Err(Error::NoSpace)
        } else {
            Ok(())
        }
    }

    /// Counts one more dirty block, if it fits.
    pub fn dirty_one(&mut self) -> Result<(), Error> {
        self.ensure(1)?;
        self.dirty += 1;
        Ok(())
    }

    /// A dirty block was dropped without being written.
    pub fn undirty(&mut self, n: u64) {
        debug_assert!(self.dirty >= n);
        self.dirty -= n;
    }

    /// Marks a block of the tree being mounted as used; false if it already was.
    pub fn mark(&mut self, block: u32) -> bool {
        let b = u64::from(block);
        if self.used.get(b) {
            return false;
        }
        self.used.set(b);
        self.free -= 1;
        true
    }

    /// Writes a dirty block to a free block: its pointer.
    pub fn write_new(&mut self, data: &[u8; BLOCK]) -> Result<Ptr, Error> {
        let block = self.find_free()?;
        // A cached copy of what this block held before it was freed is stale now.
        self.cache.retain(|(p, _)| p.block != block);
        // Combine with the run being built when it follows it; else write that run first.
        let fits = matches!(&self.run, Some((start, bytes))
            if u64::from(*start) + (bytes.len() / BLOCK) as u64 == u64::from(block)
                && bytes.len() < RUN_BLOCKS * BLOCK);
        if !fits {
            self.write_run()?;
            self.run = Some((block, Vec::with_capacity(RUN_BLOCKS * BLOCK)));
        }
        if let Some((_, bytes)) = &mut self.run {
            bytes.extend_from_slice(data);
        }
        self.used.set(u64::from(block));
        self.free -= 1;
        self.undirty(1);
        self.cursor = u64::from(block) + 1;
        let ptr = Ptr {
            block,
            crc: crc32c(data),
        };
        // The next transaction's change to this file starts from these blocks (the tail of a
        // log, the path above it, the inode table's leaf): from memory, not the disk.
        self.remember(ptr, data);
        match &mut self.tx {
            Some((start, crcs))
                if u64::from(*start) + crcs.len() as u64 == u64::from(block)
                    && crcs.len() < MAX_RUN as usize =>
            {
                crcs.push(ptr.crc)
            }
            _ if !self.tx_wrote => self.tx = Some((block, alloc::vec![ptr.crc])),
            _ => self.tx = None,
        }
        self.tx_wrote = true;
        Ok(ptr)
    }

    /// What the running transaction wrote so far.
    pub fn written(&self) -> Written {
        match &self.tx {
            _ if !self.tx_wrote => Written::Nothing,
            Some((start, crcs)) => Written::Run(Run {
                start: *start,
                count: crcs.len() as u32,
                check: Run::check_of(crcs.iter().copied()),
            }),
            None => Written::Scattered,
        }
    }

    /// Whether the blocks of `run` hold what it says (reads them, bypassing the cache).
    pub fn run_intact(&mut self, run: &Run) -> Result<bool, Error> {
        let mut b = zeroed();
        let mut crcs = Vec::with_capacity(run.count as usize);
        for i in 0..run.count {
            self.read_raw(u64::from(run.start) + u64::from(i), &mut b[..])?;
            crcs.push(crc32c(&b[..]));
        }
        Ok(Run::check_of(crcs.into_iter()) == run.check)
    }

    /// Writes the run being built.
    pub fn write_run(&mut self) -> Result<(), Error> {
        // On an error the sync fails and the filesystem is poisoned (the tree points to blocks
        // that may not hold what it says).
        match self.run.take() {
            Some((start, bytes)) => self
                .dev
                .write(u64::from(start) * self.scale, &bytes)
                .map_err(Error::Device),
            None => Ok(()),
        }
    }

    fn find_free(&mut self) -> Result<u32, Error> {
        if self.free == 0 {
            return Err(Error::NoSpace);
        }
        let n = self.blocks;
        let first = u64::from(FIRST_DATA_BLOCK);
        let mut b = self.cursor.clamp(first, n - 1);
        for _ in 0..n {
            if !self.used.get(b) {
                return Ok(b as u32);
            }
            b += 1;
            if b >= n {
                b = first;
            }
        }
        Err(Error::NoSpace)
    }

    /// A block the committed tree used and the running transaction does not.
    pub fn retire(&mut self, block: u32) {
        self.retired.push(block);
    }

    /// The transaction committed: its retired blocks are free.
    pub fn commit(&mut self) {
        self.tx = None;
        self.tx_wrote = false;
        for b in core::mem::take(&mut self.retired) {
            let b = u64::from(b);
            if self.used.get(b) {
                self.used.clear(b);
                self.free += 1;
            }
        }
    }

    /// Blocks in use.
    pub fn used_blocks(&self) -> u64 {
        self.blocks - self.free
    }
}
