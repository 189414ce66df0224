//! The kernel command line xtask writes: `[kernel options] -- ARG... --`, each app argument
//! encoded so that the kernel decodes exactly it (the grammar is in the `cmdline` crate,
//! crates/cmdline, and in README.md under "Kernel command line").
//!
//! An argument is written as is when it is not empty, not `--`, and has no whitespace, quote,
//! backslash or control character; otherwise it is quoted: `"` + the argument with `\` as
//! `\\`, `"` as `\"` and each control character (U+0000 to U+001F, U+007F) as `\xHH` + `"`.
//! The closing `--` tells the kernel where the arguments end, so that what a monitor appends
//! (QEMU `microvm` with `acpi=off`, Firecracker: ` virtio_mmio.device=...`) is not taken for
//! one.

use std::borrow::Cow;

use anyhow::Result;
use anyhow::bail;

/// One app argument as the kernel reads it back.
pub fn encode_arg(arg: &str) -> Cow<'_, str> {
    let needs_quotes = arg.is_empty()
        || arg == "--"
        || arg
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control() || c == '"' || c == '\\');
    if !needs_quotes {
        return Cow::Borrowed(arg);
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// The kernel command line for `kargs` (kernel options, whitespace-separated, written as
/// given) and `app_args`: `kargs -- ARG... --`, or just the options without app arguments.
pub fn kernel_cmdline(kargs: &str, app_args: &[String]) -> String {
    let mut parts: Vec<Cow<'_, str>> = kargs.split_whitespace().map(Cow::Borrowed).collect();
    if !app_args.is_empty() {
        parts.push(Cow::Borrowed("--"));
        parts.extend(app_args.iter().map(|a| encode_arg(a)));
        parts.push(Cow::Borrowed("--"));
    }
    parts.join(" ")
}

/// Checks `--kargs` before it reaches the kernel: it must split into tokens as the kernel
/// splits them (quotes closed, known escapes) and hold no `--` (app arguments go after `--`
/// on xtask's own command line, where they are encoded).
pub fn check_kargs(kargs: &str) -> Result<()> {
    for token in ::cmdline::tokens(kargs) {
        match token {
            Err(e) => bail!("--kargs {kargs:?}: {e}"),
            Ok(t) if t.is_bare() && t.raw() == "--" => bail!(
                "--kargs {kargs:?}: `--` does not belong in the kernel options; put the app's \
                 arguments after `--` on the command line (`cargo xtask run APP -- ARGS...`)"
            ),
            Ok(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::fuzz::{Rng, cases};

    fn decode(line: &str) -> Vec<String> {
        ::cmdline::KernelArgs::<8192>::parse(line)
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
            .app_args()
            .map(str::to_string)
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_arguments_stay_plain_and_the_list_is_closed() {
        assert_eq!(
            kernel_cmdline(" log=debug  bootchart ", &strings(&["one", "two"])),
            "log=debug bootchart -- one two --"
        );
        assert_eq!(kernel_cmdline("log=off", &[]), "log=off");
        assert_eq!(kernel_cmdline(" ", &[]), "");
        assert_eq!(kernel_cmdline("", &strings(&["x"])), "-- x --");
    }

    #[test]
    fn arguments_that_need_it_are_quoted() {
        for (arg, encoded) in [
            ("exit 7", r#""exit 7""#),
            ("", r#""""#),
            ("--", r#""--""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            (r"a\b", r#""a\\b""#),
            ("tab\there", r#""tab\x09here""#),
            ("nl\n", r#""nl\x0a""#),
            ("\x7f", r#""\x7f""#),
            ("grüße", "grüße"),
            ("log=debug", "log=debug"),
        ] {
            assert_eq!(encode_arg(arg), encoded, "{arg:?}");
        }
    }

    #[test]
    fn the_examples_of_the_issue_arrive_unchanged() {
        let args = strings(&[
            "exit 7",
            "",
            r#"say "hi" \o/"#,
            "--",
            "log=debug",
            "bootchart",
        ]);
        let line = kernel_cmdline("log=info", &args);
        assert_eq!(decode(&line), args);
        // A monitor's parameters appended after the closing `--` are not the app's.
        assert_eq!(
            decode(&format!("{line} virtio_mmio.device=512@0xfeb00e00:12")),
            args
        );
        // An argument that looks like a monitor parameter is the app's inside the list.
        let args = strings(&["virtio_mmio.device=512@0x1:5"]);
        assert_eq!(decode(&kernel_cmdline("", &args)), args);
    }

    #[test]
    fn kargs_are_checked() {
        check_kargs("log=debug bootchart").unwrap();
        check_kargs(r#"hello "two words""#).unwrap();
        let e = check_kargs("log=debug -- x").unwrap_err().to_string();
        assert!(e.contains("cargo xtask run APP -- ARGS"), "{e}");
        let e = check_kargs(r#"say "hi"#).unwrap_err().to_string();
        assert!(e.contains("never closed"), "{e}");
        let e = check_kargs(r"a\q").unwrap_err().to_string();
        assert!(e.contains(r"\q"), "{e}");
        // A quoted `--` is an argument, not a marker.
        check_kargs(r#""--""#).unwrap();
    }

    fn random_arg(rng: &mut Rng) -> String {
        const PIECES: &[&str] = &[
            "\"",
            "\\",
            "\\\\",
            "\\\"",
            "\\x41",
            " ",
            "  ",
            "\t",
            "\n",
            "\r",
            "--",
            "-",
            "log=debug",
            "bootchart",
            "virtio_mmio.device=512@0xfeb00e00:12",
            "a",
            "xyz",
            "é",
            "日本語",
            "🦀",
            "\u{a0}",
            "\u{2028}",
            "\x7f",
            "\x01",
            "'",
            "=",
            "\u{0}",
        ];
        let len = rng.below(6);
        let mut arg = String::new();
        for _ in 0..len {
            if rng.chance(20) {
                // Any Unicode scalar value (surrogates excluded).
                let c = loop {
                    if let Some(c) = char::from_u32(rng.next_u64() as u32 % 0x11_0000) {
                        break c;
                    }
                };
                arg.push(c);
            } else {
                arg.push_str(rng.pick(PIECES));
            }
        }
        arg
    }

    /// Encode here, decode with the kernel's parser: random argument lists (quotes, spaces,
    /// empty strings, Unicode, backslashes, markers and options) come back identical, with and
    /// without kernel options before them and a monitor's parameters after them.
    #[test]
    fn random_arguments_round_trip_through_the_kernels_parser() {
        // `STARDUST_FUZZ_CASES=N` runs N cases, `STARDUST_FUZZ_SEED=N` other ones (by hand).
        let mut rng = Rng::new(0xc3d1_0003);
        for case in 0..cases(50_000) {
            let args: Vec<String> = (0..rng.below(6)).map(|_| random_arg(&mut rng)).collect();
            let kargs = rng.pick(&["", "log=debug", "bootchart log=off", "hello"]);
            let line = kernel_cmdline(kargs, &args);
            let mut expect = args.clone();
            if kargs == "hello" {
                // Unknown bare tokens before `--` are the app's too.
                expect.insert(0, "hello".into());
            }
            assert_eq!(decode(&line), expect, "case {case}: {line:?}");
            let appended = format!("{line} virtio_mmio.device=512@0xfeb00e00:12");
            assert_eq!(decode(&appended), expect, "case {case}: {appended:?}");
            // What xtask writes never needs anything but printable characters and spaces.
            assert!(
                !line.chars().any(|c| c.is_ascii_control()),
                "case {case}: {line:?}"
            );
        }
    }
}
