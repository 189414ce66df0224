use super::fake::{FakeXenStored, Fault};
use super::*;
use crate::mem::fake::FakePage;

type Page = FakePage<4096>;

fn pair(page: &Page) -> (XenStore<&Page>, FakeXenStored<&Page>) {
    (XenStore::new(page), FakeXenStored::new(page))
}

#[test]
fn header_round_trip_and_limits() {
    let h = Header {
        ty: 2,
        req_id: 7,
        tx_id: 3,
        len: 4096,
    };
    assert_eq!(Header::decode(&h.encode()), Ok(h));
    let big = Header { len: 4097, ..h };
    assert_eq!(Header::decode(&big.encode()), Err(Error::Oversized(4097)));
    let mut out = [0u8; 64];
    let n = encode(&mut out, MsgType::Write, 9, 0, &[b"a/b\0", b"value"]).expect("fits");
    assert_eq!(n, 16 + 9);
    assert_eq!(&out[..4], &11u32.to_le_bytes());
    assert_eq!(&out[16..n], b"a/b\0value");
    assert_eq!(
        encode(&mut out, MsgType::Read, 1, 0, &[&[0u8; 60]]),
        Err(Error::TooLong)
    );
}

#[test]
fn parse_garbage_never_panics() {
    let h = |ty, len| Header {
        ty,
        req_id: 1,
        tx_id: 0,
        len,
    };
    assert_eq!(parse_reply(h(99, 0), b""), Err(Error::UnknownType(99)));
    assert_eq!(
        parse_reply(h(16, 6), b"ENOENT"),
        Err(Error::Malformed("error name without NUL"))
    );
    assert_eq!(
        parse_reply(h(16, 7), b"ENOENT\0"),
        Err(Error::Store(XsError::NoEntry))
    );
    assert_eq!(
        parse_reply(h(16, 5), b"EWAT\0"),
        Err(Error::Store(XsError::Unknown))
    );
    assert!(parse_reply(h(2, 3), b"ab").is_err());
    assert!(parse_watch_event(b"no-token").is_err());
    assert_eq!(
        parse_watch_event(b"a/b\0tok\0"),
        Ok(WatchEvent {
            path: b"a/b",
            token: b"tok"
        })
    );
    // every byte string of a few bytes, as error payloads and watch events: no panic
    for a in 0u8..=255 {
        for b in [0u8, b'E', 255] {
            let p = [a, b];
            let _ = parse_reply(h(16, 2), &p);
            let _ = parse_watch_event(&p);
            let _ = directory_entries(&p).count();
        }
    }
    assert_eq!(parse_decimal(b"42"), Some(42));
    assert_eq!(parse_decimal(b""), None);
    assert_eq!(parse_decimal(b"4x"), None);
    assert_eq!(parse_decimal(b"99999999999"), None);
}

#[test]
fn error_names_match_xs_wire() {
    for (_, name) in xen_sys::XSD_ERRORS {
        let e = XsError::from_name(name.as_bytes());
        assert_ne!(e, XsError::Unknown, "{name}");
        assert_eq!(e.name(), *name);
    }
}

#[test]
fn read_write_directory() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("name", "guest-7");
    d.set("device/vif/0/state", "1");
    d.set("device/vbd/51712/state", "1");
    let mut buf = [0u8; 64];
    assert_eq!(
        xs.read(Tx(0), "name", &mut buf, &mut d),
        Ok(&b"guest-7"[..])
    );
    assert_eq!(
        xs.read(Tx(0), "missing", &mut buf, &mut d),
        Err(Error::Store(XsError::NoEntry))
    );
    xs.write(Tx(0), "data/x", b"42", &mut d).expect("write");
    assert_eq!(xs.read(Tx(0), "data/x", &mut buf, &mut d), Ok(&b"42"[..]));
    let list = xs
        .directory(Tx(0), "device", &mut buf, &mut d)
        .expect("dir");
    let names: std::vec::Vec<&[u8]> = directory_entries(list).collect();
    assert_eq!(names, [&b"vbd"[..], &b"vif"[..]]);
    assert_eq!(d.requests, 5);
    assert!(d.notifications >= 5);
}

