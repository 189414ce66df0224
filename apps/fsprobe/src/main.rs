//! Fsprobe: the filesystem (`filesystem = "sdfs"`, `stardust::fs`). Prints what the mount at
//! boot came to (`fsprobe: status ...`), then by its arguments (in order; none: `write`):
//!
//! - `write`: under `/probe`, makes directories (`create_dir_all`), a file by `fs::write`, a log
//!   by `append` (twice, through two opens), a file by `File::create` that it cuts
//!   (`set_len`), seeks in and renames, a file and a directory it removes; lists `/probe`,
//!   syncs, and checks everything it made (`fsprobe: wrote and synced N entries`);
//! - `verify`: only checks what `write` left (an earlier boot's: persistence);
//! - `fill`: writes a file until the disk is full, prints the error (`fsprobe: full: no space
//!   left on the disk`), checks that reads still work, removes the file and syncs;
//! - `cat=PATH`: prints the file (`fsprobe: cat PATH: N bytes: TEXT`, TEXT up to 200 bytes);
//! - `ls=PATH`: prints the directory's entries, one line each (`fsprobe: ls PATH: NAME file|dir
//!   LEN`);
//! - `big=PATH:KIB`: writes KIB KiB of a pattern (`byte(i) = i * 7 % 251`) at PATH and syncs.
//!
//! Exit statuses: 0 done; 1 a check failed; 2 a bad argument; 3 an operation failed (the error
//! printed: `fsprobe: OP: ERROR`; nothing mounted, full disk, ...).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use embedded_io::{Read, Seek, SeekFrom, Write};
use stardust::fs::{self, File, OpenOptions, Status};
use stardust::println;

/// A failed step: the status and what to print.
struct Fail(u8, String);

fn op<T>(what: &str, r: fs::Result<T>) -> Result<T, Fail> {
    r.map_err(|e| Fail(3, format!("{what}: {e}")))
}

fn check(ok: bool, what: &str) -> Result<(), Fail> {
    if ok {
        Ok(())
    } else {
        Err(Fail(1, format!("check failed: {what}")))
    }
}

const HELLO: &[u8] = b"hello from fsprobe\n";
const LOG: &[u8] = b"first line\nsecond line\n";

