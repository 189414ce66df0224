//! virtio-blk: a [`blockdev::BlockDevice`] on `virtio-drivers` (0.13), over any of its
//! transports (virtio-mmio, legacy and modern, on `microvm` and Firecracker; PCI on `q35`).
//!
//! # Why not virtio-drivers' `VirtIOBlk`
//! Its `flush` returns `Ok` without doing anything when `VIRTIO_BLK_F_FLUSH` was not negotiated
//! (so a caller is told its data is durable when it is not), and when it does flush it spins on
//! the used ring until the device answers: no interrupt, nothing else in flight. It also does
//! not negotiate `BLK_SIZE`, `SEG_MAX` or `SIZE_MAX`, and its queue holds 16 descriptors. So
//! this driver drives the requests itself on virtio-drivers' public pieces: the
//! [`Transport`] (feature negotiation and the configuration space, read by hand) and a
//! [`VirtQueue`] (descriptor chains, the rings, event-index notification suppression). Every
//! request, flush included, is a chain `header (device-readable) · data segments · status byte
//! (device-writable)` queued and completed on the device's interrupt like the others.
//!
//! # Features
//! Negotiated as the device offers them: `VERSION_1`, `RO`, `FLUSH`, `BLK_SIZE`, `SEG_MAX`,
//! `SIZE_MAX`, `RING_EVENT_IDX`. Nothing else (no discard, no write-zeroes, no indirect
//! descriptors, no multiqueue). The device's feature bits are read from the transport before
//! anything else, so [`Info::flush`] says whether `FLUSH` was offered: without it writes are
//! refused ([`Error::NoFlush`], by [`Info::check`]) and the disk is read-only in effect.
//!
//! # Geometry
//! - The block is the device's `blk_size` (a power of two from 512 to 4096) when `BLK_SIZE` is
//!   offered, else 512 bytes; the device still addresses 512-byte sectors, the driver converts.
//! - A request's data is split into segments of at most `size_max` bytes (`SIZE_MAX`; one
//!   segment for the whole buffer without it: a [`blockdev::Buffer`] is contiguous), at most `seg_max` of
//!   them (`SEG_MAX`), and at most [`MAX_REQUEST_BYTES`] in all:
//!   [`Info::max_request_blocks`].
//! - [`Info::max_in_flight`] is as many of the largest chains as the queue's `Q` descriptors
//!   hold ([`QUEUE_SIZE`] = 64: 21 requests of 3 descriptors on QEMU, which offers neither
//!   `SIZE_MAX` nor a `seg_max` below 126).
//!
//! # Untrusted device
//! What virtio-drivers 0.13's queue checks (`pop_used` refuses a used id that is not the token
//! it is given; the descriptors it recycles are its own shadow copy), and what this driver checks
//! on top, each refusal counted in [`Stats::device_errors`], never a panic:
//! - a used id that is not a chain in flight (never submitted, or completed already): the queue
//!   cannot get past it, so the driver **stops** the device: it resets it (no more DMA), hands
//!   back every request in flight with [`Error::DeviceFailed`], and refuses every request from
//!   then on ([`VirtioBlk::is_stopped`]);
//! - a status byte other than OK (0), IOERR (1) or UNSUPP (2), or one the device never wrote
//!   (the driver puts 0xff there on submit): the request fails with [`Error::Io`], the driver
//!   goes on;
//! - a used length longer than the chain's device-writable bytes: counted (nothing is read past
//!   the buffers); a read whose used length is shorter than its data and status: it fails with
//!   [`Error::Io`] (the data is not all there);
//! - a configuration that makes no sense (`size_max` under 512, `seg_max` of 0, a `blk_size`
//!   that is not a power of two from 512 to 4096): refused at bring-up or replaced by the
//!   safe value, logged.
//!
//! Left to virtio-drivers and not guarded here: the PCI transport's `notify` panics on a notify
//! offset outside the notify region (a device broken from the start, on the first request).
//! The configuration is read with a bounded number of retries on a changing generation (not
//! virtio-drivers' unbounded `read_consistent`).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use blockdev::{BlockDevice, Completion, Error, Info, Op, Request, SECTOR_SIZE, Stats};
use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};

#[cfg(test)]
mod tests;

/// Descriptors in the request queue (see the crate docs).
pub const QUEUE_SIZE: usize = 64;

