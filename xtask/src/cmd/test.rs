//! `cargo xtask test`: host unit tests of every host-testable package, then the whole-image
//! tests (`cargo test -p stardust-tests`), with a summary.
//!
//! Host-testable packages are `xtask`, the host tools inside `xtask/` (every package in a
//! subdirectory of it: the Xen lab, `xtask/xenlab`), plus every package under `crates/` (and
//! `platform-*/`, and the crates inside a `platform-*/` directory) whose `src/lib.rs` says
//! `#![cfg_attr(not(test), no_std)]`: discovered, not listed here.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cmd::setup;
use crate::workspace::Workspace;
use anyhow::bail;
use anyhow::{Context, Result};

/// The package of whole-image tests.
pub const IMAGE_TESTS: &str = "stardust-tests";

fn package_name(dir: &Path) -> Option<String> {
    #[derive(Deserialize)]
    struct Manifest {
        package: Option<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
    }
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    toml::from_str::<Manifest>(&text)
        .ok()?
        .package
        .map(|p| p.name)
}

/// True when `lib.rs` source opts into host tests with `cfg_attr(not(test), no_std)`.
pub fn is_host_testable(lib_rs: &str) -> bool {
    let compact: String = lib_rs.chars().filter(|c| !c.is_whitespace()).collect();
    compact.contains("cfg_attr(not(test),no_std)")
}

/// The packages whose unit tests run on the host: `xtask` first, then its host tools (the
/// packages in `xtask/`'s subdirectories), then the discovered kernel-side ones, each sorted.
pub fn host_test_packages(ws: &Workspace) -> Result<Vec<String>> {
    let mut tools: Vec<String> = std::fs::read_dir(ws.root.join("xtask"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| package_name(&e.path()))
                .collect()
        })
        .unwrap_or_default();
    tools.sort();
    let mut dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(ws.root.join("crates")) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    if let Ok(entries) = std::fs::read_dir(&ws.root) {
        let platforms: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("platform-"))
            })
            .collect();
        // and the crates inside a platform directory (platform-xen/xen-sys, ...)
        for p in &platforms {
            if let Ok(inner) = std::fs::read_dir(p) {
                dirs.extend(inner.flatten().map(|e| e.path()).filter(|d| d.is_dir()));
            }
        }
        dirs.extend(platforms);
    }
    let mut found: Vec<String> = dirs
        .iter()
        .filter(|d| {
            std::fs::read_to_string(d.join("src/lib.rs")).is_ok_and(|s| is_host_testable(&s))
        })
        .filter_map(|d| package_name(d))
        .collect();
    found.sort();
    found.dedup();
    let mut packages = vec!["xtask".to_string()];
    packages.extend(tools.iter().cloned());
    packages.extend(
        found
            .into_iter()
            .filter(|p| p != "xtask" && p != IMAGE_TESTS && !tools.contains(p)),
    );
    Ok(packages)
}

pub use xenlab::skip::{SKIP_PREFIX, parse_skip_line, report_skip, skip_line};

/// Test counts, summed over `test result:` lines and [`skip_line`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tests that passed (libtest's figure, which includes the tests skipped at run time).
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests ignored (`#[ignore]`).
    pub ignored: u64,
    /// Tests that reported a skip at run time ([`report_skip`]); libtest counted them passed.
    pub skipped: u64,
}

impl Counts {
    /// `tests: N passed, N failed, N skipped`: skipped = ignored + skipped at run time, which
    /// are not passed.
    pub fn closing_line(&self) -> String {
        format!(
            "tests: {} passed, {} failed, {} skipped",
            self.passed.saturating_sub(self.skipped),
            self.failed,
            self.ignored + self.skipped
        )
    }

    /// Adds the counts of a libtest closing line (`test result: ok. 3 passed; 0 failed; 1
    /// ignored; ...`) or of a [`skip_line`]; other lines change nothing.
    pub fn add_line(&mut self, line: &str) {
        if parse_skip_line(line).is_some() {
            self.skipped += 1;
            return;
        }
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next())
                && let Ok(n) = n.parse::<u64>()
            {
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        }
    }
}

