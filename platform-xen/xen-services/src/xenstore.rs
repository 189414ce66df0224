//! XenStore over the shared ring (`struct xenstore_domain_interface`, `xs_wire.h`): requests
//! and replies as a 16-byte header (`type`, `req_id`, `tx_id`, `len`) and `len` payload bytes.
//!
//! [`encode`] builds a request into a caller's buffer, [`Header::decode`] and [`parse_reply`]
//! check what came back: a reply longer than `XENSTORE_PAYLOAD_MAX`, a type this side does not
//! know, an error reply whose name is not NUL-terminated: each is an [`Error`], never a
//! panic. [`XenStore`] runs whole calls over the ring with request ids, through a [`Wait`] that
//! the platform implements (notify the event channel, then block or yield), and hands watch
//! events that arrive meanwhile to the caller. No allocation: payloads go to caller buffers.

use core::fmt;
use core::mem::offset_of;

use xen_sys::{XENSTORE_PAYLOAD_MAX, xenstore_domain_interface};

use crate::mem::SharedMemory;
use crate::ring::{RingError, RingLayout};

/// Requests: guest → xenstored.
pub const REQ: RingLayout = RingLayout {
    data: offset_of!(xenstore_domain_interface, req),
    size: 1024,
    cons: offset_of!(xenstore_domain_interface, req_cons),
    prod: offset_of!(xenstore_domain_interface, req_prod),
};

/// Replies and watch events: xenstored → guest.
pub const RSP: RingLayout = RingLayout {
    data: offset_of!(xenstore_domain_interface, rsp),
    size: 1024,
    cons: offset_of!(xenstore_domain_interface, rsp_cons),
    prod: offset_of!(xenstore_domain_interface, rsp_prod),
};

/// The header's size.
pub const HEADER_LEN: usize = 16;
/// The largest payload either side may send.
pub const PAYLOAD_MAX: usize = XENSTORE_PAYLOAD_MAX as usize;

/// Message types (`enum xsd_sockmsg_type`) this client uses or may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    /// `XS_DIRECTORY`: the children of a node, NUL-separated.
    Directory = xen_sys::xsd_sockmsg_type_XS_DIRECTORY,
    /// `XS_READ`: a node's value.
    Read = xen_sys::xsd_sockmsg_type_XS_READ,
    /// `XS_WATCH`: `path\0token\0`.
    Watch = xen_sys::xsd_sockmsg_type_XS_WATCH,
    /// `XS_UNWATCH`: `path\0token\0`.
    Unwatch = xen_sys::xsd_sockmsg_type_XS_UNWATCH,
    /// `XS_TRANSACTION_START`: replies with the id as decimal text.
    TransactionStart = xen_sys::xsd_sockmsg_type_XS_TRANSACTION_START,
    /// `XS_TRANSACTION_END`: `T\0` commits, `F\0` aborts.
    TransactionEnd = xen_sys::xsd_sockmsg_type_XS_TRANSACTION_END,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = xen_sys::xsd_sockmsg_type_XS_GET_DOMAIN_PATH,
    /// `XS_WRITE`: `path\0value` (no NUL after the value).
    Write = xen_sys::xsd_sockmsg_type_XS_WRITE,
    /// `XS_MKDIR`.
    Mkdir = xen_sys::xsd_sockmsg_type_XS_MKDIR,
    /// `XS_RM`.
    Rm = xen_sys::xsd_sockmsg_type_XS_RM,
    /// `XS_WATCH_EVENT`: `path\0token\0`, unsolicited.
    WatchEvent = xen_sys::xsd_sockmsg_type_XS_WATCH_EVENT,
    /// `XS_ERROR`: the error's name (`ENOENT\0`).
    Error = xen_sys::xsd_sockmsg_type_XS_ERROR,
}

impl MsgType {
    /// From the wire; `None` for a type this client does not handle.
    pub fn from_u32(v: u32) -> Option<MsgType> {
        use MsgType::*;
        [
            Directory,
            Read,
            Watch,
            Unwatch,
            TransactionStart,
            TransactionEnd,
            GetDomainPath,
            Write,
            Mkdir,
            Rm,
            WatchEvent,
            Error,
        ]
        .into_iter()
        .find(|t| *t as u32 == v)
    }
}

