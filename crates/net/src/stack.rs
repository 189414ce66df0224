//! The stack: smoltcp's interface over one device, the sockets, the listener pools, the closing
//! sockets, DHCP, and the calls waiting on its sockets (each woken only when what it waits for
//! changed: [`Stack::wait_for`], [`Stack::register_waker`]).
//!
//! Every operation here is non-blocking: it does what it can now, or returns
//! [`Error::WouldBlock`]. The socket types in [`crate::socket`] build the blocking and async
//! calls on top.
use crate::config::{IpConfig, Limits};
use crate::device::Phy;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::task::Waker;
use netdev::NetDevice;
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
#[cfg(feature = "dhcp")]
use smoltcp::socket::dhcpv4;
use smoltcp::socket::tcp;
#[cfg(feature = "udp")]
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr,
};

/// What a socket operation can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Nothing can be done now: wait for the stack's next event and try again.
    WouldBlock,
    /// The operation's timeout expired.
    TimedOut,
    /// The peer refused the connection (an RST to our SYN), or gave no answer.
    ConnectionRefused,
    /// The connection was reset (an RST, or retransmissions gave up).
    ConnectionReset,
    /// The socket is not connected (yet, or any more).
    NotConnected,
    /// Writing after `shutdown(Write)` or `close`.
    BrokenPipe,
    /// Another socket listens on (or is bound to) that port.
    AddrInUse,
    /// No route or source address for the destination, or a port of 0.
    Unaddressable,
    /// Every socket the limits allow is in use (`net_sockets`); sockets free up as connections
    /// close.
    NoSockets,
    /// A datagram larger than the socket's buffer, or a listener's buffers larger than all
    /// the sockets' together ([`Stack::tcp_listen_with`]).
    TooLarge,
    /// The image has no network: no NIC was found at boot (or its profile has none), so no
    /// socket can be made.
    NoNetwork,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::WouldBlock => "the operation would block",
            Error::TimedOut => "timed out",
            Error::ConnectionRefused => "connection refused",
            Error::ConnectionReset => "connection reset",
            Error::NotConnected => "not connected",
            Error::BrokenPipe => "the connection's sending half is closed",
            Error::AddrInUse => "address in use",
            Error::Unaddressable => "no route or address for the destination",
            Error::NoSockets => "out of sockets (net_sockets)",
            Error::TooLarge => "larger than the socket's buffer (or all of them)",
            Error::NoNetwork => "no network device",
        })
    }
}

impl core::error::Error for Error {}

impl embedded_io::Error for Error {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind as K;
        match self {
            Error::WouldBlock => K::Interrupted,
            Error::TimedOut => K::TimedOut,
            Error::ConnectionRefused => K::ConnectionRefused,
            Error::ConnectionReset => K::ConnectionReset,
            Error::NotConnected => K::NotConnected,
            Error::BrokenPipe => K::BrokenPipe,
            Error::AddrInUse => K::AddrInUse,
            Error::Unaddressable => K::AddrNotAvailable,
            Error::NoSockets => K::OutOfMemory,
            Error::TooLarge => K::InvalidInput,
            Error::NoNetwork => K::NotConnected,
        }
    }
}

/// Which halves `shutdown` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// No more reading (further reads return end of file).
    Read,
    /// No more writing: sends FIN once the data queued is sent.
    Write,
    /// Both.
    Both,
}

/// A listener's identity in its stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerId(usize);

/// What a blocked (or pending async) socket call waits for: the stack wakes it only when that
/// changes ([`Stack::wait_for`]), not on every poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// A stream's received data, end of stream or error: its state or receive queue changes.
    Read(SocketHandle),
    /// Room in a stream's send buffer, or an error: its state or send queue changes.
    Write(SocketHandle),
    /// A handshake's end or the peer's acknowledgement: its state or send queue changes.
    Change(SocketHandle),
    /// A connection on the listener: its accept queue changes (or the listener goes).
    Accept(ListenerId),
    /// A datagram on a UDP socket: its receive queue changes.
    #[cfg(feature = "udp")]
    UdpRead(SocketHandle),
    /// Room in a UDP socket's send buffer: its send queue changes.
    #[cfg(feature = "udp")]
    UdpWrite(SocketHandle),
}

impl Interest {
    fn handle(self) -> Option<SocketHandle> {
        match self {
            Interest::Read(h) | Interest::Write(h) | Interest::Change(h) => Some(h),
            #[cfg(feature = "udp")]
            Interest::UdpRead(h) | Interest::UdpWrite(h) => Some(h),
            Interest::Accept(_) => None,
        }
    }

    /// Whether the data a call queued for sending should leave at once (an egress poll).
    pub fn sends(self) -> bool {
        match self {
            Interest::Write(_) | Interest::Change(_) => true,
            #[cfg(feature = "udp")]
            Interest::UdpWrite(_) => true,
            _ => false,
        }
    }
}

/// How many wait slots the stack hands blocked threads (a socket's slot is a hash of it: two
/// sockets may share one, which costs a spurious wake-up, never a lost one).
pub const WAIT_SLOTS: usize = 64;

/// What a blocked thread waits on: its slot's generation moving past `generation`
/// ([`Stack::slot_generation`], mirrored by the glue from [`Stack::take_woken`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The slot, below [`WAIT_SLOTS`].
    pub slot: usize,
    /// The slot's generation when the call would-block.
    pub generation: u64,
}

/// A registered waiter: what it waits for, how that looked, and whom to wake.
#[derive(Debug)]
struct Waiting {
    interest: Interest,
    signature: u64,
    /// A blocked thread's slot, or an async task's waker.
    who: Who,
}

#[derive(Debug)]
enum Who {
    Slot(usize),
    Task(Waker),
}

fn slot_of(i: Interest) -> usize {
    match i.handle() {
        Some(h) => {
            use core::hash::{Hash, Hasher};
            struct Fnv(u64);
            impl Hasher for Fnv {
                fn finish(&self) -> u64 {
                    self.0
                }
                fn write(&mut self, bytes: &[u8]) {
                    for b in bytes {
                        self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
                    }
                }
            }
            let mut f = Fnv(0xcbf2_9ce4_8422_2325);
            h.hash(&mut f);
            // Below WAIT_SLOTS: fits.
            (f.finish() % WAIT_SLOTS as u64) as usize
        }
        None => match i {
            Interest::Accept(ListenerId(id)) => WAIT_SLOTS - 1 - id % WAIT_SLOTS,
            _ => 0,
        },
    }
}

