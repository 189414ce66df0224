//! The Stardust kernel: the composition root that boots the machine and runs the application.
//!
//! This crate is where the profile's choices meet: `select.rs` is the one place that maps the
//! enabled Cargo features to concrete types (platform, console, heap), and the boot sequence
//! below wires them together. Apps never see this crate; they use the `stardust` facade.
//!
//! Boot sequence (each step is a bootchart phase, printed with `bootchart` on the command line):
//! `entry` (first instruction, 32-bit) -> `rust` (long mode, boot stack) -> `console` ->
//! `boot-info` (the platform's boot information copied, command line checked, platform discovered)
//! -> `cpu` (the platform's exception tables) -> `paging` (the platform's W^X mappings, guard
//! page) -> `heap` (all free RAM) -> `main` (the application).
//!
//! # Cargo features
//! One per slot value; exactly one per slot: `platform-kvm`, `platform-xen`, `platform-universal`
//! (both, chosen at boot: `platform::universal`); `console-serial`, `console-debugcon`,
//! `console-xen`, `console-auto` (platform-universal's: COM1 or the Xen ring); `allocator-none`, `allocator-bump`, `allocator-buddy`, `allocator-talc`;
//! `scheduler-none`, `scheduler-coop`, `scheduler-preempt`, `scheduler-async`. `threads` (not a
//! slot value) is the thread runtime, which `scheduler-coop` and `scheduler-preempt` enable.
//! `net_device-none`, `net_device-virtio` (crate `net-virtio` and the glue in `virtio.rs`).
//! `block_device-none`, `block_device-virtio` (crate `blk-virtio`, the glue in `block.rs`),
//! `block_device-blkfront` (crate `blkfront` on `xen_host.rs`, the same glue), `block_device-auto`
//! (both, chosen at boot: the universal image).
//! `filesystem-none`, `filesystem-sdfs` (crate `sdfs` through crate `vfs`, the glue in `fs.rs`).
//! `xen_guest_pvh` (not a slot value) makes `platform-xen` a Xen PVH guest (`platform-xen/pvh`).
#![no_std]

#[cfg(any(feature = "threads", feature = "net", feature = "block"))]
extern crate alloc;

mod kernel_heap;
/// The image's `memcpy` (faster than compiler_builtins' under QEMU's TCG).
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod mem;
mod select;

#[allow(missing_docs, dead_code)]
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

/// The disk (any disk driver): the one found at boot, its interrupt, and the `BlockIo` handle
/// the facade's `stardust::block` gives apps.
#[cfg(all(target_os = "none", feature = "block"))]
pub mod block;

/// Profile settings that apps read (`stardust::settings`).
pub mod settings {
    /// The key-value server's most keys (profile setting `kv_max_keys`).
    pub const KV_MAX_KEYS: usize = crate::config::KV_MAX_KEYS;
    /// The key-value server's largest request in bytes (profile setting `kv_max_frame`).
    pub const KV_MAX_FRAME: usize = crate::config::KV_MAX_FRAME;
}

#[cfg(target_os = "none")]
mod boot;
/// DMA memory for device drivers: page-aligned, zeroed, physically contiguous.
#[cfg(target_os = "none")]
pub mod dma;
/// The filesystem (`filesystem` other than `none`): mounted on the disk at boot, behind one
/// lock; what the facade's `stardust::fs` calls.
#[cfg(all(target_os = "none", feature = "fs"))]
pub mod fs;
#[cfg(target_os = "none")]
mod guard;
/// The network (any NIC driver): crate `net` on this kernel's NIC, interrupt and scheduler;
/// the sockets the facade's `stardust::net` gives apps.
#[cfg(all(target_os = "none", feature = "net"))]
pub mod net;
/// The CPUs after the boot CPU: their stacks, and what they run.
#[cfg(target_os = "none")]
pub mod smp;
/// Blocking synchronization for threads (`scheduler = "coop" | "preempt"`).
#[cfg(all(target_os = "none", feature = "threads"))]
pub mod sync;
/// The thread runtime (`scheduler = "coop" | "preempt"`): crate `sched-threads` on this kernel.
#[cfg(all(target_os = "none", feature = "threads"))]
pub mod threads;
/// The virtio glue and the NIC probe (`net_device = "virtio"`, `block_device = "virtio"`).
#[cfg(all(target_os = "none", feature = "virtio"))]
pub mod virtio;
/// The block-device interface (`BlockIo`, `Info`, `Error`, `Stats`), for apps through the
/// facade.
#[cfg(feature = "block")]
pub use blockdev;
/// The filesystem interface (`FileSystem`, `Error`, `Stat`, `DirEntry`), for apps through the
/// facade.
#[cfg(feature = "fs")]
pub use vfs;
/// Xen event channels of the guest's own (split drivers, probes); they fail off Xen.
#[cfg(target_os = "none")]
pub mod xen_events;
/// The Xen split drivers' platform on this kernel, and the probes of the guest's Xen devices.
#[cfg(all(target_os = "none", feature = "xen-frontends"))]
pub mod xen_host;
/// The async executor's crate: futures, timers and async synchronization.
#[cfg(feature = "scheduler-async")]
pub use sched_async;
/// The async executor (`scheduler = "async"`), the one instance apps' tasks run on.
#[cfg(feature = "scheduler-async")]
pub use select::EXECUTOR;
/// The NIC driver's type (`net_device = "virtio"` or `"netfront"`).
#[cfg(all(target_os = "none", feature = "net"))]
pub use select::SelectedNetDevice;
/// The platform type (for generic parameters such as the executor's).
pub use select::SelectedPlatform;

/// The Xen platform's services (XenStore, PV clock, sleeping) for apps built for Xen.
#[cfg(feature = "platform-xen")]
pub use platform_xen as xen;

#[cfg(target_os = "none")]
pub use boot::{
    args, current_cpu, cycles, cycles_per_second, exit, frames, guard_page, heap_stats,
    irq_register, irq_unmask, now_ns, print, sleep_until_ns, unguard_page, wall_clock_ns,
};
/// Interrupt lines, CPUs and handlers (`platform::irq`).
pub use platform::irq;
