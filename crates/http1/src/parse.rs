//! The request head: request line and header section (RFC 9112 §2-§7, RFC 9110 §5).
//!
//! [`parse`] is given the bytes received so far and answers [`Parsed::Incomplete`], a
//! [`Request`] (borrowing the buffer) with the number of bytes its head took, or an [`Error`]
//! naming the rule broken and its status code. It re-reads the buffer from its start on each
//! call (the head is bounded, so this costs at most a few kilobytes a call), and it decides
//! only on complete lines and on the bounds: any prefix of a buffer gives `Incomplete` or the
//! same answer as the whole buffer, so the split of a request over reads never changes it.

use alloc::vec::Vec;

use crate::Status;

/// At most this many empty lines before a request line are skipped (RFC 9112 §2.2); one more is
/// [`Error::TooManyEmptyLines`].
pub const EMPTY_LINES_MAX: usize = 8;

/// The request methods this crate knows (RFC 9110 §9). Any other token is
/// [`Error::UnknownMethod`] (501).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`: the headers of the `GET`, no content.
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
}

impl Method {
    /// The method of a token (case-sensitive, RFC 9110 §9.1).
    pub fn from_token(token: &[u8]) -> Option<Method> {
        Some(match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    /// The method's token.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// The protocol versions served: exactly `HTTP/1.0` and `HTTP/1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after the response unless the request says
    /// `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1`: persistent unless `Connection: close`; `Host` required.
    Http11,
}

/// One header field line, its value without the surrounding whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'b> {
    /// The field name (a token; compare with [`eq_ignore_case`]).
    pub name: &'b [u8],
    /// The field value, leading and trailing spaces and tabs removed.
    pub value: &'b [u8],
}

/// How the request's content is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No content (no `Content-Length`, no `Transfer-Encoding`).
    None,
    /// `Content-Length: N` (N ≤ the body bound).
    Length(u64),
    /// `Transfer-Encoding: chunked` ([`crate::body::ChunkedDecoder`]).
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'b> {
    /// The method.
    pub method: Method,
    /// The request-target as sent (origin form `/a?b`, absolute form `http://h/a`, or `*`).
    pub target: &'b str,
    /// The target's path, without query: `/a` for `/a?b` and for `http://h/a?b`, `/` for
    /// `http://h`, `*` for `OPTIONS *`.
    pub path: &'b str,
    /// The protocol version.
    pub version: Version,
    /// The header field lines, in order.
    pub headers: Vec<Header<'b>>,
    /// The `Host` value (required in HTTP/1.1; never repeated).
    pub host: Option<&'b [u8]>,
    /// How the content is delimited.
    pub framing: Framing,
    /// The connection stays open after the response (by version and `Connection`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request.
    pub expect_continue: bool,
    /// Bytes of the buffer the head took (leading empty lines included); the content, or the
    /// next request, starts there.
    pub head_len: usize,
}

impl Request<'_> {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| eq_ignore_case(h.name, name.as_bytes()))
            .map(|h| h.value)
    }
}

/// What [`parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'b> {
    /// The head is not complete yet and breaks no rule so far: read more.
    Incomplete,
    /// A complete, valid request head.
    Complete(Request<'b>),
}

/// The bounds of a request, from the [`Config`](crate::Config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, without its line ending (longer: 414).
    pub line_max: usize,
    /// Largest header section in bytes, line endings and the final empty line included (larger:
    /// 431). Also bounds a chunked body's trailer section.
    pub header_max: usize,
    /// Most header field lines (more: 431).
    pub headers_max: usize,
    /// Largest content in bytes, `Content-Length` or the sum of the chunks (larger: 413).
    pub body_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            line_max: 4096,
            header_max: 8192,
            headers_max: 64,
            body_max: 1 << 20,
        }
    }
}

