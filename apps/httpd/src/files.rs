//! `GET /files/<path>` (and `HEAD`): the file `<path>` of the disk's filesystem, compiled in
//! only when the image has one (`stardust::if_filesystem!`). The path is decoded and checked by
//! `http1::files::file_path` (percent-decoding; `.`, `..` and empty segments are 404, so nothing
//! outside the disk's root is named); the content type comes from the extension
//! (`http1::files::content_type`); the file is streamed 4 KiB at a time, never held whole.
//! A missing file, a directory, and any path while no filesystem is mounted are 404; another
//! error of the filesystem is 500.

use http1::{Method, Reply, Request, Source, Status};
use stardust::fs::{Error, File};

/// The route's prefix.
pub const PREFIX: &str = "/files/";

/// An open file being sent.
#[derive(Debug)]
pub struct FileSource(File);

impl Source for FileSource {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        self.0.read_at(offset, buf).ok().filter(|&n| n > 0)
    }
}

/// The answer to a `GET` or `HEAD` under [`PREFIX`]; `None` for anything else.
pub fn respond(request: &Request<'_>) -> Option<Reply<FileSource>> {
    if !matches!(request.method, Method::Get | Method::Head) {
        return None;
    }
    let path = match http1::files::file_path(request.path, PREFIX)? {
        Ok(path) => path,
        Err(status) => return Some(Reply::error(status).into_source()),
    };
    let opened = File::open(&path).and_then(|f| f.metadata().map(|m| (f, m.len())));
    Some(match opened {
        Ok((file, len)) => Reply::source(
            Status::Ok,
            http1::files::content_type(&path),
            len,
            FileSource(file),
        ),
        Err(
            Error::NotFound
            | Error::IsADirectory
            | Error::NotADirectory
            | Error::InvalidName
            | Error::NotMounted(_),
        ) => Reply::error(Status::NotFound).into_source(),
        Err(e) => {
            stardust::log::warn!("httpd: {path}: {e}");
            Reply::error(Status::InternalError).into_source()
        }
    })
}
