//! Profiles (`profiles/NAME.toml`): parsing, `--set` overrides and validation.
//!
//! A profile names the platform, one implementation per slot, numeric settings and budgets
//! (see docs/CONTRACT.md); it may leave any of them out, which then takes its default. The
//! slots, their values, defaults and the rules between them are not listed here: they come from
//! `crates/stardust/Cargo.toml` (features named `<slot>-<value>` and
//! `[package.metadata.stardust]`), read into a [`Catalog`] by crate `slots`, which the kernel's
//! `build.rs` reads too. The settings and budgets are the tables [`SETTINGS`] and [`BUDGETS`];
//! every error names the bad key or value and lists the valid choices.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Deserialize;
use toml::Value;

use anyhow::{Error, Result, bail};

pub use slots::{Catalog, PLATFORM, parse_duration_ns};

/// Top-level scalar keys.
pub const TOP_KEYS: &[&str] = &["description", "platform"];
/// How a setting or budget value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A log level (the `log` crate's names).
    LogLevel,
    /// A byte count (`65536`, `"64K"`).
    Size,
    /// A duration (`"10ms"`), in nanoseconds.
    Duration,
    /// One of the given strings.
    Choice(&'static [&'static str], &'static str),
    /// A budget in bytes: a size above 0.
    Budget,
    /// A positive ratio (`1.10`).
    Ratio,
    /// An IPv4 address with its prefix length (`"10.0.2.15/24"`), or `"dhcp"`.
    NetIp,
    /// An IPv4 address, or `""` for none.
    Gateway,
    /// A count (`64`).
    Count,
    /// An app's name (a directory under `apps/`; the workspace checks that it exists).
    App,
    /// `true` or `false` (`--set KEY=true`).
    Flag,
}
/// The keys of `[settings]`; their defaults are in the facade's `[package.metadata.stardust]`.
pub const SETTINGS: &[(&str, Kind)] = &[
    ("log_level", Kind::LogLevel),
    ("heap_size", Kind::Size),
    ("stack_size", Kind::Size),
    ("memory", Kind::Size),
    ("time_slice", Kind::Duration),
    ("xen_guest", Kind::Choice(XEN_GUESTS, "Xen guest mode")),
    ("net_ip", Kind::NetIp),
    ("net_gateway", Kind::Gateway),
    ("net_tcp_buffer", Kind::Size),
    ("net_udp_buffer", Kind::Size),
    ("net_sockets", Kind::Count),
    ("log_max", Kind::LogLevel),
    ("kv_max_keys", Kind::Count),
    ("kv_max_frame", Kind::Size),
    ("net_dhcp", Kind::Flag),
    ("cpus", Kind::Count),
];
/// The keys of `[budgets]` (no default: a budget left out is not checked).
pub const BUDGETS: &[(&str, Kind)] = &[
    ("image_bytes", Kind::Budget),
    ("min_memory", Kind::Budget),
    ("boot_ratio", Kind::Ratio),
    ("image_app", Kind::App),
];
/// The app whose image `image_bytes` bounds when a profile names none (`[budgets] image_app`).
pub const DEFAULT_IMAGE_APP: &str = "hello";
/// Values of `xen_guest` (platform `xen` only): the Xen guest mode, PV or PVH.
pub const XEN_GUESTS: &[&str] = &["pv", "pvh"];
/// The facade feature `net_dhcp = true` adds with a NIC driver (the DHCPv4 client).
pub const NET_DHCP_FEATURE: &str = "stardust/net_dhcp";
/// The facade feature `xen_guest = "pvh"` adds (no dash: the slot catalog ignores it).
pub const XEN_GUEST_PVH_FEATURE: &str = "stardust/xen_guest_pvh";

const MIN_STACK_SIZE: u64 = 16 * 1024;
const MIN_MEMORY: u64 = 1024 * 1024;
const MIN_TIME_SLICE_NS: u64 = 100_000;
const MAX_TIME_SLICE_NS: u64 = 1_000_000_000;
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// The smallest socket buffer: room for one full-sized segment or datagram of a 1500-byte MTU.
pub const MIN_NET_BUFFER: u64 = 2048;
/// The largest socket buffer (TCP's window scaling would allow 1 GiB; no guest needs that).
pub const MAX_NET_BUFFER: u64 = 64 * MIB;
/// The most CPUs `cpus` may ask for: `arch_x86_64::percpu::MAX_CPUS`, the kernel's per-CPU
/// blocks (xtask does not depend on the bare-metal crate; keep the two equal).
pub const MAX_CPUS: u64 = 8;
/// The most TCP sockets (`net_sockets`).
pub const MAX_NET_SOCKETS: u64 = 16384;
/// The most keys `kv_max_keys` may allow (the key-value server's index).
pub const MAX_KV_KEYS: u64 = 1 << 32;
/// The smallest `kv_max_frame`: a request of a few short arguments.
pub const MIN_KV_FRAME: u64 = 512;
/// The largest `kv_max_frame` (Redis's own bulk bound, `proto-max-bulk-len`).
pub const MAX_KV_FRAME: u64 = 512 * MIB;

/// Where the image is loaded (the linker script of `crates/arch-x86_64/build.rs`).
pub const IMAGE_BASE: u64 = MIB;
/// The highest end an image may have: the PVH boot page tables identity-map the first GiB, the
/// boot code and its stack must lie there, and so must the frames the kernel takes for its own
/// page tables (from the free memory after the image; 1 MiB maps hundreds of GiB).
pub const MAX_IMAGE_END: u64 = (1 << 30) - MIB;
/// The largest `stack_size`: the boot stack alone, from the load address to [`MAX_IMAGE_END`]
/// (the rest of the image makes the real limit a little lower: checked after the build).
pub const MAX_STACK_SIZE: u64 = MAX_IMAGE_END - IMAGE_BASE;

/// A `memory` that boots an image ending at `end`: the end rounded up to a MiB, plus a MiB for
/// the kernel's page tables and a heap.
pub fn memory_for_image_end(end: u64) -> u64 {
    end.div_ceil(MIB) * MIB + MIB
}

