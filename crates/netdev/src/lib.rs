//! The network-device interface: what a NIC driver (virtio-net, Xen's netfront) gives the network
//! stack, and nothing of the stack itself.
//!
//! It is token-style, in the spirit of smoltcp's `phy::Device`, so that a driver lends the
//! stack a buffer of its own instead of copying through an intermediate one:
//! [`NetDevice::receive`] hands out a received frame as an [`RxToken`] (with a [`TxToken`] for
//! an answer), [`NetDevice::transmit`] a [`TxToken`] for a frame to send when there is room.
//! A token does its work when consumed; one dropped unconsumed does nothing (a received frame
//! stays queued, a transmit slot stays free). Drivers do not depend on the stack, and the stack
//! (crate `net`) adapts any [`NetDevice`] to smoltcp.
//!
//! A frame is an Ethernet frame without its FCS: destination, source, EtherType, payload.
//! [`Capabilities::mtu`] is the IP MTU (1500 on virtio-net and netfront without GSO); frames are
//! at most `mtu + ETHERNET_HEADER` bytes.
//!
//! Checksums: a device may compute or verify checksums for the stack ([`ChecksumOffload`], per
//! protocol and direction). Xen's netback can also deliver a frame whose transport checksum is
//! blank but whose data arrived intact from another domain (`NETRXF_csum_blank` with
//! `NETRXF_data_validated`, `io/netif.h`): such a frame comes with [`RxChecksum::Blank`], and
//! the stack must fill in or skip the check for it. A driver that cannot express that
//! negotiates the offload away instead (netfront: `feature-no-csum-offload = 1`).
//!
//! Everything a device hands over is untrusted: a driver bounds-checks what its device wrote
//! (lengths, ids) before it builds a token, and counts what it refused in [`DeviceStats`].
//!
//! # Cargo features
//! - `test-utils`: fakes for host tests (`std`): [`fake::pair`] (two devices wired back to back),
//!   [`fake::Loopback`] (every frame sent comes back) and [`fake::Faulty`] (drops, duplicates,
//!   reorders and corrupts frames of any device, from a seed).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(all(not(test), feature = "test-utils"))]
extern crate std;

#[cfg(any(test, feature = "test-utils"))]
pub mod fake;

/// Bytes of an Ethernet header (destination, source, EtherType), without VLAN tags.
pub const ETHERNET_HEADER: usize = 14;

/// An Ethernet (MAC-48) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// Whether this is a unicast address (the group bit clear): a NIC's own address must be.
    pub const fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0
    }
}

impl core::fmt::Display for MacAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Who computes and checks one protocol's checksum, as smoltcp's `phy::Checksum` puts it: the
/// stack does what the device does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumOffload {
    /// The stack computes it on transmit and verifies it on receive (no offload).
    #[default]
    None,
    /// The device computes it on transmit; the stack verifies on receive.
    Tx,
    /// The device verifies it on receive (and drops bad frames); the stack computes on transmit.
    Rx,
    /// The device does both.
    Both,
}

impl ChecksumOffload {
    /// Whether the device computes the checksum of transmitted frames.
    pub const fn device_computes(self) -> bool {
        matches!(self, ChecksumOffload::Tx | ChecksumOffload::Both)
    }

    /// Whether the device verifies the checksum of received frames.
    pub const fn device_verifies(self) -> bool {
        matches!(self, ChecksumOffload::Rx | ChecksumOffload::Both)
    }
}

/// The checksum offloads a device negotiated, per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checksums {
    /// The IPv4 header checksum.
    pub ipv4: ChecksumOffload,
    /// TCP.
    pub tcp: ChecksumOffload,
    /// UDP.
    pub udp: ChecksumOffload,
    /// ICMPv4.
    pub icmpv4: ChecksumOffload,
}

/// What a device is and can do; fixed once the driver has negotiated with the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The device's own address.
    pub mac: MacAddress,
    /// The IP MTU in bytes (frames are at most `mtu + ETHERNET_HEADER`).
    pub mtu: usize,
    /// How many frames the device takes in one burst before the stack should let it work (the
    /// transmit ring's size, say), if it is worth saying.
    pub max_burst: Option<usize>,
    /// The checksum offloads.
    pub checksums: Checksums,
}

