//! The persistent key-value server on a disk: app `kvstore` (profile `storage`: virtio-blk,
//! sdfs, virtio-net) on QEMU (TCG, q35), reached through `--forward` on 127.0.0.1.
//!
//! - A blank disk is formatted at the first boot and the store starts empty; keys set then are
//!   there after QEMU is killed and the guest boots again on the same image.
//! - 20 kill cycles: two clients write keys with unique values and record each acknowledged
//!   reply; QEMU is killed with SIGKILL at a random moment (seeded: `STARDUST_KILL_SEED`, else
//!   from the clock; printed); the guest boots again on the same image, and every acknowledged
//!   key must have its value (keys in flight may or may not be there, but never with another
//!   value). A SIGKILL of QEMU cannot catch a missing flush (the guest's writes survive in the
//!   host's page cache): that is the blklogwrites replay test's part.
//! - A full small disk answers `-MISCONF Errors writing to the AOF file: No space left on
//!   device`, GETs still work, and after DELs writes resume.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stardust_tests::{Guest, Run, free_port};

const READY_WAIT: Duration = Duration::from_secs(120);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const GUEST_LIMIT: Duration = Duration::from_secs(300);

/// A blank raw image of `bytes` in the target directory, named after the test.
fn blank_disk(name: &str, bytes: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kvstore-disk");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(format!("{name}-{}.img", std::process::id()));
    let f = std::fs::File::create(&path).expect("create the image");
    f.set_len(bytes).expect("size the image");
    path
}

/// Boots kvstore on `disk`, waits until it serves; the forwarded port.
fn boot(disk: &Path) -> (Guest, u16) {
    let port = free_port();
    let guest = Run::new("kvstore")
        .profile("storage")
        .disk(disk, false)
        .timeout(GUEST_LIMIT)
        .forward(port, 6379)
        .start();
    if let Err(e) = guest.wait_for_line("kvstore: ready on port 6379", READY_WAIT) {
        panic!("{e:#}\n{}", guest.console());
    }
    (guest, port)
}

/// Kills QEMU (SIGKILL to its process group); the console.
fn kill(guest: Guest) -> String {
    let boot = guest.stop().unwrap_or_else(|e| panic!("{e:#}"));
    for bad in ["PANIC", "EXCEPTION", "[ERROR"] {
        assert!(
            !boot.stdout.contains(bad),
            "{bad} on the console\n{}",
            boot.stdout
        );
    }
    boot.stdout
}

