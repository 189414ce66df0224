//! `--net tap`'s plumbing (xtask/src/netns.rs): the network namespace and its TAP device are
//! created, usable and removed, and a namespace left by a killed xtask is removed by the next
//! one. Then the one place a guest's NIC gets QEMU's offloads (user networking offers none):
//! `echo` over TAP, where virtio-net negotiates checksum offload, TSO both ways and large
//! receive buffers, moves bulk streams byte-exact on q35 and microvm. Needs root; skipped (with
//! a `skipped:` line) elsewhere.

use std::process::Command;
use std::time::Duration;

use stardust_tests::{Machine, Run};
use xtask::bench::net::{
    ECHO_PORT, SINK_PORT, SOURCE_PORT, addr, downstream, echo, in_ns, upstream, wait_port,
};
use xtask::netns::{self, NetNs};
use xtask::xenlab::skip::report_skip;

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("ip runs")
}

#[test]
fn a_namespace_with_its_tap_device_is_created_and_removed() {
    if let Some(why) = netns::unavailable() {
        report_skip(None, &why);
        return;
    }
    let ns = NetNs::create().expect("created");
    let name = ns.name().to_string();
    assert_eq!(netns::pid_of(&name), Some(std::process::id()), "{name}");
    assert!(ns.exists() && netns::list().contains(&name), "{name}");
    let link = ip(&["-n", &name, "addr", "show", "dev", netns::TAP_NAME]);
    assert!(link.status.success(), "{link:?}");
    let text = String::from_utf8_lossy(&link.stdout);
    assert!(
        text.contains(&format!("inet {}", netns::HOST_CIDR)),
        "{text}"
    );
    assert!(text.contains("UP"), "the TAP device is up: {text}");
    // The host's own namespace has no such device.
    let host = ip(&["addr", "show", "dev", netns::TAP_NAME]);
    let host = String::from_utf8_lossy(&host.stdout);
    assert!(!host.contains(netns::HOST_CIDR), "{host}");
    // A thread moved into it sees its loopback (and nothing listens there).
    let std_ns = ns.name().to_string();
    let bound_inside = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("{}/{std_ns}", netns::NETNS_DIR)).expect("netns");
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a descriptor owned for its duration; moves this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        std::net::TcpListener::bind((netns::HOST_IP, 0)).is_ok()
    })
    .join()
    .expect("thread");
    assert!(bound_inside, "10.0.0.1 is an address inside the namespace");
    assert!(
        std::net::TcpListener::bind((netns::HOST_IP, 0)).is_err(),
        "10.0.0.1 is not an address of the host's own namespace"
    );
    drop(ns);
    assert!(!netns::list().contains(&name), "removed when dropped");
}

#[test]
fn a_stale_namespace_of_a_dead_xtask_is_removed_by_the_next() {
    if let Some(why) = netns::unavailable() {
        report_skip(None, &why);
        return;
    }
    // The pid of a process that has ended: what SIGKILL leaves behind.
    let mut child = Command::new("true").spawn().expect("true");
    let dead = child.id();
    child.wait().expect("reaped");
    assert!(!netns::process_alive(dead));
    let stale = netns::name_for(dead, 0);
    let added = ip(&["netns", "add", &stale]);
    assert!(added.status.success(), "{added:?}");
    let ns = NetNs::create().expect("created");
    assert!(
        !netns::list().contains(&stale),
        "{stale} was removed by the next start"
    );
    assert!(ns.exists());
}

/// Bytes each bulk stream moves: enough for many 64 KiB TSO frames each way.
const BULK: u64 = 16 << 20;

#[test]
fn echo_over_tap_with_offloads_moves_bulk_streams_byte_exact() {
    if let Some(why) = netns::unavailable() {
        report_skip(None, &why);
        return;
    }
    for machine in [Machine::Q35, Machine::Microvm] {
        let ns = NetNs::create().expect("created");
        let mut cfg = Run::new("echo")
            .profile("net")
            .machine(machine)
            .timeout(Duration::from_secs(300))
            .config();
        cfg.tap = Some(ns.nic());
        cfg.kargs = netns::guest_kargs();
        eprintln!("--- echo over TAP on {machine:?}\n$ {}", cfg.shell_line());
        let guest = xtask::guest::start(&cfg, Some(Duration::from_secs(300)))
            .unwrap_or_else(|e| panic!("{machine:?}: starting: {e:#}"));
        guest
            .wait_for_line("echo: ready", Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{machine:?}: {e:#}"));
        let ip = netns::GUEST_IP;
        wait_port(ns.name(), addr(ip, ECHO_PORT), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{machine:?}: {e:#}"));
        // Each checks every byte: the echo against the pattern it sent, the source's zeros;
        // the sink says how many bytes it took.
        let at = |port| addr(ip, port);
        in_ns(ns.name(), move || echo(at(ECHO_PORT), BULK))
            .unwrap_or_else(|e| panic!("{machine:?}: echo: {e:#}"));
        in_ns(ns.name(), move || upstream(at(SINK_PORT), BULK))
            .unwrap_or_else(|e| panic!("{machine:?}: up: {e:#}"));
        guest
            .wait_for_line(
                &format!("sink stream of {BULK} bytes done"),
                Duration::from_secs(30),
            )
            .unwrap_or_else(|e| panic!("{machine:?}: {e:#}"));
        in_ns(ns.name(), move || downstream(at(SOURCE_PORT), BULK))
            .unwrap_or_else(|e| panic!("{machine:?}: down: {e:#}"));
        let boot = guest
            .stop()
            .unwrap_or_else(|e| panic!("{machine:?}: {e:#}"));
        for bad in ["PANIC", "EXCEPTION", "[ERROR", "[WARN"] {
            assert!(
                !boot.stdout.contains(bad),
                "{machine:?}: {bad} on the console\n{}",
                boot.stdout
            );
        }
    }
}
