//! The slots of a Stardust image, stated once: their values, defaults and rules, read from the
//! facade's `crates/stardust/Cargo.toml` by xtask (to validate profiles) and by the kernel's
//! `build.rs` (to refuse an impossible set of features under plain `cargo build`).
//!
//! - **Values**: the facade's features named `<slot>-<value>` (split at the first `-`); a feature
//!   without a dash (`default`, `xen_guest_pvh`) is not a slot value.
//! - **Defaults**: `[package.metadata.stardust.defaults]`, `key = value` for the slots and settings
//!   a profile may leave out. A slot without a default there takes its first value that the rules
//!   allow with the other slots (the platform's own console). A slot whose default is `none` may
//!   also be left out of a plain cargo line's features: no feature means `none`.
//! - **Rules**: `[[package.metadata.stardust.rules]]`, each `when` = the features it applies to
//!   (any of them on), `slot` = the slot it constrains, and `one_of` (the values that slot may
//!   take then) or `none_of` (those it may not), plus `needs`, what the features need (for the
//!   message).
//!
//! ```
//! let catalog = slots::Catalog::from_manifest(r#"
//! [features]
//! platform-kvm = []
//! allocator-none = []
//! allocator-bump = []
//! scheduler-none = []
//! scheduler-coop = []
//! [package.metadata.stardust.defaults]
//! allocator = "bump"
//! [[package.metadata.stardust.rules]]
//! when = ["scheduler-coop"]
//! slot = "allocator"
//! none_of = ["none"]
//! needs = "a heap"
//! "#).unwrap();
//! let broken = catalog.broken(&["platform-kvm", "allocator-none", "scheduler-coop"]).unwrap();
//! assert_eq!(
//!     catalog.message(&broken, &["platform-kvm", "allocator-none", "scheduler-coop"]),
//!     "scheduler `coop` needs a heap, but allocator is `none`; pick allocator `bump`, or scheduler `none`"
//! );
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(all(feature = "std", not(test)))]
extern crate std;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Deserialize;

/// The slot that is a top-level key of a profile rather than a `[slots]` entry.
pub const PLATFORM: &str = "platform";

/// A rule between slots (`[[package.metadata.stardust.rules]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The features it applies to: `<slot>-<value>`, or a feature that is not a slot value.
    pub when: Vec<String>,
    /// The slot it constrains.
    pub slot: String,
    /// The values `slot` may take (empty: any but `none_of`).
    #[serde(default)]
    pub one_of: Vec<String>,
    /// The values `slot` may not take.
    #[serde(default)]
    pub none_of: Vec<String>,
    /// What the features need, for the message ("a heap (thread stacks, tasks)").
    #[serde(default)]
    pub needs: Option<String>,
}

impl Rule {
    /// Whether the constrained slot may take `value` under this rule.
    pub fn allows(&self, value: &str) -> bool {
        (self.one_of.is_empty() || self.one_of.iter().any(|v| v == value))
            && !self.none_of.iter().any(|v| v == value)
    }
}

/// A rule that a set of features breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken<'a> {
    /// The rule.
    pub rule: &'a Rule,
    /// The feature that brought it (one of its `when`).
    pub trigger: &'a str,
    /// The value of the constrained slot.
    pub value: &'a str,
}

/// The slots, their values, defaults and rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    slots: Vec<(String, Vec<String>)>,
    other_features: Vec<String>,
    defaults: BTreeMap<String, toml::Value>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    features: BTreeMap<toml::Spanned<String>, toml::Value>,
    #[serde(default)]
    package: Option<Package>,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    stardust: Option<Stardust>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Stardust {
    #[serde(default)]
    defaults: BTreeMap<String, toml::Value>,
    #[serde(default)]
    rules: Vec<Rule>,
}

