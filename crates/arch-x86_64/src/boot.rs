//! The PVH entry point and the linker-script symbols of the image layout.

use crate::paging::ImageLayout as Layout;
use core::sync::atomic::{AtomicU64, Ordering};

/// TSC value read by the very first instructions of the entry code (`pvh_start32`, or a
/// platform's own entry, which stores it here too).
pub static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);

/// The TSC at the first instruction of the image.
pub fn entry_tsc() -> u64 {
    ENTRY_TSC.load(Ordering::Relaxed)
}

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __stack_guard: u8;
    static __stack_bottom: u8;
    static __image_end: u8;
}

/// Where the linker put the parts of the image.
pub fn image_layout() -> Layout {
    // Only the addresses of these linker symbols are taken; nothing is read through them.
    Layout {
        start: (&raw const __image_start) as u64,
        text_end: (&raw const __text_end) as u64,
        rodata_end: (&raw const __rodata_end) as u64,
        stack_guard: (&raw const __stack_guard) as u64,
        stack_bottom: (&raw const __stack_bottom) as u64,
        end: (&raw const __image_end) as u64,
    }
}

// The Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18) makes this a PVH kernel for both Xen and
// QEMU `-kernel`. The entry runs in 32-bit protected mode, paging off, with %ebx = physical
// address of `hvm_start_info`. GDT and IDT are undefined there (Xen's CS selector is 0), so the
// first thing after the timestamp is our own GDT.
//
// Only with the `pvh-entry` feature: a Xen PV image has its own entry and must not carry this note.
#[cfg(feature = "pvh-entry")]
core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32

    /* Placed on a page boundary by the linker script (section .boot_tables). */
    .section .boot_tables, "aw", @nobits
    .global boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4096

    /* 0x08: 64-bit code, 0x10: flat data, 0x18: the boot CPU's TSS (16 bytes, written by
       cpu::init_cpu; other CPUs get a GDT of their own in their per-CPU block). */
    .section .data.gdt, "aw", @progbits
    .p2align 4
    .global stardust_gdt
stardust_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0
    .quad 0
stardust_gdt_end:
    .p2align 3
    .word 0, 0, 0
stardust_gdt_ptr:
    .word stardust_gdt_end - stardust_gdt - 1
    .quad stardust_gdt

    .section .text.boot, "ax", @progbits
    .code32
    .global pvh_start32
    .global stardust_entry
    .set stardust_entry, pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %edi
    rdtsc
    mov %eax, ({tsc})
    mov %edx, ({tsc} + 4)
    lgdt stardust_gdt_ptr
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss

    /* Identity map of the first GiB with 2 MiB pages: enough for the image, the start info
       and the frames of the final page tables, which the kernel builds right after. */
    mov $boot_pdpt + 3, %eax
    mov %eax, boot_pml4
    mov $boot_pd + 3, %eax
    mov %eax, boot_pdpt
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, boot_pd(,%ecx,8)
    movl $0, boot_pd + 4(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jb 1b

    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx       /* EFER */
    rdmsr
    or $0x900, %eax             /* LME | NXE */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0
    ljmp $0x08, $2f

    .code64
2:  mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $__stack_top, %rsp
    mov %edi, %edi
    xor %ebp, %ebp
    call __stardust_start
    ud2
"#,
    tsc = sym ENTRY_TSC,
    options(att_syntax)
);

/// Physical memory as the boot page tables map it: identity, the first GiB. Used to read the
/// start info before the kernel's own page tables exist.
#[derive(Debug)]
pub struct BootMemory;

const BOOT_MAPPED: u64 = 1 << 30;

impl BootMemory {
    /// Whether `[paddr, paddr + len)` is inside the boot identity map (and not address 0).
    fn check(&self, paddr: u64, len: usize) -> Result<(), platform::Unreadable> {
        match paddr.checked_add(len as u64) {
            Some(end) if paddr != 0 && end <= BOOT_MAPPED => Ok(()),
            _ => Err(platform::Unreadable(paddr)),
        }
    }
}

