//! `memcpy` for the image, in place of compiler_builtins' (whose `mem` routines are weak
//! symbols, so this one is linked instead). Theirs, on x86_64 without `ermsb` (the bare-metal
//! target has no SSE either), is `rep movsb` to align, `rep movsq`, `rep movsb`. Under QEMU's
//! TCG, where the benches and tests run, a string instruction repeats one element per turn of
//! a translated loop; 64 bytes per turn through four registers copy faster there: a guest loop
//! of copies (apps' `hello` turned into a bench, not kept), MB/s by the guest's clock, rep
//! movsq -> this: 64 KiB 4,994 -> 6,278, 1,460 B 4,577 -> 5,837, 1,446 B 4,488 -> 5,993, 54 B
//! 1,542 -> 1,598 (about 25% on segment-sized copies, which bulk TCP makes several of per
//! byte). Under KVM both run at the CPU's speed. The tail (under 64 bytes) is still
//! `rep movsq` and `rep movsb`. +64 bytes of image.

// The C `memcpy` every copy in the image calls: C's signature and contract, and no other
// definition is linked strongly.
#[unsafe(no_mangle)]
/// Copies `n` bytes from `src` to `dest` (which do not overlap); returns `dest`.
///
/// # Safety
/// C's `memcpy` contract: both regions valid for `n` bytes, not overlapping.
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; only the registers named are changed, and the copy stays
    // within the `n` bytes of each region.
    unsafe {
        core::arch::asm!(
            "cmp rdx, 64",
            "jb 3f",
            "2:",
            "mov r8, [rsi]",
            "mov r9, [rsi + 8]",
            "mov r10, [rsi + 16]",
            "mov r11, [rsi + 24]",
            "mov [rdi], r8",
            "mov [rdi + 8], r9",
            "mov [rdi + 16], r10",
            "mov [rdi + 24], r11",
            "mov r8, [rsi + 32]",
            "mov r9, [rsi + 40]",
            "mov r10, [rsi + 48]",
            "mov r11, [rsi + 56]",
            "mov [rdi + 32], r8",
            "mov [rdi + 40], r9",
            "mov [rdi + 48], r10",
            "mov [rdi + 56], r11",
            "add rsi, 64",
            "add rdi, 64",
            "sub rdx, 64",
            "cmp rdx, 64",
            "jae 2b",
            "3:",
            "mov rcx, rdx",
            "shr rcx, 3",
            "rep movsq",
            "mov rcx, rdx",
            "and rcx, 7",
            "rep movsb",
            inout("rdi") dest => _,
            inout("rsi") src => _,
            inout("rdx") n => _,
            out("rcx") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nostack)
        );
    }
    dest
}
