//! What goes wrong, said precisely.

use core::fmt;

/// What is impossible in a superblock, an inode record or a directory entry
/// ([`Corruption::BadSuper`], [`Corruption::BadInode`], [`Corruption::BadEntry`]). A byte rather
/// than a `&str`, so that [`Error`] is 16 bytes: a `Result` of it comes back in registers, and
/// every `?` of the filesystem costs less code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The block size is not 4096.
    BlockSize,
    /// The block count is impossible.
    BlockCount,
    /// No inode table.
    NoTable,
    /// An unknown kind.
    UnknownKind,
    /// Reserved bytes are not zero.
    Reserved,
    /// A free record is not zero.
    FreeNotZero,
    /// A tree taller than the format allows.
    TooTall,
    /// A size larger than its tree holds.
    PastTree,
    /// A size larger than the filesystem.
    PastFilesystem,
    /// A size that is not a whole number of entries.
    PartialEntry,
    /// An entry names the root.
    NamesRoot,
    /// A bad name length or padding.
    NameLength,
    /// A name that is not UTF-8.
    NotUtf8,
    /// An invalid name.
    InvalidName,
    /// Shorter than the structure.
    CutShort,
    /// A superblock's run (the blocks its commit wrote) that cannot be.
    ImpossibleRun,
    /// The last commit's run did not all arrive, and no earlier commit is left.
    RunLost,
}

impl Fault {
    /// In words.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::BlockSize => "block size is not 4096",
            Fault::BlockCount => "impossible block count",
            Fault::NoTable => "no inode table",
            Fault::UnknownKind => "unknown kind",
            Fault::Reserved => "reserved bytes are not zero",
            Fault::FreeNotZero => "a free record is not zero",
            Fault::TooTall => "tree taller than the format allows",
            Fault::PastTree => "size larger than its tree holds",
            Fault::PastFilesystem => "size larger than the filesystem",
            Fault::PartialEntry => "size is not a whole number of entries",
            Fault::NamesRoot => "an entry names the root",
            Fault::NameLength => "bad name length or padding",
            Fault::NotUtf8 => "name is not UTF-8",
            Fault::InvalidName => "invalid name",
            Fault::CutShort => "cut short",
            Fault::ImpossibleRun => "impossible run",
            Fault::RunLost => {
                "the last commit's blocks are not all there, and no earlier commit is left"
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with an image's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// A superblock that passed its checksum holds an impossible value.
    BadSuper(Fault),
    /// A block's contents do not match the checksum its parent keeps.
    Checksum {
        /// The block.
        block: u32,
    },
    /// A pointer names a block outside the filesystem (or a superblock slot).
    BadPointer {
        /// The block it names.
        block: u32,
    },
    /// An inode record holds an impossible value.
    BadInode(Fault),
    /// A directory entry holds an impossible value.
    BadEntry(Fault),
    /// A tree holds a block past the end of its file.
    PastEnd {
        /// The block.
        block: u32,
    },
    /// Two pointers name the same block.
    DoubleUse {
        /// The block.
        block: u32,
    },
    /// A directory or the inode table has a hole where entries must be.
    Hole,
    /// The root is not a directory.
    BadRoot,
    /// An entry names a free inode, or one past the table.
    Dangling {
        /// The inode it names.
        ino: u32,
    },
    /// An inode is named by two entries (a second name, or a directory inside itself).
    Linked {
        /// The inode.
        ino: u32,
    },
    /// An inode no directory names.
    Orphan {
        /// The inode.
        ino: u32,
    },
    /// A directory holds a name twice.
    DuplicateName,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // (words, number, words): one write path for every variant (smaller than a `write!`
        // each).
        let (before, n, after) = match *self {
            Corruption::BadSuper(what) => ("superblock: ", None, what.as_str()),
            Corruption::Checksum { block } => ("bad checksum in block ", Some(block), ""),
            Corruption::BadPointer { block } => (
                "a pointer names block ",
                Some(block),
                ", outside the filesystem",
            ),
            Corruption::BadInode(what) => ("inode record: ", None, what.as_str()),
            Corruption::BadEntry(what) => ("directory entry: ", None, what.as_str()),
            Corruption::PastEnd { block } => {
                ("block ", Some(block), " lies past the end of its file")
            }
            Corruption::DoubleUse { block } => ("block ", Some(block), " is used twice"),
            Corruption::Hole => ("a directory or the inode table has a hole", None, ""),
            Corruption::BadRoot => ("the root is not a directory", None, ""),
            Corruption::Dangling { ino } => {
                ("an entry names inode ", Some(ino), ", which does not exist")
            }
            Corruption::Linked { ino } => ("inode ", Some(ino), " has two names"),
            Corruption::Orphan { ino } => ("inode ", Some(ino), " is in no directory"),
            Corruption::DuplicateName => ("a directory holds a name twice", None, ""),
        };
        f.write_str(before)?;
        if let Some(n) = n {
            write!(f, "{n}")?;
        }
        f.write_str(after)
    }
}

