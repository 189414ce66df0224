//! `cargo xtask bench kv`: a Redis-protocol key-value server under `redis-benchmark`, over TAP,
//! one run, side by side.
//!
//! Targets, in this order (`--target`; default all three):
//! - **host**: the ceiling: the host's own `redis-server` (a temporary directory under
//!   `target/bench/`, never the system service) on the namespace's 127.0.0.1, with the guests'
//!   persistence options ([`REDIS_PERSISTENCE`]);
//! - **Linux (TAP)**: `redis-server` 7 in the reference guest ([`crate::netref`]), its
//!   append-only file on ext4 on the data disk, on `bench net`'s QEMU line plus the data disk
//!   ([`super::storage`]);
//! - **Stardust (TAP)**: the `kvstore` app on the same QEMU line and data disk (booted with
//!   `ip=10.0.0.2/24 gw=10.0.0.1`; built with `--storage-profile`); "not available yet" when
//!   the workspace has no `apps/kvstore`.
//!
//! Durability is the same everywhere: a reply to a write means the write is on disk (Redis:
//! `appendonly yes`, `appendfsync always`; kvstore: by design). Every server gets a fresh disk
//! (guests: a sparse raw image; host: an empty directory).
//!
//! Workloads (after a check that the server answers `PING`, and a fill of the keyspace with
//! `MSET`, so that every GET finds its key): `redis-benchmark -c <clients> -r <keyspace>` with
//! 3-byte values, `-t set` and `-t get`, each without pipelining and with `-P <depth>`. Each
//! runs once briefly to size `-n` for `--duration` seconds, then `--storage-runs` times; the
//! table shows the medians (requests per second; p50 / p99 latency as redis-benchmark prints
//! them). Results: a Markdown table on stdout, and `target/bench/kv.md` + `kv.json`. Reported,
//! never gated.

use crate::bench::report::cell;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Error, Result, bail};
use serde::Serialize;

use super::net::{Guest, NetArgs, TargetKind, addr, in_ns, wait_port};
use super::stats::{median, ratio};
use super::storage::{Setup, StorageArgs};
use crate::child;
use crate::cmd::QemuArgs;
use crate::netns::{self, NetNs};
use crate::netref::{self, RefGuest};
use crate::workspace::{Workspace, display_path};

/// The servers' TCP port.
pub const KV_PORT: u16 = 6379;
/// Stardust's key-value app.
pub const KV_APP: &str = "kvstore";
/// The data image of each guest (sparse): room for the append-only file and its rewrites.
pub(super) const KV_DISK_BYTES: u64 = 512 << 20;
/// redis-server's persistence, the same on the host and in the Linux guest (the guest's init,
/// `xtask/netref/init`, has the same words): the append-only file, fsynced before each reply;
/// no snapshots.
pub const REDIS_PERSISTENCE: [&str; 6] = [
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--save",
    "",
];
/// Keys per `MSET` of the fill.
pub(super) const FILL_BATCH: usize = 100;

fn progress(msg: impl std::fmt::Display) {
    eprintln!("bench kv: {msg}");
}

/// One test's figures, as redis-benchmark prints them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisFigures {
    /// The test's name (`SET`, `GET`).
    pub test: String,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles (ms), when printed (redis-benchmark 7's `--csv` and `-q`).
    pub p50_ms: Option<f64>,
    /// The 99th percentile (ms), when printed (`--csv`).
    pub p99_ms: Option<f64>,
}

/// Splits a CSV line of redis-benchmark (`"SET","123.45",...`) into its fields.
fn csv_fields(line: &str) -> Option<Vec<&str>> {
    let line = line.trim();
    if !line.starts_with('"') || !line.ends_with('"') || line.len() < 2 {
        return None;
    }
    Some(line[1..line.len() - 1].split("\",\"").collect())
}