/// The largest request, in bytes, whatever the device allows: 128 KiB, as Linux's default
/// `max_sectors_kb` for virtio-blk is in the same range. Longer ranges are split by
/// [`blockdev::Blocking`], and their pieces are all in flight at once.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;

/// Feature bits (virtio 1.2 §5.2.3, §6).
pub mod feature {
    /// Maximum size of any single segment is in `size_max`.
    pub const SIZE_MAX: u64 = 1 << 1;
    /// Maximum number of segments in a request is in `seg_max`.
    pub const SEG_MAX: u64 = 1 << 2;
    /// The device is read-only.
    pub const RO: u64 = 1 << 5;
    /// Block size of the disk is in `blk_size`.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// Cache flush command support.
    pub const FLUSH: u64 = 1 << 9;
    /// `used_event` and `avail_event` notification suppression.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// The modern (virtio 1.0) interface.
    pub const VERSION_1: u64 = 1 << 32;
}

/// The features this driver accepts when offered.
pub const SUPPORTED_FEATURES: u64 = feature::SIZE_MAX
    | feature::SEG_MAX
    | feature::RO
    | feature::BLK_SIZE
    | feature::FLUSH
    | feature::RING_EVENT_IDX
    | feature::VERSION_1;

/// Request types.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
/// Statuses.
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// What the driver leaves in the status byte for the device to overwrite.
const S_UNWRITTEN: u8 = 0xff;

/// The one request queue.
const QUEUE: u16 = 0;
/// No slot (in the token table).
const NONE: u16 = u16::MAX;
/// Configuration reads retried while the device changes its configuration generation.
const CONFIG_TRIES: usize = 8;

/// Why a virtio-blk device could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// The transport's device is not a block device (its virtio type).
    NotBlock(u8),
    /// The device did not accept the features (FEATURES_OK did not stick).
    FeaturesRefused,
    /// virtio-drivers refused (queue smaller than `Q`, already in use, no memory, no config
    /// space).
    Virtio(virtio_drivers::Error),
    /// The device's configuration kept changing while it was read.
    ConfigUnstable,
    /// The configuration makes no usable geometry (what, and the value).
    Config(&'static str, u64),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::NotBlock(t) => write!(f, "not a block device (virtio device type {t})"),
            // net-virtio's words: held once in an image with both drivers.
            InitError::FeaturesRefused => f.write_str("the device refused the features it offered"),
            InitError::Virtio(e) => write!(f, "virtio: {}", virtio_support::error_words(*e)),
            InitError::ConfigUnstable => f.write_str("the configuration kept changing"),
            InitError::Config(what, v) => write!(f, "unusable configuration: {what} = {v}"),
        }
    }
}

/// The request header and the status byte of one request slot: what the chain's first and
/// last descriptors point at.
#[repr(C)]
struct Cmd {
    header: [u8; 16],
    status: [u8; 1],
}

/// One request the device may have: its command and its request (with the buffer).
struct Slot {
    cmd: Cmd,
    request: Option<Request>,
}

/// The geometry the driver worked out from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    /// Largest data segment, bytes (`usize::MAX`: the whole buffer in one).
    segment: usize,
}

/// A virtio-blk device with one request queue of `Q` descriptors.
pub struct VirtioBlk<H: Hal, T: Transport, const Q: usize = QUEUE_SIZE> {
    queue: VirtQueue<H, Q>,
    transport: T,
    info: Info,
    features: u64,
    geometry: Geometry,
    /// `info.max_in_flight` slots; their addresses do not move (boxed).
    slots: Box<[Slot]>,
    /// Free slots (a stack).
    free: Vec<u16>,
    /// The slot in flight under each token (the chain's head descriptor), or [`NONE`].
    by_token: [u16; Q],
    /// Finished, not yet handed back by `complete`.
    done: VecDeque<Completion>,
    stats: Stats,
    stopped: bool,
}

impl<H: Hal, T: Transport, const Q: usize> core::fmt::Debug for VirtioBlk<H, T, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioBlk")
            .field("info", &self.info)
            .field("features", &self.features)
            .field("in_flight", &self.in_flight())
            .field("stats", &self.stats)
            .field("stopped", &self.stopped)
            .finish()
    }
}

/// Reads a little-endian `u32` of the configuration space.
fn config_u32<T: Transport>(t: &T, offset: usize) -> Result<u32, InitError> {
    t.read_config_space::<u32>(offset)
        .map_err(InitError::Virtio)
}

