//! sdfs as a `vfs::FileSystem`: the kernel's glue and the facade use it through that interface.

use crate::{DirEntry as SdEntry, Error, FileId, Filesystem, Kind};
use alloc::vec::Vec;
use blockdev::BlockIo;
use vfs::Detail;

impl From<Error> for vfs::Error {
    fn from(e: Error) -> vfs::Error {
        match e {
            Error::Device(d) => vfs::Error::Device(Detail::new(d)),
            Error::NotStardust
            | Error::Version { .. }
            | Error::TooSmall { .. }
            | Error::Geometry => vfs::Error::Unrecognized(Detail::new(e)),
            Error::SuperChecksum => vfs::Error::Corrupt(Detail::new(e)),
            Error::Corrupt(c) => vfs::Error::Corrupt(Detail::new(c)),
            Error::ReadOnly => vfs::Error::ReadOnly,
            Error::Poisoned => vfs::Error::Failed(Detail::new(e)),
            Error::NotFound => vfs::Error::NotFound,
            Error::AlreadyExists => vfs::Error::AlreadyExists,
            Error::NotADirectory => vfs::Error::NotADirectory,
            Error::IsADirectory => vfs::Error::IsADirectory,
            Error::NotEmpty => vfs::Error::NotEmpty,
            Error::InvalidName => vfs::Error::InvalidName,
            Error::InvalidPath => vfs::Error::InvalidPath,
            Error::NoSpace => vfs::Error::NoSpace,
            Error::FileTooLarge => vfs::Error::FileTooLarge,
        }
    }
}

fn kind(k: Kind) -> vfs::Kind {
    match k {
        Kind::File => vfs::Kind::File,
        Kind::Dir => vfs::Kind::Dir,
    }
}

impl<D: BlockIo> vfs::FileSystem for Filesystem<D> {
    const NAME: &'static str = "sdfs";

    type Handle = FileId;

    fn open(&mut self, path: &str) -> Result<FileId, vfs::Error> {
        Ok(Filesystem::open(self, path)?)
    }

    fn create(&mut self, path: &str) -> Result<FileId, vfs::Error> {
        Ok(Filesystem::create(self, path)?)
    }

    fn stat(&mut self, handle: FileId) -> Result<vfs::Stat, vfs::Error> {
        let s = self.stat_id(handle)?;
        Ok(vfs::Stat {
            kind: kind(s.kind),
            len: s.size,
        })
    }

    fn read(&mut self, handle: FileId, offset: u64, buf: &mut [u8]) -> Result<usize, vfs::Error> {
        Ok(Filesystem::read(self, handle, offset, buf)?)
    }

    fn write(&mut self, handle: FileId, offset: u64, data: &[u8]) -> Result<(), vfs::Error> {
        Ok(Filesystem::write(self, handle, offset, data)?)
    }

    fn set_len(&mut self, handle: FileId, len: u64) -> Result<(), vfs::Error> {
        Ok(self.truncate(handle, len)?)
    }

    fn create_dir(&mut self, path: &str) -> Result<(), vfs::Error> {
        Ok(Filesystem::create_dir(self, path)?)
    }

    fn remove(&mut self, path: &str) -> Result<(), vfs::Error> {
        Ok(Filesystem::remove(self, path)?)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), vfs::Error> {
        Ok(Filesystem::rename(self, from, to)?)
    }

    fn read_dir(&mut self, path: &str) -> Result<Vec<vfs::DirEntry>, vfs::Error> {
        Ok(self
            .list(path)?
            .into_iter()
            .map(
                |SdEntry {
                     name,
                     kind: k,
                     size,
                 }| vfs::DirEntry {
                    name,
                    kind: kind(k),
                    len: size,
                },
            )
            .collect())
    }

    fn sync(&mut self) -> Result<(), vfs::Error> {
        Ok(Filesystem::sync(self)?)
    }

    fn usage(&self) -> vfs::Usage {
        let u = Filesystem::usage(self);
        vfs::Usage {
            block_size: crate::BLOCK as u32,
            blocks: u.blocks,
            // The blocks the next sync writes are as good as used.
            used: u.used + u.dirty,
        }
    }
}

