//! What `cargo xtask bench kv` ([`super::kv`]) and `cargo xtask bench disk` ([`super::disk`])
//! share: their options, the guests' QEMU line with its data disk, and the set-up (checks,
//! network namespace, the Linux reference guest).
//!
//! Every guest gets the same data disk: a fresh sparse raw image per boot, in a temporary
//! directory under `target/bench/` (a real file system: QEMU opens it with `O_DIRECT`), on the
//! QEMU options of [`crate::netref::data_disk_args`] (`cache=none,aio=threads`, virtio-blk).
//! The guests' QEMU line is otherwise `bench net`'s: q35, TCG, the same `-m`, virtio-net over
//! TAP in a network namespace ([`crate::netns`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::net::{NetArgs, TargetKind, TempDir};
use crate::cmd::QemuArgs;
use crate::netns::{self, NetNs};
use crate::netref::{self, RefGuest};
use crate::qemu::{Accel, Machine, QemuConfig};
use crate::workspace::Workspace;

/// The profile Stardust's storage apps (`kvstore`, `blkprobe`) are built with by default.
/// (The lead sets it to the storage profile's name once that profile exists.)
pub const STORAGE_PROFILE: &str = "storage";

/// Options of `bench kv` and `bench disk` (beside `bench net`'s `--target`, `--duration`,
/// `--guest-memory` and `--build-reference`, which they share).
#[derive(clap::Args, Debug)]
pub struct StorageArgs {
    /// `bench kv`, `bench disk`: repetitions of each workload (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub storage_runs: usize,
    /// `bench kv`: redis-benchmark's clients (`-c`).
    #[arg(long, default_value_t = 50)]
    pub kv_clients: usize,
    /// `bench kv`: the pipelined workloads' depth (`-P`).
    #[arg(long, default_value_t = 16)]
    pub kv_pipeline: usize,
    /// `bench kv`: the number of distinct keys (`-r`).
    #[arg(long, default_value_t = 10_000)]
    pub kv_keyspace: usize,
    /// `bench disk`: MiB each workload covers (a region of the raw disk, or a file).
    #[arg(long, default_value_t = 256)]
    pub disk_size: u64,
    /// `bench disk`: requests in flight (fio's `iodepth`, libaio) for every workload.
    #[arg(long, default_value_t = 1)]
    pub iodepth: usize,
    /// `bench kv`, `bench disk`: the profile Stardust's apps are built with.
    #[arg(long, default_value = STORAGE_PROFILE)]
    pub storage_profile: String,
    /// `bench kv --xen`: the profile `kvstore` is built with (`platform=xen` is set too).
    #[arg(long, default_value = "xen-storage")]
    pub xen_storage_profile: String,
    /// `bench kv`, `bench disk`: a setting over that profile (`KEY=VALUE`, repeatable).
    #[arg(long = "storage-set", value_name = "KEY=VALUE")]
    pub storage_set: Vec<String>,
}

/// Creates a sparse raw image of `bytes` at `path` (all zeros; nothing allocated yet).
pub fn sparse_image(path: &Path, bytes: u64) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(bytes)
        .with_context(|| format!("sizing {}", path.display()))
}

