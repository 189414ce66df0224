//! The filesystem: mount (and format), the operations, sync.

use crate::format::{
    BLOCK, ENTRY_SIZE, Entry, FANOUT, INODE_SIZE, INODES_PER_BLOCK, MAX_HEIGHT, MIN_BLOCKS, Ptr,
    ROOT, Record, SlotError, Super, capacity, check_name,
};
use crate::store::{Bitmap, Store, Written, zeroed};
use crate::tree::{Tree, walk};
use crate::{Corruption, Error, Kind};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use blockdev::BlockIo;

/// Dirty blocks kept free for changes of metadata (create, rename, remove, truncate), so that
/// a disk that data filled can still be cleaned up: an upper bound of what one such change
/// dirties (two directories and three inode records, each a path of at most 5 nodes, twice
/// where a directory entry moves, plus growth).
const META_COST: u64 = 48;

/// Blocks past the superblocks that must be zero for a disk to count as blank (besides the
/// last block): the first 256 KiB but block 2, the only block a format writes before it
/// commits, so a format cut short is formatted again.
const BLANK_SCAN: u64 = 64;

/// A handle to a file or directory: its inode and the inode's id, so a handle to a removed
/// file is refused ([`Error::NotFound`]) even once its inode is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    ino: u32,
    id: u64,
}

/// What a file or directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// File or directory.
    pub kind: Kind,
    /// Bytes of a file; entries of a directory.
    pub size: u64,
}

/// A directory entry, as [`Filesystem::list`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name.
    pub name: String,
    /// File or directory.
    pub kind: Kind,
    /// Bytes of a file; entries of a directory.
    pub size: u64,
}

/// What a mount found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mounted {
    /// The disk was blank and has just been formatted.
    pub formatted: bool,
    /// The generation mounted (commits since the format).
    pub generation: u64,
    /// Blocks of 4096 bytes the filesystem spans.
    pub blocks: u64,
    /// The disk is read-only: changes are refused.
    pub read_only: bool,
    /// The generation of a commit that was cut short (its superblock was written, not every
    /// block of its run), passed over for the one before it; `None` after a clean stop.
    pub dropped: Option<u64>,
}

/// Space, in blocks of 4096 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Blocks the filesystem spans.
    pub blocks: u64,
    /// Blocks in use: the committed tree, blocks written by the running sync, and blocks freed
    /// since the last sync (free once the next sync commits).
    pub used: u64,
    /// Blocks changed in memory, which the next sync writes to free blocks.
    pub dirty: u64,
    /// Blocks freed since the last sync.
    pub freed: u64,
}

/// The state of a superblock slot, for [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A valid superblock of this generation.
    Valid(u64),
    /// Never written.
    Blank,
    /// Not ours.
    Foreign,
    /// A bad checksum (a superblock write cut short, or damage).
    BadChecksum,
    /// Another version.
    Version(u32),
    /// Checksummed, but impossible.
    Invalid,
    /// A superblock of this generation whose commit was cut short: not every block of its
    /// run reached the disk (the other slot is the filesystem; mount zeroes this one).
    Torn(u64),
}

/// An fsck-style report of a filesystem that checked out ([`check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The two superblock slots.
    pub slots: [Slot; 2],
    /// The generation the valid superblock with the highest one holds.
    pub generation: u64,
    /// Blocks the filesystem spans.
    pub blocks: u64,
    /// Blocks in use (both superblock slots included).
    pub used: u64,
    /// Files.
    pub files: u64,
    /// Directories (the root included).
    pub dirs: u64,
    /// Bytes in files.
    pub bytes: u64,
    /// Inode records in the table (free ones included).
    pub inodes: u64,
    /// Data blocks whose checksum was checked (all of them).
    pub data_blocks: u64,
}

/// An inode being changed, with its tree in memory.
#[derive(Debug)]
struct Inode {
    kind: Kind,
    id: u64,
    size: u64,
    tree: Tree,
}

/// The inodes changed since the last sync, by number: a sorted `Vec` rather than a `BTreeMap`
/// (a sync's worth of changed inodes is few; and the image carries no B-tree code, 10 KiB).
#[derive(Debug, Default)]
struct OpenInodes(Vec<(u32, Inode)>);

