//! Sockets shaped like `std::net`: [`TcpListener`], [`TcpStream`], [`UdpSocket`].
//!
//! A socket is a handle into a stack that the glue shares ([`Shared`]): it holds the smoltcp
//! socket's handle and a clone of the [`Shared`] value (a reference to the stack behind the
//! glue's lock), so it is `Send` when that is, and many threads may use their own sockets on
//! one stack.
//!
//! Every operation comes three ways:
//! - `try_*`: non-blocking, [`Error::WouldBlock`] when nothing can be done yet;
//! - blocking (`accept`, `read`, `write`, `recv_from`, ... and embedded-io's `Read`/`Write`),
//!   when the glue implements [`Wait`]: lock, try, unlock; on would-block, register what the
//!   call waits for ([`Interest`]: its socket's data, room, state; a listener's queue) and wait
//!   on the ticket that gives (or the timeout);
//! - async (`accept_async`, `connect_async`, embedded-io-async's `Read`/`Write`, ...): the task's
//!   waker is registered with the stack for the same [`Interest`] (under its lock, so no
//!   wake-up is lost) and woken by the poll that changes it. Only the tasks and threads whose
//!   socket changed are woken, not every waiter; a wake-up may still be spurious (two sockets
//!   sharing a wait slot, a change that is not yet enough): the call tries again (and registers
//!   again). The tests (`tests/async.rs`, `tests/wake.rs`) run the tasks on an executor that
//!   fails on a wake-up lost.
//!
//! The blocking and async calls poll no more than they need (the glue's poller takes the
//! device's news on its interrupts): a call served from its socket's buffers polls nothing, a
//! call that queued data to send (a write, a connect) sends it at once with one pass of egress
//! ([`Stack::poll_egress`]), and a call that would-block polls nothing. A window freed by a read
//! is announced by the poll that [`Stack::poll_at`] then asks for at once. The `try_*` calls,
//! `bind`, `shutdown` and `flush` poll the whole stack after them, as before.
use crate::stack::{Error, Interest, ListenerId, Shutdown, Stack, Ticket};
use core::future::poll_fn;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::task::{Context, Poll};
use core::time::Duration;
use netdev::NetDevice;
use smoltcp::iface::SocketHandle;
use smoltcp::wire::{IpAddress, IpEndpoint};

/// How the sockets reach the stack: the glue's handle on its `Stack` (behind its lock) and its
/// clock.
pub trait Shared: Clone {
    /// The stack's device.
    type Device: NetDevice;

    /// Runs `f` with the stack locked.
    fn with_stack<R>(&self, f: impl FnOnce(&mut Stack<Self::Device>) -> R) -> R;

    /// The clock the stack is polled with, in ns.
    fn now_ns(&self) -> u64;
}

/// How a blocking call waits: the glue's side of the no-lost-wake-up protocol.
pub trait Wait: Shared {
    /// Blocks until the stack's generation of `ticket.slot` is no longer `ticket.generation`
    /// (what the call waits for changed: [`Stack::wait_for`]), or the clock reaches
    /// `deadline_ns`. Returning early is allowed (the caller tries again). With no scheduler
    /// this polls the stack itself and idles between polls.
    fn wait(&self, ticket: Ticket, deadline_ns: Option<u64>);
}

fn endpoint(a: SocketAddrV4) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(*a.ip()), a.port())
}

fn addr(e: IpEndpoint) -> SocketAddrV4 {
    #[allow(unreachable_patterns)] // IPv6, if another crate turns smoltcp's on.
    match e.addr {
        IpAddress::Ipv4(a) => SocketAddrV4::new(a, e.port),
        _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, e.port),
    }
}

fn deadline(now: u64, timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| now.saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)))
}

