//! Bad inputs to `cargo xtask`, end to end: each gets a clear error that says what is wrong and
//! what would work, before anything slow (a build, a boot) runs where it can be known then.

use stardust_tests::workspace;
use std::process::{Command, Output};

/// Builds go to the shared target directory, where cargo's output is copied after the build:
/// one xtask at a time, so that one test's image is not another's.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn xtask(args: &[&str]) -> Output {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&workspace().root)
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(args)
        .output()
        .expect("cargo runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `args`, which must fail before QEMU starts, with every one of `needles` on stderr.
#[track_caller]
fn refused(args: &[&str], needles: &[&str]) -> String {
    let out = xtask(args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: no {n:?} in:\n{err}");
    }
    assert!(
        !err.contains("qemu-system-x86_64 -accel"),
        "{args:?} started QEMU:\n{err}"
    );
    err
}

#[test]
fn stack_size_is_bounded_by_the_boot_page_tables() {
    // Triple-faulted silently (1G) or failed to link (2G): now refused before the build.
    for stack in ["stack_size=1G", "stack_size=2G"] {
        let err = refused(
            &["run", "hello", "--set", stack, "--set", "memory=1200M"],
            &[
                "stack_size (set on the command line)",
                "at most 1022M",
                "first GiB",
            ],
        );
        assert!(!err.contains("xtask: building"), "{err}");
    }
}

#[test]
fn an_image_that_ends_beyond_the_mapped_memory_is_refused_after_its_build() {
    // Within the profile's bound, but the rest of the image pushes its end past 1023 MiB.
    refused(
        &[
            "build",
            "hello",
            "--set",
            "stack_size=1022M",
            "--set",
            "memory=1100M",
        ],
        &[
            "the image ends at 0x",
            "beyond 1023 MiB",
            "lower stack_size (now 1022M)",
        ],
    );
}

#[test]
fn the_memory_advice_is_what_the_image_needs() {
    // Not a fixed "memory=4M": the image with a 1000M stack needs 1003M.
    refused(
        &[
            "run",
            "hello",
            "--set",
            "stack_size=1000M",
            "--set",
            "memory=1000M",
        ],
        &["memory = 1000M is too small", "--set memory=1003M"],
    );
    refused(
        &["run", "hello", "--set", "memory=1M"],
        &["too small", "--set memory=3M"],
    );
    refused(
        &["run", "hello", "--set", "heap_size=64M"],
        &[
            "heap_size = 64M can never be met with memory = 32M",
            "heap_size = 0",
        ],
    );
    refused(
        &["build", "hello", "--set", "heap_size=1000"],
        &["multiple of 4096"],
    );
    // A prebuilt image with a larger stack than the profile's: run reads its real end.
    let built = xtask(&[
        "build",
        "hello",
        "--set",
        "stack_size=64M",
        "--set",
        "memory=67M",
    ]);
    assert!(built.status.success(), "{}", text(&built.stderr));
    let elf = text(&built.stdout)
        .lines()
        .last()
        .expect("a path")
        .trim()
        .to_string();
    refused(
        &["run", "--image", &elf],
        &[
            "memory = 32M is too small: the image alone ends at 0x",
            "--set memory=67M",
        ],
    );
}

#[test]
fn an_image_path_that_is_not_an_image_says_what_it_is() {
    refused(&["run", "--image", "/no/such/image.elf"], &["no such file"]);
    refused(
        &["run", "--image", "/dev/null"],
        &["/dev/null: this is a character device"],
    );
    let dir = std::env::temp_dir();
    let dir = dir.to_str().expect("a UTF-8 temp dir");
    refused(
        &["run", "--image", dir],
        &["this is a directory, not an image file"],
    );
    for platform in ["kvm", "xen"] {
        let err = refused(
            &["run", "--image", "/dev/null", "--platform", platform],
            &["character device"],
        );
        assert!(!err.contains("no such file"), "{err}");
    }
}

/// `cargo xtask build hello` with `sets`: the image's path.
fn build(sets: &[&str]) -> String {
    let mut args = vec!["build", "hello"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let built = xtask(&args);
    assert!(built.status.success(), "{}", text(&built.stderr));
    text(&built.stdout)
        .lines()
        .last()
        .expect("a path")
        .trim()
        .to_string()
}

#[test]
fn an_image_built_for_the_other_platform_is_refused_from_its_notes() {
    // A KVM image would boot on Xen as a PVH guest and triple-fault there.
    let kvm = build(&[]);
    let err = refused(
        &["run", "--image", &kvm, "--platform", "xen"],
        &[
            "built for platform kvm",
            "--platform xen",
            "--platform universal",
        ],
    );
    assert!(!err.contains("Xen lab"), "refused before the lab: {err}");
    for (sets, guest) in [
        (&["platform=xen"][..], "a PV guest"),
        (&["platform=xen", "xen_guest=pvh"][..], "a PVH guest"),
    ] {
        let xen = build(sets);
        refused(
            &["run", "--image", &xen, "--platform", "kvm"],
            &["built for platform xen", guest, "--platform xen"],
        );
    }
}

#[test]
fn an_app_built_with_a_scheduler_it_cannot_use_names_the_one_it_needs() {
    for (args, needle) in [
        (
            &["build", "threads"][..],
            "app `threads` needs scheduler `coop` or `preempt`",
        ),
        (
            &["run", "asyncprobe", "--set", "scheduler=coop"][..],
            "app `asyncprobe` needs scheduler `async`",
        ),
        (
            &["build", "allocstress", "--profile", "minimal"][..],
            "needs allocator `bump` or `buddy` or `talc`",
        ),
        (&["build", "xenprobe"][..], "needs platform `xen`"),
        (
            &["build", "threads", "--print-cargo"][..],
            "--set scheduler=preempt",
        ),
    ] {
        let err = refused(args, &[needle]);
        assert!(
            !err.contains("unresolved import") && !err.contains("xtask: building"),
            "{args:?}: refused before rustc:\n{err}"
        );
    }
}

#[test]
fn bench_checks_its_json_path_before_it_runs() {
    refused(
        &["bench", "sched", "--json", "/tmp/x.json"],
        &["`bench sched`, `bench alloc` and `bench smp` print a table only"],
    );
    for which in [
        &["boot"][..],
        &["sched", "size"][..],
        &["alloc", "memory"][..],
    ] {
        let mut args = vec!["bench"];
        args.extend(which);
        args.extend(["--json", "/no/such/dir/bench.json"]);
        let err = refused(
            &args,
            &["--json /no/such/dir/bench.json: cannot write there"],
        );
        assert!(
            !err.contains("xtask: building") && !err.contains("bench boot"),
            "{args:?}: checked before anything ran:\n{err}"
        );
    }
}

#[test]
fn run_passes_each_argument_whole() {
    // Two arguments would make `exit 7` (status 7); one is an unknown request (status 2).
    let out = xtask(&["run", "faults", "--", "exit 7"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("faults: unknown request \"exit 7\""),
        "{}",
        text(&out.stdout)
    );
    let out = xtask(&["run", "faults", "--", "args", "", "a \"b\" \\c"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines.contains(&r#"faults: arg 1: """#)
            && lines.contains(&r#"faults: arg 2: "a \"b\" \\c""#),
        "{stdout}"
    );
    // The QEMU line shows the encoding.
    assert!(
        text(&out.stderr).contains(r#"-append '-- args "" "a \"b\" \\c" --'"#),
        "{}",
        text(&out.stderr)
    );
    // Kernel options are not the place for app arguments.
    refused(
        &["run", "hello", "--kargs", "log=debug -- one"],
        &[
            "`--` does not belong in the kernel options",
            "cargo xtask run APP -- ARGS",
        ],
    );
    refused(&["run", "hello", "--kargs", "say \"hi"], &["never closed"]);
}
