//! The connection loop: read, parse, answer, for as long as the connection lives.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;
use embedded_io::{Error as _, ErrorKind, Read, Write};

use crate::body::BodyDecoder;
use crate::config::Config;
use crate::parse::{Framing, Method, Parsed, Version, parse};
use crate::response::{Body, Output, Persistence, Reply, Source, Status};
use crate::site::Site;

/// The clock and the read timeout of a connection, for [`serve_with`]: before each read the
/// loop sets the read timeout to what is left (the idle timeout between requests, the rest of
/// the request timeout within one), so a client that trickles bytes cannot hold a connection
/// past the request timeout. A read that times out must fail with [`ErrorKind::TimedOut`].
pub trait Timeouts<C> {
    /// A monotonic clock.
    fn now(&mut self) -> Duration;
    /// Makes `conn`'s next reads fail with [`ErrorKind::TimedOut`] after `timeout` without
    /// data.
    fn set_read_timeout(&mut self, conn: &mut C, timeout: Duration);
    /// Writes the last bytes of a connection that closes after them (`bytes` may be empty).
    /// The default writes them; a TCP connection can queue them with its close in one step
    /// (`net::TcpStream::write_last`), so that they leave with the FIN.
    fn write_last(&mut self, conn: &mut C, bytes: &[u8]) -> Result<(), C::Error>
    where
        C: Write,
    {
        conn.write_all(bytes)
    }
}

/// No clock and no timeout setting: the connection's own read timeout, if any, is all there
/// is ([`serve`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimeouts;

impl<C> Timeouts<C> for NoTimeouts {
    fn now(&mut self) -> Duration {
        Duration::ZERO
    }
    fn set_read_timeout(&mut self, _: &mut C, _: Duration) {}
}

/// Why a connection's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A response said `Connection: close` (asked by the client, HTTP/1.0 without
    /// keep-alive, or a 4xx/5xx from the site).
    Closed,
    /// [`Config::requests_max`] requests were answered.
    RequestLimit,
    /// A malformed request got this 4xx/5xx.
    Rejected(Status),
    /// The client closed between requests.
    Eof,
    /// The client closed within a request (no answer).
    EofMidRequest,
    /// No request started within the idle timeout (no answer).
    IdleTimeout,
    /// A request did not arrive within the request timeout: answered 408.
    RequestTimeout,
    /// A read failed.
    ReadError(ErrorKind),
    /// A write failed.
    WriteError(ErrorKind),
    /// A [`Body::Source`] could not be read to its end: the connection is closed short of the
    /// promised `Content-Length`.
    SourceFailed,
}

/// Counters of one connection, or of many ([`add`](Stats::add)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests whose head was complete and valid.
    pub requests: u64,
    /// Responses sent, by status, indexed by [`Status::index`].
    pub responses: [u64; Status::ALL.len()],
}

impl Stats {
    /// Responses sent with `status`.
    pub fn count(&self, status: Status) -> u64 {
        self.responses[status.index()]
    }

    /// Responses sent with a 4xx or 5xx.
    pub fn errors(&self) -> u64 {
        Status::ALL
            .iter()
            .filter(|s| s.is_error())
            .map(|&s| self.count(s))
            .sum()
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Stats) {
        self.requests += other.requests;
        for (a, b) in self.responses.iter_mut().zip(other.responses) {
            *a += b;
        }
    }

    fn note(&mut self, status: Status) {
        self.responses[status.index()] += 1;
    }
}

/// What [`serve`] did on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The counters.
    pub stats: Stats,
    /// Why it ended.
    pub end: End,
}

/// Serves one connection until it ends (see [`End`]), with the connection's own read timeout.
/// Never panics, whatever the peer sends; returns when the connection should be closed. A
/// closing reply's last bytes go through [`Timeouts::write_last`], so that a TCP connection can
/// send them with its FIN; the caller closes the connection right after.
pub fn serve<C: Read + Write>(conn: &mut C, config: &Config, site: &impl Site) -> Outcome {
    serve_with(conn, config, site, &mut NoTimeouts)
}

/// [`serve`], setting the read timeout before each read from `timeouts` (the idle and request
/// timeouts of `config`).
pub fn serve_with<C: Read + Write, T: Timeouts<C>>(
    conn: &mut C,
    config: &Config,
    site: &impl Site,
    timeouts: &mut T,
) -> Outcome {
    let mut c = Connection {
        conn,
        timeouts,
        config,
        input: vec![0; config.input_size()],
        start: 0,
        end: 0,
        out: Output::new(),
        stats: Stats::default(),
        started: None,
    };
    let end = c.run(site);
    Outcome {
        stats: c.stats,
        end,
    }
}

/// Consecutive `Interrupted` reads retried before giving up.
const INTERRUPTED_MAX: u32 = 16;

struct Connection<'a, C, T> {
    conn: &'a mut C,
    timeouts: &'a mut T,
    config: &'a Config,
    /// Received bytes not yet taken are `input[start..end]`.
    input: Vec<u8>,
    start: usize,
    end: usize,
    out: Output,
    stats: Stats,
    /// When the current request's first byte was seen.
    started: Option<Duration>,
}