/// Tries `op`; if it did something and `interest` sends (a write, a connect), sends what it
/// queued at once ([`Stack::send_now`]). Nothing else is polled: a call served from its
/// socket's buffers does not walk the interface, and a read or accept that would-block leaves
/// the device's news to the glue's poller (its interrupt's poll wakes the call once its socket
/// changed; without a scheduler, [`Wait::wait`] polls), so the stack is untouched
/// ([`Stack::take_untouched`]). A write that would-block polls, as a bulk sender's
/// acknowledgements are likely waiting.
fn attempt<D: NetDevice, R>(
    stack: &mut Stack<D>,
    now: u64,
    interest: Interest,
    op: &mut impl FnMut(&mut Stack<D>) -> Result<R, Error>,
) -> Result<R, Error> {
    match op(stack) {
        // A writer waiting for room (a bulk sender): the acknowledgements that make it may be
        // on the device already; take them now rather than sleep until the poller does.
        Err(Error::WouldBlock) if interest.sends() => {
            if stack.poll(now) {
                let r = op(stack);
                if r.is_ok() {
                    stack.send_now(now, interest);
                }
                r
            } else {
                Err(Error::WouldBlock)
            }
        }
        Err(Error::WouldBlock) => {
            stack.note_untouched();
            Err(Error::WouldBlock)
        }
        r => {
            if interest.sends() {
                stack.send_now(now, interest);
            }
            r
        }
    }
}

/// One non-blocking try, with a full poll after it (so that what it did goes out at once).
fn once<S: Shared, R>(
    shared: &S,
    mut op: impl FnMut(&mut Stack<S::Device>) -> Result<R, Error>,
) -> Result<R, Error> {
    let now = shared.now_ns();
    shared.with_stack(|st| {
        let r = op(st);
        let changed = st.poll(now);
        match r {
            Err(Error::WouldBlock) if changed => op(st),
            r => r,
        }
    })
}

/// Tries `op` until it does not would-block, waiting (on a ticket for `interest`) until what it
/// waits for changes, until the timeout (then `TimedOut`).
fn block<S: Wait, R>(
    shared: &S,
    timeout: Option<Duration>,
    interest: Interest,
    mut op: impl FnMut(&mut Stack<S::Device>) -> Result<R, Error>,
) -> Result<R, Error> {
    let deadline = deadline(shared.now_ns(), timeout);
    loop {
        let now = shared.now_ns();
        let r = shared.with_stack(|st| match attempt(st, now, interest, &mut op) {
            Err(Error::WouldBlock) => Err(st.wait_for(interest)),
            r => Ok(r),
        });
        let ticket = match r {
            Ok(r) => return r,
            Err(ticket) => ticket,
        };
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::TimedOut);
        }
        shared.wait(ticket, deadline);
    }
}

/// The async form of [`block`]: one try, registering the task's waker for `interest` on
/// would-block.
fn poll_op<S: Shared, R>(
    shared: &S,
    cx: &mut Context<'_>,
    interest: Interest,
    op: &mut impl FnMut(&mut Stack<S::Device>) -> Result<R, Error>,
) -> Poll<Result<R, Error>> {
    let now = shared.now_ns();
    shared.with_stack(|st| match attempt(st, now, interest, op) {
        Err(Error::WouldBlock) => {
            st.register_waker(interest, cx.waker());
            Poll::Pending
        }
        r => Poll::Ready(r),
    })
}

// -------------------------------------------------------------------- TcpListener

/// A TCP port listening for connections, with a pool of `backlog` listening sockets (see the
/// crate docs). Dropping it stops listening and resets the connections not accepted.
#[derive(Debug)]
pub struct TcpListener<S: Shared> {
    shared: S,
    id: ListenerId,
    port: u16,
}

impl<S: Shared> TcpListener<S> {
    /// Listens on `port` (all of the interface's addresses) with `backlog` listening sockets.
    /// Fails with `AddrInUse` if something listens there, `NoSockets` if not even one socket
    /// is free.
    pub fn bind(shared: &S, port: u16, backlog: usize) -> Result<Self, Error> {
        let id = once(shared, |st| st.tcp_listen(port, backlog))?;
        Ok(TcpListener {
            shared: shared.clone(),
            id,
            port,
        })
    }

    /// [`TcpListener::bind`] with `buffer` bytes for each connection's receive and transmit
    /// buffers ([`Stack::tcp_listen_with`]: such a socket counts as several against the
    /// socket limit).
    pub fn bind_with_buffer(
        shared: &S,
        port: u16,
        backlog: usize,
        buffer: usize,
    ) -> Result<Self, Error> {
        let id = once(shared, |st| st.tcp_listen_with(port, backlog, buffer))?;
        Ok(TcpListener {
            shared: shared.clone(),
            id,
            port,
        })
    }

    /// The local address (the interface's, unspecified before a DHCP lease).
    pub fn local_addr(&self) -> SocketAddrV4 {
        let ip = self
            .shared
            .with_stack(|st| st.ipv4_addr())
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        SocketAddrV4::new(ip, self.port)
    }

