//! `cargo xtask`: build, run, test, size and bench Stardust images. See README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use xtask::bail;
use xtask::bench;
use xtask::error::{Error, Result};
use xtask::image::{self, CargoCommand};
use xtask::qemu::{self, Accel, Machine, Outcome, QemuConfig};
use xtask::setup;
use xtask::size::{self, SizeReport};
use xtask::testcmd;
use xtask::workspace::{Workspace, display_path};
use xtask::{xenlab, xenlab_run};

#[path = "xenlab_cli.rs"]
mod xenlab_cli;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run, test, size and bench Stardust images"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build an image; its path is the last line of stdout (progress goes to stderr).
    Build(BuildArgs),
    /// Build an image and boot it in QEMU (or, with platform xen, in the Xen lab); exits with
    /// the guest's exit status.
    Run(RunArgs),
    /// Run every test: host unit tests, then whole-image tests.
    Test,
    /// Stripped image size per profile, with a per-crate breakdown; fails over budget.
    Size(SizeArgs),
    /// Regression benches of every profile (size, boot time, minimum memory) against budgets.
    Bench(BenchArgs),
    /// Install what is missing: the x86_64-unknown-none target, QEMU.
    Setup,
    /// The Xen lab: real Xen 4.17 + Debian dom0 in QEMU (TCG) that runs guests with `xl create`.
    XenLab {
        #[command(subcommand)]
        cmd: xenlab_cli::XenLabCmd,
    },
    /// Regenerate platform-xen/xen-sys/src/bindings.rs from the Xen public headers (needs the
    /// `bindgen` command and libclang; only this command does).
    GenXenSys {
        /// The directory holding xen/xen.h.
        #[arg(long, default_value = "/usr/include")]
        include: PathBuf,
        /// Only check that the committed bindings are what the headers give.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Args, Debug)]
struct ProfileArgs {
    /// Profile: profiles/PROFILE.toml.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Platform (overrides the profile's `platform`).
    #[arg(long, value_enum)]
    platform: Option<PlatformArg>,
    /// Override a profile key, e.g. `--set allocator=bump --set heap_size=4M` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ProfileArgs {
    fn overrides(&self) -> Vec<String> {
        let mut o = self.set.clone();
        if let Some(p) = self.platform {
            o.push(format!("platform={}", p.name()));
        }
        o
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum PlatformArg {
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
enum AccelArg {
    /// KVM when it is known to be real hardware virtualization, else TCG.
    #[default]
    Auto,
    Tcg,
    Kvm,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default)]
enum MachineArg {
    #[default]
    Q35,
    Microvm,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// App: a directory under apps/.
    app: String,
    #[command(flatten)]
    profile: ProfileArgs,
    /// Print the plain cargo command (with its environment) and exit without building.
    #[arg(long)]
    print_cargo: bool,
}

#[derive(Args, Debug)]
struct QemuArgs {
    /// Accelerator (default auto). `auto` takes KVM only when it is real (hardware KVM on a host
    /// that is not itself a VM); nested KVM is slower than TCG and breaks on some instructions.
    /// Not on Xen: the lab always runs TCG.
    #[arg(long, value_enum)]
    accel: Option<AccelArg>,
    /// Machine type (default q35: boots through qboot; falls back to microvm without
    /// qboot.rom). Not on Xen.
    #[arg(long, value_enum)]
    machine: Option<MachineArg>,
    /// Seconds before QEMU is killed (default 60, at most 604800; no limit with --gdb unless
    /// given). On Xen: seconds from `xl create` until the guest is destroyed (default 60).
    #[arg(long, value_name = "S")]
    timeout: Option<String>,
}

impl QemuArgs {
    fn apply(&self, cfg: &mut QemuConfig) -> Result<()> {
        (cfg.accel, cfg.machine) = self.resolve()?;
        Ok(())
    }

    /// The accelerator and machine asked for (saying which `auto` picked and why, and when q35
    /// falls back to microvm).
    fn resolve(&self) -> Result<(Accel, Machine)> {
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

    fn timeout(&self, default: Option<Duration>) -> Result<Option<Duration>> {
        match &self.timeout {
            None => Ok(default),
            Some(s) => qemu::parse_timeout("--timeout", s).map(Some),
        }
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// App: a directory under apps/ (not needed with --image).
    #[arg(required_unless_present = "image")]
    app: Option<String>,
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    qemu: QemuArgs,
    /// Kernel options, e.g. "log=debug bootchart".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    kargs: String,
    /// Start halted with QEMU's GDB server on 127.0.0.1 (port --gdb-port, else a free one) and
    /// print the gdb command.
    #[arg(long)]
    gdb: bool,
    /// The GDB server's TCP port (with --gdb; default: a free port, printed).
    #[arg(long, value_name = "PORT", requires = "gdb",
          value_parser = clap::value_parser!(u16).range(1..))]
    gdb_port: Option<u16>,
    /// Boot this image instead of building one (the profile still gives memory and console).
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// Arguments for the app (after `--`).
    #[arg(last = true, value_name = "APP-ARGS")]
    app_args: Vec<String>,
}

#[derive(Args, Debug)]
struct SizeArgs {
    /// App (default: hello).
    #[arg(default_value = "hello")]
    app: String,
    /// Profile(s) to measure (repeatable; default: all profiles).
    #[arg(long = "profile", value_name = "PROFILE")]
    profiles: Vec<String>,
    /// Override a profile key (repeatable), applied to every profile.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Machine-readable output (a JSON array of reports on stdout).
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BenchWhich {
    /// Stripped image bytes per profile and app, per crate, against benches/baseline.json.
    Size,
    /// QEMU start to first line and to exit, as a ratio to the empty PVH kernel; boot chart.
    Boot,
    /// The smallest -m that still boots (binary search).
    Memory,
    /// size, boot and memory.
    All,
    /// The allocators side by side: throughput, fragmentation, size delta, minimum memory.
    Alloc,
    /// The schedulers side by side: switch time, spawn + join, wake-up latency, size delta.
    Sched,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Which benches (default: all).
    #[arg(value_enum)]
    which: Vec<BenchWhich>,
    /// Profile(s) to measure (repeatable; default: every profiles/*.toml).
    #[arg(long = "profile", value_name = "PROFILE")]
    profiles: Vec<String>,
    /// App(s) to measure with each profile (repeatable; default: hello). Budgets apply to each.
    #[arg(long = "app", value_name = "APP")]
    apps: Vec<String>,
    /// Override a profile key (repeatable), applied to every profile.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Boots of each kernel (the app and the empty kernel) in the boot bench.
    #[arg(long, default_value_t = xtask::bench::boot::DEFAULT_RUNS)]
    runs: usize,
    #[command(flatten)]
    qemu: QemuArgs,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Fail when a figure is over its profile's budget (or the profile has none for it).
    #[arg(long)]
    check: bool,
    /// Write the measured sizes to benches/baseline.json (the size bench only).
    #[arg(long)]
    save_baseline: bool,
    /// Boots per allocator and workload in the allocator bench, and per scheduler in the
    /// scheduler bench (the median is reported).
    #[arg(long, default_value_t = 3)]
    alloc_runs: usize,
}

fn bench_cmd(ws: &Workspace, mut args: BenchArgs) -> Result<ExitCode> {
    // Bounds first, before any bench runs.
    let timeout = args.qemu.timeout(None)?;
    // Before anything runs: an unwritable --json path would waste the whole bench.
    if let Some(path) = &args.json {
        let only_tables = !args.which.is_empty()
            && args
                .which
                .iter()
                .all(|w| matches!(w, BenchWhich::Sched | BenchWhich::Alloc));
        if only_tables {
            bail!(
                "--json writes the size, boot and memory figures; `bench sched` and `bench alloc` \
                 print a table only (add size, boot, memory or all, or drop --json)"
            );
        }
        bench::check_json_path(path)?;
    }
    if args.which.contains(&BenchWhich::Sched) {
        let (none, results) = xtask::schedbench::run(ws, args.alloc_runs.max(1))?;
        println!("{}", xtask::schedbench::markdown(none, &results));
        args.which.retain(|w| *w != BenchWhich::Sched);
        if args.which.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if args.which.contains(&BenchWhich::Alloc) {
        let results = xtask::allocbench::run(
            ws,
            &xtask::allocbench::Options {
                runs: args.alloc_runs.max(1),
                memory: true,
            },
        )?;
        println!("{}", xtask::allocbench::markdown(&results));
        args.which.retain(|w| *w != BenchWhich::Alloc);
        if args.which.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut which = args.which.clone();
    if which.is_empty() || which.contains(&BenchWhich::All) {
        which = vec![BenchWhich::Size, BenchWhich::Boot, BenchWhich::Memory];
    }
    let benches: Vec<bench::Bench> = which
        .iter()
        .map(|w| match w {
            BenchWhich::Size => bench::Bench::Size,
            BenchWhich::Boot => bench::Bench::Boot,
            _ => bench::Bench::Memory,
        })
        .collect();
    let needs_qemu = benches.iter().any(|b| *b != bench::Bench::Size);
    let (accel, machine) = if needs_qemu {
        args.qemu.resolve()?
    } else {
        (Accel::Tcg, Machine::Q35)
    };
    let opts = bench::Options {
        benches,
        profiles: args.profiles,
        apps: args.apps,
        overrides: args.set,
        runs: args.runs,
        accel,
        machine,
        timeout,
        json: args.json,
        check: args.check,
        save_baseline: args.save_baseline,
    };
    bench::run(ws, &opts).map(|_| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // First, before any thread: SIGTERM, SIGINT and SIGHUP kill every QEMU xtask started, then
    // end xtask by that signal (see xtask/src/child.rs).
    xtask::child::stop_on_signals();
    // `run` exits with the guest's status, so its own failures (bad options, a failed build)
    // must not look like one: they are "the guest never ran" (125), as `timeout(1)` does.
    let run = std::env::args().nth(1).as_deref() == Some("run");
    let failure = if run {
        ExitCode::from(xtask::status::NEVER_RAN)
    } else {
        ExitCode::FAILURE
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match (e.use_stderr(), run) {
                (false, _) => ExitCode::SUCCESS, // --help, --version
                (true, true) => failure,
                (true, false) => ExitCode::from(2),
            };
        }
    };
    let ws = Workspace::locate();
    match dispatch(&ws, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            failure
        }
    }
}

fn dispatch(ws: &Workspace, cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Build(args) => build(ws, args),
        Cmd::Run(args) => run(ws, args),
        Cmd::Test => testcmd::run_all(ws).map(|()| ExitCode::SUCCESS),
        Cmd::Size(args) => size_cmd(ws, args),
        Cmd::Bench(args) => bench_cmd(ws, args),
        Cmd::Setup => setup::setup_all(ws).map(|()| ExitCode::SUCCESS),
        Cmd::XenLab { cmd } => xenlab_cli::dispatch(cmd),
        Cmd::GenXenSys { include, check } => {
            xtask::gen_xen_sys::generate(ws, &include, check).map(|()| ExitCode::SUCCESS)
        }
    }
}

fn build(ws: &Workspace, args: BuildArgs) -> Result<ExitCode> {
    let profile = ws.load_profile(&args.profile.profile, &args.profile.overrides())?;
    ws.check_app(&args.app)?;
    ws.check_app_fits(&args.app, &profile)?;
    if args.print_cargo {
        println!(
            "{}",
            CargoCommand::for_image(&profile, &args.app).shell_line()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let image = image::build(ws, &args.app, &profile)?;
    eprintln!(
        "xtask: {} bytes stripped; symbols in {}",
        image.bytes,
        display_path(&image.debug)
    );
    println!("{}", display_path(&image.elf));
    Ok(ExitCode::SUCCESS)
}

fn run(ws: &Workspace, args: RunArgs) -> Result<ExitCode> {
    // Bounds first, before anything is built.
    args.qemu.timeout(None)?;
    let profile = ws.load_profile(&args.profile.profile, &args.profile.overrides())?;
    if let Some(app) = &args.app {
        ws.check_app(app)?;
        ws.check_app_fits(app, &profile)?;
    }
    xtask::cmdline::check_kargs(&args.kargs)?;
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
        if let Some(why) = xenlab_run::unavailable_message(&xenlab::Lab::from_env()) {
            eprintln!("error: {why}");
            return Ok(ExitCode::from(xenlab_run::LAB_EXIT));
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
    xtask::image::check_image_end(end, &profile)?;
    if profile.settings.memory <= end {
        let needed = xtask::profile::size_text(xtask::profile::memory_for_image_end(end));
        bail!(
            "memory = {} is too small: the image alone ends at {:#x} ({} KiB); raise it to at \
             least {needed} (the image's end rounded up to a MiB, plus a MiB for page tables \
             and the heap): --set memory={needed}",
            xtask::profile::size_text(profile.settings.memory),
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
    cfg.gdb = match (args.gdb, args.gdb_port) {
        (false, _) => None,
        (true, Some(port)) => Some(port),
        (true, None) => Some(qemu::free_port()?),
    };
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
fn check_image(
    file: &std::path::Path,
    profile: &xtask::profile::Profile,
) -> Result<Option<xenlab::GuestType>> {
    let on = |e: Error| Error::new(format!("--image {}: {e}", file.display()));
    let bytes = xtask::image::read_image_file(file).map_err(on)?;
    let platform = if profile.platform == "xen" {
        "xen"
    } else {
        "kvm"
    };
    xtask::image::check_prebuilt(&bytes, platform).map_err(on)
}

/// The options that only mean something to QEMU on the KVM platform.
fn check_xen_run_args(args: &RunArgs) -> Result<()> {
    let qemu_only = [
        ("--gdb", args.gdb),
        ("--accel", args.qemu.accel.is_some()),
        ("--machine", args.qemu.machine.is_some()),
    ];
    if let Some((flag, _)) = qemu_only.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} is for QEMU on the KVM platform; on Xen the lab boots Xen + dom0 in QEMU \
             (TCG) and runs the image with `xl create`"
        );
    }
    Ok(())
}

/// `run` on platform xen: the image as the only guest of one lab boot (see xenlab_run.rs).
fn run_xen(
    args: &RunArgs,
    profile: &xtask::profile::Profile,
    elf: PathBuf,
    guest_type: Option<xenlab::GuestType>,
) -> Result<ExitCode> {
    let timeout = args.qemu.timeout(Some(xenlab::DEFAULT_GUEST_TIMEOUT))?;
    let timeout = timeout.unwrap_or(xenlab::DEFAULT_GUEST_TIMEOUT);
    let name = elf
        .file_name()
        .map_or_else(|| "guest".into(), |n| n.to_string_lossy().into_owned());
    let mut spec = xenlab_run::guest_spec(
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
    eprintln!(
        "xtask: Xen {} guest {} ({} MiB, command line {:?}, time limit {} s)",
        spec.guest_type.name().to_uppercase(),
        display_path(&spec.kernel),
        spec.memory_mb,
        spec.cmdline.as_deref().unwrap_or(""),
        spec.timeout.as_secs()
    );
    let lab = xenlab::Lab::from_env();
    let run = match xenlab_run::run(&lab, &spec, &mut std::io::stdout().lock()) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(xenlab_run::LAB_EXIT));
        }
    };
    match &run.outcome {
        xenlab_run::XenOutcome::Exited { .. } => eprintln!("xtask: {}", run.outcome.message()),
        other => eprintln!("error: {}", other.message()),
    }
    if let (xenlab_run::XenOutcome::NoStatus(_), Some(cr2)) =
        (&run.outcome, xenlab_run::crash_cr2(&run.guest.xen_lines))
    {
        let debug = std::fs::read(spec.kernel.with_extension("debug")).ok();
        let guard = debug.as_deref().and_then(xenlab_run::stack_guard);
        let rsp = xenlab_run::crash_register(&run.guest.xen_lines, "rsp");
        eprintln!("xtask: {}", xenlab_run::crash_hint(cr2, rsp, guard));
    }
    Ok(ExitCode::from(run.outcome.exit_code()))
}

fn size_cmd(ws: &Workspace, args: SizeArgs) -> Result<ExitCode> {
    let profiles = if args.profiles.is_empty() {
        ws.profile_names()?
    } else {
        args.profiles.clone()
    };
    if profiles.is_empty() {
        return Err(Error::new("no profiles found (profiles/*.toml)"));
    }
    // Validate everything before the first (slow) build.
    let loaded = profiles
        .iter()
        .map(|p| ws.load_profile(p, &args.set))
        .collect::<Result<Vec<_>>>()?;
    ws.check_app(&args.app)?;
    let mut reports = Vec::new();
    for profile in &loaded {
        let image = image::build(ws, &args.app, profile)?;
        let report = SizeReport::of_image(&args.app, profile, &image)?;
        if !args.json {
            print!("{}", report.to_text());
        }
        reports.push(report);
    }
    if args.json {
        let items: Vec<String> = reports.iter().map(SizeReport::to_json).collect();
        println!("[{}]", items.join(",\n"));
    }
    let over: Vec<String> = reports
        .iter()
        .filter(|r| r.over_budget())
        .map(|r| {
            format!(
                "{} [{}] is {} bytes, budget {}",
                r.app,
                r.profile,
                size::group(r.image_bytes as i64),
                size::group(r.budget.unwrap_or(0) as i64)
            )
        })
        .collect();
    if !over.is_empty() {
        return Err(Error::new(format!(
            "image size over budget: {}",
            over.join("; ")
        )));
    }
    Ok(ExitCode::SUCCESS)
}
