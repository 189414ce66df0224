//! The content decoders.

use crate::body::*;
use crate::parse::{Error, Framing, Limits};

fn limits() -> Limits {
    Limits {
        line_max: 64,
        header_max: 32,
        headers_max: 8,
        body_max: 100,
    }
}

/// Decodes `input` in pieces of `step` bytes: the data, the bytes taken, or the error.
fn decode(framing: Framing, input: &[u8], step: usize) -> Result<(Vec<u8>, usize), Error> {
    let mut d = BodyDecoder::new(framing, &limits());
    let mut data = Vec::new();
    let mut taken = 0;
    let mut fed = 0;
    loop {
        let end = (fed + step).min(input.len());
        // Feed what was not taken yet, up to `end`.
        let p = d.decode(&input[taken..end], &mut |b| data.extend_from_slice(b))?;
        taken += p.consumed;
        if p.done {
            return Ok((data, taken));
        }
        assert_eq!(taken, end, "an unfinished decoder takes all it is given");
        if end == input.len() {
            panic!("input ended before the content: {input:?}");
        }
        fed = end;
    }
}

fn decode_all_ways(framing: Framing, input: &[u8]) -> Result<(Vec<u8>, usize), Error> {
    let whole = decode(framing, input, input.len().max(1));
    for step in 1..input.len().min(12) {
        assert_eq!(decode(framing, input, step), whole, "step {step}");
    }
    whole
}

#[test]
fn content_length() {
    let (data, n) = decode_all_ways(Framing::Length(5), b"helloGET").unwrap();
    assert_eq!((data.as_slice(), n), (&b"hello"[..], 5));
    let mut d = BodyDecoder::new(Framing::None, &limits());
    let p = d.decode(b"GET", &mut |_| panic!("no content")).unwrap();
    assert_eq!(
        p,
        Progress {
            consumed: 0,
            done: true
        }
    );
}

#[test]
fn chunked_content() {
    let body = b"5\r\nhello\r\n6;ext=1;x=\"y\"\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\nGET";
    let (data, n) = decode_all_ways(Framing::Chunked, body).unwrap();
    assert_eq!(data, b"hello world0123456789");
    assert_eq!(n, body.len() - 3);
    // Bare LF endings, upper and lower hex, leading zeros, trailers.
    let body = b"0a\nabcdefghij\n00F\r\nABCDEFGHIJKLMNO\r\n0\r\nTrailer: x\r\nOther: y\n\r\n";
    let (data, n) = decode_all_ways(Framing::Chunked, body).unwrap();
    assert_eq!(data, b"abcdefghijABCDEFGHIJKLMNO");
    assert_eq!(n, body.len());
    // Whitespace before an extension (BWS).
    let (data, _) = decode_all_ways(Framing::Chunked, b"1 ;a\r\nx\r\n0\r\n\r\n").unwrap();
    assert_eq!(data, b"x");
}

#[test]
fn chunked_errors() {
    let e = |input: &[u8]| {
        let mut d = BodyDecoder::new(Framing::Chunked, &limits());
        d.decode(input, &mut |_| {}).err()
    };
    assert_eq!(e(b"\r\n"), Some(Error::BadChunk), "no size");
    assert_eq!(e(b"g\r\n"), Some(Error::BadChunk));
    assert_eq!(e(b"-1\r\n"), Some(Error::BadChunk));
    assert_eq!(e(b"0x5\r\n"), Some(Error::BadChunk));
    assert_eq!(e(b"5\rx"), Some(Error::BareCr));
    assert_eq!(
        e(b"3\r\nabcd"),
        Some(Error::BadChunk),
        "data longer than its size"
    );
    assert_eq!(e(b"3\r\nabc\rd"), Some(Error::BareCr));
    assert_eq!(e(b"1;a\x01\r\n"), Some(Error::BadTrailer));
    assert_eq!(e(b"0\r\nX: a\x00\r\n\r\n"), Some(Error::BadTrailer));
    assert_eq!(e(b"0\r\n folded\r\n\r\n"), Some(Error::BadTrailer));
    assert_eq!(e(b"0\r\nX: a\rb"), Some(Error::BareCr));
    assert_eq!(e(b"0\r\n\rb"), Some(Error::BareCr));
    // Bounds: 16 hex digits fit 64 bits, 17 are refused; the sum is bounded by body_max.
    assert_eq!(e(b"00000000000000001\r\n"), Some(Error::BadChunk));
    assert_eq!(e(b"ffffffffffffffff\r\n"), Some(Error::BodyTooLarge));
    assert_eq!(e(b"65\r\n"), Some(Error::BodyTooLarge), "101 > 100");
    assert_eq!(e(b"64\r\n"), None, "100 fits");
    let mut two = b"32\r\n".to_vec();
    two.extend_from_slice(&[b'x'; 50]);
    two.extend_from_slice(b"\r\n33\r\n");
    assert_eq!(e(&two), Some(Error::BodyTooLarge), "50 + 51 > 100");
    assert_eq!(Error::BodyTooLarge.status(), crate::Status::ContentTooLarge);
    // Extensions at most CHUNK_EXT_MAX bytes.
    let mut ext = b"1;".to_vec();
    ext.extend(std::iter::repeat_n(b'a', CHUNK_EXT_MAX - 1));
    assert_eq!(e(&[&ext[..], b"\r\n"].concat()), None);
    ext.push(b'a');
    assert_eq!(e(&ext), Some(Error::ChunkExtensionTooLong));
    // Trailers at most header_max (32) bytes, final CRLF included.
    let fits = [b"0\r\n".as_slice(), &[b'a'; 28], b"\r\n\r\n"].concat();
    assert_eq!(e(&fits), None);
    let over = [b"0\r\n".as_slice(), &[b'a'; 29], b"\r\n\r\n"].concat();
    assert_eq!(e(&over), Some(Error::TrailersTooLarge));
    assert_eq!(
        Error::TrailersTooLarge.status(),
        crate::Status::FieldsTooLarge
    );
}

#[test]
fn the_decoder_stops_at_the_end_of_the_content() {
    let mut d = ChunkedDecoder::new(&limits());
    let p = d
        .decode(b"2\r\nab\r\n0\r\n\r\n2\r\nzz", &mut |_| {})
        .unwrap();
    assert_eq!(
        p,
        Progress {
            consumed: 12,
            done: true
        }
    );
    assert_eq!(d.total(), 2);
    let p = d.decode(b"more", &mut |_| panic!()).unwrap();
    assert_eq!(
        p,
        Progress {
            consumed: 0,
            done: true
        }
    );
}
