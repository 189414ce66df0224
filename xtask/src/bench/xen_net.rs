//! `cargo xtask bench net --xen`: the networking workloads on Xen, in ONE boot of the Xen lab
//! ([`crate::xenlab`]), from dom0 over the lab's bridge `xenbr0` (dom0 10.0.0.1, the guest
//! 10.0.0.2, one guest at a time), against:
//!
//! - **Linux PV**: the Linux reference guest of `bench net` ([`crate::netref`]: Debian's kernel,
//!   nginx, socat) as a Xen PV domain, made the way the lab makes its dom0: the same Debian
//!   kernel, an initramfs cut to xen-blkfront, xen-netfront and ext4 ([`netref::xen_initrd`]),
//!   its root file system on the vbd `xvda` (a copy of `rootfs.img` holding the page and the
//!   current init: [`netref::xen_root_image`]), its vif on the bridge through Linux netfront;
//! - **Stardust PV**: `httpd` (HTTP), then `echo` (echo on TCP 7, sink on 9, source on 19), built
//!   with `--xen-profile` (default `xen-net`: netfront), each a PV guest with its own vif.
//!
//! Every guest gets the same `memory =` (`--guest-memory`) and one vCPU. The clients run in
//! dom0 ([`dom0_script`]; the lab has one CPU for dom0 and the guests alike, so the figures are
//! of that one-CPU machine, the same for both sides):
//! - HTTP: `wrk -t2 -c10 -d<duration>s --latency`, with `Connection: close` and with keep-alive,
//!   against `/`: the bench's page ([`super::net::page`], `--page` bytes; nginx serves it from the
//!   root file system, `httpd` generates it with `size=`), checked byte for byte first;
//! - bulk TCP, `--xen-bulk` MiB per run, with OpenBSD `nc` (dom0 has no socat): echo (random
//!   bytes there and back, timed to the last byte back, compared after), up (to the sink, timed
//!   until the sink closes after nc's FIN, as `bench net` does) and down (zeros from the source,
//!   timed to the last byte, checked to be zeros).
//!
//! Each workload runs `--net-runs` times; the report shows medians and the ratio Stardust/Linux.
//! The script prints parseable lines (`XB ...`, [`parse_script`]); the report goes to stdout
//! and `target/bench/net-xen.md` + `net-xen.json`. It reports, it never fails on a figure; a
//! guest that cannot be made or measured is a note in the report.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::net::{
    ECHO_PORT, HTTP_PORT, NetArgs, SINK_PORT, SOURCE_PORT, Wrk, WrkSummary, parse_wrk, wrk_cells,
};
use super::report::cell;
use super::stats::{median, ratio};
use crate::netref::{self, RefGuest};
use crate::workspace::{Workspace, display_path};
use crate::xenlab::{BatchOptions, DOM0_IP, GUEST_IP, GuestSpec, Lab, LiveLine, LiveSink};

/// The prefix of every line the dom0 script prints for the host.
pub const TAG: &str = "XB";

/// What the dom0 script runs against one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workloads {
    /// Repetitions of each workload.
    pub runs: usize,
    /// Seconds of each wrk run.
    pub duration: u64,
    /// The page's size (bytes); `None`: no HTTP.
    pub page: Option<usize>,
    /// Bytes of each bulk transfer; `None`: no bulk.
    pub bulk: Option<u64>,
    /// Wait for this console line (a regular expression) before anything else.
    pub console: Option<String>,
    /// Seconds to wait for the guest's first port (and its console line).
    pub wait: u64,
}

