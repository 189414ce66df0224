//! `cargo xtask setup`: makes sure the toolchain pieces exist (the bare-metal Rust target, QEMU,
//! and the network bench's tools: [`BENCH_TOOLS`]),
//! installing them when it can and printing the exact command when it cannot. `build`, `run`,
//! `test`, `size` and `bench` call the parts they need first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::workspace::Workspace;
use anyhow::bail;
use anyhow::{Error, Result};

/// The bare-metal target images are built for.
pub const TARGET: &str = "x86_64-unknown-none";
pub use xenlab::child::{find_in_path, is_root, stderr_stdio};
pub use xenlab::qemu_version::QEMU;

const QEMU_HELP: &str = "Install it with (Debian/Ubuntu, as root):\n    apt-get update && apt-get install -y qemu-system-x86\n\
     (QEMU 7.2 on Debian bookworm, 10.0 on trixie: both run everything here, the Xen lab included)";

/// The host tools that the network tests and benches use: `(command, Debian package, what for)`.
/// `setup` installs the missing ones as it installs QEMU (apt-get, as root), else prints the
/// command. The one list to extend (the benches add theirs here).
pub const HOST_TOOLS: &[(&str, &str, &str)] = &[
    ("curl", "curl", "HTTP requests of the network tests"),
    ("wrk", "wrk", "the HTTP load of `bench net`"),
    (
        "nginx",
        "nginx-light",
        "`bench net`'s host ceiling (its own temporary configuration, never the system service)",
    ),
    (
        "socat",
        "socat",
        "`bench net`'s echo, sink and source servers on the host",
    ),
    (
        "ip",
        "iproute2",
        "`run --net tap` and `bench net`: network namespaces and TAP",
    ),
    (
        "debootstrap",
        "debootstrap",
        "building `bench net`'s Linux reference guest",
    ),
    (
        "mke2fs",
        "e2fsprogs",
        "the reference guest's root file system image",
    ),
    (
        "redis-cli",
        "redis-tools",
        "`kvstore`'s whole-image tests and `bench kv` (redis-cli, redis-benchmark)",
    ),
    (
        "redis-server",
        "redis-server",
        "`bench kv`'s host ceiling (its own temporary configuration, never the system service)",
    ),
    (
        "redis-benchmark",
        "redis-tools",
        "`bench kv`'s load (redis-benchmark; the package also has redis-cli)",
    ),
];

/// The tools of [`HOST_TOOLS`] not on `PATH`.
pub fn missing_host_tools() -> Vec<(&'static str, &'static str, &'static str)> {
    HOST_TOOLS
        .iter()
        .copied()
        .filter(|(cmd, _, _)| find_in_path(cmd).is_none())
        .collect()
}

/// Installs what [`HOST_TOOLS`] lists and is missing (once per process): one `apt-get install`
/// as root, else an error with the command to run.
pub fn ensure_host_tools() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| install_host_tools().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(Error::msg)
}

fn install_host_tools() -> Result<()> {
    let missing = missing_host_tools();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(_, p, _)| *p).collect();
    let command = format!(
        "apt-get update && apt-get install -y {}",
        packages.join(" ")
    );
    if !is_root() || find_in_path("apt-get").is_none() {
        let what: Vec<String> = missing
            .iter()
            .map(|(cmd, _, why)| format!("{cmd} ({why})"))
            .collect();
        bail!(
            "missing: {}. Install them with (Debian/Ubuntu, as root):\n    {command}",
            what.join(", ")
        );
    }
    eprintln!("setup: missing {}; installing", packages.join(", "));
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run_logged(&mut cmd, &format!("apt-get {}", args.join(" ")))
    };
    apt(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend(&packages);
    apt(&install)?;
    if let Some((cmd, pkg, _)) = missing_host_tools().first() {
        bail!("apt-get installed {pkg} but {cmd} is still not on PATH");
    }
    Ok(())
}

