//! The SYN gate, frame by frame: a server stack, and a bare device on the other end of the wire
//! that sends hand-made TCP segments and reads what the stack answers.
mod common;

use common::*;
use net::smoltcp::phy::ChecksumCapabilities;
use net::smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};
use net::{Stack, device};
use netdev::fake::{FakeDevice, pair};
use netdev::{NetDevice, RxToken, TxToken};
use platform::fuzz::Rng;

/// What the bare end sees of a segment from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    src_port: u16,
    dst_port: u16,
    control: TcpControl,
    seq: TcpSeqNumber,
    ack: Option<TcpSeqNumber>,
}

/// The server stack at 10.0.2.15 and the bare client end at 10.0.2.2.
struct Wire {
    server: Stack<FakeDevice>,
    bare: FakeDevice,
    now: u64,
}

/// The initial sequence number the bare client uses on port `p`.
fn isn(p: u16) -> TcpSeqNumber {
    TcpSeqNumber(i32::from(p) * 1000)
}

impl Wire {
    fn new(sockets: usize) -> Self {
        let (a, b) = pair(CLIENT_MAC, SERVER_MAC);
        let l = net::Limits {
            sockets,
            ..limits()
        };
        let mut w = Wire {
            server: Stack::new(b, static_ip(SERVER_IP), l, 5, 0),
            bare: a,
            now: 1_000,
        };
        // An ARP request fills the server's neighbour cache: it can answer at once.
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(CLIENT_MAC.0),
            source_protocol_addr: CLIENT_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: SERVER_IP,
        };
        w.frame(EthernetProtocol::Arp, arp.buffer_len(), |p| {
            arp.emit(&mut ArpPacket::new_unchecked(p))
        });
        w.poll();
        assert!(w.take().is_empty());
        w
    }

    fn frame(&mut self, ethertype: EthernetProtocol, len: usize, fill: impl FnOnce(&mut [u8])) {
        let eth = EthernetRepr {
            src_addr: EthernetAddress(CLIENT_MAC.0),
            dst_addr: EthernetAddress(SERVER_MAC.0),
            ethertype,
        };
        self.bare.transmit().expect("room").consume(14 + len, |f| {
            let mut frame = EthernetFrame::new_unchecked(f);
            eth.emit(&mut frame);
            fill(frame.payload_mut());
        });
    }

    /// A TCP segment from `src_port` (its sequence numbers follow [`isn`]).
    fn send(
        &mut self,
        src_port: u16,
        dst_port: u16,
        control: TcpControl,
        ack: Option<TcpSeqNumber>,
    ) {
        let mut frame = Vec::new();
        self.bytes_of(src_port, dst_port, control, ack, |f| frame = f);
        self.raw(&frame);
    }

    fn bytes_of(
        &self,
        src_port: u16,
        dst_port: u16,
        control: TcpControl,
        ack: Option<TcpSeqNumber>,
        then: impl FnOnce(Vec<u8>),
    ) {
        let seq = if ack.is_some() {
            isn(src_port) + 1
        } else {
            isn(src_port)
        };
        let tcp = TcpRepr {
            src_port,
            dst_port,
            control,
            seq_number: seq,
            ack_number: ack,
            window_len: 64_000,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: CLIENT_IP,
            dst_addr: SERVER_IP,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(CLIENT_MAC.0),
            dst_addr: EthernetAddress(SERVER_MAC.0),
            ethertype: EthernetProtocol::Ipv4,
        };
        let caps = ChecksumCapabilities::default();
        let mut frame = vec![0; 14 + 20 + tcp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &IpAddress::Ipv4(CLIENT_IP),
            &IpAddress::Ipv4(SERVER_IP),
            &caps,
        );
        then(frame);
    }

    /// Sends `frame` as it is (an empty one is not sent).
    fn raw(&mut self, frame: &[u8]) {
        if !frame.is_empty() {
            self.bare
                .transmit()
                .expect("room")
                .consume(frame.len(), |f| f.copy_from_slice(frame));
        }
    }

    fn poll(&mut self) {
        self.server.poll(self.now);
        self.now += 1_000;
    }

    /// The TCP segments the server sent since the last call (other frames are skipped).
    fn take(&mut self) -> Vec<Seg> {
        let mut segs = Vec::new();
        while let Some((rx, _)) = self.bare.receive() {
            rx.consume(|f| {
                let Ok(eth) = EthernetFrame::new_checked(f) else {
                    return;
                };
                if eth.ethertype() != EthernetProtocol::Ipv4 {
                    return;
                }
                let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                    return;
                };
                if ip.next_header() != IpProtocol::Tcp {
                    return;
                }
                let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                    return;
                };
                let control = if tcp.syn() {
                    TcpControl::Syn
                } else if tcp.rst() {
                    TcpControl::Rst
                } else if tcp.fin() {
                    TcpControl::Fin
                } else {
                    TcpControl::None
                };
                segs.push(Seg {
                    src_port: tcp.src_port(),
                    dst_port: tcp.dst_port(),
                    control,
                    seq: tcp.seq_number(),
                    ack: tcp.ack().then(|| tcp.ack_number()),
                });
            });
        }
        segs
    }

    /// The SYN-ACK to client port `p` among `segs`.
    fn syn_ack(segs: &[Seg], p: u16) -> Option<Seg> {
        segs.iter()
            .copied()
            .find(|s| s.dst_port == p && s.control == TcpControl::Syn && s.ack == Some(isn(p) + 1))
    }

    /// Completes the handshake of client port `p` whose SYN-ACK was `sa`.
    fn ack(&mut self, p: u16, sa: Seg) {
        self.send(p, sa.src_port, TcpControl::None, Some(sa.seq + 1));
    }

    fn dropped(&self) -> u64 {
        self.server.stats().syn_dropped
    }
}

