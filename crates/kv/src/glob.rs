//! Redis's glob matching (`util.c`'s `stringmatchlen`), for `KEYS` and `CONFIG GET`.
//!
//! `*` any run of bytes, `?` one byte, `[abc]` one of a set, `[^a]` / `[a-z]` negation and
//! ranges (the ends in either order), `\x` the byte `x` literally (also inside `[...]`); an
//! unterminated `[` set ends at the pattern's end. Matching is byte-wise. As in Redis, once the
//! rest of the pattern after a `*` fails to match at every later position, no earlier `*` is
//! tried with a longer match (which bounds the work on patterns such as `*a*a*a*a*b`), and
//! nesting beyond 1000 `*`s fails the match.

/// Whether `string` matches `pattern` (`nocase`: ASCII case-insensitively).
pub fn matches(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, nocase, &mut skip_longer, 0)
}

fn lower(b: u8, nocase: bool) -> u8 {
    if nocase { b.to_ascii_lowercase() } else { b }
}

fn match_impl(
    mut pattern: &[u8],
    mut string: &[u8],
    nocase: bool,
    skip_longer: &mut bool,
    nesting: u32,
) -> bool {
    if nesting > 1000 {
        return false;
    }
    // C reads the NUL after the pattern at its end: `at` does the same with 0.
    let at = |p: &[u8], i: usize| p.get(i).copied().unwrap_or(0);
    while !pattern.is_empty() && !string.is_empty() {
        match pattern[0] {
            b'*' => {
                while at(pattern, 1) == b'*' {
                    pattern = &pattern[1..];
                }
                if pattern.len() == 1 {
                    return true;
                }
                while !string.is_empty() {
                    if match_impl(&pattern[1..], string, nocase, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    string = &string[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => string = &string[1..],
            b'[' => {
                pattern = &pattern[1..];
                let not = at(pattern, 0) == b'^';
                if not {
                    pattern = &pattern[1..];
                }
                let c = lower(string[0], nocase);
                let mut matched = false;
                loop {
                    if pattern.is_empty() {
                        // Unterminated: the set ends with the pattern (C steps back one byte so
                        // that the step below lands at the end).
                        break;
                    } else if pattern[0] == b'\\' && pattern.len() >= 2 {
                        pattern = &pattern[1..];
                        if pattern[0] == string[0] {
                            matched = true;
                        }
                    } else if pattern[0] == b']' {
                        break;
                    } else if pattern.len() >= 3 && pattern[1] == b'-' {
                        let (mut start, mut end) =
                            (lower(pattern[0], nocase), lower(pattern[2], nocase));
                        if start > end {
                            core::mem::swap(&mut start, &mut end);
                        }
                        pattern = &pattern[2..];
                        if (start..=end).contains(&c) {
                            matched = true;
                        }
                    } else if lower(pattern[0], nocase) == c {
                        matched = true;
                    }
                    pattern = &pattern[1..];
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                string = &string[1..];
                if pattern.is_empty() {
                    // The unterminated set consumed the pattern: the common step is done.
                    if string.is_empty() {
                        break;
                    }
                    continue;
                }
            }
            b => {
                let b = if b == b'\\' && pattern.len() >= 2 {
                    pattern = &pattern[1..];
                    pattern[0]
                } else {
                    b
                };
                if lower(b, nocase) != lower(string[0], nocase) {
                    return false;
                }
                string = &string[1..];
            }
        }
        pattern = &pattern[1..];
        if string.is_empty() {
            while at(pattern, 0) == b'*' {
                pattern = &pattern[1..];
            }
            break;
        }
    }
    pattern.is_empty() && string.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_rules() {
        let yes: &[(&str, &str)] = &[
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "hllo"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hbllo"),
            ("\\*", "*"),
            ("a\\?c", "a?c"),
            ("[\\]]", "]"),
            ("[abc", "a"),
            ("key:*:x", "key:1:x"),
            ("**a", "ba"),
            ("a*", "a"),
            ("a**", "a"),
        ];
        let no: &[(&str, &str)] = &[
            // As in Redis: the loop never runs on an empty string (KEYS * has its own shortcut).
            ("*", ""),
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("\\*", "a"),
            ("a", ""),
            ("", "a"),
            ("?", ""),
            ("[abc", "ab"),
            ("abc", "ab"),
            ("ab", "abc"),
        ];
        for (p, s) in yes {
            assert!(matches(p.as_bytes(), s.as_bytes(), false), "{p} {s}");
        }
        for (p, s) in no {
            assert!(!matches(p.as_bytes(), s.as_bytes(), false), "{p} {s}");
        }
        assert!(matches(b"HE*", b"hello", true));
        assert!(!matches(b"HE*", b"hello", false));
        assert!(matches(b"[A-C]x", b"bX", true));
    }

    #[test]
    fn abusive_patterns_end_quickly() {
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let string = [b'a'; 4000];
        assert!(!matches(pattern, &string, false));
        let deep = [b'*', b'a'].repeat(3000);
        let _ = matches(&deep, &string, false);
    }
}
