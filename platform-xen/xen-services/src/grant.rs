//! Grant tables (v1): this domain lets another domain (a backend) map or copy one of its
//! pages, by writing a `grant_entry_v1 { flags, domid, frame }` into the shared grant table;
//! the backend names the page by the entry's index, the grant reference.
//!
//! [`GrantTable`] keeps the free list of references and writes entries in the order the ABI
//! requires (frame and domid first, barrier, then the flags that make the entry valid). The
//! table itself (one or more frames set up by `GNTTABOP_setup_table` on PV or mapped with
//! `XENMEM_add_to_physmap` on PVH) is reached through [`GrantEntries`].
//!
//! # The safety contract
//!
//! Granting a page exposes it to another domain. The caller of [`GrantTable::grant_access`]
//! MUST keep the page allocated, and must not reuse it for anything the backend may not see,
//! until [`GrantTable::end_access`] for that reference has returned `Ok`: before that, the
//! backend may map the page and read (or, without `readonly`, write) it at any time.
//! `end_access` fails with [`GrantError::InUse`] while the backend still has it mapped; then
//! the page stays granted and the caller must retry later (or leak the page), never free it.

use core::fmt;

use xen_sys::{GTF_permit_access, GTF_reading, GTF_readonly, GTF_writing, domid_t};

use crate::mem::SharedMemory;

/// A grant reference: an index into the grant table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantRef(pub u32);

/// References Xen reserves (`GNTTAB_NR_RESERVED_ENTRIES`); the toolstack uses 0 and 1 for
/// the console and XenStore pages.
pub const RESERVED: u32 = 8;

/// The grant table's entries, as v1 `grant_entry_v1` (8 bytes each).
pub trait GrantEntries {
    /// How many entries there are.
    fn count(&self) -> u32;
    /// Writes `domid` and `frame` of entry `r` (not yet valid: flags are 0).
    fn set_target(&self, r: GrantRef, domid: domid_t, frame: u32);
    /// Publishes flags (after a barrier that orders the target before them).
    fn set_flags(&self, r: GrantRef, flags: u16);
    /// Reads the flags.
    fn flags(&self, r: GrantRef) -> u16;
    /// Atomically replaces the flags if they are `current`; returns what was there.
    fn compare_exchange_flags(&self, r: GrantRef, current: u16, new: u16) -> u16;
}

/// The entries in grant table frames reached through [`SharedMemory`].
#[derive(Debug)]
pub struct SharedEntries<M> {
    mem: M,
}

impl<M: SharedMemory> SharedEntries<M> {
    /// Entries in `mem` (its length / 8 of them).
    pub fn new(mem: M) -> Self {
        SharedEntries { mem }
    }
    fn at(r: GrantRef) -> usize {
        r.0 as usize * 8
    }
}

impl<M: SharedMemory> GrantEntries for SharedEntries<M> {
    fn count(&self) -> u32 {
        (self.mem.len() / 8) as u32
    }
    fn set_target(&self, r: GrantRef, domid: domid_t, frame: u32) {
        self.mem.write_u16(Self::at(r) + 2, domid);
        self.mem.write_u32(Self::at(r) + 4, frame);
    }
    fn set_flags(&self, r: GrantRef, flags: u16) {
        self.mem.fence();
        self.mem.write_u16(Self::at(r), flags);
    }
    fn flags(&self, r: GrantRef) -> u16 {
        self.mem.read_u16(Self::at(r))
    }
    fn compare_exchange_flags(&self, r: GrantRef, current: u16, new: u16) -> u16 {
        self.mem.compare_exchange_u16(Self::at(r), current, new)
    }
}

/// Grant table errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// No free reference left.
    Exhausted,
    /// The backend still maps the page (`GTF_reading` / `GTF_writing`); retry later.
    InUse(GrantRef),
    /// The reference is not one this table handed out (reserved, out of range, or free).
    NotGranted(GrantRef),
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantError::Exhausted => f.write_str("no free grant reference"),
            GrantError::InUse(r) => write!(f, "grant {} is still mapped by the backend", r.0),
            GrantError::NotGranted(r) => write!(f, "grant {} was not granted", r.0),
        }
    }
}

impl core::error::Error for GrantError {}

const NONE: u32 = u32::MAX;

/// The bookkeeping of up to `N` grant references over entries `E`.
#[derive(Debug)]
pub struct GrantTable<E, const N: usize> {
    entries: E,
    /// `next[r]`: the next free reference after `r`, or `NONE`; `IN_USE` when granted.
    next: [u32; N],
    head: u32,
    free: u32,
}

const IN_USE: u32 = u32::MAX - 1;

impl<E: GrantEntries, const N: usize> GrantTable<E, N> {
    /// A table over `entries`; references `RESERVED..min(N, entries.count())` are free.
    pub fn new(entries: E) -> Self {
        let limit = (entries.count() as usize).min(N) as u32;
        let mut next = [NONE; N];
        let mut head = NONE;
        let mut free = 0;
        // push in reverse so the lowest reference comes out first
        for r in (RESERVED..limit).rev() {
            next[r as usize] = head;
            head = r;
            free += 1;
        }
        GrantTable {
            entries,
            next,
            head,
            free,
        }
    }

    /// Free references.
    pub fn free(&self) -> u32 {
        self.free
    }

    /// The entries.
    pub fn entries(&self) -> &E {
        &self.entries
    }

