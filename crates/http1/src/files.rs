//! Serving files: from a request's path to a file's path, and a file's content type.
//!
//! The request-target is not normalized by the parser ([`Request::path`](crate::Request::path)
//! is the path as sent, without its query). [`file_path`] does what a file server must:
//! - the part after the prefix is percent-decoded (RFC 3986 §2.1; a `%` not followed by two
//!   hex digits is 400), and must then be UTF-8 without NUL (else 404);
//! - a `.` or `..` segment, as sent or percent-encoded (`%2e%2e`), is 404: no path leaves the
//!   served directory, and none is resolved (a file server that resolves `..` must get it
//!   right; one that refuses it cannot get it wrong);
//! - an empty segment (`a//b`), an empty rest and a trailing `/` are 404 (no directory
//!   listings), as is a decoded `/` (`%2f`) or `\`.

use crate::response::Status;
use alloc::string::String;
use alloc::vec::Vec;

/// The file that `path` (a request's [`path`](crate::Request::path)) names under `prefix`
/// (which ends with `/`, as `/files/`): `None` when `path` is not under `prefix`; else the
/// file's path, `/`-separated from the served root (no leading `/`), or the status to answer
/// (see the module docs).
pub fn file_path(path: &str, prefix: &str) -> Option<Result<String, Status>> {
    let rest = path.strip_prefix(prefix)?;
    Some(decode(rest))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(rest: &str) -> Result<String, Status> {
    let mut out = String::with_capacity(rest.len());
    for segment in rest.split('/') {
        let mut bytes = Vec::with_capacity(segment.len());
        let mut i = segment.bytes();
        while let Some(b) = i.next() {
            if b == b'%' {
                let (h, l) = (i.next().and_then(hex), i.next().and_then(hex));
                let (Some(h), Some(l)) = (h, l) else {
                    return Err(Status::BadRequest);
                };
                bytes.push(h << 4 | l);
            } else {
                bytes.push(b);
            }
        }
        let name = String::from_utf8(bytes).map_err(|_| Status::NotFound)?;
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.bytes().any(|b| b == 0 || b == b'/' || b == b'\\')
        {
            return Err(Status::NotFound);
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(&name);
    }
    Ok(out)
}

/// The `Content-Type` of a file, by its extension (case-insensitive); unknown ones
/// `application/octet-stream`. Text types say `charset=utf-8`.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return "application/octet-stream";
    };
    let mut lower = [0u8; 8];
    if ext.len() > lower.len() {
        return "application/octet-stream";
    }
    for (l, b) in lower.iter_mut().zip(ext.bytes()) {
        *l = b.to_ascii_lowercase();
    }
    match &lower[..ext.len()] {
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"txt" | b"log" => "text/plain; charset=utf-8",
        b"md" => "text/markdown; charset=utf-8",
        b"css" => "text/css; charset=utf-8",
        b"csv" => "text/csv; charset=utf-8",
        b"js" | b"mjs" => "text/javascript; charset=utf-8",
        b"json" => "application/json",
        b"xml" => "application/xml",
        b"wasm" => "application/wasm",
        b"pdf" => "application/pdf",
        b"zip" => "application/zip",
        b"gz" => "application/gzip",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"svg" => "image/svg+xml",
        b"ico" => "image/vnd.microsoft.icon",
        b"woff2" => "font/woff2",
        b"mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Option<Result<String, Status>> {
        file_path(p, "/files/")
    }

    #[test]
    fn paths_under_the_prefix_are_decoded_and_escapes_refused() {
        assert_eq!(path("/"), None);
        assert_eq!(path("/filesx/a"), None);
        assert_eq!(path("/files"), None);
        assert_eq!(path("/files/a.txt"), Some(Ok("a.txt".into())));
        assert_eq!(path("/files/d/e/f.html"), Some(Ok("d/e/f.html".into())));
        assert_eq!(path("/files/a%20b.txt"), Some(Ok("a b.txt".into())));
        assert_eq!(path("/files/caf%C3%A9"), Some(Ok("café".into())));
        for bad in [
            "/files/",
            "/files/..",
            "/files/../etc/passwd",
            "/files/a/../../b",
            "/files/%2e%2e/x",
            "/files/.%2E/x",
            "/files/a/./b",
            "/files/a//b",
            "/files/dir/",
            "/files/a%2fb",
            "/files/a%5cb",
            "/files/a%00b",
            "/files/%ff",
        ] {
            assert_eq!(path(bad), Some(Err(Status::NotFound)), "{bad}");
        }
        for bad in ["/files/a%", "/files/a%2", "/files/a%zz"] {
            assert_eq!(path(bad), Some(Err(Status::BadRequest)), "{bad}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a/B.HTM"), "text/html; charset=utf-8");
        assert_eq!(content_type("notes.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("x.png"), "image/png");
        assert_eq!(content_type("x.JPEG"), "image/jpeg");
        assert_eq!(content_type("app.wasm"), "application/wasm");
        assert_eq!(content_type("data.bin"), "application/octet-stream");
        assert_eq!(content_type("Makefile"), "application/octet-stream");
        assert_eq!(content_type("d.ir/file"), "application/octet-stream");
        assert_eq!(content_type("x.verylongext"), "application/octet-stream");
    }
}
