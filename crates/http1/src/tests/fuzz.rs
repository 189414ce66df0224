//! Seeded random requests: mutations of valid ones, pipelined, split over reads at random,
//! with timeouts and interruptions. Nothing panics, every response is well formed and starts
//! with `HTTP/1.1 `, only the last one closes, every error closes, the loop ends, and the
//! split of the input over reads never changes the output.
//!
//! A longer run: `STARDUST_FUZZ_CASES=1000000 cargo test -p http1 --release fuzz` (and
//! `STARDUST_FUZZ_SEED=N` for other inputs).

use std::time::Duration;

use platform::fuzz::{Rng, cases};

use super::{Mock, MockTimeouts, Step};
use crate::*;

const TEMPLATES: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "HEAD /bytes/10 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /bytes/100 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /x?y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    "GET http://a/bytes/7 HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
    "\r\nGET /bytes/5000 HTTP/1.1\nHost: a\n\n",
    "HEAD / HTTP/1.0\r\n\r\n",
];

const SPECIAL: &[u8] = b" \t\r\n:;,/0129afAF*?=\"\x00\x7f\x80\xff";

const FRAGMENTS: &[&str] = &[
    "Host: b\r\n",
    "Content-Length: 99999999999999999999\r\n",
    "Content-Length: 2\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive\r\n",
    "Expect: 100-continue\r\n",
    "\r\n",
    "\n",
    " HTTP/1.1",
    "HTTP/2.0",
    "ffffffffffffffffff\r\n",
    "0\r\n\r\n",
    "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
];

fn mutate(rng: &mut Rng, mut r: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(4) {
        let at = rng.below(r.len() as u64 + 1) as usize;
        match rng.below(7) {
            0 if at < r.len() => r[at] = rng.next_u64() as u8,
            1 if at < r.len() => r[at] = rng.pick(SPECIAL),
            2 => r.insert(at, rng.pick(SPECIAL)),
            3 if at < r.len() => {
                r.remove(at);
            }
            4 => {
                let f = rng.pick(FRAGMENTS).as_bytes();
                r.splice(at..at, f.iter().copied());
            }
            5 => {
                let len = rng.below(16) as usize;
                let piece: Vec<u8> = r[at..(at + len).min(r.len())].to_vec();
                r.splice(at..at, piece);
            }
            6 => r.truncate(at),
            _ => {}
        }
    }
    r
}

/// A response read back from the output, for the checks.
struct Seen {
    code: u16,
    closes: bool,
}

/// Splits the output into responses (a HEAD's response has a length but no content: the
/// next response, or the end, follows its head at once; generated and error content never
/// starts with `HTTP/`).
fn split(mut out: &[u8], case: u64) -> Vec<Seen> {
    let mut all = Vec::new();
    while !out.is_empty() {
        assert!(
            out.starts_with(b"HTTP/1.1 "),
            "case {case}: {:?}",
            String::from_utf8_lossy(out)
        );
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("case {case}: a head without its end"));
        let head = std::str::from_utf8(&out[..end]).expect("ASCII head");
        out = &out[end + 4..];
        let code: u16 = head[9..12].parse().expect("a status code");
        let mut len = 0usize;
        let mut closes = false;
        for line in head.split("\r\n").skip(1) {
            let (name, value) = line.split_once(": ").expect("name: value");
            match name {
                "Content-Length" => len = value.parse().expect("a length"),
                "Connection" => closes = value == "close",
                "Server" => assert_eq!(value, "stardust"),
                _ => {}
            }
        }
        let head_only = out.is_empty() || out.starts_with(b"HTTP/1.1 ");
        if code != 100 && code != 204 && len > 0 && !head_only {
            assert!(out.len() >= len, "case {case}: content cut");
            out = &out[len..];
        }
        all.push(Seen { code, closes });
    }
    all
}

fn config(rng: &mut Rng) -> Config {
    if rng.chance(50) {
        Config::from_args(&[
            "size=37",
            "line_max=64",
            "header_max=256",
            "headers_max=8",
            "body_max=1000",
        ])
    } else {
        Config::from_args(&["size=37"])
    }
    .unwrap()
}

