//! The guest-side boot chart: the `bootchart:` lines the kernel prints when its command line has
//! `bootchart` (crates/kernel/src/boot.rs), parsed back into phases.
//!
//! ```text
//! bootchart: entry      +        0 cycles        0 us
//! bootchart: rust       +   340444 cycles      130 us
//! ...
//! bootchart: main       +    28990 cycles     2169 us
//! bootchart: entry -> main 2169 us (5641558 cycles, TSC 2600 MHz)
//! ```
//!
//! Each phase line gives the TSC cycles since the previous phase and, when the kernel knows the
//! TSC frequency, the microseconds since entry. The closing line gives the frequency.

use serde::{Deserialize, Serialize};

/// The prefix of every boot chart line.
pub const PREFIX: &str = "bootchart:";

/// One boot phase: reached `cycles` after the previous one, `at_us` after entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// Phase name (`entry`, `rust`, `console`, ..., `main`).
    pub name: String,
    /// TSC cycles since the previous phase.
    pub cycles: u64,
    /// Microseconds since entry (`None` when the TSC frequency is unknown).
    pub at_us: Option<u64>,
}

/// A parsed boot chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Bootchart {
    /// Phases in boot order.
    pub phases: Vec<Phase>,
    /// TSC frequency in MHz, when the kernel calibrated it.
    pub tsc_mhz: Option<u64>,
}

impl Bootchart {
    /// Parses the `bootchart:` lines among `lines` (other lines are ignored); `None` when there
    /// are none.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Bootchart> {
        let mut chart = Bootchart::default();
        let mut seen = false;
        for line in lines {
            let Some(rest) = line.trim().strip_prefix(PREFIX) else {
                continue;
            };
            seen = true;
            let rest = rest.trim();
            if rest.starts_with("entry -> main") {
                chart.tsc_mhz = number_before(rest, "MHz");
            } else if let Some(phase) = parse_phase(rest) {
                chart.phases.push(phase);
            }
        }
        seen.then_some(chart)
    }

    /// `(phase name, duration)` of each phase after `entry`, in microseconds when every phase
    /// has a time, else in cycles; the bool says which (`true` = microseconds).
    pub fn durations(&self) -> (Vec<(String, u64)>, bool) {
        let us = !self.phases.is_empty() && self.phases.iter().all(|p| p.at_us.is_some());
        let mut out = Vec::new();
        let mut prev = 0;
        for (i, p) in self.phases.iter().enumerate() {
            let value = if us { p.at_us.unwrap_or(0) } else { p.cycles };
            if i > 0 {
                let d = if us {
                    value.saturating_sub(prev)
                } else {
                    value
                };
                out.push((p.name.clone(), d));
            }
            prev = value;
        }
        (out, us)
    }

    /// Entry to `main` in microseconds (the last phase's time), when known.
    pub fn total_us(&self) -> Option<u64> {
        self.phases.last().and_then(|p| p.at_us)
    }

    /// Entry to `main` in cycles.
    pub fn total_cycles(&self) -> u64 {
        self.phases.iter().skip(1).map(|p| p.cycles).sum()
    }
}

/// `rust       +   340444 cycles      130 us` (the `us` part is optional).
fn parse_phase(rest: &str) -> Option<Phase> {
    let (name, tail) = rest.split_once(char::is_whitespace)?;
    let tail = tail.trim_start().strip_prefix('+')?;
    let cycles = number_before(tail, "cycles")?;
    let after = tail.split_once("cycles").map_or("", |(_, a)| a);
    Some(Phase {
        name: name.to_string(),
        cycles,
        at_us: number_before(after, "us"),
    })
}

/// The integer just before the word `unit` (`"... 2600 MHz)"`, `"MHz"` -> 2600).
fn number_before(text: &str, unit: &str) -> Option<u64> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let at = words.iter().position(|w| *w == unit)?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = "\
Hello from Stardust!
bootchart: entry      +        0 cycles        0 us
bootchart: rust       +   340444 cycles      130 us
bootchart: console    +   113334 cycles      174 us
bootchart: paging     +2478138000 cycles     1983 us
bootchart: main       +    28990 cycles     2169 us
bootchart: entry -> main 2169 us (5641558 cycles, TSC 2600 MHz)
command line:
";

    #[test]
    fn parses_phases_and_frequency() {
        let c = Bootchart::parse(CHART.lines()).expect("a chart");
        assert_eq!(c.tsc_mhz, Some(2600));
        assert_eq!(c.phases.len(), 5);
        assert_eq!(
            c.phases[1],
            Phase {
                name: "rust".into(),
                cycles: 340444,
                at_us: Some(130)
            }
        );
        assert_eq!(c.phases[3].cycles, 2478138000, "no space after `+`");
        assert_eq!(c.total_us(), Some(2169));
        let (d, us) = c.durations();
        assert!(us);
        assert_eq!(
            d,
            [
                ("rust".to_string(), 130),
                ("console".to_string(), 44),
                ("paging".to_string(), 1809),
                ("main".to_string(), 186)
            ]
        );
    }

    #[test]
    fn without_a_tsc_frequency_durations_are_cycles() {
        let text = "bootchart: entry      +        0 cycles\n\
                    bootchart: rust       +      400 cycles\n\
                    bootchart: main       +       20 cycles\n\
                    bootchart: entry -> main 420 cycles (TSC frequency unknown)\n";
        let c = Bootchart::parse(text.lines()).expect("a chart");
        assert_eq!(c.tsc_mhz, None);
        assert_eq!(c.total_us(), None);
        assert_eq!(c.total_cycles(), 420);
        let (d, us) = c.durations();
        assert!(!us);
        assert_eq!(d, [("rust".to_string(), 400), ("main".to_string(), 20)]);
    }

    #[test]
    fn no_chart_lines_is_none_and_junk_is_skipped() {
        assert_eq!(Bootchart::parse("Hello\nbye\n".lines()), None);
        let c = Bootchart::parse(["bootchart: garbled", "bootchart: x + y cycles"]).expect("seen");
        assert!(c.phases.is_empty());
    }
}