impl platform::PhysRead for BootMemory {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), platform::Unreadable> {
        self.check(paddr, buf.len())?;
        // SAFETY: [paddr, paddr + len) lies in the first GiB, which the boot page tables
        // identity-map; it is plain RAM or firmware tables, read once, not aliased mutably.
        unsafe { core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn read_u32(&self, paddr: u64) -> Result<u32, platform::Unreadable> {
        self.check(paddr, 4)?;
        // SAFETY: checked above: inside the boot identity map; an unaligned plain load.
        Ok(unsafe { (paddr as *const u32).read_unaligned() })
    }

    fn read_u64(&self, paddr: u64) -> Result<u64, platform::Unreadable> {
        self.check(paddr, 8)?;
        // SAFETY: checked above: inside the boot identity map; an unaligned plain load.
        Ok(unsafe { (paddr as *const u64).read_unaligned() })
    }
}

/// Page-table frames taken from free memory, reached through the boot identity map.
struct BootFrames<'a>(&'a mut platform::FreeMemory);

impl crate::paging::TableMemory for BootFrames<'_> {
    fn alloc_table(&mut self) -> Result<u64, crate::paging::PagingError> {
        let frame = self
            .0
            .alloc_frames(1)
            .map_err(|_| crate::paging::PagingError::OutOfTables)?
            .0;
        if frame + platform::PAGE_SIZE > BOOT_MAPPED {
            return Err(crate::paging::PagingError::OutOfTables);
        }
        // SAFETY: the frame is free RAM that FreeMemory gave to us alone, inside the boot
        // identity map.
        unsafe { zero_table(frame) };
        Ok(frame)
    }

    fn table(&mut self, phys: u64) -> &mut crate::paging::Table {
        // SAFETY: `phys` came from `alloc_table` (contract of TableMemory): a 4 KiB-aligned frame
        // owned by this builder and identity-mapped, so it is a valid, exclusive table.
        unsafe { &mut *(phys as *mut crate::paging::Table) }
    }
}

/// Zeroes the 4 KiB frame at `frame` (an empty page table) with volatile word stores, not
/// `write_bytes`: that becomes `rep stos`, which costs ~100 ns a word under TCG.
///
/// # Safety
/// `frame` is a page-aligned, identity-mapped, writable frame the caller owns.
unsafe fn zero_table(frame: u64) {
    let table = frame as *mut u64;
    for i in 0..512 {
        // SAFETY: inside the frame the caller owns (512 words of 8 bytes).
        unsafe { table.add(i).write_volatile(0) };
    }
}

/// Builds the kernel's W^X page tables (see [`crate::paging::map_kernel`]) from frames of
/// `free`, maps `devices` uncached, and switches to them. Returns the bytes used by the tables.
pub fn install_page_tables(
    free: &mut platform::FreeMemory,
    map: &platform::MemoryMap,
    devices: &[platform::Range],
) -> Result<u64, crate::paging::PagingError> {
    let before = free.total();
    let mut mapper = crate::paging::Mapper::new(BootFrames(free))?;
    crate::paging::map_kernel(&mut mapper, &image_layout(), map)?;
    crate::paging::map_devices(&mut mapper, devices)?;
    let root = mapper.root();
    // SAFETY: the new tables identity-map the whole image (code RX, data and stack RW), all RAM
    // and the tables themselves (they are in RAM), so execution continues unchanged; the frames
    // were taken out of `free` and are never handed out again.
    unsafe { crate::cpu::load_page_table(root) };
    Ok(before - free.total())
}

/// The live page tables (from CR3), identity-mapped; new tables from a caller's frames.
struct LiveTables<'a>(&'a mut dyn FnMut() -> Option<u64>);

impl crate::paging::TableMemory for LiveTables<'_> {
    fn alloc_table(&mut self) -> Result<u64, crate::paging::PagingError> {
        let frame = (self.0)().ok_or(crate::paging::PagingError::OutOfTables)?;
        if !frame.is_multiple_of(platform::PAGE_SIZE) {
            return Err(crate::paging::PagingError::Misaligned(frame));
        }
        // SAFETY: the frame is RAM the caller gave us for a table (contract of `unmap_page`),
        // identity-mapped read-write.
        unsafe { zero_table(frame) };
        Ok(frame)
    }

    fn table(&mut self, phys: u64) -> &mut crate::paging::Table {
        // SAFETY: `phys` is a page table of the live tree (read from CR3 or a present entry) or
        // a frame from `alloc_table`; all are RAM that the kernel's tables identity-map
        // read-write, and only this CPU, with interrupts masked, changes them.
        unsafe { &mut *(phys as *mut crate::paging::Table) }
    }
}

