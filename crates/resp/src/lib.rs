//! RESP2, the Redis protocol: an incremental, bounded request parser and the reply encoder, for
//! the `kvstore` app. Pure logic: no_std with `alloc`, no unsafe, host-tested.
//!
//! ```
//! use resp::{Limits, Parser, Request, Status};
//!
//! let parser = Parser::new(Limits::default());
//! let mut request = Request::new();
//! let buf = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n*1\r\n$4\r\nPI";
//! let Ok(Status::Complete(n)) = parser.parse(buf, &mut request) else { panic!() };
//! assert_eq!(request.args().collect::<Vec<_>>(), [&b"ECHO"[..], b"hi"]);
//! let Ok(Status::Complete(m)) = parser.parse(&buf[n..], &mut request) else { panic!() };
//! assert_eq!(request.arg(0), Some(&b"PING"[..])); // an inline command
//! // A partial frame: nothing consumed, read more and parse again from the same start.
//! assert_eq!(parser.parse(&buf[n + m..], &mut request), Ok(Status::Incomplete));
//!
//! let mut out = Vec::new();
//! resp::bulk(&mut out, b"hi");
//! resp::error(&mut out, "ERR syntax error");
//! assert_eq!(out, b"$2\r\nhi\r\n-ERR syntax error\r\n");
//! ```
//!
//! # What is parsed, as Redis 7's `networking.c` parses it
//!
//! A request starting with `*` is a **multibulk** array: `*N\r\n` then N bulk strings
//! `$len\r\n<len bytes>\r\n`. Anything else is an **inline** command: one line (ended by `\n`,
//! an `\r` before it dropped) split into arguments like `redis-cli` and telnet users type them:
//! whitespace separates, `"..."` takes `\n \r \t \b \a \\ \" \xHH` escapes, `'...'` takes `\'`,
//! and a closing quote must be followed by whitespace or the end of the line.
//!
//! - `*0`, `*-1` (any N ≤ 0) and an empty inline line are consumed without a command
//!   ([`Status::Empty`]), as Redis does.
//! - The two bytes after a bulk's data are skipped without being looked at, as Redis does.
//! - Numbers are Redis's `string2ll`: an optional `-`, digits, no leading zero, within `i64`.
//!
//! Protocol errors are [`ProtocolError`]s, whose [`ProtocolError::message`] is Redis's reply
//! word for word (`ERR Protocol error: invalid multibulk length`, `... expected '$', got 'x'`,
//! `... invalid bulk length`, `... too big inline request`, `... unbalanced quotes in
//! request`, `... too big mbulk count string`, `... too big bulk count string`); this crate adds
//! one, `ERR Protocol error: request bigger than N bytes`, for [`Limits::max_request`]. After a
//! protocol error Redis sends the error and closes the connection: so must the caller, since
//! where the next request starts is unknown.
//!
//! # Bounds
//!
//! [`Limits`] bound what one request may hold: `max_bulk` bytes in one argument, `max_args`
//! arguments, `max_inline` bytes in an inline line (and in a `*`/`$` count line), and
//! `max_request` bytes in all. They are checked as soon as the header that announces a size is
//! read, so a caller that buffers until [`Status::Incomplete`] turns into something else needs
//! at most `max_request` bytes (plus its read size) per connection.
//!
//! The parser keeps no state between calls: on [`Status::Incomplete`] the caller reads more and
//! parses again from the same start. Each call scans the partial request again, which costs
//! time proportional to the request (bounded by `max_request`), never memory.
//!
//! Cargo features: none.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

#[cfg(test)]
mod tests;

/// Bounds on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes in one bulk argument (Redis: `proto-max-bulk-len`, 512 MiB).
    pub max_bulk: usize,
    /// The most arguments in one multibulk request (Redis: 1,048,576 before 7.0).
    pub max_args: usize,
    /// The most bytes in an inline command's line, and in a `*N` or `$len` line (Redis:
    /// `PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline: usize,
    /// The most bytes one request may take in all, headers included.
    pub max_request: usize,
}

impl Default for Limits {
    /// 1 MiB requests and bulks, 64 KiB inline lines, 1024 arguments.
    fn default() -> Self {
        Limits {
            max_bulk: 1 << 20,
            max_args: 1024,
            max_inline: 64 * 1024,
            max_request: 1 << 20,
        }
    }
}

impl Limits {
    /// Limits for requests of at most `max_request` bytes: bulks as large, inline lines of at
    /// most 64 KiB (less when the request bound is smaller), `max_args` arguments.
    pub fn for_request(max_request: usize, max_args: usize) -> Self {
        Limits {
            max_bulk: max_request,
            max_args,
            max_inline: max_request.min(64 * 1024),
            max_request,
        }
    }
}

