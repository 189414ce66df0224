//! kvstore: a key-value server on port 6379 that speaks the Redis protocol (RESP2), so that
//! `redis-cli` and `redis-benchmark` work against it unchanged. The protocol is crate `resp`,
//! the commands crate `kv` (see its docs for the list and the replies); each connection has its
//! own thread, and all share one store behind a mutex.
//!
//! **Persistent** in images with a filesystem (profile `storage`, its own; `disk.rs`): the
//! store is an append-only log at `/kvstore/aof` on the disk (`kv::persist`: recovered at boot,
//! compacted as it grows), and **a reply is sent only once everything it depends on is
//! durable**: each batch's records are logged into a pending buffer under the store's lock (no
//! filesystem call), and its replies wait until a sync covers the log's sequence number at
//! which the batch ran (reads included), with group commit (one thread appends the whole buffer
//! and syncs for all that wait meanwhile). A write that cannot be logged (a
//! full disk) is undone and answered `-MISCONF Errors writing to the AOF file: No space left on
//! device`; reads keep working. Without a disk or with a refused one it stops (status 3). **In
//! memory** in images without a filesystem (profile `net`; `memory.rs`): lost when the guest
//! stops.
//!
//! Pipelining: each read is parsed for every whole request it completes, the requests run in
//! order under one lock, and their replies go out in one write (after the durability wait). A request that is not whole
//! yet waits for the next read (at most `kv_max_frame` bytes of it are kept). A protocol error
//! (a malformed frame, or a request over `kv_max_frame`) is answered with Redis's error, after
//! the replies of the requests before it, and the connection is closed, as Redis does.
//!
//! Bounds are profile settings: `kv_max_keys` (over it, a write that adds a key fails with
//! `ERR max keys reached (kv_max_keys = N)`) and `kv_max_frame` (bytes in one request).
//! Arguments (`key=value`): `port=6379`, `stack=64K` (each connection thread's stack: a write goes down through the filesystem and the disk driver on it). Prints
//! `kvstore: ready on port N` once it listens. A bad argument prints why, status 2.
#![no_std]
#![no_main]

extern crate alloc;

stardust::if_filesystem! {
    { mod disk; use disk as store; }
    else { mod memory; use memory as store; }
}

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use kv::Session;
use resp::{Limits, Parser, Request, Status};
use stardust::net::{TcpListener, TcpStream};
use stardust::println;
use stardust::settings::{KV_MAX_FRAME, KV_MAX_KEYS};
use stardust::thread;

/// Bytes asked of the socket per read (and the least room kept free in the input buffer).
const READ_CHUNK: usize = 16 * 1024;
/// The most arguments in one request: as many as `kv_max_frame` bytes can hold (the smallest
/// argument, `$0\r\n\r\n`, takes 6), so only the frame's size bounds a request.
const MAX_ARGS: usize = KV_MAX_FRAME / 6;
/// Keys the expiry sweeper removes per round, and how often it runs.
const SWEEP_BUDGET: usize = 1000;
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// A client that does not read its replies for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

type Store = Arc<store::Store>;

/// Unix milliseconds (expiry times are absolute, so that a log replayed after a restart keeps
/// them); the monotonic clock where there is no wall clock.
fn now_ms() -> u64 {
    stardust::time::wall_clock_ns()
        .or_else(stardust::time::now_ns)
        .unwrap_or(0)
        / 1_000_000
}

struct Config {
    port: u16,
    stack: usize,
}

fn parse_args() -> Result<Config, &'static str> {
    let mut c = Config {
        port: 6379,
        stack: 64 * 1024,
    };
    for arg in stardust::args() {
        let (key, value) = arg.split_once('=').ok_or(arg)?;
        match key {
            "port" => c.port = value.parse().map_err(|_| arg)?,
            "stack" => {
                let k: usize = value
                    .strip_suffix('K')
                    .and_then(|k| k.parse().ok())
                    .filter(|k| *k >= 16)
                    .ok_or(arg)?;
                c.stack = k * 1024;
            }
            _ => return Err(arg),
        }
    }
    Ok(c)
}