/// The targets to measure: those asked for (default host, Linux, Stardust); user networking
/// is not measured by these benches (`skipped` says so).
pub fn targets(
    asked: &[TargetKind],
    with_host: bool,
    skipped: &mut Vec<String>,
) -> Vec<TargetKind> {
    let default = if with_host {
        vec![TargetKind::Host, TargetKind::Linux, TargetKind::Stardust]
    } else {
        vec![TargetKind::Linux, TargetKind::Stardust]
    };
    if asked.is_empty() {
        return default;
    }
    let mut out = Vec::new();
    for t in asked {
        if !default.contains(t) {
            skipped.push(format!(
                "target `{}`: not measured by this bench (targets: {})",
                name(*t),
                default
                    .iter()
                    .map(|t| name(*t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else if !out.contains(t) {
            out.push(*t);
        }
    }
    out
}

/// A target's name on the command line (`--target stardust-user`).
fn name(t: TargetKind) -> String {
    use clap::ValueEnum;
    t.to_possible_value()
        .map_or_else(|| format!("{t:?}"), |v| v.get_name().to_string())
}

/// What every storage bench sets up before its targets.
#[derive(Debug)]
pub(crate) struct Setup {
    /// The network namespace (TAP device `tap0`, guest 10.0.0.2).
    pub ns: NetNs,
    /// A temporary directory under `target/bench/` for disk images and the host's server.
    pub tmp: TempDir,
    /// QEMU.
    pub qemu: PathBuf,
    /// The accelerator.
    pub accel: Accel,
    /// The machine asked for.
    pub machine: Machine,
    /// Guest memory in bytes.
    pub memory: u64,
    /// The Linux reference guest, when a Linux target is measured and it is there (else why
    /// not, in the bench's skips).
    pub reference: Option<RefGuest>,
}

impl Setup {
    /// Checks root, TAP, the host tools (`tools`) and the options; builds the reference guest
    /// if asked (`--build-reference`) or needed; creates the namespace.
    pub fn new(
        ws: &Workspace,
        bench: &str,
        net: &NetArgs,
        qemu_args: &QemuArgs,
        tools: &[&str],
        targets: &[TargetKind],
        skipped: &mut Vec<String>,
    ) -> Result<Setup> {
        if net.build_reference {
            if let Some(why) = netref::cannot_build() {
                bail!("{why}");
            }
            netref::build(&netref::dir(), true)?;
        }
        if let Some(why) = netns::unavailable() {
            bail!("`bench {bench}` runs over TAP: {why}");
        }
        let missing: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| crate::child::find_in_path(t).is_none())
            .collect();
        if !missing.is_empty() {
            bail!(
                "`bench {bench}` needs {} on the host: run `cargo xtask setup`",
                missing.join(", ")
            );
        }
        if net.duration == 0 || net.guest_memory == 0 {
            bail!("--duration and --guest-memory must be at least 1");
        }
        let (accel, machine) = qemu_args.resolve()?;
        let qemu = crate::cmd::setup::ensure_qemu()?;
        let bench_dir = ws.target_dir().join("bench");
        std::fs::create_dir_all(&bench_dir)
            .with_context(|| format!("creating {}", bench_dir.display()))?;
        let tmp = TempDir::under(&bench_dir, bench)?;
        let reference = if targets.contains(&TargetKind::Linux) {
            match netref::ensure() {
                Ok(g) => Some(g),
                Err(e) => {
                    skipped.push(format!("the Linux reference guest: {e:#}"));
                    None
                }
            }
        } else {
            None
        };
        let ns = NetNs::create()?;
        Ok(Setup {
            ns,
            tmp,
            qemu,
            accel,
            machine,
            memory: net.guest_memory << 20,
            reference,
        })
    }

    /// A guest's QEMU configuration over the namespace's TAP device: `bench net`'s line.
    pub fn guest_cfg(&self, kernel: PathBuf, kargs: String) -> QemuConfig {
        QemuConfig {
            qemu: self.qemu.clone(),
            accel: self.accel,
            machine: self.machine,
            memory: self.memory,
            cpus: 1,
            console: crate::qemu::Console::Serial,
            kernel,
            kargs,
            app_args: Vec::new(),
            gdb: None,
            debug_exit: true,
            machine_opts: String::new(),
            nic: None,
            tap: Some(self.ns.nic()),
            extra_args: Vec::new(),
            disk: None,
        }
    }

    /// A fresh sparse data image of `bytes` named `name` in the temporary directory.
    pub fn data_image(&self, name: &str, bytes: u64) -> Result<PathBuf> {
        let path = self.tmp.0.join(name);
        let _ = std::fs::remove_file(&path);
        sparse_image(&path, bytes)?;
        Ok(path)
    }

    /// The machine's name for the report.
    pub fn machine_name(&self) -> String {
        let cfg = self.guest_cfg(PathBuf::new(), String::new());
        match cfg.effective_machine() {
            Machine::Q35 => "q35+qboot".into(),
            Machine::Microvm => "microvm".into(),
        }
    }

    /// The data disk's QEMU options, as the report states them.
    pub fn disk_options(&self) -> String {
        let cfg = self.guest_cfg(PathBuf::new(), String::new());
        netref::data_disk_args(cfg.effective_machine(), Path::new("IMAGE"))
            .iter()
            .filter(|a| !a.starts_with('-'))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Writes a bench's report: `target/bench/<name>.md` and `<name>.json`.
pub fn write_report(ws: &Workspace, name: &str, md: &str, json: &str) -> Result<[PathBuf; 2]> {
    let dir = ws.target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let md_path = dir.join(format!("{name}.md"));
    let json_path = dir.join(format!("{name}.json"));
    std::fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    Ok([md_path, json_path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_and_selection() {
        let mut skipped = Vec::new();
        assert_eq!(
            targets(&[], true, &mut skipped),
            [TargetKind::Host, TargetKind::Linux, TargetKind::Stardust]
        );
        assert_eq!(
            targets(&[], false, &mut skipped),
            [TargetKind::Linux, TargetKind::Stardust]
        );
        assert!(skipped.is_empty());
        let asked = [
            TargetKind::Linux,
            TargetKind::User,
            TargetKind::Linux,
            TargetKind::Host,
        ];
        assert_eq!(targets(&asked, false, &mut skipped), [TargetKind::Linux]);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(
            skipped[0].contains("`user`") && skipped[0].contains("linux, stardust"),
            "{skipped:?}"
        );
        targets(&[TargetKind::StardustUser], true, &mut skipped);
        assert!(skipped[2].contains("`stardust-user`"), "{skipped:?}");
    }

    #[test]
    fn sparse_images_are_zeros_of_the_size_asked() {
        let path = std::env::temp_dir().join(format!("storage-sparse-{}.img", std::process::id()));
        sparse_image(&path, 3 << 20).expect("created");
        let bytes = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(bytes.len(), 3 << 20);
        assert!(bytes.iter().all(|b| *b == 0));
    }
}
