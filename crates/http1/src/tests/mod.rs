//! Host tests: every rule of the parser, the decoders, the writer, the loop over a scripted
//! connection, the command line, and seeded random requests.

mod body;
mod config;
mod fuzz;
mod parse;
mod serve;

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;
use std::vec::Vec;

use embedded_io::ErrorKind;

/// One scripted read of a [`Mock`] connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// These bytes (handed out over as many reads as the reader's buffer needs).
    Data(Vec<u8>),
    /// A read that fails with `TimedOut`.
    TimedOut,
    /// A read that fails with `Interrupted`.
    Interrupted,
    /// A read that fails with another error.
    Fail(ErrorKind),
    /// The clock moves on (no read).
    Wait(Duration),
}

/// An in-memory connection: scripted reads (then EOF), recorded writes.
#[derive(Debug, Default)]
pub struct Mock {
    pub steps: VecDeque<Step>,
    pub written: Vec<u8>,
    /// Writes fail after this many bytes.
    pub write_limit: Option<usize>,
    /// Largest read handed out (0: no bound).
    pub read_max: usize,
    pub reads: usize,
    /// The largest single write.
    pub max_write: usize,
    /// The fake clock ([`Step::Wait`] moves it; [`MockTimeouts`] reads it).
    pub now: Rc<Cell<Duration>>,
    /// Read timeouts set through [`MockTimeouts`].
    pub timeouts: Vec<Duration>,
    /// Where the last bytes went through [`MockTimeouts`]' `write_last` (an offset in
    /// `written`), if they did.
    pub last_at: Option<usize>,
}

impl Mock {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Mock {
        Mock {
            steps: steps.into_iter().collect(),
            ..Mock::default()
        }
    }

    /// A connection that delivers `data` in one piece, then EOF.
    pub fn with(data: &[u8]) -> Mock {
        Mock::new([Step::Data(data.to_vec())])
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.written).into_owned()
    }
}

impl embedded_io::ErrorType for Mock {
    type Error = ErrorKind;
}

impl embedded_io::Read for Mock {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.reads += 1;
        loop {
            match self.steps.pop_front() {
                None => return Ok(0),
                Some(Step::Wait(d)) => self.now.set(self.now.get() + d),
                Some(Step::TimedOut) => return Err(ErrorKind::TimedOut),
                Some(Step::Interrupted) => return Err(ErrorKind::Interrupted),
                Some(Step::Fail(kind)) => return Err(kind),
                Some(Step::Data(mut data)) => {
                    if data.is_empty() {
                        continue;
                    }
                    let mut n = data.len().min(buf.len());
                    if self.read_max > 0 {
                        n = n.min(self.read_max);
                    }
                    buf[..n].copy_from_slice(&data[..n]);
                    if n < data.len() {
                        self.steps.push_front(Step::Data(data.split_off(n)));
                    }
                    return Ok(n);
                }
            }
        }
    }
}

impl embedded_io::Write for Mock {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.max_write = self.max_write.max(buf.len());
        if let Some(limit) = self.write_limit {
            if self.written.len() >= limit {
                return Err(ErrorKind::ConnectionReset);
            }
            let n = buf.len().min(limit - self.written.len());
            self.written.extend_from_slice(&buf[..n]);
            return Ok(n);
        }
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// The [`Mock`]'s clock, and the timeouts set recorded in the mock.
#[derive(Debug)]
pub struct MockTimeouts(Rc<Cell<Duration>>);

impl MockTimeouts {
    pub fn of(mock: &Mock) -> MockTimeouts {
        MockTimeouts(mock.now.clone())
    }
}

impl crate::Timeouts<Mock> for MockTimeouts {
    fn now(&mut self) -> Duration {
        self.0.get()
    }
    fn set_read_timeout(&mut self, conn: &mut Mock, timeout: Duration) {
        conn.timeouts.push(timeout);
    }
    fn write_last(&mut self, conn: &mut Mock, bytes: &[u8]) -> Result<(), ErrorKind> {
        conn.last_at = Some(conn.written.len());
        embedded_io::Write::write_all(conn, bytes)
    }
}

/// A response as the tests read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resp {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn closes(&self) -> bool {
        self.header("connection") == Some("close")
    }
}

/// Splits a byte stream of responses; `head_only[i]` says the i-th final response answers a
/// HEAD (no content). Panics on anything that is not a well-formed response.
pub fn responses(mut out: &[u8], head_only: &[bool]) -> Vec<Resp> {
    let mut all = Vec::new();
    let mut finals = 0;
    while !out.is_empty() {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head ends with an empty line");
        let head = std::str::from_utf8(&out[..end]).expect("ASCII head");
        out = &out[end + 4..];
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap();
        assert!(status.starts_with("HTTP/1.1 "), "{status:?}");
        let code: u16 = status[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("name: value");
                (n.to_string(), v.to_string())
            })
            .collect();
        let mut r = Resp {
            code,
            headers,
            body: Vec::new(),
        };
        if code == 100 {
            all.push(r);
            continue;
        }
        let len: usize = r
            .header("content-length")
            .map_or(0, |v| v.parse().expect("a length"));
        let head = head_only.get(finals).copied().unwrap_or(false);
        finals += 1;
        if !head && code != 204 {
            r.body = out[..len].to_vec();
            out = &out[len..];
        }
        all.push(r);
    }
    all
}