/// Makes the 4 KiB page at `page` of the live page tables not present, splitting a 2 MiB page
/// with a table frame from `new_table` where needed, and flushes it from the TLB. Returns
/// whether it is now unmapped (false: it was not mapped, or no frame for the split).
///
/// The tables change with interrupts masked (a thread switch cannot interleave two changes),
/// but `new_table` is called with them as they were (it may take a lock that a preempted
/// thread holds). Should another thread split the same 2 MiB page in between, the frame taken
/// for it is left unused (4 KiB lost, never reused).
///
/// # Safety
/// The live tables are the kernel's identity-mapped ones ([`install_page_tables`]); nothing
/// uses `page` until [`remap_page`]; frames from `new_table` are page-aligned RAM that the
/// tables keep forever.
pub unsafe fn unmap_page(page: u64, new_table: &mut dyn FnMut() -> Option<u64>) -> bool {
    let mut spare: Option<u64> = None;
    loop {
        let enabled = crate::cpu::interrupts_disable();
        let have_spare = spare.is_some();
        let mut take = || spare.take();
        let mut mapper =
            crate::paging::Mapper::with_root(crate::cpu::page_table_root(), LiveTables(&mut take));
        let large = mapper
            .translate(page)
            .is_some_and(|t| t.page_size > platform::PAGE_SIZE);
        let done = if large && !have_spare {
            None
        } else {
            let done = mapper.unmap_page(page);
            crate::cpu::flush_page(page);
            Some(done)
        };
        if enabled {
            crate::cpu::interrupts_enable();
        }
        match done {
            Some(done) => {
                return matches!(
                    done,
                    Ok(crate::paging::Unmapped::Unmapped | crate::paging::Unmapped::Split)
                );
            }
            // A split needs a frame: take it with interrupts as they were, then retry.
            None => match new_table() {
                Some(frame) => spare = Some(frame),
                None => return false,
            },
        }
    }
}

/// Maps a page [`unmap_page`] unmapped read-write (no execute) again.
///
/// # Safety
/// `page` was unmapped by [`unmap_page`] and not remapped since.
pub unsafe fn remap_page(page: u64) {
    let enabled = crate::cpu::interrupts_disable();
    let mut no_tables = || None;
    let root = crate::cpu::page_table_root();
    let mut mapper = crate::paging::Mapper::with_root(root, LiveTables(&mut no_tables));
    // Cannot fail: the page table that held the page exists (no new table needed).
    let _ = mapper.remap_page(page, page, crate::paging::Access::ReadWrite);
    crate::cpu::flush_page(page);
    if enabled {
        crate::cpu::interrupts_enable();
    }
}

/// Maps the 4 KiB page `page` of the live tables read-execute instead of its current access:
/// a page of the image's data that the hypervisor fills with code (Xen PVH's hypercall page).
/// Returns false when the page is not mapped with a 4 KiB entry (nothing changed then).
///
/// # Safety
/// The live tables are the kernel's identity-mapped ones ([`install_page_tables`]), and
/// nothing writes `page` through this mapping any more (it becomes read-only).
pub unsafe fn map_page_executable(page: u64) -> bool {
    let enabled = crate::cpu::interrupts_disable();
    let mut no_tables = || None;
    let root = crate::cpu::page_table_root();
    let mut mapper = crate::paging::Mapper::with_root(root, LiveTables(&mut no_tables));
    let small = mapper
        .translate(page)
        .is_some_and(|t| t.page_size == platform::PAGE_SIZE);
    let done = small
        && matches!(
            mapper.unmap_page(page),
            Ok(crate::paging::Unmapped::Unmapped)
        )
        && mapper
            .remap_page(page, page, crate::paging::Access::ReadExecute)
            .is_ok();
    crate::cpu::flush_page(page);
    if enabled {
        crate::cpu::interrupts_enable();
    }
    done
}
