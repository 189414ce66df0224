//! ARP and ICMP echo: the stack answers both by itself. The pinger is a bare smoltcp interface
//! over the crate's device adapter.
mod common;

use common::*;
use net::device::Phy;
use net::smoltcp::iface::{Config, Interface, SocketSet};
use net::smoltcp::phy::Device;
use net::smoltcp::socket::icmp;
use net::smoltcp::time::Instant;
use net::smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr,
};
use net::{Stack, device};
use netdev::fake::pair;
use netdev::{NetDevice, RxToken, TxToken};

#[test]
fn the_stack_answers_arp_requests() {
    let (mut a, b) = pair(CLIENT_MAC, SERVER_MAC);
    let mut server = Stack::new(b, static_ip(SERVER_IP), limits(), 3, 0);
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(CLIENT_MAC.0),
        source_protocol_addr: CLIENT_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: SERVER_IP,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(CLIENT_MAC.0),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    a.transmit()
        .expect("room")
        .consume(14 + arp.buffer_len(), |f| {
            let mut frame = EthernetFrame::new_unchecked(f);
            eth.emit(&mut frame);
            arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        });
    server.poll(1_000);
    let (rx, _) = a.receive().expect("an ARP reply");
    rx.consume(|f| {
        let frame = EthernetFrame::new_checked(f).expect("ethernet");
        assert_eq!(frame.dst_addr(), EthernetAddress(CLIENT_MAC.0));
        assert_eq!(frame.ethertype(), EthernetProtocol::Arp);
        let reply =
            ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).expect("arp")).expect("arp");
        assert_eq!(
            reply,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(SERVER_MAC.0),
                source_protocol_addr: SERVER_IP,
                target_hardware_addr: EthernetAddress(CLIENT_MAC.0),
                target_protocol_addr: CLIENT_IP,
            }
        );
    });
}

#[test]
fn the_stack_answers_pings() {
    let (a, b) = pair(CLIENT_MAC, SERVER_MAC);
    let mut server = Stack::new(b, static_ip(SERVER_IP), limits(), 3, 0);
    let mut phy = Phy::new(a);
    assert_eq!(phy.capabilities().max_transmission_unit, 1514);
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC.0))),
        &mut phy,
        Instant::ZERO,
    );
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::Ipv4(CLIENT_IP), 24))
            .expect("room")
    });
    let mut sockets = SocketSet::new(vec![]);
    let buffer = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]);
    let h = sockets.add(icmp::Socket::new(buffer(), buffer()));
    sockets
        .get_mut::<icmp::Socket<'_>>(h)
        .bind(icmp::Endpoint::Ident(0x1234))
        .expect("bind");
    let mut replies = 0;
    let mut now = 0u64;
    for seq in 0..3u16 {
        let payload = pattern(56, seq as u8);
        let mut sent = false;
        for _ in 0..5000 {
            let t = Instant::from_micros((now / 1000) as i64);
            let socket = sockets.get_mut::<icmp::Socket<'_>>(h);
            if !sent && socket.can_send() {
                let req = Icmpv4Repr::EchoRequest {
                    ident: 0x1234,
                    seq_no: seq,
                    data: &payload,
                };
                let buf = socket
                    .send(req.buffer_len(), IpAddress::Ipv4(SERVER_IP))
                    .expect("send");
                req.emit(
                    &mut Icmpv4Packet::new_unchecked(buf),
                    &device::checksums(netdev::Checksums::default()),
                );
                sent = true;
            }
            if socket.can_recv() {
                let (data, from) = socket.recv().expect("recv");
                assert_eq!(from, IpAddress::Ipv4(SERVER_IP));
                let packet = Icmpv4Packet::new_checked(data).expect("icmp");
                let repr = Icmpv4Repr::parse(&packet, &Default::default()).expect("icmp");
                assert_eq!(
                    repr,
                    Icmpv4Repr::EchoReply {
                        ident: 0x1234,
                        seq_no: seq,
                        data: &payload
                    }
                );
                replies += 1;
                break;
            }
            iface.poll(t, &mut phy, &mut sockets);
            server.poll(now);
            now += 1_000_000;
        }
    }
    assert_eq!(replies, 3);
    assert!(
        server.device().stats().rx_frames >= 4,
        "ARP and three pings"
    );
}
