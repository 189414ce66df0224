//! `cargo xtask bench kv --xen`: `bench kv`'s workloads ([`super::kv`]) on Xen, in ONE boot of
//! the Xen lab, with `redis-benchmark` in dom0 over the lab's bridge `xenbr0` (dom0 10.0.0.1,
//! the guest 10.0.0.2, one guest at a time), against:
//!
//! - **Stardust PV**: `kvstore` built with `--xen-storage-profile` (default `xen-storage`:
//!   blkfront on a fresh sparse disk of 512 MiB, the guest's vbd `xvda`, and netfront), run
//!   first so that its figures are in even when the lab stalls later with the Linux guest (see
//!   `bench net --xen`);
//! - **Linux PV**: the Linux reference guest made as `bench net --xen` makes it
//!   ([`super::xen_net::linux_pv_guest`]), with `redis-server` 7 as in `bench kv`
//!   (`--appendonly yes --appendfsync always --save ''`: a reply to a write means it is on
//!   disk). The lab gives a guest one disk, so its append-only file is in `/data` on its root
//!   file system (ext4 on its vbd `xvda`, read-write, a fresh copy each run: `netref.data=root`)
//!   rather than on a disk of its own as on QEMU; both guests' disks go the same way (blkback in
//!   dom0 over a file of the lab's QEMU).
//!
//! Every guest gets the same `memory =` (`--guest-memory`) and one vCPU. The dom0 script
//! ([`dom0_script`]) checks `PING`, fills the keyspace with `MSET`s of [`super::kv`]'s keys
//! (redis-cli), then runs each of [`Workload::all`] as `bench kv` does: a sizing run of
//! [`requests_floor`] requests, then `--storage-runs` runs of `-n` for about `--duration`
//! seconds, with `bench kv`'s command line ([`benchmark_args`]) and time limits. The report
//! (medians, Stardust/Linux ratios) goes to stdout and `target/bench/kv-xen.md` + `kv-xen.json`;
//! it reports, it never fails on a figure.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::kv::{
    FILL_BATCH, KV_APP, KV_DISK_BYTES, KV_PORT, KvSummary, MAX_REQUESTS, RedisFigures,
    SIZING_LIMIT, Workload, benchmark_args, parse_redis_benchmark, requests_floor, run_limit,
};
use super::net::NetArgs;
use super::storage::StorageArgs;
use super::xen_net::{linux_pv_guest, run_guests};
use crate::netref::{self, RefGuest};
use crate::workspace::{Workspace, display_path};
use crate::xenlab::{DOM0_IP, GUEST_IP, GuestSpec, Lab};

/// The prefix of every line the dom0 script prints for the host.
pub const TAG: &str = "XK";
/// The prefix of this bench's progress lines.
const WHO: &str = "bench kv --xen";
/// The label of the Linux row.
pub const LINUX: &str = "Linux PV guest (redis-server), from dom0";
/// The label of Stardust's row.
pub const STARDUST: &str = "Stardust PV (kvstore, blkfront), from dom0";
/// The key of [`super::kv::benchmark_key`] as awk's `printf` writes it.
const KEY_PRINTF: &str = "key:%012d";

fn progress(msg: impl std::fmt::Display) {
    eprintln!("{WHO}: {msg}");
}