fn connect(port: u16) -> TcpStream {
    // QEMU's forward may drop a connect made during a burst: retry a few times.
    let mut last = None;
    for _ in 0..20 {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
                s.set_nodelay(true).expect("nodelay");
                return s;
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("connecting to 127.0.0.1:{port}: {last:?}");
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads one reply (simple, error, integer or bulk): its text (`None` for a null bulk).
fn reply(s: &mut TcpStream) -> std::io::Result<Option<String>> {
    let line = read_line(s)?;
    match line.as_bytes().first() {
        Some(b'$') => {
            let n: i64 = line[1..].parse().expect("a bulk length");
            if n < 0 {
                return Ok(None);
            }
            let mut buf = vec![0; n as usize + 2];
            s.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(Some(String::from_utf8(buf).expect("utf-8")))
        }
        Some(_) => Ok(Some(line)),
        None => Err(std::io::Error::other("an empty line")),
    }
}

fn read_line(s: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if b[0] == b'\n' && line.last() == Some(&b'\r') {
            line.pop();
            return Ok(String::from_utf8(line).expect("utf-8"));
        }
        line.push(b[0]);
    }
}

fn call(s: &mut TcpStream, args: &[&str]) -> Option<String> {
    s.write_all(&command(args)).expect("send");
    reply(s).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn keys_survive_a_kill_on_a_blank_disk() {
    let disk = blank_disk("survive", 32 << 20);
    let (guest, port) = boot(&disk);
    let console = guest.console();
    assert!(
        console.contains("the disk was blank: formatted"),
        "{console}"
    );
    assert!(
        console.contains("kvstore: recovered /kvstore/aof: no log: a new, empty store"),
        "{console}"
    );
    let mut s = connect(port);
    for i in 0..50 {
        assert_eq!(
            call(&mut s, &["SET", &format!("k{i}"), &format!("v{i}")]).as_deref(),
            Some("+OK")
        );
    }
    assert_eq!(call(&mut s, &["INCR", "n"]).as_deref(), Some(":1"));
    assert_eq!(call(&mut s, &["DEL", "k0"]).as_deref(), Some(":1"));
    drop(s);
    kill(guest);
    let (guest, port) = boot(&disk);
    let console = guest.console();
    assert!(
        console.contains("kvstore: recovered /kvstore/aof: 52 records, 50 keys"),
        "{console}"
    );
    let mut s = connect(port);
    assert_eq!(call(&mut s, &["GET", "k0"]), None);
    for i in 1..50 {
        assert_eq!(
            call(&mut s, &["GET", &format!("k{i}")]),
            Some(format!("v{i}"))
        );
    }
    assert_eq!(call(&mut s, &["INCR", "n"]).as_deref(), Some(":2"));
    kill(guest);
    let _ = std::fs::remove_file(&disk);
}

/// A tiny seeded generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn every_acknowledged_key_survives_20_kills() {
    let seed = std::env::var("STARDUST_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1;
    eprintln!("kill cycles: seed {seed} (STARDUST_KILL_SEED={seed} repeats the kill moments)");
    let mut rng = Rng(seed);
    let disk = blank_disk("kills", 32 << 20);
    // key -> value, for every acknowledged SET; in flight: sent, no reply seen.
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut in_flight: BTreeMap<String, String> = BTreeMap::new();
    let mut total_acked = 0;
    for cycle in 0..20 {
        let (guest, port) = boot(&disk);
        let mut s = connect(port);
        for (k, v) in &acked {
            let got = call(&mut s, &["GET", k]);
            assert_eq!(
                got.as_deref(),
                Some(v.as_str()),
                "cycle {cycle} (seed {seed}): acknowledged {k} lost"
            );
        }
        for (k, v) in std::mem::take(&mut in_flight) {
            match call(&mut s, &["GET", &k]) {
                None => {}
                Some(got) => {
                    assert_eq!(
                        got, v,
                        "cycle {cycle} (seed {seed}): in-flight {k} has another value"
                    );
                    acked.insert(k, v);
                }
            }
        }
        drop(s);
        // Two writers, so that their records share syncs; the kill comes 50-800 ms in. They
        // connect first: a connect refused and retried must not race the kill.
        let log = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let writers: Vec<_> = (0..2)
            .map(|w| (w, connect(port)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(w, mut s)| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0.. {
                        let (k, v) = (
                            format!("c{cycle}-w{w}-{i}"),
                            format!("value-{cycle}-{w}-{i}-{}", "x".repeat(i % 200)),
                        );
                        log.lock().expect("lock").1.push((k.clone(), v.clone()));
                        if s.write_all(&command(&["SET", &k, &v])).is_err() {
                            return;
                        }
                        match reply(&mut s) {
                            Ok(Some(r)) if r == "+OK" => {
                                let mut l = log.lock().expect("lock");
                                l.1.retain(|(key, _)| *key != k);
                                l.0.push((k, v));
                            }
                            Ok(r) => panic!("SET {k}: {r:?}"),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + rng.below(750)));
        kill(guest);
        for w in writers {
            w.join().expect("writer");
        }
        let (ok, flying) = std::mem::take(&mut *log.lock().expect("lock"));
        total_acked += ok.len();
        acked.extend(ok);
        in_flight.extend(flying);
    }
    let (guest, port) = boot(&disk);
    let mut s = connect(port);
    for (k, v) in &acked {
        assert_eq!(
            call(&mut s, &["GET", k]).as_deref(),
            Some(v.as_str()),
            "seed {seed}: {k} lost"
        );
    }
    kill(guest);
    eprintln!("kill cycles: {total_acked} acknowledged writes over 20 kills, every one found");
    assert!(total_acked > 20, "the writers wrote");
    let _ = std::fs::remove_file(&disk);
}

#[test]
fn a_full_disk_answers_misconf_and_reads_work() {
    let disk = blank_disk("full", 2 << 20);
    let (guest, port) = boot(&disk);
    let mut s = connect(port);
    let value = "f".repeat(16 * 1024);
    let mut stored = 0;
    let refused = loop {
        let r = call(&mut s, &["SET", &format!("big{stored}"), &value]).expect("a reply");
        if r != "+OK" {
            break r;
        }
        stored += 1;
        assert!(stored < 200, "a 2 MiB disk never filled");
    };
    assert_eq!(
        refused,
        "-MISCONF Errors writing to the AOF file: No space left on device"
    );
    assert!(stored > 4, "{stored} keys before the disk was full");
    assert_eq!(call(&mut s, &["GET", "big0"]), Some(value.clone()));
    assert_eq!(call(&mut s, &["GET", &format!("big{stored}")]), None);
    assert_eq!(call(&mut s, &["DBSIZE"]), Some(format!(":{stored}")));
    for i in 0..stored - 1 {
        assert_eq!(
            call(&mut s, &["DEL", &format!("big{i}")]).as_deref(),
            Some(":1"),
            "DEL big{i}"
        );
    }
    assert_eq!(
        call(&mut s, &["SET", "again", &value]).as_deref(),
        Some("+OK")
    );
    drop(s);
    kill(guest);
    let (guest, port) = boot(&disk);
    let mut s = connect(port);
    assert_eq!(call(&mut s, &["DBSIZE"]).as_deref(), Some(":2"));
    assert_eq!(call(&mut s, &["GET", "again"]), Some(value));
    kill(guest);
    let _ = std::fs::remove_file(&disk);
}