/// A malformed or oversized request. After one, the caller replies with
/// [`ProtocolError::message`] and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*N` with N not a number or more than `max_args`.
    InvalidMultibulkLength,
    /// A bulk's header does not start with `$` (the byte it starts with).
    ExpectedDollar(u8),
    /// `$len` with len not a number, negative or more than `max_bulk`.
    InvalidBulkLength,
    /// An inline line longer than `max_inline`.
    TooBigInline,
    /// An inline line with a quote that does not close, or a closing quote followed by
    /// something other than whitespace.
    UnbalancedQuotes,
    /// A `*N` line longer than `max_inline`.
    TooBigMultibulkCount,
    /// A `$len` line longer than `max_inline`.
    TooBigBulkCount,
    /// The request would take more than `max_request` bytes (the bound).
    TooBigRequest(usize),
}

impl ProtocolError {
    /// The error reply, without `-` and CRLF, as Redis words it.
    pub fn message(&self) -> ProtocolMessage {
        ProtocolMessage(*self)
    }
}

/// [`ProtocolError::message`]: displays the reply text.
#[derive(Debug, Clone, Copy)]
pub struct ProtocolMessage(ProtocolError);

impl fmt::Display for ProtocolMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ERR Protocol error: ")?;
        match self.0 {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::ExpectedDollar(b) => {
                // Redis sanitises CR and LF in error replies to spaces.
                let c = if b == b'\r' || b == b'\n' { b' ' } else { b };
                if c.is_ascii() {
                    write!(f, "expected '$', got '{}'", c as char)
                } else {
                    write!(f, "expected '$', got '\\x{c:02x}'")
                }
            }
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::TooBigInline => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::TooBigMultibulkCount => f.write_str("too big mbulk count string"),
            ProtocolError::TooBigBulkCount => f.write_str("too big bulk count string"),
            ProtocolError::TooBigRequest(max) => write!(f, "request bigger than {max} bytes"),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message().fmt(f)
    }
}

impl core::error::Error for ProtocolError {}

/// What one [`Parser::parse`] call found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A whole request, now in the [`Request`]; it took this many bytes.
    Complete(usize),
    /// A request without a command (`*0`, `*-1`, an empty inline line): skip this many bytes.
    Empty(usize),
    /// Not a whole request yet: nothing consumed; read more and parse again.
    Incomplete,
}

/// One request's arguments, in one buffer (reused from request to request: clearing keeps the
/// allocations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Request {
    /// An empty request.
    pub fn new() -> Self {
        Request::default()
    }

    /// A request of these arguments (for tests and callers that build requests).
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Self {
        let mut r = Request::new();
        for a in args {
            r.push(a.as_ref());
        }
        r
    }

    /// Removes every argument.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Appends an argument.
    pub fn push(&mut self, arg: &[u8]) {
        self.data.extend_from_slice(arg);
        self.ends.push(self.data.len());
    }

    fn push_byte(&mut self, b: u8) {
        self.data.push(b);
    }

    fn end_arg(&mut self) {
        self.ends.push(self.data.len());
    }

    /// How many arguments (the command name included).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Argument `i` (0 is the command name).
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.data.get(start..end)
    }

    /// The arguments in order.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.ends.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.data[start..self.ends[i]]
        })
    }
}

/// The request parser (stateless but for its [`Limits`]).
#[derive(Debug, Clone, Copy)]
pub struct Parser {
    limits: Limits,
}

impl Parser {
    /// A parser with these bounds.
    pub fn new(limits: Limits) -> Self {
        Parser { limits }
    }

    /// Its bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses the request at the start of `buf` into `request` (cleared first).
    pub fn parse(&self, buf: &[u8], request: &mut Request) -> Result<Status, ProtocolError> {
        request.clear();
        match buf.first() {
            None => Ok(Status::Incomplete),
            Some(b'*') => self.multibulk(buf, request),
            Some(_) => self.inline(buf, request),
        }
    }

    fn multibulk(&self, buf: &[u8], request: &mut Request) -> Result<Status, ProtocolError> {
        let l = self.limits;
        // `*N\r\n`: Redis looks for the `\r` and takes the byte after it for the `\n`.
        let Some(cr) = find(buf, b'\r') else {
            return if buf.len() > l.max_inline {
                Err(ProtocolError::TooBigMultibulkCount)
            } else {
                Ok(Status::Incomplete)
            };
        };
        if cr > l.max_inline {
            return Err(ProtocolError::TooBigMultibulkCount);
        }
        if cr + 2 > buf.len() {
            return Ok(Status::Incomplete);
        }
        let count = match string2ll(&buf[1..cr]) {
            Some(n) if n <= l.max_args as i64 => n,
            _ => return Err(ProtocolError::InvalidMultibulkLength),
        };
        let mut pos = cr + 2;
        if count <= 0 {
            return Ok(Status::Empty(pos));
        }
        for _ in 0..count {
            let rest = &buf[pos..];
            let Some(&first) = rest.first() else {
                return Ok(Status::Incomplete);
            };
            let Some(cr) = find(rest, b'\r') else {
                return if rest.len() > l.max_inline {
                    Err(ProtocolError::TooBigBulkCount)
                } else {
                    self.check_total(pos + rest.len())
                };
            };
            if cr > l.max_inline {
                return Err(ProtocolError::TooBigBulkCount);
            }
            if cr + 2 > rest.len() {
                return self.check_total(pos + rest.len());
            }
            if first != b'$' {
                return Err(ProtocolError::ExpectedDollar(first));
            }
            let len = match string2ll(&rest[1..cr]) {
                Some(n) if n >= 0 && n as u64 <= l.max_bulk as u64 => n as usize,
                _ => return Err(ProtocolError::InvalidBulkLength),
            };
            let data = pos + cr + 2;
            // The request's bytes up to this bulk's data's end (its CRLF not counted).
            if data.saturating_add(len) > l.max_request {
                return Err(ProtocolError::TooBigRequest(l.max_request));
            }
            let end = data + len + 2;
            if end > buf.len() {
                return Ok(Status::Incomplete);
            }
            request.push(&buf[data..data + len]);
            pos = end;
        }
        Ok(Status::Complete(pos))
    }