    fn wrap(&self, h: SocketHandle) -> Result<(TcpStream<S>, SocketAddrV4), Error> {
        let stream = TcpStream::new(self.shared.clone(), h);
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }

    /// A connection if one is waiting, else `WouldBlock`.
    pub fn try_accept(&self) -> Result<(TcpStream<S>, SocketAddrV4), Error> {
        let id = self.id;
        let h = once(&self.shared, |st| st.tcp_accept(id))?;
        self.wrap(h)
    }

    /// Waits for a connection (async).
    pub async fn accept_async(&self) -> Result<(TcpStream<S>, SocketAddrV4), Error> {
        let id = self.id;
        let mut op = |st: &mut Stack<S::Device>| st.tcp_accept(id);
        let h = poll_fn(|cx| poll_op(&self.shared, cx, Interest::Accept(id), &mut op)).await?;
        self.wrap(h)
    }
}

impl<S: Wait> TcpListener<S> {
    /// Waits for a connection.
    pub fn accept(&self) -> Result<(TcpStream<S>, SocketAddrV4), Error> {
        let id = self.id;
        let h = block(&self.shared, None, Interest::Accept(id), |st| {
            st.tcp_accept(id)
        })?;
        self.wrap(h)
    }
}

impl<S: Shared> Drop for TcpListener<S> {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.with_stack(|st| st.tcp_unlisten(id));
    }
}

// -------------------------------------------------------------------- TcpStream

/// A TCP connection. Dropping it closes it gracefully (`close`).
#[derive(Debug)]
pub struct TcpStream<S: Shared> {
    shared: S,
    handle: SocketHandle,
    write_closed: bool,
    read_closed: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl<S: Shared> TcpStream<S> {
    fn new(shared: S, handle: SocketHandle) -> Self {
        TcpStream {
            shared,
            handle,
            write_closed: false,
            read_closed: false,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// Starts connecting to `to` without waiting; [`TcpStream::try_connected`] (or a read or
    /// write, which would-block until then) tells when the handshake is done.
    pub fn connect_start(shared: &S, to: SocketAddrV4) -> Result<Self, Error> {
        let h = once(shared, |st| st.tcp_connect(endpoint(to)))?;
        Ok(Self::new(shared.clone(), h))
    }

    /// `Ok` once connected, `WouldBlock` during the handshake, `ConnectionRefused` if it failed.
    pub fn try_connected(&self) -> Result<(), Error> {
        let h = self.handle;
        once(&self.shared, |st| st.tcp_connected(h))
    }

    /// Connects to `to` (async).
    pub async fn connect_async(shared: &S, to: SocketAddrV4) -> Result<Self, Error> {
        let s = Self::connect_start(shared, to)?;
        let h = s.handle;
        let mut op = |st: &mut Stack<S::Device>| st.tcp_connected(h);
        poll_fn(|cx| poll_op(&s.shared, cx, Interest::Change(h), &mut op)).await?;
        Ok(s)
    }

    /// The remote end.
    pub fn peer_addr(&self) -> Result<SocketAddrV4, Error> {
        let h = self.handle;
        self.shared
            .with_stack(|st| st.tcp_endpoints(h))
            .map(|(_, r)| addr(r))
    }

    /// The local end.
    pub fn local_addr(&self) -> Result<SocketAddrV4, Error> {
        let h = self.handle;
        self.shared
            .with_stack(|st| st.tcp_endpoints(h))
            .map(|(l, _)| addr(l))
    }

    /// How long a blocking read waits (`None`: for ever). A read that times out returns
    /// [`Error::TimedOut`].
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// How long a blocking write or flush waits.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    fn read_op(&self) -> impl FnMut(&mut Stack<S::Device>, &mut [u8]) -> Result<usize, Error> {
        let (h, write_closed, read_closed) = (self.handle, self.write_closed, self.read_closed);
        move |st, buf| {
            if read_closed {
                return Ok(0);
            }
            st.tcp_recv(h, buf, write_closed)
        }
    }

    /// Reads what has arrived: `Ok(0)` at the end of the stream, `WouldBlock` if nothing yet.
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut op = self.read_op();
        once(&self.shared, |st| op(st, buf))
    }

    /// Queues what fits of `buf` for sending, `WouldBlock` if nothing fits.
    pub fn try_write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let h = self.handle;
        once(&self.shared, |st| st.tcp_send(h, buf))
    }

