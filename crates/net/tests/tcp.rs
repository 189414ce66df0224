//! TCP and UDP between two stacks over `netdev`'s fakes, on a virtual clock.
mod common;

use common::*;
#[cfg(feature = "udp")]
use net::UdpSocket;
use net::{Error, Limits, Shared, Shutdown, TcpListener, TcpStream};
use netdev::fake::{Faults, Faulty};
use std::time::Duration;

/// Connects, sends `data`, has the server echo it, half-closes, and checks every byte.
fn echo<D: Pending>(client: &Side<D>, server: &Side<D>, data: &[u8], steps: u64) {
    let listener = TcpListener::bind(server, 7, 4).expect("bind");
    let mut c = TcpStream::connect_start(client, server_addr(7)).expect("connect");
    let mut s: Option<TcpStream<Side<D>>> = None;
    let (mut sent, mut back, mut pending) = (0, Vec::new(), Vec::new());
    let mut buf = vec![0; 4096];
    let mut server_eof = false;
    let mut client_closed = false;
    for _ in 0..steps {
        if s.is_none() {
            match listener.try_accept() {
                Ok((conn, peer)) => {
                    assert_eq!(*peer.ip(), CLIENT_IP);
                    assert_eq!(conn.local_addr().expect("local"), server_addr(7));
                    s = Some(conn);
                }
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("accept: {e}"),
            }
        }
        if sent < data.len() {
            match c.try_write(&data[sent..]) {
                Ok(n) => sent += n,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("client write: {e}"),
            }
        } else if !client_closed {
            c.shutdown(Shutdown::Write).expect("shutdown");
            client_closed = true;
        }
        if let Some(conn) = s.as_mut() {
            if !pending.is_empty() {
                match conn.try_write(&pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("server write: {e}"),
                }
            }
            if pending.is_empty() && !server_eof {
                match conn.try_read(&mut buf) {
                    Ok(0) => {
                        server_eof = true;
                        conn.shutdown(Shutdown::Write).expect("server shutdown");
                    }
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("server read: {e}"),
                }
            }
        }
        // Drain what arrived (smoltcp drops unread data when TIME-WAIT ends).
        loop {
            match c.try_read(&mut buf) {
                Ok(0) => {
                    assert!(
                        back.len() == data.len(),
                        "client state {:?} server state {:?} now {} eof {server_eof} back {}",
                        c.state(),
                        s.as_ref().map(|s| s.state()),
                        client.now(),
                        back.len()
                    );
                    assert!(server_eof && pending.is_empty());
                    assert!(back == data, "the echo differs");
                    return;
                }
                Ok(n) => back.extend_from_slice(&buf[..n]),
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("client read: {e}"),
            }
        }
        client.step();
    }
    panic!(
        "echo of {} bytes not done: sent {sent}, back {}, server eof {server_eof}",
        data.len(),
        back.len()
    );
}

#[test]
fn tcp_echo_of_1_byte_to_1_mib_is_byte_exact() {
    for (i, len) in [1, 2, 100, 1460, 1461, 65_535, 65_536, 200_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let (c, s) = plain(limits());
        echo(&c, &s, &pattern(len, i as u8), 200_000);
        assert_eq!(s.stats().accepted, 1);
    }
}

