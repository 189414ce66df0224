//! Responses: the status line and headers, and content written in pieces through a bounded
//! output buffer (a large generated body is never held whole in memory).

use alloc::vec::Vec;
use embedded_io::Write;

/// The statuses this crate answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 100 Continue (the interim answer to `Expect: 100-continue`).
    Continue,
    /// 200 OK
    Ok,
    /// 204 No Content
    NoContent,
    /// 400 Bad Request
    BadRequest,
    /// 404 Not Found
    NotFound,
    /// 405 Method Not Allowed
    MethodNotAllowed,
    /// 408 Request Timeout
    RequestTimeout,
    /// 413 Content Too Large
    ContentTooLarge,
    /// 414 URI Too Long
    UriTooLong,
    /// 417 Expectation Failed
    ExpectationFailed,
    /// 431 Request Header Fields Too Large
    FieldsTooLarge,
    /// 500 Internal Server Error
    InternalError,
    /// 501 Not Implemented
    NotImplemented,
    /// 505 HTTP Version Not Supported
    VersionNotSupported,
}

impl Status {
    /// Every status, in the order of [`index`](Status::index).
    pub const ALL: [Status; 14] = [
        Status::Continue,
        Status::Ok,
        Status::NoContent,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::ContentTooLarge,
        Status::UriTooLong,
        Status::ExpectationFailed,
        Status::FieldsTooLarge,
        Status::InternalError,
        Status::NotImplemented,
        Status::VersionNotSupported,
    ];

    /// The position of this status in [`ALL`](Status::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The status code.
    pub fn code(self) -> u16 {
        match self {
            Status::Continue => 100,
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::ExpectationFailed => 417,
            Status::FieldsTooLarge => 431,
            Status::InternalError => 500,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase (RFC 9110 §15).
    pub fn reason(self) -> &'static str {
        match self {
            Status::Continue => "Continue",
            Status::Ok => "OK",
            Status::NoContent => "No Content",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::ExpectationFailed => "Expectation Failed",
            Status::FieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// A 4xx or 5xx: the connection closes after it.
    pub fn is_error(self) -> bool {
        self.code() >= 400
    }

    /// A status whose response has no content and no `Content-Length` (1xx, 204).
    pub(crate) fn has_no_content(self) -> bool {
        matches!(self, Status::Continue | Status::NoContent)
    }
}

/// The 64-byte line that generated content repeats: byte `i` of a [`Body::Pattern`] is
/// `PATTERN[i % 64]`.
pub const PATTERN: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n";

/// Content read as it is written, a piece at a time ([`Body::Source`]): a file. Never held
/// whole in memory: [`serve`](crate::serve) reads it straight into its output buffer, at most
/// [`OUTPUT_SIZE`] bytes a read, each read within one [`OUTPUT_SIZE`]-aligned piece of the
/// content (a read never straddles two 4 KiB blocks of a file).
pub trait Source {
    /// Whether values of this type exist: `false` only for [`NoSource`], so that the code that
    /// streams a source is compiled out of a server that has none (the uninhabited variant
    /// alone does not make the optimizer drop it).
    const EXISTS: bool = true;

    /// Reads the content's bytes from `offset` into `buf`: how many (at least one, at most
    /// `buf.len()`), or `None` when it cannot (a read error, the content shorter than said):
    /// the connection is then closed short of its `Content-Length` ([`End::SourceFailed`]),
    /// which tells the client the response is incomplete.
    ///
    /// [`End::SourceFailed`]: crate::End::SourceFailed
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize>;
}

/// The [`Source`] of a site that streams nothing: no value of it exists, so a [`Body`] of it
/// is never a [`Body::Source`] and the code that would write one is not compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSource {}

impl Source for NoSource {
    const EXISTS: bool = false;

    fn read_at(&self, _: u64, _: &mut [u8]) -> Option<usize> {
        match *self {}
    }
}

/// A response's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<S = NoSource> {
    /// None (`Content-Length: 0`).
    Empty,
    /// These bytes.
    Static(&'static [u8]),
    /// These bytes.
    Owned(Vec<u8>),
    /// This many bytes of [`PATTERN`], generated as they are written.
    Pattern(u64),
    /// This many bytes read from a [`Source`] as they are written (a file).
    Source(u64, S),
}

impl<S> Body<S> {
    /// The content's length.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::Owned(b) => b.len() as u64,
            Body::Pattern(n) | Body::Source(n, _) => *n,
        }
    }

    /// No content.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a [`Site`](crate::Site) answers a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<S = NoSource> {
    /// The status.
    pub status: Status,
    /// The `Content-Type`, if any.
    pub content_type: Option<&'static str>,
    /// The `Allow` header (405 must carry one), if any.
    pub allow: Option<&'static str>,
    /// The content (for `HEAD`, only its length is sent).
    pub body: Body<S>,
}

impl<S: Source> Reply<S> {
    /// `status` with `len` bytes of `source` of type `content_type` (a file).
    pub fn source(status: Status, content_type: &'static str, len: u64, source: S) -> Reply<S> {
        Reply {
            status,
            content_type: Some(content_type),
            allow: None,
            body: Body::Source(len, source),
        }
    }
}

impl Reply {
    /// The same reply as one of a site whose [`Source`] is `S` (a [`StaticSite`]'s answer
    /// handed on by a site that also streams files).
    ///
    /// [`StaticSite`]: crate::StaticSite
    pub fn into_source<S>(self) -> Reply<S> {
        Reply {
            status: self.status,
            content_type: self.content_type,
            allow: self.allow,
            body: match self.body {
                Body::Empty => Body::Empty,
                Body::Static(b) => Body::Static(b),
                Body::Owned(b) => Body::Owned(b),
                Body::Pattern(n) => Body::Pattern(n),
                Body::Source(_, never) => match never {},
            },
        }
    }