/// The dom0 script for `w`: prints `XB page ok|differs|failed SIZE`, `XB wrk MODE RUN <a line
/// of wrk's output>` (MODE `close` or `keepalive`), `XB bulk KIND RUN BYTES OK T0 T1` (KIND
/// `echo`, `up`, `down`; OK 1 when every byte came and was right; T0 and T1 dom0's clock, s) and
/// `XB error <why>`.
pub fn dom0_script(w: &Workloads) -> String {
    let mut s = format!(
        "# cargo xtask bench net --xen: the workloads against $GUEST_IP, from dom0\n\
         R={runs}\nD={dur}\n\
         say() {{ echo \"{TAG} $*\"; }}\n\
         now() {{ date +%s.%N; }}\n",
        runs = w.runs.max(1),
        dur = w.duration.max(1),
    );
    if let Some(re) = &w.console {
        s.push_str(&format!(
            "xenlab-wait console '{}' {} || say \"error: no console line '{}' in {} s\"\n",
            re.replace('\'', ""),
            w.wait,
            re.replace(['\'', '"'], ""),
            w.wait
        ));
    }
    if let Some(page) = w.page {
        let line = std::str::from_utf8(&http1::PATTERN[..http1::PATTERN.len() - 1])
            .expect("the pattern is ASCII");
        s.push_str(&format!(
            "P={page}\n\
             xenlab-wait tcp {HTTP_PORT} {wait} || {{ say \"error: nothing listens on port {HTTP_PORT} after {wait} s\"; exit 2; }}\n\
             i=0\n\
             while [ $i -le $((P / 64)) ]; do printf '%s\\n' '{line}'; i=$((i + 1)); done | head -c $P >/tmp/want\n\
             if curl -s -m 20 -o /tmp/page http://$GUEST_IP/; then\n\
             \x20   if cmp -s /tmp/want /tmp/page; then v=ok; else v=differs; fi\n\
             \x20   say \"page $v $(stat -c %s /tmp/page)\"\n\
             else\n\
             \x20   say \"page failed 0\"\n\
             fi\n\
             for mode in close keepalive; do\n\
             \x20   i=1\n\
             \x20   while [ $i -le $R ]; do\n\
             \x20       if [ $mode = close ]; then\n\
             \x20           timeout $((D + 30)) wrk -t2 -c10 -d${{D}}s --timeout 5s --latency -H 'Connection: close' http://$GUEST_IP/ >/tmp/wrk 2>&1\n\
             \x20       else\n\
             \x20           timeout $((D + 30)) wrk -t2 -c10 -d${{D}}s --timeout 5s --latency http://$GUEST_IP/ >/tmp/wrk 2>&1\n\
             \x20       fi\n\
             \x20       sed \"s/^/{TAG} wrk $mode $i /\" /tmp/wrk\n\
             \x20       i=$((i + 1))\n\
             \x20   done\n\
             done\n",
            wait = w.wait,
        ));
    }
    if let Some(bytes) = w.bulk {
        s.push_str(&format!(
            "B={bytes}\n\
             xenlab-wait tcp {ECHO_PORT} {wait} || {{ say \"error: nothing listens on port {ECHO_PORT} after {wait} s\"; exit 2; }}\n\
             head -c $B /dev/urandom >/tmp/in\n\
             i=1\n\
             while [ $i -le $R ]; do\n\
             \x20   rm -f /tmp/out /tmp/t1\n\
             \x20   t0=$(now)\n\
             \x20   timeout 300 nc -N $GUEST_IP {ECHO_PORT} </tmp/in | {{ head -c $B >/tmp/out; now >/tmp/t1; cat >/dev/null; }}\n\
             \x20   cmp -s /tmp/in /tmp/out && ok=1 || ok=0\n\
             \x20   say \"bulk echo $i $(stat -c %s /tmp/out) $ok $t0 $(cat /tmp/t1)\"\n\
             \x20   t0=$(now)\n\
             \x20   timeout 300 nc -N $GUEST_IP {SINK_PORT} </tmp/in >/dev/null && ok=1 || ok=0\n\
             \x20   say \"bulk up $i $B $ok $t0 $(now)\"\n\
             \x20   rm -f /tmp/out /tmp/t1\n\
             \x20   t0=$(now)\n\
             \x20   timeout 300 nc -d $GUEST_IP {SOURCE_PORT} | {{ head -c $B >/tmp/out; now >/tmp/t1; }}\n\
             \x20   n=$(stat -c %s /tmp/out)\n\
             \x20   [ \"$n\" = $B ] && [ \"$(tr -d '\\000' </tmp/out | wc -c)\" = 0 ] && ok=1 || ok=0\n\
             \x20   say \"bulk down $i $n $ok $t0 $(cat /tmp/t1)\"\n\
             \x20   i=$((i + 1))\n\
             done\n\
             rm -f /tmp/in /tmp/out\n",
            wait = w.wait,
        ));
    }
    s.push_str("say done\n");
    s
}

/// What one guest's dom0 script measured ([`parse_script`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measured {
    /// wrk with `Connection: close`, per run.
    pub close: Vec<Wrk>,
    /// wrk with keep-alive, per run.
    pub keepalive: Vec<Wrk>,
    /// Echo MB/s (each way at once), per good run.
    pub echo: Vec<f64>,
    /// Up MB/s, per good run.
    pub up: Vec<f64>,
    /// Down MB/s, per good run.
    pub down: Vec<f64>,
    /// The page: `ok`, `differs` or `failed`, and its size.
    pub page: Option<(String, usize)>,
    /// The script reached its end.
    pub done: bool,
    /// What went wrong, one line each.
    pub errors: Vec<String>,
}

