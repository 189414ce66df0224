//! hello prints its greeting and its command line and exits 0, with every profile's extremes
//! (minimal, default) on both machine types.

use stardust_tests::{Machine, Run, assert_exit, line_with};

fn hello(profile: &str, machine: Machine) {
    let boot = Run::new("hello")
        .profile(profile)
        .machine(machine)
        .args(&["one", "two"])
        .boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["Hello from Stardust!"]);
    let line = line_with(&boot, &["command line:"]);
    assert!(line.ends_with("command line: one two"), "got {line:?}");
}

#[test]
fn minimal_on_microvm() {
    hello("minimal", Machine::Microvm);
}

#[test]
fn minimal_on_q35() {
    hello("minimal", Machine::Q35);
}

#[test]
fn default_on_microvm() {
    hello("default", Machine::Microvm);
}

#[test]
fn default_on_q35() {
    hello("default", Machine::Q35);
}

#[test]
fn no_args_gives_an_empty_command_line() {
    let boot = Run::new("hello").boot();
    assert_exit(&boot, 0);
    let line = line_with(&boot, &["command line:"]);
    assert!(line.trim_end().ends_with("command line:"), "got {line:?}");
}

#[test]
fn unknown_tokens_before_the_separator_reach_the_app() {
    let boot = Run::new("hello")
        .kargs("log=warn extra")
        .args(&["last"])
        .boot();
    assert_exit(&boot, 0);
    let line = line_with(&boot, &["command line:"]);
    assert!(line.ends_with("command line: extra last"), "got {line:?}");
}

#[test]
fn debugcon_console_via_set() {
    for machine in [Machine::Q35, Machine::Microvm] {
        let boot = Run::new("hello")
            .set(&["console=debugcon"])
            .machine(machine)
            .args(&["dbg"])
            .boot();
        assert_exit(&boot, 0);
        line_with(&boot, &["Hello from Stardust!"]);
        line_with(&boot, &["command line: dbg"]);
    }
}
