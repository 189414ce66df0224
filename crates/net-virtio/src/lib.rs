//! virtio-net: a [`netdev::NetDevice`] over the `virtio-drivers` crate (0.13), on any of its
//! transports (virtio-mmio on `microvm` and Firecracker, PCI on `q35`).
//!
//! # What virtio-drivers does, and what this driver does
//! `virtio-drivers` (rcore-os) is the no_std virtio stack several Rust kernels share. We use its
//! transports (MMIO legacy and modern, PCI modern) and its split virtqueue
//! ([`VirtQueue`](virtio_drivers::queue::VirtQueue), with event-index notification
//! suppression), and do the rest here: feature negotiation, the virtio-net header, and the
//! buffers. Its own network drivers do not fit: `VirtIONetRaw` negotiates a fixed feature set
//! without checksum offload, TSO or mergeable buffers, and `VirtIONet` indexes its buffer table
//! with the id the device wrote (`rx_buffers[token as usize]`, a panic on an id out of range).
//!
//! What 0.13's queue checks of what the device writes (`queue.rs`): `pop_used` refuses a
//! used-ring id that is not the token the caller passes (`WrongToken`, the entry is left in
//! place); the used ring's slot index is masked to the ring's size; the descriptors it follows
//! when recycling are its own shadow copy, never the device-visible table. What it does not
//! check, and this driver does (each refusal is counted in [`DeviceStats::device_errors`],
//! never a panic):
//! - that a used-ring id is a chain the driver has in flight (an id not in flight cannot be
//!   popped at all: the queue is wedged, so the driver **stops** the device: every call returns
//!   nothing from then on, see [`VirtioNet::is_stopped`]);
//! - that a used length fits the buffer posted and holds the header (else the frame is
//!   dropped, the buffer posted again, the driver goes on);
//! - the header's fields: a `num_buffers` other than 1 with `MRG_RXBUF` (every frame fits one
//!   buffer: the frame is dropped with the buffers it claims); a `gso_type` other than none, or TCPv4 when
//!   `GUEST_TSO4` was negotiated (the frame is dropped); checksum flags not negotiated or
//!   unknown (the frame goes to the stack unmarked, [`RxChecksum::Unknown`]: checked there);
//! - that a frame is a plausible Ethernet frame (shorter than 14 bytes or longer than
//!   [`Capabilities::max_rx_frame`]: dropped, counted in `rx_dropped`).
//!
//! Left to virtio-drivers, and so not guarded here: `read_consistent` retries for as long as
//! the device changes its configuration generation (a hostile device can hang the probe), and
//! the PCI transport's `notify` panics on a notification offset outside the notify region.
//! Both happen only with a device that is broken from the start, at probe or on the first
//! notification.
//!
//! # Features and header
//! The driver asks for `VERSION_1`, `MAC` and `RING_EVENT_IDX`, and for these offloads when the
//! device offers them (each falls back to doing the work in software when not offered):
//! - `CSUM`: the device completes TCP and UDP checksums on transmit (the stack leaves the
//!   pseudo-header's sum, the header says where: `NEEDS_CSUM`, `csum_start`, `csum_offset`);
//! - `HOST_TSO4` (with `CSUM`): the device cuts TCP/IPv4 frames of up to 64 KiB into segments
//!   (`GSO_TCPV4`, `gso_size`, `hdr_len`), [`Capabilities::tso`];
//! - `GUEST_CSUM`: the device marks received frames whose checksum it verified (`DATA_VALID`,
//!   [`RxChecksum::Verified`]) or that came from the host's stack with a partial checksum
//!   (`NEEDS_CSUM`, [`RxChecksum::Blank`]); unmarked frames are checked by the stack's adapter;
//! - `GUEST_TSO4` with `MRG_RXBUF` (and `GUEST_CSUM`): the device delivers TCP segments of up
//!   to 64 KiB. Every receive buffer then holds the largest one whole ("Queues and buffers"),
//!   so `num_buffers` is always 1 (checked). `GUEST_TSO4` is still asked for only with
//!   `MRG_RXBUF`, which this driver has always used with it; without, virtio 1.2 (5.1.6.3.1)
//!   asks for the same whole 65,562-byte buffers.
//!
//! `MTU` is not negotiated: the MTU is 1500. The header in front of every frame is 12 bytes
//! (`virtio_net_hdr` with `num_buffers`) on a modern device (`VERSION_1`: PCI, virtio-mmio
//! version 2) or with `MRG_RXBUF`, 10 bytes on a legacy one without it (virtio-mmio version 1,
//! QEMU's default for `microvm`). `RING_INDIRECT_DESC` is not asked for: every chain here is
//! one direct descriptor.
//!
//! # Queues and buffers
//! Both queues have `Q` descriptors ([`QUEUE_SIZE`] = 64 unless a type says otherwise), and each
//! chain is one descriptor, so `Q` buffers fill a queue exactly. The driver owns `Q` transmit
//! buffers: all of [`BUFFER_LEN`] (2 KiB: a header and a 1514-byte frame fit, two to a page)
//! without TSO, and with TSO [`TSO_BUFFERS`] (at most `Q / 4`) of [`TSO_BUFFER_LEN`] (68 KiB)
//! for large frames in place of as many small ones. It owns `Q` receive buffers of
//! [`BUFFER_LEN`], or with `GUEST_TSO4` [`RX_BIG_BUFFERS`] (at most `Q`) of [`TSO_BUFFER_LEN`],
//! each taking the largest coalesced frame whole (Linux gathers such a frame from page-sized
//! buffers into a socket buffer with fragments; smoltcp takes one contiguous frame, so 2 KiB
//! buffers would mean a copy into a staging buffer for every large frame). The DMA memory at
//! Q = 64: without offloads 256 KiB; with them (QEMU offers them) 120 KiB of small and 272 KiB
//! of TSO transmit buffers and 1,088 KiB of receive buffers, 1.45 MiB in all (it was 576 KiB
//! with 2 KiB receive buffers and a 64 KiB staging buffer). Every receive buffer is kept posted,
//! except the one of the frame lent to the stack.
//!
//! Why 64, for every profile for now: 64 full frames are 96 KB, more than one 64 KiB TCP window
//! (the default `net_tcp_buffer`) in flight in each direction, and the 16 large receive buffers
//! hold a megabyte, four 256 KiB windows (echo's bulk listeners), or 16 frames of any size
//! before the stack takes one (a device with no buffer posted holds the next frame back; QEMU
//! leaves it in the TAP's queue); the memory stays a fraction of the smallest guests' (32 MiB).
//! QEMU's virtio-net offers 256 per queue; virtio-drivers fixes the size at compile time (a
//! const generic), which is why it is one here too.
//!
//! # Copies
//! A received frame is lent to the stack in place ([`VirtioRx`] borrows the DMA buffer), its
//! buffer going back to the device at the driver's next call. A frame to send is written by the stack straight into
//! a transmit buffer behind the header ([`VirtioTx`]).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use core::marker::PhantomData;
use core::ptr::NonNull;
use netdev::{
    Capabilities, ChecksumOffload, DeviceStats, ETHERNET_HEADER, HeldTx, MacAddress, NetDevice,
    RxChecksum, RxToken, TxOffload, TxToken,
};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

