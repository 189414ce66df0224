//! The CMOS real-time clock (MC146818, ports 0x70/0x71): decoding its date registers into Unix
//! time (pure, host-tested) and, on bare metal, reading them.
//!
//! The RTC keeps local calendar time with one-second resolution, BCD or binary and 12- or
//! 24-hour as status register B says; monitors (QEMU, Firecracker, Cloud Hypervisor) keep it in
//! UTC. The century register is not standard: the year is taken as 20xx.

/// The date and time registers as read (raw: BCD or binary, 12- or 24-hour).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RtcRegisters {
    /// Register 0x00.
    pub seconds: u8,
    /// Register 0x02.
    pub minutes: u8,
    /// Register 0x04 (bit 7 = PM in 12-hour mode).
    pub hours: u8,
    /// Register 0x07.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09 (two digits).
    pub year: u8,
    /// Status register B (bit 2: binary, bit 1: 24-hour).
    pub status_b: u8,
}

const STATUS_B_BINARY: u8 = 1 << 2;
const STATUS_B_24_HOUR: u8 = 1 << 1;

fn from_bcd(v: u8) -> Option<u8> {
    let (hi, lo) = (v >> 4, v & 0xf);
    (hi < 10 && lo < 10).then_some(hi * 10 + lo)
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day` (month 1..=12, day
/// 1..=31), negative before 1970. The date is not validated beyond what the arithmetic needs.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Years start on March 1st, so that the leap day is the last day of a year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the Unix epoch of a UTC date and time, or `None` when a field is out of range.
pub fn unix_seconds(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<u64> {
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    u64::try_from(seconds).ok()
}

impl RtcRegisters {
    /// The time the registers hold, in seconds since the Unix epoch (the year is 20xx), or
    /// `None` when they do not hold a valid date (bad BCD, a field out of range).
    pub fn unix_seconds(&self) -> Option<u64> {
        let binary = self.status_b & STATUS_B_BINARY != 0;
        let decode = |v: u8| if binary { Some(v) } else { from_bcd(v) };
        let pm = self.hours & 0x80 != 0;
        let mut hour = decode(self.hours & 0x7f)?;
        if self.status_b & STATUS_B_24_HOUR == 0 {
            // 12-hour clock: 12 AM is 0 h, 12 PM is 12 h.
            if !(1..=12).contains(&hour) {
                return None;
            }
            hour = (hour % 12) + if pm { 12 } else { 0 };
        }
        unix_seconds(
            2000 + i64::from(decode(self.year)?),
            u32::from(decode(self.month)?),
            u32::from(decode(self.day)?),
            u32::from(hour),
            u32::from(decode(self.minutes)?),
            u32::from(decode(self.seconds)?),
        )
    }
}

/// Reads the RTC: waits until no update is in progress (status A bit 7), reads every register,
/// and repeats until two reads agree (an update may start in between). `None` if it never
/// settles (no RTC: the ports read 0xff).
///
/// # Safety
/// Nothing else may use ports 0x70/0x71 meanwhile (call with interrupts masked).
#[cfg(target_os = "none")]
pub unsafe fn read() -> Option<RtcRegisters> {
    fn register(index: u8) -> u8 {
        // SAFETY: selecting a CMOS register (NMI stays enabled: bit 7 clear) and reading it
        // has no side effect on the date registers; the caller owns the ports.
        unsafe {
            arch_x86_64::cpu::outb(0x70, index);
            arch_x86_64::cpu::inb(0x71)
        }
    }
    fn snapshot() -> Option<RtcRegisters> {
        let mut spins = 0u32;
        while register(0x0a) & 0x80 != 0 {
            spins += 1;
            if spins > 1_000_000 {
                return None;
            }
            core::hint::spin_loop();
        }
        Some(RtcRegisters {
            seconds: register(0x00),
            minutes: register(0x02),
            hours: register(0x04),
            day: register(0x07),
            month: register(0x08),
            year: register(0x09),
            status_b: register(0x0b),
        })
    }
    let mut last = snapshot()?;
    for _ in 0..10 {
        let now = snapshot()?;
        if now == last {
            return (now.seconds != 0xff).then_some(now);
        }
        last = now;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1970, 1, 2), 1);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(days_from_civil(2100, 3, 1), 47_541);
        assert_eq!(days_from_civil(1900, 3, 1), -25_508);
    }

    #[test]
    fn days_from_civil_counts_every_day() {
        // Walk day by day from 1970 to 2200 and compare with a running count.
        let mut expected = 0i64;
        for year in 1970..2200 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        days_from_civil(year, month, day),
                        expected,
                        "{year}-{month}-{day}"
                    );
                    expected += 1;
                }
            }
        }
    }

    #[test]
    fn unix_seconds_known_instants() {
        assert_eq!(unix_seconds(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_seconds(2024, 1, 1, 0, 0, 0), Some(1_704_067_200));
        assert_eq!(unix_seconds(2026, 11, 24, 3, 14, 22), Some(1_795_490_062));
        assert_eq!(unix_seconds(2038, 1, 19, 3, 14, 8), Some(1 << 31));
        assert_eq!(unix_seconds(2023, 2, 29, 0, 0, 0), None, "not a leap year");
        assert_eq!(unix_seconds(2024, 2, 29, 0, 0, 0), Some(1_709_164_800));
        assert_eq!(unix_seconds(2024, 13, 1, 0, 0, 0), None);
        assert_eq!(unix_seconds(2024, 4, 31, 0, 0, 0), None);
        assert_eq!(unix_seconds(2024, 4, 30, 24, 0, 0), None);
        assert_eq!(
            unix_seconds(1969, 12, 31, 23, 59, 59),
            None,
            "before the epoch"
        );
    }

    fn regs(status_b: u8, [year, month, day, hours, minutes, seconds]: [u8; 6]) -> RtcRegisters {
        RtcRegisters {
            seconds,
            minutes,
            hours,
            day,
            month,
            year,
            status_b,
        }
    }

    #[test]
    fn bcd_and_binary_24_hour() {
        // 2026-11-24 03:14:22, BCD, 24-hour (QEMU's default: status B = 0x02).
        let bcd = regs(0x02, [0x26, 0x11, 0x24, 0x03, 0x14, 0x22]);
        assert_eq!(bcd.unix_seconds(), Some(1_795_490_062));
        let binary = regs(0x06, [26, 11, 24, 3, 14, 22]);
        assert_eq!(binary.unix_seconds(), Some(1_795_490_062));
        assert_eq!(
            regs(0x02, [0x26, 0x11, 0x24, 0x23, 0x59, 0x59]).unix_seconds(),
            Some(1_795_564_799)
        );
    }

    #[test]
    fn twelve_hour_clock() {
        let at = |hours, b| regs(b, [0x24, 0x01, 0x01, hours, 0, 0]).unix_seconds();
        let midnight = 1_704_067_200;
        assert_eq!(at(0x12, 0x00), Some(midnight), "12 AM");
        assert_eq!(at(0x01, 0x00), Some(midnight + 3600), "1 AM");
        assert_eq!(at(0x92, 0x00), Some(midnight + 12 * 3600), "12 PM");
        assert_eq!(at(0x81, 0x00), Some(midnight + 13 * 3600), "1 PM");
        assert_eq!(at(0x91, 0x00), Some(midnight + 23 * 3600), "11 PM (BCD 11)");
        let binary = regs(0x04, [24, 1, 1, 0x8b, 0, 0]).unix_seconds();
        assert_eq!(binary, Some(midnight + 23 * 3600), "11 PM (binary)");
        assert_eq!(at(0x00, 0x00), None, "no hour 0 on a 12-hour clock");
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(
            regs(0x02, [0x2a, 0x11, 0x24, 0x03, 0x14, 0x22]).unix_seconds(),
            None
        );
        assert_eq!(regs(0x02, [0xff; 6]).unix_seconds(), None, "no RTC");
        assert_eq!(
            regs(0x06, [26, 0, 24, 3, 14, 22]).unix_seconds(),
            None,
            "month 0"
        );
    }
}
