//! The front end of a Xen shared request/response ring (`io/ring.h`): the page a split
//! driver's frontend (netfront's TX and RX rings, blkfront's ring) shares with its backend.
//!
//! The page starts with a 64-byte header, then the entries:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `req_prod`: requests the frontend published (free-running) |
//! | 4 | `req_event`: the backend wants an event when `req_prod` passes it |
//! | 8 | `rsp_prod`: responses the backend published |
//! | 12 | `rsp_event`: the frontend wants an event when `rsp_prod` passes it |
//! | 64 | `ring[size]`: a union of one request and one response, `entry` bytes each |
//!
//! The number of entries is the largest power of two that fits the page (`__RING_SIZE`).
//! Indices are free-running `u32`s; an entry's slot is `index & (size - 1)`.
//!
//! The backend is not trusted (Linux's XSA-391 fixes): a `rsp_prod` that claims more responses
//! than there are requests outstanding is [`RingError::Corrupt`], never a read of a slot the
//! frontend did not fill. What a response *says* (ids, lengths, statuses) is the driver's to
//! check.

use crate::mem::SharedMemory;
pub use crate::ring::RingError;

/// The page size of a ring.
pub const PAGE: usize = 4096;
/// Where the entries start.
pub const HEADER: usize = 64;

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

/// The entries of a one-page ring whose union entry is `entry` bytes (`__RING_SIZE`).
pub const fn ring_size(entry: usize) -> u32 {
    let fit = (PAGE - HEADER) / entry;
    // The largest power of two <= fit.
    1 << (usize::BITS - 1 - fit.leading_zeros())
}

/// The frontend's side of one shared ring.
#[derive(Debug)]
pub struct FrontRing<M> {
    mem: M,
    entry: usize,
    size: u32,
    /// Requests written, published or not.
    req_prod_pvt: u32,
    /// Responses consumed.
    rsp_cons: u32,
}

impl<M: SharedMemory> FrontRing<M> {
    /// Takes a fresh (zeroed or reused) page as a ring with `entry`-byte entries and
    /// initialises its header (`SHARED_RING_INIT` and `FRONT_RING_INIT`).
    pub fn new(mem: M, entry: usize) -> FrontRing<M> {
        assert!(mem.len() >= PAGE, "a ring needs a whole page");
        assert!(
            entry >= 4 && entry.is_multiple_of(4),
            "ring entries are words"
        );
        mem.write_u32(REQ_PROD, 0);
        mem.write_u32(RSP_PROD, 0);
        mem.write_u32(REQ_EVENT, 1);
        mem.write_u32(RSP_EVENT, 1);
        for off in (16..HEADER).step_by(4) {
            mem.write_u32(off, 0);
        }
        mem.fence();
        FrontRing {
            size: ring_size(entry),
            mem,
            entry,
            req_prod_pvt: 0,
            rsp_cons: 0,
        }
    }

