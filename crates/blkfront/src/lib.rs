//! Xen's block frontend (`io/blkif.h`): a [`blockdev::BlockDevice`] on one shared ring with the
//! backend (Linux's blkback, QEMU's qdisk), connected through XenBus, generic over the
//! platform ([`FrontendHost`]) so that everything here runs in host tests against a mock
//! backend.
//!
//! # Connecting
//! [`BlkFront::connect`] takes the device's node (`device/vbd/<N>`: finding `N` by listing
//! `device/vbd` is the caller's job) and:
//! 1. finds the backend (`backend`, `backend-id`), writes `Initialising` and waits for the
//!    backend's `InitWait`;
//! 2. reads what the backend published by then (`max-ring-page-order`: one page is used
//!    whatever it says), takes a page for the ring (32 entries of 112 bytes), grants it,
//!    allocates an event channel, writes `ring-ref`, `event-channel`, `protocol`
//!    (`x86_64-abi`) and `feature-persistent` and then `Initialised`;
//! 3. waits for `Connected` and only then reads the disk and its features (blkback writes
//!    them when it connects): `sectors` (512-byte units), `sector-size`, `info`
//!    (`VDISK_READONLY`), `mode` (`r`: read-only), `feature-flush-cache`, `feature-barrier`,
//!    `feature-max-indirect-segments`; takes and grants its bounce pages and writes
//!    `Connected`.
//!
//! Every failure is a [`ConnectError`] that says what failed; a backend that does not move
//! for [`Config::wait_ns`] (10 s) at a step is a timeout naming the state it stayed in, and one
//! that goes `Closing`/`Closed` mid-handshake is [`ConnectError::BackendClosed`]. What was
//! taken is given back (grants ended, pages freed) and `Closed` written.
//!
//! # Geometry
//! - The block is the backend's `sector-size` when it is a power of two from 512 to 4096, else
//!   512 bytes (logged), as blk-virtio does with `blk_size`; the ring addresses 512-byte
//!   sectors whatever the block, the driver converts.
//! - A request's data moves through **bounce pages** the driver owns and grants once, at
//!   connect, for the device's lifetime (persistent grants: `feature-persistent` is written, so
//!   blkback maps them once). One segment per page; a request takes up to 11 segments
//!   (`BLKIF_MAX_SEGMENTS_PER_REQUEST`: 44 KiB) in the ring entry, or, when the backend offers
//!   `feature-max-indirect-segments` above 11, up to the smaller of that and
//!   [`Config::max_indirect_segments`] (32: 128 KiB) through one granted indirect page
//!   (`BLKIF_OP_INDIRECT`).
//! - [`Config::data_pages`] (128: 512 KiB) bounds the bounce pages: [`Info::max_in_flight`] is
//!   as many of the largest requests as they hold (11 direct, 4 indirect by default), at most
//!   the ring's 32 entries. More requests than that are refused with [`Error::Busy`] (as
//!   blk-virtio does; [`blockdev::Blocking`] waits for a completion then).
//! - Flush is `BLKIF_OP_FLUSH_DISKCACHE` when the backend offers `feature-flush-cache`, else
//!   `BLKIF_OP_WRITE_BARRIER` with `feature-barrier`, without data. With neither, writes are
//!   refused ([`Error::NoFlush`], by [`Info::check`]); a read-only disk refuses them with
//!   [`Error::ReadOnly`]. A flush the backend answers `EOPNOTSUPP` is [`Error::Unsupported`].
//!
//! # Untrusted backend
//! Everything the backend writes into the ring is checked (Linux's XSA-391 fixes); every
//! refusal is counted in [`Stats::device_errors`] and the first of each kind logged, never a
//! panic or an access out of bounds. The backend never sees the callers' buffers, only the
//! bounce pages (it may write them at any time: what is copied out of them on a read's
//! completion is the disk's content as the backend says, which it controls anyway).
//! - `rsp_prod` claiming more responses than requests outstanding: the ring's indices cannot
//!   be trusted, the device is **failed** (below).
//! - A response `id` that is not a request in flight: never sent, out of the slot table, or
//!   answered already (each id carries a generation, so a late duplicate of a reused slot is
//!   caught too): the backend lost track, the device is **failed**.
//! - An `operation` other than the request's: the request fails with [`Error::Io`], the
//!   driver goes on.
//! - A `status` other than `OKAY`, `ERROR`, `EOPNOTSUPP`: the request fails with
//!   [`Error::Io`], the driver goes on.
//!
//! A **failed** device ([`BlkFront::is_failed`]) reads nothing more from the ring, hands back
//! every request in flight with [`Error::DeviceFailed`] and refuses every request from then
//! on with the same error.
//!
//! A **backend that goes away** once connected (`xl block-detach`, dom0's toolstack tearing
//! the device down: its state leaves `Connected`) is seen through a XenStore watch on its
//! state ([`Frontend::check_backend`], asked on every submit and poll): what it answered before
//! is completed, the device stops as a failed one (every other request in flight and every
//! later one: [`Error::Detached`]), and the frontend writes `Closing` and `Closed` so that
//! the detach finishes. The platform wakes the disk's waiter on XenStore events, so a waiting
//! call returns at once rather than at its time limit.
//!
//! # Not done
//! Multi-page rings (`max-ring-page-order` is read, [`Features::max_ring_page_order`]; one page
//! is used), multiple queues, discard, and reconnecting to a backend that comes back.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use blockdev::{BlockDevice, Completion, Error, Info, Op, PAGE_SIZE, Request, SECTOR_SIZE, Stats};
use core::fmt;
use xen_services::frontend::{BACKEND_WAIT_NS, Frontend, FrontendError, FrontendHost};
use xen_services::grant::GrantRef;
use xen_services::mem::SharedMemory;
use xen_services::sring::{FrontRing, RingError};
use xen_services::xenbus::{Action, XenbusState};

