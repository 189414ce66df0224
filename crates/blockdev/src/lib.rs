//! The block-device interface: what a disk driver (virtio-blk, Xen's blkfront) gives the
//! filesystem and the kernel, and nothing of either.
//!
//! # The model
//! A disk is [`Info::blocks`] blocks of [`Info::block_size`] bytes, numbered from 0. A driver
//! takes [`Request`]s (read or write a range of whole blocks, or flush) with [`BlockDevice::submit`],
//! keeps several in flight (up to [`Info::max_in_flight`]), and hands back a [`Completion`] for
//! each, in any order, from [`BlockDevice::complete`]. A request owns its [`Buffer`] and gets it
//! back in its completion, so nothing is borrowed across the wait and a driver may give the
//! buffer's pages to the device (virtio descriptors, Xen grants) as they are: buffers are
//! page-aligned and a whole number of blocks long.
//!
//! [`Blocking`] turns any [`BlockDevice`] into the synchronous [`BlockIo`] a filesystem uses
//! (read, write and flush of byte-aligned ranges of blocks, long ranges split into requests that
//! are all in flight at once), given a [`Wait`] that sleeps until the device may have finished
//! something (the kernel parks on the device's interrupt; a fake needs nothing).
//!
//! # Durability
//! A completed write is on the device, not necessarily on stable storage: disks (and QEMU's
//! `cache=writeback`, its default) keep written data in a volatile cache. [`Op::Flush`] is the
//! barrier: its completion means every write completed before it was submitted is durable.
//! A device that cannot flush (virtio-blk without `VIRTIO_BLK_F_FLUSH`, blkfront without
//! `feature-flush-cache` or `feature-barrier`) cannot promise durability, so its writes are
//! refused ([`Error::NoFlush`]) and it can only be read; [`Info::flush`] says which.
//!
//! # Fitting both drivers
//! Written after reading virtio-blk (virtio 1.2 §5.2: 512-byte sectors, `blk_size`, `VIRTIO_BLK_F_RO`,
//! `VIRTIO_BLK_F_FLUSH`, `seg_max`, status OK/IOERR/UNSUPP) and Xen's `io/blkif.h` (512-byte
//! sectors on the ring whatever `sector-size` says, `info & VDISK_READONLY`,
//! `feature-flush-cache`, `feature-barrier`, 11 page segments per request or
//! `feature-max-indirect-segments`, statuses OKAY/ERROR/EOPNOTSUPP). Both address 512-byte sectors;
//! a block here is `block_size` bytes (a multiple of 512), and a driver converts. Both move whole
//! pages, hence page-aligned buffers.
//!
//! # Untrusted devices
//! Everything a device writes back (ids, statuses, lengths) is untrusted: a driver checks it,
//! refuses what is out of bounds, and counts it in [`Stats::device_errors`]; a device that cannot
//! be trusted further is stopped ([`Error::DeviceFailed`] for every request from then on).
//!
//! # Cargo features
//! - `test-utils`: [`fake::RamDisk`] (a disk in memory, completing requests out of order from a
//!   seed) and [`fake::PowerCut`] (a disk with a volatile write cache that loses power after a
//!   given number of writes, possibly tearing the last one), for host tests of filesystems.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(any(test, feature = "test-utils"))]
pub mod fake;

mod blocking;
mod buffer;
mod either;

pub use blocking::{BlockIo, Blocking, NoWait, Wait};
pub use buffer::{Buffer, PAGE_SIZE};
pub use either::Either;

/// Bytes of a sector, the unit both virtio-blk and Xen's blkif address.
pub const SECTOR_SIZE: u32 = 512;

/// What a disk is and can do; fixed once the driver has negotiated with the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Bytes of a block: a power of two from 512 to 4096.
    pub block_size: u32,
    /// Blocks on the disk.
    pub blocks: u64,
    /// The device refuses writes (virtio-blk `VIRTIO_BLK_F_RO`, Xen `VDISK_READONLY`).
    pub read_only: bool,
    /// The device can flush its write cache, so writes can be made durable. Without it, writes
    /// are refused with [`Error::NoFlush`].
    pub flush: bool,
    /// The largest read or write, in blocks (at least 1).
    pub max_request_blocks: u32,
    /// Requests the device takes at once (at least 1).
    pub max_in_flight: u16,
}