/// A request that breaks a rule; [`status`](Error::status) is the answer it gets, and the
/// connection is closed after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// More than [`EMPTY_LINES_MAX`] empty lines before the request line (400).
    TooManyEmptyLines,
    /// A CR not followed by LF (RFC 9112 §2.2) (400).
    BareCr,
    /// The request line is not `method SP target SP version` with single spaces (400).
    BadRequestLine,
    /// The method is not a token (400).
    BadMethod,
    /// The method is a token but not one of [`Method`]'s (501).
    UnknownMethod,
    /// The request-target has whitespace, a control or a non-ASCII byte, or is not in origin,
    /// absolute or (for `OPTIONS`) asterisk form (400).
    BadTarget,
    /// The version is not `HTTP/` DIGIT `.` DIGIT (400; the name is case-sensitive).
    BadVersion,
    /// `HTTP/x.y` other than 1.0 and 1.1 (505).
    UnsupportedVersion,
    /// The request line is longer than [`Limits::line_max`] (414).
    LineTooLong,
    /// The header section is larger than [`Limits::header_max`] (431).
    HeadersTooLarge,
    /// More than [`Limits::headers_max`] field lines (431).
    TooManyHeaders,
    /// A field line that starts with a space or tab: obsolete line folding, or whitespace
    /// after the request line (RFC 9112 §5.2, §2.2) (400).
    ObsFold,
    /// A field line without a colon, or a field name that is empty or not a token (400).
    BadHeaderName,
    /// Whitespace between the field name and the colon (RFC 9112 §5.1) (400).
    WhitespaceBeforeColon,
    /// A control character (other than tab) in a field value (400).
    BadHeaderValue,
    /// HTTP/1.1 without `Host` (RFC 9112 §3.2) (400).
    MissingHost,
    /// More than one `Host` line (400).
    RepeatedHost,
    /// A `Host` value that is not an authority (400).
    BadHost,
    /// A `Content-Length` that is not digits (a list of equal values is accepted) (400).
    BadContentLength,
    /// `Content-Length` values that differ (400).
    ConflictingContentLength,
    /// A `Content-Length` beyond `u64` (400).
    ContentLengthOverflow,
    /// Content larger than [`Limits::body_max`] (413).
    BodyTooLarge,
    /// `Transfer-Encoding` whose final coding is not `chunked`, with `chunked` twice, or empty
    /// (RFC 9112 §6.3: the length cannot be determined) (400).
    BadTransferEncoding,
    /// `chunked` last, after a coding this server does not implement (501).
    UnsupportedTransferCoding,
    /// `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 §6.1: faulty framing) (400).
    TransferEncodingInHttp10,
    /// Both `Transfer-Encoding` and `Content-Length` (RFC 9112 §6.1 allows rejecting) (400).
    TransferEncodingWithLength,
    /// An `Expect` other than `100-continue` (RFC 9110 §10.1.1) (417).
    BadExpect,
    /// A chunk-size that is not hex, longer than 16 digits, or a chunk not followed by its
    /// line ending (400).
    BadChunk,
    /// A chunk extension longer than [`CHUNK_EXT_MAX`](crate::body::CHUNK_EXT_MAX) (400).
    ChunkExtensionTooLong,
    /// A control character in a chunk extension or trailer line (400).
    BadTrailer,
    /// A trailer section larger than [`Limits::header_max`] (431).
    TrailersTooLarge,
}

