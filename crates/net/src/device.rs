//! Any [`netdev::NetDevice`] as a smoltcp [`phy::Device`].
//!
//! Tokens map one to one: smoltcp's receive and transmit tokens are the device's, so a frame is
//! read from and written into the driver's own buffer. The capabilities map as follows:
//! - the frame size smoltcp calls MTU (Ethernet header included) is `mtu + 14`;
//! - `max_burst` is passed on;
//! - a checksum the device computes on transmit is not computed by smoltcp, one the device
//!   verifies on receive is not verified again ([`checksums`]);
//! - a frame whose transport checksum the device marks [`RxChecksum::Blank`] (Xen's
//!   `NETRXF_csum_blank`: the data is intact, the field is not filled in) gets its TCP or UDP
//!   checksum filled in by this adapter before smoltcp sees it, in a scratch copy (smoltcp cannot
//!   skip the check for one frame, and refusing such frames would lose every packet from a
//!   neighbouring domain that offloads its checksums). Such frames are rare outside Xen, so the
//!   copy costs nothing elsewhere.
//!
//! - a frame the device marks [`RxChecksum::Blank`] when the device verifies that protocol's
//!   checksums (virtio-net's `NEEDS_CSUM` with `GUEST_CSUM`: smoltcp does not check them then)
//!   goes to smoltcp as it is, without a copy; one it marks [`RxChecksum::Unknown`] then is
//!   checked here (TCP and UDP over IPv4) and dropped if bad, counted in
//!   [`Phy::bad_checksums`]: virtio-net leaves unmarked what it did not check;
//! - frames larger than the MTU that the device received coalesced
//!   ([`netdev::Capabilities::max_rx_frame`]) go to smoltcp as they are: smoltcp 0.14 checks
//!   no received frame against its MTU (it only sizes what it sends by it);
//! - on transmit, when the device computes TCP or UDP checksums, the field smoltcp left zero
//!   gets the pseudo-header's sum and the device is told where it is
//!   ([`crate::tso::partial_checksum`]); when the device has TSO, frames go through a
//!   [`Coalescer`] that merges consecutive segments of a flow (module [`crate::tso`]), flushed
//!   at the end of every stack poll ([`Phy::flush`]). A finished frame waits in the coalescer
//!   until the device has a buffer for it: `transmit` and `receive` give smoltcp no token
//!   before it went, so nothing is dropped and smoltcp feels the device's back-pressure as
//!   before. A device that lends transmit buffers ([`NetDevice::hold_transmit`]) gets the
//!   frames of `transmit`'s tokens (of at least 256 bytes, and those that may grow) built in
//!   its buffer and sent from there; `receive` first sends a frame built there (the device is
//!   lent to the received frame's token while smoltcp answers it);
//! - with TSO, smoltcp's MTU is the TSO frame and the MSS option of every received SYN is
//!   raised ([`crate::tso`], "Large segments"): smoltcp makes segments larger than the MTU,
//!   which the device cuts.
//!
//! Before smoltcp sees a frame, the adapter's [`SynGate`] may drop it: a TCP SYN to a port whose
//! listener has no listening socket left for it (crate docs, "The listener pool"). smoltcp
//! would answer it with an RST; dropped, it is retransmitted by the client a second later, as
//! Linux's full SYN queue does.
use crate::tso::{Coalescer, Flow, Held, learn_syn, partial_checksum};
use alloc::vec::Vec;
use netdev::{ChecksumOffload, HeldTx, NetDevice, RxChecksum, TxToken as _};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket,
};

/// A [`NetDevice`] adapted to smoltcp.
#[derive(Debug)]
pub struct Phy<D> {
    device: D,
    /// Where a frame with a blank checksum is copied to be completed.
    scratch: Vec<u8>,
    /// Which SYNs are dropped before smoltcp sees them.
    gate: SynGate,
    /// What the device does with checksums (fixed after negotiation).
    checksums: netdev::Checksums,
    /// Whether transmitted TCP or UDP frames need a partial checksum.
    partial: bool,
    /// The TSO coalescer, when the device has TSO.
    tso: Option<Coalescer>,
    /// The device's buffer the coalescer's waiting frame is built in, if the device lends.
    held: Option<HeldTx>,
    /// Peers' MSS seen in received SYNs, for the coalescer (large segments).
    learned: Vec<Flow>,
    /// Received frames dropped here for a bad checksum.
    bad_checksums: u64,
}

