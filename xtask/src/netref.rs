//! The Linux reference guest of `cargo xtask bench net`, `bench kv` and `bench disk`, made the way the Xen lab makes its dom0
//! (`xtask/xenlab/src/build.rs`): Debian packages only, never a mount.
//!
//! | file (in [`dir`]) | what |
//! | --- | --- |
//! | `vmlinuz`, `initrd.img` | Debian bookworm's kernel and an initramfs cut to virtio-pci, virtio-blk and ext4 |
//! | `rootfs.img` | ext4 made by `mke2fs -d`: debootstrap `minbase` + [`PACKAGES`] (nginx-light, socat, redis-server, fio, e2fsprogs) + the init (`xtask/netref/init`) + nginx's configuration (`xtask/netref/nginx.conf`) |
//! | `netref.stamp` | written last: the guest is complete (with [`FORMAT`] and [`PACKAGES`]) |
//! | `xen-initrd.img` | made on first use by `bench net --xen` ([`xen_initrd`]): the same kernel's initramfs cut to xen-blkfront, xen-netfront and ext4, for the guest as a Xen PV domain |
//!
//! The guest's init configures `eth0` from `netref.ip=` / `netref.gw=` on its kernel command line
//! (not `ip=`: Linux and its initramfs have their own meaning for that), copies the page from a
//! second disk, and starts:
//! - nginx on TCP 80 (one worker; the page at `/`),
//! - an echo server on TCP 7, a sink on TCP 9 and a source of zeros on TCP 19, all three `socat`
//!   (`PIPE`, `/dev/null`, `/dev/zero`) with 64 KiB blocks. socat rather than a program of ours:
//!   it is a Debian package (nothing to compile for the guest), a process per connection as the
//!   classic inetd services, and the host runs the very same commands for its ceiling.
//!
//! With a data disk ([`data_disk_args`]: serial [`DATA_SERIAL`], the third disk), it formats it
//! (ext4, unless `netref.data=raw`), mounts it at `/data` and starts `redis-server` 7 on TCP
//! 6379 with the append-only file there, fsynced before each reply (`--appendfsync always`, no
//! snapshots): a reply to a write means it is on disk, as with Stardust's `kvstore`. With
//! `netref.fio=N` ([`RefGuest::fio_cmdline`]), the first `N` bytes of the second disk are a fio
//! job file: the init runs it before any server, prints fio's JSON between [`FIO_BEGIN`] and
//! [`FIO_END`] and powers the guest off.
//!
//! Then it prints [`READY_LINE`] on the serial console. The QEMU line is the one a Stardust
//! guest gets (q35, TCG, the same `-m`, the same virtio-net NIC), plus what Linux alone needs:
//! `-initrd`, the root disk (`snapshot=on`: read-only, several guests may share it) and the page
//! disk.
//!
//! The directory is `$STARDUST_NETREF_DIR`, else `~/.cache/stardust-netref`. [`build`] needs root
//! (debootstrap, chroot), `debootstrap` and `mke2fs` (installed with apt-get when missing) and a
//! Debian mirror (apt's sources, or `$STARDUST_XENLAB_MIRROR` as for the lab). It takes about
//! 1 to 4 minutes (225 s here, most of it debootstrap) and about 1 GB (the root file system is
//! 760 MB of the 1 GiB `rootfs.img`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Error, Result, bail};

use crate::child::{find_in_path, is_root};
use crate::xenlab::build::run;

/// The guest's init (PID 1).
pub const INIT: &str = include_str!("../netref/init");
/// nginx's configuration, a template (`@RUN@`, `@LISTEN@`, `@ROOT@`) shared with the host's
/// ceiling ([`nginx_conf`]).
pub const NGINX_CONF: &str = include_str!("../netref/nginx.conf");
/// Where the init lives in the root file system.
pub const INIT_PATH: &str = "sbin/netref-init";
/// The Debian release.
pub const SUITE: &str = "bookworm";
/// What debootstrap adds to `minbase`.
pub const PACKAGES: &str = "linux-image-amd64,kmod,udev,iproute2,nginx-light,socat,netbase,\
                            redis-server,fio,e2fsprogs";
