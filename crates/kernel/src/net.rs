//! Glue: the network stack (crate `net`) on this kernel's NIC (`net_device`), its interrupt and
//! its scheduler. Crate `net` has no lock, no clock and no thread; this module gives it all
//! three (the crate docs, "How the kernel drives it"):
//!
//! - One [`net::Stack`] behind a spin lock taken with interrupts masked ([`Net::with_stack`]):
//!   a socket call or a poll is short, and on one CPU nothing can contend with it.
//! - The NIC's interrupt handler (oneshot: the platform masked the line) only notes the
//!   interrupt and wakes the poller. The poller polls the stack (which acknowledges the device
//!   first), then unmasks the line.
//! - With a thread scheduler, the poller is a kernel thread, `net`: it polls, wakes the threads
//!   whose wait the poll satisfied, and sleeps until the next interrupt or the stack's
//!   `poll_at`. A blocked socket call registers what it waits for with the stack and parks on
//!   its ticket's wait queue (one of `net::WAIT_SLOTS`) until that slot's generation moves
//!   (read under the stack's lock, compared under the wait queue's: no lost wake-up) or its
//!   deadline. A poll wakes only the slots whose sockets changed, not every blocked thread.
//! - With `scheduler = "none"` there is no thread: a blocking socket call polls the stack itself
//!   and idles (`Platform::idle`, the timer armed for the stack's next deadline) between polls.
//! - With `scheduler = "async"` the poller is a task on the executor, `net`: the same loop, its
//!   sleep a future that the NIC's handler (or a socket call needing an earlier poll) wakes
//!   through a one-waker cell, raced with the executor's timer at the stack's `poll_at`. Socket
//!   calls are async only (crate `net` registers the tasks' wakers with the stack, and the poll
//!   that makes progress wakes them); the blocking ones are not offered, since a blocked call
//!   would stop the executor and with it the poller.
//! - Nothing busy-polls: an idle server sleeps in `hlt` until a frame arrives.
//!
//! The configuration is the profile's (`net_ip`, `net_gateway`, `net_sockets`,
//! `net_tcp_buffer`, `net_udp_buffer`) with the kernel command line's `ip=` and `gw=` over it.

use crate::config;
use crate::select::{SelectedNetDevice, SelectedPlatform};
pub use ::net::Error;
use ::net::{IpConfig, Limits, Stack};
use alloc::boxed::Box;
use core::net::SocketAddrV4;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
/// The async read and write traits the streams implement under `scheduler = "async"`.
#[cfg(feature = "scheduler-async")]
pub use embedded_io_async::{self, Read as AsyncRead, Write as AsyncWrite};
use platform::Platform;
use platform::irq::Irq;

/// The one stack (none until [`init`] found a NIC).
// Boxed: `None` of the box is all zeros, so the static is in `.bss`, not 4 KB of `.data` in
// the image.
static STACK: crate::select::SpinLock<Option<Box<Stack<SelectedNetDevice>>>> =
    crate::select::SpinLock::new(None);
