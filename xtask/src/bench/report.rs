//! The bench report as Markdown (stdout, and target/bench/report.md).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::boot::BootResult;
use super::budget::Violation;
use super::memory::MemoryResult;
use super::size::SizeResult;
use super::stats::Summary;
use super::xen::XenNote;
use crate::size::group;

/// Everything one `cargo xtask bench` measured (also the `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `rustc -V` now.
    pub rustc: Option<String>,
    /// `rustc -V` recorded with the size baseline.
    pub baseline_rustc: Option<String>,
    /// Size bench results.
    pub size: Vec<SizeResult>,
    /// Boot bench results.
    pub boot: Vec<BootResult>,
    /// Memory bench results.
    pub memory: Vec<MemoryResult>,
    /// Xen benches that did not run.
    pub xen: Vec<XenNote>,
    /// Boot results in the Xen lab (`empty` is the lab's reference guest); not budget-checked.
    #[serde(default)]
    pub xen_boot: Vec<BootResult>,
    /// Memory results in the Xen lab (`memory =` in MiB steps); not budget-checked.
    #[serde(default)]
    pub xen_memory: Vec<MemoryResult>,
    /// The lab that measured them (Xen version, lab boots, time).
    #[serde(default)]
    pub xen_lab: Option<String>,
    /// Guests that failed on Xen for profiles whose own platform is not Xen (reported only).
    #[serde(default)]
    pub xen_failures: Vec<String>,
    /// Images a bench left out, and why (a Xen-platform profile under QEMU, a build for Xen).
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Figures over budget (or without one).
    pub violations: Vec<Violation>,
    /// Failures that stopped a measurement (a boot that did not exit 0).
    pub errors: Vec<String>,
}

impl Report {
    /// Parses a `--json` output back.
    pub fn from_json(text: &str) -> crate::Result<Report> {
        serde_json::from_str(text).map_err(|e| anyhow::Error::msg(format!("bench report: {e}")))
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    fn violated(&self, profile: &str, app: &str, figure: &str) -> bool {
        self.violations
            .iter()
            .any(|v| v.profile == profile && v.app == app && v.figure == figure)
    }

    /// `ok`, `**OVER**` or `no budget` for one figure.
    fn verdict(&self, profile: &str, app: &str, figure: &str, has_budget: bool) -> &'static str {
        match (has_budget, self.violated(profile, app, figure)) {
            (false, _) => "no budget",
            (true, true) => "**OVER**",
            (true, false) => "ok",
        }
    }

    /// The whole report. `check` says whether violations fail the command (for the closing
    /// line).
    pub fn markdown(&self, check: bool) -> String {
        let mut s = String::new();
        if !self.size.is_empty() {
            self.size_section(&mut s);
        }
        let xen_note = |b: &str| self.xen.iter().any(|n| n.bench == b);
        if !self.boot.is_empty() || !self.xen_boot.is_empty() || xen_note("boot") {
            self.boot_section(&mut s);
        }
        if !self.memory.is_empty() || !self.xen_memory.is_empty() || xen_note("memory") {
            self.memory_section(&mut s);
        }
        self.xen_failures_section(&mut s);
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "## Left out\n");
            for k in &self.skipped {
                let _ = writeln!(s, "- {k}");
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Budgets\n");
        if self.violations.is_empty() {
            let _ = writeln!(s, "Every measured figure is within its profile's budget.");
        } else {
            for v in &self.violations {
                let _ = writeln!(s, "- {v}");
            }
            let _ = writeln!(
                s,
                "\n{}",
                if check {
                    "`--check`: these fail the bench."
                } else {
                    "Reported only; `--check` makes these fail."
                }
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "\n## Errors\n");
            for e in &self.errors {
                let first = e.lines().next().unwrap_or_default();
                let _ = writeln!(s, "- {first}");
            }
        }
        s
    }