#[test]
fn long_values_wrap_the_ring_many_times() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    let value: std::vec::Vec<u8> = (0..3000u32).map(|i| b'0' + (i % 10) as u8).collect();
    for round in 0..5 {
        xs.write(Tx(0), "big", &value, &mut d).expect("write");
        let mut buf = [0u8; 4096];
        let got = xs.read(Tx(0), "big", &mut buf, &mut d).expect("read");
        assert_eq!(got, &value[..], "round {round}");
    }
    // indices have gone round the 1024-byte rings many times
    assert!(page.read_u32(REQ.prod) > 10_000);
}

#[test]
fn buffer_too_small_keeps_the_stream_in_sync() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("long", "0123456789abcdef");
    let mut small = [0u8; 4];
    assert_eq!(
        xs.read(Tx(0), "long", &mut small, &mut d),
        Err(Error::BufferTooSmall(16))
    );
    let mut buf = [0u8; 32];
    assert_eq!(
        xs.read(Tx(0), "long", &mut buf, &mut d),
        Ok(&b"0123456789abcdef"[..])
    );
}

#[test]
fn watches_fire_on_registration_and_on_change() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("backend/state", "1");
    xs.watch("backend", "tok1", &mut d).expect("watch");
    let mut ev = [0u8; 64];
    let e = xs.next_event(&mut ev, &mut d).expect("registration event");
    assert_eq!((e.path, e.token), (&b"backend"[..], &b"tok1"[..]));
    // a change during another call is handed to on_event
    let mut seen = std::vec::Vec::new();
    let mut buf = [0u8; 8];
    xs.call(
        MsgType::Write,
        Tx(0),
        &[b"backend/state\0", b"4"],
        &mut buf,
        &mut d,
        |_| {},
    )
    .expect("write");
    xs.call(
        MsgType::Read,
        Tx(0),
        &[b"backend/state\0"],
        &mut buf,
        &mut d,
        |e| seen.push((e.path.to_vec(), e.token.to_vec())),
    )
    .expect("read");
    assert_eq!(seen, [(b"backend/state".to_vec(), b"tok1".to_vec())]);
}

#[test]
fn the_clients_watches_fire_during_calls_and_between_them() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("be/1/state", "4");
    d.set("be/2/state", "4");
    let a = xs.add_watch("be/1/state", &mut d).expect("watch 1");
    let b = xs.add_watch("be/2/state", &mut d).expect("watch 2");
    assert_ne!(a, b);
    // xenstored fires a new watch once; the event of b may still be in the ring
    xs.poll_events().expect("poll");
    assert!(xs.take_fired(a) && xs.take_fired(b));
    assert!(!xs.take_fired(a) && !xs.take_fired(b));
    // a change while nobody calls: picked up by poll_events, only for its watch
    d.change("be/2/state", "5");
    assert!(!xs.take_fired(b), "not before the ring is looked at");
    xs.poll_events().expect("poll");
    assert!(!xs.take_fired(a));
    assert!(xs.take_fired(b));
    // a change that arrives while a call waits for its reply is not lost either
    d.change("be/1/state", "6");
    let mut buf = [0u8; 8];
    assert_eq!(
        xs.read(Tx(0), "be/1/state", &mut buf, &mut d),
        Ok(&b"6"[..])
    );
    assert_eq!(xs.take_all_fired(), a.bit());
    // a removed node fires too; events with tokens that are not the client's are left alone
    xs.watch("be/2", "someone-else", &mut d)
        .expect("plain watch");
    d.remove("be/2/state");
    xs.poll_events().expect("poll");
    assert_eq!(xs.take_all_fired(), b.bit());
}

