//! 10,000 short connections, the server closing first (so its side enters TIME-WAIT): the
//! socket set stays bounded and the heap returns to where it was after the first ones. Alone
//! in its binary: the counting allocator counts the whole process.
mod common;

use common::*;
use net::{Error, TcpListener, TcpStream};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A step of at most 1 ms of virtual time, so that TIME-WAIT (10 s) lasts thousands of
/// connections unless the stack frees it.
fn step<D: Pending>(side: &Side<D>) {
    let now = side.now();
    side.world.borrow_mut().step(Some(now + 1_000_000));
}

#[test]
fn ten_thousand_short_connections_leave_no_sockets_and_no_heap_behind() {
    let (c, s) = plain(limits());
    let listener = TcpListener::bind(&s, 80, 8).expect("bind");
    let mut max_live = 0;
    let mut max_slots = 0;
    let mut baseline = 0;
    const N: usize = 10_000;
    const WARM: usize = 100;
    for i in 0..N {
        if i == WARM {
            baseline = LIVE.load(Ordering::Relaxed);
        }
        let mut client = TcpStream::connect_start(&c, server_addr(80)).expect("connect");
        let mut server = None;
        let mut got = Vec::new();
        let mut buf = [0; 64];
        let mut sent = false;
        let mut done = false;
        for _ in 0..1000 {
            if server.is_none() {
                match listener.try_accept() {
                    Ok((conn, _)) => server = Some(conn),
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            if !sent && client.try_connected().is_ok() {
                client.try_write(b"GET").expect("room");
                sent = true;
            }
            if let Some(mut conn) = server.take() {
                match conn.try_read(&mut buf) {
                    Ok(3) => {
                        conn.try_write(b"200 OK").expect("room");
                        drop(conn); // the server closes first: FIN-WAIT, then TIME-WAIT
                    }
                    Err(Error::WouldBlock) => server = Some(conn),
                    r => panic!("{r:?}"),
                }
            }
            loop {
                match client.try_read(&mut buf) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("client read: {e}"),
                }
            }
            if done {
                break;
            }
            step(&c);
        }
        assert!(done && got == b"200 OK", "connection {i}: {got:?}");
        drop(client);
        // Let the last ACKs go through.
        for _ in 0..3 {
            step(&c);
        }
        let st = s.stats();
        max_live = max_live.max(st.live_sockets);
        max_slots = max_slots.max(st.set_slots);
    }
    for _ in 0..10 {
        step(&c);
    }
    let st = s.stats();
    // The pool (8) and at most a few closing: never thousands.
    assert!(max_live <= 8 + 8 + 2, "{max_live}");
    assert!(max_slots <= 8 + 8 + 2, "{max_slots}");
    assert!(st.time_wait_reaped >= N as u64 - 10, "{st:?}");
    assert_eq!(st.accepted, N as u64);
    assert_eq!(st.closing, 0, "{st:?}");
    let cs = c.stats();
    assert_eq!(
        cs.live_sockets, 0,
        "the client's sockets are all gone: {cs:?}"
    );
    let end = LIVE.load(Ordering::Relaxed);
    assert!(
        end <= baseline,
        "heap grew by {} bytes over {} connections",
        end - baseline,
        N - WARM
    );
}