impl<D: NetDevice> Phy<D> {
    /// Adapts `device`.
    pub fn new(device: D) -> Self {
        let caps = device.capabilities();
        let c = caps.checksums;
        let partial = c.tcp.device_computes() || c.udp.device_computes();
        // TSO needs the device to compute TCP checksums (netdev's rule): without, it is not used.
        let tso = caps
            .tso
            .filter(|&max| max > caps.max_frame() && c.tcp.device_computes())
            .map(|max| {
                let mut c = Coalescer::new(max, c);
                c.set_large_segments(caps.max_frame());
                c
            });
        Phy {
            device,
            scratch: Vec::new(),
            gate: SynGate::default(),
            checksums: c,
            partial,
            tso,
            held: None,
            learned: Vec::new(),
            bad_checksums: 0,
        }
    }

    /// Received frames dropped by the adapter for a bad TCP or UDP checksum (frames the device
    /// did not check although it verifies checksums).
    pub fn bad_checksums(&self) -> u64 {
        self.bad_checksums
    }

    /// (frames sent merged by TSO, segments in them).
    pub fn tso_merged(&self) -> (u64, u64) {
        self.tso.as_ref().map_or((0, 0), Coalescer::merged)
    }

    /// Whether the device can take the next frame: a transmit buffer is free (for the
    /// coalescer's finished frame, if one waits).
    pub fn can_transmit(&mut self) -> bool {
        match self.tso.as_ref().and_then(Coalescer::ready) {
            Some((frame, _)) => self.device.transmit_sized(frame.len()).is_some(),
            None => self.device.transmit().is_some(),
        }
    }

    /// Sends what the TSO coalescer holds, if the device has room: called at the end of every
    /// stack poll, so that no frame waits beyond the poll that made it (unless the device's
    /// transmit queue is full: then it goes at the next poll, which the device's interrupt for
    /// completed buffers brings). Then the device is told to send what it queued
    /// ([`NetDevice::flush`]: one notification for the poll's burst). Returns whether nothing is
    /// left waiting.
    pub fn flush(&mut self) -> bool {
        let done = self.flush_coalescer();
        self.device.flush();
        done
    }

    fn flush_coalescer(&mut self) -> bool {
        let Some(c) = self.tso.as_mut() else {
            return true;
        };
        c.learn(&mut self.learned);
        send_held(c, &mut self.device, &mut self.held);
        if !send_ready(c, &mut self.device) {
            return false;
        }
        c.flush();
        send_ready(c, &mut self.device) && c.is_empty()
    }

    /// The SYN gate.
    pub fn gate(&self) -> &SynGate {
        &self.gate
    }

    /// The SYN gate, mutably (the stack tells it what its listeners can take).
    pub fn gate_mut(&mut self) -> &mut SynGate {
        &mut self.gate
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (for its `poll_interrupt`).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }
}

/// Who does what for one protocol: the stack does what the device does not.
fn checksum(offload: ChecksumOffload) -> Checksum {
    match (offload.device_computes(), offload.device_verifies()) {
        (false, false) => Checksum::Both,
        (true, false) => Checksum::Rx,
        (false, true) => Checksum::Tx,
        (true, true) => Checksum::None,
    }
}

/// smoltcp's checksum capabilities for a device's offloads.
pub fn checksums(c: netdev::Checksums) -> ChecksumCapabilities {
    let mut caps = ChecksumCapabilities::default();
    caps.ipv4 = checksum(c.ipv4);
    caps.tcp = checksum(c.tcp);
    caps.udp = checksum(c.udp);
    caps.icmpv4 = checksum(c.icmpv4);
    caps
}