/// The configuration fields the driver uses.
#[derive(Debug, Clone, Copy)]
struct Config {
    capacity: u64,
    size_max: u32,
    seg_max: u32,
    blk_size: u32,
}

fn read_config<T: Transport>(t: &T) -> Result<Config, InitError> {
    for _ in 0..CONFIG_TRIES {
        let before = t.read_config_generation();
        let config = Config {
            capacity: u64::from(config_u32(t, 0)?) | u64::from(config_u32(t, 4)?) << 32,
            size_max: config_u32(t, 8)?,
            seg_max: config_u32(t, 12)?,
            blk_size: config_u32(t, 20)?,
        };
        if t.read_config_generation() == before {
            return Ok(config);
        }
    }
    Err(InitError::ConfigUnstable)
}

/// The geometry and limits for `features` and `config`, with a queue of `q` descriptors.
fn geometry(features: u64, config: &Config, q: usize) -> Result<(Info, Geometry), InitError> {
    let has = |f: u64| features & f != 0;
    let block_size = if has(feature::BLK_SIZE) {
        let b = config.blk_size;
        if b.is_power_of_two() && (SECTOR_SIZE..=4096).contains(&b) {
            b
        } else {
            log::warn!("virtio-blk: blk_size {b} is unusable: 512-byte blocks");
            SECTOR_SIZE
        }
    } else {
        SECTOR_SIZE
    };
    let segment = if has(feature::SIZE_MAX) {
        let s = config.size_max as usize;
        if s < SECTOR_SIZE as usize {
            return Err(InitError::Config("size_max", s as u64));
        }
        s - s % SECTOR_SIZE as usize
    } else {
        usize::MAX
    };
    // Descriptors for data: the queue less the header's and the status's.
    let mut segments = q.saturating_sub(2);
    if has(feature::SEG_MAX) {
        if config.seg_max == 0 {
            return Err(InitError::Config("seg_max", 0));
        }
        segments = segments.min(config.seg_max as usize);
    }
    if segments == 0 {
        return Err(InitError::Config("queue size", q as u64));
    }
    let bytes = MAX_REQUEST_BYTES.min(segment.saturating_mul(segments));
    let max_request_blocks = (bytes / block_size as usize) as u32;
    let per_request = 2 + (max_request_blocks as usize * block_size as usize).div_ceil(segment);
    let info = Info {
        block_size,
        blocks: config.capacity / u64::from(block_size / SECTOR_SIZE),
        read_only: has(feature::RO),
        flush: has(feature::FLUSH),
        max_request_blocks,
        max_in_flight: (q / per_request).min(u16::MAX as usize) as u16,
    };
    if !info.is_valid() {
        return Err(InitError::Config(
            "max_request_blocks",
            u64::from(max_request_blocks),
        ));
    }
    Ok((info, Geometry { segment }))
}

/// The descriptor chain of a request: device-readable buffers, then device-writable ones.
type Chain<'a> = (Vec<&'a [u8]>, Vec<&'a mut [u8]>);

/// The chain for `op` over `cmd` and `data`, data cut into `segment`-byte pieces.
fn chain<'a>(cmd: &'a mut Cmd, data: &'a mut [u8], op: Op, segment: usize) -> Chain<'a> {
    let Cmd { header, status } = cmd;
    let mut inputs: Vec<&'a [u8]> = Vec::with_capacity(4);
    let mut outputs: Vec<&'a mut [u8]> = Vec::with_capacity(4);
    inputs.push(&header[..]);
    match op {
        Op::Read => outputs.extend(data.chunks_mut(segment)),
        Op::Write => {
            let data: &'a [u8] = data;
            inputs.extend(data.chunks(segment));
        }
        Op::Flush => {}
    }
    outputs.push(&mut status[..]);
    (inputs, outputs)
}

