//! `cargo xtask bench sched`: the schedulers side by side, in the guest, in one run.
//!
//! For each scheduler (`coop`, `preempt`: `apps/threads bench`; `async`: `apps/asyncprobe
//! bench`): the context-switch time (two threads or tasks yielding to each other), the cost of
//! a spawn + join, and the wake-up latency from the timer interrupt (how late a 1 ms sleep
//! ends, median of 20), each the median over several boots; and the image-size delta of hello
//! against `scheduler = "none"`. Same profile, guest memory and accelerator for all.

use std::fmt::Write as _;
use std::time::Duration;

use super::stats::median;
use crate::qemu::{self, Outcome, QemuConfig};
use crate::workspace::Workspace;
use anyhow::{Error, Result};

/// The schedulers compared, and the probe app each runs.
pub const SCHEDULERS: [(&str, &str); 3] = [
    ("coop", "threads"),
    ("preempt", "threads"),
    ("async", "asyncprobe"),
];

/// One boot's figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Nanoseconds per context switch (yield ping-pong).
    pub switch_ns: Option<f64>,
    /// Nanoseconds per spawn + join.
    pub spawn_ns: Option<f64>,
    /// Median lateness of a 1 ms sleep, microseconds.
    pub wake_us: Option<f64>,
}

/// Reads the probe's `bench yield: N ns per switch`, `bench spawn: N ns per spawn+join` and
/// `bench wake: median N us` lines.
pub fn parse(console: &str) -> Sample {
    let number = |prefix: &str| -> Option<f64> {
        console.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    };
    Sample {
        switch_ns: number("bench yield: "),
        spawn_ns: number("bench spawn: "),
        wake_us: number("bench wake: median "),
    }
}

/// One scheduler's figures (medians over the boots).
#[derive(Debug, Clone, Default)]
pub struct SchedulerResult {
    /// Scheduler name.
    pub scheduler: String,
    /// Medians of the samples.
    pub median: Sample,
    /// Stripped hello image bytes with this scheduler.
    pub hello_bytes: u64,
}

/// Runs the benchmark with `runs` boots per scheduler; progress goes to stderr. Returns the
/// hello size with `scheduler = "none"` and the results.
pub fn run(ws: &Workspace, runs: usize) -> Result<(u64, Vec<SchedulerResult>)> {
    let qemu_bin = crate::cmd::setup::ensure_qemu()?;
    let (_, none) = crate::build_app(ws, "hello", "default", &["scheduler=none".to_string()])?;
    let mut results = Vec::new();
    for (scheduler, app) in SCHEDULERS {
        let set = vec![format!("scheduler={scheduler}")];
        let (profile, image) = crate::build_app(ws, app, "default", &set)?;
        let mut cfg = QemuConfig::new(qemu_bin.clone(), image.elf.clone(), &profile);
        cfg.app_args = vec!["bench".into()];
        let (mut switch, mut spawn, mut wake) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            eprintln!("bench sched: {scheduler} run {}/{runs}", run + 1);
            let boot = qemu::boot(&cfg, true, Some(Duration::from_secs(120)))?;
            if boot.outcome != Outcome::Guest(0) {
                return Err(Error::msg(format!(
                    "{app} bench under {scheduler}: {:?}\n{}",
                    boot.outcome, boot.stdout
                )));
            }
            let s = parse(&boot.stdout);
            switch.extend(s.switch_ns);
            spawn.extend(s.spawn_ns);
            wake.extend(s.wake_us);
        }
        let (_, hello) = crate::build_app(ws, "hello", "default", &set)?;
        results.push(SchedulerResult {
            scheduler: scheduler.into(),
            median: Sample {
                switch_ns: median(&switch),
                spawn_ns: median(&spawn),
                wake_us: median(&wake),
            },
            hello_bytes: hello.bytes,
        });
    }
    Ok((none.bytes, results))
}

/// The results as a Markdown table.
pub fn markdown(none_bytes: u64, results: &[SchedulerResult]) -> String {
    let mut md = String::from("## Schedulers\n\n");
    md.push_str(
        "| scheduler | switch ns | spawn+join ns | 1 ms sleep late by (us) | hello bytes | vs none |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let _ = writeln!(md, "| none | - | - | - | {none_bytes} | +0 |");
    let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:+} |",
            r.scheduler,
            show(r.median.switch_ns),
            show(r.median.spawn_ns),
            show(r.median.wake_us),
            r.hello_bytes,
            r.hello_bytes as i64 - none_bytes as i64
        );
    }
    md.push_str(
        "\nswitch: a yield between two threads (tasks), one direction. spawn+join: a thread \
         (task) that returns at once. late by: how long after its deadline a 1 ms sleep ends \
         (timer interrupt to running again), median of 20. Medians over the boots, under the \
         run's accelerator.\n",
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_probe_lines() {
        let s = parse(
            "threads: scheduler coop\nbench yield: 545 ns per switch (20002 switches)\n\
             bench spawn: 4455 ns per spawn+join\nbench wake: median 2 us late\n",
        );
        assert_eq!(s.switch_ns, Some(545.0));
        assert_eq!(s.spawn_ns, Some(4455.0));
        assert_eq!(s.wake_us, Some(2.0));
        assert_eq!(parse("bench yield: fast\n"), Sample::default());
    }

    #[test]
    fn table_shows_the_size_delta_against_none() {
        let r = SchedulerResult {
            scheduler: "coop".into(),
            median: Sample {
                switch_ns: Some(500.0),
                spawn_ns: None,
                wake_us: Some(3.0),
            },
            hello_bytes: 27_000,
        };
        let md = markdown(26_000, &[r]);
        assert!(md.contains("| none | - | - | - | 26000 | +0 |"), "{md}");
        assert!(
            md.contains("| coop | 500 | - | 3 | 27000 | +1000 |"),
            "{md}"
        );
    }
}
