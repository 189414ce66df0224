//! `cargo xtask run`: builds an image (or takes `--image`) and boots it: in QEMU, or on platform
//! xen in the Xen lab ([`xen`]); exits with the guest's exit status.

pub mod xen;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Error, Result, bail};
use clap::Args;

use super::{ProfileArgs, QemuArgs};
use crate::cmd::setup;
use crate::qemu::{self, Outcome, QemuConfig};
use crate::workspace::{Workspace, display_path};
use crate::{bench, image, net, xenlab};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// App: a directory under apps/ (not needed with --image).
    #[arg(required_unless_present = "image")]
    pub app: Option<String>,
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub qemu: QemuArgs,
    /// Kernel options, e.g. "log=debug bootchart".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub kargs: String,
    /// Forward 127.0.0.1:HOSTPORT to the guest's GUESTPORT over QEMU user networking
    /// (repeatable; TCP by default, `udp:H:G` for UDP), e.g. `--forward 8080:80`. Gives the
    /// guest a virtio-net NIC, so the profile needs a NIC driver (`--profile net` or
    /// `--set net_device=virtio`); such a profile gets the NIC even without --forward or --nic.
    /// On Xen: implies --vif, and forwards to the guest at 10.0.0.2 on the lab's bridge (the
    /// lab's QEMU joins the bridge through user networking).
    #[arg(long, value_name = "[tcp:|udp:]HOSTPORT:GUESTPORT")]
    pub forward: Vec<String>,
    /// Xen only: give the guest a vif on the lab's bridge xenbr0 (dom0 10.0.0.1/24, the vif's
    /// MAC 00:16:3e:00:00:02; the guest takes 10.0.0.2/24 itself, e.g. by its profile's
    /// net_ip or `--kargs "ip=10.0.0.2/24 gw=10.0.0.1"`).
    #[arg(long)]
    pub vif: bool,
    /// A virtio-net NIC on QEMU user networking without forwarded ports (guest 10.0.2.15,
    /// gateway 10.0.2.2); implied by --forward and by a profile with a NIC driver.
    #[arg(long)]
    pub nic: bool,
    /// The NIC's MAC address (default 52:54:00:12:34:56).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// Start halted with QEMU's GDB server on 127.0.0.1 (port --gdb-port, else a free one) and
    /// print the gdb command.
    #[arg(long)]
    pub gdb: bool,
    /// The GDB server's TCP port (with --gdb; default: a free port, printed).
    #[arg(long, value_name = "PORT", requires = "gdb",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub gdb_port: Option<u16>,
    /// Boot this image instead of building one (the profile still gives memory and console).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// `--net tap`: a virtio-net NIC on a TAP device in a network namespace that xtask creates
    /// and removes (host 10.0.0.1, guest 10.0.0.2 by `ip=10.0.0.2/24 gw=10.0.0.1`; root only).
    #[arg(long, value_enum, value_name = "KIND")]
    pub net: Option<NetArg>,
    /// Attach FILE, a raw disk image, as the guest's virtio-blk disk (virtio-blk-pci on q35,
    /// virtio-blk-device on microvm; QEMU's default cache=writeback, a guest flush is an fsync).
    /// The profile needs a disk driver (`--profile storage` or `--set block_device=virtio`).
    /// On Xen: the guest's vbd xvda through dom0's blkback; the lab works on a copy, which is
    /// copied back over FILE after the run, so the guest's writes persist in FILE as on QEMU.
    #[arg(long, value_name = "FILE")]
    pub disk: Option<PathBuf>,
    /// Attach the --disk read-only (`readonly=on`).
    #[arg(long, requires = "disk")]
    pub disk_read_only: bool,
    /// Record every write and flush the guest makes to the --disk in LOG (made new), through
    /// QEMU's `blklogwrites` driver, in dm-log-writes' format ([`crate::disklog`] replays it).
    #[arg(
        long,
        value_name = "LOG",
        requires = "disk",
        conflicts_with = "disk_read_only"
    )]
    pub disk_log: Option<PathBuf>,
    /// Arguments for the app (after `--`).
    #[arg(last = true, value_name = "APP-ARGS")]
    pub app_args: Vec<String>,
}

/// `--net`'s values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetArg {
    /// A TAP device in a network namespace ([`crate::netns`]).
    Tap,
}