/// Fills in the TCP or UDP checksum of an IPv4 Ethernet frame. Frames it cannot parse are left
/// alone (smoltcp will drop them for what they are).
pub fn fill_transport_checksum(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
        return;
    };
    let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    if ip.more_frags() || ip.frag_offset() != 0 {
        return;
    }
    let payload = ip.payload_mut();
    match protocol {
        IpProtocol::Tcp => {
            if let Ok(mut tcp) = TcpPacket::new_checked(payload) {
                tcp.fill_checksum(&src.into(), &dst.into());
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut udp) = UdpPacket::new_checked(payload) {
                udp.fill_checksum(&src.into(), &dst.into());
            }
        }
        _ => {}
    }
}

/// A TCP SYN (without ACK or RST) in an IPv4 Ethernet frame: what a listening socket takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syn {
    /// The sender's address.
    pub src: Ipv4Address,
    /// The sender's port.
    pub src_port: u16,
    /// The port it asks for.
    pub dst_port: u16,
}

/// What a TCP segment in an IPv4 Ethernet frame is, for the [`SynGate`]: `None` for anything
/// else (and for every frame too short or malformed to tell: smoltcp drops those itself).
/// Every access is bounds-checked: no frame makes it panic.
pub fn tcp_segment(frame: &[u8]) -> Option<(Syn, bool)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    // Fragments are smoltcp's to drop (it reassembles none).
    if ip.version() != 4
        || ip.next_header() != IpProtocol::Tcp
        || ip.more_frags()
        || ip.frag_offset() != 0
    {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let syn = Syn {
        src: ip.src_addr(),
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
    };
    Some((syn, tcp.syn() && !tcp.ack() && !tcp.rst()))
}

/// Whether `frame` is a TCP/IPv4 SYN (opening a connection, or answering one the stack
/// opened), without RST.
fn is_syn(frame: &[u8]) -> bool {
    match crate::tso::transport(frame) {
        Some((tcp, 6, len)) if len >= 20 => frame[tcp + 13] & 0x06 == 0x02,
        _ => false,
    }
}

/// A listened port, as the gate knows it.
#[derive(Debug, Clone, Copy)]
struct Gated {
    /// The stack's key for the listener (its index).
    key: usize,
    port: u16,
    /// Listening sockets still free in the pool: SYNs it may pass before the stack looks again.
    free: usize,
    /// Whether the pool has a handshake in progress: then any segment to the port may change
    /// the pool (an ACK completes a handshake, an RST ends one).
    busy: bool,
}

/// Drops, before smoltcp sees them, the TCP SYNs that would find no listening socket on a port
/// that has a listener: smoltcp would answer each with an RST, which a client takes for
/// "connection refused". Dropped, the SYN is retransmitted by the client (after 1 s, then 2,
/// 4...) as when Linux's SYN or accept queue is full (`tcp_abort_on_overflow = 0`).
///
/// The stack tells the gate, per listener, how many listening sockets are free (`open`), at the
/// start of each poll and again after each frame that went to a listened port while its pool
/// had a handshake in progress ([`SynGate::take_touched`]), having refilled the pool in between.
/// Each SYN the gate passes to a port takes one from its budget; once it is spent, SYNs to the
/// port are dropped and counted, except those of a connection that already has a socket (a
/// retransmitted SYN to a socket in SYN-RECEIVED, which smoltcp answers; `know`). A port without
/// a listener is not the gate's: smoltcp's RST says "connection refused" there, rightly.
#[derive(Debug, Default)]
pub struct SynGate {
    ports: Vec<Gated>,
    /// Connections (listener key, remote address, remote port) that have a socket, on the
    /// ports whose budget is spent.
    known: Vec<(usize, Ipv4Address, u16)>,
    /// The listener a frame went to that may have changed its pool.
    touched: Option<usize>,
    dropped: u64,
}

impl SynGate {
    /// Forgets every listener (before `open`ing each again).
    pub fn clear(&mut self) {
        self.ports.clear();
        self.known.clear();
        self.touched = None;
    }

    /// Listener `key` on `port` can take `free` more SYNs; `busy` says it has handshakes in
    /// progress. Forgets the connections known on it.
    pub fn open(&mut self, key: usize, port: u16, free: usize, busy: bool) {
        self.known.retain(|k| k.0 != key);
        let g = Gated {
            key,
            port,
            free,
            busy,
        };
        match self.ports.iter_mut().find(|p| p.key == key) {
            Some(p) => *p = g,
            None => self.ports.push(g),
        }
    }

