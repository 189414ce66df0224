//! Benches on Xen, in the lab ([`crate::xenlab`]): `xl create` to the first console line and to
//! shutdown, as a ratio to the lab's reference PV guest (`pvhello`) run interleaved in the same
//! lab boot, and the smallest domain `memory =` with which the image still boots and powers off.
//!
//! Each profile is measured as itself when its platform is `xen`, else with `platform = xen`
//! (which brings the Xen console). Booting the lab costs ~20 s of TCG and a guest ~1 s, so all
//! of a bench run's guests go into as few lab boots as the lab takes (99 guests each), each
//! batch opening with one unrecorded warm-up guest. dom0 polls each guest every 50 ms, which
//! bounds the resolution. The memory bench cannot bisect inside one lab boot, so it tries a
//! fixed ladder of sizes (1-8 MiB, then 12, 16, 24, 32, ... up to the profile's `memory`) and
//! takes the smallest from which every larger size also passed.
//!
//! When the lab cannot run (not built, `STARDUST_XENLAB=off`, no Xen platform) each bench reports
//! a [`XenNote`] saying `skipped` and why. Xen figures are reported, never checked against the
//! profile's budgets (those are defined on QEMU). A guest that fails fails the bench only when
//! its profile is on the Xen platform itself; a KVM profile the bench put on Xen is reported.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::boot::{BootResult, Samples};
use super::bootchart::Bootchart;
use super::memory::MemoryResult;
use crate::profile::PLATFORM;
use crate::workspace::Workspace;
use crate::xenlab::{self, BatchOptions, GuestResult, GuestSpec, GuestType, Lab, RefGuest};
use anyhow::Result;

/// The machine name Xen results carry.
pub const MACHINE: &str = "xen-lab PV";
/// The machine column of a PVH guest's results.
pub const MACHINE_PVH: &str = "xen-lab PVH";

impl Target {
    /// The machine column of this target's results.
    fn machine(&self) -> &'static str {
        match self.guest_type {
            GuestType::Pv => MACHINE,
            GuestType::Pvh => MACHINE_PVH,
        }
    }

    /// How its boots were made, for the report.
    fn command(&self) -> String {
        let reference = match self.guest_type {
            GuestType::Pv => "pvhello",
            GuestType::Pvh => "pvhhello",
        };
        format!(
            "xl create (type = \"{}\", memory = {}), beside the reference guest {reference}",
            self.guest_type.name(),
            self.memory >> 20
        )
    }
}

/// A Xen bench that did not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XenNote {
    /// Which bench (`boot`, `memory`).
    pub bench: String,
    /// What it would measure.
    pub what: String,
    /// `skipped`.
    pub status: String,
    /// Why, in a sentence.
    pub reason: String,
}

impl XenNote {
    /// The line the report prints.
    pub fn line(&self) -> String {
        format!(
            "Xen {} ({}): {}: {}",
            self.bench, self.what, self.status, self.reason
        )
    }
}

/// Whether Xen benches can run here: `Err(reason)` without a Xen platform or a usable lab.
pub fn availability(ws: &Workspace, lab: &Lab) -> std::result::Result<(), String> {
    let has_platform = ws
        .catalog()
        .ok()
        .and_then(|c| c.values(PLATFORM).map(|v| v.iter().any(|p| p == "xen")))
        .unwrap_or(false);
    if !has_platform {
        return Err("no Xen platform yet (crates/stardust has no `platform-xen` feature)".into());
    }
    lab.availability().map_err(|e| e.to_string())
}

/// The note for `bench` (`boot` or `memory`) while Xen is unavailable for `reason`.
pub fn skipped(bench: &str, reason: &str) -> XenNote {
    XenNote {
        bench: bench.into(),
        what: what(bench).into(),
        status: "skipped".into(),
        reason: reason.into(),
    }
}

fn what(bench: &str) -> &'static str {
    match bench {
        "boot" => "`xl create` to the first console line, as a ratio to the lab's reference guest",
        _ => "the smallest domain `memory =` with which the image still boots and passes",
    }
}