impl Capabilities {
    /// A device with `mac`, the standard Ethernet MTU (1500) and no offloads.
    pub const fn ethernet(mac: MacAddress) -> Self {
        Capabilities {
            mac,
            mtu: 1500,
            max_burst: None,
            checksums: Checksums {
                ipv4: ChecksumOffload::None,
                tcp: ChecksumOffload::None,
                udp: ChecksumOffload::None,
                icmpv4: ChecksumOffload::None,
            },
        }
    }

    /// The largest frame in bytes (`mtu + ETHERNET_HEADER`).
    pub const fn max_frame(&self) -> usize {
        self.mtu + ETHERNET_HEADER
    }
}

/// What the device says of a received frame's transport checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxChecksum {
    /// Nothing: the stack verifies as its [`Checksums`] say.
    #[default]
    Unknown,
    /// The device verified every checksum of the frame.
    Verified,
    /// The transport checksum field is blank (not computed) but the data arrived intact (Xen's
    /// `NETRXF_csum_blank`): the stack must not reject it for its checksum.
    Blank,
}

/// A received frame, lent by the device until consumed.
pub trait RxToken {
    /// Gives the frame to `f`; the device reuses the buffer afterwards.
    fn consume<R>(self, f: impl FnOnce(&[u8]) -> R) -> R;

    /// What the device says of the frame's checksums.
    fn checksum(&self) -> RxChecksum {
        RxChecksum::Unknown
    }
}

/// A transmit buffer, lent by the device until consumed.
pub trait TxToken {
    /// Lets `f` fill a frame of `len` bytes, then sends it. A `len` above the device's
    /// [`Capabilities::max_frame`] (or 0) is the caller's bug: the device sends nothing, counts
    /// it in [`DeviceStats::tx_dropped`], and gives `f` a scratch buffer of `len` bytes whose
    /// contents go nowhere.
    fn consume<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R;
}

/// Counters a driver keeps. Refused and dropped frames are counted, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStats {
    /// Frames handed to the stack.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Received frames dropped (too long, too short, no buffer).
    pub rx_dropped: u64,
    /// Frames not sent (bad length, device error).
    pub tx_dropped: u64,
    /// Values the device wrote that were out of bounds (ring ids, lengths, statuses) and were
    /// refused: a misbehaving or hostile device or backend.
    pub device_errors: u64,
}

/// A network device: a NIC driver's instance.
///
/// The network stack calls it from one thread at a time (behind its lock); an interrupt handler
/// never calls it (the platform's handler only wakes the stack's thread, see
/// `platform::irq`), so a driver needs no locking of its own.
pub trait NetDevice {
    /// A received frame.
    type RxToken<'a>: RxToken
    where
        Self: 'a;
    /// A transmit buffer.
    type TxToken<'a>: TxToken
    where
        Self: 'a;

    /// What the device is and can do.
    fn capabilities(&self) -> Capabilities;

    /// The next received frame, with a transmit buffer for an answer, or `None` when nothing
    /// was received (or there is no room to answer: the frame then stays queued).
    fn receive(&mut self) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)>;

    /// A transmit buffer, or `None` while the device's transmit queue is full.
    fn transmit(&mut self) -> Option<Self::TxToken<'_>>;

    /// Called after the device's interrupt fired (from a thread, not the interrupt handler):
    /// acknowledges it at the device, reclaims completed transmit buffers and refills the
    /// receive queue. Returns whether the device has anything new for the stack. Before the
    /// platform unmasks the line again, this must have run. The default does nothing.
    fn poll_interrupt(&mut self) -> bool {
        false
    }

    /// The driver's counters.
    fn stats(&self) -> DeviceStats {
        DeviceStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_print_like_ip_link() {
        let mac = MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(mac.to_string(), "52:54:00:12:34:56");
        assert!(mac.is_unicast());
        assert!(!MacAddress([0xff; 6]).is_unicast());
    }

    #[test]
    fn offloads_say_who_does_what() {
        assert!(!ChecksumOffload::None.device_computes());
        assert!(!ChecksumOffload::None.device_verifies());
        assert!(ChecksumOffload::Tx.device_computes() && !ChecksumOffload::Tx.device_verifies());
        assert!(ChecksumOffload::Rx.device_verifies() && !ChecksumOffload::Rx.device_computes());
        assert!(ChecksumOffload::Both.device_computes() && ChecksumOffload::Both.device_verifies());
        let caps = Capabilities::ethernet(MacAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(caps.max_frame(), 1514);
        assert_eq!(caps.checksums, Checksums::default());
    }
}
