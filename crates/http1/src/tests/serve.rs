//! The connection loop over a scripted connection.

use std::time::Duration;

use embedded_io::ErrorKind;

use super::{Mock, MockTimeouts, Resp, Step, responses};
use crate::*;

fn config() -> Config {
    Config::from_args(&["bytes_max=4M"]).unwrap()
}

fn run_mock(mock: &mut Mock, cfg: &Config) -> Outcome {
    serve(mock, cfg, &StaticSite::new(cfg))
}

/// Serves `input` (in one read), then EOF.
fn run(input: &str) -> (Vec<Resp>, Outcome, Mock) {
    run_heads(input, &[])
}

fn run_heads(input: &str, head_only: &[bool]) -> (Vec<Resp>, Outcome, Mock) {
    let mut mock = Mock::with(input.as_bytes());
    let outcome = run_mock(&mut mock, &config());
    (responses(&mock.written, head_only), outcome, mock)
}

const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn a_get_and_eof() {
    let (r, outcome, mock) = run(GET);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].code, 200);
    assert_eq!(r[0].header("server"), Some("stardust"));
    assert_eq!(r[0].header("content-type"), Some("text/html"));
    assert_eq!(r[0].body, INDEX);
    assert_eq!(
        r[0].header("connection"),
        None,
        "HTTP/1.1 keeps the connection"
    );
    assert_eq!(outcome.end, End::Eof);
    assert_eq!(outcome.stats.requests, 1);
    assert_eq!(outcome.stats.count(Status::Ok), 1);
    assert_eq!(outcome.stats.errors(), 0);
    assert!(
        mock.output()
            .starts_with("HTTP/1.1 200 OK\r\nServer: stardust\r\n")
    );
}

