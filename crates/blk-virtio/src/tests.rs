//! Host tests: the driver against a mock device that plays the device's side of the request
//! queue on the shared memory, over a fake [`Transport`] and a [`Hal`] on host memory (as
//! crates/net-virtio's tests do: virtio-drivers' own fakes are `cfg(test)` inside that crate).
//! The mock serves requests in any order, keeps a volatile cache and a durable copy (what a
//! flush makes durable), and can write seeded garbage into the used ring and status bytes.

use super::*;
use blockdev::{BlockIo, Blocking, Buffer, Wait};
use core::cell::RefCell;
use platform::fuzz::Rng;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;
use virtio_drivers::PhysAddr;
use virtio_drivers::transport::InterruptStatus;
use virtio_support::host_hal::{HostHal, dma_pages};
use zerocopy::{FromBytes, Immutable, IntoBytes};

// ---- The device's registers (a fake transport). ----

use feature::*;

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
    device_type: DeviceType,
    features: u64,
    driver_features: u64,
    status: DeviceStatus,
    /// Refuse FEATURES_OK.
    refuse_features: bool,
    config: [u8; 24],
    queue: QueueRegs,
    max_queue: u32,
    isr: u32,
    notifies: u32,
    legacy: bool,
    resets: u32,
}

#[derive(Debug)]
struct FakeTransport(Rc<RefCell<Regs>>);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        self.0.borrow().device_type
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
    fn notify(&mut self, _queue: u16) {
        self.0.borrow_mut().notifies += 1;
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.borrow().status
    }
    fn set_status(&mut self, status: DeviceStatus) {
        let mut r = self.0.borrow_mut();
        if status.is_empty() {
            r.resets += 1;
        }
        r.status = if r.refuse_features {
            status - DeviceStatus::FEATURES_OK
        } else {
            status
        };
    }
    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        self.0.borrow().legacy
    }
    fn queue_set(&mut self, _queue: u16, size: u32, desc: PhysAddr, avail: PhysAddr, used: u64) {
        self.0.borrow_mut().queue = QueueRegs {
            size,
            desc,
            avail,
            used,
            ready: true,
        };
    }
    fn queue_unset(&mut self, _queue: u16) {
        self.0.borrow_mut().queue = QueueRegs::default();
    }
    fn queue_used(&mut self, _queue: u16) -> bool {
        self.0.borrow().queue.ready
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        let isr = core::mem::take(&mut self.0.borrow_mut().isr);
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

// ---- The device's side of the queue (the mock). ----

/// A request the device took from the available ring.
#[derive(Debug, Clone)]
struct Taken {
    head: u16,
    kind: u32,
    sector: u64,
    /// Data segments: (address, length).
    data: Vec<(u64, u32)>,
    /// Whether the data is device-writable (a read).
    writable: bool,
    status: u64,
}

/// How the mock answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// As a device should.
    Good,
    /// Seeded garbage now and then (ids, lengths, statuses, used index jumps).
    Garbage,
}

struct Mock {
    regs: Rc<RefCell<Regs>>,
    last_avail: u16,
    used_idx: u16,
    /// Taken, not yet answered.
    pending: Vec<Taken>,
    /// The disk as reads see it (the volatile cache included).
    disk: Vec<u8>,
    /// The disk as the last flush left it durable.
    durable: Vec<u8>,
    flushes: u32,
    rng: Rng,
    answer: Answer,
    /// Answer in reverse order of arrival (else in order).
    reverse: bool,
    /// The largest data segment seen, and the most segments in one request.
    max_segment: u32,
    max_segments: usize,
}

const SECTOR: u64 = 512;

fn config(capacity_sectors: u64, size_max: u32, seg_max: u32, blk_size: u32) -> [u8; 24] {
    let mut c = [0u8; 24];
    c[..8].copy_from_slice(&capacity_sectors.to_le_bytes());
    c[8..12].copy_from_slice(&size_max.to_le_bytes());
    c[12..16].copy_from_slice(&seg_max.to_le_bytes());
    c[20..24].copy_from_slice(&blk_size.to_le_bytes());
    c
}

