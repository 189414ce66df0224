//! virtio-net: a [`netdev::NetDevice`] over the `virtio-drivers` crate (0.13), on any of its
//! transports (virtio-mmio on `microvm` and Firecracker, PCI on `q35`).
//!
//! # Why virtio-drivers, and what it leaves to us
//! `virtio-drivers` (rcore-os) is the no_std virtio stack several Rust kernels share: transports
//! (MMIO legacy and modern, PCI modern), split virtqueues with event-index notification
//! suppression, and feature negotiation. We use its raw network driver,
//! [`VirtIONetRaw`](virtio_drivers::device::net::VirtIONetRaw), which posts and completes buffers
//! we own, and keep the buffer management ourselves: its `VirtIONet` indexes its buffer table
//! with the id the device wrote (`rx_buffers[token as usize]`), which panics on an id out of
//! range, and it allocates each buffer on the heap.
//!
//! What 0.13 checks of what the device writes (`queue.rs`): `pop_used` refuses a used-ring id
//! that is not the token the caller passes (`WrongToken`, the entry is left in place); the used
//! ring's slot index is masked to the ring's size; the descriptors it follows when recycling are
//! its own shadow copy, never the device-visible table. What it does not check, and this driver
//! does (each refusal is counted in [`DeviceStats::device_errors`], never a panic):
//! - that a used-ring id is a chain the driver has in flight (an id not in flight cannot be
//!   popped at all: the queue is wedged, so the driver **stops** the device: every call returns
//!   nothing from then on, see [`VirtioNet::is_stopped`]);
//! - that a used length fits the buffer posted (longer: the frame is dropped, the buffer posted
//!   again, the driver goes on); shorter than the virtio-net header (`receive_complete` says
//!   `IoError` after popping: dropped and posted again);
//! - that a frame is a plausible Ethernet frame (shorter than 14 bytes or longer than the MTU
//!   allows: dropped, counted in `rx_dropped`).
//!
//! Left to virtio-drivers, and so not guarded here: `read_consistent` retries for as long as
//! the device changes its configuration generation (a hostile device can hang the probe), and
//! the PCI transport's `notify` panics on a notification offset outside the notify region.
//! Both happen only with a device that is broken from the start, at probe or on the first
//! notification.
//!
//! # Features and header
//! virtio-drivers 0.13 offers `MAC`, `STATUS`, `RING_EVENT_IDX`, `RING_INDIRECT_DESC` (used only
//! with its `alloc` feature, which we leave off: every chain here is one direct descriptor) and
//! `VERSION_1`, and nothing else: no `MTU`, no `CSUM`/`GUEST_CSUM`, no `MRG_RXBUF`, no GSO. So:
//! - the MTU is 1500 (`VIRTIO_NET_F_MTU` is never negotiated, so the device's `mtu` field does
//!   not apply), frames are at most 1514 bytes;
//! - no checksum offload: the stack computes and verifies every checksum
//!   ([`netdev::Checksums::default`]);
//! - the header in front of every frame is 12 bytes (`virtio_net_hdr` with `num_buffers`) on a
//!   modern device (`VERSION_1`: PCI, virtio-mmio version 2), 10 bytes on a legacy one
//!   (virtio-mmio version 1, QEMU's default for `microvm`), as virtio-drivers reports it through
//!   `fill_buffer_header`; transmitted headers are all zeros (no offload, no GSO).
//!
//! # Queues and buffers
//! Both queues have `Q` descriptors ([`QUEUE_SIZE`] = 64 unless a type says otherwise), and the
//! driver owns `Q` receive and `Q` transmit buffers of [`BUFFER_LEN`] (2 KiB: header and a
//! 1514-byte frame fit, two to a page) in two DMA regions from the [`Hal`] (`2 × Q × 2 KiB` =
//! 256 KiB at Q = 64). Every receive buffer is kept posted, except the one frame lent to the
//! stack. Each chain is one descriptor, so `Q` buffers fill a queue exactly.
//!
//! Why 64, for every profile for now: 64 full frames are 96 KB, more than one 64 KiB TCP window
//! (the default `net_tcp_buffer`) in flight in each direction, so the ring is not what limits a
//! stream, while the memory stays a fraction of the smallest guests' (32 MiB). QEMU's
//! virtio-net offers 256 per queue, so a profile setting could raise it later; virtio-drivers
//! fixes the size at compile time (a const generic), which is why it is one here too.
//!
//! # Zero copy
//! A received frame is lent to the stack in place ([`VirtioRx`] borrows the DMA buffer), and its
//! buffer goes back to the device at the driver's next call; a frame to send is written by the
//! stack straight into a transmit buffer behind the header ([`VirtioTx`]).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use core::marker::PhantomData;
use core::ptr::NonNull;
use netdev::{Capabilities, DeviceStats, ETHERNET_HEADER, MacAddress, NetDevice, RxToken, TxToken};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

