//! The request-head rules, one by one.

use crate::parse::*;
use crate::{Framing, Status};

fn limits() -> Limits {
    Limits {
        line_max: 64,
        header_max: 256,
        headers_max: 8,
        body_max: 1000,
    }
}

fn parse_with<'b>(s: &'b [u8], l: &Limits) -> Result<Parsed<'b>, Error> {
    parse(s, l)
}

#[track_caller]
fn ok(s: &str) -> Request<'_> {
    match parse_with(s.as_bytes(), &limits()) {
        Ok(Parsed::Complete(r)) => r,
        other => panic!("{s:?}: {other:?}"),
    }
}

#[track_caller]
fn err(s: &str) -> Error {
    match parse_with(s.as_bytes(), &limits()) {
        Err(e) => e,
        other => panic!("{s:?}: {other:?}"),
    }
}

#[track_caller]
fn incomplete(s: &[u8]) {
    assert_eq!(parse_with(s, &limits()), Ok(Parsed::Incomplete), "{s:?}");
}

const H: &str = "Host: example\r\n";

#[test]
fn a_simple_get() {
    let s = "GET /a/b?c=d HTTP/1.1\r\nHost: example:8080\r\nUser-Agent:  curl/8 \r\n\r\nrest";
    let r = ok(s);
    assert_eq!(r.method, Method::Get);
    assert_eq!(r.target, "/a/b?c=d");
    assert_eq!(r.path, "/a/b");
    assert_eq!(r.version, Version::Http11);
    assert_eq!(r.host, Some(&b"example:8080"[..]));
    assert_eq!(r.header("user-agent"), Some(&b"curl/8"[..]));
    assert_eq!(r.headers.len(), 2);
    assert_eq!(r.framing, Framing::None);
    assert!(r.keep_alive);
    assert_eq!(&s[r.head_len..], "rest");
}

#[test]
fn every_known_method_and_unknown_ones() {
    for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
        let s = format!("{m} / HTTP/1.1\r\n{H}\r\n");
        let r = ok(s.leak());
        assert_eq!(r.method.as_str(), m);
    }
    for m in ["PATCH", "TRACE", "CONNECT", "get", "FOO", "G!T"] {
        let s = format!("{m} / HTTP/1.1\r\n{H}\r\n");
        assert_eq!(err(s.leak()), Error::UnknownMethod, "{m}");
    }
    assert_eq!(Error::UnknownMethod.status(), Status::NotImplemented);
    // Not a token: 400.
    for m in ["G(T", "GE\"T", "G\x01T", "GÉT"] {
        let s = format!("{m} / HTTP/1.1\r\n{H}\r\n");
        assert_eq!(err(s.leak()), Error::BadMethod, "{m}");
    }
}

#[test]
fn the_request_line_has_single_spaces_and_three_parts() {
    for line in [
        "GET  / HTTP/1.1",
        "GET /  HTTP/1.1",
        " GET / HTTP/1.1",
        "GET / HTTP/1.1 ",
        "GET /",
        "GET",
        "GET\t/\tHTTP/1.1",
    ] {
        let s = format!("{line}\r\n{H}\r\n");
        let e = err(s.leak());
        assert!(
            matches!(
                e,
                Error::BadRequestLine | Error::BadVersion | Error::BadMethod | Error::ObsFold
            ),
            "{line:?}: {e:?}"
        );
        assert_eq!(e.status(), Status::BadRequest, "{line:?}");
    }
    assert_eq!(err("GET  / HTTP/1.1\r\n\r\n"), Error::BadRequestLine);
    assert_eq!(err("GET / HTTP/1.1 \r\n\r\n"), Error::BadVersion);
}

#[test]
fn the_target_has_no_whitespace_controls_or_non_ascii() {
    for t in ["/a\tb", "/a\x01", "/a\x7f", "/é"] {
        let s = format!("GET {t} HTTP/1.1\r\n{H}\r\n");
        assert_eq!(err(s.leak()), Error::BadTarget, "{t:?}");
    }
}

#[test]
fn target_forms() {
    let r = ok("GET http://example/x/y?z HTTP/1.1\r\nHost: example\r\n\r\n");
    assert_eq!(r.path, "/x/y");
    assert_eq!(
        ok("GET HTTPS://example HTTP/1.1\r\nHost: e\r\n\r\n").path,
        "/"
    );
    assert_eq!(ok("GET http://e?q HTTP/1.1\r\nHost: e\r\n\r\n").path, "/");
    assert_eq!(ok("OPTIONS * HTTP/1.1\r\nHost: e\r\n\r\n").path, "*");
    assert_eq!(ok("GET /#frag HTTP/1.1\r\nHost: e\r\n\r\n").path, "/");
    for t in ["*", "example.com:443", "ftp://e/", "http:///x", "x"] {
        let s = format!("GET {t} HTTP/1.1\r\n{H}\r\n");
        assert_eq!(err(s.leak()), Error::BadTarget, "{t:?}");
    }
}

