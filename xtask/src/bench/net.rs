//! `cargo xtask bench net`: networking over TAP, one run, side by side.
//!
//! Everything runs inside one network namespace that xtask creates and removes
//! ([`crate::netns`]): the guests' QEMU with its TAP NIC, the host's own servers (on the
//! namespace's loopback, so nothing clashes with the host's ports), and every client (`wrk`
//! through `ip netns exec`, the bulk clients in threads of xtask moved there by `setns`).
//!
//! Targets, in this order:
//! - **host**: the ceiling: nginx (a temporary configuration in a temporary directory; never
//!   /etc/nginx) and the same socat echo / sink / source as the Linux guest, on 127.0.0.1;
//! - **Linux (TAP)**: the reference guest ([`crate::netref`]) on the QEMU line Stardust gets;
//! - **Stardust (TAP)**: the `httpd` app (port 80) and the `echo` app (echo on TCP 7, sink on
//!   TCP 9) when they exist, each booted with `ip=10.0.0.2/24 gw=10.0.0.1`; skipped with a line
//!   saying so otherwise;
//! - **Linux (user)**: the reference guest on QEMU's user networking (`-netdev user,hostfwd=`),
//!   for reference only: slirp caps it.
//!
//! Workloads (each repeated `--net-runs` times; the table shows medians):
//! - HTTP: `wrk -t2 -c10 -d<duration> --latency`, with `Connection: close` and with keep-alive:
//!   requests per second and latency percentiles. The page is [`page`] of `--page` bytes (one
//!   constant, [`PAGE_BYTES`], shared with httpd's default); each target's page is fetched and
//!   compared byte for byte first.
//! - Bulk TCP, MB/s (10^6 bytes per second), `--bulk` MiB each:
//!   - echo: one connection, sending and receiving at once, every byte checked; the figure is the
//!     bytes of one direction over the time to the last byte back (so both ways at that rate);
//!   - up (client → guest): a one-way stream to the sink (TCP 9), until the sink closes after
//!     the client's FIN;
//!   - down (guest → client): a one-way stream of zeros read from the source (TCP 19, every
//!     byte checked; Stardust's `echo` app has one too).
//!
//! Results: a Markdown table on stdout, and `target/bench/net.md` + `net.json`.

use crate::bench::report::cell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Error, Result, bail};
use serde::Serialize;

use super::stats::median;
use crate::child;
use crate::cmd::QemuArgs;
use crate::netns::{self, NetNs};
use crate::netref::{self, RefGuest};
use crate::qemu::{Machine, QemuConfig};
use crate::workspace::{Workspace, display_path};

/// The default size of the page every HTTP server serves (bytes): nginx's own default page's size.
pub const PAGE_BYTES: usize = 612;
/// The TCP ports of the services.
pub const HTTP_PORT: u16 = 80;
/// Echo (RFC 862).
pub const ECHO_PORT: u16 = 7;
/// Discard (RFC 863): the sink.
pub const SINK_PORT: u16 = 9;
/// Character generator's port (RFC 864): the source (of zeros here).
pub const SOURCE_PORT: u16 = 19;

/// The page of `size` bytes: what Stardust's `httpd` answers to `GET /` with `size=N` (crate
/// `http1`'s generated content, [`http1::PATTERN`] over and over). The same bytes for every
/// server of the bench (nginx serves them from a file).
pub fn page(size: usize) -> Vec<u8> {
    http1::PATTERN.iter().copied().cycle().take(size).collect()
}

#[derive(clap::Args, Debug)]
pub struct NetArgs {
    /// `bench net`, `kv`, `disk`: build (or rebuild) the Linux reference guest first (~/.cache/stardust-netref).
    #[arg(long)]
    pub build_reference: bool,
    /// `bench net`: repetitions of each workload (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub net_runs: usize,
    /// `bench net`: seconds of each wrk run; `bench kv`: of each redis-benchmark run;
    /// `bench disk`: of each fio workload.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// `bench net`: MiB of each bulk transfer (echo, up, down).
    #[arg(long, default_value_t = 64)]
    pub bulk: usize,
    /// `bench net`: bytes of the page the HTTP servers serve.
    #[arg(long, default_value_t = PAGE_BYTES)]
    pub page: usize,
    /// `bench net`, `kv`, `disk`: guest memory in MiB (the same for Stardust and Linux).
    #[arg(long, default_value_t = 256)]
    pub guest_memory: u64,
    /// `bench net`: the profile Stardust's apps are built with.
    #[arg(long, default_value = "net")]
    pub net_profile: String,
    /// `bench net`, `kv`, `disk`: only these targets (repeatable; default all).
    #[arg(long = "target", value_enum)]
    pub targets: Vec<TargetKind>,
    /// `bench net`: a setting over the profile for Stardust's apps (`KEY=VALUE`, repeatable,
    /// as `build --set`), to measure a change without editing the profile.
    #[arg(long = "net-set", value_name = "KEY=VALUE")]
    pub net_set: Vec<String>,
    /// `bench net`, `bench kv`: the Xen rows instead (`super::xen_net`, `super::kv_xen`):
    /// Stardust's apps and the Linux reference guest as Xen PV guests in one boot of the Xen
    /// lab, measured from dom0 (`target/bench/net-xen.md`, `kv-xen.md`).
    #[arg(long)]
    pub xen: bool,
    /// `bench net --xen`: MiB of each bulk transfer (echo, up, down) from dom0.
    #[arg(long, default_value_t = 16)]
    pub xen_bulk: usize,
    /// `bench net --xen`: the profile Stardust's apps are built with (`platform=xen` is set too).
    #[arg(long, default_value = "xen-net")]
    pub xen_profile: String,
}

