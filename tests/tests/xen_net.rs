//! netfront on real Xen: `httpd` and `echo` built with profile `xen-net` run as PV and PVH
//! guests on the lab's bridge (dom0 10.0.0.1, the guest 10.0.0.2), against Linux netback. ONE
//! lab boot runs every guest; a dom0 script talks to each (ping, curl, a 1 MiB echo), and the
//! test itself fetches a page from the host through a forwarded port
//! (`BatchOptions::forwards`, the path `run --platform xen --forward` uses).
//!
//! Where the lab cannot run every test prints `skipped: <test>: <why>` and passes; with
//! `STARDUST_XENLAB_REQUIRED=1` (CI) they fail instead.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use stardust_tests::{free_port, workspace};
use xtask::xenlab::{
    BatchOptions, BatchReport, Forward, GuestResult, GuestSpec, GuestType, Lab, Shutdown,
};

/// The guests, in batch order: (name, app, how it is built). `universal`: the universal image
/// with both NIC drivers (`net_device = "auto"`), which takes netfront on Xen (PVH).
const GUESTS: [(&str, &str, Build); 6] = [
    ("httpd-pv", "httpd", Build::Pv),
    ("httpd-pvh", "httpd", Build::Pvh),
    ("echo-pv", "echo", Build::Pv),
    ("httpd-universal", "httpd", Build::Universal),
    ("echo-pvh", "echo", Build::Pvh),
    ("echo-universal", "echo", Build::Universal),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    Pv,
    Pvh,
    Universal,
}

/// What dom0 runs against an httpd guest: ping, the page, 1 MiB, a 3-second ping flood and the
/// page again, then it holds the guest a few seconds for the host's request through the
/// forwarded port.
const HTTPD_SCRIPT: &str = "xenlab-wait tcp 80 30 || exit 2\n\
    ping -c 3 -W 2 $GUEST_IP | grep 'packets transmitted'\n\
    curl -s -m 10 http://$GUEST_IP/ | grep -o '<title>[a-z]*</title>'\n\
    curl -s -m 30 -o /tmp/mib -w 'GET /bytes/1048576: status %{http_code} size %{size_download}\\n' \
    http://$GUEST_IP/bytes/1048576\n\
    ping -f -w 3 $GUEST_IP | grep 'packets transmitted' | sed 's/^/flood: /'\n\
    curl -s -m 10 http://$GUEST_IP/ | grep -o '<title>[a-z]*</title>' | sed 's/^/after the flood: /'\n\
    sleep 6\n";

/// What dom0 runs against the echo guest: 1 MiB of random bytes there and back.
const ECHO_SCRIPT: &str = "xenlab-wait tcp 7 30 || exit 2\n\
    head -c 1048576 /dev/urandom > /tmp/in\n\
    timeout 60 nc -N $GUEST_IP 7 < /tmp/in > /tmp/out\n\
    echo \"echoed $(stat -c %s /tmp/out) bytes\"\n\
    cmp /tmp/in /tmp/out && echo 'echo: byte-exact'\n";

struct Ran {
    report: BatchReport,
    /// What the host got through the forwarded port (the status line and the title), if
    /// anything.
    forwarded: Option<String>,
}

enum Batch {
    Skipped(String),
    Failed(String),
    Ran(Box<Ran>),
}

fn batch() -> &'static Batch {
    static BATCH: OnceLock<Batch> = OnceLock::new();
    BATCH.get_or_init(run)
}

