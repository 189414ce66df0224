//! Grant tables: the table frames (PV: from `GNTTABOP_setup_table`, mapped over pages of the
//! image; PVH: placed at those pages' frames by `XENMEM_add_to_physmap`), and the bookkeeping of `xen_services::grant` (host-tested).
//!
//! Safety contract of a grant (see `xen_services::grant`): while a page is granted, the other
//! domain may read it (and write it, unless read-only) at any time; the page must stay
//! allocated and must not be reused until [`end_access`] succeeds. Ending access fails with
//! `InUse` while the other domain still maps the page.

use core::ptr::NonNull;
pub use xen_services::grant::{GrantError, GrantRef};
use xen_services::grant::{GrantTable, SharedEntries};
use xen_services::mem::raw::RawShared;

/// Grant table frames: 512 v1 entries each.
pub const FRAMES: usize = 4;
const ENTRIES: usize = FRAMES * 512;

type Table = GrantTable<SharedEntries<RawShared>, ENTRIES>;

static TABLE: spin::Mutex<Option<Table>> = spin::Mutex::new(None);

unsafe extern "C" {
    /// `FRAMES` page-aligned pages of the image (entry.rs, pvh.rs), remapped onto the table's
    /// frames.
    static xen_grant_frames: u8;
}

/// Why the grant table could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupError(pub i64);

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "grant table setup failed (Xen error {})", self.0)
    }
}

/// PV: the table's machine frames from `GNTTABOP_setup_table`, mapped over our pages.
#[cfg(not(feature = "pvh"))]
fn map_frames(base: u64) -> Result<(), SetupError> {
    let mut frames = [0u64; FRAMES];
    let mut op = xen_sys::gnttab_setup_table {
        dom: xen_sys::DOMID_SELF,
        nr_frames: FRAMES as u32,
        status: 0,
        frame_list: xen_sys::__guest_handle_xen_pfn_t {
            p: frames.as_mut_ptr(),
        },
    };
    // SAFETY: a live gnttab_setup_table whose frame list has room for FRAMES entries.
    let rc = unsafe {
        crate::hypercall::hypercall4(
            xen_sys::__HYPERVISOR_grant_table_op,
            u64::from(xen_sys::GNTTABOP_setup_table),
            (&raw mut op) as u64,
            1,
            0,
        )
    };
    if rc != 0 || op.status != 0 {
        return Err(SetupError(if rc != 0 { rc } else { i64::from(op.status) }));
    }
    for (i, mfn) in frames.iter().enumerate() {
        let va = base + i as u64 * 4096;
        // SAFETY: `va` is one of our reserved, page-aligned image pages (never used otherwise,
        // skipped by the W^X pass); it now maps the grant table frame Xen gave us, read-write,
        // no-execute.
        let rc = unsafe {
            crate::hypercall::update_va_mapping(
                va,
                mfn << 12 | crate::memory::RW_DATA,
                xen_sys::UVMF_INVLPG,
            )
        };
        if rc != 0 {
            return Err(SetupError(rc));
        }
    }
    Ok(())
}

/// PVH: Xen puts the table's frames at our pages' guest frames (`XENMEM_add_to_physmap`,
/// space `grant_table`; the table grows to the frames asked for).
#[cfg(feature = "pvh")]
fn map_frames(base: u64) -> Result<(), SetupError> {
    for i in 0..FRAMES {
        let mut xatp = xen_sys::xen_add_to_physmap {
            domid: xen_sys::DOMID_SELF,
            size: 0,
            space: xen_sys::XENMAPSPACE_grant_table,
            idx: i as u64,
            gpfn: (base >> 12) + i as u64,
        };
        // SAFETY: a live xen_add_to_physmap; the target frame is one of our reserved,
        // page-aligned image pages (identity-mapped), used for nothing else.
        let rc = unsafe {
            crate::hypercall::hypercall2(
                xen_sys::__HYPERVISOR_memory_op,
                u64::from(xen_sys::XENMEM_add_to_physmap),
                (&raw mut xatp) as u64,
            )
        };
        if rc != 0 {
            return Err(SetupError(rc));
        }
    }
    Ok(())
}

