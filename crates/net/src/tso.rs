//! Transmit offloads, device-agnostic: partial checksums, and TSO by coalescing.
//!
//! smoltcp never sends a TCP segment larger than the peer's MSS, so a device that can cut large
//! segments (TSO: virtio-net's `HOST_TSO4`, netback's `feature-gso-tcpv4`) only gets them if
//! someone merges the stack's segments first. The [`Coalescer`] does: consecutive segments of
//! one TCP flow that smoltcp produces in one poll become one large frame with a
//! [`netdev::Tso`], which the device cuts back into the same segments. Segments join the
//! waiting frame when they:
//! - are TCP/IPv4 without IP options that differ, unfragmented, with no padding after the IP
//!   packet, carrying payload;
//! - have the same Ethernet header, the same IPv4 header but for total length, identification
//!   and checksum, the same ports, acknowledgment number, window, urgent pointer, header length
//!   and TCP options;
//! - follow in sequence (their sequence number is the end of the waiting frame's payload);
//! - have only ACK (and PSH on the last) among their flags: never SYN, FIN, RST, URG, ECE or
//!   CWR;
//! - all carry the same payload size (the first segment's, which becomes the frame's `mss`),
//!   the last possibly less: a shorter segment or one with PSH ends the frame;
//! - fit the device's largest TSO frame and an IPv4 packet's 65,535 bytes;
//! - find at least as much payload in the waiting frame as their headers take (each is
//!   written in place after it, its headers over the waiting frame's last bytes: a run of
//!   segments smaller than their headers is not worth merging).
//!
//! The merged frame carries the first segment's headers (PSH if the last had it), its IPv4
//! total length and header checksum recomputed, and in its TCP checksum field the
//! pseudo-header's sum over the whole TCP length, as Linux's `tcp_v4_send_check` leaves it for
//! `CHECKSUM_PARTIAL`; the device computes each segment's checksums. A frame on its own is sent
//! as it came, with a partial checksum if the device computes that protocol's
//! ([`partial_checksum`]).
//!
//! What the device sends is then what smoltcp sent, but for the IPv4 identification (smoltcp
//! sets DF and 0; a device may number the segments) and, when the device computes them, the
//! checksums, which a device computes exactly.
//!
//! # Large segments
//! Merging still leaves smoltcp one segment of the peer's MSS (1460 bytes) to build per 1.4 KB
//! sent, and under QEMU's TCG that work per segment, not the copies, bounded sending (Linux
//! hands its device 64 KiB segments). So with TSO the stack's adapter lets smoltcp make larger
//! segments ([`Coalescer::set_large_segments`]): smoltcp is told the TSO frame size as its MTU,
//! and each received SYN (or SYN-ACK) has its MSS option raised to 8 times the peer's
//! ([`learn_syn`], its checksum updated), which the coalescer remembers per flow (the last
//! [`FLOWS`]). smoltcp then sends segments of up to 8 × 1460 bytes; they merge as any others
//! (up to the TSO frame), and every frame over the MTU goes to the device with a TSO whose
//! `mss` is the peer's real MSS less the frame's TCP options (the MTU's when the flow is not
//! known), FIN allowed on a frame of one segment; the device cuts them where a 1460-byte stack
//! would have. The SYNs smoltcp sends announce the MTU's MSS, not the large MTU's. Why 8 and
//! not 44 (64 KiB): smoltcp ACKs at once when more than the peer's MSS is unacknowledged, else
//! after its ACK delay, so the factor is also how many of the peer's segments it lets go by
//! before an ACK. The counters ([`Coalescer::merged`]) count every TSO frame and the segments
//! the device cuts it into.
use alloc::vec::Vec;
use netdev::{Checksums, PartialChecksum, Tso, TxOffload, csum};

const ETH: usize = 14;
/// Largest IPv4 packet.
const IP_MAX: usize = 65_535;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Where a TCP/IPv4 segment's headers are in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    /// Offset of the TCP header.
    tcp: usize,
    /// Offset of the payload (Ethernet, IPv4 and TCP headers' length).
    payload: usize,
}

/// The headers of a TCP/IPv4 segment that could be merged, or `None`.
fn mergeable(frame: &[u8]) -> Option<Segment> {
    let (tcp, protocol, len) = transport(frame)?;
    // No padding after the packet: its length must be the frame's.
    if protocol != 6 || tcp + len != frame.len() || len < 20 {
        return None;
    }
    let payload = tcp + usize::from(frame[tcp + 12] >> 4) * 4;
    if payload < tcp + 20 || payload >= frame.len() || frame[tcp + 13] & !PSH != ACK {
        return None;
    }
    Some(Segment { tcp, payload })
}

/// The checksum field of an IPv4 TCP or UDP frame's transport header, filled with the
/// pseudo-header's sum, and where it lies, if `checksums` say the device computes that
/// protocol's (the stack left the field zero then); `None` for anything else. Fragments are
/// left alone.
pub fn partial_checksum(frame: &mut [u8], checksums: Checksums) -> Option<PartialChecksum> {
    let (start, protocol, len) = transport(frame)?;
    let (offset, computes) = match protocol {
        6 => (16, checksums.tcp.device_computes()),
        _ => (6, checksums.udp.device_computes()),
    };
    if !computes || offset + 2 > len {
        return None;
    }
    let pseudo = csum::fold(csum::pseudo_header_v4(
        &frame[ETH + 12..ETH + 16],
        &frame[ETH + 16..ETH + 20],
        protocol,
        len,
    ));
    frame[start + offset..start + offset + 2].copy_from_slice(&pseudo.to_be_bytes());
    Some(PartialChecksum {
        start: start as u16,
        offset: offset as u16,
    })
}

