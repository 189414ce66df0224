//! `cargo xtask xen-lab build`: makes the Xen lab from Debian packages only.
//!
//! What it makes in the lab directory ([`crate::Lab`]):
//!
//! | file | what |
//! | --- | --- |
//! | `xen.elf` | Debian's Xen 4.17 hypervisor, gunzipped (QEMU's multiboot loader needs the raw 32-bit ELF); the same Debian version as the tools in the root file system |
//! | `dom0-vmlinuz`, `dom0-initrd.img` | Debian's kernel and a small initramfs (virtio-blk, ext4) for dom0 |
//! | `rootfs.img` | ext4 made by `mke2fs -d` (never mounted): debootstrap `minbase` + [`DOM0_PACKAGES`] (`xen-utils-4.17`, the dom0 scripts' clients) + the lab's init (`xtask/xenlab/dom0-init`) |
//! | `pvhello.elf`, `pvcrash.elf`, `pvhang.elf`, `pvhhello.elf` | the reference guests, assembled from `xtask/xenlab/*.S` |
//! | `lab.stamp` | written last: the lab is complete (with `LAB_FORMAT` and [`DOM0_PACKAGES`]) |
//!
//! The work directory `rootfs/` stays (the `--reimage` step reuses it); `build` starts from
//! scratch. It needs root (debootstrap, chroot), the host tools `debootstrap`, `mke2fs`, `as`,
//! `ld`, `zcat` and `dpkg`, and a Debian mirror (taken from apt's sources, or `$STARDUST_XENLAB_MIRROR`).
//! Missing host packages are installed with apt-get.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::child::{find_in_path, is_root, stderr_stdio};
use crate::{DOM0_INIT, Lab, PV_LINK, PV_SOURCE, PVH_LINK, PVH_SOURCE, RefGuest};
use anyhow::bail;
use anyhow::{Context, Error, Result};

/// The Debian release of dom0 (Xen 4.17 is bookworm's).
pub const SUITE: &str = "bookworm";
/// Packages debootstrap adds to `minbase`: the Xen tools, a kernel, and what dom0 scripts of
/// network tests and benches use (ping, curl, nc, ab, wrk, tcpdump, redis-cli and
/// redis-benchmark). `lab.stamp` records them: a lab built with other packages is not ready
/// ([`crate::Lab::availability`]) until `xen-lab build` has made it again.
pub const DOM0_PACKAGES: &str = "xen-utils-4.17,xenstore-utils,linux-image-amd64,kmod,iproute2,\
bridge-utils,procps,udev,curl,netcat-openbsd,iputils-ping,wrk,apache2-utils,tcpdump,ethtool,netbase,\
redis-tools";
/// Where the lab's init lives inside the root file system.
pub const INIT_PATH: &str = "sbin/stardust-lab-init";
/// The size of `rootfs.img` (sparse).
const ROOTFS_IMG_SIZE: &str = "1536M";

/// What `xen-lab build` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// Everything from scratch (debootstrap; about 2 minutes and 1.4 GB).
    Full,
    /// Keep `rootfs/`: reinstall the init, remake `rootfs.img`, reassemble the reference guests.
    Reimage,
    /// Only reassemble the reference guests (needs no root).
    Guests,
}

/// Host tools the build needs: (command, Debian package).
const HOST_TOOLS: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("mke2fs", "e2fsprogs"),
    ("as", "binutils"),
    ("ld", "binutils"),
    ("zcat", "gzip"),
    ("dpkg", "dpkg"),
    ("qemu-system-x86_64", "qemu-system-x86"),
];

/// Why the lab cannot be built here, or `None` when it can (root, and apt-get for what is missing).
pub fn cannot_build() -> Option<String> {
    if !is_root() {
        return Some(
            "building the Xen lab needs root (debootstrap and chroot); run `cargo xtask xen-lab build` as root"
                .into(),
        );
    }
    let missing = missing_tools(false);
    if !missing.is_empty() && find_in_path("apt-get").is_none() {
        return Some(format!(
            "missing host tools ({}) and no apt-get to install them",
            missing.join(", ")
        ));
    }
    None
}

fn missing_tools(guests_only: bool) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for (tool, package) in HOST_TOOLS {
        if guests_only && !matches!(*tool, "as" | "ld") {
            continue;
        }
        if find_in_path(tool).is_none() && !packages.contains(package) {
            packages.push(package);
        }
    }
    packages
}

