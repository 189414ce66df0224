//! Host tests: the driver against a mock device that plays the device's side of the virtqueues
//! on the shared memory (as rust-vmm's `virtio-queue` mock plays the driver's), over a fake
//! [`Transport`] and a [`Hal`] on host memory (virtio-drivers' own fakes are `cfg(test)` inside
//! that crate, so not usable here). The mock can also write garbage into the used rings.

use super::*;
use core::cell::RefCell;
use netdev::{HeldTx, NetDevice, RxToken, TxToken};
use platform::fuzz::Rng;
use std::rc::Rc;
use std::vec::Vec;
use virtio_drivers::transport::{DeviceStatus, InterruptStatus};
use virtio_support::host_hal::{HostHal, dma_pages};
use zerocopy::{FromBytes, Immutable, IntoBytes};

// ---- The device's registers (a fake transport) and its side of the rings (the mock). ----

const F_MAC: u64 = 1 << 5;
const F_STATUS: u64 = 1 << 16;
const F_MTU: u64 = 1 << 3;
const F_CSUM: u64 = 1 << 0;
const F_GUEST_CSUM: u64 = 1 << 1;
const F_MRG_RXBUF: u64 = 1 << 15;
const F_GUEST_TSO4: u64 = 1 << 7;
const F_HOST_TSO4: u64 = 1 << 11;
/// Everything QEMU's virtio-net offers that the driver may take.
const F_OFFLOADS: u64 = F_CSUM | F_GUEST_CSUM | F_GUEST_TSO4 | F_HOST_TSO4 | F_MRG_RXBUF;
const F_EVENT_IDX: u64 = 1 << 29;
const F_VERSION_1: u64 = 1 << 32;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

#[derive(Debug, Default, Clone, Copy)]
struct QueueRegs {
    size: u32,
    desc: u64,
    avail: u64,
    used: u64,
    ready: bool,
}

#[derive(Debug)]
struct Regs {
    features: u64,
    driver_features: u64,
    status: DeviceStatus,
    config: [u8; 12],
    queues: [QueueRegs; 2],
    max_queue: u32,
    isr: u32,
    notifies: [u32; 2],
    legacy: bool,
    /// The device does not take the driver's features (FEATURES_OK does not stick).
    refuse_features: bool,
}