#[cfg(test)]
mod tests;

/// Descriptors per queue, and receive and transmit buffers each (see the crate docs).
pub const QUEUE_SIZE: usize = 64;

/// Bytes of one buffer: a virtio-net header and a frame (at least virtio-drivers' minimum of
/// 1526 for receive buffers).
pub const BUFFER_LEN: usize = 2048;

/// No buffer (in the token tables).
const NONE: u16 = u16::MAX;

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
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            // The type's number, not its `Debug` name: that table of every virtio device's
            // name would be in the image for this one message.
            InitError::NotNetwork(t) => {
                write!(f, "not a network device (virtio device type {})", *t as u8)
            }
            InitError::Virtio(e) => write!(f, "virtio: {}", virtio_error(*e)),
            InitError::NoDmaMemory => f.write_str("no DMA memory for the buffers"),
            InitError::Posting => f.write_str("the receive queue refused its buffers"),
        }
    }
}

/// virtio-drivers' words for its errors, but for its socket device's (which a network device
/// never returns): its `Display` would bring those in too.
fn virtio_error(e: virtio_drivers::Error) -> &'static str {
    use virtio_drivers::Error as E;
    match e {
        E::QueueFull => "Virtqueue is full",
        E::NotReady => "Device not ready",
        E::WrongToken => "Device used a different descriptor chain to the one we were expecting",
        E::AlreadyUsed => "Virtqueue is already in use",
        E::InvalidParam => "Invalid parameter",
        E::DmaError => "Failed to allocate DMA memory",
        E::IoError => "I/O error",
        E::Unsupported => "Request not supported by device",
        E::ConfigSpaceTooSmall => "Config space advertised by the device is smaller than expected",
        E::ConfigSpaceMissing => {
            "The device doesn't have any config space, but the driver expects some"
        }
        E::SocketDeviceError(_) => "Error from the socket device",
    }
}

/// Contiguous DMA pages from the [`Hal`], holding `count` buffers of [`BUFFER_LEN`].
struct DmaBuffers<H: Hal> {
    paddr: PhysAddr,
    vaddr: NonNull<u8>,
    pages: usize,
    count: usize,
    _hal: PhantomData<H>,
}

// SAFETY: the region is owned exclusively by its `DmaBuffers` (like a `Box<[u8]>`); moving it to
// another thread moves the ownership.
unsafe impl<H: Hal> Send for DmaBuffers<H> {}