/// Parses a dom0 script's output ([`dom0_script`]); lines without the [`TAG`] are ignored.
pub fn parse_script(lines: &[String]) -> Measured {
    let mut m = Measured::default();
    let mut wrk: BTreeMap<(String, u32), String> = BTreeMap::new();
    for line in lines {
        let Some(rest) = line
            .trim_end()
            .strip_prefix(TAG)
            .and_then(|r| r.strip_prefix(' '))
        else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.first().copied() {
            Some("wrk") if words.len() >= 3 => {
                let (Ok(run), Some(pos)) = (words[2].parse::<u32>(), nth_word_end(rest, 3)) else {
                    continue;
                };
                let text = wrk.entry((words[1].to_string(), run)).or_default();
                text.push_str(rest[pos..].trim_start());
                text.push('\n');
            }
            Some("bulk") => match parse_bulk(&words) {
                Ok((kind, mbs)) => match kind {
                    "echo" => m.echo.push(mbs),
                    "up" => m.up.push(mbs),
                    _ => m.down.push(mbs),
                },
                Err(why) => m.errors.push(why),
            },
            Some("page") if words.len() == 3 => {
                m.page = Some((words[1].to_string(), words[2].parse().unwrap_or(0)));
            }
            Some("error" | "error:") => m.errors.push(
                rest["error".len()..]
                    .trim_start_matches(':')
                    .trim()
                    .to_string(),
            ),
            Some("done") => m.done = true,
            _ => m.errors.push(format!("an unexpected line: {rest}")),
        }
    }
    for ((mode, run), text) in wrk {
        match parse_wrk(&text) {
            Some(w) if mode == "close" => m.close.push(w),
            Some(w) => m.keepalive.push(w),
            None => m.errors.push(format!(
                "wrk {mode} run {run} gave no figures: {}",
                text.lines().take(3).collect::<Vec<_>>().join(" / ")
            )),
        }
    }
    m
}

/// The byte offset in `s` just after its `n`th whitespace-separated word (`n` from 1).
fn nth_word_end(s: &str, n: usize) -> Option<usize> {
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if in_word {
                seen += 1;
                if seen == n {
                    return Some(i);
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    (in_word && seen + 1 == n).then_some(s.len())
}

/// `bulk KIND RUN BYTES OK T0 T1` → (KIND, MB/s), or why not.
fn parse_bulk<'a>(words: &[&'a str]) -> std::result::Result<(&'a str, f64), String> {
    let line = words.join(" ");
    let [_, kind, run, bytes, ok, t0, t1] = words else {
        return Err(format!("a bulk line without its 6 fields: {line}"));
    };
    if !matches!(*kind, "echo" | "up" | "down") {
        return Err(format!("an unknown bulk workload: {line}"));
    }
    let bytes: u64 = bytes.parse().unwrap_or(0);
    let (Ok(t0), Ok(t1)) = (t0.parse::<f64>(), t1.parse::<f64>()) else {
        return Err(format!("{kind} run {run}: no times ({line})"));
    };
    if *ok != "1" {
        return Err(format!(
            "{kind} run {run}: failed ({bytes} bytes, not all of them or not the right ones)"
        ));
    }
    if t1 <= t0 || bytes == 0 {
        return Err(format!("{kind} run {run}: no time or no bytes ({line})"));
    }
    Ok((kind, bytes as f64 / (t1 - t0) / 1e6))
}

/// One target's figures.
#[derive(Debug, Clone, Serialize)]
pub struct XenTarget {
    /// The row's name.
    pub label: String,
    /// HTTP with `Connection: close`.
    pub http_close: Option<WrkSummary>,
    /// HTTP with keep-alive.
    pub http_keepalive: Option<WrkSummary>,
    /// Echo, MB/s each way (median).
    pub echo: Option<f64>,
    /// Client → guest, MB/s (median).
    pub up: Option<f64>,
    /// Guest → client, MB/s (median).
    pub down: Option<f64>,
    /// Runs behind each median: (close, keep-alive, echo, up, down).
    pub runs: [usize; 5],
    /// What failed or was not measured.
    pub notes: Vec<String>,
}

impl XenTarget {
    fn new(label: &str) -> XenTarget {
        XenTarget {
            label: label.into(),
            http_close: None,
            http_keepalive: None,
            echo: None,
            up: None,
            down: None,
            runs: [0; 5],
            notes: Vec::new(),
        }
    }

