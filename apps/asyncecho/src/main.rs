//! Async echo: `apps/echo` for `scheduler = "async"`. TCP echo and UDP echo on one port
//! (default 7, RFC 862) and a TCP sink that reads and discards everything (default 9, RFC 863),
//! each connection a task of its own on the executor, beside the kernel's `net` task that polls
//! the stack. `cargo xtask run asyncecho --profile net --set scheduler=async --forward 7007:7`.
//!
//! Arguments (`key=value`): `port=7`, `sink=9` (0 turns a service off). Prints
//! `asyncecho: ready: ...` once it listens; logs each connection at debug level. A bad argument
//! prints the usage, status 2.
#![no_std]
#![no_main]

use core::future::Future;
use stardust::net::{AsyncRead, AsyncWrite, TcpListener, TcpStream, UdpSocket};
use stardust::println;
use stardust::task::{spawn, yield_now};

/// Bytes a connection's task moves per read.
const CHUNK: usize = 4096;

#[derive(Clone, Copy)]
struct Config {
    port: u16,
    sink: u16,
}

fn parse(args: impl Iterator<Item = &'static str>) -> Result<Config, &'static str> {
    let mut c = Config { port: 7, sink: 9 };
    for arg in args {
        let (key, value) = arg.split_once('=').ok_or(arg)?;
        match key {
            "port" => c.port = value.parse().map_err(|_| arg)?,
            "sink" => c.sink = value.parse().map_err(|_| arg)?,
            _ => return Err(arg),
        }
    }
    Ok(c)
}

#[stardust::main]
async fn main() -> u8 {
    let config = match parse(stardust::args()) {
        Ok(c) => c,
        Err(bad) => {
            println!("asyncecho: bad argument {bad:?}; usage: asyncecho [port=7] [sink=9]");
            return 2;
        }
    };
    let mut listeners = [None, None];
    for (slot, port) in listeners.iter_mut().zip([config.port, config.sink]) {
        if port != 0 {
            match TcpListener::bind(port) {
                Ok(l) => *slot = Some(l),
                Err(e) => {
                    println!("asyncecho: tcp port {port}: {e}");
                    return 1;
                }
            }
        }
    }
    if config.port != 0 {
        match UdpSocket::bind(config.port) {
            Ok(udp) => drop(spawn(udp_echo(udp))),
            Err(e) => {
                println!("asyncecho: udp port {}: {e}", config.port);
                return 1;
            }
        }
    }
    let [echo_listener, sink_listener] = listeners;
    if let Some(l) = sink_listener {
        drop(spawn(accept_loop(l, sink)));
    }
    println!(
        "asyncecho: ready: echo tcp/udp {}, sink tcp {}",
        config.port, config.sink
    );
    match echo_listener {
        Some(l) => accept_loop(l, echo).await,
        // Only the sink: it runs on; `main` waits for ever (no task wakes it).
        None => core::future::pending().await,
    }
}

/// Accepts for ever, one task per connection.
async fn accept_loop<F, Fut>(listener: TcpListener, serve: F) -> !
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept_async().await {
            Ok((stream, peer)) => {
                stardust::log::debug!("asyncecho: {peer} on port {}", listener.local_addr().port());
                drop(spawn(serve(stream)));
            }
            Err(e) => {
                stardust::log::warn!("asyncecho: accept: {e}");
                yield_now().await;
            }
        }
    }
}

async fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; CHUNK];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn sink(mut stream: TcpStream) {
    let mut buf = [0u8; CHUNK];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn udp_echo(socket: UdpSocket) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from_async(&mut buf).await {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to_async(&buf[..n], from).await {
                    stardust::log::debug!("asyncecho: udp to {from}: {e}");
                }
            }
            Err(e) => {
                stardust::log::debug!("asyncecho: udp: {e}");
                yield_now().await;
            }
        }
    }
}