/// `bytes` as the shortest exact size string (`"1023M"`, `"64K"`, `"4097"`).
pub fn size_text(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        b if b.is_multiple_of(1 << 30) => format!("{}G", b >> 30),
        b if b.is_multiple_of(MIB) => format!("{}M", b >> 20),
        b if b.is_multiple_of(1024) => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

/// Which table a key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Top level (`description`, `platform`).
    Top,
    /// `[slots]`.
    Slots,
    /// `[settings]`.
    Settings,
    /// `[budgets]`.
    Budgets,
}

impl Section {
    fn table_name(self) -> Option<&'static str> {
        match self {
            Section::Top => None,
            Section::Slots => Some("slots"),
            Section::Settings => Some("settings"),
            Section::Budgets => Some("budgets"),
        }
    }
}

/// Numeric and string settings (become `STARDUST_*` environment variables, except `memory`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `off | error | warn | info | debug | trace`.
    pub log_level: String,
    /// Heap bytes, 0 = all free RAM.
    pub heap_size: u64,
    /// Boot stack bytes (multiple of 4096, at least 16 KiB).
    pub stack_size: u64,
    /// Guest RAM in bytes (QEMU `-m`), used by `run`, tests and benches.
    pub memory: u64,
    /// The preemptive scheduler's time slice in nanoseconds (`"10ms"`, `"500us"`).
    pub time_slice_ns: u64,
    /// The Xen guest mode (`pv` or `pvh`; only `pv`, the default, on other platforms).
    pub xen_guest: String,
    /// The guest's IPv4 address and prefix (`10.0.2.15/24`) or `dhcp`; the kernel command line's
    /// `ip=` overrides it at boot.
    pub net_ip: String,
    /// The default gateway (`10.0.2.2`), empty for none; `gw=` overrides it at boot. Not used
    /// with `dhcp` (the DHCP server names the router).
    pub net_gateway: String,
    /// Bytes of each TCP socket's receive buffer, and of its transmit buffer.
    pub net_tcp_buffer: u64,
    /// Bytes of each UDP socket's receive buffer, and of its transmit buffer.
    pub net_udp_buffer: u64,
    /// TCP sockets in all, listening pools included.
    pub net_sockets: u64,
    /// The most verbose log level compiled in (`trace`: all); below `trace` it adds the feature
    /// `stardust/log_max_<level>`, which compiles the records above it out of every crate.
    pub log_max: String,
    /// The key-value server's most keys (`kvstore`: over it a write that adds a key fails).
    pub kv_max_keys: u64,
    /// The key-value server's largest request in bytes (`kvstore`: one bulk at most as large;
    /// a bigger request is a protocol error, and the connection is closed).
    pub kv_max_frame: u64,
    /// Whether the image has the DHCPv4 client (`net_ip = "dhcp"`, `ip=dhcp`); with a NIC
    /// driver, `true` adds the feature `stardust/net_dhcp`. Without it the image is ~5 KB
    /// smaller and refuses `ip=dhcp` at boot.
    pub net_dhcp: bool,
    /// The most CPUs the kernel brings up (1 ..= [`MAX_CPUS`]); it uses the CPUs it finds, up
    /// to this many. `run` gives QEMU `-smp N` for more than 1, the Xen lab `vcpus = N`.
    pub cpus: u64,
}

/// Budgets checked by `cargo xtask size` and `cargo xtask bench`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Budgets {
    /// Largest allowed stripped image, in bytes.
    pub image_bytes: Option<u64>,
    /// Smallest `-m` that must still boot, in bytes.
    pub min_memory: Option<u64>,
    /// Largest allowed boot time as a ratio to the empty kernel.
    pub boot_ratio: Option<f64>,
    /// The app whose stripped image `image_bytes` bounds, and that `cargo xtask size` and `bench
    /// size` measure by default (`None`: [`DEFAULT_IMAGE_APP`]). Boot and memory stay with hello,
    /// which exits.
    pub image_app: Option<String>,
}

/// A validated profile, overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// File stem (`default` for `profiles/default.toml`).
    pub name: String,
    /// One-line description.
    pub description: String,
    /// The platform slot's value (`kvm`).
    pub platform: String,
    /// `(slot, value)` for every slot but `platform`, in catalog order.
    pub slots: Vec<(String, String)>,
    /// Settings.
    pub settings: Settings,
    /// Budgets.
    pub budgets: Budgets,
    /// The `--set` overrides applied, as `(flat key, value)` in the order given.
    pub overrides: Vec<(String, String)>,
}