impl<H: Hal, T: Transport, const Q: usize> VirtioBlk<H, T, Q> {
    /// Negotiates with the device behind `transport` (its feature bits read first), reads its
    /// configuration and sets up the request queue.
    // Not inlined into the kernel's probe (called once, at boot): kvstore [storage] 576 bytes
    // smaller.
    #[inline(never)]
    pub fn new(mut transport: T) -> Result<Self, InitError> {
        const { assert!(Q >= 4 && Q < NONE as usize, "queue size") };
        let device_type = transport.device_type();
        if device_type != DeviceType::Block {
            return Err(InitError::NotBlock(device_type as u8));
        }
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let features = offered & SUPPORTED_FEATURES;
        transport.write_driver_features(features);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            transport.set_status(DeviceStatus::FAILED);
            return Err(InitError::FeaturesRefused);
        }
        transport.set_guest_page_size(virtio_drivers::PAGE_SIZE as u32);
        let fail = |t: &mut T, e: InitError| {
            t.set_status(DeviceStatus::FAILED);
            e
        };
        let (info, geometry) =
            match read_config(&transport).and_then(|config| geometry(features, &config, Q)) {
                Ok(g) => g,
                Err(e) => return Err(fail(&mut transport, e)),
            };
        let queue = match VirtQueue::<H, Q>::new(
            &mut transport,
            QUEUE,
            false,
            features & feature::RING_EVENT_IDX != 0,
        ) {
            Ok(q) => q,
            Err(e) => return Err(fail(&mut transport, InitError::Virtio(e))),
        };
        transport.finish_init();
        let slots: Box<[Slot]> = (0..info.max_in_flight)
            .map(|_| Slot {
                cmd: Cmd {
                    header: [0; 16],
                    status: [S_UNWRITTEN],
                },
                request: None,
            })
            .collect();
        Ok(VirtioBlk {
            queue,
            transport,
            info,
            features,
            geometry,
            slots,
            free: (0..info.max_in_flight).rev().collect(),
            by_token: [NONE; Q],
            done: VecDeque::new(),
            stats: Stats::default(),
            stopped: false,
        })
    }

    /// The feature bits negotiated.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Whether the driver stopped the device after a used id it could not get past. A stopped
    /// device takes nothing more ([`Error::DeviceFailed`]).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// A device error the queue cannot get past: reset the device (no more DMA), hand back
    /// every request in flight as failed, take nothing more.
    fn fail(&mut self, what: &str, value: u64) {
        self.stats.device_errors += 1;
        if self.stopped {
            return;
        }
        log::error!("virtio-blk: {what} ({value}): device stopped");
        self.stopped = true;
        self.transport.set_status(DeviceStatus::empty());
        for i in 0..Q {
            let slot = core::mem::replace(&mut self.by_token[i], NONE);
            if slot == NONE {
                continue;
            }
            if let Some(request) = self.slots[usize::from(slot)].request.take() {
                self.stats.errors += 1;
                self.done.push_back(Completion {
                    id: request.id,
                    op: request.op,
                    block: request.block,
                    buffer: request.buffer,
                    result: Err(Error::DeviceFailed),
                });
            }
            self.free.push(slot);
        }
    }

    /// Pops the next used chain, if any, into `done`.
    fn reap_one(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        let Some(token) = self.queue.peek_used() else {
            return false;
        };
        let slot = self
            .by_token
            .get(usize::from(token))
            .copied()
            .unwrap_or(NONE);
        if slot == NONE {
            self.fail("used id not in flight", u64::from(token));
            return false;
        }
        let segment = self.geometry.segment;
        let s = &mut self.slots[usize::from(slot)];
        let Some(request) = s.request.as_mut() else {
            self.fail("used id of an empty slot", u64::from(token));
            return false;
        };
        let op = request.op;
        let data_len = request.buffer.len();
        let popped = {
            let (inputs, mut outputs) =
                chain(&mut s.cmd, request.buffer.as_mut_slice(), op, segment);
            // SAFETY: the same buffers, cut the same way, as `submit` added under this token
            // (the slot's command and the request's buffer, which stayed in the slot).
            unsafe { self.queue.pop_used(token, &inputs, &mut outputs) }
        };
        let used_len = match popped {
            Ok(len) => len,
            Err(e) => {
                self.fail(virtio_support::error_words(e), u64::from(token));
                return false;
            }
        };
        self.by_token[usize::from(token)] = NONE;
        let s = &mut self.slots[usize::from(slot)];
        // SAFETY: a byte of the slot, which the device wrote (or not) before it used the chain.
        let status = unsafe { core::ptr::read_volatile(&s.cmd.status[0]) };
        let Some(request) = s.request.take() else {
            return false; // checked above
        };
        self.free.push(slot);
        let block = request.block;
        let writable = match op {
            Op::Read => data_len + 1,
            Op::Write | Op::Flush => 1,
        };
        let mut result = match status {
            S_OK => Ok(()),
            S_IOERR => Err(Error::Io { block }),
            S_UNSUPP => Err(Error::Unsupported),
            _ => {
                self.stats.device_errors += 1;
                Err(Error::Io { block })
            }
        };
        let used_len = used_len as usize;
        if used_len > writable {
            self.stats.device_errors += 1;
        } else if op == Op::Read && used_len < writable && result.is_ok() {
            self.stats.device_errors += 1;
            result = Err(Error::Io { block });
        }
        match (result, op) {
            (Err(_), _) => self.stats.errors += 1,
            (Ok(()), Op::Read) => {
                self.stats.reads += 1;
                self.stats.read_bytes += data_len as u64;
            }
            (Ok(()), Op::Write) => {
                self.stats.writes += 1;
                self.stats.written_bytes += data_len as u64;
            }
            (Ok(()), Op::Flush) => self.stats.flushes += 1,
        }
        self.done.push_back(Completion {
            id: request.id,
            op,
            block,
            buffer: request.buffer,
            result,
        });
        true
    }
}

