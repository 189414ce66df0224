//! Hand-written SVG charts of the bench results (rectangles and text, no dependencies):
//! `size.svg`, image bytes per profile stacked by crate, and `boot.svg`, boot phases per profile
//! (the guest's boot chart, and QEMU spawn → first line → exit on the host side).
//!
//! Why by hand, not with a plotting crate: the two charts are horizontal stacked bars with
//! labels, which is rectangles and text and nothing else; this module (about 400 lines besides
//! its tests) has one function per chart over a few shared helpers and pulls in no dependency
//! tree (plotters and its font stack would be far larger than the charts). Should the charts
//! grow beyond bars (axes with ticks, lines, several series), a crate would pay for itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::boot::BootResult;
use super::size::SizeResult;
use crate::size::{HEADERS_PADDING, group};

/// Fill colours, in order of use (colour-blind friendly "Tableau 10", then two more).
pub const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#86bcb6", "#d37295", "#a0cbe8",
];
/// The colour of what is not a crate (`[headers+padding]`) and of lumped small crates.
pub const GREY: &str = "#bab0ac";
const OTHER: &str = "other crates";

/// The narrowest label column; wider when a label needs it (about 7 px a character).
const MIN_LABEL_W: f64 = 200.0;
const BAR_W: f64 = 560.0;
const RIGHT_W: f64 = 300.0;
const ROW_H: f64 = 22.0;
const ROW_GAP: f64 = 12.0;
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";

/// Escapes text for SVG content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tiny SVG document builder.
#[derive(Debug)]
struct Svg {
    body: String,
    height: f64,
    /// Width of the label column left of the bars.
    label_w: f64,
}

impl Svg {
    /// A document whose label column fits `labels`.
    fn new<'a>(labels: impl IntoIterator<Item = &'a str>) -> Svg {
        let widest = labels
            .into_iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0);
        Svg {
            body: String::new(),
            height: 0.0,
            label_w: (widest as f64 * 7.0 + 16.0).max(MIN_LABEL_W),
        }
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, title: &str) {
        let _ = writeln!(
            self.body,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{fill}\"><title>{}</title></rect>",
            w.max(0.0),
            escape(title)
        );
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, extra: &str, s: &str) {
        let _ = writeln!(
            self.body,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" {FONT} {extra}>{}</text>",
            escape(s)
        );
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, style: &str) {
        let _ = writeln!(
            self.body,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" {style}/>"
        );
    }

    /// Swatches with names, wrapped into rows, starting at `y`; returns the y below them.
    fn legend(&mut self, y: f64, items: &[(String, String)]) -> f64 {
        let (mut x, mut y) = (self.label_w, y);
        for (name, colour) in items {
            let w = 24.0 + 7.0 * name.chars().count() as f64;
            if x + w > self.label_w + BAR_W + RIGHT_W {
                x = self.label_w;
                y += 18.0;
            }
            self.rect(x, y, 12.0, 12.0, colour, name);
            self.text(x + 16.0, y + 10.5, "start", "", name);
            x += w;
        }
        y + 24.0
    }

    fn finish(self) -> String {
        let width = self.label_w + BAR_W + RIGHT_W;
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" viewBox=\"0 0 {width:.0} {:.0}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}</svg>\n",
            self.height, self.height, self.body
        )
    }
}

/// Colours for `names` in order, the first [`PALETTE`]`.len()` ones distinct.
fn colours<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let c = PALETTE.get(i).copied().unwrap_or(GREY);
            (n.to_string(), c.to_string())
        })
        .collect()
}

