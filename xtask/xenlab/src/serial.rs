//! The lab's serial line: [`SerialParser`] reads the markers of dom0's batch runner
//! (`xtask/xenlab/dom0-batch`) and Xen's console lines into one [`GuestResult`] per guest.

use std::time::Duration;

use crate::{GuestResult, GuestSpec, Shutdown};

/// The dom0 markers of one guest, as they arrive.
#[derive(Debug, Default, Clone)]
struct RawGuest {
    create: Option<f64>,
    domid_at: Option<f64>,
    domid: Option<u32>,
    done: Option<f64>,
    reason: Option<String>,
    console: Vec<String>,
    first: Option<f64>,
    xen: Vec<String>,
    xl: Vec<String>,
    ended: bool,
}

/// Parses the lab's serial output (see `xtask/xenlab/dom0-batch` for the markers).
#[derive(Debug)]
pub struct SerialParser {
    guests: Vec<RawGuest>,
    current: Option<usize>,
    /// QEMU start → `XENLAB: DOM0-READY`.
    pub dom0_ready: Option<Duration>,
    /// The batch's status from `XENLAB: END rc=N`.
    pub end_rc: Option<i32>,
}

impl SerialParser {
    /// A parser for `n` guests.
    pub fn new(n: usize) -> SerialParser {
        SerialParser {
            guests: vec![RawGuest::default(); n],
            current: None,
            dom0_ready: None,
            end_rc: None,
        }
    }

    /// How many guests have ended.
    pub fn finished(&self) -> usize {
        self.guests.iter().filter(|g| g.ended).count()
    }

    fn guest(&mut self, num: &str) -> Option<&mut RawGuest> {
        let n: usize = num.parse().ok()?;
        self.guests.get_mut(n.checked_sub(1)?)
    }

