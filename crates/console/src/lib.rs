//! The console as the `log` backend, and the kernel's command-line options.
//!
//! [`Logger`] writes `log` records to any [`ConsoleDevice`] (a UART, a debug port, Xen's console
//! ring) as one line each: `[LEVEL target] message`. [`Writer`] gives `core::fmt::Write` over a
//! device for output that is not a log record (the app's own printing, panic and exception
//! reports). [`KernelArgs::parse`] splits the kernel command line into kernel options and the
//! application's arguments.
//!
//! ```
//! use console::KernelArgs;
//! let args = KernelArgs::parse("log=debug bootchart -- one two").unwrap();
//! assert_eq!(args.log_level, Some(log::LevelFilter::Debug));
//! assert!(args.bootchart);
//! assert_eq!(args.app_args().collect::<Vec<_>>(), ["one", "two"]);
//! ```
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt::{self, Write as _};
use log::{LevelFilter, Log, Metadata, Record};
use platform::ConsoleDevice;

/// `core::fmt::Write` over a console device.
#[derive(Debug)]
pub struct Writer<'a, D: ?Sized>(pub &'a D);

impl<D: ConsoleDevice + ?Sized> fmt::Write for Writer<'_, D> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// A `log` backend that writes each record as one line to a console device.
#[derive(Debug)]
pub struct Logger<D: 'static> {
    device: &'static D,
}

impl<D: ConsoleDevice> Logger<D> {
    /// A logger over `device`.
    pub const fn new(device: &'static D) -> Self {
        Logger { device }
    }
}

impl<D: ConsoleDevice> Log for Logger<D> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // A write to the console cannot fail (see `ConsoleDevice`), so neither can this.
            let _ = writeln!(
                Writer(self.device),
                "[{:<5} {}] {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Parses a log level name (`off`, `error`, `warn`, `info`, `debug`, `trace`).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ]
    .into_iter()
    .find(|l| l.as_str().eq_ignore_ascii_case(s))
}

/// A bad kernel command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsError<'a> {
    /// `log=` with a value that is not a level.
    BadLogLevel(&'a str),
    /// The monitor passed more bytes than the kernel keeps.
    TooLong {
        /// Bytes given.
        len: usize,
        /// Bytes accepted.
        max: usize,
    },
    /// The command line is not UTF-8.
    NotUtf8,
}

impl fmt::Display for ArgsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::BadLogLevel(v) => write!(
                f,
                "log=\"{v}\" is not a log level; use one of off, error, warn, info, debug, trace"
            ),
            ArgsError::TooLong { len, max } => write!(
                f,
                "the command line is {len} bytes long; the limit is {max} bytes"
            ),
            ArgsError::NotUtf8 => write!(f, "the command line is not valid UTF-8"),
        }
    }
}

impl core::error::Error for ArgsError<'_> {}

/// The kernel command line, split: `[kernel options] [-- app args]`.
///
/// Kernel options are `log=LEVEL` and `bootchart`. Tokens before `--` that are not kernel
/// options belong to the application too, so `hello world` works without a `--`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelArgs<'a> {
    line: &'a str,
    /// `log=LEVEL`, when given.
    pub log_level: Option<LevelFilter>,
    /// `bootchart`: print the TSC time of each boot phase.
    pub bootchart: bool,
}

impl<'a> KernelArgs<'a> {
    /// Parses a command line.
    pub fn parse(line: &'a str) -> Result<Self, ArgsError<'a>> {
        let mut args = KernelArgs {
            line,
            log_level: None,
            bootchart: false,
        };
        for token in line.split_ascii_whitespace() {
            if token == "--" {
                break;
            }
            if let Some(level) = token.strip_prefix("log=") {
                args.log_level = Some(parse_level(level).ok_or(ArgsError::BadLogLevel(level))?);
            } else if token == "bootchart" {
                args.bootchart = true;
            }
        }
        Ok(args)
    }

    /// The application's arguments: the tokens after `--`, plus the tokens before it that are
    /// not kernel options.
    pub fn app_args(&self) -> impl Iterator<Item = &'a str> + Clone + use<'a> {
        app_args(self.line)
    }
}

/// The application's arguments in a command line (see [`KernelArgs::app_args`]); needs no
/// parsing, so it cannot fail.
pub fn app_args(line: &str) -> impl Iterator<Item = &str> + Clone {
    {
        let mut seen_separator = false;
        line.split_ascii_whitespace().filter(move |t| {
            if seen_separator {
                return true;
            }
            if *t == "--" {
                seen_separator = true;
                return false;
            }
            !(t.starts_with("log=") || *t == "bootchart")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::fake::RecordingConsole;

    #[test]
    fn kernel_options_and_app_args_split() {
        let a = KernelArgs::parse("log=trace hello -- bootchart x").unwrap();
        assert_eq!(a.log_level, Some(LevelFilter::Trace));
        assert!(!a.bootchart, "bootchart after -- belongs to the app");
        assert_eq!(
            a.app_args().collect::<Vec<_>>(),
            ["hello", "bootchart", "x"]
        );
        let empty = KernelArgs::parse("").unwrap();
        assert_eq!(empty.app_args().count(), 0);
        assert_eq!(empty.log_level, None);
        let only_sep = KernelArgs::parse(" --  ").unwrap();
        assert_eq!(only_sep.app_args().count(), 0);
    }

    #[test]
    fn bad_log_level_names_the_value_and_the_choices() {
        let e = KernelArgs::parse("log=loud").unwrap_err();
        assert_eq!(e, ArgsError::BadLogLevel("loud"));
        let text = e.to_string();
        assert!(
            text.contains("\"loud\"") && text.contains("debug"),
            "{text}"
        );
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level(""), None);
    }

    #[test]
    fn logger_writes_one_line_per_record_and_filters() {
        static DEV: std::sync::LazyLock<RecordingConsole> =
            std::sync::LazyLock::new(RecordingConsole::default);
        let logger = Logger::new(&*DEV);
        log::set_max_level(LevelFilter::Info);
        for level in [log::Level::Info, log::Level::Debug] {
            logger.log(
                &Record::builder()
                    .level(level)
                    .target("kernel")
                    .args(format_args!("n={}", 5))
                    .build(),
            );
        }
        assert_eq!(DEV.text(), "[INFO  kernel] n=5\n");
    }
}
