//! Building images: the plain cargo command of docs/CONTRACT.md, then copying the unstripped
//! output to `target/stardust/<tag>/<app>.debug` and writing the stripped `<app>.elf` beside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::profile::{MAX_IMAGE_END, Profile, size_text};
use crate::setup::{self, TARGET};
use crate::workspace::Workspace;

/// The fixture that `bench boot` compares images with.
pub const EMPTY_KERNEL: &str = "empty-kernel";

/// Serializes builds (and the copy that follows) within one process: cargo would serialize
/// them on its lock anyway, but the copy of `target/x86_64-unknown-none/release/<app>` must
/// happen before another build overwrites it.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// A cargo command line with its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CargoCommand {
    /// Environment variables set for the command.
    pub env: Vec<(String, String)>,
    /// Arguments after `cargo`.
    pub args: Vec<String>,
}

impl CargoCommand {
    /// `cargo build --release --target x86_64-unknown-none -p APP --features ...` with the
    /// profile's settings as environment variables.
    pub fn for_image(profile: &Profile, app: &str) -> CargoCommand {
        let mut args = release_build(app);
        args.push("--features".into());
        args.push(profile.features().join(","));
        CargoCommand {
            env: profile.env(),
            args,
        }
    }

    /// `cargo build --release --target x86_64-unknown-none -p empty-kernel`.
    pub fn for_empty_kernel() -> CargoCommand {
        CargoCommand {
            env: Vec::new(),
            args: release_build(EMPTY_KERNEL),
        }
    }

    /// The command as one shell line (`VAR=value cargo build ...`).
    pub fn shell_line(&self) -> String {
        let env = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)));
        let args = self.args.iter().map(|a| shell_quote(a));
        env.chain(std::iter::once("cargo".to_string()))
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs it in the workspace root; cargo's output goes to stderr.
    pub fn run(&self, ws: &Workspace) -> Result<()> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.args(&self.args)
            .current_dir(&ws.root)
            .stdin(Stdio::null())
            .stdout(setup::stderr_stdio())
            // A jobserver inherited from an outer cargo is not ours to use.
            .env_remove("CARGO_MAKEFLAGS")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let status = cmd
            .status()
            .with_context(|| format!("could not run {}", Path::new(&cargo).display()))?;
        if !status.success() {
            bail!("build failed ({status}): {}", self.shell_line());
        }
        Ok(())
    }
}

fn release_build(package: &str) -> Vec<String> {
    ["build", "--release", "--target", TARGET, "-p", package]
        .map(String::from)
        .to_vec()
}

/// Quotes `s` for a POSIX shell if it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=,:+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// cargo's output binary for `package`: `target/x86_64-unknown-none/release/<package>`.
pub fn cargo_output(ws: &Workspace, package: &str) -> PathBuf {
    ws.target_dir().join(TARGET).join("release").join(package)
}

/// A built image.
#[derive(Debug, Clone)]
pub struct Image {
    /// App (package) name.
    pub app: String,
    /// Output directory name under `target/stardust/`.
    pub tag: String,
    /// The stripped image that QEMU boots.
    pub elf: PathBuf,
    /// The unstripped ELF, with symbols (for gdb and `size`).
    pub debug: PathBuf,
    /// Size of `elf` in bytes.
    pub bytes: u64,
}

/// Copies `built` to `<dir>/<name>.debug` and writes the stripped `<dir>/<name>.elf`.
fn install(built: &Path, dir: &Path, name: &str, tag: &str) -> Result<Image> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = std::fs::read(built).with_context(|| format!("reading {}", built.display()))?;
    let stripped = crate::strip::strip_elf(&bytes)
        .with_context(|| format!("stripping {}", built.display()))?;
    let debug = dir.join(format!("{name}.debug"));
    let elf = dir.join(format!("{name}.elf"));
    std::fs::write(&debug, &bytes).with_context(|| format!("writing {}", debug.display()))?;
    std::fs::write(&elf, &stripped).with_context(|| format!("writing {}", elf.display()))?;
    Ok(Image {
        app: name.to_string(),
        tag: tag.to_string(),
        elf,
        debug,
        bytes: stripped.len() as u64,
    })
}