    /// Closes one or both halves. `Write` sends FIN after the queued data (the peer reads end
    /// of stream); `Read` makes further reads return end of stream.
    pub fn shutdown(&mut self, how: Shutdown) -> Result<(), Error> {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_closed = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.write_closed = true;
            let h = self.handle;
            once(&self.shared, |st| {
                st.tcp_close_write(h);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Closes the connection gracefully (as dropping it does).
    pub fn close(self) {}

    /// Aborts the connection: the peer gets an RST.
    pub fn abort(self) {
        let h = self.handle;
        self.shared.with_stack(|st| st.tcp_abort(h));
        core::mem::forget(self);
    }

    /// smoltcp's TCP state of the connection (for diagnostics).
    pub fn state(&self) -> smoltcp::socket::tcp::State {
        let h = self.handle;
        self.shared.with_stack(|st| st.tcp_state(h))
    }

    /// Whether a read would not block.
    pub fn read_ready(&self) -> bool {
        let h = self.handle;
        self.read_closed || self.shared.with_stack(|st| st.tcp_can_read(h))
    }
}

impl<S: Wait> TcpStream<S> {
    /// Connects to `to`, waiting at most `timeout` (`None`: until smoltcp gives up).
    pub fn connect(shared: &S, to: SocketAddrV4, timeout: Option<Duration>) -> Result<Self, Error> {
        let s = Self::connect_start(shared, to)?;
        let h = s.handle;
        block(shared, timeout, Interest::Change(h), |st| {
            st.tcp_connected(h)
        })?;
        Ok(s)
    }

    /// Reads at least one byte (or `Ok(0)` at the end of the stream), waiting up to the read
    /// timeout.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut op = self.read_op();
        block(
            &self.shared,
            self.read_timeout,
            Interest::Read(self.handle),
            |st| op(st, buf),
        )
    }

    /// Queues at least one byte of `buf` for sending, waiting up to the write timeout for room.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let h = self.handle;
        block(&self.shared, self.write_timeout, Interest::Write(h), |st| {
            st.tcp_send(h, buf)
        })
    }

    /// Writes all of `buf`.
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.write(buf)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Writes all of `buf`, then closes the sending half (as `shutdown(Write)`), queueing the
    /// last bytes and the close in one step: they leave in one segment with the FIN instead of
    /// a segment and then a bare FIN. A peer that gets the FIN with the data does not close
    /// first itself, so the TIME-WAIT stays here (QEMU's slirp keeps its TIME-WAIT connections
    /// 10 s in a list it searches for every packet). For a server's last reply.
    pub fn write_last(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        let h = self.handle;
        loop {
            let n = block(&self.shared, self.write_timeout, Interest::Write(h), |st| {
                let n = if buf.is_empty() {
                    0
                } else {
                    st.tcp_send(h, buf)?
                };
                if n == buf.len() {
                    st.tcp_close_write(h);
                }
                Ok(n)
            })?;
            buf = &buf[n..];
            if buf.is_empty() {
                self.write_closed = true;
                return Ok(());
            }
        }
    }

    /// Hands what is queued to the device now (it does not wait for the peer's
    /// acknowledgement: see [`TcpStream::wait_acked`]).
    pub fn flush(&mut self) -> Result<(), Error> {
        let now = self.shared.now_ns();
        self.shared.with_stack(|st| {
            st.poll(now);
        });
        Ok(())
    }

    /// Waits until the peer acknowledged everything written (up to the write timeout).
    pub fn wait_acked(&mut self) -> Result<(), Error> {
        let h = self.handle;
        block(
            &self.shared,
            self.write_timeout,
            Interest::Change(h),
            |st| st.tcp_flush(h),
        )
    }
}

impl<S: Shared> Drop for TcpStream<S> {
    fn drop(&mut self) {
        let (h, now) = (self.handle, self.shared.now_ns());
        self.shared.with_stack(|st| {
            st.tcp_release(h);
            st.poll(now);
        });
    }
}

impl<S: Shared> embedded_io::ErrorType for TcpStream<S> {
    type Error = Error;
}

impl<S: Wait> embedded_io::Read for TcpStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        TcpStream::read(self, buf)
    }
}