    /// Adds what a guest's script measured (`httpd` gives the HTTP figures, `echo` the bulk
    /// ones, the Linux guest both).
    pub fn add(&mut self, m: Measured) {
        if let Some((verdict, size)) = &m.page
            && verdict != "ok"
        {
            self.notes
                .push(format!("the page: {verdict} ({size} bytes)"));
        }
        self.runs[0] += m.close.len();
        self.runs[1] += m.keepalive.len();
        self.runs[2] += m.echo.len();
        self.runs[3] += m.up.len();
        self.runs[4] += m.down.len();
        if !m.close.is_empty() {
            self.http_close = WrkSummary::of(m.close);
        }
        if !m.keepalive.is_empty() {
            self.http_keepalive = WrkSummary::of(m.keepalive);
        }
        for (slot, v) in [
            (&mut self.echo, &m.echo),
            (&mut self.up, &m.up),
            (&mut self.down, &m.down),
        ] {
            if let Some(x) = median(v) {
                *slot = Some(x);
            }
        }
        self.notes.extend(m.errors);
        if !m.done {
            self.notes
                .push("the dom0 script did not reach its end".into());
        }
    }
}

/// The Xen rows of `bench net`.
#[derive(Debug, Clone, Serialize)]
pub struct XenNetReport {
    /// The page's size (bytes).
    pub page: usize,
    /// wrk's duration (s).
    pub duration: u64,
    /// Bulk size (MiB).
    pub bulk_mib: usize,
    /// Repetitions asked for.
    pub runs: usize,
    /// Every guest's `memory =` (MiB).
    pub guest_memory: u64,
    /// Stardust's profile.
    pub profile: String,
    /// The lab: QEMU, Xen and dom0 versions.
    pub lab: String,
    /// Linux PV, then Stardust PV (when measured).
    pub targets: Vec<XenTarget>,
    /// What was not measured, and why.
    pub skipped: Vec<String>,
}

/// The label of the Linux row.
pub const LINUX: &str = "Linux PV guest (netfront), from dom0";
/// The label of Stardust's row.
pub const STARDUST: &str = "Stardust PV (netfront), from dom0";

impl XenNetReport {
    /// The report as Markdown: one table, the Stardust/Linux ratios, skips and notes.
    pub fn markdown(&self) -> String {
        let mut s = String::from("## Networking on Xen\n\n");
        s.push_str(&format!(
            "The Xen lab ({}), one boot: PV guests with `memory = {}`, 1 vCPU, a vif on dom0's bridge; \
             clients in dom0 (1 vCPU shared with the guest). Page {} B; wrk -t2 -c10 -d{}s; bulk {} MiB \
             (nc); medians of up to {} runs. MB/s = 10^6 bytes/s; echo = each way at once. \
             Stardust: `httpd` and `echo`, profile `{}`.\n\n",
            self.lab,
            self.guest_memory,
            self.page,
            self.duration,
            self.bulk_mib,
            self.runs,
            self.profile
        ));
        s.push_str(
            "| target | HTTP close req/s | close p50 / p99 ms | HTTP keep-alive req/s | \
             keep-alive p50 / p99 ms | echo MB/s | up MB/s | down MB/s |\n",
        );
        s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for t in &self.targets {
            let [c, cl] = wrk_cells(&t.http_close);
            let [k, kl] = wrk_cells(&t.http_keepalive);
            s.push_str(&format!(
                "| {} | {c} | {cl} | {k} | {kl} | {} | {} | {} |\n",
                t.label,
                cell(t.echo, 2),
                cell(t.up, 2),
                cell(t.down, 2)
            ));
        }
        let find = |l: &str| self.targets.iter().find(|t| t.label == l);
        match (find(STARDUST), find(LINUX)) {
            (Some(sd), Some(lx)) => {
                let r = |a: Option<f64>, b: Option<f64>| {
                    a.zip(b)
                        .and_then(|(a, b)| ratio(a, b))
                        .map_or("—".into(), |r| format!("{r:.2}×"))
                };
                let rps = |w: &Option<WrkSummary>| w.as_ref().map(|w| w.rps);
                s.push_str(&format!(
                    "\nStardust / Linux (Xen PV): HTTP close {}, keep-alive {}, echo {}, up {}, down {}\n",
                    r(rps(&sd.http_close), rps(&lx.http_close)),
                    r(rps(&sd.http_keepalive), rps(&lx.http_keepalive)),
                    r(sd.echo, lx.echo),
                    r(sd.up, lx.up),
                    r(sd.down, lx.down)
                ));
            }
            (Some(_), None) => s.push_str("\nLinux PV reference: not available (see below)\n"),
            _ => {}
        }
        push_notes(
            &mut s,
            &self.skipped,
            self.targets
                .iter()
                .map(|t| (t.label.as_str(), &t.notes[..])),
        );
        s
    }
}

