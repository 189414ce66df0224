//! The PV console ring (`struct xencons_interface`): `out` (guest → xenconsoled, 2048 bytes)
//! and `in` (→ guest, 1024 bytes) in one page. Found through `start_info.console.domU` (PV)
//! or `HVM_PARAM_CONSOLE_PFN` / `HVM_PARAM_CONSOLE_EVTCHN` (PVH); the platform maps the page
//! and notifies the event channel, this module only moves bytes.

use core::mem::offset_of;

use xen_sys::xencons_interface;

use crate::mem::SharedMemory;
use crate::ring::{RingError, RingLayout};

/// The `out` direction (guest writes).
pub const OUT: RingLayout = RingLayout {
    data: offset_of!(xencons_interface, out),
    size: 2048,
    cons: offset_of!(xencons_interface, out_cons),
    prod: offset_of!(xencons_interface, out_prod),
};

/// The `in` direction (guest reads).
pub const IN: RingLayout = RingLayout {
    data: offset_of!(xencons_interface, in_),
    size: 1024,
    cons: offset_of!(xencons_interface, in_cons),
    prod: offset_of!(xencons_interface, in_prod),
};

/// The console ring page.
#[derive(Debug)]
pub struct ConsoleRing<M> {
    page: M,
}

impl<M: SharedMemory> ConsoleRing<M> {
    /// The console on `page` (at least `size_of::<xencons_interface>()` bytes).
    pub fn new(page: M) -> ConsoleRing<M> {
        assert!(
            page.len() >= core::mem::size_of::<xencons_interface>(),
            "the console page is too small"
        );
        ConsoleRing { page }
    }

    /// The page.
    pub fn page(&self) -> &M {
        &self.page
    }

    /// Writes as much of `data` as fits; returns the count (notify the event channel after).
    pub fn write(&self, data: &[u8]) -> Result<usize, RingError> {
        OUT.produce(&self.page, data)
    }

    /// Writes all of `data`, calling `wait` (notify + yield or block) whenever the ring is
    /// full; `wait` returns `false` to give up, and then the count written so far is returned.
    pub fn write_all(
        &self,
        mut data: &[u8],
        mut wait: impl FnMut() -> bool,
    ) -> Result<usize, RingError> {
        let mut done = 0;
        while !data.is_empty() {
            let n = self.write(data)?;
            done += n;
            data = &data[n..];
            if !data.is_empty() && !wait() {
                break;
            }
        }
        Ok(done)
    }

    /// Bytes written but not yet taken by xenconsoled (wait for 0 before powering off).
    pub fn unsent(&self) -> Result<u32, RingError> {
        OUT.pending(&self.page)
    }

    /// Reads console input.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, RingError> {
        IN.consume(&self.page, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::fake::FakePage;

    /// xenconsoled's side: takes everything in `out`.
    fn drain(page: &FakePage<4096>, into: &mut std::vec::Vec<u8>) {
        let cons = page.read_u32(OUT.cons);
        let prod = page.read_u32(OUT.prod);
        let mut c = cons;
        while c != prod {
            into.push(page.read_u8(OUT.data + crate::ring::slot(c, OUT.size)));
            c = c.wrapping_add(1);
        }
        page.write_u32(OUT.cons, prod);
    }

    #[test]
    fn layout_matches_the_abi() {
        assert_eq!(OUT.data, 1024);
        assert_eq!(OUT.cons, 3080);
        assert_eq!(OUT.prod, 3084);
        assert_eq!(IN.data, 0);
        assert_eq!(IN.cons, 3072);
    }

    #[test]
    fn big_write_goes_through_a_full_ring() {
        let c = ConsoleRing::new(FakePage::<4096>::default());
        let text: std::vec::Vec<u8> = (0..8400u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut seen = std::vec::Vec::new();
        let mut waits = 0;
        let n = c
            .write_all(&text, || {
                waits += 1;
                drain(c.page(), &mut seen);
                true
            })
            .expect("ring ok");
        drain(c.page(), &mut seen);
        assert_eq!(n, text.len());
        assert_eq!(seen, text);
        assert_eq!(waits, 4, "8400 bytes through 2048: four times full");
        assert_eq!(c.unsent(), Ok(0));
    }

    #[test]
    fn giving_up_and_input() {
        let c = ConsoleRing::new(FakePage::<4096>::default());
        let n = c.write_all(&[b'x'; 3000], || false).expect("ok");
        assert_eq!(n, 2048);
        assert_eq!(c.unsent(), Ok(2048));
        // the backend types "hi"
        c.page().write_u8(IN.data, b'h');
        c.page().write_u8(IN.data + 1, b'i');
        c.page().write_u32(IN.prod, 2);
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf), Ok(2));
        assert_eq!(&buf[..2], b"hi");
        // a backend that writes a bogus out_cons cannot make us panic
        c.page().write_u32(OUT.cons, 0x1000_0000);
        assert!(c.write(b"y").is_err());
    }
}
