//! `cargo xtask xen-lab build|run|status`: the command line of the Xen lab ([`crate::xenlab`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use anyhow::bail;
use anyhow::{Error, Result};
use xenlab::build::{self as xenlab_build, BuildMode};
use xenlab::{
    self, BatchOptions, Expect, Forward, GuestSpec, GuestType, Lab, LiveLine, LiveSink, RefGuest,
};

#[derive(Subcommand, Debug)]
pub enum XenLabCmd {
    /// Build the lab (root, debootstrap, Debian mirror; about 2 minutes, 1.4 GB) in
    /// $STARDUST_XENLAB_DIR or ~/.cache/stardust-xenlab.
    Build(BuildArgs),
    /// Boot the lab once and run the given guests one after the other; prints each console,
    /// then a summary with timings. Exit status 0 when every guest ended as expected.
    Run(Box<RunArgs>),
    /// Say whether the lab can run here, and where it is.
    Status,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Keep the root file system: reinstall dom0's init, remake rootfs.img, reassemble the
    /// reference guests (seconds, not minutes).
    #[arg(long, conflicts_with = "guests")]
    reimage: bool,
    /// Only reassemble the reference guests (no root needed).
    #[arg(long)]
    guests: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum TypeArg {
    Pv,
    Pvh,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ExpectArg {
    Poweroff,
    Crash,
    Timeout,
    Any,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Guest kernels (ELF); with none and no --ref, the reference PV guest pvhello.
    kernels: Vec<PathBuf>,
    /// Add a reference guest from the lab: pvhello, pvcrash, pvhang, pvhhello (repeatable;
    /// each keeps its own type and expected end).
    #[arg(long = "ref", value_name = "NAME")]
    refs: Vec<String>,
    /// Guest type of the kernels.
    #[arg(long = "type", value_enum, default_value = "pv")]
    guest_type: TypeArg,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 32)]
    memory: u32,
    /// Guest command line (xl `extra=`).
    #[arg(long, allow_hyphen_values = true)]
    cmdline: Option<String>,
    /// Seconds each guest may run (at most 604800).
    #[arg(long, value_name = "S", default_value = "60")]
    timeout: String,
    /// How the kernels should end.
    #[arg(long, value_enum, default_value = "poweroff")]
    expect: ExpectArg,
    /// Give each guest (reference guests too) a vif on dom0's bridge xenbr0 (dom0 10.0.0.1/24; the vif's MAC is
    /// 00:16:3e:00:00:02, the guest takes 10.0.0.2/24 itself).
    #[arg(long)]
    vif: bool,
    /// A shell script dom0 runs while each guest runs (once its vif is Connected, with a vif;
    /// see `GuestSpec::dom0_script` for its environment: GUEST_IP, DOM0_IP, GUEST_DOMID,
    /// GUEST_CONSOLE, GUEST_DISK_DEV, ... and `xenlab-wait ping|tcp PORT|console REGEX [SEC]`);
    /// its output is shown as it comes; a status other than 0 fails the guest. Reference
    /// guests then get --timeout too, if longer than their own.
    #[arg(long, value_name = "FILE")]
    dom0_script: Option<PathBuf>,
    /// The guests are servers: each is destroyed once its dom0 script ended, and the script's
    /// status decides (needs --dom0-script).
    #[arg(long, requires = "dom0_script")]
    keeps_running: bool,
    /// Seconds the dom0 script waits for the vif to be Connected before it starts anyway.
    #[arg(long, value_name = "S", default_value_t = 30)]
    vif_wait: u64,
    /// A raw disk image as the (one) guest's vbd xvda, through dom0's blkback; the lab works
    /// on a copy and leaves what the guest wrote in --disk-out (default FILE.out).
    #[arg(long, value_name = "FILE")]
    disk: Option<PathBuf>,
    /// Where the disk's contents go after the run (FILE itself: write back in place).
    #[arg(long, value_name = "FILE", requires = "disk")]
    disk_out: Option<PathBuf>,
    /// Forward 127.0.0.1:HOSTPORT to GUESTPORT of the guest at 10.0.0.2 on the lab's bridge,
    /// for the whole batch (repeatable; implies --vif and the guests' live console).
    #[arg(long, value_name = "[tcp:|udp:]HOSTPORT:GUESTPORT")]
    forward: Vec<String>,
    /// Serial log file (default: last-batch.log in the lab directory).
    #[arg(long)]
    log: Option<PathBuf>,
}

