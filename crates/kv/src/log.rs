//! The write log's records: what a write command changed ([`Mutation`]), and their framing on
//! disk ([`encode`], [`Records`]).
//!
//! # Framing
//!
//! Each record is `length: u32 LE | crc: u32 LE | payload`, where `length` counts the payload's
//! bytes and `crc` is the CRC-32 (IEEE 802.3, the one of zlib and Ethernet) of the payload. The
//! payload is a tag byte then the fields, every byte string as `u32 LE length | bytes`:
//!
//! | tag | record | fields |
//! | --- | --- | --- |
//! | 1 | `Set` | key, value, `0` or `1` + expiry (`u64 LE`, Unix milliseconds) |
//! | 2 | `MSet` | count (`u32 LE`), then key, value per pair |
//! | 3 | `Del` | count (`u32 LE`), then the keys |
//! | 4 | `FlushAll` | nothing |
//!
//! # Reading a log back
//!
//! [`Records`] yields the records in order and stops at the first one that is not whole and
//! intact: a length running past the end (a torn write at the tail), a CRC that does not match,
//! or a payload that does not decode (a corrupt record, or one written by a future version).
//! [`Records::end`] then says why and where the valid prefix ends, so that the caller can
//! truncate the log there before appending again. Nothing is allocated before a record's CRC is
//! checked, so a corrupt length cannot ask for memory.

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{
    AtomicBool, AtomicU32, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

/// One change to the store, as a write command made it. Replaying a log's mutations in order
/// into an empty [`Engine`](crate::Engine) (with [`Engine::apply`](crate::Engine::apply))
/// rebuilds the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// `key` now holds `value`, expiring at `expire_at` (Unix milliseconds) if given.
    Set {
        /// The key.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
        /// When it expires (absolute, so a replay after a restart expires it at the same time).
        expire_at: Option<u64>,
    },
    /// Several keys set at once, without expiry (`MSET`): one record, so it is all or nothing.
    MSet {
        /// `(key, value)` in command order (a later pair wins over an earlier one).
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// These keys were removed (only those that existed).
    Del {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// Every key was removed.
    FlushAll,
}

const TAG_SET: u8 = 1;
const TAG_MSET: u8 = 2;
const TAG_DEL: u8 = 3;
const TAG_FLUSHALL: u8 = 4;

/// Bytes of a record's header (length and CRC).
pub const HEADER: usize = 8;

/// Appends `m`'s record (header and payload) to `out`.
pub fn encode(m: &Mutation, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    match m {
        Mutation::Set {
            key,
            value,
            expire_at,
        } => {
            out.push(TAG_SET);
            bytes(out, key);
            bytes(out, value);
            match expire_at {
                None => out.push(0),
                Some(t) => {
                    out.push(1);
                    out.extend_from_slice(&t.to_le_bytes());
                }
            }
        }
        Mutation::MSet { pairs } => {
            out.push(TAG_MSET);
            out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
            for (k, v) in pairs {
                bytes(out, k);
                bytes(out, v);
            }
        }
        Mutation::Del { keys } => {
            out.push(TAG_DEL);
            out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
            for k in keys {
                bytes(out, k);
            }
        }
        Mutation::FlushAll => out.push(TAG_FLUSHALL),
    }
    let payload = &out[start + HEADER..];
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + HEADER].copy_from_slice(&crc);
}

/// Why [`Records`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Still reading (the iterator has not ended yet).
    NotYet,
    /// The log ended exactly after a whole record (or is empty).
    Clean,
    /// The last record runs past the end of the log: a write torn by a crash.
    Torn {
        /// Where the torn record starts (the valid prefix's length).
        at: usize,
    },
    /// A record's CRC does not match or its payload does not decode.
    Corrupt {
        /// Where the bad record starts (the valid prefix's length).
        at: usize,
    },
}

impl End {
    /// The length of the valid prefix, once ended (`None` while still reading).
    pub fn valid_len(&self, log_len: usize) -> Option<usize> {
        match *self {
            End::NotYet => None,
            End::Clean => Some(log_len),
            End::Torn { at } | End::Corrupt { at } => Some(at),
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::NotYet => f.write_str("not ended"),
            End::Clean => f.write_str("clean end"),
            End::Torn { at } => write!(f, "torn record at byte {at}"),
            End::Corrupt { at } => write!(f, "corrupt record at byte {at}"),
        }
    }
}

/// The records of a log, in order (see the module docs).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    log: &'a [u8],
    pos: usize,
    end: End,
}

impl<'a> Records<'a> {
    /// Reads `log` from its start.
    pub fn new(log: &'a [u8]) -> Self {
        Records {
            log,
            pos: 0,
            end: End::NotYet,
        }
    }

    /// Why reading stopped ([`End::NotYet`] before the iterator returned `None`).
    pub fn end(&self) -> End {
        self.end
    }

    /// Bytes of whole, intact records read so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for Records<'_> {
    type Item = Mutation;

    fn next(&mut self) -> Option<Mutation> {
        if self.end != End::NotYet {
            return None;
        }
        let rest = &self.log[self.pos..];
        if rest.is_empty() {
            self.end = End::Clean;
            return None;
        }
        let at = self.pos;
        let Some(header) = rest.get(..HEADER) else {
            self.end = End::Torn { at };
            return None;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = rest.get(HEADER..HEADER.saturating_add(len)) else {
            self.end = End::Torn { at };
            return None;
        };
        if crc32(payload) != crc {
            self.end = End::Corrupt { at };
            return None;
        }
        match decode_payload(payload) {
            Some(m) => {
                self.pos += HEADER + len;
                Some(m)
            }
            None => {
                self.end = End::Corrupt { at };
                None
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
    /// A count of items of at least `min_item` bytes each, checked against what is left.
    fn count(&mut self, min_item: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.checked_mul(min_item)? <= self.0.len()).then_some(n)
    }
}

fn decode_payload(payload: &[u8]) -> Option<Mutation> {
    let mut r = Reader(payload);
    let m = match r.u8()? {
        TAG_SET => {
            let key = r.bytes()?;
            let value = r.bytes()?;
            let expire_at = match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return None,
            };
            Mutation::Set {
                key,
                value,
                expire_at,
            }
        }
        TAG_MSET => {
            let n = r.count(8)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let k = r.bytes()?;
                let v = r.bytes()?;
                pairs.push((k, v));
            }
            Mutation::MSet { pairs }
        }
        TAG_DEL => {
            let n = r.count(4)?;
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(r.bytes()?);
            }
            Mutation::Del { keys }
        }
        TAG_FLUSHALL => Mutation::FlushAll,
        _ => return None,
    };
    // Trailing bytes: not a record this version wrote.
    r.0.is_empty().then_some(m)
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU32 = AtomicU32::new(0);

/// Filled on first use into a zeroed static (`.bss`) rather than built into the image's
/// read-only data (1 KiB less image); `CRC_READY` publishes it. Racing fillers store the same
/// values.
static CRC_TABLE: [AtomicU32; 256] = [ZERO; 256];
static CRC_READY: AtomicBool = AtomicBool::new(false);

#[cold]
fn crc_fill() {
    for (i, e) in CRC_TABLE.iter().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        e.store(c, Relaxed);
    }
    CRC_READY.store(true, Release);
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xedb88320): `crc32(b"123456789") == 0xcbf43926`.
pub fn crc32(data: &[u8]) -> u32 {
    if !CRC_READY.load(Acquire) {
        crc_fill();
    }
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize].load(Relaxed) ^ (c >> 8);
    }
    !c
}