/// A listening port: a pool of listening sockets and the connections not yet accepted.
#[derive(Debug)]
struct Listener {
    port: u16,
    backlog: usize,
    /// Each of its sockets' receive and transmit buffer (bytes).
    buffer: usize,
    /// Sockets in LISTEN or SYN-RECEIVED.
    pool: Vec<SocketHandle>,
    /// Established connections waiting for `accept`.
    ready: VecDeque<SocketHandle>,
}

/// A socket the application closed that is still finishing its close, and when it is aborted.
#[derive(Debug, Clone, Copy)]
struct Orphan {
    handle: SocketHandle,
    deadline_ns: u64,
}

/// Where the interface's IPv4 configuration stands (for the glue to log and the tests to check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpStatus {
    /// A static configuration: no DHCP client runs.
    Static,
    /// No lease (yet, or any more): the client keeps asking (a DISCOVER every 10 s, smoltcp's
    /// default) and the interface has no address. `since_ns` is when it started waiting.
    Waiting {
        /// When the stack started waiting (its creation, or the loss of the last lease).
        since_ns: u64,
    },
    /// A lease is applied: the interface has `address`, and `router` as its default route.
    Bound {
        /// The leased address and the subnet's prefix.
        address: Ipv4Cidr,
        /// The default gateway from the lease, if it gave a usable one.
        router: Option<Ipv4Address>,
        /// When the lease (or its last change) was applied.
        since_ns: u64,
    },
}

impl fmt::Display for DhcpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DhcpStatus::Static => f.write_str("static"),
            DhcpStatus::Waiting { .. } => f.write_str("waiting for a DHCP lease"),
            DhcpStatus::Bound {
                address,
                router: Some(r),
                ..
            } => write!(f, "DHCP lease {address} gw {r}"),
            DhcpStatus::Bound { address, .. } => write!(f, "DHCP lease {address}"),
        }
    }
}

/// How often a stack still waiting for a DHCP lease says so in the log.
#[cfg(feature = "dhcp")]
const DHCP_WAIT_LOG_NS: u64 = 60_000_000_000;

/// Counters, for tests and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StackStats {
    /// Sockets counted against [`Limits::sockets`] now (a socket with larger buffers counts as
    /// several: [`Stack::tcp_listen_with`]).
    pub live_sockets: usize,
    /// Sockets the application closed that are still closing.
    pub closing: usize,
    /// Slots in smoltcp's socket set (it grows to the most sockets ever live at once, plus the
    /// DHCP client's).
    pub set_slots: usize,
    /// Connections the listeners handed to `accept` so far.
    pub accepted: u64,
    /// Sockets removed in TIME-WAIT (without waiting 10 s).
    pub time_wait_reaped: u64,
    /// Sockets removed in CLOSING with all their data acknowledged (only the acknowledgement
    /// of their FIN missing: see the crate docs).
    pub closing_reaped: u64,
    /// Closing sockets aborted at their linger deadline.
    pub lingered_out: u64,
    /// Times a listener could not refill its pool for lack of sockets.
    pub pool_starved: u64,
    /// TCP SYNs dropped unanswered because their listener had no listening socket left for them
    /// (a burst beyond its pool, a full accept queue, or no socket left under `net_sockets`):
    /// the client retransmits them (see [`crate::device::SynGate`]).
    pub syn_dropped: u64,
    /// DHCP leases applied (a renewal that changes nothing does not count).
    pub dhcp_leases: u64,
    /// DHCP leases refused because their address could not be this host's (the client then
    /// starts over with a DISCOVER).
    pub dhcp_refused: u64,
    /// DHCP routers left out of an applied lease because they are not on its subnet (or not
    /// a host address).
    pub dhcp_router_refused: u64,
    /// DHCP leases lost (expired, or a NAK).
    pub dhcp_lost: u64,
    /// Polls ([`Stack::poll`]: the glue's poller and every socket call).
    pub polls: u64,
    /// Polls that changed some socket's state (bumped the generation).
    pub polls_changed: u64,
    /// Times the stack was due at once but the device had no transmit buffer free (the next
    /// poll then waits for the device).
    pub polls_tx_full: u64,
}

/// smoltcp's TCP states, in the order [`Stack::tcp_state_counts`] counts them.
pub const TCP_STATES: [tcp::State; 11] = [
    tcp::State::Closed,
    tcp::State::Listen,
    tcp::State::SynSent,
    tcp::State::SynReceived,
    tcp::State::Established,
    tcp::State::FinWait1,
    tcp::State::FinWait2,
    tcp::State::CloseWait,
    tcp::State::Closing,
    tcp::State::LastAck,
    tcp::State::TimeWait,
];

/// How long a handshake may take: a SYN-SENT or SYN-RECEIVED socket closes after this without
/// an answer. smoltcp's timeout also aborts an established connection that heard nothing from
/// its peer for as long (idle or not), so it is cleared once the connection is established.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Above this much queued (sent or not), a writer's socket may have more to send than one pass
/// of egress sends: a segment of Ethernet's MSS.
const BULK: usize = 1460;

/// The first ephemeral port (IANA's range, 49152 to 65535).
const EPHEMERAL: u16 = 49152;

fn instant(ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
}

fn ns(i: Instant) -> u64 {
    u64::try_from(i.total_micros())
        .unwrap_or(0)
        .saturating_mul(1000)
}

/// One network interface: smoltcp over the device `D`, with its sockets.
pub struct Stack<D: NetDevice> {
    iface: Interface,
    phy: Phy<D>,
    sockets: SocketSet<'static>,
    limits: Limits,
    ip: IpConfig,
    gateway: Option<Ipv4Address>,
    #[cfg(feature = "dhcp")]
    dhcp: Option<SocketHandle>,
    dhcp_status: DhcpStatus,
    /// When a stack waiting for a lease last said so.
    #[cfg(feature = "dhcp")]
    dhcp_logged_ns: u64,
    listeners: Vec<Option<Listener>>,
    orphans: Vec<Orphan>,
    live: usize,
    generation: u64,
    /// Blocked calls and pending async tasks, with what they wait for.
    waiting: Vec<Waiting>,
    /// Each wait slot's generation (see [`Ticket`]).
    slot_gen: [u64; WAIT_SLOTS],
    /// Slots woken since the glue last took them (bit `n`: slot `n`).
    woken: u64,
    /// The last socket call changed nothing ([`Stack::take_untouched`]).
    untouched: bool,
    next_port: u16,
    now_ns: u64,
    stats: StackStats,
    /// The glue tells of the device's interrupts ([`Stack::set_interrupt_driven`]).
    interrupt_driven: bool,
    /// An interrupt came since the last poll (when interrupt driven).
    interrupted: bool,
}

