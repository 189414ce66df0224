//! Host tests: every operation and error, a model-based random test, power cuts at every write
//! of a workload, seeded corruption of images, a full disk, and the cost of a sync.

use crate::format::{BLOCK, ENTRY_SIZE, Ptr, SlotError, Super};
use crate::*;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use blockdev::fake::{PowerCut, RamDisk, Survival};
use blockdev::{BlockDevice, BlockIo, Blocking, NoWait};

type Ram = Blocking<RamDisk, NoWait>;

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn ram(bytes: usize, block_size: u32) -> Ram {
    Blocking::new(
        RamDisk::new((bytes / block_size as usize) as u64, block_size),
        NoWait,
    )
}

fn ram_image(image: Vec<u8>) -> Ram {
    Blocking::new(RamDisk::from_image(image, 512), NoWait)
}

fn image(fs: Filesystem<Ram>) -> Vec<u8> {
    fs.into_inner().into_inner().0.into_image()
}

fn fresh(bytes: usize) -> Filesystem<Ram> {
    let (fs, m) = Filesystem::mount(ram(bytes, 512)).expect("formats");
    assert!(m.formatted);
    fs
}

fn remount(fs: Filesystem<Ram>) -> Filesystem<Ram> {
    let (fs, m) = Filesystem::mount(ram_image(image(fs))).expect("mounts");
    assert!(!m.formatted);
    fs
}

/// The whole tree: path -> None for a directory, Some(bytes) for a file.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

fn snapshot<D: BlockIo>(fs: &mut Filesystem<D>) -> Result<Tree, Error> {
    let mut out = Tree::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        for e in fs.list(&dir)? {
            let path = if dir.is_empty() {
                e.name.clone()
            } else {
                alloc::format!("{dir}/{}", e.name)
            };
            match e.kind {
                Kind::Dir => {
                    out.insert(path.clone(), None);
                    stack.push(path);
                }
                Kind::File => {
                    let data = fs.read_file(&path)?;
                    assert_eq!(data.len() as u64, e.size);
                    out.insert(path, Some(data));
                }
            }
        }
    }
    Ok(out)
}

fn check_dirty<D: BlockIo>(fs: &Filesystem<D>) {
    assert_eq!(fs.count_dirty(), fs.store_dirty(), "dirty count drifted");
}

#[test]
fn filesystem_is_send() {
    fn send<T: Send>() {}
    send::<Filesystem<Ram>>();
    send::<Filesystem<Blocking<PowerCut, NoWait>>>();
}

#[test]
fn formats_a_blank_disk_once() {
    let (mut fs, m) = Filesystem::mount(ram(1 << 20, 512)).expect("formats");
    assert!(m.formatted);
    assert_eq!(m.generation, 1);
    assert_eq!(m.blocks, 256);
    assert!(fs.list("/").expect("root").is_empty());
    let (_, m) = Filesystem::mount(ram_image(image(fs))).expect("mounts");
    assert!(!m.formatted);
    assert_eq!(m.generation, 1);
    // a 4096-byte-block disk too
    let (fs, m) = Filesystem::mount(ram(1 << 20, 4096)).expect("formats");
    assert!(m.formatted);
    let dev = fs.into_inner();
    let (_, m) = Filesystem::mount(dev).expect("mounts");
    assert!(!m.formatted);
}

#[test]
fn files_and_directories() {
    let mut fs = fresh(8 << 20);
    fs.create_dir("/etc").expect("mkdir");
    let f = fs.create("/etc/motd").expect("create");
    fs.write(f, 0, b"hello").expect("write");
    assert_eq!(fs.append(f, b", world").expect("append"), 5);
    let mut buf = [0u8; 32];
    assert_eq!(fs.read(f, 0, &mut buf).expect("read"), 12);
    assert_eq!(&buf[..12], b"hello, world");
    assert_eq!(fs.read(f, 7, &mut buf[..3]).expect("read"), 3);
    assert_eq!(&buf[..3], b"wor");
    assert_eq!(fs.read(f, 12, &mut buf).expect("read at end"), 0);
    assert_eq!(fs.read(f, 100, &mut buf).expect("read past end"), 0);
    // a write past the end leaves zeros between
    fs.write(f, 20, b"!").expect("write past end");
    assert_eq!(
        fs.read_file("/etc/motd").expect("read"),
        b"hello, world\0\0\0\0\0\0\0\0!"
    );
    fs.truncate(f, 5).expect("truncate");
    assert_eq!(fs.read_file("etc/motd").expect("read"), b"hello");
    fs.truncate(f, 8).expect("extend");
    assert_eq!(fs.read_file("/etc//motd/").expect("read"), b"hello\0\0\0");
    let st = fs.stat("/etc/motd").expect("stat");
    assert_eq!((st.kind, st.size), (Kind::File, 8));
    assert_eq!(
        fs.stat("/etc").expect("stat"),
        Stat {
            kind: Kind::Dir,
            size: 1
        }
    );
    assert_eq!(
        fs.list("/etc").expect("list"),
        vec![DirEntry {
            name: "motd".to_string(),
            kind: Kind::File,
            size: 8
        }]
    );
    // large, multi-level files
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i * 7 / 4096) as u8).collect();
    let g = fs.write_file("/big", &big).expect("write big");
    check_dirty(&fs);
    fs.sync().expect("sync");
    assert_eq!(fs.read_file("/big").expect("read big"), big);
    fs.write(g, 2 * 1024 * 1024 + 3, b"xyz")
        .expect("write at 2M");
    check_dirty(&fs);
    let mut fs = remount({
        fs.sync().expect("sync");
        fs
    });
    let mut want = big.clone();
    want[2 * 1024 * 1024 + 3..2 * 1024 * 1024 + 6].copy_from_slice(b"xyz");
    assert_eq!(fs.read_file("/big").expect("read big"), want);
    assert_eq!(fs.read_file("/etc/motd").expect("read"), b"hello\0\0\0");
    // rename within and across directories, replacing a file
    fs.rename("/etc/motd", "/motd").expect("rename");
    fs.rename("/motd", "/big").expect("rename over");
    assert_eq!(fs.read_file("/big").expect("read"), b"hello\0\0\0");
    assert_eq!(fs.open("/motd"), Err(Error::NotFound));
    assert_eq!(
        fs.read(g, 0, &mut buf),
        Err(Error::NotFound),
        "stale handle"
    );
    fs.create_dir("/etc/x").expect("mkdir");
    fs.rename("/etc", "/conf").expect("rename dir");
    assert_eq!(fs.stat("/conf/x").expect("moved").kind, Kind::Dir);
    fs.remove("/conf/x").expect("remove dir");
    fs.remove("/conf").expect("remove dir");
    fs.remove("/big").expect("remove file");
    assert!(fs.list("/").expect("list").is_empty());
    check_dirty(&fs);
    fs.sync().expect("sync");
    let mut fs = remount(fs);
    assert!(fs.list("/").expect("list").is_empty());
}