/// Where an unfragmented IPv4 frame's TCP or UDP segment is: (its offset, the protocol, its
/// length by the IPv4 header), or `None` for anything else or a frame too short for its IPv4
/// header's lengths.
pub fn transport(frame: &[u8]) -> Option<(usize, u8, usize)> {
    if frame.len() < ETH + 20 || frame[12..14] != [0x08, 0x00] || frame[ETH] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(frame[ETH] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([frame[ETH + 2], frame[ETH + 3]]));
    let fragment = u16::from_be_bytes([frame[ETH + 6], frame[ETH + 7]]) & 0x3fff != 0;
    let protocol = frame[ETH + 9];
    if ihl < 20
        || fragment
        || total < ihl
        || ETH + total > frame.len()
        || !matches!(protocol, 6 | 17)
    {
        return None;
    }
    Some((ETH + ihl, protocol, total - ihl))
}

/// The frame waiting to be sent, which later segments of its flow may join.
#[derive(Debug, Default, Clone, Copy)]
struct Pending {
    /// Its length (0: none waiting).
    len: usize,
    /// Its headers, if it is a mergeable segment.
    seg: Option<Segment>,
    /// Whether more segments may join it (not after a shorter one or a PSH).
    open: bool,
    /// The payload size of each segment merged (the first one's).
    mss: usize,
    /// Segments merged so far.
    count: usize,
}

/// The most header bytes a frame smoltcp writes may have (Ethernet, IPv4 and TCP headers with
/// the largest options): zeroed before it writes a frame, so that a byte it leaves alone (TCP
/// option padding) is zero as in a fresh buffer, never an older frame's.
const MAX_HEADERS: usize = ETH + 60 + 60;

/// Merges consecutive TCP segments of one flow into TSO frames (module docs). It holds one
/// frame waiting ([`write`](Self::write)) and one finished, ready for the device
/// ([`ready`](Self::ready)).
///
/// Both live in two buffers of the largest frame's size that trade places, allocated once. A
/// segment that may join the waiting frame is written by the stack in place, right after it:
/// its headers over the waiting frame's last bytes (saved first, and put back once the headers
/// were compared), so that its payload lands where it belongs and is never copied again. Only
/// a frame that does not join is copied (to the other buffer, where it starts a new frame).
#[derive(Debug)]
pub struct Coalescer {
    /// The waiting frame is `bufs[waiting][..pending.len]`, the finished one
    /// `bufs[1 - waiting][..ready_len]`.
    bufs: [Vec<u8>; 2],
    waiting: usize,
    pending: Pending,
    /// The finished frame's length (0: none) and its offload.
    ready_len: usize,
    ready_offload: TxOffload,
    /// Where a frame that cannot be written in place is written.
    scratch: Vec<u8>,
    /// Whether the waiting frame lives in a buffer the device lent (not in `bufs`).
    held: bool,
    /// The device's frame size with large segments (`usize::MAX`: without).
    mtu_frame: usize,
    /// The MSS peers announced (with large segments).
    flows: Vec<Flow>,
    /// The largest frame the device cuts.
    max_frame: usize,
    checksums: Checksums,
    /// Frames sent merged, and the segments in them.
    merged_frames: u64,
    merged_segments: u64,
}

/// `buf` at least `len` bytes long (new bytes zero).
fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

impl Coalescer {
    /// For a device that cuts frames of up to `max_frame` bytes and computes the `checksums`
    /// its capabilities say.
    pub fn new(max_frame: usize, checksums: Checksums) -> Self {
        Coalescer {
            bufs: [Vec::new(), Vec::new()],
            waiting: 0,
            pending: Pending::default(),
            ready_len: 0,
            ready_offload: TxOffload::default(),
            scratch: Vec::new(),
            held: false,
            mtu_frame: usize::MAX,
            flows: Vec::new(),
            max_frame: max_frame.min(ETH + IP_MAX),
            checksums,
            merged_frames: 0,
            merged_segments: 0,
        }
    }

    /// A buffer of `len` zero bytes, for a frame to [`push`](Self::push).
    pub fn buffer(&mut self, len: usize) -> Vec<u8> {
        alloc::vec![0; len]
    }

    /// Whether a finished frame waits for the device.
    pub fn has_ready(&self) -> bool {
        self.ready_len != 0
    }

    /// Whether any frame waits (finished or not).
    pub fn is_empty(&self) -> bool {
        self.ready_len == 0 && self.pending.len == 0
    }

    /// (TSO frames sent: merged, or large segments; the segments the device cuts them into),
    /// for the counters.
    pub fn merged(&self) -> (u64, u64) {
        (self.merged_frames, self.merged_segments)
    }

    /// Takes `frame`, as [`write`](Self::write) does.
    pub fn push(&mut self, frame: Vec<u8>) -> bool {
        self.write(frame.len(), &mut |b| b.copy_from_slice(&frame))
    }

    /// Lets `fill` write the next frame, of `len` bytes (it is called exactly once): it joins
    /// the waiting frame, or the waiting one is finished (moved to [`ready`](Self::ready), which
    /// must be empty: the caller sends it before asking the stack for another frame) and this
    /// one waits in its place. Returns `false` (and drops the frame) only if a finished frame
    /// was still there and this one did not join.
    pub fn write(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let p = self.pending;
        if let Some(s) = p.seg.filter(|_| p.open) {
            // Room for the segment after the waiting frame (its headers over the frame's end).
            grow(
                &mut self.bufs[self.waiting],
                p.len + len.saturating_sub(s.payload),
            );
        }
        let buf = &mut self.bufs[self.waiting];
        if join_in_place(
            &mut self.pending,
            self.max_frame,
            buf,
            &mut self.scratch,
            len,
            fill,
        ) {
            return true;
        }
        self.take_scratch()
    }

