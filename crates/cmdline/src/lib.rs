//! The kernel command line: kernel options, the application's arguments, and the monitor's own
//! parameters.
//!
//! [`KernelArgs::parse`] splits the line into kernel options, the application's arguments
//! (decoded: the encoding, which carries any argument unchanged, is below) and the monitor's
//! parameters. xtask's `cmdline.rs` encodes the arguments and checks its encoding with this
//! crate's parser, so both sides read one grammar.
//!
//! ```
//! use cmdline::KernelArgs;
//! let line = r#"log=debug bootchart -- one "two words" "" "say \"hi\"" -- virtio_mmio.device=512@0xfeb00e00:12"#;
//! let args = KernelArgs::<256>::parse(line).unwrap();
//! assert_eq!(args.log_level, Some(log::LevelFilter::Debug));
//! assert!(args.bootchart);
//! assert_eq!(args.app_args().collect::<Vec<_>>(), ["one", "two words", "", "say \"hi\""]);
//! ```
//!
//! # Grammar
//!
//! The line is split into tokens at ASCII whitespace (space, tab, newline, carriage return,
//! form feed) outside double quotes. Within a token:
//!
//! - `"..."` quotes: whitespace inside is part of the token; the quotes are not. `""` alone is
//!   an empty token (an empty argument).
//! - `\\` is a backslash, `\"` a double quote, and `\xHH` (two hex digits, 00 to 7f) that ASCII
//!   character, inside quotes and outside. Any other backslash is an error.
//!
//! A token with no quote and no backslash is *bare*. Only bare tokens are markers or options,
//! so `"--"` and `"log=debug"` are plain arguments.
//!
//! # Structure
//!
//! `[kernel options] [-- app args [-- kernel options]]`
//!
//! - Before the first bare `--`: bare `log=LEVEL` and `bootchart` are kernel options, and so
//!   are bare `ip=...` and `gw=...` (the network's address and gateway, see [`VALUE_OPTIONS`]
//!   and [`kernel_option`]: the network stack checks their values), bare
//!   `virtio_mmio.device=...` tokens are the monitor's (see [`MONITOR_PARAMS`]), and every
//!   other token is an argument of the app (so `hello world` works without `--`).
//! - After the first bare `--`, every token is an argument of the app, up to a second bare
//!   `--` that closes the list. What follows the closing `--` is the kernel's again: its
//!   options count, and every other token is ignored (monitors append their parameters at the
//!   end of the line, after the arguments).
//! - A list without a closing `--` (a command line written by hand) runs to the end of the
//!   line, except that its trailing run of bare monitor parameters is not the app's.
//!
//! `cargo xtask run` writes the arguments it is given as `-- ARG... --`, quoting every
//! argument that is empty, is `--`, or holds whitespace, a quote, a backslash or a control
//! character (controls as `\xHH`), so each arrives unchanged, whatever the monitor appends.
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;
use log::LevelFilter;

/// Parameters that monitors append to the command line (QEMU `microvm` with `acpi=off`,
/// Firecracker): bare tokens starting with one of these are never the app's arguments outside
/// a closed list. [`monitor_params`] gives them (crate `pc`'s `virtio_mmio` reads them).
pub const MONITOR_PARAMS: [&str; 1] = ["virtio_mmio.device="];

/// Kernel options with a value that a kernel component reads for itself with
/// [`kernel_option`]: `ip=ADDRESS/PREFIX` or `ip=dhcp`, and `gw=ADDRESS` (crate `net` checks the
/// values). Like `log=`, bare ones outside the app's list are never the app's arguments.
pub const VALUE_OPTIONS: [&str; 2] = ["ip=", "gw="];

/// The value of the kernel option `key` (one of [`VALUE_OPTIONS`] without its `=`) on `line`:
/// the last bare `key=VALUE` token where kernel options go (before the app's arguments, or after
/// a closed list), or `None`. A bad quote or escape ends the search ([`KernelArgs::parse`]
/// reports it).
///
/// ```
/// let line = "ip=10.0.2.15/24 -- ip=not-this -- gw=10.0.2.2";
/// assert_eq!(cmdline::kernel_option(line, "ip"), Some("10.0.2.15/24"));
/// assert_eq!(cmdline::kernel_option(line, "gw"), Some("10.0.2.2"));
/// assert_eq!(cmdline::kernel_option("hello", "ip"), None);
/// ```
pub fn kernel_option<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut part = Part::Before;
    let mut found = None;
    for token in tokens(line) {
        let Ok(token) = token else { break };
        match part {
            Part::Before | Part::List if token.is_marker() => {
                part = if part == Part::Before {
                    Part::List
                } else {
                    Part::After
                };
            }
            Part::List => {}
            Part::Before | Part::After => {
                if token.is_bare()
                    && let Some(value) = token
                        .raw
                        .strip_prefix(key)
                        .and_then(|rest| rest.strip_prefix('='))
                {
                    found = Some(value);
                }
            }
        }
    }
    found
}