/// Bumped when the guest's files change in a way that needs a rebuild (a change of
/// [`PACKAGES`] alone also rebuilds from scratch: the stamp records them).
pub const FORMAT: u32 = 3;
/// The line the init prints once every server listens.
pub const READY_LINE: &str = "NETREF: READY";
/// What the init prints before fio's JSON (`netref.fio=`).
pub const FIO_BEGIN: &str = "NETREF: FIO BEGIN";
/// What the init prints after fio's JSON: `NETREF: FIO END status=0` (1: fio failed; its
/// messages follow).
pub const FIO_END: &str = "NETREF: FIO END";
/// The serial number of the data disk (`/sys/block/vdX/serial` in the guest).
pub const DATA_SERIAL: &str = "netref-data";
/// Environment variable naming the directory.
pub const DIR_ENV: &str = "STARDUST_NETREF_DIR";
/// The size of `rootfs.img` (sparse).
const ROOTFS_IMG_SIZE: &str = "1024M";
/// The root file system's size, roughly, for the first-use message.
pub const ESTIMATE: &str =
    "1 to 4 minutes and about 1 GB from scratch, seconds when only its own files changed";

/// The guest's directory.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("stardust-netref")
}

/// The files of a built guest.
#[derive(Debug, Clone)]
pub struct RefGuest {
    /// Debian's kernel.
    pub kernel: PathBuf,
    /// Its initramfs.
    pub initrd: PathBuf,
    /// The root file system (ext4).
    pub rootfs: PathBuf,
}

impl RefGuest {
    /// The guest in `dir`, if it is complete.
    pub fn find(dir: &Path) -> Option<RefGuest> {
        let stamp = std::fs::read_to_string(dir.join("netref.stamp")).ok()?;
        if !stamp.contains(&format!("format = {FORMAT}\n")) {
            return None;
        }
        let g = RefGuest {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            rootfs: dir.join("rootfs.img"),
        };
        (g.kernel.is_file() && g.initrd.is_file() && g.rootfs.is_file()).then_some(g)
    }

    /// The kernel command line: serial console, the root disk, the init, and the network and
    /// page for the init.
    pub fn cmdline(ip_cidr: &str, gateway: &str, page: usize) -> String {
        format!(
            "console=ttyS0 root=/dev/vda ro init=/{INIT_PATH} net.ifnames=0 quiet panic=-1 \
             netref.ip={ip_cidr} netref.gw={gateway} netref.page={page}"
        )
    }

    /// The kernel command line as a Xen PV guest (`bench net --xen`): the Xen console, the root
    /// on the vbd `xvda`, read-only (`netref.ro=1`: the guest writes nothing to its disk, as
    /// on QEMU where the root disk is `snapshot=on`), no page disk (the page is in the root file
    /// system: [`xen_root_image`]).
    pub fn xen_cmdline(ip_cidr: &str, gateway: &str, page: usize) -> String {
        RefGuest::cmdline(ip_cidr, gateway, page)
            .replace("console=ttyS0 root=/dev/vda", "console=hvc0 root=/dev/xvda")
            + " netref.ro=1"
    }

    /// [`RefGuest::extra_args`] for a guest that also gets the data disk ([`data_disk_args`],
    /// given after these): the root and page disks as `-device`s too, so that they come first
    /// (QEMU creates `if=virtio` drives after every `-device`: the data disk would be `vda`).
    pub fn extra_args_with_data(
        &self,
        machine: crate::qemu::Machine,
        page_disk: &Path,
    ) -> Vec<String> {
        let device = match machine {
            crate::qemu::Machine::Q35 => "virtio-blk-pci",
            crate::qemu::Machine::Microvm => "virtio-blk-device",
        };
        vec![
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-drive".into(),
            format!(
                "file={},format=raw,if=none,id=root,snapshot=on",
                self.rootfs.display()
            ),
            "-device".into(),
            format!("{device},drive=root"),
            "-drive".into(),
            format!(
                "file={},format=raw,if=none,id=page,readonly=on",
                page_disk.display()
            ),
            "-device".into(),
            format!("{device},drive=page"),
        ]
    }

