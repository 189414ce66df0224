//! The filesystem interface: what the kernel's glue (`crates/kernel/src/fs.rs`) and the facade's
//! `stardust::fs` need of a filesystem, so that neither names one. Implemented by `sdfs`
//! (read-write, crash-safe); a read-only filesystem (ext4 through `ext4-view`) fits it too, its
//! changes failing with [`Error::ReadOnly`].
//!
//! ```
//! use vfs::{Error, FileSystem, Kind};
//! fn count_files<F: FileSystem>(fs: &mut F, dir: &str) -> Result<usize, Error> {
//!     Ok(fs.read_dir(dir)?.iter().filter(|e| e.kind == Kind::File).count())
//! }
//! ```
//!
//! # Paths
//! `/`-separated names from the root: `a/b` and `/a/b` are the same file, empty components
//! (`a//b`, a trailing `/`) are ignored, `""` and `/` are the root. `.` and `..` are not names
//! ([`Error::InvalidName`]): there is no current directory to be relative to, and no way out of
//! the root.
//!
//! # Durability
//! Changes (writes, creations, renames, removals) are kept by the filesystem and made durable by
//! [`FileSystem::sync`]: once it returned `Ok`, a power cut at any moment leaves every change
//! made before it on the disk. What a cut does to changes after the last sync is the
//! implementation's to document (sdfs: they are lost, all of them together).
//!
//! # Threads
//! The trait takes `&mut self`: the kernel keeps the one filesystem behind one lock.
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A file.
    File,
    /// A directory.
    Dir,
}

/// What a file or directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// File or directory.
    pub kind: Kind,
    /// Bytes of a file; entries of a directory.
    pub len: u64,
}

/// An entry of a directory, as [`FileSystem::read_dir`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name (no `/`).
    pub name: String,
    /// File or directory.
    pub kind: Kind,
    /// Bytes of a file; entries of a directory.
    pub len: u64,
}

/// What a mount found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mounted {
    /// The disk was blank and has just been formatted.
    pub formatted: bool,
    /// The generation mounted: commits since the format (0 for a filesystem without them).
    pub generation: u64,
    /// Changes are refused ([`Error::ReadOnly`]): a read-only disk, or a read-only filesystem.
    pub read_only: bool,
}

/// Space, in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of a block.
    pub block_size: u32,
    /// Blocks the filesystem spans.
    pub blocks: u64,
    /// Blocks in use, counting those that changes not yet synced will take.
    pub used: u64,
}

/// Longest [`Detail`] in bytes.
pub const DETAIL_MAX: usize = 118;

/// A short text that says what exactly went wrong (which block, which check), held inline so
/// that [`Error`] stays `Copy` and needs no heap: at most [`DETAIL_MAX`] bytes, longer texts cut
/// at a character boundary.
#[derive(Clone, Copy)]
pub struct Detail {
    len: u8,
    bytes: [u8; DETAIL_MAX],
}

impl Detail {
    /// The text `what` displays as.
    pub fn new(what: impl fmt::Display) -> Detail {
        Detail::of(&what)
    }

