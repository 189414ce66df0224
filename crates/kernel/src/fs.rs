//! Glue: the filesystem (`filesystem`) on the disk, mounted at boot, behind one lock; what the
//! facade's `stardust::fs` calls. Only `select.rs` names the filesystem; this file knows it
//! through `vfs::{FileSystem, Mount}`.
//!
//! - At boot ([`init`], right after the disk's), the filesystem is mounted on the disk
//!   (`block::disk`), and the outcome logged:
//!   - a blank (all-zero) disk is formatted: `fs: sdfs: the disk was blank: formatted`, then the
//!     mounted line;
//!   - a filesystem that checks out: `fs: sdfs: mounted, generation G, U of T KiB used[,
//!     read-only]`;
//!   - anything else is refused and never written: `fs: sdfs: the disk was refused (never
//!     written): <reason>` (an error line), e.g. `unrecognized disk: not a Stardust filesystem
//!     (bad magic number)`; calls then fail with `Error::NotMounted("the disk was refused:
//!     <reason>")`;
//!   - no disk: `fs: sdfs: no disk, nothing mounted`; calls fail with
//!     `Error::NotMounted("no disk")`.
//! - [`with`] runs a closure on the filesystem under one lock: a blocking mutex whose waiters
//!   sleep with a thread scheduler, a spin lock otherwise (one thread), as the disk's. The
//!   disk's own lock is taken inside it, never the other way round.

use crate::block::Disk;
use crate::select::SelectedFileSystem;
use alloc::boxed::Box;
use vfs::{Detail, Error, FileSystem, Mount, Mounted};

/// What the filesystem's mount at boot came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Mounted (and formatted first when [`Mounted::formatted`]).
    Mounted(Mounted),
    /// No disk: nothing to mount.
    NoDisk,
    /// The disk holds something that did not mount: refused, never written. Why.
    Refused(Error),
}

/// A handle on a file or directory of the mounted filesystem.
pub type Handle = <SelectedFileSystem as FileSystem>::Handle;

/// The filesystem's name (`sdfs`).
pub const NAME: &str = <SelectedFileSystem as FileSystem>::NAME;

#[cfg(feature = "threads")]
type Lock<T> = crate::sync::Mutex<T>;
#[cfg(not(feature = "threads"))]
type Lock<T> = spin::Mutex<T>;

/// The mounted filesystem (none until [`init`] mounted one). Boxed: `None` of the box is all
/// zeros, in `.bss`.
static FS: Lock<Option<Box<SelectedFileSystem>>> = Lock::new(None);
/// What [`init`] found (set once).
static STATUS: spin::Once<Status> = spin::Once::new();

/// Mounts the filesystem on the disk, formatting a blank one, and logs the outcome (see the
/// module docs).
// Not inlined into the boot function: its frame (smoltcp's and the drivers' structures built
// before they move to their statics) is released before `main` runs on the same stack.
#[inline(never)]
pub fn init() {
    // One `call_once` for every outcome (each one is a copy of spin's slow path).
    let status = mount();
    STATUS.call_once(|| status);
}

/// The mount at boot and its log lines: what it came to.
fn mount() -> Status {
    let Some(disk) = crate::block::disk() else {
        log::warn!("fs: {NAME}: no disk, nothing mounted");
        return Status::NoDisk;
    };
    match <SelectedFileSystem as Mount<Disk>>::mount(disk) {
        Ok((fs, mounted)) => {
            let usage = FileSystem::usage(&fs);
            let kib = u64::from(usage.block_size) / 1024;
            if mounted.formatted {
                log::info!("fs: {NAME}: the disk was blank: formatted");
            }
            log::info!(
                "fs: {NAME}: mounted, generation {}, {} of {} KiB used{}",
                mounted.generation,
                usage.used * kib,
                usage.blocks * kib,
                if mounted.read_only { ", read-only" } else { "" }
            );
            // Set once (at boot): forgetting the `None` it replaces brings no drop of a
            // filesystem into the image.
            core::mem::forget(FS.lock().replace(Box::new(fs)));
            Status::Mounted(mounted)
        }
        Err(e) => {
            log::error!("fs: {NAME}: the disk was refused (never written): {e}");
            Status::Refused(e)
        }
    }
}

/// What the mount at boot came to (`NoDisk` before [`init`]).
pub fn status() -> Status {
    STATUS.get().copied().unwrap_or(Status::NoDisk)
}

/// The error of a call when nothing is mounted: why.
fn not_mounted() -> Error {
    Error::NotMounted(match status() {
        Status::Refused(e) => Detail::new(format_args!("the disk was refused: {e}")),
        Status::NoDisk | Status::Mounted(_) => Detail::new("no disk"),
    })
}

/// Runs `f` on the mounted filesystem under its lock; [`Error::NotMounted`] (with the reason)
/// when none is.
pub fn with<R>(f: impl FnOnce(&mut SelectedFileSystem) -> Result<R, Error>) -> Result<R, Error> {
    let mut guard = FS.lock();
    match guard.as_mut() {
        Some(fs) => f(fs),
        None => Err(not_mounted()),
    }
}
