//! Event channels: the handler table and the 2-level pending scan of the upcall.
//!
//! Xen marks port `p` pending by setting bit `p` of `shared_info.evtchn_pending` and bit
//! `p / 64` of the vCPU's `evtchn_pending_sel`, then raises the upcall (PV: the callback;
//! PVH: the vector set through `HVM_PARAM_CALLBACK_IRQ`). The upcall takes the selector
//! (atomic exchange with 0), and for each selected word handles the ports pending and not
//! masked, clearing each pending bit before calling its handler. [`Handlers::scan`] does that
//! over [`EventBits`], which the platform implements on the shared info page.

use core::fmt;

/// An event channel port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventChannel(pub u32);

/// A handler: called with its port and the context word given to [`Handlers::bind`].
pub type Handler = fn(EventChannel, usize);

/// The pending and mask bitmaps (2-level ABI: 64 words of 64 bits on x86_64).
pub trait EventBits {
    /// Atomically takes (and zeroes) the vCPU's `evtchn_pending_sel`.
    fn take_selector(&self) -> u64;
    /// Word `w` of `evtchn_pending`.
    fn pending(&self, w: usize) -> u64;
    /// Word `w` of `evtchn_mask`.
    fn mask(&self, w: usize) -> u64;
    /// Atomically clears the pending bit of `port`.
    fn clear_pending(&self, port: EventChannel);
    /// Which ports of word `w` the scanning vCPU handles: those bound to it. With several
    /// vCPUs the pending bitmap is the domain's, shared by all, while Xen sets the selector and
    /// raises the upcall only on the vCPU a port is bound to; a vCPU that handled another's port
    /// would clear its bit under the owner (a per-vCPU timer or IPI then runs on the wrong CPU).
    /// Linux's 2-level scan filters the same way (`active_evtchns`). The default: every port
    /// (one vCPU).
    fn owned(&self, w: usize) -> u64 {
        let _ = w;
        u64::MAX
    }
}

/// Handler table errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventError {
    /// The port is beyond the table.
    OutOfRange(EventChannel),
    /// The port already has a handler.
    Busy(EventChannel),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::OutOfRange(p) => write!(f, "event channel {} is beyond the table", p.0),
            EventError::Busy(p) => write!(f, "event channel {} already has a handler", p.0),
        }
    }
}

impl core::error::Error for EventError {}

/// Handlers for ports `0..N`.
#[derive(Debug)]
pub struct Handlers<const N: usize> {
    table: [Option<(Handler, usize)>; N],
}

impl<const N: usize> Default for Handlers<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Handlers<N> {
    /// An empty table (usable in a `static`).
    pub const fn new() -> Self {
        Handlers { table: [None; N] }
    }

    /// Sets the handler of `port`.
    pub fn bind(&mut self, port: EventChannel, h: Handler, ctx: usize) -> Result<(), EventError> {
        let slot = self
            .table
            .get_mut(port.0 as usize)
            .ok_or(EventError::OutOfRange(port))?;
        if slot.is_some() {
            return Err(EventError::Busy(port));
        }
        *slot = Some((h, ctx));
        Ok(())
    }

    /// Removes the handler of `port` (after the port is closed or masked).
    pub fn unbind(&mut self, port: EventChannel) {
        if let Some(slot) = self.table.get_mut(port.0 as usize) {
            *slot = None;
        }
    }

    /// Calls `port`'s handler; `false` when it has none.
    pub fn call(&self, port: EventChannel) -> bool {
        match self.table.get(port.0 as usize).copied().flatten() {
            Some((h, ctx)) => {
                h(port, ctx);
                true
            }
            None => false,
        }
    }

    /// One upcall: handles every pending, unmasked port. Returns how many ports fired
    /// (those without a handler are cleared and counted too).
    pub fn scan(&self, bits: &impl EventBits) -> usize {
        let mut fired = 0;
        let mut sel = bits.take_selector();
        while sel != 0 {
            let w = sel.trailing_zeros() as usize;
            sel &= sel - 1;
            let mut ready = bits.pending(w) & !bits.mask(w) & bits.owned(w);
            while ready != 0 {
                let b = ready.trailing_zeros();
                ready &= ready - 1;
                let port = EventChannel((w * 64) as u32 + b);
                bits.clear_pending(port);
                self.call(port);
                fired += 1;
            }
        }
        fired
    }
}

