//! The PV memory model: pseudo-physical frames (pfn) backed by machine frames (mfn), page
//! tables that only Xen writes (`mmu_update`), and the boot information derived from
//! `start_info`.
//!
//! Virtual = pseudo-physical (`VIRT_BASE` 0). Xen maps the image and the bootstrap structures
//! (p2m list, start_info, XenStore and console rings, page tables, stack) plus at least 512 KiB
//! after them; [`map_memory`] maps every other free frame, makes the image W^X and unmaps page 0
//! and the stack guard page.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use platform::{
    BootInfo, Cmdline, FreeMemory, MemoryKind, MemoryMap, MemoryRegion, Module, PAGE_SIZE,
    PhysAddr, Range,
};

use arch_x86_64::paging::pte::{
    ACCESSED, ADDR_MASK as ADDRESS, DIRTY, NO_EXECUTE, PRESENT, USER, WRITABLE,
};
/// Entry bits of a shared page mapped for data: read-write, no-execute.
pub(crate) const RW_DATA: u64 = PRESENT | WRITABLE | ACCESSED | DIRTY | NO_EXECUTE;
/// Flags of a page-table entry that points at a lower table.
const TABLE: u64 = PRESENT | WRITABLE | USER | ACCESSED;

/// The virtual address of `start_info`, stored by the entry code (`entry.rs`) before anything
/// else runs (the console needs it before the kernel has parsed anything). Read only through
/// [`start_info`] and [`stored_start_info`].
pub(crate) static START_INFO: AtomicU64 = AtomicU64::new(0);

/// The start_info Xen handed over, once the entry code stored it (`None` before).
pub(crate) fn stored_start_info() -> Option<&'static xen_sys::start_info> {
    let si = START_INFO.load(Ordering::Relaxed);
    // SAFETY: a non-zero value is the start_info address Xen passed in %rsi, stored by the
    // entry code; the page stays mapped (it is a reserved bootstrap page) and is never written.
    (si != 0).then(|| unsafe { &*(si as *const xen_sys::start_info) })
}

/// The start_info Xen handed over.
pub(crate) fn start_info() -> &'static xen_sys::start_info {
    let si = START_INFO.load(Ordering::Relaxed);
    // SAFETY: the entry code stored the start_info address Xen passed in %rsi before anything
    // else ran; the page stays mapped (it is a reserved bootstrap page) and is never written.
    unsafe { &*(si as *const xen_sys::start_info) }
}

/// The pseudo-physical frame of a machine frame, from Xen's read-only M2P table.
pub fn pfn_of_mfn(mfn: u64) -> u64 {
    // SAFETY: every x86_64 PV guest sees the machine-to-physical table mapped read-only at
    // MACH2PHYS_VIRT_START, one u64 per machine frame; `mfn` is a frame of this domain.
    unsafe { ((xen_sys::MACH2PHYS_VIRT_START as *const u64).add(mfn as usize)).read_volatile() }
}

/// The machine frame behind a pseudo-physical frame, from the p2m list.
pub fn mfn_of_pfn(pfn: u64) -> u64 {
    let si = start_info();
    assert!(pfn < si.nr_pages, "pfn {pfn:#x} beyond the domain's memory");
    // SAFETY: `mfn_list` is the p2m array of `nr_pages` entries, a bootstrap structure kept
    // reserved and mapped; the index is in range (checked above).
    unsafe { (si.mfn_list as *const u64).add(pfn as usize).read() }
}

/// Why the boot information is unusable.
#[derive(Debug)]
pub enum BootError {
    /// `start_info` does not start with the x86_64 PV magic.
    BadMagic,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::BadMagic => write!(f, "start_info has no \"xen-3.0-x86_64\" magic"),
        }
    }
}

/// The end of the bootstrap structures: the page tables, then the bootstrap stack.
fn bootstrap_end(si: &xen_sys::start_info) -> u64 {
    // One bootstrap stack page follows the tables; keep a few in case a builder gives more.
    // Saturating: garbage from the domain builder never wraps to a small address.
    si.pt_base
        .saturating_add(si.nr_pt_frames.saturating_mul(PAGE_SIZE))
        .saturating_add(4 * PAGE_SIZE)
}