#[test]
fn poll_events_leaves_half_a_message_and_skips_a_huge_one() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("k", "v");
    let w = xs.add_watch("k", &mut d).expect("watch");
    xs.poll_events().expect("poll");
    xs.take_fired(w);
    // half an event in the ring: nothing happens until the rest arrives
    let payload = b"k\0stardust-watch-0\0";
    let h = Header {
        ty: MsgType::WatchEvent as u32,
        req_id: 0,
        tx_id: 0,
        len: payload.len() as u32,
    };
    let mut msg = h.encode().to_vec();
    msg.extend_from_slice(payload);
    RSP.produce(&&page, &msg[..10]).expect("room");
    xs.poll_events().expect("poll");
    assert!(!xs.take_fired(w));
    RSP.produce(&&page, &msg[10..]).expect("room");
    xs.poll_events().expect("poll");
    assert!(xs.take_fired(w));
    // a stray reply larger than the ring: discarded as it comes, and calls go on after it
    let big = Header {
        ty: MsgType::Read as u32,
        req_id: 77,
        tx_id: 0,
        len: 3000,
    };
    RSP.produce(&&page, &big.encode()).expect("room");
    RSP.produce(&&page, &[b'x'; 1000]).expect("room");
    xs.poll_events().expect("poll");
    RSP.produce(&&page, &[b'x'; 1000]).expect("room");
    xs.poll_events().expect("poll");
    RSP.produce(&&page, &[b'x'; 1000]).expect("room");
    let mut buf = [0u8; 8];
    assert_eq!(xs.read(Tx(0), "k", &mut buf, &mut d), Ok(&b"v"[..]));
    // garbage indices are an error, not a panic
    page.write_u32(RSP.prod, page.read_u32(RSP.cons).wrapping_add(5000));
    assert!(matches!(xs.poll_events(), Err(Error::Ring(_))));
}

#[test]
fn a_client_has_a_limited_number_of_watches() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    for i in 0..MAX_WATCHES {
        let id = xs.add_watch(&std::format!("n{i}"), &mut d).expect("room");
        assert_eq!(usize::from(id.0), i);
    }
    assert_eq!(xs.add_watch("one-more", &mut d), Err(Error::TooManyWatches));
}

#[test]
fn transactions() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    let tx = xs.transaction_start(&mut d).expect("start");
    assert_eq!(tx, Tx(1));
    xs.write(tx, "a", b"1", &mut d).expect("write");
    xs.transaction_end(tx, true, &mut d).expect("commit");
    let tx2 = xs.transaction_start(&mut d).expect("start");
    assert_eq!(tx2, Tx(2));
    d.fault = Some(Fault::Error("EAGAIN"));
    assert_eq!(
        xs.transaction_end(tx2, true, &mut d),
        Err(Error::Store(XsError::Again))
    );
}

/// A commit that sent `F` (abort) instead of `T` would fail here: the writes must show
/// outside the transaction after the commit, and only then.
#[test]
fn a_transaction_is_invisible_outside_until_it_commits() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("a", "0");
    let mut buf = [0u8; 16];
    let tx = xs.transaction_start(&mut d).expect("start");
    xs.write(tx, "a", b"1", &mut d).expect("write");
    xs.write(tx, "b", b"new", &mut d).expect("write");
    assert_eq!(xs.read(tx, "a", &mut buf, &mut d), Ok(&b"1"[..]), "inside");
    assert_eq!(
        xs.read(Tx(0), "a", &mut buf, &mut d),
        Ok(&b"0"[..]),
        "outside"
    );
    assert_eq!(
        xs.read(Tx(0), "b", &mut buf, &mut d),
        Err(Error::Store(XsError::NoEntry))
    );
    assert_eq!(d.get("a"), Some(&b"0"[..]));
    xs.transaction_end(tx, true, &mut d).expect("commit");
    assert_eq!(xs.read(Tx(0), "a", &mut buf, &mut d), Ok(&b"1"[..]));
    assert_eq!(xs.read(Tx(0), "b", &mut buf, &mut d), Ok(&b"new"[..]));
    assert_eq!(d.open_transactions(), 0);
    // The transaction is over: its id is unknown now.
    assert_eq!(
        xs.read(tx, "a", &mut buf, &mut d),
        Err(Error::Store(XsError::NoEntry))
    );
    assert_eq!(
        xs.transaction_end(tx, true, &mut d),
        Err(Error::Store(XsError::NoEntry))
    );
}