#[test]
fn a_bulk_echo_over_tso_devices_is_byte_exact_and_merges_segments() {
    for (i, (len, buffer)) in [
        (1, 64 * 1024),
        (100_000, 64 * 1024),
        (1 << 20, 64 * 1024),
        (1 << 20, 128 * 1024),
        (3 << 20, 256 * 1024),
    ]
    .into_iter()
    .enumerate()
    {
        let (c, s) = tso(Limits {
            tcp_buffer: buffer,
            ..limits()
        });
        echo(&c, &s, &pattern(len, i as u8), 400_000);
        let (frames, segments) = s.with_stack(|st| st.tso_merged());
        let (cf, cs) = c.with_stack(|st| st.tso_merged());
        if len >= 100_000 {
            assert!(frames > 0 && cf > 0, "len {len}: merged {frames}/{cf}");
            // Most of the bytes went in merged frames.
            assert!(
                (segments + cs) * 1460 > 2 * len as u64 * 6 / 10,
                "len {len}: {segments}+{cs} segments merged"
            );
        }
        assert_eq!(s.with_stack(|st| st.bad_checksums()), 0);
        let sent = s.with_stack(|st| netdev::NetDevice::stats(st.device()).tx_frames);
        assert!(sent > 0);
        if len >= 100_000 {
            // The merged frames were built in the buffers the device lends.
            let held = s.with_stack(|st| st.device().held_sent());
            assert!(held > 0 && held <= sent, "len {len}: {held} of {sent} lent");
        }
    }
}

#[test]
fn a_corrupted_frame_from_a_device_that_verifies_checksums_is_dropped_by_the_adapter() {
    // The device says it verifies TCP checksums, but marks frames Unknown (as virtio-net does
    // with frames it did not check): the adapter checks them, and TCP recovers.
    let (a, b) = netdev::fake::pair(CLIENT_MAC, SERVER_MAC);
    let (c, s) = world(
        Faulty::new(
            a.with_capabilities(offloading(CLIENT_MAC)),
            Faults {
                corrupt: 5,
                ..Faults::none()
            },
            3,
        ),
        Faulty::new(
            b.with_capabilities(offloading(SERVER_MAC)),
            Faults {
                corrupt: 5,
                ..Faults::none()
            },
            4,
        ),
        limits(),
    );
    echo(&c, &s, &pattern(200_000, 9), 2_000_000);
    let bad = c.with_stack(|st| st.bad_checksums()) + s.with_stack(|st| st.bad_checksums());
    assert!(bad > 0, "corrupted frames were caught");
}

#[test]
fn tcp_delivers_every_byte_in_order_over_a_faulty_link() {
    for seed in 1..=3 {
        let (c, s) = faulty(Faults::each(5), seed);
        echo(&c, &s, &pattern(300_000, seed as u8), 2_000_000);
        let counts = c.with_stack(|st| st.device().counts());
        assert!(counts.dropped > 0 && counts.corrupted > 0 && counts.reordered > 0);
        assert!(counts.duplicated > 0 && counts.truncated > 0, "{counts:?}");
    }
}

#[test]
fn a_read_times_out_on_the_virtual_clock() {
    let (c, s) = plain(limits());
    let listener = TcpListener::bind(&s, 80, 2).expect("bind");
    let mut client = TcpStream::connect(&c, server_addr(80), None).expect("connect");
    let (mut conn, _) = listener.accept().expect("accept");
    conn.set_read_timeout(Some(Duration::from_secs(3)));
    let start = s.now();
    let mut buf = [0; 16];
    assert_eq!(conn.read(&mut buf), Err(Error::TimedOut));
    assert!(s.now() >= start + 3_000_000_000);
    // Data still comes through afterwards, by the blocking calls and embedded-io.
    embedded_io::Write::write_all(&mut client, b"hello").expect("write");
    embedded_io::Read::read_exact(&mut conn, &mut buf[..5]).expect("read");
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(
        conn.peer_addr().expect("peer"),
        client.local_addr().expect("local")
    );
    // A write timeout: the peer reads nothing, the buffers fill.
    conn.set_write_timeout(Some(Duration::from_secs(1)));
    let big = vec![7; 1 << 20];
    let mut written = 0;
    loop {
        match conn.write(&big) {
            Ok(n) => written += n,
            Err(e) => {
                assert_eq!(e, Error::TimedOut);
                break;
            }
        }
        assert!(
            written < big.len(),
            "a peer that reads nothing took everything"
        );
    }
    assert!(written >= 64 * 1024, "{written}");
}