fn setup() -> Result<Table, SetupError> {
    let base = (&raw const xen_grant_frames) as u64;
    map_frames(base)?;
    // SAFETY: the FRAMES pages at `base` are mapped onto the grant table (above), shared only
    // with Xen, and accessed only through this one table.
    let mem = unsafe {
        RawShared::new(
            NonNull::new(base as *mut u8).expect("image address"),
            FRAMES * 4096,
        )
    };
    Ok(GrantTable::new(SharedEntries::new(mem)))
}

fn with<R>(f: impl FnOnce(&mut Table) -> R) -> Result<R, SetupError> {
    let mut table = TABLE.lock();
    if table.is_none() {
        fill(&mut table)?;
    }
    Ok(f(table.as_mut().expect("set up above")))
}

/// Sets the table up into `slot`. Never inlined: the table's bookkeeping is several KiB built on
/// the stack, which would otherwise be in the frame of every caller of a grant (and one such
/// frame under the network's init overflowed the universal image's boot stack).
#[cold]
#[inline(never)]
fn fill(slot: &mut Option<Table>) -> Result<(), SetupError> {
    *slot = Some(setup()?);
    Ok(())
}

/// The frame number another domain uses for the page at virtual address `va` (PV: its mfn).
#[cfg(not(feature = "pvh"))]
pub fn frame_of(va: u64) -> u64 {
    crate::memory::mfn_of_pfn(va >> 12)
}

/// The frame number another domain uses for the page at virtual address `va` (PVH: its guest
/// frame; the kernel's tables are an identity map).
#[cfg(feature = "pvh")]
pub fn frame_of(va: u64) -> u64 {
    va >> 12
}

/// Grants `domid` access to the page at `va` (read-only or read-write).
///
/// # Safety
/// The page must stay allocated, and must not be reused or freed, until [`end_access`] on the
/// returned reference succeeds: the other domain may access it at any time until then.
pub unsafe fn grant_access(domid: u16, va: u64, readonly: bool) -> Result<GrantRef, GrantError> {
    let frame = frame_of(va) as u32;
    with(|t| t.grant_access(domid, frame, readonly)).unwrap_or(Err(GrantError::Exhausted))
}

/// Ends a grant; `Err(InUse)` while the other domain still maps the page.
pub fn end_access(r: GrantRef) -> Result<(), GrantError> {
    with(|t| t.end_access(r)).unwrap_or(Err(GrantError::NotGranted(r)))
}

/// Sets up the table now (it is set up on first use otherwise).
pub fn init() -> Result<(), SetupError> {
    with(|_| ())
}

/// Copies `len` bytes at `offset` of the page granted by reference `r` (granted by this
/// domain) into the page at `dest_va`, through Xen (`GNTTABOP_copy`). Xen reads the grant
/// entry to check the access, so this proves a grant works end to end; returns Xen's status.
pub fn copy_from_grant(r: GrantRef, offset: u16, dest_va: u64, len: u16) -> i64 {
    let mut op = xen_sys::gnttab_copy {
        source: xen_sys::gnttab_copy_gnttab_copy_ptr {
            u: xen_sys::gnttab_copy_gnttab_copy_ptr__bindgen_ty_1 { ref_: r.0 },
            domid: xen_sys::DOMID_SELF,
            offset,
        },
        dest: xen_sys::gnttab_copy_gnttab_copy_ptr {
            u: xen_sys::gnttab_copy_gnttab_copy_ptr__bindgen_ty_1 {
                gmfn: frame_of(dest_va),
            },
            domid: xen_sys::DOMID_SELF,
            offset: (dest_va & 0xfff) as u16,
        },
        len,
        flags: xen_sys::GNTCOPY_SOURCE_GREF,
        status: 0,
    };
    // SAFETY: a live gnttab_copy; Xen writes only `len` bytes into our destination page.
    let rc = unsafe {
        crate::hypercall::hypercall4(
            xen_sys::__HYPERVISOR_grant_table_op,
            u64::from(xen_sys::GNTTABOP_copy),
            (&raw mut op) as u64,
            1,
            0,
        )
    };
    if rc != 0 { rc } else { i64::from(op.status) }
}
