//! One image for two platforms: [`Universal<A, B>`] is a [`Platform`] that finds out at boot
//! which of two platforms it runs on and forwards every call to that one, and
//! [`UniversalConsole`] forwards to the matching console.
//!
//! The choice is made once, on the first call that needs it (the console's `init`, which the
//! kernel calls first; else `boot_info`, or `exit` before either): `B` when [`Platform::detect`]
//! of `B` says so, `A` otherwise. It is kept in an atomic (the [`ChoiceCell`], by default one
//! static for the image), so every later call costs one load and a branch.
//!
//! Stardust's `platform = "universal"` is `Universal<platform_kvm::Kvm, platform_xen::Xen>` with
//! `UniversalConsole<that, Com1, XenConsole>` (named in the kernel's `select.rs`).

use crate::{BootInfo, ConsoleDevice, DeviceMemory, FreeMemory, Platform};
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU8, Ordering};

/// Which of the two platforms an image runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The first platform, `A`: the fallback, when `B` did not detect itself (a KVM-class
    /// monitor).
    Fallback,
    /// The second platform, `B`: it detected itself at boot (Xen).
    Detected,
}

/// Where a [`Universal`] platform keeps its choice (0 = not made yet, 1 = the fallback `A`, 2 = the detected `B`).
pub trait ChoiceCell {
    /// The one cell.
    fn cell() -> &'static AtomicU8;
}

/// The image's one choice cell (the default; host tests give each fake its own).
#[derive(Debug)]
pub struct ImageChoice;

static IMAGE_CHOICE: AtomicU8 = AtomicU8::new(0);

impl ChoiceCell for ImageChoice {
    fn cell() -> &'static AtomicU8 {
        &IMAGE_CHOICE
    }
}

/// A platform that is `B` when `B` detects itself at boot, `A` otherwise.
pub struct Universal<A, B, C = ImageChoice>(PhantomData<Types<A, B, C>>);

/// What [`Universal`] holds of its parameters: nothing (a `fn` type: always `Send + Sync`).
type Types<A, B, C> = fn() -> (A, B, C);

impl<A, B, C> fmt::Debug for Universal<A, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Universal")
    }
}

/// Something that knows (deciding it on the first question) which of two platforms runs:
/// what [`UniversalConsole`] asks.
pub trait Chooser {
    /// The platform this image runs on, chosen on the first call.
    fn choice() -> Choice;
}

impl<A: Platform, B: Platform, C: ChoiceCell> Chooser for Universal<A, B, C> {
    fn choice() -> Choice {
        let cell = C::cell();
        match cell.load(Ordering::Acquire) {
            1 => Choice::Fallback,
            2 => Choice::Detected,
            _ => {
                // Only the boot CPU gets here (the first platform call is early in boot);
                // were two racing, both would detect the same machine.
                let choice = if B::detect() {
                    Choice::Detected
                } else {
                    Choice::Fallback
                };
                cell.store(
                    match choice {
                        Choice::Fallback => 1,
                        Choice::Detected => 2,
                    },
                    Ordering::Release,
                );
                choice
            }
        }
    }
}

impl<A: Platform, B: Platform, C: ChoiceCell> Universal<A, B, C> {
    /// The choice made so far (`None` before the first call that makes it).
    pub fn chosen() -> Option<Choice> {
        match C::cell().load(Ordering::Acquire) {
            1 => Some(Choice::Fallback),
            2 => Some(Choice::Detected),
            _ => None,
        }
    }
}

/// An error of one of the two platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first platform's.
    A(A),
    /// The second platform's.
    B(B),
}

impl<A: fmt::Display, B: fmt::Display> fmt::Display for Either<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Either::A(a) => a.fmt(f),
            Either::B(b) => b.fmt(f),
        }
    }
}

/// Calls `$method` of the chosen platform.
macro_rules! forward {
    ($method:ident ( $($arg:expr),* )) => {
        match Self::choice() {
            Choice::Fallback => A::$method($($arg),*),
            Choice::Detected => B::$method($($arg),*),
        }
    };
}

impl<A: Platform, B: Platform, C: ChoiceCell> Platform for Universal<A, B, C> {
    type BootError = Either<A::BootError, B::BootError>;
    type MapError = Either<A::MapError, B::MapError>;

    /// Whether either platform is the one running.
    fn detect() -> bool {
        A::detect() || B::detect()
    }

