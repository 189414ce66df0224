//! Building images: the plain cargo command of docs/CONTRACT.md, then copying the unstripped
//! output to `target/stardust/<tag>/<app>.debug` and writing the stripped `<app>.elf` beside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::cmd::setup::{self, TARGET};
use crate::profile::{MAX_IMAGE_END, Profile, size_text};
use crate::workspace::Workspace;
use anyhow::bail;
use anyhow::{Context, Error, Result};

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
    /// profile's settings as environment variables, and the remapping of cargo's registry
    /// sources (see [`remap_registry`]).
    pub fn for_image(profile: &Profile, app: &str) -> CargoCommand {
        Self::for_image_with(profile, app, &registry_sources())
    }

    /// [`CargoCommand::for_image`] with the registry source directories given.
    pub fn for_image_with(profile: &Profile, app: &str, registries: &[PathBuf]) -> CargoCommand {
        let mut args = release_build(app);
        args.push("--features".into());
        args.push(profile.features().join(","));
        args.extend(remap_registry(registries));
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

/// The directories of cargo's registry sources (`$CARGO_HOME/registry/src/*`, sorted; none when
/// there is no such directory).
pub fn registry_sources() -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(Ok(entries)) = home.map(|h| std::fs::read_dir(h.join("registry").join("src"))) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// `--config target.x86_64-unknown-none.rustflags=[...]` with a `--remap-path-prefix=DIR/=` per
/// registry source directory: a panic location in a dependency then reads
/// `smoltcp-0.14.0/src/socket/tcp.rs:123:5` instead of starting with the 60-byte
/// `$CARGO_HOME/registry/src/index.crates.io-<hash>/`, which makes the network images about
/// 1.8 KB smaller. cargo appends the array to `.cargo/config.toml`'s flags; host builds (build
/// scripts, proc macros) do not take them. The workspace's own paths are relative already, and
/// the Rust library's (`/rustc/<hash>/library/...`) come precompiled, out of this flag's reach.
/// gdb finds those sources again with `set substitute-path` (docs/CONTRACT.md).
pub fn remap_registry(registries: &[PathBuf]) -> Vec<String> {
    if registries.is_empty() {
        return Vec::new();
    }
    let flags: Vec<String> = registries
        .iter()
        .map(|dir| {
            let flag = format!("--remap-path-prefix={}/=", dir.display());
            // A TOML basic string.
            format!("\"{}\"", flag.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect();
    vec![
        "--config".into(),
        format!("target.{TARGET}.rustflags=[{}]", flags.join(",")),
    ]
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

/// The type of the ELF note (owner `Stardust`) that names the platform an image was built for.
pub const PLATFORM_NOTE: u32 = 0x5344_0001;

/// The platform an image was built for, from its `Stardust` platform note (see
/// [`PLATFORM_NOTE`]): `kvm`, `xen`, `xen-pvh` or `pvh`; `None` for an image without the note
/// (not Stardust's, or older). `Err` for a file that is not a readable ELF64.
pub fn built_platform(elf: &[u8]) -> Result<Option<String>> {
    use object::read::elf::{ElfFile64, ProgramHeader as _};
    let bad = |e: object::read::Error| Error::msg(format!("reading the ELF notes: {e}"));
    let file = ElfFile64::<object::Endianness>::parse(elf).map_err(bad)?;
    let endian = file.endian();
    for ph in file.elf_program_headers() {
        let Some(mut notes) = ph.notes(endian, elf).map_err(bad)? else {
            continue;
        };
        while let Some(note) = notes.next().map_err(bad)? {
            if note.name() == b"Stardust"
                && note.n_type(endian) == object::elf::NoteType(PLATFORM_NOTE)
            {
                return Ok(Some(String::from_utf8_lossy(note.desc()).into_owned()));
            }
        }
    }
    Ok(None)
}

/// Reads a prebuilt image (`run --image FILE`); the error says what `file` is when it is not an
/// image file (missing, a directory, a device, empty).
pub fn read_image_file(file: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::metadata(file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("no such file"),
        Err(e) => bail!("{e}"),
    };
    let kind = meta.file_type();
    let what = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if !kind.is_file() {
        Some("not a regular file")
    } else {
        None
    };
    if let Some(what) = what {
        bail!("this is {what}, not an image file (an ELF that `cargo xtask build` wrote)");
    }
    let bytes = std::fs::read(file).map_err(|e| Error::msg(e.to_string()))?;
    if bytes.is_empty() {
        bail!("the file is empty, not an ELF image");
    }
    Ok(bytes)
}

/// Checks a prebuilt image for booting on `platform` (`kvm`: QEMU, `xen`: the Xen lab) from
/// its ELF notes, before anything boots: its Stardust platform note must not name the other
/// platform, and it must have an entry that platform boots (QEMU: `XEN_ELFNOTE_PHYS32_ENTRY`;
/// Xen: that one, a PVH guest, or `XEN_ELFNOTE_ENTRY`, a PV guest). Returns the Xen guest type
/// (`None` on `kvm`).
pub fn check_prebuilt(elf: &[u8], platform: &str) -> Result<Option<crate::xenlab::GuestType>> {
    let built = built_platform(elf)?;
    if platform == "xen" {
        if built.as_deref() == Some("kvm") {
            bail!(
                "built for platform kvm (its Stardust platform note): Xen would boot it as a \
                 PVH guest, where the KVM platform cannot run (a triple fault); build it for Xen \
                 (`--platform xen`), or for both (`--platform universal`, the universal image)"
            );
        }
        return crate::cmd::run::xen::guest_type_of_image(elf).map(Some);
    }
    if let Some(xen @ ("xen" | "xen-pvh")) = built.as_deref() {
        bail!(
            "built for platform xen ({} guest; its Stardust platform note): it runs only on \
             Xen; run it with --platform xen, or build it for both (`--platform universal`)",
            if xen == "xen" { "a PV" } else { "a PVH" }
        );
    }
    // XEN_ELFNOTE_PHYS32_ENTRY: the PVH entry QEMU's -kernel boots.
    if !crate::strip::note_types(elf, "Xen")?.contains(&18) {
        bail!(
            "no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): QEMU cannot boot it (a Xen PV image? \
             run it with --platform xen)"
        );
    }
    Ok(None)
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
    ws.check_app_fits(app, profile)?;
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
    check_image_end(end, profile).map_err(|e| Error::msg(format!("{app} [{tag}]: {e:#}")))?;
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
    .map_err(|e| Error::msg(format!("empty kernel: {e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_cargo_command_matches_the_contract() {
        let catalog = crate::profile::test_catalog(
            &[
                "platform-kvm",
                "allocator-none",
                "allocator-bump",
                "scheduler-none",
                "console-serial",
                "console-debugcon",
            ],
            "",
        );
        let text = "platform = \"kvm\"\n[slots]\nallocator = \"bump\"\nscheduler = \"none\"\nconsole = \"serial\"\n[settings]\nstack_size = \"64K\"\n";
        let p = Profile::parse("default", text, &[], &catalog).expect("valid");
        assert_eq!(
            CargoCommand::for_image_with(&p, "hello", &[]).shell_line(),
            "STARDUST_LOG_LEVEL=info STARDUST_HEAP_SIZE=0 STARDUST_STACK_SIZE=65536 \
             STARDUST_TIME_SLICE_NS=10000000 STARDUST_NET_IP=10.0.2.15/24 \
             STARDUST_NET_GATEWAY=10.0.2.2 STARDUST_NET_TCP_BUFFER=65536 \
             STARDUST_NET_UDP_BUFFER=16384 STARDUST_NET_SOCKETS=64 STARDUST_KV_MAX_KEYS=1000000 \
             STARDUST_KV_MAX_FRAME=1048576 STARDUST_CPUS=1 cargo build --release \
             --target x86_64-unknown-none -p hello --features \
             stardust/platform-kvm,stardust/allocator-bump,stardust/scheduler-none,stardust/console-serial"
        );
        assert_eq!(
            CargoCommand::for_empty_kernel().shell_line(),
            "cargo build --release --target x86_64-unknown-none -p empty-kernel"
        );
        // With cargo's registry sources: their paths remapped away, one flag per directory.
        let dirs = [
            PathBuf::from("/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f"),
            PathBuf::from("/c/x\\\"y"),
        ];
        let cmd = CargoCommand::for_image_with(&p, "hello", &dirs);
        assert_eq!(
            cmd.args[cmd.args.len() - 2..],
            [
                "--config".to_string(),
                "target.x86_64-unknown-none.rustflags=[\
                 \"--remap-path-prefix=/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/=\",\
                 \"--remap-path-prefix=/c/x\\\\\\\"y/=\"]"
                    .to_string()
            ]
        );
        let toml: toml::Table = toml::from_str(&cmd.args[cmd.args.len() - 1]).expect("TOML");
        let flags = &toml["target"]["x86_64-unknown-none"]["rustflags"];
        assert_eq!(
            flags.as_array().expect("an array")[1].as_str(),
            Some("--remap-path-prefix=/c/x\\\"y/=")
        );
    }

    #[test]
    fn an_image_beyond_the_boot_mapping_is_refused() {
        let catalog = crate::profile::test_catalog(
            &[
                "platform-kvm",
                "allocator-bump",
                "scheduler-none",
                "console-serial",
            ],
            "",
        );
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

    /// An ELF64 with one PT_NOTE segment holding `notes` (owner, type, description).
    fn elf_with_notes(notes: &[(&str, u32, &[u8])]) -> Vec<u8> {
        use object::write::elf::{FileHeader, ProgramHeader, Writer};
        let mut seg = Vec::new();
        for (name, kind, desc) in notes {
            let name = format!("{name}\0");
            seg.extend((name.len() as u32).to_le_bytes());
            seg.extend((desc.len() as u32).to_le_bytes());
            seg.extend(kind.to_le_bytes());
            seg.extend(name.as_bytes());
            seg.resize(seg.len().next_multiple_of(4), 0);
            seg.extend(*desc);
            seg.resize(seg.len().next_multiple_of(4), 0);
        }
        let mut buf = Vec::new();
        let mut w = Writer::new(object::Endianness::Little, true, &mut buf);
        w.reserve_file_header();
        w.reserve_program_headers(1);
        let off = w.reserve(seg.len() as u64, 4);
        w.write_file_header(&FileHeader {
            e_type: object::elf::ET_EXEC,
            e_machine: object::elf::EM_X86_64,
            e_entry: 0x100000,
            ..Default::default()
        })
        .expect("header");
        w.write_align_program_headers();
        w.write_program_header(&ProgramHeader {
            p_type: object::elf::PT_NOTE,
            p_flags: object::elf::PF_R,
            p_offset: off,
            p_vaddr: 0x100000,
            p_paddr: 0x100000,
            p_filesz: seg.len() as u64,
            p_memsz: seg.len() as u64,
            p_align: 4,
        });
        w.write_align(4);
        w.write(&seg);
        buf
    }

    #[test]
    fn prebuilt_images_are_checked_by_their_notes() {
        use crate::xenlab::GuestType;
        let pvh: (&str, u32, &[u8]) = ("Xen", 18, &[0, 0, 0x10, 0, 0, 0, 0, 0]);
        let pv: (&str, u32, &[u8]) = ("Xen", 1, &[0; 8]);
        let built = |p: &'static str| -> (&'static str, u32, &'static [u8]) {
            ("Stardust", PLATFORM_NOTE, p.as_bytes())
        };
        let kvm = elf_with_notes(&[pvh, built("kvm")]);
        assert_eq!(built_platform(&kvm).unwrap().as_deref(), Some("kvm"));
        assert_eq!(check_prebuilt(&kvm, "kvm").unwrap(), None);
        let e = check_prebuilt(&kvm, "xen").unwrap_err().to_string();
        assert!(
            e.contains("built for platform kvm") && e.contains("--platform xen"),
            "{e}"
        );
        let xen_pvh = elf_with_notes(&[pvh, built("xen-pvh")]);
        assert_eq!(
            check_prebuilt(&xen_pvh, "xen").unwrap(),
            Some(GuestType::Pvh)
        );
        let e = check_prebuilt(&xen_pvh, "kvm").unwrap_err().to_string();
        assert!(e.contains("built for platform xen (a PVH guest"), "{e}");
        let xen_pv = elf_with_notes(&[pv, built("xen")]);
        assert_eq!(check_prebuilt(&xen_pv, "xen").unwrap(), Some(GuestType::Pv));
        let e = check_prebuilt(&xen_pv, "kvm").unwrap_err().to_string();
        assert!(e.contains("built for platform xen (a PV guest"), "{e}");
        let universal = elf_with_notes(&[pvh, built("universal")]);
        assert_eq!(
            check_prebuilt(&universal, "xen").unwrap(),
            Some(GuestType::Pvh)
        );
        assert_eq!(check_prebuilt(&universal, "kvm").unwrap(), None);
        // Without the Stardust note (another kernel, an older image): the Xen notes decide.
        let foreign = elf_with_notes(&[pvh]);
        assert_eq!(built_platform(&foreign).unwrap(), None);
        assert_eq!(
            check_prebuilt(&foreign, "xen").unwrap(),
            Some(GuestType::Pvh)
        );
        assert_eq!(check_prebuilt(&foreign, "kvm").unwrap(), None);
        let e = check_prebuilt(&elf_with_notes(&[pv]), "kvm")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no PVH entry note"), "{e}");
        // A note of another owner with the same type is not the platform note.
        assert_eq!(
            built_platform(&elf_with_notes(&[("Xen", PLATFORM_NOTE, b"kvm")])).unwrap(),
            None
        );
        assert!(built_platform(b"not an ELF").is_err());
    }

    #[test]
    fn an_image_file_that_is_not_one_says_what_it_is() {
        let err = |p: &str| read_image_file(Path::new(p)).unwrap_err().to_string();
        assert_eq!(err("/no/such/image.elf"), "no such file");
        assert!(
            err("/dev/null").contains("a character device"),
            "{}",
            err("/dev/null")
        );
        let dir = std::env::temp_dir();
        let e = err(dir.to_str().expect("UTF-8 temp dir"));
        assert!(e.contains("a directory, not an image file"), "{e}");
        let empty = dir.join(format!("xtask-empty-{}.elf", std::process::id()));
        std::fs::write(&empty, b"").expect("temp file");
        let e = read_image_file(&empty).unwrap_err().to_string();
        let _ = std::fs::remove_file(&empty);
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a=b,c"), "a=b,c");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
