//! The on-disk format: its constants and the encoding of every structure, with the checks that
//! every value read from a disk passes before it is used.

use crate::crc::crc32c;
use crate::{Corruption, Error, Fault, Kind};

/// Bytes of a filesystem block, whatever the device's block size (which divides it).
pub const BLOCK: usize = 4096;
/// Pointers in an indirect block: 8 bytes each (block number, CRC-32C of the block).
pub const FANOUT: usize = BLOCK / 8;
/// log2(FANOUT).
const FANOUT_SHIFT: u32 = 9;
/// The tallest tree: 4 levels of indirect blocks above the data, 2^48 bytes (256 TiB).
pub const MAX_HEIGHT: u8 = 4;
/// The superblock's magic number.
pub const MAGIC: [u8; 8] = *b"SDFS\x00\x0d\x0a\x1a";
/// The format version this crate writes. Version 2 added the superblock's run (a commit with
/// one flush); this crate reads version 1 too (whose superblocks have none).
pub const VERSION: u32 = 2;
/// The oldest version this crate reads.
pub const OLDEST_VERSION: u32 = 1;
/// The most blocks a superblock's run covers: a commit with one flush is for small changes (an
/// append to a log writes 3 to 6 blocks); mount reads them back (64 KiB at most).
pub const MAX_RUN: u32 = 16;
/// Bytes of an inode record.
pub const INODE_SIZE: usize = 32;
/// Inode records in a block of the inode table.
pub const INODES_PER_BLOCK: usize = BLOCK / INODE_SIZE;
/// Bytes of a directory entry.
pub const ENTRY_SIZE: usize = 128;
/// The longest name, in bytes.
pub const NAME_MAX: usize = ENTRY_SIZE - 8;
/// The root directory's inode number.
pub const ROOT: u32 = 0;
/// Blocks 0 and 1 are the two superblock slots; the rest are the trees'.
pub const FIRST_DATA_BLOCK: u32 = 2;
/// The smallest filesystem: the superblocks, the root and room to work.
pub const MIN_BLOCKS: u64 = 16;
/// The superblock's bytes covered by its checksum (one 512-byte sector, written atomically).
const SUPER_LEN: usize = 508;

/// Leaf blocks under a node of `height` (1 for a data block).
pub const fn span(height: u8) -> u64 {
    1u64 << (FANOUT_SHIFT * height as u32)
}

/// Bytes a tree of `height` holds.
pub const fn capacity(height: u8) -> u64 {
    (BLOCK as u64) << (FANOUT_SHIFT * height as u32)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// A pointer to a block and the CRC-32C of its contents. Block 0 (a superblock slot, never a
/// tree's) means a hole: a block of zeros that takes no space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ptr {
    /// The block.
    pub block: u32,
    /// The CRC-32C of its [`BLOCK`] bytes.
    pub crc: u32,
}

impl Ptr {
    /// The hole.
    pub const HOLE: Ptr = Ptr { block: 0, crc: 0 };

    /// Whether it is the hole.
    pub fn is_hole(&self) -> bool {
        self.block == 0
    }

    /// Decodes the pointer at `at` of `b`, checking it points into the filesystem.
    pub fn decode(b: &[u8], at: usize, blocks: u64) -> Result<Ptr, Error> {
        let p = Ptr {
            block: u32_at(b, at),
            crc: u32_at(b, at + 4),
        };
        if p.is_hole() {
            if p.crc != 0 {
                return Err(Error::Corrupt(Corruption::BadPointer { block: 0 }));
            }
        } else if p.block < FIRST_DATA_BLOCK || u64::from(p.block) >= blocks {
            return Err(Error::Corrupt(Corruption::BadPointer { block: p.block }));
        }
        Ok(p)
    }

    /// Encodes the pointer at `at` of `b`.
    pub fn encode(&self, b: &mut [u8], at: usize) {
        b[at..at + 4].copy_from_slice(&self.block.to_le_bytes());
        b[at + 4..at + 8].copy_from_slice(&self.crc.to_le_bytes());
    }
}

/// An inode record: a file's or directory's kind, size and tree. Layout (little-endian):
/// kind u8 (0 free, 1 file, 2 directory, 3 the inode table), height u8, 2 bytes zero, root
/// pointer (block u32, crc u32), 4 bytes zero, size u64, id u64 (unique for the filesystem's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// What it is; `None` for a free record.
    pub kind: Option<Kind>,
    /// The tree's height.
    pub height: u8,
    /// The tree's root.
    pub root: Ptr,
    /// Bytes of content.
    pub size: u64,
    /// The inode's id, never reused.
    pub id: u64,
}

/// The kind byte of the inode table's own record (in the superblock).
const TABLE_KIND: u8 = 3;

impl Record {
    /// A free record.
    pub const FREE: Record = Record {
        kind: None,
        height: 0,
        root: Ptr::HOLE,
        size: 0,
        id: 0,
    };

