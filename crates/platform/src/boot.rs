//! Boot information a platform hands to the kernel.

use crate::memory::{MemoryMap, PhysAddr};
use core::fmt;

/// Longest kernel command line accepted, in bytes.
pub const CMDLINE_MAX: usize = 1024;
/// Most boot modules recorded.
pub const MODULES_MAX: usize = 8;

/// The kernel command line, copied out of boot memory.
#[derive(Clone, Copy)]
pub struct Cmdline {
    bytes: [u8; CMDLINE_MAX],
    len: usize,
    /// Length of the command line the monitor gave, which may exceed [`CMDLINE_MAX`].
    pub original_len: usize,
}

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            bytes: [0; CMDLINE_MAX],
            len: 0,
            original_len: 0,
        }
    }
}

impl fmt::Debug for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.as_bytes()),
        }
    }
}

impl Cmdline {
    /// Copies `bytes` (up to [`CMDLINE_MAX`]); `original_len` records the full length.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut c = Cmdline::default();
        let n = bytes.len().min(CMDLINE_MAX);
        c.bytes[..n].copy_from_slice(&bytes[..n]);
        c.len = n;
        c.original_len = bytes.len();
        c
    }
    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
    /// The command line as text, or the UTF-8 error.
    pub fn as_str(&self) -> Result<&str, core::str::Utf8Error> {
        core::str::from_utf8(self.as_bytes())
    }
    /// True when the monitor's command line did not fit.
    pub fn truncated(&self) -> bool {
        self.original_len > self.len
    }
}

/// A boot module (an initrd, a disk image handed over in memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Module {
    /// Where it was loaded.
    pub start: PhysAddr,
    /// Its size in bytes.
    pub size: u64,
}

impl Module {
    /// The module as an address range (saturating at the top of the address space: a size the
    /// boot protocol got wrong never wraps around to a small range).
    pub const fn range(&self) -> crate::Range {
        crate::Range::new(self.start.0, self.start.0.saturating_add(self.size))
    }
}

/// Everything the kernel learns from the boot protocol, copied out of boot memory so that the
/// memory those structures lived in can be reused.
#[derive(Clone, Copy, Debug, Default)]
pub struct BootInfo {
    /// The memory map.
    pub memory: MemoryMap,
    /// The kernel command line.
    pub cmdline: Cmdline,
    /// Boot modules, `modules[..module_count]`.
    pub modules: [Module; MODULES_MAX],
    /// Modules the monitor passed (may exceed [`MODULES_MAX`]; the rest are ignored).
    pub module_count: usize,
    /// Physical address of the ACPI RSDP, 0 when absent.
    pub rsdp: PhysAddr,
    /// Where the start-info structures themselves were (reserved until copied).
    pub boot_structures: crate::Range,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_keeps_at_most_the_limit_and_reports_utf8_errors() {
        let c = Cmdline::from_bytes(b"log=debug -- a");
        assert_eq!(c.as_str().unwrap(), "log=debug -- a");
        assert!(!c.truncated());
        let long = vec![b'a'; CMDLINE_MAX + 5];
        let c = Cmdline::from_bytes(&long);
        assert!(c.truncated());
        assert_eq!(c.as_bytes().len(), CMDLINE_MAX);
        assert!(Cmdline::from_bytes(&[b'a', 0xff, 0xfe]).as_str().is_err());
    }

    #[test]
    fn a_module_past_the_end_of_the_address_space_saturates() {
        let m = Module {
            start: crate::PhysAddr(u64::MAX - 10),
            size: 100,
        };
        assert_eq!(m.range(), crate::Range::new(u64::MAX - 10, u64::MAX));
        let m = Module {
            start: crate::PhysAddr(0x80_0000),
            size: 0x1234,
        };
        assert_eq!(m.range(), crate::Range::new(0x80_0000, 0x80_1234));
    }
}
