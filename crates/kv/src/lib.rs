//! The key-value engine of the `kvstore` app: Redis's string commands on a `hashbrown` map,
//! expiry on a clock the caller passes in, the write log's records, and the persistence that
//! keeps them on a filesystem ([`persist`]).
//! Pure logic: no_std with `alloc`, no unsafe, host-tested.
//!
//! ```
//! use kv::{Engine, Session, Settings};
//! use resp::Request;
//!
//! let mut engine = Engine::new(Settings::default());
//! let mut session = Session::default();
//! let mut out = Vec::new();
//! let now_ms = 1_700_000_000_000;
//! let effect = engine.execute(&Request::from_args(&["SET", "k", "v", "EX", "10"]), &mut session, now_ms, &mut out);
//! assert_eq!(out, b"+OK\r\n");
//! assert!(effect.mutation.is_some()); // the record to log before sending the reply
//! out.clear();
//! engine.execute(&Request::from_args(&["GET", "k"]), &mut session, now_ms + 10_000, &mut out);
//! assert_eq!(out, b"$-1\r\n"); // expired
//! ```
//!
//! # Commands
//!
//! `PING [msg]`, `ECHO msg`, `GET k`, `SET k v [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`,
//! `DEL k...`, `EXISTS k...`, `INCR k`, `DECR k`, `INCRBY k n`, `DECRBY k n`, `MGET k...`,
//! `MSET k v...`, `KEYS pattern` (Redis's glob: [`glob::matches`]), `DBSIZE`, `FLUSHALL
//! [ASYNC|SYNC]`, `FLUSHDB`, `SELECT 0`, `QUIT`, and what clients send on connecting:
//! `CLIENT SETNAME|GETNAME|ID`, `COMMAND [COUNT|DOCS|INFO|LIST]` (an empty list: `redis-cli`
//! then has no hints, and says nothing), `CONFIG GET` (`save`, `appendonly`, `databases`:
//! `redis-benchmark` reads the first two at start; tried with redis-benchmark 7.0.15 against a
//! server that refuses `CONFIG`: it prints `WARNING: Could not fetch server CONFIG` and runs
//! anyway, so answering is only for a clean output), `INFO`. Values are strings only.
//!
//! Replies and errors are Redis 7's, word for word where a client could tell: `ERR unknown
//! command 'foo', with args beginning with: 'a' `, `ERR wrong number of arguments for 'get'
//! command`, `ERR value is not an integer or out of range`, `ERR syntax error`, `ERR increment
//! or decrement would overflow`, `ERR invalid expire time in 'set' command`, `ERR unknown
//! subcommand 'x'. Try CONFIG HELP.`. Over [`Settings::max_keys`] a write that would add a key
//! fails with `ERR max keys reached (kv_max_keys = N)`; reads and writes to existing keys go on.
//!
//! # Expiry
//!
//! Times are Unix milliseconds from the caller's clock (`now_ms` on every call), so expiries in
//! the log keep their meaning across a restart. A key past its time is removed when a command
//! touches it (lazily) and by [`Engine::sweep`], which the caller runs now and then with a
//! budget, as Redis's active expiry cycle: it looks at the next `budget` keys of the list of keys
//! that have an expiry (a `Vec`, one slot per such key, each entry knowing its slot), going round
//! it, and removes those whose time has passed. Each call costs at most `budget` look-ups, never
//! a scan of the store; an expired key nobody touches is gone within one round of the list.
//! Expiry removals are not logged: a replay drops keys whose time has passed.
//!
//! # Persistence contract
//!
//! [`Engine::execute`] returns an [`Effect`]: with `Settings::record` on, every command that
//! changed the store gives the [`Mutation`] that describes the change (one per command, so a
//! multi-key command is all or nothing in the log). The caller MUST append it to its log and
//! make it durable before it sends that command's reply (and the replies of the commands after
//! it on the connection); the engine has applied it already, so readers on other connections
//! may see a value before it is durable: their replies, too, must wait until it is. [`log`]
//! frames records (length + CRC-32) and reads a log back up to its first torn or corrupt
//! record; [`Engine::apply`] replays one; [`Engine::entries`] lists the live keys to write a
//! compacted log, whose size [`Engine::snapshot_bytes`] keeps exact. [`Engine::begin`] /
//! [`Engine::rollback`] undo a command whose record could not be logged (a full disk), so the
//! store never keeps an unlogged change.
//!
//! [`persist`] does all of this over a small filesystem trait: the log with recovery,
//! compaction, group commit by log sequence number, and Redis's `MISCONF` error for a write
//! that cannot be logged (its docs give the design). The `kvstore` app runs it on
//! `stardust::fs`; the host tests run it on `sdfs` over `blockdev`'s power-cut fake.
//!
//! Cargo features: none.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod glob;
pub mod log;
pub mod persist;

