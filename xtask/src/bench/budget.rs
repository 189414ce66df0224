//! Budgets: every figure the benches measure against the profile's `[budgets]` entry for it.
//!
//! Over budget, or no budget at all for a figure that was measured, is a [`Violation`]: the
//! report always shows them, and `--check` makes them fail the command. The message names the
//! profile, the app and the figure (the profile key), the measured value and the budget.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::boot::BootResult;
use super::memory::MemoryResult;
use super::size::SizeResult;
use crate::size::group;

/// A figure that exceeds its budget, or has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Profile tag (the profile name, plus `+key-value` per `--set`).
    pub profile: String,
    /// App.
    pub app: String,
    /// The budget key: `image_bytes`, `boot_ratio` or `min_memory`.
    pub figure: String,
    /// The measured value, with its unit.
    pub measured: String,
    /// The budget, with its unit (`None`: the profile has no budget for this figure).
    pub budget: Option<String>,
}

impl Violation {
    fn new(
        profile: &str,
        app: &str,
        figure: &str,
        measured: String,
        budget: Option<String>,
    ) -> Self {
        Violation {
            profile: profile.into(),
            app: app.into(),
            figure: figure.into(),
            measured,
            budget,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.profile.split('+').next().unwrap_or(&self.profile);
        match &self.budget {
            Some(b) => write!(
                f,
                "profile `{}` ({}): {} is {}, over its budget of {}",
                self.profile, self.app, self.figure, self.measured, b
            ),
            None => write!(
                f,
                "profile `{}` ({}): no {} budget (measured {}); add `{} = ...` to [budgets] in profiles/{file}.toml",
                self.profile, self.app, self.figure, self.measured, self.figure
            ),
        }
    }
}

fn bytes(n: u64) -> String {
    format!("{} bytes", group(n as i64))
}

fn kib(n: u64) -> String {
    format!("{} KiB", group(n.div_ceil(1024) as i64))
}

/// Checks every measured figure against its budget.
pub fn check(size: &[SizeResult], boot: &[BootResult], memory: &[MemoryResult]) -> Vec<Violation> {
    let mut out = Vec::new();
    for r in size {
        match r.budget {
            Some(b) if r.image_bytes <= b => {}
            b => out.push(Violation::new(
                &r.profile,
                &r.app,
                "image_bytes",
                bytes(r.image_bytes),
                b.map(bytes),
            )),
        }
    }
    for r in boot {
        // No ratio (a floor of 0 ms cannot happen with real boots): nothing to hold it against.
        let Some(ratio) = r.ratio_exit else { continue };
        match r.budget {
            Some(b) if ratio <= b => {}
            b => out.push(Violation::new(
                &r.profile,
                &r.app,
                "boot_ratio",
                format!("{ratio:.3} x the empty kernel"),
                b.map(|b| format!("{b:.2}")),
            )),
        }
    }
    for r in memory {
        let measured = match r.min_memory {
            Some(m) => kib(m),
            None => format!(
                "more than {} (does not boot with memory = its setting)",
                kib(r.ceiling)
            ),
        };
        match (r.min_memory, r.budget) {
            (Some(m), Some(b)) if m <= b => {}
            (_, b) => out.push(Violation::new(
                &r.profile,
                &r.app,
                "min_memory",
                measured,
                b.map(kib),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::boot::Timing;

    pub(crate) fn size(profile: &str, bytes: u64, budget: Option<u64>) -> SizeResult {
        SizeResult {
            profile: profile.into(),
            app: "hello".into(),
            image: "x.elf".into(),
            image_bytes: bytes,
            budget,
            baseline_bytes: None,
            crates: vec![],
        }
    }

    fn boot(ratio: f64, budget: Option<f64>) -> BootResult {
        let none = Timing {
            first_line_ms: None,
            exit_ms: None,
        };
        BootResult {
            profile: "default".into(),
            app: "hello".into(),
            machine: "q35+qboot".into(),
            accel: "tcg".into(),
            command: String::new(),
            empty: none.clone(),
            image: none,
            ratio_first_line: None,
            ratio_exit: Some(ratio),
            pair_ratios: None,
            budget,
            bootchart: None,
        }
    }

    fn memory(min: Option<u64>, budget: Option<u64>) -> MemoryResult {
        MemoryResult {
            profile: "minimal".into(),
            app: "hello".into(),
            machine: "q35+qboot".into(),
            accel: "tcg".into(),
            min_memory: min,
            image_end: 1 << 20,
            ceiling: 16 << 20,
            step: 64 << 10,
            probes: vec![],
            budget,
        }
    }

    #[test]
    fn within_budget_is_clean() {
        let v = check(
            &[size("minimal", 32768, Some(32768))],
            &[boot(1.05, Some(1.10))],
            &[memory(Some(1152 << 10), Some(1536 << 10))],
        );
        assert_eq!(v, []);
    }

    #[test]
    fn a_budget_set_too_low_names_the_profile_and_figure() {
        let v = check(&[size("minimal", 30000, Some(1000))], &[], &[]);
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].to_string(),
            "profile `minimal` (hello): image_bytes is 30,000 bytes, over its budget of 1,000 bytes"
        );
        let v = check(&[], &[boot(1.3, Some(1.1))], &[]);
        assert_eq!(
            v[0].to_string(),
            "profile `default` (hello): boot_ratio is 1.300 x the empty kernel, over its budget of 1.10"
        );
        let v = check(&[], &[], &[memory(Some(2 << 20), Some(1536 << 10))]);
        assert_eq!(
            v[0].to_string(),
            "profile `minimal` (hello): min_memory is 2,048 KiB, over its budget of 1,536 KiB"
        );
    }

    #[test]
    fn a_missing_budget_or_a_failed_boot_is_a_violation() {
        let v = check(&[size("new+heap_size-4M", 100, None)], &[], &[]);
        let msg = v[0].to_string();
        assert!(
            msg.contains("no image_bytes budget (measured 100 bytes)"),
            "{msg}"
        );
        assert!(msg.contains("profiles/new.toml"), "{msg}");
        let v = check(&[], &[], &[memory(None, Some(64 << 20))]);
        assert!(
            v[0].measured
                .contains("does not boot with memory = its setting"),
            "{v:?}"
        );
        // A boot without a ratio has nothing to check.
        let mut b = boot(1.0, None);
        b.ratio_exit = None;
        assert_eq!(check(&[], &[b], &[]), []);
    }
}
