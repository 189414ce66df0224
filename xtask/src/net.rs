//! The guest's NIC on QEMU user networking (slirp): `run --forward HOSTPORT:GUESTPORT`, `--nic`,
//! and the same for the whole-image tests (`Run::forward`, `Run::nic`).
//!
//! - A forward spec is `[tcp:|udp:]HOSTPORT:GUESTPORT` (TCP by default), each port 1 to 65535;
//!   QEMU listens on 127.0.0.1:HOSTPORT and forwards to the guest's GUESTPORT
//!   (`hostfwd=tcp:127.0.0.1:H-GUEST:G`). A host port may be forwarded once per protocol.
//! - The NIC is virtio-net with the fixed MAC [`GUEST_MAC`] unless one is given: on `q35`
//!   `virtio-net-pci` with `disable-legacy=on` (a modern-only device, id 0x1041: no I/O BAR for
//!   discovery to assign; virtio-drivers 0.13 drives the modern interface either way) and
//!   `romfile=` (no option ROM: qboot runs none, and QEMU then needs no iPXE file); on `microvm` a
//!   `virtio-net-device` on one of its virtio-mmio transports, made modern (version 2, as
//!   Firecracker's) with `-global virtio-mmio.force-legacy=false` (QEMU 7.2's default is legacy).
//! - User networking is 10.0.2.0/24: the guest is 10.0.2.15 (also its first DHCP lease), the
//!   host is reached at the gateway 10.0.2.2, DNS at 10.0.2.3: the defaults of the profile
//!   settings `net_ip` and `net_gateway`.
//!
//! `run --net tap` gives a TAP device in a network namespace instead (for the benches).

use std::fmt;
use std::net::Ipv4Addr;

use anyhow::{Result, bail};

use crate::profile::{NetIp, Profile};
use crate::qemu::Machine;

/// The guest's MAC address unless another is given (QEMU's own default, locally administered).
pub const GUEST_MAC: &str = "52:54:00:12:34:56";
/// The guest's address on QEMU user networking (its first DHCP lease, the default `net_ip`).
pub const USER_NET_GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// User networking's subnet, 10.0.2.0/24.
pub const USER_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 0, 2, 0), 24);
/// The id of the one `-netdev`.
pub const NETDEV_ID: &str = "n0";

/// A forwarded port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`, as QEMU's `hostfwd` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One forwarded port: 127.0.0.1:`host` on the host to the guest's `guest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// TCP or UDP.
    pub proto: Proto,
    /// The host port (on 127.0.0.1).
    pub host: u16,
    /// The guest port.
    pub guest: u16,
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.proto.name(), self.host, self.guest)
    }
}

const SPEC_HELP: &str = "expected [tcp:|udp:]HOSTPORT:GUESTPORT, ports 1 to 65535 \
                         (e.g. --forward 8080:80, --forward udp:5353:53)";

fn port(spec: &str, which: &str, text: &str) -> Result<u16> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => bail!(
            "--forward {spec}: {which} port `{text}` is not a port from 1 to 65535; {SPEC_HELP}"
        ),
    }
}

impl Forward {
    /// TCP from 127.0.0.1:`host` to the guest's `guest`.
    pub fn tcp(host: u16, guest: u16) -> Forward {
        Forward {
            proto: Proto::Tcp,
            host,
            guest,
        }
    }

    /// UDP from 127.0.0.1:`host` to the guest's `guest`.
    pub fn udp(host: u16, guest: u16) -> Forward {
        Forward {
            proto: Proto::Udp,
            host,
            guest,
        }
    }

    /// Parses `[tcp:|udp:]HOSTPORT:GUESTPORT`; the error quotes the spec and says the form.
    pub fn parse(spec: &str) -> Result<Forward> {
        let (proto, rest, named) = match spec.split_once(':') {
            Some(("tcp", rest)) => (Proto::Tcp, rest, true),
            Some(("udp", rest)) => (Proto::Udp, rest, true),
            _ => (Proto::Tcp, spec, false),
        };
        let Some((host, guest)) = rest.split_once(':') else {
            bail!("--forward {spec}: no guest port; {SPEC_HELP}");
        };
        if guest.contains(':') {
            if !named && host.parse::<u16>().is_err() {
                bail!("--forward {spec}: unknown protocol `{host}` (tcp or udp); {SPEC_HELP}");
            }
            bail!("--forward {spec}: too many `:`; {SPEC_HELP}");
        }
        Ok(Forward {
            proto,
            host: port(spec, "host", host)?,
            guest: port(spec, "guest", guest)?,
        })
    }

