//! The Xen lab's I/O for guests, for real: dom0 scripts, vifs, disks and forwarded ports, with
//! the lab's reference guests (which have no netfront or blkfront: the backends stay in
//! InitWait, and the dom0 scripts stand in for the guest where a test needs a peer). ONE lab
//! boot runs every guest below; each `#[test]` checks its own.
//!
//! Where the lab cannot run (not built, `STARDUST_XENLAB=off`) every test prints
//! `skipped: <test>: <why>` and passes; with `STARDUST_XENLAB_REQUIRED=1` they fail instead.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use stardust_tests::{free_port, workspace};
use xtask::xenlab::{
    BatchOptions, BatchReport, Forward, GuestResult, GuestSpec, Lab, LiveLine, LiveSink, RefGuest,
    Shutdown,
};

/// The guest port of the forward test.
const FORWARD_GUEST_PORT: u16 = 8080;
/// What the forward test's listener (10.0.0.2:8080 in dom0) sends first.
const GREETING: &str = "hello from 10.0.0.2 on xenbr0";
/// What the host answers through the forwarded port.
const REPLY: &str = "hello from the host through the forward";
/// Sector 0 of the disk test's image, as the test writes it.
const DISK_IN: &[u8] = b"XENLAB-DISK-IN-0";
/// What the disk test's dom0 script writes into sector 1 through the guest's disk device.
const DISK_OUT: &str = "XENLAB-DISK-OUT1";

/// Every guest's name, in batch order.
const NAMES: [&str; 5] = ["script-ok", "script-fails", "vif-server", "disk", "forward"];

struct Ran {
    report: BatchReport,
    /// Every live line, in order.
    live: Vec<LiveLine>,
    /// The disk test's input image and where its contents went.
    disk_in: PathBuf,
    disk_out: PathBuf,
    /// What the host read through the forwarded port (the greeting), if it got it.
    forwarded: Option<String>,
    /// How the host side of the forward ended.
    forward_log: Vec<String>,
}

enum Batch {
    Skipped(String),
    Failed(String),
    Ran(Box<Ran>),
}

fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn batch() -> &'static Batch {
    static BATCH: OnceLock<Batch> = OnceLock::new();
    BATCH.get_or_init(run)
}

