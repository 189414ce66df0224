//! The time-stamp counter: raw reads, and its frequency where CPUID or KVM's paravirtual clock
//! tells it.

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc};
use core::sync::atomic::{AtomicU32, Ordering};

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

/// The pvclock structure KVM fills in (`struct pvclock_vcpu_time_info`, 32 bytes), read as
/// words: 0 version, 2-3 tsc_timestamp, 4-5 system_time, 6 tsc_to_system_mul, 7 tsc_shift
/// (byte 0) and flags (byte 1).
#[repr(C, align(32))]
struct PvClock([AtomicU32; 8]);

static KVMCLOCK: PvClock = PvClock([const { AtomicU32::new(0) }; 8]);

/// KVM's paravirtual clock MSR (`MSR_KVM_SYSTEM_TIME_NEW`).
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `KVM_FEATURE_CLOCKSOURCE2` in CPUID 0x40000001 eax.
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;

/// The TSC frequency from KVM's paravirtual clock (kvmclock), where the hypervisor is KVM and
/// offers it: KVM tells the guest how it converts TSC ticks to nanoseconds
/// (`tsc_to_system_mul`, `tsc_shift`), which is the frequency exactly, with no calibration.
/// The clock is enabled only for the reading, then turned off again.
pub fn frequency_from_kvmclock() -> Option<u64> {
    // SAFETY: leaves 0x4000_0000.. are defined (zero) on any CPU.
    #[allow(unused_unsafe)]
    let hv = unsafe { __cpuid(0x4000_0000) };
    // "KVMKVMKVM\0\0\0" in ebx, ecx, edx.
    if [hv.ebx, hv.ecx, hv.edx] != [0x4b4d_564b, 0x564b_4d56, 0x0000_004d] || hv.eax < 0x4000_0001 {
        return None;
    }
    // SAFETY: the KVM leaves are present (checked just above).
    #[allow(unused_unsafe)]
    let features = unsafe { __cpuid(0x4000_0001) }.eax;
    if features & KVM_FEATURE_CLOCKSOURCE2 == 0 {
        return None;
    }
    let address = (&raw const KVMCLOCK) as u64;
    // SAFETY: KVM advertises the MSR (CLOCKSOURCE2); the address is a static, 32-byte aligned
    // (so inside one page), identity mapped (physical = virtual on this platform), that only
    // KVM writes while enabled (bit 0).
    unsafe {
        x86_64::registers::model_specific::Msr::new(MSR_KVM_SYSTEM_TIME_NEW).write(address | 1)
    };
    let words = &KVMCLOCK.0;
    let (mul, shift) = loop {
        let version = words[0].load(Ordering::Acquire);
        let mul = words[6].load(Ordering::Relaxed);
        let shift = words[7].load(Ordering::Relaxed) as u8 as i8;
        // An odd version is an update in progress; a changed one, a torn read.
        if version != 0 && version.is_multiple_of(2) && words[0].load(Ordering::Acquire) == version
        {
            break (mul, shift);
        }
        core::hint::spin_loop();
    };
    // SAFETY: turning the clock off again (bit 0 clear): KVM stops writing the static.
    unsafe { x86_64::registers::model_specific::Msr::new(MSR_KVM_SYSTEM_TIME_NEW).write(0) };
    crate::pvclock::frequency(mul, shift)
}
