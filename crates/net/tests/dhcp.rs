//! DHCPv4: the client stack (side 0, `ip=dhcp`) against a small DHCP server written here, on a
//! UDP socket of the other stack (side 1, 10.0.2.2/24), over `netdev::fake::pair`, on the
//! virtual clock.
#![cfg(all(feature = "dhcp", feature = "udp"))]
mod common;

use common::*;
use net::smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, Ipv4Cidr};
use net::{DhcpStatus, Error, IpConfig, Shared, Stack, TcpListener, TcpStream, UdpSocket};
use netdev::fake::{FakeDevice, pair};
use platform::fuzz::Rng;
use std::net::{Ipv4Addr, SocketAddrV4};

const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const LEASED: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 50);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const MASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
const S: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// OFFER to a DISCOVER, ACK to a REQUEST.
    Good,
    /// OFFER to a DISCOVER, NAK to a REQUEST.
    Nak,
    /// Answers nothing (but counts what it hears).
    Silent,
    /// Seeded random replies: fields at the edges, wrong types, corrupted bytes.
    Garbage,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    address: Ipv4Addr,
    mask: Ipv4Addr,
    router: Option<Ipv4Addr>,
    secs: u32,
}

struct Server {
    socket: UdpSocket<Side<FakeDevice>>,
    mode: Mode,
    lease: Lease,
    /// Every message heard: its type and whether it was a renewal (`ciaddr` set).
    heard: Vec<(DhcpMessageType, bool)>,
    sent: Vec<DhcpMessageType>,
    rng: Rng,
}

impl Server {
    fn new(host: &Side<FakeDevice>, mode: Mode, lease: Lease) -> Self {
        Server {
            socket: UdpSocket::bind(host, 67).expect("bind 67"),
            mode,
            lease,
            heard: Vec::new(),
            sent: Vec::new(),
            rng: Rng::new(1),
        }
    }

    fn count(&self, t: DhcpMessageType, renewal: bool) -> usize {
        self.heard.iter().filter(|&&h| h == (t, renewal)).count()
    }

    /// Answers every message waiting; returns how many.
    fn serve(&mut self) -> usize {
        let mut buf = [0; 1500];
        let mut heard = 0;
        loop {
            match self.socket.try_recv_from(&mut buf) {
                Ok((n, _)) => {
                    heard += 1;
                    let data = buf[..n].to_vec();
                    self.answer(&data);
                }
                Err(Error::WouldBlock) => return heard,
                Err(e) => panic!("DHCP server: {e}"),
            }
        }
    }

