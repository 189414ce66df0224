//! Byte rings shared with another domain: the console ring (`in` 1024 bytes, `out` 2048) and
//! the XenStore ring (`req` and `rsp`, 1024 bytes each).
//!
//! Each direction has a data array of a power-of-two size and two free-running `u32`
//! indices: the producer advances `prod` after writing the bytes, the consumer advances `cons`
//! after reading them. `prod - cons` (wrapping) is the number of bytes in the ring; a byte's
//! slot is `index & (size - 1)`. Indices wrap at 2^32, which the arithmetic here handles. The
//! other side is not trusted: `prod - cons > size` means the ring is corrupt, reported as
//! [`RingError::Corrupt`], never a panic or an out-of-bounds access.

use core::fmt;

use crate::mem::SharedMemory;

/// Bytes in the ring: `prod - cons`, wrapping.
pub const fn used(prod: u32, cons: u32) -> u32 {
    prod.wrapping_sub(cons)
}

/// The slot of free-running index `idx` in a ring of `size` bytes (a power of two).
pub const fn slot(idx: u32, size: u32) -> usize {
    (idx & (size - 1)) as usize
}

/// What went wrong with a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The indices say more bytes are in the ring than it holds: the other side wrote garbage.
    Corrupt {
        /// The producer index read.
        prod: u32,
        /// The consumer index read.
        cons: u32,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Corrupt { prod, cons } => write!(
                f,
                "corrupt shared ring: prod {prod:#x} - cons {cons:#x} exceeds the ring size"
            ),
        }
    }
}

impl core::error::Error for RingError {}

/// Where one direction of a ring lives in its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// Offset of the data array.
    pub data: usize,
    /// Its size in bytes (a power of two).
    pub size: u32,
    /// Offset of the consumer index.
    pub cons: usize,
    /// Offset of the producer index.
    pub prod: usize,
}

impl RingLayout {
    /// Reads the indices and checks them.
    fn indices(&self, m: &impl SharedMemory) -> Result<(u32, u32), RingError> {
        let cons = m.read_u32(self.cons);
        let prod = m.read_u32(self.prod);
        if used(prod, cons) > self.size {
            return Err(RingError::Corrupt { prod, cons });
        }
        Ok((prod, cons))
    }

    /// Bytes waiting in the ring.
    pub fn pending(&self, m: &impl SharedMemory) -> Result<u32, RingError> {
        self.indices(m).map(|(p, c)| used(p, c))
    }

    /// As the producer: copies as much of `data` as fits, then publishes it (bytes first,
    /// barrier, then `prod`). Returns how many bytes were written (0 when full).
    pub fn produce(&self, m: &impl SharedMemory, data: &[u8]) -> Result<usize, RingError> {
        let (prod, cons) = self.indices(m)?;
        let space = (self.size - used(prod, cons)) as usize;
        let n = space.min(data.len());
        for (i, &b) in data[..n].iter().enumerate() {
            m.write_u8(self.data + slot(prod.wrapping_add(i as u32), self.size), b);
        }
        if n > 0 {
            m.fence();
            m.write_u32(self.prod, prod.wrapping_add(n as u32));
        }
        Ok(n)
    }

    /// As the consumer: copies up to `buf.len()` waiting bytes out without releasing them (the
    /// next [`consume`](Self::consume) reads them again). Returns how many bytes were copied.
    pub fn peek(&self, m: &impl SharedMemory, buf: &mut [u8]) -> Result<usize, RingError> {
        let (prod, cons) = self.indices(m)?;
        m.fence(); // the bytes are read after the index that published them
        let n = (used(prod, cons) as usize).min(buf.len());
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = m.read_u8(self.data + slot(cons.wrapping_add(i as u32), self.size));
        }
        Ok(n)
    }

    /// As the consumer: copies up to `buf.len()` waiting bytes out, then releases them
    /// (barrier, then `cons`). Returns how many bytes were read (0 when empty).
    pub fn consume(&self, m: &impl SharedMemory, buf: &mut [u8]) -> Result<usize, RingError> {
        let n = self.peek(m, buf)?;
        let cons = m.read_u32(self.cons);
        if n > 0 {
            m.fence();
            m.write_u32(self.cons, cons.wrapping_add(n as u32));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::fake::FakePage;

    const L: RingLayout = RingLayout {
        data: 0,
        size: 16,
        cons: 16,
        prod: 20,
    };

    #[test]
    fn arithmetic_wraps() {
        assert_eq!(used(5, 3), 2);
        assert_eq!(used(2, u32::MAX - 1), 4);
        assert_eq!(slot(u32::MAX, 16), 15);
        assert_eq!(slot(16, 16), 0);
        assert_eq!(slot(1026, 1024), 2);
    }

    #[test]
    fn produce_consume_across_the_index_wrap() {
        let m = FakePage::<24>::default();
        // start just below 2^32 so the indices wrap during the test
        m.write_u32(L.cons, u32::MAX - 5);
        m.write_u32(L.prod, u32::MAX - 5);
        assert_eq!(L.produce(&m, b"hello, ring!").expect("ok"), 12);
        assert_eq!(
            L.produce(&m, b"0123456789").expect("ok"),
            4,
            "only 4 bytes of room"
        );
        assert_eq!(L.produce(&m, b"x").expect("ok"), 0, "full");
        assert_eq!(L.pending(&m), Ok(16));
        let mut buf = [0u8; 10];
        assert_eq!(L.consume(&m, &mut buf).expect("ok"), 10);
        assert_eq!(&buf, b"hello, rin");
        let mut buf = [0u8; 32];
        assert_eq!(L.consume(&m, &mut buf).expect("ok"), 6);
        assert_eq!(&buf[..6], b"g!0123");
        assert_eq!(L.consume(&m, &mut buf).expect("ok"), 0);
        assert_eq!(m.read_u32(L.prod), 10, "prod wrapped past 2^32");
    }

    #[test]
    fn garbage_indices_are_an_error() {
        let m = FakePage::<24>::default();
        m.write_u32(L.cons, 100);
        m.write_u32(L.prod, 117);
        let err = L.produce(&m, b"x").expect_err("corrupt");
        assert_eq!(
            err,
            RingError::Corrupt {
                prod: 117,
                cons: 100
            }
        );
        assert!(L.consume(&m, &mut [0; 4]).is_err());
        // prod behind cons is the same thing (a huge wrapping difference)
        m.write_u32(L.prod, 99);
        assert!(L.pending(&m).is_err());
    }
}