/// The host's client: GET / through 127.0.0.1:`port` until a page comes back (slirp accepts at
/// once even while nothing answers at 10.0.0.2), or `stop`.
fn forward_client(port: u16, stop: Arc<AtomicBool>) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: guest\r\nConnection: close\r\n\r\n");
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            let text = String::from_utf8_lossy(&got);
            if text.starts_with("HTTP/1.1 200") && text.contains("<title>stardust</title>") {
                return Some(text.lines().next().unwrap_or_default().to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

fn run() -> Batch {
    let lab = Lab::from_env();
    let mut guests = Vec::new();
    for (name, app, build) in GUESTS {
        let set: Vec<String> = match build {
            Build::Pv => vec!["platform=xen".into()],
            Build::Pvh => vec!["platform=xen".into(), "xen_guest=pvh".into()],
            Build::Universal => ["scheduler=preempt", "net_device=auto", "log_max=info"]
                .map(String::from)
                .to_vec(),
        };
        let profile = if build == Build::Universal {
            "universal"
        } else {
            "xen-net"
        };
        let elf = match xtask::build_app(workspace(), app, profile, &set) {
            Ok((_, image)) => image.elf,
            Err(e) => return Batch::Failed(format!("building {app} for {name}: {e}")),
        };
        let script = if app == "httpd" {
            HTTPD_SCRIPT
        } else {
            ECHO_SCRIPT
        };
        let mut g = GuestSpec::new(name, elf)
            .memory_mb(64)
            .vif(true)
            .keeps_running(true)
            .timeout(Duration::from_secs(120))
            .dom0_script(script);
        match build {
            Build::Pv => {}
            Build::Pvh => g = g.guest_type(GuestType::Pvh),
            // Profile universal's address is QEMU's; the lab's bridge is 10.0.0.0/24.
            Build::Universal => {
                g = g
                    .guest_type(GuestType::Pvh)
                    .cmdline("ip=10.0.0.2/24 gw=10.0.0.1")
            }
        }
        guests.push(g);
    }
    if let Err(why) = lab.availability() {
        return Batch::Skipped(why.to_string());
    }
    let dir = workspace().target_dir().join("xen-net");
    let _ = std::fs::create_dir_all(&dir);
    let port = free_port();
    let opts = BatchOptions {
        log: Some(dir.join("serial.log")),
        forwards: vec![Forward::tcp(port, 80)],
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || forward_client(port, stop))
    };
    let report = lab.run_batch(&guests, &opts);
    stop.store(true, Ordering::Relaxed);
    let forwarded = client.join().unwrap_or(None);
    match report {
        Err(e) => Batch::Failed(format!("{e:#}")),
        Ok(report) => {
            for g in &report.guests {
                let _ = writeln!(std::io::stderr(), "xen-net: {}", g.summary());
            }
            Batch::Ran(Box::new(Ran { report, forwarded }))
        }
    }
}

fn guest(name: &str) -> Option<(&'static Ran, &'static GuestResult)> {
    match batch() {
        Batch::Skipped(why) => {
            xtask::xenlab::skip_test(why);
            None
        }
        Batch::Failed(e) => panic!("the Xen lab failed: {e}"),
        Batch::Ran(ran) => {
            let i = GUESTS
                .iter()
                .position(|g| g.0 == name)
                .expect("a guest of GUESTS");
            Some((ran, &ran.report.guests[i]))
        }
    }
}

fn describe(g: &GuestResult) -> String {
    // What dom0 gathered when a guest failed its script (the vif, netback's rings, Xen's event
    // channels, the vCPUs): the lab's `hung: ` lines.
    let diag: Vec<&str> = g
        .xl_output
        .iter()
        .filter_map(|l| l.strip_prefix("hung: "))
        .collect();
    format!(
        "{}\n--- console ---\n{}\n--- dom0 script ---\n{}{}",
        g.summary(),
        g.console_text(),
        g.io.script_text(),
        if diag.is_empty() {
            String::new()
        } else {
            format!("\n--- dom0's diagnostics ---\n{}", diag.join("\n"))
        }
    )
}

fn has(g: &GuestResult, line: &str) -> bool {
    g.io.script.iter().any(|l| l.contains(line))
}

/// Checks one httpd guest: the handshake, ping, the page and 1 MiB from dom0.
fn httpd_serves(name: &str) {
    let Some((_, g)) = guest(name) else {
        return;
    };
    let d = describe(g);
    assert!(g.passed(), "{d}");
    assert_eq!(g.shutdown, Shutdown::Destroyed, "{d}");
    assert!(g.io.vif_connected(), "both sides reach Connected\n{d}");
    assert!(
        g.console
            .iter()
            .any(|l| l.contains("netfront device/vif/0") && l.contains("MAC 00:16:3e:00:00:02")),
        "{d}"
    );
    assert!(has(g, "3 packets transmitted, 3 received"), "{d}");
    assert!(has(g, "<title>stardust</title>"), "{d}");
    assert!(has(g, "GET /bytes/1048576: status 200 size 1048576"), "{d}");
}

#[test]
fn httpd_on_pv_answers_ping_and_curl_from_dom0() {
    httpd_serves("httpd-pv");
}

#[test]
fn httpd_on_pvh_answers_ping_and_curl_from_dom0() {
    httpd_serves("httpd-pvh");
}

#[test]
fn the_universal_image_takes_netfront_on_xen_and_serves() {
    httpd_serves("httpd-universal");
}

#[test]
fn the_host_reaches_httpd_through_a_forwarded_port() {
    let Some((ran, g)) = guest("httpd-pv") else {
        return;
    };
    assert_eq!(
        ran.forwarded.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "no page through the forward\n{}",
        describe(g)
    );
}

#[test]
fn echo_on_pv_returns_one_mib_byte_exact() {
    echoes("echo-pv");
}

#[test]
fn echo_on_pvh_returns_one_mib_byte_exact() {
    echoes("echo-pvh");
}

#[test]
fn echo_in_the_universal_image_returns_one_mib_byte_exact() {
    echoes("echo-universal");
}

fn echoes(name: &str) {
    let Some((_, g)) = guest(name) else {
        return;
    };
    let d = describe(g);
    assert!(g.passed(), "{d}");
    assert!(g.io.vif_connected(), "{d}");
    assert!(has(g, "echoed 1048576 bytes"), "{d}");
    assert!(has(g, "echo: byte-exact"), "{d}");
}

#[test]
fn no_device_errors_were_logged() {
    let Some((ran, _)) = guest("httpd-pv") else {
        return;
    };
    for g in &ran.report.guests {
        assert!(
            !g.console
                .iter()
                .any(|l| l.contains("netfront:") && (l.contains("ERROR") || l.contains("WARN"))),
            "{}",
            describe(g)
        );
    }
}
