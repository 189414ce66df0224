//! Fakes for host tests: devices on in-memory queues, and a wrapper that injects faults.
//!
//! ```text
//! use netdev::fake::{pair, Faults, Faulty};
//! use netdev::{MacAddress, NetDevice, RxToken, TxToken};
//! let (mut a, b) = pair(MacAddress([2, 0, 0, 0, 0, 1]), MacAddress([2, 0, 0, 0, 0, 2]));
//! let mut b = Faulty::new(b, Faults::none(), 7);
//! let tx = a.transmit().expect("room");
//! tx.consume(60, |frame| frame.fill(0xab));
//! let (rx, _) = b.receive().expect("one frame");
//! assert_eq!(rx.consume(|frame| frame.len()), 60);
//! ```
use crate::{
    Capabilities, DeviceStats, HeldTx, MacAddress, NetDevice, PartialChecksum, RxChecksum, RxToken,
    TxOffload, TxToken, csum,
};
use platform::fuzz::Rng;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

/// A queue of frames in flight, shared by the two ends of a wire.
type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// Frames a fake holds on its receive queue before it drops new ones (like a full RX ring).
pub const QUEUE_FRAMES: usize = 256;

/// Transmit buffers a fake with TSO lends at once ([`NetDevice::hold_transmit`]): few, so that
/// callers meet a device with none left.
pub const HELD_BUFFERS: usize = 2;

/// A device on in-memory queues: what it sends goes to its transmit queue, what it receives comes
/// from its receive queue. Made by [`pair`] or [`Loopback::new`].
#[derive(Debug)]
pub struct FakeDevice {
    caps: Capabilities,
    rx: Queue,
    tx: Queue,
    stats: Arc<Mutex<DeviceStats>>,
    /// What the peer's receive side counts as dropped when its queue is full.
    peer_stats: Arc<Mutex<DeviceStats>>,
    /// Transmit buffers lent ([`NetDevice::hold_transmit`], with TSO only).
    held: [Option<Vec<u8>>; HELD_BUFFERS],
    /// How many it lends at once (at most [`HELD_BUFFERS`]).
    lend: usize,
    /// Frames sent from lent buffers.
    held_sent: u64,
}

/// Two devices wired back to back: what one sends, the other receives.
pub fn pair(a: MacAddress, b: MacAddress) -> (FakeDevice, FakeDevice) {
    let (ab, ba): (Queue, Queue) = (Queue::default(), Queue::default());
    let (sa, sb) = (
        Arc::new(Mutex::new(DeviceStats::default())),
        Arc::new(Mutex::new(DeviceStats::default())),
    );
    (
        FakeDevice {
            caps: Capabilities::ethernet(a),
            rx: ba.clone(),
            tx: ab.clone(),
            stats: sa.clone(),
            peer_stats: sb.clone(),
            held: Default::default(),
            lend: HELD_BUFFERS,
            held_sent: 0,
        },
        FakeDevice {
            caps: Capabilities::ethernet(b),
            rx: ab,
            tx: ba,
            stats: sb,
            peer_stats: sa,
            held: Default::default(),
            lend: HELD_BUFFERS,
            held_sent: 0,
        },
    )
}

/// A device whose every frame sent comes back as received.
#[derive(Debug)]
pub struct Loopback;

impl Loopback {
    /// A loopback device with `mac`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(mac: MacAddress) -> FakeDevice {
        let queue = Queue::default();
        let stats = Arc::new(Mutex::new(DeviceStats::default()));
        FakeDevice {
            caps: Capabilities::ethernet(mac),
            rx: queue.clone(),
            tx: queue,
            stats: stats.clone(),
            peer_stats: stats,
            held: Default::default(),
            lend: HELD_BUFFERS,
            held_sent: 0,
        }
    }
}

impl FakeDevice {
    /// The same device with other capabilities (an MTU, offloads).
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// Lends at most `n` transmit buffers at once from now on (0: none, as a device that does
    /// not lend; at most [`HELD_BUFFERS`]).
    pub fn set_lending(&mut self, n: usize) {
        self.lend = n.min(HELD_BUFFERS);
    }