/// The host side of the forward: connects to 127.0.0.1:`port` again and again (slirp accepts
/// at once and closes when nothing answers at 10.0.0.2) until the greeting arrives, then
/// answers. Ends when `stop` is set.
fn forward_client(port: u16, stop: Arc<AtomicBool>) -> (Option<String>, Vec<String>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut log = Vec::new();
    let mut attempts = 0u32;
    while !stop.load(Ordering::Relaxed) {
        attempts += 1;
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.contains(&b'\n') {
                        break;
                    }
                }
            }
        }
        let text = String::from_utf8_lossy(&got).trim().to_string();
        if text.contains(GREETING) {
            let _ = s.write_all(format!("{REPLY}\n").as_bytes());
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.read(&mut buf);
            log.push(format!("attempt {attempts}: got {text:?}, answered"));
            return (Some(text), log);
        }
        if !text.is_empty() {
            log.push(format!("attempt {attempts}: got {text:?}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    log.push(format!("gave up after {attempts} attempts"));
    (None, log)
}

fn run() -> Batch {
    let lab = Lab::from_env();
    if let Err(why) = lab.availability() {
        return Batch::Skipped(why.to_string());
    }
    let dir = workspace().target_dir().join("xen-lab-io");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Batch::Failed(format!("creating {}: {e}", dir.display()));
    }
    let disk_in = dir.join("disk.img");
    let disk_out = dir.join("disk.img.result");
    let _ = std::fs::remove_file(&disk_out);
    let mut image = vec![0u8; 1 << 20];
    image[..DISK_IN.len()].copy_from_slice(DISK_IN);
    if let Err(e) = std::fs::write(&disk_in, &image) {
        return Batch::Failed(format!("writing {}: {e}", disk_in.display()));
    }
    let named = |mut g: GuestSpec, name: &str| {
        g.name = name.to_string();
        g
    };
    let hello = |name: &str| named(GuestSpec::reference(&lab, RefGuest::PvHello), name);
    let hang = |name: &str| {
        named(GuestSpec::reference(&lab, RefGuest::PvHang), name).timeout(Duration::from_secs(90))
    };
    let guests = vec![
        hello("script-ok").dom0_script(
            "echo hello from dom0\n\
             echo \"ip=$GUEST_IP dom0=$DOM0_IP mac=$GUEST_MAC domid=$GUEST_DOMID name=$GUEST_NAME\"\n\
             test -n \"$GUEST_DOMID\" || exit 9\n\
             xenlab-wait console pvhello 20 || exit 8\n\
             echo done\n",
        ),
        hello("script-fails").dom0_script("echo about to fail >&2\nexit 3\n"),
        // A server whose netfront never connects (pvhang has none): the script starts once
        // vif_wait ran out, sees netback in InitWait, and the guest is destroyed after it.
        hang("vif-server")
            .vif(true)
            .vif_wait(Duration::from_secs(4))
            .live_console(true)
            .keeps_running(true)
            .dom0_script(
                "echo \"VIF_STATE=$VIF_STATE\"\n\
                 b=/local/domain/0/backend/vif/$GUEST_DOMID/0\n\
                 echo \"backend state $(xenstore-read $b/state) mac $(xenstore-read $b/mac)\"\n\
                 for i in $(seq 50); do\n\
                 ip link show \"$GUEST_VIF\" 2>/dev/null | grep -q 'master xenbr0' && break\n\
                 sleep 0.2\n\
                 done\n\
                 ip link show \"$GUEST_VIF\" | grep -q 'master xenbr0' && echo \"$GUEST_VIF on xenbr0\"\n\
                 xenlab-wait console 'hang variant' 20\n",
            ),
        // A disk without blkfront: blkback waits in InitWait; the script reads the image's first
        // sector through dom0's device and writes the second, which must be in the output.
        hang("disk")
            .disk(&disk_in)
            .disk_out(&disk_out)
            .keeps_running(true)
            .dom0_script(format!(
                "echo \"disk $GUEST_DISK_DEV\"\n\
                 echo \"vbd state $(xenstore-read /local/domain/0/backend/vbd/$GUEST_DOMID/51712/state)\"\n\
                 echo \"sector 0: $(head -c 16 \"$GUEST_DISK_DEV\")\"\n\
                 printf '{DISK_OUT}' | dd of=\"$GUEST_DISK_DEV\" bs=512 seek=1 conv=notrunc,fsync 2>/dev/null || exit 4\n\
                 sync\n\
                 echo written\n"
            )),
        // The forwarded port's path without a netfront: 10.0.0.2 in a network namespace on
        // xenbr0 (a veth), as a guest would be; the host connects to 127.0.0.1:H.
        hang("forward").keeps_running(true).dom0_script(format!(
            "set -e\n\
             ip netns add fwd\n\
             ip link add v0 type veth peer name v1\n\
             ip link set v0 netns fwd\n\
             ip -n fwd addr add $GUEST_IP/24 dev v0\n\
             ip -n fwd link set v0 up\n\
             ip -n fwd link set lo up\n\
             ip link set v1 master xenbr0\n\
             ip link set v1 up\n\
             echo \"listening on $GUEST_IP:{FORWARD_GUEST_PORT}\"\n\
             set +e\n\
             rc=1\n\
             for i in $(seq 20); do\n\
             got=$(echo '{GREETING}' | timeout 30 ip netns exec fwd nc -N -l {FORWARD_GUEST_PORT})\n\
             [ -n \"$got\" ] && echo \"$got\"\n\
             case $got in *'{REPLY}'*) rc=0; break;; esac\n\
             done\n\
             [ $rc = 0 ] || {{ ip -br link; ip neigh; ip -n fwd neigh; }}\n\
             ip link del v1\n\
             ip netns del fwd\n\
             exit $rc\n"
        )),
    ];
    let port = free_port();
    let live = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let live = live.clone();
        LiveSink::new(move |l: &LiveLine| {
            if let Ok(mut v) = live.lock() {
                v.push(l.clone());
            }
        })
    };
    let opts = BatchOptions {
        log: Some(dir.join("serial.log")),
        forwards: vec![Forward::tcp(port, FORWARD_GUEST_PORT)],
        live: Some(sink),
        ..Default::default()
    };
    note(&format!(
        "xen-lab-io: one Xen lab boot for {} guests; 127.0.0.1:{port} -> 10.0.0.2:{FORWARD_GUEST_PORT}",
        guests.len()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || forward_client(port, stop))
    };
    let report = lab.run_batch(&guests, &opts);
    stop.store(true, Ordering::Relaxed);
    let (forwarded, forward_log) = client
        .join()
        .unwrap_or_else(|_| (None, vec!["the client thread panicked".into()]));
    match report {
        Err(e) => Batch::Failed(format!("{e:#}")),
        Ok(report) => {
            for g in &report.guests {
                note(&format!("xen-lab-io: {}", g.summary()));
            }
            let live = live.lock().map(|v| v.clone()).unwrap_or_default();
            Batch::Ran(Box::new(Ran {
                report,
                live,
                disk_in,
                disk_out,
                forwarded,
                forward_log,
            }))
        }
    }
}