/// The notes under a Xen report's tables: what was skipped, then each target's notes.
pub(super) fn push_notes<'a>(
    s: &mut String,
    skipped: &[String],
    targets: impl Iterator<Item = (&'a str, &'a [String])>,
) {
    let notes: Vec<String> = skipped
        .iter()
        .map(|n| format!("- skipped: {n}"))
        .chain(
            targets.flat_map(|(label, notes)| notes.iter().map(move |n| format!("- {label}: {n}"))),
        )
        .collect();
    if !notes.is_empty() {
        s.push('\n');
        s.push_str(&notes.join("\n"));
        s.push('\n');
    }
}

/// The prefix of this bench's progress lines.
const WHO: &str = "bench net --xen";

fn progress(msg: impl std::fmt::Display) {
    eprintln!("{WHO}: {msg}");
}

/// The Linux PV guest's spec, or why it cannot be made.
fn linux_guest(dir: &Path, args: &NetArgs, w: &Workloads) -> Result<GuestSpec> {
    linux_pv_guest(
        dir,
        &super::net::page(args.page),
        args.guest_memory,
        RefGuest::xen_cmdline(&format!("{GUEST_IP}/24"), DOM0_IP, args.page),
        WHO,
    )
    .map(|g| {
        g.vif_wait(Duration::from_secs(w.wait))
            .timeout(guest_timeout(w))
            .dom0_script(dom0_script(w))
    })
}

/// The Linux reference guest ([`crate::netref`]) as a Xen PV guest, the way `bench net --xen`
/// and `bench kv --xen` make it: Debian's kernel, the Xen initramfs ([`netref::xen_initrd`]),
/// its root disk `dir/linux-root.img` ([`LINUX_ROOT`]: a copy of `rootfs.img` with `page` and
/// the current init, [`netref::xen_root_image`]; [`run_guests`] removes it), `memory` MiB, a
/// vif, `cmdline`; a server (destroyed once its dom0 script, still to be set, ends).
pub(super) fn linux_pv_guest(
    dir: &Path,
    page: &[u8],
    memory: u64,
    cmdline: String,
    who: &str,
) -> Result<GuestSpec> {
    let g = netref::ensure()?;
    let initrd = netref::xen_initrd(&netref::dir())?;
    let root = dir.join(LINUX_ROOT);
    eprintln!(
        "{who}: the Linux PV guest's root disk: {} (a copy of {}, the page and the init written in)",
        display_path(&root),
        display_path(&g.rootfs)
    );
    netref::xen_root_image(&g, &root, page)?;
    Ok(GuestSpec::new("linux-pv", g.kernel.clone())
        .ramdisk(initrd)
        .disk(&root)
        .disk_out(&root)
        .memory_mb(memory as u32)
        .cmdline(cmdline)
        .vif(true)
        .keeps_running(true))
}

/// The Linux PV guest's root disk in the bench's directory.
pub(super) const LINUX_ROOT: &str = "linux-root.img";

/// What one guest of [`run_guests`] gave.
#[derive(Debug)]
pub(super) struct Ran {
    /// Its row's label.
    pub label: &'static str,
    /// Its dom0 script's output.
    pub script: Vec<String>,
    /// When it did not end as expected: its summary and the end of its console.
    pub failed: Option<String>,
}