    /// `status` with `body` of type `content_type`.
    pub fn new(status: Status, content_type: &'static str, body: Body) -> Reply {
        Reply {
            status,
            content_type: Some(content_type),
            allow: None,
            body,
        }
    }

    /// The answer to a request that breaks a rule, or a plain error: `"<code> <reason>\n"`.
    pub fn error(status: Status) -> Reply {
        Reply::new(status, "text/plain", Body::Static(error_text(status)))
    }
}

/// `"<code> <reason>\n"` for the error statuses (others: empty).
fn error_text(status: Status) -> &'static [u8] {
    match status {
        Status::BadRequest => b"400 Bad Request\n",
        Status::NotFound => b"404 Not Found\n",
        Status::MethodNotAllowed => b"405 Method Not Allowed\n",
        Status::RequestTimeout => b"408 Request Timeout\n",
        Status::ContentTooLarge => b"413 Content Too Large\n",
        Status::UriTooLong => b"414 URI Too Long\n",
        Status::ExpectationFailed => b"417 Expectation Failed\n",
        Status::FieldsTooLarge => b"431 Request Header Fields Too Large\n",
        Status::InternalError => b"500 Internal Server Error\n",
        Status::NotImplemented => b"501 Not Implemented\n",
        Status::VersionNotSupported => b"505 HTTP Version Not Supported\n",
        Status::Continue | Status::Ok | Status::NoContent => b"",
    }
}

/// How the connection goes on after a response, as its `Connection` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Open, HTTP/1.1 (no header).
    KeepAlive,
    /// Open, to an HTTP/1.0 client that asked for it (`Connection: keep-alive`).
    KeepAlive10,
    /// Closed after this response (`Connection: close`).
    Close,
}

/// A bounded output buffer in front of a connection: responses are gathered into it and
/// written when it is full or [`flush`](Output::flush)ed.
#[derive(Debug)]
pub struct Output {
    buf: Vec<u8>,
}

/// Size of the [`Output`] buffer.
pub const OUTPUT_SIZE: usize = 4096;

impl Default for Output {
    fn default() -> Self {
        Self::new()
    }
}

impl Output {
    /// An empty buffer of [`OUTPUT_SIZE`] bytes.
    pub fn new() -> Output {
        Output {
            buf: Vec::with_capacity(OUTPUT_SIZE),
        }
    }

