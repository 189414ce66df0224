//! The host tests' world: two stacks wired back to back (a client and a server), polled in
//! turn on a virtual clock.
#![allow(dead_code)]

use net::smoltcp::iface::SocketHandle;
use net::{IpConfig, Limits, Shared, Stack, Wait};
use netdev::fake::{FakeDevice, Faults, Faulty, pair};
use netdev::{MacAddress, NetDevice};
use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

pub const CLIENT_MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
pub const SERVER_MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

/// What the world needs of a device besides `NetDevice`: whether frames wait for it.
pub trait Pending: NetDevice {
    fn pending(&self) -> bool;
}

impl Pending for FakeDevice {
    fn pending(&self) -> bool {
        FakeDevice::pending(self) > 0
    }
}

impl Pending for Faulty<FakeDevice> {
    fn pending(&self) -> bool {
        self.inner().pending() > 0
    }
}

pub fn static_ip(ip: Ipv4Addr) -> IpConfig {
    IpConfig::Static {
        address: ip,
        prefix: 24,
        gateway: None,
    }
}

pub fn limits() -> Limits {
    Limits {
        sockets: 256,
        ..Limits::default()
    }
}

/// Two stacks and a clock.
pub struct World<D: Pending> {
    pub stacks: [Stack<D>; 2],
    pub now: u64,
    pub steps: u64,
}

pub type Shared2<D> = Rc<RefCell<World<D>>>;

/// One side of the world, as the sockets see it.
pub struct Side<D: Pending> {
    pub world: Shared2<D>,
    pub index: usize,
}

impl<D: Pending> Clone for Side<D> {
    fn clone(&self) -> Self {
        Side {
            world: self.world.clone(),
            index: self.index,
        }
    }
}

impl<D: Pending> Shared for Side<D> {
    type Device = D;

    fn with_stack<R>(&self, f: impl FnOnce(&mut Stack<D>) -> R) -> R {
        f(&mut self.world.borrow_mut().stacks[self.index])
    }

    fn now_ns(&self) -> u64 {
        self.world.borrow().now
    }
}

impl<D: Pending> Wait for Side<D> {
    /// Single-threaded: runs the world until this side's ticket's slot moves or the deadline.
    fn wait(&self, ticket: net::Ticket, deadline_ns: Option<u64>) {
        for _ in 0..1_000_000 {
            let mut w = self.world.borrow_mut();
            if w.stacks[self.index].slot_generation(ticket.slot) != ticket.generation
                || deadline_ns.is_some_and(|d| w.now >= d)
            {
                return;
            }
            w.step(deadline_ns);
        }
        panic!("nothing happened in a million steps");
    }
}

impl<D: Pending> World<D> {
    /// Polls both stacks; when no frame is in flight, moves the clock to the next deadline.
    pub fn step(&mut self, limit: Option<u64>) {
        self.steps += 1;
        let now = self.now;
        for s in &mut self.stacks {
            s.poll(now);
        }
        if self.stacks.iter().any(|s| s.device().pending()) {
            return;
        }
        let next = self
            .stacks
            .iter_mut()
            .filter_map(|s| s.poll_at(now))
            .chain(limit)
            .min()
            .unwrap_or(now + 1_000_000);
        self.now = next.max(now + 1_000);
    }
}

/// A client side (0) and a server side (1) over `a` and `b`.
pub fn world<D: Pending>(a: D, b: D, limits: Limits) -> (Side<D>, Side<D>) {
    world_with(a, b, static_ip(CLIENT_IP), static_ip(SERVER_IP), limits)
}

/// Side 0 over `a` configured with `ip_a`, side 1 over `b` with `ip_b`.
pub fn world_with<D: Pending>(
    a: D,
    b: D,
    ip_a: IpConfig,
    ip_b: IpConfig,
    limits: Limits,
) -> (Side<D>, Side<D>) {
    let world = Rc::new(RefCell::new(World {
        stacks: [
            Stack::new(a, ip_a, limits, 1, 0),
            Stack::new(b, ip_b, limits, 2, 0),
        ],
        now: 0,
        steps: 0,
    }));
    (
        Side {
            world: world.clone(),
            index: 0,
        },
        Side { world, index: 1 },
    )
}

pub fn plain(limits: Limits) -> (Side<FakeDevice>, Side<FakeDevice>) {
    let (a, b) = pair(CLIENT_MAC, SERVER_MAC);
    world(a, b, limits)
}

/// What a virtio-net device with every offload says: TCP and UDP checksums computed and
/// verified by the device, TSO up to 64 KiB.
pub fn offloading(mac: MacAddress) -> netdev::Capabilities {
    let mut caps = netdev::Capabilities::ethernet(mac);
    caps.checksums.tcp = netdev::ChecksumOffload::Both;
    caps.checksums.udp = netdev::ChecksumOffload::Both;
    caps.tso = Some(14 + 65_535);
    caps
}

/// A pair of devices with every offload ([`offloading`]): what each sends as a TSO frame
/// arrives cut into segments.
pub fn tso(limits: Limits) -> (Side<FakeDevice>, Side<FakeDevice>) {
    let (a, b) = pair(CLIENT_MAC, SERVER_MAC);
    world(
        a.with_capabilities(offloading(CLIENT_MAC)),
        b.with_capabilities(offloading(SERVER_MAC)),
        limits,
    )
}

pub fn faulty(faults: Faults, seed: u64) -> (Side<Faulty<FakeDevice>>, Side<Faulty<FakeDevice>>) {
    let (a, b) = pair(CLIENT_MAC, SERVER_MAC);
    world(
        Faulty::new(a, faults, seed),
        Faulty::new(b, faults, seed ^ 0x5555),
        limits(),
    )
}

impl<D: Pending> Side<D> {
    pub fn step(&self) {
        self.world.borrow_mut().step(None);
    }

    pub fn now(&self) -> u64 {
        self.world.borrow().now
    }

    /// Steps until `done` (at most `steps` times).
    pub fn run_until(&self, steps: u64, mut done: impl FnMut() -> bool) {
        for _ in 0..steps {
            if done() {
                return;
            }
            self.step();
        }
        assert!(done(), "not done after {steps} steps");
    }

    pub fn stats(&self) -> net::StackStats {
        self.with_stack(|s| s.stats())
    }
}

pub fn server_addr(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(SERVER_IP, port)
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

pub fn _unused(_: SocketHandle) {}