    /// Listener `key` is gone.
    pub fn close(&mut self, key: usize) {
        self.ports.retain(|p| p.key != key);
        self.known.retain(|k| k.0 != key);
    }

    /// A connection from `remote:remote_port` to listener `key`'s port has a socket: its SYNs
    /// pass even when the budget is spent.
    pub fn know(&mut self, key: usize, remote: Ipv4Address, remote_port: u16) {
        self.known.push((key, remote, remote_port));
    }

    /// The listener whose pool the last frames may have changed (taken once).
    pub fn take_touched(&mut self) -> Option<usize> {
        self.touched.take()
    }

    /// SYNs dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether smoltcp should see `frame`.
    pub fn pass(&mut self, frame: &[u8]) -> bool {
        if self.ports.is_empty() {
            return true;
        }
        let Some((seg, syn)) = tcp_segment(frame) else {
            return true;
        };
        let Some(g) = self.ports.iter_mut().find(|g| g.port == seg.dst_port) else {
            return true;
        };
        if !syn {
            if g.busy {
                self.touched = Some(g.key);
            }
            return true;
        }
        let key = g.key;
        if g.free > 0 {
            g.free -= 1;
            g.busy = true;
            self.touched = Some(key);
            return true;
        }
        if self
            .known
            .iter()
            .any(|&(k, a, p)| k == key && a == seg.src && p == seg.src_port)
        {
            self.touched = Some(key);
            return true;
        }
        self.dropped += 1;
        false
    }
}

/// Sends the coalescer's finished frame, if any; whether none is left.
fn send_ready<D: NetDevice>(c: &mut Coalescer, device: &mut D) -> bool {
    let Some((frame, offload)) = c.ready() else {
        return true;
    };
    let Some(token) = device.transmit_sized(frame.len()) else {
        return false;
    };
    token.consume_offload(frame.len(), |buf| {
        buf.copy_from_slice(frame);
        ((), offload)
    });
    c.sent();
    true
}

/// Sends the frame the coalescer built in a buffer the device lent, if any.
fn send_held<D: NetDevice>(c: &mut Coalescer, device: &mut D, slot: &mut Option<HeldTx>) {
    if let Some(h) = slot.take() {
        match c.finish_held(device.held_buffer(&h)) {
            Held::Finished(len, offload) => device.send_held(h, len, offload),
            _ => device.release_held(h),
        }
    }
}

/// Frames shorter than this (ACKs, window updates) do not start in a buffer the device lends:
/// its buffers for large frames are few, and such frames are seldom joined.
const HOLD_MIN: usize = 256;

/// Lets `write` fill a frame of `len` bytes for the coalescer, in a buffer the device lends when
/// it does (so that a merged frame is built where the device sends it from, never copied),
/// else in the coalescer's own.
fn write_held<D: NetDevice>(
    c: &mut Coalescer,
    device: &mut D,
    slot: &mut Option<HeldTx>,
    len: usize,
    write: &mut dyn FnMut(&mut [u8]),
) {
    // A frame waiting in the coalescer's own buffer goes on there (it started while no buffer
    // was lent): its token was made with no finished frame waiting, so this cannot fail.
    if c.waiting_own() {
        let _ = c.write(len, write);
        return;
    }
    let max = c.max_frame();
    let h = match slot.take() {
        Some(h) => h,
        None => match (len >= HOLD_MIN).then(|| device.hold_transmit(max)) {
            Some(Some(h)) => h,
            _ => {
                let _ = c.write(len, write);
                return;
            }
        },
    };
    match c.write_held(device.held_buffer(&h), len, write) {
        Held::Joined => *slot = Some(h),
        Held::Unused => {
            device.release_held(h);
            let _ = c.start_own();
        }
        Held::Finished(done, offload) => {
            device.send_held(h, done, offload);
            // The new frame waits in another lent buffer if more may join it.
            if c.scratch_may_grow()
                && let Some(h) = device.hold_transmit(max)
            {
                if c.start_held(device.held_buffer(&h)) {
                    *slot = Some(h);
                    return;
                }
                device.release_held(h);
            }
            let _ = c.start_own();
        }
    }
}

