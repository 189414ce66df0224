//! Faults: does something fatal on purpose, so that tests can check how the kernel reports it.
//!
//! `faults panic | pagefault | null | write-text | write-rodata | exec-data | exec-stack |
//! stack-overflow | exit N | return N | hang | triple-fault` (`exit N` calls
//! `stardust::exit(N)`, `return N` returns `ExitCode(N)` from `main`, N is 0-255; `hang` sleeps
//! forever; `triple-fault` loads an empty IDT and raises a breakpoint, so that the CPU shuts
//! down without the kernel seeing anything)
#![no_std]
#![no_main]

use stardust::ExitCode;

static mut DATA_PAGE: [u8; 64] = [0xc3; 64]; // `ret` bytes: executable if W^X were broken
static RODATA: [u8; 64] = [0x5a; 64];

const USAGE: &str = "usage: faults panic|pagefault|null|write-text|write-rodata|exec-data|exec-stack|stack-overflow|exit N|return N|hang|triple-fault (N: 0-255)";

#[stardust::main]
fn main() -> ExitCode {
    let Some(what) = stardust::args().next() else {
        stardust::println!("{USAGE}");
        return ExitCode(2);
    };
    stardust::println!("faults: {what}");
    match what {
        "panic" => panic!("deliberate panic"),
        "pagefault" => {
            // SAFETY: deliberately unsound: reads an unmapped address to provoke a page fault.
            let v = unsafe { core::ptr::read_volatile(0xdead_0000 as *const u64) };
            stardust::println!("read {v:#x}: page fault did not happen");
        }
        "null" => {
            // SAFETY: deliberately unsound: reads page 0, which the kernel leaves unmapped.
            let v =
                unsafe { core::ptr::read_volatile(core::hint::black_box(8usize) as *const u64) };
            stardust::println!("read {v:#x} at 8: page 0 is mapped");
        }
        "write-rodata" => {
            let p = core::hint::black_box(RODATA.as_ptr()) as *mut u8;
            // SAFETY: deliberately unsound: writes to read-only data, which W^X maps R+NX.
            unsafe { core::ptr::write_volatile(p, 0) };
            stardust::println!("wrote to rodata: W^X is broken");
        }
        "exec-stack" => {
            let code = [0xc3u8; 16]; // `ret`
            let p = core::hint::black_box(code.as_ptr());
            // SAFETY: deliberately unsound: calls into the stack, which W^X maps NX.
            let f: fn() = unsafe { core::mem::transmute(p as *const ()) };
            f();
            stardust::println!("executed the stack: W^X is broken");
        }
        "write-text" => {
            let code = main as *const () as *mut u8;
            // SAFETY: deliberately unsound: writes to the app's own code, which W^X maps RX.
            unsafe { core::ptr::write_volatile(code, 0xcc) };
            stardust::println!("wrote to text: W^X is broken");
        }
        "exec-data" => {
            let data = (&raw mut DATA_PAGE) as *mut u8;
            // SAFETY: a byte write into our own static, so that it surely lives in writable data.
            unsafe { core::ptr::write_volatile(data, 0xc3) };
            // SAFETY: deliberately unsound: calls into a data page, which W^X maps NX.
            let f: fn() = unsafe { core::mem::transmute(data as *const ()) };
            f();
            stardust::println!("executed data: W^X is broken");
        }
        "stack-overflow" => {
            stardust::println!("depth reached {}", recurse(0));
        }
        "hang" => loop {
            stardust::time::sleep_ns(1_000_000_000);
        },
        "triple-fault" => {
            let empty_idt = [0u16; 5]; // limit 0, base 0
            // SAFETY: deliberately fatal: with an empty IDT no exception can be delivered, so the
            // breakpoint ends in a triple fault (the VM shuts down; nothing returns here).
            unsafe {
                core::arch::asm!("lidt [{}]", "int3", in(reg) empty_idt.as_ptr());
            }
            stardust::println!("the CPU survived an empty IDT");
        }
        "exit" | "return" => {
            let Some(code) = stardust::args().nth(1).and_then(|c| c.parse::<u8>().ok()) else {
                stardust::println!("faults: {what} needs a status 0-255; {USAGE}");
                return ExitCode(2);
            };
            if what == "exit" {
                stardust::exit(code);
            }
            return ExitCode(code);
        }
        other => {
            stardust::println!("faults: unknown request {other:?}; {USAGE}");
            return ExitCode(2);
        }
    }
    ExitCode(1)
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [depth; 64];
    core::hint::black_box(&mut frame);
    if depth == u64::MAX {
        return depth;
    }
    recurse(depth + 1) + frame[3]
}
