//! Profiles (`profiles/NAME.toml`): parsing, `--set` overrides and validation.
//!
//! A profile names the platform, one implementation per slot, numeric settings and budgets
//! (see docs/CONTRACT.md). The valid slots and values are not listed here: they come from the
//! `[features]` of `crates/stardust/Cargo.toml` (features named `<slot>-<value>`), read into a
//! [`Catalog`]. Everything else (keys, settings ranges) is checked here, and every error names the
//! bad key or value and lists the valid choices.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Value;

use crate::bail;
use crate::error::{Error, Result};

/// Top-level scalar keys.
pub const TOP_KEYS: &[&str] = &["description", "platform"];
/// Keys of `[settings]`.
pub const SETTINGS_KEYS: &[&str] = &[
    "log_level",
    "heap_size",
    "stack_size",
    "memory",
    "time_slice",
    "xen_guest",
];
/// Keys of `[budgets]`.
pub const BUDGET_KEYS: &[&str] = &["image_bytes", "min_memory", "boot_ratio"];
/// Values of `log_level` (and of the kernel's `log=` option).
pub const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
/// Values of `xen_guest` (platform `xen` only): the Xen guest mode, PV or PVH.
pub const XEN_GUESTS: &[&str] = &["pv", "pvh"];
/// The facade feature `xen_guest = "pvh"` adds (no dash: the slot catalog ignores it).
pub const XEN_GUEST_PVH_FEATURE: &str = "stardust/xen_guest_pvh";
/// The slot that is a top-level key rather than a `[slots]` entry.
pub const PLATFORM: &str = "platform";

const DEFAULT_LOG_LEVEL: &str = "info";
const DEFAULT_HEAP_SIZE: u64 = 0;
const DEFAULT_STACK_SIZE: u64 = 64 * 1024;
const DEFAULT_MEMORY: u64 = 32 * 1024 * 1024;
const MIN_STACK_SIZE: u64 = 16 * 1024;
const MIN_MEMORY: u64 = 1024 * 1024;
const DEFAULT_TIME_SLICE_NS: u64 = 10_000_000;
const DEFAULT_XEN_GUEST: &str = "pv";
const MIN_TIME_SLICE_NS: u64 = 100_000;
const MAX_TIME_SLICE_NS: u64 = 1_000_000_000;
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

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

/// The slots and the values each may take, in the order the features are declared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    slots: Vec<(String, Vec<String>)>,
}

