//! The lab's serial line: [`SerialParser`] reads the markers of dom0's batch runner
//! (`xtask/xenlab/dom0-batch`) and Xen's console lines into one [`GuestResult`] per guest.

use std::time::Duration;

use crate::{DeviceState, GuestIo, GuestResult, GuestSpec, LiveLine, Shutdown, VifWait};

/// A device's states as dom0 printed them: `B F EPOCH` (`-` for a state not there).
#[derive(Debug, Clone, Copy)]
struct RawState {
    backend: Option<u32>,
    frontend: Option<u32>,
    at: Option<f64>,
}

/// The dom0 markers of one guest, as they arrive.
#[derive(Debug, Default, Clone)]
struct RawGuest {
    script: Vec<String>,
    script_status: Option<i32>,
    script_at: Option<f64>,
    running_at: Option<f64>,
    vif_wait: Option<VifWait>,
    vif: Vec<RawState>,
    vbd: Vec<RawState>,
    disk_dev: Option<String>,
    live: usize,
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

    /// Feeds one line that arrived `t` after QEMU started; returns it when it is a line the
    /// guest or its dom0 script printed while the guest runs (`XENLAB-L`, `XENLAB-S`).
    pub fn line(&mut self, t: Duration, line: &str) -> Option<LiveLine> {
        let split = |rest: &str| -> (String, String) {
            let (num, text) = rest.split_once(' ').unwrap_or((rest, ""));
            (num.to_string(), text.to_string())
        };
        let index = |num: &str| num.parse::<usize>().ok().and_then(|n| n.checked_sub(1));
        if let Some(rest) = line.strip_prefix("XENLAB-L ") {
            let (num, text) = split(rest);
            let g = self.guest(&num)?;
            g.live += 1;
            return Some(LiveLine::Console {
                guest: index(&num)?,
                text,
            });
        } else if let Some(rest) = line.strip_prefix("XENLAB-S ") {
            let (num, text) = split(rest);
            let g = self.guest(&num)?;
            g.script.push(text.clone());
            return Some(LiveLine::Script {
                guest: index(&num)?,
                text,
            });
        }
        self.marker(t, line);
        None
    }

