//! Deliberate faults (apps/faults) print a clear message and end with a failure status:
//! 101 for a panic, 102 for a CPU exception. write-text and exec-data check W^X.

use stardust_tests::{Boot, Run, assert_exit, line_with};

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