impl<H: Hal, T: Transport, const Q: usize> BlockDevice for VirtioBlk<H, T, Q> {
    fn info(&self) -> Info {
        self.info
    }

    fn submit(&mut self, request: Request) -> Result<(), (Error, Request)> {
        if let Err(e) = self.info.check(&request) {
            self.stats.errors += 1;
            return Err((e, request));
        }
        if self.stopped {
            self.stats.errors += 1;
            return Err((Error::DeviceFailed, request));
        }
        let Some(slot) = self.free.pop() else {
            return Err((Error::Busy, request));
        };
        let kind = match request.op {
            Op::Read => T_IN,
            Op::Write => T_OUT,
            Op::Flush => T_FLUSH,
        };
        let sector = match request.op {
            Op::Flush => 0,
            _ => request.block * u64::from(self.info.block_size / SECTOR_SIZE),
        };
        let segment = self.geometry.segment;
        let s = &mut self.slots[usize::from(slot)];
        s.cmd.header[..4].copy_from_slice(&kind.to_le_bytes());
        s.cmd.header[4..8].copy_from_slice(&0u32.to_le_bytes());
        s.cmd.header[8..].copy_from_slice(&sector.to_le_bytes());
        s.cmd.status[0] = S_UNWRITTEN;
        let op = request.op;
        let request = s.request.insert(request);
        let added = {
            let (inputs, mut outputs) =
                chain(&mut s.cmd, request.buffer.as_mut_slice(), op, segment);
            // SAFETY: the buffers stay in the slot, untouched, until `reap_one` pops this
            // token with the same buffers (or the device is reset in `fail`): the command is
            // in the boxed slot table, the data in the request's heap pages.
            unsafe { self.queue.add(&inputs, &mut outputs) }
        };
        match added {
            Ok(token) if usize::from(token) < Q => {
                self.by_token[usize::from(token)] = slot;
                if self.queue.should_notify() {
                    self.transport.notify(QUEUE);
                }
                Ok(())
            }
            Ok(token) => {
                // virtio-drivers gave a head outside its own table: nothing we can pop.
                self.fail("head descriptor out of range", u64::from(token));
                let request = self.slots[usize::from(slot)]
                    .request
                    .take()
                    .unwrap_or_else(|| Request::flush(0));
                Err((Error::DeviceFailed, request))
            }
            Err(_) => {
                let request = self.slots[usize::from(slot)]
                    .request
                    .take()
                    .unwrap_or_else(|| Request::flush(0));
                self.free.push(slot);
                Err((Error::Busy, request))
            }
        }
    }

    fn complete(&mut self) -> Option<Completion> {
        if self.done.is_empty() {
            self.reap_one();
        }
        self.done.pop_front()
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len() + self.done.len()
    }

    fn poll_interrupt(&mut self) -> bool {
        // Acknowledged even when stopped, so that a level-triggered line goes quiet.
        let _ = self.transport.ack_interrupt();
        !self.done.is_empty() || (!self.stopped && self.queue.can_pop())
    }

    fn stats(&self) -> Stats {
        self.stats
    }
}

impl<H: Hal, T: Transport, const Q: usize> Drop for VirtioBlk<H, T, Q> {
    fn drop(&mut self) {
        // Reset first (the device stops using the rings and buffers), then detach the queue
        // before its memory goes back (the `queue` field drops after this).
        self.transport.set_status(DeviceStatus::empty());
        self.transport.queue_unset(QUEUE);
    }
}