/// Parses a log level name (`off`, `error`, `warn`, `info`, `debug`, `trace`, any case): the
/// `log` crate's own names, which the profile's `log_level` takes too (crate `slots`).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    s.parse().ok()
}

/// A bad kernel command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsError<'a> {
    /// `log=` with a value that is not a level.
    BadLogLevel(&'a str),
    /// The monitor passed more bytes than the kernel keeps.
    TooLong {
        /// Bytes given (a lower bound when `at_least`).
        len: usize,
        /// Bytes accepted.
        max: usize,
        /// The platform stopped looking for the end of the line after `len` bytes, so the line
        /// is at least that long.
        at_least: bool,
    },
    /// The command line is not UTF-8.
    NotUtf8,
    /// A `"` that is never closed (its byte offset).
    UnterminatedQuote(usize),
    /// A backslash that is not `\\`, `\"` or `\xHH` with HH at most 7f: its byte offset and the
    /// escape as written (cut at the end of the line).
    BadEscape {
        /// Byte offset of the backslash.
        at: usize,
        /// The escape as written.
        escape: &'a str,
    },
    /// The decoded arguments do not fit the kernel's buffer (cannot happen for a line within
    /// the limit; see [`KernelArgs`]).
    ArgsTooLong,
}

impl fmt::Display for ArgsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::BadLogLevel(v) => write!(
                f,
                "log=\"{v}\" is not a log level; use one of off, error, warn, info, debug, trace"
            ),
            ArgsError::TooLong {
                len,
                max,
                at_least: false,
            } => write!(
                f,
                "the command line is {len} bytes long; the limit is {max} bytes"
            ),
            ArgsError::TooLong {
                len,
                max,
                at_least: true,
            } => write!(
                f,
                "the command line is at least {len} bytes long (the kernel looks no further for \
                 its end); the limit is {max} bytes"
            ),
            ArgsError::NotUtf8 => write!(f, "the command line is not valid UTF-8"),
            ArgsError::UnterminatedQuote(at) => {
                write!(f, "the quote at byte {at} is never closed")
            }
            ArgsError::BadEscape { at, escape } => write!(
                f,
                "bad escape `{escape}` at byte {at}: the escapes are \\\\, \\\" and \\xHH (an \
                 ASCII character, 00 to 7f)"
            ),
            ArgsError::ArgsTooLong => {
                write!(f, "the arguments do not fit the kernel's argument buffer")
            }
        }
    }
}

impl core::error::Error for ArgsError<'_> {}

/// `s.starts_with(prefix)` as a plain loop: `starts_with` calls `memcmp` for a prefix this long,
/// which would cost the image half a KiB.
fn has_prefix(s: &[u8], prefix: &[u8]) -> bool {
    if s.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if s[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

fn is_separator(b: u8) -> bool {
    b.is_ascii_whitespace()
}

/// One token of the command line, as written (still quoted and escaped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    raw: &'a str,
    bare: bool,
}

impl<'a> Token<'a> {
    /// The token as written.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True when the token has no quote and no backslash (only bare tokens are markers,
    /// options or monitor parameters).
    pub fn is_bare(&self) -> bool {
        self.bare
    }

    fn is_marker(&self) -> bool {
        self.bare && self.raw == "--"
    }

    fn is_monitor_param(&self) -> bool {
        self.bare && has_prefix(self.raw.as_bytes(), MONITOR_PARAMS[0].as_bytes())
    }

    /// The decoded bytes, one at a time (quotes removed, escapes replaced). They are UTF-8:
    /// the token is, and escapes give ASCII. (A token that did not come from [`tokens`] without
    /// an error decodes as far as its escapes make sense.)
    pub fn decoded(&self) -> Decoded<'a> {
        Decoded {
            rest: self.raw.as_bytes(),
        }
    }
}

/// The decoded bytes of a [`Token`] (see [`Token::decoded`]).
#[derive(Clone, Debug)]
pub struct Decoded<'a> {
    rest: &'a [u8],
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        loop {
            let (&b, rest) = self.rest.split_first()?;
            self.rest = rest;
            match b {
                b'"' => continue,
                b'\\' => {
                    // The tokenizer checked every escape; a token cut short decodes as far as
                    // it goes.
                    let (&e, rest) = self.rest.split_first()?;
                    self.rest = rest;
                    if e != b'x' {
                        return Some(e);
                    }
                    let (hi, lo) = (*self.rest.first()?, *self.rest.get(1)?);
                    self.rest = self.rest.get(2..).unwrap_or_default();
                    return Some((hex(hi)? << 4) | hex(lo)?);
                }
                _ => return Some(b),
            }
        }
    }
}