#[derive(Debug)]
struct FakeTransport(Rc<RefCell<Regs>>);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Network
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.borrow().features
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.borrow_mut().driver_features = driver_features;
    }
    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        self.0.borrow().max_queue
    }
    fn notify(&mut self, queue: u16) {
        self.0.borrow_mut().notifies[usize::from(queue)] += 1;
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.borrow().status
    }
    fn set_status(&mut self, mut status: DeviceStatus) {
        let mut r = self.0.borrow_mut();
        if r.refuse_features {
            status.remove(DeviceStatus::FEATURES_OK);
        }
        r.status = status;
    }
    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        self.0.borrow().legacy
    }
    fn queue_set(&mut self, queue: u16, size: u32, desc: PhysAddr, avail: PhysAddr, used: u64) {
        self.0.borrow_mut().queues[usize::from(queue)] = QueueRegs {
            size,
            desc,
            avail,
            used,
            ready: true,
        };
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.borrow_mut().queues[usize::from(queue)] = QueueRegs::default();
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.borrow().queues[usize::from(queue)].ready
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        let mut r = self.0.borrow_mut();
        let isr = core::mem::take(&mut r.isr);
        InterruptStatus::from_bits_retain(isr)
    }
    fn read_config_generation(&self) -> u32 {
        0
    }
    fn read_config_space<V: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<V> {
        let r = self.0.borrow();
        let bytes = r
            .config
            .get(offset..)
            .ok_or(virtio_drivers::Error::ConfigSpaceTooSmall)?;
        V::read_from_prefix(bytes)
            .map(|(v, _)| v)
            .map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)
    }
    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: V,
    ) -> virtio_drivers::Result<()> {
        Err(virtio_drivers::Error::Unsupported)
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const RX: usize = 0;
const TX: usize = 1;

/// The device's side of the two queues, on the memory the driver shares.
struct Mock {
    regs: Rc<RefCell<Regs>>,
    last_avail: [u16; 2],
    used_idx: [u16; 2],
    hdr: usize,
    /// The headers of the frames `collect` took, in order.
    headers: Vec<Vec<u8>>,
    /// The address of the first receive buffer of the last frame delivered.
    last_rx: u64,
}

/// A descriptor chain the device took from the available ring (one descriptor: all the driver
/// makes).
#[derive(Debug, Clone, Copy)]
struct Chain {
    head: u16,
    addr: u64,
    len: u32,
    flags: u16,
}

impl Mock {
    /// A device with `features`, and the transport the driver gets.
    fn new(features: u64) -> (Mock, FakeTransport) {
        let mut config = [0u8; 12];
        config[..6].copy_from_slice(&MAC);
        config[6] = 1; // link up
        config[10..12].copy_from_slice(&9000u16.to_le_bytes()); // an MTU we must not use
        let regs = Rc::new(RefCell::new(Regs {
            features,
            driver_features: 0,
            status: DeviceStatus::empty(),
            config,
            queues: [QueueRegs::default(); 2],
            max_queue: 256,
            isr: 0,
            notifies: [0; 2],
            legacy: features & F_VERSION_1 == 0,
            refuse_features: false,
        }));
        let hdr = if features & (F_VERSION_1 | F_MRG_RXBUF) != 0 {
            12
        } else {
            10
        };
        (
            Mock {
                regs: regs.clone(),
                last_avail: [0; 2],
                used_idx: [0; 2],
                hdr,
                headers: Vec::new(),
                last_rx: 0,
            },
            FakeTransport(regs),
        )
    }

    fn modern() -> (Mock, FakeTransport) {
        Mock::new(F_MAC | F_STATUS | F_EVENT_IDX | F_VERSION_1 | F_MTU | F_CSUM | F_GUEST_CSUM)
    }

    fn queue(&self, q: usize) -> QueueRegs {
        let r = self.regs.borrow().queues[q];
        assert!(r.ready, "queue {q} set up");
        r
    }

    fn read_u16(addr: u64) -> u16 {
        // SAFETY: `addr` is in a ring the driver shared and keeps alive while the mock runs.
        unsafe { core::ptr::read_volatile(addr as *const u16) }
    }

    fn write_u16(addr: u64, v: u16) {
        // SAFETY: as in `read_u16`; the device side owns the used ring.
        unsafe { core::ptr::write_volatile(addr as *mut u16, v) }
    }

    fn write_u32(addr: u64, v: u32) {
        // SAFETY: as in `write_u16`.
        unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
    }

    /// Takes the next chain the driver made available on queue `q`. A descriptor the driver
    /// has taken back meanwhile (zeroed: only after garbage made it pop a chain early) is
    /// skipped, as a device would find it empty.
    fn take(&mut self, q: usize) -> Option<Chain> {
        loop {
            if let Some(c) = self.take_one(q)? {
                return Some(c);
            }
        }
    }

    fn take_one(&mut self, q: usize) -> Option<Option<Chain>> {
        let regs = self.queue(q);
        let idx = Self::read_u16(regs.avail + 2);
        if idx == self.last_avail[q] {
            return None;
        }
        let slot = u64::from(self.last_avail[q] % regs.size as u16);
        self.last_avail[q] = self.last_avail[q].wrapping_add(1);
        let head = Self::read_u16(regs.avail + 4 + 2 * slot);
        assert!(
            u32::from(head) < regs.size,
            "the driver posts heads in range"
        );
        let d = regs.desc + 16 * u64::from(head);
        // SAFETY: a descriptor of the table the driver shared.
        let (addr, len) = unsafe {
            (
                core::ptr::read_volatile(d as *const u64),
                core::ptr::read_volatile((d + 8) as *const u32),
            )
        };
        let flags = Self::read_u16(d + 12);
        assert_eq!(flags & DESC_F_NEXT, 0, "one descriptor per chain");
        if addr == 0 || len == 0 {
            return Some(None);
        }
        Some(Some(Chain {
            head,
            addr,
            len,
            flags,
        }))
    }

    /// Puts `(id, len)` on queue `q`'s used ring, whatever they are, and raises the interrupt.
    fn push_used(&mut self, q: usize, id: u32, len: u32) {
        let regs = self.queue(q);
        let slot = u64::from(self.used_idx[q] % regs.size as u16);
        let e = regs.used + 4 + 8 * slot;
        Self::write_u32(e, id);
        Self::write_u32(e + 4, len);
        self.used_idx[q] = self.used_idx[q].wrapping_add(1);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        Self::write_u16(regs.used + 2, self.used_idx[q]);
        self.regs.borrow_mut().isr |= 1;
    }

    /// Moves queue `q`'s used index by `by` without writing entries (garbage).
    fn bump_used(&mut self, q: usize, by: u16) {
        let regs = self.queue(q);
        self.used_idx[q] = self.used_idx[q].wrapping_add(by);
        Self::write_u16(regs.used + 2, self.used_idx[q]);
        self.regs.borrow_mut().isr |= 1;
    }

    /// Receives `frame` from the wire into the next receive buffer; false when none is posted.
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let Some(c) = self.take(RX) else {
            return false;
        };
        assert_ne!(
            c.flags & DESC_F_WRITE,
            0,
            "receive buffers are device-writable"
        );
        let total = self.hdr + frame.len();
        assert!(total <= c.len as usize, "buffer of {} for {total}", c.len);
        let mut bytes = vec![0u8; total];
        if self.hdr == 12 {
            bytes[10] = 1; // num_buffers
        }
        bytes[self.hdr..].copy_from_slice(frame);
        // SAFETY: the buffer the driver posted, `c.len` bytes, device-writable.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), c.addr as *mut u8, total) };
        self.push_used(RX, u32::from(c.head), total as u32);
        true
    }

    /// Receives `frame` with header `flags` and `gso` type spread over as many receive buffers
    /// as it takes (`MRG_RXBUF`), `num_buffers` saying `claim` (or the truth); false when
    /// there are not enough buffers posted.
    fn deliver_merged(&mut self, frame: &[u8], flags: u8, gso: u8, claim: Option<u16>) -> bool {
        self.deliver_pieces(frame, flags, gso, claim, usize::MAX)
    }

    /// As [`deliver_merged`](Self::deliver_merged), writing at most `piece` bytes into each
    /// buffer (a device spreading a frame that would fit one).
    fn deliver_pieces(
        &mut self,
        frame: &[u8],
        flags: u8,
        gso: u8,
        claim: Option<u16>,
        piece: usize,
    ) -> bool {
        assert_eq!(self.hdr, 12);
        let mut bytes = vec![0u8; 12];
        bytes[0] = flags;
        bytes[1] = gso;
        bytes.extend_from_slice(frame);
        let mut chains = Vec::new();
        let mut left = bytes.len();
        while left > 0 {
            let Some(c) = self.take(RX) else {
                return false;
            };
            left = left.saturating_sub((c.len as usize).min(piece));
            chains.push(c);
        }
        let n = claim.unwrap_or(chains.len() as u16);
        self.last_rx = chains[0].addr;
        bytes[10..12].copy_from_slice(&n.to_le_bytes());
        let mut at = 0;
        for c in chains {
            let len = (bytes.len() - at).min(c.len as usize).min(piece);
            // SAFETY: the buffer the driver posted, `c.len` bytes, device-writable.
            unsafe { core::ptr::copy_nonoverlapping(bytes[at..].as_ptr(), c.addr as *mut u8, len) };
            at += len;
            self.push_used(RX, u32::from(c.head), len as u32);
        }
        true
    }

    /// Receives `frame` in one buffer with header `flags` and `gso` type.
    fn deliver_flagged(&mut self, frame: &[u8], flags: u8, gso: u8) -> bool {
        self.deliver_merged(frame, flags, gso, None)
    }

    /// Sends everything the driver queued for transmission; returns the frames.
    fn collect(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(c) = self.take(TX) {
            assert_eq!(
                c.flags & DESC_F_WRITE,
                0,
                "transmit buffers are device-readable"
            );
            let mut bytes = vec![0u8; c.len as usize];
            // SAFETY: the buffer the driver posted, `c.len` bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(c.addr as *const u8, bytes.as_mut_ptr(), bytes.len())
            };
            assert!(bytes.len() >= self.hdr);
            self.headers.push(bytes[..self.hdr].to_vec());
            out.push(bytes[self.hdr..].to_vec());
            self.push_used(TX, u32::from(c.head), 0);
        }
        out
    }
}

