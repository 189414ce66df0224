//! Netprobe: the network without threads (`scheduler = "none"`), where a blocking socket call
//! polls the stack itself and idles the CPU between polls until the NIC's interrupt or the
//! stack's next timer. A TCP echo on port 7 (or `port=N`), one connection at a time, for
//! `connections=N` connections (default: for ever); then it prints `netprobe: done N` and exits
//! 0. Prints `netprobe: ready` once it listens. A bad argument: usage, status 2.
#![no_std]
#![no_main]

use stardust::net::TcpListener;
use stardust::println;

#[stardust::main]
fn main() -> u8 {
    let (mut port, mut connections) = (7u16, u64::MAX);
    for arg in stardust::args() {
        let parsed = match arg.split_once('=') {
            Some(("port", v)) => v.parse().map(|p| port = p).is_ok(),
            Some(("connections", v)) => v.parse().map(|n| connections = n).is_ok(),
            _ => false,
        };
        if !parsed {
            println!("netprobe: bad argument {arg:?}; usage: netprobe [port=7] [connections=N]");
            return 2;
        }
    }
    let listener = match TcpListener::bind(port) {
        Ok(l) => l,
        Err(e) => {
            println!("netprobe: port {port}: {e}");
            return 1;
        }
    };
    println!("netprobe: ready");
    let mut served = 0;
    while served < connections {
        let Ok((mut stream, _peer)) = listener.accept() else {
            continue;
        };
        let mut buf = [0u8; 2048];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        served += 1;
    }
    println!("netprobe: done {served}");
    0
}
