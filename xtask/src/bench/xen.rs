//! Benches on Xen (the lab): `xl create` to the first console line, as a ratio to the lab's
//! reference guest, and the smallest domain `memory =` that still boots.
//!
//! Not measured yet: there is no Xen platform (`platform = "xen"`, a `platform-xen` feature of
//! crates/stardust) nor a lab that xtask can drive. Each bench asks [`availability`] and, while
//! it says no, reports a [`XenNote`] ("skipped: ...") in place of its Xen figures. When the lab
//! exists, a measurement goes here beside the QEMU one in `boot.rs`/`memory.rs`: a `BootResult`
//! whose `machine` is `xen`, timed from spawning `xl create` to the first console line, and a
//! `MemoryResult` searched over `memory =`, so the report, charts and budgets take them as they
//! take QEMU's.

use serde::{Deserialize, Serialize};

use crate::profile::PLATFORM;
use crate::workspace::Workspace;

/// A Xen bench that did not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XenNote {
    /// Which bench (`boot`, `memory`).
    pub bench: String,
    /// What it would measure.
    pub what: String,
    /// `skipped`.
    pub status: String,
    /// Why, in a sentence.
    pub reason: String,
}

impl XenNote {
    /// The line the report prints.
    pub fn line(&self) -> String {
        format!(
            "Xen {} ({}): {}: {}",
            self.bench, self.what, self.status, self.reason
        )
    }
}

/// Whether Xen benches can run here: `Err(reason)` until the Xen platform and lab exist.
pub fn availability(ws: &Workspace) -> Result<(), String> {
    let has_platform = ws
        .catalog()
        .ok()
        .and_then(|c| c.values(PLATFORM).map(|v| v.iter().any(|p| p == "xen")))
        .unwrap_or(false);
    if has_platform {
        Err("no Xen platform yet: the lab's `xl create` measurement is not wired into `cargo xtask bench` (xtask/src/bench/xen.rs)".into())
    } else {
        Err("no Xen platform yet (crates/stardust has no `platform-xen` feature)".into())
    }
}

/// The note for `bench` (`boot` or `memory`) while Xen is unavailable for `reason`.
pub fn skipped(bench: &str, reason: &str) -> XenNote {
    let what = match bench {
        "boot" => "`xl create` to the first console line, as a ratio to the lab's reference guest",
        _ => "the smallest domain `memory =` with which hello still boots and passes",
    };
    XenNote {
        bench: bench.into(),
        what: what.into(),
        status: "skipped".into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_line_says_why() {
        let n = skipped("boot", "no Xen platform yet");
        assert_eq!(
            n.line(),
            "Xen boot (`xl create` to the first console line, as a ratio to the lab's reference guest): skipped: no Xen platform yet"
        );
        // Today's workspace has no Xen platform.
        let reason = availability(&Workspace::locate()).expect_err("no Xen yet");
        assert!(reason.starts_with("no Xen platform yet"), "{reason}");
    }
}