/// Whether an IPv4 TCP or UDP frame's transport checksum is right, for the protocols whose
/// checksums `checksums` say the device verifies (smoltcp does not, then); anything else passes
/// (smoltcp checks what it must, and drops what it cannot parse).
pub fn transport_checksum_ok(frame: &[u8], checksums: netdev::Checksums) -> bool {
    let Some((start, protocol, len)) = crate::tso::transport(frame) else {
        return true;
    };
    let verifies = match protocol {
        6 => checksums.tcp.device_verifies(),
        // A UDP checksum of zero means none was computed (IPv4).
        17 => checksums.udp.device_verifies() && frame.get(start + 6..start + 8) != Some(&[0, 0]),
        _ => false,
    };
    if !verifies {
        return true;
    }
    let pseudo = netdev::csum::pseudo_header_v4(&frame[26..30], &frame[30..34], protocol, len);
    netdev::csum::fold(netdev::csum::add(pseudo, &frame[start..start + len])) == 0xffff
}

/// A received frame (the device's token).
#[derive(Debug)]
pub struct PhyRx<'a, T> {
    token: T,
    scratch: &'a mut Vec<u8>,
    /// With large segments: where the MSS of received SYNs goes, and the largest TSO frame.
    learn: Option<(&'a mut Vec<Flow>, usize)>,
    gate: &'a mut SynGate,
    checksums: netdev::Checksums,
    bad_checksums: &'a mut u64,
}

impl<T: netdev::RxToken> phy::RxToken for PhyRx<'_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let PhyRx {
            token,
            scratch,
            learn,
            gate,
            checksums,
            bad_checksums,
        } = self;
        let device_verifies = checksums.tcp.device_verifies() || checksums.udp.device_verifies();
        let (blank, check) = match token.checksum() {
            // smoltcp checks nothing the device verifies: nothing to fill in.
            RxChecksum::Blank => (!device_verifies, false),
            RxChecksum::Unknown => (false, device_verifies),
            RxChecksum::Verified => (false, false),
        };
        token.consume(|frame| {
            if !gate.pass(frame) {
                // smoltcp takes an empty frame for processed, and answers nothing.
                return f(&[]);
            }
            if check && !transport_checksum_ok(frame, checksums) {
                *bad_checksums += 1;
                return f(&[]);
            }
            let syn = learn.is_some() && is_syn(frame);
            if blank || syn {
                scratch.clear();
                scratch.extend_from_slice(frame);
                if let Some((learned, max)) = learn.filter(|_| syn)
                    && let Some(flow) = learn_syn(scratch, max)
                    && learned.len() < crate::tso::FLOWS
                {
                    learned.push(flow);
                }
                if blank {
                    fill_transport_checksum(scratch);
                }
                f(scratch)
            } else {
                f(frame)
            }
        })
    }
}

/// A transmit buffer: the device's token, or (with TSO) a place in the coalescer.
pub enum PhyTx<'a, D: NetDevice> {
    /// The device's buffer; with whether TCP and UDP frames get a partial checksum.
    Direct(D::TxToken<'a>, netdev::Checksums, bool),
    /// The coalescer, whose finished frame went to the device before this token was made.
    Staged(&'a mut Coalescer),
    /// As `Staged`, the coalescer building its frames in buffers the device lends, if it does
    /// (the one it holds now in the last field).
    Held(&'a mut Coalescer, &'a mut D, &'a mut Option<HeldTx>),
}

impl<'a, D: NetDevice + 'a> core::fmt::Debug for PhyTx<'a, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PhyTx::Direct(..) => "PhyTx::Direct",
            PhyTx::Staged(_) => "PhyTx::Staged",
            PhyTx::Held(..) => "PhyTx::Held",
        })
    }
}