/// The NIC's interrupt line (`u32::MAX`: none).
static NIC_IRQ: AtomicU32 = AtomicU32::new(u32::MAX);
/// Whether [`init`] brought the network up.
static UP: AtomicBool = AtomicBool::new(false);
/// The stack's wait slots' generations (mirrored under the stack's lock from
/// `Stack::take_woken`): a blocked call waits until its slot's moves past its ticket's.
static SLOT_GEN: [AtomicU64; ::net::WAIT_SLOTS] = [const { AtomicU64::new(0) }; ::net::WAIT_SLOTS];
/// The NIC interrupted since the last poll.
static IRQ_PENDING: AtomicBool = AtomicBool::new(false);
/// When the poller wakes next at the latest (ns; `u64::MAX`: only on an interrupt).
static POLL_DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
/// The earliest poll a socket call asked for since the poller's last poll began (`u64::MAX`:
/// none): a call that asks while the poller polls, before it publishes `POLL_DEADLINE`, is seen
/// here instead of being lost ([`poller_step`]).
static POLL_WANTED: AtomicU64 = AtomicU64::new(u64::MAX);
/// The NIC's interrupts so far (its handler's calls).
static IRQS: AtomicU64 = AtomicU64::new(0);
/// The poller's polls so far (the rest of the stack's polls are socket calls').
static POLLER_POLLS: AtomicU64 = AtomicU64::new(0);
/// Without a working interrupt line, the longest the stack goes unpolled (ns; `u64::MAX`: the
/// NIC interrupts).
static POLL_CAP_NS: AtomicU64 = AtomicU64::new(u64::MAX);
/// With an interrupt line, the longest the poller (or, without a scheduler, a blocked call)
/// sleeps anyway (ns): a safety net for an interrupt that never comes. Seen under QEMU (TCG, a
/// loaded host, about 1 boot in 15) until the platform parked its IOAPIC inputs before the
/// drivers start (`platform_kvm::irq::prepare`): the NIC raised its level line while the
/// line's entry was still QEMU's reset one (masked, edge-triggered), QEMU's IOAPIC dropped it,
/// and the line stayed high, so no later frame raised it again and the guest answered nothing.
/// The watchdog's poll reads the device's status as an interrupt's poll does (which lowers a
/// line left high), so interrupts resume. One poll a second while idle.
const WATCHDOG_NS: u64 = 1_000_000_000;
/// The poller's last wake-up was the watchdog's (no interrupt, no deadline).
static WATCHDOG_WAKE: AtomicBool = AtomicBool::new(false);
/// Watchdog polls that found frames no interrupt had announced.
static LOST_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// When to poll next: the stack's deadline, or sooner without an interrupt line.
fn next_poll(at: Option<u64>) -> Option<u64> {
    let cap = POLL_CAP_NS.load(Ordering::Relaxed);
    if cap == u64::MAX {
        return at;
    }
    let capped = now().saturating_add(cap);
    Some(at.map_or(capped, |a| a.min(capped)))
}

/// Listening sockets per listener (smoltcp has no backlog: crate `net`'s pool).
fn backlog() -> usize {
    (config::NET_SOCKETS / 4).clamp(1, 16)
}

fn now() -> u64 {
    SelectedPlatform::now_ns().unwrap_or(0)
}

/// The kernel's handle on the stack, for crate `net`'s sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Net;

impl ::net::Shared for Net {
    type Device = SelectedNetDevice;

    fn with_stack<R>(&self, f: impl FnOnce(&mut Stack<SelectedNetDevice>) -> R) -> R {
        let enabled = SelectedPlatform::interrupts_disable();
        let (result, woken, at) = {
            let mut guard = STACK.lock();
            let stack = guard
                .as_mut()
                .expect("sockets exist only once the stack does");
            let result = f(stack);
            // A call that changed nothing (it would-block) leaves the deadline as it was.
            let at = if stack.take_untouched() {
                None
            } else {
                stack.poll_at(now())
            };
            (result, publish(stack), at)
        };
        SelectedPlatform::interrupts_restore(enabled);
        changed(woken, at);
        result
    }

    fn now_ns(&self) -> u64 {
        now()
    }
}

/// Under the stack's lock: mirrors the generations of the wait slots the stack woke; returns
/// them (bit `n`: slot `n`). A blocked call reads its ticket under the same lock, so it sees
/// either the old generation (and is woken) or the new one (and its try saw the change).
fn publish(stack: &mut Stack<SelectedNetDevice>) -> u64 {
    let woken = stack.take_woken();
    let mut bits = woken;
    while bits != 0 {
        let slot = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        SLOT_GEN[slot].store(stack.slot_generation(slot), Ordering::Release);
    }
    woken
}

/// After the lock is released: wakes the blocked callers of the slots woken, and the poller
/// when the stack needs it earlier than it sleeps.
fn changed(woken: u64, poll_at: Option<u64>) {
    let mut bits = woken;
    while bits != 0 {
        waiters::wake_slot(bits.trailing_zeros() as usize);
        bits &= bits - 1;
    }
    if let Some(at) = poll_at {
        POLL_WANTED.fetch_min(at, Ordering::AcqRel);
        if at < POLL_DEADLINE.load(Ordering::Acquire) {
            waiters::wake_poller();
        }
    }
}

