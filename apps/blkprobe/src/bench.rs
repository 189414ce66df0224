//! `blkprobe bench layer=driver bytes=B seconds=S runs=R qd=Q`: the Stardust side of
//! `cargo xtask bench disk` (the contract is `xtask/src/bench/disk.rs`'s `probe_args`).
//!
//! The region is the disk's first `B` bytes. It is written whole first (not reported); then,
//! `R` times over: sequential 1 MiB writes, sequential 1 MiB reads, random aligned 4 KiB writes,
//! random 4 KiB reads, each for about `S` seconds, a write workload's time including its final
//! flush. After each, one line `bench <pattern> <bytes> <ns>`; at the end `bench done`; a
//! failure prints `bench error <what>` and ends the run (status 5).
//!
//! What it measures, one call at a time (`qd` above 1 is refused: the facade has no asynchronous
//! submission yet):
//! - `layer=driver`: the driver through `stardust::block`'s `BlockIo`. A 1 MiB call is split
//!   into requests of the device's largest size, all in flight at once (the `Blocking`
//!   adapter), so sequential workloads have several requests in flight; 4 KiB calls have one.
//!   It writes the raw disk: build with `--set filesystem=none` to keep the kernel from
//!   mounting a filesystem there first (harmless for the bench's fresh images either way).
//! - `layer=fs`: one file, `/blkprobe.bench`, of `B` bytes through `stardust::fs` (images with
//!   a filesystem only). The filesystem keeps changes in memory until a sync, so the write
//!   workloads also sync every 8 MiB (Linux's page cache writes back in the
//!   background the same way), and their time includes the last sync.

use alloc::vec;
use stardust::block::{BlockIo, disk};

use stardust::println;

/// Bytes of a sequential request.
const SEQ: usize = 1 << 20;
/// Bytes of a random request.
const RAND: usize = 4096;

/// Where the workloads go: the raw disk, or a file.
trait Target {
    fn write_at(&mut self, at: u64, data: &[u8]) -> Result<(), alloc::string::String>;
    fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<(), alloc::string::String>;
    /// The durability point (a flush, a sync).
    fn flush(&mut self) -> Result<(), alloc::string::String>;
    /// Whether writes of `written` bytes so far call for a flush before going on.
    fn flush_due(&self, _written: u64) -> bool {
        false
    }
}

struct Driver {
    disk: stardust::block::Disk,
    size: u64,
}

impl Target for Driver {
    fn write_at(&mut self, at: u64, data: &[u8]) -> Result<(), alloc::string::String> {
        self.disk
            .write(at / self.size, data)
            .map_err(|e| alloc::format!("{e}"))
    }
    fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<(), alloc::string::String> {
        self.disk
            .read(at / self.size, buf)
            .map_err(|e| alloc::format!("{e}"))
    }
    fn flush(&mut self) -> Result<(), alloc::string::String> {
        self.disk.flush().map_err(|e| alloc::format!("{e}"))
    }
}

stardust::if_filesystem! {
    {
        /// The filesystem layer's write workloads sync every this many bytes.
        const SYNC_EVERY: u64 = 8 << 20;

        struct FileTarget(stardust::fs::File);

        impl Target for FileTarget {
            fn write_at(&mut self, at: u64, data: &[u8]) -> Result<(), alloc::string::String> {
                let f = &mut self.0;
                f.seek(stardust::fs::SeekFrom::Start(at)).map_err(|e| alloc::format!("{e}"))?;
                let mut rest = data;
                while !rest.is_empty() {
                    let n = f.write(rest).map_err(|e| alloc::format!("{e}"))?;
                    rest = &rest[n..];
                }
                Ok(())
            }
            fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<(), alloc::string::String> {
                let mut done = 0;
                while done < buf.len() {
                    let n = self.0.read_at(at + done as u64, &mut buf[done..]).map_err(|e| alloc::format!("{e}"))?;
                    if n == 0 {
                        return Err(alloc::format!("the file ends at byte {}", at + done as u64));
                    }
                    done += n;
                }
                Ok(())
            }
            fn flush(&mut self) -> Result<(), alloc::string::String> {
                self.0.sync_all().map_err(|e| alloc::format!("{e}"))
            }
            fn flush_due(&self, written: u64) -> bool {
                written > 0 && written.is_multiple_of(SYNC_EVERY)
            }
        }

        fn file_target() -> Result<alloc::boxed::Box<dyn Target>, alloc::string::String> {
            let f = stardust::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open("/blkprobe.bench")
                .map_err(|e| alloc::format!("/blkprobe.bench: {e}"))?;
            Ok(alloc::boxed::Box::new(FileTarget(f)))
        }
    }
    else {
        fn file_target() -> Result<alloc::boxed::Box<dyn Target>, alloc::string::String> {
            Err("layer=fs: this image has no filesystem (profile storage, filesystem = \"sdfs\")".into())
        }
    }
}