    /// Feeds one line that arrived `t` after QEMU started.
    pub fn line(&mut self, t: Duration, line: &str) {
        if let Some(rest) = line.strip_prefix("XENLAB-C ") {
            let (num, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some(g) = self.guest(num) {
                g.console.push(text.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("XENLAB-X ") {
            let (num, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some(g) = self.guest(num) {
                g.xl.push(text.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("XENLAB-GUEST ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let num = words.first().copied().unwrap_or("");
            let idx = num.parse::<usize>().ok().and_then(|n| n.checked_sub(1));
            let Some(g) = self.guest(num) else { return };
            let f = |w: Option<&&str>| w.and_then(|s| s.parse::<f64>().ok());
            match words.get(1).copied() {
                Some("T") => match words.get(2).copied() {
                    Some("create") => g.create = f(words.get(3)),
                    Some("domid") => {
                        g.domid_at = f(words.get(3));
                        g.domid = words.get(4).and_then(|s| s.parse().ok());
                    }
                    Some("first") => g.first = f(words.get(3)),
                    Some("done") => g.done = f(words.get(3)),
                    _ => {}
                },
                Some("REASON") => g.reason = words.get(2).map(|s| s.to_string()),
                Some("END") => {
                    g.ended = true;
                    self.current = None;
                }
                Some("BEGIN") => self.current = idx,
                _ => {}
            }
        } else if let Some(rest) = line.strip_prefix("XENLAB: ") {
            if rest.starts_with("DOM0-READY") {
                self.dom0_ready = Some(t);
            } else if let Some(rc) = rest.strip_prefix("END rc=") {
                self.end_rc = rc.split_whitespace().next().and_then(|s| s.parse().ok());
            }
        } else if (line.starts_with("(XEN)") || is_guest_debug_line(line))
            && !is_builder_noise(line)
            && let Some(i) = self.current
            && let Some(g) = self.guests.get_mut(i)
        {
            g.xen.push(line.to_string());
        }
    }

    /// The result of guest `i` (0-based) so far.
    pub fn result(&self, i: usize, spec: &GuestSpec) -> GuestResult {
        let raw = self.guests.get(i).cloned().unwrap_or_default();
        let since = |t: Option<f64>| match (raw.create, t) {
            (Some(c), Some(t)) if t >= c => Some(Duration::from_secs_f64(t - c)),
            _ => None,
        };
        GuestResult {
            name: spec.name.clone(),
            kernel: spec.kernel.clone(),
            expect: spec.expect,
            shutdown: raw
                .reason
                .as_deref()
                .map_or(Shutdown::NotSeen, Shutdown::parse),
            console: raw.console,
            xen_lines: raw.xen,
            xl_output: raw.xl,
            domid: raw.domid,
            to_domid: since(raw.domid_at),
            to_first_line: since(raw.first),
            to_shutdown: since(raw.done),
        }
    }
}

/// The domain builder's `HVM d1v0 save: CPU` / `HVM1 restore: ...` lines (loglvl=all noise).
fn is_builder_noise(line: &str) -> bool {
    let rest = line.trim_start_matches("(XEN)").trim_start();
    rest.starts_with("HVM") && (rest.contains(" save: ") || rest.contains(" restore: "))
}

/// `(d12) text`: a PVH guest's port 0xe9 output on Xen's console.
fn is_guest_debug_line(line: &str) -> bool {
    line.strip_prefix("(d")
        .and_then(|r| r.split_once(')'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expect;
    use std::path::PathBuf;

    fn spec(name: &str, expect: Expect) -> GuestSpec {
        GuestSpec::new(name, PathBuf::from("/k")).expect(expect)
    }

    #[test]
    fn parses_a_batch_transcript() {
        let transcript = "\
(XEN) Xen version 4.17.5
XENLAB: DOM0-READY uptime=20.1s
XENLAB-GUEST 01 BEGIN
XENLAB-GUEST 01 T create 1000.000
XENLAB-GUEST 01 T domid 1001.500 1
XENLAB-GUEST 01 T first 1002.100
XENLAB-GUEST 01 T done 1003.000
XENLAB-GUEST 01 REASON 0
XENLAB-C 01 pvhello: hello
XENLAB-C 01 second line
XENLAB-X 01 Parsing config from /tmp/sd01.cfg
XENLAB-GUEST 01 END
XENLAB-GUEST 02 BEGIN
XENLAB-GUEST 02 T create 1010.000
(XEN) d2v0 Unhandled: vec 6, #UD[ffffffff]
(XEN) HVM d2v0 save: CPU
(XEN) HVM2 restore: MTRR 0
(d2) port e9 text
XENLAB-GUEST 02 T done 1012.000
XENLAB-GUEST 02 REASON 3
XENLAB-GUEST 02 END
(XEN) after the batch
XENLAB-GUEST 03 BEGIN
XENLAB-GUEST 03 T create 1020.000
XENLAB-GUEST 03 T done 1030.000
XENLAB-GUEST 03 REASON timeout
XENLAB-GUEST 03 END
XENLAB-GUEST 07 REASON 0
XENLAB-GUEST x garbage
XENLAB-C
XENLAB: END rc=0 uptime=40s
";
        let mut p = SerialParser::new(4);
        for (i, l) in transcript.lines().enumerate() {
            p.line(Duration::from_secs(i as u64), l);
        }
        assert_eq!(p.dom0_ready, Some(Duration::from_secs(1)));
        assert_eq!(p.end_rc, Some(0));
        assert_eq!(p.finished(), 3);
        let a = p.result(0, &spec("a", Expect::Poweroff));
        assert_eq!(a.shutdown, Shutdown::Poweroff);
        assert!(a.passed());
        assert_eq!(a.console, vec!["pvhello: hello", "second line"]);
        assert_eq!(a.domid, Some(1));
        assert_eq!(a.to_domid, Some(Duration::from_millis(1500)));
        let first = a.to_first_line.expect("first line time");
        assert!((first.as_secs_f64() - 2.1).abs() < 1e-6);
        assert_eq!(a.to_shutdown, Some(Duration::from_secs(3)));
        assert_eq!(a.xl_output, vec!["Parsing config from /tmp/sd01.cfg"]);
        let b = p.result(1, &spec("b", Expect::Poweroff));
        assert_eq!(b.shutdown, Shutdown::Crash);
        assert!(!b.passed());
        assert!(b.summary().contains("FAILED"));
        assert_eq!(b.xen_lines.len(), 2);
        assert_eq!(b.to_first_line, None);
        let c = p.result(2, &spec("c", Expect::Timeout));
        assert_eq!(c.shutdown, Shutdown::Timeout);
        assert!(c.passed());
        let d = p.result(3, &spec("d", Expect::Poweroff));
        assert_eq!(d.shutdown, Shutdown::NotSeen);
        assert!(!d.passed());
        // out of range guest numbers are ignored, not a panic
        let e = p.result(9, &spec("e", Expect::Any));
        assert!(e.passed());
    }
}
