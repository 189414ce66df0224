//! The skip protocol of the whole-image tests: libtest has no "skipped" outcome, so a test that
//! cannot run here (no Xen lab, no QEMU) prints one `skipped: <test>: <why>` line and returns;
//! `cargo xtask test` counts those lines. Here because the lab's [`crate::skip_test`] prints it
//! and xtask's test command parses it.

/// Reports at run time that a test is skipped (libtest has no such outcome: the test then
/// returns and counts as passed): prints `skipped: <test>: <why>` straight to stdout, past
/// libtest's output capture, so it shows in every run, and `cargo xtask test` counts it as
/// skipped, not passed. `test` is the test's name (the current thread's name under libtest when
/// `None`).
pub fn report_skip(test: Option<&str>, why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let name = test.or(thread.name()).unwrap_or("test");
    let mut out = std::io::stdout().lock();
    // A line of its own, even when libtest has just printed `test NAME ... ` (one test thread).
    let _ = writeln!(out, "{}", skip_line(name, why));
    let _ = out.flush();
}

/// The line [`report_skip`] prints: `skipped: <test>: <why>` (newlines in `why` become spaces).
pub fn skip_line(test: &str, why: &str) -> String {
    format!("{SKIP_PREFIX}{test}: {}", why.replace('\n', " "))
}

/// What starts a [`skip_line`].
pub const SKIP_PREFIX: &str = "skipped: ";

/// The test name of a [`skip_line`] found anywhere in `line` (libtest may have started the line
/// with `test NAME ... `): `skipped: ` then a Rust path (`xen::hello`, `hello_powers_off`) and `: `.
pub fn parse_skip_line(line: &str) -> Option<&str> {
    line.match_indices(SKIP_PREFIX).find_map(|(at, _)| {
        let rest = &line[at + SKIP_PREFIX.len()..];
        let (name, _) = rest.split_once(": ")?;
        let is_path = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        is_path.then_some(name)
    })
}
