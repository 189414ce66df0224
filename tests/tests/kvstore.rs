//! The key-value server end to end: app `kvstore` (profile `net`) on QEMU (TCG, q35), reached
//! through `--forward` on 127.0.0.1, with `kv_max_frame = 64K` and `kv_max_keys = 1000` so that
//! the bounds are cheap to reach.
//!
//! One guest serves every check, in order:
//! - `redis-cli` round trips of every command (replies as `redis-cli --no-raw` prints them),
//!   Redis's errors for unknown commands, wrong arity, bad integers and syntax, and the key bound;
//! - pipelining: 1,000 requests (multibulk and inline) in one write, the replies byte-exact and in
//!   order, and `redis-cli --pipe`;
//! - malformed frames: each answered with Redis's protocol error, then the connection closed,
//!   while another connection, open all along, keeps being served;
//! - oversized frames: a bulk over `kv_max_frame`, a request over it in all, an inline line over
//!   64 KiB;
//! - a short `redis-benchmark -q -n 2000 -c 2 -t get,set` that must complete (its figures
//!   printed, never asserted). Two clients, not redis-benchmark's 50: QEMU's user-networking
//!   forward listens with a backlog of 1, and of a burst of connects some are never accepted on
//!   the host side (measured: 5 to 9 of 30 clients connected at once stay unserved for good, on
//!   `echo` as on `kvstore`; the client's request stays unacknowledged in its own socket). A
//!   redis-benchmark client on such a connection never gets its reply, and redis-benchmark waits
//!   for every request it issued, so it hangs. With two clients the host's accept queue
//!   (backlog + 1) holds them both. The 50-client figures are `bench kv`'s, over TAP.
//!
//! Without `redis-cli` / `redis-benchmark` (package `redis-tools`, which `cargo xtask setup`
//! installs) their checks print `skipped: ...`; the raw-socket checks always run. The guest must
//! still run at the end, with no `PANIC`, `EXCEPTION` or `[ERROR` on its console.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use stardust_tests::{Guest, Outcome, Run, free_port};

const READY_WAIT: Duration = Duration::from_secs(180);
const IO_TIMEOUT: Duration = Duration::from_secs(60);
const GUEST_LIMIT: Duration = Duration::from_secs(600);
const MAX_FRAME: usize = 64 * 1024;

/// Shows the console if the test fails while the guest runs (QEMU is killed on drop).
struct Vm(Option<Guest>);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(g) = self.0.take()
            && std::thread::panicking()
        {
            eprintln!(
                "--- console of the failed guest ---\n{}--- end ---",
                g.console()
            );
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

/// Sends `request` and reads a reply of exactly `expected`'s length, which must be it.
fn round_trip(s: &mut TcpStream, request: &[u8], expected: &[u8]) {
    s.write_all(request).expect("write");
    let got = read_n(s, expected.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "request {:?}",
        String::from_utf8_lossy(request)
    );
}

/// Reads until the server closes (or resets) the connection.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("reading until the close (got {got:?}): {e}"),
        }
    }
}

/// `redis-cli --no-raw -p PORT ARGS...`'s output, or `None` without redis-cli.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = match Command::new("redis-cli")
        .args(["--no-raw", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => panic!("running redis-cli: {e}"),
    };
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string(),
    )
}

