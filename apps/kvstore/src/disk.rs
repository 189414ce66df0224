//! The persistent store (images with a filesystem): the engine with its log
//! (`kv::persist::Db`) on `stardust::fs` at `/kvstore/aof`, group commit across connection
//! threads, compaction inline by the thread whose batch crossed the bound.
//!
//! Commands log their records into `Db`'s pending buffer (no filesystem call, so none waits
//! behind a sync, which holds the kernel's filesystem lock for its I/O); the group-commit leader
//! appends the whole buffer under the store's lock and syncs without it. Every append (the
//! leader's, a compaction's) is made under the store's lock, so they never interleave.

use alloc::format;
use alloc::string::String;
use kv::persist::{Commit, Db, Settings as LogSettings, Step, Storage};
use kv::{Effect, Engine, Session, Settings};
use resp::Request;
use stardust::fs::{self, Error, File, OpenOptions};
use stardust::println;
use stardust::settings::{KV_MAX_FRAME, KV_MAX_KEYS};
use core::sync::atomic::{AtomicU64, Ordering};
use stardust::sync::{Condvar, Mutex, MutexGuard};

/// The log's directory.
const DIR: &str = "/kvstore";

/// `kv::persist::Storage` on the kernel's filesystem (one lock inside the kernel). Keeps the
/// file last appended to open (dropped when any file is created, renamed or removed).
pub struct FsLog {
    open: Mutex<Option<(String, File)>>,
}

impl Storage for FsLog {
    type Error = Error;
    fn size(&self, path: &str) -> Result<Option<u64>, Error> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn read_at(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        File::open(path)?.read_at(offset, buf)
    }
    fn append(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        let mut open = self.open.lock();
        let f = match &mut *open {
            Some((p, f)) if p == path => f,
            slot => {
                let f = OpenOptions::new().append(true).create(true).open(path)?;
                &mut slot.insert((String::from(path), f)).1
            }
        };
        let mut rest = data;
        while !rest.is_empty() {
            match f.write(rest)? {
                0 => return Err(Error::NoSpace),
                n => rest = &rest[n..],
            }
        }
        Ok(())
    }
    fn create(&self, path: &str) -> Result<(), Error> {
        *self.open.lock() = None;
        fs::write(path, [])
    }
    fn set_len(&self, path: &str, len: u64) -> Result<(), Error> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        *self.open.lock() = None;
        fs::rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<(), Error> {
        *self.open.lock() = None;
        match fs::remove_file(path) {
            Err(Error::NotFound) => Ok(()),
            r => r,
        }
    }
    fn sync(&self) -> Result<(), Error> {
        fs::sync()
    }
    fn free(&self) -> Option<u64> {
        let u = fs::usage().ok()?;
        // `used` counts the blocks the next sync writes. sdfs keeps 48 blocks for metadata,
        // and a write's cost counts its tree's paths.
        Some(
            u.blocks
                .saturating_sub(u.used)
                .saturating_sub(48 + 10)
                .saturating_mul(u64::from(u.block_size)),
        )
    }
    fn is_no_space(e: &Error) -> bool {
        matches!(e, Error::NoSpace)
    }
}

/// What the connection threads lock: the engine and its log.
pub type Inner = Db<FsLog>;

/// The shared store.
pub struct Store {
    inner: Mutex<Inner>,
    commit: Mutex<Commit>,
    /// Group commit's two wait queues: the running sync's and the next one's
    /// (`Commit::wait_queue`), so that a sync's end wakes the threads it covers and one to
    /// lead next, not every waiter.
    wake: [Condvar; 2],
    /// `commit`'s durable sequence number, read without its lock: a batch that needs no more
    /// (reads while nothing is pending) goes out at once.
    durable: AtomicU64,
}

/// What `CONFIG GET appendonly` says, and the ready line's words.
pub const MODE: &str = "persistent: log /kvstore/aof";