#[test]
fn a_reset_is_reported_and_refusal_too() {
    let (c, s) = plain(limits());
    // Nobody listens on port 9: refused at once, by an RST (not a dropped SYN and a timeout).
    assert_eq!(
        TcpStream::connect(&c, server_addr(9), None).map(|_| ()),
        Err(Error::ConnectionRefused)
    );
    assert!(c.now() < 1_000_000_000, "refused after {} ns", c.now());
    assert_eq!(s.stats().syn_dropped, 0);
    let listener = TcpListener::bind(&s, 80, 2).expect("bind");
    assert_eq!(
        TcpListener::bind(&s, 80, 2).map(|_| ()),
        Err(Error::AddrInUse)
    );
    let mut client = TcpStream::connect(&c, server_addr(80), None).expect("connect");
    let (conn, _) = listener.accept().expect("accept");
    conn.abort();
    let mut buf = [0; 4];
    assert_eq!(client.read(&mut buf), Err(Error::ConnectionReset));
    let e = embedded_io::Read::read(&mut client, &mut buf).expect_err("reset");
    assert_eq!(
        embedded_io::Error::kind(&e),
        embedded_io::ErrorKind::ConnectionReset
    );
}

/// What a burst of clients met.
#[derive(Debug)]
struct Burst {
    /// Connections the server accepted.
    accepted: u64,
    /// Connects that failed (an RST, or a handshake that timed out) and were retried.
    refused: usize,
    /// SYNs the server dropped unanswered.
    syn_dropped: u64,
    /// When the last client was done (virtual ns).
    done_ns: u64,
}

/// Drives `n` clients against a listener with a pool of `backlog`: `wave` clients start
/// connecting together every `gap_ns` (all at once when `wave` is `n`). Clients refused retry;
/// every connection accepted carries its bytes.
fn concurrent(n: usize, backlog: usize, wave: usize, gap_ns: u64) -> Burst {
    let (c, s) = plain(limits());
    let listener = TcpListener::bind(&s, 80, backlog).expect("bind");
    let mut clients: Vec<Option<TcpStream<_>>> = (0..n).map(|_| None).collect();
    let (mut started, mut next_wave) = (0, c.now());
    let mut done = vec![false; n];
    let mut greeted = vec![false; n];
    let mut servers = Vec::new();
    let mut refused = 0;
    for _ in 0..100_000 {
        if started < n && c.now() >= next_wave {
            for slot in clients.iter_mut().skip(started).take(wave) {
                *slot = Some(TcpStream::connect_start(&c, server_addr(80)).expect("connect"));
            }
            started = (started + wave).min(n);
            next_wave += gap_ns;
        }
        while let Ok((conn, _)) = listener.try_accept() {
            servers.push(conn);
        }
        for conn in &mut servers {
            let mut id = [0; 2];
            if let Ok(2) = conn.try_read(&mut id) {
                conn.try_write(&id).expect("room for 2 bytes");
            }
        }
        for (i, slot) in clients.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            let Some(client) = slot.as_mut() else {
                continue;
            };
            match client.try_connected() {
                Err(Error::WouldBlock) => continue,
                Err(Error::ConnectionRefused) => {
                    refused += 1;
                    *slot = Some(TcpStream::connect_start(&c, server_addr(80)).expect("retry"));
                    continue;
                }
                Err(e) => panic!("{e}"),
                Ok(()) => {}
            }
            let id = (i as u16).to_le_bytes();
            if !greeted[i] {
                client.try_write(&id).expect("room");
                greeted[i] = true;
            }
            let mut got = [0; 2];
            if let Ok(2) = client.try_read(&mut got) {
                assert_eq!(got, id);
                done[i] = true;
            }
        }
        if done.iter().all(|&d| d) {
            assert_eq!(servers.len(), n, "accepted more than connected");
            let max_live = s.stats().live_sockets;
            assert!(max_live <= n + 2 * backlog, "{max_live}");
            let stats = s.stats();
            return Burst {
                accepted: stats.accepted,
                refused,
                syn_dropped: stats.syn_dropped,
                done_ns: s.now(),
            };
        }
        c.world
            .borrow_mut()
            .step((started < n).then_some(next_wave));
    }
    panic!("not all connected");
}

