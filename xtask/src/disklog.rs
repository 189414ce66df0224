//! Write logs of a guest's disk, as QEMU's `blklogwrites` block driver records them (`run
//! --disk-log LOG`, [`crate::qemu::Disk::log`]), and their replay to crash states.
//!
//! # Why
//! Killing QEMU cannot test a missing flush: the guest's writes are in the host's page cache,
//! which survives QEMU, so every completed write is there after the kill, flushed or not. The
//! log says, in order, which writes the guest made and where its flushes were; replaying it to
//! a cut point and dropping the writes no flush covered gives the images a real power cut at
//! that moment could have left, and the filesystem (or app) must be whole in each.
//!
//! # The format (Linux dm-log-writes', which `block/blklogwrites.c` writes; little-endian)
//! - The log is made of sectors of the log's sector size (`log-sector-size`, 512 here).
//! - Sector 0, the superblock: magic `0x6a736677736872` u64, version u64 (1), the number of
//!   entries u64, the sector size u32, zeros. QEMU rewrites it only at a flush (and every
//!   `log-super-update-interval` entries, 4096 by default), so entries after the last flush are
//!   past its count, and a log whose guest never flushed has no superblock yet: sector 0 is
//!   still zeros (the sector size is then taken to be 512, the one xtask asks for).
//! - From sector 1, the entries, each a header sector: sector u64, number of sectors u64,
//!   flags u64 (FLUSH 1, FUA 2, DISCARD 4, MARK 8; METADATA 16 from newer Linux), data length
//!   u64 (a mark's name, inside the header sector), zeros; then, except for a discard, the
//!   write's data, `nr_sectors` whole sectors. Sectors are the log's sector size. QEMU logs a
//!   write of zeros as a write whose data is zeros, a flush as an entry with FLUSH and no data,
//!   and never sets FUA or MARK (Linux does).
//! - QEMU logs a request once the image file has done it and before the guest is told, so the
//!   log's order is the order in which requests completed, and the log file holds an entry
//!   before the guest sees its request complete: a host that reads the log's length when the
//!   guest answers it knows every entry the guest had completed by then.
//!
//! Parsing checks every length and offset against the log: a truncated or corrupt log is an
//! error that says where, never a panic.
//!
//! # Replay and what a cut keeps
//! A cut point `c` is a number of entries: the disk saw entries `0..c`, then lost power. An
//! entry is *covered* at `c` when a FLUSH entry `f` with `i < f < c` follows it (a flush makes
//! durable every write that completed before it was issued; a FLUSH entry's own data, Linux's
//! PREFLUSH write, comes after its flush, so the flush does not cover it), or when it has FUA.
//! Covered entries are on the disk. The others were in a volatile write cache and may each
//! be lost, sector by sector, in any combination ([`Survival`], as `blockdev::fake::Survival`
//! models for the host tests): [`Survival::None`] drops them all, [`Survival::All`] keeps them
//! all, [`Survival::Random`] keeps each sector of each from a seed. Replay applies, in log order,
//! the covered entries and the uncovered sectors kept, over the image the guest started with.
//! A discard is replayed as zeros (QEMU punches a hole in a raw file).
//!
//! This is sound for a guest that issues a flush only once the writes it must cover have
//! completed (Stardust's `BlockIo::flush` does: it runs with no request in flight). A write
//! that completed while a flush was running may be logged before the flush without being
//! covered by it; replay would then treat it as durable.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The superblock's magic number.
pub const MAGIC: u64 = 0x006a_7366_7773_6872;
/// The only format version.
pub const VERSION: u64 = 1;
/// Entry flag: a flush (of every write before the entry).
pub const FLUSH: u64 = 1 << 0;
/// Entry flag: the write itself is durable on completion.
pub const FUA: u64 = 1 << 1;
/// Entry flag: a discard (no data in the log).
pub const DISCARD: u64 = 1 << 2;
/// Entry flag: a mark (a name in the header sector, no data).
pub const MARK: u64 = 1 << 3;
/// Entry flag: the write is metadata (newer Linux; only informative).
pub const METADATA: u64 = 1 << 4;
/// Every flag a log may carry.
const FLAGS: u64 = FLUSH | FUA | DISCARD | MARK | METADATA;
/// Bytes of an entry header (the rest of its sector is zeros, or a mark's name).
const ENTRY_HEADER: usize = 32;
/// The largest sector size taken (Linux logs the device's logical block size, QEMU the
/// `log-sector-size` asked for: 512 or 4096 in practice).
const MAX_SECTOR: u32 = 1 << 16;
/// The sector size xtask asks QEMU for (`log-sector-size=512`), and the one assumed when the
/// superblock was not written yet.
pub const SECTOR: u32 = 512;