impl Store {
    /// Recovers the store from its log (made on a new disk); logs what it found.
    pub fn open(now_ms: u64) -> Result<Store, String> {
        match fs::status() {
            fs::Status::Mounted(_) => {}
            fs::Status::NoDisk => return Err(String::from("no disk (attach one: --disk FILE)")),
            fs::Status::Refused(e) => return Err(format!("the disk was refused: {e}")),
        }
        match fs::create_dir(DIR) {
            Ok(()) | Err(Error::AlreadyExists) => {}
            Err(e) => return Err(format!("{DIR}: {e}")),
        }
        let engine = Engine::new(Settings {
            max_keys: KV_MAX_KEYS,
            record: true,
            appendonly: true,
        });
        let mut settings = LogSettings::for_frame(DIR, KV_MAX_FRAME);
        // On a small disk the floor is an eighth of it, so that disk use follows live data.
        if let Ok(u) = fs::usage() {
            let size = u.blocks.saturating_mul(u64::from(u.block_size));
            settings.compact_floor = settings.compact_floor.min(size / 8);
        }
        let log = FsLog {
            open: Mutex::new(None),
        };
        let (db, rec) = Db::open(log, settings, engine, now_ms)
            .map_err(|e| format!("{DIR}/aof: {e}"))?;
        println!("kvstore: recovered {DIR}/aof: {rec}");
        Ok(Store {
            inner: Mutex::new(db),
            commit: Mutex::new(Commit::new()),
            wake: [Condvar::new(), Condvar::new()],
            durable: AtomicU64::new(0),
        })
    }

    /// The engine and its log, locked.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Ends a batch (still locked): compacts the log if it grew past its bound, and gives the
    /// sequence number the batch's replies wait for ([`Store::durable`]).
    pub fn finish(&self, inner: &mut Inner, now_ms: u64) -> u64 {
        if inner.should_compact() {
            let before = inner.log_len();
            match inner.compact(now_ms) {
                Ok(()) => {
                    let mut c = self.commit.lock();
                    c.published(inner.appended());
                    self.durable.store(c.durable(), Ordering::Release);
                    drop(c);
                    stardust::log::info!(
                        "kvstore: log compacted: {before} -> {} bytes",
                        inner.log_len()
                    );
                }
                Err(e) => stardust::log::warn!("kvstore: log compaction failed: {e}"),
            }
        }
        inner.appended()
    }

    /// Waits until everything up to `target` is durable, leading a sync when none runs (group
    /// commit: the leader writes every pending record under the store's lock, then syncs
    /// without it). False when a sync failed: the replies must not be sent.
    pub fn durable(&self, target: u64) -> bool {
        if target <= self.durable.load(Ordering::Acquire) {
            return true;
        }
        let mut c = self.commit.lock();
        // The next sync's queue, if this thread waited there: once covered, it wakes one more.
        let mut waited_next: Option<usize> = None;
        loop {
            match c.begin(target) {
                Step::Done => {
                    if let Some(q) = waited_next {
                        self.wake[q].notify_one();
                    }
                    return true;
                }
                Step::Wait => {
                    let (q, next) = c.wait_queue(target);
                    waited_next = next.then_some(q);
                    c = self.wake[q].wait(c);
                }
                Step::Sync(_) => {
                    drop(c);
                    let written = self.inner.lock().write_pending();
                    if let Ok(upto) = written {
                        self.commit.lock().written(upto);
                    }
                    let r = match written {
                        Ok(upto) => fs::sync().map(|()| upto).map_err(|e| format!("{e}")),
                        Err(e) => Err(format!("{e}")),
                    };
                    c = self.commit.lock();
                    let (covered, next) = c.end(*r.as_ref().unwrap_or(&0), r.is_ok());
                    self.durable.store(c.durable(), Ordering::Release);
                    self.wake[covered].notify_all();
                    if r.is_ok() {
                        self.wake[next].notify_one();
                    } else {
                        self.wake[next].notify_all();
                    }
                    if let Err(e) = r {
                        stardust::log::error!("kvstore: writing the log failed: {e}; writes refused until restart");
                        drop(c);
                        self.inner.lock().set_broken();
                        c = self.commit.lock();
                    }
                }
                Step::Failed => return false,
            }
        }
    }
}

/// One command on the locked store.
pub fn execute(
    inner: &mut Inner,
    request: &Request,
    session: &mut Session,
    now_ms: u64,
    out: &mut alloc::vec::Vec<u8>,
) -> Effect {
    inner.execute(request, session, now_ms, out)
}

/// Removes expired keys (not logged: a replay drops them).
pub fn sweep(inner: &mut Inner, now_ms: u64, budget: usize) {
    inner.engine.sweep(now_ms, budget);
}