#[test]
fn generated_bytes_and_the_size_setting() {
    let (r, _, _) = run("GET /bytes/130 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r[0].code, 200);
    assert_eq!(r[0].header("content-length"), Some("130"));
    let want: Vec<u8> = (0..130).map(|i| PATTERN[i % 64]).collect();
    assert_eq!(r[0].body, want);
    let (r, _, _) = run("GET /bytes/0 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r[0].code, r[0].body.len()), (200, 0));

    // Several MiB through a 4 KiB buffer: never one write larger than it.
    let mut mock = Mock::with(b"GET /bytes/3000000 HTTP/1.1\r\nHost: a\r\n\r\n");
    run_mock(&mut mock, &config());
    let r = responses(&mock.written, &[]);
    assert_eq!(r[0].body.len(), 3_000_000);
    assert!(
        r[0].body
            .iter()
            .enumerate()
            .all(|(i, &b)| b == PATTERN[i % 64])
    );
    assert!(mock.max_write <= OUTPUT_SIZE, "{}", mock.max_write);

    let cfg = Config::from_args(&["size=100"]).unwrap();
    let mut mock = Mock::with(GET.as_bytes());
    run_mock(&mut mock, &cfg);
    let r = responses(&mock.written, &[]);
    assert_eq!(r[0].body.len(), 100);
    assert_eq!(r[0].header("content-type"), Some("text/plain"));
}

#[test]
fn not_found_method_not_allowed_and_options() {
    for path in [
        "/x",
        "/bytes/",
        "/bytes/x",
        "/bytes/-1",
        "/bytes/4194305",
        "/bytes/99999999999999999999999",
    ] {
        let (r, outcome, _) = run(&format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n{GET}"));
        assert_eq!(r.len(), 1, "{path}: an error closes the connection");
        assert_eq!(r[0].code, 404, "{path}");
        assert!(r[0].closes());
        assert_eq!(outcome.end, End::Closed);
        assert_eq!(outcome.stats.count(Status::NotFound), 1);
    }
    let (r, _, _) = run("GET /bytes/4194304 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r[0].code, 200, "bytes_max itself is served");
    for m in ["POST", "PUT", "DELETE"] {
        let (r, outcome, _) = run(&format!(
            "{m} / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        ));
        assert_eq!(r[0].code, 405, "{m}");
        assert_eq!(r[0].header("allow"), Some(ALLOW));
        assert!(r[0].closes());
        assert_eq!(outcome.end, End::Closed);
    }
    let (r, outcome, _) = run(&format!("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n{GET}"));
    assert_eq!(r[0].code, 204);
    assert_eq!(r[0].header("allow"), Some(ALLOW));
    assert_eq!(r[0].header("content-length"), None);
    assert_eq!(r[1].code, 200);
    assert_eq!(outcome.stats.count(Status::NoContent), 1);
}

#[test]
fn head_gets_the_headers_of_the_get() {
    let input = "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /bytes/100000 HTTP/1.1\r\nHost: a\r\n\r\n";
    let (r, outcome, _) = run_heads(input, &[true, false, true]);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].headers, r[1].headers);
    assert!(r[0].body.is_empty());
    assert_eq!(r[1].body, INDEX);
    assert_eq!(r[2].header("content-length"), Some("100000"));
    assert_eq!(outcome.end, End::Eof);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let input = "GET /bytes/1 HTTP/1.1\r\nHost: a\r\n\r\n\
                 GET /bytes/2 HTTP/1.1\r\nHost: a\r\n\r\n\
                 POST /x HTTP/1.0\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
    let cfg = config();
    let site = |req: &Request<'_>| {
        Reply::new(
            Status::Ok,
            "text/plain",
            Body::Owned(req.target.as_bytes().to_vec()),
        )
    };
    let mut mock = Mock::with(input.as_bytes());
    let one = serve(&mut mock, &cfg, &site);
    let r = responses(&mock.written, &[]);
    assert_eq!(
        r.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>(),
        [&b"/bytes/1"[..], b"/bytes/2", b"/x"]
    );
    assert_eq!(r[2].header("connection"), Some("keep-alive"));
    assert_eq!(one.end, End::Eof);
    assert_eq!(one.stats.requests, 3);
    let whole = mock.written.clone();

    // Split at every byte boundary, and one byte a read.
    for split in 0..input.len() {
        let mut mock = Mock::new([
            Step::Data(input.as_bytes()[..split].to_vec()),
            Step::Data(input.as_bytes()[split..].to_vec()),
        ]);
        let outcome = serve(&mut mock, &cfg, &site);
        assert_eq!(mock.written, whole, "split at {split}");
        assert_eq!(outcome, one);
    }
    let mut mock = Mock::with(input.as_bytes());
    mock.read_max = 1;
    let outcome = serve(&mut mock, &cfg, &site);
    assert_eq!(mock.written, whole);
    assert_eq!(outcome, one);
    assert!(mock.reads > input.len());
}

#[test]
fn keep_alive_and_close_by_version() {
    // 1.1 with close: answered with close, later requests not read.
    let (r, outcome, _) = run(&format!(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n{GET}"
    ));
    assert_eq!(r.len(), 1);
    assert!(r[0].closes());
    assert_eq!(r[0].code, 200);
    assert_eq!(outcome.end, End::Closed);
    // 1.0 closes by default.
    let (r, outcome, _) = run(&format!("GET / HTTP/1.0\r\n\r\n{GET}"));
    assert_eq!(r.len(), 1);
    assert!(r[0].closes());
    assert_eq!(outcome.end, End::Closed);
    // 1.0 with keep-alive stays.
    let (r, outcome, _) = run(&format!(
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n{GET}"
    ));
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].header("connection"), Some("keep-alive"));
    assert_eq!(r[1].header("connection"), None);
    assert_eq!(outcome.end, End::Eof);
}

#[test]
fn the_request_limit_closes() {
    let cfg = Config::from_args(&["requests_max=2"]).unwrap();
    let mut mock = Mock::with(GET.repeat(3).as_bytes());
    let outcome = run_mock(&mut mock, &cfg);
    let r = responses(&mock.written, &[]);
    assert_eq!(r.len(), 2);
    assert!(!r[0].closes());
    assert!(r[1].closes());
    assert_eq!(outcome.end, End::RequestLimit);
}

#[test]
fn malformed_requests_get_their_4xx_and_the_connection_closes() {
    for (request, code) in [
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n",
            413,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n",
            413,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: x\r\n\r\n",
            417,
        ),
    ] {
        let mut input = request.to_string();
        input += GET;
        let (r, outcome, _) = run(&input);
        assert_eq!(r.len(), 1, "{request:?}");
        assert_eq!(r[0].code, code, "{request:?}");
        assert!(r[0].closes(), "{request:?}");
        assert_eq!(r[0].header("content-type"), Some("text/plain"));
        assert!(
            std::str::from_utf8(&r[0].body)
                .unwrap()
                .starts_with(&code.to_string())
        );
        let status = Status::ALL
            .iter()
            .copied()
            .find(|s| s.code() == code)
            .unwrap();
        assert_eq!(outcome.end, End::Rejected(status), "{request:?}");
        assert_eq!(outcome.stats.count(status), 1);
        assert_eq!(outcome.stats.errors(), 1);
    }
    // Too long a request line, too large a header section, too many headers.
    let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(5000));
    let (r, _, _) = run(&long);
    assert_eq!(r[0].code, 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let (r, _, _) = run(&big);
    assert_eq!(r[0].code, 431);
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X: y\r\n".repeat(64));
    let (r, _, _) = run(&many);
    assert_eq!(r[0].code, 431);
}