#[test]
fn errors_say_what() {
    let mut fs = fresh(1 << 20);
    fs.create_dir("/d").expect("mkdir");
    let f = fs.create("/d/f").expect("create");
    assert_eq!(fs.create("/d/f"), Err(Error::AlreadyExists));
    assert_eq!(fs.create_dir("/d"), Err(Error::AlreadyExists));
    assert_eq!(fs.create("/nope/f"), Err(Error::NotFound));
    assert_eq!(fs.create("/d/f/g"), Err(Error::NotADirectory));
    assert_eq!(fs.stat("/d/f/g"), Err(Error::NotADirectory));
    assert_eq!(fs.create("/d/.."), Err(Error::InvalidName));
    assert_eq!(fs.create("/d/."), Err(Error::InvalidName));
    let long = "x".repeat(NAME_MAX + 1);
    assert_eq!(fs.create(&long), Err(Error::InvalidName));
    fs.create(&"y".repeat(NAME_MAX)).expect("longest name");
    assert_eq!(fs.create("/a\0b"), Err(Error::InvalidName));
    assert_eq!(fs.create("/"), Err(Error::InvalidPath));
    assert_eq!(fs.remove("/"), Err(Error::InvalidPath));
    assert_eq!(fs.rename("/", "/x"), Err(Error::InvalidPath));
    assert_eq!(fs.remove("/d"), Err(Error::NotEmpty));
    assert_eq!(fs.remove("/x"), Err(Error::NotFound));
    assert_eq!(fs.rename("/x", "/y"), Err(Error::NotFound));
    assert_eq!(fs.rename("/d", "/d/e"), Err(Error::InvalidPath));
    fs.create_dir("/e").expect("mkdir");
    assert_eq!(fs.rename("/d/f", "/e"), Err(Error::IsADirectory));
    assert_eq!(fs.rename("/e", "/d/f"), Err(Error::NotADirectory));
    assert_eq!(fs.rename("/e", "/d"), Err(Error::NotEmpty));
    fs.rename("/d", "/e")
        .expect("a directory over an empty one");
    assert_eq!(fs.stat("/e/f").expect("moved").kind, Kind::File);
    let d = fs.open("/e").expect("open dir");
    assert_eq!(fs.read(d, 0, &mut [0u8; 4]), Err(Error::IsADirectory));
    assert_eq!(fs.write(d, 0, b"x"), Err(Error::IsADirectory));
    assert_eq!(fs.truncate(d, 0), Err(Error::IsADirectory));
    assert_eq!(fs.list("/e/f"), Err(Error::NotADirectory));
    assert_eq!(fs.write(f, u64::MAX - 1, b"xx"), Err(Error::FileTooLarge));
    assert_eq!(
        fs.write(f, 1 << 20, b"x"),
        Err(Error::FileTooLarge),
        "past the disk"
    );
    fs.write(f, (1 << 20) - 1, b"x")
        .expect("a sparse file as large as the disk");
    fs.truncate(f, 0).expect("truncate");
    assert_eq!(fs.truncate(f, 1 << 60), Err(Error::FileTooLarge));
    fs.rename("/e/f", "/e/f").expect("rename to itself");
    check_dirty(&fs);
    for e in [
        Error::NotStardust,
        Error::SuperChecksum,
        Error::Version { found: 9 },
        Error::Corrupt(Corruption::Checksum { block: 5 }),
        Error::NoSpace,
    ] {
        assert!(!alloc::format!("{e}").is_empty());
    }
    assert_eq!(
        alloc::format!("{}", Error::NotStardust),
        "not a Stardust filesystem (bad magic number)"
    );
}

#[test]
fn unsynced_changes_are_lost_synced_ones_kept() {
    let mut fs = fresh(1 << 20);
    fs.write_file("/kept", b"one").expect("write");
    fs.sync().expect("sync");
    fs.write_file("/lost", b"two").expect("write");
    fs.write_file("/kept", b"changed").expect("write");
    let mut fs = remount(fs);
    assert_eq!(fs.read_file("/kept").expect("read"), b"one");
    assert_eq!(fs.open("/lost"), Err(Error::NotFound));
    // a sync with nothing changed writes nothing
    let gen_before = fs.generation();
    fs.sync().expect("sync");
    assert_eq!(fs.generation(), gen_before);
}