#[cfg(test)]
mod tests;

/// The wire format of `io/blkif.h` (x86_64 layout), for the driver and for mock backends.
pub mod wire {
    use xen_services::mem::SharedMemory;

    /// `BLKIF_OP_READ`.
    pub const OP_READ: u8 = 0;
    /// `BLKIF_OP_WRITE`.
    pub const OP_WRITE: u8 = 1;
    /// `BLKIF_OP_WRITE_BARRIER` (with `feature-barrier`).
    pub const OP_WRITE_BARRIER: u8 = 2;
    /// `BLKIF_OP_FLUSH_DISKCACHE` (with `feature-flush-cache`).
    pub const OP_FLUSH_DISKCACHE: u8 = 3;
    /// `BLKIF_OP_INDIRECT` (with `feature-max-indirect-segments`).
    pub const OP_INDIRECT: u8 = 6;

    /// `BLKIF_RSP_OKAY`.
    pub const RSP_OKAY: i16 = 0;
    /// `BLKIF_RSP_ERROR`.
    pub const RSP_ERROR: i16 = -1;
    /// `BLKIF_RSP_EOPNOTSUPP`.
    pub const RSP_EOPNOTSUPP: i16 = -2;

    /// `VDISK_READONLY`, a bit of the backend's `info`.
    pub const VDISK_READONLY: u64 = 4;

    /// Bytes of a ring entry (the union of a request and a response).
    pub const ENTRY: usize = 112;
    /// `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
    pub const MAX_SEGMENTS: usize = 11;
    /// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`.
    pub const MAX_INDIRECT_PAGES: usize = 8;
    /// Bytes of a `blkif_request_segment`.
    pub const SEGMENT: usize = 8;
    /// Segments an indirect page holds.
    pub const SEGMENTS_PER_PAGE: usize = 4096 / SEGMENT;

    /// Request: `operation` (u8).
    pub const REQ_OPERATION: usize = 0;
    /// Direct request: `nr_segments` (u8).
    pub const REQ_NR_SEGMENTS: usize = 1;
    /// Direct request: `handle` (u16).
    pub const REQ_HANDLE: usize = 2;
    /// Request: `id` (u64).
    pub const REQ_ID: usize = 8;
    /// Request: `sector_number` (u64).
    pub const REQ_SECTOR: usize = 16;
    /// Direct request: `seg[11]`.
    pub const REQ_SEGMENTS: usize = 24;
    /// Indirect request: `indirect_op` (u8).
    pub const IND_OPERATION: usize = 1;
    /// Indirect request: `nr_segments` (u16).
    pub const IND_NR_SEGMENTS: usize = 2;
    /// Indirect request: `handle` (u16).
    pub const IND_HANDLE: usize = 24;
    /// Indirect request: `indirect_grefs[8]` (u32 each).
    pub const IND_GREFS: usize = 28;
    /// Segment: `gref` (u32).
    pub const SEG_GREF: usize = 0;
    /// Segment: `first_sect` (u8).
    pub const SEG_FIRST: usize = 4;
    /// Segment: `last_sect` (u8).
    pub const SEG_LAST: usize = 5;

