//! Host tests: a mock blkback on `FakeHost` and the backend side of the shared ring, serving a
//! disk in a `Vec<u8>` through the granted pages, and misbehaving on request.

use super::*;
use alloc::rc::Rc;
use blockdev::{BlockIo, Blocking, Buffer, NoWait, Wait};
use core::cell::{Cell, RefCell};
use platform::fuzz::Rng;
use xen_services::frontend::fake::{FakeFrame, FakeHost};
use xen_services::sring::fake::BackRing;

const NODE: &str = "device/vbd/768";
const BE: &str = "/local/domain/0/backend/vbd/5/768";

/// How the mock backend misbehaves in its responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evil {
    None,
    /// Random id, operation and status in every response, and now and then a random rsp_prod.
    Garbage,
    /// An id never sent.
    UnknownId,
    /// The first response again in place of the others (as many responses as requests).
    Duplicate,
    /// rsp_prod far beyond the requests outstanding.
    RspProdJump,
    /// Another operation than the request's.
    WrongOp,
    /// A status blkif does not have.
    BadStatus,
}

/// How the backend's handshake goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connect {
    Yes,
    /// Stays in InitWait.
    Never,
    /// Goes Closed once the frontend is Initialised.
    Close,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    sectors: u64,
    sector_size: u32,
    info: u32,
    mode: &'static str,
    flush: bool,
    barrier: bool,
    indirect: Option<u32>,
    connect: Connect,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            sectors: 2048, // 1 MiB
            sector_size: 512,
            info: 0,
            mode: "w",
            flush: true,
            barrier: false,
            indirect: None,
            connect: Connect::Yes,
        }
    }
}

/// A request as the backend saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    op: u8,
    inner: u8,
    segments: usize,
    sector: u64,
}

/// The mock blkback.
struct Blkback {
    ring: Option<BackRing<FakeFrame>>,
    disk: Vec<u8>,
    /// What a flush made durable.
    durable: Vec<u8>,
    read_only: bool,
    flush: bool,
    evil: Evil,
    rng: Rng,
    /// Answers not yet written: (id, operation, status).
    held: Vec<(u64, u8, i16)>,
    /// Answer in a random order.
    shuffle: bool,
    seen: Vec<Seen>,
}

impl Blkback {
    fn new(spec: &Spec, seed: u64) -> Blkback {
        let mut rng = Rng::new(seed);
        let disk = rng.bytes(spec.sectors as usize * 512);
        Blkback {
            ring: None,
            durable: disk.clone(),
            disk,
            read_only: spec.info & 4 != 0 || spec.mode == "r",
            flush: spec.flush || spec.barrier,
            evil: Evil::None,
            rng,
            held: Vec::new(),
            shuffle: false,
            seen: Vec::new(),
        }
    }

    /// Maps the ring the frontend published (once).
    fn attach(&mut self, host: &FakeHost) -> bool {
        if self.ring.is_none() {
            let Some(r) = host.store.get(&format!("{NODE}/ring-ref")) else {
                return false;
            };
            let r: u32 = r.parse().expect("ring-ref is a number");
            let (domid, _, readonly) = host.grants[&r];
            assert_eq!(domid, 0, "the ring is granted to the backend's domain");
            assert!(!readonly, "the backend writes responses into the ring");
            let page = host.granted(r).expect("ring-ref is granted");
            self.ring = Some(BackRing::new(FakeFrame { page, frame: 0 }, wire::ENTRY));
        }
        true
    }

    /// Consumes the requests published, doing their I/O; answers them unless `hold`.
    fn take(&mut self, host: &FakeHost) {
        if !self.attach(host) {
            return;
        }
        while let Some(off) = self.ring.as_mut().and_then(|r| r.take_request()) {
            let answer = self.execute(host, off);
            self.held.push(answer);
        }
        let ring = self.ring.as_ref().expect("attached");
        // RING_FINAL_CHECK_FOR_REQUESTS: an event for the next request.
        ring.memory().write_u32(4, ring.req_cons.wrapping_add(1));
    }

