//! netfront against a mock netback: the handshake on a fake XenStore, frames both ways through
//! granted pages, and a backend writing garbage into every field.

use super::*;
use platform::fuzz::Rng;
use xen_services::frontend::fake::{FakeHost, SharedPage};
use xen_services::sring::fake::BackRing;

const BACKEND: &str = "/local/domain/0/backend/vif/7/0";

fn keys() -> FakeHost {
    let mut h = FakeHost::with_keys(&[
        ("device/vif/0/backend", BACKEND),
        ("device/vif/0/backend-id", "0"),
        ("device/vif/0/mac", "00:16:3e:00:00:02"),
        ("/local/domain/0/backend/vif/7/0/state", "2"),
        ("/local/domain/0/backend/vif/7/0/feature-rx-copy", "1"),
    ]);
    // netback connects once the frontend says Connected.
    h.on_pause = Some(alloc::boxed::Box::new(|store| {
        if store.get("device/vif/0/state").map(String::as_str) == Some("4") {
            store.insert(format!("{BACKEND}/state"), "4".into());
        }
    }));
    h
}

fn connect() -> NetFront<FakeHost> {
    NetFront::connect(keys(), "device/vif/0").expect("connects")
}

/// netback's side: the rings through the grants the frontend published.
struct Netback {
    tx: BackRing<SharedPage>,
    rx: BackRing<SharedPage>,
}

impl Netback {
    fn attach(dev: &mut NetFront<FakeHost>) -> Netback {
        let h = dev.host();
        let r = |h: &FakeHost, key: &str| -> SharedPage {
            let v: u32 = h.store[&format!("device/vif/0/{key}")]
                .parse()
                .expect("a number");
            h.granted(v).expect("granted")
        };
        Netback {
            tx: BackRing::new(r(h, "tx-ring-ref"), TX_ENTRY),
            rx: BackRing::new(r(h, "rx-ring-ref"), RX_ENTRY),
        }
    }

    /// Copies `frame` into the next posted receive buffer and answers, with `flags`.
    fn deliver(&mut self, h: &FakeHost, frame: &[u8], flags: u16) -> bool {
        let Some(off) = self.rx.take_request() else {
            return false;
        };
        let m = self.rx.memory().clone();
        let id = m.read_u16(off);
        let gref = m.read_u32(off + 4);
        let page = h.granted(gref).expect("a granted buffer");
        page.write_bytes(0, frame);
        let r = self.rx.next_response();
        m.write_u16(r, id);
        m.write_u16(r + 2, 0);
        m.write_u16(r + 4, flags);
        m.write_u16(r + 6, frame.len() as u16);
        self.rx.push_response();
        self.rx.publish();
        true
    }

    /// Takes every transmitted frame, answering each with `status`.
    fn collect(&mut self, h: &FakeHost, status: i16) -> Vec<Vec<u8>> {
        self.collect_flags(h, status)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    /// Takes every transmitted frame with its request's flags.
    fn collect_flags(&mut self, h: &FakeHost, status: i16) -> Vec<(Vec<u8>, u16)> {
        let mut out = Vec::new();
        while let Some(off) = self.tx.take_request() {
            let m = self.tx.memory().clone();
            let gref = m.read_u32(off);
            let offset = usize::from(m.read_u16(off + 4));
            let flags = m.read_u16(off + 6);
            let id = m.read_u16(off + 8);
            let size = usize::from(m.read_u16(off + 10));
            let (_, _, readonly) = h.grants[&gref];
            assert!(readonly, "transmit buffers are granted read-only");
            let page = h.granted(gref).expect("granted");
            let mut frame = vec![0; size];
            page.read_bytes(offset, &mut frame);
            out.push((frame, flags));
            let r = self.tx.next_response();
            m.write_u16(r, id);
            m.write_u16(r + 2, status as u16);
            self.tx.push_response();
        }
        self.tx.publish();
        out
    }
}

fn frame(n: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; n];
    f[..6].copy_from_slice(&[0, 0x16, 0x3e, 0, 0, 2]);
    f
}

fn receive_one(dev: &mut NetFront<FakeHost>) -> Option<(Vec<u8>, RxChecksum)> {
    let (rx, _tx) = dev.receive()?;
    let c = rx.checksum();
    Some((rx.consume(|f| f.to_vec()), c))
}

