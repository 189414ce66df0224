//! [`BlockIo`], the synchronous face of a disk, and [`Blocking`], which gives it to any
//! [`BlockDevice`].

use crate::{BlockDevice, Buffer, Error, Info, Op, Request};
use alloc::vec::Vec;

/// Synchronous block I/O: what a filesystem uses. Offsets and lengths are in whole blocks of
/// [`Info::block_size`]; a call returns when the device has finished (or failed) all of it.
pub trait BlockIo {
    /// What the disk is and can do.
    fn info(&self) -> Info;

    /// Reads `buf.len()` bytes (whole blocks) from `block` on.
    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error>;

    /// Writes `buf` (whole blocks) to `block` on. Completed, not yet durable: see
    /// [`flush`](BlockIo::flush).
    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), Error>;
}

impl<T: BlockIo + ?Sized> BlockIo for &mut T {
    fn info(&self) -> Info {
        (**self).info()
    }
    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
        (**self).read(block, buf)
    }
    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        (**self).write(block, buf)
    }
    fn flush(&mut self) -> Result<(), Error> {
        (**self).flush()
    }
}

/// How [`Blocking`] sleeps while its requests are in flight.
pub trait Wait {
    /// Returns once the device's interrupt has fired since the previous return (at once if it
    /// already has: a latch, so no wake-up is lost), or `false` when it gave up waiting (a
    /// device that never answers). The kernel parks the thread on the interrupt here.
    fn wait(&mut self) -> bool;

    /// Called after the driver acknowledged the interrupt ([`BlockDevice::poll_interrupt`]): the
    /// kernel unmasks the device's line here. The default does nothing.
    fn acknowledged(&mut self) {}
}

/// A [`Wait`] that does not wait: for devices that finish on submit or in `complete` (the
/// fakes), or that are polled.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWait;

impl Wait for NoWait {
    fn wait(&mut self) -> bool {
        true
    }
}

/// A [`BlockDevice`] used synchronously: a long range is split into requests of at most
/// [`Info::max_request_blocks`], as many in flight at once as the device takes, and the call
/// returns when all have completed. On an error, it still waits for its other requests (their
/// buffers are the device's until then) and returns the error of the lowest block.
#[derive(Debug)]
pub struct Blocking<D, W> {
    device: D,
    wait: W,
    next_id: u64,
}

/// One request's place in the caller's buffer.
struct Piece {
    id: u64,
    offset: usize,
    done: bool,
}

impl<D: BlockDevice, W: Wait> Blocking<D, W> {
    /// `device`, waiting with `wait`.
    pub fn new(device: D, wait: W) -> Self {
        Blocking {
            device,
            wait,
            next_id: 0,
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, to use directly.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The device and the waiter back.
    pub fn into_inner(self) -> (D, W) {
        (self.device, self.wait)
    }

    fn id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Runs `op` over `len` bytes from `block`: writes take their data from `src`, reads put
    /// theirs into `dst`.
    fn run(
        &mut self,
        op: Op,
        block: u64,
        len: usize,
        src: Option<&[u8]>,
        mut dst: Option<&mut [u8]>,
    ) -> Result<(), Error> {
        let info = self.device.info();
        let size = info.block_size as usize;
        if !len.is_multiple_of(size) {
            return Err(Error::BadLength { len });
        }
        let chunk = size * info.max_request_blocks.max(1) as usize;
        let mut pieces: Vec<Piece> = Vec::new();
        let mut next = 0usize; // the next byte offset to submit
        let mut first_error: Option<(u64, Error)> = None;
        let note = |error: &mut Option<(u64, Error)>, at: u64, e: Error| {
            if error.is_none_or(|(b, _)| at < b) {
                *error = Some((at, e));
            }
        };
        let total = if op == Op::Flush {
            1
        } else {
            len.div_ceil(chunk)
        };
        if op != Op::Flush && len == 0 {
            return Ok(());
        }
        let mut submitted = 0usize;
        loop {
            // Submit while the device takes more, unless something already failed.
            while submitted < total && first_error.is_none() {
                let id = self.id();
                let (start, request) = if op == Op::Flush {
                    (0, Request::flush(id))
                } else {
                    let n = chunk.min(len - next);
                    let start = block + (next / size) as u64;
                    let buffer = match src {
                        Some(src) => Buffer::from_slice(&src[next..next + n]),
                        None => Buffer::new(n),
                    };
                    (
                        start,
                        Request {
                            id,
                            op,
                            block: start,
                            buffer,
                        },
                    )
                };
                match self.device.submit(request) {
                    Ok(()) => {
                        pieces.push(Piece {
                            id,
                            offset: next,
                            done: false,
                        });
                        next += chunk.min(len.saturating_sub(next));
                        submitted += 1;
                    }
                    Err((Error::Busy, _)) if pieces.iter().any(|p| !p.done) => break,
                    Err((e, _)) => note(&mut first_error, start, e),
                }
            }
            let outstanding = pieces.iter().filter(|p| !p.done).count();
            if outstanding == 0 && (submitted == total || first_error.is_some()) {
                break;
            }
            // Take what completed; wait when nothing did.
            let mut progressed = false;
            while let Some(c) = self.device.complete() {
                let Some(piece) = pieces.iter_mut().find(|p| p.id == c.id && !p.done) else {
                    continue; // not ours (a request abandoned after a timeout): dropped
                };
                piece.done = true;
                progressed = true;
                match c.result {
                    Ok(()) => {
                        if let (Op::Read, Some(dst)) = (op, dst.as_deref_mut()) {
                            let n = c.buffer.len().min(dst.len() - piece.offset);
                            dst[piece.offset..piece.offset + n]
                                .copy_from_slice(&c.buffer.as_slice()[..n]);
                        }
                    }
                    Err(e) => note(&mut first_error, c.block, e),
                }
            }
            if progressed {
                continue;
            }
            if self.device.in_flight() == 0 {
                // Ours are outstanding, yet the device has nothing in flight: it lost them.
                note(&mut first_error, block, Error::DeviceFailed);
                break;
            }
            if !self.wait.wait() {
                note(&mut first_error, block, Error::Timeout);
                break;
            }
            self.device.poll_interrupt();
            self.wait.acknowledged();
        }
        match first_error {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

impl<D: BlockDevice, W: Wait> BlockIo for Blocking<D, W> {
    fn info(&self) -> Info {
        self.device.info()
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
        let len = buf.len();
        self.run(Op::Read, block, len, None, Some(buf))
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        self.run(Op::Write, block, buf.len(), Some(buf), None)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.run(Op::Flush, 0, 0, None, None)
    }
}