fn resets(segs: &[Seg]) -> usize {
    segs.iter().filter(|s| s.control == TcpControl::Rst).count()
}

#[test]
fn syns_beyond_the_pool_are_dropped_unanswered_and_a_port_without_listener_resets() {
    let mut w = Wire::new(64);
    let l = w.server.tcp_listen(80, 2).expect("listen");
    for p in 1000..1005 {
        w.send(p, 80, TcpControl::Syn, None);
    }
    w.poll();
    let segs = w.take();
    assert_eq!(resets(&segs), 0, "{segs:?}");
    let answered: Vec<(u16, Seg)> = (1000..1005)
        .filter_map(|p| Wire::syn_ack(&segs, p).map(|sa| (p, sa)))
        .collect();
    assert_eq!(answered.len(), 2, "{segs:?}");
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert_eq!(w.dropped(), 3);
    // A retransmitted SYN of a half-open connection goes to its socket, though the pool has no
    // listening socket left (smoltcp ignores it there, and repeats its SYN-ACK on its timer).
    let (first, _) = answered[0];
    w.send(first, 80, TcpControl::Syn, None);
    w.poll();
    assert_eq!(resets(&w.take()), 0);
    assert_eq!(w.dropped(), 3);
    // A SYN with an ACK is no listener's: the gate lets it through and smoltcp resets it.
    w.send(1010, 80, TcpControl::Syn, Some(TcpSeqNumber(7)));
    // Nobody listens on port 9: smoltcp's RST (connection refused), not a silent drop.
    w.send(1011, 9, TcpControl::Syn, None);
    w.poll();
    let segs = w.take();
    assert_eq!(resets(&segs), 2, "{segs:?}");
    assert!(
        segs.iter()
            .any(|s| s.dst_port == 1011 && s.control == TcpControl::Rst)
    );
    assert_eq!(w.dropped(), 3);
    // The handshakes complete; the pool refills; the dropped clients retransmit and get in,
    // two at a time.
    for &(p, sa) in &answered {
        w.ack(p, sa);
    }
    w.poll();
    assert!(w.take().is_empty());
    let mut waiting: Vec<u16> = (1000..1005)
        .filter(|p| !answered.iter().any(|a| a.0 == *p))
        .collect();
    let mut accepted = 0;
    while w.server.tcp_accept(l).is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 2);
    let mut rounds = 0;
    while !waiting.is_empty() {
        rounds += 1;
        assert!(rounds <= 3, "{waiting:?} never got in");
        for &p in &waiting {
            w.send(p, 80, TcpControl::Syn, None);
        }
        w.poll();
        let segs = w.take();
        assert_eq!(resets(&segs), 0, "{segs:?}");
        let mut next = Vec::new();
        for &p in &waiting {
            match Wire::syn_ack(&segs, p) {
                Some(sa) => w.ack(p, sa),
                None => next.push(p),
            }
        }
        assert!(next.len() < waiting.len(), "no progress: {segs:?}");
        waiting = next;
        w.poll();
        while w.server.tcp_accept(l).is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 5);
    assert_eq!(
        w.dropped(),
        4,
        "3 at first, then 1 of the 3 retransmissions"
    );
    assert_eq!(w.server.stats().accepted, 5);
}

#[test]
fn the_pool_refills_between_the_frames_of_one_poll() {
    let mut w = Wire::new(64);
    let l = w.server.tcp_listen(80, 2).expect("listen");
    w.send(1000, 80, TcpControl::Syn, None);
    w.send(1001, 80, TcpControl::Syn, None);
    w.poll();
    let segs = w.take();
    let sa0 = Wire::syn_ack(&segs, 1000).expect("1000 answered");
    let sa1 = Wire::syn_ack(&segs, 1001).expect("1001 answered");
    // In one poll: the ACK that completes 1000's handshake, then 1002's SYN. 1000's socket
    // leaves the pool after the first frame; a fresh listening socket takes its place before the
    // second.
    w.ack(1000, sa0);
    w.send(1002, 80, TcpControl::Syn, None);
    w.poll();
    let sa2 = Wire::syn_ack(&w.take(), 1002).expect("1002 answered in the same poll");
    assert_eq!(w.dropped(), 0);
    // The other way round (1003's SYN before the ACK of 1001), the SYN finds no socket yet.
    w.send(1003, 80, TcpControl::Syn, None);
    w.ack(1001, sa1);
    w.poll();
    assert!(w.take().is_empty());
    assert_eq!(w.dropped(), 1);
    // The accept queue holds 2 (the backlog): the pool is not refilled and SYNs are dropped, as
    // Linux drops them when its accept queue is full. A connection that completes its handshake
    // meanwhile still joins the queue.
    w.ack(1002, sa2);
    w.send(1003, 80, TcpControl::Syn, None);
    w.poll();
    assert!(w.take().is_empty());
    assert_eq!(w.dropped(), 2);
    for _ in 0..3 {
        w.server.tcp_accept(l).expect("a connection in the queue");
    }
    // Accepting made room: the retransmission gets in.
    w.send(1003, 80, TcpControl::Syn, None);
    w.poll();
    let sa3 = Wire::syn_ack(&w.take(), 1003).expect("1003 answered");
    w.ack(1003, sa3);
    w.poll();
    w.server.tcp_accept(l).expect("1003");
    assert_eq!(w.dropped(), 2);
    assert_eq!(w.server.stats().accepted, 4);
}