impl Error {
    /// The status code the request is answered with.
    pub fn status(self) -> Status {
        match self {
            Error::UnknownMethod | Error::UnsupportedTransferCoding => Status::NotImplemented,
            Error::UnsupportedVersion => Status::VersionNotSupported,
            Error::LineTooLong => Status::UriTooLong,
            Error::HeadersTooLarge | Error::TooManyHeaders | Error::TrailersTooLarge => {
                Status::FieldsTooLarge
            }
            Error::BodyTooLarge => Status::ContentTooLarge,
            Error::BadExpect => Status::ExpectationFailed,
            _ => Status::BadRequest,
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// ASCII case-insensitive equality.
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `s` without leading and trailing spaces and tabs (OWS).
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated list (RFC 9110 §5.6.1), trimmed, empty ones skipped.
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// The line that starts at `pos`: its bytes without the line ending (CRLF, or a bare LF), and
/// where the next line starts. `None` while no LF has arrived.
fn line_at(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let lf = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, pos + lf + 1))
}

/// Length of an unfinished line from `pos`, a final CR (perhaps the start of its CRLF) not
/// counted.
fn partial_len(buf: &[u8], pos: usize) -> usize {
    let rest = buf.get(pos..).unwrap_or(&[]);
    rest.strip_suffix(b"\r").unwrap_or(rest).len()
}

/// Parses the head of the request at the start of `buf` (see the module docs).
pub fn parse<'b>(buf: &'b [u8], limits: &Limits) -> Result<Parsed<'b>, Error> {
    // Empty lines before the request line (RFC 9112 §2.2), bounded.
    let mut pos = 0;
    let mut empty = 0;
    loop {
        match buf.get(pos..).unwrap_or(&[]) {
            [] | [b'\r'] => return Ok(Parsed::Incomplete),
            [b'\n', ..] => pos += 1,
            [b'\r', b'\n', ..] => pos += 2,
            [b'\r', _, ..] => return Err(Error::BareCr),
            _ => break,
        }
        empty += 1;
        if empty > EMPTY_LINES_MAX {
            return Err(Error::TooManyEmptyLines);
        }
    }

    let Some((line, next)) = line_at(buf, pos) else {
        if partial_len(buf, pos) > limits.line_max {
            return Err(Error::LineTooLong);
        }
        return Ok(Parsed::Incomplete);
    };
    if line.len() > limits.line_max {
        return Err(Error::LineTooLong);
    }
    if line.contains(&b'\r') {
        return Err(Error::BareCr);
    }
    let (method, target, path, version) = request_line(line)?;

    // The header section.
    let section = next;
    let mut pos = next;
    let mut headers = Vec::new();
    loop {
        let Some((line, next)) = line_at(buf, pos) else {
            if buf.len() - section > limits.header_max {
                return Err(Error::HeadersTooLarge);
            }
            return Ok(Parsed::Incomplete);
        };
        if next - section > limits.header_max {
            return Err(Error::HeadersTooLarge);
        }
        pos = next;
        if line.is_empty() {
            break;
        }
        if headers.len() >= limits.headers_max {
            return Err(Error::TooManyHeaders);
        }
        if line.contains(&b'\r') {
            return Err(Error::BareCr);
        }
        headers.push(field_line(line)?);
    }

    let mut request = Request {
        method,
        target,
        path,
        version,
        headers,
        host: None,
        framing: Framing::None,
        keep_alive: version == Version::Http11,
        expect_continue: false,
        head_len: pos,
    };
    semantics(&mut request, limits)?;
    Ok(Parsed::Complete(request))
}

/// `method SP request-target SP HTTP-version` (RFC 9112 §3). Syntax errors (400) first, then
/// the version (505), then the method (501), then the target's form (400).
fn request_line(line: &[u8]) -> Result<(Method, &str, &str, Version), Error> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::BadRequestLine);
    };
    if method.is_empty() || target.is_empty() || version.is_empty() {
        return Err(Error::BadRequestLine); // two spaces in a row, or a space at an end
    }
    if !method.iter().all(|&b| is_tchar(b)) {
        return Err(Error::BadMethod);
    }
    if !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(Error::BadTarget);
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Error::UnsupportedVersion);
        }
        _ => return Err(Error::BadVersion),
    };
    let method = Method::from_token(method).ok_or(Error::UnknownMethod)?;
    let target = core::str::from_utf8(target).map_err(|_| Error::BadTarget)?;
    let path = target_path(method, target)?;
    Ok((method, target, path, version))
}

/// The path of a request-target (RFC 9112 §3.2): origin form, absolute form (`http` or
/// `https`), or `*` for `OPTIONS`. Authority form is `CONNECT`'s, which is not served.
/// Where the first of `delimiters` (ASCII) is in `s`: a byte search, so a char boundary.
fn find_ascii(s: &str, delimiters: &[u8]) -> Option<usize> {
    s.bytes().position(|b| delimiters.contains(&b))
}

/// `s` up to its query or fragment.
fn without_query(s: &str) -> &str {
    find_ascii(s, b"?#").and_then(|i| s.get(..i)).unwrap_or(s)
}

fn target_path(method: Method, target: &str) -> Result<&str, Error> {
    // Byte searches and `get`, not `str::find` of a string and `&str[range]`: the substring
    // searcher is large, and a str-slicing panic path formats chars with `Debug`, which brings
    // core's Unicode tables into the image.
    if target.starts_with('/') {
        return Ok(without_query(target));
    }
    if target == "*" {
        return if method == Method::Options {
            Ok(target)
        } else {
            Err(Error::BadTarget)
        };
    }
    let scheme_end = target
        .as_bytes()
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(Error::BadTarget)?;
    let (scheme, rest) = (
        &target.as_bytes()[..scheme_end],
        target.get(scheme_end + 3..),
    );
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(Error::BadTarget);
    }
    let rest = rest.unwrap_or_default();
    let authority_end = find_ascii(rest, b"/?#").unwrap_or(rest.len());
    if authority_end == 0 {
        return Err(Error::BadTarget);
    }
    let path = without_query(rest.get(authority_end..).unwrap_or_default());
    Ok(if path.is_empty() { "/" } else { path })
}