impl Profile {
    /// Parses profile `name` from `text`, applies `overrides` (`KEY=VALUE`) and validates the
    /// result against `catalog`.
    pub fn parse(
        name: &str,
        text: &str,
        overrides: &[String],
        catalog: &Catalog,
    ) -> Result<Profile> {
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|e| Error::msg(format!("profile `{name}` (profiles/{name}.toml): {e}")))?;
        let mut applied = Vec::new();
        for raw in overrides {
            let (key, value) = parse_override(raw)?;
            let (section, key) = resolve_key(&key, catalog)?;
            let target = match section.table_name() {
                None => &mut table,
                Some(t) => {
                    let entry = table
                        .entry(t)
                        .or_insert_with(|| Value::Table(toml::Table::new()));
                    match entry {
                        Value::Table(t) => t,
                        _ => bail!("profile `{name}`: `{t}` must be a table ([{t}])"),
                    }
                }
            };
            target.insert(key.clone(), Value::String(value.clone()));
            applied.retain(|(k, _): &(String, String)| *k != key);
            applied.push((key, value));
        }
        let file = ProfileFile::deserialize(Value::Table(table))
            .map_err(|e| Error::msg(format!("profile `{name}` (profiles/{name}.toml): {e}")))?;
        let mut profile = validate(name, file, catalog, &mut applied)?;
        profile.overrides = applied;
        Ok(profile)
    }

    /// `stardust/<slot>-<value>` for the platform and every slot (platform first), then
    /// `stardust/xen_guest_pvh` for a Xen PVH guest, then `stardust/log_max_<level>` for a
    /// `log_max` other than `trace`, then `stardust/net_dhcp` for `net_dhcp` with a NIC driver.
    pub fn features(&self) -> Vec<String> {
        let mut features: Vec<String> = std::iter::once((PLATFORM, self.platform.as_str()))
            .chain(self.slots.iter().map(|(s, v)| (s.as_str(), v.as_str())))
            .map(|(s, v)| format!("stardust/{s}-{v}"))
            .collect();
        if self.xen_pvh() {
            features.push(XEN_GUEST_PVH_FEATURE.into());
        }
        if self.settings.log_max != "trace" {
            features.push(format!("stardust/log_max_{}", self.settings.log_max));
        }
        if self.settings.net_dhcp && self.slot("net_device").is_some_and(|d| d != "none") {
            features.push(NET_DHCP_FEATURE.into());
        }
        features
    }

    /// The app whose image `image_bytes` bounds (`[budgets] image_app`, default hello).
    pub fn image_app(&self) -> &str {
        self.budgets
            .image_app
            .as_deref()
            .unwrap_or(DEFAULT_IMAGE_APP)
    }

    /// Whether the image is a Xen PVH guest (`platform = "xen"`, `xen_guest = "pvh"`).
    pub fn xen_pvh(&self) -> bool {
        self.platform == "xen" && self.settings.xen_guest == "pvh"
    }

    /// The environment variables that the kernel's `build.rs` reads.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("STARDUST_LOG_LEVEL".into(), self.settings.log_level.clone()),
            (
                "STARDUST_HEAP_SIZE".into(),
                self.settings.heap_size.to_string(),
            ),
            (
                "STARDUST_STACK_SIZE".into(),
                self.settings.stack_size.to_string(),
            ),
            (
                "STARDUST_TIME_SLICE_NS".into(),
                self.settings.time_slice_ns.to_string(),
            ),
            ("STARDUST_NET_IP".into(), self.settings.net_ip.clone()),
            (
                "STARDUST_NET_GATEWAY".into(),
                self.settings.net_gateway.clone(),
            ),
            (
                "STARDUST_NET_TCP_BUFFER".into(),
                self.settings.net_tcp_buffer.to_string(),
            ),
            (
                "STARDUST_NET_UDP_BUFFER".into(),
                self.settings.net_udp_buffer.to_string(),
            ),
            (
                "STARDUST_NET_SOCKETS".into(),
                self.settings.net_sockets.to_string(),
            ),
            (
                "STARDUST_KV_MAX_KEYS".into(),
                self.settings.kv_max_keys.to_string(),
            ),
            (
                "STARDUST_KV_MAX_FRAME".into(),
                self.settings.kv_max_frame.to_string(),
            ),
            ("STARDUST_CPUS".into(), self.settings.cpus.to_string()),
        ]
    }

    /// The value of a slot (`platform` included).
    pub fn slot(&self, slot: &str) -> Option<&str> {
        if slot == PLATFORM {
            return Some(&self.platform);
        }
        self.slots
            .iter()
            .find(|(s, _)| s == slot)
            .map(|(_, v)| v.as_str())
    }

    /// Output directory name: the profile name, plus `+key-value` per override (sanitized).
    pub fn tag(&self) -> String {
        let mut tag = sanitize(&self.name);
        for (key, value) in &self.overrides {
            tag.push('+');
            tag.push_str(&sanitize(key));
            tag.push('-');
            tag.push_str(&sanitize(value));
        }
        tag
    }
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() { "_".into() } else { out }
}

/// Splits `KEY=VALUE` (the value may be empty; spaces around the key are trimmed).
pub fn parse_override(raw: &str) -> Result<(String, String)> {
    let Some((key, value)) = raw.split_once('=') else {
        bail!("--set expects KEY=VALUE (e.g. --set allocator=bump), got `{raw}`");
    };
    let key = key.trim();
    if key.is_empty() {
        bail!("--set expects KEY=VALUE (e.g. --set allocator=bump), got `{raw}` (empty key)");
    }
    Ok((key.to_string(), value.trim().to_string()))
}

/// Resolves a flat (`allocator`) or dotted (`slots.allocator`) key to its section and flat name.
pub fn resolve_key(key: &str, catalog: &Catalog) -> Result<(Section, String)> {
    let in_section = |section: Section, k: &str| -> bool {
        match section {
            Section::Top => TOP_KEYS.contains(&k),
            Section::Slots => k != PLATFORM && catalog.has_slot(k),
            Section::Settings => SETTINGS.iter().any(|(s, _)| *s == k),
            Section::Budgets => BUDGETS.iter().any(|(s, _)| *s == k),
        }
    };
    let all = [
        Section::Top,
        Section::Slots,
        Section::Settings,
        Section::Budgets,
    ];
    let found = match key.split_once('.') {
        Some((table, k)) => {
            let section = all.into_iter().find(|s| s.table_name() == Some(table));
            section
                .filter(|s| in_section(*s, k))
                .map(|s| (s, k.to_string()))
        }
        None => all
            .into_iter()
            .find(|s| in_section(*s, key))
            .map(|s| (s, key.to_string())),
    };
    match found {
        Some(found) => Ok(found),
        None => bail!("unknown key `{key}`; valid keys: {}", valid_keys(catalog)),
    }
}

fn keys_of(table: &[(&str, Kind)]) -> String {
    table.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}

fn valid_keys(catalog: &Catalog) -> String {
    let slots: Vec<&str> = catalog.non_platform_slots().collect();
    format!(
        "{} (top level), {} (slots), {} (settings), {} (budgets)",
        TOP_KEYS.join(", "),
        if slots.is_empty() {
            "none".to_string()
        } else {
            slots.join(", ")
        },
        keys_of(SETTINGS),
        keys_of(BUDGETS)
    )
}

/// Parses a byte count: `65536`, `64K`, `4M`, `1G` (binary units; `KiB`/`KB`/`B` suffixes and
/// `_` separators accepted, case-insensitive).
pub fn parse_size(s: &str) -> Result<u64> {
    slots::parse_size(s).map_err(Error::msg)
}

