//! The `cargo xtask` command line end to end: `--print-cargo` gives a plain cargo command that
//! builds the same image, `size` fails over budget, bad input exits non-zero with the choices.

use stardust_tests::workspace;
use std::process::{Command, Output};

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(&workspace().root);
    c
}

/// The tests here build into the shared target directory; one at a time, so that one test's
/// plain `cargo build` is not overwritten by another's before it is read.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn xtask(args: &[&str]) -> Output {
    cargo()
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(args)
        .output()
        .expect("cargo runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cargo xtask build hello --profile minimal`; the image path it prints last.
fn build_minimal_hello() -> std::path::PathBuf {
    let built = xtask(&["build", "hello", "--profile", "minimal"]);
    assert!(built.status.success(), "{}", text(&built.stderr));
    let path = text(&built.stdout)
        .lines()
        .last()
        .expect("a path")
        .trim()
        .to_string();
    workspace().root.join(path)
}

#[test]
fn print_cargo_builds_the_same_image_with_plain_cargo() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = xtask(&["build", "hello", "--profile", "minimal", "--print-cargo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout).trim().to_string();
    assert!(
        line.contains("cargo build") && line.contains("stardust/allocator-none"),
        "{line}"
    );
    // Run it as a shell would (environment assignments, then cargo).
    let mut parts = line.split_whitespace();
    let mut cmd = cargo();
    for p in parts.by_ref() {
        match p.split_once('=') {
            Some((k, v)) if k.starts_with("STARDUST_") => {
                cmd.env(k, v);
            }
            _ => {
                assert_eq!(p, "cargo", "{line}");
                break;
            }
        }
    }
    let plain = cmd.args(parts).output().expect("cargo runs");
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let plain_elf = workspace()
        .root
        .join("target/x86_64-unknown-none/release/hello");
    let plain_bytes = std::fs::read(&plain_elf).expect("plain cargo wrote the image");

    let debug = build_minimal_hello().with_extension("debug");
    let xtask_bytes = std::fs::read(&debug).expect("xtask wrote the .debug image");
    assert!(
        plain_bytes == xtask_bytes,
        "plain cargo and xtask build different images ({} vs {} bytes)",
        plain_bytes.len(),
        xtask_bytes.len()
    );
}

#[test]
fn size_fails_over_budget_and_passes_within() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let over = xtask(&["size", "--profile", "minimal", "--set", "image_bytes=1000"]);
    assert!(!over.status.success(), "{}", text(&over.stdout));
    assert!(
        text(&over.stderr).contains("over budget"),
        "{}",
        text(&over.stderr)
    );
    let ok = xtask(&["size", "--profile", "minimal"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let report = text(&ok.stdout);
    assert!(report.contains("hello [minimal]"), "{report}");
    assert!(
        report.contains("arch_x86_64") && report.contains("core"),
        "{report}"
    );
}

#[test]
fn bad_input_exits_non_zero_with_the_choices() {
    for (args, needle) in [
        (
            &["build", "nope"][..],
            "valid apps: allocstress, asyncprobe, faults, hello, threads, timeprobe, xenprobe",
        ),
        (
            &["build", "hello", "--profile", "nope"][..],
            "valid profiles: default, minimal",
        ),
        (
            &["build", "hello", "--set", "allocator=jemalloc"][..],
            "valid choices: none, bump, buddy, talc",
        ),
        (&["build", "hello", "--set", "bogus=1"][..], "valid keys"),
        (&["run", "hello", "--machine", "pc99"][..], "q35"),
        (&["run", "hello", "--set", "memory=1M"][..], "too small"),
        (
            &["run", "--image", "/no/such/image.elf"][..],
            "no such file",
        ),
        (&["run"][..], "<APP>"),
    ] {
        let out = xtask(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Every option that takes a time is bounded: one line naming the option, its value and the
/// limit, exit 1 (not a panic), before anything is built or booted.
#[test]
fn time_options_are_bounded() {
    for args in [
        &["run", "hello", "--timeout", "1e300"][..],
        &["run", "hello", "--timeout", "99999999999999999999"][..],
        &["run", "hello", "--platform", "xen", "--timeout", "604801"][..],
        &["run", "hello", "--timeout", "inf"][..],
        &["bench", "boot", "--timeout", "1e300"][..],
        &["xen-lab", "run", "--timeout", "99999999999999999999"][..],
    ] {
        let out = xtask(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("error: --timeout {}: ", args[args.len() - 1]))
                && err.contains("604800"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn run_boots_a_given_image_without_naming_an_app() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let image = build_minimal_hello();
    let image = image.to_str().expect("a UTF-8 path");
    let run = xtask(&["run", "--image", image, "--", "from", "file"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains("command line: from file"),
        "{}",
        text(&run.stdout)
    );
}

#[test]
fn run_exits_with_the_guest_status() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = xtask(&["run", "faults", "--", "exit", "7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let out = xtask(&["run", "faults", "--", "panic"]);
    assert_eq!(out.status.code(), Some(101), "{}", text(&out.stderr));
}

#[test]
fn run_gdb_starts_halted_and_continues_through_the_gdb_stub() {
    use std::io::{Read, Write};
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Build first, so that the run below starts QEMU at once.
    build_minimal_hello();
    let mut child = cargo()
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args([
            "run",
            "hello",
            "--profile",
            "minimal",
            "--gdb",
            "--timeout",
            "30",
        ])
        .args(["--", "via", "gdb"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cargo runs");
    // QEMU's GDB stub on :1234 (QEMU's -s); retry until it listens.
    let mut stream = None;
    for _ in 0..300 {
        match std::net::TcpStream::connect("127.0.0.1:1234") {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    let Some(mut stream) = stream else {
        let _ = child.kill();
        panic!("QEMU's GDB stub never listened on :1234");
    };
    // Halted until told otherwise: `c` (continue) in the GDB remote protocol.
    stream.write_all(b"$c#63").expect("send continue");
    let out = child.wait_with_output().expect("xtask ends");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("gdb ") && stderr.contains("hello.debug") && stderr.contains(":1234"),
        "prints the gdb command: {stderr}"
    );
    assert!(
        text(&out.stdout).contains("command line: via gdb"),
        "{}",
        text(&out.stdout)
    );
}