/// `field-name ":" OWS field-value OWS` (RFC 9112 §5).
fn field_line(line: &[u8]) -> Result<Header<'_>, Error> {
    if let [b' ' | b'\t', ..] = line {
        return Err(Error::ObsFold);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Error::BadHeaderName)?;
    let name = &line[..colon];
    if let [.., b' ' | b'\t'] = name {
        return Err(Error::WhitespaceBeforeColon);
    }
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Error::BadHeaderName);
    }
    let value = trim_ows(&line[colon + 1..]);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::BadHeaderValue);
    }
    Ok(Header { name, value })
}

/// The rules between fields: `Host`, `Content-Length`, `Transfer-Encoding`, `Connection`,
/// `Expect`.
fn semantics(request: &mut Request<'_>, limits: &Limits) -> Result<(), Error> {
    let mut host = None;
    let mut length: Option<u64> = None;
    let mut has_te = false;
    let mut chunked_count = 0;
    let mut last_coding_chunked = false;
    let mut other_coding = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    for h in &request.headers {
        let name = h.name;
        if eq_ignore_case(name, b"host") {
            if host.is_some() {
                return Err(Error::RepeatedHost);
            }
            if !h.value.iter().all(|&b| is_authority_byte(b)) {
                return Err(Error::BadHost);
            }
            host = Some(h.value);
        } else if eq_ignore_case(name, b"content-length") {
            // A list of equal values is one value (RFC 9110 §8.6); an empty value is invalid.
            let mut any = false;
            for element in h.value.split(|&b| b == b',').map(trim_ows) {
                let n = content_length(element)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::ConflictingContentLength);
                }
                length = Some(n);
                any = true;
            }
            if !any {
                return Err(Error::BadContentLength);
            }
        } else if eq_ignore_case(name, b"transfer-encoding") {
            has_te = true;
            for element in list_elements(h.value) {
                let coding = trim_ows(element.split(|&b| b == b';').next().unwrap_or(&[]));
                if coding.is_empty() || !coding.iter().all(|&b| is_tchar(b)) {
                    return Err(Error::BadTransferEncoding);
                }
                last_coding_chunked = eq_ignore_case(coding, b"chunked");
                if last_coding_chunked {
                    chunked_count += 1;
                } else {
                    other_coding = true;
                }
            }
        } else if eq_ignore_case(name, b"connection") {
            for option in list_elements(h.value) {
                close |= eq_ignore_case(option, b"close");
                keep_alive |= eq_ignore_case(option, b"keep-alive");
            }
        } else if eq_ignore_case(name, b"expect") && request.version == Version::Http11 {
            // An HTTP/1.0 request's Expect is ignored (RFC 9110 §10.1.1).
            for expectation in list_elements(h.value) {
                if eq_ignore_case(expectation, b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(Error::BadExpect);
                }
            }
        }
    }
    if host.is_none() && request.version == Version::Http11 {
        return Err(Error::MissingHost);
    }
    request.host = host;
    request.framing = if has_te {
        if request.version == Version::Http10 {
            return Err(Error::TransferEncodingInHttp10);
        }
        if length.is_some() {
            return Err(Error::TransferEncodingWithLength);
        }
        if !last_coding_chunked || chunked_count != 1 {
            return Err(Error::BadTransferEncoding);
        }
        if other_coding {
            return Err(Error::UnsupportedTransferCoding);
        }
        Framing::Chunked
    } else if let Some(n) = length {
        if n > limits.body_max {
            return Err(Error::BodyTooLarge);
        }
        Framing::Length(n)
    } else {
        Framing::None
    };
    request.keep_alive = !close && (request.version == Version::Http11 || keep_alive);
    request.expect_continue = expect_continue && request.framing != Framing::None;
    Ok(())
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6).
fn content_length(digits: &[u8]) -> Result<u64, Error> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadContentLength);
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(Error::ContentLengthOverflow)
    })
}

/// A byte of `uri-host [":" port]` (RFC 3986: unreserved, sub-delims, `%` of pct-encoded,
/// `:` and the brackets of an IP literal).
fn is_authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b)
}
