//! Thread context switching: the callee-saved registers and the stack pointer, nothing else.
//!
//! A switch is an ordinary function call ([`switch`]), so the compiler has already saved every
//! caller-saved register around it; the stub pushes the six callee-saved ones on the old stack,
//! stores the stack pointer, loads the new one and pops them. A thread preempted by a timer
//! interrupt is switched away from inside the interrupt handler (whose stub saved everything
//! else) and resumes there. The target is soft-float: there is no vector or x87 state to save.
//!
//! Interrupts must be masked across a switch; each thread restores its own interrupt state when
//! it resumes (a new thread starts with them masked and its entry function enables them).

use core::arch::global_asm;

/// Bytes [`prepare_stack`] puts on a new stack.
pub const INITIAL_FRAME: usize = 7 * 8;

unsafe extern "C" {
    fn stardust_context_switch(from_sp: *mut u64, to_sp: u64);
    fn stardust_thread_trampoline();
}

/// Saves the running context, storing its stack pointer in `*from_sp`, and resumes the one
/// whose stack pointer is `to_sp`. Returns when some later switch resumes `*from_sp`.
///
/// # Safety
/// Interrupts are masked. `to_sp` is a stack pointer saved by `switch` (of a context that is
/// not running) or made by [`prepare_stack`] (not started yet), and its stack stays valid while
/// that context lives. `from_sp` stays valid until the switch back.
pub unsafe fn switch(from_sp: *mut u64, to_sp: u64) {
    // SAFETY: forwarded to the caller; the stub follows the C ABI and preserves every
    // callee-saved register of both contexts.
    unsafe { stardust_context_switch(from_sp, to_sp) }
}

/// Prepares a new stack whose top (exclusive, 16-byte aligned) is `top` so that switching to
/// the returned stack pointer calls `entry(arg)` on it, with a correctly aligned stack.
/// `entry` must never return.
///
/// # Safety
/// `[top - INITIAL_FRAME, top)` is writable memory owned by the caller, part of the new stack.
pub unsafe fn prepare_stack(top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
    debug_assert_eq!(top % 16, 0, "stack top not 16-byte aligned");
    let sp = top - INITIAL_FRAME as u64;
    // The switch stub pops r15, r14, r13, r12, rbx, rbp, then returns into the trampoline,
    // which calls r13(r12) with rsp = top (so rsp % 16 == 8 at the callee's entry).
    let frame: [u64; 7] = [
        0,
        0,
        entry as *const () as u64,
        arg,
        0,
        0,
        stardust_thread_trampoline as *const () as u64,
    ];
    // SAFETY: the caller owns the 56 bytes below `top`; `sp` is 8-byte aligned.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), sp as *mut u64, frame.len()) };
    sp
}

global_asm!(
    r#"
    .section .text.context, "ax", @progbits
    .global stardust_context_switch
stardust_context_switch:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    .global stardust_thread_trampoline
stardust_thread_trampoline:
    mov %r12, %rdi
    call *%r13
    ud2
"#,
    options(att_syntax)
);
