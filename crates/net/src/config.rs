//! What the stack is told: the IPv4 configuration (static or DHCPv4) from the profile's settings
//! and the kernel command line, and the sizes of its sockets.
//!
//! The settings `net_ip` ("10.0.2.15/24" or "dhcp") and `net_gateway` ("10.0.2.2", "" for
//! none) give the profile's configuration; the kernel command line's `ip=ADDR/PREFIX`,
//! `ip=dhcp` and `gw=ADDR` override them ([`IpConfig::apply_option`]). Every value is checked,
//! and a bad one is an error that names the option and what is wrong with it
//! (`ip=10.0.2.300/24: 300 is not an octet (0 to 255)`), never a silent default.
use alloc::string::String;
use core::fmt;
use smoltcp::wire::Ipv4Address;

/// How the interface gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpConfig {
    /// A fixed address, prefix and optional default gateway.
    Static {
        /// The interface's address.
        address: Ipv4Address,
        /// The prefix length of its subnet (1 to 32).
        prefix: u8,
        /// The default gateway (on the subnet), if any.
        gateway: Option<Ipv4Address>,
    },
    /// DHCPv4: the lease gives the address and the router (a `gw=` is ignored).
    Dhcp,
}

/// A setting or command-line option that does not parse, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The option's name as written (`ip`, `gw`, `net_ip`, `net_gateway`).
    pub option: &'static str,
    /// Its value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}: {}", self.option, self.value, self.reason)
    }
}

impl core::error::Error for ConfigError {}

// `reason` a `String` (not `impl ToString`): one copy of this function, and the reasons built
// with `format!` move in rather than being copied.
fn error(option: &'static str, value: &str, reason: String) -> ConfigError {
    ConfigError {
        option,
        value: value.into(),
        reason,
    }
}

/// Parses a dotted-quad IPv4 address strictly: four decimal octets of 1 to 3 digits without
/// leading zeros, nothing else.
pub fn parse_ipv4(s: &str) -> Result<Ipv4Address, String> {
    if s.is_empty() {
        return Err("an address is missing".into());
    }
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for (i, octet) in octets.iter_mut().enumerate() {
        let Some(part) = parts.next() else {
            return Err(alloc::format!(
                "{s} has {i} parts, an IPv4 address has 4 (a.b.c.d)"
            ));
        };
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(alloc::format!("`{part}` is not a decimal octet"));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(alloc::format!(
                "{part} has a leading zero (octal or decimal? write it without)"
            ));
        }
        if part.len() > 3 {
            return Err(alloc::format!("{part} is not an octet (0 to 255)"));
        }
        let value: u16 = part.bytes().fold(0, |v, b| v * 10 + u16::from(b - b'0'));
        *octet =
            u8::try_from(value).map_err(|_| alloc::format!("{part} is not an octet (0 to 255)"))?;
    }
    if parts.next().is_some() {
        return Err(alloc::format!(
            "{s} has more than 4 parts, an IPv4 address has 4 (a.b.c.d)"
        ));
    }
    Ok(Ipv4Address::from(octets))
}

/// The network address's mask for `prefix` (0 to 32).
fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// Whether `a` is on the subnet `address/prefix`.
pub fn same_subnet(address: Ipv4Address, prefix: u8, a: Ipv4Address) -> bool {
    let m = mask(prefix);
    u32::from(address) & m == u32::from(a) & m
}

/// Checks that `a` can be a host's unicast address.
fn check_host(a: Ipv4Address) -> Result<(), String> {
    if a.is_unspecified() {
        Err("0.0.0.0 is not a host address".into())
    } else if a.is_broadcast() {
        Err("255.255.255.255 is the broadcast address".into())
    } else if a.is_multicast() {
        Err(alloc::format!("{a} is a multicast address"))
    } else if a.octets()[0] == 0 || a.octets()[0] >= 240 || a.is_loopback() {
        Err(alloc::format!("{a} is not a usable unicast address"))
    } else {
        Ok(())
    }
}