#[test]
fn versions() {
    assert_eq!(ok("GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
    for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.0"] {
        let s = format!("GET / {v}\r\n{H}\r\n");
        assert_eq!(err(s.leak()), Error::UnsupportedVersion, "{v}");
    }
    assert_eq!(
        Error::UnsupportedVersion.status(),
        Status::VersionNotSupported
    );
    for v in [
        "http/1.1",
        "HTTP/1.10",
        "HTTP/1",
        "HTTP/11",
        "HTTP/a.b",
        "HTTPS/1.1",
        "X",
    ] {
        let s = format!("GET / {v}\r\n{H}\r\n");
        assert_eq!(err(s.leak()), Error::BadVersion, "{v}");
    }
    // Syntax before version, version before method.
    assert_eq!(err("FOO / HTTP/2.0\r\n\r\n"), Error::UnsupportedVersion);
    assert_eq!(err("FOO /\t HTTP/2.0\r\n\r\n"), Error::BadTarget);
    assert_eq!(err("CONNECT e:443 HTTP/1.1\r\n\r\n"), Error::UnknownMethod);
}

#[test]
fn the_request_line_is_bounded() {
    let fits = format!("GET /{} HTTP/1.1", "a".repeat(64 - 14));
    assert_eq!(fits.len(), 64);
    let s = format!("{fits}\r\n{H}\r\n");
    ok(s.leak());
    let long = format!("GET /{} HTTP/1.1\r\n{H}\r\n", "a".repeat(64 - 13));
    assert_eq!(err(long.leak()), Error::LineTooLong);
    assert_eq!(Error::LineTooLong.status(), Status::UriTooLong);
    // Known before the line ends.
    let partial = format!("GET /{}", "a".repeat(60));
    assert_eq!(
        parse(partial.as_bytes(), &limits()),
        Err(Error::LineTooLong)
    );
    incomplete(format!("GET /{}", "a".repeat(58)).as_bytes());
    // A final CR may be the start of the CRLF: not counted.
    let mut at_limit = fits.clone().into_bytes();
    at_limit.push(b'\r');
    incomplete(&at_limit);
}

#[test]
fn leading_empty_lines_are_skipped_but_bounded() {
    let s = format!("\r\n\n\r\nGET / HTTP/1.1\r\n{H}\r\n");
    let r = ok(s.leak());
    assert_eq!(r.path, "/");
    let fits = format!(
        "{}GET / HTTP/1.1\r\n{H}\r\n",
        "\r\n".repeat(EMPTY_LINES_MAX)
    );
    ok(fits.leak());
    let too_many = format!(
        "{}GET / HTTP/1.1\r\n{H}\r\n",
        "\r\n".repeat(EMPTY_LINES_MAX + 1)
    );
    assert_eq!(err(too_many.leak()), Error::TooManyEmptyLines);
    incomplete(b"\r\n\r");
    incomplete(b"");
}

#[test]
fn bare_cr_is_refused_everywhere_in_the_head() {
    assert_eq!(err("\rGET / HTTP/1.1\r\n\r\n"), Error::BareCr);
    assert_eq!(err("GET /\r HTTP/1.1\r\n\r\n"), Error::BareCr);
    assert_eq!(err("GET / HTTP/1.1\r\r\n\r\n"), Error::BareCr);
    assert_eq!(err("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), Error::BareCr);
    assert_eq!(err("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), Error::BareCr);
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let r = ok("GET / HTTP/1.1\nHost: a\nX: y\n\nnext");
    assert_eq!(r.header("x"), Some(&b"y"[..]));
    assert_eq!(r.head_len, "GET / HTTP/1.1\nHost: a\nX: y\n\n".len());
    let r = ok("GET / HTTP/1.1\r\nHost: a\n\r\n");
    assert_eq!(r.host, Some(&b"a"[..]));
}

#[test]
fn field_lines() {
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        Error::WhitespaceBeforeColon
    );
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"),
        Error::WhitespaceBeforeColon
    );
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"),
        Error::ObsFold
    );
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n"),
        Error::ObsFold
    );
    // Whitespace between the request line and the first field line (RFC 9112 §2.2).
    assert_eq!(err("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), Error::ObsFold);
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n"),
        Error::BadHeaderName
    );
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n"),
        Error::BadHeaderName
    );
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n"),
        Error::BadHeaderName
    );
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"),
        Error::BadHeaderValue
    );
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n"),
        Error::BadHeaderValue
    );
    // Tabs, obs-text and an empty value are fine; the value is trimmed.
    let r = ok("GET / HTTP/1.1\r\nHost: a\r\nX:\t a\tbé \t\r\nEmpty:\r\n\r\n");
    assert_eq!(r.header("x"), Some("a\tbé".as_bytes()));
    assert_eq!(r.header("EMPTY"), Some(&b""[..]));
    assert_eq!(r.header("missing"), None);
}