    fn answer(&mut self, data: &[u8]) {
        let packet = DhcpPacket::new_checked(data).expect("the client sends DHCP");
        let req = DhcpRepr::parse(&packet).expect("the client sends valid DHCP");
        let renewal = !req.client_ip.is_unspecified();
        self.heard.push((req.message_type, renewal));
        let t = match (self.mode, req.message_type) {
            (Mode::Silent, _) => return,
            (Mode::Garbage, _) => return self.garbage(&req),
            (_, DhcpMessageType::Discover) => DhcpMessageType::Offer,
            (Mode::Nak, DhcpMessageType::Request) => DhcpMessageType::Nak,
            (_, DhcpMessageType::Request) => DhcpMessageType::Ack,
            _ => return,
        };
        let l = self.lease;
        let reply = DhcpRepr {
            message_type: t,
            your_ip: if t == DhcpMessageType::Nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                l.address
            },
            router: l.router,
            subnet_mask: Some(l.mask),
            lease_duration: Some(l.secs),
            ..reply_to(&req)
        };
        self.send(&req, &emit(&reply));
        self.sent.push(t);
    }

    fn send(&mut self, req: &DhcpRepr<'_>, frame: &[u8]) {
        // A renewal is answered to the client's address, the rest broadcast.
        let to = if req.client_ip.is_unspecified() {
            Ipv4Addr::BROADCAST
        } else {
            req.client_ip
        };
        match self.socket.try_send_to(frame, SocketAddrV4::new(to, 68)) {
            Ok(_) | Err(Error::WouldBlock) => {}
            Err(e) => panic!("DHCP server send: {e}"),
        }
    }

    /// One to three random replies, most of them well-formed DHCP with edgy fields.
    fn garbage(&mut self, req: &DhcpRepr<'_>) {
        let addresses = [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(10, 0, 2, 0),
            Ipv4Addr::new(10, 0, 2, 255),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(240, 0, 0, 9),
            Ipv4Addr::new(0, 1, 2, 3),
            Ipv4Addr::new(10, 0, 3, 7),
            HOST_IP,
            LEASED,
            LEASED,
            ROUTER,
        ];
        let masks = [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            MASK,
            MASK,
            Ipv4Addr::new(255, 255, 255, 254),
            Ipv4Addr::new(255, 255, 255, 252),
            Ipv4Addr::new(128, 0, 0, 0),
            Ipv4Addr::new(255, 0, 255, 0),
        ];
        let types = [
            DhcpMessageType::Offer,
            DhcpMessageType::Offer,
            DhcpMessageType::Ack,
            DhcpMessageType::Ack,
            DhcpMessageType::Ack,
            DhcpMessageType::Nak,
            DhcpMessageType::Discover,
            DhcpMessageType::Request,
            DhcpMessageType::Inform,
            DhcpMessageType::Unknown(99),
        ];
        let leases = [0, 1, 10, 60, 3600, u32::MAX];
        for _ in 0..=self.rng.below(2) {
            let r = &mut self.rng;
            if r.chance(5) {
                let n = r.below(600) as usize;
                let junk = r.bytes(n);
                self.send(req, &junk);
                continue;
            }
            let pick_addr = |r: &mut Rng| {
                if r.chance(10) {
                    Ipv4Addr::from(r.edgy_u32())
                } else {
                    r.pick(&addresses)
                }
            };
            let your_ip = pick_addr(r);
            let router = match r.below(4) {
                0 => None,
                1 => Some(ROUTER),
                _ => Some(pick_addr(r)),
            };
            let server = if r.chance(10) {
                None
            } else {
                Some(pick_addr(r))
            };
            let mut reply = DhcpRepr {
                message_type: r.pick(&types),
                your_ip,
                router,
                subnet_mask: if r.chance(10) {
                    None
                } else {
                    Some(r.pick(&masks))
                },
                lease_duration: if r.chance(10) {
                    None
                } else {
                    Some(r.pick(&leases))
                },
                renew_duration: r.chance(20).then(|| r.pick(&leases)),
                rebind_duration: r.chance(20).then(|| r.pick(&leases)),
                server_identifier: server,
                ..reply_to(req)
            };
            if r.chance(5) {
                reply.transaction_id ^= 1;
            }
            let mut frame = emit(&reply);
            if r.chance(10) {
                for _ in 0..=r.below(8) {
                    let at = r.below(frame.len() as u64) as usize;
                    frame[at] = r.next_u64() as u8;
                }
            }
            if r.chance(5) {
                frame.truncate(r.below(frame.len() as u64) as usize);
            }
            self.sent.push(reply.message_type);
            self.send(req, &frame);
        }
    }
}

/// A reply's fields from the request (the caller sets the rest).
fn reply_to<'a>(req: &DhcpRepr<'_>) -> DhcpRepr<'a> {
    DhcpRepr {
        message_type: DhcpMessageType::Offer,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip: req.client_ip,
        your_ip: Ipv4Addr::UNSPECIFIED,
        server_ip: HOST_IP,
        router: None,
        subnet_mask: None,
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(HOST_IP),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: None,
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    }
}

fn emit(repr: &DhcpRepr<'_>) -> Vec<u8> {
    let mut out = vec![0; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut out[..]))
        .expect("emit");
    out
}

fn good_lease() -> Lease {
    Lease {
        address: LEASED,
        mask: MASK,
        router: Some(ROUTER),
        secs: 3600,
    }
}

/// The DHCP client (side 0) and the host with the server (side 1).
fn setup(mode: Mode, lease: Lease) -> (Side<FakeDevice>, Side<FakeDevice>, Server) {
    let (a, b) = pair(CLIENT_MAC, SERVER_MAC);
    let host_ip = IpConfig::Static {
        address: HOST_IP,
        prefix: 24,
        gateway: None,
    };
    let (guest, host) = world_with(a, b, IpConfig::Dhcp, host_ip, limits());
    let server = Server::new(&host, mode, lease);
    (guest, host, server)
}

/// One round: the stacks poll (the clock moves by a microsecond), the server answers what
/// they received; if it had nothing to answer, the world steps (the clock moves to the next
/// deadline). So the server answers at once, as a real one would, before the clock jumps.
fn tick(guest: &Side<FakeDevice>, server: &mut Server) {
    let now = guest.now();
    guest.world.borrow_mut().step(Some(now));
    check_sane(guest);
    if server.serve() == 0 {
        guest.step();
        check_sane(guest);
    }
}