/// Checks that `address/prefix` can be this host's: a unicast address, a prefix of 1 to 32,
/// and (below /31) neither the network nor the broadcast address of its subnet.
pub fn check_address(address: Ipv4Address, prefix: u8) -> Result<(), String> {
    if !(1..=32).contains(&prefix) {
        return Err(alloc::format!("{prefix} is not a prefix length (1 to 32)"));
    }
    check_host(address)?;
    if prefix <= 30 {
        let host = u32::from(address) & !mask(prefix);
        if host == 0 {
            return Err(alloc::format!(
                "{address} is the network address of its subnet"
            ));
        }
        if host == !mask(prefix) {
            return Err(alloc::format!(
                "{address} is the broadcast address of its subnet"
            ));
        }
    }
    Ok(())
}

/// Checks that `gateway` can be the router of the host `address/prefix`: a unicast address
/// on its subnet, not the host itself nor the subnet's broadcast address.
pub fn check_gateway(address: Ipv4Address, prefix: u8, gateway: Ipv4Address) -> Result<(), String> {
    check_host(gateway)?;
    if gateway == address {
        return Err("the gateway is this host's address".into());
    }
    if !same_subnet(address, prefix, gateway) {
        return Err(alloc::format!(
            "{gateway} is not on the subnet {address}/{prefix}"
        ));
    }
    if prefix <= 30 && u32::from(gateway) & !mask(prefix) == !mask(prefix) {
        return Err(alloc::format!(
            "{gateway} is the broadcast address of the subnet {address}/{prefix}"
        ));
    }
    Ok(())
}

impl IpConfig {
    /// The profile's configuration: `ip` as the `net_ip` setting ("ADDR/PREFIX" or "dhcp"),
    /// `gateway` as `net_gateway` (an address, or "" for none).
    pub fn from_settings(ip: &str, gateway: &str) -> Result<Self, ConfigError> {
        let config = Self::parse_ip("net_ip", ip)?;
        config.with_gateway("net_gateway", gateway)
    }

    /// Applies one kernel command line token if it is a network option (`ip=...`, `gw=...`),
    /// returning whether it was one. The command line overrides the settings.
    pub fn apply_option(&mut self, token: &str) -> Result<bool, ConfigError> {
        if let Some(value) = token.strip_prefix("ip=") {
            self.set_ip(value)?;
            Ok(true)
        } else if let Some(value) = token.strip_prefix("gw=") {
            *self = self.with_gateway("gw", value)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `ip=value`: a gateway kept from before stays if it is on the new subnet.
    fn set_ip(&mut self, value: &str) -> Result<(), ConfigError> {
        let gateway = match *self {
            IpConfig::Static { gateway, .. } => gateway,
            IpConfig::Dhcp => None,
        };
        *self = match Self::parse_ip("ip", value)? {
            IpConfig::Static {
                address, prefix, ..
            } => IpConfig::Static {
                address,
                prefix,
                gateway: gateway.filter(|&g| same_subnet(address, prefix, g)),
            },
            IpConfig::Dhcp => IpConfig::Dhcp,
        };
        Ok(())
    }

    /// The profile's configuration overridden by the values of the command line's `ip=` and
    /// `gw=` (each the last of its kind, as the kernel finds them), `ip=` first: the same as
    /// [`IpConfig::with_options`] of `ip=IP gw=GW`, without building those tokens.
    pub fn with_values(mut self, ip: Option<&str>, gw: Option<&str>) -> Result<Self, ConfigError> {
        if let Some(value) = ip {
            self.set_ip(value)?;
        }
        match gw {
            Some(value) => self.with_gateway("gw", value),
            None => Ok(self),
        }
    }

    /// The profile's configuration overridden by every network option of `tokens` (the
    /// kernel command line's words, in order; the last one of a kind wins).
    pub fn with_options<'a>(
        mut self,
        tokens: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConfigError> {
        // `ip=` first, then `gw=`, so that `gw=... ip=...` checks the gateway against the
        // final subnet whatever the order.
        let mut gw = None;
        for token in tokens {
            if token.starts_with("gw=") {
                gw = Some(token);
            } else {
                self.apply_option(token)?;
            }
        }
        if let Some(gw) = gw {
            self.apply_option(gw)?;
        }
        Ok(self)
    }

    fn parse_ip(option: &'static str, value: &str) -> Result<Self, ConfigError> {
        if value == "dhcp" {
            return if cfg!(feature = "dhcp") {
                Ok(IpConfig::Dhcp)
            } else {
                Err(error(
                    option,
                    value,
                    "this image has no DHCP client (setting net_dhcp = false)".into(),
                ))
            };
        }
        let Some((addr, prefix)) = value.split_once('/') else {
            return Err(error(
                option,
                value,
                "expected ADDR/PREFIX (10.0.2.15/24) or dhcp".into(),
            ));
        };
        let address = parse_ipv4(addr).map_err(|e| error(option, value, e))?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error(
                option,
                value,
                alloc::format!("`{prefix}` is not a prefix length (1 to 32)"),
            ));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| error(option, value, "not a prefix length".into()))?;
        if !(1..=32).contains(&prefix) {
            return Err(error(
                option,
                value,
                alloc::format!("{prefix} is not a prefix length (1 to 32)"),
            ));
        }
        check_address(address, prefix).map_err(|e| error(option, value, e))?;
        Ok(IpConfig::Static {
            address,
            prefix,
            gateway: None,
        })
    }

