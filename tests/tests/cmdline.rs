//! The kernel command line: bad options and over-long lines exit 103 with a message; `log=`
//! changes the level; `bootchart` prints the boot phases; every app argument arrives unchanged
//! (spaces, empty, quotes, backslashes, Unicode), and what a monitor appends is not one.

use stardust_tests::{Boot, Machine, Outcome, Run, assert_exit, line_with};
use std::process::{Command, Stdio};

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
fn a_line_over_64_kib_is_reported_as_at_least_that_long() {
    // The kernel stops looking for the end of the line at 64 KiB: it cannot know the real
    // length, and must not claim one.
    let long = "z".repeat(70_000);
    let boot = Run::new("hello").args(&[&long]).boot();
    assert_exit(&boot, 103);
    let line = line_with(&boot, &["at least 65536 bytes"]);
    assert!(line.contains("1024"), "{line}");
    assert!(!boot.stdout.contains(" is 65536 bytes"), "{}", boot.stdout);
}

#[test]
fn command_line_at_the_limit_is_accepted() {
    // "-- " + 1018 bytes + " --" = exactly 1024.
    let arg = "y".repeat(1018);
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

/// `faults args ARG...` prints each argument quoted, one a line; the lines it printed, in order.
fn printed_args(boot: &Boot) -> Vec<String> {
    boot.lines()
        .filter_map(|l| l.strip_prefix("faults: arg "))
        .map(|l| l.split_once(": ").map_or(l, |(_, a)| a).to_string())
        .collect()
}

/// `{:?}` of each argument, as `faults args` prints them.
fn debug_of(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| format!("{a:?}")).collect()
}

#[test]
fn an_argument_with_a_space_is_one_argument() {
    // `cargo xtask run faults -- "exit 7"`: one argument, which faults does not know.
    let boot = Run::new("faults").args(&["exit 7"]).boot();
    assert_exit(&boot, 2);
    line_with(&boot, &["faults: unknown request \"exit 7\""]);
    // `-- exit 7`: two arguments.
    let boot = Run::new("faults").args(&["exit", "7"]).boot();
    assert_exit(&boot, 7);
}

#[test]
fn every_argument_arrives_unchanged() {
    let args = [
        "args",
        "exit 7",
        "",
        r#"say "hi" \o/"#,
        "--",
        "log=debug",
        "bootchart",
        "grüße 日本語 🦀",
        "tab\there\nnewline",
        r"\x41",
        "",
    ];
    let boot = Run::new("faults").args(&args).boot();
    assert_exit(&boot, 0);
    assert_eq!(printed_args(&boot), debug_of(&args[1..]), "{}", boot.stdout);
    // The kernel took none of them for its options.
    assert!(!boot.stdout.contains("DEBUG"), "{}", boot.stdout);
    assert!(!boot.stdout.contains("bootchart:"), "{}", boot.stdout);
}

/// Boots `run`'s image with its QEMU command line, the `-append` string replaced when `append`
/// is given, and `extra` QEMU arguments added.
fn boot_with(run: &Run<'_>, append: Option<&str>, extra: &[&str]) -> Boot {
    let (profile, image) = stardust_tests::image_with(run.app, run.profile, run.set);
    let mut cfg = xtask::qemu::QemuConfig::new(stardust_tests::qemu_binary(), image.elf, &profile);
    cfg.machine = run.machine;
    cfg.machine_opts = run.machine_opts.to_string();
    cfg.kargs = run.kargs.to_string();
    cfg.app_args = run.args.iter().map(|s| s.to_string()).collect();
    let mut args = cfg.args();
    if let Some(append) = append {
        match args.iter().position(|a| a == "-append") {
            Some(i) => args[i + 1] = append.to_string(),
            None => args.extend(["-append".to_string(), append.to_string()]),
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let start = std::time::Instant::now();
    // Through xtask's child helper (it dies with the test), with the time limit of a boot.
    let mut cmd = Command::new(&cfg.qemu);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut qemu = xtask::child::spawn(&mut cmd, "QEMU").expect("QEMU starts");
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = read(qemu.take_stdout().map(|p| Box::new(p) as _));
    let err = read(qemu.take_stderr().map(|p| Box::new(p) as _));
    let exit = loop {
        if let Some(exit) = qemu.try_wait().expect("waiting for QEMU") {
            break exit;
        }
        if start.elapsed() > xtask::qemu::DEFAULT_TIMEOUT {
            qemu.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let (stdout, stderr) = (out.join().expect("stdout"), err.join().expect("stderr"));
    eprintln!("--- {run:?} {append:?} {extra:?}\n{stdout}{stderr}");
    Boot {
        outcome: xtask::qemu::decode_status(exit.status.code(), &stderr, &stdout),
        stdout,
        stderr,
        elapsed: start.elapsed(),
        cpu: exit.cpu,
        line_times: Vec::new(),
    }
}

/// QEMU `microvm` with `acpi=off` appends ` virtio_mmio.device=512@0x...:N` for each virtio-mmio
/// device, after the whole command line.
const VIRTIO_DEVICE: &[&str] = &["-device", "virtio-rng-device"];

#[test]
fn a_monitors_appended_parameter_is_not_an_argument() {
    let args = ["args", "a b", ""];
    let run = Run::new("faults")
        .machine(Machine::Microvm)
        .machine_opts("acpi=off")
        .kargs("log=debug")
        .args(&args);
    let boot = boot_with(&run, None, VIRTIO_DEVICE);
    assert_eq!(boot.outcome, Outcome::Guest(0), "{}", boot.stdout);
    // The monitor did append it (the kernel logs its command line at debug level) ...
    line_with(&boot, &["kernel command line: ", " -- virtio_mmio.device="]);
    // ... and the app got exactly its own arguments.
    assert_eq!(printed_args(&boot), debug_of(&args[1..]), "{}", boot.stdout);
}

#[test]
fn a_hand_written_append_still_works() {
    let run = Run::new("hello")
        .machine(Machine::Microvm)
        .machine_opts("acpi=off");
    for extra in [&[][..], VIRTIO_DEVICE] {
        let boot = boot_with(&run, Some("log=debug -- one two"), extra);
        assert_eq!(boot.outcome, Outcome::Guest(0), "{}", boot.stdout);
        assert!(
            boot.lines().any(|l| l == "command line: one two"),
            "{extra:?}:\n{}",
            boot.stdout
        );
        if !extra.is_empty() {
            line_with(
                &boot,
                &["kernel command line: ", " two virtio_mmio.device="],
            );
        }
    }
    // Without a command line of its own, the monitor's parameter is not an argument either.
    let boot = boot_with(&run, Some("log=debug"), VIRTIO_DEVICE);
    assert_eq!(boot.outcome, Outcome::Guest(0), "{}", boot.stdout);
    line_with(&boot, &["kernel command line: ", "virtio_mmio.device="]);
    assert!(
        boot.lines().any(|l| l == "command line:"),
        "{}",
        boot.stdout
    );
}

#[test]
fn a_bad_quote_or_escape_is_rejected_with_where_it_is() {
    for (kargs, needle) in [
        (r#"-- "open"#, "never closed"),
        (r"-- a\q", "bad escape `\\q`"),
    ] {
        let boot = Run::new("hello").kargs(kargs).boot();
        assert_exit(&boot, 103);
        line_with(&boot, &[needle]);
        assert!(
            !boot.stdout.contains("Hello from Stardust!"),
            "the app must not run:\n{}",
            boot.stdout
        );
    }
}
