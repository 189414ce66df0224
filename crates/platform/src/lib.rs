//! The platform interface: what the kernel needs from the machine it runs on.
//!
//! A platform crate (`platform-kvm`, `platform-xen`) implements [`Platform`]; the kernel's
//! composition root names the concrete type once ([`universal::Universal`] of two, for an image
//! that finds out at boot which one it runs on). This crate is pure logic and data: the
//! boot-information types every platform fills in ([`BootInfo`], [`MemoryMap`]) and the
//! arithmetic on them ([`FreeMemory`]), all host-testable.
//!
//! ```
//! use platform::{MemoryKind, MemoryMap, MemoryRegion, PhysAddr};
//! let mut map = MemoryMap::new();
//! map.push(MemoryRegion::new(PhysAddr(0), 32 << 20, MemoryKind::Ram)).unwrap();
//! assert_eq!(map.total_ram(), 32 << 20);
//! ```
//!
//! # Cargo features
//! - `test-utils`: fakes for host tests (a console that records what it was given, fake
//!   physical memory) and [`fuzz`], seeded random inputs for the parsers' tests.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

// The fakes use `std`; outside tests the crate is `no_std`, so it is named here once.
#[cfg(all(not(test), feature = "test-utils"))]
extern crate std;

pub mod acpi;
mod boot;
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzz;
mod memory;
mod phys;
pub mod universal;

pub use boot::{BootInfo, CMDLINE_MAX, Cmdline, MODULES_MAX, Module};
pub use memory::{
    DeviceMemory, FreeMemory, MEMORY_MAP_MAX, MemoryError, MemoryKind, MemoryMap, MemoryRegion,
    PAGE_SIZE, PhysAddr, Range,
};
#[cfg(any(test, feature = "test-utils"))]
pub use phys::FakeMemory;
pub use phys::{PhysRead, Unreadable};

/// A byte sink for console output: a UART, a debug port, a shared-memory ring.
///
/// Contract: `write` MUST either deliver every byte or drop output silently; it MUST NOT panic or
/// block forever (the panic path writes through it). It may be called with interrupts off, and
/// before [`ConsoleDevice::init`] (output may then be lost).
pub trait ConsoleDevice: Sync {
    /// Sets the device up (baud rate, FIFOs). Called once, early; the default does nothing.
    fn init(&self) {}
    /// Writes all of `bytes` to the device.
    fn write(&self, bytes: &[u8]);
}

/// What a platform provides to the kernel besides its console devices: the boot protocol
/// (reading the boot information, CPU tables, the kernel's memory mappings), discovery,
/// power-off and time. The kernel's boot sequence calls these in the order listed; it never
/// touches a boot protocol or a hypervisor interface itself.
///
/// Contract: everything up to [`Platform::map_memory`] is called once, on the boot CPU, in
/// order. [`Platform::exit`] may be called at any time, even before `boot_info` (it then uses
/// the methods that need no discovery), and never returns, whatever the status.
pub trait Platform {
    /// Why the boot information could not be read.
    type BootError: core::fmt::Display;
    /// Why the kernel's mappings could not be built.
    type MapError: core::fmt::Display;

    /// Whether the image runs on this platform, asked (before anything else) by an image built
    /// for more than one ([`universal::Universal`]). Must work at any time, without boot
    /// information, and change nothing. The default: yes (a platform that cannot tell).
    fn detect() -> bool {
        true
    }

    /// Reads and copies the boot information the entry code was handed (`raw` is what the
    /// boot protocol passed: the physical address of `hvm_start_info` for PVH, the virtual
    /// address of Xen's `start_info` for a PV guest). Memory the kernel must never reuse (the
    /// image aside) is not `Ram` in the returned memory map.
    fn boot_info(raw: u64) -> Result<BootInfo, Self::BootError>;

    /// Discovers the platform from the boot information (e.g. how to power off). Returns the
    /// device memory the kernel must map (uncached) for the platform's own use.
    fn init(boot: &BootInfo) -> DeviceMemory;

    /// Installs the CPU's exception handling (which then calls the kernel's report).
    fn init_cpu();

    /// Builds the kernel's mappings: the image W^X, every range of `free` read-write at its
    /// own address, `devices` uncached. Frames for page tables come out of `free`; returns the
    /// bytes they took.
    fn map_memory(
        boot: &BootInfo,
        free: &mut FreeMemory,
        devices: &DeviceMemory,
    ) -> Result<u64, Self::MapError>;