    /// The kernel command line of a fio run: [`RefGuest::cmdline`] plus `netref.fio=` (the job
    /// file's length: the file is on the page disk, [`write_page_disk`]) and `netref.data=raw`
    /// when the data disk is to stay unformatted.
    pub fn fio_cmdline(ip_cidr: &str, gateway: &str, job_bytes: usize, raw: bool) -> String {
        let mut line = format!(
            "{} netref.fio={job_bytes}",
            RefGuest::cmdline(ip_cidr, gateway, 0)
        );
        if raw {
            line.push_str(" netref.data=raw");
        }
        line
    }

    /// QEMU arguments beyond the kernel's: the initramfs, the root disk (read-only through
    /// `snapshot=on`) and the page disk (raw, `page_disk`).
    pub fn extra_args(&self, page_disk: &Path) -> Vec<String> {
        vec![
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-drive".into(),
            format!(
                "file={},format=raw,if=virtio,snapshot=on",
                self.rootfs.display()
            ),
            "-drive".into(),
            format!(
                "file={},format=raw,if=virtio,readonly=on",
                page_disk.display()
            ),
        ]
    }
}

/// The data disk's QEMU arguments, the same for every guest of `bench kv` and `bench disk`
/// (Linux and Stardust): a raw image, no host page cache (`cache=none`: `O_DIRECT` on the host,
/// and a guest's flush is an `fdatasync` of the image), QEMU's thread pool for I/O, on
/// virtio-blk (PCI on q35, virtio-mmio on microvm) with the serial [`DATA_SERIAL`].
pub fn data_disk_args(machine: crate::qemu::Machine, image: &Path) -> Vec<String> {
    let drive = format!(
        "file={},format=raw,if=none,id=data,cache=none,aio=threads",
        image.display()
    );
    let device = match machine {
        crate::qemu::Machine::Q35 => {
            format!("virtio-blk-pci,drive=data,serial={DATA_SERIAL},disable-legacy=on,romfile=")
        }
        crate::qemu::Machine::Microvm => {
            format!("virtio-blk-device,drive=data,serial={DATA_SERIAL}")
        }
    };
    let mut a = vec!["-drive".into(), drive];
    if machine == crate::qemu::Machine::Microvm {
        a.extend(["-global".into(), "virtio-mmio.force-legacy=false".into()]);
    }
    a.extend(["-device".into(), device]);
    a
}

/// nginx's configuration: its run directory (pid, error log, temp paths), what it listens on
/// (`80`, `127.0.0.1:8080`) and the page's directory.
pub fn nginx_conf(run: &str, listen: &str, root: &str) -> String {
    NGINX_CONF
        .replace("@RUN@", run)
        .replace("@LISTEN@", listen)
        .replace("@ROOT@", root)
}