type Dev = VirtioBlk<HostHal, FakeTransport>;

impl Mock {
    /// A disk of `sectors` with `features` and `config`, and the transport the driver gets.
    fn with(features: u64, cfg: [u8; 24], sectors: u64) -> (Rc<RefCell<Mock>>, FakeTransport) {
        let regs = Rc::new(RefCell::new(Regs {
            device_type: DeviceType::Block,
            features,
            driver_features: 0,
            status: DeviceStatus::empty(),
            refuse_features: false,
            config: cfg,
            queue: QueueRegs::default(),
            max_queue: 256,
            isr: 0,
            notifies: 0,
            legacy: features & VERSION_1 == 0,
            resets: 0,
        }));
        let disk: Vec<u8> = (0..sectors * SECTOR).map(|i| (i / SECTOR) as u8).collect();
        let mock = Mock {
            regs: regs.clone(),
            last_avail: 0,
            used_idx: 0,
            pending: Vec::new(),
            durable: disk.clone(),
            disk,
            flushes: 0,
            rng: Rng::new(1),
            answer: Answer::Good,
            reverse: false,
            max_segment: 0,
            max_segments: 0,
        };
        (Rc::new(RefCell::new(mock)), FakeTransport(regs))
    }

    /// QEMU's virtio-blk, modern: FLUSH, BLK_SIZE 512, SEG_MAX 126, event index; 64 KiB.
    fn qemu() -> (Rc<RefCell<Mock>>, FakeTransport) {
        Mock::with(
            FLUSH | BLK_SIZE | SEG_MAX | RING_EVENT_IDX | VERSION_1,
            config(128, 0, 126, 512),
            128,
        )
    }

