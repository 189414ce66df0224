//! Which QEMU is installed, and what the project knows about it: the versions everything here
//! (images under `run` and the tests, the Xen lab) was run with, the ones it cannot work with,
//! and the command that gets a good one.
//!
//! Measured here (2026-12-06), each QEMU installed in turn (Debian's) or run from a debootstrap
//! chroot of its distribution (trixie's, Ubuntu 24.04's):
//! - QEMU 7.2.22 (Debian bookworm's `qemu-system-x86`) and 10.0.2 (bookworm-backports): the whole
//!   suite, the Xen lab included. 7.2 needs the lab's CPU model without SMAP
//!   ([`crate::LAB_CPU`]).
//! - QEMU 10.0.13 (Debian trixie's): the lab boots dom0 and runs PV and PVH guests.
//! - QEMU 8.2.2 (Ubuntu 24.04's, `1:8.2.2+ds-0ubuntu1` and `ubuntu1.20` from noble-updates): images
//!   boot (microvm, q35, the universal image), the lab boots dom0 and runs PV guests, but every
//!   PVH guest hangs before its first instruction prints (the reference `pvhhello` too, with
//!   `-cpu max,-smap`, `EPYC,-smap` or `qemu64,+svm,+npt`): nested SVM under its TCG. So the lab
//!   refuses it, naming the fix.
//! - Older than 4.2 cannot work: QEMU boots PVH kernels with `-kernel` since 4.0 and has the
//!   `microvm` machine since 4.2.
//!
//! Anything else is untested: used, with a warning.

use std::process::Command;
use std::sync::OnceLock;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The command that installs a QEMU known to work, on Debian and Ubuntu.
pub const INSTALL_HINT: &str = "apt-get update && apt-get install -y qemu-system-x86 \
     (Debian bookworm gives 7.2, trixie 10.0; both are tested)";

/// A QEMU version as `qemu-system-x86_64 --version` states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuVersion {
    /// Major, minor, patch.
    pub number: (u32, u32, u32),
    /// The first line QEMU printed (`QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)`).
    pub text: String,
}

impl QemuVersion {
    /// Parses the output of `qemu-system-x86_64 --version`; `None` when it has no version.
    pub fn parse(output: &str) -> Option<QemuVersion> {
        let first = output.lines().next()?.trim();
        let rest = first.split("version ").nth(1)?;
        let number = rest.split_whitespace().next()?;
        let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(QemuVersion {
            number: (major, minor, patch),
            text: first.to_string(),
        })
    }

    /// `7.2.22`.
    pub fn short(&self) -> String {
        let (a, b, c) = self.number;
        format!("{a}.{b}.{c}")
    }

    /// What the project knows about this version.
    pub fn support(&self) -> Support {
        let (major, minor, _) = self.number;
        match (major, minor) {
            (7, 2) | (10, 0) => Support::Tested,
            (8, 2) => Support::NoLab(format!(
                "QEMU {} runs Stardust's images, but not the Xen lab: PVH guests hang in it \
                 (nested SVM under its TCG; measured with Ubuntu 24.04's 8.2.2). Use QEMU 7.2 or \
                 10.0 for the lab: {INSTALL_HINT}; Ubuntu 24.04 has no newer QEMU package",
                self.short()
            )),
            (m, n) if (m, n) < (4, 2) => Support::Unusable(format!(
                "QEMU {} is too old for Stardust: it boots PVH kernels with -kernel only since 4.0 \
                 and has the microvm machine only since 4.2. Install a newer one: {INSTALL_HINT}",
                self.short()
            )),
            _ => Support::Untested(format!(
                "QEMU {} is untested here (tested: 7.2 and 10.0); if something fails, try a tested \
                 one: {INSTALL_HINT}",
                self.short()
            )),
        }
    }
}

/// What the project knows about a QEMU version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The whole suite, the Xen lab included, runs with it.
    Tested,
    /// Not tried here; the reason, with what to do if it fails.
    Untested(String),
    /// Runs the images, but the Xen lab is known not to work with it; why, and what fixes it.
    NoLab(String),
    /// Known not to work; why, and the command that fixes it.
    Unusable(String),
}

/// The version of the `qemu-system-x86_64` on `PATH` (asked once per process); `None` when it is
/// not installed or states no version.
pub fn installed() -> Option<QemuVersion> {
    static VERSION: OnceLock<Option<QemuVersion>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let out = crate::child::output(Command::new(QEMU).arg("--version"), "QEMU").ok()?;
            QemuVersion::parse(&String::from_utf8_lossy(&out.stdout))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_debian_qemus_print() {
        let v = QemuVersion::parse(
            "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022\n",
        )
        .expect("a version");
        assert_eq!(v.number, (7, 2, 22));
        assert_eq!(v.short(), "7.2.22");
        assert_eq!(v.support(), Support::Tested);
        let v = QemuVersion::parse(
            "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)",
        )
        .expect("a version");
        assert_eq!(v.number, (10, 0, 2));
        assert_eq!(v.support(), Support::Tested);
        let v = QemuVersion::parse("QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1.20)")
            .expect("a version");
        assert!(matches!(v.support(), Support::NoLab(ref why) if why.contains("PVH")));
        let v = QemuVersion::parse("QEMU emulator version 9.2.1").expect("a version");
        assert!(matches!(v.support(), Support::Untested(_)));
        let v = QemuVersion::parse("QEMU emulator version 9.1").expect("a version");
        assert_eq!(v.number, (9, 1, 0));
    }

    #[test]
    fn too_old_is_unusable_and_says_how_to_fix_it() {
        let v = QemuVersion::parse("QEMU emulator version 4.1.1").expect("a version");
        match v.support() {
            Support::Unusable(why) => {
                assert!(why.contains("4.1.1"), "{why}");
                assert!(why.contains("apt-get install"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_has_no_version() {
        for s in [
            "",
            "\n",
            "QEMU",
            "QEMU emulator version",
            "version x.y",
            "hello version  ",
        ] {
            assert_eq!(QemuVersion::parse(s), None, "{s:?}");
        }
    }
}
