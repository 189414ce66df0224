//! The thin platform for KVM-class monitors (QEMU `microvm` and `q35`, Firecracker, Cloud
//! Hypervisor): COM1 and the 0xe9 debug port as consoles, power-off with an exit status, and
//! TSC calibration against the PIT. Boot entry and CPU set-up are the arch crate's.
//!
//! Power-off tries, in order: QEMU's `isa-debug-exit` device at port 0xf4 (the monitor exits
//! with status `(code << 1) | 1`), the ACPI PM1a control register of QEMU's `q35`/`pc` machines,
//! the i8042 reset line (Firecracker exits on it), and finally halts the CPU.
//!
//! # Cargo features
//! None.
#![no_std]

use arch_x86_64::{cpu, tsc};
use core::sync::atomic::{AtomicU64, Ordering};
use platform::ConsoleDevice;

/// The KVM-class platform.
#[derive(Debug)]
pub struct Kvm;

/// The first 16550 UART at I/O port 0x3f8.
#[derive(Debug)]
pub struct Com1;

/// QEMU's / Bochs' debug console: every byte written to port 0xe9 is output.
#[derive(Debug)]
pub struct DebugPort;

/// The COM1 console.
pub static COM1: Com1 = Com1;
/// The 0xe9 debug-port console.
pub static DEBUG_PORT: DebugPort = DebugPort;

const COM1_BASE: u16 = 0x3f8;
const LSR_THR_EMPTY: u8 = 0x20;
/// Spins on the line status before a byte is dropped (no UART, or a stuck one).
const UART_SPIN_LIMIT: u32 = 100_000;

impl ConsoleDevice for Com1 {
    fn init(&self) {
        // SAFETY: programming the standard 16550 registers at 0x3f8..0x3ff: interrupts off,
        // 115200 baud (divisor 1), 8N1, FIFOs on and cleared, DTR/RTS set, OUT2 clear (no IRQ).
        unsafe {
            cpu::outb(COM1_BASE + 1, 0x00);
            cpu::outb(COM1_BASE + 3, 0x80);
            cpu::outb(COM1_BASE, 0x01);
            cpu::outb(COM1_BASE + 1, 0x00);
            cpu::outb(COM1_BASE + 3, 0x03);
            cpu::outb(COM1_BASE + 2, 0xc7);
            cpu::outb(COM1_BASE + 4, 0x03);
        }
    }

    fn write(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                put_uart(b'\r');
            }
            put_uart(b);
        }
    }
}

fn put_uart(byte: u8) {
    for _ in 0..UART_SPIN_LIMIT {
        // SAFETY: reading the 16550 line status register has no side effect.
        if unsafe { cpu::inb(COM1_BASE + 5) } & LSR_THR_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: writing the transmit holding register sends one byte.
    unsafe { cpu::outb(COM1_BASE, byte) };
}

impl ConsoleDevice for DebugPort {
    fn write(&self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: port 0xe9 is the debug console; where nothing listens the write is ignored.
            unsafe { cpu::outb(0xe9, b) };
        }
    }
}

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

impl platform::Platform for Kvm {
    fn init() {}

    fn exit(status: u8) -> ! {
        // SAFETY: each write is a power-off request to a device at its standard port; where the
        // device is absent the write is ignored and the next method is tried.
        unsafe {
            cpu::outl(0xf4, u32::from(status));
            cpu::outw(0x604, 0x2000);
            cpu::outb(0x64, 0xfe);
        }
        cpu::halt_forever()
    }

    fn tsc_frequency() -> Option<u64> {
        let known = TSC_HZ.load(Ordering::Relaxed);
        if known != 0 {
            return Some(known);
        }
        let hz = tsc::frequency_from_cpuid().or_else(calibrate_with_pit)?;
        TSC_HZ.store(hz, Ordering::Relaxed);
        Some(hz)
    }
}

/// Counts TSC ticks over 10 ms of PIT channel 2 (one-shot, gate through port 0x61).
fn calibrate_with_pit() -> Option<u64> {
    const PIT_HZ: u64 = 1_193_182;
    const TICKS: u64 = PIT_HZ / 100;
    // SAFETY: standard PC ports: 0x61 gates PIT channel 2 (speaker output kept off), 0x43 sets
    // its mode (one-shot, binary, low then high byte), 0x42 loads the count.
    let (start, output_low) = unsafe {
        let gate = cpu::inb(0x61);
        cpu::outb(0x61, (gate & !0x02) | 0x01);
        cpu::outb(0x43, 0xb0);
        cpu::outb(0x42, (TICKS & 0xff) as u8);
        cpu::outb(0x42, (TICKS >> 8) as u8);
        (tsc::now(), cpu::inb(0x61) & 0x20 == 0)
    };
    // In mode 0 the output goes low when the count is loaded; a port that already reads high
    // means there is no PIT (QEMU microvm without one, Firecracker).
    if !output_low {
        return None;
    }
    for _ in 0..50_000_000u32 {
        // SAFETY: reading port 0x61 (bit 5 = channel 2 output) has no side effect.
        if unsafe { cpu::inb(0x61) } & 0x20 != 0 {
            let hz = (tsc::now() - start) * 100;
            // Below 100 MHz the measurement is not believable.
            return (hz >= 100_000_000).then_some(hz);
        }
    }
    None
}