/// Copies the boot information out of `start_info` (at virtual address `raw`).
pub fn boot_info(raw: u64) -> Result<BootInfo, BootError> {
    START_INFO.store(raw, Ordering::Relaxed);
    let si = start_info();
    let magic: [u8; 32] = si.magic.map(|c| c as u8);
    if !magic.starts_with(b"xen-3.0-x86_64") {
        return Err(BootError::BadMagic);
    }
    let image = arch_x86_64::image_layout();
    let ram_end = si.nr_pages.saturating_mul(PAGE_SIZE);
    let reserved = Range::new(image.start, bootstrap_end(si).min(ram_end));
    let mut memory = MemoryMap::new();
    // Three regions cannot overflow a 64-entry map.
    let _ = memory.push(MemoryRegion::new(
        PhysAddr(0),
        reserved.start,
        MemoryKind::Ram,
    ));
    let _ = memory.push(MemoryRegion::new(
        PhysAddr(reserved.start),
        reserved.len(),
        MemoryKind::Reserved,
    ));
    let _ = memory.push(MemoryRegion::new(
        PhysAddr(reserved.end),
        ram_end - reserved.end,
        MemoryKind::Ram,
    ));

    let cmd: [u8; 1024] = si.cmd_line.map(|c| c as u8);
    let len = cmd.iter().position(|&b| b == 0).unwrap_or(cmd.len());
    let mut info = BootInfo {
        memory,
        cmdline: Cmdline::from_bytes(&cmd[..len]),
        boot_structures: Range::new(raw, raw.saturating_add(PAGE_SIZE)),
        ..BootInfo::default()
    };
    if si.mod_start != 0 && si.mod_len != 0 {
        // Without SIF_MOD_START_PFN, mod_start is the module's virtual (= pseudo-physical)
        // address; it lies inside the reserved bootstrap region.
        let start = if si.flags & xen_sys::SIF_MOD_START_PFN != 0 {
            si.mod_start << 12
        } else {
            si.mod_start
        };
        info.modules[0] = Module {
            start: PhysAddr(start),
            size: si.mod_len,
        };
        info.module_count = 1;
    }
    Ok(info)
}

/// Why the kernel's mappings could not be built.
#[derive(Debug)]
pub enum MapError {
    /// Xen refused a page-table update.
    Refused {
        /// The virtual address being mapped.
        va: u64,
        /// Xen's error code.
        code: i64,
    },
    /// No free frame inside the mapped memory was left for a page table.
    NoTableFrame,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Refused { va, code } => {
                write!(
                    f,
                    "Xen refused a page-table update for {va:#x} (error {code})"
                )
            }
            MapError::NoTableFrame => write!(f, "no mapped free frame left for a page table"),
        }
    }
}

/// A table's entries, through its (read-only) pseudo-physical mapping.
fn table(mfn: u64) -> &'static [u64; 512] {
    // SAFETY: page-table frames of this domain are mapped read-only at their pseudo-physical
    // address (the bootstrap tables by Xen, new ones by `new_table`); entries are only read.
    unsafe { &*((pfn_of_mfn(mfn) << 12) as *const [u64; 512]) }
}

/// The machine address of the kernel's L4 table (a vCPU's CR3: `xen_pfn_to_cr3` of its
/// frame).
pub fn page_table_base() -> u64 {
    root()
}

/// Machine address of the L4 table.
fn root() -> u64 {
    mfn_of_pfn(start_info().pt_base >> 12) << 12
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 511) as usize
}

/// The machine address of the L1 entry for `va`, if the tables down to L1 exist.
fn l1_entry(va: u64) -> Option<u64> {
    let mut table_ma = root();
    for level in [4, 3, 2] {
        let entry = table(table_ma >> 12)[index(va, level)];
        if entry & PRESENT == 0 {
            return None;
        }
        table_ma = entry & ADDRESS;
    }
    Some(table_ma + index(va, 1) as u64 * 8)
}

/// Whether `va` is mapped.
fn is_mapped(va: u64) -> bool {
    l1_entry(va).is_some_and(|ma| table(ma >> 12)[((ma & 0xfff) / 8) as usize] & PRESENT != 0)
}

fn update(requests: &[xen_sys::mmu_update], va: u64) -> Result<(), MapError> {
    // SAFETY: callers build requests that map free RAM or tighten the image's permissions;
    // everything the kernel uses stays mapped.
    let code = unsafe { crate::hypercall::mmu_update(requests) };
    if code != 0 {
        return Err(MapError::Refused { va, code });
    }
    Ok(())
}

