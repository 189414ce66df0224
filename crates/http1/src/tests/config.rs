//! The command line.

use std::time::Duration;

use crate::{Config, Limits};

#[test]
fn defaults() {
    let c = Config::from_args(&[]).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.port, 80);
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.request_timeout, Duration::from_secs(10));
}

#[test]
fn every_key() {
    let c = Config::from_args(&[
        "port=8080",
        "size=4K",
        "bytes_max=1G",
        "line_max=1k",
        "header_max=16K",
        "headers_max=10",
        "body_max=2M",
        "idle_timeout=500ms",
        "request_timeout=3s",
        "requests_max=100",
    ])
    .unwrap();
    assert_eq!(c.port, 8080);
    assert_eq!(c.size, Some(4096));
    assert_eq!(c.bytes_max, 1 << 30);
    assert_eq!(
        c.limits,
        Limits {
            line_max: 1024,
            header_max: 16384,
            headers_max: 10,
            body_max: 2 << 20
        }
    );
    assert_eq!(c.idle_timeout, Duration::from_millis(500));
    assert_eq!(c.request_timeout, Duration::from_secs(3));
    assert_eq!(c.requests_max, 100);
    // The last value counts.
    assert_eq!(Config::from_args(&["port=1", "port=2"]).unwrap().port, 2);
}

#[test]
fn errors_name_the_argument() {
    for (args, needle) in [
        (&["prot=80"][..], "unknown key `prot`"),
        (&["port"], "expected key=value"),
        (&["port=0"], "port must be"),
        (&["port=65536"], "port must be"),
        (&["port=+80"], "port must be"),
        (&["port=80x"], "port must be"),
        (&["size=-1"], "size must be"),
        (&["size=4T"], "size must be"),
        (&["size=99999999999G"], "size must be"),
        (&["line_max=8"], "line_max must be"),
        (&["header_max=2G"], "header_max must be"),
        (&["headers_max=0"], "headers_max must be"),
        (&["body_max="], "body_max must be"),
        (&["idle_timeout=5"], "idle_timeout must be"),
        (&["idle_timeout=0s"], "idle_timeout must be"),
        (&["request_timeout=1h"], "request_timeout must be"),
        (&["requests_max=many"], "requests_max must be"),
        (&["size=2M", "bytes_max=1M"], "above bytes_max"),
    ] {
        let e = Config::from_args(args).unwrap_err();
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(
            e.contains(args[0]) || needle == "above bytes_max",
            "{args:?}: {e}"
        );
    }
}

#[test]
fn the_input_buffer_holds_the_largest_incomplete_head() {
    let c = Config::default();
    let mut head = "\r\n".repeat(crate::EMPTY_LINES_MAX);
    head += &format!("GET /{} HTTP/1.1\r\n", "a".repeat(c.limits.line_max - 14));
    head += "Host: a\r\n";
    let section = c.limits.header_max - "Host: a\r\n".len();
    head += &format!("X: {}", "b".repeat(section - 3));
    assert_eq!(
        crate::parse(head.as_bytes(), &c.limits),
        Ok(crate::Parsed::Incomplete)
    );
    assert!(head.len() < c.input_size());
}