impl Info {
    /// The disk's size in bytes.
    pub const fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.block_size as u64)
    }

    /// Whether the geometry is one this interface allows (a block size that is a power of two
    /// from 512 to 4096, at least one block per request and one request in flight). Drivers
    /// check what their device reports with it before they say anything else.
    pub const fn is_valid(&self) -> bool {
        self.block_size.is_power_of_two()
            && self.block_size >= SECTOR_SIZE
            && self.block_size as usize <= PAGE_SIZE
            && self.max_request_blocks >= 1
            && self.max_in_flight >= 1
    }

    /// Whether `request` is acceptable to a device with this geometry: a whole, non-empty number
    /// of blocks, no more than [`max_request_blocks`](Info::max_request_blocks), within the disk,
    /// and a write only to a disk that is writable and can flush. Drivers call it on submit, so
    /// every driver refuses the same requests with the same errors.
    pub fn check(&self, request: &Request) -> Result<(), Error> {
        match request.op {
            Op::Flush => {
                if self.flush {
                    Ok(())
                } else {
                    Err(Error::NoFlush)
                }
            }
            Op::Read | Op::Write => {
                if request.op == Op::Write {
                    if self.read_only {
                        return Err(Error::ReadOnly);
                    }
                    if !self.flush {
                        return Err(Error::NoFlush);
                    }
                }
                let len = request.buffer.len();
                let size = self.block_size as usize;
                if len == 0
                    || !len.is_multiple_of(size)
                    || len / size > self.max_request_blocks as usize
                {
                    return Err(Error::BadLength { len });
                }
                // at most max_request_blocks (checked above), a u32
                let count = (len / size) as u32;
                match request.block.checked_add(u64::from(count)) {
                    Some(end) if end <= self.blocks => Ok(()),
                    _ => Err(Error::OutOfRange {
                        block: request.block,
                        count,
                    }),
                }
            }
        }
    }
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Reads `buffer.len()` bytes from `block` on into the buffer.
    Read,
    /// Writes the buffer to `block` on.
    Write,
    /// Makes every write completed before this request was submitted durable. `block` and the
    /// buffer (empty) are ignored.
    Flush,
}

/// A request: an operation on whole blocks, with the buffer it reads into or writes from.
#[derive(Debug)]
pub struct Request {
    /// The caller's name for the request, given back in its completion.
    pub id: u64,
    /// What to do.
    pub op: Op,
    /// The first block.
    pub block: u64,
    /// The data: a whole number of blocks (empty for a flush).
    pub buffer: Buffer,
}

impl Request {
    /// A read of `blocks` blocks of `block_size` bytes from `block`, into a fresh buffer.
    pub fn read(id: u64, block: u64, blocks: usize, block_size: u32) -> Self {
        Request {
            id,
            op: Op::Read,
            block,
            buffer: Buffer::new(blocks * block_size as usize),
        }
    }

    /// A write of `buffer` to `block` on.
    pub fn write(id: u64, block: u64, buffer: Buffer) -> Self {
        Request {
            id,
            op: Op::Write,
            block,
            buffer,
        }
    }

    /// A flush.
    pub fn flush(id: u64) -> Self {
        Request {
            id,
            op: Op::Flush,
            block: 0,
            buffer: Buffer::new(0),
        }
    }
}

/// A finished request, with its buffer (holding the data, for a read that succeeded).
#[derive(Debug)]
pub struct Completion {
    /// The request's [`Request::id`].
    pub id: u64,
    /// Its operation.
    pub op: Op,
    /// Its first block.
    pub block: u64,
    /// Its buffer, given back.
    pub buffer: Buffer,
    /// How it ended.
    pub result: Result<(), Error>,
}