impl<C: Read + Write, T: Timeouts<C>> Connection<'_, C, T> {
    fn run(&mut self, site: &impl Site) -> End {
        loop {
            let parsed = parse(&self.input[self.start..self.end], &self.config.limits);
            let request = match parsed {
                Err(e) => return self.reject(e.status()),
                Ok(Parsed::Incomplete) => {
                    if self.start == 0 && self.end == self.input.len() {
                        // Cannot happen: the buffer holds the largest incomplete head.
                        return self.reject(Status::FieldsTooLarge);
                    }
                    let mid_request = self.input[self.start..self.end]
                        .iter()
                        .any(|&b| b != b'\r' && b != b'\n');
                    if let Err(end) = self.fill(mid_request) {
                        return end;
                    }
                    continue;
                }
                Ok(Parsed::Complete(request)) => request,
            };
            self.stats.requests += 1;
            let reply = site.respond(&request);
            let head_only = request.method == Method::Head;
            let (framing, version, keep_alive) =
                (request.framing, request.version, request.keep_alive);
            let expect_continue = request.expect_continue;
            self.start += request.head_len;
            drop(request);

            if framing != Framing::None {
                // An error needs no content: a client waiting for 100 Continue sends none.
                let skip = expect_continue && reply.status.is_error();
                if expect_continue && !skip {
                    if let Err(e) = self.out.push_continue(self.conn) {
                        return End::WriteError(e.kind());
                    }
                    self.stats.note(Status::Continue);
                }
                if !skip && let Err(end) = self.discard_body(framing) {
                    return end;
                }
            }

            let limit =
                self.config.requests_max != 0 && self.stats.requests >= self.config.requests_max;
            let persistence = if !keep_alive || reply.status.is_error() || limit {
                Persistence::Close
            } else if version == Version::Http10 {
                Persistence::KeepAlive10
            } else {
                Persistence::KeepAlive
            };
            if let Err(end) = self.answer(&reply, persistence, head_only) {
                return end;
            }
            if persistence == Persistence::Close {
                return match self.out.finish(self.conn, self.timeouts) {
                    Err(e) => End::WriteError(e.kind()),
                    Ok(()) if keep_alive && !reply.status.is_error() => End::RequestLimit,
                    Ok(()) => End::Closed,
                };
            }
            self.started = if self.start < self.end {
                Some(self.timeouts.now())
            } else {
                None
            };
        }
    }

    fn answer<S: Source>(
        &mut self,
        reply: &Reply<S>,
        persistence: Persistence,
        head_only: bool,
    ) -> Result<(), End> {
        self.stats.note(reply.status);
        self.out
            .push_reply(self.conn, reply, persistence, head_only)
            .map_err(|e| End::WriteError(e.kind()))?;
        if S::EXISTS
            && let Body::Source(n, source) = &reply.body
            && !head_only
            && !reply.status.has_no_content()
        {
            match self.out.push_source(self.conn, source, *n) {
                Ok(true) => {}
                Ok(false) => return Err(End::SourceFailed),
                Err(e) => return Err(End::WriteError(e.kind())),
            }
        }
        Ok(())
    }

    /// Answers `status` with `Connection: close`.
    // This and `discard_body` `#[cold]`: rare next to a request without a body, and kept out of
    // `run`'s loop, httpd [net] is 384 bytes smaller.
    #[cold]
    fn reject(&mut self, status: Status) -> End {
        let reply = Reply::error(status);
        if let Err(end) = self.answer(&reply, Persistence::Close, false) {
            return end;
        }
        match self.out.finish(self.conn, self.timeouts) {
            Ok(()) => End::Rejected(status),
            Err(e) => End::WriteError(e.kind()),
        }
    }

    /// Reads the content that `framing` delimits and drops it.
    #[cold]
    fn discard_body(&mut self, framing: Framing) -> Result<(), End> {
        let mut decoder = BodyDecoder::new(framing, &self.config.limits);
        loop {
            match decoder.decode(&self.input[self.start..self.end], &mut |_| {}) {
                Err(e) => return Err(self.reject(e.status())),
                Ok(p) => {
                    self.start += p.consumed;
                    if p.done {
                        return Ok(());
                    }
                }
            }
            self.fill(true)?;
        }
    }

    /// Flushes the output, then reads more input, with the idle timeout or (`mid_request`) the
    /// rest of the request timeout.
    fn fill(&mut self, mid_request: bool) -> Result<(), End> {
        self.out
            .flush(self.conn)
            .map_err(|e| End::WriteError(e.kind()))?;
        if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let now = self.timeouts.now();
        let timeout = if mid_request {
            let started = *self.started.get_or_insert(now);
            let elapsed = now.saturating_sub(started);
            if elapsed >= self.config.request_timeout {
                return Err(self.request_timeout());
            }
            self.config.request_timeout - elapsed
        } else {
            self.config.idle_timeout
        };
        self.timeouts.set_read_timeout(self.conn, timeout);
        let mut interrupted = 0;
        loop {
            match self.conn.read(&mut self.input[self.end..]) {
                Ok(0) => {
                    return Err(if mid_request {
                        End::EofMidRequest
                    } else {
                        End::Eof
                    });
                }
                Ok(n) => {
                    if !mid_request {
                        self.started = Some(self.timeouts.now());
                    }
                    self.end += n.min(self.input.len() - self.end);
                    return Ok(());
                }
                Err(e) => match e.kind() {
                    ErrorKind::TimedOut if mid_request => return Err(self.request_timeout()),
                    ErrorKind::TimedOut => return Err(End::IdleTimeout),
                    ErrorKind::Interrupted if interrupted < INTERRUPTED_MAX => interrupted += 1,
                    kind => return Err(End::ReadError(kind)),
                },
            }
        }
    }

    /// Answers 408 and ends.
    fn request_timeout(&mut self) -> End {
        match self.reject(Status::RequestTimeout) {
            End::Rejected(_) => End::RequestTimeout,
            other => other,
        }
    }
}
