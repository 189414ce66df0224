//! Xen netfront: the guest's side of a Xen virtual NIC (`vif`), as a [`netdev::NetDevice`].
//!
//! Two rings shared with the backend (Linux netback in dom0), each one granted page
//! ([`xen_services::sring`]), and one event channel for both:
//!
//! - **RX**: the driver posts receive buffers (one granted page each, `RX_BUFFERS` of them,
//!   granted once and reused); netback *copies* each packet into one (Linux netback receives only
//!   by copy: `request-rx-copy = 1`) and answers with the buffer's id, the packet's offset and
//!   length, and flags. A buffer goes back on the ring as soon as its frame was handed to the
//!   stack.
//! - **TX**: the driver copies a frame into one of `TX_BUFFERS` granted pages (read-only for the
//!   backend) and posts a request; netback answers with the id and a status once it sent it.
//!
//! What is negotiated, never assumed (keys read from the backend before use): `feature-rx-copy`
//! must be there (the driver refuses a backend without it); the driver asks for
//! `feature-rx-notify` (it notifies when it posts receive buffers) and leaves scatter-gather
//! and GSO off (it writes neither `feature-sg` nor `feature-gso-*`), so every frame is one
//! slot. Receive checksum offload stays on (netback's default): a frame marked
//! `NETRXF_csum_blank` (dom0's own traffic) or `NETRXF_data_validated` is given to the stack as
//! [`RxChecksum::Blank`] or [`RxChecksum::Verified`], so it is not refused for a checksum it
//! never had; anything else is checked by the stack. Transmit checksum offload too: a TCP or UDP
//! frame goes with `NETTXF_csum_blank | NETTXF_data_validated` and only the pseudo-header's sum in
//! its checksum field (what Linux's netfront sends; netback accepts it from every frontend), so
//! the guest never sums its payload.
//!
//! Notifications (event-channel sends, each a hypercall and, on a busy one-CPU host, a switch
//! to dom0) follow io/ring.h's event indices on both rings, and are batched: a transmitted
//! frame is queued when its token is consumed and the burst is published at the end of the
//! stack's poll ([`NetDevice::flush`]), with one notification if netback asked for one (its
//! `req_event`: it asks only once it caught up); receive buffers given back are published the
//! same way (netback asks only when it ran out). Transmit answers are reaped lazily (on every
//! poll, and when the buffers run out): the driver asks for an event on them only when no
//! buffer is free, and then at the answer for half of those in flight (as Linux's netfront
//! once did), so a bulk sender is not woken for every completion. The receive ring
//! asks for an event on its next answer after every poll (`RING_FINAL_CHECK_FOR_RESPONSES`).
//!
//! The backend is not trusted. Every field it writes is checked: ring indices (a response
//! count above the requests outstanding: [`sring`](xen_services::sring) refuses it, and the
//! device stops, since nothing it says can be placed any more), ids (one not outstanding: counted
//! and skipped), offsets and lengths (outside the buffer page, or above the largest frame:
//! dropped and counted), statuses and flags (a multi-slot frame that was never negotiated:
//! dropped, its extra slot skipped). Counted in [`DeviceStats::device_errors`], logged once; never
//! a panic or an access out of bounds.
//!
//! The XenBus handshake: the driver publishes its rings, writes `Initialised`, then
//! `Connected` (netback connects on the frontend's `Connected`, not on `Initialised`), and waits
//! for the backend's `Connected`. Once connected it watches the backend's state: a backend that
//! goes away (`xl network-detach`: its state leaves `Connected`) is seen at the next interrupt
//! poll (the platform polls on XenStore events too), the device stops (as [`NetFront::failed`]),
//! and the frontend writes `Closing` and `Closed` so that the detach finishes. Written by hand: no
//! published crate implements a Xen netfront for a `no_std` kernel.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(test)]
mod tests;

use alloc::string::ToString;
use alloc::vec::Vec;
use core::fmt::Write;