#[test]
fn the_header_section_is_bounded_in_size_and_count() {
    let l = limits();
    // 8 lines fit, 9 do not.
    let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..7 {
        s += &format!("X{i}: v\r\n");
    }
    ok(format!("{s}\r\n").leak());
    let nine = format!("{s}Y: v\r\n\r\n");
    assert_eq!(err(nine.leak()), Error::TooManyHeaders);
    assert_eq!(Error::TooManyHeaders.status(), Status::FieldsTooLarge);
    // Size: the section (lines, endings and the empty line) at most header_max.
    let line = |n: usize| format!("X: {}\r\n", "v".repeat(n - 5));
    let head = "GET / HTTP/1.1\r\nHost: a\r\n"; // section so far: 9 bytes
    let exactly = format!("{head}{}\r\n", line(256 - 9 - 2));
    ok(exactly.leak());
    let over = format!("{head}{}\r\n", line(256 - 9 - 1));
    assert_eq!(err(over.leak()), Error::HeadersTooLarge);
    assert_eq!(Error::HeadersTooLarge.status(), Status::FieldsTooLarge);
    // Known before the section ends.
    let partial = format!("{head}X: {}", "v".repeat(300));
    assert_eq!(parse(partial.as_bytes(), &l), Err(Error::HeadersTooLarge));
}