/// Quotes `s` for dom0's shell, unless it is a variable (`$GUEST_IP`, `$n`).
fn sh_word(s: &str) -> String {
    if s.starts_with('$')
        || s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The awk command that prints the fill's commands for redis-cli: `MSET key value ...` with
/// [`FILL_BATCH`] of [`super::kv::benchmark_key`]'s keys each, 3-byte values, as `bench kv`
/// fills its keyspace.
fn fill_command(keyspace: usize) -> String {
    format!(
        "awk -v k={keyspace} -v b={FILL_BATCH} 'BEGIN {{ for (i = 0; i < k; i += b) {{ \
         printf \"MSET\"; for (j = i; j < i + b && j < k; j++) printf \" {KEY_PRINTF} xxx\", j; \
         printf \"\\n\" }} }}'"
    )
}

/// The dom0 script: waits for `console` (a regular expression, when given) and the port, checks
/// `PING`, fills the keyspace, then per workload prints `XK csv TEST PIPELINE RUN N <a line of
/// redis-benchmark --csv>` for every run; `XK fill OK BATCHES T0 T1`, `XK error <why>` (a run
/// without figures gives its exit status: 124 when it hit its time limit), `XK done`.
pub fn dom0_script(opts: &StorageArgs, duration: u64, console: Option<&str>, wait: u64) -> String {
    let keyspace = opts.kv_keyspace.max(1);
    let batches = keyspace.div_ceil(FILL_BATCH);
    let mut s = format!(
        "# cargo xtask bench kv --xen: redis-benchmark against $GUEST_IP:{KV_PORT}, from dom0\n\
         R={runs}\nD={duration}\n\
         say() {{ echo \"{TAG} $*\"; }}\n\
         now() {{ date +%s.%N; }}\n",
        runs = opts.storage_runs.max(1),
    );
    if let Some(re) = console {
        s.push_str(&format!(
            "xenlab-wait console '{re}' {wait} || say \"error: no console line '{re}' in {wait} s\"\n",
            re = re.replace(['\'', '"'], ""),
        ));
    }
    s.push_str(&format!(
        "xenlab-wait tcp {KV_PORT} {wait} || {{ say \"error: nothing listens on port {KV_PORT} after {wait} s\"; exit 2; }}\n\
         p=$(timeout 30 redis-cli -h $GUEST_IP -p {KV_PORT} PING 2>&1 | tr -d '\\r' | head -n 1)\n\
         [ \"$p\" = PONG ] || {{ say \"error: PING: $p\"; exit 2; }}\n\
         t0=$(now)\n\
         {fill} | timeout 300 redis-cli -h $GUEST_IP -p {KV_PORT} >/tmp/fill 2>&1\n\
         say \"fill $(grep -c '^OK' /tmp/fill) {batches} $t0 $(now)\"\n\
         [ \"$(grep -c '^OK' /tmp/fill)\" = {batches} ] || {{ say \"error: the fill: $(grep -v '^OK' /tmp/fill | head -n 1)\"; exit 2; }}\n\
         # run TEST PIPELINE FLOOR: a sizing run of FLOOR requests, then R runs of about D s\n\
         run() {{\n\
         \x20   n=$3\n\
         \x20   timeout {sizing} {bench} >/tmp/out 2>/tmp/err\n\
         \x20   st=$?\n\
         \x20   rps=$(awk -F'\"' '$2 != \"test\" && $4 ~ /^[0-9.]+$/ {{ r = $4 }} END {{ print r }}' /tmp/out)\n\
         \x20   if [ -z \"$rps\" ]; then say \"error: $1 -P $2: the sizing run ($3 requests) gave no figures: status $st$(tail -n 1 /tmp/err | sed 's/^/: /')\"; return; fi\n\
         \x20   n=$(awk -v r=$rps -v d=$D -v f=$3 'BEGIN {{ n = int(r * d); if (n < f) n = f; if (n > {max}) n = {max}; print n }}')\n\
         \x20   i=1\n\
         \x20   while [ $i -le $R ]; do\n\
         \x20       timeout {limit} {bench} >/tmp/out 2>/tmp/err\n\
         \x20       st=$?\n\
         \x20       sed \"s/^/{TAG} csv $1 $2 $i $n /\" /tmp/out\n\
         \x20       grep -q '^\"[A-Z]' /tmp/out || {{ say \"error: $1 -P $2 run $i (-n $n): status $st$(tail -n 1 /tmp/err | sed 's/^/: /')\"; return; }}\n\
         \x20       i=$((i + 1))\n\
         \x20   done\n\
         }}\n",
        fill = fill_command(keyspace),
        sizing = SIZING_LIMIT.as_secs(),
        limit = run_limit(duration).as_secs(),
        max = MAX_REQUESTS,
        bench = benchmark_args("$GUEST_IP", opts, "$1", "$2", "$n")
            .iter()
            .map(|a| sh_word(a))
            .collect::<Vec<_>>()
            .join(" "),
    ));
    for w in Workload::all(opts.kv_pipeline.max(2)) {
        s.push_str(&format!(
            "run {} {} {}\n",
            w.test,
            w.pipeline,
            requests_floor(opts.kv_clients, w)
        ));
    }
    s.push_str("say done\n");
    s
}

/// What one guest's dom0 script measured ([`parse_script`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measured {
    /// Per workload that has runs, in [`Workload::all`]'s order.
    pub workloads: Vec<KvSummary>,
    /// Seconds the fill took.
    pub fill_s: Option<f64>,
    /// The script reached its end.
    pub done: bool,
    /// What went wrong, one line each.
    pub errors: Vec<String>,
}