#[test]
fn foreign_and_damaged_images_are_refused_and_not_written() {
    let mut fs = fresh(1 << 20);
    fs.create("/x").expect("create");
    fs.sync().expect("sync: both slots hold a superblock");
    let good = image(fs);
    let try_mount = |img: Vec<u8>| {
        let before = img.clone();
        let dev = ram_image(img);
        let r = Filesystem::mount(dev).map(|_| ());
        (r, before)
    };
    // something else on the disk: an MBR signature, or data past the superblocks
    let mut other = vec![0u8; 1 << 20];
    other[510] = 0x55;
    other[511] = 0xaa;
    let (r, _) = try_mount(other.clone());
    assert_eq!(r, Err(Error::NotStardust));
    let mut late = vec![0u8; 1 << 20];
    late[5 * BLOCK + 17] = 1;
    assert_eq!(try_mount(late).0, Err(Error::NotStardust));
    let mut last = vec![0u8; 1 << 20];
    *last.last_mut().expect("non-empty") = 1;
    assert_eq!(try_mount(last).0, Err(Error::NotStardust));
    // nothing written: the device's image is as before
    let mut dev = ram_image(other.clone());
    assert!(Filesystem::mount(&mut dev).is_err());
    assert_eq!(dev.device().image(), &other[..]);
    assert_eq!(dev.device().stats().writes, 0);
    // both superblocks damaged
    let mut bad = good.clone();
    bad[100] ^= 1;
    bad[BLOCK + 100] ^= 1;
    assert_eq!(try_mount(bad).0, Err(Error::SuperChecksum));
    // one damaged: the other mounts (it is the one a cut-short commit leaves)
    let mut one = good.clone();
    one[100] ^= 1;
    let (fs, _) = Filesystem::mount(ram_image(one)).expect("mounts the other slot");
    drop(fs);
    // another version, rechecksummed
    let mut v = good.clone();
    let slot = if v[..8] == crate::format::MAGIC {
        0
    } else {
        BLOCK
    };
    v[slot + 8] = 9;
    let crc = crc::crc32c(&v[slot..slot + 508]);
    v[slot + 508..slot + 512].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(try_mount(v).0, Err(Error::Version { found: 9 }));
    // an image larger than its disk
    let small = good[..BLOCK * 20].to_vec();
    assert!(matches!(try_mount(small).0, Err(Error::TooSmall { .. })));
    // a damaged tree block: one the last commit did not write (the root directory's leaf: the last commit only
    // wrote /x's data and the inode table)
    let mut fs = fresh(1 << 20);
    let x = fs.create("/x").expect("create");
    fs.sync().expect("sync");
    fs.write(x, 0, b"data").expect("write");
    fs.sync().expect("sync");
    let good = image(fs);
    let newest = [0, BLOCK]
        .into_iter()
        .filter_map(|at| Super::decode(&good[at..at + BLOCK], 256).ok())
        .max_by_key(|s| s.generation)
        .expect("a superblock");
    let run = newest.run.expect("a one-flush commit");
    let in_run = |b: u32| (run.start..run.start + run.count).contains(&b);
    let root_leaf = (2..256u32).find(|&at| {
        // the root directory's one entry names "x"
        let b = &good[at as usize * BLOCK..(at as usize + 1) * BLOCK];
        b[4] == 1 && b[8] == b'x' && b[9..].iter().all(|&x| x == 0)
    });
    let block = root_leaf.expect("the root directory's leaf");
    assert!(!in_run(block));
    let mut t = good.clone();
    t[block as usize * BLOCK + 3] ^= 0x40;
    assert_eq!(
        try_mount(t).0,
        Err(Error::Corrupt(Corruption::Checksum { block }))
    );
    // ... one the last commit wrote: the same as that commit cut short before its flush. Mount
    // takes the commit before (where /x is empty), says so, and zeroes the torn slot.
    let block = newest.table.root.block;
    assert!(in_run(block));
    let mut t = good.clone();
    t[block as usize * BLOCK + 3] ^= 0x40;
    let (mut fs, m) = Filesystem::mount(ram_image(t)).expect("mounts the commit before");
    assert_eq!(m.dropped, Some(newest.generation));
    assert_eq!(m.generation, newest.generation - 1);
    assert_eq!(fs.read_file("/x").expect("read"), b"");
    let img = image(fs);
    let slot = (newest.generation % 2) as usize * BLOCK;
    assert!(
        img[slot..slot + BLOCK].iter().all(|&x| x == 0),
        "the torn slot is zeroed"
    );
    // a read-only blank disk is not formatted
    let info = blockdev::Info {
        read_only: true,
        ..blockdev::fake::geometry(2048, 512)
    };
    let ro = Blocking::new(RamDisk::with_info(vec![0; 1 << 20], info), NoWait);
    assert_eq!(Filesystem::mount(ro).map(|_| ()), Err(Error::ReadOnly));
    // a read-only filesystem reads and refuses changes
    let info = blockdev::Info {
        read_only: true,
        ..blockdev::fake::geometry(2048, 512)
    };
    let ro = Blocking::new(RamDisk::with_info(good, info), NoWait);
    let (mut fs, m) = Filesystem::mount(ro).expect("mounts read-only");
    assert!(m.read_only);
    assert_eq!(fs.create("/x"), Err(Error::ReadOnly));
    assert!(fs.list("/").is_ok());
}