    fn queue(&self) -> QueueRegs {
        let r = self.regs.borrow().queue;
        assert!(r.ready, "queue set up");
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

    fn desc(q: QueueRegs, i: u16) -> (u64, u32, u16, u16) {
        let d = q.desc + 16 * u64::from(i);
        // SAFETY: a descriptor of the table the driver shared.
        unsafe {
            (
                core::ptr::read_volatile(d as *const u64),
                core::ptr::read_volatile((d + 8) as *const u32),
                core::ptr::read_volatile((d + 12) as *const u16),
                core::ptr::read_volatile((d + 14) as *const u16),
            )
        }
    }

    /// Takes every chain the driver made available.
    fn take_all(&mut self) {
        if !self.regs.borrow().queue.ready {
            return;
        }
        let q = self.queue();
        loop {
            let idx = Self::read_u16(q.avail + 2);
            if idx == self.last_avail {
                return;
            }
            let slot = u64::from(self.last_avail % q.size as u16);
            self.last_avail = self.last_avail.wrapping_add(1);
            let head = Self::read_u16(q.avail + 4 + 2 * slot);
            assert!(u32::from(head) < q.size, "heads in range");
            let mut descs = Vec::new();
            let mut i = head;
            loop {
                let d = Self::desc(q, i);
                descs.push(d);
                assert!(descs.len() <= q.size as usize, "a chain without a loop");
                if d.2 & DESC_F_NEXT == 0 {
                    break;
                }
                i = d.3;
            }
            assert!(descs.len() >= 2, "header and status at least");
            let (haddr, hlen, hflags, _) = descs[0];
            assert_eq!(hlen, 16, "a 16-byte header");
            assert_eq!(hflags & DESC_F_WRITE, 0, "the header is device-readable");
            // SAFETY: the header the driver shared, 16 bytes.
            let header = unsafe { core::slice::from_raw_parts(haddr as *const u8, 16) };
            let kind = u32::from_le_bytes(header[..4].try_into().expect("4"));
            let sector = u64::from_le_bytes(header[8..].try_into().expect("8"));
            let (saddr, slen, sflags, _) = descs[descs.len() - 1];
            assert_eq!(slen, 1, "a one-byte status");
            assert_ne!(sflags & DESC_F_WRITE, 0, "the status is device-writable");
            let data: Vec<(u64, u32)> = descs[1..descs.len() - 1]
                .iter()
                .map(|d| (d.0, d.1))
                .collect();
            let writable = descs[1..descs.len() - 1]
                .iter()
                .all(|d| d.2 & DESC_F_WRITE != 0);
            for d in &descs[1..descs.len() - 1] {
                assert_eq!(d.2 & DESC_F_WRITE != 0, writable, "data one way");
                self.max_segment = self.max_segment.max(d.1);
            }
            self.max_segments = self.max_segments.max(data.len());
            self.pending.push(Taken {
                head,
                kind,
                sector,
                data,
                writable,
                status: saddr,
            });
        }
    }

    /// Carries out `t`; returns the status and the bytes written into the chain.
    fn execute(&mut self, t: &Taken) -> (u8, u32) {
        let total: u64 = t.data.iter().map(|d| u64::from(d.1)).sum();
        match t.kind {
            T_IN | T_OUT => {
                assert_eq!(t.writable, t.kind == T_IN, "reads write, writes read");
                let start = t.sector * SECTOR;
                if start + total > self.disk.len() as u64 {
                    return (S_IOERR, 1);
                }
                let mut at = start as usize;
                for &(addr, len) in &t.data {
                    let len = len as usize;
                    // SAFETY: a data segment the driver shared, `len` bytes.
                    let seg = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
                    if t.kind == T_IN {
                        seg.copy_from_slice(&self.disk[at..at + len]);
                    } else {
                        self.disk[at..at + len].copy_from_slice(seg);
                    }
                    at += len;
                }
                if t.kind == T_IN {
                    (S_OK, total as u32 + 1)
                } else {
                    (S_OK, 1)
                }
            }
            T_FLUSH => {
                assert!(t.data.is_empty(), "a flush has no data");
                self.durable = self.disk.clone();
                self.flushes += 1;
                (S_OK, 1)
            }
            _ => (S_UNSUPP, 1),
        }
    }

    /// Puts `(id, len)` on the used ring, whatever they are, and raises the interrupt.
    fn push_used(&mut self, id: u32, len: u32) {
        let q = self.queue();
        let slot = u64::from(self.used_idx % q.size as u16);
        let e = q.used + 4 + 8 * slot;
        Self::write_u32(e, id);
        Self::write_u32(e + 4, len);
        self.used_idx = self.used_idx.wrapping_add(1);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        Self::write_u16(q.used + 2, self.used_idx);
        self.regs.borrow_mut().isr |= 1;
    }

    /// Answers every request taken and available, as `answer` says.
    fn serve(&mut self) {
        self.take_all();
        if !self.regs.borrow().queue.ready {
            return;
        }
        let mut pending = core::mem::take(&mut self.pending);
        if self.reverse {
            pending.reverse();
        }
        for t in pending {
            let (mut status, mut len) = self.execute(&t);
            let mut id = u32::from(t.head);
            if self.answer == Answer::Garbage {
                match self.rng.below(12) {
                    0 => status = self.rng.next_u64() as u8,
                    1 => len = self.rng.edgy_u32(),
                    2 => id = self.rng.edgy_u32(),
                    3 => {
                        // A used index jump over entries never written.
                        let q = self.queue();
                        let by = self.rng.below(4) as u16 + 1;
                        self.used_idx = self.used_idx.wrapping_add(by);
                        Self::write_u16(q.used + 2, self.used_idx);
                    }
                    4 => {
                        // The same id twice.
                        self.write_status(&t, status);
                        self.push_used(id, len);
                    }
                    _ => {}
                }
            }
            self.write_status(&t, status);
            self.push_used(id, len);
        }
    }

    fn write_status(&self, t: &Taken, status: u8) {
        // SAFETY: the status byte the driver shared, device-writable.
        unsafe { core::ptr::write_volatile(t.status as *mut u8, status) };
    }
}

/// A waiter that lets the mock device run: what the interrupt would announce.
struct Serve(Rc<RefCell<Mock>>);

impl Wait for Serve {
    fn wait(&mut self) -> bool {
        self.0.borrow_mut().serve();
        true
    }
}

fn blocking(mock: &Rc<RefCell<Mock>>, t: FakeTransport) -> Blocking<Dev, Serve> {
    Blocking::new(Dev::new(t).expect("comes up"), Serve(mock.clone()))
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8 ^ (i >> 9) as u8))
        .collect()
}

