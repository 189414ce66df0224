//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as iSCSI, ext4 and btrfs use it:
//! slicing-by-8, no dependency. The tables (8 KiB) are filled on first use into zeroed statics
//! (`.bss`), not built at compile time into the image's read-only data: 8 KiB less image, the
//! same tables and speed (their loads are relaxed atomic loads, plain moves).

use core::sync::atomic::{
    AtomicBool, AtomicU32, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

const POLY: u32 = 0x82f6_3b78;

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU32 = AtomicU32::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZEROS: [AtomicU32; 256] = [ZERO; 256];

static TABLES: [[AtomicU32; 256]; 8] = [ZEROS; 8];
static READY: AtomicBool = AtomicBool::new(false);

/// The tables, filled first if they are not yet. Threads racing here all store the same
/// values, so a second filler is harmless; `READY` publishes them.
#[inline]
fn tables() -> &'static [[AtomicU32; 256]; 8] {
    if !READY.load(Acquire) {
        fill();
    }
    &TABLES
}

#[cold]
fn fill() {
    let t = &TABLES;
    for (i, e) in t[0].iter().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
        }
        e.store(c, Relaxed);
    }
    for i in 0..256 {
        for s in 1..8 {
            let prev = t[s - 1][i].load(Relaxed);
            t[s][i].store(
                (prev >> 8) ^ t[0][(prev & 0xff) as usize].load(Relaxed),
                Relaxed,
            );
        }
    }
    READY.store(true, Release);
}

/// The CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let t = tables();
    let e = |s: usize, i: u32| t[s][i as usize].load(Relaxed);
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = e(7, lo & 0xff)
            ^ e(6, (lo >> 8) & 0xff)
            ^ e(5, (lo >> 16) & 0xff)
            ^ e(4, lo >> 24)
            ^ e(3, hi & 0xff)
            ^ e(2, (hi >> 8) & 0xff)
            ^ e(1, (hi >> 16) & 0xff)
            ^ e(0, hi >> 24);
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ e(0, (crc ^ b as u32) & 0xff);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::crc32c;

    #[test]
    fn known_values() {
        // RFC 3720 B.4 and the usual check value.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(crc32c(&inc), 0x46dd_794e);
        assert_eq!(crc32c(b""), 0);
        // every split of the fast loop agrees with the byte loop
        for n in 0..20 {
            let v: alloc::vec::Vec<u8> = (0..n).map(|i| (i * 37 + 5) as u8).collect();
            let mut crc = !0u32;
            for &b in &v {
                crc = (crc >> 8)
                    ^ super::tables()[0][((crc ^ b as u32) & 0xff) as usize].load(super::Relaxed);
            }
            assert_eq!(crc32c(&v), !crc);
        }
    }
}