    /// Lets domain `domid` access `frame` (a machine frame on PV, a guest frame on PVH),
    /// read-only if `readonly`. See the module's safety contract.
    pub fn grant_access(
        &mut self,
        domid: domid_t,
        frame: u32,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        if self.head == NONE {
            return Err(GrantError::Exhausted);
        }
        let r = GrantRef(self.head);
        self.head = self.next[r.0 as usize];
        self.next[r.0 as usize] = IN_USE;
        self.free -= 1;
        self.entries.set_target(r, domid, frame);
        let ro = if readonly { GTF_readonly as u16 } else { 0 };
        self.entries.set_flags(r, GTF_permit_access as u16 | ro);
        Ok(r)
    }

    /// Takes the grant back. `Err(InUse)` while the backend maps it: the reference stays
    /// granted and the page must stay untouched; call again later.
    pub fn end_access(&mut self, r: GrantRef) -> Result<(), GrantError> {
        let i = r.0 as usize;
        if i >= N || self.next[i] != IN_USE {
            return Err(GrantError::NotGranted(r));
        }
        let busy = (GTF_reading | GTF_writing) as u16;
        let mut flags = self.entries.flags(r);
        loop {
            if flags & busy != 0 {
                return Err(GrantError::InUse(r));
            }
            let seen = self.entries.compare_exchange_flags(r, flags, 0);
            if seen == flags {
                break;
            }
            flags = seen; // the backend changed them meanwhile: look again
        }
        self.next[i] = self.head;
        self.head = r.0;
        self.free += 1;
        Ok(())
    }
}

/// A fake grant table for host tests.
#[cfg(any(test, feature = "test-utils"))]
pub mod fake {
    use super::{GrantEntries, GrantRef};
    use core::cell::RefCell;

    /// `N` entries in RAM; the test sets `GTF_reading` etc. to play the backend.
    #[derive(Debug)]
    pub struct FakeGrantEntries<const N: usize> {
        /// (flags, domid, frame) per entry.
        pub e: RefCell<[(u16, u16, u32); N]>,
    }

    impl<const N: usize> Default for FakeGrantEntries<N> {
        fn default() -> Self {
            FakeGrantEntries {
                e: RefCell::new([(0, 0, 0); N]),
            }
        }
    }

    impl<const N: usize> GrantEntries for &FakeGrantEntries<N> {
        fn count(&self) -> u32 {
            N as u32
        }
        fn set_target(&self, r: GrantRef, domid: u16, frame: u32) {
            let mut e = self.e.borrow_mut();
            e[r.0 as usize].1 = domid;
            e[r.0 as usize].2 = frame;
        }
        fn set_flags(&self, r: GrantRef, flags: u16) {
            self.e.borrow_mut()[r.0 as usize].0 = flags;
        }
        fn flags(&self, r: GrantRef) -> u16 {
            self.e.borrow()[r.0 as usize].0
        }
        fn compare_exchange_flags(&self, r: GrantRef, current: u16, new: u16) -> u16 {
            let mut e = self.e.borrow_mut();
            let v = e[r.0 as usize].0;
            if v == current {
                e[r.0 as usize].0 = new;
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeGrantEntries;
    use super::*;
    use crate::mem::fake::FakePage;

    #[test]
    fn grant_and_end_access() {
        let fake = FakeGrantEntries::<16>::default();
        let mut t: GrantTable<_, 16> = GrantTable::new(&fake);
        assert_eq!(t.free(), 8);
        let a = t.grant_access(0, 0x1234, false).expect("free ref");
        let b = t.grant_access(0, 0x5678, true).expect("free ref");
        assert_eq!((a, b), (GrantRef(8), GrantRef(9)));
        assert_eq!(fake.e.borrow()[8], (GTF_permit_access as u16, 0, 0x1234));
        assert_eq!(
            fake.e.borrow()[9].0,
            (GTF_permit_access | GTF_readonly) as u16
        );
        // the backend maps a: it cannot be taken back
        fake.e.borrow_mut()[8].0 |= GTF_reading as u16;
        assert_eq!(t.end_access(a), Err(GrantError::InUse(a)));
        fake.e.borrow_mut()[8].0 &= !(GTF_reading as u16);
        assert_eq!(t.end_access(a), Ok(()));
        assert_eq!(fake.e.borrow()[8].0, 0);
        assert_eq!(t.end_access(a), Err(GrantError::NotGranted(a)), "twice");
        assert_eq!(
            t.end_access(GrantRef(3)),
            Err(GrantError::NotGranted(GrantRef(3)))
        );
        assert_eq!(
            t.end_access(GrantRef(999)),
            Err(GrantError::NotGranted(GrantRef(999)))
        );
        assert_eq!(t.grant_access(1, 1, false), Ok(a), "freed refs are reused");
        t.end_access(b).expect("not mapped");
        assert_eq!(t.free(), 7);
    }

    #[test]
    fn exhaustion() {
        let fake = FakeGrantEntries::<12>::default();
        let mut t: GrantTable<_, 12> = GrantTable::new(&fake);
        for _ in 0..4 {
            t.grant_access(0, 1, false).expect("free");
        }
        assert_eq!(t.grant_access(0, 1, false), Err(GrantError::Exhausted));
    }

    #[test]
    fn shared_entries_layout() {
        let page = FakePage::<4096>::default();
        let mut t: GrantTable<_, 512> = GrantTable::new(SharedEntries::new(&page));
        assert_eq!(t.free(), 504);
        let r = t.grant_access(5, 0xabcd, true).expect("free");
        let off = r.0 as usize * 8;
        assert_eq!(
            page.read_u16(off),
            (GTF_permit_access | GTF_readonly) as u16
        );
        assert_eq!(page.read_u16(off + 2), 5);
        assert_eq!(page.read_u32(off + 4), 0xabcd);
        t.end_access(r).expect("unmapped");
        assert_eq!(page.read_u16(off), 0);
    }
}