    /// Response: `id` (u64).
    pub const RSP_ID: usize = 0;
    /// Response: `operation` (u8).
    pub const RSP_OPERATION: usize = 8;
    /// Response: `status` (i16).
    pub const RSP_STATUS: usize = 10;

    /// Reads the little-endian u64 at `offset` (4-byte aligned).
    pub fn read_u64(mem: &impl SharedMemory, offset: usize) -> u64 {
        u64::from(mem.read_u32(offset)) | u64::from(mem.read_u32(offset + 4)) << 32
    }

    /// Writes the little-endian u64 at `offset` (4-byte aligned).
    pub fn write_u64(mem: &impl SharedMemory, offset: usize, value: u64) {
        mem.write_u32(offset, value as u32);
        mem.write_u32(offset + 4, (value >> 32) as u32);
    }

    /// Writes segment `gref`, sectors `first..=last` at `offset`.
    pub fn write_segment(mem: &impl SharedMemory, offset: usize, gref: u32, first: u8, last: u8) {
        mem.write_u32(offset + SEG_GREF, gref);
        mem.write_u8(offset + SEG_FIRST, first);
        mem.write_u8(offset + SEG_LAST, last);
        mem.write_u16(offset + 6, 0);
    }
}

/// What the driver may take; [`Config::default`] is what [`BlkFront::connect`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Bounce pages for data, granted for the device's lifetime (at least one request's worth
    /// is taken whatever this says).
    pub data_pages: usize,
    /// The most segments (pages) of an indirect request, when the backend offers more than
    /// 11 (`0`: never indirect). At most 4096 (8 indirect pages).
    pub max_indirect_segments: u32,
    /// How long the backend may stay put at each step of the handshake, in nanoseconds.
    pub wait_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_pages: 128,
            max_indirect_segments: 32,
            wait_ns: BACKEND_WAIT_NS,
        }
    }
}

/// How the device flushes its write cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushKind {
    /// `BLKIF_OP_FLUSH_DISKCACHE` (`feature-flush-cache`).
    FlushCache,
    /// `BLKIF_OP_WRITE_BARRIER` (`feature-barrier`), without data.
    Barrier,
}

/// What was negotiated with the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// How flushes go (`None`: they cannot, so writes are refused).
    pub flush: Option<FlushKind>,
    /// The backend's `feature-max-indirect-segments` (0: not offered).
    pub backend_indirect_segments: u32,
    /// Pages of the largest request (above 11: indirect requests are used).
    pub segments: u32,
    /// The backend's `max-ring-page-order` (one page is used whatever it is).
    pub max_ring_page_order: u32,
    /// The virtual device number (`handle` in requests), from the node's name.
    pub handle: u16,
}

/// Why a device could not be connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// XenStore, the handshake, a grant, the event channel or memory failed (what it says), or
    /// a backend key is missing or malformed, or the backend did not move in time.
    Frontend(FrontendError),
    /// The backend went `Closing` or `Closed` before the device was connected.
    BackendClosed,
}

impl From<FrontendError> for ConnectError {
    fn from(e: FrontendError) -> Self {
        ConnectError::Frontend(e)
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Frontend(e) => write!(f, "{e}"),
            ConnectError::BackendClosed => {
                f.write_str("the backend closed the device before it connected")
            }
        }
    }
}

impl core::error::Error for ConnectError {}

/// One request the backend may have: its bounce pages (granted for good), its indirect page
/// (indirect devices only) and the request in flight.
struct Slot<P> {
    pages: Vec<(P, GrantRef)>,
    indirect: Vec<(P, GrantRef)>,
    request: Option<Request>,
    /// The id the request went out under: the slot's index, and a generation above bit 16.
    tag: u64,
    /// The operation the response must echo (the inner one for an indirect request).
    op: u8,
}

/// The kinds of bad values a backend can write, each logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    Index = 0,
    Id = 1,
    Operation = 2,
    Status = 3,
}

/// A Xen block frontend over platform `H`.
pub struct BlkFront<H: FrontendHost> {
    host: H,
    frontend: Frontend,
    ring: Option<FrontRing<H::Page>>,
    ring_ref: Option<GrantRef>,
    port: u32,
    info: Info,
    features: Features,
    slots: Vec<Slot<H::Page>>,
    /// Free slots (a stack).
    free: Vec<u16>,
    /// Finished, not yet handed back by `complete`.
    done: VecDeque<Completion>,
    /// The generation of the next request's id.
    generation: u64,
    stats: Stats,
    failed: bool,
    /// What requests fail with once `failed`.
    stopped: Error,
    /// Kinds of bad values logged already (bits of [`Bad`]).
    logged: u8,
}