    fn execute(&mut self, host: &FakeHost, off: usize) -> (u64, u8, i16) {
        let mem = self.ring.as_ref().expect("attached").memory();
        let op = mem.read_u8(off + wire::REQ_OPERATION);
        let id = wire::read_u64(mem, off + wire::REQ_ID);
        let sector = wire::read_u64(mem, off + wire::REQ_SECTOR);
        let mut segs: Vec<(u32, u8, u8)> = Vec::new();
        let inner = if op == wire::OP_INDIRECT {
            let inner = mem.read_u8(off + wire::IND_OPERATION);
            let n = usize::from(mem.read_u16(off + wire::IND_NR_SEGMENTS));
            assert!(n > wire::MAX_SEGMENTS, "indirect only when needed: {n}");
            let grefs: Vec<u32> = (0..wire::MAX_INDIRECT_PAGES)
                .map(|i| mem.read_u32(off + wire::IND_GREFS + 4 * i))
                .collect();
            for i in 0..n {
                let gref = grefs[i / wire::SEGMENTS_PER_PAGE];
                // Linux blkback with persistent grants maps them writable.
                assert!(!host.grants[&gref].2, "indirect pages are granted writable");
                let page = host.granted(gref).expect("indirect page granted");
                let at = (i % wire::SEGMENTS_PER_PAGE) * wire::SEGMENT;
                segs.push((
                    page.read_u32(at),
                    page.read_u8(at + 4),
                    page.read_u8(at + 5),
                ));
            }
            inner
        } else {
            let n = usize::from(mem.read_u8(off + wire::REQ_NR_SEGMENTS));
            assert!(n <= wire::MAX_SEGMENTS);
            for i in 0..n {
                let at = off + wire::REQ_SEGMENTS + i * wire::SEGMENT;
                segs.push((mem.read_u32(at), mem.read_u8(at + 4), mem.read_u8(at + 5)));
            }
            op
        };
        self.seen.push(Seen {
            op,
            inner,
            segments: segs.len(),
            sector,
        });
        let status = match inner {
            wire::OP_READ | wire::OP_WRITE => {
                if inner == wire::OP_WRITE && self.read_only {
                    wire::RSP_ERROR
                } else {
                    self.io(host, inner, sector, &segs)
                }
            }
            wire::OP_FLUSH_DISKCACHE | wire::OP_WRITE_BARRIER if self.flush => {
                assert!(segs.is_empty(), "flushes carry no data");
                self.durable = self.disk.clone();
                wire::RSP_OKAY
            }
            _ => wire::RSP_EOPNOTSUPP,
        };
        (id, inner, status)
    }

    fn io(&mut self, host: &FakeHost, op: u8, sector: u64, segs: &[(u32, u8, u8)]) -> i16 {
        assert!(!segs.is_empty(), "a read or write carries data");
        let mut pos = sector as usize * 512;
        for &(gref, first, last) in segs {
            assert!(
                first <= last && last < 8,
                "sectors {first}..={last} of a page"
            );
            let (domid, _, readonly) = host.grants[&gref];
            assert_eq!(domid, 0);
            assert!(!readonly, "data pages are writable by the backend");
            let page = host.granted(gref).expect("data page granted");
            let start = usize::from(first) * 512;
            let len = usize::from(last - first + 1) * 512;
            if pos + len > self.disk.len() {
                return wire::RSP_ERROR;
            }
            if op == wire::OP_READ {
                page.write_bytes(start, &self.disk[pos..pos + len]);
            } else {
                page.read_bytes(start, &mut self.disk[pos..pos + len]);
            }
            pos += len;
        }
        wire::RSP_OKAY
    }

    /// Writes the held answers (misbehaving as told) and publishes them.
    fn answer(&mut self) {
        if self.shuffle {
            for i in (1..self.held.len()).rev() {
                let j = self.rng.below(i as u64 + 1) as usize;
                self.held.swap(i, j);
            }
        }
        let held = core::mem::take(&mut self.held);
        let first = held.first().copied();
        for (id, op, status) in held {
            let (mut id, mut op, mut status) = (id, op, status);
            match self.evil {
                Evil::None | Evil::RspProdJump => {}
                Evil::Duplicate => (id, op, status) = first.unwrap_or((id, op, status)),
                Evil::Garbage => {
                    if self.rng.chance(70) {
                        id = self.rng.edgy_u64();
                    }
                    if self.rng.chance(50) {
                        op = self.rng.next_u64() as u8;
                    }
                    if self.rng.chance(50) {
                        status = self.rng.next_u64() as i16;
                    }
                }
                Evil::UnknownId => id ^= 1 << 40,
                Evil::WrongOp => op = 99,
                Evil::BadStatus => status = 7,
            }
            let ring = self.ring.as_mut().expect("attached");
            let off = ring.next_response();
            let mem = ring.memory();
            wire::write_u64(mem, off + wire::RSP_ID, id);
            mem.write_u8(off + wire::RSP_OPERATION, op);
            mem.write_u16(off + wire::RSP_STATUS, status as u16);
            ring.push_response();
        }
        let ring = self.ring.as_mut().expect("attached");
        ring.publish();
        match self.evil {
            Evil::RspProdJump => {
                let jump = ring.rsp_prod_pvt.wrapping_add(50);
                ring.set_rsp_prod(jump);
            }
            Evil::Garbage if self.rng.chance(10) => {
                let v = self.rng.edgy_u32();
                ring.set_rsp_prod(v);
            }
            _ => {}
        }
    }

    fn serve(&mut self, host: &FakeHost) {
        self.take(host);
        if self.ring.is_some() {
            self.answer();
        }
    }
}

/// The platform of the tests: `FakeHost`, and the mock backend serving on every notification
/// when `auto`.
#[derive(Clone)]
struct TestHost {
    fake: Rc<RefCell<FakeHost>>,
    back: Rc<RefCell<Blkback>>,
    auto: Rc<Cell<bool>>,
}