/// Serves and steps until `done` or `steps` steps.
fn run(guest: &Side<FakeDevice>, server: &mut Server, steps: u64, mut done: impl FnMut() -> bool) {
    for _ in 0..steps {
        if done() {
            return;
        }
        tick(guest, server);
    }
    assert!(done(), "not done after {steps} steps");
}

/// Serves and steps until the virtual clock reaches `until_ns`.
fn run_for(guest: &Side<FakeDevice>, server: &mut Server, until_ns: u64) {
    let mut steps = 0;
    while guest.now() < until_ns {
        tick(guest, server);
        steps += 1;
        assert!(steps < 1_000_000, "the clock does not move");
    }
}

fn bound(guest: &Side<FakeDevice>) -> bool {
    guest.with_stack(|s| matches!(s.dhcp_status(), DhcpStatus::Bound { .. }))
}

/// What the stack applied can be a host's configuration (checked here independently of the
/// crate's own checks), and its status agrees with it.
fn check_sane(guest: &Side<FakeDevice>) {
    guest.with_stack(|s: &mut Stack<FakeDevice>| {
        let cidr = s.ipv4_cidr();
        match (s.dhcp_status(), cidr) {
            (
                DhcpStatus::Bound {
                    address, router, ..
                },
                Some(c),
            ) => {
                assert_eq!(address, c);
                assert_eq!(router, s.gateway());
            }
            (DhcpStatus::Waiting { .. }, None) => assert_eq!(s.gateway(), None),
            (status, cidr) => panic!("status {status:?} with address {cidr:?}"),
        }
        let Some(c) = cidr else { return };
        let (a, p) = (u32::from(c.address()), c.prefix_len());
        assert!((1..=32).contains(&p), "prefix {c}");
        let host_mask = if p == 32 { 0 } else { u32::MAX >> p };
        let o = c.address().octets();
        assert!(o[0] != 0 && o[0] != 127 && o[0] < 224, "address {c}");
        if p <= 30 {
            assert!(
                a & host_mask != 0 && a & host_mask != host_mask,
                "address {c}"
            );
        }
        if let Some(g) = s.gateway() {
            let g32 = u32::from(g);
            assert!(g != c.address(), "gateway {g} is {c}");
            assert!(g32 & !host_mask == a & !host_mask, "gateway {g} off {c}");
            assert!(
                g32 & host_mask != host_mask || p > 30,
                "gateway {g} broadcast"
            );
            assert!(g.octets()[0] != 0 && g.octets()[0] != 127 && g.octets()[0] < 224);
        }
    });
}

#[test]
fn a_lease_is_applied_and_tcp_works_over_it() {
    let (guest, host, mut server) = setup(Mode::Good, good_lease());
    assert_eq!(
        guest.with_stack(|s| s.dhcp_status()),
        DhcpStatus::Waiting { since_ns: 0 }
    );
    assert_eq!(guest.with_stack(|s| s.ipv4_addr()), None);
    run(&guest, &mut server, 1_000, || bound(&guest));
    let status = guest.with_stack(|s| s.dhcp_status());
    let DhcpStatus::Bound {
        address, router, ..
    } = status
    else {
        panic!("{status:?}")
    };
    assert_eq!(address, Ipv4Cidr::new(LEASED, 24));
    assert_eq!(router, Some(ROUTER));
    assert_eq!(status.to_string(), "DHCP lease 10.0.2.50/24 gw 10.0.2.1");
    guest.with_stack(|s| {
        assert_eq!(s.ipv4_addr(), Some(LEASED));
        assert_eq!(s.ipv4_cidr(), Some(Ipv4Cidr::new(LEASED, 24)));
        assert_eq!(s.gateway(), Some(ROUTER));
        assert_eq!(s.ip_config(), IpConfig::Dhcp);
        assert_eq!(s.stats().dhcp_leases, 1);
    });
    assert_eq!(server.count(DhcpMessageType::Discover, false), 1);
    assert_eq!(server.sent, [DhcpMessageType::Offer, DhcpMessageType::Ack]);

    // TCP both ways over the leased address.
    let listener = TcpListener::bind(&guest, 7, 2).expect("bind");
    assert_eq!(listener.local_addr(), SocketAddrV4::new(LEASED, 7));
    let mut c = TcpStream::connect(&host, SocketAddrV4::new(LEASED, 7), None).expect("connect");
    let (mut conn, peer) = listener.accept().expect("accept");
    assert_eq!(
        peer,
        SocketAddrV4::new(HOST_IP, c.local_addr().expect("local").port())
    );
    let data = pattern(100_000, 3);
    c.write_all(&data).expect("write");
    let mut got = vec![0; data.len()];
    let mut n = 0;
    while n < got.len() {
        n += conn.read(&mut got[n..]).expect("read");
    }
    assert_eq!(got, data);

    let back = TcpListener::bind(&host, 80, 1).expect("bind");
    let mut out =
        TcpStream::connect(&guest, SocketAddrV4::new(HOST_IP, 80), None).expect("connect out");
    assert_eq!(out.local_addr().expect("local").ip(), &LEASED);
    let (mut inn, _) = back.accept().expect("accept");
    out.write_all(b"hello").expect("write");
    let mut buf = [0; 5];
    let mut n = 0;
    while n < 5 {
        n += inn.read(&mut buf[n..]).expect("read");
    }
    assert_eq!(&buf, b"hello");
}

