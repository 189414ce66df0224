//! The async socket paths (`accept_async`, `connect_async`, embedded-io-async's `Read` and
//! `Write`, UDP's `send_to_async` and `recv_from_async`) on a minimal single-threaded executor
//! written here, between two stacks on the virtual clock.
//!
//! The executor checks that no wake-up is lost: between rounds it steps the world (both stacks
//! poll, the clock moves), then polls the tasks that were woken, and also probes the tasks that
//! were not. A probe that makes progress although nothing woke the task (before or during the
//! probe) means the task could have slept for ever: the test fails.
mod common;

use common::*;
use embedded_io_async::{Read, Write};
#[cfg(feature = "udp")]
use net::UdpSocket;
use net::{Error, Shared, Shutdown, TcpListener, TcpStream};
use netdev::fake::Faults;
use std::cell::Cell;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Counts wake-ups.
#[derive(Default)]
struct Flag(AtomicU64);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A task's progress: the task bumps it after every operation that completed.
type Progress = Rc<Cell<u64>>;

struct Task<'a> {
    name: &'static str,
    future: Pin<Box<dyn Future<Output = ()> + 'a>>,
    flag: Arc<Flag>,
    waker: Waker,
    progress: Progress,
    done: bool,
    polls: u64,
    wakes: u64,
}

fn task<'a>(
    name: &'static str,
    make: impl FnOnce(Progress) -> Pin<Box<dyn Future<Output = ()> + 'a>>,
) -> Task<'a> {
    let flag = Arc::new(Flag::default());
    let progress = Progress::default();
    Task {
        name,
        future: make(progress.clone()),
        waker: Waker::from(flag.clone()),
        flag,
        progress,
        done: false,
        polls: 0,
        wakes: 0,
    }
}

/// Runs `tasks` to completion (at most `rounds` rounds), stepping the world between rounds.
/// Panics on a lost wake-up (see the file's docs). Returns the tasks (for their counters).
fn run<'a, D: Pending>(side: &Side<D>, mut tasks: Vec<Task<'a>>, rounds: u64) -> Vec<Task<'a>> {
    for round in 0..rounds {
        for t in tasks.iter_mut().filter(|t| !t.done) {
            let woken = t.flag.0.swap(0, Ordering::SeqCst) > 0;
            t.wakes += u64::from(woken);
            let before = t.progress.get();
            let r = t.future.as_mut().poll(&mut Context::from_waker(&t.waker));
            t.polls += 1;
            let woken_during = t.flag.0.load(Ordering::SeqCst) > 0;
            let progressed = r.is_ready() || t.progress.get() != before;
            assert!(
                round == 0 || woken || woken_during || !progressed,
                "lost wake-up: task {} made progress in round {round} though nothing woke it",
                t.name
            );
            t.done = r.is_ready();
        }
        if tasks.iter().all(|t| t.done) {
            return tasks;
        }
        side.step();
    }
    let pending: Vec<_> = tasks
        .iter()
        .filter(|t| !t.done)
        .map(|t| (t.name, t.progress.get(), t.polls, t.wakes))
        .collect();
    panic!("tasks {pending:?} not done after {rounds} rounds");
}

async fn read_exact<R: Read<Error = Error>>(r: &mut R, mut buf: &mut [u8], p: &Progress) {
    while !buf.is_empty() {
        let n = r.read(buf).await.expect("read");
        assert!(n > 0, "early end of stream");
        buf = &mut buf[n..];
        p.set(p.get() + 1);
    }
}

async fn write_all<W: Write<Error = Error>>(w: &mut W, mut buf: &[u8], p: &Progress) {
    while !buf.is_empty() {
        let n = w.write(buf).await.expect("write");
        buf = &buf[n..];
        p.set(p.get() + 1);
    }
}