use netdev::{
    Capabilities, ChecksumOffload, Checksums, DeviceStats, MacAddress, NetDevice, RxChecksum,
    RxToken, TxOffload, TxToken,
};
use xen_services::frontend::{BACKEND_WAIT_NS, Frontend, FrontendError, FrontendHost};
use xen_services::grant::GrantRef;
use xen_services::mem::SharedMemory;
use xen_services::sring::{FrontRing, RingError};
use xen_services::xenbus::{Action, HandshakeError, XenbusState};

/// Receive buffers posted (one page each): the whole ring, as Linux's netfront posts, so that
/// netback has room for a burst as large as a sender's window (it drops what finds no room).
/// Never more than the ring's 256 slots: a buffer is on the ring whenever it is posted.
pub const RX_BUFFERS: usize = 256;
/// Transmit buffers (one page each; each in flight holds one of the ring's 256 slots): the
/// largest burst that goes to netback with one notification.
pub const TX_BUFFERS: usize = 128;
/// A page.
const PAGE: usize = 4096;
/// The MTU (netback's default; no `mtu` key is negotiated).
pub const MTU: usize = 1500;
/// The largest frame: the MTU and the Ethernet header.
pub const MAX_FRAME: usize = MTU + 14;

/// `netif_tx_request` is 12 bytes, `netif_tx_response` 4: the TX ring's entries are 12.
const TX_ENTRY: usize = 12;
/// `netif_rx_request` and `netif_rx_response` are both 8 bytes.
const RX_ENTRY: usize = 8;

// io/netif.h flags and statuses.
const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
const NETRXF_CSUM_BLANK: u16 = 1 << 1;
const NETRXF_MORE_DATA: u16 = 1 << 2;
const NETRXF_EXTRA_INFO: u16 = 1 << 3;
const NETTXF_CSUM_BLANK: u16 = 1 << 0;
const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
const NETIF_RSP_OKAY: i16 = 0;
const NETIF_RSP_NULL: i16 = 1;

/// Why the device could not be brought up.
pub type Error = FrontendError;

/// A page the driver owns and the backend was granted.
#[derive(Debug)]
struct Buffer<P> {
    page: P,
    gref: GrantRef,
}

/// The receive side.
#[derive(Debug)]
struct Rx<P> {
    ring: FrontRing<P>,
    bufs: Vec<Buffer<P>>,
    /// Whether each buffer is on the ring (the backend may write it).
    posted: Vec<bool>,
    /// The buffer posted at each ring slot (to recover one whose response slot the backend
    /// used for something else).
    at_slot: Vec<u16>,
    /// Requests written since the last publish.
    unpublished: bool,
    /// Where a frame is copied out of its page for the stack.
    scratch: Vec<u8>,
    frames: u64,
    bytes: u64,
    dropped: u64,
    errors: u64,
}

/// The transmit side.
#[derive(Debug)]
struct Tx<P> {
    ring: FrontRing<P>,
    bufs: Vec<Buffer<P>>,
    /// Buffers not on the ring.
    free: Vec<u16>,
    /// Whether each buffer is on the ring.
    in_flight: Vec<bool>,
    /// Requests written since the last publish (published, and the backend notified if it
    /// asked, once per burst: [`NetDevice::flush`]).
    unpublished: bool,
    scratch: Vec<u8>,
    frames: u64,
    bytes: u64,
    dropped: u64,
    errors: u64,
}

/// A Xen virtual NIC.
#[derive(Debug)]
pub struct NetFront<H: FrontendHost> {
    host: H,
    front: Frontend,
    port: u32,
    mac: MacAddress,
    rx: Rx<H::Page>,
    tx: Tx<H::Page>,
    /// The rings' own pages' grants.
    ring_refs: [GrantRef; 2],
    /// The backend broke the ring protocol: the device is stopped.
    failed: bool,
}

/// Parses `00:16:3e:00:00:02`.
pub fn parse_mac(text: &[u8]) -> Option<MacAddress> {
    let text = core::str::from_utf8(text).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddress(mac))
}

fn grant_page<H: FrontendHost>(
    host: &mut H,
    domid: u16,
    readonly: bool,
) -> Result<Buffer<H::Page>, Error> {
    let page = host.alloc_page().ok_or(FrontendError::NoMemory)?;
    match host.grant(domid, &page, readonly) {
        Ok(gref) => Ok(Buffer { page, gref }),
        Err(e) => {
            host.free_page(page);
            Err(FrontendError::Grant(e))
        }
    }
}