/// The poller's step: one poll, then when to poll next (`u64::MAX`: on the NIC's interrupt
/// only). The deadline is published before the socket calls' wishes are read, so a call either
/// lowered `POLL_WANTED` before that read (and is in the answer) or sees the deadline and wakes
/// the poller.
#[cfg(any(feature = "threads", feature = "scheduler-async"))]
fn poller_step() -> u64 {
    POLL_WANTED.store(u64::MAX, Ordering::Release);
    let at = next_poll(poll_once()).unwrap_or(u64::MAX);
    POLL_DEADLINE.store(at, Ordering::Release);
    at.min(POLL_WANTED.load(Ordering::Acquire))
}

/// Whether the poller, due again at `at`, may sleep: no interrupt, no earlier poll asked for.
#[cfg(feature = "threads")]
fn poller_may_sleep(at: u64) -> bool {
    !IRQ_PENDING.load(Ordering::Acquire) && POLL_WANTED.load(Ordering::Acquire) >= at
}

/// One poll: the device's news, frames in and out, timers; then the NIC's line is unmasked if
/// it had fired. Returns the stack's next deadline.
fn poll_once() -> Option<u64> {
    POLLER_POLLS.fetch_add(1, Ordering::Relaxed);
    let fired = IRQ_PENDING.swap(false, Ordering::AcqRel);
    let enabled = SelectedPlatform::interrupts_disable();
    let (woken, at) = {
        let mut guard = STACK.lock();
        let Some(stack) = guard.as_mut() else {
            SelectedPlatform::interrupts_restore(enabled);
            return None;
        };
        let now = now();
        let watchdog = WATCHDOG_WAKE.swap(false, Ordering::AcqRel);
        if fired || watchdog {
            // Only this poll reads the device's interrupt status (socket calls' polls skip it).
            // The watchdog's does too: a status left set keeps a level line high, and a line
            // that stays high raises no interrupt for the next frame.
            stack.interrupted();
        }
        let frames = ::netdev::NetDevice::stats(stack.device()).rx_frames;
        stack.poll(now);
        if watchdog
            && !fired
            && ::netdev::NetDevice::stats(stack.device()).rx_frames > frames
            && LOST_INTERRUPTS.fetch_add(1, Ordering::Relaxed) == 0
        {
            log::warn!(
                "net: the NIC received frames without an interrupt; taken by the watchdog poll \
                 (counted in net_lost_interrupts)"
            );
        }
        let line = NIC_IRQ.load(Ordering::Acquire);
        if fired && line != u32::MAX {
            // `poll` acknowledged the device (`poll_interrupt`) before it received.
            SelectedPlatform::irq_unmask(Irq(line));
        }
        let at = stack.poll_at(now);
        (publish(stack), at)
    };
    SelectedPlatform::interrupts_restore(enabled);
    changed(woken, at);
    at
}

/// The NIC's interrupt handler: the line is masked until the poller polled.
fn nic_interrupt(_data: usize) {
    IRQS.fetch_add(1, Ordering::Relaxed);
    IRQ_PENDING.store(true, Ordering::Release);
    waiters::wake_poller();
}

/// On a XenStore event (netfront's backend may have gone): the poller asks the device
/// (`poll_interrupt`), as after its interrupt, without counting one.
#[cfg(feature = "nic-netfront")]
pub(crate) fn store_event() {
    IRQ_PENDING.store(true, Ordering::Release);
    waiters::wake_poller();
}

/// Blocking calls (threads, or no scheduler); under the async executor there are none.
#[cfg(not(feature = "scheduler-async"))]
impl ::net::Wait for Net {
    fn wait(&self, ticket: ::net::Ticket, deadline_ns: Option<u64>) {
        waiters::wait(ticket, deadline_ns)
    }
}

#[cfg(feature = "threads")]
mod waiters {
    //! Threads block on wait queues; the `net` thread polls.
    use super::{POLL_DEADLINE, SLOT_GEN, poller_may_sleep, poller_step};
    use crate::threads::{Kernel, WaitQueue};
    use core::sync::atomic::Ordering;