    /// Decodes a record (`table`: the inode table's own, in the superblock), checking it.
    pub fn decode(b: &[u8], blocks: u64, table: bool) -> Result<Record, Error> {
        let bad = |what| Err(Error::Corrupt(Corruption::BadInode(what)));
        // A fixed-size view: the checks below index it without bounds checks.
        let Some(b) = b.first_chunk::<INODE_SIZE>() else {
            return bad(Fault::CutShort);
        };
        let kind = match (b[0], table) {
            (0, false) => None,
            (1, false) => Some(Kind::File),
            (2, false) => Some(Kind::Dir),
            (TABLE_KIND, true) => Some(Kind::File),
            _ => return bad(Fault::UnknownKind),
        };
        if b[2..4] != [0, 0] || b[12..16] != [0; 4] {
            return bad(Fault::Reserved);
        }
        let r = Record {
            kind,
            height: b[1],
            root: Ptr::decode(&b[..], 4, blocks)?,
            size: u64_at(b, 16),
            id: u64_at(b, 24),
        };
        if kind.is_none() {
            return if *b == [0; INODE_SIZE] {
                Ok(r)
            } else {
                bad(Fault::FreeNotZero)
            };
        }
        if r.height > MAX_HEIGHT {
            return bad(Fault::TooTall);
        }
        if r.size > capacity(r.height) {
            return bad(Fault::PastTree);
        }
        if r.size > blocks * BLOCK as u64 {
            return bad(Fault::PastFilesystem);
        }
        let unit = match (table, kind) {
            (true, _) => INODE_SIZE as u64,
            (false, Some(Kind::Dir)) => ENTRY_SIZE as u64,
            _ => 1,
        };
        if !r.size.is_multiple_of(unit) {
            return bad(Fault::PartialEntry);
        }
        Ok(r)
    }

    /// Encodes the record into `b` (`table`: the inode table's own).
    pub fn encode(&self, b: &mut [u8], table: bool) {
        b[..INODE_SIZE].fill(0);
        b[0] = match (self.kind, table) {
            (None, _) => return,
            (Some(_), true) => TABLE_KIND,
            (Some(Kind::File), false) => 1,
            (Some(Kind::Dir), false) => 2,
        };
        b[1] = self.height;
        self.root.encode(b, 4);
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..32].copy_from_slice(&self.id.to_le_bytes());
    }
}

/// A superblock: which tree is the filesystem at one generation. Layout (little-endian, in the
/// first 512-byte sector of blocks 0 and 1, the rest of the block zero): magic [8], version u32,
/// block size u32, blocks u64, generation u64, next id u64, the inode table's record [32],
/// the run: first block u32, blocks u32 (0: none), check u32 (version 2; zeros in version 1),
/// zeros up to byte 508, CRC-32C of bytes 0..508.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Super {
    /// Blocks of [`BLOCK`] bytes the filesystem spans.
    pub blocks: u64,
    /// Commits so far: the slot with the higher valid generation is the filesystem.
    pub generation: u64,
    /// The id the next inode created gets.
    pub next_id: u64,
    /// The inode table's record.
    pub table: Record,
    /// The blocks its commit wrote, when they were not flushed before the superblock was
    /// written (a commit with one flush): the superblock counts only if all of them are on
    /// the disk ([`Run::check`]).
    pub run: Option<Run>,
}

/// The blocks a commit wrote, in one run: where, and a checksum of their contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The first block.
    pub start: u32,
    /// Blocks (1 to [`MAX_RUN`]).
    pub count: u32,
    /// CRC-32C of the blocks' CRC-32Cs, in order, as little-endian u32s ([`Run::check_of`]).
    pub check: u32,
}

impl Run {
    /// The check of blocks whose CRC-32Cs are `crcs`.
    pub fn check_of(crcs: impl Iterator<Item = u32>) -> u32 {
        let bytes: alloc::vec::Vec<u8> = crcs.flat_map(u32::to_le_bytes).collect();
        crc32c(&bytes)
    }
}

/// Why a superblock slot does not hold a superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// All zero: never written.
    Blank,
    /// Not our magic.
    Foreign,
    /// Our magic, wrong checksum (a torn or damaged write).
    Checksum,
    /// Our magic, another version.
    Version(u32),
    /// Checksummed, yet its values are impossible.
    Invalid(Error),
    /// Valid, of this generation, but not every block of its run reached the disk: a commit
    /// cut short before its flush completed.
    Torn(u64),
}