/// Ends the grants of `bufs` and gives their pages back (a page whose grant the backend still
/// holds is leaked, never reused).
fn release<H: FrontendHost>(host: &mut H, bufs: Vec<Buffer<H::Page>>) {
    for b in bufs {
        if host.end_grant(b.gref).is_ok() {
            host.free_page(b.page);
        } else {
            core::mem::forget(b.page);
        }
    }
}

impl<H: FrontendHost> NetFront<H> {
    /// Connects the vif at XenStore node `node` (`device/vif/0`): reads its MAC and backend,
    /// waits for the backend, grants the rings and buffers, publishes them, and waits until the
    /// backend is `Connected` (at most [`BACKEND_WAIT_NS`] for each step).
    pub fn connect(mut host: H, node: &str) -> Result<NetFront<H>, Error> {
        let mut front = Frontend::open(&mut host, node)?;
        let mut buf = [0u8; 32];
        let mac = parse_mac(front.own_key(&mut host, "mac", &mut buf)?)
            .ok_or(FrontendError::BadKey("mac"))?;
        match front.next_action(&mut host, BACKEND_WAIT_NS)? {
            Action::Publish => {}
            _ => {
                let state = front.backend_state(&mut host)?;
                let _ = front.set_state(&mut host, XenbusState::Closed);
                return Err(FrontendError::Handshake(HandshakeError::BackendLost(state)));
            }
        }
        if !front.backend_flag(&mut host, "feature-rx-copy")? {
            return Err(FrontendError::Missing("feature-rx-copy"));
        }
        let domid = front.backend_id;
        let mut rings = Vec::new();
        let mut bufs_rx = Vec::new();
        let mut bufs_tx = Vec::new();
        let built = (|| -> Result<u32, Error> {
            for _ in 0..2 {
                rings.push(grant_page(&mut host, domid, false)?);
            }
            for _ in 0..RX_BUFFERS {
                bufs_rx.push(grant_page(&mut host, domid, false)?);
            }
            for _ in 0..TX_BUFFERS {
                bufs_tx.push(grant_page(&mut host, domid, true)?);
            }
            host.alloc_event(domid).map_err(FrontendError::Event)
        })();
        let port = match built {
            Ok(port) => port,
            Err(e) => {
                release(&mut host, rings);
                release(&mut host, bufs_rx);
                release(&mut host, bufs_tx);
                return Err(e);
            }
        };
        let rx_ring = rings.pop().expect("two ring pages");
        let tx_ring = rings.pop().expect("two ring pages");
        let ring_refs = [tx_ring.gref, rx_ring.gref];
        let mut dev = NetFront {
            rx: Rx {
                ring: FrontRing::new(rx_ring.page, RX_ENTRY),
                posted: alloc::vec![false; bufs_rx.len()],
                at_slot: alloc::vec![u16::MAX; 256],
                bufs: bufs_rx,
                unpublished: false,
                scratch: alloc::vec![0; MAX_FRAME],
                frames: 0,
                bytes: 0,
                dropped: 0,
                errors: 0,
            },
            tx: Tx {
                ring: FrontRing::new(tx_ring.page, TX_ENTRY),
                free: (0..bufs_tx.len() as u16).rev().collect(),
                in_flight: alloc::vec![false; bufs_tx.len()],
                bufs: bufs_tx,
                unpublished: false,
                scratch: alloc::vec![0; MAX_FRAME],
                frames: 0,
                bytes: 0,
                dropped: 0,
                errors: 0,
            },
            host,
            front,
            port,
            mac,
            ring_refs,
            failed: false,
        };
        for id in 0..dev.rx.bufs.len() as u16 {
            dev.rx.post(id);
        }
        dev.rx.ring.publish();
        dev.rx.unpublished = false;
        match dev.finish_handshake() {
            Ok(()) => {
                dev.host.notify(dev.port);
                if let Err(e) = dev.front.watch_backend(&mut dev.host) {
                    log::warn!("netfront: {e}: a backend that goes away will not be seen");
                }
                Ok(dev)
            }
            Err(e) => {
                dev.close();
                Err(e)
            }
        }
    }