/// One entry of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// First sector written (in sectors of the log's sector size).
    pub sector: u64,
    /// Sectors written or discarded.
    pub sectors: u64,
    /// FLUSH, FUA, DISCARD, MARK, METADATA.
    pub flags: u64,
    /// The data's bytes in the log (empty for a discard, a mark or a flush).
    pub data: std::ops::Range<usize>,
    /// A mark's name.
    pub mark: Option<String>,
    /// The log's length up to the end of this entry (the byte after its last sector).
    pub end: u64,
}

impl Entry {
    /// A flush.
    pub fn is_flush(&self) -> bool {
        self.flags & FLUSH != 0
    }

    /// Changes the image (a write or a discard of at least one sector).
    pub fn changes(&self) -> bool {
        self.sectors > 0 && self.flags & MARK == 0
    }
}

/// A parsed write log: the bytes and their entries.
#[derive(Clone)]
pub struct Log {
    bytes: Vec<u8>,
    /// The log's sector size, from its superblock (else [`SECTOR`]).
    pub sector_size: u32,
    /// The entries the superblock counts (0 without a superblock): at least this many are in
    /// the log, and more may follow (written since its last update).
    pub counted: u64,
    /// Every entry, in order.
    pub entries: Vec<Entry>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("bytes", &self.bytes.len())
            .field("sector_size", &self.sector_size)
            .field("counted", &self.counted)
            .field("entries", &self.entries.len())
            .finish()
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Log {
    /// Reads and parses the log file at `path`.
    pub fn read(path: &Path) -> Result<Log> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Log::parse(bytes).with_context(|| format!("write log {}", path.display()))
    }

