//! Persistence: the store's append-only log on a filesystem, recovered at boot, compacted as
//! it grows, with group commit. Written against a small [`Storage`] trait, so that host tests
//! run it over `sdfs` on `blockdev`'s power-cut fake and the app over `stardust::fs`.
//!
//! # The contract: a reply is sent only after everything it depends on is durable
//! [`Db::execute`] runs a command and logs its [`Mutation`]'s record into a pending buffer in
//! memory before the engine's lock is released: no filesystem call, so commands run while a
//! sync is under way. A write that cannot be logged is found at once: the command is undone
//! ([`Engine::rollback`]: nobody saw it) and answered `-MISCONF Errors writing to the AOF file:
//! <reason>`, as Redis words an AOF write failure (`No space left on device` for a full disk,
//! judged by an estimate of the free space: see below). Durability comes after: every record
//! gets a log sequence number (the log's bytes ever logged, [`Db::appended`]), and a batch of
//! commands may be answered only once [`Commit::durable`] reaches the sequence number the log
//! had when the batch ran, whether the batch wrote or only read: a read may have seen a value
//! not yet durable, and must not show it before it is.
//!
//! **Group commit**: [`Commit`] is the leader/follower state. A thread that must wait either
//! finds a sync running (it waits for it, and the next one covers its records, with all the
//! records that came in meanwhile) or becomes the leader: under the store's lock it appends the
//! whole pending buffer to the log file with one call ([`Db::write_pending`], which gives the
//! sequence number it ends at), then syncs without any lock held, and publishes that number
//! as durable. Commands that run during the sync log into the next buffer, which the next
//! leader writes: one sync per batch of waiting connections, not per record. Appends happen
//! only under the store's lock (the leader's, a compaction's), so they never interleave. The
//! caller keeps `Commit` behind a mutex with a condition variable ([`Commit::begin`],
//! [`Commit::end`]); the lock order is the store's lock, then `Commit`'s, never the other way.
//!
//! # Recovery
//! [`Db::open`] replays the log into an empty engine up to its first torn or corrupt record
//! (framing: [`crate::log`]), cuts the file there so that new records follow valid data, syncs,
//! and says what it found ([`Recovery`]: records, keys, bytes kept and dropped). The log is
//! read in pieces: memory holds at most [`Settings::max_record`] and a piece, never the file.
//! A record longer than `max_record` counts as corrupt. A leftover compaction file is removed.
//!
//! # Compaction
//! When the log exceeds `max(2 x the live data's encoded size, Settings::compact_floor)`
//! ([`Engine::snapshot_bytes`], exact and kept up to date by the engine), [`Db::compact`] writes
//! one `Set` record per live key to a new file, syncs, renames it over the log (sdfs renames
//! atomically at the next sync) and syncs again. A cut before the rename is durable leaves the
//! old log whole (and the new file, removed at the next boot); after it, the new one. The
//! compacted log holds every change logged so far, durable, written or pending, so its last sync makes
//! all of them durable. Disk use then follows live data.
//!
//! # A full disk
//! Writes that add data (`Set`, `MSet`) are refused while the space left would fall under
//! [`Settings::reserve`], which keeps room for `DEL` and `FLUSHALL` records: a client can delete
//! keys on a full disk, and once the live data is small enough, the compaction that follows
//! frees the space and writes resume. A refused write first tries a compaction when the log is
//! larger than the live data. Reads always work. The space left is an estimate kept without
//! filesystem calls: [`Storage::free`] after the last append, less the records logged since;
//! when it says no, `free` is asked again before refusing (a sync may have freed blocks since).
//! Should the leader's append fail all the same (the estimate was wrong), it is a failed sync.
//!
//! # A failed sync
//! A sync or a leader's append that fails (a device error; sdfs then refuses everything until
//! it is mounted again) leaves records that will never be durable: [`Commit`] fails every wait
//! for them and every later one, and [`Db`] refuses writes from then on (`MISCONF`). The app
//! closes such connections without their replies; a restart recovers the last durable state.