#[cfg(test)]
mod tests;

/// Descriptors per queue, and receive and transmit buffers each (see the crate docs).
pub const QUEUE_SIZE: usize = 64;

/// Bytes of one buffer: a virtio-net header and a 1514-byte frame.
pub const BUFFER_LEN: usize = 2048;

/// Transmit buffers for TSO frames, with `HOST_TSO4` (at most `Q / 4`).
pub const TSO_BUFFERS: usize = 4;

/// Receive buffers with `GUEST_TSO4` (at most `Q`), each of [`TSO_BUFFER_LEN`]: the largest
/// coalesced frame fits one, so none is ever gathered from several (crate docs, "Copies").
pub const RX_BIG_BUFFERS: usize = 16;

/// Bytes of a TSO transmit buffer: a header and the largest TSO frame (an IPv4 packet's
/// 65,535 bytes and the Ethernet header), in whole pages.
pub const TSO_BUFFER_LEN: usize = (12 + MAX_TSO_FRAME).div_ceil(PAGE_SIZE) * PAGE_SIZE;

/// The largest TSO frame sent, and the largest coalesced frame received.
const MAX_TSO_FRAME: usize = ETHERNET_HEADER + 65_535;

/// No buffer (in the token tables).
const NONE: u16 = u16::MAX;

// Feature bits (virtio 1.2, 5.1.3; 6).
const F_CSUM: u64 = 1 << 0;
const F_GUEST_CSUM: u64 = 1 << 1;
const F_MAC: u64 = 1 << 5;
const F_GUEST_TSO4: u64 = 1 << 7;
const F_HOST_TSO4: u64 = 1 << 11;
const F_MRG_RXBUF: u64 = 1 << 15;
const F_EVENT_IDX: u64 = 1 << 29;
const F_VERSION_1: u64 = 1 << 32;

// The header's flags and GSO types.
const HDR_NEEDS_CSUM: u8 = 1;
const HDR_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;

const QUEUE_RECEIVE: u16 = 0;
const QUEUE_TRANSMIT: u16 = 1;

/// Why a virtio-net device could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// The transport's device is not a network card.
    NotNetwork(DeviceType),
    /// virtio-drivers refused (queue too small for `Q`, queue already in use, no config space).
    Virtio(virtio_drivers::Error),
    /// No DMA memory for the buffers.
    NoDmaMemory,
    /// The device took fewer receive buffers than it has descriptors for.
    Posting,
    /// The device refused the features it offered (`FEATURES_OK` did not stick).
    Features,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            // The type's number, not its `Debug` name: that table of every virtio device's
            // name would be in the image for this one message.
            InitError::NotNetwork(t) => {
                write!(f, "not a network device (virtio device type {})", *t as u8)
            }
            InitError::Virtio(e) => write!(f, "virtio: {}", virtio_support::error_words(*e)),
            InitError::NoDmaMemory => f.write_str("no DMA memory for the buffers"),
            InitError::Posting => f.write_str("the receive queue refused its buffers"),
            InitError::Features => f.write_str("the device refused the features it offered"),
        }
    }
}

/// Contiguous DMA pages from the [`Hal`], holding `count` buffers of `size` bytes.
struct DmaBuffers<H: Hal> {
    paddr: PhysAddr,
    vaddr: NonNull<u8>,
    pages: usize,
    count: usize,
    size: usize,
    _hal: PhantomData<H>,
}

// SAFETY: the region is owned exclusively by its `DmaBuffers` (like a `Box<[u8]>`); moving it to
// another thread moves the ownership.
unsafe impl<H: Hal> Send for DmaBuffers<H> {}

impl<H: Hal> DmaBuffers<H> {
    fn new(count: usize, size: usize, direction: BufferDirection) -> Result<Self, InitError> {
        let pages = (count * size).div_ceil(PAGE_SIZE).max(1);
        let (paddr, vaddr) = H::dma_alloc(pages, direction);
        if paddr == 0 {
            return Err(InitError::NoDmaMemory);
        }
        Ok(DmaBuffers {
            paddr,
            vaddr,
            pages,
            count,
            size,
            _hal: PhantomData,
        })
    }

