//! Raw bindings to the Xen public interface for x86_64 guests, generated once from Xen 4.17's
//! public headers and committed.
//!
//! What is here: hypercall numbers (`__HYPERVISOR_*`), `start_info`, `shared_info`, `vcpu_info`,
//! `vcpu_time_info`, `mmu_update` / `mmuext_op`, `trap_info`, event channel operations
//! (`evtchn_*`, `EVTCHNOP_*`), grant table v1 (`grant_entry_v1`, `gnttab_*`, `GTF_*`,
//! `GNTTABOP_*`), XenStore wire types (`xsd_sockmsg`, `xsd_sockmsg_type_XS_*`,
//! `xenstore_domain_interface`), the console ring (`xencons_interface`), XenBus states
//! (`xenbus_state_XenbusState*`), `SCHEDOP_*` and `SHUTDOWN_*`, `VCPUOP_*`, HVM params and
//! `hvm_start_info` (PVH), `XENMEM_*`, `XENFEAT_*`, ELF note types.
//!
//! Names are the C names. Function-like C macros that bindgen cannot evaluate
//! (`DOMID_SELF = xen_mk_uint(0x7FF0)`, ...) are written by hand below. Everything is plain
//! data: no function, no `extern` block; the hypercall instructions belong to the platform crate.
//!
//! Regenerate with `cargo xtask gen-xen-sys` (needs Debian's `libxen-dev` headers and the
//! `bindgen` command; see `xtask/src/cmd/gen_xen_sys.rs`). `wrapper.h` lists the headers and the
//! allowlists live in that xtask module.
//!
//! # Cargo features
//!
//! None.
#![cfg_attr(not(test), no_std)]

// `clippy::undocumented_unsafe_blocks` is off for the generated code alone: its unsafe blocks
// (314) are all in bindgen's layout tests, compiled only by `cargo test` (checked below,
// `unsafe_only_in_bindgen_layout_tests`).
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_debug_implementations,
    unsafe_op_in_unsafe_fn,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]
mod bindings;

pub use bindings::*;

/// Refers to the calling domain (`DOMID_SELF`).
pub const DOMID_SELF: domid_t = 0x7ff0;
/// The I/O domain pseudo-id (`DOMID_IO`).
pub const DOMID_IO: domid_t = 0x7ff1;
/// The Xen pseudo-domain (`DOMID_XEN`).
pub const DOMID_XEN: domid_t = 0x7ff2;
/// The invalid domain id (`DOMID_INVALID`).
pub const DOMID_INVALID: domid_t = 0x7ff4;
/// The first id that is not a real domain (`DOMID_FIRST_RESERVED`).
pub const DOMID_FIRST_RESERVED: domid_t = 0x7ff0;

/// Bytes between two hypercall stubs in the hypercall page.
pub const HYPERCALL_STUB_SIZE: usize = 32;
/// Xen's page size on x86.
pub const PAGE_SIZE: usize = 4096;
/// The x86_64 PV guest's read-only machine-to-physical table (`RO_MPT_VIRT_START`,
/// `HYPERVISOR_VIRT_START` in `arch-x86/xen-x86_64.h`).
pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// `update_va_mapping` flags (`UVMF_*`, `xen.h`; `xen_mk_ulong` macros bindgen skips): no TLB
/// flush, flush the whole TLB, or invalidate just this page.
pub const UVMF_NONE: u64 = 0;
/// See [`UVMF_NONE`].
pub const UVMF_TLB_FLUSH: u64 = 1;
/// See [`UVMF_NONE`].
pub const UVMF_INVLPG: u64 = 2;
/// `update_va_mapping` flag (`UVMF_ALL`, `xen.h`): flush on every vCPU of the domain, not only
/// the calling one (`UVMF_LOCAL`, 0).
pub const UVMF_ALL: u64 = 1 << 2;
/// The flat 64-bit code selector of an x86_64 PV guest kernel (`FLAT_KERNEL_CS64`, which is
/// `FLAT_RING3_CS64`: the guest kernel runs in ring 3).
pub const FLAT_KERNEL_CS64: u16 = 0xe033;
/// The flat data/stack selector of an x86_64 PV guest kernel (`FLAT_KERNEL_SS64`).
pub const FLAT_KERNEL_SS64: u16 = 0xe02b;
/// `gnttab_copy` flags (`GNTCOPY_*`, `grant_table.h`; shift macros bindgen skips): the source
/// (or destination) is a grant reference rather than a frame.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// See [`GNTCOPY_SOURCE_GREF`].
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;
/// Magic of `hvm_start_info` (`XEN_HVM_START_MAGIC_VALUE`).
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// The XenStore error strings of `xs_wire.h`'s `xsd_errors[]` table, with their errno values
/// (Xen's `errno.h`), which bindgen does not emit (a static array with an initializer).
pub const XSD_ERRORS: &[(i32, &str)] = &[
    (22, "EINVAL"),
    (13, "EACCES"),
    (17, "EEXIST"),
    (21, "EISDIR"),
    (2, "ENOENT"),
    (12, "ENOMEM"),
    (28, "ENOSPC"),
    (5, "EIO"),
    (39, "ENOTEMPTY"),
    (38, "ENOSYS"),
    (30, "EROFS"),
    (16, "EBUSY"),
    (11, "EAGAIN"),
    (106, "EISCONN"),
    (7, "E2BIG"),
    (1, "EPERM"),
];