/// Formats a byte count the way QEMU's `-m` takes it (`32M`, or `K` when not whole MiB).
pub fn qemu_memory_arg(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{}M", bytes >> 20)
    } else {
        format!("{}K", bytes.div_ceil(1024))
    }
}

struct Checker<'a> {
    profile: &'a str,
    overridden: &'a BTreeSet<String>,
}

impl Checker<'_> {
    fn err(&self, key: &str, qualified: &str, msg: impl std::fmt::Display) -> Error {
        if self.overridden.contains(key) {
            Error::msg(format!("{key} (set on the command line): {msg}"))
        } else {
            Error::msg(format!("profile `{}`: {qualified}: {msg}", self.profile))
        }
    }

    fn string(&self, key: &str, qualified: &str, v: &Value) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.err(key, qualified, format!("expected a string, got {other}"))),
        }
    }

    fn size(&self, key: &str, qualified: &str, v: &Value) -> Result<u64> {
        match v {
            Value::Integer(i) if *i >= 0 => Ok(*i as u64),
            Value::String(s) => parse_size(s).map_err(|e| self.err(key, qualified, e)),
            other => Err(self.err(
                key,
                qualified,
                format!("expected a byte count like 65536 or \"64K\", got {other}"),
            )),
        }
    }

    fn duration(&self, key: &str, qualified: &str, v: &Value) -> Result<u64> {
        match v {
            Value::Integer(i) if *i >= 0 => Ok(*i as u64),
            Value::String(s) => parse_duration_ns(s).map_err(|e| self.err(key, qualified, e)),
            other => Err(self.err(
                key,
                qualified,
                format!("expected a duration like \"10ms\", \"500us\" or nanoseconds, got {other}"),
            )),
        }
    }

    fn ratio(&self, key: &str, qualified: &str, v: &Value) -> Result<f64> {
        let r = match v {
            Value::Float(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match r {
            Some(r) if r.is_finite() && r > 0.0 => Ok(r),
            _ => Err(self.err(
                key,
                qualified,
                format!("expected a positive number like 1.10, got {v}"),
            )),
        }
    }

    fn count(&self, key: &str, qualified: &str, v: &Value) -> Result<u64> {
        let n = match v {
            Value::Integer(i) => u64::try_from(*i).ok(),
            Value::String(s) => {
                let t = s.trim().replace('_', "");
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    t.parse().ok()
                }
            }
            _ => None,
        };
        n.ok_or_else(|| self.err(key, qualified, format!("expected a count like 64, got {v}")))
    }

    /// Reads `v` as `kind` says.
    fn parse(&self, key: &str, qualified: &str, kind: Kind, v: &Value) -> Result<Parsed> {
        Ok(match kind {
            Kind::LogLevel => {
                let level = self.string(key, qualified, v)?;
                if slots::log_level(&level).is_none() || level != level.to_ascii_lowercase() {
                    return Err(self.err(
                        key,
                        qualified,
                        format!(
                            "`{level}` is not a log level; valid choices: {}",
                            slots::log_levels().join(", ")
                        ),
                    ));
                }
                Parsed::Text(level)
            }
            Kind::Choice(choices, what) => {
                let value = self.string(key, qualified, v)?;
                if !choices.contains(&value.as_str()) {
                    return Err(self.err(
                        key,
                        qualified,
                        format!(
                            "`{value}` is not a {what}; valid choices: {}",
                            choices.join(", ")
                        ),
                    ));
                }
                Parsed::Text(value)
            }
            Kind::Size => Parsed::Number(self.size(key, qualified, v)?),
            Kind::Duration => Parsed::Number(self.duration(key, qualified, v)?),
            Kind::Budget => match self.size(key, qualified, v)? {
                0 => return Err(self.err(key, qualified, "a budget of 0 bytes can never be met")),
                n => Parsed::Number(n),
            },
            Kind::Ratio => Parsed::Ratio(self.ratio(key, qualified, v)?),
            Kind::NetIp => {
                let text = self.string(key, qualified, v)?;
                parse_net_ip(&text).map_err(|e| self.err(key, qualified, e))?;
                Parsed::Text(text.trim().to_string())
            }
            Kind::Gateway => {
                let text = self.string(key, qualified, v)?;
                parse_gateway(&text).map_err(|e| self.err(key, qualified, e))?;
                Parsed::Text(text.trim().to_string())
            }
            Kind::Count => Parsed::Number(self.count(key, qualified, v)?),
            Kind::Flag => Parsed::Flag(match v {
                Value::Boolean(b) => *b,
                Value::String(t) if t.trim() == "true" => true,
                Value::String(t) if t.trim() == "false" => false,
                _ => {
                    return Err(self.err(
                        key,
                        qualified,
                        format!("expected true or false, got {v}"),
                    ));
                }
            }),
            Kind::App => {
                let name = self.string(key, qualified, v)?;
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(self.err(
                        key,
                        qualified,
                        format!("`{name}` is not an app name (a directory under apps/)"),
                    ));
                }
                Parsed::Text(name)
            }
        })
    }

    fn slot_value(
        &self,
        catalog: &Catalog,
        slot: &str,
        qualified: &str,
        v: &Value,
    ) -> Result<String> {
        let value = self.string(slot, qualified, v)?;
        let valid = catalog.values(slot).unwrap_or(&[]);
        if valid.contains(&value) {
            return Ok(value);
        }
        Err(self.err(
            slot,
            qualified,
            format!(
                "`{value}` is not an available {slot}; valid choices: {} (features `{slot}-*` of crates/stardust/Cargo.toml)",
                valid.join(", ")
            ),
        ))
    }
}

/// A profile file as written (overrides applied): the tables typed, their values checked by
/// [`validate`].
#[derive(Debug, Deserialize)]
struct ProfileFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    platform: Option<Value>,
    #[serde(default)]
    slots: BTreeMap<String, Value>,
    #[serde(default)]
    settings: BTreeMap<String, Value>,
    #[serde(default)]
    budgets: BTreeMap<String, Value>,
    /// Anything else: an error that names it.
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

/// A checked setting or budget value.
enum Parsed {
    Text(String),
    Number(u64),
    Ratio(f64),
    Flag(bool),
}