/// What is measured.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TargetKind {
    /// The host's own servers (the ceiling).
    Host,
    /// The Linux reference guest over TAP.
    Linux,
    /// Stardust's apps over TAP.
    Stardust,
    /// The Linux reference guest over QEMU user networking (slirp).
    User,
    /// Stardust's apps over QEMU user networking (slirp), through `--forward`.
    StardustUser,
}

impl TargetKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            TargetKind::Host => "host (ceiling)",
            TargetKind::Linux => "Linux guest, TAP",
            TargetKind::Stardust => "Stardust, TAP",
            TargetKind::User => "Linux guest, user net (slirp-capped)",
            TargetKind::StardustUser => "Stardust, user net (slirp-capped)",
        }
    }
}

/// wrk's figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wrk {
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles: (percent, milliseconds), as `--latency` prints them.
    pub latency_ms: Vec<(u32, f64)>,
    /// Requests completed.
    pub requests: u64,
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx responses.
    pub errors: u64,
}

impl Wrk {
    /// The `pct` percentile in ms, if printed.
    pub fn percentile(&self, pct: u32) -> Option<f64> {
        self.latency_ms
            .iter()
            .find(|(p, _)| *p == pct)
            .map(|(_, v)| *v)
    }
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.00s`, `1.00m`) in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = text.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(v * scale)
}

/// Parses wrk's output (with `--latency`). `None` when it has no `Requests/sec` line.
pub fn parse_wrk(out: &str) -> Option<Wrk> {
    let mut rps = None;
    let mut latency = Vec::new();
    let mut requests = 0;
    let mut errors = 0;
    let mut in_dist = false;
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if line.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        } else if in_dist
            && words.len() == 2
            && let Some(p) = words[0].strip_suffix('%')
        {
            if let (Ok(p), Some(ms)) = (p.parse::<f64>(), wrk_ms(words[1])) {
                latency.push((p.round() as u32, ms));
            }
            continue;
        } else if words.len() >= 3 && words[1] == "requests" && words[2] == "in" {
            requests = words[0].parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().unwrap_or(0);
        }
        in_dist = false;
    }
    Some(Wrk {
        rps: rps?,
        latency_ms: latency,
        requests,
        errors,
    })
}

/// The medians of several wrk runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrkSummary {
    /// Median requests per second.
    pub rps: f64,
    /// Median 50th percentile latency (ms).
    pub p50: Option<f64>,
    /// Median 99th percentile latency (ms).
    pub p99: Option<f64>,
    /// Errors over all runs.
    pub errors: u64,
    /// Every run.
    pub runs: Vec<Wrk>,
}

impl WrkSummary {
    /// Medians of `runs`; `None` when empty.
    pub fn of(runs: Vec<Wrk>) -> Option<WrkSummary> {
        let rps = median(&runs.iter().map(|r| r.rps).collect::<Vec<_>>())?;
        let pct = |p| {
            let v: Vec<f64> = runs.iter().filter_map(|r| r.percentile(p)).collect();
            median(&v)
        };
        Some(WrkSummary {
            rps,
            p50: pct(50),
            p99: pct(99),
            errors: runs.iter().map(|r| r.errors).sum(),
            runs,
        })
    }
}

/// One target's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    /// Which.
    pub kind: TargetKind,
    /// HTTP with `Connection: close`.
    pub http_close: Option<WrkSummary>,
    /// HTTP with keep-alive.
    pub http_keepalive: Option<WrkSummary>,
    /// Echo, MB/s each way (median).
    pub echo: Option<f64>,
    /// One-way client → target, MB/s (median).
    pub up: Option<f64>,
    /// One-way target → client, MB/s (median).
    pub down: Option<f64>,
    /// What failed or was not measured, one line each.
    pub notes: Vec<String>,
}

impl TargetResult {
    fn new(kind: TargetKind) -> TargetResult {
        TargetResult {
            kind,
            http_close: None,
            http_keepalive: None,
            echo: None,
            up: None,
            down: None,
            notes: Vec::new(),
        }
    }
}

/// The whole bench's result.
#[derive(Debug, Clone, Serialize)]
pub struct NetReport {
    /// The page's size (bytes).
    pub page: usize,
    /// wrk's duration (s).
    pub duration: u64,
    /// Bulk size (MiB).
    pub bulk_mib: usize,
    /// Repetitions.
    pub runs: usize,
    /// Guest memory (MiB).
    pub guest_memory: u64,
    /// The guests' QEMU machine.
    pub machine: String,
    /// The guests' accelerator.
    pub accel: String,
    /// Per target, in the order measured.
    pub targets: Vec<TargetResult>,
    /// Targets skipped, with why.
    pub skipped: Vec<String>,
}

pub(crate) fn wrk_cells(w: &Option<WrkSummary>) -> [String; 2] {
    match w {
        None => ["—".into(), "—".into()],
        Some(w) => [
            format!(
                "{:.0}{}",
                w.rps,
                if w.errors > 0 {
                    format!(" ({} errors)", w.errors)
                } else {
                    String::new()
                }
            ),
            format!("{} / {}", cell(w.p50, 2), cell(w.p99, 2)),
        ],
    }
}

impl NetReport {
    /// The report as Markdown: one table, the Stardust/Linux ratios, skips and notes.
    pub fn markdown(&self) -> String {
        let mut s = String::from("## Networking\n\n");
        s.push_str(&format!(
            "Guests: QEMU {} ({}), -m {}M, virtio-net; page {} B; wrk -t2 -c10 -d{}s; bulk {} MiB; \
             medians of {} runs. MB/s = 10^6 bytes/s; echo = each way at once.\n\n",
            self.machine,
            self.accel,
            self.guest_memory,
            self.page,
            self.duration,
            self.bulk_mib,
            self.runs
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
                t.kind.label(),
                cell(t.echo, 1),
                cell(t.up, 1),
                cell(t.down, 1)
            ));
        }
        let find = |k| self.targets.iter().find(|t| t.kind == k);
        let pairs = [
            ("", TargetKind::Stardust, TargetKind::Linux),
            (" (user net)", TargetKind::StardustUser, TargetKind::User),
        ];
        let mut first = true;
        for (what, a, b) in pairs {
            let (Some(sd), Some(lx)) = (find(a), find(b)) else {
                continue;
            };
            let r = |a: Option<f64>, b: Option<f64>| {
                a.zip(b)
                    .and_then(|(a, b)| super::stats::ratio(a, b))
                    .map_or("—".into(), |r| format!("{r:.2}×"))
            };
            let rps = |w: &Option<WrkSummary>| w.as_ref().map(|w| w.rps);
            if first {
                s.push('\n');
                first = false;
            }
            s.push_str(&format!(
                "Stardust / Linux{what}: HTTP close {}, keep-alive {}, echo {}, up {}, down {}\n",
                r(rps(&sd.http_close), rps(&lx.http_close)),
                r(rps(&sd.http_keepalive), rps(&lx.http_keepalive)),
                r(sd.echo, lx.echo),
                r(sd.up, lx.up),
                r(sd.down, lx.down)
            ));
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
}

pub(crate) fn progress(msg: impl std::fmt::Display) {
    eprintln!("bench net: {msg}");
}

/// Runs `f` in a thread moved into `ns` (its sockets live there).
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = Path::new(netns::NETNS_DIR).join(ns);
    std::thread::spawn(move || {
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a descriptor we own for its duration; it moves this thread
        // only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| Error::msg("a client thread panicked"))?
}

pub(crate) fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Waits until `addr` accepts a connection (from inside `ns`), up to `limit`.
pub fn wait_port(ns: &str, addr: SocketAddr, limit: Duration) -> Result<()> {
    in_ns(ns, move || {
        let t0 = Instant::now();
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(_) => return Ok(()),
                Err(e) if t0.elapsed() > limit => {
                    bail!("{addr} does not accept connections after {limit:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    })
}

/// The echo stream's period: 251 (a prime), so a lost or repeated block of any power-of-two
/// size shows.
const PERIOD: usize = 251;

/// The echo stream's bytes from offset `off % PERIOD` on, at least `CHUNK` long: the stream's
/// bytes at `off..off + n` are `&stream(off)[..n]` for `n <= CHUNK` (compared with `memcmp`,
/// fast even in a debug build of xtask).
fn stream_block() -> Vec<u8> {
    (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

const CHUNK: usize = 64 * 1024;

/// Echo: sends `bytes` and reads them back at once, checking each; MB/s each way.
pub fn echo(addr: SocketAddr, bytes: u64) -> Result<f64> {
    let s = connect(addr)?;
    let mut w = s.try_clone()?;
    let block = stream_block();
    let at = |off: u64| (off % PERIOD as u64) as usize;
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || -> Result<()> {
        let block = stream_block();
        let mut sent = 0u64;
        while sent < bytes {
            let n = (bytes - sent).min(CHUNK as u64) as usize;
            let from = (sent % PERIOD as u64) as usize;
            w.write_all(&block[from..from + n])
                .context("echo: sending")?;
            sent += n as u64;
        }
        Ok(())
    });
    let mut r = s;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < bytes {
        let n = r.read(&mut buf).context("echo: receiving")?;
        if n == 0 {
            bail!("echo: the server closed after {got} of {bytes} bytes");
        }
        if buf[..n] != block[at(got)..at(got) + n] {
            bail!(
                "echo: the bytes at {got}..{} differ from what was sent",
                got + n as u64
            );
        }
        got += n as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    writer
        .join()
        .map_err(|_| Error::msg("echo writer panicked"))??;
    Ok(bytes as f64 / secs / 1e6)
}

/// Up: streams `bytes` to a sink, then FIN; MB/s until the sink closes too.
pub fn upstream(addr: SocketAddr, bytes: u64) -> Result<f64> {
    let mut s = connect(addr)?;
    let buf = vec![0x5au8; CHUNK];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).context("up: sending")?;
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut sink = [0u8; 512];
    while s
        .read(&mut sink)
        .context("up: waiting for the sink to close")?
        > 0
    {}
    Ok(bytes as f64 / t0.elapsed().as_secs_f64() / 1e6)
}

/// Down: reads `bytes` of zeros from a source; MB/s.
pub fn downstream(addr: SocketAddr, bytes: u64) -> Result<f64> {
    let mut s = connect(addr)?;
    let mut buf = vec![0u8; CHUNK];
    let zeros = vec![0u8; CHUNK];
    let t0 = Instant::now();
    let mut got = 0u64;
    while got < bytes {
        let want = (bytes - got).min(CHUNK as u64) as usize;
        let n = s.read(&mut buf[..want]).context("down: receiving")?;
        if n == 0 {
            bail!("down: the source closed after {got} of {bytes} bytes");
        }
        if buf[..n] != zeros[..n] {
            bail!("down: the source sent something else than zeros");
        }
        got += n as u64;
    }
    Ok(bytes as f64 / t0.elapsed().as_secs_f64() / 1e6)
}

/// GETs `/` and returns the body (HTTP/1.0, read to the end).
pub fn http_get(addr: SocketAddr) -> Result<Vec<u8>> {
    http_get_path(addr, "/")
}

/// GETs `path` and returns the body (HTTP/1.0, read to the end).
pub fn http_get_path(addr: SocketAddr, path: &str) -> Result<Vec<u8>> {
    let mut s = connect(addr)?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::msg("no end of header in the response"))?;
    let head = String::from_utf8_lossy(&all[..at]);
    let code = head.split_whitespace().nth(1);
    if !head.starts_with("HTTP/1.") || code != Some("200") {
        bail!(
            "the response is not 200: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(all[at + 4..].to_vec())
}

/// A guest running in the background: its console lines come through a channel.
pub(crate) struct Guest {
    child: child::Child,
    lines: mpsc::Receiver<String>,
    pub(crate) console: Vec<String>,
}

impl Guest {
    pub(crate) fn start(mut cmd: Command) -> Result<Guest> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = child::spawn(&mut cmd, "QEMU").context("starting QEMU")?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.take_stdout() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for l in std::io::BufReader::new(out)
                    .split(b'\n')
                    .map_while(|l| l.ok())
                {
                    let l = String::from_utf8_lossy(&l)
                        .trim_end_matches('\r')
                        .to_string();
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(err) = child.take_stderr() {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for l in std::io::BufReader::new(err).lines().map_while(|l| l.ok()) {
                    if tx.send(format!("[qemu] {l}")).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Guest {
            child,
            lines: rx,
            console: Vec::new(),
        })
    }

    /// Waits for a console line containing `needle`.
    pub(crate) fn wait_line(&mut self, needle: &str, limit: Duration) -> Result<String> {
        let t0 = Instant::now();
        loop {
            let left = limit.saturating_sub(t0.elapsed());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.console.push(l.clone());
                    if hit {
                        return Ok(l);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("QEMU ended before `{needle}`; {}", self.tail())
                }
            }
            if let Some(exit) = self.child.try_wait()? {
                bail!(
                    "QEMU ended ({}) before `{needle}`; {}",
                    exit.status,
                    self.tail()
                );
            }
            if t0.elapsed() >= limit {
                bail!("no `{needle}` within {limit:?}; {}", self.tail());
            }
        }
    }

    pub(crate) fn tail(&self) -> String {
        let n = self.console.len().saturating_sub(12);
        format!(
            "the console's last lines:\n    {}",
            self.console[n..].join("\n    ")
        )
    }
}

/// Runs wrk inside `ns` against `url`; `close` adds `Connection: close`.
fn wrk(ns: &NetNs, url: &str, duration: u64, close: bool) -> Result<Wrk> {
    let mut cmd = ns.command("timeout");
    cmd.arg((duration + 30).to_string()).args([
        "wrk",
        "-t2",
        "-c10",
        &format!("-d{duration}s"),
        "--timeout",
        "5s",
        "--latency",
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(url);
    let out = child::output(&mut cmd, "wrk").context("running wrk (`cargo xtask setup`)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).ok_or_else(|| {
        Error::msg(format!(
            "wrk gave no figures ({}): {}{}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })
}

/// Where a target's services are, as seen from inside the namespace.
#[derive(Debug, Clone, Copy)]
struct Endpoints {
    http: Option<SocketAddr>,
    echo: Option<SocketAddr>,
    sink: Option<SocketAddr>,
    source: Option<SocketAddr>,
}

/// `ip:port` from a literal address.
pub fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("a literal IPv4 address"), port)
}

impl Endpoints {
    fn all(ip: &str) -> Endpoints {
        Endpoints {
            http: Some(addr(ip, HTTP_PORT)),
            echo: Some(addr(ip, ECHO_PORT)),
            sink: Some(addr(ip, SINK_PORT)),
            source: Some(addr(ip, SOURCE_PORT)),
        }
    }
}

/// Measures every workload `ends` offers into `res`.
fn measure(ns: &NetNs, ends: Endpoints, opts: &NetArgs, res: &mut TargetResult) {
    let label = res.kind.label();
    let runs = opts.net_runs.max(1);
    if let Some(http) = ends.http {
        let want = page(opts.page);
        match in_ns(ns.name(), move || http_get(http)) {
            Ok(body) if body == want => {}
            Ok(body) => res.notes.push(format!(
                "the page differs from the bench's ({} bytes, expected {})",
                body.len(),
                want.len()
            )),
            Err(e) => res.notes.push(format!("GET / failed: {e:#}")),
        }
        let url = format!("http://{http}/");
        for close in [true, false] {
            let mut got = Vec::new();
            for i in 0..runs {
                match wrk(ns, &url, opts.duration, close) {
                    Ok(w) => {
                        progress(format_args!(
                            "{label}: wrk {} {}/{runs}: {:.0} req/s, p50 {} ms, p99 {} ms, {} errors",
                            if close { "close" } else { "keep-alive" },
                            i + 1,
                            w.rps,
                            cell(w.percentile(50), 2),
                            cell(w.percentile(99), 2),
                            w.errors
                        ));
                        got.push(w)
                    }
                    Err(e) => {
                        res.notes.push(format!("wrk: {e:#}"));
                        break;
                    }
                }
            }
            let summary = WrkSummary::of(got);
            if close {
                res.http_close = summary;
            } else {
                res.http_keepalive = summary;
            }
        }
    }
    let bytes = opts.bulk as u64 * 1024 * 1024;
    type Client = fn(SocketAddr, u64) -> Result<f64>;
    let bulk: [(&str, Option<SocketAddr>, Client); 3] = [
        ("echo", ends.echo, echo),
        ("up", ends.sink, upstream),
        ("down", ends.source, downstream),
    ];
    for (name, at, client) in bulk {
        let Some(at) = at else { continue };
        let mut got = Vec::new();
        for i in 0..runs {
            match in_ns(ns.name(), move || client(at, bytes)) {
                Ok(mbs) => {
                    progress(format_args!(
                        "{label}: {name} {}/{runs}: {mbs:.1} MB/s",
                        i + 1
                    ));
                    got.push(mbs);
                }
                Err(e) => {
                    res.notes.push(format!("{name}: {e:#}"));
                    break;
                }
            }
        }
        let m = median(&got);
        match name {
            "echo" => res.echo = m,
            "up" => res.up = m,
            _ => res.down = m,
        }
    }
}

/// A temporary directory, removed when dropped (and on a stopping signal).
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Result<TempDir> {
        TempDir::under(&std::env::temp_dir(), tag)
    }

    /// `stardust-<tag>-<pid>` in `parent` (disk images that QEMU opens with `O_DIRECT` need a
    /// real file system, which /tmp may not be).
    pub(crate) fn under(parent: &Path, tag: &str) -> Result<TempDir> {
        let d = parent.join(format!("stardust-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        child::remove_if_stopped(&d);
        Ok(TempDir(d))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        child::forget_temp_dir(&self.0);
    }
}

/// The host's servers inside the namespace, on 127.0.0.1: nginx and the socat trio.
fn host_servers(ns: &NetNs, tmp: &Path, page_bytes: &[u8]) -> Result<Vec<child::Child>> {
    let www = tmp.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), page_bytes)?;
    let conf = tmp.join("nginx.conf");
    let text = netref::nginx_conf(
        &tmp.display().to_string(),
        &format!("127.0.0.1:{HTTP_PORT}"),
        &www.display().to_string(),
    )
    .replace("daemon on;", "daemon off;");
    std::fs::write(&conf, text)?;
    let mut servers = Vec::new();
    let mut nginx = ns.command("nginx");
    nginx
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(tmp.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(child::stderr_stdio());
    servers
        .push(child::spawn(&mut nginx, "nginx").context("starting nginx (`cargo xtask setup`)")?);
    // The guest's very commands (xtask/netref/init), on 127.0.0.1. The echo's block is 4 KiB:
    // socat writes a whole block into the pipe it reads back itself once poll says the pipe is
    // writable (a page free), so a bigger block can block that write for ever.
    for spec in [
        vec![
            "-b".into(),
            "4096".into(),
            format!("TCP-LISTEN:{ECHO_PORT},bind=127.0.0.1,fork,reuseaddr"),
            "PIPE".into(),
        ],
        vec![
            "-b".into(),
            "65536".into(),
            "-u".into(),
            format!("TCP-LISTEN:{SINK_PORT},bind=127.0.0.1,fork,reuseaddr"),
            "OPEN:/dev/null,wronly".into(),
        ],
        vec![
            "-b".into(),
            "65536".into(),
            "-U".into(),
            format!("TCP-LISTEN:{SOURCE_PORT},bind=127.0.0.1,fork,reuseaddr"),
            "OPEN:/dev/zero,rdonly".into(),
        ],
    ] {
        let mut socat = ns.command("socat");
        socat
            .args(spec)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Not shown: a source whose client has read enough says "Broken pipe" each time.
            .stderr(Stdio::null());
        servers.push(
            child::spawn(&mut socat, "socat").context("starting socat (`cargo xtask setup`)")?,
        );
    }
    for port in [HTTP_PORT, ECHO_PORT, SINK_PORT, SOURCE_PORT] {
        wait_port(ns.name(), addr("127.0.0.1", port), Duration::from_secs(10))?;
    }
    Ok(servers)
}

/// What the bench needs on the host, missing.
fn missing_tools() -> Vec<&'static str> {
    ["wrk", "nginx", "socat", "ip", "timeout"]
        .into_iter()
        .filter(|t| child::find_in_path(t).is_none())
        .collect()
}

/// How long a guest may take to come up under TCG.
pub(crate) const BOOT_LIMIT: Duration = Duration::from_secs(180);

/// `cargo xtask bench net`.
pub fn run(ws: &Workspace, args: &NetArgs, qemu_args: &QemuArgs) -> Result<()> {
    if args.build_reference {
        if let Some(why) = netref::cannot_build() {
            bail!("{why}");
        }
        netref::build(&netref::dir(), true)?;
    }
    if args.xen {
        return super::xen_net::run(ws, args);
    }
    if let Some(why) = netns::unavailable() {
        bail!("`bench net` runs over TAP: {why}");
    }
    let missing = missing_tools();
    if !missing.is_empty() {
        bail!(
            "`bench net` needs {} on the host: run `cargo xtask setup`",
            missing.join(", ")
        );
    }
    if args.net_runs == 0 || args.duration == 0 || args.bulk == 0 || args.page == 0 {
        bail!("--net-runs, --duration, --bulk and --page must be at least 1");
    }
    let targets = if args.targets.is_empty() {
        vec![
            TargetKind::Host,
            TargetKind::Linux,
            TargetKind::Stardust,
            TargetKind::User,
            TargetKind::StardustUser,
        ]
    } else {
        args.targets.clone()
    };
    let (accel, machine) = qemu_args.resolve()?;
    let qemu_bin = crate::cmd::setup::ensure_qemu()?;
    let tmp = TempDir::new("netbench")?;
    let page_bytes = page(args.page);
    let page_disk = tmp.0.join("page.img");
    netref::write_page_disk(&page_disk, &page_bytes)?;
    let ns = NetNs::create()?;
    // Every client shares the namespace, and wrk closes first after `Connection: close`, so each
    // target leaves its connections' ports in TIME-WAIT for 60 s; with the default 28,232
    // ephemeral ports, one target's ~20,000 connections to 10.0.0.2:80 held the next target's
    // connects back (Stardust's close rate fell from ~5,000 to ~800 req/s after Linux's, and
    // not when measured alone). Let the clients reuse those ports (TIME-WAIT with timestamps)
    // and take more of them (above 10000: below the forwards' 8080-8019 stay free).
    let mut sysctl = ns.command("sysctl");
    sysctl.args([
        "-q",
        "-w",
        "net.ipv4.tcp_tw_reuse=1",
        "net.ipv4.ip_local_port_range=10000 65535",
    ]);
    if let Err(e) = child::output(&mut sysctl, "sysctl") {
        progress(format_args!("sysctl in the namespace: {e:#}"));
    }
    progress(format_args!(
        "network namespace {} (TAP {} at {}, guest {})",
        ns.name(),
        netns::TAP_NAME,
        netns::HOST_CIDR,
        netns::GUEST_IP
    ));
    let mut report = NetReport {
        page: args.page,
        duration: args.duration,
        bulk_mib: args.bulk,
        runs: args.net_runs,
        guest_memory: args.guest_memory,
        machine: String::new(),
        accel: accel.name().into(),
        targets: Vec::new(),
        skipped: Vec::new(),
    };
    let guest_cfg = |kernel: PathBuf, kargs: String, tap: bool| -> QemuConfig {
        QemuConfig {
            qemu: qemu_bin.clone(),
            accel,
            machine,
            memory: args.guest_memory << 20,
            cpus: 1,
            console: crate::qemu::Console::Serial,
            kernel,
            kargs,
            app_args: Vec::new(),
            gdb: None,
            debug_exit: true,
            machine_opts: String::new(),
            nic: None,
            tap: tap.then(|| ns.nic()),
            extra_args: Vec::new(),
            disk: None,
        }
    };
    let reference = if targets
        .iter()
        .any(|t| matches!(t, TargetKind::Linux | TargetKind::User))
    {
        match netref::ensure() {
            Ok(g) => Some(g),
            Err(e) => {
                report
                    .skipped
                    .push(format!("the Linux reference guest: {e:#}"));
                None
            }
        }
    } else {
        None
    };
    for kind in targets {
        let mut res = TargetResult::new(kind);
        let outcome = match kind {
            TargetKind::Host => {
                let servers = host_servers(&ns, &tmp.0, &page_bytes);
                match servers {
                    Ok(servers) => {
                        measure(&ns, Endpoints::all("127.0.0.1"), args, &mut res);
                        drop(servers);
                        Ok(true)
                    }
                    Err(e) => Err(e),
                }
            }
            TargetKind::Linux | TargetKind::User => match &reference {
                None => Ok(false),
                Some(g) => {
                    let tap = kind == TargetKind::Linux;
                    let (ip, gw) = if tap {
                        (netns::GUEST_CIDR, netns::HOST_IP)
                    } else {
                        ("10.0.2.15/24", "10.0.2.2")
                    };
                    let cfg =
                        guest_cfg(g.kernel.clone(), RefGuest::cmdline(ip, gw, args.page), tap);
                    report.machine = cfg.effective_machine().name().into();
                    run_linux(&ns, &cfg, g, &page_disk, tap, args, &mut res)
                }
            },
            TargetKind::Stardust | TargetKind::StardustUser => {
                run_stardust(ws, &ns, args, &guest_cfg, &mut res)
            }
        };
        match outcome {
            Ok(true) => report.targets.push(res),
            Ok(false) => {
                if matches!(kind, TargetKind::Stardust | TargetKind::StardustUser) {
                    report.skipped.extend(res.notes);
                }
            }
            Err(e) => {
                progress(format_args!("{}: FAILED: {e:#}", kind.label()));
                res.notes.push(format!("failed: {e:#}"));
                report.targets.push(res);
            }
        }
    }
    if report.machine.is_empty() {
        report.machine = match machine {
            Machine::Q35 => "q35+qboot".into(),
            Machine::Microvm => "microvm".into(),
        };
    }
    drop(ns);
    let md = report.markdown();
    print!("{md}");
    let dir = ws.target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(&report).context("the report as JSON")?;
    std::fs::write(dir.join("net.md"), &md).context("writing net.md")?;
    std::fs::write(dir.join("net.json"), json).context("writing net.json")?;
    progress(format_args!(
        "wrote {}, {}",
        display_path(&dir.join("net.md")),
        display_path(&dir.join("net.json"))
    ));
    Ok(())
}

/// User networking's forwards: host port (on the namespace's 127.0.0.1) → guest port.
const USER_FORWARDS: [(u16, u16); 4] = [(8080, 80), (8007, 7), (8009, 9), (8019, 19)];

fn run_linux(
    ns: &NetNs,
    cfg: &QemuConfig,
    g: &RefGuest,
    page_disk: &Path,
    tap: bool,
    args: &NetArgs,
    res: &mut TargetResult,
) -> Result<bool> {
    let mut cmd = if tap {
        cfg.command()
    } else {
        // QEMU inside the namespace all the same: its forwards then bind the namespace's
        // loopback, where nothing else listens.
        let mut user = cfg.clone();
        user.nic = Some(crate::net::Nic::with_forwards(
            USER_FORWARDS
                .iter()
                .map(|&(h, g)| crate::net::Forward::tcp(h, g))
                .collect(),
        ));
        let mut c = ns.command(&user.qemu.display().to_string());
        c.args(user.args());
        c
    };
    cmd.args(g.extra_args(page_disk));
    progress(format_args!(
        "{}: booting {} ({})",
        res.kind.label(),
        display_path(&g.kernel),
        cfg.shell_line()
    ));
    let t0 = Instant::now();
    let mut guest = Guest::start(cmd)?;
    let ready = guest.wait_line(netref::READY_LINE, BOOT_LIMIT)?;
    progress(format_args!(
        "{}: {ready} ({:.1} s after QEMU started)",
        res.kind.label(),
        t0.elapsed().as_secs_f64()
    ));
    let ends = if tap {
        Endpoints::all(netns::GUEST_IP)
    } else {
        let [h, e, s, d] = USER_FORWARDS.map(|(h, _)| Some(addr("127.0.0.1", h)));
        Endpoints {
            http: h,
            echo: e,
            sink: s,
            source: d,
        }
    };
    if let Some(http) = ends.http {
        wait_port(ns.name(), http, Duration::from_secs(30))?;
    }
    measure(ns, ends, args, res);
    drop(guest);
    Ok(true)
}

/// Stardust's apps over TAP ([`TargetKind::Stardust`]) or user networking
/// ([`TargetKind::StardustUser`], the [`USER_FORWARDS`] as for Linux): `httpd` (HTTP) and `echo`
/// (echo, sink and source), when they exist. `Ok(false)` (with the reasons in `res.notes`) when
/// neither can run.
fn run_stardust(
    ws: &Workspace,
    ns: &NetNs,
    args: &NetArgs,
    guest_cfg: &dyn Fn(PathBuf, String, bool) -> QemuConfig,
    res: &mut TargetResult,
) -> Result<bool> {
    let tap = res.kind == TargetKind::Stardust;
    let at = |guest_port: u16| {
        if tap {
            addr(netns::GUEST_IP, guest_port)
        } else {
            let (h, _) = USER_FORWARDS
                .iter()
                .find(|(_, g)| *g == guest_port)
                .expect("every service port is forwarded");
            addr("127.0.0.1", *h)
        }
    };
    let apps: [(&str, Endpoints); 2] = [
        (
            "httpd",
            Endpoints {
                http: Some(at(HTTP_PORT)),
                echo: None,
                sink: None,
                source: None,
            },
        ),
        (
            "echo",
            Endpoints {
                http: None,
                echo: Some(at(ECHO_PORT)),
                sink: Some(at(SINK_PORT)),
                source: Some(at(SOURCE_PORT)),
            },
        ),
    ];
    let mut ran = false;
    let mut why = Vec::new();
    for (app, ends) in apps {
        if ws.check_app(app).is_err() {
            why.push(format!(
                "Stardust `{app}`: the app does not exist yet (apps/{app}); its figures are left out"
            ));
            continue;
        }
        let built = crate::build_app(ws, app, &args.net_profile, &args.net_set);
        let (_, image) = match built {
            Ok(b) => b,
            Err(e) => {
                why.push(format!(
                    "Stardust `{app}` [{}]: does not build: {}",
                    args.net_profile,
                    format!("{e:#}").lines().next().unwrap_or("")
                ));
                continue;
            }
        };
        let kargs = if tap {
            netns::guest_kargs()
        } else {
            "ip=10.0.2.15/24 gw=10.0.2.2".into()
        };
        let mut cfg = guest_cfg(image.elf.clone(), kargs, tap);
        if app == "httpd" {
            // `GET /` answers the bench's page.
            cfg.app_args = vec![format!("size={}", args.page)];
        }
        let cmd = if tap {
            cfg.command()
        } else {
            // In the namespace, as for Linux: the forwards bind its loopback.
            cfg.nic = Some(crate::net::Nic::with_forwards(
                USER_FORWARDS
                    .iter()
                    .map(|&(h, g)| crate::net::Forward::tcp(h, g))
                    .collect(),
            ));
            let mut c = ns.command(&cfg.qemu.display().to_string());
            c.args(cfg.args());
            c
        };
        progress(format_args!("Stardust {app}: {}", cfg.shell_line()));
        let mut guest = Guest::start(cmd)?;
        let first = ends.http.or(ends.echo).expect("every app has a port");
        if let Err(e) = wait_port(ns.name(), first, BOOT_LIMIT) {
            let _ = guest.wait_line("\u{0}", Duration::from_millis(100));
            bail!("Stardust `{app}`: {e:#}; {}", guest.tail());
        }
        if !tap {
            // slirp accepts on the forwarded port before the guest listens: wait for the
            // guest's own line.
            guest.wait_line("ready", BOOT_LIMIT)?;
        }
        measure(ns, ends, args, res);
        // The guest's own counters (polls, interrupts, frames): httpd's `/stats`, echo's lines
        // after each bulk stream.
        if let Some(http) = ends.http {
            match in_ns(ns.name(), move || http_get_path(http, "/stats")) {
                Ok(body) => progress(format_args!(
                    "{} httpd /stats: {}",
                    res.kind.label(),
                    String::from_utf8_lossy(&body)
                        .trim_end()
                        .replace('\n', ", ")
                )),
                Err(e) => progress(format_args!("httpd /stats: {e:#}")),
            }
        }
        let _ = guest.wait_line("\u{0}", Duration::from_millis(300));
        for line in guest.console.iter().filter(|l| l.contains("stream of")) {
            progress(format_args!("{} {line}", res.kind.label()));
        }
        drop(guest);
        ran = true;
    }
    if ran {
        res.notes.extend(why);
    } else {
        res.notes = why;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 5s test @ http://10.0.0.2/
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  10.00ms   90.00%
    Req/Sec     4.00k   100.00     5.00k    80.00%
  Latency Distribution
     50%  812.00us
     75%    1.50ms
     90%    2.00ms
     99%    1.20s
  40000 requests in 5.00s, 30.00MB read
  Socket errors: connect 0, read 10, write 2, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   8000.50
Transfer/sec:      6.00MB
";

    #[test]
    fn wrk_output_is_parsed() {
        let w = parse_wrk(WRK).expect("figures");
        assert_eq!(w.rps, 8000.5);
        assert_eq!(w.requests, 40000);
        assert_eq!(w.errors, 18);
        assert_eq!(
            w.latency_ms,
            vec![(50, 0.812), (75, 1.5), (90, 2.0), (99, 1200.0)]
        );
        assert_eq!(w.percentile(99), Some(1200.0));
        assert_eq!(w.percentile(95), None);
        // No Requests/sec: no figures (wrk failed to connect, say).
        assert_eq!(
            parse_wrk("unable to connect to 10.0.0.2:80 Connection refused"),
            None
        );
        let clean = WRK
            .lines()
            .filter(|l| !l.contains("errors") && !l.contains("Non-2xx"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse_wrk(&clean).expect("figures").errors, 0);
    }

    #[test]
    fn wrk_units() {
        assert_eq!(wrk_ms("250.00us"), Some(0.25));
        assert_eq!(wrk_ms("3.00ms"), Some(3.0));
        assert_eq!(wrk_ms("2.50s"), Some(2500.0));
        assert_eq!(wrk_ms("1.00m"), Some(60000.0));
        assert_eq!(wrk_ms("1.00x"), None);
        assert_eq!(wrk_ms("ms"), None);
    }

    #[test]
    fn the_page_has_the_size_asked_for() {
        for size in [0, 1, 10, 100, 612, 1024, 4096, 65536] {
            let p = page(size);
            assert_eq!(p.len(), size, "{size}");
            assert_eq!(page(size), p, "deterministic");
        }
        // httpd's generated content, byte for byte.
        let p = page(PAGE_BYTES);
        assert!(p.starts_with(b"0123456789abcdef"));
        assert_eq!(p[64..128], http1::PATTERN[..]);
    }

    #[test]
    fn summaries_take_medians() {
        let run = |rps: f64, p50: f64| Wrk {
            rps,
            latency_ms: vec![(50, p50), (99, p50 * 4.0)],
            requests: 1,
            errors: 1,
        };
        let s = WrkSummary::of(vec![run(100.0, 1.0), run(300.0, 3.0), run(200.0, 2.0)])
            .expect("summary");
        assert_eq!(s.rps, 200.0);
        assert_eq!(s.p50, Some(2.0));
        assert_eq!(s.p99, Some(8.0));
        assert_eq!(s.errors, 3);
        assert!(WrkSummary::of(Vec::new()).is_none());
    }

    #[test]
    fn the_table_has_a_row_per_target_and_ratios_with_stardust() {
        let w = |rps| {
            WrkSummary::of(vec![Wrk {
                rps,
                latency_ms: vec![(50, 1.0), (99, 2.0)],
                requests: 10,
                errors: 0,
            }])
        };
        let mut linux = TargetResult::new(TargetKind::Linux);
        linux.http_close = w(1000.0);
        linux.echo = Some(50.0);
        let mut sd = TargetResult::new(TargetKind::Stardust);
        sd.http_close = w(1500.0);
        sd.echo = Some(25.0);
        sd.notes.push("down: no source app".into());
        let mut report = NetReport {
            page: 612,
            duration: 5,
            bulk_mib: 64,
            runs: 3,
            guest_memory: 256,
            machine: "q35+qboot".into(),
            accel: "tcg".into(),
            targets: vec![linux, sd],
            skipped: vec!["something".into()],
        };
        let md = report.markdown();
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
            .collect();
        assert_eq!(rows.len(), 3, "{md}");
        assert!(
            rows[1].starts_with("| Linux guest, TAP | 1000 | 1.00 / 2.00 | — |"),
            "{md}"
        );
        assert!(
            md.contains("Stardust / Linux: HTTP close 1.50×, keep-alive —, echo 0.50×"),
            "{md}"
        );
        assert!(md.contains("- skipped: something"), "{md}");
        assert!(md.contains("- Stardust, TAP: down: no source app"), "{md}");
        report.targets.remove(1);
        assert!(!report.markdown().contains("Stardust / Linux"));
    }
}