    fn with_gateway(self, option: &'static str, value: &str) -> Result<Self, ConfigError> {
        let gateway = if value.is_empty() || value == "none" {
            None
        } else {
            let g = parse_ipv4(value).map_err(|e| error(option, value, e))?;
            check_host(g).map_err(|e| error(option, value, e))?;
            Some(g)
        };
        match self {
            IpConfig::Dhcp => Ok(IpConfig::Dhcp),
            IpConfig::Static {
                address, prefix, ..
            } => {
                if let Some(g) = gateway {
                    check_gateway(address, prefix, g).map_err(|e| error(option, value, e))?;
                }
                Ok(IpConfig::Static {
                    address,
                    prefix,
                    gateway,
                })
            }
        }
    }
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpConfig::Dhcp => f.write_str("dhcp"),
            IpConfig::Static {
                address,
                prefix,
                gateway: Some(g),
            } => write!(f, "{address}/{prefix} gw {g}"),
            IpConfig::Static {
                address,
                prefix,
                gateway: None,
            } => write!(f, "{address}/{prefix}"),
        }
    }
}

/// Sizes of the stack's sockets (the settings `net_sockets`, `net_tcp_buffer`, `net_udp_buffer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sockets in all: TCP (listening pools included) and UDP (the DHCP client's is extra).
    pub sockets: usize,
    /// Each TCP socket's receive buffer and transmit buffer, in bytes.
    pub tcp_buffer: usize,
    /// Each UDP socket's receive buffer and transmit buffer (payload bytes).
    pub udp_buffer: usize,
    /// Datagrams a UDP socket queues each way.
    pub udp_packets: usize,
    /// How long a closed stream may take to finish closing (FIN-WAIT, LAST-ACK) before it is
    /// aborted, in ns.
    pub linger_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sockets: 64,
            tcp_buffer: 64 * 1024,
            udp_buffer: 16 * 1024,
            udp_packets: 32,
            linger_ns: 30_000_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use platform::fuzz::Rng;

    fn ip(a: [u8; 4]) -> Ipv4Address {
        Ipv4Address::from(a)
    }

    #[test]
    fn the_defaults_parse() {
        let c = IpConfig::from_settings("10.0.2.15/24", "10.0.2.2").expect("valid");
        assert_eq!(
            c,
            IpConfig::Static {
                address: ip([10, 0, 2, 15]),
                prefix: 24,
                gateway: Some(ip([10, 0, 2, 2]))
            }
        );
        assert_eq!(c.to_string(), "10.0.2.15/24 gw 10.0.2.2");
        assert_eq!(
            IpConfig::from_settings("dhcp", "10.0.2.2").map_err(|e| e.to_string()),
            if cfg!(feature = "dhcp") {
                Ok(IpConfig::Dhcp)
            } else {
                Err("net_ip=dhcp: this image has no DHCP client (setting net_dhcp = false)".into())
            }
        );
        let none = IpConfig::from_settings("192.168.1.7/16", "").expect("valid");
        assert_eq!(none.to_string(), "192.168.1.7/16");
    }

    #[test]
    fn the_command_line_overrides_the_settings() {
        let c = IpConfig::from_settings("10.0.2.15/24", "10.0.2.2").expect("valid");
        let c = c
            .with_options(["log=debug", "gw=192.168.0.1", "ip=192.168.0.9/24", "x"])
            .expect("valid");
        assert_eq!(c.to_string(), "192.168.0.9/24 gw 192.168.0.1");
        let d = c.with_options(["ip=dhcp"]).map_err(|e| e.to_string());
        if cfg!(feature = "dhcp") {
            assert_eq!(d, Ok(IpConfig::Dhcp));
        } else {
            // Without the client (`cargo test -p net --no-default-features`).
            assert_eq!(
                d,
                Err("ip=dhcp: this image has no DHCP client (setting net_dhcp = false)".into())
            );
        }
        // A new subnet drops a gateway that is not on it.
        let e = IpConfig::from_settings("10.0.2.15/24", "10.0.2.2")
            .and_then(|c| c.with_options(["ip=172.16.0.2/12"]))
            .expect("valid");
        assert_eq!(e.to_string(), "172.16.0.2/12");
    }

    #[test]
    fn values_apply_as_their_options_do() {
        let c = IpConfig::from_settings("10.0.2.15/24", "10.0.2.2").expect("valid");
        for (ip, gw) in [
            (None, None),
            (Some("192.168.0.9/24"), Some("192.168.0.1")),
            (Some("10.0.2.20/24"), None),
            (Some("172.16.0.2/12"), None),
            (None, Some("10.0.2.3")),
            (None, Some("")),
            (None, Some("192.168.0.1")),
            (Some("10.0.2.300/24"), Some("10.0.2.2")),
            (Some("10.0.2.20/24"), Some("10.0.2.20")),
        ] {
            let ip_token = ip.map(|v| alloc::format!("ip={v}"));
            let gw_token = gw.map(|v| alloc::format!("gw={v}"));
            let tokens = [ip_token, gw_token];
            let tokens = tokens.iter().flatten().map(|t| t.as_str());
            assert_eq!(
                c.with_values(ip, gw),
                c.with_options(tokens),
                "ip {ip:?} gw {gw:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_option_and_the_fault() {
        let e = |ip: &str, gw: &str| {
            IpConfig::from_settings("10.0.2.15/24", "")
                .and_then(|c| c.with_options([ip, gw]))
                .expect_err("invalid")
                .to_string()
        };
        assert_eq!(
            e("ip=10.0.2.300/24", ""),
            "ip=10.0.2.300/24: 300 is not an octet (0 to 255)"
        );
        assert_eq!(
            e("ip=10.0.2/24", ""),
            "ip=10.0.2/24: 10.0.2 has 3 parts, an IPv4 address has 4 (a.b.c.d)"
        );
        assert_eq!(
            e("ip=10.0.2.15", ""),
            "ip=10.0.2.15: expected ADDR/PREFIX (10.0.2.15/24) or dhcp"
        );
        assert_eq!(
            e("ip=10.0.2.15/33", ""),
            "ip=10.0.2.15/33: 33 is not a prefix length (1 to 32)"
        );
        assert_eq!(
            e("ip=10.0.2.0/24", ""),
            "ip=10.0.2.0/24: 10.0.2.0 is the network address of its subnet"
        );
        assert_eq!(
            e("ip=10.0.2.255/24", ""),
            "ip=10.0.2.255/24: 10.0.2.255 is the broadcast address of its subnet"
        );
        assert_eq!(
            e("ip=224.0.0.1/24", ""),
            "ip=224.0.0.1/24: 224.0.0.1 is a multicast address"
        );
        assert_eq!(
            e("ip=10.0.2.15/24", "gw=10.0.3.2"),
            "gw=10.0.3.2: 10.0.3.2 is not on the subnet 10.0.2.15/24"
        );
        assert_eq!(
            e("ip=10.0.2.15/24", "gw=10.0.2.255"),
            "gw=10.0.2.255: 10.0.2.255 is the broadcast address of the subnet 10.0.2.15/24"
        );
        assert_eq!(
            e("ip=10.0.2.15/24", "gw=10.0.2.x"),
            "gw=10.0.2.x: `x` is not a decimal octet"
        );
        let s = IpConfig::from_settings("10.0.2.15/24", "10.0.2.15").expect_err("gw = self");
        assert_eq!(
            s.to_string(),
            "net_gateway=10.0.2.15: the gateway is this host's address"
        );
        let s = IpConfig::from_settings("", "").expect_err("empty");
        assert_eq!(
            s.to_string(),
            "net_ip=: expected ADDR/PREFIX (10.0.2.15/24) or dhcp"
        );
    }

    /// Seeded random option strings, mostly nearly valid: the parser never panics, accepts
    /// only what round-trips, and agrees with core's own parser on addresses.
    #[test]
    fn random_options_never_panic_and_round_trip() {
        let mut rng = Rng::new(16);
        let octets = [
            "10", "0", "2", "15", "255", "256", "300", "007", "", "1", "99", "x", "-1", " 1",
            "192", "168", "1000",
        ];
        let prefixes = [
            "24", "8", "16", "30", "31", "32", "33", "0", "", "x", "024", "99",
        ];
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut s = alloc::format!(
                "{}.{}.{}.{}/{}",
                rng.pick(&octets),
                rng.pick(&octets),
                rng.pick(&octets),
                rng.pick(&octets),
                rng.pick(&prefixes)
            );
            if rng.chance(30) && !s.is_empty() {
                let at = rng.below(s.len() as u64) as usize;
                match rng.below(3) {
                    0 => {
                        s.remove(at);
                    }
                    1 => s.insert(at, rng.pick(&['.', '/', '0', '9', ' ', 'x'])),
                    _ => s.truncate(at),
                }
            }
            if rng.chance(2) {
                s = "dhcp".into();
            }
            match IpConfig::from_settings("10.0.2.15/24", "")
                .and_then(|c| c.with_options([alloc::format!("ip={s}").as_str()]))
            {
                Ok(IpConfig::Static {
                    address, prefix, ..
                }) => {
                    accepted += 1;
                    let (a, p) = s.split_once('/').expect("accepted a slash");
                    assert_eq!(a.parse::<Ipv4Address>().ok(), Some(address), "{s}");
                    assert_eq!(p.parse::<u8>().ok(), Some(prefix), "{s}");
                }
                Ok(IpConfig::Dhcp) => assert_eq!(s, "dhcp"),
                Err(e) => {
                    assert!(
                        e.to_string().starts_with(&alloc::format!("ip={s}: ")),
                        "{e}"
                    );
                    // core's parser accepts nothing that we call malformed.
                    if let Some((a, _)) = s.split_once('/')
                        && parse_ipv4(a).is_err()
                    {
                        assert!(a.parse::<Ipv4Address>().is_err(), "{a}");
                    }
                }
            }
            let gw: Vec<&str> = s.split('/').collect();
            let _ = IpConfig::from_settings("10.0.2.15/8", gw[0]);
        }
        assert!(accepted > 50, "too few valid cases: {accepted}");
    }
}
