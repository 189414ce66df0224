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
//!   physical memory, [`fake_platform_unused_items!`] for fakes of the scheduler seam) and
//!   [`fuzz`], seeded random inputs for the parsers' tests.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

// The fakes use `std`; outside tests the crate is `no_std`, so it is named here once.
#[cfg(all(not(test), feature = "test-utils"))]
extern crate std;

mod boot;
pub mod device;
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzz;
pub mod irq;
mod memory;
mod phys;
pub mod relax;
pub mod universal;

pub use boot::{BootInfo, CMDLINE_MAX, CMDLINE_SCAN_MAX, Cmdline, MODULES_MAX, Module};
pub use memory::{
    DEVICE_MEMORY_MAX, DeviceMemory, FreeMemory, MEMORY_MAP_MAX, MemoryError, MemoryKind,
    MemoryMap, MemoryRegion, PAGE_SIZE, PhysAddr, Range,
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
    /// (0 = success). Never returns. Where [`Platform::exit_carries`] says no for `status`, the
    /// kernel has printed [`status::LINE`] `N` on its console just before.
    fn exit(status: u8) -> !;

    /// Whether [`Platform::exit`] reports `status` to the monitor by itself. Where it does not
    /// (QEMU's `isa-debug-exit` carries 7 bits), the kernel prints `exit status N` on its
    /// console first. Must work at any time, like `exit`. The default: yes.
    fn exit_carries(status: u8) -> bool {
        let _ = status;
        true
    }

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
    /// The platform's timer interrupt (the one [`Platform::set_timer`] arms) calls the handler
    /// given to [`Platform::set_timer_handler`].
    fn idle();

    /// Registers the timer's handler: the platform's timer interrupt (event) calls
    /// `handler(data)` on the CPU whose timer fired, with interrupts masked, on the interrupted
    /// code's stack, after acknowledging the interrupt, and only at or after the deadline
    /// [`Platform::set_timer`] gave (an early interrupt re-arms the timer instead). The handler
    /// may switch threads inside it; the interrupted code resumes when it is switched back to.
    /// Unlike a device line's (`irq_register`), nothing is masked: the timer is one-shot
    /// already. The kernel registers its tick here at boot, before it arms the timer; a later
    /// call replaces the handler. The default: no timer handler (a platform without a timer).
    fn set_timer_handler(handler: irq::Handler, data: usize) {
        let _ = (handler, data);
    }

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

    // Devices and their interrupts (`device`, `irq`): after `init`, and `map_memory` for
    // anything that touches a device.

    /// Shows `visit` every device the platform found at `init` (PCI functions, virtio-mmio
    /// transports), their registers mapped as device memory. The default: none.
    fn devices(visit: &mut dyn FnMut(&device::Device)) {
        let _ = visit;
    }

    /// Routes interrupt line `irq` to `cpu` and registers `handler(data)` for it, then unmasks
    /// the line. The handler contract is `irq`'s module docs': the platform masks the line before
    /// each call, and [`Platform::irq_unmask`] opens it again. The default: no device interrupts.
    fn irq_register(
        irq: irq::Irq,
        cpu: irq::CpuId,
        handler: irq::Handler,
        data: usize,
    ) -> Result<(), irq::IrqError> {
        let _ = (irq, cpu, handler, data);
        Err(irq::IrqError::Unsupported)
    }

    /// Unmasks `irq` after its handler ran and the device's interrupt status was acknowledged.
    /// The default does nothing.
    fn irq_unmask(irq: irq::Irq) {
        let _ = irq;
    }

    /// The CPU the caller runs on. The default: the boot CPU (one CPU).
    fn current_cpu() -> irq::CpuId {
        irq::CpuId(0)
    }

    /// Finds the machine's CPUs, after [`Platform::init`] and before [`Platform::map_memory`]
    /// (firmware tables are still reachable then), and keeps up to `max` of them (the boot CPU
    /// included) for [`Platform::start_cpus`]. Returns how many the machine has (at least 1).
    /// Called only by an image that may use more than one CPU. The default: one.
    fn find_cpus(boot: &BootInfo, max: usize) -> usize {
        let _ = (boot, max);
        1
    }

    /// Starts the CPUs that [`Platform::find_cpus`] kept, one after the other, after the heap
    /// exists: CPU `n` (from 1) runs on the stacks `stacks(n)` gives (`None`: it is left out)
    /// and calls `main(n)` once the platform set it up (its per-CPU block, TSS, IDT, local
    /// timer), with interrupts masked. A CPU that does not come up within a bound is reported
    /// and left out, never waited for forever. Returns how many CPUs run, the boot CPU
    /// included. The default: none is started (1).
    fn start_cpus(
        stacks: &mut dyn FnMut(irq::CpuId) -> Option<CpuStacks>,
        main: fn(irq::CpuId) -> !,
    ) -> usize {
        let _ = (stacks, main);
        1
    }

    /// Called by a CPU that has spun a while on a lock another CPU holds: lets the hypervisor
    /// run another of the guest's virtual CPUs (the holder may be descheduled: four vCPUs on two
    /// physical CPUs). Xen: `SCHEDOP_yield`. The default: the CPU's spin-loop hint (`pause`),
    /// on KVM-class monitors, whose `pause`-loop exiting does the same.
    fn yield_cpu() {
        core::hint::spin_loop();
    }

    /// Interrupts CPU `cpu` (an inter-processor interrupt): it leaves its idle halt. Returns
    /// false where it cannot (`cpu` is not up, or is the caller). The default: false.
    fn send_ipi(cpu: irq::CpuId) -> bool {
        let _ = cpu;
        false
    }
}