#[cfg(test)]
mod layout {
    //! Offsets that guest code relies on, checked against the ABI (beside bindgen's own layout
    //! tests, which check every generated struct).
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn start_info_pv() {
        assert_eq!(offset_of!(start_info, nr_pages), 32);
        assert_eq!(offset_of!(start_info, shared_info), 40);
        assert_eq!(offset_of!(start_info, store_mfn), 56);
        assert_eq!(offset_of!(start_info, store_evtchn), 64);
        // console.domU.mfn at 72, console.domU.evtchn at 80 (the lab's pvhello relies on them)
        assert_eq!(offset_of!(start_info, console), 72);
        assert_eq!(offset_of!(start_info, pt_base), 88);
        assert_eq!(offset_of!(start_info, mfn_list), 104);
        assert_eq!(offset_of!(start_info, cmd_line), 128);
        assert_eq!(
            size_of::<[core::ffi::c_char; 1024]>(),
            MAX_GUEST_CMDLINE as usize
        );
    }

    #[test]
    fn shared_info_and_vcpu_info() {
        assert_eq!(size_of::<vcpu_time_info>(), 32);
        assert_eq!(offset_of!(vcpu_time_info, version), 0);
        assert_eq!(offset_of!(vcpu_time_info, tsc_timestamp), 8);
        assert_eq!(offset_of!(vcpu_time_info, system_time), 16);
        assert_eq!(offset_of!(vcpu_time_info, tsc_to_system_mul), 24);
        assert_eq!(offset_of!(vcpu_time_info, tsc_shift), 28);
        assert_eq!(size_of::<vcpu_info>(), 64);
        assert_eq!(offset_of!(vcpu_info, evtchn_upcall_pending), 0);
        assert_eq!(offset_of!(vcpu_info, evtchn_upcall_mask), 1);
        assert_eq!(offset_of!(vcpu_info, evtchn_pending_sel), 8);
        assert_eq!(offset_of!(vcpu_info, time), 32);
        assert_eq!(XEN_LEGACY_MAX_VCPUS, 32);
        assert_eq!(offset_of!(shared_info, evtchn_pending), 64 * 32);
        assert_eq!(offset_of!(shared_info, evtchn_mask), 64 * 32 + 512);
        assert_eq!(offset_of!(shared_info, wc_version), 64 * 32 + 1024);
        assert!(size_of::<shared_info>() <= PAGE_SIZE);
    }

    #[test]
    fn rings() {
        assert_eq!(size_of::<xencons_interface>(), 3088);
        assert_eq!(offset_of!(xencons_interface, out), 1024);
        assert_eq!(offset_of!(xencons_interface, in_cons), 3072);
        assert_eq!(offset_of!(xencons_interface, out_cons), 3080);
        assert_eq!(offset_of!(xencons_interface, out_prod), 3084);
        assert_eq!(XENSTORE_RING_SIZE, 1024);
        assert_eq!(offset_of!(xenstore_domain_interface, rsp), 1024);
        assert_eq!(offset_of!(xenstore_domain_interface, req_cons), 2048);
        assert_eq!(offset_of!(xenstore_domain_interface, req_prod), 2052);
        assert_eq!(offset_of!(xenstore_domain_interface, rsp_cons), 2056);
        assert_eq!(offset_of!(xenstore_domain_interface, rsp_prod), 2060);
        assert_eq!(size_of::<xsd_sockmsg>(), 16);
        assert_eq!(XENSTORE_PAYLOAD_MAX, 4096);
    }