    /// Frames sent from lent buffers ([`NetDevice::send_held`]).
    pub fn held_sent(&self) -> u64 {
        self.held_sent
    }

    /// Frames waiting on this device's receive queue.
    pub fn pending(&self) -> usize {
        lock(&self.rx).len()
    }

    /// Puts `frame` on this device's receive queue, as if it had arrived.
    pub fn inject(&self, frame: &[u8]) {
        lock(&self.rx).push_back(frame.to_vec());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("fake device lock poisoned")
}

/// A received frame of a fake (owned).
#[derive(Debug)]
pub struct FakeRx {
    frame: Vec<u8>,
    checksum: RxChecksum,
}

impl RxToken for FakeRx {
    fn consume<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self.frame)
    }

    fn checksum(&self) -> RxChecksum {
        self.checksum
    }
}

/// A transmit buffer of a fake.
#[derive(Debug)]
pub struct FakeTx<'a> {
    device: &'a FakeDevice,
}

impl TxToken for FakeTx<'_> {
    fn consume<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.consume_offload(len, |frame| (f(frame), TxOffload::default()))
    }

    /// Does what a device does with the offload: completes the checksum, cuts a TSO frame into
    /// segments for the peer ([`apply_offload`]); an offload the capabilities do not offer, or
    /// a frame it cannot apply to, drops the frame (counted in `tx_dropped`).
    fn consume_offload<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> (R, TxOffload)) -> R {
        let mut frame = std::vec![0; len];
        let (result, offload) = f(&mut frame);
        emit(self.device, &frame, offload);
        result
    }
}

/// Sends `frame` with `offload` as the fake's transmit token does.
fn emit(d: &FakeDevice, frame: &[u8], offload: TxOffload) {
    let len = frame.len();
    {
        let max = match (offload.tso, d.caps.tso) {
            (Some(_), Some(tso)) => tso,
            (Some(_), None) => 0,
            (None, _) => d.caps.max_frame(),
        };
        let offered = offload.checksum.is_none() || d.caps.checksums.tcp.device_computes();
        let frames = (len != 0 && len <= max && offered)
            .then(|| apply_offload(frame, offload))
            .flatten();
        let Some(frames) = frames else {
            lock(&d.stats).tx_dropped += 1;
            return;
        };
        {
            let mut s = lock(&d.stats);
            s.tx_frames += 1;
            s.tx_bytes += len as u64;
        }
        let mut queue = lock(&d.tx);
        for frame in frames {
            if queue.len() >= QUEUE_FRAMES {
                lock(&d.peer_stats).rx_dropped += 1;
            } else {
                queue.push_back(frame);
            }
        }
    }
}

/// Completes a partial transport checksum (the field holds the pseudo-header's sum), as a
/// device does; `None` if it does not fit the frame.
pub fn complete_checksum(frame: &mut [u8], c: PartialChecksum) -> Option<()> {
    let (start, at) = (
        usize::from(c.start),
        usize::from(c.start) + usize::from(c.offset),
    );
    if at + 2 > frame.len() {
        return None;
    }
    let sum = !csum::fold(csum::add(0, &frame[start..]));
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Some(())
}