/// The tokens of a command line (see the module docs); an error ends the iteration.
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    line: &'a str,
    pos: usize,
}

/// Splits `line` into tokens.
pub fn tokens(line: &str) -> Tokens<'_> {
    Tokens { line, pos: 0 }
}

impl<'a> Tokens<'a> {
    /// `line[start..end]`, which the tokenizer only calls at ASCII bytes (character
    /// boundaries); `get` rather than indexing keeps string-slicing panics out of the image.
    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.line.get(start..end).unwrap_or_default()
    }

    fn bad_escape(&self, at: usize, chars: usize) -> ArgsError<'a> {
        // The backslash and up to `chars` characters after it.
        let bytes = self.line.as_bytes();
        let mut end = at + 1;
        for _ in 0..chars {
            if end >= bytes.len() {
                break;
            }
            end += 1;
            while end < bytes.len() && bytes[end] & 0xc0 == 0x80 {
                end += 1;
            }
        }
        ArgsError::BadEscape {
            at,
            escape: self.slice(at, end),
        }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Result<Token<'a>, ArgsError<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.line.as_bytes();
        while self.pos < bytes.len() && is_separator(bytes[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= bytes.len() {
            return None;
        }
        let start = self.pos;
        let mut bare = true;
        let mut quote_at: Option<usize> = None;
        let mut i = start;
        while i < bytes.len() {
            let b = bytes[i];
            if quote_at.is_none() && is_separator(b) {
                break;
            }
            match b {
                b'"' => {
                    bare = false;
                    quote_at = match quote_at {
                        Some(_) => None,
                        None => Some(i),
                    };
                    i += 1;
                }
                b'\\' => {
                    bare = false;
                    match bytes.get(i + 1) {
                        Some(b'\\' | b'"') => i += 2,
                        Some(b'x') => {
                            let value = bytes
                                .get(i + 2)
                                .and_then(|h| hex(*h))
                                .zip(bytes.get(i + 3).and_then(|l| hex(*l)));
                            match value {
                                Some((hi, _)) if hi < 8 => i += 4,
                                _ => {
                                    self.pos = bytes.len();
                                    return Some(Err(self.bad_escape(i, 3)));
                                }
                            }
                        }
                        _ => {
                            self.pos = bytes.len();
                            return Some(Err(self.bad_escape(i, 1)));
                        }
                    }
                }
                _ => i += 1,
            }
        }
        if let Some(at) = quote_at {
            self.pos = bytes.len();
            return Some(Err(ArgsError::UnterminatedQuote(at)));
        }
        self.pos = i;
        Some(Ok(Token {
            raw: self.slice(start, i),
            bare,
        }))
    }
}

/// Where the app's list is: before the first `--`, between the markers, after the closing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Before,
    List,
    After,
}

/// The kernel command line, split: `[kernel options] [-- app args [-- kernel options]]` (see
/// the module docs), with the app's arguments decoded into `N` bytes: each takes its length plus
/// one, so `N = L + 1` holds those of any line of `L` bytes (a token of `r` bytes decodes to at
/// most `r`, and a separator or the end of the line follows it).
#[derive(Clone, Debug)]
pub struct KernelArgs<const N: usize> {
    /// `log=LEVEL`, when given.
    pub log_level: Option<LevelFilter>,
    /// `bootchart`: print the TSC time of each boot phase.
    pub bootchart: bool,
    args: ArgBuf<N>,
}

