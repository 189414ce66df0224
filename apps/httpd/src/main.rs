//! httpd: HTTP/1.1 on port 80, each connection on its own thread, the protocol by crate `http1`
//! (RFC 9112 parsing with bounds, keep-alive, pipelining, HEAD, 4xx for malformed requests,
//! idle and request timeouts).
//!
//! Arguments: `http1::Config::from_args`'s `key=value` (`port=80`, `size=N` for `GET /`,
//! `idle_timeout=5s`, ...), plus `stack=32K` (each connection thread's stack). Besides the
//! static site, `GET /stats` answers the server's counters, the heap in use and the network's
//! counters (`stardust::net::stats_text`: polls, interrupts, frames, ...; text, one `name value`
//! per line), for leak checks and profiles from outside. Prints `httpd: ready on port N`.
//! A bad argument prints why, status 2.
//!
//! In an image with a filesystem (profile `storage`: `filesystem = "sdfs"`), `GET /files/<path>`
//! (and `HEAD`) answers the file `<path>` of the disk (see `files.rs`): its bytes, streamed, with
//! a content type from its extension; 404 for a missing file, a directory, a `.` or `..`
//! segment, or no mounted filesystem. Without a filesystem the route is not compiled in (the
//! image is as before) and `/files/...` is 404 like any unknown path.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use http1::{Body, Config, Reply, Request, Site, StaticSite, Status, Timeouts};

stardust::if_filesystem! {
    {
        mod files;
        use files::FileSource as Source;

        /// A reply of the static site as one of this server.
        fn widen(reply: Reply) -> Reply<Source> {
            reply.into_source()
        }
    }
    else {
        use http1::NoSource as Source;

        /// A reply of the static site as one of this server (the same type here).
        fn widen(reply: Reply) -> Reply<Source> {
            reply
        }
        mod files {
            /// No filesystem: no `/files/` route.
            pub fn respond(_: &http1::Request<'_>) -> Option<http1::Reply> {
                None
            }
        }
    }
}
use stardust::net::{TcpListener, TcpStream};
use stardust::println;
use stardust::thread;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// The static site, and `/stats`.
struct Server {
    site: StaticSite,
}

impl Site for Server {
    type Source = Source;

    fn respond(&self, request: &Request<'_>) -> Reply<Source> {
        if request.path == "/stats" {
            let heap = stardust::heap_stats();
            let text = format!(
                "connections {}\nrequests {}\nerrors {}\nrefused {}\nheap_used {}\nheap_peak {}\n{}",
                CONNECTIONS.load(Ordering::Relaxed),
                REQUESTS.load(Ordering::Relaxed),
                ERRORS.load(Ordering::Relaxed),
                REFUSED.load(Ordering::Relaxed),
                heap.map_or(0, |h| h.used),
                heap.map_or(0, |h| h.peak),
                stardust::net::stats_text().unwrap_or_default(),
            );
            return widen(Reply::new(
                Status::Ok,
                "text/plain",
                Body::Owned(text.into_bytes()),
            ));
        }
        if let Some(reply) = files::respond(request) {
            return reply;
        }
        widen(self.site.respond(request))
    }
}

/// The connection's clock and read timeout, for the request timeout (a client that trickles
/// bytes is cut off) and the idle timeout.
struct StreamTimeouts;

impl Timeouts<TcpStream> for StreamTimeouts {
    fn now(&mut self) -> Duration {
        Duration::from_nanos(stardust::time::now_ns().unwrap_or(0))
    }

    fn set_read_timeout(&mut self, conn: &mut TcpStream, timeout: Duration) {
        conn.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
    }

    fn write_last(
        &mut self,
        conn: &mut TcpStream,
        bytes: &[u8],
    ) -> Result<(), stardust::net::Error> {
        // The reply and the FIN in one segment (see `TcpStream::write_last`).
        conn.write_last(bytes)
    }
}

#[stardust::main]
fn main() -> u8 {
    let mut stack = 32 * 1024;
    let mut args: Vec<&str> = Vec::new();
    for arg in stardust::args() {
        match arg.strip_prefix("stack=").map(|v| v.strip_suffix('K')) {
            Some(Some(k)) if k.parse::<usize>().is_ok_and(|k| k >= 16) => {
                stack = k.parse::<usize>().unwrap_or(32) * 1024;
            }
            Some(_) => {
                println!("httpd: {arg}: expected stack=NK with N >= 16");
                return 2;
            }
            None => args.push(arg),
        }
    }
    let config = match Config::from_args(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            println!("httpd: {e}");
            return 2;
        }
    };
    let server = Arc::new(Server {
        site: StaticSite::new(&config),
    });
    let listener = match TcpListener::bind(config.port) {
        Ok(l) => l,
        Err(e) => {
            // Ports are printed as u32: core's Display for u16 would be 0.2 KB more image.
            println!("httpd: port {}: {e}", u32::from(config.port));
            return 1;
        }
    };
    println!("httpd: ready on port {}", u32::from(config.port));
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                stardust::log::warn!("httpd: accept: {e}");
                thread::yield_now();
                continue;
            }
        };
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        // A client that never reads cannot hold a thread for ever.
        stream.set_write_timeout(Some(config.request_timeout));
        let (config, server) = (config.clone(), server.clone());
        let spawned = thread::Builder::new().stack_size(stack).spawn(move || {
            let outcome = http1::serve_with(&mut stream, &config, &*server, &mut StreamTimeouts);
            REQUESTS.fetch_add(outcome.stats.requests, Ordering::Relaxed);
            ERRORS.fetch_add(outcome.stats.errors(), Ordering::Relaxed);
            stardust::log::debug!("httpd: {peer}: {:?}", outcome.end);
        });
        if let Err(e) = spawned {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            // The address and port apart (the same text): SocketAddrV4's own Display is 0.6K.
            // The port as u32, as above.
            let (ip, port) = (peer.ip(), u32::from(peer.port()));
            stardust::log::warn!("httpd: {ip}:{port}: no thread ({e}); closed");
        }
    }
}