/// What a device sends for `frame` with `offload`: the frame with its checksum completed, or,
/// for TSO, its segments (each with the frame's headers, its IPv4 total length and header
/// checksum, its sequence number and full TCP checksum; PSH and FIN only on the last; the IPv4
/// identification kept, as smoltcp sets DF and no identification). `None` for a frame the
/// offload does not fit (not TCP/IPv4, headers out of bounds, no checksum with TSO).
pub fn apply_offload(frame: &[u8], offload: TxOffload) -> Option<Vec<Vec<u8>>> {
    let Some(tso) = offload.tso else {
        let mut f = frame.to_vec();
        if let Some(c) = offload.checksum {
            complete_checksum(&mut f, c)?;
        }
        return Some(std::vec![f]);
    };
    let c = offload.checksum?;
    let (hl, mss) = (usize::from(tso.header_len), usize::from(tso.mss));
    if mss == 0 || frame.len() < 14 + 20 || frame[12..14] != [8, 0] {
        return None;
    }
    let ihl = usize::from(frame[14] & 0xf) * 4;
    let tcp = 14 + ihl;
    if ihl < 20 || frame[14 + 9] != 6 || usize::from(c.start) != tcp || c.offset != 16 {
        return None;
    }
    if tcp + 20 > hl || hl > frame.len() {
        return None;
    }
    let seq0 = u32::from_be_bytes(frame[tcp + 4..tcp + 8].try_into().ok()?);
    let payload = &frame[hl..];
    let count = payload.len().div_ceil(mss).max(1);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let mut seg = frame[..hl].to_vec();
        seg.extend_from_slice(chunk);
        let total = (seg.len() - 14) as u16;
        seg[16..18].copy_from_slice(&total.to_be_bytes());
        seg[24..26].fill(0);
        let ip_sum = !csum::fold(csum::add(0, &seg[14..tcp]));
        seg[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        let seq = seq0.wrapping_add((i * mss) as u32);
        seg[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < count {
            seg[tcp + 13] &= !(0x08 | 0x01); // PSH, FIN
        }
        seg[tcp + 16..tcp + 18].fill(0);
        let pseudo = csum::pseudo_header_v4(&seg[26..30], &seg[30..34], 6, seg.len() - tcp);
        let sum = !csum::fold(csum::add(pseudo, &seg[tcp..]));
        seg[tcp + 16..tcp + 18].copy_from_slice(&sum.to_be_bytes());
        out.push(seg);
    }
    Some(out)
}

impl NetDevice for FakeDevice {
    type RxToken<'a> = FakeRx;
    type TxToken<'a> = FakeTx<'a>;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn receive(&mut self) -> Option<(FakeRx, FakeTx<'_>)> {
        let frame = lock(&self.rx).pop_front()?;
        {
            let mut s = lock(&self.stats);
            s.rx_frames += 1;
            s.rx_bytes += frame.len() as u64;
        }
        Some((
            FakeRx {
                frame,
                checksum: RxChecksum::Unknown,
            },
            FakeTx { device: self },
        ))
    }

    fn transmit(&mut self) -> Option<FakeTx<'_>> {
        Some(FakeTx { device: self })
    }

    /// Lends one of [`HELD_BUFFERS`] buffers of the TSO size, with TSO only.
    fn hold_transmit(&mut self, len: usize) -> Option<HeldTx> {
        let tso = self.caps.tso.filter(|&t| len <= t)?;
        if self.held.iter().filter(|h| h.is_some()).count() >= self.lend {
            return None;
        }
        let i = self.held.iter().position(Option::is_none)?;
        // Stale bytes, not zeros: a caller must not count on a fresh buffer.
        self.held[i] = Some(std::vec![0x5a; tso]);
        Some(HeldTx(i as u16))
    }

    fn held_buffer(&mut self, held: &HeldTx) -> &mut [u8] {
        match self.held.get_mut(usize::from(held.0)) {
            Some(Some(buf)) => buf,
            _ => &mut [],
        }
    }

    fn send_held(&mut self, held: HeldTx, len: usize, offload: TxOffload) {
        match self
            .held
            .get_mut(usize::from(held.0))
            .and_then(Option::take)
        {
            Some(buf) if len <= buf.len() => {
                self.held_sent += 1;
                emit(self, &buf[..len], offload);
            }
            _ => lock(&self.stats).tx_dropped += 1,
        }
    }

    fn release_held(&mut self, held: HeldTx) {
        if let Some(slot) = self.held.get_mut(usize::from(held.0)) {
            *slot = None;
        }
    }

    fn poll_interrupt(&mut self) -> bool {
        !lock(&self.rx).is_empty()
    }

    fn stats(&self) -> DeviceStats {
        *lock(&self.stats)
    }
}

/// How often (in percent of received frames) [`Faulty`] does each thing to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// The frame is lost.
    pub drop: u8,
    /// The frame arrives twice.
    pub duplicate: u8,
    /// The frame is held back and arrives after the next one.
    pub reorder: u8,
    /// One byte of the frame is flipped.
    pub corrupt: u8,
    /// The frame is cut short at a random length.
    pub truncate: u8,
}

impl Faults {
    /// No faults: a transparent wrapper.
    pub const fn none() -> Self {
        Faults {
            drop: 0,
            duplicate: 0,
            reorder: 0,
            corrupt: 0,
            truncate: 0,
        }
    }