    /// Parses a whole log. An empty one (the guest never wrote) has no entries.
    pub fn parse(bytes: Vec<u8>) -> Result<Log> {
        let len = bytes.len();
        if len == 0 {
            return Ok(Log {
                bytes,
                sector_size: SECTOR,
                counted: 0,
                entries: Vec::new(),
            });
        }
        if len < SECTOR as usize {
            bail!("truncated: {len} bytes, less than a {SECTOR}-byte superblock");
        }
        let (sector_size, counted) = if bytes[..SECTOR as usize].iter().all(|&b| b == 0) {
            // Not written yet: no flush so far (and fewer entries than the update interval).
            (SECTOR, 0)
        } else {
            let magic = le64(&bytes, 0);
            if magic != MAGIC {
                bail!("not a write log (dm-log-writes/blklogwrites): magic {magic:#x}");
            }
            let version = le64(&bytes, 8);
            if version != VERSION {
                bail!("unsupported version {version} (only {VERSION})");
            }
            let counted = le64(&bytes, 16);
            let size = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
            if !size.is_power_of_two() || !(SECTOR..=MAX_SECTOR).contains(&size) {
                bail!("bad sector size {size} in the superblock (a power of two, 512 to 64 KiB)");
            }
            (size, counted)
        };
        let ss = sector_size as usize;
        if len < ss {
            bail!("truncated: {len} bytes, less than a {ss}-byte superblock");
        }
        let mut entries = Vec::new();
        let mut at = ss;
        while at < len {
            let index = entries.len();
            let Some(head) = bytes.get(at..at + ss) else {
                bail!(
                    "entry {index} at byte {at}: truncated: {} bytes left of its {ss}-byte header",
                    len - at
                );
            };
            let sector = le64(head, 0);
            let sectors = le64(head, 8);
            let flags = le64(head, 16);
            let data_len = le64(head, 24);
            if flags & !FLAGS != 0 {
                bail!("entry {index} at byte {at}: unknown flags {flags:#x}");
            }
            if data_len > (ss - ENTRY_HEADER) as u64 {
                bail!(
                    "entry {index} at byte {at}: a name of {data_len} bytes does not fit its \
                     header sector"
                );
            }
            let mark = (flags & MARK != 0).then(|| {
                String::from_utf8_lossy(&head[ENTRY_HEADER..ENTRY_HEADER + data_len as usize])
                    .into_owned()
            });
            let data_bytes = if flags & (DISCARD | MARK) != 0 {
                0
            } else {
                match sectors.checked_mul(sector_size as u64) {
                    Some(n) if n <= (len - at - ss) as u64 => n as usize,
                    _ => bail!(
                        "entry {index} at byte {at}: truncated: {sectors} sectors of data, {} \
                         bytes left in the log",
                        len - at - ss
                    ),
                }
            };
            if sector.checked_add(sectors).is_none() {
                bail!("entry {index} at byte {at}: sectors {sector}+{sectors} overflow");
            }
            let data = at + ss..at + ss + data_bytes;
            at = data.end;
            entries.push(Entry {
                sector,
                sectors,
                flags,
                data,
                mark,
                end: at as u64,
            });
        }
        if (entries.len() as u64) < counted {
            bail!(
                "truncated: the superblock counts {counted} entries, the log holds {}",
                entries.len()
            );
        }
        Ok(Log {
            bytes,
            sector_size,
            counted,
            entries,
        })
    }

    /// The same log with only the entries `keep` takes (a superblock counting them all): the
    /// tests' negative controls, e.g. a guest whose flushes never happened.
    pub fn filtered(&self, keep: impl Fn(usize, &Entry) -> bool) -> Log {
        let ss = self.sector_size as usize;
        let mut bytes = vec![0u8; ss];
        let mut n = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            if keep(i, e) {
                let head = e.data.start - ss;
                bytes.extend_from_slice(&self.bytes[head..e.data.end]);
                n += 1;
            }
        }
        bytes[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        bytes[8..16].copy_from_slice(&VERSION.to_le_bytes());
        bytes[16..24].copy_from_slice(&n.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.sector_size.to_le_bytes());
        Log::parse(bytes).expect("a log rebuilt from parsed entries parses")
    }

    /// An entry's data.
    pub fn data(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.data.clone()]
    }

    /// The cut points right after each flush: `i + 1` for every FLUSH entry `i`.
    pub fn flush_cuts(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].is_flush())
            .map(|i| i + 1)
            .collect()
    }

    /// The entries a log of `len` bytes held whole: the cut point that a host which read the
    /// log's length `len` (while the guest ran) knows the guest had reached.
    pub fn entries_within(&self, len: u64) -> usize {
        self.entries.partition_point(|e| e.end <= len)
    }

    /// Whether entry `i` is covered (durable) at cut `cut`: a later flush before the cut, or FUA.
    pub fn covered(&self, i: usize, cut: usize) -> bool {
        self.entries[i].flags & FUA != 0
            || self.entries[i + 1..cut.min(self.entries.len())]
                .iter()
                .any(Entry::is_flush)
    }

    /// The number of entries that change the image and are not covered at `cut`: the writes a
    /// power cut there may lose.
    pub fn uncovered(&self, cut: usize) -> usize {
        let durable = self.durable_prefix(cut);
        self.entries[durable..cut]
            .iter()
            .filter(|e| e.changes() && e.flags & FUA == 0)
            .count()
    }

    /// The entries before the last flush before `cut` (all covered at `cut`).
    fn durable_prefix(&self, cut: usize) -> usize {
        self.entries[..cut]
            .iter()
            .rposition(Entry::is_flush)
            .unwrap_or(0)
    }
}

