//! The kernel's `log` backend, and plain text output, over a console device.
//!
//! [`Logger`] writes `log` records to any [`ConsoleDevice`] (a UART, a debug port, Xen's console
//! ring) as one line each: `[LEVEL target] message`. [`Writer`] gives `core::fmt::Write` over a
//! device for output that is not a log record (the app's own printing, panic and exception
//! reports). The device itself is the profile's `console` slot (the platform crates'); this
//! crate only formats for it.
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt::{self, Write as _};
use log::{Log, Metadata, Record};
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

#[cfg(test)]
mod tests {
    use super::*;
    use log::LevelFilter;
    use platform::fake::RecordingConsole;

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