    fn size_section(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "## Image size\n\nStripped ELF bytes (what the monitor loads); change against benches/baseline.json.\n"
        );
        let _ = writeln!(
            s,
            "| profile | app | bytes | budget | of budget | vs baseline | |\n| --- | --- | ---: | ---: | ---: | ---: | --- |"
        );
        for r in &self.size {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.profile,
                r.app,
                group(r.image_bytes as i64),
                r.budget.map_or("—".into(), |b| group(b as i64)),
                r.budget.map_or("—".into(), |b| format!(
                    "{:.0}%",
                    r.image_bytes as f64 * 100.0 / b.max(1) as f64
                )),
                r.delta().map_or("new".into(), signed),
                self.verdict(&r.profile, &r.app, "image_bytes", r.budget.is_some()),
            );
        }
        if let (Some(now), Some(then)) = (&self.rustc, &self.baseline_rustc)
            && now != then
            && self.size.iter().any(|r| r.delta().is_some_and(|d| d != 0))
        {
            let _ = writeln!(
                s,
                "\nNote: the baseline was built with `{then}`, these images with `{now}`; some of the change may be the compiler's."
            );
        }
        // Crates as rows, images as columns.
        let _ = writeln!(s, "\n### Per crate (bytes, change against the baseline)\n");
        let mut names: Vec<&str> = Vec::new();
        for r in &self.size {
            for c in &r.crates {
                if !names.contains(&c.name.as_str()) {
                    names.push(&c.name);
                }
            }
        }
        // Largest first, by the largest size any image gives the crate; buckets last.
        let biggest = |n: &str| {
            self.size
                .iter()
                .flat_map(|r| r.crates.iter().filter(|c| c.name == n).map(|c| c.bytes))
                .max()
                .unwrap_or(0)
        };
        names.sort_by_key(|n| (n.starts_with('['), std::cmp::Reverse(biggest(n))));
        let header: Vec<String> = self.size.iter().map(SizeResult::label).collect();
        let _ = writeln!(
            s,
            "| crate | {} |\n| --- |{}",
            header.join(" | "),
            " ---: |".repeat(header.len())
        );
        for n in names {
            let cells: Vec<String> = self
                .size
                .iter()
                .map(|r| match r.crates.iter().find(|c| c.name == n) {
                    None => "—".into(),
                    Some(c) => match c.delta() {
                        Some(d) if d != 0 => format!("{} ({})", group(c.bytes), signed(d)),
                        _ => group(c.bytes),
                    },
                })
                .collect();
            let _ = writeln!(s, "| {} | {} |", n, cells.join(" | "));
        }
        let totals: Vec<String> = self
            .size
            .iter()
            .map(|r| format!("**{}**", group(r.image_bytes as i64)))
            .collect();
        let _ = writeln!(s, "| **image** | {} |\n", totals.join(" | "));
    }

    fn boot_section(&self, s: &mut String) {
        let _ = writeln!(s, "## Boot time\n");
        if let Some(r) = self.boot.first() {
            let runs = r.image.exit_ms.as_ref().map_or(0, |t| t.n);
            let _ = writeln!(
                s,
                "QEMU ({}, {}), {runs} runs of each kernel, interleaved with the empty PVH kernel (benches/empty-kernel) on the same command line. \
                 Milliseconds from spawning QEMU, as median [interquartile range]; ratios are app median / empty-kernel median (the exit ratio to 3 places, as `boot_ratio` is checked), \
                 with the middle half of the per-pair ratios in brackets. `boot_ratio` bounds the exit ratio.\n",
                r.machine, r.accel
            );
            let _ = writeln!(
                s,
                "| profile | app | first line | exit | empty: first line | empty: exit | ratio first line | ratio exit | budget | |\n\
                 | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
        }
        for r in &self.boot {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.profile,
                r.app,
                ms(&r.image.first_line_ms),
                ms(&r.image.exit_ms),
                ms(&r.empty.first_line_ms),
                ms(&r.empty.exit_ms),
                r.ratio_first_line.map_or("—".into(), |x| format!("{x:.2}")),
                match (r.ratio_exit, &r.pair_ratios) {
                    (Some(x), Some(p)) => format!("{x:.3} [{:.2}–{:.2}]", p.p25, p.p75),
                    (Some(x), None) => format!("{x:.3}"),
                    _ => "—".into(),
                },
                r.budget.map_or("—".into(), |b| format!("{b:.2}")),
                self.verdict(&r.profile, &r.app, "boot_ratio", r.budget.is_some()),
            );
        }
        let charts: Vec<&BootResult> = self.boot.iter().filter(|r| r.bootchart.is_some()).collect();
        if !charts.is_empty() {
            let mut phases: Vec<String> = Vec::new();
            let mut in_us = true;
            for c in charts.iter().filter_map(|r| r.bootchart.as_ref()) {
                let (d, us) = c.durations();
                in_us &= us;
                for (name, _) in d {
                    if !phases.contains(&name) {
                        phases.push(name);
                    }
                }
            }
            let unit = if in_us { "µs" } else { "TSC cycles" };
            let _ = writeln!(
                s,
                "\n### Guest boot chart\n\n{unit} spent reaching each phase, from the PVH entry (one boot with `bootchart` on the kernel command line).\n"
            );
            let _ = writeln!(
                s,
                "| profile | app | {} | entry → main |\n| --- | --- |{} ---: |",
                phases.join(" | "),
                " ---: |".repeat(phases.len())
            );
            for r in charts {
                let Some(c) = &r.bootchart else { continue };
                let (d, us) = c.durations();
                let cells: Vec<String> = phases
                    .iter()
                    .map(|p| {
                        d.iter()
                            .find(|(n, _)| n == p)
                            .map_or("—".into(), |(_, v)| group(*v as i64))
                    })
                    .collect();
                let total = if in_us && us {
                    c.total_us().unwrap_or(0)
                } else {
                    c.total_cycles()
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    r.profile,
                    r.app,
                    cells.join(" | "),
                    group(total as i64)
                );
            }
        }
        for n in self.xen.iter().filter(|n| n.bench == "boot") {
            let _ = writeln!(s, "\n{}", n.line());
        }
        if !self.xen_boot.is_empty() {
            let _ = writeln!(
                s,
                "\n### On Xen\n\n{}. Milliseconds from `xl create` (dom0 polls every 50 ms), median [interquartile range], \
                 interleaved with the lab's reference guest of the same type (PV images: `pvhello`; PVH images, `xen_guest-pvh`: \
                 the 32-bit PVH probe `pvhhello`; each prints one line and powers off); reported, not budget-checked.\n",
                self.xen_lab.as_deref().unwrap_or("The Xen lab")
            );
            let _ = writeln!(
                s,
                "| profile | app | first line | shutdown | reference: first line | reference: shutdown | ratio first line | ratio shutdown | entry → main |\n\
                 | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            );
            for r in &self.xen_boot {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.profile,
                    r.app,
                    ms(&r.image.first_line_ms),
                    ms(&r.image.exit_ms),
                    ms(&r.empty.first_line_ms),
                    ms(&r.empty.exit_ms),
                    r.ratio_first_line.map_or("—".into(), |x| format!("{x:.2}")),
                    r.ratio_exit.map_or("—".into(), |x| format!("{x:.3}")),
                    r.bootchart
                        .as_ref()
                        .map_or("—".into(), |c| match c.total_us() {
                            Some(us) => format!("{} µs", group(us as i64)),
                            None => format!("{} cycles", group(c.total_cycles() as i64)),
                        }),
                );
            }
        }
        s.push('\n');
    }

    fn memory_section(&self, s: &mut String) {
        let _ = writeln!(s, "## Minimum memory\n");
        if let Some(r) = self.memory.first() {
            let _ = writeln!(
                s,
                "The smallest QEMU `-m` ({}, {}) with which the app boots and exits 0: binary search in {} KiB steps between the image's end and the profile's `memory`.\n",
                r.machine,
                r.accel,
                r.step / 1024
            );
            let _ = writeln!(
                s,
                "| profile | app | smallest -m | image ends at | probes | budget | |\n| --- | --- | ---: | ---: | ---: | ---: | --- |"
            );
        }
        for r in &self.memory {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.profile,
                r.app,
                r.min_memory
                    .map_or_else(|| format!("> {} (fails)", kib(r.ceiling)), kib),
                kib(r.image_end),
                r.probes.len(),
                r.budget.map_or("—".into(), kib),
                self.verdict(&r.profile, &r.app, "min_memory", r.budget.is_some()),
            );
        }
        for n in self.xen.iter().filter(|n| n.bench == "memory") {
            let _ = writeln!(s, "\n{}", n.line());
        }
        if !self.xen_memory.is_empty() {
            let _ = writeln!(
                s,
                "\n### On Xen\n\nThe smallest domain `memory =` (MiB) from which every larger size tried boots and powers off, \
                 all sizes tried in one lab boot; reported, not budget-checked.\n"
            );
            let _ = writeln!(
                s,
                "| profile | app | smallest memory = | sizes tried (MiB; ✗ failed) |\n| --- | --- | ---: | --- |"
            );
            for r in &self.xen_memory {
                let tried: Vec<String> = r
                    .probes
                    .iter()
                    .map(|(m, ok)| format!("{}{}", m >> 20, if *ok { "" } else { "✗" }))
                    .collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    r.profile,
                    r.app,
                    r.min_memory.map_or_else(
                        || format!("> {} MiB (fails)", r.ceiling >> 20),
                        |m| format!("{} MiB", m >> 20)
                    ),
                    tried.join(" ")
                );
            }
        }
        s.push('\n');
    }

    /// The Xen failures that are reported, not fatal (printed once, after the Xen tables).
    fn xen_failures_section(&self, s: &mut String) {
        if self.xen_failures.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "### Failed on Xen (reported, not fatal: these profiles are on KVM; the bench put them on Xen)\n"
        );
        for f in &self.xen_failures {
            let _ = writeln!(s, "- {f}");
        }
        s.push('\n');
    }
}

