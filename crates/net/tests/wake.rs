//! Who a poll wakes, and what a socket call polls: a frame for one connection wakes only the
//! call waiting on that connection (not every waiter, as one global generation did); a read
//! served from the socket's buffer polls nothing; a write sends at once without a full poll.
mod common;

use common::*;
use net::{TcpListener, TcpStream};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

#[derive(Default)]
struct Flag(AtomicU64);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type Server = TcpStream<Side<netdev::fake::FakeDevice>>;
type Client = TcpStream<Side<netdev::fake::FakeDevice>>;

fn connections(n: usize) -> (Side<netdev::fake::FakeDevice>, Vec<Client>, Vec<Server>) {
    let (c, s) = plain(limits());
    let listener = TcpListener::bind(&s, 80, 16).expect("bind");
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..n {
        clients.push(TcpStream::connect(&c, server_addr(80), None).expect("connect"));
        servers.push(listener.accept().expect("accept").0);
    }
    (s, clients, servers)
}

fn waiting(side: &Side<netdev::fake::FakeDevice>) -> usize {
    side.world.borrow().stacks[side.index].waiting()
}

#[test]
fn a_frame_for_one_connection_wakes_only_the_task_reading_it() {
    let (s, mut clients, mut servers) = connections(8);
    let flags: Vec<Arc<Flag>> = (0..servers.len()).map(|_| Arc::default()).collect();
    let mut bufs = vec![[0u8; 16]; servers.len()];
    let mut reads: Vec<_> = servers
        .iter_mut()
        .zip(bufs.iter_mut())
        .map(|(srv, buf)| Box::pin(embedded_io_async::Read::read(srv, buf)))
        .collect();
    for (read, flag) in reads.iter_mut().zip(&flags) {
        let waker = Waker::from(flag.clone());
        assert!(
            read.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    assert_eq!(waiting(&s), 8);

    clients[3].write_all(b"ping").expect("write");
    // The frame is on the server's device: one poll of both stacks takes it.
    s.world.borrow_mut().step(None);

    let woken: Vec<u64> = flags.iter().map(|f| f.0.load(Ordering::SeqCst)).collect();
    assert_eq!(
        woken,
        [0, 0, 0, 1, 0, 0, 0, 0],
        "only the reader of #3 is woken"
    );
    assert_eq!(waiting(&s), 7);
    let waker = Waker::from(flags[3].clone());
    assert!(matches!(
        reads[3].as_mut().poll(&mut Context::from_waker(&waker)),
        Poll::Ready(Ok(4))
    ));
    // The others still wait, and are woken in their turn.
    clients[6].write_all(b"pong!").expect("write");
    s.world.borrow_mut().step(None);
    let woken: Vec<u64> = flags.iter().map(|f| f.0.load(Ordering::SeqCst)).collect();
    assert_eq!(woken, [0, 0, 0, 1, 0, 0, 1, 0]);
}

#[test]
fn a_closed_connection_wakes_its_reader_and_a_dropped_stream_forgets_its_waiter() {
    let (s, mut clients, mut servers) = connections(2);
    let flag = Arc::<Flag>::default();
    let waker = Waker::from(flag.clone());
    let mut buf = [0u8; 8];
    {
        let mut read = pin!(embedded_io_async::Read::read(&mut servers[0], &mut buf));
        assert!(
            read.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        // The peer closes: the state changes, the reader is woken and reads the end.
        drop(clients.remove(0));
        for _ in 0..4 {
            s.world.borrow_mut().step(None);
        }
        assert_eq!(flag.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            read.as_mut().poll(&mut Context::from_waker(&waker)),
            Poll::Ready(Ok(0))
        ));
    }
    // A task that stopped waiting on a stream it then dropped leaves nothing behind.
    {
        let mut read = pin!(embedded_io_async::Read::read(&mut servers[1], &mut buf));
        assert!(
            read.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    assert_eq!(waiting(&s), 1);
    servers.remove(1);
    assert_eq!(waiting(&s), 0);
}

#[test]
fn a_read_from_the_buffer_polls_nothing_and_a_write_leaves_at_once() {
    let (s, mut clients, mut servers) = connections(1);
    let c = clients[0].state();
    assert_eq!(c, net::smoltcp::socket::tcp::State::Established);
    clients[0].write_all(b"hello").expect("write");
    s.world.borrow_mut().step(None);
    let polls = |side: &Side<_>| side.world.borrow().stacks[side.index].stats().polls;
    let before = polls(&s);
    let mut buf = [0u8; 16];
    assert_eq!(servers[0].read(&mut buf), Ok(5));
    assert_eq!(polls(&s), before, "the data was in the socket's buffer");
    assert_eq!(servers[0].write(b"world"), Ok(5));
    assert_eq!(polls(&s), before, "a write polls the egress only");
    // The reply is on the client's device already.
    assert!(s.world.borrow().stacks[0].device().pending() > 0);
    assert_eq!(clients[0].read(&mut buf), Ok(5));
    assert_eq!(&buf[..5], b"world");
}