impl TestHost {
    /// The backend serves what is published and answers.
    fn serve(&self) {
        self.back.borrow_mut().serve(&self.fake.borrow());
    }
    /// The backend takes what is published (doing the I/O) without answering yet.
    fn take(&self) {
        self.back.borrow_mut().take(&self.fake.borrow());
    }
    fn answer(&self) {
        self.back.borrow_mut().answer();
    }
}

impl FrontendHost for TestHost {
    type Page = FakeFrame;
    fn read(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, xen_services::xenstore::Error> {
        self.fake.borrow_mut().read(path, buf)
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), xen_services::xenstore::Error> {
        self.fake.borrow_mut().write(path, value)
    }
    fn alloc_page(&mut self) -> Option<FakeFrame> {
        self.fake.borrow_mut().alloc_page()
    }
    fn free_page(&mut self, page: FakeFrame) {
        self.fake.borrow_mut().free_page(page)
    }
    fn grant(
        &mut self,
        domid: u16,
        page: &FakeFrame,
        readonly: bool,
    ) -> Result<GrantRef, xen_services::grant::GrantError> {
        self.fake.borrow_mut().grant(domid, page, readonly)
    }
    fn end_grant(&mut self, r: GrantRef) -> Result<(), xen_services::grant::GrantError> {
        self.fake.borrow_mut().end_grant(r)
    }
    fn alloc_event(&mut self, remote: u16) -> Result<u32, i32> {
        self.fake.borrow_mut().alloc_event(remote)
    }
    fn notify(&self, port: u32) {
        self.fake.borrow().notify(port);
        if self.auto.get() {
            self.serve();
        }
    }
    fn now_ns(&self) -> u64 {
        self.fake.borrow().now_ns()
    }
    fn pause(&mut self) {
        self.fake.borrow_mut().pause()
    }
    fn watch(
        &mut self,
        path: &str,
    ) -> Result<xen_services::xenstore::WatchId, xen_services::xenstore::Error> {
        self.fake.borrow_mut().watch(path)
    }
    fn fired(&mut self, id: xen_services::xenstore::WatchId) -> bool {
        self.fake.borrow_mut().fired(id)
    }
}

/// A host whose backend follows `spec`, and its disk from `seed`.
fn rig(spec: Spec, seed: u64) -> TestHost {
    let mut fake = FakeHost::with_keys(&[
        (&format!("{NODE}/backend"), BE),
        (&format!("{NODE}/backend-id"), "0"),
        (&format!("{BE}/state"), "2"),
        (&format!("{BE}/max-ring-page-order"), "4"),
        (&format!("{BE}/feature-persistent"), "1"),
        (&format!("{BE}/mode"), spec.mode),
    ]);
    fake.on_pause = Some(Box::new(move |store| {
        let front = store.get(&format!("{NODE}/state")).cloned();
        let back = store.get(&format!("{BE}/state")).cloned();
        if front.as_deref() != Some("3") || back.as_deref() != Some("2") {
            return;
        }
        let mut set = |k: &str, v: String| {
            store.insert(format!("{BE}/{k}"), v);
        };
        match spec.connect {
            Connect::Never => {}
            Connect::Close => set("state", "6".into()),
            Connect::Yes => {
                set("sectors", spec.sectors.to_string());
                set("sector-size", spec.sector_size.to_string());
                set("info", spec.info.to_string());
                if spec.flush {
                    set("feature-flush-cache", "1".into());
                }
                if spec.barrier {
                    set("feature-barrier", "1".into());
                }
                if let Some(n) = spec.indirect {
                    set("feature-max-indirect-segments", n.to_string());
                }
                set("state", "4".into());
            }
        }
    }));
    TestHost {
        fake: Rc::new(RefCell::new(fake)),
        back: Rc::new(RefCell::new(Blkback::new(&spec, seed))),
        auto: Rc::new(Cell::new(true)),
    }
}

fn connect(spec: Spec, seed: u64) -> (BlkFront<TestHost>, TestHost) {
    let host = rig(spec, seed);
    let dev = BlkFront::connect(host.clone(), NODE).expect("connects");
    (dev, host)
}

fn key(host: &TestHost, k: &str) -> String {
    host.fake.borrow().store[k].clone()
}

#[test]
fn the_handshake_publishes_the_ring_and_reads_the_disk_when_connected() {
    let (dev, host) = connect(Spec::default(), 1);
    assert_eq!(key(&host, &format!("{NODE}/state")), "4");
    assert_eq!(key(&host, &format!("{NODE}/protocol")), "x86_64-abi");
    assert_eq!(key(&host, &format!("{NODE}/feature-persistent")), "1");
    let port: u32 = key(&host, &format!("{NODE}/event-channel"))
        .parse()
        .expect("number");
    assert_eq!(port, dev.event_channel());
    let ring_ref: u32 = key(&host, &format!("{NODE}/ring-ref"))
        .parse()
        .expect("number");
    assert_eq!(
        host.fake.borrow().grants[&ring_ref],
        (0, host.fake.borrow().grants[&ring_ref].1, false)
    );
    assert!(
        !host
            .fake
            .borrow()
            .store
            .contains_key(&format!("{NODE}/ring-page-order")),
        "one page"
    );
    let info = dev.info();
    assert_eq!(info.block_size, 512);
    assert_eq!(info.blocks, 2048);
    assert!(info.flush && !info.read_only);
    assert_eq!(info.max_request_blocks, 88, "11 pages of 8 sectors");
    assert_eq!(
        info.max_in_flight, 11,
        "128 bounce pages hold 11 requests of 11 pages"
    );
    assert!(info.is_valid());
    let f = dev.features();
    assert_eq!(f.flush, Some(FlushKind::FlushCache));
    assert_eq!(f.segments, 11);
    assert_eq!(f.max_ring_page_order, 4);
    assert_eq!(f.handle, 768);
    assert!(!dev.is_failed());
}

/// Writes and reads of every shape through `Blocking`, checked against a model and the
/// backend's disk.
fn round_trips(spec: Spec, seed: u64) -> BlkFront<TestHost> {
    let (dev, host) = connect(spec, seed);
    let info = dev.info();
    let bs = info.block_size as usize;
    let mut model = host.back.borrow().disk.clone();
    let mut io = Blocking::new(dev, NoWait);
    let mut rng = Rng::new(seed ^ 0x55);
    let mut buf = vec![0u8; model.len()];
    io.read(0, &mut buf).expect("reads the whole disk");
    assert!(
        buf == model,
        "the whole disk reads back as the backend has it"
    );
    for _ in 0..40 {
        let blocks = info.blocks as usize;
        let n = 1 + rng.below(blocks.min(3 * info.max_request_blocks as usize) as u64) as usize;
        let at = rng.below((blocks - n + 1) as u64) as usize;
        if rng.chance(50) {
            let data = rng.bytes(n * bs);
            io.write(at as u64, &data).expect("writes");
            model[at * bs..(at + n) * bs].copy_from_slice(&data);
        } else {
            let mut got = vec![0u8; n * bs];
            io.read(at as u64, &mut got).expect("reads");
            assert!(
                got == model[at * bs..(at + n) * bs],
                "blocks {at}+{n} read back"
            );
        }
    }
    io.flush().expect("flushes");
    assert!(
        host.back.borrow().disk == model,
        "the backend's disk holds what was written"
    );
    assert!(
        host.back.borrow().durable == model,
        "and the flush made it durable"
    );
    let (dev, _) = io.into_inner();
    assert_eq!(dev.in_flight(), 0);
    let stats = dev.stats();
    assert_eq!((stats.errors, stats.device_errors), (0, 0));
    assert!(stats.reads > 0 && stats.writes > 0 && stats.flushes == 1);
    dev
}

#[test]
fn data_round_trips_byte_exact() {
    let dev = round_trips(Spec::default(), 2);
    let host = dev.host().clone();
    let seen = &host.back.borrow().seen;
    assert!(
        seen.iter().all(|s| s.op != wire::OP_INDIRECT),
        "no indirect without the feature"
    );
    assert!(
        seen.iter().any(|s| s.segments == 11),
        "requests of 11 segments"
    );
    assert!(seen.iter().any(|s| s.op == wire::OP_FLUSH_DISKCACHE));
}

#[test]
fn indirect_requests_when_the_backend_offers_them() {
    let spec = Spec {
        indirect: Some(256),
        ..Spec::default()
    };
    let dev = round_trips(spec, 3);
    assert_eq!(dev.features().segments, 32);
    assert_eq!(dev.info().max_request_blocks, 256, "128 KiB");
    assert_eq!(dev.info().max_in_flight, 4);
    let host = dev.host().clone();
    let seen = &host.back.borrow().seen;
    assert!(
        seen.iter()
            .any(|s| s.op == wire::OP_INDIRECT && s.segments == 32)
    );
    assert!(
        seen.iter().any(|s| s.op == wire::OP_READ),
        "small requests stay direct"
    );
}

#[test]
fn many_indirect_pages_per_request() {
    let spec = Spec {
        sectors: 16384,
        indirect: Some(4096),
        ..Spec::default()
    };
    let host = rig(spec, 4);
    let config = Config {
        data_pages: 1200,
        max_indirect_segments: 1100,
        ..Config::default()
    };
    let dev = BlkFront::connect_with(host.clone(), NODE, config).expect("connects");
    assert_eq!(dev.features().segments, 1100);
    let mut io = Blocking::new(dev, NoWait);
    let data = Rng::new(9).bytes(1100 * 4096);
    io.write(100, &data)
        .expect("a write of 3 indirect pages of segments");
    let mut got = vec![0u8; data.len()];
    io.read(100, &mut got).expect("reads");
    assert!(got == data);
    assert!(host.back.borrow().seen.iter().any(|s| s.segments == 1100));
}

#[test]
fn blocks_of_the_backend_sector_size() {
    let spec = Spec {
        sectors: 4096,
        sector_size: 4096,
        ..Spec::default()
    };
    let dev = round_trips(spec, 5);
    assert_eq!(dev.info().block_size, 4096);
    assert_eq!(dev.info().blocks, 512, "sectors are 512-byte units");
    assert_eq!(dev.info().max_request_blocks, 11);
    let host = dev.host().clone();
    assert!(
        host.back.borrow().seen.iter().all(|s| s.sector % 8 == 0),
        "sector numbers stay in 512-byte units, aligned"
    );
    // A sector size that is no block size: 512-byte blocks.
    let (dev, _) = connect(
        Spec {
            sector_size: 3000,
            ..Spec::default()
        },
        5,
    );
    assert_eq!(dev.info().block_size, 512);
}

#[test]
fn without_flush_writes_are_refused_and_reads_work() {
    let spec = Spec {
        flush: false,
        ..Spec::default()
    };
    let (dev, host) = connect(spec, 6);
    assert!(!dev.info().flush);
    assert_eq!(dev.features().flush, None);
    let mut io = Blocking::new(dev, NoWait);
    assert_eq!(io.write(0, &[1u8; 512]), Err(Error::NoFlush));
    assert_eq!(io.flush(), Err(Error::NoFlush));
    assert!(
        Error::NoFlush.to_string().contains("cannot flush"),
        "the error says why"
    );
    let mut got = [0u8; 1024];
    io.read(2, &mut got).expect("reads");
    assert!(got[..] == host.back.borrow().disk[1024..2048]);
    assert!(
        host.back
            .borrow()
            .seen
            .iter()
            .all(|s| s.op == wire::OP_READ),
        "nothing else reached the backend"
    );
}

#[test]
fn a_barrier_backend_flushes_with_barriers() {
    let spec = Spec {
        flush: false,
        barrier: true,
        ..Spec::default()
    };
    let (dev, host) = connect(spec, 7);
    assert_eq!(dev.features().flush, Some(FlushKind::Barrier));
    let mut io = Blocking::new(dev, NoWait);
    io.write(3, &[7u8; 512]).expect("writes");
    io.flush().expect("flushes");
    assert_eq!(host.back.borrow().durable[3 * 512..4 * 512], [7u8; 512]);
    assert!(
        host.back
            .borrow()
            .seen
            .iter()
            .any(|s| s.op == wire::OP_WRITE_BARRIER)
    );
}

#[test]
fn a_flush_the_backend_does_not_support_says_so() {
    let (dev, host) = connect(Spec::default(), 8);
    host.back.borrow_mut().flush = false;
    let mut io = Blocking::new(dev, NoWait);
    assert_eq!(io.flush(), Err(Error::Unsupported));
}

#[test]
fn read_only_disks_refuse_writes() {
    for spec in [
        Spec {
            info: 4,
            ..Spec::default()
        },
        Spec {
            mode: "r",
            ..Spec::default()
        },
    ] {
        let (dev, host) = connect(spec, 9);
        assert!(dev.info().read_only, "{spec:?}");
        let mut io = Blocking::new(dev, NoWait);
        assert_eq!(io.write(0, &[1u8; 512]), Err(Error::ReadOnly));
        let mut got = [0u8; 512];
        io.read(0, &mut got).expect("reads");
        assert!(got[..] == host.back.borrow().disk[..512]);
    }
}

/// Everything given back: grants ended, pages freed.
fn all_given_back(host: &TestHost) {
    let fake = host.fake.borrow();
    assert_eq!(fake.pages_out.get(), 0, "pages given back");
    assert!(fake.grants.is_empty(), "grants ended");
}

#[test]
fn a_backend_that_never_connects_times_out() {
    let host = rig(
        Spec {
            connect: Connect::Never,
            ..Spec::default()
        },
        10,
    );
    let e = BlkFront::connect(host.clone(), NODE).expect_err("never connects");
    assert_eq!(
        e,
        ConnectError::Frontend(FrontendError::Timeout(XenbusState::InitWait))
    );
    assert!(e.to_string().contains("did not answer"), "{e}");
    all_given_back(&host);
    assert_eq!(
        key(&host, &format!("{NODE}/state")),
        "6",
        "the frontend closed"
    );
    // One that never even reaches InitWait.
    let host = rig(Spec::default(), 10);
    host.fake
        .borrow_mut()
        .store
        .insert(format!("{BE}/state"), "1".into());
    let e = BlkFront::connect(host.clone(), NODE).expect_err("no InitWait");
    assert_eq!(
        e,
        ConnectError::Frontend(FrontendError::Timeout(XenbusState::Initialising))
    );
    all_given_back(&host);
}

#[test]
fn a_backend_that_closes_mid_handshake_is_an_error() {
    let host = rig(
        Spec {
            connect: Connect::Close,
            ..Spec::default()
        },
        11,
    );
    let e = BlkFront::connect(host.clone(), NODE).expect_err("closed");
    assert_eq!(e, ConnectError::BackendClosed);
    assert!(e.to_string().contains("closed"));
    all_given_back(&host);
}

#[test]
fn bad_or_missing_keys_are_named() {
    let host = rig(Spec::default(), 12);
    host.fake
        .borrow_mut()
        .store
        .remove(&format!("{NODE}/backend"));
    assert!(matches!(
        BlkFront::connect(host, NODE),
        Err(ConnectError::Frontend(FrontendError::Store("backend", _)))
    ));
    // No sectors once connected.
    let host = rig(Spec::default(), 12);
    host.fake.borrow_mut().broken_key = Some("sectors".into());
    let e = BlkFront::connect(host.clone(), NODE).expect_err("no sectors");
    assert!(
        matches!(
            e,
            ConnectError::Frontend(FrontendError::Store("sectors", _))
        ),
        "{e}"
    );
    all_given_back(&host);
    // Garbage in a number.
    let host = rig(Spec::default(), 12);
    host.fake
        .borrow_mut()
        .store
        .insert(format!("{BE}/max-ring-page-order"), "x".into());
    let e = BlkFront::connect(host.clone(), NODE).expect_err("bad number");
    assert_eq!(
        e,
        ConnectError::Frontend(FrontendError::BadKey("max-ring-page-order"))
    );
    all_given_back(&host);
}

#[test]
fn running_out_of_pages_gives_back_what_was_taken() {
    for limit in [0, 1, 5, 60] {
        let host = rig(Spec::default(), 13);
        host.fake.borrow_mut().page_limit = Some(limit);
        let e = BlkFront::connect(host.clone(), NODE).expect_err("no memory");
        assert_eq!(
            e,
            ConnectError::Frontend(FrontendError::NoMemory),
            "{limit}"
        );
        all_given_back(&host);
    }
}

#[test]
fn dropping_the_device_gives_everything_back() {
    let (dev, host) = connect(Spec::default(), 14);
    assert!(host.fake.borrow().pages_out.get() > 100);
    drop(dev);
    all_given_back(&host);
    assert_eq!(key(&host, &format!("{NODE}/state")), "6");
    // A page the backend still maps is left to it.
    let (dev, host) = connect(Spec::default(), 14);
    let ring_ref: u32 = key(&host, &format!("{NODE}/ring-ref"))
        .parse()
        .expect("number");
    host.fake.borrow_mut().mapped.push(ring_ref);
    drop(dev);
    assert_eq!(
        host.fake.borrow().pages_out.get(),
        1,
        "the ring's page is leaked, not reused"
    );
}

/// Requests of one block at `block`, `id` = block.
fn read_req(block: u64) -> Request {
    Request::read(block, block, 1, 512)
}

#[test]
fn requests_in_flight_complete_out_of_order_and_a_full_device_is_busy() {
    let (mut dev, host) = connect(Spec::default(), 15);
    host.auto.set(false);
    host.back.borrow_mut().shuffle = true;
    let max = usize::from(dev.info().max_in_flight);
    for b in 0..max as u64 {
        dev.submit(read_req(b)).expect("room");
    }
    assert_eq!(dev.in_flight(), max);
    let (e, back) = dev.submit(read_req(99)).expect_err("full");
    assert_eq!(e, Error::Busy);
    assert_eq!(back.id, 99, "the request is given back");
    assert!(dev.complete().is_none(), "nothing answered yet");
    host.serve();
    assert!(dev.poll_interrupt());
    let mut ids = Vec::new();
    while let Some(c) = dev.complete() {
        c.result.expect("read");
        let at = c.block as usize * 512;
        assert!(c.buffer.as_slice() == &host.back.borrow().disk[at..at + 512]);
        ids.push(c.id);
    }
    assert_eq!(ids.len(), max);
    assert_ne!(ids, (0..max as u64).collect::<Vec<_>>(), "shuffled");
    assert_eq!(dev.in_flight(), 0);
    // The ring goes round many times: ids, generations and indices wrap cleanly.
    for round in 0..50u64 {
        for b in 0..max as u64 {
            dev.submit(read_req((round * 7 + b) % 2048)).expect("room");
        }
        host.serve();
        let mut n = 0;
        while let Some(c) = dev.complete() {
            c.result.expect("read");
            n += 1;
        }
        assert_eq!(n, max);
    }
    assert_eq!(dev.stats().device_errors, 0);
}

#[test]
fn the_final_check_catches_a_response_published_late() {
    let (mut dev, host) = connect(Spec::default(), 16);
    host.auto.set(false);
    dev.submit(read_req(1)).expect("room");
    dev.submit(read_req(2)).expect("room");
    host.take();
    assert!(!dev.poll_interrupt(), "nothing answered");
    // The frontend asked for an event at the next response.
    let rsp_event = host
        .back
        .borrow()
        .ring
        .as_ref()
        .expect("ring")
        .memory()
        .read_u32(12);
    assert_eq!(rsp_event, 1);
    host.answer();
    assert!(dev.poll_interrupt());
    assert!(dev.complete().is_some() && dev.complete().is_some());
    let rsp_event = host
        .back
        .borrow()
        .ring
        .as_ref()
        .expect("ring")
        .memory()
        .read_u32(12);
    assert_eq!(rsp_event, 3, "and after them, at the one after");
}

#[test]
fn notifications_follow_req_event() {
    let (mut dev, host) = connect(Spec::default(), 17);
    let port = dev.event_channel();
    let before = host.fake.borrow().notifications(port);
    let mut io = Blocking::new(&mut dev, NoWait);
    let mut buf = [0u8; 512];
    for b in 0..5 {
        io.read(b, &mut buf).expect("reads");
    }
    assert_eq!(
        host.fake.borrow().notifications(port) - before,
        5,
        "one per request the backend asked for"
    );
}

/// Submits reads until busy, has the backend answer misbehaving as `evil`, and takes every
/// completion: each request comes back exactly once.
fn misbehave(evil: Evil, seed: u64) -> (BlkFront<TestHost>, Vec<Completion>) {
    let (mut dev, host) = connect(Spec::default(), seed);
    host.auto.set(false);
    host.back.borrow_mut().evil = evil;
    let max = u64::from(dev.info().max_in_flight);
    for b in 0..max {
        dev.submit(read_req(b)).expect("room");
    }
    host.serve();
    dev.poll_interrupt();
    let mut done = Vec::new();
    while let Some(c) = dev.complete() {
        done.push(c);
    }
    let mut ids: Vec<u64> = done.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        done.len(),
        "{evil:?}: no request completed twice"
    );
    (dev, done)
}