    /// `Incomplete`, unless the request has already grown beyond `max_request`.
    fn check_total(&self, seen: usize) -> Result<Status, ProtocolError> {
        if seen > self.limits.max_request {
            Err(ProtocolError::TooBigRequest(self.limits.max_request))
        } else {
            Ok(Status::Incomplete)
        }
    }

    // Inline commands (a telnet-style line) are rare next to multibulk requests: kept out of
    // the caller's request loop, kvstore [storage] is 448 bytes smaller.
    #[cold]
    fn inline(&self, buf: &[u8], request: &mut Request) -> Result<Status, ProtocolError> {
        let Some(lf) = find(buf, b'\n') else {
            return if buf.len() > self.limits.max_inline {
                Err(ProtocolError::TooBigInline)
            } else {
                Ok(Status::Incomplete)
            };
        };
        if lf > self.limits.max_inline {
            return Err(ProtocolError::TooBigInline);
        }
        let mut line = &buf[..lf];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        split_args(line, request)?;
        if request.len() > self.limits.max_args {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        if request.is_empty() {
            Ok(Status::Empty(lf + 1))
        } else {
            Ok(Status::Complete(lf + 1))
        }
    }
}

fn find(buf: &[u8], byte: u8) -> Option<usize> {
    buf.iter().position(|&b| b == byte)
}

/// Redis's `string2ll`: an optional `-`, then digits without a leading zero (`0` alone is
/// fine), within `i64`; nothing else (no `+`, no spaces, not empty).
pub fn string2ll(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Redis's `isspace` (C locale).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Redis's `sdssplitargs`: splits an inline line into `request`.
fn split_args(line: &[u8], request: &mut Request) -> Result<(), ProtocolError> {
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(());
        }
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = line.get(i).copied();
            if in_double {
                match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\')
                        if line.len() > i + 3
                            && line[i + 1] == b'x'
                            && hex(line[i + 2]).is_some()
                            && hex(line[i + 3]).is_some() =>
                    {
                        let h = hex(line[i + 2]).unwrap_or(0);
                        let l = hex(line[i + 3]).unwrap_or(0);
                        request.push_byte(h * 16 + l);
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        request.push_byte(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        // The closing quote must be followed by a space or nothing.
                        if i + 1 < line.len() && !is_space(line[i + 1]) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    }
                    Some(b) => request.push_byte(b),
                }
            } else if in_single {
                match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if i + 1 < line.len() && line[i + 1] == b'\'' => {
                        i += 1;
                        request.push_byte(b'\'');
                    }
                    Some(b'\'') => {
                        if i + 1 < line.len() && !is_space(line[i + 1]) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    }
                    Some(b) => request.push_byte(b),
                }
            } else {
                match c {
                    None => break,
                    Some(b) if is_space(b) => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(b) => request.push_byte(b),
                }
            }
            i += 1;
        }
        request.end_arg();
    }
}

// The encoder: each function appends one reply to `out`.

/// `+text\r\n` (`text` must hold no CR or LF).
pub fn simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `+OK\r\n`.
pub fn ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

/// `-text\r\n`, with every CR and LF of `text` turned into a space as Redis does.
pub fn error(out: &mut Vec<u8>, text: &str) {
    out.push(b'-');
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `-text\r\n` from bytes (CR and LF turned into spaces): for messages that quote arguments.
pub fn error_bytes(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'-');
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `-...\r\n` from formatted text (CR and LF turned into spaces).
pub fn error_fmt(out: &mut Vec<u8>, args: fmt::Arguments<'_>) {
    struct Sanitize<'a>(&'a mut Vec<u8>);
    impl fmt::Write for Sanitize<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.extend(
                s.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            Ok(())
        }
    }
    out.push(b'-');
    // Writing into a Vec cannot fail.
    let _ = fmt::write(&mut Sanitize(out), args);
    out.extend_from_slice(b"\r\n");
}

/// `:n\r\n`.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// `$len\r\ndata\r\n`.
pub fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    push_decimal(out, data.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `$-1\r\n`, the null bulk string.
pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*n\r\n`, the header of an array of `n` replies (which follow).
pub fn array(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_decimal(out, n as i64);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut v = n.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}
