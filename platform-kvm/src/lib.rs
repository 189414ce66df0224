//! The thin platform for KVM-class monitors (QEMU `microvm` and `q35`, Firecracker, Cloud
//! Hypervisor): COM1 and the 0xe9 debug port as consoles, power-off with an exit status, TSC
//! calibration against the PIT, the local APIC timer, the CMOS RTC as wall clock, and guard
//! pages in the live page tables. Boot entry, CPU set-up and the page-table logic are the arch
//! crate's; the PC chipset (ACPI, PICs, local APIC, RTC, PIT, kvmclock) is the `pc` crate's
//! (`platform-kvm/pc`).
//!
//! Interrupts ([`irq`]): [`Platform::init_cpu`] fills the boot CPU's per-CPU block, remaps and
//! masks the legacy PICs (the IDT has the spurious and PIC gates, and the APIC timer's and the
//! device vectors', which `init_cpu` adds); the local APIC (xAPIC, MMIO, whose page
//! [`Platform::init`] returns as device memory, with the IOAPICs') is set up on the first
//! [`Platform::set_timer`] (or device registration), after the kernel's page tables map it,
//! and its one-shot timer is calibrated against the TSC then. Without an APIC or a TSC
//! frequency there is no timer: `set_timer` returns false and `idle` spins. Device lines go
//! through the IOAPICs to a handler table ([`irq`]).
//!
//! Power-off tries, in order: QEMU's `isa-debug-exit` device at port 0xf4 (the monitor exits
//! with status `(code << 1) | 1`; it carries 7 bits, so for a status of 127 or more the kernel
//! prints `exit status N` on the console first and the platform writes 127: QEMU exits with 255,
//! see `platform::status`), ACPI S5 as the firmware tables describe it (the PM1a control
//! block on QEMU `q35`/`pc`, the hardware-reduced sleep control register on QEMU `microvm` and
//! Cloud Hypervisor; found at [`Platform::init`]), the i8042 reset line (Firecracker exits on
//! it), and finally a triple fault (QEMU with `-no-reboot` exits; other monitors reset or stop).
//!
//! The ACPI tables are read at boot only when they may be needed: under QEMU with
//! `isa-debug-exit` (fw_cfg answers "QEMU" at port 0x510 and port 0xf4 reads 0, where an empty
//! port reads 0xff) the first method always works, and skipping the tables saves about a
//! quarter of the guest's boot time under TCG.
//!
//! Devices (feature `devices`, which the kernel turns on with a device driver: `net_device =
//! "virtio"`): [`Platform::init`] scans PCI bus 0 and chooses the virtio-mmio transports,
//! [`Platform::devices`] probes the transports on its first call after `map_memory` and shows
//! the list (`devices.rs`). Without it `devices` shows none and no image pays for discovery.
//!
//! # Cargo features
//! - `devices`: device discovery (PCI, virtio-mmio) and [`Platform::devices`].
#![no_std]

#[cfg(feature = "devices")]
mod devices;
pub mod irq;
mod smp;

use arch_x86_64::{cpu, tsc};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use pc::acpi::{self, PowerOffRegister};
use pc::{apic, kvmclock, pic, pit, rtc};
use platform::{BootInfo, ConsoleDevice, DeviceMemory, FreeMemory, Range, status};

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
/// Nanoseconds per TSC tick, 32.32 fixed point (set with `TSC_HZ`).
static TSC_NS_SCALE: AtomicU64 = AtomicU64::new(0);

/// The xAPIC page (found at init; 0 = none).
static APIC_BASE: AtomicU64 = AtomicU64::new(0);
/// The APIC state: 0 = not tried, 1 = ready, 2 = unusable (no APIC, no TSC frequency).
static APIC_STATE: AtomicU8 = AtomicU8::new(0);
/// Whether `map_memory` installed the kernel's tables (which map the APIC page).
pub(crate) static MAPPED: AtomicBool = AtomicBool::new(false);

/// The wall clock: Unix nanoseconds at the RTC read, and `now_ns` then (`u64::MAX`: not read).
static WALL_AT_READ: AtomicU64 = AtomicU64::new(u64::MAX);
static NOW_AT_READ: AtomicU64 = AtomicU64::new(0);

