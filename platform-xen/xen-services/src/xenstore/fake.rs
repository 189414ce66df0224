//! A fake xenstored on the other end of the ring, for host tests; it can inject faults.
//!
//! Transactions behave as xenstored's do: a transaction works on a snapshot of the store taken
//! at `XS_TRANSACTION_START`; its writes are invisible outside until `XS_TRANSACTION_END` with
//! `T` commits them (and fires the watches on them); `F` discards them. A commit fails with
//! `EAGAIN` (and is discarded) when a node the transaction read or wrote was changed outside it
//! since it started. A request with an unknown transaction id gets `ENOENT`.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use super::{HEADER_LEN, Header, MsgType, REQ, RSP, Wait};
use crate::mem::SharedMemory;

/// A fault the fake puts into its next reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The header announces 5000 payload bytes (over the limit).
    Oversized,
    /// The header has type 99.
    UnknownType,
    /// An `XS_ERROR` whose name has no NUL.
    ErrorWithoutNul,
    /// Only the header and half the payload arrive, then nothing.
    Truncated,
    /// The reply carries another request id.
    WrongId,
    /// `rsp_prod` jumps 5000 bytes ahead of `rsp_cons`.
    CorruptIndex,
    /// An `XS_ERROR` with this name.
    Error(&'static str),
}

type Store = BTreeMap<Vec<u8>, Vec<u8>>;

/// An open transaction.
#[derive(Debug)]
struct Transaction {
    /// The store as the transaction sees it: the snapshot at its start, plus its own writes.
    view: Store,
    /// The store's generation when it started.
    started: u64,
    /// Nodes it read or listed (a change to them outside makes the commit fail).
    read: BTreeSet<Vec<u8>>,
    /// Its writes, in order, applied at commit.
    writes: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The fake daemon. Drive the client with it as the [`Wait`]: each `wait` takes the
/// requests out of the ring and puts the replies in.
#[derive(Debug)]
pub struct FakeXenStored<M> {
    page: M,
    /// The committed store: path → value.
    store: Store,
    /// Bumped by every change to the committed store.
    generation: u64,
    /// The generation of each node's last change.
    changed: BTreeMap<Vec<u8>, u64>,
    transactions: BTreeMap<u32, Transaction>,
    watches: Vec<(Vec<u8>, Vec<u8>)>,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    /// The fault for the next reply (taken when used).
    pub fault: Option<Fault>,
    next_tx: u32,
    idle: u32,
    /// Requests handled so far.
    pub requests: u32,
    /// Notifications received.
    pub notifications: u32,
}

impl<M: SharedMemory> FakeXenStored<M> {
    /// A daemon serving the ring on `page` with an empty store.
    pub fn new(page: M) -> Self {
        FakeXenStored {
            page,
            store: BTreeMap::new(),
            generation: 0,
            changed: BTreeMap::new(),
            transactions: BTreeMap::new(),
            watches: Vec::new(),
            inbuf: Vec::new(),
            out: VecDeque::new(),
            fault: None,
            next_tx: 1,
            idle: 0,
            requests: 0,
            notifications: 0,
        }
    }

    /// Sets a node in the committed store, as another domain would (without firing watches):
    /// an open transaction that touched it will fail to commit.
    pub fn set(&mut self, path: &str, value: &str) {
        self.commit_write(path.as_bytes().to_vec(), value.as_bytes().to_vec());
    }

    /// Sets a node as another domain would, firing the watches on it: the events are in the
    /// ring at once (for a client's `poll_events`).
    pub fn change(&mut self, path: &str, value: &str) {
        self.set(path, value);
        self.fire(path.as_bytes());
        self.flush();
    }

    /// Removes a node as another domain would, firing the watches on it.
    pub fn remove(&mut self, path: &str) {
        self.generation += 1;
        self.changed
            .insert(path.as_bytes().to_vec(), self.generation);
        self.store.remove(path.as_bytes());
        self.fire(path.as_bytes());
        self.flush();
    }

    /// A node's committed value (what a request outside any transaction reads).
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.store.get(path.as_bytes()).map(Vec::as_slice)
    }

    /// Transactions started and not yet ended.
    pub fn open_transactions(&self) -> usize {
        self.transactions.len()
    }

