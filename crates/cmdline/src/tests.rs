use super::*;
use platform::fuzz::{Rng, cases};

type Args = KernelArgs<4096>;

/// The app's arguments of `line`, decoded.
fn app(line: &str) -> Vec<String> {
    let args = Args::parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    args.app_args().map(str::to_string).collect()
}

fn err(line: &str) -> ArgsError<'_> {
    Args::parse(line).expect_err(line)
}

#[test]
fn kernel_options_and_app_args_split() {
    let a = Args::parse("log=trace hello -- bootchart x").unwrap();
    assert_eq!(a.log_level, Some(LevelFilter::Trace));
    assert!(!a.bootchart, "bootchart after -- belongs to the app");
    assert_eq!(
        app("log=trace hello -- bootchart x"),
        ["hello", "bootchart", "x"]
    );
    assert!(app("").is_empty());
    assert_eq!(Args::parse("").unwrap().log_level, None);
    assert!(app(" --  ").is_empty());
    assert!(app("\t-- --\n").is_empty());
}

#[test]
fn bad_log_level_names_the_value_and_the_choices() {
    let e = err("log=loud");
    assert_eq!(e, ArgsError::BadLogLevel("loud"));
    let text = e.to_string();
    assert!(
        text.contains("\"loud\"") && text.contains("debug"),
        "{text}"
    );
    assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
    assert_eq!(parse_level(""), None);
    // Options after the closing `--` are the kernel's too.
    assert_eq!(err("-- a -- log=loud"), ArgsError::BadLogLevel("loud"));
    let a = Args::parse("-- a -- bootchart log=warn").unwrap();
    assert!(a.bootchart);
    assert_eq!(a.log_level, Some(LevelFilter::Warn));
}

