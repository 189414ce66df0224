//! sdfs, the Stardust filesystem: files and directories on any [`blockdev::BlockIo`], crash-safe
//! at every [`sync`](Filesystem::sync), with every block of metadata and data checksummed.
//!
//! # The guarantee
//! After a power cut at any moment (writes lost, torn, or reaching the disk in any order,
//! sector by sector, as a disk with a volatile write cache does; see
//! `blockdev::fake::Survival::Random`), the filesystem mounts cleanly and shows exactly the
//! state of the last [`sync`](Filesystem::sync) that returned `Ok`, or of the sync that was
//! running at the cut if its commit reached the disk. Nothing half-applied ever appears: no torn
//! metadata, no rename seen half-way, no file with blocks of two generations. Changes between
//! syncs are kept in memory and are lost by a cut; a sync is what makes them durable.
//!
//! # The design: copy-on-write, two superblocks
//! Everything is a tree of 4096-byte blocks. A file's bytes are the leaves of a radix tree of
//! indirect blocks (512 pointers each; height 0 to 4, so up to 256 TiB). A directory is a file
//! of 128-byte entries (inode number, name). The inode table is a file of 32-byte records
//! (kind, size, id, tree root and height). The superblock points to the inode table.
//!
//! Every pointer carries the CRC-32C of the block it points to (a Merkle tree, as ZFS does),
//! so every block read is checked, data included, and a block of the wrong generation is
//! caught as well as a damaged one. The superblock carries its own CRC-32C.
//!
//! A block the last commit references is never written. A change loads the blocks on its path
//! into memory (dirty); a sync writes every dirty block to a *free* block, children before
//! parents (each parent then knows its children's new places and checksums), then a new
//! superblock with the next generation into the slot (block 0 or 1) that does not hold the last
//! commit, and flushes the disk. The superblock fits in one 512-byte sector, which disks write
//! atomically, and its checksum catches one that is not. Mount takes the valid slot with the
//! highest generation. Blocks a transaction stops using are free only once it has committed,
//! so the previous commit stays whole until the new one is durable.
//!
//! **One flush per sync.** Before the final flush, a cut may keep any subset of the sync's
//! writes: the new superblock without some of the blocks it points to. So when a sync's blocks
//! form one run of at most 16 blocks (a small change: an append to a
//! log writes 3 to 6 neighbouring blocks), its superblock records the run (first block, length,
//! and a CRC-32C of the blocks' CRC-32Cs), and mount takes that superblock only if every block of
//! the run reads back with it; otherwise the commit was cut short, and the other slot, whose
//! commit was flushed before this one began and whose blocks this one never wrote, is the
//! filesystem ([`Mounted::dropped`] says which generation was passed over, and mount zeroes the
//! torn slot, so that blocks written later cannot make it whole by chance). A larger or
//! scattered sync (and the format's first commit, so that a cut short format leaves a disk that
//! still looks blank) flushes its blocks before it writes the superblock: two flushes. The price
//! of the single flush: damage to a block of the last commit's run after that commit (bit rot,
//! not a cut) looks like a cut short commit, and mount rolls back to the commit before it
//! instead of refusing the disk.
//!
//! A sync keeps a copy of the blocks it wrote (8 at most, the last ones,
//! with the indirect blocks read lately), so that the next change to the same place (the
//! next append to a log) starts from memory instead of reading them back.
//!
//! **Cost of a sync**: the blocks changed and the paths above them, in the file's tree and the
//! inode table's: O(changed blocks x height), never the rest of the metadata. A small append to
//! a log (kvstore's case) writes its data block, its file's indirect blocks (0 to 2 for files up
//! to 1 GiB), the inode table's leaf (and its indirect blocks when the table is large) and the
//! superblock: about 5 blocks in two writes and one flush, with no read.
//!
//! **Space** follows live data: a block no tree references is free after the next sync;
//! truncating or removing a file frees its blocks, an overwritten block frees the old copy,
//! free records at the end of the inode table are cut off and a directory stays dense (a
//! removed entry's place takes the last entry). There is no free-space map on disk: mount walks
//! every tree and builds the map of used blocks, checking every metadata block on the way.
//! Changes that need new blocks check the free space first and fail with [`Error::NoSpace`]
//! before touching anything; writes of data keep 48 blocks free for metadata changes, so a full
//! disk can still be cleaned up (remove, truncate, rename) and synced, and reads always work.
//!
//! **Errors half-way**: a change whose checks passed can still meet a device error or damaged
//! metadata half-way; the filesystem is then *poisoned* ([`Error::Poisoned`]): it refuses further
//! changes, syncs and reads (the tree in memory may point to blocks never written), so a
//! half-made change is never committed. Mount again to get the last commit. A failed sync
//! poisons it the same way. [`Error::NoSpace`] never poisons: it is found before anything
//! changes.
//!
//! # Mounting
//! [`Filesystem::mount`] reads both superblocks and walks every tree, checking each metadata
//! block's checksum, each record and entry, that no block is used twice, that every inode is in
//! exactly one directory and no directory holds a name twice. The walk is bounded by the disk:
//! every block is visited at most once and a second visit is an error; recursion goes no deeper
//! than the height, which the format bounds; memory is a bit per block, a byte per inode record
//! and a directory's names at a time. Anything wrong is refused with an error naming it:
//! "not a Stardust filesystem" (no magic number in either slot), a bad superblock checksum, an
//! unsupported version, a corrupt block (and which). A blank disk (zero in both superblock slots,
//! in the rest of the first 256 KiB except block 2, the only block a format writes before its
//! commit, and in the last block) is formatted, and [`Mounted::formatted`] says so. Nothing is
//! written to a disk that did not mount. [`check`] does the same walk and reads every data block
//! too, for an fsck-style [`Report`].
//!
//! # On-disk format (version 2, little-endian)
//! - Blocks are 4096 bytes (the device's block size must divide it). Blocks 0 and 1 are the
//!   superblock slots; block numbers are u32; pointer block 0 is a hole (reads as zeros).
//! - Superblock (first 512 bytes of its block): magic `SDFS\0\r\n\x1a` (8 bytes), version u32 (2;
//!   version 1, without the run, is read too), block size u32 (4096), blocks u64, generation
//!   u64, next inode id u64, the inode table's record (32 bytes), the run: first block u32,
//!   blocks u32 (0: none, the blocks were flushed first), check u32 (CRC-32C of the run's blocks'
//!   CRC-32Cs as little-endian u32s), zeros, CRC-32C of bytes 0..508 at 508.
//! - Pointer (8 bytes): block u32, CRC-32C u32 of the block. Indirect block: 512 pointers.
//! - Inode record (32 bytes): kind u8 (0 free, 1 file, 2 directory, 3 the table), height u8, 0 u16,
//!   root pointer (8 bytes), 0 u32, size u64, id u64 (never reused: handles to removed files fail).
//!   Inode 0 is the root directory. A free record is all zeros.
//! - Directory entry (128 bytes): inode u32 (never 0), name length u8 (1..=120), 0 (3 bytes), UTF-8 name
//!   without `/` or NUL, zero padding. A directory's size is 128 x its entries, no holes.
//!
//! # Limits
//! Names up to 120 bytes; directory lookups scan the directory (fine for the hundreds of
//! entries a unikernel's disk holds, slow for a million); changes wait in memory until a sync
//! (the caller bounds them by syncing); mount time grows with the metadata, since mount walks it
//! (the price of keeping no free-space map on disk, which is what keeps a sync O(changed));
//! a file is at most as large as the filesystem (sparse files included); no hard links,
//! symbolic links, timestamps or permissions.
//!
//! # Why not a published crate
//! The issue asks for a no_std filesystem with this guarantee. `littlefs2` binds littlefs, which
//! is written in C (a C toolchain for the bare-metal target, and unsafe FFI), and is designed
//! for NOR flash; `littlefs-rust` is a young (0.1) line-by-line port of the same flash-oriented
//! design, too new to take the guarantee from without an audit; `fatfs` and `embedded-sdmmc`
//! (FAT) update metadata in place with no journal, so a cut can tear the FAT or a directory;
//! `ext4-view` reads ext4 but cannot write (and is built on `Rc`, so not `Send`); `srfs-core`
//! lists crash recovery as to do. A copy-on-write tree is small enough to write and test
//! exhaustively here (power cuts at every write of a workload, sector-level reordering).
//!
//! # The filesystem interface
//! [`Filesystem`] implements `vfs::FileSystem` and `vfs::Mount` (the kernel's glue and the
//! facade's `stardust::fs` use it through them): sdfs's errors become `vfs::Error`s (a foreign
//! image, a bad version or a too small disk: `Unrecognized`; damaged metadata: `Corrupt` with
//! what and where; a poisoned filesystem: `Failed`), directory sizes count entries.
//!
//! # Threads
//! [`Filesystem`] takes `&mut self` and holds no locks; the kernel keeps it behind one. It is
//! `Send` when its device is.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod crc;
mod error;
mod format;
mod fs;
mod store;
mod tree;
mod vfs_impl;

pub use error::{Corruption, Error, Fault};
pub use format::{BLOCK, NAME_MAX};
pub use fs::{DirEntry, FileId, Filesystem, Mounted, Report, Slot, Stat, Usage, check};

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A file.
    File,
    /// A directory.
    Dir,
}

#[cfg(test)]
mod tests;