/// `none`, `all` or a seed (a number) as a [`Survival`].
pub fn parse_survival(text: &str) -> Result<Survival> {
    match text {
        "none" => Ok(Survival::None),
        "all" => Ok(Survival::All),
        seed => seed
            .parse()
            .map(Survival::Random)
            .map_err(|_| anyhow::anyhow!("--survival {seed}: `none`, `all` or a seed (a number)")),
    }
}

/// A log as text: the superblock, then one line per entry (index, flags, sectors, the log's
/// length after it).
pub fn format_log(log: &Log) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "write log: {} entries ({} counted by the superblock), {} flushes, sectors of {} bytes\n",
        log.entries.len(),
        log.counted,
        log.flush_cuts().len(),
        log.sector_size
    );
    for (i, e) in log.entries.iter().enumerate() {
        let mut kind = Vec::new();
        for (flag, name) in [
            (FLUSH, "flush"),
            (FUA, "fua"),
            (DISCARD, "discard"),
            (MARK, "mark"),
            (METADATA, "metadata"),
        ] {
            if e.flags & flag != 0 {
                kind.push(name);
            }
        }
        if e.sectors > 0 && e.flags & (DISCARD | MARK) == 0 {
            kind.push("write");
        }
        let _ = write!(out, "{i:>6} {:<12}", kind.join("+"));
        if e.sectors > 0 {
            let _ = write!(out, " sectors {}..{}", e.sector, e.sector + e.sectors);
        }
        if let Some(mark) = &e.mark {
            let _ = write!(out, " {mark:?}");
        }
        let _ = writeln!(out, " (log {} bytes)", e.end);
    }
    out
}

/// Which writes no flush covered survive a cut (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survival {
    /// All of them: the disk wrote its cache back before the power went.
    All,
    /// None of them: the cache was lost whole.
    None,
    /// Each sector of each of them, independently, from the seed.
    Random(u64),
}

/// A seeded generator (splitmix64) for [`Survival::Random`] and the tests' cut points.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// From `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Replays a log over the image the guest started with, cut after cut in increasing order: it
/// keeps the image of the entries before the last flush, so each cut costs only its tail.
#[derive(Debug)]
pub struct Replayer<'a> {
    log: &'a Log,
    durable: Vec<u8>,
    /// Entries applied to `durable`.
    applied: usize,
}

impl<'a> Replayer<'a> {
    /// Over `base` (the image before the guest's first write; its length is the disk's).
    pub fn new(log: &'a Log, base: Vec<u8>) -> Result<Replayer<'a>> {
        if !base.len().is_multiple_of(log.sector_size as usize) {
            bail!(
                "the image's {} bytes are not whole {}-byte sectors",
                base.len(),
                log.sector_size
            );
        }
        // Every entry in range of the disk, before any replay.
        let sectors = (base.len() / log.sector_size as usize) as u64;
        for (i, e) in log.entries.iter().enumerate() {
            if e.changes() && e.sector + e.sectors > sectors {
                bail!(
                    "entry {i} writes sectors {}..{} of a disk of {sectors}",
                    e.sector,
                    e.sector + e.sectors
                );
            }
        }
        Ok(Replayer {
            log,
            durable: base,
            applied: 0,
        })
    }

    /// The image at `cut` (at most the log's entries; not below an earlier call's durable
    /// prefix: cuts go in increasing order) with the uncovered writes that `survival` keeps.
    pub fn image(&mut self, cut: usize, survival: Survival) -> Result<Vec<u8>> {
        let overlay = self.overlay(cut, survival)?;
        let mut image = self.durable.clone();
        let ss = self.log.sector_size as usize;
        for (sector, data) in overlay {
            let at = sector as usize * ss;
            image[at..at + ss].copy_from_slice(data);
        }
        Ok(image)
    }

    /// Like [`Replayer::image`], as sectors over the durable image: a read-only `BlockIo`
    /// without copying the image.
    pub fn disk(&mut self, cut: usize, survival: Survival) -> Result<ReplayedDisk<'_>> {
        let overlay = self.overlay(cut, survival)?;
        Ok(ReplayedDisk {
            durable: &self.durable,
            overlay,
            sector_size: self.log.sector_size as usize,
        })
    }