/// Guest `name`'s result, or `None` after the skip line.
fn guest(name: &str) -> Option<(&'static Ran, &'static GuestResult)> {
    match batch() {
        Batch::Skipped(why) => {
            xtask::xenlab::skip_test(why);
            None
        }
        Batch::Failed(e) => panic!("the Xen lab failed: {e}"),
        Batch::Ran(ran) => {
            let i = NAMES
                .iter()
                .position(|n| *n == name)
                .expect("a guest of NAMES");
            let g = &ran.report.guests[i];
            assert_eq!(g.name, name);
            Some((ran, g))
        }
    }
}

fn describe(g: &GuestResult) -> String {
    format!(
        "{}\n--- console ---\n{}\n--- dom0 script ---\n{}\n--- xl ---\n{}",
        g.summary(),
        g.console_text(),
        g.io.script_text(),
        g.xl_output.join("\n")
    )
}

#[test]
fn a_dom0_script_runs_with_the_guest_s_environment() {
    let Some((ran, g)) = guest("script-ok") else {
        return;
    };
    assert!(g.passed(), "{}", describe(g));
    assert_eq!(g.shutdown, Shutdown::Poweroff, "{}", describe(g));
    assert_eq!(g.io.script_status, Some(0), "{}", describe(g));
    let domid = g.domid.expect("a domid");
    let env = format!("ip=10.0.0.2 dom0=10.0.0.1 mac=00:16:3e:00:00:02 domid={domid} name=sd01");
    assert!(g.io.script.contains(&env), "want {env:?}\n{}", describe(g));
    assert!(
        g.io.script
            .iter()
            .any(|l| l.starts_with("xenlab-wait: console") && l.contains("ready after")),
        "{}",
        describe(g)
    );
    assert_eq!(
        g.io.script.first().map(String::as_str),
        Some("hello from dom0")
    );
    assert_eq!(g.io.script.last().map(String::as_str), Some("done"));
    assert!(g.io.to_script.is_some(), "{}", describe(g));
    // The script's lines also arrived live, in order.
    let live: Vec<&str> = ran
        .live
        .iter()
        .filter_map(|l| match l {
            LiveLine::Script { guest: 0, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(live, g.io.script, "{}", describe(g));
}

#[test]
fn a_failing_dom0_script_fails_its_guest() {
    let Some((_, g)) = guest("script-fails") else {
        return;
    };
    assert_eq!(g.shutdown, Shutdown::Poweroff, "{}", describe(g));
    assert_eq!(g.io.script_status, Some(3), "{}", describe(g));
    assert_eq!(g.io.script, vec!["about to fail"], "{}", describe(g));
    assert!(!g.script_passed() && !g.passed(), "{}", describe(g));
    assert!(
        g.summary().contains("dom0 script failed (status 3)"),
        "{}",
        g.summary()
    );
}

#[test]
fn a_vif_without_netfront_waits_in_initwait_and_the_server_is_destroyed() {
    let Some((ran, g)) = guest("vif-server") else {
        return;
    };
    assert!(g.passed(), "{}", describe(g));
    assert_eq!(g.shutdown, Shutdown::Destroyed, "{}", describe(g));
    let wait = g.io.vif_wait.as_ref().expect("the vif wait is reported");
    assert_eq!(wait.how, "waited", "{}", describe(g));
    assert_eq!(wait.state, Some(2), "{}", describe(g));
    assert!(
        g.io.script.contains(&"VIF_STATE=2".to_string()),
        "{}",
        describe(g)
    );
    assert!(
        g.io.script
            .contains(&"backend state 2 mac 00:16:3e:00:00:02".to_string()),
        "{}",
        describe(g)
    );
    assert!(
        g.io.script.iter().any(|l| l.ends_with(".0 on xenbr0")),
        "{}",
        describe(g)
    );
    // The backend's states as dom0 watched them: InitWait, never Connected.
    assert!(
        g.io.vif.iter().any(|s| s.backend == Some(2)),
        "{:?}\n{}",
        g.io.vif,
        describe(g)
    );
    assert!(!g.io.vif_connected());
    // Its console arrived live too (pvhang prints, then hangs until destroyed).
    let live: Vec<&str> = ran
        .live
        .iter()
        .filter_map(|l| match l {
            LiveLine::Console { guest: 2, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        live.iter().any(|l| l.contains("hang variant")),
        "live: {live:?}\n{}",
        describe(g)
    );
    assert_eq!(g.io.live_lines, live.len());
    assert!(
        g.console.iter().any(|l| l.contains("hang variant")),
        "{}",
        describe(g)
    );
}

#[test]
fn a_disk_is_a_vbd_and_what_was_written_is_in_the_output_file() {
    let Some((ran, g)) = guest("disk") else {
        return;
    };
    assert!(g.passed(), "{}", describe(g));
    let dev = g.io.disk_dev.as_deref().expect("a disk device");
    assert!(dev.starts_with("/dev/vd"), "{dev}");
    assert!(
        g.io.script.contains(&"vbd state 2".to_string()),
        "{}",
        describe(g)
    );
    assert!(
        g.io.script
            .contains(&format!("sector 0: {}", String::from_utf8_lossy(DISK_IN))),
        "{}",
        describe(g)
    );
    assert!(
        g.io.vbd.iter().any(|s| s.backend == Some(2)),
        "{:?}",
        g.io.vbd
    );
    assert_eq!(g.io.disk_out.as_deref(), Some(ran.disk_out.as_path()));
    let out = std::fs::read(&ran.disk_out).expect("the disk's output file");
    assert_eq!(out.len(), 1 << 20);
    assert_eq!(&out[..DISK_IN.len()], DISK_IN);
    assert_eq!(&out[512..512 + DISK_OUT.len()], DISK_OUT.as_bytes());
    // The input image is untouched.
    let input = std::fs::read(&ran.disk_in).expect("the input image");
    assert!(input[512..1024].iter().all(|b| *b == 0));
}

#[test]
fn a_forwarded_host_port_reaches_10_0_0_2_on_the_bridge() {
    let Some((ran, g)) = guest("forward") else {
        return;
    };
    assert_eq!(
        ran.forwarded.as_deref(),
        Some(GREETING),
        "host side: {:?}\n{}",
        ran.forward_log,
        describe(g)
    );
    // nc in dom0 printed what the host sent.
    assert!(g.io.script.contains(&REPLY.to_string()), "{}", describe(g));
    assert!(g.passed(), "{}", describe(g));
}