#[test]
fn the_listener_pool_accepts_100_concurrent_connections() {
    let b = concurrent(100, 128, 100, 0);
    assert_eq!(b.accepted, 100);
    assert_eq!((b.refused, b.syn_dropped), (0, 0), "{b:?}");
}

#[test]
fn a_burst_beyond_the_pool_is_dropped_and_retransmitted_never_refused() {
    // 100 clients within 100 ms (waves of 10, 10 ms apart) on a pool of 4: the SYNs beyond the
    // pool are dropped unanswered; the clients retransmit them (after 1 s, then 2 s) and all get
    // in, none refused.
    let b = concurrent(100, 4, 10, 10_000_000);
    assert_eq!(b.accepted, 100);
    assert_eq!(b.refused, 0, "{b:?}");
    assert!(b.syn_dropped > 0, "{b:?}");
    assert!(
        b.done_ns > 1_000_000_000,
        "done before any retransmission: {b:?}"
    );
    eprintln!("{b:?}");
    // 100 clients at once, on a pool of 25: they get in 25 at a time, at each retransmission
    // (0, 1, 3 and 7 s), all before their handshake timeout.
    let b = concurrent(100, 25, 100, 0);
    assert_eq!(b.accepted, 100);
    assert_eq!(b.refused, 0, "{b:?}");
    assert!(b.syn_dropped >= 75, "{b:?}");
    eprintln!("{b:?}");
}

#[test]
fn running_out_of_sockets_is_an_error_and_accept_recovers() {
    let l = Limits {
        sockets: 4,
        ..Limits::default()
    };
    let (c, s) = plain(l);
    let listener = TcpListener::bind(&s, 80, 2).expect("bind");
    let _other = TcpListener::bind(&s, 81, 2).expect("bind");
    assert_eq!(s.stats().live_sockets, 4);
    assert_eq!(
        TcpListener::bind(&s, 82, 2).map(|_| ()),
        Err(Error::NoSockets)
    );
    #[cfg(feature = "udp")]
    assert_eq!(UdpSocket::bind(&s, 53).map(|_| ()), Err(Error::NoSockets));
    // Two connections fill the pool's sockets; it cannot refill.
    let a = TcpStream::connect(&c, server_addr(80), None).expect("a");
    let b = TcpStream::connect(&c, server_addr(80), None).expect("b");
    let (sa, _) = listener.accept().expect("accept a");
    let (sb, _) = listener.accept().expect("accept b");
    assert!(s.stats().pool_starved > 0);
    assert_eq!(s.stats().live_sockets, 4);
    // A third gets no answer (its SYNs are dropped, not reset): its handshake times out. No
    // panic.
    assert_eq!(
        TcpStream::connect(&c, server_addr(80), None).map(|_| ()),
        Err(Error::ConnectionRefused)
    );
    assert!(s.stats().syn_dropped > 1, "{:?}", s.stats());
    // Closing frees sockets: the pool refills and accept works again.
    drop((a, b, sa, sb));
    s.run_until(10_000, || {
        s.stats().closing == 0 && s.stats().live_sockets == 4
    });
    let _d = TcpStream::connect(&c, server_addr(80), None).expect("d");
    listener.accept().expect("accept d");
}