    /// Whether a frame waits in the coalescer's own buffer (not in one the device lent).
    pub fn waiting_own(&self) -> bool {
        !self.held && self.pending.len != 0
    }

    /// Whether the frame left in the scratch buffer by [`write_held`](Self::write_held) may be
    /// joined by later segments (else it is not worth a buffer the device lends).
    pub fn scratch_may_grow(&self) -> bool {
        pending_of(&self.scratch).open
    }

    /// The largest frame this coalescer makes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// As [`write`](Self::write), the waiting frame (if any) living in `held`, a buffer the
    /// device lent of at least the largest frame's size: the frame is written in place after
    /// it and joins it, or, with no frame waiting, is written at its start and waits there
    /// (`Joined`). Otherwise the frame is left in the scratch buffer and the waiting one is
    /// finished in `held`, ready to send with the length and offload returned (`Finished`):
    /// the caller sends it and starts the new one in another buffer
    /// ([`start_held`](Self::start_held)) or in the coalescer's own ([`start_own`](Self::start_own)).
    /// Call it only when no frame waits in the coalescer's own buffers.
    pub fn write_held(
        &mut self,
        held: &mut [u8],
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Held {
        if held.len() < self.max_frame.max(len) {
            // Not a buffer for it: as if nothing joined (the caller gives the buffer back).
            self.scratch.clear();
            self.scratch.resize(len, 0);
            fill(&mut self.scratch);
            return match self.held {
                true => self.finish_held(held),
                false => Held::Unused,
            };
        }
        if !self.held {
            held[..len.min(MAX_HEADERS)].fill(0);
            fill(&mut held[..len]);
            self.pending = pending_of(&held[..len]);
            self.held = true;
            return Held::Joined;
        }
        if join_in_place(
            &mut self.pending,
            self.max_frame,
            held,
            &mut self.scratch,
            len,
            fill,
        ) {
            return Held::Joined;
        }
        self.finish_held(held)
    }

    /// Finishes the frame waiting in `held` (its headers fixed): `Finished` with its length and
    /// offload, for the caller to send; `Unused` when none waits there.
    pub fn finish_held(&mut self, held: &mut [u8]) -> Held {
        if !self.held {
            return Held::Unused;
        }
        self.held = false;
        let p = core::mem::take(&mut self.pending);
        let Some(frame) = held.get_mut(..p.len) else {
            return Held::Unused;
        };
        let offload = self.fix(p, frame);
        Held::Finished(p.len, offload)
    }

    /// Starts the frame left in the scratch buffer by [`write_held`](Self::write_held) in
    /// `held` (another buffer the device lent); `false` (nothing done) if it does not fit.
    pub fn start_held(&mut self, held: &mut [u8]) -> bool {
        let frame = &self.scratch[..];
        let Some(buf) = held.get_mut(..frame.len()) else {
            return false;
        };
        buf.copy_from_slice(frame);
        self.pending = pending_of(frame);
        self.held = true;
        true
    }

    /// Starts the frame left in the scratch buffer in the coalescer's own buffer (no frame
    /// waits there: [`write_held`](Self::write_held) was called).
    pub fn start_own(&mut self) -> bool {
        self.take_scratch()
    }

    /// Takes the frame in `scratch` (one that did not join, or could not be written in place:
    /// it does not join either, but for a run of segments with less payload than headers,
    /// left unmerged): the waiting frame is finished and this one waits in its place.
    fn take_scratch(&mut self) -> bool {
        if self.held {
            // The caller finishes a frame waiting in a lent buffer first (`write_held`).
            return false;
        }
        if self.pending.len != 0 {
            if self.has_ready() {
                return false;
            }
            self.finish();
        }
        let frame = &self.scratch[..];
        let buf = &mut self.bufs[self.waiting];
        grow(buf, frame.len());
        buf[..frame.len()].copy_from_slice(frame);
        self.pending = pending_of(frame);
        true
    }

    /// Finishes the waiting frame (end of a poll), if there is room for it.
    pub fn flush(&mut self) {
        if self.pending.len != 0 && !self.held && !self.has_ready() {
            self.finish();
        }
    }

    /// The finished frame and what the device must do with it, if any; call
    /// [`sent`](Self::sent) once it is.
    pub fn ready(&self) -> Option<(&[u8], TxOffload)> {
        self.has_ready().then(|| {
            (
                &self.bufs[1 - self.waiting][..self.ready_len],
                self.ready_offload,
            )
        })
    }

    /// The finished frame went to the device.
    pub fn sent(&mut self) {
        self.ready_len = 0;
    }

    /// Moves the waiting frame to `ready` (which must be empty), with its headers fixed and its
    /// offload.
    fn finish(&mut self) {
        let p = core::mem::take(&mut self.pending);
        let mut frame = core::mem::take(&mut self.bufs[self.waiting]);
        self.ready_offload = self.fix(p, &mut frame[..p.len]);
        self.bufs[self.waiting] = frame;
        self.ready_len = p.len;
        self.waiting = 1 - self.waiting;
    }

    /// Fixes the headers of a finished frame `p` (its bytes `frame`); returns its offload.
    fn fix(&mut self, p: Pending, frame: &mut [u8]) -> TxOffload {
        let mut offload = TxOffload::default();
        // What one segment on the wire may carry, for a frame over the MTU.
        let big = frame.len() > self.mtu_frame;
        // A large segment may end the stream (FIN): the device clears it on all but the last.
        let seg = p
            .seg
            .or_else(|| big.then(|| large_segment(frame)).flatten());
        match (p.count, seg) {
            (count, Some(s)) if count >= 2 || big => {
                let mss = match (p.seg, self.large_segments()) {
                    (None, _) => self.wire_mss(frame, s),
                    (Some(_), true) => self.wire_mss(frame, s).min(p.mss),
                    (Some(_), false) => p.mss,
                };
                let total = frame.len() - ETH;
                frame[ETH + 2..ETH + 4].copy_from_slice(&(total as u16).to_be_bytes());
                frame[ETH + 10..ETH + 12].fill(0);
                let ip_sum = !csum::fold(csum::add(0, &frame[ETH..s.tcp]));
                frame[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
                let pseudo = csum::fold(csum::pseudo_header_v4(
                    &frame[ETH + 12..ETH + 16],
                    &frame[ETH + 16..ETH + 20],
                    6,
                    frame.len() - s.tcp,
                ));
                frame[s.tcp + 16..s.tcp + 18].copy_from_slice(&pseudo.to_be_bytes());
                offload.checksum = Some(PartialChecksum {
                    start: s.tcp as u16,
                    offset: 16,
                });
                offload.tso = Some(Tso {
                    mss: mss as u16,
                    header_len: s.payload as u16,
                });
                self.merged_frames += 1;
                let payload = frame.len() - s.payload;
                self.merged_segments += payload.div_ceil(mss.max(1)) as u64;
            }
            _ => {
                self.clamp_syn(frame);
                offload.checksum = partial_checksum(frame, self.checksums);
            }
        }
        offload
    }

    /// Lets the stack make TCP segments larger than the MTU (the device cuts them), for a
    /// device whose frames are `mtu_frame` bytes: see the module docs, "Large segments".
    pub fn set_large_segments(&mut self, mtu_frame: usize) {
        self.mtu_frame = mtu_frame;
    }

    /// Whether [`set_large_segments`](Self::set_large_segments) was called.
    pub fn large_segments(&self) -> bool {
        self.mtu_frame != usize::MAX
    }

    /// Remembers the maximum segment sizes peers announced ([`learn_syn`]), the oldest
    /// forgotten beyond [`FLOWS`].
    pub fn learn(&mut self, flows: &mut Vec<Flow>) {
        for f in flows.drain(..) {
            self.flows.retain(|g| !g.same(&f));
            if self.flows.len() >= FLOWS {
                self.flows.remove(0);
            }
            self.flows.push(f);
        }
    }

    /// The payload a segment of `frame`'s flow may carry on the wire: the peer's MSS (or, not
    /// known, the MTU's) less the frame's TCP options.
    fn wire_mss(&self, frame: &[u8], s: Segment) -> usize {
        let options = s.payload - s.tcp - 20;
        let mtu_mss = self.mtu_frame.min(ETH + 1500) - ETH - 40;
        let key = flow_of(frame, s.tcp, false);
        let mss = self
            .flows
            .iter()
            .find(|f| key.as_ref().is_some_and(|k| f.same(k)))
            .map_or(mtu_mss, |f| usize::from(f.mss).min(mtu_mss));
        mss.saturating_sub(options).max(1)
    }

    /// An outgoing SYN announces the MTU's MSS, not the stack's (which the large MTU makes
    /// large): the peer's segments come through the device's MTU.
    fn clamp_syn(&self, frame: &mut [u8]) {
        if !self.large_segments() {
            return;
        }
        let Some((tcp, 6, len)) = transport(frame) else {
            return;
        };
        let mss = (self.mtu_frame - ETH - 40).min(usize::from(u16::MAX)) as u16;
        if let Some(at) = mss_option(frame, tcp, len)
            && u16::from_be_bytes([frame[at], frame[at + 1]]) > mss
        {
            frame[at..at + 2].copy_from_slice(&mss.to_be_bytes());
        }
    }
}

/// The headers of a TCP/IPv4 segment larger than the MTU the stack made (large segments):
/// as [`mergeable`], FIN allowed.
fn large_segment(frame: &[u8]) -> Option<Segment> {
    let (tcp, protocol, len) = transport(frame)?;
    if protocol != 6 || tcp + len != frame.len() || len < 20 {
        return None;
    }
    let payload = tcp + usize::from(frame[tcp + 12] >> 4) * 4;
    let flags = frame[tcp + 13] & !(PSH | 0x01);
    (payload >= tcp + 20 && payload < frame.len() && flags == ACK)
        .then_some(Segment { tcp, payload })
}

/// Peers whose announced MSS the coalescer remembers.
pub const FLOWS: usize = 64;

/// How much larger than the peer's MSS the stack's segments may be with large segments: the
/// stack then ACKs every this many of the peer's segments at the least (smoltcp ACKs at once
/// once more than the peer's MSS is unacknowledged), so not more.
pub const LARGE_FACTOR: usize = 8;

/// A TCP flow and the MSS its peer announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    remote: [u8; 4],
    remote_port: u16,
    local_port: u16,
    mss: u16,
}

impl Flow {
    fn same(&self, other: &Flow) -> bool {
        (self.remote, self.remote_port, self.local_port)
            == (other.remote, other.remote_port, other.local_port)
    }
}

/// The flow of a TCP/IPv4 frame whose TCP header is at `tcp`: received (`rx`: the remote is
/// the source) or sent.
fn flow_of(frame: &[u8], tcp: usize, rx: bool) -> Option<Flow> {
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    let (addr, remote_port, local_port) = if rx {
        (ETH + 12, port(tcp), port(tcp + 2))
    } else {
        (ETH + 16, port(tcp + 2), port(tcp))
    };
    Some(Flow {
        remote: frame.get(addr..addr + 4)?.try_into().ok()?,
        remote_port,
        local_port,
        mss: 0,
    })
}

/// Where the value of a SYN's MSS option is in `frame` (TCP header at `tcp`, `len` bytes of
/// TCP segment), if it has one. Every access is bounds-checked.
fn mss_option(frame: &[u8], tcp: usize, len: usize) -> Option<usize> {
    if len < 20 || frame.get(tcp + 13)? & 0x02 == 0 {
        return None;
    }
    let end = (tcp + usize::from(frame[tcp + 12] >> 4) * 4).min(tcp + len);
    let mut at = tcp + 20;
    while at < end {
        match *frame.get(at)? {
            0 => return None,
            1 => at += 1,
            kind => {
                let l = usize::from(*frame.get(at + 1)?);
                if l < 2 || at + l > end {
                    return None;
                }
                if kind == 2 && l == 4 {
                    return Some(at + 2);
                }
                at += l;
            }
        }
    }
    None
}

/// With large segments: the flow and MSS a received SYN announces, its MSS option rewritten
/// to [`LARGE_FACTOR`] times that (at most what a `max_frame` frame carries) and the TCP
/// checksum updated to match (RFC 1624), so that the stack makes segments that large; `None`
/// (the frame untouched) for anything else.
pub fn learn_syn(frame: &mut [u8], max_frame: usize) -> Option<Flow> {
    let (tcp, 6, len) = transport(frame)? else {
        return None;
    };
    let at = mss_option(frame, tcp, len)?;
    let mss = u16::from_be_bytes([frame[at], frame[at + 1]]);
    if mss == 0 {
        return None;
    }
    let mut flow = flow_of(frame, tcp, true)?;
    flow.mss = mss;
    let cap = max_frame.min(ETH + IP_MAX) - ETH - 40;
    let large = (usize::from(mss) * LARGE_FACTOR)
        .min(cap)
        .max(usize::from(mss)) as u16;
    frame[at..at + 2].copy_from_slice(&large.to_be_bytes());
    // HC' = ~(~HC + ~m + m'), in ones' complement.
    let old = u16::from_be_bytes([frame[tcp + 16], frame[tcp + 17]]);
    let sum = u32::from(!old) + u32::from(!mss) + u32::from(large);
    let new = !csum::fold(sum);
    frame[tcp + 16..tcp + 18].copy_from_slice(&new.to_be_bytes());
    Some(flow)
}

/// What [`Coalescer::write_held`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The frame waits in the held buffer (joined to the frame there, or the first).
    Joined,
    /// The frame did not join: it is in the scratch buffer, and the held buffer holds a
    /// finished frame of this length, to send with this offload.
    Finished(usize, TxOffload),
    /// The held buffer was not used (too small): the frame is in the scratch buffer and no
    /// frame waited in a held buffer.
    Unused,
}