    /// Threads blocked in socket calls, by their tickets' slots. Made by [`start`], before any
    /// socket exists (in `.bss` until then: a constant array would be 2.5 KB of `.data`).
    static WAITERS: spin::Once<[WaitQueue<Kernel>; ::net::WAIT_SLOTS]> = spin::Once::new();
    /// The `net` thread, between polls.
    static POLLER: WaitQueue<Kernel> = WaitQueue::new();

    pub fn wake_slot(slot: usize) {
        if let Some(queues) = WAITERS.get() {
            queues[slot % ::net::WAIT_SLOTS].notify_all();
        }
    }

    pub fn wake_poller() {
        POLLER.notify_one();
    }

    pub fn wait(ticket: ::net::Ticket, deadline_ns: Option<u64>) {
        let slot = ticket.slot % ::net::WAIT_SLOTS;
        // Made by `start`, before any socket could exist.
        let Some(queues) = WAITERS.get() else {
            return;
        };
        queues[slot].wait_if(
            || SLOT_GEN[slot].load(Ordering::Acquire) == ticket.generation,
            deadline_ns,
        );
    }

    /// Starts the `net` thread.
    pub fn start() -> Result<(), crate::threads::SpawnError> {
        WAITERS.call_once(|| core::array::from_fn(|_| WaitQueue::new()));
        crate::threads::spawn(
            Some(alloc::string::String::from("net")),
            16 * 1024,
            alloc::boxed::Box::new(|| {
                loop {
                    let at = poller_step();
                    let dog = super::now().saturating_add(super::WATCHDOG_NS);
                    POLLER.wait_if(|| poller_may_sleep(at), Some(at.min(dog)));
                    POLL_DEADLINE.store(0, Ordering::Release);
                    let now = super::now();
                    if now >= dog && now < at {
                        super::WATCHDOG_WAKE.store(true, Ordering::Release);
                    }
                }
            }),
        )
        .map(|_| ())
    }
}

#[cfg(feature = "scheduler-async")]
mod waiters {
    //! Tasks: the `net` task polls. Async sockets register their wakers with the stack, whose
    //! poll wakes them, so there is nobody else to wake here.
    //!
    //! The NIC's handler wakes the task from interrupt context, as the timer path never does
    //! (the executor fires its timers after `idle` returns). That is safe: waking pushes onto
    //! the executor's ready queue, a spin lock taken with interrupts masked, and may allocate,
    //! which the kernel's heap also does with interrupts masked; so no lock the handler takes
    //! can be held by the code it interrupted. The task's waker sits in [`POLLER`], a spin lock
    //! taken with interrupts masked (the handler runs masked already): on one CPU it is never
    //! contended; on several, a handler on one CPU spins for the few instructions the task on
    //! another holds it. The task registers before it checks, and the handler notes before it
    //! takes the waker, so the lock orders them: no wake-up is lost.
    use super::{IRQ_PENDING, POLL_DEADLINE, WATCHDOG_NS, WATCHDOG_WAKE, poller_step};
    use crate::select::{EXECUTOR, SelectedPlatform};
    use core::future::poll_fn;
    use core::sync::atomic::{AtomicBool, Ordering};
    use core::task::{Poll, Waker};
    use platform::Platform;

    /// The `net` task's waker, while it waits.
    static POLLER: crate::select::SpinLock<Option<Waker>> = crate::select::SpinLock::new(None);
    /// Someone asked for a poll sooner than the task sleeps.
    static POKED: AtomicBool = AtomicBool::new(false);

    pub fn wake_slot(_slot: usize) {}

    pub fn wake_poller() {
        POKED.store(true, Ordering::Release);
        let enabled = SelectedPlatform::interrupts_disable();
        let waker = POLLER.lock().take();
        SelectedPlatform::interrupts_restore(enabled);
        // Outside the lock: waking queues the task (and may drop the last reference).
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn register(waker: &Waker) {
        let enabled = SelectedPlatform::interrupts_disable();
        {
            let mut slot = POLLER.lock();
            if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *slot = Some(waker.clone());
            }
        }
        SelectedPlatform::interrupts_restore(enabled);
    }

