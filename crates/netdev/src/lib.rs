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
//! Large segments (GSO/TSO): a device may coalesce received TCP segments into frames larger than
//! the MTU ([`Capabilities::max_rx_frame`]: virtio-net's `GUEST_TSO4`, netfront's receive GSO),
//! and may cut a large TCP/IPv4 frame into MTU-sized segments on transmit
//! ([`Capabilities::tso`]: virtio-net's `HOST_TSO4`, netback's `feature-gso-tcpv4`). The stack
//! never sends a segment above the peer's MSS, so it is the stack's adapter that merges
//! consecutive segments of one flow into such a frame and says how to cut it
//! ([`TxOffload`], through [`TxToken::consume_offload`]). Checksum completion on transmit goes
//! the same way: a frame whose transport checksum the device computes carries, in its checksum
//! field, the pseudo-header's sum, and the [`TxOffload::checksum`] says where (Linux's
//! `CHECKSUM_PARTIAL`; virtio's `NEEDS_CSUM`, netif's `NETTXF_csum_blank`).
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

mod either;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;

pub use either::{Either, EitherRx, EitherTx};

/// Bytes of an Ethernet header (destination, source, EtherType), without VLAN tags.
pub const ETHERNET_HEADER: usize = 14;

/// The Internet checksum (RFC 1071) in pieces, for drivers, fakes and the stack's adapter.
pub mod csum {
    /// Adds `data`'s 16-bit big-endian words (an odd last byte padded with zero) to `acc`.
    pub fn add(mut acc: u32, data: &[u8]) -> u32 {
        let mut words = data.chunks_exact(2);
        for w in &mut words {
            acc = acc.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
            // Keep room for the next word: fold the carries early.
            if acc >= 0xffff_0000 {
                acc = (acc & 0xffff) + (acc >> 16);
            }
        }
        if let [b] = words.remainder() {
            acc = acc.wrapping_add(u32::from(*b) << 8);
        }
        acc
    }

    /// Folds a running sum to 16 bits (not complemented).
    pub fn fold(mut acc: u32) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// The IPv4 pseudo-header's sum for a transport segment of `len` bytes of `protocol`
    /// between `src` and `dst` (addresses as in the packet).
    pub fn pseudo_header_v4(src: &[u8], dst: &[u8], protocol: u8, len: usize) -> u32 {
        let acc = add(add(0, src), dst);
        acc + u32::from(protocol) + (len as u32 & 0xffff) + (len as u32 >> 16)
    }
}

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
    /// The device verifies it on receive; the stack computes on transmit. Frames the device
    /// marks [`RxChecksum::Verified`] or [`RxChecksum::Blank`] are not checked again; a frame
    /// it marks [`RxChecksum::Unknown`] (virtio-net leaves unmarked what it did not check) is
    /// checked by the stack's adapter, which drops it if bad.
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
    /// The IP MTU in bytes (frames sent are at most `mtu + ETHERNET_HEADER`, but for TSO
    /// frames, see [`tso`](Self::tso)).
    pub mtu: usize,
    /// How many frames the device takes in one burst before the stack should let it work (the
    /// transmit ring's size, say), if it is worth saying.
    pub max_burst: Option<usize>,
    /// The checksum offloads.
    pub checksums: Checksums,
    /// The largest frame the device may hand the stack, in bytes (Ethernet header included):
    /// [`max_frame`](Self::max_frame) unless the device receives coalesced TCP segments (then
    /// up to an IPv4 packet's 65,535 bytes and the Ethernet header). Such frames are TCP/IPv4
    /// segments larger than the MTU; their checksum state is the frame's [`RxChecksum`].
    pub max_rx_frame: usize,
    /// TCP segmentation offload on transmit: the largest frame (Ethernet header included) the
    /// device cuts into segments, given a [`TxOffload::tso`]; `None` when it cannot. A device
    /// with TSO computes TCP checksums on transmit ([`ChecksumOffload::device_computes`]).
    pub tso: Option<usize>,
}

/// Where a transport checksum the device completes lies, as Linux's `csum_start` and
/// `csum_offset` put it: the device sums the frame from `start` (an offset in the frame) to its
/// end, the checksum field (at `start + offset`) holding the pseudo-header's sum, and stores
/// the complement of the folded sum there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialChecksum {
    /// Where the summing starts (the transport header), from the frame's first byte.
    pub start: u16,
    /// Where the checksum field is, from `start` (16 for TCP, 6 for UDP).
    pub offset: u16,
}