#[test]
fn responses_for_ids_never_sent_stop_the_device() {
    let (mut dev, done) = misbehave(Evil::UnknownId, 18);
    assert!(dev.is_failed());
    assert_eq!(done.len(), usize::from(dev.info().max_in_flight));
    assert!(done.iter().all(|c| c.result == Err(Error::DeviceFailed)));
    assert_eq!(dev.stats().device_errors, 1);
    assert_eq!(dev.in_flight(), 0);
    let (e, _) = dev.submit(read_req(0)).expect_err("stopped");
    assert_eq!(e, Error::DeviceFailed);
}

#[test]
fn duplicate_responses_stop_the_device() {
    let (dev, done) = misbehave(Evil::Duplicate, 19);
    assert!(dev.is_failed());
    assert_eq!(done.len(), usize::from(dev.info().max_in_flight));
    assert!(done[0].result.is_ok(), "the first answer was good");
    assert!(done.iter().any(|c| c.result == Err(Error::DeviceFailed)));
    assert!(dev.stats().device_errors >= 1);
}

#[test]
fn an_rsp_prod_jump_stops_the_device() {
    let (dev, done) = misbehave(Evil::RspProdJump, 20);
    assert!(dev.is_failed());
    assert_eq!(done.len(), usize::from(dev.info().max_in_flight));
    assert!(done.iter().all(|c| c.result == Err(Error::DeviceFailed)));
    assert_eq!(dev.stats().device_errors, 1);
}