/// Builds `app` with `profile` (installing the target first if needed).
pub fn build(ws: &Workspace, app: &str, profile: &Profile) -> Result<Image> {
    ws.check_app(app)?;
    setup::ensure_target(ws)?;
    let cmd = CargoCommand::for_image(profile, app);
    let _guard = BUILD_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    eprintln!(
        "xtask: building {app} [{}]: {}",
        profile.tag(),
        cmd.shell_line()
    );
    cmd.run(ws)?;
    let tag = profile.tag();
    let image = install(
        &cargo_output(ws, app),
        &ws.images_dir().join(&tag),
        app,
        &tag,
    )?;
    let end = crate::bench::image_end(&image.elf)?;
    check_image_end(end, profile).map_err(|e| Error::new(format!("{app} [{tag}]: {e}")))?;
    Ok(image)
}

/// Fails when an image ending at `end` cannot boot: beyond [`MAX_IMAGE_END`] the boot page
/// tables do not map its boot stack (a silent triple fault), and the kernel has no frames left
/// there for its own tables.
pub fn check_image_end(end: u64, profile: &Profile) -> Result<()> {
    if end > MAX_IMAGE_END {
        bail!(
            "the image ends at {end:#x} ({:.1} MiB), beyond {} MiB: the boot page tables map only \
             the first GiB, and the kernel needs its last MiB for its own page tables; lower \
             stack_size (now {})",
            end as f64 / f64::from(1u32 << 20),
            MAX_IMAGE_END >> 20,
            size_text(profile.settings.stack_size)
        );
    }
    Ok(())
}

/// Builds the empty kernel fixture into `target/stardust/bench/empty-kernel.{elf,debug}`.
pub fn build_empty_kernel(ws: &Workspace) -> Result<Image> {
    setup::ensure_target(ws)?;
    let cmd = CargoCommand::for_empty_kernel();
    let _guard = BUILD_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    eprintln!("xtask: building the empty kernel: {}", cmd.shell_line());
    cmd.run(ws)?;
    install(
        &cargo_output(ws, EMPTY_KERNEL),
        &ws.images_dir().join("bench"),
        EMPTY_KERNEL,
        "bench",
    )
    .map_err(|e| Error::new(format!("empty kernel: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Catalog;

    #[test]
    fn plain_cargo_command_matches_the_contract() {
        let catalog = Catalog::from_features([
            "platform-kvm",
            "allocator-none",
            "allocator-bump",
            "scheduler-none",
            "console-serial",
            "console-debugcon",
        ]);
        let text = "platform = \"kvm\"\n[slots]\nallocator = \"bump\"\nscheduler = \"none\"\nconsole = \"serial\"\n[settings]\nstack_size = \"64K\"\n";
        let p = Profile::parse("default", text, &[], &catalog).expect("valid");
        assert_eq!(
            CargoCommand::for_image(&p, "hello").shell_line(),
            "STARDUST_LOG_LEVEL=info STARDUST_HEAP_SIZE=0 STARDUST_STACK_SIZE=65536 \
             STARDUST_TIME_SLICE_NS=10000000 cargo build --release \
             --target x86_64-unknown-none -p hello --features \
             stardust/platform-kvm,stardust/allocator-bump,stardust/scheduler-none,stardust/console-serial"
        );
        assert_eq!(
            CargoCommand::for_empty_kernel().shell_line(),
            "cargo build --release --target x86_64-unknown-none -p empty-kernel"
        );
    }

    #[test]
    fn an_image_beyond_the_boot_mapping_is_refused() {
        let catalog = Catalog::from_features([
            "platform-kvm",
            "allocator-bump",
            "scheduler-none",
            "console-serial",
        ]);
        let text = "platform = \"kvm\"\n[slots]\nallocator = \"bump\"\nscheduler = \"none\"\nconsole = \"serial\"\n[settings]\nstack_size = \"1022M\"\nmemory = \"1100M\"\n";
        let p = Profile::parse("big", text, &[], &catalog).expect("valid");
        check_image_end(MAX_IMAGE_END, &p).expect("at the limit");
        let e = check_image_end(MAX_IMAGE_END + 4096, &p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("first GiB") && e.contains("lower stack_size (now 1022M)"),
            "{e}"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a=b,c"), "a=b,c");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
