//! The network under the async executor (`scheduler = "async"`): `apps/asyncecho` on the `net`
//! profile, its sockets async tasks beside the kernel's `net` task, reached through `--forward`
//! on 127.0.0.1. TCP echo of 64 KiB, a UDP datagram echoed, a sink that takes 1 MiB, and the
//! echo still serving after all that, without a panic.

use std::io::{Read, Write};
use std::time::Duration;

use stardust_tests::{Outcome, Run, free_port, random_bytes};

const WAIT: Duration = Duration::from_secs(60);
const ASYNC: &[&str] = &["scheduler=async"];

/// Sends `data` to the echo at 127.0.0.1:`port` (from a second thread, so that neither side
/// waits on a full window) and returns what came back.
fn echo(port: u16, data: &[u8]) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sent = data.to_vec();
    let sender = std::thread::spawn(move || writer.write_all(&sent));
    let mut back = vec![0u8; data.len()];
    let read = stream.read_exact(&mut back);
    sender.join().expect("sender").expect("sent everything");
    read.unwrap_or_else(|e| panic!("reading the echo of {} bytes: {e}", data.len()));
    back
}

#[test]
fn asyncecho_echoes_tcp_and_udp_under_the_async_executor() {
    let (tcp, udp, sink) = (free_port(), free_port(), free_port());
    let guest = Run::new("asyncecho")
        .profile("net")
        .set(ASYNC)
        .forward(tcp, 7)
        .forward_udp(udp, 7)
        .forward(sink, 9)
        .start();
    guest
        .wait_for_line("asyncecho: ready", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));

    // 64 KiB echoed, byte for byte.
    let data = random_bytes(64 * 1024, 16);
    let back = echo(tcp, &data);
    assert!(back == data, "the echo of 64 KiB differs");

    // A datagram and its echo (QEMU's forward may drop one: a few tries).
    let socket = std::net::UdpSocket::bind(("127.0.0.1", 0)).expect("binds");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let datagram = random_bytes(1000, 7);
    let mut buf = [0u8; 2048];
    let echoed = (0..10).any(|_| {
        socket
            .send_to(&datagram, ("127.0.0.1", udp))
            .expect("sends");
        socket
            .recv_from(&mut buf)
            .is_ok_and(|(n, _)| buf[..n] == datagram[..])
    });
    assert!(echoed, "no UDP echo\n{}", guest.console());

    // The sink takes 1 MiB and closes when the client does.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", sink)).expect("connects");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(&random_bytes(1 << 20, 9))
        .expect("the sink takes 1 MiB");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("the sink closes");
    assert!(rest.is_empty(), "the sink sent {} bytes", rest.len());

    // Several connections at once, each its own task.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let data = random_bytes(16 * 1024, 100 + i);
                echo(tcp, &data) == data
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().expect("client"), "a concurrent echo differs");
    }
    // And it still serves.
    assert_eq!(echo(tcp, b"still there"), b"still there");

    assert!(guest.is_running(), "{}", guest.console());
    let boot = guest.stop().expect("stops");
    assert_eq!(boot.outcome, Outcome::Stopped, "{}", boot.stdout);
    assert!(
        !boot.stdout.contains("panicked") && !boot.stdout.contains("EXCEPTION"),
        "{}",
        boot.stdout
    );
}