    fn commit_write(&mut self, path: Vec<u8>, value: Vec<u8>) {
        self.generation += 1;
        self.changed.insert(path.clone(), self.generation);
        self.store.insert(path, value);
    }

    /// Ends transaction `id`: commits its writes or discards them. Returns the paths written,
    /// whose watches fire; `Err` names the error reply.
    fn end(&mut self, id: u32, commit: bool) -> Result<Vec<Vec<u8>>, &'static str> {
        let tx = self.transactions.remove(&id).ok_or("ENOENT")?;
        if !commit {
            return Ok(Vec::new());
        }
        let conflict = tx
            .read
            .iter()
            .chain(tx.writes.iter().map(|(p, _)| p))
            .any(|p| self.changed.get(p).is_some_and(|&g| g > tx.started));
        if conflict {
            return Err("EAGAIN");
        }
        let mut written = Vec::new();
        for (path, value) in tx.writes {
            self.commit_write(path.clone(), value);
            written.push(path);
        }
        Ok(written)
    }

    fn reply(&mut self, ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) {
        let mut h = Header {
            ty,
            req_id,
            tx_id,
            len: payload.len() as u32,
        };
        let mut payload = payload.to_vec();
        match self.fault.take() {
            None => {}
            Some(Fault::Oversized) => h.len = 5000,
            Some(Fault::UnknownType) => h.ty = 99,
            Some(Fault::ErrorWithoutNul) => {
                h.ty = MsgType::Error as u32;
                payload = b"ENOENT".to_vec();
                h.len = 6;
            }
            Some(Fault::Truncated) => {
                payload.truncate(payload.len() / 2);
            }
            Some(Fault::WrongId) => h.req_id = req_id.wrapping_add(1000),
            Some(Fault::CorruptIndex) => {
                let cons = self.page.read_u32(RSP.cons);
                self.page.write_u32(RSP.prod, cons.wrapping_add(5000));
                return;
            }
            Some(Fault::Error(name)) => {
                h.ty = MsgType::Error as u32;
                payload = name.as_bytes().to_vec();
                payload.push(0);
                h.len = payload.len() as u32;
            }
        }
        self.out.extend(h.encode());
        if h.len as usize <= payload.len() || h.len > 4096 {
            self.out
                .extend(payload.iter().take(h.len.min(4096) as usize));
        } else {
            self.out.extend(payload); // truncated: fewer bytes than announced
        }
    }

    fn fire(&mut self, path: &[u8]) {
        let hits: Vec<(Vec<u8>, Vec<u8>)> = self
            .watches
            .iter()
            .filter(|(w, _)| {
                path.starts_with(w) && (path.len() == w.len() || path[w.len()] == b'/')
            })
            .cloned()
            .collect();
        for (_, token) in hits {
            let mut p = path.to_vec();
            p.push(0);
            p.extend(&token);
            p.push(0);
            self.reply(MsgType::WatchEvent as u32, 0, 0, &p);
        }
    }

    fn handle(&mut self, h: Header, payload: Vec<u8>) {
        self.requests += 1;
        let first =
            |p: &[u8]| -> Vec<u8> { p.split(|&b| b == 0).next().unwrap_or_default().to_vec() };
        let ok = b"OK\0";
        let err = |me: &mut Self, name: &str| {
            let mut p = name.as_bytes().to_vec();
            p.push(0);
            me.reply(MsgType::Error as u32, h.req_id, h.tx_id, &p);
        };
        let ty = MsgType::from_u32(h.ty);
        let in_tx = matches!(
            ty,
            Some(MsgType::Read | MsgType::Write | MsgType::Directory)
        );
        if in_tx && h.tx_id != 0 && !self.transactions.contains_key(&h.tx_id) {
            return err(self, "ENOENT");
        }
        match ty {
            Some(MsgType::Read) => {
                let path = first(&payload);
                let value = match self.transactions.get_mut(&h.tx_id) {
                    Some(tx) => {
                        tx.read.insert(path.clone());
                        tx.view.get(&path).cloned()
                    }
                    None => self.store.get(&path).cloned(),
                };
                match value {
                    Some(v) => self.reply(h.ty, h.req_id, h.tx_id, &v),
                    None => err(self, "ENOENT"),
                }
            }
            Some(MsgType::Write) => {
                let path = first(&payload);
                let value = payload.get(path.len() + 1..).unwrap_or_default().to_vec();
                match self.transactions.get_mut(&h.tx_id) {
                    Some(tx) => {
                        tx.view.insert(path.clone(), value.clone());
                        tx.writes.push((path, value));
                        self.reply(h.ty, h.req_id, h.tx_id, ok);
                    }
                    None => {
                        self.commit_write(path.clone(), value);
                        self.reply(h.ty, h.req_id, h.tx_id, ok);
                        self.fire(&path);
                    }
                }
            }
            Some(MsgType::Directory) => {
                let path = first(&payload);
                let store = match self.transactions.get_mut(&h.tx_id) {
                    Some(tx) => {
                        tx.read.insert(path.clone());
                        &tx.view
                    }
                    None => &self.store,
                };
                let mut names: Vec<u8> = Vec::new();
                let mut any = store.contains_key(&path);
                for k in store.keys() {
                    if k.len() > path.len() + 1 && k.starts_with(&path) && k[path.len()] == b'/' {
                        any = true;
                        let child = &k[path.len() + 1..];
                        let child = child.split(|&b| b == b'/').next().unwrap_or_default();
                        let already = names.split(|&b| b == 0).any(|n| n == child);
                        if !already {
                            names.extend(child);
                            names.push(0);
                        }
                    }
                }
                if any {
                    self.reply(h.ty, h.req_id, h.tx_id, &names);
                } else {
                    err(self, "ENOENT");
                }
            }
            Some(MsgType::Watch) => {
                let mut parts = payload.split(|&b| b == 0);
                let path = parts.next().unwrap_or_default().to_vec();
                let token = parts.next().unwrap_or_default().to_vec();
                self.watches.push((path.clone(), token));
                self.reply(h.ty, h.req_id, h.tx_id, ok);
                self.fire(&path);
            }
            Some(MsgType::TransactionStart) => {
                let id = self.next_tx;
                self.next_tx += 1;
                self.transactions.insert(
                    id,
                    Transaction {
                        view: self.store.clone(),
                        started: self.generation,
                        read: BTreeSet::new(),
                        writes: Vec::new(),
                    },
                );
                let text = alloc::format!("{id}\0");
                self.reply(h.ty, h.req_id, 0, text.as_bytes());
            }
            Some(MsgType::TransactionEnd) => {
                let commit = match payload.as_slice() {
                    b"T\0" => true,
                    b"F\0" => false,
                    _ => return err(self, "EINVAL"),
                };
                match self.end(h.tx_id, commit) {
                    Ok(written) => {
                        self.reply(h.ty, h.req_id, h.tx_id, ok);
                        for path in written {
                            self.fire(&path);
                        }
                    }
                    Err(name) => err(self, name),
                }
            }
            _ => err(self, "EINVAL"),
        }
    }

    fn pump(&mut self) -> bool {
        let mut progress = false;
        let mut buf = [0u8; 1024];
        loop {
            match REQ.consume(&self.page, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.inbuf.extend(&buf[..n]);
                    progress = true;
                }
            }
        }
        while self.inbuf.len() >= HEADER_LEN {
            let hb: [u8; HEADER_LEN] = self.inbuf[..HEADER_LEN].try_into().expect("16 bytes");
            let Ok(h) = Header::decode(&hb) else { break };
            let total = HEADER_LEN + h.len as usize;
            if self.inbuf.len() < total {
                break;
            }
            let payload = self.inbuf[HEADER_LEN..total].to_vec();
            self.inbuf.drain(..total);
            self.handle(h, payload);
        }
        self.flush() || progress
    }

    /// Puts what is waiting to be sent into the ring, as far as it fits; whether any went.
    fn flush(&mut self) -> bool {
        let mut progress = false;
        while !self.out.is_empty() {
            let chunk: Vec<u8> = self.out.iter().copied().take(1024).collect();
            match RSP.produce(&self.page, &chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.out.drain(..n);
                    progress = true;
                }
            }
        }
        progress
    }
}

impl<M: SharedMemory> Wait for FakeXenStored<M> {
    fn notify(&mut self) {
        self.notifications += 1;
    }
    fn wait(&mut self) -> bool {
        if self.pump() {
            self.idle = 0;
            true
        } else {
            self.idle += 1;
            self.idle < 3
        }
    }
}