    /// Until the NIC interrupts or a socket call wants a poll sooner.
    async fn news() {
        poll_fn(|cx| {
            register(cx.waker());
            if POKED.swap(false, Ordering::AcqRel) || IRQ_PENDING.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Spawns the `net` task (it runs once the app's `main` runs the executor).
    pub fn start() -> Result<(), &'static str> {
        // Detached: it never ends.
        drop(EXECUTOR.spawn(async {
            loop {
                POKED.store(false, Ordering::Release);
                let at = poller_step();
                let now = super::now();
                if at <= now {
                    // Due already (smoltcp has more to send, say): poll again, after the other
                    // ready tasks had their turn (a past deadline would not yield).
                    sched_async::yield_now().await;
                } else {
                    // Until the news, the deadline or the watchdog; either way, poll again.
                    let dog = now.saturating_add(WATCHDOG_NS);
                    if EXECUTOR.timeout_until(at.min(dog), news()).await.is_err() && dog < at {
                        WATCHDOG_WAKE.store(true, Ordering::Release);
                    }
                }
                POLL_DEADLINE.store(0, Ordering::Release);
            }
        }));
        Ok(())
    }
}

#[cfg(not(any(feature = "threads", feature = "scheduler-async")))]
mod waiters {
    //! No scheduler threads: the caller polls, and idles between polls.
    use super::{
        IRQ_PENDING, NIC_IRQ, SLOT_GEN, WATCHDOG_NS, WATCHDOG_WAKE, next_poll, now, poll_once,
    };
    use crate::select::SelectedPlatform;
    use core::sync::atomic::Ordering;
    use platform::Platform;

    pub fn wake_slot(_slot: usize) {}

    pub fn wake_poller() {}

    pub fn wait(ticket: ::net::Ticket, deadline_ns: Option<u64>) {
        let slot = ticket.slot % ::net::WAIT_SLOTS;
        loop {
            let at = next_poll(poll_once());
            if SLOT_GEN[slot].load(Ordering::Acquire) != ticket.generation {
                return;
            }
            let now = now();
            if deadline_ns.is_some_and(|d| now >= d) {
                return;
            }
            let wake = match (at, deadline_ns) {
                (Some(a), Some(d)) => Some(a.min(d)),
                (a, d) => a.or(d),
            };
            if wake.is_some_and(|w| w <= now) {
                continue;
            }
            // With an interrupt line, the watchdog's poll at the latest (`WATCHDOG_NS`).
            let dog = (NIC_IRQ.load(Ordering::Acquire) != u32::MAX)
                .then(|| now.saturating_add(WATCHDOG_NS))
                .filter(|&d| wake.is_none_or(|w| d < w));
            let wake = dog.or(wake);
            let enabled = SelectedPlatform::interrupts_disable();
            if !IRQ_PENDING.load(Ordering::Acquire) {
                let armed = wake.is_none_or(SelectedPlatform::set_timer);
                if armed {
                    // Until the NIC's interrupt or the timer.
                    SelectedPlatform::idle();
                }
            }
            SelectedPlatform::interrupts_restore(enabled);
            if dog.is_some_and(|d| super::now() >= d) && !IRQ_PENDING.load(Ordering::Acquire) {
                WATCHDOG_WAKE.store(true, Ordering::Release);
            }
        }
    }

    pub fn start() -> Result<(), &'static str> {
        Ok(())
    }
}

/// Brings the network up: the first NIC the profile's driver finds, the profile's address
/// (the command line's `ip=`/`gw=` over it), the NIC's interrupt, and the poller. Without a NIC
/// the image runs on, and sockets fail with [`Error::NoNetwork`]. A bad address is a
/// configuration error (the kernel stops with status 103).
// Not inlined into the boot function: its frame (smoltcp's and the drivers' structures built
// before they move to their statics) is released before `main` runs on the same stack.
#[inline(never)]
pub fn init(cmdline: &str) -> Result<(), ::net::ConfigError> {
    let ip = IpConfig::from_settings(config::NET_IP, config::NET_GATEWAY)?.with_values(
        cmdline::kernel_option(cmdline, "ip"),
        cmdline::kernel_option(cmdline, "gw"),
    )?;
    let Some((device, irq)) = probe() else {
        log::info!("net: no network device: the network is down");
        return Ok(());
    };
    let limits = Limits {
        sockets: config::NET_SOCKETS,
        tcp_buffer: config::NET_TCP_BUFFER,
        udp_buffer: config::NET_UDP_BUFFER,
        ..Limits::default()
    };
    let stack = Stack::new(device, ip, limits, arch_x86_64::tsc::now(), now());
    let enabled = SelectedPlatform::interrupts_disable();
    *STACK.lock() = Some(Box::new(stack));
    SelectedPlatform::interrupts_restore(enabled);
    let registered = irq.map(|irq| {
        NIC_IRQ.store(irq.0, Ordering::Release);
        crate::boot::irq_register(irq, SelectedPlatform::current_cpu(), nic_interrupt, 0)
    });
    if !matches!(registered, Some(Ok(()))) {
        match registered {
            Some(Err(e)) => log::warn!("net: {e}: polling every {POLL_WITHOUT_IRQ_MS} ms"),
            _ => log::info!("net: no interrupt line: polling every {POLL_WITHOUT_IRQ_MS} ms"),
        }
        NIC_IRQ.store(u32::MAX, Ordering::Release);
        POLL_CAP_NS.store(POLL_WITHOUT_IRQ_MS * 1_000_000, Ordering::Relaxed);
    } else {
        // Every interrupt reaches `poll_once`, which tells the stack.
        let enabled = SelectedPlatform::interrupts_disable();
        if let Some(stack) = STACK.lock().as_mut() {
            stack.set_interrupt_driven(true);
        }
        SelectedPlatform::interrupts_restore(enabled);
    }
    if let Err(e) = waiters::start() {
        log::error!("net: no poller ({e}): the network is down");
        return Ok(());
    }
    UP.store(true, Ordering::Release);
    match ip {
        IpConfig::Static { .. } => log::info!("net: {ip} up"),
        IpConfig::Dhcp => log::info!("net: up, asking DHCP for an address"),
    }
    Ok(())
}

/// The profile's NIC driver on the first NIC it finds, and the NIC's interrupt line.
#[cfg(feature = "net_device-virtio")]
fn probe() -> Option<(SelectedNetDevice, Option<Irq>)> {
    crate::virtio::probe_nics().map(|n| (n.device, n.irq))
}

/// The profile's NIC driver on the first NIC it finds, and the NIC's interrupt line.
#[cfg(feature = "net_device-netfront")]
fn probe() -> Option<(SelectedNetDevice, Option<Irq>)> {
    crate::xen_host::probe_nics().map(|n| (n.device, n.irq))
}

/// The universal image's NIC: netfront's on Xen, virtio-net's on a KVM-class monitor.
#[cfg(feature = "net_device-auto")]
fn probe() -> Option<(SelectedNetDevice, Option<Irq>)> {
    if crate::select::on_xen() {
        crate::xen_host::probe_nics().map(|n| (::netdev::Either::B(n.device), n.irq))
    } else {
        crate::virtio::probe_nics().map(|n| (::netdev::Either::A(n.device), n.irq))
    }
}

/// Without an interrupt, how often the poller polls.
const POLL_WITHOUT_IRQ_MS: u64 = 10;

/// Whether the network is up.
pub fn is_up() -> bool {
    UP.load(Ordering::Acquire)
}

fn up() -> Result<(), Error> {
    if is_up() {
        Ok(())
    } else {
        Err(Error::NoNetwork)
    }
}

/// A TCP socket listening on a port (`std::net::TcpListener`'s shape).
#[derive(Debug)]
pub struct TcpListener(::net::TcpListener<Net>);

impl TcpListener {
    /// Listens on `port` of the NIC's address, with a pool of listening sockets (the backlog:
    /// a quarter of `net_sockets`, at most 16).
    pub fn bind(port: u16) -> Result<Self, Error> {
        Self::bind_with_backlog(port, backlog())
    }

    /// Listens on `port` with `backlog` sockets in the listening pool.
    pub fn bind_with_backlog(port: u16, backlog: usize) -> Result<Self, Error> {
        up()?;
        ::net::TcpListener::bind(&Net, port, backlog).map(TcpListener)
    }

    /// Listens on `port` with `backlog` sockets in the listening pool, each connection with
    /// `buffer` bytes of receive and of transmit buffer instead of the setting
    /// `net_tcp_buffer`: for bulk streams, which move one window per round trip. A connection
    /// with buffers `k` times `net_tcp_buffer` counts as `k` sockets against `net_sockets`
    /// (so the memory the settings allow stays the same; a pool socket that would not fit so
    /// gets the default buffers); keep `backlog` small.
    pub fn bind_with_buffer(port: u16, backlog: usize, buffer: usize) -> Result<Self, Error> {
        up()?;
        ::net::TcpListener::bind_with_buffer(&Net, port, backlog, buffer).map(TcpListener)
    }

    /// Waits for the next connection (blocks the thread; with `scheduler = "none"`, polls and
    /// idles).
    #[cfg(not(feature = "scheduler-async"))]
    pub fn accept(&self) -> Result<(TcpStream, SocketAddrV4), Error> {
        self.0.accept().map(|(s, a)| (TcpStream(s), a))
    }

    /// Waits for the next connection (async: the task sleeps until a poll brings one).
    #[cfg(feature = "scheduler-async")]
    pub async fn accept_async(&self) -> Result<(TcpStream, SocketAddrV4), Error> {
        self.0.accept_async().await.map(|(s, a)| (TcpStream(s), a))
    }

    /// The next connection if one is waiting, else [`Error::WouldBlock`].
    pub fn try_accept(&self) -> Result<(TcpStream, SocketAddrV4), Error> {
        self.0.try_accept().map(|(s, a)| (TcpStream(s), a))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.0.local_addr()
    }
}

/// A TCP connection (`std::net::TcpStream`'s shape): blocking `read`/`write` with optional
/// timeouts, `embedded_io::{Read, Write}`; under `scheduler = "async"`,
/// `embedded_io_async::{Read, Write}` instead (the blocking calls are not offered there). Every
/// method of crate `net`'s stream that the scheduler allows is reachable through `Deref`.
#[derive(Debug)]
pub struct TcpStream(::net::TcpStream<Net>);

impl TcpStream {
    /// Connects to `to`, waiting at most `timeout` (`None`: smoltcp's handshake timeout).
    #[cfg(not(feature = "scheduler-async"))]
    pub fn connect(to: SocketAddrV4, timeout: Option<core::time::Duration>) -> Result<Self, Error> {
        up()?;
        ::net::TcpStream::connect(&Net, to, timeout).map(TcpStream)
    }

    /// Connects to `to` (async; smoltcp's handshake timeout, or the executor's `timeout`
    /// around it).
    #[cfg(feature = "scheduler-async")]
    pub async fn connect_async(to: SocketAddrV4) -> Result<Self, Error> {
        up()?;
        ::net::TcpStream::connect_async(&Net, to)
            .await
            .map(TcpStream)
    }
}

impl Deref for TcpStream {
    type Target = ::net::TcpStream<Net>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for TcpStream {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl embedded_io::ErrorType for TcpStream {
    type Error = Error;
}

#[cfg(not(feature = "scheduler-async"))]
impl embedded_io::Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.0.read(buf)
    }
}

#[cfg(not(feature = "scheduler-async"))]
impl embedded_io::Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.0.flush()
    }
}