#[cfg(test)]
mod persist_tests;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use hashbrown::HashMap;
use resp::Request;

pub use log::Mutation;

/// Bounds and switches of an [`Engine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The most keys the store holds (the setting `kv_max_keys`).
    pub max_keys: usize,
    /// Whether [`Engine::execute`] returns the [`Mutation`]s of writes (a store without a log
    /// leaves it off and saves their copies).
    pub record: bool,
    /// What `CONFIG GET appendonly` answers.
    pub appendonly: bool,
}

impl Default for Settings {
    /// 1,000,000 keys, records on, appendonly off.
    fn default() -> Self {
        Settings {
            max_keys: 1_000_000,
            record: true,
            appendonly: false,
        }
    }
}

/// A connection's own state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// `CLIENT SETNAME`'s name.
    pub name: Option<Vec<u8>>,
    /// `CLIENT ID`'s answer (the caller numbers its connections).
    pub id: u64,
}

/// What a command did besides its reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    /// The connection must be closed after the reply (`QUIT`).
    pub close: bool,
    /// The change to log before replying (with `Settings::record`; see the crate docs).
    pub mutation: Option<Mutation>,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    expire_at: Option<u64>,
    /// With an expiry: this key's slot in `Engine::volatile`.
    slot: usize,
}

/// The store and its command interpreter.
#[derive(Debug)]
pub struct Engine {
    map: HashMap<Vec<u8>, Entry>,
    /// The keys that have an expiry, each once (their entries hold their slots).
    volatile: Vec<Vec<u8>>,
    /// Where the next sweep goes on in `volatile`.
    cursor: usize,
    settings: Settings,
    /// Bytes of the log records one `Set` per live key takes (see [`Engine::snapshot_bytes`]).
    snapshot_bytes: u64,
    /// While on ([`Engine::begin`]): what the changes since then replaced, to undo them.
    journal: Option<Vec<Undo>>,
    /// The journal's buffer between commands (so that none is allocated per command).
    spare_journal: Vec<Undo>,
}

/// What a change replaced, for [`Engine::rollback`].
#[derive(Debug)]
enum Undo {
    /// `key` held this entry (or nothing).
    Key(Vec<u8>, Option<(Vec<u8>, Option<u64>)>),
    /// The whole store, before a flush.
    Flush(HashMap<Vec<u8>, Entry>, Vec<Vec<u8>>, u64),
}

/// Bytes of the `Set` record of this key, value and expiry (the log's framing; see [`log`]).
pub fn set_record_bytes(key: usize, value: usize, expiry: bool) -> u64 {
    (log::HEADER + 1 + 4 + key + 4 + value + 1 + if expiry { 8 } else { 0 }) as u64
}

const ERR_INT: &str = "ERR value is not an integer or out of range";
const ERR_SYNTAX: &str = "ERR syntax error";
const ERR_OVERFLOW: &str = "ERR increment or decrement would overflow";