/// An error reply from xenstored, by the errno name it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsError {
    /// `ENOENT`: no such node.
    NoEntry,
    /// `EACCES`: permission denied.
    Access,
    /// `EINVAL`: a malformed request.
    Invalid,
    /// `EEXIST`.
    Exists,
    /// `EISDIR`.
    IsDir,
    /// `ENOMEM`.
    NoMemory,
    /// `ENOSPC`: quota.
    NoSpace,
    /// `EIO`.
    Io,
    /// `ENOTEMPTY`.
    NotEmpty,
    /// `ENOSYS`: not supported.
    NoSys,
    /// `EROFS`.
    ReadOnly,
    /// `EBUSY`.
    Busy,
    /// `EAGAIN`: a transaction conflicted; retry it.
    Again,
    /// `EISCONN`.
    IsConnected,
    /// `E2BIG`: the request or reply would be too large.
    TooBig,
    /// `EPERM`.
    Permission,
    /// A name not in `xs_wire.h`'s table.
    Unknown,
}

impl XsError {
    /// From the name in an `XS_ERROR` payload (without its NUL).
    pub fn from_name(name: &[u8]) -> XsError {
        use XsError::*;
        match name {
            b"ENOENT" => NoEntry,
            b"EACCES" => Access,
            b"EINVAL" => Invalid,
            b"EEXIST" => Exists,
            b"EISDIR" => IsDir,
            b"ENOMEM" => NoMemory,
            b"ENOSPC" => NoSpace,
            b"EIO" => Io,
            b"ENOTEMPTY" => NotEmpty,
            b"ENOSYS" => NoSys,
            b"EROFS" => ReadOnly,
            b"EBUSY" => Busy,
            b"EAGAIN" => Again,
            b"EISCONN" => IsConnected,
            b"E2BIG" => TooBig,
            b"EPERM" => Permission,
            _ => Unknown,
        }
    }

    /// The errno name (`"?"` for [`XsError::Unknown`]).
    pub fn name(self) -> &'static str {
        use XsError::*;
        match self {
            NoEntry => "ENOENT",
            Access => "EACCES",
            Invalid => "EINVAL",
            Exists => "EEXIST",
            IsDir => "EISDIR",
            NoMemory => "ENOMEM",
            NoSpace => "ENOSPC",
            Io => "EIO",
            NotEmpty => "ENOTEMPTY",
            NoSys => "ENOSYS",
            ReadOnly => "EROFS",
            Busy => "EBUSY",
            Again => "EAGAIN",
            IsConnected => "EISCONN",
            TooBig => "E2BIG",
            Permission => "EPERM",
            Unknown => "?",
        }
    }
}

/// What can go wrong talking to XenStore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// xenstored answered with an error.
    Store(XsError),
    /// A reply announced more than `XENSTORE_PAYLOAD_MAX` bytes.
    Oversized(u32),
    /// A reply of a type this client does not know.
    UnknownType(u32),
    /// A reply that does not follow the format of its type.
    Malformed(&'static str),
    /// A reply to another request (request id) or of another type than asked.
    Unexpected {
        /// The request id sent.
        expected: u32,
        /// The id in the reply.
        got: u32,
    },
    /// The request (path + value) does not fit the payload limit or the caller's buffer.
    TooLong,
    /// The caller's buffer is too small for the reply; it needs this many bytes.
    BufferTooSmall(usize),
    /// The ring indices are garbage.
    Ring(RingError),
    /// [`Wait::wait`] gave up.
    TimedOut,
    /// Every one of the client's [`MAX_WATCHES`] watches is taken.
    TooManyWatches,
    /// The client is in use by another CPU or thread (a caller that may not wait: try again).
    Busy,
}

impl From<RingError> for Error {
    fn from(e: RingError) -> Self {
        Error::Ring(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => write!(f, "xenstore: {}", e.name()),
            Error::Oversized(n) => write!(f, "xenstore reply of {n} bytes (limit {PAYLOAD_MAX})"),
            Error::UnknownType(t) => write!(f, "xenstore reply of unknown type {t}"),
            Error::Malformed(why) => write!(f, "malformed xenstore reply: {why}"),
            Error::Unexpected { expected, got } => {
                write!(f, "xenstore reply for request {got}, expected {expected}")
            }
            Error::TooLong => f.write_str("xenstore request too long"),
            Error::BufferTooSmall(n) => write!(f, "xenstore reply needs a {n}-byte buffer"),
            Error::Ring(e) => write!(f, "xenstore: {e}"),
            Error::TimedOut => f.write_str("xenstore: no reply in time"),
            Error::TooManyWatches => write!(f, "xenstore: more than {MAX_WATCHES} watches"),
            Error::Busy => f.write_str("xenstore: busy in another call"),
        }
    }
}