#[cfg(feature = "scheduler-async")]
impl embedded_io_async::Read for TcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        embedded_io_async::Read::read(&mut self.0, buf).await
    }
}

#[cfg(feature = "scheduler-async")]
impl embedded_io_async::Write for TcpStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        embedded_io_async::Write::write(&mut self.0, buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        embedded_io_async::Write::flush(&mut self.0).await
    }
}

#[cfg(feature = "net_udp")]
/// A UDP socket (`std::net::UdpSocket`'s shape): blocking `send_to`/`recv_from` (through
/// `Deref`), or under `scheduler = "async"` [`UdpSocket::send_to_async`] and
/// [`UdpSocket::recv_from_async`] only.
#[derive(Debug)]
pub struct UdpSocket(::net::UdpSocket<Net>);

#[cfg(feature = "net_udp")]
impl UdpSocket {
    /// Binds `port` of the NIC's address.
    pub fn bind(port: u16) -> Result<Self, Error> {
        up()?;
        ::net::UdpSocket::bind(&Net, port).map(UdpSocket)
    }

    /// Sends a datagram to `to` (async: waits for room in the send buffer).
    #[cfg(feature = "scheduler-async")]
    pub async fn send_to_async(&self, buf: &[u8], to: SocketAddrV4) -> Result<usize, Error> {
        self.0.send_to_async(buf, to).await
    }