/// Writes the page disk: `page` padded with zeros to whole 512-byte sectors (the init copies
/// the first `netref.page=` bytes).
pub fn write_page_disk(path: &Path, page: &[u8]) -> Result<()> {
    let mut bytes = page.to_vec();
    bytes.resize(page.len().div_ceil(512).max(1) * 512, 0);
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The initramfs of the guest as a Xen PV domain, in `dir`.
pub const XEN_INITRD: &str = "xen-initrd.img";
/// Bumped when [`xen_initrd`] makes it differently (kept in `xen-initrd.format`).
const XEN_INITRD_FORMAT: &str = "3";
/// A hook of the Xen initramfs' configuration: no udev in it. The modules come from its list
/// and devtmpfs makes the device nodes, so nothing needs it; and Debian's systemd-udevd 252
/// segfaults in the PV domain as it handles the vif (seen in the lab: the initramfs then
/// waited the full 120 s of `udevadm settle` before it mounted the root).
const XEN_INITRD_HOOK: &str = "#!/bin/sh\n\
    # stardust netref (Xen): the initramfs starts no udev (xtask/src/netref.rs)\n\
    [ \"$1\" = prereqs ] && exit 0\n\
    rm -f \"$DESTDIR/scripts/init-top/udev\"\n";

/// The guest's initramfs for Xen PV ([`XEN_INITRD`]), made when missing: the kernel's own
/// modules cut to `xen_blkfront`, `xen_netfront` and `ext4`, and no udev
/// ([`XEN_INITRD_HOOK`]), by `mkinitramfs` in the root file system `rootfs/` with a
/// configuration directory of its own (`/etc/initramfs-tools-xen`, removed after; the QEMU
/// one left as it is) — the way the Xen lab cuts its dom0's (`small_kernel`). Seconds; root (chroot).
pub fn xen_initrd(dir: &Path) -> Result<PathBuf> {
    let out = dir.join(XEN_INITRD);
    let format = dir.join("xen-initrd.format");
    if out.is_file()
        && std::fs::read_to_string(&format).is_ok_and(|f| f.trim() == XEN_INITRD_FORMAT)
    {
        return Ok(out);
    }
    let rootfs = dir.join("rootfs");
    if !rootfs.join("usr").is_dir() {
        bail!(
            "{} has no root file system to make the Xen initramfs from; rebuild the guest \
             (`--build-reference`)",
            dir.display()
        );
    }
    if !is_root() {
        bail!("making the Linux reference guest's Xen initramfs needs root (chroot)");
    }
    eprintln!(
        "netref: making {} (the Linux reference guest's initramfs for Xen PV)",
        out.display()
    );
    let kver = crate::xenlab::build::newest_kernel(&rootfs)?;
    let conf = rootfs.join("etc/initramfs-tools-xen");
    let _ = std::fs::remove_dir_all(&conf);
    run(
        Command::new("cp")
            .arg("-a")
            .arg(rootfs.join("etc/initramfs-tools"))
            .arg(&conf),
        "copying initramfs-tools' configuration",
    )?;
    std::fs::write(conf.join("modules"), "xen_blkfront\nxen_netfront\next4\n")
        .context("writing the Xen initramfs' module list")?;
    std::fs::create_dir_all(conf.join("hooks")).context("creating the hooks directory")?;
    let hook = conf.join("hooks/stardust-no-udev");
    std::fs::write(&hook, XEN_INITRD_HOOK).context("writing the initramfs hook")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
            .context("chmod the initramfs hook")?;
    }
    let inside = format!("/tmp/{XEN_INITRD}-{kver}");
    let made = run(
        Command::new("chroot")
            .arg(&rootfs)
            .args([
                "mkinitramfs",
                "-d",
                "/etc/initramfs-tools-xen",
                "-o",
                &inside,
                &kver,
            ])
            .stderr(std::process::Stdio::null()),
        "mkinitramfs (Xen) in the root file system",
    );
    let tmp = dir.join(format!("{XEN_INITRD}.tmp"));
    let copied = made.and_then(|()| {
        std::fs::copy(rootfs.join(inside.trim_start_matches('/')), &tmp)
            .context("copying the Xen initramfs out")
    });
    // Nothing of it stays in `rootfs/` (a later `rootfs.img` is made from it).
    let _ = std::fs::remove_file(rootfs.join(inside.trim_start_matches('/')));
    let _ = std::fs::remove_dir_all(&conf);
    copied?;
    std::fs::rename(&tmp, &out).context("installing the Xen initramfs")?;
    std::fs::write(&format, XEN_INITRD_FORMAT).context("writing xen-initrd.format")?;
    Ok(out)
}

/// The init's path inside `rootfs.img`: `/sbin` is a symbolic link to `usr/sbin` (Debian's
/// merged `/usr`), which debugfs does not follow when it creates or removes a file.
const INIT_IN_IMAGE: &str = "usr/sbin/netref-init";

