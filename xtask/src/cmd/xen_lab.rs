//! `cargo xtask xen-lab build|run|status`: the command line of the Xen lab ([`crate::xenlab`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use anyhow::bail;
use anyhow::{Error, Result};
use xenlab::build::{self as xenlab_build, BuildMode};
use xenlab::{self, BatchOptions, Expect, GuestSpec, GuestType, Lab, RefGuest};

#[derive(Subcommand, Debug)]
pub enum XenLabCmd {
    /// Build the lab (root, debootstrap, Debian mirror; about 2 minutes, 1.4 GB) in
    /// $STARDUST_XENLAB_DIR or ~/.cache/stardust-xenlab.
    Build(BuildArgs),
    /// Boot the lab once and run the given guests one after the other; prints each console,
    /// then a summary with timings. Exit status 0 when every guest ended as expected.
    Run(RunArgs),
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
    /// Give each guest a vif on dom0's bridge xenbr0 (dom0 10.0.0.1/24).
    #[arg(long)]
    vif: bool,
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
        XenLabCmd::Run(args) => run(&lab, args),
    }
}

fn run(lab: &Lab, args: RunArgs) -> Result<ExitCode> {
    let timeout = crate::qemu::parse_timeout("--timeout", &args.timeout)?;
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
    let opts = BatchOptions {
        log: args.log,
        echo: true,
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