    /// One copy of the formatting for every type [`Detail::new`] is called with.
    #[inline(never)]
    fn of(what: &dyn fmt::Display) -> Detail {
        let mut d = Detail {
            len: 0,
            bytes: [0; DETAIL_MAX],
        };
        let _ = fmt::write(&mut d, format_args!("{what}"));
        d
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Write for Detail {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = usize::from(self.len);
        let mut take = s.len().min(DETAIL_MAX - at);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[at..at + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take as u8;
        Ok(())
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Detail {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Detail {}

/// A filesystem error. Its `Display` is meant for users: what went wrong, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No such file or directory.
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// A directory was wanted (or a path goes through a file).
    NotADirectory,
    /// A file was wanted.
    IsADirectory,
    /// The directory is not empty.
    NotEmpty,
    /// A name is empty, `.` or `..`, too long, or holds a character the filesystem refuses.
    InvalidName,
    /// The root cannot be removed or renamed, nor a directory moved into itself.
    InvalidPath,
    /// The disk is full. Reads keep working, and removing or truncating files frees space.
    NoSpace,
    /// The file would be larger than the filesystem allows.
    FileTooLarge,
    /// Changes are refused: a read-only disk, or a read-only filesystem.
    ReadOnly,
    /// The filesystem's metadata is damaged: what and where.
    Corrupt(Detail),
    /// The disk holds something that is not this filesystem (or a version or geometry it does
    /// not read): what.
    Unrecognized(Detail),
    /// The disk failed: how.
    Device(Detail),
    /// The filesystem cannot go on (an earlier change failed half-way): why.
    Failed(Detail),
    /// No filesystem is mounted: why (no disk; the disk was refused, and the reason).
    NotMounted(Detail),
    /// An argument is out of range (a seek before the start of a file, ...): which.
    InvalidInput(&'static str),
    /// The filesystem does not do this: what.
    Unsupported(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // (words, detail): one write path for every variant (smaller than a `write!` each).
        let (words, detail) = match self {
            Error::NotFound => ("no such file or directory", ""),
            Error::AlreadyExists => ("already exists", ""),
            Error::NotADirectory => ("not a directory", ""),
            Error::IsADirectory => ("is a directory", ""),
            Error::NotEmpty => ("directory not empty", ""),
            Error::InvalidName => (
                "invalid name (empty, `.`, `..`, too long, or holding a `/` or NUL)",
                "",
            ),
            Error::InvalidPath => (
                "the root cannot be removed or renamed, nor a directory moved into itself",
                "",
            ),
            Error::NoSpace => ("no space left on the disk", ""),
            Error::FileTooLarge => ("file too large", ""),
            Error::ReadOnly => ("read-only filesystem", ""),
            Error::Corrupt(d) => ("corrupt filesystem: ", d.as_str()),
            Error::Unrecognized(d) => ("unrecognized disk: ", d.as_str()),
            Error::Device(d) => ("disk error: ", d.as_str()),
            Error::Failed(d) => ("filesystem failed: ", d.as_str()),
            Error::NotMounted(d) => ("no filesystem mounted: ", d.as_str()),
            Error::InvalidInput(what) => ("invalid input: ", *what),
            Error::Unsupported(what) => ("unsupported: ", *what),
        };
        f.write_str(words)?;
        f.write_str(detail)
    }
}

impl core::error::Error for Error {}

impl embedded_io::Error for Error {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind as K;
        match self {
            Error::NotFound => K::NotFound,
            Error::AlreadyExists => K::AlreadyExists,
            Error::ReadOnly => K::PermissionDenied,
            Error::InvalidName | Error::InvalidPath | Error::InvalidInput(_) => K::InvalidInput,
            Error::Corrupt(_) | Error::Unrecognized(_) => K::InvalidData,
            Error::Unsupported(_) => K::Unsupported,
            _ => K::Other,
        }
    }
}

/// A mounted filesystem. Paths as the crate docs say; a handle names a file or directory and
/// stays valid until it is removed (then [`Error::NotFound`]), across renames.
///
/// Contract, for every implementation:
/// - a call that fails changed nothing, unless it failed with [`Error::Device`] or
///   [`Error::Failed`] (then the filesystem may refuse further calls until it is mounted again);
/// - reads never fail because the disk is full;
/// - a read-only filesystem fails every change (and [`sync`](FileSystem::sync) with changes to
///   make, which it never has) with [`Error::ReadOnly`].
pub trait FileSystem {
    /// The filesystem's name, for log lines (`sdfs`).
    const NAME: &'static str;

    /// An open file or directory.
    type Handle: Copy + fmt::Debug + Send + Sync;

    /// The file or directory at `path`.
    fn open(&mut self, path: &str) -> Result<Self::Handle, Error>;

    /// Creates an empty file at `path` (its directory must exist; [`Error::AlreadyExists`] if
    /// the name is taken).
    fn create(&mut self, path: &str) -> Result<Self::Handle, Error>;

    /// What `handle` is, and its length.
    fn stat(&mut self, handle: Self::Handle) -> Result<Stat, Error>;

    /// Reads from `offset` of a file into `buf`: the bytes read, fewer only at the end of the
    /// file (0 at or past it).
    fn read(&mut self, handle: Self::Handle, offset: u64, buf: &mut [u8]) -> Result<usize, Error>;

    /// Writes all of `data` at `offset` of a file (past the end, the gap reads as zeros).
    fn write(&mut self, handle: Self::Handle, offset: u64, data: &[u8]) -> Result<(), Error>;

    /// Sets a file's length: cut, or extended with zeros.
    fn set_len(&mut self, handle: Self::Handle, len: u64) -> Result<(), Error>;

    /// Creates an empty directory (its parent must exist).
    fn create_dir(&mut self, path: &str) -> Result<(), Error>;

    /// Removes a file, or an empty directory.
    fn remove(&mut self, path: &str) -> Result<(), Error>;

    /// Renames `from` to `to`: a file may replace a file, a directory an empty directory.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), Error>;

    /// The entries of the directory at `path`.
    fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, Error>;

    /// Makes every change so far durable (see the crate docs).
    fn sync(&mut self) -> Result<(), Error>;

    /// Space used and free.
    fn usage(&self) -> Usage;

    /// What `path` is (kind and length).
    fn metadata(&mut self, path: &str) -> Result<Stat, Error> {
        let h = self.open(path)?;
        self.stat(h)
    }

    /// The whole file at `path`.
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        let h = self.open(path)?;
        let len = self.stat(h)?.len;
        let len = usize::try_from(len).map_err(|_| Error::FileTooLarge)?;
        let mut buf = alloc::vec![0; len];
        let mut at = 0;
        while at < len {
            match self.read(h, at as u64, &mut buf[at..])? {
                0 => break,
                n => at += n,
            }
        }
        buf.truncate(at);
        Ok(buf)
    }

    /// Makes the file at `path` hold `data`: created if missing, else cut and overwritten.
    fn write_file(&mut self, path: &str, data: &[u8]) -> Result<(), Error> {
        let h = self.open_or_create(path, true)?;
        self.write(h, 0, data)
    }

    /// The file at `path`, created (empty) if missing, cut to empty when `truncate`;
    /// [`Error::IsADirectory`] for a directory.
    fn open_or_create(&mut self, path: &str, truncate: bool) -> Result<Self::Handle, Error> {
        match self.open(path) {
            Ok(h) => {
                if self.stat(h)?.kind == Kind::Dir {
                    return Err(Error::IsADirectory);
                }
                if truncate {
                    self.set_len(h, 0)?;
                }
                Ok(h)
            }
            Err(Error::NotFound) => self.create(path),
            Err(e) => Err(e),
        }
    }

    /// Creates every missing directory of `path`.
    fn create_dir_all(&mut self, path: &str) -> Result<(), Error> {
        let mut at = String::new();
        for name in path.split('/').filter(|n| !n.is_empty()) {
            at.push('/');
            at.push_str(name);
            match self.create_dir(&at) {
                Ok(()) => {}
                Err(Error::AlreadyExists) => {
                    if self.metadata(&at)?.kind != Kind::Dir {
                        return Err(Error::NotADirectory);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes the file at `path` ([`Error::IsADirectory`] for a directory).
    fn remove_file(&mut self, path: &str) -> Result<(), Error> {
        if self.metadata(path)?.kind == Kind::Dir {
            return Err(Error::IsADirectory);
        }
        self.remove(path)
    }

    /// Removes the empty directory at `path` ([`Error::NotADirectory`] for a file).
    fn remove_dir(&mut self, path: &str) -> Result<(), Error> {
        if self.metadata(path)?.kind != Kind::Dir {
            return Err(Error::NotADirectory);
        }
        self.remove(path)
    }
}

/// Mounting a filesystem on a device `D` (a `blockdev::BlockIo` for a disk filesystem).
pub trait Mount<D>: FileSystem + Sized {
    /// Mounts the filesystem on `dev`, checking what it must first. A blank disk may be
    /// formatted ([`Mounted::formatted`]); anything else that does not mount is refused with the
    /// reason ([`Error::Unrecognized`], [`Error::Corrupt`], [`Error::Device`]) and never
    /// written.
    fn mount(dev: D) -> Result<(Self, Mounted), Error>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_detail_keeps_short_texts_and_cuts_long_ones_at_a_character_boundary() {
        assert_eq!(
            Detail::new("bad checksum in block 7").as_str(),
            "bad checksum in block 7"
        );
        let long = "é".repeat(100);
        let d = Detail::new(&long);
        assert!(d.as_str().len() <= DETAIL_MAX);
        assert_eq!(d.as_str().len(), DETAIL_MAX / 2 * 2);
        assert!(long.starts_with(d.as_str()));
        assert_eq!(Detail::new(""), Detail::new(""));
    }

    #[test]
    fn errors_read_as_users_expect() {
        assert_eq!(Error::NotFound.to_string(), "no such file or directory");
        assert_eq!(Error::NoSpace.to_string(), "no space left on the disk");
        assert_eq!(
            Error::Corrupt(Detail::new("bad checksum in block 9")).to_string(),
            "corrupt filesystem: bad checksum in block 9"
        );
        assert_eq!(
            Error::NotMounted(Detail::new("no disk")).to_string(),
            "no filesystem mounted: no disk"
        );
        assert_eq!(Error::ReadOnly.to_string(), "read-only filesystem");
    }
}