#[test]
fn wrong_operations_and_statuses_fail_their_requests_only() {
    for evil in [Evil::WrongOp, Evil::BadStatus] {
        let (mut dev, done) = misbehave(evil, 21);
        assert!(!dev.is_failed(), "{evil:?}");
        let max = usize::from(dev.info().max_in_flight);
        assert_eq!(done.len(), max);
        assert!(
            done.iter()
                .all(|c| c.result == Err(Error::Io { block: c.block }))
        );
        assert_eq!(dev.stats().device_errors, max as u64);
        assert_eq!(dev.stats().errors, max as u64);
        // A well-behaved answer goes through again.
        let host = dev.host().clone();
        host.back.borrow_mut().evil = Evil::None;
        dev.submit(read_req(5)).expect("room");
        host.serve();
        dev.complete().expect("done").result.expect("read");
    }
}

#[test]
fn garbage_in_every_response_field_is_refused_without_a_panic() {
    for seed in 0..300 {
        let (mut dev, host) = connect(Spec::default(), 1000 + seed);
        host.auto.set(false);
        host.back.borrow_mut().evil = Evil::Garbage;
        host.back.borrow_mut().shuffle = true;
        let mut rng = Rng::new(seed);
        let mut submitted = 0u64;
        let mut completed = Vec::new();
        for _ in 0..6 {
            let n = 1 + rng.below(u64::from(dev.info().max_in_flight));
            for _ in 0..n {
                let req = if rng.chance(50) {
                    read_req(rng.below(2048))
                } else {
                    Request::write(0, rng.below(2000), Buffer::from_slice(&rng.bytes(512 * 9)))
                };
                let mut req = req;
                req.id = submitted;
                match dev.submit(req) {
                    Ok(()) => submitted += 1,
                    Err((Error::Busy | Error::DeviceFailed, _)) => {}
                    Err((e, _)) => panic!("{e}"),
                }
            }
            host.serve();
            dev.poll_interrupt();
            while let Some(c) = dev.complete() {
                completed.push(c.id);
            }
        }
        // Whatever the backend wrote, each request comes back once, and a request still in
        // flight is one the backend has not answered, with the device alive.
        completed.sort_unstable();
        let n = completed.len();
        completed.dedup();
        assert_eq!(completed.len(), n, "seed {seed}: a request completed twice");
        assert_eq!(n as u64 + dev.in_flight() as u64, submitted, "seed {seed}");
        assert!(
            dev.stats().device_errors > 0,
            "seed {seed}: garbage was counted"
        );
        if dev.is_failed() {
            assert_eq!(dev.in_flight(), 0);
        }
    }
}