/// Takes a free frame (mapped, from the lowest free memory), zeroes it, maps it read-only and
/// hooks it into `parent_entry_ma`. Returns its machine address.
fn new_table(free: &mut FreeMemory, parent_entry_ma: u64) -> Result<u64, MapError> {
    let frame = free.alloc_frames(1).map_err(|_| MapError::NoTableFrame)?.0;
    if !is_mapped(frame) {
        return Err(MapError::NoTableFrame);
    }
    let table = frame as *mut u64;
    for i in 0..512 {
        // SAFETY: the frame is free RAM FreeMemory gave to us alone, mapped read-write (checked).
        unsafe { table.add(i).write_volatile(0) };
    }
    let mfn = mfn_of_pfn(frame >> 12);
    // Xen accepts a frame as a page table only if no writable mapping of it exists.
    // SAFETY: the frame is ours and unused; it stays mapped, read-only.
    let code = unsafe {
        crate::hypercall::update_va_mapping(
            frame,
            mfn << 12 | PRESENT | ACCESSED | NO_EXECUTE,
            xen_sys::UVMF_INVLPG,
        )
    };
    if code != 0 {
        return Err(MapError::Refused { va: frame, code });
    }
    update(
        &[xen_sys::mmu_update {
            ptr: parent_entry_ma | u64::from(xen_sys::MMU_NORMAL_PT_UPDATE),
            val: mfn << 12 | TABLE,
        }],
        frame,
    )?;
    Ok(mfn << 12)
}

/// The machine address of the L1 table covering `va`, creating missing tables.
fn l1_table(free: &mut FreeMemory, va: u64) -> Result<u64, MapError> {
    let mut table_ma = root();
    for level in [4, 3, 2] {
        let slot = index(va, level);
        let entry = table(table_ma >> 12)[slot];
        table_ma = if entry & PRESENT != 0 {
            entry & ADDRESS
        } else {
            new_table(free, table_ma + slot as u64 * 8)?
        };
    }
    Ok(table_ma)
}

/// Page-table updates per `mmu_update` hypercall (small: the boot stack may be 16 KiB).
const BATCH: usize = 64;

/// Page-table entry updates, sent to Xen `BATCH` at a time.
struct Batch {
    requests: [xen_sys::mmu_update; BATCH],
    len: usize,
    /// The virtual address of the last update (for error reports).
    va: u64,
}

impl Batch {
    fn new() -> Self {
        Batch {
            requests: [xen_sys::mmu_update { ptr: 0, val: 0 }; BATCH],
            len: 0,
            va: 0,
        }
    }

