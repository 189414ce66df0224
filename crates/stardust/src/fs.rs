//! Files and directories on the disk (a profile with a filesystem: `filesystem = "sdfs"`),
//! shaped like `std::fs`.
//!
//! ```ignore
//! use stardust::fs::{self, File, OpenOptions};
//! use embedded_io::{Read, Write};
//!
//! fs::create_dir_all("/logs")?;
//! fs::write("/logs/first", b"hello")?;
//! let mut log = OpenOptions::new().append(true).create(true).open("/logs/app.log")?;
//! log.write_all(b"one line\n")?;
//! fs::sync()?; // durable from here on
//! assert_eq!(fs::read("/logs/first")?, b"hello");
//! ```
//!
//! # Paths
//! `/`-separated names from the root of the disk: `a/b` and `/a/b` are the same file; there is
//! no current directory, and `.` and `..` are refused ([`Error::InvalidName`]). Names are UTF-8,
//! without `/` or NUL, at most 120 bytes (sdfs).
//!
//! # Durability
//! A change (a write, a creation, a rename, a removal, a new length) is **durable once a later
//! [`sync`] (or [`File::sync_all`], the same thing) returned `Ok`**: a power cut at any moment
//! after that leaves it on the disk, whatever else was going on. Changes not covered by a sync
//! are lost by a cut, all of those since the last sync together (sdfs is copy-on-write: the
//! disk always holds the state of one sync, never half of one). A sync writes the blocks changed
//! since the last one; it costs the same whichever file or thread asks for it, and covers every
//! file's changes.
//!
//! # The mount
//! The kernel mounts the filesystem at boot (see [`status`]): a blank (all-zero) disk is
//! formatted, a disk holding anything else that does not mount is refused and never written,
//! and every call then fails with [`Error::NotMounted`] saying why.
//!
//! # Errors
//! [`Error`]'s `Display` says what went wrong in words (`no such file or directory`, `no space
//! left on the disk`, `corrupt filesystem: bad checksum in block 17`, ...). A full disk fails
//! changes with [`Error::NoSpace`] before touching anything; reads keep working, and removing or
//! truncating files (then a sync) frees space.
//!
//! # Threads
//! Every call takes the one lock around the filesystem; calls from several threads take turns.
//! A [`File`] keeps its own position; two files open on the same path see each other's writes.

use crate::alloc::string::String;
use crate::alloc::vec::Vec;
use kernel::fs::{Handle, with};
use kernel::vfs::FileSystem;

pub use embedded_io::SeekFrom;
pub use kernel::vfs::{DETAIL_MAX, Detail, DirEntry, Error, Kind, Mounted, Usage};

/// `Result` with this module's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// What the kernel's mount at boot came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Mounted; `formatted` when the disk was blank and was formatted this boot.
    Mounted(Mounted),
    /// No disk: nothing mounted.
    NoDisk,
    /// The disk holds something that did not mount (another filesystem, damage): refused and
    /// never written. Why.
    Refused(Error),
}

/// What the kernel's mount at boot came to.
pub fn status() -> Status {
    match kernel::fs::status() {
        kernel::fs::Status::Mounted(m) => Status::Mounted(m),
        kernel::fs::Status::NoDisk => Status::NoDisk,
        kernel::fs::Status::Refused(e) => Status::Refused(e),
    }
}

/// The filesystem's name (`sdfs`).
pub const NAME: &str = kernel::fs::NAME;

/// What a file or directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    kind: Kind,
    len: u64,
}

impl Metadata {
    /// Bytes of a file; entries of a directory.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Empty (a file of no bytes, a directory of no entries).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// A file.
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
}

/// The whole file at `path`.
pub fn read(path: &str) -> Result<Vec<u8>> {
    with(|fs| FileSystem::read_file(fs, path))
}

/// The whole file at `path`, as text ([`Error::InvalidInput`] if it is not UTF-8).
pub fn read_to_string(path: &str) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|_| Error::InvalidInput("the file is not UTF-8"))
}

