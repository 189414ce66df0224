//! The exit statuses of `cargo xtask run`: the guest's own status 0-255, unchanged, except a
//! reserved few (README.md, "Exit statuses", is the table; a test checks it against these
//! constants and the kernel's, `platform::status`).
//!
//! - 101-103 are the kernel's: a panic, a CPU exception, a configuration or boot error.
//! - 124-127 are xtask's own outcomes, none of them a guest's status: [`TIMEOUT`],
//!   [`NEVER_RAN`], [`KILLED`], [`NO_STATUS`] (as `timeout(1)` uses 124-127 for its own).
//!
//! The kernel refuses an app's exit with a reserved status (a panic: 101), so each of these
//! means one thing. On QEMU, a guest status that `isa-debug-exit` cannot carry (7 bits) comes
//! back from the console's last line, [`CONSOLE_LINE`] `N` (QEMU exits with 255 then).

// The values are the kernel's own constants: one definition for the guest and for xtask.
pub use platform::status::{BAD_CONFIG, EXCEPTION, KILLED, NEVER_RAN, NO_STATUS, PANIC, TIMEOUT};

/// The kernel's statuses, which xtask passes on as the guest's.
pub const KERNEL: [u8; 3] = [PANIC, EXCEPTION, BAD_CONFIG];
/// xtask's own outcomes.
pub const OUTCOMES: [u8; 4] = [TIMEOUT, NEVER_RAN, KILLED, NO_STATUS];

/// The console line with a status `isa-debug-exit` cannot carry: `exit status N`.
pub const CONSOLE_LINE: &str = "exit status ";
/// QEMU's exit status when the guest's status is on the console (the guest wrote 127).
pub const QEMU_STATUS_ON_CONSOLE: i32 = 255;

/// What a reserved status means, for messages (`None` for an app's own status).
pub fn meaning(code: u8) -> Option<&'static str> {
    Some(match code {
        PANIC => "kernel panic",
        EXCEPTION => "CPU exception",
        BAD_CONFIG => "kernel configuration or boot error",
        TIMEOUT => "timeout",
        NEVER_RAN => "the guest never ran",
        KILLED => "the monitor was killed by a signal",
        NO_STATUS => "the guest stopped without a status",
        _ => return None,
    })
}

/// The status on the console's last line `exit status N` (N 128-255: only those travel there),
/// or `None`. `tail` is the end of the console output; the line must end it (`\r` and trailing
/// newlines aside): the kernel prints it last.
pub fn from_console(tail: &str) -> Option<u8> {
    let last = tail.trim_end_matches(['\r', '\n']).rsplit('\n').next()?;
    let digits = last.trim_end_matches('\r').rsplit_once(CONSOLE_LINE)?.1;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u8>().ok().filter(|n| *n >= 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reserved_status_has_a_meaning() {
        for code in KERNEL.iter().chain(&OUTCOMES) {
            assert!(meaning(*code).is_some(), "{code}");
        }
        let named = (0..=255u8).filter(|c| meaning(*c).is_some()).count();
        assert_eq!(named, KERNEL.len() + OUTCOMES.len());
        assert_eq!(meaning(1), None);
    }

    #[test]
    fn the_status_comes_from_the_last_console_line_only() {
        assert_eq!(from_console("faults: exit\nexit status 200\n"), Some(200));
        assert_eq!(from_console("exit status 128\r\n"), Some(128));
        assert_eq!(from_console("exit status 255"), Some(255));
        // The app's unfinished line before the kernel's.
        assert_eq!(from_console("no newline: exit status 255\n"), Some(255));
        // Not the last line, not a number, out of range, or a status that fits isa-debug-exit.
        assert_eq!(from_console("exit status 200\nbye\n"), None);
        assert_eq!(from_console("exit status 2x0\n"), None);
        assert_eq!(from_console("exit status 256\n"), None);
        assert_eq!(from_console("exit status \n"), None);
        assert_eq!(from_console("exit status 7\n"), None);
        assert_eq!(from_console(""), None);
    }
}