impl core::error::Error for Error {}

/// The message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `enum xsd_sockmsg_type`, raw.
    pub ty: u32,
    /// Echoed by xenstored in the reply.
    pub req_id: u32,
    /// Transaction id, 0 for none.
    pub tx_id: u32,
    /// Payload bytes that follow.
    pub len: u32,
}

impl Header {
    /// The 16 wire bytes (little-endian, x86).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// From 16 wire bytes; a length over the limit is [`Error::Oversized`].
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, Error> {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = Header {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        };
        if h.len as usize > PAYLOAD_MAX {
            return Err(Error::Oversized(h.len));
        }
        Ok(h)
    }
}

/// Builds a request (header + `parts` concatenated) into `out`; returns its length.
/// Paths and tokens are passed with their NUL (`b"name\0"`) where the format wants one.
pub fn encode(
    out: &mut [u8],
    ty: MsgType,
    req_id: u32,
    tx_id: u32,
    parts: &[&[u8]],
) -> Result<usize, Error> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > PAYLOAD_MAX || HEADER_LEN + len > out.len() {
        return Err(Error::TooLong);
    }
    let h = Header {
        ty: ty as u32,
        req_id,
        tx_id,
        len: len as u32,
    };
    out[..HEADER_LEN].copy_from_slice(&h.encode());
    let mut at = HEADER_LEN;
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    Ok(at)
}

/// A reply: its header and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The header (its type is known: [`MsgType::from_u32`] succeeded).
    pub header: Header,
    /// The payload.
    pub payload: &'a [u8],
}

/// Checks a complete message: a known type, and an `XS_ERROR` becomes [`Error::Store`].
pub fn parse_reply(header: Header, payload: &[u8]) -> Result<Reply<'_>, Error> {
    if payload.len() != header.len as usize {
        return Err(Error::Malformed("payload length differs from the header"));
    }
    match MsgType::from_u32(header.ty) {
        None => Err(Error::UnknownType(header.ty)),
        Some(MsgType::Error) => {
            let name = payload
                .strip_suffix(b"\0")
                .ok_or(Error::Malformed("error name without NUL"))?;
            Err(Error::Store(XsError::from_name(name)))
        }
        Some(_) => Ok(Reply { header, payload }),
    }
}

/// A watch event: the path that changed and the token given to `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchEvent<'a> {
    /// The node that changed (or the watched one, on registration).
    pub path: &'a [u8],
    /// The token.
    pub token: &'a [u8],
}

/// Splits an `XS_WATCH_EVENT` payload `path\0token\0`.
pub fn parse_watch_event(payload: &[u8]) -> Result<WatchEvent<'_>, Error> {
    let body = payload.strip_suffix(b"\0").unwrap_or(payload);
    let mut it = body.splitn(2, |&b| b == 0);
    let path = it.next().unwrap_or_default();
    let token = it
        .next()
        .ok_or(Error::Malformed("watch event without a token"))?;
    Ok(WatchEvent { path, token })
}

/// The entries of an `XS_DIRECTORY` reply (NUL-separated names).
pub fn directory_entries(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    payload.split(|&b| b == 0).filter(|e| !e.is_empty())
}

/// How the client waits for xenstored: the platform notifies the store's event channel and
/// blocks (or yields) until it fires.
pub trait Wait {
    /// Tells xenstored there is something in the ring (EVTCHNOP_send).
    fn notify(&mut self);
    /// Waits a while for xenstored; `false` gives up (the call fails with
    /// [`Error::TimedOut`]).
    fn wait(&mut self) -> bool;
}

/// A transaction id (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tx(pub u32);

/// How many watches one client keeps ([`XenStore::add_watch`]).
pub const MAX_WATCHES: usize = 32;

/// A watch registered with [`XenStore::add_watch`]: its events set its bit, which
/// [`XenStore::take_fired`] reads and clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchId(pub u8);

impl WatchId {
    /// Its bit in a mask of [`XenStore::take_all_fired`].
    pub const fn bit(self) -> u32 {
        1 << (self.0 as u32 % MAX_WATCHES as u32)
    }
}

