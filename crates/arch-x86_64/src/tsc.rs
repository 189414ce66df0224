//! The time-stamp counter: raw reads, and its frequency where CPUID tells it (KVM's
//! paravirtual clock, the other source, is the `pc` crate's `kvmclock`).

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc};

/// Reads the TSC.
#[inline]
pub fn now() -> u64 {
    // SAFETY: RDTSC is available on every x86_64 CPU and has no side effects.
    #[allow(unused_unsafe)]
    unsafe {
        _rdtsc()
    }
}

/// TSC frequency in Hz when CPUID reports it (leaf 0x15, leaf 0x16, or the hypervisor timing
/// leaf 0x40000010); `None` when the platform has to calibrate it.
pub fn frequency_from_cpuid() -> Option<u64> {
    // SAFETY: CPUID is available on every x86_64 CPU.
    #[allow(unused_unsafe)]
    let max = unsafe { __cpuid(0) }.eax;
    if max >= 0x15 {
        // SAFETY: leaf 0x15 exists (max >= 0x15).
        #[allow(unused_unsafe)]
        let l = unsafe { __cpuid_count(0x15, 0) };
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return Some(u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax));
        }
    }
    if max >= 0x16 {
        // SAFETY: leaf 0x16 exists (max >= 0x16).
        #[allow(unused_unsafe)]
        let l = unsafe { __cpuid_count(0x16, 0) };
        if l.eax & 0xffff != 0 {
            return Some(u64::from(l.eax & 0xffff) * 1_000_000);
        }
    }
    // SAFETY: leaves 0x4000_0000.. are defined (zero) on any CPU.
    #[allow(unused_unsafe)]
    let hv = unsafe { __cpuid(0x4000_0000) };
    if hv.eax >= 0x4000_0010 {
        // SAFETY: the hypervisor reports the timing leaf as present.
        #[allow(unused_unsafe)]
        let l = unsafe { __cpuid(0x4000_0010) };
        if l.eax != 0 {
            return Some(u64::from(l.eax) * 1000);
        }
    }
    None
}
