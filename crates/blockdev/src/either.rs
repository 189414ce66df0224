//! One of two disk drivers, chosen at run time: the universal image carries virtio-blk and Xen's
//! blkfront, and takes the one the machine it boots on has ([`Either`]).

use crate::{BlockDevice, Completion, Error, Info, Request, Stats};

/// Driver `A` or driver `B`.
#[derive(Debug)]
pub enum Either<A, B> {
    /// The first driver (the universal image: virtio-blk).
    A(A),
    /// The second driver (the universal image: blkfront).
    B(B),
}

impl<A: BlockDevice, B: BlockDevice> BlockDevice for Either<A, B> {
    fn info(&self) -> Info {
        match self {
            Either::A(d) => d.info(),
            Either::B(d) => d.info(),
        }
    }

    fn submit(&mut self, request: Request) -> Result<(), (Error, Request)> {
        match self {
            Either::A(d) => d.submit(request),
            Either::B(d) => d.submit(request),
        }
    }

    fn complete(&mut self) -> Option<Completion> {
        match self {
            Either::A(d) => d.complete(),
            Either::B(d) => d.complete(),
        }
    }

    fn in_flight(&self) -> usize {
        match self {
            Either::A(d) => d.in_flight(),
            Either::B(d) => d.in_flight(),
        }
    }

    fn poll_interrupt(&mut self) -> bool {
        match self {
            Either::A(d) => d.poll_interrupt(),
            Either::B(d) => d.poll_interrupt(),
        }
    }

    fn stats(&self) -> Stats {
        match self {
            Either::A(d) => d.stats(),
            Either::B(d) => d.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Buffer;
    use crate::fake::RamDisk;

    fn round_trip(mut d: Either<RamDisk, RamDisk>, block_size: u32) {
        assert_eq!(d.info().block_size, block_size);
        let mut data = Buffer::new(block_size as usize);
        data.as_mut_slice().fill(0x42);
        d.submit(Request::write(1, 3, data)).expect("accepted");
        assert_eq!(d.in_flight(), 1);
        let done = loop {
            if let Some(c) = d.complete() {
                break c;
            }
        };
        assert_eq!((done.id, done.result), (1, Ok(())));
        d.submit(Request::read(2, 3, 1, block_size))
            .expect("accepted");
        let done = loop {
            d.poll_interrupt();
            if let Some(c) = d.complete() {
                break c;
            }
        };
        assert!(done.buffer.as_slice().iter().all(|b| *b == 0x42));
        assert_eq!(d.stats().writes, 1);
    }

    #[test]
    fn either_driver_does_all_the_work() {
        round_trip(Either::A(RamDisk::new(16, 512)), 512);
        round_trip(Either::B(RamDisk::new(16, 4096)), 4096);
    }
}
