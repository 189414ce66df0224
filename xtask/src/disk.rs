//! Disk images of the Stardust filesystem (`crates/sdfs`, built for the host): a file-backed
//! [`BlockIo`], and what `cargo xtask disk` does with it: [`create`] an image from a directory,
//! [`ls`], [`cat`], [`extract`] and [`check`] one.
//!
//! The image is a plain file, one 512-byte sector after another, as QEMU's `-drive
//! format=raw` takes it. Reading commands open it read-only, so they never write to it (sdfs
//! writes nothing to a disk that it does not mount, and formats only writable blank ones).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use blockdev::{BlockIo, Info};
use sdfs::{DirEntry, Filesystem, Kind, Report};

/// The default size of a new image.
pub const DEFAULT_SIZE: u64 = 64 << 20;

/// Bytes of a sector of the image.
const SECTOR: u32 = 512;

/// A disk image in a file: 512-byte blocks, writable unless opened read-only; `flush` is
/// `fdatasync`.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    info: Info,
}

impl FileDisk {
    /// Opens `path`, read-only or not.
    pub fn open(path: &Path, writable: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("{}: cannot stat", path.display()))?
            .len();
        Ok(FileDisk {
            file,
            info: Info {
                block_size: SECTOR,
                blocks: len / u64::from(SECTOR),
                read_only: !writable,
                flush: true,
                max_request_blocks: 1 << 16,
                max_in_flight: 1,
            },
        })
    }

    fn check(&self, block: u64, len: usize) -> Result<u64, blockdev::Error> {
        let size = u64::from(SECTOR);
        let count = len as u64 / size;
        if !(len as u64).is_multiple_of(size) {
            return Err(blockdev::Error::BadLength { len });
        }
        match block.checked_add(count) {
            Some(end) if end <= self.info.blocks => Ok(block * size),
            _ => Err(blockdev::Error::OutOfRange {
                block,
                count: u32::try_from(count).unwrap_or(u32::MAX),
            }),
        }
    }
}

impl BlockIo for FileDisk {
    fn info(&self) -> Info {
        self.info
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), blockdev::Error> {
        let at = self.check(block, buf.len())?;
        self.file
            .read_exact_at(buf, at)
            .map_err(|_| blockdev::Error::Io { block })
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), blockdev::Error> {
        if self.info.read_only {
            return Err(blockdev::Error::ReadOnly);
        }
        let at = self.check(block, buf.len())?;
        self.file
            .write_all_at(buf, at)
            .map_err(|_| blockdev::Error::Io { block })
    }

    fn flush(&mut self) -> Result<(), blockdev::Error> {
        self.file
            .sync_data()
            .map_err(|_| blockdev::Error::Io { block: 0 })
    }
}

/// Mounts `image` read-only, with errors that name it.
fn mount_ro(image: &Path) -> Result<Filesystem<FileDisk>> {
    if !image.exists() {
        bail!("{}: no such file", image.display());
    }
    let disk = FileDisk::open(image, false)?;
    match Filesystem::mount(disk) {
        Ok((fs, _)) => Ok(fs),
        // Read-only, a blank disk is not formatted: say what it is.
        Err(sdfs::Error::ReadOnly) => {
            bail!(
                "{}: a blank image (all zero), not formatted",
                image.display()
            )
        }
        Err(e) => bail!("{}: {e}", image.display()),
    }
}

/// Files and directories an operation went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