use crate::log::{self, End, HEADER, Mutation, Records};
use crate::{Effect, Engine, Session};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use resp::Request;

/// What the log needs of a filesystem. Methods take `&self`: the implementation locks what it
/// must (the kernel's filesystem has one lock), so a sync runs while other threads append.
pub trait Storage {
    /// The filesystem's error; its `Display` goes into the `MISCONF` error.
    type Error: fmt::Display;
    /// The file's size, `None` when there is no such file.
    fn size(&self, path: &str) -> Result<Option<u64>, Self::Error>;
    /// Reads from `offset` into `buf`: the bytes read (0 at the end).
    fn read_at(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// Appends `data`, creating the file when missing (its directory exists).
    fn append(&self, path: &str, data: &[u8]) -> Result<(), Self::Error>;
    /// Creates an empty file, or empties an existing one.
    fn create(&self, path: &str) -> Result<(), Self::Error>;
    /// Cuts the file to `len` bytes.
    fn set_len(&self, path: &str, len: u64) -> Result<(), Self::Error>;
    /// Renames `from` over `to` (atomically at the next sync).
    fn rename(&self, from: &str, to: &str) -> Result<(), Self::Error>;
    /// Removes the file (no error when it does not exist).
    fn remove(&self, path: &str) -> Result<(), Self::Error>;
    /// Makes every change so far durable.
    fn sync(&self) -> Result<(), Self::Error>;
    /// Bytes that writes of data can still take (`None`: unknown).
    fn free(&self) -> Option<u64>;
    /// Whether `e` says the disk is full.
    fn is_no_space(e: &Self::Error) -> bool;
}

/// Where the log lives and its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The log file (its directory must exist).
    pub log: String,
    /// The compaction's new file, renamed over `log` (same directory).
    pub tmp: String,
    /// The longest record: longer ones in a log are corrupt (the largest request,
    /// `kv_max_frame`, plus the framing: [`Settings::for_frame`]).
    pub max_record: usize,
    /// The log is compacted only once larger than this (and than twice the live data).
    pub compact_floor: u64,
    /// Space kept free for `DEL` and `FLUSHALL` records (see the module docs).
    pub reserve: u64,
}

impl Settings {
    /// The log `dir/aof` (and `dir/aof.new`) for requests of at most `max_frame` bytes; a
    /// floor of 1 MiB, a reserve of 128 KiB.
    pub fn for_frame(dir: &str, max_frame: usize) -> Self {
        let mut log = String::from(dir.trim_end_matches('/'));
        log.push_str("/aof");
        let mut tmp = log.clone();
        tmp.push_str(".new");
        Settings {
            log,
            tmp,
            // A record's fields are never longer than the request's arguments (each argument
            // costs at least 4 bytes of RESP framing where the record spends 4 on a length),
            // plus a header, a tag, an expiry.
            max_record: max_frame.saturating_add(64),
            compact_floor: 1 << 20,
            reserve: 128 << 10,
        }
    }
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// There was no log (a new store): an empty one was made.
    pub created: bool,
    /// Records replayed.
    pub records: u64,
    /// Keys in the store afterwards.
    pub keys: usize,
    /// Bytes of valid records (the log's size afterwards).
    pub bytes: u64,
    /// Bytes cut off the end (a torn or corrupt tail).
    pub dropped: u64,
    /// Why reading stopped.
    pub end: End,
    /// A compaction's leftover file was removed.
    pub removed_tmp: bool,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created {
            return f.write_str("no log: a new, empty store");
        }
        write!(
            f,
            "{} records, {} keys, {} bytes replayed; ",
            self.records, self.keys, self.bytes
        )?;
        match self.end {
            End::Clean | End::NotYet => f.write_str("clean end")?,
            End::Torn { .. } => write!(f, "a torn tail of {} bytes dropped", self.dropped)?,
            End::Corrupt { .. } => write!(f, "a corrupt tail of {} bytes dropped", self.dropped)?,
        }
        if self.removed_tmp {
            f.write_str("; an unfinished compaction's file removed")?;
        }
        Ok(())
    }
}