/// One image to measure on Xen.
#[derive(Debug, Clone)]
pub struct Target {
    /// Profile tag (with `+platform-xen...` when the platform was overridden).
    pub profile: String,
    /// App.
    pub app: String,
    /// The image.
    pub elf: PathBuf,
    /// The profile's `memory`, in bytes (guest memory of the boot runs; top of the ladder).
    pub memory: u64,
    /// One past the image's highest loaded byte.
    pub image_end: u64,
    /// The profile itself (or the user's `--set`) says `platform = "xen"`: failures are errors.
    /// Otherwise the bench put the profile on Xen, and failures are only reported.
    pub declared: bool,
    /// PV or PVH (`xen_guest`); a PVH image's boot reference is the lab's PVH probe guest.
    pub guest_type: GuestType,
}

/// What to run for every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// Interleaved pairs (reference, image) for the boot bench; `None`: no boot bench.
    pub boot_runs: Option<usize>,
    /// Run the memory ladder.
    pub memory: bool,
}

/// What the Xen benches measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Boot results (`empty` is the reference guest).
    pub boot: Vec<BootResult>,
    /// Memory results.
    pub memory: Vec<MemoryResult>,
    /// Failures that fail the bench: the lab itself, or an image of a profile whose own platform
    /// is Xen.
    pub errors: Vec<String>,
    /// Failures of images built for Xen only by the bench (`platform=xen` on a `kvm` profile):
    /// reported, not fatal.
    pub failures: Vec<String>,
    /// One line about the lab (Xen version, lab boots, time).
    pub lab: String,
}

/// The memory sizes (MiB) tried for an image ending at `image_end` with `memory` bytes at most.
pub fn memory_ladder(image_end: u64, memory: u64) -> Vec<u32> {
    let top = (memory >> 20).clamp(1, crate::xenlab::MAX_GUEST_MIB as u64) as u32;
    let floor = image_end.div_ceil(1 << 20).max(1) as u32;
    let mut ladder: Vec<u32> = (1..=8).collect();
    let mut m = 12;
    while m < top {
        ladder.push(m);
        m = if m.is_power_of_two() {
            m + m / 2
        } else {
            m / 3 * 4
        };
    }
    ladder.push(top);
    ladder.retain(|m| *m >= floor && *m <= top);
    ladder.dedup();
    ladder
}

/// The smallest tried size from which every larger tried size passed; `None` when the largest
/// failed. `tries` is `(MiB, passed)` in any order.
pub fn smallest_passing(tries: &[(u32, bool)]) -> Option<u32> {
    let mut t = tries.to_vec();
    t.sort();
    let mut best = None;
    for (mb, ok) in t.into_iter().rev() {
        if !ok {
            break;
        }
        best = Some(mb);
    }
    best
}

/// What each guest of a batch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Warmup,
    Reference(usize),
    Image(usize),
    Chart(usize),
    Memory(usize, u32),
}

fn guests_of(lab: &Lab, index: usize, t: &Target, work: Work) -> Vec<(Role, GuestSpec)> {
    let mb = (t.memory >> 20).clamp(1, crate::xenlab::MAX_GUEST_MIB as u64) as u32;
    let name = format!("{}/{}", t.profile, t.app);
    let reference_guest = match t.guest_type {
        GuestType::Pv => RefGuest::PvHello,
        GuestType::Pvh => RefGuest::PvhHello,
    };
    let reference = || GuestSpec::reference(lab, reference_guest).timeout(BOOT_TIMEOUT);
    let image = |what: String| {
        GuestSpec::new(format!("{name} {what}"), t.elf.clone())
            .guest_type(t.guest_type)
            .memory_mb(mb)
            .timeout(BOOT_TIMEOUT)
    };
    let mut g = Vec::new();
    if let Some(runs) = work.boot_runs {
        for run in 0..runs {
            let r = (Role::Reference(index), reference());
            let i = (Role::Image(index), image(format!("run {}", run + 1)));
            if run % 2 == 0 {
                g.extend([r, i]);
            } else {
                g.extend([i, r]);
            }
        }
        g.push((
            Role::Chart(index),
            image("bootchart".into()).cmdline("bootchart"),
        ));
    }
    if work.memory {
        for m in memory_ladder(t.image_end, t.memory) {
            g.push((
                Role::Memory(index, m),
                image(format!("memory = {m}"))
                    .memory_mb(m)
                    .timeout(PROBE_TIMEOUT),
            ));
        }
    }
    g
}