    /// A lossy, noisy link: `percent` of each fault.
    pub const fn each(percent: u8) -> Self {
        Faults {
            drop: percent,
            duplicate: percent,
            reorder: percent,
            corrupt: percent,
            truncate: percent,
        }
    }
}

/// What [`Faulty`] did, for tests to check that faults happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultCounts {
    /// Frames dropped.
    pub dropped: u64,
    /// Frames duplicated.
    pub duplicated: u64,
    /// Frames reordered.
    pub reordered: u64,
    /// Frames corrupted.
    pub corrupted: u64,
    /// Frames truncated.
    pub truncated: u64,
}

/// Wraps a device and injects [`Faults`] into what it receives, from a seed (the same seed, the
/// same faults). Transmission goes through unchanged: wrap the other end for faults that way.
#[derive(Debug)]
pub struct Faulty<D> {
    inner: D,
    faults: Faults,
    rng: Rng,
    ready: VecDeque<Vec<u8>>,
    held: Option<Vec<u8>>,
    counts: FaultCounts,
}

impl<D: NetDevice> Faulty<D> {
    /// `inner` with `faults`, drawn from `seed`.
    pub fn new(inner: D, faults: Faults, seed: u64) -> Self {
        Faulty {
            inner,
            faults,
            rng: Rng::new(seed),
            ready: VecDeque::new(),
            held: None,
            counts: FaultCounts::default(),
        }
    }

    /// What was done so far.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Changes the faults from now on (`Faults::none()` heals the link; a held-back frame is
    /// delivered at the next receive).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Moves what the inner device received onto `ready`, doing the faults on the way.
    fn pull(&mut self) {
        while let Some((rx, _)) = self.inner.receive() {
            let mut frame = rx.consume(|f| f.to_vec());
            let f = self.faults;
            if self.rng.chance(f.drop.into()) {
                self.counts.dropped += 1;
                continue;
            }
            if !frame.is_empty() && self.rng.chance(f.corrupt.into()) {
                let at = self.rng.below(frame.len() as u64) as usize;
                frame[at] ^= 1 << self.rng.below(8);
                self.counts.corrupted += 1;
            }
            if frame.len() > 1 && self.rng.chance(f.truncate.into()) {
                let len = 1 + self.rng.below(frame.len() as u64 - 1) as usize;
                frame.truncate(len);
                self.counts.truncated += 1;
            }
            if self.rng.chance(f.duplicate.into()) {
                self.ready.push_back(frame.clone());
                self.counts.duplicated += 1;
            }
            if self.held.is_none() && self.rng.chance(f.reorder.into()) {
                self.held = Some(frame);
                self.counts.reordered += 1;
                continue;
            }
            self.ready.push_back(frame);
            if let Some(held) = self.held.take() {
                self.ready.push_back(held);
            }
        }
        if self.faults.reorder == 0 {
            // Nothing will come after a held frame to overtake it: let it go.
            if let Some(held) = self.held.take() {
                self.ready.push_back(held);
            }
        }
    }
}

