//! Deliberate faults (apps/faults) print a clear message and end with a failure status:
//! 101 for a panic, 102 for a CPU exception. write-text and exec-data check W^X. An app's own
//! status, 0-255, reaches the caller unchanged (isa-debug-exit carries 7 bits, the rest travels
//! on the console), and a reserved one is refused.

use stardust_tests::{Boot, Outcome, Run, assert_exit, line_with};

fn faults(arg: &str) -> Boot {
    Run::new("faults").args(&[arg]).boot()
}

#[test]
fn panic_prints_message_and_location() {
    let boot = faults("panic");
    assert_exit(&boot, 101);
    let line = line_with(&boot, &["panicked at ", "deliberate panic"]);
    assert!(line.contains(".rs:"), "panic line names the file: {line:?}");
}

#[test]
fn page_fault_names_vector_and_address() {
    let boot = faults("pagefault");
    assert_exit(&boot, 102);
    let line = line_with(&boot, &["EXCEPTION: ", "#PF"]);
    assert!(line.starts_with("EXCEPTION: "), "got {line:?}");
    line_with(&boot, &["error code=0x"]);
    line_with(&boot, &["rip=0x"]);
    line_with(&boot, &["cr2=0xdead0000"]);
}

#[test]
fn writing_to_text_faults() {
    let boot = faults("write-text");
    assert_exit(&boot, 102);
    line_with(&boot, &["EXCEPTION: ", "#PF"]);
    line_with(&boot, &["protection violation on write"]);
}

#[test]
fn executing_data_faults() {
    let boot = faults("exec-data");
    assert_exit(&boot, 102);
    line_with(&boot, &["EXCEPTION: ", "#PF"]);
    line_with(&boot, &["protection violation on instruction fetch"]);
}

#[test]
fn null_pointer_faults() {
    let boot = faults("null");
    assert_exit(&boot, 102);
    line_with(&boot, &["page not present on read"]);
    line_with(&boot, &["cr2=0x8"]);
}

#[test]
fn writing_rodata_faults() {
    let boot = faults("write-rodata");
    assert_exit(&boot, 102);
    line_with(&boot, &["protection violation on write"]);
}

#[test]
fn executing_the_stack_faults() {
    let boot = faults("exec-stack");
    assert_exit(&boot, 102);
    line_with(&boot, &["protection violation on instruction fetch"]);
}

#[test]
fn unknown_request_prints_usage() {
    let boot = faults("frobnicate");
    assert_exit(&boot, 2);
    line_with(&boot, &["usage: faults"]);
}

#[test]
fn stack_overflow_is_named() {
    let boot = faults("stack-overflow");
    assert_exit(&boot, 102);
    line_with(&boot, &["stack overflow"]);
}

#[test]
fn app_exit_code_is_passed_through() {
    let boot = Run::new("faults").args(&["exit", "42"]).boot();
    assert_exit(&boot, 42);
}

/// `stardust::exit(N)` for statuses below and above isa-debug-exit's 7 bits: each reaches the
/// caller unchanged; those of 128 and more as the console's last line `exit status N`.
#[test]
fn every_app_status_reaches_the_caller_unchanged() {
    for code in [0, 1, 100, 128, 200, 255] {
        let arg = code.to_string();
        let boot = Run::new("faults").args(&["exit", &arg]).boot();
        assert_exit(&boot, code);
        let line = format!("exit status {code}");
        let last = boot.lines().last().unwrap_or("");
        if code >= 128 {
            assert_eq!(
                last, line,
                "the status line ends the console:\n{}",
                boot.stdout
            );
        } else {
            assert!(!boot.stdout.contains(&line), "{}", boot.stdout);
        }
    }
}

/// The status `main` returns (not `stardust::exit`) reaches the caller the same way.
#[test]
fn the_status_main_returns_reaches_the_caller_unchanged() {
    for code in [0, 3, 200, 255] {
        let arg = code.to_string();
        let boot = Run::new("faults").args(&["return", &arg]).boot();
        assert_exit(&boot, code);
    }
}

/// 101-103 (the kernel's) and 124-127 (cargo xtask run's) mean one thing each: an app that
/// exits with one, or returns one from `main`, is stopped by a panic that names the status.
#[test]
fn a_reserved_status_is_refused_with_a_panic_naming_it() {
    for (how, code, said) in [
        (
            "exit",
            124,
            "exit status 124, which is reserved for cargo xtask run (timeout)",
        ),
        (
            "exit",
            127,
            "exit status 127, which is reserved for cargo xtask run",
        ),
        (
            "exit",
            101,
            "exit status 101, which is reserved for the kernel (kernel panic)",
        ),
        (
            "return",
            125,
            "main returned status 125, which is reserved for cargo xtask run",
        ),
        (
            "return",
            103,
            "main returned status 103, which is reserved for the kernel",
        ),
    ] {
        let arg = code.to_string();
        let boot = Run::new("faults").args(&[how, &arg]).boot();
        assert_exit(&boot, 101);
        let line = line_with(&boot, &["PANIC: ", said]);
        if how == "exit" {
            // The panic points at the app's call, not into the kernel.
            assert!(line.contains("apps/faults/src/main.rs:"), "{line}");
        }
    }
}

/// Nothing the kernel sees: an empty IDT makes the CPU shut down. QEMU (`-no-reboot`) exits
/// without a status, which `cargo xtask run` reports as 127.
#[test]
fn a_triple_fault_ends_without_a_status() {
    let boot = faults("triple-fault");
    assert_eq!(boot.outcome, Outcome::NoStatus, "{}", boot.stdout);
    assert_eq!(boot.outcome.exit_code(), 127);
    assert!(!boot.stdout.contains("survived"), "{}", boot.stdout);
}
