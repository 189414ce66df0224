//! Seeded random-input tests: the client against a hostile xenstored that answers with
//! random lengths, request and transaction ids, types, payloads and ring indices. Every call
//! must end in a value or an [`Error`], never a panic or a hang.
//!
//! A longer run by hand: `STARDUST_FUZZ_CASES=1000000 cargo test -p xen-services fuzz`
//! (`STARDUST_FUZZ_SEED=N` for other inputs).

use super::*;
use crate::mem::fake::FakePage;
use platform::fuzz::{Rng, cases};
use std::collections::VecDeque;
use std::vec::Vec;

type Page = FakePage<4096>;

/// A xenstored that reads the requests and answers anything.
struct Hostile<'p> {
    page: &'p Page,
    r: Rng,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    /// The last request id and type seen, so that some replies match them.
    last: (u32, u32),
    /// Waits left before it stops answering (`wait` returns false).
    budget: u32,
}

impl Hostile<'_> {
    fn message(&mut self) -> Vec<u8> {
        let r = &mut self.r;
        let ty = match r.below(4) {
            0 => self.last.1,
            1 => MsgType::WatchEvent as u32,
            2 => MsgType::Error as u32,
            _ => r.pick(&[0, 1, 2, 5, 6, 7, 10, 11, 13, 99, u32::MAX]),
        };
        let req_id = if r.chance(70) {
            self.last.0
        } else {
            r.edgy_u32()
        };
        let payload: Vec<u8> = match r.below(6) {
            0 => r
                .pick(&[
                    &b"ENOENT\0"[..],
                    b"EAGAIN\0",
                    b"ENOENT",
                    b"\0",
                    b"",
                    b"OK\0",
                    b"7\0",
                    b"0\0",
                    b"4294967296\0",
                    b"99999999999999\0",
                    b"a/b\0tok\0",
                    b"a/b\0",
                    b"a\0b\0c\0",
                ])
                .to_vec(),
            1 => {
                let n = r.pick(&[0, 1, 8, 15, 16, 255, 511, 512, 513, 1024, 4095, 4096]);
                r.bytes(n)
            }
            _ => {
                let n = r.below(64) as usize;
                r.bytes(n)
            }
        };
        let len = match r.below(5) {
            0 => r.edgy_u32(),
            1 => r.pick(&[4096, 4097, 512, 513]),
            2 => payload.len() as u32 + r.below(3) as u32,
            _ => payload.len() as u32,
        };
        // Often a well-formed answer, so that calls get past the header checks.
        let h = if r.chance(40) {
            Header {
                ty: self.last.1,
                req_id: self.last.0,
                tx_id: 0,
                len: payload.len() as u32,
            }
        } else {
            Header {
                ty,
                req_id,
                tx_id: r.edgy_u32(),
                len,
            }
        };
        let mut msg = h.encode().to_vec();
        msg.extend(payload);
        msg
    }

    fn pump(&mut self) {
        // Take the requests out (and note the last header).
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = REQ.consume(self.page, &mut buf) {
            self.inbuf.extend(&buf[..n]);
        }
        while self.inbuf.len() >= HEADER_LEN {
            let hb: [u8; HEADER_LEN] = self.inbuf[..HEADER_LEN].try_into().expect("16 bytes");
            // Garbage after this side corrupted the request ring's indices: start over.
            let Ok(h) = Header::decode(&hb) else {
                self.inbuf.clear();
                break;
            };
            let total = HEADER_LEN + h.len as usize;
            if self.inbuf.len() < total {
                break;
            }
            self.inbuf.drain(..total);
            self.last = (h.req_id, h.ty);
        }
        // Answer something.
        match self.r.below(10) {
            0 => {
                let n = self.r.below(40) as usize;
                let junk = self.r.bytes(n);
                self.out.extend(junk);
            }
            1 => {
                // Garbage indices on either ring.
                let (ring, cons) = if self.r.chance(50) {
                    (RSP, false)
                } else {
                    (REQ, true)
                };
                let v = self.r.edgy_u32();
                self.page
                    .write_u32(if cons { ring.cons } else { ring.prod }, v);
            }
            2 => {}
            _ => {
                let m = self.message();
                self.out.extend(m);
            }
        }
        let chunk: Vec<u8> = self.out.iter().copied().take(1024).collect();
        if let Ok(n) = RSP.produce(self.page, &chunk) {
            self.out.drain(..n);
        }
    }
}