impl Catalog {
    /// Builds the catalog from feature names alone (no defaults, no rules): `<slot>-<value>` adds
    /// `value` to `slot`; names without a `-` are not slot values.
    pub fn from_features<'a>(features: impl IntoIterator<Item = &'a str>) -> Catalog {
        let mut catalog = Catalog::default();
        for feature in features {
            match split(feature) {
                Some((slot, value)) => match catalog.slots.iter_mut().find(|(s, _)| s == slot) {
                    Some((_, values)) => values.push(value.to_string()),
                    None => catalog
                        .slots
                        .push((slot.to_string(), alloc::vec![value.to_string()])),
                },
                None => catalog.other_features.push(feature.to_string()),
            }
        }
        catalog
    }

    /// Reads a `Cargo.toml`: its `[features]` in declaration order, and its
    /// `[package.metadata.stardust]` defaults and rules, which must name its slots and values.
    pub fn from_manifest(text: &str) -> Result<Catalog, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut names: Vec<_> = manifest.features.keys().collect();
        names.sort_by_key(|k| k.span().start);
        let mut catalog = Catalog::from_features(names.into_iter().map(|k| k.get_ref().as_str()));
        let stardust = manifest
            .package
            .and_then(|p| p.metadata)
            .and_then(|m| m.stardust)
            .unwrap_or_default();
        catalog.defaults = stardust.defaults;
        catalog.rules = stardust.rules;
        catalog.check_metadata()?;
        Ok(catalog)
    }

    fn check_metadata(&self) -> Result<(), String> {
        let here = "[package.metadata.stardust]";
        for (key, value) in &self.defaults {
            if let Some(values) = self.values(key)
                && !value
                    .as_str()
                    .is_some_and(|v| values.iter().any(|x| x == v))
            {
                let value = value
                    .as_str()
                    .map_or_else(|| format!("{value:?}"), |v| format!("{v:?}"));
                return Err(format!(
                    "{here} defaults: {key} = {value} is not a {key}; valid: {}",
                    values.join(", ")
                ));
            }
        }
        for rule in &self.rules {
            let values = self
                .values(&rule.slot)
                .ok_or_else(|| format!("{here} rules: `{}` is not a slot", rule.slot))?;
            for v in rule.one_of.iter().chain(&rule.none_of) {
                if !values.contains(v) {
                    return Err(format!("{here} rules: `{v}` is not a {}", rule.slot));
                }
            }
            for f in &rule.when {
                if !self.is_feature(f) {
                    return Err(format!("{here} rules: `{f}` is not a feature"));
                }
            }
        }
        Ok(())
    }

    fn is_feature(&self, feature: &str) -> bool {
        match split(feature) {
            Some((slot, value)) => self
                .values(slot)
                .is_some_and(|v| v.iter().any(|x| x == value)),
            None => self.other_features.iter().any(|f| f == feature),
        }
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

    /// Whether `slot` is a slot.
    pub fn has_slot(&self, slot: &str) -> bool {
        self.values(slot).is_some()
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The declared default of a slot or setting.
    pub fn default_of(&self, key: &str) -> Option<&toml::Value> {
        self.defaults.get(key)
    }

    /// The value `slot` takes when a profile leaves it out, the other slots being as `features`
    /// say: its declared default, else its first value that the rules allow.
    pub fn slot_default<'a>(&'a self, slot: &str, features: &[&str]) -> Option<&'a str> {
        match self.default_of(slot).and_then(toml::Value::as_str) {
            Some(value) => Some(value),
            None => self.fitting(slot, features).into_iter().next(),
        }
    }

    /// The first rule that `features` (the enabled features, without `stardust/`) break.
    pub fn broken<'a>(&'a self, features: &[&str]) -> Option<Broken<'a>> {
        self.rules.iter().find_map(|rule| {
            let trigger = rule.when.iter().find(|f| features.contains(&f.as_str()))?;
            let value = self.value_in(&rule.slot, features)?;
            (!rule.allows(value)).then_some(Broken {
                rule,
                trigger,
                value,
            })
        })
    }

    /// The value of `slot` in `features` (its first `<slot>-<value>` feature).
    pub fn value_in<'a>(&'a self, slot: &str, features: &[&str]) -> Option<&'a str> {
        let values = self.values(slot)?;
        values
            .iter()
            .find(|v| {
                features
                    .iter()
                    .any(|f| split(f) == Some((slot, v.as_str())))
            })
            .map(String::as_str)
    }

    /// The values of `slot` that no rule refuses with the other slots as `features` say.
    pub fn fitting<'a>(&'a self, slot: &str, features: &[&str]) -> Vec<&'a str> {
        let values = self.values(slot).unwrap_or(&[]);
        values
            .iter()
            .filter(|value| {
                let feature = format!("{slot}-{value}");
                let mut with: Vec<&str> = features
                    .iter()
                    .copied()
                    .filter(|f| split(f).is_none_or(|(s, _)| s != slot))
                    .collect();
                with.push(&feature);
                !self.rules.iter().any(|rule| {
                    let involved = rule.slot == slot || rule.when.contains(&feature);
                    involved
                        && rule.when.iter().any(|f| with.contains(&f.as_str()))
                        && self
                            .value_in(&rule.slot, &with)
                            .is_some_and(|v| !rule.allows(v))
                })
            })
            .map(String::as_str)
            .collect()
    }

    /// What is wrong, in words: `console `serial` is not available on platform `xen`; valid
    /// choices there: xen`, or with the rule's `needs`, `scheduler `coop` needs a heap, but
    /// allocator is `none`; pick allocator `bump`, or scheduler `none``.
    pub fn message(&self, broken: &Broken<'_>, features: &[&str]) -> String {
        let rule = broken.rule;
        let (slot, value) = split(broken.trigger).unwrap_or(("feature", broken.trigger));
        let fitting = self.fitting(slot, features);
        match &rule.needs {
            None => format!(
                "{slot} `{value}` is not available on {} `{}`; valid choices there: {}",
                rule.slot,
                broken.value,
                fitting.join(", ")
            ),
            Some(needs) => {
                let allowed: Vec<String> = self
                    .values(&rule.slot)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|v| rule.allows(v))
                    .map(|v| format!("`{v}`"))
                    .collect();
                let mut text = format!(
                    "{slot} `{value}` needs {needs}, but {} is `{}`; pick {} {}",
                    rule.slot,
                    broken.value,
                    rule.slot,
                    allowed.join(" or ")
                );
                if !fitting.is_empty() {
                    let fitting: Vec<String> = fitting.iter().map(|v| format!("`{v}`")).collect();
                    text.push_str(&format!(", or {slot} {}", fitting.join(" or ")));
                }
                text
            }
        }
    }

    /// Everything wrong with a set of enabled features under plain cargo: a slot with no value
    /// or two, and every broken rule; `enabled` says whether a feature is on.
    pub fn check_features(&self, enabled: impl Fn(&str) -> bool) -> Vec<String> {
        let mut on: Vec<String> = self
            .other_features
            .iter()
            .filter(|f| enabled(f))
            .cloned()
            .collect();
        let mut errors = Vec::new();
        for (slot, values) in &self.slots {
            let features: Vec<String> = values.iter().map(|v| format!("{slot}-{v}")).collect();
            let chosen: Vec<&String> = features.iter().filter(|f| enabled(f)).collect();
            match chosen.len() {
                // A slot whose default is `none` may be left out (`net_device`): plain cargo
                // lines need not name every device slot.
                0 if self.defaults.get(slot).and_then(|v| v.as_str()) == Some("none")
                    && values.iter().any(|v| v == "none") =>
                {
                    on.push(format!("{slot}-none"));
                }
                0 => errors.push(format!(
                    "no {slot} selected: build with `cargo xtask build APP --profile P` (its \
                     `--print-cargo` shows the plain cargo command), or enable one of the \
                     `stardust` features {}",
                    features.join(", ")
                )),
                1 => {}
                _ => errors.push(format!(
                    "two {slot}s selected ({}): enable exactly one of {}",
                    chosen
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    features.join(", ")
                )),
            }
            on.extend(chosen.into_iter().cloned());
        }
        if errors.is_empty() {
            let on: Vec<&str> = on.iter().map(String::as_str).collect();
            for rule in &self.rules {
                let trigger = rule.when.iter().find(|f| on.contains(&f.as_str()));
                if let (Some(trigger), Some(value)) = (trigger, self.value_in(&rule.slot, &on))
                    && !rule.allows(value)
                {
                    let broken = Broken {
                        rule,
                        trigger,
                        value,
                    };
                    errors.push(self.message(&broken, &on));
                }
            }
        }
        errors
    }
}