impl<H: FrontendHost> fmt::Debug for BlkFront<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlkFront")
            .field("node", &self.frontend.node)
            .field("backend", &self.frontend.backend)
            .field("info", &self.info)
            .field("features", &self.features)
            .field("in_flight", &self.in_flight())
            .field("stats", &self.stats)
            .field("failed", &self.failed)
            .finish()
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let v = v.strip_suffix(b"\0").unwrap_or(v);
    v.strip_suffix(b"\n").unwrap_or(v)
}

/// A decimal u64 (XenStore's numbers).
fn parse_u64(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A number the backend may publish (`None`: absent); malformed is [`FrontendError::BadKey`].
fn backend_number<H: FrontendHost>(
    frontend: &Frontend,
    host: &mut H,
    key: &'static str,
) -> Result<Option<u64>, FrontendError> {
    let mut buf = [0u8; 32];
    match frontend.backend_key(host, key, &mut buf)? {
        None => Ok(None),
        Some(v) => parse_u64(v).map(Some).ok_or(FrontendError::BadKey(key)),
    }
}

/// The virtual device number in `device/vbd/<N>`.
fn handle_of(node: &str) -> u16 {
    node.trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(0, |n| n as u16)
}

/// A zeroed page granted to `domid`.
fn granted_page<H: FrontendHost>(
    host: &mut H,
    domid: u16,
    readonly: bool,
) -> Result<(H::Page, GrantRef), FrontendError> {
    let page = host.alloc_page().ok_or(FrontendError::NoMemory)?;
    match host.grant(domid, &page, readonly) {
        Ok(r) => Ok((page, r)),
        Err(e) => {
            host.free_page(page);
            Err(FrontendError::Grant(e))
        }
    }
}

/// Ends `r`'s grant and frees `page`, or leaks the page when the backend still maps it.
fn release<H: FrontendHost>(host: &mut H, page: H::Page, r: GrantRef) {
    match host.end_grant(r) {
        Ok(()) => host.free_page(page),
        Err(e) => {
            log::warn!(
                "blkfront: grant {}: {e}: its page is left to the backend",
                r.0
            );
            core::mem::forget(page);
        }
    }
}

impl<H: FrontendHost> BlkFront<H> {
    /// Connects the device at `node` (`device/vbd/<N>`) with the default [`Config`].
    pub fn connect(host: H, node: &str) -> Result<Self, ConnectError> {
        Self::connect_with(host, node, Config::default())
    }

    /// Connects the device at `node` (see the crate docs for the steps).
    pub fn connect_with(mut host: H, node: &str, config: Config) -> Result<Self, ConnectError> {
        let mut frontend = Frontend::open(&mut host, node)?;
        let domid = frontend.backend_id;
        frontend.set_state(&mut host, XenbusState::Initialising)?;
        let close = |frontend: &Frontend, host: &mut H| {
            let _ = frontend.set_state(host, XenbusState::Closed);
        };
        match frontend.next_action(&mut host, config.wait_ns) {
            Ok(Action::Publish) => {}
            Ok(_) => {
                close(&frontend, &mut host);
                return Err(ConnectError::BackendClosed);
            }
            Err(e) => {
                close(&frontend, &mut host);
                return Err(e.into());
            }
        }
        // What blkback publishes before InitWait.
        let max_ring_page_order = match backend_number(&frontend, &mut host, "max-ring-page-order")
        {
            Ok(v) => v.unwrap_or(0).min(u64::from(u32::MAX)) as u32,
            Err(e) => {
                close(&frontend, &mut host);
                return Err(e.into());
            }
        };
        let (page, ring_ref) = match granted_page(&mut host, domid, false) {
            Ok(p) => p,
            Err(e) => {
                close(&frontend, &mut host);
                return Err(e.into());
            }
        };
        let ring = FrontRing::new(page, wire::ENTRY);
        let mut dev = BlkFront {
            host,
            frontend,
            ring: Some(ring),
            ring_ref: Some(ring_ref),
            port: 0,
            info: Info {
                block_size: SECTOR_SIZE,
                blocks: 0,
                read_only: true,
                flush: false,
                max_request_blocks: 1,
                max_in_flight: 1,
            },
            features: Features {
                flush: None,
                backend_indirect_segments: 0,
                segments: 0,
                max_ring_page_order,
                handle: handle_of(node),
            },
            slots: Vec::new(),
            free: Vec::new(),
            done: VecDeque::new(),
            generation: 1,
            stats: Stats::default(),
            failed: true,
            stopped: Error::DeviceFailed,
            logged: 0,
        };
        // From here on, dropping `dev` gives everything back and writes Closed.
        dev.port = dev.host.alloc_event(domid).map_err(FrontendError::Event)?;
        let mut num = [0u8; 12];
        let f = &dev.frontend;
        f.write_key(&mut dev.host, "ring-ref", decimal(ring_ref.0, &mut num))?;
        f.write_key(&mut dev.host, "event-channel", decimal(dev.port, &mut num))?;
        f.write_key(&mut dev.host, "protocol", "x86_64-abi")?;
        f.write_key(&mut dev.host, "feature-persistent", "1")?;
        f.set_state(&mut dev.host, XenbusState::Initialised)?;
        match dev.frontend.next_action(&mut dev.host, config.wait_ns)? {
            Action::Connect => {}
            _ => return Err(ConnectError::BackendClosed),
        }
        dev.negotiate(&config)?;
        dev.frontend
            .set_state(&mut dev.host, XenbusState::Connected)?;
        dev.failed = false;
        if let Err(e) = dev.frontend.watch_backend(&mut dev.host) {
            log::warn!(
                "blkfront {}: {e}: a backend that goes away will not be seen",
                dev.frontend.node.as_str()
            );
        }
        log::debug!(
            "blkfront {}: backend {} (domain {domid}), ring-ref {}, event channel {}, {:?}",
            dev.frontend.node.as_str(),
            dev.frontend.backend.as_str(),
            ring_ref.0,
            dev.port,
            dev.features
        );
        Ok(dev)
    }

    /// Reads the disk and its features (the backend is Connected) and takes the bounce pages.
    fn negotiate(&mut self, config: &Config) -> Result<(), FrontendError> {
        let f = &self.frontend;
        let h = &mut self.host;
        let sectors = backend_number(f, h, "sectors")?.ok_or(FrontendError::BadKey("sectors"))?;
        let sector_size = backend_number(f, h, "sector-size")?.unwrap_or(512);
        let info_bits = backend_number(f, h, "info")?.unwrap_or(0);
        let mut mode = [0u8; 8];
        let read_only_mode = f.backend_key(h, "mode", &mut mode)?.map(trim) == Some(b"r");
        let flush = if f.backend_flag(h, "feature-flush-cache")? {
            Some(FlushKind::FlushCache)
        } else if f.backend_flag(h, "feature-barrier")? {
            Some(FlushKind::Barrier)
        } else {
            None
        };
        let indirect = backend_number(f, h, "feature-max-indirect-segments")?.unwrap_or(0);
        let indirect = indirect.min(u64::from(u32::MAX)) as u32;
        let block_size = match u32::try_from(sector_size) {
            Ok(b) if b.is_power_of_two() && (SECTOR_SIZE..=PAGE_SIZE as u32).contains(&b) => b,
            _ => {
                log::warn!("blkfront: sector-size {sector_size} is unusable: 512-byte blocks");
                SECTOR_SIZE
            }
        };
        let limit = (wire::MAX_INDIRECT_PAGES * wire::SEGMENTS_PER_PAGE) as u32;
        let segments = if indirect as usize > wire::MAX_SEGMENTS
            && config.max_indirect_segments as usize > wire::MAX_SEGMENTS
        {
            indirect.min(config.max_indirect_segments).min(limit)
        } else {
            wire::MAX_SEGMENTS as u32
        };
        // At least one request's worth of pages; as many whole requests as the pages hold,
        // no more than the ring takes.
        let pages = config.data_pages.max(1);
        let segments = segments.min(pages as u32);
        let ring_size = self.ring.as_ref().map_or(1, |r| r.size() as usize);
        let slots = (pages / segments as usize).clamp(1, ring_size);
        let domid = self.frontend.backend_id;
        let indirect_pages = if segments as usize > wire::MAX_SEGMENTS {
            (segments as usize).div_ceil(wire::SEGMENTS_PER_PAGE)
        } else {
            0
        };
        for _ in 0..slots {
            // In the table first, so that a failure halfway gives back what was taken (drop).
            self.slots.push(Slot {
                pages: Vec::with_capacity(segments as usize),
                indirect: Vec::with_capacity(indirect_pages),
                request: None,
                tag: 0,
                op: 0,
            });
            let Some(slot) = self.slots.last_mut() else {
                break;
            };
            for _ in 0..segments {
                slot.pages.push(granted_page(&mut self.host, domid, false)?);
            }
            // Writable although the backend only reads them: blkback with persistent grants
            // maps every page it keeps writable (it fails to map a read-only grant, seen on
            // Linux 6.1). Nothing is read back from them.
            for _ in 0..indirect_pages {
                slot.indirect
                    .push(granted_page(&mut self.host, domid, false)?);
            }
        }
        self.free = (0..slots as u16).rev().collect();
        self.features.flush = flush;
        self.features.backend_indirect_segments = indirect;
        self.features.segments = segments;
        self.info = Info {
            block_size,
            blocks: sectors / u64::from(block_size / SECTOR_SIZE),
            read_only: info_bits & wire::VDISK_READONLY != 0 || read_only_mode,
            flush: flush.is_some(),
            max_request_blocks: segments * (PAGE_SIZE as u32 / block_size),
            max_in_flight: slots as u16,
        };
        Ok(())
    }
}

/// `v` in decimal, in `buf`.
fn decimal(v: u32, buf: &mut [u8; 12]) -> &str {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("0")
}

impl<H: FrontendHost> BlkFront<H> {
    /// What was negotiated with the backend.
    pub fn features(&self) -> Features {
        self.features
    }

    /// The event channel the backend signals completions on (the kernel's interrupt line for
    /// the device).
    pub fn event_channel(&self) -> u32 {
        self.port
    }

    /// The device's place in XenStore (its node, its backend's node and domain).
    pub fn frontend(&self) -> &Frontend {
        &self.frontend
    }

    /// The platform.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The platform, to use directly.
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// Whether the driver stopped the device after the backend wrote something it cannot get
    /// past (see the crate docs): it takes nothing more ([`Error::DeviceFailed`]).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Counts a bad value of kind `kind` and logs the first of its kind.
    fn bad(&mut self, kind: Bad, what: &str, value: u64) {
        self.stats.device_errors += 1;
        let bit = 1u8 << kind as u8;
        if self.logged & bit == 0 {
            self.logged |= bit;
            log::error!(
                "blkfront {}: the backend wrote {what} ({value:#x})",
                self.frontend.node.as_str()
            );
        }
    }

    /// The backend wrote something the ring cannot get past: stop (see the crate docs).
    fn fail(&mut self, kind: Bad, what: &str, value: u64) {
        self.bad(kind, what, value);
        if self.failed {
            return;
        }
        log::error!("blkfront {}: device stopped", self.frontend.node.as_str());
        self.stop(Error::DeviceFailed);
    }

    /// Whether the backend went away (its state watch, [`Frontend::check_backend`]): then the
    /// device stops as a failed one does, and its side is closed so the detach can finish.
    fn backend_left(&mut self) -> bool {
        let Some(state) = self.frontend.check_backend(&mut self.host) else {
            return false;
        };
        if !self.failed {
            log::error!(
                "blkfront {}: the backend went away (XenBus state {}): the disk is gone, \
                 {} request(s) in flight fail",
                self.frontend.node.as_str(),
                state as u32,
                self.slots.iter().filter(|s| s.request.is_some()).count()
            );
            self.stop(Error::Detached);
        }
        true
    }

    /// Stops the device: every request in flight is handed back with `error`
    /// ([`Error::DeviceFailed`], [`Error::Detached`]), and every later one is refused with it.
    fn stop(&mut self, error: Error) {
        self.failed = true;
        self.stopped = error;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(request) = slot.request.take() {
                self.stats.errors += 1;
                self.done.push_back(Completion {
                    id: request.id,
                    op: request.op,
                    block: request.block,
                    buffer: request.buffer,
                    result: Err(error),
                });
                self.free.push(i as u16);
            }
        }
    }

    /// Takes every response published, checking each (`RING_FINAL_CHECK_FOR_RESPONSES` at the
    /// end, so that one published meanwhile is not left behind).
    fn reap(&mut self) {
        while !self.failed {
            let Some(ring) = self.ring.as_mut() else {
                return;
            };
            let waiting = match ring.responses() {
                Ok(0) => ring.final_check(),
                other => other,
            };
            let n = match waiting {
                Ok(0) => return,
                Ok(n) => n,
                Err(RingError::Corrupt { prod, .. }) => {
                    let prod = u64::from(prod);
                    self.fail(Bad::Index, "rsp_prod beyond the requests outstanding", prod);
                    return;
                }
            };
            for _ in 0..n {
                let Some(ring) = self.ring.as_mut() else {
                    return;
                };
                let off = ring.next_response();
                let mem = ring.memory();
                let id = wire::read_u64(mem, off + wire::RSP_ID);
                let op = mem.read_u8(off + wire::RSP_OPERATION);
                let status = mem.read_u16(off + wire::RSP_STATUS) as i16;
                ring.consume_response();
                self.finish(id, op, status);
                if self.failed {
                    return;
                }
            }
        }
    }

    /// The response `id`, `op`, `status`: checked, and its request completed.
    fn finish(&mut self, id: u64, op: u8, status: i16) {
        let index = (id & 0xffff) as usize;
        let in_flight = self
            .slots
            .get(index)
            .is_some_and(|s| s.request.is_some() && s.tag == id);
        if !in_flight {
            self.fail(Bad::Id, "a response id not in flight", id);
            return;
        }
        let expected = self.slots[index].op;
        let mut result = match status {
            wire::RSP_OKAY => Ok(()),
            wire::RSP_ERROR => Err(Error::Io { block: 0 }),
            wire::RSP_EOPNOTSUPP => Err(Error::Unsupported),
            _ => {
                self.bad(
                    Bad::Status,
                    "an unknown response status",
                    status as u16 as u64,
                );
                Err(Error::Io { block: 0 })
            }
        };
        if op != expected {
            self.bad(
                Bad::Operation,
                "a response for another operation",
                u64::from(op),
            );
            result = Err(Error::Io { block: 0 });
        }
        let slot = &mut self.slots[index];
        let Some(mut request) = slot.request.take() else {
            return; // checked above
        };
        let block = request.block;
        let result = result.map_err(|e| match e {
            Error::Io { .. } => Error::Io { block },
            e => e,
        });
        let len = request.buffer.len();
        match (result, request.op) {
            (Err(_), _) => self.stats.errors += 1,
            (Ok(()), Op::Read) => {
                let data = request.buffer.as_mut_slice();
                for (chunk, (page, _)) in data.chunks_mut(PAGE_SIZE).zip(slot.pages.iter()) {
                    page.read_bytes(0, chunk);
                }
                self.stats.reads += 1;
                self.stats.read_bytes += len as u64;
            }
            (Ok(()), Op::Write) => {
                self.stats.writes += 1;
                self.stats.written_bytes += len as u64;
            }
            (Ok(()), Op::Flush) => self.stats.flushes += 1,
        }
        self.free.push(index as u16);
        self.done.push_back(Completion {
            id: request.id,
            op: request.op,
            block,
            buffer: request.buffer,
            result,
        });
    }

    /// Writes `request` into the ring entry at `off` under slot `index`; the operation the
    /// response must echo.
    fn write_request(&self, off: usize, index: usize, request: &Request, tag: u64) -> u8 {
        let Some(ring) = self.ring.as_ref() else {
            return 0;
        };
        let mem = ring.memory();
        let slot = &self.slots[index];
        let handle = self.features.handle;
        let op = match request.op {
            Op::Read => wire::OP_READ,
            Op::Write => wire::OP_WRITE,
            Op::Flush => match self.features.flush {
                Some(FlushKind::Barrier) => wire::OP_WRITE_BARRIER,
                _ => wire::OP_FLUSH_DISKCACHE,
            },
        };
        wire::write_u64(mem, off + wire::REQ_ID, tag);
        mem.write_u32(off + 4, 0);
        if request.op == Op::Flush {
            mem.write_u8(off + wire::REQ_OPERATION, op);
            mem.write_u8(off + wire::REQ_NR_SEGMENTS, 0);
            mem.write_u16(off + wire::REQ_HANDLE, handle);
            wire::write_u64(mem, off + wire::REQ_SECTOR, 0);
            return op;
        }
        let sector = request.block * u64::from(self.info.block_size / SECTOR_SIZE);
        wire::write_u64(mem, off + wire::REQ_SECTOR, sector);
        let data = request.buffer.as_slice();
        let pages = data.len().div_ceil(PAGE_SIZE);
        // Each page a segment, from its first sector to its last one holding data.
        let segment = |i: usize| {
            let bytes = (data.len() - i * PAGE_SIZE).min(PAGE_SIZE);
            let last = (bytes / SECTOR_SIZE as usize).saturating_sub(1) as u8;
            (slot.pages[i].1.0, 0u8, last)
        };
        if pages <= wire::MAX_SEGMENTS {
            mem.write_u8(off + wire::REQ_OPERATION, op);
            mem.write_u8(off + wire::REQ_NR_SEGMENTS, pages as u8);
            mem.write_u16(off + wire::REQ_HANDLE, handle);
            for i in 0..pages {
                let (gref, first, last) = segment(i);
                wire::write_segment(
                    mem,
                    off + wire::REQ_SEGMENTS + i * wire::SEGMENT,
                    gref,
                    first,
                    last,
                );
            }
        } else {
            mem.write_u8(off + wire::REQ_OPERATION, wire::OP_INDIRECT);
            mem.write_u8(off + wire::IND_OPERATION, op);
            mem.write_u16(off + wire::IND_NR_SEGMENTS, pages as u16);
            mem.write_u16(off + wire::IND_HANDLE, handle);
            mem.write_u16(off + wire::IND_HANDLE + 2, 0);
            for i in 0..wire::MAX_INDIRECT_PAGES {
                let gref = slot.indirect.get(i).map_or(0, |(_, r)| r.0);
                mem.write_u32(off + wire::IND_GREFS + 4 * i, gref);
            }
            for i in 0..pages {
                let (gref, first, last) = segment(i);
                let (page, _) = &slot.indirect[i / wire::SEGMENTS_PER_PAGE];
                let at = (i % wire::SEGMENTS_PER_PAGE) * wire::SEGMENT;
                wire::write_segment(page, at, gref, first, last);
            }
        }
        op
    }
}