/// Writes `out`: a sparse copy of the guest's `rootfs.img` with the current init
/// ([`INIT`]) and `page` as `/srv/www/index.html`, by `debugfs -w` (no mount): the root disk of
/// the guest as a Xen PV domain, which has no page disk.
pub fn xen_root_image(g: &RefGuest, out: &Path, page: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(out);
    run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&g.rootfs)
            .arg(out),
        "copying rootfs.img",
    )?;
    let side = |ext: &str| {
        let mut s = out.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    let (init, index, cmds) = (side(".init"), side(".page"), side(".debugfs"));
    std::fs::write(&init, INIT).context("writing the init")?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).context("chmod")?;
    std::fs::write(&index, page).context("writing the page")?;
    std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o644)).context("chmod")?;
    std::fs::write(
        &cmds,
        format!(
            "rm /{INIT_IN_IMAGE}\nwrite {} /{INIT_IN_IMAGE}\nsif /{INIT_IN_IMAGE} mode 0100755\n\
             mkdir /srv/www\nrm /srv/www/index.html\nwrite {} /srv/www/index.html\n",
            init.display(),
            index.display()
        ),
    )
    .context("writing debugfs' commands")?;
    let done = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(out)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running debugfs (e2fsprogs)");
    for f in [&init, &index, &cmds] {
        let _ = std::fs::remove_file(f);
    }
    let done = done?;
    if !done.status.success() {
        bail!(
            "debugfs on {} failed: {}",
            out.display(),
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    // debugfs goes on after a failed command: read back what matters.
    for (path, size, mode) in [
        (format!("/{INIT_IN_IMAGE}"), INIT.len(), "Mode:  0755"),
        ("/srv/www/index.html".to_string(), page.len(), "Mode:  0644"),
    ] {
        let check = Command::new("debugfs")
            .args(["-R", &format!("stat {path}")])
            .arg(out)
            .stdin(std::process::Stdio::null())
            .output()
            .context("running debugfs")?;
        let text = String::from_utf8_lossy(&check.stdout);
        if !text.contains(&format!("Size: {size}\n")) || !text.contains(mode) {
            bail!(
                "{path} is not as written in {} after debugfs: {}",
                out.display(),
                String::from_utf8_lossy(&done.stderr).trim()
            );
        }
    }
    Ok(())
}

fn step(t0: Instant, what: &str) {
    eprintln!("netref build [+{:>3}s] {what}", t0.elapsed().as_secs());
}

/// Why the guest cannot be built here, or `None`.
pub fn cannot_build() -> Option<String> {
    if !is_root() {
        return Some(
            "building the Linux reference guest needs root (debootstrap, chroot)".to_string(),
        );
    }
    let missing = missing_tools();
    if !missing.is_empty() && find_in_path("apt-get").is_none() {
        return Some(format!(
            "missing host tools ({}) and no apt-get to install them",
            missing.join(", ")
        ));
    }
    None
}

fn missing_tools() -> Vec<&'static str> {
    [("debootstrap", "debootstrap"), ("mke2fs", "e2fsprogs")]
        .into_iter()
        .filter(|(tool, _)| find_in_path(tool).is_none())
        .map(|(_, package)| package)
        .collect()
}

