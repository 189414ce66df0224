//! `cargo xtask gen-xen-sys`: regenerates `platform-xen/xen-sys/src/bindings.rs` from the Xen
//! public headers with the `bindgen` command-line tool.
//!
//! The bindings are generated once and committed; nothing runs bindgen at build time, so
//! libclang is needed only here. On Debian: `apt-get install libxen-dev bindgen libclang1-14
//! libclang-common-14-dev` (headers in /usr/include/xen; `--include DIR` for others).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::setup::find_in_path;
use crate::workspace::Workspace;
use anyhow::bail;
use anyhow::{Context, Result};

/// The options of `gen-xen-sys`.
#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// The directory holding xen/xen.h.
    #[arg(long, default_value = "/usr/include")]
    pub include: PathBuf,
    /// Only check that the committed bindings are what the headers give.
    #[arg(long)]
    pub check: bool,
}

/// The Xen interface version the bindings are generated for (Xen 4.14 and later; the
/// latest the 4.17 headers know).
pub const INTERFACE_VERSION: &str = "0x00040e00";

/// The types xen-sys binds (bindgen `--allowlist-type` regexes).
pub const TYPES: &[&str] = &[
    "start_info",
    "shared_info",
    "vcpu_info",
    "vcpu_time_info",
    "arch_shared_info",
    "arch_vcpu_info",
    "mmu_update",
    "mmuext_op",
    "trap_info",
    "evtchn_.*",
    "gnttab_.*",
    "grant_entry_v1",
    "grant_ref_t",
    "grant_handle_t",
    "domid_t",
    "xen_pfn_t",
    "xen_ulong_t",
    "evtchn_port_t",
    "xsd_sockmsg",
    "xsd_sockmsg_type",
    "xenstore_domain_interface",
    "XENSTORE_RING_IDX",
    "xencons_interface",
    "XENCONS_RING_IDX",
    "xenbus_state",
    "sched_shutdown",
    "sched_poll",
    "vcpu_set_singleshot_timer",
    "vcpu_register_vcpu_info",
    "xen_hvm_param",
    "xen_hvm_evtchn_upcall_vector",
    "hvm_start_info",
    "hvm_memmap_table_entry",
    "hvm_modlist_entry",
    "xen_add_to_physmap",
    "xen_memory_reservation",
    "xen_feature_info",
];

/// The constants xen-sys binds (bindgen `--allowlist-var` regexes).
pub const VARS: &[&str] = &[
    "__HYPERVISOR_.*",
    "SCHEDOP_.*",
    "SHUTDOWN_.*",
    "EVTCHNOP_.*",
    "EVTCHNSTAT_.*",
    "GNTTABOP_.*",
    "GNTST_.*",
    "GTF_.*",
    "GNTMAP_.*",
    "MMU_.*",
    "MMUEXT_.*",
    "UVMF_.*",
    "VCPUOP_.*",
    "VCPU_SSHOTTMR_.*",
    "HVM_PARAM_.*",
    "HVMOP_.*",
    "XSD_.*",
    "XENSTORE_.*",
    "XS_.*",
    "XEN_ELFNOTE_.*",
    "VIRQ_.*",
    "XENMEM_.*",
    "XENMAPSPACE_.*",
    "XENVER_.*",
    "XENFEAT_.*",
    "XEN_HVM_START_.*",
    "XEN_HVM_MEMMAP_.*",
    "SIF_.*",
    "XEN_LEGACY_MAX_VCPUS",
    "CONSOLEIO_.*",
    "MAX_GUEST_CMDLINE",
    "VGCF_.*",
];

/// The directory of the xen-sys crate.
pub fn crate_dir(ws: &Workspace) -> PathBuf {
    ws.root.join("platform-xen").join("xen-sys")
}

/// The bindgen command line for `wrapper` with headers under `include`.
pub fn bindgen_args(wrapper: &Path, include: &Path) -> Vec<String> {
    let mut a = vec![
        wrapper.display().to_string(),
        "--use-core".into(),
        "--ctypes-prefix".into(),
        "core::ffi".into(),
        "--no-doc-comments".into(),
        "--allowlist-type".into(),
        TYPES.join("|"),
        "--allowlist-var".into(),
        VARS.join("|"),
        "--".into(),
        format!("-D__XEN_INTERFACE_VERSION__={INTERFACE_VERSION}"),
        "-I".into(),
        include.display().to_string(),
    ];
    a.shrink_to_fit();
    a
}

fn libxen_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "libxen-dev"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Regenerates the bindings; with `check`, only compares with the committed file.
pub fn generate(ws: &Workspace, include: &Path, check: bool) -> Result<()> {
    let Some(bindgen) = find_in_path("bindgen") else {
        bail!(
            "the `bindgen` command is not installed. On Debian/Ubuntu (as root):\n    \
             apt-get install -y bindgen libclang1-14 libclang-common-14-dev\n\
             or: cargo install bindgen-cli (needs libclang). Only this command needs it."
        );
    };
    if !include.join("xen/xen.h").is_file() {
        bail!(
            "no Xen public headers in {} (xen/xen.h). On Debian/Ubuntu: apt-get install -y libxen-dev; \
             or point --include at a Xen tree's xen/include/public parent",
            include.display()
        );
    }
    let dir = crate_dir(ws);
    let wrapper = dir.join("wrapper.h");
    let args = bindgen_args(&wrapper, include);
    let out = Command::new(&bindgen)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .context("running bindgen")?;
    if !out.status.success() {
        bail!(
            "bindgen failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tool = String::from_utf8_lossy(
        &Command::new(&bindgen)
            .arg("--version")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .trim()
    .to_string();
    let body = String::from_utf8_lossy(&out.stdout);
    let body = body.trim_start_matches("/* automatically generated by rust-bindgen 0.60.1 */\n");
    let text = format!(
        "// Generated by `cargo xtask gen-xen-sys` ({tool}) from the Xen public headers of\n\
         // Debian's libxen-dev {}, interface version {INTERFACE_VERSION}. Do not edit.\n\n{}",
        libxen_version(),
        body.trim_start()
    );
    let target = dir.join("src").join("bindings.rs");
    if check {
        let old = std::fs::read_to_string(&target).unwrap_or_default();
        let fresh = std::env::temp_dir().join(format!("xen-sys-{}.rs", std::process::id()));
        std::fs::write(&fresh, &text).context("writing a temporary file")?;
        rustfmt(&fresh);
        let new = std::fs::read_to_string(&fresh).unwrap_or_default();
        let _ = std::fs::remove_file(&fresh);
        if old != new {
            bail!(
                "{} is not what `cargo xtask gen-xen-sys` generates now",
                target.display()
            );
        }
        eprintln!("gen-xen-sys: {} is up to date", target.display());
        return Ok(());
    }
    std::fs::write(&target, &text).with_context(|| format!("writing {}", target.display()))?;
    rustfmt(&target);
    eprintln!(
        "gen-xen-sys: wrote {} ({} lines)",
        target.display(),
        std::fs::read_to_string(&target)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    );
    Ok(())
}

/// rustfmt keeps the committed file stable whatever bindgen's own formatting was.
fn rustfmt(file: &Path) {
    let _ = Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(file)
        .status();
}