    fn boot_info(raw: u64) -> Result<BootInfo, Self::BootError> {
        match Self::choice() {
            Choice::Fallback => A::boot_info(raw).map_err(Either::A),
            Choice::Detected => B::boot_info(raw).map_err(Either::B),
        }
    }

    fn init(boot: &BootInfo) -> DeviceMemory {
        forward!(init(boot))
    }

    fn init_cpu() {
        forward!(init_cpu())
    }

    fn map_memory(
        boot: &BootInfo,
        free: &mut FreeMemory,
        devices: &DeviceMemory,
    ) -> Result<u64, Self::MapError> {
        match Self::choice() {
            Choice::Fallback => A::map_memory(boot, free, devices).map_err(Either::A),
            Choice::Detected => B::map_memory(boot, free, devices).map_err(Either::B),
        }
    }

    fn exit(status: u8) -> ! {
        forward!(exit(status))
    }

    fn exit_carries(status: u8) -> bool {
        forward!(exit_carries(status))
    }

    fn tsc_frequency() -> Option<u64> {
        forward!(tsc_frequency())
    }

    fn now_ns() -> Option<u64> {
        forward!(now_ns())
    }

    fn set_timer(deadline_ns: u64) -> bool {
        forward!(set_timer(deadline_ns))
    }

    fn interrupts_disable() -> bool {
        forward!(interrupts_disable())
    }

    fn interrupts_restore(enabled: bool) {
        forward!(interrupts_restore(enabled))
    }

    fn idle() {
        forward!(idle())
    }

    fn wall_clock_ns() -> Option<u64> {
        forward!(wall_clock_ns())
    }

    #[allow(unsafe_code)]
    unsafe fn unmap_page(page: u64, new_table: &mut dyn FnMut() -> Option<u64>) -> bool {
        // SAFETY: the caller's guarantees, passed on unchanged to the platform that mapped the
        // memory (the chosen one: the choice never changes).
        unsafe { forward!(unmap_page(page, new_table)) }
    }

    #[allow(unsafe_code)]
    unsafe fn remap_page(page: u64) {
        // SAFETY: as `unmap_page`: forwarded to the platform that unmapped the page.
        unsafe { forward!(remap_page(page)) }
    }

    fn set_timer_handler(handler: crate::irq::Handler, data: usize) {
        forward!(set_timer_handler(handler, data))
    }

    fn devices(visit: &mut dyn FnMut(&crate::device::Device)) {
        forward!(devices(visit))
    }

    fn irq_register(
        irq: crate::irq::Irq,
        cpu: crate::irq::CpuId,
        handler: crate::irq::Handler,
        data: usize,
    ) -> Result<(), crate::irq::IrqError> {
        forward!(irq_register(irq, cpu, handler, data))
    }

    fn irq_unmask(irq: crate::irq::Irq) {
        forward!(irq_unmask(irq))
    }

    fn current_cpu() -> crate::irq::CpuId {
        forward!(current_cpu())
    }

    fn find_cpus(boot: &BootInfo, max: usize) -> usize {
        forward!(find_cpus(boot, max))
    }

    fn start_cpus(
        stacks: &mut dyn FnMut(crate::irq::CpuId) -> Option<crate::CpuStacks>,
        main: fn(crate::irq::CpuId) -> !,
    ) -> usize {
        forward!(start_cpus(stacks, main))
    }

    fn send_ipi(cpu: crate::irq::CpuId) -> bool {
        forward!(send_ipi(cpu))
    }

    fn yield_cpu() {
        forward!(yield_cpu())
    }
}

/// The console of the platform `P` chose: `a` on the first platform, `b` on the second. Its
/// `init` makes the choice (it is the first platform code the kernel runs).
pub struct UniversalConsole<P, CA: 'static, CB: 'static> {
    a: &'static CA,
    b: &'static CB,
    chooser: PhantomData<fn() -> P>,
}

impl<P, CA, CB> fmt::Debug for UniversalConsole<P, CA, CB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UniversalConsole")
    }
}

impl<P, CA, CB> UniversalConsole<P, CA, CB> {
    /// The console that is `a` or `b` as `P` chooses.
    pub const fn new(a: &'static CA, b: &'static CB) -> Self {
        UniversalConsole {
            a,
            b,
            chooser: PhantomData,
        }
    }
}