#[test]
fn a_nak_leaves_the_stack_unconfigured_and_it_asks_again() {
    let (guest, _host, mut server) = setup(Mode::Nak, good_lease());
    // smoltcp starts over at once after a NAK, so this loops at the server's pace (see the
    // crate docs): rounds, not seconds.
    for _ in 0..200 {
        tick(&guest, &mut server);
    }
    assert!(!bound(&guest));
    assert!(server.count(DhcpMessageType::Request, false) >= 3);
    assert!(server.sent.contains(&DhcpMessageType::Nak));
    assert_eq!(guest.with_stack(|s| s.stats().dhcp_leases), 0);
    // The server comes to its senses: the next round gets a lease.
    server.mode = Mode::Good;
    run(&guest, &mut server, 10_000, || bound(&guest));
    assert_eq!(guest.with_stack(|s| s.ipv4_addr()), Some(LEASED));
}

#[test]
fn without_an_answer_the_stack_stays_unconfigured_and_keeps_asking_without_busy_polling() {
    let (guest, _host, mut server) = setup(Mode::Silent, good_lease());
    let start = guest.world.borrow().steps;
    run_for(&guest, &mut server, 300 * S);
    let steps = guest.world.borrow().steps - start;
    let discovers = server.count(DhcpMessageType::Discover, false);
    // smoltcp retries every 10 s: about 30 in 5 minutes.
    assert!((20..=40).contains(&discovers), "{discovers} DISCOVERs");
    // Each retry takes a handful of polls, not a poll per millisecond.
    assert!(steps < 20 * discovers as u64, "{steps} steps");
    let now = guest.now();
    guest.with_stack(|s| {
        assert_eq!(s.dhcp_status(), DhcpStatus::Waiting { since_ns: 0 });
        assert_eq!(s.dhcp_status().to_string(), "waiting for a DHCP lease");
        assert_eq!(s.ipv4_addr(), None);
        assert_eq!(s.gateway(), None);
        let next = s.poll_at(now).expect("a retry is due");
        assert!(next <= now + 10 * S, "{next} {now}");
    });
    // A socket bound meanwhile works once the lease comes.
    let listener = TcpListener::bind(&guest, 7, 1).expect("bind before the lease");
    assert_eq!(
        listener.local_addr(),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7)
    );
    server.mode = Mode::Good;
    run(&guest, &mut server, 10_000, || bound(&guest));
    assert_eq!(listener.local_addr(), SocketAddrV4::new(LEASED, 7));
}