impl Parsed {
    fn number(&self) -> u64 {
        match self {
            Parsed::Number(n) => *n,
            _ => 0,
        }
    }
    fn flag(&self) -> bool {
        matches!(self, Parsed::Flag(true))
    }
    fn text(self) -> String {
        match self {
            Parsed::Text(t) => t,
            _ => String::new(),
        }
    }
}

fn check_keys(
    profile: &str,
    table: &BTreeMap<String, Value>,
    section: &str,
    valid: &[(&str, Kind)],
) -> Result<()> {
    if let Some(key) = table.keys().find(|k| !valid.iter().any(|(v, _)| v == k)) {
        let valid: Vec<&str> = valid.iter().map(|(k, _)| *k).collect();
        bail!(
            "profile `{profile}`: unknown key `{key}` in [{section}]; valid keys: {}",
            valid.join(", ")
        );
    }
    Ok(())
}

fn validate(
    name: &str,
    file: ProfileFile,
    catalog: &Catalog,
    applied: &mut Vec<(String, String)>,
) -> Result<Profile> {
    let overridden: BTreeSet<String> = applied.iter().map(|(k, _)| k.clone()).collect();
    let c = Checker {
        profile: name,
        overridden: &overridden,
    };
    check_unknown(name, &file, catalog)?;
    let mut slots = slot_values(&c, catalog, &file)?;
    let setting = |key: &str, kind: Kind| -> Result<Parsed> {
        let qualified = format!("settings.{key}");
        match (file.settings.get(key), catalog.default_of(key)) {
            (Some(v), _) => c.parse(key, &qualified, kind, v),
            (None, Some(v)) => c.parse(
                key,
                &format!("defaults.{key} of crates/stardust/Cargo.toml"),
                kind,
                v,
            ),
            (None, None) => bail!(
                "crates/stardust/Cargo.toml: [package.metadata.stardust.defaults] has no `{key}`"
            ),
        }
    };
    let mut parsed = SETTINGS
        .iter()
        .map(|(k, kind)| setting(k, *kind))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let mut next = || parsed.next().expect("one value per setting");
    let settings = Settings {
        log_level: next().text(),
        heap_size: next().number(),
        stack_size: next().number(),
        memory: next().number(),
        time_slice_ns: next().number(),
        xen_guest: next().text(),
        net_ip: next().text(),
        net_gateway: next().text(),
        net_tcp_buffer: next().number(),
        net_udp_buffer: next().number(),
        net_sockets: next().number(),
        log_max: next().text(),
        kv_max_keys: next().number(),
        kv_max_frame: next().number(),
        net_dhcp: next().flag(),
        cpus: next().number(),
    };
    check_settings(&c, &settings)?;
    check_net_settings(&c, &settings)?;
    check_kv_settings(&c, &settings)?;
    let budget = |key: &str, kind: Kind| -> Result<Option<Parsed>> {
        file.budgets
            .get(key)
            .map(|v| c.parse(key, &format!("budgets.{key}"), kind, v))
            .transpose()
    };
    let budgets = Budgets {
        image_bytes: budget("image_bytes", Kind::Budget)?.map(|p| p.number()),
        min_memory: budget("min_memory", Kind::Budget)?.map(|p| p.number()),
        boot_ratio: budget("boot_ratio", Kind::Ratio)?.and_then(|p| match p {
            Parsed::Ratio(r) => Some(r),
            _ => None,
        }),
        image_app: budget("image_app", Kind::App)?.map(Parsed::text),
    };
    check_rules(&c, catalog, &mut slots, &settings, applied)?;
    check_cpus(&c, catalog, &slots, &settings)?;
    if slots.iter().any(|(s, v)| s == "net_device" && v != "none") {
        check_net_memory(&c, &settings)?;
    }
    let at = slots.iter().position(|(s, _)| s == PLATFORM);
    let platform = at.map(|i| slots.remove(i).1).unwrap_or_default();
    Ok(Profile {
        name: name.to_string(),
        description: file.description.unwrap_or_default(),
        platform,
        slots,
        settings,
        budgets,
        overrides: Vec::new(),
    })
}

/// Refuses a key that is neither a known table nor one of its keys, naming the valid ones.
fn check_unknown(name: &str, file: &ProfileFile, catalog: &Catalog) -> Result<()> {
    if let Some(key) = file.unknown.keys().next() {
        let hint = match key.as_str() {
            "budget" => " (did you mean [budgets]?)",
            "slot" => " (did you mean [slots]?)",
            "setting" => " (did you mean [settings]?)",
            _ => "",
        };
        bail!(
            "profile `{name}`: unknown top-level key `{key}`{hint}; valid: {}, [slots], [settings], [budgets]",
            TOP_KEYS.join(", ")
        );
    }
    if catalog.values(PLATFORM).is_none() {
        bail!(
            "crates/stardust/Cargo.toml declares no `platform-*` feature, so no platform can be selected"
        );
    }
    let slot_names: Vec<&str> = catalog.non_platform_slots().collect();
    if file.slots.contains_key(PLATFORM) {
        bail!("profile `{name}`: `platform` is a top-level key, not a [slots] entry");
    }
    if let Some(key) = file.slots.keys().find(|k| !catalog.has_slot(k)) {
        bail!(
            "profile `{name}`: unknown slot `{key}` in [slots]; valid slots: {}",
            or_none(&slot_names)
        );
    }
    check_keys(name, &file.settings, "settings", SETTINGS)?;
    check_keys(name, &file.budgets, "budgets", BUDGETS)?;

    Ok(())
}

