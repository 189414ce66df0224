//! The arithmetic of a paravirtual clock (KVM's kvmclock, Xen's vcpu_time_info): how its
//! scale stands for the TSC frequency. Pure, host-tested.

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