/// Takes completions until `n` arrived, serving the device between tries.
fn collect(dev: &mut Dev, mock: &Rc<RefCell<Mock>>, n: usize) -> Vec<Completion> {
    let mut out = Vec::new();
    for _ in 0..100 {
        while let Some(c) = dev.complete() {
            out.push(c);
        }
        if out.len() >= n {
            break;
        }
        mock.borrow_mut().serve();
        dev.poll_interrupt();
    }
    out
}

// ---- Bring-up. ----

#[test]
fn a_qemu_like_device_comes_up_with_its_geometry_and_the_features_read_first() {
    let (mock, t) = Mock::qemu();
    let dev = Dev::new(t).expect("comes up");
    let info = dev.info();
    assert_eq!(info.block_size, 512);
    assert_eq!(info.blocks, 128);
    assert!(!info.read_only);
    assert!(info.flush);
    assert_eq!(
        info.max_request_blocks as usize,
        MAX_REQUEST_BYTES / 512,
        "no size_max: one segment up to the driver's cap"
    );
    assert_eq!(
        info.max_in_flight,
        (QUEUE_SIZE / 3) as u16,
        "3 descriptors each"
    );
    let regs = mock.borrow().regs.clone();
    let r = regs.borrow();
    assert_eq!(
        r.driver_features,
        FLUSH | BLK_SIZE | SEG_MAX | RING_EVENT_IDX | VERSION_1
    );
    assert!(r.status.contains(DeviceStatus::DRIVER_OK));
    assert_eq!(r.queue.size, QUEUE_SIZE as u32);
}

#[test]
fn features_the_driver_does_not_know_are_not_accepted() {
    let all = u64::MAX >> 1; // every bit but 63
    let (mock, t) = Mock::with(all, config(64, 4096, 8, 4096), 64);
    let dev = Dev::new(t).expect("comes up");
    assert_eq!(
        mock.borrow().regs.borrow().driver_features,
        SUPPORTED_FEATURES
    );
    let info = dev.info();
    assert_eq!(info.block_size, 4096);
    assert_eq!(info.blocks, 64 / 8, "capacity is in 512-byte sectors");
    assert!(info.read_only);
    assert_eq!(info.max_request_blocks, 8, "8 segments of 4 KiB");
    assert_eq!(info.max_in_flight, (QUEUE_SIZE / 10) as u16);
}

#[test]
fn a_device_that_is_not_a_disk_or_refuses_the_features_is_refused_and_nothing_leaks() {
    let (mock, t) = Mock::qemu();
    mock.borrow().regs.borrow_mut().device_type = DeviceType::Network;
    assert_eq!(Dev::new(t).err(), Some(InitError::NotBlock(1)));
    let (mock, t) = Mock::qemu();
    mock.borrow().regs.borrow_mut().refuse_features = true;
    assert_eq!(Dev::new(t).err(), Some(InitError::FeaturesRefused));
    let (mock, t) = Mock::qemu();
    mock.borrow().regs.borrow_mut().max_queue = 16;
    assert!(matches!(Dev::new(t), Err(InitError::Virtio(_))));
    for (size_max, seg_max) in [(100, 8), (4096, 0)] {
        let (mock, t) = Mock::with(SIZE_MAX | SEG_MAX, config(8, size_max, seg_max, 0), 8);
        assert!(matches!(Dev::new(t), Err(InitError::Config(..))));
        assert!(
            mock.borrow()
                .regs
                .borrow()
                .status
                .contains(DeviceStatus::FAILED)
        );
    }
    assert_eq!(dma_pages(), 0);
}

#[test]
fn an_odd_blk_size_falls_back_to_512_byte_blocks() {
    for bad in [0, 100, 1000, 8192] {
        let (_mock, t) = Mock::with(BLK_SIZE | FLUSH, config(16, 0, 0, bad), 16);
        let dev = Dev::new(t).expect("comes up");
        assert_eq!(dev.info().block_size, 512, "blk_size {bad}");
        assert_eq!(dev.info().blocks, 16);
    }
}