    /// Bytes waiting.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Adds `bytes`, writing out what is waiting when they do not fit.
    pub fn push<W: Write>(&mut self, w: &mut W, bytes: &[u8]) -> Result<(), W::Error> {
        if self.buf.len() + bytes.len() > OUTPUT_SIZE {
            self.write_out(w)?;
            if bytes.len() >= OUTPUT_SIZE {
                return w.write_all(bytes);
            }
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes what is waiting, without flushing the connection.
    fn write_out<W: Write>(&mut self, w: &mut W) -> Result<(), W::Error> {
        if !self.buf.is_empty() {
            let result = w.write_all(&self.buf);
            self.buf.clear();
            result?;
        }
        Ok(())
    }

    /// Writes what is waiting through `timeouts`' [`write_last`](crate::Timeouts::write_last),
    /// when the connection closes right after: the reply's last bytes can then leave with the
    /// FIN in one segment (a small reply is one segment with its FIN). The peer sees the close
    /// with the data, not after it, so it does not close first itself: a peer that closes first
    /// keeps the connection in TIME-WAIT, and QEMU's slirp keeps those 10 s in a list it
    /// searches for every packet (measured: `Connection: close` load slowing down run after
    /// run).
    pub fn finish<W: Write, T: crate::Timeouts<W> + ?Sized>(
        &mut self,
        w: &mut W,
        timeouts: &mut T,
    ) -> Result<(), W::Error> {
        let result = timeouts.write_last(w, &self.buf);
        self.buf.clear();
        result
    }

    /// Writes what is waiting and flushes the connection.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> Result<(), W::Error> {
        self.write_out(w)?;
        w.flush()
    }

    /// Adds `n` bytes of [`PATTERN`], at most a buffer at a time.
    fn push_pattern<W: Write>(&mut self, w: &mut W, n: u64) -> Result<(), W::Error> {
        let mut offset = 0u64;
        while offset < n {
            if self.buf.len() == OUTPUT_SIZE {
                self.write_out(w)?;
            }
            let room = (OUTPUT_SIZE - self.buf.len()) as u64;
            let start = (offset % 64) as usize;
            let take = (64 - start as u64).min(n - offset).min(room) as usize;
            self.buf.extend_from_slice(&PATTERN[start..start + take]);
            offset += take as u64;
        }
        Ok(())
    }

    /// Adds `n` bytes of `source` (see [`Source`]): `Ok(false)` when the source failed.
    pub fn push_source<W: Write, S: Source>(
        &mut self,
        w: &mut W,
        source: &S,
        n: u64,
    ) -> Result<bool, W::Error> {
        let mut offset = 0u64;
        while offset < n {
            // The rest of this aligned piece, or of the content: when it does not fit behind
            // what is waiting, that goes first (a small file leaves with its head).
            let want = (OUTPUT_SIZE as u64 - offset % OUTPUT_SIZE as u64).min(n - offset);
            if ((OUTPUT_SIZE - self.buf.len()) as u64) < want {
                self.write_out(w)?;
            }
            let at = self.buf.len();
            let take = want as usize;
            self.buf.resize(at + take, 0);
            match source.read_at(offset, &mut self.buf[at..]) {
                Some(got) if got > 0 && got <= take => {
                    self.buf.truncate(at + got);
                    offset += got as u64;
                }
                _ => {
                    self.buf.truncate(at);
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Adds `reply` (its head, and its content unless `head_only`) with `Server`,
    /// `Content-Length` (not on 1xx and 204), `Content-Type`, `Allow` and `Connection`. The
    /// content of a [`Body::Source`] is left to [`push_source`](Output::push_source), whose
    /// failure the caller must see.
    pub fn push_reply<W: Write, S>(
        &mut self,
        w: &mut W,
        reply: &Reply<S>,
        persistence: Persistence,
        head_only: bool,
    ) -> Result<(), W::Error> {
        self.push(w, b"HTTP/1.1 ")?;
        self.push(w, decimal(&mut [0; 20], u64::from(reply.status.code())))?;
        self.push(w, b" ")?;
        self.push(w, reply.status.reason().as_bytes())?;
        self.push(w, b"\r\nServer: stardust\r\n")?;
        if !reply.status.has_no_content() {
            self.push(w, b"Content-Length: ")?;
            self.push(w, decimal(&mut [0; 20], reply.body.len()))?;
            self.push(w, b"\r\n")?;
        }
        if let Some(t) = reply.content_type {
            self.push(w, b"Content-Type: ")?;
            self.push(w, t.as_bytes())?;
            self.push(w, b"\r\n")?;
        }
        if let Some(allow) = reply.allow {
            self.push(w, b"Allow: ")?;
            self.push(w, allow.as_bytes())?;
            self.push(w, b"\r\n")?;
        }
        match persistence {
            Persistence::KeepAlive => {}
            Persistence::KeepAlive10 => self.push(w, b"Connection: keep-alive\r\n")?,
            Persistence::Close => self.push(w, b"Connection: close\r\n")?,
        }
        self.push(w, b"\r\n")?;
        if head_only || reply.status.has_no_content() {
            return Ok(());
        }
        match &reply.body {
            Body::Empty => Ok(()),
            Body::Static(b) => self.push(w, b),
            Body::Owned(b) => self.push(w, b),
            Body::Pattern(n) => self.push_pattern(w, *n),
            Body::Source(..) => Ok(()),
        }
    }

    /// Adds the interim `100 Continue`.
    pub fn push_continue<W: Write>(&mut self, w: &mut W) -> Result<(), W::Error> {
        self.push(w, b"HTTP/1.1 100 Continue\r\n\r\n")
    }
}

/// `n` in decimal, in `digits`.
fn decimal(digits: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}
