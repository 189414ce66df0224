//! KVM's paravirtual clock (kvmclock), read once for the TSC frequency: the arithmetic of a
//! pvclock scale (pure, host-tested; Xen's vcpu_time_info has the same) and, on bare metal,
//! the MSR that makes KVM fill one in.

/// The TSC frequency a pvclock scale stands for: nanoseconds = (ticks shifted left by
/// `shift`, right for a negative one) × `mul` / 2^32, so Hz = 10^9 × 2^32 / `mul`, shifted
/// back. `None` for a zero scale or a frequency under 1 MHz (not believable).
pub fn frequency(mul: u32, shift: i8) -> Option<u64> {
    if mul == 0 || !(-32..=32).contains(&shift) {
        return None;
    }
    let hz = (1_000_000_000u128 << 32) / u128::from(mul);
    let hz = if shift >= 0 {
        hz >> shift
    } else {
        hz << (-shift)
    };
    u64::try_from(hz).ok().filter(|&hz| hz >= 1_000_000)
}

#[cfg(target_os = "none")]
use core::arch::x86_64::__cpuid;
#[cfg(target_os = "none")]
use core::sync::atomic::{AtomicU32, Ordering};

/// The pvclock structure KVM fills in (`struct pvclock_vcpu_time_info`, 32 bytes), read as
/// words: 0 version, 2-3 tsc_timestamp, 4-5 system_time, 6 tsc_to_system_mul, 7 tsc_shift
/// (byte 0) and flags (byte 1).
#[cfg(target_os = "none")]
#[repr(C, align(32))]
struct PvClock([AtomicU32; 8]);

#[cfg(target_os = "none")]
static KVMCLOCK: PvClock = PvClock([const { AtomicU32::new(0) }; 8]);

/// KVM's paravirtual clock MSR (`MSR_KVM_SYSTEM_TIME_NEW`).
#[cfg(target_os = "none")]
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `KVM_FEATURE_CLOCKSOURCE2` in CPUID 0x40000001 eax.
#[cfg(target_os = "none")]
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;

/// The TSC frequency from KVM's paravirtual clock (kvmclock), where the hypervisor is KVM and
/// offers it: KVM tells the guest how it converts TSC ticks to nanoseconds
/// (`tsc_to_system_mul`, `tsc_shift`), which is the frequency exactly, with no calibration.
/// The clock is enabled only for the reading, then turned off again.
#[cfg(target_os = "none")]
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
    frequency(mul, shift)
}

#[cfg(test)]
mod tests {
    use super::frequency;

    /// The scale KVM computes for a frequency (`kvm_get_time_scale`: the shift brings the
    /// frequency into 2^31..2^32 ns-per-tick terms), and back.
    fn scale_for(hz: u64) -> (u32, i8) {
        let mut shift = 0i8;
        let mut base = hz;
        while base > 2_000_000_000 {
            base /= 2;
            shift -= 1;
        }
        while base <= 1_000_000_000 {
            base *= 2;
            shift += 1;
        }
        (((1_000_000_000u128 << 32) / u128::from(base)) as u32, shift)
    }

    #[test]
    fn scale_round_trips_to_the_frequency() {
        for hz in [
            2_596_142_000u64,
            1_000_000_000,
            3_700_000_000,
            800_000_000,
            100_000_000,
        ] {
            let (mul, shift) = scale_for(hz);
            let back = frequency(mul, shift).expect("a frequency");
            assert!(
                back.abs_diff(hz) <= hz / 1_000_000,
                "{hz}: {back} ({mul}, {shift})"
            );
        }
    }

    #[test]
    fn nonsense_scales_are_refused() {
        assert_eq!(frequency(0, 0), None);
        assert_eq!(frequency(u32::MAX, 31), None);
        assert_eq!(frequency(1, 100), None);
    }
}