impl Catalog {
    /// Builds the catalog from feature names: `<slot>-<value>` adds `value` to `slot` (split at
    /// the first `-`); names without a `-` (such as `default`) are not slot features.
    pub fn from_features<'a>(features: impl IntoIterator<Item = &'a str>) -> Catalog {
        let mut catalog = Catalog::default();
        for feature in features {
            let Some((slot, value)) = feature.split_once('-') else {
                continue;
            };
            if slot.is_empty() || value.is_empty() {
                continue;
            }
            match catalog.slots.iter_mut().find(|(s, _)| s == slot) {
                Some((_, values)) => values.push(value.to_string()),
                None => catalog
                    .slots
                    .push((slot.to_string(), vec![value.to_string()])),
            }
        }
        catalog
    }

    /// Reads the `[features]` table of a `Cargo.toml`, keeping declaration order.
    pub fn from_manifest(text: &str) -> Result<Catalog> {
        #[derive(Deserialize)]
        struct Manifest {
            #[serde(default)]
            features: BTreeMap<toml::Spanned<String>, Value>,
        }
        let manifest: Manifest = toml::from_str(text).map_err(|e| Error::new(e.to_string()))?;
        let mut names: Vec<_> = manifest.features.keys().collect();
        names.sort_by_key(|k| k.span().start);
        Ok(Catalog::from_features(
            names.into_iter().map(|k| k.get_ref().as_str()),
        ))
    }

    /// All slot names (platform included), in declaration order.
    pub fn slot_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|(s, _)| s.as_str())
    }

    /// Slot names except `platform`.
    pub fn non_platform_slots(&self) -> impl Iterator<Item = &str> {
        self.slot_names().filter(|s| *s != PLATFORM)
    }

    /// The valid values of `slot`, or `None` for an unknown slot.
    pub fn values(&self, slot: &str) -> Option<&[String]> {
        self.slots
            .iter()
            .find(|(s, _)| s == slot)
            .map(|(_, v)| v.as_slice())
    }

    fn has_slot(&self, slot: &str) -> bool {
        self.values(slot).is_some()
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
            .map_err(|e| Error::new(format!("profile `{name}` (profiles/{name}.toml): {e}")))?;
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
        // A platform chosen on the command line brings its own console when the profile's
        // console is a device that platform does not have (`--platform xen` on `default`).
        let platform_set = applied.iter().any(|(k, _)| k == PLATFORM);
        let console_set = applied.iter().any(|(k, _)| k == "console");
        if let (true, false, Some(Value::String(platform))) =
            (platform_set, console_set, table.get(PLATFORM).cloned())
        {
            let console = table
                .get("slots")
                .and_then(|s| s.get("console"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if let (Some(console), Some(default)) = (console, default_console(&platform))
                && !console_fits(&platform, &console)
                && let Some(Value::Table(slots)) = table.get_mut("slots")
            {
                slots.insert("console".into(), Value::String(default.into()));
                applied.push(("console".into(), default.into()));
            }
        }
        let overridden: BTreeSet<String> = applied.iter().map(|(k, _)| k.clone()).collect();
        let mut profile = validate(name, &table, catalog, &overridden)?;
        if let Some(console) = profile.slot("console")
            && !console_fits(&profile.platform, console)
        {
            bail!(
                "profile `{name}`: console `{console}` is not available on platform `{}`; \
                 valid choices there: {}",
                profile.platform,
                PLATFORM_CONSOLES
                    .iter()
                    .filter(|(p, _)| *p == profile.platform)
                    .map(|(_, c)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        profile.overrides = applied;
        Ok(profile)
    }

    /// `stardust/<slot>-<value>` for the platform and every slot (platform first), then
    /// `stardust/xen_guest_pvh` for a Xen PVH guest.
    pub fn features(&self) -> Vec<String> {
        let mut features: Vec<String> = std::iter::once((PLATFORM, self.platform.as_str()))
            .chain(self.slots.iter().map(|(s, v)| (s.as_str(), v.as_str())))
            .map(|(s, v)| format!("stardust/{s}-{v}"))
            .collect();
        if self.xen_pvh() {
            features.push(XEN_GUEST_PVH_FEATURE.into());
        }
        features
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

/// The consoles each platform has, its default first. A platform missing here takes any console.
pub const PLATFORM_CONSOLES: &[(&str, &str)] = &[
    ("kvm", "serial"),
    ("kvm", "debugcon"),
    ("xen", "xen"),
    ("universal", "auto"),
];

/// The default console of `platform`.
pub fn default_console(platform: &str) -> Option<&'static str> {
    PLATFORM_CONSOLES
        .iter()
        .find(|(p, _)| *p == platform)
        .map(|(_, c)| *c)
}

/// Whether `platform` has `console`.
pub fn console_fits(platform: &str, console: &str) -> bool {
    default_console(platform).is_none() || PLATFORM_CONSOLES.contains(&(platform, console))
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
            Section::Settings => SETTINGS_KEYS.contains(&k),
            Section::Budgets => BUDGET_KEYS.contains(&k),
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
        SETTINGS_KEYS.join(", "),
        BUDGET_KEYS.join(", ")
    )
}

/// Parses a byte count: `65536`, `64K`, `4M`, `1G` (binary units; `KiB`/`KB`/`B` suffixes and
/// `_` separators accepted, case-insensitive).
/// Parses a duration: nanoseconds, or a number with `ns`, `us`, `ms` or `s` (`"10ms"`).
pub fn parse_duration_ns(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_ns: u64 = match unit.trim() {
        "" | "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}`; use ns, us, ms or s (e.g. \"10ms\")"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ns))
        .ok_or_else(|| format!("`{text}` is not a duration like \"10ms\""))
}

pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || {
        Error::new(format!(
            "bad size `{s}` (expected a byte count like 65536, or a number with K, M or G, like \"64K\")"
        ))
    };
    let t: String = s.trim().chars().filter(|c| *c != '_').collect();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
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
            Error::new(format!("{key} (set on the command line): {msg}"))
        } else {
            Error::new(format!("profile `{}`: {qualified}: {msg}", self.profile))
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

fn sub_table<'a>(
    profile: &str,
    table: &'a toml::Table,
    name: &str,
) -> Result<Option<&'a toml::Table>> {
    match table.get(name) {
        None => Ok(None),
        Some(Value::Table(t)) => Ok(Some(t)),
        Some(_) => bail!("profile `{profile}`: `{name}` must be a table ([{name}])"),
    }
}

fn check_keys(
    profile: &str,
    table: Option<&toml::Table>,
    section: &str,
    valid: &[&str],
) -> Result<()> {
    for key in table.into_iter().flat_map(|t| t.keys()) {
        if !valid.contains(&key.as_str()) {
            bail!(
                "profile `{profile}`: unknown key `{key}` in [{section}]; valid keys: {}",
                if valid.is_empty() {
                    "none".to_string()
                } else {
                    valid.join(", ")
                }
            );
        }
    }
    Ok(())
}

fn validate(
    name: &str,
    table: &toml::Table,
    catalog: &Catalog,
    overridden: &BTreeSet<String>,
) -> Result<Profile> {
    let c = Checker {
        profile: name,
        overridden,
    };
    const TABLES: &[&str] = &["slots", "settings", "budgets"];
    for key in table.keys() {
        if !TOP_KEYS.contains(&key.as_str()) && !TABLES.contains(&key.as_str()) {
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
    }
    if catalog.values(PLATFORM).is_none() {
        bail!(
            "crates/stardust/Cargo.toml declares no `platform-*` feature, so no platform can be selected"
        );
    }
    let description = match table.get("description") {
        Some(v) => c.string("description", "description", v)?,
        None => String::new(),
    };
    let platform = match table.get(PLATFORM) {
        Some(v) => c.slot_value(catalog, PLATFORM, PLATFORM, v)?,
        None => bail!(
            "profile `{name}`: `platform` is not set; valid choices: {}",
            catalog.values(PLATFORM).unwrap_or(&[]).join(", ")
        ),
    };

    let slots_table = sub_table(name, table, "slots")?;
    let slot_names: Vec<&str> = catalog.non_platform_slots().collect();
    if let Some(t) = slots_table {
        for key in t.keys() {
            if key == PLATFORM {
                bail!("profile `{name}`: `platform` is a top-level key, not a [slots] entry");
            }
            if !catalog.has_slot(key) {
                bail!(
                    "profile `{name}`: unknown slot `{key}` in [slots]; valid slots: {}",
                    if slot_names.is_empty() {
                        "none".to_string()
                    } else {
                        slot_names.join(", ")
                    }
                );
            }
        }
    }
    let mut slots = Vec::new();
    for slot in &slot_names {
        let qualified = format!("slots.{slot}");
        match slots_table.and_then(|t| t.get(*slot)) {
            Some(v) => slots.push((
                slot.to_string(),
                c.slot_value(catalog, slot, &qualified, v)?,
            )),
            None => bail!(
                "profile `{name}`: slot `{slot}` is not set; add `{slot} = \"...\"` to [slots] (valid choices: {})",
                catalog.values(slot).unwrap_or(&[]).join(", ")
            ),
        }
    }

    let settings_table = sub_table(name, table, "settings")?;
    check_keys(name, settings_table, "settings", SETTINGS_KEYS)?;
    let get = |t: Option<&toml::Table>, k: &str| t.and_then(|t| t.get(k)).cloned();
    let log_level = match get(settings_table, "log_level") {
        Some(v) => {
            let level = c.string("log_level", "settings.log_level", &v)?;
            if !LOG_LEVELS.contains(&level.as_str()) {
                return Err(c.err(
                    "log_level",
                    "settings.log_level",
                    format!(
                        "`{level}` is not a log level; valid choices: {}",
                        LOG_LEVELS.join(", ")
                    ),
                ));
            }
            level
        }
        None => DEFAULT_LOG_LEVEL.into(),
    };
    let heap_size = match get(settings_table, "heap_size") {
        Some(v) => c.size("heap_size", "settings.heap_size", &v)?,
        None => DEFAULT_HEAP_SIZE,
    };
    let stack_size = match get(settings_table, "stack_size") {
        Some(v) => c.size("stack_size", "settings.stack_size", &v)?,
        None => DEFAULT_STACK_SIZE,
    };
    if !stack_size.is_multiple_of(PAGE) || stack_size < MIN_STACK_SIZE {
        return Err(c.err(
            "stack_size",
            "settings.stack_size",
            format!("{stack_size} bytes: must be a multiple of 4096 and at least 16K"),
        ));
    }
    if stack_size > MAX_STACK_SIZE {
        return Err(c.err(
            "stack_size",
            "settings.stack_size",
            format!(
                "stack_size = {}: at most {}: the image, loaded at 1 MiB with its boot stack, must end \
                 within the first GiB, which the boot page tables map, leaving a MiB there for \
                 the kernel's own page tables",
                size_text(stack_size),
                size_text(MAX_STACK_SIZE)
            ),
        ));
    }
    let memory = match get(settings_table, "memory") {
        Some(v) => c.size("memory", "settings.memory", &v)?,
        None => DEFAULT_MEMORY,
    };
    if memory < MIN_MEMORY {
        return Err(c.err(
            "memory",
            "settings.memory",
            format!("{memory} bytes: must be at least 1M"),
        ));
    }
    if !heap_size.is_multiple_of(PAGE) {
        return Err(c.err(
            "heap_size",
            "settings.heap_size",
            format!(
                "{heap_size} bytes: must be 0 (all free RAM) or a multiple of 4096 (the heap \
                 takes whole pages)"
            ),
        ));
    }
    // The image ends at least a guard page and the boot stack past the load address; RAM up
    // to there is not free. The exact end is checked after the build (`image::build`, `run`).
    let image_end_at_least = IMAGE_BASE + PAGE + stack_size;
    let blame = |keys: &[&'static str]| {
        keys.iter()
            .copied()
            .find(|k| c.overridden.contains(*k))
            .unwrap_or(keys[0])
    };
    if memory <= image_end_at_least {
        let key = blame(&["memory", "stack_size"]);
        return Err(c.err(
            key,
            &format!("settings.{key}"),
            format!(
                "memory = {} is too small for stack_size = {}: the image (loaded at 1 MiB) \
                 ends beyond {}; raise memory to at least {} (e.g. --set memory={})",
                size_text(memory),
                size_text(stack_size),
                size_text(image_end_at_least),
                size_text(memory_for_image_end(image_end_at_least)),
                size_text(memory_for_image_end(image_end_at_least)),
            ),
        ));
    }
    if heap_size > memory - image_end_at_least {
        let key = blame(&["heap_size", "memory", "stack_size"]);
        let needed = memory_for_image_end(image_end_at_least + heap_size);
        return Err(c.err(
            key,
            &format!("settings.{key}"),
            format!(
                "heap_size = {} can never be met with memory = {}: the image (loaded at 1 MiB, \
                 with a {} boot stack) leaves less free RAM; raise memory to at least {}, or \
                 set heap_size = 0 for all free RAM",
                size_text(heap_size),
                size_text(memory),
                size_text(stack_size),
                size_text(needed),
            ),
        ));
    }

    let time_slice_ns = match get(settings_table, "time_slice") {
        Some(v) => c.duration("time_slice", "settings.time_slice", &v)?,
        None => DEFAULT_TIME_SLICE_NS,
    };
    if !(MIN_TIME_SLICE_NS..=MAX_TIME_SLICE_NS).contains(&time_slice_ns) {
        return Err(c.err(
            "time_slice",
            "settings.time_slice",
            format!("{time_slice_ns} ns: must be between 100us and 1s"),
        ));
    }
    let xen_guest = match get(settings_table, "xen_guest") {
        Some(v) => {
            let mode = c.string("xen_guest", "settings.xen_guest", &v)?;
            if !XEN_GUESTS.contains(&mode.as_str()) {
                return Err(c.err(
                    "xen_guest",
                    "settings.xen_guest",
                    format!(
                        "`{mode}` is not a Xen guest mode; valid choices: {}",
                        XEN_GUESTS.join(", ")
                    ),
                ));
            }
            mode
        }
        None => DEFAULT_XEN_GUEST.into(),
    };
    if xen_guest != DEFAULT_XEN_GUEST && platform != "xen" {
        return Err(c.err(
            "xen_guest",
            "settings.xen_guest",
            format!(
                "`{xen_guest}` needs platform `xen` (platform is `{platform}`); set \
                 platform=xen or leave xen_guest unset (default `{DEFAULT_XEN_GUEST}`)"
            ),
        ));
    }
    let slot_of = |s: &str| slots.iter().find(|(k, _)| k == s).map(|(_, v)| v.as_str());
    if let (Some(scheduler), Some("none")) = (slot_of("scheduler"), slot_of("allocator"))
        && scheduler != "none"
    {
        let key = if c.overridden.contains("scheduler") {
            "scheduler"
        } else {
            "allocator"
        };
        return Err(c.err(
            key,
            &format!("slots.{key}"),
            format!(
                "scheduler `{scheduler}` needs a heap (thread stacks, tasks), but allocator is \
                 `none`; pick an allocator (bump, buddy, talc) or scheduler `none`"
            ),
        ));
    }

    let budgets_table = sub_table(name, table, "budgets")?;
    check_keys(name, budgets_table, "budgets", BUDGET_KEYS)?;
    let positive_size = |key: &str| -> Result<Option<u64>> {
        let qualified = format!("budgets.{key}");
        match get(budgets_table, key) {
            None => Ok(None),
            Some(v) => match c.size(key, &qualified, &v)? {
                0 => Err(c.err(key, &qualified, "a budget of 0 bytes can never be met")),
                n => Ok(Some(n)),
            },
        }
    };
    let budgets = Budgets {
        image_bytes: positive_size("image_bytes")?,
        min_memory: positive_size("min_memory")?,
        boot_ratio: get(budgets_table, "boot_ratio")
            .map(|v| c.ratio("boot_ratio", "budgets.boot_ratio", &v))
            .transpose()?,
    };

    Ok(Profile {
        name: name.to_string(),
        description,
        platform,
        slots,
        settings: Settings {
            log_level,
            heap_size,
            stack_size,
            memory,
            time_slice_ns,
            xen_guest,
        },
        budgets,
        overrides: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACADE: &str = r#"
[package]
name = "stardust"

[features]
default = []
platform-kvm = ["dep:platform-kvm"]
allocator-none = []
allocator-bump = ["dep:alloc-bump"]
scheduler-none = []
scheduler-coop = []
console-serial = []
console-debugcon = []
"#;

    const DEFAULT: &str = r#"
description = "the default profile"
platform = "kvm"

[slots]
allocator = "bump"
scheduler = "none"
console = "serial"

[settings]
log_level = "info"
heap_size = 0
stack_size = "64K"
memory = "32M"

[budgets]
image_bytes = 61440
min_memory = "4M"
boot_ratio = 1.10
"#;

    fn catalog() -> Catalog {
        Catalog::from_manifest(FACADE).expect("test manifest parses")
    }

    fn parse(text: &str, sets: &[&str]) -> Result<Profile> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Profile::parse("default", text, &sets, &catalog())
    }

    fn err(text: &str, sets: &[&str]) -> String {
        parse(text, sets).expect_err("must fail").to_string()
    }

    #[test]
    fn catalog_reads_features_in_declaration_order() {
        let c = catalog();
        assert_eq!(
            c.slot_names().collect::<Vec<_>>(),
            ["platform", "allocator", "scheduler", "console"]
        );
        assert_eq!(c.values("allocator").expect("slot"), ["none", "bump"]);
        assert_eq!(c.values("console").expect("slot"), ["serial", "debugcon"]);
        assert!(c.values("default").is_none());
    }

    #[test]
    fn catalog_splits_at_first_dash() {
        let c = Catalog::from_features(["net-virtio-net", "test", "-x", "y-"]);
        assert_eq!(c.slot_names().collect::<Vec<_>>(), ["net"]);
        assert_eq!(c.values("net").expect("slot"), ["virtio-net"]);
    }

    #[test]
    fn parses_the_contract_example() {
        let p = parse(DEFAULT, &[]).expect("valid profile");
        assert_eq!(p.platform, "kvm");
        assert_eq!(p.slot("allocator"), Some("bump"));
        assert_eq!(p.settings.stack_size, 65536);
        assert_eq!(p.settings.memory, 32 << 20);
        assert_eq!(p.budgets.image_bytes, Some(61440));
        assert_eq!(p.budgets.min_memory, Some(4 << 20));
        assert_eq!(p.budgets.boot_ratio, Some(1.10));
        assert_eq!(
            p.features(),
            [
                "stardust/platform-kvm",
                "stardust/allocator-bump",
                "stardust/scheduler-none",
                "stardust/console-serial"
            ]
        );
        assert_eq!(
            p.env(),
            [
                ("STARDUST_LOG_LEVEL".to_string(), "info".to_string()),
                ("STARDUST_HEAP_SIZE".to_string(), "0".to_string()),
                ("STARDUST_STACK_SIZE".to_string(), "65536".to_string()),
                ("STARDUST_TIME_SLICE_NS".to_string(), "10000000".to_string()),
            ]
        );
        assert_eq!(p.tag(), "default");
    }

    #[test]
    fn settings_have_defaults_and_budgets_are_optional() {
        let text = "platform = \"kvm\"\n[slots]\nallocator=\"none\"\nscheduler=\"none\"\nconsole=\"debugcon\"\n";
        let p = parse(text, &[]).expect("valid");
        assert_eq!(p.settings.log_level, "info");
        assert_eq!(p.settings.stack_size, 64 * 1024);
        assert_eq!(p.budgets, Budgets::default());
    }

    #[test]
    fn unknown_keys_are_rejected_with_choices() {
        let e = err(&DEFAULT.replace("heap_size = 0", "heap = 0"), &[]);
        assert!(e.contains("unknown key `heap` in [settings]"), "{e}");
        assert!(
            e.contains("log_level, heap_size, stack_size, memory"),
            "{e}"
        );

        let e = err(&format!("colour = \"red\"\n{DEFAULT}"), &[]);
        assert!(e.contains("unknown top-level key `colour`"), "{e}");

        let e = err(
            &DEFAULT.replace("scheduler = \"none\"", "schedular = \"none\""),
            &[],
        );
        assert!(e.contains("unknown slot `schedular`"), "{e}");
        assert!(e.contains("allocator, scheduler, console"), "{e}");

        let e = err(&DEFAULT.replace("boot_ratio", "boot_ms"), &[]);
        assert!(e.contains("unknown key `boot_ms` in [budgets]"), "{e}");
        assert!(
            e.contains("valid keys: image_bytes, min_memory, boot_ratio"),
            "{e}"
        );

        // The issue text says `[budget]`; the table is `[budgets]`.
        let e = err(&DEFAULT.replace("[budgets]", "[budget]"), &[]);
        assert!(
            e.contains("unknown top-level key `budget` (did you mean [budgets]?)"),
            "{e}"
        );
    }

    #[test]
    fn the_universal_platform_is_universal_and_pvh_is_refused_naming_it() {
        // The real facade: its features are the valid slot values.
        let facade = Catalog::from_manifest(include_str!("../../crates/stardust/Cargo.toml"))
            .expect("the facade's manifest parses");
        let universal = DEFAULT
            .replace("platform = \"kvm\"", "platform = \"universal\"")
            .replace("console = \"serial\"", "console = \"auto\"");
        let p = Profile::parse("universal", &universal, &[], &facade).expect("universal");
        assert!(
            p.features()
                .contains(&"stardust/platform-universal".to_string()),
            "{:?}",
            p.features()
        );
        let e = Profile::parse(
            "old",
            &universal.replace("platform = \"universal\"", "platform = \"pvh\""),
            &[],
            &facade,
        )
        .expect_err("`pvh` is no platform any more")
        .to_string();
        assert!(e.contains("`pvh`") && e.contains("universal"), "{e}");
    }

    fn xen_catalog() -> Catalog {
        let facade = FACADE.replace(
            "platform-kvm = [\"dep:platform-kvm\"]",
            "platform-kvm = [\"dep:platform-kvm\"]\nplatform-xen = []\nconsole-xen = []\n\
             xen_guest_pvh = []",
        );
        Catalog::from_manifest(&facade).expect("catalog")
    }

    #[test]
    fn xen_guest_pvh_adds_its_feature_and_is_in_the_tag() {
        let catalog = xen_catalog();
        // The feature has no dash: it is not a slot.
        assert!(!catalog.slot_names().any(|s| s.starts_with("xen")));
        let sets = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = Profile::parse(
            "default",
            DEFAULT,
            &sets(&["platform=xen", "xen_guest=pvh"]),
            &catalog,
        )
        .expect("xen pvh profile");
        assert_eq!(p.settings.xen_guest, "pvh");
        assert!(p.xen_pvh());
        let features = p.features();
        assert_eq!(
            features.first().map(String::as_str),
            Some("stardust/platform-xen")
        );
        assert_eq!(
            features.last().map(String::as_str),
            Some("stardust/xen_guest_pvh")
        );
        assert!(p.tag().contains("+xen_guest-pvh"), "{}", p.tag());

        // The default is PV: no extra feature.
        let pv = Profile::parse("default", DEFAULT, &sets(&["platform=xen"]), &catalog)
            .expect("xen pv profile");
        assert_eq!(pv.settings.xen_guest, "pv");
        assert!(!pv.xen_pvh());
        assert!(!pv.features().iter().any(|f| f.contains("xen_guest")));
        let explicit = Profile::parse(
            "default",
            DEFAULT,
            &sets(&["platform=xen", "xen_guest=pv"]),
            &catalog,
        )
        .expect("explicit pv");
        assert_eq!(explicit.features(), pv.features());

        // In the profile file too.
        let text = DEFAULT
            .replace("platform = \"kvm\"", "platform = \"xen\"")
            .replace("console = \"serial\"", "console = \"xen\"")
            .replace("memory = \"32M\"", "memory = \"32M\"\nxen_guest = \"pvh\"");
        let p = Profile::parse("xenpvh", &text, &[], &catalog).expect("file setting");
        assert!(p.features().contains(&"stardust/xen_guest_pvh".to_string()));
    }

    #[test]
    fn xen_guest_is_validated() {
        let catalog = xen_catalog();
        let e = Profile::parse(
            "default",
            DEFAULT,
            &["platform=xen".into(), "xen_guest=hvm".into()],
            &catalog,
        )
        .expect_err("hvm is not a mode")
        .to_string();
        assert!(
            e.contains("xen_guest (set on the command line): `hvm` is not a Xen guest mode; valid choices: pv, pvh"),
            "{e}"
        );
        let e = Profile::parse("default", DEFAULT, &["xen_guest=pvh".into()], &catalog)
            .expect_err("pvh on kvm")
            .to_string();
        assert!(
            e.contains("`pvh` needs platform `xen` (platform is `kvm`)"),
            "{e}"
        );
        let e = err(
            &DEFAULT.replace("memory = \"32M\"", "xen_guest = \"pvh\""),
            &[],
        );
        assert!(
            e.contains("profile `default`: settings.xen_guest: `pvh` needs platform `xen`"),
            "{e}"
        );
        let e = err(&DEFAULT.replace("memory = \"32M\"", "xen_guest = 1"), &[]);
        assert!(e.contains("settings.xen_guest"), "{e}");
        // `pv` is the default and fits every platform.
        let p = parse(DEFAULT, &["xen_guest=pv"]).expect("pv on kvm");
        assert!(!p.xen_pvh());
    }

    #[test]
    fn a_platform_on_the_command_line_brings_its_console() {
        let facade = FACADE.replace(
            "platform-kvm = [\"dep:platform-kvm\"]",
            "platform-kvm = [\"dep:platform-kvm\"]\nplatform-xen = []\nconsole-xen = []",
        );
        let catalog = Catalog::from_manifest(&facade).expect("catalog");
        let p = Profile::parse("default", DEFAULT, &["platform=xen".into()], &catalog)
            .expect("xen profile");
        assert_eq!(p.slot("console"), Some("xen"));
        assert!(
            p.tag().ends_with("+platform-xen+console-xen"),
            "{}",
            p.tag()
        );
        let e = Profile::parse(
            "default",
            DEFAULT,
            &["platform=xen".into(), "console=serial".into()],
            &catalog,
        )
        .expect_err("serial on xen")
        .to_string();
        assert!(
            e.contains(
                "console `serial` is not available on platform `xen`; valid choices there: xen"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_slot_values_list_the_features() {
        let e = err(&DEFAULT.replace("\"bump\"", "\"talc\""), &[]);
        assert!(e.contains("slots.allocator"), "{e}");
        assert!(
            e.contains("`talc` is not an available allocator; valid choices: none, bump"),
            "{e}"
        );

        let e = err(DEFAULT, &["allocator=talc"]);
        assert!(e.starts_with("allocator (set on the command line):"), "{e}");

        let e = err(DEFAULT, &["platform=xen"]);
        assert!(
            e.contains("`xen` is not an available platform; valid choices: kvm"),
            "{e}"
        );
    }

    #[test]
    fn time_slice_is_a_checked_duration() {
        let p = parse(DEFAULT, &["time_slice=500us"]).expect("valid");
        assert_eq!(p.settings.time_slice_ns, 500_000);
        assert!(
            p.env()
                .contains(&("STARDUST_TIME_SLICE_NS".into(), "500000".into()))
        );
        assert_eq!(
            parse(DEFAULT, &[]).expect("valid").settings.time_slice_ns,
            10_000_000
        );
        let e = err(DEFAULT, &["time_slice=10 fortnights"]);
        assert!(e.contains("unknown unit `fortnights`"), "{e}");
        let e = err(DEFAULT, &["time_slice=5us"]);
        assert!(e.contains("between 100us and 1s"), "{e}");
        assert_eq!(parse_duration_ns("2s"), Ok(2_000_000_000));
        assert!(parse_duration_ns("ms").is_err());
    }

    #[test]
    fn a_scheduler_needs_an_allocator() {
        let e = err(DEFAULT, &["allocator=none", "scheduler=coop"]);
        assert!(e.contains("scheduler `coop` needs a heap"), "{e}");
        let e = err(
            &DEFAULT
                .replace("\"bump\"", "\"none\"")
                .replace("scheduler = \"none\"", "scheduler = \"coop\""),
            &[],
        );
        assert!(e.contains("profile `default`: slots.allocator"), "{e}");
        parse(DEFAULT, &["scheduler=coop"]).expect("bump + coop is fine");
    }

    #[test]
    fn missing_slot_or_platform_is_an_error() {
        let e = err(&DEFAULT.replace("console = \"serial\"", ""), &[]);
        assert!(e.contains("slot `console` is not set"), "{e}");
        assert!(e.contains("serial, debugcon"), "{e}");
        let e = err(&DEFAULT.replace("platform = \"kvm\"", ""), &[]);
        assert!(
            e.contains("`platform` is not set; valid choices: kvm"),
            "{e}"
        );
    }

    #[test]
    fn bad_numbers_are_rejected() {
        let e = err(
            &DEFAULT.replace("stack_size = \"64K\"", "stack_size = \"64Q\""),
            &[],
        );
        assert!(e.contains("settings.stack_size: bad size `64Q`"), "{e}");
        let e = err(&DEFAULT.replace("heap_size = 0", "heap_size = -4"), &[]);
        assert!(e.contains("settings.heap_size"), "{e}");
        let e = err(&DEFAULT.replace("heap_size = 0", "heap_size = true"), &[]);
        assert!(e.contains("expected a byte count"), "{e}");
        let e = err(DEFAULT, &["stack_size=10000"]);
        assert!(e.contains("multiple of 4096"), "{e}");
        let e = err(DEFAULT, &["stack_size=8K"]);
        assert!(e.contains("at least 16K"), "{e}");
        let e = err(DEFAULT, &["image_bytes=0"]);
        assert!(
            e.contains("image_bytes (set on the command line): a budget of 0 bytes"),
            "{e}"
        );
        let e = err(&DEFAULT.replace("\"4M\"", "\"4X\""), &[]);
        assert!(e.contains("budgets.min_memory: bad size `4X`"), "{e}");
        let e = err(&DEFAULT.replace("1.10", "-1.0"), &[]);
        assert!(
            e.contains("budgets.boot_ratio: expected a positive number"),
            "{e}"
        );
        let e = err(DEFAULT, &["boot_ratio=fast"]);
        assert!(
            e.contains("boot_ratio (set on the command line): expected a positive number"),
            "{e}"
        );
        let e = err(DEFAULT, &["log_level=loud"]);
        assert!(
            e.contains("valid choices: off, error, warn, info, debug, trace"),
            "{e}"
        );
        let e = err(DEFAULT, &["memory=512K"]);
        assert!(e.contains("at least 1M"), "{e}");
        let e = err("platform = ", &[]);
        assert!(
            e.contains("profile `default` (profiles/default.toml)"),
            "{e}"
        );
    }

    #[test]
    fn settings_are_bounded_by_what_the_image_can_do() {
        // The boot page tables map the first GiB: the image (from 1 MiB) must end below it.
        for big in ["1G", "2G", "1023M", "1024G"] {
            let e = err(DEFAULT, &[&format!("stack_size={big}"), "memory=4G"]);
            assert!(
                e.contains("stack_size (set on the command line)")
                    && e.contains("at most 1022M")
                    && e.contains("first GiB"),
                "{big}: {e}"
            );
        }
        let p = parse(DEFAULT, &["stack_size=1022M", "memory=1100M"]).expect("at the limit");
        assert_eq!(p.settings.stack_size, MAX_STACK_SIZE);
        // memory must hold the image: the advice is what it needs, not a fixed 4M.
        let e = err(DEFAULT, &["stack_size=64M"]);
        assert!(
            e.contains("stack_size (set on the command line): memory = 32M is too small")
                && e.contains("--set memory=67M"),
            "{e}"
        );
        let e = err(DEFAULT, &["stack_size=1000M", "memory=1000M"]);
        assert!(
            e.contains("memory (set on the command line)") && e.contains("--set memory=1003M"),
            "{e}"
        );
        parse(DEFAULT, &["stack_size=1000M", "memory=1003M"]).expect("enough memory");
        let e = err(DEFAULT, &["memory=1M"]);
        assert!(
            e.contains("too small") && e.contains("--set memory=3M"),
            "{e}"
        );
        // heap_size: whole pages, and no more than memory can give.
        let e = err(DEFAULT, &["heap_size=100"]);
        assert!(
            e.contains("heap_size (set on the command line)") && e.contains("multiple of 4096"),
            "{e}"
        );
        let e = err(DEFAULT, &["heap_size=64M"]);
        assert!(
            e.contains("heap_size = 64M can never be met with memory = 32M")
                && e.contains("at least 67M")
                && e.contains("heap_size = 0"),
            "{e}"
        );
        let heap_16m = DEFAULT.replace("heap_size = 0", "heap_size = \"16M\"");
        let e = err(&heap_16m, &["memory=16M"]);
        assert!(e.contains("memory (set on the command line)"), "{e}");
        let e = err(&heap_16m, &["memory=16M", "heap_size=16M"]);
        assert!(e.contains("heap_size (set on the command line)"), "{e}");
        parse(DEFAULT, &["heap_size=16M", "memory=18M"]).expect("room for the heap");
        assert_eq!(memory_for_image_end(0x122000), 3 << 20);
        assert_eq!(memory_for_image_end(2 << 20), 3 << 20);
        assert_eq!(size_text(MAX_STACK_SIZE), "1022M");
        assert_eq!(size_text(4097), "4097");
        assert_eq!(size_text(64 << 10), "64K");
        assert_eq!(size_text(2 << 30), "2G");
    }

    #[test]
    fn set_overrides_flat_and_dotted_keys() {
        let p = parse(
            DEFAULT,
            &[
                "allocator=none",
                "settings.heap_size=4M",
                "image_bytes = 32K",
                "boot_ratio=1.5",
            ],
        )
        .expect("valid");
        assert_eq!(p.slot("allocator"), Some("none"));
        assert_eq!(p.settings.heap_size, 4 << 20);
        assert_eq!(p.budgets.image_bytes, Some(32 << 10));
        assert_eq!(p.budgets.boot_ratio, Some(1.5));
        assert_eq!(
            p.tag(),
            "default+allocator-none+heap_size-4M+image_bytes-32K+boot_ratio-1.5"
        );

        // The last --set of a key wins, and appears once in the tag.
        let p = parse(DEFAULT, &["slots.console=debugcon", "console=serial"]).expect("valid");
        assert_eq!(p.slot("console"), Some("serial"));
        assert_eq!(p.tag(), "default+console-serial");

        // Overrides may add a section that the file lacks.
        let bare = "platform = \"kvm\"\n[slots]\nallocator=\"none\"\nscheduler=\"none\"\nconsole=\"serial\"\n";
        let p = parse(bare, &["min_memory=2M", "description=a b/c"]).expect("valid");
        assert_eq!(p.budgets.min_memory, Some(2 << 20));
        assert_eq!(p.tag(), "default+min_memory-2M+description-a_b_c");
    }

    #[test]
    fn set_parsing_errors() {
        assert!(parse_override("allocator").is_err());
        assert!(parse_override("=bump").is_err());
        assert_eq!(
            parse_override(" a = b=c ").expect("ok"),
            ("a".into(), "b=c".into())
        );
        let e = err(DEFAULT, &["colour=red"]);
        assert!(e.contains("unknown key `colour`; valid keys: description, platform (top level), allocator, scheduler, console (slots)"), "{e}");
        let e = err(DEFAULT, &["settings.allocator=bump"]);
        assert!(e.contains("unknown key `settings.allocator`"), "{e}");
        let e = err(DEFAULT, &["slots.platform=kvm"]);
        assert!(e.contains("unknown key `slots.platform`"), "{e}");
        assert_eq!(
            resolve_key("budgets.image_bytes", &catalog()).expect("ok"),
            (Section::Budgets, "image_bytes".into())
        );
        assert_eq!(
            resolve_key("platform", &catalog()).expect("ok"),
            (Section::Top, "platform".into())
        );
    }

    #[test]
    fn size_strings() {
        assert_eq!(parse_size("0").expect("ok"), 0);
        assert_eq!(parse_size("61440").expect("ok"), 61440);
        assert_eq!(parse_size("61_440").expect("ok"), 61440);
        assert_eq!(parse_size("64K").expect("ok"), 65536);
        assert_eq!(parse_size("64k").expect("ok"), 65536);
        assert_eq!(parse_size("64KiB").expect("ok"), 65536);
        assert_eq!(parse_size(" 4M ").expect("ok"), 4 << 20);
        assert_eq!(parse_size("1G").expect("ok"), 1 << 30);
        assert_eq!(parse_size("512B").expect("ok"), 512);
        for bad in [
            "",
            "K",
            "4T",
            "-4",
            "1.5M",
            "4 M",
            "99999999999999999999",
            "17179869184G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn qemu_memory_strings() {
        assert_eq!(qemu_memory_arg(32 << 20), "32M");
        assert_eq!(qemu_memory_arg((4 << 20) + 512 * 1024), "4608K");
    }
}