impl<H: Hal> DmaBuffers<H> {
    fn new(count: usize, direction: BufferDirection) -> Result<Self, InitError> {
        let pages = (count * BUFFER_LEN).div_ceil(PAGE_SIZE);
        let (paddr, vaddr) = H::dma_alloc(pages, direction);
        if paddr == 0 {
            return Err(InitError::NoDmaMemory);
        }
        Ok(DmaBuffers {
            paddr,
            vaddr,
            pages,
            count,
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
        // SAFETY: `i * BUFFER_LEN + BUFFER_LEN` bytes are within the region (`count` buffers
        // fit in `pages`), which `dma_alloc` gave us, zeroed, aligned and unaliased; the caller
        // promises nothing else (the device included) touches this buffer meanwhile.
        Some(unsafe {
            core::slice::from_raw_parts_mut(self.vaddr.as_ptr().add(i * BUFFER_LEN), BUFFER_LEN)
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
            core::slice::from_raw_parts(self.vaddr.as_ptr().add(i * BUFFER_LEN), BUFFER_LEN)
        })
    }
}

impl<H: Hal> Drop for DmaBuffers<H> {
    fn drop(&mut self) {
        // SAFETY: the region came from `dma_alloc` with these values and is freed once; the
        // queues were unset before (field order of `VirtioNet`: `raw` drops first).
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

/// The receive side: buffers and which token each posted one went under.
struct RxSide<H: Hal, const Q: usize> {
    mem: DmaBuffers<H>,
    /// Buffer posted under each token (the head descriptor's index), or [`NONE`].
    by_token: [u16; Q],
    /// The frame popped and lent to the stack, not yet consumed: (buffer, frame length).
    held: Option<(u16, usize)>,
    /// Buffers consumed (or refused), to post again.
    repost: [u16; Q],
    repost_len: usize,
    hdr_len: usize,
    /// Frames and bytes handed to the stack (counted here: the receive token cannot reach
    /// [`Health`], which the transmit token lent with it holds).
    frames: u64,
    bytes: u64,
}

/// The transmit side.
struct TxSide<H: Hal, const Q: usize> {
    mem: DmaBuffers<H>,
    /// Buffer and length (header included) sent under each token, or ([`NONE`], 0).
    by_token: [(u16, u16); Q],
    /// Free buffers (a stack).
    free: [u16; Q],
    free_len: usize,
    hdr_len: usize,
    max_frame: usize,
}

/// A virtio-net device: `Q` receive buffers kept posted and `Q` transmit buffers.
pub struct VirtioNet<H: Hal, T: Transport, const Q: usize = QUEUE_SIZE> {
    // Dropped first: unsets the queues before the buffers go back.
    raw: VirtIONetRaw<H, T, Q>,
    rx: RxSide<H, Q>,
    tx: TxSide<H, Q>,
    health: Health,
    caps: Capabilities,
}

impl<H: Hal, T: Transport, const Q: usize> core::fmt::Debug for VirtioNet<H, T, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("caps", &self.caps)
            .field("header", &self.rx.hdr_len)
            .field("stats", &self.stats())
            .field("stopped", &self.health.stopped)
            .finish()
    }
}

impl<H: Hal, T: Transport, const Q: usize> VirtioNet<H, T, Q> {
    /// Negotiates with the device behind `transport`, sets up both queues and posts every
    /// receive buffer.
    pub fn new(transport: T) -> Result<Self, InitError> {
        let device_type = transport.device_type();
        if device_type != DeviceType::Network {
            return Err(InitError::NotNetwork(device_type));
        }
        const { assert!(Q >= 2 && Q < NONE as usize, "queue size") };
        let rx_mem = DmaBuffers::new(Q, BufferDirection::DeviceToDriver)?;
        let tx_mem = DmaBuffers::new(Q, BufferDirection::DriverToDevice)?;
        let raw = VirtIONetRaw::<H, T, Q>::new(transport).map_err(InitError::Virtio)?;
        let mut header = [0u8; 16];
        let hdr_len = raw
            .fill_buffer_header(&mut header)
            .map_err(InitError::Virtio)?;
        let mut caps = Capabilities::ethernet(MacAddress(raw.mac_address()));
        caps.max_burst = Some(Q);
        let mut free = [0u16; Q];
        for (i, f) in free.iter_mut().enumerate() {
            *f = i as u16;
        }
        let mut dev = VirtioNet {
            raw,
            rx: RxSide {
                mem: rx_mem,
                by_token: [NONE; Q],
                held: None,
                repost: [0; Q],
                repost_len: 0,
                hdr_len,
                frames: 0,
                bytes: 0,
            },
            tx: TxSide {
                mem: tx_mem,
                by_token: [(NONE, 0); Q],
                free,
                free_len: Q,
                hdr_len,
                max_frame: caps.max_frame(),
            },
            health: Health::default(),
            caps,
        };
        for i in 0..Q {
            dev.rx.repost[i] = i as u16;
        }
        dev.rx.repost_len = Q;
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

    /// The virtio-net header's size in bytes (12 modern, 10 legacy).
    pub fn header_len(&self) -> usize {
        self.rx.hdr_len
    }

    /// Asks the device for used-buffer interrupts (the default after [`new`](Self::new)).
    pub fn enable_interrupts(&mut self) {
        self.raw.enable_interrupts();
    }

    /// Asks the device not to interrupt (a hint: with event indexes it is ignored).
    pub fn disable_interrupts(&mut self) {
        self.raw.disable_interrupts();
    }

    /// Receive buffers posted to the device now.
    pub fn posted_receive_buffers(&self) -> usize {
        self.rx.by_token.iter().filter(|&&b| b != NONE).count()
    }

    /// Transmit buffers free now.
    pub fn free_transmit_buffers(&self) -> usize {
        self.tx.free_len
    }

    /// Posts the buffers waiting in the repost list.
    fn post_receive_buffers(&mut self) {
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
            match unsafe { self.raw.receive_begin(buf) } {
                Ok(token) => match self.rx.by_token.get_mut(usize::from(token)) {
                    Some(slot) if *slot == NONE => {
                        *slot = b;
                        self.rx.repost_len -= 1;
                    }
                    // virtio-drivers gave a token we hold a buffer under already: we cannot
                    // track what the device owns any more.
                    _ => {
                        self.rx.repost_len -= 1;
                        self.health.fail("receive token reused", usize::from(token));
                    }
                },
                // Queue full (cannot happen: Q buffers for Q descriptors): try again later.
                Err(_) => return,
            }
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
            let Some(token) = self.raw.poll_transmit() else {
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
            let Some(buf) = (unsafe { self.tx.mem.get(b) }) else {
                self.health
                    .fail("transmit buffer index out of range", usize::from(b));
                break;
            };
            let frame = &buf[..usize::from(len)];
            // SAFETY: `frame` is the slice passed to `transmit_begin` for `token`.
            match unsafe { self.raw.transmit_complete(token, frame) } {
                Ok(_) => {
                    self.tx.by_token[usize::from(token)] = (NONE, 0);
                    self.tx.free[self.tx.free_len] = b;
                    self.tx.free_len += 1;
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

    /// Pops the next good received frame: (buffer, frame length). Bad ones are counted and
    /// their buffers posted again.
    fn pop_received(&mut self) -> Option<(u16, usize)> {
        for _ in 0..Q {
            if self.health.stopped {
                return None;
            }
            let token = self.raw.poll_receive()?;
            let b = match self.rx.by_token.get(usize::from(token)) {
                Some(&b) if b != NONE => b,
                _ => {
                    self.health
                        .fail("receive used-ring id not in flight", usize::from(token));
                    return None;
                }
            };
            // SAFETY: buffer `b` went under `token`, which the device gave back: it is done
            // with it (a device that is not is misbehaving, and only the frame's bytes suffer).
            let Some(buf) = (unsafe { self.rx.mem.get_mut(b) }) else {
                self.health
                    .fail("receive buffer index out of range", usize::from(b));
                return None;
            };
            // SAFETY: `buf` is the buffer passed to `receive_begin` for `token`.
            let result = unsafe { self.raw.receive_complete(token, buf) };
            match result {
                Ok((hdr, len)) => {
                    self.rx.by_token[usize::from(token)] = NONE;
                    if hdr.checked_add(len).is_none_or(|total| total > BUFFER_LEN) {
                        // Longer than the buffer the device was given.
                        self.health.stats.device_errors += 1;
                        self.health.stats.rx_dropped += 1;
                        self.queue_repost(b);
                    } else if !(ETHERNET_HEADER..=self.caps.max_frame()).contains(&len) {
                        self.health.stats.rx_dropped += 1;
                        self.queue_repost(b);
                    } else {
                        return Some((b, len));
                    }
                }
                // Popped, but shorter than the header.
                Err(virtio_drivers::Error::IoError) => {
                    self.rx.by_token[usize::from(token)] = NONE;
                    self.health.stats.device_errors += 1;
                    self.health.stats.rx_dropped += 1;
                    self.queue_repost(b);
                }
                // The device rewrote the used ring between our peek and the pop: not popped.
                Err(_) => {
                    self.health.stats.device_errors += 1;
                    return None;
                }
            }
            self.post_receive_buffers();
        }
        None
    }

    fn queue_repost(&mut self, b: u16) {
        // Never more than Q buffers exist, so the list has room.
        if let Some(slot) = self.rx.repost.get_mut(self.rx.repost_len) {
            *slot = b;
            self.rx.repost_len += 1;
        }
    }
}

/// A received frame, lent in place; its buffer goes back to the device at the driver's next
/// call.
pub struct VirtioRx<'a, H: Hal, const Q: usize> {
    rx: &'a mut RxSide<H, Q>,
    buffer: u16,
    len: usize,
}

impl<H: Hal, const Q: usize> core::fmt::Debug for VirtioRx<'_, H, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VirtioRx({} bytes)", self.len)
    }
}

impl<H: Hal, const Q: usize> RxToken for VirtioRx<'_, H, Q> {
    fn consume<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        let hdr = self.rx.hdr_len;
        // SAFETY: the buffer is held (popped, not posted): only this token reaches it.
        let frame = unsafe { self.rx.mem.get(self.buffer) }
            .and_then(|buf| buf.get(hdr..hdr + self.len))
            .unwrap_or(&[]);
        let r = f(frame);
        self.rx.frames += 1;
        self.rx.bytes += self.len as u64;
        self.rx.held = None;
        if let Some(slot) = self.rx.repost.get_mut(self.rx.repost_len) {
            *slot = self.buffer;
            self.rx.repost_len += 1;
        }
        r
    }
}

/// A transmit buffer; the frame goes to the device when consumed.
pub struct VirtioTx<'a, H: Hal, T: Transport, const Q: usize> {
    raw: &'a mut VirtIONetRaw<H, T, Q>,
    tx: &'a mut TxSide<H, Q>,
    health: &'a mut Health,
}

impl<H: Hal, T: Transport, const Q: usize> core::fmt::Debug for VirtioTx<'_, H, T, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("VirtioTx")
    }
}