pub fn run(ws: &Workspace, args: RunArgs) -> Result<ExitCode> {
    // Bounds first, before anything is built.
    args.qemu.timeout(None)?;
    let name = args.profile.name(ws, args.app.as_deref())?;
    let profile = ws.load_profile(&name, &args.profile.overrides())?;
    if let Some(app) = &args.app {
        ws.check_app(app)?;
        ws.check_app_fits(app, &profile)?;
    }
    crate::cmdline::check_kargs(&args.kargs)?;
    if args.vif && profile.platform != "xen" {
        bail!(
            "--vif is for platform xen (a vif on the Xen lab's bridge); on QEMU the guest gets a \
             NIC with --nic, --forward or --net tap"
        );
    }
    let nic = check_nic_args(&args, &profile)?;
    let disk = check_disk_args(&args, &profile)?;
    // A prebuilt image: checked first (a missing file, not an ELF, no entry this platform
    // boots), and on Xen its own notes say PV or PVH.
    let prebuilt = match &args.image {
        Some(file) => Some(check_image(file, &profile)?),
        None => None,
    };
    let qemu_bin = setup::ensure_qemu()?;
    if profile.platform == "xen" {
        check_xen_run_args(&args)?;
        // Before building: say at once when the lab cannot run here, and how to build it.
        if let Some(why) = xen::unavailable_message(&xenlab::Lab::from_env()) {
            eprintln!("error: {why}");
            return Ok(ExitCode::from(xen::LAB_EXIT));
        }
    }
    let (elf, debug) = match (&args.image, &args.app) {
        (Some(file), _) => {
            let debug = file.with_extension("debug");
            (
                file.clone(),
                if debug.is_file() { debug } else { file.clone() },
            )
        }
        (None, Some(app)) => {
            let image = image::build(ws, app, &profile)?;
            (image.elf, image.debug)
        }
        (None, None) => bail!("name an app (a directory under apps/) or --image FILE"),
    };
    // Below the image's own end QEMU cannot even load it and the guest hangs silently.
    let end = bench::image_end(&elf)?;
    // A prebuilt image was not checked by the build.
    crate::image::check_image_end(end, &profile)?;
    if profile.settings.memory <= end {
        let needed = crate::profile::size_text(crate::profile::memory_for_image_end(end));
        bail!(
            "memory = {} is too small: the image alone ends at {:#x} ({} KiB); raise it to at \
             least {needed} (the image's end rounded up to a MiB, plus a MiB for page tables \
             and the heap): --set memory={needed}",
            crate::profile::size_text(profile.settings.memory),
            end,
            end.div_ceil(1024)
        );
    }
    if profile.platform == "xen" {
        return run_xen(&args, &profile, elf, prebuilt.flatten());
    }
    let mut cfg = QemuConfig::new(qemu_bin, elf, &profile);
    args.qemu.apply(&mut cfg)?;
    cfg.kargs = args.kargs.clone();
    cfg.app_args = args.app_args.clone();
    cfg.disk = disk;
    // Kept to the end of `run`: dropping it removes the namespace.
    let _netns = match args.net {
        Some(NetArg::Tap) => {
            let ns = crate::netns::NetNs::create()?;
            cfg.tap = Some(ns.nic());
            cfg.kargs = format!("{} {}", crate::netns::guest_kargs(), cfg.kargs)
                .trim()
                .to_string();
            eprintln!(
                "xtask: guest {} on a TAP device in network namespace {} (host side {}); \
                 reach it from another shell with e.g.\n    ip netns exec {} curl http://{}/",
                crate::netns::GUEST_IP,
                ns.name(),
                crate::netns::HOST_CIDR,
                ns.name(),
                crate::netns::GUEST_IP
            );
            Some(ns)
        }
        None => None,
    };
    cfg.gdb = match (args.gdb, args.gdb_port) {
        (false, _) => None,
        (true, Some(port)) => Some(port),
        (true, None) => Some(qemu::free_port()?),
    };
    // A TAP NIC (`--net tap`) replaces the user-networking one, which then is not described.
    let user_nic = cfg.tap.is_none();
    if let (Some(nic), Some((forwards, mac)), true) = (&mut cfg.nic, nic, user_nic) {
        nic.forwards = forwards;
        nic.mac = mac;
        nic.guest_ip = net::guest_ip(&profile, &cfg.kargs);
        if let Some(note) = net::user_net_note(nic.guest_ip) {
            eprintln!("xtask: note: {note}");
        }
        net::check_host_ports(&nic.forwards)?;
        eprintln!("xtask: {}", net::describe(nic));
    }
    let append = cfg.append();
    if append.len() > qemu::CMDLINE_LIMIT {
        eprintln!(
            "xtask: note: the kernel command line is {} bytes, over the kernel's {}-byte limit",
            append.len(),
            qemu::CMDLINE_LIMIT
        );
    }
    let timeout = args.qemu.timeout(if args.gdb {
        None
    } else {
        Some(qemu::DEFAULT_TIMEOUT)
    })?;
    eprintln!("xtask: {}", cfg.shell_line());
    if let Some(port) = cfg.gdb {
        eprintln!(
            "xtask: QEMU waits for gdb on 127.0.0.1:{port}; attach with:\n    {}",
            qemu::gdb_command(&debug, port)
        );
    }
    let boot = qemu::boot(&cfg, false, timeout)?;
    match &boot.outcome {
        Outcome::Guest(_) => eprintln!("xtask: {}", boot.outcome.message()),
        other => eprintln!("error: {}", other.message()),
    }
    Ok(ExitCode::from(boot.outcome.exit_code()))
}

