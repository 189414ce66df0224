//! The composition root's one mapping from enabled features to concrete types. Nothing else in
//! the code base names an implementation, and the only file with per-slot `cfg`s.

use crate::kernel_heap::KernelHeap;

#[cfg(not(any(
    feature = "platform-kvm",
    feature = "platform-xen",
    feature = "platform-universal"
)))]
compile_error!(
    "no platform selected: build with `cargo xtask build APP --profile P`, or enable one of the \
     `stardust` features platform-kvm, platform-xen, platform-universal (see `cargo xtask build \
     --print-cargo`)"
);
#[cfg(any(
    all(feature = "platform-kvm", feature = "platform-xen"),
    all(feature = "platform-kvm", feature = "platform-universal"),
    all(feature = "platform-xen", feature = "platform-universal"),
))]
compile_error!(
    "two platforms selected: enable exactly one of platform-kvm, platform-xen, platform-universal"
);
#[cfg(not(any(
    feature = "console-serial",
    feature = "console-debugcon",
    feature = "console-xen",
    feature = "console-auto"
)))]
compile_error!(
    "no console selected: enable one of stardust/console-serial, stardust/console-debugcon, \
     stardust/console-xen, stardust/console-auto"
);
#[cfg(any(
    all(feature = "console-serial", feature = "console-debugcon"),
    all(feature = "console-serial", feature = "console-xen"),
    all(feature = "console-serial", feature = "console-auto"),
    all(feature = "console-debugcon", feature = "console-xen"),
    all(feature = "console-debugcon", feature = "console-auto"),
    all(feature = "console-xen", feature = "console-auto"),
))]
compile_error!(
    "two consoles selected: enable exactly one of console-serial, console-debugcon, \
     console-xen, console-auto"
);
#[cfg(all(
    feature = "platform-kvm",
    not(any(feature = "console-serial", feature = "console-debugcon"))
))]
compile_error!("platform kvm has the consoles `serial` and `debugcon`");
#[cfg(all(feature = "xen_guest_pvh", not(feature = "platform-xen")))]
compile_error!(
    "xen_guest_pvh is a mode of platform xen: enable platform-xen too (platform-universal is always \
     a PVH guest on Xen)"
);
#[cfg(all(feature = "platform-xen", not(feature = "console-xen")))]
compile_error!("platform xen has one console: `xen` (the PV console ring)");
#[cfg(all(feature = "platform-universal", not(feature = "console-auto")))]
compile_error!(
    "platform universal has one console: `auto` (COM1 on a KVM-class monitor, the console ring on Xen)"
);
#[cfg(all(feature = "console-auto", not(feature = "platform-universal")))]
compile_error!("console `auto` is platform universal's: pick the platform's own console");
#[cfg(not(any(
    feature = "allocator-none",
    feature = "allocator-bump",
    feature = "allocator-buddy",
    feature = "allocator-talc"
)))]
compile_error!(
    "no allocator selected: enable one of stardust/allocator-none, stardust/allocator-bump, \
     stardust/allocator-buddy, stardust/allocator-talc"
);
#[cfg(any(
    all(feature = "allocator-none", feature = "allocator-bump"),
    all(feature = "allocator-none", feature = "allocator-buddy"),
    all(feature = "allocator-none", feature = "allocator-talc"),
    all(feature = "allocator-bump", feature = "allocator-buddy"),
    all(feature = "allocator-bump", feature = "allocator-talc"),
    all(feature = "allocator-buddy", feature = "allocator-talc"),
))]
compile_error!(
    "two allocators selected: enable exactly one of allocator-none, allocator-bump, \
     allocator-buddy, allocator-talc"
);
#[cfg(not(any(
    feature = "scheduler-none",
    feature = "scheduler-coop",
    feature = "scheduler-preempt",
    feature = "scheduler-async"
)))]
compile_error!(
    "no scheduler selected: enable one of stardust/scheduler-none, stardust/scheduler-coop, \
     stardust/scheduler-preempt, stardust/scheduler-async"
);
#[cfg(any(
    all(feature = "scheduler-none", feature = "scheduler-coop"),
    all(feature = "scheduler-none", feature = "scheduler-preempt"),
    all(feature = "scheduler-none", feature = "scheduler-async"),
    all(feature = "scheduler-coop", feature = "scheduler-preempt"),
    all(feature = "scheduler-coop", feature = "scheduler-async"),
    all(feature = "scheduler-preempt", feature = "scheduler-async"),
))]
compile_error!(
    "two schedulers selected: enable exactly one of scheduler-none, scheduler-coop, \
     scheduler-preempt, scheduler-async"
);
#[cfg(all(feature = "allocator-none", not(feature = "scheduler-none")))]
compile_error!(
    "the schedulers coop, preempt and async need a heap (thread stacks, tasks): pick an \
     allocator other than `none`"
);