/// Makes `image` (a new file of `size` bytes; with `force`, an existing one is replaced)
/// holding the tree under `from`. On an error, the image is removed.
pub fn create(image: &Path, from: &Path, size: u64, force: bool) -> Result<Counts> {
    if !from.is_dir() {
        bail!("{}: not a directory", from.display());
    }
    if size < sdfs::BLOCK as u64 * 16 || !size.is_multiple_of(sdfs::BLOCK as u64) {
        bail!("--size {size}: an image is a whole number of 4 KiB blocks, at least 64 KiB");
    }
    if image.exists() && !force {
        bail!(
            "{}: exists (remove it, or pass --force to replace it)",
            image.display()
        );
    }
    let result = (|| {
        let file =
            File::create(image).with_context(|| format!("{}: cannot create", image.display()))?;
        file.set_len(size)
            .with_context(|| format!("{}: cannot size to {size} bytes", image.display()))?;
        drop(file);
        let disk = FileDisk::open(image, true)?;
        let (mut fs, mounted) =
            Filesystem::mount(disk).map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))?;
        debug_assert!(mounted.formatted);
        let mut counts = Counts::default();
        copy_in(&mut fs, from, "", &mut counts).map_err(|e| {
            if e.downcast_ref::<sdfs::Error>() == Some(&sdfs::Error::NoSpace) {
                anyhow::anyhow!(
                    "{}: {} does not fit in {size} bytes (pass a larger --size)",
                    image.display(),
                    from.display()
                )
            } else {
                e
            }
        })?;
        fs.sync()
            .map_err(|e| anyhow::anyhow!("{}: sync: {e}", image.display()))?;
        Ok(counts)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(image);
    }
    result
}

/// Sync after this many bytes of writes, so memory stays bounded on large trees.
const SYNC_EVERY: u64 = 16 << 20;

fn copy_in(fs: &mut Filesystem<FileDisk>, dir: &Path, at: &str, counts: &mut Counts) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{}: cannot read", dir.display()))?;
    entries.sort();
    let mut pending = 0u64;
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            bail!("{}: the name is not UTF-8", path.display());
        };
        let inside = format!("{at}/{name}");
        let meta =
            std::fs::metadata(&path).with_context(|| format!("{}: cannot stat", path.display()))?;
        let named = |e: sdfs::Error| anyhow::Error::new(e).context(format!("{}", path.display()));
        if meta.is_dir() {
            fs.create_dir(&inside).map_err(named)?;
            counts.dirs += 1;
            copy_in(fs, &path, &inside, counts)?;
        } else if meta.is_file() {
            let data =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let f = fs.create(&inside).map_err(named)?;
            for (i, chunk) in data.chunks(1 << 20).enumerate() {
                fs.write(f, (i << 20) as u64, chunk).map_err(named)?;
                pending += chunk.len() as u64;
                if pending >= SYNC_EVERY {
                    fs.sync().map_err(named)?;
                    pending = 0;
                }
            }
            counts.files += 1;
            counts.bytes += data.len() as u64;
        } else {
            bail!("{}: not a file or a directory", path.display());
        }
    }
    Ok(())
}

/// What `path` in `image` names: the entries of a directory, or the file itself.
pub fn ls(image: &Path, path: &str) -> Result<Vec<DirEntry>> {
    let mut fs = mount_ro(image)?;
    let stat = fs
        .stat(path)
        .map_err(|e| anyhow::anyhow!("{}: {path}: {e}", image.display()))?;
    if stat.kind == Kind::File {
        let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path);
        return Ok(vec![DirEntry {
            name: name.to_string(),
            kind: Kind::File,
            size: stat.size,
        }]);
    }
    let mut entries = fs
        .list(path)
        .map_err(|e| anyhow::anyhow!("{}: {path}: {e}", image.display()))?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// The file at `path` in `image`.
pub fn cat(image: &Path, path: &str) -> Result<Vec<u8>> {
    let mut fs = mount_ro(image)?;
    fs.read_file(path)
        .map_err(|e| anyhow::anyhow!("{}: {path}: {e}", image.display()))
}