#[test]
fn host_rules() {
    assert_eq!(err("GET / HTTP/1.1\r\n\r\n"), Error::MissingHost);
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
        Error::RepeatedHost
    );
    assert_eq!(
        err("GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n"),
        Error::RepeatedHost
    );
    assert_eq!(err("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), Error::BadHost);
    assert_eq!(err("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), Error::BadHost);
    assert_eq!(ok("GET / HTTP/1.0\r\n\r\n").host, None);
    // An empty Host is allowed (RFC 9112 §3.2), and an IPv6 literal.
    assert_eq!(ok("GET / HTTP/1.1\r\nHost:\r\n\r\n").host, Some(&b""[..]));
    assert_eq!(
        ok("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").host,
        Some(&b"[::1]:80"[..])
    );
}

#[test]
fn content_length_rules() {
    let f = |v: &str| {
        let s = format!("POST / HTTP/1.1\r\n{H}Content-Length: {v}\r\n\r\n");
        parse(s.leak().as_bytes(), &limits())
    };
    let framing = |v: &str| match f(v) {
        Ok(Parsed::Complete(r)) => r.framing,
        other => panic!("{v}: {other:?}"),
    };
    assert_eq!(framing("0"), Framing::Length(0));
    assert_eq!(framing("1000"), Framing::Length(1000));
    assert_eq!(framing("007"), Framing::Length(7));
    assert_eq!(framing("5, 5"), Framing::Length(5));
    for bad in [
        "", "-1", "+1", "1.0", "0x10", "1 2", "five", "5,", ",5", "5,,5",
    ] {
        assert_eq!(f(bad), Err(Error::BadContentLength), "{bad:?}");
    }
    assert_eq!(f("5, 6"), Err(Error::ConflictingContentLength));
    assert_eq!(f("1001"), Err(Error::BodyTooLarge));
    assert_eq!(Error::BodyTooLarge.status(), Status::ContentTooLarge);
    assert_eq!(f("18446744073709551616"), Err(Error::ContentLengthOverflow));
    assert_eq!(
        f("99999999999999999999999"),
        Err(Error::ContentLengthOverflow)
    );
    assert_eq!(Error::ContentLengthOverflow.status(), Status::BadRequest);
    assert_eq!(f("18446744073709551615"), Err(Error::BodyTooLarge));
    // Repeated lines.
    let two = |a: &str, b: &str| {
        let s = format!("POST / HTTP/1.1\r\n{H}Content-Length: {a}\r\nContent-Length: {b}\r\n\r\n");
        parse(s.leak().as_bytes(), &limits()).map(|p| match p {
            Parsed::Complete(r) => r.framing,
            Parsed::Incomplete => panic!(),
        })
    };
    assert_eq!(two("3", "3"), Ok(Framing::Length(3)));
    assert_eq!(two("3", "4"), Err(Error::ConflictingContentLength));
}

#[test]
fn transfer_encoding_rules() {
    let f = |v: &str, version: &str| {
        let s = format!("POST / HTTP/{version}\r\n{H}Transfer-Encoding: {v}\r\n\r\n");
        parse(s.leak().as_bytes(), &limits()).map(|p| match p {
            Parsed::Complete(r) => r.framing,
            Parsed::Incomplete => panic!(),
        })
    };
    assert_eq!(f("chunked", "1.1"), Ok(Framing::Chunked));
    assert_eq!(f("Chunked", "1.1"), Ok(Framing::Chunked));
    assert_eq!(f(" chunked , ", "1.1"), Ok(Framing::Chunked));
    assert_eq!(
        f("gzip, chunked", "1.1"),
        Err(Error::UnsupportedTransferCoding)
    );
    assert_eq!(
        f("identity, chunked", "1.1"),
        Err(Error::UnsupportedTransferCoding)
    );
    assert_eq!(
        Error::UnsupportedTransferCoding.status(),
        Status::NotImplemented
    );
    for bad in [
        "gzip",
        "chunked, gzip",
        "chunked, chunked",
        "",
        ",",
        "chu nked",
        "x y, chunked",
    ] {
        assert_eq!(f(bad, "1.1"), Err(Error::BadTransferEncoding), "{bad:?}");
    }
    assert_eq!(f("chunked", "1.0"), Err(Error::TransferEncodingInHttp10));
    // Over two lines: one list.
    let s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(s), Error::UnsupportedTransferCoding);
    // With Content-Length: refused.
    let s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(s), Error::TransferEncodingWithLength);
    let s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(err(s), Error::TransferEncodingWithLength);
}

#[test]
fn connection_and_keep_alive() {
    let ka = |version: &str, conn: Option<&str>| {
        let c = conn.map_or(String::new(), |c| format!("Connection: {c}\r\n"));
        let s = format!("GET / HTTP/{version}\r\n{H}{c}\r\n");
        match parse(s.leak().as_bytes(), &limits()) {
            Ok(Parsed::Complete(r)) => r.keep_alive,
            other => panic!("{other:?}"),
        }
    };
    assert!(ka("1.1", None));
    assert!(!ka("1.1", Some("close")));
    assert!(!ka("1.1", Some("Upgrade, CLOSE")));
    assert!(ka("1.1", Some("keep-alive")));
    assert!(!ka("1.1", Some("keep-alive, close")));
    assert!(!ka("1.0", None));
    assert!(ka("1.0", Some("Keep-Alive")));
    assert!(ka("1.0", Some("foo,keep-alive")));
    assert!(!ka("1.0", Some("keep-alive, close")));
    assert!(!ka("1.0", Some("keep-alive-not")));
}

#[test]
fn expect() {
    let r = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
    assert!(r.expect_continue);
    let r = ok("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
    assert!(!r.expect_continue, "no content, nothing to wait for");
    let e = err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: magic\r\n\r\n");
    assert_eq!(e, Error::BadExpect);
    assert_eq!(e.status(), Status::ExpectationFailed);
    let r = ok("POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: magic\r\n\r\n");
    assert!(!r.expect_continue, "ignored in HTTP/1.0");
}

/// Every prefix of a head gives Incomplete or the whole head's answer: splitting a request
/// over reads never changes it.
#[test]
fn every_prefix_is_incomplete_or_the_same_answer() {
    let cases = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\n\nGET /x HTTP/1.0\nA: b\n\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
        "BREW / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    ];
    for case in cases {
        let whole = parse(case.as_bytes(), &limits());
        assert_ne!(whole, Ok(Parsed::Incomplete), "{case:?}");
        for n in 0..case.len() {
            let part = parse(&case.as_bytes()[..n], &limits());
            assert!(
                part == Ok(Parsed::Incomplete) || part == whole,
                "{case:?} at {n}: {part:?} vs {whole:?}"
            );
        }
    }
}

#[test]
fn every_error_maps_to_a_4xx_or_5xx() {
    use Error::*;
    for e in [
        TooManyEmptyLines,
        BareCr,
        BadRequestLine,
        BadMethod,
        UnknownMethod,
        BadTarget,
        BadVersion,
        UnsupportedVersion,
        LineTooLong,
        HeadersTooLarge,
        TooManyHeaders,
        ObsFold,
        BadHeaderName,
        WhitespaceBeforeColon,
        BadHeaderValue,
        MissingHost,
        RepeatedHost,
        BadHost,
        BadContentLength,
        ConflictingContentLength,
        ContentLengthOverflow,
        BodyTooLarge,
        BadTransferEncoding,
        UnsupportedTransferCoding,
        TransferEncodingInHttp10,
        TransferEncodingWithLength,
        BadExpect,
        BadChunk,
        ChunkExtensionTooLong,
        BadTrailer,
        TrailersTooLarge,
    ] {
        assert!(e.status().is_error(), "{e:?}");
    }
}