/// The stacks a CPU other than the boot CPU gets ([`Platform::start_cpus`]): memory it owns for
/// good, given by their end (top) addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuStacks {
    /// The top of the stack it starts on.
    pub stack: u64,
    /// The top of its stack for double faults (IST1).
    pub fault: u64,
}

/// Exit statuses: the contract between an app, the kernel and `cargo xtask run` (README.md,
/// "Exit statuses", is its table, and a test checks the two agree).
///
/// An app may end with any status 0-255 but the [`RESERVED`] ones, and the caller of `cargo
/// xtask run` sees it unchanged, on every platform. 101-103 are the kernel's own (a panic, a
/// CPU exception, a configuration or boot error); 124-127 are `cargo xtask run`'s outcomes that
/// are not a guest's status (a timeout, a guest that never ran, a monitor killed by a signal, a
/// guest that stopped without reporting one). The kernel refuses an app's exit with a reserved
/// status ([`reserved`]) with a panic that names it, so such a status always means what the
/// table says.
///
/// QEMU's `isa-debug-exit` carries 7 bits (QEMU exits with `(v << 1) | 1`, and a process status
/// has 8 bits). A status that does not fit ([`fits_debug_exit`]) travels on the console: the
/// kernel prints [`LINE`] `N` as its last line, then writes [`DEBUG_EXIT_ON_CONSOLE`] (QEMU exits
/// with 255), and xtask reads the status back from that line.
pub mod status {
    /// Success.
    pub const SUCCESS: u8 = 0;
    /// A kernel panic (including a failed allocation and an app's exit with a reserved status).
    pub const PANIC: u8 = 101;
    /// A CPU exception (page fault, general protection, ...).
    pub const EXCEPTION: u8 = 102;
    /// A configuration or boot error: a bad kernel command line, bad boot information or memory
    /// map, no memory for the page tables or for the heap. The console line says which.
    pub const BAD_CONFIG: u8 = 103;
    /// `cargo xtask run`: the guest still ran at its time limit and was stopped.
    pub const TIMEOUT: u8 = 124;
    /// `cargo xtask run`: the guest never ran (xtask's own error, the monitor failed to start or
    /// failed, `xl create` refused the image, the Xen lab could not run).
    pub const NEVER_RAN: u8 = 125;
    /// `cargo xtask run`: the monitor (QEMU) was killed by a signal xtask did not send.
    pub const KILLED: u8 = 126;
    /// `cargo xtask run`: the guest stopped without reporting a status (a triple fault, a plain
    /// power-off, a crash Xen reported without the guest's status line).
    pub const NO_STATUS: u8 = 127;