impl<H: FrontendHost> BlockDevice for BlkFront<H> {
    fn info(&self) -> Info {
        self.info
    }

    fn submit(&mut self, request: Request) -> Result<(), (Error, Request)> {
        if let Err(e) = self.info.check(&request) {
            self.stats.errors += 1;
            return Err((e, request));
        }
        if self.failed || self.backend_left() {
            self.stats.errors += 1;
            return Err((self.stopped, request));
        }
        let Some(off) = self.ring.as_ref().and_then(|r| r.next_request()) else {
            return Err((Error::Busy, request));
        };
        let Some(index) = self.free.pop() else {
            return Err((Error::Busy, request));
        };
        let index = usize::from(index);
        let pages = request.buffer.len().div_ceil(PAGE_SIZE);
        if pages > self.slots[index].pages.len() {
            // Info::check keeps requests within max_request_blocks, which the pages hold.
            self.free.push(index as u16);
            self.stats.errors += 1;
            let len = request.buffer.len();
            return Err((Error::BadLength { len }, request));
        }
        if request.op == Op::Write {
            let slot = &self.slots[index];
            for (chunk, (page, _)) in request.buffer.as_slice().chunks(PAGE_SIZE).zip(&slot.pages) {
                page.write_bytes(0, chunk);
            }
        }
        let tag = self.generation << 16 | index as u64;
        self.generation = self.generation.wrapping_add(1) & 0xffff_ffff_ffff;
        let op = self.write_request(off, index, &request, tag);
        let slot = &mut self.slots[index];
        slot.tag = tag;
        slot.op = op;
        slot.request = Some(request);
        if let Some(ring) = self.ring.as_mut() {
            ring.push_request();
            if ring.publish() {
                self.host.notify(self.port);
            }
        }
        Ok(())
    }

    fn complete(&mut self) -> Option<Completion> {
        if self.done.is_empty() {
            self.reap();
            // what the backend answered before it left is kept; the rest fails
            self.backend_left();
        }
        self.done.pop_front()
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len() + self.done.len()
    }

    fn poll_interrupt(&mut self) -> bool {
        self.reap();
        self.backend_left();
        !self.done.is_empty()
    }

    fn stats(&self) -> Stats {
        self.stats
    }
}

impl<H: FrontendHost> Drop for BlkFront<H> {
    fn drop(&mut self) {
        // Tell the backend first (blkback unmaps the ring and the persistent grants as it
        // closes); a page it still maps is left to it, never reused.
        let _ = self.frontend.set_state(&mut self.host, XenbusState::Closed);
        for slot in self.slots.drain(..) {
            for (page, r) in slot.pages.into_iter().chain(slot.indirect) {
                release(&mut self.host, page, r);
            }
        }
        if let (Some(ring), Some(r)) = (self.ring.take(), self.ring_ref.take()) {
            release(&mut self.host, ring.into_memory(), r);
        }
    }
}