#[test]
fn refused_requests_are_given_back() {
    let (mut dev, _host) = connect(Spec::default(), 22);
    let (e, r) = dev
        .submit(Request::read(7, 2048, 1, 512))
        .expect_err("past the end");
    assert_eq!(
        e,
        Error::OutOfRange {
            block: 2048,
            count: 1
        }
    );
    assert_eq!(r.id, 7);
    let (e, _) = dev
        .submit(Request::read(8, 0, 89, 512))
        .expect_err("too long");
    assert!(matches!(e, Error::BadLength { .. }));
    assert_eq!(dev.stats().errors, 2);
    assert_eq!(dev.in_flight(), 0);
}

/// A `Wait` whose backend answers only when waited for (the kernel parks on the event
/// channel there).
struct BackendWait(TestHost);

impl Wait for BackendWait {
    fn wait(&mut self) -> bool {
        self.0.serve();
        true
    }
}

#[test]
fn blocking_waits_for_the_backend() {
    let (dev, host) = connect(Spec::default(), 23);
    host.auto.set(false);
    host.back.borrow_mut().shuffle = true;
    let mut io = Blocking::new(dev, BackendWait(host.clone()));
    let data = Rng::new(3).bytes(512 * 1000);
    io.write(10, &data)
        .expect("writes, many requests in flight");
    let mut got = vec![0u8; data.len()];
    io.read(10, &mut got).expect("reads");
    assert!(got == data);
    io.flush().expect("flushes");
    assert!(host.back.borrow().durable[10 * 512..1010 * 512] == data[..]);
}