/// A log write that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The disk is full (or only the reserve is left).
    NoSpace,
    /// A sync failed earlier: nothing more can be made durable.
    Broken,
    /// The filesystem's error, in words.
    Other(String),
}

impl fmt::Display for Failure {
    /// The reason part of Redis's `MISCONF Errors writing to the AOF file: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoSpace => f.write_str("No space left on device"),
            Failure::Broken => f.write_str("Input/output error (a sync failed; restart)"),
            Failure::Other(s) => f.write_str(s),
        }
    }
}

fn failure<S: Storage>(e: S::Error) -> Failure {
    if S::is_no_space(&e) {
        Failure::NoSpace
    } else {
        Failure::Other(e.to_string())
    }
}

/// The engine with its log: what the app keeps behind its lock.
#[derive(Debug)]
pub struct Db<S> {
    /// The store.
    pub engine: Engine,
    storage: S,
    settings: Settings,
    /// Bytes in the log: the file's and the pending records'.
    log_len: u64,
    /// Bytes ever logged, pending ones included (the log sequence number).
    appended: u64,
    /// Records logged but not yet in the file ([`Db::write_pending`] appends them).
    pending: Vec<u8>,
    /// Bytes that writes of data can still take, estimated without a filesystem call: the
    /// storage's [`Storage::free`] at the last look, less the records logged since.
    free: Option<u64>,
    broken: bool,
    /// Compactions done.
    compactions: u64,
    /// The live data's size when a compaction last found no room: the next waits until the
    /// data is half that.
    blocked: Option<u64>,
    /// The next pending buffer (swapped in by [`Db::write_pending`], so that none is
    /// allocated per batch).
    spare: Vec<u8>,
}

/// Bytes read per piece during recovery.
const PIECE: usize = 64 * 1024;

