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
    // Run it as a shell would (environment assignments, then cargo; single-quoted words).
    let words = shell_words(&line);
    let mut parts = words.iter().map(String::as_str);
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

/// Splits a line the way `xtask::image::shell_quote` quotes it: words apart at whitespace,
/// `'...'` taken literally, `\\` escaping the next character outside quotes.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn shell_words_undo_shell_quote() {
    assert_eq!(
        shell_words(r#"A=1 cargo --config 'x=["a b"]' 'it'\''s'"#),
        ["A=1", "cargo", "--config", "x=[\"a b\"]", "it's"]
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
    // Every directory under apps/, sorted: the list the error must give.
    let mut apps: Vec<String> = std::fs::read_dir(workspace().root.join("apps"))
        .expect("apps/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    apps.sort();
    let valid_apps = format!("valid apps: {}", apps.join(", "));
    for (args, needle) in [
        (&["build", "nope"][..], valid_apps.as_str()),
        (
            &["build", "hello", "--profile", "nope"][..],
            "valid profiles: default, minimal",
        ),
        (
            &["build", "hello", "--set", "allocator=jemalloc"][..],
            "valid choices: none, bump, buddy, talc",
        ),
        (&["build", "hello", "--set", "bogus=1"][..], "valid keys"),
        (
            &["build", "hello", "--set", "cpus=0"][..],
            "cpus (set on the command line): 0: must be between 1 and 8",
        ),
        (
            &["build", "hello", "--set", "cpus=4"][..],
            "cpus = 4 needs a scheduler with threads, but scheduler = \"none\"",
        ),
        (&["run", "hello", "--machine", "pc99"][..], "q35"),
        (&["run", "hello", "--set", "memory=1M"][..], "too small"),
        (
            &["run", "--image", "/no/such/image.elf"][..],
            "no such file",
        ),
        (&["run"][..], "<APP>"),
        (&["run", "hello", "--gdb-port", "5000"][..], "--gdb"),
        (
            &["run", "hello", "--gdb", "--gdb-port", "0"][..],
            "--gdb-port",
        ),
    ] {
        let out = xtask(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        if args[0] == "run" {
            // `run` exits with the guest's status: its own errors are "never ran", not 1 or 2.
            assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        }
    }
}

/// Every option that takes a time is bounded: one line naming the option, its value and the
/// limit, an error status (not a panic's 134), before anything is built or booted.
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
        // `run`'s own errors are "the guest never ran" (125); other commands fail with 1.
        let code = if args[0] == "run" { 125 } else { 1 };
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
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
    assert!(
        text(&out.stderr).contains("status 101 (kernel panic)"),
        "{}",
        text(&out.stderr)
    );
    // Beyond isa-debug-exit's 7 bits (QEMU alone would say 0 for 128 and 72 for 200).
    for code in ["128", "200", "255"] {
        let out = xtask(&["run", "faults", "--", "exit", code]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), code.parse().ok(), "{err}");
        assert!(
            err.contains(&format!("guest exited with status {code}")),
            "{err}"
        );
    }
}

/// xtask's own outcomes have statuses of their own (124-127), named on stderr, and an app
/// cannot take them: each means one thing.
#[test]
fn run_names_each_outcome_with_its_own_status() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for (args, code, said) in [
        (&["--timeout", "2", "--", "hang"][..], 124, "timeout"),
        (&["--", "triple-fault"][..], 127, "triple fault"),
        (&["--", "exit", "126"][..], 101, "status 101 (kernel panic)"),
    ] {
        let out = xtask(&[&["run", "faults"][..], args].concat());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
        if code == 101 {
            let console = text(&out.stdout);
            assert!(
                console.contains("PANIC: ")
                    && console.contains("exit status 126, which is reserved"),
                "{console}"
            );
        } else {
            assert!(err.contains(&format!("exit status {code}")), "{err}");
        }
    }
}

/// A QEMU that fails (125) or is killed by a signal (126), with a fake `qemu-system-x86_64`
/// first on PATH.
#[test]
fn run_tells_a_failed_qemu_from_a_killed_one() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let image = build_minimal_hello();
    let image = image.to_str().expect("a UTF-8 path");
    for (name, script, code, said) in [
        (
            "fails",
            "echo 'qemu-system-x86_64: -machine q35: a fake failure' >&2; exit 1",
            125,
            "QEMU failed",
        ),
        ("killed", "kill -KILL $$", 126, "killed by a signal"),
    ] {
        let dir = workspace().target_dir().join("cli-fake-qemu").join(name);
        std::fs::create_dir_all(&dir).expect("a directory for the fake QEMU");
        let qemu = dir.join("qemu-system-x86_64");
        std::fs::write(&qemu, format!("#!/bin/sh\n{script}\n")).expect("the fake QEMU");
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755))
            .expect("an executable fake QEMU");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.clone()];
        dirs.extend(std::env::split_paths(&path));
        let out = cargo()
            .env("PATH", std::env::join_paths(dirs).expect("a PATH"))
            .args(["run", "--quiet", "--package", "xtask", "--"])
            .args(["run", "--image", image])
            .output()
            .expect("cargo runs");
        let err = text(&out.stderr);
        assert!(
            err.contains(&qemu.display().to_string()),
            "the fake ran: {err}"
        );
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        assert!(err.contains(said), "{name}: {err}");
    }
}