impl<D: NetDevice> fmt::Debug for Stack<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("ip", &self.ip)
            .field("limits", &self.limits)
            .field("generation", &self.generation)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<D: NetDevice> Stack<D> {
    /// A stack on `device` with `ip` and `limits`, at time `now_ns`. `seed` should differ on
    /// every boot (TCP initial sequence numbers and the first ephemeral port come from it).
    // Not inlined into the caller (the kernel's network bring-up, which moves the result into
    // a box): built in a frame of its own, httpd [net] is 320 bytes smaller, kvstore [storage] 384.
    #[inline(never)]
    pub fn new(device: D, ip: IpConfig, limits: Limits, seed: u64, now_ns: u64) -> Self {
        let mut phy = Phy::new(device);
        let mac = phy.device().capabilities().mac;
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac.0)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut phy, instant(now_ns));
        // Only the DHCP client is added here.
        #[cfg_attr(not(feature = "dhcp"), expect(unused_mut))]
        let mut sockets = SocketSet::new(vec![]);
        #[cfg_attr(not(feature = "dhcp"), expect(unused_mut))]
        let mut dhcp: Option<SocketHandle> = None;
        let mut gw = None;
        match ip {
            IpConfig::Static {
                address,
                prefix,
                gateway,
            } => {
                iface.update_ip_addrs(|addrs| {
                    // One address: the vector has room for it.
                    let _ = addrs.push(IpCidr::Ipv4(Ipv4Cidr::new(address, prefix)));
                });
                gw = gateway;
                if let Some(g) = gateway {
                    // The route table holds at least one route (smoltcp's default is 2).
                    let _ = iface.routes_mut().add_default_ipv4_route(g);
                }
                log::info!("net: {mac} {ip}");
            }
            #[cfg(feature = "dhcp")]
            IpConfig::Dhcp => {
                dhcp = Some(sockets.add(dhcpv4::Socket::new()));
                log::info!("net: {mac} asking for a DHCP lease");
            }
            // `IpConfig`'s parsers refuse `dhcp` without the client: only a caller that built
            // the value itself gets here, and the interface then has no address.
            #[cfg(not(feature = "dhcp"))]
            IpConfig::Dhcp => log::error!("net: {mac} no address: DHCP is compiled out"),
        }
        let span = u64::from(u16::MAX - EPHEMERAL) + 1;
        Stack {
            iface,
            phy,
            sockets,
            limits,
            ip,
            gateway: gw,
            dhcp_status: match dhcp {
                Some(_) => DhcpStatus::Waiting { since_ns: now_ns },
                None => DhcpStatus::Static,
            },
            #[cfg(feature = "dhcp")]
            dhcp_logged_ns: now_ns,
            #[cfg(feature = "dhcp")]
            dhcp,
            listeners: Vec::new(),
            orphans: Vec::new(),
            live: 0,
            generation: 0,
            waiting: Vec::new(),
            slot_gen: [0; WAIT_SLOTS],
            woken: 0,
            untouched: false,
            // Below 2^14: fits.
            next_port: EPHEMERAL + (seed % span) as u16,
            now_ns,
            stats: StackStats::default(),
            interrupt_driven: false,
            interrupted: false,
        }
    }

    /// The configuration it was made with.
    pub fn ip_config(&self) -> IpConfig {
        self.ip
    }

    /// The interface's IPv4 address now (none before a DHCP lease).
    pub fn ipv4_addr(&self) -> Option<Ipv4Address> {
        self.iface.ipv4_addr()
    }

    /// The interface's IPv4 address and subnet prefix now (none before a DHCP lease).
    pub fn ipv4_cidr(&self) -> Option<Ipv4Cidr> {
        self.iface.ip_addrs().iter().find_map(|a| match a {
            IpCidr::Ipv4(c) => Some(*c),
            #[allow(unreachable_patterns)] // IPv6, if another crate turns smoltcp's on.
            _ => None,
        })
    }

    /// Where the IPv4 configuration stands: static, waiting for a DHCP lease, or bound.
    pub fn dhcp_status(&self) -> DhcpStatus {
        self.dhcp_status
    }

    /// The default gateway now.
    pub fn gateway(&self) -> Option<Ipv4Address> {
        self.gateway
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The device.
    pub fn device(&self) -> &D {
        self.phy.device()
    }

    /// (frames the adapter sent merged for TSO, segments in them).
    pub fn tso_merged(&self) -> (u64, u64) {
        self.phy.tso_merged()
    }

    /// Received frames the adapter dropped for a bad TCP or UDP checksum.
    pub fn bad_checksums(&self) -> u64 {
        self.phy.bad_checksums()
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        self.phy.device_mut()
    }

    /// The generation: it increases whenever a poll may have made some socket ready (for
    /// reports; waiters wait on their own tickets, [`Stack::wait_for`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Registers a blocked thread waiting for `interest` (after the call would-block, under the
    /// same lock): the ticket to wait on. Its slot's generation moves once what it waits for
    /// changed (or the socket went away), at the end of the poll (or socket call) that changed
    /// it; the glue then wakes the slot ([`Stack::take_woken`]).
    pub fn wait_for(&mut self, interest: Interest) -> Ticket {
        let slot = slot_of(interest);
        self.register(interest, Who::Slot(slot));
        Ticket {
            slot,
            generation: self.slot_gen[slot],
        }
    }

    /// Registers an async task waiting for `interest`: its waker is woken once that changed.
    pub fn register_waker(&mut self, interest: Interest, waker: &Waker) {
        self.register(interest, Who::Task(waker.clone()));
    }

    fn register(&mut self, interest: Interest, who: Who) {
        let signature = self.signature(interest);
        // A thread's slot follows from the interest.
        let same = |w: &Waiting| {
            w.interest == interest
                && match (&w.who, &who) {
                    (Who::Slot(_), Who::Slot(_)) => true,
                    (Who::Task(a), Who::Task(b)) => a.will_wake(b),
                    _ => false,
                }
        };
        match self.waiting.iter_mut().find(|w| same(w)) {
            Some(w) => w.signature = signature,
            None => self.waiting.push(Waiting {
                interest,
                signature,
                who,
            }),
        }
    }

    /// Notes that the socket call running changed nothing (it would-block without polling).
    pub fn note_untouched(&mut self) {
        self.untouched = true;
    }

    /// Whether the last socket call changed nothing, so that the stack's next deadline
    /// ([`Stack::poll_at`]) is what it was and the glue need not compute it again; clears it.
    pub fn take_untouched(&mut self) -> bool {
        core::mem::take(&mut self.untouched)
    }

    /// A slot's generation (see [`Ticket`]).
    pub fn slot_generation(&self, slot: usize) -> u64 {
        self.slot_gen[slot % WAIT_SLOTS]
    }

    /// The slots woken since the last call (bit `n`: slot `n`); the glue mirrors their
    /// generations and wakes their threads.
    pub fn take_woken(&mut self) -> u64 {
        core::mem::take(&mut self.woken)
    }

    /// How many calls and tasks are registered as waiting (for tests).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// What `interest` looks like now: it changes whenever the outcome of the call waiting for
    /// it may have changed.
    fn signature(&mut self, interest: Interest) -> u64 {
        let sockets = &mut self.sockets;
        let mut tcp = |h: SocketHandle, queue: fn(&tcp::Socket<'static>) -> usize| {
            let s = sockets.get_mut::<tcp::Socket<'static>>(h);
            ((s.state() as u64) << 56) | (u64::from(s.may_recv()) << 55) | (queue(s) as u64)
        };
        match interest {
            Interest::Read(h) => tcp(h, |s| s.recv_queue()),
            Interest::Write(h) | Interest::Change(h) => tcp(h, |s| s.send_queue()),
            Interest::Accept(id) => self
                .listeners
                .get(id.0)
                .and_then(Option::as_ref)
                .map_or(u64::MAX, |l| l.ready.len() as u64),
            // With the packet count's emptiness: an empty datagram adds no bytes.
            #[cfg(feature = "udp")]
            Interest::UdpRead(h) => {
                let s = self.sockets.get_mut::<udp::Socket<'static>>(h);
                (u64::from(s.can_recv()) << 63) | s.recv_queue() as u64
            }
            #[cfg(feature = "udp")]
            Interest::UdpWrite(h) => {
                let s = self.sockets.get_mut::<udp::Socket<'static>>(h);
                (u64::from(s.can_send()) << 63) | s.send_queue() as u64
            }
        }
    }

    /// Wakes the waiters whose interest changed.
    fn wake_ready(&mut self) {
        self.wake(None);
    }

    /// Forgets the waiters of a socket that goes away (its handle may be reused), waking them.
    fn forget(&mut self, h: SocketHandle) {
        self.wake(Some(h));
    }

    /// Wakes (and forgets) the waiters on socket `gone`, or with `None` those whose interest
    /// changed.
    fn wake(&mut self, gone: Option<SocketHandle>) {
        let mut i = 0;
        while i < self.waiting.len() {
            let (interest, signature) = (self.waiting[i].interest, self.waiting[i].signature);
            let fire = match gone {
                Some(h) => interest.handle() == Some(h),
                None => self.signature(interest) != signature,
            };
            if !fire {
                i += 1;
                continue;
            }
            match self.waiting.swap_remove(i).who {
                Who::Slot(s) => {
                    self.slot_gen[s] += 1;
                    self.woken |= 1 << s;
                }
                Who::Task(waker) => waker.wake(),
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> StackStats {
        StackStats {
            live_sockets: self.live,
            closing: self.orphans.len(),
            set_slots: self.sockets.iter().count(),
            syn_dropped: self.phy.gate().dropped(),
            ..self.stats
        }
    }

    /// How many TCP sockets are in each state (listening pools, connections and closing
    /// sockets alike), in the order of [`TCP_STATES`].
    pub fn tcp_state_counts(&self) -> [usize; TCP_STATES.len()] {
        let mut counts = [0; TCP_STATES.len()];
        for (_, s) in self.sockets.iter() {
            if let smoltcp::socket::Socket::Tcp(t) = s
                && let Some(i) = TCP_STATES.iter().position(|&st| st == t.state())
            {
                counts[i] += 1;
            }
        }
        counts
    }

    /// Says whether the glue reports every device interrupt with [`Stack::interrupted`]. Then
    /// only the poll after an interrupt takes the device's news (`poll_interrupt`: on virtio an
    /// ISR read, a trap to the monitor each time); the polls of socket calls in between receive
    /// and transmit without it. Otherwise (the default) every poll does.
    pub fn set_interrupt_driven(&mut self, yes: bool) {
        self.interrupt_driven = yes;
    }

    /// The device interrupted: the next poll takes its news (see
    /// [`Stack::set_interrupt_driven`]).
    pub fn interrupted(&mut self) {
        self.interrupted = true;
    }

    /// Starts a new generation (something may have become ready).
    fn bump(&mut self) {
        self.generation += 1;
    }

    /// Does everything due at `now_ns`: takes the device's news (`poll_interrupt`), receives,
    /// transmits, runs the timers, applies a DHCP lease, refills the listeners' pools and
    /// frees the sockets that finished closing. Returns whether some socket may have become
    /// ready, in which case the generation was bumped and the async wakers woken (the glue
    /// then wakes its blocked threads).
    pub fn poll(&mut self, now_ns: u64) -> bool {
        self.now_ns = self.now_ns.max(now_ns);
        let now = instant(self.now_ns);
        if !self.interrupt_driven || core::mem::take(&mut self.interrupted) {
            self.phy.device_mut().poll_interrupt();
        }
        let mut changed = self.poll_iface(now);
        changed |= self.poll_dhcp();
        changed |= self.maintain();
        self.stats.polls += 1;
        if changed {
            self.stats.polls_changed += 1;
            self.bump();
        }
        if !self.waiting.is_empty() {
            self.wake_ready();
        }
        changed
    }

    /// What a socket call that queued data for `interest`'s socket sends at once: one pass of
    /// egress ([`Stack::poll_egress`]) when that socket holds at most a segment (a reply: one
    /// walk of the sockets), else a full poll (a bulk writer: the acknowledgements waiting on
    /// the device open the window, and egress goes on as far as it allows).
    pub fn send_now(&mut self, now_ns: u64, interest: Interest) {
        match interest {
            Interest::Write(h) if self.tcp(h).send_queue() > BULK => {
                self.poll(now_ns);
            }
            _ => {
                self.poll_egress(now_ns);
            }
        }
    }

    /// One pass of smoltcp's egress: whether some socket sent. One call site for both polls, so
    /// that smoltcp's egress is inlined once.
    #[inline(never)]
    fn egress(&mut self, now: Instant) -> bool {
        self.iface
            .poll_egress(now, &mut self.phy, &mut self.sockets)
            == PollResult::SocketStateChanged
    }

    /// One pass of egress (at most a segment per socket), without receiving or maintaining
    /// anything: what a socket call that queued data (or a close) does, so that a reply leaves
    /// at once while the poller does the rest (a socket with more to send is due now:
    /// [`Stack::poll_at`] says so, and the glue wakes its poller). Returns whether some socket
    /// sent.
    pub fn poll_egress(&mut self, now_ns: u64) -> bool {
        self.now_ns = self.now_ns.max(now_ns);
        let now = instant(self.now_ns);
        let changed = self.egress(now);
        self.phy.flush();
        if changed {
            self.bump();
        }
        if !self.waiting.is_empty() {
            self.wake_ready();
        }
        changed
    }

    /// When to poll next at the latest if nothing arrives (ns on the caller's clock), or
    /// `None` when only a received frame or a socket call can make work. A deadline at or
    /// before `now_ns` means "now".
    pub fn poll_at(&mut self, now_ns: u64) -> Option<u64> {
        let now = now_ns.max(self.now_ns);
        let smol = self.iface.poll_at(instant(now), &self.sockets).map(ns);
        // Due now but the device has no transmit buffer free: polling again at once would spin
        // (smoltcp has frames to send and nowhere to put them) until the device completes
        // some; its interrupt for those completions brings the next poll instead.
        let smol = match smol {
            Some(at) if at <= now && !self.phy.can_transmit() => {
                self.stats.polls_tx_full += 1;
                None
            }
            at => at,
        };
        let linger = self.orphans.iter().map(|o| o.deadline_ns).min();
        match (smol, linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Without the DHCP client (feature `dhcp` off) there is no news.
    #[cfg(not(feature = "dhcp"))]
    fn poll_dhcp(&mut self) -> bool {
        false
    }

    /// Takes the DHCP client's news and applies it. A lease whose address cannot be this
    /// host's (smoltcp only refuses the unspecified, broadcast and multicast addresses) is
    /// refused: the client starts over. A router that is not on the lease's subnet is left out
    /// (the lease applies without a default route).
    #[cfg(feature = "dhcp")]
    fn poll_dhcp(&mut self) -> bool {
        let Some(h) = self.dhcp else {
            return false;
        };
        let now = self.now_ns;
        let mut changed = false;
        // At most a refusal and the deconfiguration it causes.
        for _ in 0..3 {
            let socket = self.sockets.get_mut::<dhcpv4::Socket<'_>>(h);
            let lease = match socket.poll() {
                None => break,
                Some(dhcpv4::Event::Configured(lease)) => Some((lease.address, lease.router)),
                Some(dhcpv4::Event::Deconfigured) => None,
            };
            match lease {
                Some((address, router)) => {
                    if let Err(why) =
                        crate::config::check_address(address.address(), address.prefix_len())
                    {
                        log::warn!("net: DHCP lease {address} refused: {why}");
                        self.stats.dhcp_refused += 1;
                        // Back to DISCOVER; the socket reports `Deconfigured` next.
                        socket.reset();
                        continue;
                    }
                    let router = router.filter(|&r| {
                        match crate::config::check_gateway(
                            address.address(),
                            address.prefix_len(),
                            r,
                        ) {
                            Ok(()) => true,
                            Err(why) => {
                                log::warn!("net: DHCP router {r} left out: {why}");
                                self.stats.dhcp_router_refused += 1;
                                false
                            }
                        }
                    });
                    self.apply_lease(address, router);
                    changed = true;
                }
                None => {
                    if let DhcpStatus::Bound { address, .. } = self.dhcp_status {
                        log::warn!("net: DHCP lease {address} lost, asking again");
                        self.stats.dhcp_lost += 1;
                        changed = true;
                    }
                    self.iface.update_ip_addrs(|addrs| addrs.clear());
                    self.iface.routes_mut().remove_default_ipv4_route();
                    self.gateway = None;
                    if !matches!(self.dhcp_status, DhcpStatus::Waiting { .. }) {
                        self.dhcp_status = DhcpStatus::Waiting { since_ns: now };
                        self.dhcp_logged_ns = now;
                    }
                }
            }
        }
        if let DhcpStatus::Waiting { since_ns } = self.dhcp_status
            && now.saturating_sub(self.dhcp_logged_ns) >= DHCP_WAIT_LOG_NS
        {
            self.dhcp_logged_ns = now;
            log::warn!(
                "net: no DHCP lease after {} s, still asking",
                (now - since_ns) / 1_000_000_000
            );
        }
        changed
    }

    #[cfg(feature = "dhcp")]
    fn apply_lease(&mut self, address: Ipv4Cidr, router: Option<Ipv4Address>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // One address: the vector has room for it.
            let _ = addrs.push(IpCidr::Ipv4(address));
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        self.gateway = router;
        if let Some(r) = router {
            // The route table holds at least one route (smoltcp's default is 2).
            let _ = self.iface.routes_mut().add_default_ipv4_route(r);
        }
        match router {
            Some(r) => log::info!("net: DHCP lease {address} gw {r}"),
            None => log::info!("net: DHCP lease {address} (no router)"),
        }
        self.stats.dhcp_leases += 1;
        self.dhcp_status = DhcpStatus::Bound {
            address,
            router,
            since_ns: self.now_ns,
        };
    }

    /// smoltcp's `Interface::poll`, one received frame at a time: the SYN gate
    /// ([`crate::device::SynGate`]) learns at the start what each listener's pool can take, and
    /// after each frame that may have changed a pool (a SYN it took, a segment completing or
    /// ending a handshake) the pool is refilled and the gate told again, so that a SYN later in
    /// the same poll finds the listening socket that frame freed. Returns whether some socket
    /// may have changed.
    fn poll_iface(&mut self, now: Instant) -> bool {
        let mut changed = false;
        self.iface.poll_maintenance(now);
        self.phy.gate_mut().clear();
        for i in 0..self.listeners.len() {
            self.gate_listener(i);
        }
        loop {
            match self
                .iface
                .poll_ingress_single(now, &mut self.phy, &mut self.sockets)
            {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => changed = true,
            }
            if let Some(i) = self.phy.gate_mut().take_touched() {
                changed |= self.maintain_listener(i);
                self.gate_listener(i);
            }
        }
        while self.egress(now) {
            changed = true;
        }
        // What the TSO coalescer still holds goes out with this poll.
        self.phy.flush();
        changed
    }

    /// Tells the SYN gate how many SYNs listener `index` can take now: its free listening
    /// sockets; when there are none, which connections on its port have a socket already
    /// (their retransmitted SYNs are smoltcp's to answer).
    fn gate_listener(&mut self, index: usize) {
        let Some(l) = self.listeners.get(index).and_then(Option::as_ref) else {
            self.phy.gate_mut().close(index);
            return;
        };
        let port = l.port;
        let free = l
            .pool
            .iter()
            .filter(|&&h| self.sockets.get::<tcp::Socket<'_>>(h).state() == tcp::State::Listen)
            .count();
        let busy = free < l.pool.len();
        let gate = self.phy.gate_mut();
        gate.open(index, port, free, busy);
        if free == 0 {
            for (_, s) in self.sockets.iter() {
                if let smoltcp::socket::Socket::Tcp(t) = s
                    && t.local_endpoint().is_some_and(|e| e.port == port)
                    && let Some(IpEndpoint {
                        addr: IpAddress::Ipv4(a),
                        port: p,
                    }) = t.remote_endpoint()
                {
                    gate.know(index, a, p);
                }
            }
        }
    }

    /// Moves connected pool sockets to their listener's accept queue and refills the pools;
    /// frees closing sockets that are done (or in TIME-WAIT), aborts those past their linger
    /// deadline. Returns whether anything became ready.
    fn maintain(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.listeners.len() {
            changed |= self.maintain_listener(i);
        }
        let now = self.now_ns;
        let mut i = 0;
        while i < self.orphans.len() {
            let o = self.orphans[i];
            let socket = self.sockets.get_mut::<tcp::Socket<'_>>(o.handle);
            match socket.state() {
                // CLOSING with nothing left to send: the peer acknowledged every byte and sent
                // its FIN; only the acknowledgement of our FIN is missing (QEMU's slirp leaves
                // simultaneous closes there for seconds). As good as TIME-WAIT (crate docs).
                tcp::State::Closed | tcp::State::TimeWait | tcp::State::Closing
                    if socket.state() != tcp::State::Closing || socket.send_queue() == 0 =>
                {
                    match socket.state() {
                        tcp::State::TimeWait => self.stats.time_wait_reaped += 1,
                        tcp::State::Closing => self.stats.closing_reaped += 1,
                        _ => {}
                    }
                    self.remove_tcp(o.handle);
                    self.orphans.swap_remove(i);
                    // A socket freed: a starved listener may refill.
                    changed = true;
                    continue;
                }
                _ if now >= o.deadline_ns => {
                    socket.abort();
                    self.stats.lingered_out += 1;
                    // Freed at the next poll, once its RST went out.
                    self.orphans[i].deadline_ns = u64::MAX;
                }
                _ => {}
            }
            i += 1;
        }
        if changed {
            for i in 0..self.listeners.len() {
                self.maintain_listener(i);
            }
        }
        changed
    }

    fn maintain_listener(&mut self, index: usize) -> bool {
        let Some(l) = self.listeners[index].as_mut() else {
            return false;
        };
        let mut changed = false;
        let mut i = 0;
        while i < l.pool.len() {
            let h = l.pool[i];
            let socket = self.sockets.get_mut::<tcp::Socket<'_>>(h);
            match socket.state() {
                tcp::State::Listen | tcp::State::SynReceived => i += 1,
                tcp::State::Closed => {
                    // A handshake that failed: listen again.
                    if socket.listen(l.port).is_err() {
                        log::warn!(
                            "net: pool socket of port {} cannot listen again",
                            u32::from(l.port) // u32: no u16 Display in the image
                        );
                    }
                    i += 1;
                }
                _ => {
                    // Connected: from now on idle is fine (see `HANDSHAKE_TIMEOUT`).
                    socket.set_timeout(None);
                    l.ready.push_back(h);
                    l.pool.swap_remove(i);
                    changed = true;
                }
            }
        }
        while l.pool.len() < l.backlog && l.ready.len() < l.backlog {
            // The listener's buffers if they fit, else the default ones (see `tcp_listen_with`).
            let mut size = l.buffer;
            if self.live + share(size, self.limits.tcp_buffer) > self.limits.sockets {
                size = self.limits.tcp_buffer;
            }
            if self.live >= self.limits.sockets {
                self.stats.pool_starved += 1;
                break;
            }
            let mut socket = new_tcp(size);
            if socket.listen(l.port).is_err() {
                break;
            }
            l.pool.push(self.sockets.add(socket));
            self.live += share(size, self.limits.tcp_buffer);
        }
        changed
    }

    /// Removes a TCP socket from the set and gives back its share of `net_sockets`.
    fn remove_tcp(&mut self, h: SocketHandle) {
        #[allow(irrefutable_let_patterns)]
        if let smoltcp::socket::Socket::Tcp(t) = self.sockets.remove(h) {
            self.live -= share(t.recv_capacity(), self.limits.tcp_buffer);
        }
    }

    fn reserve(&mut self) -> Result<(), Error> {
        if self.live >= self.limits.sockets {
            return Err(Error::NoSockets);
        }
        self.live += 1;
        Ok(())
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.listeners.iter().flatten().any(|l| l.port == port)
            || self.sockets.iter().any(|(_, s)| match s {
                smoltcp::socket::Socket::Tcp(t) => {
                    t.local_endpoint().is_some_and(|e| e.port == port)
                }
                #[cfg(feature = "udp")]
                smoltcp::socket::Socket::Udp(u) => u.endpoint().port == port,
                // DHCP's client binds no port of ours; with neither, TCP is the only kind.
                #[allow(unreachable_patterns)]
                _ => false,
            })
    }

    // ---------------------------------------------------------------- TCP listeners

    /// Listens on `port` with a pool of `backlog` (at least 1) listening sockets: up to
    /// `backlog` handshakes in progress and `backlog` connections waiting for `accept`.
    pub fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<ListenerId, Error> {
        self.tcp_listen_with(port, backlog, self.limits.tcp_buffer)
    }

    /// [`Stack::tcp_listen`] with `buffer` bytes (at least [`MIN_TCP_BUFFER`]) for each of its
    /// connections' receive and transmit buffers instead of [`Limits::tcp_buffer`]: for bulk
    /// streams, whose throughput is one window per round trip. Above 64 KiB the receive window
    /// is scaled (RFC 7323). A socket with buffers `k` times [`Limits::tcp_buffer`] (rounded up)
    /// counts as `k` sockets against [`Limits::sockets`], so the memory the limits allow stays
    /// the same; a pool socket that would not fit so gets the default buffers instead.
    /// `TooLarge` if one such socket would count for more than all of them.
    pub fn tcp_listen_with(
        &mut self,
        port: u16,
        backlog: usize,
        buffer: usize,
    ) -> Result<ListenerId, Error> {
        if port == 0 {
            return Err(Error::Unaddressable);
        }
        let buffer = buffer.max(MIN_TCP_BUFFER);
        if share(buffer, self.limits.tcp_buffer) > self.limits.sockets {
            return Err(Error::TooLarge);
        }
        if self.listeners.iter().flatten().any(|l| l.port == port) {
            return Err(Error::AddrInUse);
        }
        if self.live >= self.limits.sockets {
            return Err(Error::NoSockets);
        }
        let l = Listener {
            port,
            backlog: backlog.max(1),
            buffer,
            pool: Vec::new(),
            ready: VecDeque::new(),
        };
        let index = match self.listeners.iter().position(Option::is_none) {
            Some(i) => {
                self.listeners[i] = Some(l);
                i
            }
            None => {
                self.listeners.push(Some(l));
                self.listeners.len() - 1
            }
        };
        self.maintain_listener(index);
        Ok(ListenerId(index))
    }

    fn listener(&mut self, id: ListenerId) -> Result<&mut Listener, Error> {
        self.listeners
            .get_mut(id.0)
            .and_then(Option::as_mut)
            .ok_or(Error::NotConnected)
    }

    /// A connection waiting on the listener, or `WouldBlock`.
    pub fn tcp_accept(&mut self, id: ListenerId) -> Result<SocketHandle, Error> {
        let got = self.listener(id)?.ready.pop_front();
        let h = match got {
            Some(h) => h,
            None => {
                // Sockets may have freed up since the last poll.
                self.maintain_listener(id.0);
                self.listener(id)?
                    .ready
                    .pop_front()
                    .ok_or(Error::WouldBlock)?
            }
        };
        self.stats.accepted += 1;
        self.maintain_listener(id.0);
        Ok(h)
    }

    /// The listener's port.
    pub fn tcp_listener_port(&mut self, id: ListenerId) -> Result<u16, Error> {
        Ok(self.listener(id)?.port)
    }

    /// Stops listening: the pool's sockets are freed, connections not accepted are reset.
    pub fn tcp_unlisten(&mut self, id: ListenerId) {
        let Some(l) = self.listeners.get_mut(id.0).and_then(Option::take) else {
            return;
        };
        // Calls waiting to accept on it see it gone.
        self.wake_ready();
        for h in l.pool {
            let socket = self.sockets.get_mut::<tcp::Socket<'_>>(h);
            if socket.state() == tcp::State::Listen {
                self.remove_tcp(h);
            } else {
                socket.abort();
                self.orphans.push(Orphan {
                    handle: h,
                    deadline_ns: u64::MAX,
                });
            }
        }
        for h in l.ready {
            self.sockets.get_mut::<tcp::Socket<'_>>(h).abort();
            self.orphans.push(Orphan {
                handle: h,
                deadline_ns: u64::MAX,
            });
        }
    }

    // ---------------------------------------------------------------- TCP streams

    /// Starts connecting to `remote` from an ephemeral port; [`Stack::tcp_connected`] tells
    /// when it is done.
    pub fn tcp_connect(&mut self, remote: IpEndpoint) -> Result<SocketHandle, Error> {
        if remote.port == 0 || remote.addr.is_unspecified() {
            return Err(Error::Unaddressable);
        }
        self.reserve()?;
        let mut port = self.next_port;
        for _ in 0..=(u16::MAX - EPHEMERAL) {
            port = if port == u16::MAX {
                EPHEMERAL
            } else {
                port + 1
            };
            if !self.port_in_use(port) {
                break;
            }
        }
        self.next_port = port;
        let mut socket = new_tcp(self.limits.tcp_buffer);
        match socket.connect(self.iface.context(), remote, port) {
            Ok(()) => Ok(self.sockets.add(socket)),
            Err(_) => {
                self.live -= 1;
                Err(Error::Unaddressable)
            }
        }
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket<'static>>(h)
    }

    /// smoltcp's state of a connection (for diagnostics).
    pub fn tcp_state(&mut self, h: SocketHandle) -> tcp::State {
        self.tcp(h).state()
    }

    /// `Ok` once a connection started by [`Stack::tcp_connect`] is established, `WouldBlock`
    /// while the handshake runs, `ConnectionRefused` if it failed.
    pub fn tcp_connected(&mut self, h: SocketHandle) -> Result<(), Error> {
        let socket = self.tcp(h);
        match socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => Err(Error::WouldBlock),
            tcp::State::Closed => Err(Error::ConnectionRefused),
            _ => {
                socket.set_timeout(None);
                Ok(())
            }
        }
    }

    /// Reads what was received into `buf`: the bytes read, 0 at the end of the stream
    /// (the peer closed its half with a FIN), `WouldBlock`, or `ConnectionReset` (closed
    /// without a FIN from the peer: an RST, or a timeout). `write_closed` says whether the
    /// application closed its sending half: then a closed socket is an end of stream (smoltcp
    /// forgets the peer's FIN when TIME-WAIT ends, and a reset after our FIN loses nothing
    /// we still expect to read... but what the peer had yet to send).
    pub fn tcp_recv(
        &mut self,
        h: SocketHandle,
        buf: &mut [u8],
        write_closed: bool,
    ) -> Result<usize, Error> {
        let socket = self.tcp(h);
        established(socket);
        match socket.recv_slice(buf) {
            Ok(0) if !buf.is_empty() => Err(Error::WouldBlock),
            Ok(n) => Ok(n),
            Err(tcp::RecvError::Finished) => Ok(0),
            Err(tcp::RecvError::InvalidState) => match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => Err(Error::WouldBlock),
                tcp::State::Closed if write_closed => Ok(0),
                tcp::State::Closed => Err(Error::ConnectionReset),
                _ => Err(Error::NotConnected),
            },
        }
    }

    /// Queues `buf` for sending: the bytes queued (maybe fewer), or `WouldBlock` when the
    /// transmit buffer is full.
    pub fn tcp_send(&mut self, h: SocketHandle, buf: &[u8]) -> Result<usize, Error> {
        let socket = self.tcp(h);
        established(socket);
        match socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => return Err(Error::WouldBlock),
            tcp::State::Closed => return Err(Error::ConnectionReset),
            _ => {}
        }
        if !socket.may_send() {
            return Err(Error::BrokenPipe);
        }
        match socket.send_slice(buf) {
            Ok(0) if !buf.is_empty() => Err(Error::WouldBlock),
            Ok(n) => Ok(n),
            Err(tcp::SendError::InvalidState) => Err(Error::BrokenPipe),
        }
    }

    /// `Ok` once everything queued was acknowledged by the peer, else `WouldBlock`.
    pub fn tcp_flush(&mut self, h: SocketHandle) -> Result<(), Error> {
        let socket = self.tcp(h);
        if socket.send_queue() == 0 {
            Ok(())
        } else if socket.state() == tcp::State::Closed {
            Err(Error::ConnectionReset)
        } else {
            Err(Error::WouldBlock)
        }
    }

    /// Closes the sending half (FIN after the queued data).
    pub fn tcp_close_write(&mut self, h: SocketHandle) {
        self.tcp(h).close();
    }

    /// The local and remote endpoints of a connection.
    pub fn tcp_endpoints(&mut self, h: SocketHandle) -> Result<(IpEndpoint, IpEndpoint), Error> {
        let socket = self.tcp(h);
        match (socket.local_endpoint(), socket.remote_endpoint()) {
            (Some(l), Some(r)) => Ok((l, r)),
            _ => Err(Error::NotConnected),
        }
    }

    /// Whether `read` would not block (data, end of stream or an error to report).
    pub fn tcp_can_read(&mut self, h: SocketHandle) -> bool {
        let s = self.tcp(h);
        s.can_recv()
            || (!s.may_recv()
                && !matches!(s.state(), tcp::State::SynSent | tcp::State::SynReceived))
    }

    /// The application is done with the connection (its stream was dropped): the socket closes
    /// gracefully (FIN after the queued data) and is freed once closed, or as soon as it reaches
    /// TIME-WAIT (see the crate docs), or aborted after [`Limits::linger_ns`].
    pub fn tcp_release(&mut self, h: SocketHandle) {
        self.forget(h);
        let socket = self.tcp(h);
        if socket.state() == tcp::State::Closed {
            self.remove_tcp(h);
            self.bump();
            return;
        }
        // Unread data: nobody will read it. Linux resets such a connection (RFC 2525 2.17)
        // so the peer learns its data was lost; do the same.
        if socket.recv_queue() > 0 {
            socket.abort();
        } else {
            socket.close();
        }
        self.orphans.push(Orphan {
            handle: h,
            deadline_ns: self.now_ns.saturating_add(self.limits.linger_ns),
        });
    }

    /// Aborts a connection (RST) and frees its socket.
    pub fn tcp_abort(&mut self, h: SocketHandle) {
        self.forget(h);
        self.tcp(h).abort();
        self.orphans.push(Orphan {
            handle: h,
            deadline_ns: u64::MAX,
        });
    }

    // ---------------------------------------------------------------- UDP (feature `udp`)

    /// A UDP socket bound to `port` (0: an ephemeral port).
    #[cfg(feature = "udp")]
    pub fn udp_bind(&mut self, port: u16) -> Result<SocketHandle, Error> {
        let port = if port == 0 {
            let mut p = self.next_port;
            for _ in 0..=(u16::MAX - EPHEMERAL) {
                p = if p == u16::MAX { EPHEMERAL } else { p + 1 };
                if !self.port_in_use(p) {
                    break;
                }
            }
            self.next_port = p;
            p
        } else if self.sockets.iter().any(|(_, s)| match s {
            smoltcp::socket::Socket::Udp(u) => u.endpoint().port == port,
            _ => false,
        }) {
            return Err(Error::AddrInUse);
        } else {
            port
        };
        self.reserve()?;
        let l = self.limits;
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; l.udp_packets.max(1)],
                vec![0; l.udp_buffer],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        if socket.bind(port).is_err() {
            self.live -= 1;
            return Err(Error::Unaddressable);
        }
        Ok(self.sockets.add(socket))
    }

    #[cfg(feature = "udp")]
    fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket<'static>>(h)
    }

    /// Queues one datagram to `to`, or `WouldBlock` when the transmit buffer is full.
    #[cfg(feature = "udp")]
    pub fn udp_send_to(
        &mut self,
        h: SocketHandle,
        buf: &[u8],
        to: IpEndpoint,
    ) -> Result<(), Error> {
        let socket = self.udp(h);
        if buf.len() > socket.payload_send_capacity() {
            return Err(Error::TooLarge);
        }
        match socket.send_slice(buf, to) {
            Ok(()) => Ok(()),
            Err(udp::SendError::BufferFull) => Err(Error::WouldBlock),
            Err(udp::SendError::Unaddressable) => Err(Error::Unaddressable),
        }
    }

    /// The next datagram: its length and sender. A datagram longer than `buf` is cut to fit
    /// (the rest is lost, as with `std::net::UdpSocket`).
    #[cfg(feature = "udp")]
    pub fn udp_recv_from(
        &mut self,
        h: SocketHandle,
        buf: &mut [u8],
    ) -> Result<(usize, IpEndpoint), Error> {
        match self.udp(h).recv() {
            Ok((data, meta)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, meta.endpoint))
            }
            Err(_) => Err(Error::WouldBlock),
        }
    }

    /// The local endpoint of a UDP socket (its address is the interface's).
    #[cfg(feature = "udp")]
    pub fn udp_local(&mut self, h: SocketHandle) -> smoltcp::wire::IpListenEndpoint {
        self.udp(h).endpoint()
    }

    /// Frees a UDP socket.
    #[cfg(feature = "udp")]
    pub fn udp_release(&mut self, h: SocketHandle) {
        self.forget(h);
        self.sockets.remove(h);
        self.live -= 1;
    }

    /// The interface's address as an [`IpAddress`], if it has one.
    pub fn local_address(&self) -> Option<IpAddress> {
        self.ipv4_addr().map(IpAddress::Ipv4)
    }
}

/// Clears the handshake timeout of a socket past its handshake.
fn established(socket: &mut tcp::Socket<'_>) {
    if socket.timeout().is_some()
        && !matches!(
            socket.state(),
            tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Listen
        )
    {
        socket.set_timeout(None);
    }
}

/// The smallest TCP buffer a listener may ask for (the profile's `net_tcp_buffer` has the
/// same floor).
pub const MIN_TCP_BUFFER: usize = 2048;

/// How many sockets of `unit`-byte buffers one socket of `buffer`-byte buffers counts as.
fn share(buffer: usize, unit: usize) -> usize {
    buffer.div_ceil(unit.max(1)).max(1)
}

fn new_tcp(buffer: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    );
    s.set_timeout(Some(HANDSHAKE_TIMEOUT));
    s
}