// ---- Reads, writes, flush. ----

#[test]
fn write_flush_read_back_round_trips_and_the_flush_makes_it_durable() {
    let (mock, t) = Mock::qemu();
    let mut disk = blocking(&mock, t);
    let data = pattern(7, 40 * 512);
    disk.write(3, &data).expect("write");
    assert_ne!(
        &mock.borrow().durable[3 * 512..43 * 512],
        &data[..],
        "not durable before the flush"
    );
    disk.flush().expect("flush");
    assert_eq!(mock.borrow().flushes, 1);
    assert_eq!(&mock.borrow().durable[3 * 512..43 * 512], &data[..]);
    let mut back = vec![0u8; data.len()];
    disk.read(3, &mut back).expect("read");
    assert_eq!(back, data);
    let s = disk.device().stats();
    assert_eq!((s.writes, s.flushes, s.reads), (1, 1, 1));
    assert_eq!(s.written_bytes, data.len() as u64);
    assert_eq!(s.device_errors, 0);
}

#[test]
fn a_legacy_device_round_trips_too() {
    let (mock, t) = Mock::with(FLUSH, config(32, 0, 0, 0), 32);
    let mut disk = blocking(&mock, t);
    let data = pattern(3, 2048);
    disk.write(10, &data).expect("write");
    disk.flush().expect("flush");
    let mut back = vec![0u8; 2048];
    disk.read(10, &mut back).expect("read");
    assert_eq!(back, data);
}

#[test]
fn a_long_range_is_split_and_its_pieces_are_in_flight_at_once_in_any_order() {
    // 128 sectors at size_max 1024, seg_max 4: 4 KiB requests of 4 segments.
    let (mock, t) = Mock::with(
        FLUSH | SIZE_MAX | SEG_MAX | VERSION_1,
        config(128, 1024, 4, 0),
        128,
    );
    mock.borrow_mut().reverse = true;
    let mut disk = blocking(&mock, t);
    assert_eq!(disk.info().max_request_blocks, 8);
    let data = pattern(9, 100 * 512);
    disk.write(20, &data).expect("write");
    let mut back = vec![0u8; data.len()];
    disk.read(20, &mut back).expect("read");
    assert_eq!(back, data);
    let m = mock.borrow();
    assert!(m.max_segment <= 1024, "size_max kept: {}", m.max_segment);
    assert!(m.max_segments <= 4, "seg_max kept: {}", m.max_segments);
}

#[test]
fn requests_complete_in_any_order_with_their_buffers_and_busy_past_max_in_flight() {
    let (mock, t) = Mock::qemu();
    mock.borrow_mut().reverse = true;
    let mut dev = Dev::new(t).expect("comes up");
    let n = usize::from(dev.info().max_in_flight);
    for i in 0..n {
        dev.submit(Request::read(i as u64, i as u64, 1, 512))
            .expect("room");
    }
    let (e, r) = dev.submit(Request::read(99, 0, 1, 512)).expect_err("full");
    assert_eq!((e, r.id), (Error::Busy, 99));
    assert_eq!(dev.in_flight(), n);
    assert!(dev.complete().is_none(), "nothing done before the device");
    let done = collect(&mut dev, &mock, n);
    assert_eq!(done.len(), n);
    assert_eq!(done[0].id, n as u64 - 1, "the device answered in reverse");
    for c in done {
        assert_eq!(c.result, Ok(()));
        assert!(
            c.buffer.as_slice().iter().all(|&b| b == c.id as u8),
            "block {}",
            c.id
        );
    }
    assert_eq!(dev.in_flight(), 0);
}

#[test]
fn a_flush_is_queued_and_completes_on_the_interrupt_not_on_submit() {
    let (mock, t) = Mock::qemu();
    let mut dev = Dev::new(t).expect("comes up");
    dev.submit(Request::flush(5)).expect("queued");
    assert!(dev.complete().is_none());
    assert_eq!(mock.borrow().flushes, 0, "the device has not run");
    assert!(!dev.poll_interrupt());
    mock.borrow_mut().serve();
    assert!(dev.poll_interrupt(), "the interrupt says something is done");
    let c = dev.complete().expect("done");
    assert_eq!((c.id, c.op, c.result), (5, Op::Flush, Ok(())));
    assert_eq!(mock.borrow().flushes, 1);
}

