//! The older error type of xtask, kept only for `profile.rs` (which another change rewrites):
//! everything else uses [`anyhow`]. Converting `profile.rs` (`Error::new` to
//! `anyhow::Error::msg`, `crate::bail` to `anyhow::bail`) removes this module. `?` turns it into
//! an `anyhow::Error` with the same message.

use std::fmt;

/// An xtask failure. The message says what went wrong and, where there is one, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    msg: String,
}

impl Error {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        Error { msg: msg.into() }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with an [`Error`] built like `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::new(format!($($arg)*)))
    };
}
