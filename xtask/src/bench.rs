//! `cargo xtask bench [size|boot|memory|all]`: the regression benches of every profile, checked
//! against the budgets in each profile's `[budgets]` table.
//!
//! - [`size`]: stripped image bytes per profile and app, per crate, with the change against
//!   benches/baseline.json ([`baseline`]; rewritten only by `--save-baseline`).
//! - [`boot`]: QEMU spawn to the app's first line and to exit, as a ratio to the empty PVH kernel
//!   booted with the same command line, interleaved; plus the guest's boot chart ([`bootchart`]).
//! - [`memory`]: the smallest `-m` that still boots, by binary search.
//! - [`xen_net`]: `bench net --xen`, the networking workloads on Xen (Stardust and a Linux PV
//!   guest, from dom0, in one lab boot); [`kv_xen`]: `bench kv --xen`, `bench kv`'s workloads
//!   the same way.
//! - [`xen`]: boot and memory on Xen, in the Xen lab, when it is built here (else skipped, with
//!   the reason). Profiles whose platform is `xen` are measured there only.
//!
//! Results go to stdout as Markdown ([`report`]), to `target/bench/` as SVG charts ([`svg`]) and
//! `report.md`, and with `--json FILE` as JSON; progress goes to stderr. Every figure is checked
//! against its budget ([`budget`]); `--check` turns a violation into a failure.

pub mod alloc;
pub mod baseline;
pub mod boot;
pub mod bootchart;
pub mod budget;
pub mod disk;
pub mod kv;
pub mod kv_xen;
pub mod memory;
pub mod net;
pub mod report;
pub mod sched;
pub mod size;
pub mod smp;
pub mod stats;
pub mod storage;
pub mod svg;
pub mod xen;
pub mod xen_net;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::cmd::setup;
use crate::image::{self, Image};
use crate::profile::Profile;
use crate::qemu::{self, Accel, Machine, QemuConfig};
use crate::strip;
use crate::workspace::{Workspace, display_path};
use anyhow::bail;
use anyhow::{Context, Error, Result};

pub use report::Report;

/// One of the benches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bench {
    /// Image size.
    Size,
    /// Boot time.
    Boot,
    /// Minimum memory.
    Memory,
}

/// The app every profile is measured with when no `--app` is given.
pub const DEFAULT_APP: &str = "hello";

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Benches to run (any order, duplicates ignored); they run as size, boot, memory.
    pub benches: Vec<Bench>,
    /// Profiles (empty: every `profiles/*.toml`).
    pub profiles: Vec<String>,
    /// Apps (empty: [`DEFAULT_APP`]).
    pub apps: Vec<String>,
    /// `--set KEY=VALUE` overrides, applied to every profile.
    pub overrides: Vec<String>,
    /// Boots of each kernel in the boot bench.
    pub runs: usize,
    /// QEMU accelerator.
    pub accel: Accel,
    /// QEMU machine.
    pub machine: Machine,
    /// Time limit of one boot (default: 60 s for the boot bench, 20 s per memory probe).
    pub timeout: Option<Duration>,
    /// Also write the report as JSON here.
    pub json: Option<PathBuf>,
    /// Fail when a figure is over budget (or has none).
    pub check: bool,
    /// Rewrite benches/baseline.json with the sizes measured.
    pub save_baseline: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            benches: vec![Bench::Size, Bench::Boot, Bench::Memory],
            profiles: Vec::new(),
            apps: Vec::new(),
            overrides: Vec::new(),
            runs: boot::DEFAULT_RUNS,
            accel: Accel::Tcg,
            machine: Machine::Q35,
            timeout: None,
            json: None,
            check: false,
            save_baseline: false,
        }
    }
}

