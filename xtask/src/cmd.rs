//! The subcommands of `cargo xtask`, one module each: its options (clap) and what it does.
//! `main.rs` parses the command line and calls [`dispatch`]. What several share is here: the
//! profile options ([`ProfileArgs`]) and QEMU's ([`QemuArgs`]).

pub mod bench;
pub mod build;
pub mod disk;
pub mod gen_xen_sys;
pub mod run;
pub mod setup;
pub mod size;
pub mod test;
pub mod xen_lab;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use crate::qemu::{self, Accel, Machine, QemuConfig};
use crate::workspace::Workspace;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Build an image; its path is the last line of stdout (progress goes to stderr).
    Build(build::BuildArgs),
    /// Build an image and boot it in QEMU (or, with platform xen, in the Xen lab); exits with
    /// the guest's exit status.
    Run(run::RunArgs),
    /// Run every test: host unit tests, then whole-image tests.
    Test,
    /// Stripped image size per profile, with a per-crate breakdown; fails over budget.
    Size(size::SizeArgs),
    /// Regression benches of every profile (size, boot time, minimum memory) against budgets.
    Bench(bench::BenchArgs),
    /// Install what is missing: the x86_64-unknown-none target, QEMU, and the network tests'
    /// and bench's tools (curl, wrk, nginx-light, socat, iproute2, debootstrap, e2fsprogs).
    Setup,
    /// The Xen lab: real Xen 4.17 + Debian dom0 in QEMU (TCG) that runs guests with `xl create`.
    XenLab {
        #[command(subcommand)]
        cmd: xen_lab::XenLabCmd,
    },
    /// Disk images of the Stardust filesystem: create one from a directory, ls, cat, extract,
    /// check.
    Disk {
        #[command(subcommand)]
        cmd: disk::DiskCmd,
    },
    /// Regenerate platform-xen/xen-sys/src/bindings.rs from the Xen public headers (needs the
    /// `bindgen` command and libclang; only this command does).
    GenXenSys(gen_xen_sys::GenArgs),
}

/// Runs `cmd`: the exit code of xtask, or the error to print.
pub fn dispatch(ws: &Workspace, cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Build(args) => build::run(ws, args),
        Cmd::Run(args) => run::run(ws, args),
        Cmd::Test => test::run_all(ws).map(|()| ExitCode::SUCCESS),
        Cmd::Size(args) => size::run(ws, args),
        Cmd::Bench(args) => bench::run(ws, args),
        Cmd::Setup => setup::setup_all(ws).map(|()| ExitCode::SUCCESS),
        Cmd::XenLab { cmd } => xen_lab::dispatch(cmd),
        Cmd::Disk { cmd } => disk::run(cmd),
        Cmd::GenXenSys(args) => {
            gen_xen_sys::generate(ws, &args.include, args.check).map(|()| ExitCode::SUCCESS)
        }
    }
}

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// Profile: profiles/PROFILE.toml (default: the app's own, `[package.metadata.stardust]
    /// profile` in its Cargo.toml, else `default`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Platform (overrides the profile's `platform`).
    #[arg(long, value_enum)]
    pub platform: Option<PlatformArg>,
    /// Override a profile key, e.g. `--set allocator=bump --set heap_size=4M` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ProfileArgs {
    /// The profile to use: `--profile`, else `app`'s own (`[package.metadata.stardust]
    /// profile`: `httpd` and `echo` name `net`), else `default`.
    pub fn name(&self, ws: &Workspace, app: Option<&str>) -> Result<String> {
        if let Some(p) = &self.profile {
            return Ok(p.clone());
        }
        if let Some(app) = app
            && ws.check_app(app).is_ok()
            && let Some(p) = ws.app_profile(app)?
        {
            return Ok(p);
        }
        Ok("default".into())
    }

    pub fn overrides(&self) -> Vec<String> {
        let mut o = self.set.clone();
        if let Some(p) = self.platform {
            o.push(format!("platform={}", p.name()));
        }
        o
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum PlatformArg {
    Kvm,
    Xen,
    /// One image for both (finds out at boot); `run` boots it on QEMU.
    Universal,
}

impl PlatformArg {
    fn name(self) -> &'static str {
        match self {
            PlatformArg::Kvm => "kvm",
            PlatformArg::Xen => "xen",
            PlatformArg::Universal => "universal",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, Default)]
pub enum AccelArg {
    /// KVM when it is known to be real hardware virtualization, else TCG.
    #[default]
    Auto,
    Tcg,
    Kvm,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default)]
pub enum MachineArg {
    #[default]
    Q35,
    Microvm,
}

#[derive(Args, Debug)]
pub struct QemuArgs {
    /// Accelerator (default auto). `auto` takes KVM only when it is real (hardware KVM on a host
    /// that is not itself a VM); nested KVM is slower than TCG and breaks on some instructions.
    /// Not on Xen: the lab always runs TCG.
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,
    /// Machine type (default q35: boots through qboot; falls back to microvm without
    /// qboot.rom). Not on Xen.
    #[arg(long, value_enum)]
    pub machine: Option<MachineArg>,
    /// Seconds before QEMU is killed (default 60, at most 604800; no limit with --gdb unless
    /// given). On Xen: seconds from `xl create` until the guest is destroyed (default 60).
    #[arg(long, value_name = "S")]
    pub timeout: Option<String>,
}

impl QemuArgs {
    pub fn apply(&self, cfg: &mut QemuConfig) -> Result<()> {
        (cfg.accel, cfg.machine) = self.resolve()?;
        Ok(())
    }

    /// The accelerator and machine asked for (saying which `auto` picked and why, and when q35
    /// falls back to microvm).
    pub fn resolve(&self) -> Result<(Accel, Machine)> {
        let accel = match self.accel.unwrap_or_default() {
            AccelArg::Auto => {
                let (accel, why) = qemu::auto_accel();
                eprintln!(
                    "xtask: accelerator {} ({why}; --accel to choose)",
                    accel.name()
                );
                accel
            }
            AccelArg::Tcg => Accel::Tcg,
            AccelArg::Kvm => {
                qemu::check_kvm()?;
                Accel::Kvm
            }
        };
        let machine = match self.machine.unwrap_or_default() {
            MachineArg::Q35 => Machine::Q35,
            MachineArg::Microvm => Machine::Microvm,
        };
        if machine == Machine::Q35 && qemu::qboot_rom().is_none() {
            eprintln!(
                "xtask: {} not found: using the microvm machine",
                qemu::QBOOT_PATHS[0]
            );
        }
        Ok((accel, machine))
    }

    pub fn timeout(&self, default: Option<Duration>) -> Result<Option<Duration>> {
        match &self.timeout {
            None => Ok(default),
            Some(s) => qemu::parse_timeout("--timeout", s).map(Some),
        }
    }
}