/// Parses redis-benchmark's output: `--csv` (redis-benchmark 7: a header line
/// `"test","rps","avg_latency_ms",...` then one line per test; 6 and older: `"SET","123.45"`
/// lines without a header) or `-q` (`SET: 123.45 requests per second, p50=0.951 msec`, after
/// progress that ends in `\r`). An error when no test has figures, or a line of a test has a
/// rate that is not a number.
pub fn parse_redis_benchmark(out: &str) -> Result<Vec<RedisFigures>> {
    let mut header: Option<Vec<String>> = None;
    let mut got = Vec::new();
    for raw in out.lines() {
        // -q's progress rewrites its line with '\r': the last part is the final text.
        let line = raw.rsplit('\r').next().unwrap_or(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(fields) = csv_fields(line) {
            if fields.first() == Some(&"test") {
                header = Some(fields.iter().map(|f| f.to_string()).collect());
                continue;
            }
            let col = |name: &str, default: Option<usize>| {
                header
                    .as_ref()
                    .map_or(default, |h| h.iter().position(|c| c == name))
                    .and_then(|i| fields.get(i))
            };
            let test = fields[0].to_string();
            let Some(rps) = col("rps", Some(1)) else {
                bail!("redis-benchmark: `{line}` has no rate");
            };
            let rps: f64 = rps
                .parse()
                .with_context(|| format!("redis-benchmark: the rate of `{line}`"))?;
            let ms = |name| col(name, None).and_then(|v| v.parse::<f64>().ok());
            got.push(RedisFigures {
                test,
                rps,
                p50_ms: ms("p50_latency_ms"),
                p99_ms: ms("p99_latency_ms"),
            });
        } else if let Some((test, rest)) = line.split_once(": ")
            && let Some((rate, tail)) = rest.split_once(" requests per second")
            && !test.contains(' ')
        {
            let rps: f64 = rate
                .trim()
                .parse()
                .with_context(|| format!("redis-benchmark: the rate of `{line}`"))?;
            let p50 = tail
                .split_once("p50=")
                .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok());
            got.push(RedisFigures {
                test: test.to_string(),
                rps,
                p50_ms: p50,
                p99_ms: None,
            });
        }
    }
    if got.is_empty() {
        bail!(
            "redis-benchmark printed no figures: {}",
            out.trim().lines().last().unwrap_or("(nothing)")
        );
    }
    Ok(got)
}

/// One workload: a command, without pipelining (`pipeline` 1) or with `-P pipeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// `set` or `get` (redis-benchmark's `-t`).
    pub test: &'static str,
    /// `-P`.
    pub pipeline: usize,
}

impl Workload {
    /// The workloads, in the order run: SETs first (they write the keys the GETs read, though
    /// the fill already did).
    pub fn all(pipeline: usize) -> [Workload; 4] {
        [
            Workload {
                test: "set",
                pipeline: 1,
            },
            Workload {
                test: "get",
                pipeline: 1,
            },
            Workload {
                test: "set",
                pipeline,
            },
            Workload {
                test: "get",
                pipeline,
            },
        ]
    }

    /// `SET`, `GET -P 16`.
    pub fn label(&self) -> String {
        let name = self.test.to_uppercase();
        if self.pipeline > 1 {
            format!("{name} -P {}", self.pipeline)
        } else {
            name
        }
    }
}

/// The medians of one workload's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvSummary {
    /// Which.
    pub workload: Workload,
    /// `-n` of each run (sized by a short first run).
    pub requests: u64,
    /// Median requests per second.
    pub rps: f64,
    /// Median p50 latency (ms).
    pub p50_ms: Option<f64>,
    /// Median p99 latency (ms).
    pub p99_ms: Option<f64>,
    /// Every run.
    pub runs: Vec<RedisFigures>,
}

impl KvSummary {
    /// Medians of `runs`; `None` when empty.
    pub fn of(workload: Workload, requests: u64, runs: Vec<RedisFigures>) -> Option<KvSummary> {
        let rps = median(&runs.iter().map(|r| r.rps).collect::<Vec<_>>())?;
        let m = |f: fn(&RedisFigures) -> Option<f64>| {
            median(&runs.iter().filter_map(f).collect::<Vec<_>>())
        };
        Some(KvSummary {
            workload,
            requests,
            rps,
            p50_ms: m(|r| r.p50_ms),
            p99_ms: m(|r| r.p99_ms),
            runs,
        })
    }
}