fn step(t0: Instant, what: &str) {
    eprintln!("xen-lab build [+{:>3}s] {what}", t0.elapsed().as_secs());
}

/// Runs `cmd`, its output on our stderr; fails with `what` and the status.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout (trimmed).
fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn install_host_tools(guests_only: bool) -> Result<()> {
    let missing = missing_tools(guests_only);
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || find_in_path("apt-get").is_none() {
        bail!(
            "missing host tools; install them with (Debian/Ubuntu, as root):\n    apt-get install -y {}",
            missing.join(" ")
        );
    }
    eprintln!("xen-lab build: installing {}", missing.join(" "));
    run(
        Command::new("apt-get").args(["update", "-q"]),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

/// The Debian mirror: `$STARDUST_XENLAB_MIRROR`, else the first non-security URI in apt's sources.
pub fn debian_mirror() -> Result<String> {
    if let Ok(m) = std::env::var("STARDUST_XENLAB_MIRROR")
        && !m.is_empty()
    {
        return Ok(m);
    }
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts.push(t);
            }
        }
    }
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    mirror_from_sources(&texts).ok_or_else(|| {
        Error::msg(
            "no Debian mirror found in /etc/apt/sources.list*; set STARDUST_XENLAB_MIRROR=URL",
        )
    })
}