    /// Receives a datagram (cut to `buf`'s length) and its sender (async).
    #[cfg(feature = "scheduler-async")]
    pub async fn recv_from_async(&self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4), Error> {
        self.0.recv_from_async(buf).await
    }
}

#[cfg(feature = "net_udp")]
impl Deref for UdpSocket {
    type Target = ::net::UdpSocket<Net>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[cfg(feature = "net_udp")]
impl DerefMut for UdpSocket {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The stack's counters (for leak checks and logs), or `None` when the network is down.
pub fn stats() -> Option<(::net::StackStats, netdev::DeviceStats)> {
    if !is_up() {
        return None;
    }
    Some(::net::Shared::with_stack(&Net, |s| {
        (s.stats(), netdev::NetDevice::stats(s.device()))
    }))
}

/// The glue's counters: the NIC's interrupts and the poller's polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlueStats {
    /// Interrupts from the NIC.
    pub irqs: u64,
    /// Polls by the poller (thread or task); the stack's `polls` less these are socket calls'.
    pub poller_polls: u64,
    /// Watchdog polls that found frames no interrupt had announced (see `WATCHDOG_NS`).
    pub lost_interrupts: u64,
}

/// The glue's counters.
pub fn glue_stats() -> GlueStats {
    GlueStats {
        irqs: IRQS.load(Ordering::Relaxed),
        poller_polls: POLLER_POLLS.load(Ordering::Relaxed),
        lost_interrupts: LOST_INTERRUPTS.load(Ordering::Relaxed),
    }
}

/// Every network counter as `name value` lines (for an app's `/stats`, or a log line), or
/// `None` when the network is down.
pub fn stats_text() -> Option<alloc::string::String> {
    use core::fmt::Write;
    let (s, d) = stats()?;
    let states = ::net::Shared::with_stack(&Net, |st| st.tcp_state_counts());
    let g = glue_stats();
    let mut t = alloc::string::String::new();
    let _ = write!(
        t,
        "net_polls {}\nnet_polls_changed {}\nnet_polls_tx_full {}\nnet_poller_polls {}\nnet_irqs {}\n\
         net_lost_interrupts {}\nnet_rx_frames {}\nnet_tx_frames {}\nnet_rx_dropped {}\nnet_tx_dropped {}\n\
         net_accepted {}\nnet_pool_starved {}\nnet_time_wait_reaped {}\nnet_closing_reaped {}\n\
         net_lingered_out {}\n\
         net_live_sockets {}\nnet_closing {}\n",
        s.polls,
        s.polls_changed,
        s.polls_tx_full,
        g.poller_polls,
        g.irqs,
        g.lost_interrupts,
        d.rx_frames,
        d.tx_frames,
        d.rx_dropped,
        d.tx_dropped,
        s.accepted,
        s.pool_starved,
        s.time_wait_reaped,
        s.closing_reaped,
        s.lingered_out,
        s.live_sockets,
        s.closing,
    );
    for (state, n) in ::net::TCP_STATES.iter().zip(states) {
        if n > 0 {
            let _ = writeln!(t, "net_tcp_{state} {n}");
        }
    }
    Some(t)
}