    /// Publishes the rings and the features, says Initialised then Connected, and waits for
    /// the backend's Connected.
    fn finish_handshake(&mut self) -> Result<(), Error> {
        self.publish_keys()?;
        let s = self.front.state();
        self.front.set_state(&mut self.host, s)?;
        // netback connects when the frontend says Connected.
        self.front
            .set_state(&mut self.host, XenbusState::Connected)?;
        match self.front.next_action(&mut self.host, BACKEND_WAIT_NS)? {
            Action::Connect => Ok(()),
            _ => Err(FrontendError::Handshake(HandshakeError::BackendLost(
                self.front.backend_state(&mut self.host)?,
            ))),
        }
    }

    /// Gives up a device that did not connect: says Closed, ends the grants and gives the pages
    /// back (a page whose grant the backend still holds is leaked, never reused).
    fn close(self) {
        let NetFront {
            mut host,
            front,
            rx,
            tx,
            ring_refs,
            ..
        } = self;
        let _ = front.set_state(&mut host, XenbusState::Closed);
        release(&mut host, rx.bufs);
        release(&mut host, tx.bufs);
        let pages = [tx.ring.into_memory(), rx.ring.into_memory()];
        let rings = ring_refs
            .into_iter()
            .zip(pages)
            .map(|(gref, page)| Buffer { page, gref })
            .collect();
        release(&mut host, rings);
    }

    fn publish_keys(&mut self) -> Result<(), Error> {
        let (f, h) = (&self.front, &mut self.host);
        f.write_key(h, "tx-ring-ref", &self.ring_refs[0].0.to_string())?;
        f.write_key(h, "rx-ring-ref", &self.ring_refs[1].0.to_string())?;
        f.write_key(h, "event-channel", &self.port.to_string())?;
        f.write_key(h, "request-rx-copy", "1")?;
        f.write_key(h, "feature-rx-notify", "1")?;
        Ok(())
    }

    /// The event channel the backend signals: the device's interrupt line.
    pub fn event_channel(&self) -> u32 {
        self.port
    }

    /// The backend's domain.
    pub fn backend_id(&self) -> u16 {
        self.front.backend_id
    }

    /// The platform the driver runs on (tests play the backend through it).
    pub fn host(&mut self) -> &mut H {
        &mut self.host
    }

    /// Whether the backend broke the ring protocol, or went away, and the device stopped.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The backend went away: says so (once), and stops the device.
    #[cold]
    #[inline(never)]
    fn backend_left(&mut self, state: XenbusState) {
        if !self.failed {
            log::error!(
                "netfront {}: the backend went away (XenBus state {}): the NIC is down",
                self.front.node.as_str(),
                state as u32
            );
        }
        self.failed = true;
    }

    /// Says the device is broken (once), and stops it.
    fn fail(&mut self, what: &str, e: RingError) {
        if !self.failed {
            log::error!("netfront: {what} ring: {e}: the device is stopped");
        }
        self.failed = true;
    }

    /// Publishes receive buffers put back since the last call, notifying the backend if it
    /// asked.
    fn flush_rx(&mut self) {
        if self.rx.unpublished {
            self.rx.unpublished = false;
            if self.rx.ring.publish() {
                self.host.notify(self.port);
            }
        }
    }

    /// Takes the transmit ring's answers: their buffers are free again.
    fn reclaim_tx(&mut self) {
        if let Err(e) = self.tx.reclaim() {
            self.fail("transmit", e);
        }
    }

    /// Publishes the transmit requests written since the last call, notifying the backend if
    /// it asked (its `req_event`: netback asks only once it has caught up).
    fn flush_tx(&mut self) {
        if self.tx.unpublished {
            self.tx.unpublished = false;
            if self.tx.ring.publish() {
                self.host.notify(self.port);
            }
        }
    }

