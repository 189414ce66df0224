//! The Stardust build tool behind `cargo xtask`, as a library (the `stardust-tests` whole-image
//! tests use it to build and boot images the same way the command line does).
//!
//! Usage: `cargo xtask build|run|test|size|bench|setup ...` (see README.md), or from Rust:
//!
//! ```no_run
//! let ws = xtask::workspace::Workspace::locate();
//! let (profile, image) = xtask::build_app(&ws, "hello", "default", &[]).expect("builds");
//! let qemu = xtask::cmd::setup::ensure_qemu().expect("QEMU");
//! let cfg = xtask::qemu::QemuConfig::new(qemu, image.elf, &profile);
//! let boot = xtask::qemu::boot(&cfg, true, Some(xtask::qemu::DEFAULT_TIMEOUT)).expect("boots");
//! assert_eq!(boot.outcome, xtask::qemu::Outcome::Guest(0));
//! ```
//!
//! Where things are:
//!
//! - [`cmd`]: one module per subcommand (`build`, `run`, `test`, `size`, `bench`, `setup`,
//!   `xen-lab`, `gen-xen-sys`, `disk`): its command-line options and what it does. `main.rs` only
//!   parses and dispatches.
//! - What the subcommands share: [`profile`] (profile files, `--set`, validation), [`image`]
//!   (the plain cargo command, copy and [`strip`]), [`cmdline`] (the kernel command line, app
//!   arguments encoded), [`qemu`] (command line, exit status, timeout), [`size`] (per-crate
//!   breakdown), [`status`] (the exit statuses of `run`), [`workspace`] (paths, apps, profiles).
//! - [`disk`]: disk images of the Stardust filesystem (`crates/sdfs` built for the host, over a
//!   file-backed `BlockIo`), for `cargo xtask disk`.
//! - [`disklog`]: write logs of a guest's disk (`run --disk-log`, QEMU's `blklogwrites`), parsed
//!   and replayed to the images a power cut could leave (the crash tests of `disk_replay.rs`).
//! - [`bench`]: every bench (size, boot, memory, allocators, schedulers, Xen), their statistics,
//!   budgets, baseline, reports and charts.
//! - [`xenlab`]: the Xen lab, its own crate (`xtask/xenlab`, re-exported here), with
//!   [`child`] (child processes that never outlive xtask) and [`qemu_version`] (the QEMU
//!   versions known to work). `run --platform xen` is [`cmd::run::xen`].
//!
//! Errors are [`anyhow::Error`]: a message for a human, with what was being done before the
//! cause (shown with `{:#}`).
//!
//! Cargo features: none.

pub mod bench;
pub mod cmd;
pub mod cmdline;
pub mod disk;
pub mod disklog;
pub mod guest;
pub mod image;
pub mod net;
pub mod netns;
pub mod netref;
pub mod profile;
pub mod qemu;
pub mod size;
pub mod status;
pub mod strip;
pub mod workspace;

pub use xenlab::{self, child, qemu_version};

use anyhow::Result;
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