#[test]
fn super_roundtrip() {
    let sb = Super {
        blocks: 300,
        generation: 7,
        next_id: 9,
        table: crate::format::Record {
            kind: Some(Kind::File),
            height: 1,
            root: Ptr { block: 5, crc: 3 },
            size: 64,
            id: 0,
        },
        run: None,
    };
    let mut b = vec![0u8; BLOCK];
    sb.encode(&mut b);
    assert_eq!(Super::decode(&b, 300), Ok(sb));
    assert!(Super::decode(&b, 299).is_err());
    let run = crate::format::Run {
        start: 40,
        count: 3,
        check: 0xdead_beef,
    };
    let with_run = Super {
        run: Some(run),
        ..sb
    };
    with_run.encode(&mut b);
    assert_eq!(Super::decode(&b, 300), Ok(with_run));
    // a run past the end, or longer than MAX_RUN, is impossible
    for bad in [
        crate::format::Run { start: 299, ..run },
        crate::format::Run { start: 1, ..run },
        crate::format::Run {
            count: crate::format::MAX_RUN + 1,
            ..run
        },
    ] {
        Super {
            run: Some(bad),
            ..sb
        }
        .encode(&mut b);
        assert!(
            matches!(Super::decode(&b, 300), Err(SlotError::Invalid(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn space_follows_live_data() {
    let mut fs = fresh(1 << 20);
    fs.sync().expect("sync");
    let base = fs.usage().used;
    let data = vec![7u8; 200 * 1024];
    for round in 0..20 {
        fs.write_file("/f", &data).expect("write");
        fs.sync().expect("sync");
        assert!(
            fs.usage().used < base + 60 + 2 * 52,
            "round {round}: {:?}",
            fs.usage()
        );
    }
    let f = fs.open("/f").expect("open");
    fs.truncate(f, 1000).expect("truncate");
    fs.sync().expect("sync");
    fs.sync().expect("sync");
    assert!(fs.usage().used <= base + 4, "{:?}", fs.usage());
    fs.remove("/f").expect("remove");
    for i in 0..50 {
        fs.create(&alloc::format!("/n{i}")).expect("create");
    }
    for i in 0..50 {
        fs.remove(&alloc::format!("/n{i}")).expect("remove");
    }
    fs.sync().expect("sync");
    assert_eq!(fs.usage().used, base, "{:?}", fs.usage());
    // kvstore's compaction: a new log written beside the old, renamed over it, synced
    let mut log = fs.create("/log").expect("create");
    for round in 0..30u8 {
        fs.append(log, &[round; 3000]).expect("append");
        fs.sync().expect("sync");
        if round % 5 == 4 {
            fs.write_file("/log.new", &vec![round; 20_000])
                .expect("compacted");
            fs.rename("/log.new", "/log").expect("rename over");
            fs.sync().expect("sync");
            assert_eq!(
                fs.append(log, b"x"),
                Err(Error::NotFound),
                "the old log is gone"
            );
            log = fs.open("/log").expect("open");
        }
        assert!(
            fs.usage().used < base + 20,
            "round {round}: {:?}",
            fs.usage()
        );
    }
    fs.remove("/log").expect("remove");
    fs.sync().expect("sync");
    assert_eq!(fs.usage().used, base, "{:?}", fs.usage());
    let report = check(fs.into_inner()).expect("checks");
    assert_eq!(report.files, 0);
    assert_eq!(report.inodes, 1, "the table shrank back to the root");
}

#[test]
fn full_disk_gives_no_space_and_recovers() {
    let mut fs = fresh(512 * 1024);
    fs.write_file("/keep", b"precious").expect("write");
    fs.sync().expect("sync");
    let f = fs.create("/fill").expect("create");
    let chunk = vec![0xabu8; 16 * 1024];
    let mut written = 0u64;
    let err = loop {
        match fs.write(f, written, &chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        if written.is_multiple_of(64 * 1024) {
            fs.sync().expect("sync while filling");
        }
    };
    assert_eq!(err, Error::NoSpace);
    assert!(written > 200 * 1024, "filled {written}");
    // reads keep working; the metadata reserve lets a sync and a cleanup through
    assert_eq!(fs.read_file("/keep").expect("read"), b"precious");
    fs.sync().expect("sync on a full disk");
    fs.write_file("/more", b"x")
        .expect("a small file in the reserve");
    check_dirty(&fs);
    fs.sync().expect("sync");
    let mut fs = remount(fs);
    assert_eq!(fs.stat("/fill").expect("stat").size, written);
    fs.remove("/fill").expect("remove on a full disk");
    fs.sync().expect("sync");
    let g = fs.create("/again").expect("create");
    fs.write(g, 0, &chunk).expect("room again");
    fs.sync().expect("sync");
    check(fs.into_inner()).expect("consistent");
}

#[test]
fn sync_after_append_writes_few_blocks() {
    let mut fs = fresh(8 << 20);
    for d in 0..8 {
        fs.create_dir(&alloc::format!("/d{d}")).expect("mkdir");
        for i in 0..40 {
            fs.write_file(&alloc::format!("/d{d}/f{i}"), &[i as u8; 3000])
                .expect("write");
        }
    }
    let log = fs.create("/d3/log").expect("create");
    fs.write(log, 0, &vec![1u8; 3 << 20]).expect("a 3 MiB log");
    fs.sync().expect("sync");
    let before = fs.device().device().stats().written_bytes;
    fs.append(log, b"SET k v\r\n").expect("append");
    fs.sync().expect("sync");
    let written = fs.device().device().stats().written_bytes - before;
    // the data block, its two indirect blocks, the table leaf, the superblock: 5 blocks
    assert!(
        written <= 6 * BLOCK as u64,
        "a small append's sync wrote {written} bytes"
    );
    // reading the log reads each indirect block once, not once per data block
    let before = fs.device().device().stats().read_bytes;
    assert_eq!(fs.read_file("/d3/log").expect("read").len(), (3 << 20) + 9);
    let read = fs.device().device().stats().read_bytes - before;
    assert!(
        read <= (769 + 32) * BLOCK as u64,
        "reading 769 blocks read {read} bytes"
    );
}

#[test]
fn appends_after_a_sync_read_nothing_back() {
    let mut fs = fresh(8 << 20);
    for i in 0..200 {
        fs.write_file(&alloc::format!("/f{i}"), &[i as u8; 100])
            .expect("write");
    }
    let log = fs.create("/log").expect("create");
    fs.write(log, 0, &vec![1u8; 3 << 20]).expect("a 3 MiB log");
    fs.sync().expect("sync");
    fs.append(log, b"SET k v\r\n").expect("append");
    fs.sync().expect("sync");
    // Every block the next append changes (the log's last leaf, its two indirect blocks, the
    // inode table's leaf and indirect block) was written by the last sync: none is read back.
    let before = fs.device().device().stats().reads;
    for round in 0..20u8 {
        fs.append(log, &[round; 300]).expect("append");
        fs.sync().expect("sync");
    }
    assert_eq!(
        fs.device().device().stats().reads,
        before,
        "appends read blocks back"
    );
    // What the cache gave is what the disk holds: a fresh mount reads the same log.
    let dev = fs.into_inner();
    let (mut fs, _) = Filesystem::mount(dev).expect("mount");
    let data = fs.read_file("/log").expect("read");
    assert_eq!(data.len(), (3 << 20) + 9 + 20 * 300);
    assert!(
        data[(3 << 20) + 9..]
            .chunks(300)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8))
    );
}

// ----- the model-based random test -----

#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Mkdir(String),
    Write(String, u64, usize, u8),
    Append(String, usize, u8),
    Truncate(String, u64),
    Rename(String, String),
    Remove(String),
    Sync,
}

fn random_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(3);
    path_of_depth(rng, depth)
}

fn path_of_depth(rng: &mut Rng, depth: u64) -> String {
    (0..depth)
        .map(|_| ["a", "b", "c", "d"][rng.below(4) as usize])
        .collect::<Vec<_>>()
        .join("/")
}

fn random_op(rng: &mut Rng, big: bool) -> Op {
    let max = if big { 300_000 } else { 9000 };
    match rng.below(20) {
        0..=2 => Op::Create(random_path(rng)),
        3..=4 => Op::Mkdir(random_path(rng)),
        5..=8 => Op::Write(
            random_path(rng),
            rng.below(max),
            rng.below(max / 2) as usize,
            rng.next() as u8,
        ),
        9..=11 => Op::Append(random_path(rng), rng.below(5000) as usize, rng.next() as u8),
        12 => Op::Truncate(random_path(rng), rng.below(max)),
        13..=14 => Op::Rename(random_path(rng), random_path(rng)),
        15..=16 => Op::Remove(random_path(rng)),
        _ => Op::Sync,
    }
}

fn parent_ok(m: &Tree, p: &str) -> bool {
    match p.rsplit_once('/') {
        None => true,
        Some((dir, _)) => matches!(m.get(dir), Some(None)),
    }
}

/// Applies `op` to the model: whether it succeeds.
fn model_apply(m: &mut Tree, op: &Op) -> bool {
    match op {
        Op::Create(p) | Op::Mkdir(p) => {
            if !parent_ok(m, p) || m.contains_key(p) {
                return false;
            }
            let v = if matches!(op, Op::Create(_)) {
                Some(Vec::new())
            } else {
                None
            };
            m.insert(p.clone(), v);
            true
        }
        Op::Write(p, off, len, byte) => match m.get_mut(p) {
            Some(Some(d)) => {
                if *len == 0 {
                    return true;
                }
                let end = *off as usize + len;
                if d.len() < end {
                    d.resize(end, 0);
                }
                d[*off as usize..end].fill(*byte);
                true
            }
            _ => false,
        },
        Op::Append(p, len, byte) => match m.get_mut(p) {
            Some(Some(d)) => {
                d.extend(core::iter::repeat_n(*byte, *len));
                true
            }
            _ => false,
        },
        Op::Truncate(p, n) => match m.get_mut(p) {
            Some(Some(d)) => {
                d.resize(*n as usize, 0);
                true
            }
            _ => false,
        },
        Op::Remove(p) => match m.get(p) {
            Some(Some(_)) => {
                m.remove(p);
                true
            }
            Some(None) => {
                let prefix = alloc::format!("{p}/");
                if m.keys().any(|k| k.starts_with(&prefix)) {
                    return false;
                }
                m.remove(p);
                true
            }
            None => false,
        },
        Op::Rename(a, b) => {
            let Some(src) = m.get(a).cloned() else {
                return false;
            };
            if !parent_ok(m, b) {
                return false;
            }
            if a == b {
                return true;
            }
            let pa = alloc::format!("{a}/");
            if src.is_none() && b.starts_with(&pa) {
                return false;
            }
            let pb = alloc::format!("{b}/");
            match (&src, m.get(b)) {
                (_, None) => {}
                (Some(_), Some(Some(_))) => {}
                (None, Some(None)) => {
                    if m.keys().any(|k| k.starts_with(&pb)) {
                        return false;
                    }
                }
                _ => return false,
            }
            m.remove(b);
            let moved: Vec<(String, Option<Vec<u8>>)> = m
                .iter()
                .filter(|(k, _)| *k == a || k.starts_with(&pa))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in moved {
                m.remove(&k);
                m.insert(alloc::format!("{b}{}", &k[a.len()..]), v);
            }
            true
        }
        Op::Sync => true,
    }
}

fn fs_apply<D: BlockIo>(fs: &mut Filesystem<D>, op: &Op) -> Result<(), Error> {
    match op {
        Op::Create(p) => fs.create(p).map(|_| ()),
        Op::Mkdir(p) => fs.create_dir(p),
        Op::Write(p, off, len, byte) => {
            let f = fs.open(p)?;
            fs.write(f, *off, &vec![*byte; *len])
        }
        Op::Append(p, len, byte) => {
            let f = fs.open(p)?;
            fs.append(f, &vec![*byte; *len]).map(|_| ())
        }
        Op::Truncate(p, n) => {
            let f = fs.open(p)?;
            fs.truncate(f, *n)
        }
        Op::Rename(a, b) => fs.rename(a, b),
        Op::Remove(p) => fs.remove(p),
        Op::Sync => fs.sync(),
    }
}

#[test]
fn model_based_random_operations() {
    for seed in 0..12u64 {
        let mut rng = Rng(seed);
        let mut fs = fresh(4 << 20);
        let mut model = Tree::new();
        let mut synced = Tree::new();
        for step in 0..300 {
            let op = random_op(&mut rng, seed % 3 == 0);
            let want = model_apply(&mut model, &op);
            let got = fs_apply(&mut fs, &op);
            assert_eq!(
                got.is_ok(),
                want,
                "seed {seed} step {step}: {op:?} gave {got:?}"
            );
            if matches!(op, Op::Sync) {
                synced = model.clone();
            }
            check_dirty(&fs);
            if step % 50 == 0 {
                assert_eq!(
                    snapshot(&mut fs).expect("snapshot"),
                    model,
                    "seed {seed} step {step}"
                );
            }
        }
        assert_eq!(snapshot(&mut fs).expect("snapshot"), model, "seed {seed}");
        // a remount without a final sync shows the last sync's state
        let mut again = remount(fs);
        assert_eq!(
            snapshot(&mut again).expect("snapshot"),
            synced,
            "seed {seed} remounted"
        );
        check(again.into_inner()).expect("checks");
    }
}

// ----- power cuts -----

const CUT_DISK: usize = 1 << 20;

/// Runs a seeded workload on a power-cut disk: the tree at the last completed sync and the
/// tree the sync in progress at the cut would have committed (if one was).
fn workload(
    seed: u64,
    ops: usize,
    cut: Option<u64>,
    tear: Option<u64>,
) -> (PowerCut, Tree, Option<Tree>) {
    // the format is on the disk before the workload starts
    let (fs, _) = Filesystem::mount(Blocking::new(
        PowerCut::new(vec![0; CUT_DISK], 512, None, None),
        NoWait,
    ))
    .expect("formats");
    let formatted = fs
        .into_inner()
        .into_inner()
        .0
        .after_power_cut(Survival::None);
    let dev = Blocking::new(
        PowerCut::new(formatted, 512, cut, tear).reorder(seed),
        NoWait,
    );
    let (mut fs, _) = Filesystem::mount(dev).expect("mounts");
    let mut rng = Rng(seed);
    let mut model = Tree::new();
    let mut acked = Tree::new();
    for i in 0..ops {
        let op = if i % 7 == 6 {
            Op::Sync
        } else {
            // shallow paths, so that most operations do something
            let d = 1 + rng.below(2);
            match random_op(&mut rng, false) {
                Op::Create(_) => Op::Create(path_of_depth(&mut rng, d)),
                Op::Mkdir(_) => Op::Mkdir(path_of_depth(&mut rng, 1)),
                Op::Write(_, o, l, b) => Op::Write(path_of_depth(&mut rng, d), o, l, b),
                Op::Append(_, l, b) => Op::Append(path_of_depth(&mut rng, d), l, b),
                op => op,
            }
        };
        let ok = model_apply(&mut model, &op);
        match fs_apply(&mut fs, &op) {
            Ok(()) => {
                assert!(
                    ok,
                    "seed {seed} op {i}: {op:?} worked, the model refused it"
                );
                if matches!(op, Op::Sync) {
                    acked = model.clone();
                }
            }
            Err(Error::Device(blockdev::Error::PowerCut)) => {
                assert!(matches!(op, Op::Sync), "only syncs write");
                return (fs.into_inner().into_inner().0, acked, Some(model));
            }
            Err(e) => assert!(!ok, "seed {seed} op {i}: {op:?} failed: {e}"),
        }
    }
    (fs.into_inner().into_inner().0, acked, None)
}

#[test]
fn power_cut_at_every_write_keeps_every_synced_state() {
    for seed in [1u64, 2] {
        let (disk, _, _) = workload(seed, 400, None, None);
        let writes = disk.writes();
        assert!(writes > 80, "the workload writes ({writes})");
        for cut in 0..writes {
            for tear in [None, Some(cut * 31 + seed)] {
                let (disk, acked, pending) = workload(seed, 400, Some(cut), tear);
                assert!(disk.is_cut(), "cut {cut} happened");
                for survival in [Survival::None, Survival::All, Survival::Random(cut ^ seed)] {
                    let img = disk.after_power_cut(survival);
                    let (mut fs, m) = Filesystem::mount(ram_image(img)).unwrap_or_else(|e| {
                        panic!("seed {seed} cut {cut} {tear:?} {survival:?}: {e}")
                    });
                    assert!(!m.formatted);
                    let got = snapshot(&mut fs).expect("reads");
                    assert!(
                        got == acked || Some(&got) == pending.as_ref(),
                        "seed {seed} cut {cut} {tear:?} {survival:?}: neither the synced state nor the next: {:?}",
                        got.keys().collect::<Vec<_>>()
                    );
                    check(fs.into_inner()).expect("checks");
                }
            }
        }
    }
}

#[test]
fn power_cut_during_format_formats_again() {
    for cut in 0..2 {
        for tear in [None, Some(cut)] {
            let mut dev = Blocking::new(
                PowerCut::new(vec![0; CUT_DISK], 512, Some(cut), tear),
                NoWait,
            );
            assert!(Filesystem::mount(&mut dev).is_err());
            for survival in [Survival::None, Survival::All, Survival::Random(cut)] {
                let img = dev.device().after_power_cut(survival);
                let (mut fs, _) = Filesystem::mount(ram_image(img)).expect("mounts");
                assert!(fs.list("/").expect("lists").is_empty(), "cut {cut}");
            }
        }
    }
}

#[test]
fn a_failed_sync_poisons_until_remount() {
    // format, one synced file, then the power fails at the next write
    let (fs, _) = Filesystem::mount(Blocking::new(
        PowerCut::new(vec![0; CUT_DISK], 512, None, None),
        NoWait,
    ))
    .expect("formats");
    let img = fs
        .into_inner()
        .into_inner()
        .0
        .after_power_cut(Survival::None);
    let dev = Blocking::new(PowerCut::new(img, 512, Some(2), None), NoWait);
    let (mut fs, _) = Filesystem::mount(dev).expect("mounts");
    fs.write_file("/a", b"synced").expect("write");
    fs.sync()
        .expect("the first sync (a run of blocks and the superblock) gets through");
    fs.write_file("/b", b"lost").expect("write");
    assert_eq!(
        fs.sync(),
        Err(Error::Device(blockdev::Error::PowerCut)),
        "the cut"
    );
    assert_eq!(fs.sync(), Err(Error::Poisoned));
    assert_eq!(fs.create("/c"), Err(Error::Poisoned));
    assert_eq!(fs.open("/a"), Err(Error::Poisoned));
    let img = fs
        .into_inner()
        .into_inner()
        .0
        .after_power_cut(Survival::All);
    let (mut fs, _) = Filesystem::mount(ram_image(img)).expect("mounts");
    assert_eq!(fs.read_file("/a").expect("read"), b"synced");
    assert_eq!(fs.open("/b"), Err(Error::NotFound));
}

// ----- corrupt images -----

/// A filesystem with files and directories in a few levels, synced twice (both slots valid).
fn sample_image() -> Vec<u8> {
    let mut fs = fresh(1 << 20);
    let mut rng = Rng(99);
    for _ in 0..120 {
        let op = random_op(&mut rng, false);
        let _ = fs_apply(&mut fs, &op);
    }
    fs.sync().expect("sync");
    fs.write_file("/last", b"x").expect("write");
    fs.sync().expect("sync");
    image(fs)
}

/// Mounts and reads everything: an error or a tree, never a panic.
fn mount_and_read(img: Vec<u8>) -> Result<Tree, Error> {
    let (mut fs, _) = Filesystem::mount(ram_image(img))?;
    let t = snapshot(&mut fs)?;
    // and changing it works or says why
    let _ = fs.write_file("/new", b"new");
    let _ = fs.sync();
    Ok(t)
}

#[test]
fn corrupt_images_give_errors_never_panics() {
    let good = sample_image();
    let blocks = good.len() / BLOCK;
    let used: Vec<usize> = (0..blocks)
        .filter(|&b| good[b * BLOCK..(b + 1) * BLOCK].iter().any(|&x| x != 0))
        .collect();
    assert!(used.len() > 10);
    let mut errors = 0;
    for seed in 0..600u64 {
        let mut rng = Rng(seed);
        let mut img = good.clone();
        match seed % 4 {
            // flip a few bytes of blocks in use
            0 | 1 => {
                for _ in 0..1 + rng.below(4) {
                    let b = used[rng.below(used.len() as u64) as usize];
                    let at = b * BLOCK + rng.below(BLOCK as u64) as usize;
                    img[at] ^= 1 << rng.below(8);
                }
            }
            // a block of garbage
            2 => {
                let b = used[rng.below(used.len() as u64) as usize];
                for x in &mut img[b * BLOCK..(b + 1) * BLOCK] {
                    *x = rng.next() as u8;
                }
            }
            // a truncated image
            _ => img.truncate(BLOCK * (1 + rng.below(blocks as u64)) as usize),
        }
        if img.len() < 16 * BLOCK {
            img.resize(16 * BLOCK, 0);
        }
        if mount_and_read(img.clone()).is_err() {
            errors += 1;
        }
        let _ = check(ram_image(img));
    }
    assert!(errors > 100, "corruption is noticed ({errors} of 600)");
}

#[test]
fn corrupted_metadata_with_valid_checksums_is_refused() {
    // Forged images: checksums recomputed over impossible values.
    let good = sample_image();
    let (fs, _) = Filesystem::mount(ram_image(good.clone())).expect("mounts");
    drop(fs);
    let slot = if Super::decode(&good[..BLOCK], 256)
        .map(|s| s.generation)
        .unwrap_or(0)
        > Super::decode(&good[BLOCK..2 * BLOCK], 256)
            .map(|s| s.generation)
            .unwrap_or(0)
    {
        0
    } else {
        BLOCK
    };
    // the newest slot forged: refused, not passed over for the older one
    let forge = |f: &dyn Fn(&mut [u8])| {
        let mut img = good.clone();
        f(&mut img[slot..slot + BLOCK]);
        let crc = crc::crc32c(&img[slot..slot + 508]);
        img[slot + 508..slot + 512].copy_from_slice(&crc.to_le_bytes());
        img
    };
    // a table size past what its tree holds, a height past the format's, a pointer outside
    for (name, f) in [
        (
            "size",
            &(|b: &mut [u8]| b[40 + 16..40 + 24].copy_from_slice(&u64::MAX.to_le_bytes()))
                as &dyn Fn(&mut [u8]),
        ),
        ("height", &|b: &mut [u8]| b[41] = 9),
        ("pointer", &|b: &mut [u8]| {
            b[44..48].copy_from_slice(&1u32.to_le_bytes())
        }),
        ("blocks", &|b: &mut [u8]| {
            b[16..24].copy_from_slice(&u64::MAX.to_le_bytes())
        }),
    ] {
        let img = forge(f);
        let r = mount_and_read(img).map(|t| t.len());
        assert!(r.is_err(), "{name}: {r:?}");
    }
}

/// Rewrites block `block` of `img` with `f` and the checksums above it (every pointer to it, up
/// to the superblock), as a forger would: the image is damaged but every checksum holds.
fn forge_block(img: &mut [u8], block: usize, f: &dyn Fn(&mut [u8])) {
    let old = crc::crc32c(&img[block * BLOCK..(block + 1) * BLOCK]);
    f(&mut img[block * BLOCK..(block + 1) * BLOCK]);
    if block < 2 {
        let sb = &mut img[block * BLOCK..block * BLOCK + 512];
        let crc = crc::crc32c(&sb[..508]);
        sb[508..512].copy_from_slice(&crc.to_le_bytes());
        return;
    }
    let new = crc::crc32c(&img[block * BLOCK..(block + 1) * BLOCK]);
    let mut ptr = [0u8; 8];
    ptr[..4].copy_from_slice(&(block as u32).to_le_bytes());
    ptr[4..].copy_from_slice(&old.to_le_bytes());
    for parent in 0..img.len() / BLOCK {
        let b = &img[parent * BLOCK..(parent + 1) * BLOCK];
        if parent == block {
            continue;
        }
        let Some(at) = (0..BLOCK - 8).step_by(4).find(|&at| b[at..at + 8] == ptr) else {
            continue;
        };
        forge_block(img, parent, &|b: &mut [u8]| {
            b[at + 4..at + 8].copy_from_slice(&new.to_le_bytes())
        });
    }
}

/// A forger who also keeps every superblock's run check valid (a forged block inside the last
/// commit's run would otherwise only look like a commit cut short).
fn reseal_runs(img: &mut [u8]) {
    for slot in 0..2 {
        let Ok(sup) = Super::decode(&img[slot * BLOCK..(slot + 1) * BLOCK], 1 << 20) else {
            continue;
        };
        let Some(mut run) = sup.run else { continue };
        let (start, count) = (run.start as usize, run.count as usize);
        run.check = crate::format::Run::check_of(
            (start..start + count).map(|b| crc::crc32c(&img[b * BLOCK..(b + 1) * BLOCK])),
        );
        let sup = Super {
            run: Some(run),
            ..sup
        };
        sup.encode(&mut img[slot * BLOCK..(slot + 1) * BLOCK]);
    }
}

#[test]
fn a_directory_holding_a_name_twice_is_refused() {
    let mut fs = fresh(1 << 20);
    for name in ["/ab", "/c", "/d", "/aa"] {
        fs.write_file(name, name.as_bytes()).expect("write");
    }
    fs.sync().expect("sync");
    let good = image(fs);
    assert!(mount_and_read(good.clone()).is_ok());
    // "aa" renamed "ab" behind the filesystem's back, every checksum kept valid
    let mut img = good.clone();
    let at = (0..good.len() / ENTRY_SIZE)
        .map(|i| i * ENTRY_SIZE)
        .find(|&at| good[at + 4] == 2 && good[at + 8..at + 11] == *b"aa\0")
        .expect("the entry of aa");
    forge_block(&mut img, at / BLOCK, &|b: &mut [u8]| {
        b[at % BLOCK + 9] = b'b';
    });
    reseal_runs(&mut img);
    let err = Error::Corrupt(Corruption::DuplicateName);
    assert_eq!(mount_and_read(img.clone()).err(), Some(err));
    assert_eq!(check(ram_image(img)).err(), Some(err));
}

#[test]
fn heapsort_sorts() {
    let mut rng = Rng(7);
    for n in 0..60 {
        let mut v: Vec<String> = (0..n)
            .map(|_| alloc::format!("{}", rng.below(20)))
            .collect();
        let mut want = v.clone();
        want.sort();
        crate::fs::heapsort(&mut v);
        assert_eq!(v, want, "{n} names");
    }
}

#[test]
fn every_error_says_what_in_words() {
    use alloc::string::ToString;
    let c = |c: Corruption| c.to_string();
    assert_eq!(
        c(Corruption::BadSuper(Fault::BlockSize)),
        "superblock: block size is not 4096"
    );
    assert_eq!(
        c(Corruption::Checksum { block: 17 }),
        "bad checksum in block 17"
    );
    assert_eq!(
        c(Corruption::BadPointer { block: 3 }),
        "a pointer names block 3, outside the filesystem"
    );
    assert_eq!(
        c(Corruption::BadInode(Fault::TooTall)),
        "inode record: tree taller than the format allows"
    );
    assert_eq!(
        c(Corruption::BadEntry(Fault::NotUtf8)),
        "directory entry: name is not UTF-8"
    );
    assert_eq!(
        c(Corruption::PastEnd { block: 4 }),
        "block 4 lies past the end of its file"
    );
    assert_eq!(
        c(Corruption::DoubleUse { block: 5 }),
        "block 5 is used twice"
    );
    assert_eq!(
        c(Corruption::Hole),
        "a directory or the inode table has a hole"
    );
    assert_eq!(c(Corruption::BadRoot), "the root is not a directory");
    assert_eq!(
        c(Corruption::Dangling { ino: 6 }),
        "an entry names inode 6, which does not exist"
    );
    assert_eq!(c(Corruption::Linked { ino: 7 }), "inode 7 has two names");
    assert_eq!(
        c(Corruption::Orphan { ino: 8 }),
        "inode 8 is in no directory"
    );
    assert_eq!(
        c(Corruption::DuplicateName),
        "a directory holds a name twice"
    );
    let e = |e: Error| e.to_string();
    assert_eq!(
        e(Error::Device(blockdev::Error::Io { block: 9 })),
        "device: I/O error at block 9"
    );
    assert_eq!(
        e(Error::Device(blockdev::Error::OutOfRange {
            block: 10,
            count: 2
        })),
        "device: blocks 10..12 are past the end of the disk"
    );
    assert_eq!(
        e(Error::Device(blockdev::Error::PowerCut)),
        "device: the power is off"
    );
    assert_eq!(
        e(Error::NotStardust),
        "not a Stardust filesystem (bad magic number)"
    );
    assert_eq!(e(Error::SuperChecksum), "bad checksum in the superblock");
    assert_eq!(
        e(Error::Version { found: 3 }),
        "unsupported filesystem version 3 (this build reads versions 1 to 2)"
    );
    assert_eq!(
        e(Error::Corrupt(Corruption::Checksum { block: 1 })),
        "corrupt filesystem: bad checksum in block 1"
    );
    assert_eq!(
        e(Error::TooSmall {
            blocks: 16,
            disk_blocks: 8
        }),
        "the filesystem needs 16 blocks of 4096 bytes, the disk has 8"
    );
    assert_eq!(
        e(Error::Geometry),
        "the disk's block size does not divide 4096"
    );
    assert_eq!(e(Error::ReadOnly), "the disk is read-only");
    assert_eq!(
        e(Error::Poisoned),
        "an earlier change failed half-way: mount again to get the last synced state"
    );
    assert_eq!(e(Error::NotFound), "no such file or directory");
    assert_eq!(e(Error::AlreadyExists), "already exists");
    assert_eq!(e(Error::NotADirectory), "not a directory");
    assert_eq!(e(Error::IsADirectory), "is a directory");
    assert_eq!(e(Error::NotEmpty), "directory not empty");
    assert_eq!(
        e(Error::InvalidName),
        "invalid name (empty, `.`, `..`, too long, or holding a `/` or NUL)"
    );
    assert_eq!(
        e(Error::InvalidPath),
        "the root cannot be removed or renamed, nor a directory moved into itself"
    );
    assert_eq!(e(Error::NoSpace), "no space left on the disk");
    assert_eq!(e(Error::FileTooLarge), "file too large");
    // and through the vfs interface, with the detail
    assert_eq!(
        vfs::Error::from(Error::Corrupt(Corruption::Orphan { ino: 3 })).to_string(),
        "corrupt filesystem: inode 3 is in no directory"
    );
    assert_eq!(
        vfs::Error::from(Error::NotStardust).to_string(),
        "unrecognized disk: not a Stardust filesystem (bad magic number)"
    );
}

#[test]
fn errors_stay_16_bytes() {
    // Returned in registers: every `?` of the filesystem is cheaper (3 KiB of image).
    assert!(core::mem::size_of::<Error>() <= 16);
    assert!(core::mem::size_of::<Result<(), Error>>() <= 16);
    assert!(core::mem::size_of::<blockdev::Error>() <= 16);
}