    /// Whether a transmit buffer is free, reclaiming the backend's answers if none is. When
    /// none is, what was queued goes to the backend and an event is asked for its next answer
    /// (transmit completions raise no event otherwise: they are reaped lazily, on the next
    /// poll or when the buffers run out) once half of those in flight came back, with a last
    /// look for answers that came meanwhile.
    fn tx_room(&mut self) -> bool {
        if !self.tx.free.is_empty() {
            return true;
        }
        self.flush_tx();
        loop {
            self.reclaim_tx();
            if self.failed {
                return false;
            }
            if !self.tx.free.is_empty() {
                return true;
            }
            // An event when half of what is in flight came back (netback answers one by one,
            // and every answer the driver is woken for costs a switch to this domain).
            let half = self.tx.ring.outstanding() / 2;
            match self.tx.ring.final_check_after(half) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) => {
                    self.fail("transmit", e);
                    return false;
                }
            }
        }
    }

    /// Writes to the console log what the driver negotiated (for the boot log).
    pub fn describe(&self, out: &mut impl Write) -> core::fmt::Result {
        write!(
            out,
            "netfront {} (backend domain {}, {}): MAC {}, event channel {}, {} receive and {} \
             transmit buffers",
            self.front.node.as_str(),
            self.front.backend_id,
            self.front.backend.as_str(),
            self.mac,
            self.port,
            self.rx.bufs.len(),
            self.tx.bufs.len()
        )
    }
}

impl<P: SharedMemory> Rx<P> {
    /// Puts buffer `id` on the ring (not yet published).
    fn post(&mut self, id: u16) {
        let Some(off) = self.ring.next_request() else {
            return;
        };
        let m = self.ring.memory();
        m.write_u16(off, id);
        m.write_u16(off + 2, 0);
        m.write_u32(off + 4, self.bufs[usize::from(id)].gref.0);
        let slot = (off - xen_services::sring::HEADER) / RX_ENTRY;
        self.at_slot[slot] = id;
        self.ring.push_request();
        self.posted[usize::from(id)] = true;
        self.unpublished = true;
    }

    fn error(&mut self, what: core::fmt::Arguments<'_>) {
        if self.errors == 0 {
            log::warn!("netfront: the backend wrote {what} (counted in device errors)");
        }
        self.errors += 1;
    }

    /// Puts back the buffer posted at ring slot `slot`, whose answer the backend spent on
    /// something else (a bad id, an extra-info slot), if it is still out.
    fn repost_slot(&mut self, slot: usize) {
        let own = self.at_slot[slot];
        if usize::from(own) < self.bufs.len() && self.posted[usize::from(own)] {
            self.posted[usize::from(own)] = false;
            self.post(own);
        }
    }

    /// The next good frame: its buffer, offset, length and checksum state. Bad responses are
    /// counted and skipped (their buffers posted again).
    fn next_frame(&mut self) -> Result<Option<(u16, usize, usize, RxChecksum)>, RingError> {
        loop {
            if self.ring.responses()? == 0 {
                if self.ring.final_check()? == 0 {
                    return Ok(None);
                }
                continue;
            }
            let off = self.ring.next_response();
            let slot = (off - xen_services::sring::HEADER) / RX_ENTRY;
            let m = self.ring.memory();
            let id = m.read_u16(off);
            let offset = usize::from(m.read_u16(off + 2));
            let flags = m.read_u16(off + 4);
            let status = m.read_u16(off + 6) as i16;
            self.ring.consume_response();
            let idx = usize::from(id);
            if idx >= self.bufs.len() || !self.posted[idx] {
                self.error(format_args!("receive id {id}, which is not outstanding"));
                // The slot's own buffer was used for this answer: take it back.
                self.repost_slot(slot);
                continue;
            }
            self.posted[idx] = false;
            if flags & (NETRXF_MORE_DATA | NETRXF_EXTRA_INFO) != 0 {
                self.error(format_args!(
                    "receive flags {flags:#x} (multi-slot frames were not negotiated)"
                ));
                self.dropped += 1;
                self.post(id);
                if flags & NETRXF_EXTRA_INFO != 0 && self.ring.responses()? > 0 {
                    // The extra-info slot that follows: skip it, take its buffer back.
                    let off = self.ring.next_response();
                    self.ring.consume_response();
                    self.repost_slot((off - xen_services::sring::HEADER) / RX_ENTRY);
                }
                continue;
            }
            if status <= 0 {
                // An error the backend reports (the frame was dropped there), or an empty frame.
                self.dropped += 1;
                self.post(id);
                continue;
            }
            let len = status as usize;
            if offset >= PAGE || len > PAGE - offset {
                self.error(format_args!(
                    "a receive frame at {offset}+{len}, outside its page"
                ));
                self.dropped += 1;
                self.post(id);
                continue;
            }
            if !(14..=MAX_FRAME).contains(&len) {
                self.dropped += 1;
                self.post(id);
                continue;
            }
            let checksum = if flags & NETRXF_CSUM_BLANK != 0 {
                RxChecksum::Blank
            } else if flags & NETRXF_DATA_VALIDATED != 0 {
                RxChecksum::Verified
            } else {
                RxChecksum::Unknown
            };
            return Ok(Some((id, offset, len, checksum)));
        }
    }
}

