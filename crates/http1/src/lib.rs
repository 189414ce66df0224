//! HTTP/1.1 for the `httpd` app: an incremental request parser by RFC 9112, the content
//! decoders, the response writer and the connection loop, over any `embedded-io` connection.
//! Pure logic: no_std with `alloc`, no unsafe, host-tested.
//!
//! ```
//! use http1::{Config, End, StaticSite, serve};
//! # struct Conn(&'static [u8], Vec<u8>);
//! # impl embedded_io::ErrorType for Conn { type Error = embedded_io::ErrorKind; }
//! # impl embedded_io::Read for Conn {
//! #     fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> { embedded_io::Read::read(&mut self.0, buf).map_err(|_| embedded_io::ErrorKind::Other) }
//! # }
//! # impl embedded_io::Write for Conn {
//! #     fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> { self.1.extend_from_slice(buf); Ok(buf.len()) }
//! #     fn flush(&mut self) -> Result<(), Self::Error> { Ok(()) }
//! # }
//! let config = Config::from_args(&["port=8080", "size=4K", "idle_timeout=5s"]).unwrap();
//! let mut conn = Conn(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Vec::new());
//! let outcome = serve(&mut conn, &config, &StaticSite::new(&config));
//! assert_eq!(outcome.end, End::Closed);
//! assert_eq!(outcome.stats.requests, 2);
//! assert!(conn.1.ends_with(b"Connection: close\r\n\r\n012"));
//! ```
//!
//! # What is checked (RFC 9112 unless said otherwise)
//!
//! - **Request line** (§3): `method SP request-target SP HTTP-version`, single spaces. The
//!   method is a token (else 400) and one of `GET HEAD POST PUT DELETE OPTIONS` (else 501).
//!   The target is visible ASCII only (no whitespace, controls or bytes ≥ 0x80), in origin form
//!   (`/path?query`), absolute form (`http://host/path`, `https` too) or, for `OPTIONS` only,
//!   `*` (else 400). The version is exactly `HTTP/1.0` or `HTTP/1.1` (case-sensitive);
//!   another `HTTP/d.d` is 505, anything else 400. Order: syntax (400), version (505),
//!   method (501), target form (400).
//! - **Empty lines** before the request line are skipped (§2.2), at most
//!   [`EMPTY_LINES_MAX`] (then 400).
//! - **Line endings**: CRLF, and a bare LF is accepted too (§2.2 allows a recipient to), in
//!   the head and in chunked framing alike; this server is an origin server, not a proxy, so
//!   a lenient ending cannot make two parsers disagree on framing. A CR not followed by LF is
//!   400 anywhere.
//! - **Field lines** (§5): a name that is a token, directly followed by `:` (whitespace
//!   before the colon is 400), the value with its surrounding spaces and tabs removed; a
//!   control character other than tab in a value is 400; a line starting with a space or tab
//!   (obsolete line folding, §5.2, or whitespace after the request line, §2.2) is 400.
//! - **Host** (§3.2): exactly one in HTTP/1.1 (missing or repeated: 400); never repeated in
//!   HTTP/1.0; its value made of authority characters (else 400).
//! - **Content-Length** (§6.3, RFC 9110 §8.6): digits only; a list of equal values, in one
//!   line or several, counts as one; differing values, an empty value, or a value beyond 64
//!   bits are 400; more than `body_max` is 413.
//! - **Transfer-Encoding** (§6.1, §6.3): `chunked` as the final coding, once. Final coding
//!   not `chunked`, `chunked` twice, or an empty list: 400 (§6.3: the length cannot be
//!   determined, which a server MUST answer with 400, even for an unknown coding alone such
//!   as `gzip`); `chunked` after a coding this server does not implement (`gzip, chunked`):
//!   501 (§6.1). In an HTTP/1.0 request: 400 (§6.1: faulty framing). With `Content-Length`
//!   too: 400 (§6.1 allows rejecting such a request; this server does, since the message is a
//!   smuggling attempt more often than not).
//! - **Chunked content** (§7.1): hex chunk sizes of at most [`CHUNK_SIZE_DIGITS_MAX`]
//!   digits, chunk extensions ignored but at most [`CHUNK_EXT_MAX`] bytes each, the sum of
//!   the chunks at most `body_max` (413), the trailer section at most `header_max` bytes (431),
//!   trailers dropped. Content (chunked or `Content-Length`) is read and discarded: the static
//!   site has no use for it.
//! - **Connection** (§9.3, §9.6): a comma list of options, case-insensitive; `close` closes
//!   after the response (it wins over `keep-alive`); HTTP/1.1 is persistent by default,
//!   HTTP/1.0 only with `keep-alive` (answered with `Connection: keep-alive`).
//! - **Expect** (RFC 9110 §10.1.1): `100-continue` in HTTP/1.1 gets `100 Continue` before
//!   the content is read (unless the answer is an error, then the content is not read and
//!   the connection closes); any other expectation is 417; ignored in HTTP/1.0.
//!
//! # Bounds (from [`Config`], with their defaults)
//!
//! Request line 4 KiB (`line_max`, 414), header section 8 KiB including its line endings
//! (`header_max`, 431), 64 field lines (`headers_max`, 431), content 1 MiB (`body_max`,
//! 413), [`EMPTY_LINES_MAX`] empty lines, [`CHUNK_EXT_MAX`] bytes of chunk extension. A
//! connection holds an input buffer of [`Config::input_size`] bytes (the largest head that is
//! still incomplete, plus one: about 12 KiB by default) and an [`OUTPUT_SIZE`] output buffer;
//! generated content (`/bytes/N`) is written through the latter, never held whole, and so is a
//! [`Body::Source`] (a file: read into it in [`OUTPUT_SIZE`]-aligned pieces as it is written; a
//! source that fails midway closes the connection short of its `Content-Length`,
//! [`End::SourceFailed`]). A [`Site`] that streams nothing has [`NoSource`] as its
//! [`Site::Source`], and the streaming code is then not compiled in.
//!
//! # Serving files
//!
//! [`files::file_path`] maps a request path under a prefix (httpd: `/files/`) to a file path:
//! percent-decoded, with `.`, `..` and empty segments refused (404: no path leaves the served
//! root, and the parser does not normalize targets); [`files::content_type`] gives a type by
//! extension. The httpd app serves the disk's files with them when its image has a filesystem.
//!
//! # The connection loop
//!
//! [`serve`] (or [`serve_with`], which also sets the read timeout before each read from a
//! clock: the idle timeout between requests, the rest of the request timeout within one) reads
//! into the bounded buffer, parses, answers, and loops: keep-alive, and pipelining (requests
//! received together are answered in order; responses are gathered in the output buffer and
//! written before the next read, or when it fills). It ends on `Connection: close`, HTTP/1.0
//! without keep-alive, any 4xx/5xx (which carries `Connection: close`), EOF, a read or write
//! error, [`Config::requests_max`], or a timeout: a read failing with
//! [`embedded_io::ErrorKind::TimedOut`] between requests just ends the connection, one within
//! a request (or a request older than `request_timeout`, by the clock) is answered 408 first.
//! A response never carries `Date` (the server need not have a clock, RFC 9110 §6.6.1).
//!
//! # Command line
//!
//! [`Config::from_args`]: `key=value` words, `port=80 size=4K bytes_max=64M line_max=4K
//! header_max=8K headers_max=64 body_max=1M idle_timeout=5s request_timeout=10s
//! requests_max=0`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod body;
mod config;
pub mod files;
pub mod parse;
pub mod response;
mod serve;
mod site;

pub use body::{BodyDecoder, CHUNK_EXT_MAX, CHUNK_SIZE_DIGITS_MAX, ChunkedDecoder, Progress};
pub use config::{Config, KEYS};
pub use parse::{
    EMPTY_LINES_MAX, Error, Framing, Header, Limits, Method, Parsed, Request, Version, parse,
};
pub use response::{
    Body, NoSource, OUTPUT_SIZE, Output, PATTERN, Persistence, Reply, Source, Status,
};
pub use serve::{End, NoTimeouts, Outcome, Stats, Timeouts, serve, serve_with};
pub use site::{ALLOW, INDEX, Site, StaticSite};

#[cfg(test)]
mod tests;