/// The commands and their Redis arity (n: exactly n arguments with the name; -n: at least n).
const COMMANDS: &[(&str, i32)] = &[
    ("get", 2),
    ("set", -3),
    ("del", -2),
    ("exists", -2),
    ("incr", 2),
    ("decr", 2),
    ("incrby", 3),
    ("decrby", 3),
    ("mget", -2),
    ("mset", -3),
    ("keys", 2),
    ("dbsize", 1),
    ("flushall", -1),
    ("flushdb", -1),
    ("ping", -1),
    ("echo", 2),
    ("select", 2),
    ("quit", -1),
    ("client", -2),
    ("command", -1),
    ("config", -2),
    ("info", -1),
];

/// The commands with subcommands (an unknown one is `unknown subcommand`).
const CONTAINERS: &[&str] = &["client", "command", "config"];

impl Engine {
    /// An empty store.
    pub fn new(settings: Settings) -> Self {
        Engine {
            map: HashMap::new(),
            volatile: Vec::new(),
            cursor: 0,
            settings,
            snapshot_bytes: 0,
            journal: None,
            spare_journal: Vec::new(),
        }
    }

    /// Bytes a compacted log of the store takes: one `Set` record per key held (expired keys
    /// not yet removed included), kept up to date by every change.
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes
    }

    /// Starts recording what changes replace, so that [`rollback`](Self::rollback) can undo
    /// them (a command whose log record could not be written); [`commit`](Self::commit) ends it.
    /// A flush keeps the old store until then (moved, not copied).
    pub fn begin(&mut self) {
        self.journal = Some(core::mem::take(&mut self.spare_journal));
    }

    /// Keeps the changes since [`begin`](Self::begin) and stops recording.
    pub fn commit(&mut self) {
        if let Some(mut journal) = self.journal.take() {
            journal.clear();
            self.spare_journal = journal;
        }
    }

    /// Undoes every change since [`begin`](Self::begin), newest first, and stops recording.
    pub fn rollback(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Key(key, old) => {
                    self.remove(&key);
                    if let Some((value, expire_at)) = old {
                        self.insert(key, value, expire_at);
                    }
                }
                Undo::Flush(map, volatile, bytes) => {
                    self.map = map;
                    self.volatile = volatile;
                    self.cursor = 0;
                    self.snapshot_bytes = bytes;
                }
            }
        }
    }

    /// Records what `key` holds now, while a journal is on.
    fn save(&mut self, key: &[u8]) {
        if let Some(journal) = &mut self.journal {
            let old = self.map.get(key).map(|e| (e.value.clone(), e.expire_at));
            journal.push(Undo::Key(key.to_vec(), old));
        }
    }

    /// Its settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Keys held (expired ones not yet removed included, as Redis's `DBSIZE`).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keys with an expiry.
    pub fn expiring(&self) -> usize {
        self.volatile.len()
    }

    /// The live keys at `now_ms`, with their values and expiries (for a compacted log: one
    /// `Set` per entry rebuilds the store).
    pub fn entries(&self, now_ms: u64) -> impl Iterator<Item = (&[u8], &[u8], Option<u64>)> {
        self.map
            .iter()
            .filter(move |(_, e)| !expired(e, now_ms))
            .map(|(k, e)| (k.as_slice(), e.value.as_slice(), e.expire_at))
    }

    /// Looks at up to `budget` keys that have an expiry (going on where the last call
    /// stopped) and removes those whose time has come; returns how many.
    pub fn sweep(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut removed = 0;
        for _ in 0..budget.min(self.volatile.len()) {
            if self.cursor >= self.volatile.len() {
                self.cursor = 0;
            }
            let Some(key) = self.volatile.get(self.cursor) else {
                break;
            };
            if self.map.get(key).is_some_and(|e| expired(e, now_ms)) {
                // The last key moves into this slot: look at it next (`remove` unindexes it).
                let key = key.clone();
                self.remove(&key);
                removed += 1;
            } else {
                self.cursor += 1;
            }
        }
        removed
    }

    /// Replays a logged change (keys whose expiry has passed at `now_ms` are dropped). Bounds
    /// are not applied: the log holds what the store held.
    pub fn apply(&mut self, m: Mutation, now_ms: u64) {
        match m {
            Mutation::Set {
                key,
                value,
                expire_at,
            } => {
                if expire_at.is_some_and(|t| t <= now_ms) {
                    self.remove(&key);
                } else {
                    self.insert(key, value, expire_at);
                }
            }
            Mutation::MSet { pairs } => {
                for (k, v) in pairs {
                    self.insert(k, v, None);
                }
            }
            Mutation::Del { keys } => {
                for k in keys {
                    self.remove(&k);
                }
            }
            Mutation::FlushAll => self.flush(),
        }
    }

    fn flush(&mut self) {
        if let Some(journal) = &mut self.journal {
            let map = core::mem::take(&mut self.map);
            let volatile = core::mem::take(&mut self.volatile);
            journal.push(Undo::Flush(map, volatile, self.snapshot_bytes));
        }
        self.map.clear();
        self.volatile.clear();
        self.cursor = 0;
        self.snapshot_bytes = 0;
    }

    /// Adds `key` to the keys with an expiry; returns its slot.
    fn index(&mut self, key: &[u8]) -> usize {
        self.volatile.push(key.to_vec());
        self.volatile.len() - 1
    }

    /// Takes slot `slot` out of the keys with an expiry (the last one moves into it, and its
    /// entry learns so); returns the key that was there.
    fn unindex(&mut self, slot: usize) -> Vec<u8> {
        let key = self.volatile.swap_remove(slot);
        if let Some(moved) = self.volatile.get(slot)
            && let Some(e) = self.map.get_mut(moved)
        {
            e.slot = slot;
        }
        key
    }

    /// Inserts or replaces, keeping the list of keys with an expiry exact.
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, expire_at: Option<u64>) {
        self.save(&key);
        let mut slot = 0;
        let new_bytes = set_record_bytes(key.len(), value.len(), expire_at.is_some());
        if let Some(e) = self.map.get_mut(&key) {
            let old_bytes = set_record_bytes(key.len(), e.value.len(), e.expire_at.is_some());
            self.snapshot_bytes = self.snapshot_bytes - old_bytes + new_bytes;
            if e.expire_at.is_some() == expire_at.is_some() {
                // The common case: no change to the list.
                e.value = value;
                e.expire_at = expire_at;
                return;
            }
            slot = e.slot;
        } else {
            self.snapshot_bytes += new_bytes;
        }
        let had = self.map.get(&key).map(|e| e.expire_at.is_some());
        match (had, expire_at.is_some()) {
            (Some(true), false) => {
                self.unindex(slot);
            }
            (Some(false) | None, true) => slot = self.index(&key),
            _ => {}
        }
        self.map.insert(
            key,
            Entry {
                value,
                expire_at,
                slot,
            },
        );
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        if self.journal.is_some() && self.map.contains_key(key) {
            self.save(key);
        }
        match self.map.remove(key) {
            Some(e) => {
                self.snapshot_bytes -=
                    set_record_bytes(key.len(), e.value.len(), e.expire_at.is_some());
                if e.expire_at.is_some() {
                    self.unindex(e.slot);
                }
                true
            }
            None => false,
        }
    }

    /// The live entry of `key`, removing it first if it has expired.
    fn lookup(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        if self.map.get(key).is_some_and(|e| expired(e, now_ms)) {
            self.remove(key);
            return None;
        }
        self.map.get(key)
    }

    /// Whether one more key may be added (after removing what has expired).
    fn room_for(&mut self, new_keys: usize, now_ms: u64) -> bool {
        if self.map.len() + new_keys <= self.settings.max_keys {
            return true;
        }
        self.sweep(now_ms, usize::MAX);
        self.map.len() + new_keys <= self.settings.max_keys
    }

    // `#[cold]` here and on the rare commands and errors below (CONFIG, INFO, CLIENT, COMMAND,
    // unknown commands, arity errors): kept out of the request loop that inlined them, and
    // optimized for size; kvstore [storage] 2,624 bytes smaller.
    #[cold]
    fn max_keys_error(&self, out: &mut Vec<u8>) {
        resp::error_fmt(
            out,
            format_args!(
                "ERR max keys reached (kv_max_keys = {})",
                self.settings.max_keys
            ),
        );
    }

    fn record(&self, m: impl FnOnce() -> Mutation) -> Option<Mutation> {
        self.settings.record.then(m)
    }

    /// Runs one command (`request` not empty) at `now_ms` and appends its reply to `out`.
    pub fn execute(
        &mut self,
        request: &Request,
        session: &mut Session,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Effect {
        let argc = request.len();
        let arg = |i: usize| request.arg(i).unwrap_or(&[]);
        let name = arg(0);
        let Some(&(cmd, arity)) = COMMANDS
            .iter()
            .find(|(c, _)| c.as_bytes().eq_ignore_ascii_case(name))
        else {
            unknown_command(request, out);
            return Effect::default();
        };
        let argc_i = i32::try_from(argc).unwrap_or(i32::MAX);
        if (arity > 0 && argc_i != arity) || (arity < 0 && argc_i < -arity) {
            arity_error(cmd, out);
            return Effect::default();
        }
        let mut effect = Effect::default();
        match cmd {
            "ping" => match argc {
                1 => resp::simple(out, "PONG"),
                2 => resp::bulk(out, arg(1)),
                _ => arity_error(cmd, out),
            },
            "echo" => resp::bulk(out, arg(1)),
            "quit" => {
                resp::ok(out);
                effect.close = true;
            }
            "get" => match self.lookup(arg(1), now_ms) {
                Some(e) => resp::bulk(out, &e.value),
                None => resp::null(out),
            },
            "set" => effect.mutation = self.set(request, now_ms, out),
            "del" => {
                let mut keys = Vec::new();
                let mut n = 0;
                for k in request.args().skip(1) {
                    let live = self.lookup(k, now_ms).is_some();
                    if live && self.remove(k) {
                        n += 1;
                        if self.settings.record {
                            keys.push(k.to_vec());
                        }
                    }
                }
                resp::integer(out, n);
                if n > 0 {
                    effect.mutation = self.record(|| Mutation::Del { keys });
                }
            }
            "exists" => {
                let mut n = 0;
                for k in request.args().skip(1) {
                    if self.lookup(k, now_ms).is_some() {
                        n += 1;
                    }
                }
                resp::integer(out, n);
            }
            "incr" | "decr" | "incrby" | "decrby" => {
                let by = match cmd {
                    "incr" => 1,
                    "decr" => -1,
                    _ => match resp::string2ll(arg(2)) {
                        Some(n) if cmd == "incrby" => n,
                        Some(i64::MIN) => {
                            resp::error(out, "ERR decrement would overflow");
                            return effect;
                        }
                        Some(n) => -n,
                        None => {
                            resp::error(out, ERR_INT);
                            return effect;
                        }
                    },
                };
                effect.mutation = self.incr(arg(1), by, now_ms, out);
            }
            "mget" => {
                resp::array(out, argc - 1);
                for k in request.args().skip(1) {
                    match self.lookup(k, now_ms) {
                        Some(e) => resp::bulk(out, &e.value),
                        None => resp::null(out),
                    }
                }
            }
            "mset" => effect.mutation = self.mset(request, now_ms, out),
            "keys" => {
                let pattern = arg(1);
                let all = pattern == b"*";
                let mut n = 0;
                // The count is known at the end: the keys first, then the header before them.
                let mut body = Vec::new();
                for (k, e) in &self.map {
                    if !expired(e, now_ms) && (all || glob::matches(pattern, k, false)) {
                        resp::bulk(&mut body, k);
                        n += 1;
                    }
                }
                resp::array(out, n);
                out.extend_from_slice(&body);
            }
            "dbsize" => resp::integer(out, self.map.len() as i64),
            "flushall" | "flushdb" => {
                if argc > 2
                    || (argc == 2
                        && !arg(1).eq_ignore_ascii_case(b"async")
                        && !arg(1).eq_ignore_ascii_case(b"sync"))
                {
                    resp::error(out, ERR_SYNTAX);
                } else {
                    self.flush();
                    resp::ok(out);
                    effect.mutation = self.record(|| Mutation::FlushAll);
                }
            }
            "select" => match resp::string2ll(arg(1)) {
                Some(0) => resp::ok(out),
                Some(n) if i32::try_from(n).is_ok() => {
                    resp::error(out, "ERR DB index is out of range")
                }
                _ => resp::error(out, ERR_INT),
            },
            "client" => client(request, session, out),
            "command" => command(request, out),
            "config" => self.config(request, out),
            "info" => self.info(out),
            _ => unknown_command(request, out),
        }
        effect
    }

    fn set(&mut self, request: &Request, now_ms: u64, out: &mut Vec<u8>) -> Option<Mutation> {
        let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
        // (unit in ms, absolute?, argument)
        let mut expire: Option<(u64, bool, &[u8])> = None;
        let mut i = 3;
        while i < request.len() {
            let opt = request.arg(i).unwrap_or(&[]);
            let next = request.arg(i + 1);
            let is = |s: &str| opt.eq_ignore_ascii_case(s.as_bytes());
            if is("nx") && !xx {
                nx = true;
            } else if is("xx") && !nx {
                xx = true;
            } else if is("get") {
                get = true;
            } else if is("keepttl") && expire.is_none() {
                keepttl = true;
            } else if let (Some(v), true, false) = (
                next,
                is("ex") || is("px") || is("exat") || is("pxat"),
                expire.is_some() || keepttl,
            ) {
                let unit = if is("ex") || is("exat") { 1000 } else { 1 };
                expire = Some((unit, is("exat") || is("pxat"), v));
                i += 1;
            } else {
                resp::error(out, ERR_SYNTAX);
                return None;
            }
            i += 1;
        }
        let key = request.arg(1).unwrap_or(&[]);
        let value = request.arg(2).unwrap_or(&[]);
        let expire_at = match expire {
            None => None,
            Some((unit, absolute, v)) => {
                let Some(n) = resp::string2ll(v) else {
                    resp::error(out, ERR_INT);
                    return None;
                };
                let at = (n > 0)
                    .then(|| (n as u64).checked_mul(unit))
                    .flatten()
                    .filter(|ms| *ms <= i64::MAX as u64)
                    .and_then(|ms| {
                        if absolute {
                            Some(ms)
                        } else {
                            ms.checked_add(now_ms)
                        }
                    })
                    .filter(|at| *at <= i64::MAX as u64);
                match at {
                    Some(at) => Some(at),
                    None => {
                        resp::error(out, "ERR invalid expire time in 'set' command");
                        return None;
                    }
                }
            }
        };
        let old = self.lookup(key, now_ms).cloned();
        if (nx && old.is_some()) || (xx && old.is_none()) {
            match (get, old) {
                (true, Some(e)) => resp::bulk(out, &e.value),
                _ => resp::null(out),
            }
            return None;
        }
        if old.is_none() && !self.room_for(1, now_ms) {
            self.max_keys_error(out);
            return None;
        }
        let expire_at = if keepttl {
            old.as_ref().and_then(|e| e.expire_at)
        } else {
            expire_at
        };
        match (get, &old) {
            (true, Some(e)) => resp::bulk(out, &e.value),
            (true, None) => resp::null(out),
            _ => resp::ok(out),
        }
        if expire_at.is_some_and(|at| at <= now_ms) {
            // EXAT/PXAT in the past: set and expired at once, which is a delete.
            return self.remove(key).then(|| Mutation::Del {
                keys: alloc::vec![key.to_vec()],
            });
        }
        let m = self.record(|| Mutation::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            expire_at,
        });
        self.insert(key.to_vec(), value.to_vec(), expire_at);
        m
    }

    fn incr(&mut self, key: &[u8], by: i64, now_ms: u64, out: &mut Vec<u8>) -> Option<Mutation> {
        let (current, expire_at) = match self.lookup(key, now_ms) {
            Some(e) => match resp::string2ll(&e.value) {
                Some(n) => (n, e.expire_at),
                None => {
                    resp::error(out, ERR_INT);
                    return None;
                }
            },
            None => {
                if !self.room_for(1, now_ms) {
                    self.max_keys_error(out);
                    return None;
                }
                (0, None)
            }
        };
        let Some(n) = current.checked_add(by) else {
            resp::error(out, ERR_OVERFLOW);
            return None;
        };
        let mut value = Vec::new();
        resp::push_decimal(&mut value, n);
        resp::integer(out, n);
        let m = self.record(|| Mutation::Set {
            key: key.to_vec(),
            value: value.clone(),
            expire_at,
        });
        self.insert(key.to_vec(), value, expire_at);
        m
    }

    fn mset(&mut self, request: &Request, now_ms: u64, out: &mut Vec<u8>) -> Option<Mutation> {
        if request.len().is_multiple_of(2) {
            arity_error("mset", out);
            return None;
        }
        let args: Vec<&[u8]> = request.args().skip(1).collect();
        let mut new_keys = 0;
        for (i, pair) in args.chunks(2).enumerate() {
            let repeated = args[..i * 2].chunks(2).any(|p| p[0] == pair[0]);
            if !repeated && self.lookup(pair[0], now_ms).is_none() {
                new_keys += 1;
            }
        }
        if new_keys > 0 && !self.room_for(new_keys, now_ms) {
            self.max_keys_error(out);
            return None;
        }
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = args
            .chunks(2)
            .map(|p| (p[0].to_vec(), p[1].to_vec()))
            .collect();
        resp::ok(out);
        let m = self.record(|| Mutation::MSet {
            pairs: pairs.clone(),
        });
        for (k, v) in pairs {
            self.insert(k, v, None);
        }
        m
    }

    #[cold]
    fn config(&self, request: &Request, out: &mut Vec<u8>) {
        let sub = request.arg(1).unwrap_or(&[]);
        if sub.eq_ignore_ascii_case(b"get") {
            if request.len() < 3 {
                arity_error("config|get", out);
                return;
            }
            let params: [(&str, &[u8]); 3] = [
                ("save", b""),
                (
                    "appendonly",
                    if self.settings.appendonly {
                        b"yes"
                    } else {
                        b"no"
                    },
                ),
                ("databases", b"1"),
            ];
            let found: Vec<&(&str, &[u8])> = params
                .iter()
                .filter(|(name, _)| {
                    request
                        .args()
                        .skip(2)
                        .any(|p| glob::matches(p, name.as_bytes(), true))
                })
                .collect();
            resp::array(out, found.len() * 2);
            for (name, value) in found {
                resp::bulk(out, name.as_bytes());
                resp::bulk(out, value);
            }
        } else if sub.eq_ignore_ascii_case(b"resetstat") && request.len() == 2 {
            resp::ok(out);
        } else {
            unknown_subcommand(request, out);
        }
    }

    #[cold]
    fn info(&self, out: &mut Vec<u8>) {
        let mut text = Vec::new();
        text.extend_from_slice(
            b"# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nexecutable:kvstore\r\n\r\n# Keyspace\r\n",
        );
        if !self.map.is_empty() {
            text.extend_from_slice(b"db0:keys=");
            resp::push_decimal(&mut text, self.map.len() as i64);
            text.extend_from_slice(b",expires=");
            resp::push_decimal(&mut text, self.volatile.len() as i64);
            text.extend_from_slice(b",avg_ttl=0\r\n");
        }
        resp::bulk(out, &text);
    }
}