#[stardust::main]
fn main() -> u8 {
    let config = match parse_args() {
        Ok(c) => c,
        Err(bad) => {
            // `{bad}` in quotes, not `{bad:?}`: Debug formatting of a str costs 3.5 KB of image.
            println!("kvstore: bad argument \"{bad}\"; usage: kvstore [port=6379] [stack=64K]");
            return 2;
        }
    };
    let store: Store = match store::Store::open(now_ms()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            println!("kvstore: cannot open the store: {e}");
            return 3;
        }
    };
    let listener = match TcpListener::bind(config.port) {
        Ok(l) => l,
        Err(e) => {
            println!("kvstore: port {}: {e}", config.port);
            return 1;
        }
    };
    let sweeper = store.clone();
    if let Err(e) = thread::Builder::new()
        .stack_size(16 * 1024)
        .spawn(move || sweep(sweeper))
    {
        println!("kvstore: no thread for the expiry sweep: {e}");
        return 1;
    }
    println!(
        "kvstore: ready on port {} ({}; kv_max_keys {KV_MAX_KEYS}, kv_max_frame {KV_MAX_FRAME})",
        config.port,
        store::MODE
    );
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                stardust::log::warn!("kvstore: accept: {e}");
                thread::yield_now();
                continue;
            }
        };
        let id = CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1;
        stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let store = store.clone();
        let spawned = thread::Builder::new()
            .stack_size(config.stack)
            .spawn(move || serve(stream, &store, id));
        if let Err(e) = spawned {
            stardust::log::warn!("kvstore: {peer}: no thread ({e}); closed");
        }
    }
}

/// Removes expired keys that no command touches.
fn sweep(store: Store) {
    loop {
        thread::sleep(SWEEP_EVERY);
        store::sweep(&mut store.lock(), now_ms(), SWEEP_BUDGET);
    }
}

/// One connection: read, run every whole request, write the replies, until the client goes,
/// sends QUIT, or breaks the protocol.
fn serve(mut stream: TcpStream, store: &Store, id: u64) {
    let parser = Parser::new(Limits::for_request(KV_MAX_FRAME, MAX_ARGS));
    let mut session = Session { name: None, id };
    // `input[..filled]` holds what was read and not yet parsed. The buffer is zeroed only when
    // it grows (a request bigger than a read), not at every read.
    let mut input: Vec<u8> = alloc::vec![0; READ_CHUNK];
    let mut filled = 0;
    let mut output: Vec<u8> = Vec::new();
    let mut request = Request::new();
    loop {
        if input.len() - filled < READ_CHUNK / 4 {
            input.resize(filled + READ_CHUNK, 0);
        }
        let n = match stream.read(&mut input[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let mut pos = 0;
        let mut close = false;
        let target = {
            let mut engine = store.lock();
            let now = now_ms();
            loop {
                match parser.parse(&input[pos..filled], &mut request) {
                    Ok(Status::Complete(used)) => {
                        pos += used;
                        let effect =
                            store::execute(&mut engine, &request, &mut session, now, &mut output);
                        if effect.close {
                            close = true;
                            break;
                        }
                    }
                    Ok(Status::Empty(used)) => pos += used,
                    Ok(Status::Incomplete) => break,
                    Err(e) => {
                        resp::error_fmt(&mut output, format_args!("{}", e.message()));
                        stardust::log::info!("kvstore: connection {id}: {e}; closed");
                        close = true;
                        break;
                    }
                }
            }
            store.finish(&mut engine, now)
        };
        // Nothing is answered before what it depends on is durable. A failed sync (the disk
        // failed or was detached) answers none of the batch: one error says why, and the
        // connection closes (the batch's replies are never sent; the store refuses writes
        // until restart, and every later batch that depends on them ends the same way).
        if !output.is_empty() && !store.durable(target) {
            output.clear();
            resp::error(
                &mut output,
                "IOERR the disk failed: nothing more is made durable; restart the server",
            );
            let _ = stream.write_all(&output);
            return;
        }
        input.copy_within(pos..filled, 0);
        filled -= pos;
        if !output.is_empty() {
            if stream.write_all(&output).is_err() {
                return;
            }
            output.clear();
        }
        if close {
            return;
        }
        // A big request's buffer is given back once it is done.
        if filled == 0 && input.len() > 4 * READ_CHUNK {
            input = alloc::vec![0; READ_CHUNK];
        }
        if output.capacity() > 4 * READ_CHUNK {
            output = Vec::new();
        }
    }
}
