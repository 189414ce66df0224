//! Request content: the `Content-Length` reader and the chunked decoder (RFC 9112 §6, §7.1).
//!
//! Both take the bytes received so far, any number at a time, and hand the content's bytes to
//! a callback; they say how many input bytes they took and whether the content is complete.
//! Bytes after the content (the next pipelined request) are not taken.

use crate::parse::{Error, Framing, Limits};

/// Longest chunk extension (`;name=value...` after a chunk size) in bytes; it is ignored, but
/// bounded (longer: [`Error::ChunkExtensionTooLong`]).
pub const CHUNK_EXT_MAX: usize = 1024;

/// Most hex digits in a chunk size (leading zeros included): 16, so that it fits 64 bits.
pub const CHUNK_SIZE_DIGITS_MAX: u32 = 16;

/// What one [`BodyDecoder::decode`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes taken.
    pub consumed: usize,
    /// The content is complete (no more input belongs to it).
    pub done: bool,
}

/// The decoder a request's [`Framing`] calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyDecoder {
    /// `Content-Length`: this many bytes remain.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    /// The decoder for `framing` (an empty `Length` for [`Framing::None`]).
    pub fn new(framing: Framing, limits: &Limits) -> BodyDecoder {
        match framing {
            Framing::None => BodyDecoder::Length(0),
            Framing::Length(n) => BodyDecoder::Length(n),
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new(limits)),
        }
    }

    /// Takes content from `input`, handing its bytes to `data`.
    pub fn decode(
        &mut self,
        input: &[u8],
        data: &mut impl FnMut(&[u8]),
    ) -> Result<Progress, Error> {
        match self {
            BodyDecoder::Length(remaining) => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                if take > 0 {
                    data(&input[..take]);
                }
                *remaining -= take as u64;
                Ok(Progress {
                    consumed: take,
                    done: *remaining == 0,
                })
            }
            BodyDecoder::Chunked(chunked) => chunked.decode(input, data),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk size: its value and digits so far.
    Size { value: u64, digits: u32 },
    /// In a chunk extension, this many bytes long so far.
    Extension { value: u64, len: usize },
    /// After the CR of a chunk-size line.
    SizeLf { value: u64 },
    /// In chunk data, this many bytes left.
    Data(u64),
    /// After chunk data: its CRLF.
    DataEnd,
    /// After the CR that follows chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// In a trailer line.
    Trailer,
    /// After the CR of a trailer line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    /// The content is complete.
    Done,
}

/// The chunked transfer coding (RFC 9112 §7.1): `chunk-size [chunk-ext] CRLF chunk-data CRLF`
/// ... `0 [chunk-ext] CRLF trailer-section CRLF`. Chunk extensions are ignored, trailers are
/// checked for control characters and dropped. Line endings may be bare LFs, as in the head.
/// Bounds: [`CHUNK_SIZE_DIGITS_MAX`], [`CHUNK_EXT_MAX`], the sum of the chunks ≤
/// [`Limits::body_max`] (413), the trailer section ≤ [`Limits::header_max`] (431).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    total: u64,
    trailer_len: usize,
    body_max: u64,
    trailer_max: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of chunked content.
    pub fn new(limits: &Limits) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            total: 0,
            trailer_len: 0,
            body_max: limits.body_max,
            trailer_max: limits.header_max,
        }
    }

    /// The content's length so far (the sum of the chunk sizes read).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Takes content from `input`, handing the chunks' data to `data`.
    pub fn decode(
        &mut self,
        input: &[u8],
        data: &mut impl FnMut(&[u8]),
    ) -> Result<Progress, Error> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                break;
            }
            if let State::Data(left) = self.state {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                data(&input[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataEnd
                } else {
                    State::Data(left)
                };
                continue;
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    /// One byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), Error> {
        self.state = match self.state {
            State::Size { value, digits } => match b {
                _ if b.is_ascii_hexdigit() => {
                    if digits >= CHUNK_SIZE_DIGITS_MAX {
                        return Err(Error::BadChunk);
                    }
                    let d = u64::from(if b.is_ascii_digit() {
                        b - b'0'
                    } else {
                        (b | 0x20) - b'a' + 10
                    });
                    State::Size {
                        value: (value << 4) | d,
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(Error::BadChunk),
                b';' | b' ' | b'\t' => State::Extension { value, len: 1 },
                b'\r' => State::SizeLf { value },
                b'\n' => self.size_line_done(value)?,
                _ => return Err(Error::BadChunk),
            },
            State::Extension { value, len } => match b {
                b'\r' => State::SizeLf { value },
                b'\n' => self.size_line_done(value)?,
                _ if is_ctl(b) => return Err(Error::BadTrailer),
                _ if len >= CHUNK_EXT_MAX => return Err(Error::ChunkExtensionTooLong),
                _ => State::Extension {
                    value,
                    len: len + 1,
                },
            },
            State::SizeLf { value } => match b {
                b'\n' => self.size_line_done(value)?,
                _ => return Err(Error::BareCr),
            },
            State::DataEnd => match b {
                b'\r' => State::DataLf,
                b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(Error::BadChunk),
            },
            State::DataLf => match b {
                b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(Error::BareCr),
            },
            State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf => {
                self.trailer_len += 1;
                if self.trailer_len > self.trailer_max {
                    return Err(Error::TrailersTooLarge);
                }
                match (self.state, b) {
                    (State::TrailerStart, b'\r') => State::EndLf,
                    (State::TrailerStart | State::EndLf, b'\n') => State::Done,
                    (State::Trailer | State::TrailerLf, b'\n') => State::TrailerStart,
                    (State::TrailerLf | State::EndLf, _) => return Err(Error::BareCr),
                    (_, b'\r') => State::TrailerLf,
                    (State::TrailerStart, b' ' | b'\t') => return Err(Error::BadTrailer),
                    (_, _) if is_ctl(b) => return Err(Error::BadTrailer),
                    (_, _) => State::Trailer,
                }
            }
            State::Data(_) | State::Done => self.state,
        };
        Ok(())
    }

    /// The end of a chunk-size line: the last chunk, or data.
    fn size_line_done(&mut self, size: u64) -> Result<State, Error> {
        if size == 0 {
            return Ok(State::TrailerStart);
        }
        self.total = self
            .total
            .checked_add(size)
            .filter(|&t| t <= self.body_max)
            .ok_or(Error::BodyTooLarge)?;
        Ok(State::Data(size))
    }
}

/// A control character other than tab.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}