fn cargo_test(ws: &Workspace, package: &str, counts: &mut Counts) -> Result<bool> {
    use std::io::{BufRead, BufReader, Write};
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("\nxtask test: cargo test -p {package}");
    let mut cmd = Command::new(&cargo);
    cmd.args(["test", "-p", package])
        .current_dir(&ws.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    // Like QEMU: its process group (cargo and the test binaries, whose QEMUs die with them) is
    // killed when a signal stops xtask.
    let mut child =
        crate::child::spawn(&mut cmd, "cargo test").context("could not run cargo test")?;
    let Some(stdout) = child.take_stdout() else {
        bail!("cargo test's stdout was not captured");
    };
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        counts.add_line(&line);
        let _ = writeln!(out, "{line}");
    }
    let status = child.wait().context("waiting for cargo test")?.status;
    Ok(status.success())
}

/// Runs all tests and prints a summary. Fails if any step failed.
pub fn run_all(ws: &Workspace) -> Result<()> {
    setup::ensure_target(ws)?;
    setup::ensure_qemu()?;
    // The clients the whole-image tests drive (curl, redis-cli, redis-benchmark, ...): installed
    // here, or a clear error naming them, so that no check quietly skips for want of one.
    setup::ensure_host_tools()?;
    let packages = host_test_packages(ws)?;
    eprintln!(
        "xtask test: host unit tests of {}; then whole-image tests ({IMAGE_TESTS})",
        packages.join(", ")
    );
    let mut results: Vec<(String, bool, Duration)> = Vec::new();
    let mut counts = Counts::default();
    for package in packages.iter().map(String::as_str).chain([IMAGE_TESTS]) {
        let start = Instant::now();
        let ok = cargo_test(ws, package, &mut counts)?;
        let label = if package == IMAGE_TESTS {
            format!("whole-image tests ({package})")
        } else {
            format!("host unit tests ({package})")
        };
        results.push((label, ok, start.elapsed()));
    }
    println!("\nxtask test summary:");
    for (label, ok, time) in &results {
        println!(
            "  {:<4}  {label}  ({:.1} s)",
            if *ok { "ok" } else { "FAIL" },
            time.as_secs_f64()
        );
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.1)
        .map(|r| r.0.as_str())
        .collect();
    // The plain closing line CI reads, last: "tests: N passed, N failed, N skipped".
    let closing = counts.closing_line();
    if !failed.is_empty() {
        println!("{closing}");
        bail!(
            "{} of {} test steps failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
    }
    eprintln!("all {} test steps passed", results.len());
    println!("{closing}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_sum_libtest_closing_lines() {
        let mut c = super::Counts::default();
        c.add_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        c.add_line(
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        c.add_line("running 5 tests");
        c.add_line("test foo ... ok");
        assert_eq!(
            c,
            super::Counts {
                passed: 15,
                failed: 2,
                ignored: 1,
                skipped: 0
            }
        );
        assert_eq!(c.closing_line(), "tests: 15 passed, 2 failed, 1 skipped");
    }

    #[test]
    fn run_time_skips_count_as_skipped_not_passed() {
        let mut c = super::Counts::default();
        let line = super::skip_line("hello_on_xen", "the Xen lab is not built\n(build it)");
        assert_eq!(
            line,
            "skipped: hello_on_xen: the Xen lab is not built (build it)"
        );
        c.add_line(&line);
        // libtest printed `test NAME ... ` first (one test thread): still found
        c.add_line("test xen::panic ... skipped: xen::panic: the Xen lab is switched off");
        // not skip lines: prose, and a console line without a test name
        c.add_line("note: skipped: 3 files");
        c.add_line("xtask: bench: skipped: no Xen platform yet");
        c.add_line("test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
        assert_eq!(c.skipped, 2);
        assert_eq!(c.closing_line(), "tests: 3 passed, 0 failed, 3 skipped");
        assert_eq!(
            super::parse_skip_line("skipped: xen::hello: why: because"),
            Some("xen::hello")
        );
    }

    use super::*;

    #[test]
    fn the_xen_lab_crate_is_tested_on_the_host_after_xtask() {
        let ws = Workspace::locate();
        let packages = host_test_packages(&ws).expect("packages");
        assert_eq!(packages[..2], ["xtask", "xenlab"], "{packages:?}");
        assert!(packages.iter().any(|p| p == "heap"), "{packages:?}");
        assert!(!packages.iter().any(|p| p == IMAGE_TESTS), "{packages:?}");
    }

    #[test]
    fn host_testable_marker() {
        assert!(is_host_testable("//! x\n#![cfg_attr(not(test), no_std)]\n"));
        assert!(is_host_testable("#![cfg_attr( not( test ),no_std )]"));
        assert!(!is_host_testable("#![no_std]\n"));
    }
}