#[cfg(feature = "udp")]
#[test]
fn udp_echo() {
    let (c, s) = plain(limits());
    let server = UdpSocket::bind(&s, 7).expect("bind");
    assert_eq!(UdpSocket::bind(&s, 7).map(|_| ()), Err(Error::AddrInUse));
    let mut client = UdpSocket::bind(&c, 0).expect("bind");
    client.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = vec![0; 2048];
    for len in [0, 1, 100, 1472] {
        let data = pattern(len, 3);
        assert_eq!(client.send_to(&data, server_addr(7)), Ok(len));
        let (n, from) = server.recv_from(&mut buf).expect("server recv");
        assert_eq!(from, client.local_addr());
        assert_eq!(&buf[..n], &data[..]);
        server.send_to(&buf[..n], from).expect("server send");
        let (n, from) = client.recv_from(&mut buf).expect("client recv");
        assert_eq!(from, server_addr(7));
        assert_eq!(&buf[..n], &data[..]);
    }
    assert_eq!(client.recv_from(&mut buf), Err(Error::TimedOut));
    assert_eq!(
        client.send_to(&vec![0; 20_000], server_addr(7)),
        Err(Error::TooLarge)
    );
}

/// Both sides close at once: the server's dropped stream goes to CLOSING (the client's FIN
/// arrives before the acknowledgement of the server's), with all its data acknowledged. It is
/// freed at once, as in TIME-WAIT, instead of holding its socket until its FIN is acknowledged
/// (QEMU's slirp left such closes for seconds, and the listener pool starved); the client still
/// reads the end of the stream.
#[test]
fn a_simultaneous_close_frees_the_closing_socket_at_once() {
    let (c, s) = plain(limits());
    let listener = TcpListener::bind(&s, 80, 2).expect("bind");
    let mut client = TcpStream::connect(&c, server_addr(80), None).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"hi").expect("write");
    let mut buf = [0; 8];
    assert_eq!(server.read(&mut buf), Ok(2));
    server.write_all(b"ok").expect("write");
    assert_eq!(client.read(&mut buf), Ok(2));
    // Everything acknowledged both ways.
    s.run_until(1000, || c.with_stack(|st| st.device().pending()) == 0);
    let live = s.stats().live_sockets;
    // The client's FIN goes out at once (the call polls); the server closes before its stack
    // polls, so its FIN cannot acknowledge the client's: CLOSING once the client's FIN arrives,
    // in the poll of the drop itself.
    client.shutdown(Shutdown::Write).expect("shutdown");
    drop(server);
    let stats = s.stats();
    assert_eq!(stats.closing_reaped, 1, "{stats:?}");
    assert_eq!(stats.closing, 0, "{stats:?}");
    assert_eq!(stats.live_sockets, live - 1, "{stats:?}");
    // The server's FIN (sent by that poll) still reaches the client.
    assert_eq!(client.read(&mut buf), Ok(0));
}

/// `write_last` queues a server's last bytes with its close, so one segment carries the data
/// and the FIN; `write_all` then `shutdown` sends them apart (the call that writes polls). A
/// peer that gets the FIN with the data does not close first (see `TcpStream::write_last`).
#[test]
fn write_last_sends_the_data_with_the_fin_in_one_segment() {
    use netdev::NetDevice;
    for last in [true, false] {
        let (c, s) = plain(limits());
        let listener = TcpListener::bind(&s, 80, 2).expect("bind");
        let mut client = TcpStream::connect(&c, server_addr(80), None).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        s.run_until(1000, || {
            c.with_stack(|st| st.device().pending()) == 0
                && s.with_stack(|st| st.device().pending()) == 0
        });
        let frames = || s.with_stack(|st| st.device().stats().tx_frames);
        let before = frames();
        if last {
            server.write_last(b"reply").expect("write_last");
        } else {
            server.write_all(b"reply").expect("write");
            server.shutdown(Shutdown::Write).expect("shutdown");
        }
        assert_eq!(frames() - before, if last { 1 } else { 2 }, "last: {last}");
        let mut buf = [0; 8];
        assert_eq!(client.read(&mut buf), Ok(5));
        assert_eq!(&buf[..5], b"reply");
        assert_eq!(client.read(&mut buf), Ok(0), "then the end of the stream");
        assert!(
            server.write(b"x").is_err(),
            "nothing more to write after the close"
        );
    }
}