/// The byte at `i` of `big=`'s pattern (tests compute the same).
fn pattern(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

fn write() -> Result<(), Fail> {
    op("create_dir_all", fs::create_dir_all("/probe/sub/deeper"))?;
    op("create_dir_all again", fs::create_dir_all("probe/sub"))?;
    op("write hello", fs::write("/probe/hello.txt", HELLO))?;
    for line in ["first line\n", "second line\n"] {
        let mut log = op(
            "open log",
            OpenOptions::new()
                .append(true)
                .create(true)
                .open("/probe/log.txt"),
        )?;
        op("append", log.write_all(line.as_bytes()))?;
    }
    let mut tmp = op("create tmp", File::create("/probe/tmp.bin"))?;
    let data: Vec<u8> = (0..10_000).map(pattern).collect();
    op("write tmp", tmp.write_all(&data))?;
    op("set_len", tmp.set_len(100))?;
    check(
        op("metadata tmp", tmp.metadata())?.len() == 100,
        "set_len cut to 100",
    )?;
    op("seek", tmp.seek(SeekFrom::End(0)))?;
    op("write tail", tmp.write_all(b"END"))?;
    op(
        "rename",
        fs::rename("/probe/tmp.bin", "/probe/sub/data.bin"),
    )?;
    op("write gone", fs::write("/probe/gone", b"x"))?;
    op("remove_file", fs::remove_file("/probe/gone"))?;
    op("create_dir empty", fs::create_dir("/probe/empty"))?;
    op("remove_dir", fs::remove_dir("/probe/empty"))?;
    check(
        fs::create_dir("/probe").err() == Some(fs::Error::AlreadyExists),
        "create_dir of an existing directory says AlreadyExists",
    )?;
    check(
        fs::remove_dir("/probe/sub").err() == Some(fs::Error::NotEmpty),
        "remove_dir of a full directory says NotEmpty",
    )?;
    check(
        fs::read("/probe/gone").err() == Some(fs::Error::NotFound),
        "a removed file is gone",
    )?;
    let truncated = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open("/probe/hello.txt");
    op(
        "truncate",
        truncated.and_then(|mut f| f.write_all(HELLO).map(|_| f)),
    )?;
    op("sync", fs::sync())?;
    let n = op("read_dir", fs::read_dir("/probe"))?.len();
    verify()?;
    println!("fsprobe: wrote and synced {n} entries");
    Ok(())
}

fn verify() -> Result<(), Fail> {
    check(
        op("read hello", fs::read("/probe/hello.txt"))? == HELLO,
        "hello.txt",
    )?;
    check(
        op("read log", fs::read("probe/log.txt"))? == LOG,
        "log.txt holds both appends",
    )?;
    let data = op("read data", fs::read("/probe/sub/data.bin"))?;
    let mut want: Vec<u8> = (0..100).map(pattern).collect();
    want.extend_from_slice(b"END");
    check(data == want, "sub/data.bin: 100 bytes cut, then END")?;
    let mut f = op("open data", File::open("/probe/sub/data.bin"))?;
    // Through the embedded-io traits (the inherent methods are the same calls).
    op("seek", Seek::seek(&mut f, SeekFrom::Start(98)))?;
    let mut buf = [0u8; 16];
    let n = op("read", Read::read(&mut f, &mut buf))?;
    check(
        buf[..n] == [pattern(98), pattern(99), b'E', b'N', b'D'],
        "seek then read",
    )?;
    let mut names: Vec<String> = op("read_dir", fs::read_dir("/probe"))?
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    check(
        names == ["hello.txt", "log.txt", "sub"],
        "the entries of /probe",
    )?;
    check(
        op("metadata", fs::metadata("/probe/sub"))?.is_dir(),
        "sub is a directory",
    )?;
    println!("fsprobe: verified /probe ({} entries)", names.len());
    Ok(())
}

fn fill() -> Result<(), Fail> {
    op("write keep", fs::write("/keep.txt", b"still readable"))?;
    op("sync", fs::sync())?;
    let mut f = op("create fill", File::create("/fill.bin"))?;
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut written = 0u64;
    let e = loop {
        match f.write_all(&chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        if written.is_multiple_of(1 << 20) {
            // Keep the changes in memory bounded.
            if let Err(e) = fs::sync() {
                break e;
            }
        }
    };
    println!("fsprobe: full after {} KiB: {e}", written / 1024);
    check(e == fs::Error::NoSpace, "a full disk says NoSpace")?;
    let keep = op("read after full", fs::read("/keep.txt"))?;
    check(keep == b"still readable", "reads work on a full disk")?;
    println!("fsprobe: read after full ok");
    op("remove fill", fs::remove_file("/fill.bin"))?;
    op("sync", fs::sync())?;
    println!("fsprobe: removed the fill, synced");
    Ok(())
}

fn cat(path: &str) -> Result<(), Fail> {
    let data = op(&format!("cat {path}"), fs::read(path))?;
    let text = String::from_utf8_lossy(&data[..data.len().min(200)]);
    println!(
        "fsprobe: cat {path}: {} bytes: {}",
        data.len(),
        text.trim_end()
    );
    Ok(())
}

fn ls(path: &str) -> Result<(), Fail> {
    for e in op(&format!("ls {path}"), fs::read_dir(path))? {
        let kind = match e.kind {
            fs::Kind::File => "file",
            fs::Kind::Dir => "dir",
        };
        println!("fsprobe: ls {path}: {} {kind} {}", e.name, e.len);
    }
    Ok(())
}

fn big(arg: &str) -> Result<(), Fail> {
    let (path, kib) = arg
        .rsplit_once(':')
        .and_then(|(p, k)| Some((p, k.parse::<usize>().ok()?)))
        .ok_or_else(|| Fail(2, format!("big={arg}: expected big=PATH:KIB")))?;
    let mut f = op("create big", File::create(path))?;
    let mut block = [0u8; 1024];
    for k in 0..kib {
        for (i, b) in block.iter_mut().enumerate() {
            *b = pattern(k * 1024 + i);
        }
        op("write big", f.write_all(&block))?;
    }
    op("sync", fs::sync())?;
    println!("fsprobe: wrote {path}: {kib} KiB, synced");
    Ok(())
}

#[stardust::main]
fn main() -> u8 {
    match fs::status() {
        Status::Mounted(m) => println!(
            "fsprobe: status mounted {}, generation {}{}",
            fs::NAME,
            m.generation,
            if m.formatted {
                ", formatted this boot"
            } else {
                ""
            }
        ),
        Status::NoDisk => println!("fsprobe: status no disk"),
        Status::Refused(e) => println!("fsprobe: status refused: {e}"),
    }
    let mut args: Vec<&str> = stardust::args().collect();
    if args.is_empty() {
        args.push("write");
    }
    for arg in args {
        let r = match arg.split_once('=') {
            None if arg == "write" => write(),
            None if arg == "verify" => verify(),
            None if arg == "fill" => fill(),
            Some(("cat", p)) => cat(p),
            Some(("ls", p)) => ls(p),
            Some(("big", a)) => big(a),
            _ => Err(Fail(
                2,
                format!(
                    "bad argument {arg:?}; usage: fsprobe [write] [verify] [fill] [cat=PATH] \
                     [ls=PATH] [big=PATH:KIB]"
                ),
            )),
        };
        if let Err(Fail(code, text)) = r {
            println!("fsprobe: {text}");
            return code;
        }
    }
    if let Ok(u) = fs::usage() {
        println!(
            "fsprobe: usage {} of {} KiB",
            u.used * u64::from(u.block_size) / 1024,
            u.blocks * u64::from(u.block_size) / 1024
        );
    }
    0
}