type Dev<const Q: usize> = VirtioNet<HostHal, FakeTransport, Q>;

fn frame(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

fn receive_one<const Q: usize>(dev: &mut Dev<Q>) -> Option<Vec<u8>> {
    let (rx, _tx) = dev.receive()?;
    Some(rx.consume(|f| f.to_vec()))
}

fn send<const Q: usize>(dev: &mut Dev<Q>, data: &[u8]) -> bool {
    match dev.transmit() {
        Some(tx) => {
            tx.consume(data.len(), |f| f.copy_from_slice(data));
            true
        }
        None => false,
    }
}

// ---- Bring-up. ----

#[test]
fn a_modern_device_comes_up_with_its_mac_mtu_1500_and_every_buffer_posted() {
    let (mock, transport) = Mock::modern();
    let dev: Dev<QUEUE_SIZE> = VirtioNet::new(transport).expect("comes up");
    let caps = dev.capabilities();
    assert_eq!(caps.mac, MacAddress(MAC));
    assert_eq!(caps.mtu, 1500, "VIRTIO_NET_F_MTU is not negotiated");
    assert_eq!(caps.max_burst, Some(QUEUE_SIZE));
    assert_eq!(caps.checksums.tcp, netdev::ChecksumOffload::Both);
    assert_eq!(caps.checksums.udp, netdev::ChecksumOffload::Both);
    assert_eq!(caps.checksums.ipv4, netdev::ChecksumOffload::None);
    assert_eq!(
        (caps.max_rx_frame, caps.tso),
        (1514, None),
        "no TSO offered"
    );
    assert_eq!(dev.header_len(), 12, "modern header with num_buffers");
    assert_eq!(dev.posted_receive_buffers(), QUEUE_SIZE);
    assert_eq!(dev.free_transmit_buffers(), QUEUE_SIZE);
    let regs = mock.regs.borrow();
    let f = regs.driver_features;
    assert_eq!(
        f,
        F_MAC | F_VERSION_1 | F_EVENT_IDX | F_CSUM | F_GUEST_CSUM,
        "what was offered and is wanted, no MTU, no STATUS"
    );
    assert!(regs.status.contains(DeviceStatus::DRIVER_OK));
    assert_eq!(regs.queues[RX].size, QUEUE_SIZE as u32);
    assert_eq!(regs.queues[TX].size, QUEUE_SIZE as u32);
    assert!(regs.notifies[RX] > 0, "the device was told of the buffers");
}

#[test]
fn a_legacy_device_has_a_10_byte_header_and_still_round_trips() {
    let (mut mock, transport) = Mock::new(F_MAC | F_STATUS);
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    assert_eq!(dev.header_len(), 10);
    assert_eq!(dev.capabilities().checksums, netdev::Checksums::default());
    assert!(mock.deliver(&frame(1, 60)));
    assert_eq!(receive_one(&mut dev), Some(frame(1, 60)));
    assert!(send(&mut dev, &frame(2, 100)));
    assert_eq!(mock.collect(), vec![frame(2, 100)]);
}

#[test]
fn a_queue_the_device_cannot_hold_is_refused_and_nothing_leaks() {
    let (mock, transport) = Mock::modern();
    mock.regs.borrow_mut().max_queue = 32;
    let before = dma_pages();
    let r: Result<Dev<64>, _> = VirtioNet::new(transport);
    assert_eq!(
        r.err(),
        Some(InitError::Virtio(virtio_drivers::Error::InvalidParam))
    );
    assert_eq!(dma_pages(), before);
}

#[test]
fn dropping_the_device_gives_back_every_dma_page() {
    let before = dma_pages();
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<16> = VirtioNet::new(transport).expect("comes up");
    assert!(dma_pages() > before);
    assert!(mock.deliver(&frame(0, 64)));
    assert!(receive_one(&mut dev).is_some());
    drop(dev);
    assert_eq!(dma_pages(), before);
    assert!(!mock.regs.borrow().queues[RX].ready, "queues unset on drop");
}

// ---- Receive. ----

#[test]
fn frames_are_lent_in_place_and_their_buffers_posted_again_across_wraps() {
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    // 5 rounds of 8: the rings wrap several times; every buffer must come back.
    for round in 0..5u8 {
        for i in 0..8u8 {
            assert!(
                mock.deliver(&frame(round * 8 + i, 60 + usize::from(i))),
                "posted"
            );
        }
        assert!(!mock.deliver(&frame(0, 60)), "no more than 8 buffers");
        assert!(dev.poll_interrupt(), "something to receive");
        for i in 0..8u8 {
            assert_eq!(
                receive_one(&mut dev),
                Some(frame(round * 8 + i, 60 + usize::from(i)))
            );
        }
        assert!(receive_one(&mut dev).is_none());
        assert!(!dev.poll_interrupt());
        assert_eq!(dev.posted_receive_buffers(), 8);
    }
    let s = dev.stats();
    assert_eq!(s.rx_frames, 40);
    assert_eq!(s.device_errors, 0);
}

#[test]
fn a_frame_whose_token_is_dropped_stays_queued() {
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    assert!(mock.deliver(&frame(7, 80)));
    assert!(mock.deliver(&frame(8, 80)));
    let _unconsumed = dev.receive().expect("one");
    assert_eq!(
        receive_one(&mut dev),
        Some(frame(7, 80)),
        "the same frame again"
    );
    assert_eq!(receive_one(&mut dev), Some(frame(8, 80)));
    assert_eq!(dev.stats().rx_frames, 2);
}

#[test]
fn a_frame_waits_while_there_is_no_room_to_answer() {
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<4> = VirtioNet::new(transport).expect("comes up");
    for i in 0..4 {
        assert!(send(&mut dev, &frame(i, 60)));
    }
    assert!(dev.transmit().is_none(), "transmit ring full");
    assert!(mock.deliver(&frame(9, 60)));
    assert!(dev.receive().is_none(), "no transmit buffer for an answer");
    assert_eq!(mock.collect().len(), 4);
    assert_eq!(receive_one(&mut dev), Some(frame(9, 60)));
}

// ---- Transmit. ----

#[test]
fn frames_are_sent_behind_a_zero_header_and_buffers_reclaimed() {
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    for round in 0..4u8 {
        let sent: Vec<_> = (0..8u8)
            .map(|i| frame(round * 8 + i, 14 + 100 * usize::from(i)))
            .collect();
        for f in &sent {
            assert!(send(&mut dev, f));
        }
        assert_eq!(dev.free_transmit_buffers(), 0);
        assert_eq!(mock.collect(), sent);
        assert!(
            mock.headers.iter().all(|h| h.iter().all(|&b| b == 0)),
            "zero headers"
        );
        assert!(dev.poll_interrupt(), "transmit buffers freed");
        assert_eq!(dev.free_transmit_buffers(), 8);
    }
    assert!(send(&mut dev, &frame(0, 1514)), "a full-size frame");
    assert_eq!(mock.collect(), vec![frame(0, 1514)]);
    let s = dev.stats();
    assert_eq!((s.tx_frames, s.tx_dropped, s.device_errors), (33, 0, 0));
}

#[test]
fn bad_transmit_lengths_send_nothing() {
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    for len in [0, 1515, 4000] {
        let tx = dev.transmit().expect("room");
        let got = tx.consume(len, |f| f.len());
        assert_eq!(got, len, "a scratch buffer of the asked length");
    }
    assert!(mock.collect().is_empty());
    assert_eq!(dev.stats().tx_dropped, 3);
    assert_eq!(dev.free_transmit_buffers(), 8);
}

#[test]
fn a_dropped_transmit_token_keeps_its_buffer() {
    let (_mock, transport) = Mock::modern();
    let mut dev: Dev<4> = VirtioNet::new(transport).expect("comes up");
    let _unconsumed = dev.transmit().expect("room");
    assert_eq!(dev.free_transmit_buffers(), 4);
}

// ---- What a misbehaving device writes. ----

#[test]
fn a_used_length_longer_than_the_buffer_is_refused_and_the_device_goes_on() {
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    for len in [BUFFER_LEN as u32 + 1, 65_536, u32::MAX] {
        let c = mock.take(RX).expect("posted");
        mock.push_used(RX, u32::from(c.head), len);
        assert!(receive_one(&mut dev).is_none());
    }
    let s = dev.stats();
    assert_eq!((s.device_errors, s.rx_dropped), (3, 3));
    assert!(!dev.is_stopped());
    assert_eq!(dev.posted_receive_buffers(), 8, "the buffers went back");
    assert!(mock.deliver(&frame(3, 200)));
    assert_eq!(receive_one(&mut dev), Some(frame(3, 200)));
}

#[test]
fn used_lengths_shorter_than_the_header_or_not_a_frame_are_dropped() {
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    // Shorter than the header: a device error. A runt (< 14 bytes of frame) or a frame above
    // the MTU that still fits the buffer: dropped, not the device's fault.
    let cases = [
        (0, true),
        (11, true),
        (12, false),
        (12 + 13, false),
        (12 + 1515, false),
    ];
    for (i, (len, error)) in cases.into_iter().enumerate() {
        let before = dev.stats().device_errors;
        let c = mock.take(RX).expect("posted");
        mock.push_used(RX, u32::from(c.head), len);
        assert!(receive_one(&mut dev).is_none(), "len {len}");
        assert_eq!(
            dev.stats().device_errors,
            before + u64::from(error),
            "len {len}"
        );
        assert_eq!(dev.stats().rx_dropped, i as u64 + 1);
    }
    assert_eq!(dev.posted_receive_buffers(), 8);
    assert!(mock.deliver(&frame(4, 14)), "the smallest frame");
    assert_eq!(receive_one(&mut dev), Some(frame(4, 14)));
}

#[test]
fn a_used_id_not_in_flight_stops_the_device_cleanly() {
    for (q, id) in [(RX, 8u32), (RX, 0xffff), (RX, u32::MAX), (TX, 0), (TX, 3)] {
        let (mut mock, transport) = Mock::modern();
        let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
        mock.push_used(q, id, 64);
        if q == RX {
            assert!(dev.receive().is_none());
        } else {
            assert!(!dev.poll_interrupt());
        }
        assert!(dev.is_stopped(), "queue {q} id {id}");
        assert!(dev.stats().device_errors >= 1);
        // Everything refuses quietly from now on.
        assert!(dev.receive().is_none());
        assert!(dev.transmit().is_none());
        assert!(!dev.poll_interrupt());
        assert_eq!(
            mock.regs.borrow().isr,
            0,
            "the interrupt is still acknowledged"
        );
    }
}

#[test]
fn a_duplicate_completion_is_not_a_second_buffer() {
    // The device completes the same chain twice: the second entry names a chain that is not
    // in flight any more (or the same buffer posted again), never a buffer of someone else.
    let (mut mock, transport) = Mock::modern();
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    assert!(send(&mut dev, &frame(1, 60)));
    let c = mock.take(TX).expect("queued");
    mock.push_used(TX, u32::from(c.head), 0);
    mock.push_used(TX, u32::from(c.head), 0);
    dev.poll_interrupt();
    assert!(dev.is_stopped());
    assert!(dev.free_transmit_buffers() <= 8);
}

/// Seeded rounds of a device that mostly behaves and sometimes writes garbage into its used
/// rings (ids, lengths, indexes): the driver never panics, never hands the stack a frame that
/// is not a plausible Ethernet frame, never holds more buffers than it has, and either keeps
/// working or stops.
#[test]
fn a_device_writing_garbage_never_panics_the_driver() {
    let cases: usize = std::env::var("STARDUST_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut rng = Rng::new(0x5eed_0016);
    let mut stopped = 0;
    let mut errors = 0u64;
    for _ in 0..cases {
        let features = match rng.below(4) {
            0 => F_MAC | F_STATUS,
            1 => F_MAC | F_STATUS | F_OFFLOADS,
            2 => F_MAC | F_STATUS | F_EVENT_IDX | F_VERSION_1,
            _ => F_MAC | F_EVENT_IDX | F_VERSION_1 | F_OFFLOADS,
        };
        let merged = features & F_MRG_RXBUF != 0;
        let (mut mock, transport) = Mock::new(features);
        let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
        let max = dev.capabilities().max_rx_frame;
        for _ in 0..60 {
            match rng.below(11) {
                0..=2 => {
                    let len = 14 + rng.below(1501) as usize;
                    mock.deliver(&frame(rng.below(256) as u8, len));
                }
                10 if merged => {
                    // A frame over several buffers with a garbage header: flags, GSO type,
                    // and a num_buffers that may lie.
                    let len = rng.below(9000) as usize;
                    let claim = rng.chance(50).then(|| rng.edgy(16) as u16);
                    let flags = rng.pick(&[0, 1, 2, 3, 4, 0xff]);
                    let gso = rng.pick(&[0, 1, 3, 4, 0x81]);
                    let piece = rng.pick(&[usize::MAX, 2048, 700]);
                    let f = frame(rng.below(256) as u8, len);
                    mock.deliver_pieces(&f, flags, gso, claim, piece);
                }
                3 | 4 => {
                    let len = rng.pick(&[0usize, 14, 60, 1514, 1515, 30_000, 65_549, 65_550]);
                    let offload = TxOffload {
                        checksum: rng.chance(50).then_some(netdev::PartialChecksum {
                            start: rng.edgy(16) as u16,
                            offset: rng.pick(&[6, 16, 0xffff]),
                        }),
                        tso: rng.chance(50).then_some(netdev::Tso {
                            mss: rng.edgy(16) as u16,
                            header_len: rng.edgy(16) as u16,
                        }),
                    };
                    if let Some(tx) = dev.transmit_sized(len) {
                        tx.consume_offload(len, |f| {
                            f.fill(0xab);
                            ((), offload)
                        });
                    }
                }
                5 => {
                    mock.collect();
                }
                6 => {
                    // A used entry with a garbage id and length, on either queue.
                    let q = rng.pick(&[RX, TX]);
                    let id = if rng.chance(50) {
                        rng.below(8) as u32
                    } else {
                        rng.edgy_u32()
                    };
                    let len = rng.edgy_u32();
                    mock.push_used(q, id, len);
                }
                7 => {
                    // A chain completed with a lie about its length.
                    if let Some(c) = mock.take(RX) {
                        mock.push_used(RX, u32::from(c.head), rng.edgy_u32());
                    }
                }
                8 => {
                    let q = rng.pick(&[RX, TX]);
                    mock.bump_used(q, rng.edgy(16) as u16);
                }
                _ => {
                    dev.poll_interrupt();
                }
            }
            while let Some((rx, _tx)) = dev.receive() {
                let len = rx.consume(|f| f.len());
                assert!((14..=max).contains(&len), "a plausible frame: {len}");
            }
            assert!(dev.posted_receive_buffers() <= 8);
            assert!(dev.free_transmit_buffers() <= 8);
            if dev.is_stopped() {
                assert!(dev.receive().is_none() && dev.transmit().is_none());
                break;
            }
        }
        stopped += usize::from(dev.is_stopped());
        errors += dev.stats().device_errors;
    }
    // The garbage did reach the checks (a test that cannot fail proves nothing).
    assert!(
        stopped > 0 && errors > 0,
        "stopped {stopped}, errors {errors}"
    );
}

// ---- Offloads. ----

#[test]
fn offloads_are_negotiated_when_offered_and_not_otherwise() {
    let (mock, transport) = Mock::new(F_MAC | F_EVENT_IDX | F_VERSION_1 | F_OFFLOADS);
    let dev: Dev<64> = VirtioNet::new(transport).expect("comes up");
    let caps = dev.capabilities();
    assert_eq!(mock.regs.borrow().driver_features & F_OFFLOADS, F_OFFLOADS);
    assert_eq!(caps.checksums.tcp, netdev::ChecksumOffload::Both);
    assert_eq!(caps.max_rx_frame, 14 + 65_535);
    assert_eq!(caps.tso, Some(14 + 65_535));
    assert_eq!(caps.mtu, 1500);
    assert_eq!(
        dev.free_transmit_buffers(),
        64,
        "60 small and 4 for TSO frames"
    );
    // GUEST_TSO4 without MRG_RXBUF would need 64 KiB buffers: not taken. HOST_TSO4 without
    // CSUM is not allowed.
    let (mock, transport) =
        Mock::new(F_MAC | F_VERSION_1 | F_GUEST_CSUM | F_GUEST_TSO4 | F_HOST_TSO4);
    let dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    assert_eq!(
        mock.regs.borrow().driver_features,
        F_MAC | F_VERSION_1 | F_GUEST_CSUM
    );
    assert_eq!(
        (dev.capabilities().max_rx_frame, dev.capabilities().tso),
        (1514, None)
    );
    assert_eq!(
        dev.capabilities().checksums.tcp,
        netdev::ChecksumOffload::Rx
    );
    // A legacy device with MRG_RXBUF has the 12-byte header.
    let (_mock, transport) = Mock::new(F_MAC | F_OFFLOADS);
    let dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    assert_eq!(dev.header_len(), 12);
    assert_eq!(dev.capabilities().tso, Some(14 + 65_535));
}

#[test]
fn a_device_refusing_its_own_features_is_not_used() {
    let (mock, transport) = Mock::modern();
    mock.regs.borrow_mut().refuse_features = true;
    let before = dma_pages();
    let r: Result<Dev<8>, _> = VirtioNet::new(transport);
    assert_eq!(r.err(), Some(InitError::Features));
    assert_eq!(dma_pages(), before);
    assert!(mock.regs.borrow().status.contains(DeviceStatus::FAILED));
}

#[test]
fn a_64_kib_segment_lands_whole_in_one_buffer_and_is_lent_in_place() {
    let (mut mock, transport) = Mock::new(F_MAC | F_EVENT_IDX | F_VERSION_1 | F_OFFLOADS);
    let mut dev: Dev<64> = VirtioNet::new(transport).expect("comes up");
    assert_eq!(dev.posted_receive_buffers(), RX_BIG_BUFFERS);
    for round in 0..40u8 {
        let big = frame(round, 65_549);
        assert!(mock.deliver_flagged(&big, 1, 1), "a buffer posted");
        let (rx, _) = dev.receive().expect("a frame");
        assert_eq!(rx.checksum(), RxChecksum::Blank, "NEEDS_CSUM");
        // Lent in place: the stack reads the DMA buffer itself.
        let lent = rx.consume(|f| {
            assert_eq!(f, &big[..]);
            f.as_ptr() as usize
        });
        assert_eq!(
            lent as u64,
            mock.last_rx + 12,
            "behind the header, in the buffer"
        );
        // A small one lent in place, after it.
        assert!(mock.deliver_flagged(&frame(9, 60), 2, 0));
        let (rx, _) = dev.receive().expect("a frame");
        assert_eq!(rx.checksum(), RxChecksum::Verified, "DATA_VALID");
        assert_eq!(rx.consume(|f| f.to_vec()), frame(9, 60));
        dev.poll_interrupt();
        assert_eq!(dev.posted_receive_buffers(), RX_BIG_BUFFERS);
    }
    // The largest frame and a byte more: the buffer takes both, the second is too long.
    assert!(mock.deliver_flagged(&frame(3, 65_550), 1, 1));
    assert!(receive_one(&mut dev).is_none());
    assert_eq!(dev.stats().rx_dropped, 1);
    assert_eq!(dev.stats().device_errors, 0);
    assert_eq!(dev.stats().rx_frames, 80);
}

#[test]
fn a_frame_spread_over_buffers_is_dropped_with_them_and_the_device_goes_on() {
    let (mut mock, transport) = Mock::new(F_MAC | F_EVENT_IDX | F_VERSION_1 | F_OFFLOADS);
    let mut dev: Dev<64> = VirtioNet::new(transport).expect("comes up");
    for (i, pieces) in [2usize, 3, RX_BIG_BUFFERS].into_iter().enumerate() {
        let f = frame(i as u8, 3000);
        let piece = (12 + f.len()).div_ceil(pieces);
        assert!(mock.deliver_pieces(&f, 1, 1, None, piece));
        assert!(receive_one(&mut dev).is_none(), "{pieces} pieces");
        assert_eq!(dev.stats().device_errors, i as u64 + 1);
        assert_eq!(dev.stats().rx_dropped, i as u64 + 1);
        dev.poll_interrupt();
        assert_eq!(
            dev.posted_receive_buffers(),
            RX_BIG_BUFFERS,
            "all went back"
        );
    }
    assert!(mock.deliver_flagged(&frame(7, 1000), 0, 0));
    assert_eq!(receive_one(&mut dev), Some(frame(7, 1000)));
    assert!(!dev.is_stopped());
}

#[test]
fn checksum_flags_become_the_frames_checksum_state() {
    let (mut mock, transport) = Mock::new(F_MAC | F_EVENT_IDX | F_VERSION_1 | F_OFFLOADS);
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    for (flags, state, error) in [
        (0, RxChecksum::Unknown, 0),
        (1, RxChecksum::Blank, 0),
        (2, RxChecksum::Verified, 0),
        (3, RxChecksum::Blank, 0),
        (4, RxChecksum::Unknown, 1),
        (0x82, RxChecksum::Unknown, 1),
    ] {
        let before = dev.stats().device_errors;
        assert!(mock.deliver_flagged(&frame(1, 100), flags, 0));
        let (rx, _) = dev.receive().expect("delivered");
        assert_eq!(rx.checksum(), state, "flags {flags:#x}");
        rx.consume(|_| ());
        assert_eq!(
            dev.stats().device_errors,
            before + error,
            "flags {flags:#x}"
        );
    }
    // Without GUEST_CSUM, flags are the device's error and mean nothing.
    let (mut mock, transport) = Mock::new(F_MAC | F_VERSION_1);
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    assert!(mock.deliver_flagged(&frame(1, 100), 2, 0));
    let (rx, _) = dev.receive().expect("delivered");
    assert_eq!(rx.checksum(), RxChecksum::Unknown);
    rx.consume(|_| ());
    assert_eq!(dev.stats().device_errors, 1);
}

#[test]
fn bad_buffer_counts_and_gso_types_are_refused_and_the_device_goes_on() {
    let (mut mock, transport) = Mock::new(F_MAC | F_EVENT_IDX | F_VERSION_1 | F_OFFLOADS);
    let mut dev: Dev<16> = VirtioNet::new(transport).expect("comes up");
    // num_buffers 0 or beyond the ring; a GSO type never negotiated (UDP, TCPv6, ECN).
    let cases: [(usize, u8, Option<u16>); 6] = [
        (100, 0, Some(0)),
        (100, 0, Some(17)),
        (100, 0, Some(u16::MAX)),
        (100, 3, None),
        (100, 4, None),
        (100, 0x81, None),
    ];
    for (i, (len, gso, claim)) in cases.into_iter().enumerate() {
        assert!(mock.deliver_merged(&frame(1, len), 1, gso, claim));
        assert!(receive_one(&mut dev).is_none(), "case {i}");
        assert_eq!(dev.stats().device_errors, i as u64 + 1, "case {i}");
        assert_eq!(dev.stats().rx_dropped, i as u64 + 1, "case {i}");
    }
    // More buffers claimed than the device gave back: what it gave is dropped.
    assert!(mock.deliver_merged(&frame(2, 3000), 1, 1, Some(5)));
    assert!(receive_one(&mut dev).is_none());
    assert_eq!(dev.stats().device_errors, 7);
    // A claim of fewer buffers than written: the rest come as frames of their own, whose
    // "headers" are payload bytes; whatever they say, nothing breaks.
    assert!(mock.deliver_merged(&frame(3, 5000), 1, 1, Some(1)));
    while receive_one(&mut dev).is_some() {}
    dev.poll_interrupt();
    assert!(!dev.is_stopped());
    assert_eq!(dev.posted_receive_buffers(), 16, "every buffer went back");
    let big = frame(4, 20_000);
    assert!(mock.deliver_flagged(&big, 1, 1));
    assert_eq!(receive_one(&mut dev), Some(big));
}

#[test]
fn a_lent_transmit_buffer_is_sent_from_in_place_and_bad_handles_do_nothing() {
    let (mut mock, transport) = Mock::new(F_MAC | F_EVENT_IDX | F_VERSION_1 | F_OFFLOADS);
    let mut dev: Dev<64> = VirtioNet::new(transport).expect("comes up");
    let max = dev.capabilities().tso.expect("HOST_TSO4");
    let offload = TxOffload {
        checksum: Some(netdev::PartialChecksum {
            start: 34,
            offset: 16,
        }),
        tso: Some(netdev::Tso {
            mss: 1460,
            header_len: 54,
        }),
    };
    for round in 0..10u8 {
        // Every TSO buffer lent, then none left.
        let mut held = Vec::new();
        while let Some(h) = dev.hold_transmit(max) {
            held.push(h);
        }
        assert_eq!(held.len(), TSO_BUFFERS);
        assert!(dev.hold_transmit(max).is_none());
        let big = frame(round, 40_000);
        for h in &held {
            let buf = dev.held_buffer(h);
            assert!(buf.len() >= max, "the largest frame fits");
            buf[..big.len()].copy_from_slice(&big);
        }
        let mut held = held.into_iter();
        dev.send_held(held.next().expect("lent"), big.len(), offload);
        dev.release_held(held.next().expect("lent"));
        // Too long, then no TSO for a frame over the MTU: dropped, the buffer back.
        dev.send_held(held.next().expect("lent"), max + 1, offload);
        dev.send_held(held.next().expect("lent"), big.len(), TxOffload::default());
        let out = mock.collect();
        assert_eq!(out, vec![big.clone()], "round {round}");
        let h = mock.headers.last().expect("a header");
        assert_eq!((h[0], h[1]), (1, 1), "NEEDS_CSUM, GSO_TCPV4");
        assert_eq!(dev.stats().tx_dropped, 2 * (u64::from(round) + 1));
        dev.poll_interrupt();
        assert_eq!(dev.free_transmit_buffers(), 64, "all back");
    }
    // Handles the device did not lend (a small buffer's, one past the end, one sent already).
    let before = dev.stats();
    for b in [0u16, 63, 64, 1000, u16::MAX] {
        assert!(dev.held_buffer(&HeldTx(b)).is_empty());
        dev.release_held(HeldTx(b));
        dev.send_held(HeldTx(b), 100, TxOffload::default());
    }
    let h = dev.hold_transmit(max).expect("free");
    let b = h.0;
    dev.send_held(h, 100, TxOffload::default());
    dev.send_held(HeldTx(b), 100, TxOffload::default());
    dev.release_held(HeldTx(b));
    assert_eq!(mock.collect().len(), 1);
    let after = dev.stats();
    assert_eq!(after.tx_frames, before.tx_frames + 1);
    assert_eq!(after.tx_dropped, before.tx_dropped + 6);
    dev.poll_interrupt();
    assert_eq!(
        dev.free_transmit_buffers(),
        64,
        "nothing lost, nothing twice"
    );
    // Without HOST_TSO4 nothing is lent.
    let (_mock, transport) = Mock::modern();
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    assert!(dev.hold_transmit(1514).is_none());
}

#[test]
fn offloads_go_out_in_the_header_and_only_when_negotiated() {
    use netdev::{PartialChecksum, Tso};
    let (mut mock, transport) = Mock::new(F_MAC | F_EVENT_IDX | F_VERSION_1 | F_OFFLOADS);
    let mut dev: Dev<16> = VirtioNet::new(transport).expect("comes up");
    let csum = PartialChecksum {
        start: 34,
        offset: 16,
    };
    let tso = Tso {
        mss: 1448,
        header_len: 66,
    };
    let big = frame(5, 40_000);
    for (data, offload) in [
        (frame(1, 100), TxOffload::default()),
        (
            frame(2, 100),
            TxOffload {
                checksum: Some(csum),
                tso: None,
            },
        ),
        (
            big.clone(),
            TxOffload {
                checksum: Some(csum),
                tso: Some(tso),
            },
        ),
    ] {
        let tx = dev.transmit_sized(data.len()).expect("room");
        tx.consume_offload(data.len(), |f| {
            f.copy_from_slice(&data);
            ((), offload)
        });
    }
    assert_eq!(
        mock.collect(),
        vec![frame(1, 100), frame(2, 100), big.clone()]
    );
    assert_eq!(mock.headers[0], vec![0; 12]);
    assert_eq!(mock.headers[1], vec![1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0]);
    assert_eq!(
        mock.headers[2],
        vec![1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0]
    );
    // Only 4 TSO buffers (Q / 4): a fifth large frame waits.
    for _ in 0..4 {
        let tx = dev.transmit_sized(big.len()).expect("a TSO buffer");
        tx.consume_offload(big.len(), |f| {
            f.copy_from_slice(&big);
            (
                (),
                TxOffload {
                    checksum: Some(csum),
                    tso: Some(tso),
                },
            )
        });
    }
    assert!(
        dev.transmit_sized(big.len()).is_none(),
        "TSO buffers all in flight"
    );
    assert!(dev.transmit().is_some(), "small ones still free");
    assert_eq!(mock.collect().len(), 4);
    dev.poll_interrupt();
    assert!(dev.transmit_sized(big.len()).is_some());
    // A large frame without TSO, a TSO without checksum, a checksum beyond the frame: dropped.
    for offload in [
        TxOffload::default(),
        TxOffload {
            checksum: None,
            tso: Some(tso),
        },
        TxOffload {
            checksum: Some(PartialChecksum {
                start: 39_990,
                offset: 16,
            }),
            tso: Some(tso),
        },
    ] {
        let tx = dev.transmit_sized(big.len()).expect("room");
        tx.consume_offload(big.len(), |_| ((), offload));
    }
    assert!(mock.collect().is_empty());
    assert_eq!(dev.stats().tx_dropped, 3);
    // Without the features, the same requests send nothing.
    let (mut mock, transport) = Mock::new(F_MAC | F_VERSION_1);
    let mut dev: Dev<8> = VirtioNet::new(transport).expect("comes up");
    let tx = dev.transmit().expect("room");
    tx.consume_offload(100, |_| {
        (
            (),
            TxOffload {
                checksum: Some(csum),
                tso: None,
            },
        )
    });
    assert!(
        dev.transmit_sized(40_000).is_some(),
        "a token that drops what is too long"
    );
    assert!(mock.collect().is_empty());
    assert_eq!(dev.stats().tx_dropped, 1);
}