/// The first mirror URI in apt source files (deb822 `URIs:` lines or one-line `deb URI ...`),
/// skipping security and backports archives.
pub fn mirror_from_sources(texts: &[String]) -> Option<String> {
    let usable = |u: &str| {
        (u.starts_with("http://") || u.starts_with("https://"))
            && !u.contains("security")
            && !u.contains("backports")
    };
    for text in texts {
        for line in text.lines() {
            let line = line.trim();
            let uris: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().collect()
            } else if line.starts_with("deb ") {
                line.split_whitespace()
                    .filter(|w| w.contains("://"))
                    .take(1)
                    .collect()
            } else {
                continue;
            };
            if let Some(u) = uris.into_iter().find(|u| usable(u)) {
                return Some(u.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// debootstrap `suite` (variant minbase, with `packages`, comma-separated) from `mirror` into
/// `dir/rootfs`, from scratch (an old `rootfs` is removed first), its output in
/// `dir/debootstrap.log`; a failure quotes the log's last lines. The Xen lab's dom0 and `bench
/// net`'s Linux reference guest are both made this way.
pub fn debootstrap(dir: &Path, suite: &str, packages: &str, mirror: &str) -> Result<()> {
    let rootfs = dir.join("rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)
            .with_context(|| format!("removing {}", rootfs.display()))?;
    }
    let log = dir.join("debootstrap.log");
    let logfile =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let status = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={packages}"))
        .args([suite, "rootfs", mirror])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(logfile.try_clone().context("log file")?)
        .stderr(logfile)
        .status()
        .context("could not start debootstrap")?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "debootstrap failed ({status}); the end of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// Builds (or rebuilds part of) the lab in `lab.dir`.
pub fn build(lab: &Lab, mode: BuildMode) -> Result<()> {
    let t0 = Instant::now();
    if mode != BuildMode::Guests
        && let Some(why) = cannot_build()
    {
        bail!("{why}");
    }
    install_host_tools(mode == BuildMode::Guests)?;
    std::fs::create_dir_all(&lab.dir).with_context(|| format!("creating {}", lab.dir.display()))?;
    let dir = &lab.dir;
    let rootfs = dir.join("rootfs");
    if mode != BuildMode::Guests {
        // `--reimage` keeps `rootfs/`: its packages must be the ones the stamp will record.
        let old = std::fs::read_to_string(lab.stamp()).unwrap_or_default();
        if mode == BuildMode::Reimage && !crate::same_packages(&old) {
            bail!(
                "the lab in {} was made with other dom0 packages than {DOM0_PACKAGES}; \
                 `--reimage` cannot add them: run `cargo xtask xen-lab build`",
                dir.display()
            );
        }
        // The stamp goes first: a half-made lab is never taken for a complete one.
        let _ = std::fs::remove_file(lab.stamp());
    }
    if mode == BuildMode::Full {
        let mirror = debian_mirror()?;
        step(
            t0,
            &format!("debootstrap {SUITE} minbase + the Xen tools from {mirror} (about 2 minutes)"),
        );
        debootstrap(dir, SUITE, DOM0_PACKAGES, &mirror)?;
        hypervisor(t0, dir, &rootfs)?;
        dom0_kernel(t0, dir, &rootfs)?;
    } else if mode == BuildMode::Reimage && !rootfs.join("usr").is_dir() {
        bail!(
            "{} has no root file system to reimage; run `cargo xtask xen-lab build` first",
            dir.display()
        );
    }
    if mode != BuildMode::Guests {
        step(
            t0,
            "install the lab's init, make rootfs.img (mke2fs -d, no mount)",
        );
        let init = rootfs.join(INIT_PATH);
        std::fs::write(&init, DOM0_INIT).with_context(|| format!("writing {}", init.display()))?;
        set_mode(&init, 0o755)?;
        let img = dir.join("rootfs.img");
        let _ = std::fs::remove_file(&img);
        run(
            Command::new("mke2fs")
                .args(["-q", "-t", "ext4", "-L", "stardust-lab", "-d"])
                .arg(&rootfs)
                .arg(&img)
                .arg(ROOTFS_IMG_SIZE),
            "mke2fs (rootfs.img)",
        )?;
    }
    step(t0, "assemble the reference guests");
    build_reference_guests(dir)?;
    if mode != BuildMode::Guests {
        let xen_version = std::fs::read_to_string(dir.join("xen.version")).unwrap_or_default();
        std::fs::write(lab.stamp(), crate::stamp_text(xen_version.trim()))
            .context("writing lab.stamp")?;
        let du =
            output(Command::new("du").args(["-sh"]).arg(dir), "du (lab size)").unwrap_or_default();
        step(
            t0,
            &format!(
                "done: {} in {}",
                du.split_whitespace().next().unwrap_or("?"),
                dir.display()
            ),
        );
    } else {
        step(t0, "done");
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Downloads the hypervisor package matching the tools in the root file system; writes `xen.elf`.
fn hypervisor(t0: Instant, dir: &Path, rootfs: &Path) -> Result<()> {
    let version = output(
        Command::new("chroot").arg(rootfs).args([
            "dpkg-query",
            "-W",
            "-f",
            "${Version}",
            "xen-utils-4.17",
        ]),
        "dpkg-query xen-utils-4.17 in the root file system",
    )?;
    step(t0, &format!("download xen-hypervisor-4.17-amd64={version}"));
    let debs = dir.join("debs");
    let _ = std::fs::remove_dir_all(&debs);
    std::fs::create_dir_all(&debs).context("creating debs/")?;
    run(
        Command::new("apt-get")
            .args(["download", &format!("xen-hypervisor-4.17-amd64={version}")])
            .current_dir(&debs),
        "apt-get download xen-hypervisor-4.17-amd64 (is the Debian archive in apt's sources?)",
    )?;
    let deb = std::fs::read_dir(&debs)
        .context("reading debs/")?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| Error::msg("apt-get download left no .deb"))?;
    let x = debs.join("x");
    run(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&x),
        "dpkg -x (hypervisor)",
    )?;
    let gz = x.join("boot/xen-4.17-amd64.gz");
    let raw = Command::new("zcat")
        .arg(&gz)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("zcat {}", gz.display()))?;
    if !raw.status.success() || raw.stdout.len() < 4096 {
        bail!("zcat {} failed", gz.display());
    }
    std::fs::write(dir.join("xen.elf"), &raw.stdout).context("writing xen.elf")?;
    std::fs::write(dir.join("xen.version"), &version).context("writing xen.version")?;
    let _ = std::fs::remove_dir_all(&debs);
    Ok(())
}

/// Cuts dom0's initramfs down to virtio-blk + ext4 and copies kernel and initramfs out.
fn dom0_kernel(t0: Instant, dir: &Path, rootfs: &Path) -> Result<()> {
    step(t0, "dom0 kernel and a small initramfs (virtio_blk, ext4)");
    std::fs::write(rootfs.join("etc/hostname"), "stardust-dom0\n").context("hostname")?;
    small_kernel(dir, rootfs, &["virtio_pci", "virtio_blk", "ext4"], "dom0-")
}

/// The version of the newest kernel in the debootstrapped `rootfs` (its `lib/modules` tree).
pub fn newest_kernel(rootfs: &Path) -> Result<String> {
    let tree = rootfs.join("lib/modules");
    let mut versions: Vec<String> = std::fs::read_dir(&tree)
        .with_context(|| format!("reading {}", tree.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| Error::msg("the root file system has no kernel modules"))
}

/// The newest kernel of the debootstrapped `rootfs`, with an initramfs cut down to `modules`
/// (`MODULES=list`, the modules added to the list) and built in the root file system, copied
/// out as `dir/{prefix}vmlinuz` and `dir/{prefix}initrd.img`; the downloaded packages are
/// removed from the root file system. The Xen lab's dom0 and `bench net`'s Linux reference
/// guest are both made this way.
pub fn small_kernel(dir: &Path, rootfs: &Path, modules: &[&str], prefix: &str) -> Result<()> {
    let kver = newest_kernel(rootfs)?;
    let conf = rootfs.join("etc/initramfs-tools/initramfs.conf");
    let text =
        std::fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("MODULES=") {
                "MODULES=list"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&conf, text).context("writing initramfs.conf")?;
    let list = rootfs.join("etc/initramfs-tools/modules");
    let mut mods = std::fs::read_to_string(&list).unwrap_or_default();
    for m in modules {
        if !mods.lines().any(|l| l.trim() == *m) {
            mods.push_str(m);
            mods.push('\n');
        }
    }
    std::fs::write(&list, mods).context("writing initramfs modules")?;
    run(
        Command::new("chroot")
            .arg(rootfs)
            .args(["update-initramfs", "-u", "-k", &kver])
            .stderr(Stdio::null()),
        "update-initramfs in the root file system",
    )?;
    let archives = rootfs.join("var/cache/apt/archives");
    if let Ok(entries) = std::fs::read_dir(&archives) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for (file, what) in [("vmlinuz", "kernel"), ("initrd.img", "initramfs")] {
        std::fs::copy(
            rootfs.join(format!("boot/{file}-{kver}")),
            dir.join(format!("{prefix}{file}")),
        )
        .with_context(|| format!("copying the {what}"))?;
    }
    Ok(())
}

/// Assembles the reference guests into `dir` (GNU as + ld).
pub fn build_reference_guests(dir: &Path) -> Result<()> {
    let work = dir.join("guests-src");
    std::fs::create_dir_all(&work).context("creating guests-src/")?;
    std::fs::write(work.join("pvhello.S"), PV_SOURCE).context("writing pvhello.S")?;
    std::fs::write(work.join("pv.ld"), PV_LINK).context("writing pv.ld")?;
    std::fs::write(work.join("pvhhello.S"), PVH_SOURCE).context("writing pvhhello.S")?;
    std::fs::write(work.join("pvh.ld"), PVH_LINK).context("writing pvh.ld")?;
    for guest in RefGuest::ALL {
        let (arch, defsyms, source, ld_emul, script): (&str, &[&str], &str, &str, &str) =
            match guest {
                RefGuest::PvHello => ("--64", &[], "pvhello.S", "elf_x86_64", "pv.ld"),
                RefGuest::PvCrash => ("--64", &["REASON=3"], "pvhello.S", "elf_x86_64", "pv.ld"),
                RefGuest::PvHang => ("--64", &["HANG=1"], "pvhello.S", "elf_x86_64", "pv.ld"),
                RefGuest::PvhHello => ("--32", &[], "pvhhello.S", "elf_i386", "pvh.ld"),
            };
        let obj = work.join(format!("{}.o", guest.name()));
        let mut asm = Command::new("as");
        asm.arg(arch);
        for d in defsyms {
            asm.args(["--defsym", d]);
        }
        asm.arg("-o").arg(&obj).arg(work.join(source));
        run(&mut asm, &format!("as {source} ({})", guest.name()))?;
        run(
            Command::new("ld")
                .args(["-m", ld_emul, "-n", "--no-warn-rwx-segments", "-T"])
                .arg(work.join(script))
                .arg("-o")
                .arg(dir.join(guest.file_name()))
                .arg(&obj),
            &format!("ld {}", guest.file_name()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian/\nSuites: bookworm bookworm-updates\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_from_sources(&[deb822.to_string()]).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one = "# comment\ndeb http://security.debian.org/ bookworm-security main\n\
                   deb [arch=amd64] http://ftp.example.org/debian bookworm main\n";
        assert_eq!(
            mirror_from_sources(&[one.to_string()]).as_deref(),
            Some("http://ftp.example.org/debian")
        );
        assert_eq!(mirror_from_sources(&["".to_string()]), None);
    }
}