/// A progress line on stderr.
fn progress(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

/// Images built in this run, by (profile tag, app), so later benches do not rebuild.
#[derive(Default)]
struct Images(HashMap<(String, String), Image>);

impl Images {
    fn get(&mut self, ws: &Workspace, app: &str, profile: &Profile) -> Result<Image> {
        let key = (profile.tag(), app.to_string());
        if let Some(image) = self.0.get(&key) {
            return Ok(image.clone());
        }
        let image = image::build(ws, app, profile)?;
        self.0.insert(key, image.clone());
        Ok(image)
    }
}

/// `items` without repeats, in first-seen order.
fn unique(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

/// Validates `opts` and loads the profiles, before anything slow starts.
/// Fails unless `--json FILE` can be written, before any bench runs (opening it to append
/// creates nothing that stays: a file that did not exist is removed again).
pub fn check_json_path(path: &std::path::Path) -> Result<()> {
    let existed = path.exists();
    if path.is_dir() {
        bail!(
            "--json {}: this is a directory; name a file to write",
            path.display()
        );
    }
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => bail!("--json {}: cannot write there: {e}", path.display()),
    }
}

fn prepare(ws: &Workspace, opts: &Options) -> Result<(Vec<Profile>, Vec<String>)> {
    if opts.benches.is_empty() {
        bail!("no bench selected (size, boot, memory or all)");
    }
    if let Some(path) = &opts.json {
        check_json_path(path)?;
    }
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if opts.save_baseline {
        if !opts.benches.contains(&Bench::Size) {
            bail!(
                "--save-baseline saves image sizes: run it with the size bench (`cargo xtask bench size --save-baseline`)"
            );
        }
        if !opts.overrides.is_empty() {
            bail!("--save-baseline records the profiles as profiles/ defines them; drop --set");
        }
    }
    let names = if opts.profiles.is_empty() {
        ws.profile_names()?
    } else {
        unique(&opts.profiles)
    };
    if names.is_empty() {
        bail!("no profiles found (profiles/*.toml)");
    }
    let profiles = names
        .iter()
        .map(|p| ws.load_profile(p, &opts.overrides))
        .collect::<Result<Vec<_>>>()?;
    let apps = if opts.apps.is_empty() {
        vec![DEFAULT_APP.to_string()]
    } else {
        unique(&opts.apps)
    };
    for app in apps
        .iter()
        .map(String::as_str)
        .chain(profiles.iter().map(Profile::image_app))
    {
        ws.check_app(app)?;
    }
    Ok((profiles, apps))
}

/// What the size bench measures: every `--app` with every profile, or else each profile's
/// `image_app` (the app its `image_bytes` budget is for; hello unless it names one).
fn size_pairs<'a>(profiles: &'a [Profile], apps: &[String]) -> Vec<(&'a Profile, String)> {
    profiles
        .iter()
        .flat_map(|p| match apps {
            [] => vec![(p, p.image_app().to_string())],
            apps => apps.iter().map(|a| (p, a.clone())).collect(),
        })
        .collect()
}