/// The token of the client's watch `id`: `stardust-watch-<id>`.
const TOKEN_PREFIX: &[u8] = b"stardust-watch-";

/// A XenStore client on the shared ring page.
#[derive(Debug)]
pub struct XenStore<M> {
    page: M,
    next_id: u32,
    /// Watches registered through [`add_watch`](Self::add_watch), one bit each.
    watches: u32,
    /// Watches whose events arrived and were not taken yet.
    fired: u32,
    /// Bytes of a message [`poll_events`](Self::poll_events) started to discard (one larger
    /// than the ring) that are still to come.
    skipping: usize,
}

impl<M: SharedMemory> XenStore<M> {
    /// A client on `page` (the XenStore ring page, already mapped).
    pub fn new(page: M) -> XenStore<M> {
        assert!(
            page.len() >= core::mem::size_of::<xenstore_domain_interface>(),
            "the xenstore page is too small"
        );
        XenStore {
            page,
            next_id: 1,
            watches: 0,
            fired: 0,
            skipping: 0,
        }
    }

    /// The page.
    pub fn page(&self) -> &M {
        &self.page
    }

    fn send(&mut self, msg: &[u8], w: &mut impl Wait) -> Result<(), Error> {
        let mut rest = msg;
        while !rest.is_empty() {
            let n = REQ.produce(&self.page, rest)?;
            rest = &rest[n..];
            w.notify();
            if !rest.is_empty() && !w.wait() {
                return Err(Error::TimedOut);
            }
        }
        Ok(())
    }

    fn recv_exact(&mut self, buf: &mut [u8], w: &mut impl Wait) -> Result<(), Error> {
        let mut got = 0;
        while got < buf.len() {
            let n = RSP.consume(&self.page, &mut buf[got..])?;
            got += n;
            if n > 0 {
                w.notify(); // room in the ring for xenstored
            } else if !w.wait() {
                return Err(Error::TimedOut);
            }
        }
        Ok(())
    }

    /// Discards `n` bytes of a message that does not fit the caller's buffer.
    fn skip(&mut self, mut n: usize, w: &mut impl Wait) -> Result<(), Error> {
        let mut scratch = [0u8; 64];
        while n > 0 {
            let k = n.min(scratch.len());
            self.recv_exact(&mut scratch[..k], w)?;
            n -= k;
        }
        Ok(())
    }

    /// Sends one request and returns the reply's payload (in `buf`). Watch events that
    /// arrive first go to `on_event`.
    pub fn call<'b>(
        &mut self,
        ty: MsgType,
        tx: Tx,
        parts: &[&[u8]],
        buf: &'b mut [u8],
        w: &mut impl Wait,
        mut on_event: impl FnMut(WatchEvent<'_>),
    ) -> Result<&'b [u8], Error> {
        if self.skipping > 0 {
            // the rest of a message poll_events began to discard comes before the reply
            let n = core::mem::take(&mut self.skipping);
            self.skip(n, w)?;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut msg = [0u8; HEADER_LEN + 256];
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if HEADER_LEN + len <= msg.len() {
            let n = encode(&mut msg, ty, id, tx.0, parts)?;
            self.send(&msg[..n], w)?;
        } else {
            // a long value: the header, then the parts as they are
            if len > PAYLOAD_MAX {
                return Err(Error::TooLong);
            }
            let h = Header {
                ty: ty as u32,
                req_id: id,
                tx_id: tx.0,
                len: len as u32,
            };
            self.send(&h.encode(), w)?;
            for p in parts {
                self.send(p, w)?;
            }
        }
        loop {
            let mut hb = [0u8; HEADER_LEN];
            self.recv_exact(&mut hb, w)?;
            let h = Header::decode(&hb)?;
            let n = h.len as usize;
            if h.ty == MsgType::WatchEvent as u32 {
                let mut ev = [0u8; 512];
                if n > ev.len() {
                    self.skip(n, w)?;
                    continue;
                }
                self.recv_exact(&mut ev[..n], w)?;
                if let Ok(e) = parse_watch_event(&ev[..n]) {
                    self.note(&e);
                    on_event(e);
                }
                continue;
            }
            if n > buf.len() {
                self.skip(n, w)?;
                return Err(Error::BufferTooSmall(n));
            }
            self.recv_exact(&mut buf[..n], w)?;
            if h.req_id != id {
                return Err(Error::Unexpected {
                    expected: id,
                    got: h.req_id,
                });
            }
            let reply = parse_reply(h, &buf[..n])?;
            if h.ty != ty as u32 {
                return Err(Error::Malformed("reply of another type than the request"));
            }
            let len = reply.payload.len();
            return Ok(&buf[..len]);
        }
    }