    /// Buffer `i`, or `None` past the end.
    ///
    /// # Safety
    /// Buffer `i` is not posted to the device, and no other reference to it lives while the
    /// returned one does.
    unsafe fn get_mut(&mut self, i: u16) -> Option<&mut [u8]> {
        let i = usize::from(i);
        if i >= self.count {
            return None;
        }
        // SAFETY: `i * size + size` bytes are within the region (`count` buffers fit in
        // `pages`), which `dma_alloc` gave us, zeroed, aligned and unaliased; the caller
        // promises nothing else (the device included) touches this buffer meanwhile.
        Some(unsafe {
            core::slice::from_raw_parts_mut(self.vaddr.as_ptr().add(i * self.size), self.size)
        })
    }

    /// Buffer `i` to read, or `None` past the end.
    ///
    /// # Safety
    /// As [`get_mut`](Self::get_mut), for reading.
    unsafe fn get(&self, i: u16) -> Option<&[u8]> {
        let i = usize::from(i);
        if i >= self.count {
            return None;
        }
        // SAFETY: as in `get_mut`.
        Some(unsafe {
            core::slice::from_raw_parts(self.vaddr.as_ptr().add(i * self.size), self.size)
        })
    }
}

impl<H: Hal> Drop for DmaBuffers<H> {
    fn drop(&mut self) {
        // SAFETY: the region came from `dma_alloc` with these values and is freed once; the
        // queues were unset before (`VirtioNet`'s `Drop` runs before its fields drop).
        unsafe {
            H::dma_dealloc(self.paddr, self.vaddr, self.pages);
        }
    }
}

/// Counters and state both tokens may change.
#[derive(Debug, Default)]
struct Health {
    stats: DeviceStats,
    stopped: bool,
}

impl Health {
    /// A device error the queue cannot get past: stop using the device.
    fn fail(&mut self, what: &str, value: usize) {
        self.stats.device_errors += 1;
        if !self.stopped {
            log::error!("virtio-net: {what} ({value}): device stopped");
        }
        self.stopped = true;
    }
}

/// A received frame lent to the stack: in receive buffer `buffer`, behind the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    buffer: u16,
    len: usize,
    checksum: RxChecksum,
}

/// The receive side: buffers and which token each posted one went under.
struct RxSide<H: Hal, const Q: usize> {
    mem: DmaBuffers<H>,
    /// Buffer posted under each token (the head descriptor's index), or [`NONE`].
    by_token: [u16; Q],
    /// The frame popped and lent to the stack, not yet consumed.
    held: Option<Held>,
    /// Buffers consumed (or refused), to post again.
    repost: [u16; Q],
    repost_len: usize,
    /// Buffers in all (`Q` small ones, or [`RX_BIG_BUFFERS`]).
    count: usize,
    hdr_len: usize,
    /// Frames and bytes handed to the stack (counted here: the receive token cannot reach
    /// [`Health`], which the transmit token lent with it holds).
    frames: u64,
    bytes: u64,
}

impl<H: Hal, const Q: usize> RxSide<H, Q> {
    fn queue_repost(&mut self, b: u16) {
        // Never more than Q buffers exist, so the list has room.
        if let Some(slot) = self.repost.get_mut(self.repost_len) {
            *slot = b;
            self.repost_len += 1;
        }
    }
}

/// The transmit side: `small` buffers of [`BUFFER_LEN`], then (with TSO) buffers of
/// [`TSO_BUFFER_LEN`], numbered after them.
struct TxSide<H: Hal, const Q: usize> {
    mem: DmaBuffers<H>,
    big: Option<DmaBuffers<H>>,
    small: usize,
    /// Buffer and length (header included) sent under each token, or ([`NONE`], 0).
    by_token: [(u16, u32); Q],
    /// Free small buffers (a stack).
    free: [u16; Q],
    free_len: usize,
    /// Free TSO buffers (a stack).
    free_big: [u16; TSO_BUFFERS],
    free_big_len: usize,
    /// TSO buffers lent to the stack ([`NetDevice::hold_transmit`]), a bit per buffer.
    held: u32,
    hdr_len: usize,
    max_frame: usize,
    /// The negotiated features.
    features: u64,
}

impl<H: Hal, const Q: usize> TxSide<H, Q> {
    /// Buffer `b` (small or TSO) to read.
    ///
    /// # Safety
    /// As [`DmaBuffers::get`].
    unsafe fn get(&self, b: u16) -> Option<&[u8]> {
        match usize::from(b).checked_sub(self.small) {
            // SAFETY: the caller's promise.
            None => unsafe { self.mem.get(b) },
            // SAFETY: the caller's promise.
            Some(i) => unsafe { self.big.as_ref()?.get(i as u16) },
        }
    }

    /// Buffer `b` (small or TSO) to write.
    ///
    /// # Safety
    /// As [`DmaBuffers::get_mut`].
    unsafe fn get_mut(&mut self, b: u16) -> Option<&mut [u8]> {
        match usize::from(b).checked_sub(self.small) {
            // SAFETY: the caller's promise.
            None => unsafe { self.mem.get_mut(b) },
            // SAFETY: the caller's promise.
            Some(i) => unsafe { self.big.as_mut()?.get_mut(i as u16) },
        }
    }

    /// Gives buffer `b` back to its free list.
    fn free(&mut self, b: u16) {
        if usize::from(b) < self.small {
            if let Some(slot) = self.free.get_mut(self.free_len) {
                *slot = b;
                self.free_len += 1;
            }
        } else if let Some(slot) = self.free_big.get_mut(self.free_big_len) {
            *slot = b;
            self.free_big_len += 1;
        }
    }

    /// The bit of `b` in `held`, if `b` is a TSO buffer.
    fn held_bit(&self, b: u16) -> Option<u32> {
        let i = usize::from(b).checked_sub(self.small)?;
        (i < TSO_BUFFERS).then(|| 1 << i)
    }