    /// QEMU's `hostfwd=` value for a guest at `guest_ip` (`None`: user networking's default,
    /// 10.0.2.15).
    pub fn hostfwd(&self, guest_ip: Option<Ipv4Addr>) -> String {
        format!(
            "hostfwd={}:127.0.0.1:{}-{}:{}",
            self.proto.name(),
            self.host,
            guest_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            self.guest
        )
    }
}

/// Parses every `--forward` spec; a host port given twice for one protocol is an error.
pub fn parse_forwards(specs: &[String]) -> Result<Vec<Forward>> {
    let forwards = specs
        .iter()
        .map(|s| Forward::parse(s))
        .collect::<Result<Vec<_>>>()?;
    check_distinct(&forwards)?;
    Ok(forwards)
}

/// Refuses a host port forwarded twice for the same protocol.
pub fn check_distinct(forwards: &[Forward]) -> Result<()> {
    for (i, f) in forwards.iter().enumerate() {
        if let Some(first) = forwards[..i]
            .iter()
            .find(|o| o.proto == f.proto && o.host == f.host)
        {
            bail!(
                "--forward {f}: host port {} ({}) is already forwarded (to guest port {}); \
                 each host port takes one forward per protocol",
                f.host,
                f.proto.name(),
                first.guest
            );
        }
    }
    Ok(())
}

/// Checks a MAC address `aa:bb:cc:dd:ee:ff` (a unicast one).
pub fn parse_mac(text: &str) -> Result<String> {
    let parts: Vec<&str> = text.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        bail!("--mac {text}: expected six hex bytes like {GUEST_MAC}");
    }
    let first = u8::from_str_radix(parts[0], 16).unwrap_or(0);
    if first & 1 != 0 {
        bail!("--mac {text}: a multicast address (the first byte is odd); use e.g. {GUEST_MAC}");
    }
    Ok(text.to_ascii_lowercase())
}

/// A virtio-net NIC on QEMU user networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Ports forwarded from 127.0.0.1.
    pub forwards: Vec<Forward>,
    /// The guest's MAC address.
    pub mac: String,
    /// Where forwards go: the guest's static address (`None`: 10.0.2.15, user networking's
    /// default and first DHCP lease).
    pub guest_ip: Option<Ipv4Addr>,
}

impl Default for Nic {
    fn default() -> Nic {
        Nic {
            forwards: Vec::new(),
            mac: GUEST_MAC.into(),
            guest_ip: None,
        }
    }
}

impl Nic {
    /// A NIC with these forwards.
    pub fn with_forwards(forwards: Vec<Forward>) -> Nic {
        Nic {
            forwards,
            ..Nic::default()
        }
    }

    /// QEMU's arguments on `machine` (the one actually used: see
    /// [`crate::qemu::QemuConfig::effective_machine`]).
    pub fn qemu_args(&self, machine: Machine) -> Vec<String> {
        let mut netdev = format!("user,id={NETDEV_ID}");
        for f in &self.forwards {
            netdev.push(',');
            netdev.push_str(&f.hostfwd(self.guest_ip));
        }
        let mut a = vec!["-netdev".to_string(), netdev];
        a.extend(device_args(machine, NETDEV_ID, &self.mac));
        a
    }
}

/// The virtio-net device on `machine` for netdev `netdev` (shared with `--net tap`): see the
/// module docs for the choices.
pub fn device_args(machine: Machine, netdev: &str, mac: &str) -> Vec<String> {
    match machine {
        Machine::Q35 => vec![
            "-device".into(),
            format!("virtio-net-pci,netdev={netdev},mac={mac},disable-legacy=on,romfile="),
        ],
        Machine::Microvm => vec![
            "-global".into(),
            "virtio-mmio.force-legacy=false".into(),
            "-device".into(),
            format!("virtio-net-device,netdev={netdev},mac={mac}"),
        ],
    }
}