/// An async echo of `data`: a server task echoing until the end of the stream, a client task
/// writing `chunk` bytes at a time and reading each chunk back.
fn async_echo<D: Pending>(client: &Side<D>, server: &Side<D>, data: &[u8], chunk: usize) {
    let listener = TcpListener::bind(server, 7, 2).expect("bind");
    let echoed = Rc::new(Cell::new(0usize));
    let back = Rc::new(std::cell::RefCell::new(Vec::new()));
    let srv = {
        let echoed = echoed.clone();
        let listener = &listener;
        task("server", move |p| {
            Box::pin(async move {
                let (mut conn, peer) = listener.accept_async().await.expect("accept");
                assert_eq!(*peer.ip(), CLIENT_IP);
                p.set(p.get() + 1);
                let mut buf = vec![0; 4096];
                loop {
                    let n = Read::read(&mut conn, &mut buf).await.expect("server read");
                    p.set(p.get() + 1);
                    if n == 0 {
                        break;
                    }
                    write_all(&mut conn, &buf[..n], &p).await;
                    echoed.set(echoed.get() + n);
                }
                conn.shutdown(Shutdown::Write).expect("shutdown");
            })
        })
    };
    let cli = {
        let back = back.clone();
        task("client", move |p| {
            Box::pin(async move {
                let mut c = TcpStream::connect_async(client, server_addr(7))
                    .await
                    .expect("connect");
                p.set(p.get() + 1);
                let mut buf = vec![0; chunk];
                for part in data.chunks(chunk) {
                    write_all(&mut c, part, &p).await;
                    Write::flush(&mut c).await.expect("flush");
                    read_exact(&mut c, &mut buf[..part.len()], &p).await;
                    back.borrow_mut().extend_from_slice(&buf[..part.len()]);
                }
                c.shutdown(Shutdown::Write).expect("shutdown");
                let n = Read::read(&mut c, &mut buf).await.expect("read the end");
                assert_eq!(n, 0, "the end of the stream");
            })
        })
    };
    let tasks = run(client, vec![srv, cli], 1_000_000);
    assert_eq!(echoed.get(), data.len());
    assert!(*back.borrow() == data, "the echo differs");
    for t in &tasks {
        // The tasks slept and were woken (not only probed).
        assert!(t.wakes > 0, "task {} never woken", t.name);
    }
}

#[test]
fn an_async_echo_of_256_kib_is_byte_exact_and_loses_no_wake_up() {
    let (c, s) = plain(limits());
    async_echo(&c, &s, &pattern(256 * 1024, 7), 32 * 1024);
    assert_eq!(s.stats().accepted, 1);
}

#[test]
fn an_async_echo_over_a_faulty_link_loses_no_wake_up() {
    let (c, s) = faulty(Faults::each(3), 9);
    async_echo(&c, &s, &pattern(64 * 1024, 8), 16 * 1024);
}

#[test]
fn accept_async_is_woken_by_the_poll_that_completes_the_handshake() {
    let (c, s) = plain(limits());
    let listener = TcpListener::bind(&s, 80, 1).expect("bind");
    let mut accepted = None;
    let t = task("accept", |_| {
        Box::pin(async {
            accepted = Some(listener.accept_async().await.expect("accept"));
        })
    });
    let mut tasks = vec![t];
    // Nothing to accept: pending, and no wake-up however long the world runs idle.
    let t = &mut tasks[0];
    let cx = &mut Context::from_waker(&t.waker);
    assert!(t.future.as_mut().poll(cx).is_pending());
    for _ in 0..10 {
        s.step();
    }
    assert_eq!(
        t.flag.0.load(Ordering::SeqCst),
        0,
        "woken with nothing to accept"
    );
    // A client connects (non-blocking): a poll that moves the handshake on wakes the task
    // (maybe before it can accept: a wake-up may be spurious), and it is woken until it can.
    let client = TcpStream::connect_start(&c, server_addr(80)).expect("connect");
    let mut steps = 0;
    loop {
        s.step();
        steps += 1;
        assert!(steps < 100, "never accepted");
        if t.flag.0.swap(0, Ordering::SeqCst) > 0 && t.future.as_mut().poll(cx).is_ready() {
            break;
        }
    }
    assert_eq!(client.try_connected(), Ok(()));
    drop(tasks);
    let (conn, peer) = accepted.expect("accepted");
    assert_eq!(peer, client.local_addr().expect("local"));
    drop(conn);
}