    /// Whether `b` is lent; it is not any more after this if `take`.
    fn is_held(&mut self, b: u16, take: bool) -> bool {
        match self.held_bit(b) {
            Some(bit) if self.held & bit != 0 => {
                if take {
                    self.held &= !bit;
                }
                true
            }
            _ => false,
        }
    }

    /// Whether a frame of `len` bytes has a free buffer.
    fn has_room(&self, len: usize) -> bool {
        if len + self.hdr_len <= BUFFER_LEN {
            self.free_len > 0
        } else {
            self.free_big_len > 0
        }
    }
}

/// A virtio-net device: `Q` receive buffers kept posted and `Q` transmit buffers.
pub struct VirtioNet<H: Hal, T: Transport, const Q: usize = QUEUE_SIZE> {
    transport: T,
    rxq: VirtQueue<H, Q>,
    txq: VirtQueue<H, Q>,
    rx: RxSide<H, Q>,
    tx: TxSide<H, Q>,
    health: Health,
    caps: Capabilities,
}

impl<H: Hal, T: Transport, const Q: usize> Drop for VirtioNet<H, T, Q> {
    fn drop(&mut self) {
        // The device must not reach the rings or buffers once they are freed (the fields drop
        // after this).
        self.transport.queue_unset(QUEUE_RECEIVE);
        self.transport.queue_unset(QUEUE_TRANSMIT);
    }
}

impl<H: Hal, T: Transport, const Q: usize> core::fmt::Debug for VirtioNet<H, T, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("caps", &self.caps)
            .field("header", &self.rx.hdr_len)
            .field("features", &self.tx.features)
            .field("stats", &self.stats())
            .field("stopped", &self.health.stopped)
            .finish()
    }
}

/// The next used-ring id, looking twice when there seems to be none: `pop_used` has written
/// the ring's `used_event` (with event indexes: "interrupt me after this one"), and a store
/// followed by a load may be reordered on x86 (as under TCG, on the host). Without the full
/// fence the driver could miss an entry the device added just before it saw the new
/// `used_event`, for which the device then never interrupts: the queue would wait for an
/// interrupt that never comes, and so would the stack (Linux's `virtqueue_enable_cb` has the
/// same `virtio_mb`). virtio-drivers 0.13 does not fence there.
fn peek_used<H: Hal, const Q: usize>(q: &VirtQueue<H, Q>) -> Option<u16> {
    q.peek_used().or_else(|| {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        q.peek_used()
    })
}

/// The features to ask for among those `offered` (crate docs, "Features and header").
fn wanted(offered: u64) -> u64 {
    let mut want = F_VERSION_1 | F_MAC | F_EVENT_IDX;
    if offered & F_CSUM != 0 {
        want |= F_CSUM | F_HOST_TSO4;
    }
    if offered & F_GUEST_CSUM != 0 {
        want |= F_GUEST_CSUM;
        if offered & (F_GUEST_TSO4 | F_MRG_RXBUF) == F_GUEST_TSO4 | F_MRG_RXBUF {
            want |= F_GUEST_TSO4 | F_MRG_RXBUF;
        }
    }
    offered & want
}

/// Who does a checksum, from whether the device computes (transmit) and verifies (receive).
fn offload(computes: bool, verifies: bool) -> ChecksumOffload {
    match (computes, verifies) {
        (false, false) => ChecksumOffload::None,
        (true, false) => ChecksumOffload::Tx,
        (false, true) => ChecksumOffload::Rx,
        (true, true) => ChecksumOffload::Both,
    }
}