/// Queues one frame, without the end of the stack's poll ([`NetDevice::flush`]).
fn queue(dev: &mut NetFront<FakeHost>, data: &[u8]) -> bool {
    match dev.transmit() {
        Some(tx) => {
            tx.consume(data.len(), |b| b.copy_from_slice(data));
            true
        }
        None => false,
    }
}

/// Sends one frame as a stack's poll does: queued, then flushed.
fn send(dev: &mut NetFront<FakeHost>, data: &[u8]) -> bool {
    let sent = queue(dev, data);
    dev.flush();
    sent
}

#[test]
fn a_connected_device_holds_its_rings_and_buffers() {
    let mut dev = connect();
    assert_eq!(dev.host().pages_out.get(), 2 + RX_BUFFERS + TX_BUFFERS);
}

#[test]
fn the_handshake_publishes_rings_and_features_and_waits_for_connected() {
    let mut dev = connect();
    let h = dev.host();
    let k = |key: &str| h.store[&format!("device/vif/0/{key}")].clone();
    assert_eq!(k("state"), "4");
    assert_eq!(k("request-rx-copy"), "1");
    assert_eq!(k("feature-rx-notify"), "1");
    assert!(!h.store.contains_key("device/vif/0/feature-sg"), "no SG");
    assert!(k("event-channel").parse::<u32>().is_ok());
    assert_eq!(dev.capabilities().mac.0, [0, 0x16, 0x3e, 0, 0, 2]);
    assert!(!dev.failed());
    // Every receive buffer was posted before the backend connected.
    let nb = Netback::attach(&mut dev);
    assert_eq!(nb.rx.requests(), RX_BUFFERS as u32);
}

#[test]
fn a_backend_without_rx_copy_or_one_that_never_connects_is_refused() {
    let mut h = keys();
    h.store.remove(&format!("{BACKEND}/feature-rx-copy"));
    assert_eq!(
        NetFront::connect(h, "device/vif/0").err(),
        Some(FrontendError::Missing("feature-rx-copy"))
    );
    let mut h = keys();
    h.on_pause = None;
    let live = h.pages_out.clone();
    match NetFront::connect(h, "device/vif/0") {
        Err(FrontendError::Timeout(s)) => assert_eq!(s, XenbusState::InitWait),
        other => panic!("expected a timeout, got {:?}", other.err()),
    }
    assert_eq!(live.get(), 0, "a silent backend gets every page back");
    let mut h = keys();
    h.store
        .insert("device/vif/0/mac".into(), "00:16:3e:zz:00:02".into());
    assert_eq!(
        NetFront::connect(h, "device/vif/0").err(),
        Some(FrontendError::BadKey("mac"))
    );
}

#[test]
fn running_out_of_pages_gives_every_page_back() {
    for limit in [0, 1, 2, 50, RX_BUFFERS + 2, RX_BUFFERS + TX_BUFFERS + 1] {
        let mut h = keys();
        h.page_limit = Some(limit);
        let live = h.pages_out.clone();
        match NetFront::connect(h, "device/vif/0") {
            Err(FrontendError::NoMemory) => {}
            Err(e) => panic!("{limit}: {e}"),
            Ok(_) => panic!("{limit} pages cannot be enough"),
        }
        assert_eq!(live.get(), 0, "{limit}: every page given back");
    }
}

#[test]
fn frames_arrive_with_their_checksum_state_and_buffers_are_reused() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    for (i, flags) in [0, NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED]
        .into_iter()
        .enumerate()
    {
        let f = frame(60 + i, i as u8);
        assert!(nb.deliver(dev.host(), &f, flags));
        assert!(dev.poll_interrupt(), "news after the event");
        let (got, c) = receive_one(&mut dev).expect("a frame");
        assert_eq!(got, f);
        assert_eq!(
            c,
            [RxChecksum::Unknown, RxChecksum::Blank, RxChecksum::Verified][i]
        );
        assert!(receive_one(&mut dev).is_none());
    }
    // Far more frames than buffers: each is posted again once consumed.
    for i in 0..(RX_BUFFERS * 5) {
        let f = frame(MAX_FRAME - (i % 100), i as u8);
        assert!(nb.deliver(dev.host(), &f, 0), "buffer {i} was posted again");
        let (got, _) = receive_one(&mut dev).expect("a frame");
        assert_eq!(got, f);
    }
    let s = dev.stats();
    assert_eq!(s.rx_frames, 3 + RX_BUFFERS as u64 * 5);
    assert_eq!(s.device_errors, 0);
}