#[test]
fn a_disk_that_cannot_flush_refuses_writes_and_flushes_and_reads_still_work() {
    let (mock, t) = Mock::with(VERSION_1 | BLK_SIZE, config(16, 0, 0, 512), 16);
    let mut disk = blocking(&mock, t);
    assert!(!disk.info().flush);
    assert_eq!(disk.write(0, &[1; 512]), Err(Error::NoFlush));
    assert_eq!(disk.flush(), Err(Error::NoFlush));
    let mut back = vec![0u8; 1024];
    disk.read(4, &mut back).expect("read");
    assert!(back[..512].iter().all(|&b| b == 4));
    assert!(
        mock.borrow().disk[..512].iter().all(|&b| b == 0),
        "never written"
    );
}

#[test]
fn a_read_only_disk_refuses_writes_and_reads_still_work() {
    let (mock, t) = Mock::with(VERSION_1 | RO | FLUSH, config(16, 0, 0, 0), 16);
    let mut disk = blocking(&mock, t);
    assert!(disk.info().read_only);
    assert_eq!(disk.write(0, &[1; 512]), Err(Error::ReadOnly));
    let mut back = vec![0u8; 512];
    disk.read(2, &mut back).expect("read");
    assert!(back.iter().all(|&b| b == 2));
}

#[test]
fn requests_past_the_end_or_of_bad_length_are_refused_before_the_device_sees_them() {
    let (mock, t) = Mock::qemu();
    let mut dev = Dev::new(t).expect("comes up");
    let (e, _) = dev
        .submit(Request::read(1, 127, 2, 512))
        .expect_err("past the end");
    assert_eq!(
        e,
        Error::OutOfRange {
            block: 127,
            count: 2
        }
    );
    let bad = Request {
        id: 2,
        op: Op::Write,
        block: 0,
        buffer: Buffer::new(100),
    };
    assert_eq!(
        dev.submit(bad).expect_err("bad length").0,
        Error::BadLength { len: 100 }
    );
    assert_eq!(mock.borrow().regs.borrow().notifies, 0);
    assert_eq!(dev.stats().errors, 2);
}

#[test]
fn the_device_s_io_error_and_unsupported_statuses_say_so() {
    let (mock, t) = Mock::qemu();
    let mut dev = Dev::new(t).expect("comes up");
    // A read the mock finds past its own (smaller) disk: it answers IOERR.
    mock.borrow_mut().disk.truncate(64 * 512);
    dev.submit(Request::read(1, 100, 1, 512)).expect("queued");
    let c = collect(&mut dev, &mock, 1).pop().expect("done");
    assert_eq!(c.result, Err(Error::Io { block: 100 }));
    assert_eq!(dev.stats().device_errors, 0, "an honest error");
}

// ---- A device that writes garbage. ----