    /// Queues: the entry at machine address `entry_ma` becomes `val` (for the page at `va`).
    fn push(&mut self, entry_ma: u64, val: u64, va: u64) -> Result<(), MapError> {
        if self.len == BATCH {
            self.flush()?;
        }
        self.requests[self.len] = xen_sys::mmu_update {
            ptr: entry_ma | u64::from(xen_sys::MMU_NORMAL_PT_UPDATE),
            val,
        };
        self.len += 1;
        self.va = va;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MapError> {
        let n = core::mem::take(&mut self.len);
        update(&self.requests[..n], self.va)
    }
}

/// Maps every free frame at its pseudo-physical address (read-write, no execute), makes the
/// image W^X, and unmaps page 0 and the boot stack's guard page. Returns the bytes of new
/// page tables.
pub fn map_memory(free: &mut FreeMemory) -> Result<u64, MapError> {
    let before = free.total();
    let mut ranges = [Range::default(); platform::MEMORY_MAP_MAX];
    let count = free.ranges().len();
    ranges[..count].copy_from_slice(free.ranges());
    for range in &ranges[..count] {
        let mut va = range.start;
        while va < range.end {
            let chunk_end = ((va | 0x1f_ffff) + 1).min(range.end);
            let l1 = l1_table(free, va)?;
            let entries = table(l1 >> 12);
            let mut batch = Batch::new();
            while va < chunk_end {
                let slot = index(va, 1);
                if entries[slot] & PRESENT == 0 {
                    let val = mfn_of_pfn(va >> 12) << 12
                        | PRESENT
                        | WRITABLE
                        | ACCESSED
                        | DIRTY
                        | NO_EXECUTE;
                    batch.push(l1 + slot as u64 * 8, val, va)?;
                }
                va += PAGE_SIZE;
            }
            batch.flush()?;
        }
    }
    protect_image()?;
    Ok(before - free.total())
}

unsafe extern "C" {
    static hypercall_page: u8;
    static xen_remapped_start: u8;
    static xen_remapped_end: u8;
}

/// Text read-execute, rodata read-only, data read-write no-execute (the hypercall page, in
/// .bss, read-execute), the stack guard page and page 0 unmapped.
fn protect_image() -> Result<(), MapError> {
    let image = arch_x86_64::image_layout();
    let hypercall = (&raw const hypercall_page) as u64;
    let remapped = (&raw const xen_remapped_start) as u64..(&raw const xen_remapped_end) as u64;
    let mut batch = Batch::new();
    let mut va = image.start;
    while va < image.end {
        if remapped.contains(&va) {
            // Remapped onto Xen's frames (shared info, grant table): read-write, no-execute.
            va += PAGE_SIZE;
            continue;
        }
        let flags = if va < image.text_end || va == hypercall {
            PRESENT | ACCESSED
        } else if va < image.rodata_end {
            PRESENT | ACCESSED | NO_EXECUTE
        } else if (image.stack_guard..image.stack_bottom).contains(&va) {
            0
        } else {
            PRESENT | WRITABLE | ACCESSED | DIRTY | NO_EXECUTE
        };
        let Some(entry) = l1_entry(va) else {
            return Err(MapError::Refused { va, code: 0 });
        };
        let val = if flags == 0 {
            0
        } else {
            mfn_of_pfn(va >> 12) << 12 | flags
        };
        batch.push(entry, val, va)?;
        va += PAGE_SIZE;
    }
    batch.flush()?;
    // Page 0: a null pointer must fault.
    // SAFETY: nothing lives at virtual page 0.
    unsafe { crate::hypercall::update_va_mapping(0, 0, xen_sys::UVMF_INVLPG) };
    let flush = xen_sys::mmuext_op {
        cmd: xen_sys::MMUEXT_TLB_FLUSH_LOCAL,
        arg1: xen_sys::mmuext_op__bindgen_ty_1 { mfn: 0 },
        arg2: xen_sys::mmuext_op__bindgen_ty_2 { nr_ents: 0 },
    };
    // SAFETY: the new permissions only remove rights the kernel does not use; the TLB is
    // flushed so they take effect. `flush` lives for the call.
    unsafe {
        crate::hypercall::hypercall4(
            xen_sys::__HYPERVISOR_mmuext_op,
            (&raw const flush) as u64,
            1,
            0,
            u64::from(xen_sys::DOMID_SELF),
        )
    };
    Ok(())
}

/// Unmaps the page at `va` (a guard page): `update_va_mapping` to an empty entry, with its TLB
/// entry flushed on every vCPU of the domain (`UVMF_INVLPG | UVMF_ALL`). RAM is mapped with
/// 4 KiB pages ([`map_memory`]), so there is nothing to split. Returns whether Xen did it.
///
/// The shoot-down is Xen's: a PV guest's page tables change only by hypercall, and with
/// `UVMF_ALL` Xen invalidates the page on every vCPU of the domain (the pCPUs it ran on,
/// by Xen's own IPIs) before it returns, so no vCPU can still reach the page through a stale
/// translation when the caller goes on. That is what `MMUEXT_INVLPG_ALL` would do as a second
/// hypercall, and what an IPI to each vCPU would do with a round trip through the guest, which
/// a descheduled vCPU would delay.
///
/// # Safety
/// `va` is page-aligned RAM mapped by [`map_memory`], owned by the caller, unused until
/// [`remap_page`].
pub unsafe fn unmap_page(va: u64) -> bool {
    let flags = xen_sys::UVMF_INVLPG | xen_sys::UVMF_ALL;
    // SAFETY: forwarded to the caller: nothing uses the page while it is unmapped.
    unsafe { crate::hypercall::update_va_mapping(va, 0, flags) == 0 }
}

/// Maps a page [`unmap_page`] unmapped again, as [`map_memory`] maps RAM (its machine frame
/// from the p2m, read-write, no-execute).
///
/// # Safety
/// `va` was unmapped by [`unmap_page`] and not remapped since.
pub unsafe fn remap_page(va: u64) {
    let val = mfn_of_pfn(va >> 12) << 12 | PRESENT | WRITABLE | ACCESSED | DIRTY | NO_EXECUTE;
    // SAFETY: the page is the caller's RAM, mapped back onto its own frame.
    let rc = unsafe { crate::hypercall::update_va_mapping(va, val, xen_sys::UVMF_INVLPG) };
    if rc != 0 {
        log::warn!("remapping {va:#x} failed ({rc})");
    }
}
