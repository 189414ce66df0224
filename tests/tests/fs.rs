//! The filesystem end to end, on whole images under QEMU (TCG): profile `storage`
//! (`filesystem = "sdfs"` on virtio-blk), apps `fsprobe` and `httpd`, on `q35` (virtio-blk-pci),
//! `microvm` (virtio-mmio) and the universal image on `q35`, each with its own image file.
//!
//! - a blank disk is formatted at boot (the log line), what one boot wrote (directories,
//!   writes, appends, a cut, a rename, removals, then a sync) the next boot reads back, and the
//!   host's `cargo xtask disk` code (`xtask::disk::{check, ls, cat}`) finds it in the file;
//! - an image made by `cargo xtask disk create --from DIR` is read by the guest;
//! - a foreign disk (random bytes) is refused with the clear error, every call fails saying why,
//!   and the file is byte-for-byte unchanged; so is a damaged one (both superblocks), saying so;
//! - a full disk gives the clear "no space" error, reads still work, and space comes back;
//! - httpd serves files of an xtask-made image (`GET /files/...`, streamed, HEAD, 404s) through
//!   `--forward` user networking, to `curl` when installed and to a plain socket always.
//!
//! Each test runs its machines in parallel threads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stardust_tests::{
    Boot, Machine, Run, Target, assert_exit, free_port, line_with, on_targets, random_bytes,
};

/// The image files' size (a blank one is formatted at boot).
const IMAGE_BYTES: u64 = 8 << 20;
/// What fsprobe's `write` leaves in `/probe/log.txt` (two appends).
const LOG: &[u8] = b"first line\nsecond line\n";

const Q35: Target = Target {
    name: "q35",
    machine: Machine::Q35,
    set: &[],
};
const MICROVM: Target = Target {
    name: "microvm",
    machine: Machine::Microvm,
    set: &[],
};
const UNIVERSAL_Q35: Target = Target {
    name: "universal on q35",
    machine: Machine::Q35,
    // Both disk drivers in the image (virtio-blk and blkfront), virtio-blk taken at boot.
    set: &["platform=universal", "console=auto", "block_device=auto"],
};

/// A temporary path (an image file or a directory), removed when dropped.
struct Temp(PathBuf);

impl Temp {
    fn new(name: &str) -> Temp {
        Temp(std::env::temp_dir().join(format!(
            "stardust-fs-{}-{}",
            std::process::id(),
            name.replace(' ', "-")
        )))
    }