impl<'a, D: NetDevice + 'a> PhyTx<'a, D> {
    /// Lets `write` fill a frame of `len` bytes and sends it. Not generic over the writer, so
    /// that smoltcp's many emitting closures are not each copied into every path here.
    fn send(self, len: usize, write: &mut dyn FnMut(&mut [u8])) {
        match self {
            PhyTx::Direct(t, checksums, partial) => t.consume_offload(len, |frame| {
                write(frame);
                let checksum = if partial {
                    partial_checksum(frame, checksums)
                } else {
                    None
                };
                (
                    (),
                    netdev::TxOffload {
                        checksum,
                        tso: None,
                    },
                )
            }),
            PhyTx::Staged(c) => {
                // The token was made with no finished frame waiting: this cannot fail.
                let _ = c.write(len, write);
            }
            PhyTx::Held(c, device, slot) => write_held(c, device, slot, len, write),
        }
    }
}

impl<'a, D: NetDevice + 'a> phy::TxToken for PhyTx<'a, D> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut f = Some(f);
        let mut result = None;
        self.send(len, &mut |frame| {
            if let Some(f) = f.take() {
                result = Some(f(frame));
            }
        });
        // Every path gives the writer a buffer (a device's token a scratch one for a frame it
        // drops: netdev's contract), so the result is there.
        result.expect("the transmit token ran the writer")
    }
}