/// The ACPI power-off found at init: kind (0 = none, 1 = PM1a port, 2 = sleep control port,
/// 3 = sleep control MMIO), register address, value.
static ACPI_KIND: AtomicU8 = AtomicU8::new(0);
static ACPI_REGISTER: AtomicU64 = AtomicU64::new(0);
static ACPI_VALUE: AtomicU16 = AtomicU16::new(0);

impl platform::Platform for Kvm {
    type BootError = arch_x86_64::start_info::StartInfoError;
    type MapError = arch_x86_64::paging::PagingError;

    fn boot_info(raw: u64) -> Result<BootInfo, Self::BootError> {
        arch_x86_64::start_info::parse(&arch_x86_64::BootMemory, raw)
    }

    fn init_cpu() {
        cpu::init();
        irq::install_gates();
        pic::disable();
    }

    fn map_memory(
        boot: &BootInfo,
        free: &mut FreeMemory,
        devices: &DeviceMemory,
    ) -> Result<u64, Self::MapError> {
        let bytes = arch_x86_64::install_page_tables(free, &boot.memory, devices.ranges())?;
        MAPPED.store(true, Ordering::Release);
        // Before any driver starts a device (see `irq::prepare`).
        #[cfg(feature = "devices")]
        irq::prepare();
        Ok(bytes)
    }

    fn init(boot: &BootInfo) -> DeviceMemory {
        let mem = &arch_x86_64::BootMemory;
        let mut devices = DeviceMemory::new();
        match apic::xapic_base() {
            Some(base) => {
                // Cannot fail: the list is empty before this push.
                let _ = devices.push(Range::new(base, base + platform::PAGE_SIZE));
                APIC_BASE.store(base, Ordering::Relaxed);
            }
            None => log::debug!("no local APIC in xAPIC mode: no timer interrupts"),
        }
        #[cfg(feature = "devices")]
        if let Some(ioapics) = irq::discover(mem, boot.rsdp.0)
            && let Err(e) = devices.push_merged(ioapics)
        {
            log::warn!("IOAPICs not mapped: {e}");
        }
        #[cfg(feature = "devices")]
        devices::init(boot, &mut devices);
        if qemu_debug_exit_present() {
            log::debug!("QEMU isa-debug-exit present: ACPI power-off not needed");
            return devices;
        }
        match acpi::find_power_off(mem, boot.rsdp.0) {
            Ok(off) => {
                log::debug!("ACPI power-off: {off}");
                let (kind, register) = match off.register {
                    PowerOffRegister::Pm1aControl(port) => (1, u64::from(port)),
                    PowerOffRegister::SleepControlPort(port) => (2, u64::from(port)),
                    PowerOffRegister::SleepControlMmio(addr) => {
                        if let Err(e) = devices.push_merged(Range::new(addr, addr + 1)) {
                            log::warn!("ACPI sleep control register not mapped: {e}");
                        }
                        (3, addr)
                    }
                };
                ACPI_REGISTER.store(register, Ordering::Relaxed);
                ACPI_VALUE.store(off.value, Ordering::Relaxed);
                ACPI_KIND.store(kind, Ordering::Relaxed);
            }
            Err(e) => log::debug!("no ACPI power-off ({e}); using isa-debug-exit and i8042"),
        }
        devices
    }

    fn exit(status: u8) -> ! {
        let carried = if status::fits_debug_exit(status) {
            status
        } else {
            // The kernel printed `exit status N` on the console (see `exit_carries`).
            status::DEBUG_EXIT_ON_CONSOLE
        };
        // SAFETY: isa-debug-exit at 0xf4 ends QEMU with the status; where it is absent the write
        // is ignored.
        unsafe { cpu::outl(0xf4, u32::from(carried)) };
        let register = ACPI_REGISTER.load(Ordering::Relaxed);
        let value = ACPI_VALUE.load(Ordering::Relaxed);
        // SAFETY: the register and value come from the firmware's own FADT and DSDT (checksummed),
        // which describe exactly this write as entering S5; the MMIO page was mapped (uncached)
        // by the kernel from the DeviceMemory that `init` returned.
        unsafe {
            match ACPI_KIND.load(Ordering::Relaxed) {
                1 => cpu::outw(register as u16, value),
                2 => cpu::outb(register as u16, value as u8),
                3 => core::ptr::write_volatile(register as *mut u8, value as u8),
                _ => {}
            }
        }
        // SAFETY: pulsing the i8042 reset line; Firecracker ends the VM on it, elsewhere the
        // machine resets (QEMU with -no-reboot exits).
        unsafe { cpu::outb(0x64, 0xfe) };
        cpu::triple_fault()
    }