impl<H: Hal, T: Transport, const Q: usize> TxToken for VirtioTx<'_, H, T, Q> {
    fn consume<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let hdr = self.tx.hdr_len;
        if len == 0 || len > self.tx.max_frame || self.tx.free_len == 0 || self.health.stopped {
            self.health.stats.tx_dropped += 1;
            return f(&mut alloc::vec![0; len]);
        }
        self.tx.free_len -= 1;
        let b = self.tx.free[self.tx.free_len];
        // SAFETY: `b` was on the free list: not in flight, and only this token reaches it.
        let Some(buf) = (unsafe { self.tx.mem.get_mut(b) }) else {
            self.health
                .fail("transmit buffer index out of range", usize::from(b));
            return f(&mut alloc::vec![0; len]);
        };
        // `hdr + len` fits: `len <= max_frame` (1514) and `hdr <= 12`.
        let frame = &mut buf[..hdr + len];
        if self.raw.fill_buffer_header(frame).is_err() {
            frame[..hdr].fill(0);
        }
        let r = f(&mut frame[hdr..]);
        // SAFETY: the buffer is only reached again through `by_token` once the device gives the
        // token back, and it lives as long as the queue.
        match unsafe { self.raw.transmit_begin(frame) } {
            Ok(token) => match self.tx.by_token.get_mut(usize::from(token)) {
                Some(slot) if slot.0 == NONE => {
                    *slot = (b, (hdr + len) as u16);
                    self.health.stats.tx_frames += 1;
                    self.health.stats.tx_bytes += len as u64;
                }
                _ => self
                    .health
                    .fail("transmit token reused", usize::from(token)),
            },
            Err(_) => {
                self.health.stats.tx_dropped += 1;
                self.tx.free[self.tx.free_len] = b;
                self.tx.free_len += 1;
            }
        }
        r
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
        let (buffer, len) = self.rx.held?;
        Some((
            VirtioRx {
                rx: &mut self.rx,
                buffer,
                len,
            },
            VirtioTx {
                raw: &mut self.raw,
                tx: &mut self.tx,
                health: &mut self.health,
            },
        ))
    }

    fn transmit(&mut self) -> Option<Self::TxToken<'_>> {
        if self.health.stopped {
            return None;
        }
        if self.tx.free_len == 0 {
            self.reclaim_transmit_buffers();
        }
        if self.tx.free_len == 0 {
            return None;
        }
        Some(VirtioTx {
            raw: &mut self.raw,
            tx: &mut self.tx,
            health: &mut self.health,
        })
    }

    fn poll_interrupt(&mut self) -> bool {
        // Acknowledged even when stopped, so that a level-triggered line goes quiet.
        let _ = self.raw.ack_interrupt();
        if self.health.stopped {
            return false;
        }
        let freed = self.reclaim_transmit_buffers();
        self.post_receive_buffers();
        freed > 0 || self.rx.held.is_some() || self.raw.poll_receive().is_some()
    }

    fn stats(&self) -> DeviceStats {
        DeviceStats {
            rx_frames: self.rx.frames,
            rx_bytes: self.rx.bytes,
            ..self.health.stats
        }
    }
}
