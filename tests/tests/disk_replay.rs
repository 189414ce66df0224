//! Crash states of a guest's disk from QEMU's write log (`blklogwrites`, `Run::disk_log`,
//! `xtask::disklog`), on whole images under QEMU (TCG).
//!
//! Killing QEMU cannot catch a missing flush (the guest's writes survive in the host's page
//! cache), so these tests record every write and flush the guest makes, replay the log to cut
//! points, drop the writes no flush covered (all of them, none, or seeded sectors of them) and
//! check the replayed images.
//!
//! Acknowledgements map to the log this way: QEMU appends a request's entry to the log before
//! it tells the guest that the request completed, so when the guest prints (or answers) that
//! something is durable, every entry up to the flush that made it so is already in the log
//! file. The host reads the log file's length when the line arrives; the entries whole within
//! that length (`Log::entries_within`) are a cut point at or after that flush. Every replay
//! cut at or after it must hold what was acknowledged, however the uncovered writes fare.
//!
//! - `blkprobe` (q35 and microvm): writes a pattern over 1000 blocks (several requests), flushes,
//!   says so; replayed to every cut under each survival, the pattern is whole at every cut from
//!   the acknowledgement on, and the last cut with every write kept is the image file, byte for
//!   byte. Two negative controls show the check can fail: the same log with its flush left out,
//!   and a guest that does not flush (`blkprobe noflush`).
//! - `fsprobe` (q35; the kernel formats the blank disk at boot, then five steps each end in a
//!   sync the guest reports): at every flush, the entry before each, and seeded cuts, the image
//!   mounts on the host (sdfs) with the tree of a sync no older than the last one reported
//!   before the cut. Negative control: the log without the flush a two-flush sync (the
//!   format's, a large one's) makes between its blocks and its superblock (some cut mounts a
//!   superblock whose blocks were lost). A small sync has one flush, after its blocks and its
//!   superblock, which names them for mount to check.
//! - `kvstore` (q35, persistent on sdfs, a 2 MiB disk so that its log is compacted on the way):
//!   one client sends 100 seeded write commands (SET, DEL, MSET, INCR; values of 4 KB) one at a time and reads the log's length at each reply (the guest is idle
//!   then, so the length is exact). Each reply must follow a flush made since its command was
//!   sent. At every flush, the entry before each, and 40 seeded cuts, under four survivals, the
//!   store on the image (kvstore's log `/kvstore/aof` read through sdfs on the host and
//!   replayed with crates/kv's record codec, as kvstore's recovery does) is the state after
//!   some command at or after the last one acknowledged before the cut. Negative control: with
//!   each command taken as acknowledged when it was sent (a server that answers before its
//!   sync), the check fails. Then kvstore itself boots on the images of two seeded cuts and
//!   serves exactly the store the host read from them (its own recovery, on crash states).
//!
//! The whole file takes about 15 s of QEMU (TCG) and replays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use stardust_tests::{Machine, Run};
use xtask::disklog::{Log, Replayer, Rng, Survival};

/// Blocks blkprobe writes, from block [`START`].
const BLOCKS: u64 = 1000;
const START: u64 = 8;
/// The image files' size.
const IMAGE_BYTES: u64 = 4 << 20;

/// Byte `offset` of the disk in blkprobe's pattern of `seed` (apps/blkprobe's `byte`).
fn byte(seed: u64, offset: u64) -> u8 {
    let x = (offset ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 56) as u8
}

/// A zeroed image file and a log file beside it, both removed when dropped.
struct Files {
    image: PathBuf,
    log: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let stem = std::env::temp_dir().join(format!(
            "stardust-replay-{}-{}",
            std::process::id(),
            name.replace(' ', "-")
        ));
        let image = stem.with_extension("img");
        let file = std::fs::File::create(&image).expect("create the image");
        file.set_len(IMAGE_BYTES).expect("size the image");
        Files {
            image,
            log: stem.with_extension("log"),
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_file(&self.log);
    }
}

fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// Boots blkprobe with `args` on a recorded disk; returns the log, parsed after QEMU ended, and
/// the cut the guest's report line acknowledged (the log's length when the line arrived).
fn record_blkprobe(machine: Machine, files: &Files, args: &[&str], report: &str) -> (Log, usize) {
    // blkprobe writes the raw disk: no filesystem mounted under it.
    let guest = Run::new("blkprobe")
        .profile("storage")
        .set(&["filesystem=none"])
        .machine(machine)
        .args(args)
        .disk_log(&files.image, &files.log)
        .start();
    guest
        .wait_for_line(report, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let acked = log_len(&files.log);
    let boot = guest
        .wait(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        boot.outcome,
        stardust_tests::Outcome::Guest(0),
        "{}",
        boot.stdout
    );
    let log = Log::read(&files.log).unwrap_or_else(|e| panic!("{e:#}"));
    let cut = log.entries_within(acked);
    eprintln!(
        "{machine:?} {args:?}: {} entries ({} flushes) in {} bytes; acknowledged at {acked} \
         bytes: cut {cut}",
        log.entries.len(),
        log.flush_cuts().len(),
        log_len(&files.log)
    );
    (log, cut)
}

/// Replays `log` over a blank image to every cut under three survivals, and checks that every
/// cut from `acked` on holds blkprobe's pattern of `seed`. Returns the replays checked, or the
/// first cut that lost it.
fn check_pattern(log: &Log, seed: u64, acked: usize) -> Result<usize, String> {
    let mut r = Replayer::new(log, vec![0; IMAGE_BYTES as usize]).map_err(|e| format!("{e:#}"))?;
    let (from, to) = ((START * 512) as usize, ((START + BLOCKS) * 512) as usize);
    let mut checked = 0;
    for cut in acked..=log.entries.len() {
        for survival in [
            Survival::None,
            Survival::All,
            Survival::Random(seed ^ cut as u64),
        ] {
            let img = r.image(cut, survival).map_err(|e| format!("{e:#}"))?;
            if let Some(at) = (from..to).find(|&i| img[i] != byte(seed, i as u64)) {
                return Err(format!(
                    "cut {cut} of {} ({survival:?}): byte {at} is not the pattern",
                    log.entries.len()
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn blkprobe_flushed_writes_are_in_every_replayed_cut_and_a_missing_flush_is_caught() {
    let machines = [("q35", Machine::Q35, 21), ("microvm", Machine::Microvm, 22)];
    thread::scope(|s| {
        let runs: Vec<_> = machines
            .iter()
            .map(|&(name, machine, seed)| {
                s.spawn(move || {
                    let files = Files::new(name);
                    let seed_arg = format!("seed={seed}");
                    let (log, acked) = record_blkprobe(
                        machine,
                        &files,
                        &[&seed_arg],
                        "blkprobe: wrote, flushed and read back 1000 blocks",
                    );
                    // The pattern in writes (as many as the device's request size needs), then
                    // one flush, and the acknowledgement after it.
                    let written: u64 = log.entries.iter().map(|e| e.sectors).sum();
                    assert_eq!(written, BLOCKS, "{:?}", log.entries);
                    let flush = log.flush_cuts();
                    assert_eq!(flush.len(), 1, "one flush: {:?}", log.entries);
                    assert!(
                        acked >= flush[0],
                        "acknowledged at {acked}, flushed at {flush:?}"
                    );
                    // Every write kept, the last cut is what QEMU wrote to the file.
                    let mut r = Replayer::new(&log, vec![0; IMAGE_BYTES as usize]).unwrap();
                    let all = r.image(log.entries.len(), Survival::All).unwrap();
                    assert!(
                        all == std::fs::read(&files.image).unwrap(),
                        "replay != image file"
                    );
                    // Before the flush nothing was durable: the cut loses the whole pattern.
                    let mut r = Replayer::new(&log, vec![0; IMAGE_BYTES as usize]).unwrap();
                    let before = r.image(flush[0] - 1, Survival::None).unwrap();
                    assert!(before.iter().all(|&b| b == 0), "durable before its flush");
                    let checked = check_pattern(&log, seed, acked).unwrap();
                    eprintln!("{name}: {checked} replays hold the pattern");

                    // Negative control 1: the same log without its flush.
                    let unflushed = log.filtered(|_, e| !e.is_flush());
                    let e = check_pattern(&unflushed, seed, unflushed.entries.len()).unwrap_err();
                    eprintln!("{name}: without the flush, caught as it must be: {e}");

                    // Negative control 2: a guest that never flushes, acknowledged all the same.
                    let files = Files::new(&format!("{name}-noflush"));
                    let (log, acked) = record_blkprobe(
                        machine,
                        &files,
                        &[&seed_arg, "noflush"],
                        "blkprobe: wrote (no flush) and read back 1000 blocks",
                    );
                    assert!(log.flush_cuts().is_empty(), "{:?}", log.entries);
                    assert_eq!(log.counted, 0, "no superblock before a flush");
                    let e = check_pattern(&log, seed, acked).unwrap_err();
                    eprintln!("{name}: a guest without flush, caught as it must be: {e}");
                })
            })
            .collect();
        for r in runs {
            r.join().expect("a machine's run failed");
        }
    });
}

/// Seeded cut points in `from..=to` (printed, so that a failure can be replayed).
fn random_cuts(seed: u64, from: usize, to: usize, n: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut cuts: Vec<usize> = (0..n)
        .map(|_| from + rng.below((to - from + 1) as u64) as usize)
        .collect();
    cuts.sort();
    cuts.dedup();
    eprintln!("random cut points (seed {seed}): {cuts:?}");
    cuts
}

/// A filesystem's tree: path -> `None` for a directory, `Some(bytes)` for a file.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

/// The tree of the filesystem on `disk` (mounted read-only on the host), or what went wrong.
fn tree(disk: impl blockdev::BlockIo) -> Result<Tree, String> {
    let (mut fs, _) = sdfs::Filesystem::mount(disk).map_err(|e| format!("mount: {e}"))?;
    let mut out = Tree::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        let path = if dir.is_empty() { "/" } else { dir.as_str() };
        for e in fs.list(path).map_err(|e| format!("list {path}: {e}"))? {
            let child = format!("{dir}/{}", e.name);
            match e.kind {
                sdfs::Kind::Dir => {
                    out.insert(child.clone(), None);
                    dirs.push(child);
                }
                sdfs::Kind::File => {
                    let data = fs
                        .read_file(&child)
                        .map_err(|e| format!("read {child}: {e}"))?;
                    out.insert(child, Some(data));
                }
            }
        }
    }
    Ok(out)
}

/// fsprobe's `big=` pattern.
fn fs_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// fsprobe's steps in [`fsprobe_synced_files_are_in_every_replayed_cut`], each with the line
/// that acknowledges its sync; the states after each sync follow from them ([`states`]).
const FS_STEPS: &[(&str, &str)] = &[
    ("write", "fsprobe: wrote and synced"),
    ("big=/b1:40", "fsprobe: wrote /b1: 40 KiB, synced"),
    ("big=/b2:80", "fsprobe: wrote /b2: 80 KiB, synced"),
    ("big=/b1:12", "fsprobe: wrote /b1: 12 KiB, synced"),
    (
        "big=/probe/sub/b3:120",
        "fsprobe: wrote /probe/sub/b3: 120 KiB, synced",
    ),
];

/// The filesystem's state after the format and after each step's sync.
fn states() -> Vec<Tree> {
    let mut state = Tree::new();
    let mut out = vec![state.clone()];
    for (arg, _) in FS_STEPS {
        if *arg == "write" {
            let mut data = fs_pattern(100);
            data.extend_from_slice(b"END");
            for dir in ["/probe", "/probe/sub", "/probe/sub/deeper"] {
                state.insert(dir.into(), None);
            }
            state.insert(
                "/probe/hello.txt".into(),
                Some(b"hello from fsprobe\n".to_vec()),
            );
            state.insert(
                "/probe/log.txt".into(),
                Some(b"first line\nsecond line\n".to_vec()),
            );
            state.insert("/probe/sub/data.bin".into(), Some(data));
        } else {
            let (path, kib) = arg["big=".len()..].rsplit_once(':').expect("big=PATH:KIB");
            let kib: usize = kib.parse().expect("KiB, a number");
            state.insert(path.into(), Some(fs_pattern(kib * 1024)));
        }
        out.push(state.clone());
    }
    out
}

/// Replays `log` at `cuts` under four survivals; at each, the mounted tree must be the state
/// of some sync at or after the last one acknowledged before the cut (`acked[k]`: the cut
/// that acknowledged sync `k + 1`; sync 0 is the format, acknowledged by the first step's
/// start). Returns the replays checked, or the first failure.
fn check_fs(log: &Log, states: &[Tree], acked: &[usize], cuts: &[usize]) -> Result<usize, String> {
    let mut r = Replayer::new(log, vec![0; IMAGE_BYTES as usize]).map_err(|e| format!("{e:#}"))?;
    let mut checked = 0;
    for &cut in cuts {
        // The last sync acknowledged at or before this cut.
        let k = acked.iter().rposition(|&a| a <= cut).map_or(0, |i| i + 1);
        for survival in [
            Survival::None,
            Survival::All,
            Survival::Random(cut as u64),
            Survival::Random(!(cut as u64)),
        ] {
            let disk = r.disk(cut, survival).map_err(|e| format!("{e:#}"))?;
            let got = tree(disk);
            let ok = got
                .as_ref()
                .is_ok_and(|t| states[k..].iter().any(|s| s == t));
            if !ok {
                return Err(format!(
                    "cut {cut} of {} ({survival:?}), sync {k} acknowledged: {:?}",
                    log.entries.len(),
                    got.map(|t| t.keys().cloned().collect::<Vec<_>>())
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn fsprobe_synced_files_are_in_every_replayed_cut_and_a_missing_flush_is_caught() {
    let files = Files::new("fsprobe");
    let args: Vec<&str> = FS_STEPS.iter().map(|(a, _)| *a).collect();
    // On a blank disk: the kernel formats it at boot (a first sync), then fsprobe's steps.
    let guest = Run::new("fsprobe")
        .profile("storage")
        .args(&args)
        .disk_log(&files.image, &files.log)
        .start();
    // Each step's line comes once its sync returned; the log's length then bounds the entries
    // the guest had completed (read a little later than the line, so a little long: the check
    // is sound, only less sharp).
    let mut lens = Vec::new();
    for (_, line) in FS_STEPS {
        guest
            .wait_for_line(line, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e:#}"));
        lens.push(log_len(&files.log));
    }
    let boot = guest
        .wait(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        boot.outcome,
        stardust_tests::Outcome::Guest(0),
        "{}",
        boot.stdout
    );
    let log = Log::read(&files.log).unwrap_or_else(|e| panic!("{e:#}"));
    let acked: Vec<usize> = lens.iter().map(|&l| log.entries_within(l)).collect();
    let flushes = log.flush_cuts();
    eprintln!(
        "fsprobe: {} entries, {} flushes at {flushes:?}; syncs acknowledged at cuts {acked:?}",
        log.entries.len(),
        flushes.len()
    );
    // The format: two flushes (data, then the superblock); each step's sync one (a small sync:
    // its superblock names its blocks, which mount checks) or two (a large one).
    assert!(flushes.len() >= 2 + FS_STEPS.len(), "{flushes:?}");
    // The full replay is the image file.
    let all = Replayer::new(&log, vec![0; IMAGE_BYTES as usize])
        .unwrap()
        .image(log.entries.len(), Survival::All)
        .unwrap();
    assert!(
        all == std::fs::read(&files.image).unwrap(),
        "replay != image file"
    );
    // Every flush, the cut just before each, and seeded random cuts, from the format's commit
    // on (a cut inside the format may leave a disk that is neither blank nor formatted).
    let from = flushes[1];
    let mut cuts: Vec<usize> = flushes
        .iter()
        .flat_map(|&f| [f - 1, f])
        .chain(random_cuts(0x005e_edf5, from, log.entries.len(), 40))
        .filter(|&c| c >= from)
        .collect();
    cuts.sort();
    cuts.dedup();
    let states = states();
    let checked = check_fs(&log, &states, &acked, &cuts).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "fsprobe: {checked} replays at {} cuts mount with a synced state",
        cuts.len()
    );

    // Negative control: the same log without the flush each two-flush sync (the format's, the
    // large steps') makes between its blocks and its superblock (the flush followed by a write
    // to a superblock slot, blocks 0 and 1 = sectors 0..16): some cut mounts a superblock whose
    // blocks were lost.
    let data_flush = |i: usize| {
        log.entries[i].is_flush()
            && log.entries[i + 1..]
                .iter()
                .find(|e| e.changes())
                .is_some_and(|e| e.sector < 16)
    };
    let keep = |i: usize, _: &xtask::disklog::Entry| !data_flush(i);
    let renumber = |cut: usize| (0..cut).filter(|&i| keep(i, &log.entries[i])).count();
    let unflushed = log.filtered(keep);
    assert!(unflushed.flush_cuts().len() < flushes.len());
    let acked: Vec<usize> = acked.iter().map(|&a| renumber(a)).collect();
    let cuts: Vec<usize> = cuts.iter().map(|&c| renumber(c)).collect();
    let e = check_fs(&unflushed, &states, &acked, &cuts).unwrap_err();
    eprintln!("fsprobe: without its data flushes, caught as it must be: {e}");
}

/// One RESP request.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads one reply line (simple string, error or integer: the commands below answer no bulk).
fn reply_line(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = s
            .read(&mut b)
            .unwrap_or_else(|e| panic!("reading a reply: {e}"));
        assert!(n == 1, "the server closed the connection");
        if b[0] == b'\n' && line.last() == Some(&b'\r') {
            line.pop();
            return String::from_utf8(line).expect("a reply in UTF-8");
        }
        line.push(b[0]);
    }
}

/// Reads one bulk reply: `None` for a null bulk.
fn reply_bulk(s: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let line = reply_line(s);
    let n: i64 = line
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a bulk reply: {line}"));
    if n < 0 {
        return None;
    }
    let mut buf = vec![0; n as usize + 2];
    s.read_exact(&mut buf).expect("the bulk's bytes");
    buf.truncate(n as usize);
    Some(String::from_utf8(buf).expect("a value in UTF-8"))
}

/// The key-value store's contents.
type Store = BTreeMap<String, String>;

/// kvstore's write commands of the test, seeded: SETs of new and existing keys (of `keys`),
/// DELs of existing keys, MSETs, INCRs; values of about `value_len` bytes. Each changes the store
/// (so that every state differs from the one before it). Returns them with the store after each
/// (`states[0]`: empty).
fn kv_commands(seed: u64, n: usize, keys: u64, value_len: usize) -> (Vec<Vec<String>>, Vec<Store>) {
    let mut rng = Rng::new(seed);
    let mut store = Store::new();
    let mut states = vec![store.clone()];
    let mut commands = Vec::new();
    let value = |tag: String| {
        let pad = value_len.saturating_sub(tag.len());
        format!("{tag}{}", ".".repeat(pad))
    };
    for i in 0..n {
        let key = |r: &mut Rng| format!("key:{}", r.below(keys));
        let cmd: Vec<String> = match rng.below(8) {
            0 if !store.is_empty() => {
                let k = store
                    .keys()
                    .nth(rng.below(store.len() as u64) as usize)
                    .expect("a key")
                    .clone();
                store.remove(&k);
                vec!["DEL".into(), k]
            }
            1 => {
                let (a, b) = (key(&mut rng), format!("m:{}", i % 3));
                let (va, vb) = (value(format!("mset-{i}-a")), format!("mset-{i}-b"));
                store.insert(a.clone(), va.clone());
                store.insert(b.clone(), vb.clone());
                vec!["MSET".into(), a, va, b, vb]
            }
            2 => {
                let n: i64 = store
                    .get("counter")
                    .map_or(0, |v| v.parse().expect("a number"));
                store.insert("counter".into(), (n + 1).to_string());
                vec!["INCR".into(), "counter".into()]
            }
            _ => {
                let k = key(&mut rng);
                let v = value(format!("value-{i}-{}", rng.next_u64()));
                store.insert(k.clone(), v.clone());
                vec!["SET".into(), k, v]
            }
        };
        commands.push(cmd);
        states.push(store.clone());
    }
    (commands, states)
}

/// The store on a replayed disk: kvstore's log `/kvstore/aof` read from the filesystem
/// (mounted on the host) and replayed with crates/kv's record codec up to its first torn or
/// corrupt record, as kvstore's recovery does. No log yet: empty.
fn kv_store(disk: impl blockdev::BlockIo) -> Result<Store, String> {
    let (mut fs, _) = sdfs::Filesystem::mount(disk).map_err(|e| format!("mount: {e}"))?;
    let aof = match fs.read_file("/kvstore/aof") {
        Ok(bytes) => bytes,
        Err(sdfs::Error::NotFound) => Vec::new(),
        Err(e) => return Err(format!("read /kvstore/aof: {e}")),
    };
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap_or_else(|e| format!("{e}"));
    let mut store = Store::new();
    for m in kv::log::Records::new(&aof) {
        match m {
            kv::log::Mutation::Set { key, value, .. } => {
                store.insert(text(key), text(value));
            }
            kv::log::Mutation::MSet { pairs } => {
                for (k, v) in pairs {
                    store.insert(text(k), text(v));
                }
            }
            kv::log::Mutation::Del { keys } => {
                for k in keys {
                    store.remove(&text(k));
                }
            }
            kv::log::Mutation::FlushAll => store.clear(),
        }
    }
    Ok(store)
}

/// Replays `log` at `cuts` under four survivals: at each, the store on the image must be the
/// state after some command at or after the last one acknowledged at or before the cut
/// (`acked[i]`: the cut at which command `i`'s reply arrived). Returns the replays checked, or
/// the first failure.
fn check_kv(log: &Log, states: &[Store], acked: &[usize], cuts: &[usize]) -> Result<usize, String> {
    let mut r =
        Replayer::new(log, vec![0; KV_IMAGE_BYTES as usize]).map_err(|e| format!("{e:#}"))?;
    let mut checked = 0;
    for &cut in cuts {
        // Commands acknowledged at or before the cut: their state or a later one.
        let k = acked.iter().rposition(|&a| a <= cut).map_or(0, |i| i + 1);
        for survival in [
            Survival::None,
            Survival::All,
            Survival::Random(cut as u64),
            Survival::Random(!(cut as u64)),
        ] {
            let disk = r.disk(cut, survival).map_err(|e| format!("{e:#}"))?;
            let got = kv_store(disk);
            let ok = got.as_ref().is_ok_and(|s| states[k..].contains(s));
            if !ok {
                let lost: Vec<_> = match &got {
                    Ok(s) => states[k]
                        .iter()
                        .filter(|(key, v)| s.get(*key) != Some(v))
                        .map(|(key, _)| key.clone())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                return Err(format!(
                    "cut {cut} of {} ({survival:?}): {k} commands acknowledged; the store \
                     ({:?}) is no state from then on; acknowledged keys not as acknowledged: \
                     {lost:?}",
                    log.entries.len(),
                    got.map(|s| s.len()),
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// kvstore's disk: small, so that its log is compacted during the test (kvstore compacts past
/// an eighth of the disk, and twice the live data: 256 KiB here; the commands append about
/// 4 KiB each to 8 keys), and fast to replay.
const KV_IMAGE_BYTES: u64 = 2 << 20;

#[test]
fn kvstore_acknowledged_keys_are_in_every_replayed_cut() {
    let seed = 0x6b76;
    let (commands, states) = kv_commands(seed, 100, 8, 4000);
    let files = Files::new("kvstore");
    std::fs::File::options()
        .write(true)
        .open(&files.image)
        .and_then(|f| f.set_len(KV_IMAGE_BYTES))
        .expect("size the image");
    let port = stardust_tests::free_port();
    let guest = Run::new("kvstore")
        .profile("storage")
        .forward(port, 6379)
        .timeout(Duration::from_secs(300))
        .disk_log(&files.image, &files.log)
        .start();
    guest
        .wait_for_line("kvstore: ready on port 6379", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // One command at a time: the guest is idle when a reply arrives, so the log's length read
    // then is exactly what it had done. `sent[i]`: the length before command i was sent.
    let (mut sent, mut lens) = (Vec::new(), Vec::new());
    for cmd in &commands {
        use std::io::Write;
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        sent.push(log_len(&files.log));
        s.write_all(&resp(&args)).expect("send");
        let line = reply_line(&mut s);
        assert!(
            line.starts_with('+') || line.starts_with(':'),
            "{cmd:?}: {line}\n{}",
            guest.console()
        );
        lens.push(log_len(&files.log));
    }
    drop(s);
    let boot = guest.stop().unwrap_or_else(|e| panic!("{e:#}"));
    for bad in ["PANIC", "EXCEPTION", "[ERROR"] {
        assert!(!boot.stdout.contains(bad), "{bad}\n{}", boot.stdout);
    }
    // The cuts cross a compaction (a new log file, synced, renamed over the old one, synced).
    for line in boot.lines().filter(|l| l.contains("kvstore:")) {
        eprintln!("console: {line}");
    }
    assert!(
        boot.stdout.contains("kvstore: log compacted"),
        "no compaction\n{}",
        boot.stdout
    );
    let log = Log::read(&files.log).unwrap_or_else(|e| panic!("{e:#}"));
    let acked: Vec<usize> = lens.iter().map(|&l| log.entries_within(l)).collect();
    let flushes = log.flush_cuts();
    eprintln!(
        "kvstore: {} commands (seed {seed}); {} log entries, {} flushes; replies at cuts \
         {acked:?}",
        commands.len(),
        log.entries.len(),
        flushes.len()
    );
    // Every reply came after a flush that followed the command's send.
    for (i, (&a, &b)) in sent.iter().zip(&acked).enumerate() {
        let before = log.entries_within(a);
        assert!(
            flushes.iter().any(|&f| f > before && f <= b),
            "command {i} {:?} answered without a flush since it was sent",
            commands[i]
        );
    }
    // The cuts: every flush and the entry before it, and seeded random ones, from the format's
    // commit on.
    let from = flushes[1];
    let mut cuts: Vec<usize> = flushes
        .iter()
        .flat_map(|&f| [f - 1, f])
        .chain(random_cuts(seed, from, log.entries.len(), 40))
        .filter(|&c| c >= from)
        .collect();
    cuts.sort();
    cuts.dedup();
    let checked = check_kv(&log, &states, &acked, &cuts).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "kvstore: {checked} replays at {} cuts hold every acknowledged key",
        cuts.len()
    );

    // kvstore's own recovery on replayed images: booted on two of them (seeded cuts, sectors
    // kept from the seed), it serves exactly the store the host read from its log.
    let all_keys: std::collections::BTreeSet<&String> =
        states.iter().flat_map(|s| s.keys()).collect();
    for cut in random_cuts(seed ^ 1, from, log.entries.len(), 2) {
        let image = Replayer::new(&log, vec![0; KV_IMAGE_BYTES as usize])
            .and_then(|mut r| r.image(cut, Survival::Random(cut as u64)))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let replayed = Files::new(&format!("kvstore-cut-{cut}"));
        std::fs::write(&replayed.image, &image).expect("write the replayed image");
        let host = Replayer::new(&log, image)
            .and_then(|mut r| r.disk(0, Survival::None).map(kv_store))
            .unwrap_or_else(|e| panic!("{e:#}"))
            .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let port = stardust_tests::free_port();
        let guest = Run::new("kvstore")
            .profile("storage")
            .forward(port, 6379)
            .timeout(Duration::from_secs(300))
            .disk(&replayed.image, false)
            .start();
        guest
            .wait_for_line("kvstore: ready on port 6379", Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("cut {cut}: {e:#}"));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        for key in &all_keys {
            use std::io::Write;
            s.write_all(&resp(&["GET", key])).expect("send");
            let got = reply_bulk(&mut s);
            assert_eq!(
                got.as_ref(),
                host.get(*key),
                "cut {cut}: GET {key}\n{}",
                guest.console()
            );
        }
        let recovered = guest
            .console()
            .lines()
            .find(|l| l.contains("kvstore: recovered"))
            .unwrap_or_default()
            .to_string();
        drop(s);
        guest.stop().unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!(
            "kvstore: booted on the image of cut {cut}: {} keys served as the host read them ({recovered})",
            host.len()
        );
    }

    // Negative control: had kvstore answered each command before its sync (as soon as it was
    // sent), the check would catch it: a cut there loses the key.
    let early: Vec<usize> = sent.iter().map(|&l| log.entries_within(l)).collect();
    let e = check_kv(&log, &states, &early, &cuts).unwrap_err();
    eprintln!("kvstore: replies before their sync, caught as they must be: {e}");
}