impl<H: Hal, T: Transport, const Q: usize> VirtioNet<H, T, Q> {
    /// Negotiates with the device behind `transport`, sets up both queues and posts every
    /// receive buffer.
    // Not inlined into the kernel's probe (called once, at boot): httpd [net] 1,280 bytes
    // smaller, kvstore [storage] 512.
    #[inline(never)]
    pub fn new(mut transport: T) -> Result<Self, InitError> {
        let device_type = transport.device_type();
        if device_type != DeviceType::Network {
            return Err(InitError::NotNetwork(device_type));
        }
        const { assert!(Q >= 4 && Q < NONE as usize, "queue size") };
        // virtio 1.2, 3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (checked on a
        // modern device), queues, DRIVER_OK.
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let features = wanted(transport.read_device_features());
        transport.write_driver_features(features);
        let ok = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK;
        transport.set_status(ok);
        if features & F_VERSION_1 != 0
            && !transport.get_status().contains(DeviceStatus::FEATURES_OK)
        {
            transport.set_status(DeviceStatus::FAILED);
            return Err(InitError::Features);
        }
        transport.set_guest_page_size(PAGE_SIZE as u32);
        let mac = transport
            .read_consistent(|| transport.read_config_space::<[u8; 6]>(0))
            .map_err(InitError::Virtio)?;
        let tso = features & F_HOST_TSO4 != 0;
        let big = if tso { TSO_BUFFERS.min(Q / 4) } else { 0 };
        let small = Q - big;
        // With GUEST_TSO4, buffers that take the largest coalesced frame whole (crate docs).
        let (rx_count, rx_len) = if features & F_GUEST_TSO4 != 0 {
            (RX_BIG_BUFFERS.min(Q), TSO_BUFFER_LEN)
        } else {
            (Q, BUFFER_LEN)
        };
        let rx_mem = DmaBuffers::new(rx_count, rx_len, BufferDirection::DeviceToDriver)?;
        let tx_mem = DmaBuffers::new(small, BUFFER_LEN, BufferDirection::DriverToDevice)?;
        let big_mem = match big {
            0 => None,
            n => Some(DmaBuffers::new(
                n,
                TSO_BUFFER_LEN,
                BufferDirection::DriverToDevice,
            )?),
        };
        let event_idx = features & F_EVENT_IDX != 0;
        let rxq = VirtQueue::new(&mut transport, QUEUE_RECEIVE, false, event_idx)
            .map_err(InitError::Virtio)?;
        let txq = match VirtQueue::new(&mut transport, QUEUE_TRANSMIT, false, event_idx) {
            Ok(q) => q,
            Err(e) => {
                transport.queue_unset(QUEUE_RECEIVE);
                return Err(InitError::Virtio(e));
            }
        };
        transport.finish_init();

        let hdr_len = if features & (F_VERSION_1 | F_MRG_RXBUF) != 0 {
            12
        } else {
            10
        };
        let mut caps = Capabilities::ethernet(MacAddress(mac));
        caps.max_burst = Some(Q);
        let c = offload(features & F_CSUM != 0, features & F_GUEST_CSUM != 0);
        caps.checksums.tcp = c;
        caps.checksums.udp = c;
        if features & F_GUEST_TSO4 != 0 {
            caps.max_rx_frame = MAX_TSO_FRAME;
        }
        if tso {
            caps.tso = Some(MAX_TSO_FRAME);
        }
        let mut free = [0u16; Q];
        for (i, f) in free.iter_mut().enumerate().take(small) {
            *f = i as u16;
        }
        let mut free_big = [0u16; TSO_BUFFERS];
        for (i, f) in free_big.iter_mut().enumerate().take(big) {
            *f = (small + i) as u16;
        }
        let mut dev = VirtioNet {
            transport,
            rxq,
            txq,
            rx: RxSide {
                mem: rx_mem,
                by_token: [NONE; Q],
                held: None,
                repost: [0; Q],
                repost_len: 0,
                count: rx_count,
                hdr_len,
                frames: 0,
                bytes: 0,
            },
            tx: TxSide {
                mem: tx_mem,
                big: big_mem,
                small,
                by_token: [(NONE, 0); Q],
                free,
                free_len: small,
                free_big,
                free_big_len: big,
                held: 0,
                hdr_len,
                max_frame: caps.max_frame(),
                features,
            },
            health: Health::default(),
            caps,
        };
        for i in 0..rx_count {
            dev.rx.repost[i] = i as u16;
        }
        dev.rx.repost_len = rx_count;
        dev.post_receive_buffers();
        if dev.rx.repost_len != 0 || dev.health.stopped {
            return Err(InitError::Posting);
        }
        Ok(dev)
    }

    /// Whether the driver gave up on the device after it wrote something the queues cannot get
    /// past (a used-ring id not in flight). A stopped device receives and sends nothing.
    pub fn is_stopped(&self) -> bool {
        self.health.stopped
    }

    /// The virtio-net header's size in bytes (12 modern or with `MRG_RXBUF`, 10 legacy).
    pub fn header_len(&self) -> usize {
        self.rx.hdr_len
    }

    /// The features negotiated (virtio's bits).
    pub fn features(&self) -> u64 {
        self.tx.features
    }

    /// Asks the device for used-buffer interrupts (the default after [`new`](Self::new)).
    pub fn enable_interrupts(&mut self) {
        self.rxq.set_dev_notify(true);
        self.txq.set_dev_notify(true);
    }

    /// Asks the device not to interrupt (a hint: with event indexes it is ignored).
    pub fn disable_interrupts(&mut self) {
        self.rxq.set_dev_notify(false);
        self.txq.set_dev_notify(false);
    }

    /// Receive buffers posted to the device now.
    pub fn posted_receive_buffers(&self) -> usize {
        self.rx.by_token.iter().filter(|&&b| b != NONE).count()
    }

    /// Transmit buffers free now (small and TSO).
    pub fn free_transmit_buffers(&self) -> usize {
        self.tx.free_len + self.tx.free_big_len
    }

    /// Posts the buffers waiting in the repost list.
    fn post_receive_buffers(&mut self) {
        let mut notify = false;
        while self.rx.repost_len > 0 && !self.health.stopped {
            let b = self.rx.repost[self.rx.repost_len - 1];
            // SAFETY: `b` is in the repost list, so neither posted nor lent.
            let Some(buf) = (unsafe { self.rx.mem.get_mut(b) }) else {
                self.health
                    .fail("receive buffer index out of range", usize::from(b));
                return;
            };
            // SAFETY: the buffer stays valid and untouched until popped: it is only reached
            // again through `by_token` once the device gives its token back.
            match unsafe { self.rxq.add(&[], &mut [buf]) } {
                Ok(token) => match self.rx.by_token.get_mut(usize::from(token)) {
                    Some(slot) if *slot == NONE => {
                        *slot = b;
                        self.rx.repost_len -= 1;
                        // Asked after each buffer, not once after all: virtio-drivers compares
                        // the event index without wrapping (`avail_idx >= avail_event + 1`),
                        // which only the buffer that reaches it is sure to see.
                        notify |= self.rxq.should_notify();
                    }
                    // virtio-drivers gave a token we hold a buffer under already: we cannot
                    // track what the device owns any more.
                    _ => {
                        self.rx.repost_len -= 1;
                        self.health.fail("receive token reused", usize::from(token));
                    }
                },
                // Queue full (cannot happen: Q buffers for Q descriptors): try again later.
                Err(_) => break,
            }
        }
        if notify {
            self.transport.notify(QUEUE_RECEIVE);
        }
    }