    /// The ring's page.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The ring's page back (to end its grant and free it once the backend is gone).
    pub fn into_memory(self) -> M {
        self.mem
    }

    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Requests that can be written now (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Requests written and not yet answered (consumed responses excluded).
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// The byte offset in the page of the next request's entry, or `None` when the ring is
    /// full. Write the request there, then [`push_request`](Self::push_request).
    pub fn next_request(&self) -> Option<usize> {
        (self.free_requests() > 0).then(|| self.offset(self.req_prod_pvt))
    }

    /// Counts the request written at [`next_request`](Self::next_request)'s offset (not yet
    /// published to the backend).
    pub fn push_request(&mut self) {
        debug_assert!(self.free_requests() > 0, "request pushed into a full ring");
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
    }

    /// Publishes the requests written (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`): whether the
    /// backend asked to be notified of them.
    pub fn publish(&mut self) -> bool {
        let old = self.mem.read_u32(REQ_PROD);
        let new = self.req_prod_pvt;
        if old == new {
            return false;
        }
        self.mem.fence();
        self.mem.write_u32(REQ_PROD, new);
        self.mem.fence();
        let event = self.mem.read_u32(REQ_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Responses the backend published and the frontend has not consumed
    /// (`RING_HAS_UNCONSUMED_RESPONSES`), checked against the requests outstanding.
    pub fn responses(&self) -> Result<u32, RingError> {
        let prod = self.mem.read_u32(RSP_PROD);
        self.mem.fence();
        let n = prod.wrapping_sub(self.rsp_cons);
        if n > self.outstanding() {
            return Err(RingError::Corrupt {
                prod,
                cons: self.rsp_cons,
            });
        }
        Ok(n)
    }

    /// The byte offset of the next unconsumed response's entry. Only after
    /// [`responses`](Self::responses) said there is one.
    pub fn next_response(&self) -> usize {
        self.offset(self.rsp_cons)
    }

    /// Consumes the response at [`next_response`](Self::next_response)'s offset: its slot may
    /// take a request again.
    pub fn consume_response(&mut self) {
        debug_assert!(
            self.outstanding() > 0,
            "response consumed with none outstanding"
        );
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
    }

    /// As [`final_check`](Self::final_check), but the event is asked for at the `ahead`th
    /// response from now (at least the next one): what Linux's netfront once did for its
    /// transmit ring (an event when half of what is in flight came back), so that a batch of
    /// answers wakes the driver once, not at its first answer. Returns the responses waiting
    /// (any: the caller takes them, and asks again when it needs to).
    pub fn final_check_after(&mut self, ahead: u32) -> Result<u32, RingError> {
        let n = self.responses()?;
        if n > 0 {
            return Ok(n);
        }
        self.mem
            .write_u32(RSP_EVENT, self.rsp_cons.wrapping_add(ahead.max(1)));
        self.mem.fence();
        self.responses()
    }

    /// After consuming every response: asks for an event at the next one and checks again
    /// (`RING_FINAL_CHECK_FOR_RESPONSES`), so a response published in between is not missed.
    /// Returns the responses waiting.
    pub fn final_check(&mut self) -> Result<u32, RingError> {
        self.final_check_after(1)
    }

    fn offset(&self, index: u32) -> usize {
        HEADER + (index & (self.size - 1)) as usize * self.entry
    }
}

/// The backend's side, for host tests: a mock backend (netback, blkback) consumes requests and
/// produces responses on the same page, and may write anything into any field.
#[cfg(any(test, feature = "test-utils"))]
pub mod fake {
    use super::*;

    /// The backend's indices over a [`FrontRing`]'s page.
    #[derive(Debug)]
    pub struct BackRing<M> {
        mem: M,
        entry: usize,
        size: u32,
        /// Requests consumed.
        pub req_cons: u32,
        /// Responses written, published or not.
        pub rsp_prod_pvt: u32,
    }

    impl<M: SharedMemory> BackRing<M> {
        /// The backend's view of a ring of `entry`-byte entries.
        pub fn new(mem: M, entry: usize) -> BackRing<M> {
            BackRing {
                mem,
                entry,
                size: ring_size(entry),
                req_cons: 0,
                rsp_prod_pvt: 0,
            }
        }

        /// The page.
        pub fn memory(&self) -> &M {
            &self.mem
        }

        /// Requests published and not consumed.
        pub fn requests(&self) -> u32 {
            self.mem.read_u32(REQ_PROD).wrapping_sub(self.req_cons)
        }

        /// The offset of the next request, consuming it (`None`: none).
        pub fn take_request(&mut self) -> Option<usize> {
            if self.requests() == 0 {
                return None;
            }
            let off = self.offset(self.req_cons);
            self.req_cons = self.req_cons.wrapping_add(1);
            Some(off)
        }

        /// The offset of the next response's entry; write it, then
        /// [`push_response`](Self::push_response).
        pub fn next_response(&self) -> usize {
            self.offset(self.rsp_prod_pvt)
        }

        /// Counts a response written.
        pub fn push_response(&mut self) {
            self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        }

        /// Publishes the responses: whether the frontend asked for an event.
        pub fn publish(&mut self) -> bool {
            let old = self.mem.read_u32(RSP_PROD);
            let new = self.rsp_prod_pvt;
            self.mem.write_u32(RSP_PROD, new);
            let event = self.mem.read_u32(RSP_EVENT);
            new.wrapping_sub(event) < new.wrapping_sub(old)
        }

        /// Writes `rsp_prod` directly (a hostile backend).
        pub fn set_rsp_prod(&mut self, v: u32) {
            self.mem.write_u32(RSP_PROD, v);
        }

        fn offset(&self, index: u32) -> usize {
            HEADER + (index & (self.size - 1)) as usize * self.entry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::BackRing;
    use super::*;
    use crate::mem::fake::FakePage;

    #[test]
    fn sizes_match_the_xen_headers() {
        // netif TX (12-byte union), netif RX (8), blkif (112: a request with 11 segments).
        assert_eq!(ring_size(12), 256);
        assert_eq!(ring_size(8), 256);
        assert_eq!(ring_size(112), 32);
    }

    #[test]
    fn requests_and_responses_round_trip_with_notifications() {
        let page = FakePage::<PAGE>::default();
        let mut front = FrontRing::new(&page, 8);
        let mut back = BackRing::new(&page, 8);
        assert_eq!(front.free_requests(), 256);
        let off = front.next_request().expect("room");
        page.write_u32(off, 0xabcd);
        front.push_request();
        assert!(
            front.publish(),
            "the backend asks for the first request (req_event 1)"
        );
        let got = back.take_request().expect("published");
        assert_eq!(page.read_u32(got), 0xabcd);
        let r = back.next_response();
        page.write_u32(r, 7);
        back.push_response();
        assert!(
            back.publish(),
            "rsp_event 1: the frontend wants the first response"
        );
        assert_eq!(front.responses(), Ok(1));
        assert_eq!(page.read_u32(front.next_response()), 7);
        front.consume_response();
        assert_eq!(front.final_check(), Ok(0));
        assert_eq!(front.free_requests(), 256);
    }

    #[test]
    fn a_full_ring_takes_no_request() {
        let page = FakePage::<PAGE>::default();
        let mut front = FrontRing::new(&page, 112);
        for _ in 0..32 {
            assert!(front.next_request().is_some());
            front.push_request();
        }
        assert_eq!(front.next_request(), None);
        assert_eq!(front.outstanding(), 32);
    }

    #[test]
    fn more_responses_than_requests_is_corruption() {
        let page = FakePage::<PAGE>::default();
        let mut front = FrontRing::new(&page, 8);
        let mut back = BackRing::new(&page, 8);
        front.next_request().expect("room");
        front.push_request();
        front.publish();
        back.set_rsp_prod(2);
        assert!(matches!(front.responses(), Err(RingError::Corrupt { .. })));
        back.set_rsp_prod(u32::MAX);
        assert!(front.responses().is_err(), "a backwards rsp_prod too");
        back.set_rsp_prod(1);
        assert_eq!(front.responses(), Ok(1));
    }

    #[test]
    fn indices_wrap_at_two_to_the_32() {
        let page = FakePage::<PAGE>::default();
        let mut front = FrontRing::new(&page, 8);
        let mut back = BackRing::new(&page, 8);
        // Start both sides just below the wrap.
        let start = u32::MAX - 3;
        front.req_prod_pvt = start;
        front.rsp_cons = start;
        page.write_u32(REQ_PROD, start);
        page.write_u32(RSP_PROD, start);
        back.req_cons = start;
        back.rsp_prod_pvt = start;
        for i in 0..10u32 {
            let off = front.next_request().expect("room");
            page.write_u32(off, i);
            front.push_request();
            front.publish();
            let got = back.take_request().expect("request");
            assert_eq!(page.read_u32(got), i);
            let r = back.next_response();
            page.write_u32(r, i + 100);
            back.push_response();
            back.publish();
            assert_eq!(front.responses(), Ok(1));
            assert_eq!(page.read_u32(front.next_response()), i + 100);
            front.consume_response();
        }
    }

    #[test]
    fn a_later_event_is_raised_by_that_response_only() {
        let page = FakePage::<PAGE>::default();
        let mut front = FrontRing::new(&page, 12);
        let mut back = BackRing::new(&page, 12);
        for _ in 0..8 {
            front.next_request().expect("room");
            front.push_request();
        }
        front.publish();
        // The first answer crosses the initial rsp_event (1).
        back.take_request();
        back.push_response();
        assert!(back.publish());
        assert_eq!(front.responses(), Ok(1));
        front.consume_response();
        assert_eq!(front.final_check_after(4), Ok(0));
        for i in 1..=4 {
            back.take_request();
            back.push_response();
            assert_eq!(
                back.publish(),
                i == 4,
                "answer {i}: the event is at the fourth"
            );
        }
        assert_eq!(
            front.final_check_after(2),
            Ok(4),
            "answers waiting: no event asked"
        );
        for _ in 0..4 {
            front.consume_response();
        }
        assert_eq!(front.final_check_after(0), Ok(0), "0 is the next one");
        back.take_request();
        back.push_response();
        assert!(back.publish());
    }

    #[test]
    fn the_final_check_asks_for_the_next_response_only() {
        let page = FakePage::<PAGE>::default();
        let mut front = FrontRing::new(&page, 8);
        let mut back = BackRing::new(&page, 8);
        for _ in 0..2 {
            front.next_request().expect("room");
            front.push_request();
        }
        front.publish();
        back.take_request();
        back.take_request();
        back.push_response();
        assert!(back.publish(), "first response: event");
        front.consume_response();
        assert_eq!(front.final_check(), Ok(0));
        back.push_response();
        assert!(back.publish(), "rsp_event moved to 2: event again");
    }

    #[test]
    fn random_backend_indices_never_escape_the_ring() {
        let mut rng = platform::fuzz::Rng::new(18);
        for _ in 0..2000 {
            let page = FakePage::<PAGE>::default();
            let mut front = FrontRing::new(&page, 12);
            let n = rng.below(300) as u32;
            for _ in 0..n.min(256) {
                front.next_request().expect("room");
                front.push_request();
            }
            front.publish();
            page.write_u32(RSP_PROD, rng.next_u64() as u32);
            if let Ok(k) = front.responses() {
                assert!(k <= front.outstanding());
                for _ in 0..k {
                    assert!(front.next_response() + 12 <= PAGE);
                    front.consume_response();
                }
            }
        }
    }
}
