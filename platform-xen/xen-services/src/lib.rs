//! Xen guest services, host-testable and the same for PV and PVH guests: XenStore, the
//! console ring, grant tables, event channel dispatch and XenBus handshakes.
//!
//! The platform crate (`platform-xen`) finds and maps the shared pages (from `start_info` on
//! PV, from HVM params on PVH), makes the hypercalls and takes the event upcall; everything
//! that is logic lives here and runs under `cargo test` against fakes:
//!
//! - [`mem::SharedMemory`]: how a service touches a page shared with another domain;
//!   [`mem::raw::RawShared`] is the real page (the crate's only `unsafe`), `mem::fake::FakePage`
//!   the fake.
//! - [`ring`]: byte-ring index arithmetic with wrap-around, distrustful of the other side.
//! - [`console::ConsoleRing`]: the PV console ring (`out` 2048 bytes, `in` 1024).
//! - [`xenstore`]: wire encoding and decoding, [`xenstore::XenStore`] (read, write, directory,
//!   watch, transactions, request ids, error names → [`xenstore::XsError`]), and a fake
//!   xenstored with transactions (snapshot, commit, abort, `EAGAIN` on a conflict) and fault
//!   injection (`xenstore::fake`).
//! - [`grant::GrantTable`]: grant reference free list, grant and end access (v1 entries).
//! - [`detect::detect`]: Xen from CPUID (signature, version, hypercall page MSR).
//! - [`event::Handlers`]: the event channel handler table and the 2-level pending scan.
//! - [`xenbus`]: `XenbusState` and the frontend handshake state machine.
//! - [`pvclock`]: system time from a PV clock record and a TSC reading.
//!
//! ```
//! use xen_services::mem::fake::FakePage;
//! use xen_services::xenstore::{fake::FakeXenStored, Tx, XenStore};
//!
//! let page = FakePage::<4096>::default();
//! let mut xenstored = FakeXenStored::new(&page);   // plays dom0's side of the ring
//! xenstored.set("name", "guest-1");
//! let mut xs = XenStore::new(&page);
//! let mut buf = [0u8; 64];
//! assert_eq!(xs.read(Tx(0), "name", &mut buf, &mut xenstored), Ok(&b"guest-1"[..]));
//! ```
//!
//! # Cargo features
//!
//! - `test-utils`: the fakes (`mem::fake::FakePage`, `xenstore::fake::FakeXenStored`,
//!   `grant::fake::FakeGrantEntries`, `event::fake::FakeEvents`) for host tests of crates built
//!   on these services (uses `alloc`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(all(feature = "test-utils", not(test)))]
extern crate alloc;
#[cfg(test)]
extern crate std as alloc;

pub mod console;
pub mod detect;
pub mod event;
pub mod frontend;
pub mod grant;
pub mod mem;
pub mod pvclock;
pub mod ring;
pub mod sring;
pub mod xenbus;
pub mod xenstore;