    /// Takes back transmit buffers the device is done with; returns how many.
    fn reclaim_transmit_buffers(&mut self) -> usize {
        let mut n = 0;
        // Bounded: at most Q chains are in flight; each turn pops one or stops.
        for _ in 0..Q {
            if self.health.stopped {
                break;
            }
            let Some(token) = peek_used(&self.txq) else {
                break;
            };
            let (b, len) = match self.tx.by_token.get(usize::from(token)) {
                Some(&(b, len)) if b != NONE => (b, len),
                _ => {
                    self.health
                        .fail("transmit used-ring id not in flight", usize::from(token));
                    break;
                }
            };
            // SAFETY: buffer `b` was sent under `token`; the device gave it back (the used ring
            // says so), and we only read the slice's address and length to pass it back.
            let Some(buf) = (unsafe { self.tx.get(b) }) else {
                self.health
                    .fail("transmit buffer index out of range", usize::from(b));
                break;
            };
            let frame = &buf[..len as usize];
            // SAFETY: `frame` is the slice added under `token`.
            match unsafe { self.txq.pop_used(token, &[frame], &mut []) } {
                Ok(_) => {
                    self.tx.by_token[usize::from(token)] = (NONE, 0);
                    self.tx.free(b);
                    n += 1;
                }
                // The device rewrote the used ring between our peek and the pop: not popped.
                Err(_) => {
                    self.health.stats.device_errors += 1;
                    break;
                }
            }
        }
        n
    }

    /// Pops the next used receive buffer: (buffer, length the device says it wrote). `None`
    /// when there is none, or on an error (counted; the device is stopped if it cannot go on).
    fn pop_receive_buffer(&mut self) -> Option<(u16, usize)> {
        if self.health.stopped {
            return None;
        }
        let token = peek_used(&self.rxq)?;
        let b = match self.rx.by_token.get(usize::from(token)) {
            Some(&b) if b != NONE => b,
            _ => {
                self.health
                    .fail("receive used-ring id not in flight", usize::from(token));
                return None;
            }
        };
        // SAFETY: buffer `b` went under `token`, which the device gave back: it is done with it
        // (a device that is not is misbehaving, and only the frame's bytes suffer).
        let Some(buf) = (unsafe { self.rx.mem.get_mut(b) }) else {
            self.health
                .fail("receive buffer index out of range", usize::from(b));
            return None;
        };
        // SAFETY: `buf` is the buffer added under `token`.
        match unsafe { self.rxq.pop_used(token, &[], &mut [buf]) } {
            Ok(len) => {
                self.rx.by_token[usize::from(token)] = NONE;
                Some((b, len as usize))
            }
            // The device rewrote the used ring between our peek and the pop: not popped.
            Err(_) => {
                self.health.stats.device_errors += 1;
                None
            }
        }
    }

    /// A bad frame: counted, its buffer posted again.
    fn refuse(&mut self, b: u16, device_error: bool) {
        self.health.stats.device_errors += u64::from(device_error);
        self.health.stats.rx_dropped += 1;
        self.rx.queue_repost(b);
    }
}

/// Reads a received frame's header (12 bytes, `num_buffers` used only with `MRG_RXBUF`):
/// (number of buffers, checksum state, whether its flags were bad), or `None` for a GSO type
/// that was not negotiated.
fn parse_header(f: u64, hdr: &[u8; 12]) -> Option<(usize, RxChecksum, bool)> {
    {
        let (flags, gso) = (hdr[0], hdr[1]);
        let gso_ok = gso == GSO_NONE || (gso == GSO_TCPV4 && f & F_GUEST_TSO4 != 0);
        if !gso_ok {
            return None;
        }
        let checksum = if f & F_GUEST_CSUM == 0 || flags & !(HDR_NEEDS_CSUM | HDR_DATA_VALID) != 0 {
            // Flags not negotiated or unknown: the stack checks the frame.
            RxChecksum::Unknown
        } else if flags & HDR_NEEDS_CSUM != 0 {
            RxChecksum::Blank
        } else if flags & HDR_DATA_VALID != 0 {
            RxChecksum::Verified
        } else {
            RxChecksum::Unknown
        };
        let bad_flags = flags != 0 && checksum == RxChecksum::Unknown;
        let buffers = if f & F_MRG_RXBUF != 0 {
            usize::from(u16::from_le_bytes([hdr[10], hdr[11]]))
        } else {
            1
        };
        Some((buffers, checksum, bad_flags))
    }
}

impl<H: Hal, T: Transport, const Q: usize> VirtioNet<H, T, Q> {
    /// Pops the next good received frame. Bad ones are counted and their buffers posted again.
    fn pop_received(&mut self) -> Option<Held> {
        let hdr_len = self.rx.hdr_len;
        let max = self.caps.max_rx_frame;
        for _ in 0..Q {
            let (b, used) = self.pop_receive_buffer()?;
            // SAFETY: `b` was just popped: the device is done with it, nothing else holds it.
            let Some(buf) = (unsafe { self.rx.mem.get(b) }) else {
                self.refuse(b, true);
                continue;
            };
            if used < hdr_len || used > buf.len() {
                // Shorter than the header, or longer than the buffer the device was given.
                self.refuse(b, true);
                self.post_receive_buffers();
                continue;
            }
            let mut header = [0u8; 12];
            header[..hdr_len].copy_from_slice(&buf[..hdr_len]);
            let Some((buffers, checksum, bad_flags)) = parse_header(self.tx.features, &header)
            else {
                self.refuse(b, true);
                self.post_receive_buffers();
                continue;
            };
            self.health.stats.device_errors += u64::from(bad_flags);
            if buffers == 1 {
                let len = used - hdr_len;
                if (ETHERNET_HEADER..=max).contains(&len) {
                    return Some(Held {
                        buffer: b,
                        len,
                        checksum,
                    });
                }
                self.refuse(b, false);
                self.post_receive_buffers();
                continue;
            }
            // Spread over several buffers (`MRG_RXBUF`), although the largest frame fits one
            // (or a count past the buffers there are): the device's error. The frame is dropped
            // with the buffers it says it took that are back already; any later ones come as
            // frames of their own, whose headers are payload bytes, checked as any header.
            self.refuse(b, true);
            for _ in 1..buffers.min(self.rx.count) {
                let Some((b, _)) = self.pop_receive_buffer() else {
                    break;
                };
                self.rx.queue_repost(b);
            }
            self.post_receive_buffers();
        }
        None
    }
}