impl<S: Storage> Db<S> {
    /// Opens (or makes) the log and replays it into `engine`, which should be empty (see the
    /// module docs).
    pub fn open(
        storage: S,
        settings: Settings,
        mut engine: Engine,
        now_ms: u64,
    ) -> Result<(Self, Recovery), S::Error> {
        let removed_tmp = storage.size(&settings.tmp)?.is_some();
        if removed_tmp {
            storage.remove(&settings.tmp)?;
        }
        let mut rec = Recovery {
            created: false,
            records: 0,
            keys: 0,
            bytes: 0,
            dropped: 0,
            end: End::Clean,
            removed_tmp,
        };
        let size = match storage.size(&settings.log)? {
            Some(n) => n,
            None => {
                storage.create(&settings.log)?;
                rec.created = true;
                0
            }
        };
        // `buf` holds the log from byte `base` on; whole records are replayed and dropped.
        let mut buf: Vec<u8> = Vec::new();
        let mut base = 0u64;
        let mut eof = size == 0;
        let end = loop {
            while !eof && buf.len() < settings.max_record + HEADER {
                let old = buf.len();
                buf.resize(old + PIECE, 0);
                let n = storage.read_at(&settings.log, base + old as u64, &mut buf[old..])?;
                buf.truncate(old + n);
                eof = n == 0 || base + buf.len() as u64 >= size;
            }
            let mut records = Records::new(&buf);
            for m in records.by_ref() {
                engine.apply(m, now_ms);
                rec.records += 1;
            }
            let used = records.position();
            let end = records.end();
            let torn_len = buf
                .get(used..used + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            buf.drain(..used);
            base += used as u64;
            match end {
                End::Torn { .. } if torn_len.is_some_and(|n| n > settings.max_record) => {
                    break End::Corrupt { at: base as usize };
                }
                End::Torn { .. } | End::Clean if !eof => {}
                End::Torn { .. } => break End::Torn { at: base as usize },
                End::Corrupt { .. } => break End::Corrupt { at: base as usize },
                End::Clean | End::NotYet => break End::Clean,
            }
        };
        rec.end = end;
        rec.bytes = base;
        rec.dropped = size.saturating_sub(base);
        if rec.dropped > 0 {
            storage.set_len(&settings.log, base)?;
        }
        if rec.dropped > 0 || rec.created || removed_tmp {
            storage.sync()?;
        }
        rec.keys = engine.len();
        let free = storage.free();
        let db = Db {
            engine,
            storage,
            settings,
            log_len: base,
            appended: 0,
            pending: Vec::new(),
            free,
            broken: false,
            compactions: 0,
            blocked: None,
            spare: Vec::new(),
        };
        Ok((db, rec))
    }

    /// The log sequence number: bytes appended since open. A batch that ran when it was `n`
    /// may be answered once [`Commit::durable`] is at least `n`.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// Bytes in the log file.
    pub fn log_len(&self) -> u64 {
        self.log_len
    }

    /// Compactions done since open.
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// The filesystem.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Its settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Refuses writes from now on (a sync failed: see the module docs).
    pub fn set_broken(&mut self) {
        self.broken = true;
    }

    /// Runs one command and logs its change (see the module docs): a write that cannot be
    /// logged is undone and answered with `MISCONF`. The reply is in `out`; the caller sends
    /// it once `Commit::durable() >= self.appended()`.
    pub fn execute(
        &mut self,
        request: &Request,
        session: &mut Session,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Effect {
        let start = out.len();
        let mut retried = false;
        loop {
            self.engine.begin();
            let mut effect = self.engine.execute(request, session, now_ms, out);
            let Some(m) = effect.mutation.take() else {
                self.engine.commit();
                return effect;
            };
            match self.log(&m) {
                Ok(()) => {
                    self.engine.commit();
                    return effect;
                }
                Err(e) => {
                    self.engine.rollback();
                    out.truncate(start);
                    // A compaction may make room: once, when the log is larger than the data.
                    if e == Failure::NoSpace
                        && !retried
                        && self.log_len > self.engine.snapshot_bytes()
                        && self.compact(now_ms).is_ok()
                    {
                        retried = true;
                        continue;
                    }
                    resp::error_fmt(
                        out,
                        format_args!("MISCONF Errors writing to the AOF file: {e}"),
                    );
                    return effect;
                }
            }
        }
    }

    /// Logs `m`'s record into the pending buffer (checking the reserve for records that add
    /// data against the free-space estimate): no filesystem call, unless the estimate says
    /// the disk is full, when it is looked at again.
    fn log(&mut self, m: &Mutation) -> Result<(), Failure> {
        if self.broken {
            return Err(Failure::Broken);
        }
        let start = self.pending.len();
        log::encode(m, &mut self.pending);
        let len = (self.pending.len() - start) as u64;
        let adds = matches!(m, Mutation::Set { .. } | Mutation::MSet { .. });
        let refused = if self.pending.len() - start > self.settings.max_record {
            // Never written: a replay would take it for a corrupt record.
            Some(Failure::Other(
                "record over the log's max_record".to_string(),
            ))
        } else if adds && !self.room(self.settings.reserve + len, start) {
            Some(Failure::NoSpace)
        } else {
            None
        };
        if let Some(e) = refused {
            self.pending.truncate(start);
            return Err(e);
        }
        self.free = self.free.map(|f| f.saturating_sub(len));
        self.log_len += len;
        self.appended += len;
        Ok(())
    }

    /// Whether `need` bytes are free: by the estimate, or else by the storage's figure now
    /// (less the `pending` bytes not in the file yet), which becomes the estimate.
    fn room(&mut self, need: u64, pending: usize) -> bool {
        if self.free.is_none_or(|f| f >= need) {
            return true;
        }
        self.free = self
            .storage
            .free()
            .map(|f| f.saturating_sub(pending as u64));
        self.free.is_none_or(|f| f >= need)
    }

    /// Bytes of records logged and not yet in the file.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Group commit's leader, under the store's lock: appends every pending record to the
    /// log file with one filesystem call (cheap: in the filesystem's memory) and gives the
    /// sequence number they end at, which the leader's sync, made after releasing the lock,
    /// makes durable ([`Commit::end`]). Commands that run meanwhile log into the next buffer.
    /// A failed append (a full disk the estimate missed) breaks the log as a failed sync
    /// does: nothing logged so far is made durable again (see the module docs).
    pub fn write_pending(&mut self) -> Result<u64, Failure> {
        if self.broken {
            return Err(Failure::Broken);
        }
        if !self.pending.is_empty() {
            let r = self.storage.append(&self.settings.log, &self.pending);
            core::mem::swap(&mut self.pending, &mut self.spare);
            self.pending.clear();
            if let Err(e) = r {
                self.broken = true;
                return Err(failure::<S>(e));
            }
            self.free = self.storage.free();
        }
        Ok(self.appended)
    }

    /// One thread's commit: [`write_pending`](Self::write_pending), then a sync. A failed
    /// sync breaks the log.
    pub fn sync(&mut self) -> Result<u64, Failure> {
        let upto = self.write_pending()?;
        if self.storage.sync().is_err() {
            self.broken = true;
            return Err(Failure::Broken);
        }
        Ok(upto)
    }

    /// Whether the log has grown past its bound (see the module docs).
    pub fn should_compact(&self) -> bool {
        let live = self.engine.snapshot_bytes();
        !self.broken
            && self.blocked.is_none_or(|b| live <= b / 2)
            && self.log_len
                > self
                    .settings
                    .compact_floor
                    .max(self.engine.snapshot_bytes().saturating_mul(2))
    }

    /// Rewrites the log as one record per live key (see the module docs). One that finds no
    /// room is not tried again by [`should_compact`](Self::should_compact) until the live data
    /// is half as large. Afterwards every
    /// change logged so far is durable: the caller may publish [`appended`](Self::appended)
    /// as durable ([`Commit::published`]). A sync that fails breaks the log
    /// ([`set_broken`](Self::set_broken)); other errors leave the old log in use.
    pub fn compact(&mut self, now_ms: u64) -> Result<(), Failure> {
        if self.broken {
            return Err(Failure::Broken);
        }
        let r = self.write_snapshot(now_ms);
        self.blocked = None;
        if let Err(e) = &r {
            if *e == Failure::NoSpace {
                self.blocked = Some(self.engine.snapshot_bytes());
            }
            if *e == Failure::Broken {
                self.broken = true;
            } else {
                // The old log is whole; the new file goes (and at the next boot if this fails).
                let _ = self.storage.remove(&self.settings.tmp);
            }
        }
        r
    }

    fn write_snapshot(&mut self, now_ms: u64) -> Result<(), Failure> {
        let tmp = self.settings.tmp.clone();
        self.storage.create(&tmp).map_err(failure::<S>)?;
        let mut written = 0u64;
        let mut buf = Vec::new();
        for (key, value, expire_at) in self.engine.entries(now_ms) {
            log::encode(
                &Mutation::Set {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    expire_at,
                },
                &mut buf,
            );
            if buf.len() >= PIECE {
                self.storage.append(&tmp, &buf).map_err(failure::<S>)?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        self.storage.append(&tmp, &buf).map_err(failure::<S>)?;
        written += buf.len() as u64;
        self.storage.sync().map_err(|_| Failure::Broken)?;
        self.storage
            .rename(&tmp, &self.settings.log)
            .map_err(failure::<S>)?;
        self.storage.sync().map_err(|_| Failure::Broken)?;
        // The snapshot holds the pending records' changes: they are durable with it.
        self.pending.clear();
        self.log_len = written;
        self.free = self.storage.free();
        self.compactions += 1;
        Ok(())
    }
}

/// Group commit's shared state (see the module docs): keep it behind a mutex with a condition
/// variable.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The highest sequence number any batch is known to need (noted by [`begin`](Self::begin)).
    noted: u64,
    durable: u64,
    syncing: bool,
    failed: bool,
    syncs: u64,
    /// Where the running sync's leader wrote up to ([`Commit::written`]), once it did.
    in_flight: Option<u64>,
}

/// What a thread waiting for `target` does next ([`Commit::begin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Durable already: send the replies.
    Done,
    /// A sync is running: wait on the condition variable [`Commit::wait_queue`] names, then
    /// call `begin` again.
    Wait,
    /// Lead: release the lock, write the pending records ([`Db::write_pending`], under the
    /// store's lock), tell [`Commit::written`] the sequence number it gave (at least this one:
    /// the highest target noted), sync, then call [`Commit::end`] with that number and the
    /// result, and wake whom it says.
    Sync(u64),
    /// A sync failed: the target will never be durable. Send nothing.
    Failed,
}

impl Commit {
    /// Nothing durable yet (the sequence numbers of a freshly opened [`Db`] start at 0).
    pub fn new() -> Self {
        Commit::default()
    }

    /// Everything up to here is durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Syncs led so far.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Whether a sync failed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// A thread needs everything up to `target` durable: what to do.
    pub fn begin(&mut self, target: u64) -> Step {
        self.noted = self.noted.max(target);
        if self.durable >= target {
            Step::Done
        } else if self.failed {
            Step::Failed
        } else if self.syncing {
            Step::Wait
        } else {
            self.syncing = true;
            self.syncs += 1;
            Step::Sync(self.noted)
        }
    }

    /// The leader wrote everything up to `upto` (before its sync): threads waiting for no more
    /// than that wait for this sync, the others for the next one ([`Commit::wait_queue`]).
    pub fn written(&mut self, upto: u64) {
        if self.syncing {
            self.in_flight = Some(upto);
        }
    }

    /// Which of two wait queues (condition variables) a thread told to [`Step::Wait`] for
    /// `target` waits on, and whether it is the next sync's: the running sync's queue if that
    /// sync covers `target`, else the next sync's (also while the leader has not yet said what
    /// it wrote). Each sync's end wakes its own queue whole, and one thread of the next to lead
    /// ([`Commit::end`]), instead of every waiter. A thread woken on the next sync's queue that
    /// finds its target durable wakes one more thread of that queue.
    pub fn wait_queue(&self, target: u64) -> (usize, bool) {
        let next = self.in_flight.is_none_or(|upto| target > upto);
        // Below 2: fits.
        (((self.syncs + u64::from(next)) % 2) as usize, next)
    }

    /// The leader's sync of everything up to `upto` ended: the two wait queues
    /// ([`Commit::wait_queue`]), the sync's own and the next one's. Wake the first whole (the
    /// sync covered them) and one thread of the second: it leads the next sync, or finds itself
    /// covered and wakes one more of that queue (so the queue drains one by one until someone
    /// must lead). After a failure, wake both whole. Waking every waiter on both is also
    /// correct, only slower.
    pub fn end(&mut self, upto: u64, ok: bool) -> (usize, usize) {
        self.syncing = false;
        self.in_flight = None;
        if ok {
            self.durable = self.durable.max(upto);
        } else {
            self.failed = true;
        }
        // Below 2: fits.
        ((self.syncs % 2) as usize, ((self.syncs + 1) % 2) as usize)
    }

    /// Everything up to `upto` was made durable by other means (a compaction).
    pub fn published(&mut self, upto: u64) {
        self.noted = self.noted.max(upto);
        self.durable = self.durable.max(upto);
    }
}