    /// A zeroed image file of `bytes`.
    fn blank(name: &str, bytes: u64) -> Temp {
        let t = Temp::new(name);
        let file = std::fs::File::create(&t.0).expect("create the image");
        file.set_len(bytes).expect("size the image");
        t
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An image made by `cargo xtask disk create --from DIR` of `files` (path, bytes).
fn xtask_image(name: &str, files: &[(&str, &[u8])]) -> Temp {
    let dir = Temp::new(&format!("{name}-dir"));
    for (path, bytes) in files {
        let at = dir.path().join(path);
        std::fs::create_dir_all(at.parent().expect("a parent")).expect("mkdir");
        std::fs::write(at, bytes).expect("write a file");
    }
    let image = Temp::new(&format!("{name}.img"));
    xtask::disk::create(image.path(), dir.path(), IMAGE_BYTES, false)
        .unwrap_or_else(|e| panic!("cargo xtask disk create: {e:#}"));
    image
}

fn fsprobe(t: Target, image: &Temp, args: &[&str]) -> Boot {
    let boot = Run::new("fsprobe")
        .profile("storage")
        .machine(t.machine)
        .set(t.set)
        .args(args)
        .disk(image.path(), false)
        .boot();
    for bad in ["PANIC", "EXCEPTION"] {
        assert!(
            !boot.stdout.contains(bad),
            "{bad} on the console\n{}",
            boot.stdout
        );
    }
    boot
}

#[test]
fn a_blank_disk_is_formatted_and_what_one_boot_wrote_the_next_reads_and_the_host_sees() {
    on_targets(&[Q35, MICROVM, UNIVERSAL_Q35], |t| {
        let image = Temp::blank(t.name, IMAGE_BYTES);
        let first = fsprobe(t, &image, &["write"]);
        assert_exit(&first, 0);
        line_with(&first, &["fs: sdfs: the disk was blank: formatted"]);
        line_with(&first, &["fs: sdfs: mounted, generation 1,"]);
        line_with(
            &first,
            &["fsprobe: status mounted sdfs", "formatted this boot"],
        );
        line_with(&first, &["fsprobe: wrote and synced 3 entries"]);
        assert!(!first.stdout.contains("[ERROR"), "{}", first.stdout);

        let second = fsprobe(t, &image, &["verify", "cat=/probe/log.txt"]);
        assert_exit(&second, 0);
        assert!(
            !second.stdout.contains("formatted"),
            "formatted once only\n{}",
            second.stdout
        );
        line_with(&second, &["fs: sdfs: mounted, generation"]);
        line_with(&second, &["fsprobe: verified /probe (3 entries)"]);
        line_with(
            &second,
            &["fsprobe: cat /probe/log.txt: 23 bytes: first line"],
        );

        // The host's `cargo xtask disk` code reads what the guest wrote.
        let report = xtask::disk::check(image.path())
            .unwrap_or_else(|e| panic!("cargo xtask disk check: {e:#}"));
        assert_eq!((report.files, report.dirs), (3, 4), "{report:?}");
        let names: Vec<String> = xtask::disk::ls(image.path(), "/probe")
            .expect("cargo xtask disk ls")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["hello.txt", "log.txt", "sub"]);
        let log = xtask::disk::cat(image.path(), "/probe/log.txt").expect("cargo xtask disk cat");
        assert_eq!(log, LOG);
        let data = xtask::disk::cat(image.path(), "/probe/sub/data.bin").expect("cat data.bin");
        assert_eq!(data.len(), 103);
        assert!(data.ends_with(b"END"));
    });
}

#[test]
fn an_image_made_by_xtask_is_read_by_the_guest() {
    let big = random_bytes(20_000, 7);
    let image = xtask_image(
        "made",
        &[("notes.txt", b"made on the host\n"), ("d/e/big.bin", &big)],
    );
    let boot = fsprobe(Q35, &image, &["cat=/notes.txt", "ls=/d/e", "write"]);
    assert_exit(&boot, 0);
    assert!(!boot.stdout.contains("formatted"), "{}", boot.stdout);
    line_with(
        &boot,
        &["fsprobe: cat /notes.txt: 17 bytes: made on the host"],
    );
    line_with(&boot, &["fsprobe: ls /d/e: big.bin file 20000"]);
    // The guest's changes went into the host's image, which still checks out, beside its files.
    xtask::disk::check(image.path()).unwrap_or_else(|e| panic!("check: {e:#}"));
    assert_eq!(
        xtask::disk::cat(image.path(), "/d/e/big.bin").expect("cat"),
        big
    );
    assert_eq!(
        xtask::disk::cat(image.path(), "/probe/log.txt").expect("cat"),
        LOG
    );
}

#[test]
fn a_foreign_disk_is_refused_clearly_and_never_written() {
    on_targets(&[Q35, MICROVM], |t| {
        let image = Temp::new(&format!("foreign-{}", t.name));
        let bytes = random_bytes(4 << 20, 99);
        std::fs::write(image.path(), &bytes).expect("write the image");
        let boot = fsprobe(t, &image, &[]);
        assert_exit(&boot, 3);
        line_with(
            &boot,
            &[
                "[ERROR",
                "fs: sdfs: the disk was refused (never written): unrecognized disk: not a \
                 Stardust filesystem (bad magic number)",
            ],
        );
        line_with(
            &boot,
            &["fsprobe: status refused: unrecognized disk: not a Stardust filesystem"],
        );
        line_with(
            &boot,
            &[
                "fsprobe: create_dir_all: no filesystem mounted: the disk was refused: \
                 unrecognized disk",
            ],
        );
        let after = std::fs::read(image.path()).expect("read the image");
        assert!(after == bytes, "the foreign disk was written");
    });
}

#[test]
fn a_damaged_filesystem_is_refused_with_what_is_wrong_and_never_written() {
    let image = xtask_image("damaged", &[("a.txt", b"a")]);
    let mut bytes = std::fs::read(image.path()).expect("read the image");
    // Both superblock slots (blocks 0 and 1 of 4096 bytes) damaged within their checksummed
    // bytes: no valid commit.
    bytes[100] ^= 0xff;
    bytes[4096 + 100] ^= 0xff;
    std::fs::write(image.path(), &bytes).expect("write the image");
    let boot = fsprobe(Q35, &image, &["cat=/a.txt"]);
    assert_exit(&boot, 3);
    line_with(
        &boot,
        &[
            "[ERROR",
            "fs: sdfs: the disk was refused (never written): corrupt filesystem: bad checksum \
             in the superblock",
        ],
    );
    line_with(
        &boot,
        &["fsprobe: cat /a.txt: no filesystem mounted: the disk was refused: corrupt filesystem"],
    );
    assert!(
        std::fs::read(image.path()).expect("read the image") == bytes,
        "the damaged disk was written"
    );
}

#[test]
fn a_full_disk_says_no_space_and_reads_still_work() {
    let image = Temp::blank("full", 2 << 20);
    let boot = fsprobe(Q35, &image, &["fill", "cat=/keep.txt"]);
    assert_exit(&boot, 0);
    line_with(
        &boot,
        &["fsprobe: full after", "KiB: no space left on the disk"],
    );
    line_with(&boot, &["fsprobe: read after full ok"]);
    line_with(&boot, &["fsprobe: removed the fill, synced"]);
    line_with(&boot, &["fsprobe: cat /keep.txt: 14 bytes: still readable"]);
    xtask::disk::check(image.path()).unwrap_or_else(|e| panic!("check: {e:#}"));
}

/// One HTTP/1.1 request with `Connection: close`: the status code, the headers (lowercase
/// names) and the body.
fn http(port: u16, method: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, raw[end + 4..].to_vec())
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn httpd_serves_files_of_an_xtask_image() {
    let big = random_bytes(300_000, 3);
    let image = xtask_image(
        "www",
        &[
            ("index.html", b"<h1>from the disk</h1>\n"),
            ("data/big.bin", &big),
        ],
    );
    let port = free_port();
    let guest = Run::new("httpd")
        .profile("storage")
        .machine(Machine::Q35)
        .disk(image.path(), false)
        .forward(port, 80)
        .timeout(Duration::from_secs(600))
        .start();
    guest
        .wait_for_line("httpd: ready on port 80", Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e:#}"));

    let (code, headers, body) = http(port, "GET", "/files/index.html");
    assert_eq!(code, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(body, b"<h1>from the disk</h1>\n");
    let (code, headers, body) = http(port, "GET", "/files/data/big.bin");
    assert_eq!(code, 200);
    assert_eq!(header(&headers, "content-length"), Some("300000"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert!(
        body == big,
        "the 300 KB file differs ({} bytes)",
        body.len()
    );
    let (code, headers, body) = http(port, "HEAD", "/files/data/big.bin");
    assert_eq!((code, body.len()), (200, 0));
    assert_eq!(header(&headers, "content-length"), Some("300000"));
    for missing in [
        "/files/nope.txt",
        "/files/data",
        "/files/../files/index.html",
        "/files/%2e%2e/index.html",
        "/files/data/../index.html",
    ] {
        assert_eq!(http(port, "GET", missing).0, 404, "{missing}");
    }
    // The rest of the site is as before.
    assert_eq!(http(port, "GET", "/bytes/10").2, b"0123456789");

    // The real curl, when installed.
    if let Ok(out) = std::process::Command::new("curl")
        .args(["-s", "--max-time", "60"])
        .arg(format!("http://127.0.0.1:{port}/files/data/big.bin"))
        .output()
    {
        assert!(out.status.success(), "curl: {:?}", out.status);
        assert!(out.stdout == big, "curl got {} bytes", out.stdout.len());
    }

    let boot = guest.stop().unwrap_or_else(|e| panic!("{e:#}"));
    for bad in ["PANIC", "EXCEPTION", "[ERROR"] {
        assert!(!boot.stdout.contains(bad), "{bad}\n{}", boot.stdout);
    }
    line_with(&boot, &["fs: sdfs: mounted, generation"]);
}
