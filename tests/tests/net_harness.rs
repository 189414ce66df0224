//! The harness of the network tests: guests in the background (`Run::start`), console lines
//! awaited, QEMU stopped and never left behind, and a NIC on QEMU user networking with ports
//! forwarded from 127.0.0.1 (`Run::forward`), on q35 and microvm. Nothing here asks the guest's
//! network for anything yet: the forwards are QEMU's (it listens on the host ports).

use std::time::Duration;

use stardust_tests::{Machine, Outcome, Run, free_port};

/// A guest that sleeps for ten minutes after printing `idle 600000 ms`.
const IDLE: &[&str] = &["idle", "600000"];
const IDLE_LINE: &str = "idle 600000 ms";
const WAIT: Duration = Duration::from_secs(60);

/// Whether process `pid` exists (a zombie counts as gone: it no longer runs).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_background_guest_is_awaited_then_stopped() {
    let guest = Run::new("timeprobe").args(IDLE).start();
    let pid = guest.pid();
    let line = guest
        .wait_for_line(IDLE_LINE, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(line, IDLE_LINE);
    assert!(guest.is_running() && running(pid));
    assert!(guest.console().contains(IDLE_LINE));
    // A line that never comes: the wait ends at its time limit, saying QEMU still runs.
    let e = guest
        .wait_for_line("net: never", Duration::from_millis(300))
        .expect_err("no such line")
        .to_string();
    assert!(
        e.contains("no console line contained \"net: never\"") && e.contains("still runs"),
        "{e}"
    );
    assert!(e.contains(IDLE_LINE), "the console is in the message: {e}");
    let boot = guest.stop().expect("stops");
    assert_eq!(boot.outcome, Outcome::Stopped, "{}", boot.stdout);
    assert!(boot.stdout.contains(IDLE_LINE), "{}", boot.stdout);
    assert!(!running(pid), "QEMU {pid} still runs after stop");
}

#[test]
fn a_qemu_that_ends_early_is_reported_with_its_console() {
    let guest = Run::new("hello").args(&["early"]).start();
    let e = guest
        .wait_for_line("net: 10.0.2.15/24 up", WAIT)
        .expect_err("hello exits")
        .to_string();
    assert!(
        e.contains("QEMU ended before a console line contained"),
        "{e}"
    );
    assert!(e.contains("guest exited with status 0"), "{e}");
    assert!(
        e.contains("Hello from Stardust!") && e.contains("command line: early"),
        "{e}"
    );
    // Stopping a guest that already ended gives its own outcome.
    let boot = guest.stop().expect("ended");
    assert_eq!(boot.outcome, Outcome::Guest(0));
}

#[test]
fn a_dropped_guest_leaves_no_qemu_and_a_time_limit_holds() {
    let guest = Run::new("timeprobe").args(IDLE).start();
    let pid = guest.pid();
    guest
        .wait_for_line(IDLE_LINE, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    drop(guest);
    assert!(
        !running(pid),
        "QEMU {pid} still runs after the Guest was dropped"
    );
    // Killed at its time limit: TimedOut, not Stopped.
    let limit = Duration::from_secs(3);
    let guest = Run::new("timeprobe").args(IDLE).timeout(limit).start();
    let boot = guest.wait(WAIT).expect("ends");
    assert_eq!(boot.outcome, Outcome::TimedOut(limit), "{}", boot.stdout);
}

/// The NIC and its forwards: QEMU accepts the line on each machine and listens on the host
/// ports while the guest runs; they are free again once it is stopped.
#[test]
fn a_guest_with_forwarded_ports_boots_on_q35_and_microvm() {
    for machine in [Machine::Q35, Machine::Microvm] {
        let (tcp, udp) = (free_port(), free_port());
        let run = Run::new("timeprobe")
            .profile("net")
            .machine(machine)
            .args(IDLE)
            .forward(tcp, 80)
            .forward_udp(udp, 7);
        let args = run.config().args().join(" ");
        assert!(
            args.contains(&format!("hostfwd=tcp:127.0.0.1:{tcp}-10.0.2.15:80")),
            "{args}"
        );
        assert!(args.contains("mac=52:54:00:12:34:56"), "{args}");
        let guest = run.start();
        guest
            .wait_for_line(IDLE_LINE, WAIT)
            .unwrap_or_else(|e| panic!("{machine:?}: {e:#}"));
        let held = std::net::TcpListener::bind(("127.0.0.1", tcp));
        assert!(
            held.is_err(),
            "{machine:?}: QEMU does not listen on 127.0.0.1:{tcp}"
        );
        assert!(
            std::net::UdpSocket::bind(("127.0.0.1", udp)).is_err(),
            "{machine:?}: udp {udp}"
        );
        let boot = guest.stop().expect("stops");
        assert_eq!(
            boot.outcome,
            Outcome::Stopped,
            "{machine:?}: {}{}",
            boot.stdout,
            boot.stderr
        );
        std::net::TcpListener::bind(("127.0.0.1", tcp)).expect("free again after the stop");
    }
}

#[test]
fn a_nic_needs_a_driver_in_the_image() {
    let e = std::panic::catch_unwind(|| Run::new("hello").forward(free_port(), 80).config())
        .expect_err("the default profile has no NIC driver");
    let e = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        e.contains("use a net profile (--profile net) or --set net_device=virtio"),
        "{e}"
    );
}