fn expired(e: &Entry, now_ms: u64) -> bool {
    e.expire_at.is_some_and(|at| at <= now_ms)
}

#[cold]
fn arity_error(cmd: &str, out: &mut Vec<u8>) {
    resp::error_fmt(
        out,
        format_args!("ERR wrong number of arguments for '{cmd}' command"),
    );
}

/// C's `%.Ns` of a byte string: up to its first NUL, at most `max` bytes.
fn c_str(s: &[u8], max: usize) -> &[u8] {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len()).min(max);
    &s[..end]
}

#[cold]
fn unknown_command(request: &Request, out: &mut Vec<u8>) {
    let name = request.arg(0).unwrap_or(&[]);
    let lower: Vec<u8> = name.to_ascii_lowercase();
    if request.len() >= 2 && CONTAINERS.iter().any(|c| c.as_bytes() == lower) {
        unknown_subcommand(request, out);
        return;
    }
    let mut msg = Vec::new();
    msg.extend_from_slice(b"ERR unknown command '");
    msg.extend_from_slice(c_str(name, 128));
    msg.extend_from_slice(b"', with args beginning with: ");
    let mut args_len = 0;
    for a in request.args().skip(1) {
        if args_len >= 128 {
            break;
        }
        let a = c_str(a, 128 - args_len);
        msg.push(b'\'');
        msg.extend_from_slice(a);
        msg.extend_from_slice(b"' ");
        args_len += a.len() + 3;
    }
    resp::error_bytes(out, &msg);
}