/// A received frame, lent in place; its buffer goes back to the
/// device at the driver's next call.
pub struct VirtioRx<'a, H: Hal, const Q: usize> {
    rx: &'a mut RxSide<H, Q>,
    held: Held,
}

impl<H: Hal, const Q: usize> core::fmt::Debug for VirtioRx<'_, H, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VirtioRx({:?})", self.held)
    }
}

impl<H: Hal, const Q: usize> RxToken for VirtioRx<'_, H, Q> {
    fn consume<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        let (hdr, Held { buffer, len, .. }) = (self.rx.hdr_len, self.held);
        // SAFETY: the buffer is held (popped, not posted): only this token reaches it.
        let frame = unsafe { self.rx.mem.get(buffer) }
            .and_then(|buf| buf.get(hdr..hdr + len))
            .unwrap_or(&[]);
        let len = frame.len();
        let r = f(frame);
        self.rx.frames += 1;
        self.rx.bytes += len as u64;
        self.rx.held = None;
        self.rx.queue_repost(buffer);
        r
    }

    fn checksum(&self) -> RxChecksum {
        self.held.checksum
    }
}

/// A transmit buffer; the frame goes to the device when consumed.
pub struct VirtioTx<'a, H: Hal, T: Transport, const Q: usize> {
    transport: &'a mut T,
    txq: &'a mut VirtQueue<H, Q>,
    tx: &'a mut TxSide<H, Q>,
    health: &'a mut Health,
}

impl<H: Hal, T: Transport, const Q: usize> core::fmt::Debug for VirtioTx<'_, H, T, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("VirtioTx")
    }
}

/// Writes the virtio-net header for `offload` into `hdr` (zeroed), if the features allow it
/// and it fits a frame of `len` bytes; `false` otherwise.
fn write_header(hdr: &mut [u8], offload: TxOffload, len: usize, features: u64) -> bool {
    if let Some(c) = offload.checksum {
        let end = usize::from(c.start) + usize::from(c.offset) + 2;
        if features & F_CSUM == 0 || end > len {
            return false;
        }
        hdr[0] = HDR_NEEDS_CSUM;
        hdr[6..8].copy_from_slice(&c.start.to_le_bytes());
        hdr[8..10].copy_from_slice(&c.offset.to_le_bytes());
    }
    if let Some(t) = offload.tso {
        let ok = features & F_HOST_TSO4 != 0
            && offload.checksum.is_some()
            && t.mss > 0
            && usize::from(t.header_len) < len;
        if !ok {
            return false;
        }
        hdr[1] = GSO_TCPV4;
        hdr[2..4].copy_from_slice(&t.header_len.to_le_bytes());
        hdr[4..6].copy_from_slice(&t.mss.to_le_bytes());
    }
    true
}

impl<H: Hal, T: Transport, const Q: usize> TxToken for VirtioTx<'_, H, T, Q> {
    fn consume<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.consume_offload(len, |frame| (f(frame), TxOffload::default()))
    }

    fn consume_offload<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> (R, TxOffload)) -> R {
        let mut f = Some(f);
        let mut result = None;
        self.send(len, &mut |frame| match f.take() {
            Some(f) => {
                let (r, offload) = f(frame);
                result = Some(r);
                offload
            }
            None => TxOffload::default(),
        });
        // `send` runs the writer once on every path.
        result.expect("the transmit token ran the writer")
    }
}

impl<H: Hal, T: Transport, const Q: usize> VirtioTx<'_, H, T, Q> {
    /// [`TxToken::consume_offload`]'s work, not generic over the writer: each caller's closure
    /// would otherwise copy all of it (0.5 KB of httpd [net]).
    fn send(self, len: usize, f: &mut dyn FnMut(&mut [u8]) -> TxOffload) {
        let hdr = self.tx.hdr_len;
        let max = if self.tx.big.is_some() {
            MAX_TSO_FRAME
        } else {
            self.tx.max_frame
        };
        if len == 0 || len > max || !self.tx.has_room(len) || self.health.stopped {
            self.health.stats.tx_dropped += 1;
            f(&mut alloc::vec![0; len]);
            return;
        }
        let b = if hdr + len <= BUFFER_LEN {
            self.tx.free_len -= 1;
            self.tx.free[self.tx.free_len]
        } else {
            self.tx.free_big_len -= 1;
            self.tx.free_big[self.tx.free_big_len]
        };
        // SAFETY: `b` was on a free list: not in flight, and only this token reaches it.
        let Some(buf) = (unsafe { self.tx.get_mut(b) }) else {
            self.health
                .fail("transmit buffer index out of range", usize::from(b));
            f(&mut alloc::vec![0; len]);
            return;
        };
        // `hdr + len` fits: checked against the buffer's size above.
        let offload = f(&mut buf[hdr..hdr + len]);
        self.submit(b, len, offload);
    }

    /// Sends the frame of `len` bytes written in buffer `b` (taken from its free list) behind
    /// the header, with `offload`; a bad length or offload gives the buffer back, counted.
    fn submit(self, b: u16, len: usize, offload: TxOffload) {
        let hdr = self.tx.hdr_len;
        let features = self.tx.features;
        let mtu_frame = self.tx.max_frame;
        let end = hdr.checked_add(len).filter(|_| len <= MAX_TSO_FRAME);
        // SAFETY: `b` was taken from a free list (or lent and given back) and is not in
        // flight: only this token reaches it.
        let Some(frame) = (unsafe { self.tx.get_mut(b) }).and_then(|buf| buf.get_mut(..end?))
        else {
            self.health.stats.tx_dropped += 1;
            self.tx.free(b);
            return;
        };
        frame[..hdr].fill(0);
        // A frame over the MTU is a TSO frame, or nothing.
        let fits = len != 0 && (len <= mtu_frame || offload.tso.is_some());
        if !fits || !write_header(&mut frame[..hdr], offload, len, features) {
            self.health.stats.tx_dropped += 1;
            self.tx.free(b);
            return;
        }
        let frame = &frame[..];
        // SAFETY: the buffer is only reached again through `by_token` once the device gives the
        // token back, and it lives as long as the queue.
        match unsafe { self.txq.add(&[frame], &mut []) } {
            Ok(token) => {
                match self.tx.by_token.get_mut(usize::from(token)) {
                    Some(slot) if slot.0 == NONE => {
                        *slot = (b, (hdr + len) as u32);
                        self.health.stats.tx_frames += 1;
                        self.health.stats.tx_bytes += len as u64;
                    }
                    _ => self
                        .health
                        .fail("transmit token reused", usize::from(token)),
                }
                if self.txq.should_notify() {
                    self.transport.notify(QUEUE_TRANSMIT);
                }
            }
            Err(_) => {
                self.health.stats.tx_dropped += 1;
                self.tx.free(b);
            }
        }
    }
}