#[test]
fn content_is_read_and_discarded() {
    let cfg = config();
    let site = |req: &Request<'_>| {
        Reply::new(
            Status::Ok,
            "text/plain",
            Body::Static(req.method.as_str().as_bytes()),
        )
    };
    let input = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
         PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: x\r\n\r\n\
         POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi{GET}"
    );
    for read_max in [0, 1, 7] {
        let mut mock = Mock::with(input.as_bytes());
        mock.read_max = read_max;
        let outcome = serve(&mut mock, &cfg, &site);
        let r = responses(&mock.written, &[]);
        let codes: Vec<u16> = r.iter().map(|r| r.code).collect();
        assert_eq!(codes, [200, 200, 100, 200, 200], "read_max {read_max}");
        assert_eq!(r[3].body, b"POST");
        assert_eq!(r[4].body, b"GET");
        assert_eq!(outcome.end, End::Eof);
        assert_eq!(outcome.stats.requests, 4);
    }
    // An error answer to an Expect: 100-continue request: no 100, no content read.
    let (r, outcome, _) =
        run("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].code, 405);
    assert_eq!(outcome.end, End::Closed);
}

#[test]
fn idle_and_request_timeouts_and_eof() {
    // Idle: closed without a word.
    let mut mock = Mock::new([Step::TimedOut]);
    let outcome = run_mock(&mut mock, &config());
    assert_eq!(outcome.end, End::IdleTimeout);
    assert!(mock.written.is_empty());
    // Idle after a request, and after an empty line between requests.
    let mut mock = Mock::new([
        Step::Data(format!("{GET}\r\n").into_bytes()),
        Step::TimedOut,
    ]);
    let outcome = run_mock(&mut mock, &config());
    assert_eq!(outcome.end, End::IdleTimeout);
    assert_eq!(responses(&mock.written, &[]).len(), 1);
    // Within a request head, and within content: 408.
    for partial in [
        "G",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
    ] {
        let mut mock = Mock::new([
            Step::Data(partial.into()),
            Step::TimedOut,
            Step::Data(GET.into()),
        ]);
        let outcome = run_mock(&mut mock, &config());
        assert_eq!(outcome.end, End::RequestTimeout, "{partial:?}");
        let r = responses(&mock.written, &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, 408);
        assert!(r[0].closes());
        assert_eq!(outcome.stats.count(Status::RequestTimeout), 1);
    }
    // EOF within a request: closed without an answer.
    for partial in [
        "GET / HT",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ] {
        let mut mock = Mock::with(partial.as_bytes());
        let outcome = run_mock(&mut mock, &config());
        assert_eq!(outcome.end, End::EofMidRequest, "{partial:?}");
        assert!(mock.written.is_empty());
    }
    let mut mock = Mock::new([]);
    assert_eq!(run_mock(&mut mock, &config()).end, End::Eof);
}