impl Super {
    /// Decodes a slot; `disk_blocks` is how many blocks the device has.
    pub fn decode(b: &[u8], disk_blocks: u64) -> Result<Super, SlotError> {
        // A fixed-size view: the checks below index it without bounds checks.
        let Some(b) = b.first_chunk::<BLOCK>() else {
            return Err(SlotError::Invalid(Error::Corrupt(Corruption::BadSuper(
                Fault::CutShort,
            ))));
        };
        if b.iter().all(|&x| x == 0) {
            return Err(SlotError::Blank);
        }
        if b[..8] != MAGIC {
            return Err(SlotError::Foreign);
        }
        if crc32c(&b[..SUPER_LEN]) != u32_at(b, SUPER_LEN) {
            return Err(SlotError::Checksum);
        }
        let version = u32_at(b, 8);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(SlotError::Version(version));
        }
        if u32_at(b, 12) as usize != BLOCK {
            return Err(SlotError::Invalid(Error::Corrupt(Corruption::BadSuper(
                Fault::BlockSize,
            ))));
        }
        let blocks = u64_at(b, 16);
        if blocks < MIN_BLOCKS || blocks > u64::from(u32::MAX) {
            return Err(SlotError::Invalid(Error::Corrupt(Corruption::BadSuper(
                Fault::BlockCount,
            ))));
        }
        if blocks > disk_blocks {
            return Err(SlotError::Invalid(Error::TooSmall {
                // both at most u32::MAX: checked above, and the store's count is capped
                blocks: blocks as u32,
                disk_blocks: disk_blocks.min(u64::from(u32::MAX)) as u32,
            }));
        }
        let table = Record::decode(&b[40..72], blocks, true).map_err(SlotError::Invalid)?;
        if table.kind.is_none() || table.size == 0 {
            return Err(SlotError::Invalid(Error::Corrupt(Corruption::BadSuper(
                Fault::NoTable,
            ))));
        }
        let (start, count) = (u32_at(b, 72), u32_at(b, 76));
        let run = match count {
            0 => None,
            _ if count > MAX_RUN
                || start < FIRST_DATA_BLOCK
                || u64::from(start) + u64::from(count) > blocks =>
            {
                return Err(SlotError::Invalid(Error::Corrupt(Corruption::BadSuper(
                    Fault::ImpossibleRun,
                ))));
            }
            _ => Some(Run {
                start,
                count,
                check: u32_at(b, 80),
            }),
        };
        Ok(Super {
            blocks,
            generation: u64_at(b, 24),
            next_id: u64_at(b, 32),
            table,
            run,
        })
    }

    /// Encodes the superblock into a block.
    pub fn encode(&self, b: &mut [u8]) {
        b[..BLOCK].fill(0);
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.blocks.to_le_bytes());
        b[24..32].copy_from_slice(&self.generation.to_le_bytes());
        b[32..40].copy_from_slice(&self.next_id.to_le_bytes());
        self.table.encode(&mut b[40..72], true);
        if let Some(r) = self.run {
            b[72..76].copy_from_slice(&r.start.to_le_bytes());
            b[76..80].copy_from_slice(&r.count.to_le_bytes());
            b[80..84].copy_from_slice(&r.check.to_le_bytes());
        }
        let crc = crc32c(&b[..SUPER_LEN]);
        b[SUPER_LEN..SUPER_LEN + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A directory entry: inode u32 (never 0, the root), name length u8, 3 bytes zero, the name
/// (UTF-8, no `/` or NUL) and zeros up to 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The inode.
    pub ino: u32,
    /// The name.
    pub name: &'a str,
}

impl<'a> Entry<'a> {
    /// Decodes an entry, checking it.
    pub fn decode(b: &'a [u8]) -> Result<Entry<'a>, Error> {
        let bad = |what| Err(Error::Corrupt(Corruption::BadEntry(what)));
        // A fixed-size view: the checks below index it without bounds checks.
        let Some(b) = b.first_chunk::<ENTRY_SIZE>() else {
            return bad(Fault::CutShort);
        };
        let ino = u32_at(b, 0);
        let len = b[4] as usize;
        if ino == ROOT {
            return bad(Fault::NamesRoot);
        }
        if b[5..8] != [0; 3] || len > NAME_MAX || b[8 + len..ENTRY_SIZE].iter().any(|&x| x != 0) {
            return bad(Fault::NameLength);
        }
        let Ok(name) = core::str::from_utf8(&b[8..8 + len]) else {
            return bad(Fault::NotUtf8);
        };
        if check_name(name).is_err() {
            return bad(Fault::InvalidName);
        }
        Ok(Entry { ino, name })
    }

    /// Encodes the entry into `b`.
    pub fn encode(&self, b: &mut [u8]) {
        b[..ENTRY_SIZE].fill(0);
        b[..4].copy_from_slice(&self.ino.to_le_bytes());
        b[4] = self.name.len() as u8;
        b[8..8 + self.name.len()].copy_from_slice(self.name.as_bytes());
    }
}

/// Whether `name` may name a file: 1 to [`NAME_MAX`] bytes, no `/` or NUL, not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > NAME_MAX
        || name == "."
        || name == ".."
        || name.bytes().any(|b| b == b'/' || b == 0)
    {
        return Err(Error::InvalidName);
    }
    Ok(())
}