impl<H: Hal, T: Transport, const Q: usize> VirtioNet<H, T, Q> {
    fn tx_token(&mut self) -> VirtioTx<'_, H, T, Q> {
        VirtioTx {
            transport: &mut self.transport,
            txq: &mut self.txq,
            tx: &mut self.tx,
            health: &mut self.health,
        }
    }
}

impl<H: Hal, T: Transport, const Q: usize> NetDevice for VirtioNet<H, T, Q> {
    type RxToken<'a>
        = VirtioRx<'a, H, Q>
    where
        Self: 'a;
    type TxToken<'a>
        = VirtioTx<'a, H, T, Q>
    where
        Self: 'a;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn receive(&mut self) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.health.stopped {
            return None;
        }
        self.post_receive_buffers();
        if self.tx.free_len == 0 {
            self.reclaim_transmit_buffers();
        }
        if self.tx.free_len == 0 {
            return None;
        }
        if self.rx.held.is_none() {
            self.rx.held = self.pop_received();
        }
        let held = self.rx.held?;
        Some((
            VirtioRx {
                rx: &mut self.rx,
                held,
            },
            VirtioTx {
                transport: &mut self.transport,
                txq: &mut self.txq,
                tx: &mut self.tx,
                health: &mut self.health,
            },
        ))
    }

    fn transmit(&mut self) -> Option<Self::TxToken<'_>> {
        self.transmit_sized(ETHERNET_HEADER)
    }

    fn transmit_sized(&mut self, len: usize) -> Option<Self::TxToken<'_>> {
        if self.health.stopped {
            return None;
        }
        // A length no buffer takes gets a token that drops it (netdev's contract).
        let len = if len > MAX_TSO_FRAME || (self.tx.big.is_none() && len > self.tx.max_frame) {
            ETHERNET_HEADER
        } else {
            len
        };
        if !self.tx.has_room(len) {
            self.reclaim_transmit_buffers();
        }
        if !self.tx.has_room(len) {
            return None;
        }
        Some(self.tx_token())
    }

    /// Lends a TSO buffer (with `HOST_TSO4`), for a frame the stack builds in several steps.
    fn hold_transmit(&mut self, len: usize) -> Option<HeldTx> {
        if self.health.stopped || self.tx.big.is_none() || len > MAX_TSO_FRAME {
            return None;
        }
        if self.tx.free_big_len == 0 {
            self.reclaim_transmit_buffers();
        }
        if self.tx.free_big_len == 0 {
            return None;
        }
        self.tx.free_big_len -= 1;
        let b = self.tx.free_big[self.tx.free_big_len];
        let bit = self.tx.held_bit(b)?;
        self.tx.held |= bit;
        Some(HeldTx(b))
    }

    fn held_buffer(&mut self, held: &HeldTx) -> &mut [u8] {
        let hdr = self.tx.hdr_len;
        if !self.tx.is_held(held.0, false) {
            return &mut [];
        }
        // SAFETY: a lent buffer is neither free nor in flight, and is only reached through
        // its handle, which the stack borrows for as long as the slice lives.
        unsafe { self.tx.get_mut(held.0) }
            .and_then(|buf| buf.get_mut(hdr..))
            .unwrap_or(&mut [])
    }

    fn send_held(&mut self, held: HeldTx, len: usize, offload: TxOffload) {
        if !self.tx.is_held(held.0, true) {
            self.health.stats.tx_dropped += 1;
            return;
        }
        if self.health.stopped {
            self.health.stats.tx_dropped += 1;
            self.tx.free(held.0);
            return;
        }
        self.tx_token().submit(held.0, len, offload);
    }

    fn release_held(&mut self, held: HeldTx) {
        if self.tx.is_held(held.0, true) {
            self.tx.free(held.0);
        }
    }

    fn poll_interrupt(&mut self) -> bool {
        // Acknowledged even when stopped, so that a level-triggered line goes quiet.
        let _ = self.transport.ack_interrupt();
        if self.health.stopped {
            return false;
        }
        let freed = self.reclaim_transmit_buffers();
        self.post_receive_buffers();
        freed > 0 || self.rx.held.is_some() || peek_used(&self.rxq).is_some()
    }

    fn stats(&self) -> DeviceStats {
        DeviceStats {
            rx_frames: self.rx.frames,
            rx_bytes: self.rx.bytes,
            ..self.health.stats
        }
    }
}