    /// isa-debug-exit carries 7 bits; a larger status travels on the console.
    fn exit_carries(status: u8) -> bool {
        status::fits_debug_exit(status)
    }

    fn tsc_frequency() -> Option<u64> {
        let known = TSC_HZ.load(Ordering::Acquire);
        if known != 0 {
            return Some(known);
        }
        let (hz, source) = tsc::frequency_from_cpuid()
            .map(|hz| (hz, "CPUID"))
            .or_else(|| kvmclock::frequency_from_kvmclock().map(|hz| (hz, "kvmclock")))
            .or_else(|| pit::calibrate_tsc().map(|hz| (hz, "the PIT")))?;
        log::debug!("TSC frequency {hz} Hz, from {source}");
        // Nanoseconds per TSC tick in 32.32 fixed point: `now_ns` is then one multiply (no
        // 128-bit division on the scheduler's hot path).
        let scale = ((1_000_000_000u128 << 32) / u128::from(hz)) as u64;
        TSC_NS_SCALE.store(scale, Ordering::Relaxed);
        TSC_HZ.store(hz, Ordering::Release);
        Some(hz)
    }

    fn now_ns() -> Option<u64> {
        Self::tsc_frequency()?;
        let scale = TSC_NS_SCALE.load(Ordering::Relaxed);
        Some(((u128::from(tsc::now()) * u128::from(scale)) >> 32) as u64)
    }

    fn set_timer(deadline_ns: u64) -> bool {
        if !apic_ready() {
            return false;
        }
        if Self::tsc_frequency().is_none() {
            return false;
        }
        // The first TSC value whose `now_ns` is >= the deadline (the inverse of `now_ns`'s
        // fixed-point scale, rounded up), clamped.
        let scale = u128::from(TSC_NS_SCALE.load(Ordering::Relaxed).max(1));
        let tsc = (u128::from(deadline_ns) << 32).div_ceil(scale);
        apic::set_deadline(u64::try_from(tsc).unwrap_or(u64::MAX - 1))
    }

    fn interrupts_disable() -> bool {
        cpu::interrupts_disable()
    }

    fn interrupts_restore(enabled: bool) {
        if enabled {
            cpu::interrupts_enable();
        }
    }

    fn idle() {
        if apic_ready() {
            cpu::enable_interrupts_and_halt();
        } else {
            // No timer could wake a halted CPU: poll (interrupts stay as they are).
            core::hint::spin_loop();
        }
    }

    fn wall_clock_ns() -> Option<u64> {
        let wall = WALL_AT_READ.load(Ordering::Acquire);
        if wall == u64::MAX {
            // The first call (or no clock to extrapolate with): read the RTC.
            return read_rtc();
        }
        let at = NOW_AT_READ.load(Ordering::Relaxed);
        Some(wall + Self::now_ns().unwrap_or(at).saturating_sub(at))
    }

    unsafe fn unmap_page(page: u64, new_table: &mut dyn FnMut() -> Option<u64>) -> bool {
        // SAFETY: forwarded to the caller; the live tables are the kernel's identity-mapped
        // ones, built by `map_memory`. Other CPUs drop the page from their TLBs before this
        // returns.
        let unmapped = unsafe { arch_x86_64::unmap_page(page, new_table) };
        if unmapped {
            smp::shoot_down(page);
        }
        unmapped
    }

    unsafe fn remap_page(page: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { arch_x86_64::remap_page(page) }
    }

    #[cfg(feature = "devices")]
    fn devices(visit: &mut dyn FnMut(&platform::device::Device)) {
        devices::visit(MAPPED.load(Ordering::Acquire), visit)
    }

    fn set_timer_handler(handler: platform::irq::Handler, data: usize) {
        irq::set_timer_handler(handler, data);
    }

    fn irq_register(
        line: platform::irq::Irq,
        cpu: platform::irq::CpuId,
        handler: platform::irq::Handler,
        data: usize,
    ) -> Result<(), platform::irq::IrqError> {
        irq::register(line, cpu, handler, data)
    }