#[test]
fn frames_go_out_byte_exact_and_transmit_buffers_come_back() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    let port = dev.event_channel();
    let mut sent = Vec::new();
    for i in 0..TX_BUFFERS {
        let f = frame(100 + i, i as u8);
        assert!(send(&mut dev, &f));
        sent.push(f);
    }
    assert!(dev.transmit().is_none(), "every buffer is in flight");
    assert!(dev.host().notifications(port) >= 1);
    let got = nb.collect(dev.host(), NETIF_RSP_OKAY);
    assert_eq!(got, sent);
    for i in 0..1000 {
        let f = frame(60 + i % 1400, i as u8);
        assert!(send(&mut dev, &f), "frame {i}: a buffer came back");
        assert_eq!(nb.collect(dev.host(), NETIF_RSP_OKAY), vec![f]);
    }
    // A frame larger than the MTU is the caller's bug: counted, not sent.
    let big = frame(MAX_FRAME + 1, 0);
    assert!(send(&mut dev, &big));
    assert!(nb.collect(dev.host(), 0).is_empty());
    let s = dev.stats();
    assert_eq!(s.tx_frames, TX_BUFFERS as u64 + 1000);
    assert_eq!(s.tx_dropped, 1);
}

#[test]
fn a_partial_checksum_goes_to_netback_as_csum_blank() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    let caps = dev.capabilities();
    assert!(caps.checksums.tcp.device_computes() && caps.checksums.udp.device_computes());
    let f = frame(80, 3);
    let tx = dev.transmit().expect("room");
    tx.consume_offload(f.len(), |b| {
        b.copy_from_slice(&f);
        (
            (),
            TxOffload {
                checksum: Some(netdev::PartialChecksum {
                    start: 34,
                    offset: 16,
                }),
                tso: None,
            },
        )
    });
    assert!(send(&mut dev, &f), "and one without");
    let got = nb.collect_flags(dev.host(), NETIF_RSP_OKAY);
    assert_eq!(
        got,
        vec![
            (f.clone(), NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED),
            (f, 0)
        ]
    );
}

/// `req_event` and `rsp_event` in a ring's header (io/ring.h).
const REQ_EVENT: usize = 4;
const RSP_EVENT: usize = 12;

#[test]
fn a_burst_goes_to_the_backend_at_the_flush_with_one_notification() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    let port = dev.event_channel();
    let before = dev.host().notifications(port);
    let frames: Vec<_> = (0..10).map(|i| frame(90 + i, i as u8)).collect();
    for f in &frames {
        assert!(queue(&mut dev, f));
    }
    assert_eq!(
        nb.tx.requests(),
        0,
        "nothing published before the poll's end"
    );
    assert_eq!(
        dev.host().notifications(port),
        before,
        "and nobody notified"
    );
    // netback caught up and asks for the next request (RING_FINAL_CHECK_FOR_REQUESTS).
    nb.tx
        .memory()
        .write_u32(REQ_EVENT, nb.tx.req_cons.wrapping_add(1));
    dev.flush();
    assert_eq!(
        dev.host().notifications(port),
        before + 1,
        "one for the burst"
    );
    assert_eq!(nb.collect(dev.host(), NETIF_RSP_OKAY), frames);
    dev.flush();
    assert_eq!(
        dev.host().notifications(port),
        before + 1,
        "nothing new: no event"
    );
}

#[test]
fn a_busy_backend_that_did_not_ask_is_not_notified() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    let port = dev.event_channel();
    assert!(send(&mut dev, &frame(80, 1)));
    nb.collect(dev.host(), NETIF_RSP_OKAY);
    let before = dev.host().notifications(port);
    // netback still works through the ring: its req_event lies behind what was published.
    for i in 0..5 {
        assert!(send(&mut dev, &frame(80, i)));
    }
    assert_eq!(dev.host().notifications(port), before);
    assert_eq!(nb.collect(dev.host(), NETIF_RSP_OKAY).len(), 5);
    // Receive buffers given back are published without an event too, unless netback ran
    // out and asked (netif's rx req_event).
    let rx_port_before = dev.host().notifications(port);
    for i in 0..3 {
        assert!(nb.deliver(dev.host(), &frame(70, i), 0));
        assert!(receive_one(&mut dev).is_some());
    }
    dev.flush();
    assert_eq!(dev.host().notifications(port), rx_port_before);
    // netback out of buffers asks for the next one posted (xenvif_rx_ring_slots_available).
    let prod = nb.rx.memory().read_u32(0);
    nb.rx.memory().write_u32(REQ_EVENT, prod.wrapping_add(1));
    assert!(nb.deliver(dev.host(), &frame(70, 9), 0));
    assert!(receive_one(&mut dev).is_some());
    dev.flush();
    assert_eq!(dev.host().notifications(port), rx_port_before + 1);
}