impl<const N: usize> KernelArgs<N> {
    /// Parses a command line, in one pass: every token, quote and escape is checked, kernel
    /// options are read and the app's arguments decoded.
    #[inline(never)]
    pub fn parse(line: &str) -> Result<Self, ArgsError<'_>> {
        let mut args = KernelArgs {
            log_level: None,
            bootchart: false,
            args: ArgBuf {
                bytes: [0; N],
                len: 0,
            },
        };
        let mut part = Part::Before;
        // In an open list: where its trailing run of monitor parameters began.
        let mut monitor_run: Option<usize> = None;
        for token in tokens(line) {
            let token = token?;
            match part {
                Part::Before | Part::List if token.is_marker() => {
                    part = if part == Part::Before {
                        Part::List
                    } else {
                        Part::After
                    };
                }
                Part::List => {
                    if !token.is_monitor_param() {
                        monitor_run = None;
                    } else if monitor_run.is_none() {
                        monitor_run = Some(args.args.len);
                    }
                    args.args.push(token)?;
                }
                Part::Before | Part::After => {
                    let raw = token.raw.as_bytes();
                    if !token.is_bare() {
                        if part == Part::Before {
                            args.args.push(token)?;
                        }
                    } else if has_prefix(raw, b"log=") {
                        let level = token.raw.get(4..).unwrap_or_default();
                        args.log_level =
                            Some(parse_level(level).ok_or(ArgsError::BadLogLevel(level))?);
                    } else if raw == b"bootchart" {
                        args.bootchart = true;
                    } else if VALUE_OPTIONS.iter().any(|o| has_prefix(raw, o.as_bytes())) {
                        // The network's own (see `kernel_option`).
                    } else if part == Part::Before && !token.is_monitor_param() {
                        args.args.push(token)?;
                    }
                }
            }
        }
        if let (Part::List, Some(start)) = (part, monitor_run) {
            args.args.len = start;
        }
        Ok(args)
    }

    /// The application's arguments, decoded.
    pub fn app_args(&self) -> Args<'_> {
        self.args.iter()
    }

    /// Bytes the decoded arguments take (at most the length of the line plus one).
    pub fn app_args_bytes(&self) -> usize {
        self.args.len
    }
}

/// The monitor's parameters on a command line: its bare tokens that start with one of
/// [`MONITOR_PARAMS`] and are not the app's by the rules of the module docs (before the
/// arguments, after a closed list, or in the trailing run of an open one), as written (a bare
/// token is its own decoding), in order. A bad quote or escape ends them
/// ([`KernelArgs::parse`] reports it).
///
/// ```
/// let line = "-- virtio_mmio.device=1@0x0:0 -- virtio_mmio.device=4K@0xd0000000:5";
/// assert_eq!(
///     cmdline::monitor_params(line).collect::<Vec<_>>(),
///     ["virtio_mmio.device=4K@0xd0000000:5"]
/// );
/// ```
pub fn monitor_params(line: &str) -> MonitorParams<'_> {
    MonitorParams {
        tokens: tokens(line),
        part: Part::Before,
    }
}

/// The monitor's parameters on a command line (see [`monitor_params`]).
#[derive(Clone, Debug)]
pub struct MonitorParams<'a> {
    tokens: Tokens<'a>,
    part: Part,
}

impl<'a> Iterator for MonitorParams<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while let Some(token) = self.tokens.next() {
            let token = token.ok()?;
            match self.part {
                Part::Before | Part::List if token.is_marker() => {
                    self.part = if self.part == Part::Before {
                        Part::List
                    } else {
                        Part::After
                    };
                }
                // In a list, only the trailing run of an open one: every token after this one
                // is a monitor parameter too, and no marker closes the list.
                Part::List => {
                    let trailing = token.is_monitor_param()
                        && self
                            .tokens
                            .clone()
                            .all(|t| t.is_ok_and(|t| t.is_monitor_param()));
                    if trailing {
                        return Some(token.raw);
                    }
                }
                Part::Before | Part::After if token.is_monitor_param() => return Some(token.raw),
                Part::Before | Part::After => {}
            }
        }
        None
    }
}

/// The application's arguments, decoded, in a buffer of `N` bytes: each argument is followed by
/// a 0xff byte, which UTF-8 never contains.
#[derive(Clone, Debug)]
struct ArgBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

const END: u8 = 0xff;

impl<const N: usize> ArgBuf<N> {
    fn push<'a>(&mut self, token: Token<'_>) -> Result<(), ArgsError<'a>> {
        for b in token.decoded().chain([END]) {
            *self.bytes.get_mut(self.len).ok_or(ArgsError::ArgsTooLong)? = b;
            self.len += 1;
        }
        Ok(())
    }

    fn iter(&self) -> Args<'_> {
        Args {
            rest: self.bytes.get(..self.len).unwrap_or_default(),
        }
    }
}

/// The application's arguments (see [`KernelArgs::app_args`]).
#[derive(Clone, Debug)]
pub struct Args<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let end = self.rest.iter().position(|&b| b == END)?;
        let (arg, rest) = self.rest.split_at(end);
        self.rest = rest.get(1..).unwrap_or_default();
        // UTF-8: a token of a UTF-8 line, with ASCII for its escapes; `None` cannot happen.
        core::str::from_utf8(arg).ok()
    }
}

#[cfg(test)]
mod tests;