/// Checks a prebuilt image for `run --image` on the profile's platform: it is a readable file
/// (not a directory, a device or empty), an ELF, not built for the other platform, and with an
/// entry that platform boots (QEMU: the PVH note; Xen: the PVH or the PV note). Returns the Xen
/// guest type it boots as (`None` off Xen).
pub fn check_image(
    file: &std::path::Path,
    profile: &crate::profile::Profile,
) -> Result<Option<xenlab::GuestType>> {
    let on = |e: Error| Error::msg(format!("--image {}: {e:#}", file.display()));
    let bytes = crate::image::read_image_file(file).map_err(on)?;
    let platform = if profile.platform == "xen" {
        "xen"
    } else {
        "kvm"
    };
    crate::image::check_prebuilt(&bytes, platform).map_err(on)
}

/// `--forward`, `--nic` and `--mac` checked against the profile: the forwards and the MAC of the
/// NIC that a profile with a NIC driver gets (`None` without a driver, and then none may be
/// given).
pub fn check_nic_args(
    args: &RunArgs,
    profile: &crate::profile::Profile,
) -> Result<Option<(Vec<net::Forward>, String)>> {
    let forwards = net::parse_forwards(&args.forward)?;
    let mac = match &args.mac {
        Some(mac) => net::parse_mac(mac)?,
        None => net::GUEST_MAC.to_string(),
    };
    let asked = [
        ("--forward", !forwards.is_empty()),
        ("--nic", args.nic),
        ("--mac", args.mac.is_some()),
    ];
    if let Some((flag, _)) = asked.iter().find(|(_, given)| *given)
        && profile.platform != "xen"
    {
        net::check_driver(profile, flag)?;
    }
    Ok(net::has_driver(profile).then_some((forwards, mac)))
}

/// `--disk` checked: the file is there, and the profile has a disk driver (on platform xen, the
/// QEMU-only `--disk-read-only` and `--disk-log` are refused).
pub fn check_disk_args(
    args: &RunArgs,
    profile: &crate::profile::Profile,
) -> Result<Option<qemu::Disk>> {
    let Some(file) = &args.disk else {
        return Ok(None);
    };
    check_disk_driver(profile)?;
    if profile.platform == "xen" {
        let qemu_only = [
            ("--disk-read-only", args.disk_read_only),
            ("--disk-log", args.disk_log.is_some()),
        ];
        if let Some((flag, _)) = qemu_only.iter().find(|(_, given)| *given) {
            bail!(
                "{flag} is for QEMU on the KVM platform; on Xen the disk is the guest's vbd \
                 through dom0's blkback"
            );
        }
    }
    let disk = qemu::Disk {
        file: file.clone(),
        read_only: args.disk_read_only,
        log: args.disk_log.clone(),
    };
    disk.check()?;
    Ok(Some(disk))
}

/// Refuses a disk for a profile whose image has no disk driver.
pub fn check_disk_driver(profile: &crate::profile::Profile) -> Result<()> {
    let driver = profile.slot("block_device").unwrap_or("none");
    if driver == "none" && profile.platform == "xen" {
        bail!(
            "--disk gives the guest a disk, but profile `{}` has no disk driver (block_device = \
             \"none\"): on platform xen the disk is a vbd, which needs the Xen block driver \
             (blkfront: a block_device value platform xen offers)",
            profile.name
        );
    }
    if driver == "none" {
        bail!(
            "--disk gives the guest a disk, but profile `{}` has no disk driver (block_device = \
             \"{driver}\"): use --profile storage or --set block_device=virtio",
            profile.name
        );
    }
    Ok(())
}