/// Builds the guest in `dir`: from scratch when `fresh`, when there is no root file system
/// yet or when it was made with other [`PACKAGES`]; otherwise (an older [`FORMAT`]) it keeps `rootfs/`, the kernel and the initramfs and
/// redoes only the init, nginx's configuration and `rootfs.img` (seconds).
pub fn build(dir: &Path, fresh: bool) -> Result<RefGuest> {
    let t0 = Instant::now();
    if let Some(why) = cannot_build() {
        bail!("{why}");
    }
    // debootstrap and mke2fs, with the bench's other tools (one list: `cargo xtask setup`'s).
    crate::cmd::setup::ensure_host_tools()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The packages the root file system was made with (an older stamp's): other packages now
    // need debootstrap again.
    let old_stamp = std::fs::read_to_string(dir.join("netref.stamp")).unwrap_or_default();
    // The stamp goes first: a half-made guest is never taken for a complete one.
    let _ = std::fs::remove_file(dir.join("netref.stamp"));
    let rootfs = dir.join("rootfs");
    let reuse = !fresh
        && same_packages(&old_stamp)
        && rootfs.join("usr").is_dir()
        && dir.join("vmlinuz").is_file()
        && dir.join("initrd.img").is_file();
    if !reuse {
        // A new kernel: the Xen initramfs is made again on its next use.
        let _ = std::fs::remove_file(dir.join(XEN_INITRD));
        debootstrap(t0, dir, &rootfs)?;
    }
    step(
        t0,
        "init, nginx configuration; rootfs.img (mke2fs -d, no mount)",
    );
    let init = rootfs.join(INIT_PATH);
    std::fs::write(&init, INIT).with_context(|| format!("writing {}", init.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", init.display()))?;
    }
    let conf = rootfs.join("etc/nginx/netref.conf");
    std::fs::write(&conf, nginx_conf("/run/nginx", "80", "/srv/www"))
        .with_context(|| format!("writing {}", conf.display()))?;
    std::fs::write(rootfs.join("etc/hostname"), "stardust-netref\n").context("hostname")?;
    let img = dir.join("rootfs.img");
    let _ = std::fs::remove_file(&img);
    run(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-L", "stardust-netref", "-d"])
            .arg(&rootfs)
            .arg(&img)
            .arg(ROOTFS_IMG_SIZE),
        "mke2fs (rootfs.img)",
    )?;
    std::fs::write(dir.join("netref.stamp"), stamp()).context("writing netref.stamp")?;
    step(t0, &format!("done: {}", dir.display()));
    RefGuest::find(dir).ok_or_else(|| Error::msg("the build left no complete guest"))
}

/// The stamp's text: the format, the suite and the packages.
fn stamp() -> String {
    format!("stardust netref\nformat = {FORMAT}\nsuite = {SUITE}\npackages = {PACKAGES}\n")
}

/// Whether a stamp's root file system has [`PACKAGES`] (an older stamp without the line: no).
fn same_packages(old_stamp: &str) -> bool {
    old_stamp
        .lines()
        .any(|l| l.strip_prefix("packages = ") == Some(PACKAGES))
}

/// debootstrap into `rootfs` (from scratch), then the kernel and initramfs out of it.
fn debootstrap(t0: Instant, dir: &Path, rootfs: &Path) -> Result<()> {
    let mirror = crate::xenlab::build::debian_mirror()?;
    step(
        t0,
        &format!("debootstrap {SUITE} minbase + {PACKAGES} from {mirror} (about 2 minutes)"),
    );
    crate::xenlab::build::debootstrap(dir, SUITE, PACKAGES, &mirror)?;
    step(
        t0,
        "kernel and a small initramfs (virtio_pci, virtio_blk, ext4)",
    );
    kernel(dir, rootfs)
}

/// Cuts the initramfs down to virtio + ext4 and copies kernel and initramfs out.
fn kernel(dir: &Path, rootfs: &Path) -> Result<()> {
    crate::xenlab::build::small_kernel(
        dir,
        rootfs,
        &["virtio_pci", "virtio_mmio", "virtio_blk", "ext4"],
        "",
    )
}

/// The guest, built first (with a message saying how long that takes) when it is missing.
pub fn ensure() -> Result<RefGuest> {
    let d = dir();
    if let Some(g) = RefGuest::find(&d) {
        return Ok(g);
    }
    eprintln!(
        "bench: the Linux reference guest in {} is missing or out of date; building it now ({ESTIMATE}; \
         once: it is cached there, `--build-reference` rebuilds it)",
        d.display()
    );
    build(&d, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_and_qemu_arguments() {
        let line = RefGuest::cmdline("10.0.0.2/24", "10.0.0.1", 612);
        assert!(line.contains("init=/sbin/netref-init"), "{line}");
        assert!(
            line.ends_with("netref.ip=10.0.0.2/24 netref.gw=10.0.0.1 netref.page=612"),
            "{line}"
        );
        let g = RefGuest {
            kernel: "/c/vmlinuz".into(),
            initrd: "/c/initrd.img".into(),
            rootfs: "/c/rootfs.img".into(),
        };
        assert_eq!(
            g.extra_args(Path::new("/t/page.img")).join(" "),
            "-initrd /c/initrd.img -drive file=/c/rootfs.img,format=raw,if=virtio,snapshot=on \
             -drive file=/t/page.img,format=raw,if=virtio,readonly=on"
        );
    }

    #[test]
    fn the_xen_command_line_has_the_xen_console_and_root() {
        let line = RefGuest::xen_cmdline("10.0.0.2/24", "10.0.0.1", 612);
        assert!(
            line.starts_with("console=hvc0 root=/dev/xvda ro init=/sbin/netref-init "),
            "{line}"
        );
        assert!(
            !line.contains("ttyS0") && !line.contains("/dev/vda"),
            "{line}"
        );
        assert!(line.contains(" quiet "), "as on QEMU: {line}");
        assert!(
            line.ends_with("netref.ip=10.0.0.2/24 netref.gw=10.0.0.1 netref.page=612 netref.ro=1"),
            "{line}"
        );
        assert!(XEN_INITRD_HOOK.contains("rm -f \"$DESTDIR/scripts/init-top/udev\""));
        assert_eq!(INIT_IN_IMAGE, format!("usr/{INIT_PATH}"));
    }

    #[test]
    fn fio_command_line_and_data_disk() {
        let line = RefGuest::fio_cmdline("10.0.0.2/24", "10.0.0.1", 345, true);
        assert!(
            line.ends_with("netref.page=0 netref.fio=345 netref.data=raw"),
            "{line}"
        );
        let line = RefGuest::fio_cmdline("10.0.0.2/24", "10.0.0.1", 7, false);
        assert!(line.ends_with("netref.fio=7"), "{line}");
        assert_eq!(
            data_disk_args(crate::qemu::Machine::Q35, Path::new("/t/data.img")).join(" "),
            "-drive file=/t/data.img,format=raw,if=none,id=data,cache=none,aio=threads \
             -device virtio-blk-pci,drive=data,serial=netref-data,disable-legacy=on,romfile="
        );
        let g = RefGuest {
            kernel: "/c/vmlinuz".into(),
            initrd: "/c/initrd.img".into(),
            rootfs: "/c/rootfs.img".into(),
        };
        assert_eq!(
            g.extra_args_with_data(crate::qemu::Machine::Q35, Path::new("/t/p.img"))
                .join(" "),
            "-initrd /c/initrd.img -drive file=/c/rootfs.img,format=raw,if=none,id=root,snapshot=on \
             -device virtio-blk-pci,drive=root \
             -drive file=/t/p.img,format=raw,if=none,id=page,readonly=on -device virtio-blk-pci,drive=page"
        );
        let mmio = data_disk_args(crate::qemu::Machine::Microvm, Path::new("/t/d.img"));
        assert_eq!(
            mmio.last().map(String::as_str),
            Some("virtio-blk-device,drive=data,serial=netref-data")
        );
    }

    #[test]
    fn other_packages_need_debootstrap_again() {
        assert!(same_packages(&stamp()));
        assert!(!same_packages(
            "stardust netref\nformat = 2\nsuite = bookworm\n"
        ));
        assert!(!same_packages(&stamp().replace(",fio", "")));
        assert!(RefGuest::find(Path::new("/nonexistent")).is_none());
    }

    #[test]
    fn nginx_configuration_has_no_placeholder_left() {
        let c = nginx_conf("/tmp/x", "127.0.0.1:80", "/tmp/x/www");
        assert!(!c.contains('@'), "{c}");
        assert!(c.contains("listen 127.0.0.1:80;") && c.contains("root /tmp/x/www;"));
        assert!(c.contains("pid /tmp/x/nginx.pid;"));
    }

    #[test]
    fn the_page_disk_is_whole_sectors() {
        let path = std::env::temp_dir().join(format!("netref-page-{}.img", std::process::id()));
        write_page_disk(&path, &[7u8; 613]).expect("written");
        let bytes = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(bytes.len(), 1024);
        assert!(bytes[..613].iter().all(|b| *b == 7) && bytes[613..].iter().all(|b| *b == 0));
    }

    #[test]
    fn an_incomplete_guest_is_not_found() {
        let d = std::env::temp_dir().join(format!("netref-find-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        for f in ["vmlinuz", "initrd.img", "rootfs.img"] {
            std::fs::write(d.join(f), "x").expect("file");
        }
        assert!(RefGuest::find(&d).is_none(), "no stamp");
        std::fs::write(d.join("netref.stamp"), "stardust netref\nformat = 0\n").expect("stamp");
        assert!(RefGuest::find(&d).is_none(), "an old format");
        std::fs::write(d.join("netref.stamp"), format!("format = {FORMAT}\n")).expect("stamp");
        assert!(RefGuest::find(&d).is_some());
        let _ = std::fs::remove_dir_all(&d);
    }
}
