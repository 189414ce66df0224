//! The 8254 programmable interval timer, used once: to measure the TSC's frequency where
//! neither CPUID nor kvmclock tells it.

use arch_x86_64::{cpu, tsc};

/// Counts TSC ticks over 10 ms of PIT channel 0, read back through the latch command (no
/// port 0x61 gate, which QEMU's `microvm` lacks). Channel 0 is free: IRQ 0 is masked at the PIC
/// ([`crate::pic::disable`]). `None` without a PIT (QEMU `microvm,pit=off`, Firecracker).
pub fn calibrate_tsc() -> Option<u64> {
    const PIT_HZ: u64 = 1_193_182;
    const TICKS: u32 = (PIT_HZ / 100) as u32;
    fn count() -> u16 {
        // SAFETY: latching channel 0 (command 0x00 at port 0x43) and reading its count low
        // byte then high byte from port 0x40 only reads the counter.
        unsafe {
            cpu::outb(0x43, 0x00);
            u16::from_le_bytes([cpu::inb(0x40), cpu::inb(0x40)])
        }
    }
    // SAFETY: channel 0, low then high byte, mode 2 (rate generator), binary, reload 0 (= 65536):
    // the counter runs down continuously; IRQ 0 is masked at the PIC, so it is never taken.
    unsafe {
        cpu::outb(0x43, 0x34);
        cpu::outb(0x40, 0);
        cpu::outb(0x40, 0);
    }
    let mut last = count();
    let start = tsc::now();
    let mut elapsed = 0u32;
    for i in 0..10_000_000u32 {
        let now = count();
        // A counter that never moves is no PIT (QEMU `microvm,pit=off`, Firecracker).
        if i == 10_000 && elapsed == 0 && now == last {
            return None;
        }
        // Down-counter with period 65536: the difference wraps naturally in u16.
        elapsed += u32::from(last.wrapping_sub(now));
        last = now;
        if elapsed >= TICKS {
            let hz = (tsc::now() - start) * PIT_HZ / u64::from(elapsed);
            // Below 100 MHz the measurement is not believable (a port that reads 0xff...).
            return (hz >= 100_000_000).then_some(hz);
        }
    }
    None
}