/// Parses a dom0 script's output ([`dom0_script`]) for `pipeline`'s workloads; lines without
/// the [`TAG`] are ignored. Each run's CSV goes through `bench kv`'s parser.
pub fn parse_script(lines: &[String], pipeline: usize) -> Measured {
    let mut m = Measured::default();
    // (test, pipeline, run) → (-n, CSV text)
    let mut runs: BTreeMap<(String, usize, u32), (u64, String)> = BTreeMap::new();
    for line in lines {
        let Some(rest) = line
            .trim_end()
            .strip_prefix(TAG)
            .and_then(|r| r.strip_prefix(' '))
        else {
            continue;
        };
        let words: Vec<&str> = rest.splitn(6, ' ').collect();
        match words.first().copied() {
            Some("csv") if words.len() == 6 => {
                let (Ok(p), Ok(run), Ok(n)) =
                    (words[2].parse(), words[3].parse(), words[4].parse())
                else {
                    m.errors.push(format!("an unexpected line: {rest}"));
                    continue;
                };
                let text = &mut runs.entry((words[1].to_string(), p, run)).or_default();
                text.0 = n;
                text.1.push_str(words[5]);
                text.1.push('\n');
            }
            Some("fill") => {
                let w: Vec<&str> = rest.split_whitespace().collect();
                match (
                    w.get(3).and_then(|t| t.parse::<f64>().ok()),
                    w.get(4).and_then(|t| t.parse::<f64>().ok()),
                ) {
                    (Some(t0), Some(t1)) if w.len() == 5 && w[1] == w[2] => {
                        m.fill_s = Some(t1 - t0)
                    }
                    _ => {}
                }
            }
            Some("error" | "error:") => m.errors.push(
                rest["error".len()..]
                    .trim_start_matches(':')
                    .trim()
                    .to_string(),
            ),
            Some("done") if words.len() == 1 => m.done = true,
            _ => m.errors.push(format!("an unexpected line: {rest}")),
        }
    }
    for w in Workload::all(pipeline) {
        let mut figures: Vec<RedisFigures> = Vec::new();
        let mut requests = 0;
        for ((test, p, run), (n, text)) in &runs {
            if test != w.test || *p != w.pipeline {
                continue;
            }
            match parse_redis_benchmark(text) {
                Ok(f) => match f.into_iter().find(|f| f.test.eq_ignore_ascii_case(w.test)) {
                    Some(f) => {
                        requests = *n;
                        figures.push(f);
                    }
                    None => {
                        m.errors
                            .push(format!("{} run {run}: no {} figures", w.label(), w.label()))
                    }
                },
                Err(e) => m.errors.push(format!("{} run {run}: {e:#}", w.label())),
            }
        }
        if let Some(s) = KvSummary::of(w, requests, figures) {
            m.workloads.push(s);
        }
    }
    m
}

/// One row.
#[derive(Debug, Clone, Serialize)]
pub struct XenKvTarget {
    /// The row's name.
    pub label: String,
    /// Per workload (missing when it failed).
    pub workloads: Vec<KvSummary>,
    /// Seconds the fill took.
    pub fill_s: Option<f64>,
    /// What failed or was not measured.
    pub notes: Vec<String>,
}

impl XenKvTarget {
    /// The row `label` from what its guest's script measured (and why the guest failed).
    pub fn new(label: &str, m: Measured, failed: Option<String>) -> XenKvTarget {
        let mut notes: Vec<String> = failed.into_iter().collect();
        notes.extend(m.errors);
        if !m.done {
            notes.push("the dom0 script did not reach its end".into());
        }
        XenKvTarget {
            label: label.into(),
            workloads: m.workloads,
            fill_s: m.fill_s,
            notes,
        }
    }
}