impl<D: BlockIo> vfs::Mount<D> for Filesystem<D> {
    fn mount(dev: D) -> Result<(Self, vfs::Mounted), vfs::Error> {
        let (fs, m) = Filesystem::mount(dev)?;
        Ok((
            fs,
            vfs::Mounted {
                formatted: m.formatted,
                generation: m.generation,
                read_only: m.read_only,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use blockdev::fake::RamDisk;
    use blockdev::{Blocking, NoWait};
    use vfs::{FileSystem, Mount};

    type Ram = Blocking<RamDisk, NoWait>;

    fn mount(image: Vec<u8>) -> Result<(Filesystem<Ram>, vfs::Mounted), vfs::Error> {
        <Filesystem<Ram> as Mount<Ram>>::mount(Blocking::new(
            RamDisk::from_image(image, 512),
            NoWait,
        ))
    }

    /// The operations, through the interface only (so no inherent method of sdfs is called).
    fn exercise<F: FileSystem>(fs: &mut F) {
        fs.create_dir_all("/a/b/c").unwrap();
        fs.create_dir_all("a/b").unwrap();
        fs.write_file("a/b/f.txt", b"hello").unwrap();
        let h = fs.open_or_create("/a/b/f.txt", false).unwrap();
        let len = fs.stat(h).unwrap().len;
        fs.write(h, len, b", world").unwrap();
        assert_eq!(fs.read_file("/a/b/f.txt").unwrap(), b"hello, world");
        assert_eq!(
            fs.metadata("a/b").unwrap(),
            vfs::Stat {
                kind: vfs::Kind::Dir,
                len: 2
            }
        );
        assert_eq!(fs.remove_dir("a/b/f.txt"), Err(vfs::Error::NotADirectory));
        assert_eq!(fs.remove_file("a/b/c"), Err(vfs::Error::IsADirectory));
        assert_eq!(fs.remove_dir("a/b"), Err(vfs::Error::NotEmpty));
        assert_eq!(
            fs.open_or_create("a/b", false).err(),
            Some(vfs::Error::IsADirectory)
        );
        assert_eq!(
            fs.create_dir_all("a/b/f.txt/x"),
            Err(vfs::Error::NotADirectory)
        );
        assert_eq!(
            fs.create("a/b/f.txt").err(),
            Some(vfs::Error::AlreadyExists)
        );
        assert_eq!(fs.open("a/../etc").err(), Some(vfs::Error::InvalidName));
        fs.rename("a/b/f.txt", "a/g.txt").unwrap();
        let names: Vec<_> = fs
            .read_dir("/a")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["b", "g.txt"]);
        let h = fs.open("a/g.txt").unwrap();
        fs.set_len(h, 5).unwrap();
        fs.sync().unwrap();
    }

    fn check_again<F: FileSystem>(fs: &mut F) {
        assert_eq!(fs.read_file("a/g.txt").unwrap(), b"hello");
        assert_eq!(fs.read_file("a/b/f.txt"), Err(vfs::Error::NotFound));
        let u = fs.usage();
        assert_eq!(u.block_size, 4096);
        assert!(u.used > 2 && u.used < u.blocks);
    }

    #[test]
    fn a_blank_disk_is_formatted_and_the_operations_work_through_the_interface() {
        let (mut fs, m) = mount(vec![0; 1 << 20]).expect("blank: formatted");
        assert!(m.formatted && !m.read_only);
        exercise(&mut fs);
        let image = fs.into_inner().device().image().to_vec();
        let (mut fs, m) = mount(image).expect("mounts again");
        assert!(!m.formatted && m.generation >= 2);
        check_again(&mut fs);
    }

    #[test]
    fn a_foreign_or_damaged_disk_is_refused_in_words() {
        let mut foreign = vec![0x5a; 1 << 20];
        foreign[..4].copy_from_slice(b"\x7fELF");
        let e = mount(foreign).expect_err("refused");
        assert!(matches!(e, vfs::Error::Unrecognized(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "unrecognized disk: not a Stardust filesystem (bad magic number)"
        );

        let (mut fs, _) = mount(vec![0; 1 << 20]).unwrap();
        FileSystem::write_file(&mut fs, "x", b"data").unwrap();
        FileSystem::sync(&mut fs).unwrap();
        let mut image = fs.into_inner().device().image().to_vec();
        // Damage the first superblock slot's checksummed bytes and the second's: no valid one.
        image[100] ^= 0xff;
        image[4096 + 100] ^= 0xff;
        let e = mount(image).expect_err("refused");
        assert!(matches!(e, vfs::Error::Corrupt(_)), "{e:?}");
        assert!(e.to_string().starts_with("corrupt filesystem: "), "{e}");
    }

    fn fill<F: FileSystem>(fs: &mut F) {
        fs.write_file("keep", b"kept").unwrap();
        let h = fs.create("big").unwrap();
        let chunk = vec![7u8; 4096];
        let mut off = 0;
        let e = loop {
            match fs.write(h, off, &chunk) {
                Ok(()) => off += chunk.len() as u64,
                Err(e) => break e,
            }
            if off.is_multiple_of(64 * 4096) {
                fs.sync().unwrap();
            }
        };
        assert_eq!(e, vfs::Error::NoSpace);
        assert_eq!(e.to_string(), "no space left on the disk");
        assert_eq!(fs.read_file("keep").unwrap(), b"kept");
        fs.remove_file("big").unwrap();
        fs.sync().unwrap();
        fs.write_file("after", b"room again").unwrap();
        fs.sync().unwrap();
    }

    #[test]
    fn a_full_disk_says_no_space_and_reads_still_work() {
        let (mut fs, _) = mount(vec![0; 1 << 20]).unwrap();
        fill(&mut fs);
    }
}