/// `<slot>-<value>` split at the first dash, or `None` for a feature that is not a slot value.
pub fn split(feature: &str) -> Option<(&str, &str)> {
    feature
        .split_once('-')
        .filter(|(slot, value)| !slot.is_empty() && !value.is_empty())
}

/// Parses a log level name (`off`, `error`, `warn`, `info`, `debug`, `trace`, any case): the
/// `log` crate's own names, which the kernel's `log=` option takes too.
pub fn log_level(name: &str) -> Option<log::LevelFilter> {
    name.parse().ok()
}

/// The log level names, lowercase, quietest first.
pub fn log_levels() -> Vec<String> {
    log::LevelFilter::iter()
        .map(|l| l.as_str().to_ascii_lowercase())
        .collect()
}

/// Parses a byte count: `65536`, `64K`, `4M`, `1G` (binary units; `KiB`/`KB`/`B` suffixes and
/// `_` separators accepted, case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "bad size `{s}` (expected a byte count like 65536, or a number with K, M or G, like \"64K\")"
        )
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

/// Parses a duration: nanoseconds, or a number with `ns`, `us`, `ms` or `s` (`"10ms"`).
pub fn parse_duration_ns(text: &str) -> Result<u64, String> {
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

/// A setting's default as the kernel's build scripts take it: a byte count (`heap_size`,
/// `stack_size`), nanoseconds (`time_slice`) or the string itself, as decimal text.
pub fn default_setting(catalog: &Catalog, key: &str) -> Option<String> {
    let value = catalog.default_of(key)?;
    match (key, value) {
        (_, toml::Value::Integer(i)) => Some(i.to_string()),
        ("time_slice", toml::Value::String(s)) => parse_duration_ns(s).ok().map(|n| n.to_string()),
        (_, toml::Value::String(s)) if key.ends_with("_size") => {
            parse_size(s).ok().map(|n| n.to_string())
        }
        (_, toml::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// For build scripts (feature `std`): reads the facade's manifest, `crates/stardust/Cargo.toml`,
/// seen from the crate at `manifest_dir` (a sibling under `crates/`), tells cargo to run the
/// script again when it changes, and returns its path and catalog. Panics, naming the file, when
/// it cannot be read or parsed: a build script has no better way to fail.
#[cfg(feature = "std")]
pub fn facade_for_build_script(manifest_dir: &str) -> (std::path::PathBuf, Catalog) {
    let facade = std::path::Path::new(manifest_dir).join("../stardust/Cargo.toml");
    std::println!("cargo:rerun-if-changed={}", facade.display());
    let text = std::fs::read_to_string(&facade)
        .unwrap_or_else(|e| panic!("reading {}: {e}", facade.display()));
    let catalog =
        Catalog::from_manifest(&text).unwrap_or_else(|e| panic!("{}: {e}", facade.display()));
    (facade, catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACADE: &str = include_str!("../../stardust/Cargo.toml");

    fn real() -> Catalog {
        Catalog::from_manifest(FACADE).expect("the facade's manifest is a valid catalog")
    }

    fn all_combinations(c: &Catalog) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = alloc::vec![Vec::new()];
        for slot in c.slot_names() {
            let mut next = Vec::new();
            for prefix in &out {
                for v in c.values(slot).unwrap_or(&[]) {
                    let mut p = prefix.clone();
                    p.push(format!("{slot}-{v}"));
                    next.push(p);
                }
            }
            out = next;
        }
        out
    }

    #[test]
    fn the_facade_declares_the_rules_it_had() {
        let c = real();
        let ok = |f: &[&str]| c.check_features(|x| f.contains(&x));
        assert!(
            ok(&[
                "platform-kvm",
                "allocator-talc",
                "scheduler-none",
                "console-serial"
            ])
            .is_empty()
        );
        let e = ok(&[
            "platform-kvm",
            "allocator-talc",
            "scheduler-none",
            "console-serial",
            "net_device-none",
            "net_device-virtio",
        ]);
        assert!(e[0].starts_with("two net_devices selected"), "{e:?}");
        let e = ok(&[
            "platform-xen",
            "allocator-talc",
            "scheduler-none",
            "console-xen",
            "net_device-virtio",
        ]);
        assert!(e[0].contains("net_device `virtio`"), "{e:?}");
        let e = ok(&[
            "platform-kvm",
            "allocator-none",
            "scheduler-coop",
            "console-serial",
        ]);
        assert!(e[0].contains("scheduler `coop` needs a heap"), "{e:?}");
        let e = ok(&[
            "platform-xen",
            "allocator-talc",
            "scheduler-none",
            "console-serial",
        ]);
        assert_eq!(
            e,
            ["console `serial` is not available on platform `xen`; valid choices there: xen"]
        );
        let e = ok(&[
            "platform-kvm",
            "allocator-talc",
            "scheduler-none",
            "console-auto",
            "xen_guest_pvh",
        ]);
        assert_eq!(e.len(), 2, "{e:?}");
        let e = ok(&[
            "allocator-talc",
            "allocator-bump",
            "scheduler-none",
            "console-serial",
        ]);
        assert!(e[0].starts_with("no platform selected"), "{e:?}");
        assert!(
            e[1].starts_with("two allocators selected (allocator-bump, allocator-talc)"),
            "{e:?}"
        );
        // Every platform has a console, and every default fits.
        for platform in c.values(PLATFORM).expect("platforms") {
            let f = format!("platform-{platform}");
            assert!(c.slot_default("console", &[&f]).is_some(), "{platform}");
        }
        assert_eq!(c.slot_default("console", &["platform-xen"]), Some("xen"));
        assert_eq!(c.slot_default("console", &["platform-kvm"]), Some("serial"));
        assert_eq!(
            c.fitting("console", &["platform-kvm"]),
            ["serial", "debugcon"]
        );
        assert_eq!(
            default_setting(&c, "time_slice").as_deref(),
            Some("10000000")
        );
        assert_eq!(default_setting(&c, "stack_size").as_deref(), Some("65536"));
        assert_eq!(default_setting(&c, "heap_size").as_deref(), Some("0"));
        assert_eq!(default_setting(&c, "log_level").as_deref(), Some("info"));
    }

    #[test]
    fn broken_and_check_features_agree_on_every_combination() {
        let c = real();
        let combos = all_combinations(&c);
        assert!(combos.len() > 50);
        let mut good = 0;
        for combo in &combos {
            let f: Vec<&str> = combo.iter().map(String::as_str).collect();
            let broken = c.broken(&f);
            let errors = c.check_features(|x| f.contains(&x));
            assert_eq!(broken.is_none(), errors.is_empty(), "{f:?}: {errors:?}");
            if let Some(b) = broken {
                assert_eq!(errors[0], c.message(&b, &f));
            } else {
                good += 1;
            }
        }
        // No device: kvm: 2 consoles, xen and pvh: 1; with 4 allocators and 4 schedulers less
        // the 3 schedulers without a heap: 4 * 13. Each device combination (net_device virtio
        // alone, block_device virtio alone, both, block with filesystem sdfs, all three: 5, a
        // filesystem needing a disk): kvm (2 consoles) and universal (1), 3 allocators with a
        // heap, 4 schedulers: 3 * 12 each. net_device netfront: xen (its one console), 3
        // allocators with a heap, 4 schedulers: 12; block_device blkfront the same, alone, with
        // filesystem sdfs, beside netfront, and all three: 4 * 12. net_device auto: universal
        // only (one console), alone, beside block_device virtio, and with sdfs too: 3 * 12.
        // block_device auto: universal only, with or without sdfs, beside net_device none,
        // virtio or auto: 6 * 12.
        assert_eq!(good, 4 * 13 + 5 * 3 * 12 + 12 + 4 * 12 + 3 * 12 + 6 * 12);
    }

    #[test]
    fn metadata_must_name_real_slots_and_values() {
        let base = "[features]\nplatform-kvm = []\nconsole-serial = []\n";
        let bad = |meta: &str| {
            Catalog::from_manifest(&format!("{base}[package.metadata.stardust]\n{meta}"))
                .expect_err("refused")
        };
        assert!(
            bad("defaults = { platform = \"xen\" }")
                .contains("platform = \"xen\" is not a platform")
        );
        let rule = |r: &str| bad(&format!("rules = [{{ {r} }}]"));
        assert!(
            rule("when = [\"console-serial\"], slot = \"cpu\"").contains("`cpu` is not a slot")
        );
        assert!(
            rule("when = [\"console-vga\"], slot = \"platform\"")
                .contains("`console-vga` is not a feature")
        );
        assert!(
            rule("when = [\"console-serial\"], slot = \"platform\", one_of = [\"xen\"]")
                .contains("`xen` is not a platform")
        );
        assert!(rule("when = [], slot = \"platform\", colour = 1").contains("colour"));
    }

    #[test]
    fn log_levels_are_the_log_crates() {
        assert_eq!(
            log_levels(),
            ["off", "error", "warn", "info", "debug", "trace"]
        );
        assert_eq!(log_level("WARN"), Some(log::LevelFilter::Warn));
        assert_eq!(log_level("loud"), None);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1_0"), Ok(10));
        assert!(parse_size("4T").is_err());
        assert_eq!(parse_duration_ns("10ms"), Ok(10_000_000));
        assert!(parse_duration_ns("ms").is_err());
    }
}
