//! The network stack: smoltcp 0.14 over any [`netdev::NetDevice`], with IPv4 (static or
//! DHCPv4), ARP, ICMP echo, TCP and UDP, and sockets shaped like `std::net`.
//!
//! # Parts
//! - [`device`]: the adapter from a `NetDevice` to smoltcp's `phy::Device` (tokens one to one,
//!   MTU, burst size and checksum offloads; frames with a blank checksum are completed).
//! - [`config`]: [`IpConfig`] from the settings `net_ip`/`net_gateway` and the kernel command
//!   line's `ip=`/`gw=`, checked with clear errors; [`Limits`] from `net_sockets`,
//!   `net_tcp_buffer`, `net_udp_buffer`.
//! - [`stack`]: [`Stack`]: the interface, the device, the socket set, the listener pools, the
//!   closing sockets, DHCP, and who waits for what. Every operation is non-blocking.
//! - [`socket`]: [`TcpListener`], [`TcpStream`], [`UdpSocket`], generic over the glue's
//!   [`Shared`] (and [`Wait`] for blocking calls); embedded-io and embedded-io-async traits.
//!
//! ARP and ICMP echo need nothing from the application: smoltcp's interface answers ARP
//! requests and pings (its `auto-icmp-echo-reply` feature) in every poll.
//!
//! # How the kernel drives it
//! The crate has no clock, no lock and no thread: the glue gives it all three.
//! - One `Stack` per NIC, behind one lock (a spin lock or the scheduler's mutex), created with
//!   `Stack::new(device, ip, limits, seed, now_ns)`.
//! - The glue implements [`Shared`] for a small `Clone + Send` value (a reference to the
//!   static, say): `with_stack` locks and runs the closure, `now_ns` reads the clock. It
//!   implements [`Wait`] for blocking calls: `wait(ticket, deadline)` returns once the
//!   generation of the ticket's wait slot ([`Stack::slot_generation`]) moved or the deadline
//!   passed.
//! - The network thread (or task) loops: lock; `stack.poll(now)` (it calls the device's
//!   `poll_interrupt` first, so after an interrupt the glue just polls, then unmasks the line;
//!   a glue that reports every interrupt with `Stack::interrupted` sets
//!   `Stack::set_interrupt_driven`, and then only the poll after an interrupt calls it);
//!   then `Stack::take_woken` (under the lock) names the wait slots whose waiters' sockets
//!   changed: mirror their generations, unlock, and wake those slots' threads (the stack wakes
//!   async tasks itself); read `stack.poll_at(now)`; sleep until the device's interrupt or that
//!   deadline. Nothing busy-polls: with no socket busy, `poll_at` is `None` or far off.
//! - A blocking socket call locks and tries. Served from its socket's buffers, it polls
//!   nothing (a write sends at once with one pass of egress, [`Stack::poll_egress`]). On
//!   would-block it polls nothing either (the device's news is the poller's: its interrupt
//!   brings a poll) and registers what it waits for ([`Stack::wait_for`]: the data, room, a
//!   connection...), which gives it a ticket, then unlocks and calls `wait(ticket, deadline)`.
//!   A poll (or call) that changes that socket's queues or state moves the ticket's slot:
//!   only the threads waiting on that socket (and those sharing its slot) wake, not every
//!   blocked thread. The ticket is read under the same lock under which a poll moves it, so no
//!   wake-up is lost. After a call, the glue reads `poll_at` (unless the call changed nothing:
//!   `Stack::take_untouched`) and wakes its poller if that is sooner than it sleeps. With
//!   `scheduler = "none"`, `wait` polls the stack itself and idles (`Platform::idle`) until
//!   an interrupt or `poll_at`.
//! - Async sockets register their task's waker the same way; the poll that changes what the
//!   task waits for wakes it.
//!
//! # Features
//! `dhcp` (the DHCPv4 client) and `udp` (`UdpSocket`), both default; the kernel turns them on
//! only when the profile (`net_dhcp`) or the app (`stardust/net_udp`) asks, to keep the image
//! small. Without `dhcp`, [`IpConfig`]'s parsers refuse `dhcp` with an error that names the
//! setting.
//!
//! # DHCPv4
//! With `ip=dhcp` the stack runs smoltcp's DHCP client and applies each lease itself in `poll`:
//! the address with its prefix, and the router as the default route ([`Stack::ipv4_cidr`],
//! [`Stack::gateway`]). [`Stack::dhcp_status`] says where it stands (`Waiting` since when,
//! `Bound` to what) for the glue to log; a stack still waiting logs so every 60 s. Without an
//! answer the client asks again every 10 s, for ever, and the interface stays without an address
//! (sockets can be bound meanwhile; they work once the lease comes). It renews at T1 (half the
//! lease) with the server, rebinds at T2 by broadcast, and drops the address when the lease
//! expires or the server NAKs.
//!
//! smoltcp takes any lease whose address is not unspecified, broadcast or multicast. The stack
//! checks more, with the rules of the static configuration: a lease whose address is not a usable
//! host address (loopback, class E, 0.x, a /0, the network or broadcast address of its subnet) is
//! refused and the client starts over; a router that is not a host on the lease's subnet is left
//! out (the address applies, without a default route). [`StackStats`] counts leases, refusals and
//! losses. smoltcp starts over at once after a NAK (or a refusal), so a server that NAKs every
//! REQUEST is asked again at its own pace: it is that server which sets the rate.
//!
//! # The listener pool
//! smoltcp has no listen backlog: a listening socket becomes the connection. So
//! [`TcpListener::bind`] puts `backlog` sockets in LISTEN on the port. A pool socket that got
//! past the handshake moves to the listener's accept queue and a fresh listening socket takes its
//! place, while the pool has fewer than `backlog` sockets and the queue fewer than `backlog`
//! connections (so at most `2 × backlog` sockets per listener, like Linux's SYN and accept
//! queues). A connection once in the queue is never lost.
//!
//! The pool is refilled between the frames of a poll: the stack hands smoltcp one received frame
//! at a time (`poll_ingress_single`), and after each frame that may have changed a pool (a SYN
//! it took, a segment that completed or ended a handshake) moves what is connected to the queue
//! and puts a listening socket in its place, so that a SYN later in the same poll finds it.
//!
//! A SYN that would still find no listening socket (a burst beyond the pool within one poll, a
//! full accept queue, or no socket left under `net_sockets`) would get an RST from smoltcp, which
//! a client takes for "connection refused". So the device adapter's gate
//! ([`device::SynGate`]) drops it unanswered before smoltcp sees it, and counts it in
//! [`StackStats::syn_dropped`]: the client retransmits its SYN (after 1 s, then 2, 4...) and
//! gets in once the pool has room, as with Linux when its SYN or accept queue is full
//! (`tcp_abort_on_overflow = 0`). The gate knows, per listener, how many listening sockets are
//! free; each SYN it passes takes one, and the stack tells it again after each frame that may
//! have changed the pool. A SYN with an ACK, a SYN of a connection that already has a socket (a
//! retransmission to a socket in SYN-RECEIVED), and a SYN to a port nobody listens on go to
//! smoltcp as before: the last gets an RST, "connection refused", rightly. The gate reads only
//! the headers, with every access bounds-checked. What it costs: about 1 % more instructions in
//! the host tests' echo and 10,000-connection soak (callgrind, both stacks counted).
//!
//! A listener may ask for larger buffers than [`Limits::tcp_buffer`] for its connections
//! ([`Stack::tcp_listen_with`], for bulk streams: TCP moves at most one window per round trip,
//! and the receive window is at most the buffer; smoltcp scales it past 64 KiB). A socket whose
//! buffers are `k` times `tcp_buffer` (rounded up) counts as `k` sockets against
//! [`Limits::sockets`], so the memory the limits allow stays the same; a pool socket that would
//! not fit so gets the default buffers.
//!
//! When sockets run out, the pool shrinks instead of failing; it refills on the next poll or
//! `accept` after sockets free up ([`StackStats::pool_starved`] counts the shortfalls).
//!
//! # TIME-WAIT
//! smoltcp keeps a closed socket in TIME-WAIT for 10 s, with its buffers. At thousands of
//! connections a second (an HTTP server closing after each response is the side that enters
//! TIME-WAIT) that would be tens of thousands of sockets. So a stream the application dropped
//! stays in the socket set only while it still has work: sending its queued data and FIN, and
//! waiting for the FIN to be acknowledged (FIN-WAIT-1, FIN-WAIT-2, CLOSING, LAST-ACK). Once it
//! is CLOSED or in TIME-WAIT it is removed at the end of the poll that saw it (its buffers
//! freed, its slot free for a new connection).
//!
//! TIME-WAIT is reached only when both FINs were exchanged and ours acknowledged, and the poll
//! that got there also sent our last ACK. What removing it gives up:
//! - if that last ACK is lost, the peer (in LAST-ACK) retransmits its FIN, finds no socket and
//!   gets an RST, which closes its side just the same: every byte was delivered both ways
//!   already; only the peer's close is reported as a reset (RFC 1337's "TIME-WAIT
//!   assassination" hazard is of the same kind, and a server may accept it);
//! - old duplicate segments of the connection could reach a new connection of the same four
//!   tuple: the client picks its port, and smoltcp takes the initial sequence number at
//!   random, so a new incarnation's window is unrelated to the old one's, which is what RFC
//!   6191 relies on for a server to reuse a TIME-WAIT tuple early.
//!
//! A dropped stream in CLOSING (both sides sent a FIN at once, ours not yet acknowledged) whose
//! data the peer has all acknowledged is removed the same way: the peer has every byte and has
//! closed its side; if it never got our FIN, its retransmitted FIN gets an RST, as above. QEMU's
//! user networking leaves such closes unacknowledged for seconds, which starved the listener
//! pools of an HTTP server closing after each response.
//!
//! A stream dropped with unread data is reset (as Linux does, RFC 2525); one whose peer never
//! finishes the close is aborted after [`Limits::linger_ns`]. Every TCP socket also gives up
//! after 60 s without acknowledgement of what it sent (smoltcp's timeout), so a handshake that
//! never completes frees its pool socket.
//!
//! A live stream in TIME-WAIT (the application shut its side down and the peer closed too)
//! stays until the application drops it; smoltcp discards data still unread when those 10 s
//! end, so read to the end of the stream soon after both sides closed.
//!
//! # Errors
//! Running out of sockets is [`Error::NoSockets`] from `bind` and `connect` (a listener's pool
//! shrinks instead), never a panic; `read` returns `Ok(0)` at the end of the stream,
//! [`Error::ConnectionReset`] after an RST, [`Error::TimedOut`] after its timeout.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
pub mod device;
pub mod socket;
pub mod stack;
pub mod tso;

pub use config::{ConfigError, IpConfig, Limits};
/// smoltcp, for the glue's and the tests' use of its types.
pub use smoltcp;
#[cfg(feature = "udp")]
pub use socket::UdpSocket;
pub use socket::{Shared, TcpListener, TcpStream, Wait};
pub use stack::{
    DhcpStatus, Error, Interest, ListenerId, MIN_TCP_BUFFER, Shutdown, Stack, StackStats,
    TCP_STATES, Ticket, WAIT_SLOTS,
};