/// Time limit of a boot-bench guest.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit of a memory probe (a guest short of memory fails fast or hangs).
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e3)
}

/// One line for the boot-bench guests of an image that failed (`None` when none did): how many
/// of `total`, how they ended, and the first one's summary.
fn failure_line(failed: &[&GuestResult], total: usize) -> Option<String> {
    let first = failed.first()?;
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for g in failed {
        let k = g.shutdown.to_string();
        match kinds.iter_mut().find(|(name, _)| *name == k) {
            Some((_, n)) => *n += 1,
            None => kinds.push((k, 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    Some(format!(
        "{} of {total} boot guests failed ({}); first: {} (serial log in target/bench/xen-lab-*.log)",
        failed.len(),
        kinds.join(", "),
        first.summary()
    ))
}

/// Runs the Xen benches of `targets` in the lab; the serial logs go to `log_dir`.
pub fn measure(
    lab: &Lab,
    targets: &[Target],
    work: Work,
    log_dir: &std::path::Path,
    mut progress: impl FnMut(String),
) -> Result<Measured> {
    let per_batch = xenlab::MAX_GUESTS - 1;
    let groups: Vec<Vec<(Role, GuestSpec)>> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| guests_of(lab, i, t, work))
        .collect();
    if let Some(g) = groups.iter().find(|g| g.len() > per_batch) {
        anyhow::bail!(
            "the Xen benches of one image need {} guests, more than one lab boot runs ({per_batch}); lower --runs",
            g.len()
        );
    }
    // Pack whole groups into batches, each opening with a warm-up guest.
    let mut batches: Vec<Vec<(Role, GuestSpec)>> = Vec::new();
    for g in groups {
        match batches.last_mut() {
            Some(b) if b.len() + g.len() <= xenlab::MAX_GUESTS => b.extend(g),
            _ => {
                let warm = GuestSpec::reference(lab, RefGuest::PvHello).timeout(BOOT_TIMEOUT);
                let mut b = vec![(Role::Warmup, warm)];
                b.extend(g);
                batches.push(b);
            }
        }
    }
    let mut out = Measured::default();
    let mut results: Vec<(Role, GuestResult)> = Vec::new();
    let mut total = Duration::ZERO;
    for (n, batch) in batches.iter().enumerate() {
        progress(format!(
            "Xen lab boot {}/{}: {} guests (about {} s)",
            n + 1,
            batches.len(),
            batch.len(),
            20 + batch.len() * 2
        ));
        let specs: Vec<GuestSpec> = batch.iter().map(|(_, s)| s.clone()).collect();
        let opts = BatchOptions {
            log: Some(log_dir.join(format!("xen-lab-{}.log", n + 1))),
            echo: true,
            ..BatchOptions::default()
        };
        match lab.run_batch(&specs, &opts) {
            Ok(report) => {
                total += report.total;
                if let Some(e) = &report.lab_error {
                    out.errors.push(format!("Xen lab: {e}"));
                }
                results.extend(
                    batch
                        .iter()
                        .map(|(r, _)| *r)
                        .zip(report.guests.iter().cloned()),
                );
            }
            Err(e) => out.errors.push(format!("Xen lab: {e:#}")),
        }
    }
    out.lab = format!(
        "Xen {} in the lab, {} lab boot(s), {:.0} s",
        lab.xen_version().unwrap_or_else(|| "?".into()),
        batches.len(),
        total.as_secs_f64()
    );

    for (i, t) in targets.iter().enumerate() {
        let mine = |want: &dyn Fn(Role) -> bool| -> Vec<&GuestResult> {
            results
                .iter()
                .filter(|(r, _)| want(*r))
                .map(|(_, g)| g)
                .collect()
        };
        let mut problems: Vec<String> = Vec::new();
        let mut failed: Vec<&GuestResult> = Vec::new();
        let mut fail = |g| failed.push(g);
        if work.boot_runs.is_some() {
            let mut s = Samples::default();
            for g in mine(&|r| r == Role::Reference(i)) {
                if g.passed() {
                    s.empty_first.extend(ms(g.to_first_line));
                    s.empty_exit.extend(ms(g.to_shutdown));
                } else {
                    fail(g);
                }
            }
            for g in mine(&|r| r == Role::Image(i)) {
                if g.passed() {
                    s.app_first.extend(ms(g.to_first_line));
                    s.app_exit.extend(ms(g.to_shutdown));
                } else {
                    fail(g);
                }
            }
            let chart = mine(&|r| r == Role::Chart(i));
            chart.iter().filter(|g| !g.passed()).for_each(|g| fail(g));
            let boot_guests = mine(
                &|r| matches!(r, Role::Reference(j) | Role::Image(j) | Role::Chart(j) if j == i),
            );
            if let Some(line) = failure_line(&failed, boot_guests.len()) {
                problems.push(line);
            }
            let bootchart = chart
                .first()
                .and_then(|g| Bootchart::parse(g.console.iter().map(String::as_str)));
            {
                let (empty, image, first, exit, pairs) = s.summarize();
                out.boot.push(BootResult {
                    profile: t.profile.clone(),
                    app: t.app.clone(),
                    machine: t.machine().into(),
                    accel: "tcg".into(),
                    command: t.command(),
                    empty,
                    image,
                    ratio_first_line: first,
                    ratio_exit: exit,
                    pair_ratios: pairs,
                    budget: None,
                    bootchart,
                });
            }
        }
        if work.memory {
            let tries: Vec<(u32, bool)> = results
                .iter()
                .filter_map(|(r, g)| match r {
                    Role::Memory(j, m) if *j == i => Some((*m, g.passed())),
                    _ => None,
                })
                .collect();
            let found = smallest_passing(&tries);
            if found.is_none() && !tries.is_empty() {
                problems.push(format!(
                    "does not boot even with memory = {} MiB",
                    t.memory >> 20
                ));
            }
            out.memory.push(MemoryResult {
                profile: t.profile.clone(),
                app: t.app.clone(),
                machine: t.machine().into(),
                accel: "tcg".into(),
                min_memory: found.map(|m| u64::from(m) << 20),
                image_end: t.image_end,
                ceiling: t.memory,
                step: 1 << 20,
                probes: tries
                    .iter()
                    .map(|(m, ok)| (u64::from(*m) << 20, *ok))
                    .collect(),
                budget: None,
            });
        }
        let problems = problems
            .into_iter()
            .map(|p| format!("xen [{}] {}: {p}", t.profile, t.app));
        if t.declared {
            out.errors.extend(problems);
        } else {
            out.failures.extend(problems);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_line_says_why() {
        let n = skipped("boot", "no Xen platform yet");
        assert_eq!(
            n.line(),
            "Xen boot (`xl create` to the first console line, as a ratio to the lab's reference guest): skipped: no Xen platform yet"
        );
    }

    #[test]
    fn switched_off_lab_is_a_reason() {
        let lab = Lab::new("/nonexistent/stardust-xenlab");
        let why = availability(&Workspace::locate(), &lab).expect_err("no lab there");
        assert!(
            why.contains("not built")
                || why.contains("no Xen platform yet")
                || why.contains("switched off"),
            "{why}"
        );
    }

    #[test]
    fn memory_ladder_climbs_from_the_image_to_the_setting() {
        assert_eq!(
            memory_ladder(1_100_000, 16 << 20),
            [2, 3, 4, 5, 6, 7, 8, 12, 16]
        );
        assert_eq!(
            memory_ladder(1 << 20, 32 << 20),
            [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32]
        );
        assert_eq!(memory_ladder(1 << 20, 4 << 20), [1, 2, 3, 4]);
        assert_eq!(memory_ladder(3 << 20, 3 << 20), [3]);
        assert_eq!(
            memory_ladder(1 << 20, 100 << 20),
            [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 100]
        );
    }

    #[test]
    fn guests_alternate_with_the_reference_then_chart_then_ladder() {
        let lab = Lab::new("/lab");
        let t = Target {
            profile: "minimal+platform-xen+console-xen".into(),
            app: "hello".into(),
            elf: "hello.elf".into(),
            memory: 4 << 20,
            image_end: 1_100_000,
            declared: false,
            guest_type: GuestType::Pv,
        };
        let work = Work {
            boot_runs: Some(3),
            memory: true,
        };
        let g = guests_of(&lab, 7, &t, work);
        let roles: Vec<Role> = g.iter().map(|(r, _)| *r).collect();
        use Role::*;
        assert_eq!(
            roles,
            [
                Reference(7),
                Image(7),
                Image(7),
                Reference(7),
                Reference(7),
                Image(7),
                Chart(7),
                Memory(7, 2),
                Memory(7, 3),
                Memory(7, 4),
            ]
        );
        let (_, reference) = &g[0];
        assert_eq!(reference.kernel, lab.reference(RefGuest::PvHello));
        let (_, run) = &g[1];
        assert_eq!((run.memory_mb, run.kernel.to_str()), (4, Some("hello.elf")));
        assert_eq!(g[6].1.cmdline.as_deref(), Some("bootchart"));
        assert_eq!(g[8].1.memory_mb, 3);
        assert!(g.iter().all(|(_, s)| s.timeout <= BOOT_TIMEOUT));
        let none = guests_of(
            &lab,
            0,
            &t,
            Work {
                boot_runs: None,
                memory: false,
            },
        );
        assert!(none.is_empty());
        // A PVH image boots as PVH beside the lab's PVH reference guest.
        let pvh = Target {
            guest_type: GuestType::Pvh,
            ..t.clone()
        };
        let g = guests_of(&lab, 1, &pvh, work);
        assert_eq!(g[0].1.kernel, lab.reference(RefGuest::PvhHello));
        assert!(
            g.iter()
                .all(|(role, spec)| matches!(role, Reference(_))
                    || spec.guest_type == GuestType::Pvh)
        );
    }

    #[test]
    fn failures_of_an_image_make_one_line() {
        let guest = |shutdown| GuestResult {
            name: "minimal/hello run 1".into(),
            kernel: "hello.elf".into(),
            expect: xenlab::Expect::Poweroff,
            shutdown,
            console: vec![],
            xen_lines: vec![],
            xl_output: vec![],
            domid: Some(3),
            to_domid: Some(Duration::from_millis(700)),
            to_first_line: None,
            to_shutdown: Some(Duration::from_millis(900)),
            io: Default::default(),
        };
        assert_eq!(failure_line(&[], 21), None);
        let crash = guest(xenlab::Shutdown::Crash);
        let hang = guest(xenlab::Shutdown::Timeout);
        let line = failure_line(&[&crash, &crash, &hang], 21).expect("a line");
        assert!(
            line.starts_with("3 of 21 boot guests failed (crash (reason 3) ×2, timeout ×1); first: minimal/hello run 1: crash (reason 3)"),
            "{line}"
        );
        assert!(
            line.ends_with("(serial log in target/bench/xen-lab-*.log)"),
            "{line}"
        );
    }

    #[test]
    fn smallest_passing_needs_every_larger_size_to_pass() {
        assert_eq!(
            smallest_passing(&[(1, false), (2, true), (4, true)]),
            Some(2)
        );
        // A pass below a failure does not count (not monotonic: trust the larger sizes).
        assert_eq!(
            smallest_passing(&[(4, true), (1, true), (2, false), (8, true)]),
            Some(4)
        );
        assert_eq!(smallest_passing(&[(2, true), (4, false)]), None);
        assert_eq!(smallest_passing(&[]), None);
    }
}