#[test]
fn transmit_answers_are_reaped_lazily_and_an_event_is_asked_only_when_buffers_run_out() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    // The first answer crosses the initial rsp_event (1); after that, none is asked for while
    // buffers are free: netback's publish raises no event.
    assert!(send(&mut dev, &frame(80, 0)));
    nb.collect(dev.host(), NETIF_RSP_OKAY);
    dev.poll_interrupt();
    for round in 0..3 {
        for i in 0..TX_BUFFERS / 2 {
            assert!(send(&mut dev, &frame(80, i as u8)), "round {round}");
        }
        assert_eq!(nb.collect(dev.host(), NETIF_RSP_OKAY).len(), TX_BUFFERS / 2);
        assert!(!nb.tx.publish(), "round {round}: no event asked for");
        dev.poll_interrupt();
    }
    // Out of buffers: the queued frames go out at once and an event is asked for.
    let mut n = 0;
    while queue(&mut dev, &frame(80, 1)) {
        n += 1;
    }
    assert_eq!(n, TX_BUFFERS, "every buffer was reaped");
    assert_eq!(
        nb.tx.requests(),
        TX_BUFFERS as u32,
        "published when they ran out"
    );
    let event = nb.tx.memory().read_u32(RSP_EVENT);
    assert_eq!(nb.collect(dev.host(), NETIF_RSP_OKAY).len(), TX_BUFFERS);
    assert_eq!(
        event,
        nb.tx.rsp_prod_pvt - TX_BUFFERS as u32 + TX_BUFFERS as u32 / 2,
        "an event when half of those in flight came back"
    );
    assert!(queue(&mut dev, &frame(80, 2)), "the answers came back");
}

#[test]
fn answers_that_come_while_the_event_is_asked_for_are_not_missed() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    for i in 0..TX_BUFFERS {
        assert!(queue(&mut dev, &frame(80, i as u8)));
    }
    dev.flush();
    // netback answers everything but its index still says nothing, and rsp_event lies far
    // behind: only the final check after asking finds the answers.
    nb.collect(dev.host(), NETIF_RSP_OKAY);
    assert!(dev.transmit().is_some(), "answers found by the last look");
    // A receive that needs a transmit buffer for its answer finds them the same way.
    while queue(&mut dev, &frame(80, 3)) {}
    dev.flush();
    assert!(nb.deliver(dev.host(), &frame(70, 1), 0));
    assert!(dev.receive().is_none(), "no buffer yet");
    nb.collect(dev.host(), NETIF_RSP_OKAY);
    assert!(receive_one(&mut dev).is_some());
}

#[test]
fn the_whole_ring_stays_posted_when_the_backend_answers_out_of_order() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    assert_eq!(
        RX_BUFFERS as u32,
        nb.rx.memory().read_u32(0),
        "every slot posted"
    );
    let m = nb.rx.memory().clone();
    let mut rng = Rng::new(0x0e7f_0256);
    for round in 0..20 {
        // netback takes a batch of requests and answers them with their ids shuffled (ids
        // are the frontend's; netback may return them in any order).
        let n = 1 + rng.below(RX_BUFFERS as u64) as usize;
        let mut ids = Vec::new();
        for _ in 0..n {
            let off = nb.rx.take_request().expect("posted");
            ids.push(m.read_u16(off));
        }
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for id in ids {
            let r = nb.rx.next_response();
            m.write_u16(r, id);
            m.write_u16(r + 2, 0);
            m.write_u16(r + 4, 0);
            m.write_u16(r + 6, 60);
            nb.rx.push_response();
        }
        nb.rx.publish();
        let mut got = 0;
        while receive_one(&mut dev).is_some() {
            got += 1;
        }
        dev.flush();
        assert_eq!(got, n, "round {round}");
        assert_eq!(
            nb.rx.requests(),
            RX_BUFFERS as u32,
            "round {round}: every buffer is back on the ring"
        );
    }
    assert_eq!(dev.stats().device_errors, 0);
}