/// A filesystem error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The device failed.
    Device(blockdev::Error),
    /// The disk holds something that is not a Stardust filesystem (no magic number in either
    /// superblock slot, and not blank): refused, never written.
    NotStardust,
    /// A superblock slot holds our magic number but a wrong checksum, and the other slot
    /// holds no valid superblock.
    SuperChecksum,
    /// A format version this crate does not read.
    Version {
        /// The version found.
        found: u32,
    },
    /// The image's metadata is damaged.
    Corrupt(Corruption),
    /// The filesystem spans more blocks than the disk has.
    TooSmall {
        /// Blocks the filesystem spans (or needs).
        blocks: u32,
        /// Blocks the disk has (at most `u32::MAX` count: the most a filesystem spans).
        disk_blocks: u32,
    },
    /// The device's block size does not divide 4096.
    Geometry,
    /// The disk is read-only (or cannot flush): no change and no format.
    ReadOnly,
    /// An earlier change failed half-way (a device error or damaged metadata met while
    /// changing): no more changes or syncs; mount again to get the last synced state.
    Poisoned,
    /// No such file or directory (or a handle to a removed file).
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// A path goes through a file, or a directory was wanted.
    NotADirectory,
    /// A file was wanted.
    IsADirectory,
    /// The directory is not empty.
    NotEmpty,
    /// A name is empty, `.` or `..`, longer than 120 bytes, or holds `/` or NUL.
    InvalidName,
    /// The root cannot be removed or renamed, nor a directory moved into itself.
    InvalidPath,
    /// The disk is full.
    NoSpace,
    /// Past the largest file: the filesystem's size (and at most 256 TiB).
    FileTooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The words of every variant without numbers in one table-like match, one write path.
        // Those `vfs::Error` has too are its words, so that the image holds them once.
        let words = match self {
            Error::Device(e) => {
                f.write_str("device: ")?;
                return fmt::Display::fmt(e, f);
            }
            Error::Version { found } => {
                return write!(
                    f,
                    "unsupported filesystem version {found} (this build reads versions {} to {})",
                    crate::format::OLDEST_VERSION,
                    crate::format::VERSION
                );
            }
            Error::Corrupt(c) => {
                f.write_str("corrupt filesystem: ")?;
                return fmt::Display::fmt(c, f);
            }
            Error::TooSmall {
                blocks,
                disk_blocks,
            } => {
                return write!(
                    f,
                    "the filesystem needs {blocks} blocks of 4096 bytes, the disk has {disk_blocks}"
                );
            }
            Error::NotStardust => "not a Stardust filesystem (bad magic number)",
            Error::SuperChecksum => "bad checksum in the superblock",
            Error::Geometry => "the disk's block size does not divide 4096",
            Error::ReadOnly => "the disk is read-only",
            Error::Poisoned => {
                "an earlier change failed half-way: mount again to get the last synced state"
            }
            Error::NotFound => "no such file or directory",
            Error::AlreadyExists => "already exists",
            Error::NotADirectory => "not a directory",
            Error::IsADirectory => "is a directory",
            Error::NotEmpty => "directory not empty",
            Error::InvalidName => {
                "invalid name (empty, `.`, `..`, too long, or holding a `/` or NUL)"
            }
            Error::InvalidPath => {
                "the root cannot be removed or renamed, nor a directory moved into itself"
            }
            Error::NoSpace => "no space left on the disk",
            Error::FileTooLarge => "file too large",
        };
        f.write_str(words)
    }
}

impl core::error::Error for Error {}

impl From<blockdev::Error> for Error {
    fn from(e: blockdev::Error) -> Self {
        Error::Device(e)
    }
}