    #[test]
    fn grants_events_hvm() {
        assert_eq!(size_of::<grant_entry_v1>(), 8);
        assert_eq!(offset_of!(grant_entry_v1, flags), 0);
        assert_eq!(offset_of!(grant_entry_v1, domid), 2);
        assert_eq!(offset_of!(grant_entry_v1, frame), 4);
        assert_eq!(GTF_permit_access, 1);
        assert_eq!(GTF_readonly, 1 << 2);
        assert_eq!(size_of::<evtchn_send>(), 4);
        assert_eq!(size_of::<evtchn_alloc_unbound>(), 8);
        assert_eq!(size_of::<xen_hvm_param>(), 16);
        assert_eq!(offset_of!(xen_hvm_param, index), 4);
        assert_eq!(offset_of!(xen_hvm_param, value), 8);
        assert_eq!(offset_of!(hvm_start_info, cmdline_paddr), 24);
        assert_eq!(offset_of!(hvm_start_info, memmap_paddr), 40);
        assert_eq!(size_of::<hvm_memmap_table_entry>(), 24);
        assert_eq!(XEN_HVM_START_MAGIC_VALUE, HVM_START_MAGIC);
    }

    #[test]
    fn numbers() {
        assert_eq!(__HYPERVISOR_mmu_update, 1);
        assert_eq!(__HYPERVISOR_set_trap_table, 0);
        assert_eq!(__HYPERVISOR_console_io, 18);
        assert_eq!(__HYPERVISOR_grant_table_op, 20);
        assert_eq!(__HYPERVISOR_vcpu_op, 24);
        assert_eq!(__HYPERVISOR_mmuext_op, 26);
        assert_eq!(__HYPERVISOR_sched_op, 29);
        assert_eq!(__HYPERVISOR_event_channel_op, 32);
        assert_eq!(__HYPERVISOR_hvm_op, 34);
        assert_eq!(SCHEDOP_yield, 0);
        assert_eq!(SCHEDOP_block, 1);
        assert_eq!(SCHEDOP_shutdown, 2);
        assert_eq!(SHUTDOWN_poweroff, 0);
        assert_eq!(SHUTDOWN_crash, 3);
        assert_eq!(EVTCHNOP_send, 4);
        assert_eq!(EVTCHNOP_alloc_unbound, 6);
        assert_eq!(HVM_PARAM_STORE_PFN, 1);
        assert_eq!(HVM_PARAM_CONSOLE_PFN, 17);
        assert_eq!(HVM_PARAM_CONSOLE_EVTCHN, 18);
        assert_eq!(xsd_sockmsg_type_XS_READ, 2);
        assert_eq!(xsd_sockmsg_type_XS_WATCH_EVENT, 15);
        assert_eq!(xsd_sockmsg_type_XS_ERROR, 16);
        assert_eq!(xenbus_state_XenbusStateConnected, 4);
        assert_eq!(XEN_ELFNOTE_PHYS32_ENTRY, 18);
        assert_eq!(XSD_ERRORS.len(), 16);
    }

    /// What ARCHITECTURE.md says of the exception to the SAFETY-comment rule: every `unsafe`
    /// in the generated bindings lies in one of bindgen's `#[test]` layout functions.
    #[test]
    fn unsafe_only_in_bindgen_layout_tests() {
        let text = include_str!("bindings.rs");
        let (mut in_test, mut count) = (false, 0);
        for (n, line) in text.lines().enumerate() {
            let top_level = !line.starts_with([' ', '}']) && !line.is_empty();
            if top_level && !line.starts_with("//") {
                in_test =
                    line == "#[test]" || (in_test && line.starts_with("fn bindgen_test_layout_"));
            }
            if line.contains("unsafe") {
                assert!(
                    in_test,
                    "bindings.rs:{}: unsafe outside a layout test",
                    n + 1
                );
                count += 1;
            }
        }
        assert_eq!(
            count, 314,
            "update ARCHITECTURE.md and the comment in lib.rs"
        );
    }
}