/// Every slot's value (platform first): the profile's, or the default of one it leaves out.
fn slot_values(
    c: &Checker<'_>,
    catalog: &Catalog,
    file: &ProfileFile,
) -> Result<Vec<(String, String)>> {
    // Slots: the profile's values, then the defaults of those it leaves out.
    let mut values: Vec<(String, Option<String>)> = Vec::new();
    for slot in catalog.slot_names() {
        let (qualified, given) = match slot {
            PLATFORM => (PLATFORM.to_string(), file.platform.as_ref()),
            _ => (format!("slots.{slot}"), file.slots.get(slot)),
        };
        let value = given
            .map(|v| c.slot_value(catalog, slot, &qualified, v))
            .transpose()?;
        values.push((slot.to_string(), value));
    }
    for i in 0..values.len() {
        if values[i].1.is_none() {
            let features = features_of(&values, false);
            let features: Vec<&str> = features.iter().map(String::as_str).collect();
            values[i].1 = catalog
                .slot_default(&values[i].0, &features)
                .map(str::to_string);
        }
    }
    Ok(values
        .into_iter()
        .map(|(s, v)| (s, v.unwrap_or_default()))
        .collect())
}

fn or_none(list: &[&str]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// `<slot>-<value>` of every slot that has a value, and `xen_guest_pvh` when asked.
fn features_of(values: &[(String, Option<String>)], xen_guest_pvh: bool) -> Vec<String> {
    let mut features: Vec<String> = values
        .iter()
        .filter_map(|(s, v)| Some(format!("{s}-{}", v.as_ref()?)))
        .collect();
    if xen_guest_pvh {
        features.push(
            XEN_GUEST_PVH_FEATURE
                .trim_start_matches("stardust/")
                .to_string(),
        );
    }
    features
}

/// The rules between slots (crates/stardust/Cargo.toml). A slot that the command line did not
/// set and that has no declared default (the console) follows what the command line chose: it
/// takes its first value that fits again (`--platform xen` on a profile with console `serial`).
fn check_rules(
    c: &Checker<'_>,
    catalog: &Catalog,
    slots: &mut [(String, String)],
    settings: &Settings,
    applied: &mut Vec<(String, String)>,
) -> Result<()> {
    loop {
        let values: Vec<(String, Option<String>)> = slots
            .iter()
            .map(|(s, v)| (s.clone(), Some(v.clone())))
            .collect();
        let features = features_of(&values, settings.xen_guest == "pvh");
        let features: Vec<&str> = features.iter().map(String::as_str).collect();
        let Some(broken) = catalog.broken(&features) else {
            return Ok(());
        };
        let trigger_slot = slots::split(broken.trigger).map(|(s, _)| s);
        let rule_slot = broken.rule.slot.as_str();
        let set = |s: &str| c.overridden.contains(s);
        let follower = [trigger_slot, Some(rule_slot)]
            .into_iter()
            .flatten()
            .find(|s| {
                !set(s)
                    && catalog.default_of(s).is_none()
                    && [trigger_slot, Some(rule_slot)]
                        .into_iter()
                        .flatten()
                        .any(set)
            });
        if let Some(follower) = follower {
            let others: Vec<&str> = features
                .iter()
                .copied()
                .filter(|f| slots::split(f).is_none_or(|(s, _)| s != follower))
                .collect();
            if let Some(value) = catalog.fitting(follower, &others).first() {
                let value = value.to_string();
                if let Some(entry) = slots.iter_mut().find(|(s, _)| s == follower) {
                    entry.1 = value.clone();
                }
                applied.push((follower.to_string(), value));
                continue;
            }
        }
        if broken.trigger == XEN_GUEST_PVH_FEATURE.trim_start_matches("stardust/") {
            return Err(c.err(
                "xen_guest",
                "settings.xen_guest",
                format!(
                    "`{}` needs platform `{}` (platform is `{}`); set platform={} or leave \
                     xen_guest unset (default `{}`)",
                    settings.xen_guest,
                    broken.rule.one_of.join("` or `"),
                    broken.value,
                    broken.rule.one_of.first().map_or("", String::as_str),
                    catalog
                        .default_of("xen_guest")
                        .and_then(Value::as_str)
                        .unwrap_or("pv"),
                ),
            ));
        }
        let key = [trigger_slot, Some(rule_slot)]
            .into_iter()
            .flatten()
            .find(|s| set(s))
            .unwrap_or(rule_slot);
        let qualified = if key == PLATFORM {
            PLATFORM.to_string()
        } else {
            format!("slots.{key}")
        };
        return Err(c.err(key, &qualified, catalog.message(&broken, &features)));
    }
}

/// The settings' bounds: what the image, loaded at 1 MiB with its boot stack, can do.
fn check_settings(c: &Checker<'_>, s: &Settings) -> Result<()> {
    let (stack_size, memory, heap_size) = (s.stack_size, s.memory, s.heap_size);
    let blame = |keys: &[&'static str]| -> &'static str {
        keys.iter()
            .copied()
            .find(|k| c.overridden.contains(*k))
            .unwrap_or(keys[0])
    };
    let fail = |key: &str, msg: String| Err(c.err(key, &format!("settings.{key}"), msg));
    if slots::log_level(&s.log_level) > slots::log_level(&s.log_max) {
        let key = blame(&["log_level", "log_max"]);
        return fail(
            key,
            format!(
                "log_level `{}` is above log_max `{}`, the most verbose level compiled in: \
                 lower log_level or raise log_max",
                s.log_level, s.log_max
            ),
        );
    }
    if !stack_size.is_multiple_of(PAGE) || stack_size < MIN_STACK_SIZE {
        return fail(
            "stack_size",
            format!("{stack_size} bytes: must be a multiple of 4096 and at least 16K"),
        );
    }
    if stack_size > MAX_STACK_SIZE {
        return fail(
            "stack_size",
            format!(
                "stack_size = {}: at most {}: the image, loaded at 1 MiB with its boot stack, must end \
                 within the first GiB, which the boot page tables map, leaving a MiB there for \
                 the kernel's own page tables",
                size_text(stack_size),
                size_text(MAX_STACK_SIZE)
            ),
        );
    }
    if memory < MIN_MEMORY {
        return fail("memory", format!("{memory} bytes: must be at least 1M"));
    }
    if !heap_size.is_multiple_of(PAGE) {
        return fail(
            "heap_size",
            format!(
                "{heap_size} bytes: must be 0 (all free RAM) or a multiple of 4096 (the heap \
                 takes whole pages)"
            ),
        );
    }
    // The image ends at least a guard page and the boot stack past the load address; RAM up
    // to there is not free. The exact end is checked after the build (`image::build`, `run`).
    let image_end_at_least = IMAGE_BASE + PAGE + stack_size;
    if memory <= image_end_at_least {
        let needed = size_text(memory_for_image_end(image_end_at_least));
        return fail(
            blame(&["memory", "stack_size"]),
            format!(
                "memory = {} is too small for stack_size = {}: the image (loaded at 1 MiB) \
                 ends beyond {}; raise memory to at least {needed} (e.g. --set memory={needed})",
                size_text(memory),
                size_text(stack_size),
                size_text(image_end_at_least),
            ),
        );
    }
    if heap_size > memory - image_end_at_least {
        return fail(
            blame(&["heap_size", "memory", "stack_size"]),
            format!(
                "heap_size = {} can never be met with memory = {}: the image (loaded at 1 MiB, \
                 with a {} boot stack) leaves less free RAM; raise memory to at least {}, or \
                 set heap_size = 0 for all free RAM",
                size_text(heap_size),
                size_text(memory),
                size_text(stack_size),
                size_text(memory_for_image_end(image_end_at_least + heap_size)),
            ),
        );
    }
    if !(MIN_TIME_SLICE_NS..=MAX_TIME_SLICE_NS).contains(&s.time_slice_ns) {
        return fail(
            "time_slice",
            format!("{} ns: must be between 100us and 1s", s.time_slice_ns),
        );
    }
    Ok(())
}

/// `cpus`: from 1 to [`MAX_CPUS`], and above 1 only with a scheduler that has threads to run on
/// the other CPUs (`none` runs the app's `main` alone).
fn check_cpus(
    c: &Checker<'_>,
    catalog: &Catalog,
    slots: &[(String, String)],
    s: &Settings,
) -> Result<()> {
    if !(1..=MAX_CPUS).contains(&s.cpus) {
        return Err(c.err(
            "cpus",
            "settings.cpus",
            format!(
                "{}: must be between 1 and {MAX_CPUS} (the kernel's MAX_CPUS)",
                s.cpus
            ),
        ));
    }
    let scheduler = slots
        .iter()
        .find(|(slot, _)| slot == "scheduler")
        .map(|(_, v)| v.as_str());
    if s.cpus > 1 && scheduler == Some("none") {
        let others: Vec<&str> = catalog
            .values("scheduler")
            .unwrap_or(&[])
            .iter()
            .map(String::as_str)
            .filter(|v| *v != "none")
            .collect();
        let (key, qualified) =
            if c.overridden.contains("scheduler") && !c.overridden.contains("cpus") {
                ("scheduler", "slots.scheduler")
            } else {
                ("cpus", "settings.cpus")
            };
        return Err(c.err(
            key,
            qualified,
            format!(
                "cpus = {} needs a scheduler with threads, but scheduler = \"none\" runs the \
                 app's main alone and has nothing to run on the other CPUs: set scheduler to \
                 one of {} (e.g. --set scheduler={}), or cpus = 1",
                s.cpus,
                or_none(&others),
                others.first().copied().unwrap_or("coop"),
            ),
        ));
    }
    Ok(())
}

/// `net_ip`: a static address with its prefix length, or DHCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetIp {
    /// `dhcp`: the address, prefix and router come from a DHCPv4 server.
    Dhcp,
    /// `A.B.C.D/P`.
    Static {
        /// The guest's own address.
        addr: Ipv4Addr,
        /// The prefix length, 1..=32.
        prefix: u8,
    },
}

impl NetIp {
    /// Whether `other` lies in this address's subnet (never for DHCP).
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        match *self {
            NetIp::Dhcp => false,
            NetIp::Static { addr, prefix } => {
                let mask = u32::MAX << (32 - u32::from(prefix));
                u32::from(addr) & mask == u32::from(other) & mask
            }
        }
    }
}