/// Makes the file at `path` hold `data`: created if missing, else cut and overwritten.
pub fn write(path: &str, data: impl AsRef<[u8]>) -> Result<()> {
    with(|fs| FileSystem::write_file(fs, path, data.as_ref()))
}

/// The entries of the directory at `path`, in the directory's order (sdfs: creation order,
/// a removed entry's place taken by the last one).
pub fn read_dir(path: &str) -> Result<Vec<DirEntry>> {
    with(|fs| FileSystem::read_dir(fs, path))
}

/// Creates an empty directory (its parent must exist; [`Error::AlreadyExists`] if the name is
/// taken).
pub fn create_dir(path: &str) -> Result<()> {
    with(|fs| FileSystem::create_dir(fs, path))
}

/// Creates the directory at `path` and every missing parent; fine if it exists.
pub fn create_dir_all(path: &str) -> Result<()> {
    with(|fs| FileSystem::create_dir_all(fs, path))
}

/// Removes a file ([`Error::IsADirectory`] for a directory).
pub fn remove_file(path: &str) -> Result<()> {
    with(|fs| FileSystem::remove_file(fs, path))
}

/// Removes an empty directory ([`Error::NotEmpty`], [`Error::NotADirectory`]).
pub fn remove_dir(path: &str) -> Result<()> {
    with(|fs| FileSystem::remove_dir(fs, path))
}

/// Renames `from` to `to`, atomically at the next sync: a file may replace a file, a directory
/// an empty directory.
pub fn rename(from: &str, to: &str) -> Result<()> {
    with(|fs| FileSystem::rename(fs, from, to))
}

/// What `path` is.
pub fn metadata(path: &str) -> Result<Metadata> {
    with(|fs| FileSystem::metadata(fs, path)).map(|s| Metadata {
        kind: s.kind,
        len: s.len,
    })
}

/// Whether `path` names a file or directory (`false` on any error).
pub fn exists(path: &str) -> bool {
    metadata(path).is_ok()
}

/// The durability point: returns `Ok` once every change made before it (by any thread, to any
/// file) is on the disk, safe from a power cut.
pub fn sync() -> Result<()> {
    with(FileSystem::sync)
}

/// Space on the disk.
pub fn usage() -> Result<Usage> {
    with(|fs| Ok(FileSystem::usage(fs)))
}

/// How to open a file, as `std::fs::OpenOptions`: `read`, `write`, `append` (every write goes to
/// the end; implies `write`), `truncate` (cut to empty; needs `write`), `create` (made if
/// missing; needs `write` or `append`), `create_new` (made, [`Error::AlreadyExists`] if it
/// exists).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
}

impl OpenOptions {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open for reading.
    pub fn read(&mut self, yes: bool) -> &mut Self {
        self.read = yes;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, yes: bool) -> &mut Self {
        self.write = yes;
        self
    }

    /// Every write goes to the end of the file (implies writing).
    pub fn append(&mut self, yes: bool) -> &mut Self {
        self.append = yes;
        self
    }

    /// Cut the file to empty (needs writing).
    pub fn truncate(&mut self, yes: bool) -> &mut Self {
        self.truncate = yes;
        self
    }

    /// Create the file if it is missing (needs writing or appending).
    pub fn create(&mut self, yes: bool) -> &mut Self {
        self.create = yes;
        self
    }

    /// Create the file; fail with [`Error::AlreadyExists`] if it exists.
    pub fn create_new(&mut self, yes: bool) -> &mut Self {
        self.create_new = yes;
        self
    }