fn redis_cli_round_trips(port: u16) {
    if cli(port, &["PING"]).is_none() {
        eprintln!(
            "skipped: the redis-cli checks (redis-cli is not installed; `cargo xtask setup`)"
        );
        return;
    }
    let cases: &[(&[&str], &str)] = &[
        (&["PING"], "PONG"),
        (&["PING", "hello"], "\"hello\""),
        (&["ECHO", "two words"], "\"two words\""),
        (&["SELECT", "0"], "OK"),
        (&["CLIENT", "SETNAME", "tests"], "OK"),
        (&["CONFIG", "GET", "save"], "1) \"save\"\n2) \"\""),
        (
            &["CONFIG", "GET", "appendonly"],
            "1) \"appendonly\"\n2) \"no\"",
        ),
        (&["COMMAND", "DOCS"], "(empty array)"),
        (&["FLUSHALL"], "OK"),
        (&["GET", "k"], "(nil)"),
        (&["SET", "k", "v1"], "OK"),
        (&["GET", "k"], "\"v1\""),
        (&["SET", "k", "v2", "NX"], "(nil)"),
        (&["SET", "other", "x", "XX"], "(nil)"),
        (&["SET", "k", "v3", "XX", "GET"], "\"v1\""),
        (&["GET", "k"], "\"v3\""),
        (&["SET", "k", "v", "NX", "XX"], "(error) ERR syntax error"),
        (
            &["SET", "k", "v", "EX", "0"],
            "(error) ERR invalid expire time in 'set' command",
        ),
        (&["SET", "short", "lived", "PX", "300"], "OK"),
        (&["EXISTS", "k", "k", "nope"], "(integer) 2"),
        (&["INCR", "n"], "(integer) 1"),
        (&["INCRBY", "n", "41"], "(integer) 42"),
        (&["DECR", "n"], "(integer) 41"),
        (&["DECRBY", "n", "40"], "(integer) 1"),
        (
            &["INCR", "k"],
            "(error) ERR value is not an integer or out of range",
        ),
        (
            &["MSET", "user:1", "a", "user:2", "b", "user:10", "c"],
            "OK",
        ),
        (
            &["MGET", "user:1", "nope", "user:2"],
            "1) \"a\"\n2) (nil)\n3) \"b\"",
        ),
        (&["KEYS", "user:?"], ""), // checked sorted below
        (&["DEL", "user:1", "nope"], "(integer) 1"),
        (
            &["foo", "bar", "baz"],
            "(error) ERR unknown command 'foo', with args beginning with: 'bar' 'baz' ",
        ),
        (
            &["GET"],
            "(error) ERR wrong number of arguments for 'get' command",
        ),
        (
            &["MSET", "a"],
            "(error) ERR wrong number of arguments for 'mset' command",
        ),
    ];
    for (args, want) in cases {
        let got = cli(port, args).expect("redis-cli ran before");
        if args[0] == "KEYS" {
            let mut keys: Vec<&str> = got
                .lines()
                .map(|l| l.split_once(") ").map_or(l, |p| p.1))
                .collect();
            keys.sort_unstable();
            assert_eq!(keys, ["\"user:1\"", "\"user:2\""], "KEYS user:?");
            continue;
        }
        assert_eq!(got, *want, "redis-cli {args:?}");
    }
    // The PX 300 key has expired (by the guest's clock; the test only waits longer).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(cli(port, &["GET", "short"]).as_deref(), Some("(nil)"));
    // k, n, user:2, user:10.
    assert_eq!(cli(port, &["DBSIZE"]).as_deref(), Some("(integer) 4"));
    // The key bound (kv_max_keys = 1000): fill up, then a new key is refused, old ones work.
    let mut fill = Vec::new();
    for i in 0..996 {
        fill.push(format!("fill:{i}"));
        fill.push("x".into());
    }
    let mut args: Vec<&str> = vec!["MSET"];
    args.extend(fill.iter().map(String::as_str));
    assert_eq!(cli(port, &args).as_deref(), Some("OK"));
    assert_eq!(cli(port, &["DBSIZE"]).as_deref(), Some("(integer) 1000"));
    assert_eq!(
        cli(port, &["SET", "one-more", "x"]).as_deref(),
        Some("(error) ERR max keys reached (kv_max_keys = 1000)")
    );
    assert_eq!(cli(port, &["SET", "k", "still"]).as_deref(), Some("OK"));
    assert_eq!(cli(port, &["GET", "k"]).as_deref(), Some("\"still\""));
    assert_eq!(cli(port, &["FLUSHALL"]).as_deref(), Some("OK"));
    assert_eq!(cli(port, &["DBSIZE"]).as_deref(), Some("(integer) 0"));
}

fn pipelining(port: u16) {
    let mut s = connect(port);
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000 {
        match i % 4 {
            0 => {
                let (k, v) = (format!("p{i}"), format!("value-{i}"));
                request.extend_from_slice(
                    format!(
                        "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                        k.len(),
                        v.len()
                    )
                    .as_bytes(),
                );
                expected.extend_from_slice(b"+OK\r\n");
            }
            1 => {
                let k = format!("p{}", i - 1);
                let v = format!("value-{}", i - 1);
                request.extend_from_slice(format!("GET {k}\r\n").as_bytes());
                expected.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
            }
            2 => {
                request.extend_from_slice(b"INCR counter\r\n");
                expected.extend_from_slice(format!(":{}\r\n", i / 4 + 1).as_bytes());
            }
            _ => {
                request.extend_from_slice(b"*1\r\n$4\r\nPING\r\n\r\n");
                expected.extend_from_slice(b"+PONG\r\n");
            }
        }
    }
    round_trip(&mut s, &request, &expected);
    // QUIT answers, then closes.
    s.write_all(b"PING\r\nQUIT\r\nPING\r\n").expect("write");
    assert_eq!(read_to_close(&mut s), b"+PONG\r\n+OK\r\n");

    // redis-cli --pipe: its own protocol stream, and an ECHO at the end to know it is done.
    let mut data = String::new();
    for i in 0..500 {
        data.push_str(&format!("SET pipe:{i} {i}\r\n"));
    }
    let child = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!(
                "skipped: redis-cli --pipe (redis-cli is not installed; `cargo xtask setup`)"
            );
            return;
        }
        Err(e) => panic!("running redis-cli --pipe: {e}"),
    };
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(data.as_bytes())
        .expect("feeding redis-cli --pipe");
    let out = child.wait_with_output().expect("redis-cli --pipe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("errors: 0, replies: 500"),
        "redis-cli --pipe: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = connect(port);
    round_trip(&mut s, b"GET pipe:499\r\n", b"$3\r\n499\r\n");
}