#[cold]
fn unknown_subcommand(request: &Request, out: &mut Vec<u8>) {
    let mut msg = Vec::new();
    msg.extend_from_slice(b"ERR unknown subcommand '");
    msg.extend_from_slice(c_str(request.arg(1).unwrap_or(&[]), 128));
    msg.extend_from_slice(b"'. Try ");
    msg.extend_from_slice(&request.arg(0).unwrap_or(&[]).to_ascii_uppercase());
    msg.extend_from_slice(b" HELP.");
    resp::error_bytes(out, &msg);
}

#[cold]
fn client(request: &Request, session: &mut Session, out: &mut Vec<u8>) {
    let sub = request.arg(1).unwrap_or(&[]);
    let argc = request.len();
    if sub.eq_ignore_ascii_case(b"setname") {
        if argc != 3 {
            arity_error("client|setname", out);
            return;
        }
        let name = request.arg(2).unwrap_or(&[]);
        if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            resp::error(
                out,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
            return;
        }
        session.name = (!name.is_empty()).then(|| name.to_vec());
        resp::ok(out);
    } else if sub.eq_ignore_ascii_case(b"getname") && argc == 2 {
        match &session.name {
            Some(n) => resp::bulk(out, n),
            None => resp::null(out),
        }
    } else if sub.eq_ignore_ascii_case(b"id") && argc == 2 {
        resp::integer(out, session.id as i64);
    } else {
        unknown_subcommand(request, out);
    }
}

#[cold]
fn command(request: &Request, out: &mut Vec<u8>) {
    let Some(sub) = request.arg(1) else {
        resp::array(out, 0);
        return;
    };
    if sub.eq_ignore_ascii_case(b"count") && request.len() == 2 {
        resp::integer(out, COMMANDS.len() as i64);
    } else if [&b"docs"[..], b"info", b"list"]
        .iter()
        .any(|s| sub.eq_ignore_ascii_case(s))
    {
        resp::array(out, 0);
    } else {
        unknown_subcommand(request, out);
    }
}