fn run_logged(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("setup: running {what}");
    let status = cmd
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .status()
        .map_err(|e| Error::msg(format!("could not run {what}: {e}")))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

fn target_installed_by_sysroot(root: &Path) -> bool {
    let Ok(out) = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(root)
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir()
}

fn install_target(ws: &Workspace) -> Result<()> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(&ws.root)
        .stderr(Stdio::inherit())
        .output();
    match listed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
            {
                return Ok(());
            }
            run_logged(
                Command::new("rustup")
                    .args(["target", "add", TARGET])
                    .current_dir(&ws.root),
                &format!("rustup target add {TARGET}"),
            )
        }
        Ok(out) => bail!("`rustup target list --installed` failed ({})", out.status),
        Err(_) if target_installed_by_sysroot(&ws.root) => Ok(()),
        Err(_) => bail!(
            "the Rust target {TARGET} is missing and rustup is not on PATH.\n\
             Install rustup (https://rustup.rs), then run: rustup target add {TARGET}"
        ),
    }
}

/// Installs the `x86_64-unknown-none` target if missing (once per process).
pub fn ensure_target(ws: &Workspace) -> Result<()> {
    // The outcome is kept as text: an error is not `Clone`.
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| install_target(ws).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(Error::msg)
}

fn install_qemu() -> Result<PathBuf> {
    if let Some(qemu) = find_in_path(QEMU) {
        return Ok(qemu);
    }
    if !is_root() || find_in_path("apt-get").is_none() {
        bail!("{QEMU} is not installed (not on PATH). {QEMU_HELP}");
    }
    eprintln!("setup: {QEMU} is missing; installing the Debian package qemu-system-x86");
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run_logged(&mut cmd, &format!("apt-get {}", args.join(" ")))
    };
    apt(&["update"])?;
    apt(&["install", "-y", "qemu-system-x86"])?;
    find_in_path(QEMU).ok_or_else(|| {
        Error::msg(format!(
            "apt-get installed qemu-system-x86 but {QEMU} is still not on PATH"
        ))
    })
}

/// Returns the QEMU binary, installing QEMU first if it is missing and we can (once per process).
pub fn ensure_qemu() -> Result<PathBuf> {
    static DONE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DONE.get_or_init(|| install_qemu().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(Error::msg)
}

/// Everything: the target, QEMU and the host tools of [`HOST_TOOLS`]. Prints what it found.
pub fn setup_all(ws: &Workspace) -> Result<()> {
    ensure_target(ws)?;
    eprintln!("setup: Rust target {TARGET}: installed");
    let qemu = ensure_qemu()?;
    let version = crate::child::output(Command::new(&qemu).arg("--version"), "QEMU")
        .map_err(|e| Error::msg(format!("{} does not run: {e}", qemu.display())))?;
    let first = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    eprintln!("setup: {}: {first}", qemu.display());
    match crate::qemu_version::QemuVersion::parse(&first).map(|v| v.support()) {
        Some(crate::qemu_version::Support::Tested) => {
            eprintln!("setup: this QEMU is tested with everything here, the Xen lab included")
        }
        Some(
            crate::qemu_version::Support::Untested(why) | crate::qemu_version::Support::NoLab(why),
        ) => eprintln!("setup: warning: {why}"),
        Some(crate::qemu_version::Support::Unusable(why)) => bail!("{why}"),
        None => eprintln!("setup: warning: {} states no version", qemu.display()),
    }
    match crate::qemu::qboot_rom() {
        Some(rom) => eprintln!(
            "setup: qboot firmware: {} (q35 boots through it)",
            rom.display()
        ),
        None => eprintln!("setup: qboot.rom not found: `run` uses the microvm machine by default"),
    }
    ensure_host_tools()?;
    for (cmd, _, why) in HOST_TOOLS {
        let path = find_in_path(cmd).map_or_else(|| "?".into(), |p| p.display().to_string());
        eprintln!("setup: {cmd}: {path} ({why})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tools_are_named_once_each() {
        for (i, (cmd, pkg, why)) in HOST_TOOLS.iter().enumerate() {
            assert!(!cmd.is_empty() && !pkg.is_empty() && !why.is_empty());
            assert!(
                !HOST_TOOLS[..i].iter().any(|(c, _, _)| c == cmd),
                "{cmd} listed twice"
            );
        }
        assert!(HOST_TOOLS.iter().any(|(cmd, _, _)| *cmd == "curl"));
    }
}
