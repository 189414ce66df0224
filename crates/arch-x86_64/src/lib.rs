//! x86_64 support for Stardust: the PVH entry, start-info parsing, the switch to long mode,
//! GDT/TSS/IDT, fatal exception reports, W^X page tables and TSC timestamps.
//!
//! The boot path is: `pvh_start32` (32-bit, in [`boot`]) records the entry TSC, loads a GDT,
//! identity-maps the first GiB with 2 MiB pages, enters long mode on the boot stack and calls
//! `__stardust_start(start_info_paddr)`, which the kernel's composition root defines. The kernel
//! then uses this crate to parse the start info ([`start_info`]), install the CPU tables
//! ([`cpu::init`]) and build the final W^X page tables ([`paging`]).
//!
//! The pure parts (start-info parsing, the page-table builder and the kernel mapping plan) build
//! and run on the host under `cargo test`; everything that touches the CPU is compiled only for
//! the bare-metal target.
//!
//! # Cargo features
//! - `pvh-entry`: the PVH entry (`pvh_start32` with its `XEN_ELFNOTE_PHYS32_ENTRY` note and boot page
//!   tables). Platforms that boot through PVH enable it; a Xen PV image has its own entry.
#![cfg_attr(not(test), no_std)]

pub mod paging;
pub mod start_info;

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
pub mod context;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(all(target_os = "none", feature = "pvh-entry"))]
pub mod smp;
#[cfg(target_os = "none")]
pub mod tsc;

#[cfg(target_os = "none")]
pub use boot::{
    BootMemory, ENTRY_TSC, entry_tsc, image_layout, install_page_tables, map_page_executable,
    remap_page, unmap_page,
};