#[test]
fn a_bad_status_byte_or_used_length_is_counted_and_the_driver_goes_on() {
    let (mock, t) = Mock::qemu();
    let mut dev = Dev::new(t).expect("comes up");
    dev.submit(Request::read(1, 0, 1, 512)).expect("queued");
    // The device answers with status 7.
    {
        let mut m = mock.borrow_mut();
        m.take_all();
        let taken = m.pending.pop().expect("one");
        m.write_status(&taken, 7);
        m.push_used(u32::from(taken.head), 513);
    }
    let c = dev.complete().expect("done");
    assert_eq!(c.result, Err(Error::Io { block: 0 }));
    assert_eq!(dev.stats().device_errors, 1);
    // A read the device says it wrote 3 bytes of.
    dev.submit(Request::read(2, 1, 1, 512)).expect("queued");
    {
        let mut m = mock.borrow_mut();
        m.take_all();
        let taken = m.pending.pop().expect("one");
        m.write_status(&taken, S_OK);
        m.push_used(u32::from(taken.head), 3);
    }
    assert_eq!(
        dev.complete().expect("done").result,
        Err(Error::Io { block: 1 })
    );
    // A write with a used length past its writable byte: counted, the write stands.
    dev.submit(Request::write(3, 1, Buffer::new(512)))
        .expect("queued");
    {
        let mut m = mock.borrow_mut();
        m.take_all();
        let taken = m.pending.pop().expect("one");
        m.write_status(&taken, S_OK);
        m.push_used(u32::from(taken.head), u32::MAX);
    }
    assert_eq!(dev.complete().expect("done").result, Ok(()));
    assert_eq!(dev.stats().device_errors, 3);
    assert!(!dev.is_stopped());
    // The device never wrote the status (0xff stays): an error, counted.
    dev.submit(Request::flush(4)).expect("queued");
    {
        let mut m = mock.borrow_mut();
        m.take_all();
        let taken = m.pending.pop().expect("one");
        m.push_used(u32::from(taken.head), 1);
    }
    assert!(dev.complete().expect("done").result.is_err());
    assert_eq!(dev.stats().device_errors, 4);
    // And it still works.
    let mut disk = Blocking::new(&mut dev, Serve(mock.clone()));
    let mut back = vec![0u8; 512];
    disk.read(5, &mut back).expect("read");
    assert!(back.iter().all(|&b| b == 5));
}

#[test]
fn a_used_id_not_in_flight_stops_the_device_and_hands_back_every_request() {
    let (mock, t) = Mock::qemu();
    let mut dev = Dev::new(t).expect("comes up");
    for i in 0..3 {
        dev.submit(Request::read(i, i, 1, 512)).expect("queued");
    }
    mock.borrow_mut().take_all();
    mock.borrow_mut().push_used(60, 513); // never a head of ours
    let done: Vec<Completion> = core::iter::from_fn(|| dev.complete()).collect();
    assert!(dev.is_stopped());
    assert_eq!(done.len(), 3, "every request back, with its buffer");
    assert!(done.iter().all(|c| c.result == Err(Error::DeviceFailed)));
    assert_eq!(dev.in_flight(), 0);
    assert!(
        mock.borrow().regs.borrow().resets >= 2,
        "reset at bring-up and on stop"
    );
    let (e, _) = dev
        .submit(Request::read(9, 0, 1, 512))
        .expect_err("stopped");
    assert_eq!(e, Error::DeviceFailed);
    assert_eq!(dev.stats().device_errors, 1);
    // Blocking use says so too, and does not hang.
    let mut disk = Blocking::new(&mut dev, Serve(mock.clone()));
    assert_eq!(disk.read(0, &mut [0u8; 512]), Err(Error::DeviceFailed));
}

#[test]
fn seeded_garbage_never_panics_or_hangs_and_is_counted_and_nothing_leaks() {
    let mut device_errors = 0;
    for seed in 0..200u64 {
        {
            let (mock, t) = Mock::qemu();
            {
                let mut m = mock.borrow_mut();
                m.answer = Answer::Garbage;
                m.rng = Rng::new(seed);
                m.reverse = seed % 2 == 1;
            }
            let mut disk = blocking(&mock, t);
            let mut rng = Rng::new(seed ^ 0x5eed);
            for _ in 0..20 {
                let block = rng.below(120);
                let n = rng.below(8) as usize + 1;
                match rng.below(3) {
                    0 => {
                        let _ = disk.write(block, &pattern(seed as u8, n * 512));
                    }
                    1 => {
                        let _ = disk.read(block, &mut vec![0u8; n * 512]);
                    }
                    _ => {
                        let _ = disk.flush();
                    }
                }
                if disk.device().is_stopped() {
                    assert_eq!(disk.flush(), Err(Error::DeviceFailed));
                    break;
                }
            }
            let stats = disk.device().stats();
            device_errors += stats.device_errors;
        }
        assert_eq!(dma_pages(), 0, "seed {seed}: the queue's pages back");
    }
    assert!(device_errors > 100, "garbage was seen: {device_errors}");
}