/// Whether `profile` has a NIC driver (`net_device` other than `none`).
pub fn has_driver(profile: &Profile) -> bool {
    profile.slot("net_device").is_some_and(|d| d != "none")
}

/// Refuses a NIC asked for (`--forward`, `--nic`) when the profile's image has no driver.
pub fn check_driver(profile: &Profile, asked: &str) -> Result<()> {
    if !has_driver(profile) {
        bail!(
            "{asked} gives the guest a NIC, but profile `{}` has no NIC driver (net_device = \
             \"{}\"): use a net profile (--profile net) or --set net_device=virtio",
            profile.name,
            profile.slot("net_device").unwrap_or("none")
        );
    }
    Ok(())
}

/// The guest's static address: the kernel options' last `ip=` (which wins at boot), else the
/// profile's `net_ip`; `None` with DHCP or when `ip=` does not parse (the kernel says why).
pub fn guest_ip(profile: &Profile, kargs: &str) -> Option<Ipv4Addr> {
    let from_kargs = kargs
        .split_ascii_whitespace()
        .filter_map(|t| t.strip_prefix("ip="))
        .next_back();
    let text = from_kargs.unwrap_or(&profile.settings.net_ip);
    match crate::profile::parse_net_ip(text) {
        Ok(NetIp::Static { addr, .. }) => Some(addr),
        _ => None,
    }
}

/// A note when `ip` is outside user networking's 10.0.2.0/24 (forwards cannot reach it).
pub fn user_net_note(ip: Option<Ipv4Addr>) -> Option<String> {
    let ip = ip?;
    let user = NetIp::Static {
        addr: USER_NET_GUEST,
        prefix: USER_NET.1,
    };
    (!user.contains(ip)).then(|| {
        format!(
            "the guest's address {ip} is outside QEMU user networking's {}/{}: forwarded \
             ports cannot reach it (use net_ip = \"10.0.2.15/24\" or \"dhcp\")",
            USER_NET.0, USER_NET.1
        )
    })
}

/// One line for the user: the NIC, where the guest is, and each forward.
pub fn describe(nic: &Nic) -> String {
    let guest = nic.guest_ip.unwrap_or(USER_NET_GUEST);
    let mut line = format!(
        "NIC virtio-net {} on QEMU user networking (guest {guest}, gateway 10.0.2.2)",
        nic.mac
    );
    if nic.forwards.is_empty() {
        line.push_str("; no ports forwarded (--forward HOSTPORT:GUESTPORT)");
    }
    for f in &nic.forwards {
        line.push_str(&format!(
            "; 127.0.0.1:{} -> guest port {} ({})",
            f.host,
            f.guest,
            f.proto.name()
        ));
    }
    line
}