pub fn dispatch(cmd: XenLabCmd) -> Result<ExitCode> {
    let lab = Lab::from_env();
    match cmd {
        XenLabCmd::Build(args) => {
            let mode = if args.reimage {
                BuildMode::Reimage
            } else if args.guests {
                BuildMode::Guests
            } else {
                BuildMode::Full
            };
            xenlab_build::build(&lab, mode)?;
            Ok(ExitCode::SUCCESS)
        }
        XenLabCmd::Status => {
            match lab.availability() {
                Ok(()) => println!("xen-lab: ready in {}", lab.dir.display()),
                Err(why) => println!("xen-lab: skipped: {why}"),
            }
            println!("xen-lab: {}; -cpu {}", lab.versions(), xenlab::lab_cpu());
            if let Some(crate::qemu_version::Support::Untested(why)) =
                crate::qemu_version::installed().map(|v| v.support())
            {
                println!("xen-lab: warning: {why}");
            }
            if let Some(why) = xenlab_build::cannot_build() {
                println!("xen-lab: cannot build here: {why}");
            }
            Ok(ExitCode::SUCCESS)
        }
        XenLabCmd::Run(args) => run(&lab, *args),
    }
}

fn run(lab: &Lab, args: RunArgs) -> Result<ExitCode> {
    let timeout = crate::qemu::parse_timeout("--timeout", &args.timeout)?;
    let forwards = args
        .forward
        .iter()
        .map(|f| Forward::parse(f))
        .collect::<Result<Vec<_>>>()?;
    xenlab::check_forwards(&forwards)?;
    let script = match &args.dom0_script {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| Error::msg(format!("--dom0-script {}: {e}", f.display())))?,
        ),
        None => None,
    };
    let count = args.kernels.len() + args.refs.len();
    if args.disk.is_some() && count > 1 {
        bail!("--disk gives one guest a disk: name one kernel or one --ref, not {count}");
    }
    if let Err(why) = lab.availability() {
        // Not an error of the guests: say so plainly, and fail (a run was asked for).
        println!("xen-lab: skipped: {why}");
        return Ok(ExitCode::from(2));
    }
    let mut guests = Vec::new();
    for name in &args.refs {
        let Some(r) = RefGuest::from_name(name) else {
            bail!(
                "--ref {name}: no such reference guest; choose one of: {}",
                RefGuest::ALL.map(RefGuest::name).join(", ")
            );
        };
        guests.push(GuestSpec::reference(lab, r));
    }
    for k in &args.kernels {
        let name = k.file_name().map_or_else(
            || k.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut g = GuestSpec::new(name, k.clone())
            .guest_type(match args.guest_type {
                TypeArg::Pv => GuestType::Pv,
                TypeArg::Pvh => GuestType::Pvh,
            })
            .memory_mb(args.memory)
            .timeout(timeout)
            .expect(match args.expect {
                ExpectArg::Poweroff => Expect::Poweroff,
                ExpectArg::Crash => Expect::Crash,
                ExpectArg::Timeout => Expect::Timeout,
                ExpectArg::Any => Expect::Any,
            })
            .vif(args.vif);
        if let Some(c) = &args.cmdline {
            g = g.cmdline(c.clone());
        }
        guests.push(g);
    }
    if guests.is_empty() {
        guests.push(GuestSpec::reference(lab, RefGuest::PvHello));
    }
    // The I/O options apply to every guest, reference guests too.
    for g in &mut guests {
        let mut io = g
            .clone()
            .vif(g.vif || args.vif || !forwards.is_empty())
            .vif_wait(std::time::Duration::from_secs(args.vif_wait))
            .live_console(!forwards.is_empty() || args.keeps_running);
        if let Some(s) = &script {
            // pvhang's own 10 s is too short for a vif, a disk and a script: --timeout.
            let t = io.timeout.max(timeout);
            io = io
                .dom0_script(s.clone())
                .keeps_running(args.keeps_running)
                .timeout(t);
        }
        if let Some(d) = &args.disk {
            io = io.disk(d);
            if let Some(o) = &args.disk_out {
                io = io.disk_out(o);
            }
        }
        *g = io;
    }
    let names: Vec<String> = guests.iter().map(|g| g.name.clone()).collect();
    let opts = BatchOptions {
        log: args.log,
        echo: true,
        forwards,
        live: Some(LiveSink::new(move |l: &LiveLine| match l {
            LiveLine::Console { guest, text } => {
                eprintln!("[{}] {text}", names.get(*guest).map_or("?", String::as_str))
            }
            LiveLine::Script { guest, text } => eprintln!(
                "[{}] dom0: {text}",
                names.get(*guest).map_or("?", String::as_str)
            ),
        })),
        ..Default::default()
    };
    let report = lab.run_batch(&guests, &opts)?;
    let mut out = std::io::stdout().lock();
    xenlab::print_report(&report, &mut out).map_err(|e| Error::msg(format!("stdout: {e}")))?;
    if let Some(e) = xenlab::lab_error(&report) {
        return Err(e);
    }
    Ok(if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