/// A frame waiting on its own (not merged yet).
fn pending_of(frame: &[u8]) -> Pending {
    let seg = mergeable(frame);
    Pending {
        len: frame.len(),
        mss: seg.map_or(0, |s| frame.len() - s.payload),
        open: seg.is_some_and(|s| frame[s.tcp + 13] & PSH == 0),
        seg,
        count: 1,
    }
}

/// Lets `fill` write a frame of `len` bytes in place after the waiting frame `p` in `buf`
/// (the module docs: its headers over the waiting frame's last bytes, saved and put back) and
/// joins it if it may (`true`); otherwise the frame ends up in `scratch` (`false`), the
/// waiting frame's bytes as they were. `buf` holds at least `p.len` bytes, and the segment
/// after them when it could join.
fn join_in_place(
    pending: &mut Pending,
    max_frame: usize,
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
    len: usize,
    fill: &mut dyn FnMut(&mut [u8]),
) -> bool {
    let p = *pending;
    if let Some(s) = p.seg.filter(|_| p.open) {
        let hdr = s.payload;
        // The new segment's headers go over the waiting frame's last `hdr` bytes, which
        // must be payload (not its own headers).
        let at = p.len - hdr;
        if at >= hdr
            && len > hdr
            && len - hdr <= p.mss
            && p.len + len - hdr <= max_frame
            && at + len <= buf.len()
        {
            let mut saved = [0u8; MAX_HEADERS];
            let n = hdr.min(MAX_HEADERS);
            saved[..n].copy_from_slice(&buf[at..at + n]);
            buf[at..at + len.min(MAX_HEADERS)].fill(0);
            fill(&mut buf[at..at + len]);
            let (old, new) = buf.split_at_mut(at);
            let joined = joins(&p, max_frame, old, &new[..len]);
            let flags = new[s.tcp + 13];
            if !joined {
                scratch.clear();
                scratch.extend_from_slice(&new[..len]);
            }
            buf[at..at + n].copy_from_slice(&saved[..n]);
            if joined {
                // The merged frame takes the segment's flags (PSH), which may close it, as
                // a shorter segment does.
                buf[s.tcp + 13] = flags;
                pending.len += len - hdr;
                pending.count += 1;
                pending.open = len - hdr == p.mss && flags & PSH == 0;
                return true;
            }
            return false;
        }
    }
    scratch.clear();
    scratch.resize(len, 0);
    fill(scratch);
    false
}

