//! Xen's PV clock arithmetic (`vcpu_time_info`): system time from a time record and a TSC
//! reading, `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`.
//!
//! The TSC reading may be *below* the record's `tsc_timestamp`: a guest whose vCPUs all read
//! vCPU 0's record (as `platform-xen` does) reads its own TSC, and where the TSCs of the
//! physical CPUs are not in step (the lab's TCG), the record may have been stamped on a CPU a
//! little ahead of this one. The difference is then a small negative delta, never a jump of
//! 2^64 ticks (which once made the lab's guest clock leap 225 years ahead, and every later
//! sleep wait for it). And the stamp itself may have wrapped (see [`time_at`]).

/// The scale of a time record: nanoseconds = `(ticks << shift) * mul >> 32` (`shift`
/// negative: a right shift).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    /// `tsc_to_system_mul`.
    pub mul: u32,
    /// `tsc_shift`.
    pub shift: i8,
}

impl Scale {
    /// `ticks` TSC ticks in nanoseconds.
    pub fn ns(self, ticks: u64) -> u64 {
        let ticks = u128::from(ticks);
        let shifted = if self.shift >= 0 {
            ticks << self.shift
        } else {
            ticks >> self.shift.unsigned_abs()
        };
        u64::try_from((shifted * u128::from(self.mul)) >> 32).unwrap_or(u64::MAX)
    }
}

/// System time at TSC value `tsc` by a record taken at `tsc_timestamp` (system time
/// `system_time`). The TSC difference is taken modulo 2^64 and read as signed: a PVH guest's
/// stamp may lie "below zero" (a guest TSC that starts near 0 at the domain's creation, behind
/// a stamp Xen took before it: the stamp wraps to near 2^64, and the plain difference is the
/// right, small, positive one), and a reading on another vCPU may lie a little before the stamp
/// (a small negative difference: that much earlier, saturating at 0).
pub fn time_at(system_time: u64, tsc_timestamp: u64, scale: Scale, tsc: u64) -> u64 {
    let delta = tsc.wrapping_sub(tsc_timestamp) as i64;
    if delta >= 0 {
        system_time.saturating_add(scale.ns(delta.unsigned_abs()))
    } else {
        system_time.saturating_sub(scale.ns(delta.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2 GHz: 0.5 ns per tick = mul 2^31, shift 0.
    const GHZ2: Scale = Scale {
        mul: 1 << 31,
        shift: 0,
    };

    #[test]
    fn ticks_after_the_stamp_add() {
        assert_eq!(time_at(1_000, 10_000, GHZ2, 12_000), 2_000);
        assert_eq!(time_at(1_000, 10_000, GHZ2, 10_000), 1_000);
    }

    #[test]
    fn a_tsc_just_below_the_stamp_is_a_little_earlier_not_a_wrap() {
        // 2,000 ticks before the stamp: 1 us earlier.
        assert_eq!(time_at(5_000_000, 10_000, GHZ2, 8_000), 4_999_000);
        // Never below zero.
        assert_eq!(time_at(100, 10_000, GHZ2, 0), 0);
    }

    #[test]
    fn a_stamp_below_zero_is_behind_a_small_tsc() {
        // The stamp 3,000 ticks before a guest TSC of 1,000: 2,000 ticks after it, as
        // u64s wrapped (a PVH guest's first records).
        let stamp = 0u64.wrapping_sub(1_000);
        assert_eq!(time_at(7_000, stamp, GHZ2, 1_000), 8_000);
    }

    #[test]
    fn shifts_both_ways() {
        let up = Scale {
            mul: 1 << 31,
            shift: 1,
        };
        assert_eq!(up.ns(1_000), 1_000);
        let down = Scale {
            mul: 1 << 31,
            shift: -1,
        };
        assert_eq!(down.ns(1_000), 250);
        // A huge delta saturates instead of wrapping.
        let big = Scale {
            mul: u32::MAX,
            shift: 31,
        };
        assert_eq!(big.ns(u64::MAX), u64::MAX);
    }

    #[test]
    fn time_is_monotonic_in_the_tsc_around_the_stamp() {
        let scale = Scale {
            mul: 0xa000_0000,
            shift: -1,
        };
        let mut last = 0;
        for tsc in 990_000..1_010_000u64 {
            let t = time_at(1_000_000_000, 1_000_000, scale, tsc);
            assert!(t >= last, "time ran backwards at tsc {tsc}");
            last = t;
        }
    }
}