/// Runs the benches, prints the report, writes charts, JSON and (when asked) the baseline.
/// Fails when a measurement failed, or with `check` when a figure violates its budget.
pub fn run(ws: &Workspace, opts: &Options) -> Result<Report> {
    let (profiles, apps) = prepare(ws, opts)?;
    let mut benches = opts.benches.clone();
    benches.sort();
    benches.dedup();
    let mut report = Report {
        rustc: baseline::rustc_version(&ws.root),
        ..Report::default()
    };
    let mut images = Images::default();
    let pairs: Vec<(&Profile, &String)> = profiles
        .iter()
        .flat_map(|p| apps.iter().map(move |a| (p, a)))
        .collect();
    let baseline_path = ws.root.join(baseline::PATH);
    let saved = baseline::Baseline::load(&baseline_path)?;
    report.baseline_rustc = saved.as_ref().and_then(|b| b.rustc.clone());

    if benches.contains(&Bench::Size) {
        let sized_pairs = size_pairs(&profiles, &unique(&opts.apps));
        for (i, (profile, app)) in sized_pairs.iter().enumerate() {
            progress(format_args!(
                "size {}/{}: {app} [{}]",
                i + 1,
                sized_pairs.len(),
                profile.tag()
            ));
            let image = images.get(ws, app, profile)?;
            let sized = crate::size::SizeReport::of_image(app, profile, &image)?;
            let base = saved.as_ref().and_then(|b| b.find(&profile.tag(), app));
            report.size.push(size::SizeResult::new(&sized, base));
        }
    }

    let needs_qemu = benches.contains(&Bench::Boot) || benches.contains(&Bench::Memory);
    // QEMU boots PVH images; a profile on the Xen platform is measured in the Xen lab only.
    let on_qemu: Vec<(&Profile, &String)> = pairs
        .iter()
        .copied()
        .filter(|(p, _)| p.platform != XEN)
        .collect();
    if needs_qemu {
        for p in profiles.iter().filter(|p| p.platform == XEN) {
            report.skipped.push(format!(
                "profile `{}` is on the Xen platform: QEMU does not boot it (see the Xen figures)",
                p.tag()
            ));
        }
    }
    let qemu_bin = if needs_qemu && !on_qemu.is_empty() {
        Some(setup::ensure_qemu()?)
    } else {
        None
    };
    let config = |profile: &Profile, image: &Image| -> QemuConfig {
        let mut cfg = QemuConfig::new(
            qemu_bin.clone().unwrap_or_default(),
            image.elf.clone(),
            profile,
        );
        cfg.accel = opts.accel;
        cfg.machine = opts.machine;
        cfg
    };

    if benches.contains(&Bench::Boot) {
        let empty = image::build_empty_kernel(ws)?;
        let timeout = opts.timeout.unwrap_or(qemu::DEFAULT_TIMEOUT);
        for (i, (profile, app)) in on_qemu.iter().enumerate() {
            let image = images.get(ws, app, profile)?;
            let cfg = config(profile, &image);
            let step = format!(
                "boot {}/{}: {app} [{}]",
                i + 1,
                on_qemu.len(),
                profile.tag()
            );
            progress(format_args!("{step}: {}", cfg.shell_line()));
            let runs = opts.runs;
            let measured = boot::measure(
                &cfg,
                &empty.elf,
                &image.elf,
                app,
                runs,
                timeout,
                |run, e, a| {
                    progress(format_args!(
                        "{step}: run {}/{runs}: empty {:.1} ms, {app} {:.1} ms (first line {})",
                        run + 1,
                        e.elapsed.as_secs_f64() * 1e3,
                        a.elapsed.as_secs_f64() * 1e3,
                        boot::first_app_line_ms(a).map_or("none".into(), |t| format!("{t:.1} ms"))
                    ))
                },
            );
            match measured {
                Ok((samples, bootchart)) => {
                    let (empty_t, image_t, first, exit, pairs) = samples.summarize();
                    report.boot.push(boot::BootResult {
                        profile: profile.tag(),
                        app: app.to_string(),
                        machine: cfg.effective_machine().name().into(),
                        accel: cfg.accel.name().into(),
                        command: cfg.shell_line(),
                        empty: empty_t,
                        image: image_t,
                        ratio_first_line: first,
                        ratio_exit: exit,
                        pair_ratios: pairs,
                        budget: profile.budgets.boot_ratio,
                        bootchart,
                    });
                }
                Err(e) => {
                    progress(format_args!("{step}: FAILED: {e:#}"));
                    report
                        .errors
                        .push(format!("boot [{}] {app}: {e:#}", profile.tag()));
                }
            }
        }
    }

    if benches.contains(&Bench::Memory) {
        let timeout = opts.timeout.unwrap_or(memory::PROBE_TIMEOUT);
        for (i, (profile, app)) in on_qemu.iter().enumerate() {
            let image = images.get(ws, app, profile)?;
            let cfg = config(profile, &image);
            let end = image_end(&image.elf)?;
            let step = format!(
                "memory {}/{}: {app} [{}]",
                i + 1,
                on_qemu.len(),
                profile.tag()
            );
            let (found, probes) = memory::min_memory(&cfg, end, timeout, |m, outcome| {
                progress(format_args!(
                    "{step}: -m {} KiB: {}",
                    m / 1024,
                    match outcome {
                        qemu::Outcome::Guest(0) => "ok".to_string(),
                        other => other.message(),
                    }
                ))
            })?;
            if found.is_none() {
                report.errors.push(format!(
                    "memory [{}] {app}: does not boot even with memory = {} KiB (the profile's setting)",
                    profile.tag(),
                    cfg.memory / 1024
                ));
            }
            report.memory.push(memory::MemoryResult {
                profile: profile.tag(),
                app: app.to_string(),
                machine: cfg.effective_machine().name().into(),
                accel: cfg.accel.name().into(),
                min_memory: found,
                image_end: end,
                ceiling: cfg.memory,
                step: memory::STEP,
                probes,
                budget: profile.budgets.min_memory,
            });
        }
    }

    if needs_qemu {
        bench_xen(ws, opts, &benches, &pairs, &mut images, &mut report)?;
    }

    report.violations = budget::check(&report.size, &report.boot, &report.memory);
    let markdown = report.markdown(opts.check);
    print!("{markdown}");
    write_outputs(ws, opts, &report, &markdown)?;
    if opts.save_baseline {
        let mut b = saved.unwrap_or_default();
        b.update(&report.size, &ws.profile_names()?, report.rustc.clone());
        std::fs::write(&baseline_path, b.to_json())
            .with_context(|| format!("writing {}", baseline_path.display()))?;
        progress(format_args!("baseline saved to {}", baseline::PATH));
    }

    let mut failures: Vec<String> = report.errors.clone();
    if opts.check {
        failures.extend(
            report
                .violations
                .iter()
                .map(|v| format!("over budget: {v}")),
        );
    }
    match failures.len() {
        0 => Ok(report),
        1 => Err(Error::msg(failures.remove(0))),
        n => Err(Error::msg(format!(
            "{n} bench failures:\n  {}",
            failures.join("\n  ")
        ))),
    }
}