/// Fails, naming the forward, when a host port cannot be bound on 127.0.0.1 now (in use):
/// before QEMU starts, whose own message would be less clear. (Another process may still take
/// it before QEMU binds it; QEMU then fails, saying so.)
pub fn check_host_ports(forwards: &[Forward]) -> Result<()> {
    for f in forwards {
        let bound = match f.proto {
            Proto::Tcp => std::net::TcpListener::bind(("127.0.0.1", f.host)).map(drop),
            Proto::Udp => std::net::UdpSocket::bind(("127.0.0.1", f.host)).map(drop),
        };
        if let Err(e) = bound {
            bail!(
                "--forward {f}: cannot listen on 127.0.0.1:{} ({}): {e}; pick another host port",
                f.host,
                f.proto.name()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_specs() {
        let f = |s: &str| Forward::parse(s).expect(s);
        assert_eq!(f("8080:80"), Forward::tcp(8080, 80));
        assert_eq!(f("tcp:8080:80"), Forward::tcp(8080, 80));
        assert_eq!(f("udp:5353:53"), Forward::udp(5353, 53));
        assert_eq!(f("65535:1"), Forward::tcp(65535, 1));
        assert_eq!(f("udp:5353:53").to_string(), "udp:5353:53");
        let cases = [
            ("80", "no guest port"),
            ("tcp:80", "no guest port"),
            ("70000:80", "host port `70000` is not a port"),
            ("8080:0", "guest port `0` is not a port"),
            ("0:80", "host port `0`"),
            ("8080:80:1", "too many `:`"),
            ("sctp:1:2", "unknown protocol `sctp`"),
            ("TCP:1:2", "unknown protocol `TCP`"),
            ("tcp:udp:1:2", "too many `:`"),
            (":80", "host port ``"),
            ("+80:80", "host port `+80`"),
            (" 80:80", "host port ` 80`"),
            ("", "no guest port"),
        ];
        for (spec, words) in cases {
            let e = Forward::parse(spec).expect_err(spec).to_string();
            assert!(e.starts_with(&format!("--forward {spec}: ")), "{e}");
            assert!(e.contains(words), "{spec}: {e}");
            assert!(e.contains("HOSTPORT:GUESTPORT") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_host_port_is_forwarded_once_per_protocol() {
        let specs = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = parse_forwards(&specs(&["8080:80", "udp:8080:80", "8081:80"])).expect("ok");
        assert_eq!(ok.len(), 3);
        let e = parse_forwards(&specs(&["8080:80", "tcp:8080:81"]))
            .expect_err("twice")
            .to_string();
        assert!(
            e.contains("--forward tcp:8080:81: host port 8080 (tcp) is already forwarded"),
            "{e}"
        );
        assert!(parse_forwards(&specs(&["8080:80", "8080"])).is_err());
    }

    #[test]
    fn the_nic_on_each_machine() {
        let nic = Nic::with_forwards(vec![Forward::tcp(8080, 80), Forward::udp(7777, 7)]);
        assert_eq!(
            nic.qemu_args(Machine::Q35).join(" "),
            "-netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:7777-:7 \
             -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,disable-legacy=on,romfile="
        );
        assert_eq!(
            nic.qemu_args(Machine::Microvm).join(" "),
            "-netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:7777-:7 \
             -global virtio-mmio.force-legacy=false \
             -device virtio-net-device,netdev=n0,mac=52:54:00:12:34:56"
        );
        let nic = Nic {
            guest_ip: Some(Ipv4Addr::new(10, 0, 2, 20)),
            mac: "52:54:00:00:00:01".into(),
            ..nic
        };
        let args = nic.qemu_args(Machine::Q35).join(" ");
        assert!(
            args.contains("hostfwd=tcp:127.0.0.1:8080-10.0.2.20:80,"),
            "{args}"
        );
        assert!(args.contains(",mac=52:54:00:00:00:01,"), "{args}");
        assert_eq!(
            Nic::default().qemu_args(Machine::Microvm)[1],
            "user,id=n0",
            "a NIC without forwards"
        );
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("52:54:00:AB:cd:01").expect("ok"),
            "52:54:00:ab:cd:01"
        );
        for bad in [
            "52:54:00:ab:cd",
            "52-54-00-ab-cd-01",
            "52:54:00:ab:cd:0g",
            "01:00:5e:00:00:01",
            "",
        ] {
            let e = parse_mac(bad).expect_err(bad).to_string();
            assert!(e.starts_with(&format!("--mac {bad}: ")), "{e}");
        }
    }

    #[test]
    fn a_host_port_in_use_is_refused_before_qemu_starts() {
        let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("binds");
        let port = taken.local_addr().expect("addr").port();
        let e = check_host_ports(&[Forward::tcp(port, 80)])
            .expect_err("in use")
            .to_string();
        assert!(
            e.starts_with(&format!(
                "--forward tcp:{port}:80: cannot listen on 127.0.0.1:{port}"
            )),
            "{e}"
        );
        // The same port for UDP is another socket.
        let udp_free = std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        assert_eq!(
            check_host_ports(&[Forward::udp(port, 80)]).is_ok(),
            udp_free
        );
        drop(taken);
        check_host_ports(&[Forward::tcp(port, 80)]).expect("free again");
    }

    #[test]
    fn user_networking_reaches_only_its_subnet() {
        assert_eq!(user_net_note(None), None);
        assert_eq!(user_net_note(Some(Ipv4Addr::new(10, 0, 2, 99))), None);
        let note = user_net_note(Some(Ipv4Addr::new(192, 168, 1, 2))).expect("outside");
        assert!(
            note.contains("outside QEMU user networking's 10.0.2.0/24"),
            "{note}"
        );
    }
}
