//! Irqprobe: checks that a device interrupt arrives through the platform's interrupt seam
//! (`stardust::irq`), for the tests, on KVM-class monitors (QEMU `q35` and `microvm`).
//!
//! The device is the 8254 PIT, the simplest source that needs no driver: channel 0 as a rate
//! generator at about 1 kHz raises ISA IRQ 0, which arrives on GSI 2 (the MADT's interrupt
//! source override, and the convention without ACPI; QEMU's IOAPIC model wires it there). The
//! probe registers a handler for line 2 on its own CPU; the handler counts and unmasks the line
//! again (the oneshot contract: the platform masked it before the call), until it has counted
//! `N` interrupts (the first argument, default 20). Then it stops the PIT and prints
//! `irqprobe: N interrupts on line 2 (CPU c)`. Exit 1 when they did not all arrive within two
//! seconds (`irqprobe: only K interrupts ...`), 2 when the line cannot be registered.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use stardust::irq::{self, Irq};
use stardust::time::Instant;
use stardust::{ExitCode, println};

/// The PIT's line: ISA IRQ 0 on GSI 2.
const PIT_LINE: Irq = Irq(2);
/// The PIT's input clock.
const PIT_HZ: u32 = 1_193_182;

static COUNT: AtomicU32 = AtomicU32::new(0);
static WANTED: AtomicU32 = AtomicU32::new(20);

fn outb(port: u16, value: u8) {
    // SAFETY: the PIT's command (0x43) and channel 0 data (0x40) ports; the probe owns the PIT
    // (the platform used channel 0 only to calibrate the TSC at boot, if at all).
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack))
    };
}

/// The handler: the platform masked the line before calling it; counting on re-opens it.
fn on_tick(data: usize) {
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    if n < WANTED.load(Ordering::Relaxed) {
        irq::unmask(Irq(data as u32));
    }
}

#[stardust::main]
fn main() -> ExitCode {
    let wanted = stardust::args()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(20u32)
        .max(1);
    WANTED.store(wanted, Ordering::Relaxed);
    // Channel 0, low then high byte, mode 2 (rate generator), binary: ~1 kHz.
    let reload = (PIT_HZ / 1000) as u16;
    outb(0x43, 0x34);
    outb(0x40, reload as u8);
    outb(0x40, (reload >> 8) as u8);
    let cpu = irq::current_cpu();
    if let Err(e) = irq::register(PIT_LINE, cpu, on_tick, PIT_LINE.0 as usize) {
        println!("irqprobe: cannot register line {}: {e}", PIT_LINE.0);
        return ExitCode(2);
    }
    let start = Instant::now();
    while COUNT.load(Ordering::Relaxed) < wanted && start.elapsed().as_millis() < 2000 {
        stardust::time::sleep_ns(1_000_000);
    }
    // Mode 0 with no count loaded: the output stays low, no more edges.
    outb(0x43, 0x30);
    let got = COUNT.load(Ordering::Relaxed);
    if got < wanted {
        println!(
            "irqprobe: only {got} interrupts on line {} in 2 s (wanted {wanted})",
            PIT_LINE.0
        );
        return ExitCode(1);
    }
    println!(
        "irqprobe: {got} interrupts on line {} (CPU {})",
        PIT_LINE.0, cpu.0
    );
    ExitCode(0)
}