#[test]
fn a_receive_answer_needs_a_transmit_buffer() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    for i in 0..TX_BUFFERS {
        assert!(send(&mut dev, &frame(80, i as u8)));
    }
    assert!(nb.deliver(dev.host(), &frame(70, 1), 0));
    assert!(
        dev.receive().is_none(),
        "no room to answer: the frame waits"
    );
    nb.collect(dev.host(), NETIF_RSP_OKAY);
    assert!(receive_one(&mut dev).is_some(), "now it is taken");
}

#[test]
fn bad_ids_lengths_and_flags_are_counted_and_skipped() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    let m = nb.rx.memory().clone();
    // An id never posted, an offset outside the page, a length beyond the page, SG flags.
    for (id, offset, flags, status) in [
        (999u16, 0u16, 0u16, 60i16),
        (0, 4090, 0, 60),
        (1, 0, 0, 4097),
        (2, 0, NETRXF_MORE_DATA, 60),
        (3, 0, 0, -1),
        (4, 0, 0, 2000),
    ] {
        nb.rx.take_request().expect("posted");
        let r = nb.rx.next_response();
        m.write_u16(r, id);
        m.write_u16(r + 2, offset);
        m.write_u16(r + 4, flags);
        m.write_u16(r + 6, status as u16);
        nb.rx.push_response();
    }
    nb.rx.publish();
    assert!(receive_one(&mut dev).is_none(), "nothing good arrived");
    let s = dev.stats();
    assert_eq!(s.device_errors, 4, "{s:?}");
    assert_eq!(s.rx_dropped, 5, "{s:?}");
    assert!(!dev.failed());
    // Every buffer is posted again, and good frames still arrive.
    for i in 0..RX_BUFFERS * 2 {
        let f = frame(64, i as u8);
        assert!(nb.deliver(dev.host(), &f, 0), "buffer lost at {i}");
        assert_eq!(receive_one(&mut dev).expect("a frame").0, f);
    }
    // Transmit answers for ids never sent.
    let tm = nb.tx.memory().clone();
    assert!(send(&mut dev, &frame(64, 9)));
    nb.tx.take_request();
    let r = nb.tx.next_response();
    tm.write_u16(r, 500);
    nb.tx.push_response();
    nb.tx.publish();
    dev.poll_interrupt();
    assert_eq!(dev.stats().device_errors, 5);
}

#[test]
fn a_response_index_beyond_the_requests_stops_the_device() {
    let mut dev = connect();
    let mut nb = Netback::attach(&mut dev);
    nb.rx.set_rsp_prod(RX_BUFFERS as u32 + 1);
    assert!(!dev.poll_interrupt());
    assert!(dev.failed());
    assert!(dev.receive().is_none());
    assert!(dev.transmit().is_none());
}

#[test]
fn garbage_in_every_ring_field_never_panics() {
    let mut rng = Rng::new(0x0e7f_0018);
    for round in 0..300 {
        let mut dev = connect();
        let mut nb = Netback::attach(&mut dev);
        let rxm = nb.rx.memory().clone();
        let txm = nb.tx.memory().clone();
        for _ in 0..rng.below(20) {
            let f = frame(60 + rng.below(1400) as usize, 7);
            if rng.chance(50) {
                send(&mut dev, &f);
            } else {
                queue(&mut dev, &f);
            }
        }
        for _ in 0..rng.below(400) {
            // Random words anywhere in either ring page (indices included).
            let page = if rng.chance(50) { &rxm } else { &txm };
            let off = (rng.below(4096 / 2) * 2) as usize;
            page.write_u16(off, rng.edgy_u64() as u16);
        }
        if rng.chance(30) {
            nb.rx.set_rsp_prod(rng.next_u64() as u32);
        }
        for _ in 0..50 {
            dev.poll_interrupt();
            while let Some((rx, _)) = dev.receive() {
                rx.consume(|f| assert!(f.len() <= MAX_FRAME, "round {round}"));
            }
            if rng.chance(50) {
                send(&mut dev, &frame(64, 1));
            } else {
                queue(&mut dev, &frame(64, 1));
            }
            dev.flush();
        }
    }
}

mod over_xenstored {
    //! The handshake over the XenStore wire protocol: the real client on a ring page served by
    //! `FakeXenStored`, which plays dom0's xenstored while the test plays netback's states.
    use super::*;
    use xen_services::frontend::fake::WireHost;
    use xen_services::xenstore::fake::Fault;