/// `+1,234`, `-56`, `0`.
pub fn signed(d: i64) -> String {
    if d > 0 {
        format!("+{}", group(d))
    } else {
        group(d)
    }
}

fn kib(bytes: u64) -> String {
    format!("{} KiB", group(bytes.div_ceil(1024) as i64))
}

fn ms(s: &Option<Summary>) -> String {
    match s {
        Some(s) => format!("{:.1} [{:.1}–{:.1}]", s.median, s.p25, s.p75),
        None => "—".into(),
    }
}

/// A table cell: `v` with `digits` decimals, or `—` when there is no figure.
pub fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::boot::Timing;
    use crate::bench::bootchart::Bootchart;
    use crate::bench::budget::check;
    use crate::bench::size::CrateBytes;

    fn sample_report() -> Report {
        let size = vec![
            SizeResult {
                profile: "default".into(),
                app: "hello".into(),
                image: "x.elf".into(),
                image_bytes: 45056,
                budget: Some(49152),
                baseline_bytes: Some(45000),
                crates: vec![
                    CrateBytes {
                        name: "kernel".into(),
                        bytes: 20000,
                        baseline: Some(19944),
                    },
                    CrateBytes {
                        name: "[headers+padding]".into(),
                        bytes: 25056,
                        baseline: Some(25056),
                    },
                ],
            },
            SizeResult {
                profile: "minimal".into(),
                app: "hello".into(),
                image: "y.elf".into(),
                image_bytes: 40000,
                budget: Some(32768),
                baseline_bytes: None,
                crates: vec![CrateBytes {
                    name: "core".into(),
                    bytes: 40000,
                    baseline: None,
                }],
            },
        ];
        let t = |v: &[f64]| Timing {
            first_line_ms: Summary::of(v),
            exit_ms: Summary::of(v),
        };
        let boot = vec![BootResult {
            profile: "default".into(),
            app: "hello".into(),
            machine: "q35+qboot".into(),
            accel: "tcg".into(),
            command: String::new(),
            empty: t(&[40.0, 42.0]),
            image: t(&[50.0, 52.0]),
            ratio_first_line: Some(1.24),
            ratio_exit: Some(1.24),
            pair_ratios: Summary::of(&[1.2, 1.3]),
            budget: Some(1.1),
            bootchart: Bootchart::parse([
                "bootchart: entry + 0 cycles 0 us",
                "bootchart: main + 9 cycles 2169 us",
            ]),
        }];
        let memory = vec![MemoryResult {
            profile: "minimal".into(),
            app: "hello".into(),
            machine: "q35+qboot".into(),
            accel: "tcg".into(),
            min_memory: Some(1152 * 1024),
            image_end: 1108 * 1024,
            ceiling: 16 << 20,
            step: 65536,
            probes: vec![(16 << 20, true)],
            budget: Some(1536 * 1024),
        }];
        let violations = check(&size, &boot, &memory);
        let mut xen_boot = boot[0].clone();
        xen_boot.profile = "default+platform-xen+console-xen".into();
        xen_boot.budget = None;
        let mut xen_memory = memory[0].clone();
        xen_memory.profile = "minimal+platform-xen+console-xen".into();
        xen_memory.min_memory = Some(4 << 20);
        xen_memory.probes = vec![(2 << 20, false), (4 << 20, true), (8 << 20, true)];
        Report {
            size,
            boot,
            memory,
            violations,
            xen: vec![crate::bench::xen::skipped("memory", "no Xen platform yet")],
            xen_boot: vec![xen_boot],
            xen_memory: vec![xen_memory],
            xen_lab: Some("Xen 4.17 in the lab, 1 lab boot(s), 40 s".into()),
            xen_failures: vec!["xen [minimal+platform-xen+console-xen] hello: crash".into()],
            skipped: vec!["profile `xenonly` is on the Xen platform: QEMU does not boot it".into()],
            ..Report::default()
        }
    }

    #[test]
    fn markdown_tables() {
        let r = sample_report();
        let md = r.markdown(true);
        assert!(
            md.contains("| default | hello | 45,056 | 49,152 | 92% | +56 | ok |"),
            "{md}"
        );
        assert!(
            md.contains("| minimal | hello | 40,000 | 32,768 | 122% | new | **OVER** |"),
            "{md}"
        );
        assert!(
            md.contains("| crate | default/hello | minimal/hello |"),
            "{md}"
        );
        assert!(md.contains("| kernel | 20,000 (+56) | — |"), "{md}");
        assert!(
            md.contains("| **image** | **45,056** | **40,000** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| default | hello | 51.0 [50.5–51.5] | 51.0 [50.5–51.5] | 41.0 [40.5–41.5] |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 1.24 | 1.240 [1.23–1.27] | 1.10 | **OVER** |"),
            "{md}"
        );
        assert!(md.contains("| default | hello | 2,169 | 2,169 |"), "{md}");
        assert!(md.contains("Xen memory (the smallest"), "{md}");
        assert!(md.contains("skipped: no Xen platform yet"), "{md}");
        assert!(
            md.contains("### On Xen\n\nXen 4.17 in the lab, 1 lab boot(s), 40 s."),
            "{md}"
        );
        assert!(
            md.contains("| default+platform-xen+console-xen | hello | 51.0 [50.5–51.5] |"),
            "{md}"
        );
        assert!(md.contains("| 1.24 | 1.240 | 2,169 µs |"), "{md}");
        assert!(
            md.contains("| minimal+platform-xen+console-xen | hello | 4 MiB | 2✗ 4 8 |"),
            "{md}"
        );
        assert!(md.contains("### Failed on Xen"), "{md}");
        assert!(
            md.contains("- xen [minimal+platform-xen+console-xen] hello: crash"),
            "{md}"
        );
        assert!(md.contains("## Left out\n\n- profile `xenonly`"), "{md}");
        assert!(
            md.contains("| minimal | hello | 1,152 KiB | 1,108 KiB | 1 | 1,536 KiB | ok |"),
            "{md}"
        );
        assert!(md.contains("`--check`: these fail the bench."), "{md}");
        assert!(md.contains("image_bytes is 40,000 bytes, over its budget of 32,768 bytes"));
        assert!(r.markdown(false).contains("Reported only"));
    }

    #[test]
    fn json_round_trips() {
        let r = sample_report();
        assert_eq!(Report::from_json(&r.to_json()).expect("parses"), r);
        assert!(Report::from_json("{").is_err());
    }
}