impl<D: NetDevice> phy::Device for Phy<D> {
    type RxToken<'a>
        = PhyRx<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = PhyTx<'a, D>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let Phy {
            device,
            scratch,
            gate,
            checksums,
            partial,
            tso,
            held,
            learned,
            bad_checksums,
        } = self;
        let mut large = None;
        if let Some(c) = tso.as_mut() {
            c.learn(learned);
            if c.large_segments() {
                large = Some(c.max_frame());
            }
            // An answer goes after the frame being built (through the coalescer's own buffers:
            // the device is lent to the received frame's token meanwhile).
            send_held(c, device, held);
            if !send_ready(c, device) {
                return None;
            }
        }
        let (rx, tx) = device.receive()?;
        let tx = match tso {
            Some(c) => PhyTx::Staged(c),
            None => PhyTx::Direct(tx, *checksums, *partial),
        };
        Some((
            PhyRx {
                token: rx,
                scratch,
                learn: large.map(|max| (learned, max)),
                gate,
                checksums: *checksums,
                bad_checksums,
            },
            tx,
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        match self.tso.as_mut() {
            Some(c) => {
                c.learn(&mut self.learned);
                send_ready(c, &mut self.device).then_some(PhyTx::Held(
                    c,
                    &mut self.device,
                    &mut self.held,
                ))
            }
            None => {
                let (c, p) = (self.checksums, self.partial);
                self.device.transmit().map(|t| PhyTx::Direct(t, c, p))
            }
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let c = self.device.capabilities();
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // With large segments, smoltcp's TCP segments go up to the TSO frame (the device cuts
        // them at the peer's MSS, which the stack learns larger: module docs).
        caps.max_transmission_unit = match &self.tso {
            Some(t) if t.large_segments() => t.max_frame(),
            _ => c.max_frame(),
        };
        caps.max_burst_size = c.max_burst;
        caps.checksum = checksums(c.checksums);
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use netdev::{Capabilities, Checksums, MacAddress};

    #[test]
    fn offloads_map_to_what_the_stack_still_does() {
        let c = checksums(Checksums {
            ipv4: ChecksumOffload::None,
            tcp: ChecksumOffload::Tx,
            udp: ChecksumOffload::Rx,
            icmpv4: ChecksumOffload::Both,
        });
        assert!(c.ipv4.tx() && c.ipv4.rx());
        assert!(!c.tcp.tx() && c.tcp.rx());
        assert!(c.udp.tx() && !c.udp.rx());
        assert!(!c.icmpv4.tx() && !c.icmpv4.rx());
    }

    #[test]
    fn a_blank_checksum_is_filled_in() {
        use smoltcp::wire::{EthernetAddress, EthernetRepr, IpAddress, Ipv4Repr, UdpRepr};
        let (src, dst) = ([10, 0, 2, 2].into(), [10, 0, 2, 15].into());
        let udp = UdpRepr {
            src_port: 1000,
            dst_port: 7,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: 8 + 5,
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0; 14 + 20 + 8 + 5];
        let caps = ChecksumCapabilities::default();
        let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &caps);
        udp.emit(
            &mut UdpPacket::new_unchecked(p.payload_mut()),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            5,
            |b| b.copy_from_slice(b"hello"),
            &caps,
        );
        let good = frame.clone();
        frame[14 + 20 + 6] = 0; // the UDP checksum, blank
        frame[14 + 20 + 7] = 0;
        assert_ne!(frame, good);
        fill_transport_checksum(&mut frame);
        assert_eq!(frame, good);
        // Garbage is left alone, without a panic.
        let mut junk = vec![0xff; 30];
        fill_transport_checksum(&mut junk);
        assert_eq!(junk, vec![0xff; 30]);
    }

    #[test]
    fn frames_built_in_lent_buffers_or_not_come_out_as_the_stack_wrote_them() {
        use crate::tso::tests::tcp;
        use platform::fuzz::Rng;
        use smoltcp::phy::{Device as _, TxToken as _};
        let mut caps = Capabilities::ethernet(MacAddress([2, 0, 0, 0, 0, 1]));
        caps.checksums.tcp = ChecksumOffload::Both;
        caps.checksums.udp = ChecksumOffload::Both;
        caps.tso = Some(14 + 65_535);
        // What the peer received (the fake cut TSO frames into segments).
        fn drain(b: &mut netdev::fake::FakeDevice, out: &mut Vec<Vec<u8>>) {
            while let Some((rx, _)) = netdev::NetDevice::receive(b) {
                out.push(netdev::RxToken::consume(rx, |f| f.to_vec()));
            }
        }
        let mut lent = 0;
        for seed in 0..60 {
            let (a, mut b) = netdev::fake::pair(caps.mac, MacAddress([2, 0, 0, 0, 0, 2]));
            let mut phy = Phy::new(a.with_capabilities(caps));
            let mut rng = Rng::new(seed);
            let mut frames = Vec::new();
            let mut out = Vec::new();
            let mut seq = [0u32; 2];
            let mss = [1460, 536, 60][rng.below(3) as usize];
            for _ in 0..rng.below(300) {
                // The device lends 0, 1 or 2 buffers from now on, or the stack polls (which
                // sends what waits in a lent buffer) or ends a poll.
                match rng.below(40) {
                    0 => phy.device_mut().set_lending(rng.below(3) as usize),
                    1 => assert!(phy.receive(Instant::ZERO).is_none()),
                    2 => assert!(phy.flush()),
                    _ => {}
                }
                let flow = rng.below(2) as usize;
                let (len, flags) = match rng.below(20) {
                    0 => (0, 0x10),
                    1 => (rng.below(mss as u64) as usize, 0x18),
                    2 => (mss, 0x11),
                    _ => (mss, 0x10),
                };
                let payload: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
                let f = tcp(flow as u8, seq[flow], 1, flags, &[], &payload);
                seq[flow] = seq[flow].wrapping_add(len as u32);
                let token = phy.transmit(Instant::ZERO).expect("the fake has room");
                token.consume(f.len(), |buf| buf.copy_from_slice(&f));
                frames.push(f);
                drain(&mut b, &mut out);
            }
            assert!(phy.flush());
            drain(&mut b, &mut out);
            assert_eq!(out.len(), frames.len(), "seed {seed}");
            for (i, (o, f)) in out.iter().zip(&frames).enumerate() {
                // The fake completed the checksums the stack left partial: as they were.
                assert_eq!(o, f, "seed {seed}, frame {i}");
            }
            lent += phy.device().held_sent();
            assert_eq!(phy.device().stats().tx_dropped, 0);
        }
        assert!(lent > 100, "{lent} frames from lent buffers");
    }

    #[test]
    fn capabilities_carry_the_frame_size_and_burst() {
        let mut caps = Capabilities::ethernet(MacAddress([2, 0, 0, 0, 0, 1]));
        caps.mtu = 9000;
        caps.max_burst = Some(8);
        let (a, _) = netdev::fake::pair(caps.mac, MacAddress([2, 0, 0, 0, 0, 2]));
        let phy = Phy::new(a.with_capabilities(caps));
        let c = phy::Device::capabilities(&phy);
        assert_eq!(c.max_transmission_unit, 9014);
        assert_eq!(c.ip_mtu(), 9000);
        assert_eq!(c.max_burst_size, Some(8));
        assert_eq!(c.medium, Medium::Ethernet);
    }
}