    /// Who reserves a status: the kernel (101-103).
    pub const KERNEL: &str = "the kernel";
    /// Who reserves a status: `cargo xtask run` (124-127).
    pub const XTASK: &str = "cargo xtask run";

    /// Every reserved status, who reserves it and what it means; an app's exit with one of them
    /// is refused.
    pub const RESERVED: [(u8, &str, &str); 7] = [
        (PANIC, KERNEL, "kernel panic"),
        (EXCEPTION, KERNEL, "CPU exception"),
        (BAD_CONFIG, KERNEL, "kernel configuration or boot error"),
        (TIMEOUT, XTASK, "timeout"),
        (NEVER_RAN, XTASK, "the guest never ran"),
        (KILLED, XTASK, "the monitor was killed by a signal"),
        (NO_STATUS, XTASK, "the guest stopped without a status"),
    ];

    /// Who reserves `code` and what it means, or `None` for a status an app may use.
    pub fn reserved(code: u8) -> Option<(&'static str, &'static str)> {
        RESERVED
            .iter()
            .find(|(c, _, _)| *c == code)
            .map(|(_, who, what)| (*who, *what))
    }

    /// The console line that carries a status QEMU's `isa-debug-exit` cannot: `exit status N`
    /// (decimal, no padding), the kernel's last line.
    pub const LINE: &str = "exit status ";

    /// What the kernel writes to `isa-debug-exit` for a status that does not fit its 7 bits
    /// (QEMU then exits with 255): "read the status from the console's last line". It is
    /// [`NO_STATUS`], which no guest reports as its own.
    pub const DEBUG_EXIT_ON_CONSOLE: u8 = NO_STATUS;

    /// Whether `isa-debug-exit` carries `code` itself (7 bits, and not the marker
    /// [`DEBUG_EXIT_ON_CONSOLE`]).
    pub const fn fits_debug_exit(code: u8) -> bool {
        code < DEBUG_EXIT_ON_CONSOLE
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reserved_statuses_are_the_kernels_and_xtasks() {
            let all: std::vec::Vec<u8> = (0..=255).filter(|c| reserved(*c).is_some()).collect();
            assert_eq!(all, [101, 102, 103, 124, 125, 126, 127]);
            assert_eq!(reserved(PANIC), Some((KERNEL, "kernel panic")));
            assert_eq!(reserved(TIMEOUT), Some((XTASK, "timeout")));
            assert_eq!(reserved(0), None);
            assert_eq!(reserved(1), None);
            assert_eq!(reserved(128), None);
            assert_eq!(reserved(255), None);
        }

        #[test]
        fn only_seven_bit_statuses_fit_isa_debug_exit() {
            assert!(fits_debug_exit(0) && fits_debug_exit(126));
            assert!(!fits_debug_exit(127) && !fits_debug_exit(128) && !fits_debug_exit(255));
            // QEMU exits with (v << 1) | 1, kept to 8 bits: the marker is QEMU's 255, and no
            // status that fits gives 255.
            let qemu = |v: u8| ((u32::from(v) << 1) | 1) as u8;
            assert_eq!(qemu(DEBUG_EXIT_ON_CONSOLE), 255);
            assert!(
                (0..=255)
                    .filter(|c| fits_debug_exit(*c))
                    .all(|c| qemu(c) != 255)
            );
            assert!(
                reserved(DEBUG_EXIT_ON_CONSOLE).is_some(),
                "no app reports the marker"
            );
        }
    }
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

