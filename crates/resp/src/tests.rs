use super::*;
use alloc::string::ToString;
use platform::fuzz::{Rng, cases};

fn parse_all(limits: Limits, buf: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
    let p = Parser::new(limits);
    let mut r = Request::new();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        match p.parse(&buf[pos..], &mut r)? {
            Status::Complete(n) => {
                out.push(r.args().map(<[u8]>::to_vec).collect());
                pos += n;
            }
            Status::Empty(n) => pos += n,
            Status::Incomplete => return Ok(out),
        }
    }
}

fn one(buf: &[u8]) -> Result<Status, ProtocolError> {
    Parser::new(Limits::default()).parse(buf, &mut Request::new())
}

fn args(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn multibulk_and_inline_pipelined() {
    let buf =
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\nPING\r\nGET  k\n*1\r\n$4\r\nPING\r\n";
    let got = parse_all(Limits::default(), buf).unwrap();
    assert_eq!(
        got,
        [
            args(&["SET", "k", "va\r\nl"]),
            args(&["PING"]),
            args(&["GET", "k"]),
            args(&["PING"])
        ]
    );
}

#[test]
fn empty_requests_are_skipped() {
    assert_eq!(one(b"*0\r\n"), Ok(Status::Empty(4)));
    assert_eq!(one(b"*-10\r\nPING\r\n"), Ok(Status::Empty(6)));
    assert_eq!(one(b"\r\n"), Ok(Status::Empty(2)));
    assert_eq!(one(b"   \t \n"), Ok(Status::Empty(6)));
    assert_eq!(
        parse_all(Limits::default(), b"\r\n*0\r\nPING\r\n").unwrap(),
        [args(&["PING"])]
    );
}

#[test]
fn zero_length_bulk_and_binary_data() {
    assert_eq!(
        parse_all(Limits::default(), b"*2\r\n$0\r\n\r\n$3\r\n\0\xff\r\r\n").unwrap(),
        [vec![vec![], vec![0u8, 0xff, b'\r']]]
    );
}

#[test]
fn incomplete_consumes_nothing_at_every_split() {
    let buf: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n";
    for cut in 0..buf.len() {
        assert_eq!(one(&buf[..cut]), Ok(Status::Incomplete), "cut at {cut}");
    }
    assert_eq!(one(buf), Ok(Status::Complete(buf.len())));
    let inline: &[u8] = b"SET key \"a b\"\r\n";
    for cut in 0..inline.len() {
        assert_eq!(one(&inline[..cut]), Ok(Status::Incomplete), "cut at {cut}");
    }
}

#[test]
fn protocol_errors_as_redis_words_them() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"*20000000\r\n",
            "ERR Protocol error: invalid multibulk length",
        ),
        (b"*x\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*01\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*+1\r\n", "ERR Protocol error: invalid multibulk length"),
        (
            b"*99999999999999999999\r\n",
            "ERR Protocol error: invalid multibulk length",
        ),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
            "ERR Protocol error: expected '$', got 'f'",
        ),
        (b"*1\r\n\r\n", "ERR Protocol error: expected '$', got ' '"),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (b"*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length"),
        (
            b"*1\r\n$2000000\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (
            b"SET k \"abc\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET k 'abc\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET k \"a\"b\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
    ];
    for (input, message) in cases {
        let e = one(input).expect_err(core::str::from_utf8(input).unwrap_or("?"));
        assert_eq!(e.message().to_string(), *message, "{input:?}");
    }
}