    fn irq_unmask(line: platform::irq::Irq) {
        irq::unmask(line);
    }

    fn current_cpu() -> platform::irq::CpuId {
        arch_x86_64::percpu::current().id()
    }

    fn find_cpus(boot: &BootInfo, max: usize) -> usize {
        smp::find(boot, max)
    }

    fn send_ipi(cpu: platform::irq::CpuId) -> bool {
        smp::send_ipi(cpu)
    }

    fn start_cpus(
        stacks: &mut dyn FnMut(platform::irq::CpuId) -> Option<platform::CpuStacks>,
        main: fn(platform::irq::CpuId) -> !,
    ) -> usize {
        smp::start(stacks, main)
    }
}

/// Whether the local APIC timer works, setting it up on the first call after the kernel's page
/// tables are in place (they map the APIC page).
pub(crate) fn apic_ready() -> bool {
    match APIC_STATE.load(Ordering::Acquire) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    if !MAPPED.load(Ordering::Acquire) {
        return false;
    }
    let enabled = cpu::interrupts_disable();
    let base = APIC_BASE.load(Ordering::Relaxed);
    let ok = match (base, <Kvm as platform::Platform>::tsc_frequency()) {
        (0, _) => false,
        (_, None) => {
            log::debug!("no TSC frequency: no APIC timer");
            false
        }
        (base, Some(tsc_hz)) => {
            // SAFETY: the base is the xAPIC page from IA32_APIC_BASE, which `init` returned as
            // device memory and `map_memory` mapped uncached; `init_cpu` installed the gates;
            // interrupts are masked; APIC_STATE makes this run once.
            match unsafe { apic::init(base, tsc_hz) } {
                Some(hz) => {
                    log::debug!(
                        "local APIC at {base:#x}: timer {}.{:03} MHz (TSC-deadline mode {})",
                        hz / 1_000_000,
                        hz / 1000 % 1000,
                        if apic::has_tsc_deadline() {
                            "reported, not used"
                        } else {
                            "not reported"
                        }
                    );
                    true
                }
                None => {
                    log::debug!("the local APIC timer does not count: no timer interrupts");
                    false
                }
            }
        }
    };
    APIC_STATE.store(if ok { 1 } else { 2 }, Ordering::Release);
    if enabled {
        cpu::interrupts_enable();
    }
    ok
}

/// Reads the CMOS RTC once: records Unix nanoseconds and `now_ns` at the read.
fn read_rtc() -> Option<u64> {
    let enabled = cpu::interrupts_disable();
    // SAFETY: ports 0x70/0x71 are the CMOS; interrupts are masked, and nothing else uses them.
    let registers = unsafe { rtc::read() };
    let now = <Kvm as platform::Platform>::now_ns();
    if enabled {
        cpu::interrupts_enable();
    }
    let Some(seconds) = registers.and_then(|r| r.unix_seconds()) else {
        log::debug!("no readable CMOS RTC: no wall clock");
        return None;
    };
    let wall = seconds * 1_000_000_000;
    if let Some(now) = now {
        NOW_AT_READ.store(now, Ordering::Relaxed);
        WALL_AT_READ.store(wall, Ordering::Release);
    }
    Some(wall)
}

/// QEMU (its fw_cfg device answers with the signature "QEMU") with `isa-debug-exit` at 0xf4 (the
/// device reads 0; a port nobody decodes reads 0xff).
fn qemu_debug_exit_present() -> bool {
    // SAFETY: reading port 0xf4 has no effect on isa-debug-exit (only writes end the VM).
    fw_cfg_is_qemu() && unsafe { cpu::inb(0xf4) } == 0
}

/// Whether QEMU's fw_cfg device answers with its signature "QEMU".
fn fw_cfg_is_qemu() -> bool {
    // SAFETY: fw_cfg: selecting item 0 (the signature) at port 0x510 and reading it from 0x511
    // has no other effect; where there is no fw_cfg the ports read 0xff.
    unsafe {
        cpu::outw(0x510, 0);
        let signature = [
            cpu::inb(0x511),
            cpu::inb(0x511),
            cpu::inb(0x511),
            cpu::inb(0x511),
        ];
        &signature == b"QEMU"
    }
}