/// Data reaches the device around the would-block and the registration of the waker: the
/// read must not sleep on it. Both orders: data on the device before the read (the read does
/// not poll: it registers, and the next poll, the glue's poller's, takes the data and wakes
/// it), and after the registration (the same).
#[test]
fn data_arriving_around_the_registration_is_not_lost() {
    let (c, s) = plain(limits());
    let listener = TcpListener::bind(&s, 80, 1).expect("bind");
    let mut client = TcpStream::connect(&c, server_addr(80), None).expect("connect");
    let (mut conn, _) = listener.accept().expect("accept");
    let waker_flag = Arc::new(Flag::default());
    let waker = Waker::from(waker_flag.clone());
    let cx = &mut Context::from_waker(&waker);
    let mut buf = [0; 16];

    // 1. The server writes; its frame waits on the client's device, unpolled. The client's
    //    read tries (would block: the socket has nothing yet) and registers without polling;
    //    the next poll takes the frame and wakes it.
    assert_eq!(conn.try_write(b"one"), Ok(3));
    assert!(c.with_stack(|st| st.device().pending() > 0));
    {
        let mut read = std::pin::pin!(Read::read(&mut client, &mut buf));
        assert!(read.as_mut().poll(cx).is_pending());
        assert!(
            c.with_stack(|st| st.device().pending() > 0),
            "the read polled"
        );
        let now = c.now();
        c.with_stack(|st| st.poll(now));
        assert!(waker_flag.0.load(Ordering::SeqCst) > 0, "not woken");
        match read.as_mut().poll(cx) {
            Poll::Ready(Ok(3)) => {}
            other => panic!("the data on the device was not seen: {other:?}"),
        }
    }
    waker_flag.0.store(0, Ordering::SeqCst);
    assert_eq!(&buf[..3], b"one");
    settle(&c);

    // 2. The read registers first; then the data comes: the poll that takes it wakes the task.
    {
        let mut read = std::pin::pin!(Read::read(&mut client, &mut buf));
        assert!(read.as_mut().poll(cx).is_pending());
        assert_eq!(conn.try_write(b"two"), Ok(3));
        deliver(&c);
        assert_eq!(waker_flag.0.load(Ordering::SeqCst), 0);
        let now = c.now();
        c.with_stack(|st| st.poll(now));
        assert!(waker_flag.0.load(Ordering::SeqCst) > 0, "not woken");
        assert!(matches!(read.as_mut().poll(cx), Poll::Ready(Ok(3))));
    }
    assert_eq!(&buf[..3], b"two");
    settle(&c);

    // 3. The read registers, a poll takes data and wakes it, then more data comes in later
    //    polls (the waker was consumed, nobody is registered) before the task runs: it reads
    //    everything when it does.
    waker_flag.0.store(0, Ordering::SeqCst);
    {
        let mut read = std::pin::pin!(Read::read(&mut client, &mut buf));
        assert!(read.as_mut().poll(cx).is_pending());
        assert_eq!(conn.try_write(b"a"), Ok(1));
        deliver(&c);
        let now = c.now();
        c.with_stack(|st| st.poll(now));
        assert!(waker_flag.0.load(Ordering::SeqCst) > 0);
        assert_eq!(conn.try_write(b"b"), Ok(1));
        for _ in 0..50 {
            c.step();
        }
        match read.as_mut().poll(cx) {
            Poll::Ready(Ok(2)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(&buf[..2], b"ab");
}

/// Lets the ACKs go (the world steps until nothing is in flight and no timer is near).
fn settle<D: Pending>(c: &Side<D>) {
    for _ in 0..20 {
        c.step();
    }
}

/// Moves the clock and polls only the server's stack (side 1) until a frame waits on the
/// client's device (a small segment may wait for an ACK: Nagle).
fn deliver<D: Pending>(c: &Side<D>) {
    for _ in 0..1000 {
        let mut w = c.world.borrow_mut();
        if w.stacks[0].device().pending() {
            return;
        }
        w.now += 1_000_000;
        let now = w.now;
        w.stacks[1].poll(now);
    }
    panic!("nothing delivered");
}

#[test]
fn connect_async_to_nobody_fails_and_wakes_its_task() {
    let (c, s) = plain(limits());
    // No host answers ARP for this address: the handshake times out.
    let nobody = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 99), 80);
    let result = Rc::new(Cell::new(None));
    let t = {
        let result = result.clone();
        task("connect", move |_| {
            Box::pin(async move {
                result.set(Some(TcpStream::connect_async(&c, nobody).await.map(drop)));
            })
        })
    };
    run(&s, vec![t], 100_000);
    assert_eq!(result.get(), Some(Err(Error::ConnectionRefused)));
}

#[test]
fn connect_async_refused_and_accepted() {
    let (c, s) = plain(limits());
    let refused = Rc::new(Cell::new(None));
    let t = {
        let refused = refused.clone();
        let c = c.clone();
        task("refused", move |_| {
            Box::pin(async move {
                refused.set(Some(
                    TcpStream::connect_async(&c, server_addr(81))
                        .await
                        .map(drop),
                ));
            })
        })
    };
    run(&c, vec![t], 10_000);
    assert_eq!(refused.get(), Some(Err(Error::ConnectionRefused)));
    let _listener = TcpListener::bind(&s, 81, 1).expect("bind");
    let ok = Rc::new(Cell::new(false));
    let t = {
        let ok = ok.clone();
        let c = c.clone();
        task("connect", move |_| {
            Box::pin(async move {
                TcpStream::connect_async(&c, server_addr(81))
                    .await
                    .expect("connect");
                ok.set(true);
            })
        })
    };
    run(&c, vec![t], 10_000);
    assert!(ok.get());
}

#[cfg(feature = "udp")]
#[test]
fn udp_async_echo_and_a_full_send_queue() {
    let (c, s) = plain(limits());
    let server = UdpSocket::bind(&s, 9).expect("bind");
    let client = UdpSocket::bind(&c, 0).expect("bind");
    let n = limits().udp_packets;
    let srv = task("udp server", |p| {
        Box::pin(async {
            let p = p;
            let mut buf = [0; 64];
            // The client's queue and the one more go out in one burst, and the server's queue
            // holds `n`: the last one is dropped (UDP).
            for _ in 0..n {
                let (len, from) = server.recv_from_async(&mut buf).await.expect("recv");
                p.set(p.get() + 1);
                server
                    .send_to_async(&buf[..len], from)
                    .await
                    .expect("send back");
                p.set(p.get() + 1);
            }
        })
    });
    let cli = task("udp client", |p| {
        Box::pin(async {
            let p = p;
            // No ARP entry yet: the datagrams wait in the socket's queue until the server's
            // address is resolved; one more than the queue holds would-blocks, and the poll
            // that sends the queue wakes the task.
            for i in 0..=n {
                client
                    .send_to_async(&[i as u8; 10], server_addr(9))
                    .await
                    .expect("send");
                p.set(p.get() + 1);
            }
            let mut seen = vec![false; n + 1];
            let mut buf = [0; 64];
            for _ in 0..n {
                let (len, from) = client.recv_from_async(&mut buf).await.expect("recv");
                assert_eq!((len, from), (10, server_addr(9)));
                seen[buf[0] as usize] = true;
                p.set(p.get() + 1);
            }
            assert_eq!(seen.iter().filter(|&&s| s).count(), n, "a datagram missing");
        })
    });
    let tasks = run(&c, vec![srv, cli], 100_000);
    assert!(tasks.iter().all(|t| t.wakes > 0));
}