/// The Xen rows of `bench kv`.
#[derive(Debug, Clone, Serialize)]
pub struct XenKvReport {
    /// redis-benchmark's clients.
    pub clients: usize,
    /// The pipelined workloads' depth.
    pub pipeline: usize,
    /// Distinct keys.
    pub keyspace: usize,
    /// Seconds each run is sized for.
    pub duration: u64,
    /// Repetitions.
    pub runs: usize,
    /// Every guest's `memory =` (MiB).
    pub guest_memory: u64,
    /// Stardust's profile.
    pub profile: String,
    /// The lab: QEMU, Xen and dom0 versions.
    pub lab: String,
    /// Linux PV, then Stardust PV (when measured).
    pub targets: Vec<XenKvTarget>,
    /// What was not measured, and why.
    pub skipped: Vec<String>,
}

impl XenKvReport {
    /// The report as Markdown: `bench kv`'s tables, the Stardust/Linux ratios, skips and notes.
    pub fn markdown(&self) -> String {
        let mut s = String::from("## Key-value server on Xen (redis-benchmark)\n\n");
        s.push_str(&format!(
            "The Xen lab ({}), one boot: PV guests with `memory = {}`, 1 vCPU, a vif on dom0's \
             bridge; redis-benchmark in dom0 (1 vCPU shared with the guest) -c {} -r {} (3-byte \
             values, keyspace filled first), each run sized for about {} s; medians of {} runs. \
             Durability: a reply to a write means it is on disk (redis-server: appendonly yes, \
             appendfsync always, on ext4 on its root vbd; `kvstore` [{}]: sdfs on its vbd, \
             blkfront).\n\n",
            self.lab,
            self.guest_memory,
            self.clients,
            self.keyspace,
            self.duration,
            self.runs,
            self.profile
        ));
        if self.targets.is_empty() {
            s.push_str("No target was measured.\n");
        } else {
            let rows: Vec<(&str, &[KvSummary])> = self
                .targets
                .iter()
                .map(|t| (t.label.as_str(), t.workloads.as_slice()))
                .collect();
            let find = |l: &str| self.targets.iter().find(|t| t.label == l);
            let ratios = find(STARDUST).zip(find(LINUX)).map(|(sd, lx)| {
                (
                    "Stardust / Linux (Xen PV)",
                    sd.workloads.as_slice(),
                    lx.workloads.as_slice(),
                )
            });
            super::kv::tables(&mut s, self.pipeline, &rows, ratios);
            if find(STARDUST).is_some() && find(LINUX).is_none() {
                s.push_str("\nLinux PV reference: not available (see below)\n");
            }
        }
        super::xen_net::push_notes(
            &mut s,
            &self.skipped,
            self.targets
                .iter()
                .map(|t| (t.label.as_str(), &t.notes[..])),
        );
        s
    }
}

/// A guest's time limit: its wait, the fill, then every workload's sizing and runs at their
/// limits (a guest that answers ends long before).
fn guest_timeout(opts: &StorageArgs, duration: u64, wait: u64) -> Duration {
    let runs = opts.storage_runs.max(1) as u64;
    let per_workload = 3 * duration + 60 + runs * (duration + 30);
    Duration::from_secs(wait + 120 + 4 * per_workload)
}