/// What went wrong, precisely enough to say it to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The request reaches past the end of the disk. (Without the disk's size, which boot logs:
    /// so that the error is 16 bytes and a `Result` of it, or of an error holding it, comes back
    /// in registers.)
    OutOfRange {
        /// Its first block.
        block: u64,
        /// Its length in blocks (saturated at `u32::MAX`; at most `max_request_blocks`).
        count: u32,
    },
    /// The buffer is not a whole, non-empty number of blocks, or longer than the device takes.
    BadLength {
        /// Its length in bytes.
        len: usize,
    },
    /// A write to a read-only disk.
    ReadOnly,
    /// A write (or flush) to a disk that cannot flush its write cache, so cannot make data
    /// durable: refused rather than acknowledged and then lost.
    NoFlush,
    /// The device has as many requests in flight as it takes: complete some first.
    Busy,
    /// The device reported an I/O error for the request starting at `block`.
    Io {
        /// The request's first block.
        block: u64,
    },
    /// The device does not support the operation.
    Unsupported,
    /// The driver stopped the device after it wrote values out of bounds (see
    /// [`Stats::device_errors`]); nothing more goes to it.
    DeviceFailed,
    /// The device did not finish a request in the time the waiter allows.
    Timeout,
    /// The disk was taken away (a Xen vbd detached: its backend left); nothing more goes to it.
    Detached,
    /// The power is off (the power-cut fake, after its cut point).
    PowerCut,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The words of every variant without numbers in one match, one write path.
        let words = match *self {
            Error::OutOfRange { block, count } => {
                return write!(
                    f,
                    "blocks {block}..{} are past the end of the disk",
                    block.saturating_add(u64::from(count))
                );
            }
            Error::BadLength { len } => {
                return write!(
                    f,
                    "a buffer of {len} bytes is not a whole number of blocks the device takes"
                );
            }
            Error::Io { block } => return write!(f, "I/O error at block {block}"),
            Error::ReadOnly => "the disk is read-only",
            Error::NoFlush => {
                "the disk cannot flush its write cache, so writes could be lost: refused"
            }
            Error::Busy => "the device has as many requests in flight as it takes",
            Error::Unsupported => "the device does not support the operation",
            Error::DeviceFailed => "the device wrote values out of bounds and was stopped",
            Error::Timeout => "the device did not finish a request in time",
            Error::Detached => "the disk was detached",
            Error::PowerCut => "the power is off",
        };
        f.write_str(words)
    }
}

impl core::error::Error for Error {}

/// Counters a driver keeps. Refused requests and refused device values are counted, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Reads completed successfully.
    pub reads: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Writes completed successfully.
    pub writes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Flushes completed successfully.
    pub flushes: u64,
    /// Requests that ended in an error (the device's or a refusal on submit).
    pub errors: u64,
    /// Values the device wrote that were out of bounds (ids, statuses, lengths) and were
    /// refused: a misbehaving or hostile device or backend.
    pub device_errors: u64,
}

/// A block device: a disk driver's instance.
///
/// Called from one thread at a time (the kernel keeps it behind a lock); an interrupt handler
/// never calls it, it only wakes whoever waits (see `platform::irq`), so a driver needs no
/// locking of its own.
pub trait BlockDevice {
    /// What the disk is and can do.
    fn info(&self) -> Info;

    /// Starts `request`. On an error (the request is not acceptable, see [`Info::check`], or
    /// [`Error::Busy`]) the request is given back untouched, and nothing was started.
    fn submit(&mut self, request: Request) -> Result<(), (Error, Request)>;

    /// A finished request, if any; requests may finish in any order.
    fn complete(&mut self) -> Option<Completion>;

    /// Requests submitted and not yet handed back by [`complete`](BlockDevice::complete).
    fn in_flight(&self) -> usize;

    /// Called after the device's interrupt fired (from a thread, not the handler): acknowledges
    /// it at the device. Returns whether something may have completed. Before the platform
    /// unmasks the line again, this must have run. The default does nothing.
    fn poll_interrupt(&mut self) -> bool {
        false
    }

    /// The driver's counters.
    fn stats(&self) -> Stats {
        Stats::default()
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &mut T {
    fn info(&self) -> Info {
        (**self).info()
    }
    fn submit(&mut self, request: Request) -> Result<(), (Error, Request)> {
        (**self).submit(request)
    }
    fn complete(&mut self) -> Option<Completion> {
        (**self).complete()
    }
    fn in_flight(&self) -> usize {
        (**self).in_flight()
    }
    fn poll_interrupt(&mut self) -> bool {
        (**self).poll_interrupt()
    }
    fn stats(&self) -> Stats {
        (**self).stats()
    }
}

#[cfg(test)]
mod tests;