#[test]
fn read_and_write_errors_end_the_connection() {
    let mut mock = Mock::new([
        Step::Interrupted,
        Step::Data(GET.into()),
        Step::Interrupted,
        Step::Fail(ErrorKind::ConnectionReset),
    ]);
    let outcome = run_mock(&mut mock, &config());
    assert_eq!(outcome.end, End::ReadError(ErrorKind::ConnectionReset));
    assert_eq!(responses(&mock.written, &[]).len(), 1);
    // Endless interruptions are given up on.
    let mut mock = Mock::new(std::iter::repeat_n(Step::Interrupted, 100));
    assert_eq!(
        run_mock(&mut mock, &config()).end,
        End::ReadError(ErrorKind::Interrupted)
    );
    // A write that fails halfway.
    let mut mock = Mock::with(b"GET /bytes/100000 HTTP/1.1\r\nHost: a\r\n\r\n");
    mock.write_limit = Some(10_000);
    assert_eq!(
        run_mock(&mut mock, &config()).end,
        End::WriteError(ErrorKind::ConnectionReset)
    );
}

/// A client that trickles its request: the request timeout holds across reads by the clock.
#[test]
fn a_slow_client_is_timed_out_by_the_clock() {
    let cfg = Config::from_args(&["idle_timeout=5s", "request_timeout=10s"]).unwrap();
    let mut steps = Vec::new();
    for b in GET.bytes() {
        steps.push(Step::Wait(Duration::from_secs(3)));
        steps.push(Step::Data(vec![b]));
    }
    let mut mock = Mock::new(steps);
    let mut timeouts = MockTimeouts::of(&mock);
    let outcome = serve_with(&mut mock, &cfg, &StaticSite::new(&cfg), &mut timeouts);
    assert_eq!(outcome.end, End::RequestTimeout);
    let r = responses(&mock.written, &[]);
    assert_eq!(r[0].code, 408);
    // First the idle timeout, then what is left of the request's 10 s.
    let secs: Vec<u64> = mock.timeouts.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [5, 10, 7, 4, 1]);
    assert!(mock.reads <= 6, "{} reads", mock.reads);

    // A prompt client on the same clock is served, with the idle timeout between requests.
    let mut mock = Mock::new([
        Step::Data(GET.into()),
        Step::Wait(Duration::from_secs(4)),
        Step::Data(GET.into()),
    ]);
    let mut timeouts = MockTimeouts::of(&mock);
    let outcome = serve_with(&mut mock, &cfg, &StaticSite::new(&cfg), &mut timeouts);
    assert_eq!(outcome.end, End::Eof);
    assert_eq!(outcome.stats.count(Status::Ok), 2);
    assert!(
        mock.timeouts.iter().all(|&t| t == Duration::from_secs(5)),
        "{:?}",
        mock.timeouts
    );
}

/// A closing reply goes out through `write_last` (so a TCP connection can send it with its
/// FIN), whole; a kept-alive one does not.
#[test]
fn a_closing_reply_is_written_last() {
    let cfg = Config::from_args(&["idle_timeout=5s"]).unwrap();
    let close = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut mock = Mock::new([Step::Data(GET.into()), Step::Data(close.into())]);
    let mut timeouts = MockTimeouts::of(&mock);
    let outcome = serve_with(&mut mock, &cfg, &StaticSite::new(&cfg), &mut timeouts);
    assert_eq!(outcome.end, End::Closed);
    let r = responses(&mock.written, &[]);
    assert_eq!((r.len(), r[1].closes()), (2, true));
    let at = mock
        .last_at
        .expect("the closing reply went through write_last");
    assert!(
        mock.written[at..].starts_with(b"HTTP/1.1 200"),
        "the whole second reply, from its status line"
    );
    // A rejected request closes the same way.
    let mut mock = Mock::new([Step::Data(b"BAD\r\n\r\n".to_vec())]);
    let mut timeouts = MockTimeouts::of(&mock);
    let outcome = serve_with(&mut mock, &cfg, &StaticSite::new(&cfg), &mut timeouts);
    assert!(matches!(outcome.end, End::Rejected(_)), "{:?}", outcome.end);
    assert_eq!(mock.last_at, Some(0));
    // Keep-alive only: nothing written last.
    let mut mock = Mock::new([Step::Data(GET.into())]);
    let mut timeouts = MockTimeouts::of(&mock);
    serve_with(&mut mock, &cfg, &StaticSite::new(&cfg), &mut timeouts);
    assert_eq!(mock.last_at, None);
}