impl<P: SharedMemory> Tx<P> {
    fn error(&mut self, what: core::fmt::Arguments<'_>) {
        if self.errors == 0 {
            log::warn!("netfront: the backend wrote {what} (counted in device errors)");
        }
        self.errors += 1;
    }

    fn reclaim(&mut self) -> Result<(), RingError> {
        while self.ring.responses()? > 0 {
            let off = self.ring.next_response();
            let m = self.ring.memory();
            let id = m.read_u16(off);
            let status = m.read_u16(off + 2) as i16;
            self.ring.consume_response();
            let idx = usize::from(id);
            if idx >= self.bufs.len() || !self.in_flight[idx] {
                self.error(format_args!("transmit id {id}, which is not outstanding"));
                continue;
            }
            self.in_flight[idx] = false;
            self.free.push(id);
            match status {
                NETIF_RSP_OKAY => {}
                NETIF_RSP_NULL => self.error(format_args!("a NULL transmit status for id {id}")),
                _ => self.dropped += 1,
            }
        }
        Ok(())
    }

    /// Queues the first `len` bytes of the scratch buffer from free buffer `id`, with the
    /// request's `flags` (checksum offload). Published at the end of the burst
    /// ([`NetDevice::flush`]).
    fn send(&mut self, id: u16, len: usize, flags: u16) {
        let buf = &self.bufs[usize::from(id)];
        buf.page.write_bytes(0, &self.scratch[..len]);
        let gref = buf.gref.0;
        let Some(off) = self.ring.next_request() else {
            // Cannot happen: fewer buffers than ring slots.
            self.free.push(id);
            self.dropped += 1;
            return;
        };
        let m = self.ring.memory();
        m.write_u32(off, gref);
        m.write_u16(off + 4, 0);
        m.write_u16(off + 6, flags);
        m.write_u16(off + 8, id);
        m.write_u16(off + 10, len as u16);
        self.ring.push_request();
        self.in_flight[usize::from(id)] = true;
        self.frames += 1;
        self.bytes += len as u64;
        self.unpublished = true;
    }
}

/// A received frame, in its buffer until consumed (then the buffer goes back on the ring).
#[derive(Debug)]
pub struct NetFrontRx<'a, P: SharedMemory> {
    rx: &'a mut Rx<P>,
    id: u16,
    offset: usize,
    len: usize,
    checksum: RxChecksum,
}

impl<P: SharedMemory> RxToken for NetFrontRx<'_, P> {
    fn consume<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        let (id, offset, len) = (self.id, self.offset, self.len);
        let rx = &mut *self.rx;
        rx.bufs[usize::from(id)]
            .page
            .read_bytes(offset, &mut rx.scratch[..len]);
        rx.frames += 1;
        rx.bytes += len as u64;
        f(&rx.scratch[..len])
        // Drop posts the buffer again.
    }

    fn checksum(&self) -> RxChecksum {
        self.checksum
    }
}

impl<P: SharedMemory> Drop for NetFrontRx<'_, P> {
    fn drop(&mut self) {
        self.rx.post(self.id);
    }
}

/// A transmit buffer (there was a free one when the token was made). The frame is queued
/// when the token is consumed, and goes to the backend at the end of the stack's poll
/// ([`NetDevice::flush`]).
#[derive(Debug)]
pub struct NetFrontTx<'a, P: SharedMemory> {
    tx: &'a mut Tx<P>,
}

