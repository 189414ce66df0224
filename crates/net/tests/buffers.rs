//! Listeners with larger buffers than `Limits::tcp_buffer` (`Stack::tcp_listen_with`): their
//! share of the socket limit, the fallback to the default buffers, window scaling.
mod common;

use common::*;
use net::{Error, Limits, Shutdown, TcpListener, TcpStream};

const UNIT: usize = 16 * 1024;

fn small() -> Limits {
    Limits {
        sockets: 32,
        tcp_buffer: UNIT,
        ..Limits::default()
    }
}

#[test]
fn a_socket_with_k_times_the_buffers_counts_as_k_sockets_until_it_is_freed() {
    let (c, s) = plain(small());
    let listener = TcpListener::bind_with_buffer(&s, 9, 2, 4 * UNIT).expect("bind");
    // Two pool sockets of four shares each.
    assert_eq!(s.stats().live_sockets, 8);
    let client = TcpStream::connect(&c, server_addr(9), None).expect("connect");
    let (conn, _) = listener.accept().expect("accept");
    // The accepted connection keeps its share; the pool refilled.
    assert_eq!(s.stats().live_sockets, 12);
    drop((client, conn));
    s.run_until(10_000, || {
        s.stats().closing == 0 && s.stats().live_sockets == 8
    });
    drop(listener);
    assert_eq!(s.stats().live_sockets, 0);
    // Buffers (rounded up) larger than all the sockets' together are refused.
    assert_eq!(
        TcpListener::bind_with_buffer(&s, 9, 1, 32 * UNIT + 1).map(|_| ()),
        Err(Error::TooLarge)
    );
    // A size that is not a multiple of the unit is rounded up.
    let _l = TcpListener::bind_with_buffer(&s, 9, 1, UNIT + 1).expect("bind");
    assert_eq!(s.stats().live_sockets, 2);
}

#[test]
fn a_pool_socket_that_does_not_fit_gets_the_default_buffers() {
    let (c, s) = plain(Limits {
        sockets: 6,
        ..small()
    });
    let listener = TcpListener::bind_with_buffer(&s, 9, 2, 4 * UNIT).expect("bind");
    // 4 shares, then only 2 left: the second pool socket gets the default buffers.
    assert_eq!(s.stats().live_sockets, 5);
    // Both connections work.
    for _ in 0..2 {
        let mut client = TcpStream::connect(&c, server_addr(9), None).expect("connect");
        let (mut conn, _) = listener.accept().expect("accept");
        let data = pattern(100_000, 3);
        let mut got = Vec::new();
        let mut buf = vec![0; 8192];
        let mut sent = 0;
        while got.len() < data.len() {
            if sent < data.len() {
                sent += client.try_write(&data[sent..]).unwrap_or(0);
            }
            match conn.try_read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(Error::WouldBlock) => s.step(),
                Err(e) => panic!("read: {e}"),
            }
        }
        assert!(got == data);
        // Kept open, so the next connection finds less room.
        std::mem::forget((client, conn));
    }
    assert!(s.stats().live_sockets <= 6, "{:?}", s.stats());
}

/// Bytes the client could write to a server that reads nothing: its own transmit buffer and
/// the server's receive window.
fn unread_capacity(listener_buffer: Option<usize>) -> usize {
    let (c, s) = tso(small());
    let listener = match listener_buffer {
        Some(b) => TcpListener::bind_with_buffer(&s, 9, 1, b),
        None => TcpListener::bind(&s, 9, 1),
    }
    .expect("bind");
    let mut client = TcpStream::connect(&c, server_addr(9), None).expect("connect");
    let (mut conn, _) = listener.accept().expect("accept");
    let data = pattern(1 << 20, 5);
    let mut sent = 0;
    let mut idle = 0;
    while idle < 100 {
        match client.try_write(&data[sent..]) {
            Ok(n) => {
                sent += n;
                idle = 0;
            }
            Err(Error::WouldBlock) => idle += 1,
            Err(e) => panic!("write: {e}"),
        }
        c.step();
    }
    let measured = sent;
    // Every byte arrives, in order, once the server reads.
    let mut got = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    let mut closed = false;
    loop {
        if sent < data.len() {
            sent += client.try_write(&data[sent..]).unwrap_or(0);
        } else if !closed {
            client.shutdown(Shutdown::Write).expect("shutdown");
            closed = true;
        }
        match conn.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Error::WouldBlock) => s.step(),
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    measured
}

#[test]
fn a_listener_with_larger_buffers_advertises_a_scaled_window_beyond_64_kib() {
    // The client's transmit buffer is one unit in both cases; the server's receive window is
    // the rest.
    let default = unread_capacity(None);
    assert!(default <= 2 * UNIT, "{default}");
    let big = unread_capacity(Some(16 * UNIT));
    // 256 KiB of window: more than an unscaled window's 64 KiB could take.
    assert!(big > UNIT + 65_535, "{big}");
    assert!(big <= 17 * UNIT, "{big}");
}