/// How the device cuts a TCP/IPv4 frame into segments (TSO): every segment carries the frame's
/// headers (`header_len` bytes: Ethernet, IPv4, TCP with options) and `mss` bytes of payload
/// (the last one what is left); the device fixes each segment's IPv4 total length and header
/// checksum, its TCP sequence number and checksum, and clears PSH and FIN on all but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tso {
    /// Payload bytes per segment.
    pub mss: u16,
    /// Bytes of the headers, from the frame's first byte to the TCP payload.
    pub header_len: u16,
}

/// What the device must do to a frame on transmit beyond sending it. A device is only asked
/// for what its [`Capabilities`] offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOffload {
    /// The transport checksum to complete (the field holds the pseudo-header's sum).
    pub checksum: Option<PartialChecksum>,
    /// The frame is a large TCP/IPv4 segment to cut (with a `checksum` for its TCP header).
    pub tso: Option<Tso>,
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
            max_rx_frame: 1500 + ETHERNET_HEADER,
            tso: None,
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
    /// The transport checksum field is blank (not computed, or holding the pseudo-header's sum
    /// only) but the data arrived intact (Xen's `NETRXF_csum_blank`, virtio's `NEEDS_CSUM`):
    /// the stack must not reject it for its checksum.
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

    /// As [`consume`](Self::consume), and `f` also says what the device must do to the frame
    /// it wrote ([`TxOffload`]). A frame with a [`TxOffload::tso`] may be up to the device's
    /// [`Capabilities::tso`] bytes long. Only a device whose capabilities offer transmit
    /// checksums or TSO is asked for them; the default (for devices that offer neither)
    /// ignores the offload.
    fn consume_offload<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> (R, TxOffload)) -> R
    where
        Self: Sized,
    {
        self.consume(len, |frame| f(frame).0)
    }
}

/// A transmit buffer the device lends across calls ([`NetDevice::hold_transmit`]), for a frame
/// built in several steps (the stack's TSO coalescer writes each segment of a run in place
/// after the last, straight into the buffer the device sends from). It names the device's
/// buffer; not `Clone`: it is sent ([`NetDevice::send_held`]) or given back
/// ([`NetDevice::release_held`]) once. A device checks the number it gets back (a handle of
/// another device, or one already sent, is refused).
#[derive(Debug, PartialEq, Eq)]
pub struct HeldTx(pub u16);

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

    /// A transmit buffer that takes a frame of `len` bytes (a TSO frame up to
    /// [`Capabilities::tso`]), or `None` while the device has none free. The default is
    /// [`transmit`](Self::transmit): devices whose buffers all take their largest frame.
    fn transmit_sized(&mut self, len: usize) -> Option<Self::TxToken<'_>> {
        let _ = len;
        self.transmit()
    }

    /// A transmit buffer for a frame of up to `len` bytes (a TSO frame up to
    /// [`Capabilities::tso`]), lent until [`send_held`](Self::send_held) or
    /// [`release_held`](Self::release_held); `None` while none is free, or when the device
    /// does not lend buffers (the default: the caller then builds the frame in memory of its
    /// own and sends it through a [`TxToken`], one copy more).
    fn hold_transmit(&mut self, len: usize) -> Option<HeldTx> {
        let _ = len;
        None
    }

    /// The frame area of a held buffer (at least the `len` it was held for, from the frame's
    /// first byte); empty for a handle the device did not lend.
    fn held_buffer(&mut self, held: &HeldTx) -> &mut [u8] {
        let _ = held;
        &mut []
    }

    /// Sends the first `len` bytes of a held buffer with `offload`, as
    /// [`TxToken::consume_offload`] does (a bad length or offload is dropped and counted).
    fn send_held(&mut self, held: HeldTx, len: usize, offload: TxOffload) {
        let _ = (held, len, offload);
    }

    /// Gives a held buffer back unsent.
    fn release_held(&mut self, held: HeldTx) {
        let _ = held;
    }

    /// Called after the device's interrupt fired (from a thread, not the interrupt handler):
    /// acknowledges it at the device, reclaims completed transmit buffers and refills the
    /// receive queue. Returns whether the device has anything new for the stack. Before the
    /// platform unmasks the line again, this must have run. The default does nothing.
    fn poll_interrupt(&mut self) -> bool {
        false
    }

    /// Called at the end of every stack poll, once the stack sent what it had: a device that
    /// batches transmits (puts frames on its queue without telling the device at once, to
    /// notify once for a burst) tells the device now. The default does nothing: the frame went
    /// when its token was consumed.
    fn flush(&mut self) {}

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