    /// Opens the file at `path` as set ([`Error::IsADirectory`] for a directory).
    pub fn open(&self, path: &str) -> Result<File> {
        let writes = self.write || self.append;
        if !self.read && !writes {
            return Err(Error::InvalidInput("open for neither reading nor writing"));
        }
        if (self.truncate || self.create || self.create_new) && !writes {
            return Err(Error::InvalidInput(
                "truncate or create without write or append",
            ));
        }
        if self.truncate && self.append {
            return Err(Error::InvalidInput("truncate with append"));
        }
        let handle = with(|fs| {
            if self.create_new {
                return FileSystem::create(fs, path);
            }
            let h = match FileSystem::open(fs, path) {
                Err(Error::NotFound) if self.create => return FileSystem::create(fs, path),
                other => other?,
            };
            if FileSystem::stat(fs, h)?.kind == Kind::Dir {
                return Err(Error::IsADirectory);
            }
            if self.truncate {
                FileSystem::set_len(fs, h, 0)?;
            }
            Ok(h)
        })?;
        Ok(File {
            handle,
            pos: 0,
            read: self.read,
            write: writes,
            append: self.append,
        })
    }
}

/// An open file: reads and writes at its own position, as `std::fs::File`; implements
/// `embedded_io::{Read, Write, Seek}`. Writes are durable once [`sync_all`](File::sync_all) (or
/// [`sync`]) returned `Ok`. Dropping it does nothing (there is nothing to close).
#[derive(Debug)]
pub struct File {
    handle: Handle,
    pos: u64,
    read: bool,
    write: bool,
    append: bool,
}

impl File {
    /// Opens the file at `path` for reading.
    pub fn open(path: &str) -> Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens the file at `path` for writing, created if missing, cut to empty if not.
    pub fn create(path: &str) -> Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// [`OpenOptions::new`].
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Reads from the position into `buf`, moving it: the bytes read (0 at the end).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads from `offset` into `buf`, without moving the position: the bytes read (fewer only
    /// at the end of the file).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if !self.read {
            return Err(Error::InvalidInput("the file was not opened for reading"));
        }
        with(|fs| FileSystem::read(fs, self.handle, offset, buf))
    }

    /// Writes all of `data` at the position (at the end when appending), moving it past them.
    pub fn write(&mut self, data: &[u8]) -> Result<usize> {
        if !self.write {
            return Err(Error::InvalidInput("the file was not opened for writing"));
        }
        let append = self.append;
        let pos = self.pos;
        let end = with(|fs| {
            let at = if append {
                FileSystem::stat(fs, self.handle)?.len
            } else {
                pos
            };
            FileSystem::write(fs, self.handle, at, data)?;
            Ok(at + data.len() as u64)
        })?;
        self.pos = end;
        Ok(data.len())
    }

    /// Moves the position: from the start, the end, or where it is; past the end is allowed
    /// (a write there leaves zeros between), before the start is [`Error::InvalidInput`].
    pub fn seek(&mut self, to: SeekFrom) -> Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => (0, i128::from(n)),
            SeekFrom::Current(d) => (self.pos, i128::from(d)),
            SeekFrom::End(d) => (self.metadata()?.len, i128::from(d)),
        };
        let at = i128::from(base) + delta;
        self.pos = u64::try_from(at).map_err(|_| Error::InvalidInput("seek before the start"))?;
        Ok(self.pos)
    }

    /// The position.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Sets the file's length: cut, or extended with zeros (the position stays).
    pub fn set_len(&self, len: u64) -> Result<()> {
        if !self.write {
            return Err(Error::InvalidInput("the file was not opened for writing"));
        }
        with(|fs| FileSystem::set_len(fs, self.handle, len))
    }

    /// What the file is (its length).
    pub fn metadata(&self) -> Result<Metadata> {
        with(|fs| FileSystem::stat(fs, self.handle)).map(|s| Metadata {
            kind: s.kind,
            len: s.len,
        })
    }

    /// Makes this file's changes durable: a [`sync`] (which covers every file's).
    pub fn sync_all(&self) -> Result<()> {
        sync()
    }
}

impl embedded_io::ErrorType for File {
    type Error = Error;
}

impl embedded_io::Read for File {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        File::read(self, buf)
    }
}

impl embedded_io::Write for File {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        File::write(self, buf)
    }

    /// Nothing to do: writes go to the filesystem at once. Durability is [`File::sync_all`]'s.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

impl embedded_io::Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64> {
        File::seek(self, pos)
    }
}