/// The options that only mean something to QEMU on the KVM platform.
pub fn check_xen_run_args(args: &RunArgs) -> Result<()> {
    let qemu_only = [
        ("--nic", args.nic),
        ("--mac", args.mac.is_some()),
        ("--gdb", args.gdb),
        ("--accel", args.qemu.accel.is_some()),
        ("--machine", args.qemu.machine.is_some()),
        ("--net", args.net.is_some()),
    ];
    if let Some((flag, _)) = qemu_only.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} is for QEMU on the KVM platform; on Xen the lab boots Xen + dom0 in QEMU \
             (TCG) and runs the image with `xl create`"
        );
    }
    Ok(())
}

/// `run` on platform xen: the image as the only guest of one lab boot (see [`xen`]).
pub fn run_xen(
    args: &RunArgs,
    profile: &crate::profile::Profile,
    elf: PathBuf,
    guest_type: Option<xenlab::GuestType>,
) -> Result<ExitCode> {
    let timeout = args.qemu.timeout(Some(xenlab::DEFAULT_GUEST_TIMEOUT))?;
    let timeout = timeout.unwrap_or(xenlab::DEFAULT_GUEST_TIMEOUT);
    let name = elf
        .file_name()
        .map_or_else(|| "guest".into(), |n| n.to_string_lossy().into_owned());
    let mut spec = xen::guest_spec(
        &name,
        elf,
        profile,
        &args.kargs,
        &args.app_args,
        // xl counts whole seconds.
        Duration::from_secs(timeout.as_secs_f64().ceil().max(1.0) as u64),
    );
    // A prebuilt image boots as what its notes say (a universal image: PVH), whatever the
    // profile's `xen_guest`.
    if let Some(guest_type) = guest_type {
        spec.guest_type = guest_type;
    }
    let forwards = net::parse_forwards(&args.forward)?;
    net::check_host_ports(&forwards)?;
    let forwards = xen::lab_forwards(&forwards);
    spec = spec.vif(args.vif || !forwards.is_empty());
    if let Some(disk) = &args.disk {
        // Written back over FILE after the run: the guest's writes persist, as on QEMU.
        spec = spec.disk(disk).disk_out(disk);
    }
    eprintln!(
        "xtask: Xen {} guest {} ({} MiB, {} vCPU{}, command line {:?}, time limit {} s)",
        spec.guest_type.name().to_uppercase(),
        display_path(&spec.kernel),
        spec.memory_mb,
        spec.vcpus,
        if spec.vcpus == 1 { "" } else { "s" },
        spec.cmdline.as_deref().unwrap_or(""),
        spec.timeout.as_secs()
    );
    if spec.vif && !net::has_driver(profile) {
        eprintln!(
            "xtask: note: profile `{}` has no NIC driver (net_device = \"{}\"): the vif's \
             backend will wait for a frontend that never comes",
            profile.name,
            profile.slot("net_device").unwrap_or("none")
        );
    }
    if spec.vif {
        eprintln!(
            "xtask: vif on the lab's bridge xenbr0: dom0 {}/24, the guest {} by convention (MAC {})",
            xenlab::DOM0_IP,
            xenlab::GUEST_IP,
            xenlab::GUEST_MAC
        );
    }
    for f in &forwards {
        eprintln!(
            "xtask: forwarding 127.0.0.1:{} -> {}:{} ({}) through the lab's bridge",
            f.host,
            xenlab::GUEST_IP,
            f.guest,
            if f.udp { "udp" } else { "tcp" }
        );
    }
    let lab = xenlab::Lab::from_env();
    let run = match xen::run(&lab, &spec, &forwards, &mut std::io::stdout().lock()) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(xen::LAB_EXIT));
        }
    };
    match &run.outcome {
        xen::XenOutcome::Exited { .. } => eprintln!("xtask: {}", run.outcome.message()),
        other => eprintln!("error: {}", other.message()),
    }
    if let (xen::XenOutcome::NoStatus(_), Some(cr2)) =
        (&run.outcome, xen::crash_cr2(&run.guest.xen_lines))
    {
        let debug = std::fs::read(spec.kernel.with_extension("debug")).ok();
        let guard = debug.as_deref().and_then(xen::stack_guard);
        let rsp = xen::crash_register(&run.guest.xen_lines, "rsp");
        eprintln!("xtask: {}", xen::crash_hint(cr2, rsp, guard));
    }
    Ok(ExitCode::from(run.outcome.exit_code()))
}
