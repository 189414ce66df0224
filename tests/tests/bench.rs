//! `cargo xtask bench` end to end: a budget set too low makes `--check` fail naming the profile
//! and the figure; every profile is measured by default; the boot and memory benches report
//! their figures (never asserted against times: TCG boots are noisy) and the Xen skip line.

use stardust_tests::workspace;
use std::path::PathBuf;
use std::process::{Command, Output};
use xtask::bench::Report;

/// The benches build into the shared target directory and write target/bench/: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn xtask(args: &[&str]) -> Output {
    xtask_env(args, &[])
}

fn xtask_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&workspace().root)
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("cargo runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("stardust-bench-{}-{name}.json", std::process::id()))
}

/// The Xen lab switched off (`xenlab::LAB_SWITCH_ENV`): no lab boot in these benches.
const NO_LAB: &[(&str, &str)] = &[("STARDUST_XENLAB", "off")];

/// Runs `bench ARGS --json FILE`, asserts success, and reads the report back.
fn bench_json(name: &str, args: &[&str]) -> (Report, String) {
    bench_json_env(name, args, NO_LAB)
}

fn bench_json_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Report, String) {
    let path = json_path(name);
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend(["--json", path.to_str().expect("UTF-8 temp path")]);
    let out = xtask_env(&all, env);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    let report = Report::from_json(&std::fs::read_to_string(&path).expect("--json wrote it"))
        .expect("a bench report");
    let _ = std::fs::remove_file(&path);
    (report, text(&out.stdout))
}

#[test]
fn check_fails_naming_the_profile_and_figure_when_a_budget_is_too_low() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let args = [
        "bench",
        "size",
        "--profile",
        "minimal",
        "--set",
        "image_bytes=1000",
    ];
    let mut checked = args.to_vec();
    checked.push("--check");
    let out = xtask(&checked);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("profile `minimal+image_bytes-1000` (hello): image_bytes is")
            && err.contains("over its budget of 1,000 bytes"),
        "{err}"
    );
    // Without --check the same figure is reported, and the command succeeds.
    let out = xtask(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(md.contains("| 1,000 |") && md.contains("**OVER**"), "{md}");
    assert!(
        md.contains("Reported only; `--check` makes these fail."),
        "{md}"
    );
}

#[test]
fn size_check_passes_for_every_profile_and_draws_the_chart() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let svg = workspace().target_dir().join("bench/size.svg");
    let _ = std::fs::remove_file(&svg);
    let (report, md) = bench_json("size", &["size", "--check"]);
    let profiles = workspace().profile_names().expect("profiles/");
    let measured: Vec<&str> = report.size.iter().map(|r| r.profile.as_str()).collect();
    assert_eq!(measured, profiles, "every profile, in name order");
    for r in &report.size {
        assert!(r.image_bytes > 0 && r.budget.is_some(), "{r:?}");
        let sum: i64 = r.crates.iter().map(|c| c.bytes).sum();
        assert_eq!(sum, r.image_bytes as i64, "the crates add up to the image");
        assert!(r.crates.iter().any(|c| c.name == "kernel"), "{r:?}");
    }
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(md.contains("### Per crate"), "{md}");
    let svg = std::fs::read_to_string(&svg).expect("size.svg written by this run");
    assert!(
        svg.starts_with("<svg") && svg.contains("minimal/hello"),
        "{svg}"
    );
}

#[test]
fn memory_finds_a_minimum_between_the_image_and_the_profile() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (report, md) = bench_json("memory", &["memory", "--profile", "minimal"]);
    let [m] = &report.memory[..] else {
        panic!("one result: {report:?}")
    };
    let min = m.min_memory.expect("boots with its own memory setting");
    // Above the image itself (it ends past 1 MiB), at most the profile's memory (16M).
    assert!(min > m.image_end && min <= 16 << 20, "{m:?}");
    assert!(m.probes.iter().any(|(at, ok)| *at == min && *ok), "{m:?}");
    assert!(md.contains("## Minimum memory"), "{md}");
    assert!(md.contains("Xen memory"), "{md}");
    assert!(md.contains("skipped: the Xen lab is switched off"), "{md}");
}