/// The Xen platform's name (its profiles boot in the Xen lab, not in QEMU).
pub const XEN: &str = "xen";

/// The Xen half of the boot and memory benches: every profile (as itself on the Xen platform,
/// else with `platform=xen`) in the Xen lab, or a `skipped` note saying why not.
fn bench_xen(
    ws: &Workspace,
    opts: &Options,
    benches: &[Bench],
    pairs: &[(&Profile, &String)],
    images: &mut Images,
    report: &mut Report,
) -> Result<()> {
    let names: Vec<&str> = benches
        .iter()
        .filter_map(|b| match b {
            Bench::Boot => Some("boot"),
            Bench::Memory => Some("memory"),
            Bench::Size => None,
        })
        .collect();
    let lab = crate::xenlab::Lab::from_env();
    if let Err(reason) = xen::availability(ws, &lab) {
        for b in names {
            let note = xen::skipped(b, &reason);
            progress(note.line());
            report.xen.push(note);
        }
        return Ok(());
    }
    let mut targets = Vec::new();
    // Every profile as a PV guest and as a PVH guest (unless it chose its mode itself).
    let modes: [Option<&str>; 2] = [None, Some("xen_guest=pvh")];
    for ((profile, app), mode) in pairs
        .iter()
        .flat_map(|pair| modes.iter().map(move |m| (pair, *m)))
    {
        // The universal image (`platform = "universal"`) runs on Xen as it is, as a PVH guest.
        let universal = profile.platform == "universal";
        let declared = profile.platform == XEN || universal;
        if mode.is_some()
            && (universal
                || profile.xen_pvh()
                || opts.overrides.iter().any(|s| s.contains("xen_guest")))
        {
            continue;
        }
        let on_xen = if declared && mode.is_none() {
            Ok((*profile).clone())
        } else {
            let mut sets = opts.overrides.clone();
            sets.push(format!("platform={XEN}"));
            sets.extend(mode.map(str::to_string));
            ws.load_profile(&profile.name, &sets)
        };
        let built = on_xen.and_then(|p| images.get(ws, app, &p).map(|i| (p, i)));
        match built {
            Ok((p, image)) => targets.push(xen::Target {
                profile: p.tag(),
                app: app.to_string(),
                image_end: image_end(&image.elf)?,
                elf: image.elf,
                memory: p.settings.memory,
                declared,
                guest_type: if universal {
                    crate::xenlab::GuestType::Pvh
                } else {
                    crate::cmd::run::xen::guest_type(&p)
                },
            }),
            Err(e) => report.skipped.push(format!(
                "{app} [{}] on Xen: {}",
                profile.tag(),
                format!("{e:#}").lines().next().unwrap_or_default()
            )),
        }
    }
    let work = xen::Work {
        boot_runs: benches.contains(&Bench::Boot).then_some(opts.runs),
        memory: benches.contains(&Bench::Memory),
    };
    let dir = ws.target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let measured = xen::measure(&lab, &targets, work, &dir, progress)?;
    progress(&measured.lab);
    report.xen_lab = Some(measured.lab);
    report.xen_boot = measured.boot;
    report.xen_memory = measured.memory;
    report.errors.extend(measured.errors);
    report.xen_failures = measured.failures;
    Ok(())
}