/// Image bytes per profile and app, stacked by crate, with each budget as a red tick.
pub fn size_chart(results: &[SizeResult]) -> String {
    let labels: Vec<String> = results.iter().map(SizeResult::label).collect();
    let mut svg = Svg::new(labels.iter().map(String::as_str));
    svg.text(
        10.0,
        20.0,
        "start",
        "font-weight=\"bold\"",
        "Stripped image bytes per profile, by crate (red tick: the profile's image_bytes budget)",
    );
    // Crates by total bytes over all images: the largest get their own colour.
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for r in results {
        for c in &r.crates {
            if c.name != HEADERS_PADDING {
                *totals.entry(&c.name).or_default() += c.bytes.max(0);
            }
        }
    }
    let mut order: Vec<(&str, i64)> = totals.into_iter().filter(|(_, b)| *b > 0).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let own = PALETTE.len() - 1;
    let named: Vec<&str> = order.iter().take(own).map(|(n, _)| *n).collect();
    let palette = colours(named.iter().copied());
    let colour_of = |name: &str| palette.get(name).cloned().unwrap_or_else(|| GREY.into());
    let scale = results
        .iter()
        .map(|r| r.image_bytes.max(r.budget.unwrap_or(0)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut y = 40.0;
    for r in results {
        svg.text(svg.label_w - 8.0, y + 15.0, "end", "", &r.label());
        let mut x = svg.label_w;
        let mut other = 0i64;
        let mut draw = |svg: &mut Svg, name: &str, bytes: i64, colour: &str| {
            let w = bytes.max(0) as f64 / scale * BAR_W;
            svg.rect(
                x,
                y,
                w,
                ROW_H,
                colour,
                &format!("{name}: {} bytes", group(bytes)),
            );
            x += w;
        };
        for c in &r.crates {
            if c.name == HEADERS_PADDING {
                continue;
            }
            if palette.contains_key(&c.name) {
                draw(&mut svg, &c.name, c.bytes, &colour_of(&c.name));
            } else {
                other += c.bytes.max(0);
            }
        }
        if other > 0 {
            draw(&mut svg, OTHER, other, "#79706e");
        }
        if let Some(h) = r.crates.iter().find(|c| c.name == HEADERS_PADDING) {
            draw(&mut svg, HEADERS_PADDING, h.bytes, GREY);
        }
        let mut note = format!("{} bytes", group(r.image_bytes as i64));
        if let Some(d) = r.delta().filter(|d| *d != 0) {
            let _ = write!(note, " ({} vs baseline)", super::report::signed(d));
        }
        svg.text(x + 6.0, y + 15.0, "start", "", &note);
        if let Some(b) = r.budget {
            let bx = svg.label_w + b as f64 / scale * BAR_W;
            svg.line(
                bx,
                y - 3.0,
                bx,
                y + ROW_H + 3.0,
                "stroke=\"#d62728\" stroke-width=\"2\"",
            );
        }
        y += ROW_H + ROW_GAP;
    }
    let mut legend: Vec<(String, String)> = named
        .iter()
        .map(|n| (n.to_string(), colour_of(n)))
        .collect();
    if order.len() > own {
        legend.push((OTHER.into(), "#79706e".into()));
    }
    legend.push((HEADERS_PADDING.into(), GREY.into()));
    svg.height = svg.legend(y + 4.0, &legend) + 8.0;
    svg.finish()
}

/// Boot phases per profile: the guest's boot chart (entry → main) stacked by phase, and the
/// host's view (QEMU spawn → first line → exit, medians) of the app and the empty kernel; with
/// `xen` results, their phases and `xl create` → first line → shutdown beside the reference.
pub fn boot_chart(qemu: &[BootResult], xen: &[BootResult]) -> String {
    let results: Vec<BootResult> = qemu
        .iter()
        .cloned()
        .chain(xen.iter().cloned().map(|mut r| {
            r.profile = xen_profile(&r.profile);
            r.app = format!("{} (Xen)", r.app);
            r
        }))
        .collect();
    let results = &results[..];
    let labels: Vec<String> = results
        .iter()
        .map(|r| format!("{}/{}", r.profile, r.app))
        .collect();
    let mut svg = Svg::new(labels.iter().map(String::as_str));
    svg.text(
        10.0,
        20.0,
        "start",
        "font-weight=\"bold\"",
        "Guest boot phases, kernel entry to main (one boot with `bootchart`)",
    );
    let charts: Vec<_> = results
        .iter()
        .filter_map(|r| r.bootchart.as_ref())
        .collect();
    let in_us = !charts.is_empty() && charts.iter().all(|c| c.durations().1);
    let unit = if in_us { "us" } else { "cycles" };
    let mut phase_names: Vec<String> = Vec::new();
    for c in &charts {
        for (name, _) in c.durations().0 {
            if !phase_names.contains(&name) {
                phase_names.push(name);
            }
        }
    }
    let palette = colours(phase_names.iter().map(String::as_str));
    let total = |r: &BootResult| {
        r.bootchart.as_ref().map_or(0, |c| {
            let (d, _) = c.durations();
            d.iter().map(|(_, v)| *v).sum::<u64>()
        })
    };
    let scale = results.iter().map(total).max().unwrap_or(1).max(1) as f64;
    let mut y = 40.0;
    for r in results {
        svg.text(
            svg.label_w - 8.0,
            y + 15.0,
            "end",
            "",
            &format!("{}/{}", r.profile, r.app),
        );
        let Some(chart) = &r.bootchart else {
            svg.text(svg.label_w, y + 15.0, "start", "", "(no bootchart lines)");
            y += ROW_H + ROW_GAP;
            continue;
        };
        let mut x = svg.label_w;
        let (durations, _) = chart.durations();
        for (name, v) in &durations {
            let w = *v as f64 / scale * BAR_W;
            let colour = palette.get(name).map_or(GREY, String::as_str);
            svg.rect(
                x,
                y,
                w,
                ROW_H,
                colour,
                &format!("{name}: {} {unit}", group(*v as i64)),
            );
            x += w;
        }
        svg.text(
            x + 6.0,
            y + 15.0,
            "start",
            "",
            &format!("{} {unit} to main", group(total(r) as i64)),
        );
        y += ROW_H + ROW_GAP;
    }
    let legend: Vec<(String, String)> = phase_names
        .iter()
        .map(|n| {
            (
                n.clone(),
                palette.get(n).cloned().unwrap_or_else(|| GREY.into()),
            )
        })
        .collect();
    y = svg.legend(y + 4.0, &legend) + 12.0;

    // Host side: medians of spawn -> first line -> exit, for QEMU and for Xen.
    for (part, title, floor) in [
        (
            qemu,
            "QEMU spawn → first console line → exit (medians; the empty PVH kernel is the floor)",
            "empty kernel",
        ),
        (
            &results[qemu.len()..],
            "Xen: xl create → first console line → shutdown (medians, to dom0's 50 ms polls; the lab's reference guest beside)",
            "pvhello",
        ),
    ] {
        if !part.is_empty() {
            y = host_panel(&mut svg, y, title, part, floor);
        }
    }
    let legend = [
        ("start → first line".to_string(), SPAWN.to_string()),
        ("first line → exit".to_string(), RUN.to_string()),
    ];
    svg.height = svg.legend(y + 4.0, &legend) + 8.0;
    svg.finish()
}

/// A Xen tag without the `+platform-xen+console-xen` the bench added (the row says "(Xen)").
fn xen_profile(tag: &str) -> String {
    tag.replace("+platform-xen", "").replace("+console-xen", "")
}

const SPAWN: &str = "#4e79a7";
const RUN: &str = "#f28e2b";

/// Bars of start → first line → exit for each result and its floor; returns the y below.
fn host_panel(svg: &mut Svg, mut y: f64, title: &str, results: &[BootResult], floor: &str) -> f64 {
    svg.text(10.0, y, "start", "font-weight=\"bold\"", title);
    y += 20.0;
    let med = |s: &Option<super::stats::Summary>| s.as_ref().map_or(0.0, |s| s.median);
    let scale = results
        .iter()
        .flat_map(|r| [med(&r.image.exit_ms), med(&r.empty.exit_ms)])
        .fold(1e-9, f64::max);
    for r in results {
        for (who, t, ratio) in [
            (format!("{}/{}", r.profile, r.app), &r.image, r.ratio_exit),
            (floor.to_string(), &r.empty, None),
        ] {
            let label_w = svg.label_w;
            svg.text(label_w - 8.0, y + 12.0, "end", "", &who);
            if t.exit_ms.is_none() {
                svg.text(label_w, y + 12.0, "start", "", "(no successful boot)");
                y += 20.0;
                continue;
            }
            let exit = med(&t.exit_ms);
            // Independent medians (and dom0's polling on Xen) can put the first line after the
            // exit: draw it at the exit.
            let first = med(&t.first_line_ms).min(exit);
            let w1 = first / scale * BAR_W;
            let w2 = (exit - first).max(0.0) / scale * BAR_W;
            svg.rect(
                label_w,
                y,
                w1,
                16.0,
                SPAWN,
                &format!("start → first line: {first:.1} ms"),
            );
            svg.rect(
                label_w + w1,
                y,
                w2,
                16.0,
                RUN,
                &format!("first line → exit: {:.1} ms", exit - first),
            );
            let mut note = format!("{first:.1} / {exit:.1} ms");
            if let Some(x) = ratio {
                let _ = write!(note, "  (×{x:.2} the {floor})");
            }
            svg.text(label_w + w1 + w2 + 6.0, y + 12.0, "start", "", &note);
            y += 20.0;
        }
        y += 8.0;
    }
    y + 4.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::boot::Timing;
    use crate::bench::bootchart::Bootchart;
    use crate::bench::size::CrateBytes;
    use crate::bench::stats::Summary;

    fn size(profile: &str, crates: &[(&str, i64)], budget: Option<u64>) -> SizeResult {
        SizeResult {
            profile: profile.into(),
            app: "hello".into(),
            image: "x.elf".into(),
            image_bytes: crates.iter().map(|(_, b)| *b as u64).sum(),
            budget,
            baseline_bytes: Some(100),
            crates: crates
                .iter()
                .map(|(n, b)| CrateBytes {
                    name: n.to_string(),
                    bytes: *b,
                    baseline: None,
                })
                .collect(),
        }
    }

    /// Every `<` opens a tag that is closed: `<x ...>...</x>` or `<x .../>`.
    fn balanced(svg: &str) -> bool {
        let mut stack: Vec<String> = Vec::new();
        for part in svg.split('<').skip(1) {
            let tag = &part[..part.find('>').expect("tag ends")];
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop().as_deref() != Some(name) {
                    return false;
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        stack.is_empty()
    }

    #[test]
    fn size_chart_stacks_crates_and_marks_budgets() {
        let svg = size_chart(&[
            size(
                "default",
                &[
                    ("kernel", 3000),
                    ("core", 2000),
                    ("a&b", 10),
                    (HEADERS_PADDING, 500),
                ],
                Some(8000),
            ),
            size("minimal", &[("kernel", 2000), (HEADERS_PADDING, 300)], None),
        ]);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(balanced(&svg), "{svg}");
        assert!(svg.contains("<title>kernel: 3,000 bytes</title>"), "{svg}");
        assert!(svg.contains("a&amp;b"), "escaped");
        assert!(svg.contains("default/hello") && svg.contains("minimal/hello"));
        assert!(svg.contains("(+5,410 vs baseline)"), "{svg}");
        assert_eq!(
            svg.matches("stroke=\"#d62728\"").count(),
            1,
            "one budget tick"
        );
        // The kernel is the biggest crate overall: the first colour.
        assert!(svg.contains(&format!("fill=\"{}\"><title>kernel", PALETTE[0])));
    }

    #[test]
    fn boot_chart_shows_guest_phases_and_host_times() {
        let chart = Bootchart::parse(
            "bootchart: entry + 0 cycles 0 us\n\
             bootchart: rust + 100 cycles 130 us\n\
             bootchart: main + 100 cycles 200 us\n\
             bootchart: entry -> main 200 us (200 cycles, TSC 1 MHz)"
                .lines(),
        );
        let t = |first: f64, exit: f64| Timing {
            first_line_ms: Summary::of(&[first]),
            exit_ms: Summary::of(&[exit]),
        };
        let r = BootResult {
            profile: "default".into(),
            app: "hello".into(),
            machine: "q35+qboot".into(),
            accel: "tcg".into(),
            command: String::new(),
            empty: t(40.0, 45.0),
            image: t(48.0, 50.0),
            ratio_first_line: Some(1.2),
            ratio_exit: Some(50.0 / 45.0),
            pair_ratios: None,
            budget: Some(1.1),
            bootchart: chart,
        };
        let mut no_chart = r.clone();
        no_chart.profile = "minimal".into();
        no_chart.bootchart = None;
        let mut on_xen = r.clone();
        on_xen.profile = "default+platform-xen+console-xen".into();
        on_xen.empty = t(900.0, 880.0); // first line after shutdown: dom0 polls every 50 ms
        let mut failed_on_xen = on_xen.clone();
        failed_on_xen.profile = "a-rather-long-profile-name+platform-xen+console-xen".into();
        failed_on_xen.image = Timing {
            first_line_ms: None,
            exit_ms: None,
        };
        let svg = boot_chart(&[r, no_chart], &[on_xen, failed_on_xen]);
        assert!(balanced(&svg), "{svg}");
        assert!(svg.contains("<title>rust: 130 us</title>"), "{svg}");
        assert!(svg.contains("<title>main: 70 us</title>"), "{svg}");
        assert!(svg.contains("200 us to main"), "{svg}");
        assert!(svg.contains("(no bootchart lines)"), "{svg}");
        assert!(
            svg.contains("48.0 / 50.0 ms  (×1.11 the empty kernel)"),
            "{svg}"
        );
        assert!(svg.contains(">default/hello (Xen)</text>"), "{svg}");
        assert!(svg.contains("(no successful boot)"), "{svg}");
        assert!(
            svg.contains("<title>first line → exit: 0.0 ms</title>"),
            "{svg}"
        );
        assert!(!svg.contains("width=\"-"), "{svg}");
        // The label column grows to fit the longest label.
        assert!(svg.contains(">a-rather-long-profile-name/hello (Xen)</text>"));
        assert!(!svg.contains("x=\"-"), "nothing left of the canvas: {svg}");
        assert!(svg.contains("(×1.11 the pvhello)"), "{svg}");
    }
}