    /// The [`Platform`](crate::Platform) items a host fake of the scheduler seam does not use,
    /// for use inside its `impl Platform`: the boot protocol (`boot_info` and `map_memory`
    /// fail with `"fake"`, `init` finds no device memory, `init_cpu` does nothing), `exit`
    /// (panics with `exit(N)`), no TSC frequency and no wall clock, and guard pages that cannot
    /// be unmapped (`unmap_page` says no). The fake then writes only the seam itself:
    /// `now_ns`, `set_timer`, `interrupts_disable`, `interrupts_restore` and `idle`.
    ///
    /// ```
    /// struct Fake;
    /// impl platform::Platform for Fake {
    ///     platform::fake_platform_unused_items!();
    ///
    ///     fn now_ns() -> Option<u64> {
    ///         Some(0)
    ///     }
    ///     fn set_timer(_deadline_ns: u64) -> bool {
    ///         false
    ///     }
    ///     fn interrupts_disable() -> bool {
    ///         false
    ///     }
    ///     fn interrupts_restore(_enabled: bool) {}
    ///     fn idle() {}
    /// }
    /// ```
    #[macro_export]
    macro_rules! fake_platform_unused_items {
        () => {
            type BootError = &'static str;
            type MapError = &'static str;

            fn boot_info(_raw: u64) -> ::core::result::Result<$crate::BootInfo, &'static str> {
                ::core::result::Result::Err("fake")
            }

            fn init(_boot: &$crate::BootInfo) -> $crate::DeviceMemory {
                $crate::DeviceMemory::new()
            }

            fn init_cpu() {}

            fn map_memory(
                _boot: &$crate::BootInfo,
                _free: &mut $crate::FreeMemory,
                _devices: &$crate::DeviceMemory,
            ) -> ::core::result::Result<u64, &'static str> {
                ::core::result::Result::Err("fake")
            }

            fn exit(status: u8) -> ! {
                ::core::panic!("exit({status})")
            }

            fn tsc_frequency() -> ::core::option::Option<u64> {
                ::core::option::Option::None
            }

            fn wall_clock_ns() -> ::core::option::Option<u64> {
                ::core::option::Option::None
            }

            #[allow(unsafe_code)]
            unsafe fn unmap_page(
                _page: u64,
                _new_table: &mut dyn FnMut() -> ::core::option::Option<u64>,
            ) -> bool {
                false
            }

            #[allow(unsafe_code)]
            unsafe fn remap_page(_page: u64) {}
        };
    }

    #[cfg(test)]
    mod tests {
        use crate::{BootInfo, FreeMemory, MemoryMap, Platform};

        struct Fake;
        impl Platform for Fake {
            crate::fake_platform_unused_items!();

            fn now_ns() -> Option<u64> {
                Some(7)
            }
            fn set_timer(_deadline_ns: u64) -> bool {
                true
            }
            fn interrupts_disable() -> bool {
                false
            }
            fn interrupts_restore(_enabled: bool) {}
            fn idle() {}
        }

        #[test]
        fn the_unused_items_refuse_and_say_nothing() {
            assert_eq!(Fake::boot_info(0x1000).err(), Some("fake"));
            let boot = BootInfo::default();
            let devices = Fake::init(&boot);
            let mut free = FreeMemory::from_map(&MemoryMap::new(), 0).expect("an empty map");
            assert_eq!(Fake::map_memory(&boot, &mut free, &devices), Err("fake"));
            assert_eq!(Fake::tsc_frequency(), None);
            assert_eq!(Fake::wall_clock_ns(), None);
            #[allow(unsafe_code)]
            // SAFETY: the fake touches no memory.
            let unmapped = unsafe { Fake::unmap_page(0x1000, &mut || None) };
            assert!(!unmapped);
            // The seam stays the fake's own.
            assert_eq!(Fake::now_ns(), Some(7));
            let exit = std::panic::catch_unwind(|| Fake::exit(3)).expect_err("exit never returns");
            assert_eq!(
                exit.downcast_ref::<String>().map(String::as_str),
                Some("exit(3)")
            );
        }
    }
}
