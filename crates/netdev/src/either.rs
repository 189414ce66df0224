//! One of two NIC drivers, chosen at run time: the universal image carries virtio-net and Xen's
//! netfront, and takes the one the machine it boots on has ([`Either`]). Every call goes to the
//! driver in use; its tokens are the driver's own, wrapped.

use crate::{
    Capabilities, DeviceStats, HeldTx, NetDevice, RxChecksum, RxToken, TxOffload, TxToken,
};

/// Driver `A` or driver `B`.
#[derive(Debug)]
pub enum Either<A, B> {
    /// The first driver (the universal image: virtio-net).
    A(A),
    /// The second driver (the universal image: netfront).
    B(B),
}

/// A received frame of either driver.
#[derive(Debug)]
pub enum EitherRx<A, B> {
    /// Of driver `A`.
    A(A),
    /// Of driver `B`.
    B(B),
}

/// A transmit buffer of either driver.
#[derive(Debug)]
pub enum EitherTx<A, B> {
    /// Of driver `A`.
    A(A),
    /// Of driver `B`.
    B(B),
}

impl<A: RxToken, B: RxToken> RxToken for EitherRx<A, B> {
    fn consume<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            EitherRx::A(t) => t.consume(f),
            EitherRx::B(t) => t.consume(f),
        }
    }

    fn checksum(&self) -> RxChecksum {
        match self {
            EitherRx::A(t) => t.checksum(),
            EitherRx::B(t) => t.checksum(),
        }
    }
}

impl<A: TxToken, B: TxToken> TxToken for EitherTx<A, B> {
    fn consume<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        match self {
            EitherTx::A(t) => t.consume(len, f),
            EitherTx::B(t) => t.consume(len, f),
        }
    }

    fn consume_offload<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> (R, TxOffload)) -> R {
        match self {
            EitherTx::A(t) => t.consume_offload(len, f),
            EitherTx::B(t) => t.consume_offload(len, f),
        }
    }
}

impl<A: NetDevice, B: NetDevice> NetDevice for Either<A, B> {
    type RxToken<'a>
        = EitherRx<A::RxToken<'a>, B::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = EitherTx<A::TxToken<'a>, B::TxToken<'a>>
    where
        Self: 'a;

    fn capabilities(&self) -> Capabilities {
        match self {
            Either::A(d) => d.capabilities(),
            Either::B(d) => d.capabilities(),
        }
    }

    fn receive(&mut self) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        match self {
            Either::A(d) => d.receive().map(|(r, t)| (EitherRx::A(r), EitherTx::A(t))),
            Either::B(d) => d.receive().map(|(r, t)| (EitherRx::B(r), EitherTx::B(t))),
        }
    }

    fn transmit(&mut self) -> Option<Self::TxToken<'_>> {
        match self {
            Either::A(d) => d.transmit().map(EitherTx::A),
            Either::B(d) => d.transmit().map(EitherTx::B),
        }
    }

    fn transmit_sized(&mut self, len: usize) -> Option<Self::TxToken<'_>> {
        match self {
            Either::A(d) => d.transmit_sized(len).map(EitherTx::A),
            Either::B(d) => d.transmit_sized(len).map(EitherTx::B),
        }
    }

    fn hold_transmit(&mut self, len: usize) -> Option<HeldTx> {
        match self {
            Either::A(d) => d.hold_transmit(len),
            Either::B(d) => d.hold_transmit(len),
        }
    }

    fn held_buffer(&mut self, held: &HeldTx) -> &mut [u8] {
        match self {
            Either::A(d) => d.held_buffer(held),
            Either::B(d) => d.held_buffer(held),
        }
    }

    fn send_held(&mut self, held: HeldTx, len: usize, offload: TxOffload) {
        match self {
            Either::A(d) => d.send_held(held, len, offload),
            Either::B(d) => d.send_held(held, len, offload),
        }
    }

    fn release_held(&mut self, held: HeldTx) {
        match self {
            Either::A(d) => d.release_held(held),
            Either::B(d) => d.release_held(held),
        }
    }

    fn poll_interrupt(&mut self) -> bool {
        match self {
            Either::A(d) => d.poll_interrupt(),
            Either::B(d) => d.poll_interrupt(),
        }
    }

    fn flush(&mut self) {
        match self {
            Either::A(d) => d.flush(),
            Either::B(d) => d.flush(),
        }
    }

    fn stats(&self) -> DeviceStats {
        match self {
            Either::A(d) => d.stats(),
            Either::B(d) => d.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MacAddress;
    use crate::fake::{FakeDevice, Loopback};

    fn frames_loop_back(mut d: Either<FakeDevice, FakeDevice>, mac: [u8; 6]) {
        assert_eq!(d.capabilities().mac, MacAddress(mac));
        let frame = [0x5a; 60];
        d.transmit()
            .expect("room")
            .consume(frame.len(), |b| b.copy_from_slice(&frame));
        let (rx, tx) = d.receive().expect("looped back");
        assert_eq!(rx.checksum(), RxChecksum::Unknown);
        assert_eq!(rx.consume(|f| f.to_vec()), frame);
        tx.consume(60, |b| b.fill(1));
        assert!(d.receive().is_some(), "the answer looped back too");
        assert_eq!(d.stats().tx_frames, 2);
        let held = d.hold_transmit(100).expect("lends");
        assert!(d.held_buffer(&held).len() >= 100);
        d.release_held(held);
    }

    #[test]
    fn either_driver_does_all_the_work() {
        let a = [2, 0, 0, 0, 0, 0xa];
        let b = [2, 0, 0, 0, 0, 0xb];
        let tso = |mac| {
            let mut caps = crate::Capabilities::ethernet(MacAddress(mac));
            caps.tso = Some(16 * 1024);
            Loopback::new(MacAddress(mac)).with_capabilities(caps)
        };
        frames_loop_back(Either::A(tso(a)), a);
        frames_loop_back(Either::B(tso(b)), b);
    }
}