    fn overlay(&mut self, cut: usize, survival: Survival) -> Result<BTreeMap<u64, &'a [u8]>> {
        let log = self.log;
        if cut > log.entries.len() {
            bail!("cut {cut} is past the log's {} entries", log.entries.len());
        }
        let durable = log.durable_prefix(cut);
        if durable < self.applied {
            bail!(
                "cut {cut} is before the last one's flush (entry {}): cuts go in order",
                self.applied
            );
        }
        let ss = log.sector_size as usize;
        for e in &log.entries[self.applied..durable] {
            apply(&mut self.durable, log, e, ss);
        }
        self.applied = durable;
        let mut rng = match survival {
            Survival::Random(seed) => Some(Rng::new(seed)),
            _ => None,
        };
        let mut overlay = BTreeMap::new();
        static ZEROS: [u8; MAX_SECTOR as usize] = [0; MAX_SECTOR as usize];
        for e in &log.entries[durable..cut] {
            if !e.changes() {
                continue;
            }
            let fua = e.flags & FUA != 0;
            let keep = |rng: &mut Option<Rng>| {
                fua || match survival {
                    Survival::All => true,
                    Survival::None => false,
                    Survival::Random(_) => rng.as_mut().is_some_and(|r| r.next_u64() & 1 == 1),
                }
            };
            for k in 0..e.sectors {
                if keep(&mut rng) {
                    let data: &'a [u8] = if e.flags & DISCARD != 0 {
                        &ZEROS[..ss]
                    } else {
                        let at = e.data.start + k as usize * ss;
                        &log.bytes[at..at + ss]
                    };
                    overlay.insert(e.sector + k, data);
                }
            }
        }
        Ok(overlay)
    }
}

/// Applies entry `e` to `image` (whose range [`Replayer::new`] checked).
fn apply(image: &mut [u8], log: &Log, e: &Entry, ss: usize) {
    if !e.changes() {
        return;
    }
    for k in 0..e.sectors {
        let at = (e.sector + k) as usize * ss;
        if e.flags & DISCARD != 0 {
            image[at..at + ss].fill(0);
        } else {
            let from = e.data.start + k as usize * ss;
            image[at..at + ss].copy_from_slice(&log.bytes[from..from + ss]);
        }
    }
}

/// A replayed image as a read-only disk ([`blockdev::BlockIo`]): the durable image and, over
/// it, the sectors of the uncovered writes kept. Blocks are the log's sectors.
#[derive(Debug)]
pub struct ReplayedDisk<'a> {
    durable: &'a [u8],
    overlay: BTreeMap<u64, &'a [u8]>,
    sector_size: usize,
}

