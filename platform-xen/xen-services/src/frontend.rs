//! What a split driver's frontend (netfront, blkfront) needs from its platform
//! ([`FrontendHost`]), and the XenBus side of connecting one ([`Frontend`]): find the backend
//! from the device's node (`device/vif/0`, `device/vbd/51712`), drive the handshake of
//! [`crate::xenbus`] by the backend's state, give up on a backend that never answers.
//!
//! The drivers are generic over the host, so their ring logic and handshakes run in host tests
//! against fakes (`FakeXenStored`, fake pages, a mock backend), and in the kernel against Xen.

use core::fmt::{self, Write};

use crate::grant::{GrantError, GrantRef};
use crate::mem::SharedMemory;
use crate::xenbus::{Action, FrontendHandshake, HandshakeError, XenbusState};
use crate::xenstore::{self, WatchId};

/// What a frontend driver needs from the platform it runs on.
///
/// Pages: a page from [`alloc_page`](Self::alloc_page) may be granted to the backend; a driver
/// gives a page back ([`free_page`](Self::free_page)) only after [`end_grant`](Self::end_grant)
/// of every grant of it succeeded (a page whose grant cannot be ended is leaked, never reused:
/// the backend may still write it).
pub trait FrontendHost {
    /// A zeroed 4 KiB page the domain owns and may share.
    type Page: SharedMemory;

