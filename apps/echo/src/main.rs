//! Echo: TCP echo and UDP echo on one port (default 7, RFC 862), and a TCP sink that reads and
//! discards everything (default 9, RFC 863), each connection on its own thread, and a TCP source
//! that sends zeros for ever to whoever connects (default 19, the port of chargen, RFC 864; zeros
//! like the Linux reference's `/dev/zero`), for guest-to-client bulk measurements.
//!
//! Arguments (`key=value`): `port=7`, `sink=9`, `source=19` (0 turns a service off),
//! `stack=32K` (each connection thread's stack), `buffer=256K` (each sink and source
//! connection's TCP receive and transmit buffers; `0`: the profile's `net_tcp_buffer`). Prints
//! `echo: ready` once it listens; logs each connection at debug level. A bad argument prints the
//! usage, status 2.
//!
//! The sink and the source are bulk streams: TCP moves at most one window per round trip, and
//! the window is the socket's buffer, so theirs are larger than the profile's 64 KiB (256 KiB,
//! with window scaling), with two listening sockets each
//! (`TcpListener::bind_with_buffer`: a 256 KiB socket counts as four against `net_sockets`),
//! and they move 64 KiB per call (each call polls the stack, and what one poll sends goes to
//! the NIC as one TSO frame).
#![no_std]
#![no_main]

extern crate alloc;

use stardust::net::{TcpListener, TcpStream, UdpSocket};
use stardust::println;
use stardust::thread;

/// Bytes a connection's thread moves per call: each socket call also polls the stack, so fewer
/// and larger calls leave more of the CPU to the frames (16 KiB: bulk streams ~10% faster
/// than 4 KiB under TCG). On the heap: the threads' stacks are 32 KiB.
const CHUNK: usize = 16 * 1024;

/// Bytes the sink and the source move per call: one TSO frame's worth.
const BULK_CHUNK: usize = 64 * 1024;

/// Listening sockets of the sink and the source (each counts as several: `buffer`).
const BULK_BACKLOG: usize = 2;

#[derive(Clone, Copy)]
struct Config {
    port: u16,
    sink: u16,
    source: u16,
    stack: usize,
    buffer: usize,
}

fn parse(args: impl Iterator<Item = &'static str>) -> Result<Config, &'static str> {
    let mut c = Config {
        port: 7,
        sink: 9,
        source: 19,
        stack: 32 * 1024,
        buffer: 256 * 1024,
    };
    for arg in args {
        let (key, value) = arg.split_once('=').ok_or(arg)?;
        match key {
            "port" => c.port = value.parse().map_err(|_| arg)?,
            "sink" => c.sink = value.parse().map_err(|_| arg)?,
            "source" => c.source = value.parse().map_err(|_| arg)?,
            "stack" => c.stack = kib(value).filter(|&n| n > 0).ok_or(arg)?,
            "buffer" => c.buffer = kib(value).ok_or(arg)?,
            _ => return Err(arg),
        }
    }
    Ok(c)
}

/// `N` (0 only) or `NK`, in bytes.
fn kib(value: &str) -> Option<usize> {
    if value == "0" {
        return Some(0);
    }
    value
        .strip_suffix('K')?
        .parse::<usize>()
        .ok()?
        .checked_mul(1024)
}

#[stardust::main]
fn main() -> u8 {
    let config = match parse(stardust::args()) {
        Ok(c) => c,
        Err(bad) => {
            println!(
                "echo: bad argument {bad:?}; usage: echo [port=7] [sink=9] [source=19] [stack=32K] \
                 [buffer=256K]"
            );
            return 2;
        }
    };
    if config.port != 0 {
        let udp = match UdpSocket::bind(config.port) {
            Ok(s) => s,
            Err(e) => {
                println!("echo: udp port {}: {e}", config.port);
                return 1;
            }
        };
        thread::spawn(move || udp_echo(udp));
    }
    for (port, serve) in [
        (config.sink, sink as fn(TcpStream)),
        (config.source, source as fn(TcpStream)),
    ] {
        if port != 0 {
            let listener = match config.buffer {
                0 => TcpListener::bind(port),
                b => TcpListener::bind_with_buffer(port, BULK_BACKLOG, b),
            };
            match listener {
                Ok(l) => {
                    thread::spawn(move || accept_loop(l, serve, config.stack));
                }
                Err(e) => {
                    println!("echo: tcp port {port}: {e}");
                    return 1;
                }
            }
        }
    }
    if config.port == 0 {
        println!("echo: ready");
        loop {
            thread::sleep(core::time::Duration::from_secs(3600));
        }
    }
    match TcpListener::bind(config.port) {
        Ok(l) => {
            println!(
                "echo: ready: echo tcp/udp {}, sink tcp {}, source tcp {}",
                config.port, config.sink, config.source
            );
            accept_loop(l, echo, config.stack)
        }
        Err(e) => {
            println!("echo: tcp port {}: {e}", config.port);
            1
        }
    }
}

/// Accepts for ever, one thread per connection. Out of threads, a connection is closed at once.
fn accept_loop(listener: TcpListener, serve: fn(TcpStream), stack: usize) -> ! {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stardust::log::debug!("echo: {peer} on port {}", listener.local_addr().port());
                if let Err(e) = thread::Builder::new()
                    .stack_size(stack)
                    .spawn(move || serve(stream))
                {
                    stardust::log::warn!("echo: {peer}: no thread ({e}); closed");
                }
            }
            Err(e) => {
                stardust::log::warn!("echo: accept: {e}");
                thread::yield_now();
            }
        }
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = alloc::vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn sink(mut stream: TcpStream) {
    let mut buf = alloc::vec![0u8; BULK_CHUNK];
    let mut total = 0u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    report("sink", total);
}

fn source(mut stream: TcpStream) {
    let buf = alloc::vec![0u8; BULK_CHUNK];
    let mut total = 0u64;
    while stream.write_all(&buf).is_ok() {
        total += BULK_CHUNK as u64;
    }
    report("source", total);
}

/// After a bulk stream: its bytes and the network's counters, on one console line.
fn report(what: &str, bytes: u64) {
    let text = stardust::net::stats_text().unwrap_or_default();
    println!(
        "echo: {what} stream of {bytes} bytes done; {}",
        text.trim_end().replace('\n', ", ")
    );
}

fn udp_echo(socket: UdpSocket) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = socket.send_to(&buf[..n], from);
            }
            Err(e) => stardust::log::debug!("echo: udp: {e}"),
        }
    }
}