/// The thread scheduling policy (`scheduler = "coop" | "preempt"`).
#[cfg(feature = "scheduler-coop")]
pub type SelectedPolicy = sched_coop::Coop;
#[cfg(feature = "scheduler-preempt")]
pub type SelectedPolicy = sched_preempt::Preempt;

/// The async executor (`scheduler = "async"`), and its one instance.
#[cfg(feature = "scheduler-async")]
pub type SelectedExecutor = sched_async::Executor<SelectedPlatform>;
#[cfg(feature = "scheduler-async")]
pub static EXECUTOR: SelectedExecutor = SelectedExecutor::new();

/// The platform.
#[cfg(feature = "platform-kvm")]
pub type SelectedPlatform = platform_kvm::Kvm;
#[cfg(feature = "platform-xen")]
pub type SelectedPlatform = platform_xen::Xen;
/// One image for both: Xen PVH when CPUID says Xen, the KVM-class platform otherwise.
#[cfg(feature = "platform-universal")]
pub type SelectedPlatform = platform::universal::Universal<platform_kvm::Kvm, platform_xen::Xen>;

/// The console device, and its one instance.
#[cfg(all(feature = "platform-kvm", feature = "console-serial"))]
pub type SelectedConsole = platform_kvm::Com1;
#[cfg(all(feature = "platform-kvm", feature = "console-serial"))]
pub static CONSOLE: &SelectedConsole = &platform_kvm::COM1;
#[cfg(all(feature = "platform-kvm", feature = "console-debugcon"))]
pub type SelectedConsole = platform_kvm::DebugPort;
#[cfg(all(feature = "platform-kvm", feature = "console-debugcon"))]
pub static CONSOLE: &SelectedConsole = &platform_kvm::DEBUG_PORT;
#[cfg(all(feature = "platform-xen", feature = "console-xen"))]
pub type SelectedConsole = platform_xen::XenConsole;
#[cfg(all(feature = "platform-xen", feature = "console-xen"))]
pub static CONSOLE: &SelectedConsole = &platform_xen::XEN_CONSOLE;
/// COM1 on a KVM-class monitor, the console ring on Xen (as the platform chose).
#[cfg(all(feature = "platform-universal", feature = "console-auto"))]
pub type SelectedConsole = platform::universal::UniversalConsole<
    SelectedPlatform,
    platform_kvm::Com1,
    platform_xen::XenConsole,
>;
#[cfg(all(feature = "platform-universal", feature = "console-auto"))]
pub static CONSOLE: &SelectedConsole =
    &SelectedConsole::new(&platform_kvm::COM1, &platform_xen::XEN_CONSOLE);

/// The heap implementation (`heap::NoHeap` refuses every allocation), and the one instance,
/// which is the image's `#[global_allocator]` when the profile has an allocator.
#[cfg(feature = "allocator-bump")]
pub type SelectedHeap = alloc_bump::Bump;
#[cfg(feature = "allocator-buddy")]
pub type SelectedHeap = alloc_buddy::Buddy;
#[cfg(feature = "allocator-talc")]
pub type SelectedHeap = alloc_talc::Talc;
#[cfg(feature = "allocator-none")]
pub type SelectedHeap = heap::NoHeap;

/// Whether the profile has a heap.
pub const HAS_HEAP: bool = cfg!(not(feature = "allocator-none"));

#[cfg_attr(not(feature = "allocator-none"), global_allocator)]
pub static HEAP: KernelHeap<SelectedHeap, SelectedPlatform> = KernelHeap::new(SelectedHeap::new());

/// The platform the image was built for, as xtask's `run --image` reads it from an ELF note
/// before booting a prebuilt image (a KVM image refused on Xen, a Xen one on QEMU): the profile's
/// `platform`, `xen-pvh` for a Xen PVH guest (docs/CONTRACT.md).
#[cfg(feature = "platform-kvm")]
macro_rules! platform_name {
    () => {
        "kvm"
    };
}
#[cfg(all(feature = "platform-xen", not(feature = "xen_guest_pvh")))]
macro_rules! platform_name {
    () => {
        "xen"
    };
}
#[cfg(all(feature = "platform-xen", feature = "xen_guest_pvh"))]
macro_rules! platform_name {
    () => {
        "xen-pvh"
    };
}
#[cfg(feature = "platform-universal")]
macro_rules! platform_name {
    () => {
        "universal"
    };
}

// Owner "Stardust", type 0x53440001 (a type no Xen note has: Xen and QEMU skip it), in the image's
// note segment (the linker script's .note.Xen section).
core::arch::global_asm!(concat!(
    ".pushsection .note.Xen, \"a\", @note\n",
    ".balign 4\n",
    ".long 9\n",
    ".long 4f - 3f\n",
    ".long 0x53440001\n",
    ".asciz \"Stardust\"\n",
    ".balign 4\n",
    "3: .ascii \"",
    platform_name!(),
    "\"\n",
    "4: .balign 4\n",
    ".popsection\n",
));