/// Copies every file and directory of `image` under `dest` (which must not exist, or be an
/// empty directory).
pub fn extract(image: &Path, dest: &Path) -> Result<Counts> {
    let mut fs = mount_ro(image)?;
    if dest.exists()
        && std::fs::read_dir(dest)
            .with_context(|| format!("{}: not a directory", dest.display()))?
            .next()
            .is_some()
    {
        bail!("{}: not empty", dest.display());
    }
    std::fs::create_dir_all(dest).with_context(|| format!("{}: cannot create", dest.display()))?;
    let mut counts = Counts::default();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let entries = fs
            .list(&dir)
            .map_err(|e| anyhow::anyhow!("{}: {dir}/: {e}", image.display()))?;
        for e in entries {
            let inside = format!("{dir}/{}", e.name);
            let out = dest.join(inside.trim_start_matches('/'));
            match e.kind {
                Kind::Dir => {
                    std::fs::create_dir(&out)
                        .with_context(|| format!("{}: cannot create", out.display()))?;
                    counts.dirs += 1;
                    stack.push(inside);
                }
                Kind::File => {
                    let f = fs
                        .open(&inside)
                        .map_err(|e| anyhow::anyhow!("{}: {inside}: {e}", image.display()))?;
                    let mut file = File::create(&out)
                        .with_context(|| format!("{}: cannot create", out.display()))?;
                    let mut buf = vec![0u8; 1 << 20];
                    let mut off = 0u64;
                    loop {
                        let n = fs
                            .read(f, off, &mut buf)
                            .map_err(|e| anyhow::anyhow!("{}: {inside}: {e}", image.display()))?;
                        if n == 0 {
                            break;
                        }
                        file.write_all(&buf[..n])
                            .with_context(|| format!("{}: cannot write", out.display()))?;
                        off += n as u64;
                    }
                    counts.files += 1;
                    counts.bytes += off;
                }
            }
        }
    }
    Ok(counts)
}

/// Checks `image` as a mount does, and every data block too: the report, or what is wrong.
pub fn check(image: &Path) -> Result<Report> {
    if !image.exists() {
        bail!("{}: no such file", image.display());
    }
    let disk = FileDisk::open(image, false)?;
    sdfs::check(disk).map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))
}