/// Fake bitmaps for host tests.
#[cfg(any(test, feature = "test-utils"))]
pub mod fake {
    use super::{EventBits, EventChannel};
    use core::cell::Cell;

    /// 64 × 64 pending and mask bits and a selector, in RAM.
    #[derive(Debug)]
    pub struct FakeEvents {
        /// The selector.
        pub sel: Cell<u64>,
        /// `evtchn_pending`.
        pub pending: [Cell<u64>; 64],
        /// `evtchn_mask`.
        pub mask: [Cell<u64>; 64],
        /// The ports the scanning vCPU handles (all, by default).
        pub owned: [Cell<u64>; 64],
    }

    impl Default for FakeEvents {
        fn default() -> Self {
            FakeEvents {
                sel: Cell::new(0),
                pending: core::array::from_fn(|_| Cell::new(0)),
                mask: core::array::from_fn(|_| Cell::new(0)),
                owned: core::array::from_fn(|_| Cell::new(u64::MAX)),
            }
        }
    }

    impl FakeEvents {
        /// What Xen does to signal `port`.
        pub fn raise(&self, port: u32) {
            let w = (port / 64) as usize;
            self.pending[w].set(self.pending[w].get() | 1 << (port % 64));
            self.sel.set(self.sel.get() | 1 << w);
        }
    }

    impl EventBits for FakeEvents {
        fn take_selector(&self) -> u64 {
            self.sel.replace(0)
        }
        fn pending(&self, w: usize) -> u64 {
            self.pending[w].get()
        }
        fn mask(&self, w: usize) -> u64 {
            self.mask[w].get()
        }
        fn clear_pending(&self, port: EventChannel) {
            let w = (port.0 / 64) as usize;
            self.pending[w].set(self.pending[w].get() & !(1 << (port.0 % 64)));
        }
        fn owned(&self, w: usize) -> u64 {
            self.owned[w].get()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeEvents;
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    static HITS: AtomicUsize = AtomicUsize::new(0);

    fn count(port: EventChannel, ctx: usize) {
        HITS.fetch_add(port.0 as usize * 1000 + ctx, Ordering::SeqCst);
    }

    #[test]
    fn bind_scan_mask() {
        let mut h: Handlers<256> = Handlers::default();
        h.bind(EventChannel(3), count, 1).expect("free");
        h.bind(EventChannel(130), count, 2).expect("free");
        assert_eq!(
            h.bind(EventChannel(3), count, 9),
            Err(EventError::Busy(EventChannel(3)))
        );
        assert_eq!(
            h.bind(EventChannel(256), count, 0),
            Err(EventError::OutOfRange(EventChannel(256)))
        );
        let ev = FakeEvents::default();
        ev.raise(3);
        ev.raise(130);
        ev.raise(131); // no handler
        ev.mask[2].set(1 << 4);
        ev.raise(132); // masked: stays pending
        HITS.store(0, Ordering::SeqCst);
        assert_eq!(h.scan(&ev), 3);
        assert_eq!(HITS.load(Ordering::SeqCst), 3001 + 130_002);
        assert_eq!(ev.pending[0].get(), 0);
        assert_eq!(
            ev.pending[2].get(),
            1 << 4,
            "the masked port is still pending"
        );
        assert_eq!(h.scan(&ev), 0, "the selector was taken");
        h.unbind(EventChannel(3));
        assert!(!h.call(EventChannel(3)));
    }

    static OTHER_HITS: AtomicUsize = AtomicUsize::new(0);

    fn count_other(port: EventChannel, _ctx: usize) {
        OTHER_HITS.fetch_add(port.0 as usize, Ordering::SeqCst);
    }

    #[test]
    fn a_port_of_another_vcpu_stays_pending_for_it() {
        let mut h: Handlers<256> = Handlers::default();
        h.bind(EventChannel(5), count_other, 0).expect("free");
        h.bind(EventChannel(6), count_other, 0).expect("free");
        let ev = FakeEvents::default();
        ev.raise(5);
        ev.raise(6);
        ev.owned[0].set(!(1 << 6)); // port 6 is another vCPU's
        OTHER_HITS.store(0, Ordering::SeqCst);
        assert_eq!(h.scan(&ev), 1);
        assert_eq!(OTHER_HITS.load(Ordering::SeqCst), 5);
        assert_eq!(ev.pending[0].get(), 1 << 6, "left for its own vCPU");
    }
}
