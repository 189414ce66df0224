//! The kernel's `log` backend, and plain text output, over a console device.
//!
//! [`Logger`] writes `log` records to any [`ConsoleDevice`] (a UART, a debug port, Xen's console
//! ring) as one line each: `[LEVEL target] message`. [`Writer`] gives `core::fmt::Write` over a
//! device for output that is not a log record (the app's own printing, panic and exception
//! reports). The device itself is the profile's `console` slot (the platform crates'); this
//! crate only formats for it, and [`ConsoleLock`] keeps the lines of several CPUs apart.
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicU32, Ordering};
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

/// Keeps what CPUs write to the console apart: one CPU at a time writes a whole line (a log
/// record, a print, a panic report).
///
/// The same CPU passes again at once (an interrupt handler that logs while its CPU was
/// printing, a panic in the middle of a line), and a holder that never lets go (a CPU stopped
/// while printing) is passed after a bounded wait, so that a panic report is never silenced.
#[derive(Debug)]
pub struct ConsoleLock(AtomicU32);

/// No CPU holds the lock.
const FREE: u32 = u32::MAX;
/// Spins before a holder is taken to be gone (far longer than any line takes to print).
const SPIN_BOUND: u32 = 1 << 24;

impl ConsoleLock {
    /// A free lock.
    pub const fn new() -> Self {
        ConsoleLock(AtomicU32::new(FREE))
    }

    /// Holds the lock for CPU `me` until the guard drops (see the type's docs for re-entry and
    /// a holder that is gone).
    pub fn hold(&self, me: u32) -> Held<'_> {
        for _ in 0..SPIN_BOUND {
            match self
                .0
                .compare_exchange(FREE, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Held(Some(self)),
                Err(owner) if owner == me => return Held(None),
                Err(_) => core::hint::spin_loop(),
            }
        }
        Held(None)
    }
}

impl Default for ConsoleLock {
    fn default() -> Self {
        ConsoleLock::new()
    }
}

/// The console held by one CPU ([`ConsoleLock::hold`]); released on drop unless the hold was a
/// re-entry or a pass.
#[derive(Debug)]
pub struct Held<'a>(Option<&'a ConsoleLock>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(lock) = self.0 {
            lock.0.store(FREE, Ordering::Release);
        }
    }
}

/// A `log` backend that writes each record as one line to a console device; with `LOCKED`,
/// under a [`ConsoleLock`] (more than one CPU prints; one CPU needs none, and does not carry
/// the code).
#[derive(Debug)]
pub struct Logger<D: 'static, const LOCKED: bool> {
    device: &'static D,
    lock: &'static ConsoleLock,
    cpu: fn() -> u32,
}

impl<D: ConsoleDevice, const LOCKED: bool> Logger<D, LOCKED> {
    /// A logger over `device`, each record written under `lock` (with `LOCKED`) by the CPU
    /// `cpu()` names.
    pub const fn new(device: &'static D, lock: &'static ConsoleLock, cpu: fn() -> u32) -> Self {
        Logger { device, lock, cpu }
    }
}

impl<D: ConsoleDevice, const LOCKED: bool> Log for Logger<D, LOCKED> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let _held = LOCKED.then(|| self.lock.hold((self.cpu)()));
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
        static LOCK: ConsoleLock = ConsoleLock::new();
        let logger = Logger::<_, true>::new(&*DEV, &LOCK, || 0);
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

    #[test]
    fn the_lock_passes_its_own_cpu_again_and_waits_for_others() {
        let lock = std::sync::Arc::new(ConsoleLock::new());
        let held = lock.hold(0);
        // Re-entry on CPU 0 passes and does not release the outer hold.
        drop(lock.hold(0));
        assert_eq!(lock.0.load(Ordering::Relaxed), 0);
        let other = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let _h = lock.hold(1);
                lock.0.load(Ordering::Relaxed)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(lock.0.load(Ordering::Relaxed), 0, "CPU 1 took a held lock");
        drop(held);
        assert_eq!(other.join().expect("CPU 1"), 1);
        assert_eq!(lock.0.load(Ordering::Relaxed), FREE);
    }

    #[test]
    fn lines_of_two_cpus_never_mix() {
        static DEV: std::sync::LazyLock<RecordingConsole> =
            std::sync::LazyLock::new(RecordingConsole::default);
        static LOCK: ConsoleLock = ConsoleLock::new();
        let threads: Vec<_> = (0..2u32)
            .map(|cpu| {
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _h = LOCK.hold(cpu);
                        let _ = writeln!(Writer(&*DEV), "cpu {cpu} {}", "x".repeat(40));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
        let text = DEV.text();
        assert_eq!(text.lines().count(), 400);
        for line in text.lines() {
            assert!(
                line == format!("cpu 0 {}", "x".repeat(40))
                    || line == format!("cpu 1 {}", "x".repeat(40)),
                "mixed line: {line:?}"
            );
        }
    }
}