    fn marker(&mut self, t: Duration, line: &str) {
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
                    Some("script") => g.script_at = f(words.get(3)),
                    Some("running") => g.running_at = f(words.get(3)),
                    Some("done") => g.done = f(words.get(3)),
                    _ => {}
                },
                Some("REASON") => g.reason = words.get(2).map(|s| s.to_string()),
                Some("SCRIPT") => g.script_status = words.get(2).and_then(|s| s.parse().ok()),
                Some("DISK") => g.disk_dev = words.get(2).map(|s| s.to_string()),
                Some(dev @ ("VIF" | "VBD")) => {
                    let state = |w: Option<&&str>| w.and_then(|s| s.parse::<u32>().ok());
                    let raw = RawState {
                        backend: state(words.get(2)),
                        frontend: state(words.get(3)),
                        at: f(words.get(4)),
                    };
                    if dev == "VIF" {
                        g.vif.push(raw);
                    } else {
                        g.vbd.push(raw);
                    }
                }
                Some("WAIT") if words.get(2) == Some(&"vif") => {
                    g.vif_wait = Some(VifWait {
                        state: words.get(3).and_then(|s| s.parse().ok()),
                        how: words.get(4).map_or_else(String::new, |s| s.to_string()),
                    });
                }
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
        let create = raw.create;
        let since = |t: Option<f64>| match (create, t) {
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
            io: GuestIo {
                has_script: spec.dom0_script.is_some(),
                script: raw.script,
                script_status: raw.script_status,
                to_script: since(raw.script_at),
                to_running: since(raw.running_at),
                vif_wait: raw.vif_wait,
                vif: raw
                    .vif
                    .iter()
                    .map(|s| DeviceState {
                        backend: s.backend,
                        frontend: s.frontend,
                        at: since(s.at),
                    })
                    .collect(),
                vbd: raw
                    .vbd
                    .iter()
                    .map(|s| DeviceState {
                        backend: s.backend,
                        frontend: s.frontend,
                        at: since(s.at),
                    })
                    .collect(),
                disk_dev: raw.disk_dev,
                disk_out: None,
                live_lines: raw.live,
            },
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

    #[test]
    fn parses_the_io_markers_and_live_lines() {
        let transcript = "\
XENLAB-GUEST 01 BEGIN
XENLAB-GUEST 01 DISK /dev/vdc 1048576
XENLAB-GUEST 01 T create 100.0
XENLAB-GUEST 01 T domid 101.0 4
XENLAB-GUEST 01 VIF 2 1 101.5
XENLAB-GUEST 01 VBD - - 101.5
XENLAB-GUEST 01 VBD 2 1 101.7
XENLAB-L 01 booting
XENLAB-GUEST 01 T running 101.8
XENLAB-GUEST 01 VIF 4 4 102.0
XENLAB-GUEST 01 WAIT vif 4 connected 102.1
XENLAB-GUEST 01 T script 102.2
XENLAB-S 01 xenlab-wait: ping 10.0.0.2 ready after 0.30 s
XENLAB-S 01 
XENLAB-L 01 serving
XENLAB-GUEST 01 SCRIPT 0 104.0
XENLAB-GUEST 01 T done 104.5
XENLAB-GUEST 01 REASON destroyed
XENLAB-C 01 booting
XENLAB-C 01 serving
XENLAB-GUEST 01 END
XENLAB-GUEST 02 BEGIN
XENLAB-GUEST 02 T create 110.0
XENLAB-GUEST 02 WAIT vif - waited 140.0
XENLAB-S 02 no answer
XENLAB-GUEST 02 SCRIPT 124 170.0
XENLAB-GUEST 02 T done 170.0
XENLAB-GUEST 02 REASON timeout
XENLAB-GUEST 02 END
XENLAB-GUEST 03 BEGIN
XENLAB-GUEST 03 DISK missing
XENLAB-GUEST 03 SCRIPT none
XENLAB-GUEST 03 REASON none
XENLAB-GUEST 03 END
XENLAB-S 09 out of range
XENLAB-L x garbage
XENLAB-S
";
        let mut p = SerialParser::new(3);
        let mut live = Vec::new();
        for (i, l) in transcript.lines().enumerate() {
            if let Some(line) = p.line(Duration::from_secs(i as u64), l) {
                live.push(line);
            }
        }
        let server = GuestSpec::new("a", PathBuf::from("/k"))
            .dom0_script("true")
            .keeps_running(true);
        let a = p.result(0, &server);
        assert_eq!(a.shutdown, Shutdown::Destroyed);
        assert!(a.passed(), "{}", a.summary());
        assert_eq!(a.io.script_status, Some(0));
        assert_eq!(
            a.io.script,
            vec!["xenlab-wait: ping 10.0.0.2 ready after 0.30 s", ""]
        );
        assert_eq!(a.io.to_script, Some(Duration::from_millis(2200)));
        assert_eq!(a.io.to_running, Some(Duration::from_millis(1800)));
        assert_eq!(a.io.disk_dev.as_deref(), Some("/dev/vdc"));
        assert_eq!(a.io.live_lines, 2);
        assert_eq!(a.console, vec!["booting", "serving"]);
        let w = a.io.vif_wait.as_ref().expect("a vif wait");
        assert_eq!((w.state, w.how.as_str()), (Some(4), "connected"));
        assert_eq!(a.io.vif.len(), 2);
        assert_eq!(a.io.vif[0].backend, Some(2));
        assert_eq!(a.io.vif[0].frontend, Some(1));
        assert_eq!(a.io.vif[1].at, Some(Duration::from_secs(2)));
        assert!(a.io.vif_connected());
        assert_eq!(a.io.vbd[0].backend, None);
        assert_eq!(a.io.vbd[1].backend, Some(2));
        assert!(!a.io.vbd_connected());
        assert!(
            a.summary()
                .contains("destroyed after the dom0 script, dom0 script passed")
        );
        assert!(
            a.summary().contains("vif Connected (state 4)"),
            "{}",
            a.summary()
        );

        let b = p.result(
            1,
            &GuestSpec::new("b", PathBuf::from("/k")).dom0_script("x"),
        );
        assert_eq!(b.shutdown, Shutdown::Timeout);
        assert_eq!(b.io.script_status, Some(124));
        let w = b.io.vif_wait.as_ref().expect("a vif wait");
        assert_eq!((w.state, w.how.as_str()), (None, "waited"));
        assert!(!b.passed());
        assert!(
            b.summary().contains("dom0 script killed at the time limit"),
            "{}",
            b.summary()
        );

        let c = p.result(
            2,
            &GuestSpec::new("c", PathBuf::from("/k")).dom0_script("x"),
        );
        assert_eq!(c.io.script_status, None);
        assert_eq!(c.io.disk_dev.as_deref(), Some("missing"));
        assert!(
            c.summary().contains("dom0 script never ran"),
            "{}",
            c.summary()
        );
        // Without a script, no status is needed.
        let c = p.result(
            2,
            &GuestSpec::new("c", PathBuf::from("/k")).expect(Expect::Any),
        );
        assert!(c.passed());

        let text = |g: usize, t: &str, console: bool| {
            if console {
                LiveLine::Console {
                    guest: g,
                    text: t.into(),
                }
            } else {
                LiveLine::Script {
                    guest: g,
                    text: t.into(),
                }
            }
        };
        assert_eq!(
            live,
            vec![
                text(0, "booting", true),
                text(0, "xenlab-wait: ping 10.0.0.2 ready after 0.30 s", false),
                text(0, "", false),
                text(0, "serving", true),
                text(1, "no answer", false),
            ]
        );
    }
}