impl OpenInodes {
    fn find(&self, ino: u32) -> Result<usize, usize> {
        self.0.binary_search_by_key(&ino, |e| e.0)
    }
    fn get(&self, ino: &u32) -> Option<&Inode> {
        self.find(*ino).ok().map(|i| &self.0[i].1)
    }
    fn get_mut(&mut self, ino: &u32) -> Option<&mut Inode> {
        self.find(*ino).ok().map(|i| &mut self.0[i].1)
    }
    fn contains_key(&self, ino: &u32) -> bool {
        self.find(*ino).is_ok()
    }
    fn insert(&mut self, ino: u32, inode: Inode) {
        match self.find(ino) {
            Ok(i) => self.0[i].1 = inode,
            Err(i) => self.0.insert(i, (ino, inode)),
        }
    }
    fn remove(&mut self, ino: &u32) -> Option<Inode> {
        self.find(*ino).ok().map(|i| self.0.remove(i).1)
    }
    fn keys(&self) -> impl Iterator<Item = &u32> {
        self.0.iter().map(|e| &e.0)
    }
    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &Inode> {
        self.0.iter().map(|e| &e.1)
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The free inode records below the end of the table: a `Vec` in decreasing order, so that
/// the lowest, the next one reused, is last.
#[derive(Debug, Default)]
struct FreeInodes(Vec<u32>);

impl FreeInodes {
    fn find(&self, ino: u32) -> Result<usize, usize> {
        self.0.binary_search_by(|e| ino.cmp(e))
    }
    fn pop_first(&mut self) -> Option<u32> {
        self.0.pop()
    }
    fn insert(&mut self, ino: u32) {
        if let Err(i) = self.find(ino) {
            self.0.insert(i, ino);
        }
    }
    fn contains(&self, ino: &u32) -> bool {
        self.find(*ino).is_ok()
    }
    fn retain(&mut self, f: impl FnMut(&u32) -> bool) {
        self.0.retain(f);
    }
}

/// A mounted filesystem over a [`BlockIo`]. Not thread-safe by itself: the caller keeps it
/// behind a lock; it is `Send` when the device is.
#[derive(Debug)]
pub struct Filesystem<D> {
    store: Store<D>,
    generation: u64,
    next_id: u64,
    table: Tree,
    table_size: u64,
    /// Inodes changed since the last sync.
    open: OpenInodes,
    /// Free records below the end of the table.
    free_inodes: FreeInodes,
    read_only: bool,
    poisoned: bool,
    changed: bool,
}

/// Checks the filesystem on `dev` as a mount does, and every data block's checksum too:
/// an fsck-style report, or the first thing wrong. Never writes.
pub fn check<D: BlockIo>(dev: D) -> Result<Report, Error> {
    let (scale, blocks) = geometry(&dev)?;
    let mut store = Store::new(dev, scale, blocks);
    let (slots, sb) = read_supers(&mut store)?;
    let sb = match sb {
        Some(sb) => sb,
        None => return Err(no_super(&slots)),
    };
    let (_, report) = load(store.dev, scale, sb, true, slots)?;
    Ok(report)
}

fn geometry<D: BlockIo>(dev: &D) -> Result<(u64, u64), Error> {
    let info = dev.info();
    if !info.is_valid() || !BLOCK.is_multiple_of(info.block_size as usize) {
        return Err(Error::Geometry);
    }
    let scale = (BLOCK / info.block_size as usize) as u64;
    let blocks = (info.blocks / scale).min(u64::from(u32::MAX));
    if blocks < MIN_BLOCKS {
        return Err(Error::TooSmall {
            blocks: MIN_BLOCKS as u32,
            disk_blocks: blocks as u32, // capped at u32::MAX above
        });
    }
    Ok((scale, blocks))
}

fn slot_of(r: &Result<Super, SlotError>) -> Slot {
    match r {
        Ok(sb) => Slot::Valid(sb.generation),
        Err(SlotError::Blank) => Slot::Blank,
        Err(SlotError::Foreign) => Slot::Foreign,
        Err(SlotError::Checksum) => Slot::BadChecksum,
        Err(SlotError::Version(v)) => Slot::Version(*v),
        Err(SlotError::Invalid(_)) => Slot::Invalid,
        Err(SlotError::Torn(g)) => Slot::Torn(*g),
    }
}

/// Reads both slots: their states and the superblock to mount (the valid one with the highest
/// generation).
#[allow(clippy::type_complexity)]
fn read_supers<D: BlockIo>(
    store: &mut Store<D>,
) -> Result<([Result<Super, SlotError>; 2], Option<Super>), Error> {
    let mut b = zeroed();
    store.read_raw(0, &mut b[..])?;
    let s0 = Super::decode(&b[..], store.blocks);
    store.read_raw(1, &mut b[..])?;
    let s1 = Super::decode(&b[..], store.blocks);
    // A slot whose checksum holds but whose values do not is damage, not a cut-short commit:
    // refused rather than passed over for the other.
    for s in [&s0, &s1] {
        match s {
            Err(SlotError::Invalid(e)) => return Err(*e),
            Err(SlotError::Version(v)) => return Err(Error::Version { found: *v }),
            _ => {}
        }
    }
    let mut slots = [s0, s1];
    // The newest first; one whose run did not all reach the disk gives way to the other.
    let order = match &slots {
        [Ok(a), Ok(b)] if b.generation > a.generation => [1, 0],
        _ => [0, 1],
    };
    for i in order {
        if let Ok(sb) = slots[i] {
            if let Some(run) = sb.run
                && !store.run_intact(&run)?
            {
                slots[i] = Err(SlotError::Torn(sb.generation));
                continue;
            }
            return Ok((slots, Some(sb)));
        }
    }
    Ok((slots, None))
}

/// The error for two slots neither of which holds a superblock, after [`read_supers`] (which
/// returned the error of an invalid slot or another version itself): each is blank, foreign,
/// of a bad checksum, or a commit whose run did not all reach the disk.
fn no_super(slots: &[Result<Super, SlotError>; 2]) -> Error {
    if slots.iter().any(|s| matches!(s, Err(SlotError::Torn(_)))) {
        Error::Corrupt(Corruption::BadSuper(crate::Fault::RunLost))
    } else if slots.iter().any(|s| matches!(s, Err(SlotError::Checksum))) {
        Error::SuperChecksum
    } else {
        Error::NotStardust
    }
}

fn is_blank<D: BlockIo>(store: &mut Store<D>) -> Result<bool, Error> {
    let mut b = zeroed();
    let n = store.blocks;
    let scan = (0..BLANK_SCAN.min(n)).filter(|&i| i != 2).chain([n - 1]);
    for i in scan {
        store.read_raw(i, &mut b[..])?;
        if b.iter().any(|&x| x != 0) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Mounts a filesystem from a superblock: walks and checks every tree, and builds the map of
/// used blocks and the free inodes. Work is bounded by the disk: every block is visited at most
/// once (a second visit is corruption), every directory entry at most once.
fn load<D: BlockIo>(
    dev: D,
    scale: u64,
    sb: Super,
    verify_data: bool,
    slots: [Result<Super, SlotError>; 2],
) -> Result<(Filesystem<D>, Report), Error> {
    let mut store = Store::new(dev, scale, sb.blocks);
    let mut mark = |store: &mut Store<D>, block: u32| {
        if store.mark(block) {
            Ok(())
        } else {
            Err(Error::Corrupt(Corruption::DoubleUse { block }))
        }
    };
    // The inode table: a kind byte per record, leaf by leaf (so memory follows blocks that exist).
    let t = sb.table;
    let count = t.size / INODE_SIZE as u64;
    let mut kinds: Vec<u8> = Vec::new();
    walk(
        &mut store,
        t.root,
        t.height,
        t.size,
        &mut mark,
        &mut |store, idx, p| {
            if idx * INODES_PER_BLOCK as u64 != kinds.len() as u64 {
                return Err(Error::Corrupt(Corruption::Hole));
            }
            let b = store.load(p)?;
            for i in 0..INODES_PER_BLOCK {
                if kinds.len() as u64 >= count {
                    break;
                }
                let r = Record::decode(&b[i * INODE_SIZE..], store.blocks, false)?;
                kinds.push(match r.kind {
                    None => 0,
                    Some(Kind::File) => 1,
                    Some(Kind::Dir) => 2,
                });
            }
            Ok(())
        },
    )?;
    if kinds.len() as u64 != count {
        return Err(Error::Corrupt(Corruption::Hole));
    }
    if kinds.first() != Some(&2) {
        return Err(Error::Corrupt(Corruption::BadRoot));
    }
    let table = Tree::new(t.height, t.root);
    let read_record = |store: &mut Store<D>, ino: u32| -> Result<Record, Error> {
        let mut b = zeroed();
        let off = ino as usize * INODE_SIZE;
        table.read_leaf(store, (off / BLOCK) as u64, &mut b)?;
        Record::decode(&b[off % BLOCK..], store.blocks, false)
    };
    // The directories, from the root, each inode once.
    let mut seen = Bitmap::new(count);
    seen.set(0);
    let mut queue = vec![ROOT];
    let (mut files, mut dirs, mut bytes, mut data_blocks) = (0u64, 0u64, 0u64, 0u64);
    while let Some(ino) = queue.pop() {
        let r = read_record(&mut store, ino)?;
        bytes += if r.kind == Some(Kind::File) {
            r.size
        } else {
            0
        };
        if r.kind == Some(Kind::File) {
            files += 1;
            walk(
                &mut store,
                r.root,
                r.height,
                r.size,
                &mut mark,
                &mut |store, _, p| {
                    if verify_data {
                        store.load(p)?;
                        data_blocks += 1;
                    }
                    Ok(())
                },
            )?;
            continue;
        }
        dirs += 1;
        let entries = r.size / ENTRY_SIZE as u64;
        let mut names: Vec<String> = Vec::new();
        let mut next_leaf = 0u64;
        walk(
            &mut store,
            r.root,
            r.height,
            r.size,
            &mut mark,
            &mut |store, idx, p| {
                if idx != next_leaf {
                    return Err(Error::Corrupt(Corruption::Hole));
                }
                next_leaf += 1;
                let b = store.load(p)?;
                let first = idx * (BLOCK / ENTRY_SIZE) as u64;
                for i in 0..(BLOCK / ENTRY_SIZE) as u64 {
                    if first + i >= entries {
                        break;
                    }
                    let e = Entry::decode(&b[i as usize * ENTRY_SIZE..])?;
                    let k = kinds.get(e.ino as usize).copied().unwrap_or(0);
                    if k == 0 {
                        return Err(Error::Corrupt(Corruption::Dangling { ino: e.ino }));
                    }
                    if seen.get(u64::from(e.ino)) {
                        return Err(Error::Corrupt(Corruption::Linked { ino: e.ino }));
                    }
                    seen.set(u64::from(e.ino));
                    names.push(e.name.to_string());
                    queue.push(e.ino);
                }
                Ok(())
            },
        )?;
        if next_leaf != r.size.div_ceil(BLOCK as u64) {
            return Err(Error::Corrupt(Corruption::Hole));
        }
        heapsort(&mut names);
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Corrupt(Corruption::DuplicateName));
        }
    }
    let mut free_inodes = FreeInodes::default();
    for (i, &k) in kinds.iter().enumerate() {
        if k == 0 {
            free_inodes.0.push(i as u32);
        } else if !seen.get(i as u64) {
            return Err(Error::Corrupt(Corruption::Orphan { ino: i as u32 }));
        }
    }
    free_inodes.0.reverse();
    let report = Report {
        slots: [slot_of(&slots[0]), slot_of(&slots[1])],
        generation: sb.generation,
        blocks: sb.blocks,
        used: store.used_blocks(),
        files,
        dirs,
        bytes,
        inodes: count,
        data_blocks,
    };
    let info = store.dev.info();
    let fs = Filesystem {
        store,
        generation: sb.generation,
        next_id: sb.next_id,
        table,
        table_size: t.size,
        open: OpenInodes::default(),
        free_inodes,
        read_only: info.read_only || !info.flush,
        poisoned: false,
        changed: false,
    };
    Ok((fs, report))
}

/// Sorts `v`: a heapsort, O(n log n) without allocating, in a few hundred bytes of code
/// (`sort_unstable` would bring 4 KiB into the image for this one use, a check at mount).
pub(crate) fn heapsort(v: &mut [String]) {
    fn sift_down(v: &mut [String], mut root: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= v.len() {
                return;
            }
            if child + 1 < v.len() && v[child] < v[child + 1] {
                child += 1;
            }
            if v[root] >= v[child] {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    for i in (0..v.len() / 2).rev() {
        sift_down(v, i);
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(&mut v[..end], 0);
    }
}

/// Splits a path into its names (`/a/b`, `a/b/` and `a//b` are the same; `` and `/` the root).
fn split(path: &str) -> Result<Vec<&str>, Error> {
    let names: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for n in &names {
        check_name(n)?;
    }
    Ok(names)
}

impl<D: BlockIo> Filesystem<D> {
    /// Mounts the filesystem on `dev`, after checking all of its metadata. A blank disk (zero
    /// in both superblock slots and the rest of its first 256 KiB, but block 2, and in its
    /// last block) is formatted ([`Mounted::formatted`]). Anything else that does not mount is
    /// refused with the reason, and nothing is written to it.
    pub fn mount(dev: D) -> Result<(Self, Mounted), Error> {
        let (scale, blocks) = geometry(&dev)?;
        let mut store = Store::new(dev, scale, blocks);
        let (slots, sb) = read_supers(&mut store)?;
        let Some(sb) = sb else {
            let blank = matches!(slots, [Err(SlotError::Blank), Err(SlotError::Blank)]);
            if blank && is_blank(&mut store)? {
                return Self::format(store.dev, scale, blocks);
            }
            return Err(no_super(&slots));
        };
        let torn = slots
            .iter()
            .position(|s| matches!(s, Err(SlotError::Torn(_))));
        let (mut fs, report) = load(store.dev, scale, sb, false, slots)?;
        if let Some(slot) = torn
            && !fs.read_only
        {
            // The torn superblock goes, so that it never counts later: the next commit writes
            // new blocks where its run was, and could by chance make it whole again.
            fs.store.write_raw(slot as u64, &zeroed()[..])?;
            fs.store.dev.flush()?;
        }
        let mounted = Mounted {
            formatted: false,
            generation: report.generation,
            blocks: report.blocks,
            read_only: fs.read_only,
            dropped: report.slots.iter().find_map(|s| match s {
                Slot::Torn(g) => Some(*g),
                _ => None,
            }),
        };
        Ok((fs, mounted))
    }

    fn format(dev: D, scale: u64, blocks: u64) -> Result<(Self, Mounted), Error> {
        let info = dev.info();
        if info.read_only || !info.flush {
            return Err(Error::ReadOnly);
        }
        let mut fs = Filesystem {
            store: Store::new(dev, scale, blocks),
            generation: 0,
            next_id: 1,
            table: Tree::new(0, Ptr::HOLE),
            table_size: 0,
            open: OpenInodes::default(),
            free_inodes: FreeInodes::default(),
            read_only: false,
            poisoned: false,
            changed: true,
        };
        fs.new_inode(Kind::Dir)?;
        fs.sync()?;
        let mounted = Mounted {
            formatted: true,
            generation: fs.generation,
            blocks,
            read_only: false,
            dropped: None,
        };
        Ok((fs, mounted))
    }

    /// The device back.
    pub fn into_inner(self) -> D {
        self.store.dev
    }

    /// The device (to read its counters).
    pub fn device(&self) -> &D {
        &self.store.dev
    }

    /// The generation of the last commit.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Space used and free.
    pub fn usage(&self) -> Usage {
        Usage {
            blocks: self.store.blocks,
            used: self.store.used_blocks(),
            dirty: self.store.dirty,
            freed: self.store.retired.len() as u64,
        }
    }

    // ----- inodes -----

    fn record(&mut self, ino: u32) -> Result<Record, Error> {
        let off = ino as u64 * INODE_SIZE as u64;
        if off >= self.table_size {
            return Err(Error::NotFound);
        }
        let mut b = zeroed();
        self.table
            .read_leaf(&mut self.store, off / BLOCK as u64, &mut b)?;
        Record::decode(
            &b[(off % BLOCK as u64) as usize..],
            self.store.blocks,
            false,
        )
    }

    /// Kind, size and id of a live inode.
    fn info(&mut self, ino: u32) -> Result<(Kind, u64, u64), Error> {
        if let Some(i) = self.open.get(&ino) {
            return Ok((i.kind, i.size, i.id));
        }
        let r = self.record(ino)?;
        match r.kind {
            Some(k) => Ok((k, r.size, r.id)),
            None => Err(Error::NotFound),
        }
    }

    /// Puts `ino` among the inodes being changed, with the path to its record in the table
    /// dirty, so that writing the record at sync costs no new block.
    fn open_inode(&mut self, ino: u32) -> Result<(), Error> {
        if self.open.contains_key(&ino) {
            return Ok(());
        }
        let r = self.record(ino)?;
        let Some(kind) = r.kind else {
            return Err(Error::NotFound);
        };
        let off = ino as u64 * INODE_SIZE as u64;
        self.table.leaf_mut(&mut self.store, off / BLOCK as u64)?;
        self.open.insert(
            ino,
            Inode {
                kind,
                id: r.id,
                size: r.size,
                tree: Tree::new(r.height, r.root),
            },
        );
        Ok(())
    }

    fn write_record(&mut self, ino: u32, r: &Record) -> Result<(), Error> {
        let off = ino as u64 * INODE_SIZE as u64;
        let mut b = [0u8; INODE_SIZE];
        r.encode(&mut b, false);
        self.table.grow(&mut self.store, off + INODE_SIZE as u64)?;
        self.table.write(&mut self.store, off, &b)?;
        self.table_size = self.table_size.max(off + INODE_SIZE as u64);
        Ok(())
    }

    fn new_inode(&mut self, kind: Kind) -> Result<u32, Error> {
        let ino = match self.free_inodes.pop_first() {
            Some(i) => i,
            None => {
                u32::try_from(self.table_size / INODE_SIZE as u64).map_err(|_| Error::NoSpace)?
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let r = Record {
            kind: Some(kind),
            height: 0,
            root: Ptr::HOLE,
            size: 0,
            id,
        };
        self.write_record(ino, &r)?;
        self.open.insert(
            ino,
            Inode {
                kind,
                id,
                size: 0,
                tree: Tree::new(0, Ptr::HOLE),
            },
        );
        Ok(ino)
    }

    fn free_inode(&mut self, ino: u32) -> Result<(), Error> {
        let mut tree = match self.open.remove(&ino) {
            Some(i) => i.tree,
            None => {
                let r = self.record(ino)?;
                Tree::new(r.height, r.root)
            }
        };
        tree.free(&mut self.store)?;
        self.write_record(ino, &Record::FREE)?;
        self.free_inodes.insert(ino);
        Ok(())
    }

    /// Reads up to `buf.len()` bytes of inode `ino` from `off`: how many.
    fn read_ino(&mut self, ino: u32, off: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let tmp;
        let (tree, size) = match self.open.get(&ino) {
            Some(i) => (&i.tree, i.size),
            None => {
                let r = self.record(ino)?;
                tmp = Tree::new(r.height, r.root);
                (&tmp, r.size)
            }
        };
        if off >= size {
            return Ok(0);
        }
        let n = buf.len().min((size - off).min(usize::MAX as u64) as usize);
        let mut b = zeroed();
        let mut done = 0usize;
        while done < n {
            let at = off + done as u64;
            let start = (at % BLOCK as u64) as usize;
            let k = (BLOCK - start).min(n - done);
            tree.read_leaf(&mut self.store, at / BLOCK as u64, &mut b)?;
            buf[done..done + k].copy_from_slice(&b[start..start + k]);
            done += k;
        }
        Ok(n)
    }

    /// Writes `data` at `off` of inode `ino` (open).
    fn write_ino(&mut self, ino: u32, off: u64, data: &[u8]) -> Result<(), Error> {
        self.open_inode(ino)?;
        let store = &mut self.store;
        let i = self.open.get_mut(&ino).ok_or(Error::NotFound)?;
        let end = off + data.len() as u64;
        i.tree.grow(store, end)?;
        i.tree.write(store, off, data)?;
        i.size = i.size.max(end);
        Ok(())
    }

    fn truncate_ino(&mut self, ino: u32, size: u64) -> Result<(), Error> {
        self.open_inode(ino)?;
        let store = &mut self.store;
        let i = self.open.get_mut(&ino).ok_or(Error::NotFound)?;
        if size > i.size {
            i.tree.grow(store, size)?;
        } else {
            i.tree.truncate(store, i.size, size)?;
        }
        i.size = size;
        Ok(())
    }

    // ----- directories -----

    /// The entry `name` in directory `dir`: its index and inode.
    fn find(&mut self, dir: u32, name: &str) -> Result<Option<(u64, u32)>, Error> {
        let (kind, size, _) = self.info(dir)?;
        if kind != Kind::Dir {
            return Err(Error::NotADirectory);
        }
        let mut b = vec![0u8; BLOCK];
        let mut off = 0;
        while off < size {
            let n = self.read_ino(dir, off, &mut b)?;
            for (i, e) in b[..n].chunks_exact(ENTRY_SIZE).enumerate() {
                let e = Entry::decode(e)?;
                if e.name == name {
                    return Ok(Some((off / ENTRY_SIZE as u64 + i as u64, e.ino)));
                }
            }
            off += n as u64;
        }
        Ok(None)
    }

    fn entry_at(&mut self, dir: u32, index: u64) -> Result<(u32, String), Error> {
        let mut b = [0u8; ENTRY_SIZE];
        self.read_ino(dir, index * ENTRY_SIZE as u64, &mut b)?;
        let e = Entry::decode(&b)?;
        Ok((e.ino, e.name.to_string()))
    }

    fn dir_add(&mut self, dir: u32, name: &str, ino: u32) -> Result<(), Error> {
        let (_, size, _) = self.info(dir)?;
        let mut b = [0u8; ENTRY_SIZE];
        Entry { ino, name }.encode(&mut b);
        self.write_ino(dir, size, &b)
    }

    fn dir_set(&mut self, dir: u32, index: u64, name: &str, ino: u32) -> Result<(), Error> {
        let mut b = [0u8; ENTRY_SIZE];
        Entry { ino, name }.encode(&mut b);
        self.write_ino(dir, index * ENTRY_SIZE as u64, &b)
    }

    /// Removes entry `index` of `dir`: the last entry moves into its place.
    fn dir_remove(&mut self, dir: u32, index: u64) -> Result<(), Error> {
        let (_, size, _) = self.info(dir)?;
        let last = size / ENTRY_SIZE as u64 - 1;
        if index != last {
            let (ino, name) = self.entry_at(dir, last)?;
            self.dir_set(dir, index, &name, ino)?;
        }
        self.truncate_ino(dir, last * ENTRY_SIZE as u64)
    }

    /// The inode at `path`.
    fn resolve(&mut self, path: &str) -> Result<u32, Error> {
        let mut ino = ROOT;
        for name in split(path)? {
            ino = self.find(ino, name)?.ok_or(Error::NotFound)?.1;
        }
        Ok(ino)
    }

    /// The directory holding `path` and its last name.
    fn parent<'p>(&mut self, path: &'p str) -> Result<(u32, &'p str), Error> {
        let names = split(path)?;
        let Some((last, dirs)) = names.split_last() else {
            return Err(Error::InvalidPath);
        };
        let mut ino = ROOT;
        for name in dirs {
            ino = self.find(ino, name)?.ok_or(Error::NotFound)?.1;
        }
        if self.info(ino)?.0 != Kind::Dir {
            return Err(Error::NotADirectory);
        }
        Ok((ino, last))
    }

    // ----- changes -----

    /// The largest file: no larger than the filesystem (so that no size read from a disk,
    /// checked against the same bound at mount, makes a reader allocate more than the disk).
    fn max_file(&self) -> u64 {
        capacity(MAX_HEIGHT).min(self.store.blocks * BLOCK as u64)
    }

    fn writable(&self) -> Result<(), Error> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Runs a change whose checks are done: a failure half-way poisons the filesystem, so that
    /// a half-made change is never committed.
    fn change<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        self.changed = true;
        let r = f(self);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn check_id(&mut self, f: FileId) -> Result<Kind, Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        match self.info(f.ino) {
            Ok((kind, _, id)) if id == f.id => Ok(kind),
            Ok(_) | Err(Error::NotFound) => Err(Error::NotFound),
            Err(e) => Err(e),
        }
    }

    fn create_kind(&mut self, path: &str, kind: Kind) -> Result<FileId, Error> {
        self.writable()?;
        let (dir, name) = self.parent(path)?;
        if self.find(dir, name)?.is_some() {
            return Err(Error::AlreadyExists);
        }
        self.store.ensure(META_COST)?;
        let name = name.to_string();
        self.change(|fs| {
            let ino = fs.new_inode(kind)?;
            fs.dir_add(dir, &name, ino)?;
            let id = fs.open.get(&ino).map_or(0, |i| i.id);
            Ok(FileId { ino, id })
        })
    }

    /// Creates an empty file (its directory must exist): its handle.
    pub fn create(&mut self, path: &str) -> Result<FileId, Error> {
        self.create_kind(path, Kind::File)
    }

    /// Creates an empty directory (its parent must exist).
    pub fn create_dir(&mut self, path: &str) -> Result<(), Error> {
        self.create_kind(path, Kind::Dir).map(|_| ())
    }

    /// Creates every missing directory of `path`.
    pub fn create_dirs(&mut self, path: &str) -> Result<(), Error> {
        let names = split(path)?;
        let mut p = String::new();
        for n in names {
            p.push('/');
            p.push_str(n);
            match self.create_dir(&p) {
                Ok(()) => {}
                Err(Error::AlreadyExists) if self.stat(&p)?.kind == Kind::Dir => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The handle of the file or directory at `path`.
    pub fn open(&mut self, path: &str) -> Result<FileId, Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let ino = self.resolve(path)?;
        let (_, _, id) = self.info(ino)?;
        Ok(FileId { ino, id })
    }

    /// Kind and size of what `path` names.
    pub fn stat(&mut self, path: &str) -> Result<Stat, Error> {
        let f = self.open(path)?;
        self.stat_id(f)
    }

    /// Kind and size of a handle's file (entries, for a directory).
    pub fn stat_id(&mut self, f: FileId) -> Result<Stat, Error> {
        self.check_id(f)?;
        let (kind, size, _) = self.info(f.ino)?;
        let size = match kind {
            Kind::File => size,
            Kind::Dir => size / ENTRY_SIZE as u64,
        };
        Ok(Stat { kind, size })
    }

    /// Reads from `off` into `buf`: the bytes read (fewer at the end of the file, 0 past it).
    pub fn read(&mut self, f: FileId, off: u64, buf: &mut [u8]) -> Result<usize, Error> {
        if self.check_id(f)? != Kind::File {
            return Err(Error::IsADirectory);
        }
        self.read_ino(f.ino, off, buf)
    }

    /// Writes `data` at `off` (past the end, the gap reads as zeros; no file grows past the
    /// filesystem's size, [`Error::FileTooLarge`]). Kept in memory until [`sync`](Self::sync).
    pub fn write(&mut self, f: FileId, off: u64, data: &[u8]) -> Result<(), Error> {
        self.writable()?;
        if self.check_id(f)? != Kind::File {
            return Err(Error::IsADirectory);
        }
        if data.is_empty() {
            return Ok(());
        }
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.max_file())
            .ok_or(Error::FileTooLarge)?;
        let leaves = (end - 1) / BLOCK as u64 - off / BLOCK as u64 + 1;
        let cost = leaves + leaves / FANOUT as u64 + 2 * (u64::from(MAX_HEIGHT) + 1);
        self.store.ensure(cost + META_COST)?;
        self.change(|fs| fs.write_ino(f.ino, off, data))
    }

    /// Appends `data`: the offset it went to.
    pub fn append(&mut self, f: FileId, data: &[u8]) -> Result<u64, Error> {
        let size = self.stat_id(f)?.size;
        self.write(f, size, data)?;
        Ok(size)
    }

    /// Sets the file's size: cut (the blocks past it freed at the next sync) or extended with
    /// zeros.
    pub fn truncate(&mut self, f: FileId, size: u64) -> Result<(), Error> {
        self.writable()?;
        if self.check_id(f)? != Kind::File {
            return Err(Error::IsADirectory);
        }
        if size > self.max_file() {
            return Err(Error::FileTooLarge);
        }
        self.store.ensure(META_COST)?;
        self.change(|fs| fs.truncate_ino(f.ino, size))
    }

    /// Removes a file, or an empty directory.
    pub fn remove(&mut self, path: &str) -> Result<(), Error> {
        self.writable()?;
        let (dir, name) = self.parent(path)?;
        let (index, ino) = self.find(dir, name)?.ok_or(Error::NotFound)?;
        let (kind, size, _) = self.info(ino)?;
        if kind == Kind::Dir && size != 0 {
            return Err(Error::NotEmpty);
        }
        self.store.ensure(META_COST)?;
        self.change(|fs| {
            fs.dir_remove(dir, index)?;
            fs.free_inode(ino)
        })
    }

    /// Renames `from` to `to`, atomically at the next sync. A file may replace a file, a
    /// directory an empty directory; the replaced one is removed.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        self.writable()?;
        let (fdir, fname) = self.parent(from)?;
        let (_, ino) = self.find(fdir, fname)?.ok_or(Error::NotFound)?;
        let (tdir, tname) = self.parent(to)?;
        let (kind, _, _) = self.info(ino)?;
        let fpath = split(from)?.join("/");
        let tpath = split(to)?.join("/");
        if fpath == tpath {
            return Ok(());
        }
        if kind == Kind::Dir && tpath.starts_with(&fpath) && tpath.as_bytes()[fpath.len()] == b'/' {
            return Err(Error::InvalidPath);
        }
        let target = self.find(tdir, tname)?;
        if let Some((_, old)) = target {
            let (okind, osize, _) = self.info(old)?;
            match (kind, okind) {
                (Kind::File, Kind::Dir) => return Err(Error::IsADirectory),
                (Kind::Dir, Kind::File) => return Err(Error::NotADirectory),
                (Kind::Dir, Kind::Dir) if osize != 0 => return Err(Error::NotEmpty),
                _ => {}
            }
        }
        self.store.ensure(META_COST)?;
        let (fname, tname) = (fname.to_string(), tname.to_string());
        self.change(|fs| {
            match target {
                Some((tindex, old)) => {
                    fs.dir_set(tdir, tindex, &tname, ino)?;
                    let (findex, _) = fs.find(fdir, &fname)?.ok_or(Error::NotFound)?;
                    fs.dir_remove(fdir, findex)?;
                    fs.free_inode(old)?;
                }
                None => {
                    let (findex, _) = fs.find(fdir, &fname)?.ok_or(Error::NotFound)?;
                    fs.dir_remove(fdir, findex)?;
                    fs.dir_add(tdir, &tname, ino)?;
                }
            }
            Ok(())
        })
    }

    /// The entries of the directory at `path`, in the directory's order.
    pub fn list(&mut self, path: &str) -> Result<Vec<DirEntry>, Error> {
        let dir = self.open(path)?;
        let (kind, size, _) = self.info(dir.ino)?;
        if kind != Kind::Dir {
            return Err(Error::NotADirectory);
        }
        let mut out = Vec::new();
        for index in 0..size / ENTRY_SIZE as u64 {
            let (ino, name) = self.entry_at(dir.ino, index)?;
            let (kind, size, _) = self.info(ino)?;
            let size = match kind {
                Kind::File => size,
                Kind::Dir => size / ENTRY_SIZE as u64,
            };
            out.push(DirEntry { name, kind, size });
        }
        Ok(out)
    }

    /// The whole file at `path`.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        let f = self.open(path)?;
        let size = self.stat_id(f)?.size;
        let mut buf = vec![0u8; usize::try_from(size).map_err(|_| Error::FileTooLarge)?];
        let n = self.read(f, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Makes the file at `path` hold `data` (created if missing, else cut and overwritten).
    pub fn write_file(&mut self, path: &str, data: &[u8]) -> Result<FileId, Error> {
        let f = match self.open(path) {
            Ok(f) => {
                self.truncate(f, 0)?;
                f
            }
            Err(Error::NotFound) => self.create(path)?,
            Err(e) => return Err(e),
        };
        self.write(f, 0, data)?;
        Ok(f)
    }

    /// Commits every change: afterwards a power cut at any moment leaves them all on the disk.
    /// Writes the changed blocks to free blocks, flushes, writes the superblock slot that does
    /// not hold the last commit, flushes. Writes the changed blocks and the paths above them
    /// (O(changed blocks x height)), never the rest of the metadata.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.writable()?;
        if !self.changed {
            return Ok(());
        }
        let r = self.commit();
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn commit(&mut self) -> Result<(), Error> {
        // The changed inodes' trees, then their records (whose table paths are dirty already).
        let inos: Vec<u32> = self.open.keys().copied().collect();
        for ino in inos {
            let i = self.open.get_mut(&ino).ok_or(Error::NotFound)?;
            i.tree.flush(&mut self.store)?;
            let r = Record {
                kind: Some(i.kind),
                height: i.tree.height,
                root: i.tree.root_ptr(),
                size: i.size,
                id: i.id,
            };
            self.write_record(ino, &r)?;
        }
        // Free records at the end of the table go, when the space allows the cut's path.
        let mut count = self.table_size / INODE_SIZE as u64;
        while count > 1 && self.free_inodes.contains(&((count - 1) as u32)) {
            count -= 1;
        }
        let size = count * INODE_SIZE as u64;
        if size < self.table_size && self.store.ensure(u64::from(self.table.height) + 2).is_ok() {
            self.table
                .truncate(&mut self.store, self.table_size, size)?;
            self.table_size = size;
            self.free_inodes.retain(|&i| u64::from(i) < count);
        }
        self.table.flush(&mut self.store)?;
        self.store.write_run()?;
        // One flush when the superblock can say which blocks to check (see the crate docs,
        // "one flush per sync"); else the blocks are flushed before the superblock is
        // written. The format's first commit always flushes first: a cut short first commit
        // then leaves a disk that still looks blank.
        let run = match self.store.written() {
            Written::Run(r) if self.generation > 0 => Some(r),
            Written::Nothing if self.generation > 0 => None,
            _ => {
                self.store.dev.flush()?;
                None
            }
        };
        let sb = Super {
            blocks: self.store.blocks,
            generation: self.generation + 1,
            next_id: self.next_id,
            table: Record {
                kind: Some(Kind::File),
                height: self.table.height,
                root: self.table.root_ptr(),
                size: self.table_size,
                id: 0,
            },
            run,
        };
        let mut b = zeroed();
        sb.encode(&mut b[..]);
        self.store.write_raw(sb.generation % 2, &b[..])?;
        self.store.dev.flush()?;
        self.generation = sb.generation;
        self.store.commit();
        self.open.clear();
        self.changed = false;
        Ok(())
    }

    /// The dirty nodes of every tree, counted (tests check the store's count against it).
    #[cfg(test)]
    pub(crate) fn count_dirty(&self) -> u64 {
        self.table.dirty_nodes()
            + self
                .open
                .values()
                .map(|i| i.tree.dirty_nodes())
                .sum::<u64>()
    }

    #[cfg(test)]
    pub(crate) fn store_dirty(&self) -> u64 {
        self.store.dirty
    }
}