/// Writes `target/bench/{report.md,size.svg,boot.svg}` and the `--json` file.
fn write_outputs(ws: &Workspace, opts: &Options, report: &Report, markdown: &str) -> Result<()> {
    let dir = ws.target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = vec![("report.md", markdown.to_string())];
    if !report.size.is_empty() {
        files.push(("size.svg", svg::size_chart(&report.size)));
    }
    if !report.boot.is_empty() || !report.xen_boot.is_empty() {
        files.push(("boot.svg", svg::boot_chart(&report.boot, &report.xen_boot)));
    }
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(display_path(&path));
    }
    if let Some(path) = &opts.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(display_path(path));
    }
    progress(format_args!("wrote {}", written.join(", ")));
    Ok(())
}

/// One past the highest physical byte the image at `path` loads.
pub fn image_end(path: &std::path::Path) -> Result<u64> {
    let bytes = std::fs::read(path).context(format!("reading {}", path.display()))?;
    strip::load_end(&bytes).with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped_in_order() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(unique(&v(&["b", "a", "b", "c", "a"])), v(&["b", "a", "c"]));
    }

    #[test]
    fn the_json_path_is_checked_first_and_nothing_is_left_behind() {
        let dir = std::env::temp_dir();
        let e = check_json_path(&dir).unwrap_err().to_string();
        assert!(e.contains("this is a directory"), "{e}");
        let e = check_json_path(std::path::Path::new("/no/such/dir/out.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot write there"), "{e}");
        let fresh = dir.join(format!("xtask-bench-{}.json", std::process::id()));
        check_json_path(&fresh).expect("writable");
        assert!(!fresh.exists(), "the probe leaves no file behind");
        std::fs::write(&fresh, "keep").expect("temp file");
        check_json_path(&fresh).expect("an existing file is writable");
        let kept = std::fs::read_to_string(&fresh).expect("still there");
        let _ = std::fs::remove_file(&fresh);
        assert_eq!(
            kept, "keep",
            "an existing file is not truncated by the check"
        );
        let ws = Workspace::locate();
        let e = prepare(
            &ws,
            &Options {
                json: Some(dir.clone()),
                ..Options::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--json"), "{e}");
    }

    #[test]
    fn options_are_checked_before_anything_runs() {
        let ws = Workspace::locate();
        let err = |o: Options| prepare(&ws, &o).err().map(|e| e.to_string());
        let e = err(Options {
            runs: 0,
            ..Options::default()
        });
        assert!(e.is_some_and(|e| e.contains("at least 1")));
        let e = err(Options {
            benches: vec![Bench::Boot],
            save_baseline: true,
            ..Options::default()
        });
        assert!(e.is_some_and(|e| e.contains("size bench")));
        let e = err(Options {
            benches: vec![Bench::Size],
            save_baseline: true,
            overrides: vec!["image_bytes=1".into()],
            ..Options::default()
        });
        assert!(e.is_some_and(|e| e.contains("drop --set")));
        let e = err(Options {
            benches: vec![],
            ..Options::default()
        });
        assert!(e.is_some_and(|e| e.contains("no bench selected")));
        // Every profile, and hello, by default.
        let (profiles, apps) = prepare(&ws, &Options::default()).expect("valid");
        let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        assert_eq!(names, ws.profile_names().expect("profiles/"));
        assert_eq!(apps, [DEFAULT_APP]);
    }

    #[test]
    fn the_size_bench_measures_each_profiles_image_app_unless_apps_are_given() {
        let ws = Workspace::locate();
        let load = |name: &str, sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            ws.load_profile(name, &sets).expect("valid profile")
        };
        let profiles = [load("default", &[]), load("default", &["image_app=echo"])];
        let names = |pairs: Vec<(&Profile, String)>| -> Vec<String> {
            pairs.into_iter().map(|(_, a)| a).collect()
        };
        assert_eq!(names(size_pairs(&profiles, &[])), ["hello", "echo"]);
        let apps = ["hello".to_string(), "httpd".to_string()];
        assert_eq!(
            names(size_pairs(&profiles, &apps)),
            ["hello", "httpd", "hello", "httpd"]
        );
        // The net profile's budget is for httpd, and an unknown app is refused before building.
        assert_eq!(load("net", &[]).image_app(), "httpd");
        let e = prepare(
            &ws,
            &Options {
                overrides: vec!["image_app=nosuchapp".into()],
                ..Options::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown app `nosuchapp`"), "{e}");
    }
}