fn now() -> u64 {
    stardust::time::now_ns().unwrap_or(0)
}

/// A small deterministic generator for the random offsets.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn fail(what: impl core::fmt::Display) -> u8 {
    println!("bench error {what}");
    5
}

/// Runs the bench with the arguments after `bench`.
pub fn run(args: &[&str]) -> u8 {
    let (mut layer, mut bytes, mut seconds, mut runs, mut qd) =
        ("driver", 64u64 << 20, 5u64, 1usize, 1usize);
    for arg in args {
        let ok = match arg.split_once('=') {
            Some(("layer", v)) => {
                layer = v;
                true
            }
            Some(("bytes", v)) => v.parse().map(|n| bytes = n).is_ok(),
            Some(("seconds", v)) => v.parse().map(|n| seconds = n).is_ok(),
            Some(("runs", v)) => v.parse().map(|n| runs = n).is_ok(),
            Some(("qd", v)) => v.parse().map(|n| qd = n).is_ok(),
            _ => false,
        };
        if !ok {
            return fail(format_args!(
                "bad argument {arg:?}; usage: blkprobe bench layer=driver|fs bytes=B seconds=S runs=R qd=1"
            ));
        }
    }
    if qd != 1 {
        return fail(format_args!(
            "qd={qd}: one call in flight at a time (the facade's BlockIo is synchronous)"
        ));
    }
    let Some(disk) = disk() else {
        return fail("no disk");
    };
    let info = disk.info();
    let region = bytes / SEQ as u64 * SEQ as u64;
    let room = match layer {
        "driver" => info.bytes(),
        // Room for the filesystem's metadata and its copy-on-write.
        _ => info.bytes() / 2,
    };
    if region == 0 || region > room {
        return fail(format_args!(
            "bytes={bytes}: the region must be at least 1 MiB and fit the disk ({room} bytes for layer={layer})"
        ));
    }
    let mut target: alloc::boxed::Box<dyn Target> = match layer {
        "driver" => alloc::boxed::Box::new(Driver {
            disk,
            size: u64::from(info.block_size),
        }),
        "fs" => match file_target() {
            Ok(t) => t,
            Err(e) => return fail(e),
        },
        other => return fail(format_args!("layer={other}: layer=driver or layer=fs")),
    };
    let mut buf = vec![0x5au8; SEQ];
    // The whole region written first, so reads read written blocks.
    let mut at = 0;
    while at < region {
        if let Err(e) = target.write_at(at, &buf) {
            return fail(format_args!("prefill at byte {at}: {e}"));
        }
        at += SEQ as u64;
        if target.flush_due(at)
            && let Err(e) = target.flush()
        {
            return fail(format_args!("prefill sync: {e}"));
        }
    }
    if let Err(e) = target.flush() {
        return fail(format_args!("prefill flush: {e}"));
    }
    let limit = seconds.max(1) * 1_000_000_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..runs.max(1) {
        for (name, write, seq) in [
            ("seqwrite", true, true),
            ("seqread", false, true),
            ("randwrite", true, false),
            ("randread", false, false),
        ] {
            let len = if seq { SEQ } else { RAND };
            let t0 = now();
            let (mut moved, mut offset) = (0u64, 0u64);
            while now().saturating_sub(t0) < limit {
                let at = if seq {
                    let at = offset;
                    offset = (offset + SEQ as u64) % region;
                    at
                } else {
                    rng.below(region / RAND as u64) * RAND as u64
                };
                let result = if write {
                    target.write_at(at, &buf[..len])
                } else {
                    target.read_at(at, &mut buf[..len])
                };
                if let Err(e) = result {
                    return fail(format_args!("{name} at byte {at}: {e}"));
                }
                moved += len as u64;
                if write
                    && target.flush_due(moved)
                    && let Err(e) = target.flush()
                {
                    return fail(format_args!("{name} sync: {e}"));
                }
            }
            if write && let Err(e) = target.flush() {
                return fail(format_args!("{name} flush: {e}"));
            }
            println!("bench {name} {moved} {}", now().saturating_sub(t0).max(1));
        }
    }
    println!("bench done");
    0
}