impl<P: Chooser, CA: ConsoleDevice, CB: ConsoleDevice> ConsoleDevice
    for UniversalConsole<P, CA, CB>
{
    fn init(&self) {
        match P::choice() {
            Choice::Fallback => self.a.init(),
            Choice::Detected => self.b.init(),
        }
    }

    fn write(&self, bytes: &[u8]) {
        match P::choice() {
            Choice::Fallback => self.a.write(bytes),
            Choice::Detected => self.b.write(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::RecordingConsole;
    use crate::{MemoryKind, MemoryMap, MemoryRegion, PhysAddr};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU32};
    use std::vec::Vec;

    /// A fake platform: records the calls it got in its log, detects itself as `DETECT`
    /// says, and counts its `detect` calls.
    macro_rules! fake_platform {
        ($name:ident, $tag:literal) => {
            struct $name;
            #[allow(dead_code)]
            impl $name {
                fn log() -> &'static Mutex<Vec<&'static str>> {
                    static LOG: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
                    &LOG
                }
                fn detected() -> &'static AtomicBool {
                    static D: AtomicBool = AtomicBool::new(false);
                    &D
                }
                fn detects() -> &'static AtomicU32 {
                    static N: AtomicU32 = AtomicU32::new(0);
                    &N
                }
                fn calls() -> Vec<&'static str> {
                    Self::log().lock().unwrap().clone()
                }
                fn note(call: &'static str) {
                    Self::log().lock().unwrap().push(call);
                }
            }
            impl Platform for $name {
                type BootError = &'static str;
                type MapError = &'static str;
                fn detect() -> bool {
                    Self::detects().fetch_add(1, Ordering::Relaxed);
                    Self::detected().load(Ordering::Relaxed)
                }
                fn boot_info(raw: u64) -> Result<BootInfo, Self::BootError> {
                    Self::note("boot_info");
                    if raw == 0 {
                        return Err(concat!($tag, ": no boot info"));
                    }
                    let mut memory = MemoryMap::new();
                    memory
                        .push(MemoryRegion::new(PhysAddr(0), raw, MemoryKind::Ram))
                        .unwrap();
                    Ok(BootInfo {
                        memory,
                        ..BootInfo::default()
                    })
                }
                fn init(_boot: &BootInfo) -> DeviceMemory {
                    Self::note("init");
                    DeviceMemory::new()
                }
                fn init_cpu() {
                    Self::note("init_cpu");
                }
                fn map_memory(
                    _boot: &BootInfo,
                    _free: &mut FreeMemory,
                    _devices: &DeviceMemory,
                ) -> Result<u64, Self::MapError> {
                    Self::note("map_memory");
                    Err(concat!($tag, ": no tables"))
                }
                fn exit(status: u8) -> ! {
                    Self::note("exit");
                    std::panic::panic_any((concat!($tag, " exit"), status))
                }
                fn exit_carries(status: u8) -> bool {
                    Self::note("exit_carries");
                    $tag == "b" || status < 128
                }
                fn tsc_frequency() -> Option<u64> {
                    Self::note("tsc_frequency");
                    Some(if $tag == "a" { 1 } else { 2 })
                }
                fn now_ns() -> Option<u64> {
                    Self::note("now_ns");
                    None
                }
                fn set_timer(_deadline_ns: u64) -> bool {
                    Self::note("set_timer");
                    $tag == "b"
                }
                fn interrupts_disable() -> bool {
                    Self::note("interrupts_disable");
                    true
                }
                fn interrupts_restore(_enabled: bool) {
                    Self::note("interrupts_restore");
                }
                fn idle() {
                    Self::note("idle");
                }
                fn wall_clock_ns() -> Option<u64> {
                    Self::note("wall_clock_ns");
                    None
                }
                #[allow(unsafe_code)]
                unsafe fn unmap_page(
                    _page: u64,
                    _new_table: &mut dyn FnMut() -> Option<u64>,
                ) -> bool {
                    Self::note("unmap_page");
                    true
                }
                #[allow(unsafe_code)]
                unsafe fn remap_page(_page: u64) {
                    Self::note("remap_page");
                }
            }
        };
    }

    macro_rules! cell {
        ($name:ident) => {
            struct $name;
            impl ChoiceCell for $name {
                fn cell() -> &'static AtomicU8 {
                    static C: AtomicU8 = AtomicU8::new(0);
                    &C
                }
            }
        };
    }

    #[test]
    fn a_when_b_does_not_detect_itself_and_every_call_forwarded() {
        fake_platform!(A1, "a");
        fake_platform!(B1, "b");
        cell!(C1);
        type U = Universal<A1, B1, C1>;
        assert_eq!(U::chosen(), None);
        let boot = U::boot_info(16 << 20).expect("a's boot info");
        assert_eq!(boot.memory.total_ram(), 16 << 20);
        assert_eq!(U::chosen(), Some(Choice::Fallback));
        let devices = U::init(&boot);
        U::init_cpu();
        let mut free = FreeMemory::from_map(&boot.memory, 0).unwrap();
        assert_eq!(
            U::map_memory(&boot, &mut free, &devices)
                .unwrap_err()
                .to_string(),
            "a: no tables"
        );
        assert_eq!(U::tsc_frequency(), Some(1));
        assert_eq!(U::now_ns(), None);
        assert!(!U::set_timer(5));
        assert!(U::interrupts_disable());
        U::interrupts_restore(true);
        U::idle();
        assert_eq!(U::wall_clock_ns(), None);
        #[allow(unsafe_code)]
        // SAFETY: fakes: nothing is unmapped.
        unsafe {
            assert!(U::unmap_page(0x1000, &mut || None));
            U::remap_page(0x1000);
        }
        assert_eq!(
            A1::calls(),
            [
                "boot_info",
                "init",
                "init_cpu",
                "map_memory",
                "tsc_frequency",
                "now_ns",
                "set_timer",
                "interrupts_disable",
                "interrupts_restore",
                "idle",
                "wall_clock_ns",
                "unmap_page",
                "remap_page",
            ]
        );
        assert!(B1::calls().is_empty());
        // Asked once, however many calls followed.
        assert_eq!(B1::detects().load(Ordering::Relaxed), 1);
        assert_eq!(A1::detects().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn b_when_it_detects_itself_and_the_choice_is_kept() {
        fake_platform!(A2, "a");
        fake_platform!(B2, "b");
        cell!(C2);
        type U = Universal<A2, B2, C2>;
        B2::detected().store(true, Ordering::Relaxed);
        assert_eq!(U::boot_info(0).unwrap_err().to_string(), "b: no boot info");
        assert_eq!(U::chosen(), Some(Choice::Detected));
        // Whatever B says later, the choice stays.
        B2::detected().store(false, Ordering::Relaxed);
        assert_eq!(U::tsc_frequency(), Some(2));
        assert!(U::set_timer(1));
        assert!(U::exit_carries(200));
        assert_eq!(
            B2::calls(),
            ["boot_info", "tsc_frequency", "set_timer", "exit_carries"]
        );
        assert!(A2::calls().is_empty());
        assert_eq!(B2::detects().load(Ordering::Relaxed), 1);
    }

    #[test]
    fn exit_before_boot_info_makes_the_choice() {
        fake_platform!(A3, "a");
        fake_platform!(B3, "b");
        cell!(C3);
        type U = Universal<A3, B3, C3>;
        assert!(U::exit_carries(7) && !U::exit_carries(200));
        let e = std::panic::catch_unwind(|| U::exit(7)).unwrap_err();
        assert_eq!(
            e.downcast_ref::<(&str, u8)>(),
            Some(&("a exit", 7)),
            "a's exit, with the status"
        );
        assert_eq!(U::chosen(), Some(Choice::Fallback));
        assert_eq!(A3::calls(), ["exit_carries", "exit_carries", "exit"]);
        assert!(B3::calls().is_empty());
    }

    #[test]
    fn the_console_makes_the_choice_and_follows_it() {
        fake_platform!(A4, "a");
        fake_platform!(B4, "b");
        cell!(C4);
        type U = Universal<A4, B4, C4>;
        static CA: RecordingConsole = RecordingConsole::new();
        static CB: RecordingConsole = RecordingConsole::new();
        static CONSOLE: UniversalConsole<U, RecordingConsole, RecordingConsole> =
            UniversalConsole::new(&CA, &CB);
        B4::detected().store(true, Ordering::Relaxed);
        CONSOLE.init();
        assert_eq!(U::chosen(), Some(Choice::Detected));
        CONSOLE.write(b"hello\n");
        assert_eq!(CB.text(), "hello\n");
        assert_eq!(CA.text(), "");
        // The platform follows the console's choice.
        assert_eq!(U::tsc_frequency(), Some(2));
        assert_eq!(B4::detects().load(Ordering::Relaxed), 1);
    }

    #[test]
    fn detect_is_either() {
        fake_platform!(A5, "a");
        fake_platform!(B5, "b");
        cell!(C5);
        type U = Universal<A5, B5, C5>;
        assert!(!U::detect());
        B5::detected().store(true, Ordering::Relaxed);
        assert!(U::detect());
        // Asking does not choose.
        assert_eq!(U::chosen(), None);
    }
}