    /// Powers the machine off and reports `status` to the monitor where it can take one
    /// (0 = success). Never returns.
    fn exit(status: u8) -> !;

    /// The TSC frequency in Hz, calibrating it against a platform timer if need be (which may
    /// take some milliseconds), or `None` when it cannot be found.
    fn tsc_frequency() -> Option<u64>;

    // The seam schedulers build on (timer, idle, interrupt masking), per CPU.

    /// Monotonic time in nanoseconds from an arbitrary origin, or `None` without a clock.
    fn now_ns() -> Option<u64>;

    /// Arms this CPU's one-shot timer: its interrupt (event) arrives at or after `deadline_ns`
    /// on the [`Platform::now_ns`] clock. Returns `false` when the platform has no timer (the
    /// caller must then poll).
    fn set_timer(deadline_ns: u64) -> bool;

    /// Masks interrupts (events) on this CPU; returns whether they were enabled.
    fn interrupts_disable() -> bool;

    /// Restores what [`Platform::interrupts_disable`] returned.
    fn interrupts_restore(enabled: bool);

    /// Called with interrupts masked: enables them and waits for the next one, atomically (an
    /// interrupt that arrived after the caller's last check is not missed). Returns with
    /// interrupts enabled, after the handler ran.
    ///
    /// The platform's timer interrupt (the one [`Platform::set_timer`] arms) calls the kernel's
    /// `__stardust_timer_interrupt` (through `arch_x86_64::cpu::timer_interrupt`) with
    /// interrupts masked, on the interrupted code's stack, after acknowledging the interrupt:
    /// the kernel may switch threads inside it, and the interrupted code resumes when it is
    /// switched back to.
    fn idle();

    /// Wall-clock time in nanoseconds since the Unix epoch (UTC), where the platform has a
    /// clock for it (KVM: the CMOS RTC; Xen: shared info's wall clock), else `None`.
    fn wall_clock_ns() -> Option<u64>;

    /// Makes the 4 KiB page at `page` inaccessible, so that any access faults (a thread stack's
    /// guard page). Where a larger mapping must be split, `new_table` gives a zeroed-or-not
    /// page-aligned 4 KiB frame (its physical = virtual address) for the new page table, or
    /// `None` when memory ran out. Returns whether the page is now unmapped.
    ///
    /// # Safety
    /// `page` is page-aligned RAM that [`Platform::map_memory`] mapped read-write, owned by the
    /// caller, and nothing accesses it until [`Platform::remap_page`].
    #[allow(unsafe_code)]
    unsafe fn unmap_page(page: u64, new_table: &mut dyn FnMut() -> Option<u64>) -> bool;

    /// Maps a page that [`Platform::unmap_page`] unmapped read-write again (before its memory is
    /// reused).
    ///
    /// # Safety
    /// `page` was unmapped by [`Platform::unmap_page`] and not remapped since.
    #[allow(unsafe_code)]
    unsafe fn remap_page(page: u64);
}

/// Exit statuses the kernel itself reports (an application chooses its own, 0 = success).
pub mod status {
    /// A kernel panic (including a failed allocation).
    pub const PANIC: u8 = 101;
    /// A CPU exception (page fault, general protection, ...).
    pub const EXCEPTION: u8 = 102;
    /// A bad kernel command line or configuration.
    pub const BAD_CONFIG: u8 = 103;
}

#[cfg(any(test, feature = "test-utils"))]
pub mod fake {
    //! Fakes for host tests.
    use std::{sync::Mutex, vec::Vec};

    /// A console that records everything written to it.
    #[derive(Debug, Default)]
    pub struct RecordingConsole {
        bytes: Mutex<Vec<u8>>,
    }

    impl RecordingConsole {
        /// An empty recording (usable in a `static`).
        pub const fn new() -> Self {
            RecordingConsole {
                bytes: Mutex::new(Vec::new()),
            }
        }

        /// What has been written so far, lossily as text.
        pub fn text(&self) -> std::string::String {
            let bytes = self.bytes.lock().expect("recording console lock poisoned");
            std::string::String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl super::ConsoleDevice for RecordingConsole {
        fn write(&self, bytes: &[u8]) {
            self.bytes
                .lock()
                .expect("recording console lock poisoned")
                .extend_from_slice(bytes);
        }
    }
}
