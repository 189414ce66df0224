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
use alloc::vec::Vec;
use netdev::{ChecksumOffload, NetDevice, RxChecksum};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

/// A [`NetDevice`] adapted to smoltcp.
#[derive(Debug)]
pub struct Phy<D> {
    device: D,
    /// Where a frame with a blank checksum is copied to be completed.
    scratch: Vec<u8>,
}

impl<D: NetDevice> Phy<D> {
    /// Adapts `device`.
    pub fn new(device: D) -> Self {
        Phy {
            device,
            scratch: Vec::new(),
        }
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

/// A received frame (the device's token).
#[derive(Debug)]
pub struct PhyRx<'a, T> {
    token: T,
    scratch: &'a mut Vec<u8>,
}

impl<T: netdev::RxToken> phy::RxToken for PhyRx<'_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        if self.token.checksum() == RxChecksum::Blank {
            let scratch = self.scratch;
            self.token.consume(|frame| {
                scratch.clear();
                scratch.extend_from_slice(frame);
            });
            fill_transport_checksum(scratch);
            f(scratch)
        } else {
            self.token.consume(f)
        }
    }
}

/// A transmit buffer (the device's token).
#[derive(Debug)]
pub struct PhyTx<T>(T);

impl<T: netdev::TxToken> phy::TxToken for PhyTx<T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.0.consume(len, f)
    }
}

impl<D: NetDevice> phy::Device for Phy<D> {
    type RxToken<'a>
        = PhyRx<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = PhyTx<D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let Phy { device, scratch } = self;
        let (rx, tx) = device.receive()?;
        Some((PhyRx { token: rx, scratch }, PhyTx(tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        self.device.transmit().map(PhyTx)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let c = self.device.capabilities();
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = c.max_frame();
        caps.max_burst_size = c.max_burst;
        caps.checksum = checksums(c.checksums);
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
