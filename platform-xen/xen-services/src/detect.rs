//! Finding Xen from CPUID: the hypervisor leaves at `0x4000_0000 + n * 0x100` (n = 0..=0xff).
//!
//! Xen answers the signature `"XenVMMXenVMM"` at its base leaf: at `0x4000_0000` for a PVH
//! guest, or one block higher (`0x4000_0100`) when Xen also offers the Viridian (Hyper-V)
//! interface at the first. Other monitors answer their own signature there (QEMU TCG
//! `"TCGTCGTCGTCG"`, KVM `"KVMKVMKVM\0\0\0"`), so the signature is compared, never just the
//! CPUID hypervisor bit. Base + 1 gives the version (`EAX` = major << 16 | minor), base + 2 the
//! hypercall page count (`EAX`) and the MSR that installs it (`EBX`).
//!
//! The function is pure over a CPUID callback, so it is host-tested with recorded values.

/// The registers one CPUID leaf returns: `[eax, ebx, ecx, edx]`.
pub type Regs = [u32; 4];

/// What CPUID says about Xen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCpuid {
    /// The leaf with the `"XenVMMXenVMM"` signature.
    pub base: u32,
    /// Xen's major version (from base + 1).
    pub major: u16,
    /// Xen's minor version.
    pub minor: u16,
    /// Hypercall pages to install (from base + 2; 1 on every Xen of the last decade).
    pub hypercall_pages: u32,
    /// The MSR that installs the hypercall page when written with its physical address.
    pub hypercall_msr: u32,
}

/// Not Xen: the hypervisor signature found at `0x4000_0000`, if any (for the error message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotXen {
    /// The 12 signature bytes of leaf `0x4000_0000` (`EBX`, `ECX`, `EDX`); zeros without one.
    pub signature: [u8; 12],
}

impl NotXen {
    /// The signature as text, with non-printable bytes (the NULs of KVM's) as `.`.
    pub fn signature_text(&self) -> [u8; 12] {
        self.signature.map(|b| {
            if b.is_ascii_graphic() || b == b' ' {
                b
            } else {
                b'.'
            }
        })
    }
}

const XEN_SIGNATURE: &[u8; 12] = b"XenVMMXenVMM";
const FIRST_LEAF: u32 = 0x4000_0000;
const LEAF_STEP: u32 = 0x100;
const LEAF_BLOCKS: u32 = 0x100;

fn signature(regs: Regs) -> [u8; 12] {
    let mut s = [0; 12];
    s[..4].copy_from_slice(&regs[1].to_le_bytes());
    s[4..8].copy_from_slice(&regs[2].to_le_bytes());
    s[8..].copy_from_slice(&regs[3].to_le_bytes());
    s
}

/// Scans the hypervisor leaves for Xen. `cpuid(leaf)` returns the registers of `leaf`
/// (sub-leaf 0).
pub fn detect(mut cpuid: impl FnMut(u32) -> Regs) -> Result<XenCpuid, NotXen> {
    let first = signature(cpuid(FIRST_LEAF));
    for n in 0..LEAF_BLOCKS {
        let base = FIRST_LEAF + n * LEAF_STEP;
        let regs = cpuid(base);
        if signature(regs) != *XEN_SIGNATURE {
            continue;
        }
        // EAX is the highest leaf of the block: Xen has at least base + 2.
        if regs[0] < base + 2 {
            continue;
        }
        let version = cpuid(base + 1)[0];
        let pages = cpuid(base + 2);
        return Ok(XenCpuid {
            base,
            major: (version >> 16) as u16,
            minor: version as u16,
            hypercall_pages: pages[0],
            hypercall_msr: pages[1],
        });
    }
    Err(NotXen { signature: first })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(text: &[u8; 12]) -> [u32; 3] {
        let w = |i: usize| u32::from_le_bytes([text[i], text[i + 1], text[i + 2], text[i + 3]]);
        [w(0), w(4), w(8)]
    }

    /// A CPUID that answers the given leaves and zeros elsewhere (as real CPUs answer leaves
    /// above their maximum with the data of the highest basic leaf; zeros are enough here).
    fn cpuid(leaves: &[(u32, Regs)]) -> impl FnMut(u32) -> Regs + '_ {
        move |leaf| {
            leaves
                .iter()
                .find(|(l, _)| *l == leaf)
                .map_or([0; 4], |(_, r)| *r)
        }
    }

    fn leaf(max: u32, text: &[u8; 12]) -> Regs {
        let [b, c, d] = sig(text);
        [max, b, c, d]
    }

    #[test]
    fn xen_at_the_first_leaf() {
        // Recorded on the lab's Xen 4.17 PVH guest (pvh-probe): base 0x40000000, max leaf
        // 0x40000005, version 4.17, one hypercall page installed by MSR 0x40000000.
        let leaves = [
            (0x4000_0000, leaf(0x4000_0005, b"XenVMMXenVMM")),
            (0x4000_0001, [0x0004_0011, 0, 0, 0]),
            (0x4000_0002, [1, 0x4000_0000, 0, 0]),
        ];
        assert_eq!(
            detect(cpuid(&leaves)),
            Ok(XenCpuid {
                base: 0x4000_0000,
                major: 4,
                minor: 17,
                hypercall_pages: 1,
                hypercall_msr: 0x4000_0000,
            })
        );
    }

    #[test]
    fn xen_behind_viridian() {
        // Xen with viridian=1: Hyper-V's "Microsoft Hv" at 0x40000000, Xen one block higher.
        let leaves = [
            (0x4000_0000, leaf(0x4000_0006, b"Microsoft Hv")),
            (0x4000_0100, leaf(0x4000_0105, b"XenVMMXenVMM")),
            (0x4000_0101, [0x0004_000e, 0, 0, 0]),
            (0x4000_0102, [1, 0x4000_0200, 0, 0]),
        ];
        let xen = detect(cpuid(&leaves)).expect("Xen at 0x40000100");
        assert_eq!(xen.base, 0x4000_0100);
        assert_eq!((xen.major, xen.minor), (4, 14));
        assert_eq!(xen.hypercall_msr, 0x4000_0200);
    }

    #[test]
    fn qemu_tcg_is_not_xen() {
        // Recorded under QEMU TCG (-machine microvm): the pvh-probe's "not Xen" line.
        let leaves = [(0x4000_0000, leaf(0x4000_0001, b"TCGTCGTCGTCG"))];
        let e = detect(cpuid(&leaves)).expect_err("TCG");
        assert_eq!(&e.signature, b"TCGTCGTCGTCG");
    }

    #[test]
    fn kvm_is_not_xen() {
        let leaves = [(0x4000_0000, leaf(0x4000_0001, b"KVMKVMKVM\0\0\0"))];
        let e = detect(cpuid(&leaves)).expect_err("KVM");
        assert_eq!(&e.signature_text(), b"KVMKVMKVM...");
    }

    #[test]
    fn no_hypervisor() {
        let e = detect(cpuid(&[])).expect_err("bare metal");
        assert_eq!(e.signature, [0; 12]);
    }

    #[test]
    fn a_signature_without_the_leaves_is_not_xen() {
        // A block claiming Xen's signature but with no leaves after it.
        let leaves = [(0x4000_0000, leaf(0x4000_0000, b"XenVMMXenVMM"))];
        assert!(detect(cpuid(&leaves)).is_err());
    }
}