fn malformed_frames(port: u16) {
    // A connection open all along, served between the bad ones.
    let mut good = connect(port);
    round_trip(&mut good, b"SET survivor yes\r\n", b"+OK\r\n");
    // Each bad frame is sent only up to where the server must refuse it: it closes then, and
    // bytes still in flight could turn its close into a reset that loses the reply.
    let big_bulk = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", MAX_FRAME + 1).into_bytes();
    let over_total = format!(
        "*3\r\n$3\r\nSET\r\n$30000\r\n{}\r\n$40000\r\n",
        "k".repeat(30000)
    )
    .into_bytes();
    let long_inline = vec![b'a'; 64 * 1024 + 1];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "multibulk length",
            b"*20000000\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "not a number",
            b"*x\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "no $",
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got 'f'\r\n",
        ),
        (
            "negative bulk",
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "unbalanced quotes",
            b"SET k \"abc\r\n".to_vec(),
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            "after a good request",
            b"PING\r\n*1\r\n$x\r\nPING\r\n".to_vec(),
            "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "bulk over kv_max_frame",
            big_bulk,
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "request over kv_max_frame",
            over_total,
            "-ERR Protocol error: request bigger than 65536 bytes\r\n",
        ),
        (
            "inline over 64K",
            long_inline,
            "-ERR Protocol error: too big inline request\r\n",
        ),
    ];
    for (what, bytes, want) in cases {
        let mut s = connect(port);
        s.write_all(&bytes)
            .unwrap_or_else(|e| panic!("{what}: write: {e}"));
        let got = read_to_close(&mut s);
        assert_eq!(String::from_utf8_lossy(&got), want, "{what}");
        round_trip(&mut good, b"GET survivor\r\n", b"$3\r\nyes\r\n");
    }
    // A client that vanishes mid-frame does not disturb the others either.
    let mut s = connect(port);
    s.write_all(b"*2\r\n$3\r\nGET\r\n$100\r\nabc")
        .expect("write");
    drop(s);
    round_trip(&mut good, b"PING\r\n", b"+PONG\r\n");
}

fn benchmark(port: u16) {
    let out = Command::new("timeout")
        .args(["120", "redis-benchmark", "-p", &port.to_string()])
        .args(["-q", "-n", "2000", "-c", "2", "-t", "get,set"])
        .stdin(Stdio::null())
        .output()
        .expect("running timeout(1)");
    if out.status.code() == Some(127) {
        eprintln!("skipped: redis-benchmark (not installed; `cargo xtask setup`)");
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // -q prints a progress line, then `SET: N requests per second...` after a carriage return.
    let figures: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|l| l.contains("requests per second"))
        .map(str::trim)
        .collect();
    eprintln!("redis-benchmark -n 2000 -c 2 (TCG, user networking): {figures:?}");
    assert!(
        out.status.success()
            && figures.iter().any(|l| l.starts_with("SET:"))
            && figures.iter().any(|l| l.starts_with("GET:")),
        "redis-benchmark: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kvstore_serves_redis_clients() {
    let port = free_port();
    let guest = Run::new("kvstore")
        .profile("net")
        .set(&["kv_max_frame=64K", "kv_max_keys=1000"])
        .timeout(GUEST_LIMIT)
        .forward(port, 6379)
        .start();
    guest
        .wait_for_line("kvstore: ready on port 6379", READY_WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut vm = Vm(Some(guest));

    redis_cli_round_trips(port);
    pipelining(port);
    malformed_frames(port);
    benchmark(port);

    let guest = vm.0.take().expect("running");
    let running = guest.is_running();
    let boot = guest.stop().unwrap_or_else(|e| panic!("{e:#}"));
    for bad in ["PANIC", "EXCEPTION", "[ERROR"] {
        assert!(
            !boot.stdout.contains(bad),
            "{bad} on the console\n{}",
            boot.stdout
        );
    }
    assert!(
        running && boot.outcome == Outcome::Stopped,
        "the guest ended by itself ({})\n{}",
        boot.outcome.message(),
        boot.stdout
    );
}