/// Runs the Xen rows: Stardust `kvstore` PV, then Linux PV, in one lab boot.
pub fn run(ws: &Workspace, net: &NetArgs, opts: &StorageArgs) -> Result<()> {
    let lab = Lab::from_env();
    let dir = ws.target_dir().join("bench").join("xen-kv");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut report = XenKvReport {
        clients: opts.kv_clients,
        pipeline: opts.kv_pipeline.max(2),
        keyspace: opts.kv_keyspace,
        duration: net.duration,
        runs: opts.storage_runs,
        guest_memory: net.guest_memory,
        profile: opts.xen_storage_profile.clone(),
        lab: lab.versions(),
        targets: Vec::new(),
        skipped: Vec::new(),
    };
    if let Err(why) = super::xen::availability(ws, &lab) {
        report.skipped.push(format!("the Xen lab: {why}"));
        return write(ws, &report);
    }
    let mut guests: Vec<(&'static str, GuestSpec)> = Vec::new();
    let sd_disk = dir.join("stardust-kv.img");
    let mut set = opts.storage_set.clone();
    set.push("platform=xen".into());
    match crate::build_app(ws, KV_APP, &opts.xen_storage_profile, &set) {
        Ok((_, image)) => {
            super::storage::sparse_image(&sd_disk, KV_DISK_BYTES)?;
            let wait = 60;
            guests.push((
                STARDUST,
                GuestSpec::new(format!("stardust-{KV_APP}"), image.elf)
                    .memory_mb(net.guest_memory as u32)
                    .vif(true)
                    .disk(&sd_disk)
                    .disk_out(&sd_disk)
                    .keeps_running(true)
                    .timeout(guest_timeout(opts, net.duration, wait))
                    .dom0_script(dom0_script(opts, net.duration, None, wait)),
            ));
        }
        Err(e) => report.skipped.push(format!(
            "Stardust `{KV_APP}` [{}]: does not build: {}",
            opts.xen_storage_profile,
            format!("{e:#}").lines().next().unwrap_or("")
        )),
    }
    let wait = 120;
    let linux = linux_pv_guest(
        &dir,
        b"",
        net.guest_memory,
        RefGuest::xen_cmdline(&format!("{GUEST_IP}/24"), DOM0_IP, 0)
            .replace(" netref.ro=1", " netref.data=root"),
        WHO,
    );
    match linux {
        Ok(g) => guests.push((
            LINUX,
            g.vif_wait(Duration::from_secs(wait))
                .timeout(guest_timeout(opts, net.duration, wait))
                .dom0_script(dom0_script(
                    opts,
                    net.duration,
                    Some(&format!("{}.*redis={KV_PORT}", netref::READY_LINE)),
                    wait,
                )),
        )),
        Err(e) => report.skipped.push(format!(
            "Linux PV reference: not available ({})",
            format!("{e:#}").replace('\n', " ")
        )),
    }
    if guests.is_empty() {
        return write(ws, &report);
    }
    let show: fn(&str) -> bool = |rest| !rest.starts_with(" csv") || !rest.contains("\"test\"");
    let ran = run_guests(&lab, &dir, &guests, TAG, show, WHO);
    let _ = std::fs::remove_file(&sd_disk);
    let (ran, lab_error) = ran?;
    if let Some(e) = lab_error {
        report.skipped.push(format!("the lab: {e}"));
    }
    for r in ran {
        let m = parse_script(&r.script, report.pipeline);
        report.targets.push(XenKvTarget::new(r.label, m, r.failed));
    }
    // Linux's row first, as in `bench kv` (the batch runs it last).
    report.targets.sort_by_key(|t| t.label != LINUX);
    write(ws, &report)
}

fn write(ws: &Workspace, report: &XenKvReport) -> Result<()> {
    let md = report.markdown();
    print!("{md}");
    let json = serde_json::to_string_pretty(report).context("the report as JSON")?;
    let [a, b] = super::storage::write_report(ws, "kv-xen", &md, &json)?;
    progress(format_args!(
        "wrote {}, {}",
        display_path(&a),
        display_path(&b)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> StorageArgs {
        StorageArgs {
            storage_runs: 2,
            kv_clients: 50,
            kv_pipeline: 16,
            kv_keyspace: 250,
            disk_size: 256,
            iodepth: 1,
            storage_profile: "storage".into(),
            xen_storage_profile: "xen-storage".into(),
            storage_set: Vec::new(),
        }
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    const HEADER: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"";

    /// Output of the script as it ran against a redis-server (trimmed): the fill, two runs of
    /// SET, one of GET, a failed GET -P 16, no SET -P 16.
    fn output() -> Vec<String> {
        let run = |w: &str, run: u32, n: u64, fig: &str| {
            vec![
                format!("XK csv {w} {run} {n} {HEADER}"),
                format!("XK csv {w} {run} {n} {fig}"),
            ]
        };
        let mut out = vec![
            "xenlab-wait: tcp 10.0.0.2:6379 ready after 0.20 s".to_string(),
            "XK fill 3 3 100.25 101.75".into(),
        ];
        out.extend(run(
            "set 1",
            1,
            47619,
            "\"SET\",\"65231.50\",\"0.673\",\"0.168\",\"0.711\",\"0.895\",\"1.039\",\"4.479\"",
        ));
        out.extend(run(
            "set 1",
            2,
            47619,
            "\"SET\",\"58500.00\",\"0.756\",\"0.168\",\"0.775\",\"0.919\",\"1.119\",\"7.519\"",
        ));
        out.extend(run(
            "get 1",
            1,
            111111,
            "\"GET\",\"79592.41\",\"0.412\",\"0.056\",\"0.407\",\"0.615\",\"0.663\",\"3.951\"",
        ));
        out.push("XK csv get 16 1 640000 Could not connect to Redis at 10.0.0.2:6379".into());
        out.push("XK error: get -P 16 run 1: status 1: Connection refused".into());
        out.push("XK done".into());
        out
    }

    #[test]
    fn the_scripts_output_is_parsed_into_medians() {
        let m = parse_script(&output(), 16);
        assert!(m.done);
        assert_eq!(m.fill_s, Some(1.5));
        assert_eq!(m.workloads.len(), 2, "{:?}", m.workloads);
        let set = &m.workloads[0];
        assert_eq!(set.workload, Workload::all(16)[0]);
        assert_eq!(set.requests, 47619);
        assert_eq!(set.runs.len(), 2);
        assert!(
            (set.rps - (65231.5 + 58500.0) / 2.0).abs() < 1e-6,
            "{}",
            set.rps
        );
        assert_eq!(set.p99_ms, Some((1.039 + 1.119) / 2.0));
        assert_eq!(m.workloads[1].workload, Workload::all(16)[1]);
        assert_eq!(m.workloads[1].rps, 79592.41);
        let e = m.errors.join("\n");
        assert!(
            e.contains("GET -P 16 run 1: redis-benchmark printed no figures"),
            "{e}"
        );
        assert!(
            e.contains("get -P 16 run 1: status 1: Connection refused"),
            "{e}"
        );
        assert_eq!(m.errors.len(), 2, "{e}");
    }

    #[test]
    fn broken_output_is_reported_not_measured() {
        let m = parse_script(
            &lines(
                "XK fill 2 3 1.0 2.0\n\
                 XK csv set one 1 10 \"SET\",\"1.0\"\n\
                 XK csv set 1 1 10 \"SET\",\"fast\"\n\
                 XK frobnicate\n\
                 XK done now\n\
                 not ours",
            ),
            16,
        );
        assert!(m.workloads.is_empty(), "{:?}", m.workloads);
        assert_eq!(m.fill_s, None, "a fill with keys missing has no time");
        assert!(!m.done);
        let e = m.errors.join("\n");
        assert!(e.contains("an unexpected line: csv set one"), "{e}");
        assert!(e.contains("SET run 1: redis-benchmark: the rate"), "{e}");
        assert!(e.contains("an unexpected line: frobnicate"), "{e}");
        assert!(e.contains("an unexpected line: done now"), "{e}");
        assert_eq!(m.errors.len(), 4, "{e}");
    }

    #[test]
    fn the_script_runs_bench_kvs_workloads_and_command_line() {
        let o = opts();
        let s = dom0_script(&o, 5, Some("NETREF: READY.*redis=6379"), 120);
        assert!(s.contains("R=2\nD=5\n"), "{s}");
        assert!(
            s.contains("xenlab-wait console 'NETREF: READY.*redis=6379' 120"),
            "{s}"
        );
        assert!(s.contains("xenlab-wait tcp 6379 120"), "{s}");
        // bench kv's command line, with dom0's variables.
        let cmd = benchmark_args("$GUEST_IP", &o, "$1", "$2", "$n").join(" ");
        assert_eq!(
            cmd,
            "redis-benchmark -h $GUEST_IP -p 6379 -c 50 -n $n -r 250 -P $2 -t $1 --csv"
        );
        assert!(s.contains(&format!("timeout 300 {cmd} >/tmp/out")), "{s}");
        assert!(s.contains(&format!("timeout 90 {cmd} >/tmp/out")), "{s}");
        // Every workload, with bench kv's sizing floor; the fill: 3 MSETs.
        for w in Workload::all(16) {
            let line = format!("run {} {} {}\n", w.test, w.pipeline, requests_floor(50, w));
            assert!(s.contains(&line), "{line} in {s}");
        }
        assert!(
            s.contains("say \"fill $(grep -c '^OK' /tmp/fill) 3 $t0"),
            "{s}"
        );
        assert!(s.ends_with("run get 16 16000\nsay done\n"), "{s}");
        let quiet = dom0_script(&o, 5, None, 60);
        assert!(!quiet.contains("xenlab-wait console"), "{quiet}");
    }

    /// The fill's keys are `bench kv`'s (and redis-benchmark's `-r`): run its awk here.
    #[test]
    fn the_fill_sets_bench_kvs_keys() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(fill_command(205))
            .output();
        let Ok(out) = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()) else {
            eprintln!("skipped: no sh here");
            return;
        };
        let cmds: Vec<&str> = out.lines().collect();
        assert_eq!(cmds.len(), 3, "{out}");
        let want = |r: std::ops::Range<usize>| {
            let mut s = String::from("MSET");
            for k in r {
                s.push_str(&format!(" {} xxx", super::super::kv::benchmark_key(k)));
            }
            s
        };
        assert_eq!(cmds[0], want(0..100));
        assert_eq!(cmds[2], want(200..205));
    }

    #[test]
    fn the_report_has_both_rows_and_the_ratios() {
        let linux = XenKvTarget::new(LINUX, parse_script(&output(), 16), None);
        let sd_out: Vec<String> = output()
            .iter()
            .map(|l| {
                l.replace("65231.50", "130463.00")
                    .replace("58500.00", "117000.00")
            })
            .collect();
        let sd = XenKvTarget::new(
            STARDUST,
            parse_script(&sd_out, 16),
            Some("stardust-kvstore: crashed".into()),
        );
        let report = XenKvReport {
            clients: 50,
            pipeline: 16,
            keyspace: 250,
            duration: 5,
            runs: 2,
            guest_memory: 256,
            profile: "xen-storage".into(),
            lab: "Xen 4.17".into(),
            targets: vec![linux, sd],
            skipped: Vec::new(),
        };
        let md = report.markdown();
        assert!(
            md.starts_with("## Key-value server on Xen (redis-benchmark)\n"),
            "{md}"
        );
        assert!(
            md.contains("| target | SET req/s | GET req/s | SET -P 16 req/s | GET -P 16 req/s |"),
            "{md}"
        );
        assert!(
            md.contains("| Linux PV guest (redis-server), from dom0 | 61866 | 79592 | — | — |"),
            "{md}"
        );
        assert!(
            md.contains(
                "Stardust / Linux (Xen PV): SET 2.00×, GET 1.00×, SET -P 16 —, GET -P 16 —"
            ),
            "{md}"
        );
        assert!(
            md.contains("- Stardust PV (kvstore, blkfront), from dom0: stardust-kvstore: crashed"),
            "{md}"
        );
        let alone = XenKvReport {
            targets: report.targets[1..].to_vec(),
            skipped: vec!["Linux PV reference: not available (no rootfs)".into()],
            ..report.clone()
        }
        .markdown();
        assert!(
            alone.contains("Linux PV reference: not available (see below)"),
            "{alone}"
        );
        assert!(!alone.contains("Stardust / Linux"), "{alone}");
        let none = XenKvReport {
            targets: Vec::new(),
            skipped: vec!["the Xen lab: not built".into()],
            ..report
        }
        .markdown();
        assert!(none.contains("No target was measured.\n") && !none.contains("| target"));
        assert!(none.contains("- skipped: the Xen lab: not built"), "{none}");
    }
}
