//! The kernel command line: bad options and over-long lines exit 103 with a message; `log=`
//! changes the level; `bootchart` prints the boot phases.

use stardust_tests::{Run, assert_exit, line_with};

#[test]
fn bad_log_level_is_rejected() {
    let boot = Run::new("hello").kargs("log=bogus").boot();
    assert_exit(&boot, 103);
    line_with(&boot, &["bogus"]);
    assert!(
        !boot.stdout.contains("Hello from Stardust!"),
        "the app must not run:\n{}",
        boot.stdout
    );
}

#[test]
fn over_long_command_line_is_rejected() {
    let long = "x".repeat(1100);
    let boot = Run::new("hello").args(&[&long]).boot();
    assert_exit(&boot, 103);
    line_with(&boot, &["1024"]);
    assert!(
        !boot.stdout.contains("Hello from Stardust!"),
        "the app must not run:\n{}",
        boot.stdout
    );
}

#[test]
fn command_line_at_the_limit_is_accepted() {
    // "-- " + 1021 bytes = exactly 1024.
    let arg = "y".repeat(1021);
    let boot = Run::new("hello").args(&[&arg]).boot();
    assert_exit(&boot, 0);
    line_with(&boot, &[&format!("command line: {arg}")]);
}

#[test]
fn log_debug_shows_debug_lines() {
    let quiet = Run::new("hello").boot();
    assert_exit(&quiet, 0);
    assert!(
        !quiet.lines().any(|l| l.contains("DEBUG")),
        "no debug lines at info level:\n{}",
        quiet.stdout
    );
    let boot = Run::new("hello").kargs("log=debug").boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["DEBUG"]);
}

#[test]
fn bootchart_prints_phases() {
    let boot = Run::new("hello").kargs("bootchart").boot();
    assert_exit(&boot, 0);
    let chart: Vec<&str> = boot
        .lines()
        .filter(|l| l.starts_with("bootchart:"))
        .collect();
    assert!(chart.len() >= 2, "bootchart lines:\n{}", boot.stdout);
    assert!(
        chart.iter().any(|l| l.contains("main")),
        "a phase named main:\n{}",
        boot.stdout
    );
}

#[test]
fn the_profile_sets_the_default_level_and_the_command_line_overrides_it() {
    let profile_debug = Run::new("hello").set(&["log_level=debug"]).boot();
    assert_exit(&profile_debug, 0);
    line_with(&profile_debug, &["DEBUG"]);
    let silenced = Run::new("hello")
        .set(&["log_level=debug"])
        .kargs("log=off")
        .boot();
    assert_exit(&silenced, 0);
    assert!(
        !silenced.stdout.contains("DEBUG"),
        "log=off wins over the profile:\n{}",
        silenced.stdout
    );
}