impl<D: NetDevice> NetDevice for Faulty<D> {
    type RxToken<'a>
        = FakeRx
    where
        D: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        D: 'a;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn receive(&mut self) -> Option<(FakeRx, D::TxToken<'_>)> {
        self.pull();
        if self.ready.is_empty() {
            return None;
        }
        let tx = self.inner.transmit()?;
        let frame = self.ready.pop_front()?;
        Some((
            FakeRx {
                frame,
                checksum: RxChecksum::Unknown,
            },
            tx,
        ))
    }

    fn transmit(&mut self) -> Option<D::TxToken<'_>> {
        self.inner.transmit()
    }

    fn transmit_sized(&mut self, len: usize) -> Option<D::TxToken<'_>> {
        self.inner.transmit_sized(len)
    }

    fn hold_transmit(&mut self, len: usize) -> Option<HeldTx> {
        self.inner.hold_transmit(len)
    }

    fn held_buffer(&mut self, held: &HeldTx) -> &mut [u8] {
        self.inner.held_buffer(held)
    }

    fn send_held(&mut self, held: HeldTx, len: usize, offload: TxOffload) {
        self.inner.send_held(held, len, offload)
    }

    fn release_held(&mut self, held: HeldTx) {
        self.inner.release_held(held)
    }

    fn poll_interrupt(&mut self) -> bool {
        self.inner.poll_interrupt() || !self.ready.is_empty()
    }

    fn flush(&mut self) {
        self.inner.flush()
    }

    fn stats(&self) -> DeviceStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
    const B: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);

    fn send(dev: &mut impl NetDevice, byte: u8, len: usize) {
        dev.transmit().expect("room").consume(len, |f| f.fill(byte));
    }

    fn recv_all(dev: &mut impl NetDevice) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((rx, _)) = dev.receive() {
            out.push(rx.consume(|f| f.to_vec()));
        }
        out
    }

    #[test]
    fn a_pair_carries_frames_both_ways_in_order() {
        let (mut a, mut b) = pair(A, B);
        for i in 0..10 {
            send(&mut a, i, 60 + usize::from(i));
        }
        send(&mut b, 0xee, 100);
        let got = recv_all(&mut b);
        assert_eq!(got.len(), 10);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(f.len(), 60 + i);
            assert!(f.iter().all(|&x| usize::from(x) == i));
        }
        assert_eq!(recv_all(&mut a), vec![vec![0xee; 100]]);
        assert_eq!(a.stats().tx_frames, 10);
        assert_eq!(b.stats().rx_frames, 10);
        assert_eq!(b.stats().rx_bytes, (60..70).sum::<u64>());
    }

    #[test]
    fn loopback_returns_what_it_sends() {
        let mut l = Loopback::new(A);
        send(&mut l, 7, 42);
        assert!(l.poll_interrupt());
        assert_eq!(recv_all(&mut l), vec![vec![7; 42]]);
        assert!(!l.poll_interrupt());
    }

    #[test]
    fn bad_lengths_are_dropped_and_counted() {
        let (mut a, mut b) = pair(A, B);
        send(&mut a, 1, 0);
        send(&mut a, 1, 1515);
        send(&mut a, 1, 1514);
        assert_eq!(a.stats().tx_dropped, 2);
        assert_eq!(recv_all(&mut b).len(), 1);
    }

    #[test]
    fn a_full_queue_drops_like_a_full_ring() {
        let (mut a, mut b) = pair(A, B);
        for _ in 0..QUEUE_FRAMES + 5 {
            send(&mut a, 1, 60);
        }
        assert_eq!(b.stats().rx_dropped, 5);
        assert_eq!(recv_all(&mut b).len(), QUEUE_FRAMES);
    }

    #[test]
    fn no_faults_is_transparent() {
        let (mut a, b) = pair(A, B);
        let mut b = Faulty::new(b, Faults::none(), 1);
        for i in 0..50 {
            send(&mut a, i, 64);
        }
        let got = recv_all(&mut b);
        assert_eq!(got.len(), 50);
        assert!(got.iter().enumerate().all(|(i, f)| f[0] as usize == i));
        assert_eq!(b.counts(), FaultCounts::default());
    }

    #[test]
    fn faults_happen_and_are_reproducible() {
        let run = |seed| {
            let (mut a, b) = pair(A, B);
            let mut b = Faulty::new(b, Faults::each(10), seed);
            let mut got = Vec::new();
            for i in 0..2000u32 {
                send(&mut a, (i % 251) as u8, 64);
                got.extend(recv_all(&mut b));
            }
            b.set_faults(Faults::none());
            got.extend(recv_all(&mut b));
            (got, b.counts())
        };
        let (frames, counts) = run(42);
        assert!(counts.dropped > 50 && counts.duplicated > 50, "{counts:?}");
        assert!(counts.reordered > 50 && counts.corrupted > 50, "{counts:?}");
        assert!(counts.truncated > 50, "{counts:?}");
        // Every frame not dropped arrives (duplicates twice), nothing is invented.
        assert_eq!(
            frames.len() as u64,
            2000 - counts.dropped + counts.duplicated
        );
        assert_eq!(run(42).0, frames, "the same seed, the same faults");
        assert_ne!(run(43).0, frames);
    }
}