/// Why `addr` cannot be a host's own address (`None` if it can).
fn not_a_host_address(addr: Ipv4Addr) -> Option<&'static str> {
    if addr.is_unspecified() {
        Some("the unspecified address")
    } else if addr.octets()[0] == 0 {
        Some("in 0.0.0.0/8 (\"this network\")")
    } else if addr.is_broadcast() {
        Some("the broadcast address")
    } else if addr.is_multicast() {
        Some("a multicast address")
    } else if addr.is_loopback() {
        Some("a loopback address")
    } else if addr.octets()[0] >= 240 {
        Some("a reserved (class E) address")
    } else {
        None
    }
}

/// Parses `net_ip`: `dhcp` or `A.B.C.D/P` (P from 1 to 32), a host's own address: not
/// 0.0.0.0, a broadcast, multicast, loopback or class E address, nor, up to /30, the subnet's
/// network or broadcast address.
pub fn parse_net_ip(text: &str) -> std::result::Result<NetIp, String> {
    let t = text.trim();
    if t == "dhcp" {
        return Ok(NetIp::Dhcp);
    }
    let usage =
        "expected an IPv4 address with its prefix length, like \"10.0.2.15/24\", or \"dhcp\"";
    let Some((addr, prefix)) = t.split_once('/') else {
        return Err(match t.parse::<Ipv4Addr>() {
            Ok(_) => format!("`{text}`: no prefix length; {usage}"),
            Err(_) => format!("`{text}` is not an IPv4 address; {usage}"),
        });
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{text}`: `{addr}` is not an IPv4 address; {usage}"))?;
    let prefix: u8 = match prefix.parse() {
        Ok(p) if prefix.bytes().all(|b| b.is_ascii_digit()) && (1..=32).contains(&p) => p,
        _ => {
            return Err(format!(
                "`{text}`: `{prefix}` is not a prefix length from 1 to 32; {usage}"
            ));
        }
    };
    if let Some(why) = not_a_host_address(addr) {
        return Err(format!("`{text}`: {addr} is {why}, not a host's address"));
    }
    if prefix <= 30 {
        let host = u32::from(addr) & (u32::MAX >> prefix);
        if host == 0 || host == u32::MAX >> prefix {
            let what = if host == 0 { "network" } else { "broadcast" };
            return Err(format!(
                "`{text}`: {addr} is the {what} address of its /{prefix} subnet, not a host's address"
            ));
        }
    }
    Ok(NetIp::Static { addr, prefix })
}

/// Parses `net_gateway`: an IPv4 address, or empty for none.
pub fn parse_gateway(text: &str) -> std::result::Result<Option<Ipv4Addr>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let addr: Ipv4Addr = t.parse().map_err(|_| {
        format!("`{text}` is not an IPv4 address (expected like \"10.0.2.2\", or \"\" for none)")
    })?;
    if let Some(why) = not_a_host_address(addr) {
        return Err(format!("`{text}` is {why}, not a gateway's address"));
    }
    Ok(Some(addr))
}

/// The network settings' bounds: the gateway in the address's subnet, buffer sizes, socket count.
fn check_net_settings(c: &Checker<'_>, s: &Settings) -> Result<()> {
    let fail = |key: &str, msg: String| Err(c.err(key, &format!("settings.{key}"), msg));
    let blame = |keys: &[&'static str]| -> &'static str {
        keys.iter()
            .copied()
            .find(|k| c.overridden.contains(*k))
            .unwrap_or(keys[0])
    };
    // Both parsed already (Kind::NetIp, Kind::Gateway).
    let ip = parse_net_ip(&s.net_ip).map_err(Error::msg)?;
    let gateway = parse_gateway(&s.net_gateway).map_err(Error::msg)?;
    if ip == NetIp::Dhcp && !s.net_dhcp {
        return fail(
            blame(&["net_ip", "net_dhcp"]),
            "net_ip = \"dhcp\" needs the DHCP client, which net_dhcp = false leaves out: \
             set net_dhcp = true (`--set net_dhcp=true`)"
                .into(),
        );
    }
    if let (NetIp::Static { addr, prefix }, Some(gw)) = (ip, gateway) {
        if gw == addr {
            return fail(
                blame(&["net_gateway", "net_ip"]),
                format!(
                    "the gateway {gw} is the guest's own address (net_ip = {})",
                    s.net_ip
                ),
            );
        }
        if !ip.contains(gw) {
            return fail(
                blame(&["net_gateway", "net_ip"]),
                format!(
                    "the gateway {gw} is not in the guest's subnet {addr}/{prefix} (net_ip); \
                     give a gateway in it, or net_gateway = \"\" for none"
                ),
            );
        }
    }
    for key in ["net_tcp_buffer", "net_udp_buffer"] {
        let bytes = if key == "net_tcp_buffer" {
            s.net_tcp_buffer
        } else {
            s.net_udp_buffer
        };
        if !(MIN_NET_BUFFER..=MAX_NET_BUFFER).contains(&bytes) {
            return fail(
                key,
                format!(
                    "{} bytes: must be between {} (one full-sized packet of a 1500-byte MTU) \
                     and {}",
                    bytes,
                    size_text(MIN_NET_BUFFER),
                    size_text(MAX_NET_BUFFER)
                ),
            );
        }
    }
    if !(1..=MAX_NET_SOCKETS).contains(&s.net_sockets) {
        return fail(
            "net_sockets",
            format!(
                "{}: must be between 1 and {MAX_NET_SOCKETS} (TCP sockets in all, listening \
                 pools included)",
                s.net_sockets
            ),
        );
    }
    Ok(())
}

/// The key-value server's bounds (`kv_max_keys`, `kv_max_frame`).
fn check_kv_settings(c: &Checker<'_>, s: &Settings) -> Result<()> {
    if !(1..=MAX_KV_KEYS).contains(&s.kv_max_keys) {
        return Err(c.err(
            "kv_max_keys",
            "settings.kv_max_keys",
            format!("{}: must be between 1 and {MAX_KV_KEYS}", s.kv_max_keys),
        ));
    }
    if !(MIN_KV_FRAME..=MAX_KV_FRAME).contains(&s.kv_max_frame) {
        return Err(c.err(
            "kv_max_frame",
            "settings.kv_max_frame",
            format!(
                "{} bytes: must be between {} and {}",
                s.kv_max_frame,
                size_text(MIN_KV_FRAME),
                size_text(MAX_KV_FRAME)
            ),
        ));
    }
    Ok(())
}

/// With a NIC: every TCP socket's two buffers must fit in the heap (or the whole memory).
fn check_net_memory(c: &Checker<'_>, s: &Settings) -> Result<()> {
    let needed = s
        .net_sockets
        .saturating_mul(2)
        .saturating_mul(s.net_tcp_buffer);
    let (limit, what) = if s.heap_size != 0 {
        (s.heap_size, "heap_size")
    } else {
        (s.memory, "memory")
    };
    if needed <= limit {
        return Ok(());
    }
    let key = ["net_sockets", "net_tcp_buffer", what]
        .into_iter()
        .find(|k| c.overridden.contains(*k))
        .unwrap_or("net_sockets");
    Err(c.err(
        key,
        &format!("settings.{key}"),
        format!(
            "net_sockets = {} TCP sockets with a receive and a transmit buffer of \
             net_tcp_buffer = {} each need {}, more than {what} = {}: fewer sockets, smaller \
             buffers or more {what}",
            s.net_sockets,
            size_text(s.net_tcp_buffer),
            size_text(needed),
            size_text(limit)
        ),
    ))
}

/// A catalog of `features` with the settings' defaults of the real facade and the given
/// `[[package.metadata.stardust.rules]]` text (for tests).
#[cfg(test)]
pub(crate) fn test_catalog(features: &[&str], rules: &str) -> Catalog {
    let facade = include_str!("../../crates/stardust/Cargo.toml");
    let defaults: String = facade
        .lines()
        .skip_while(|l| *l != "[package.metadata.stardust.defaults]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| {
            SETTINGS
                .iter()
                .any(|(k, _)| l.starts_with(&format!("{k} =")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let features: String = features.iter().map(|f| format!("{f} = []\n")).collect();
    let text =
        format!("[features]\n{features}[package.metadata.stardust.defaults]\n{defaults}{rules}");
    Catalog::from_manifest(&text).expect("a valid test catalog")
}

#[cfg(test)]
mod tests;