    fn host() -> WireHost {
        WireHost::with_keys(&[
            ("device/vif/0/backend", BACKEND),
            ("device/vif/0/backend-id", "0"),
            ("device/vif/0/mac", "00:16:3e:00:00:02"),
            ("/local/domain/0/backend/vif/7/0/state", "2"),
            ("/local/domain/0/backend/vif/7/0/feature-rx-copy", "1"),
        ])
    }

    /// netback: Connected once the frontend says Connected.
    fn netback(h: &mut WireHost) {
        h.on_pause = Some(Box::new(|d| {
            if d.get("device/vif/0/state") == Some(&b"4"[..]) {
                d.set(&format!("{BACKEND}/state"), "4");
            }
        }));
    }

    #[test]
    fn the_handshake_connects_through_xenstored() {
        let mut h = host();
        netback(&mut h);
        let mut dev = NetFront::connect(h, "device/vif/0").expect("connects");
        let d = &dev.host().xenstored;
        assert_eq!(d.get("device/vif/0/state"), Some(&b"4"[..]));
        assert_eq!(d.get("device/vif/0/request-rx-copy"), Some(&b"1"[..]));
        let tx: u32 = core::str::from_utf8(d.get("device/vif/0/tx-ring-ref").expect("written"))
            .expect("text")
            .parse()
            .expect("a number");
        assert!(
            dev.host().inner.granted(tx).is_some(),
            "the ring is granted"
        );
        assert!(dev.host().xenstored.requests > 10);
    }

    #[test]
    fn a_backend_that_never_connects_times_out() {
        let h = host();
        match NetFront::connect(h, "device/vif/0") {
            Err(FrontendError::Timeout(XenbusState::InitWait)) => {}
            other => panic!("expected a timeout, got {:?}", other.err()),
        }
    }

    #[test]
    fn a_backend_that_goes_away_mid_handshake_is_an_error() {
        let mut h = host();
        // netback closes once the frontend published its rings: the frontend closes too, and
        // gives every page back.
        h.on_pause = Some(Box::new(|d| {
            if d.get("device/vif/0/state") == Some(&b"4"[..]) {
                d.set(&format!("{BACKEND}/state"), "6");
            }
        }));
        let live = h.inner.pages_out.clone();
        assert!(matches!(
            NetFront::connect(h, "device/vif/0"),
            Err(FrontendError::Handshake(_))
        ));
        assert_eq!(live.get(), 0, "every page given back");
        let mut h = host();
        // ... or its state node vanishes (Unknown): the handshake says the backend was lost.
        h.on_pause = Some(Box::new(|d| {
            if d.get("device/vif/0/state") == Some(&b"4"[..]) {
                d.set(&format!("{BACKEND}/state"), "0");
            }
        }));
        assert!(matches!(
            NetFront::connect(h, "device/vif/0"),
            Err(FrontendError::Handshake(_))
        ));
    }

    #[test]
    fn a_misbehaving_xenstored_is_an_error_never_a_hang() {
        for fault in [
            Fault::Oversized,
            Fault::UnknownType,
            Fault::ErrorWithoutNul,
            Fault::Truncated,
            Fault::WrongId,
            Fault::CorruptIndex,
            Fault::Error("EACCES"),
        ] {
            let mut h = host();
            netback(&mut h);
            h.xenstored.fault = Some(fault);
            // The first call meets the fault: reading where the backend is.
            assert!(
                NetFront::connect(h, "device/vif/0").is_err(),
                "{fault:?} must fail the connect"
            );
        }
    }
}

#[test]
fn a_backend_that_goes_away_stops_the_nic_and_the_frontend_closes() {
    let mut dev = connect();
    let mut back = Netback::attach(&mut dev);
    // connected: frames flow, and the watch's first fire (its registration) changes nothing
    assert!(back.deliver(dev.host(), &frame(60, 1), 0));
    dev.poll_interrupt();
    assert!(!dev.failed());
    assert!(receive_one(&mut dev).is_some());
    // `xl network-detach`: netback goes Closing
    dev.host()
        .store
        .insert(format!("{BACKEND}/state"), "5".into());
    assert!(!dev.poll_interrupt());
    assert!(dev.failed(), "the NIC is down");
    assert_eq!(
        dev.host().store["device/vif/0/state"],
        "6",
        "the frontend closed"
    );
    assert!(dev.transmit().is_none());
    assert!(back.deliver(dev.host(), &frame(60, 2), 0));
    assert!(
        receive_one(&mut dev).is_none(),
        "nothing is read from a gone backend's ring"
    );
}
