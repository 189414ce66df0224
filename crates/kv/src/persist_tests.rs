//! The persistence over sdfs over blockdev's fakes: power cuts at many points of a workload
//! (with compactions), a full disk, torn tails, undo, and group commit across threads.

use super::persist::{Commit, Db, Failure, Settings as LogSettings, Step, Storage};
use super::*;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use blockdev::fake::{PowerCut, RamDisk, Survival};
use blockdev::{BlockIo, Blocking, NoWait};
use platform::fuzz::{Rng, cases};
use sdfs::{Error as FsError, Filesystem};
use std::sync::{Arc, Condvar, Mutex};

const NOW: u64 = 1_700_000_000_000;

/// The filesystem back, once nothing else holds it.
fn take<D>(fs: Fs<D>) -> Mutex<Filesystem<D>> {
    match Arc::try_unwrap(fs.0) {
        Ok(m) => m,
        Err(_) => panic!("the filesystem is still shared"),
    }
}

/// sdfs behind a lock, as the kernel keeps it; clones share it.
struct Fs<D>(Arc<Mutex<Filesystem<D>>>);

impl<D> Clone for Fs<D> {
    fn clone(&self) -> Self {
        Fs(self.0.clone())
    }
}

impl<D: BlockIo> Storage for Fs<D> {
    type Error = FsError;
    fn size(&self, path: &str) -> Result<Option<u64>, FsError> {
        match self.0.lock().expect("lock").stat(path) {
            Ok(s) => Ok(Some(s.size)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn read_at(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let mut fs = self.0.lock().expect("lock");
        let f = fs.open(path)?;
        fs.read(f, offset, buf)
    }
    fn append(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        let mut fs = self.0.lock().expect("lock");
        let f = match fs.open(path) {
            Err(FsError::NotFound) => fs.create(path)?,
            r => r?,
        };
        fs.append(f, data).map(|_| ())
    }
    fn create(&self, path: &str) -> Result<(), FsError> {
        self.0
            .lock()
            .expect("lock")
            .write_file(path, &[])
            .map(|_| ())
    }
    fn set_len(&self, path: &str, len: u64) -> Result<(), FsError> {
        let mut fs = self.0.lock().expect("lock");
        let f = fs.open(path)?;
        fs.truncate(f, len)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.0.lock().expect("lock").rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<(), FsError> {
        match self.0.lock().expect("lock").remove(path) {
            Err(FsError::NotFound) => Ok(()),
            r => r,
        }
    }
    fn sync(&self) -> Result<(), FsError> {
        self.0.lock().expect("lock").sync()
    }
    fn free(&self) -> Option<u64> {
        let u = self.0.lock().expect("lock").usage();
        // sdfs keeps 48 blocks for metadata, and a write's cost counts its tree's paths.
        Some(
            u.blocks
                .saturating_sub(u.used + u.dirty)
                .saturating_sub(48 + 10)
                * sdfs::BLOCK as u64,
        )
    }
    fn is_no_space(e: &FsError) -> bool {
        matches!(e, FsError::NoSpace)
    }
}

fn settings(floor: u64) -> LogSettings {
    let mut s = LogSettings::for_frame("/kv", 64 * 1024);
    s.compact_floor = floor;
    s
}

fn mount<D: BlockIo>(dev: D) -> Fs<D> {
    let (mut fs, _) = Filesystem::mount(dev).expect("mounts");
    match fs.create_dir("/kv") {
        Ok(()) | Err(FsError::AlreadyExists) => {}
        Err(e) => panic!("mkdir: {e}"),
    }
    fs.sync().expect("sync");
    Fs(Arc::new(Mutex::new(fs)))
}

fn open<D: BlockIo>(fs: Fs<D>, floor: u64) -> (Db<Fs<D>>, persist::Recovery) {
    Db::open(fs, settings(floor), Engine::new(Settings::default()), NOW).expect("recovers")
}

type State = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

fn state(engine: &Engine) -> State {
    engine
        .entries(NOW)
        .map(|(k, v, e)| (k.to_vec(), (v.to_vec(), e)))
        .collect()
}

fn run(db: &mut Db<impl Storage>, args: &[&str]) -> String {
    let mut out = Vec::new();
    db.execute(
        &Request::from_args(args),
        &mut Session::default(),
        NOW,
        &mut out,
    );
    String::from_utf8(out).expect("utf-8")
}

/// A formatted blank disk image of `bytes`, with the directory `/kv`.
fn formatted(bytes: usize) -> Vec<u8> {
    let fs = mount(Blocking::new(
        PowerCut::new(vec![0; bytes], 512, None, None),
        NoWait,
    ));
    let fs = Arc::try_unwrap(fs.0)
        .expect("one owner")
        .into_inner()
        .expect("lock");
    fs.into_inner()
        .into_inner()
        .0
        .after_power_cut(Survival::None)
}

fn random_command(rng: &mut Rng, i: usize) -> Vec<String> {
    let key = |rng: &mut Rng| format!("k{}", rng.below(12));
    let value = |rng: &mut Rng| {
        // Some values long enough to span blocks.
        let n = if rng.below(8) == 0 {
            3000
        } else {
            1 + rng.below(40)
        } as usize;
        format!("v{i}-{}", "x".repeat(n))
    };
    let args: Vec<String> = match rng.below(20) {
        0..=7 => vec!["SET".into(), key(rng), value(rng)],
        8..=10 => vec!["DEL".into(), key(rng), key(rng)],
        11..=14 => vec!["INCR".into(), format!("n{}", rng.below(3))],
        15 => vec!["FLUSHALL".into()],
        16..=17 => vec!["MSET".into(), key(rng), value(rng), key(rng), value(rng)],
        _ => vec![
            "SET".into(),
            key(rng),
            value(rng),
            "EX".into(),
            "100000".into(),
        ],
    };
    args
}

/// A seeded workload on a power-cut disk, a sync every few commands (the acknowledgement):
/// the states after every prefix of the commands that ran, and how many were acknowledged.
fn workload(
    image: &[u8],
    seed: u64,
    cut: Option<u64>,
    tear: Option<u64>,
) -> (PowerCut, Vec<State>, usize) {
    let fs = mount(Blocking::new(
        PowerCut::new(image.to_vec(), 512, cut, tear).reorder(seed),
        NoWait,
    ));
    let Ok((mut db, _)) = Db::open(
        fs.clone(),
        settings(8 * 1024),
        Engine::new(Settings::default()),
        NOW,
    ) else {
        // The cut came during the first recovery (it syncs the new log).
        let fs = take(fs);
        let fs = fs.into_inner().expect("lock");
        return (fs.into_inner().into_inner().0, vec![State::new()], 0);
    };
    let mut model = Engine::new(Settings {
        record: false,
        ..Settings::default()
    });
    let mut states = vec![State::new()];
    let mut acked = 0;
    let mut rng = Rng::new(seed);
    let mut commit = Commit::new();
    for i in 0..120 {
        let args = random_command(&mut rng, i);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let reply = run(&mut db, &args);
        if reply.starts_with("-MISCONF") {
            break; // the disk is gone: nothing more runs
        }
        let mut out = Vec::new();
        model.execute(
            &Request::from_args(&args),
            &mut Session::default(),
            NOW,
            &mut out,
        );
        assert_eq!(reply.as_bytes(), &out[..], "{args:?}");
        states.push(state(&model));
        assert_eq!(state(&db.engine), *states.last().expect("one"));
        if db.should_compact() {
            match db.compact(NOW) {
                Ok(()) => {
                    commit.published(db.appended());
                    acked = states.len() - 1;
                }
                Err(_) => break,
            }
        }
        if i % 3 == 2 {
            match commit.begin(db.appended()) {
                Step::Sync(noted) => {
                    let r = db.sync();
                    let ok = r.is_ok();
                    commit.end(r.unwrap_or(noted), ok);
                    if !ok {
                        break;
                    }
                }
                Step::Done => {}
                s => panic!("single-threaded: {s:?}"),
            }
            acked = states.len() - 1;
        }
    }
    drop(db);
    let fs = take(fs).into_inner().expect("lock");
    (fs.into_inner().into_inner().0, states, acked)
}

#[test]
fn power_cuts_lose_no_acknowledged_write() {
    let image = formatted(2 << 20);
    let seeds = cases(4);
    let mut checked = 0;
    for seed in 0..seeds {
        let (disk, states, acked) = workload(&image, seed, None, None);
        assert!(acked > 30, "the workload runs");
        let writes = disk.writes();
        let points = 30u64;
        for p in 0..points {
            let cut = 1 + p * writes / points + seed % 3;
            let tear = (p % 2 == 0).then_some(seed * 1000 + p);
            let (disk, states, acked) = workload(&image, seed, Some(cut), tear);
            for survival in [Survival::None, Survival::All, Survival::Random(cut ^ seed)] {
                let img = disk.after_power_cut(survival);
                let fs = mount(Blocking::new(RamDisk::from_image(img, 512), NoWait));
                let (db, rec) = open(fs, 8 * 1024);
                let got = state(&db.engine);
                let at = states.iter().rposition(|s| *s == got).unwrap_or_else(|| {
                    panic!("seed {seed} cut {cut} {survival:?}: a state no prefix had ({rec})")
                });
                assert!(
                    at >= acked,
                    "seed {seed} cut {cut} {survival:?}: state of command {at}, but {acked} were acknowledged ({rec})"
                );
                checked += 1;
            }
        }
        let _ = states;
        let _ = acked;
    }
    assert!(checked >= 90);
}

#[test]
fn compaction_keeps_the_log_near_the_live_data() {
    let fs = mount(Blocking::new(RamDisk::new(4096, 512), NoWait));
    let (mut db, rec) = open(fs.clone(), 16 * 1024);
    assert!(rec.created);
    let big = "y".repeat(500);
    for i in 0..2000 {
        let k = format!("k{}", i % 10);
        assert_eq!(run(&mut db, &["SET", &k, &format!("{i}{big}")]), "+OK\r\n");
        if db.should_compact() {
            db.compact(NOW).expect("compacts");
        }
    }
    assert!(db.compactions() > 10, "{}", db.compactions());
    assert!(db.log_len() <= 16 * 1024 + 600, "{}", db.log_len());
    db.sync().expect("sync");
    let want = state(&db.engine);
    drop(db);
    let (db, rec) = open(fs, 16 * 1024);
    assert_eq!(state(&db.engine), want);
    assert_eq!(rec.keys, 10);
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_after_deletes() {
    // 1 MiB: 256 blocks of 4 KiB.
    let fs = mount(Blocking::new(RamDisk::new(2048, 512), NoWait));
    let (mut db, _) = open(fs.clone(), 16 * 1024);
    let value = "z".repeat(4000);
    let mut stored = 0;
    let full = loop {
        let reply = run(&mut db, &["SET", &format!("key{stored}"), &value]);
        if reply != "+OK\r\n" {
            break reply;
        }
        db.sync().expect("sync");
        stored += 1;
        assert!(stored < 1000, "never full");
    };
    assert_eq!(
        full,
        "-MISCONF Errors writing to the AOF file: No space left on device\r\n"
    );
    assert!(stored > 10);
    // The refused write left nothing behind; reads work.
    assert_eq!(run(&mut db, &["GET", &format!("key{stored}")]), "$-1\r\n");
    assert_eq!(run(&mut db, &["EXISTS", "key0"]), ":1\r\n");
    assert_eq!(run(&mut db, &["DBSIZE"]), format!(":{stored}\r\n"));
    // Deletes use the reserve; the compaction they bring frees the space.
    for i in 0..stored - 2 {
        assert_eq!(run(&mut db, &["DEL", &format!("key{i}")]), ":1\r\n");
        if db.should_compact() {
            // No room while the live data is large: tried again once it halved.
            let _ = db.compact(NOW);
        }
    }
    assert!(db.compactions() > 0);
    db.sync().expect("sync");
    assert_eq!(run(&mut db, &["SET", "again", &value]), "+OK\r\n");
    db.sync().expect("sync");
    let want = state(&db.engine);
    drop(db);
    let (db, _) = open(fs, 16 * 1024);
    assert_eq!(state(&db.engine), want);
    assert_eq!(want.len(), 3);
}

#[test]
fn torn_and_corrupt_tails_are_cut_and_new_records_follow() {
    let fs = mount(Blocking::new(RamDisk::new(4096, 512), NoWait));
    let (mut db, _) = open(fs.clone(), 1 << 20);
    for i in 0..50 {
        run(&mut db, &["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    db.sync().expect("sync");
    let len = db.log_len();
    drop(db);
    let mut rng = Rng::new(7);
    for (garbage, corrupt) in [
        (vec![5u8, 0, 0], false),                         // a torn header
        (vec![200, 0, 0, 0, 1, 2, 3, 4, 1, 9], false),    // a torn payload
        (vec![3, 0, 0, 0, 9, 9, 9, 9, 4, 4, 4], true),    // a bad CRC
        (vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0], true), // a length over max_record
    ] {
        fs.append("/kv/aof", &garbage).expect("append");
        fs.sync().expect("sync");
        let (mut db, rec) = open(fs.clone(), 1 << 20);
        assert_eq!(rec.records, 50, "{rec}");
        assert_eq!(rec.dropped, garbage.len() as u64, "{rec}");
        assert_eq!(
            matches!(rec.end, log::End::Corrupt { .. }),
            corrupt,
            "{rec}"
        );
        assert_eq!(db.log_len(), len);
        // Appends follow valid data: a later open reads them.
        let k = format!("extra{}", rng.below(1000));
        run(&mut db, &["SET", &k, "1"]);
        db.sync().expect("sync");
        run(&mut db, &["DEL", &k]);
        db.sync().expect("sync");
        drop(db);
        let (db, rec) = open(fs.clone(), 1 << 20);
        assert_eq!((rec.records, rec.dropped, rec.keys), (52, 0, 50), "{rec}");
        assert_eq!(db.log_len(), len + rec.bytes - len);
        // Back to 50 records for the next round.
        let n = db.log_len();
        drop(db);
        let _ = n;
        fs.set_len("/kv/aof", len).expect("cut");
        fs.sync().expect("sync");
    }
    // Larger than a replay piece, with records across piece boundaries.
    let (mut db, _) = open(fs.clone(), 1 << 20);
    let v = "q".repeat(7000);
    for i in 0..40 {
        run(&mut db, &["SET", &format!("big{i}"), &v]);
    }
    db.sync().expect("sync");
    let want = state(&db.engine);
    drop(db);
    let (db, rec) = open(fs, 1 << 20);
    assert_eq!(state(&db.engine), want);
    assert_eq!(rec.records, 90, "{rec}");
}

#[test]
fn rollback_undoes_every_kind_of_write() {
    let mut rng = Rng::new(3);
    let mut e = Engine::new(Settings::default());
    for i in 0..500 {
        let before = state(&e);
        let bytes = e.snapshot_bytes();
        let args = random_command(&mut rng, i);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        e.begin();
        e.execute(
            &Request::from_args(&args),
            &mut Session::default(),
            NOW,
            &mut Vec::new(),
        );
        if rng.below(2) == 0 {
            e.rollback();
            assert_eq!(state(&e), before, "{args:?}");
            assert_eq!(e.snapshot_bytes(), bytes);
            assert_eq!(
                e.expiring(),
                before.values().filter(|v| v.1.is_some()).count()
            );
        } else {
            e.commit();
        }
        let exact: u64 = state(&e)
            .iter()
            .map(|(k, (v, x))| set_record_bytes(k.len(), v.len(), x.is_some()))
            .sum();
        assert_eq!(e.snapshot_bytes(), exact);
    }
}

/// A sync's end names its own wait queue (wake it whole: it covered them) and the next sync's
/// (wake one); threads whose target the leader had not yet written when they came wait on the
/// next one.
#[test]
fn group_commit_puts_waiters_on_the_queue_of_the_sync_that_covers_them() {
    let mut c = Commit::new();
    assert_eq!(c.begin(10), Step::Sync(10));
    // Before the leader says what it wrote: maybe covered, maybe not: the next queue.
    assert_eq!(c.begin(12), Step::Wait);
    let (next, is_next) = c.wait_queue(12);
    assert!(is_next);
    c.written(15);
    assert_eq!(c.begin(14), Step::Wait);
    let (cur, is_next) = c.wait_queue(14);
    assert!(!is_next);
    assert_ne!(cur, next);
    assert_eq!(c.begin(20), Step::Wait);
    assert_eq!(c.wait_queue(20), (next, true));
    assert_eq!(c.end(15, true), (cur, next));
    // 12 (woken on the next queue) is covered; 20 leads the next sync, on the other queue.
    assert_eq!(c.begin(12), Step::Done);
    assert_eq!(c.begin(14), Step::Done);
    assert_eq!(c.begin(20), Step::Sync(20));
    c.written(20);
    assert_eq!(c.begin(20), Step::Wait);
    assert_eq!(c.wait_queue(20), (next, false));
    assert_eq!(c.end(20, true), (next, cur));
    // A failure: both queues whole, everyone fails.
    assert_eq!(c.begin(30), Step::Sync(30));
    assert_eq!(c.begin(31), Step::Wait);
    let _ = c.end(0, false);
    assert_eq!(c.begin(31), Step::Failed);
}

#[test]
fn group_commit_across_threads() {
    let fs = mount(Blocking::new(RamDisk::new(8192, 512), NoWait));
    let (db, _) = open(fs.clone(), 1 << 20);
    let db = Arc::new(Mutex::new(db));
    let commit = Arc::new((Mutex::new(Commit::new()), [Condvar::new(), Condvar::new()]));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (db, commit, fs) = (db.clone(), commit.clone(), fs.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..40 {
                    let key = format!("t{t}-{i}");
                    let mut out = Vec::new();
                    let target = {
                        let mut db = db.lock().expect("lock");
                        db.execute(
                            &Request::from_args(&["SET", &key, "v"]),
                            &mut Session::default(),
                            NOW,
                            &mut out,
                        );
                        db.appended()
                    };
                    let (lock, cond) = &*commit;
                    let mut c = lock.lock().expect("lock");
                    let mut waited_next: Option<usize> = None;
                    loop {
                        match c.begin(target) {
                            Step::Done => {
                                if let Some(q) = waited_next {
                                    cond[q].notify_one();
                                }
                                break;
                            }
                            Step::Wait => {
                                let (q, next) = c.wait_queue(target);
                                waited_next = next.then_some(q);
                                // Bounded: a lost wake-up fails the test instead of hanging.
                                let (g, timeout) = cond[q]
                                    .wait_timeout(c, std::time::Duration::from_secs(20))
                                    .expect("lock");
                                assert!(!timeout.timed_out(), "a group commit wake-up was lost");
                                c = g;
                            }
                            Step::Sync(_) => {
                                drop(c);
                                // The pending records go to the file under the store's lock;
                                // the sync runs without it, while others execute.
                                let upto = db.lock().expect("lock").write_pending();
                                let upto = upto.expect("appends");
                                lock.lock().expect("lock").written(upto);
                                let ok = fs.sync().is_ok();
                                c = lock.lock().expect("lock");
                                let (covered, next) = c.end(upto, ok);
                                cond[covered].notify_all();
                                cond[next].notify_one();
                            }
                            Step::Failed => panic!("no failure here"),
                        }
                    }
                    assert_eq!(out, b"+OK\r\n");
                    acked.push(key);
                }
                acked
            })
        })
        .collect();
    let acked: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    assert_eq!(acked.len(), 240);
    assert!(commit.0.lock().expect("lock").syncs() <= 240);
    drop(db);
    // What a power cut now would leave: only what the syncs made durable.
    let fs = take(fs).into_inner().expect("lock");
    let img = fs.into_inner().into_inner().0.into_image();
    let (db, _) = open(
        mount(Blocking::new(RamDisk::from_image(img, 512), NoWait)),
        1 << 20,
    );
    for k in acked {
        assert!(state(&db.engine).contains_key(k.as_bytes()), "{k}");
    }
}

#[test]
fn a_failed_sync_fails_the_waiters_and_refuses_writes() {
    let mut c = Commit::new();
    assert_eq!(c.begin(10), Step::Sync(10));
    assert_eq!(c.begin(20), Step::Wait);
    c.end(10, true);
    assert_eq!(c.begin(10), Step::Done);
    assert_eq!(c.begin(20), Step::Sync(20));
    c.end(20, false);
    assert_eq!(c.begin(25), Step::Failed);
    assert_eq!(c.begin(20), Step::Failed);
    assert_eq!(c.begin(10), Step::Done);
    let fs = mount(Blocking::new(RamDisk::new(4096, 512), NoWait));
    let (mut db, _) = open(fs, 1 << 20);
    db.set_broken();
    assert!(
        run(&mut db, &["SET", "a", "b"]).starts_with("-MISCONF Errors writing to the AOF file: ")
    );
    assert_eq!(run(&mut db, &["GET", "a"]), "$-1\r\n");
    assert_eq!(Failure::NoSpace.to_string(), "No space left on device");
}

/// A storage that counts the calls made to it.
struct Counting<S> {
    inner: S,
    calls: std::cell::Cell<usize>,
    appends: std::cell::Cell<usize>,
}

impl<S: Storage> Storage for Counting<S> {
    type Error = S::Error;
    fn size(&self, path: &str) -> Result<Option<u64>, S::Error> {
        self.calls.set(self.calls.get() + 1);
        self.inner.size(path)
    }
    fn read_at(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, S::Error> {
        self.calls.set(self.calls.get() + 1);
        self.inner.read_at(path, offset, buf)
    }
    fn append(&self, path: &str, data: &[u8]) -> Result<(), S::Error> {
        self.calls.set(self.calls.get() + 1);
        self.appends.set(self.appends.get() + 1);
        self.inner.append(path, data)
    }
    fn create(&self, path: &str) -> Result<(), S::Error> {
        self.calls.set(self.calls.get() + 1);
        self.inner.create(path)
    }
    fn set_len(&self, path: &str, len: u64) -> Result<(), S::Error> {
        self.calls.set(self.calls.get() + 1);
        self.inner.set_len(path, len)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), S::Error> {
        self.calls.set(self.calls.get() + 1);
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<(), S::Error> {
        self.calls.set(self.calls.get() + 1);
        self.inner.remove(path)
    }
    fn sync(&self) -> Result<(), S::Error> {
        self.calls.set(self.calls.get() + 1);
        self.inner.sync()
    }
    fn free(&self) -> Option<u64> {
        self.calls.set(self.calls.get() + 1);
        self.inner.free()
    }
    fn is_no_space(e: &S::Error) -> bool {
        S::is_no_space(e)
    }
}

/// Group commit groups: commands make no filesystem call (so none waits behind a running
/// sync, which holds the filesystem's lock), and the leader writes a whole batch with one
/// append; what it wrote and synced survives a power cut, what came after is not in the file.
#[test]
fn commands_make_no_filesystem_call_and_a_batch_is_one_append() {
    let fs = mount(Blocking::new(RamDisk::new(8192, 512), NoWait));
    let counting = Counting {
        inner: fs.clone(),
        calls: 0.into(),
        appends: 0.into(),
    };
    let (mut db, _) = Db::open(
        counting,
        settings(1 << 20),
        Engine::new(Settings::default()),
        NOW,
    )
    .expect("opens");
    let calls = db.storage().calls.get();
    for i in 0..100 {
        let k = format!("k{i}");
        assert_eq!(run(&mut db, &["SET", &k, &"v".repeat(i)]), "+OK\r\n");
        assert_eq!(
            run(&mut db, &["GET", &k]).len(),
            5 + i.to_string().len() + i
        );
        run(&mut db, &["DEL", "nothing", &k]);
        run(&mut db, &["SET", &k, "again"]);
    }
    assert_eq!(
        db.storage().calls.get(),
        calls,
        "commands called the filesystem"
    );
    assert!(db.pending() > 0);
    let upto = db.write_pending().expect("appends");
    assert_eq!(upto, db.appended());
    assert_eq!(db.pending(), 0);
    assert_eq!(db.storage().appends.get(), 1, "one append for the batch");
    db.storage().sync().expect("sync");
    // After the sync: a command not yet written is not in the file.
    run(&mut db, &["SET", "late", "1"]);
    let want = state(&db.engine);
    drop(db);
    let (db, rec) = open(fs, 1 << 20);
    assert_eq!(rec.records, 300);
    let mut got = state(&db.engine);
    assert_eq!(got.len(), 100);
    got.insert(b"late".to_vec(), (b"1".to_vec(), None));
    assert_eq!(got, want);
}
