//! The composition root's one mapping from enabled features to concrete types. Nothing else in
//! the code base names an implementation, and the only file with per-slot `cfg`s. Which sets of
//! features are possible (one value per slot, the rules between slots) is checked by `build.rs`
//! from `crates/stardust/Cargo.toml`, where xtask reads the same rules.

use crate::kernel_heap::KernelHeap;

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

/// Whether the image runs on Xen (its hypercalls and event channels are there to call).
#[cfg(feature = "platform-xen")]
pub fn on_xen() -> bool {
    true
}
/// Whether the image runs on Xen: the universal image's choice at boot.
#[cfg(feature = "platform-universal")]
pub fn on_xen() -> bool {
    SelectedPlatform::chosen() == Some(platform::universal::Choice::Detected)
}
/// Whether the image runs on Xen (never, with platform `kvm`).
#[cfg(feature = "platform-kvm")]
#[allow(dead_code)]
pub fn on_xen() -> bool {
    false
}

/// Whether RAM is mapped at its guest-physical address, so DMA memory's address for a device
/// is its address for the CPU (`dma.rs`): KVM-class monitors and Xen PVH, not Xen PV.
pub const IDENTITY_DMA: bool = !cfg!(all(
    feature = "platform-xen",
    not(feature = "xen_guest_pvh")
));

/// Whether the image has device support, and so the platform's device discovery (a device
/// driver, `net_device`, or an app that asked for `stardust/devices`).
pub const HAS_DEVICES: bool = cfg!(feature = "devices");

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

/// virtio-net over whichever transport the platform found it on (virtio-mmio or PCI), with
/// DMA from the kernel's frames (`crate::virtio`).
#[cfg(all(target_os = "none", feature = "nic-virtio"))]
pub type VirtioNetDevice =
    net_virtio::VirtioNet<crate::virtio::KernelHal, crate::virtio::KvmTransport>;

/// Xen's netfront on the guest's first vif, its pages, grants and event channel from the kernel
/// (`crate::xen_host`).
#[cfg(all(target_os = "none", feature = "nic-netfront"))]
pub type XenNetDevice = netfront::NetFront<crate::xen_host::KernelXenHost>;

/// The NIC driver (`net_device = "virtio"`).
#[cfg(all(target_os = "none", feature = "net_device-virtio"))]
pub type SelectedNetDevice = VirtioNetDevice;

/// The NIC driver (`net_device = "netfront"`).
#[cfg(all(target_os = "none", feature = "net_device-netfront"))]
pub type SelectedNetDevice = XenNetDevice;

/// The NIC driver (`net_device = "auto"`, the universal image): virtio-net on a KVM-class
/// monitor, netfront on Xen, as [`on_xen`] says at boot.
#[cfg(all(target_os = "none", feature = "net_device-auto"))]
pub type SelectedNetDevice = netdev::Either<VirtioNetDevice, XenNetDevice>;

/// virtio-blk over whichever transport the platform found it on, with DMA from the kernel's
/// frames (`crate::virtio`).
#[cfg(all(target_os = "none", feature = "disk-virtio"))]
pub type VirtioBlockDevice =
    blk_virtio::VirtioBlk<crate::virtio::KernelHal, crate::virtio::KvmTransport>;

/// Xen's blkfront on the guest's first vbd, its pages, grants and event channel from the kernel
/// (`crate::xen_host`).
#[cfg(all(target_os = "none", feature = "disk-blkfront"))]
pub type XenBlockDevice = blkfront::BlkFront<crate::xen_host::KernelXenHost>;

/// The disk driver (`block_device = "virtio"`).
#[cfg(all(target_os = "none", feature = "block_device-virtio"))]
pub type SelectedBlockDevice = VirtioBlockDevice;

/// The disk driver (`block_device = "blkfront"`).
#[cfg(all(target_os = "none", feature = "block_device-blkfront"))]
pub type SelectedBlockDevice = XenBlockDevice;

/// The disk driver (`block_device = "auto"`, the universal image): virtio-blk on a KVM-class
/// monitor, blkfront on Xen, as [`on_xen`] says at boot.
#[cfg(all(target_os = "none", feature = "block_device-auto"))]
pub type SelectedBlockDevice = blockdev::Either<VirtioBlockDevice, XenBlockDevice>;

/// The filesystem on the disk (`filesystem = "sdfs"`): crate sdfs over the kernel's disk, used
/// through `vfs::FileSystem` (`crate::fs`).
#[cfg(all(target_os = "none", feature = "filesystem-sdfs"))]
pub type SelectedFileSystem = sdfs::Filesystem<crate::block::Disk>;

/// How the kernel's spin locks (the heap's, the network stack's, the drivers') wait for a
/// holder on another CPU: the platform's back-off for virtual CPUs with more than one CPU
/// (`platform::relax`: a yield to the hypervisor now and then), the spin-loop hint alone with
/// one (where no lock is ever contended: the same code as `spin`'s own).
pub type Relax = platform::relax::Backoff<SelectedPlatform, { crate::config::CPUS > 1 }>;
/// A spin lock that waits with [`Relax`] (the network stack's and the PCI ports'; unused
/// without devices).
#[allow(dead_code)]
pub type SpinLock<T> = spin::mutex::SpinMutex<T, Relax>;

/// The heap implementation (`heap::NoHeap` refuses every allocation), and the one instance,
/// which is the image's `#[global_allocator]` when the profile has an allocator.
#[cfg(feature = "allocator-bump")]
pub type SelectedHeap = alloc_bump::Bump;
#[cfg(feature = "allocator-buddy")]
pub type SelectedHeap = alloc_buddy::Buddy<Relax>;
#[cfg(feature = "allocator-talc")]
pub type SelectedHeap = alloc_talc::Talc<Relax>;
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