#[test]
fn running_out_of_sockets_drops_syns_and_recovers() {
    // Two sockets in all: the pool of 2 is full, its connections take them both.
    let mut w = Wire::new(2);
    let l = w.server.tcp_listen(80, 2).expect("listen");
    for p in [1000, 1001] {
        w.send(p, 80, TcpControl::Syn, None);
    }
    w.poll();
    let segs = w.take();
    for p in [1000, 1001] {
        let sa = Wire::syn_ack(&segs, p).expect("answered");
        w.ack(p, sa);
    }
    w.poll();
    let a = w.server.tcp_accept(l).expect("1000");
    let _b = w.server.tcp_accept(l).expect("1001");
    assert!(w.server.stats().pool_starved > 0);
    w.send(1002, 80, TcpControl::Syn, None);
    w.poll();
    assert!(w.take().is_empty(), "no RST, no answer");
    assert_eq!(w.dropped(), 1);
    // A connection ends: its socket goes back to the pool, the retransmission gets in.
    w.server.tcp_abort(a);
    w.poll();
    assert_eq!(resets(&w.take()), 1, "the abort's RST");
    w.poll();
    w.send(1002, 80, TcpControl::Syn, None);
    w.poll();
    assert!(Wire::syn_ack(&w.take(), 1002).is_some());
    assert_eq!(w.dropped(), 1);
}

/// A valid SYN frame to port 80 from `p`.
fn syn_frame(w: &Wire, p: u16) -> Vec<u8> {
    let mut out = Vec::new();
    w.bytes_of(p, 80, TcpControl::Syn, None, |f| out = f);
    out
}

#[test]
fn random_and_mangled_frames_never_panic_the_gate_nor_the_stack() {
    let mut rng = Rng::new(0x5eed_0016);
    let mut w = Wire::new(64);
    let l = w.server.tcp_listen(80, 1).expect("listen");
    // Valid SYNs from 16 ports, to be cut and changed.
    let goods: Vec<Vec<u8>> = (4000..4016).map(|p| syn_frame(&w, p)).collect();
    assert!(matches!(device::tcp_segment(&goods[0]), Some((_, true))));
    let mut gate = device::SynGate::default();
    gate.open(0, 80, 0, true);
    for round in 0..20_000u32 {
        let good = &goods[rng.below(16) as usize];
        let frame = match round % 4 {
            // Noise of any length.
            0 => {
                let len = rng.below(200) as usize;
                rng.bytes(len)
            }
            // A SYN cut short anywhere.
            1 => good[..rng.below(good.len() as u64 + 1) as usize].to_vec(),
            // A SYN with bytes changed (headers' lengths, versions, flags), or none.
            2 => {
                let mut f = good.clone();
                for _ in 0..rng.below(4) {
                    let at = rng.below(f.len() as u64) as usize;
                    f[at] = rng.next_u64() as u8;
                }
                f
            }
            // A SYN claiming more than it holds.
            _ => {
                let mut f = good.clone();
                f[14 + 2] = 0xff; // IPv4 total length
                f[14] = 0x4f; // IHL 15 words
                f.truncate(14 + rng.below(60) as usize);
                f
            }
        };
        let _ = device::tcp_segment(&frame);
        let _ = gate.pass(&frame);
        if round % 3 == 0 {
            w.raw(&frame);
            w.poll();
            let _ = w.take();
        }
    }
    assert!(gate.dropped() > 0, "no mangled frame was still a SYN");
    assert!(w.dropped() > 0, "the pool of 1 never ran out");
    // The stack still serves: once the half-open connections the mangled SYNs opened time out,
    // a clean handshake goes through.
    while w.server.tcp_accept(l).is_ok() {}
    w.now += 40_000_000_000;
    w.poll();
    w.poll();
    let _ = w.take();
    w.send(4001, 80, TcpControl::Syn, None);
    w.poll();
    let sa = Wire::syn_ack(&w.take(), 4001).expect("still answered");
    w.ack(4001, sa);
    w.poll();
    while w.server.tcp_accept(l).is_ok() {}
}