#[test]
fn bounds() {
    let l = Limits {
        max_bulk: 10,
        max_args: 3,
        max_inline: 16,
        max_request: 40,
    };
    let p = Parser::new(l);
    let mut r = Request::new();
    let e = |b: &[u8]| p.parse(b, &mut Request::new()).unwrap_err();
    assert_eq!(e(b"*4\r\n"), ProtocolError::InvalidMultibulkLength);
    assert!(p.parse(b"*3\r\n", &mut r).is_ok());
    assert_eq!(e(b"*1\r\n$11\r\n"), ProtocolError::InvalidBulkLength);
    assert_eq!(
        p.parse(b"*1\r\n$10\r\n0123456789\r\n", &mut r),
        Ok(Status::Complete(21))
    );
    // 3 bulks of 10: over 40 bytes in all.
    assert_eq!(
        e(b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n"),
        ProtocolError::TooBigRequest(40)
    );
    assert_eq!(e(&[b'a'; 17]), ProtocolError::TooBigInline);
    assert_eq!(p.parse(&[b'a'; 16], &mut r), Ok(Status::Incomplete));
    assert_eq!(e(b"a b c d\r\n"), ProtocolError::InvalidMultibulkLength);
    assert_eq!(
        e(b"*11111111111111111"),
        ProtocolError::TooBigMultibulkCount
    );
    assert_eq!(
        e(b"*1\r\n$11111111111111111"),
        ProtocolError::TooBigBulkCount
    );
    assert_eq!(
        ProtocolError::TooBigInline.message().to_string(),
        "ERR Protocol error: too big inline request"
    );
    assert_eq!(
        ProtocolError::TooBigRequest(40).message().to_string(),
        "ERR Protocol error: request bigger than 40 bytes"
    );
}

#[test]
fn inline_splitting_like_sdssplitargs() {
    let cases: &[(&[u8], &[&[u8]])] = &[
        (b"set a b\r\n", &[b"set", b"a", b"b"]),
        (b"  set\t a   b  \n", &[b"set", b"a", b"b"]),
        (b"set \"a b\" 'c d'\r\n", &[b"set", b"a b", b"c d"]),
        (
            b"x \"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\r\n",
            &[b"x", b"\n\r\t\x08\x07\\\"q"],
        ),
        (b"x \"\\x41\\x4a\\xzz\"\n", &[b"x", b"AJxzz"]),
        (b"x 'it\\'s' '\\n'\n", &[b"x", b"it's", b"\\n"]),
        (b"x a\"b c\" d\n", &[b"x", b"ab c", b"d"]),
        (b"x \"\"\n", &[b"x", b""]),
    ];
    for (line, want) in cases {
        let got = parse_all(Limits::default(), line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let want: Vec<Vec<u8>> = want.iter().map(|a| a.to_vec()).collect();
        assert_eq!(got, [want], "{line:?}");
    }
}

#[test]
fn string2ll_is_strict() {
    assert_eq!(string2ll(b"0"), Some(0));
    assert_eq!(string2ll(b"-1"), Some(-1));
    assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"-0",
        b"01",
        b"+1",
        b" 1",
        b"1 ",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"1a",
    ] {
        assert_eq!(string2ll(bad), None, "{bad:?}");
    }
}

#[test]
fn encoder() {
    let mut out = Vec::new();
    simple(&mut out, "PONG");
    ok(&mut out);
    error(&mut out, "ERR a\r\nb");
    integer(&mut out, -42);
    integer(&mut out, i64::MIN);
    bulk(&mut out, b"");
    null(&mut out);
    array(&mut out, 2);
    error_fmt(&mut out, format_args!("ERR {}\n", 7));
    assert_eq!(
        out,
        b"+PONG\r\n+OK\r\n-ERR a  b\r\n:-42\r\n:-9223372036854775808\r\n$0\r\n\r\n$-1\r\n*2\r\n-ERR 7 \r\n"
    );
}

/// A random request: mostly valid multibulk or inline frames, some mangled.
fn random_stream(rng: &mut Rng) -> Vec<u8> {
    let mut buf = Vec::new();
    for _ in 0..rng.below(6) {
        match rng.below(4) {
            0 => {
                let n = rng.below(5);
                buf.extend_from_slice(format!("*{n}\r\n").as_bytes());
                for _ in 0..n {
                    let len = rng.below(20) as usize;
                    let data = rng.bytes(len);
                    buf.extend_from_slice(format!("${}\r\n", data.len()).as_bytes());
                    buf.extend_from_slice(&data);
                    buf.extend_from_slice(b"\r\n");
                }
            }
            1 => {
                let words = [
                    &b"SET"[..],
                    b"\"a b\"",
                    b"'x'",
                    b"\\x41",
                    b" ",
                    b"\t",
                    b"\"",
                ];
                for _ in 0..rng.below(6) {
                    buf.extend_from_slice(rng.pick(&words));
                    buf.push(b' ');
                }
                buf.extend_from_slice(b"\r\n");
            }
            2 => {
                let pieces = [
                    &b"*"[..],
                    b"$",
                    b"\r\n",
                    b"-1",
                    b"3",
                    b"99999999999",
                    b"x",
                    b"\n",
                ];
                for _ in 0..rng.below(8) {
                    buf.extend_from_slice(rng.pick(&pieces));
                }
            }
            _ => {
                let len = rng.below(30) as usize;
                buf.extend_from_slice(&rng.bytes(len));
            }
        }
    }
    if rng.chance(30) && !buf.is_empty() {
        let i = rng.below(buf.len() as u64) as usize;
        buf[i] = rng.next_u64() as u8;
    }
    buf
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut rng = Rng::new(0x7265_7370);
    let limits = Limits {
        max_bulk: 16,
        max_args: 4,
        max_inline: 32,
        max_request: 48,
    };
    let p = Parser::new(limits);
    let mut r = Request::new();
    for _ in 0..cases(20_000) {
        let buf = random_stream(&mut rng);
        let mut pos = 0;
        loop {
            match p.parse(&buf[pos..], &mut r) {
                Ok(Status::Complete(n)) => {
                    assert!(n > 0 && n <= limits.max_request + 2 || n <= limits.max_inline + 1);
                    assert!(r.len() <= limits.max_args);
                    assert!(r.args().all(|a| a.len() <= limits.max_request));
                    pos += n;
                }
                Ok(Status::Empty(n)) => {
                    assert!(n > 0);
                    pos += n;
                }
                Ok(Status::Incomplete) => {
                    // What is left never exceeds what a request may hold, plus a read.
                    assert!(buf.len() - pos <= limits.max_request.max(limits.max_inline) + 200);
                    break;
                }
                Err(e) => {
                    let m = e.message().to_string();
                    assert!(m.starts_with("ERR Protocol error: "));
                    assert!(!m.contains('\r') && !m.contains('\n'));
                    break;
                }
            }
        }
    }
}

#[test]
fn random_valid_streams_split_at_every_byte_parse_the_same() {
    let mut rng = Rng::new(0x5350_4c49);
    for _ in 0..cases(300) {
        let buf = random_stream(&mut rng);
        let whole = parse_all(Limits::default(), &buf);
        // Feed it in two reads split at every byte, the way a connection would: parse what is
        // complete, keep the rest.
        for cut in 0..=buf.len() {
            let p = Parser::new(Limits::default());
            let mut r = Request::new();
            let mut pending: Vec<u8> = Vec::new();
            let mut got = Vec::new();
            let mut err = None;
            'reads: for chunk in [&buf[..cut], &buf[cut..]] {
                pending.extend_from_slice(chunk);
                loop {
                    match p.parse(&pending, &mut r) {
                        Ok(Status::Complete(n)) => {
                            got.push(r.args().map(<[u8]>::to_vec).collect::<Vec<_>>());
                            pending.drain(..n);
                        }
                        Ok(Status::Empty(n)) => {
                            pending.drain(..n);
                        }
                        Ok(Status::Incomplete) => break,
                        Err(e) => {
                            err = Some(e);
                            break 'reads;
                        }
                    }
                }
            }
            match (&whole, err) {
                (Ok(w), None) => assert_eq!(&got, w, "{buf:?} cut at {cut}"),
                (Err(w), Some(e)) => assert_eq!(*w, e, "{buf:?} cut at {cut}"),
                (w, e) => panic!("{buf:?} cut at {cut}: whole {w:?}, split {e:?}"),
            }
        }
    }
}