    /// Reads XenStore key `path` (relative: under the domain's home) into `buf`; its length.
    fn read(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, xenstore::Error>;
    /// Writes `value` to XenStore key `path`.
    fn write(&mut self, path: &str, value: &str) -> Result<(), xenstore::Error>;
    /// A zeroed page, or `None` when memory ran out.
    fn alloc_page(&mut self) -> Option<Self::Page>;
    /// Gives a page back (see the trait's docs for when).
    fn free_page(&mut self, page: Self::Page);
    /// Grants domain `domid` access to `page` (the backend reads it, and writes it unless
    /// `readonly`).
    fn grant(
        &mut self,
        domid: u16,
        page: &Self::Page,
        readonly: bool,
    ) -> Result<GrantRef, GrantError>;
    /// Ends a grant; `Err(InUse)` while the backend still maps the page.
    fn end_grant(&mut self, r: GrantRef) -> Result<(), GrantError>;
    /// A fresh event channel port that domain `remote` may bind (`EVTCHNOP_alloc_unbound`), or
    /// Xen's negative errno.
    fn alloc_event(&mut self, remote: u16) -> Result<u32, i32>;
    /// Signals the backend through `port`.
    fn notify(&self, port: u32);
    /// Nanoseconds on a monotonic clock.
    fn now_ns(&self) -> u64;
    /// Waits a little (a millisecond or so) while the backend moves.
    fn pause(&mut self);
    /// Watches XenStore node `path` (absolute, or under the domain's home) and the nodes
    /// below it: a change makes [`fired`](Self::fired) true.
    fn watch(&mut self, path: &str) -> Result<WatchId, xenstore::Error>;
    /// Whether watch `id` fired since it was last asked (clears it). Never blocks: a driver
    /// asks from its poll path.
    fn fired(&mut self, id: WatchId) -> bool;
    /// As [`read`](Self::read), from a driver's poll path: never waits for another caller of
    /// XenStore (`Err(Busy)`: ask again later), though it waits for xenstored's reply.
    fn read_now(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, xenstore::Error> {
        self.read(path, buf)
    }
    /// As [`write`](Self::write), from a driver's poll path (see [`read_now`](Self::read_now)).
    fn write_now(&mut self, path: &str, value: &str) -> Result<(), xenstore::Error> {
        self.write(path, value)
    }
}

/// The longest XenStore path a frontend builds.
pub const PATH_MAX: usize = 128;

/// A XenStore path built without allocation.
#[derive(Clone, Copy)]
pub struct Path {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl Path {
    /// `path` (or `None` when it does not fit).
    pub fn new(path: &str) -> Option<Path> {
        let mut p = Path {
            buf: [0; PATH_MAX],
            len: 0,
        };
        p.write_str(path).ok()?;
        Some(p)
    }

    /// `a/b` (or `None` when it does not fit).
    pub fn join(dir: &str, key: &str) -> Option<Path> {
        let mut p = Path {
            buf: [0; PATH_MAX],
            len: 0,
        };
        write!(p, "{dir}/{key}").ok()?;
        Some(p)
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Path {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        if end > PATH_MAX {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Why a frontend could not connect (or stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendError {
    /// A XenStore call failed (the key named).
    Store(&'static str, xenstore::Error),
    /// The toolstack's keys for the device are missing or malformed (`backend`, `backend-id`,
    /// `mac`, ...): the key named.
    BadKey(&'static str),
    /// A path did not fit [`PATH_MAX`].
    PathTooLong,
    /// The backend lacks a feature the driver needs (the key named).
    Missing(&'static str),
    /// The handshake went wrong (the backend went away).
    Handshake(HandshakeError),
    /// The backend did not reach the state awaited in time; the state it was in.
    Timeout(XenbusState),
    /// A grant failed.
    Grant(GrantError),
    /// Xen refused an event channel (its negative errno).
    Event(i32),
    /// No memory for the rings or buffers.
    NoMemory,
}

impl fmt::Display for FrontendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontendError::Store(key, e) => write!(f, "XenStore {key}: {e}"),
            FrontendError::BadKey(key) => write!(f, "XenStore key {key} is missing or malformed"),
            FrontendError::PathTooLong => f.write_str("a XenStore path is too long"),
            FrontendError::Missing(key) => write!(f, "the backend does not offer {key}"),
            FrontendError::Handshake(e) => write!(f, "{e}"),
            FrontendError::Timeout(s) => write!(
                f,
                "the backend did not answer (it stayed in XenBus state {})",
                *s as u32
            ),
            FrontendError::Grant(e) => write!(f, "{e}"),
            FrontendError::Event(e) => write!(f, "event channel: Xen error {e}"),
            FrontendError::NoMemory => f.write_str("out of memory for the rings and buffers"),
        }
    }
}

impl core::error::Error for FrontendError {}

/// How long a frontend waits for its backend to move, at each step of the handshake.
pub const BACKEND_WAIT_NS: u64 = 10_000_000_000;

/// A frontend's place in XenStore and its handshake.
#[derive(Debug)]
pub struct Frontend {
    /// The device's node (`device/vif/0`).
    pub node: Path,
    /// The backend's node (`/local/domain/0/backend/vif/<id>/0`).
    pub backend: Path,
    /// The backend's domain.
    pub backend_id: u16,
    handshake: FrontendHandshake,
    /// The watch on the backend's state once connected ([`watch_backend`](Self::watch_backend)).
    watch: Option<WatchId>,
    /// The state the backend left for, once it went away.
    gone: Option<XenbusState>,
    /// The watch fired and the state is still to be read (XenStore was busy).
    unread: bool,
    /// Once the backend went away, the states still to write (`Closing`, then `Closed`).
    closing: &'static [XenbusState],
}

impl Frontend {
    /// Reads where the backend of device `node` is (`backend`, `backend-id`).
    pub fn open(host: &mut impl FrontendHost, node: &str) -> Result<Frontend, FrontendError> {
        let node = Path::new(node).ok_or(FrontendError::PathTooLong)?;
        let mut buf = [0u8; PATH_MAX];
        let backend = read_key(host, &node, "backend", &mut buf)?;
        let backend = core::str::from_utf8(backend)
            .ok()
            .filter(|s| s.starts_with('/') && !s.contains('\0'))
            .ok_or(FrontendError::BadKey("backend"))?;
        let backend = Path::new(backend).ok_or(FrontendError::PathTooLong)?;
        let mut idbuf = [0u8; 16];
        let id = read_key(host, &node, "backend-id", &mut idbuf)?;
        let backend_id = xenstore::parse_decimal(id)
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| *v < 0x7ff0)
            .ok_or(FrontendError::BadKey("backend-id"))?;
        Ok(Frontend {
            node,
            backend,
            backend_id,
            handshake: FrontendHandshake::default(),
            watch: None,
            gone: None,
            unread: false,
            closing: &[],
        })
    }

    /// Watches the backend's state once connected, so that [`check_backend`] sees it go away
    /// (`xl network-detach`, `xl block-detach`, a backend driver unloaded, dom0's toolstack
    /// tearing the device down). Without the watch (XenStore refused it: the error) the driver
    /// works on, blind to that.
    ///
    /// [`check_backend`]: Self::check_backend
    #[inline(never)]
    pub fn watch_backend(&mut self, host: &mut impl FrontendHost) -> Result<(), FrontendError> {
        let path = Path::join(self.backend.as_str(), "state").ok_or(FrontendError::PathTooLong)?;
        let id = host
            .watch(path.as_str())
            .map_err(|e| FrontendError::Store("state (watch)", e))?;
        self.watch = Some(id);
        Ok(())
    }

    /// Whether the backend went away: `Some(state)` once its state left `Connected` (to
    /// `Closing`, `Closed`, back to `InitWait`, or the node is gone: `Unknown`). Cheap when
    /// its watch did not fire (a driver calls it from its poll path, where it may not wait for
    /// another caller of XenStore: the state is read with [`FrontendHost::read_now`], and
    /// read again on a later call when XenStore was busy). The frontend then closes its side:
    /// it writes `Closing` and `Closed`, so the backend and the toolstack can finish (a
    /// toolstack's detach waits for it); the driver stops using the rings. A read that fails
    /// for another reason than a missing node is not taken for a departure: the watch is
    /// looked at again on the next fire.
    #[inline]
    pub fn check_backend(&mut self, host: &mut impl FrontendHost) -> Option<XenbusState> {
        if self.gone.is_none() && !self.unread && !host.fired(self.watch?) {
            return None;
        }
        self.look_at_backend(host)
    }

    /// [`check_backend`](Self::check_backend) once the watch fired (or a look is owed).
    #[inline(never)]
    fn look_at_backend(&mut self, host: &mut impl FrontendHost) -> Option<XenbusState> {
        if self.gone.is_some() {
            self.close_now(host);
            return self.gone;
        }
        self.unread = true;
        let path = Path::join(self.backend.as_str(), "state")?;
        let mut buf = [0u8; 16];
        let state = match host.read_now(path.as_str(), &mut buf) {
            Ok(n) => XenbusState::parse(&buf[..n.min(buf.len())]).unwrap_or(XenbusState::Unknown),
            Err(xenstore::Error::Store(xenstore::XsError::NoEntry)) => XenbusState::Unknown,
            Err(xenstore::Error::Busy) => return None, // read on a later poll
            Err(_) => {
                self.unread = false;
                return None;
            }
        };
        self.unread = false;
        if matches!(
            state,
            XenbusState::Connected | XenbusState::Reconfiguring | XenbusState::Reconfigured
        ) {
            return None;
        }
        self.gone = Some(state);
        self.closing = &[XenbusState::Closing, XenbusState::Closed];
        self.close_now(host);
        self.gone
    }

    /// Writes the states of [`closing`](Self::closing) still to write, as far as XenStore is free.
    fn close_now(&mut self, host: &mut impl FrontendHost) {
        while let Some((&state, rest)) = self.closing.split_first() {
            let Some(path) = Path::join(self.node.as_str(), "state") else {
                return;
            };
            match host.write_now(path.as_str(), state.as_str()) {
                Err(xenstore::Error::Busy) => return, // on a later call
                _ => self.closing = rest,
            }
        }
    }

    /// The frontend's state.
    pub fn state(&self) -> XenbusState {
        self.handshake.state()
    }

    /// Reads the backend's key `key` into `buf` (`None`: absent).
    pub fn backend_key<'b>(
        &self,
        host: &mut impl FrontendHost,
        key: &'static str,
        buf: &'b mut [u8],
    ) -> Result<Option<&'b [u8]>, FrontendError> {
        match read_key(host, &self.backend, key, buf) {
            Ok(v) => Ok(Some(v)),
            Err(FrontendError::Store(_, xenstore::Error::Store(xenstore::XsError::NoEntry))) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the backend's boolean key `key` is `1`.
    pub fn backend_flag(
        &self,
        host: &mut impl FrontendHost,
        key: &'static str,
    ) -> Result<bool, FrontendError> {
        let mut buf = [0u8; 16];
        Ok(self
            .backend_key(host, key, &mut buf)?
            .map(|v| trim(v) == b"1")
            == Some(true))
    }

    /// Reads the frontend's own key `key` (written by the toolstack: `mac`, ...).
    pub fn own_key<'b>(
        &self,
        host: &mut impl FrontendHost,
        key: &'static str,
        buf: &'b mut [u8],
    ) -> Result<&'b [u8], FrontendError> {
        read_key(host, &self.node, key, buf).map(trim)
    }

    /// Writes the frontend's key `key`.
    pub fn write_key(
        &self,
        host: &mut impl FrontendHost,
        key: &'static str,
        value: &str,
    ) -> Result<(), FrontendError> {
        let path = Path::join(self.node.as_str(), key).ok_or(FrontendError::PathTooLong)?;
        host.write(path.as_str(), value)
            .map_err(|e| FrontendError::Store(key, e))
    }

    /// The backend's state (an unreadable or unknown value is `Unknown`).
    pub fn backend_state(
        &self,
        host: &mut impl FrontendHost,
    ) -> Result<XenbusState, FrontendError> {
        let mut buf = [0u8; 16];
        Ok(self
            .backend_key(host, "state", &mut buf)?
            .and_then(XenbusState::parse)
            .unwrap_or(XenbusState::Unknown))
    }

    /// Writes the frontend's state.
    pub fn set_state(
        &self,
        host: &mut impl FrontendHost,
        state: XenbusState,
    ) -> Result<(), FrontendError> {
        self.write_key(host, "state", state.as_str())
    }

    /// Waits (at most `limit_ns`) until the backend's state asks for an action other than
    /// waiting, and returns it; the frontend's own state has moved with it (write it with
    /// [`set_state`](Self::set_state) once the action is done).
    pub fn next_action(
        &mut self,
        host: &mut impl FrontendHost,
        limit_ns: u64,
    ) -> Result<Action, FrontendError> {
        let start = host.now_ns();
        loop {
            let backend = self.backend_state(host)?;
            match self.handshake.on_backend(backend) {
                Ok(Action::Wait) => {}
                Ok(a) => return Ok(a),
                Err(e) => return Err(FrontendError::Handshake(e)),
            }
            if host.now_ns().saturating_sub(start) > limit_ns {
                return Err(FrontendError::Timeout(backend));
            }
            host.pause();
        }
    }
}

fn read_key<'b>(
    host: &mut impl FrontendHost,
    dir: &Path,
    key: &'static str,
    buf: &'b mut [u8],
) -> Result<&'b [u8], FrontendError> {
    let path = Path::join(dir.as_str(), key).ok_or(FrontendError::PathTooLong)?;
    let n = host
        .read(path.as_str(), buf)
        .map_err(|e| FrontendError::Store(key, e))?;
    Ok(&buf[..n.min(buf.len())])
}

fn trim(v: &[u8]) -> &[u8] {
    let v = v.strip_suffix(b"\0").unwrap_or(v);
    v.strip_suffix(b"\n").unwrap_or(v)
}

/// A [`FrontendHost`] for host tests: XenStore is a `FakeXenStored` the test also plays the
/// backend's side of, pages are fake pages with made-up frame numbers, grants are recorded.
#[cfg(any(test, feature = "test-utils"))]
pub mod fake {
    use super::*;
    use crate::mem::fake::FakePage;
    use crate::xenstore::fake::FakeXenStored;
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::rc::Rc;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::cell::{Cell, RefCell};

    /// A page shared between the driver under test and the mock backend.
    pub type SharedPage = Rc<FakePage<4096>>;

    /// What a test's backend does at each pause: it may change XenStore.
    pub type OnPause = dyn FnMut(&mut BTreeMap<String, String>);

    /// The fake platform.
    #[derive(Default)]
    #[allow(missing_debug_implementations)] // holds a closure
    pub struct FakeHost {
        /// XenStore (the test writes the backend's keys here).
        pub store: BTreeMap<String, String>,
        /// Pages by frame number (what a grant names).
        pub frames: BTreeMap<u64, SharedPage>,
        /// Grants: reference → (domain, frame, read-only).
        pub grants: BTreeMap<u32, (u16, u64, bool)>,
        /// Grants the backend "maps" (ending them fails with `InUse`).
        pub mapped: Vec<u32>,
        /// Ports allocated.
        pub ports: u32,
        /// Notifications sent, by port.
        pub notified: RefCell<BTreeMap<u32, u32>>,
        /// Pages still allocated (shared: a test keeps a handle after the host moved into the
        /// driver).
        pub pages_out: Rc<Cell<usize>>,
        /// Pages left before `alloc_page` fails (`None`: unlimited).
        pub page_limit: Option<usize>,
        next_frame: u64,
        next_ref: u32,
        clock: Cell<u64>,
        /// Called at every `pause`: the test's backend moves here.
        pub on_pause: Option<Box<OnPause>>,
        /// A key whose reads and writes fail (fault injection).
        pub broken_key: Option<String>,
        /// Watches: the path, and the values under it when last looked at.
        pub watches: Vec<(String, Vec<(String, String)>)>,
        /// XenStore is in use elsewhere: `read_now` and `write_now` say `Busy`.
        pub busy: bool,
    }

    /// The fake page handle: the page, with its frame number.
    #[derive(Debug)]
    pub struct FakeFrame {
        /// The page.
        pub page: SharedPage,
        /// Its frame number.
        pub frame: u64,
    }

    impl SharedMemory for FakeFrame {
        fn len(&self) -> usize {
            self.page.len()
        }
        fn read_u8(&self, o: usize) -> u8 {
            self.page.read_u8(o)
        }
        fn write_u8(&self, o: usize, v: u8) {
            self.page.write_u8(o, v)
        }
        fn read_u32(&self, o: usize) -> u32 {
            self.page.read_u32(o)
        }
        fn write_u32(&self, o: usize, v: u32) {
            self.page.write_u32(o, v)
        }
        fn read_u16(&self, o: usize) -> u16 {
            self.page.read_u16(o)
        }
        fn write_u16(&self, o: usize, v: u16) {
            self.page.write_u16(o, v)
        }
        fn compare_exchange_u16(&self, o: usize, c: u16, n: u16) -> u16 {
            self.page.compare_exchange_u16(o, c, n)
        }
        fn fence(&self) {}
        fn read_bytes(&self, o: usize, b: &mut [u8]) {
            self.page.read_bytes(o, b)
        }
        fn write_bytes(&self, o: usize, d: &[u8]) {
            self.page.write_bytes(o, d)
        }
    }

    /// A shared fake page is shared memory too (the driver's and the backend's handles).
    impl<T: SharedMemory> SharedMemory for Rc<T> {
        fn len(&self) -> usize {
            (**self).len()
        }
        fn read_u8(&self, o: usize) -> u8 {
            (**self).read_u8(o)
        }
        fn write_u8(&self, o: usize, v: u8) {
            (**self).write_u8(o, v)
        }
        fn read_u32(&self, o: usize) -> u32 {
            (**self).read_u32(o)
        }
        fn write_u32(&self, o: usize, v: u32) {
            (**self).write_u32(o, v)
        }
        fn read_u16(&self, o: usize) -> u16 {
            (**self).read_u16(o)
        }
        fn write_u16(&self, o: usize, v: u16) {
            (**self).write_u16(o, v)
        }
        fn compare_exchange_u16(&self, o: usize, c: u16, n: u16) -> u16 {
            (**self).compare_exchange_u16(o, c, n)
        }
        fn fence(&self) {}
        fn read_bytes(&self, o: usize, b: &mut [u8]) {
            (**self).read_bytes(o, b)
        }
        fn write_bytes(&self, o: usize, d: &[u8]) {
            (**self).write_bytes(o, d)
        }
    }

    impl FakeHost {
        /// A host whose XenStore holds `keys`.
        pub fn with_keys(keys: &[(&str, &str)]) -> FakeHost {
            let mut h = FakeHost {
                next_frame: 0x1000,
                next_ref: 8,
                ..FakeHost::default()
            };
            for (k, v) in keys {
                h.store.insert((*k).into(), (*v).into());
            }
            h
        }

        /// The page a grant reference names (as the backend maps it), if granted.
        pub fn granted(&self, r: u32) -> Option<SharedPage> {
            let (_, frame, _) = self.grants.get(&r)?;
            self.frames.get(frame).cloned()
        }

        /// Notifications sent on `port`.
        pub fn notifications(&self, port: u32) -> u32 {
            self.notified.borrow().get(&port).copied().unwrap_or(0)
        }

        /// The nodes at and below `path`, with their values.
        fn under(&self, path: &str) -> Vec<(String, String)> {
            self.store
                .iter()
                .filter(|(k, _)| {
                    k.as_str() == path
                        || k.strip_prefix(path)
                            .is_some_and(|rest| rest.starts_with('/'))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }

        fn check(&self, path: &str) -> Result<(), xenstore::Error> {
            match &self.broken_key {
                Some(k) if path.ends_with(k.as_str()) => {
                    Err(xenstore::Error::Store(xenstore::XsError::Io))
                }
                _ => Ok(()),
            }
        }
    }

    /// What a test's backend does at each pause of a [`WireHost`]: it may change XenStore
    /// through the fake daemon.
    pub type OnPauseWire = dyn FnMut(&mut FakeXenStored<SharedPage>);

    /// A [`FakeHost`] whose XenStore is the real client ([`crate::xenstore::XenStore`]) on a
    /// ring page served by [`FakeXenStored`]: a driver's handshake goes over the wire protocol,
    /// with the daemon's errors and fault injection. Pages, grants and events are `inner`'s.
    #[allow(missing_debug_implementations)] // holds a closure
    pub struct WireHost {
        /// Pages, grants, events, clock.
        pub inner: FakeHost,
        /// The client.
        pub xs: crate::xenstore::XenStore<SharedPage>,
        /// The daemon (the test writes the backend's keys with `set`).
        pub xenstored: FakeXenStored<SharedPage>,
        /// Called at every `pause`: the test's backend moves here.
        pub on_pause: Option<Box<OnPauseWire>>,
    }

    impl WireHost {
        /// A host whose daemon holds `keys`.
        pub fn with_keys(keys: &[(&str, &str)]) -> WireHost {
            let ring: SharedPage = Rc::new(FakePage::default());
            let mut xenstored = FakeXenStored::new(ring.clone());
            for (k, v) in keys {
                xenstored.set(k, v);
            }
            WireHost {
                inner: FakeHost::with_keys(&[]),
                xs: crate::xenstore::XenStore::new(ring),
                xenstored,
                on_pause: None,
            }
        }
    }

    impl FrontendHost for WireHost {
        type Page = FakeFrame;

        fn read(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, xenstore::Error> {
            self.xs
                .read(xenstore::Tx(0), path, buf, &mut self.xenstored)
                .map(|v| v.len())
        }
        fn write(&mut self, path: &str, value: &str) -> Result<(), xenstore::Error> {
            self.xs
                .write(xenstore::Tx(0), path, value.as_bytes(), &mut self.xenstored)
        }
        fn alloc_page(&mut self) -> Option<FakeFrame> {
            self.inner.alloc_page()
        }
        fn free_page(&mut self, page: FakeFrame) {
            self.inner.free_page(page)
        }
        fn grant(
            &mut self,
            domid: u16,
            page: &FakeFrame,
            readonly: bool,
        ) -> Result<GrantRef, GrantError> {
            self.inner.grant(domid, page, readonly)
        }
        fn end_grant(&mut self, r: GrantRef) -> Result<(), GrantError> {
            self.inner.end_grant(r)
        }
        fn alloc_event(&mut self, remote: u16) -> Result<u32, i32> {
            self.inner.alloc_event(remote)
        }
        fn notify(&self, port: u32) {
            self.inner.notify(port)
        }
        fn now_ns(&self) -> u64 {
            self.inner.now_ns()
        }
        fn pause(&mut self) {
            self.inner.pause();
            if let Some(f) = &mut self.on_pause {
                f(&mut self.xenstored);
            }
        }
        fn watch(&mut self, path: &str) -> Result<WatchId, xenstore::Error> {
            self.xs.add_watch(path, &mut self.xenstored)
        }
        fn fired(&mut self, id: WatchId) -> bool {
            // what the kernel does on the XenStore event: take what is in the ring
            let _ = self.xs.poll_events();
            self.xs.take_fired(id)
        }
    }

    impl FrontendHost for FakeHost {
        type Page = FakeFrame;

        fn read(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, xenstore::Error> {
            self.check(path)?;
            let v = self
                .store
                .get(path)
                .ok_or(xenstore::Error::Store(xenstore::XsError::NoEntry))?;
            let n = v.len().min(buf.len());
            buf[..n].copy_from_slice(&v.as_bytes()[..n]);
            Ok(n)
        }
        fn write(&mut self, path: &str, value: &str) -> Result<(), xenstore::Error> {
            self.check(path)?;
            self.store.insert(path.into(), value.into());
            Ok(())
        }
        fn alloc_page(&mut self) -> Option<FakeFrame> {
            if let Some(left) = &mut self.page_limit {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
            }
            self.next_frame += 1;
            let page: SharedPage = Rc::new(FakePage::default());
            self.frames.insert(self.next_frame, page.clone());
            self.pages_out.set(self.pages_out.get() + 1);
            Some(FakeFrame {
                page,
                frame: self.next_frame,
            })
        }
        fn free_page(&mut self, page: FakeFrame) {
            assert!(
                !self.grants.values().any(|g| g.1 == page.frame),
                "page {:#x} given back while granted",
                page.frame
            );
            self.frames.remove(&page.frame);
            self.pages_out.set(self.pages_out.get() - 1);
        }
        fn grant(
            &mut self,
            domid: u16,
            page: &FakeFrame,
            readonly: bool,
        ) -> Result<GrantRef, GrantError> {
            self.next_ref += 1;
            self.grants
                .insert(self.next_ref, (domid, page.frame, readonly));
            Ok(GrantRef(self.next_ref))
        }
        fn end_grant(&mut self, r: GrantRef) -> Result<(), GrantError> {
            if self.mapped.contains(&r.0) {
                return Err(GrantError::InUse(r));
            }
            self.grants
                .remove(&r.0)
                .map(|_| ())
                .ok_or(GrantError::NotGranted(r))
        }
        fn alloc_event(&mut self, _remote: u16) -> Result<u32, i32> {
            self.ports += 1;
            Ok(self.ports + 10)
        }
        fn notify(&self, port: u32) {
            *self.notified.borrow_mut().entry(port).or_default() += 1;
        }
        fn now_ns(&self) -> u64 {
            self.clock.get()
        }
        fn pause(&mut self) {
            self.clock.set(self.clock.get() + 1_000_000);
            if let Some(f) = &mut self.on_pause {
                f(&mut self.store);
            }
        }
        /// Fires (as xenstored does, once at once, then) whenever a node at or below `path`
        /// changed, appeared or went since the last look.
        fn watch(&mut self, path: &str) -> Result<WatchId, xenstore::Error> {
            self.check(path)?;
            if self.watches.len() >= xenstore::MAX_WATCHES {
                return Err(xenstore::Error::TooManyWatches);
            }
            self.watches.push((path.into(), Vec::new()));
            Ok(WatchId((self.watches.len() - 1) as u8))
        }
        fn read_now(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, xenstore::Error> {
            if self.busy {
                return Err(xenstore::Error::Busy);
            }
            self.read(path, buf)
        }
        fn write_now(&mut self, path: &str, value: &str) -> Result<(), xenstore::Error> {
            if self.busy {
                return Err(xenstore::Error::Busy);
            }
            self.write(path, value)
        }
        fn fired(&mut self, id: WatchId) -> bool {
            let Some(path) = self.watches.get(usize::from(id.0)).map(|w| w.0.clone()) else {
                return false;
            };
            let now = self.under(&path);
            let w = &mut self.watches[usize::from(id.0)];
            let changed = w.1 != now;
            w.1 = now;
            changed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeHost;
    use super::*;

    fn host() -> FakeHost {
        FakeHost::with_keys(&[
            ("device/vif/0/backend", "/local/domain/0/backend/vif/5/0"),
            ("device/vif/0/backend-id", "0"),
            ("/local/domain/0/backend/vif/5/0/state", "2"),
        ])
    }

    #[test]
    fn open_finds_the_backend() {
        let mut h = host();
        let f = Frontend::open(&mut h, "device/vif/0").expect("opens");
        assert_eq!(f.node.as_str(), "device/vif/0");
        assert_eq!(f.backend.as_str(), "/local/domain/0/backend/vif/5/0");
        assert_eq!(f.backend_id, 0);
        assert_eq!(f.backend_state(&mut h), Ok(XenbusState::InitWait));
    }

    #[test]
    fn bad_toolstack_keys_are_named() {
        for (key, value) in [
            ("device/vif/0/backend", "relative/path"),
            ("device/vif/0/backend-id", "x"),
            ("device/vif/0/backend-id", "70000"),
            ("device/vif/0/backend-id", "32752"),
        ] {
            let mut h = host();
            h.store.insert(key.into(), value.into());
            let e = Frontend::open(&mut h, "device/vif/0").expect_err(value);
            assert!(matches!(e, FrontendError::BadKey(_)), "{value}: {e}");
        }
        let mut h = host();
        h.store.remove("device/vif/0/backend");
        assert!(matches!(
            Frontend::open(&mut h, "device/vif/0"),
            Err(FrontendError::Store("backend", _))
        ));
    }

    #[test]
    fn the_handshake_follows_the_backend_and_gives_up_on_a_silent_one() {
        let mut h = host();
        let mut f = Frontend::open(&mut h, "device/vif/0").expect("opens");
        assert_eq!(f.next_action(&mut h, BACKEND_WAIT_NS), Ok(Action::Publish));
        f.set_state(&mut h, f.state()).expect("writes");
        assert_eq!(h.store["device/vif/0/state"], "3");
        // The backend connects after a few pauses.
        let mut n = 0;
        h.on_pause = Some(alloc::boxed::Box::new(move |store| {
            n += 1;
            if n == 5 {
                store.insert("/local/domain/0/backend/vif/5/0/state".into(), "4".into());
            }
        }));
        assert_eq!(f.next_action(&mut h, BACKEND_WAIT_NS), Ok(Action::Connect));
        // A backend that never connects: a timeout naming its state.
        let mut h = host();
        let mut f = Frontend::open(&mut h, "device/vif/0").expect("opens");
        f.next_action(&mut h, BACKEND_WAIT_NS).expect("publish");
        assert_eq!(
            f.next_action(&mut h, 50_000_000),
            Err(FrontendError::Timeout(XenbusState::InitWait))
        );
    }

    #[test]
    fn a_backend_that_goes_away_is_an_error() {
        let mut h = host();
        let mut f = Frontend::open(&mut h, "device/vif/0").expect("opens");
        f.next_action(&mut h, BACKEND_WAIT_NS).expect("publish");
        h.store
            .insert("/local/domain/0/backend/vif/5/0/state".into(), "6".into());
        assert_eq!(f.next_action(&mut h, BACKEND_WAIT_NS), Ok(Action::Close));
        let mut h = host();
        let mut f = Frontend::open(&mut h, "device/vif/0").expect("opens");
        f.next_action(&mut h, BACKEND_WAIT_NS).expect("publish");
        h.store.remove("/local/domain/0/backend/vif/5/0/state");
        assert!(matches!(
            f.next_action(&mut h, BACKEND_WAIT_NS),
            Err(FrontendError::Handshake(_))
        ));
    }

    /// A connected frontend on `h`, its backend's state watched.
    fn connected(h: &mut FakeHost) -> Frontend {
        let mut f = Frontend::open(h, "device/vif/0").expect("opens");
        f.next_action(h, BACKEND_WAIT_NS).expect("publish");
        h.store
            .insert("/local/domain/0/backend/vif/5/0/state".into(), "4".into());
        assert_eq!(f.next_action(h, BACKEND_WAIT_NS), Ok(Action::Connect));
        f.set_state(h, f.state()).expect("writes");
        f.watch_backend(h).expect("watch");
        f
    }

    #[test]
    fn a_backend_that_leaves_after_connecting_is_seen_and_answered() {
        let state = "/local/domain/0/backend/vif/5/0/state";
        for (value, gone) in [
            (Some("5"), XenbusState::Closing),
            (Some("6"), XenbusState::Closed),
            (Some("2"), XenbusState::InitWait),
            (Some("garbage"), XenbusState::Unknown),
            (None, XenbusState::Unknown),
        ] {
            let mut h = host();
            let mut f = connected(&mut h);
            assert_eq!(
                f.check_backend(&mut h),
                None,
                "the first fire is the registration"
            );
            // other keys of the backend changing are not a departure
            h.store.insert(
                "/local/domain/0/backend/vif/5/0/hotplug-status".into(),
                "connected".into(),
            );
            h.store.insert(state.into(), "7".into());
            assert_eq!(
                f.check_backend(&mut h),
                None,
                "reconfiguring is not leaving"
            );
            h.store.insert(state.into(), "4".into());
            assert_eq!(f.check_backend(&mut h), None);
            match value {
                Some(v) => h.store.insert(state.into(), v.into()),
                None => h.store.remove(state),
            };
            assert_eq!(f.check_backend(&mut h), Some(gone), "{value:?}");
            assert_eq!(h.store["device/vif/0/state"], "6", "the frontend closed");
            // it stays gone, even if the node comes back
            h.store.insert(state.into(), "4".into());
            assert_eq!(f.check_backend(&mut h), Some(gone));
        }
    }

    #[test]
    fn a_failing_read_is_not_a_departure_and_no_watch_sees_nothing() {
        let mut h = host();
        let mut f = connected(&mut h);
        assert_eq!(f.check_backend(&mut h), None);
        h.store
            .insert("/local/domain/0/backend/vif/5/0/state".into(), "5".into());
        h.broken_key = Some("state".into());
        assert_eq!(
            f.check_backend(&mut h),
            None,
            "an I/O error is not a departure"
        );
        h.broken_key = None;
        h.store
            .insert("/local/domain/0/backend/vif/5/0/state".into(), "6".into());
        assert_eq!(f.check_backend(&mut h), Some(XenbusState::Closed));
        // a frontend whose watch XenStore refused: connected, and blind
        let mut h = host();
        let mut f = Frontend::open(&mut h, "device/vif/0").expect("opens");
        h.broken_key = Some("state".into());
        assert!(matches!(
            f.watch_backend(&mut h),
            Err(FrontendError::Store("state (watch)", _))
        ));
        h.broken_key = None;
        h.store
            .insert("/local/domain/0/backend/vif/5/0/state".into(), "6".into());
        assert_eq!(f.check_backend(&mut h), None);
    }

    #[test]
    fn a_busy_xenstore_defers_the_look_and_never_loses_it() {
        let state = "/local/domain/0/backend/vif/5/0/state";
        let mut h = host();
        let mut f = connected(&mut h);
        assert_eq!(f.check_backend(&mut h), None);
        h.store.insert(state.into(), "5".into());
        h.busy = true;
        assert_eq!(f.check_backend(&mut h), None, "busy: looked at later");
        assert_eq!(
            f.check_backend(&mut h),
            None,
            "the watch does not fire again"
        );
        h.busy = false;
        assert_eq!(f.check_backend(&mut h), Some(XenbusState::Closing));
        assert_eq!(h.store["device/vif/0/state"], "6");
    }

    #[test]
    fn the_watch_goes_over_the_wire_protocol() {
        use super::fake::WireHost;
        let be = "/local/domain/0/backend/vbd/5/51712";
        let mut h = WireHost::with_keys(&[
            ("device/vbd/51712/backend", be),
            ("device/vbd/51712/backend-id", "0"),
            (&alloc::format!("{be}/state"), "4"),
        ]);
        let mut f = Frontend::open(&mut h, "device/vbd/51712").expect("opens");
        f.watch_backend(&mut h).expect("watch");
        assert_eq!(f.check_backend(&mut h), None);
        h.xenstored.change(&alloc::format!("{be}/state"), "5");
        assert_eq!(f.check_backend(&mut h), Some(XenbusState::Closing));
        assert_eq!(h.xenstored.get("device/vbd/51712/state"), Some(&b"6"[..]));
    }

    #[test]
    fn long_paths_are_refused() {
        let long = "x".repeat(200);
        assert!(Path::join(&long, "state").is_none());
        assert_eq!(Path::join("a", "b").expect("fits").as_str(), "a/b");
    }
}