/// One target's figures.
#[derive(Debug, Clone, Serialize)]
pub struct KvTarget {
    /// Which.
    pub kind: TargetKind,
    /// Per workload, in [`Workload::all`]'s order (missing when it failed).
    pub workloads: Vec<KvSummary>,
    /// What failed or was not measured.
    pub notes: Vec<String>,
}

impl KvTarget {
    fn new(kind: TargetKind) -> KvTarget {
        KvTarget {
            kind,
            workloads: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// The whole bench's result.
#[derive(Debug, Clone, Serialize)]
pub struct KvReport {
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
    /// Guest memory (MiB).
    pub guest_memory: u64,
    /// The guests' machine.
    pub machine: String,
    /// The guests' accelerator.
    pub accel: String,
    /// The data disk's QEMU options.
    pub disk: String,
    /// Per target, in the order measured.
    pub targets: Vec<KvTarget>,
    /// Targets skipped, with why.
    pub skipped: Vec<String>,
}

impl KvReport {
    /// The report as Markdown: requests per second, latencies, the Stardust/Linux ratios,
    /// skips and notes.
    pub fn markdown(&self) -> String {
        let mut s = String::from("## Key-value server (redis-benchmark)\n\n");
        s.push_str(&format!(
            "Guests: QEMU {} ({}), -m {}M, virtio-net over TAP, data disk `{}` (fresh, sparse); \
             redis-benchmark -c {} -r {} (3-byte values, keyspace filled first), each run sized \
             for about {} s; medians of {} runs. Durability: a reply to a write means it is on \
             disk (redis-server: appendonly yes, appendfsync always).\n\n",
            self.machine,
            self.accel,
            self.guest_memory,
            self.disk,
            self.clients,
            self.keyspace,
            self.duration,
            self.runs
        ));
        if self.targets.is_empty() {
            s.push_str("No target was measured.\n");
        } else {
            self.tables(&mut s);
        }
        let notes: Vec<String> = self
            .skipped
            .iter()
            .map(|n| format!("- skipped: {n}"))
            .chain(self.targets.iter().flat_map(|t| {
                t.notes
                    .iter()
                    .map(move |n| format!("- {}: {n}", t.kind.label()))
            }))
            .collect();
        if !notes.is_empty() {
            s.push('\n');
            s.push_str(&notes.join("\n"));
            s.push('\n');
        }
        s
    }

    /// The tables (req/s, latencies) and the ratios.
    fn tables(&self, s: &mut String) {
        let rows: Vec<(&str, &[KvSummary])> = self
            .targets
            .iter()
            .map(|t| (t.kind.label(), t.workloads.as_slice()))
            .collect();
        let find = |k| self.targets.iter().find(|t| t.kind == k);
        let ratios = find(TargetKind::Stardust)
            .zip(find(TargetKind::Linux))
            .map(|(sd, lx)| {
                (
                    "Stardust / Linux",
                    sd.workloads.as_slice(),
                    lx.workloads.as_slice(),
                )
            });
        tables(s, self.pipeline, &rows, ratios);
    }
}

/// `w`'s figures among `figures`.
fn find(figures: &[KvSummary], w: &Workload) -> Option<KvSummary> {
    figures.iter().find(|s| s.workload == *w).cloned()
}

/// The tables of `bench kv` and `bench kv --xen`: req/s and p50 / p99 latencies of each row
/// (its label, its figures) for [`Workload::all`]`(pipeline)`, then, with `ratios` (a title,
/// Stardust's figures, Linux's), the line `TITLE: SET 1.23×, ...` of Stardust over Linux.
pub(super) fn tables(
    s: &mut String,
    pipeline: usize,
    rows: &[(&str, &[KvSummary])],
    ratios: Option<(&str, &[KvSummary], &[KvSummary])>,
) {
    let workloads = Workload::all(pipeline);
    let head: Vec<String> = workloads
        .iter()
        .map(|w| format!("{} req/s", w.label()))
        .collect();
    s.push_str(&format!("| target | {} |\n", head.join(" | ")));
    s.push_str(&format!("| --- |{}\n", " ---: |".repeat(workloads.len())));
    for (label, figures) in rows {
        let cells: Vec<String> = workloads
            .iter()
            .map(|w| cell(find(figures, w).map(|x| x.rps), 0))
            .collect();
        s.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    s.push_str("\nLatency, p50 / p99 ms:\n\n");
    let head: Vec<String> = workloads.iter().map(Workload::label).collect();
    s.push_str(&format!("| target | {} |\n", head.join(" | ")));
    s.push_str(&format!("| --- |{}\n", " ---: |".repeat(workloads.len())));
    for (label, figures) in rows {
        let cells: Vec<String> = workloads
            .iter()
            .map(|w| match find(figures, w) {
                None => "—".into(),
                Some(x) => format!("{} / {}", cell(x.p50_ms, 2), cell(x.p99_ms, 2)),
            })
            .collect();
        s.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    if let Some((title, sd, lx)) = ratios {
        let r: Vec<String> = workloads
            .iter()
            .map(|w| {
                let v = find(sd, w)
                    .zip(find(lx, w))
                    .and_then(|(a, b)| ratio(a.rps, b.rps));
                format!(
                    "{} {}",
                    w.label(),
                    v.map_or("—".into(), |v| format!("{v:.2}×"))
                )
            })
            .collect();
        s.push_str(&format!("\n{title}: {}\n", r.join(", ")));
    }
}

/// A command in RESP (an array of bulk strings).
pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// redis-benchmark's key `n` with `-r`: `key:` and twelve digits.
pub fn benchmark_key(n: usize) -> String {
    format!("key:{n:012}")
}

/// Checks that the server answers `PING`, then sets every key of the keyspace (3-byte values,
/// as redis-benchmark's), [`FILL_BATCH`] per `MSET`, each answered `+OK` before the next.
fn ping_and_fill(at: SocketAddr, keyspace: usize) -> Result<()> {
    let s = super::net::connect(at)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut ask = |cmd: Vec<u8>, want: &str, line: &mut String| -> Result<()> {
        w.write_all(&cmd)?;
        line.clear();
        r.read_line(line).context("reading the reply")?;
        if line.trim_end() != want {
            bail!(
                "the server answered `{}` (expected `{want}`)",
                line.trim_end()
            );
        }
        Ok(())
    };
    ask(resp_command(&[b"PING"]), "+PONG", &mut line).context("PING")?;
    let mut n = 0;
    while n < keyspace {
        let end = (n + FILL_BATCH).min(keyspace);
        let keys: Vec<String> = (n..end).map(benchmark_key).collect();
        let mut args: Vec<&[u8]> = vec![b"MSET"];
        for k in &keys {
            args.push(k.as_bytes());
            args.push(b"xxx");
        }
        ask(resp_command(&args), "+OK", &mut line)
            .with_context(|| format!("MSET of keys {n}..{end}"))?;
        n = end;
    }
    Ok(())
}

/// redis-benchmark's command line for a run of `-t test -P pipeline` against `host` with `-n
/// requests`, the same for `bench kv` and `bench kv --xen` (there shell variables, for dom0).
pub fn benchmark_args(
    host: &str,
    opts: &StorageArgs,
    test: &str,
    pipeline: &str,
    requests: &str,
) -> Vec<String> {
    let mut a: Vec<String> = ["redis-benchmark", "-h", host, "-p"]
        .map(String::from)
        .into();
    a.push(KV_PORT.to_string());
    for (flag, v) in [
        ("-c", opts.kv_clients.to_string()),
        ("-n", requests.to_string()),
        ("-r", opts.kv_keyspace.to_string()),
        ("-P", pipeline.to_string()),
        ("-t", test.to_string()),
    ] {
        a.push(flag.into());
        a.push(v);
    }
    a.push("--csv".into());
    a
}

/// The time limit of a sizing run.
pub const SIZING_LIMIT: Duration = Duration::from_secs(300);

/// The time limit of a run sized for `duration` seconds.
pub fn run_limit(duration: u64) -> Duration {
    Duration::from_secs(duration * 6 + 60)
}

/// Runs redis-benchmark once in `ns` against `host`.
fn redis_benchmark(
    ns: &NetNs,
    host: &str,
    opts: &StorageArgs,
    w: Workload,
    requests: u64,
    limit: Duration,
) -> Result<RedisFigures> {
    let mut cmd = ns.command("timeout");
    cmd.arg(limit.as_secs().max(1).to_string())
        .args(benchmark_args(
            host,
            opts,
            w.test,
            &w.pipeline.to_string(),
            &requests.to_string(),
        ));
    let out = child::output(&mut cmd, "redis-benchmark")
        .context("running redis-benchmark (`cargo xtask setup`)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let figures = parse_redis_benchmark(&text).map_err(|e| {
        Error::msg(format!(
            "{e:#} ({}; {})",
            if out.status.code() == Some(124) {
                format!("stopped after {limit:?}")
            } else {
                out.status.to_string()
            },
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    figures
        .into_iter()
        .find(|f| f.test.eq_ignore_ascii_case(w.test))
        .ok_or_else(|| Error::msg(format!("redis-benchmark printed no {} figures", w.label())))
}

/// The fewest requests of a run of `w` with `clients` (the sizing run's `-n`).
pub fn requests_floor(clients: usize, w: Workload) -> u64 {
    (clients as u64 * 20).max(1000) * w.pipeline as u64
}

/// The most requests of a run ([`requests_for`]).
pub const MAX_REQUESTS: u64 = 100_000_000;

/// `-n` for about `seconds` at `rps`, at least `floor`.
pub fn requests_for(rps: f64, seconds: u64, floor: u64) -> u64 {
    let n = if rps.is_finite() && rps > 0.0 {
        (rps * seconds as f64) as u64
    } else {
        floor
    };
    n.clamp(floor, MAX_REQUESTS)
}

/// Fills the keyspace, then measures every workload against `host` into `res`.
fn measure(ns: &NetNs, host: &str, net: &NetArgs, opts: &StorageArgs, res: &mut KvTarget) {
    let label = res.kind.label();
    let at = addr(host, KV_PORT);
    let keyspace = opts.kv_keyspace;
    let t0 = Instant::now();
    match in_ns(ns.name(), move || ping_and_fill(at, keyspace)) {
        Ok(()) => progress(format_args!(
            "{label}: PONG; {keyspace} keys set in {:.1} s",
            t0.elapsed().as_secs_f64()
        )),
        Err(e) => {
            res.notes.push(format!("PING and fill: {e:#}"));
            return;
        }
    }
    let runs = opts.storage_runs.max(1);
    for w in Workload::all(opts.kv_pipeline.max(2)) {
        let floor = requests_floor(opts.kv_clients, w);
        let sizing = redis_benchmark(ns, host, opts, w, floor, SIZING_LIMIT);
        let requests = match sizing {
            Ok(f) => requests_for(f.rps, net.duration, floor),
            Err(e) => {
                res.notes.push(format!("{}: {e:#}", w.label()));
                continue;
            }
        };
        let limit = run_limit(net.duration);
        let mut got = Vec::new();
        for i in 0..runs {
            match redis_benchmark(ns, host, opts, w, requests, limit) {
                Ok(f) => {
                    progress(format_args!(
                        "{label}: {} {}/{runs}: {:.0} req/s (-n {requests}), p50 {} ms, p99 {} ms",
                        w.label(),
                        i + 1,
                        f.rps,
                        cell(f.p50_ms, 2),
                        cell(f.p99_ms, 2)
                    ));
                    got.push(f);
                }
                Err(e) => {
                    res.notes.push(format!("{}: {e:#}", w.label()));
                    break;
                }
            }
        }
        if let Some(s) = KvSummary::of(w, requests, got) {
            res.workloads.push(s);
        }
    }
}

/// The host's redis-server in the namespace on 127.0.0.1, in `dir` (the ceiling).
fn host_server(ns: &NetNs, dir: &std::path::Path) -> Result<child::Child> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = ns.command("redis-server");
    cmd.args(["--port", &KV_PORT.to_string(), "--bind", "127.0.0.1"])
        .args(["--protected-mode", "no", "--daemonize", "no"])
        .args(REDIS_PERSISTENCE)
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(child::stderr_stdio());
    let server = child::spawn(&mut cmd, "redis-server")
        .context("starting redis-server (`cargo xtask setup`)")?;
    wait_port(
        ns.name(),
        addr("127.0.0.1", KV_PORT),
        Duration::from_secs(20),
    )?;
    Ok(server)
}

/// `cargo xtask bench kv`.
pub fn run(ws: &Workspace, net: &NetArgs, opts: &StorageArgs, qemu_args: &QemuArgs) -> Result<()> {
    if opts.storage_runs == 0 || opts.kv_clients == 0 || opts.kv_keyspace == 0 {
        bail!("--storage-runs, --kv-clients and --kv-keyspace must be at least 1");
    }
    if net.xen {
        return super::kv_xen::run(ws, net, opts);
    }
    let mut skipped = Vec::new();
    let targets = super::storage::targets(&net.targets, true, &mut skipped);
    let setup = Setup::new(
        ws,
        "kv",
        net,
        qemu_args,
        &["redis-benchmark", "redis-server", "ip", "timeout"],
        &targets,
        &mut skipped,
    )?;
    progress(format_args!(
        "network namespace {} (TAP {} at {}, guest {}); disks in {}",
        setup.ns.name(),
        netns::TAP_NAME,
        netns::HOST_CIDR,
        netns::GUEST_IP,
        display_path(&setup.tmp.0)
    ));
    let mut report = KvReport {
        clients: opts.kv_clients,
        pipeline: opts.kv_pipeline.max(2),
        keyspace: opts.kv_keyspace,
        duration: net.duration,
        runs: opts.storage_runs,
        guest_memory: net.guest_memory,
        machine: setup.machine_name(),
        accel: setup.accel.name().into(),
        disk: setup.disk_options(),
        targets: Vec::new(),
        skipped,
    };
    for kind in targets {
        let mut res = KvTarget::new(kind);
        let outcome = match kind {
            TargetKind::Host => host_server(&setup.ns, &setup.tmp.0.join("host-redis")).map(|s| {
                measure(&setup.ns, "127.0.0.1", net, opts, &mut res);
                drop(s);
                true
            }),
            TargetKind::Linux => match &setup.reference {
                None => Ok(false),
                Some(g) => run_linux(&setup, g, net, opts, &mut res),
            },
            _ => run_stardust(ws, &setup, net, opts, &mut res),
        };
        match outcome {
            Ok(true) => report.targets.push(res),
            Ok(false) => report.skipped.extend(res.notes),
            Err(e) => {
                progress(format_args!("{}: FAILED: {e:#}", kind.label()));
                res.notes.push(format!("failed: {e:#}"));
                report.targets.push(res);
            }
        }
    }
    drop(setup);
    let md = report.markdown();
    print!("{md}");
    let json = serde_json::to_string_pretty(&report).context("the report as JSON")?;
    let [a, b] = super::storage::write_report(ws, "kv", &md, &json)?;
    progress(format_args!(
        "wrote {}, {}",
        display_path(&a),
        display_path(&b)
    ));
    Ok(())
}

/// redis-server in the Linux reference guest, its append-only file on ext4 on the data disk.
fn run_linux(
    setup: &Setup,
    g: &RefGuest,
    net: &NetArgs,
    opts: &StorageArgs,
    res: &mut KvTarget,
) -> Result<bool> {
    let cfg = setup.guest_cfg(
        g.kernel.clone(),
        RefGuest::cmdline(netns::GUEST_CIDR, netns::HOST_IP, 0),
    );
    let page_disk = setup.tmp.0.join("page.img");
    netref::write_page_disk(&page_disk, b"")?;
    let disk = setup.data_image("linux-kv.img", KV_DISK_BYTES)?;
    let mut cmd = cfg.command();
    cmd.args(g.extra_args_with_data(cfg.effective_machine(), &page_disk));
    cmd.args(netref::data_disk_args(cfg.effective_machine(), &disk));
    progress(format_args!(
        "{}: booting {} ({})",
        res.kind.label(),
        display_path(&g.kernel),
        cfg.shell_line()
    ));
    let t0 = Instant::now();
    let mut guest = Guest::start(cmd)?;
    let ready = guest.wait_line(netref::READY_LINE, super::net::BOOT_LIMIT)?;
    progress(format_args!(
        "{}: {ready} ({:.1} s after QEMU started)",
        res.kind.label(),
        t0.elapsed().as_secs_f64()
    ));
    if !ready.contains(&format!("redis={KV_PORT}")) {
        bail!("redis-server did not start in the guest; {}", guest.tail());
    }
    wait_port(
        setup.ns.name(),
        addr(netns::GUEST_IP, KV_PORT),
        Duration::from_secs(30),
    )?;
    measure(&setup.ns, netns::GUEST_IP, net, opts, res);
    drop(guest);
    Ok(true)
}

/// Stardust's `kvstore` over TAP with the data disk: a fresh sparse image, on the QEMU options
/// the Linux guest's data disk has. `Ok(false)` (with why in `res.notes`) when the app does not
/// exist in this workspace or does not build.
///
/// The contract with the app: it listens on TCP [`KV_PORT`] once its store is open (on an
/// all-zero disk: after formatting it), speaks RESP2 (PING, MSET, GET, SET at least), and
/// replies to a write once it is durable.
fn run_stardust(
    ws: &Workspace,
    setup: &Setup,
    net: &NetArgs,
    opts: &StorageArgs,
    res: &mut KvTarget,
) -> Result<bool> {
    if ws.check_app(KV_APP).is_err() {
        res.notes.push(format!(
            "Stardust `{KV_APP}`: not available yet (no apps/{KV_APP} in this workspace); its \
             figures are left out"
        ));
        return Ok(false);
    }
    let (_, image) = match crate::build_app(ws, KV_APP, &opts.storage_profile, &opts.storage_set) {
        Ok(b) => b,
        Err(e) => {
            res.notes.push(format!(
                "Stardust `{KV_APP}` [{}]: does not build: {}",
                opts.storage_profile,
                format!("{e:#}").lines().next().unwrap_or("")
            ));
            return Ok(false);
        }
    };
    let mut cfg = setup.guest_cfg(image.elf.clone(), netns::guest_kargs());
    let disk = setup.data_image("stardust-kv.img", KV_DISK_BYTES)?;
    cfg.extra_args = netref::data_disk_args(cfg.effective_machine(), &disk);
    progress(format_args!(
        "Stardust {KV_APP} ({} bytes): {}",
        image.bytes,
        cfg.shell_line()
    ));
    let mut guest = Guest::start(cfg.command())?;
    let at = addr(netns::GUEST_IP, KV_PORT);
    if let Err(e) = wait_port(setup.ns.name(), at, super::net::BOOT_LIMIT) {
        let _ = guest.wait_line("\u{0}", Duration::from_millis(100));
        bail!("Stardust `{KV_APP}`: {e:#}; {}", guest.tail());
    }
    measure(&setup.ns, netns::GUEST_IP, net, opts, res);
    drop(guest);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV7: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"
\"SET\",\"14705.88\",\"2.693\",\"0.640\",\"1.823\",\"6.543\",\"8.271\",\"25.807\"
\"GET\",\"20000.00\",\"1.000\",\"0.100\",\"0.900\",\"2.000\",\"3.500\",\"9.000\"
";

    #[test]
    fn csv_output_is_parsed() {
        let f = parse_redis_benchmark(CSV7).expect("figures");
        assert_eq!(f.len(), 2);
        assert_eq!(
            f[0],
            RedisFigures {
                test: "SET".into(),
                rps: 14705.88,
                p50_ms: Some(1.823),
                p99_ms: Some(8.271)
            }
        );
        assert_eq!(f[1].test, "GET");
        assert_eq!(f[1].p99_ms, Some(3.5));
        // redis-benchmark 6: no header, the rate only.
        let old =
            parse_redis_benchmark("\"SET\",\"1234.50\"\n\"GET\",\"99.00\"\n").expect("figures");
        assert_eq!(old[0].rps, 1234.5);
        assert_eq!(old[1].p50_ms, None);
    }

    #[test]
    fn quiet_output_is_parsed_after_its_progress() {
        let out = " GET: rps=0.0 (overall: 0.0) avg_msec=-nan (overall: -nan)\r\
                   GET: 487804.88 requests per second, p50=0.951 msec\n\n";
        let f = parse_redis_benchmark(out).expect("figures");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].test, "GET");
        assert_eq!(f[0].rps, 487804.88);
        assert_eq!(f[0].p50_ms, Some(0.951));
        let f = parse_redis_benchmark("SET: 100.00 requests per second\n").expect("figures");
        assert_eq!(f[0].p50_ms, None);
    }

    #[test]
    fn malformed_output_is_an_error_never_a_figure() {
        for bad in [
            "",
            "Could not connect to Redis at 10.0.0.2:6379: Connection refused\n",
            "WARNING: Could not fetch server CONFIG\n",
            // A header alone.
            "\"test\",\"rps\"\n",
            // A rate that is not a number.
            "\"test\",\"rps\"\n\"SET\",\"fast\"\n",
            "\"SET\",\"\"\n",
            "SET: lots requests per second\n",
            // A header without a rate column.
            "\"test\",\"avg_latency_ms\"\n\"SET\",\"1.0\"\n",
        ] {
            assert!(parse_redis_benchmark(bad).is_err(), "{bad:?}");
        }
        // Stray lines around the figures are ignored; a cut line is not taken for a figure.
        let f = parse_redis_benchmark(&format!("noise\n{CSV7}\"GET\",\"12")).expect("figures");
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn runs_are_sized_for_the_duration() {
        assert_eq!(requests_for(1000.0, 5, 1000), 5000);
        assert_eq!(requests_for(10.0, 5, 1000), 1000);
        assert_eq!(requests_for(f64::NAN, 5, 2000), 2000);
        assert_eq!(requests_for(1e12, 5, 1), 100_000_000);
    }

    #[test]
    fn resp_commands_and_keys() {
        assert_eq!(resp_command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            resp_command(&[b"MSET", b"k", b"xxx"]),
            b"*3\r\n$4\r\nMSET\r\n$1\r\nk\r\n$3\r\nxxx\r\n"
        );
        assert_eq!(benchmark_key(42), "key:000000000042");
    }

    #[test]
    fn the_table_has_the_workloads_and_the_ratios() {
        let fig = |rps| RedisFigures {
            test: "X".into(),
            rps,
            p50_ms: Some(1.0),
            p99_ms: Some(2.0),
        };
        let ws = Workload::all(16);
        assert_eq!(ws[3].label(), "GET -P 16");
        let mut linux = KvTarget::new(TargetKind::Linux);
        let mut sd = KvTarget::new(TargetKind::Stardust);
        for w in ws {
            linux.workloads.push(
                KvSummary::of(w, 10, vec![fig(100.0), fig(300.0), fig(200.0)]).expect("runs"),
            );
        }
        sd.workloads
            .push(KvSummary::of(ws[0], 10, vec![fig(400.0)]).expect("runs"));
        sd.notes.push("GET: refused".into());
        let report = KvReport {
            clients: 50,
            pipeline: 16,
            keyspace: 10,
            duration: 5,
            runs: 3,
            guest_memory: 256,
            machine: "q35+qboot".into(),
            accel: "tcg".into(),
            disk: "d".into(),
            targets: vec![linux, sd],
            skipped: vec!["host: x".into()],
        };
        let md = report.markdown();
        assert!(
            md.contains("| target | SET req/s | GET req/s | SET -P 16 req/s | GET -P 16 req/s |"),
            "{md}"
        );
        assert!(
            md.contains("| Linux guest, TAP | 200 | 200 | 200 | 200 |"),
            "{md}"
        );
        assert!(md.contains("| Stardust, TAP | 400 | — | — | — |"), "{md}");
        assert!(md.contains("| Linux guest, TAP | 1.00 / 2.00 |"), "{md}");
        assert!(
            md.contains("Stardust / Linux: SET 2.00×, GET —, SET -P 16 —, GET -P 16 —"),
            "{md}"
        );
        assert!(md.contains("- skipped: host: x") && md.contains("- Stardust, TAP: GET: refused"));
        assert!(KvSummary::of(ws[0], 1, Vec::new()).is_none());
        let none = KvReport {
            targets: Vec::new(),
            ..report
        }
        .markdown();
        assert!(none.contains("No target was measured.\n") && !none.contains("| target"));
        assert!(none.contains("- skipped: host: x"), "{none}");
    }
}
