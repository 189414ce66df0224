//! The Stardust build tool behind `cargo xtask`, as a library (the `stardust-tests` whole-image
//! tests use it to build and boot images the same way the command line does).
//!
//! Usage: `cargo xtask build|run|test|size|bench|setup ...` (see README.md), or from Rust:
//!
//! ```no_run
//! let ws = xtask::workspace::Workspace::locate();
//! let (profile, image) = xtask::build_app(&ws, "hello", "default", &[]).expect("builds");
//! let qemu = xtask::setup::ensure_qemu().expect("QEMU");
//! let cfg = xtask::qemu::QemuConfig::new(qemu, image.elf, &profile);
//! let boot = xtask::qemu::boot(&cfg, true, Some(xtask::qemu::DEFAULT_TIMEOUT)).expect("boots");
//! assert_eq!(boot.outcome, xtask::qemu::Outcome::Guest(0));
//! ```
//!
//! Modules: [`profile`] (profile files, `--set`, validation), [`image`] (the plain cargo
//! command, copy and [`strip`]), [`cmdline`] (the kernel command line, app arguments encoded),
//! [`qemu`] (command line, exit status, timeout), [`child`] (how QEMU is started so that it never
//! outlives xtask, and stopped on signals), [`size`] (per-crate breakdown), [`status`] (the exit
//! statuses of `run`), [`bench`], [`testcmd`], [`setup`] (target and QEMU installation),
//! [`qemu_version`] (the QEMU versions known to work),
//! [`xenlab`] (the Xen lab: run batches of guests on real Xen), [`xenlab_build`] (`xen-lab build`),
//! [`xenlab_run`] (`run --platform xen`: one image in the lab, its exit status from the console)
//! and [`gen_xen_sys`] (regenerates the Xen bindings).
//!
//! Cargo features: none.

pub mod allocbench;
pub mod bench;
pub mod child;
pub mod cmdline;
pub mod error;
pub mod gen_xen_sys;
pub mod image;
pub mod profile;
pub mod qemu;
pub mod qemu_version;
pub mod schedbench;
pub mod setup;
pub mod size;
pub mod status;
pub mod strip;
pub mod testcmd;
pub mod workspace;
pub mod xenlab;
pub mod xenlab_build;
pub mod xenlab_run;

pub use error::{Error, Result};

use image::Image;
use profile::Profile;
use workspace::Workspace;

/// Loads and validates `profile` with `overrides` (`KEY=VALUE`), checks `app`, and builds it.
pub fn build_app(
    ws: &Workspace,
    app: &str,
    profile: &str,
    overrides: &[String],
) -> Result<(Profile, Image)> {
    let profile = ws.load_profile(profile, overrides)?;
    ws.check_app(app)?;
    let image = image::build(ws, app, &profile)?;
    Ok((profile, image))
}