/// Whether `frame` may join the waiting frame `p`, whose bytes start with `old` (its headers
/// at least; its length is `p.len`), on a device that cuts frames of up to `max_frame` bytes.
fn joins(p: &Pending, max_frame: usize, old: &[u8], frame: &[u8]) -> bool {
    let Some(s) = p.seg.filter(|_| p.open) else {
        return false;
    };
    if mergeable(frame) != Some(s) || old.len() < s.payload {
        return false;
    }
    let add = frame.len() - s.payload;
    if add > p.mss || p.len + add > max_frame {
        return false;
    }
    let seq_at =
        |f: &[u8]| u32::from_be_bytes([f[s.tcp + 4], f[s.tcp + 5], f[s.tcp + 6], f[s.tcp + 7]]);
    let next = seq_at(old).wrapping_add((p.len - s.payload) as u32);
    // Every header byte but the IPv4 total length, identification and checksum, and the
    // TCP sequence number, flags and checksum.
    let (ip, t) = (ETH, s.tcp);
    let skip = |i: usize| {
        (ip..t).contains(&i) && matches!(i - ip, 2..6 | 10..12)
            || i >= t && matches!(i - t, 4..8 | 13 | 16..18)
    };
    let same = (0..s.payload).all(|i| skip(i) || old[i] == frame[i]);
    // The waiting frame's flags are ACK alone (no PSH yet: a PSH ends it).
    same && seq_at(frame) == next && old[t + 13] == ACK
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netdev::ChecksumOffload;
    use netdev::fake::apply_offload;
    use platform::fuzz::Rng;
    use std::vec;

    fn both() -> Checksums {
        Checksums {
            ipv4: ChecksumOffload::None,
            tcp: ChecksumOffload::Both,
            udp: ChecksumOffload::Both,
            icmpv4: ChecksumOffload::None,
        }
    }

    /// A TCP segment of flow `flow` (ports and addresses), with full checksums.
    pub(crate) fn tcp(
        flow: u8,
        seq: u32,
        ack: u32,
        flags: u8,
        opts: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let thl = 20 + opts.len();
        let mut f = vec![0u8; ETH + 20 + thl];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[8, 0]);
        let total = (20 + thl + payload.len()) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[20] = 0x40; // DF
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 2, 15]);
        f[30..34].copy_from_slice(&[10, 0, 2, 2 + flow]);
        let ip_sum = !csum::fold(csum::add(0, &f[14..34]));
        f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        let t = 34;
        f[t..t + 2].copy_from_slice(&80u16.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&(40000 + u16::from(flow)).to_be_bytes());
        f[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        f[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
        f[t + 12] = ((thl / 4) as u8) << 4;
        f[t + 13] = flags;
        f[t + 14..t + 16].copy_from_slice(&64000u16.to_be_bytes());
        f[t + 20..t + thl].copy_from_slice(opts);
        f.extend_from_slice(payload);
        let pseudo = csum::pseudo_header_v4(&f[26..30], &f[30..34], 6, f.len() - t);
        let sum = !csum::fold(csum::add(pseudo, &f[t..]));
        f[t + 16..t + 18].copy_from_slice(&sum.to_be_bytes());
        f
    }

    /// Runs `frames` through a coalescer as the adapter does (sending the finished frame
    /// before each new one, flushing at the end) and through the device's segmentation.
    fn round_trip(frames: &[Vec<u8>], max: usize) -> (Vec<Vec<u8>>, usize) {
        let mut c = Coalescer::new(max, both());
        let mut sent = Vec::new();
        let mut out = Vec::new();
        let send = |c: &mut Coalescer, sent: &mut Vec<(Vec<u8>, TxOffload)>| {
            if let Some((f, o)) = c.ready() {
                assert!(f.len() <= max.max(1514), "{} > {max}", f.len());
                sent.push((f.to_vec(), o));
                c.sent();
            }
        };
        for f in frames {
            send(&mut c, &mut sent);
            let mut b = c.buffer(f.len());
            b.copy_from_slice(f);
            assert!(c.push(b));
        }
        send(&mut c, &mut sent);
        c.flush();
        send(&mut c, &mut sent);
        assert!(c.is_empty());
        for (f, o) in &sent {
            out.extend(apply_offload(f, *o).expect("the device can apply it"));
        }
        (out, sent.len())
    }

    #[test]
    fn a_run_of_segments_becomes_one_frame_and_comes_back_the_same() {
        let mut frames = Vec::new();
        for i in 0..40u32 {
            let flags = if i == 39 { ACK | PSH } else { ACK };
            let payload = vec![i as u8; if i == 39 { 100 } else { 1460 }];
            frames.push(tcp(0, 1000 + i * 1460, 7, flags, &[], &payload));
        }
        let (out, sent) = round_trip(&frames, 65_549);
        assert_eq!(sent, 1, "one TSO frame");
        assert_eq!(out, frames);
        // A smaller device limit cuts the run into several frames.
        let (out, sent) = round_trip(&frames, 16_000);
        assert_eq!(out, frames);
        assert_eq!(
            sent,
            40usize.div_ceil(10),
            "10 segments of 1460 fit 16,000 bytes"
        );
    }

    #[test]
    fn what_may_not_merge_does_not() {
        let p = vec![1u8; 500];
        let cases: Vec<Vec<Vec<u8>>> = vec![
            // A gap in sequence.
            vec![tcp(0, 0, 1, ACK, &[], &p), tcp(0, 501, 1, ACK, &[], &p)],
            // Another flow, another acknowledgment, other options.
            vec![tcp(0, 0, 1, ACK, &[], &p), tcp(1, 500, 1, ACK, &[], &p)],
            vec![tcp(0, 0, 1, ACK, &[], &p), tcp(0, 500, 2, ACK, &[], &p)],
            vec![
                tcp(0, 0, 1, ACK, &[1, 1, 1, 1], &p),
                tcp(0, 500, 1, ACK, &[1, 1, 1, 0], &p),
            ],
            // FIN, SYN, RST, URG; a PSH ends the frame; a longer segment after a shorter one.
            vec![
                tcp(0, 0, 1, ACK, &[], &p),
                tcp(0, 500, 1, ACK | 0x01, &[], &p),
            ],
            vec![
                tcp(0, 0, 1, ACK | 0x02, &[], &p),
                tcp(0, 500, 1, ACK, &[], &p),
            ],
            vec![
                tcp(0, 0, 1, ACK | 0x04, &[], &p),
                tcp(0, 500, 1, ACK, &[], &p),
            ],
            vec![
                tcp(0, 0, 1, ACK | 0x20, &[], &p),
                tcp(0, 500, 1, ACK, &[], &p),
            ],
            vec![
                tcp(0, 0, 1, ACK | PSH, &[], &p),
                tcp(0, 500, 1, ACK, &[], &p),
            ],
            vec![
                tcp(0, 0, 1, ACK, &[], &p[..100]),
                tcp(0, 100, 1, ACK, &[], &p),
            ],
            // No payload (a pure ACK).
            vec![tcp(0, 0, 1, ACK, &[], &[]), tcp(0, 0, 1, ACK, &[], &[])],
        ];
        for (i, frames) in cases.iter().enumerate() {
            let (out, sent) = round_trip(frames, 65_549);
            assert_eq!(sent, 2, "case {i}");
            assert_eq!(&out, frames, "case {i}");
        }
    }

    #[test]
    fn seeded_random_streams_come_back_byte_for_byte() {
        let mut saved = 0;
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut seqs = [0u32; 3];
            let mut frames = Vec::new();
            let mss = 200 + rng.below(1300) as usize;
            let n = 1 + rng.below(120);
            for _ in 0..n {
                let flow = rng.below(3) as usize;
                let r = rng.below(100);
                let (len, flags) = match r {
                    0..70 => (mss, ACK),
                    70..80 => (1 + rng.below(mss as u64) as usize, ACK),
                    80..85 => (mss, ACK | PSH),
                    85..90 => (0, ACK),
                    90..93 => (rng.below(mss as u64) as usize, ACK | 0x01),
                    93..96 => (mss + 1 + rng.below(100) as usize, ACK),
                    _ => {
                        // A UDP or ARP frame in between.
                        let mut f = tcp(flow as u8, 0, 0, ACK, &[], &[9; 30]);
                        if r == 96 {
                            f[12..14].copy_from_slice(&[8, 6]);
                        } else {
                            f[23] = 17;
                            let ulen = f.len() as u16 - 34;
                            f[38..40].copy_from_slice(&ulen.to_be_bytes());
                            f[40..42].fill(0);
                            let ps =
                                csum::pseudo_header_v4(&f[26..30], &f[30..34], 17, f.len() - 34);
                            let ip_sum = !csum::fold(csum::add(0, &{
                                let mut h = f[14..34].to_vec();
                                h[10..12].fill(0);
                                h
                            }));
                            f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
                            let s = !csum::fold(csum::add(ps, &f[34..]));
                            f[40..42].copy_from_slice(&s.to_be_bytes());
                        }
                        frames.push(f);
                        continue;
                    }
                };
                // Sometimes a retransmission (a sequence number out of line).
                if rng.chance(5) {
                    seqs[flow] = seqs[flow].wrapping_sub(rng.below(3000) as u32);
                }
                let payload: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
                frames.push(tcp(flow as u8, seqs[flow], 99, flags, &[], &payload));
                seqs[flow] = seqs[flow].wrapping_add(len as u32);
            }
            let max = [65_549, 9_000, 3_000][rng.below(3) as usize];
            let (out, sent) = round_trip(&frames, max);
            assert_eq!(out, frames, "seed {seed}");
            assert!(sent <= frames.len());
            saved += frames.len() - sent;
        }
        // Runs were merged: most segments in these streams follow their flow's last one.
        assert!(saved > 2000, "{saved} frames saved");
    }

    #[test]
    fn a_partial_checksum_is_the_pseudo_header_sum() {
        let mut f = tcp(0, 5, 6, ACK, &[], b"hello");
        let good = f.clone();
        f[34 + 16..34 + 18].fill(0);
        let c = partial_checksum(&mut f, both()).expect("TCP");
        assert_eq!(
            c,
            PartialChecksum {
                start: 34,
                offset: 16
            }
        );
        netdev::fake::complete_checksum(&mut f, c).expect("fits");
        assert_eq!(f, good);
        // Not when the stack computes them; not for garbage.
        assert_eq!(partial_checksum(&mut f, Checksums::default()), None);
        assert_eq!(partial_checksum(&mut [0xff; 40], both()), None);
        assert_eq!(partial_checksum(&mut [], both()), None);
    }

    #[test]
    fn segments_written_in_place_join_and_a_byte_the_stack_leaves_alone_is_zero() {
        let mut c = Coalescer::new(65_549, both());
        let mut frames = Vec::new();
        for i in 0..10u32 {
            frames.push(tcp(0, 1000 + i * 1460, 7, ACK, &[], &vec![i as u8; 1460]));
        }
        for f in &frames {
            assert!(c.write(f.len(), &mut |b| b.copy_from_slice(f)));
        }
        // Another flow's segment does not join; its writer skips one header byte (the TCP
        // urgent pointer's), which was payload of the waiting frame before.
        let other = tcp(1, 5, 7, ACK, &[], &[9; 1460]);
        let skip = ETH + 20 + 18;
        assert!(c.write(other.len(), &mut |b| {
            b[..skip].copy_from_slice(&other[..skip]);
            b[skip + 1..].copy_from_slice(&other[skip + 1..]);
        }));
        let (merged, o) = c.ready().expect("the run finished");
        assert!(o.tso.is_some());
        let merged = merged.to_vec();
        c.sent();
        c.flush();
        let (alone, _) = c.ready().expect("the other frame");
        assert_eq!(alone[skip], 0);
        assert_eq!(alone[skip + 1..], other[skip + 1..]);
        assert_eq!(
            apply_offload(&merged, o).expect("the device can apply it"),
            frames,
            "the run comes back the same"
        );
        assert_eq!(c.merged(), (1, 10));
    }

    #[test]
    fn large_segments_learn_the_peers_mss_and_go_out_cut_to_it() {
        let mss_opt = [2, 4, 0x05, 0xb4]; // 1460
        // A SYN from the peer (flow 0 as the stack sends it, so the other way round).
        let mut syn = tcp(0, 0, 0, 0x02, &mss_opt, &[]);
        syn[26..30].copy_from_slice(&[10, 0, 2, 2]);
        syn[30..34].copy_from_slice(&[10, 0, 2, 15]);
        syn[34..36].copy_from_slice(&40000u16.to_be_bytes());
        syn[36..38].copy_from_slice(&80u16.to_be_bytes());
        let pseudo = csum::pseudo_header_v4(&syn[26..30], &syn[30..34], 6, syn.len() - 34);
        syn[50..52].fill(0);
        let sum = !csum::fold(csum::add(pseudo, &syn[34..]));
        syn[50..52].copy_from_slice(&sum.to_be_bytes());
        let flow = learn_syn(&mut syn, 65_549).expect("a SYN with an MSS");
        assert_eq!(flow.mss, 1460);
        assert_eq!(syn[56..58], (1460u16 * 8).to_be_bytes(), "raised");
        assert_eq!(
            csum::fold(csum::add(pseudo, &syn[34..])),
            0xffff,
            "its checksum still right"
        );
        // Anything else is left alone, garbage included.
        let data = tcp(0, 1, 1, ACK, &mss_opt, &[1; 10]);
        assert_eq!(learn_syn(&mut data.clone(), 65_549), None);
        let mut rng = Rng::new(9);
        for _ in 0..20_000 {
            let mut f = syn.clone();
            f.truncate(rng.below(f.len() as u64 + 1) as usize);
            for _ in 0..rng.below(4) {
                if !f.is_empty() {
                    let at = rng.below(f.len() as u64) as usize;
                    f[at] = rng.below(256) as u8;
                }
            }
            let _ = learn_syn(&mut f, 65_549);
        }
        // The stack's large segments of that flow go out as TSO frames cut at 1460, and the
        // SYN it sends announces the MTU's MSS.
        let mut c = Coalescer::new(65_549, both());
        c.set_large_segments(1514);
        c.learn(&mut vec![Flow { mss: 536, ..flow }]);
        let mut frames = Vec::new();
        for i in 0..6u32 {
            let flags = if i == 5 { ACK | 0x01 } else { ACK };
            frames.push(tcp(0, i * 4288, 7, flags, &[], &vec![i as u8; 4288]));
        }
        let mut out = Vec::new();
        for f in &frames {
            if let Some((r, o)) = c.ready() {
                out.push((r.to_vec(), o));
                c.sent();
            }
            assert!(c.write(f.len(), &mut |b| b.copy_from_slice(f)));
        }
        for _ in 0..2 {
            if let Some((r, o)) = c.ready() {
                out.push((r.to_vec(), o));
                c.sent();
            }
            c.flush();
        }
        let mut payload = Vec::new();
        for (f, o) in &out {
            let tso = o.tso.expect("over the MTU: TSO");
            assert_eq!(tso.mss, 536, "the peer's MSS");
            for seg in apply_offload(f, *o).expect("the device can cut it") {
                assert!(seg.len() <= 54 + 536);
                payload.extend_from_slice(&seg[54..]);
            }
        }
        let sent: Vec<u8> = frames.iter().flat_map(|f| f[54..].to_vec()).collect();
        assert_eq!(payload, sent);
        let mut ours = tcp(0, 0, 0, 0x02, &[2, 4, 0xff, 0xd7], &[]);
        assert!(c.write(ours.len(), &mut |b| b.copy_from_slice(&ours)));
        c.flush();
        let (f, _) = c.ready().expect("the SYN");
        ours[56..58].copy_from_slice(&1460u16.to_be_bytes());
        assert_eq!(f[56..58], ours[56..58], "clamped to the MTU's");
    }

    #[test]
    fn garbage_never_panics_the_coalescer() {
        let mut rng = Rng::new(7);
        let base = tcp(0, 0, 1, ACK, &[1, 2, 3, 4], &[5; 300]);
        let mut c = Coalescer::new(65_549, both());
        for _ in 0..20_000 {
            let mut f = base.clone();
            f.truncate(rng.below(f.len() as u64 + 1) as usize);
            for _ in 0..rng.below(4) {
                if !f.is_empty() {
                    let at = rng.below(f.len() as u64) as usize;
                    f[at] = rng.below(256) as u8;
                }
            }
            if c.has_ready() {
                c.sent();
            }
            let mut b = c.buffer(f.len());
            b.copy_from_slice(&f);
            assert!(c.push(b));
        }
    }
}