#[test]
fn boot_reports_ratios_first_lines_and_the_boot_chart() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // The chart must be this run's, not one an earlier run left behind.
    let svg = workspace().target_dir().join("bench/boot.svg");
    let _ = std::fs::remove_file(&svg);
    let (report, md) = bench_json("boot", &["boot", "--profile", "minimal", "--runs", "2"]);
    let [b] = &report.boot[..] else {
        panic!("one result: {report:?}")
    };
    for t in [&b.image, &b.empty] {
        assert_eq!(t.exit_ms.as_ref().map(|s| s.n), Some(2), "{b:?}");
        assert_eq!(t.first_line_ms.as_ref().map(|s| s.n), Some(2), "{b:?}");
    }
    // The ratios are the image's medians over the empty kernel's, not the other way up.
    let median = |s: &Option<xtask::bench::stats::Summary>| s.as_ref().expect("timed").median;
    for (ratio, image, empty) in [
        (b.ratio_exit, &b.image.exit_ms, &b.empty.exit_ms),
        (
            b.ratio_first_line,
            &b.image.first_line_ms,
            &b.empty.first_line_ms,
        ),
    ] {
        let ratio = ratio.expect("a ratio");
        let want = median(image) / median(empty);
        assert!(
            (ratio - want).abs() <= want * 1e-9,
            "ratio {ratio}, image / empty = {want}: {b:?}"
        );
    }
    let chart = b.bootchart.as_ref().expect("bootchart lines");
    let names: Vec<&str> = chart.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"entry"), "{names:?}");
    assert_eq!(names.last(), Some(&"main"), "{names:?}");
    assert!(md.contains("### Guest boot chart"), "{md}");
    assert!(
        report
            .xen
            .iter()
            .any(|n| n.bench == "boot" && n.status == "skipped"),
        "{report:?}"
    );
    assert!(md.contains("skipped: the Xen lab is switched off"), "{md}");
    assert!(std::fs::read_to_string(svg).is_ok_and(|s| s.contains("minimal/hello")));
}

/// With the Xen lab built here (`cargo xtask xen-lab build`), boot and memory also run on Xen,
/// in one lab boot; without it, the report says why not. Either way the bench succeeds: the
/// default profile is on KVM, so a failure on Xen is reported, not fatal.
#[test]
fn xen_figures_come_from_the_lab_or_say_why_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = xtask::xenlab::Lab::from_env();
    let args = [
        "boot",
        "memory",
        "--profile",
        "default",
        "--runs",
        "1",
        "--set",
        "memory=4M",
    ];
    let (report, md) = bench_json_env("xen", &args, &[]);
    match lab.availability() {
        Err(why) => {
            assert!(
                !xtask::xenlab::required(),
                "the Xen lab is required here but cannot run: {why}"
            );
            eprintln!("skipped the lab: {why}");
            assert_eq!(report.xen.len(), 2, "{report:?}");
            assert!(md.contains("skipped: "), "{md}");
        }
        Ok(()) => {
            assert!(report.xen.is_empty(), "{report:?}");
            // The profile as a PV guest and as a PVH guest, each beside its reference guest.
            let [pv, pvh] = &report.xen_boot[..] else {
                panic!("two Xen boot results (PV, PVH): {report:?}")
            };
            assert_eq!(pv.profile, "default+memory-4M+platform-xen+console-xen");
            assert_eq!(pv.machine, "xen-lab PV");
            assert!(pv.command.contains("pvhello"), "{}", pv.command);
            assert_eq!(
                pvh.profile,
                "default+memory-4M+platform-xen+xen_guest-pvh+console-xen"
            );
            assert_eq!(pvh.machine, "xen-lab PVH");
            assert!(pvh.command.contains("type = \"pvh\""), "{}", pvh.command);
            assert!(pvh.command.contains("pvhhello"), "{}", pvh.command);
            for b in [pv, pvh] {
                assert_eq!(
                    b.empty.exit_ms.as_ref().map(|s| s.n),
                    Some(1),
                    "the reference guest ran"
                );
            }
            let [m, m_pvh] = &report.xen_memory[..] else {
                panic!("two Xen memory results: {report:?}")
            };
            let tried: Vec<u64> = m.probes.iter().map(|(mb, _)| mb >> 20).collect();
            assert_eq!(tried, [2, 3, 4], "the ladder up to memory = 4M");
            assert_eq!(m_pvh.machine, "xen-lab PVH");
            assert!(
                report
                    .xen_lab
                    .as_deref()
                    .is_some_and(|l| l.contains("1 lab boot"))
            );
            assert!(md.contains("### On Xen"), "{md}");
        }
    }
}

#[test]
fn bad_bench_input_exits_non_zero_with_a_reason() {
    for (args, needle) in [
        (
            &["bench", "speed"][..],
            "possible values: size, boot, memory, all",
        ),
        (
            &["bench", "size", "--profile", "nope"][..],
            "valid profiles",
        ),
        (
            &["bench", "size", "--save-baseline", "--set", "image_bytes=1"][..],
            "drop --set",
        ),
        (&["bench", "boot", "--save-baseline"][..], "size bench"),
        (&["bench", "boot", "--runs", "0"][..], "at least 1"),
        (&["bench", "size", "--app", "nope"][..], "valid apps"),
    ] {
        let out = xtask(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