/// A minimal client of the GDB remote protocol (what `gdb -ex 'target remote :PORT'` speaks).
struct GdbRemote(std::net::TcpStream);

impl GdbRemote {
    /// Connects to QEMU's GDB server on `port`, retrying until it listens (or `xtask` ended).
    fn connect(port: u16, xtask: &mut std::process::Child) -> GdbRemote {
        for _ in 0..600 {
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
                    .expect("a read timeout");
                return GdbRemote(s);
            }
            if let Ok(Some(status)) = xtask.try_wait() {
                panic!("xtask ended ({status}) before QEMU's GDB server listened on {port}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = xtask.kill();
        panic!("QEMU's GDB server never listened on {port}");
    }

    /// Sends one packet `$body#checksum`.
    fn send(&mut self, body: &str) {
        use std::io::Write;
        let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        write!(self.0, "${body}#{sum:02x}").expect("send a packet");
    }

    /// Reads one reply packet (skipping acknowledgements), acknowledges it, returns its body.
    fn reply(&mut self) -> String {
        use std::io::{Read, Write};
        let mut byte = [0u8; 1];
        let mut next = |s: &mut std::net::TcpStream| {
            s.read_exact(&mut byte)
                .expect("a reply from the GDB server");
            byte[0]
        };
        while next(&mut self.0) != b'$' {}
        let mut body = Vec::new();
        loop {
            match next(&mut self.0) {
                b'#' => break,
                b => body.push(b),
            }
        }
        next(&mut self.0);
        next(&mut self.0);
        self.0.write_all(b"+").expect("acknowledge");
        String::from_utf8_lossy(&body).into_owned()
    }
}

/// `run --gdb` (on `port`, or on the free port xtask picks and prints): QEMU's GDB server
/// listens, the guest has not run a single instruction (its instruction pointer is still the
/// reset vector), and it runs to its end once told to continue.
fn gdb_session(port: Option<u16>) {
    use std::io::{BufRead, BufReader, Read};
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Build first, so that the run below starts QEMU at once.
    build_minimal_hello();
    let port_arg = port.map(|p| p.to_string());
    let mut args = vec![
        "run",
        "hello",
        "--profile",
        "minimal",
        "--gdb",
        "--timeout",
        "60",
    ];
    if let Some(p) = &port_arg {
        args.extend(["--gdb-port", p]);
    }
    let mut child = cargo()
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(&args)
        .args(["--", "via", "gdb"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cargo runs");
    let mut stdout = child.stdout.take().expect("piped");
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    // stderr line by line: the gdb command (with the port) comes before QEMU starts.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut err = String::new();
    let printed = loop {
        let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(300)) else {
            let _ = child.kill();
            panic!("xtask printed no gdb command:\n{err}");
        };
        err.push_str(&line);
        err.push('\n');
        if let Some((_, port)) = line.split_once("-ex 'target remote :") {
            break port
                .trim_end_matches('\'')
                .parse::<u16>()
                .unwrap_or_else(|e| panic!("a port in {line:?}: {e}"));
        }
    };
    assert!(
        err.contains("gdb ") && err.contains("hello.debug"),
        "prints the gdb command: {err}"
    );
    if let Some(port) = port {
        assert_eq!(printed, port, "the gdb command uses --gdb-port: {err}");
    }
    let mut gdb = GdbRemote::connect(printed, &mut child);
    gdb.send("?");
    let stop = gdb.reply();
    assert!(
        stop.starts_with('S') || stop.starts_with('T'),
        "stop reply {stop:?}"
    );
    // All registers: 16 general-purpose ones of 8 bytes, then rip, in target (little-endian)
    // byte order, as hex. A CPU that never ran is at the reset vector, 0xfff0.
    gdb.send("g");
    let regs = gdb.reply();
    let rip = regs
        .get(16 * 16..17 * 16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .map(u64::swap_bytes)
        .unwrap_or_else(|| panic!("registers {regs:?}"));
    assert_eq!(
        rip, 0xfff0,
        "the guest ran before gdb attached: rip {rip:#x}"
    );
    // Halted until told otherwise: `c` (continue).
    gdb.send("c");
    let status = child.wait().expect("xtask ends");
    err.extend(rx.iter().map(|l| l + "\n"));
    let out = stdout.join().expect("stdout read");
    assert!(status.success(), "{status}: {err}");
    assert!(out.contains("command line: via gdb"), "{out}");
}

#[test]
fn run_gdb_starts_halted_on_a_given_port() {
    let free = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    gdb_session(Some(free));
}

#[test]
fn run_gdb_picks_a_free_port_and_prints_it() {
    gdb_session(None);
}