#[test]
fn an_aborted_transaction_leaves_nothing_behind() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("a", "0");
    let tx = xs.transaction_start(&mut d).expect("start");
    xs.write(tx, "a", b"1", &mut d).expect("write");
    xs.write(tx, "b", b"new", &mut d).expect("write");
    xs.transaction_end(tx, false, &mut d).expect("abort");
    let mut buf = [0u8; 16];
    assert_eq!(xs.read(Tx(0), "a", &mut buf, &mut d), Ok(&b"0"[..]));
    assert_eq!(
        xs.read(Tx(0), "b", &mut buf, &mut d),
        Err(Error::Store(XsError::NoEntry))
    );
    assert_eq!(d.open_transactions(), 0);
}

#[test]
fn a_conflicting_commit_is_eagain_and_a_retry_commits() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("counter", "1");
    let mut buf = [0u8; 16];
    let mut attempts = 0;
    loop {
        attempts += 1;
        let tx = xs.transaction_start(&mut d).expect("start");
        let v = xs.read(tx, "counter", &mut buf, &mut d).expect("read");
        let next = parse_decimal(v).expect("a number") + 1;
        if attempts == 1 {
            // Another domain changes the node meanwhile.
            d.set("counter", "10");
        }
        xs.write(tx, "counter", next.to_string().as_bytes(), &mut d)
            .expect("write");
        match xs.transaction_end(tx, true, &mut d) {
            Ok(()) => break,
            Err(Error::Store(XsError::Again)) => {
                // Discarded: the other domain's value stands.
                assert_eq!(d.get("counter"), Some(&b"10"[..]));
            }
            Err(e) => panic!("commit: {e}"),
        }
    }
    assert_eq!(attempts, 2);
    assert_eq!(d.get("counter"), Some(&b"11"[..]));
    // A transaction that touched nothing another domain changed commits.
    let tx = xs.transaction_start(&mut d).expect("start");
    xs.write(tx, "other", b"x", &mut d).expect("write");
    d.set("unrelated", "y");
    xs.transaction_end(tx, true, &mut d).expect("commit");
    assert_eq!(d.get("other"), Some(&b"x"[..]));
}

#[test]
fn watches_fire_when_a_transaction_commits_not_before() {
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    xs.watch("dev", "t", &mut d).expect("watch");
    let mut ev = [0u8; 64];
    xs.next_event(&mut ev, &mut d).expect("registration event");
    let tx = xs.transaction_start(&mut d).expect("start");
    xs.write(tx, "dev/state", b"4", &mut d).expect("write");
    let mut seen = 0;
    let mut buf = [0u8; 8];
    xs.call(
        MsgType::Read,
        tx,
        &[b"dev/state\0"],
        &mut buf,
        &mut d,
        |_| seen += 1,
    )
    .expect("read");
    assert_eq!(seen, 0, "no event for a write not yet committed");
    xs.transaction_end(tx, true, &mut d).expect("commit");
    let e = xs.next_event(&mut ev, &mut d).expect("event on commit");
    assert_eq!((e.path, e.token), (&b"dev/state"[..], &b"t"[..]));
}

#[test]
fn faulty_replies_are_errors() {
    let cases = [
        (Fault::Oversized, Error::Oversized(5000)),
        (Fault::UnknownType, Error::UnknownType(99)),
        (
            Fault::ErrorWithoutNul,
            Error::Malformed("error name without NUL"),
        ),
        (Fault::Truncated, Error::TimedOut),
        (Fault::Error("EACCES"), Error::Store(XsError::Access)),
    ];
    for (fault, want) in cases {
        let page = Page::default();
        let (mut xs, mut d) = pair(&page);
        d.set("k", "some value");
        d.fault = Some(fault);
        let mut buf = [0u8; 64];
        assert_eq!(
            xs.read(Tx(0), "k", &mut buf, &mut d),
            Err(want),
            "{fault:?}"
        );
    }
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("k", "v");
    d.fault = Some(Fault::WrongId);
    let mut buf = [0u8; 64];
    assert_eq!(
        xs.read(Tx(0), "k", &mut buf, &mut d),
        Err(Error::Unexpected {
            expected: 1,
            got: 1001
        })
    );
    let page = Page::default();
    let (mut xs, mut d) = pair(&page);
    d.set("k", "v");
    d.fault = Some(Fault::CorruptIndex);
    assert!(matches!(
        xs.read(Tx(0), "k", &mut buf, &mut d),
        Err(Error::Ring(_))
    ));
}