impl<S: Wait> embedded_io::Write for TcpStream<S> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        TcpStream::write(self, buf)
    }

    fn flush(&mut self) -> Result<(), Error> {
        TcpStream::flush(self)
    }
}

impl<S: Shared> embedded_io_async::Read for TcpStream<S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut op = self.read_op();
        let (shared, h) = (self.shared.clone(), self.handle);
        poll_fn(|cx| {
            poll_op(&shared, cx, Interest::Read(h), &mut |st: &mut Stack<
                S::Device,
            >| {
                op(st, buf)
            })
        })
        .await
    }
}

impl<S: Shared> embedded_io_async::Write for TcpStream<S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let h = self.handle;
        let mut op = |st: &mut Stack<S::Device>| st.tcp_send(h, buf);
        poll_fn(|cx| poll_op(&self.shared, cx, Interest::Write(h), &mut op)).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let now = self.shared.now_ns();
        self.shared.with_stack(|st| {
            st.poll(now);
        });
        Ok(())
    }
}

// -------------------------------------------------------------------- UdpSocket (feature `udp`)

/// A UDP socket. Dropping it frees it.
#[cfg(feature = "udp")]
#[derive(Debug)]
pub struct UdpSocket<S: Shared> {
    shared: S,
    handle: SocketHandle,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

#[cfg(feature = "udp")]
impl<S: Shared> UdpSocket<S> {
    /// A socket on `port` (0: an ephemeral port).
    pub fn bind(shared: &S, port: u16) -> Result<Self, Error> {
        let handle = once(shared, |st| st.udp_bind(port))?;
        Ok(UdpSocket {
            shared: shared.clone(),
            handle,
            read_timeout: None,
            write_timeout: None,
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        let h = self.handle;
        let (ip, port) = self
            .shared
            .with_stack(|st| (st.ipv4_addr(), st.udp_local(h).port));
        SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port)
    }

    /// How long a blocking `recv_from` waits.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// How long a blocking `send_to` waits for room.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Queues a datagram, `WouldBlock` if the buffer is full.
    pub fn try_send_to(&self, buf: &[u8], to: SocketAddrV4) -> Result<usize, Error> {
        let h = self.handle;
        once(&self.shared, |st| st.udp_send_to(h, buf, endpoint(to))).map(|()| buf.len())
    }

    /// The next datagram, `WouldBlock` if none.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4), Error> {
        let h = self.handle;
        once(&self.shared, |st| st.udp_recv_from(h, buf)).map(|(n, e)| (n, addr(e)))
    }

    /// Sends a datagram (async).
    pub async fn send_to_async(&self, buf: &[u8], to: SocketAddrV4) -> Result<usize, Error> {
        let h = self.handle;
        let mut op = |st: &mut Stack<S::Device>| st.udp_send_to(h, buf, endpoint(to));
        poll_fn(|cx| poll_op(&self.shared, cx, Interest::UdpWrite(h), &mut op)).await?;
        Ok(buf.len())
    }

    /// Receives a datagram (async).
    pub async fn recv_from_async(&self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4), Error> {
        let h = self.handle;
        let mut op = |st: &mut Stack<S::Device>| st.udp_recv_from(h, buf);
        let (n, e) = poll_fn(|cx| poll_op(&self.shared, cx, Interest::UdpRead(h), &mut op)).await?;
        Ok((n, addr(e)))
    }
}

#[cfg(feature = "udp")]
impl<S: Wait> UdpSocket<S> {
    /// Sends a datagram, waiting up to the write timeout for room.
    pub fn send_to(&self, buf: &[u8], to: SocketAddrV4) -> Result<usize, Error> {
        let h = self.handle;
        block(
            &self.shared,
            self.write_timeout,
            Interest::UdpWrite(h),
            |st| st.udp_send_to(h, buf, endpoint(to)),
        )?;
        Ok(buf.len())
    }

    /// Receives a datagram (cut to `buf`'s length), waiting up to the read timeout.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4), Error> {
        let h = self.handle;
        block(
            &self.shared,
            self.read_timeout,
            Interest::UdpRead(h),
            |st| st.udp_recv_from(h, buf),
        )
        .map(|(n, e)| (n, addr(e)))
    }
}

#[cfg(feature = "udp")]
impl<S: Shared> Drop for UdpSocket<S> {
    fn drop(&mut self) {
        let h = self.handle;
        self.shared.with_stack(|st| st.udp_release(h));
    }
}