/// The report as `check` prints it.
pub fn format_report(image: &Path, r: &Report) -> String {
    let slot = |s: &sdfs::Slot| match s {
        sdfs::Slot::Valid(g) => format!("generation {g}"),
        sdfs::Slot::Blank => "blank".into(),
        sdfs::Slot::Foreign => "foreign".into(),
        sdfs::Slot::BadChecksum => "bad checksum (a commit cut short, or damage)".into(),
        sdfs::Slot::Version(v) => format!("version {v}"),
        sdfs::Slot::Invalid => "invalid".into(),
        sdfs::Slot::Torn(g) => {
            format!("generation {g}, cut short (its blocks did not all reach the disk)")
        }
    };
    format!(
        "{}: ok\n  superblock: generation {} (slot 0: {}; slot 1: {})\n  files: {}, directories: {}, bytes in files: {}\n  blocks: {} of 4096 bytes, {} used, {} free\n  inode records: {}\n  checked: every metadata block and {} data blocks, no inconsistency found",
        image.display(),
        r.generation,
        slot(&r.slots[0]),
        slot(&r.slots[1]),
        r.files,
        r.dirs,
        r.bytes,
        r.blocks,
        r.used,
        r.blocks - r.used,
        r.inodes,
        r.data_blocks
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "xtask-disk-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("scratch dir");
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("www/css")).expect("mkdir");
        std::fs::create_dir_all(root.join("empty")).expect("mkdir");
        std::fs::write(root.join("www/index.html"), b"<h1>hi</h1>\n").expect("write");
        std::fs::write(root.join("www/css/site.css"), b"body{}").expect("write");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("big.bin"), big).expect("write");
        std::fs::write(root.join("zero"), b"").expect("write");
    }

    fn same_tree(a: &Path, b: &Path) {
        let mut left: Vec<_> = std::fs::read_dir(a)
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        let mut right: Vec<_> = std::fs::read_dir(b)
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        left.sort();
        right.sort();
        assert_eq!(left, right, "{} vs {}", a.display(), b.display());
        for name in left {
            let (x, y) = (a.join(&name), b.join(&name));
            if x.is_dir() {
                assert!(y.is_dir());
                same_tree(&x, &y);
            } else {
                assert_eq!(
                    std::fs::read(&x).expect("read"),
                    std::fs::read(&y).expect("read")
                );
            }
        }
    }

    #[test]
    fn round_trip_create_ls_cat_extract_check() {
        let s = Scratch::new("roundtrip");
        let src = s.0.join("src");
        tree(&src);
        let img = s.0.join("disk.img");
        let counts = create(&img, &src, 4 << 20, false).expect("creates");
        assert_eq!(counts.files, 4);
        assert_eq!(counts.dirs, 3);
        assert_eq!(std::fs::metadata(&img).expect("image").len(), 4 << 20);
        // refused over an existing image without --force
        let err = create(&img, &src, 4 << 20, false).expect_err("exists");
        assert!(format!("{err:#}").contains("exists"), "{err:#}");
        let names: Vec<String> = ls(&img, "/")
            .expect("ls")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["big.bin", "empty", "www", "zero"]);
        let www = ls(&img, "/www").expect("ls www");
        assert_eq!(www.len(), 2);
        let file = ls(&img, "/www/index.html").expect("ls a file");
        assert_eq!(file[0].size, 12);
        assert_eq!(cat(&img, "/www/index.html").expect("cat"), b"<h1>hi</h1>\n");
        let out = s.0.join("out");
        let back = extract(&img, &out).expect("extracts");
        assert_eq!(back, counts);
        same_tree(&src, &out);
        let err = extract(&img, &out).expect_err("not empty");
        assert!(format!("{err:#}").contains("not empty"));
        let report = check(&img).expect("checks");
        assert_eq!((report.files, report.dirs), (4, 4));
        assert!(report.data_blocks >= 74);
        let text = format_report(&img, &report);
        assert!(text.contains(": ok"), "{text}");
        // errors name what is wrong
        let err = cat(&img, "/nope").expect_err("missing path");
        assert!(
            format!("{err:#}").contains("/nope: no such file or directory"),
            "{err:#}"
        );
        let err = cat(&img, "/www").expect_err("a directory");
        assert!(format!("{err:#}").contains("is a directory"), "{err:#}");
        let err = ls(&s.0.join("missing.img"), "/").expect_err("missing image");
        assert!(
            format!("{err:#}").contains("missing.img: no such file"),
            "{err:#}"
        );
        // too small
        let err = create(&s.0.join("small.img"), &src, 128 << 10, false).expect_err("too small");
        assert!(format!("{err:#}").contains("does not fit"), "{err:#}");
        assert!(!s.0.join("small.img").exists(), "a failed image is removed");
    }

    #[test]
    fn check_refuses_corrupt_and_foreign_images() {
        let s = Scratch::new("check");
        let src = s.0.join("src");
        tree(&src);
        let img = s.0.join("disk.img");
        create(&img, &src, 1 << 20, false).expect("creates");
        let good = std::fs::read(&img).expect("image");
        // a data block damaged: mount still works (data is checked on read), check finds it
        let report = check(&img).expect("good");
        assert!(report.used > 70);
        let mut bad = good.clone();
        // the big file's data: its bytes (i % 251) are somewhere; damage one byte of them
        let at = bad
            .windows(8)
            .position(|w| w == [10u8, 11, 12, 13, 14, 15, 16, 17])
            .expect("data on disk");
        bad[at] ^= 0xff;
        std::fs::write(&img, &bad).expect("write");
        let err = check(&img).expect_err("damaged data");
        assert!(
            format!("{err:#}").contains("bad checksum in block"),
            "{err:#}"
        );
        // both superblocks damaged
        let mut bad = good.clone();
        bad[100] ^= 1;
        bad[4096 + 100] ^= 1;
        std::fs::write(&img, &bad).expect("write");
        let err = check(&img).expect_err("damaged superblocks");
        assert!(
            format!("{err:#}").contains("bad checksum in the superblock"),
            "{err:#}"
        );
        // something else entirely, never written by ls or check
        let foreign: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(&img, &foreign).expect("write");
        let err = check(&img).expect_err("foreign");
        assert!(
            format!("{err:#}").contains("not a Stardust filesystem"),
            "{err:#}"
        );
        let err = ls(&img, "/").expect_err("foreign");
        assert!(
            format!("{err:#}").contains("not a Stardust filesystem"),
            "{err:#}"
        );
        assert_eq!(std::fs::read(&img).expect("read"), foreign, "never written");
        // blank
        std::fs::write(&img, vec![0u8; 1 << 20]).expect("write");
        let err = ls(&img, "/").expect_err("blank");
        assert!(format!("{err:#}").contains("blank image"), "{err:#}");
    }
}