#[test]
fn fuzz_random_requests_never_break_the_loop() {
    let mut rng = Rng::new(0x4854_5450_0001);
    let total = cases(3000);
    for case in 0..total {
        let cfg = config(&mut rng);
        let mut input = Vec::new();
        for _ in 0..=rng.below(4) {
            let t = rng.pick(TEMPLATES).as_bytes().to_vec();
            let t = if rng.chance(70) {
                mutate(&mut rng, t)
            } else {
                t
            };
            input.extend_from_slice(&t);
        }
        // Split over reads, with waits, timeouts and interruptions between pieces.
        let mut steps = Vec::new();
        let mut rest = &input[..];
        let timed = rng.chance(30);
        while !rest.is_empty() {
            let n = (1 + rng.below(rest.len() as u64)) as usize;
            steps.push(Step::Data(rest[..n].to_vec()));
            rest = &rest[n..];
            if timed {
                match rng.below(10) {
                    0 => steps.push(Step::TimedOut),
                    1 => steps.push(Step::Interrupted),
                    2 => steps.push(Step::Wait(Duration::from_secs(rng.below(12)))),
                    _ => {}
                }
            }
        }
        let mut mock = Mock::new(steps);
        let mut timeouts = MockTimeouts::of(&mock);
        let outcome = serve_with(&mut mock, &cfg, &StaticSite::new(&cfg), &mut timeouts);
        let seen = split(&mock.written, case);

        let finals: Vec<&Seen> = seen.iter().filter(|s| s.code != 100).collect();
        let counted: u64 = Status::ALL
            .iter()
            .filter(|&&s| s != Status::Continue)
            .map(|&s| outcome.stats.count(s))
            .sum();
        assert_eq!(counted, finals.len() as u64, "case {case}");
        assert!(
            finals.len() as u64 <= outcome.stats.requests + 1,
            "case {case}"
        );
        for (i, s) in finals.iter().enumerate() {
            let last = i + 1 == finals.len();
            assert!(
                !s.closes || last,
                "case {case}: only the last response closes"
            );
            assert!(s.code < 400 || s.closes, "case {case}: an error closes");
        }
        let last_closes = finals.last().is_some_and(|s| s.closes);
        match outcome.end {
            End::Rejected(status) => {
                assert!(last_closes, "case {case}");
                assert_eq!(
                    finals.last().map(|s| s.code),
                    Some(status.code()),
                    "case {case}"
                );
            }
            End::RequestTimeout => {
                assert_eq!(finals.last().map(|s| s.code), Some(408), "case {case}")
            }
            End::Closed | End::RequestLimit => assert!(last_closes, "case {case}"),
            End::Eof | End::EofMidRequest | End::IdleTimeout | End::ReadError(_) => {
                assert!(!last_closes, "case {case}: {:?}", outcome.end)
            }
            End::WriteError(_) => panic!("case {case}: the mock's writes do not fail"),
            End::SourceFailed => panic!("case {case}: the static site streams nothing"),
        }

        // Without timeouts, one byte a read answers the same as the whole input at once.
        if !timed && case % 4 == 0 {
            let mut whole = Mock::with(&input);
            let a = serve(&mut whole, &cfg, &StaticSite::new(&cfg));
            let mut bytes = Mock::with(&input);
            bytes.read_max = 1;
            let b = serve(&mut bytes, &cfg, &StaticSite::new(&cfg));
            assert_eq!(whole.written, bytes.written, "case {case}");
            assert_eq!(a, b, "case {case}");
        }
    }
}

/// Arbitrary bytes, not just near-valid requests.
#[test]
fn fuzz_random_bytes() {
    let mut rng = Rng::new(0x4854_5450_0002);
    for case in 0..cases(2000) {
        let cfg = config(&mut rng);
        let n = rng.below(400) as usize;
        let mut input = rng.bytes(n);
        if rng.chance(50) {
            // A plausible start.
            input.splice(0..0, b"GET / HTTP/1.1\r\n".iter().copied());
        }
        let mut mock = Mock::with(&input);
        mock.read_max = 1 + rng.below(64) as usize;
        let outcome = serve(&mut mock, &cfg, &StaticSite::new(&cfg));
        let seen = split(&mock.written, case);
        assert!(
            seen.len() as u64 <= outcome.stats.requests + 1,
            "case {case}"
        );
    }
}