/// Runs `guests` (each with its row's label) in one lab boot, in the order given, the lab's
/// serial output in `dir/serial.log`; shows the dom0 scripts' lines that begin with `tag` and
/// pass `show`, and the guests' consoles, as they come (prefixed by `who`). Returns every
/// guest's [`Ran`] and the lab's error, if any (what was measured before it stays).
pub(super) fn run_guests(
    lab: &Lab,
    dir: &Path,
    guests: &[(&'static str, GuestSpec)],
    tag: &'static str,
    show: fn(&str) -> bool,
    who: &'static str,
) -> Result<(Vec<Ran>, Option<String>)> {
    let names: Vec<String> = guests.iter().map(|(_, g)| g.name.clone()).collect();
    let live = LiveSink::new(move |l: &LiveLine| {
        let name = |g: &usize| names.get(*g).map_or("?", String::as_str);
        match l {
            LiveLine::Script { guest, text } => {
                if let Some(rest) = text.strip_prefix(tag)
                    && show(rest)
                {
                    eprintln!("{who}: {}:{rest}", name(guest));
                }
            }
            LiveLine::Console { guest, text } => {
                eprintln!("{who}: {} console: {text}", name(guest))
            }
        }
    });
    let opts = BatchOptions {
        log: Some(dir.join("serial.log")),
        echo: true,
        live: Some(live),
        ..Default::default()
    };
    let specs: Vec<GuestSpec> = guests.iter().map(|(_, g)| g.clone()).collect();
    let batch = lab.run_batch(&specs, &opts);
    // The root disk's copy is 1 GiB of sparse file: not kept.
    let _ = std::fs::remove_file(dir.join(LINUX_ROOT));
    let batch = batch?;
    let ran = guests
        .iter()
        .zip(batch.guests)
        .map(|((label, _), g)| {
            eprintln!("{who}: {}", g.summary());
            let failed = (!g.passed()).then(|| {
                let tail: Vec<&str> = g.console.iter().rev().take(8).map(String::as_str).collect();
                format!(
                    "{} (console's end: {})",
                    g.summary(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )
            });
            Ran {
                label,
                script: g.io.script,
                failed,
            }
        })
        .collect();
    Ok((ran, batch.lab_error))
}

/// A guest's time limit: its wait, then every run of every workload with room to spare (the
/// lab takes a serial line silent for this plus 2 minutes for a stalled lab).
pub fn guest_timeout(w: &Workloads) -> Duration {
    let runs = w.runs.max(1) as u64;
    let http = if w.page.is_some() {
        2 * runs * (w.duration + 15)
    } else {
        0
    };
    // 16 MiB took 0.5 to 5 s each from dom0 here.
    let bulk = w.bulk.map_or(0, |b| 3 * runs * (20 + (b >> 20)));
    Duration::from_secs(w.wait + 60 + http + bulk)
}

/// Runs the Xen rows: Linux PV, Stardust `httpd` PV, Stardust `echo` PV, in one lab boot.
pub fn run(ws: &Workspace, args: &NetArgs) -> Result<()> {
    let lab = Lab::from_env();
    let dir = ws.target_dir().join("bench").join("xen-net");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let bulk = (args.xen_bulk as u64) << 20;
    let mut report = XenNetReport {
        page: args.page,
        duration: args.duration,
        bulk_mib: args.xen_bulk,
        runs: args.net_runs.max(1),
        guest_memory: args.guest_memory,
        profile: args.xen_profile.clone(),
        lab: lab.versions(),
        targets: Vec::new(),
        skipped: Vec::new(),
    };
    if let Err(why) = super::xen::availability(ws, &lab) {
        report.skipped.push(format!("the Xen lab: {why}"));
        return write(ws, &report);
    }
    let both = Workloads {
        runs: args.net_runs.max(1),
        duration: args.duration,
        page: Some(args.page),
        bulk: Some(bulk),
        console: Some(netref::READY_LINE.into()),
        wait: 120,
    };
    // (its row, the guest): Stardust's first, so that their figures are in even when the lab
    // stalls later (it did in 5 of 6 boots here once the Linux guest was up: see README).
    let mut guests: Vec<(&str, GuestSpec)> = Vec::new();
    for app in ["httpd", "echo"] {
        let w = Workloads {
            page: (app == "httpd").then_some(args.page),
            bulk: (app == "echo").then_some(bulk),
            console: None,
            wait: 60,
            ..both.clone()
        };
        let mut set = args.net_set.clone();
        set.push("platform=xen".into());
        match crate::build_app(ws, app, &args.xen_profile, &set) {
            Ok((_, image)) => {
                let mut g = GuestSpec::new(format!("stardust-{app}"), image.elf)
                    .memory_mb(args.guest_memory as u32)
                    .vif(true)
                    .keeps_running(true)
                    .timeout(guest_timeout(&w))
                    .dom0_script(dom0_script(&w));
                if app == "httpd" {
                    g = g.cmdline(crate::cmdline::kernel_cmdline(
                        "",
                        &[format!("size={}", args.page)],
                    ));
                }
                guests.push((STARDUST, g));
            }
            Err(e) => report.skipped.push(format!(
                "Stardust `{app}` [{}]: does not build: {}",
                args.xen_profile,
                format!("{e:#}").lines().next().unwrap_or("")
            )),
        }
    }
    match linux_guest(&dir, args, &both) {
        Ok(g) => guests.push((LINUX, g)),
        Err(e) => report.skipped.push(format!(
            "Linux PV reference: not available ({})",
            format!("{e:#}").replace('\n', " ")
        )),
    }
    if guests.is_empty() {
        return write(ws, &report);
    }
    let show: fn(&str) -> bool = |rest| !rest.starts_with(" wrk") || rest.contains("Requests/sec");
    let (ran, lab_error) = run_guests(&lab, &dir, &guests, TAG, show, WHO)?;
    if let Some(e) = lab_error {
        report.skipped.push(format!("the lab: {e}"));
    }
    for r in ran {
        let target = match report.targets.iter_mut().find(|t| t.label == r.label) {
            Some(t) => t,
            None => {
                report.targets.push(XenTarget::new(r.label));
                report.targets.last_mut().expect("just pushed")
            }
        };
        target.notes.extend(r.failed);
        target.add(parse_script(&r.script));
    }
    // Linux's row first, as in `bench net` (the batch runs it last).
    report.targets.sort_by_key(|t| t.label != LINUX);
    write(ws, &report)
}

fn write(ws: &Workspace, report: &XenNetReport) -> Result<()> {
    let md = report.markdown();
    print!("{md}");
    let dir = ws.target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).context("the report as JSON")?;
    std::fs::write(dir.join("net-xen.md"), &md).context("writing net-xen.md")?;
    std::fs::write(dir.join("net-xen.json"), json).context("writing net-xen.json")?;
    progress(format_args!(
        "wrote {}, {}",
        display_path(&dir.join("net-xen.md")),
        display_path(&dir.join("net-xen.json"))
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    const WRK_RUN: &str = "Running 3s test @ http://10.0.0.2/
  2 threads and 10 connections
  Latency Distribution
     50%    2.00ms
     99%   10.00ms
  900 requests in 3.00s, 1.00MB read
Requests/sec:    300.00
Transfer/sec:    333.00KB";

    /// A script's output as dom0 prints it: `xenlab-wait`'s own line, the page, two wrk runs
    /// per mode, bulk lines (one failed), an error, the end.
    fn output() -> Vec<String> {
        let mut out = vec![
            "xenlab-wait: tcp 10.0.0.2:80 ready after 1.20 s".to_string(),
            "XB page ok 612".into(),
        ];
        for (mode, run, rps) in [
            ("close", 1, "300.00"),
            ("close", 2, "100.00"),
            ("keepalive", 1, "900.00"),
            ("keepalive", 2, "700.00"),
        ] {
            for l in WRK_RUN.replace("300.00", rps).lines() {
                out.push(format!("XB wrk {mode} {run} {l}"));
            }
        }
        out.extend(lines(
            "XB bulk echo 1 4194304 1 100.0 102.0\n\
             XB bulk echo 2 4194304 1 200.0 201.0\n\
             XB bulk up 1 4194304 1 300.0 304.194304\n\
             XB bulk down 1 1000 0 400.0 401.0\n\
             XB error: something\n\
             XB done",
        ));
        out
    }

    #[test]
    fn the_scripts_output_is_parsed() {
        let m = parse_script(&output());
        assert_eq!(m.page, Some(("ok".to_string(), 612)));
        assert_eq!(
            m.close.iter().map(|w| w.rps).collect::<Vec<_>>(),
            [300.0, 100.0]
        );
        assert_eq!(
            m.keepalive.iter().map(|w| w.rps).collect::<Vec<_>>(),
            [900.0, 700.0]
        );
        assert_eq!(m.close[0].percentile(99), Some(10.0));
        assert_eq!(m.close[0].requests, 900);
        // 4 MiB in 2 s and in 1 s; 4194304 bytes in 4.194304 s.
        assert_eq!(m.echo, [4194304.0 / 2.0 / 1e6, 4194304.0 / 1e6]);
        assert!((m.up[0] - 1.0).abs() < 1e-9, "{:?}", m.up);
        assert!(m.down.is_empty(), "a failed run gives no figure");
        assert!(m.done);
        assert_eq!(m.errors.len(), 2, "{:?}", m.errors);
        assert!(
            m.errors[0].starts_with("down run 1: failed (1000 bytes"),
            "{:?}",
            m.errors
        );
        assert_eq!(m.errors[1], "something");
    }

    #[test]
    fn broken_output_is_reported_not_measured() {
        let m = parse_script(&lines(
            "XB wrk close 1 unable to connect to 10.0.0.2:80 Connection refused\n\
             XB bulk echo 1 4194304 1 5.0\n\
             XB bulk sideways 1 1 1 1.0 2.0\n\
             XB bulk up 1 4194304 1 7.0 7.0\n\
             XB frobnicate\n\
             not ours",
        ));
        assert!(m.close.is_empty() && m.echo.is_empty() && m.up.is_empty());
        assert!(!m.done);
        let e = m.errors.join("\n");
        assert!(e.contains("without its 6 fields"), "{e}");
        assert!(e.contains("an unknown bulk workload"), "{e}");
        assert!(e.contains("up run 1: no time"), "{e}");
        assert!(e.contains("an unexpected line: frobnicate"), "{e}");
        assert!(
            e.contains("wrk close run 1 gave no figures: unable to connect"),
            "{e}"
        );
        assert_eq!(m.errors.len(), 5, "{e}");
    }

    #[test]
    fn rows_take_medians_and_the_ratio_is_stardust_over_linux() {
        let mut linux = XenTarget::new(LINUX);
        linux.add(parse_script(&output()));
        assert_eq!(linux.http_close.as_ref().map(|w| w.rps), Some(200.0));
        assert_eq!(linux.http_keepalive.as_ref().map(|w| w.rps), Some(800.0));
        assert_eq!(linux.runs, [2, 2, 2, 1, 0]);
        let mut sd = XenTarget::new(STARDUST);
        // httpd's guest, then echo's: the row gets both.
        sd.add(parse_script(&lines(
            &output()
                .iter()
                .filter(|l| !l.starts_with("XB bulk"))
                .map(|l| l.replace("Requests/sec:    300.00", "Requests/sec:    600.00"))
                .collect::<Vec<_>>()
                .join("\n"),
        )));
        sd.add(parse_script(&lines(
            "XB bulk echo 1 4194304 1 0.0 1.0\nXB bulk down 1 2000000 1 0.0 1.0\nXB done",
        )));
        assert_eq!(sd.echo, Some(4194304.0 / 1e6));
        assert_eq!(sd.down, Some(2.0));
        let report = XenNetReport {
            page: 612,
            duration: 3,
            bulk_mib: 4,
            runs: 2,
            guest_memory: 256,
            profile: "xen-net".into(),
            lab: "Xen 4.17".into(),
            targets: vec![linux, sd],
            skipped: Vec::new(),
        };
        let md = report.markdown();
        assert!(
            md.contains("| Linux PV guest (netfront), from dom0 | 200 | 2.00 / 10.00 | 800 |"),
            "{md}"
        );
        // close: median(600, 100) = 350 against 200; keep-alive the same runs: 800 / 800; echo:
        // 4.19 against the median of 2.10 and 4.19.
        assert!(
            md.contains("Stardust / Linux (Xen PV): HTTP close 1.75×, keep-alive 1.00×, echo 1.33×, up —, down —"),
            "{md}"
        );
        assert!(
            md.contains("- Linux PV guest (netfront), from dom0: down run 1: failed"),
            "{md}"
        );
    }

    #[test]
    fn without_linux_the_report_says_why() {
        let mut sd = XenTarget::new(STARDUST);
        sd.add(parse_script(&output()));
        let report = XenNetReport {
            page: 612,
            duration: 3,
            bulk_mib: 4,
            runs: 1,
            guest_memory: 256,
            profile: "xen-net".into(),
            lab: String::new(),
            targets: vec![sd],
            skipped: vec!["Linux PV reference: not available (no rootfs)".into()],
        };
        let md = report.markdown();
        assert!(
            md.contains("Linux PV reference: not available (see below)"),
            "{md}"
        );
        assert!(
            md.contains("- skipped: Linux PV reference: not available (no rootfs)"),
            "{md}"
        );
        assert!(!md.contains("Stardust / Linux"), "{md}");
    }

    #[test]
    fn the_script_has_each_part_only_when_asked() {
        let w = Workloads {
            runs: 3,
            duration: 5,
            page: Some(612),
            bulk: None,
            console: Some("NETREF: READY".into()),
            wait: 150,
        };
        let s = dom0_script(&w);
        assert!(s.contains("R=3\nD=5\n"), "{s}");
        assert!(s.contains("xenlab-wait console 'NETREF: READY' 150"), "{s}");
        assert!(s.contains("xenlab-wait tcp 80 150"), "{s}");
        assert!(
            s.contains("-H 'Connection: close' http://$GUEST_IP/"),
            "{s}"
        );
        assert!(s.contains(&format!(
            "printf '%s\\n' '{}'",
            std::str::from_utf8(&http1::PATTERN[..63]).expect("ASCII")
        )));
        assert!(!s.contains("nc -N"), "{s}");
        assert!(s.ends_with("say done\n"), "{s}");
        let b = dom0_script(&Workloads {
            page: None,
            bulk: Some(1 << 20),
            console: None,
            ..w
        });
        assert!(
            b.contains("B=1048576\n") && b.contains("nc -N $GUEST_IP 7 </tmp/in"),
            "{b}"
        );
        assert!(
            b.contains("nc -N $GUEST_IP 9") && b.contains("nc -d $GUEST_IP 19"),
            "{b}"
        );
        assert!(
            !b.contains("wrk") && !b.contains("xenlab-wait console"),
            "{b}"
        );
    }

    #[test]
    fn word_ends() {
        assert_eq!(nth_word_end("wrk close 1 Requests/sec: 3", 3), Some(11));
        assert_eq!(nth_word_end("a  b", 2), Some(4));
        assert_eq!(nth_word_end("a b", 3), None);
    }
}