impl Wait for Hostile<'_> {
    fn notify(&mut self) {}
    fn wait(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        self.pump();
        true
    }
}

#[test]
fn the_client_survives_a_hostile_xenstored() {
    let mut r = Rng::new(0x5e57_0001);
    let (mut ok, mut failed) = (0u64, 0u64);
    for case in 0..cases(3_000) {
        let page = Page::default();
        let mut xs = XenStore::new(&page);
        let mut d = Hostile {
            page: &page,
            r: Rng::new(r.next_u64()),
            inbuf: Vec::new(),
            out: VecDeque::new(),
            last: (0, 0),
            budget: 50 + r.below(200) as u32,
        };
        for _ in 0..1 + r.below(8) {
            let mut buf = std::vec![0u8; r.pick(&[0, 1, 8, 16, 64, 600, 4096])];
            let tx = Tx(r.pick(&[0, 1, u32::MAX]));
            let path = r.pick(&["name", "device/vif/0/state", ""]);
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match r.below(8) {
                    0 => xs.read(tx, path, &mut buf, &mut d).map(|_| ()),
                    1 => {
                        let value = std::vec![b'v'; r.pick(&[0, 3, 300, 4000, 5000])];
                        xs.write(tx, path, &value, &mut d)
                    }
                    2 => xs.directory(tx, path, &mut buf, &mut d).map(|list| {
                        let _ = directory_entries(list).count();
                    }),
                    3 => xs.watch(path, "tok", &mut d),
                    4 => xs.next_event(&mut buf, &mut d).map(|_| ()),
                    5 => xs.transaction_start(&mut d).map(|_| ()),
                    6 => xs.transaction_end(tx, r.chance(50), &mut d),
                    _ => xs
                        .call(MsgType::Read, tx, &[b"x\0"], &mut buf, &mut d, |e| {
                            let _ = (e.path.len(), e.token.len());
                        })
                        .map(|_| ()),
                }));
            match result {
                Ok(Ok(())) => ok += 1,
                Ok(Err(_)) => failed += 1,
                Err(_) => panic!("case {case} panicked (seed 0x5e570001)"),
            }
        }
    }
    // Both outcomes are common (else the daemon is too tame or too wild).
    assert!(
        ok > 100 && failed > 100,
        "{ok} calls succeeded, {failed} failed"
    );
}

#[test]
fn random_bytes_through_the_parsers_never_panic() {
    let mut r = Rng::new(0x5e57_0002);
    for _ in 0..cases(50_000) {
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&r.bytes(HEADER_LEN));
        if r.chance(50) {
            hb[12..16].copy_from_slice(&(r.below(5000) as u32).to_le_bytes());
        }
        let n = r.below(40) as usize;
        let payload = r.bytes(n);
        if let Ok(h) = Header::decode(&hb) {
            assert!(h.len as usize <= PAYLOAD_MAX);
            let _ = parse_reply(h, &payload);
            let _ = parse_reply(
                Header {
                    len: payload.len() as u32,
                    ..h
                },
                &payload,
            );
        }
        let _ = parse_watch_event(&payload);
        let _ = directory_entries(&payload).count();
        let _ = XsError::from_name(&payload).name();
        let _ = crate::xenbus::XenbusState::parse(&payload);
        if let Some(v) = parse_decimal(&payload) {
            assert_eq!(
                std::str::from_utf8(&payload)
                    .ok()
                    .and_then(|s| s.parse().ok()),
                Some(v)
            );
        }
    }
}