#[test]
fn stats_add_up() {
    let mut total = Stats::default();
    for input in [GET, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", "BAD\r\n\r\n"] {
        let (_, outcome, _) = run(input);
        total.add(&outcome.stats);
    }
    assert_eq!(total.requests, 2);
    assert_eq!(total.count(Status::Ok), 1);
    assert_eq!(total.count(Status::NotFound), 1);
    assert_eq!(total.count(Status::BadRequest), 1);
    assert_eq!(total.errors(), 2);
}

/// A file of `len` bytes (`byte i = i % 251`) that fails past `fail_at`, counting its reads and
/// the largest one.
struct FakeFile {
    len: u64,
    fail_at: u64,
    reads: std::cell::Cell<u32>,
    largest: std::cell::Cell<usize>,
    straddled: std::cell::Cell<bool>,
}

impl Source for FakeFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        self.reads.set(self.reads.get() + 1);
        self.largest.set(self.largest.get().max(buf.len()));
        if offset / 4096 != (offset + buf.len() as u64 - 1) / 4096 {
            self.straddled.set(true);
        }
        if offset >= self.fail_at {
            return None;
        }
        let n = (buf.len() as u64).min(self.len - offset) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((offset + i as u64) % 251) as u8;
        }
        Some(n)
    }
}

struct FileSite(u64, u64);

impl Site for FileSite {
    type Source = FakeFile;

    fn respond(&self, request: &Request<'_>) -> Reply<FakeFile> {
        if request.path != "/f" {
            return StaticSite::new(&config()).respond(request).into_source();
        }
        Reply::source(
            Status::Ok,
            "application/octet-stream",
            self.0,
            FakeFile {
                len: self.0,
                fail_at: self.1,
                reads: Default::default(),
                largest: Default::default(),
                straddled: Default::default(),
            },
        )
    }
}

#[test]
fn a_source_is_streamed_in_aligned_pieces_and_head_reads_nothing() {
    let len = 100_000u64;
    let input = "GET /f HTTP/1.1\r\nHost: a\r\n\r\nHEAD /f HTTP/1.1\r\nHost: a\r\n\r\n\
                 GET /bytes/3 HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut mock = Mock::with(input.as_bytes());
    let outcome = serve(&mut mock, &config(), &FileSite(len, u64::MAX));
    assert_eq!(outcome.end, End::Eof);
    let r = responses(&mock.written, &[false, true, false]);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].header("content-length"), Some("100000"));
    assert_eq!(r[0].body.len() as u64, len);
    assert!(
        r[0].body
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8)
    );
    assert_eq!(r[1].header("content-length"), Some("100000"));
    assert!(r[1].body.is_empty());
    assert_eq!(r[2].body, b"012");

    // The reads: each at most the output buffer, none across a 4 KiB boundary.
    let file = FileSite(len, u64::MAX).respond_file();
    let mut out = Output::new();
    let mut sink = Mock::with(b"");
    assert!(out.push(&mut sink, b"HTTP/1.1 200 OK\r\n\r\n").is_ok());
    assert!(matches!(out.push_source(&mut sink, &file, len), Ok(true)));
    assert!(file.largest.get() <= OUTPUT_SIZE);
    assert!(!file.straddled.get());
    assert!(file.reads.get() <= (len as usize).div_ceil(4096) as u32 + 1);
}

impl FileSite {
    fn respond_file(&self) -> FakeFile {
        FakeFile {
            len: self.0,
            fail_at: self.1,
            reads: Default::default(),
            largest: Default::default(),
            straddled: Default::default(),
        }
    }
}

#[test]
fn a_failing_source_closes_the_connection_short() {
    let input = "GET /f HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut mock = Mock::with(input.as_bytes());
    let outcome = serve(&mut mock, &config(), &FileSite(50_000, 20_000));
    assert_eq!(outcome.end, End::SourceFailed);
    let text = String::from_utf8_lossy(&mock.written);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 50000\r\n"));
    assert!(mock.written.len() < 50_000, "short of the length");
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        1,
        "nothing answered after it"
    );
}