    /// Reads the value of `path` (without NUL) into `buf`.
    pub fn read<'b>(
        &mut self,
        tx: Tx,
        path: &str,
        buf: &'b mut [u8],
        w: &mut impl Wait,
    ) -> Result<&'b [u8], Error> {
        self.call(
            MsgType::Read,
            tx,
            &[path.as_bytes(), b"\0"],
            buf,
            w,
            no_event,
        )
    }

    /// Writes `value` to `path`.
    pub fn write(
        &mut self,
        tx: Tx,
        path: &str,
        value: &[u8],
        w: &mut impl Wait,
    ) -> Result<(), Error> {
        let mut buf = [0u8; 8];
        self.call(
            MsgType::Write,
            tx,
            &[path.as_bytes(), b"\0", value],
            &mut buf,
            w,
            no_event,
        )
        .map(|_| ())
    }

    /// Lists the children of `path` into `buf` (NUL-separated; iterate with
    /// [`directory_entries`]).
    pub fn directory<'b>(
        &mut self,
        tx: Tx,
        path: &str,
        buf: &'b mut [u8],
        w: &mut impl Wait,
    ) -> Result<&'b [u8], Error> {
        self.call(
            MsgType::Directory,
            tx,
            &[path.as_bytes(), b"\0"],
            buf,
            w,
            no_event,
        )
    }

    /// Registers a watch on `path`; events carry `token`. xenstored fires it once at once.
    pub fn watch(&mut self, path: &str, token: &str, w: &mut impl Wait) -> Result<(), Error> {
        let mut buf = [0u8; 8];
        self.call(
            MsgType::Watch,
            Tx(0),
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
            &mut buf,
            w,
            no_event,
        )
        .map(|_| ())
    }

    /// Registers a watch on `path` (and the nodes below it) under a token of the client's
    /// own: its events set the watch's bit ([`take_fired`](Self::take_fired)), whether they
    /// arrive during a call or are picked up by [`poll_events`](Self::poll_events).
    /// xenstored fires a new watch once at once, so its bit is set from the start.
    pub fn add_watch(&mut self, path: &str, w: &mut impl Wait) -> Result<WatchId, Error> {
        let free = (0..MAX_WATCHES as u8)
            .map(WatchId)
            .find(|id| self.watches & id.bit() == 0)
            .ok_or(Error::TooManyWatches)?;
        let mut token = [0u8; 24];
        let len = watch_token(free, &mut token);
        let mut buf = [0u8; 8];
        self.call(
            MsgType::Watch,
            Tx(0),
            &[path.as_bytes(), b"\0", &token[..len], b"\0"],
            &mut buf,
            w,
            no_event,
        )?;
        self.watches |= free.bit();
        Ok(free)
    }

    /// Whether watch `id` fired since it was last asked; clears it.
    pub fn take_fired(&mut self, id: WatchId) -> bool {
        let hit = self.fired & id.bit() != 0;
        self.fired &= !id.bit();
        hit
    }

    /// Every watch that fired since last asked, as a mask of [`WatchId::bit`]s; clears them.
    pub fn take_all_fired(&mut self) -> u32 {
        core::mem::take(&mut self.fired)
    }

    /// Sets the bit of the client's watch whose token `e` carries (other tokens are not ours:
    /// [`watch`](Self::watch)'s callers read their events with
    /// [`next_event`](Self::next_event)).
    fn note(&mut self, e: &WatchEvent<'_>) {
        let Some(digits) = e.token.strip_prefix(TOKEN_PREFIX) else {
            return;
        };
        if let Some(id) = parse_decimal(digits)
            .filter(|&n| (n as usize) < MAX_WATCHES)
            .map(|n| WatchId(n as u8))
            && self.watches & id.bit() != 0
        {
            self.fired |= id.bit();
        }
    }

    /// Takes every whole message waiting in the ring without blocking (for a caller that is
    /// not in a call: an event handler, a driver's poll): watch events set their watch's bit
    /// ([`take_fired`](Self::take_fired)), and a stray reply (to a call that gave up) is
    /// checked and dropped. A message that is not whole yet stays for the next poll. An error
    /// means the ring or a header is garbage.
    pub fn poll_events(&mut self) -> Result<(), Error> {
        loop {
            let pending = RSP.pending(&self.page)? as usize;
            if self.skipping > 0 {
                let mut scratch = [0u8; 64];
                let k = self.skipping.min(scratch.len()).min(pending);
                if k == 0 {
                    return Ok(());
                }
                let n = RSP.consume(&self.page, &mut scratch[..k])?;
                self.skipping -= n;
                continue;
            }
            if pending < HEADER_LEN {
                return Ok(());
            }
            let mut hb = [0u8; HEADER_LEN];
            RSP.peek(&self.page, &mut hb)?;
            let h = Header::decode(&hb)?;
            let n = h.len as usize;
            let mut ev = [0u8; 512];
            if n > ev.len() {
                // never whole in a 1 KiB ring, and not an event of ours: discard as it comes
                RSP.consume(&self.page, &mut hb)?;
                self.skipping = n;
                continue;
            }
            if pending < HEADER_LEN + n {
                return Ok(()); // the rest is on its way
            }
            RSP.consume(&self.page, &mut hb)?;
            RSP.consume(&self.page, &mut ev[..n])?;
            if h.ty == MsgType::WatchEvent as u32 {
                if let Ok(e) = parse_watch_event(&ev[..n]) {
                    self.note(&e);
                }
            } else {
                // a stray reply: checked, then dropped
                parse_reply(h, &ev[..n])?;
            }
        }
    }

    /// Waits for the next watch event and copies it into `buf` (`path\0token\0`).
    pub fn next_event<'b>(
        &mut self,
        buf: &'b mut [u8],
        w: &mut impl Wait,
    ) -> Result<WatchEvent<'b>, Error> {
        loop {
            let mut hb = [0u8; HEADER_LEN];
            self.recv_exact(&mut hb, w)?;
            let h = Header::decode(&hb)?;
            let n = h.len as usize;
            if n > buf.len() {
                self.skip(n, w)?;
                return Err(Error::BufferTooSmall(n));
            }
            self.recv_exact(&mut buf[..n], w)?;
            if h.ty == MsgType::WatchEvent as u32 {
                let payload: &'b [u8] = &buf[..n];
                let e = parse_watch_event(payload)?;
                self.note(&e);
                return Ok(e);
            }
            // a stray reply (to a call that gave up): checked and dropped
            parse_reply(h, &buf[..n])?;
        }
    }

    /// Starts a transaction.
    pub fn transaction_start(&mut self, w: &mut impl Wait) -> Result<Tx, Error> {
        let mut buf = [0u8; 16];
        let p = self.call(
            MsgType::TransactionStart,
            Tx(0),
            &[b"\0"],
            &mut buf,
            w,
            no_event,
        )?;
        let digits = p.strip_suffix(b"\0").unwrap_or(p);
        parse_decimal(digits)
            .filter(|&id| id != 0)
            .map(Tx)
            .ok_or(Error::Malformed("transaction id is not a decimal number"))
    }

    /// Ends a transaction: `commit` true commits (an [`XsError::Again`] means: retry it all).
    pub fn transaction_end(
        &mut self,
        tx: Tx,
        commit: bool,
        w: &mut impl Wait,
    ) -> Result<(), Error> {
        let mut buf = [0u8; 8];
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.call(MsgType::TransactionEnd, tx, &[arg], &mut buf, w, no_event)
            .map(|_| ())
    }
}

/// The `on_event` of the client's own calls: their events only set watch bits. One function
/// for all of them, so that `call` is compiled once, not once per caller's closure.
fn no_event(_: WatchEvent<'_>) {}

/// Writes the token of watch `id` into `buf`; its length.
fn watch_token(id: WatchId, buf: &mut [u8; 24]) -> usize {
    let p = TOKEN_PREFIX.len();
    buf[..p].copy_from_slice(TOKEN_PREFIX);
    let mut n = p;
    if id.0 >= 10 {
        buf[n] = b'0' + id.0 / 10;
        n += 1;
    }
    buf[n] = b'0' + id.0 % 10;
    n + 1
}

/// A non-empty decimal `u32`.
pub fn parse_decimal(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(any(test, feature = "test-utils"))]
pub mod fake;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