#[test]
fn a_hand_written_line_still_works() {
    assert_eq!(app("-- one two"), ["one", "two"]);
    assert_eq!(app("hello world"), ["hello", "world"]);
    assert_eq!(app("log=debug  -- one   two  "), ["one", "two"]);
    // Linux-style quotes group words.
    assert_eq!(app(r#"-- say "hello world""#), ["say", "hello world"]);
    assert_eq!(app(r#"-- name="a b"c"#), ["name=a bc"]);
}

#[test]
fn quotes_escapes_and_empty_arguments() {
    assert_eq!(
        app(r#"-- "exit 7" "" "say \"hi\"" "back\\slash" \"bare -- "#),
        ["exit 7", "", "say \"hi\"", "back\\slash", "\"bare"]
    );
    assert_eq!(
        app(r#"-- "tab\x09nl\x0aend" "\x7f" "\x00""#),
        ["tab\tnl\nend", "\x7f", "\0"]
    );
    assert_eq!(app(r#"-- "" "" --"#), ["", ""]);
    // Quoted markers and options are plain arguments.
    assert_eq!(
        app(r#""--" "log=debug" "bootchart" -- "--" x"#),
        ["--", "log=debug", "bootchart", "--", "x"]
    );
    let a = Args::parse(r#""log=loud" "bootchart""#).unwrap();
    assert_eq!((a.log_level, a.bootchart), (None, false));
    assert_eq!(app("-- grüße \"日本 語\" 🦀"), ["grüße", "日本 語", "🦀"]);
    // Inside quotes, any whitespace is kept as written.
    assert_eq!(app("-- \"a\tb\nc\""), ["a\tb\nc"]);
}

#[test]
fn monitor_parameters_are_not_the_apps() {
    let dev = "virtio_mmio.device=512@0xfeb00e00:12";
    // A closed list: whatever follows is the monitor's.
    assert_eq!(
        app(&format!(
            "-- a \"\" -- {dev} virtio_mmio.device=512@0xfeb00c00:11"
        )),
        ["a", ""]
    );
    assert_eq!(app(&format!("-- a -- {dev} unknown token")), ["a"]);
    // No list: not the app's either.
    assert!(app(dev).is_empty());
    assert_eq!(app(&format!("log=info hi {dev}")), ["hi"]);
    // An open list (written by hand): its trailing run of monitor parameters.
    assert_eq!(
        app(&format!(
            "-- one two {dev} virtio_mmio.device=4K@0xd0000000:5"
        )),
        ["one", "two"]
    );
    // ... but only the trailing run, and only bare ones.
    assert_eq!(app(&format!("-- {dev} x \"{dev}\"")), [dev, "x", dev]);
    // Inside a closed list, everything is the app's.
    assert_eq!(app(&format!("-- {dev} -- {dev}")), [dev]);
}

/// The monitor's parameters of `line`.
fn monitor(line: &str) -> Vec<&str> {
    monitor_params(line).collect()
}

#[test]
fn monitor_params_are_the_tokens_the_app_does_not_get() {
    let dev = "virtio_mmio.device=512@0xfeb00e00:12";
    let fc = "virtio_mmio.device=4K@0xd0000000:5";
    // The cases of `monitor_parameters_are_not_the_apps`, from the other side.
    assert_eq!(monitor(&format!("-- a \"\" -- {dev} {fc}")), [dev, fc]);
    assert_eq!(monitor(&format!("-- a -- {dev} unknown token")), [dev]);
    assert_eq!(monitor(dev), [dev]);
    assert_eq!(monitor(&format!("log=info hi {dev}")), [dev]);
    assert_eq!(monitor(&format!("-- one two {dev} {fc}")), [dev, fc]);
    assert_eq!(monitor(&format!("-- {dev} x \"{dev}\"")), [] as [&str; 0]);
    assert_eq!(monitor(&format!("-- {dev} -- {dev}")), [dev]);
    // Before the list, and after it, in order; kernel options are not the monitor's.
    assert_eq!(
        monitor(&format!("{fc} bootchart -- {dev} -- log=info {dev}")),
        [fc, dev]
    );
    // A run that a marker closes is the app's; one that another token follows too.
    assert_eq!(monitor(&format!("-- {dev} {fc} --")), [] as [&str; 0]);
    assert_eq!(monitor(&format!("-- {dev} {fc} x")), [] as [&str; 0]);
    assert!(monitor("").is_empty());
    // A bad escape ends them.
    assert_eq!(monitor(&format!("{dev} \\q {fc}")), [dev]);
}

#[test]
fn bad_quotes_and_escapes_are_errors_that_say_where() {
    assert_eq!(err(r#"-- "open"#), ArgsError::UnterminatedQuote(3));
    assert_eq!(err(r#"a"b c"#), ArgsError::UnterminatedQuote(1));
    for (line, at, escape) in [
        (r"-- a\b", 4, r"\b"),
        (r"-- a\", 4, r"\"),
        (r"\x8f", 0, r"\x8f"),
        (r"\xg0", 0, r"\xg0"),
        (r"\x1", 0, r"\x1"),
        ("\\é", 0, "\\é"),
        ("\\x日本語", 0, "\\x日本"),
        (r#""\q""#, 1, r"\q"),
    ] {
        assert_eq!(err(line), ArgsError::BadEscape { at, escape }, "{line:?}");
    }
    let text = err(r"\q").to_string();
    assert!(text.contains(r"\q") && text.contains(r"\xHH"), "{text}");
    let text = err("\"").to_string();
    assert!(text.contains("byte 0"), "{text}");
}

#[test]
fn too_long_says_when_the_length_is_a_lower_bound() {
    let e = ArgsError::TooLong {
        len: 1100,
        max: 1024,
        at_least: false,
    };
    assert_eq!(
        e.to_string(),
        "the command line is 1100 bytes long; the limit is 1024 bytes"
    );
    let e = ArgsError::TooLong {
        len: 65536,
        max: 1024,
        at_least: true,
    };
    assert!(e.to_string().contains("at least 65536 bytes"), "{e}");
}

#[test]
fn the_buffer_bound_holds_and_overflow_is_an_error() {
    // L + 1 bytes hold the arguments of any line of L bytes: one-byte tokens are the worst.
    let line = "a b c d e f";
    let args = KernelArgs::<12>::parse(line).unwrap();
    assert_eq!(
        args.app_args().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e", "f"]
    );
    assert_eq!(
        KernelArgs::<11>::parse(line).unwrap_err(),
        ArgsError::ArgsTooLong
    );
    let line = r#""" """#;
    assert_eq!(KernelArgs::<6>::parse(line).unwrap().app_args().count(), 2);
    assert_eq!(
        KernelArgs::<1>::parse(line).unwrap_err(),
        ArgsError::ArgsTooLong
    );
    assert_eq!(
        KernelArgs::<0>::parse(line).unwrap_err(),
        ArgsError::ArgsTooLong
    );
    assert_eq!(KernelArgs::<0>::parse("").unwrap().app_args().count(), 0);
    // Trailing monitor parameters of an open list are dropped after decoding: the buffer must
    // hold them meanwhile, and does.
    let line = "-- a virtio_mmio.device=1";
    assert_eq!(
        KernelArgs::<26>::parse(line)
            .unwrap()
            .app_args()
            .collect::<Vec<_>>(),
        ["a"]
    );
}

/// Random bytes, biased towards the characters the grammar cares about.
fn random_line(rng: &mut Rng) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"\\\\",
        b"\\\"",
        b"\\x",
        b"\\x4",
        b"\\x41",
        b"\\x7f",
        b"\\x80",
        b" ",
        b"\t",
        b"\n",
        b"--",
        b" -- ",
        b"log=",
        b"log=debug",
        b"bootchart",
        b"a",
        b"xyz",
        b"virtio_mmio.device=512@0x1:5",
        "é".as_bytes(),
        "🦀".as_bytes(),
        b"\xff",
        b"\xc3",
        b"\0",
    ];
    let len = rng.below(40);
    let mut line = Vec::new();
    for _ in 0..len {
        if rng.chance(25) {
            line.push(rng.next_u64() as u8);
        } else {
            line.extend_from_slice(rng.pick(PIECES));
        }
    }
    line
}

#[test]
fn random_lines_never_panic_and_parsed_lines_always_fit() {
    // `STARDUST_FUZZ_CASES=N` runs N cases, `STARDUST_FUZZ_SEED=N` other ones (by hand).
    let mut rng = Rng::new(0xc3d1_0001);
    let (mut parsed, mut plain, total) = (0, 0, cases(200_000));
    for case in 0..total {
        let bytes = random_line(&mut rng);
        let Ok(line) = core::str::from_utf8(&bytes) else {
            continue;
        };
        match Args::parse(line) {
            Ok(args) => {
                parsed += 1;
                // Every bare monitor token is either the app's or the monitor's (exactly, when
                // no token is quoted or escaped: then an argument is its token as written).
                let params: Vec<&str> = monitor_params(line).collect();
                let bare = tokens(line)
                    .filter_map(Result::ok)
                    .filter(Token::is_monitor_param)
                    .count();
                let apps = args
                    .app_args()
                    .filter(|a| a.starts_with(MONITOR_PARAMS[0]))
                    .count();
                assert!(
                    params.iter().all(|p| p.starts_with(MONITOR_PARAMS[0])),
                    "case {case}: {line:?}"
                );
                assert!(params.len() <= bare, "case {case}: {line:?}");
                if !line.contains(['"', '\\']) {
                    assert_eq!(params.len() + apps, bare, "case {case}: {line:?}");
                    plain += 1;
                } else {
                    assert!(params.len() + apps >= bare, "case {case}: {line:?}");
                }
                // A line of L bytes decodes into L + 1.
                assert!(
                    args.app_args_bytes() <= line.len() + 1,
                    "case {case}: {line:?}"
                );
                for arg in args.app_args() {
                    assert!(arg.len() <= line.len(), "case {case}: {line:?}");
                }
            }
            Err(e) => assert_ne!(e, ArgsError::ArgsTooLong, "case {case}: {line:?}"),
        }
    }
    // The generator makes parseable lines too, not only errors.
    assert!(parsed > total / 20, "{parsed} of {total}");
    assert!(plain > total / 100, "{plain} of {total}");
}

#[test]
fn random_tokens_never_panic() {
    // The tokenizer and decoder on their own, on any UTF-8 (errors are fine, panics are not).
    let mut rng = Rng::new(0xc3d1_0002);
    for _ in 0..cases(200_000) {
        let bytes = random_line(&mut rng);
        let line = String::from_utf8_lossy(&bytes);
        for token in tokens(&line) {
            match token {
                Ok(t) => assert!(t.decoded().count() <= t.raw().len()),
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
}

#[test]
fn value_options_are_the_kernels_not_the_apps() {
    let line = "ip=dhcp gw=10.0.0.1 hello -- ip=arg -- ip=10.0.0.2/24";
    let args = KernelArgs::<128>::parse(line).expect("a good line");
    let app: Vec<&str> = args.app_args().collect();
    assert_eq!(app, ["hello", "ip=arg"]);
    // The last one where kernel options go wins; the app's list is never read.
    assert_eq!(kernel_option(line, "ip"), Some("10.0.0.2/24"));
    assert_eq!(kernel_option(line, "gw"), Some("10.0.0.1"));
    assert_eq!(kernel_option("-- ip=1.2.3.4/8", "ip"), None);
    assert_eq!(
        kernel_option("\"ip=1.2.3.4/8\"", "ip"),
        None,
        "a quoted token is an argument"
    );
    assert_eq!(kernel_option("ipx=1", "ip"), None);
    assert_eq!(kernel_option("ip=", "ip"), Some(""));
}