impl<P: SharedMemory> TxToken for NetFrontTx<'_, P> {
    fn consume<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.consume_offload(len, |frame| (f(frame), TxOffload::default()))
    }

    /// A frame whose TCP or UDP checksum the stack left to the device (the field holds the
    /// pseudo-header's sum, as Linux's partial checksums) goes with `NETTXF_csum_blank` and
    /// `NETTXF_data_validated`: netback completes it, or (dom0's own stack, a bridge) takes it as
    /// valid, as it does Linux guests' frames. Only a checksum at the offset of the transport
    /// header of an IPv4 frame is passed on; anything else is the stack's bug, sent as is.
    fn consume_offload<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> (R, TxOffload)) -> R {
        let tx = self.tx;
        if len == 0 || len > MAX_FRAME {
            tx.dropped += 1;
            let mut scratch = alloc::vec![0u8; len];
            return f(&mut scratch).0;
        }
        let (r, offload) = f(&mut tx.scratch[..len]);
        let flags = match offload.checksum {
            Some(c) if usize::from(c.start) + usize::from(c.offset) + 2 <= len => {
                NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED
            }
            _ => 0,
        };
        match tx.free.pop() {
            Some(id) => tx.send(id, len, flags),
            None => tx.dropped += 1,
        }
        r
    }
}

impl<H: FrontendHost> NetDevice for NetFront<H> {
    type RxToken<'a>
        = NetFrontRx<'a, H::Page>
    where
        Self: 'a;
    type TxToken<'a>
        = NetFrontTx<'a, H::Page>
    where
        Self: 'a;

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::ethernet(self.mac);
        caps.max_burst = Some(TX_BUFFERS);
        caps.checksums = Checksums {
            ipv4: ChecksumOffload::None,
            tcp: ChecksumOffload::Both,
            udp: ChecksumOffload::Both,
            icmpv4: ChecksumOffload::None,
        };
        caps
    }

    fn receive(&mut self) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.failed {
            return None;
        }
        self.flush_rx();
        if !self.tx_room() {
            // No room to answer: the frame stays queued until a transmit completes (its
            // event was asked for).
            return None;
        }
        match self.rx.next_frame() {
            Ok(Some((id, offset, len, checksum))) => Some((
                NetFrontRx {
                    rx: &mut self.rx,
                    id,
                    offset,
                    len,
                    checksum,
                },
                NetFrontTx { tx: &mut self.tx },
            )),
            Ok(None) => {
                self.flush_rx();
                None
            }
            Err(e) => {
                self.fail("receive", e);
                None
            }
        }
    }

    fn transmit(&mut self) -> Option<Self::TxToken<'_>> {
        if self.failed {
            return None;
        }
        if !self.tx_room() {
            // An event comes when the backend answers.
            return None;
        }
        Some(NetFrontTx { tx: &mut self.tx })
    }

    /// Reaps the transmit answers that came (no event is asked for them while buffers are
    /// free), and asks for an event on the next receive answer.
    fn poll_interrupt(&mut self) -> bool {
        if let Some(state) = self.front.check_backend(&mut self.host) {
            self.backend_left(state);
            return false;
        }
        if self.failed {
            return false;
        }
        self.flush_tx();
        self.reclaim_tx();
        self.flush_rx();
        match self.rx.ring.final_check() {
            Ok(r) => !self.failed && r > 0,
            Err(e) => {
                self.fail("receive", e);
                false
            }
        }
    }

    /// The end of the stack's poll: the transmit requests it queued go to the backend, with
    /// one notification for the burst (if netback asked for one), and receive buffers put
    /// back since the last receive too.
    fn flush(&mut self) {
        if self.failed {
            return;
        }
        self.flush_tx();
        self.flush_rx();
    }

    fn stats(&self) -> DeviceStats {
        DeviceStats {
            rx_frames: self.rx.frames,
            rx_bytes: self.rx.bytes,
            tx_frames: self.tx.frames,
            tx_bytes: self.tx.bytes,
            rx_dropped: self.rx.dropped,
            tx_dropped: self.tx.dropped,
            device_errors: self.rx.errors + self.tx.errors,
        }
    }
}