#[test]
fn the_lease_is_renewed_on_the_virtual_clock_and_lost_when_the_server_goes() {
    let lease = Lease {
        secs: 60,
        ..good_lease()
    };
    let (guest, _host, mut server) = setup(Mode::Good, lease);
    run(&guest, &mut server, 1_000, || bound(&guest));
    let t0 = guest.now();
    // Ten minutes: a renewal every 30 s (T1), each answered; never unconfigured meanwhile
    // (`run_for` checks the status at every step).
    let mut was_bound = true;
    while guest.now() < t0 + 600 * S {
        tick(&guest, &mut server);
        was_bound &= bound(&guest);
    }
    assert!(was_bound, "the lease lapsed while the server answered");
    let renewals = server.count(DhcpMessageType::Request, true);
    assert!((15..=25).contains(&renewals), "{renewals} renewals");
    guest.with_stack(|s| {
        // A renewal that changes nothing is not a new lease.
        assert_eq!(s.stats().dhcp_leases, 1);
        assert_eq!(s.stats().dhcp_lost, 0);
        assert_eq!(s.ipv4_addr(), Some(LEASED));
    });

    // The server goes silent: the lease expires within its 60 s, the address goes.
    server.mode = Mode::Silent;
    let t1 = guest.now();
    run(&guest, &mut server, 100_000, || !bound(&guest));
    assert!(guest.now() <= t1 + 61 * S);
    guest.with_stack(|s| {
        assert_eq!(s.stats().dhcp_lost, 1);
        assert_eq!(s.ipv4_addr(), None);
        assert!(matches!(s.dhcp_status(), DhcpStatus::Waiting { since_ns } if since_ns > t1));
    });
    // Rebinding was broadcast (no `ciaddr` answer came).
    assert!(server.count(DhcpMessageType::Request, true) > renewals);

    // It comes back: a new lease.
    server.mode = Mode::Good;
    run(&guest, &mut server, 100_000, || bound(&guest));
    assert_eq!(guest.with_stack(|s| s.stats().dhcp_leases), 2);
}

#[test]
fn a_nak_to_a_renewal_drops_the_lease() {
    let lease = Lease {
        secs: 60,
        ..good_lease()
    };
    let (guest, _host, mut server) = setup(Mode::Good, lease);
    run(&guest, &mut server, 1_000, || bound(&guest));
    server.mode = Mode::Nak;
    run(&guest, &mut server, 100_000, || !bound(&guest));
    assert_eq!(guest.with_stack(|s| s.ipv4_addr()), None);
    assert_eq!(guest.with_stack(|s| s.stats().dhcp_lost), 1);
}

#[test]
fn bogus_leases_are_refused_and_a_router_off_the_subnet_is_left_out() {
    // An address that is the subnet's broadcast address: smoltcp takes it, we do not.
    let bad = Lease {
        address: Ipv4Addr::new(10, 0, 2, 255),
        ..good_lease()
    };
    let (guest, _host, mut server) = setup(Mode::Good, bad);
    run_for(&guest, &mut server, 60 * S);
    guest.with_stack(|s| {
        assert!(s.stats().dhcp_refused >= 1, "{:?}", s.stats());
        assert_eq!(s.stats().dhcp_leases, 0);
        assert_eq!(s.ipv4_addr(), None);
    });
    // A loopback address, and a /0.
    for lease in [
        Lease {
            address: Ipv4Addr::new(127, 0, 0, 5),
            ..good_lease()
        },
        Lease {
            mask: Ipv4Addr::UNSPECIFIED,
            ..good_lease()
        },
    ] {
        let (guest, _host, mut server) = setup(Mode::Good, lease);
        run_for(&guest, &mut server, 30 * S);
        guest.with_stack(|s| {
            assert!(s.stats().dhcp_refused >= 1, "{lease:?}");
            assert_eq!(s.ipv4_addr(), None);
        });
    }
    // A router outside the subnet: the address applies, the route does not.
    let off = Lease {
        router: Some(Ipv4Addr::new(192, 168, 0, 1)),
        ..good_lease()
    };
    let (guest, _host, mut server) = setup(Mode::Good, off);
    run(&guest, &mut server, 1_000, || bound(&guest));
    guest.with_stack(|s| {
        assert_eq!(s.ipv4_addr(), Some(LEASED));
        assert_eq!(s.gateway(), None);
        assert_eq!(s.stats().dhcp_router_refused, 1);
    });
}

#[test]
fn a_garbage_answering_server_never_panics_the_stack_nor_configures_it_wrongly() {
    let mut refused = 0;
    let mut routers_refused = 0;
    let mut leases = 0;
    for seed in 1..=platform::fuzz::cases(6) {
        let (guest, _host, mut server) = setup(Mode::Garbage, good_lease());
        server.rng = Rng::new(seed);
        // `run_for` checks what is applied after every step.
        run_for(&guest, &mut server, 1_800 * S);
        let st = guest.stats();
        refused += st.dhcp_refused;
        routers_refused += st.dhcp_router_refused;
        leases += st.dhcp_leases;
        assert!(
            server.heard.len() > 10 || bound(&guest),
            "the client stopped asking: {:?} {st:?} {:?}",
            server.heard,
            guest.with_stack(|s| s.dhcp_status())
        );
    }
    // The garbage reached the checks, and some leases were good enough.
    assert!(
        refused > 0 && routers_refused > 0 && leases > 0,
        "{refused} {routers_refused} {leases}"
    );
}