impl blockdev::BlockIo for ReplayedDisk<'_> {
    fn info(&self) -> blockdev::Info {
        blockdev::Info {
            block_size: self.sector_size as u32,
            blocks: (self.durable.len() / self.sector_size) as u64,
            read_only: true,
            flush: true,
            max_request_blocks: 1 << 16,
            max_in_flight: 1,
        }
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), blockdev::Error> {
        let ss = self.sector_size;
        let count = buf.len() / ss;
        if buf.is_empty() || !buf.len().is_multiple_of(ss) {
            return Err(blockdev::Error::BadLength { len: buf.len() });
        }
        let blocks = (self.durable.len() / ss) as u64;
        if block
            .checked_add(count as u64)
            .is_none_or(|end| end > blocks)
        {
            return Err(blockdev::Error::OutOfRange {
                block,
                count: u32::try_from(count).unwrap_or(u32::MAX),
            });
        }
        for (k, chunk) in buf.chunks_mut(ss).enumerate() {
            let s = block + k as u64;
            match self.overlay.get(&s) {
                Some(data) => chunk.copy_from_slice(data),
                None => {
                    let at = s as usize * ss;
                    chunk.copy_from_slice(&self.durable[at..at + ss]);
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, _block: u64, _buf: &[u8]) -> Result<(), blockdev::Error> {
        Err(blockdev::Error::ReadOnly)
    }

    fn flush(&mut self) -> Result<(), blockdev::Error> {
        Ok(())
    }
}

/// A disk in memory that records its writes and flushes as `blklogwrites` does (512-byte
/// sectors, the superblock rewritten at each flush): host tests of the replay over a real
/// filesystem, and of the parser.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// The disk's bytes.
    pub image: Vec<u8>,
    /// The log so far.
    pub log: Vec<u8>,
    entries: u64,
}

impl Recorder {
    /// Over `image`, with a new log.
    pub fn new(image: Vec<u8>) -> Recorder {
        Recorder {
            image,
            log: vec![0; SECTOR as usize],
            entries: 0,
        }
    }

    /// Appends an entry (header, then `data`).
    pub fn entry(&mut self, sector: u64, sectors: u64, flags: u64, data: &[u8]) {
        let mut head = [0u8; SECTOR as usize];
        head[0..8].copy_from_slice(&sector.to_le_bytes());
        head[8..16].copy_from_slice(&sectors.to_le_bytes());
        head[16..24].copy_from_slice(&flags.to_le_bytes());
        self.log.extend_from_slice(&head);
        self.log.extend_from_slice(data);
        self.entries += 1;
        if flags & FLUSH != 0 {
            self.log[0..8].copy_from_slice(&MAGIC.to_le_bytes());
            self.log[8..16].copy_from_slice(&VERSION.to_le_bytes());
            self.log[16..24].copy_from_slice(&self.entries.to_le_bytes());
            self.log[24..28].copy_from_slice(&SECTOR.to_le_bytes());
        }
    }
}

impl blockdev::BlockIo for Recorder {
    fn info(&self) -> blockdev::Info {
        blockdev::Info {
            block_size: SECTOR,
            blocks: self.image.len() as u64 / u64::from(SECTOR),
            read_only: false,
            flush: true,
            max_request_blocks: 1 << 16,
            max_in_flight: 1,
        }
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), blockdev::Error> {
        let at = block as usize * SECTOR as usize;
        match self.image.get(at..at + buf.len()) {
            Some(data) => {
                buf.copy_from_slice(data);
                Ok(())
            }
            None => Err(blockdev::Error::OutOfRange {
                block,
                count: u32::try_from(buf.len() / SECTOR as usize).unwrap_or(u32::MAX),
            }),
        }
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), blockdev::Error> {
        let at = block as usize * SECTOR as usize;
        if !buf.len().is_multiple_of(SECTOR as usize) {
            return Err(blockdev::Error::BadLength { len: buf.len() });
        }
        match self.image.get_mut(at..at + buf.len()) {
            Some(data) => data.copy_from_slice(buf),
            None => {
                return Err(blockdev::Error::OutOfRange {
                    block,
                    count: u32::try_from(buf.len() / SECTOR as usize).unwrap_or(u32::MAX),
                });
            }
        }
        self.entry(block, buf.len() as u64 / u64::from(SECTOR), 0, buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), blockdev::Error> {
        self.entry(0, 0, FLUSH, &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