#[test]
fn a_stale_answer_for_a_reused_slot_stops_the_device() {
    let (mut dev, host) = connect(Spec::default(), 24);
    host.auto.set(false);
    dev.submit(read_req(1)).expect("room");
    host.take();
    let old = host.back.borrow().held[0];
    host.answer();
    dev.complete().expect("done").result.expect("read");
    // The same slot again, under a new id; the backend answers with the old one.
    dev.submit(read_req(2)).expect("room");
    host.take();
    let new = host.back.borrow().held[0];
    assert_eq!(old.0 & 0xffff, new.0 & 0xffff, "the slot was reused");
    assert_ne!(old.0, new.0, "under another generation");
    host.back.borrow_mut().held[0] = old;
    host.answer();
    let c = dev.complete().expect("handed back");
    assert_eq!(c.result, Err(Error::DeviceFailed));
    assert!(dev.is_failed());
    assert_eq!(dev.stats().device_errors, 1);
}

#[test]
fn blocking_calls_over_a_garbage_backend_end_in_errors_not_hangs() {
    for seed in 0..60 {
        let (dev, host) = connect(Spec::default(), 2000 + seed);
        host.auto.set(false);
        host.back.borrow_mut().evil = Evil::Garbage;
        host.back.borrow_mut().shuffle = true;
        let mut io = Blocking::new(dev, BackendWait(host.clone()));
        let mut rng = Rng::new(seed);
        let mut failures = 0;
        for _ in 0..10 {
            let at = rng.below(1500);
            let len = 512 * (1 + rng.below(300) as usize);
            let result = if rng.chance(50) {
                io.write(at, &rng.bytes(len))
            } else {
                let mut buf = vec![0u8; len];
                io.read(at, &mut buf)
            };
            if let Err(e) = result {
                assert!(
                    matches!(
                        e,
                        Error::Io { .. } | Error::DeviceFailed | Error::Unsupported
                    ),
                    "seed {seed}: {e}"
                );
                failures += 1;
            }
        }
        assert!(failures > 0, "seed {seed}: garbage went unnoticed");
        assert_eq!(io.device().in_flight(), 0, "seed {seed}");
    }
}

#[test]
fn a_backend_that_goes_away_fails_what_it_did_not_answer_and_the_frontend_closes() {
    let (mut dev, host) = connect(Spec::default(), 23);
    host.auto.set(false);
    for b in 0..4 {
        dev.submit(read_req(b)).expect("room");
    }
    // blkback answers the first two, then `xl block-detach` takes it Closing
    host.take();
    host.back.borrow_mut().held.truncate(2);
    host.answer();
    host.fake
        .borrow_mut()
        .store
        .insert(format!("{BE}/state"), "5".into());
    assert!(dev.poll_interrupt());
    let mut ok = 0;
    let mut failed = 0;
    while let Some(c) = dev.complete() {
        match c.result {
            Ok(()) => ok += 1,
            Err(Error::Detached) => failed += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(
        (ok, failed),
        (2, 2),
        "answered ones complete, the rest fail"
    );
    assert_eq!(
        key(&host, &format!("{NODE}/state")),
        "6",
        "the frontend closed"
    );
    let (e, _) = dev.submit(read_req(9)).expect_err("refused");
    assert_eq!(e, Error::Detached);
    assert_eq!(dev.in_flight(), 0);
}
